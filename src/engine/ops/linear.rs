//! Linear layer with a frozen weight: `y = x · wᵀ`, backward to `x` only.
//!
//! candle's matmul backward always computes both operand gradients; for a frozen `w: [out, in]`
//! the weight gradient (`dyᵀ · x`, as many FLOPs as the forward) is thrown away. Here the
//! backward is `dx = dy · w` and `w` gets no gradient.
//!
//! `w` may be bf16 with an f32 `x` (`model.dtype: bf16`): decode-sized inputs stream the bf16
//! rows through the small-row kernel (half the bytes of f32); larger ones widen `w` to f32 once
//! per call for gemm.

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor};

use super::cpu::{mat, matmul, slice, Mat, Real, View};

/// The fused op; `x: [..., in]` contiguous, `w: [out, in]` with any strides, same dtype as `x`
/// or bf16 with an f32 `x`.
pub(crate) struct FrozenLinear;

const NAME: &str = "frozen-linear";

/// `(rows of x, in, out)` and the output shape.
fn geom(x: &Shape, w: &Shape) -> Result<(usize, usize, usize, Shape)> {
    let (out, inp) = w.dims2()?;
    let dims = x.dims();
    match dims.last() {
        Some(&d) if d == inp => {}
        _ => bail!("{NAME}: x {x:?} does not fit w {w:?} ([out, in])"),
    }
    let rows = x.elem_count().checked_div(inp).unwrap_or(0);
    let mut ydims = dims.to_vec();
    if let Some(last) = ydims.last_mut() {
        *last = out;
    }
    Ok((rows, inp, out, Shape::from(ydims)))
}

/// `x[m×in] · wᵀ`.
fn forward<T: Real>(x: &[T], w: Mat<'_, T>, m: usize, inp: usize, out: usize) -> Result<Vec<T>> {
    let mut y = vec![T::zero(); m * out];
    matmul(m, out, inp, &mut y, Mat::rows(x, inp), w.t())?;
    Ok(y)
}

/// `x[m×in] · wᵀ` for bf16 `w`, computed in f32.
fn forward_bf16(
    x: &[f32],
    w: Mat<'_, half::bf16>,
    m: usize,
    inp: usize,
    out: usize,
) -> Result<Vec<f32>> {
    let mut y = vec![0f32; m * out];
    if m <= super::small_m::MAX_M && w.cs == 1 && w.fits_rows(out, inp) {
        let threads = candle_core::utils::get_num_threads();
        super::small_m::matmul(
            m,
            out,
            inp,
            &mut y,
            super::small_m::Rows {
                data: x,
                stride: inp,
            },
            super::small_m::Rows {
                data: w.data,
                stride: w.rs,
            },
            threads,
        );
        return Ok(y);
    }
    let wf = w.to_f32_rows(out, inp)?;
    matmul(
        m,
        out,
        inp,
        &mut y,
        Mat::rows(x, inp),
        Mat::rows(&wf, inp).t(),
    )?;
    Ok(y)
}

/// `dy[m×out] · w`.
fn backward<T: Real>(dy: &[T], w: Mat<'_, T>, m: usize, inp: usize, out: usize) -> Result<Vec<T>> {
    let mut dx = vec![T::zero(); m * inp];
    matmul(m, inp, out, &mut dx, Mat::rows(dy, out), w)?;
    Ok(dx)
}

impl CustomOp2 for FrozenLinear {
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
        let (m, inp, out, shape) = geom(l1.shape(), l2.shape())?;
        let y = match s1.dtype() {
            DType::F32 if s2.dtype() == DType::BF16 => CpuStorage::F32(forward_bf16(
                slice(s1, l1, NAME)?,
                mat(s2, l2, NAME)?,
                m,
                inp,
                out,
            )?),
            DType::F32 => CpuStorage::F32(forward::<f32>(
                slice(s1, l1, NAME)?,
                mat(s2, l2, NAME)?,
                m,
                inp,
                out,
            )?),
            DType::F64 => CpuStorage::F64(forward::<f64>(
                slice(s1, l1, NAME)?,
                mat(s2, l2, NAME)?,
                m,
                inp,
                out,
            )?),
            dt => bail!("{NAME}: unsupported dtype {dt:?}"),
        };
        Ok((y, shape))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        if !x.track_op() {
            return Ok((None, None));
        }
        let (m, inp, out, _) = geom(x.shape(), w.shape())?;
        let dy = dy.contiguous()?;
        // A bf16 weight is widened once for the backward's gemm.
        let w = &w.to_dtype(x.dtype())?;
        let (vw, vdy) = (View::of(w, NAME), View::of(&dy, NAME));
        let dx = match x.dtype() {
            DType::F32 => Tensor::from_vec(
                backward::<f32>(vdy.slice()?, vw.mat()?, m, inp, out)?,
                x.shape(),
                x.device(),
            )?,
            DType::F64 => Tensor::from_vec(
                backward::<f64>(vdy.slice()?, vw.mat()?, m, inp, out)?,
                x.shape(),
                x.device(),
            )?,
            dt => bail!("{NAME}: unsupported dtype {dt:?}"),
        };
        Ok((Some(dx), None))
    }
}

#[cfg(test)]
mod tests {
    use super::super::check::{check_op, rand};
    use super::super::{frozen_linear, reference};
    use candle_core::{DType, Var};

    #[test]
    fn frozen_linear_matches_reference_and_finite_differences() {
        let x = rand(60, &[2, 3, 5], 1.0, DType::F64);
        let w = rand(61, &[4, 5], 1.0, DType::F64);
        // a transposed (strided) weight view as well
        let wt = rand(62, &[5, 4], 1.0, DType::F64).t().unwrap();
        for w in [w, wt] {
            check_op(
                "frozen_linear",
                &|t| frozen_linear(&t[0], &t[1]),
                &|t| reference::frozen_linear(&t[0], &t[1]),
                &[x.clone(), w],
                &[true, false],
            );
        }
    }

    #[test]
    fn frozen_linear_weight_gets_no_gradient_even_as_a_var() {
        let x = Var::from_tensor(&rand(63, &[4, 6], 1.0, DType::F32)).unwrap();
        let w = Var::from_tensor(&rand(64, &[3, 6], 1.0, DType::F32)).unwrap();
        let y = frozen_linear(x.as_tensor(), w.as_tensor()).unwrap();
        let g = y.sum_all().unwrap().backward().unwrap();
        assert!(g.get(x.as_tensor()).is_some());
        assert!(g.get(w.as_tensor()).is_none());
    }
}
