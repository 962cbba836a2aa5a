//! The rank stage: the step's scored rollouts → group-relative advantages →
//! `advantages.jsonl` (one [`AdvantageRow`] per rollout).
//!
//! Plain GRPO: [`crate::rank::advantage::group_advantages`] with `rank.scale_rewards` and
//! `rank.filter_zero_std`. With `train.objective.diversity` (on steps where
//! `step % compute_every_n_steps == 0`, for the first `max_examples_for_diversity` groups):
//! - `set_polychromic` — the advantages come from sets of `n_generations` rollouts of a group,
//!   scored `mean reward × D(set)^λ` (λ = 1 is Hamid et al.'s objective, λ = 0 scores sets by
//!   reward alone), then scaled like the plain advantages (`rank.scale_rewards`). The diversity
//!   reaches the gradient through the advantages.
//! - `diversity_bonus` — each reward becomes `r_i + λ·(D(group) − D(group ∖ i))` before the
//!   advantages: also a real gradient signal.
//! - `text_penalty` — the seeds' `loss − λ·diversity`: the diversity of sampled text is a
//!   constant with respect to the parameters, so it is only computed and logged
//!   (`diversity_score`, `diversity_has_gradient: false`); the advantages are plain GRPO.
//!
//! Unscorable rewards are left out: their rollouts get advantage 0 and the diversity terms are
//! computed over the group's scorable rollouts.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Value};

use crate::data::order::mix;
use crate::rank::advantage::{group_advantages, AdvantageOptions, GroupAdvantages};
use crate::rewards::semantic::{cosine, Embedder};
use crate::rewards::{mean, sample_std, Score};
use crate::spec::{Diversity, DiversityKind, DiversityMetric, Experiment, ScaleRewards};
use crate::stages::artifacts::{
    input_path, read_jsonl, relative, sibling_id, write_jsonl, AdvantageRow, ScoredRow,
};
use crate::stages::{Resources, Stage, StageContext, StageOutput};
use crate::train::diversity;
use crate::{Error, Result};

/// File name of the advantages artifact.
pub const ADVANTAGES_FILE: &str = "advantages.jsonl";
/// The default sentence embedder of the `embedding` diversity metric.
pub const EMBEDDER_ID: &str = "all-minilm-l6-v2";
/// Most sets sampled per group by the polychromic objective.
pub const MAX_POLYCHROMIC_SETS: usize = 64;

/// The rank stage.
pub struct RankStage;

/// Scored rows grouped by prompt index, each group in index order; all groups of one size.
pub fn groups(rows: &[ScoredRow]) -> Result<Vec<Vec<&ScoredRow>>> {
    let mut by: BTreeMap<usize, Vec<&ScoredRow>> = BTreeMap::new();
    for r in rows {
        by.entry(r.rollout.prompt_index).or_default().push(r);
    }
    let mut out: Vec<Vec<&ScoredRow>> = by.into_values().collect();
    for g in &mut out {
        g.sort_by_key(|r| r.rollout.index);
    }
    let size = out.first().map_or(0, Vec::len);
    if let Some(bad) = out.iter().find(|g| g.len() != size) {
        return Err(Error::Run(format!(
            "scored rollouts: prompt {} has {} rollouts, prompt {} has {size}",
            bad[0].rollout.prompt_index,
            bad.len(),
            out[0][0].rollout.prompt_index
        )));
    }
    Ok(out)
}

fn score_of(r: &ScoredRow) -> Score {
    match r.reward {
        Some(x) => Score::Value(x),
        None => Score::unscorable("unscorable in the score stage"),
    }
}

/// Measures the diversity of a subset of one group's texts, in [0, 1].
pub struct GroupDiversity<'a> {
    texts: Vec<&'a str>,
    metric: DiversityMetric,
    embeddings: Option<Vec<Vec<f32>>>,
}

impl<'a> GroupDiversity<'a> {
    /// Prepare (embedding the texts once when the metric needs it).
    pub fn new(
        texts: Vec<&'a str>,
        metric: DiversityMetric,
        embedder: Option<&Embedder>,
    ) -> Result<Self> {
        let embeddings = match (metric, embedder) {
            (DiversityMetric::Embedding, Some(e)) => Some(e.embed(&texts)?),
            (DiversityMetric::Embedding, None) => {
                return Err(Error::Other(
                    "embedding diversity needs the sentence embedder".into(),
                ))
            }
            _ => None,
        };
        Ok(GroupDiversity {
            texts,
            metric,
            embeddings,
        })
    }

    /// D(subset) for indices into the texts.
    pub fn of(&self, idx: &[usize]) -> f64 {
        let d = match self.metric {
            DiversityMetric::Distinct2 => {
                let t: Vec<&str> = idx.iter().map(|&i| self.texts[i]).collect();
                diversity::distinct_n(&t, 2)
            }
            DiversityMetric::SelfBleu => {
                let t: Vec<&str> = idx.iter().map(|&i| self.texts[i]).collect();
                diversity::self_bleu_diversity(&t)
            }
            DiversityMetric::Embedding => {
                let Some(e) = &self.embeddings else {
                    return 0.0;
                };
                let mut sum = 0.0;
                let mut n = 0usize;
                for (a, &i) in idx.iter().enumerate() {
                    for &j in &idx[a + 1..] {
                        sum += 1.0 - f64::from(cosine(&e[i], &e[j]));
                        n += 1;
                    }
                }
                if n == 0 {
                    0.0
                } else {
                    sum / n as f64
                }
            }
        };
        d.clamp(0.0, 1.0)
    }

