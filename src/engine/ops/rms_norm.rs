//! Fused RMSNorm: `y = x / sqrt(mean(x²) + eps) * w` over the last dimension.
//!
//! Backward, with `r = 1 / sqrt(mean(x²) + eps)`, `x̂ = x·r`, `g = dy ⊙ w`:
//! `dx = r · (g − x̂ · mean(g ⊙ x̂))` and `dw = Σ_rows dy ⊙ x̂`.

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor};

use super::cpu::{dot, for_rows, lit, slice, sum_rows, Real, View};

/// The fused op; inputs must be contiguous, `x: [..., d]`, `w: [d]`, both f32 or both f64.
pub(crate) struct RmsNorm {
    pub eps: f64,
}

const NAME: &str = "fused-rms-norm";

fn inv_rms<T: Real>(x: &[T], eps: f64) -> T {
    let ms = dot(x, x) / lit::<T>(x.len() as f64);
    (ms + lit::<T>(eps)).sqrt().recip()
}

fn forward<T: Real>(x: &[T], w: &[T], eps: f64) -> Vec<T> {
    let d = w.len();
    let mut y = vec![T::zero(); x.len()];
    for_rows(&mut y, d, |r, yr| {
        let xr = &x[r * d..(r + 1) * d];
        let inv = inv_rms(xr, eps);
        for ((o, &xi), &wi) in yr.iter_mut().zip(xr).zip(w) {
            *o = xi * inv * wi;
        }
    });
    y
}

fn grad_x<T: Real>(x: &[T], w: &[T], dy: &[T], eps: f64) -> Vec<T> {
    let d = w.len();
    let mut dx = vec![T::zero(); x.len()];
    for_rows(&mut dx, d, |r, dxr| {
        let xr = &x[r * d..(r + 1) * d];
        let dyr = &dy[r * d..(r + 1) * d];
        let inv = inv_rms(xr, eps);
        // mean(g ⊙ x̂) = r · Σ(dy ⊙ w ⊙ x) / d
        let mut s = T::zero();
        for ((&xi, &gi), &wi) in xr.iter().zip(dyr).zip(w) {
            s += gi * wi * xi;
        }
        let c = s * inv * inv / lit::<T>(d as f64);
        for (((o, &xi), &gi), &wi) in dxr.iter_mut().zip(xr).zip(dyr).zip(w) {
            *o = inv * (gi * wi - xi * c);
        }
    });
    dx
}

fn grad_w<T: Real>(x: &[T], dy: &[T], d: usize, eps: f64) -> Vec<T> {
    let rows = x.len().checked_div(d).unwrap_or(0);
    sum_rows(rows, d, |r, acc| {
        let xr = &x[r * d..(r + 1) * d];
        let dyr = &dy[r * d..(r + 1) * d];
        let inv = inv_rms(xr, eps);
        for ((a, &xi), &gi) in acc.iter_mut().zip(xr).zip(dyr) {
            *a += gi * xi * inv;
        }
    })
}

fn check(x: &Shape, w: &Shape) -> Result<usize> {
    let d = x.dims().last().copied().unwrap_or(0);
    if w.dims() != [d] {
        bail!("{NAME}: weight shape {w:?} does not match the last dim of {x:?}");
    }
    Ok(d)
}

impl CustomOp2 for RmsNorm {
    fn name(&self) -> &'static str {
        NAME
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        check(l1.shape(), l2.shape())?;
        let y = match s1.dtype() {
            DType::F32 => CpuStorage::F32(forward::<f32>(
                slice(s1, l1, NAME)?,
                slice(s2, l2, NAME)?,
                self.eps,
            )),
            DType::F64 => CpuStorage::F64(forward::<f64>(
                slice(s1, l1, NAME)?,
                slice(s2, l2, NAME)?,
                self.eps,
            )),
            dt => bail!("{NAME}: unsupported dtype {dt:?}"),
        };
        Ok((y, l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let d = check(x.shape(), w.shape())?;
        let dy = dy.contiguous()?;
        let (vx, vw, vdy) = (View::of(x, NAME), View::of(w, NAME), View::of(&dy, NAME));
        macro_rules! run {
            ($t:ty) => {{
                let (xs, ws, dys) = (vx.slice::<$t>()?, vw.slice::<$t>()?, vdy.slice::<$t>()?);
                let dx = x
                    .track_op()
                    .then(|| Tensor::from_vec(grad_x(xs, ws, dys, self.eps), x.shape(), x.device()))
                    .transpose()?;
                let dw = w
                    .track_op()
                    .then(|| Tensor::from_vec(grad_w(xs, dys, d, self.eps), d, w.device()))
                    .transpose()?;
                (dx, dw)
            }};
        }
        Ok(match x.dtype() {
            DType::F32 => run!(f32),
            DType::F64 => run!(f64),
            dt => bail!("{NAME}: unsupported dtype {dt:?}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::check::{assert_close, check_op, rand};
    use super::super::{reference, rms_norm};
    use candle_core::{DType, Var};

    #[test]
    fn rms_norm_matches_reference_and_finite_differences() {
        for (shape, seed) in [(vec![2, 3, 5], 1), (vec![3, 37], 2), (vec![1, 1, 16], 3)] {
            let d = shape[shape.len() - 1];
            let x = rand(seed, &shape, 2.0, DType::F64);
            let w = rand(seed + 10, &[d], 1.5, DType::F64);
            check_op(
                "rms_norm",
                &|t| rms_norm(&t[0], &t[1], 1e-5),
                &|t| reference::rms_norm(&t[0], &t[1], 1e-5),
                &[x, w],
                &[true, true],
            );
        }
    }

    #[test]
    fn rms_norm_frozen_weight_gets_no_gradient() {
        let x = Var::from_tensor(&rand(4, &[3, 8], 1.0, DType::F32)).unwrap();
        let w = rand(5, &[8], 1.0, DType::F32);
        let y = rms_norm(x.as_tensor(), &w, 1e-6).unwrap();
        let g = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        assert!(g.get(x.as_tensor()).is_some());
        assert!(g.get(&w).is_none());
    }

    #[test]
    fn rms_norm_bf16_is_close_to_f32() {
        let x = rand(6, &[4, 32], 1.0, DType::F32);
        let w = rand(7, &[32], 1.0, DType::F32);
        let y32 = rms_norm(&x, &w, 1e-6).unwrap();
        let xb = x.to_dtype(DType::BF16).unwrap();
        let yb = rms_norm(&xb, &w.to_dtype(DType::BF16).unwrap(), 1e-6).unwrap();
        assert_eq!(yb.dtype(), DType::BF16);
        assert_close(&yb, &y32, 2e-2, 2e-2, "bf16");
    }
}
