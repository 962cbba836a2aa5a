//! Self-BLEU with NLTK's definition.
//!
//! For each text `i`: NLTK 3.x `sentence_bleu(references=[all texts but i], hypothesis=i,
//! weights=(1/N,)*N, smoothing_function=SmoothingFunction().method1)`, with every text
//! tokenised by Python's `text.split()` ([`python_split`]); Self-BLEU is the mean over texts,
//! in [0, 1] (higher = more alike). A text is never among its own references; identical copies
//! of it elsewhere are (they are other samples).
//!
//! NLTK's sentence BLEU, exactly:
//! - `p_n` = clipped matches / max(1, hypothesis n-grams), the clip being the maximum count of
//!   the n-gram in any one reference;
//! - BLEU = 0 when no unigram matches (NLTK returns 0 before smoothing);
//! - method1 replaces a zero `p_n` by 0.1 / its denominator;
//! - brevity penalty against the reference length closest to the hypothesis length (the
//!   shorter on a tie): 1 if hyp > ref, 0 if hyp is empty, else exp(1 − ref/hyp);
//! - BLEU = BP · exp(Σ (1/N) ln p_n).

use rayon::prelude::*;

use super::ngrams::NgramIndex;
use super::tokenize::python_split;
use crate::{Error, Result};

/// NLTK's default maximum n-gram order (weights (¼, ¼, ¼, ¼)).
pub const DEFAULT_MAX_N: usize = 4;

/// method1's ε.
const EPSILON: f64 = 0.1;

/// Mean NLTK sentence BLEU of each text against all the others (see the module docs), in
/// [0, 1]. Errors: fewer than 2 texts, `max_n` = 0, or every text empty.
pub fn self_bleu_nltk(texts: &[&str], max_n: usize) -> Result<f64> {
    let per = self_bleu_nltk_each(texts, max_n)?;
    Ok(per.iter().sum::<f64>() / per.len() as f64)
}

/// Each text's NLTK sentence BLEU against all the others, in input order.
pub fn self_bleu_nltk_each(texts: &[&str], max_n: usize) -> Result<Vec<f64>> {
    check_texts(texts, "Self-BLEU (NLTK)")?;
    if max_n == 0 {
        return Err(Error::Other(
            "Self-BLEU (NLTK): the maximum n-gram order must be at least 1".into(),
        ));
    }
    let toks: Vec<Vec<&str>> = texts.iter().map(|t| python_split(t)).collect();
    if toks.iter().all(Vec::is_empty) {
        return Err(Error::Other(format!(
            "Self-BLEU (NLTK): all {} texts are empty (no tokens after whitespace splitting)",
            texts.len()
        )));
    }
    let idx = NgramIndex::new(&toks, max_n);
    Ok((0..idx.len())
        .into_par_iter()
        .map(|i| {
            let stats = idx.matches_against_others(i);
            // ≥ 2 texts, so another length exists.
            let r = idx.closest_other_len(i).unwrap_or(0);
            bleu_from_stats(&stats, idx.tokens(i), r)
        })
        .collect())
}

/// Fewer than two texts leave nothing to compare with.
pub(crate) fn check_texts(texts: &[&str], what: &str) -> Result<()> {
    match texts.len() {
        0 => Err(Error::Other(format!("{what}: no texts"))),
        1 => Err(Error::Other(format!(
            "{what}: needs at least 2 texts (each is scored against the others), got 1"
        ))),
        _ => Ok(()),
    }
}

/// NLTK's BLEU from per-order (matches, hypothesis n-grams), the hypothesis length `c` and
/// the closest reference length `r`, with method1 smoothing and uniform weights.
fn bleu_from_stats(stats: &[(u64, u64)], c: usize, r: usize) -> f64 {
    if stats.first().is_none_or(|&(m, _)| m == 0) {
        return 0.0;
    }
    let w = 1.0 / stats.len() as f64;
    let log_sum: f64 = stats
        .iter()
        .map(|&(m, total)| {
            let den = total.max(1) as f64;
            let p = if m == 0 {
                EPSILON / den
            } else {
                m as f64 / den
            };
            w * p.ln()
        })
        .sum();
    let bp = if c > r {
        1.0
    } else if c == 0 {
        0.0
    } else {
        (1.0 - r as f64 / c as f64).exp()
    };
    bp * log_sum.exp()
}

