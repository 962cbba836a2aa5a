//! The transformer family on tiny random models written as HF directories (so they go through
//! the real loader): logits parity with candle-transformers, KV-cache decode, sharded and GGUF
//! checkpoints, LoRA gradients against finite differences, seeded generation, PEFT round trip.

mod common;

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, IndexOp, Tensor, Var, D};
use candle_nn::VarBuilder;
use runner::engine::generate::{self, FinishReason, GenerateRequest};
use runner::engine::load::gguf;
use runner::engine::load::{self, LoadOptions, ModelFiles};
use runner::engine::model::{Arch, Linear, LoraAdapter, LoraConfig, Model, TrainBatch};
use runner::engine::peft;
use runner::engine::sample::SamplingParams;

use common::{random_weights, tiny_config, write_hf_dir};

fn load_dir(dir: &Path, lora: Option<LoraConfig>) -> Model {
    let opts = LoadOptions {
        dtype: DType::F32,
        device: Device::Cpu,
        lora,
    };
    load::load_model(&ModelFiles::HfDir(dir.to_path_buf()), &opts)
        .unwrap()
        .0
}

fn ids(rows: &[&[u32]]) -> Tensor {
    let t = rows[0].len();
    let flat: Vec<u32> = rows.iter().flat_map(|r| r.iter().copied()).collect();
    Tensor::from_vec(flat, (rows.len(), t), &Device::Cpu).unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
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

const SEQ: [u32; 9] = [5, 17, 3, 42, 60, 8, 8, 23, 11];

/// Our logits `[1, t, vocab]` for `SEQ` from the model in `dir`.
fn our_logits(dir: &Path) -> Tensor {
    load_dir(dir, None)
        .forward_all_logits(&ids(&[&SEQ]))
        .unwrap()
}

#[test]
fn parity_llama_tied_with_candle_transformers() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tiny_config(Arch::Llama, true);
    write_hf_dir(tmp.path(), &cfg, &random_weights(&cfg, 1));
    let ours = our_logits(tmp.path());

    use candle_transformers::models::llama;
    let lc: llama::LlamaConfig = serde_json::from_value(cfg.clone()).unwrap();
    let lc = lc.into_config(false);
    let files = [tmp.path().join("model.safetensors")];
    let vb =
        unsafe { VarBuilder::from_mmaped_safetensors(&files, DType::F32, &Device::Cpu) }.unwrap();
    let reference = llama::Llama::load(vb, &lc).unwrap();
    let mut worst = 0f32;
    for t in 1..=SEQ.len() {
        let mut cache = llama::Cache::new(false, DType::F32, &lc, &Device::Cpu).unwrap();
        let r = reference
            .forward(&ids(&[&SEQ[..t]]), 0, &mut cache)
            .unwrap();
        let o = ours.i((.., t - 1, ..)).unwrap();
        worst = worst.max(max_abs_diff(&r, &o));
    }
    eprintln!("llama max abs diff {worst:e}");
    assert!(worst <= 1e-4, "llama logits differ by {worst}");
}

#[test]
fn parity_qwen2_untied_with_candle_transformers() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tiny_config(Arch::Qwen2, false);
    let w = random_weights(&cfg, 2);
    write_hf_dir(tmp.path(), &cfg, &w);
    let ours = our_logits(tmp.path());

    use candle_transformers::models::qwen2;
    let qc: qwen2::Config = serde_json::from_value(cfg.clone()).unwrap();
    let files = [tmp.path().join("model.safetensors")];
    let vb =
        unsafe { VarBuilder::from_mmaped_safetensors(&files, DType::F32, &Device::Cpu) }.unwrap();
    let mut reference = qwen2::Model::new(&qc, vb).unwrap();
    let hidden = reference.forward(&ids(&[&SEQ]), 0, None).unwrap();
    let r = hidden
        .broadcast_matmul(&w["lm_head.weight"].t().unwrap())
        .unwrap();
    let worst = max_abs_diff(&r, &ours);
    eprintln!("qwen2 max abs diff {worst:e}");
    assert!(worst <= 1e-4, "qwen2 logits differ by {worst}");
}