    /// D over all texts.
    pub fn all(&self) -> f64 {
        let idx: Vec<usize> = (0..self.texts.len()).collect();
        self.of(&idx)
    }
}

fn embedder(resources: &mut Resources) -> Result<Arc<Embedder>> {
    const KEY: &str = "embedder/diversity";
    if let Some(e) = resources.get_mut::<Arc<Embedder>>(KEY) {
        return Ok(e.clone());
    }
    let e = Arc::new(Embedder::load(EMBEDDER_ID)?);
    resources.insert(KEY, e.clone());
    Ok(e)
}

/// What the rank computation produced.
pub struct Ranked {
    /// Advantages, group by group.
    pub advantages: Vec<Vec<f64>>,
    /// The plain GRPO statistics of the (possibly bonus-adjusted) rewards.
    pub stats: GroupAdvantages,
    /// Mean group diversity over the measured groups, when measured.
    pub diversity_score: Option<f64>,
    /// Groups the diversity term was applied to.
    pub diversity_groups: usize,
}

/// Advantages for grouped scored rows, per the spec (module docs).
pub fn rank_groups(
    spec: &Experiment,
    step: Option<usize>,
    groups: &[Vec<&ScoredRow>],
    embedder: Option<&Embedder>,
) -> Result<Ranked> {
    let opts = AdvantageOptions {
        scale_rewards: spec.rank.scale_rewards,
        filter_zero_std: spec.rank.filter_zero_std,
        ..AdvantageOptions::default()
    };
    let mut rewards: Vec<Vec<Score>> = groups
        .iter()
        .map(|g| g.iter().map(|r| score_of(r)).collect())
        .collect();
    let div = active_diversity(spec, step);
    let mut measured: Vec<f64> = Vec::new();
    let mut polychromic: BTreeMap<usize, Vec<Option<f64>>> = BTreeMap::new();
    if let Some(d) = div {
        for (gi, g) in groups.iter().enumerate().take(d.max_examples_for_diversity) {
            // Scorable members only.
            let members: Vec<usize> = (0..g.len()).filter(|&i| g[i].reward.is_some()).collect();
            if members.len() < 2 {
                continue;
            }
            let texts: Vec<&str> = members
                .iter()
                .map(|&i| g[i].rollout.completion.as_str())
                .collect();
            let gd = GroupDiversity::new(texts, d.metric, embedder)?;
            measured.push(gd.all());
            let r: Vec<f64> = members.iter().filter_map(|&i| g[i].reward).collect();
            match d.kind {
                DiversityKind::TextPenalty => {}
                DiversityKind::DiversityBonus => {
                    let adj = diversity::diversity_bonus(&r, d.lambda, &|s| gd.of(s))?;
                    for (k, &i) in members.iter().enumerate() {
                        rewards[gi][i] = Score::Value(adj[k]);
                    }
                }
                DiversityKind::SetPolychromic => {
                    if members.len() < d.n_generations {
                        continue;
                    }
                    let lambda = d.lambda;
                    let f = |s: &[usize]| {
                        let x = gd.of(s);
                        if lambda == 0.0 {
                            1.0
                        } else {
                            x.powf(lambda)
                        }
                    };
                    let seed = mix(mix(spec.seed, step.unwrap_or(0) as u64), gi as u64);
                    let adv = diversity::set_polychromic_advantages(
                        &r,
                        d.n_generations,
                        &f,
                        MAX_POLYCHROMIC_SETS,
                        seed,
                    )?;
                    let mut full = vec![None; g.len()];
                    for (k, &i) in members.iter().enumerate() {
                        full[i] = Some(adv[k]);
                    }
                    polychromic.insert(gi, full);
                }
            }
        }
    }
    let stats = group_advantages(&rewards, &opts)?;
    let mut advantages = stats.advantages.clone();
    for (gi, full) in polychromic {
        let divisor = match spec.rank.scale_rewards {
            ScaleRewards::Group => stats.group_std[gi] + opts.epsilon,
            ScaleRewards::Batch => stats.batch_std + opts.epsilon,
            ScaleRewards::None => 1.0,
        };
        advantages[gi] = full
            .into_iter()
            .map(|a| a.map_or(0.0, |a| a / divisor))
            .collect();
        if !stats.kept[gi] {
            advantages[gi].iter_mut().for_each(|a| *a = 0.0);
        }
    }
    Ok(Ranked {
        advantages,
        diversity_groups: measured.len(),
        diversity_score: mean(&measured),
        stats,
    })
}

/// The diversity term in force at `step`, if any.
fn active_diversity(spec: &Experiment, step: Option<usize>) -> Option<&Diversity> {
    let d = spec.train.objective.diversity.as_ref()?;
    let every = d.compute_every_n_steps.max(1);
    match step {
        Some(s) if s % every != 0 => None,
        _ => Some(d),
    }
}