/// NLTK `sentence_bleu(refs, hyp, weights=(1/max_n,)*max_n, SmoothingFunction().method1)` for
/// one already-tokenised hypothesis, computed directly (the reference the indexed Self-BLEU is
/// tested against, and the one training objectives use on small sets). 0 for no references.
pub fn sentence_bleu<S: AsRef<str>>(refs: &[Vec<S>], hyp: &[S], max_n: usize) -> f64 {
    use std::collections::HashMap;
    if refs.is_empty() || max_n == 0 {
        return 0.0;
    }
    fn counts<S: AsRef<str>>(t: &[S], n: usize) -> HashMap<Vec<&str>, u64> {
        let mut c = HashMap::new();
        for w in t.windows(n) {
            *c.entry(w.iter().map(AsRef::as_ref).collect()).or_insert(0) += 1;
        }
        c
    }
    let stats: Vec<(u64, u64)> = (1..=max_n)
        .map(|n| {
            let hc = counts(hyp, n);
            let ref_counts: Vec<_> = refs.iter().map(|r| counts(r, n)).collect();
            let m = hc
                .iter()
                .map(|(g, &k)| {
                    let max_ref = ref_counts
                        .iter()
                        .map(|rc| rc.get(g).copied().unwrap_or(0))
                        .max()
                        .unwrap_or(0);
                    k.min(max_ref)
                })
                .sum();
            (m, hc.values().sum())
        })
        .collect();
    let c = hyp.len();
    let r = refs
        .iter()
        .map(Vec::len)
        .min_by_key(|&l| (l.abs_diff(c), l))
        .unwrap_or(0);
    bleu_from_stats(&stats, c, r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, what: &str) {
        assert!((a - b).abs() < 1e-12, "{what}: {a} vs {b}");
    }

    /// By hand for "a b c e" vs "a b d e": precisions 3/4, 1/3, 0.1/2 (no trigram match,
    /// ε = 0.1), 0.1/1; equal lengths (BP 1): (0.75·⅓·0.05·0.1)^¼ = 0.00125^¼ ≈ 0.18803.
    /// "a b" vs "a b c d e": 1, 1, 0.1/1, 0.1/1 (denominators at least 1), BP e^(1 − 5/2):
    /// 0.1^½·e^−1.5 ≈ 0.0705600. The reverse: 2/5, 1/4, 0.1/3, 0.1/2, BP 1 ≈ 0.1136219.
    #[test]
    fn self_bleu_by_hand() {
        close(
            self_bleu_nltk(&["a b c e", "a b d e"], 4).unwrap(),
            0.00125f64.powf(0.25),
            "pair",
        );
        close(
            self_bleu_nltk(&["a b", "a b c d e"], 4).unwrap(),
            (0.1f64.sqrt() * (-1.5f64).exp() + (0.4 * 0.25 * (0.1 / 3.0) * 0.05f64).powf(0.25))
                / 2.0,
            "lengths",
        );
        close(
            self_bleu_nltk(&["a b c d", "a b c d"], 4).unwrap(),
            1.0,
            "same",
        );
        close(
            self_bleu_nltk(&["a b c", "x y z"], 4).unwrap(),
            0.0,
            "disjoint",
        );
    }

    #[test]
    fn indexed_matches_direct() {
        let texts = [
            "the cat sat on the mat",
            "the cat sat on a mat",
            "a dog ran in the park the park",
            "",
            "the",
            "the cat sat on the mat",
        ];
        let each = self_bleu_nltk_each(&texts, 4).unwrap();
        let toks: Vec<Vec<&str>> = texts.iter().map(|t| python_split(t)).collect();
        for i in 0..texts.len() {
            let refs: Vec<Vec<&str>> = (0..texts.len())
                .filter(|&j| j != i)
                .map(|j| toks[j].clone())
                .collect();
            close(
                each[i],
                sentence_bleu(&refs, &toks[i], 4),
                &format!("text {i}"),
            );
        }
    }

    #[test]
    fn degenerate_inputs_are_errors() {
        let e = self_bleu_nltk(&[], 4).unwrap_err().to_string();
        assert!(e.contains("no texts"), "{e}");
        let e = self_bleu_nltk(&["a b"], 4).unwrap_err().to_string();
        assert!(e.contains("at least 2"), "{e}");
        let e = self_bleu_nltk(&["", "  \n"], 4).unwrap_err().to_string();
        assert!(e.contains("empty"), "{e}");
        assert!(self_bleu_nltk(&["a", "b"], 0).is_err());
    }
}
