//! Every reward kind through `RewardSet` (spec options → scorers), with hand-computed values.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use runner::engine::chat::Message;
use runner::rewards::judge_client::JudgeBackend;
use runner::rewards::set::{
    RewardContext, RewardSet, ScoreInput, Scored, SentenceEmbedder, NO_TASK,
};
use runner::rewards::Score;
use runner::spec::Experiment;
use serde_json::{json, Map, Value};

/// An owned input row.
#[derive(Clone, Default)]
struct Row {
    prompt: String,
    completion: String,
    reference: Option<Value>,
    task: Option<String>,
    record: Map<String, Value>,
    group: usize,
    outcome: Option<Value>,
}

fn row(completion: &str) -> Row {
    Row {
        completion: completion.into(),
        ..Row::default()
    }
}

impl Row {
    fn reference(mut self, r: Value) -> Row {
        self.reference = Some(r);
        self
    }
    fn task(mut self, t: &str) -> Row {
        self.task = Some(t.into());
        self
    }
    fn prompt(mut self, p: &str) -> Row {
        self.prompt = p.into();
        self
    }
    fn record(mut self, r: Value) -> Row {
        self.record = r.as_object().cloned().unwrap_or_default();
        self
    }
    fn group(mut self, g: usize) -> Row {
        self.group = g;
        self
    }
    fn input(&self) -> ScoreInput<'_> {
        ScoreInput {
            prompt: &self.prompt,
            completion: &self.completion,
            reference: self.reference.as_ref(),
            task: self.task.as_deref(),
            record: &self.record,
            group: self.group,
            outcome: self.outcome.as_ref(),
        }
    }
}

fn spec(yaml: &str) -> Experiment {
    serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("test spec: {e}\n{yaml}"))
}

fn build(yaml: &str) -> RewardSet {
    RewardSet::from_spec(&spec(yaml), &RewardContext::default())
        .unwrap_or_else(|e| panic!("from_spec: {e}"))
}

fn score(set: &RewardSet, rows: &[Row]) -> Scored {
    let inputs: Vec<ScoreInput<'_>> = rows.iter().map(Row::input).collect();
    set.score(&inputs).unwrap_or_else(|e| panic!("score: {e}"))
}

fn values(s: &Scored, name: &str) -> Vec<Option<f64>> {
    s.per_reward[name].iter().map(Score::as_f64).collect()
}

fn assert_close(got: &[Option<f64>], want: &[Option<f64>]) {
    assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
    for (g, w) in got.iter().zip(want) {
        match (g, w) {
            // 1e-6: the semantic reward's cosines are f32
            (Some(a), Some(b)) => assert!((a - b).abs() < 1e-6, "{got:?} vs {want:?}"),
            (None, None) => {}
            _ => panic!("{got:?} vs {want:?}"),
        }
    }
}

fn totals(s: &Scored) -> Vec<Option<f64>> {
    s.total.iter().map(Score::as_f64).collect()
}

// ------------------------------------------------------------------------------------------
// json
// ------------------------------------------------------------------------------------------

const JSON_SPEC: &str = r#"
rewards:
  strict:
    kind: json
    required_fields: [sentiment, score]
    allowed_values: {sentiment: [positivo, negativo], category: [a, b]}
  tolerant:
    kind: json
    parser: tolerant
    weight: 0
    required_fields: [sentiment, score]
    allowed_values: {sentiment: [positivo, negativo], category: [a, b]}
"#;

