//! CPU plumbing shared by the fused kernels: the element types they run in, contiguous slice
//! access to storages and tensors, row-parallel loops and a strided gemm.

use candle_core::{bail, CpuStorage, Layout, Result, Storage, StorageRef, Tensor, WithDType};
use rayon::prelude::*;

/// Element types the fused kernels run in: f32 (the fast path) and f64 (exact gradient checks).
pub(crate) trait Real:
    WithDType + num_traits::Float + Send + Sync + std::iter::Sum + std::ops::AddAssign
{
    /// `x[i] = exp(x[i] − shift)` for every element; returns the sum of the results.
    fn exp_shift_sum(x: &mut [Self], shift: Self) -> Self;

    /// `out[i] = σ(x[i]) = 1 / (1 + exp(−x[i]))` (`out` as long as `x`).
    fn sigmoid(x: &[Self], out: &mut [Self]) {
        for (o, &v) in out.iter_mut().zip(x) {
            *o = (Self::one() + (-v).exp()).recip();
        }
    }

    /// `dst = lhs · rhs` through a small-row kernel when one fits (few rows, lhs rows and rhs
    /// columns contiguous); `false` = not handled, use gemm.
    fn small_m_matmul(
        _m: usize,
        _n: usize,
        _k: usize,
        _dst: &mut [Self],
        _lhs: Mat<'_, Self>,
        _rhs: Mat<'_, Self>,
        _threads: usize,
    ) -> bool {
        false
    }
}

impl Real for f32 {
    fn exp_shift_sum(x: &mut [f32], shift: f32) -> f32 {
        fast_exp::exp_shift_sum(x, shift)
    }

    fn sigmoid(x: &[f32], out: &mut [f32]) {
        fast_exp::sigmoid(x, out)
    }

    fn small_m_matmul(
        m: usize,
        n: usize,
        k: usize,
        dst: &mut [f32],
        lhs: Mat<'_, f32>,
        rhs: Mat<'_, f32>,
        threads: usize,
    ) -> bool {
        if m > super::small_m::MAX_M || lhs.cs != 1 || rhs.rs != 1 {
            return false;
        }
        let x = super::small_m::Rows {
            data: lhs.data,
            stride: lhs.rs,
        };
        let w = super::small_m::Rows {
            data: rhs.data,
            stride: rhs.cs,
        };
        super::small_m::matmul(m, n, k, dst, x, w, threads);
        true
    }
}

impl Real for f64 {
    fn exp_shift_sum(x: &mut [f64], shift: f64) -> f64 {
        let mut sum = 0.0;
        for v in x.iter_mut() {
            *v = (*v - shift).exp();
            sum += *v;
        }
        sum
    }
}

/// A vectorised f32 `exp` (Cephes' `expf` polynomial, within 2 ulp of libm's on the range
/// softmax uses). Softmax and the LM-head log-softmax spend most of their time in `exp`;
/// libm's scalar call is ~10× slower than 16 lanes of this on AVX-512.
mod fast_exp {
    const LANES: usize = 16;

    #[inline(always)]
    fn exp(x: f32) -> f32 {
        // exp(x) = 2^n · exp(r), n = round(x / ln 2), |r| ≤ ln 2 / 2. Below -87.3 the result
        // would be subnormal: clamp (exp(-87.3) ≈ 1.2e-38, negligible in every sum here).
        // NaN fails both comparisons and propagates.
        let x = if x > 88.37626 { 88.37626 } else { x };
        let x = if x < -87.33654 { -87.33654 } else { x };
        // round to nearest with the 1.5·2²³ trick; the low mantissa bits then hold n.
        let t = x * std::f32::consts::LOG2_E + 12_582_912.0;
        let n = t.to_bits() as i32 - 0x4B40_0000;
        let nf = t - 12_582_912.0;
        let r = x - nf * 0.693_359_4 + nf * 2.121_944_4e-4;
        let mut p = 1.987_569_1e-4f32;
        p = p * r + 1.398_199_9e-3;
        p = p * r + 8.333_452e-3;
        p = p * r + 4.166_579_6e-2;
        p = p * r + 1.666_666_5e-1;
        p = p * r + 0.5;
        let y = p * r * r + r + 1.0;
        y * f32::from_bits(((n + 127) as u32) << 23)
    }

