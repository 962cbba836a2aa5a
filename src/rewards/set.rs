//! The spec's rewards, built once and run together over a batch of completions.
//!
//! [`RewardSet::from_spec`] maps every `rewards.<name>` entry of the spec to its scorer in this
//! module's siblings (json, format, semantic, quality, keywords, answer, sql, judge, composite);
//! [`RewardSet::score`] runs them over a batch and returns one [`Score`] per reward and input,
//! plus the training reward.
//!
//! # Tasks: "not applicable" is neither 0 nor unscorable
//! A reward with `tasks` applies only to inputs of those tasks (an input without a task label is
//! outside every restricted reward). For other inputs its entry in [`Scored::per_reward`] holds
//! `Score::Value(0.0)` — "other records score 0 on it", as the spec says, which is also what a
//! composite sees for such a component — and [`Scored::applies`] is false there. Not-applicable
//! entries are left out of the training reward, of [`Scored::stats`] and
//! [`Scored::stats_by_task`] (they are not counted in `count` nor in `unscorable`), and
//! `runner score` leaves them out of each row's `rewards`.
//!
//! # The training reward
//! `total = Σ weight · score` over the rewards with `weight ≠ 0` that apply to the input;
//! unscorable when any of them is unscorable (never a silent 0). An input no weighted reward
//! applies to gets 0 (the empty sum; `runner validate` warns when every weight is 0).
//!
//! # Spec options → scorers
//! - `json`: `parser` maps explicitly (the spec's default is `strict`, the library's is
//!   tolerant); `required_fields` become required presence checks ([`FieldKind::Any`]),
//!   `allowed_values` enum checks (required when the field is also in `required_fields`, else
//!   checked only when present), every field of weight 1; the reference is compared only when
//!   `reference_fields` is non-empty.
//! - `format`: [`FormatReward::searching`] (patterns searched in the trimmed completion).
//! - `semantic`: cosine similarity of unit embeddings, `max(0, (cos − floor) / (1 − floor))`;
//!   one embedder per embedder id, shared by the rewards naming it; a missing target text or a
//!   failing embedder is unscorable.
//! - `quality`: the library rubric (`min_words`, `max_words`, `leak_penalty`, default leak
//!   phrases and heuristic, echo check against the prompt), plus the spec's `min_chars` /
//!   `max_chars` (outside → 0) and `leak_patterns` (each line matching one costs
//!   `leak_penalty`, like the library's findings; a line the library already flagged counts
//!   once); the library's degenerate word count is capped at `min_words`.
//! - `keywords`: each group is a term of weight 1; `groups_field` adds the record's list (each
//!   string its own group; a record without that field is unscorable); `saturate_at` groups
//!   give 1.
//! - `answer`: `extract` picks the extraction (`regex` needs `regex`); the reference must be a
//!   number (a string or a JSON number), else unscorable.
//! - `sql`: [`crate::rewards::sql`]; reasons name the record by its id field.
//! - `judge`: one call per group of applicable inputs sharing [`ScoreInput::group`], through
//!   [`judge_group`]; an HTTP judge when `endpoint` is set, else the context's local judge (an
//!   error at build time when there is none). A failing judge call makes its group unscorable.
//! - `composite`: the library's [`composite`] with the spec's gate; an outcome blend
//!   `(1 − α)·Σ + α·outcome` is folded in by scaling the component weights by `1 − α` and adding
//!   the outcome reward with weight `α`, so the gate (and its bonus) applies to the blend.
//!   Composites are evaluated after the rewards they name (a cycle is an error).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use regex::Regex;
use serde_json::{Map, Value};

use crate::rewards::answer::{AnswerOptions, AnswerReward, Fallback};
use crate::rewards::format::{FormatOptions, FormatReward};
use crate::rewards::json::{
    score_json, CompareOptions, ExtractOptions, FieldKind, FieldSpec, JsonRewardOptions, ParserMode,
};
use crate::rewards::judge_client::{judge_group, HttpJudge, JudgeBackend};
use crate::rewards::keywords::{KeywordOptions, KeywordReward, KeywordTerm};
use crate::rewards::quality::{score_quality, QualityOptions};
use crate::rewards::sql::{SqlOptions, SqlReward as SqlScorer};
use crate::rewards::{composite, CompositeOptions, GateOptions, RewardStats, Score};
use crate::spec::{
    AnswerExtract, CompositeReward, Experiment, JsonParser, JsonReward, JudgeAgainst, JudgeReward,
    KeywordsReward, QualityReward, Reward, SemanticReward, SemanticTarget,
};
use crate::{Error, Result};

