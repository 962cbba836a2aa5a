//! The train stage: one optimizer step changes the adapter, positive advantages raise a
//! completion's log-probability (and negative ones lower it), NaN stops the run with the last
//! good trainer state kept, and monitors warn or stop with a checkpoint.

mod common;
mod support_train;

use candle_core::{DType, Device, Tensor};
use runner::engine::load::{self, LoadOptions, ModelFiles};
use runner::engine::model::{LoraConfig, Model, TrainBatch};
use runner::run::events::read_events;
use runner::run::{RunDir, RunState};
use runner::spec::{LossType, Train};
use runner::stages::train::{optimizer_step, Sample, StepConfig};
use runner::train::loss::LossConfig;
use runner::train::{metrics, state};
use support_train::*;

fn tiny_lora_model(dir: &std::path::Path) -> Model {
    let base = write_model(dir);
    let opts = LoadOptions {
        dtype: DType::F32,
        device: Device::Cpu,
        lora: Some(LoraConfig {
            r: 4,
            alpha: 8.0,
            dropout: 0.0,
            target_modules: vec!["q_proj".into(), "v_proj".into()],
        }),
    };
    load::load_model(&ModelFiles::HfDir(base), &opts).unwrap().0
}

fn cfg(lr: f64) -> StepConfig {
    let train = Train {
        loss_type: LossType::Dapo,
        ..Train::default()
    };
    StepConfig {
        loss: LossConfig::from_spec(&train, 8),
        temperature: 1.0,
        micro_batch_size: 1,
        num_iterations: 1,
        max_grad_norm: Some(1.0),
        mask_truncated: false,
        lr,
        dropout_seed: 1,
        grad_share: false,
    }
}

fn sample(completion: &[u32], advantage: f64) -> Sample {
    Sample {
        prompt_ids: vec![5, 17, 3],
        completion_ids: completion.to_vec(),
        old_logprobs: vec![0.0; completion.len()],
        advantage,
        quality_advantage: None,
        truncated: false,
    }
}

/// Sum of the log-probs of `s`'s completion tokens under `model`.
fn completion_logprob(model: &Model, s: &Sample) -> f64 {
    let ids: Vec<u32> = s
        .prompt_ids
        .iter()
        .chain(&s.completion_ids)
        .copied()
        .collect();
    let t = ids.len();
    let batch = TrainBatch {
        input_ids: Tensor::from_vec(ids, (1, t), &Device::Cpu).unwrap(),
        completion_mask: Tensor::zeros((1, t), DType::F32, &Device::Cpu).unwrap(),
    };
    let lp = model.token_logprobs(&batch).unwrap();
    let lp = lp.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let p = s.prompt_ids.len();
    lp[p - 1..].iter().map(|x| *x as f64).sum()
}

#[test]
fn one_step_changes_the_adapter() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_lora_model(&tmp.path().join("m"));
    let mut opt = adamw(&model, 0.0, 0.0);
    let before = trainable_values(&model);
    let samples = vec![sample(&[8, 9, 2], 1.0), sample(&[10, 11], -1.0)];
    let st = optimizer_step(&model, &mut opt, &samples, &cfg(1e-2)).unwrap();
    assert!(st.loss.is_finite() && st.grad_norm > 0.0, "{st:?}");
    assert_eq!(st.loss_tokens, 5.0);
    assert_eq!(st.tokens, 11);
    assert_ne!(before, trainable_values(&model));
    assert_eq!(opt.step_count(), 1);
}

#[test]
fn advantages_move_log_probs_their_way() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_lora_model(&tmp.path().join("m"));
    let mut opt = adamw(&model, 0.0, 0.0);
    let good = sample(&[8, 9, 2], 1.0);
    let bad = sample(&[30, 31, 2], -1.0);
    let samples = vec![good.clone(), bad.clone()];
    let (g0, b0) = (
        completion_logprob(&model, &good),
        completion_logprob(&model, &bad),
    );
    let mut nll = vec![-g0];
    for _ in 0..6 {
        optimizer_step(&model, &mut opt, &samples, &cfg(2e-2)).unwrap();
        nll.push(-completion_logprob(&model, &good));
    }
    let b1 = completion_logprob(&model, &bad);
    // The positive-advantage completion's NLL (the loss it stands for) falls step after step.
    for w in nll.windows(2) {
        assert!(
            w[1] < w[0],
            "NLL of the good completion did not decrease: {nll:?}"
        );
    }
    assert!(b1 < b0, "bad completion's log-prob rose: {b0} -> {b1}");
}

