//! Judge backends and group judging for the `judge` reward.
//!
//! A [`JudgeBackend`] answers one chat: [`HttpJudge`] posts to any OpenAI-compatible
//! chat-completions endpoint (vLLM, llama.cpp server, Ollama), [`LocalJudge`] runs a model of
//! the engine greedily. [`judge_group`] builds the judge prompt for a group of completions,
//! asks, parses the answer and turns it into one [`Score`] per completion.
//!
//! # The judge prompt
//! One `user` message, made of:
//! 1. the spec's `rubric`, rendered with minijinja (strict undefined: a misspelt variable is a
//!    spec error). Variables: `prompt` (the request text), `completions` (a list of
//!    `{label, text}` with labels `A`, `B`, …), `g` (group size), `reference` and `outcome`
//!    (the evidence when `against` is `reference` / `outcomes`, else none; as given, so
//!    `outcome.field` works) and `reference_text` / `outcome_text` (the same as text: a string
//!    as is, anything else as pretty JSON). An empty rubric uses a built-in one.
//! 2. unless the rubric itself uses `completions`: the request, the evidence and the labelled
//!    candidates, in a fixed layout;
//! 3. always: the answer format the parser expects (below).
//!
//! # Answer formats
//! - `mode: rank` — the ranking of all G labels, best first, on one line (`C > A > B`); read by
//!   [`crate::rewards::judge::parse_ranking`] (every format and strict rule documented there:
//!   duplicates dropped, stop at G, ranks clamped to 1..G, unpicked padded with `pad_unpicked`,
//!   default G − 1), and rank r maps to (G − r)/(G − 1).
//! - `mode: score` — one line per completion, `LABEL: SCORE`, SCORE in [0, 1] (`A: 0.8`). Also
//!   accepted: `A = 0.8`, `**A**: 0.8`, `Completion A: 0,8` (decimal comma), `A: 8/10`
//!   (divided by the denominator), `A: 80%`. The first score of a label wins; a score outside
//!   [0, 1] (after the division) is rejected, never clamped; labels outside the group are
//!   ignored. `<think>…</think>` blocks are removed first in both modes.
//!
//! # Failures
//! An answer that does not parse (no ranking label; in score mode, a label without a valid
//! score) is re-asked up to `retries` times, each time with the previous answer and what was
//! wrong with it appended to the chat. When it never parses, every completion is
//! [`Score::Unscorable`] with the reason (in score mode, the labels that did get a valid score
//! keep it). A backend that keeps failing (HTTP retries exhausted, a 4xx, a local generation
//! error) makes the group unscorable at once. Neither case is ever a 0 or a panic; only a
//! spec problem (a rubric that does not render, `strict: false`, G > 26) is an `Err`.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use minijinja::{Environment, UndefinedBehavior};
use regex::Regex;
use serde_json::{json, Value};

use crate::engine::chat::{self, Message};
use crate::engine::generate::{generate, GenerateRequest};
use crate::engine::model::Model;
use crate::engine::sample::SamplingParams;
use crate::engine::tokenizer::Tok;
use crate::rewards::judge::{label, parse_ranking, RankOptions, MAX_GROUP};
use crate::rewards::Score;
use crate::spec::{JudgeAgainst, JudgeMode, JudgeReward};
use crate::{Error, Result};

/// Something that answers a chat.
pub trait JudgeBackend: Send + Sync {
    /// One chat completion; returns the text and the number of retries it took.
    fn complete(&self, messages: &[Message], max_tokens: usize) -> Result<(String, u32)>;

    /// Like [`complete`](JudgeBackend::complete), but the retries are counted even when the
    /// call fails in the end (what [`judge_group`] records). The default counts none on failure.
    fn complete_counted(&self, messages: &[Message], max_tokens: usize) -> (Result<String>, u32) {
        match self.complete(messages, max_tokens) {
            Ok((text, retries)) => (Ok(text), retries),
            Err(e) => (Err(e), 0),
        }
    }
}

/// Longest backoff between two HTTP attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How much of a response body error messages quote.
const BODY_PREFIX: usize = 300;

