//! The `format` reward: one-line schema validity by regex, with partial credit for near-misses.
//!
//! - **Strict**: the completion, trimmed, is a single line and the pattern matches all of it
//!   (the pattern is anchored as `^(?:pattern)$`) → 1.
//! - **Relaxed** (optional): otherwise, when some trimmed non-empty line of the completion fully
//!   matches the relaxed pattern → `relaxed_score` (the seeds' "accept near-misses via a slightly
//!   relaxed regex": extra lines around a valid one, loose spacing, a missing field, …).
//! - Otherwise 0. An empty completion scores 0 (a format failure is a score).
//!
//! [`FormatReward::searching`] builds the spec's variant (`kind: format`): the patterns are
//! *searched* in the trimmed completion (unanchored: write `^…$` to require a full match), the
//! single-line requirement is the `one_line` option, and the relaxed pattern is searched in the
//! whole trimmed completion the same way.

use regex::Regex;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Score;
use crate::{Error, Result};

/// Options of a `format` reward.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FormatOptions {
    /// Regex the whole trimmed, single-line completion must match for a score of 1.
    pub pattern: String,
    /// A looser regex; a line fully matching it earns `relaxed_score`. `null` = none.
    #[serde(default)]
    pub relaxed: Option<String>,
    /// Score of a near-miss, in [0, 1]. Default 0.5.
    #[serde(default = "half")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub relaxed_score: f64,
}

fn half() -> f64 {
    0.5
}

/// Which level a completion reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FormatLevel {
    /// Single line, fully matching the pattern.
    Strict,
    /// A line fully matching the relaxed pattern.
    Relaxed,
    /// Neither.
    Invalid,
}

/// A compiled `format` reward.
#[derive(Debug, Clone)]
pub struct FormatReward {
    strict: Regex,
    relaxed: Option<Regex>,
    relaxed_score: f64,
    /// `Some(one_line)`: unanchored search semantics ([`FormatReward::searching`]).
    search: Option<bool>,
}

fn anchored(pattern: &str, what: &str) -> Result<Regex> {
    Regex::new(&format!("^(?:{pattern})$"))
        .map_err(|e| Error::Spec(format!("format reward: bad {what} pattern: {e}")))
}

impl FormatReward {
    /// Compiles the options; bad patterns or a score outside [0, 1] are spec errors.
    pub fn new(options: &FormatOptions) -> Result<Self> {
        if !(0.0..=1.0).contains(&options.relaxed_score) {
            return Err(Error::Spec(
                "format reward: relaxed_score must be in [0, 1]".into(),
            ));
        }
        Ok(FormatReward {
            strict: anchored(&options.pattern, "strict")?,
            relaxed: options
                .relaxed
                .as_deref()
                .map(|p| anchored(p, "relaxed"))
                .transpose()?,
            relaxed_score: options.relaxed_score,
            search: None,
        })
    }

    /// The spec's `format` reward: patterns searched (not anchored) in the trimmed completion;
    /// with `one_line`, a completion of several lines cannot score 1 (it may still reach the
    /// relaxed level).
    pub fn searching(options: &FormatOptions, one_line: bool) -> Result<Self> {
        if !(0.0..=1.0).contains(&options.relaxed_score) {
            return Err(Error::Spec(
                "format reward: relaxed_score must be in [0, 1]".into(),
            ));
        }
        let compile = |p: &str, what: &str| {
            Regex::new(p).map_err(|e| Error::Spec(format!("format reward: bad {what} regex: {e}")))
        };
        Ok(FormatReward {
            strict: compile(&options.pattern, "strict")?,
            relaxed: options
                .relaxed
                .as_deref()
                .map(|p| compile(p, "relaxed"))
                .transpose()?,
            relaxed_score: options.relaxed_score,
            search: Some(one_line),
        })
    }

    /// The level a completion reaches.
    pub fn level(&self, completion: &str) -> FormatLevel {
        let t = completion.trim();
        if let Some(one_line) = self.search {
            if t.is_empty() {
                return FormatLevel::Invalid;
            }
            if (!one_line || !t.contains('\n')) && self.strict.is_match(t) {
                return FormatLevel::Strict;
            }
            if self.relaxed.as_ref().is_some_and(|r| r.is_match(t)) {
                return FormatLevel::Relaxed;
            }
            return FormatLevel::Invalid;
        }
        if !t.is_empty() && !t.contains('\n') && self.strict.is_match(t) {
            return FormatLevel::Strict;
        }
        if let Some(r) = &self.relaxed {
            let near = t
                .lines()
                .map(str::trim)
                .any(|l| !l.is_empty() && r.is_match(l));
            if near {
                return FormatLevel::Relaxed;
            }
        }
        FormatLevel::Invalid
    }

