//! The score stage: the step's rollouts → every reward of every completion → `scored.jsonl`
//! (one [`ScoredRow`] per rollout) plus per-reward statistics in the outputs, with TRL's names:
//! `reward`, `reward_std`, `rewards/<fn>/mean|std|unscorable`, `completions/mean_length|
//! max_length|clipped_ratio`.
//!
//! The reward set is built once per process (Resources key [`REWARDS_KEY`]). Judges without an
//! endpoint run on the local engine: the policy itself when the judge names no model (the
//! seeds' self-evaluation), else the named model, loaded once.
//!
//! In the daily loop a partition's score instance scores the predictions of the dates its
//! pairs name, each joined with its realised outcome (see `paired_rows`).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Map, Value};

use crate::plan::partitions::Lineage;
use crate::rewards::judge_client::{JudgeBackend, LocalJudge};
use crate::rewards::set::{RewardContext, RewardSet, ScoreInput, Scored};
use crate::rewards::{RewardStats, Score};
use crate::spec::{Experiment, Reward};
use crate::stages::artifacts::{
    input_path, read_jsonl, relative, sibling_id, write_jsonl, RolloutRow, ScoredRow,
};
use crate::stages::generate::length_stats;
use crate::stages::policy::{policy, Policy};
use crate::stages::{Resources, Stage, StageContext, StageOutput};
use crate::{Error, Result};

/// File name of the scored artifact.
pub const SCORED_FILE: &str = "scored.jsonl";
/// Resources key of the built reward set.
pub const REWARDS_KEY: &str = "rewards";

/// The score stage.
pub struct ScoreStage;

/// The judges that need the local engine: `Some(None)` = the policy, `Some(Some(model))` = a
/// named model; `None` when no judge needs it.
fn local_judge_model(spec: &Experiment) -> Result<Option<Option<String>>> {
    let mut wanted: Option<Option<String>> = None;
    for (name, r) in &spec.rewards {
        if let Reward::Judge(j) = r {
            if j.endpoint.is_none() {
                let m = j.model.clone();
                if wanted.as_ref().is_some_and(|w| *w != m) {
                    return Err(Error::Spec(format!(
                        "rewards.{name}: local judges with different models are not supported \
                         in one run; give one of them an endpoint"
                    )));
                }
                wanted = Some(m);
            }
        }
    }
    Ok(wanted)
}

/// The spec's reward set. A local judge on the policy (`judge` without `endpoint` or `model`)
/// uses `policy`, which must then be given; one with a `model` loads that model.
pub fn build_reward_set(spec: &Experiment, policy: Option<&Policy>) -> Result<RewardSet> {
    let local_judge: Option<Arc<dyn JudgeBackend>> = match local_judge_model(spec)? {
        None => None,
        Some(None) => {
            let p = policy.ok_or_else(|| {
                Error::Run("a local judge on the policy needs the policy loaded".into())
            })?;
            Some(Arc::new(LocalJudge::new(p.model.clone(), p.tok.clone())))
        }
        Some(Some(model)) => {
            let loaded =
                crate::engine::load::load(&model, &crate::engine::load::LoadOptions::default())?;
            Some(Arc::new(LocalJudge::new(
                Arc::new(loaded.model),
                Arc::new(loaded.tokenizer),
            )))
        }
    };
    RewardSet::from_spec(spec, &RewardContext { local_judge })
}

/// The spec's reward set, built on first use (the policy is loaded only when a judge needs it).
pub fn reward_set<'a>(ctx: &'a mut StageContext<'_>) -> Result<&'a RewardSet> {
    if ctx
        .resources
        .get_mut::<Arc<RewardSet>>(REWARDS_KEY)
        .is_none()
    {
        let set = if local_judge_model(ctx.spec)? == Some(None) {
            let p = policy(ctx)?;
            let p = Policy {
                model: p.model.clone(),
                tok: p.tok.clone(),
            };
            build_reward_set(ctx.spec, Some(&p))?
        } else {
            build_reward_set(ctx.spec, None)?
        };
        ctx.resources.insert(REWARDS_KEY, Arc::new(set));
    }
    stored(ctx.resources)
}

