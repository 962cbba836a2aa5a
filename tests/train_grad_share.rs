//! Per-objective-term gradient norms (`train.grad_share_every`): the terms add up to the loss
//! and their gradients to its gradient (linearity), λ = 0 gives the diversity term no
//! gradient, measuring leaves the update bit-identical, the quality / diversity split of the
//! advantages matches the rank stage, and a run logs `grad_norm/<term>` and
//! `grad_share/<term>`.

mod common;
mod support_train;

use std::collections::BTreeMap;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use runner::engine::generate::FinishReason;
use runner::engine::load::{self, LoadOptions, ModelFiles};
use runner::engine::model::{LoraConfig, Model, TrainBatch};
use runner::rank::advantage::EPSILON;
use runner::spec::{Diversity, DiversityKind, DiversityMetric, Experiment, LossType};
use runner::stages::artifacts::{AdvantageRow, RolloutRow, ScoredRow};
use runner::stages::rank;
use runner::stages::train::advantage_split::quality_advantages;
use runner::stages::train::{optimizer_step, Sample, StepConfig};
use runner::stages::{Resources, StageKind};
use runner::train::diversity::grad_norms;
use runner::train::loss::{policy_loss, policy_loss_terms, LossConfig, LossInputs};
use support_train::*;

fn batch() -> (TrainBatch, Tensor) {
    prompt_completion_batch(&[
        (vec![5, 17, 3], vec![9, 12, 40, 7]),
        (vec![8, 30], vec![22, 14]),
        (vec![11, 4, 6, 19], vec![33, 2]),
    ])
}

fn flat_grads(g: &candle_core::backprop::GradStore, m: &Model) -> Vec<Vec<f64>> {
    m.trainable_vars()
        .iter()
        .map(|v| match g.get(v.as_tensor()) {
            Some(t) => t
                .to_dtype(DType::F64)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f64>()
                .unwrap(),
            None => vec![0.0; v.as_tensor().elem_count()],
        })
        .collect()
}

