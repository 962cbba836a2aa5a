//! `runner eval`: evaluate checkpoints on a spec's fixed eval prompt set.
//!
//! Every checkpoint samples `eval.num_generations` completions per prompt of each `eval.sets`
//! set (the first `eval.max_examples` records) with the eval sampler and the same fixed seed as
//! the eval stage, so checkpoints see identical prompts and random streams. Completions are
//! scored with the spec's rewards; the metrics are the spec's `eval.metrics` (as the eval
//! stage computes them) plus the per-sample / per-prompt metrics of
//! [`crate::report::samples`] (distinct-n, Self-BLEU NLTK and sacrebleu, semantic diversity
//! with an embedder, pass@k with `answer` rewards), means over samples / prompts.
//!
//! Checkpoints: `base` (the spec's base model, no adapter), a directory holding a trainer
//! state snapshot (`training_state.json`: LoRA or full weights, checksums verified), a PEFT
//! adapter directory (`adapter_config.json` + `adapter_model.safetensors`), or a run directory
//! (its `checkpoints/final/`, else `checkpoints/final_model/`, else `trainer/`).
//!
//! Output: `<out>/index.json` (the checkpoints in order) and per checkpoint
//! `<out>/<NN>-<label>/` with `eval.json` (summary), `eval_completions.jsonl` (scored
//! completions), `eval_prompts.jsonl` (per-prompt values) and `spec.resolved.yaml`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{json, Map, Value};

use crate::report::samples::{per_prompt, PromptRow};
use crate::rewards::semantic::Embedder;
use crate::run::atomic;
use crate::spec::Experiment;
use crate::stages::artifacts::write_jsonl;
use crate::stages::eval::{
    chosen_records, merge_sets, score_set, EvalRow, EvalSetup, COMPLETIONS_FILE, EVAL_FILE,
};
use crate::stages::generate::sample;
use crate::stages::policy::Policy;
use crate::stages::Resources;
use crate::{Error, Result};

/// Where a checkpoint's weights come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Weights {
    /// The base model alone.
    Base,
    /// A trainer state snapshot (`training_state.json`).
    TrainerState(PathBuf),
    /// A PEFT adapter directory.
    Adapter(PathBuf),
}

/// A checkpoint to evaluate.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// Short name (column label in `runner compare`).
    pub label: String,
    /// As given on the command line.
    pub source: String,
    pub weights: Weights,
}

fn is_state(dir: &Path) -> bool {
    dir.join(crate::train::state::STATE_FILE).is_file()
}

fn is_adapter(dir: &Path) -> bool {
    dir.join("adapter_config.json").is_file()
}

fn name_of(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.display().to_string())
}

