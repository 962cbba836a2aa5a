//! The transformer family (Llama, Qwen2, Qwen3), LoRA and the KV cache.
//!
//! One implementation serves both sampling (KV cache, last-position logits) and training
//! (`token_logprobs`, whose backward reaches the LoRA `Var`s through `crate::engine::ops`).
//! Weights are kept under their HF names' structure; GGUF files are mapped to it by the loader.

pub mod cache;
pub mod config;
pub mod layers;
pub mod linear;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use candle_core::{DType, Device, Tensor, Var, D};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub use cache::KvCache;
pub use config::{Arch, Config};
use layers::{Attention, Context, DecoderLayer, Mlp, Rope};
pub use linear::{DropoutMasks, Linear, LoraAdapter};

use crate::engine::ops;

/// The linear modules LoRA can target, as PEFT names them.
pub const LORA_TARGETS: [&str; 7] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

/// LoRA adapter settings (PEFT's names).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LoraConfig {
    pub r: usize,
    pub alpha: f64,
    pub dropout: f64,
    /// Target modules among q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj
    /// (`all-linear` means all seven).
    pub target_modules: Vec<String>,
}

impl LoraConfig {
    /// Check the settings and expand `all-linear`; returns the target module names.
    pub fn targets(&self) -> crate::Result<Vec<String>> {
        if self.r == 0 {
            return Err(crate::Error::Model("LoRA r must be at least 1".into()));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(crate::Error::Model(format!(
                "LoRA dropout {} must be in [0, 1)",
                self.dropout
            )));
        }
        let mut out = Vec::new();
        for t in &self.target_modules {
            if t == "all-linear" {
                out.extend(LORA_TARGETS.iter().map(|s| s.to_string()));
            } else if LORA_TARGETS.contains(&t.as_str()) {
                out.push(t.clone());
            } else {
                return Err(crate::Error::Model(format!(
                    "unknown LoRA target module `{t}` (expected one of {}, or all-linear)",
                    LORA_TARGETS.join(", ")
                )));
            }
        }
        if out.is_empty() {
            return Err(crate::Error::Model("LoRA target_modules is empty".into()));
        }
        out.sort();
        out.dedup();
        Ok(out)
    }
}

/// A right-padded batch of prompt+completion sequences for the training forward.
pub struct TrainBatch {
    /// `[b, t]` u32 token ids.
    pub input_ids: Tensor,
    /// `[b, t]` f32, 1 on completion tokens (the ones whose log-prob is trained), else 0.
    pub completion_mask: Tensor,
}

/// Consecutive rows of a training batch that share a prompt (see `Model::prompt_groups`).
#[derive(Debug, Clone, PartialEq)]
struct PromptGroup {
    start: usize,
    rows: usize,
    prompt_len: usize,
    /// One past the last completion token of any of its rows.
    len: usize,
}