#[test]
fn parity_qwen3_with_candle_transformers() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tiny_config(Arch::Qwen3, true);
    let w = random_weights(&cfg, 3);
    write_hf_dir(tmp.path(), &cfg, &w);
    let ours = our_logits(tmp.path());

    use candle_transformers::models::qwen3;
    let qc: qwen3::Config = serde_json::from_value(cfg.clone()).unwrap();
    let files = [tmp.path().join("model.safetensors")];
    let vb =
        unsafe { VarBuilder::from_mmaped_safetensors(&files, DType::F32, &Device::Cpu) }.unwrap();
    let mut reference = qwen3::Model::new(&qc, vb).unwrap();
    let hidden = reference.forward(&ids(&[&SEQ]), 0).unwrap();
    let r = hidden
        .broadcast_matmul(&w["model.embed_tokens.weight"].t().unwrap())
        .unwrap();
    let worst = max_abs_diff(&r, &ours);
    eprintln!("qwen3 max abs diff {worst:e}");
    assert!(worst <= 1e-4, "qwen3 logits differ by {worst}");
}

#[test]
fn kv_cache_decode_equals_full_recompute() {
    for arch in [Arch::Llama, Arch::Qwen2, Arch::Qwen3] {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = tiny_config(arch, arch != Arch::Qwen2);
        write_hf_dir(tmp.path(), &cfg, &random_weights(&cfg, 4));
        let model = load_dir(tmp.path(), None);
        let rows: [&[u32]; 2] = [&SEQ, &[9, 9, 1, 2, 3, 50, 40, 30, 20]];
        let full = model.forward_all_logits(&ids(&rows)).unwrap();
        // Small capacity on purpose: the cache has to grow.
        let mut cache = model.new_cache(2);
        let prefill = 4;
        let l = model
            .forward_logits(
                &ids(&[&rows[0][..prefill], &rows[1][..prefill]]),
                &mut cache,
            )
            .unwrap();
        let mut worst = max_abs_diff(&l, &full.i((.., prefill - 1, ..)).unwrap());
        for p in prefill..SEQ.len() {
            let step = ids(&[&rows[0][p..p + 1], &rows[1][p..p + 1]]);
            let l = model.forward_logits(&step, &mut cache).unwrap();
            worst = worst.max(max_abs_diff(&l, &full.i((.., p, ..)).unwrap()));
        }
        assert_eq!(cache.len(), SEQ.len());
        assert!(worst <= 1e-5, "{arch:?}: cached decode differs by {worst}");
    }
}

#[test]
fn sharded_checkpoint_loads_like_a_single_file() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tiny_config(Arch::Llama, false);
    let w = random_weights(&cfg, 5);
    let single = tmp.path().join("single");
    write_hf_dir(&single, &cfg, &w);
    let sharded = tmp.path().join("sharded");
    std::fs::create_dir_all(&sharded).unwrap();
    std::fs::write(sharded.join("config.json"), cfg.to_string()).unwrap();
    let (mut a, mut b) = (HashMap::new(), HashMap::new());
    let mut map = serde_json::Map::new();
    for (i, (k, v)) in w.iter().enumerate() {
        let (part, file) = if i % 2 == 0 {
            (&mut a, "model-00001-of-00002.safetensors")
        } else {
            (&mut b, "model-00002-of-00002.safetensors")
        };
        part.insert(k.clone(), v.clone());
        map.insert(k.clone(), serde_json::json!(file));
    }
    candle_core::safetensors::save(&a, sharded.join("model-00001-of-00002.safetensors")).unwrap();
    candle_core::safetensors::save(&b, sharded.join("model-00002-of-00002.safetensors")).unwrap();
    let index = serde_json::json!({"metadata": {}, "weight_map": map});
    std::fs::write(
        sharded.join("model.safetensors.index.json"),
        index.to_string(),
    )
    .unwrap();
    let diff = max_abs_diff(&our_logits(&single), &our_logits(&sharded));
    assert_eq!(diff, 0.0);
    // A missing shard is a clear error, not a panic.
    std::fs::remove_file(sharded.join("model-00002-of-00002.safetensors")).unwrap();
    let opts = LoadOptions::default();
    let err = load::load_model(&ModelFiles::HfDir(sharded), &opts)
        .err()
        .unwrap();
    assert!(err.to_string().contains("missing weight shard"), "{err}");
}

