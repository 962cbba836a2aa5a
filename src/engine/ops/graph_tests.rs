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
