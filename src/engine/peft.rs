//! LoRA adapters in PEFT's on-disk format, so `peft.PeftModel.from_pretrained` loads them:
//! `adapter_config.json` and `adapter_model.safetensors` with tensors named
//! `base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight` (`[r, in]`) and
//! `...lora_B.weight` (`[out, r]`). Files are written atomically.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use candle_core::{DType, Device, Tensor};

use super::model::{LoraConfig, Model};

/// `adapter_config.json` file name.
pub const CONFIG_FILE: &str = "adapter_config.json";
/// `adapter_model.safetensors` file name.
pub const WEIGHTS_FILE: &str = "adapter_model.safetensors";
const PREFIX: &str = "base_model.model.";

/// Write `adapter_config.json` and `adapter_model.safetensors` for the model's adapters into
/// `dir` (created if needed).
pub fn save_adapter(model: &Model, dir: &Path) -> crate::Result<()> {
    let cfg = model
        .lora_config()
        .ok_or_else(|| crate::Error::Model("the model has no LoRA adapters to save".into()))?;
    std::fs::create_dir_all(dir).map_err(|e| crate::Error::io(dir, e))?;
    let mut tensors = Vec::new();
    for (path, l) in model.lora_adapters() {
        tensors.push((
            format!("{PREFIX}{path}.lora_A.weight"),
            l.a.as_tensor().clone(),
        ));
        tensors.push((
            format!("{PREFIX}{path}.lora_B.weight"),
            l.b.as_tensor().clone(),
        ));
    }
    write_safetensors(&dir.join(WEIGHTS_FILE), &tensors)?;
    let config = adapter_config_json(cfg, &model.source)?;
    let text = serde_json::to_string_pretty(&config)?;
    write_atomic(&dir.join(CONFIG_FILE), text.as_bytes())
}

/// PEFT's `adapter_config.json` for `cfg`.
pub fn adapter_config_json(cfg: &LoraConfig, base_model: &str) -> crate::Result<serde_json::Value> {
    Ok(serde_json::json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model,
        "r": cfg.r,
        "lora_alpha": cfg.alpha,
        "lora_dropout": cfg.dropout,
        "target_modules": cfg.targets()?,
        "bias": "none",
        "fan_in_fan_out": false,
        "inference_mode": true,
        "init_lora_weights": true,
        "use_rslora": false,
        "use_dora": false,
        "modules_to_save": null,
        "layers_to_transform": null,
        "layers_pattern": null,
        "rank_pattern": {},
        "alpha_pattern": {},
        "revision": null,
    }))
}

/// Parse `dir/adapter_config.json`, rejecting PEFT features this engine does not implement.
pub fn read_adapter_config(dir: &Path) -> crate::Result<(LoraConfig, Option<String>)> {
    let path = dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| crate::Error::io(&path, e))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| crate::Error::Model(format!("{}: {e}", path.display())))?;
    let bad = |what: String| crate::Error::Model(format!("{}: {what}", path.display()));
    if v["peft_type"].as_str() != Some("LORA") {
        return Err(bad(format!("peft_type {} is not LORA", v["peft_type"])));
    }
    for flag in ["use_dora", "use_rslora", "fan_in_fan_out"] {
        if v[flag].as_bool() == Some(true) {
            return Err(bad(format!("{flag} is not supported")));
        }
    }
    if v["bias"].as_str().is_some_and(|b| b != "none") {
        return Err(bad("only bias \"none\" is supported".into()));
    }
    for pat in ["rank_pattern", "alpha_pattern"] {
        if v[pat].as_object().is_some_and(|o| !o.is_empty()) {
            return Err(bad(format!("{pat} is not supported")));
        }
    }
    let r = v["r"]
        .as_u64()
        .ok_or_else(|| bad("missing integer `r`".into()))? as usize;
    let alpha = v["lora_alpha"].as_f64().unwrap_or(8.0);
    let dropout = v["lora_dropout"].as_f64().unwrap_or(0.0);
    let target_modules = match &v["target_modules"] {
        serde_json::Value::String(s) => vec![s.clone()],
        serde_json::Value::Array(a) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| bad("target_modules must be strings".into()))
            })
            .collect::<crate::Result<Vec<_>>>()?,
        _ => return Err(bad("missing target_modules".into())),
    };
    let cfg = LoraConfig {
        r,
        alpha,
        dropout,
        target_modules,
    };
    cfg.targets().map_err(|e| bad(e.to_string()))?;
    let base = v["base_model_name_or_path"].as_str().map(str::to_string);
    Ok((cfg, base))
}

