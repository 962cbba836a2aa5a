//! The gradient of the whole GRPO loss — clipped surrogate with off-policy ratios, plus β·KL
//! against the adapters-off reference — through a tiny model with LoRA, against central finite
//! differences of the loss in the LoRA parameters.

mod common;

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use runner::engine::load::{self, LoadOptions, ModelFiles};
use runner::engine::model::{Arch, LoraConfig, Model, TrainBatch};
use runner::spec::{ImportanceSamplingLevel, LossType};
use runner::train::loss::{policy_loss, LossConfig, LossInputs, LossStats};

use common::{rand_tensor, random_weights, tiny_config, write_hf_dir};

const TEMPERATURE: f64 = 0.8;

/// A tiny model with LoRA on q/v (every layer), B non-zero so the adapters change the output.
fn lora_model(dir: &Path, arch: Arch) -> Model {
    let cfg = tiny_config(arch, false);
    write_hf_dir(dir, &cfg, &random_weights(&cfg, 11));
    let opts = LoadOptions {
        dtype: DType::F32,
        device: Device::Cpu,
        lora: None,
    };
    let mut m = load::load_model(&ModelFiles::HfDir(dir.to_path_buf()), &opts)
        .unwrap()
        .0;
    let lc = LoraConfig {
        r: 2,
        alpha: 4.0,
        dropout: 0.0,
        target_modules: vec!["q_proj".into(), "v_proj".into()],
    };
    let mut t = HashMap::new();
    let mut k = 500;
    for (layer, l) in m.layers().iter().enumerate() {
        for (name, lin) in l.linears() {
            if !(name.ends_with("q_proj") || name.ends_with("v_proj")) {
                continue;
            }
            let (o, i) = lin.dims().unwrap();
            k += 2;
            t.insert(
                format!("model.layers.{layer}.{name}"),
                (
                    rand_tensor(&[2, i], k, 0.4, 0.0),
                    rand_tensor(&[o, 2], k + 1, 0.4, 0.0),
                ),
            );
        }
    }
    m.set_lora(&lc, t).unwrap();
    m
}

/// Three prompt+completion rows, right-padded, completions of 5, 3 and 4 tokens.
fn batch() -> TrainBatch {
    let rows: [[u32; 8]; 3] = [
        [5, 6, 7, 10, 11, 12, 13, 14],
        [5, 8, 20, 21, 22, 0, 0, 0],
        [9, 9, 9, 30, 31, 32, 33, 0],
    ];
    let mask: [[f32; 8]; 3] = [
        [0., 0., 0., 1., 1., 1., 1., 1.],
        [0., 0., 1., 1., 1., 0., 0., 0.],
        [0., 0., 0., 1., 1., 1., 1., 0.],
    ];
    let ids: Vec<u32> = rows.iter().flatten().copied().collect();
    let m: Vec<f32> = mask.iter().flatten().copied().collect();
    TrainBatch {
        input_ids: Tensor::from_vec(ids, (3, 8), &Device::Cpu).unwrap(),
        completion_mask: Tensor::from_vec(m, (3, 8), &Device::Cpu).unwrap(),
    }
}

/// The fixed (non-differentiated) inputs: π_old, π_ref, advantages, mask.
struct Fixed {
    old: Tensor,
    reff: Tensor,
    adv: Tensor,
    mask: Tensor,
}

/// π_old = π_θ / r with ratios r cycling over values inside and outside the clip range
/// [0.8, 1.28], so that with Â = (+1, −0.7, +0.4) some tokens clip high (r = 1.5, Â > 0) and
/// some low (r = 0.6, Â < 0), away from the range's edges (where the loss has kinks).
fn fixed(m: &Model, b: &TrainBatch) -> Fixed {
    let lp = m.token_logprobs_at(b, TEMPERATURE).unwrap().detach();
    let (rows, cols) = lp.dims2().unwrap();
    let ratios: [f64; 7] = [1.5, 0.6, 1.1, 0.95, 1.35, 0.7, 1.0];
    let ln_r: Vec<f32> = (0..rows * cols)
        .map(|k| ratios[k % ratios.len()].ln() as f32)
        .collect();
    let ln_r = Tensor::from_vec(ln_r, (rows, cols), &Device::Cpu).unwrap();
    m.set_adapters_enabled(false);
    let reff = m.token_logprobs_at(b, TEMPERATURE).unwrap().detach();
    m.set_adapters_enabled(true);
    Fixed {
        old: (lp - ln_r).unwrap(),
        reff: reff.to_dtype(DType::F64).unwrap(),
        adv: Tensor::new(&[1.0f32, -0.7, 0.4], &Device::Cpu).unwrap(),
        mask: b.completion_mask.narrow(1, 1, cols).unwrap(),
    }
}

/// The loss (f64 aggregation of the f32 log-probs) and its statistics.
fn loss(m: &Model, b: &TrainBatch, fx: &Fixed, cfg: &LossConfig) -> (Tensor, LossStats) {
    let logp = m
        .token_logprobs_at(b, TEMPERATURE)
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap();
    let old = fx.old.to_dtype(DType::F64).unwrap();
    let out = policy_loss(
        cfg,
        &LossInputs {
            logp: &logp,
            old_logp: Some(&old),
            ref_logp: Some(&fx.reff),
            advantages: &fx.adv,
            mask: &fx.mask,
            tokens_in_batch: 12.0,
            num_sequences_in_batch: 3.0,
        },
    )
    .unwrap();
    (out.loss, out.stats)
}

