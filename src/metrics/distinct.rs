//! Distinct-n (Li et al. 2016, "A Diversity-Promoting Objective Function for Neural
//! Conversation Models").
//!
//! Texts are tokenised by Python's `text.split()` ([`python_split`]): case-sensitive,
//! punctuation attached to the word it touches. N-grams never cross text boundaries.
//! - [`Pooling::Pooled`]: |distinct n-grams over all texts| / |n-grams over all texts| — the
//!   corpus-level figure papers usually report as "Distinct-n".
//! - [`Pooling::PerSentence`]: the mean over texts of |distinct n-grams in the text| /
//!   |n-grams in the text|, over the texts that have at least one n-gram (at least n tokens);
//!   shorter texts are left out of the mean (the count is in `runner metrics`' notes).

use std::collections::HashSet;

use super::tokenize::python_split;
use crate::{Error, Result};

/// How distinct-n aggregates over texts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Pooling {
    /// Mean over texts (with ≥ n tokens) of each text's distinct n-grams / n-grams.
    PerSentence,
    /// Distinct n-grams over all texts / all n-grams (corpus level).
    Pooled,
}

/// Distinct-n of `texts` (see the module docs), in (0, 1]. Errors: n = 0, no texts, or no
/// text with at least n tokens.
pub fn distinct_n(texts: &[&str], n: usize, pooling: Pooling) -> Result<f64> {
    if n == 0 {
        return Err(Error::Other("distinct-n: n must be at least 1".into()));
    }
    if texts.is_empty() {
        return Err(Error::Other("distinct-n: no texts".into()));
    }
    let toks: Vec<Vec<&str>> = texts.iter().map(|t| python_split(t)).collect();
    let long_enough = toks.iter().filter(|t| t.len() >= n).count();
    if long_enough == 0 {
        return Err(Error::Other(format!(
            "distinct-{n}: no n-gram at all (none of the {} texts has {n} or more tokens)",
            texts.len()
        )));
    }
    Ok(match pooling {
        Pooling::Pooled => {
            let mut seen: HashSet<&[&str]> = HashSet::new();
            let mut total = 0usize;
            for t in &toks {
                for g in t.windows(n) {
                    total += 1;
                    seen.insert(g);
                }
            }
            seen.len() as f64 / total as f64
        }
        Pooling::PerSentence => {
            let sum: f64 = toks
                .iter()
                .filter(|t| t.len() >= n)
                .map(|t| {
                    let grams: HashSet<&[&str]> = t.windows(n).collect();
                    grams.len() as f64 / (t.len() - n + 1) as f64
                })
                .sum();
            sum / long_enough as f64
        }
    })
}

/// How many of `texts` have fewer than `n` tokens (left out of [`Pooling::PerSentence`]).
pub fn shorter_than(texts: &[&str], n: usize) -> usize {
    texts.iter().filter(|t| python_split(t).len() < n).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// "a b a b" and "a b c": bigrams ab, ba, ab | ab, bc → pooled 3 distinct of 5;
    /// per sentence (2/3 + 2/2)/2 = 5/6.
    #[test]
    fn by_hand() {
        let t = ["a b a b", "a b c"];
        assert!((distinct_n(&t, 2, Pooling::Pooled).unwrap() - 0.6).abs() < 1e-15);
        assert!((distinct_n(&t, 2, Pooling::PerSentence).unwrap() - 5.0 / 6.0).abs() < 1e-15);
        assert!((distinct_n(&t, 1, Pooling::Pooled).unwrap() - 3.0 / 7.0).abs() < 1e-15);
        // A one-word text has no bigram: left out of the per-sentence mean.
        let t = ["a b a b", "x"];
        assert!((distinct_n(&t, 2, Pooling::PerSentence).unwrap() - 2.0 / 3.0).abs() < 1e-15);
        assert_eq!(shorter_than(&t, 2), 1);
    }

    #[test]
    fn degenerate_inputs_are_errors() {
        let e = distinct_n(&["a", "b"], 2, Pooling::Pooled)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no n-gram"), "{e}");
        assert!(distinct_n(&[], 2, Pooling::Pooled).is_err());
        assert!(distinct_n(&["a b"], 0, Pooling::Pooled).is_err());
        assert!(distinct_n(&["", " "], 1, Pooling::PerSentence).is_err());
    }
}