fn stored(resources: &mut Resources) -> Result<&RewardSet> {
    resources
        .get_mut::<Arc<RewardSet>>(REWARDS_KEY)
        .map(|a| &**a)
        .ok_or_else(|| Error::Run("the reward set resource has an unexpected type".into()))
}

/// Score rollout rows (group = prompt index).
pub fn score_rows(set: &RewardSet, rows: &[RolloutRow]) -> Result<Scored> {
    score_rows_with(set, rows, &vec![None; rows.len()])
}

/// Score rollout rows, each with its joined outcome record (the daily loop), if any.
pub fn score_rows_with(
    set: &RewardSet,
    rows: &[RolloutRow],
    outcomes: &[Option<Value>],
) -> Result<Scored> {
    let inputs: Vec<ScoreInput<'_>> = rows
        .iter()
        .zip(outcomes)
        .map(|(r, o)| ScoreInput {
            prompt: &r.prompt,
            completion: &r.completion,
            reference: r.reference.as_ref(),
            task: r.task.as_deref(),
            record: &r.record,
            group: r.prompt_index,
            outcome: o.as_ref(),
        })
        .collect();
    let scored = set.score(&inputs)?;
    if scored.total.len() != rows.len() {
        return Err(Error::Other(format!(
            "reward set returned {} totals for {} completions",
            scored.total.len(),
            rows.len()
        )));
    }
    Ok(scored)
}

/// Rows with their rewards attached.
pub fn scored_rows(rows: Vec<RolloutRow>, scored: &Scored) -> Vec<ScoredRow> {
    rows.into_iter()
        .enumerate()
        .map(|(i, rollout)| ScoredRow {
            // Rewards that do not apply to the row's task are left out (not 0).
            rewards: scored
                .per_reward
                .iter()
                .filter(|(k, _)| scored.applies(k, i))
                .map(|(k, v)| (k.clone(), v.get(i).and_then(Score::as_f64)))
                .collect(),
            reward: scored.total.get(i).and_then(Score::as_f64),
            rollout,
        })
        .collect()
}

/// `rewards/<fn>/mean|std|unscorable`, `reward`, `reward_std`, `reward/unscorable` (a value
/// that cannot be computed is `null`, never 0).
pub fn reward_metrics(scored: &Scored) -> Map<String, Value> {
    let mut m = Map::new();
    for (name, s) in scored.stats() {
        m.insert(format!("rewards/{name}/mean"), json!(s.mean));
        m.insert(format!("rewards/{name}/std"), json!(s.std));
        m.insert(format!("rewards/{name}/unscorable"), json!(s.unscorable));
    }
    let total = RewardStats::from_scores(&scored.total);
    m.insert("reward".into(), json!(total.mean));
    m.insert("reward_std".into(), json!(total.std));
    m.insert("reward/unscorable".into(), json!(total.unscorable));
    m
}

/// Per task: `{task: {reward: {mean, std, unscorable}}}`.
pub fn task_metrics(scored: &Scored, rows: &[RolloutRow]) -> Value {
    let tasks: Vec<Option<&str>> = rows.iter().map(|r| r.task.as_deref()).collect();
    if tasks.iter().all(Option::is_none) {
        return Value::Null;
    }
    let by: BTreeMap<String, BTreeMap<String, Value>> = scored
        .stats_by_task(&tasks)
        .into_iter()
        .map(|(t, per)| {
            (
                t,
                per.into_iter()
                    .map(|(k, s)| {
                        (
                            k,
                            json!({"mean": s.mean, "std": s.std, "unscorable": s.unscorable}),
                        )
                    })
                    .collect(),
            )
        })
        .collect();
    json!(by)
}

