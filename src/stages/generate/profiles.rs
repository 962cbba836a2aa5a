//! The sampler profile of a partition's generation: the profile the previous partition used
//! (or `generate.profile` for the first), moved along `generate.auto_profile` (e.g. `tight` →
//! `default`) when every condition holds on the latest earlier partition that has scored
//! figures in the summary (this run's, else the previous run's from its lineage). Profiles only
//! move forward: once switched, later partitions start from the new profile.

use crate::plan::partitions::Lineage;
use crate::run::summary::{self, PartitionSummary};
use crate::spec::{CompareOp, Condition};
use crate::stages::StageContext;
use crate::{Error, Result};

/// The profile chosen for one generation and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    /// The profile (`None` = the `generate` parameters as they are).
    pub profile: Option<String>,
    /// Why, in words (recorded in the generate outputs).
    pub reason: String,
}

impl Choice {
    /// The spec's profile, unchanged (steps mode).
    pub fn fixed(profile: Option<String>) -> Choice {
        Choice {
            profile,
            reason: "generate.profile".into(),
        }
    }
}

/// The value of a condition's metric in a summary row; an error for a name the summary does
/// not have (so a typo never silently keeps the profile).
pub fn metric(row: &PartitionSummary, name: &str) -> Result<Option<f64>> {
    let key = name
        .strip_prefix("reward/")
        .or_else(|| name.strip_prefix("train/"))
        .unwrap_or(name);
    Ok(match key {
        "validity" => row.validity,
        "composite_reward" | "reward" | "composite" => row.composite_reward,
        "trade_thinking" => row.trade_thinking,
        "paragraph_quality" => row.paragraph_quality,
        "leak_rate" | "leak" => row.leak_rate,
        "mean_words" => row.mean_words,
        "avg_reward" => row.avg_reward,
        "kl" => row.kl,
        other => {
            return Err(Error::Spec(format!(
                "generate.auto_profile.when: unknown metric `{other}` (one of validity, \
                 leak_rate, composite_reward, trade_thinking, paragraph_quality, mean_words, \
                 avg_reward, kl)"
            )))
        }
    })
}

/// Whether every condition holds on `row`; the first one that does not, in words.
pub fn conditions_hold(row: &PartitionSummary, when: &[Condition]) -> Result<Option<String>> {
    for c in when {
        match metric(row, &c.metric)? {
            Some(v) if c.op.holds(v, c.value) => {}
            Some(v) => {
                return Ok(Some(format!(
                    "{} = {v:.4} is not {} {}",
                    c.metric,
                    symbol(c.op),
                    c.value
                )))
            }
            None => return Ok(Some(format!("{} not measured on {}", c.metric, row.date))),
        }
    }
    Ok(None)
}

/// A comparison as people write it (`ge` → `>=`), for the reasons shown to them.
fn symbol(op: CompareOp) -> &'static str {
    match op {
        CompareOp::Gt => ">",
        CompareOp::Ge => ">=",
        CompareOp::Lt => "<",
        CompareOp::Le => "<=",
    }
}

/// Choose from earlier rows (any order; only dates before `date` count).
pub fn choose_from(
    spec: &crate::spec::Generate,
    rows: &[PartitionSummary],
    date: &str,
) -> Result<Choice> {
    let mut earlier: Vec<&PartitionSummary> =
        rows.iter().filter(|r| r.date.as_str() < date).collect();
    earlier.sort_by(|a, b| a.date.cmp(&b.date));
    let (current, from_where) = match earlier.iter().rev().find(|r| r.sampler.is_some()) {
        Some(r) => (r.sampler.clone(), format!("as on {}", r.date)),
        None => (spec.profile.clone(), "generate.profile".to_string()),
    };
    let Some(rule) = &spec.auto_profile else {
        return Ok(Choice {
            profile: current,
            reason: from_where,
        });
    };
    if current.as_deref() != Some(rule.from.as_str()) {
        return Ok(Choice {
            profile: current,
            reason: from_where,
        });
    }
    let measured = earlier
        .iter()
        .rev()
        .find(|r| r.composite_reward.is_some() || r.validity.is_some());
    let Some(prev) = measured else {
        return Ok(Choice {
            profile: current,
            reason: format!("{from_where}; auto_profile: no scored partition yet"),
        });
    };
    Ok(match conditions_hold(prev, &rule.when)? {
        None => Choice {
            profile: Some(rule.to.clone()),
            reason: format!(
                "auto_profile {} → {}: conditions hold on {}",
                rule.from, rule.to, prev.date
            ),
        },
        Some(why) => Choice {
            profile: current,
            reason: format!("{from_where}; auto_profile kept {}: {why}", rule.from),
        },
    })
}