#[test]
fn gguf_round_trip_unpermutes_q_and_k() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tiny_config(Arch::Llama, false);
    let w = random_weights(&cfg, 6);
    write_hf_dir(tmp.path(), &cfg, &w);
    let path = tmp.path().join("tiny.gguf");
    common::write_gguf(&path, &cfg, &w);
    let opts = LoadOptions::default();
    let (m, content) = load::load_model(&ModelFiles::Gguf(path), &opts).unwrap();
    assert!(content.is_some());
    assert!(!m.config.tie_word_embeddings);
    let from_gguf = m.forward_all_logits(&ids(&[&SEQ])).unwrap();
    let diff = max_abs_diff(&from_gguf, &our_logits(tmp.path()));
    assert!(diff <= 1e-5, "GGUF logits differ by {diff}");
    // Sanity: without the un-permutation the logits would be far off.
    let q = &w["model.layers.0.self_attn.q_proj.weight"];
    assert!(max_abs_diff(&gguf::permute(q, 4).unwrap(), q) > 0.01);
    assert_eq!(
        max_abs_diff(
            &gguf::unpermute(&gguf::permute(q, 4).unwrap(), 4).unwrap(),
            q
        ),
        0.0
    );
}

fn sum_f64(t: &Tensor) -> f64 {
    t.to_dtype(DType::F64)
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

/// Directional central difference of `f` along `dir` for `var` vs the gradient's dot product.
fn check_direction(
    var: &Var,
    grad: &Tensor,
    dir: &Tensor,
    eps: f64,
    f: &dyn Fn() -> f64,
) -> (f64, f64) {
    let base = var.as_tensor().copy().unwrap();
    var.set(&(&base + (dir * eps).unwrap()).unwrap()).unwrap();
    let up = f();
    var.set(&(&base - (dir * eps).unwrap()).unwrap()).unwrap();
    let down = f();
    var.set(&base).unwrap();
    let numeric = (up - down) / (2.0 * eps);
    let analytic = sum_f64(&(grad * dir).unwrap());
    (analytic, numeric)
}

fn rand_tensor(shape: &[usize], seed: u64) -> Tensor {
    let len: usize = shape.iter().product();
    let mut s = seed.wrapping_mul(0x9e3779b97f4a7c15) | 1;
    let v: Vec<f32> = (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) as f32
        })
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

#[test]
fn lora_layer_gradient_matches_finite_differences() {
    let (inp, out, r) = (6, 5, 3);
    let x = rand_tensor(&[2, 4, inp], 1);
    let wout = rand_tensor(&[2, 4, out], 2);
    let mut lin = Linear::new(rand_tensor(&[out, inp], 3), Some(rand_tensor(&[out], 4)));
    lin.lora = Some(
        LoraAdapter::from_tensors(
            &rand_tensor(&[r, inp], 5),
            &rand_tensor(&[out, r], 6),
            6.0,
            0.0,
        )
        .unwrap(),
    );
    let lora = lin.lora.clone().unwrap();
    let f = || sum_f64(&(lin.forward(&x, None).unwrap() * &wout).unwrap());
    let loss = (lin.forward(&x, None).unwrap() * &wout)
        .unwrap()
        .sum_all()
        .unwrap();
    let grads = loss.backward().unwrap();
    for (k, var) in [&lora.a, &lora.b].into_iter().enumerate() {
        let g = grads.get(var.as_tensor()).expect("LoRA var has a gradient");
        // Each coordinate, since the layer is tiny.
        let n = var.elem_count();
        for i in 0..n {
            let mut e = vec![0f32; n];
            e[i] = 1.0;
            let dir = Tensor::from_vec(e, var.dims(), &Device::Cpu).unwrap();
            let (a, num) = check_direction(var, g, &dir, 1e-2, &f);
            assert!(
                (a - num).abs() <= 1e-3 * (1.0 + a.abs()),
                "var {k} coord {i}: {a} vs {num}"
            );
        }
    }
    // The frozen base weight gets no gradient.
    assert!(grads.get(&lin.weight).is_none());
}

/// A tiny model with LoRA on every linear layer, B non-zero so that every gradient is.
fn lora_model(dir: &Path, arch: Arch, seed: u64) -> Model {
    let cfg = tiny_config(arch, true);
    write_hf_dir(dir, &cfg, &random_weights(&cfg, seed));
    let mut m = load_dir(dir, None);
    common::random_lora(&mut m);
    m
}

fn train_batch() -> TrainBatch {
    let rows: [&[u32]; 2] = [&SEQ, &[9, 9, 1, 2, 3, 50, 0, 0, 0]];
    let mask: Vec<f32> = vec![
        0., 0., 1., 1., 1., 1., 1., 1., 1., 0., 0., 0., 1., 1., 1., 0., 0., 0.,
    ];
    TrainBatch {
        input_ids: ids(&rows),
        completion_mask: Tensor::from_vec(mask, (2, 9), &Device::Cpu).unwrap(),
    }
}

