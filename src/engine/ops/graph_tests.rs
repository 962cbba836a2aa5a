//! A tiny composed graph (one LoRA'd transformer block + LM head): the fused ops give the same
//! gradients as the reference graph, and both match finite differences.

use candle_core::{DType, Device, Result, Tensor, D};

use super::check::{check_op, rand};
use super::{
    causal_softmax, frozen_linear, reference, rms_norm, rope, swiglu, token_logprobs_chunked,
};

/// The ops a block is built from, so one body serves both the fused and the reference graph.
struct Ops {
    rms_norm: fn(&Tensor, &Tensor, f64) -> Result<Tensor>,
    linear: fn(&Tensor, &Tensor) -> Result<Tensor>,
    rope: fn(&Tensor, &Tensor, &Tensor) -> Result<Tensor>,
    softmax: fn(&Tensor, usize) -> Result<Tensor>,
    swiglu: fn(&Tensor, &Tensor) -> Result<Tensor>,
    logprobs: fn(&Tensor, &Tensor, &Tensor) -> Result<Tensor>,
}

const FUSED: Ops = Ops {
    rms_norm,
    linear: frozen_linear,
    rope,
    softmax: causal_softmax,
    swiglu,
    logprobs: |h, head, t| token_logprobs_chunked(h, head, t, 4),
};

const REFERENCE: Ops = Ops {
    rms_norm: reference::rms_norm,
    linear: reference::frozen_linear,
    rope: reference::rope,
    softmax: reference::causal_softmax,
    swiglu: reference::swiglu,
    logprobs: reference::token_logprobs,
};

const B: usize = 2;
const T: usize = 5;
const DM: usize = 8;
const HEADS: usize = 2;
const HD: usize = 4;
const FF: usize = 12;
const VOCAB: usize = 13;
const R: usize = 2;

/// `x·Wᵀ + (x·Aᵀ)·Bᵀ`: a frozen linear with a LoRA adapter (plain matmuls for A and B).
fn lora(ops: &Ops, x: &Tensor, w: &Tensor, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let base = (ops.linear)(x, w)?;
    let delta = x.broadcast_matmul(&a.t()?)?.broadcast_matmul(&b.t()?)?;
    base + delta
}

fn heads(x: &Tensor) -> Result<Tensor> {
    x.reshape((B, T, HEADS, HD))?.transpose(1, 2)?.contiguous()
}

/// inputs: x, norm, A_q, B_q, A_u, B_u (trainable), then Wq, Wk, Wv, Wo, Wg, Wu, Wd, head,
/// cos, sin, targets.
fn block(ops: &Ops, t: &[Tensor]) -> Result<Tensor> {
    let [x, norm, aq, bq, au, bu, wq, wk, wv, wo, wg, wu, wd, head, cos, sin, targets] = t else {
        candle_core::bail!("wrong number of inputs");
    };
    let h = (ops.rms_norm)(x, norm, 1e-6)?;
    let q = (ops.rope)(&heads(&lora(ops, &h, wq, aq, bq)?)?, cos, sin)?;
    let k = (ops.rope)(&heads(&(ops.linear)(&h, wk)?)?, cos, sin)?;
    let v = heads(&(ops.linear)(&h, wv)?)?;
    let scores = (q.matmul(&k.t()?)? / (HD as f64).sqrt())?;
    let att = (ops.softmax)(&scores, 0)?.matmul(&v)?;
    let att = att.transpose(1, 2)?.reshape((B, T, DM))?;
    let o = ((ops.linear)(&att, wo)? + x)?;
    let z = (ops.swiglu)(&(ops.linear)(&o, wg)?, &lora(ops, &o, wu, au, bu)?)?;
    let m = ((ops.linear)(&z, wd)? + &o)?;
    let m = (ops.rms_norm)(&m, norm, 1e-6)?;
    (ops.logprobs)(&m.reshape((B * T, DM))?, head, targets)
}

fn rope_table() -> (Tensor, Tensor) {
    let (mut c, mut s) = (Vec::new(), Vec::new());
    for p in 0..T {
        for i in 0..HD / 2 {
            let a = p as f64 / 10000f64.powf(2.0 * i as f64 / HD as f64);
            c.push(a.cos());
            s.push(a.sin());
        }
    }
    let dev = &Device::Cpu;
    (
        Tensor::from_vec(c, (T, HD / 2), dev).unwrap(),
        Tensor::from_vec(s, (T, HD / 2), dev).unwrap(),
    )
}

