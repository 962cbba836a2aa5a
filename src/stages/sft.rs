//! The `sft` stage: a supervised warm-up before RL (`train.sft`, data `data.sft` or
//! `data.train`). Each record with a reference becomes its prompt (chat-templated as for
//! sampling), then the reference answer, then the end-of-turn token; the loss is the cross-entropy on the answer tokens
//! only (token mean over each optimizer batch, accumulated over micro-batches), for
//! `epochs` passes in batches of `batch_size` records, with its own LR (constant after a 3 %
//! warm-up) and AdamW. At the end the adapter is written as the trainer state (phase `sft`,
//! RL step 0, no optimizer state: RL starts its own AdamW), so RL continues from it; per-step
//! metrics go to `sft_metrics.csv` and `sft_step` events.
//!
//! The state is written once, at the end: a run interrupted during SFT has no trainer state,
//! and `--resume` redoes the warm-up from the same fresh adapter — deterministic, so exact.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use candle_core::DType;
use serde_json::json;

use crate::data::{load_records, step_batch};
use crate::engine::model::Model;
use crate::engine::tokenizer::Tok;
use crate::stages::train::{adamw_config, Sample};
use crate::stages::{policy, Stage, StageContext, StageOutput};
use crate::train::loss::sft_nll_sum;
use crate::train::metrics::MetricsCsv;
use crate::train::optim::{accumulate, clip_grad_norm, grad_norm, AdamW};
use crate::train::schedule::{warmup_steps_from_ratio, LrSchedule, LrSchedulerType};
use crate::train::state::{self, Phase, TrainerState};
use crate::{Error, Result};

/// The SFT metrics file under the run directory.
pub const SFT_METRICS_FILE: &str = "sft_metrics.csv";

/// Fraction of the SFT steps spent warming up.
pub const SFT_WARMUP_RATIO: f64 = 0.03;

/// The `sft` stage.
pub struct SftStage;

/// The answer text of a reference value (strings as they are, other JSON compactly).
fn reference_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The SFT LR schedule over `total` steps: constant after a 3 % warm-up.
pub fn sft_schedule(lr: f64, total: usize) -> LrSchedule {
    LrSchedule {
        kind: LrSchedulerType::ConstantWithWarmup,
        peak_lr: lr,
        total_steps: total,
        warmup_steps: warmup_steps_from_ratio(SFT_WARMUP_RATIO, total),
        min_lr_rate: 0.0,
        decay_ratio: 0.0,
    }
}

/// Steps of `epochs` passes over `n` examples in batches of `batch`.
pub fn sft_steps(n: usize, batch: usize, epochs: f64) -> usize {
    (epochs * n.div_ceil(batch.max(1)) as f64).ceil() as usize
}

/// One SFT optimizer step on `batch`: mean NLL over all answer tokens of the batch.
/// Returns (loss, grad norm before clipping, answer tokens).
pub fn sft_step(
    model: &Model,
    opt: &mut AdamW,
    batch: &[&Sample],
    micro: usize,
    max_grad_norm: Option<f64>,
    lr: f64,
    dropout_seed: u64,
) -> Result<(f64, f64, f64)> {
    let vars = model.trainable_vars();
    let device = model.device().clone();
    let total_tokens: usize = batch.iter().map(|s| s.completion_ids.len()).sum();
    if total_tokens == 0 {
        return Err(Error::Run("an SFT batch has no answer tokens".into()));
    }
    model.set_dropout_seed(dropout_seed);
    let mut acc = None;
    let mut loss = 0f64;
    for chunk in batch.chunks(micro.max(1)) {
        let m = super::train::build_sft_micro(chunk, &device)?;
        model.set_training(true);
        // Only the answer rows need the LM head (the mask is the completion mask).
        let lp = model.token_logprobs_masked_at(&m.0, 1.0);
        model.set_training(false);
        let (sum, _) = sft_nll_sum(&lp?, &m.1)?;
        let l = sum.affine(1.0 / total_tokens as f64, 0.0)?;
        let v = l.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        if !v.is_finite() {
            return Err(Error::Run(format!(
                "SFT loss is {v}: the warm-up stopped before the optimizer step (lower \
                 train.sft.learning_rate)"
            )));
        }
        loss += v;
        accumulate(&mut acc, l.backward()?, &vars)?;
    }
    let mut g = acc.ok_or_else(|| Error::Run("an SFT step produced no gradients".into()))?;
    let norm = match max_grad_norm {
        Some(m) => clip_grad_norm(&mut g, &vars, m)?,
        None => grad_norm(&g, &vars)?,
    };
    if !norm.is_finite() {
        return Err(Error::Run(format!(
            "SFT gradient norm is {norm}: the warm-up stopped before the optimizer step"
        )));
    }
    opt.step(&g, lr)?;
    Ok((loss, norm, total_tokens as f64))
}

