//! The GRPO-family losses against values worked out by hand on a tiny batch.
//!
//! The batch (2 sequences, 3 positions, the second sequence one token shorter):
//!
//! ```text
//! mask       [1 1 1] [1 1 0]
//! Â          +1       −0.5
//! ratio r    [1.5  1.1  0.5] [0.6  1.4  (3.0 padding)]
//! Δ=ref−logp [0  ln2  −ln2]  [ln2  0  (5.0 padding)]
//! ```
//! with ε_low = 0.2, ε_high = 0.28 (clip range [0.8, 1.28]) and β = 0.1.
//!
//! Surrogate `−min(r·Â, clip(r)·Â)` per token:
//! - seq 0 (Â = +1): r=1.5 → min(1.5, 1.28) = 1.28 clipped high → −1.28;
//!   r=1.1 → −1.1; r=0.5 → min(0.5, 0.8) = 0.5 (unclipped, below the range) → −0.5.
//! - seq 1 (Â = −0.5): r=0.6 → min(−0.3, −0.4) = −0.4 clipped low → +0.4;
//!   r=1.4 → min(−0.7, −0.64) = −0.7 (unclipped) → +0.7.
//!
//! k3 KL `e^Δ − Δ − 1`: Δ=0 → 0; Δ=ln2 → 1 − ln2 ≈ 0.306853; Δ=−ln2 → ln2 − 0.5 ≈ 0.193147.
//! Per-token loss L = surrogate + 0.1·KL:
//! - seq 0: −1.28, −1.1 + 0.1(1 − ln2), −0.5 + 0.1(ln2 − 0.5); sum = −2.88 + 0.05 = −2.83
//! - seq 1: 0.4 + 0.1(1 − ln2), 0.7; sum = 1.1 + 0.1(1 − ln2) ≈ 1.1306853
//! - all 5 tokens: −1.7 + 0.1(1 − ln2) ≈ −1.6693147
//!
//! Clip statistics (over the 5 masked tokens): low = seq 1 pos 0 (r < 0.8, Â < 0) → 1/5; high
//! = seq 0 pos 0 (r > 1.28, Â > 0) → 1/5; region 2/5. (seq 0 pos 2 has r < 0.8 but Â > 0 and
//! seq 1 pos 1 has r > 1.28 but Â < 0: not clipped.) Mean KL = (2(1 − ln2) + ln2 − 0.5)/5 =
//! (1.5 − ln2)/5.

use candle_core::{DType, Device, Tensor, Var};
use runner::spec::{ImportanceSamplingLevel, LossType};
use runner::train::loss::{policy_loss, sft_loss, LossConfig, LossInputs};

const LN2: f64 = std::f64::consts::LN_2;

struct Batch {
    logp: Var,
    old: Tensor,
    reff: Tensor,
    adv: Tensor,
    mask: Tensor,
}

fn t2(v: [[f64; 3]; 2], dt: DType) -> Tensor {
    let flat: Vec<f64> = v.iter().flatten().copied().collect();
    Tensor::from_vec(flat, (2, 3), &Device::Cpu)
        .unwrap()
        .to_dtype(dt)
        .unwrap()
}

fn batch(dt: DType) -> Batch {
    let logp = [[-1.0, -2.0, -0.5], [-1.5, -0.7, -3.0]];
    let ratio = [[1.5, 1.1, 0.5], [0.6, 1.4, 3.0]];
    let delta = [[0.0, LN2, -LN2], [LN2, 0.0, 5.0]];
    let mut old = [[0.0; 3]; 2];
    let mut reff = [[0.0; 3]; 2];
    for i in 0..2 {
        for j in 0..3 {
            old[i][j] = logp[i][j] - f64::ln(ratio[i][j]);
            reff[i][j] = logp[i][j] + delta[i][j];
        }
    }
    Batch {
        logp: Var::from_tensor(&t2(logp, dt)).unwrap(),
        old: t2(old, dt),
        reff: t2(reff, dt),
        adv: Tensor::new(&[1.0f64, -0.5], &Device::Cpu)
            .unwrap()
            .to_dtype(dt)
            .unwrap(),
        mask: t2([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]], dt),
    }
}

