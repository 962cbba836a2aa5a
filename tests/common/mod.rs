//! Tiny random models of the real architectures, written as HF directories, shared by the
//! integration tests (each test binary includes this with `mod common;`).
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use runner::engine::model::Arch;
use runner::engine::peft;

pub const VOCAB: usize = 61;

/// A tiny config.json for `arch` (with the extra keys candle-transformers' configs require).
pub fn tiny_config(arch: Arch, tied: bool) -> serde_json::Value {
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

/// Deterministic pseudo-random values uniform in `mean ± scale` (an LCG, so failures reproduce).
pub fn rand_tensor(shape: &[usize], seed: u64, scale: f64, mean: f64) -> Tensor {
    let len: usize = shape.iter().product();
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let vals: Vec<f32> = (0..len)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let u = (s >> 11) as f64 / (1u64 << 53) as f64;
            (mean + scale * (2.0 * u - 1.0)) as f32
        })
        .collect();
    Tensor::from_vec(vals, shape, &Device::Cpu).unwrap()
}

/// Random weights (HF names) for a config.json value.
pub fn random_weights(cfg: &serde_json::Value, seed: u64) -> HashMap<String, Tensor> {
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
        rand_tensor(shape, n, scale, mean)
    };
    let mut w = HashMap::new();
    w.insert(
        "model.embed_tokens.weight".to_string(),
        rnd(&[v, d], 1.0, 0.0),
    );
    for i in 0..layers {
        let p = format!("model.layers.{i}");
        w.insert(format!("{p}.input_layernorm.weight"), rnd(&[d], 0.2, 1.0));
        w.insert(
            format!("{p}.post_attention_layernorm.weight"),
            rnd(&[d], 0.2, 1.0),
        );
        let lin = 1.0 / (d as f64).sqrt();
        w.insert(
            format!("{p}.self_attn.q_proj.weight"),
            rnd(&[h * hd, d], lin, 0.0),
        );
        w.insert(
            format!("{p}.self_attn.k_proj.weight"),
            rnd(&[kvh * hd, d], lin, 0.0),
        );
        w.insert(
            format!("{p}.self_attn.v_proj.weight"),
            rnd(&[kvh * hd, d], lin, 0.0),
        );
        w.insert(
            format!("{p}.self_attn.o_proj.weight"),
            rnd(&[d, h * hd], lin, 0.0),
        );
        if arch == "qwen2" {
            w.insert(
                format!("{p}.self_attn.q_proj.bias"),
                rnd(&[h * hd], 0.1, 0.0),
            );
            w.insert(
                format!("{p}.self_attn.k_proj.bias"),
                rnd(&[kvh * hd], 0.1, 0.0),
            );
            w.insert(
                format!("{p}.self_attn.v_proj.bias"),
                rnd(&[kvh * hd], 0.1, 0.0),
            );
        }
        if arch == "qwen3" {
            w.insert(format!("{p}.self_attn.q_norm.weight"), rnd(&[hd], 0.2, 1.0));
            w.insert(format!("{p}.self_attn.k_norm.weight"), rnd(&[hd], 0.2, 1.0));
        }
        w.insert(
            format!("{p}.mlp.gate_proj.weight"),
            rnd(&[inter, d], lin, 0.0),
        );
        w.insert(
            format!("{p}.mlp.up_proj.weight"),
            rnd(&[inter, d], lin, 0.0),
        );
        let lin2 = 1.0 / (inter as f64).sqrt();
        w.insert(
            format!("{p}.mlp.down_proj.weight"),
            rnd(&[d, inter], lin2, 0.0),
        );
    }
    w.insert("model.norm.weight".to_string(), rnd(&[d], 0.2, 1.0));
    if !cfg["tie_word_embeddings"].as_bool().unwrap() {
        w.insert("lm_head.weight".to_string(), rnd(&[v, d], 0.5, 0.0));
    }
    w
}

/// Write an HF directory (config.json + model.safetensors), loadable by runner and transformers.
pub fn write_hf_dir(dir: &Path, cfg: &serde_json::Value, w: &HashMap<String, Tensor>) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string_pretty(cfg).unwrap(),
    )
    .unwrap();
    // Sorted names, and the `{"format": "pt"}` metadata transformers expects.
    let mut tensors: Vec<(String, Tensor)> =
        w.iter().map(|(k, t)| (k.clone(), t.clone())).collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    peft::write_safetensors(&dir.join("model.safetensors"), &tensors).unwrap();
}

/// The characters of the tiny tokenizer, ids 3.. (ids 0–2 are `<unk>`, `<|im_start|>`,
/// `<|im_end|>`); 58 characters, so the vocabulary is exactly [`VOCAB`] = 61.
pub const TINY_CHARS: &str = "abcdefghijklmnopqrstuvwxyz0123456789 \n:.,?+-*=<>|_()!/A{}\"";