fn examples(ctx: &StageContext<'_>, tok: &Tok) -> Result<Vec<Sample>> {
    let spec = ctx.spec;
    let sft = spec
        .train
        .sft
        .as_ref()
        .ok_or_else(|| Error::Spec("the sft stage needs train.sft".into()))?;
    let src = spec
        .data
        .sft
        .as_ref()
        .or(spec.data.train.as_ref())
        .ok_or_else(|| Error::Spec("the sft stage needs data.sft or data.train".into()))?;
    if src.path.contains("{date}") {
        return Err(Error::Spec(format!(
            "data.sft: `{}` is partitioned by {{date}}; SFT needs one file",
            src.path
        )));
    }
    let eos = *tok.eos_ids.first().ok_or_else(|| {
        Error::Tokenizer("the tokenizer has no end-of-turn token to end SFT answers with".into())
    })?;
    let records = load_records(spec, src, None)?;
    let mut out = Vec::new();
    let mut no_ref = 0;
    for r in &records {
        if !sft.tasks.is_empty() && !r.task.as_ref().is_some_and(|t| sft.tasks.contains(t)) {
            continue;
        }
        let Some(reference) = &r.reference else {
            no_ref += 1;
            continue;
        };
        let prompt_ids = policy::prompt_ids(tok, &r.messages, spec)?;
        let mut completion_ids = tok.encode(&reference_text(reference))?;
        completion_ids.push(eos);
        out.push(Sample {
            prompt_ids,
            completion_ids,
            old_logprobs: Vec::new(),
            advantage: 0.0,
            quality_advantage: None,
            truncated: false,
        });
    }
    if out.is_empty() {
        return Err(Error::Spec(format!(
            "the SFT data {} has no usable records ({} of {} lack a reference{})",
            src.path,
            no_ref,
            records.len(),
            if sft.tasks.is_empty() {
                String::new()
            } else {
                format!("; tasks kept: {}", sft.tasks.join(", "))
            }
        )));
    }
    Ok(out)
}

impl Stage for SftStage {
    fn run(&self, ctx: &mut StageContext<'_>) -> Result<StageOutput> {
        let spec = ctx.spec;
        let sft = spec
            .train
            .sft
            .clone()
            .ok_or_else(|| Error::Spec("the sft stage needs train.sft".into()))?;
        let (model, tok): (Arc<Model>, Arc<Tok>) = {
            let p = policy::policy(ctx)?;
            (p.model.clone(), p.tok.clone())
        };
        if let Some(st) = state::load(ctx.run_dir)? {
            if st.sft_steps > 0 || st.step > 0 {
                // Finished before (the run stopped before recording it).
                return Ok(StageOutput {
                    outputs: json!({"steps": st.sft_steps, "trainer": state::TRAINER_DIR}),
                });
            }
        }
        let data = examples(ctx, &tok)?;
        let total = sft_steps(data.len(), sft.batch_size, sft.epochs);
        let sched = sft_schedule(sft.learning_rate, total);
        let mut opt = AdamW::new(
            model.trainable_vars(),
            adamw_config(spec, sft.learning_rate)?,
        )?;
        let csv = MetricsCsv::open(
            &ctx.run_dir.path().join(SFT_METRICS_FILE),
            ["step", "loss", "lr", "grad_norm", "tokens", "step_time"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        )?;
        let micro = spec.train.micro_batch_size.unwrap_or(sft.batch_size);
        let mut last_loss = f64::NAN;
        for step in 0..total {
            let t0 = Instant::now();
            let idx = step_batch(data.len(), sft.batch_size, spec.seed, step, true);
            let batch: Vec<&Sample> = idx.iter().filter_map(|&i| data.get(i)).collect();
            let lr = sched.lr_at(step);
            let (loss, norm, tokens) = sft_step(
                &model,
                &mut opt,
                &batch,
                micro,
                spec.train.max_grad_norm,
                lr,
                state::dropout_seed(spec.seed ^ 0x5F7_u64, step),
            )?;
            last_loss = loss;
            let row = BTreeMap::from([
                ("loss".to_string(), loss),
                ("lr".to_string(), lr),
                ("grad_norm".to_string(), norm),
                ("tokens".to_string(), tokens),
                ("step_time".to_string(), t0.elapsed().as_secs_f64()),
            ]);
            csv.write_row(step + 1, &row)?;
            ctx.events.emit(
                Some(&ctx.instance.id),
                "sft_step",
                json!({"step": step + 1, "of": total, "metrics": row}),
            )?;
        }
        let mut st = TrainerState::fresh(spec.seed);
        st.phase = Phase::Sft;
        st.sft_steps = total;
        st.scheduler = Some(sched);
        state::save(ctx.run_dir, &mut st, &model, None)?;
        Ok(StageOutput {
            outputs: json!({
                "steps": total,
                "examples": data.len(),
                "final_loss": last_loss,
                "metrics": SFT_METRICS_FILE,
                "trainer": state::TRAINER_DIR,
            }),
        })
    }
}
