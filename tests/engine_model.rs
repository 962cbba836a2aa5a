//! The transformer family on tiny random models written as HF directories (so they go through
//! the real loader): logits parity with candle-transformers, KV-cache decode, sharded and GGUF
//! checkpoints, LoRA gradients against finite differences, seeded generation, PEFT round trip.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, IndexOp, Tensor, D};
use candle_nn::VarBuilder;
use runner::engine::load::{self, LoadOptions, ModelFiles};
use runner::engine::model::{Arch, LoraConfig, Model, TrainBatch};

const VOCAB: usize = 61;

/// A tiny config.json for `arch` (with the extra keys candle-transformers' configs require).
fn tiny_config(arch: Arch, tied: bool) -> serde_json::Value {
    let mut c = serde_json::json!({
        "model_type": arch.model_type(),
        "architectures": [arch.hf_class()],
        "hidden_size": 32,
        "intermediate_size": 48,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "max_position_embeddings": 128,
        "vocab_size": VOCAB,
        "tie_word_embeddings": tied,
        "hidden_act": "silu",
        "bos_token_id": 1,
        "eos_token_id": 2,
        "sliding_window": 128,
        "max_window_layers": 2,
        "use_sliding_window": false,
    });
    if arch == Arch::Qwen3 {
        // head_dim deliberately not hidden/heads, as in real Qwen3 configs.
        c["head_dim"] = serde_json::json!(16);
        c["attention_bias"] = serde_json::json!(false);
    }
    c
}

/// Random weights (HF names) for a config.json value.
fn random_weights(cfg: &serde_json::Value, seed: u64) -> HashMap<String, Tensor> {
    let dev = Device::Cpu;
    let g = |k: &str| cfg[k].as_u64().unwrap() as usize;
    let (d, inter, layers, h, kvh, v) = (
        g("hidden_size"),
        g("intermediate_size"),
        g("num_hidden_layers"),
        g("num_attention_heads"),
        g("num_key_value_heads"),
        g("vocab_size"),
    );
    let hd = cfg["head_dim"].as_u64().map_or(d / h, |x| x as usize);
    let arch = cfg["model_type"].as_str().unwrap().to_string();
    let mut n = seed;
    let mut rnd = |shape: &[usize], scale: f64, mean: f64| {
        n += 1;
        let len: usize = shape.iter().product();
        // Deterministic pseudo-random values (LCG), so failures reproduce.
        let mut s = n.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let vals: Vec<f32> = (0..len)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let u = (s >> 11) as f64 / (1u64 << 53) as f64;
                (mean + scale * (2.0 * u - 1.0)) as f32
            })
            .collect();
        Tensor::from_vec(vals, shape, &dev).unwrap()
    };
    let mut w = HashMap::new();
    w.insert("model.embed_tokens.weight".to_string(), rnd(&[v, d], 1.0, 0.0));
    for i in 0..layers {
        let p = format!("model.layers.{i}");
        w.insert(format!("{p}.input_layernorm.weight"), rnd(&[d], 0.2, 1.0));
        w.insert(format!("{p}.post_attention_layernorm.weight"), rnd(&[d], 0.2, 1.0));
        let lin = 1.0 / (d as f64).sqrt();
        w.insert(format!("{p}.self_attn.q_proj.weight"), rnd(&[h * hd, d], lin, 0.0));
        w.insert(format!("{p}.self_attn.k_proj.weight"), rnd(&[kvh * hd, d], lin, 0.0));
        w.insert(format!("{p}.self_attn.v_proj.weight"), rnd(&[kvh * hd, d], lin, 0.0));
        w.insert(format!("{p}.self_attn.o_proj.weight"), rnd(&[d, h * hd], lin, 0.0));
        if arch == "qwen2" {
            w.insert(format!("{p}.self_attn.q_proj.bias"), rnd(&[h * hd], 0.1, 0.0));
            w.insert(format!("{p}.self_attn.k_proj.bias"), rnd(&[kvh * hd], 0.1, 0.0));
            w.insert(format!("{p}.self_attn.v_proj.bias"), rnd(&[kvh * hd], 0.1, 0.0));
        }
        if arch == "qwen3" {
            w.insert(format!("{p}.self_attn.q_norm.weight"), rnd(&[hd], 0.2, 1.0));
            w.insert(format!("{p}.self_attn.k_norm.weight"), rnd(&[hd], 0.2, 1.0));
        }
        w.insert(format!("{p}.mlp.gate_proj.weight"), rnd(&[inter, d], lin, 0.0));
        w.insert(format!("{p}.mlp.up_proj.weight"), rnd(&[inter, d], lin, 0.0));
        let lin2 = 1.0 / (inter as f64).sqrt();
        w.insert(format!("{p}.mlp.down_proj.weight"), rnd(&[d, inter], lin2, 0.0));
    }
    w.insert("model.norm.weight".to_string(), rnd(&[d], 0.2, 1.0));
    if !cfg["tie_word_embeddings"].as_bool().unwrap() {
        w.insert("lm_head.weight".to_string(), rnd(&[v, d], 0.5, 0.0));
    }
    w
}

/// Write an HF directory (config.json + model.safetensors).
fn write_hf_dir(dir: &Path, cfg: &serde_json::Value, w: &HashMap<String, Tensor>) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("config.json"), serde_json::to_string_pretty(cfg).unwrap()).unwrap();
    candle_core::safetensors::save(w, dir.join("model.safetensors")).unwrap();
}

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
    load_dir(dir, None).forward_all_logits(&ids(&[&SEQ])).unwrap()
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
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&files, DType::F32, &Device::Cpu) }.unwrap();
    let reference = llama::Llama::load(vb, &lc).unwrap();
    let mut worst = 0f32;
    for t in 1..=SEQ.len() {
        let mut cache = llama::Cache::new(false, DType::F32, &lc, &Device::Cpu).unwrap();
        let r = reference.forward(&ids(&[&SEQ[..t]]), 0, &mut cache).unwrap();
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
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&files, DType::F32, &Device::Cpu) }.unwrap();
    let mut reference = qwen2::Model::new(&qc, vb).unwrap();
    let hidden = reference.forward(&ids(&[&SEQ]), 0, None).unwrap();
    let r = hidden.broadcast_matmul(&w["lm_head.weight"].t().unwrap()).unwrap();
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
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&files, DType::F32, &Device::Cpu) }.unwrap();
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
            .forward_logits(&ids(&[&rows[0][..prefill], &rows[1][..prefill]]), &mut cache)
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
    std::fs::write(sharded.join("model.safetensors.index.json"), index.to_string()).unwrap();
    let diff = max_abs_diff(&our_logits(&single), &our_logits(&sharded));
    assert_eq!(diff, 0.0);
    // A missing shard is a clear error, not a panic.
    std::fs::remove_file(sharded.join("model-00002-of-00002.safetensors")).unwrap();
    let opts = LoadOptions::default();
    let err = load::load_model(&ModelFiles::HfDir(sharded), &opts).err().unwrap();
    assert!(err.to_string().contains("missing weight shard"), "{err}");
}
