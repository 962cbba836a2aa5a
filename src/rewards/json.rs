//! The `json` reward: robust extraction of a JSON object from model output, field checks
//! against a schema-like spec, and agreement with a reference object.
//!
//! # Extraction pipeline ([`extract_json`])
//! 1. **Empty** (only whitespace) → [`ExtractFailure::Empty`].
//! 2. **Think blocks**: every `<think>…</think>` is removed; an unclosed `<think>` removes the
//!    rest of the text (the answer never came); a `</think>` with no opening tag (chat templates
//!    that open the block in the prompt) removes everything up to it. → [`Repair::ThinkBlock`].
//! 3. **Code fences**: the first ```` ``` ```` fence (optional language tag such as `json`)
//!    whose content holds a `{` is used; an unclosed fence runs to the end. → [`Repair::Fence`].
//! 4. **First balanced object**: for each `{` in order, a scanner that knows JSON strings and
//!    escapes (so `{`, `}` and `\"` inside strings do not count) looks for the matching `}`
//!    (a mismatched `]` ends the candidate). A candidate that closes and parses (after the
//!    repairs below) wins; one that closes but does not parse (e.g. `{chave: valor}` in prose) is
//!    skipped with the search going on after it. A candidate that never closes is a truncated
//!    object when it looks like JSON (`{` then optional whitespace then `"` or `}` or the end);
//!    otherwise it is prose and the search goes on at the next `{`. Text around the object →
//!    [`Repair::Prose`]. At most [`ExtractOptions::max_candidates`] candidates are tried, which
//!    bounds the work on adversarial input to O(candidates × length).
//! 5. **Repairs** (only when the candidate is not already valid JSON, so valid JSON is never
//!    rewritten):
//!    - **PT-BR decimal commas** ([`normalize_pt_decimals`], [`Repair::PtDecimal`]), outside
//!      strings only. The rule: a comma is a decimal comma exactly when it sits in an **object
//!      value position** (the value right after `key:`), between two digit runs with no
//!      whitespace (`-?\d+,\d+`), and the second digit run is followed (after optional
//!      whitespace) by `,`, `}` or the end of the text. So `"x": 4,5}` and `"x": -0,5, "y": 1`
//!      become `4.5` / `-0.5`, while `[1,2]` (array: never converted, even `[4,5]`),
//!      `{"a":1,"b":2}` (a key follows the comma, not digits) and `"x": "4,5"` (a string) stay as
//!      they are. Known limit: PT decimals inside arrays (`[4,5, 3,0]`) are not converted.
//!    - **Trailing commas** before `}` or `]` outside strings ([`Repair::TrailingComma`]).
//! 6. **Truncation** (when enabled): an object that never closes is cut at its last top-level
//!    member separator (a `,` directly inside the outer object, outside strings) and closed, so
//!    only members whose value was followed by a comma are kept: a value cut short (`4` of
//!    `45`, `"posit` of `"positivo"`) is dropped, never completed or invented.
//!    → [`Repair::Truncated`]. If no complete member survives → [`ExtractFailure::Unbalanced`].
//!
//! Only a JSON **object** counts; a top-level array is skipped and its first object is taken.
//!
//! [`parse_strict`] is the baseline the tolerant parser is compared with: `serde_json` on the
//! fence-stripped text (the seeds' `json.loads` after removing a leading ```` ```json ```` line
//! and a trailing ```` ``` ````), object required.

use std::borrow::Cow;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::text::match_key;
use super::Score;
use crate::{Error, Result};

/// A fix the tolerant parser needed; recorded so summaries can say how often each was needed.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Repair {
    /// `<think>…</think>` reasoning removed before the answer.
    ThinkBlock,
    /// The object was inside a Markdown code fence.
    Fence,
    /// Text before or after the object was skipped.
    Prose,
    /// PT-BR decimal commas (`4,5`) converted to points outside strings.
    PtDecimal,
    /// Commas before `}` or `]` removed.
    TrailingComma,
    /// The object never closed; its complete members were kept.
    Truncated,
}

/// A JSON object extracted from model output, with the repairs it needed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Extracted {
    /// The parsed object.
    pub value: Map<String, Value>,
    /// Repairs applied, in pipeline order, each at most once.
    pub repairs: Vec<Repair>,
}

/// Why no object could be extracted.
#[derive(Debug, Clone, PartialEq, Serialize, thiserror::Error)]
#[serde(rename_all = "snake_case", tag = "reason")]
pub enum ExtractFailure {
    /// The output is empty or only whitespace (after removing think blocks).
    #[error("empty output")]
    Empty,
    /// No `{` that starts a JSON object.
    #[error("no JSON object in the output")]
    NoObject,
    /// An object starts at byte `start` (of the text searched) and never closes, and nothing
    /// complete could be recovered from it.
    #[error("unbalanced braces: the object at byte {start} never closes")]
    Unbalanced {
        /// Byte offset of the unclosed `{` in the searched text.
        start: usize,
    },
    /// A balanced object was found but is not valid JSON even after the repairs.
    #[error("invalid JSON after repairs: {message}")]
    Invalid {
        /// serde_json's message for the first candidate.
        message: String,
    },
}

/// Options of the tolerant extractor. Every repair can be switched off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ExtractOptions {
    /// Convert PT-BR decimal commas in object values (`"x": 4,5` → 4.5). Default true.
    pub pt_decimals: bool,
    /// Remove commas before `}` / `]`. Default true.
    pub trailing_commas: bool,
    /// Keep the complete members of an object cut off by the token limit (reported as
    /// `truncated`). Default true.
    pub repair_truncated: bool,
    /// Remove `<think>…</think>` blocks first. Default true.
    pub strip_think: bool,
    /// Most `{` positions tried before giving up (bounds the work on adversarial text).
    /// Default 32.
    #[schemars(range(min = 1))]
    pub max_candidates: usize,
}