/// An OpenAI-compatible chat-completions endpoint: `POST {endpoint}/chat/completions` with
/// `{model, messages, max_tokens, temperature: 0}` (`model` left out when the spec's `model` is
/// null: single-model servers such as llama.cpp's ignore it).
///
/// Each attempt has its own timeout (`timeout_ms`, connecting and reading the body included).
/// Connection errors, timeouts, 429 and 5xx are retried up to `http_retries` times, waiting
/// `backoff_ms · 2^k` before retry k + 1 (capped at 60 s); other 4xx (401, 404, 400…) and
/// malformed responses fail at once.
pub struct HttpJudge {
    url: String,
    model: Option<String>,
    api_key: Option<String>,
    retries: u32,
    backoff: Duration,
    agent: ureq::Agent,
}

impl std::fmt::Debug for HttpJudge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpJudge")
            .field("url", &self.url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<set>"))
            .field("retries", &self.retries)
            .field("backoff", &self.backoff)
            .finish()
    }
}

impl HttpJudge {
    /// Build from a judge reward's options. Its `endpoint` must be set, and the variable named
    /// by `api_key_env` (when set) must exist.
    pub fn from_spec(r: &JudgeReward) -> Result<HttpJudge> {
        let endpoint = r.endpoint.as_deref().ok_or_else(|| {
            Error::Spec("an HTTP judge needs `endpoint` (null = the local engine)".into())
        })?;
        let endpoint = endpoint.trim().trim_end_matches('/');
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            return Err(Error::Spec(format!(
                "judge endpoint `{endpoint}` must start with http:// or https://"
            )));
        }
        let api_key = match &r.api_key_env {
            None => None,
            Some(var) => Some(std::env::var(var).map_err(|_| {
                Error::Spec(format!(
                    "judge `api_key_env: {var}`: the environment variable `{var}` is not set"
                ))
            })?),
        };
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_millis(r.timeout_ms.max(1)))
            .build();
        Ok(HttpJudge {
            url: format!("{endpoint}/chat/completions"),
            model: r.model.clone(),
            api_key,
            retries: r.http_retries,
            backoff: Duration::from_millis(r.backoff_ms),
            agent,
        })
    }

    /// The URL requests go to.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn body(&self, messages: &[Message], max_tokens: usize) -> Value {
        let mut body = json!({
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": 0,
            "stream": false,
        });
        if let Some(m) = &self.model {
            body["model"] = Value::String(m.clone());
        }
        body
    }

    /// One attempt.
    fn attempt(&self, body: &str) -> std::result::Result<String, Attempt> {
        let mut req = self
            .agent
            .post(&self.url)
            .set("Content-Type", "application/json");
        if let Some(k) = &self.api_key {
            req = req.set("Authorization", &format!("Bearer {k}"));
        }
        match req.send_string(body) {
            Ok(resp) => match resp.into_string() {
                Ok(text) => content_of(&text).map_err(Attempt::Fatal),
                Err(e) => Err(Attempt::Retry(format!("reading the response: {e}"))),
            },
            Err(ureq::Error::Status(code, resp)) => {
                let text = resp.into_string().unwrap_or_default();
                let msg = format!("HTTP {code}: {}", prefix(&text, BODY_PREFIX));
                if code == 429 || code >= 500 {
                    Err(Attempt::Retry(msg))
                } else {
                    Err(Attempt::Fatal(Error::Other(format!(
                        "judge endpoint {}: {msg}",
                        self.url
                    ))))
                }
            }
            Err(ureq::Error::Transport(t)) => {
                use ureq::ErrorKind as K;
                match t.kind() {
                    K::Dns
                    | K::ConnectionFailed
                    | K::Io
                    | K::BadStatus
                    | K::BadHeader
                    | K::ProxyConnect => Err(Attempt::Retry(t.to_string())),
                    _ => Err(Attempt::Fatal(Error::Other(format!(
                        "judge endpoint {}: {t}",
                        self.url
                    )))),
                }
            }
        }
    }
}

/// How one HTTP attempt failed.
enum Attempt {
    /// Worth another try (connection, timeout, 429, 5xx).
    Retry(String),
    /// Will not get better by retrying.
    Fatal(Error),
}

impl JudgeBackend for HttpJudge {
    fn complete(&self, messages: &[Message], max_tokens: usize) -> Result<(String, u32)> {
        let (r, n) = self.complete_counted(messages, max_tokens);
        r.map(|t| (t, n))
    }

