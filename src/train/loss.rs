//! The GRPO-family policy losses and the SFT loss.
//!
//! Semantics follow TRL's `GRPOTrainer._compute_loss` (loss types `grpo`, `bnpo`, `dr_grpo`,
//! `dapo`; importance sampling at token or sequence level; k3 KL against a reference):
//!
//! - ratio `r = exp(log π_θ − log π_old)` per token, or per sequence (GSPO) as
//!   `s = exp(mean over the sequence's tokens of (log π_θ − log π_old))`, broadcast over its tokens;
//! - per-token loss `−min(r·Â, clip(r, 1−ε_low, 1+ε_high)·Â) + β·KL` with the k3 estimator
//!   `KL = e^Δ − Δ − 1`, `Δ = log π_ref − log π_θ`;
//! - aggregation (TRL, written so the losses of the micro-batches of one optimizer step are
//!   *summed* and the accumulated gradient equals TRL's):
//!   - `grpo`: Σ over sequences of the per-sequence token mean / `num_sequences_in_batch`;
//!   - `bnpo`: token sum / token count of the micro-batch, × `b / num_sequences_in_batch`
//!     (TRL divides by the accumulation steps; with equal micro-batches that is the same);
//!   - `dr_grpo`: token sum / (`num_sequences_in_batch` × `max_completion_length`);
//!   - `dapo`: token sum / `tokens_in_batch` (TRL's `num_items_in_batch`).
//!
//! With one micro-batch per step (`num_sequences_in_batch = b`, `tokens_in_batch` = its token
//! count) these are exactly TRL's per-batch formulas.
//!
//! With μ = 1 (`old_logp: None`) the ratio is `exp(logp − detach(logp))`: 1 in value, with
//! gradient `∇logp`, so no second forward is needed. Clipping never binds then.

use candle_core::{DType, Tensor};

use crate::spec::{ImportanceSamplingLevel, LossType};
use crate::{Error, Result};

/// What shapes the policy loss: aggregation, ratio level, clipping range and KL weight.
#[derive(Clone, Debug)]
pub struct LossConfig {
    /// How per-token terms are aggregated (TRL `loss_type`).
    pub loss_type: LossType,
    /// Token ratios (GRPO) or one length-normalised ratio per sequence (GSPO).
    pub level: ImportanceSamplingLevel,
    /// Lower clip: ratios below `1 − epsilon_low` are clipped.
    pub epsilon_low: f64,
    /// Upper clip: ratios above `1 + epsilon_high` are clipped.
    pub epsilon_high: f64,
    /// KL coefficient (k3 estimator against the reference); 0 = no KL term.
    pub beta: f64,
    /// `dr_grpo`'s constant normaliser (the generation budget in tokens).
    pub max_completion_length: usize,
}

impl LossConfig {
    /// The loss settings of a spec's `train` section.
    pub fn from_spec(train: &crate::spec::Train, max_completion_length: usize) -> LossConfig {
        LossConfig {
            loss_type: train.loss_type,
            level: train.importance_sampling_level,
            epsilon_low: train.epsilon,
            epsilon_high: train.epsilon_high.unwrap_or(train.epsilon),
            beta: train.beta,
            max_completion_length,
        }
    }
}

/// The tensors of one micro-batch the loss is computed on.
pub struct LossInputs<'a> {
    /// `[b, t]` f32, log π_θ of the completion tokens (carries the gradient).
    pub logp: &'a Tensor,
    /// `[b, t]` log π_old from sampling; `None` = `logp.detach()` (μ = 1: ratio ≡ 1 in value).
    pub old_logp: Option<&'a Tensor>,
    /// `[b, t]` log π_ref (adapters disabled); required iff `beta > 0`.
    pub ref_logp: Option<&'a Tensor>,
    /// `[b]` f32 group advantages.
    pub advantages: &'a Tensor,
    /// `[b, t]` f32 completion-token mask.
    pub mask: &'a Tensor,
    /// `dapo`: the token count of the whole accumulated batch (all micro-batches of the step).
    pub tokens_in_batch: f64,
    /// `grpo`, `bnpo`, `dr_grpo`: the number of sequences in the whole accumulated batch.
    pub num_sequences_in_batch: f64,
}

