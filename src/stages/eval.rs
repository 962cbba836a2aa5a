//! The eval stage: after the steps the plan lists, for each set in `eval.sets` (`eval`,
//! `train`, names under `data.extra`), up to `eval.max_examples` prompts ×
//! `eval.num_generations` completions with the eval sampler (`eval.profile`, else the training
//! one) and a fixed seed (evals at different steps are comparable), scored with the spec's
//! rewards. Writes `eval_completions.jsonl` (scored rows) and `eval.json`; the outputs carry
//! the metrics under `eval` (flat names; sets other than the first are prefixed `<set>/`;
//! per task `<metric>/<task>` with `eval.by_task`).
//!
//! Metrics (`eval.metrics`):
//! - `mean_reward` — mean training reward (unscorable left out);
//! - `reward/<name>` — mean of one reward;
//! - `completion_length` — mean completion tokens;
//! - `validity` — fraction of completions whose `validity` reward (or the spec's only `format`
//!   reward) scores 1;
//! - `leak_rate` — fraction with instruction echo / meta leakage (the quality reward's checks
//!   with default options, plus the spec's quality `leak_patterns`);
//! - `distinct_2`, `self_bleu` — mean over prompts of its completions' distinct-bigram ratio /
//!   self-BLEU (needs `num_generations ≥ 2`);
//! - `pass@k` — unbiased pass@k (Chen et al. 2021) with k ≤ `num_generations`; a completion
//!   passes when every `answer` reward scores 1.
//!
//! Keep-best: the metric `eval.keep_best.metric` (default `mean_reward`, mode `max`) of the
//! first set is compared with the best so far in the trainer state; a better one is recorded
//! and `checkpoints/best/` snapshotted (D2's [`crate::train::checkpoint::save_best`]).

use std::collections::BTreeMap;

use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::data::order::mix;
use crate::data::{sets, Record};
use crate::rewards::quality::{score_quality, QualityOptions};
use crate::rewards::set::RewardSet;
use crate::rewards::set::Scored;
use crate::rewards::{mean, Score};
use crate::spec::SamplerParams;
use crate::spec::{BestMode, Experiment, Reward};
use crate::stages::artifacts::{relative, write_jsonl, RolloutRow, ScoredRow};
use crate::stages::generate::{length_stats, sample, GenStats};
use crate::stages::policy::policy;
use crate::stages::score::{reward_set, score_rows, scored_rows};
use crate::stages::{Stage, StageContext, StageOutput};
use crate::train::diversity;
use crate::{Error, Result};

/// File name of the eval completions.
pub const COMPLETIONS_FILE: &str = "eval_completions.jsonl";
/// File name of the eval summary.
pub const EVAL_FILE: &str = "eval.json";

/// The metric names eval knows (besides `reward/<name>` and `pass@<k>`).
pub const KNOWN_METRICS: &[&str] = &[
    "mean_reward",
    "reward/<name>",
    "completion_length",
    "validity",
    "leak_rate",
    "distinct_2",
    "self_bleu",
    "pass@<k>",
];

/// The eval stage.
pub struct EvalStage;

/// One row of `eval_completions.jsonl`: a scored completion and the eval set it came from
/// (`set` is absent in files written before it was recorded).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRow {
    /// The eval set (`eval`, `train` or a `data.extra` name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set: Option<String>,
    /// The scored completion.
    #[serde(flatten)]
    pub row: ScoredRow,
}

/// One metric, parsed.
#[derive(Debug, Clone, PartialEq)]
pub enum Metric {
    MeanReward,
    Reward(String),
    CompletionLength,
    Validity(String),
    LeakRate,
    Distinct2,
    SelfBleu,
    PassAt(usize),
}

/// Parse and check `eval.metrics` against the spec; unknown names are an error naming the
/// known ones.
pub fn parse_metrics(spec: &Experiment) -> Result<Vec<(String, Metric)>> {
    let g = spec.eval.num_generations;
    spec.eval
        .metrics
        .iter()
        .map(|name| {
            let m = parse_metric(spec, name, g)
                .map_err(|e| Error::Spec(format!("eval.metrics: `{name}`: {e}")))?;
            Ok((name.clone(), m))
        })
        .collect()
}

