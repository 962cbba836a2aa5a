//! Adapters saved by `peft::save_adapter` load in Python's `peft` and give the same token
//! log-probs there. Needs a Python with torch, transformers and peft, named by the
//! `RUNNER_PEFT_PYTHON` environment variable; without it the test skips (CI has no torch).
//!
//! `RUNNER_PEFT_PYTHON=/path/to/python3 cargo test --test peft_python -- --nocapture`

mod common;

use std::path::Path;
use std::process::Command;

use candle_core::{DType, Device, Tensor};
use runner::engine::load::{self, LoadOptions, ModelFiles};
use runner::engine::model::{Arch, LoraConfig, Model, TrainBatch};
use runner::engine::peft;

use common::{rand_tensor, random_weights, tiny_config};

const LAYERS: usize = 2;

/// The shared tiny Llama (untied head), as an HF directory transformers can load.
fn write_hf_dir(dir: &Path) {
    let mut cfg = tiny_config(Arch::Llama, false);
    cfg["torch_dtype"] = serde_json::json!("float32");
    common::write_hf_dir(dir, &cfg, &random_weights(&cfg, 3));
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
