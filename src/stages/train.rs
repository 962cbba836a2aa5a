//! The `train` stage: one optimizer step of the GRPO-family loss on the step's rollouts and
//! advantages, then the trainer state written to `<run>/trainer/` (every step, so a resume is
//! exact), a row in `metrics.csv`, a `train_step` event, numbered / final checkpoints and the
//! spec's monitors.
//!
//! Step `s` (0-based) reads the rollouts with their rewards from the sibling `score` instance
//! (`outputs.scored`) and the advantages from the `rank` instance (`outputs.advantages`),
//! builds micro-batches of `train.micro_batch_size` completions (prompt + completion, right
//! padded; the loss mask covers completion tokens, and truncated completions when
//! `mask_truncated_completions`), and for each: the reference log-probs with adapters off
//! when β > 0, the policy log-probs at the sampling temperature with LoRA dropout seeded from
//! (seed, s), C's `policy_loss`, backward, accumulation. Both log-prob forwards run the LM head
//! on the completion rows only (`Model::token_logprobs_masked_at`: prompt and padding rows get
//! no logits, as TRL's `logits_to_keep`); the policy's also yields the token entropy logged as
//! `entropy`. Every `train.grad_share_every` steps the first micro-batch's loss is also split
//! into its objective terms (`policy`, `diversity`, `kl`), each measured by its own backward
//! (`grad_norm/<term>`, `grad_share/<term>`; the gradients are dropped, the update
//! unchanged). Then clipping, a non-finite check (NaN/Inf stops the run before anything is
//! written, so the last good state stays), and AdamW at the schedule's LR of step `s`. With `num_iterations` μ > 1 this repeats μ times,
//! with the sampling-time log-probs as π_old.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use serde_json::json;

use crate::engine::generate::FinishReason;
use crate::engine::model::{Model, TrainBatch};
use crate::plan::LoopPlan;
use crate::spec::{Experiment, MonitorAction};
use crate::stages::artifacts::{read_jsonl, AdvantageRow, ScoredRow};
use crate::stages::{policy, Stage, StageContext, StageOutput};
use crate::train::diversity::grad_norms;
use crate::train::loss::{masked_mean, policy_loss, policy_loss_terms, LossConfig, LossInputs};
use crate::train::metrics::{self, MetricsCsv};
use crate::train::optim::{accumulate, clip_grad_norm, grad_norm, AdamW, AdamWConfig};
use crate::train::schedule::LrSchedule;
use crate::train::state::{self, Phase, TrainerState};
use crate::train::{checkpoint, monitor};
use crate::{Error, Result};

pub mod advantage_split;
pub mod partition;

/// The key of the trainer's in-memory objects in [`crate::stages::Resources`].
pub const RESOURCE_KEY: &str = "trainer";

/// The output key a stage sets (to a message) to end the run after it completes.
pub const STOP_KEY: &str = "stop_run";

/// The `train` stage.
pub struct TrainStage;

/// The optimizer, the trainer state and the metrics file of one `apply` process.
pub struct Runtime {
    /// AdamW over the policy's trainable vars.
    pub opt: AdamW,
    /// The state as last written.
    pub state: TrainerState,
    /// `metrics.csv`.
    pub csv: MetricsCsv,
}

/// One completion to train on.
#[derive(Debug, Clone)]
pub struct Sample {
    /// The prompt's tokens.
    pub prompt_ids: Vec<u32>,
    /// The completion's tokens (those trained on).
    pub completion_ids: Vec<u32>,
    /// Sampling-time log-probs of the completion tokens (π_old when μ > 1).
    pub old_logprobs: Vec<f32>,
    /// Its advantage.
    pub advantage: f64,
    /// The part of `advantage` due to the quality reward alone, with the same normaliser (the
    /// rest is the diversity objective's part); `None` = no diversity objective. Only read to
    /// measure the terms' gradient shares.
    pub quality_advantage: Option<f64>,
    /// Whether it hit the completion length cap.
    pub truncated: bool,
}

