//! HF model directories: `config.json` plus `model.safetensors` or a sharded checkpoint
//! (`model.safetensors.index.json` naming its shards).

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

use crate::engine::model::Config;

/// Read and parse `dir/config.json`.
pub fn read_config(dir: &Path) -> crate::Result<Config> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|e| crate::Error::io(&path, e))?;
    Config::from_hf_json(&text).map_err(|e| crate::Error::Model(format!("{}: {e}", path.display())))
}

/// The safetensors files of the checkpoint in `dir`.
pub fn weight_files(dir: &Path) -> crate::Result<Vec<PathBuf>> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        let text = std::fs::read_to_string(&index).map_err(|e| crate::Error::io(&index, e))?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| crate::Error::Model(format!("{}: {e}", index.display())))?;
        let map = v
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| {
                crate::Error::Model(format!("{}: no `weight_map` object", index.display()))
            })?;
        let shards: BTreeSet<&str> = map.values().filter_map(|f| f.as_str()).collect();
        if shards.is_empty() {
            return Err(crate::Error::Model(format!(
                "{}: empty weight_map",
                index.display()
            )));
        }
        return Ok(shards.into_iter().map(|s| dir.join(s)).collect());
    }
    Err(crate::Error::Model(format!(
        "{}: neither model.safetensors nor model.safetensors.index.json found",
        dir.display()
    )))
}

/// Read every tensor of the given safetensors files (on the CPU, as stored).
pub fn read_weights(files: &[PathBuf]) -> crate::Result<HashMap<String, Tensor>> {
    let mut all = HashMap::new();
    for f in files {
        if !f.is_file() {
            return Err(crate::Error::Model(format!(
                "missing weight shard {}",
                f.display()
            )));
        }
        let part = candle_core::safetensors::load(f, &Device::Cpu)
            .map_err(|e| crate::Error::Model(format!("{}: {e}", f.display())))?;
        all.extend(part);
    }
    Ok(all)
}
