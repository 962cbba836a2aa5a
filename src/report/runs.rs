//! Run results read back from disk: a run directory (`metrics.csv`, `state.json`, the eval
//! stages' `eval.json` / `eval_completions.jsonl`, `trainer/training_state.json`) or an output
//! directory of `runner eval` (`eval.json`, `eval_completions.jsonl`, `eval_prompts.jsonl`).
//!
//! Names of [`final_metrics`]: `train/<column>` for the last row of `metrics.csv` (TRL names,
//! `train/step` = steps completed), `eval/<metric>` for the last completed eval (its flat
//! metrics, `eval/step` = steps completed when it ran), `eval_best/<metric>` and
//! `eval_best/step` for the best eval kept (`eval.keep_best`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::report::samples;
pub use crate::report::samples::EvalSamples;
use crate::run::dir::{RESOLVED_FILE, STATE_FILE};
use crate::spec::Experiment;
use crate::stages::artifacts::read_jsonl;
use crate::stages::eval::{EvalRow, COMPLETIONS_FILE, EVAL_FILE};
use crate::train::metrics::METRICS_FILE;
use crate::{Error, Result};

/// File of per-prompt metric values written by `runner eval` (see [`samples::PromptRow`]).
pub const PROMPTS_FILE: &str = "eval_prompts.jsonl";

/// What a directory holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirKind {
    /// A run directory (has `state.json`).
    Run,
    /// An output directory of `runner eval` for one checkpoint (has `eval.json`, no state).
    EvalOutput,
}

/// The kind of `dir`, or an error saying what it lacks.
pub fn dir_kind(dir: &Path) -> Result<DirKind> {
    if dir.join(STATE_FILE).is_file() {
        Ok(DirKind::Run)
    } else if dir.join(EVAL_FILE).is_file() {
        Ok(DirKind::EvalOutput)
    } else if dir.is_dir() {
        Err(Error::Run(format!(
            "{} is neither a run directory (no {STATE_FILE}) nor a `runner eval` output (no {EVAL_FILE})",
            dir.display()
        )))
    } else {
        Err(Error::Run(format!("{}: no such directory", dir.display())))
    }
}

/// One completed eval of a run (or the single eval of an eval output).
#[derive(Debug, Clone, PartialEq)]
pub struct EvalPoint {
    /// The stage instance id (`step-0007/eval`, `20250804/eval`; `eval` for an eval output).
    pub id: String,
    /// Optimizer steps completed when it ran (steps mode).
    pub step: Option<usize>,
    /// The partition date (daily loop).
    pub date: Option<String>,
    /// Its flat metrics (null values left out).
    pub metrics: BTreeMap<String, f64>,
    /// Its `eval_completions.jsonl`, when recorded.
    pub completions: Option<PathBuf>,
    /// Its `eval.json`, when recorded.
    pub summary: Option<PathBuf>,
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text)
        .map_err(|e| Error::Run(format!("{}: not valid JSON: {e}", path.display())))
}

/// The numbers of a JSON object (nulls and non-numbers left out).
pub fn numbers(v: &Value) -> BTreeMap<String, f64> {
    v.as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_f64().map(|x| (k.clone(), x)))
                .collect()
        })
        .unwrap_or_default()
}

/// Steps completed of an eval instance id `step-NNNN/eval` (the eval after 0-based step N).
fn step_of_id(id: &str) -> Option<usize> {
    id.strip_prefix("step-")?
        .split('/')
        .next()?
        .parse::<usize>()
        .ok()
        .map(|s| s + 1)
}

/// The completed stage records of a run's `state.json`, in completion order (read as plain
/// JSON, so older and newer state files both read).
pub fn completed_records(run: &Path) -> Result<Vec<Value>> {
    let path = run.join(STATE_FILE);
    let state = read_json(&path)?;
    Ok(state
        .get("completed")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default())
}