impl Default for ExtractOptions {
    fn default() -> Self {
        ExtractOptions {
            pt_decimals: true,
            trailing_commas: true,
            repair_truncated: true,
            strip_think: true,
            max_candidates: 32,
        }
    }
}

/// Which parser a `json` reward uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum ParserMode {
    /// [`parse_strict`]: standard JSON after stripping fences (the V4 baseline).
    Strict,
    /// [`extract_json`]: the full tolerant pipeline (V4.1).
    #[default]
    Tolerant,
}

/// Extracts the first JSON object from model output with the tolerant pipeline (module docs).
pub fn extract_json(
    text: &str,
    options: &ExtractOptions,
) -> std::result::Result<Extracted, ExtractFailure> {
    let mut repairs = Vec::new();
    let body: Cow<str> = if options.strip_think {
        let (b, changed) = strip_think(text);
        if changed {
            repairs.push(Repair::ThinkBlock);
        }
        b
    } else {
        Cow::Borrowed(text)
    };
    if body.trim().is_empty() {
        return Err(ExtractFailure::Empty);
    }
    let body: &str = match fenced_content(&body) {
        Some(inner) => {
            repairs.push(Repair::Fence);
            inner
        }
        None => &body,
    };
    find_object(body, options, repairs)
}

/// Strict parsing: `serde_json` on the text with a leading fence line (```` ```json ````) and a
/// trailing ```` ``` ```` removed; the result must be an object. The error is serde_json's
/// message (or "not an object").
pub fn parse_strict(text: &str) -> std::result::Result<Map<String, Value>, String> {
    let mut s = text.trim();
    if let Some(rest) = s.strip_prefix("```") {
        // the opening fence line: ``` plus an optional language tag, then the newline
        let tag_end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '+'))
            .unwrap_or(rest.len());
        s = rest[tag_end..].trim_start();
    }
    if let Some(rest) = s.strip_suffix("```") {
        s = rest.trim_end();
    }
    match serde_json::from_str::<Value>(s) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err("not a JSON object".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// How the strict and the tolerant parser compare on a batch of completions (for
/// `runner score --compare-parser strict`: how many outputs parse only with the tolerant one).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct ParserComparison {
    /// Completions compared.
    pub total: usize,
    /// Parsed by [`parse_strict`].
    pub strict_ok: usize,
    /// Parsed by [`extract_json`].
    pub tolerant_ok: usize,
    /// Parsed by the tolerant parser only.
    pub tolerant_only: usize,
    /// Parsed by the strict parser only (expected 0; kept so a regression shows).
    pub strict_only: usize,
    /// How often each repair was needed, over the tolerant parses.
    pub repairs: std::collections::BTreeMap<Repair, usize>,
    /// Tolerant failures by reason (`empty`, `no_object`, `unbalanced`, `invalid`).
    pub failures: std::collections::BTreeMap<String, usize>,
}

impl ExtractFailure {
    /// The failure's short name (`empty`, `no_object`, `unbalanced`, `invalid`).
    pub fn kind(&self) -> &'static str {
        match self {
            ExtractFailure::Empty => "empty",
            ExtractFailure::NoObject => "no_object",
            ExtractFailure::Unbalanced { .. } => "unbalanced",
            ExtractFailure::Invalid { .. } => "invalid",
        }
    }
}

/// Runs both parsers on every completion and counts the differences.
pub fn compare_parsers<'a>(
    completions: impl IntoIterator<Item = &'a str>,
    options: &ExtractOptions,
) -> ParserComparison {
    let mut c = ParserComparison::default();
    for text in completions {
        c.total += 1;
        let strict = parse_strict(text).is_ok();
        let tolerant = extract_json(text, options);
        match &tolerant {
            Ok(e) => {
                for r in &e.repairs {
                    *c.repairs.entry(*r).or_default() += 1;
                }
            }
            Err(f) => *c.failures.entry(f.kind().to_string()).or_default() += 1,
        }
        let tolerant = tolerant.is_ok();
        c.strict_ok += usize::from(strict);
        c.tolerant_ok += usize::from(tolerant);
        c.tolerant_only += usize::from(tolerant && !strict);
        c.strict_only += usize::from(strict && !tolerant);
    }
    c
}

/// Removes think blocks; returns the text and whether anything was removed.
pub(crate) fn strip_think(text: &str) -> (Cow<'_, str>, bool) {
    const OPEN: &str = "<think>";
    const CLOSE: &str = "</think>";
    let first_open = text.find(OPEN);
    let first_close = text.find(CLOSE);
    if first_open.is_none() && first_close.is_none() {
        return (Cow::Borrowed(text), false);
    }
    let mut rest = text;
    // A close tag before any open tag: the block was opened in the prompt.
    if let Some(c) = first_close {
        if first_open.is_none_or(|o| c < o) {
            rest = &text[c + CLOSE.len()..];
        }
    }
    let mut out = String::with_capacity(rest.len());
    loop {
        match rest.find(OPEN) {
            None => {
                out.push_str(rest);
                break;
            }
            Some(o) => {
                out.push_str(&rest[..o]);
                let after = &rest[o + OPEN.len()..];
                match after.find(CLOSE) {
                    Some(c) => rest = &after[c + CLOSE.len()..],
                    None => break, // unclosed: the rest is thinking
                }
            }
        }
    }
    (Cow::Owned(out), true)
}

