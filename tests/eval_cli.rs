//! `runner eval` end to end on a tiny random model: two checkpoints (the base model and a PEFT
//! adapter directory) on the spec's fixed eval prompts, their output directories, and the
//! comparison printed at the end.

mod common;

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use runner::engine::load::{load, LoadOptions};
use runner::engine::model::LoraConfig;

fn tiny_model(dir: &Path) -> PathBuf {
    common::tiny_model_dir(dir, 7)
}

fn spec(dir: &Path, model: &Path) -> PathBuf {
    let eval = dir.join("eval.jsonl");
    let rows: String = (0..3)
        .map(|i| {
            format!(
                "{{\"id\": \"e-{i}\", \"question\": \"what is {i} + {i}?\", \"answer\": \"{}\"}}\n",
                2 * i
            )
        })
        .collect();
    std::fs::write(&eval, rows).unwrap();
    let p = dir.join("tiny.yaml");
    std::fs::write(
        &p,
        format!(
            r#"
name: tiny
seed: 3
model:
  base: {model}
data:
  eval:
    path: {eval}
    fields: {{prompt: question, reference: answer, id: id}}
  prompt:
    template: "{{{{ question }}}} answer:"
generate:
  max_completion_length: 8
  temperature: 1.0
rewards:
  format:
    kind: format
    regex: '[0-9]'
  correct:
    kind: answer
eval:
  sets: [eval]
  num_generations: 3
  metrics: [mean_reward, reward/format, distinct_2, pass@2]
"#,
            model = model.display(),
            eval = eval.display()
        ),
    )
    .unwrap();
    p
}

#[test]
fn eval_two_checkpoints_and_compare() {
    let d = tempfile::tempdir().unwrap();
    let model = tiny_model(d.path());
    let spec = spec(d.path(), &model);
    // A PEFT adapter (fresh LoRA: B = 0, so it samples as the base model does).
    let mut loaded = load(model.to_str().unwrap(), &LoadOptions::default()).unwrap();
    let cfg = LoraConfig {
        r: 2,
        alpha: 4.0,
        dropout: 0.0,
        target_modules: vec!["q_proj".into(), "v_proj".into()],
    };
    loaded.model.attach_lora(&cfg, 1).unwrap();
    let adapter = d.path().join("adapter");
    runner::engine::peft::save_adapter(&loaded.model, &adapter).unwrap();

    let out_dir = d.path().join("evals");
    let out = Command::cargo_bin("runner")
        .unwrap()
        .arg("eval")
        .arg(&spec)
        .args(["--checkpoint", "base", "--checkpoint"])
        .arg(&adapter)
        .arg("--out")
        .arg(&out_dir)
        .args(["--resamples", "200", "--no-env"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("index.json")).unwrap())
            .unwrap();
    let cks = index["checkpoints"].as_array().unwrap();
    assert_eq!(cks[0]["dir"], "00-base");
    assert_eq!(cks[1]["dir"], "01-adapter");
    for c in cks {
        let dir = out_dir.join(c["dir"].as_str().unwrap());
        let summary: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("eval.json")).unwrap()).unwrap();
        let m = &summary["metrics"];
        for k in ["mean_reward", "reward/format", "pass@1", "pass@2", "pass@3"] {
            assert!(m[k].is_number(), "{k} missing in {m:#}");
        }
        let rows = std::fs::read_to_string(dir.join("eval_completions.jsonl")).unwrap();
        assert_eq!(rows.lines().count(), 9, "3 prompts × 3 completions");
        let prompts = std::fs::read_to_string(dir.join("eval_prompts.jsonl")).unwrap();
        assert_eq!(prompts.lines().count(), 3);
        assert!(dir.join("spec.resolved.yaml").is_file());
    }
    // A zero-B adapter samples exactly as the base: every paired difference is 0 → p = 1.
    let v = runner::report::compare::compare(
        std::slice::from_ref(&out_dir),
        &runner::report::compare::CompareOptions {
            resamples: 100,
            ..Default::default()
        },
    )
    .unwrap();
    let row = v.rows.iter().find(|r| r.metric == "mean_reward").unwrap();
    assert_eq!(row.cells[1].p, Some(1.0));
    assert_eq!(row.cells[1].diff, Some(0.0));
    assert!(
        stdout.contains("| Metric | base (baseline) | adapter | Change | p |"),
        "{stdout}"
    );
    assert!(out_dir.join("compare.md").is_file());
}

#[test]
fn eval_refuses_unknown_checkpoints() {
    let d = tempfile::tempdir().unwrap();
    let model = tiny_model(d.path());
    let spec = spec(d.path(), &model);
    let out = Command::cargo_bin("runner")
        .unwrap()
        .arg("eval")
        .arg(&spec)
        .arg("--checkpoint")
        .arg(d.path().join("missing"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such directory"));
}