/// The scalar loss and what is logged about it.
pub struct LossOutput {
    /// Scalar loss (to minimise).
    pub loss: Tensor,
    /// Logged statistics of this micro-batch.
    pub stats: LossStats,
}

/// Per-micro-batch statistics with TRL's meanings.
///
/// To combine micro-batches, weight `kl` by `tokens` and the clip ratios by `clip_weight`.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct LossStats {
    /// Mean k3 KL over masked tokens (0 when no reference log-probs were given).
    pub kl: f64,
    /// Fraction clipped low: ratio < 1 − ε_low where Â < 0.
    pub clip_low: f64,
    /// Fraction clipped high: ratio > 1 + ε_high where Â > 0.
    pub clip_high: f64,
    /// Fraction clipped either way.
    pub clip_region: f64,
    /// Mean entropy of the policy's next-token distribution (at the sampling temperature)
    /// over masked tokens (TRL's `entropy`). [`policy_loss`] leaves it `None` (it only sees the
    /// chosen tokens' log-probs); the train stage fills it from
    /// `Model::token_logprobs_entropy_at`, computed in the LM head's forward.
    pub entropy: Option<f64>,
    /// Masked (counted) tokens in the micro-batch.
    pub tokens: f64,
    /// What the clip fractions are fractions of: masked tokens at token level, sequences with
    /// at least one masked token at sequence level (TRL counts sequences there too).
    pub clip_weight: f64,
}

/// A `[b, t]` tensor's values as rows of f64.
fn rows(t: &Tensor) -> Result<Vec<Vec<f64>>> {
    Ok(t.to_dtype(DType::F64)?.to_vec2::<f64>()?)
}

fn check_shape(name: &str, t: &Tensor, want: &[usize]) -> Result<()> {
    if t.dims() != want {
        return Err(Error::Other(format!(
            "policy loss: `{name}` has shape {:?}, expected {want:?}",
            t.dims()
        )));
    }
    Ok(())
}

fn check_inputs(cfg: &LossConfig, inp: &LossInputs<'_>) -> Result<(usize, usize)> {
    let (b, t) = inp.logp.dims2()?;
    check_shape("mask", inp.mask, &[b, t])?;
    check_shape("advantages", inp.advantages, &[b])?;
    if let Some(o) = inp.old_logp {
        check_shape("old_logp", o, &[b, t])?;
    }
    if let Some(r) = inp.ref_logp {
        check_shape("ref_logp", r, &[b, t])?;
    }
    if cfg.beta > 0.0 && inp.ref_logp.is_none() {
        return Err(Error::Other(
            "policy loss: beta > 0 needs the reference log-probs (ref_logp)".into(),
        ));
    }
    if !(cfg.epsilon_low >= 0.0 && cfg.epsilon_high >= 0.0 && cfg.beta >= 0.0) {
        return Err(Error::Other(format!(
            "policy loss: epsilon_low {}, epsilon_high {} and beta {} must be ≥ 0",
            cfg.epsilon_low, cfg.epsilon_high, cfg.beta
        )));
    }
    match cfg.loss_type {
        LossType::Dapo => {
            if !inp.tokens_in_batch.is_finite() || inp.tokens_in_batch < 0.0 {
                return Err(Error::Other(format!(
                    "policy loss: tokens_in_batch must be a finite count, got {}",
                    inp.tokens_in_batch
                )));
            }
        }
        _ => {
            if !(inp.num_sequences_in_batch >= b as f64 && inp.num_sequences_in_batch.is_finite()) {
                return Err(Error::Other(format!(
                    "policy loss: num_sequences_in_batch ({}) must count at least the \
                     micro-batch's {b} sequences",
                    inp.num_sequences_in_batch
                )));
            }
        }
    }
    if cfg.loss_type == LossType::DrGrpo && cfg.max_completion_length == 0 {
        return Err(Error::Other(
            "policy loss: dr_grpo needs max_completion_length > 0".into(),
        ));
    }
    Ok((b, t))
}