    fn complete_counted(&self, messages: &[Message], max_tokens: usize) -> (Result<String>, u32) {
        let body = self.body(messages, max_tokens).to_string();
        let mut retries = 0u32;
        loop {
            match self.attempt(&body) {
                Ok(text) => return (Ok(text), retries),
                Err(Attempt::Fatal(e)) => return (Err(e), retries),
                Err(Attempt::Retry(why)) => {
                    if retries >= self.retries {
                        let e = Error::Other(format!(
                            "judge endpoint {}: {why} (gave up after {} attempts)",
                            self.url,
                            retries + 1
                        ));
                        return (Err(e), retries);
                    }
                    std::thread::sleep(backoff(self.backoff, retries));
                    retries += 1;
                }
            }
        }
    }
}

/// Delay before retry `k + 1`: `base · 2^k`, capped at [`MAX_BACKOFF`].
fn backoff(base: Duration, k: u32) -> Duration {
    base.saturating_mul(1u32 << k.min(20)).min(MAX_BACKOFF)
}

/// `choices[0].message.content` of a chat-completions response body.
fn content_of(body: &str) -> Result<String> {
    let bad = |why: &str| {
        Error::Other(format!(
            "judge response {why}: {}",
            prefix(body, BODY_PREFIX)
        ))
    };
    let v: Value = serde_json::from_str(body).map_err(|_| bad("is not JSON"))?;
    v.get("choices")
        .and_then(|c| c.get(0))
        .and_then(|c| c.get("message"))
        .and_then(|m| m.get("content"))
        .and_then(|c| c.as_str())
        .map(str::to_string)
        .ok_or_else(|| bad("has no choices[0].message.content"))
}