    #[inline(always)]
    fn body(x: &mut [f32], shift: f32) -> f32 {
        let mut acc = [0f32; LANES];
        let mut chunks = x.chunks_exact_mut(LANES);
        for c in &mut chunks {
            for l in 0..LANES {
                c[l] = exp(c[l] - shift);
                acc[l] += c[l];
            }
        }
        let mut sum = 0f32;
        for v in chunks.into_remainder() {
            *v = exp(*v - shift);
            sum += *v;
        }
        acc.iter().fold(sum, |s, a| s + a)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx2,fma")]
    fn body_avx512(x: &mut [f32], shift: f32) -> f32 {
        body(x, shift)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn body_avx2(x: &mut [f32], shift: f32) -> f32 {
        body(x, shift)
    }

    #[inline(always)]
    fn sigmoid_body(x: &[f32], out: &mut [f32]) {
        for (o, &v) in out.iter_mut().zip(x) {
            *o = 1.0 / (1.0 + exp(-v));
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx2,fma")]
    fn sigmoid_avx512(x: &[f32], out: &mut [f32]) {
        sigmoid_body(x, out)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn sigmoid_avx2(x: &[f32], out: &mut [f32]) {
        sigmoid_body(x, out)
    }

    /// `out[i] = 1 / (1 + exp(−x[i]))` with the vectorised `exp` (SwiGLU's sigmoid).
    pub(super) fn sigmoid(x: &[f32], out: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: the CPU has the features the function was compiled for.
                return unsafe { sigmoid_avx512(x, out) };
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                // SAFETY: as above.
                return unsafe { sigmoid_avx2(x, out) };
            }
        }
        sigmoid_body(x, out)
    }

    pub(super) fn exp_shift_sum(x: &mut [f32], shift: f32) -> f32 {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: the CPU has the features the function was compiled for.
                return unsafe { body_avx512(x, shift) };
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                // SAFETY: as above.
                return unsafe { body_avx2(x, shift) };
            }
        }
        body(x, shift)
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn fast_exp_is_within_a_few_ulp_of_libm() {
            let mut xs: Vec<f32> = (-8700..=8800).map(|i| i as f32 * 0.01 + 0.003).collect();
            xs.extend([0.0, -0.0, 1e-30, -1e-30, 88.0, -87.0]);
            let mut ys = xs.clone();
            super::exp_shift_sum(&mut ys, 0.0);
            for (&x, &y) in xs.iter().zip(&ys) {
                let want = (x as f64).exp();
                let rel = ((y as f64) - want).abs() / want;
                assert!(rel < 3e-7, "exp({x}) = {y}, want {want} (rel {rel:e})");
            }
            // the shift and the returned sum (a softmax-sized row)
            let mut row: Vec<f32> = (0..1001).map(|i| (i as f32 * 0.37).sin() * 9.0).collect();
            let want: f64 = row.iter().map(|&x| (x as f64 - 2.5).exp()).sum();
            let sum = super::exp_shift_sum(&mut row, 2.5) as f64;
            assert!((sum - want).abs() / want < 1e-6, "{sum} vs {want}");
            let mut nan = [f32::NAN; 3];
            assert!(super::exp_shift_sum(&mut nan, 0.0).is_nan());
            let mut far = [-1e4f32; 17];
            assert!(super::exp_shift_sum(&mut far, 0.0) < 1e-36);
        }

        #[test]
        fn fast_sigmoid_is_within_a_few_ulp_of_libm() {
            let mut xs: Vec<f32> = (-12000..=12000).map(|i| i as f32 * 0.01 + 0.003).collect();
            xs.extend([
                0.0,
                -0.0,
                1e-30,
                200.0,
                -200.0,
                f32::INFINITY,
                f32::NEG_INFINITY,
            ]);
            let mut ys = vec![0f32; xs.len()];
            super::sigmoid(&xs, &mut ys);
            for (&x, &y) in xs.iter().zip(&ys) {
                let want = 1.0 / (1.0 + (-(x as f64)).exp());
                let err = ((y as f64) - want).abs();
                assert!(
                    err <= 4e-7 * want.max(1e-30) || err < 1e-37,
                    "sigmoid({x}) = {y}, want {want}"
                );
            }
            let mut nan = [0f32; 1];
            super::sigmoid(&[f32::NAN], &mut nan);
            assert!(nan[0].is_nan());
        }
    }
}

/// A constant in the element type.
#[inline]
pub(crate) fn lit<T: Real>(v: f64) -> T {
    <T as WithDType>::from_f64(v)
}

/// The contiguous part of a storage that `layout` describes, or an error naming `op`.
pub(crate) fn slice<'a, T: WithDType>(
    storage: &'a CpuStorage,
    layout: &Layout,
    op: &str,
) -> Result<&'a [T]> {
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&T::cpu_storage_as_slice(storage)?[start..end]),
        None => bail!("{op}: expects contiguous inputs"),
    }
}