#[test]
fn nan_in_the_loss_stops_before_the_update() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_lora_model(&tmp.path().join("m"));
    let mut opt = adamw(&model, 0.0, 0.0);
    let before = trainable_values(&model);
    let err = optimizer_step(&model, &mut opt, &[sample(&[8, 9], f64::NAN)], &cfg(1e-2))
        .unwrap_err()
        .to_string();
    assert!(err.contains("NaN"), "{err}");
    assert_eq!(before, trainable_values(&model));
    assert_eq!(opt.step_count(), 0);
}

fn write_spec(tmp: &std::path::Path, steps: usize, extra: &str) -> std::path::PathBuf {
    let base = write_model(&tmp.join("model"));
    let spec = tmp.join("tiny.yaml");
    std::fs::write(&spec, spec_yaml(&base, steps, "", extra)).unwrap();
    spec
}

#[test]
fn non_finite_loss_stops_the_run_with_the_last_good_state() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(tmp.path(), 4, "");
    let runs = tmp.path().join("runs");
    let err = apply_spec(&spec, &runs, &registry(None, Some(2)))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("step-0002/train") && err.contains("inf"),
        "{err}"
    );
    assert!(err.contains("previous step is kept"), "{err}");
    let run = only_run(&runs);
    let st = state::load(&RunDir::open(&run).unwrap()).unwrap().unwrap();
    assert_eq!(st.step, 2, "the trainer state is the last good step");
    // The state equals the step-2 checkpoint (every: 2), so nothing of the bad step was written.
    assert_eq!(
        tensors(&run.join("trainer/adapter_model.safetensors")),
        tensors(&run.join("checkpoints/checkpoint-2/adapter_model.safetensors"))
    );
    assert_eq!(
        metrics::read_rows(&run.join("metrics.csv")).unwrap().len(),
        2
    );
}

#[test]
fn monitors_warn_and_stop_with_a_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(
        tmp.path(),
        5,
        "monitors:\n  - {metric: lr, op: gt, value: 0.0, action: warn}\n  \
         - {metric: train/grad_norm, op: ge, value: 0.0, after_step: 3, action: stop}\n",
    );
    let runs = tmp.path().join("runs");
    let err = apply_spec(&spec, &runs, &registry(None, None))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("monitor #1") && err.contains("grad_norm"),
        "{err}"
    );
    assert!(err.contains("--resume"), "{err}");
    let run = only_run(&runs);
    let state = RunState::load(&run.join("state.json")).unwrap();
    assert!(state.is_completed("step-0002/train"));
    assert!(!state.is_completed("step-0003/generate"));
    assert!(run
        .join("checkpoints/checkpoint-3/training_state.json")
        .is_file());
    let events = read_events(&run.join("events.jsonl")).unwrap();
    let warns = events
        .iter()
        .filter(|e| e.kind == "monitor_warning")
        .count();
    assert_eq!(warns, 3, "the lr monitor fires every step");
    assert!(events.iter().any(|e| e.kind == "monitor_stop"));
    assert!(events.iter().any(|e| e.kind == "run_stopped"));
    // metrics.csv has the fixed header and the step rows.
    let rows = metrics::read_rows(&run.join("metrics.csv")).unwrap();
    assert_eq!(rows.len(), 3);
    for key in [
        "loss",
        "reward",
        "reward_std",
        "rewards/fmt/mean",
        "grad_norm",
        "lr",
        "completions/mean_length",
        "completions/clipped_ratio",
        "step_time",
        "tokens_per_s",
    ] {
        assert!(rows[0].contains_key(key), "missing {key}: {:?}", rows[0]);
    }
}
