//! f32 `x · wᵀ` for few rows (decode steps: one row per sequence in the batch).
//!
//! Decoding is memory-bound: every step reads each weight once. gemm packs the whole weight
//! matrix into its own layout on every call, which for a handful of rows costs several times
//! the read itself (77 % of a batch-8 decode step was spent there, BENCHMARKS.md). Here each
//! pair of weight rows is streamed once from memory and dotted with every input row while the
//! rows sit in L1, with AVX-512 or AVX2+FMA kernels chosen at run time and a portable
//! fallback. Weights may be f32 or bf16 (`model.dtype: bf16`): bf16 rows are widened to f32 in
//! registers, so a decode step reads half the bytes and computes in f32.

use rayon::prelude::*;

/// Largest row count that takes this path.
pub(crate) const MAX_M: usize = 16;

/// Weight rows per parallel task: large enough to amortise scheduling, small enough to split
/// a 576-row projection across threads.
const ROWS_PER_TASK: usize = 64;

/// Row-major rows: row `i` starts at `data[i · stride]`.
#[derive(Clone, Copy)]
pub(crate) struct Rows<'a, T = f32> {
    pub data: &'a [T],
    pub stride: usize,
}

/// A weight element type with a kernel: f32, or bf16 widened to f32 as it is loaded.
pub(crate) trait Weight: Copy + Send + Sync {
    /// `out[jj·m + i] = x_i · w_jj` for `jj < rows` (see [`kernel`]).
    #[allow(clippy::too_many_arguments)]
    fn kernel(
        m: usize,
        k: usize,
        x: &[f32],
        xs: usize,
        w: &[Self],
        ws: usize,
        rows: usize,
        out: &mut [f32],
    );
}

impl Weight for f32 {
    fn kernel(
        m: usize,
        k: usize,
        x: &[f32],
        xs: usize,
        w: &[f32],
        ws: usize,
        rows: usize,
        out: &mut [f32],
    ) {
        kernel(m, k, x, xs, w, ws, rows, out)
    }
}

impl Weight for half::bf16 {
    fn kernel(
        m: usize,
        k: usize,
        x: &[f32],
        xs: usize,
        w: &[half::bf16],
        ws: usize,
        rows: usize,
        out: &mut [f32],
    ) {
        kernel_bf16(m, k, x, xs, w, ws, rows, out)
    }
}

/// `dst[i·n + j] = Σ_k x_i[k] · w_j[k]` for `i < m`, `j < n`. The caller checked that the
/// operands hold `m` rows of `x` and `n` rows of `w`, each `k` long, and `m ≤ MAX_M`.
pub(crate) fn matmul<W: Weight>(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    x: Rows<'_>,
    w: Rows<'_, W>,
    threads: usize,
) {
    let (xs, ws) = (x.stride, w.stride);
    let (x, w) = (x.data, w.data);
    // Column-major scratch (`n × m`) so that parallel tasks own contiguous chunks.
    let mut tmp = vec![0f32; n * m];
    let task = |(c, chunk): (usize, &mut [f32])| {
        let j0 = c * ROWS_PER_TASK;
        let rows = chunk.len() / m;
        W::kernel(m, k, x, xs, &w[j0 * ws..], ws, rows, chunk);
    };
    if threads > 1 {
        tmp.par_chunks_mut(m * ROWS_PER_TASK)
            .enumerate()
            .for_each(task);
    } else {
        tmp.chunks_mut(m * ROWS_PER_TASK).enumerate().for_each(task);
    }
    for (j, col) in tmp.chunks_exact(m).enumerate() {
        for (i, v) in col.iter().enumerate() {
            dst[i * n + j] = *v;
        }
    }
}

/// `out[jj·m + i] = x_i · w_jj` for `jj < rows`, dispatched to the best SIMD available.
#[allow(clippy::too_many_arguments)]
fn kernel(
    m: usize,
    k: usize,
    x: &[f32],
    xs: usize,
    w: &[f32],
    ws: usize,
    rows: usize,
    out: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F (checked just above); bounds as in `portable`.
            unsafe { x86::avx512(m, k, x, xs, w.as_ptr(), ws, rows, out) };
            return;
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU supports AVX2 and FMA (checked just above).
            unsafe { x86::avx2(m, k, x, xs, w.as_ptr(), ws, rows, out) };
            return;
        }
    }
    portable(m, k, x, xs, w, ws, rows, out);
}