/// What shapes one optimizer step.
#[derive(Debug, Clone)]
pub struct StepConfig {
    /// The loss.
    pub loss: LossConfig,
    /// The sampling temperature the log-probs are taken at.
    pub temperature: f64,
    /// Completions per forward/backward pass.
    pub micro_batch_size: usize,
    /// μ: updates on this batch.
    pub num_iterations: usize,
    /// Global gradient-norm clip.
    pub max_grad_norm: Option<f64>,
    /// Leave truncated completions out of the loss.
    pub mask_truncated: bool,
    /// Learning rate.
    pub lr: f64,
    /// Seed of the LoRA dropout masks.
    pub dropout_seed: u64,
    /// Measure each objective term's gradient norm on the first micro-batch (extra backward
    /// passes; the update is unchanged).
    pub grad_share: bool,
}

/// What one optimizer step measured.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepStats {
    /// The loss (summed over micro-batches; mean over the μ iterations).
    pub loss: f64,
    /// Gradient norm before clipping (of the last iteration).
    pub grad_norm: f64,
    /// Token-weighted mean KL (k3), when β > 0.
    pub kl: Option<f64>,
    /// Token-weighted mean entropy, when the loss reports it.
    pub entropy: Option<f64>,
    /// Clip fractions (token-weighted).
    pub clip_low: f64,
    /// Clip fractions (token-weighted).
    pub clip_high: f64,
    /// Clip fractions (token-weighted).
    pub clip_region: f64,
    /// Tokens in the forward passes (prompt + completion, padding excluded), per iteration.
    pub tokens: usize,
    /// Completion tokens counted in the loss.
    pub loss_tokens: f64,
    /// Each objective term's gradient norm on the first micro-batch (`policy`, `diversity`,
    /// `kl`), when [`StepConfig::grad_share`]; empty otherwise.
    pub term_grad_norms: Vec<(String, f64)>,
}

/// A right-padded micro-batch.
struct Micro {
    batch: TrainBatch,
    /// `[b, t-1]` loss mask aligned with the log-probs.
    mask: Tensor,
    /// `[b, t-1]` sampling-time log-probs.
    old: Tensor,
    /// `[b]` advantages.
    adv: Tensor,
    /// `[b]` quality parts of the advantages, when the samples have them.
    quality: Option<Tensor>,
    tokens: usize,
}

fn non_finite(what: &str, value: f64) -> Error {
    Error::Run(format!(
        "{what} is {value}: training stopped before the optimizer step, so the trainer state of \
         the previous step is kept (lower train.learning_rate, set train.max_grad_norm, or check \
         the rewards/advantages)"
    ))
}

/// The loss mask length for a sample: its completion tokens, zeroed when masked.
fn build_micro(samples: &[&Sample], mask_truncated: bool, device: &Device) -> Result<Micro> {
    let b = samples.len();
    let t = samples
        .iter()
        .map(|s| s.prompt_ids.len() + s.completion_ids.len())
        .max()
        .unwrap_or(0);
    if t < 2 {
        return Err(Error::Run(
            "a training sequence needs at least 2 tokens (prompt + completion)".into(),
        ));
    }
    let mut ids = vec![0u32; b * t];
    let mut cmask = vec![0f32; b * t];
    let mut lmask = vec![0f32; b * (t - 1)];
    let mut old = vec![0f32; b * (t - 1)];
    let mut adv = Vec::with_capacity(b);
    let mut quality = Vec::with_capacity(b);
    let mut tokens = 0;
    for (i, s) in samples.iter().enumerate() {
        let p = s.prompt_ids.len();
        if p == 0 {
            return Err(Error::Run("a rollout has no prompt tokens".into()));
        }
        let c = s.completion_ids.len();
        tokens += p + c;
        ids[i * t..i * t + p].copy_from_slice(&s.prompt_ids);
        ids[i * t + p..i * t + p + c].copy_from_slice(&s.completion_ids);
        let keep = !(mask_truncated && s.truncated);
        for k in 0..c {
            cmask[i * t + p + k] = 1.0;
            if keep {
                lmask[i * (t - 1) + p - 1 + k] = 1.0;
            }
            if let Some(lp) = s.old_logprobs.get(k) {
                old[i * (t - 1) + p - 1 + k] = *lp;
            }
        }
        adv.push(s.advantage as f32);
        quality.extend(s.quality_advantage.map(|q| q as f32));
    }
    let quality = if quality.len() == b {
        Some(Tensor::from_vec(quality, b, device)?)
    } else {
        None
    };
    Ok(Micro {
        batch: TrainBatch {
            input_ids: Tensor::from_vec(ids, (b, t), device)?,
            completion_mask: Tensor::from_vec(cmask, (b, t), device)?,
        },
        mask: Tensor::from_vec(lmask, (b, t - 1), device)?,
        old: Tensor::from_vec(old, (b, t - 1), device)?,
        adv: Tensor::from_vec(adv, b, device)?,
        quality,
        tokens,
    })
}

