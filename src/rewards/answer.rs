//! The `answer` reward: extract the final numeric answer from a completion and compare it with
//! the reference (exactly or within a tolerance), for correctness rewards and pass@k.
//!
//! Extraction: the **last** match of `pattern` (default `Answer:\s*([-+]?\d[\d.,]*)`, the
//! project's arithmetic prompt convention; `null` = no pattern); capture group 1 is the answer
//! (the whole match when the pattern has no group). When it does not match, the `fallbacks` are
//! tried in order: `boxed` (the content of the last `\boxed{…}`), `last_number` (the last number
//! in the text) and `whole` (the whole trimmed completion).
//!
//! Normalisation ([`parse_number`]): surrounding spaces, a leading `+`, a trailing `.` and
//! spaces inside the number are removed; then `,` and `.` are read by `decimal`:
//! - `auto` (default): when both occur, the one that comes last is the decimal separator
//!   (`1.234,5` = 1234.5, `1,234.5` = 1234.5); a lone separator is a thousands separator when
//!   every group after it has exactly three digits and it occurs more than once or its first
//!   group is 1–3 digits long (`1,234` = 1234, `1.234.567` = 1234567) — otherwise a decimal
//!   separator (`4,5` = 4.5, `2.75` = 2.75, `12,50` = 12.5). The only ambiguous case, a single
//!   separator followed by exactly three digits (`1,234` / `1.234`), is read as thousands; set
//!   `decimal` when the data says otherwise.
//! - `point`: `.` is decimal, `,` groups thousands. `comma`: `,` is decimal, `.` groups
//!   thousands (PT-BR).
//!
//! Trailing zeros do not matter (`54.0` = `54`). No answer found → 0 (a wrong answer is a
//! score); a reference that is not a number → unscorable (a data problem).

use regex::Regex;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Score;
use crate::{Error, Result};

/// Default answer pattern (the project's arithmetic prompt convention).
pub const DEFAULT_PATTERN: &str = r"Answer:\s*([-+]?\d[\d.,]*)";

/// Where to look when the pattern does not match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Fallback {
    /// The content of the last `\boxed{…}`.
    Boxed,
    /// The last number anywhere in the text.
    LastNumber,
    /// The whole trimmed completion.
    Whole,
}

/// How `,` and `.` in numbers are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum DecimalStyle {
    /// Decide per number (module docs).
    #[default]
    Auto,
    /// `.` decimal, `,` thousands (English).
    Point,
    /// `,` decimal, `.` thousands (PT-BR).
    Comma,
}

/// Options of an `answer` reward.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AnswerOptions {
    /// Regex whose last match holds the answer in capture group 1; `null` = only the
    /// fallbacks.
    pub pattern: Option<String>,
    /// Tried in order when `pattern` does not match. Default none.
    pub fallbacks: Vec<Fallback>,
    /// Largest absolute difference counted as correct. Default 0 (exact).
    #[schemars(range(min = 0.0))]
    pub tolerance: f64,
    /// How `,` and `.` are read. Default `auto`.
    pub decimal: DecimalStyle,
}

impl Default for AnswerOptions {
    fn default() -> Self {
        AnswerOptions {
            pattern: Some(DEFAULT_PATTERN.into()),
            fallbacks: Vec::new(),
            tolerance: 0.0,
            decimal: DecimalStyle::Auto,
        }
    }
}

/// A compiled `answer` reward.
#[derive(Debug, Clone)]
pub struct AnswerReward {
    options: AnswerOptions,
    pattern: Option<Regex>,
}

/// What was extracted from a completion.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExtractedAnswer {
    /// The matched text.
    pub raw: String,
    /// Its value, when it reads as a number.
    pub value: Option<f64>,
}

impl AnswerReward {
    /// Compiles the options; a bad pattern or tolerance is a spec error.
    pub fn new(options: AnswerOptions) -> Result<Self> {
        let pattern = options
            .pattern
            .as_deref()
            .map(|p| {
                Regex::new(p).map_err(|e| Error::Spec(format!("answer reward: bad pattern: {e}")))
            })
            .transpose()?;
        if pattern.is_none() && options.fallbacks.is_empty() {
            return Err(Error::Spec(
                "answer reward: needs a pattern or at least one fallback".into(),
            ));
        }
        if !(options.tolerance.is_finite() && options.tolerance >= 0.0) {
            return Err(Error::Spec(
                "answer reward: tolerance must be finite and >= 0".into(),
            ));
        }
        Ok(AnswerReward { options, pattern })
    }