/// The completed evals of `dir`, in order: a run's eval stage records (from `state.json`), or
/// the one eval of a `runner eval` output.
pub fn eval_points(dir: &Path) -> Result<Vec<EvalPoint>> {
    match dir_kind(dir)? {
        DirKind::EvalOutput => {
            let summary = dir.join(EVAL_FILE);
            let v = read_json(&summary)?;
            let comp = dir.join(COMPLETIONS_FILE);
            Ok(vec![EvalPoint {
                id: "eval".into(),
                step: None,
                date: None,
                metrics: numbers(v.get("metrics").unwrap_or(&Value::Null)),
                completions: comp.is_file().then_some(comp),
                summary: Some(summary),
            }])
        }
        DirKind::Run => {
            let mut out = Vec::new();
            for rec in completed_records(dir)? {
                if rec.get("kind").and_then(Value::as_str) != Some("eval") {
                    continue;
                }
                let id = rec
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or("eval")
                    .to_string();
                let outputs = rec.get("outputs").cloned().unwrap_or(Value::Null);
                let path_of = |key: &str| {
                    outputs
                        .get(key)
                        .and_then(Value::as_str)
                        .map(|rel| dir.join(rel))
                };
                let summary = path_of("summary");
                let from_summary = summary
                    .as_ref()
                    .filter(|p| p.is_file())
                    .map(|p| read_json(p))
                    .transpose()?;
                let step = from_summary
                    .as_ref()
                    .and_then(|s| s.get("step"))
                    .and_then(Value::as_u64)
                    .map(|s| s as usize + 1)
                    .or_else(|| step_of_id(&id));
                let date = id
                    .split('/')
                    .next()
                    .filter(|p| p.len() == 8 && p.chars().all(|c| c.is_ascii_digit()))
                    .map(str::to_string);
                out.push(EvalPoint {
                    step,
                    date,
                    metrics: numbers(outputs.get("eval").unwrap_or(&Value::Null)),
                    completions: path_of("completions"),
                    summary,
                    id,
                });
            }
            Ok(out)
        }
    }
}

/// The rows of a run's `metrics.csv` (empty when the run has none).
pub fn train_rows(run: &Path) -> Result<Vec<BTreeMap<String, f64>>> {
    let path = run.join(METRICS_FILE);
    if !path.is_file() {
        return Ok(Vec::new());
    }
    crate::train::metrics::read_rows(&path)
}

/// The best eval kept: (metric, value, steps completed), from the trainer state, else from the
/// last eval's record.
pub fn best_eval(run: &Path) -> Result<Option<(String, f64, usize)>> {
    let st = run
        .join(crate::train::state::TRAINER_DIR)
        .join(crate::train::state::STATE_FILE);
    let from = |b: &Value| -> Option<(String, f64, usize)> {
        Some((
            b.get("metric")?.as_str()?.to_string(),
            b.get("value")?.as_f64()?,
            b.get("step")?.as_u64()? as usize,
        ))
    };
    if st.is_file() {
        if let Some(b) = read_json(&st)?.get("best").and_then(from) {
            return Ok(Some(b));
        }
    }
    if !run.join(STATE_FILE).is_file() {
        return Ok(None);
    }
    let last = completed_records(run)?
        .into_iter()
        .rev()
        .find(|r| r.get("kind").and_then(Value::as_str) == Some("eval"));
    Ok(last
        .as_ref()
        .and_then(|r| r.get("outputs"))
        .and_then(|o| o.get("eval_best"))
        .and_then(from))
}