/// Restores adapters and training mode however the reference forward ends.
struct RefGuard<'a>(&'a Model);

impl Drop for RefGuard<'_> {
    fn drop(&mut self) {
        self.0.set_adapters_enabled(true);
    }
}

/// Run one optimizer step (μ updates) of the policy loss on `samples`. Nothing is updated
/// when the loss or the gradient norm of the first update is not finite (an error says so).
pub fn optimizer_step(
    model: &Model,
    opt: &mut AdamW,
    samples: &[Sample],
    cfg: &StepConfig,
) -> Result<StepStats> {
    if samples.is_empty() {
        return Err(Error::Run("no completions to train on".into()));
    }
    if let Some(s) = samples
        .iter()
        .find(|s| cfg.num_iterations > 1 && s.old_logprobs.len() != s.completion_ids.len())
    {
        return Err(Error::Run(format!(
            "num_iterations > 1 needs the sampling-time log-prob of every completion token; a \
             rollout has {} log-probs for {} tokens",
            s.old_logprobs.len(),
            s.completion_ids.len()
        )));
    }
    let device = model.device().clone();
    let vars = model.trainable_vars();
    if vars.is_empty() {
        return Err(Error::Run("the policy has no trainable parameters".into()));
    }
    let mb = cfg.micro_batch_size.max(1);
    let refs: Vec<&Sample> = samples.iter().collect();
    let micros: Vec<Micro> = refs
        .chunks(mb)
        .map(|c| build_micro(c, cfg.mask_truncated, &device))
        .collect::<Result<_>>()?;
    let mut loss_tokens = 0f64;
    for m in &micros {
        loss_tokens += m.mask.sum_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
    }
    let n_seq = samples.len() as f64;
    // Reference log-probs (β > 0) do not change across the μ iterations: once, adapters off,
    // no dropout, no graph.
    let ref_lps: Vec<Option<Tensor>> = if cfg.loss.beta > 0.0 {
        model.set_training(false);
        let _g = RefGuard(model);
        model.set_adapters_enabled(false);
        micros
            .iter()
            .map(|m| {
                Ok(Some(
                    model
                        .token_logprobs_masked_at(&m.batch, cfg.temperature)?
                        .detach(),
                ))
            })
            .collect::<Result<_>>()?
    } else {
        micros.iter().map(|_| None).collect()
    };
    model.set_dropout_seed(cfg.dropout_seed);
    let mut stats = StepStats {
        tokens: micros.iter().map(|m| m.tokens).sum(),
        loss_tokens,
        ..StepStats::default()
    };
    let (mut kl_w, mut ent_w, mut ent_n, mut clip_w) = (0f64, 0f64, 0f64, 0f64);
    let mut loss_sum = 0f64;
    let iters = cfg.num_iterations.max(1);
    for it in 0..iters {
        let mut acc = None;
        for (m, r) in micros.iter().zip(&ref_lps) {
            model.set_training(true);
            let lp = model.token_logprobs_entropy_at(&m.batch, cfg.temperature, true);
            model.set_training(false);
            let (lp, ent) = lp?;
            let inputs = LossInputs {
                logp: &lp,
                old_logp: if iters > 1 { Some(&m.old) } else { None },
                ref_logp: r.as_ref(),
                advantages: &m.adv,
                mask: &m.mask,
                tokens_in_batch: loss_tokens,
                num_sequences_in_batch: n_seq,
            };
            let mut out = policy_loss(&cfg.loss, &inputs)?;
            out.stats.entropy = masked_mean(&ent, &m.mask)?;
            if cfg.grad_share && it == 0 && stats.term_grad_norms.is_empty() {
                stats.term_grad_norms = term_grad_norms(cfg, m, &inputs, &vars)?;
            }
            let l = out.loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            if !l.is_finite() {
                return Err(non_finite(
                    &format!("the loss (iteration {}, micro-batch)", it + 1),
                    l,
                ));
            }
            loss_sum += l;
            let w = out.stats.tokens;
            kl_w += out.stats.kl * w;
            clip_w += w;
            stats.clip_low += out.stats.clip_low * w;
            stats.clip_high += out.stats.clip_high * w;
            stats.clip_region += out.stats.clip_region * w;
            if let Some(e) = out.stats.entropy {
                ent_w += e * w;
                ent_n += w;
            }
            let grads = out.loss.backward()?;
            accumulate(&mut acc, grads, &vars)?;
        }
        let mut g = acc.ok_or_else(|| Error::Run("no micro-batch produced gradients".into()))?;
        let norm = match cfg.max_grad_norm {
            Some(max) => clip_grad_norm(&mut g, &vars, max)?,
            None => grad_norm(&g, &vars)?,
        };
        if !norm.is_finite() {
            return Err(non_finite("the gradient norm", norm));
        }
        stats.grad_norm = norm;
        opt.step(&g, cfg.lr)?;
    }
    stats.loss = loss_sum / iters as f64;
    if clip_w > 0.0 {
        stats.clip_low /= clip_w;
        stats.clip_high /= clip_w;
        stats.clip_region /= clip_w;
        if cfg.loss.beta > 0.0 {
            stats.kl = Some(kl_w / clip_w);
        }
    }
    if ent_n > 0.0 {
        stats.entropy = Some(ent_w / ent_n);
    }
    Ok(stats)
}

