//! A tiny policy and fake generate/score/rank stages that write deterministic rollouts,
//! rewards and advantages (from (seed, step)), so the real `train` stage runs through `apply`
//! without sampling or reward code. Shared by tests/train_stage.rs and tests/resume.rs.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use runner::engine::generate::FinishReason;
use runner::engine::load::{self, LoadOptions, ModelFiles};
use runner::engine::model::Arch;
use runner::engine::model::TrainBatch;
use runner::engine::tokenizer::Tok;
use runner::run::{apply, ApplyReport, ApplyRequest};
use runner::stages::artifacts::{write_jsonl, AdvantageRow, RolloutRow, ScoredRow};
use runner::stages::policy::{lora_config, Policy, RESOURCE_KEY};
use runner::stages::{Registry, Stage, StageContext, StageKind, StageOutput};
use runner::{Error, Result};
use serde_json::json;

use crate::common::{random_weights, tiny_config, write_hf_dir, VOCAB};

/// A word-level tokenizer over the tiny vocabulary (`t0` … `t60`); id 2 ends a turn.
pub fn tiny_tok() -> Tok {
    let vocab: HashMap<String, u32> = (0..VOCAB as u32).map(|i| (format!("t{i}"), i)).collect();
    let model = tokenizers::models::wordlevel::WordLevel::builder()
        .vocab(vocab.into_iter().collect())
        .unk_token("t0".into())
        .build()
        .unwrap();
    let mut inner = tokenizers::Tokenizer::new(model);
    inner.with_pre_tokenizer(Some(tokenizers::pre_tokenizers::whitespace::Whitespace {}));
    Tok {
        inner,
        eos_ids: vec![2],
        chat_template: None,
        bos_token: None,
        eos_token: Some("t2".into()),
    }
}

/// Write the tiny Llama model to `dir`.
pub fn write_model(dir: &Path) -> PathBuf {
    let cfg = tiny_config(Arch::Llama, false);
    write_hf_dir(dir, &cfg, &random_weights(&cfg, 11));
    dir.to_path_buf()
}

/// A spec for the fake pipeline: `train_extra` lines go into `train:` (indented by two
/// spaces), `extra` is top-level YAML.
pub fn spec_yaml(base: &Path, steps: usize, train_extra: &str, extra: &str) -> String {
    format!(
        "name: tiny\nseed: 7\nmodel:\n  base: '{}'\n  adapter: {{r: 4, lora_alpha: 8, lora_dropout: 0.1, target_modules: [q_proj, v_proj]}}\n\
rewards:\n  fmt: {{kind: format, regex: 'x', weight: 1.0}}\n\
generate: {{num_generations: 4, max_completion_length: 6, temperature: 0.9}}\n\
eval: {{sets: []}}\n\
train:\n  max_steps: {steps}\n  learning_rate: 0.02\n  lr_scheduler_type: linear\n  micro_batch_size: 4\n  batch_size: 2\n  checkpoint: {{every: 2, keep_last: 1}}\n{train_extra}\n{extra}\n",
        base.display()
    )
}

fn lcg(seed: u64) -> impl FnMut(u64) -> u64 {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    move |n| {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (s >> 33) % n
    }
}

/// Loads the tiny policy (fresh LoRA from the spec seed, then the run's trainer state), as the
/// real policy loader does; writes nothing.
pub struct FakeGenerate {
    /// Fail (as a crash would) when asked to run this 0-based step.
    pub fail_at: Option<usize>,
}

impl Stage for FakeGenerate {
    fn run(&self, ctx: &mut StageContext<'_>) -> Result<StageOutput> {
        if self.fail_at.is_some() && ctx.instance.step == self.fail_at {
            return Err(Error::Run("injected failure".into()));
        }
        ensure_policy(ctx)?;
        Ok(StageOutput { outputs: json!({}) })
    }
}

/// The tiny policy in the resources (the real loader needs a tokenizer file).
pub fn ensure_policy(ctx: &mut StageContext<'_>) -> Result<()> {
    {
        if ctx.resources.get_mut::<Policy>(RESOURCE_KEY).is_none() {
            let opts = LoadOptions {
                dtype: DType::F32,
                device: Device::Cpu,
                lora: None,
            };
            let base = PathBuf::from(&ctx.spec.model.base);
            let mut model = load::load_model(&ModelFiles::HfDir(base), &opts)?.0;
            model.attach_lora(&lora_config(ctx.spec)?, ctx.spec.seed)?;
            runner::train::state::restore_into(ctx.run_dir, &mut model)?;
            ctx.resources.insert(
                RESOURCE_KEY,
                Policy {
                    model: Arc::new(model),
                    tok: Arc::new(tiny_tok()),
                },
            );
        }
        Ok(())
    }
}

