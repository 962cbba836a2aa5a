//! Fused, chunked LM head + log-softmax + gather: `y_r = log softmax(h_r · headᵀ)[t_r]`.
//!
//! When the `[n, vocab]` probabilities fit in `keep_bytes`, the forward computes all rows at
//! once and keeps `exp(logit − max)` and each row's `1/Σ` for the backward, which then forms
//! `dh = ((onehot(t) − softmax) ⊙ dy) · head` without recomputing the logits (one LM-head
//! matmul of three saved). Otherwise rows go through in chunks of `chunk_rows` (memory
//! `O(chunk_rows × vocab)`) and the backward recomputes each chunk's logits; the log-sum-exp
//! comes back from the forward's output (`lse = logit[t] − y`). `head` and `targets` get no
//! gradient.
//!
//! [`token_logprobs_with_entropy`] also returns each row's entropy `H = lse − Σ p·logit` of
//! the same distribution, from the `exp(row − max)` the forward computes anyway (one row copy
//! and one dot product per row on top of the log-sum-exp; the LM-head matmul dominates). The
//! entropy is a logged statistic: it carries no gradient.

use std::sync::{Arc, Mutex};

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor, D};
use rayon::prelude::*;

use super::cpu::{mat, matmul, slice, Mat, Real, View};

/// The fused op: `hidden: [..., d]` contiguous, `head: [vocab, d]` any strides (same dtype,
/// f32 or f64), `targets: [...]` u32 contiguous. Output `[...]` in the hidden dtype.
pub(crate) struct TokenLogprobs {
    chunk_rows: usize,
    keep_bytes: usize,
    /// `(exp(logits − max) [n·vocab], 1/Σ [n])` as `(Vec<T>, Vec<T>)`, when they fit in
    /// `keep_bytes`. Read (never consumed) by each backward: a graph may be backpropagated
    /// more than once (the per-term gradient norms do).
    saved: Mutex<Option<Box<dyn std::any::Any + Send + Sync>>>,
    /// Where the forward writes each row's entropy (f64, in row order), when asked for.
    entropy: Option<Arc<Mutex<Vec<f64>>>>,
}

impl TokenLogprobs {
    /// Chunks of `chunk_rows` rows; the probabilities kept for the backward when they take at
    /// most `keep_bytes` (0: always recompute).
    pub(crate) fn new(chunk_rows: usize, keep_bytes: usize) -> Self {
        Self {
            chunk_rows,
            keep_bytes,
            saved: Mutex::new(None),
            entropy: None,
        }
    }

    /// The same op that also writes each row's entropy to `sink` during the forward (same
    /// output and backward).
    fn with_entropy(mut self, sink: Arc<Mutex<Vec<f64>>>) -> Self {
        self.entropy = Some(sink);
        self
    }
}

const NAME: &str = "fused-token-logprobs";

/// `(rows, d, vocab)`.
fn geom(h: &Shape, head: &Shape, t: &Shape) -> Result<(usize, usize, usize)> {
    let (v, d) = head.dims2()?;
    let dims = h.dims();
    match dims.split_last() {
        Some((&hd, lead)) if hd == d && lead == t.dims() => {}
        _ => bail!("{NAME}: hidden {h:?}, head {head:?} ([vocab, d]) and targets {t:?} do not fit"),
    }
    Ok((t.elem_count(), d, v))
}

fn row_max<T: Real>(row: &[T]) -> T {
    row.iter()
        .fold(T::neg_infinity(), |m, &x| if x > m { x } else { m })
}

/// Entropy of `softmax(row)` given `e = exp(row − max)`, the original `row`, its `max` and
/// `s = Σ e`: `H = −Σ p·ln p = ln s − Σ e·(row − max) / s` (accumulated in f64).
fn entropy_of<T: Real>(e: &[T], row: &[T], max: T, s: T) -> f64 {
    let max = max.to_f64();
    let s = s.to_f64();
    let dot: f64 = e
        .iter()
        .zip(row)
        .map(|(&ei, &li)| ei.to_f64() * (li.to_f64() - max))
        .sum();
    s.ln() - dot / s
}