/// Each objective term's gradient norm on micro-batch `m` (one backward per term on the
/// graph of `lp`, the gradients dropped): `policy` (the clipped surrogate with the quality
/// part of the advantage, all of it without a diversity objective), `diversity` (the rest of
/// the advantage) when the samples carry a quality part, and `kl` (β·KL) when β > 0.
fn term_grad_norms(
    cfg: &StepConfig,
    m: &Micro,
    inputs: &LossInputs<'_>,
    vars: &[candle_core::Var],
) -> Result<Vec<(String, f64)>> {
    let diversity;
    let parts: Vec<(&str, &Tensor)> = match &m.quality {
        Some(q) => {
            diversity = (&m.adv - q)?;
            vec![("policy", q), ("diversity", &diversity)]
        }
        None => vec![("policy", &m.adv)],
    };
    let terms = policy_loss_terms(&cfg.loss, inputs, &parts)?;
    let refs: Vec<(&str, &Tensor)> = terms.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let norms = grad_norms(&refs, vars)?;
    if let Some((name, n)) = norms.iter().find(|(_, n)| !n.is_finite()) {
        return Err(non_finite(
            &format!("the gradient norm of the {name} term"),
            *n,
        ));
    }
    Ok(norms)
}

/// AdamW settings of the spec with peak LR `lr` (the LR is given per step). The SFT warm-up
/// always uses AdamW; RL uses `train.optim` through [`AdamW::from_spec`].
pub fn adamw_config(spec: &Experiment, lr: f64) -> Result<AdamWConfig> {
    Ok(AdamWConfig {
        lr,
        beta1: spec.train.adam_beta1,
        beta2: spec.train.adam_beta2,
        eps: spec.train.adam_epsilon,
        weight_decay: spec.train.weight_decay,
    })
}

/// The objective terms whose gradient shares a spec's run logs (none when
/// `train.grad_share_every` is 0): `policy`, `diversity` with a diversity objective, `kl`
/// when β > 0.
pub fn grad_share_terms(spec: &Experiment) -> Vec<&'static str> {
    if spec.train.grad_share_every == 0 {
        return Vec::new();
    }
    let mut t = vec!["policy"];
    if spec.train.objective.diversity.is_some() {
        t.push("diversity");
    }
    if spec.train.beta > 0.0 {
        t.push("kl");
    }
    t
}

