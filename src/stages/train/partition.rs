//! Training on one partition of the daily loop (`schedule.mode: partitions`).
//!
//! Partition D's train instance trains on what D's score/rank instances produced (the
//! predictions of D−1, or an override's, with their advantages): `train.max_steps` optimizer
//! steps when set, else `num_train_epochs` epochs over the scored prompt groups at
//! `batch_size × gradient_accumulation_steps` groups per step (one epoch per day in the seeds).
//! Step k of the partition takes the groups of [`crate::data::step_batch`] seeded from
//! (seed, date). The LR schedule restarts every partition (`lr_schedule_for(partition steps)`,
//! as `runner plan` shows); the optimizer moments and the global step count carry on, so
//! `metrics.csv` and the trainer state number steps across the whole run.
//!
//! The partition starts at the step the previous partition's train instance ended on (or the
//! imported model's step, see [`crate::plan::partitions::Lineage`]); a partition interrupted
//! midway continues from the trainer state's step. Afterwards the model is snapshotted to
//! `checkpoints/final_model_YYYYMMDD/` and the rolling `checkpoints/final_model/`, and the
//! partition's summary row gets its training figures.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use serde_json::json;

use super::{
    advantage_split, grad_share_step, input_path, join_samples, loss_temperature, output, rel,
    rollout_metrics, step_core, Runtime, StepConfig,
};
use crate::data::order::mix;
use crate::data::step_batch;
use crate::engine::model::Model;
use crate::plan::partitions::Lineage;
use crate::stages::artifacts::{read_jsonl, AdvantageRow, ScoredRow};
use crate::stages::{StageContext, StageKind, StageOutput};
use crate::train::checkpoint;
use crate::train::loss::LossConfig;
use crate::train::state::{self, Phase};
use crate::{Error, Result};

/// The global step the partition of `ctx.instance` starts at: the `step` output of the last
/// completed train instance before it in the plan, else the imported model's step.
fn partition_base(ctx: &StageContext<'_>) -> Result<usize> {
    let mut base = None;
    for inst in ctx.plan.instances() {
        if inst.id == ctx.instance.id {
            break;
        }
        if inst.kind != StageKind::Train {
            continue;
        }
        if let Some(step) = ctx
            .state
            .record(&inst.id)
            .and_then(|r| r.outputs.get("step"))
            .and_then(|v| v.as_u64())
        {
            base = Some(step as usize);
        }
    }
    match base {
        Some(b) => Ok(b),
        None => Ok(Lineage::load(ctx.run_dir.path())?.base_step),
    }
}

/// Optimizer steps of a partition with `groups` scored prompt groups.
pub fn partition_steps(spec: &crate::spec::Experiment, groups: usize) -> usize {
    spec.total_train_steps_for(groups)
}

/// The sampling temperature of the predictions trained on (their generate instance records
/// it; the spec's when it does not).
fn sampling_temperature(ctx: &StageContext<'_>) -> Result<f64> {
    for pair in &ctx.instance.pairs {
        let id = format!("{}/generate", pair.predictions_from);
        if let Some(t) = ctx
            .state
            .record(&id)
            .and_then(|r| r.outputs.get("temperature"))
            .and_then(|v| v.as_f64())
        {
            return Ok(if t > 0.0 { t } else { 1.0 });
        }
    }
    loss_temperature(ctx.spec)
}