    /// The final answer of a completion, if any.
    pub fn extract(&self, completion: &str) -> Option<ExtractedAnswer> {
        let raw = self
            .pattern
            .as_ref()
            .and_then(|re| last_capture(re, completion))
            .or_else(|| {
                self.options.fallbacks.iter().find_map(|f| match f {
                    Fallback::Boxed => last_boxed(completion),
                    Fallback::LastNumber => last_number(completion),
                    Fallback::Whole => Some(completion.trim())
                        .filter(|t| !t.is_empty())
                        .map(String::from),
                })
            })?;
        let value = parse_number(&raw, self.options.decimal);
        Some(ExtractedAnswer { raw, value })
    }

    /// 1 when the extracted answer equals the reference (within `tolerance`), else 0;
    /// unscorable when the reference is not a number.
    pub fn score(&self, completion: &str, reference: &str) -> Score {
        let Some(want) = parse_number(reference, self.options.decimal) else {
            return Score::unscorable(format!("reference {reference:?} is not a number"));
        };
        match self.extract(completion).and_then(|a| a.value) {
            Some(got) if (got - want).abs() <= self.options.tolerance => Score::Value(1.0),
            _ => Score::Value(0.0),
        }
    }
}

fn last_capture(re: &Regex, text: &str) -> Option<String> {
    let caps = re.captures_iter(text).last()?;
    let m = caps.get(1).or_else(|| caps.get(0))?;
    Some(m.as_str().to_string())
}

fn last_boxed(text: &str) -> Option<String> {
    let start = text.rfind("\\boxed{")? + "\\boxed{".len();
    // match braces so `\boxed{\frac{1}{2}}` keeps its inner braces
    let mut depth = 1usize;
    for (i, c) in text[start..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(text[start..start + i].trim().to_string());
                }
            }
            _ => {}
        }
    }
    None
}

fn number_re() -> &'static Regex {
    static RE: std::sync::OnceLock<Regex> = std::sync::OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"[-+]?\d(?:[\d.,]*\d)?").unwrap_or_else(|e| panic!("built-in regex: {e}"))
    })
}

fn last_number(text: &str) -> Option<String> {
    number_re()
        .find_iter(text)
        .last()
        .map(|m| m.as_str().to_string())
}

/// Reads a number written with optional sign, thousands separators and a decimal point or
/// comma (rules in the module docs); `None` when it is not one.
pub fn parse_number(raw: &str, style: DecimalStyle) -> Option<f64> {
    let mut s: String = raw.trim().chars().filter(|c| !c.is_whitespace()).collect();
    if let Some(rest) = s.strip_prefix('+') {
        s = rest.to_string();
    }
    while s.ends_with('.') {
        s.pop();
    }
    let (neg, body) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.as_str()),
    };
    if body.is_empty()
        || !body
            .chars()
            .all(|c| c.is_ascii_digit() || c == '.' || c == ',')
    {
        return None;
    }
    let (decimal, thousands) = separators(body, style)?;
    let mut canonical = String::with_capacity(body.len() + 1);
    if neg {
        canonical.push('-');
    }
    let (int_part, frac_part) = match decimal.and_then(|d| body.rfind(d).map(|i| (i, d))) {
        Some((i, _)) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    if !valid_grouping(int_part, thousands) {
        return None;
    }
    canonical.extend(int_part.chars().filter(|c| c.is_ascii_digit()));
    if let Some(f) = frac_part {
        if f.is_empty() || !f.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
        canonical.push('.');
        canonical.push_str(f);
    }
    canonical.parse::<f64>().ok().filter(|x| x.is_finite())
}

/// Decides (decimal separator, thousands separator) for one number.
fn separators(body: &str, style: DecimalStyle) -> Option<(Option<char>, Option<char>)> {
    let has_dot = body.contains('.');
    let has_comma = body.contains(',');
    Some(match style {
        DecimalStyle::Point => (Some('.'), Some(',')),
        DecimalStyle::Comma => (Some(','), Some('.')),
        DecimalStyle::Auto => match (has_dot, has_comma) {
            (false, false) => (None, None),
            (true, true) => {
                let last_dot = body.rfind('.')?;
                let last_comma = body.rfind(',')?;
                if last_dot > last_comma {
                    (Some('.'), Some(','))
                } else {
                    (Some(','), Some('.'))
                }
            }
            (dot, _) => {
                let sep = if dot { '.' } else { ',' };
                let parts: Vec<&str> = body.split(sep).collect();
                let grouped =
                    parts[1..].iter().all(|p| p.len() == 3) && (1..=3).contains(&parts[0].len());
                if grouped {
                    (None, Some(sep))
                } else {
                    (Some(sep), None)
                }
            }
        },
    })
}