fn parse_metric(spec: &Experiment, name: &str, g: usize) -> std::result::Result<Metric, String> {
    let needs_group = |m: Metric| {
        if g < 2 {
            Err("needs eval.num_generations ≥ 2".to_string())
        } else {
            Ok(m)
        }
    };
    match name {
        "mean_reward" => return Ok(Metric::MeanReward),
        "completion_length" => return Ok(Metric::CompletionLength),
        "leak_rate" => return Ok(Metric::LeakRate),
        "distinct_2" => return needs_group(Metric::Distinct2),
        "self_bleu" => return needs_group(Metric::SelfBleu),
        "validity" => return validity_reward(spec).map(Metric::Validity),
        _ => {}
    }
    if let Some(r) = name.strip_prefix("reward/") {
        return if spec.rewards.contains_key(r) {
            Ok(Metric::Reward(r.to_string()))
        } else {
            Err(format!(
                "no reward named `{r}` (rewards: {})",
                spec.rewards.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        };
    }
    if let Some(k) = name.strip_prefix("pass@") {
        let k: usize = k
            .parse()
            .map_err(|_| "pass@k needs an integer k".to_string())?;
        if k == 0 || k > g {
            return Err(format!("k must be in 1..=eval.num_generations ({g})"));
        }
        if !spec
            .rewards
            .values()
            .any(|r| matches!(r, Reward::Answer(_)))
        {
            return Err("pass@k needs an `answer` reward to decide what passes".into());
        }
        return Ok(Metric::PassAt(k));
    }
    Err(format!(
        "unknown metric (known: {})",
        KNOWN_METRICS.join(", ")
    ))
}

/// The reward `validity` reads: the one named `validity`, else the spec's only `format` reward.
pub fn validity_reward(spec: &Experiment) -> std::result::Result<String, String> {
    if spec.rewards.contains_key("validity") {
        return Ok("validity".into());
    }
    let formats: Vec<&String> = spec
        .rewards
        .iter()
        .filter(|(_, r)| matches!(r, Reward::Format(_)))
        .map(|(n, _)| n)
        .collect();
    match formats.as_slice() {
        [one] => Ok((*one).clone()),
        _ => Err("validity needs a reward named `validity` or exactly one `format` reward".into()),
    }
}

/// Whether a reward score counts as a pass (1, up to rounding).
pub fn passes(ok: f64) -> bool {
    ok >= 1.0 - 1e-9
}

/// Compute the metrics over the rows with index set `idx` (rows of one set, maybe one task).
fn compute(
    spec: &Experiment,
    metrics: &[(String, Metric)],
    rows: &[ScoredRow],
    scored: &Scored,
    idx: &[usize],
    leak_patterns: &[Regex],
) -> Map<String, Value> {
    let mut out = Map::new();
    let score_mean = |scores: &[Score]| -> Option<f64> {
        let v: Vec<f64> = idx.iter().filter_map(|&i| scores[i].as_f64()).collect();
        mean(&v)
    };
    // A reward's mean over the rows it applies to (its `tasks`).
    let reward_mean = |name: &str| -> Option<f64> {
        let s = scored.per_reward.get(name)?;
        let v: Vec<f64> = idx
            .iter()
            .filter(|&&i| scored.applies(name, i))
            .filter_map(|&i| s[i].as_f64())
            .collect();
        mean(&v)
    };
    // Groups (prompt index → row indices), for the per-prompt metrics.
    let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for &i in idx {
        groups
            .entry(rows[i].rollout.prompt_index)
            .or_default()
            .push(i);
    }
    let answer_names: Vec<&String> = spec
        .rewards
        .iter()
        .filter(|(_, r)| matches!(r, Reward::Answer(_)))
        .map(|(n, _)| n)
        .collect();
    for (name, m) in metrics {
        let v: Option<f64> = match m {
            Metric::MeanReward => score_mean(&scored.total),
            Metric::Reward(r) => reward_mean(r),
            Metric::CompletionLength => mean(
                &idx.iter()
                    .map(|&i| rows[i].rollout.completion_ids.len() as f64)
                    .collect::<Vec<_>>(),
            ),
            Metric::Validity(r) => scored.per_reward.get(r).and_then(|s| {
                mean(
                    &idx.iter()
                        .filter(|&&i| scored.applies(r, i))
                        .map(|&i| f64::from(u8::from(s[i].as_f64().is_some_and(passes))))
                        .collect::<Vec<_>>(),
                )
            }),
            Metric::LeakRate => mean(
                &idx.iter()
                    .map(|&i| {
                        let r = &rows[i].rollout;
                        f64::from(u8::from(is_leak(&r.completion, &r.prompt, leak_patterns)))
                    })
                    .collect::<Vec<_>>(),
            ),
            Metric::Distinct2 | Metric::SelfBleu => {
                let per: Vec<f64> = groups
                    .values()
                    .filter(|g| g.len() >= 2)
                    .map(|g| {
                        let t: Vec<&str> = g
                            .iter()
                            .map(|&i| rows[i].rollout.completion.as_str())
                            .collect();
                        if *m == Metric::Distinct2 {
                            diversity::distinct_n(&t, 2)
                        } else {
                            1.0 - diversity::self_bleu_diversity(&t)
                        }
                    })
                    .collect();
                mean(&per)
            }
            Metric::PassAt(k) => {
                let per: Vec<f64> = groups
                    .values()
                    .map(|g| {
                        let c = g
                            .iter()
                            .filter(|&&i| {
                                answer_names.iter().all(|n| {
                                    !scored.applies(n, i)
                                        || scored
                                            .per_reward
                                            .get(*n)
                                            .is_some_and(|s| s[i].as_f64().is_some_and(passes))
                                })
                            })
                            .count();
                        // k ≤ num_generations = g.len() (checked with the metric name); an
                        // impossible input shows as NaN, never as a silent 0 or 1.
                        crate::metrics::pass_at_k(g.len(), c, *k).unwrap_or(f64::NAN)
                    })
                    .collect();
                mean(&per)
            }
        };
        out.insert(name.clone(), json!(v));
    }
    out
}

/// Whether a completion leaks the instructions: the quality reward's leak check with default
/// options, or one of the spec's `leak_patterns`.
pub fn is_leak(completion: &str, prompt: &str, patterns: &[Regex]) -> bool {
    score_quality(completion, Some(prompt), &QualityOptions::default()).leak
        || patterns.iter().any(|p| p.is_match(completion))
}

/// The names of the spec's `answer` rewards (what decides a pass for pass@k).
pub fn answer_rewards(spec: &Experiment) -> Vec<String> {
    spec.rewards
        .iter()
        .filter(|(_, r)| matches!(r, Reward::Answer(_)))
        .map(|(n, _)| n.clone())
        .collect()
}

/// The quality rewards' `leak_patterns`, compiled.
pub fn leak_patterns(spec: &Experiment) -> Result<Vec<Regex>> {
    let mut out = Vec::new();
    for (name, r) in &spec.rewards {
        if let Reward::Quality(q) = r {
            for p in &q.leak_patterns {
                out.push(Regex::new(p).map_err(|e| {
                    Error::Spec(format!("rewards.{name}.leak_patterns: {p:?}: {e}"))
                })?);
            }
        }
    }
    Ok(out)
}

/// The metric keep-best compares (without an `eval/` prefix) and its direction.
pub fn keep_best(spec: &Experiment) -> (String, BestMode) {
    match &spec.eval.keep_best {
        Some(k) => (
            k.metric
                .strip_prefix("eval/")
                .unwrap_or(&k.metric)
                .to_string(),
            k.mode,
        ),
        None => ("mean_reward".into(), BestMode::Max),
    }
}

/// An explicit `eval.keep_best.metric` must be one eval computes (on the first set).
fn check_keep_best(spec: &Experiment) -> Result<()> {
    if spec.eval.keep_best.is_none() {
        return Ok(());
    }
    let (name, _) = keep_best(spec);
    let known = spec.eval.metrics.iter().any(|m| {
        *m == name
            || (spec.eval.by_task
                && name
                    .strip_prefix(m.as_str())
                    .is_some_and(|rest| rest.starts_with('/')))
    });
    if known {
        Ok(())
    } else {
        Err(Error::Spec(format!(
            "eval.keep_best.metric `{name}` is not among eval.metrics ({})",
            spec.eval.metrics.join(", ")
        )))
    }
}

fn better(mode: BestMode, new: f64, old: f64) -> bool {
    match mode {
        BestMode::Max => new > old,
        BestMode::Min => new < old,
    }
}

/// What an eval of a spec computes and how it samples: the parsed `eval.metrics`, the leak
/// patterns, the eval sampler, completions per prompt and the fixed sampling seed (the same for
/// every eval of the spec, so evals at different steps, or of different checkpoints, see the
/// same prompts with the same random streams).
pub struct EvalSetup {
    pub metrics: Vec<(String, Metric)>,
    pub patterns: Vec<Regex>,
    pub params: SamplerParams,
    pub num_generations: usize,
    pub seed: u64,
}

impl EvalSetup {
    /// The setup of `spec` (errors name a bad metric or leak pattern).
    pub fn new(spec: &Experiment) -> Result<EvalSetup> {
        Ok(EvalSetup {
            metrics: parse_metrics(spec)?,
            patterns: leak_patterns(spec)?,
            params: spec.generate.sampler(spec.eval.profile.as_deref())?,
            num_generations: spec.eval.num_generations,
            seed: mix(spec.seed, 0x6576_616c),
        })
    }
}

/// The prompts eval uses from a set's records: the first `eval.max_examples` (all without it).
pub fn chosen_records<'a>(spec: &Experiment, records: &'a [Record]) -> Vec<&'a Record> {
    let n = spec
        .eval
        .max_examples
        .map_or(records.len(), |m| m.min(records.len()));
    records.iter().take(n).collect()
}