/// The profile of partition `date` of the run in `ctx`.
pub fn choose(ctx: &StageContext<'_>, date: &str) -> Result<Choice> {
    let run = ctx.run_dir.path();
    let mut rows = if summary::json_path(run).is_file() {
        summary::read_summaries(run)?
    } else {
        Vec::new()
    };
    for r in Lineage::load(run)?.previous_summary {
        if !rows.iter().any(|x| x.date == r.date) {
            rows.push(r);
        }
    }
    choose_from(&ctx.spec.generate, &rows, date)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{AutoProfile, Generate};

    fn gen() -> Generate {
        Generate {
            profile: Some("tight".into()),
            auto_profile: Some(AutoProfile {
                from: "tight".into(),
                to: "default".into(),
                when: vec![
                    Condition {
                        metric: "validity".into(),
                        op: CompareOp::Ge,
                        value: 0.10,
                    },
                    Condition {
                        metric: "leak_rate".into(),
                        op: CompareOp::Le,
                        value: 0.10,
                    },
                ],
            }),
            ..Generate::default()
        }
    }

    fn row(date: &str, sampler: &str, validity: f64, leak: f64) -> PartitionSummary {
        PartitionSummary {
            date: date.into(),
            status: "done".into(),
            sampler: Some(sampler.into()),
            validity: Some(validity),
            leak_rate: Some(leak),
            composite_reward: Some(0.2),
            ..Default::default()
        }
    }

    #[test]
    fn tight_until_validity_and_leak_allow_then_default_sticks() {
        let g = gen();
        let c = choose_from(&g, &[], "20250802").unwrap();
        assert_eq!(c.profile.as_deref(), Some("tight"));
        // validity 0.05 < 0.10: stays tight
        let rows = vec![row("20250802", "tight", 0.05, 0.0)];
        let c = choose_from(&g, &rows, "20250803").unwrap();
        assert_eq!(c.profile.as_deref(), Some("tight"));
        assert!(
            c.reason
                .ends_with("auto_profile kept tight: validity = 0.0500 is not >= 0.1"),
            "{}",
            c.reason
        );
        let rows = vec![row("20250802", "tight", 0.5, 0.25)];
        let c = choose_from(&g, &rows, "20250803").unwrap();
        assert!(
            c.reason.ends_with("leak_rate = 0.2500 is not <= 0.1"),
            "{}",
            c.reason
        );
        // exactly at the thresholds: ge 0.10 and le 0.10 both hold
        let rows = vec![row("20250802", "tight", 0.10, 0.10)];
        let c = choose_from(&g, &rows, "20250803").unwrap();
        assert_eq!(c.profile.as_deref(), Some("default"));
        // once default, it stays default even when validity drops
        let rows = vec![
            row("20250802", "tight", 0.5, 0.0),
            row("20250803", "default", 0.0, 0.9),
        ];
        let c = choose_from(&g, &rows, "20250804").unwrap();
        assert_eq!(c.profile.as_deref(), Some("default"));
        // later rows do not count for an earlier date
        let c = choose_from(&g, &rows, "20250802").unwrap();
        assert_eq!(c.profile.as_deref(), Some("tight"));
    }

    #[test]
    fn unknown_metric_is_an_error_and_missing_value_keeps_profile() {
        let mut g = gen();
        let mut r = row("20250802", "tight", 0.5, 0.0);
        r.leak_rate = None;
        let c = choose_from(&g, std::slice::from_ref(&r), "20250803").unwrap();
        assert_eq!(c.profile.as_deref(), Some("tight"));
        assert!(c.reason.contains("not measured"));
        if let Some(a) = g.auto_profile.as_mut() {
            a.when[0].metric = "validty".into();
        }
        assert!(choose_from(&g, &[r], "20250803").is_err());
    }
}
