//! `runner score`: the table, the output rows, null for unscorable, the parser comparison, and
//! error messages for bad input (fixtures in tests/fixtures/score/).

use assert_cmd::Command;
use predicates::prelude::*;
use serde_json::Value;

const SPEC: &str = "tests/fixtures/score/spec.yaml";
const ROWS: &str = "tests/fixtures/score/completions.jsonl";

fn runner() -> Command {
    let mut c = Command::cargo_bin("runner").unwrap_or_else(|e| panic!("{e}"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c.arg("score");
    c
}

fn stdout_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The table line of `reward` and `task`, split into cells.
fn table_line(table: &str, reward: &str, task: &str) -> Vec<String> {
    table
        .lines()
        .map(|l| l.split_whitespace().map(String::from).collect::<Vec<_>>())
        .find(|c| c.len() == 6 && c[0] == reward && c[1] == task)
        .unwrap_or_else(|| panic!("no line for {reward}/{task} in\n{table}"))
}

#[test]
fn prints_the_per_reward_per_task_table() {
    let out = runner()
        .args([SPEC, "--input", ROWS])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(out.status.success(), "{out:?}");
    let t = stdout_of(&out);
    assert!(t.starts_with("reward"), "{t}");
    // extraction: 1.0 (PT-BR decimal, tolerant), 0.6 (bad enum), 0.0 (no JSON) → mean 0.5333
    assert_eq!(
        table_line(&t, "extraction", "all"),
        ["extraction", "all", "0.5333", "0.5033", "0", "3"]
    );
    assert_eq!(table_line(&t, "extraction", "extraction")[2], "0.5333");
    // correct: m1 right, m2's reference is not a number → unscorable, left out of the mean
    assert_eq!(
        table_line(&t, "correct", "math"),
        ["correct", "math", "1.0000", "-", "1", "2"]
    );
    // total: 1 + 0.6 + 0 + 1 over 4 scorable, 1 unscorable
    assert_eq!(
        table_line(&t, "total", "all"),
        ["total", "all", "0.6500", "0.4726", "1", "5"]
    );
    assert_eq!(
        table_line(&t, "total", "math"),
        ["total", "math", "1.0000", "-", "1", "2"]
    );
}

#[test]
fn writes_rows_with_rewards_null_and_parsed() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("scored.jsonl");
    let out = runner()
        .args([SPEC, "--input", ROWS, "--output"])
        .arg(&path)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(out.status.success(), "{out:?}");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}"));
    let rows: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(rows.len(), 5, "the blank input line is skipped");
    // the input row is kept
    assert_eq!(rows[0]["id"], "e1");
    assert_eq!(rows[0]["task"], "extraction");
    // rewards: only the rewards that apply to the row's task
    assert_eq!(rows[0]["rewards"], serde_json::json!({"extraction": 1.0}));
    assert_eq!(
        rows[0]["parsed"]["extraction"],
        serde_json::json!({"sentiment": "positivo", "score": 4.5})
    );
    let e2 = rows[1]["rewards"]["extraction"]
        .as_f64()
        .unwrap_or(f64::NAN);
    assert!((e2 - 0.6).abs() < 1e-12, "{e2}");
    // no JSON: a score of 0, parsed null
    assert_eq!(rows[2]["rewards"]["extraction"], 0.0);
    assert_eq!(rows[2]["parsed"]["extraction"], Value::Null);
    // math rows: task from the rule on the user message; no json reward applies
    assert_eq!(rows[3]["rewards"], serde_json::json!({"correct": 1.0}));
    assert_eq!(rows[3]["parsed"], serde_json::json!({}));
    // unscorable: null, with the reason beside it
    assert_eq!(rows[4]["rewards"], serde_json::json!({"correct": null}));
    let why = rows[4]["unscorable"]["correct"]
        .as_str()
        .unwrap_or_default();
    assert!(why.contains("not a number"), "{why}");
    assert!(rows[0].get("unscorable").is_none());
}

