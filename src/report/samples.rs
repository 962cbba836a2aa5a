//! Per-sample and per-prompt eval values, the units the paired statistics of `runner compare`
//! resample and permute.
//!
//! Per completion (key `<set>/<record id>/<sample index>`):
//! - `mean_reward` — the training reward (unscorable completions left out);
//! - `reward/<name>` — each reward that applies to the completion (unscorable left out);
//! - `completion_length` — completion tokens;
//! - `validity` — 1 when the validity reward (eval's rule: the reward named `validity`, else the
//!   only `format` reward) scores 1, else 0;
//! - `leak_rate` — 1 when the completion leaks the instructions (eval's rule), else 0.
//!
//! Per prompt (key `<set>/<record id>`), over the prompt's completions, with
//! [`crate::metrics`]' exact definitions:
//! - `distinct-1`, `distinct-2` — distinct n-grams / n-grams pooled over the prompt's
//!   completions ([`Pooling::Pooled`]);
//! - `self-bleu` — NLTK Self-BLEU (4-grams, method1), 0..1;
//! - `self-bleu-sacre` — sacrebleu Self-BLEU, 0..100;
//! - `semantic` — mean pairwise 1 − cosine of sentence embeddings (only with an embedder);
//! - `pass@k` — unbiased pass@k, a completion passing when every `answer` reward that applies
//!   to it scores 1; k = 1, the `pass@k` of `eval.metrics` and the group size.
//!
//! A prompt whose completions are degenerate for a metric (fewer than two, no n-gram) has no
//! value for it; the reason is kept per prompt and counted in the notes, never turned into 0.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::metrics::{distinct_n, pass_at_k, self_bleu_nltk, self_bleu_sacre, Pooling};
use crate::rewards::semantic::Embedder;
use crate::spec::Experiment;
use crate::stages::artifacts::read_jsonl;
use crate::stages::eval::{
    answer_rewards, is_leak, leak_patterns, passes, validity_reward, EvalRow,
};
use crate::{Error, Result};

/// What one value of a metric stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// One completion.
    Sample,
    /// One prompt (its group of completions).
    Prompt,
}

/// Per-sample eval values of a run or eval output, for paired tests.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EvalSamples {
    /// metric name → sample (or prompt) key → value.
    pub metrics: BTreeMap<String, BTreeMap<String, f64>>,
    /// What each metric's values stand for.
    pub units: BTreeMap<String, Unit>,
    /// Remarks: values left out and why.
    pub notes: Vec<String>,
    /// The completions file the values come from.
    pub source: Option<PathBuf>,
}

impl EvalSamples {
    /// The mean of a metric's values (`None` when it has none).
    pub fn mean(&self, metric: &str) -> Option<f64> {
        let v = self.metrics.get(metric)?;
        if v.is_empty() {
            return None;
        }
        Some(v.values().sum::<f64>() / v.len() as f64)
    }

    fn insert(&mut self, metric: &str, unit: Unit, key: &str, value: f64) -> Result<()> {
        self.units.insert(metric.to_string(), unit);
        let m = self.metrics.entry(metric.to_string()).or_default();
        if m.insert(key.to_string(), value).is_some() {
            return Err(Error::Run(format!(
                "two eval rows have the same key `{key}` (metric {metric})"
            )));
        }
        Ok(())
    }

    /// Add the values of per-prompt rows (and notes counting the prompts left out).
    pub fn merge_prompt_rows(&mut self, rows: &[PromptRow]) {
        let mut left_out: BTreeMap<&str, (usize, &str)> = BTreeMap::new();
        for r in rows {
            for (m, v) in &r.values {
                match v {
                    Some(x) => {
                        self.units.insert(m.clone(), Unit::Prompt);
                        self.metrics
                            .entry(m.clone())
                            .or_default()
                            .insert(r.key.clone(), *x);
                    }
                    None => {
                        let e = left_out.entry(m).or_insert((0, ""));
                        e.0 += 1;
                        if e.1.is_empty() {
                            e.1 = r.errors.get(m).map_or("", String::as_str);
                        }
                    }
                }
            }
        }
        for (m, (n, why)) in left_out {
            self.notes.push(format!(
                "{m}: {n} of {} prompts have no value ({why})",
                rows.len()
            ));
        }
    }
}

/// The key of a prompt: its set and record id, not its position, so runs whose eval order
/// differs (data sources are shuffled with the run's seed) still pair prompt by prompt.
pub fn prompt_key(set: &str, record_id: &str) -> String {
    format!("{set}/{record_id}")
}

/// The key of a completion.
pub fn sample_key(set: &str, record_id: &str, index: usize) -> String {
    format!("{}/{index}", prompt_key(set, record_id))
}

/// One line of `eval_prompts.jsonl`: a prompt's per-prompt metric values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptRow {
    /// [`prompt_key`].
    pub key: String,
    pub set: String,
    pub prompt_index: usize,
    pub record_id: String,
    /// Completions of the prompt.
    pub samples: usize,
    /// Metric → value; `null` when the prompt's completions are degenerate for it.
    pub values: BTreeMap<String, Option<f64>>,
    /// Metric → why it has no value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub errors: BTreeMap<String, String>,
}

