//! The `quality` reward: a heuristic paragraph rubric in [0, 1] that also reports its flags
//! (`leak`, `degenerate`) so summaries can show the leak rate.
//!
//! - **Degenerate** output scores 0: fewer than `min_words_degenerate` words, or a repeated
//!   n-gram ratio above `max_repeat_ratio` (ratio = 1 − distinct n-grams / all n-grams over the
//!   lower-cased words; "buy buy buy buy buy" → 1 − 1/3 for trigrams).
//! - **Length**: 1 inside `[min_words, max_words]`, `words / min_words` below, `max_words /
//!   words` above.
//! - **Leakage** costs `leak_penalty` per finding (score floored at 0). Findings:
//!   1. a configured phrase (`leak_phrases`, e.g. "Keep it professional and concise.") found
//!      anywhere (case- and accent-insensitive);
//!   2. with `leak_heuristic`, a line that starts with a meta prefix such as "Here is",
//!      "As an AI", "Instructions:", "Note:", "Sure,", or the PT-BR "Aqui está", "Claro!",
//!      "Instruções:" ([`META_PREFIXES`]; leading Markdown markers ignored);
//!   3. when the prompt is given, a sentence of at least `echo_min_words` words copied from it
//!      (instruction echo).

use std::collections::HashSet;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::text::match_key;
use super::Score;
use crate::{Error, Result};

/// Line openings that mark meta talk rather than the requested paragraph (compared after
/// lower-casing and accent folding).
pub const META_PREFIXES: &[&str] = &[
    "here is",
    "here's",
    "here are",
    "as an ai",
    "as a language model",
    "as an assistant",
    "instructions:",
    "instruction:",
    "note:",
    "sure,",
    "sure!",
    "sure.",
    "certainly",
    "of course",
    "i cannot",
    "i can't",
    "i'm sorry",
    "okay,",
    "the user",
    "aqui esta",
    "aqui estao",
    "segue ",
    "claro!",
    "claro,",
    "como uma ia",
    "como um modelo de linguagem",
    "instrucoes:",
    "instrucao:",
    "observacao:",
    "nota:",
];

/// Options of a `quality` reward.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct QualityOptions {
    /// Fewest words for full length credit. Default 40.
    pub min_words: usize,
    /// Most words for full length credit. Default 200.
    pub max_words: usize,
    /// Fewer words than this is degenerate (score 0). Default 5.
    pub min_words_degenerate: usize,
    /// N-gram size of the repetition check. Default 3.
    #[schemars(range(min = 1))]
    pub ngram: usize,
    /// Repeated n-gram ratio above which the output is degenerate, in [0, 1]. Default 0.5.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub max_repeat_ratio: f64,
    /// Phrases whose presence is instruction echo / meta leakage.
    pub leak_phrases: Vec<String>,
    /// Also flag lines opening with a meta prefix ("Here is", "As an AI", …). Default true.
    pub leak_heuristic: bool,
    /// Shortest copied prompt sentence (in words) that counts as an echo. Default 6.
    pub echo_min_words: usize,
    /// Score subtracted per leak finding, in [0, 1]. Default 0.25.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub leak_penalty: f64,
}

impl Default for QualityOptions {
    fn default() -> Self {
        QualityOptions {
            min_words: 40,
            max_words: 200,
            min_words_degenerate: 5,
            ngram: 3,
            max_repeat_ratio: 0.5,
            leak_phrases: vec!["Keep it professional and concise.".into()],
            leak_heuristic: true,
            echo_min_words: 6,
            leak_penalty: 0.25,
        }
    }
}

impl QualityOptions {
    /// Checks the options.
    pub fn validate(&self) -> Result<()> {
        if self.min_words > self.max_words || self.max_words == 0 {
            return Err(Error::Spec(
                "quality reward: need 0 < max_words and min_words <= max_words".into(),
            ));
        }
        if self.ngram == 0 {
            return Err(Error::Spec("quality reward: ngram must be >= 1".into()));
        }
        let unit = |x: f64| (0.0..=1.0).contains(&x);
        if !unit(self.max_repeat_ratio) || !unit(self.leak_penalty) {
            return Err(Error::Spec(
                "quality reward: max_repeat_ratio and leak_penalty must be in [0, 1]".into(),
            ));
        }
        Ok(())
    }
}

/// The rubric's verdict on one completion.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QualityResult {
    /// The reward.
    pub score: Score,
    /// Word count.
    pub words: usize,
    /// Length credit before penalties.
    pub length_score: f64,
    /// Repeated n-gram ratio.
    pub repeat_ratio: f64,
    /// Instruction echo or meta leakage found.
    pub leak: bool,
    /// What leaked (phrases, lines, echoed sentences).
    pub leaks: Vec<String>,
    /// Degenerate output (too short or repetitive).
    pub degenerate: bool,
}

