//! `train.optim` reaches the train stage: one RL step from a fresh adapter (LoRA B = 0) moves B
//! by `−lr·g` under SGD (magnitudes proportional to the gradient) and by ≈ `lr` per element
//! under AdamW (its first step is `−lr·g/(|g| + eps)` with bias correction). The tiny model
//! samples at a high temperature so that the group's rewards differ (non-zero advantages).

mod common;

use std::path::Path;

use runner::run::ApplyRequest;
use runner::stages::Registry;

const LR: f64 = 1.0e-2;

/// Run one step with `optim` and return the |B| entries (over every LoRA B) divided by the LR.
fn lora_b_steps(dir: &Path, optim: &str) -> Vec<f64> {
    let model = common::tiny_model_dir(dir, 7);
    let train = dir.join("train.jsonl");
    std::fs::write(&train, common::arithmetic_rows("t", 4)).unwrap();
    let spec = common::tiny_spec(
        &model,
        &train,
        None,
        &format!(
            "seed: 9\ngenerate: {{num_generations: 4, temperature: 8.0}}\nrewards: {{correct: ~, format: {{regex: '.*[aeiou].*'}}}}\n\
             train: {{optim: {optim}, learning_rate: {LR}, max_steps: 1, max_grad_norm: 1.0e9, weight_decay: 0.0}}"
        ),
    );
    let spec_path = dir.join("tiny.yaml");
    std::fs::write(&spec_path, spec).unwrap();
    let req = ApplyRequest {
        input: Some(spec_path),
        runs_dir: dir.join("runs"),
        ..ApplyRequest::default()
    };
    let report = runner::run::apply(&req, &Registry::builtin()).unwrap();
    let adapter = report.run_dir.join("trainer/adapter_model.safetensors");
    let tensors = candle_core::safetensors::load(&adapter, &candle_core::Device::Cpu).unwrap();
    let mut out = Vec::new();
    for (name, t) in tensors {
        if name.contains("lora_B") {
            let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
            out.extend(v.into_iter().map(|x| f64::from(x).abs() / LR));
        }
    }
    assert!(
        !out.is_empty(),
        "no LoRA B tensors in {}",
        adapter.display()
    );
    out
}

#[test]
fn sgd_and_adamw_from_the_spec_drive_the_train_stage() {
    let d = tempfile::tempdir().unwrap();
    let sgd = lora_b_steps(&d.path().join("sgd"), "sgd");
    let moved: Vec<f64> = sgd.iter().copied().filter(|x| *x > 1e-9).collect();
    assert!(moved.len() > 4, "SGD moved too few entries: {moved:?}");
    let (lo, hi) = moved
        .iter()
        .fold((f64::MAX, 0.0f64), |(lo, hi), x| (lo.min(*x), hi.max(*x)));
    // |ΔB|/lr = |g|: it varies with the gradient (AdamW's would all be ≈ 1).
    assert!(hi / lo > 2.0, "SGD steps look like AdamW's: {lo}..{hi}");

    let adam = lora_b_steps(&d.path().join("adamw"), "adamw");
    let moved: Vec<f64> = adam.iter().copied().filter(|x| *x > 1e-9).collect();
    assert!(moved.len() > 4, "AdamW moved too few entries");
    // First AdamW step: |ΔB| = lr·|g|/(|g| + eps) ≈ lr wherever |g| ≫ eps (1e-8).
    let near_one = moved.iter().filter(|x| (**x - 1.0).abs() < 1e-2).count();
    assert!(
        near_one * 10 >= moved.len() * 9,
        "AdamW first steps are not ≈ lr: {moved:?}"
    );
}