/// The policy / diversity / KL terms add up to the loss, their gradients to the loss's
/// gradient (each term by its own backward), for every loss type and with clipping binding;
/// with a zero diversity part (λ = 0) that term's gradient norm is exactly 0.
#[test]
fn terms_sum_to_the_loss_and_their_gradients_to_its_gradient() {
    let tmp = tempfile::tempdir().unwrap();
    let m = tiny_lora_model(tmp.path());
    let (b, mask) = batch();
    let dev = Device::Cpu;
    let adv = Tensor::new(&[0.9f32, -0.6, -0.3], &dev).unwrap();
    let quality = Tensor::new(&[0.5f32, -0.8, 0.1], &dev).unwrap();
    for loss_type in [
        LossType::Grpo,
        LossType::Bnpo,
        LossType::DrGrpo,
        LossType::Dapo,
    ] {
        let cfg = LossConfig {
            loss_type,
            level: runner::spec::ImportanceSamplingLevel::Token,
            epsilon_low: 0.2,
            epsilon_high: 0.2,
            beta: 0.1,
            max_completion_length: 6,
        };
        m.set_adapters_enabled(false);
        let reff = m.token_logprobs_masked_at(&b, 1.0).unwrap().detach();
        m.set_adapters_enabled(true);
        let lp = m.token_logprobs_masked_at(&b, 1.0).unwrap();
        let shift = Tensor::new(&[[0.3f32, -0.3, 0.3, -0.3, 0.3, -0.3]; 3], &dev).unwrap();
        let old = ((lp.detach() + shift).unwrap() * &mask).unwrap();
        let inp = LossInputs {
            logp: &lp,
            old_logp: Some(&old),
            ref_logp: Some(&reff),
            advantages: &adv,
            mask: &mask,
            tokens_in_batch: 8.0,
            num_sequences_in_batch: 3.0,
        };
        let out = policy_loss(&cfg, &inp).unwrap();
        assert!(out.stats.clip_region > 0.0, "clipping binds somewhere");
        let div = (&adv - &quality).unwrap();
        let terms =
            policy_loss_terms(&cfg, &inp, &[("policy", &quality), ("diversity", &div)]).unwrap();
        let names: Vec<&str> = terms.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["policy", "diversity", "kl"]);
        let total = out.loss.to_scalar::<f32>().unwrap();
        let sum: f32 = terms
            .iter()
            .map(|(_, t)| t.to_scalar::<f32>().unwrap())
            .sum();
        assert!(
            (total - sum).abs() <= 1e-6 * total.abs().max(1.0),
            "{total} vs {sum}"
        );
        let g_total = flat_grads(&out.loss.backward().unwrap(), &m);
        let mut g_sum: Vec<Vec<f64>> = g_total.iter().map(|v| vec![0.0; v.len()]).collect();
        for (_, t) in &terms {
            for (acc, g) in g_sum.iter_mut().zip(flat_grads(&t.backward().unwrap(), &m)) {
                acc.iter_mut().zip(g).for_each(|(a, x)| *a += x);
            }
        }
        for (a, b) in g_total.iter().zip(&g_sum) {
            let scale = a.iter().fold(0f64, |s, x| s.max(x.abs()));
            assert!(scale > 0.0);
            for (x, y) in a.iter().zip(b) {
                assert!((x - y).abs() <= 1e-5 * scale, "{loss_type:?}: {x} vs {y}");
            }
        }
        let refs: Vec<(&str, &Tensor)> = terms.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let norms = grad_norms(&refs, &m.trainable_vars()).unwrap();
        assert!(
            norms.iter().all(|(_, n)| n.is_finite() && *n > 0.0),
            "{norms:?}"
        );
        // λ = 0: the whole advantage is quality, the diversity part is 0 and has no gradient.
        let zero = adv.zeros_like().unwrap();
        let terms =
            policy_loss_terms(&cfg, &inp, &[("policy", &adv), ("diversity", &zero)]).unwrap();
        let refs: Vec<(&str, &Tensor)> = terms.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let norms = grad_norms(&refs, &m.trainable_vars()).unwrap();
        assert_eq!(norms[1], ("diversity".to_string(), 0.0));
        assert!(norms[0].1 > 0.0);
        // Parts that do not add up to the advantage are an error, not a silent mis-split.
        assert!(policy_loss_terms(&cfg, &inp, &[("policy", &quality)]).is_err());
    }
}

fn samples(lambda_zero: bool) -> Vec<Sample> {
    let rows: [(&[u32], &[u32], f64, f64); 4] = [
        (&[5, 17, 3], &[9, 12, 40, 7], 0.9, 0.5),
        (&[5, 17, 3], &[22, 14], -0.6, -0.8),
        (&[11, 4, 6], &[33, 2, 8], -0.3, 0.1),
        (&[11, 4, 6], &[30], 0.4, 0.6),
    ];
    rows.iter()
        .map(|(p, c, a, q)| Sample {
            prompt_ids: p.to_vec(),
            completion_ids: c.to_vec(),
            old_logprobs: vec![-3.0; c.len()],
            advantage: *a,
            quality_advantage: Some(if lambda_zero { *a } else { *q }),
            truncated: false,
        })
        .collect()
}

fn step_cfg(grad_share: bool, beta: f64, iters: usize) -> StepConfig {
    StepConfig {
        loss: LossConfig {
            loss_type: LossType::Dapo,
            level: runner::spec::ImportanceSamplingLevel::Token,
            epsilon_low: 0.2,
            epsilon_high: 0.2,
            beta,
            max_completion_length: 6,
        },
        temperature: 0.9,
        micro_batch_size: 2,
        num_iterations: iters,
        max_grad_norm: Some(1.0),
        mask_truncated: false,
        lr: 0.05,
        dropout_seed: 3,
        grad_share,
    }
}

