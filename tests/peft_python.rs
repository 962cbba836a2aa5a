//! Adapters saved by `peft::save_adapter` load in Python's `peft` and give the same token
//! log-probs there. Needs a Python with torch, transformers and peft, named by the
//! `RUNNER_PEFT_PYTHON` environment variable; without it the test skips (CI has no torch).
//!
//! `RUNNER_PEFT_PYTHON=/path/to/python3 cargo test --test peft_python -- --nocapture`

use std::path::Path;
use std::process::Command;

use candle_core::{DType, Device, Tensor};
use runner::engine::load::{self, LoadOptions, ModelFiles};
use runner::engine::model::{LoraConfig, Model, TrainBatch};
use runner::engine::peft;

const VOCAB: usize = 61;
const HIDDEN: usize = 32;
const INTER: usize = 48;
const LAYERS: usize = 2;
const HEADS: usize = 4;
const KV_HEADS: usize = 2;

/// A tiny Llama config.json that transformers can instantiate `LlamaForCausalLM` from.
fn tiny_llama_config() -> serde_json::Value {
    serde_json::json!({
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "hidden_size": HIDDEN,
        "intermediate_size": INTER,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "max_position_embeddings": 128,
        "vocab_size": VOCAB,
        "tie_word_embeddings": false,
        "hidden_act": "silu",
        "attention_bias": false,
        "mlp_bias": false,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "torch_dtype": "float32",
    })
}

/// Deterministic pseudo-random values uniform in `mean ± scale` (an LCG, so failures reproduce).
fn rand_tensor(shape: &[usize], seed: u64, scale: f64, mean: f64) -> Tensor {
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

/// Random Llama weights under HF names.
fn random_llama_weights(seed: u64) -> Vec<(String, Tensor)> {
    let hd = HIDDEN / HEADS;
    let mut n = seed;
    let mut rnd = |shape: &[usize], scale: f64, mean: f64| {
        n += 1;
        rand_tensor(shape, n, scale, mean)
    };
    let lin = 1.0 / (HIDDEN as f64).sqrt();
    let lin2 = 1.0 / (INTER as f64).sqrt();
    let mut w = vec![(
        "model.embed_tokens.weight".to_string(),
        rnd(&[VOCAB, HIDDEN], 1.0, 0.0),
    )];
    for i in 0..LAYERS {
        let p = format!("model.layers.{i}");
        let mut add = |name: &str, t: Tensor| w.push((format!("{p}.{name}"), t));
        add("input_layernorm.weight", rnd(&[HIDDEN], 0.2, 1.0));
        add("post_attention_layernorm.weight", rnd(&[HIDDEN], 0.2, 1.0));
        add(
            "self_attn.q_proj.weight",
            rnd(&[HEADS * hd, HIDDEN], lin, 0.0),
        );
        add(
            "self_attn.k_proj.weight",
            rnd(&[KV_HEADS * hd, HIDDEN], lin, 0.0),
        );
        add(
            "self_attn.v_proj.weight",
            rnd(&[KV_HEADS * hd, HIDDEN], lin, 0.0),
        );
        add(
            "self_attn.o_proj.weight",
            rnd(&[HIDDEN, HEADS * hd], lin, 0.0),
        );
        add("mlp.gate_proj.weight", rnd(&[INTER, HIDDEN], lin, 0.0));
        add("mlp.up_proj.weight", rnd(&[INTER, HIDDEN], lin, 0.0));
        add("mlp.down_proj.weight", rnd(&[HIDDEN, INTER], lin2, 0.0));
    }
    w.push(("model.norm.weight".to_string(), rnd(&[HIDDEN], 0.2, 1.0)));
    w.push((
        "lm_head.weight".to_string(),
        rnd(&[VOCAB, HIDDEN], 0.5, 0.0),
    ));
    w
}

/// Write an HF directory: config.json + model.safetensors (with the `{"format": "pt"}`
/// metadata transformers expects).
fn write_hf_dir(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string_pretty(&tiny_llama_config()).unwrap(),
    )
    .unwrap();
    peft::write_safetensors(&dir.join("model.safetensors"), &random_llama_weights(3)).unwrap();
}