fn cfg(loss_type: LossType, level: ImportanceSamplingLevel) -> LossConfig {
    LossConfig {
        loss_type,
        level,
        epsilon_low: 0.2,
        epsilon_high: 0.28,
        beta: 0.1,
        max_completion_length: 4,
    }
}

fn inputs(b: &Batch, tokens: f64, seqs: f64) -> LossInputs<'_> {
    LossInputs {
        logp: b.logp.as_tensor(),
        old_logp: Some(&b.old),
        ref_logp: Some(&b.reff),
        advantages: &b.adv,
        mask: &b.mask,
        tokens_in_batch: tokens,
        num_sequences_in_batch: seqs,
    }
}

fn scalar(t: &Tensor) -> f64 {
    t.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap()
}

fn grad_rows(b: &Batch, loss: &Tensor) -> Vec<Vec<f64>> {
    let g = loss.backward().unwrap();
    g.get(b.logp.as_tensor())
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_vec2()
        .unwrap()
}

fn close(a: f64, b: f64, tol: f64, what: &str) {
    assert!((a - b).abs() <= tol, "{what}: got {a}, want {b}");
}

const SEQ0: f64 = -2.83;
fn seq1() -> f64 {
    1.1 + 0.1 * (1.0 - LN2)
}

#[test]
fn token_level_loss_types_match_hand_values() {
    let b = batch(DType::F64);
    let token = ImportanceSamplingLevel::Token;
    let total = SEQ0 + seq1();
    // grpo: mean of per-sequence token means: (−2.83/3 + 1.1306853/2) / 2.
    let want_grpo = (SEQ0 / 3.0 + seq1() / 2.0) / 2.0;
    let cases = [
        (LossType::Grpo, 5.0, 2.0, want_grpo),
        // bnpo: token sum / 5 tokens of the micro-batch.
        (LossType::Bnpo, 5.0, 2.0, total / 5.0),
        // dr_grpo: token sum / (2 sequences × max_completion_length 4).
        (LossType::DrGrpo, 5.0, 2.0, total / 8.0),
        // dapo: token sum / the accumulated batch's tokens (5 here, then 12 over a larger step).
        (LossType::Dapo, 5.0, 2.0, total / 5.0),
        (LossType::Dapo, 12.0, 2.0, total / 12.0),
        // Over an accumulated batch of 4 sequences (this micro-batch being half of it):
        // grpo and bnpo halve (TRL divides by the 2 accumulation steps), dr_grpo divides by 4·4.
        (LossType::Grpo, 5.0, 4.0, want_grpo / 2.0),
        (LossType::Bnpo, 5.0, 4.0, total / 10.0),
        (LossType::DrGrpo, 5.0, 4.0, total / 16.0),
    ];
    for (lt, tokens, seqs, want) in cases {
        let out = policy_loss(&cfg(lt, token), &inputs(&b, tokens, seqs)).unwrap();
        close(
            scalar(&out.loss),
            want,
            1e-12,
            &format!("{lt:?} tokens {tokens} seqs {seqs}"),
        );
        let s = &out.stats;
        close(s.tokens, 5.0, 0.0, "tokens");
        close(s.clip_low, 0.2, 1e-12, "clip_low");
        close(s.clip_high, 0.2, 1e-12, "clip_high");
        close(s.clip_region, 0.4, 1e-12, "clip_region");
        close(s.kl, (1.5 - LN2) / 5.0, 1e-12, "kl");
        assert!(s.entropy.is_none());
    }
    // The f32 path gives the same numbers to f32 precision.
    let b32 = batch(DType::F32);
    let out = policy_loss(&cfg(LossType::Grpo, token), &inputs(&b32, 5.0, 2.0)).unwrap();
    assert_eq!(out.loss.dtype(), DType::F32);
    close(scalar(&out.loss), want_grpo, 1e-6, "grpo f32");
}