/// A read guard on a tensor's CPU storage, so backward passes can read tensors in place.
pub(crate) struct View<'a> {
    guard: StorageRef<'a>,
    layout: &'a Layout,
    op: &'static str,
}

impl<'a> View<'a> {
    pub(crate) fn of(t: &'a Tensor, op: &'static str) -> Self {
        let (guard, layout) = t.storage_and_layout();
        Self { guard, layout, op }
    }

    /// The tensor's elements; errors unless it is a contiguous CPU tensor of type `T`.
    pub(crate) fn slice<T: WithDType>(&self) -> Result<&[T]> {
        match &*self.guard {
            Storage::Cpu(s) => slice(s, self.layout, self.op),
            _ => bail!("{}: the fused kernel runs on the CPU only", self.op),
        }
    }

    /// A 2-D tensor with any strides, as a [`Mat`] operand.
    pub(crate) fn mat<T: WithDType>(&self) -> Result<Mat<'_, T>> {
        match &*self.guard {
            Storage::Cpu(s) => mat(s, self.layout, self.op),
            _ => bail!("{}: the fused kernel runs on the CPU only", self.op),
        }
    }
}

/// A 2-D storage with any strides (e.g. a transposed view), as a [`Mat`] operand.
pub(crate) fn mat<'a, T: WithDType>(
    storage: &'a CpuStorage,
    layout: &Layout,
    op: &str,
) -> Result<Mat<'a, T>> {
    let [rs, cs] = layout.stride() else {
        bail!("{op}: expects a 2-D matrix, got {:?}", layout.shape());
    };
    Ok(Mat {
        data: &T::cpu_storage_as_slice(storage)?[layout.start_offset()..],
        rs: *rs,
        cs: *cs,
    })
}

/// Minimum elements per rayon task: below this, splitting costs more than it saves.
const MIN_ELEMS_PER_TASK: usize = 1 << 14;

/// Runs `f(row_index, row)` over the rows of length `row` of `out`, in parallel when large.
pub(crate) fn for_rows<T: Send>(out: &mut [T], row: usize, f: impl Fn(usize, &mut [T]) + Sync) {
    if row == 0 {
        return;
    }
    let min_rows = MIN_ELEMS_PER_TASK.div_ceil(row).max(1);
    out.par_chunks_mut(row)
        .enumerate()
        .with_min_len(min_rows)
        .for_each(|(i, r)| f(i, r));
}

/// Runs `f(row_index, row_a, row_b)` over paired rows of two outputs, in parallel when large.
pub(crate) fn for_rows2<T: Send>(
    a: &mut [T],
    b: &mut [T],
    row: usize,
    f: impl Fn(usize, &mut [T], &mut [T]) + Sync,
) {
    if row == 0 {
        return;
    }
    let min_rows = MIN_ELEMS_PER_TASK.div_ceil(row).max(1);
    a.par_chunks_mut(row)
        .zip(b.par_chunks_mut(row))
        .enumerate()
        .with_min_len(min_rows)
        .for_each(|(i, (ra, rb))| f(i, ra, rb));
}