#[test]
fn model_lora_gradients_match_finite_differences() {
    for arch in [Arch::Llama, Arch::Qwen2, Arch::Qwen3] {
        let tmp = tempfile::tempdir().unwrap();
        let m = lora_model(tmp.path(), arch, 7);
        let batch = train_batch();
        let mask = batch.completion_mask.narrow(1, 1, 8).unwrap();
        let loss_t = || {
            (m.token_logprobs(&batch).unwrap() * &mask)
                .unwrap()
                .sum_all()
                .unwrap()
        };
        assert_eq!(m.trainable_vars().len(), 2 * 7 * 2);
        assert_gradients_match_finite_differences(&m, &loss_t, 1000, &format!("{arch:?}"));
    }
}

/// Every trainable variable's gradient of `loss_t` against central differences along a random
/// unit direction (seeded from `seed`).
fn assert_gradients_match_finite_differences(
    m: &Model,
    loss_t: &dyn Fn() -> Tensor,
    seed: u64,
    what: &str,
) {
    let grads = loss_t().backward().unwrap();
    let f = || sum_f64(&loss_t());
    for (i, v) in m.trainable_vars().iter().enumerate() {
        let g = grads
            .get(v.as_tensor())
            .unwrap_or_else(|| panic!("{what}: var {i} has no gradient"));
        let dir = rand_tensor(v.dims(), seed + i as u64);
        let dir = (&dir / sum_f64(&dir.sqr().unwrap()).sqrt()).unwrap();
        // Richardson extrapolation of two central differences cancels the O(eps²) term
        // (random tiny models are strongly curved).
        let (a, n1) = check_direction(v, g, &dir, 6e-3, &f);
        let (_, n2) = check_direction(v, g, &dir, 3e-3, &f);
        let num = (4.0 * n2 - n1) / 3.0;
        assert!(
            (a - num).abs() <= 1e-2 * a.abs().max(num.abs()) + 3e-3,
            "{what} var {i}: analytic {a} vs numeric {num}"
        );
    }
}

#[test]
fn token_logprobs_match_log_softmax_of_logits() {
    let tmp = tempfile::tempdir().unwrap();
    let m = lora_model(tmp.path(), Arch::Qwen3, 8);
    let batch = train_batch();
    let lp = m.token_logprobs(&batch).unwrap();
    assert_eq!(lp.dims(), &[2, 8]);
    let logits = m.forward_all_logits(&batch.input_ids).unwrap();
    let lsm = candle_nn::ops::log_softmax(&logits, D::Minus1).unwrap();
    let targets = batch
        .input_ids
        .narrow(1, 1, 8)
        .unwrap()
        .contiguous()
        .unwrap()
        .unsqueeze(2)
        .unwrap();
    let want = lsm
        .narrow(1, 0, 8)
        .unwrap()
        .contiguous()
        .unwrap()
        .gather(&targets, 2)
        .unwrap()
        .squeeze(2)
        .unwrap();
    assert!(max_abs_diff(&lp, &want) < 1e-5);
}

#[test]
fn lora_dropout_only_in_training_mode() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tiny_config(Arch::Llama, true);
    write_hf_dir(tmp.path(), &cfg, &random_weights(&cfg, 9));
    let lc = LoraConfig {
        r: 4,
        alpha: 8.0,
        dropout: 0.5,
        target_modules: vec!["q_proj".into(), "v_proj".into()],
    };
    let mut m = load_dir(tmp.path(), Some(lc.clone()));
    // Fresh adapters are the identity: B = 0.
    let base = load_dir(tmp.path(), None);
    let batch = train_batch();
    assert_eq!(
        max_abs_diff(
            &m.token_logprobs(&batch).unwrap(),
            &base.token_logprobs(&batch).unwrap()
        ),
        0.0
    );
    assert_eq!(m.trainable_vars().len(), 2 * 2 * 2);
    // Give B a value, then dropout changes the training forward but not the eval forward.
    let mut t = HashMap::new();
    for (path, l) in m.lora_adapters() {
        let b = rand_tensor(l.b.dims(), 3);
        t.insert(path, (l.a.as_tensor().clone(), b));
    }
    m.set_lora(&lc, t).unwrap();
    let eval1 = m.token_logprobs(&batch).unwrap();
    m.set_training(true);
    let train = m.token_logprobs(&batch).unwrap();
    m.set_training(false);
    let eval2 = m.token_logprobs(&batch).unwrap();
    assert_eq!(max_abs_diff(&eval1, &eval2), 0.0);
    assert!(max_abs_diff(&eval1, &train) > 1e-4);
}