/// The content of the first code fence that holds a `{`, if any.
fn fenced_content(text: &str) -> Option<&str> {
    let mut from = 0;
    while let Some(rel) = text[from..].find("```") {
        let open = from + rel + 3;
        let rest = &text[open..];
        let tag_len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '+'))
            .unwrap_or(rest.len());
        let content_start = open + tag_len;
        let (content, next) = match text[content_start..].find("```") {
            Some(close) => (
                &text[content_start..content_start + close],
                content_start + close + 3,
            ),
            None => (&text[content_start..], text.len()),
        };
        if content.contains('{') {
            return Some(content);
        }
        if next >= text.len() {
            break;
        }
        from = next;
    }
    None
}

/// How a scan from a `{` ended.
enum Scan {
    /// Balanced; the object ends at this byte (exclusive).
    Closed(usize),
    /// A closer that does not match the open bracket, at this byte.
    Mismatch(usize),
    /// The text ended inside the object.
    Open,
}

/// Scans from the `{` at `start`, respecting strings and escapes.
fn scan_object(s: &[u8], start: usize) -> Scan {
    let mut stack: Vec<u8> = Vec::new();
    let mut in_string = false;
    let mut escape = false;
    for (i, &b) in s.iter().enumerate().skip(start) {
        if in_string {
            if escape {
                escape = false;
            } else if b == b'\\' {
                escape = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' => stack.push(b'}'),
            b'[' => stack.push(b']'),
            b'}' | b']' => {
                if stack.pop() != Some(b) {
                    return Scan::Mismatch(i);
                }
                if stack.is_empty() {
                    return Scan::Closed(i + 1);
                }
            }
            _ => {}
        }
    }
    Scan::Open
}

/// `{` followed by optional whitespace and then `"`, `}` or the end of the text.
fn looks_like_json_object(s: &str, start: usize) -> bool {
    match s[start + 1..].trim_start().chars().next() {
        None => true,
        Some(c) => c == '"' || c == '}',
    }
}

fn push_once(repairs: &mut Vec<Repair>, r: Repair) {
    if !repairs.contains(&r) {
        repairs.push(r);
    }
}

/// Step 4 of the pipeline: candidate search.
fn find_object(
    body: &str,
    options: &ExtractOptions,
    repairs: Vec<Repair>,
) -> std::result::Result<Extracted, ExtractFailure> {
    let bytes = body.as_bytes();
    let mut first_failure: Option<ExtractFailure> = None;
    let mut pos = 0;
    let mut tried = 0;
    while let Some(rel) = body[pos..].find('{') {
        let start = pos + rel;
        tried += 1;
        if tried > options.max_candidates.max(1) {
            break;
        }
        match scan_object(bytes, start) {
            Scan::Closed(end) => match repair_and_parse(&body[start..end], options) {
                Ok((value, fixes)) => {
                    let mut repairs = repairs;
                    if !body[..start].trim().is_empty() || !body[end..].trim().is_empty() {
                        push_once(&mut repairs, Repair::Prose);
                    }
                    for f in fixes {
                        push_once(&mut repairs, f);
                    }
                    return Ok(Extracted { value, repairs });
                }
                Err(message) => {
                    first_failure.get_or_insert(ExtractFailure::Invalid { message });
                    pos = end;
                }
            },
            Scan::Mismatch(at) => {
                first_failure.get_or_insert(ExtractFailure::Invalid {
                    message: format!("mismatched bracket at byte {at}"),
                });
                pos = start + 1;
            }
            Scan::Open => {
                if !looks_like_json_object(body, start) {
                    pos = start + 1;
                    continue;
                }
                if !options.repair_truncated {
                    return Err(ExtractFailure::Unbalanced { start });
                }
                return match repair_truncated(&body[start..], options) {
                    Some((value, fixes)) => {
                        let mut repairs = repairs;
                        if !body[..start].trim().is_empty() {
                            push_once(&mut repairs, Repair::Prose);
                        }
                        for f in fixes {
                            push_once(&mut repairs, f);
                        }
                        Ok(Extracted { value, repairs })
                    }
                    None => Err(ExtractFailure::Unbalanced { start }),
                };
            }
        }
        if pos >= body.len() {
            break;
        }
    }
    Err(first_failure.unwrap_or(ExtractFailure::NoObject))
}

