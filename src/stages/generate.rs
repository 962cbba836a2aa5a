//! The generate stage: the step's prompts → `num_generations` sampled completions each →
//! `rollouts.jsonl` (one [`RolloutRow`] per completion, prompt order then group index).
//!
//! Step `s` uses the records [`crate::data::step_batch`] picks (`batch_size ×
//! gradient_accumulation_steps` prompts from the seeded epoch order); the sampling seed is
//! derived from (spec seed, step), so a step regenerates identically. In the daily loop a
//! partition's generate uses every record of its date's file.

use std::time::Instant;

use serde_json::json;

use crate::data::order::mix;
use crate::data::{sets, step_batch, Record};
use crate::engine::generate::{generate, FinishReason, GenerateRequest};
use crate::engine::sample::SamplingParams;
use crate::spec::{Experiment, SamplerParams};
use crate::stages::artifacts::{relative, write_jsonl, RolloutRow};
use crate::stages::policy::{chat_prompt_ids, policy, Policy};
use crate::stages::{Stage, StageContext, StageOutput};
use crate::{Error, Result};

pub mod profiles;
pub mod retries;

/// File name of the rollouts artifact.
pub const ROLLOUTS_FILE: &str = "rollouts.jsonl";

/// The generate stage.
pub struct GenerateStage;

/// Throughput and length figures of one generation call.
#[derive(Debug, Clone, Default)]
pub struct GenStats {
    pub rollouts: usize,
    pub completion_tokens: usize,
    pub seconds: f64,
    pub mean_length: f64,
    pub max_length: usize,
    pub clipped_ratio: f64,
}

impl GenStats {
    /// As stage outputs / event payload (TRL's names for the length figures).
    pub fn to_json(&self) -> serde_json::Value {
        let per_s = |x: usize| {
            if self.seconds > 0.0 {
                x as f64 / self.seconds
            } else {
                0.0
            }
        };
        json!({
            "rollouts_n": self.rollouts,
            "completion_tokens": self.completion_tokens,
            "generate_s": self.seconds,
            "rollouts_per_s": per_s(self.rollouts),
            "tokens_per_s": per_s(self.completion_tokens),
            "completions/mean_length": self.mean_length,
            "completions/max_length": self.max_length,
            "completions/clipped_ratio": self.clipped_ratio,
        })
    }
}

/// The engine's sampling parameters for resolved spec sampler parameters.
pub fn sampling_params(p: &SamplerParams) -> SamplingParams {
    SamplingParams {
        temperature: p.temperature as f32,
        top_p: p.top_p as f32,
        top_k: p.top_k.unwrap_or(0),
        min_p: p.min_p.unwrap_or(0.0) as f32,
        repetition_penalty: p.repetition_penalty as f32,
    }
}

/// Sample `g` completions for each record with the policy (eval mode), as rollout rows.
pub fn sample(
    p: &Policy,
    spec: &Experiment,
    records: &[&Record],
    g: usize,
    params: &SamplerParams,
    seed: u64,
) -> Result<(Vec<RolloutRow>, GenStats)> {
    let sp = sampling_params(params);
    sp.validate()?;
    let prompts = records
        .iter()
        .map(|r| chat_prompt_ids(p, r, spec))
        .collect::<Result<Vec<_>>>()?;
    let mut max_new = params.max_completion_length;
    if let Some(limit) = spec.model.max_seq_length {
        let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
        if longest >= limit {
            return Err(Error::Run(format!(
                "a prompt has {longest} tokens, at or over model.max_seq_length ({limit})"
            )));
        }
        max_new = max_new.min(limit - longest);
    }
    let req = GenerateRequest {
        prompts,
        n_per_prompt: g,
        params: sp,
        max_new_tokens: max_new,
        stop_token_ids: Vec::new(),
        stop_strings: params.stop.clone(),
        seed,
    };
    p.model.set_training(false);
    let t0 = Instant::now();
    let rollouts = generate(&p.model, &p.tok, &req)?;
    let seconds = t0.elapsed().as_secs_f64();
    let mut rows = Vec::with_capacity(rollouts.len());
    for r in rollouts {
        let rec = records.get(r.prompt_index).ok_or_else(|| {
            Error::Other(format!("rollout for unknown prompt {}", r.prompt_index))
        })?;
        rows.push(RolloutRow {
            record_id: rec.id.clone(),
            prompt_index: r.prompt_index,
            index: r.index,
            prompt: rec.prompt_text.clone(),
            completion: r.text,
            prompt_ids: req.prompts[r.prompt_index].clone(),
            completion_ids: r.tokens,
            logprobs: r.logprobs,
            finish: r.finish,
            task: rec.task.clone(),
            reference: rec.reference.clone(),
            record: rec.fields.clone(),
        });
    }
    let stats = length_stats(&rows, seconds);
    Ok((rows, stats))
}