/// The pieces the loss is a linear combination of: the surrogate `r` (or its clipped
/// constant) per token or sequence, which multiplies the advantage, and the k3 KL per token.
struct Parts {
    /// `[b, t]` or `[b, 1]`: `coef·sel + clipped_const` (the min's choice made with the total
    /// advantage).
    surrogate: Tensor,
    /// `[b, t]` k3 KL, when reference log-probs were given.
    kl: Option<Tensor>,
    /// `[b, t]` mask in the log-probs' dtype.
    mask: Tensor,
    /// `[b, 1]` masked tokens per sequence.
    tok_per_seq: Tensor,
    /// Sequences in the micro-batch.
    b: usize,
    /// The statistics (entropy left `None`).
    stats: LossStats,
}

/// The clipped-surrogate policy loss (plus β·KL) for one micro-batch.
pub fn policy_loss(cfg: &LossConfig, inp: &LossInputs<'_>) -> Result<LossOutput> {
    let p = parts(cfg, inp)?;
    let adv = inp
        .advantages
        .to_dtype(inp.logp.dtype())?
        .reshape((p.b, 1))?;
    let mut per_token = p.surrogate.broadcast_mul(&adv)?.neg()?; // [b, t] or [b, 1]
    if let (Some(kl), true) = (&p.kl, cfg.beta > 0.0) {
        per_token = per_token.broadcast_add(&(kl * cfg.beta)?)?;
    }
    let masked = per_token.broadcast_mul(&p.mask)?; // [b, t]
    Ok(LossOutput {
        loss: aggregate(cfg, inp, &p, &masked)?,
        stats: p.stats,
    })
}

/// The loss split into its terms, for measuring each one's gradient (see
/// [`crate::train::diversity::grad_norms`]): one policy term per advantage part
/// (`(name, [b] advantages)`, which must sum to `inp.advantages`), each
/// `aggregate(−surrogate·Â_part)`, then `("kl", aggregate(β·KL))` when β > 0. Where the
/// clipped surrogate's `min` binds is decided with the total advantage, so the terms are
/// linear in the parts and sum to [`policy_loss`] (to rounding), and so do their gradients.
pub fn policy_loss_terms(
    cfg: &LossConfig,
    inp: &LossInputs<'_>,
    advantage_parts: &[(&str, &Tensor)],
) -> Result<Vec<(String, Tensor)>> {
    let p = parts(cfg, inp)?;
    let dt = inp.logp.dtype();
    let total: Vec<f64> = inp.advantages.to_dtype(DType::F64)?.to_vec1::<f64>()?;
    let mut sum = vec![0f64; total.len()];
    let mut terms = Vec::with_capacity(advantage_parts.len() + 1);
    for (name, a) in advantage_parts {
        check_shape(&format!("advantage part {name}"), a, &[p.b])?;
        for (s, x) in sum
            .iter_mut()
            .zip(a.to_dtype(DType::F64)?.to_vec1::<f64>()?)
        {
            *s += x;
        }
        let a = a.to_dtype(dt)?.reshape((p.b, 1))?;
        let masked = p
            .surrogate
            .broadcast_mul(&a)?
            .neg()?
            .broadcast_mul(&p.mask)?;
        terms.push((name.to_string(), aggregate(cfg, inp, &p, &masked)?));
    }
    if let Some((i, (s, t))) = sum
        .iter()
        .zip(&total)
        .enumerate()
        .find(|(_, (s, t))| (*s - *t).abs() > 1e-5 * t.abs().max(1.0))
    {
        return Err(Error::Other(format!(
            "policy loss terms: the advantage parts of sequence {i} sum to {s}, not to its \
             advantage {t}"
        )));
    }
    if let (Some(kl), true) = (&p.kl, cfg.beta > 0.0) {
        let masked = (kl * cfg.beta)?.broadcast_mul(&p.mask)?;
        terms.push(("kl".to_string(), aggregate(cfg, inp, &p, &masked)?));
    }
    Ok(terms)
}