/// Parses a balanced candidate, applying the repairs only when plain parsing fails.
fn repair_and_parse(
    candidate: &str,
    options: &ExtractOptions,
) -> std::result::Result<(Map<String, Value>, Vec<Repair>), String> {
    let first_err = match serde_json::from_str::<Value>(candidate) {
        Ok(Value::Object(m)) => return Ok((m, Vec::new())),
        Ok(_) => return Err("not a JSON object".into()),
        Err(e) => e.to_string(),
    };
    let (fixed, fixes) = apply_repairs(candidate, options);
    if fixes.is_empty() {
        return Err(first_err);
    }
    match serde_json::from_str::<Value>(&fixed) {
        Ok(Value::Object(m)) => Ok((m, fixes)),
        Ok(_) => Err("not a JSON object".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// PT-BR decimals then trailing commas (the order matters: `4,5,}` → `4.5,}` → `4.5}`).
fn apply_repairs(text: &str, options: &ExtractOptions) -> (String, Vec<Repair>) {
    let mut fixes = Vec::new();
    let mut s = text.to_string();
    if options.pt_decimals {
        let (t, changed) = normalize_pt_decimals(&s);
        if changed {
            fixes.push(Repair::PtDecimal);
            s = t;
        }
    }
    if options.trailing_commas {
        let (t, changed) = remove_trailing_commas(&s);
        if changed {
            fixes.push(Repair::TrailingComma);
            s = t;
        }
    }
    (s, fixes)
}

/// Converts PT-BR decimal commas to points by the rule in the module docs; returns the text and
/// whether anything changed. Works on any text; outside an object value position nothing is
/// touched.
pub fn normalize_pt_decimals(s: &str) -> (String, bool) {
    let b = s.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(b.len());
    let mut stack: Vec<u8> = Vec::new();
    let mut in_string = false;
    let mut escape = false;
    let mut value_pos = false;
    let mut changed = false;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if in_string {
            out.push(c);
            if escape {
                escape = false;
            } else if c == b'\\' {
                escape = true;
            } else if c == b'"' {
                in_string = false;
            }
            i += 1;
            continue;
        }
        if value_pos && (c == b'-' || c.is_ascii_digit()) {
            if let Some((comma, end)) = match_pt_decimal(b, i) {
                out.extend_from_slice(&b[i..comma]);
                out.push(b'.');
                out.extend_from_slice(&b[comma + 1..end]);
                changed = true;
                value_pos = false;
                i = end;
                continue;
            }
        }
        match c {
            b'"' => {
                in_string = true;
                value_pos = false;
            }
            b'{' | b'[' => {
                stack.push(c);
                value_pos = false;
            }
            b'}' | b']' => {
                stack.pop();
                value_pos = false;
            }
            b':' => value_pos = stack.last() == Some(&b'{'),
            c if c.is_ascii_whitespace() => {}
            _ => value_pos = false,
        }
        out.push(c);
        i += 1;
    }
    // Only ASCII bytes at ASCII positions were changed, so the text is still UTF-8.
    match String::from_utf8(out) {
        Ok(t) => (t, changed),
        Err(_) => (s.to_string(), false),
    }
}

/// Matches `-?\d+,\d+` at `i` followed by optional whitespace and `,` / `}` / end; returns the
/// comma's index and the end of the second digit run.
fn match_pt_decimal(b: &[u8], i: usize) -> Option<(usize, usize)> {
    let mut j = i;
    if b.get(j) == Some(&b'-') {
        j += 1;
    }
    let d1 = j;
    while j < b.len() && b[j].is_ascii_digit() {
        j += 1;
    }
    if j == d1 || b.get(j) != Some(&b',') {
        return None;
    }
    let comma = j;
    j += 1;
    let d2 = j;
    while j < b.len() && b[j].is_ascii_digit() {
        j += 1;
    }
    if j == d2 {
        return None;
    }
    let end = j;
    while j < b.len() && b[j].is_ascii_whitespace() {
        j += 1;
    }
    match b.get(j) {
        None | Some(b',') | Some(b'}') => Some((comma, end)),
        _ => None,
    }
}

/// Removes commas followed (after optional whitespace) by `}` or `]`, outside strings.
pub fn remove_trailing_commas(s: &str) -> (String, bool) {
    let b = s.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(b.len());
    let mut in_string = false;
    let mut escape = false;
    let mut changed = false;
    for (i, &c) in b.iter().enumerate() {
        if in_string {
            if escape {
                escape = false;
            } else if c == b'\\' {
                escape = true;
            } else if c == b'"' {
                in_string = false;
            }
            out.push(c);
            continue;
        }
        if c == b'"' {
            in_string = true;
        } else if c == b',' {
            let next = b[i + 1..].iter().find(|x| !x.is_ascii_whitespace());
            if matches!(next, Some(b'}') | Some(b']')) {
                changed = true;
                continue;
            }
        }
        out.push(c);
    }
    match String::from_utf8(out) {
        Ok(t) => (t, changed),
        Err(_) => (s.to_string(), false),
    }
}

/// Cuts an unclosed object at its last top-level member separator and closes it.
fn repair_truncated(
    candidate: &str,
    options: &ExtractOptions,
) -> Option<(Map<String, Value>, Vec<Repair>)> {
    let mut fixes = Vec::new();
    let mut s = candidate.to_string();
    if options.pt_decimals {
        let (t, changed) = normalize_pt_decimals(&s);
        if changed {
            s = t;
            fixes.push(Repair::PtDecimal);
        }
    }
    let cuts = top_level_commas(s.as_bytes());
    // Try the latest cut first; a few earlier ones cover a broken last member.
    for &cut in cuts.iter().rev().take(8) {
        let mut closed = s[..cut].to_string();
        closed.push('}');
        let mut these = fixes.clone();
        if options.trailing_commas {
            let (t, changed) = remove_trailing_commas(&closed);
            if changed {
                closed = t;
                these.push(Repair::TrailingComma);
            }
        }
        if let Ok(Value::Object(m)) = serde_json::from_str::<Value>(&closed) {
            if m.is_empty() {
                return None;
            }
            these.push(Repair::Truncated);
            return Some((m, these));
        }
    }
    None
}

/// Byte offsets of the commas directly inside the outer object (depth 1), outside strings.
fn top_level_commas(b: &[u8]) -> Vec<usize> {
    let mut cuts = Vec::new();
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escape = false;
    for (i, &c) in b.iter().enumerate() {
        if in_string {
            if escape {
                escape = false;
            } else if c == b'\\' {
                escape = true;
            } else if c == b'"' {
                in_string = false;
            }
            continue;
        }
        match c {
            b'"' => in_string = true,
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth = depth.saturating_sub(1),
            b',' if depth == 1 => cuts.push(i),
            _ => {}
        }
    }
    cuts
}

// ---------------------------------------------------------------------------------------------
// Field checks and scoring
// ---------------------------------------------------------------------------------------------

/// The type a field must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum FieldKind {
    /// A JSON string.
    #[default]
    String,
    /// A JSON number.
    Number,
    /// A JSON number with no fractional part (`3` or `3.0`).
    Integer,
    /// `true` or `false`.
    Bool,
    /// A string from `values` (compared with the `compare` string options).
    Enum,
    /// A JSON object.
    Object,
    /// Any non-null value (a presence check: the spec's `required_fields`).
    Any,
}

/// One expected field of the object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    /// Field name (top-level key).
    pub name: String,
    /// Expected type. Default `string`.
    #[serde(default)]
    pub kind: FieldKind,
    /// Allowed values of an `enum` field.
    #[serde(default)]
    pub values: Vec<String>,
    /// A required field earns no credit when missing; an optional one only counts when present.
    /// Default true.
    #[serde(default = "yes")]
    pub required: bool,
    /// Smallest allowed value of a `number` / `integer` field; `null` = none.
    #[serde(default)]
    pub min: Option<f64>,
    /// Largest allowed value of a `number` / `integer` field; `null` = none.
    #[serde(default)]
    pub max: Option<f64>,
    /// Weight of this field in the schema and reference scores. Default 1.
    #[serde(default = "one")]
    #[schemars(range(min = 0.0))]
    pub weight: f64,
}

