//! The engine on a CUDA device against the CPU, on tiny random models: logits, KV-cache decode,
//! seeded sampling, LoRA gradients, an optimizer step, and a whole tiny GRPO run.
//!
//! Every test opens `cuda` (GPU 0) through the same `engine::device::device` the stages use and
//! returns early, with a message on stderr, when that fails: a build without the `cuda` feature
//! (the default) or a machine without a usable GPU. So this file compiles and passes everywhere;
//! it checks something only in `cargo test --features cuda --test cuda` on a GPU machine.

mod common;

use std::path::Path;

use candle_core::{DType, Device, IndexOp, Tensor, D};
use runner::engine::generate::{self, GenerateRequest};
use runner::engine::load::{self, LoadOptions, ModelFiles};
use runner::engine::model::{Arch, Model, TrainBatch};
use runner::engine::sample::SamplingParams;
use runner::train::optim::{AdamW, AdamWConfig};

use common::{random_weights, tiny_config, write_hf_dir};

/// GPU 0, or `None` (with the reason on stderr) when this build or machine has no CUDA.
fn cuda(test: &str) -> Option<Device> {
    match runner::engine::device::device("cuda") {
        Ok(d) => Some(d),
        Err(e) => {
            eprintln!("skipping {test}: {e}");
            None
        }
    }
}

const SEQ: [u32; 9] = [5, 17, 3, 42, 60, 8, 8, 23, 11];
const SEQ2: [u32; 9] = [9, 9, 1, 2, 3, 50, 40, 30, 20];

fn ids(rows: &[&[u32]], device: &Device) -> Tensor {
    let t = rows[0].len();
    let flat: Vec<u32> = rows.iter().flat_map(|r| r.iter().copied()).collect();
    Tensor::from_vec(flat, (rows.len(), t), device).unwrap()
}

fn to_cpu_f32(t: &Tensor) -> Tensor {
    t.to_device(&Device::Cpu)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
}

