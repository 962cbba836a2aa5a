//! Fused attention over a KV cache, for inference (sampling): scores, causal softmax and the
//! weighted sum of values in one pass, reading keys and values in place from the cache buffers.
//!
//! A decode step has one query per sequence and a few hundred keys: batched gemm calls on such
//! tiny matrices spend their time packing operands, and the composed path also copies the
//! cache's values to make them contiguous. Here each output row streams its group's keys and
//! values once. No backward: sampling never differentiates through attention (the training
//! forward runs without a cache and uses the composed ops).
//!
//! Shapes: `q: [b, h, t, hd]`, `k, v: [b, kvh, kv, hd]` (any strides with the last one 1, e.g. a
//! prefix view of a preallocated cache), `h = rep · kvh` (query head `i` reads KV head
//! `i / rep`). Query `p` sits at absolute position `kv − t + p` and sees keys `0..=kv − t + p`.
//! Output `[b, t, h · hd]` f32 (the layout `o_proj` reads, so no transpose copy follows).

use candle_core::{bail, CpuStorage, CustomOp3, Layout, Result, Shape};
use rayon::prelude::*;

use super::cpu::Real;

/// The fused op; all three inputs f32.
pub(crate) struct CachedAttention {
    /// Multiplies the scores (1/√hd).
    pub scale: f32,
}

const NAME: &str = "cached-attention";

/// One operand: its elements from the layout's start and the strides of its first three dims.
struct Operand<'a> {
    data: &'a [f32],
    strides: [usize; 3],
}

impl<'a> Operand<'a> {
    fn of(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<(Self, [usize; 4])> {
        let CpuStorage::F32(data) = s else {
            bail!("{NAME}: {what} must be f32");
        };
        let (Ok(dims), [s0, s1, s2, s3]) = (l.shape().dims4(), l.stride()) else {
            bail!("{NAME}: {what} must be 4-D, got {:?}", l.shape());
        };
        if *s3 != 1 && dims.3 > 1 {
            bail!("{NAME}: {what}'s last dimension must be contiguous");
        }
        let op = Operand {
            data: &data[l.start_offset()..],
            strides: [*s0, *s1, *s2],
        };
        Ok((op, [dims.0, dims.1, dims.2, dims.3]))
    }

    /// Row `[i, j, r, ..hd]`.
    #[inline(always)]
    fn row(&self, i: usize, j: usize, r: usize, hd: usize) -> &[f32] {
        let at = i * self.strides[0] + j * self.strides[1] + r * self.strides[2];
        &self.data[at..at + hd]
    }
}

/// The geometry of a call.
struct Geom {
    h: usize,
    t: usize,
    kv: usize,
    hd: usize,
    rep: usize,
}

impl CustomOp3 for CachedAttention {
    fn name(&self) -> &'static str {
        NAME
    }

    fn cpu_fwd(
        &self,
        qs: &CpuStorage,
        ql: &Layout,
        ks: &CpuStorage,
        kl: &Layout,
        vs: &CpuStorage,
        vl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (q, [b, h, t, hd]) = Operand::of(qs, ql, "q")?;
        let (k, kd) = Operand::of(ks, kl, "k")?;
        let (v, vd) = Operand::of(vs, vl, "v")?;
        let [kb, kvh, kv, khd] = kd;
        if kd != vd || kb != b || khd != hd || kvh == 0 || h % kvh != 0 || kv < t {
            bail!(
                "{NAME}: q {:?}, k {:?}, v {:?} do not fit",
                ql.shape(),
                kl.shape(),
                vl.shape()
            );
        }
        let g = Geom {
            h,
            t,
            kv,
            hd,
            rep: h / kvh,
        };
        let mut out = vec![0f32; b * t * h * hd];
        if hd > 0 {
            out.par_chunks_mut(hd).enumerate().for_each_init(
                || vec![0f32; kv],
                |scores, (row, y)| self.attend(&g, &q, &k, &v, row, scores, y),
            );
        }
        Ok((CpuStorage::F32(out), Shape::from((b, t, h * hd))))
    }
}

impl CachedAttention {
    /// Output row `row` (= `(bi · t + p) · h + head`) into `y`; `scores` has room for `kv`.
    #[allow(clippy::too_many_arguments)]
    fn attend(
        &self,
        g: &Geom,
        q: &Operand,
        k: &Operand,
        v: &Operand,
        row: usize,
        scores: &mut [f32],
        y: &mut [f32],
    ) {
        let (head, p, bi) = (row % g.h, (row / g.h) % g.t, row / (g.h * g.t));
        let kh = head / g.rep;
        let seen = g.kv - g.t + p + 1;
        let qr = q.row(bi, head, p, g.hd);
        let scores = &mut scores[..seen];
        for (j, s) in scores.iter_mut().enumerate() {
            *s = kernels::dot(qr, k.row(bi, kh, j, g.hd)) * self.scale;
        }
        let max = scores.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s));
        let inv = f32::exp_shift_sum(scores, max).recip();
        y.fill(0.0);
        for (j, &s) in scores.iter().enumerate() {
            kernels::axpy(s * inv, v.row(bi, kh, j, g.hd), y);
        }
    }
}

/// `dot` and `axpy` on short rows, compiled for AVX-512 / AVX2 and picked at run time.
mod kernels {
    const L: usize = 16;

    #[inline(always)]
    fn dot_body(x: &[f32], y: &[f32]) -> f32 {
        let mut acc = [0f32; L];
        let (xc, yc) = (x.chunks_exact(L), y.chunks_exact(L));
        let (xr, yr) = (xc.remainder(), yc.remainder());
        for (a, b) in xc.zip(yc) {
            for l in 0..L {
                acc[l] += a[l] * b[l];
            }
        }
        let tail: f32 = xr.iter().zip(yr).map(|(a, b)| a * b).sum();
        acc.iter().sum::<f32>() + tail
    }