fn yes() -> bool {
    true
}

fn one() -> f64 {
    1.0
}

impl FieldSpec {
    /// A required field of the given kind with weight 1 and no range.
    pub fn new(name: impl Into<String>, kind: FieldKind) -> Self {
        FieldSpec {
            name: name.into(),
            kind,
            values: Vec::new(),
            required: true,
            min: None,
            max: None,
            weight: 1.0,
        }
    }

    /// Checks the spec itself (enum without values, inverted range, bad weight).
    pub fn validate(&self) -> Result<()> {
        if self.kind == FieldKind::Enum && self.values.is_empty() {
            return Err(Error::Spec(format!(
                "field `{}`: kind enum needs `values`",
                self.name
            )));
        }
        if let (Some(lo), Some(hi)) = (self.min, self.max) {
            if lo > hi {
                return Err(Error::Spec(format!(
                    "field `{}`: min {lo} > max {hi}",
                    self.name
                )));
            }
        }
        if !(self.weight.is_finite() && self.weight >= 0.0) {
            return Err(Error::Spec(format!(
                "field `{}`: weight must be finite and >= 0",
                self.name
            )));
        }
        Ok(())
    }
}

/// How values are compared (enum values and the reference).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct CompareOptions {
    /// Largest absolute difference at which two numbers are equal. Default 1e-9.
    #[schemars(range(min = 0.0))]
    pub number_tolerance: f64,
    /// Strings compare case-insensitively. Default true.
    pub case_insensitive: bool,
    /// Strings compare without accents (`não` = `nao`). Default true.
    pub accent_insensitive: bool,
    /// Strings also match when one contains the other (after normalising), e.g. a product's
    /// short name against its catalogue name. Default false.
    pub substring: bool,
    /// `partial`: the reference score is the weighted fraction of matching fields; `exact`: 1
    /// when all match, else 0. Default partial.
    pub credit: Credit,
}

impl Default for CompareOptions {
    fn default() -> Self {
        CompareOptions {
            number_tolerance: 1e-9,
            case_insensitive: true,
            accent_insensitive: true,
            substring: false,
            credit: Credit::Partial,
        }
    }
}

/// Reference credit mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum Credit {
    /// Weighted fraction of matching fields.
    #[default]
    Partial,
    /// All or nothing.
    Exact,
}

/// Options of a `json` reward.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct JsonRewardOptions {
    /// Parser: `tolerant` (default) or `strict`.
    pub parser: ParserMode,
    /// Options of the tolerant parser.
    pub extract: ExtractOptions,
    /// Expected fields; empty = any object gets the full schema score.
    pub fields: Vec<FieldSpec>,
    /// Credit for parsing an object at all, in [0, 1]. Default 0.2.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub parse_score: f64,
    /// Share of the reward for agreement with the reference, in [0, 1]; the rest after
    /// `parse_score` goes to the field checks. Rows without a reference give this share to the
    /// field checks. Default 0.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub reference_weight: f64,
    /// Fields compared with the reference; empty = the `fields` names (or, with no `fields`,
    /// every key of the reference).
    pub reference_fields: Vec<String>,
    /// Comparison rules for enum values and the reference.
    pub compare: CompareOptions,
}

impl Default for JsonRewardOptions {
    fn default() -> Self {
        JsonRewardOptions {
            parser: ParserMode::Tolerant,
            extract: ExtractOptions::default(),
            fields: Vec::new(),
            parse_score: 0.2,
            reference_weight: 0.0,
            reference_fields: Vec::new(),
            compare: CompareOptions::default(),
        }
    }
}

impl JsonRewardOptions {
    /// Checks the options (weights in range, fields valid).
    pub fn validate(&self) -> Result<()> {
        for f in &self.fields {
            f.validate()?;
        }
        let ok = |x: f64| x.is_finite() && (0.0..=1.0).contains(&x);
        if !ok(self.parse_score) || !ok(self.reference_weight) {
            return Err(Error::Spec(
                "json reward: parse_score and reference_weight must be in [0, 1]".into(),
            ));
        }
        if self.parse_score + self.reference_weight > 1.0 + 1e-12 {
            return Err(Error::Spec(
                "json reward: parse_score + reference_weight must be at most 1".into(),
            ));
        }
        Ok(())
    }
}

/// The verdict on one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FieldStatus {
    /// Present with the right type, value and range.
    Ok,
    /// Absent (or `null`).
    Missing,
    /// Present with another JSON type.
    WrongType,
    /// An enum value outside the allowed list.
    NotAllowed,
    /// A number outside `[min, max]`.
    OutOfRange,
}