impl TokenLogprobs {
    /// The log-probs, and each row's entropy when `entropy` is set.
    fn forward<T: Real>(
        &self,
        h: &[T],
        head: Mat<'_, T>,
        tg: &[u32],
        d: usize,
        v: usize,
        entropy: bool,
    ) -> Result<(Vec<T>, Vec<f64>)> {
        let n = tg.len();
        let keep = n * v * std::mem::size_of::<T>() <= self.keep_bytes;
        let chunk = if keep {
            n.max(1)
        } else {
            self.chunk_rows.max(1)
        };
        let mut out = vec![T::zero(); n];
        let mut inv = vec![T::zero(); n];
        let mut ent = vec![0f64; if entropy { n } else { 0 }];
        let mut logits = vec![T::zero(); chunk.min(n) * v];
        for (c, (out, inv)) in out.chunks_mut(chunk).zip(inv.chunks_mut(chunk)).enumerate() {
            let (r0, m) = (c * chunk, out.len());
            let logits = &mut logits[..m * v];
            matmul(m, v, d, logits, Mat::rows(&h[r0 * d..], d), head.t())?;
            // Each row becomes exp(row − max); `inv` gets 1/Σ.
            let rows = out
                .par_iter_mut()
                .zip(inv.par_iter_mut())
                .zip(logits.par_chunks_mut(v))
                .zip(&tg[r0..r0 + m]);
            if entropy {
                rows.zip(&mut ent[r0..r0 + m]).for_each_init(
                    || vec![T::zero(); v],
                    |copy, ((((o, inv), row), &t), h)| {
                        let picked = row[t as usize];
                        let max = row_max(row);
                        copy.copy_from_slice(row);
                        let sum = T::exp_shift_sum(row, max);
                        *h = entropy_of(row, copy, max, sum);
                        *o = picked - (max + sum.ln());
                        *inv = T::one() / sum;
                    },
                );
            } else {
                rows.for_each(|(((o, inv), row), &t)| {
                    let picked = row[t as usize];
                    let max = row_max(row);
                    let sum = T::exp_shift_sum(row, max);
                    *o = picked - (max + sum.ln());
                    *inv = T::one() / sum;
                });
            }
        }
        if keep {
            match self.saved.lock() {
                Ok(mut saved) => *saved = Some(Box::new((logits, inv))),
                Err(_) => bail!("{NAME}: the saved probabilities' lock is poisoned"),
            }
        }
        Ok((out, ent))
    }

    /// Rows whose upstream gradient is zero (the prompt and padding positions the loss masks
    /// out) contribute nothing to `dh`, so only the others are formed: the loss's mask
    /// decides the LM head's backward cost, as TRL's `logits_to_keep` does.
    #[allow(clippy::too_many_arguments)]
    fn backward<T: Real>(
        &self,
        h: &[T],
        head: Mat<'_, T>,
        tg: &[u32],
        y: &[T],
        dy: &[T],
        d: usize,
        v: usize,
    ) -> Result<Vec<T>> {
        let n = tg.len();
        let saved = self
            .saved
            .lock()
            .map_err(|_| candle_core::Error::Msg(format!("{NAME}: lock poisoned")))?;
        let kept = saved
            .as_ref()
            .and_then(|b| b.downcast_ref::<(Vec<T>, Vec<T>)>())
            .filter(|(e, inv)| e.len() == n * v && inv.len() == n);
        let live: Vec<usize> = (0..n).filter(|&r| dy[r] != T::zero()).collect();
        let chunk = self.chunk_rows.max(1);
        let mut dh = vec![T::zero(); n * d];
        let cap = chunk.min(live.len());
        let mut g = vec![T::zero(); cap * v];
        let mut hb = vec![T::zero(); if kept.is_some() { 0 } else { cap * d }];
        let mut dhb = vec![T::zero(); cap * d];
        for rows in live.chunks(chunk) {
            let m = rows.len();
            let g = &mut g[..m * v];
            // Each row of g: dy · (onehot(t) − softmax).
            match kept {
                Some((e, inv)) => {
                    g.par_chunks_mut(v).zip(rows).for_each(|(row, &r)| {
                        let s = -dy[r] * inv[r];
                        for (x, &p) in row.iter_mut().zip(&e[r * v..(r + 1) * v]) {
                            *x = s * p;
                        }
                        row[tg[r] as usize] += dy[r];
                    });
                }
                None => {
                    for (dst, &r) in hb.chunks_mut(d).zip(rows) {
                        dst.copy_from_slice(&h[r * d..(r + 1) * d]);
                    }
                    matmul(m, v, d, g, Mat::rows(&hb[..m * d], d), head.t())?;
                    g.par_chunks_mut(v).zip(rows).for_each(|(row, &r)| {
                        let t = tg[r] as usize;
                        let (up, lse) = (dy[r], row[t] - y[r]);
                        T::exp_shift_sum(row, lse);
                        for x in row.iter_mut() {
                            *x = -up * *x;
                        }
                        row[t] += up;
                    });
                }
            }
            let out = &mut dhb[..m * d];
            out.fill(T::zero());
            matmul(m, d, v, out, Mat::rows(g, v), head)?;
            for (src, &r) in out.chunks(d).zip(rows) {
                dh[r * d..(r + 1) * d].copy_from_slice(src);
            }
        }
        Ok(dh)
    }
}

