//! CPU plumbing shared by the fused kernels: the element types they run in, contiguous slice
//! access to storages and tensors, row-parallel loops and a strided gemm.

use candle_core::{bail, CpuStorage, Layout, Result, Storage, StorageRef, Tensor, WithDType};
use rayon::prelude::*;

/// Element types the fused kernels run in: f32 (the fast path) and f64 (exact gradient checks).
pub(crate) trait Real:
    WithDType + num_traits::Float + Send + Sync + std::iter::Sum + std::ops::AddAssign
{
}
impl Real for f32 {}
impl Real for f64 {}

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
        Mat { data, rs: cols, cs: 1 }
    }

    /// Whether a `rows × cols` matrix with these strides stays inside `data`.
    fn fits(&self, rows: usize, cols: usize) -> bool {
        rows == 0
            || cols == 0
            || (rows - 1) * self.rs + (cols - 1) * self.cs < self.data.len()
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
