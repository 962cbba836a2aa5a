//! Parsing a judge's ranking of a group of G completions (labelled `A`, `B`, … — `A`–`H` for
//! G = 8) into strict ranks 1..G and rewards in [0, 1]. No model or HTTP here.
//!
//! # Accepted answers
//! Labels are single **uppercase** letters, optionally written `[C]`, `(C)`, `**C**` or
//! `Completion C` / `Response C` / `Resposta C` / `Candidate C` / `Option C`. `<think>…</think>`
//! blocks are removed first. Three formats are tried in this order; the first that yields at
//! least one label is used:
//! 1. **Sequence line** — a line made only of labels and separators (`>`, `,`, `;`, `/`, `|`,
//!    `-`, whitespace), with at least two labels (or one, when it is the whole answer: an
//!    iterative-selection pick such as `C`), optionally after a caption ending in `:`
//!    (`Ranking: C > A > F`, `Final ranking: C, A, F`, `C A F`). The **last** such line counts
//!    (the final answer follows the reasoning). Position in the line = rank.
//! 2. **Numbered list** — lines `1. C`, `2) A`, `3: **F**`, `#4 - Completion B (…)`; after the
//!    label only the end of the line or punctuation (`-`, `–`, `—`, `:`, `(`, `.`, `,`, `;`) may
//!    follow, so prose such as `1. A good answer…` is not a label. The **last** list (the lines
//!    from the last item numbered `1`) counts; order of appearance = rank (the numbers
//!    themselves are not trusted).
//! 3. **Label–rank pairs** — `A: 3`, `B = 1`, `C -> 2` (one or many per line). The stated rank
//!    is used, clamped to 1..G (a judge writing `A: 9` for G = 8 gets rank 8, never a negative
//!    reward).
//!
//! # Strict rules (the seeds' fix)
//! Duplicates are dropped (the first occurrence wins), labels outside the group are ignored
//! (and counted), at most G labels are taken, completions the judge did not rank get
//! `pad_unpicked` (default G − 1, the seeds' "pad unpicked = 7" for G = 8), every rank is clamped
//! to 1..G, and rank r maps to (G − r) / (G − 1), which is always in [0, 1]. An answer with no
//! label at all is a typed failure ([`JudgeParseError::NoLabels`]): the caller records the group
//! as unscorable, never as 0.

use std::sync::OnceLock;

use regex::Regex;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Largest group a letter-labelled judge prompt supports (A–Z).
pub const MAX_GROUP: usize = 26;

/// Options of rank parsing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RankOptions {
    /// Rank of completions the judge did not rank, clamped to 1..G; `null` = G − 1 (the seeds'
    /// "pad unpicked = 7" of 8).
    #[schemars(range(min = 1))]
    pub pad_unpicked: Option<usize>,
}

/// Which accepted format the ranking was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RankFormat {
    /// `C > A > F` / `C, A, F` on one line.
    Sequence,
    /// `1. C` / `2. A` lines.
    Numbered,
    /// `A: 3` pairs.
    Pairs,
}

/// A parsed ranking of one group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Ranking {
    /// Rank of each completion (index 0 = `A`), each in 1..=G.
    pub ranks: Vec<usize>,
    /// Whether the judge ranked each completion (false = padded).
    pub picked: Vec<bool>,
    /// The format the ranking was read from.
    pub format: RankFormat,
    /// Labels dropped because they were already ranked.
    pub duplicates: usize,
    /// Labels dropped because they are outside the group (e.g. `J` for G = 8).
    pub out_of_group: usize,
    /// Stated ranks (pairs format) moved into 1..G.
    pub clamped: usize,
}

impl Ranking {
    /// Group size G.
    pub fn group_size(&self) -> usize {
        self.ranks.len()
    }

    /// Reward of each completion: (G − r) / (G − 1).
    pub fn rewards(&self) -> Vec<f64> {
        let g = self.group_size();
        self.ranks.iter().map(|&r| rank_reward(r, g)).collect()
    }
}

/// Why a judge answer gave no ranking.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(rename_all = "snake_case", tag = "reason")]
pub enum JudgeParseError {
    /// The answer holds no label of any accepted format.
    #[error("the judge answer holds no ranking label")]
    NoLabels,
    /// G outside 2..=26.
    #[error("group size {0} is not in 2..=26")]
    BadGroupSize(usize),
}

/// Reward of rank `r` (clamped to 1..=G) in a group of `g` ≥ 2: (G − r) / (G − 1) ∈ [0, 1].
/// A group of fewer than two gets 0.5 (no comparison possible).
pub fn rank_reward(r: usize, g: usize) -> f64 {
    if g < 2 {
        return 0.5;
    }
    let r = r.clamp(1, g);
    (g - r) as f64 / (g - 1) as f64
}