/// The first `n` characters of `s` (with `…` when cut).
fn prefix(s: &str, n: usize) -> String {
    match s.char_indices().nth(n) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// The local engine as a judge: the chat is rendered with the tokenizer's chat template
/// (thinking off for templates that have the switch, so the answer fits `max_tokens`) and
/// decoded greedily. Never retries.
pub struct LocalJudge {
    model: Arc<Model>,
    tok: Arc<Tok>,
}

impl LocalJudge {
    /// A judge that runs `model` with `tok`.
    pub fn new(model: Arc<Model>, tok: Arc<Tok>) -> LocalJudge {
        LocalJudge { model, tok }
    }
}

impl JudgeBackend for LocalJudge {
    fn complete(&self, messages: &[Message], max_tokens: usize) -> Result<(String, u32)> {
        let text = chat::render(&self.tok, messages, true, Some(false))?;
        let ids = self.tok.encode(&text)?;
        let req = GenerateRequest {
            prompts: vec![ids],
            n_per_prompt: 1,
            params: SamplingParams::greedy(),
            max_new_tokens: max_tokens,
            stop_token_ids: Vec::new(),
            stop_strings: Vec::new(),
            seed: 0,
        };
        let out = generate(&self.model, &self.tok, &req)?;
        let answer = out
            .into_iter()
            .next()
            .map(|r| r.text)
            .ok_or_else(|| Error::Model("local judge generated nothing".into()))?;
        Ok((answer, 0))
    }
}

/// What judging one group gave.
#[derive(Debug, Clone)]
pub struct JudgeOutcome {
    /// One score per completion.
    pub scores: Vec<Score>,
    /// Retries it took: HTTP retries plus re-asks after an unparsable answer.
    pub retries: u32,
    /// The last raw judge answer ("" when the backend never answered).
    pub raw: String,
}

/// The rubric used when the spec's is empty.
const DEFAULT_RANK_RUBRIC: &str = "You are an impartial judge. Below are {{ g }} candidate \
responses to the same request. Compare them on correctness, relevance to the request, \
completeness and clarity{% if reference is not none %}, and agreement with the reference \
answer{% endif %}{% if outcome is not none %}, and how well they anticipated the realised \
outcome{% endif %}.";

const DEFAULT_SCORE_RUBRIC: &str = "You are an impartial judge. Below are {{ g }} candidate \
responses to the same request. Score each one on its own for correctness, relevance to the \
request, completeness and clarity{% if reference is not none %}, and agreement with the \
reference answer{% endif %}{% if outcome is not none %}, and how well it anticipated the \
realised outcome{% endif %}.";

/// The request, evidence and labelled candidates (appended unless the rubric shows them).
const CANDIDATES_BLOCK: &str = "## Request
{{ prompt }}
{% if reference_text is not none %}
## Reference answer
{{ reference_text }}
{% endif %}{% if outcome_text is not none %}
## Realised outcome
{{ outcome_text }}
{% endif %}
## Candidates
{% for c in completions %}
### {{ c.label }}
{{ c.text }}
{% endfor %}";

/// Variables a rubric can use.
const RUBRIC_VARIABLES: &[&str] = &[
    "prompt",
    "completions",
    "g",
    "reference",
    "outcome",
    "reference_text",
    "outcome_text",
];

/// Checks a judge spec without calling anything: `strict: false` is refused, and the rubric
/// must compile and use only the known variables. Call it when building the reward set to fail
/// early. (A field of the evidence that a record lacks, `outcome.price`, shows only when that
/// record is judged: its group is then unscorable.)
pub fn check_spec(spec: &JudgeReward) -> Result<()> {
    if !spec.strict {
        return Err(Error::Spec(
            "judge `strict: false` is not supported: ranks are always parsed strictly \
             (duplicates dropped, stop at G, clamped to 1..G), since lenient parsing gave \
             ranks above G and negative rewards"
                .into(),
        ));
    }
    let env = environment();
    let t = env
        .template_from_str(&spec.rubric)
        .map_err(|e| Error::Spec(format!("judge rubric: {e}")))?;
    let mut unknown: Vec<String> = t
        .undeclared_variables(false)
        .into_iter()
        .filter(|v| !RUBRIC_VARIABLES.contains(&v.as_str()) && env.globals().all(|(k, _)| k != v))
        .collect();
    unknown.sort();
    if !unknown.is_empty() {
        return Err(Error::Spec(format!(
            "judge rubric uses unknown variable(s) {}; known: {}",
            unknown.join(", "),
            RUBRIC_VARIABLES.join(", ")
        )));
    }
    Ok(())
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env
}

/// Rank (or score, `mode: score`) a group of completions with a judge (see the module docs).
pub fn judge_group(
    backend: &dyn JudgeBackend,
    spec: &JudgeReward,
    prompt: &str,
    completions: &[&str],
    evidence: Option<&Value>,
) -> Result<JudgeOutcome> {
    let g = completions.len();
    if g > MAX_GROUP {
        return Err(Error::Spec(format!(
            "a judge labels completions A–Z: a group of {g} is more than {MAX_GROUP}"
        )));
    }
    check_spec(spec)?;
    if g == 0 {
        return Ok(JudgeOutcome {
            scores: Vec::new(),
            retries: 0,
            raw: String::new(),
        });
    }
    if g == 1 && spec.mode == JudgeMode::Rank {
        return Ok(JudgeOutcome {
            scores: vec![Score::unscorable(
                "a group of one completion cannot be ranked",
            )],
            retries: 0,
            raw: String::new(),
        });
    }
    let user = match build_prompt(spec, prompt, completions, evidence) {
        Ok(u) => u,
        Err(e) => {
            return Ok(JudgeOutcome {
                scores: vec![Score::unscorable(format!("judge prompt: {e}")); g],
                retries: 0,
                raw: String::new(),
            })
        }
    };
    let mut messages = vec![Message::new("user", user)];
    let mut retries = 0u32;
    let mut raw = String::new();
    let mut last_failure = String::new();
    let mut partial: Option<Vec<Score>> = None;
    for attempt in 0..=spec.retries {
        if attempt > 0 {
            retries += 1;
        }
        let (answer, http_retries) = backend.complete_counted(&messages, spec.max_tokens);
        retries += http_retries;
        let answer = match answer {
            Ok(a) => a,
            Err(e) => {
                let why = format!("judge backend failed: {e}");
                return Ok(JudgeOutcome {
                    scores: vec![Score::unscorable(why); g],
                    retries,
                    raw,
                });
            }
        };
        raw = answer;
        let parsed = match spec.mode {
            JudgeMode::Rank => parse_rank_answer(&raw, g, spec),
            JudgeMode::Score => parse_score_answer(&raw, g),
        };
        match parsed {
            Ok(scores) => {
                return Ok(JudgeOutcome {
                    scores,
                    retries,
                    raw,
                })
            }
            Err(fail) => {
                last_failure = fail.reason;
                partial = fail.partial;
                messages.push(Message::new("assistant", raw.clone()));
                messages.push(Message::new(
                    "user",
                    format!(
                        "Your answer could not be read: {last_failure}. {}",
                        format_instruction(spec.mode, g)
                    ),
                ));
            }
        }
    }
    let why = format!(
        "judge answer unparsable after {} attempts ({last_failure}); last answer: {:?}",
        spec.retries + 1,
        prefix(&raw, 120)
    );
    let scores = match partial {
        Some(p) => p
            .into_iter()
            .map(|s| match s {
                Score::Value(v) => Score::Value(v),
                Score::Unscorable(r) => Score::unscorable(format!("{r}; {why}")),
            })
            .collect(),
        None => vec![Score::unscorable(why); g],
    };
    Ok(JudgeOutcome {
        scores,
        retries,
        raw,
    })
}

/// A judge answer that could not be used.
struct ParseFailure {
    reason: String,
    /// Score mode: the labels that did get a valid score (the rest unscorable).
    partial: Option<Vec<Score>>,
}

fn parse_rank_answer(
    answer: &str,
    g: usize,
    spec: &JudgeReward,
) -> std::result::Result<Vec<Score>, ParseFailure> {
    let options = RankOptions {
        pad_unpicked: spec.pad_unpicked,
    };
    parse_ranking(answer, g, &options)
        .map(|r| r.rewards().into_iter().map(Score::value).collect())
        .map_err(|e| ParseFailure {
            reason: e.to_string(),
            partial: None,
        })
}

fn score_line_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(
            r"(?m)^[\s>#*\-•]*(?i:(?:completion|response|resposta|candidate|candidato|option)\s+)?\**[\[(]?([A-Z])[\])]?\**\s*(?::|=|->|–|—|-)\s*\**\s*(-?\d+(?:[.,]\d+)?)\s*(?:(/)\s*(\d+(?:[.,]\d+)?)|(%))?",
        )
        .unwrap_or_else(|e| panic!("built-in regex: {e}"))
    })
}