/// d loss / d logp per token, by hand: the surrogate's unclipped terms give −r·Â (dr/dlogp =
/// r), clipped ones 0; the KL gives β(1 − e^Δ) (dKL/dlogp = 1 − e^Δ since Δ = ref − logp).
/// - seq 0: pos 0 clipped, Δ=0 → 0; pos 1: −1.1 + 0.1(1 − 2) = −1.2; pos 2: −0.5 + 0.1(1 − ½) = −0.45
/// - seq 1: pos 0 clipped, Δ=ln2 → 0.1(1 − 2) = −0.1; pos 1: −1.4·(−0.5) = 0.7; padding 0.
///
/// For bnpo these are divided by the 5 tokens.
#[test]
fn token_level_gradient_matches_hand_values() {
    let b = batch(DType::F64);
    let out = policy_loss(
        &cfg(LossType::Bnpo, ImportanceSamplingLevel::Token),
        &inputs(&b, 5.0, 2.0),
    )
    .unwrap();
    let g = grad_rows(&b, &out.loss);
    let want = [[0.0, -1.2, -0.45], [-0.1, 0.7, 0.0]];
    for i in 0..2 {
        for j in 0..3 {
            close(g[i][j], want[i][j] / 5.0, 1e-12, &format!("grad[{i}][{j}]"));
        }
    }
}

/// GSPO (sequence-level ratio) with the paper's ε = 3e-4 / 4e-4 (range [0.9997, 1.0004]):
/// - seq 0: s = exp(mean(ln 1.5, ln 1.1, ln 0.5)) = 0.825^(1/3) ≈ 0.9378887 < 0.9997 with Â > 0:
///   min(s, 0.9997) = s, unclipped → −s on each of its 3 tokens;
/// - seq 1: s = exp(mean(ln 0.6, ln 1.4)) = √0.84 ≈ 0.9165151 (the padding's 3.0 is left out)
///   with Â = −0.5: min(−0.458, −0.49985) = −0.49985, clipped low → +0.49985 on its 2 tokens.
///
/// grpo: seq 0 mean = (−3s₀ + 0.1·0.5)/3, seq 1 mean = (2·0.49985 + 0.1(1 − ln2))/2; loss =
/// their mean ≈ −0.2030147. Clip stats count sequences: low 1/2, high 0.
/// Gradient: seq 0's loss −s₀·Â/2 (grpo weight ½) with ds₀/dlogp_j = s₀/3 → −s₀/6 per token, plus
/// the KL's 0.1(1 − e^Δ)/(3·2); seq 1 is clipped, only the KL: 0.1(1 − 2)/(2·2) at pos 0.
#[test]
fn sequence_level_gspo_matches_hand_values() {
    let b = batch(DType::F64);
    let mut c = cfg(LossType::Grpo, ImportanceSamplingLevel::Sequence);
    c.epsilon_low = 3e-4;
    c.epsilon_high = 4e-4;
    let out = policy_loss(&c, &inputs(&b, 5.0, 2.0)).unwrap();
    let s0 = 0.825f64.powf(1.0 / 3.0);
    let seq0 = (-3.0 * s0 + 0.1 * 0.5) / 3.0;
    let seq1 = (2.0 * 0.49985 + 0.1 * (1.0 - LN2)) / 2.0;
    close(scalar(&out.loss), (seq0 + seq1) / 2.0, 1e-12, "gspo grpo");
    close(
        scalar(&out.loss),
        -0.2030147100223912,
        1e-12,
        "gspo grpo literal",
    );
    close(out.stats.clip_low, 0.5, 0.0, "clip_low");
    close(out.stats.clip_high, 0.0, 0.0, "clip_high");
    close(out.stats.clip_region, 0.5, 0.0, "clip_region");
    close(out.stats.clip_weight, 2.0, 0.0, "clip_weight");
    let g = grad_rows(&b, &out.loss);
    let want = [
        [
            -s0 / 6.0,
            -s0 / 6.0 + 0.1 * (1.0 - 2.0) / 6.0,
            -s0 / 6.0 + 0.1 * 0.5 / 6.0,
        ],
        [0.1 * (1.0 - 2.0) / 4.0, 0.0, 0.0],
    ];
    for i in 0..2 {
        for j in 0..3 {
            close(g[i][j], want[i][j], 1e-12, &format!("grad[{i}][{j}]"));
        }
    }
    // dapo at sequence level: the same per-token terms summed / 5 tokens.
    let mut c = c.clone();
    c.loss_type = LossType::Dapo;
    let out = policy_loss(&c, &inputs(&b, 5.0, 2.0)).unwrap();
    let sum = (-3.0 * s0 + 0.05) + (2.0 * 0.49985 + 0.1 * (1.0 - LN2));
    close(scalar(&out.loss), sum / 5.0, 1e-12, "gspo dapo");
}