/// `masked` (`[b, t]` per-token loss, already masked) reduced per `cfg.loss_type`.
fn aggregate(cfg: &LossConfig, inp: &LossInputs<'_>, p: &Parts, masked: &Tensor) -> Result<Tensor> {
    let (b, tokens) = (p.b, p.stats.tokens);
    Ok(match cfg.loss_type {
        LossType::Grpo => masked
            .sum_keepdim(1)?
            .div(&p.tok_per_seq.clamp(1.0, f64::INFINITY)?)?
            .sum_all()?
            .affine(1.0 / inp.num_sequences_in_batch, 0.0)?,
        LossType::Bnpo => masked.sum_all()?.affine(
            b as f64 / (tokens.max(1.0) * inp.num_sequences_in_batch),
            0.0,
        )?,
        LossType::DrGrpo => masked.sum_all()?.affine(
            1.0 / (inp.num_sequences_in_batch * cfg.max_completion_length as f64),
            0.0,
        )?,
        LossType::Dapo => masked
            .sum_all()?
            .affine(1.0 / inp.tokens_in_batch.max(1.0), 0.0)?,
    })
}

fn parts(cfg: &LossConfig, inp: &LossInputs<'_>) -> Result<Parts> {
    let (b, _t) = check_inputs(cfg, inp)?;
    let logp = inp.logp;
    let dt = logp.dtype();
    let dev = logp.device();
    let mask = inp.mask.to_dtype(dt)?;
    let old = match inp.old_logp {
        Some(o) => o.to_dtype(dt)?.detach(),
        None => logp.detach(),
    };
    // Masked so that padding (arbitrary old/new values) can never produce inf·0 = NaN.
    let log_ratio = ((logp - &old)? * &mask)?;
    let tok_per_seq = mask.sum_keepdim(1)?; // [b, 1]
    let log_w = match cfg.level {
        ImportanceSamplingLevel::Token => log_ratio,
        ImportanceSamplingLevel::Sequence => log_ratio
            .sum_keepdim(1)?
            .div(&tok_per_seq.clamp(1.0, f64::INFINITY)?)?,
    };
    let coef = log_w.exp()?; // [b, t] or [b, 1]

    // min(r·Â, clip(r)·Â): decided on the values. Where the unclipped term is the minimum
    // (always when r is inside the range) it carries r's gradient; elsewhere the clipped term
    // is a constant (clip's gradient is 0 outside the range), as in torch.
    let r_vals = rows(&coef)?;
    let a_vals: Vec<f64> = inp.advantages.to_dtype(DType::F64)?.to_vec1::<f64>()?;
    let m_vals = rows(&mask)?;
    let (lo, hi) = (1.0 - cfg.epsilon_low, 1.0 + cfg.epsilon_high);
    let cols = r_vals.first().map_or(0, Vec::len);
    let mut sel = Vec::with_capacity(b * cols);
    let mut clipped_const = Vec::with_capacity(b * cols);
    let (mut n_low, mut n_high, mut n_weight) = (0.0, 0.0, 0.0);
    for (i, row) in r_vals.iter().enumerate() {
        let a = a_vals[i];
        for (j, &r) in row.iter().enumerate() {
            if !r.is_finite() {
                return Err(Error::Other(format!(
                    "policy loss: non-finite importance ratio {r} (sequence {i}, position {j})"
                )));
            }
            let c = r.clamp(lo, hi);
            let unclipped = r * a <= c * a;
            sel.push(if unclipped { 1.0 } else { 0.0 });
            clipped_const.push(if unclipped { 0.0 } else { c });
            // Clip statistics over masked tokens (token level) or non-empty sequences.
            let w = match cfg.level {
                ImportanceSamplingLevel::Token => m_vals[i][j],
                ImportanceSamplingLevel::Sequence => {
                    if m_vals[i].iter().any(|&m| m > 0.0) {
                        1.0
                    } else {
                        0.0
                    }
                }
            };
            n_weight += w;
            if r < lo && a < 0.0 {
                n_low += w;
            }
            if r > hi && a > 0.0 {
                n_high += w;
            }
        }
    }
    let sel = Tensor::from_vec(sel, (b, cols), dev)?.to_dtype(dt)?;
    let clipped_const = Tensor::from_vec(clipped_const, (b, cols), dev)?.to_dtype(dt)?;
    let surrogate = ((&coef * &sel)? + clipped_const)?;

    let mut kl_mean = 0.0;
    let tokens = m_vals.iter().flatten().sum::<f64>();
    let mut kl_t = None;
    if let Some(r) = inp.ref_logp {
        let delta = ((r.to_dtype(dt)?.detach() - logp)? * &mask)?;
        let kl = ((delta.exp()? - &delta)? - 1.0)?;
        kl_mean = (&kl * &mask)?
            .sum_all()?
            .to_dtype(DType::F64)?
            .to_scalar::<f64>()?
            / tokens.max(1.0);
        kl_t = Some(kl);
    }
    let frac = |n: f64| if n_weight > 0.0 { n / n_weight } else { 0.0 };
    Ok(Parts {
        surrogate,
        kl: kl_t,
        mask,
        tok_per_seq,
        b,
        stats: LossStats {
            kl: kl_mean,
            clip_low: frac(n_low),
            clip_high: frac(n_high),
            clip_region: frac(n_low + n_high),
            entropy: None,
            tokens,
            clip_weight: n_weight,
        },
    })
}