fn check_targets(tg: &[u32], v: usize) -> Result<()> {
    match tg.iter().find(|&&t| t as usize >= v) {
        Some(t) => bail!("{NAME}: target id {t} is outside the vocabulary of {v}"),
        None => Ok(()),
    }
}

impl TokenLogprobs {
    /// The forward on CPU storages: the log-probs, and the rows' entropies when `entropy`.
    #[allow(clippy::too_many_arguments)]
    fn cpu_forward(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
        entropy: bool,
    ) -> Result<(CpuStorage, Shape, Vec<f64>)> {
        let (_, d, v) = geom(l1.shape(), l2.shape(), l3.shape())?;
        let tg: &[u32] = slice(s3, l3, NAME)?;
        check_targets(tg, v)?;
        let (y, ent) = match s1.dtype() {
            DType::F32 => {
                let (y, e) = self.forward::<f32>(
                    slice(s1, l1, NAME)?,
                    mat(s2, l2, NAME)?,
                    tg,
                    d,
                    v,
                    entropy,
                )?;
                (CpuStorage::F32(y), e)
            }
            DType::F64 => {
                let (y, e) = self.forward::<f64>(
                    slice(s1, l1, NAME)?,
                    mat(s2, l2, NAME)?,
                    tg,
                    d,
                    v,
                    entropy,
                )?;
                (CpuStorage::F64(y), e)
            }
            dt => bail!("{NAME}: unsupported dtype {dt:?}"),
        };
        Ok((y, l3.shape().clone(), ent))
    }
}

impl CustomOp3 for TokenLogprobs {
    fn name(&self) -> &'static str {
        NAME
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (y, shape, ent) = self.cpu_forward(s1, l1, s2, l2, s3, l3, self.entropy.is_some())?;
        if let Some(sink) = &self.entropy {
            match sink.lock() {
                Ok(mut sink) => *sink = ent,
                Err(_) => bail!("{NAME}: the entropy buffer's lock is poisoned"),
            }
        }
        Ok((y, shape))
    }

    fn bwd(
        &self,
        h: &Tensor,
        head: &Tensor,
        targets: &Tensor,
        y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        if !h.track_op() {
            return Ok((None, None, None));
        }
        let (_, d, v) = geom(h.shape(), head.shape(), targets.shape())?;
        let dy = dy.contiguous()?;
        let views = [h, head, targets, y, &dy].map(|t| View::of(t, NAME));
        let [vh, vhead, vt, vy, vdy] = &views;
        let tg: &[u32] = vt.slice()?;
        macro_rules! run {
            ($t:ty) => {
                Tensor::from_vec(
                    self.backward::<$t>(
                        vh.slice()?,
                        vhead.mat()?,
                        tg,
                        vy.slice()?,
                        vdy.slice()?,
                        d,
                        v,
                    )?,
                    h.shape(),
                    h.device(),
                )?
            };
        }
        let dh = match h.dtype() {
            DType::F32 => run!(f32),
            DType::F64 => run!(f64),
            dt => bail!("{NAME}: unsupported dtype {dt:?}"),
        };
        Ok((Some(dh), None, None))
    }
}