/// With μ = 1 there is no π_old: ratio = exp(logp − detach(logp)) ≡ 1, so the loss value is
/// −Â per token and the gradient is −Â·mask/N (∇logp·Â, the REINFORCE-style GRPO gradient).
/// bnpo, β = 0: value (−1·3 + 0.5·2)/5 = −0.4; gradient −1/5 on seq 0, +0.1 on seq 1.
#[test]
fn on_policy_ratio_is_one_with_gradient_of_logp() {
    let b = batch(DType::F64);
    let mut c = cfg(LossType::Bnpo, ImportanceSamplingLevel::Token);
    c.beta = 0.0;
    let mut inp = inputs(&b, 5.0, 2.0);
    inp.old_logp = None;
    inp.ref_logp = None;
    let out = policy_loss(&c, &inp).unwrap();
    close(scalar(&out.loss), -0.4, 1e-12, "on-policy value");
    close(out.stats.clip_region, 0.0, 0.0, "no clipping on-policy");
    close(out.stats.kl, 0.0, 0.0, "no kl without reference");
    let g = grad_rows(&b, &out.loss);
    let want = [[-0.2, -0.2, -0.2], [0.1, 0.1, 0.0]];
    for i in 0..2 {
        for j in 0..3 {
            close(g[i][j], want[i][j], 1e-12, &format!("grad[{i}][{j}]"));
        }
    }
}

#[test]
fn bad_inputs_are_errors() {
    let b = batch(DType::F64);
    let c = cfg(LossType::Grpo, ImportanceSamplingLevel::Token);
    // β > 0 without reference log-probs.
    let mut inp = inputs(&b, 5.0, 2.0);
    inp.ref_logp = None;
    assert!(policy_loss(&c, &inp).is_err());
    // Fewer sequences in the accumulated batch than in this micro-batch.
    assert!(policy_loss(&c, &inputs(&b, 5.0, 1.0)).is_err());
    // Mismatched shapes.
    let short = b.mask.narrow(1, 0, 2).unwrap();
    let mut inp = inputs(&b, 5.0, 2.0);
    inp.mask = &short;
    assert!(policy_loss(&c, &inp).is_err());
    // dr_grpo without a length budget.
    let mut d = cfg(LossType::DrGrpo, ImportanceSamplingLevel::Token);
    d.max_completion_length = 0;
    assert!(policy_loss(&d, &inputs(&b, 5.0, 2.0)).is_err());
}

/// Mean NLL over the masked tokens: logp [[−1, −2], [−3, −4]] with mask [[1, 1], [0, 1]] →
/// (1 + 2 + 4)/3 = 7/3; an all-zero mask is an error.
#[test]
fn sft_loss_is_masked_mean_nll() {
    let dev = Device::Cpu;
    let logp = Tensor::new(&[[-1.0f32, -2.0], [-3.0, -4.0]], &dev).unwrap();
    let mask = Tensor::new(&[[1.0f32, 1.0], [0.0, 1.0]], &dev).unwrap();
    close(
        scalar(&sft_loss(&logp, &mask).unwrap()),
        7.0 / 3.0,
        1e-6,
        "sft",
    );
    assert!(sft_loss(&logp, &mask.zeros_like().unwrap()).is_err());
}