/// Measuring the terms' gradients (extra backward passes on the first micro-batch) leaves the
/// adapter weights and every other step statistic bit-identical, with LoRA dropout on, β > 0
/// and μ = 2; the measured norms are finite, and λ = 0 gives the diversity term norm 0.
#[test]
fn grad_share_leaves_the_update_bit_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let base = write_model(tmp.path());
    let load_m = || {
        let opts = LoadOptions {
            dtype: DType::F32,
            device: Device::Cpu,
            lora: Some(LoraConfig {
                r: 4,
                alpha: 8.0,
                dropout: 0.1,
                target_modules: vec!["q_proj".into(), "v_proj".into()],
            }),
        };
        let mut m = load::load_model(&ModelFiles::HfDir(base.clone()), &opts)
            .unwrap()
            .0;
        common::random_lora(&mut m);
        m
    };
    for (beta, iters) in [(0.1, 2), (0.0, 1)] {
        let (m_on, m_off) = (load_m(), load_m());
        assert_eq!(trainable_values(&m_on), trainable_values(&m_off));
        let (mut o_on, mut o_off) = (adamw(&m_on, 0.05, 0.01), adamw(&m_off, 0.05, 0.01));
        for step in 0..3 {
            let s = samples(false);
            let mut a = optimizer_step(&m_on, &mut o_on, &s, &step_cfg(true, beta, iters)).unwrap();
            let b = optimizer_step(&m_off, &mut o_off, &s, &step_cfg(false, beta, iters)).unwrap();
            let names: Vec<&str> = a.term_grad_norms.iter().map(|(n, _)| n.as_str()).collect();
            let want: &[&str] = if beta > 0.0 {
                &["policy", "diversity", "kl"]
            } else {
                &["policy", "diversity"]
            };
            assert_eq!(names, want, "step {step}");
            assert!(a
                .term_grad_norms
                .iter()
                .all(|(_, n)| n.is_finite() && *n > 0.0));
            assert!(b.term_grad_norms.is_empty());
            a.term_grad_norms.clear();
            assert_eq!(a, b, "step {step}: statistics");
            assert_eq!(
                trainable_values(&m_on),
                trainable_values(&m_off),
                "step {step}: adapter weights"
            );
        }
    }
    // λ = 0: the quality part is the whole advantage.
    let m = load_m();
    let st = optimizer_step(
        &m,
        &mut adamw(&m, 0.05, 0.01),
        &samples(true),
        &step_cfg(true, 0.0, 1),
    )
    .unwrap();
    assert_eq!(st.term_grad_norms[1], ("diversity".to_string(), 0.0));
    assert!(st.term_grad_norms[0].1 > 0.0);
}

fn row(p: usize, i: usize, reward: f64, text: &str) -> ScoredRow {
    ScoredRow {
        rollout: RolloutRow {
            record_id: format!("r{p}"),
            prompt_index: p,
            index: i,
            prompt: "q".into(),
            completion: text.into(),
            prompt_ids: vec![1],
            completion_ids: vec![2],
            logprobs: vec![-0.5],
            finish: FinishReason::Eos,
            task: None,
            reference: None,
            record: Default::default(),
        },
        rewards: BTreeMap::new(),
        reward: Some(reward),
    }
}

/// Two groups of 8 (C(8, 4) = 70 > 64 sets: the polychromic objective samples its sets, so
/// the split must reproduce the rank stage's seeds); some texts repeat.
fn scored() -> Vec<ScoredRow> {
    let texts = [
        "a b c", "a b c", "d e f", "g h i", "a b d", "x y z", "d e f", "p q r",
    ];
    let mut out = Vec::new();
    for p in 0..2 {
        for (i, t) in texts.iter().enumerate() {
            out.push(row(p, i, ((i * 3 + p) % 4) as f64 / 3.0, t));
        }
    }
    out
}

fn spec(kind: DiversityKind, lambda: f64) -> Experiment {
    let mut spec = Experiment {
        seed: 5,
        ..Experiment::default()
    };
    spec.train.objective.diversity = Some(Diversity {
        kind,
        lambda,
        n_generations: 4,
        max_examples_for_diversity: 4,
        compute_every_n_steps: 1,
        metric: DiversityMetric::Distinct2,
    });
    spec
}

