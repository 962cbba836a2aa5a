//! A tiny project for sweep tests: a tiny random Llama with the character tokenizer, a few
//! rows of data and a spec with a sweep, all in a temp directory that the tests run `runner`
//! in (each test binary includes this with `mod sweep_support;` after `mod common;`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common;

/// Write the tiny model, the data and `sweep.yaml` (with `sweep_yaml` as its `sweep:` section)
/// into `dir`; the spec's path.
pub fn project(dir: &Path, sweep_yaml: &str) -> PathBuf {
    let m = common::tiny_model_dir(dir, 7);
    std::fs::write(dir.join("train.jsonl"), common::arithmetic_rows("t", 4)).unwrap();
    std::fs::write(dir.join("eval.jsonl"), common::arithmetic_rows("e", 2)).unwrap();
    let spec = format!(
        r#"name: tinysweep
seed: 3
model:
  base: {model}
  threads: 1
  adapter: {{r: 4, lora_alpha: 8, lora_dropout: 0.0, target_modules: [q_proj, v_proj]}}
data:
  train:
    path: {train}
    fields: {{prompt: question, reference: answer, id: id}}
  eval:
    path: {eval}
    fields: {{prompt: question, reference: answer, id: id}}
  prompt:
    template: "{{{{ question }}}} answer:"
generate:
  num_generations: 2
  max_completion_length: 4
  temperature: 1.0
rewards:
  format:
    kind: format
    weight: 1.0
    regex: '[0-9]'
train:
  learning_rate: 1.0e-3
  lr_scheduler_type: constant
  max_steps: 1
  batch_size: 2
eval:
  sets: [eval]
  num_generations: 2
  metrics: [mean_reward, completion_length]
{sweep_yaml}
"#,
        model = m.display(),
        train = dir.join("train.jsonl").display(),
        eval = dir.join("eval.jsonl").display(),
    );
    let path = dir.join("sweep.yaml");
    std::fs::write(&path, spec).unwrap();
    path
}

/// Run the `runner` binary in `dir`.
pub fn runner(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_runner"))
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .args(args)
        .output()
        .expect("runner starts")
}

/// stdout + stderr of an output, for assertion messages.
pub fn text(o: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}\n--- stderr\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The rows of a CSV file as header → value maps.
pub fn csv_rows(path: &Path) -> Vec<std::collections::BTreeMap<String, String>> {
    let mut r = csv::Reader::from_path(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let header: Vec<String> = r.headers().unwrap().iter().map(str::to_string).collect();
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            header
                .iter()
                .cloned()
                .zip(rec.iter().map(str::to_string))
                .collect()
        })
        .collect()
}
