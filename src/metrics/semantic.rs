//! Semantic diversity: the mean over unordered pairs of (1 − cosine similarity) of sentence
//! embeddings (e.g. [`crate::rewards::semantic::Embedder`], all-MiniLM-L6-v2).
//!
//! # Bounded memory
//! With `u_i = e_i / ‖e_i‖`, `Σ_{i<j} cos(e_i, e_j) = (‖Σ_i u_i‖² − Σ_i ‖u_i‖²) / 2`, so the
//! mean over the n(n−1)/2 pairs needs only the running sum of the unit vectors: O(d) memory
//! and O(n·d) time, exact (no n×n similarity matrix, no sampling of pairs).
//! [`SemanticAccumulator`] takes embeddings batch by batch, so a caller can embed and
//! discard texts chunk by chunk.
//!
//! # Effective diversity
//! [`effective_diversity`]: the semantic diversity of only the samples whose quality is at
//! least a threshold — diversity that counts only usable answers (many distinct wrong
//! answers do not raise it).

use crate::{Error, Result};

/// Running sums for [`semantic_diversity`]; push embeddings in any batches.
#[derive(Debug, Clone, Default)]
pub struct SemanticAccumulator {
    sum: Vec<f64>,
    /// Σ ‖u_i‖² (1 up to rounding, kept exact so the identity holds to the last bit).
    sum_sq: f64,
    n: usize,
}

impl SemanticAccumulator {
    /// An empty accumulator.
    pub fn new() -> SemanticAccumulator {
        SemanticAccumulator::default()
    }

    /// Add one embedding. Errors: a dimension other than the first one's, an empty,
    /// all-zero (no direction, cosine undefined) or non-finite vector.
    pub fn push(&mut self, e: &[f32]) -> Result<()> {
        let i = self.n;
        if e.is_empty() {
            return Err(Error::Other(format!(
                "semantic diversity: embedding {i} is empty"
            )));
        }
        if self.n > 0 && e.len() != self.sum.len() {
            return Err(Error::Other(format!(
                "semantic diversity: embedding {i} has dimension {}, the first has {}",
                e.len(),
                self.sum.len()
            )));
        }
        if e.iter().any(|x| !x.is_finite()) {
            return Err(Error::Other(format!(
                "semantic diversity: embedding {i} has a non-finite component"
            )));
        }
        let norm = e
            .iter()
            .map(|&x| f64::from(x) * f64::from(x))
            .sum::<f64>()
            .sqrt();
        if norm == 0.0 {
            return Err(Error::Other(format!(
                "semantic diversity: embedding {i} is all zeros (cosine undefined)"
            )));
        }
        if self.sum.is_empty() {
            self.sum = vec![0.0; e.len()];
        }
        let mut sq = 0.0;
        for (s, &x) in self.sum.iter_mut().zip(e) {
            let u = f64::from(x) / norm;
            *s += u;
            sq += u * u;
        }
        self.sum_sq += sq;
        self.n += 1;
        Ok(())
    }

    /// Embeddings pushed so far.
    pub fn count(&self) -> usize {
        self.n
    }

    /// Mean over pairs of 1 − cosine, in [0, 2]. Error with fewer than 2 embeddings.
    pub fn value(&self) -> Result<f64> {
        if self.n < 2 {
            return Err(Error::Other(format!(
                "semantic diversity: needs at least 2 samples (pairs), got {}",
                self.n
            )));
        }
        let n = self.n as f64;
        let s2: f64 = self.sum.iter().map(|x| x * x).sum();
        let mean_cos = (s2 - self.sum_sq) / (n * (n - 1.0));
        Ok(1.0 - mean_cos)
    }
}

/// Mean pairwise (1 − cosine) of `embeddings`, in [0, 2] (see the module docs). Errors:
/// fewer than 2 embeddings, mixed dimensions, a zero or non-finite vector.
pub fn semantic_diversity(embeddings: &[Vec<f32>]) -> Result<f64> {
    let mut acc = SemanticAccumulator::new();
    for e in embeddings {
        acc.push(e)?;
    }
    acc.value()
}

/// Semantic diversity over the samples whose quality is at least a threshold.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EffectiveDiversity {
    /// Semantic diversity of the kept samples.
    pub value: f64,
    /// Samples kept (quality ≥ threshold).
    pub kept: usize,
    /// Samples given.
    pub total: usize,
}

