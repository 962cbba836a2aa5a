//! The token-entropy metric (TRL's `entropy`) against a reference from the full logits, and the
//! train stage's masked LM-head forward (`token_logprobs_masked_at`) against the unmasked one:
//! the same loss and the same gradients.

mod common;
mod support_train;

use candle_core::{DType, Device, Tensor, D};
use runner::engine::load::{self, LoadOptions, ModelFiles};
use runner::engine::model::Model;
use runner::spec::{ImportanceSamplingLevel, LossType, Train};
use runner::stages::train::{optimizer_step, Sample, StepConfig};
use runner::train::loss::{policy_loss, LossConfig, LossInputs};
use support_train::{adamw, prompt_completion_batch, tiny_lora_model, write_model};

/// Three right-padded rows of different lengths: (prompt, completion) token ids.
fn rows() -> Vec<(Vec<u32>, Vec<u32>)> {
    vec![
        (vec![5, 17, 3], vec![9, 12, 40, 7]),
        (vec![8, 30], vec![22]),
        (vec![11, 4, 6, 19, 25], vec![33, 2]),
    ]
}

/// Reference entropy `[b, t-1]` at temperature `temp`: `−Σ p·log p` of
/// `log_softmax(logits / T)` from the model's full logits, in f64.
fn reference_entropy(m: &Model, input_ids: &Tensor, temp: f64) -> Tensor {
    let t = input_ids.dim(1).unwrap();
    let logits = m
        .forward_all_logits(input_ids)
        .unwrap()
        .narrow(1, 0, t - 1)
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap();
    let lsm = candle_nn::ops::log_softmax(&(logits / temp).unwrap(), D::Minus1).unwrap();
    (lsm.exp().unwrap() * &lsm)
        .unwrap()
        .sum(D::Minus1)
        .unwrap()
        .neg()
        .unwrap()
}

fn vals2(t: &Tensor) -> Vec<Vec<f64>> {
    t.to_dtype(DType::F64).unwrap().to_vec2::<f64>().unwrap()
}

/// Entropy from the fused LM head equals the full-logits reference at T = 0.7 and T = 1, on
/// every row (unmasked) or on the completion rows with 0 elsewhere (masked), over ragged,
/// right-padded rows; the log-probs are the plain methods' exactly.
#[test]
fn entropy_matches_the_full_logits_reference_on_ragged_masked_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let m = tiny_lora_model(tmp.path());
    let (b, _) = prompt_completion_batch(&rows());
    let cmask = vals2(&b.completion_mask);
    for temp in [0.7, 1.0] {
        let want = vals2(&reference_entropy(&m, &b.input_ids, temp));
        for masked in [false, true] {
            let (lp, h) = m.token_logprobs_entropy_at(&b, temp, masked).unwrap();
            assert!(!h.track_op(), "the entropy is a statistic: no graph");
            let plain = if masked {
                m.token_logprobs_masked_at(&b, temp).unwrap()
            } else {
                m.token_logprobs_at(&b, temp).unwrap()
            };
            assert_eq!(vals2(&lp), vals2(&plain), "log-probs (masked {masked})");
            let h = vals2(&h);
            for (i, row) in h.iter().enumerate() {
                for (j, &x) in row.iter().enumerate() {
                    let live = cmask[i][j + 1] > 0.0;
                    if masked && !live {
                        assert_eq!(x, 0.0, "skipped row ({i}, {j}) comes out 0");
                    } else {
                        let w = want[i][j];
                        assert!(
                            (x - w).abs() <= 1e-5 * w.abs().max(1.0),
                            "T {temp} masked {masked} ({i}, {j}): {x} vs {w}"
                        );
                        assert!(x > 0.0 && x <= (common::VOCAB as f64).ln() + 1e-5);
                    }
                }
            }
        }
    }
    // A lower temperature sharpens the distribution: lower entropy at every position.
    let (_, h1) = m.token_logprobs_entropy_at(&b, 1.0, false).unwrap();
    let (_, h5) = m.token_logprobs_entropy_at(&b, 0.5, false).unwrap();
    for (r1, r5) in vals2(&h1).iter().zip(vals2(&h5)) {
        for (x1, x5) in r1.iter().zip(r5) {
            assert!(x5 < *x1);
        }
    }
}