/// Scores one paragraph; `prompt` (when given) enables the instruction-echo check.
pub fn score_quality(
    completion: &str,
    prompt: Option<&str>,
    options: &QualityOptions,
) -> QualityResult {
    let words: Vec<String> = completion
        .split_whitespace()
        .map(|w| {
            w.trim_matches(|c: char| !c.is_alphanumeric())
                .to_lowercase()
        })
        .filter(|w| !w.is_empty())
        .collect();
    let n = words.len();
    let repeat_ratio = repeat_ratio(&words, options.ngram.max(1));
    let degenerate = n < options.min_words_degenerate || repeat_ratio > options.max_repeat_ratio;
    let length_score = if n == 0 {
        0.0
    } else if n < options.min_words {
        n as f64 / options.min_words as f64
    } else if n > options.max_words {
        options.max_words as f64 / n as f64
    } else {
        1.0
    };
    let leaks = find_leaks(completion, prompt, options);
    let score = if degenerate {
        0.0
    } else {
        (length_score - options.leak_penalty * leaks.len() as f64).max(0.0)
    };
    QualityResult {
        score: Score::value(score),
        words: n,
        length_score,
        repeat_ratio,
        leak: !leaks.is_empty(),
        leaks,
        degenerate,
    }
}

/// 1 − distinct n-grams / all n-grams; 0 when there are fewer than `n` words.
pub fn repeat_ratio(words: &[String], n: usize) -> f64 {
    if n == 0 || words.len() < n {
        return 0.0;
    }
    let grams: Vec<&[String]> = words.windows(n).collect();
    let distinct: HashSet<&[String]> = grams.iter().copied().collect();
    1.0 - distinct.len() as f64 / grams.len() as f64
}

fn find_leaks(completion: &str, prompt: Option<&str>, options: &QualityOptions) -> Vec<String> {
    let mut leaks = Vec::new();
    let folded = match_key(completion, true, true);
    for phrase in &options.leak_phrases {
        let p = match_key(phrase, true, true);
        if !p.is_empty() && folded.contains(&p) {
            leaks.push(phrase.clone());
        }
    }
    if options.leak_heuristic {
        for line in completion.lines() {
            let l = line.trim_start_matches(|c: char| {
                c.is_whitespace() || matches!(c, '*' | '#' | '>' | '-' | '_' | '"')
            });
            let key = match_key(l, true, true);
            if META_PREFIXES.iter().any(|p| key.starts_with(p)) {
                leaks.push(line.trim().to_string());
            }
        }
    }
    if let Some(prompt) = prompt {
        let prompt_key = match_key(prompt, true, true);
        for sentence in completion.split(['.', '!', '?', '\n']) {
            let key = match_key(sentence, true, true);
            let already = leaks
                .iter()
                .any(|l| match_key(l, true, true).contains(&key));
            if key.split(' ').count() >= options.echo_min_words.max(1)
                && prompt_key.contains(&key)
                && !already
            {
                leaks.push(sentence.trim().to_string());
            }
        }
    }
    leaks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(n: usize) -> String {
        (0..n)
            .map(|i| format!("word{i}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn opts() -> QualityOptions {
        QualityOptions {
            min_words: 10,
            max_words: 20,
            ..Default::default()
        }
    }

    #[test]
    fn length_window() {
        let o = opts();
        assert_eq!(score_quality(&words(15), None, &o).score, Score::Value(1.0));
        assert_eq!(score_quality(&words(5), None, &o).score, Score::Value(0.5));
        assert_eq!(score_quality(&words(40), None, &o).score, Score::Value(0.5));
    }

    #[test]
    fn degenerate_outputs() {
        let o = opts();
        let r = score_quality("too short", None, &o);
        assert!(r.degenerate);
        assert_eq!(r.score, Score::Value(0.0));
        let r = score_quality(&"buy now ".repeat(10), None, &o);
        assert!(r.degenerate, "{r:?}");
        assert!(r.repeat_ratio > 0.8);
        let r = score_quality("", None, &o);
        assert!(r.degenerate);
        assert_eq!(r.words, 0);
        let w: Vec<String> = ["buy"; 5].iter().map(|s| s.to_string()).collect();
        assert!((repeat_ratio(&w, 3) - 2.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn leaks_flagged_and_penalised() {
        let o = opts();
        let body = words(15);
        let r = score_quality(
            &format!("{body}. Keep it professional and concise."),
            None,
            &o,
        );
        assert!(r.leak);
        assert_eq!(
            r.leaks,
            vec!["Keep it professional and concise.".to_string()]
        );
        assert_eq!(r.score, Score::Value(0.75));
        let r = score_quality(&format!("Here is the insight:\n{body}"), None, &o);
        assert!(r.leak);
        let r = score_quality(&format!("**Aqui está** o resumo:\n{body}"), None, &o);
        assert!(r.leak, "{r:?}");
        let r = score_quality(&body, None, &o);
        assert!(!r.leak);
    }

    #[test]
    fn instruction_echo() {
        let o = opts();
        let prompt = "Write a short insight about the segment. Mention the order change and end with a recommendation.";
        let c = format!(
            "{}. Mention the order change and end with a recommendation.",
            words(12)
        );
        let r = score_quality(&c, Some(prompt), &o);
        assert!(r.leak, "{r:?}");
        assert_eq!(r.leaks.len(), 1);
        let r = score_quality(&c, None, &o);
        assert!(!r.leak);
    }

    #[test]
    fn validation() {
        assert!(QualityOptions::default().validate().is_ok());
        let mut o = opts();
        o.min_words = 30;
        assert!(o.validate().is_err());
        let mut o = opts();
        o.leak_penalty = 2.0;
        assert!(o.validate().is_err());
    }
}