    /// 1 (strict), `relaxed_score` (near-miss) or 0.
    pub fn score(&self, completion: &str) -> Score {
        Score::Value(match self.level(completion) {
            FormatLevel::Strict => 1.0,
            FormatLevel::Relaxed => self.relaxed_score,
            FormatLevel::Invalid => 0.0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seeds' one-line forecast schema, e.g. `TICKER: UP | conf=0.7 | reason: ...`.
    fn reward() -> FormatReward {
        FormatReward::new(&FormatOptions {
            pattern: r"[A-Z]{2,5}: (UP|DOWN|FLAT) \| conf=(0(\.\d+)?|1(\.0+)?) \| reason: .{5,}"
                .into(),
            relaxed: Some(r"(?i)[A-Z]{2,5}\s*:\s*(up|down|flat).*".into()),
            relaxed_score: 0.3,
        })
        .unwrap()
    }

    #[test]
    fn strict_full_single_line() {
        let r = reward();
        let ok = "  HBLN: UP | conf=0.7 | reason: raised guidance  \n";
        assert_eq!(r.level(ok), FormatLevel::Strict);
        assert_eq!(r.score(ok), Score::Value(1.0));
    }

    #[test]
    fn near_misses_get_relaxed_score() {
        let r = reward();
        // two lines: not strict, but a line matches the relaxed pattern
        let two = "Here is my forecast:\nHBLN: UP | conf=0.7 | reason: raised guidance";
        assert_eq!(r.level(two), FormatLevel::Relaxed);
        assert_eq!(r.score(two), Score::Value(0.3));
        // lower-case direction and no confidence
        assert_eq!(r.level("HBLN : up, strong demand"), FormatLevel::Relaxed);
    }

    #[test]
    fn partial_match_is_not_full_match() {
        let r = FormatReward::new(&FormatOptions {
            pattern: r"\d+".into(),
            relaxed: None,
            relaxed_score: 0.5,
        })
        .unwrap();
        assert_eq!(r.score("12"), Score::Value(1.0));
        assert_eq!(r.score("12 apples"), Score::Value(0.0));
        assert_eq!(r.score(""), Score::Value(0.0));
        assert_eq!(r.score("1\n2"), Score::Value(0.0));
        // alternation is anchored as a whole
        let alt = FormatReward::new(&FormatOptions {
            pattern: "a|b".into(),
            relaxed: None,
            relaxed_score: 0.5,
        })
        .unwrap();
        assert_eq!(alt.score("ab"), Score::Value(0.0));
    }

    #[test]
    fn searching_variant() {
        let o = FormatOptions {
            pattern: r"Answer:\s*-?\d+".into(),
            relaxed: Some(r"(?i)answer".into()),
            relaxed_score: 0.25,
        };
        let r = FormatReward::searching(&o, false).unwrap();
        assert_eq!(r.score("work...\nAnswer: 42"), Score::Value(1.0));
        assert_eq!(r.score("the answer is 42"), Score::Value(0.25));
        assert_eq!(r.score("42"), Score::Value(0.0));
        assert_eq!(r.score("   "), Score::Value(0.0));
        let one = FormatReward::searching(&o, true).unwrap();
        assert_eq!(one.score("Answer: 42"), Score::Value(1.0));
        // several lines: not 1, but the relaxed pattern still finds it
        assert_eq!(one.score("work...\nAnswer: 42"), Score::Value(0.25));
        let anchored = FormatOptions {
            pattern: r"^\d+$".into(),
            relaxed: None,
            relaxed_score: 0.5,
        };
        let a = FormatReward::searching(&anchored, false).unwrap();
        assert_eq!(a.score(" 12 "), Score::Value(1.0));
        assert_eq!(a.score("12 apples"), Score::Value(0.0));
        assert!(FormatReward::searching(
            &FormatOptions {
                pattern: "(".into(),
                relaxed: None,
                relaxed_score: 0.5
            },
            false
        )
        .is_err());
    }

    #[test]
    fn bad_options() {
        let mut o = FormatOptions {
            pattern: "(".into(),
            relaxed: None,
            relaxed_score: 0.5,
        };
        assert!(FormatReward::new(&o).is_err());
        o.pattern = "a".into();
        o.relaxed_score = 1.5;
        assert!(FormatReward::new(&o).is_err());
    }
}