/// A weight element read as f32.
trait Widen: Copy {
    fn widen(self) -> f32;
}

impl Widen for f32 {
    fn widen(self) -> f32 {
        self
    }
}

impl Widen for half::bf16 {
    fn widen(self) -> f32 {
        self.to_f32()
    }
}

/// The reference kernel (any target): plain dot products the compiler may vectorise.
#[allow(clippy::too_many_arguments)]
fn portable<W: Widen>(
    m: usize,
    k: usize,
    x: &[f32],
    xs: usize,
    w: &[W],
    ws: usize,
    rows: usize,
    out: &mut [f32],
) {
    for jj in 0..rows {
        let wr = &w[jj * ws..jj * ws + k];
        for i in 0..m {
            let xr = &x[i * xs..i * xs + k];
            out[jj * m + i] = xr.iter().zip(wr).map(|(a, b)| a * b.widen()).sum();
        }
    }
}

/// [`kernel`] for bf16 weights.
#[allow(clippy::too_many_arguments)]
fn kernel_bf16(
    m: usize,
    k: usize,
    x: &[f32],
    xs: usize,
    w: &[half::bf16],
    ws: usize,
    rows: usize,
    out: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: AVX-512F checked just above; bounds as in `portable`.
            unsafe { x86::avx512_bf16(m, k, x, xs, w.as_ptr().cast(), ws, rows, out) };
            return;
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: AVX2 and FMA checked just above.
            unsafe { x86::avx2_bf16(m, k, x, xs, w.as_ptr().cast(), ws, rows, out) };
            return;
        }
    }
    portable(m, k, x, xs, w, ws, rows, out);
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// Writes one SIMD kernel: tiles of 2 weight rows × `MT` input rows held in registers
    /// (`MT` a constant so the accumulators stay in registers), `$lanes`-wide FMAs along k, a
    /// scalar tail for `k % $lanes`.
    macro_rules! simd_kernel {
        ($name:ident, $tile:ident, $feat:literal, $lanes:expr, $mt:expr, $vec:ty, $zero:ident,
         $load:ident, $fma:ident, $hsum:ident, $welem:ty, $wload:ident, $wscalar:ident) => {
            /// Dot products of `MT` rows of `x` (from `xp`, stride `xs`) with the weight rows at
            /// `w0` and `w1`.
            #[target_feature(enable = $feat)]
            unsafe fn $tile<const MT: usize>(
                k: usize,
                xp: *const f32,
                xs: usize,
                w0: *const $welem,
                w1: *const $welem,
            ) -> ([f32; MT], [f32; MT]) {
                let kv = k / $lanes * $lanes;
                let mut acc0: [$vec; MT] = [$zero(); MT];
                let mut acc1: [$vec; MT] = [$zero(); MT];
                let mut kk = 0;
                while kk < kv {
                    let a = $wload(w0.add(kk));
                    let b = $wload(w1.add(kk));
                    for t in 0..MT {
                        let v = $load(xp.add(t * xs + kk));
                        acc0[t] = $fma(v, a, acc0[t]);
                        acc1[t] = $fma(v, b, acc1[t]);
                    }
                    kk += $lanes;
                }
                let mut s0 = [0f32; MT];
                let mut s1 = [0f32; MT];
                for t in 0..MT {
                    let xr = xp.add(t * xs);
                    s0[t] = $hsum(acc0[t]);
                    s1[t] = $hsum(acc1[t]);
                    for q in kv..k {
                        s0[t] += *xr.add(q) * $wscalar(*w0.add(q));
                        s1[t] += *xr.add(q) * $wscalar(*w1.add(q));
                    }
                }
                (s0, s1)
            }

            #[target_feature(enable = $feat)]
            #[allow(clippy::too_many_arguments)]
            pub(super) unsafe fn $name(
                m: usize,
                k: usize,
                x: &[f32],
                xs: usize,
                wp: *const $welem,
                ws: usize,
                rows: usize,
                out: &mut [f32],
            ) {
                let xp = x.as_ptr();
                let mut jj = 0;
                while jj < rows {
                    let pair = (rows - jj).min(2);
                    let w0 = wp.add(jj * ws);
                    let w1 = if pair == 2 { wp.add((jj + 1) * ws) } else { w0 };
                    let mut put = |i: usize, s0: f32, s1: f32| {
                        out[jj * m + i] = s0;
                        if pair == 2 {
                            out[(jj + 1) * m + i] = s1;
                        }
                    };
                    let mut i0 = 0;
                    while i0 + $mt <= m {
                        let (s0, s1) = $tile::<$mt>(k, xp.add(i0 * xs), xs, w0, w1);
                        for t in 0..$mt {
                            put(i0 + t, s0[t], s1[t]);
                        }
                        i0 += $mt;
                    }
                    while i0 < m {
                        let (s0, s1) = $tile::<1>(k, xp.add(i0 * xs), xs, w0, w1);
                        put(i0, s0[0], s1[0]);
                        i0 += 1;
                    }
                    jj += pair;
                }
            }
        };
    }

    #[inline(always)]
    unsafe fn hsum256(v: __m256) -> f32 {
        let lo = _mm256_castps256_ps128(v);
        let hi = _mm256_extractf128_ps(v, 1);
        let s = _mm_add_ps(lo, hi);
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }

    #[inline(always)]
    unsafe fn hsum512(v: __m512) -> f32 {
        _mm512_reduce_add_ps(v)
    }

    #[inline(always)]
    unsafe fn load256(p: *const f32) -> __m256 {
        _mm256_loadu_ps(p)
    }

    #[inline(always)]
    unsafe fn load512(p: *const f32) -> __m512 {
        _mm512_loadu_ps(p)
    }

    /// 8 bf16 values (raw bits) widened to f32: bf16 is the top half of an f32.
    #[inline(always)]
    unsafe fn load256_bf16(p: *const u16) -> __m256 {
        let h = _mm_loadu_si128(p.cast());
        _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16))
    }

    /// 16 bf16 values widened to f32.
    #[inline(always)]
    unsafe fn load512_bf16(p: *const u16) -> __m512 {
        let h = _mm256_loadu_si256(p.cast());
        _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16))
    }

    #[inline(always)]
    fn f32_of(v: f32) -> f32 {
        v
    }

    #[inline(always)]
    fn f32_of_bf16(v: u16) -> f32 {
        f32::from_bits(u32::from(v) << 16)
    }

    // 2 × 4 accumulators + 3 operands fit AVX2's 16 registers; AVX-512 has 32, so 2 × 8.
    simd_kernel!(
        avx2,
        tile_avx2,
        "avx2,fma",
        8,
        4,
        __m256,
        _mm256_setzero_ps,
        load256,
        _mm256_fmadd_ps,
        hsum256,
        f32,
        load256,
        f32_of
    );
    simd_kernel!(
        avx512,
        tile_avx512,
        "avx512f",
        16,
        8,
        __m512,
        _mm512_setzero_ps,
        load512,
        _mm512_fmadd_ps,
        hsum512,
        f32,
        load512,
        f32_of
    );
    simd_kernel!(
        avx2_bf16,
        tile_avx2_bf16,
        "avx2,fma",
        8,
        4,
        __m256,
        _mm256_setzero_ps,
        load256,
        _mm256_fmadd_ps,
        hsum256,
        u16,
        load256_bf16,
        f32_of_bf16
    );
    simd_kernel!(
        avx512_bf16,
        tile_avx512_bf16,
        "avx512f",
        16,
        8,
        __m512,
        _mm512_setzero_ps,
        load512,
        _mm512_fmadd_ps,
        hsum512,
        u16,
        load512_bf16,
        f32_of_bf16
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| (((i as u32).wrapping_mul(2_654_435_761) ^ seed) % 1000) as f32 / 500.0 - 1.0)
            .collect()
    }

    #[test]
    fn matches_the_portable_kernel_for_ragged_shapes() {
        for &(m, n, k) in &[
            (1, 5, 3),
            (3, 130, 37),
            (8, 129, 576),
            (16, 64, 100),
            (5, 2, 17),
        ] {
            let x = data(m * (k + 3), 1);
            let w = data(n * (k + 1), 2);
            let mut got = vec![0f32; m * n];
            matmul(
                m,
                n,
                k,
                &mut got,
                Rows {
                    data: &x,
                    stride: k + 3,
                },
                Rows {
                    data: &w,
                    stride: k + 1,
                },
                2,
            );
            let mut want_cm = vec![0f32; n * m];
            portable(m, k, &x, k + 3, &w, k + 1, n, &mut want_cm);
            for i in 0..m {
                for j in 0..n {
                    let (g, e) = (got[i * n + j], want_cm[j * m + i]);
                    assert!(
                        (g - e).abs() <= 1e-4 * (1.0 + e.abs()),
                        "{m}x{n}x{k} [{i},{j}]: {g} vs {e}"
                    );
                }
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn every_simd_kernel_matches_the_portable_one() {
        let (m, k, rows) = (11, 203, 7);
        let x = data(m * k, 3);
        let w = data(rows * k, 4);
        let mut want = vec![0f32; rows * m];
        portable(m, k, &x, k, &w, k, rows, &mut want);
        let check = |got: &[f32]| {
            for (g, e) in got.iter().zip(&want) {
                assert!((g - e).abs() <= 1e-4 * (1.0 + e.abs()), "{g} vs {e}");
            }
        };
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            let mut got = vec![0f32; rows * m];
            // SAFETY: features checked above; operands sized as the kernel requires.
            unsafe { x86::avx2(m, k, &x, k, w.as_ptr(), k, rows, &mut got) };
            check(&got);
        }
        if std::arch::is_x86_feature_detected!("avx512f") {
            let mut got = vec![0f32; rows * m];
            // SAFETY: as above.
            unsafe { x86::avx512(m, k, &x, k, w.as_ptr(), k, rows, &mut got) };
            check(&got);
        }
    }

    #[test]
    fn bf16_weights_match_f32_weights_rounded_to_bf16() {
        let (m, n, k) = (9, 37, 203);
        let x = data(m * k, 5);
        let wf = data(n * k, 6);
        let wb: Vec<half::bf16> = wf.iter().map(|v| half::bf16::from_f32(*v)).collect();
        let wr: Vec<f32> = wb.iter().map(|v| v.to_f32()).collect();
        let mut want = vec![0f32; m * n];
        let mut got = vec![0f32; m * n];
        let xr = Rows {
            data: &x,
            stride: k,
        };
        matmul(
            m,
            n,
            k,
            &mut want,
            xr,
            Rows {
                data: &wr,
                stride: k,
            },
            2,
        );
        matmul(
            m,
            n,
            k,
            &mut got,
            xr,
            Rows {
                data: &wb,
                stride: k,
            },
            2,
        );
        for (g, e) in got.iter().zip(&want) {
            assert!((g - e).abs() <= 1e-5 * (1.0 + e.abs()), "{g} vs {e}");
        }
        // Each SIMD path against the portable one.
        let mut port = vec![0f32; n * m];
        portable(m, k, &x, k, &wb, k, n, &mut port);
        #[cfg(target_arch = "x86_64")]
        {
            let wp: *const u16 = wb.as_ptr().cast();
            let check = |got: &[f32]| {
                for (g, e) in got.iter().zip(&port) {
                    assert!((g - e).abs() <= 1e-4 * (1.0 + e.abs()), "{g} vs {e}");
                }
            };
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                let mut g = vec![0f32; n * m];
                // SAFETY: features checked above; operands sized as the kernel requires.
                unsafe { x86::avx2_bf16(m, k, &x, k, wp, k, n, &mut g) };
                check(&g);
            }
            if std::arch::is_x86_feature_detected!("avx512f") {
                let mut g = vec![0f32; n * m];
                // SAFETY: as above.
                unsafe { x86::avx512_bf16(m, k, &x, k, wp, k, n, &mut g) };
                check(&g);
            }
        }
    }
}
