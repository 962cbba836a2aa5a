//! Hot-path ops whose backward is right.
//!
//! candle-nn's fast `softmax_last_dim`, `rms_norm` and `rope*` are applied without a backward:
//! gradients silently stop there. Every op here is a candle `CustomOp` with a fused CPU forward
//! and a `bwd`, recorded with `apply_op*` so `Tensor::backward` calls it. Tests check each one
//! against the [`reference`] composition of candle primitives and against finite differences.
//!
//! Dispatch, per call:
//! - CPU, f32 or f64: the fused kernel (inputs made contiguous first; a non-contiguous input
//!   costs one copy, so pass contiguous tensors on the hot path).
//! - CPU, other float dtypes (bf16, f16): converted to f32, fused, converted back (the
//!   conversions are recorded, so gradients still flow).
//! - Other devices (CUDA): the [`reference`] composition.
//!
//! Gradients: candle's backprop calls `bwd` for every recorded op on a path to a variable, and
//! hands it all inputs. Each `bwd` here returns `None` for inputs that do not track gradients
//! (`Tensor::track_op`), so frozen tensors cost neither compute nor gradient-store memory;
//! `frozen_linear`'s weight, `token_logprobs`' head and RoPE's cos/sin never get one.

mod attention;
mod cpu;
mod linear;
mod logprobs;
mod rms_norm;
mod rope;
mod small_m;
mod softmax;
mod swiglu;

#[cfg(test)]
pub(crate) mod check;
#[cfg(test)]
mod graph_tests;

use candle_core::{DType, Result, Tensor, D};

pub use logprobs::{entropy_from_logits, token_logprobs_with_entropy};

/// Rows per chunk of [`token_logprobs`]: `128 × vocab` f32 logits (25 MB at vocab 49,152).
pub const LOGPROB_CHUNK_ROWS: usize = 128;

/// Up to this many bytes of LM-head probabilities (`rows × vocab`) are kept from the forward
/// of [`token_logprobs`] for its backward instead of recomputed (e.g. 1 160 completion rows of
/// SmolLM2's 49 152-token vocabulary take 228 MB in f32).
pub const LOGPROB_KEEP_BYTES: usize = 512 << 20;

/// The dtype the fused kernels run a tensor of dtype `dt` in.
fn kernel_dtype(dt: DType) -> DType {
    match dt {
        DType::F64 => DType::F64,
        _ => DType::F32,
    }
}

/// `t` converted to `dt` and made contiguous (both no-ops when already so).
fn prep(t: &Tensor, dt: DType) -> Result<Tensor> {
    t.to_dtype(dt)?.contiguous()
}

/// RMSNorm over the last dimension: `x / sqrt(mean(x²) + eps) * weight`, computed in f32
/// (f64 for f64 input). `x: [..., d]`, `weight: [d]`; gradients for both.
pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    if !x.device().is_cpu() {
        return reference::rms_norm(x, weight, eps);
    }
    let kt = kernel_dtype(x.dtype());
    let y = prep(x, kt)?.apply_op2(&prep(weight, kt)?, rms_norm::RmsNorm { eps })?;
    y.to_dtype(x.dtype())
}

/// Softmax over the last dim of attention scores `[b, h, q, k]` with the causal mask built in:
/// query `i` (absolute position `offset + i`) sees keys `0..=offset + i`. For KV-cache decode,
/// `offset = k - q`.
pub fn causal_softmax(scores: &Tensor, offset: usize) -> Result<Tensor> {
    causal_softmax_impl(scores, offset, None)
}

/// [`causal_softmax`] for left-padded batches: batch row `b` also masks keys
/// `0..key_start[b]`. Query rows that see no key at all (padding queries) come out all zeros.
pub fn causal_softmax_padded(
    scores: &Tensor,
    offset: usize,
    key_start: &[usize],
) -> Result<Tensor> {
    causal_softmax_impl(scores, offset, Some(key_start))
}

fn causal_softmax_impl(
    scores: &Tensor,
    offset: usize,
    key_start: Option<&[usize]>,
) -> Result<Tensor> {
    if !scores.device().is_cpu() {
        return match key_start {
            Some(ks) => reference::causal_softmax_padded(scores, offset, ks),
            None => reference::causal_softmax(scores, offset),
        };
    }
    let op = softmax::CausalSoftmax {
        offset,
        key_start: key_start.map(<[usize]>::to_vec),
    };
    let y = prep(scores, kernel_dtype(scores.dtype()))?.apply_op1(op)?;
    y.to_dtype(scores.dtype())
}