impl Stage for RankStage {
    fn run(&self, ctx: &mut StageContext<'_>) -> Result<StageOutput> {
        let id = ctx.instance.id.clone();
        let score_id = sibling_id(&id, "score");
        let path = input_path(ctx.run_dir, ctx.state, &score_id, "scored")?;
        let rows: Vec<ScoredRow> = read_jsonl(&path)?;
        let grouped = groups(&rows)?;
        let needs_embedder = active_diversity(ctx.spec, ctx.instance.step)
            .is_some_and(|d| d.metric == DiversityMetric::Embedding);
        let emb = if needs_embedder {
            Some(embedder(ctx.resources)?)
        } else {
            None
        };
        let ranked = rank_groups(ctx.spec, ctx.instance.step, &grouped, emb.as_deref())?;
        let mut out_rows = Vec::with_capacity(rows.len());
        for (gi, g) in grouped.iter().enumerate() {
            for (i, r) in g.iter().enumerate() {
                out_rows.push(AdvantageRow {
                    record_id: r.rollout.record_id.clone(),
                    prompt_index: r.rollout.prompt_index,
                    index: r.rollout.index,
                    advantage: ranked.advantages[gi][i],
                    kept: ranked.stats.kept[gi],
                });
            }
        }
        let dir = ctx.run_dir.stage_dir(&id)?;
        let dest = dir.join(ADVANTAGES_FILE);
        write_jsonl(&dest, &out_rows)?;
        let all: Vec<f64> = out_rows.iter().map(|r| r.advantage).collect();
        let mut out = json!({
            "advantages": relative(ctx.run_dir, &dest),
            "frac_reward_zero_std": ranked.stats.frac_reward_zero_std,
            "groups": grouped.len(),
            "groups_kept": ranked.stats.kept.iter().filter(|&&k| k).count(),
            "unscorable": ranked.stats.unscorable,
            "advantage_std": sample_std(&all),
            "advantage_abs_max": all.iter().fold(0.0f64, |m, a| m.max(a.abs())),
        });
        if let Some(d) = &ctx.spec.train.objective.diversity {
            out["diversity_score"] = json!(ranked.diversity_score);
            out["diversity_groups"] = json!(ranked.diversity_groups);
            out["diversity_has_gradient"] = Value::Bool(d.kind != DiversityKind::TextPenalty);
        }
        ctx.events.emit(Some(&id), "ranked", out.clone())?;
        Ok(StageOutput { outputs: out })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::generate::FinishReason;
    use crate::stages::artifacts::RolloutRow;

    fn row(p: usize, i: usize, reward: Option<f64>, text: &str) -> ScoredRow {
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
            reward,
        }
    }

    #[test]
    fn plain_group_advantages_sum_to_zero() {
        let rows = vec![
            row(1, 1, Some(1.0), "a"),
            row(0, 0, Some(0.0), "a"),
            row(0, 1, Some(1.0), "b"),
            row(1, 0, Some(1.0), "c"),
        ];
        let g = groups(&rows).unwrap();
        assert_eq!(g[0][0].rollout.index, 0);
        let r = rank_groups(&Experiment::default(), Some(0), &g, None).unwrap();
        let s = 0.5f64.sqrt();
        assert!((r.advantages[0][0] + 0.5 / (s + 1e-4)).abs() < 1e-12);
        assert!((r.advantages[0].iter().sum::<f64>()).abs() < 1e-12);
        assert_eq!(r.advantages[1], vec![0.0, 0.0]);
        assert_eq!(r.stats.frac_reward_zero_std, 0.5);
        assert!(r.diversity_score.is_none());
    }

    #[test]
    fn unequal_groups_are_an_error() {
        let rows = vec![
            row(0, 0, Some(0.0), "a"),
            row(1, 0, Some(1.0), "b"),
            row(1, 1, None, "c"),
        ];
        assert!(groups(&rows).is_err());
    }

    #[test]
    fn text_penalty_only_logs() {
        let mut spec = Experiment::default();
        spec.train.objective.diversity = Some(Diversity {
            kind: DiversityKind::TextPenalty,
            lambda: 2.0,
            n_generations: 2,
            max_examples_for_diversity: 4,
            compute_every_n_steps: 1,
            metric: DiversityMetric::Distinct2,
        });
        let rows = vec![row(0, 0, Some(0.0), "a b c"), row(0, 1, Some(1.0), "d e f")];
        let g = groups(&rows).unwrap();
        let plain = rank_groups(&Experiment::default(), Some(0), &g, None).unwrap();
        let r = rank_groups(&spec, Some(0), &g, None).unwrap();
        assert_eq!(r.advantages, plain.advantages);
        assert_eq!(r.diversity_groups, 1);
        // Off-schedule steps measure nothing.
        spec.train
            .objective
            .diversity
            .as_mut()
            .unwrap()
            .compute_every_n_steps = 2;
        assert_eq!(
            rank_groups(&spec, Some(1), &g, None)
                .unwrap()
                .diversity_groups,
            0
        );
    }
}
