//! Test helpers: seeded tensors, closeness checks, autograd and finite-difference gradients.

use candle_core::{DType, Device, Result, Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Uniform values in `[-scale, scale]`, reproducible from `seed`.
pub fn rand(seed: u64, shape: &[usize], scale: f64, dt: DType) -> Tensor {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n)
        .map(|_| (rng.random::<f64>() * 2.0 - 1.0) * scale)
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu)
        .and_then(|t| t.to_dtype(dt))
        .expect("tensor")
}

fn values(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64)
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1::<f64>())
        .expect("values")
}

/// Asserts `|a − b| ≤ atol + rtol·|b|` elementwise (and equal shapes).
pub fn assert_close(a: &Tensor, b: &Tensor, rtol: f64, atol: f64, what: &str) {
    assert_eq!(a.dims(), b.dims(), "{what}: shapes differ");
    let (va, vb) = (values(a), values(b));
    let mut worst = (0.0f64, 0usize);
    for (i, (x, y)) in va.iter().zip(&vb).enumerate() {
        assert!(
            x.is_finite() == y.is_finite(),
            "{what}: non-finite at {i}: {x} vs {y}"
        );
        let excess = (x - y).abs() - (atol + rtol * y.abs());
        if excess > worst.0 {
            worst = (excess, i);
        }
    }
    let i = worst.1;
    assert!(
        worst.0 <= 0.0,
        "{what}: element {i}: {} vs {} (rtol {rtol}, atol {atol})",
        va[i],
        vb[i]
    );
}

/// A graph under test: maps the inputs to one output tensor.
pub type Graph<'a> = &'a dyn Fn(&[Tensor]) -> Result<Tensor>;

/// The loss the gradients are taken of: `Σ f(inputs) ⊙ R` with a fixed random `R`, so every
/// output element gets a different upstream gradient.
fn loss(f: Graph, inputs: &[Tensor]) -> Result<Tensor> {
    let y = f(inputs)?;
    let r = rand(99, y.dims(), 1.0, y.dtype());
    (y * r)?.sum_all()
}

/// Autograd gradients of the loss for the inputs marked `trainable` (`None` for the others).
pub fn grads(f: Graph, inputs: &[Tensor], trainable: &[bool]) -> Vec<Option<Tensor>> {
    let vars: Vec<Option<Var>> = inputs
        .iter()
        .zip(trainable)
        .map(|(t, &tr)| tr.then(|| Var::from_tensor(t).expect("var")))
        .collect();
    let ts: Vec<Tensor> = inputs
        .iter()
        .zip(&vars)
        .map(|(t, v)| {
            v.as_ref()
                .map_or_else(|| t.clone(), |v| v.as_tensor().clone())
        })
        .collect();
    let store = loss(f, &ts).and_then(|l| l.backward()).expect("backward");
    vars.iter()
        .map(|v| {
            v.as_ref()
                .map(|v| store.get(v.as_tensor()).expect("missing gradient").clone())
        })
        .collect()
}

/// Central finite differences of the loss w.r.t. `inputs[idx]` (which must be f64).
pub fn fd_grad(f: Graph, inputs: &[Tensor], idx: usize, eps: f64) -> Tensor {
    let x = inputs[idx].clone();
    let base = values(&x);
    let at = |v: Vec<f64>| -> f64 {
        let mut ts = inputs.to_vec();
        ts[idx] = Tensor::from_vec(v, x.shape(), &Device::Cpu).expect("t");
        loss(f, &ts)
            .and_then(|l| l.to_scalar::<f64>())
            .expect("loss")
    };
    let g: Vec<f64> = (0..base.len())
        .map(|i| {
            let (mut p, mut m) = (base.clone(), base.clone());
            p[i] += eps;
            m[i] -= eps;
            (at(p) - at(m)) / (2.0 * eps)
        })
        .collect();
    Tensor::from_vec(g, x.shape(), &Device::Cpu).expect("t")
}

/// Checks `fused` against `reference`: the f32 forward (rtol 1e-5), and in f64 the gradients
/// of every trainable input against the reference's autograd and against finite differences.
pub fn check_op(
    name: &str,
    fused: Graph,
    reference: Graph,
    inputs64: &[Tensor],
    trainable: &[bool],
) {
    let inputs32: Vec<Tensor> = inputs64
        .iter()
        .map(|t| {
            if t.dtype() == DType::F64 {
                t.to_dtype(DType::F32).expect("f32")
            } else {
                t.clone()
            }
        })
        .collect();
    let (y, yr) = (
        fused(&inputs32).expect("fused"),
        reference(&inputs32).expect("reference"),
    );
    assert_eq!(y.dtype(), yr.dtype(), "{name}: dtype");
    assert_close(&y, &yr, 1e-5, 1e-6, &format!("{name} forward f32"));
    let (y, yr) = (
        fused(inputs64).expect("fused"),
        reference(inputs64).expect("reference"),
    );
    assert_close(&y, &yr, 1e-12, 1e-12, &format!("{name} forward f64"));

    let g = grads(fused, inputs64, trainable);
    let gr = grads(reference, inputs64, trainable);
    for (i, (a, b)) in g.iter().zip(&gr).enumerate() {
        let (Some(a), Some(b)) = (a, b) else { continue };
        assert_close(a, b, 1e-9, 1e-11, &format!("{name} grad {i} vs reference"));
        let fd = fd_grad(fused, inputs64, i, 1e-6);
        assert_close(
            a,
            &fd,
            1e-6,
            1e-7,
            &format!("{name} grad {i} vs finite differences"),
        );
    }
    // f32 gradients agree with the reference too.
    let g = grads(fused, &inputs32, trainable);
    let gr = grads(reference, &inputs32, trainable);
    for (i, (a, b)) in g.iter().zip(&gr).enumerate() {
        if let (Some(a), Some(b)) = (a, b) {
            assert_close(
                a,
                b,
                1e-4,
                1e-5,
                &format!("{name} grad {i} f32 vs reference"),
            );
        }
    }
}