/// The real train stage, after putting the tiny policy in place.
pub struct WithPolicy(pub Arc<dyn Stage>);

impl Stage for WithPolicy {
    fn run(&self, ctx: &mut StageContext<'_>) -> Result<StageOutput> {
        ensure_policy(ctx)?;
        self.0.run(ctx)
    }
}

/// Deterministic scored rollouts of step s: 2 prompts × 4 completions.
pub fn scored_rows(seed: u64, step: usize) -> Vec<ScoredRow> {
    let mut r = lcg(seed * 1000 + step as u64);
    let mut out = Vec::new();
    for p in 0..2usize {
        let plen = 3 + r(3) as usize;
        let prompt_ids: Vec<u32> = (0..plen).map(|_| 3 + r(50) as u32).collect();
        for i in 0..4usize {
            let clen = 2 + r(5) as usize;
            let completion_ids: Vec<u32> = (0..clen).map(|_| 3 + r(50) as u32).collect();
            let reward = r(3) as f64 / 2.0;
            out.push(ScoredRow {
                rollout: RolloutRow {
                    record_id: format!("r{p}"),
                    prompt_index: p,
                    index: i,
                    prompt: String::new(),
                    // a text over 3 words (so groups repeat bigrams and text diversity
                    // measures have something to tell apart)
                    completion: completion_ids
                        .iter()
                        .map(|i| format!("w{}", i % 3))
                        .collect::<Vec<_>>()
                        .join(" "),
                    prompt_ids: prompt_ids.clone(),
                    completion_ids,
                    logprobs: vec![-3.0; clen],
                    finish: if clen == 6 {
                        FinishReason::Length
                    } else {
                        FinishReason::Eos
                    },
                    task: None,
                    reference: None,
                    record: Default::default(),
                },
                rewards: BTreeMap::from([("fmt".to_string(), Some(reward))]),
                reward: Some(reward),
            });
        }
    }
    out
}

/// Writes [`scored_rows`] as the score stage's `scored` output.
pub struct FakeScore;

impl Stage for FakeScore {
    fn run(&self, ctx: &mut StageContext<'_>) -> Result<StageOutput> {
        let step = ctx.instance.step.unwrap_or(0);
        let dir = ctx.run_dir.stage_dir(&ctx.instance.id)?;
        let path = dir.join("scored.jsonl");
        write_jsonl(&path, &scored_rows(ctx.spec.seed, step))?;
        let rel = path
            .strip_prefix(ctx.run_dir.path())
            .unwrap()
            .to_string_lossy()
            .into_owned();
        Ok(StageOutput {
            outputs: json!({ "scored": rel }),
        })
    }
}

/// Group-centred, std-scaled advantages of the step's rewards; overflowing ones at `nan_at`
/// (the loss becomes infinite).
pub struct FakeRank {
    pub nan_at: Option<usize>,
}

impl Stage for FakeRank {
    fn run(&self, ctx: &mut StageContext<'_>) -> Result<StageOutput> {
        let step = ctx.instance.step.unwrap_or(0);
        let rows = scored_rows(ctx.spec.seed, step);
        let mut advs = Vec::new();
        let mut zero = 0;
        for p in 0..2 {
            let g: Vec<&ScoredRow> = rows
                .iter()
                .filter(|r| r.rollout.prompt_index == p)
                .collect();
            let xs: Vec<f64> = g.iter().map(|r| r.reward.unwrap()).collect();
            let (m, s) = runner::train::metrics::mean_std(&xs);
            if s == 0.0 {
                zero += 1;
            }
            for r in g {
                let mut a = (r.reward.unwrap() - m) / (s + 1e-4);
                if self.nan_at == Some(step) {
                    // JSON has no NaN: an advantage that overflows f32 in the loss.
                    a = 3.0e38;
                }
                advs.push(AdvantageRow {
                    record_id: r.rollout.record_id.clone(),
                    prompt_index: p,
                    index: r.rollout.index,
                    advantage: a,
                    kept: true,
                });
            }
        }
        let dir = ctx.run_dir.stage_dir(&ctx.instance.id)?;
        let path = dir.join("advantages.jsonl");
        write_jsonl(&path, &advs)?;
        let rel = path
            .strip_prefix(ctx.run_dir.path())
            .unwrap()
            .to_string_lossy()
            .into_owned();
        Ok(StageOutput {
            outputs: json!({ "advantages": rel, "frac_reward_zero_std": zero as f64 / 2.0 }),
        })
    }
}