/// The label of completion `i` (0 → `A`).
pub fn label(i: usize) -> Option<char> {
    (i < MAX_GROUP).then(|| (b'A' + i as u8) as char)
}

/// Parses a judge's answer for a group of `g` completions (rules in the module docs).
pub fn parse_ranking(
    answer: &str,
    g: usize,
    options: &RankOptions,
) -> Result<Ranking, JudgeParseError> {
    if !(2..=MAX_GROUP).contains(&g) {
        return Err(JudgeParseError::BadGroupSize(g));
    }
    let text = super::json::strip_think(answer).0;
    if let Some(order) = last_sequence_line(&text) {
        return Ok(from_order(&order, g, RankFormat::Sequence, options));
    }
    if let Some(order) = last_numbered_list(&text) {
        return Ok(from_order(&order, g, RankFormat::Numbered, options));
    }
    let pairs = label_rank_pairs(&text);
    if !pairs.is_empty() {
        return Ok(from_pairs(&pairs, g, options));
    }
    Err(JudgeParseError::NoLabels)
}

fn pad_rank(g: usize, options: &RankOptions) -> usize {
    options.pad_unpicked.unwrap_or(g - 1).clamp(1, g)
}

fn index_of(label: char) -> usize {
    (label as u8 - b'A') as usize
}

/// Ranks from an ordered list of labels (position = rank).
fn from_order(order: &[char], g: usize, format: RankFormat, options: &RankOptions) -> Ranking {
    let pad = pad_rank(g, options);
    let mut ranks = vec![pad; g];
    let mut picked = vec![false; g];
    let (mut duplicates, mut out_of_group) = (0, 0);
    let mut next_rank = 1;
    for &l in order {
        if next_rank > g {
            break; // stop at G
        }
        let i = index_of(l);
        if i >= g {
            out_of_group += 1;
        } else if picked[i] {
            duplicates += 1;
        } else {
            picked[i] = true;
            ranks[i] = next_rank;
            next_rank += 1;
        }
    }
    Ranking {
        ranks,
        picked,
        format,
        duplicates,
        out_of_group,
        clamped: 0,
    }
}

/// Ranks from stated `(label, rank)` pairs.
fn from_pairs(pairs: &[(char, i64)], g: usize, options: &RankOptions) -> Ranking {
    let pad = pad_rank(g, options);
    let mut ranks = vec![pad; g];
    let mut picked = vec![false; g];
    let (mut duplicates, mut out_of_group, mut clamped) = (0, 0, 0);
    let mut taken = 0;
    for &(l, r) in pairs {
        if taken >= g {
            break; // stop at G
        }
        let i = index_of(l);
        if i >= g {
            out_of_group += 1;
            continue;
        }
        if picked[i] {
            duplicates += 1;
            continue;
        }
        let c = r.clamp(1, g as i64);
        if c != r {
            clamped += 1;
        }
        picked[i] = true;
        ranks[i] = c as usize;
        taken += 1;
    }
    Ranking {
        ranks,
        picked,
        format: RankFormat::Pairs,
        duplicates,
        out_of_group,
        clamped,
    }
}

const LABEL_PREFIX: &str =
    r"(?i:(?:completion|response|resposta|candidate|candidato|option|opção|opcao)\s+)?";

fn sequence_token_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        let pat = format!(r"^{LABEL_PREFIX}(?:\*\*)?[\[(]?([A-Z])[\])]?(?:\*\*)?$");
        Regex::new(&pat).unwrap_or_else(|e| panic!("built-in regex: {e}"))
    })
}

/// The labels of the last line made only of labels and separators (at least two labels).
fn last_sequence_line(text: &str) -> Option<Vec<char>> {
    let token = sequence_token_re();
    let whole_answer = text.trim().lines().count() == 1;
    let mut found = None;
    for raw in text.lines() {
        let mut line = raw.trim().trim_matches('*').trim();
        // an optional caption ending in ':' (e.g. "Final ranking:")
        if let Some(colon) = line.find(':') {
            let caption = &line[..colon];
            if caption.chars().count() <= 40 && !caption.contains(['>', ',']) {
                line = line[colon + 1..].trim();
            }
        }
        // join "Completion C" into one token before splitting on whitespace
        let tokens: Vec<&str> = line
            .split(['>', ',', ';', '/', '|'])
            .flat_map(split_labels)
            .map(|t| t.trim_matches(['*', '`', '_']))
            .filter(|t| !t.is_empty() && *t != "-" && *t != "–" && *t != "—")
            .collect();
        // one label alone counts only when it is the whole answer (an iterative-selection pick)
        if tokens.len() < 2 && !(tokens.len() == 1 && whole_answer) {
            continue;
        }
        let labels: Option<Vec<char>> = tokens
            .iter()
            .map(|t| {
                token
                    .captures(t)
                    .and_then(|c| c.get(1))
                    .and_then(|m| m.as_str().chars().next())
            })
            .collect();
        if let Some(l) = labels {
            found = Some(l);
        }
    }
    found
}

