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
    let spec = common::tiny_spec(
        &m,
        &dir.join("train.jsonl"),
        Some(&dir.join("eval.jsonl")),
        &format!(
            "name: tinysweep\n\
             model: {{threads: 1}}\n\
             generate: {{max_completion_length: 4}}\n\
             rewards: {{correct: ~}}\n\
             train: {{max_steps: 1}}\n\
             eval: {{every: ~, metrics: [mean_reward, completion_length]}}\n\
             {sweep_yaml}"
        ),
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