#[test]
fn compares_the_parsers() {
    let out = runner()
        .args([SPEC, "--input", ROWS, "--compare-parser", "strict"])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(out.status.success(), "{out:?}");
    let t = stdout_of(&out);
    // over the 3 rows the json reward applies to
    assert!(
        t.contains("parsers over 3 completions: both 1, tolerant only 1, strict only 0, neither 1"),
        "{t}"
    );
    assert!(t.contains("tolerant repairs: pt_decimal 1"), "{t}");
    assert!(t.contains("tolerant_only line 1 e1"), "{t}");
    assert!(t.contains("neither line 3 e3"), "{t}");

    let out = runner()
        .args([
            SPEC,
            "--input",
            ROWS,
            "--compare-parser",
            "strict",
            "--json",
        ])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(v["compare_parser"]["tolerant_only"], 1);
    assert_eq!(v["compare_parser"]["neither"], 1);
    assert_eq!(v["rewards"]["extraction"]["count"], 3);
    assert_eq!(v["total"]["unscorable"], 1);
    assert_eq!(v["by_task"]["math"]["correct"]["unscorable"], 1);
}

#[test]
fn bad_rows_are_reported_with_line_numbers() {
    runner()
        .args([SPEC, "--input", "tests/fixtures/score/bad.jsonl"])
        .assert()
        .code(1)
        .stderr(
            predicate::str::contains("bad.jsonl:2: invalid JSON")
                .and(predicate::str::contains("bad.jsonl:3: not a JSON object"))
                .and(predicate::str::contains(
                    "bad.jsonl:4: `completion` must be a string, found a number",
                ))
                .and(predicate::str::contains(
                    "bad.jsonl:5: no `completion` field (use --completion-field",
                ))
                .and(predicate::str::contains("4 bad rows; nothing was scored"))
                .and(predicate::str::contains(":1:").not()),
        );
    runner()
        .args([SPEC, "--input", "tests/fixtures/score/nope.jsonl"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("nope.jsonl"));
}

#[test]
fn one_reward_kind_with_defaults() {
    let out = runner()
        .args(["--reward", "json", "--input", ROWS])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(out.status.success(), "{out:?}");
    let t = stdout_of(&out);
    // default json reward (strict parser, no fields): e2 parses → 1; e1 (4,5), e3, "54"?, "4"?
    // "54" and "4" are JSON numbers, not objects → 0. Mean 1/5.
    assert_eq!(
        table_line(&t, "json", "all"),
        ["json", "all", "0.2000", "0.4472", "0", "5"]
    );
    runner()
        .args(["--reward", "format", "--input", ROWS])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "--reward format: a `format` reward has no default for `regex`",
        ));
    runner()
        .args(["--reward", "sql", "--input", ROWS])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no default for `database`"));
    runner()
        .args(["--reward", "jsn", "--input", ROWS])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("unknown reward kind `jsn`"));
    runner()
        .args(["--reward", "judge", "--input", ROWS])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("endpoint"));
    runner()
        .args([SPEC, "--reward", "json", "--input", ROWS])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("cannot be used with"));
}

/// The project's example extraction data, its reference answers as completions.
#[test]
fn example_data_with_reference_completions() {
    let spec = "experiments/v4_1.yaml";
    let data = "experiments/data/pairs/eval.jsonl";
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    if !root.join(spec).exists() || !root.join(data).exists() {
        eprintln!("skipping: {spec} or {data} absent");
        return;
    }
    let out = runner()
        .args([spec, "--input", data, "--completion-field", "reference"])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(out.status.success(), "{out:?}");
    let t = stdout_of(&out);
    eprintln!("{t}");
    // every reference extraction is a perfect JSON answer
    assert_eq!(
        table_line(&t, "extraction", "extraction"),
        ["extraction", "extraction", "1.0000", "0.0000", "0", "10"]
    );
    for (reward, task) in [
        ("sql_qa", "sql_qa"),
        ("insights", "insights"),
        ("push", "push"),
    ] {
        let l = table_line(&t, reward, task);
        assert_eq!((l[4].as_str(), l[5].as_str()), ("0", "10"), "{l:?}");
    }
    for task in ["extraction", "sql_qa", "insights", "push"] {
        assert_eq!(table_line(&t, "total", task)[5], "10");
    }
}