/// Splits a separator-free chunk into label tokens: whitespace separates labels, except after
/// a prefix word such as `Completion`.
fn split_labels(chunk: &str) -> Vec<&str> {
    let chunk = chunk.trim();
    let words: Vec<(usize, &str)> = chunk
        .split_whitespace()
        .map(|w| {
            let off = w.as_ptr() as usize - chunk.as_ptr() as usize;
            (off, w)
        })
        .collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let (off, w) = words[i];
        let is_prefix = matches!(
            w.to_lowercase().as_str(),
            "completion"
                | "response"
                | "resposta"
                | "candidate"
                | "candidato"
                | "option"
                | "opção"
                | "opcao"
        );
        if is_prefix && i + 1 < words.len() {
            let (off2, w2) = words[i + 1];
            out.push(&chunk[off..off2 + w2.len()]);
            i += 2;
        } else {
            out.push(w);
            i += 1;
        }
    }
    out
}

fn numbered_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        let pat = format!(
            r"^\s*(?:#|(?i:rank)\s*)?(\d{{1,3}})\s*[.):\-]\s*{LABEL_PREFIX}(?:\*\*)?[\[(]?([A-Z])[\])]?(?:\*\*)?(?:\s*$|\s*[-–—:(.,;])"
        );
        Regex::new(&pat).unwrap_or_else(|e| panic!("built-in regex: {e}"))
    })
}

/// The labels of the last numbered list (from its last item numbered 1), in order.
fn last_numbered_list(text: &str) -> Option<Vec<char>> {
    let re = numbered_re();
    let mut items: Vec<(u32, char)> = Vec::new();
    for line in text.lines() {
        if let Some(c) = re.captures(line) {
            let n = c.get(1).and_then(|m| m.as_str().parse::<u32>().ok());
            let l = c.get(2).and_then(|m| m.as_str().chars().next());
            if let (Some(n), Some(l)) = (n, l) {
                items.push((n, l));
            }
        }
    }
    if items.is_empty() {
        return None;
    }
    let start = items.iter().rposition(|(n, _)| *n == 1).unwrap_or(0);
    Some(items[start..].iter().map(|(_, l)| *l).collect())
}

fn pairs_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(
            r"(?:^|[\s,;(])[\[(]?([A-Z])[\])]?\s*(?:[:=]|->|→)\s*(?i:rank\s*)?#?(-?\d{1,6})\b",
        )
        .unwrap_or_else(|e| panic!("built-in regex: {e}"))
    })
}