/// Resolve a `--checkpoint` argument.
pub fn resolve_checkpoint(arg: &str) -> Result<Checkpoint> {
    if arg == "base" {
        return Ok(Checkpoint {
            label: "base".into(),
            source: arg.into(),
            weights: Weights::Base,
        });
    }
    let dir = PathBuf::from(arg);
    if !dir.is_dir() {
        return Err(Error::Run(format!(
            "checkpoint {arg}: no such directory (give `base`, a checkpoint or adapter directory, \
             or a run directory)"
        )));
    }
    let weights_in = |d: &Path| -> Option<Weights> {
        if is_state(d) {
            Some(Weights::TrainerState(d.to_path_buf()))
        } else if is_adapter(d) {
            Some(Weights::Adapter(d.to_path_buf()))
        } else {
            None
        }
    };
    if let Some(w) = weights_in(&dir) {
        // `run/checkpoints/best` → `run-name/best`.
        let parent = dir.parent().map(name_of).unwrap_or_default();
        let label = if parent == crate::train::checkpoint::CHECKPOINTS_DIR {
            let run = dir.parent().and_then(Path::parent);
            let run_name = run.and_then(Path::parent).map(name_of).unwrap_or_default();
            format!("{run_name}/{}", name_of(&dir))
        } else {
            name_of(&dir)
        };
        return Ok(Checkpoint {
            label,
            source: arg.into(),
            weights: w,
        });
    }
    if dir.join(crate::run::dir::STATE_FILE).is_file() {
        let ck = dir.join(crate::train::checkpoint::CHECKPOINTS_DIR);
        let candidates = [
            ck.join("final"),
            ck.join(crate::train::checkpoint::FINAL_MODEL),
            dir.join(crate::train::state::TRAINER_DIR),
        ];
        for c in &candidates {
            if let Some(w) = weights_in(c) {
                let run_name = dir.parent().map(name_of).unwrap_or_else(|| name_of(&dir));
                return Ok(Checkpoint {
                    label: run_name,
                    source: arg.into(),
                    weights: w,
                });
            }
        }
        return Err(Error::Run(format!(
            "checkpoint {arg}: the run has no trained weights yet (looked in {})",
            candidates
                .iter()
                .map(|c| c.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Err(Error::Run(format!(
        "checkpoint {arg}: neither a checkpoint (training_state.json), a PEFT adapter \
         (adapter_config.json) nor a run directory (state.json)"
    )))
}

/// Load the spec's base model with a checkpoint's weights.
pub fn load_checkpoint(spec: &Experiment, ck: &Checkpoint) -> Result<Policy> {
    let loaded = crate::stages::policy::load_base(spec)?;
    let mut model = loaded.model;
    match &ck.weights {
        Weights::Base => {}
        Weights::TrainerState(dir) => {
            let st = crate::train::state::read_verified(dir)?;
            crate::train::state::load_weights(dir, &st, &mut model)?;
        }
        Weights::Adapter(dir) => {
            crate::engine::peft::load_adapter(&mut model, dir)?;
        }
    }
    model.set_training(false);
    Ok(Policy {
        model: Arc::new(model),
        tok: Arc::new(loaded.tokenizer),
    })
}

/// Options of [`evaluate`].
pub struct EvalOptions<'a> {
    /// Partition date for date-partitioned eval sets.
    pub date: Option<String>,
    /// Sentence embedder for semantic diversity.
    pub embedder: Option<&'a Embedder>,
}

/// Means of the per-prompt values, per set (the first set's names plain, others `<set>/`).
fn prompt_means(spec: &Experiment, rows: &[PromptRow]) -> Map<String, Value> {
    let sets = spec.eval_sets();
    let mut sums: std::collections::BTreeMap<String, (f64, usize)> = Default::default();
    for r in rows {
        let prefix = match sets.iter().position(|s| *s == r.set) {
            Some(0) | None => String::new(),
            Some(_) => format!("{}/", r.set),
        };
        for (m, v) in &r.values {
            if let Some(x) = v {
                let e = sums.entry(format!("{prefix}{m}")).or_insert((0.0, 0));
                e.0 += x;
                e.1 += 1;
            }
        }
    }
    sums.into_iter()
        .map(|(k, (s, n))| (k, json!(s / n as f64)))
        .collect()
}

/// Evaluate one checkpoint into `dir` (created); returns its `eval.json` summary.
pub fn evaluate(
    spec: &Experiment,
    ck: &Checkpoint,
    dir: &Path,
    opts: &EvalOptions<'_>,
) -> Result<Value> {
    let setup = EvalSetup::new(spec)?;
    let policy = load_checkpoint(spec, ck)?;
    let rset = crate::stages::score::build_reward_set(spec, Some(&policy))?;
    let mut resources = Resources::default();
    let mut results = Vec::new();
    for set in spec.eval_sets() {
        let records = crate::data::sets::cached(&mut resources, spec, set, opts.date.as_deref())?;
        let chosen = chosen_records(spec, &records);
        let (rows, stats) = sample(
            &policy,
            spec,
            &chosen,
            setup.num_generations,
            &setup.params,
            setup.seed,
        )?;
        results.push(score_set(
            spec,
            &setup,
            &rset,
            set,
            rows,
            &stats,
            chosen.len(),
        )?);
    }
    if results.is_empty() {
        return Err(Error::Spec(
            "eval.sets names no defined data set: nothing to evaluate".into(),
        ));
    }
    let (mut flat, per_set) = merge_sets(&results);
    let rows: Vec<EvalRow> = results.into_iter().flat_map(|r| r.rows).collect();
    let default_set = spec.eval_sets().first().map_or("eval", |s| *s).to_string();
    let prompts = per_prompt(Some(spec), &rows, &default_set, opts.embedder)?;
    for (k, v) in prompt_means(spec, &prompts) {
        flat.insert(k, v);
    }
    let mut samples = crate::report::samples::per_sample(Some(spec), &rows, &default_set)?;
    samples.merge_prompt_rows(&prompts);
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    write_jsonl(&dir.join(COMPLETIONS_FILE), &rows)?;
    write_jsonl(&dir.join(crate::report::runs::PROMPTS_FILE), &prompts)?;
    atomic::write_text(
        &dir.join(crate::run::dir::RESOLVED_FILE),
        &crate::spec::resolve::resolved_yaml(spec)?,
    )?;
    let weights = match &ck.weights {
        Weights::Base => Value::Null,
        Weights::TrainerState(p) | Weights::Adapter(p) => json!(p.display().to_string()),
    };
    let summary = json!({
        "checkpoint": {"label": ck.label, "source": ck.source, "weights": weights},
        "spec": spec.name,
        "base": spec.model.base,
        "metrics": flat,
        "sets": per_set,
        "seed": setup.seed,
        "num_generations": setup.num_generations,
        "date": opts.date,
        "notes": samples.notes,
        "runner_version": crate::VERSION,
    });
    atomic::write_json(&dir.join(EVAL_FILE), &summary)?;
    Ok(summary)
}

/// The output directory name of checkpoint `i`.
pub fn output_name(i: usize, ck: &Checkpoint) -> String {
    format!(
        "{i:02}-{}",
        crate::run::safe_name(&ck.label.replace('/', "-"))
    )
}

/// Write `<out>/index.json` listing the checkpoints' output directories in order.
pub fn write_index(out: &Path, spec: &Experiment, done: &[(Checkpoint, String)]) -> Result<()> {
    let list: Vec<Value> = done
        .iter()
        .map(|(ck, d)| json!({"label": ck.label, "source": ck.source, "dir": d}))
        .collect();
    atomic::write_json(
        &out.join(crate::report::compare::EVAL_INDEX_FILE),
        &json!({"spec": spec.name, "checkpoints": list}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_arguments() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(resolve_checkpoint("base").unwrap().weights, Weights::Base);
        let e = resolve_checkpoint(d.path().join("nope").to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("no such directory"), "{e}");
        // A run directory without weights names where it looked.
        let run = d.path().join("myrun").join("20260101T000000Z-abcd");
        std::fs::create_dir_all(&run).unwrap();
        std::fs::write(run.join("state.json"), "{}").unwrap();
        let e = resolve_checkpoint(run.to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("checkpoints/final"), "{e}");
        // Its final snapshot.
        let fin = run.join("checkpoints").join("final");
        std::fs::create_dir_all(&fin).unwrap();
        std::fs::write(fin.join("training_state.json"), "{}").unwrap();
        let ck = resolve_checkpoint(run.to_str().unwrap()).unwrap();
        assert_eq!(ck.weights, Weights::TrainerState(fin.clone()));
        assert_eq!(ck.label, "myrun");
        let ck = resolve_checkpoint(fin.to_str().unwrap()).unwrap();
        assert_eq!(ck.label, "myrun/final");
        assert_eq!(output_name(1, &ck), "01-myrun-final");
        // A bare adapter directory.
        let ad = d.path().join("adapter");
        std::fs::create_dir_all(&ad).unwrap();
        std::fs::write(ad.join("adapter_config.json"), "{}").unwrap();
        assert_eq!(
            resolve_checkpoint(ad.to_str().unwrap()).unwrap().weights,
            Weights::Adapter(ad)
        );
    }
}