fn load_dir(dir: &Path) -> Model {
    let opts = LoadOptions {
        dtype: DType::F32,
        device: Device::Cpu,
        lora: None,
    };
    load::load_model(&ModelFiles::HfDir(dir.to_path_buf()), &opts)
        .unwrap()
        .0
}

/// Two right-padded rows (the padding only follows the real tokens, so causal attention keeps
/// it out of their log-probs; both sides compute every position the same way).
const ROWS: [[u32; 9]; 2] = [
    [5, 17, 3, 42, 60, 8, 8, 23, 11],
    [9, 9, 1, 2, 3, 50, 0, 0, 0],
];

fn batch() -> TrainBatch {
    let flat: Vec<u32> = ROWS.iter().flatten().copied().collect();
    TrainBatch {
        input_ids: Tensor::from_vec(flat, (2, 9), &Device::Cpu).unwrap(),
        completion_mask: Tensor::ones((2, 9), DType::F32, &Device::Cpu).unwrap(),
    }
}

fn parse_rows(v: &serde_json::Value) -> Vec<Vec<f32>> {
    v.as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            r.as_array()
                .expect("row")
                .iter()
                .map(|x| x.as_f64().expect("number") as f32)
                .collect()
        })
        .collect()
}

fn max_abs_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| {
            assert_eq!(x.len(), y.len());
            x.iter().zip(y).map(|(p, q)| (p - q).abs())
        })
        .fold(0.0, f32::max)
}

#[test]
fn peft_adapter_loads_in_python_peft() {
    let Ok(python) = std::env::var("RUNNER_PEFT_PYTHON") else {
        eprintln!("skipping peft_adapter_loads_in_python_peft: RUNNER_PEFT_PYTHON is not set");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let base_dir = tmp.path().join("base");
    write_hf_dir(&base_dir);

    let mut model = load_dir(&base_dir);
    let lc = LoraConfig {
        r: 4,
        alpha: 8.0,
        dropout: 0.0,
        target_modules: vec!["q_proj".into(), "v_proj".into()],
    };
    model.attach_lora(&lc, 11).unwrap();
    let adapters = model.lora_adapters();
    assert_eq!(adapters.len(), 2 * LAYERS);
    // A fresh B is zero (the adapter is the identity); make it non-zero so the adapter matters.
    for (k, (_, l)) in adapters.iter().enumerate() {
        let shape = l.b.dims().to_vec();
        l.b.set(&rand_tensor(&shape, 1000 + k as u64, 0.5, 0.0))
            .unwrap();
    }
    let adapter_dir = tmp.path().join("adapter");
    peft::save_adapter(&model, &adapter_dir).unwrap();

    let ours: Vec<Vec<f32>> = model
        .token_logprobs(&batch())
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    let tokens_json = tmp.path().join("tokens.json");
    std::fs::write(&tokens_json, serde_json::to_string(&ROWS).unwrap()).unwrap();

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/python/check_peft.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg(&base_dir)
        .arg(&adapter_dir)
        .arg(&tokens_json)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    assert!(
        out.status.success(),
        "check_peft.py failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !stderr.trim().is_empty() {
        eprintln!("check_peft.py stderr:\n{stderr}");
    }
    let last = stdout.lines().last().unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("check_peft.py printed no JSON ({e}):\n{stdout}"));
    let py_base = parse_rows(&v["base"]);
    let py_adapter = parse_rows(&v["adapter"]);

    let ours_base: Vec<Vec<f32>> = load_dir(&base_dir)
        .token_logprobs(&batch())
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    let base_diff = max_abs_diff(&ours_base, &py_base);
    let diff = max_abs_diff(&ours, &py_adapter);
    let effect = max_abs_diff(&py_base, &py_adapter);
    eprintln!(
        "max |Δ log-prob|: runner vs transformers (base) {base_diff:e}, runner vs peft (adapter) \
         {diff:e}; adapter effect in peft {effect:e}"
    );
    assert!(base_diff <= 1e-4, "base models differ by {base_diff}");
    assert!(diff <= 1e-4, "runner and peft log-probs differ by {diff}");
    assert!(
        effect > 1e-2,
        "the adapter barely changes peft's log-probs ({effect}); it was not applied"
    );
}