fn samples() -> Vec<Sample> {
    rows()
        .into_iter()
        .zip([0.5, -1.0, 0.25])
        .map(|((p, c), a)| Sample {
            prompt_ids: p,
            old_logprobs: vec![-3.0; c.len()],
            completion_ids: c,
            advantage: a,
            quality_advantage: None,
            truncated: false,
        })
        .collect()
}

fn step_config(temp: f64, micro: usize) -> StepConfig {
    let train = Train::default();
    StepConfig {
        loss: LossConfig::from_spec(&train, 8),
        temperature: temp,
        micro_batch_size: micro,
        num_iterations: 1,
        max_grad_norm: None,
        mask_truncated: false,
        lr: 0.0,
        dropout_seed: 1,
        grad_share: false,
    }
}

/// The logged `entropy` of an optimizer step is the mean over all completion tokens of the
/// step (token-weighted across micro-batches) of the reference entropy at the sampling
/// temperature; each sample's reference is computed on it alone (no padding).
#[test]
fn optimizer_step_logs_the_mean_completion_token_entropy() {
    let tmp = tempfile::tempdir().unwrap();
    let m = tiny_lora_model(tmp.path());
    let temp = 0.8;
    let (mut sum, mut n) = (0.0, 0.0);
    for (p, c) in rows() {
        let ids: Vec<u32> = p.iter().chain(&c).copied().collect();
        let len = ids.len();
        let h = reference_entropy(
            &m,
            &Tensor::from_vec(ids, (1, len), &Device::Cpu).unwrap(),
            temp,
        );
        let h = &vals2(&h)[0];
        for k in 0..c.len() {
            sum += h[p.len() - 1 + k];
            n += 1.0;
        }
    }
    let want = sum / n;
    for micro in [1, 2, 3] {
        let mut opt = adamw(&m, 0.0, 0.0);
        let st = optimizer_step(&m, &mut opt, &samples(), &step_config(temp, micro)).unwrap();
        let e = st.entropy.expect("the step logs entropy");
        assert!(
            (e - want).abs() <= 1e-5 * want,
            "micro {micro}: {e} vs {want}"
        );
    }
}

