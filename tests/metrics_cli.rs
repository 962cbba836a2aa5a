//! `runner metrics` through the binary: values against the Python references for
//! `fixtures/metrics/samples.jsonl` (made by `fixtures/metrics/make_fixtures.py`), grouping,
//! the text table, and errors with line numbers / causes.

use assert_cmd::Command;
use serde_json::Value;

const SAMPLES: &str = "tests/fixtures/metrics/samples.jsonl";

fn runner() -> Command {
    let mut c = Command::cargo_bin("runner").unwrap_or_else(|e| panic!("{e}"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c.arg("metrics");
    c
}

fn cli_reference() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/metrics/reference.json"
    );
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v["cli"].clone()
}

/// `runner metrics --json ARGS` → the report.
fn json_report(args: &[&str]) -> Value {
    let out = runner()
        .args(["--input", SAMPLES, "--json"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}: {out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

fn close(got: &Value, want: &Value, what: &str) {
    let (g, w) = (got.as_f64().unwrap(), want.as_f64().unwrap());
    assert!((g - w).abs() <= 1e-6, "{what}: {g} vs {w}");
}

#[test]
fn values_match_the_python_references() {
    let want = cli_reference();
    let r = json_report(&["--metric", "self-bleu"]);
    close(&r["values"]["self-bleu"], &want["self_bleu"], "self-bleu");
    assert_eq!(r["samples"], 10);
    assert!(r["groups"].as_array().unwrap().is_empty());

    let r = json_report(&["--metric", "self-bleu", "--n", "2", "--group-by", "prompt"]);
    close(
        &r["values"]["self-bleu"],
        &want["self_bleu_n2_by_prompt"],
        "self-bleu n=2 by prompt",
    );
    let groups = r["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 3);
    assert_eq!(
        (groups[0]["key"].as_str(), groups[0]["samples"].as_u64()),
        (Some("p1"), Some(4))
    );

    let r = json_report(&["--metric", "self-bleu-sacre", "--group-by", "prompt"]);
    close(
        &r["values"]["self-bleu-sacre"],
        &want["self_bleu_sacre_by_prompt"],
        "sacre by prompt",
    );

    let r = json_report(&["--metric", "distinct-2"]);
    close(
        &r["values"]["distinct-2"],
        &want["distinct_2"]["pooled"],
        "distinct-2",
    );
    close(
        &r["values"]["distinct-2/per-sentence"],
        &want["distinct_2"]["per_sentence"],
        "distinct-2 per sentence",
    );

    let r = json_report(&["--metric", "pass@k", "--k", "1,2", "--group-by", "prompt"]);
    close(&r["values"]["pass@1"], &want["pass_at_1"], "pass@1");
    close(&r["values"]["pass@2"], &want["pass_at_2"], "pass@2");

    // Precomputed embeddings: no model needed.
    let r = json_report(&["--metric", "semantic"]);
    close(&r["values"]["semantic"], &want["semantic"], "semantic");
    let r = json_report(&["--metric", "semantic", "--min-quality", "0.5"]);
    close(
        &r["values"]["semantic"],
        &want["semantic_min_quality_0_5"],
        "effective",
    );
    assert_eq!(r["samples"], 7);
}

#[test]
fn prints_a_table_per_group() {
    let out = runner()
        .args([
            "--input",
            SAMPLES,
            "--metric",
            "distinct-2",
            "--group-by",
            "prompt",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let t = String::from_utf8_lossy(&out.stdout);
    assert!(t.starts_with("distinct-2 over 10 samples"), "{t}");
    assert!(t.contains("mean over 3 groups"), "{t}");
    let p1 = t
        .lines()
        .find(|l| l.starts_with("p1 "))
        .unwrap_or_else(|| panic!("{t}"));
    assert_eq!(p1.split_whitespace().nth(1), Some("4"), "{p1}");
}

fn fails_with(args: &[&str], needles: &[&str]) {
    let out = runner().args(args).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    for n in needles {
        assert!(err.contains(n), "{args:?}: `{n}` not in\n{err}");
    }
}

#[test]
fn malformed_lines_are_reported_with_line_numbers() {
    fails_with(
        &[
            "--input",
            "tests/fixtures/metrics/malformed.jsonl",
            "--metric",
            "distinct-2",
        ],
        &[
            "5 malformed line(s)",
            "malformed.jsonl:2: invalid JSON",
            "malformed.jsonl:4: `text` must be a string, found a number",
            "malformed.jsonl:5: no `text` field",
            "malformed.jsonl:6: not a JSON object",
            "malformed.jsonl:7: `correct` must be true/false or 1/0",
        ],
    );
}

#[test]
fn degenerate_inputs_name_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    let one = dir.path().join("one.jsonl");
    std::fs::write(&one, "{\"text\": \"only one\", \"prompt\": \"p\"}\n").unwrap();
    let one = one.to_str().unwrap();
    fails_with(
        &["--input", one, "--metric", "self-bleu"],
        &["at least 2 texts"],
    );
    fails_with(&["--input", one, "--metric", "distinct-3"], &["no n-gram"]);
    fails_with(
        &[
            "--input",
            SAMPLES,
            "--metric",
            "pass@k",
            "--k",
            "5",
            "--group-by",
            "prompt",
        ],
        &["group `p1`", "k = 5", "n = 4"],
    );
    fails_with(
        &["--input", SAMPLES, "--metric", "pass@k"],
        &["--group-by prompt"],
    );
    fails_with(
        &["--input", SAMPLES, "--metric", "bleu"],
        &["unknown metric `bleu`"],
    );
    let empty = dir.path().join("empty.jsonl");
    std::fs::write(&empty, "\n").unwrap();
    fails_with(
        &["--input", empty.to_str().unwrap(), "--metric", "distinct-2"],
        &["no samples"],
    );
    let blank = dir.path().join("blank.jsonl");
    std::fs::write(&blank, "{\"text\": \"\"}\n{\"text\": \" \"}\n").unwrap();
    fails_with(
        &[
            "--input",
            blank.to_str().unwrap(),
            "--metric",
            "self-bleu-sacre",
        ],
        &["all 2 texts are empty"],
    );
}
