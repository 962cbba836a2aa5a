//! Fused rotary embedding, HF (`rotate_half`, non-interleaved) layout.
//!
//! `x: [b, h, t, d]`, `cos`/`sin`: `[t, d/2]` (same positions for every batch row) or
//! `[b, t, d/2]` (per-row positions). With `x = [x1, x2]`:
//! `y = [x1·c − x2·s, x2·c + x1·s]`. The map is a rotation, so the backward is the rotation
//! by `−s`: `dx = [dy1·c + dy2·s, dy2·c − dy1·s]`. `cos`/`sin` are constants (no gradient).

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor};

use super::cpu::{for_rows, slice, Real, View};

/// The fused op; inputs must be contiguous and of one dtype (f32 or f64).
pub(crate) struct Rope;

const NAME: &str = "fused-rope";

/// Geometry: `(b, h, t, d)` and whether `cos`/`sin` carry a batch dim.
struct Geom {
    h: usize,
    t: usize,
    d: usize,
    batched: bool,
}

fn geom(x: &Shape, cos: &Shape, sin: &Shape) -> Result<Geom> {
    let (b, h, t, d) = x.dims4()?;
    if d % 2 != 0 {
        bail!("{NAME}: head dim {d} is odd");
    }
    if cos != sin {
        bail!("{NAME}: cos {cos:?} and sin {sin:?} differ in shape");
    }
    let batched = match cos.dims() {
        [ct, ch] if *ct == t && *ch == d / 2 => false,
        [cb, ct, ch] if *cb == b && *ct == t && *ch == d / 2 => true,
        _ => bail!("{NAME}: cos/sin {cos:?} do not fit x {x:?} (want [t, d/2] or [b, t, d/2])"),
    };
    Ok(Geom { h, t, d, batched })
}

/// Rotates every `d`-row of `x` by the angle of its position; `sign = -1` rotates back.
fn rotate<T: Real>(x: &[T], cos: &[T], sin: &[T], g: &Geom, sign: T) -> Vec<T> {
    let half = g.d / 2;
    let mut y = vec![T::zero(); x.len()];
    for_rows(&mut y, g.d, |r, yr| {
        let pos = r % g.t;
        let c_row = if g.batched {
            (r / (g.h * g.t)) * g.t + pos
        } else {
            pos
        };
        let c = &cos[c_row * half..(c_row + 1) * half];
        let s = &sin[c_row * half..(c_row + 1) * half];
        let (x1, x2) = x[r * g.d..(r + 1) * g.d].split_at(half);
        let (y1, y2) = yr.split_at_mut(half);
        for i in 0..half {
            let si = sign * s[i];
            y1[i] = x1[i] * c[i] - x2[i] * si;
            y2[i] = x2[i] * c[i] + x1[i] * si;
        }
    });
    y
}

impl CustomOp3 for Rope {
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
        let g = geom(l1.shape(), l2.shape(), l3.shape())?;
        macro_rules! run {
            ($t:ty) => {
                rotate::<$t>(
                    slice(s1, l1, NAME)?,
                    slice(s2, l2, NAME)?,
                    slice(s3, l3, NAME)?,
                    &g,
                    1.0,
                )
            };
        }
        let y = match s1.dtype() {
            DType::F32 => CpuStorage::F32(run!(f32)),
            DType::F64 => CpuStorage::F64(run!(f64)),
            dt => bail!("{NAME}: unsupported dtype {dt:?}"),
        };
        Ok((y, l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        if !x.track_op() {
            return Ok((None, None, None));
        }
        let g = geom(x.shape(), cos.shape(), sin.shape())?;
        let dy = dy.contiguous()?;
        let (vc, vs, vdy) = (
            View::of(cos, NAME),
            View::of(sin, NAME),
            View::of(&dy, NAME),
        );
        let dx = match x.dtype() {
            DType::F32 => Tensor::from_vec(
                rotate::<f32>(vdy.slice()?, vc.slice()?, vs.slice()?, &g, -1.0),
                x.shape(),
                x.device(),
            )?,
            DType::F64 => Tensor::from_vec(
                rotate::<f64>(vdy.slice()?, vc.slice()?, vs.slice()?, &g, -1.0),
                x.shape(),
                x.device(),
            )?,
            dt => bail!("{NAME}: unsupported dtype {dt:?}"),
        };
        Ok((Some(dx), None, None))
    }
}

#[cfg(test)]
mod tests {
    use super::super::check::{check_op, rand};
    use super::super::{reference, rope};
    use candle_core::{DType, Device, Tensor};

    /// HF tables for positions `start..start + t` (or per batch row), f64.
    fn table(starts: &[usize], t: usize, d: usize) -> (Tensor, Tensor) {
        let half = d / 2;
        let mut c = Vec::new();
        let mut s = Vec::new();
        for &st in starts {
            for p in st..st + t {
                for i in 0..half {
                    let a = p as f64 / 10000f64.powf(2.0 * i as f64 / d as f64);
                    c.push(a.cos());
                    s.push(a.sin());
                }
            }
        }
        let shape: Vec<usize> = if starts.len() == 1 {
            vec![t, half]
        } else {
            vec![starts.len(), t, half]
        };
        let dev = &Device::Cpu;
        (
            Tensor::from_vec(c, shape.as_slice(), dev).unwrap(),
            Tensor::from_vec(s, shape.as_slice(), dev).unwrap(),
        )
    }

    #[test]
    fn rope_matches_reference_and_finite_differences() {
        // shared positions with an offset (decode at position 7), and per-row positions.
        for (starts, seed) in [(vec![7usize], 40u64), (vec![0], 41), (vec![3, 11], 42)] {
            let (b, h, t, d) = (2, 3, 5, 8);
            let x = rand(seed, &[b, h, t, d], 1.0, DType::F64);
            let (cos, sin) = table(&starts, t, d);
            check_op(
                "rope",
                &|t| rope(&t[0], &t[1], &t[2]),
                &|t| reference::rope(&t[0], &t[1], &t[2]),
                &[x, cos, sin],
                &[true, false, false],
            );
        }
    }

    #[test]
    fn rope_rejects_mismatched_tables() {
        let x = rand(43, &[1, 1, 3, 8], 1.0, DType::F32);
        let (cos, sin) = table(&[0], 4, 8);
        let (cos, sin) = (
            cos.to_dtype(DType::F32).unwrap(),
            sin.to_dtype(DType::F32).unwrap(),
        );
        assert!(rope(&x, &cos, &sin).is_err());
    }
}