/// The final metrics of a run directory: last row of metrics.csv (`train/<name>`) and the last
/// eval (`eval/<name>`), plus `eval_best/<metric>` and `eval_best/step` when kept. Also works on
/// a `runner eval` output (its `eval/<name>`). Error (naming the files looked for) when the
/// directory has neither.
pub fn final_metrics(run_dir: &Path) -> Result<BTreeMap<String, f64>> {
    let kind = dir_kind(run_dir)?;
    let mut out = BTreeMap::new();
    if kind == DirKind::Run {
        if let Some(last) = train_rows(run_dir)?.pop() {
            for (k, v) in last {
                out.insert(format!("train/{k}"), v);
            }
        }
    }
    if let Some(last) = eval_points(run_dir)?.pop() {
        for (k, v) in &last.metrics {
            out.insert(format!("eval/{k}"), *v);
        }
        if let Some(s) = last.step {
            out.insert("eval/step".into(), s as f64);
        }
    }
    if kind == DirKind::Run {
        if let Some((m, v, s)) = best_eval(run_dir)? {
            out.insert(format!("eval_best/{m}"), v);
            out.insert("eval_best/step".into(), s as f64);
        }
    }
    if out.is_empty() {
        return Err(Error::Run(format!(
            "{}: no results yet: {} has no rows and no eval has completed ({})",
            run_dir.display(),
            run_dir.join(METRICS_FILE).display(),
            match kind {
                DirKind::Run => run_dir.join(STATE_FILE).display().to_string(),
                DirKind::EvalOutput => run_dir.join(EVAL_FILE).display().to_string(),
            }
        )));
    }
    Ok(out)
}

/// The resolved spec recorded in `dir` (`spec.resolved.yaml`), if present and readable by this
/// build (a spec of an older schema reads as `None` with the reason).
pub fn recorded_spec(dir: &Path) -> std::result::Result<Option<Experiment>, String> {
    let path = dir.join(RESOLVED_FILE);
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_yaml::from_str(&text)
        .map(Some)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Per-sample eval values of a run (its last completed eval) or of a `runner eval` output, for
/// paired tests: per metric, sample key → value. Per-completion metrics are keyed
/// `<set>/<record id>/<sample index>`, per-prompt metrics (diversity, pass@k)
/// `<set>/<record id>` (see [`samples`]).
pub fn eval_samples(dir: &Path) -> Result<EvalSamples> {
    let kind = dir_kind(dir)?;
    let point = eval_points(dir)?.pop().ok_or_else(|| {
        Error::Run(format!(
            "{}: no eval has completed (nothing to compare per sample)",
            dir.display()
        ))
    })?;
    let comp = point.completions.clone().ok_or_else(|| {
        Error::Run(format!(
            "{}: eval {} recorded no completions file",
            dir.display(),
            point.id
        ))
    })?;
    let rows: Vec<EvalRow> = read_jsonl(&comp)?;
    if rows.is_empty() {
        return Err(Error::Run(format!("{}: no completions", comp.display())));
    }
    let mut notes = Vec::new();
    let spec = match recorded_spec(dir) {
        Ok(s) => s,
        Err(e) => {
            notes.push(format!(
                "spec not readable ({e}): validity, leak_rate and pass@k left out"
            ));
            None
        }
    };
    let default_set = spec
        .as_ref()
        .and_then(|s| s.eval.sets.first().cloned())
        .unwrap_or_else(|| "eval".into());
    let mut out = samples::per_sample(spec.as_ref(), &rows, &default_set)?;
    out.notes.extend(notes);
    // Per-prompt values: those `runner eval` computed (with semantic diversity when it had an
    // embedder), else computed here from the completions.
    let prompts_file = comp.with_file_name(PROMPTS_FILE);
    let per_prompt = if kind == DirKind::EvalOutput && prompts_file.is_file() {
        samples::read_prompt_rows(&prompts_file)?
    } else {
        samples::per_prompt(spec.as_ref(), &rows, &default_set, None)?
    };
    out.merge_prompt_rows(&per_prompt);
    out.source = Some(comp);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_ids() {
        assert_eq!(step_of_id("step-0007/eval"), Some(8));
        assert_eq!(step_of_id("20250804/eval"), None);
    }

    #[test]
    fn no_results_is_an_error_naming_files() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join(STATE_FILE), r#"{"completed": []}"#).unwrap();
        let e = final_metrics(d.path()).unwrap_err().to_string();
        assert!(e.contains("metrics.csv") && e.contains("state.json"), "{e}");
        let e = final_metrics(&d.path().join("nope"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no such directory"), "{e}");
    }
}