/// One evaluated set.
pub struct SetResult {
    /// The set's name.
    pub set: String,
    /// Its metrics (flat names; per task `<metric>/<task>` with `eval.by_task`).
    pub metrics: Map<String, Value>,
    /// Its scored completions.
    pub rows: Vec<EvalRow>,
    /// `{"metrics", "prompts", "completions", "generation"}` as in `eval.json`'s `sets`.
    pub summary: Value,
}

/// Score the completions sampled for `set` (`prompts` prompts, generation figures `stats`) with
/// `rset` and compute the setup's metrics over them.
pub fn score_set(
    spec: &Experiment,
    setup: &EvalSetup,
    rset: &RewardSet,
    set: &str,
    rows: Vec<RolloutRow>,
    stats: &GenStats,
    prompts: usize,
) -> Result<SetResult> {
    let scored = score_rows(rset, &rows)?;
    let lengths = length_stats(&rows, stats.seconds);
    let rows = scored_rows(rows, &scored);
    let idx: Vec<usize> = (0..rows.len()).collect();
    let mut m = compute(spec, &setup.metrics, &rows, &scored, &idx, &setup.patterns);
    if spec.eval.by_task {
        let mut tasks: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, r) in rows.iter().enumerate() {
            if let Some(t) = &r.rollout.task {
                tasks.entry(t.clone()).or_default().push(i);
            }
        }
        for (t, ti) in tasks {
            for (k, v) in compute(spec, &setup.metrics, &rows, &scored, &ti, &setup.patterns) {
                m.insert(format!("{k}/{t}"), v);
            }
        }
    }
    let summary = json!({"metrics": m, "prompts": prompts, "completions": rows.len(),
                         "generation": lengths.to_json()});
    let rows = rows
        .into_iter()
        .map(|row| EvalRow {
            set: Some(set.to_string()),
            row,
        })
        .collect();
    Ok(SetResult {
        set: set.to_string(),
        metrics: m,
        rows,
        summary,
    })
}

