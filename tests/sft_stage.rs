//! The `sft` stage through `runner::run::apply` on a tiny random model: the warm-up runs before
//! RL, its cross-entropy on the reference answers falls over the epochs, it leaves the trainer
//! state the RL steps continue from, and bad SFT data is a clear error.

mod common;

use std::path::{Path, PathBuf};

use runner::run::ApplyRequest;
use runner::stages::Registry;

fn tiny_model(dir: &Path) -> PathBuf {
    common::tiny_model_dir(dir, 11)
}

fn write_data(dir: &Path, with_reference: bool) -> PathBuf {
    let p = dir.join("train.jsonl");
    let rows: String = (0..4)
        .map(|i| {
            if with_reference {
                format!(
                    "{{\"id\": \"t-{i}\", \"question\": \"what is {i} + {i}?\", \"answer\": \"{}\"}}\n",
                    2 * i
                )
            } else {
                format!("{{\"id\": \"t-{i}\", \"question\": \"what is {i} + {i}?\"}}\n")
            }
        })
        .collect();
    std::fs::write(&p, rows).unwrap();
    p
}

fn spec(dir: &Path, model: &Path, train: &Path, rl_steps: usize) -> PathBuf {
    let text = common::tiny_spec(
        model,
        train,
        None,
        &format!(
            "name: tiny_sft\nseed: 5\n\
             generate: {{max_completion_length: 4, temperature: ~}}\n\
             rewards: {{correct: ~}}\n\
             train: {{max_steps: {rl_steps}, sft: {{epochs: 6, learning_rate: 3.0e-2, batch_size: 2}}}}"
        ),
    );
    let p = dir.join("tiny_sft.yaml");
    std::fs::write(&p, text).unwrap();
    p
}

fn losses(run: &Path) -> Vec<f64> {
    let mut r = csv::Reader::from_path(run.join("sft_metrics.csv")).unwrap();
    let headers = r.headers().unwrap().clone();
    let col = headers.iter().position(|h| h == "loss").unwrap();
    r.records()
        .map(|row| row.unwrap()[col].parse::<f64>().unwrap())
        .collect()
}

#[test]
fn sft_warm_up_lowers_the_loss_and_rl_continues_from_it() {
    let d = tempfile::tempdir().unwrap();
    let model = tiny_model(d.path());
    let train = write_data(d.path(), true);
    let spec = spec(d.path(), &model, &train, 1);
    let req = ApplyRequest {
        input: Some(spec),
        runs_dir: d.path().join("runs"),
        ..ApplyRequest::default()
    };
    let report = runner::run::apply(&req, &Registry::builtin()).unwrap();
    let run = report.run_dir;

    // 4 records × 6 epochs / batch 2 = 12 steps, each with a finite loss.
    let l = losses(&run);
    assert_eq!(l.len(), 12, "{l:?}");
    assert!(l.iter().all(|x| x.is_finite() && *x > 0.0), "{l:?}");
    let first: f64 = l[..3].iter().sum::<f64>() / 3.0;
    let last: f64 = l[l.len() - 3..].iter().sum::<f64>() / 3.0;
    assert!(
        last < 0.8 * first,
        "SFT loss should fall: first {first}, last {last} ({l:?})"
    );

    // The sft instance ran first and recorded its steps; RL step 0 ran after it.
    let state = runner::run::RunState::load(&run.join("state.json")).unwrap();
    let sft = state.record("sft").expect("sft instance recorded");
    assert_eq!(sft.outputs["steps"], 12);
    assert!(state.record("step-0000/train").is_some());
    // The trainer state is past the warm-up: 12 SFT steps, then 1 RL step.
    let ts: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(run.join("trainer/training_state.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(ts["sft_steps"], 12, "{ts}");
    assert_eq!(ts["step"], 1, "{ts}");
}

#[test]
fn sft_data_without_the_reference_field_is_a_clear_error() {
    let d = tempfile::tempdir().unwrap();
    let model = tiny_model(d.path());
    let train = write_data(d.path(), false);
    let spec = spec(d.path(), &model, &train, 1);
    let req = ApplyRequest {
        input: Some(spec),
        runs_dir: d.path().join("runs"),
        ..ApplyRequest::default()
    };
    let err = runner::run::apply(&req, &Registry::builtin())
        .unwrap_err()
        .to_string();
    // Named with file:line and the field, before any step ran.
    assert!(err.contains("train.jsonl:1"), "{err}");
    assert!(err.contains("reference field `answer` is missing"), "{err}");
}