/// The metrics header of a spec's run: the fixed and per-reward columns, then
/// `grad_norm/<term>` and `grad_share/<term>` per [`grad_share_terms`].
pub fn metrics_header(spec: &Experiment) -> Vec<String> {
    let names: Vec<String> = spec.rewards.keys().cloned().collect();
    let terms = grad_share_terms(spec);
    let extra: Vec<String> = ["grad_norm", "grad_share"]
        .iter()
        .flat_map(|k| terms.iter().map(move |t| format!("{k}/{t}")))
        .collect();
    metrics::header(&names, &extra)
}

/// `metrics.csv` of a run under [`metrics_header`]; a run started before the gradient-share
/// columns existed keeps its header (the shares are then only in `events.jsonl`).
pub fn open_metrics(run: &std::path::Path, spec: &Experiment) -> Result<MetricsCsv> {
    let path = run.join(metrics::METRICS_FILE);
    MetricsCsv::open(&path, metrics_header(spec)).or_else(|e| {
        let names: Vec<String> = spec.rewards.keys().cloned().collect();
        let legacy = metrics::header(&names, &[]);
        if path.is_file() && !grad_share_terms(spec).is_empty() {
            MetricsCsv::open(&path, legacy).map_err(|_| e)
        } else {
            Err(e)
        }
    })
}

/// The trainer runtime of this process: created on first use from the run's trainer state
/// (the optimizer state is loaded when the state has one from RL steps).
fn runtime(ctx: &mut StageContext<'_>, model: &Model) -> Result<Runtime> {
    if let Some(b) = ctx.resources.remove(RESOURCE_KEY) {
        if let Ok(rt) = b.downcast::<Runtime>() {
            return Ok(*rt);
        }
    }
    let spec = ctx.spec;
    let mut opt = AdamW::from_spec(model.trainable_vars(), &spec.train)?;
    let st = match state::load(ctx.run_dir)? {
        Some(st) => {
            if st.phase == Phase::Rl && st.has_optimizer {
                state::load_optimizer(ctx.run_dir, &mut opt)?;
            }
            st
        }
        None => TrainerState::fresh(spec.seed),
    };
    let csv = open_metrics(ctx.run_dir.path(), spec)?;
    Ok(Runtime {
        opt,
        state: st,
        csv,
    })
}

/// The path an earlier instance recorded under `key`.
fn input_path(ctx: &StageContext<'_>, id: &str, key: &str) -> Result<std::path::PathBuf> {
    let rec = ctx.state.record(id).ok_or_else(|| {
        Error::Run(format!(
            "{}: needs the outputs of {id}, which has not completed",
            ctx.instance.id
        ))
    })?;
    let rel = rec
        .outputs
        .get(key)
        .and_then(|v| v.as_str())
        .ok_or_else(|| {
            Error::Run(format!(
                "{}: {id} recorded no `{key}` output",
                ctx.instance.id
            ))
        })?;
    Ok(ctx.run_dir.path().join(rel))
}

/// The samples of a step: rollouts joined with their advantages (rows without one, or not
/// `kept` — filtered zero-std groups — are left out) and, when given, the quality parts of
/// the advantages ([`advantage_split::quality_advantages`]).
pub fn join_samples(
    scored: &[ScoredRow],
    advs: &[AdvantageRow],
    quality: Option<&HashMap<(usize, usize), f64>>,
) -> Vec<Sample> {
    let by_key: HashMap<(usize, usize), f64> = advs
        .iter()
        .filter(|a| a.kept)
        .map(|a| ((a.prompt_index, a.index), a.advantage))
        .collect();
    scored
        .iter()
        .filter_map(|r| {
            let ro = &r.rollout;
            by_key
                .get(&(ro.prompt_index, ro.index))
                .map(|&advantage| Sample {
                    prompt_ids: ro.prompt_ids.clone(),
                    completion_ids: ro.completion_ids.clone(),
                    old_logprobs: ro.logprobs.clone(),
                    advantage,
                    quality_advantage: quality.map(|q| {
                        q.get(&(ro.prompt_index, ro.index))
                            .copied()
                            .unwrap_or(advantage)
                    }),
                    truncated: ro.finish == FinishReason::Length,
                })
        })
        .collect()
}