/// One completion to score, with what rewards may look at.
pub struct ScoreInput<'a> {
    /// Rendered prompt text (user message text, not chat-templated).
    pub prompt: &'a str,
    /// The completion being scored.
    pub completion: &'a str,
    /// The record's reference answer, if any.
    pub reference: Option<&'a Value>,
    /// The record's task label, if any.
    pub task: Option<&'a str>,
    /// The raw data record.
    pub record: &'a Map<String, Value>,
    /// Completions with the same group come from one prompt.
    pub group: usize,
    /// Joined outcome record (daily loop), if any.
    pub outcome: Option<&'a Value>,
}

/// What building a reward set may need besides the spec.
#[derive(Default, Clone)]
pub struct RewardContext {
    /// Backend for `judge` rewards with `endpoint: null` (the local engine); None = such judges
    /// are an error at build time.
    pub local_judge: Option<Arc<dyn JudgeBackend>>,
}

/// Something that turns texts into unit embeddings (the `semantic` reward's model).
pub trait SentenceEmbedder: Send + Sync {
    /// One unit vector per text.
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>>;
}

impl SentenceEmbedder for crate::rewards::semantic::Embedder {
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        crate::rewards::semantic::Embedder::embed(self, texts)
    }
}

/// Loads the embedder named by a `semantic` reward's `embedder` option.
pub type EmbedderLoader<'a> = &'a dyn Fn(&str) -> Result<Arc<dyn SentenceEmbedder>>;

/// The scores of a batch.
#[derive(Debug, Clone, Default)]
pub struct Scored {
    /// Every reward name, spec order (BTreeMap order).
    pub names: Vec<String>,
    /// One Score per input, per reward (`Value(0.0)` where the reward does not apply).
    pub per_reward: BTreeMap<String, Vec<Score>>,
    /// Whether each reward applies to each input (its `tasks`).
    pub applies: BTreeMap<String, Vec<bool>>,
    /// The training reward: Σ weight·score over rewards with weight ≠ 0 that apply to the
    /// input's task. Unscorable when any such component is unscorable (never silently 0).
    pub total: Vec<Score>,
    /// json rewards' parsed objects (`None` when it did not parse or does not apply).
    pub parsed: BTreeMap<String, Vec<Option<Value>>>,
    /// Judge retries over the batch (HTTP and parse).
    pub judge_retries: u64,
}

/// The key [`Scored::stats_by_task`] uses for inputs without a task label.
pub const NO_TASK: &str = "(none)";

impl Scored {
    /// Whether reward `name` applies to input `i`.
    pub fn applies(&self, name: &str, i: usize) -> bool {
        self.applies
            .get(name)
            .and_then(|v| v.get(i))
            .copied()
            .unwrap_or(false)
    }

    /// The applicable scores of one reward.
    fn applicable<'s>(&'s self, name: &'s str) -> impl Iterator<Item = (usize, &'s Score)> + 's {
        self.per_reward
            .get(name)
            .into_iter()
            .flatten()
            .enumerate()
            .filter(move |(i, _)| self.applies(name, *i))
    }

    /// Statistics per reward, over the inputs it applies to.
    pub fn stats(&self) -> BTreeMap<String, RewardStats> {
        self.names
            .iter()
            .map(|n| {
                (
                    n.clone(),
                    RewardStats::from_scores(self.applicable(n).map(|(_, s)| s)),
                )
            })
            .collect()
    }

    /// Statistics of the training reward.
    pub fn total_stats(&self) -> RewardStats {
        RewardStats::from_scores(&self.total)
    }

    /// Statistics per task (inputs without a task under [`NO_TASK`]), then per reward over the
    /// inputs it applies to (rewards that apply to none of a task's inputs are left out), plus
    /// `"total"` for the training reward. `tasks` holds one label per input.
    pub fn stats_by_task(
        &self,
        tasks: &[Option<&str>],
    ) -> BTreeMap<String, BTreeMap<String, RewardStats>> {
        let key = |i: usize| tasks.get(i).copied().flatten().unwrap_or(NO_TASK);
        let mut by_task: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for i in 0..self.total.len() {
            by_task.entry(key(i).to_string()).or_default().push(i);
        }
        by_task
            .into_iter()
            .map(|(task, idx)| {
                let mut m = BTreeMap::new();
                for n in &self.names {
                    let Some(scores) = self.per_reward.get(n) else {
                        continue;
                    };
                    let picked: Vec<&Score> = idx
                        .iter()
                        .filter(|&&i| self.applies(n, i))
                        .filter_map(|&i| scores.get(i))
                        .collect();
                    if !picked.is_empty() {
                        m.insert(n.clone(), RewardStats::from_scores(picked));
                    }
                }
                m.insert(
                    "total".into(),
                    RewardStats::from_scores(idx.iter().filter_map(|&i| self.total.get(i))),
                );
                (task, m)
            })
            .collect()
    }
}