/// [`semantic_diversity`] of the embeddings whose `quality` is ≥ `threshold`. Errors:
/// lengths differ, a non-finite quality or threshold, or fewer than 2 samples pass.
pub fn effective_diversity(
    embeddings: &[Vec<f32>],
    quality: &[f64],
    threshold: f64,
) -> Result<EffectiveDiversity> {
    if embeddings.len() != quality.len() {
        return Err(Error::Other(format!(
            "effective diversity: {} embeddings but {} quality values",
            embeddings.len(),
            quality.len()
        )));
    }
    if !threshold.is_finite() {
        return Err(Error::Other(format!(
            "effective diversity: the quality threshold must be finite, got {threshold}"
        )));
    }
    if let Some(i) = quality.iter().position(|q| !q.is_finite()) {
        return Err(Error::Other(format!(
            "effective diversity: quality {i} is not finite ({})",
            quality[i]
        )));
    }
    let mut acc = SemanticAccumulator::new();
    for (e, _) in embeddings
        .iter()
        .zip(quality)
        .filter(|(_, &q)| q >= threshold)
    {
        acc.push(e)?;
    }
    if acc.count() < 2 {
        return Err(Error::Other(format!(
            "effective diversity: {} of {} samples have quality ≥ {threshold}; needs at least 2",
            acc.count(),
            embeddings.len()
        )));
    }
    Ok(EffectiveDiversity {
        value: acc.value()?,
        kept: acc.count(),
        total: embeddings.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(e: &[Vec<f32>]) -> f64 {
        let mut sum = 0.0;
        let mut k = 0;
        for i in 0..e.len() {
            for j in i + 1..e.len() {
                sum += 1.0 - f64::from(crate::rewards::semantic::cosine(&e[i], &e[j]));
                k += 1;
            }
        }
        sum / k as f64
    }

    /// (1,0), (0,1), (1,1): cosines 0, 1/√2, 1/√2 → mean 1 − √2/3.
    #[test]
    fn by_hand_and_against_pairs() {
        let e = vec![vec![1.0, 0.0], vec![0.0, 2.0], vec![3.0, 3.0]];
        let want = 1.0 - 2f64.sqrt() / 3.0;
        assert!((semantic_diversity(&e).unwrap() - want).abs() < 1e-15);
        assert!((naive(&e) - want).abs() < 1e-7);
        // Pseudo-random 64 × 16 against the pairwise loop.
        let mut x = 1u64;
        let e: Vec<Vec<f32>> = (0..64)
            .map(|_| {
                (0..16)
                    .map(|_| {
                        x = x
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        ((x >> 40) as f32 / (1u64 << 24) as f32) - 0.3
                    })
                    .collect()
            })
            .collect();
        assert!((semantic_diversity(&e).unwrap() - naive(&e)).abs() < 1e-6);
        // Identical vectors: no diversity.
        let same = vec![vec![0.5, 0.5]; 4];
        assert!(semantic_diversity(&same).unwrap().abs() < 1e-15);
    }

    #[test]
    fn effective_keeps_quality_samples() {
        let e = vec![vec![1.0, 0.0], vec![0.0, 1.0], vec![1.0, 0.0]];
        // Keep 0 and 1 (orthogonal): 1.
        let d = effective_diversity(&e, &[0.9, 0.8, 0.1], 0.5).unwrap();
        assert_eq!((d.kept, d.total), (2, 3));
        assert!((d.value - 1.0).abs() < 1e-15);
        let err = effective_diversity(&e, &[0.9, 0.1, 0.1], 0.5)
            .unwrap_err()
            .to_string();
        assert!(err.contains("1 of 3"), "{err}");
        assert!(effective_diversity(&e, &[0.9, 0.1], 0.5).is_err());
    }

    #[test]
    fn degenerate_inputs_are_errors() {
        assert!(semantic_diversity(&[]).is_err());
        assert!(semantic_diversity(&[vec![1.0]]).is_err());
        let e = semantic_diversity(&[vec![1.0, 0.0], vec![0.0, 0.0]])
            .unwrap_err()
            .to_string();
        assert!(e.contains("all zeros"), "{e}");
        assert!(semantic_diversity(&[vec![1.0, 0.0], vec![1.0]]).is_err());
        assert!(semantic_diversity(&[vec![1.0, 0.0], vec![f32::NAN, 1.0]]).is_err());
    }
}