/// Reward and completion metrics of a step's scored rollouts (TRL's names).
pub fn rollout_metrics(scored: &[ScoredRow], reward_names: &[String]) -> BTreeMap<String, f64> {
    let mut m = BTreeMap::new();
    let mut groups: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    for r in scored {
        if let Some(x) = r.reward {
            groups.entry(r.rollout.prompt_index).or_default().push(x);
        }
    }
    let all: Vec<f64> = groups.values().flatten().copied().collect();
    if !all.is_empty() {
        m.insert("reward".into(), metrics::mean_std(&all).0);
        let stds: Vec<f64> = groups.values().map(|g| metrics::mean_std(g).1).collect();
        m.insert("reward_std".into(), metrics::mean_std(&stds).0);
        let zero = stds.iter().filter(|s| **s == 0.0).count();
        m.insert(
            "frac_reward_zero_std".into(),
            zero as f64 / stds.len() as f64,
        );
    }
    for name in reward_names {
        let vals: Vec<Option<f64>> = scored
            .iter()
            .map(|r| r.rewards.get(name).copied().flatten())
            .collect();
        if vals.is_empty() {
            continue;
        }
        let ok: Vec<f64> = vals.iter().flatten().copied().collect();
        if !ok.is_empty() {
            let (mean, std) = metrics::mean_std(&ok);
            m.insert(format!("rewards/{name}/mean"), mean);
            m.insert(format!("rewards/{name}/std"), std);
        }
        m.insert(
            format!("rewards/{name}/unscorable"),
            (vals.len() - ok.len()) as f64 / vals.len() as f64,
        );
    }
    if !scored.is_empty() {
        let lens: Vec<usize> = scored
            .iter()
            .map(|r| r.rollout.completion_ids.len())
            .collect();
        m.insert(
            "completions/mean_length".into(),
            lens.iter().sum::<usize>() as f64 / lens.len() as f64,
        );
        m.insert(
            "completions/min_length".into(),
            lens.iter().copied().min().unwrap_or(0) as f64,
        );
        m.insert(
            "completions/max_length".into(),
            lens.iter().copied().max().unwrap_or(0) as f64,
        );
        let clipped = scored
            .iter()
            .filter(|r| r.rollout.finish == FinishReason::Length)
            .count();
        m.insert(
            "completions/clipped_ratio".into(),
            clipped as f64 / scored.len() as f64,
        );
    }
    m
}

/// Whether global optimizer step `s` (0-based) measures the terms' gradient shares.
pub fn grad_share_step(spec: &Experiment, s: usize) -> bool {
    let every = spec.train.grad_share_every;
    every > 0 && s.is_multiple_of(every)
}

/// The sampling temperature the loss's log-probs are taken at (1 for greedy sampling).
fn loss_temperature(spec: &Experiment) -> Result<f64> {
    let t = spec.generate.sampler(None)?.temperature;
    Ok(if t > 0.0 { t } else { 1.0 })
}

fn total_steps(ctx: &StageContext<'_>) -> Result<usize> {
    match &ctx.plan.loop_ {
        LoopPlan::Steps { total_steps, .. } => Ok(*total_steps),
        LoopPlan::Partitions { .. } => Err(Error::Run(format!(
            "{}: a step-numbered train instance in a partitioned plan",
            ctx.instance.id
        ))),
    }
}

fn output(metrics: &BTreeMap<String, f64>, step: usize, stop: Option<String>) -> StageOutput {
    let mut o = json!({
        "metrics": metrics,
        "step": step,
        "trainer": state::TRAINER_DIR,
    });
    if let Some(msg) = stop {
        o[STOP_KEY] = json!(msg);
    }
    StageOutput { outputs: o }
}

impl Stage for TrainStage {
    fn run(&self, ctx: &mut StageContext<'_>) -> Result<StageOutput> {
        let started = Instant::now();
        let step = ctx.instance.step;
        let date = ctx.instance.date.clone();
        let model: Arc<Model> = policy::policy(ctx)?.model.clone();
        let mut rt = runtime(ctx, &model)?;
        let result = match (step, date) {
            (Some(s), _) => total_steps(ctx)
                .and_then(|total| train_step(ctx, &model, &mut rt, s, total, started)),
            (None, Some(d)) => partition::train_partition(ctx, &model, &mut rt, &d),
            (None, None) => Err(Error::Run(format!(
                "train instance {} has neither a step nor a partition date",
                ctx.instance.id
            ))),
        };
        ctx.resources.insert(RESOURCE_KEY, rt);
        result
    }
}