/// A built `quality` reward.
struct QualityScorer {
    options: QualityOptions,
    min_chars: usize,
    max_chars: Option<usize>,
    leak_patterns: Vec<Regex>,
}

/// A built `keywords` reward.
struct KeywordsScorer {
    groups: Vec<Vec<String>>,
    groups_field: Option<String>,
    saturate_at: Option<usize>,
    /// Compiled once when the groups do not depend on the record.
    fixed: Option<KeywordReward>,
}

/// A built `semantic` reward.
struct SemanticScorer {
    embedder: Arc<dyn SentenceEmbedder>,
    against: SemanticTarget,
    floor: f64,
}

enum Kind {
    Json {
        options: Box<JsonRewardOptions>,
        compare_reference: bool,
    },
    Format(FormatReward),
    Semantic(SemanticScorer),
    Quality(QualityScorer),
    Keywords(KeywordsScorer),
    Answer(AnswerReward),
    Sql {
        scorer: SqlScorer,
        expected_rows_field: Option<String>,
    },
    Judge {
        spec: Box<JudgeReward>,
        backend: Arc<dyn JudgeBackend>,
    },
    Composite(CompositeOptions),
}

struct Entry {
    name: String,
    weight: f64,
    tasks: Vec<String>,
    kind: Kind,
}

/// The spec's rewards, ready to score.
pub struct RewardSet {
    /// Spec order (BTreeMap order).
    names: Vec<String>,
    /// Evaluation order: every reward after the rewards it names.
    entries: Vec<Entry>,
    /// Record field with the record id (names records in unscorable reasons).
    id_field: String,
}

impl RewardSet {
    /// Builds every reward of the spec (semantic embedders loaded with
    /// [`crate::rewards::semantic::Embedder::load`], one per embedder id).
    pub fn from_spec(spec: &Experiment, ctx: &RewardContext) -> Result<RewardSet> {
        let load = |id: &str| -> Result<Arc<dyn SentenceEmbedder>> {
            Ok(Arc::new(crate::rewards::semantic::Embedder::load(id)?))
        };
        Self::from_spec_with(spec, ctx, &load)
    }

    /// [`RewardSet::from_spec`] with a custom embedder loader (tests, shared embedders).
    pub fn from_spec_with(
        spec: &Experiment,
        ctx: &RewardContext,
        load_embedder: EmbedderLoader<'_>,
    ) -> Result<RewardSet> {
        let mut embedders: HashMap<String, Arc<dyn SentenceEmbedder>> = HashMap::new();
        let mut built = BTreeMap::new();
        for (name, reward) in &spec.rewards {
            let kind = build_kind(name, reward, ctx, load_embedder, &mut embedders).map_err(
                |e| match e {
                    Error::Spec(m) if !m.starts_with("rewards.") => {
                        Error::Spec(format!("rewards.{name}: {m}"))
                    }
                    other => other,
                },
            )?;
            built.insert(
                name.clone(),
                Entry {
                    name: name.clone(),
                    weight: reward.weight(),
                    tasks: reward.tasks().to_vec(),
                    kind,
                },
            );
        }
        let names: Vec<String> = spec.rewards.keys().cloned().collect();
        let order = evaluation_order(spec)?;
        let mut entries = Vec::with_capacity(order.len());
        for n in order {
            if let Some(e) = built.remove(&n) {
                entries.push(e);
            }
        }
        let id_field = [&spec.data.train, &spec.data.eval]
            .into_iter()
            .flatten()
            .find_map(|d| d.fields.id.clone())
            .unwrap_or_else(|| "id".into());
        Ok(RewardSet {
            names,
            entries,
            id_field,
        })
    }

    /// Reward names, spec order.
    pub fn names(&self) -> Vec<String> {
        self.names.clone()
    }

