//! Fused SwiGLU: `y = silu(g) · u = g·σ(g)·u`.
//!
//! Backward: `dg = dy·u·σ(g)·(1 + g·(1 − σ(g)))`, `du = dy·g·σ(g)`.

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor};

use super::cpu::{for_rows, for_rows2, slice, Real, View};

/// The fused op; `gate` and `up` must be contiguous, of one shape and dtype (f32 or f64).
pub(crate) struct SwiGlu;

const NAME: &str = "fused-swiglu";

/// Row length for the parallel loops (any split works: the op is elementwise).
const ROW: usize = 4096;

fn forward<T: Real>(g: &[T], u: &[T]) -> Vec<T> {
    let mut y = vec![T::zero(); g.len()];
    for_rows(&mut y, ROW, |r, yr| {
        let o = r * ROW;
        let (g, u) = (&g[o..o + yr.len()], &u[o..o + yr.len()]);
        T::sigmoid(g, yr); // yr = σ(g), vectorised
        for ((y, &g), &u) in yr.iter_mut().zip(g).zip(u) {
            *y = g * *y * u;
        }
    });
    y
}

fn backward<T: Real>(g: &[T], u: &[T], dy: &[T], need_g: bool, need_u: bool) -> (Vec<T>, Vec<T>) {
    let n = g.len();
    let mut dg = vec![T::zero(); if need_g { n } else { 0 }];
    let mut du = vec![T::zero(); if need_u { n } else { 0 }];
    // Each output row is first filled with σ(g) (vectorised), then overwritten in place.
    match (need_g, need_u) {
        (true, true) => for_rows2(&mut dg, &mut du, ROW, |r, dgr, dur| {
            let o = r * ROW;
            let m = dgr.len();
            let (g, u, dy) = (&g[o..o + m], &u[o..o + m], &dy[o..o + m]);
            T::sigmoid(g, dur);
            for i in 0..m {
                let (g, u, dy, s) = (g[i], u[i], dy[i], dur[i]);
                dgr[i] = dy * u * s * (T::one() + g * (T::one() - s));
                dur[i] = dy * g * s;
            }
        }),
        (true, false) => for_rows(&mut dg, ROW, |r, dgr| {
            let o = r * ROW;
            let m = dgr.len();
            let (g, u, dy) = (&g[o..o + m], &u[o..o + m], &dy[o..o + m]);
            T::sigmoid(g, dgr);
            for i in 0..m {
                let (g, u, dy, s) = (g[i], u[i], dy[i], dgr[i]);
                dgr[i] = dy * u * s * (T::one() + g * (T::one() - s));
            }
        }),
        (false, true) => for_rows(&mut du, ROW, |r, dur| {
            let o = r * ROW;
            let m = dur.len();
            let (g, dy) = (&g[o..o + m], &dy[o..o + m]);
            T::sigmoid(g, dur);
            for i in 0..m {
                dur[i] = dy[i] * g[i] * dur[i];
            }
        }),
        (false, false) => {}
    }
    (dg, du)
}

impl CustomOp2 for SwiGlu {
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
        if l1.shape() != l2.shape() {
            bail!(
                "{NAME}: gate {:?} and up {:?} differ",
                l1.shape(),
                l2.shape()
            );
        }
        let y = match s1.dtype() {
            DType::F32 => {
                CpuStorage::F32(forward::<f32>(slice(s1, l1, NAME)?, slice(s2, l2, NAME)?))
            }
            DType::F64 => {
                CpuStorage::F64(forward::<f64>(slice(s1, l1, NAME)?, slice(s2, l2, NAME)?))
            }
            dt => bail!("{NAME}: unsupported dtype {dt:?}"),
        };
        Ok((y, l1.shape().clone()))
    }

    fn bwd(
        &self,
        g: &Tensor,
        u: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (need_g, need_u) = (g.track_op(), u.track_op());
        if !need_g && !need_u {
            return Ok((None, None));
        }
        let dy = dy.contiguous()?;
        let (vg, vu, vdy) = (View::of(g, NAME), View::of(u, NAME), View::of(&dy, NAME));
        macro_rules! run {
            ($t:ty) => {{
                let (dg, du) =
                    backward::<$t>(vg.slice()?, vu.slice()?, vdy.slice()?, need_g, need_u);
                let dg = need_g
                    .then(|| Tensor::from_vec(dg, g.shape(), g.device()))
                    .transpose()?;
                let du = need_u
                    .then(|| Tensor::from_vec(du, u.shape(), u.device()))
                    .transpose()?;
                (dg, du)
            }};
        }
        Ok(match g.dtype() {
            DType::F32 => run!(f32),
            DType::F64 => run!(f64),
            dt => bail!("{NAME}: unsupported dtype {dt:?}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::check::{check_op, rand};
    use super::super::{reference, swiglu};
    use candle_core::DType;

    #[test]
    fn swiglu_matches_reference_and_finite_differences() {
        let g = rand(50, &[3, 7, 5], 4.0, DType::F64);
        let u = rand(51, &[3, 7, 5], 2.0, DType::F64);
        for trainable in [[true, true], [true, false], [false, true]] {
            check_op(
                "swiglu",
                &|t| swiglu(&t[0], &t[1]),
                &|t| reference::swiglu(&t[0], &t[1]),
                &[g.clone(), u.clone()],
                &trainable,
            );
        }
    }

    #[test]
    fn swiglu_large_input_runs_in_parallel_chunks() {
        // longer than one parallel row (4096) with a ragged tail
        let g = rand(52, &[3, 4100], 4.0, DType::F64);
        let u = rand(53, &[3, 4100], 2.0, DType::F64);
        let y = swiglu(&g, &u).unwrap();
        let r = reference::swiglu(&g, &u).unwrap();
        super::super::check::assert_close(&y, &r, 1e-12, 1e-12, "swiglu large");
    }
}
