//! HF hub ids (`org/name`) through `hf-hub` and the standard HF cache (`$HF_HOME/hub`).
//! A cached model loads with no network; `HF_HUB_OFFLINE=1` never tries the network.

use std::path::PathBuf;

const REQUIRED: &str = "config.json";
const OPTIONAL: [&str; 4] = [
    "tokenizer.json",
    "tokenizer_config.json",
    "generation_config.json",
    "special_tokens_map.json",
];

/// Whether `s` looks like a hub id (`owner/name`, no path separators beyond that one).
pub fn looks_like_hub_id(s: &str) -> bool {
    let parts: Vec<&str> = s.split('/').collect();
    parts.len() == 2
        && parts.iter().all(|p| {
            !p.is_empty()
                && !p.starts_with('.')
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        })
}

fn offline() -> bool {
    std::env::var("HF_HUB_OFFLINE")
        .map(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"))
        .unwrap_or(false)
}

/// The weight files a checkpoint needs, given a way to fetch a file (cache or network).
fn weight_names(get: &mut dyn FnMut(&str) -> Option<PathBuf>) -> crate::Result<Vec<String>> {
    if get("model.safetensors").is_some() {
        return Ok(vec!["model.safetensors".into()]);
    }
    let index = get("model.safetensors.index.json").ok_or_else(|| {
        crate::Error::Model("neither model.safetensors nor model.safetensors.index.json".into())
    })?;
    let files = super::hf_dir::weight_files(index.parent().unwrap_or(&index))?;
    Ok(files
        .iter()
        .filter_map(|f| f.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect())
}

/// The local snapshot directory of `id`, from the cache, else downloaded.
pub fn resolve(id: &str) -> crate::Result<PathBuf> {
    let cache = hf_hub::Cache::from_env();
    let repo = cache.model(id.to_string());
    if let Some(cfg) = repo.get(REQUIRED) {
        let mut get = |f: &str| repo.get(f);
        if weight_names(&mut get)
            .map(|names| names.iter().all(|n| repo.get(n).is_some()))
            .unwrap_or(false)
        {
            return cfg
                .parent()
                .map(|p| p.to_path_buf())
                .ok_or_else(|| crate::Error::Model(format!("odd cache path {}", cfg.display())));
        }
    }
    if offline() {
        return Err(crate::Error::Model(format!(
            "`{id}` is not (fully) in the HF cache at {} and HF_HUB_OFFLINE is set; \
             download it on a machine with network (e.g. `hf download {id}`) or pass a local path",
            cache.path().display()
        )));
    }
    download(id).map_err(|e| {
        crate::Error::Model(format!(
            "`{id}` is not in the HF cache at {} and downloading it failed: {e}. \
             With no network, copy the model into the HF cache or pass a local directory or .gguf file",
            cache.path().display()
        ))
    })
}

fn download(id: &str) -> crate::Result<PathBuf> {
    let api = hf_hub::api::sync::ApiBuilder::from_env()
        .with_progress(false)
        .build()
        .map_err(|e| crate::Error::Model(e.to_string()))?;
    let repo = api.model(id.to_string());
    let cfg = repo
        .get(REQUIRED)
        .map_err(|e| crate::Error::Model(e.to_string()))?;
    let mut get = |f: &str| repo.get(f).ok();
    for name in weight_names(&mut get)? {
        repo.get(&name)
            .map_err(|e| crate::Error::Model(format!("{name}: {e}")))?;
    }
    for name in OPTIONAL {
        // Absent optional files are fine (the repo may not have them).
        let _ = repo.get(name);
    }
    cfg.parent()
        .map(|p| p.to_path_buf())
        .ok_or_else(|| crate::Error::Model(format!("odd cache path {}", cfg.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_id_shape() {
        assert!(looks_like_hub_id("HuggingFaceTB/SmolLM2-135M-Instruct"));
        assert!(looks_like_hub_id("Qwen/Qwen2.5-0.5B"));
        assert!(!looks_like_hub_id("smollm2-135m-instruct"));
        assert!(!looks_like_hub_id("./a/b"));
        assert!(!looks_like_hub_id("/abs/path"));
        assert!(!looks_like_hub_id("a/b/c"));
    }
}