    /// Names of the `json` rewards (their parsed objects are in [`Scored::parsed`]).
    pub fn json_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .entries
            .iter()
            .filter(|e| matches!(e.kind, Kind::Json { .. }))
            .map(|e| e.name.clone())
            .collect();
        v.sort();
        v
    }

    /// Scores a batch.
    pub fn score(&self, inputs: &[ScoreInput<'_>]) -> Result<Scored> {
        let mut out = Scored {
            names: self.names.clone(),
            ..Scored::default()
        };
        for e in &self.entries {
            let applies: Vec<bool> = inputs
                .iter()
                .map(|x| {
                    e.tasks.is_empty() || x.task.is_some_and(|t| e.tasks.iter().any(|k| k == t))
                })
                .collect();
            let scores = self.score_entry(e, inputs, &applies, &mut out)?;
            out.per_reward.insert(e.name.clone(), scores);
            out.applies.insert(e.name.clone(), applies);
        }
        out.total = (0..inputs.len()).map(|i| self.total_of(&out, i)).collect();
        Ok(out)
    }

    fn total_of(&self, scored: &Scored, i: usize) -> Score {
        let mut sum = 0.0;
        for e in &self.entries {
            if e.weight == 0.0 || !scored.applies(&e.name, i) {
                continue;
            }
            match scored.per_reward.get(&e.name).and_then(|v| v.get(i)) {
                Some(Score::Value(v)) => sum += e.weight * v,
                Some(Score::Unscorable(why)) => {
                    return Score::unscorable(format!("reward `{}`: {why}", e.name))
                }
                None => return Score::unscorable(format!("reward `{}`: no score", e.name)),
            }
        }
        Score::value(sum)
    }

    fn record_name(&self, x: &ScoreInput<'_>, i: usize) -> String {
        match x.record.get(&self.id_field) {
            Some(Value::String(s)) => format!("`{s}`"),
            Some(Value::Number(n)) => format!("`{n}`"),
            _ => format!("#{i} of the batch"),
        }
    }

    fn score_entry(
        &self,
        e: &Entry,
        inputs: &[ScoreInput<'_>],
        applies: &[bool],
        out: &mut Scored,
    ) -> Result<Vec<Score>> {
        let na = || Score::Value(0.0);
        // per-input scorers: not-applicable inputs are skipped
        let each = |f: &mut dyn FnMut(usize, &ScoreInput<'_>) -> Score| -> Vec<Score> {
            inputs
                .iter()
                .enumerate()
                .map(|(i, x)| if applies[i] { f(i, x) } else { na() })
                .collect()
        };
        Ok(match &e.kind {
            Kind::Json {
                options,
                compare_reference,
            } => {
                let mut parsed = Vec::with_capacity(inputs.len());
                let scores = inputs
                    .iter()
                    .enumerate()
                    .map(|(i, x)| {
                        if !applies[i] {
                            parsed.push(None);
                            return na();
                        }
                        let reference = if *compare_reference {
                            x.reference
                        } else {
                            None
                        };
                        let s = score_json(x.completion, reference, options);
                        parsed.push(s.parsed.map(Value::Object));
                        s.score
                    })
                    .collect();
                out.parsed.insert(e.name.clone(), parsed);
                scores
            }
            Kind::Format(f) => each(&mut |_, x| f.score(x.completion)),
            Kind::Quality(q) => each(&mut |_, x| q.score(x.completion, x.prompt)),
            Kind::Keywords(k) => {
                let mut cache: HashMap<String, std::result::Result<KeywordReward, String>> =
                    HashMap::new();
                each(&mut |_, x| k.score(x, &mut cache))
            }
            Kind::Answer(a) => each(&mut |_, x| match x.reference {
                None | Some(Value::Null) => Score::unscorable("the record has no reference"),
                Some(Value::String(s)) => a.score(x.completion, s),
                Some(Value::Number(n)) => a.score(x.completion, &n.to_string()),
                Some(other) => {
                    Score::unscorable(format!("reference {other} is not a number or a string"))
                }
            }),
            Kind::Sql {
                scorer,
                expected_rows_field,
            } => each(&mut |i, x| {
                let expected = expected_rows_field.as_deref().and_then(|f| x.record.get(f));
                scorer
                    .score(
                        x.completion,
                        expected,
                        x.reference,
                        expected_rows_field.is_some(),
                        &self.record_name(x, i),
                    )
                    .score
            }),
            Kind::Semantic(s) => s.score_batch(inputs, applies),
            Kind::Judge { spec, backend } => {
                let (scores, retries) = judge_batch(backend.as_ref(), spec, inputs, applies);
                out.judge_retries += retries;
                scores
            }
            Kind::Composite(options) => {
                let mut scores = Vec::with_capacity(inputs.len());
                for (i, _) in inputs.iter().enumerate() {
                    if !applies[i] {
                        scores.push(na());
                        continue;
                    }
                    let mut named = BTreeMap::new();
                    for n in options
                        .components
                        .keys()
                        .chain(options.gate.as_ref().map(|g| &g.reward))
                    {
                        if let Some(s) = out.per_reward.get(n).and_then(|v| v.get(i)) {
                            named.insert(n.clone(), s.clone());
                        }
                    }
                    scores.push(composite(options, &named)?);
                }
                scores
            }
        })
    }
}

fn build_kind(
    name: &str,
    reward: &Reward,
    ctx: &RewardContext,
    load_embedder: EmbedderLoader<'_>,
    embedders: &mut HashMap<String, Arc<dyn SentenceEmbedder>>,
) -> Result<Kind> {
    Ok(match reward {
        Reward::Json(r) => {
            let options = json_options(r);
            options.validate()?;
            Kind::Json {
                options: Box::new(options),
                compare_reference: !r.reference_fields.is_empty(),
            }
        }
        Reward::Format(r) => Kind::Format(FormatReward::searching(
            &FormatOptions {
                pattern: r.regex.clone(),
                relaxed: r.relaxed_regex.clone(),
                relaxed_score: r.relaxed_score,
            },
            r.one_line,
        )?),
        Reward::Semantic(r) => Kind::Semantic(semantic_scorer(r, load_embedder, embedders)?),
        Reward::Quality(r) => Kind::Quality(QualityScorer::new(r)?),
        Reward::Keywords(r) => Kind::Keywords(KeywordsScorer::new(r)?),
        Reward::Answer(r) => Kind::Answer(AnswerReward::new(answer_options(r)?)?),
        Reward::Sql(r) => Kind::Sql {
            scorer: SqlScorer::new(SqlOptions {
                database: r.database.clone().into(),
                runs_score: r.runs_score,
                timeout_ms: r.timeout_ms,
                max_rows: r.max_rows,
            })?,
            expected_rows_field: r.expected_rows_field.clone(),
        },
        Reward::Judge(r) => {
            // A bad rubric or option fails here, once, not per group.
            crate::rewards::judge_client::check_spec(r)
                .map_err(|e| Error::Spec(format!("rewards.{name}: {e}")))?;
            let backend: Arc<dyn JudgeBackend> = match (&r.endpoint, &ctx.local_judge) {
                (Some(_), _) => Arc::new(HttpJudge::from_spec(r)?),
                (None, Some(local)) => local.clone(),
                (None, None) => {
                    return Err(Error::Spec(format!(
                        "rewards.{name}: a judge without `endpoint` runs on the local engine, \
                         which is not available here (set `endpoint` to an OpenAI-compatible \
                         server, or score inside a run)"
                    )))
                }
            };
            Kind::Judge {
                spec: Box::new(r.clone()),
                backend,
            }
        }
        Reward::Composite(r) => Kind::Composite(composite_options(r)),
    })
}

/// The library options of a spec `json` reward (module docs).
pub fn json_options(r: &JsonReward) -> JsonRewardOptions {
    let mut fields: Vec<FieldSpec> = r
        .required_fields
        .iter()
        .map(|f| match r.allowed_values.get(f) {
            Some(values) => FieldSpec {
                values: values.clone(),
                ..FieldSpec::new(f.clone(), FieldKind::Enum)
            },
            None => FieldSpec::new(f.clone(), FieldKind::Any),
        })
        .collect();
    for (f, values) in &r.allowed_values {
        if !r.required_fields.contains(f) {
            fields.push(FieldSpec {
                values: values.clone(),
                required: false,
                ..FieldSpec::new(f.clone(), FieldKind::Enum)
            });
        }
    }
    JsonRewardOptions {
        parser: match r.parser {
            JsonParser::Strict => ParserMode::Strict,
            JsonParser::Tolerant => ParserMode::Tolerant,
        },
        extract: ExtractOptions::default(),
        fields,
        parse_score: r.parse_score,
        reference_weight: r.reference_weight,
        reference_fields: r.reference_fields.clone(),
        compare: CompareOptions::default(),
    }
}

fn answer_options(r: &crate::spec::AnswerReward) -> Result<AnswerOptions> {
    let (pattern, fallbacks) =
        match r.extract {
            AnswerExtract::LastNumber => (None, vec![Fallback::LastNumber]),
            AnswerExtract::Boxed => (None, vec![Fallback::Boxed]),
            AnswerExtract::Whole => (None, vec![Fallback::Whole]),
            AnswerExtract::Regex => match &r.regex {
                Some(p) => (Some(p.clone()), Vec::new()),
                None => return Err(Error::Spec(
                    "answer reward: `extract: regex` needs `regex` (e.g. 'Answer:\\s*(-?\\d+)')"
                        .into(),
                )),
            },
        };
    Ok(AnswerOptions {
        pattern,
        fallbacks,
        tolerance: r.tolerance,
        ..AnswerOptions::default()
    })
}

fn composite_options(r: &CompositeReward) -> CompositeOptions {
    let keep = r.outcome.as_ref().map_or(1.0, |o| 1.0 - o.alpha);
    let mut components: BTreeMap<String, f64> = r
        .components
        .iter()
        .map(|(k, w)| (k.clone(), w * keep))
        .collect();
    if let Some(o) = &r.outcome {
        *components.entry(o.reward.clone()).or_insert(0.0) += o.alpha;
    }
    CompositeOptions {
        components,
        gate: r.gate.as_ref().map(|g| GateOptions {
            reward: g.reward.clone(),
            min: g.min,
            otherwise: g.otherwise,
            bonus: g.bonus,
        }),
    }
}

/// Reward names in an order where every composite comes after the rewards it names; a cycle
/// or an unknown name is a spec error.
fn evaluation_order(spec: &Experiment) -> Result<Vec<String>> {
    let mut order = Vec::with_capacity(spec.rewards.len());
    let mut state: BTreeMap<&str, u8> = BTreeMap::new(); // 1 = visiting, 2 = done
    fn visit<'s>(
        name: &'s str,
        spec: &'s Experiment,
        state: &mut BTreeMap<&'s str, u8>,
        order: &mut Vec<String>,
    ) -> Result<()> {
        match state.get(name) {
            Some(2) => return Ok(()),
            Some(_) => {
                return Err(Error::Spec(format!(
                    "rewards.{name}: composite rewards refer to each other in a cycle"
                )))
            }
            None => {}
        }
        let Some(reward) = spec.rewards.get(name) else {
            return Err(Error::Spec(format!("no reward named `{name}` is defined")));
        };
        state.insert(name, 1);
        for (path, target) in reward.references() {
            visit(target, spec, state, order).map_err(|e| match e {
                Error::Spec(m) if m.starts_with("no reward") => {
                    Error::Spec(format!("rewards.{name}.{path}: {m}"))
                }
                other => other,
            })?;
        }
        state.insert(name, 2);
        order.push(name.to_string());
        Ok(())
    }
    for name in spec.rewards.keys() {
        visit(name, spec, &mut state, &mut order)?;
    }
    Ok(order)
}