/// Length figures of rollout rows.
pub fn length_stats(rows: &[RolloutRow], seconds: f64) -> GenStats {
    let n = rows.len();
    let lens: Vec<usize> = rows.iter().map(|r| r.completion_ids.len()).collect();
    let total: usize = lens.iter().sum();
    let clipped = rows
        .iter()
        .filter(|r| r.finish == FinishReason::Length)
        .count();
    GenStats {
        rollouts: n,
        completion_tokens: total,
        seconds,
        mean_length: if n > 0 { total as f64 / n as f64 } else { 0.0 },
        max_length: lens.iter().copied().max().unwrap_or(0),
        clipped_ratio: if n > 0 {
            clipped as f64 / n as f64
        } else {
            0.0
        },
    }
}

impl Stage for GenerateStage {
    fn run(&self, ctx: &mut StageContext<'_>) -> Result<StageOutput> {
        let spec = ctx.spec;
        let inst = ctx.instance;
        let date = inst.date.clone();
        let records = sets::cached(ctx.resources, spec, "train", date.as_deref())?;
        let (picked, seed): (Vec<usize>, u64) = match (inst.step, &date) {
            (Some(step), _) => {
                let batch = spec.train.batch_size * spec.train.gradient_accumulation_steps;
                let shuffle = sets::source(spec, "train")?.shuffle;
                (
                    step_batch(records.len(), batch, spec.seed, step, shuffle),
                    mix(spec.seed, step as u64),
                )
            }
            (None, Some(d)) => (
                (0..records.len()).collect(),
                mix(spec.seed, d.parse::<u64>().unwrap_or(0)),
            ),
            (None, None) => {
                return Err(Error::Run(format!(
                    "generate instance {} has neither a step nor a date",
                    inst.id
                )))
            }
        };
        let chosen: Vec<&Record> = picked.iter().map(|&i| &records[i]).collect();
        let choice = match &date {
            Some(d) => profiles::choose(ctx, d)?,
            None => profiles::Choice::fixed(spec.generate.profile.clone()),
        };
        let params = spec.generate.sampler(choice.profile.as_deref())?;
        let g = spec.generate.num_generations;
        let retry_set = retries::retry_set(ctx)?;
        let p = policy(ctx)?;
        let (mut rows, stats) = sample(p, spec, &chosen, g, &params, seed)?;
        let retried = match &retry_set {
            Some(set) => retries::retry_failures(p, spec, set, &chosen, &mut rows, &params, seed)?,
            None => retries::RetryCounts::default(),
        };
        let dir = ctx.run_dir.stage_dir(&inst.id)?;
        let path = dir.join(ROLLOUTS_FILE);
        write_jsonl(&path, &rows)?;
        let mut out = stats.to_json();
        out["rollouts"] = json!(relative(ctx.run_dir, &path));
        out["prompts"] = json!(chosen.len());
        out["record_ids"] = json!(chosen.iter().map(|r| r.id.as_str()).collect::<Vec<_>>());
        out["profile"] = json!(choice.profile);
        out["profile_reason"] = json!(choice.reason);
        out["temperature"] = json!(params.temperature);
        if retry_set.is_some() {
            out["retries"] = json!(retried);
        }
        ctx.events.emit(Some(&inst.id), "generated", out.clone())?;
        if let Some(d) = &date {
            let generated_only = match &ctx.plan.loop_ {
                crate::plan::LoopPlan::Partitions { rounds, .. } => rounds
                    .iter()
                    .find(|r| &r.date == d)
                    .is_none_or(|r| r.score.is_empty()),
                crate::plan::LoopPlan::Steps { .. } => false,
            };
            let n_rows = rows.len();
            crate::run::summary::update_row(ctx.run_dir.path(), d, |row| {
                row.headlines = chosen.len();
                row.rollouts = n_rows;
                row.sampler = choice.profile.clone();
                if generated_only {
                    row.status = "done".into();
                }
            })?;
        }
        Ok(StageOutput { outputs: out })
    }
}