/// [`super::token_logprobs`] and each row's entropy `H = −Σ_v p_v ln p_v` of the same
/// distribution `softmax(hidden · headᵀ)` (pass `hidden / T` for temperature `T`). Returns
/// `(logprobs, entropy)`, both shaped like `targets`, in the log-probs' dtype; the entropy is
/// detached (a statistic, no gradient). On CPU the fused op computes it in its forward; on
/// other devices it comes from [`entropy_from_logits`] of the full logits.
pub fn token_logprobs_with_entropy(
    hidden: &Tensor,
    head: &Tensor,
    targets: &Tensor,
) -> Result<(Tensor, Tensor)> {
    if !hidden.device().is_cpu() {
        let lp = super::reference::token_logprobs(hidden, head, targets)?;
        let logits = hidden
            .detach()
            .to_dtype(super::kernel_dtype(hidden.dtype()))?
            .matmul(
                &head
                    .detach()
                    .to_dtype(super::kernel_dtype(hidden.dtype()))?
                    .t()?,
            )?;
        let h = entropy_from_logits(&logits)?.to_dtype(lp.dtype())?;
        return Ok((lp, h.reshape(targets.shape())?));
    }
    let kt = super::kernel_dtype(hidden.dtype());
    let sink = Arc::new(Mutex::new(Vec::new()));
    let op = TokenLogprobs::new(super::LOGPROB_CHUNK_ROWS, super::LOGPROB_KEEP_BYTES)
        .with_entropy(sink.clone());
    let lp = super::prep(hidden, kt)?.apply_op3(
        &head.to_dtype(kt)?,
        &super::prep(targets, DType::U32)?,
        op,
    )?;
    let ent = match sink.lock() {
        Ok(mut e) => std::mem::take(&mut *e),
        Err(_) => bail!("{NAME}: the entropy buffer's lock is poisoned"),
    };
    if ent.len() != lp.elem_count() {
        bail!(
            "{NAME}: the forward produced {} entropies for {} rows",
            ent.len(),
            lp.elem_count()
        );
    }
    let h = Tensor::from_vec(ent, lp.shape(), lp.device())?.to_dtype(lp.dtype())?;
    Ok((lp, h))
}

/// Entropy of `softmax(logits)` over the last dimension, `[..., vocab] → [...]`, composed
/// from candle primitives and detached: `H = −Σ p·log_softmax`.
pub fn entropy_from_logits(logits: &Tensor) -> Result<Tensor> {
    let logits = logits.detach();
    let lsm = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
    (lsm.exp()? * &lsm)?.sum(D::Minus1)?.neg()
}

#[cfg(test)]
mod tests {
    use super::super::check::{assert_close, check_op, rand};
    use super::super::{reference, token_logprobs, token_logprobs_with};
    use candle_core::{DType, Device, Tensor};

    /// `n` target ids spread over a vocabulary of `v`.
    pub(super) fn targets(n: usize, v: u32) -> Tensor {
        let t: Vec<u32> = (0..n as u32).map(|i| (i * 7 + 3) % v).collect();
        Tensor::from_vec(t, n, &Device::Cpu).unwrap()
    }

    /// Chunks of 3 (7 = 3 + 3 + 1), one row and everything in one chunk, recomputing the
    /// logits in the backward; then the probabilities kept from the forward (a budget that
    /// fits, one exactly full, one a byte short: recomputed).
    #[test]
    fn token_logprobs_matches_reference_and_finite_differences_across_chunks() {
        let (n, d, v) = (7, 6, 11);
        let h = rand(70, &[n, d], 1.5, DType::F64);
        let head = rand(71, &[v, d], 1.5, DType::F64);
        let kept = [(3, 1usize << 20), (3, n * v * 8), (3, n * v * 8 - 1)];
        for (chunk, keep) in [(3usize, 0usize), (1, 0), (128, 0)].into_iter().chain(kept) {
            check_op(
                "token_logprobs",
                &|t| token_logprobs_with(&t[0], &t[1], &t[2], chunk, keep),
                &|t| reference::token_logprobs(&t[0], &t[1], &t[2]),
                &[h.clone(), head.clone(), targets(n, v as u32)],
                &[true, false, false],
            );
        }
    }

