//! Fused ops (forward + backward) against their reference compositions of candle primitives,
//! at the shapes of a SmolLM2-135M training step (8 × 192 tokens, d = 576, 9 heads of 64,
//! intermediate 1536, vocab 49,152), and the f32 matmul rate (2048³).
//!
//! `cargo bench --bench ops -- --warm-up-time 1 --measurement-time 3`

use candle_core::{Device, Result, Tensor, Var};
use criterion::{BenchmarkId, Criterion, Throughput};
use runner::engine::{device, ops};

const B: usize = 8;
const T: usize = 192;
const DM: usize = 576;
const HEADS: usize = 9;
const HD: usize = 64;
const FF: usize = 1536;
const VOCAB: usize = 49_152;

fn randn(shape: &[usize]) -> Result<Tensor> {
    Tensor::randn(0f32, 1.0, shape, &Device::Cpu)
}

/// One forward + backward of `f` with `x` as the trained variable.
fn fwd_bwd(x: &Var, f: &dyn Fn(&Tensor) -> Result<Tensor>) -> Result<()> {
    let y = f(x.as_tensor())?;
    let g = y.sum_all()?.backward()?;
    match g.get(x.as_tensor()) {
        Some(_) => Ok(()),
        None => candle_core::bail!("no gradient reached the input"),
    }
}

/// Benchmarks `fused` and `reference` (forward + backward w.r.t. `x`) in one group.
fn pair(
    c: &mut Criterion,
    name: &str,
    x: &Var,
    fused: &dyn Fn(&Tensor) -> Result<Tensor>,
    reference: &dyn Fn(&Tensor) -> Result<Tensor>,
) {
    let mut g = c.benchmark_group(name);
    g.sample_size(10);
    g.bench_function("fused", |b| b.iter(|| fwd_bwd(x, fused).expect("fused")));
    g.bench_function("reference", |b| {
        b.iter(|| fwd_bwd(x, reference).expect("reference"))
    });
    g.finish();
}

fn var(shape: &[usize]) -> Var {
    Var::from_tensor(&randn(shape).expect("randn")).expect("var")
}

fn bench_ops(c: &mut Criterion) {
    let x = var(&[B, T, DM]);
    let w = ((randn(&[DM]).expect("w") * 0.1).expect("w") + 1.0).expect("w");
    pair(
        c,
        "rms_norm fwd+bwd [8,192,576]",
        &x,
        &|x| ops::rms_norm(x, &w, 1e-5),
        &|x| ops::reference::rms_norm(x, &w, 1e-5),
    );

    let s = var(&[B, HEADS, T, T]);
    pair(
        c,
        "causal_softmax fwd+bwd [8,9,192,192]",
        &s,
        &|s| ops::causal_softmax(s, 0),
        &|s| ops::reference::causal_softmax(s, 0),
    );

    let q = var(&[B, HEADS, T, HD]);
    let pos: Vec<f32> = (0..T * HD / 2)
        .map(|i| (i / (HD / 2)) as f32 / 1e5f32.powf((i % (HD / 2)) as f32 * 2.0 / HD as f32))
        .collect();
    let ang = Tensor::from_vec(pos, (T, HD / 2), &Device::Cpu).expect("angles");
    let (cos, sin) = (ang.cos().expect("cos"), ang.sin().expect("sin"));
    pair(
        c,
        "rope fwd+bwd [8,9,192,64]",
        &q,
        &|q| ops::rope(q, &cos, &sin),
        &|q| ops::reference::rope(q, &cos, &sin),
    );

    let gate = var(&[B, T, FF]);
    let up = randn(&[B, T, FF]).expect("up");
    pair(
        c,
        "swiglu fwd+bwd [8,192,1536] (grad to gate)",
        &gate,
        &|g| ops::swiglu(g, &up),
        &|g| ops::reference::swiglu(g, &up),
    );

    let wl = (randn(&[FF, DM]).expect("w") * 0.05).expect("w");
    pair(
        c,
        "frozen_linear fwd+bwd [1536 tok, 576 -> 1536]",
        &x,
        &|x| ops::frozen_linear(x, &wl),
        &|x| ops::reference::frozen_linear(x, &wl),
    );

    let h = var(&[B * T, DM]);
    let head = (randn(&[VOCAB, DM]).expect("head") * 0.05).expect("head");
    let targets: Vec<u32> = (0..(B * T) as u32)
        .map(|i| (i * 7919) % VOCAB as u32)
        .collect();
    let targets = Tensor::from_vec(targets, B * T, &Device::Cpu).expect("targets");
    pair(
        c,
        "token_logprobs fwd+bwd [1536 tok, 576, vocab 49152]",
        &h,
        &|h| ops::token_logprobs(h, &head, &targets),
        &|h| ops::reference::token_logprobs(h, &head, &targets),
    );
}

fn bench_matmul(c: &mut Criterion) {
    let n = 2048;
    let a = randn(&[n, n]).expect("a");
    let b = randn(&[n, n]).expect("b");
    let mut g = c.benchmark_group("matmul f32");
    g.sample_size(10);
    // elements/s here = FLOP/s
    g.throughput(Throughput::Elements(2 * (n as u64).pow(3)));
    g.bench_with_input(BenchmarkId::new("2048^3", n), &n, |bch, _| {
        bch.iter(|| a.matmul(&b).expect("matmul"))
    });
    g.finish();
}

fn main() {
    device::tune_allocator();
    let mut c = Criterion::default().configure_from_args();
    bench_matmul(&mut c);
    bench_ops(&mut c);
    c.final_summary();
}