/// The integer part uses the thousands separator only in groups of three (`1.234.567`), or not
/// at all; a separator that is neither decimal nor thousands is invalid.
fn valid_grouping(int_part: &str, thousands: Option<char>) -> bool {
    if int_part.is_empty() {
        return false;
    }
    let seps = |c: char| c == '.' || c == ',';
    match thousands {
        Some(t) if int_part.contains(t) => {
            if int_part.chars().any(|c| seps(c) && c != t) {
                return false;
            }
            let groups: Vec<&str> = int_part.split(t).collect();
            (1..=3).contains(&groups[0].len()) && groups[1..].iter().all(|g| g.len() == 3)
        }
        _ => !int_part.contains(seps),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reward(options: AnswerOptions) -> AnswerReward {
        AnswerReward::new(options).unwrap()
    }

    #[test]
    fn parse_numbers_auto() {
        let cases = [
            ("54", Some(54.0)),
            ("+54", Some(54.0)),
            ("-3", Some(-3.0)),
            ("54.0", Some(54.0)),
            ("54.", Some(54.0)),
            ("4,5", Some(4.5)),
            ("12,50", Some(12.5)),
            ("2.75", Some(2.75)),
            ("1,234", Some(1234.0)),
            ("1.234.567", Some(1234567.0)),
            ("1,234,567", Some(1234567.0)),
            ("1.234,5", Some(1234.5)),
            ("1,234.5", Some(1234.5)),
            ("R$ 5", None),
            ("1,2,3", None),
            ("", None),
            ("-", None),
            ("1 000", Some(1000.0)),
        ];
        for (s, want) in cases {
            assert_eq!(parse_number(s, DecimalStyle::Auto), want, "{s:?}");
        }
    }

    #[test]
    fn parse_numbers_explicit_styles() {
        assert_eq!(parse_number("1,234", DecimalStyle::Comma), Some(1.234));
        assert_eq!(parse_number("1.234", DecimalStyle::Point), Some(1.234));
        assert_eq!(parse_number("1.234,56", DecimalStyle::Comma), Some(1234.56));
        assert_eq!(parse_number("1,234.56", DecimalStyle::Point), Some(1234.56));
        assert_eq!(parse_number("1.234,56", DecimalStyle::Point), None);
    }

    #[test]
    fn last_answer_line_wins() {
        let r = reward(AnswerOptions::default());
        let c = "6 * 9 = 54? Answer: 56\nWait, recheck.\nAnswer: 54";
        assert_eq!(r.score(c, "54"), Score::Value(1.0));
        assert_eq!(r.score("Answer: 56", "54"), Score::Value(0.0));
        assert_eq!(r.score("Answer: -3", "-3"), Score::Value(1.0));
        assert_eq!(r.score("Answer: +54.0", "54"), Score::Value(1.0));
        // no match and no fallback: a wrong answer, not unscorable
        assert_eq!(r.score("the answer is 54", "54"), Score::Value(0.0));
        // a bad reference is unscorable
        assert!(r.score("Answer: 54", "fifty-four").is_unscorable());
    }

    #[test]
    fn fallbacks_in_order() {
        let r = reward(AnswerOptions {
            fallbacks: vec![Fallback::Boxed, Fallback::LastNumber],
            ..Default::default()
        });
        assert_eq!(r.score("so \\boxed{42} and 7", "42"), Score::Value(1.0));
        assert_eq!(r.score("it is 7, then 41", "41"), Score::Value(1.0));
        assert_eq!(
            r.extract("\\boxed{\\frac{1}{2}}").map(|a| a.raw),
            Some("\\frac{1}{2}".into())
        );
        assert_eq!(r.extract("nothing").map(|a| a.raw), None);
        // only fallbacks: the whole completion
        let w = reward(AnswerOptions {
            pattern: None,
            fallbacks: vec![Fallback::Whole],
            ..Default::default()
        });
        assert_eq!(w.score("  -3 \n", "-3"), Score::Value(1.0));
        assert_eq!(w.score("about -3", "-3"), Score::Value(0.0));
        assert!(AnswerReward::new(AnswerOptions {
            pattern: None,
            fallbacks: vec![],
            ..Default::default()
        })
        .is_err());
    }

    #[test]
    fn tolerance_and_custom_pattern() {
        let r = reward(AnswerOptions {
            pattern: Some(r"Resposta:\s*(\S+)".into()),
            tolerance: 0.01,
            decimal: DecimalStyle::Comma,
            ..Default::default()
        });
        assert_eq!(r.score("Resposta: 3,141", "3,14"), Score::Value(1.0));
        assert_eq!(r.score("Resposta: 3,2", "3,14"), Score::Value(0.0));
        assert!(AnswerReward::new(AnswerOptions {
            pattern: Some("(".into()),
            ..Default::default()
        })
        .is_err());
        // a pattern without a group uses the whole match
        let r = reward(AnswerOptions {
            pattern: Some(r"\d+$".into()),
            ..Default::default()
        });
        assert_eq!(r.score("x 12", "12"), Score::Value(1.0));
    }
}