fn number(s: &str) -> Option<f64> {
    s.replace(',', ".").parse::<f64>().ok()
}

/// Score-mode answer → one score per completion (format in the module docs).
fn parse_score_answer(answer: &str, g: usize) -> std::result::Result<Vec<Score>, ParseFailure> {
    let text = super::json::strip_think(answer).0;
    let mut found: BTreeMap<usize, std::result::Result<f64, String>> = BTreeMap::new();
    for c in score_line_re().captures_iter(&text) {
        let Some(l) = c.get(1).and_then(|m| m.as_str().chars().next()) else {
            continue;
        };
        let i = (l as u8 - b'A') as usize;
        if i >= g || found.contains_key(&i) {
            continue;
        }
        let Some(mut v) = c.get(2).and_then(|m| number(m.as_str())) else {
            continue;
        };
        let mut shown = c.get(2).map_or("", |m| m.as_str()).to_string();
        if c.get(3).is_some() {
            let d = c.get(4).and_then(|m| number(m.as_str())).unwrap_or(0.0);
            shown = format!("{shown}/{}", c.get(4).map_or("", |m| m.as_str()));
            v = if d > 0.0 { v / d } else { f64::NAN };
        } else if c.get(5).is_some() {
            shown.push('%');
            v /= 100.0;
        }
        let r = if (0.0..=1.0).contains(&v) {
            Ok(v)
        } else {
            Err(format!("score {shown} for {l} is not in [0, 1]"))
        };
        found.insert(i, r);
    }
    if found.is_empty() {
        return Err(ParseFailure {
            reason: "the answer holds no `LABEL: SCORE` line".into(),
            partial: None,
        });
    }
    let mut problems = Vec::new();
    let scores: Vec<Score> = (0..g)
        .map(|i| {
            let l = label(i).unwrap_or('?');
            match found.get(&i) {
                Some(Ok(v)) => Score::value(*v),
                Some(Err(why)) => {
                    problems.push(why.clone());
                    Score::unscorable(why.clone())
                }
                None => {
                    problems.push(format!("no score for {l}"));
                    Score::unscorable(format!("the judge gave no score for {l}"))
                }
            }
        })
        .collect();
    if problems.is_empty() {
        Ok(scores)
    } else {
        Err(ParseFailure {
            reason: problems.join(", "),
            partial: Some(scores),
        })
    }
}

/// The answer format the parser expects, as an instruction.
fn format_instruction(mode: JudgeMode, g: usize) -> String {
    let labels: Vec<String> = (0..g).filter_map(label).map(String::from).collect();
    match mode {
        JudgeMode::Rank => format!(
            "Rank all {g} candidates ({}) from best to worst. End your answer with one line \
             that holds only the labels, best first, separated by `>`, for example: `{}`.",
            labels.join(", "),
            example_ranking(&labels)
        ),
        JudgeMode::Score => format!(
            "Give each of the {g} candidates ({}) a score between 0 and 1 (1 = best), one \
             line per candidate in the form `LABEL: SCORE`, for example:\n{}",
            labels.join(", "),
            labels
                .iter()
                .zip([0.8, 0.3, 0.5, 1.0, 0.0, 0.6])
                .map(|(l, s)| format!("{l}: {s}"))
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}

/// A plausible example ranking (not alphabetical, so the judge is not primed towards A > B).
fn example_ranking(labels: &[String]) -> String {
    let mut l: Vec<&str> = labels.iter().map(String::as_str).collect();
    let mid = l.len() / 2;
    l.rotate_left(mid);
    l.join(" > ")
}

fn evidence_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => serde_json::to_string_pretty(other).unwrap_or_else(|_| other.to_string()),
    }
}

