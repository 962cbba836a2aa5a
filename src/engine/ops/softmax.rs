//! Fused softmax over the last dim of attention scores with the causal mask built in.
//!
//! Scores `[b, ..., q, k]`: query `i` sits at absolute position `offset + i` and sees keys
//! `key_start[b] ..= offset + i` (`key_start` masks left padding; 0 without it). Masked
//! entries are exactly 0; a row that sees no key at all is all zeros.
//! Backward: `dx = y ⊙ (dy − Σ dy ⊙ y)` (masked entries have `y = 0`, so `dx = 0` there).

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor};

use super::cpu::{dot, for_rows, slice, Real, View};

/// The fused op; input must be contiguous f32 or f64 of rank ≥ 2.
pub(crate) struct CausalSoftmax {
    pub offset: usize,
    /// Per batch row (dim 0): the first key that is not padding.
    pub key_start: Option<Vec<usize>>,
}

const NAME: &str = "fused-causal-softmax";

/// Geometry of the rows: `(q, k, rows per batch entry)`.
struct Rows {
    q: usize,
    k: usize,
    per_batch: usize,
}

impl CausalSoftmax {
    fn rows(&self, shape: &Shape) -> Result<Rows> {
        let dims = shape.dims();
        if dims.len() < 2 {
            bail!("{NAME}: expects scores [.., q, k], got {shape:?}");
        }
        let (q, k) = (dims[dims.len() - 2], dims[dims.len() - 1]);
        let b = dims[0];
        if let Some(starts) = &self.key_start {
            if starts.len() != b {
                bail!("{NAME}: {} key starts for a batch of {b}", starts.len());
            }
        }
        let per_batch = shape.elem_count().checked_div(b * k).unwrap_or(0);
        Ok(Rows { q, k, per_batch })
    }

    /// The keys row `r` sees: `lo..hi` (empty when `lo >= hi`).
    #[inline]
    fn window(&self, g: &Rows, r: usize) -> (usize, usize) {
        let i = r % g.q.max(1);
        let hi = (self.offset + i + 1).min(g.k);
        let lo = match &self.key_start {
            Some(s) => s[r / g.per_batch.max(1)],
            None => 0,
        };
        (lo, hi)
    }

    fn forward<T: Real>(&self, x: &[T], g: &Rows) -> Vec<T> {
        let mut y = vec![T::zero(); x.len()];
        for_rows(&mut y, g.k, |r, yr| {
            let (lo, hi) = self.window(g, r);
            if lo >= hi {
                return;
            }
            let xr = &x[r * g.k + lo..r * g.k + hi];
            let max = xr
                .iter()
                .fold(T::neg_infinity(), |m, &v| if v > m { v } else { m });
            let out = &mut yr[lo..hi];
            out.copy_from_slice(xr);
            let inv = T::exp_shift_sum(out, max).recip();
            out.iter_mut().for_each(|o| *o *= inv);
        });
        y
    }

    fn backward<T: Real>(&self, y: &[T], dy: &[T], g: &Rows) -> Vec<T> {
        let mut dx = vec![T::zero(); y.len()];
        for_rows(&mut dx, g.k, |r, dxr| {
            let (lo, hi) = self.window(g, r);
            if lo >= hi {
                return;
            }
            let (yr, dyr) = (
                &y[r * g.k + lo..r * g.k + hi],
                &dy[r * g.k + lo..r * g.k + hi],
            );
            let s = dot(yr, dyr);
            for ((o, &yi), &gi) in dxr[lo..hi].iter_mut().zip(yr).zip(dyr) {
                *o = yi * (gi - s);
            }
        });
        dx
    }
}

impl CustomOp1 for CausalSoftmax {
    fn name(&self) -> &'static str {
        NAME
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = self.rows(l.shape())?;
        let y = match s.dtype() {
            DType::F32 => CpuStorage::F32(self.forward::<f32>(slice(s, l, NAME)?, &g)),
            DType::F64 => CpuStorage::F64(self.forward::<f64>(slice(s, l, NAME)?, &g)),
            dt => bail!("{NAME}: unsupported dtype {dt:?}"),
        };
        Ok((y, l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, y: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        if !x.track_op() {
            return Ok(None);
        }
        let g = self.rows(x.shape())?;
        let dy = dy.contiguous()?;
        let (vy, vdy) = (View::of(y, NAME), View::of(&dy, NAME));
        let dx = match x.dtype() {
            DType::F32 => self.backward::<f32>(vy.slice()?, vdy.slice()?, &g),
            DType::F64 => {
                let dx = self.backward::<f64>(vy.slice()?, vdy.slice()?, &g);
                return Tensor::from_vec(dx, x.shape(), x.device()).map(Some);
            }
            dt => bail!("{NAME}: unsupported dtype {dt:?}"),
        };
        Tensor::from_vec(dx, x.shape(), x.device()).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::super::check::{check_op, rand};
    use super::super::{causal_softmax, causal_softmax_padded, reference};
    use candle_core::{DType, IndexOp};

    #[test]
    fn causal_softmax_matches_reference_and_finite_differences() {
        // (shape [b, h, q, k], offset): prefill, decode with a cache (q < k), one-step decode,
        // and an offset past the keys (every key visible).
        let cases = [
            (vec![2, 3, 4, 4], 0),
            (vec![2, 2, 3, 7], 4),
            (vec![1, 2, 1, 5], 4),
            (vec![1, 1, 3, 3], 2),
            (vec![1, 2, 5, 5], 0),
        ];
        for (i, (shape, offset)) in cases.into_iter().enumerate() {
            let x = rand(20 + i as u64, &shape, 3.0, DType::F64);
            check_op(
                "causal_softmax",
                &|t| causal_softmax(&t[0], offset),
                &|t| reference::causal_softmax(&t[0], offset),
                &[x],
                &[true],
            );
        }
    }

    #[test]
    fn causal_softmax_padded_matches_reference_and_zeroes_empty_rows() {
        let x = rand(30, &[2, 2, 4, 6], 3.0, DType::F64);
        let starts = [0usize, 3];
        check_op(
            "causal_softmax_padded",
            &|t| causal_softmax_padded(&t[0], 2, &starts),
            &|t| reference::causal_softmax_padded(&t[0], 2, &starts),
            std::slice::from_ref(&x),
            &[true],
        );
        let y = causal_softmax_padded(&x, 2, &starts).unwrap();
        // batch 1, query 0 (position 2) sees keys 3..=2: nothing.
        let row = y.i((1, 0, 0)).unwrap().to_vec1::<f64>().unwrap();
        assert!(row.iter().all(|&v| v == 0.0), "{row:?}");
        // batch 1, query 3 (position 5) sees keys 3..=5 and sums to 1.
        let row = y.i((1, 1, 3)).unwrap().to_vec1::<f64>().unwrap();
        assert!(row[..3].iter().all(|&v| v == 0.0));
        assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn causal_softmax_rejects_bad_key_starts() {
        let x = rand(31, &[2, 1, 2, 2], 1.0, DType::F32);
        assert!(causal_softmax_padded(&x, 0, &[0]).is_err());
    }
}
