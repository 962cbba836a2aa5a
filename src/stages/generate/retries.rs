//! Generation retries for format failures (`generate.retries`, `generate.retry_on`): after
//! sampling, every completion is scored with the `retry_on` reward alone; one whose value is
//! below 1 (or unscorable) is a format failure and is sampled again, in place (same prompt,
//! same group index, seeded from (seed, attempt, prompt, index)), up to `retries` more times.
//! Counts go into the generate outputs.
//! Applies in both steps mode and the daily loop.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use crate::data::order::mix;
use crate::data::Record;
use crate::rewards::set::{RewardContext, RewardSet};
use crate::spec::{Experiment, SamplerParams};
use crate::stages::artifacts::RolloutRow;
use crate::stages::policy::Policy;
use crate::stages::score::score_rows;
use crate::stages::StageContext;
use crate::{Error, Result};

use super::sample;

/// Resources key of the one-reward set used to detect format failures.
pub const RETRY_REWARDS_KEY: &str = "retry_rewards";

/// What the retries did in one generation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RetryCounts {
    /// Completions that failed `retry_on` at first.
    pub failed_first: usize,
    /// Completions sampled again, over all attempts.
    pub attempts: usize,
    /// Failures that a retry fixed.
    pub fixed: usize,
    /// Completions still failing after the last retry.
    pub still_failing: usize,
}

/// The reward set of `retry_on` alone (built once per process); `None` when retries are off.
pub fn retry_set(ctx: &mut StageContext<'_>) -> Result<Option<Arc<RewardSet>>> {
    let g = &ctx.spec.generate;
    let name = match (&g.retry_on, g.retries) {
        (Some(n), r) if r > 0 => n.clone(),
        _ => return Ok(None),
    };
    if let Some(set) = ctx.resources.get_mut::<Arc<RewardSet>>(RETRY_REWARDS_KEY) {
        return Ok(Some(set.clone()));
    }
    let reward = ctx.spec.rewards.get(&name).ok_or_else(|| {
        Error::Spec(format!(
            "generate.retry_on: `{name}` is not a reward of the spec (rewards: {})",
            ctx.spec
                .rewards
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    let mut sub = ctx.spec.clone();
    sub.rewards = std::iter::once((name.clone(), reward.clone())).collect();
    let set = RewardSet::from_spec(&sub, &RewardContext { local_judge: None }).map_err(|e| {
        Error::Spec(format!(
            "generate.retry_on: `{name}` cannot be computed on its own at generation time ({e}); \
             name a format or json reward"
        ))
    })?;
    let set = Arc::new(set);
    ctx.resources.insert(RETRY_REWARDS_KEY, set.clone());
    Ok(Some(set))
}

/// Indices of rows failing the single reward of `set` (value < 1, or unscorable).
pub fn failures(set: &RewardSet, rows: &[RolloutRow]) -> Result<Vec<usize>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let scored = score_rows(set, rows)?;
    let values = scored.per_reward.values().next().ok_or_else(|| {
        Error::Other("generate.retry_on: the retry reward set has no reward".into())
    })?;
    Ok(values
        .iter()
        .enumerate()
        .filter(|(_, v)| v.as_f64().is_none_or(|x| x < 1.0 - 1e-9))
        .map(|(i, _)| i)
        .collect())
}

/// Re-sample the failing completions of `rows` in place, up to `generate.retries` times.
pub fn retry_failures(
    p: &Policy,
    spec: &Experiment,
    set: &RewardSet,
    records: &[&Record],
    rows: &mut [RolloutRow],
    params: &SamplerParams,
    seed: u64,
) -> Result<RetryCounts> {
    let mut counts = RetryCounts::default();
    let mut failing = failures(set, rows)?;
    counts.failed_first = failing.len();
    for attempt in 1..=spec.generate.retries {
        if failing.is_empty() {
            break;
        }
        // One batch per group index: a retried completion is seeded from (seed, attempt,
        // prompt, its own index), so the retries of one prompt's slots differ from each other
        // and each is reproducible on its own.
        let mut by_index: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for &i in &failing {
            by_index.entry(rows[i].index).or_default().push(i);
        }
        for (slot, positions) in by_index {
            let again: Vec<&Record> = positions
                .iter()
                .map(|&i| {
                    records.get(rows[i].prompt_index).copied().ok_or_else(|| {
                        Error::Other(format!(
                            "rollout for unknown prompt {}",
                            rows[i].prompt_index
                        ))
                    })
                })
                .collect::<Result<_>>()?;
            let attempt_seed = mix(seed, 0x7265_7472 + u64::from(attempt));
            let (fresh, _) = sample(p, spec, &again, 1, params, mix(attempt_seed, slot as u64))?;
            counts.attempts += fresh.len();
            for new in fresh {
                let i = *positions.get(new.prompt_index).ok_or_else(|| {
                    Error::Other(format!(
                        "retry rollout for unknown slot {}",
                        new.prompt_index
                    ))
                })?;
                let row = &mut rows[i];
                row.completion = new.completion;
                row.completion_ids = new.completion_ids;
                row.logprobs = new.logprobs;
                row.finish = new.finish;
            }
        }
        let subset: Vec<RolloutRow> = failing.iter().map(|&i| rows[i].clone()).collect();
        let still: Vec<usize> = failures(set, &subset)?
            .into_iter()
            .map(|j| failing[j])
            .collect();
        counts.fixed += failing.len() - still.len();
        failing = still;
    }
    counts.still_failing = failing.len();
    Ok(counts)
}