    #[inline(always)]
    fn axpy_body(a: f32, x: &[f32], y: &mut [f32]) {
        for (y, x) in y.iter_mut().zip(x) {
            *y += a * x;
        }
    }

    #[cfg(target_arch = "x86_64")]
    mod simd {
        #[target_feature(enable = "avx512f,avx2,fma")]
        pub(super) fn dot512(x: &[f32], y: &[f32]) -> f32 {
            super::dot_body(x, y)
        }
        #[target_feature(enable = "avx2,fma")]
        pub(super) fn dot256(x: &[f32], y: &[f32]) -> f32 {
            super::dot_body(x, y)
        }
        #[target_feature(enable = "avx512f,avx2,fma")]
        pub(super) fn axpy512(a: f32, x: &[f32], y: &mut [f32]) {
            super::axpy_body(a, x, y)
        }
        #[target_feature(enable = "avx2,fma")]
        pub(super) fn axpy256(a: f32, x: &[f32], y: &mut [f32]) {
            super::axpy_body(a, x, y)
        }
    }

    /// The widest instruction set this CPU has, detected once.
    #[derive(Clone, Copy, PartialEq)]
    enum Isa {
        Avx512,
        Avx2,
        Portable,
    }

    fn isa() -> Isa {
        static ISA: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
        *ISA.get_or_init(|| {
            #[cfg(target_arch = "x86_64")]
            {
                if std::arch::is_x86_feature_detected!("avx512f") {
                    return Isa::Avx512;
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    return Isa::Avx2;
                }
            }
            Isa::Portable
        })
    }

    /// `x · y`.
    #[inline]
    pub(super) fn dot(x: &[f32], y: &[f32]) -> f32 {
        match isa() {
            // SAFETY: the CPU has the features the functions were compiled for.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => unsafe { simd::dot512(x, y) },
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => unsafe { simd::dot256(x, y) },
            _ => dot_body(x, y),
        }
    }

    /// `y += a · x`.
    #[inline]
    pub(super) fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
        match isa() {
            // SAFETY: as above.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => unsafe { simd::axpy512(a, x, y) },
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => unsafe { simd::axpy256(a, x, y) },
            _ => axpy_body(a, x, y),
        }
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor, D};

    use super::super::{cached_attention, reference};

    /// The composed path: repeat K/V per query head, matmul, causal softmax, matmul.
    fn composed(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64) -> Tensor {
        let (b, h, t, hd) = q.dims4().unwrap();
        let kvh = k.dim(1).unwrap();
        let kv = k.dim(2).unwrap();
        let rep = h / kvh;
        let expand = |x: &Tensor| {
            x.unsqueeze(2)
                .unwrap()
                .expand((b, kvh, rep, kv, hd))
                .unwrap()
                .reshape((b, h, kv, hd))
                .unwrap()
        };
        let (k, v) = (expand(k), expand(v));
        let s = (q.matmul(&k.t().unwrap()).unwrap() * scale).unwrap();
        let p = reference::causal_softmax(&s, kv - t).unwrap();
        p.matmul(&v)
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .reshape((b, t, h * hd))
            .unwrap()
    }

    #[test]
    fn matches_the_composed_ops_on_cache_views() {
        let dev = Device::Cpu;
        // (b, h, kvh, t, kv, capacity, hd): decode steps, a prefill, MHA and GQA, odd head dims.
        for (b, h, kvh, t, kv, cap, hd) in [
            (2, 6, 2, 1, 9, 16, 8),
            (3, 4, 4, 1, 1, 4, 16),
            (1, 9, 3, 5, 5, 12, 64),
            (2, 4, 2, 3, 7, 7, 20),
        ] {
            let q = Tensor::randn(0f32, 1.0, (b, h, t, hd), &dev).unwrap();
            let kc = Tensor::randn(0f32, 1.0, (b, kvh, cap, hd), &dev).unwrap();
            let vc = Tensor::randn(0f32, 1.0, (b, kvh, cap, hd), &dev).unwrap();
            // Prefix views of a larger buffer, as the KV cache hands them out.
            let (k, v) = (kc.narrow(2, 0, kv).unwrap(), vc.narrow(2, 0, kv).unwrap());
            let scale = 1.0 / (hd as f64).sqrt();
            let got = cached_attention(&q, &k, &v, scale).unwrap();
            let want = composed(
                &q,
                &k.contiguous().unwrap(),
                &v.contiguous().unwrap(),
                scale,
            );
            let diff = (got - want)
                .unwrap()
                .abs()
                .unwrap()
                .max(D::Minus1)
                .unwrap()
                .flatten_all()
                .unwrap()
                .max(0)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(
                diff < 1e-5,
                "({b},{h},{kvh},{t},{kv},{hd}): max diff {diff}"
            );
        }
    }

    #[test]
    fn shapes_that_do_not_fit_are_errors() {
        let dev = Device::Cpu;
        let q = Tensor::zeros((1, 5, 1, 8), candle_core::DType::F32, &dev).unwrap();
        let k = Tensor::zeros((1, 2, 3, 8), candle_core::DType::F32, &dev).unwrap();
        assert!(
            cached_attention(&q, &k, &k, 1.0).is_err(),
            "5 heads over 2 KV heads"
        );
        let q = Tensor::zeros((1, 2, 4, 8), candle_core::DType::F32, &dev).unwrap();
        assert!(
            cached_attention(&q, &k, &k, 1.0).is_err(),
            "4 queries, 3 keys"
        );
    }
}