#[test]
fn json_strict_is_the_spec_default_and_fields_map() {
    let set = build(JSON_SPEC);
    let rows = [
        row(r#"{"sentiment": "positivo", "score": 4.5}"#),
        row(r#"{"sentiment": "feliz", "score": 4.5}"#),
        row(r#"{"sentiment": "positivo", "score": 4,5}"#),
        row(r#"{"sentiment": "negativo", "score": 1, "category": "c"}"#),
        row("nada aqui"),
    ];
    let s = score(&set, &rows);
    // fields: sentiment (required enum), score (required, any type), category (optional enum)
    // 0.2 + 0.8·schema: 1 → 1.0; ½ → 0.6; ⅔ → 0.2 + 0.8·2/3
    let third = 0.2 + 0.8 * 2.0 / 3.0;
    assert_close(
        &values(&s, "strict"),
        &[Some(1.0), Some(0.6), Some(0.0), Some(third), Some(0.0)],
    );
    assert_close(
        &values(&s, "tolerant"),
        &[Some(1.0), Some(0.6), Some(1.0), Some(third), Some(0.0)],
    );
    // total = 1·strict + (weight 0: tolerant left out)
    assert_close(&totals(&s), &values(&s, "strict"));
    assert_eq!(
        s.parsed["tolerant"][2],
        Some(json!({"sentiment": "positivo", "score": 4.5}))
    );
    assert_eq!(s.parsed["strict"][2], None);
    assert_eq!(s.parsed["strict"][4], None);
    assert_eq!(set.json_names(), vec!["strict", "tolerant"]);
    assert_eq!(s.names, vec!["strict", "tolerant"]);
}

#[test]
fn json_reference_only_with_reference_fields() {
    let set = build(
        r#"
rewards:
  r:
    kind: json
    required_fields: [sentiment]
    reference_fields: [sentiment]
    reference_weight: 0.3
  plain:
    kind: json
    weight: 0
    required_fields: [sentiment]
"#,
    );
    let reference = json!("{\"sentiment\": \"negativo\"}");
    let rows = [
        row(r#"{"sentiment": "positivo"}"#).reference(reference.clone()),
        row(r#"{"sentiment": "NEGATIVO"}"#).reference(reference.clone()),
        row(r#"{"sentiment": "positivo"}"#),
        // a reference that is no JSON object: unscorable for the comparing reward only
        row(r#"{"sentiment": "positivo"}"#).reference(json!("texto livre")),
    ];
    let s = score(&set, &rows);
    // 0.2 + 0.5·schema + 0.3·reference; without a reference 0.2 + 0.8·schema
    assert_close(&values(&s, "r"), &[Some(0.7), Some(1.0), Some(1.0), None]);
    assert_close(
        &values(&s, "plain"),
        &[Some(1.0), Some(1.0), Some(1.0), Some(1.0)],
    );
    // the weighted reward is unscorable → the total is too
    assert!(s.total[3].is_unscorable());
}

// ------------------------------------------------------------------------------------------
// format
// ------------------------------------------------------------------------------------------

#[test]
fn format_searches_with_one_line_and_relaxed() {
    let set = build(
        r#"
rewards:
  fmt:
    kind: format
    regex: 'Answer:\s*-?\d+'
    relaxed_regex: '(?i)answer'
    relaxed_score: 0.25
    one_line: true
  any_line:
    kind: format
    weight: 0
    regex: 'Answer:\s*-?\d+'
"#,
    );
    let rows = [
        row("Answer: 42"),
        row("steps\nAnswer: 42"),
        row("the answer: none"),
        row("42"),
        row(""),
    ];
    let s = score(&set, &rows);
    assert_close(
        &values(&s, "fmt"),
        &[Some(1.0), Some(0.25), Some(0.25), Some(0.0), Some(0.0)],
    );
    assert_close(
        &values(&s, "any_line"),
        &[Some(1.0), Some(1.0), Some(0.0), Some(0.0), Some(0.0)],
    );
    let bad = RewardSet::from_spec(
        &spec("rewards: {f: {kind: format, regex: '('}}"),
        &RewardContext::default(),
    );
    let msg = bad.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(msg.contains("rewards.f") && msg.contains("regex"), "{msg}");
}

// ------------------------------------------------------------------------------------------
// quality
// ------------------------------------------------------------------------------------------

#[test]
fn quality_window_chars_and_leaks() {
    let set = build(
        r#"
rewards:
  q:
    kind: quality
    min_words: 5
    max_words: 10
    min_chars: 10
    max_chars: 100
    leak_patterns: ['(?i)^obs\b']
    leak_penalty: 0.25
"#,
    );
    let p = "Escreva uma notificação para Ana.";
    let eight = "Ana, seu carrinho ainda espera por você hoje";
    let rows = [
        row(eight).prompt(p),
        row("Ana seu carrinho ainda espera por você hoje com frete grátis garantido").prompt(p),
        row(&format!("{eight}\nObs: responda logo")).prompt(p),
        row("Oi Ana").prompt(p),
        row(&"a".repeat(101)).prompt(p),
        row("Note: Ana, seu carrinho ainda espera por você").prompt(p),
    ];
    let s = score(&set, &rows);
    assert_close(
        &values(&s, "q"),
        &[
            Some(1.0),                // 8 words in [5, 10]
            Some(10.0 / 12.0),        // 12 words: 10/12
            Some(10.0 / 11.0 - 0.25), // 11 words, one pattern leak
            Some(0.0),                // 6 chars < min_chars
            Some(0.0),                // 101 chars > max_chars
            Some(0.75),               // 8 words, the library's meta-prefix leak "Note:"
        ],
    );
}

// ------------------------------------------------------------------------------------------
// keywords
// ------------------------------------------------------------------------------------------

#[test]
fn keywords_groups_field_and_saturation() {
    let set = build(
        r#"
rewards:
  kw:
    kind: keywords
    groups: [[recomendo, sugiro], [estoque]]
    groups_field: key_numbers
  sat:
    kind: keywords
    weight: 0
    groups: [[alfa], [beta], [gama]]
    saturate_at: 2
"#,
    );
    let rec = json!({"key_numbers": ["14,1%", "R$ 60.181,00"]});
    let rows = [
        row("Recomendo repor o estoque; pedidos subiram 14,1%.").record(rec.clone()),
        row("Sugiro atenção: receita de R$ 60.181,00 e 14,1% a mais.").record(rec.clone()),
        row("alfa e beta"),
        row("só alfa").record(rec),
    ];
    let s = score(&set, &rows);
    // 4 groups (2 static + 2 from the record): 3/4, 3/4; no field → unscorable; 0/4
    assert_close(
        &values(&s, "kw"),
        &[Some(0.75), Some(0.75), None, Some(0.0)],
    );
    // saturate_at 2 of 3 groups
    assert_close(
        &values(&s, "sat"),
        &[Some(0.0), Some(0.0), Some(1.0), Some(0.5)],
    );
    let reason = format!("{:?}", s.per_reward["kw"][2]);
    assert!(reason.contains("key_numbers"), "{reason}");
}

// ------------------------------------------------------------------------------------------
// answer
// ------------------------------------------------------------------------------------------

#[test]
fn answer_extract_modes_and_bad_references() {
    let set = build(
        r#"
rewards:
  ans:
    kind: answer
    extract: regex
    regex: 'Answer:\s*(-?\d+)'
  last:
    kind: answer
    weight: 0
  boxed:
    kind: answer
    weight: 0
    extract: boxed
    tolerance: 0.01
"#,
    );
    let rows = [
        row("6*9 = 54\nAnswer: 54").reference(json!("54")),
        row("Answer: 53, no wait 54").reference(json!("54")),
        row("no idea").reference(json!("54")),
        row("Answer: 54").reference(json!(54)),
        row("Answer: 54 \\boxed{3.1415}").reference(json!("3.14")),
        row("Answer: 54"),
        row("Answer: 54").reference(json!("abc")),
    ];
    let s = score(&set, &rows);
    assert_close(
        &values(&s, "ans"),
        &[
            Some(1.0),
            Some(0.0),
            Some(0.0),
            Some(1.0),
            Some(0.0),
            None,
            None,
        ],
    );
    assert_close(
        &values(&s, "last"),
        &[
            Some(1.0),
            Some(1.0),
            Some(0.0),
            Some(1.0),
            Some(0.0),
            None,
            None,
        ],
    );
    assert_close(
        &values(&s, "boxed"),
        &[
            Some(0.0),
            Some(0.0),
            Some(0.0),
            Some(0.0),
            Some(1.0),
            None,
            None,
        ],
    );
    let err = RewardSet::from_spec(
        &spec("rewards: {a: {kind: answer, extract: regex}}"),
        &RewardContext::default(),
    )
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(err.contains("needs `regex`"), "{err}");
}

// ------------------------------------------------------------------------------------------
// sql
// ------------------------------------------------------------------------------------------

fn commerce_db() -> Option<&'static str> {
    let p = concat!(env!("CARGO_MANIFEST_DIR"), "/experiments/data/commerce.db");
    if std::path::Path::new(p).exists() {
        Some(p)
    } else {
        eprintln!("skipping: {p} is absent");
        None
    }
}

#[test]
fn sql_reference_query_and_expected_rows() {
    let Some(db) = commerce_db() else { return };
    let set = build(&format!(
        r#"
rewards:
  by_query:
    kind: sql
    database: '{db}'
    runs_score: 0.2
  by_rows:
    kind: sql
    weight: 0
    database: '{db}'
    expected_rows_field: expected_rows
"#
    ));
    let rec = json!({"id": "sql-1", "expected_rows": [[60]]});
    let q = json!("SELECT COUNT(*) FROM customers;");
    let rows = [
        row("```sql\nSELECT count(*) FROM customers;\n```")
            .reference(q.clone())
            .record(rec.clone()),
        row("SELECT 61").reference(q.clone()).record(rec.clone()),
        row("DELETE FROM customers")
            .reference(q.clone())
            .record(rec.clone()),
        row("SELECT 60")
            .reference(json!("SELECT nope FROM nowhere"))
            .record(rec),
        row("SELECT 60").record(json!({"id": "sql-2"})),
    ];
    let s = score(&set, &rows);
    assert_close(
        &values(&s, "by_query"),
        &[Some(1.0), Some(0.2), Some(0.0), None, None],
    );
    assert_close(
        &values(&s, "by_rows"),
        &[Some(1.0), Some(0.2), Some(0.0), Some(1.0), None],
    );
    let reason = format!("{:?}", s.per_reward["by_query"][3]);
    assert!(
        reason.contains("`sql-1`") && reason.contains("reference"),
        "{reason}"
    );
    let reason = format!("{:?}", s.per_reward["by_rows"][4]);
    assert!(
        reason.contains("`sql-2`") && reason.contains("expected rows"),
        "{reason}"
    );
}

// ------------------------------------------------------------------------------------------
// semantic (a fake embedder: the real one is helper B's and needs model files)
// ------------------------------------------------------------------------------------------

struct TableEmbedder {
    calls: AtomicUsize,
    fail: bool,
}

impl SentenceEmbedder for TableEmbedder {
    fn embed(&self, texts: &[&str]) -> runner::Result<Vec<Vec<f32>>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.fail {
            return Err(runner::Error::Other("out of memory".into()));
        }
        Ok(texts
            .iter()
            .map(|t| match *t {
                "a" => vec![1.0, 0.0],
                "b" => vec![0.0, 1.0],
                "c" => vec![0.6, 0.8],
                _ => vec![-1.0, 0.0],
            })
            .collect())
    }
}

#[test]
fn semantic_cosine_floor_targets_and_shared_embedder() {
    let yaml = r#"
rewards:
  vs_ref:
    kind: semantic
    against: reference
    floor: 0.5
  vs_prompt:
    kind: semantic
    weight: 0
"#;
    let loads = AtomicUsize::new(0);
    let emb = Arc::new(TableEmbedder {
        calls: AtomicUsize::new(0),
        fail: false,
    });
    let emb2 = emb.clone();
    let loader = move |id: &str| -> runner::Result<Arc<dyn SentenceEmbedder>> {
        assert_eq!(id, "all-minilm-l6-v2");
        loads.fetch_add(1, Ordering::SeqCst);
        Ok(emb2.clone())
    };
    let set = RewardSet::from_spec_with(&spec(yaml), &RewardContext::default(), &loader)
        .unwrap_or_else(|e| panic!("{e}"));
    let rows = [
        row("a").reference(json!("c")).prompt("a"),
        row("a").reference(json!("a")).prompt("b"),
        row("a").reference(json!("b")).prompt("c"),
        row("a").prompt("a"),
        row("x").reference(json!("a")).prompt("a"),
    ];
    let s = score(&set, &rows);
    // cos(a, c) = 0.6 → (0.6 − 0.5)/(1 − 0.5) = 0.2; cos 1 → 1; cos 0 ≤ floor → 0; no reference
    // → unscorable; cos(x, a) = −1 → 0
    assert_close(
        &values(&s, "vs_ref"),
        &[Some(0.2), Some(1.0), Some(0.0), None, Some(0.0)],
    );
    // floor 0: cos(a,a) = 1, cos(a,b) = 0, cos(a,c) = 0.6, 1, cos(x,a) = −1 → 0
    assert_close(
        &values(&s, "vs_prompt"),
        &[Some(1.0), Some(0.0), Some(0.6), Some(1.0), Some(0.0)],
    );
    // one embed call per reward per batch
    assert_eq!(emb.calls.load(Ordering::SeqCst), 2);

    let failing = Arc::new(TableEmbedder {
        calls: AtomicUsize::new(0),
        fail: true,
    });
    let loader =
        move |_: &str| -> runner::Result<Arc<dyn SentenceEmbedder>> { Ok(failing.clone()) };
    let set = RewardSet::from_spec_with(&spec(yaml), &RewardContext::default(), &loader)
        .unwrap_or_else(|e| panic!("{e}"));
    let s = score(&set, &rows[..1]);
    let reason = format!("{:?}", s.per_reward["vs_ref"][0]);
    assert!(reason.contains("embedder failed"), "{reason}");
}

#[test]
fn semantic_embedder_loaded_once_per_id() {
    let yaml = r#"
rewards:
  s1: {kind: semantic}
  s2: {kind: semantic, against: reference}
  s3: {kind: semantic, embedder: other-model}
"#;
    let ids = Mutex::new(Vec::new());
    let loader = |id: &str| -> runner::Result<Arc<dyn SentenceEmbedder>> {
        ids.lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(id.to_string());
        Ok(Arc::new(TableEmbedder {
            calls: AtomicUsize::new(0),
            fail: false,
        }))
    };
    RewardSet::from_spec_with(&spec(yaml), &RewardContext::default(), &loader)
        .unwrap_or_else(|e| panic!("{e}"));
    let mut got = ids.into_inner().unwrap_or_else(|e| e.into_inner());
    got.sort();
    assert_eq!(got, vec!["all-minilm-l6-v2", "other-model"]);
}

// ------------------------------------------------------------------------------------------
// judge (a fake backend; the HTTP and local backends are helper B's)
// ------------------------------------------------------------------------------------------

struct FixedJudge {
    answer: String,
    calls: AtomicUsize,
}

impl JudgeBackend for FixedJudge {
    fn complete(&self, _messages: &[Message], _max_tokens: usize) -> runner::Result<(String, u32)> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok((self.answer.clone(), 1))
    }
}

#[test]
fn judge_ranks_each_group() {
    let judge = Arc::new(FixedJudge {
        answer: "Ranking: C > A > B".into(),
        calls: AtomicUsize::new(0),
    });
    let ctx = RewardContext {
        local_judge: Some(judge.clone()),
    };
    let set = RewardSet::from_spec(
        &spec("rewards: {j: {kind: judge, rubric: 'Rank them.'}}"),
        &ctx,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let rows: Vec<Row> = (0..6)
        .map(|i| row(&format!("answer {i}")).prompt("q").group(i / 3))
        .collect();
    let s = score(&set, &rows);
    // G = 3, C > A > B: rank r → (3 − r)/2: A = 0.5, B = 0, C = 1, per group
    assert_close(
        &values(&s, "j"),
        &[
            Some(0.5),
            Some(0.0),
            Some(1.0),
            Some(0.5),
            Some(0.0),
            Some(1.0),
        ],
    );
    assert_eq!(judge.calls.load(Ordering::SeqCst), 2);
    // each call reported one retry
    assert!(s.judge_retries >= 2, "{}", s.judge_retries);
}

#[test]
fn judge_without_backend_is_a_clear_error() {
    let err = RewardSet::from_spec(
        &spec("rewards: {j: {kind: judge}}"),
        &RewardContext::default(),
    )
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(
        err.contains("rewards.j") && err.contains("endpoint") && err.contains("local engine"),
        "{err}"
    );
}

#[test]
fn judge_against_reference_needs_one() {
    let judge = Arc::new(FixedJudge {
        answer: "A > B".into(),
        calls: AtomicUsize::new(0),
    });
    let ctx = RewardContext {
        local_judge: Some(judge.clone()),
    };
    let set = RewardSet::from_spec(
        &spec("rewards: {j: {kind: judge, against: reference}}"),
        &ctx,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let s = score(&set, &[row("x"), row("y")]);
    assert!(s.per_reward["j"].iter().all(Score::is_unscorable));
    assert_eq!(judge.calls.load(Ordering::SeqCst), 0);
}

// ------------------------------------------------------------------------------------------
// composite
// ------------------------------------------------------------------------------------------

#[test]
fn composite_gate_bonus_outcome_and_nesting() {
    let set = build(
        r#"
rewards:
  fmt: {kind: format, regex: '^ok', weight: 0}
  kw: {kind: keywords, groups: [[alpha], [beta]], weight: 0}
  out: {kind: keywords, groups: [[up]], weight: 0}
  comp:
    kind: composite
    components: {kw: 0.8, fmt: 0.2}
    gate: {reward: fmt, min: 1.0, bonus: 0.1}
    outcome: {reward: out, alpha: 0.5}
  a_outer:
    kind: composite
    weight: 0
    components: {comp: 2.0}
"#,
    );
    let rows = [
        row("ok alpha up"),
        row("alpha beta up"),
        row("ok alpha beta"),
    ];
    let s = score(&set, &rows);
    // (1 − 0.5)·(0.8·kw + 0.2·fmt) + 0.5·out + bonus 0.1:
    //   "ok alpha up":   0.5·(0.4 + 0.2) + 0.5 + 0.1 = 0.9
    //   "alpha beta up": gate fmt = 0 < 1 → otherwise 0
    //   "ok alpha beta": 0.5·(0.8 + 0.2) + 0 + 0.1 = 0.6
    assert_close(&values(&s, "comp"), &[Some(0.9), Some(0.0), Some(0.6)]);
    assert_close(&values(&s, "a_outer"), &[Some(1.8), Some(0.0), Some(1.2)]);
    assert_close(&totals(&s), &[Some(0.9), Some(0.0), Some(0.6)]);
}

#[test]
fn composite_cycle_is_an_error() {
    let err = RewardSet::from_spec(
        &spec(
            r#"
rewards:
  a: {kind: composite, components: {b: 1.0}}
  b: {kind: composite, components: {a: 1.0}}
"#,
        ),
        &RewardContext::default(),
    )
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(err.contains("cycle"), "{err}");
}

// ------------------------------------------------------------------------------------------
// tasks, totals, statistics
// ------------------------------------------------------------------------------------------

#[test]
fn tasks_restrict_rewards_and_stats_leave_not_applicable_out() {
    let set = build(
        r#"
data: {task: {names: [ext, push]}}
rewards:
  e: {kind: format, regex: '^\{', tasks: [ext]}
  p: {kind: format, regex: 'oi', tasks: [push], weight: 2}
  u: {kind: answer, weight: 0}
"#,
    );
    let rows = [
        row("{x}").task("ext"),
        row("oi Ana").task("push"),
        row("tchau").task("push"),
        row("{oi}"),
    ];
    let s = score(&set, &rows);
    // not applicable: Value(0) and applies = false
    assert_close(
        &values(&s, "e"),
        &[Some(1.0), Some(0.0), Some(0.0), Some(0.0)],
    );
    assert_close(
        &values(&s, "p"),
        &[Some(0.0), Some(1.0), Some(0.0), Some(0.0)],
    );
    assert!(s.applies("e", 0) && !s.applies("e", 1) && !s.applies("e", 3));
    assert!(s.applies("p", 1) && !s.applies("p", 0));
    // u (weight 0) is unscorable everywhere (no reference) and does not touch the total;
    // the last input has no task: no weighted reward applies → 0
    assert!(s.per_reward["u"].iter().all(Score::is_unscorable));
    assert_close(&totals(&s), &[Some(1.0), Some(2.0), Some(0.0), Some(0.0)]);

    let st = s.stats();
    assert_eq!((st["e"].count, st["e"].mean), (1, Some(1.0)));
    assert_eq!((st["p"].count, st["p"].mean), (2, Some(0.5)));
    assert_eq!((st["u"].count, st["u"].unscorable), (4, 4));

    let tasks: Vec<Option<&str>> = rows.iter().map(|r| r.task.as_deref()).collect();
    let by = s.stats_by_task(&tasks);
    assert_eq!(
        by.keys().cloned().collect::<Vec<_>>(),
        vec![NO_TASK.to_string(), "ext".into(), "push".into()]
    );
    assert_eq!(
        by["ext"].keys().cloned().collect::<Vec<_>>(),
        vec!["e", "total", "u"]
    );
    assert_eq!(by["push"]["p"].mean, Some(0.5));
    assert_eq!(by["push"]["total"].mean, Some(1.0));
    assert_eq!(by["push"]["total"].count, 2);
    assert!(!by[NO_TASK].contains_key("e"));
    assert_eq!(s.total_stats().count, 4);
}

#[test]
fn unscorable_weighted_reward_makes_total_unscorable() {
    let set = build(
        r#"
rewards:
  a: {kind: answer}
  f: {kind: format, regex: 'x', weight: 0.5}
"#,
    );
    let s = score(
        &set,
        &[
            row("x 4").reference(json!("4")),
            row("x 4").reference(json!("n/a")),
        ],
    );
    assert_close(&totals(&s), &[Some(1.5), None]);
    let reason = format!("{:?}", s.total[1]);
    assert!(reason.contains("reward `a`"), "{reason}");
}
