//! The decoder layer: attention (GQA, RoPE, optional q/k norm and qkv bias) and the SwiGLU MLP.
//! Every op with a backward goes through `crate::engine::ops`.

use candle_core::{DType, Result, Tensor};

use super::cache::KvCache;
use super::config::Config;
use super::linear::{DropoutMasks, Linear};
use crate::engine::ops;

/// The attention block of one layer.
#[derive(Debug, Clone)]
pub struct Attention {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub o_proj: Linear,
    /// Qwen3's per-head RMSNorm weights (`[head_dim]`).
    pub q_norm: Option<Tensor>,
    pub k_norm: Option<Tensor>,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub eps: f64,
}

/// The SwiGLU MLP of one layer.
#[derive(Debug, Clone)]
pub struct Mlp {
    pub gate_proj: Linear,
    pub up_proj: Linear,
    pub down_proj: Linear,
}

/// One pre-norm decoder layer.
#[derive(Debug, Clone)]
pub struct DecoderLayer {
    pub input_layernorm: Tensor,
    pub self_attn: Attention,
    pub post_attention_layernorm: Tensor,
    pub mlp: Mlp,
    pub eps: f64,
}

/// What one layer's attention sees besides the keys and values of its input.
pub enum Context<'a> {
    /// Nothing else: causal attention over the input (training, evaluation).
    None,
    /// A KV cache (sampling): the new keys and values are appended to layer `.1`'s, and
    /// attention runs over all of them.
    Cache(&'a mut KvCache, usize),
    /// As `None`, and the layer's keys and values `[b, kvh, t, hd]` (after RoPE, with their
    /// graph) are pushed onto the vector: the shared prompt of a group, attended by
    /// `Prefix` in the next pass.
    Record(&'a mut Vec<(Tensor, Tensor)>),
    /// Keys and values `[1, kvh, p, hd]` of a prefix every row shares, at positions
    /// `0..p` before the input: a group's completions after their one prompt. Gradients
    /// flow into the prefix (summed over the rows).
    Prefix(&'a Tensor, &'a Tensor),
}

/// Rotary tables for the positions of one forward call: `cos`, `sin` `[t, head_dim/2]` f32.
pub struct Rope {
    pub cos: Tensor,
    pub sin: Tensor,
}

impl Rope {
    /// Tables for positions `offset..offset + t`, HF's non-interleaved layout:
    /// angle(p, i) = p · θ^(−2i/d).
    pub fn new(
        cfg: &Config,
        offset: usize,
        t: usize,
        device: &candle_core::Device,
    ) -> Result<Self> {
        let d = cfg.head_dim;
        let inv_freq: Vec<f32> = (0..d)
            .step_by(2)
            .map(|i| 1f32 / cfg.rope_theta.powf(i as f64 / d as f64) as f32)
            .collect();
        let half = inv_freq.len();
        let mut cos = Vec::with_capacity(t * half);
        let mut sin = Vec::with_capacity(t * half);
        for p in offset..offset + t {
            for f in &inv_freq {
                let a = p as f32 * f;
                cos.push(a.cos());
                sin.push(a.sin());
            }
        }
        Ok(Rope {
            cos: Tensor::from_vec(cos, (t, half), device)?,
            sin: Tensor::from_vec(sin, (t, half), device)?,
        })
    }
}

impl Attention {
    /// `x: [b, t, d]` at the positions `rope` was built for, attending to what `ctx` adds.
    pub fn forward(
        &self,
        x: &Tensor,
        rope: &Rope,
        ctx: Context<'_>,
        dropout: Option<&dyn DropoutMasks>,
    ) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        let (h, kvh, hd) = (self.n_heads, self.n_kv_heads, self.head_dim);
        let q = self.q_proj.forward(x, dropout)?.reshape((b, t, h, hd))?;
        let k = self.k_proj.forward(x, dropout)?.reshape((b, t, kvh, hd))?;
        let v = self.v_proj.forward(x, dropout)?.reshape((b, t, kvh, hd))?;
        let q = match &self.q_norm {
            Some(w) => ops::rms_norm(&q, w, self.eps)?,
            None => q,
        };
        let k = match &self.k_norm {
            Some(w) => ops::rms_norm(&k, w, self.eps)?,
            None => k,
        };
        let q = ops::rope(&q.transpose(1, 2)?.contiguous()?, &rope.cos, &rope.sin)?;
        let k = ops::rope(&k.transpose(1, 2)?.contiguous()?, &rope.cos, &rope.sin)?;
        let v = v.transpose(1, 2)?.contiguous()?;
        let scale = 1.0 / (hd as f64).sqrt();
        let (k, v) = match ctx {
            Context::Cache(c, layer) => {
                let (k, v) = c.append(layer, &k, &v)?;
                if x.device().is_cpu() {
                    // Sampling: the fused kernel reads the cache in place (no backward needed).
                    let y = ops::cached_attention(&q, &k, &v, scale)?;
                    return self.o_proj.forward(&y.to_dtype(x.dtype())?, dropout);
                }
                (k, v)
            }
            Context::Record(out) => {
                out.push((k.clone(), v.clone()));
                (k, v)
            }
            Context::Prefix(kp, vp) => {
                let p = kp.dim(2)?;
                let kp = kp.broadcast_as((b, kvh, p, hd))?.contiguous()?;
                let vp = vp.broadcast_as((b, kvh, p, hd))?.contiguous()?;
                (Tensor::cat(&[&kp, &k], 2)?, Tensor::cat(&[&vp, &v], 2)?)
            }
            Context::None => (k, v),
        };
        let kv_len = k.dim(2)?;
        let in_dtype = q.dtype();
        let (q, k, v) = (
            q.to_dtype(DType::F32)?,
            k.to_dtype(DType::F32)?,
            v.to_dtype(DType::F32)?,
        );
        let rep = h / kvh;
        // GQA without repeating K/V: the `rep` query heads of a KV group are adjacent, so
        // `q: [b, h, t, hd]` is `[b, kvh, rep·t, hd]` as it is, and one matmul per group covers
        // them. The scores `[b, kvh, rep·t, kv]` are `[b, h, t, kv]` as they are (causal mask
        // per query position). The scale goes on q, the smaller operand.
        let q = (q * scale)?.reshape((b, kvh, rep * t, hd))?;
        let scores = q.matmul(&k.t()?)?.reshape((b, h, t, kv_len))?;
        let p = ops::causal_softmax(&scores, kv_len - t)?;
        let y = p
            .reshape((b, kvh, rep * t, kv_len))?
            .matmul(&v.contiguous()?)?
            .reshape((b, h, t, hd))?;
        let y = y
            .to_dtype(in_dtype)?
            .transpose(1, 2)?
            .reshape((b, t, h * hd))?;
        self.o_proj.forward(&y, dropout)
    }
}