/// Rotary embedding, HF (non-interleaved, `rotate_half`) layout. `x`: `[b, h, t, d]`,
/// `cos`/`sin`: `[t, d/2]` for the positions of the `t` steps (narrow a precomputed table at
/// the cache offset), or `[b, t, d/2]` for per-row positions. Gradient for `x` only.
pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    if !x.device().is_cpu() {
        return reference::rope(x, cos, sin);
    }
    let kt = kernel_dtype(x.dtype());
    let y = prep(x, kt)?.apply_op3(&prep(cos, kt)?, &prep(sin, kt)?, rope::Rope)?;
    y.to_dtype(x.dtype())
}

/// SwiGLU: `silu(gate) * up` (same shapes); gradients for both.
pub fn swiglu(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    if !gate.device().is_cpu() {
        return reference::swiglu(gate, up);
    }
    let kt = kernel_dtype(gate.dtype());
    let y = prep(gate, kt)?.apply_op2(&prep(up, kt)?, swiglu::SwiGlu)?;
    y.to_dtype(gate.dtype())
}

/// Attention of `q: [b, h, t, hd]` over cached `k, v: [b, kvh, kv, hd]` (prefix views of the
/// cache are read in place; `h` a multiple of `kvh`), causal with the queries at the last `t`
/// positions, scores scaled by `scale`. Returns `[b, t, h · hd]` f32. CPU inference only: it
/// has no backward (sampling never differentiates through attention).
pub fn cached_attention(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64) -> Result<Tensor> {
    if !q.device().is_cpu() {
        candle_core::bail!("cached_attention runs on the CPU only");
    }
    let f = |t: &Tensor| t.to_dtype(DType::F32);
    f(q)?.contiguous()?.apply_op3_no_bwd(
        &f(k)?,
        &f(v)?,
        &attention::CachedAttention {
            scale: scale as f32,
        },
    )
}

/// `x @ wᵀ` for a frozen weight `w: [out, in]`, `x: [..., in]`: the backward computes the
/// gradient of `x` only (never the full weight gradient, which is wasted work for frozen
/// weights). `w` may be any 2-D strided view; keep it in the dtype of `x` to avoid a copy
/// per call (f32 and f64 run as they are).
pub fn frozen_linear(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    if !x.device().is_cpu() {
        return reference::frozen_linear(x, w);
    }
    let kt = kernel_dtype(x.dtype());
    // bf16 weights stay bf16: the kernel widens them as it reads (half the bytes per decode step).
    let w = if w.dtype() == DType::BF16 && kt == DType::F32 {
        w.clone()
    } else {
        w.to_dtype(kt)?
    };
    let y = prep(x, kt)?.apply_op2(&w, linear::FrozenLinear)?;
    y.to_dtype(x.dtype())
}

/// Log-probability of each target token under `softmax(hidden @ headᵀ)`, without materialising
/// the full `[n, vocab]` log-softmax at once. `hidden: [n, d]` (or any `[..., d]`),
/// `head: [vocab, d]` (frozen), `targets: [n]` (same leading shape; u32, or an integer dtype
/// converted to u32). Returns `[n]` f32 (f64 for f64 hidden) with a backward to `hidden`.
/// Errors when a target is outside the vocabulary.
pub fn token_logprobs(hidden: &Tensor, head: &Tensor, targets: &Tensor) -> Result<Tensor> {
    token_logprobs_with(
        hidden,
        head,
        targets,
        LOGPROB_CHUNK_ROWS,
        LOGPROB_KEEP_BYTES,
    )
}

/// [`token_logprobs`] in chunks of `chunk_rows` rows, recomputing the logits in the backward.
pub fn token_logprobs_chunked(
    hidden: &Tensor,
    head: &Tensor,
    targets: &Tensor,
    chunk_rows: usize,
) -> Result<Tensor> {
    token_logprobs_with(hidden, head, targets, chunk_rows, 0)
}

/// [`token_logprobs`] with explicit chunking and the budget (bytes) for keeping the
/// forward's probabilities for the backward (0: recompute them).
pub fn token_logprobs_with(
    hidden: &Tensor,
    head: &Tensor,
    targets: &Tensor,
    chunk_rows: usize,
    keep_bytes: usize,
) -> Result<Tensor> {
    if !hidden.device().is_cpu() {
        return reference::token_logprobs(hidden, head, targets);
    }
    let kt = kernel_dtype(hidden.dtype());
    let op = logprobs::TokenLogprobs::new(chunk_rows, keep_bytes);
    prep(hidden, kt)?.apply_op3(&head.to_dtype(kt)?, &prep(targets, DType::U32)?, op)
}