fn loaded_tiny(arch: Arch, seed: u64) -> (tempfile::TempDir, load::LoadedModel) {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tiny_config(arch, true);
    write_hf_dir(tmp.path(), &cfg, &random_weights(&cfg, seed));
    common::write_word_tokenizer(tmp.path());
    let lm = load::load(tmp.path().to_str().unwrap(), &LoadOptions::default()).unwrap();
    (tmp, lm)
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
fn seeded_generation_is_reproducible_and_independent_of_the_batch() {
    let (_tmp, lm) = loaded_tiny(Arch::Qwen3, 10);
    let a = vec![5u32, 17, 3, 42];
    let b = vec![8u32, 8, 23];
    let one =
        generate::generate(&lm.model, &lm.tokenizer, &request(vec![a.clone()], 4, 1.0)).unwrap();
    let again =
        generate::generate(&lm.model, &lm.tokenizer, &request(vec![a.clone()], 4, 1.0)).unwrap();
    let two = generate::generate(
        &lm.model,
        &lm.tokenizer,
        &request(vec![b, a.clone()], 2, 1.0),
    )
    .unwrap();
    assert_eq!(one.len(), 4);
    assert_eq!(two.len(), 4);
    for (x, y) in one.iter().zip(&again) {
        assert_eq!(x.tokens, y.tokens);
        assert_eq!(x.logprobs, y.logprobs);
    }
    // Rollouts 0 and 1 of prompt `a` are the same in a batch of 4 and in a batch of 2 after
    // another prompt.
    for (i, (x, y)) in one.iter().zip(&two[2..]).enumerate() {
        assert_eq!((y.prompt_index, y.index), (1, i));
        assert_eq!(x.tokens, y.tokens, "rollout {i}");
        for (p, q) in x.logprobs.iter().zip(&y.logprobs) {
            assert!((p - q).abs() < 1e-5);
        }
    }
    // Different indices sample differently (with overwhelming probability).
    assert!(one.iter().any(|r| r.tokens != one[0].tokens));
    for r in &one {
        assert!(r.tokens.len() <= 12);
        assert_eq!(r.tokens.len(), r.logprobs.len());
        match r.finish {
            FinishReason::Eos => assert_eq!(*r.tokens.last().unwrap(), 2),
            FinishReason::Length => assert_eq!(r.tokens.len(), 12),
            FinishReason::StopString => panic!("no stop strings were given"),
        }
    }
}

#[test]
fn sampled_logprobs_match_a_full_recompute() {
    let (_tmp, lm) = loaded_tiny(Arch::Llama, 11);
    let prompt = vec![5u32, 17, 3, 42];
    let rs = generate::generate(
        &lm.model,
        &lm.tokenizer,
        &request(vec![prompt.clone()], 3, 1.0),
    )
    .unwrap();
    for r in &rs {
        let mut seq = prompt.clone();
        seq.extend(&r.tokens);
        let logits = lm.model.forward_all_logits(&ids(&[&seq])).unwrap();
        let lsm = candle_nn::ops::log_softmax(&logits, D::Minus1)
            .unwrap()
            .squeeze(0)
            .unwrap();
        for (k, (&t, &lp)) in r.tokens.iter().zip(&r.logprobs).enumerate() {
            let want = lsm
                .i((prompt.len() - 1 + k, t as usize))
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!((want - lp).abs() < 1e-4, "token {k}: {lp} vs {want}");
        }
    }
    // Greedy equals step-by-step argmax of the full forward.
    let g = generate::generate(
        &lm.model,
        &lm.tokenizer,
        &request(vec![prompt.clone()], 2, 0.0),
    )
    .unwrap();
    assert_eq!(g[0].tokens, g[1].tokens);
    let mut seq = prompt.clone();
    for &t in &g[0].tokens {
        let logits = lm.model.forward_all_logits(&ids(&[&seq])).unwrap();
        let last = logits
            .i((0, seq.len() - 1))
            .unwrap()
            .argmax(0)
            .unwrap()
            .to_scalar::<u32>()
            .unwrap();
        assert_eq!(t, last);
        seq.push(t);
    }
}

#[test]
fn stop_strings_and_stop_tokens_end_rollouts() {
    let (_tmp, lm) = loaded_tiny(Arch::Llama, 12);
    let prompt = vec![5u32, 17, 3, 42];
    let free = generate::generate(
        &lm.model,
        &lm.tokenizer,
        &request(vec![prompt.clone()], 1, 0.0),
    )
    .unwrap();
    let toks = &free[0].tokens;
    assert!(toks.len() >= 3, "{toks:?}");
    // Stop on the third token as a stop token id.
    let mut req = request(vec![prompt.clone()], 1, 0.0);
    req.stop_token_ids = vec![toks[2]];
    let first_hit = toks.iter().position(|&t| t == toks[2]).unwrap();
    let r = &generate::generate(&lm.model, &lm.tokenizer, &req).unwrap()[0];
    assert_eq!(r.finish, FinishReason::Eos);
    assert_eq!(r.tokens, toks[..=first_hit].to_vec());
    // Stop on its text as a stop string: the text is cut before it.
    let mut req = request(vec![prompt], 1, 0.0);
    let stop = format!("t{}", toks[2]);
    req.stop_strings = vec![stop.clone()];
    let r = &generate::generate(&lm.model, &lm.tokenizer, &req).unwrap()[0];
    assert_eq!(r.finish, FinishReason::StopString);
    assert!(!r.text.contains(&stop));
    assert!(
        free[0].text.starts_with(r.text.as_str()),
        "{:?} vs {:?}",
        r.text,
        free[0].text
    );
}

#[test]
fn peft_adapter_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let m = lora_model(&tmp.path().join("base"), Arch::Qwen2, 13);
    let batch = train_batch();
    let want = m.token_logprobs(&batch).unwrap();
    let out = tmp.path().join("adapter");
    peft::save_adapter(&m, &out).unwrap();
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("adapter_config.json")).unwrap())
            .unwrap();
    assert_eq!(cfg["peft_type"], "LORA");
    assert_eq!(cfg["task_type"], "CAUSAL_LM");
    assert_eq!(cfg["r"], 2);
    assert_eq!(cfg["lora_alpha"], 4.0);
    let st = candle_core::safetensors::load(out.join("adapter_model.safetensors"), &Device::Cpu)
        .unwrap();
    let a = &st["base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight"];
    let b = &st["base_model.model.model.layers.1.mlp.down_proj.lora_B.weight"];
    assert_eq!(a.dims(), &[2, 32]);
    assert_eq!(b.dims(), &[32, 2]);
    assert_eq!(st.len(), 2 * 7 * 2);

    let mut fresh = load_dir(&tmp.path().join("base"), None);
    let lc = peft::load_adapter(&mut fresh, &out).unwrap();
    assert_eq!(lc.r, 2);
    assert_eq!(
        max_abs_diff(&fresh.token_logprobs(&batch).unwrap(), &want),
        0.0
    );
    assert_eq!(fresh.trainable_vars().len(), 28);

    // Merged weights give the same logits as base + adapter.
    let merged_dir = tmp.path().join("merged");
    std::fs::create_dir_all(&merged_dir).unwrap();
    let merged: HashMap<String, Tensor> = fresh
        .hf_weights(true, DType::F32)
        .unwrap()
        .into_iter()
        .collect();
    write_hf_dir(&merged_dir, &tiny_config(Arch::Qwen2, true), &merged);
    let mm = load_dir(&merged_dir, None);
    assert!(max_abs_diff(&mm.token_logprobs(&batch).unwrap(), &want) < 1e-5);
}