/// Write a character-level `tokenizer.json` (BPE without merges, `Fuse` decoder) and a
/// `tokenizer_config.json` with a ChatML chat template into `dir`, for the tiny models'
/// vocabulary of 61 ids: `<unk>` 0, `<|im_start|>` 1, `<|im_end|>` 2 (the eos, as the tiny
/// config's `eos_token_id`), then one id per character of [`TINY_CHARS`]. Other characters
/// encode as `<unk>`. With it a tiny model directory is a complete, runnable model.
pub fn write_tiny_tokenizer(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let specials = ["<unk>", "<|im_start|>", "<|im_end|>"];
    let mut vocab = serde_json::Map::new();
    for (i, s) in specials.iter().enumerate() {
        vocab.insert(s.to_string(), serde_json::json!(i));
    }
    for (i, c) in TINY_CHARS.chars().enumerate() {
        vocab.insert(c.to_string(), serde_json::json!(i + specials.len()));
    }
    assert_eq!(vocab.len(), VOCAB, "tiny tokenizer vocabulary size");
    let added: Vec<serde_json::Value> = specials
        .iter()
        .enumerate()
        .map(|(i, s)| {
            serde_json::json!({"id": i, "content": s, "single_word": false, "lstrip": false,
                               "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    let tokenizer = serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": null,
        "post_processor": null,
        "decoder": {"type": "Fuse"},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": "<unk>",
            "continuing_subword_prefix": null, "end_of_word_suffix": null,
            "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
            "vocab": vocab, "merges": []
        }
    });
    std::fs::write(
        dir.join("tokenizer.json"),
        serde_json::to_string_pretty(&tokenizer).unwrap(),
    )
    .unwrap();
    let template = "{% for message in messages %}{{ '<|im_start|>' + message.role + '\\n' + \
                    message.content + '<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt \
                    %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
    let config = serde_json::json!({
        "bos_token": null,
        "eos_token": "<|im_end|>",
        "unk_token": "<unk>",
        "chat_template": template,
    });
    std::fs::write(
        dir.join("tokenizer_config.json"),
        serde_json::to_string_pretty(&config).unwrap(),
    )
    .unwrap();
}

/// A complete tiny Llama model directory (tied embeddings, random weights from `seed`, the tiny
/// tokenizer) at `<dir>/model`; its path.
pub fn tiny_model_dir(dir: &Path, seed: u64) -> std::path::PathBuf {
    let m = dir.join("model");
    let cfg = tiny_config(Arch::Llama, true);
    write_hf_dir(&m, &cfg, &random_weights(&cfg, seed));
    write_tiny_tokenizer(&m);
    m
}

/// `n` JSONL arithmetic records `{"id": "<prefix>-i", "question": "what is i + i?", "answer": "2i"}`.
pub fn arithmetic_rows(prefix: &str, n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "{{\"id\": \"{prefix}-{i}\", \"question\": \"what is {i} + {i}?\", \"answer\": \"{}\"}}\n",
                2 * i
            )
        })
        .collect()
}

/// Write a GGUF file holding the same weights in llama.cpp's layout (GGUF names, Q/K rows
/// permuted for GGML's interleaved RoPE, f32 tensors).
pub fn write_gguf(path: &Path, cfg: &serde_json::Value, w: &HashMap<String, Tensor>) {
    use candle_core::quantized::{gguf_file::Value, GgmlDType, QTensor};
    let g = |k: &str| cfg[k].as_u64().unwrap() as u32;
    let arch = cfg["model_type"].as_str().unwrap();
    let (h, kvh) = (
        g("num_attention_heads") as usize,
        g("num_key_value_heads") as usize,
    );
    let md: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String(arch.into())),
        (
            format!("{arch}.embedding_length"),
            Value::U32(g("hidden_size")),
        ),
        (
            format!("{arch}.feed_forward_length"),
            Value::U32(g("intermediate_size")),
        ),
        (
            format!("{arch}.block_count"),
            Value::U32(g("num_hidden_layers")),
        ),
        (format!("{arch}.attention.head_count"), Value::U32(h as u32)),
        (
            format!("{arch}.attention.head_count_kv"),
            Value::U32(kvh as u32),
        ),
        (
            format!("{arch}.attention.layer_norm_rms_epsilon"),
            Value::F32(1e-5),
        ),
        (format!("{arch}.rope.freq_base"), Value::F32(10000.0)),
        (format!("{arch}.context_length"), Value::U32(128)),
    ];
    let mut tensors = Vec::new();
    for (hf, t) in w {
        let name = hf
            .replace("model.embed_tokens.weight", "token_embd.weight")
            .replace("model.norm.weight", "output_norm.weight")
            .replace("lm_head.weight", "output.weight")
            .replace("model.layers.", "blk.")
            .replace("input_layernorm", "attn_norm")
            .replace("post_attention_layernorm", "ffn_norm")
            .replace("self_attn.q_proj", "attn_q")
            .replace("self_attn.k_proj", "attn_k")
            .replace("self_attn.v_proj", "attn_v")
            .replace("self_attn.o_proj", "attn_output")
            .replace("mlp.gate_proj", "ffn_gate")
            .replace("mlp.up_proj", "ffn_up")
            .replace("mlp.down_proj", "ffn_down");
        let t = if arch == "llama" && name.ends_with("attn_q.weight") {
            runner::engine::load::gguf::permute(t, h).unwrap()
        } else if arch == "llama" && name.ends_with("attn_k.weight") {
            runner::engine::load::gguf::permute(t, kvh).unwrap()
        } else {
            t.clone()
        };
        tensors.push((name, QTensor::quantize(&t, GgmlDType::F32).unwrap()));
    }
    let md_refs: Vec<(&str, &Value)> = md.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let t_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut f = std::fs::File::create(path).unwrap();
    candle_core::quantized::gguf_file::write(&mut f, &md_refs, &t_refs).unwrap();
}

