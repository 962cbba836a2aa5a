//! Self-BLEU with sacrebleu's definition.
//!
//! For each text `i`: sacrebleu 2.x `sentence_bleu(hypothesis=i, references=[all texts but
//! i])` with its defaults `tokenize='13a'`, `smooth_method='exp'`, `use_effective_order=True`,
//! `lowercase=False`, max order 4; Self-BLEU is the mean of the `.score`s, on sacrebleu's
//! 0..100 scale. Every text is tokenised by [`tokenize_13a`].
//!
//! sacrebleu's sentence BLEU, exactly:
//! - clipped matches and hypothesis n-gram totals per order (max count over the references);
//! - 0 when nothing matches at any order;
//! - orders with no hypothesis n-gram end the sum (effective order = the orders before);
//! - `exp` smoothing: the k-th order with 0 matches gets precision 100 / (2^k · total);
//!   others 100 · matches / total;
//! - brevity penalty against the closest reference length (the shorter on a tie):
//!   exp(1 − ref/hyp) if hyp < ref (0 for an empty hypothesis), else 1;
//! - BLEU = BP · exp(Σ ln p_n / effective order).

use rayon::prelude::*;

use super::ngrams::NgramIndex;
use super::self_bleu::check_texts;
use super::tokenize::tokenize_13a;
use crate::{Error, Result};

/// sacrebleu's `BLEU.MAX_NGRAM_ORDER`.
const MAX_ORDER: usize = 4;

/// Mean sacrebleu sentence BLEU of each text against all the others (see the module docs), on
/// sacrebleu's 0..100 scale. Errors: fewer than 2 texts, or every text empty after
/// tokenisation.
pub fn self_bleu_sacre(texts: &[&str]) -> Result<f64> {
    let per = self_bleu_sacre_each(texts)?;
    Ok(per.iter().sum::<f64>() / per.len() as f64)
}

/// Each text's sacrebleu sentence BLEU (0..100) against all the others, in input order.
pub fn self_bleu_sacre_each(texts: &[&str]) -> Result<Vec<f64>> {
    check_texts(texts, "Self-BLEU (sacrebleu)")?;
    let toks: Vec<Vec<String>> = texts.par_iter().map(|t| tokenize_13a(t)).collect();
    if toks.iter().all(Vec::is_empty) {
        return Err(Error::Other(format!(
            "Self-BLEU (sacrebleu): all {} texts are empty (no tokens after 13a tokenisation)",
            texts.len()
        )));
    }
    let idx = NgramIndex::new(&toks, MAX_ORDER);
    Ok((0..idx.len())
        .into_par_iter()
        .map(|i| {
            let stats = idx.matches_against_others(i);
            let r = idx.closest_other_len(i).unwrap_or(0);
            sacre_bleu_from_stats(&stats, idx.tokens(i), r)
        })
        .collect())
}

/// sacrebleu's `BLEU.compute_bleu` with `smooth_method='exp'`, `effective_order=True`.
fn sacre_bleu_from_stats(stats: &[(u64, u64)], sys_len: usize, ref_len: usize) -> f64 {
    let bp = if sys_len < ref_len {
        if sys_len > 0 {
            (1.0 - ref_len as f64 / sys_len as f64).exp()
        } else {
            0.0
        }
    } else {
        1.0
    };
    if stats.iter().all(|&(m, _)| m == 0) {
        return 0.0;
    }
    let mut smooth = 1.0f64;
    let mut logs: Vec<f64> = Vec::with_capacity(stats.len());
    for &(m, total) in stats {
        if total == 0 {
            break;
        }
        let p = if m == 0 {
            smooth *= 2.0;
            100.0 / (smooth * total as f64)
        } else {
            100.0 * m as f64 / total as f64
        };
        logs.push(p.ln());
    }
    // Some order matched, so at least the unigram order has n-grams.
    let eff = logs.len().max(1) as f64;
    bp * (logs.iter().sum::<f64>() / eff).exp()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// "a b c e" vs "a b d e": 3/4, 1/3, 0/2 → 100/(2·2), 0/1 → 100/(4·1); BP 1:
    /// exp((ln 75 + ln 33.33 + ln 25 + ln 25)/4).
    #[test]
    fn pair_by_hand() {
        let want = ((75f64.ln() + (100.0f64 / 3.0).ln() + 25f64.ln() + 25f64.ln()) / 4.0).exp();
        let got = self_bleu_sacre(&["a b c e", "a b d e"]).unwrap();
        assert!((got - want).abs() < 1e-9, "{got} vs {want}");
        // Effective order: "a b" has no trigram; vs "a b c": p1 = p2 = 100, BP exp(1 − 3/2).
        let each = self_bleu_sacre_each(&["a b", "a b c"]).unwrap();
        assert!((each[0] - 100.0 * (-0.5f64).exp()).abs() < 1e-9, "{each:?}");
    }

    #[test]
    fn degenerate_inputs_are_errors() {
        assert!(self_bleu_sacre(&[]).is_err());
        assert!(self_bleu_sacre(&["x"]).is_err());
        let e = self_bleu_sacre(&["", " "]).unwrap_err().to_string();
        assert!(e.contains("empty"), "{e}");
    }
}