#[test]
fn hub_ids_load_from_the_hf_cache_offline() {
    // One test touches the environment, so nothing else races on it.
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("hf");
    let snap = home.join("hub/models--tiny-org--tiny-qwen3/snapshots/0123abcd");
    let cfg = tiny_config(Arch::Qwen3, true);
    write_hf_dir(&snap, &cfg, &random_weights(&cfg, 14));
    common::write_word_tokenizer(&snap);
    let refs = home.join("hub/models--tiny-org--tiny-qwen3/refs");
    std::fs::create_dir_all(&refs).unwrap();
    std::fs::write(refs.join("main"), "0123abcd").unwrap();
    std::env::set_var("HF_HOME", &home);
    std::env::set_var("HF_HUB_OFFLINE", "1");
    let lm = load::load("tiny-org/tiny-qwen3", &LoadOptions::default()).unwrap();
    assert_eq!(lm.model.source, "tiny-org/tiny-qwen3");
    let diff = max_abs_diff(
        &lm.model.forward_all_logits(&ids(&[&SEQ])).unwrap(),
        &our_logits(&snap),
    );
    assert_eq!(diff, 0.0);
    let err = load::load("tiny-org/not-cached", &LoadOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("not (fully) in the HF cache") && err.contains("HF_HUB_OFFLINE"),
        "{err}"
    );
    let err = load::load("no-such-model-name", &LoadOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("not a model directory"), "{err}");
}