fn train_step(
    ctx: &mut StageContext<'_>,
    model: &Model,
    rt: &mut Runtime,
    s: usize,
    total: usize,
    started: Instant,
) -> Result<StageOutput> {
    let spec = ctx.spec;
    let run = ctx.run_dir;
    if rt.state.phase == Phase::Rl && rt.state.step == s + 1 {
        // The step completed but the run stopped before recording it: report it again.
        rt.csv
            .write_row(s + 1, &csv_row(&rt.csv, &rt.state.last_metrics))?;
        return Ok(output(&rt.state.last_metrics, s + 1, None));
    }
    if rt.state.step != s {
        return Err(Error::Run(format!(
            "the trainer state in {} is at step {} but the plan's next train step is {}; \
             resume from a run directory whose trainer/ matches its state.json",
            state::trainer_dir(run).display(),
            rt.state.step,
            s
        )));
    }
    let prefix = ctx
        .instance
        .id
        .rsplit_once('/')
        .map_or(String::new(), |(p, _)| format!("{p}/"));
    let scored: Vec<ScoredRow> =
        read_jsonl(&input_path(ctx, &format!("{prefix}score"), "scored")?)?;
    let rank_id = format!("{prefix}rank");
    let advs: Vec<AdvantageRow> = read_jsonl(&input_path(ctx, &rank_id, "advantages")?)?;
    let reward_names: Vec<String> = spec.rewards.keys().cloned().collect();
    let mut m = rollout_metrics(&scored, &reward_names);
    if let Some(z) = ctx
        .state
        .record(&rank_id)
        .and_then(|r| r.outputs.get("frac_reward_zero_std"))
        .and_then(|v| v.as_f64())
    {
        m.insert("frac_reward_zero_std".into(), z);
    }
    let grad_share = grad_share_step(spec, s);
    let quality = if grad_share {
        advantage_split::quality_advantages(spec, Some(s), &scored, &advs, ctx.resources)?
    } else {
        None
    };
    let samples = join_samples(&scored, &advs, quality.as_ref());
    let sched: LrSchedule = spec.lr_schedule_for(total);
    let lr = sched.lr_at(s);
    let dseed = state::dropout_seed(spec.seed, s);
    let cfg = StepConfig {
        loss: LossConfig::from_spec(
            &spec.train,
            spec.generate.sampler(None)?.max_completion_length,
        ),
        temperature: loss_temperature(spec)?,
        micro_batch_size: spec.train.micro_batch_size.unwrap_or(samples.len().max(1)),
        num_iterations: spec.train.num_iterations,
        max_grad_norm: spec.train.max_grad_norm,
        mask_truncated: spec.train.mask_truncated_completions,
        lr,
        dropout_seed: dseed,
        grad_share,
    };
    let (m, stop) = step_core(ctx, model, rt, m, &samples, &cfg, &sched, s, started)?;
    let done = s + 1;
    if done == total {
        let p = checkpoint::save_snapshot(run, "final")?;
        ctx.events.emit(
            Some(&ctx.instance.id),
            "checkpoint_saved",
            json!({"step": done, "path": rel(run, &p)}),
        )?;
    }
    Ok(output(&m, done, stop))
}

