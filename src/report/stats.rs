//! The statistics of `runner compare`: a percentile bootstrap confidence interval of a mean and
//! a paired sign-flip permutation test, both reproducible from a seed.
//!
//! - Bootstrap: `B` resamples (with replacement, same size) of the values; the interval is the
//!   (α/2, 1 − α/2) quantiles of the `B` resampled means, quantiles interpolated linearly
//!   between order statistics (numpy's default, "type 7"). Draws come from ChaCha8 seeded with
//!   `seed`, so the same inputs and seed give the same interval.
//! - Paired permutation test: under H0 (no difference) each paired difference dᵢ is as likely
//!   to be −dᵢ. The statistic is |Σ dᵢ| (equivalently |mean d|); the two-sided p-value is the
//!   fraction of sign assignments whose |Σ sᵢ dᵢ| ≥ the observed one (ties within 1e-9 of the
//!   scale count as ≥). Exact over all 2^m assignments of the m non-zero differences when
//!   m ≤ `exact_max`; otherwise Monte Carlo with `B` random assignments, p = (1 + hits)/(1 + B)
//!   (never 0). Zero differences do not change |Σ| under any flip, so they are left out of the
//!   enumeration.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::{Error, Result};

/// The mean of `xs` (`None` when empty).
pub fn mean(xs: &[f64]) -> Option<f64> {
    if xs.is_empty() {
        None
    } else {
        Some(xs.iter().sum::<f64>() / xs.len() as f64)
    }
}

/// Sample standard deviation (n − 1); `None` for fewer than two values.
pub fn sd(xs: &[f64]) -> Option<f64> {
    if xs.len() < 2 {
        return None;
    }
    let m = mean(xs)?;
    let var = xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (xs.len() - 1) as f64;
    Some(var.sqrt())
}

/// The q-quantile (0 ≤ q ≤ 1) of sorted values, interpolating linearly (numpy "linear").
pub fn quantile_sorted(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() || !(0.0..=1.0).contains(&q) {
        return None;
    }
    let h = (sorted.len() - 1) as f64 * q;
    let lo = h.floor() as usize;
    let hi = h.ceil() as usize;
    Some(sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo]))
}

fn check_values(xs: &[f64], what: &str) -> Result<()> {
    if xs.is_empty() {
        return Err(Error::Other(format!("{what}: no values")));
    }
    if let Some(x) = xs.iter().find(|x| !x.is_finite()) {
        return Err(Error::Other(format!("{what}: a value is not finite ({x})")));
    }
    Ok(())
}

/// Percentile bootstrap interval of the mean of `xs` at confidence `level` (e.g. 0.95) from
/// `resamples` resamples drawn with `seed`. Errors: no values, a non-finite value, no
/// resamples, a level outside (0, 1).
pub fn bootstrap_mean_ci(
    xs: &[f64],
    resamples: usize,
    seed: u64,
    level: f64,
) -> Result<(f64, f64)> {
    check_values(xs, "bootstrap")?;
    if resamples == 0 {
        return Err(Error::Other(
            "bootstrap: needs at least one resample".into(),
        ));
    }
    if !(level > 0.0 && level < 1.0) {
        return Err(Error::Other(format!(
            "bootstrap: confidence level {level} is not in (0, 1)"
        )));
    }
    // Every resampled mean of a constant is the constant (summing would add rounding).
    if xs.iter().all(|x| *x == xs[0]) {
        return Ok((xs[0], xs[0]));
    }
    let n = xs.len();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut means = Vec::with_capacity(resamples);
    for _ in 0..resamples {
        let mut s = 0.0;
        for _ in 0..n {
            s += xs[rng.random_range(0..n)];
        }
        means.push(s / n as f64);
    }
    means.sort_by(f64::total_cmp);
    let a = (1.0 - level) / 2.0;
    match (quantile_sorted(&means, a), quantile_sorted(&means, 1.0 - a)) {
        (Some(lo), Some(hi)) => Ok((lo, hi)),
        _ => Err(Error::Other("bootstrap: no resampled means".into())),
    }
}

/// The result of [`paired_permutation_test`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PermutationTest {
    /// Two-sided p-value.
    pub p: f64,
    /// Whether every sign assignment was enumerated.
    pub exact: bool,
    /// Pairs tested (including zero differences).
    pub pairs: usize,
    /// Sign assignments evaluated.
    pub permutations: u64,
}

/// Paired sign-flip permutation test of the differences `d` (see the module docs): exact when
/// at most `exact_max` (≤ 30) differences are non-zero, else `resamples` Monte Carlo flips drawn
/// with `seed`.
pub fn paired_permutation_test(
    d: &[f64],
    resamples: usize,
    seed: u64,
    exact_max: usize,
) -> Result<PermutationTest> {
    check_values(d, "permutation test")?;
    let nz: Vec<f64> = d.iter().copied().filter(|x| *x != 0.0).collect();
    let scale: f64 = nz.iter().map(|x| x.abs()).sum();
    let observed: f64 = nz.iter().sum::<f64>().abs();
    let tol = 1e-9 * scale.max(f64::MIN_POSITIVE);
    let hit = |s: f64| s.abs() >= observed - tol;
    let m = nz.len();
    if m <= exact_max.min(30) {
        let total: u64 = 1u64 << m;
        let mut hits: u64 = 0;
        for mask in 0..total {
            let mut s = 0.0;
            for (i, x) in nz.iter().enumerate() {
                if (mask >> i) & 1 == 1 {
                    s -= x;
                } else {
                    s += x;
                }
            }
            if hit(s) {
                hits += 1;
            }
        }
        return Ok(PermutationTest {
            p: hits as f64 / total as f64,
            exact: true,
            pairs: d.len(),
            permutations: total,
        });
    }
    if resamples == 0 {
        return Err(Error::Other(
            "permutation test: needs at least one Monte Carlo resample".into(),
        ));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut hits: u64 = 0;
    for _ in 0..resamples {
        let mut s = 0.0;
        for x in &nz {
            if rng.random::<bool>() {
                s += x;
            } else {
                s -= x;
            }
        }
        if hit(s) {
            hits += 1;
        }
    }
    Ok(PermutationTest {
        p: (1 + hits) as f64 / (1 + resamples) as f64,
        exact: false,
        pairs: d.len(),
        permutations: resamples as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate() {
        let s = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile_sorted(&s, 0.0), Some(1.0));
        assert_eq!(quantile_sorted(&s, 1.0), Some(4.0));
        // h = 3 × 0.5 = 1.5 → 2.5
        assert_eq!(quantile_sorted(&s, 0.5), Some(2.5));
        // h = 3 × 0.025 = 0.075 → 1.075
        assert!((quantile_sorted(&s, 0.025).unwrap() - 1.075).abs() < 1e-12);
    }

    #[test]
    fn sd_is_sample_sd() {
        assert!((sd(&[1.0, 2.0, 3.0, 4.0]).unwrap() - (5.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert_eq!(sd(&[1.0]), None);
    }
}