/// Mean of `values` over the non-zero entries of `mask` (`[b, t]` both; mask weights, as in
/// TRL's masked means); `None` for an empty mask (nothing to average).
pub fn masked_mean(values: &Tensor, mask: &Tensor) -> Result<Option<f64>> {
    if values.dims() != mask.dims() {
        return Err(Error::Other(format!(
            "masked mean: values {:?} and mask {:?} differ in shape",
            values.dims(),
            mask.dims()
        )));
    }
    let v = values.to_dtype(DType::F64)?;
    let m = mask.to_dtype(DType::F64)?;
    let n = m.sum_all()?.to_scalar::<f64>()?;
    if n <= 0.0 {
        return Ok(None);
    }
    Ok(Some((v * m)?.sum_all()?.to_scalar::<f64>()? / n))
}

/// Mean negative log-likelihood over masked tokens (`logp`, `mask`: `[b, t]`). An empty mask
/// is an error (a batch without a single trained token means the masking is wrong).
pub fn sft_loss(logp: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let (sum, tokens) = sft_nll_sum(logp, mask)?;
    if tokens <= 0.0 {
        return Err(Error::Other(
            "sft loss: the batch has no assistant (masked-in) tokens".into(),
        ));
    }
    Ok(sum.affine(1.0 / tokens, 0.0)?)
}

/// The summed negative log-likelihood over masked tokens (scalar tensor) and the token count,
/// for gradient accumulation: divide each micro-batch's sum by the accumulated token count.
pub fn sft_nll_sum(logp: &Tensor, mask: &Tensor) -> Result<(Tensor, f64)> {
    let (b, t) = logp.dims2()?;
    if mask.dims() != [b, t] {
        return Err(Error::Other(format!(
            "sft loss: mask has shape {:?}, expected [{b}, {t}]",
            mask.dims()
        )));
    }
    let mask = mask.to_dtype(logp.dtype())?;
    let tokens = mask.sum_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
    let sum = (logp * &mask)?.sum_all()?.neg()?;
    Ok((sum, tokens))
}