/// The daily loop: the predictions of each pair's `predictions_from` partition, each joined
/// with its outcome record from the `outcomes_from` partition (`data.outcomes.join_on`).
/// Prompt indices are offset per pair so groups stay distinct. A prediction without an outcome
/// gets none (outcome-aware rewards then say it is unscorable).
fn paired_rows(ctx: &StageContext<'_>) -> Result<(Vec<RolloutRow>, Vec<Option<Value>>)> {
    let src = ctx.spec.data.outcomes.as_ref().ok_or_else(|| {
        Error::Spec("the daily loop scores against outcomes, but data.outcomes is not set".into())
    })?;
    let mut rows = Vec::new();
    let mut outcomes = Vec::new();
    let mut offset = 0usize;
    for pair in &ctx.instance.pairs {
        let path = predictions_path(ctx, &pair.predictions_from)?;
        let pred: Vec<RolloutRow> = read_jsonl(&path)?;
        let opath = src.path.replace("{date}", &pair.outcomes_from);
        let raw = crate::data::read::read_raw(std::path::Path::new(&opath), src.format)?;
        let key = |v: &Value| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let by_key: BTreeMap<String, Value> = raw
            .into_iter()
            .filter_map(|(_, m)| Some((key(m.get(&src.join_on)?), Value::Object(m))))
            .collect();
        let groups = pred.iter().map(|r| r.prompt_index + 1).max().unwrap_or(0);
        for mut r in pred {
            let o = r
                .record
                .get(&src.join_on)
                .and_then(|k| by_key.get(&key(k)).cloned());
            r.prompt_index += offset;
            rows.push(r);
            outcomes.push(o);
        }
        offset += groups;
    }
    Ok((rows, outcomes))
}

/// The rollouts of `date`'s predictions: this run's generate instance of that date, else the
/// copy imported from the previous run (see [`Lineage`]).
fn predictions_path(ctx: &StageContext<'_>, date: &str) -> Result<std::path::PathBuf> {
    let gen_id = format!("{date}/generate");
    if ctx.state.record(&gen_id).is_some() {
        return input_path(ctx.run_dir, ctx.state, &gen_id, "rollouts");
    }
    let lineage = Lineage::load(ctx.run_dir.path())?;
    match lineage.imported_predictions.get(date) {
        Some(rel) => Ok(ctx.run_dir.path().join(rel)),
        None => Err(Error::Run(format!(
            "{}: the predictions of {date} are neither generated in this run nor imported from \
             an earlier run of it (run that date first, or widen --from)",
            ctx.instance.id
        ))),
    }
}

/// The per-partition summary figures of scored rows: validity (every format/json reward
/// passed, i.e. ≥ 1 − 1e-9), composite (mean total reward), trade-thinking (mean of the
/// keywords rewards), paragraph quality (mean of the quality rewards), leak rate (the quality
/// reward's leak check plus the spec's `leak_patterns`) and mean words.
pub fn summary_figures(
    spec: &Experiment,
    rows: &[ScoredRow],
) -> Result<crate::run::summary::PartitionSummary> {
    use crate::rewards::quality::{score_quality, QualityOptions};
    let names_of = |pred: fn(&Reward) -> bool| -> Vec<&String> {
        spec.rewards
            .iter()
            .filter(|(_, r)| pred(r))
            .map(|(k, _)| k)
            .collect()
    };
    let validity_names = names_of(|r| matches!(r, Reward::Format(_) | Reward::Json(_)));
    let keyword_names = names_of(|r| matches!(r, Reward::Keywords(_)));
    let quality_names = names_of(|r| matches!(r, Reward::Quality(_)));
    let mut patterns = Vec::new();
    for (name, r) in &spec.rewards {
        if let Reward::Quality(q) = r {
            for p in &q.leak_patterns {
                patterns.push(regex::Regex::new(p).map_err(|e| {
                    Error::Spec(format!("rewards.{name}.leak_patterns: {p:?}: {e}"))
                })?);
            }
        }
    }
    let mean_of = |names: &[&String]| -> Option<f64> {
        let v: Vec<f64> = rows
            .iter()
            .flat_map(|r| {
                names
                    .iter()
                    .filter_map(|n| r.rewards.get(*n).copied().flatten())
            })
            .collect();
        mean(&v)
    };
    let validity = if validity_names.is_empty() {
        None
    } else {
        let v: Vec<f64> = rows
            .iter()
            .filter_map(|r| {
                let vals: Vec<Option<f64>> = validity_names
                    .iter()
                    .filter_map(|n| r.rewards.get(*n).copied())
                    .collect();
                if vals.is_empty() {
                    return None;
                }
                let ok = vals.iter().all(|x| x.is_some_and(|x| x >= 1.0 - 1e-9));
                Some(f64::from(u8::from(ok)))
            })
            .collect();
        mean(&v)
    };
    let opts = QualityOptions::default();
    let leaks: Vec<f64> = rows
        .iter()
        .map(|r| {
            let c = &r.rollout.completion;
            let leak = score_quality(c, Some(&r.rollout.prompt), &opts).leak
                || patterns.iter().any(|p| p.is_match(c));
            f64::from(u8::from(leak))
        })
        .collect();
    let words: Vec<f64> = rows
        .iter()
        .map(|r| r.rollout.completion.split_whitespace().count() as f64)
        .collect();
    let totals: Vec<f64> = rows.iter().filter_map(|r| r.reward).collect();
    Ok(crate::run::summary::PartitionSummary {
        validity,
        composite_reward: mean(&totals),
        trade_thinking: if keyword_names.is_empty() {
            None
        } else {
            mean_of(&keyword_names)
        },
        paragraph_quality: if quality_names.is_empty() {
            None
        } else {
            mean_of(&quality_names)
        },
        leak_rate: mean(&leaks),
        mean_words: mean(&words),
        ..Default::default()
    })
}

