//! Group-relative advantages, as TRL's `GRPOTrainer` computes them.
//!
//! Rewards come as `n_groups × G` (one row per prompt, one column per rollout). For each group:
//! `advantage = (r − mean_group) / (std + ε)`, ε = 1e-4, where `std` is
//! - `group`: the group's own std (GRPO, TRL `scale_rewards="group"`),
//! - `batch`: the std of all rewards of the batch (TRL `scale_rewards="batch"`), or
//! - `none`: no division (Dr. GRPO, TRL `scale_rewards="none"`/`False`).
//!
//! Every std is the **sample** std (divisor n − 1), as `torch.std` in TRL.
//!
//! # Unscorable rewards
//! An unscorable reward is left out of the statistics of its group (and of the batch std); its
//! rollout gets advantage 0 — it neither pushes nor pulls the policy — and is counted in
//! [`GroupAdvantages::unscorable`]. A group with fewer than two scorable rewards has no usable
//! spread: its std is 0 and all its advantages are 0. (TRL instead sums rewards with `nansum`,
//! turning a NaN into 0 — exactly the silent zero this project avoids.)
//!
//! # Zero-variance groups
//! A group's std counts as zero when it is at most `zero_std_tolerance` (default 1e-8, the
//! absolute tolerance of TRL's `torch.isclose(std, 0)`). `frac_reward_zero_std` is the fraction
//! of groups whose **group** std is zero, in every scaling mode (TRL computes it from the std it
//! divides by, so under `batch` it degenerates to 0 or 1; the per-group fraction is the signal
//! the V4.1 handoff watches). With `filter_zero_std`, those groups are marked not kept (their
//! advantages are 0 anyway) so the loss can drop them.

use crate::rewards::judge::Ranking;
use crate::rewards::{mean, sample_std, Score};
use crate::spec::types::ScaleRewards;
use crate::{Error, Result};

/// TRL's ε in `(r − mean) / (std + 1e-4)`.
pub const EPSILON: f64 = 1e-4;

/// Options of the advantage computation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdvantageOptions {
    /// How advantages are scaled.
    pub scale_rewards: ScaleRewards,
    /// Mark zero-variance groups as not kept.
    pub filter_zero_std: bool,
    /// A std at or below this is zero. Default 1e-8.
    pub zero_std_tolerance: f64,
    /// ε added to the std. Default 1e-4.
    pub epsilon: f64,
}

impl Default for AdvantageOptions {
    fn default() -> Self {
        AdvantageOptions {
            scale_rewards: ScaleRewards::Group,
            filter_zero_std: false,
            zero_std_tolerance: 1e-8,
            epsilon: EPSILON,
        }
    }
}

/// Advantages and diagnostics of one batch.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupAdvantages {
    /// One advantage per rollout, `n_groups × G`; 0 for unscorable rollouts.
    pub advantages: Vec<Vec<f64>>,
    /// Mean of each group's scorable rewards (`None` when none is scorable).
    pub group_mean: Vec<Option<f64>>,
    /// Sample std of each group's scorable rewards (0 with fewer than two).
    pub group_std: Vec<f64>,
    /// Sample std of all scorable rewards (0 with fewer than two).
    pub batch_std: f64,
    /// Whether each group's std is zero.
    pub zero_std: Vec<bool>,
    /// Fraction of groups with zero std (TRL `frac_reward_zero_std`).
    pub frac_reward_zero_std: f64,
    /// Whether each group takes part in the loss (false only with `filter_zero_std`).
    pub kept: Vec<bool>,
    /// Whether each rollout's reward was scorable.
    pub scored: Vec<Vec<bool>>,
    /// Number of unscorable rollouts.
    pub unscorable: usize,
}