/// The flat metrics of several sets (the first set's names plain, the others' prefixed
/// `<set>/`) and the per-set summaries.
pub fn merge_sets(results: &[SetResult]) -> (Map<String, Value>, Map<String, Value>) {
    let mut flat = Map::new();
    let mut per_set = Map::new();
    for (si, r) in results.iter().enumerate() {
        let prefix = if si == 0 {
            String::new()
        } else {
            format!("{}/", r.set)
        };
        for (k, v) in &r.metrics {
            flat.insert(format!("{prefix}{k}"), v.clone());
        }
        per_set.insert(r.set.clone(), r.summary.clone());
    }
    (flat, per_set)
}

impl Stage for EvalStage {
    fn run(&self, ctx: &mut StageContext<'_>) -> Result<StageOutput> {
        let spec = ctx.spec;
        let id = ctx.instance.id.clone();
        let setup = EvalSetup::new(spec)?;
        check_keep_best(spec)?;
        let date = ctx.instance.date.clone();
        let mut results = Vec::new();
        for set in spec.eval_sets() {
            let records = sets::cached(ctx.resources, spec, set, date.as_deref())?;
            let chosen = chosen_records(spec, &records);
            let (rows, stats) = {
                let p = policy(ctx)?;
                sample(
                    p,
                    spec,
                    &chosen,
                    setup.num_generations,
                    &setup.params,
                    setup.seed,
                )?
            };
            let rset = reward_set(ctx)?;
            results.push(score_set(
                spec,
                &setup,
                rset,
                set,
                rows,
                &stats,
                chosen.len(),
            )?);
        }
        let (flat, per_set) = merge_sets(&results);
        let all_rows: Vec<&EvalRow> = results.iter().flat_map(|r| &r.rows).collect();
        let seed = setup.seed;
        let dir = ctx.run_dir.stage_dir(&id)?;
        let comp = dir.join(COMPLETIONS_FILE);
        write_jsonl(&comp, &all_rows)?;
        // Keep-best (needs a trainer state: an eval before any optimizer step keeps nothing).
        let (best_metric, mode) = keep_best(spec);
        let value = flat.get(&best_metric).and_then(Value::as_f64);
        let steps_done = ctx.instance.step.map_or(0, |s| s + 1);
        let mut best = Value::Null;
        if let Some(v) = value {
            let prev = crate::train::checkpoint::best_so_far(ctx.run_dir)?;
            let is_better = prev
                .as_ref()
                .is_none_or(|(_, old, _)| better(mode, v, *old));
            let has_state = crate::train::state::locate(ctx.run_dir)?.is_some();
            if is_better && has_state {
                let path =
                    crate::train::checkpoint::save_best(ctx.run_dir, &best_metric, v, steps_done)?;
                best = json!({"metric": best_metric, "value": v, "step": steps_done,
                              "checkpoint": relative(ctx.run_dir, &path), "new": true});
            } else if let Some((m, old, s)) = prev {
                best = json!({"metric": m, "value": old, "step": s, "new": false});
            }
        }
        let summary = json!({
            "step": ctx.instance.step,
            "metrics": flat,
            "sets": per_set,
            "best": best,
            "seed": seed,
        });
        crate::run::atomic::write_json(&dir.join(EVAL_FILE), &summary)?;
        ctx.events.emit(Some(&id), "eval", summary.clone())?;
        Ok(StageOutput {
            outputs: json!({
                "eval": flat,
                "eval_best": best,
                "completions": relative(ctx.run_dir, &comp),
                "summary": relative(ctx.run_dir, &dir.join(EVAL_FILE)),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pass_at_k(n: usize, c: usize, k: usize) -> f64 {
        crate::metrics::pass_at_k(n, c, k).unwrap()
    }

    #[test]
    fn pass_at_k_by_hand() {
        // n = 4, c = 1, k = 1: 1/4
        assert!((pass_at_k(4, 1, 1) - 0.25).abs() < 1e-12);
        // n = 4, c = 1, k = 2: 1 − C(3,2)/C(4,2) = 1 − 3/6
        assert!((pass_at_k(4, 1, 2) - 0.5).abs() < 1e-12);
        // n = 5, c = 2, k = 3: 1 − C(3,3)/C(5,3) = 1 − 1/10
        assert!((pass_at_k(5, 2, 3) - 0.9).abs() < 1e-12);
        assert_eq!(pass_at_k(3, 0, 2), 0.0);
        assert_eq!(pass_at_k(3, 3, 2), 1.0);
    }

    #[test]
    fn metric_names_are_checked() {
        let spec: Experiment = serde_yaml::from_str(
            "rewards:\n  ok: {kind: answer, regex: 'x(\\d+)'}\n  f: {kind: format, regex: 'a'}\n\
             eval: {num_generations: 4, metrics: [mean_reward, reward/ok, validity, pass@2, distinct_2]}\n",
        )
        .unwrap();
        let m = parse_metrics(&spec).unwrap();
        assert_eq!(m[2].1, Metric::Validity("f".into()));
        assert_eq!(m[3].1, Metric::PassAt(2));
        let mut bad = spec.clone();
        bad.eval.metrics = vec!["accuracy".into()];
        let e = parse_metrics(&bad).unwrap_err().to_string();
        assert!(
            e.contains("accuracy") && e.contains("mean_reward") && e.contains("pass@<k>"),
            "{e}"
        );
        bad.eval.metrics = vec!["reward/nope".into()];
        let e = parse_metrics(&bad).unwrap_err().to_string();
        assert!(e.contains("f, ok"), "{e}");
        bad.eval.metrics = vec!["pass@5".into()];
        assert!(parse_metrics(&bad).is_err());
        bad.eval.num_generations = 1;
        bad.eval.metrics = vec!["self_bleu".into()];
        assert!(parse_metrics(&bad).is_err());
    }
}
