//! One loader for HF directories, HF hub ids, known asset names and GGUF files.
//!
//! Resolution order for `id_or_path`: an existing directory (HF layout) or `.gguf` file; a
//! known asset name (`smollm2-135m-instruct`, fetched into the runner's cache); an HF hub id
//! (`owner/name`, from the HF cache or downloaded).

pub mod gguf;
pub mod hf_dir;
pub mod hub;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};

use super::model::{LoraConfig, Model};
use super::tokenizer::{self, Tok};

/// How to load a model.
pub struct LoadOptions {
    pub dtype: DType,
    pub device: Device,
    /// Attach fresh LoRA adapters (the only trainable parameters) when set. A is drawn from a
    /// fixed seed (0); use [`Model::attach_lora`] for another seed.
    pub lora: Option<LoraConfig>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            dtype: DType::F32,
            device: Device::Cpu,
            lora: None,
        }
    }
}

/// A model with its tokenizer.
pub struct LoadedModel {
    pub model: Model,
    pub tokenizer: Tok,
}

/// Where a model's files are on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelFiles {
    /// An HF model directory.
    HfDir(PathBuf),
    /// A GGUF file.
    Gguf(PathBuf),
}

impl ModelFiles {
    pub fn path(&self) -> &Path {
        match self {
            ModelFiles::HfDir(p) | ModelFiles::Gguf(p) => p,
        }
    }
}

/// Find the files of `id_or_path` (fetching known assets or hub models when needed).
pub fn resolve(id_or_path: &str) -> crate::Result<ModelFiles> {
    let p = Path::new(id_or_path);
    if p.is_dir() {
        return Ok(ModelFiles::HfDir(p.to_path_buf()));
    }
    if p.is_file() {
        return files_at(p);
    }
    if let Some(path) = crate::engine::assets::resolve_known(id_or_path)? {
        return if path.is_dir() {
            Ok(ModelFiles::HfDir(path))
        } else {
            files_at(&path)
        };
    }
    if hub::looks_like_hub_id(id_or_path) {
        return Ok(ModelFiles::HfDir(hub::resolve(id_or_path)?));
    }
    Err(crate::Error::Model(format!(
        "`{id_or_path}` is not a model directory, a .gguf file, a known model name \
         (see `runner models list`) or an HF hub id (owner/name)"
    )))
}

fn files_at(p: &Path) -> crate::Result<ModelFiles> {
    let is_gguf = p
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gguf"));
    if is_gguf {
        Ok(ModelFiles::Gguf(p.to_path_buf()))
    } else {
        Err(crate::Error::Model(format!(
            "{}: a model file must be a .gguf (or pass an HF model directory)",
            p.display()
        )))
    }
}

/// Load the model only (no tokenizer), plus the GGUF metadata when the source is a GGUF file.
pub fn load_model(
    files: &ModelFiles,
    opts: &LoadOptions,
) -> crate::Result<(Model, Option<candle_core::quantized::gguf_file::Content>)> {
    let (mut model, content) = match files {
        ModelFiles::HfDir(dir) => {
            let config = hf_dir::read_config(dir)?;
            let mut w = hf_dir::read_weights(&hf_dir::weight_files(dir)?)?;
            (
                Model::from_weights(config, &mut w, opts.dtype, &opts.device)?,
                None,
            )
        }
        ModelFiles::Gguf(path) => {
            let mut g = gguf::read(path)?;
            let model = Model::from_weights(g.config, &mut g.tensors, opts.dtype, &opts.device)?;
            (model, Some(g.content))
        }
    };
    model.source = files.path().display().to_string();
    if let Some(l) = &opts.lora {
        model.attach_lora(l, 0)?;
    }
    Ok((model, content))
}

/// Load `id_or_path`: a local HF directory, a `.gguf` file, a known asset name
/// (`smollm2-135m-instruct`, fetched into the cache), or an HF hub id.
pub fn load(id_or_path: &str, opts: &LoadOptions) -> crate::Result<LoadedModel> {
    let files = resolve(id_or_path)?;
    let (mut model, content) = load_model(&files, opts)?;
    let tokenizer = match (&files, &content) {
        (_, Some(c)) => tokenizer::from_gguf(c)?,
        (ModelFiles::HfDir(dir), None) => tokenizer::from_hf_dir(dir)?,
        (ModelFiles::Gguf(p), None) => {
            return Err(crate::Error::Model(format!(
                "{}: GGUF metadata missing",
                p.display()
            )))
        }
    };
    // Keep the name the user gave (hub id or asset name) for PEFT's base_model_name_or_path.
    if !Path::new(id_or_path).exists() {
        model.source = id_or_path.to_string();
    }
    Ok(LoadedModel { model, tokenizer })
}