/// Computes group-relative advantages (rules in the module docs). Groups must all have the same
/// size G ≥ 1.
pub fn group_advantages(
    rewards: &[Vec<Score>],
    options: &AdvantageOptions,
) -> Result<GroupAdvantages> {
    let g = rewards.first().map_or(0, Vec::len);
    if g == 0 {
        return Err(Error::Other(
            "advantages: no rewards (empty batch or group)".into(),
        ));
    }
    if let Some((i, row)) = rewards.iter().enumerate().find(|(_, r)| r.len() != g) {
        return Err(Error::Other(format!(
            "advantages: group {i} has {} rewards, group 0 has {g}",
            row.len()
        )));
    }
    let values: Vec<Vec<Option<f64>>> = rewards
        .iter()
        .map(|row| row.iter().map(Score::as_f64).collect())
        .collect();
    let scorable = |row: &[Option<f64>]| row.iter().flatten().copied().collect::<Vec<f64>>();
    let all: Vec<f64> = values.iter().flat_map(|r| scorable(r)).collect();
    let batch_std = sample_std(&all).unwrap_or(0.0);

    let n = rewards.len();
    let mut out = GroupAdvantages {
        advantages: Vec::with_capacity(n),
        group_mean: Vec::with_capacity(n),
        group_std: Vec::with_capacity(n),
        batch_std,
        zero_std: Vec::with_capacity(n),
        frac_reward_zero_std: 0.0,
        kept: Vec::with_capacity(n),
        scored: Vec::with_capacity(n),
        unscorable: 0,
    };
    for row in &values {
        let vals = scorable(row);
        let m = mean(&vals);
        let std = sample_std(&vals).unwrap_or(0.0);
        let zero = std <= options.zero_std_tolerance;
        let divisor = match options.scale_rewards {
            ScaleRewards::Group => std + options.epsilon,
            ScaleRewards::Batch => batch_std + options.epsilon,
            ScaleRewards::None => 1.0,
        };
        let adv = row
            .iter()
            .map(|r| match (r, m) {
                (Some(x), Some(m)) if vals.len() >= 2 => (x - m) / divisor,
                _ => 0.0,
            })
            .collect();
        out.unscorable += row.iter().filter(|r| r.is_none()).count();
        out.scored.push(row.iter().map(Option::is_some).collect());
        out.advantages.push(adv);
        out.group_mean.push(m);
        out.group_std.push(std);
        out.zero_std.push(zero);
        out.kept.push(!(options.filter_zero_std && zero));
    }
    out.frac_reward_zero_std = out.zero_std.iter().filter(|&&z| z).count() as f64 / n as f64;
    Ok(out)
}