    /// A graph backpropagated twice (the per-term gradient norms do) gets the same gradient
    /// both times from the kept probabilities.
    #[test]
    fn kept_probabilities_serve_every_backward() {
        use candle_core::Var;
        let (n, d, v) = (5, 4, 9);
        let h = Var::from_tensor(&rand(78, &[n, d], 1.5, DType::F32)).unwrap();
        let head = rand(79, &[v, d], 1.5, DType::F32);
        let y = token_logprobs(h.as_tensor(), &head, &targets(n, v as u32)).unwrap();
        let loss = y.sum_all().unwrap();
        let g1 = loss.backward().unwrap();
        let g2 = loss.backward().unwrap();
        let (a, b) = (
            g1.get(h.as_tensor()).unwrap(),
            g2.get(h.as_tensor()).unwrap(),
        );
        assert_close(a, b, 0.0, 0.0, "second backward");
        let yr = reference::token_logprobs(h.as_tensor(), &head, &targets(n, v as u32)).unwrap();
        let gr = yr.sum_all().unwrap().backward().unwrap();
        assert_close(
            a,
            gr.get(h.as_tensor()).unwrap(),
            1e-5,
            1e-6,
            "vs reference",
        );
    }

    #[test]
    fn token_logprobs_backward_skips_rows_without_gradient_exactly() {
        use candle_core::Var;
        let (n, d, v) = (7, 5, 13);
        let h = Var::from_tensor(&rand(76, &[n, d], 1.5, DType::F64)).unwrap();
        let head = rand(77, &[v, d], 1.5, DType::F64);
        let t = targets(n, v as u32);
        // a loss mask with zeros at the start, in the middle and at the end
        let w = Tensor::new(&[0.0f64, 0.0, 1.0, 0.5, 0.0, 2.0, 0.0], &Device::Cpu).unwrap();
        for (chunk, keep) in [(2usize, 0usize), (128, 0), (2, 1 << 20)] {
            let y = token_logprobs_with(h.as_tensor(), &head, &t, chunk, keep).unwrap();
            let g = (y * &w).unwrap().sum_all().unwrap().backward().unwrap();
            let yr = reference::token_logprobs(h.as_tensor(), &head, &t).unwrap();
            let gr = (yr * &w).unwrap().sum_all().unwrap().backward().unwrap();
            let (a, b) = (
                g.get(h.as_tensor()).unwrap(),
                gr.get(h.as_tensor()).unwrap(),
            );
            assert_close(a, b, 1e-10, 1e-12, "masked rows");
        }
    }

    #[test]
    fn token_logprobs_keeps_leading_dims() {
        let (d, v) = (4, 9);
        let h = rand(72, &[2, 3, d], 1.0, DType::F32);
        let head = rand(73, &[v, d], 1.0, DType::F32);
        let t = targets(6, v as u32);
        let y = token_logprobs(&h, &head, &t.reshape((2, 3)).unwrap()).unwrap();
        assert_eq!(y.dims(), [2, 3]);
        let r = reference::token_logprobs(&h.reshape((6, d)).unwrap(), &head, &t).unwrap();
        assert_close(&y.flatten_all().unwrap(), &r, 1e-5, 1e-6, "leading dims");
    }

    #[test]
    fn token_logprobs_rejects_targets_outside_the_vocabulary() {
        let h = rand(74, &[2, 4], 1.0, DType::F32);
        let head = rand(75, &[5, 4], 1.0, DType::F32);
        let t = Tensor::new(&[1u32, 5], &Device::Cpu).unwrap();
        assert!(token_logprobs(&h, &head, &t).is_err());
    }
}

#[cfg(test)]
mod entropy_tests {
    use super::super::check::{assert_close, rand};
    use super::super::{token_logprobs, LOGPROB_CHUNK_ROWS};
    use super::tests::targets;
    use super::{entropy_from_logits, token_logprobs_with_entropy};
    use candle_core::{DType, Device, Tensor};