/// Train partition `date` (see the module doc).
pub fn train_partition(
    ctx: &mut StageContext<'_>,
    model: &Model,
    rt: &mut Runtime,
    date: &str,
) -> Result<StageOutput> {
    let spec = ctx.spec;
    let run = ctx.run_dir;
    let scored: Vec<ScoredRow> = read_jsonl(&input_path(ctx, &format!("{date}/score"), "scored")?)?;
    let rank_id = format!("{date}/rank");
    let advs: Vec<AdvantageRow> = read_jsonl(&input_path(ctx, &rank_id, "advantages")?)?;
    let groups: Vec<usize> = scored
        .iter()
        .map(|r| r.rollout.prompt_index)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let steps = partition_steps(spec, groups.len());
    let base = partition_base(ctx)?;
    let at = if rt.state.phase == Phase::Rl {
        rt.state.step
    } else {
        0
    };
    if at < base || at > base + steps {
        return Err(Error::Run(format!(
            "partition {date}: the trainer state in {} is at step {at}, but this partition trains \
             steps {}..{}; resume from a run directory whose trainer/ matches its state.json",
            state::trainer_dir(run).display(),
            base + 1,
            base + steps
        )));
    }
    let sched = spec.lr_schedule_for(steps);
    let per_step = (spec.train.batch_size * spec.train.gradient_accumulation_steps).max(1);
    let date_seed = mix(spec.seed, date.parse::<u64>().unwrap_or(0));
    let reward_names: Vec<String> = spec.rewards.keys().cloned().collect();
    let temperature = sampling_temperature(ctx)?;
    let max_len = spec.generate.sampler(None)?.max_completion_length;
    let zero_std = ctx
        .state
        .record(&rank_id)
        .and_then(|r| r.outputs.get("frac_reward_zero_std"))
        .and_then(|v| v.as_f64());
    let mut last = rt.state.last_metrics.clone();
    let mut rewards = Vec::new();
    let mut kls = Vec::new();
    let mut stop = None;
    let mut quality = None;
    for k in (at - base)..steps {
        let started = Instant::now();
        let picked: BTreeSet<usize> = step_batch(groups.len(), per_step, date_seed, k, true)
            .into_iter()
            .map(|i| groups[i])
            .collect();
        let rows: Vec<ScoredRow> = scored
            .iter()
            .filter(|r| picked.contains(&r.rollout.prompt_index))
            .cloned()
            .collect();
        let mut m = rollout_metrics(&rows, &reward_names);
        if let Some(z) = zero_std {
            m.insert("frac_reward_zero_std".into(), z);
        }
        let s = base + k;
        let grad_share = grad_share_step(spec, s);
        if grad_share && quality.is_none() {
            // Over the whole partition, as the rank stage ranked it.
            quality =
                advantage_split::quality_advantages(spec, None, &scored, &advs, ctx.resources)?;
        }
        let samples = join_samples(&rows, &advs, quality.as_ref().filter(|_| grad_share));
        let cfg = StepConfig {
            loss: LossConfig::from_spec(&spec.train, max_len),
            temperature,
            micro_batch_size: spec.train.micro_batch_size.unwrap_or(samples.len().max(1)),
            num_iterations: spec.train.num_iterations,
            max_grad_norm: spec.train.max_grad_norm,
            mask_truncated: spec.train.mask_truncated_completions,
            lr: sched.lr_at(k),
            dropout_seed: state::dropout_seed(spec.seed, s),
            grad_share,
        };
        let (metrics, st) = step_core(ctx, model, rt, m, &samples, &cfg, &sched, s, started)?;
        if let Some(r) = metrics.get("reward") {
            rewards.push(*r);
        }
        if let Some(x) = metrics.get("kl") {
            kls.push(*x);
        }
        last = metrics;
        if st.is_some() {
            stop = st;
            break;
        }
    }
    let done = rt.state.step;
    let mut snapshots = Vec::new();
    if done > 0 {
        for name in [
            checkpoint::dated_final(date),
            checkpoint::FINAL_MODEL.into(),
        ] {
            let p = checkpoint::save_snapshot(run, &name)?;
            ctx.events.emit(
                Some(&ctx.instance.id),
                "checkpoint_saved",
                json!({"step": done, "path": rel(run, &p)}),
            )?;
            snapshots.push(rel(run, &p));
        }
    }
    let trained = done - base;
    let avg_reward = mean(&rewards);
    let avg_kl = mean(&kls);
    crate::run::summary::update_row(run.path(), date, |row| {
        row.training_steps = trained;
        row.avg_reward = avg_reward;
        row.kl = avg_kl;
        if stop.is_none() {
            row.status = "done".into();
        }
    })?;
    let mut out = output(&last, done, stop);
    out.outputs["partition_steps"] = json!(trained);
    out.outputs["groups"] = json!(groups.len());
    out.outputs["snapshots"] = json!(snapshots);
    out.outputs["partition_metrics"] = json!(BTreeMap::from([
        ("avg_reward", avg_reward),
        ("avg_kl", avg_kl)
    ]));
    Ok(out)
}

fn mean(xs: &[f64]) -> Option<f64> {
    if xs.is_empty() {
        None
    } else {
        Some(xs.iter().sum::<f64>() / xs.len() as f64)
    }
}