/// Read `eval_prompts.jsonl`.
pub fn read_prompt_rows(path: &Path) -> Result<Vec<PromptRow>> {
    read_jsonl(path)
}

/// The per-completion values of `rows` (rows without a recorded set belong to `default_set`).
/// Without a spec, `validity` and `leak_rate` are left out (a note says so).
pub fn per_sample(
    spec: Option<&Experiment>,
    rows: &[EvalRow],
    default_set: &str,
) -> Result<EvalSamples> {
    let mut out = EvalSamples::default();
    let validity = spec.and_then(|s| validity_reward(s).ok());
    let patterns = match spec {
        Some(s) => Some(leak_patterns(s)?),
        None => {
            out.notes
                .push("no spec recorded: validity and leak_rate left out".into());
            None
        }
    };
    for r in rows {
        let ro = &r.row.rollout;
        let set = r.set.as_deref().unwrap_or(default_set);
        let key = sample_key(set, &ro.record_id, ro.index);
        if let Some(x) = r.row.reward {
            out.insert("mean_reward", Unit::Sample, &key, x)?;
        }
        for (name, v) in &r.row.rewards {
            if let Some(x) = v {
                out.insert(&format!("reward/{name}"), Unit::Sample, &key, *x)?;
            }
        }
        out.insert(
            "completion_length",
            Unit::Sample,
            &key,
            ro.completion_ids.len() as f64,
        )?;
        if let Some(v) = &validity {
            if let Some(score) = r.row.rewards.get(v) {
                let ok = score.is_some_and(passes);
                out.insert("validity", Unit::Sample, &key, f64::from(u8::from(ok)))?;
            }
        }
        if let Some(p) = &patterns {
            let leak = is_leak(&ro.completion, &ro.prompt, p);
            out.insert("leak_rate", Unit::Sample, &key, f64::from(u8::from(leak)))?;
        }
    }
    Ok(out)
}

/// The k of pass@k: 1, those of `eval.metrics`, and the group size.
fn pass_ks(spec: &Experiment, group: usize) -> BTreeSet<usize> {
    let mut ks: BTreeSet<usize> = spec
        .eval
        .metrics
        .iter()
        .filter_map(|m| m.strip_prefix("pass@")?.parse().ok())
        .collect();
    ks.insert(1);
    ks.insert(group);
    ks.retain(|&k| k >= 1 && k <= group);
    ks
}

/// Per-prompt values of `rows` (grouped by set and prompt index, in order). pass@k needs the
/// spec (its `answer` rewards); semantic diversity needs `embedder`.
pub fn per_prompt(
    spec: Option<&Experiment>,
    rows: &[EvalRow],
    default_set: &str,
    embedder: Option<&Embedder>,
) -> Result<Vec<PromptRow>> {
    let mut groups: BTreeMap<(String, usize), Vec<&EvalRow>> = BTreeMap::new();
    for r in rows {
        let set = r.set.clone().unwrap_or_else(|| default_set.to_string());
        groups
            .entry((set, r.row.rollout.prompt_index))
            .or_default()
            .push(r);
    }
    let answers = spec.map(answer_rewards).unwrap_or_default();
    let mut out = Vec::with_capacity(groups.len());
    for ((set, pi), g) in groups {
        let record_id = g[0].row.rollout.record_id.clone();
        let texts: Vec<&str> = g
            .iter()
            .map(|r| r.row.rollout.completion.as_str())
            .collect();
        let mut values = BTreeMap::new();
        let mut errors = BTreeMap::new();
        let mut put = |name: String, v: Result<f64>| match v {
            Ok(x) => {
                values.insert(name, Some(x));
            }
            Err(e) => {
                values.insert(name.clone(), None);
                errors.insert(name, e.to_string());
            }
        };
        for n in [1usize, 2] {
            put(
                format!("distinct-{n}"),
                distinct_n(&texts, n, Pooling::Pooled),
            );
        }
        put("self-bleu".into(), self_bleu_nltk(&texts, 4));
        put("self-bleu-sacre".into(), self_bleu_sacre(&texts));
        if let Some(emb) = embedder {
            put(
                "semantic".into(),
                emb.embed(&texts)
                    .and_then(|e| crate::metrics::semantic_diversity(&e)),
            );
        }
        if let (Some(spec), false) = (spec, answers.is_empty()) {
            let applying: Vec<Vec<Option<f64>>> = g
                .iter()
                .map(|r| {
                    answers
                        .iter()
                        .filter_map(|a| r.row.rewards.get(a).copied())
                        .collect()
                })
                .collect();
            let any_applies = applying.iter().any(|a| !a.is_empty());
            let correct = applying
                .iter()
                .filter(|a| !a.is_empty() && a.iter().all(|s| s.is_some_and(passes)))
                .count();
            for k in pass_ks(spec, g.len()) {
                let v = if any_applies {
                    pass_at_k(g.len(), correct, k)
                } else {
                    Err(Error::Run(
                        "no answer reward applies to this prompt's completions".into(),
                    ))
                };
                put(format!("pass@{k}"), v);
            }
        }
        out.push(PromptRow {
            key: prompt_key(&set, &record_id),
            set,
            prompt_index: pi,
            record_id,
            samples: g.len(),
            values,
            errors,
        });
    }
    Ok(out)
}