fn value(t: &Tensor) -> f64 {
    t.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap()
}

/// Central difference of the loss along `dir` for `var`, Richardson-extrapolated over two step
/// sizes (cancels the O(h²) term). The LoRA forward runs in f32, whose rounding (~1e-7 in the
/// loss) divided by 2h is the noise floor: h = 8e-3/1.6e-2 keeps it near 1e-5 while staying
/// far enough from the clip edges that no token changes side.
fn numeric(var: &Var, dir: &Tensor, f: &dyn Fn() -> f64) -> f64 {
    let base = var.as_tensor().copy().unwrap();
    let cd = |h: f64| {
        var.set(&(&base + (dir * h).unwrap()).unwrap()).unwrap();
        let up = f();
        var.set(&(&base - (dir * h).unwrap()).unwrap()).unwrap();
        let down = f();
        var.set(&base).unwrap();
        (up - down) / (2.0 * h)
    };
    let (n1, n2) = (cd(1.6e-2), cd(8e-3));
    (4.0 * n2 - n1) / 3.0
}

fn check(arch: Arch, cfg: &LossConfig) {
    let tmp = tempfile::tempdir().unwrap();
    let m = lora_model(tmp.path(), arch);
    let b = batch();
    let fx = fixed(&m, &b);
    let (l, stats) = loss(&m, &b, &fx, cfg);
    // The test exercises what it claims: clipping both ways, a non-zero KL.
    if cfg.level == ImportanceSamplingLevel::Token {
        assert!(stats.clip_low > 0.0 && stats.clip_high > 0.0, "{stats:?}");
    }
    assert!(stats.kl > 1e-4, "{stats:?}");
    let grads = l.backward().unwrap();
    // The perturbations must not move any token across a clip edge (the loss has kinks there);
    // the clip statistics record exactly which tokens take the clipped branch.
    let f = || {
        let (l, s) = loss(&m, &b, &fx, cfg);
        assert_eq!(
            (s.clip_low, s.clip_high),
            (stats.clip_low, stats.clip_high),
            "a perturbation crossed a clip edge"
        );
        value(&l)
    };
    let vars = m.trainable_vars();
    assert_eq!(vars.len(), 2 * 2 * 2, "A and B of q/v in 2 layers");
    let mut max_rel = 0.0f64;
    for (i, v) in vars.iter().enumerate() {
        let g = grads
            .get(v.as_tensor())
            .unwrap_or_else(|| panic!("{arch:?}: var {i} has no gradient"))
            .to_dtype(DType::F64)
            .unwrap();
        // A random unit direction over the whole Var, and two single coordinates.
        let n = v.elem_count();
        let mut dirs = vec![{
            let d = rand_tensor(v.dims(), 900 + i as u64, 1.0, 0.0);
            let norm = value(&d.sqr().unwrap().sum_all().unwrap()).sqrt();
            (d / norm).unwrap()
        }];
        for c in [i % n, (7 * i + 3) % n] {
            let mut e = vec![0f32; n];
            e[c] = 1.0;
            dirs.push(Tensor::from_vec(e, v.dims(), &Device::Cpu).unwrap());
        }
        for (k, dir) in dirs.iter().enumerate() {
            let analytic = value(
                &(&g * dir.to_dtype(DType::F64).unwrap())
                    .unwrap()
                    .sum_all()
                    .unwrap(),
            );
            let num = numeric(v, dir, &f);
            let err = (analytic - num).abs();
            max_rel = max_rel.max(err / analytic.abs().max(1e-3));
            assert!(
                err <= 5e-3 * analytic.abs().max(num.abs()) + 3e-5,
                "{arch:?} {:?}/{:?} var {i} dir {k}: analytic {analytic} vs numeric {num}",
                cfg.loss_type,
                cfg.level
            );
        }
    }
    eprintln!(
        "{arch:?} {:?}/{:?}: loss {:.6}, max relative error {max_rel:.2e}, {stats:?}",
        cfg.loss_type,
        cfg.level,
        value(&l)
    );
}

fn grpo_cfg() -> LossConfig {
    LossConfig {
        loss_type: LossType::Grpo,
        level: ImportanceSamplingLevel::Token,
        epsilon_low: 0.2,
        epsilon_high: 0.28,
        beta: 0.05,
        max_completion_length: 8,
    }
}

#[test]
fn grpo_loss_gradient_matches_finite_differences() {
    for arch in [Arch::Llama, Arch::Qwen2, Arch::Qwen3] {
        check(arch, &grpo_cfg());
    }
}

#[test]
fn other_loss_types_and_gspo_gradients_match_finite_differences() {
    for lt in [LossType::Bnpo, LossType::DrGrpo, LossType::Dapo] {
        let mut c = grpo_cfg();
        c.loss_type = lt;
        check(Arch::Llama, &c);
    }
    // GSPO: sequence ratios are geometric means of the token ratios; ε wide enough that
    // some sequences stay unclipped (gradient through s) — the clip stats are printed.
    let mut c = grpo_cfg();
    c.level = ImportanceSamplingLevel::Sequence;
    c.epsilon_low = 0.05;
    c.epsilon_high = 0.05;
    check(Arch::Qwen3, &c);
}