/// Checks one value against its field spec.
pub fn check_field(spec: &FieldSpec, value: Option<&Value>, cmp: &CompareOptions) -> FieldStatus {
    let v = match value {
        None | Some(Value::Null) => return FieldStatus::Missing,
        Some(v) => v,
    };
    let in_range = |x: f64| {
        if spec.min.is_some_and(|lo| x < lo) || spec.max.is_some_and(|hi| x > hi) {
            FieldStatus::OutOfRange
        } else {
            FieldStatus::Ok
        }
    };
    match spec.kind {
        FieldKind::String => match v {
            Value::String(_) => FieldStatus::Ok,
            _ => FieldStatus::WrongType,
        },
        FieldKind::Number => match v.as_f64() {
            Some(x) => in_range(x),
            None => FieldStatus::WrongType,
        },
        FieldKind::Integer => match v.as_f64() {
            Some(x) if x.fract() == 0.0 => in_range(x),
            _ => FieldStatus::WrongType,
        },
        FieldKind::Bool => match v {
            Value::Bool(_) => FieldStatus::Ok,
            _ => FieldStatus::WrongType,
        },
        FieldKind::Enum => match v {
            Value::String(s) => {
                if spec.values.iter().any(|a| strings_equal(s, a, cmp, false)) {
                    FieldStatus::Ok
                } else {
                    FieldStatus::NotAllowed
                }
            }
            _ => FieldStatus::WrongType,
        },
        FieldKind::Object => match v {
            Value::Object(_) => FieldStatus::Ok,
            _ => FieldStatus::WrongType,
        },
        FieldKind::Any => FieldStatus::Ok,
    }
}

fn strings_equal(a: &str, b: &str, cmp: &CompareOptions, allow_substring: bool) -> bool {
    let ka = match_key(a, cmp.case_insensitive, cmp.accent_insensitive);
    let kb = match_key(b, cmp.case_insensitive, cmp.accent_insensitive);
    ka == kb
        || (allow_substring
            && !ka.is_empty()
            && !kb.is_empty()
            && (ka.contains(&kb) || kb.contains(&ka)))
}

/// Whether a parsed value agrees with the reference value: numbers within the tolerance,
/// strings by the string options, arrays element by element, objects key by key (same key set).
pub fn values_match(got: &Value, want: &Value, cmp: &CompareOptions) -> bool {
    match (got, want) {
        (Value::Number(_), Value::Number(_)) => match (got.as_f64(), want.as_f64()) {
            (Some(a), Some(b)) => (a - b).abs() <= cmp.number_tolerance,
            _ => false,
        },
        (Value::String(a), Value::String(b)) => strings_equal(a, b, cmp, cmp.substring),
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| values_match(x, y, cmp))
        }
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len()
                && b.iter()
                    .all(|(k, y)| a.get(k).is_some_and(|x| values_match(x, y, cmp)))
        }
        _ => got == want,
    }
}

/// The verdict on one field, for the scored record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FieldResult {
    /// Field name.
    pub name: String,
    /// Schema verdict (`null` for a reference-only field with no spec).
    pub status: Option<FieldStatus>,
    /// Agreement with the reference (`null` when not compared).
    pub matches_reference: Option<bool>,
}

/// Everything a `json` reward learned about one completion.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JsonScore {
    /// The reward.
    pub score: Score,
    /// The parsed object (`null` when parsing failed).
    pub parsed: Option<Map<String, Value>>,
    /// Repairs the tolerant parser needed.
    pub repairs: Vec<Repair>,
    /// Why parsing failed (`null` when it succeeded).
    pub failure: Option<String>,
    /// Weighted fraction of fields passing their checks (`null` when not parsed).
    pub schema: Option<f64>,
    /// Weighted agreement with the reference (`null` when not parsed or no reference).
    pub reference: Option<f64>,
    /// Per-field verdicts.
    pub fields: Vec<FieldResult>,
}

/// The reference as an object: an object as is, or a string holding a JSON object (the data's
/// `reference` field is `json.dumps(expected)`). `None` otherwise.
pub fn reference_object(reference: &Value) -> Option<Map<String, Value>> {
    match reference {
        Value::Object(m) => Some(m.clone()),
        Value::String(s) => parse_strict(s).ok(),
        _ => None,
    }
}

/// Scores one completion:
/// `parse_score + (1 − parse_score − reference_weight) × schema + reference_weight × reference`,
/// 0 when no object parses (a parse failure is a score). Without a reference for this row the
/// reference share goes to the schema term. A reference that is present but not a JSON object
/// makes the row unscorable (a data problem, not the model's).
pub fn score_json(
    completion: &str,
    reference: Option<&Value>,
    options: &JsonRewardOptions,
) -> JsonScore {
    let reference = match reference {
        None | Some(Value::Null) => None,
        Some(r) => match reference_object(r) {
            Some(m) => Some(m),
            None => {
                return JsonScore {
                    score: Score::unscorable("reference is not a JSON object"),
                    parsed: None,
                    repairs: Vec::new(),
                    failure: None,
                    schema: None,
                    reference: None,
                    fields: Vec::new(),
                }
            }
        },
    };
    let parsed = match options.parser {
        ParserMode::Strict => parse_strict(completion).map(|m| (m, Vec::new())),
        ParserMode::Tolerant => extract_json(completion, &options.extract)
            .map(|e| (e.value, e.repairs))
            .map_err(|e| e.to_string()),
    };
    let (obj, repairs) = match parsed {
        Ok(x) => x,
        Err(why) => {
            return JsonScore {
                score: Score::Value(0.0),
                parsed: None,
                repairs: Vec::new(),
                failure: Some(why),
                schema: None,
                reference: None,
                fields: Vec::new(),
            }
        }
    };
    let (schema, mut fields) = schema_score(&obj, &options.fields, &options.compare);
    let reference_score = reference
        .as_ref()
        .map(|r| reference_score(&obj, r, options, &mut fields));
    let p = options.parse_score;
    let score = match reference_score {
        Some(rs) => {
            p + (1.0 - p - options.reference_weight) * schema + options.reference_weight * rs
        }
        None => p + (1.0 - p) * schema,
    };
    JsonScore {
        score: Score::value(score),
        parsed: Some(obj),
        repairs,
        failure: None,
        schema: Some(schema),
        reference: reference_score,
        fields,
    }
}

