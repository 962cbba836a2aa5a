//! `runner apply --resume` continues exactly: a run stopped after step k and resumed ends with
//! the same adapter (bitwise) and optimizer state as an uninterrupted run of n steps. The
//! rollouts come from fake generate/score/rank stages (tests/support_train), the training from
//! the real train stage, with LoRA dropout on.

mod common;
mod support_train;

use runner::run::RunState;
use runner::train::{checkpoint, state};
use support_train::*;

const N: usize = 5;

fn setup() -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let base = write_model(&tmp.path().join("model"));
    let spec = tmp.path().join("tiny.yaml");
    std::fs::write(&spec, spec_yaml(&base, N, "", "")).unwrap();
    (tmp, spec)
}

fn final_adapter(run: &std::path::Path) -> std::collections::BTreeMap<String, Vec<f64>> {
    tensors(&run.join("trainer/adapter_model.safetensors"))
}

fn final_optimizer(run: &std::path::Path) -> std::collections::BTreeMap<String, Vec<f64>> {
    tensors(&run.join("trainer/optimizer.safetensors"))
}

fn uninterrupted(spec: &std::path::Path, runs: &std::path::Path) -> std::path::PathBuf {
    let rep = apply_spec(spec, runs, &registry(None, None)).unwrap();
    assert_eq!(rep.summary.executed, 4 * N);
    rep.run_dir
}

#[test]
fn stop_after_step_k_then_resume_matches_uninterrupted_run() {
    let (tmp, spec) = setup();
    let a = uninterrupted(&spec, &tmp.path().join("runs_a"));
    let st = state::load(&runner::run::RunDir::open(&a).unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(st.step, N);
    assert!(a
        .join("checkpoints/final/adapter_model.safetensors")
        .is_file());
    // keep_last 1 of every-2 checkpoints: only checkpoint-4 is left.
    assert_eq!(
        checkpoint::numbered(&runner::run::RunDir::open(&a).unwrap()).unwrap(),
        vec![4]
    );

    // Crash when generating step 2 (after steps 0 and 1 trained), then resume in a new process.
    let runs_b = tmp.path().join("runs_b");
    let err = apply_spec(&spec, &runs_b, &registry(Some(2), None)).unwrap_err();
    assert!(err.to_string().contains("injected failure"), "{err}");
    let b = only_run(&runs_b);
    let mid = state::load(&runner::run::RunDir::open(&b).unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(mid.step, 2);
    let rep = resume(&b, &registry(None, None)).unwrap();
    assert!(rep.resumed);
    assert_eq!(rep.summary.skipped, 8);

    let (fa, fb) = (final_adapter(&a), final_adapter(&b));
    assert!(!fa.is_empty());
    assert_eq!(fa, fb, "adapters differ after resume");
    assert_eq!(final_optimizer(&a), final_optimizer(&b));
    // The metrics rows are the same steps, with the same losses.
    let ra = runner::train::metrics::read_rows(&a.join("metrics.csv")).unwrap();
    let rb = runner::train::metrics::read_rows(&b.join("metrics.csv")).unwrap();
    assert_eq!(ra.len(), N);
    assert_eq!(rb.len(), N);
    for (x, y) in ra.iter().zip(&rb) {
        assert_eq!(x["step"], y["step"]);
        assert_eq!(x["loss"], y["loss"]);
        assert_eq!(x["grad_norm"], y["grad_norm"]);
    }
}

#[test]
fn crash_between_trainer_save_and_state_json_is_recovered() {
    let (tmp, spec) = setup();
    let a = uninterrupted(&spec, &tmp.path().join("runs_a"));

    let runs_b = tmp.path().join("runs_b");
    apply_spec(&spec, &runs_b, &registry(Some(3), None)).unwrap_err();
    let b = only_run(&runs_b);
    // Pretend the process died after the trainer state of step 2 was written but before
    // state.json recorded step-0002/train.
    let sp = b.join("state.json");
    let mut st = RunState::load(&sp).unwrap();
    let n = st.completed.len();
    assert_eq!(st.completed[n - 1].id, "step-0002/train");
    st.completed.pop();
    st.save(&sp).unwrap();
    resume(&b, &registry(None, None)).unwrap();
    assert_eq!(final_adapter(&a), final_adapter(&b));
    assert_eq!(
        runner::train::metrics::read_rows(&b.join("metrics.csv"))
            .unwrap()
            .len(),
        N
    );
}

#[test]
fn truncated_trainer_file_is_a_clear_error() {
    let (tmp, spec) = setup();
    let runs = tmp.path().join("runs");
    apply_spec(&spec, &runs, &registry(Some(2), None)).unwrap_err();
    let b = only_run(&runs);
    let f = b.join("trainer/adapter_model.safetensors");
    let bytes = std::fs::read(&f).unwrap();
    std::fs::write(&f, &bytes[..bytes.len() / 2]).unwrap();
    let err = resume(&b, &registry(None, None)).unwrap_err().to_string();
    assert!(err.contains("corrupt or truncated"), "{err}");
    assert!(err.contains("adapter_model.safetensors"), "{err}");
}