/// The rewards of one group from a judge's answer: the ranking's rewards, or every rollout
/// unscorable when the answer could not be parsed (never zeros).
pub fn judge_scores<E: std::fmt::Display>(
    ranking: std::result::Result<&Ranking, E>,
    g: usize,
) -> Vec<Score> {
    match ranking {
        Ok(r) => r.rewards().into_iter().map(Score::value).collect(),
        Err(e) => vec![Score::unscorable(format!("judge: {e}")); g],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rewards::judge::{parse_ranking, RankOptions};

    fn v(xs: &[f64]) -> Vec<Score> {
        xs.iter().map(|&x| Score::Value(x)).collect()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    fn opts(scale: ScaleRewards) -> AdvantageOptions {
        AdvantageOptions {
            scale_rewards: scale,
            ..Default::default()
        }
    }

    #[test]
    fn group_scaling_by_hand() {
        // [0, 1]: mean 0.5, sample std sqrt(0.5) = 0.70710678
        let r = group_advantages(&[v(&[0.0, 1.0])], &opts(ScaleRewards::Group)).unwrap();
        let s = 0.5f64.sqrt();
        assert!(close(r.group_std[0], s));
        assert!(close(r.advantages[0][0], -0.5 / (s + 1e-4)));
        assert!(close(r.advantages[0][1], 0.5 / (s + 1e-4)));
        // [1, 2, 3, 4]: mean 2.5, sample std sqrt(5/3) = 1.29099445
        let r = group_advantages(&[v(&[1.0, 2.0, 3.0, 4.0])], &opts(ScaleRewards::Group)).unwrap();
        let s = (5.0f64 / 3.0).sqrt();
        assert!(close(r.group_std[0], s));
        assert!(close(r.advantages[0][0], -1.5 / (s + 1e-4)));
        assert!(close(r.advantages[0][3], 1.5 / (s + 1e-4)));
        let sum: f64 = r.advantages[0].iter().sum();
        assert!(sum.abs() < 1e-12);
    }

    #[test]
    fn identical_rewards_zero_std() {
        let rewards = [
            v(&[0.1, 0.1, 0.1]),
            v(&[0.0, 1.0, 0.0]),
            v(&[0.7, 0.7, 0.7]),
        ];
        let r = group_advantages(&rewards, &opts(ScaleRewards::Group)).unwrap();
        assert_eq!(r.zero_std, vec![true, false, true]);
        assert!(close(r.frac_reward_zero_std, 2.0 / 3.0));
        assert!(r.advantages[0].iter().all(|&a| a == 0.0 || a.abs() < 1e-12));
        assert_eq!(r.kept, vec![true, true, true]);
        let mut o = opts(ScaleRewards::Group);
        o.filter_zero_std = true;
        let r = group_advantages(&rewards, &o).unwrap();
        assert_eq!(r.kept, vec![false, true, false]);
    }

    #[test]
    fn unscorable_left_out_of_statistics() {
        let rewards = [vec![
            Score::Value(0.0),
            Score::unscorable("timeout"),
            Score::Value(1.0),
            Score::Value(0.5),
        ]];
        let r = group_advantages(&rewards, &opts(ScaleRewards::Group)).unwrap();
        // statistics of [0, 1, 0.5]: mean 0.5, sample std sqrt(0.25) = 0.5
        assert_eq!(r.group_mean[0], Some(0.5));
        assert!(close(r.group_std[0], 0.5));
        assert_eq!(r.unscorable, 1);
        assert_eq!(r.scored[0], vec![true, false, true, true]);
        assert_eq!(r.advantages[0][1], 0.0);
        assert!(close(r.advantages[0][0], -0.5 / 0.5001));
        assert!(close(r.advantages[0][2], 0.5 / 0.5001));
        assert!(close(r.advantages[0][3], 0.0));
        // a group with a single scorable reward has no spread
        let one = [vec![Score::Value(1.0), Score::unscorable("x")]];
        let r = group_advantages(&one, &opts(ScaleRewards::Group)).unwrap();
        assert_eq!(r.advantages[0], vec![0.0, 0.0]);
        assert_eq!(r.zero_std, vec![true]);
        // nothing scorable
        let none = [vec![Score::unscorable("a"), Score::unscorable("b")]];
        let r = group_advantages(&none, &opts(ScaleRewards::Group)).unwrap();
        assert_eq!(r.group_mean, vec![None]);
        assert_eq!(r.unscorable, 2);
    }

    #[test]
    fn batch_vs_group_vs_none() {
        let rewards = [v(&[0.0, 1.0]), v(&[0.0, 3.0])];
        // batch: all = [0, 1, 0, 3], mean 1, deviations -1,0,-1,2 → ss 6, sample var 2
        let b = group_advantages(&rewards, &opts(ScaleRewards::Batch)).unwrap();
        let s = 2.0f64.sqrt();
        assert!(close(b.batch_std, s));
        assert!(close(b.advantages[0][0], -0.5 / (s + 1e-4)));
        assert!(close(b.advantages[1][1], 1.5 / (s + 1e-4)));
        // group: group 2 std = sqrt(4.5) = 2.1213, so its advantages equal group 1's in size
        let g = group_advantages(&rewards, &opts(ScaleRewards::Group)).unwrap();
        assert!(close(g.advantages[1][1], 1.5 / (4.5f64.sqrt() + 1e-4)));
        assert!(close(g.advantages[0][1], 0.5 / (0.5f64.sqrt() + 1e-4)));
        // none: plain centring (Dr. GRPO)
        let n = group_advantages(&rewards, &opts(ScaleRewards::None)).unwrap();
        assert_eq!(n.advantages, vec![vec![-0.5, 0.5], vec![-1.5, 1.5]]);
        // the zero-std fraction is per group in every mode
        assert_eq!(n.frac_reward_zero_std, 0.0);
    }

    #[test]
    fn shape_errors() {
        assert!(group_advantages(&[], &AdvantageOptions::default()).is_err());
        assert!(group_advantages(&[vec![]], &AdvantageOptions::default()).is_err());
        assert!(
            group_advantages(&[v(&[1.0]), v(&[1.0, 2.0])], &AdvantageOptions::default()).is_err()
        );
    }

    #[test]
    fn judge_ranks_as_rewards() {
        let g = 8;
        let parsed = parse_ranking("C > A > F > B > E > D > H > G", g, &RankOptions::default());
        let scores = judge_scores(parsed.as_ref(), g);
        let vals: Vec<f64> = scores.iter().map(|s| s.as_f64().unwrap()).collect();
        // ranks A..H = 2,4,1,6,5,3,8,7 → (8 − r)/7
        let want = [6.0, 4.0, 7.0, 2.0, 3.0, 5.0, 0.0, 1.0].map(|x| x / 7.0);
        for (a, b) in vals.iter().zip(want) {
            assert!(close(*a, b));
        }
        let r = group_advantages(&[scores], &opts(ScaleRewards::Group)).unwrap();
        // ranks are a permutation of 1..8: mean 0.5, sample std of k/7 (k = 0..7) = sqrt(6)/7
        assert_eq!(
            r.group_mean[0].map(|m| (m * 1e12).round() / 1e12),
            Some(0.5)
        );
        assert!(close(r.group_std[0], 6.0f64.sqrt() / 7.0));
        let bad = parse_ranking("no idea", g, &RankOptions::default());
        let scores = judge_scores(bad.as_ref(), g);
        assert!(scores.iter().all(Score::is_unscorable));
        let r = group_advantages(&[scores], &opts(ScaleRewards::Group)).unwrap();
        assert_eq!(r.unscorable, 8);
        assert!(r.advantages[0].iter().all(|&a| a == 0.0));
    }
}