/// One optimizer step `s` (0-based, global) on `samples` with the rollout metrics `m`: the
/// update, its metrics, the monitors, the trainer state, the metrics row, the event and the
/// numbered checkpoint. Returns the step's metrics and a stop message when a monitor fired
/// with `action: stop`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn step_core(
    ctx: &mut StageContext<'_>,
    model: &Model,
    rt: &mut Runtime,
    mut m: BTreeMap<String, f64>,
    samples: &[Sample],
    cfg: &StepConfig,
    sched: &LrSchedule,
    s: usize,
    started: Instant,
) -> Result<(BTreeMap<String, f64>, Option<String>)> {
    let spec = ctx.spec;
    let run = ctx.run_dir;
    let lr = cfg.lr;
    let dseed = cfg.dropout_seed;
    let sched = sched.clone();
    let t_opt = Instant::now();
    if samples.is_empty() {
        ctx.events.emit(
            Some(&ctx.instance.id),
            "train_skipped",
            json!({"step": s + 1, "reason": "no completion has an advantage (every group filtered)"}),
        )?;
    } else {
        let st = optimizer_step(model, &mut rt.opt, samples, cfg)?;
        m.insert("loss".into(), st.loss);
        m.insert("grad_norm".into(), st.grad_norm);
        if let Some(kl) = st.kl {
            m.insert("kl".into(), kl);
        }
        if let Some(e) = st.entropy {
            m.insert("entropy".into(), e);
        }
        let total: f64 = st.term_grad_norms.iter().map(|(_, n)| n).sum();
        for (term, n) in &st.term_grad_norms {
            m.insert(format!("grad_norm/{term}"), *n);
            m.insert(
                format!("grad_share/{term}"),
                if total > 0.0 { n / total } else { 0.0 },
            );
        }
        m.insert("clip_ratio/low_mean".into(), st.clip_low);
        m.insert("clip_ratio/high_mean".into(), st.clip_high);
        m.insert("clip_ratio/region_mean".into(), st.clip_region);
        let secs = t_opt.elapsed().as_secs_f64();
        m.insert("num_tokens".into(), st.tokens as f64);
        if secs > 0.0 {
            m.insert(
                "tokens_per_s".into(),
                (st.tokens * cfg.num_iterations.max(1)) as f64 / secs,
            );
        }
    }
    m.insert("lr".into(), lr);
    m.insert("step_time".into(), started.elapsed().as_secs_f64());

    let done = s + 1;
    let fired = monitor::check(&spec.monitors, done, &m, &mut rt.state.monitors);
    rt.state.phase = Phase::Rl;
    rt.state.step = done;
    rt.state.lr = Some(lr);
    rt.state.scheduler = Some(sched);
    rt.state.seed = spec.seed;
    rt.state.dropout_seed = Some(dseed);
    rt.state.data_cursor = done;
    rt.state.last_metrics = m.clone();
    state::save(run, &mut rt.state, model, Some(&rt.opt))?;
    rt.csv.write_row(done, &csv_row(&rt.csv, &m))?;
    ctx.events.emit(
        Some(&ctx.instance.id),
        "train_step",
        json!({"step": done, "metrics": m}),
    )?;
    let ck = &spec.train.checkpoint;
    if ck.every.is_some_and(|e| e > 0 && done.is_multiple_of(e)) {
        let p = checkpoint::save_numbered(run, done, ck.keep_last)?;
        ctx.events.emit(
            Some(&ctx.instance.id),
            "checkpoint_saved",
            json!({"step": done, "path": rel(run, &p)}),
        )?;
    }
    let mut stop = None;
    for t in fired {
        let kind = match t.action {
            MonitorAction::Warn => "monitor_warning",
            MonitorAction::Stop => "monitor_stop",
        };
        ctx.events.emit(
            Some(&ctx.instance.id),
            kind,
            json!({"monitor": t.key, "value": t.value, "message": t.message}),
        )?;
        if t.action == MonitorAction::Stop && stop.is_none() {
            let p = checkpoint::save_numbered(run, done, ck.keep_last)?;
            stop = Some(format!("{} (checkpoint {})", t.message, rel(run, &p)));
        }
    }
    Ok((m, stop))
}

/// The step's metrics for `metrics.csv`: all of them, less the gradient-share columns when
/// the file predates them (see [`open_metrics`]).
fn csv_row(csv: &MetricsCsv, m: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    m.iter()
        .filter(|(k, _)| {
            !(k.starts_with("grad_norm/") || k.starts_with("grad_share/"))
                || csv.header().contains(k)
        })
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

fn rel(run: &crate::run::RunDir, p: &std::path::Path) -> String {
    p.strip_prefix(run.path())
        .unwrap_or(p)
        .to_string_lossy()
        .into_owned()
}

/// The model input and answer-token loss mask of SFT examples (prompt + answer).
pub(crate) fn build_sft_micro(
    samples: &[&Sample],
    device: &Device,
) -> Result<(TrainBatch, Tensor)> {
    let m = build_micro(samples, false, device)?;
    Ok((m.batch, m.mask))
}