/// The builtin registry with the fake generate/score/rank.
pub fn registry(fail_at: Option<usize>, nan_at: Option<usize>) -> Registry {
    let mut r = Registry::builtin();
    r.register(StageKind::Generate, Arc::new(FakeGenerate { fail_at }));
    r.register(StageKind::Score, Arc::new(FakeScore));
    r.register(StageKind::Rank, Arc::new(FakeRank { nan_at }));
    r.register(
        StageKind::Train,
        Arc::new(WithPolicy(Arc::new(runner::stages::train::TrainStage))),
    );
    r
}

/// Apply `spec` (a file) into `runs`.
pub fn apply_spec(spec: &Path, runs: &Path, reg: &Registry) -> Result<ApplyReport> {
    apply(
        &ApplyRequest {
            input: Some(spec.to_path_buf()),
            runs_dir: runs.to_path_buf(),
            ..ApplyRequest::default()
        },
        reg,
    )
}

/// Resume `run_dir`.
pub fn resume(run_dir: &Path, reg: &Registry) -> Result<ApplyReport> {
    apply(
        &ApplyRequest {
            resume: Some(run_dir.to_path_buf()),
            ..ApplyRequest::default()
        },
        reg,
    )
}

/// The single run directory under `runs/tiny/`.
pub fn only_run(runs: &Path) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(runs.join("tiny"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs.remove(0)
}

/// The tensors of a safetensors file, as f64 vectors by name (exact for f32).
pub fn tensors(path: &Path) -> BTreeMap<String, Vec<f64>> {
    candle_core::safetensors::load(path, &Device::Cpu)
        .unwrap()
        .into_iter()
        .map(|(k, t)| {
            let v = t.to_dtype(DType::F64).unwrap().flatten_all().unwrap();
            (k, v.to_vec1::<f64>().unwrap())
        })
        .collect()
}

/// Rows of (prompt, completion) ids as a right-padded batch (padding id 0) and its `[b, t-1]`
/// loss mask (the completion positions).
pub fn prompt_completion_batch(rows: &[(Vec<u32>, Vec<u32>)]) -> (TrainBatch, Tensor) {
    let b = rows.len();
    let t = rows
        .iter()
        .map(|(p, c)| p.len() + c.len())
        .max()
        .unwrap_or(0);
    let mut ids = vec![0u32; b * t];
    let mut cm = vec![0f32; b * t];
    let mut lm = vec![0f32; b * (t - 1)];
    for (i, (p, c)) in rows.iter().enumerate() {
        ids[i * t..i * t + p.len()].copy_from_slice(p);
        ids[i * t + p.len()..i * t + p.len() + c.len()].copy_from_slice(c);
        for k in 0..c.len() {
            cm[i * t + p.len() + k] = 1.0;
            lm[i * (t - 1) + p.len() - 1 + k] = 1.0;
        }
    }
    let dev = Device::Cpu;
    (
        TrainBatch {
            input_ids: Tensor::from_vec(ids, (b, t), &dev).expect("ids"),
            completion_mask: Tensor::from_vec(cm, (b, t), &dev).expect("completion mask"),
        },
        Tensor::from_vec(lm, (b, t - 1), &dev).expect("loss mask"),
    )
}

/// The tiny policy of [`write_model`] loaded with LoRA r 4 on q/v (no dropout), B random so
/// that every adapter gradient is non-zero.
pub fn tiny_lora_model(dir: &Path) -> runner::engine::model::Model {
    let base = write_model(dir);
    let opts = LoadOptions {
        dtype: DType::F32,
        device: Device::Cpu,
        lora: Some(runner::engine::model::LoraConfig {
            r: 4,
            alpha: 8.0,
            dropout: 0.0,
            target_modules: vec!["q_proj".into(), "v_proj".into()],
        }),
    };
    let mut m = load::load_model(&ModelFiles::HfDir(base), &opts)
        .expect("tiny model")
        .0;
    crate::common::random_lora(&mut m);
    m
}

/// AdamW over the model's trainable variables (β 0.9/0.999, ε 1e-8; the schedule gives the LR
/// per step, `lr` is the optimizer's own).
pub fn adamw(
    model: &runner::engine::model::Model,
    lr: f64,
    weight_decay: f64,
) -> runner::train::optim::AdamW {
    runner::train::optim::AdamW::new(
        model.trainable_vars(),
        runner::train::optim::AdamWConfig {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
        },
    )
    .expect("AdamW")
}

/// The values of the model's trainable variables, to compare before/after a step.
pub fn trainable_values(model: &runner::engine::model::Model) -> Vec<Vec<f32>> {
    model
        .trainable_vars()
        .iter()
        .map(|v| {
            v.as_tensor()
                .flatten_all()
                .and_then(|t| t.to_vec1::<f32>())
                .expect("trainable values")
        })
        .collect()
}