    /// By hand: uniform logits (0, 0, 0) give `ln 3`; logits (0, ln 3, 0) give p = (⅕, ⅗, ⅕),
    /// `H = −(2·⅕ ln ⅕ + ⅗ ln ⅗)`; two tokens with logits (0, ln 3) give p = (¼, ¾),
    /// `H = −(¼ ln ¼ + ¾ ln ¾) = 0.5623351446188083`; a row with all mass on one token ≈ 0.
    #[test]
    fn entropy_by_hand() {
        let dev = Device::Cpu;
        // logits = hidden · headᵀ: hidden (0, 0) → (0, 0, 0); hidden (1, 0) → (0, ln 3, 0)
        let head = Tensor::new(&[[0.0f64, 0.0], [3f64.ln(), 0.0], [0.0, 0.0]], &dev).unwrap();
        let h = Tensor::new(&[[0.0f64, 0.0], [1.0, 0.0]], &dev).unwrap();
        let t = Tensor::new(&[0u32, 1], &dev).unwrap();
        let (lp, e) = token_logprobs_with_entropy(&h, &head, &t).unwrap();
        let e = e.to_vec1::<f64>().unwrap();
        // row 0: logits (0, 0, 0) → ln 3; row 1: (0, ln 3, 0) → p = (1/5, 3/5, 1/5)
        let want1 = -(2.0 * 0.2 * 0.2f64.ln() + 0.6 * 0.6f64.ln());
        assert!((e[0] - 3f64.ln()).abs() < 1e-14, "{}", e[0]);
        assert!((e[1] - want1).abs() < 1e-14, "{} vs {want1}", e[1]);
        let lp = lp.to_vec1::<f64>().unwrap();
        assert!((lp[1] - 0.6f64.ln()).abs() < 1e-14);
        // two tokens (¼, ¾)
        let two = Tensor::new(&[[0.0f64, 3f64.ln()]], &dev).unwrap();
        let h2 = entropy_from_logits(&two).unwrap().to_vec1::<f64>().unwrap();
        assert!((h2[0] - 0.5623351446188083).abs() < 1e-14);
        // a peaked row: entropy ≈ 0, never negative beyond rounding
        let peak = Tensor::new(&[[1.0f64, 0.0]], &dev).unwrap();
        let head2 = Tensor::new(&[[200.0f64, 0.0], [0.0, 0.0]], &dev).unwrap();
        let (_, e) =
            token_logprobs_with_entropy(&peak, &head2, &Tensor::new(&[0u32], &dev).unwrap())
                .unwrap();
        let e = e.to_vec1::<f64>().unwrap()[0];
        assert!(e.abs() < 1e-80, "{e}");
    }

    /// The fused entropy equals the reference from the full logits, in f64 and f32, over
    /// more rows than one chunk (a partial last chunk), with unchanged log-probs.
    #[test]
    fn fused_entropy_matches_full_logits_reference() {
        let (d, v) = (6, 37);
        let n = LOGPROB_CHUNK_ROWS + 9;
        for (dt, rtol) in [(DType::F64, 1e-12), (DType::F32, 2e-5)] {
            let h = rand(80, &[n, d], 2.0, dt);
            let head = rand(81, &[v, d], 2.0, dt);
            let t = targets(n, v as u32);
            let (lp, e) = token_logprobs_with_entropy(&h, &head, &t).unwrap();
            assert_eq!(e.dims(), [n]);
            assert_eq!(e.dtype(), lp.dtype());
            let plain = token_logprobs(&h, &head, &t).unwrap();
            // the same kernel: identical log-probs
            assert_eq!(
                lp.to_dtype(DType::F64).unwrap().to_vec1::<f64>().unwrap(),
                plain
                    .to_dtype(DType::F64)
                    .unwrap()
                    .to_vec1::<f64>()
                    .unwrap()
            );
            let logits = h
                .to_dtype(DType::F64)
                .unwrap()
                .matmul(&head.to_dtype(DType::F64).unwrap().t().unwrap())
                .unwrap();
            let want = entropy_from_logits(&logits).unwrap();
            assert_close(&e, &want, rtol, rtol, "entropy");
            // bounded by ln V
            let max = e.max(0).unwrap().to_dtype(DType::F64).unwrap();
            assert!(max.to_scalar::<f64>().unwrap() <= (v as f64).ln() + 1e-6);
        }
    }

    /// The entropy output carries no gradient, and the log-probs' gradient is unchanged.
    #[test]
    fn entropy_has_no_gradient_and_leaves_the_logprob_gradient_alone() {
        use candle_core::Var;
        let (n, d, v) = (5, 4, 9);
        let h = Var::from_tensor(&rand(82, &[n, d], 1.0, DType::F64)).unwrap();
        let head = rand(83, &[v, d], 1.0, DType::F64);
        let t = targets(n, v as u32);
        let (lp, e) = token_logprobs_with_entropy(h.as_tensor(), &head, &t).unwrap();
        assert!(!e.track_op());
        let g = lp.sum_all().unwrap().backward().unwrap();
        let g0 = token_logprobs(h.as_tensor(), &head, &t)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        assert_close(
            g.get(h.as_tensor()).unwrap(),
            g0.get(h.as_tensor()).unwrap(),
            0.0,
            0.0,
            "gradient",
        );
    }
}