/// The same ops composed from candle primitives (each has a backward through autograd).
pub mod reference {
    use super::*;

    /// See [`super::rms_norm`].
    pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
        let dtype = x.dtype();
        let x32 = x.to_dtype(kernel_dtype(dtype))?;
        let ms = x32.sqr()?.mean_keepdim(D::Minus1)?;
        let y = x32.broadcast_div(&(ms + eps)?.sqrt()?)?;
        y.to_dtype(dtype)?.broadcast_mul(weight)
    }

    /// See [`super::causal_softmax`].
    pub fn causal_softmax(scores: &Tensor, offset: usize) -> Result<Tensor> {
        let (_, _, q, k) = scores.dims4()?;
        let mask: Vec<u8> = (0..q)
            .flat_map(|i| (0..k).map(move |j| u8::from(j > offset + i)))
            .collect();
        let mask = Tensor::from_vec(mask, (q, k), scores.device())?;
        let neg_inf = Tensor::new(f32::NEG_INFINITY, scores.device())?
            .to_dtype(scores.dtype())?
            .broadcast_as(scores.shape())?;
        let masked = mask
            .broadcast_as(scores.shape())?
            .where_cond(&neg_inf, scores)?;
        candle_nn::ops::softmax(&masked, D::Minus1)
    }

    /// Like [`super::causal_softmax_padded`]: keys before `key_start[b]` are masked too, and
    /// rows that see no key come out zero.
    pub fn causal_softmax_padded(
        scores: &Tensor,
        offset: usize,
        key_start: &[usize],
    ) -> Result<Tensor> {
        let (b, _, q, k) = scores.dims4()?;
        if key_start.len() != b {
            candle_core::bail!("{} key starts for a batch of {b}", key_start.len());
        }
        let keep: Vec<u8> = key_start
            .iter()
            .flat_map(|&s| {
                (0..q).flat_map(move |i| (0..k).map(move |j| u8::from(j >= s && j <= offset + i)))
            })
            .collect();
        let keep =
            Tensor::from_vec(keep, (b, 1, q, k), scores.device())?.broadcast_as(scores.shape())?;
        // A finite fill keeps fully masked rows finite (uniform), then they are zeroed.
        let fill = Tensor::new(-1e30f32, scores.device())?
            .to_dtype(scores.dtype())?
            .broadcast_as(scores.shape())?;
        let y = candle_nn::ops::softmax(&keep.where_cond(scores, &fill)?, D::Minus1)?;
        keep.where_cond(&y, &y.zeros_like()?)
    }

    /// `cos`/`sin` `[t, d/2]` or `[b, t, d/2]`.
    pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
        let (cos, sin) = if cos.rank() == 3 {
            (cos.unsqueeze(1)?, sin.unsqueeze(1)?)
        } else {
            (cos.clone(), sin.clone())
        };
        let d = x.dim(D::Minus1)?;
        let half = d / 2;
        let x1 = x.narrow(D::Minus1, 0, half)?;
        let x2 = x.narrow(D::Minus1, half, half)?;
        let cos = cos.to_dtype(x.dtype())?;
        let sin = sin.to_dtype(x.dtype())?;
        let a = (x1.broadcast_mul(&cos)? - x2.broadcast_mul(&sin)?)?;
        let b = (x2.broadcast_mul(&cos)? + x1.broadcast_mul(&sin)?)?;
        Tensor::cat(&[a, b], D::Minus1)
    }

    /// See [`super::swiglu`].
    pub fn swiglu(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
        let sig = (gate.neg()?.exp()? + 1.0)?.recip()?;
        (gate * sig)? * up
    }

    /// See [`super::frozen_linear`].
    pub fn frozen_linear(x: &Tensor, w: &Tensor) -> Result<Tensor> {
        x.broadcast_matmul(&w.detach().t()?)
    }

    /// See [`super::token_logprobs`].
    pub fn token_logprobs(hidden: &Tensor, head: &Tensor, targets: &Tensor) -> Result<Tensor> {
        let kt = kernel_dtype(hidden.dtype());
        let logits = hidden
            .to_dtype(kt)?
            .matmul(&head.detach().to_dtype(kt)?.t()?)?;
        let max = logits.max_keepdim(D::Minus1)?.detach();
        let shifted = logits.broadcast_sub(&max)?;
        let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
        let picked = shifted.gather(&targets.unsqueeze(1)?, 1)?;
        (picked - lse)?.squeeze(1)
    }
}
