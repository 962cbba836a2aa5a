//! The `keywords` reward: weighted presence of terms and patterns, normalised to [0, 1] (the
//! seeds' "trade-thinking" score: does a forecast mention entry, stop, target, risk, …).
//!
//! Each [`KeywordTerm`] is present when any of its words/phrases occurs as whole words
//! (case-insensitive and accent-insensitive: `preço` matches `PRECO`) or its regex matches the
//! original text. The score is
//! `clamp((Σ weights of present positive terms − Σ |weights| of present negative terms) / D, 0, 1)`
//! with `D = saturate_at` when set, else the sum of the positive weights. Negative weights
//! penalise terms (e.g. hedging phrases). Each term counts once however often it occurs.

use regex::Regex;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::text::match_key;
use super::Score;
use crate::{Error, Result};

/// One weighted term.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KeywordTerm {
    /// Words or phrases; the term is present when any occurs as whole words.
    #[serde(default)]
    pub any: Vec<String>,
    /// A regex matched against the original text (case-insensitive); `null` = none.
    #[serde(default)]
    pub pattern: Option<String>,
    /// Weight; negative = penalty. Default 1.
    #[serde(default = "one")]
    pub weight: f64,
}

fn one() -> f64 {
    1.0
}

/// Options of a `keywords` reward.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KeywordOptions {
    /// The terms.
    pub terms: Vec<KeywordTerm>,
    /// Positive weight needed for a score of 1; `null` = the sum of the positive weights.
    #[serde(default)]
    pub saturate_at: Option<f64>,
}

/// A compiled `keywords` reward.
#[derive(Debug, Clone)]
pub struct KeywordReward {
    terms: Vec<(Vec<Regex>, f64)>,
    denominator: f64,
}

/// Per-term presence, for inspection.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeywordHits {
    /// The score.
    pub score: Score,
    /// Whether each term (in option order) is present.
    pub present: Vec<bool>,
}

fn term_regex(phrase: &str) -> Result<Regex> {
    let key = match_key(phrase, true, true);
    if key.is_empty() {
        return Err(Error::Spec("keywords reward: empty term".into()));
    }
    let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    let mut pat = String::new();
    if word(key.chars().next()) {
        pat.push_str(r"\b");
    }
    // inner whitespace matches any whitespace run
    let parts: Vec<String> = key.split(' ').map(regex::escape).collect();
    pat.push_str(&parts.join(r"\s+"));
    if word(key.chars().last()) {
        pat.push_str(r"\b");
    }
    Regex::new(&pat).map_err(|e| Error::Spec(format!("keywords reward: term {phrase:?}: {e}")))
}

impl KeywordReward {
    /// Compiles the options; empty terms, bad regexes or a zero denominator are spec errors.
    pub fn new(options: &KeywordOptions) -> Result<Self> {
        let mut terms = Vec::with_capacity(options.terms.len());
        for t in &options.terms {
            if !t.weight.is_finite() {
                return Err(Error::Spec("keywords reward: weight must be finite".into()));
            }
            let mut res = Vec::new();
            for phrase in &t.any {
                res.push(term_regex(phrase)?);
            }
            let pattern = t
                .pattern
                .as_deref()
                .map(|p| {
                    Regex::new(&format!("(?i){p}"))
                        .map_err(|e| Error::Spec(format!("keywords reward: pattern {p:?}: {e}")))
                })
                .transpose()?;
            if res.is_empty() && pattern.is_none() {
                return Err(Error::Spec(
                    "keywords reward: a term needs `any` words or a `pattern`".into(),
                ));
            }
            res.extend(pattern);
            terms.push((res, t.weight));
        }
        let positive: f64 = terms.iter().map(|t| t.1.max(0.0)).sum();
        let denominator = options.saturate_at.unwrap_or(positive);
        if !(denominator.is_finite() && denominator > 0.0) {
            return Err(Error::Spec(
                "keywords reward: needs a positive weight (or saturate_at > 0)".into(),
            ));
        }
        Ok(KeywordReward { terms, denominator })
    }

    /// Presence of each term and the score.
    pub fn hits(&self, completion: &str) -> KeywordHits {
        let folded = match_key(completion, true, true);
        let mut present = Vec::with_capacity(self.terms.len());
        let mut sum = 0.0;
        for (res, w) in &self.terms {
            // Words are folded like the text; a user pattern also sees the original text.
            let hit = res
                .iter()
                .any(|r| r.is_match(&folded) || r.is_match(completion));
            if hit {
                sum += *w;
            }
            present.push(hit);
        }
        KeywordHits {
            score: Score::value((sum / self.denominator).clamp(0.0, 1.0)),
            present,
        }
    }

    /// The score alone.
    pub fn score(&self, completion: &str) -> Score {
        self.hits(completion).score
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn term(any: &[&str], weight: f64) -> KeywordTerm {
        KeywordTerm {
            any: any.iter().map(|s| s.to_string()).collect(),
            pattern: None,
            weight,
        }
    }

    #[test]
    fn weighted_presence() {
        let r = KeywordReward::new(&KeywordOptions {
            terms: vec![
                term(&["entry", "buy"], 1.0),
                term(&["stop-loss", "stop"], 2.0),
                term(&["target"], 1.0),
            ],
            saturate_at: None,
        })
        .unwrap();
        // entry (1) + stop (2) of 4
        let h = r.hits("Buy at 10, STOP at 9.");
        assert_eq!(h.present, vec![true, true, false]);
        assert_eq!(h.score, Score::Value(0.75));
        // whole words only: "buyer", "targeted" do not count
        assert_eq!(r.score("buyer targeted"), Score::Value(0.0));
        assert_eq!(r.score(""), Score::Value(0.0));
    }

    #[test]
    fn accents_patterns_penalties_and_saturation() {
        let r = KeywordReward::new(&KeywordOptions {
            terms: vec![
                term(&["preço alvo"], 1.0),
                KeywordTerm {
                    any: vec![],
                    pattern: Some(r"\d+(\.\d+)?%".into()),
                    weight: 1.0,
                },
                term(&["não sei"], -1.0),
            ],
            saturate_at: Some(1.0),
        })
        .unwrap();
        assert_eq!(r.score("PRECO   ALVO de 12"), Score::Value(1.0));
        assert_eq!(r.score("alta de 3.5%"), Score::Value(1.0));
        assert_eq!(r.score("nao sei, alta de 3%"), Score::Value(0.0));
        assert_eq!(r.score("preço alvo, 3%"), Score::Value(1.0)); // saturated, clamped
    }

    #[test]
    fn bad_options() {
        assert!(KeywordReward::new(&KeywordOptions {
            terms: vec![],
            saturate_at: None
        })
        .is_err());
        assert!(KeywordReward::new(&KeywordOptions {
            terms: vec![term(&[" "], 1.0)],
            saturate_at: None
        })
        .is_err());
        assert!(KeywordReward::new(&KeywordOptions {
            terms: vec![KeywordTerm {
                any: vec![],
                pattern: None,
                weight: 1.0
            }],
            saturate_at: None
        })
        .is_err());
    }
}