/// The tiny experiment most integration tests run: the tiny model at `model`, arithmetic rows
/// at `train` (and `eval` when given), LoRA r 4 on q/v, a format and an answer reward, 2 steps.
/// `overrides` is YAML deep-merged on top (mappings merge key by key, anything else replaces,
/// `~` deletes the key), so each test states only what it changes.
pub fn tiny_spec(model: &Path, train: &Path, eval: Option<&Path>, overrides: &str) -> String {
    let mut base: serde_yaml::Value = serde_yaml::from_str(&format!(
        r#"
name: tiny
seed: 3
model:
  base: {model:?}
  adapter: {{r: 4, lora_alpha: 8, lora_dropout: 0.0, target_modules: [q_proj, v_proj]}}
data:
  train:
    path: {train:?}
    fields: {{prompt: question, reference: answer, id: id}}
  prompt:
    template: "{{{{ question }}}} answer:"
generate: {{num_generations: 2, max_completion_length: 8, temperature: 1.0}}
rewards:
  format: {{kind: format, weight: 1.0, regex: '[0-9]'}}
  correct: {{kind: answer, weight: 0.5}}
train: {{learning_rate: 1.0e-3, lr_scheduler_type: constant, max_steps: 2, batch_size: 2}}
"#,
        model = model.display().to_string(),
        train = train.display().to_string(),
    ))
    .expect("base tiny spec");
    if let Some(eval) = eval {
        let with_eval = format!(
            "data: {{eval: {{path: {:?}, fields: {{prompt: question, reference: answer, id: id}}}}}}\n\
             eval: {{every: 1, sets: [eval], num_generations: 2, metrics: [mean_reward]}}",
            eval.display().to_string()
        );
        merge_yaml(
            &mut base,
            serde_yaml::from_str(&with_eval).expect("eval part"),
        );
    }
    merge_yaml(
        &mut base,
        serde_yaml::from_str(overrides).expect("test overrides are YAML"),
    );
    serde_yaml::to_string(&base).expect("spec to YAML")
}

fn merge_yaml(base: &mut serde_yaml::Value, over: serde_yaml::Value) {
    use serde_yaml::Value;
    match (base, over) {
        (Value::Mapping(b), Value::Mapping(o)) => {
            for (k, v) in o {
                if v.is_null() {
                    b.remove(&k);
                } else if let Some(slot) = b.get_mut(&k) {
                    merge_yaml(slot, v);
                } else {
                    b.insert(k, v);
                }
            }
        }
        (b, Value::Null) => *b = Value::Null,
        (b, o) => *b = o,
    }
}

/// A word-level tokenizer.json (+ tokenizer_config.json) for the tiny vocabulary: `t0`..`t60`, `<eos>` = 2 (special).
pub fn write_word_tokenizer(dir: &Path) {
    let mut vocab = serde_json::Map::new();
    for i in 0..VOCAB {
        let tok = match i {
            0 => "<unk>".to_string(),
            1 => "<bos>".to_string(),
            2 => "<eos>".to_string(),
            _ => format!("t{i}"),
        };
        vocab.insert(tok, serde_json::json!(i));
    }
    let tj = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": [{"id": 2, "content": "<eos>", "single_word": false, "lstrip": false,
            "rstrip": false, "normalized": false, "special": true}],
        "normalizer": null, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null,
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<unk>"}
    });
    std::fs::write(dir.join("tokenizer.json"), tj.to_string()).unwrap();
    std::fs::write(
        dir.join("tokenizer_config.json"),
        r#"{"eos_token": "<eos>"}"#,
    )
    .unwrap();
}

/// Put LoRA (r 2, alpha 4) on every linear layer of `m`, A and B random (uniform ±0.5, from fixed
/// seeds) so every gradient is non-zero; the same adapters on any device.
pub fn random_lora(m: &mut runner::engine::model::Model) {
    let lc = runner::engine::model::LoraConfig {
        r: 2,
        alpha: 4.0,
        dropout: 0.0,
        target_modules: vec!["all-linear".into()],
    };
    let mut t = HashMap::new();
    let mut k = 100;
    for (layer, l) in m.layers().iter().enumerate() {
        for (name, lin) in l.linears() {
            let (o, i) = lin.dims().unwrap();
            k += 2;
            let a = rand_tensor(&[2, i], k, 0.5, 0.0);
            let b = rand_tensor(&[o, 2], k + 1, 0.5, 0.0);
            t.insert(format!("model.layers.{layer}.{name}"), (a, b));
        }
    }
    m.set_lora(&lc, t).unwrap();
}
