//! Diversity objectives that reach the gradient.
//!
//! A diversity score computed from sampled text and subtracted from the loss
//! (`text_penalty`, the seeds' `quality_loss − λ·diversity_score`) is a constant for autograd:
//! it shifts the loss value and never the weights. The objectives here instead reshape each
//! rollout's reward or advantage, which multiplies `∇ log π_θ` of that rollout in the policy
//! loss, so diversity changes the gradient:
//!
//! - [`set_polychromic_advantages`] (Hamid et al., "Polychromic Objectives for Reinforcement
//!   Learning", 2025): sets of `n` rollouts of one prompt are scored `f(S) = mean reward(S) ×
//!   diversity(S)`; a rollout's advantage is the mean `f` of the sets containing it minus the
//!   mean `f` of all sets.
//! - [`diversity_bonus`]: `r_i + λ·(D(all) − D(all∖{i}))`, the rollout's leave-one-out
//!   contribution to the group's diversity added to its reward (then normalised by the usual
//!   group advantage).
//!
//! [`grad_share`] measures each loss term's share of the gradient norm, so "λ is too weak" (or
//! "this term has no gradient at all") is a measured statement.

use candle_core::{Tensor, Var};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::metrics::{self, Pooling};
use crate::{Error, Result};

fn check_rewards(rewards: &[f64], what: &str) -> Result<()> {
    if let Some((i, r)) = rewards.iter().enumerate().find(|(_, r)| !r.is_finite()) {
        return Err(Error::Other(format!(
            "{what}: reward {i} is not finite ({r})"
        )));
    }
    Ok(())
}

/// C(n, k), saturating (only compared against a set budget).
fn n_choose_k(n: usize, k: usize) -> u128 {
    let k = k.min(n - k);
    let mut c: u128 = 1;
    for i in 0..k {
        c = c.saturating_mul((n - i) as u128) / (i as u128 + 1);
    }
    c
}

/// All k-subsets of 0..n in lexicographic order.
fn combinations(n: usize, k: usize) -> Vec<Vec<usize>> {
    let mut out = Vec::new();
    let mut idx: Vec<usize> = (0..k).collect();
    loop {
        out.push(idx.clone());
        // Advance the rightmost index that can still move.
        let Some(i) = (0..k).rev().find(|&i| idx[i] < n - k + i) else {
            return out;
        };
        idx[i] += 1;
        for j in i + 1..k {
            idx[j] = idx[j - 1] + 1;
        }
    }
}

/// `max_sets` random k-subsets of 0..n (more if needed so every index is in one): successive
/// random permutations cut into blocks of k, the last block of a pass topped up with other
/// indices of the same permutation. Every pass covers every index once or more.
fn sampled_sets(n: usize, k: usize, max_sets: usize, seed: u64) -> Vec<Vec<usize>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::new();
    loop {
        let mut perm: Vec<usize> = (0..n).collect();
        perm.shuffle(&mut rng);
        for start in (0..n).step_by(k) {
            let mut set: Vec<usize> = perm[start..(start + k).min(n)].to_vec();
            for &x in &perm {
                if set.len() >= k {
                    break;
                }
                if !set.contains(&x) {
                    set.push(x);
                }
            }
            set.sort_unstable();
            out.push(set);
            if out.len() >= max_sets && start + k >= n {
                return out;
            }
        }
        if out.len() >= max_sets {
            return out;
        }
    }
}

/// Set-polychromic advantages (Hamid et al. 2025) for one group of rollouts.
///
/// `diversity(S)` gets a set's rollout indices (sorted) and must return a value in [0, 1]
/// (e.g. [`fraction_distinct`]). All `C(G, set_size)` sets are used when there are at most
/// `max_sets`; otherwise `max_sets` sets are sampled with `seed` so that every rollout is in
/// at least one. Advantage of rollout i = mean f over the sets containing i − mean f over all
/// sets, with `f(S) = mean reward over S × diversity(S)`.
pub fn set_polychromic_advantages(
    rewards: &[f64],
    set_size: usize,
    diversity: &dyn Fn(&[usize]) -> f64,
    max_sets: usize,
    seed: u64,
) -> Result<Vec<f64>> {
    let g = rewards.len();
    check_rewards(rewards, "set_polychromic")?;
    if set_size == 0 || set_size > g {
        return Err(Error::Other(format!(
            "set_polychromic: set size {set_size} must be between 1 and the group size {g}"
        )));
    }
    if max_sets == 0 {
        return Err(Error::Other("set_polychromic: max_sets must be ≥ 1".into()));
    }
    let sets = if n_choose_k(g, set_size) <= max_sets as u128 {
        combinations(g, set_size)
    } else {
        sampled_sets(g, set_size, max_sets, seed)
    };
    let mut sum_by = vec![0.0; g];
    let mut count_by = vec![0usize; g];
    let mut total = 0.0;
    for set in &sets {
        let d = diversity(set);
        if !(0.0..=1.0).contains(&d) {
            return Err(Error::Other(format!(
                "set_polychromic: diversity of set {set:?} is {d}, outside [0, 1]"
            )));
        }
        let mean_r = set.iter().map(|&i| rewards[i]).sum::<f64>() / set.len() as f64;
        let f = mean_r * d;
        total += f;
        for &i in set {
            sum_by[i] += f;
            count_by[i] += 1;
        }
    }
    let baseline = total / sets.len() as f64;
    (0..g)
        .map(|i| {
            if count_by[i] == 0 {
                // Cannot happen (enumeration and sampling both cover every rollout).
                return Err(Error::Other(format!(
                    "set_polychromic: rollout {i} is in no set"
                )));
            }
            Ok(sum_by[i] / count_by[i] as f64 - baseline)
        })
        .collect()
}