#[test]
fn bf16_forward_is_close_to_f32() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tiny_config(Arch::Qwen2, true);
    write_hf_dir(tmp.path(), &cfg, &random_weights(&cfg, 15));
    let opts = LoadOptions {
        dtype: DType::BF16,
        device: Device::Cpu,
        lora: None,
    };
    let m = load::load_model(&ModelFiles::HfDir(tmp.path().to_path_buf()), &opts)
        .unwrap()
        .0;
    let lb = m.forward_all_logits(&ids(&[&SEQ])).unwrap();
    assert_eq!(lb.dtype(), DType::F32);
    let diff = max_abs_diff(&lb, &our_logits(tmp.path()));
    assert!(diff < 0.25, "bf16 logits differ from f32 by {diff}");
    let mut cache = m.new_cache(16);
    let last = m.forward_logits(&ids(&[&SEQ]), &mut cache).unwrap();
    assert!(max_abs_diff(&last, &lb.i((.., SEQ.len() - 1, ..)).unwrap()) < 1e-3);
    // Cached decode steps stream the bf16 weights through the small-row kernel (no f32
    // copy); they agree with the full bf16 recompute up to bf16 rounding of activations.
    let mut cache = m.new_cache(16);
    let prefill = 3;
    m.forward_logits(&ids(&[&SEQ[..prefill]]), &mut cache)
        .unwrap();
    for p in prefill..SEQ.len() {
        let l = m
            .forward_logits(&ids(&[&SEQ[p..p + 1]]), &mut cache)
            .unwrap();
        let d = max_abs_diff(&l, &lb.i((.., p, ..)).unwrap());
        assert!(d < 0.05, "bf16 decode step {p} differs by {d}");
    }
}

/// One group: a shared 4-token prompt, three right-padded completions of 5, 3 and 1 tokens.
fn group_batch() -> TrainBatch {
    let rows: [&[u32]; 3] = [
        &[9, 4, 1, 2, 30, 31, 32, 33, 34],
        &[9, 4, 1, 2, 40, 41, 42, 0, 0],
        &[9, 4, 1, 2, 50, 0, 0, 0, 0],
    ];
    let mut mask = vec![0f32; 27];
    for (i, c) in [5usize, 3, 1].into_iter().enumerate() {
        for k in 0..c {
            mask[i * 9 + 4 + k] = 1.0;
        }
    }
    TrainBatch {
        input_ids: ids(&rows),
        completion_mask: Tensor::from_vec(mask, (3, 9), &Device::Cpu).unwrap(),
    }
}

/// The masked forward runs a group's shared prompt once: its log-probs equal the batched
/// forward's on every architecture, and its gradients match finite differences.
#[test]
fn shared_prompt_forward_matches_the_batched_one_and_finite_differences() {
    for arch in [Arch::Llama, Arch::Qwen2, Arch::Qwen3] {
        let tmp = tempfile::tempdir().unwrap();
        let m = lora_model(tmp.path(), arch, 11);
        let batch = group_batch();
        let mask = batch.completion_mask.narrow(1, 1, 8).unwrap();
        let full = (m.token_logprobs(&batch).unwrap() * &mask).unwrap();
        let shared = m.token_logprobs_masked_at(&batch, 1.0).unwrap();
        // Log-probs near −10 summed in a different order: a few f32 ulps apart.
        let d = max_abs_diff(&full, &shared);
        assert!(d < 5e-5, "{arch:?}: {d}\n{full}\n{shared}");
        let loss_t = || {
            (m.token_logprobs_masked_at(&batch, 1.0).unwrap() * &mask)
                .unwrap()
                .sum_all()
                .unwrap()
        };
        assert_gradients_match_finite_differences(&m, &loss_t, 2000, &format!("{arch:?}"));
    }
}