fn mean(xs: &[f64]) -> Option<f64> {
    if xs.is_empty() {
        None
    } else {
        Some(xs.iter().sum::<f64>() / xs.len() as f64)
    }
}

/// Fails when a reward's unscorable results exceed its `max_unscorable` fraction of the
/// completions it applies to, naming the reward, the count and the last reason.
pub fn check_unscorable(spec: &Experiment, scored: &Scored) -> Result<()> {
    for (name, reward) in &spec.rewards {
        let (Some(limit), Some(scores)) = (reward.max_unscorable(), scored.per_reward.get(name))
        else {
            continue;
        };
        let applies = scored.applies.get(name);
        let counted: Vec<&Score> = scores
            .iter()
            .enumerate()
            .filter(|(i, _)| applies.is_none_or(|a| a.get(*i).copied().unwrap_or(true)))
            .map(|(_, s)| s)
            .collect();
        let reasons: Vec<&str> = counted
            .iter()
            .filter_map(|s| match s {
                Score::Unscorable(r) => Some(r.as_str()),
                Score::Value(_) => None,
            })
            .collect();
        let n = counted.len();
        if n == 0 || reasons.is_empty() {
            continue;
        }
        let fraction = reasons.len() as f64 / n as f64;
        if fraction > limit {
            return Err(Error::Run(format!(
                "reward `{name}`: {} of {n} results unscorable ({:.0} %), over its \
                 max_unscorable {limit}; the run stops here (`runner apply --resume` scores \
                 again). Last reason: {}",
                reasons.len(),
                100.0 * fraction,
                reasons.last().copied().unwrap_or_default()
            )));
        }
    }
    Ok(())
}