/// `r_i + λ·(D(all) − D(all∖{i}))` for one group: each rollout's reward plus λ times its
/// leave-one-out contribution to the group's diversity `D` (given the rollouts' indices).
pub fn diversity_bonus(
    rewards: &[f64],
    lambda: f64,
    group_diversity: &dyn Fn(&[usize]) -> f64,
) -> Result<Vec<f64>> {
    let g = rewards.len();
    check_rewards(rewards, "diversity_bonus")?;
    if g < 2 {
        return Err(Error::Other(format!(
            "diversity_bonus: needs at least 2 rollouts per group, got {g}"
        )));
    }
    if !lambda.is_finite() {
        return Err(Error::Other(format!(
            "diversity_bonus: λ must be finite, got {lambda}"
        )));
    }
    let all: Vec<usize> = (0..g).collect();
    let d_all = group_diversity(&all);
    let mut out = Vec::with_capacity(g);
    for (i, r) in rewards.iter().enumerate() {
        let rest: Vec<usize> = all.iter().copied().filter(|&j| j != i).collect();
        let d = d_all - group_diversity(&rest);
        if !d.is_finite() {
            return Err(Error::Other(format!(
                "diversity_bonus: diversity is not finite (leaving out rollout {i})"
            )));
        }
        out.push(r + lambda * d);
    }
    Ok(out)
}

/// The number of distinct members of `set` divided by its size, where `same(i, j)` says two
/// rollouts are equivalent (e.g. cosine similarity of their embeddings ≥ a threshold, or equal
/// normalised text). Each member joins the first earlier representative it is `same` as. In
/// [0, 1] (1 = all distinct); an empty set is 0.
pub fn fraction_distinct(set: &[usize], same: &dyn Fn(usize, usize) -> bool) -> f64 {
    if set.is_empty() {
        return 0.0;
    }
    let mut reps: Vec<usize> = Vec::new();
    for &i in set {
        if !reps.iter().any(|&r| same(r, i)) {
            reps.push(i);
        }
    }
    reps.len() as f64 / set.len() as f64
}

/// Mean of `dist(i, j)` over the unordered pairs of `set` (e.g. cosine distance of
/// embeddings); 0 for fewer than 2 members.
pub fn mean_pairwise(set: &[usize], dist: &dyn Fn(usize, usize) -> f64) -> f64 {
    let mut sum = 0.0;
    let mut n = 0usize;
    for (a, &i) in set.iter().enumerate() {
        for &j in &set[a + 1..] {
            sum += dist(i, j);
            n += 1;
        }
    }
    if n == 0 {
        0.0
    } else {
        sum / n as f64
    }
}

/// Distinct-n pooled over `texts` as the training objectives use it:
/// [`crate::metrics::distinct_n`] with [`Pooling::Pooled`] (Python `str.split()` tokens), and
/// 0 when there is nothing to tell apart (no text, n = 0, or no n-gram at all) — a set with no
/// n-gram has no diversity to reward. Evaluation calls `crate::metrics`, where those are errors.
pub fn distinct_n(texts: &[&str], n: usize) -> f64 {
    // Its only errors are the three "nothing to tell apart" cases above.
    metrics::distinct_n(texts, n, Pooling::Pooled).unwrap_or(0.0)
}

/// NLTK's `sentence_bleu` (BLEU-4, uniform weights, `SmoothingFunction().method1`) of `hyp`
/// against `refs`: [`crate::metrics::self_bleu::sentence_bleu`] with max order 4.
pub fn sentence_bleu(refs: &[Vec<&str>], hyp: &[&str]) -> f64 {
    metrics::self_bleu::sentence_bleu(refs, hyp, 4)
}