/// Sum over rows of `f(row_index)` (each a vector of length `n`), in parallel when large.
pub(crate) fn sum_rows<T: Real>(
    rows: usize,
    n: usize,
    f: impl Fn(usize, &mut [T]) + Sync,
) -> Vec<T> {
    let min_rows = MIN_ELEMS_PER_TASK.div_ceil(n.max(1)).max(1);
    (0..rows)
        .into_par_iter()
        .with_min_len(min_rows)
        .fold(
            || vec![T::zero(); n],
            |mut acc, r| {
                f(r, &mut acc);
                acc
            },
        )
        .reduce(
            || vec![T::zero(); n],
            |mut a, b| {
                a.iter_mut().zip(&b).for_each(|(x, y)| *x += *y);
                a
            },
        )
}

/// `x · y` with independent partial sums (so the loop vectorises; f32 rounding stays small).
#[inline]
pub(crate) fn dot<T: Real>(x: &[T], y: &[T]) -> T {
    const L: usize = 8;
    let mut acc = [T::zero(); L];
    let mut xc = x.chunks_exact(L);
    let mut yc = y.chunks_exact(L);
    for (a, b) in (&mut xc).zip(&mut yc) {
        for l in 0..L {
            acc[l] += a[l] * b[l];
        }
    }
    let mut s = T::zero();
    for (a, b) in xc.remainder().iter().zip(yc.remainder()) {
        s += *a * *b;
    }
    acc.iter().fold(s, |s, a| s + *a)
}

/// A matrix operand of [`matmul`]: its elements and the strides of its rows and columns.
pub(crate) struct Mat<'a, T> {
    pub data: &'a [T],
    pub rs: usize,
    pub cs: usize,
}

impl<T> Clone for Mat<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Mat<'_, T> {}

impl<T> Mat<'_, T> {
    /// The transposed operand (no copy: the strides swap).
    pub(crate) fn t(self) -> Self {
        Mat {
            data: self.data,
            rs: self.cs,
            cs: self.rs,
        }
    }

    /// A row-major contiguous matrix with rows of length `cols`.
    pub(crate) fn rows(data: &[T], cols: usize) -> Mat<'_, T> {
        Mat {
            data,
            rs: cols,
            cs: 1,
        }
    }

    /// Whether `rows` rows of `cols` contiguous elements (row stride `rs`) stay inside `data`.
    pub(crate) fn fits_rows(&self, rows: usize, cols: usize) -> bool {
        self.cs == 1 && self.fits(rows, cols)
    }

    /// Whether a `rows × cols` matrix with these strides stays inside `data`.
    fn fits(&self, rows: usize, cols: usize) -> bool {
        rows == 0 || cols == 0 || (rows - 1) * self.rs + (cols - 1) * self.cs < self.data.len()
    }
}

impl Mat<'_, half::bf16> {
    /// The `rows × cols` matrix widened to row-major contiguous f32.
    pub(crate) fn to_f32_rows(self, rows: usize, cols: usize) -> Result<Vec<f32>> {
        if !self.fits(rows, cols) {
            bail!("bf16 matrix: {rows}×{cols} does not fit its storage");
        }
        let mut out = Vec::with_capacity(rows * cols);
        for r in 0..rows {
            for c in 0..cols {
                out.push(self.data[r * self.rs + c * self.cs].to_f32());
            }
        }
        Ok(out)
    }
}

/// `dst[m×n] = lhs[m×k] · rhs[k×n]` (row-major `dst`), with gemm's runtime-dispatched SIMD
/// kernels and candle's thread count.
pub(crate) fn matmul<T: Real>(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [T],
    lhs: Mat<'_, T>,
    rhs: Mat<'_, T>,
) -> Result<()> {
    if dst.len() < m * n || !lhs.fits(m, k) || !rhs.fits(k, n) {
        bail!("matmul: operand sizes do not match m={m} n={n} k={k}");
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        dst[..m * n].fill(T::zero());
        return Ok(());
    }
    let threads = candle_core::utils::get_num_threads();
    if T::small_m_matmul(m, n, k, dst, lhs, rhs, threads) {
        return Ok(());
    }
    let parallelism = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: every pointer/stride pair was checked above to stay inside its slice, `dst` is
    // an exclusive borrow, and `read_dst = false` means its old contents are never read.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            false,
            lhs.data.as_ptr(),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr(),
            rhs.cs as isize,
            rhs.rs as isize,
            T::zero(),
            T::one(),
            false,
            false,
            false,
            parallelism,
        );
    }
    Ok(())
}