/// The advantages the rank stage writes for `spec` at `step`.
fn rank_rows(spec: &Experiment, step: usize, rows: &[ScoredRow]) -> Vec<AdvantageRow> {
    let g = rank::groups(rows).unwrap();
    let r = rank::rank_groups(spec, Some(step), &g, None).unwrap();
    let mut out = Vec::new();
    for (gi, grp) in g.iter().enumerate() {
        for (i, x) in grp.iter().enumerate() {
            out.push(AdvantageRow {
                record_id: x.rollout.record_id.clone(),
                prompt_index: x.rollout.prompt_index,
                index: x.rollout.index,
                advantage: r.advantages[gi][i],
                kept: r.stats.kept[gi],
            });
        }
    }
    out
}

/// With λ = 0 the quality part is the rank stage's advantage exactly (diversity part 0), for
/// both objectives, at several steps (sampled polychromic sets); with λ > 0 the parts differ,
/// and for `diversity_bonus` the quality part is `(r − mean r) / (std of the adjusted
/// rewards + ε)` by hand. No diversity objective: no split.
#[test]
fn quality_split_matches_the_rank_stage() {
    let rows = scored();
    let mut res = Resources::default();
    for kind in [DiversityKind::DiversityBonus, DiversityKind::SetPolychromic] {
        for step in [0, 3] {
            let s0 = spec(kind, 0.0);
            let advs = rank_rows(&s0, step, &rows);
            let q = quality_advantages(&s0, Some(step), &rows, &advs, &mut res)
                .unwrap()
                .unwrap();
            assert_eq!(q.len(), advs.len());
            for a in &advs {
                assert_eq!(
                    q[&(a.prompt_index, a.index)],
                    a.advantage,
                    "{kind:?} step {step}"
                );
            }
            let s1 = spec(kind, 0.7);
            let advs = rank_rows(&s1, step, &rows);
            let q = quality_advantages(&s1, Some(step), &rows, &advs, &mut res)
                .unwrap()
                .unwrap();
            let moved = advs
                .iter()
                .filter(|a| (q[&(a.prompt_index, a.index)] - a.advantage).abs() > 1e-6)
                .count();
            assert!(moved > 0, "{kind:?}: λ > 0 must leave a diversity part");
        }
    }
    // diversity_bonus by hand for group 0: adjusted rewards r + λ·(D(all) − D(all∖i)).
    let s1 = spec(DiversityKind::DiversityBonus, 0.7);
    let advs = rank_rows(&s1, 0, &rows);
    let q = quality_advantages(&s1, Some(0), &rows, &advs, &mut res)
        .unwrap()
        .unwrap();
    let g0: Vec<&ScoredRow> = rows
        .iter()
        .filter(|r| r.rollout.prompt_index == 0)
        .collect();
    let r: Vec<f64> = g0.iter().map(|x| x.reward.unwrap()).collect();
    let texts: Vec<&str> = g0.iter().map(|x| x.rollout.completion.as_str()).collect();
    let d = |idx: &[usize]| {
        let t: Vec<&str> = idx.iter().map(|&i| texts[i]).collect();
        runner::train::diversity::distinct_n(&t, 2)
    };
    let adj = runner::train::diversity::diversity_bonus(&r, 0.7, &d).unwrap();
    let mean_adj = adj.iter().sum::<f64>() / 8.0;
    let std_adj = (adj.iter().map(|x| (x - mean_adj).powi(2)).sum::<f64>() / 7.0).sqrt();
    let mean_r = r.iter().sum::<f64>() / 8.0;
    for i in 0..8 {
        let want = (r[i] - mean_r) / (std_adj + EPSILON);
        assert!((q[&(0, i)] - want).abs() < 1e-12, "rollout {i}");
    }
    // text_penalty: all quality; no objective: no split.
    let sp = spec(DiversityKind::TextPenalty, 2.0);
    let advs = rank_rows(&sp, 0, &rows);
    let q = quality_advantages(&sp, Some(0), &rows, &advs, &mut res)
        .unwrap()
        .unwrap();
    assert!(advs
        .iter()
        .all(|a| q[&(a.prompt_index, a.index)] == a.advantage));
    let none = quality_advantages(&Experiment::default(), Some(0), &rows, &advs, &mut res).unwrap();
    assert!(none.is_none());
}

