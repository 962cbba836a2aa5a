//! The quality / diversity split of each rollout's advantage, for the gradient-share log
//! (`train.grad_share_every`).
//!
//! The group advantage is linear in the rewards once its normaliser (the std it divides by)
//! is fixed, so with the normaliser the rank stage used, `Â = Â_quality + Â_diversity`:
//! - `diversity_bonus`: the rewards are `r_i + λ·c_i` and the normaliser is the std of those
//!   adjusted rewards; `Â_quality = (r_i − mean r) / normaliser`, the rest is λ's part.
//! - `set_polychromic`: set scores `f(S) = mean_r(S) · d(S)` split as `mean_r(S)` (quality:
//!   the same sets scored with diversity 1) plus `mean_r(S)·(d(S) − 1)` (diversity), both
//!   divided by the rank stage's normaliser (the raw rewards' std).
//! - `text_penalty`, or a step where the diversity term is not computed: all quality.
//!
//! The diversity part is taken as `Â − Â_quality` from the rank stage's `advantages.jsonl`,
//! so the parts sum to the advantage the loss trained on exactly.

use std::collections::HashMap;
use std::sync::Arc;

use crate::data::order::mix;
use crate::rank::advantage::{group_advantages, AdvantageOptions};
use crate::rewards::semantic::Embedder;
use crate::rewards::{mean, Score};
use crate::spec::{DiversityKind, DiversityMetric, Experiment, ScaleRewards};
use crate::stages::artifacts::{AdvantageRow, ScoredRow};
use crate::stages::rank::{self, EMBEDDER_ID, MAX_POLYCHROMIC_SETS};
use crate::stages::Resources;
use crate::train::diversity;
use crate::Result;

/// A rollout's key: (prompt index, rollout index).
pub type Key = (usize, usize);

/// The resource key the rank stage keeps its sentence embedder under (shared, so the model is
/// loaded once per process).
const EMBEDDER_KEY: &str = "embedder/diversity";

fn embedder(resources: &mut Resources) -> Result<Arc<Embedder>> {
    if let Some(e) = resources.get_mut::<Arc<Embedder>>(EMBEDDER_KEY) {
        return Ok(e.clone());
    }
    let e = Arc::new(Embedder::load(EMBEDDER_ID)?);
    resources.insert(EMBEDDER_KEY, e.clone());
    Ok(e)
}

/// The quality part of each rollout's advantage (module docs), keyed by [`Key`]; `None` when
/// the spec has no diversity objective. `step` is the rank instance's step (`None` in the
/// daily loop), which seeds the polychromic sets as the rank stage did.
pub fn quality_advantages(
    spec: &Experiment,
    step: Option<usize>,
    scored: &[ScoredRow],
    advs: &[AdvantageRow],
    resources: &mut Resources,
) -> Result<Option<HashMap<Key, f64>>> {
    let Some(d) = spec.train.objective.diversity.as_ref() else {
        return Ok(None);
    };
    let total: HashMap<Key, f64> = advs
        .iter()
        .map(|a| ((a.prompt_index, a.index), a.advantage))
        .collect();
    let every = d.compute_every_n_steps.max(1);
    let active = !matches!(step, Some(s) if s % every != 0);
    if !active || d.kind == DiversityKind::TextPenalty {
        return Ok(Some(total));
    }
    let groups = rank::groups(scored)?;
    let opts = AdvantageOptions {
        scale_rewards: spec.rank.scale_rewards,
        filter_zero_std: spec.rank.filter_zero_std,
        ..AdvantageOptions::default()
    };
    // The statistics whose std the rank stage divided by: of the bonus-adjusted rewards for
    // `diversity_bonus`, of the raw rewards for `set_polychromic`.
    let stats = match d.kind {
        DiversityKind::DiversityBonus => {
            let emb = if d.metric == DiversityMetric::Embedding {
                Some(embedder(resources)?)
            } else {
                None
            };
            rank::rank_groups(spec, step, &groups, emb.as_deref())?.stats
        }
        _ => {
            let raw: Vec<Vec<Score>> = groups
                .iter()
                .map(|g| {
                    g.iter()
                        .map(|r| match r.reward {
                            Some(x) => Score::Value(x),
                            None => Score::unscorable("unscorable in the score stage"),
                        })
                        .collect()
                })
                .collect();
            group_advantages(&raw, &opts)?
        }
    };
    let mut out = HashMap::new();
    for (gi, g) in groups.iter().enumerate() {
        let divisor = match spec.rank.scale_rewards {
            ScaleRewards::Group => stats.group_std[gi] + opts.epsilon,
            ScaleRewards::Batch => stats.batch_std + opts.epsilon,
            ScaleRewards::None => 1.0,
        };
        let members: Vec<usize> = (0..g.len()).filter(|&i| g[i].reward.is_some()).collect();
        let r: Vec<f64> = members.iter().filter_map(|&i| g[i].reward).collect();
        let mut q = vec![0.0; g.len()];
        match d.kind {
            DiversityKind::DiversityBonus => {
                if let (Some(m), true) = (mean(&r), r.len() >= 2) {
                    for (&i, x) in members.iter().zip(&r) {
                        q[i] = (x - m) / divisor;
                    }
                }
            }
            _ => {
                let polychromic = gi < d.max_examples_for_diversity
                    && members.len() >= 2
                    && members.len() >= d.n_generations;
                if !stats.kept[gi] {
                    // the rank stage zeroes these groups
                } else if polychromic {
                    let seed = mix(mix(spec.seed, step.unwrap_or(0) as u64), gi as u64);
                    let a = diversity::set_polychromic_advantages(
                        &r,
                        d.n_generations,
                        &|_: &[usize]| 1.0,
                        MAX_POLYCHROMIC_SETS,
                        seed,
                    )?;
                    for (&i, a) in members.iter().zip(a) {
                        q[i] = a / divisor;
                    }
                } else {
                    q.clone_from(&stats.advantages[gi]);
                }
            }
        }
        for (i, row) in g.iter().enumerate() {
            let key = (row.rollout.prompt_index, row.rollout.index);
            if total.contains_key(&key) {
                out.insert(key, q[i]);
            }
        }
    }
    Ok(Some(out))
}