/// What every layer sees besides its input during one pass (see [`layers::Context`]).
enum Pass<'a> {
    Plain,
    Cache(&'a mut KvCache),
    Record(&'a mut Vec<(Tensor, Tensor)>),
    Prefix(&'a [(Tensor, Tensor)]),
}

/// A loaded causal LM.
pub struct Model {
    pub config: Config,
    embed_tokens: Tensor,
    embed_var: Option<Var>,
    layers: Vec<DecoderLayer>,
    norm: Tensor,
    /// `None` when tied to the embeddings.
    lm_head: Option<Tensor>,
    dtype: DType,
    device: Device,
    lora: Option<LoraConfig>,
    full_finetune: bool,
    training: AtomicBool,
    adapters_enabled: std::sync::Arc<AtomicBool>,
    dropout_rng: Mutex<ChaCha8Rng>,
    /// Where the base weights came from (`base_model_name_or_path` in PEFT files).
    pub source: String,
}

/// Take one tensor by name, checking its shape.
fn take(
    w: &mut HashMap<String, Tensor>,
    name: &str,
    shape: &[usize],
    dtype: DType,
    device: &Device,
) -> crate::Result<Tensor> {
    let t = w
        .remove(name)
        .ok_or_else(|| crate::Error::Model(format!("weights lack tensor `{name}`")))?;
    if t.dims() != shape {
        return Err(crate::Error::Model(format!(
            "tensor `{name}` has shape {:?}, expected {shape:?}",
            t.dims()
        )));
    }
    Ok(t.to_device(device)?.to_dtype(dtype)?)
}

impl Model {
    /// Build the model from tensors under HF names (`model.layers.0.self_attn.q_proj.weight`,
    /// ...), converting them to `dtype` on `device`. Tensors are removed from `w` as they are
    /// used. A missing `lm_head.weight` means tied embeddings.
    pub fn from_weights(
        config: Config,
        w: &mut HashMap<String, Tensor>,
        dtype: DType,
        device: &Device,
    ) -> crate::Result<Model> {
        if !matches!(dtype, DType::F32 | DType::BF16 | DType::F16) {
            return Err(crate::Error::Model(format!(
                "dtype {dtype:?} is not supported (f32, bf16)"
            )));
        }
        let c = &config;
        let (d, inter, hd) = (c.hidden_size, c.intermediate_size, c.head_dim);
        let (qd, kvd) = (c.num_attention_heads * hd, c.num_key_value_heads * hd);
        let embed_tokens = take(
            w,
            "model.embed_tokens.weight",
            &[c.vocab_size, d],
            dtype,
            device,
        )?;
        let mut layers = Vec::with_capacity(c.num_hidden_layers);
        for i in 0..c.num_hidden_layers {
            let p = format!("model.layers.{i}");
            let mut lin =
                |name: &str, out: usize, inp: usize, bias: bool| -> crate::Result<Linear> {
                    let wt = take(w, &format!("{p}.{name}.weight"), &[out, inp], dtype, device)?;
                    let b = if bias {
                        Some(take(w, &format!("{p}.{name}.bias"), &[out], dtype, device)?)
                    } else {
                        None
                    };
                    Ok(Linear::new(wt, b))
                };
            let q_proj = lin("self_attn.q_proj", qd, d, c.qkv_bias)?;
            let k_proj = lin("self_attn.k_proj", kvd, d, c.qkv_bias)?;
            let v_proj = lin("self_attn.v_proj", kvd, d, c.qkv_bias)?;
            let o_proj = lin("self_attn.o_proj", d, qd, c.o_bias)?;
            let gate_proj = lin("mlp.gate_proj", inter, d, false)?;
            let up_proj = lin("mlp.up_proj", inter, d, false)?;
            let down_proj = lin("mlp.down_proj", d, inter, false)?;
            let (q_norm, k_norm) = if c.qk_norm {
                (
                    Some(take(
                        w,
                        &format!("{p}.self_attn.q_norm.weight"),
                        &[hd],
                        dtype,
                        device,
                    )?),
                    Some(take(
                        w,
                        &format!("{p}.self_attn.k_norm.weight"),
                        &[hd],
                        dtype,
                        device,
                    )?),
                )
            } else {
                (None, None)
            };
            layers.push(DecoderLayer {
                input_layernorm: take(
                    w,
                    &format!("{p}.input_layernorm.weight"),
                    &[d],
                    dtype,
                    device,
                )?,
                post_attention_layernorm: take(
                    w,
                    &format!("{p}.post_attention_layernorm.weight"),
                    &[d],
                    dtype,
                    device,
                )?,
                self_attn: Attention {
                    q_proj,
                    k_proj,
                    v_proj,
                    o_proj,
                    q_norm,
                    k_norm,
                    n_heads: c.num_attention_heads,
                    n_kv_heads: c.num_key_value_heads,
                    head_dim: hd,
                    eps: c.rms_norm_eps,
                },
                mlp: Mlp {
                    gate_proj,
                    up_proj,
                    down_proj,
                },
                eps: c.rms_norm_eps,
            });
        }
        let norm = take(w, "model.norm.weight", &[d], dtype, device)?;
        let mut config = config;
        let lm_head = if config.tie_word_embeddings || !w.contains_key("lm_head.weight") {
            config.tie_word_embeddings = true;
            w.remove("lm_head.weight");
            None
        } else {
            Some(take(
                w,
                "lm_head.weight",
                &[config.vocab_size, d],
                dtype,
                device,
            )?)
        };
        Ok(Model {
            config,
            embed_tokens,
            embed_var: None,
            layers,
            norm,
            lm_head,
            dtype,
            device: device.clone(),
            lora: None,
            full_finetune: false,
            training: AtomicBool::new(false),
            adapters_enabled: std::sync::Arc::new(AtomicBool::new(true)),
            dropout_rng: Mutex::new(ChaCha8Rng::seed_from_u64(0)),
            source: String::new(),
        })
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The LM head `[vocab, d]` (the embeddings when tied).
    pub fn lm_head(&self) -> &Tensor {
        self.lm_head.as_ref().unwrap_or(&self.embed_tokens)
    }

    /// The decoder layers.
    pub fn layers(&self) -> &[DecoderLayer] {
        &self.layers
    }

    /// An empty KV cache with room for `capacity` positions.
    pub fn new_cache(&self, capacity: usize) -> KvCache {
        KvCache::new(self.layers.len(), capacity)
    }

    /// Training mode turns LoRA dropout on in `token_logprobs` (off by default; sampling never
    /// uses dropout).
    pub fn set_training(&self, on: bool) {
        self.training.store(on, Ordering::Relaxed);
    }

    /// Reseed the dropout masks' random stream.
    pub fn set_dropout_seed(&self, seed: u64) {
        if let Ok(mut rng) = self.dropout_rng.lock() {
            *rng = ChaCha8Rng::seed_from_u64(seed);
        }
    }

    /// Hidden states after the last layer (before the final norm), `[b, t, d]`, for tokens at
    /// positions after what `pass` puts before them (a cache's length, a prefix's, or 0).
    fn hidden(
        &self,
        input_ids: &Tensor,
        mut pass: Pass<'_>,
        dropout: Option<&dyn DropoutMasks>,
    ) -> crate::Result<Tensor> {
        let (b, t) = input_ids.dims2()?;
        if t == 0 {
            return Err(crate::Error::Model("empty input sequence".into()));
        }
        let offset = match &pass {
            Pass::Cache(c) => c.len(),
            Pass::Prefix(kv) => match kv.first() {
                Some((k, _)) => k.dim(2)?,
                None => 0,
            },
            Pass::Plain | Pass::Record(_) => 0,
        };
        if let Pass::Prefix(kv) = &pass {
            if kv.len() != self.layers.len() {
                return Err(crate::Error::Model(format!(
                    "a shared prefix holds {} layers' keys and values, the model has {}",
                    kv.len(),
                    self.layers.len()
                )));
            }
        }
        let rope = Rope::new(&self.config, offset, t, &self.device)?;
        let mut x = self
            .embed_tokens
            .index_select(&input_ids.flatten_all()?, 0)?
            .reshape((b, t, self.config.hidden_size))?;
        for (i, layer) in self.layers.iter().enumerate() {
            let ctx = match &mut pass {
                Pass::Plain => Context::None,
                Pass::Cache(c) => Context::Cache(c, i),
                Pass::Record(out) => Context::Record(out),
                Pass::Prefix(kv) => Context::Prefix(&kv[i].0, &kv[i].1),
            };
            x = layer.forward(&x, &rope, ctx, dropout)?;
        }
        if let Pass::Cache(c) = pass {
            c.advance(t);
        }
        Ok(x)
    }

    /// Inference forward: feed `input_ids: [b, t]` after what `cache` holds and return the
    /// last position's logits `[b, vocab]` in f32.
    pub fn forward_logits(&self, input_ids: &Tensor, cache: &mut KvCache) -> crate::Result<Tensor> {
        let x = self.hidden(input_ids, Pass::Cache(cache), None)?;
        let x = layers::last_position(&x)?;
        let x = ops::rms_norm(&x, &self.norm, self.config.rms_norm_eps)?;
        if x.device().is_cpu() {
            // The frozen linear's small-row kernel streams the head (f32 or bf16) once per step.
            return Ok(ops::frozen_linear(
                &x.to_dtype(DType::F32)?,
                self.lm_head(),
            )?);
        }
        Ok(x.matmul(&self.lm_head().t()?)?.to_dtype(DType::F32)?)
    }

    /// Logits at every position, `[b, t, vocab]` f32, without a cache (tests, evaluation).
    pub fn forward_all_logits(&self, input_ids: &Tensor) -> crate::Result<Tensor> {
        let x = self.hidden(input_ids, Pass::Plain, None)?;
        let x = ops::rms_norm(&x, &self.norm, self.config.rms_norm_eps)?;
        if x.device().is_cpu() {
            // As in `forward_logits`: the head in f32 arithmetic, whatever the weights' dtype.
            return Ok(ops::frozen_linear(
                &x.to_dtype(DType::F32)?,
                self.lm_head(),
            )?);
        }
        Ok(x.broadcast_matmul(&self.lm_head().t()?)?
            .to_dtype(DType::F32)?)
    }

    /// Per-token log-probs `[b, t-1]` of `input_ids[:, 1:]` (the mask says which count).
    /// Differentiable with respect to [`Model::trainable_vars`]; LoRA dropout applies when
    /// [`Model::set_training`] is on.
    pub fn token_logprobs(&self, batch: &TrainBatch) -> crate::Result<Tensor> {
        self.token_logprobs_at(batch, 1.0)
    }

    /// [`Model::token_logprobs`] of the temperature-scaled distribution `softmax(logits / T)`,
    /// the distribution rollouts are sampled from and whose log-probs they record (as TRL
    /// scales logits by the sampling temperature in its loss).
    pub fn token_logprobs_at(&self, batch: &TrainBatch, temperature: f64) -> crate::Result<Tensor> {
        Ok(self
            .token_logprobs_impl(batch, temperature, false, false)?
            .0)
    }

    /// [`Model::token_logprobs_at`] computed only where `batch.completion_mask[:, 1:]` is
    /// non-zero (the positions a policy or SFT loss counts); the others come out 0 and cost
    /// no LM-head work, forward or backward (TRL's `logits_to_keep`: prompt rows need no
    /// logits). Equal to `token_logprobs_at(..) * mask` wherever the mask is non-zero.
    pub fn token_logprobs_masked_at(
        &self,
        batch: &TrainBatch,
        temperature: f64,
    ) -> crate::Result<Tensor> {
        Ok(self.token_logprobs_impl(batch, temperature, true, false)?.0)
    }

    /// [`Model::token_logprobs_at`] (all rows) or [`Model::token_logprobs_masked_at`]
    /// (`masked`: only where `completion_mask[:, 1:]` is non-zero) together with the entropy
    /// `H = −Σ_v p_v ln p_v` of each position's temperature-scaled next-token distribution
    /// (TRL's `entropy`), `[b, t-1]` f32, detached. The fused LM-head op computes it in its
    /// forward from the softmax it forms anyway; skipped rows come out 0.
    pub fn token_logprobs_entropy_at(
        &self,
        batch: &TrainBatch,
        temperature: f64,
        masked: bool,
    ) -> crate::Result<(Tensor, Tensor)> {
        let (lp, h) = self.token_logprobs_impl(batch, temperature, masked, true)?;
        let h = h.ok_or_else(|| crate::Error::Model("the entropy was not computed".into()))?;
        Ok((lp, h))
    }

    /// The log-probs `[b, t-1]`, and their rows' entropies when `entropy`.
    fn token_logprobs_impl(
        &self,
        batch: &TrainBatch,
        temperature: f64,
        masked: bool,
        entropy: bool,
    ) -> crate::Result<(Tensor, Option<Tensor>)> {
        if !(temperature > 0.0 && temperature.is_finite()) {
            return Err(crate::Error::Model(format!(
                "temperature must be positive and finite, got {temperature}"
            )));
        }
        let (b, t) = batch.input_ids.dims2()?;
        if t < 2 {
            return Err(crate::Error::Model(
                "token_logprobs needs sequences of at least 2 tokens".into(),
            ));
        }
        if batch.completion_mask.dims() != [b, t] {
            return Err(crate::Error::Model(format!(
                "completion_mask has shape {:?}, expected [{b}, {t}]",
                batch.completion_mask.dims()
            )));
        }
        let dropout: Option<&dyn DropoutMasks> = if self.training.load(Ordering::Relaxed) {
            Some(self)
        } else {
            None
        };
        if masked {
            if let Some(groups) = self.prompt_groups(batch)? {
                return self.token_logprobs_grouped(batch, &groups, temperature, entropy, dropout);
            }
        }
        let x = self.hidden(&batch.input_ids, Pass::Plain, dropout)?;
        let x = x.narrow(1, 0, t - 1)?;
        let targets = batch.input_ids.narrow(1, 1, t - 1)?;
        // The rows to compute: all, or the masked-in ones (`None` = all).
        let keep = if masked {
            live_rows(&batch.completion_mask.narrow(1, 1, t - 1)?)?
        } else {
            None
        };
        self.head_logprobs(&x, &targets, keep, temperature, entropy)
    }

    /// The batch's rows as runs of rollouts of one prompt (GRPO's groups: the same tokens
    /// before the first completion token, which sits at the same position), when that saves
    /// work: some run has two rows or more. `None` too with LoRA dropout (each row's prompt
    /// draws its own masks in training) or when a row has no completion token.
    fn prompt_groups(&self, batch: &TrainBatch) -> crate::Result<Option<Vec<PromptGroup>>> {
        // Decided by the configuration alone, not the training flag, so that the policy and
        // the reference forward (adapters off, not training) round alike: at Δ = 0 they agree
        // to the bit.
        let has_dropout = self.lora.as_ref().is_some_and(|l| l.dropout > 0.0);
        if batch.input_ids.dim(0)? < 2 || has_dropout {
            return Ok(None);
        }
        let ids = batch.input_ids.to_dtype(DType::U32)?.to_vec2::<u32>()?;
        let mask = batch
            .completion_mask
            .to_dtype(DType::F32)?
            .to_vec2::<f32>()?;
        let mut groups: Vec<PromptGroup> = Vec::new();
        for (i, (row, m)) in ids.iter().zip(&mask).enumerate() {
            let (Some(p), Some(last)) = (
                m.iter().position(|&x| x != 0.0),
                m.iter().rposition(|&x| x != 0.0),
            ) else {
                return Ok(None);
            };
            if p == 0 {
                return Ok(None);
            }
            match groups.last_mut() {
                Some(g) if g.prompt_len == p && ids[g.start][..p] == row[..p] => {
                    g.rows += 1;
                    g.len = g.len.max(last + 1);
                }
                _ => groups.push(PromptGroup {
                    start: i,
                    rows: 1,
                    prompt_len: p,
                    len: last + 1,
                }),
            }
        }
        Ok((groups.len() < ids.len()).then_some(groups))
    }

    /// [`Model::token_logprobs_masked_at`] group by group: each group's prompt runs once
    /// (see [`Model::token_logprobs_shared`]), its rows cut to their last completion token.
    fn token_logprobs_grouped(
        &self,
        batch: &TrainBatch,
        groups: &[PromptGroup],
        temperature: f64,
        entropy: bool,
        dropout: Option<&dyn DropoutMasks>,
    ) -> crate::Result<(Tensor, Option<Tensor>)> {
        let t = batch.input_ids.dim(1)?;
        let (mut lps, mut ents) = (Vec::new(), Vec::new());
        for g in groups {
            let cut = |x: &Tensor| -> crate::Result<Tensor> {
                Ok(x.narrow(0, g.start, g.rows)?
                    .narrow(1, 0, g.len)?
                    .contiguous()?)
            };
            let sub = TrainBatch {
                input_ids: cut(&batch.input_ids)?,
                completion_mask: cut(&batch.completion_mask)?,
            };
            let (lp, ent) =
                self.token_logprobs_shared(&sub, g.prompt_len, temperature, entropy, dropout)?;
            // Back to `t − 1` columns: the cut positions predict padding.
            let widen = |x: Tensor| -> crate::Result<Tensor> {
                if g.len == t {
                    return Ok(x);
                }
                let z = Tensor::zeros((g.rows, t - g.len), x.dtype(), x.device())?;
                Ok(Tensor::cat(&[&x, &z], 1)?)
            };
            lps.push(widen(lp)?);
            if let Some(h) = ent {
                ents.push(widen(h)?);
            }
        }
        let ent = if entropy {
            Some(Tensor::cat(&ents, 0)?)
        } else {
            None
        };
        Ok((Tensor::cat(&lps, 0)?, ent))
    }

    /// [`Model::token_logprobs_masked_at`] for rows sharing a prompt of `p` tokens: the prompt
    /// runs once (`[1, p]`) and the completions attend to its keys and values, whose gradient
    /// sums over the rows as the batched forward's does. Equal to the batched forward up to
    /// float rounding (tested), with (b − 1)·p fewer token positions of work.
    fn token_logprobs_shared(
        &self,
        batch: &TrainBatch,
        p: usize,
        temperature: f64,
        entropy: bool,
        dropout: Option<&dyn DropoutMasks>,
    ) -> crate::Result<(Tensor, Option<Tensor>)> {
        let (b, t) = batch.input_ids.dims2()?;
        let c = t - p;
        let mut kv = Vec::with_capacity(self.layers.len());
        let prompt = batch
            .input_ids
            .narrow(0, 0, 1)?
            .narrow(1, 0, p)?
            .contiguous()?;
        let xp = self.hidden(&prompt, Pass::Record(&mut kv), dropout)?;
        let completion = batch.input_ids.narrow(1, p, c)?.contiguous()?;
        let xc = self.hidden(&completion, Pass::Prefix(&kv), dropout)?;
        // Completion token k is predicted at position p − 1 + k: by the prompt's last state,
        // then by the completion's own.
        let d = self.config.hidden_size;
        let last = xp.narrow(1, p - 1, 1)?.broadcast_as((b, 1, d))?;
        let x = if c > 1 {
            Tensor::cat(&[&last, &xc.narrow(1, 0, c - 1)?], 1)?
        } else {
            last.contiguous()?
        };
        let keep = live_rows(&batch.completion_mask.narrow(1, p, c)?)?;
        let (lp, ent) = self.head_logprobs(&x, &completion, keep, temperature, entropy)?;
        // Back to the batch's layout `[b, t − 1]`: positions before p − 1 predict prompt tokens.
        let pad = |x: Tensor| -> crate::Result<Tensor> {
            if p == 1 {
                return Ok(x);
            }
            let z = Tensor::zeros((b, p - 1), x.dtype(), x.device())?;
            Ok(Tensor::cat(&[&z, &x], 1)?)
        };
        Ok((pad(lp)?, ent.map(pad).transpose()?))
    }

    /// Log-probs of `targets: [b, n]` under the temperature-scaled next-token distributions
    /// at `x: [b, n, d]` (the last layer's states, before the final norm), and their entropies
    /// when `entropy`. Only the flattened rows in `keep` are computed (`None` = all); the
    /// others come out 0.
    fn head_logprobs(
        &self,
        x: &Tensor,
        targets: &Tensor,
        keep: Option<Tensor>,
        temperature: f64,
        entropy: bool,
    ) -> crate::Result<(Tensor, Option<Tensor>)> {
        let (b, n, d) = x.dims3()?;
        let x = ops::rms_norm(x, &self.norm, self.config.rms_norm_eps)?;
        let mut hidden = x.reshape((b * n, d))?;
        if temperature != 1.0 {
            // logits / T = (hidden / T) · Wᵀ: scaling the smaller operand.
            hidden = (hidden * (1.0 / temperature))?;
        }
        let mut targets = targets.flatten_all()?;
        if let Some(idx) = &keep {
            hidden = hidden.index_select(idx, 0)?;
            targets = targets.index_select(idx, 0)?;
        }
        let (lp, ent) = if self.full_finetune {
            // The head is trainable here, so compose from primitives (the fused op treats the
            // head as frozen).
            let logits = hidden
                .to_dtype(DType::F32)?
                .matmul(&self.lm_head().to_dtype(DType::F32)?.t()?)?;
            let lsm = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
            let ent = if entropy {
                Some(ops::entropy_from_logits(&logits)?)
            } else {
                None
            };
            (lsm.gather(&targets.unsqueeze(1)?, 1)?.squeeze(1)?, ent)
        } else if entropy {
            let (lp, h) = ops::token_logprobs_with_entropy(&hidden, self.lm_head(), &targets)?;
            (lp, Some(h))
        } else {
            (
                ops::token_logprobs(&hidden, self.lm_head(), &targets)?,
                None,
            )
        };
        let scatter = |x: Tensor| -> crate::Result<Tensor> {
            let x = match &keep {
                Some(idx) => Tensor::zeros(b * n, x.dtype(), x.device())?.index_add(idx, &x, 0)?,
                None => x,
            };
            Ok(x.reshape((b, n))?)
        };
        let ent = match ent {
            Some(h) => Some(scatter(h.to_dtype(DType::F32)?)?),
            None => None,
        };
        Ok((scatter(lp)?, ent))
    }

    /// The trainable parameters (LoRA A/B, or all weights under full fine-tuning).
    pub fn trainable_vars(&self) -> Vec<Var> {
        let mut vars = Vec::new();
        if let Some(v) = &self.embed_var {
            vars.push(v.clone());
        }
        for layer in &self.layers {
            for (_, lin) in layer.linears() {
                if let Some(v) = &lin.weight_var {
                    vars.push(v.clone());
                }
                if let Some(l) = &lin.lora {
                    vars.push(l.a.clone());
                    vars.push(l.b.clone());
                }
            }
        }
        vars
    }

    /// Turn the LoRA adapters off (`false`: the forward is the base model's, e.g. for the KL
    /// reference log-probs) or back on. Training state is untouched.
    pub fn set_adapters_enabled(&self, on: bool) {
        self.adapters_enabled.store(on, Ordering::Relaxed);
    }

    /// Point every adapter at the model's one on/off switch.
    fn share_adapter_switch(&mut self) {
        let switch = self.adapters_enabled.clone();
        for layer in &mut self.layers {
            for (_, lin) in layer.linears_mut() {
                if let Some(l) = lin.lora.as_mut() {
                    l.enabled = switch.clone();
                }
            }
        }
    }

    /// The LoRA settings of the attached adapters, if any.
    pub fn lora_config(&self) -> Option<&LoraConfig> {
        self.lora.as_ref()
    }

    /// Attach fresh LoRA adapters (A Kaiming-uniform from `seed`, B zeros) to the target
    /// modules of every layer, replacing any attached before.
    pub fn attach_lora(&mut self, cfg: &LoraConfig, seed: u64) -> crate::Result<()> {
        let targets = cfg.targets()?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let device = self.device.clone();
        for layer in &mut self.layers {
            for (name, lin) in layer.linears_mut() {
                lin.lora = None;
                if targets.iter().any(|t| name.ends_with(t.as_str())) {
                    let (out, inp) = lin.dims()?;
                    lin.lora = Some(LoraAdapter::fresh(
                        inp,
                        out,
                        cfg.r,
                        cfg.alpha,
                        cfg.dropout,
                        &mut rng,
                        &device,
                    )?);
                }
            }
        }
        self.lora = Some(cfg.clone());
        self.share_adapter_switch();
        Ok(())
    }

    /// Attach adapters from tensors keyed by module path (`model.layers.{i}.self_attn.q_proj`)
    /// → `(A [r, in], B [out, r])`. Every target module of every layer must be present.
    pub fn set_lora(
        &mut self,
        cfg: &LoraConfig,
        mut tensors: HashMap<String, (Tensor, Tensor)>,
    ) -> crate::Result<()> {
        let targets = cfg.targets()?;
        let device = self.device.clone();
        for (i, layer) in self.layers.iter_mut().enumerate() {
            for (name, lin) in layer.linears_mut() {
                lin.lora = None;
                if !targets.iter().any(|t| name.ends_with(t.as_str())) {
                    continue;
                }
                let path = format!("model.layers.{i}.{name}");
                let (a, b) = tensors.remove(&path).ok_or_else(|| {
                    crate::Error::Model(format!("adapter lacks LoRA weights for `{path}`"))
                })?;
                let (out, inp) = lin.dims()?;
                if a.dims() != [cfg.r, inp] || b.dims() != [out, cfg.r] {
                    return Err(crate::Error::Model(format!(
                        "LoRA weights for `{path}` have shapes {:?}/{:?}, expected [{}, {inp}]/[{out}, {}]",
                        a.dims(),
                        b.dims(),
                        cfg.r,
                        cfg.r
                    )));
                }
                lin.lora = Some(LoraAdapter::from_tensors(
                    &a.to_device(&device)?,
                    &b.to_device(&device)?,
                    cfg.alpha,
                    cfg.dropout,
                )?);
            }
        }
        if let Some(k) = tensors.keys().next() {
            return Err(crate::Error::Model(format!(
                "adapter has LoRA weights for `{k}`, which is not a target module of this model"
            )));
        }
        self.lora = Some(cfg.clone());
        self.share_adapter_switch();
        Ok(())
    }

    /// The attached adapters, keyed by module path (`model.layers.{i}.self_attn.q_proj`).
    pub fn lora_adapters(&self) -> Vec<(String, &LoraAdapter)> {
        let mut out = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            for (name, lin) in layer.linears() {
                if let Some(l) = &lin.lora {
                    out.push((format!("model.layers.{i}.{name}"), l));
                }
            }
        }
        out
    }

    /// Make every weight trainable (full fine-tuning; sensible for small models only). The
    /// norms stay frozen; the embeddings (and the tied head) become a `Var`.
    pub fn enable_full_finetune(&mut self) -> crate::Result<()> {
        if self.full_finetune {
            return Ok(());
        }
        let v = Var::from_tensor(&self.embed_tokens)?;
        self.embed_tokens = v.as_tensor().clone();
        self.embed_var = Some(v);
        for layer in &mut self.layers {
            for (_, lin) in layer.linears_mut() {
                lin.make_trainable()?;
            }
        }
        self.full_finetune = true;
        Ok(())
    }

    /// All weights under HF names, in `dtype`, with LoRA adapters merged in when `merge`
    /// (else the base weights as they are).
    pub fn hf_weights(&self, merge: bool, dtype: DType) -> crate::Result<Vec<(String, Tensor)>> {
        let mut out = vec![(
            "model.embed_tokens.weight".to_string(),
            self.embed_tokens.to_dtype(dtype)?,
        )];
        for (i, layer) in self.layers.iter().enumerate() {
            let p = format!("model.layers.{i}");
            out.push((
                format!("{p}.input_layernorm.weight"),
                layer.input_layernorm.to_dtype(dtype)?,
            ));
            out.push((
                format!("{p}.post_attention_layernorm.weight"),
                layer.post_attention_layernorm.to_dtype(dtype)?,
            ));
            for (name, lin) in layer.linears() {
                let w = if merge {
                    lin.merged_weight(dtype)?
                } else {
                    lin.weight.to_dtype(dtype)?
                };
                out.push((format!("{p}.{name}.weight"), w));
                if let Some(b) = &lin.bias {
                    out.push((format!("{p}.{name}.bias"), b.to_dtype(dtype)?));
                }
            }
            if let Some(w) = &layer.self_attn.q_norm {
                out.push((format!("{p}.self_attn.q_norm.weight"), w.to_dtype(dtype)?));
            }
            if let Some(w) = &layer.self_attn.k_norm {
                out.push((format!("{p}.self_attn.k_norm.weight"), w.to_dtype(dtype)?));
            }
        }
        out.push(("model.norm.weight".to_string(), self.norm.to_dtype(dtype)?));
        if let Some(h) = &self.lm_head {
            out.push(("lm_head.weight".to_string(), h.to_dtype(dtype)?));
        }
        Ok(out)
    }
}

impl DropoutMasks for Model {
    fn mask(&self, shape: &[usize], p: f64, device: &Device) -> candle_core::Result<Tensor> {
        let n: usize = shape.iter().product();
        let keep = (1.0 / (1.0 - p)) as f32;
        let mut rng = self
            .dropout_rng
            .lock()
            .map_err(|_| candle_core::Error::Msg("dropout RNG lock poisoned".into()))?;
        let m: Vec<f32> = (0..n)
            .map(|_| if rng.random::<f64>() < p { 0.0 } else { keep })
            .collect();
        Tensor::from_vec(m, shape, device)
    }
}

/// Indices (u32) of the non-zero entries of `mask` flattened; `None` when every entry is
/// non-zero (nothing to skip).
fn live_rows(mask: &Tensor) -> crate::Result<Option<Tensor>> {
    let m = mask.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
    let live: Vec<u32> = (0..m.len() as u32)
        .filter(|&i| m[i as usize] != 0.0)
        .collect();
    if live.len() == m.len() {
        return Ok(None);
    }
    let n = live.len();
    Ok(Some(Tensor::from_vec(live, n, mask.device())?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::ops::check::assert_close;

    /// A 2-layer Llama with GQA (4 query heads, 2 KV heads), random weights, LoRA on q/v.
    fn tiny() -> Model {
        let cfg = Config::from_hf_json(
            r#"{"architectures": ["LlamaForCausalLM"], "model_type": "llama",
                "hidden_size": 16, "intermediate_size": 24, "num_hidden_layers": 2,
                "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 23,
                "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": true,
                "max_position_embeddings": 64}"#,
        )
        .expect("config");
        let dev = Device::Cpu;
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut rand = |shape: &[usize]| {
            let n: usize = shape.iter().product();
            let v: Vec<f32> = (0..n).map(|_| rng.random_range(-0.5..0.5)).collect();
            Tensor::from_vec(v, shape, &dev).expect("tensor")
        };
        let mut w = HashMap::new();
        w.insert("model.embed_tokens.weight".to_string(), rand(&[23, 16]));
        w.insert(
            "model.norm.weight".to_string(),
            (rand(&[16]) + 1.0).unwrap(),
        );
        for i in 0..2 {
            let p = format!("model.layers.{i}");
            for (n, s) in [
                ("self_attn.q_proj", [16, 16]),
                ("self_attn.k_proj", [8, 16]),
                ("self_attn.v_proj", [8, 16]),
                ("self_attn.o_proj", [16, 16]),
                ("mlp.gate_proj", [24, 16]),
                ("mlp.up_proj", [24, 16]),
                ("mlp.down_proj", [16, 24]),
            ] {
                w.insert(format!("{p}.{n}.weight"), rand(&s));
            }
            for n in ["input_layernorm", "post_attention_layernorm"] {
                w.insert(format!("{p}.{n}.weight"), (rand(&[16]) + 1.0).unwrap());
            }
        }
        let mut m = Model::from_weights(cfg, &mut w, DType::F32, &dev).expect("model");
        let lora = LoraConfig {
            r: 2,
            alpha: 4.0,
            dropout: 0.0,
            target_modules: vec!["q_proj".into(), "v_proj".into()],
        };
        m.attach_lora(&lora, 1).expect("lora");
        // B starts at zero; make the adapters non-trivial so their gradients are too.
        for (_, a) in m.lora_adapters() {
            let b = a.b.as_tensor();
            let r = Tensor::ones(b.shape(), DType::F32, &dev).unwrap() * 0.1;
            a.b.set(&r.unwrap()).unwrap();
        }
        m
    }

    /// The gradients of `sum(a)` and `sum(b)` agree for every trainable variable to 1e-5 of
    /// the largest, and none is zero (a zero gradient tests nothing).
    fn assert_same_gradients(m: &Model, a: &Tensor, b: &Tensor, what: &str) {
        let ga = a.sum_all().unwrap().backward().unwrap();
        let gb = b.sum_all().unwrap().backward().unwrap();
        for v in &m.trainable_vars() {
            let (x, y) = (
                ga.get(v.as_tensor()).unwrap(),
                gb.get(v.as_tensor()).unwrap(),
            );
            let scale = x.abs().unwrap().flatten_all().unwrap().max(0).unwrap();
            let scale = scale.to_scalar::<f32>().unwrap();
            assert!(scale > 0.0, "{what}: a zero gradient tests nothing");
            assert_close(y, x, 0.0, 1e-5 * f64::from(scale), what);
        }
    }

    /// Masked-out positions are skipped (0) and the rest, and every gradient, equal the
    /// unmasked computation.
    #[test]
    fn masked_token_logprobs_equal_unmasked_times_mask_with_the_same_gradients() {
        let m = tiny();
        let (b, t) = (2, 7);
        let ids: Vec<u32> = (0..(b * t) as u32).map(|i| (i * 5 + 2) % 23).collect();
        let mask: Vec<f32> = (0..b * t)
            .map(|i| if i % t >= 3 && i != 12 { 1.0 } else { 0.0 })
            .collect();
        let batch = TrainBatch {
            input_ids: Tensor::from_vec(ids, (b, t), &Device::Cpu).unwrap(),
            completion_mask: Tensor::from_vec(mask, (b, t), &Device::Cpu).unwrap(),
        };
        let w = batch.completion_mask.narrow(1, 1, t - 1).unwrap();
        let full = m.token_logprobs_at(&batch, 0.7).unwrap();
        let part = m.token_logprobs_masked_at(&batch, 0.7).unwrap();
        let want = (&full * &w).unwrap();
        let diff = (&part - &want)
            .unwrap()
            .abs()
            .unwrap()
            .max_keepdim(1)
            .unwrap();
        let diff = diff.max(0).unwrap().squeeze(0).unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-6);
        assert_eq!(m.trainable_vars().len(), 8);
        assert_same_gradients(&m, &(full * &w).unwrap(), &(part * &w).unwrap(), "masked");
    }

    /// Groups of rows, each a prompt of `p` tokens (its own tokens per group) shared by
    /// ragged right-padded completions of lengths `lens`, as one batch.
    fn groups(spec: &[(usize, &[usize])]) -> TrainBatch {
        let t = spec
            .iter()
            .map(|(p, lens)| p + lens.iter().max().copied().unwrap_or(0))
            .max()
            .unwrap_or(0);
        let (mut ids, mut mask) = (Vec::new(), Vec::new());
        for (gi, (p, lens)) in spec.iter().enumerate() {
            for (i, &c) in lens.iter().enumerate() {
                let mut r = vec![0u32; t];
                let mut m = vec![0f32; t];
                for (j, x) in r.iter_mut().take(*p).enumerate() {
                    *x = ((j * 7 + gi * 5) as u32 + 3) % 23;
                }
                for k in 0..c {
                    r[p + k] = ((i * 11 + k * 5 + gi) as u32 + 1) % 23;
                    m[p + k] = 1.0;
                }
                ids.extend(r);
                mask.extend(m);
            }
        }
        let b = ids.len() / t;
        TrainBatch {
            input_ids: Tensor::from_vec(ids, (b, t), &Device::Cpu).unwrap(),
            completion_mask: Tensor::from_vec(mask, (b, t), &Device::Cpu).unwrap(),
        }
    }

    /// A group's rows share one prompt pass: the masked log-probs, entropies and every
    /// gradient equal the batched forward's (which runs the prompt once per row).
    #[test]
    fn a_shared_prompt_runs_once_with_the_batched_forwards_values_and_gradients() {
        let m = tiny();
        m.set_training(true);
        let cases: [&[(usize, &[usize])]; 4] = [
            &[(4, &[5, 3, 1])],
            &[(1, &[2, 4])],
            &[(3, &[1, 1, 1])],
            // Two groups and a lone row, prompts of different lengths.
            &[(2, &[3, 1]), (5, &[2]), (3, &[1, 4, 2])],
        ];
        for spec in cases {
            let batch = groups(spec);
            let found = m.prompt_groups(&batch).unwrap().expect("groups");
            let want: Vec<(usize, usize)> = spec.iter().map(|(p, l)| (*p, l.len())).collect();
            let got: Vec<(usize, usize)> = found.iter().map(|g| (g.prompt_len, g.rows)).collect();
            assert_eq!(got, want);
            let (p, lens) = (spec.len(), spec);
            let t = batch.input_ids.dim(1).unwrap();
            let w = batch.completion_mask.narrow(1, 1, t - 1).unwrap();
            let (full, hf) = m.token_logprobs_entropy_at(&batch, 0.7, false).unwrap();
            let (part, hp) = m.token_logprobs_entropy_at(&batch, 0.7, true).unwrap();
            let what = format!("{p} groups {lens:?}");
            assert_close(&part, &(&full * &w).unwrap(), 0.0, 1e-5, &what);
            assert_close(&hp, &(&hf * &w).unwrap(), 0.0, 1e-5, &what);
            // Weights per position so that every row and position counts differently.
            let n = w.elem_count();
            let r = Tensor::arange(1f32, n as f32 + 1.0, &Device::Cpu)
                .unwrap()
                .reshape(w.shape())
                .unwrap();
            let rw = (&w * &r).unwrap();
            assert_same_gradients(&m, &(full * &rw).unwrap(), &(part * &rw).unwrap(), &what);
        }
        m.set_training(false);
    }

    /// Rows whose prompts differ (in a token or in length) are not a group.
    #[test]
    fn rows_with_different_prompts_are_not_shared() {
        let m = tiny();
        let mut batch = groups(&[(3, &[2, 2])]);
        let mut ids = batch.input_ids.to_vec2::<u32>().unwrap();
        ids[1][1] = (ids[1][1] + 1) % 23;
        batch.input_ids = Tensor::new(ids, &Device::Cpu).unwrap();
        assert_eq!(m.prompt_groups(&batch).unwrap(), None);
        let mut batch = groups(&[(3, &[2, 2])]);
        let mut mask = batch.completion_mask.to_vec2::<f32>().unwrap();
        mask[1][2] = 1.0;
        batch.completion_mask = Tensor::new(mask, &Device::Cpu).unwrap();
        assert_eq!(m.prompt_groups(&batch).unwrap(), None);
    }
}