/// A run through the real rank stage with `diversity_bonus` and β > 0 logs finite
/// `grad_norm/<term>` and `grad_share/<term>` for policy, diversity and kl every
/// `grad_share_every` steps (shares sum to 1; each term pulls on some measured step; kl is 0
/// at the first step), nothing on the other steps, and `entropy`; with `grad_share_every: 0`
/// the columns are absent and the adapter is bit-identical.
#[test]
fn a_run_logs_the_terms_gradient_shares() {
    let tmp = tempfile::tempdir().unwrap();
    let mut reg = registry(None, None);
    // the real rank stage, so the advantages carry the diversity term
    reg.register(StageKind::Rank, Arc::new(rank::RankStage));
    let objective = "  beta: 0.1\n  objective: {diversity: {kind: diversity_bonus, lambda: 0.5, \
                     metric: distinct2, n_generations: 4}}\n";
    let mut adapters = Vec::new();
    for every in [2usize, 0] {
        let dir = tmp.path().join(format!("every{every}"));
        // the model inside the spec's project (paths outside it are refused)
        let base = write_model(&dir.join("model"));
        let spec = dir.join("tiny.yaml");
        let extra = format!("{objective}  grad_share_every: {every}\n");
        std::fs::write(&spec, spec_yaml(&base, 3, &extra, "")).unwrap();
        let runs = dir.join("runs");
        apply_spec(&spec, &runs, &reg).unwrap();
        let run = only_run(&runs);
        let text = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap().split(',').collect();
        let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
        assert_eq!(rows.len(), 3);
        let col = |name: &str| header.iter().position(|h| *h == name);
        let terms = ["policy", "diversity", "kl"];
        let mut seen: BTreeMap<&str, f64> = BTreeMap::new();
        if every == 0 {
            assert!(terms
                .iter()
                .all(|t| col(&format!("grad_share/{t}")).is_none()));
        } else {
            for (k, r) in rows.iter().enumerate() {
                let measured = k % every == 0; // 0-based steps 0 and 2
                let mut total = 0.0;
                for t in terms {
                    let share = r[col(&format!("grad_share/{t}")).unwrap()];
                    let norm = r[col(&format!("grad_norm/{t}")).unwrap()];
                    if measured {
                        let (s, n): (f64, f64) = (share.parse().unwrap(), norm.parse().unwrap());
                        assert!(s.is_finite() && n.is_finite() && n >= 0.0, "{t}: {s} {n}");
                        if t == "kl" && k == 0 {
                            // the policy starts as the reference (LoRA B = 0): the k3 KL's
                            // gradient at Δ = 0 is exactly 0
                            assert_eq!(n, 0.0);
                        }
                        *seen.entry(t).or_insert(0.0) += n;
                        total += s;
                    } else {
                        assert!(share.is_empty() && norm.is_empty());
                    }
                }
                if measured {
                    assert!((total - 1.0).abs() < 1e-9, "shares sum to 1: {total}");
                }
            }
        }
        if every > 0 {
            // every term pulls on the first micro-batch of some measured step
            assert!(seen.values().all(|n| *n > 0.0), "{seen:?}");
        }
        let entropy = rows[0][col("entropy").unwrap()].parse::<f64>().unwrap();
        assert!(entropy > 0.0 && entropy <= (common::VOCAB as f64).ln());
        adapters.push(tensors(&run.join("trainer/adapter_model.safetensors")));
    }
    assert_eq!(
        adapters[0], adapters[1],
        "grad share must not change training"
    );
}