/// The loss and every gradient through the masked LM-head forward (what the train stage runs)
/// equal the unmasked forward's, for each loss type, with β > 0 (reference log-probs, also
/// masked), μ > 1 (π_old given, clipping binding), sequence-level ratios, and a truncated
/// completion masked out of the loss (loss mask ⊂ completion mask).
#[test]
fn masked_forward_gives_the_unmasked_loss_and_gradients() {
    let tmp = tempfile::tempdir().unwrap();
    let m = tiny_lora_model(tmp.path());
    let (b, mut lmask) = prompt_completion_batch(&rows());
    // mask_truncated: the second row's completion leaves the loss but stays in the batch
    let mut lm = vals2(&lmask);
    lm[1].iter_mut().for_each(|x| *x = 0.0);
    let (bn, tn) = lmask.dims2().unwrap();
    lmask = Tensor::from_vec(
        lm.into_iter()
            .flatten()
            .map(|x| x as f32)
            .collect::<Vec<_>>(),
        (bn, tn),
        &Device::Cpu,
    )
    .unwrap();
    let adv = Tensor::new(&[0.7f32, -0.4, -1.1], &Device::Cpu).unwrap();
    let temp = 0.9;
    for level in [
        ImportanceSamplingLevel::Token,
        ImportanceSamplingLevel::Sequence,
    ] {
        for loss_type in [
            LossType::Grpo,
            LossType::Bnpo,
            LossType::DrGrpo,
            LossType::Dapo,
        ] {
            let cfg = LossConfig {
                loss_type,
                level,
                epsilon_low: 0.2,
                epsilon_high: 0.28,
                beta: 0.05,
                max_completion_length: 6,
            };
            let run = |masked: bool| {
                let lp_of = |mm: &Model| {
                    if masked {
                        mm.token_logprobs_masked_at(&b, temp).unwrap()
                    } else {
                        mm.token_logprobs_at(&b, temp).unwrap()
                    }
                };
                m.set_adapters_enabled(false);
                let reff = lp_of(&m).detach();
                m.set_adapters_enabled(true);
                let lp = lp_of(&m);
                // π_old off by ~±0.4 per row so some ratios leave the clip range
                let shift = Tensor::from_vec(
                    (0..bn * tn)
                        .map(|i| [0.4f32, -0.4, 0.5][i / tn] + 0.05 * (i % 3) as f32)
                        .collect::<Vec<_>>(),
                    (bn, tn),
                    &Device::Cpu,
                )
                .unwrap();
                let old = ((lp.detach() + shift).unwrap() * &lmask).unwrap();
                let out = policy_loss(
                    &cfg,
                    &LossInputs {
                        logp: &lp,
                        old_logp: Some(&old),
                        ref_logp: Some(&reff),
                        advantages: &adv,
                        mask: &lmask,
                        tokens_in_batch: 6.0,
                        num_sequences_in_batch: 3.0,
                    },
                )
                .unwrap();
                let g = out.loss.backward().unwrap();
                let grads: Vec<Vec<f32>> = m
                    .trainable_vars()
                    .iter()
                    .map(|v| {
                        g.get(v.as_tensor())
                            .unwrap()
                            .flatten_all()
                            .unwrap()
                            .to_vec1::<f32>()
                            .unwrap()
                    })
                    .collect();
                let l = out.loss.to_scalar::<f32>().unwrap();
                (l, grads, out.stats.clip_region)
            };
            let (l0, g0, c0) = run(false);
            let (l1, g1, c1) = run(true);
            let what = format!("{loss_type:?} {level:?}");
            assert!(
                (l0 - l1).abs() <= 1e-6 * l0.abs().max(1.0),
                "{what}: {l0} vs {l1}"
            );
            assert_eq!(c0, c1, "{what}: clip statistics");
            assert!(c0 > 0.0, "{what}: clipping should bind somewhere");
            for (a, b) in g0.iter().zip(&g1) {
                let scale = a.iter().fold(0f32, |s, x| s.max(x.abs()));
                assert!(scale > 0.0, "{what}: a zero gradient tests nothing");
                for (x, y) in a.iter().zip(b) {
                    assert!((x - y).abs() <= 1e-5 * scale, "{what}: {x} vs {y}");
                }
            }
        }
    }
}

/// Under full fine-tuning (the head trainable: log-probs composed from primitives) the entropy
/// comes from the same full logits and matches the reference too.
#[test]
fn full_finetune_entropy_matches_the_reference() {
    let tmp = tempfile::tempdir().unwrap();
    let base = write_model(tmp.path());
    let opts = LoadOptions {
        dtype: DType::F32,
        device: Device::Cpu,
        lora: None,
    };
    let mut m = load::load_model(&ModelFiles::HfDir(base), &opts).unwrap().0;
    m.enable_full_finetune().unwrap();
    let (b, _) = prompt_completion_batch(&rows());
    let cmask = vals2(&b.completion_mask);
    let want = vals2(&reference_entropy(&m, &b.input_ids, 0.6));
    let (_, h) = m.token_logprobs_entropy_at(&b, 0.6, true).unwrap();
    for (i, row) in vals2(&h).iter().enumerate() {
        for (j, &x) in row.iter().enumerate() {
            let w = if cmask[i][j + 1] > 0.0 {
                want[i][j]
            } else {
                0.0
            };
            assert!(
                (x - w).abs() <= 1e-5 * w.abs().max(1.0),
                "({i}, {j}): {x} vs {w}"
            );
        }
    }
}