/// The judge's user message (module docs).
fn build_prompt(
    spec: &JudgeReward,
    prompt: &str,
    completions: &[&str],
    evidence: Option<&Value>,
) -> Result<String> {
    let (reference, outcome) = match spec.against {
        JudgeAgainst::None => (None, None),
        JudgeAgainst::Reference => (evidence, None),
        JudgeAgainst::Outcomes => (None, evidence),
    };
    let items: Vec<Value> = completions
        .iter()
        .enumerate()
        .map(|(i, t)| json!({"label": label(i).map(String::from), "text": t}))
        .collect();
    let ctx = json!({
        "prompt": prompt,
        "completions": items,
        "g": completions.len(),
        "reference": reference,
        "outcome": outcome,
        "reference_text": reference.map(evidence_text),
        "outcome_text": outcome.map(evidence_text),
    });
    let env = environment();
    let rubric_src = if spec.rubric.trim().is_empty() {
        match spec.mode {
            JudgeMode::Rank => DEFAULT_RANK_RUBRIC,
            JudgeMode::Score => DEFAULT_SCORE_RUBRIC,
        }
    } else {
        spec.rubric.as_str()
    };
    let render = |src: &str, what: &str| -> Result<(String, bool)> {
        let t = env
            .template_from_str(src)
            .map_err(|e| Error::Spec(format!("judge {what}: {e}")))?;
        let shows_completions = t.undeclared_variables(false).contains("completions");
        let out = t
            .render(minijinja::Value::from_serialize(&ctx))
            .map_err(|e| Error::Spec(format!("judge {what}: {e}")))?;
        Ok((out, shows_completions))
    };
    let (rubric, shows_completions) = render(rubric_src, "rubric")?;
    let mut out = rubric.trim_end().to_string();
    if !shows_completions {
        let (block, _) = render(CANDIDATES_BLOCK, "prompt layout")?;
        out.push_str("\n\n");
        out.push_str(block.trim_end());
    }
    out.push_str("\n\n");
    out.push_str(&format_instruction(spec.mode, completions.len()));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn spec(yaml: &str) -> JudgeReward {
        serde_yaml::from_str(yaml).unwrap()
    }

    /// Answers from a script, recording what it was asked.
    struct Scripted {
        answers: Mutex<Vec<Result<(String, u32)>>>,
        asked: Mutex<Vec<Vec<Message>>>,
    }

    impl Scripted {
        fn new(answers: Vec<Result<(String, u32)>>) -> Scripted {
            Scripted {
                answers: Mutex::new(answers.into_iter().rev().collect()),
                asked: Mutex::new(Vec::new()),
            }
        }
    }

    impl JudgeBackend for Scripted {
        fn complete(&self, messages: &[Message], _max_tokens: usize) -> Result<(String, u32)> {
            self.asked.lock().unwrap().push(messages.to_vec());
            self.answers
                .lock()
                .unwrap()
                .pop()
                .unwrap_or_else(|| Ok(("nothing left".into(), 0)))
        }
    }

    fn ok(s: &str) -> Result<(String, u32)> {
        Ok((s.to_string(), 0))
    }

    fn values(o: &JudgeOutcome) -> Vec<Option<f64>> {
        o.scores.iter().map(Score::as_f64).collect()
    }

    #[test]
    fn rank_mode_maps_ranks_to_rewards() {
        let b = Scripted::new(vec![ok("Ranking: C > A > B > D")]);
        let s = spec("rubric: 'Judge {{ g }} answers to: {{ prompt }}'");
        let o = judge_group(&b, &s, "Q?", &["a", "b", "c", "d"], None).unwrap();
        // ranks A=2, B=3, C=1, D=4 → (4 − r)/3
        assert_eq!(
            values(&o),
            vec![Some(2.0 / 3.0), Some(1.0 / 3.0), Some(1.0), Some(0.0)]
        );
        assert_eq!(o.retries, 0);
        let asked = b.asked.lock().unwrap();
        let msg = &asked[0][0].content;
        assert!(msg.starts_with("Judge 4 answers to: Q?"), "{msg}");
        assert!(
            msg.contains("### A\na") && msg.contains("### D\nd"),
            "{msg}"
        );
        assert!(msg.contains("separated by `>`"), "{msg}");
    }

    #[test]
    fn pad_unpicked_from_spec() {
        let b = Scripted::new(vec![ok("B > A")]);
        let o = judge_group(
            &b,
            &spec("pad_unpicked: 4"),
            "p",
            &["a", "b", "c", "d"],
            None,
        )
        .unwrap();
        assert_eq!(
            values(&o),
            vec![Some(2.0 / 3.0), Some(1.0), Some(0.0), Some(0.0)]
        );
        // default pad G − 1 = 3 → 1/3
        let b = Scripted::new(vec![ok("B > A")]);
        let o = judge_group(&b, &spec("{}"), "p", &["a", "b", "c", "d"], None).unwrap();
        assert_eq!(o.scores[2], Score::Value(1.0 / 3.0));
    }

    #[test]
    fn unparsable_answers_are_reasked_then_unscorable() {
        let b = Scripted::new(vec![ok("I like them all"), ok("no idea"), ok("still no")]);
        let o = judge_group(&b, &spec("retries: 2"), "p", &["x", "y"], None).unwrap();
        assert!(o.scores.iter().all(Score::is_unscorable));
        assert_eq!(o.retries, 2);
        assert_eq!(o.raw, "still no");
        let Score::Unscorable(why) = &o.scores[0] else {
            unreachable!()
        };
        assert!(
            why.contains("3 attempts") && why.contains("still no"),
            "{why}"
        );
        // the re-ask shows the previous answer and the complaint
        let asked = b.asked.lock().unwrap();
        assert_eq!(asked.len(), 3);
        assert_eq!(asked[1].len(), 3);
        assert_eq!(asked[1][1].content, "I like them all");
        assert!(asked[1][2].content.contains("could not be read"));

        // a later answer that parses wins
        let b = Scripted::new(vec![ok("hmm"), ok("B > A")]);
        let o = judge_group(&b, &spec("{}"), "p", &["x", "y"], None).unwrap();
        assert_eq!(values(&o), vec![Some(0.0), Some(1.0)]);
        assert_eq!(o.retries, 1);
    }

    #[test]
    fn backend_failure_is_unscorable_with_its_retries() {
        let b = Scripted::new(vec![Err(Error::Other("connection refused".into()))]);
        let o = judge_group(&b, &spec("{}"), "p", &["x", "y"], None).unwrap();
        assert!(o.scores.iter().all(Score::is_unscorable));
        let Score::Unscorable(why) = &o.scores[1] else {
            unreachable!()
        };
        assert!(why.contains("connection refused"), "{why}");
    }

    #[test]
    fn score_mode_lines() {
        let b = Scripted::new(vec![ok(
            "<think>A: 0.1</think>Scores:\n- **A**: 0.9\nB = 0,25\nCompletion C: 8/10\nD: 40%\nA: 0.0\nJ: 1",
        )]);
        let s = spec("mode: score");
        let o = judge_group(&b, &s, "p", &["a", "b", "c", "d"], None).unwrap();
        assert_eq!(
            values(&o),
            vec![Some(0.9), Some(0.25), Some(0.8), Some(0.4)]
        );
        let asked = b.asked.lock().unwrap();
        assert!(asked[0][0].content.contains("`LABEL: SCORE`"));
    }

    #[test]
    fn score_mode_missing_or_out_of_range_is_reasked_then_partial() {
        let b = Scripted::new(vec![ok("A: 0.5\nB: 7"), ok("A: 0.6\nB: 9")]);
        let o = judge_group(
            &b,
            &spec("{mode: score, retries: 1}"),
            "p",
            &["a", "b", "c"],
            None,
        )
        .unwrap();
        assert_eq!(o.retries, 1);
        assert_eq!(o.scores[0], Score::Value(0.6));
        assert!(o.scores[1].is_unscorable() && o.scores[2].is_unscorable());
        let Score::Unscorable(why) = &o.scores[1] else {
            unreachable!()
        };
        assert!(why.contains("not in [0, 1]"), "{why}");
        // a single completion can be scored (not ranked)
        let b = Scripted::new(vec![ok("A: 1")]);
        let o = judge_group(&b, &spec("mode: score"), "p", &["a"], None).unwrap();
        assert_eq!(o.scores, vec![Score::Value(1.0)]);
        let o = judge_group(&b, &spec("{}"), "p", &["a"], None).unwrap();
        assert!(o.scores[0].is_unscorable());
    }

    #[test]
    fn evidence_and_rubric_with_completions() {
        let b = Scripted::new(vec![ok("A > B")]);
        let s = spec(
            "against: outcomes\nrubric: |\n  Outcome: {{ outcome.price }}\n  {% for c in completions %}[{{ c.label }}] {{ c.text }}\n  {% endfor %}",
        );
        let ev = json!({"price": 4.5});
        judge_group(&b, &s, "p", &["up", "down"], Some(&ev)).unwrap();
        let asked = b.asked.lock().unwrap();
        let m = &asked[0][0].content;
        assert!(m.starts_with("Outcome: 4.5\n[A] up\n[B] down"), "{m}");
        assert!(!m.contains("## Candidates"), "{m}");
        drop(asked);
        // a record whose outcome lacks the field: that group is unscorable, not an error
        let o = judge_group(&b, &s, "p", &["up", "down"], Some(&json!({"other": 1}))).unwrap();
        assert!(o.scores.iter().all(Score::is_unscorable), "{o:?}");
        assert_eq!(b.asked.lock().unwrap().len(), 1);
        // the default layout shows the reference when against: reference
        let b = Scripted::new(vec![ok("A > B")]);
        let s = spec("against: reference");
        judge_group(&b, &s, "p", &["x", "y"], Some(&json!("the answer"))).unwrap();
        let m = &b.asked.lock().unwrap()[0][0].content;
        assert!(m.contains("## Reference answer\nthe answer"), "{m}");
        // against: none hides the evidence
        let b = Scripted::new(vec![ok("A > B")]);
        judge_group(&b, &spec("{}"), "p", &["x", "y"], Some(&json!("secret"))).unwrap();
        assert!(!b.asked.lock().unwrap()[0][0].content.contains("secret"));
    }

    #[test]
    fn spec_errors() {
        let b = Scripted::new(vec![]);
        assert!(judge_group(&b, &spec("rubric: '{{ nope }}'"), "p", &["x", "y"], None).is_err());
        assert!(judge_group(&b, &spec("rubric: '{% if'"), "p", &["x", "y"], None).is_err());
        assert!(judge_group(&b, &spec("strict: false"), "p", &["x", "y"], None).is_err());
        let many: Vec<&str> = vec!["x"; 27];
        assert!(judge_group(&b, &spec("{}"), "p", &many, None).is_err());
        assert!(check_spec(&spec("{}")).is_ok());
        assert!(b.asked.lock().unwrap().is_empty());
        let o = judge_group(&b, &spec("{}"), "p", &[], None).unwrap();
        assert!(o.scores.is_empty());
    }

    #[test]
    fn http_judge_spec_checks_and_helpers() {
        assert!(HttpJudge::from_spec(&spec("{}")).is_err());
        assert!(HttpJudge::from_spec(&spec("endpoint: localhost:8000")).is_err());
        let h = HttpJudge::from_spec(&spec("endpoint: 'http://127.0.0.1:9/v1/'")).unwrap();
        assert_eq!(h.url(), "http://127.0.0.1:9/v1/chat/completions");
        let e = HttpJudge::from_spec(&spec(
            "{endpoint: 'http://x', api_key_env: RUNNER_TEST_SURELY_UNSET_KEY}",
        ))
        .unwrap_err();
        assert!(
            e.to_string().contains("RUNNER_TEST_SURELY_UNSET_KEY"),
            "{e}"
        );
        assert_eq!(
            backoff(Duration::from_millis(500), 0),
            Duration::from_millis(500)
        );
        assert_eq!(
            backoff(Duration::from_millis(500), 2),
            Duration::from_millis(2000)
        );
        assert_eq!(backoff(Duration::from_millis(500), 40), MAX_BACKOFF);
        assert_eq!(
            content_of(r#"{"choices":[{"message":{"role":"assistant","content":"A > B"}}]}"#)
                .unwrap(),
            "A > B"
        );
        let e = content_of(r#"{"error":"overloaded"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("overloaded") && e.contains("choices[0]"), "{e}");
        assert_eq!(prefix("abcdef", 3), "abc…");
    }
}