impl Stage for ScoreStage {
    fn run(&self, ctx: &mut StageContext<'_>) -> Result<StageOutput> {
        let id = ctx.instance.id.clone();
        let (rows, outcomes) = if ctx.instance.pairs.is_empty() {
            let gen_id = sibling_id(&id, "generate");
            let path = input_path(ctx.run_dir, ctx.state, &gen_id, "rollouts")?;
            let rows: Vec<RolloutRow> = read_jsonl(&path)?;
            let n = rows.len();
            (rows, vec![None; n])
        } else {
            paired_rows(ctx)?
        };
        let set = reward_set(ctx)?;
        let scored = score_rows_with(set, &rows, &outcomes)?;
        check_unscorable(ctx.spec, &scored)?;
        let mut out = reward_metrics(&scored);
        let lengths = length_stats(&rows, 0.0);
        out.insert("completions/mean_length".into(), json!(lengths.mean_length));
        out.insert("completions/max_length".into(), json!(lengths.max_length));
        out.insert(
            "completions/clipped_ratio".into(),
            json!(lengths.clipped_ratio),
        );
        out.insert("judge_retries".into(), json!(scored.judge_retries));
        let by_task = task_metrics(&scored, &rows);
        if !by_task.is_null() {
            out.insert("by_task".into(), by_task);
        }
        let dir = ctx.run_dir.stage_dir(&id)?;
        let dest = dir.join(SCORED_FILE);
        let rows = scored_rows(rows, &scored);
        write_jsonl(&dest, &rows)?;
        if let (Some(date), false) = (&ctx.instance.date, ctx.instance.pairs.is_empty()) {
            let fig = summary_figures(ctx.spec, &rows)?;
            let pairs: Vec<String> = ctx
                .instance
                .pairs
                .iter()
                .map(|p| format!("{}×{}", p.predictions_from, p.outcomes_from))
                .collect();
            let retries = scored.judge_retries;
            crate::run::summary::update_row(ctx.run_dir.path(), date, |row| {
                row.validity = fig.validity;
                row.composite_reward = fig.composite_reward;
                row.trade_thinking = fig.trade_thinking;
                row.paragraph_quality = fig.paragraph_quality;
                row.leak_rate = fig.leak_rate;
                row.mean_words = fig.mean_words;
                row.judge_retries = retries;
                row.scored_pairs = pairs;
            })?;
            out.insert("validity".into(), json!(fig.validity));
            out.insert("leak_rate".into(), json!(fig.leak_rate));
            out.insert("mean_words".into(), json!(fig.mean_words));
        }
        ctx.events
            .emit(Some(&id), "scored", Value::Object(out.clone()))?;
        out.insert("scored".into(), json!(relative(ctx.run_dir, &dest)));
        Ok(StageOutput {
            outputs: Value::Object(out),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `max_unscorable` is a fraction of the completions the reward applies to: at the limit
    /// the run goes on, above it the stage fails naming the count and the last reason; other
    /// tasks' rows do not count.
    #[test]
    fn unscorable_limit_counts_the_rows_the_reward_applies_to() {
        let mut spec = Experiment::default();
        let judge: Reward =
            serde_yaml::from_str("{kind: format, regex: 'x', max_unscorable: 0.5}").unwrap();
        spec.rewards.insert("fmt".into(), judge);
        let scored = |scores: Vec<Score>, applies: Vec<bool>| {
            let mut s = Scored {
                names: vec!["fmt".into()],
                ..Scored::default()
            };
            s.per_reward.insert("fmt".into(), scores);
            s.applies.insert("fmt".into(), applies);
            s
        };
        let (v, u) = (Score::Value(1.0), |r: &str| Score::unscorable(r));
        // 2 of 4: at the limit.
        let at = scored(vec![v.clone(), u("a"), v.clone(), u("b")], vec![true; 4]);
        assert!(check_unscorable(&spec, &at).is_ok());
        // 3 of 4: over it.
        let over = scored(vec![u("a"), u("b"), v.clone(), u("c")], vec![true; 4]);
        let err = check_unscorable(&spec, &over).unwrap_err().to_string();
        assert!(
            err.contains("reward `fmt`: 3 of 4 results unscorable (75 %)")
                && err.contains("Last reason: c"),
            "{err}"
        );
        // 2 of the 3 rows it applies to would be over; the 4th row (another task) is left out.
        let tasks = scored(
            vec![u("a"), u("b"), v.clone(), Score::Value(0.0)],
            vec![true, true, true, false],
        );
        assert!(check_unscorable(&spec, &tasks).is_err());
        let tasks = scored(
            vec![u("a"), v.clone(), v.clone(), u("z")],
            vec![true, true, true, false],
        );
        assert!(check_unscorable(&spec, &tasks).is_ok());
    }

    #[test]
    fn metrics_never_turn_unscorable_into_zero() {
        let mut s = Scored {
            names: vec!["a".into(), "b".into()],
            ..Scored::default()
        };
        s.per_reward.insert(
            "a".into(),
            vec![Score::Value(1.0), Score::Value(0.0), Score::unscorable("x")],
        );
        s.per_reward.insert(
            "b".into(),
            vec![
                Score::unscorable("x"),
                Score::unscorable("y"),
                Score::unscorable("z"),
            ],
        );
        s.total = vec![Score::Value(1.0), Score::Value(0.0), Score::unscorable("x")];
        s.applies.insert("a".into(), vec![true; 3]);
        s.applies.insert("b".into(), vec![true; 3]);
        let m = reward_metrics(&s);
        assert_eq!(m["rewards/a/mean"], json!(0.5));
        assert_eq!(m["rewards/a/unscorable"], json!(1));
        assert!(m["rewards/b/mean"].is_null());
        assert_eq!(m["rewards/b/unscorable"], json!(3));
        assert_eq!(m["reward"], json!(0.5));
        let sd = m["reward_std"].as_f64().unwrap();
        assert!((sd - 0.5f64.sqrt()).abs() < 1e-12);
    }
}