#[test]
fn lora_block_gradients_match_reference_and_finite_differences() {
    let f = DType::F64;
    let (cos, sin) = rope_table();
    let targets: Vec<u32> = (0..(B * T) as u32)
        .map(|i| (i * 5 + 1) % VOCAB as u32)
        .collect();
    let inputs = vec![
        rand(1, &[B, T, DM], 1.0, f),
        (rand(2, &[DM], 0.3, f) + 1.0).unwrap(),
        rand(3, &[R, DM], 0.5, f),
        rand(4, &[DM, R], 0.5, f),
        rand(5, &[R, DM], 0.5, f),
        rand(6, &[FF, R], 0.5, f),
        rand(7, &[DM, DM], 0.5, f),
        rand(8, &[DM, DM], 0.5, f),
        rand(9, &[DM, DM], 0.5, f),
        rand(10, &[DM, DM], 0.5, f),
        rand(11, &[FF, DM], 0.5, f),
        rand(12, &[FF, DM], 0.5, f),
        rand(13, &[DM, FF], 0.5, f),
        rand(14, &[VOCAB, DM], 1.0, f),
        cos,
        sin,
        Tensor::from_vec(targets, B * T, &Device::Cpu).unwrap(),
    ];
    let mut trainable = vec![true; 6];
    trainable.resize(inputs.len(), false);
    check_op(
        "lora block",
        &|t| block(&FUSED, t),
        &|t| block(&REFERENCE, t),
        &inputs,
        &trainable,
    );
    // the block's output really depends on every op (not a degenerate graph)
    let y = block(&FUSED, &inputs).unwrap();
    let spread = (y.max(D::Minus1).unwrap() - y.min(D::Minus1).unwrap()).unwrap();
    assert!(spread.to_scalar::<f64>().unwrap() > 0.1);
}

/// `Σ w ⊙ t` as a scalar.
fn weighted(t: &Tensor, w: &Tensor) -> Result<Tensor> {
    (t * w)?.sum_all()
}

/// The vendored candle-core stores a node's first gradient contribution as is instead of adding
/// it to zeros (vendor/README.md). On a graph where nodes get several contributions (an add of a
/// tensor to itself, sub and neg sites, broadcast and reduce sites whose contribution has zero
/// strides, transposed and narrowed views, matmul) the gradients equal the hand-derived ones,
/// and every stored gradient is contiguous (the fused ops' backward needs that).
#[test]
fn gradient_accumulation_matches_hand_derived_gradients() -> Result<()> {
    use candle_core::Var;
    let f = DType::F64;
    let x = Var::from_tensor(&rand(20, &[3, 4], 1.0, f))?;
    let b = Var::from_tensor(&rand(21, &[4], 1.0, f))?;
    let c = Var::from_tensor(&rand(22, &[4, 3], 1.0, f))?;
    // used only through a reduction (first contribution has zero strides) or a transpose
    let s = Var::from_tensor(&rand(23, &[2, 3], 1.0, f))?;
    let u = Var::from_tensor(&rand(24, &[3, 2], 1.0, f))?;
    let w: Vec<Tensor> = (0..4).map(|i| rand(30 + i, &[3, 4], 1.0, f)).collect();
    let (w3, w5, w6) = (
        rand(40, &[3, 3], 1.0, f),
        rand(41, &[2, 4], 1.0, f),
        rand(42, &[3, 1], 1.0, f),
    );
    let (w7, w8, w9) = (
        rand(43, &[4, 3], 1.0, f),
        rand(44, &[2, 1], 1.0, f),
        rand(45, &[2, 3], 1.0, f),
    );
    let (xt, bt, ct) = (x.as_tensor(), b.as_tensor(), c.as_tensor());
    let terms = [
        weighted(&((xt + xt)? - xt)?, &w[0])?,    // x + x, then sub: +1
        weighted(&xt.broadcast_sub(bt)?, &w[1])?, // sub with a broadcast rhs
        weighted(&xt.matmul(ct)?, &w3)?,          // matmul
        weighted(&xt.neg()?, &w[2])?,             // neg: first contribution negated
        weighted(&xt.narrow(0, 1, 2)?, &w5)?,     // narrow (zero padding + cat)
        weighted(&xt.sum_keepdim(1)?, &w6)?,      // reduce: broadcast back
        weighted(&xt.t()?, &w7)?,                 // transpose
        weighted(&s.as_tensor().sum_keepdim(1)?, &w8)?, // only contribution: stride 0
        weighted(&u.as_tensor().t()?, &w9)?,      // only contribution: transposed
        weighted(&(bt.unsqueeze(0)?.broadcast_as((3, 4))? - xt)?, &w[3])?, // sub, rhs side
    ];
    let mut loss = terms[0].clone();
    for t in &terms[1..] {
        loss = (loss + t)?;
    }
    let grads = loss.backward()?;

    // hand-derived
    let pad5 = Tensor::cat(&[&Tensor::zeros((1, 4), f, &Device::Cpu)?, &w5], 0)?;
    let want_x = (((((((&w[0] + &w[1])? + w3.matmul(&ct.t()?)?)? - &w[2])? + pad5)?
        + w6.broadcast_as((3, 4))?)?
        + w7.t()?)?
        - &w[3])?;
    let want_b = ((w[1].sum(0)?.neg()?) + w[3].sum(0)?)?;
    let want_c = xt.t()?.matmul(&w3)?;
    let want_s = w8.broadcast_as((2, 3))?;
    let want_u = w9.t()?;
    for (name, var, want) in [
        ("x", &x, want_x),
        ("b", &b, want_b),
        ("c", &c, want_c),
        ("s", &s, want_s),
        ("u", &u, want_u),
    ] {
        let got = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("no gradient for {name}"));
        assert!(got.is_contiguous(), "gradient of {name} is not contiguous");
        assert_eq!(got.dims(), var.dims(), "shape of the gradient of {name}");
        let err = (got - &want)?
            .abs()?
            .flatten_all()?
            .max(0)?
            .to_scalar::<f64>()?;
        assert!(err < 1e-12, "gradient of {name} off by {err}");
    }
    Ok(())
}
