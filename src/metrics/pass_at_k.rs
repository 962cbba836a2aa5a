//! pass@k (Chen et al. 2021, "Evaluating Large Language Models Trained on Code").
//!
//! The unbiased estimator from `n` samples of which `c` are correct:
//! `pass@k = 1 − C(n−c, k) / C(n, k)`, computed in the paper's numerically stable product form
//! `1 − Π_{i=n−c+1}^{n} (1 − k/i)` (1 exactly when n − c < k: every k-subset holds a correct
//! sample). No binomial coefficient is formed, so large n neither overflows nor loses precision.

use crate::{Error, Result};

/// Unbiased pass@k for one problem with `n` samples, `c` correct. Errors: n = 0, c > n,
/// k = 0 or k > n.
pub fn pass_at_k(n: usize, c: usize, k: usize) -> Result<f64> {
    if n == 0 {
        return Err(Error::Other("pass@k: no samples (n = 0)".into()));
    }
    if c > n {
        return Err(Error::Other(format!(
            "pass@k: {c} correct out of {n} samples is impossible"
        )));
    }
    if k == 0 {
        return Err(Error::Other("pass@k: k must be at least 1".into()));
    }
    if k > n {
        return Err(Error::Other(format!(
            "pass@{k}: needs at least k = {k} samples per problem, got n = {n}"
        )));
    }
    if n - c < k {
        return Ok(1.0);
    }
    let prod: f64 = (n - c + 1..=n).map(|i| 1.0 - k as f64 / i as f64).product();
    Ok(1.0 - prod)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Closed form on hand cases: C(n−c, k)/C(n, k).
    #[test]
    fn closed_form_by_hand() {
        let cases = [
            (4, 1, 1, 0.25),         // 1 − 3/4
            (4, 1, 2, 0.5),          // 1 − C(3,2)/C(4,2) = 1 − 3/6
            (5, 2, 3, 0.9),          // 1 − C(3,3)/C(5,3) = 1 − 1/10
            (10, 3, 5, 11.0 / 12.0), // 1 − C(7,5)/C(10,5) = 1 − 21/252
            (3, 0, 2, 0.0),
            (3, 3, 2, 1.0),
            (10, 1, 10, 1.0),
        ];
        for (n, c, k, want) in cases {
            let got = pass_at_k(n, c, k).unwrap();
            assert!(
                (got - want).abs() < 1e-15,
                "pass@{k} n={n} c={c}: {got} vs {want}"
            );
        }
    }

    #[test]
    fn degenerate_inputs_are_errors() {
        assert!(pass_at_k(0, 0, 1)
            .unwrap_err()
            .to_string()
            .contains("n = 0"));
        assert!(pass_at_k(3, 4, 1).is_err());
        assert!(pass_at_k(3, 1, 0).is_err());
        let e = pass_at_k(5, 1, 10).unwrap_err().to_string();
        assert!(e.contains("k = 10") && e.contains("n = 5"), "{e}");
    }
}