fn label_rank_pairs(text: &str) -> Vec<(char, i64)> {
    pairs_re()
        .captures_iter(text)
        .filter_map(|c| {
            let l = c.get(1)?.as_str().chars().next()?;
            let r = c.get(2)?.as_str().parse::<i64>().ok()?;
            Some((l, r))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str, g: usize) -> Ranking {
        parse_ranking(s, g, &RankOptions::default()).unwrap()
    }

    #[test]
    fn reward_mapping() {
        assert_eq!(rank_reward(1, 8), 1.0);
        assert_eq!(rank_reward(8, 8), 0.0);
        assert!((rank_reward(7, 8) - 1.0 / 7.0).abs() < 1e-15);
        // ranks beyond G are clamped: the seeds' negative rewards cannot happen
        assert_eq!(rank_reward(9, 8), 0.0);
        assert_eq!(rank_reward(0, 8), 1.0);
        assert_eq!(rank_reward(1, 1), 0.5);
    }

    #[test]
    fn sequence_with_arrows() {
        let r = parse("Reasoning...\nC > A > F > B > E > D > H > G", 8);
        assert_eq!(r.format, RankFormat::Sequence);
        assert_eq!(r.ranks, vec![2, 4, 1, 6, 5, 3, 8, 7]);
        assert!(r.picked.iter().all(|&p| p));
        let rw = r.rewards();
        assert_eq!(rw[2], 1.0);
        assert_eq!(rw[6], 0.0);
    }

    #[test]
    fn sequence_with_commas_and_caption_pads_unpicked() {
        let r = parse("Final ranking: C, A, F", 8);
        assert_eq!(r.ranks, vec![2, 7, 1, 7, 7, 3, 7, 7]);
        assert_eq!(r.picked.iter().filter(|&&p| p).count(), 3);
        let r = parse("**Ranking:** [C] > [A]", 4);
        assert_eq!(r.ranks, vec![2, 3, 1, 3]);
        let r = parse("Completion B > Completion A", 3);
        assert_eq!(r.ranks, vec![2, 1, 2]);
    }

    #[test]
    fn last_sequence_line_wins() {
        let r = parse("First guess: A > B\nOn reflection:\nB > A", 2);
        assert_eq!(r.ranks, vec![2, 1]);
    }

    #[test]
    fn numbered_list() {
        let r = parse(
            "1. C\n2. A\n3. F - weak because...\n4) **B**\n5: Completion E (ok)",
            8,
        );
        assert_eq!(r.format, RankFormat::Numbered);
        assert_eq!(r.ranks, vec![2, 4, 1, 7, 5, 3, 7, 7]);
        // the last list counts
        let r = parse("Draft:\n1. A\n2. B\nFinal:\n1. B\n2. A", 2);
        assert_eq!(r.ranks, vec![2, 1]);
        // prose after a number is not a label
        assert_eq!(
            parse_ranking(
                "1. A good answer is short.\n2. I like it.",
                8,
                &RankOptions::default()
            ),
            Err(JudgeParseError::NoLabels)
        );
    }

    #[test]
    fn duplicates_dropped_first_wins_and_out_of_group_ignored() {
        let r = parse("C > A > C > J > B", 4);
        assert_eq!(r.ranks, vec![2, 3, 1, 3]);
        assert_eq!(r.duplicates, 1);
        assert_eq!(r.out_of_group, 1);
        assert_eq!(r.picked, vec![true, true, true, false]);
    }

    #[test]
    fn stop_at_g() {
        let r = parse("A > B > C > D", 2);
        assert_eq!(r.ranks, vec![1, 2]);
    }

    #[test]
    fn pairs_clamped() {
        let r = parse("A: 9\nB: 1\nC = 2\nD -> 0\nB: 5\nZ: 3", 8);
        assert_eq!(r.format, RankFormat::Pairs);
        assert_eq!(r.ranks, vec![8, 1, 2, 1, 7, 7, 7, 7]);
        assert_eq!(r.clamped, 2);
        assert_eq!(r.duplicates, 1);
        assert_eq!(r.out_of_group, 1);
        assert!(r.rewards().iter().all(|&x| (0.0..=1.0).contains(&x)));
        let r = parse("A: -3, B: 2", 2);
        assert_eq!(r.ranks, vec![1, 2]);
    }

    #[test]
    fn no_labels_is_typed_failure() {
        for s in [
            "",
            "I cannot rank these.",
            "1. the first one\n2. the second",
            "a > b",
        ] {
            assert_eq!(
                parse_ranking(s, 8, &RankOptions::default()),
                Err(JudgeParseError::NoLabels),
                "{s:?}"
            );
        }
        assert_eq!(
            parse_ranking("A > B", 1, &RankOptions::default()),
            Err(JudgeParseError::BadGroupSize(1))
        );
        assert_eq!(
            parse_ranking("A > B", 27, &RankOptions::default()),
            Err(JudgeParseError::BadGroupSize(27))
        );
    }

    #[test]
    fn think_block_ignored_and_pad_option() {
        let r = parse("<think>A > B > C</think>\nC > B", 3);
        assert_eq!(r.ranks, vec![2, 2, 1]);
        let o = RankOptions {
            pad_unpicked: Some(3),
        };
        let r = parse_ranking("C > B", 3, &o).unwrap();
        assert_eq!(r.ranks, vec![3, 2, 1]);
        let o = RankOptions {
            pad_unpicked: Some(99),
        };
        assert_eq!(
            parse_ranking("Best: C", 3, &o).unwrap().ranks,
            vec![3, 3, 1]
        );
        assert_eq!(
            parse_ranking("Reasoning.\nC", 3, &o).map(|r| r.ranks),
            Err(JudgeParseError::NoLabels)
        );
        assert_eq!(parse_ranking("1. C", 3, &o).unwrap().ranks, vec![3, 3, 1]);
    }

    #[test]
    fn labels() {
        assert_eq!(label(0), Some('A'));
        assert_eq!(label(7), Some('H'));
        assert_eq!(label(26), None);
    }
}
