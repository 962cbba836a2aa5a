//! Fused, chunked LM head + log-softmax + gather: `y_r = log softmax(h_r · headᵀ)[t_r]`.
//!
//! The full `[n, vocab]` logits never exist at once: rows go through in chunks of
//! `chunk_rows`, so memory is `O(chunk_rows × vocab)`. Backward, per chunk, recomputes the
//! logits and forms `dh = ((onehot(t) − softmax) ⊙ dy) · head`; the log-sum-exp comes back
//! from the forward's output (`lse = logit[t] − y`). `head` and `targets` get no gradient.

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::cpu::{mat, matmul, slice, Mat, Real, View};

/// The fused op: `hidden: [..., d]` contiguous, `head: [vocab, d]` any strides (same dtype,
/// f32 or f64), `targets: [...]` u32 contiguous. Output `[...]` in the hidden dtype.
pub(crate) struct TokenLogprobs {
    pub chunk_rows: usize,
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

/// `log Σ exp(row)`; overwrites `row` with `exp(row − max)`.
fn log_sum_exp<T: Real>(row: &mut [T]) -> T {
    let max = row
        .iter()
        .fold(T::neg_infinity(), |m, &x| if x > m { x } else { m });
    max + T::exp_shift_sum(row, max).ln()
}

impl TokenLogprobs {
    fn forward<T: Real>(
        &self,
        h: &[T],
        head: Mat<'_, T>,
        tg: &[u32],
        d: usize,
        v: usize,
    ) -> Result<Vec<T>> {
        let n = tg.len();
        let chunk = self.chunk_rows.max(1);
        let mut out = vec![T::zero(); n];
        let mut logits = vec![T::zero(); chunk.min(n) * v];
        for (c, out) in out.chunks_mut(chunk).enumerate() {
            let (r0, m) = (c * chunk, out.len());
            let logits = &mut logits[..m * v];
            matmul(m, v, d, logits, Mat::rows(&h[r0 * d..], d), head.t())?;
            out.par_iter_mut()
                .zip(logits.par_chunks_mut(v))
                .zip(&tg[r0..r0 + m])
                .for_each(|((o, row), &t)| {
                    let picked = row[t as usize];
                    *o = picked - log_sum_exp(row);
                });
        }
        Ok(out)
    }

    /// Rows whose upstream gradient is zero (the prompt and padding positions the loss masks
    /// out) contribute nothing to `dh`, so only the others are recomputed: the loss's mask
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
        let live: Vec<usize> = (0..n).filter(|&r| dy[r] != T::zero()).collect();
        let chunk = self.chunk_rows.max(1);
        let mut dh = vec![T::zero(); n * d];
        let cap = chunk.min(live.len());
        let mut logits = vec![T::zero(); cap * v];
        let mut hb = vec![T::zero(); cap * d];
        let mut dhb = vec![T::zero(); cap * d];
        for rows in live.chunks(chunk) {
            let m = rows.len();
            for (dst, &r) in hb.chunks_mut(d).zip(rows) {
                dst.copy_from_slice(&h[r * d..(r + 1) * d]);
            }
            let g = &mut logits[..m * v];
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
        let (_, d, v) = geom(l1.shape(), l2.shape(), l3.shape())?;
        let tg: &[u32] = slice(s3, l3, NAME)?;
        check_targets(tg, v)?;
        let y = match s1.dtype() {
            DType::F32 => CpuStorage::F32(self.forward::<f32>(
                slice(s1, l1, NAME)?,
                mat(s2, l2, NAME)?,
                tg,
                d,
                v,
            )?),
            DType::F64 => CpuStorage::F64(self.forward::<f64>(
                slice(s1, l1, NAME)?,
                mat(s2, l2, NAME)?,
                tg,
                d,
                v,
            )?),
            dt => bail!("{NAME}: unsupported dtype {dt:?}"),
        };
        Ok((y, l3.shape().clone()))
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

#[cfg(test)]
mod tests {
    use super::super::check::{assert_close, check_op, rand};
    use super::super::{reference, token_logprobs, token_logprobs_chunked};
    use candle_core::{DType, Device, Tensor};

    fn targets(n: usize, v: u32) -> Tensor {
        let t: Vec<u32> = (0..n as u32).map(|i| (i * 7 + 3) % v).collect();
        Tensor::from_vec(t, n, &Device::Cpu).unwrap()
    }

    #[test]
    fn token_logprobs_matches_reference_and_finite_differences_across_chunks() {
        let (n, d, v) = (7, 6, 11);
        let h = rand(70, &[n, d], 1.5, DType::F64);
        let head = rand(71, &[v, d], 1.5, DType::F64);
        // chunks of 3 (7 = 3 + 3 + 1), one row, and everything in one chunk
        for chunk in [3usize, 1, 128] {
            check_op(
                "token_logprobs",
                &|t| token_logprobs_chunked(&t[0], &t[1], &t[2], chunk),
                &|t| reference::token_logprobs(&t[0], &t[1], &t[2]),
                &[h.clone(), head.clone(), targets(n, v as u32)],
                &[true, false, false],
            );
        }
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
        for chunk in [2usize, 128] {
            let y = token_logprobs_chunked(h.as_tensor(), &head, &t, chunk).unwrap();
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