/// Weighted fraction of fields passing their checks: required fields always count, optional
/// ones only when present. No countable field → 1.
pub fn schema_score(
    obj: &Map<String, Value>,
    specs: &[FieldSpec],
    cmp: &CompareOptions,
) -> (f64, Vec<FieldResult>) {
    let mut total = 0.0;
    let mut earned = 0.0;
    let mut results = Vec::with_capacity(specs.len());
    for spec in specs {
        let status = check_field(spec, obj.get(&spec.name), cmp);
        if spec.required || status != FieldStatus::Missing {
            total += spec.weight;
            if status == FieldStatus::Ok {
                earned += spec.weight;
            }
        }
        results.push(FieldResult {
            name: spec.name.clone(),
            status: Some(status),
            matches_reference: None,
        });
    }
    let score = if total > 0.0 { earned / total } else { 1.0 };
    (score, results)
}

fn reference_score(
    obj: &Map<String, Value>,
    reference: &Map<String, Value>,
    options: &JsonRewardOptions,
    results: &mut Vec<FieldResult>,
) -> f64 {
    let names: Vec<String> = if !options.reference_fields.is_empty() {
        options.reference_fields.clone()
    } else if !options.fields.is_empty() {
        options.fields.iter().map(|f| f.name.clone()).collect()
    } else {
        reference.keys().cloned().collect()
    };
    let mut total = 0.0;
    let mut earned = 0.0;
    let mut all = true;
    for name in names {
        let Some(want) = reference.get(&name) else {
            continue; // the reference does not say: nothing to compare
        };
        let weight = options
            .fields
            .iter()
            .find(|f| f.name == name)
            .map_or(1.0, |f| f.weight);
        let ok = obj
            .get(&name)
            .is_some_and(|got| values_match(got, want, &options.compare));
        total += weight;
        if ok {
            earned += weight;
        } else {
            all = false;
        }
        match results.iter_mut().find(|r| r.name == name) {
            Some(r) => r.matches_reference = Some(ok),
            None => results.push(FieldResult {
                name,
                status: None,
                matches_reference: Some(ok),
            }),
        }
    }
    match options.compare.credit {
        Credit::Exact => {
            if all {
                1.0
            } else {
                0.0
            }
        }
        Credit::Partial => {
            if total > 0.0 {
                earned / total
            } else {
                1.0
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    fn extraction_fields() -> Vec<FieldSpec> {
        let mut sentiment = FieldSpec::new("sentiment", FieldKind::Enum);
        sentiment.values = vec!["positivo".into(), "neutro".into(), "negativo".into()];
        let mut score = FieldSpec::new("sentiment_score", FieldKind::Number);
        score.min = Some(0.0);
        score.max = Some(5.0);
        let mut cat = FieldSpec::new("complaint_category", FieldKind::Enum);
        cat.values = [
            "entrega",
            "produto",
            "atendimento",
            "pagamento",
            "outro",
            "nenhuma",
        ]
        .map(String::from)
        .to_vec();
        vec![
            sentiment,
            score,
            cat,
            FieldSpec::new("product", FieldKind::String),
            FieldSpec::new("requires_response", FieldKind::Bool),
        ]
    }

    #[test]
    fn pt_decimal_rule() {
        let cases = [
            (r#"{"x": 4,5}"#, r#"{"x": 4.5}"#),
            (r#"{"x": -0,5, "y": 1}"#, r#"{"x": -0.5, "y": 1}"#),
            (r#"{"x": 4,5 , "y": 1}"#, r#"{"x": 4.5 , "y": 1}"#),
            (r#"{"x": [1,2]}"#, r#"{"x": [1,2]}"#),
            (r#"{"a":1,"b":2}"#, r#"{"a":1,"b":2}"#),
            (r#"{"x": "4,5"}"#, r#"{"x": "4,5"}"#),
            (r#"{"x": 4, 5}"#, r#"{"x": 4, 5}"#),
            (r#"{"x": 1,234,567}"#, r#"{"x": 1.234,567}"#),
            (r#"{"s": "a\"b", "x": 2,0}"#, r#"{"s": "a\"b", "x": 2.0}"#),
        ];
        for (inp, want) in cases {
            assert_eq!(normalize_pt_decimals(inp).0, want, "{inp}");
        }
    }

    #[test]
    fn trailing_commas_rule() {
        assert_eq!(
            remove_trailing_commas(r#"{"a": [1, 2,], }"#).0,
            r#"{"a": [1, 2] }"#
        );
        assert_eq!(remove_trailing_commas(r#"{"a": ",}"}"#).0, r#"{"a": ",}"}"#);
    }

    #[test]
    fn think_stripping() {
        assert_eq!(strip_think("<think>a</think>b").0, "b");
        assert_eq!(strip_think("x<think>a").0, "x");
        assert_eq!(strip_think("reasoning</think>{}").0, "{}");
        assert_eq!(strip_think("<think>a</think>b<think>c</think>d").0, "bd");
        assert!(!strip_think("plain").1);
    }

    #[test]
    fn strict_parser_strips_fences_only() {
        assert!(parse_strict("```json\n{\"a\": 1}\n```").is_ok());
        assert!(parse_strict("{\"a\": 1}").is_ok());
        assert!(parse_strict("[1]").is_err());
        assert!(parse_strict("Here: {\"a\": 1}").is_err());
        assert!(parse_strict("{\"a\": 4,5}").is_err());
    }

    #[test]
    fn schema_score_counts_required_and_present_optional() {
        let fields = extraction_fields();
        let cmp = CompareOptions::default();
        let good = obj(json!({"sentiment": "Negativo", "sentiment_score": 1.5,
            "complaint_category": "atendimento", "product": "X", "requires_response": true}));
        assert_eq!(schema_score(&good, &fields, &cmp).0, 1.0);
        let bad = obj(json!({"sentiment": "bravo", "sentiment_score": 7,
            "complaint_category": "atendimento", "requires_response": "sim"}));
        let (s, r) = schema_score(&bad, &fields, &cmp);
        assert!((s - 0.2).abs() < 1e-12, "{s}");
        let st: Vec<_> = r.iter().map(|x| x.status.unwrap()).collect();
        assert_eq!(
            st,
            vec![
                FieldStatus::NotAllowed,
                FieldStatus::OutOfRange,
                FieldStatus::Ok,
                FieldStatus::Missing,
                FieldStatus::WrongType
            ]
        );
        let mut opt = FieldSpec::new("note", FieldKind::String);
        opt.required = false;
        let (s, _) = schema_score(&obj(json!({})), &[opt.clone()], &cmp);
        assert_eq!(s, 1.0);
        let (s, _) = schema_score(&obj(json!({"note": 3})), &[opt], &cmp);
        assert_eq!(s, 0.0);
    }

    #[test]
    fn integer_kind() {
        let f = FieldSpec::new("n", FieldKind::Integer);
        let c = CompareOptions::default();
        assert_eq!(check_field(&f, Some(&json!(3)), &c), FieldStatus::Ok);
        assert_eq!(check_field(&f, Some(&json!(3.0)), &c), FieldStatus::Ok);
        assert_eq!(
            check_field(&f, Some(&json!(3.5)), &c),
            FieldStatus::WrongType
        );
        assert_eq!(
            check_field(&f, Some(&json!("3")), &c),
            FieldStatus::WrongType
        );
        assert_eq!(
            check_field(&f, Some(&Value::Null), &c),
            FieldStatus::Missing
        );
    }

    #[test]
    fn score_formula_with_reference() {
        let options = JsonRewardOptions {
            fields: extraction_fields(),
            parse_score: 0.2,
            reference_weight: 0.4,
            ..Default::default()
        };
        options.validate().unwrap();
        let reference = json!("{\"sentiment\": \"negativo\", \"sentiment_score\": 1.5, \"complaint_category\": \"atendimento\", \"product\": \"Mochila Samsonite executiva\", \"requires_response\": true}");
        // pt decimal, accents/case differ in product; wrong category (still allowed)
        let c = r#"{"sentiment": "negativo", "sentiment_score": 1,5, "complaint_category": "outro", "product": "mochila samsonite EXECUTIVA", "requires_response": true}"#;
        let s = score_json(c, Some(&reference), &options);
        assert_eq!(s.schema, Some(1.0));
        assert_eq!(s.reference, Some(0.8));
        // 0.2 + 0.4*1 + 0.4*0.8 = 0.92
        assert!((s.score.as_f64().unwrap() - 0.92).abs() < 1e-12);
        assert_eq!(s.repairs, vec![Repair::PtDecimal]);
        // exact credit
        let mut exact = options.clone();
        exact.compare.credit = Credit::Exact;
        let s = score_json(c, Some(&reference), &exact);
        assert_eq!(s.reference, Some(0.0));
        // no reference: its share goes to the schema term
        let s = score_json(c, None, &options);
        assert_eq!(s.score, Score::Value(1.0));
        // unparseable completion: a score of 0, not unscorable
        let s = score_json("não sei", Some(&reference), &options);
        assert_eq!(s.score, Score::Value(0.0));
        assert!(s.failure.is_some());
        // a broken reference is unscorable
        let s = score_json(c, Some(&json!("not json")), &options);
        assert!(s.score.is_unscorable());
    }

    #[test]
    fn substring_and_tolerance() {
        let cmp = CompareOptions {
            substring: true,
            number_tolerance: 0.5,
            ..Default::default()
        };
        assert!(values_match(
            &json!("Secador Taiff"),
            &json!("secador"),
            &cmp
        ));
        assert!(!values_match(&json!(""), &json!("secador"), &cmp));
        assert!(values_match(&json!(4.0), &json!(4.5), &cmp));
        assert!(!values_match(&json!(3.9), &json!(4.5), &cmp));
        assert!(values_match(
            &json!({"a": [1, "Ação"]}),
            &json!({"a": [1.2, "acao"]}),
            &cmp
        ));
        assert!(!values_match(&json!(true), &json!("true"), &cmp));
    }

    #[test]
    fn strict_mode_reward() {
        let options = JsonRewardOptions {
            parser: ParserMode::Strict,
            ..Default::default()
        };
        assert_eq!(
            score_json(r#"{"x": 4,5}"#, None, &options).score,
            Score::Value(0.0)
        );
        assert_eq!(
            score_json(r#"{"x": 4.5}"#, None, &options).score,
            Score::Value(1.0)
        );
    }

    #[test]
    fn options_validation() {
        let mut o = JsonRewardOptions {
            parse_score: 0.7,
            reference_weight: 0.5,
            ..Default::default()
        };
        assert!(o.validate().is_err());
        o.reference_weight = 0.3;
        assert!(o.validate().is_ok());
        o.fields.push(FieldSpec::new("e", FieldKind::Enum));
        assert!(o.validate().is_err());
        let d: JsonRewardOptions = serde_json::from_value(json!({
            "fields": [{"name": "s", "kind": "enum", "values": ["a"]}]
        }))
        .unwrap();
        assert_eq!(d.fields[0].weight, 1.0);
        assert!(d.fields[0].required);
        assert_eq!(d.parse_score, 0.2);
    }
}