impl Mlp {
    pub fn forward(&self, x: &Tensor, dropout: Option<&dyn DropoutMasks>) -> Result<Tensor> {
        let g = self.gate_proj.forward(x, dropout)?;
        let u = self.up_proj.forward(x, dropout)?;
        self.down_proj.forward(&ops::swiglu(&g, &u)?, dropout)
    }
}

impl DecoderLayer {
    pub fn forward(
        &self,
        x: &Tensor,
        rope: &Rope,
        ctx: Context<'_>,
        dropout: Option<&dyn DropoutMasks>,
    ) -> Result<Tensor> {
        let h = ops::rms_norm(x, &self.input_layernorm, self.eps)?;
        let h = self.self_attn.forward(&h, rope, ctx, dropout)?;
        let x = (x + h)?;
        let h = ops::rms_norm(&x, &self.post_attention_layernorm, self.eps)?;
        let h = self.mlp.forward(&h, dropout)?;
        x + h
    }

    /// The linear layers with their module paths under `model.layers.{i}` (HF/PEFT names).
    pub fn linears(&self) -> [(&'static str, &Linear); 7] {
        [
            ("self_attn.q_proj", &self.self_attn.q_proj),
            ("self_attn.k_proj", &self.self_attn.k_proj),
            ("self_attn.v_proj", &self.self_attn.v_proj),
            ("self_attn.o_proj", &self.self_attn.o_proj),
            ("mlp.gate_proj", &self.mlp.gate_proj),
            ("mlp.up_proj", &self.mlp.up_proj),
            ("mlp.down_proj", &self.mlp.down_proj),
        ]
    }

    /// Mutable access to the linear layers, same order and names as [`DecoderLayer::linears`].
    pub fn linears_mut(&mut self) -> [(&'static str, &mut Linear); 7] {
        let a = &mut self.self_attn;
        let m = &mut self.mlp;
        [
            ("self_attn.q_proj", &mut a.q_proj),
            ("self_attn.k_proj", &mut a.k_proj),
            ("self_attn.v_proj", &mut a.v_proj),
            ("self_attn.o_proj", &mut a.o_proj),
            ("mlp.gate_proj", &mut m.gate_proj),
            ("mlp.up_proj", &mut m.up_proj),
            ("mlp.down_proj", &mut m.down_proj),
        ]
    }
}

/// `[b, t, d]` → `[b, d]`: the last position of each sequence.
pub fn last_position(x: &Tensor) -> Result<Tensor> {
    let t = x.dim(1)?;
    x.narrow(1, t - 1, 1)?.squeeze(1)
}