/// 1 − Self-BLEU for the training objectives: 1 − [`crate::metrics::self_bleu_nltk`] (each
/// text's NLTK BLEU-4 against all the others, `str.split()` tokens), in [0, 1]; 0 when there
/// is nothing to compare (fewer than 2 texts, or every text empty).
pub fn self_bleu_diversity(texts: &[&str]) -> f64 {
    match metrics::self_bleu_nltk(texts, 4) {
        Ok(b) => 1.0 - b,
        // Its only errors are the "nothing to compare" cases above.
        Err(_) => 0.0,
    }
}

/// L2 norm of each term's own gradient with respect to `vars` (one backward per term; a term
/// that does not depend on `vars` has norm 0).
pub fn grad_norms(terms: &[(&str, &Tensor)], vars: &[Var]) -> Result<Vec<(String, f64)>> {
    terms
        .iter()
        .map(|(name, t)| {
            let grads = t.backward()?;
            Ok((name.to_string(), super::optim::grad_norm(&grads, vars)?))
        })
        .collect()
}

/// Each loss term's share of the gradient norm: `‖∇term‖ / Σ_k ‖∇term_k‖` (shares sum to 1;
/// all 0 when no term has a gradient). A term with share 0 cannot change the model, whatever
/// its weight. For advantage-reshaping objectives, pass the policy loss computed with the
/// quality advantages and with the diversity part of the advantages as two terms.
pub fn grad_share(terms: &[(&str, &Tensor)], vars: &[Var]) -> Result<Vec<(String, f64)>> {
    let norms = grad_norms(terms, vars)?;
    let total: f64 = norms.iter().map(|(_, n)| n).sum();
    if !total.is_finite() {
        return Err(Error::Other(format!(
            "grad_share: non-finite gradient norm ({total})"
        )));
    }
    Ok(norms
        .into_iter()
        .map(|(name, n)| (name, if total > 0.0 { n / total } else { 0.0 }))
        .collect())
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn close(a: f64, b: f64, what: &str) {
        assert!((a - b).abs() < 1e-12, "{what}: {a} vs {b}");
    }

    /// Rollouts 0 and 3 are the same answer; the others are distinct.
    fn same(i: usize, j: usize) -> bool {
        i == j || (i.min(j), i.max(j)) == (0, 3)
    }

    /// G = 4, rewards (1, 0, 0.5, 1), sets of 2 (all 6 enumerated), diversity 1 for distinct
    /// pairs and ½ for {0, 3} (fraction distinct). f per set:
    /// {0,1} ½·1 = 0.5, {0,2} 0.75, {0,3} 1·½ = 0.5, {1,2} 0.25, {1,3} 0.5, {2,3} 0.75;
    /// mean over sets 3.25/6. Rollout 0: (0.5 + 0.75 + 0.5)/3 − 3.25/6 = 1/24; rollout 1:
    /// (0.5 + 0.25 + 0.5)/3 − 3.25/6 = −1/8; rollout 2: (0.75 + 0.25 + 0.75)/3 − 3.25/6 = 1/24;
    /// rollout 3: (0.5 + 0.5 + 0.75)/3 − 3.25/6 = 1/24. Without the diversity factor rollouts 0
    /// and 3 would get 0.75 − 0.625 = 1/8 each: duplicating an answer costs advantage.
    #[test]
    fn set_polychromic_by_hand() {
        let r = [1.0, 0.0, 0.5, 1.0];
        let div = |s: &[usize]| fraction_distinct(s, &same);
        let a = set_polychromic_advantages(&r, 2, &div, 100, 0).unwrap();
        let want = [1.0 / 24.0, -1.0 / 8.0, 1.0 / 24.0, 1.0 / 24.0];
        for i in 0..4 {
            close(a[i], want[i], &format!("adv {i}"));
        }
        let plain = set_polychromic_advantages(&r, 2, &|_: &[usize]| 1.0, 100, 0).unwrap();
        close(plain[0], 0.125, "plain 0");
        close(plain[3], 0.125, "plain 3");
        // Errors: set larger than the group, diversity out of range, non-finite reward.
        assert!(set_polychromic_advantages(&r, 5, &div, 100, 0).is_err());
        assert!(set_polychromic_advantages(&r, 2, &|_: &[usize]| 1.5, 100, 0).is_err());
        assert!(set_polychromic_advantages(&[1.0, f64::NAN], 2, &div, 100, 0).is_err());
    }

    /// With fewer sets allowed than C(G, n), sampled sets are seeded, of the right size and
    /// cover every rollout.
    #[test]
    fn set_polychromic_sampling_is_seeded_and_covers() {
        let r: Vec<f64> = (0..16).map(|i| (i % 3) as f64).collect();
        let div = |s: &[usize]| {
            assert_eq!(s.len(), 4);
            assert!(s.windows(2).all(|w| w[0] < w[1]));
            1.0
        };
        let a = set_polychromic_advantages(&r, 4, &div, 10, 7).unwrap();
        let b = set_polychromic_advantages(&r, 4, &div, 10, 7).unwrap();
        assert_eq!(a, b);
        let c = set_polychromic_advantages(&r, 4, &div, 10, 8).unwrap();
        assert_ne!(a, c);
        // Fewer sets than one pass needs: still every rollout is covered (no error).
        let sets = sampled_sets(10, 3, 1, 1);
        let covered: HashSet<usize> = sets.iter().flatten().copied().collect();
        assert_eq!(covered.len(), 10);
        assert!(sets.iter().all(|s| s.len() == 3));
        assert_eq!(combinations(4, 2).len(), 6);
        assert_eq!(n_choose_k(16, 4), 1820);
    }

    /// Rewards (1, 0, 0.5, 1), λ = 0.5, D = fraction distinct (0 ≡ 3): D(all) = 3/4;
    /// leaving out 0 or 3 gives D = 1 (contribution −1/4), leaving out 1 or 2 gives 2/3
    /// (contribution 1/12). Rewards + ½·contribution: (0.875, 1/24, 0.5 + 1/24, 0.875).
    #[test]
    fn diversity_bonus_by_hand() {
        let r = [1.0, 0.0, 0.5, 1.0];
        let div = |s: &[usize]| fraction_distinct(s, &same);
        let b = diversity_bonus(&r, 0.5, &div).unwrap();
        let want = [0.875, 1.0 / 24.0, 0.5 + 1.0 / 24.0, 0.875];
        for i in 0..4 {
            close(b[i], want[i], &format!("bonus {i}"));
        }
        assert!(diversity_bonus(&[1.0], 0.5, &div).is_err());
    }

    /// "a b a b" and "a b c": bigrams ab, ba, ab, ab, bc → 3 distinct of 5.
    #[test]
    fn distinct_n_by_hand() {
        close(distinct_n(&["a b a b", "a b c"], 2), 0.6, "distinct-2");
        close(
            distinct_n(&["a b a b", "a b c"], 1),
            3.0 / 7.0,
            "distinct-1",
        );
        close(distinct_n(&["a", "b"], 2), 0.0, "no bigrams");
    }

    /// Values as NLTK 3.10 `sentence_bleu(..., smoothing_function=SmoothingFunction().method1)`
    /// gives them. By hand for "a b c e" vs "a b d e": precisions 3/4, 1/3, 0.1/2 (no trigram
    /// match, ε = 0.1), 0.1/1; equal lengths (BP 1): (0.75·⅓·0.05·0.1)^¼ = 0.00125^¼ ≈ 0.18803.
    /// "a b" vs "a b c d e": 1, 1, 0.1/1, 0.1/1 (denominators at least 1), BP e^(1 − 5/2):
    /// 0.1^½·e^−1.5 ≈ 0.0705600. The reverse: 2/5, 1/4, 0.1/3, 0.1/2, BP 1 ≈ 0.1136219.
    #[test]
    fn self_bleu_matches_nltk() {
        close(
            self_bleu_diversity(&["a b c e", "a b d e"]),
            1.0 - 0.1880301546543197,
            "pair",
        );
        close(
            self_bleu_diversity(&["a b", "a b c d e"]),
            1.0 - (0.07055995207471726 + 0.11362193664674995) / 2.0,
            "lengths",
        );
        close(
            self_bleu_diversity(&[
                "the cat sat on the mat",
                "the cat sat on a mat",
                "a dog ran in the park",
            ]),
            0.6172748439090492,
            "three",
        );
        close(self_bleu_diversity(&["a b c d", "a b c d"]), 0.0, "same");
        close(self_bleu_diversity(&["a b c", "x y z"]), 1.0, "disjoint");
    }

    /// Terms 3·p₀ (gradient (3, 0)), p₁² at p₁ = 2 (gradient (0, 4)) and a constant (no
    /// gradient): shares 3/7, 4/7, 0.
    #[test]
    fn grad_share_by_hand() {
        let p = Var::new(&[1.0f64, 2.0], &candle_core::Device::Cpu).unwrap();
        let t1 = (p.as_tensor().narrow(0, 0, 1).unwrap() * 3.0)
            .unwrap()
            .sum_all()
            .unwrap();
        let t2 = p
            .as_tensor()
            .narrow(0, 1, 1)
            .unwrap()
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap();
        let t3 = Tensor::new(5.0f64, &candle_core::Device::Cpu).unwrap();
        let s = grad_share(&[("quality", &t1), ("kl", &t2), ("text", &t3)], &[p]).unwrap();
        close(s[0].1, 3.0 / 7.0, "quality");
        close(s[1].1, 4.0 / 7.0, "kl");
        close(s[2].1, 0.0, "text penalty has no gradient");
        assert_eq!(s[2].0, "text");
    }
}