/// Largest |a − b| over all elements, after moving both to the CPU.
fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (to_cpu_f32(a) - to_cpu_f32(b))
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// Largest |x| over all elements.
fn max_abs(a: &Tensor) -> f32 {
    to_cpu_f32(a)
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

fn load_on(dir: &Path, dtype: DType, device: &Device) -> Model {
    let opts = LoadOptions {
        dtype,
        device: device.clone(),
        lora: None,
    };
    load::load_model(&ModelFiles::HfDir(dir.to_path_buf()), &opts)
        .unwrap()
        .0
}

/// A tiny model of `arch` written to `dir` (untied head for Qwen2, as in tests/engine_model.rs).
fn write_tiny(dir: &Path, arch: Arch, seed: u64) {
    let cfg = tiny_config(arch, arch != Arch::Qwen2);
    write_hf_dir(dir, &cfg, &random_weights(&cfg, seed));
}

#[test]
fn logits_match_the_cpu() {
    let Some(gpu) = cuda("logits_match_the_cpu") else {
        return;
    };
    for arch in [Arch::Llama, Arch::Qwen2, Arch::Qwen3] {
        let tmp = tempfile::tempdir().unwrap();
        write_tiny(tmp.path(), arch, 3);
        let rows: [&[u32]; 2] = [&SEQ, &SEQ2];
        let cpu = load_on(tmp.path(), DType::F32, &Device::Cpu)
            .forward_all_logits(&ids(&rows, &Device::Cpu))
            .unwrap();
        let on_gpu = load_on(tmp.path(), DType::F32, &gpu)
            .forward_all_logits(&ids(&rows, &gpu))
            .unwrap();
        assert!(on_gpu.device().is_cuda());
        assert_eq!(on_gpu.dtype(), DType::F32);
        assert_eq!(on_gpu.dims(), cpu.dims());
        let d = max_abs_diff(&on_gpu, &cpu);
        assert!(
            d <= 1e-4,
            "{arch:?}: f32 CUDA logits differ from CPU by {d}"
        );
        // bf16 weights and activations: close to f32, as on the CPU (tests/engine_model.rs).
        let bf = load_on(tmp.path(), DType::BF16, &gpu)
            .forward_all_logits(&ids(&rows, &gpu))
            .unwrap();
        let d = max_abs_diff(&bf, &cpu);
        assert!(
            d < 0.25,
            "{arch:?}: bf16 CUDA logits differ from f32 by {d}"
        );
    }
}

#[test]
fn kv_cache_decode_equals_full_recompute_on_cuda() {
    let Some(gpu) = cuda("kv_cache_decode_equals_full_recompute_on_cuda") else {
        return;
    };
    for arch in [Arch::Llama, Arch::Qwen2, Arch::Qwen3] {
        let tmp = tempfile::tempdir().unwrap();
        write_tiny(tmp.path(), arch, 4);
        let model = load_on(tmp.path(), DType::F32, &gpu);
        let rows: [&[u32]; 2] = [&SEQ, &SEQ2];
        let full = model.forward_all_logits(&ids(&rows, &gpu)).unwrap();
        // Small capacity on purpose: the cache has to grow.
        let mut cache = model.new_cache(2);
        let prefill = 4;
        let l = model
            .forward_logits(
                &ids(&[&rows[0][..prefill], &rows[1][..prefill]], &gpu),
                &mut cache,
            )
            .unwrap();
        let mut worst = max_abs_diff(&l, &full.i((.., prefill - 1, ..)).unwrap());
        for p in prefill..SEQ.len() {
            let step = ids(&[&rows[0][p..p + 1], &rows[1][p..p + 1]], &gpu);
            let l = model.forward_logits(&step, &mut cache).unwrap();
            assert!(l.device().is_cuda());
            worst = worst.max(max_abs_diff(&l, &full.i((.., p, ..)).unwrap()));
        }
        assert_eq!(cache.len(), SEQ.len());
        assert!(worst <= 1e-4, "{arch:?}: cached decode differs by {worst}");
    }
}

fn request(prompts: Vec<Vec<u32>>, n: usize, temperature: f32) -> GenerateRequest {
    GenerateRequest {
        prompts,
        n_per_prompt: n,
        params: SamplingParams {
            temperature,
            ..SamplingParams::default()
        },
        max_new_tokens: 12,
        stop_token_ids: vec![],
        stop_strings: vec![],
        seed: 42,
    }
}

#[test]
fn seeded_sampling_is_reproducible_on_cuda() {
    let Some(gpu) = cuda("seeded_sampling_is_reproducible_on_cuda") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tiny_config(Arch::Qwen3, true);
    write_hf_dir(tmp.path(), &cfg, &random_weights(&cfg, 10));
    common::write_word_tokenizer(tmp.path());
    let open = |device: &Device| {
        let opts = LoadOptions {
            dtype: DType::F32,
            device: device.clone(),
            lora: None,
        };
        load::load(tmp.path().to_str().unwrap(), &opts).unwrap()
    };
    let (g, c) = (open(&gpu), open(&Device::Cpu));
    assert!(g.model.device().is_cuda());
    let a = vec![5u32, 17, 3, 42];
    let b = vec![8u32, 8, 23];
    let gen = |lm: &load::LoadedModel, prompts: Vec<Vec<u32>>, n: usize, temp: f32| {
        generate::generate(&lm.model, &lm.tokenizer, &request(prompts, n, temp)).unwrap()
    };
    let one = gen(&g, vec![a.clone()], 4, 1.0);
    let again = gen(&g, vec![a.clone()], 4, 1.0);
    assert_eq!(one.len(), 4);
    for (x, y) in one.iter().zip(&again) {
        assert_eq!(x.tokens, y.tokens, "same seed, different tokens on CUDA");
        assert_eq!(x.logprobs, y.logprobs);
    }
    // Rollouts of `a` do not depend on the batch they are decoded in.
    let two = gen(&g, vec![b, a.clone()], 2, 1.0);
    for (i, (x, y)) in one.iter().zip(&two[2..]).enumerate() {
        assert_eq!(x.tokens, y.tokens, "rollout {i} changed with the batch");
    }
    assert!(one.iter().any(|r| r.tokens != one[0].tokens));
    // The sampler draws on the CPU from the same seeded streams, so CUDA and CPU sample the
    // same tokens (barring a draw within ~1e-5 of a boundary) with log-probs equal to ~1e-4.
    let on_cpu = gen(&c, vec![a.clone()], 4, 1.0);
    for (x, y) in one.iter().zip(&on_cpu) {
        assert_eq!(x.tokens, y.tokens, "CUDA and CPU sampled differently");
        for (p, q) in x.logprobs.iter().zip(&y.logprobs) {
            assert!((p - q).abs() < 1e-4, "logprob {p} on CUDA vs {q} on CPU");
        }
    }
    // Recorded log-probs equal a full recompute on the GPU.
    for r in &one {
        let mut seq = a.clone();
        seq.extend(&r.tokens);
        let logits = g.model.forward_all_logits(&ids(&[&seq], &gpu)).unwrap();
        let lsm = to_cpu_f32(
            &candle_nn::ops::log_softmax(&logits, D::Minus1)
                .unwrap()
                .squeeze(0)
                .unwrap(),
        );
        for (k, (&t, &lp)) in r.tokens.iter().zip(&r.logprobs).enumerate() {
            let want = lsm
                .i((a.len() - 1 + k, t as usize))
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!((want - lp).abs() < 1e-4, "token {k}: {lp} vs {want}");
        }
    }
}

/// Deterministic pseudo-random values uniform in ±1 (CPU).
/// The tiny model with LoRA (r 2) on every linear layer, A and B random so every gradient is
/// non-zero; the same adapters for the same seed on any device.
fn lora_model(dir: &Path, device: &Device) -> Model {
    let mut m = load_on(dir, DType::F32, device);
    common::random_lora(&mut m);
    m
}

fn train_batch(device: &Device) -> TrainBatch {
    let rows: [&[u32]; 2] = [&SEQ, &[9, 9, 1, 2, 3, 50, 0, 0, 0]];
    let mask: Vec<f32> = vec![
        0., 0., 1., 1., 1., 1., 1., 1., 1., 0., 0., 0., 1., 1., 1., 0., 0., 0.,
    ];
    TrainBatch {
        input_ids: ids(&rows, device),
        completion_mask: Tensor::from_vec(mask, (2, 9), device).unwrap(),
    }
}

/// Masked sum of token log-probs (the shape of the policy-gradient loss).
fn masked_logprob_sum(m: &Model, batch: &TrainBatch) -> Tensor {
    let mask = batch.completion_mask.narrow(1, 1, 8).unwrap();
    (m.token_logprobs(batch).unwrap() * &mask)
        .unwrap()
        .sum_all()
        .unwrap()
}

#[test]
fn lora_gradients_match_the_cpu() {
    let Some(gpu) = cuda("lora_gradients_match_the_cpu") else {
        return;
    };
    for arch in [Arch::Llama, Arch::Qwen2, Arch::Qwen3] {
        let tmp = tempfile::tempdir().unwrap();
        write_tiny(tmp.path(), arch, 7);
        let (mc, mg) = (
            lora_model(tmp.path(), &Device::Cpu),
            lora_model(tmp.path(), &gpu),
        );
        let (bc, bg) = (train_batch(&Device::Cpu), train_batch(&gpu));
        let (lc, lg) = (masked_logprob_sum(&mc, &bc), masked_logprob_sum(&mg, &bg));
        let (fc, fg) = (
            lc.to_scalar::<f32>().unwrap(),
            to_cpu_f32(&lg).to_scalar::<f32>().unwrap(),
        );
        assert!(
            (fc - fg).abs() <= 1e-4 * fc.abs().max(1.0),
            "{arch:?}: loss {fg} on CUDA vs {fc} on CPU"
        );
        let (gc, gg) = (lc.backward().unwrap(), lg.backward().unwrap());
        let (vc, vg) = (mc.trainable_vars(), mg.trainable_vars());
        assert_eq!(vc.len(), vg.len());
        assert_eq!(vg.len(), 2 * 7 * 2);
        for (i, (c, g)) in vc.iter().zip(&vg).enumerate() {
            let (c, g) = (
                gc.get(c.as_tensor())
                    .unwrap_or_else(|| panic!("{arch:?}: CPU var {i} has no gradient")),
                gg.get(g.as_tensor())
                    .unwrap_or_else(|| panic!("{arch:?}: CUDA var {i} has no gradient")),
            );
            assert!(g.device().is_cuda());
            let d = max_abs_diff(c, g);
            let scale = max_abs(c);
            assert!(
                d <= 1e-4 * scale.max(1.0),
                "{arch:?} var {i}: CUDA gradient differs by {d} (max |g| {scale})"
            );
        }
    }
}

#[test]
fn optimizer_step_on_cuda_matches_the_cpu() {
    let Some(gpu) = cuda("optimizer_step_on_cuda_matches_the_cpu") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    write_tiny(tmp.path(), Arch::Llama, 9);
    let cfg = AdamWConfig {
        lr: 1e-2,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.01,
    };
    // Three AdamW steps maximising the masked log-prob, on each device.
    let run = |device: &Device| -> (Model, Vec<f32>) {
        let m = lora_model(tmp.path(), device);
        let batch = train_batch(device);
        let mut opt = AdamW::new(m.trainable_vars(), cfg.clone()).unwrap();
        let mut losses = Vec::new();
        for _ in 0..3 {
            let loss = masked_logprob_sum(&m, &batch).neg().unwrap();
            losses.push(to_cpu_f32(&loss).to_scalar::<f32>().unwrap());
            let grads = loss.backward().unwrap();
            opt.step(&grads, cfg.lr).unwrap();
        }
        assert_eq!(opt.step_count(), 3);
        losses.push(
            to_cpu_f32(&masked_logprob_sum(&m, &batch).neg().unwrap())
                .to_scalar::<f32>()
                .unwrap(),
        );
        (m, losses)
    };
    let (mc, lc) = run(&Device::Cpu);
    let (mg, lg) = run(&gpu);
    assert!(
        lg[3] < lg[0],
        "AdamW on CUDA did not lower the loss: {lg:?}"
    );
    for (c, g) in lc.iter().zip(&lg) {
        assert!((c - g).abs() <= 1e-3 * c.abs().max(1.0), "{lc:?} vs {lg:?}");
    }
    for (i, (c, g)) in mc
        .trainable_vars()
        .iter()
        .zip(mg.trainable_vars())
        .enumerate()
    {
        assert!(g.device().is_cuda());
        let d = max_abs_diff(c.as_tensor(), g.as_tensor());
        assert!(
            d <= 1e-4,
            "var {i}: CUDA parameters differ by {d} after 3 steps"
        );
    }
}

#[test]
fn tiny_grpo_run_on_cuda() {
    let Some(_gpu) = cuda("tiny_grpo_run_on_cuda") else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let model = common::tiny_model_dir(d.path(), 7);
    let train = d.path().join("train.jsonl");
    std::fs::write(&train, common::arithmetic_rows("t", 4)).unwrap();
    let spec = d.path().join("tiny.yaml");
    std::fs::write(
        &spec,
        common::tiny_spec(&model, &train, None, "model: {device: cuda}"),
    )
    .unwrap();
    let report = runner::run::apply(
        &runner::run::ApplyRequest {
            input: Some(spec),
            runs_dir: d.path().join("runs"),
            ..runner::run::ApplyRequest::default()
        },
        &runner::stages::Registry::builtin(),
    )
    .unwrap();
    let adapter = report.run_dir.join("trainer/adapter_model.safetensors");
    let tensors = candle_core::safetensors::load(&adapter, &Device::Cpu).unwrap();
    assert!(!tensors.is_empty());
    for (name, t) in tensors {
        let v: Vec<f32> = t
            .to_dtype(DType::F32)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert!(v.iter().all(|x| x.is_finite()), "{name} is not finite");
    }
}