impl QualityScorer {
    fn new(r: &QualityReward) -> Result<QualityScorer> {
        let options = QualityOptions {
            min_words: r.min_words,
            max_words: r.max_words,
            leak_penalty: r.leak_penalty,
            // the spec's own degenerate threshold is `min_chars`; never call a completion
            // degenerate for a word count the spec's window accepts
            min_words_degenerate: QualityOptions::default()
                .min_words_degenerate
                .min(r.min_words),
            ..QualityOptions::default()
        };
        options.validate()?;
        let leak_patterns = r
            .leak_patterns
            .iter()
            .map(|p| {
                Regex::new(p)
                    .map_err(|e| Error::Spec(format!("quality reward: leak pattern {p:?}: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(QualityScorer {
            options,
            min_chars: r.min_chars,
            max_chars: r.max_chars,
            leak_patterns,
        })
    }

    fn score(&self, completion: &str, prompt: &str) -> Score {
        let chars = completion.trim().chars().count();
        if chars < self.min_chars || self.max_chars.is_some_and(|m| chars > m) {
            return Score::Value(0.0);
        }
        let prompt = (!prompt.trim().is_empty()).then_some(prompt);
        let q = score_quality(completion, prompt, &self.options);
        if q.degenerate {
            return Score::Value(0.0);
        }
        // a line the library already flagged is not counted twice
        let pattern_leaks = completion
            .lines()
            .filter(|l| self.leak_patterns.iter().any(|re| re.is_match(l)))
            .filter(|l| !q.leaks.iter().any(|k| k == l.trim()))
            .count();
        let findings = (q.leaks.len() + pattern_leaks) as f64;
        Score::value((q.length_score - self.options.leak_penalty * findings).max(0.0))
    }
}

impl KeywordsScorer {
    fn new(r: &KeywordsReward) -> Result<KeywordsScorer> {
        let mut s = KeywordsScorer {
            groups: r.groups.clone(),
            groups_field: r.groups_field.clone(),
            saturate_at: r.saturate_at,
            fixed: None,
        };
        if s.groups_field.is_none() {
            if s.groups.is_empty() {
                return Err(Error::Spec(
                    "keywords reward: needs `groups` or `groups_field`".into(),
                ));
            }
            s.fixed = Some(s.compile(&[])?);
        } else if !s.groups.is_empty() {
            s.compile(&[])?; // check the static groups now
        }
        Ok(s)
    }

    fn compile(&self, extra: &[String]) -> Result<KeywordReward> {
        let terms = self
            .groups
            .iter()
            .cloned()
            .chain(extra.iter().map(|k| vec![k.clone()]))
            .map(|any| KeywordTerm {
                any,
                pattern: None,
                weight: 1.0,
            })
            .collect();
        KeywordReward::new(&KeywordOptions {
            terms,
            saturate_at: self.saturate_at.map(|n| n as f64),
        })
    }

    fn score(
        &self,
        x: &ScoreInput<'_>,
        cache: &mut HashMap<String, std::result::Result<KeywordReward, String>>,
    ) -> Score {
        if let Some(k) = &self.fixed {
            return k.hits(x.completion).score;
        }
        let Some(field) = &self.groups_field else {
            return Score::unscorable("keywords reward has no groups");
        };
        let extra: Vec<String> = match x.record.get(field) {
            None | Some(Value::Null) => {
                return Score::unscorable(format!("the record has no `{field}` field"))
            }
            Some(Value::Array(items)) => {
                let mut v = Vec::with_capacity(items.len());
                for it in items {
                    match it {
                        Value::String(s) => v.push(s.clone()),
                        Value::Number(n) => v.push(n.to_string()),
                        other => {
                            return Score::unscorable(format!(
                                "`{field}` holds {other}, not a string"
                            ))
                        }
                    }
                }
                v
            }
            Some(other) => {
                return Score::unscorable(format!("`{field}` is {other}, not a list of strings"))
            }
        };
        let key = extra.join("\u{1f}");
        let reward = cache
            .entry(key)
            .or_insert_with(|| self.compile(&extra).map_err(|e| e.to_string()));
        match reward {
            Ok(k) => k.hits(x.completion).score,
            Err(e) => Score::unscorable(format!("keywords from `{field}`: {e}")),
        }
    }
}

fn semantic_scorer(
    r: &SemanticReward,
    load: EmbedderLoader<'_>,
    cache: &mut HashMap<String, Arc<dyn SentenceEmbedder>>,
) -> Result<SemanticScorer> {
    if !(-1.0..1.0).contains(&r.floor) {
        return Err(Error::Spec(
            "semantic reward: floor must be in [-1, 1)".into(),
        ));
    }
    let embedder = match cache.get(&r.embedder) {
        Some(e) => e.clone(),
        None => {
            let e = load(&r.embedder)?;
            cache.insert(r.embedder.clone(), e.clone());
            e
        }
    };
    Ok(SemanticScorer {
        embedder,
        against: r.against,
        floor: r.floor,
    })
}

/// A JSON value as text: strings as they are, anything else as compact JSON.
fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl SemanticScorer {
    fn target(&self, x: &ScoreInput<'_>) -> std::result::Result<String, &'static str> {
        let text = match self.against {
            SemanticTarget::Prompt => Some(x.prompt.to_string()),
            SemanticTarget::Reference => x.reference.filter(|v| !v.is_null()).map(value_text),
            SemanticTarget::Outcome => x.outcome.filter(|v| !v.is_null()).map(value_text),
        };
        match text {
            Some(t) if !t.trim().is_empty() => Ok(t),
            _ => Err(match self.against {
                SemanticTarget::Prompt => "the prompt is empty",
                SemanticTarget::Reference => "the record has no reference",
                SemanticTarget::Outcome => "the record has no outcome",
            }),
        }
    }

    fn cosine_score(&self, cos: f64) -> Score {
        let s = if cos <= self.floor {
            0.0
        } else {
            ((cos - self.floor) / (1.0 - self.floor)).min(1.0)
        };
        Score::value(s)
    }

    fn score_batch(&self, inputs: &[ScoreInput<'_>], applies: &[bool]) -> Vec<Score> {
        let mut scores = vec![Score::Value(0.0); inputs.len()];
        // texts: applicable completions, then the distinct targets
        let mut texts: Vec<String> = Vec::new();
        let mut target_index: HashMap<String, usize> = HashMap::new();
        let mut jobs: Vec<(usize, usize, usize)> = Vec::new(); // (input, completion text, target text)
        let mut targets = Vec::new();
        for (i, x) in inputs.iter().enumerate() {
            if !applies[i] {
                continue;
            }
            match self.target(x) {
                Ok(t) => {
                    texts.push(x.completion.to_string());
                    let c = texts.len() - 1;
                    targets.push((i, c, t));
                }
                Err(why) => scores[i] = Score::unscorable(why),
            }
        }
        for (i, c, t) in targets {
            let ti = match target_index.get(&t) {
                Some(&k) => k,
                None => {
                    texts.push(t.clone());
                    target_index.insert(t, texts.len() - 1);
                    texts.len() - 1
                }
            };
            jobs.push((i, c, ti));
        }
        if jobs.is_empty() {
            return scores;
        }
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        match self.embedder.embed(&refs) {
            Ok(vecs) if vecs.len() == texts.len() => {
                for (i, c, t) in jobs {
                    let cos = crate::rewards::semantic::cosine(&vecs[c], &vecs[t]);
                    scores[i] = self.cosine_score(f64::from(cos));
                }
            }
            Ok(vecs) => {
                let why = format!(
                    "embedder returned {} vectors for {} texts",
                    vecs.len(),
                    texts.len()
                );
                for (i, _, _) in jobs {
                    scores[i] = Score::unscorable(why.clone());
                }
            }
            Err(e) => {
                for (i, _, _) in jobs {
                    scores[i] = Score::unscorable(format!("embedder failed: {e}"));
                }
            }
        }
        scores
    }
}

/// Judges every group of applicable inputs; returns the scores and the retries.
fn judge_batch(
    backend: &dyn JudgeBackend,
    spec: &JudgeReward,
    inputs: &[ScoreInput<'_>],
    applies: &[bool],
) -> (Vec<Score>, u64) {
    let mut scores = vec![Score::Value(0.0); inputs.len()];
    let mut retries = 0u64;
    // groups in order of first appearance
    let mut groups: Vec<(usize, Vec<usize>)> = Vec::new();
    for (i, x) in inputs.iter().enumerate() {
        if !applies[i] {
            continue;
        }
        match groups.iter_mut().find(|(g, _)| *g == x.group) {
            Some((_, members)) => members.push(i),
            None => groups.push((x.group, vec![i])),
        }
    }
    for (_, members) in groups {
        let first = &inputs[members[0]];
        let evidence = match spec.against {
            JudgeAgainst::None => Ok(None),
            JudgeAgainst::Reference => first
                .reference
                .filter(|v| !v.is_null())
                .map(Some)
                .ok_or("the record has no reference for the judge"),
            JudgeAgainst::Outcomes => first
                .outcome
                .filter(|v| !v.is_null())
                .map(Some)
                .ok_or("the record has no outcome for the judge"),
        };
        let evidence = match evidence {
            Ok(e) => e,
            Err(why) => {
                for &i in &members {
                    scores[i] = Score::unscorable(why);
                }
                continue;
            }
        };
        let completions: Vec<&str> = members.iter().map(|&i| inputs[i].completion).collect();
        match judge_group(backend, spec, first.prompt, &completions, evidence) {
            Ok(o) if o.scores.len() == members.len() => {
                retries += u64::from(o.retries);
                for (k, &i) in members.iter().enumerate() {
                    scores[i] = o.scores[k].clone();
                }
            }
            Ok(o) => {
                retries += u64::from(o.retries);
                let why = format!(
                    "judge returned {} scores for {} completions",
                    o.scores.len(),
                    members.len()
                );
                for &i in &members {
                    scores[i] = Score::unscorable(why.clone());
                }
            }
            Err(e) => {
                for &i in &members {
                    scores[i] = Score::unscorable(format!("judge failed: {e}"));
                }
            }
        }
    }
    (scores, retries)
}