/// Load the adapter in `dir` onto `model` (replacing any adapters it had). Returns its config.
pub fn load_adapter(model: &mut Model, dir: &Path) -> crate::Result<LoraConfig> {
    let (cfg, _) = read_adapter_config(dir)?;
    let path = dir.join(WEIGHTS_FILE);
    if !path.is_file() {
        return Err(crate::Error::Model(format!(
            "{} is missing",
            path.display()
        )));
    }
    let raw = candle_core::safetensors::load(&path, &Device::Cpu)
        .map_err(|e| crate::Error::Model(format!("{}: {e}", path.display())))?;
    let mut pairs: HashMap<String, (Option<Tensor>, Option<Tensor>)> = HashMap::new();
    for (name, t) in raw {
        let stem = name.strip_prefix(PREFIX).unwrap_or(&name);
        // PEFT writes `lora_A.weight`; in-memory state dicts say `lora_A.default.weight`.
        let stem = stem.replace(".default.weight", ".weight");
        let (module, is_a) = if let Some(m) = stem.strip_suffix(".lora_A.weight") {
            (m.to_string(), true)
        } else if let Some(m) = stem.strip_suffix(".lora_B.weight") {
            (m.to_string(), false)
        } else {
            return Err(crate::Error::Model(format!(
                "{}: unexpected tensor `{name}`",
                path.display()
            )));
        };
        let e = pairs.entry(module).or_default();
        if is_a {
            e.0 = Some(t);
        } else {
            e.1 = Some(t);
        }
    }
    let mut tensors = HashMap::new();
    for (module, (a, b)) in pairs {
        match (a, b) {
            (Some(a), Some(b)) => {
                tensors.insert(module, (a, b));
            }
            _ => {
                return Err(crate::Error::Model(format!(
                    "{}: `{module}` lacks lora_A or lora_B",
                    path.display()
                )))
            }
        }
    }
    model.set_lora(&cfg, tensors)?;
    Ok(cfg)
}

/// A tensor's bytes in a form `safetensors` can write.
struct RawTensor {
    dtype: safetensors::Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl safetensors::View for &RawTensor {
    fn dtype(&self) -> safetensors::Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

fn raw(t: &Tensor) -> crate::Result<RawTensor> {
    let flat = t.flatten_all()?.to_device(&Device::Cpu)?;
    let (dtype, bytes) = match t.dtype() {
        DType::F32 => (
            safetensors::Dtype::F32,
            flat.to_vec1::<f32>()?
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect(),
        ),
        DType::BF16 => (
            safetensors::Dtype::BF16,
            flat.to_vec1::<half::bf16>()?
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect(),
        ),
        DType::F16 => (
            safetensors::Dtype::F16,
            flat.to_vec1::<half::f16>()?
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect(),
        ),
        other => {
            return Err(crate::Error::Model(format!(
                "cannot write a {other:?} tensor to safetensors"
            )))
        }
    };
    Ok(RawTensor {
        dtype,
        shape: t.dims().to_vec(),
        bytes,
    })
}

/// Write tensors to a safetensors file (with `{"format": "pt"}` metadata, as transformers and
/// PEFT expect), atomically.
pub fn write_safetensors(path: &Path, tensors: &[(String, Tensor)]) -> crate::Result<()> {
    let raws = tensors
        .iter()
        .map(|(n, t)| Ok((n.clone(), raw(t)?)))
        .collect::<crate::Result<Vec<_>>>()?;
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    let bytes = safetensors::serialize(raws.iter().map(|(n, r)| (n.as_str(), r)), Some(meta))
        .map_err(|e| crate::Error::Model(format!("{}: {e}", path.display())))?;
    write_atomic(path, &bytes)
}

/// Write `bytes` to `path` through a temporary file in the same directory and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> crate::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| crate::Error::io(dir, e))?;
    tmp.write_all(bytes)
        .map_err(|e| crate::Error::io(path, e))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| crate::Error::io(path, e))?;
    // Temp files are created 0600; artifacts are meant to be shared like ordinary files.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(|e| crate::Error::io(path, e))?;
    }
    tmp.persist(path)
        .map_err(|e| crate::Error::io(path, e.error))?;
    Ok(())
}
