//! Extraction cases for the tolerant JSON parser (`runner::rewards::json`), plus the example
//! completions in `experiments/data/pairs/completions_sample.jsonl`.

use std::collections::HashMap;
use std::path::PathBuf;

use runner::rewards::json::{
    compare_parsers, extract_json, parse_strict, score_json, CompareOptions, ExtractFailure,
    ExtractOptions, FieldKind, FieldSpec, JsonRewardOptions, Repair,
};
use runner::rewards::Score;
use serde_json::{json, Value};

use Repair::*;

fn extract(input: &str) -> Result<runner::rewards::json::Extracted, ExtractFailure> {
    extract_json(input, &ExtractOptions::default())
}

/// Asserts the input extracts to `want` with exactly the `repairs` (in any order).
#[track_caller]
fn ok(input: &str, want: Value, repairs: &[Repair]) {
    let got = match extract(input) {
        Ok(e) => e,
        Err(e) => panic!("{input:?}: expected an object, got {e}"),
    };
    assert_eq!(Value::Object(got.value), want, "input {input:?}");
    let mut a = got.repairs.clone();
    let mut b = repairs.to_vec();
    a.sort();
    b.sort();
    assert_eq!(a, b, "repairs of {input:?}");
}

#[track_caller]
fn fails(input: &str, check: impl Fn(&ExtractFailure) -> bool) {
    match extract(input) {
        Ok(e) => panic!("{input:?}: expected a failure, got {:?}", e.value),
        Err(f) => assert!(check(&f), "{input:?}: wrong failure {f:?}"),
    }
}

// ---- plain and PT-BR decimals ---------------------------------------------------------------

#[test]
fn c01_plain_single_line() {
    ok(r#"{"a": 1, "b": "x"}"#, json!({"a": 1, "b": "x"}), &[]);
}

#[test]
fn c02_pt_decimal_single_line() {
    ok(
        r#"{"sentiment_score": 4,5}"#,
        json!({"sentiment_score": 4.5}),
        &[PtDecimal],
    );
}

#[test]
fn c03_pt_decimal_pretty_printed() {
    ok(
        "{\n  \"sentiment\": \"positivo\",\n  \"sentiment_score\": 4,5,\n  \"ok\": true\n}",
        json!({"sentiment": "positivo", "sentiment_score": 4.5, "ok": true}),
        &[PtDecimal],
    );
}

#[test]
fn c04_negative_pt_decimal() {
    ok(
        r#"{"delta": -0,5, "b": -12,25}"#,
        json!({"delta": -0.5, "b": -12.25}),
        &[PtDecimal],
    );
}

#[test]
fn c05_pt_decimal_inside_string_untouched() {
    ok(
        r#"{"nota": "4,5 de 5", "x": 4,5}"#,
        json!({"nota": "4,5 de 5", "x": 4.5}),
        &[PtDecimal],
    );
    ok(r#"{"nota": "4,5"}"#, json!({"nota": "4,5"}), &[]);
}

#[test]
fn c06_integer_array_untouched() {
    ok(r#"{"ids": [1,2,3]}"#, json!({"ids": [1, 2, 3]}), &[]);
    ok(r#"{"ids": [4, 5]}"#, json!({"ids": [4, 5]}), &[]);
}

#[test]
fn c07_integer_members_untouched() {
    ok(r#"{"a":1,"b":2}"#, json!({"a": 1, "b": 2}), &[]);
}

#[test]
fn c08_pt_decimal_then_more_keys() {
    ok(
        r#"{"x": 3,5, "y": 2, "z": "ok"}"#,
        json!({"x": 3.5, "y": 2, "z": "ok"}),
        &[PtDecimal],
    );
}

#[test]
fn c09_array_and_pt_decimal_together() {
    ok(
        r#"{"xs": [1,2], "score": 3,5}"#,
        json!({"xs": [1, 2], "score": 3.5}),
        &[PtDecimal],
    );
}

#[test]
fn c10_nested_object_pt_decimal() {
    ok(
        r#"{"outer": {"inner": 2,5, "n": [7,8]}, "k": 1}"#,
        json!({"outer": {"inner": 2.5, "n": [7, 8]}, "k": 1}),
        &[PtDecimal],
    );
}

#[test]
fn c11_objects_inside_arrays() {
    ok(
        r#"{"items": [{"p": 1,5}, {"p": 2}]}"#,
        json!({"items": [{"p": 1.5}, {"p": 2}]}),
        &[PtDecimal],
    );
}

#[test]
fn c12_pt_decimal_in_array_is_not_converted() {
    // documented limit: inside arrays a comma between digits is always a separator
    ok(
        r#"{"xs": [4,5], "y": 1,0}"#,
        json!({"xs": [4, 5], "y": 1.0}),
        &[PtDecimal],
    );
}

#[test]
fn c13_pt_decimal_last_member_compact() {
    ok(
        r#"{"a":"b","x":0,5}"#,
        json!({"a": "b", "x": 0.5}),
        &[PtDecimal],
    );
}

#[test]
fn c14_pt_thousands_lookalike_reads_as_decimal() {
    // `"x": 1,234` is ambiguous; in a value position the PT reading (1.234) is taken
    ok(r#"{"x": 1,234}"#, json!({"x": 1.234}), &[PtDecimal]);
}

// ---- fences ------------------------------------------------------------------------------

#[test]
fn c15_fence_closed_with_language_tag() {
    ok("```json\n{\"a\": 1}\n```", json!({"a": 1}), &[Fence]);
}

#[test]
fn c16_fence_closed_without_tag() {
    ok("```\n{\"a\": 1}\n```", json!({"a": 1}), &[Fence]);
}

#[test]
fn c17_fence_unclosed() {
    ok("```json\n{\"a\": 1}\n", json!({"a": 1}), &[Fence]);
}

#[test]
fn c18_fence_with_prose_around() {
    ok(
        "Claro! Aqui está:\n```json\n{\"a\": 2,5}\n```\nQualquer dúvida, avise.",
        json!({"a": 2.5}),
        &[Fence, PtDecimal],
    );
}

#[test]
fn c19_first_fence_without_object_skipped() {
    ok(
        "```text\nsem json aqui\n```\n```json\n{\"a\": 1}\n```",
        json!({"a": 1}),
        &[Fence],
    );
}

// ---- prose -------------------------------------------------------------------------------

#[test]
fn c20_prose_before() {
    ok("Segue o JSON: {\"a\": 1}", json!({"a": 1}), &[Prose]);
}

#[test]
fn c21_prose_after() {
    ok("{\"a\": 1}\nEspero ter ajudado!", json!({"a": 1}), &[Prose]);
}

#[test]
fn c22_prose_before_and_after_with_pt_note() {
    ok(
        "Resultado: {\"nota\": 4,5} (nota: 0,0 = péssimo, 5,0 = excelente)",
        json!({"nota": 4.5}),
        &[Prose, PtDecimal],
    );
}

#[test]
fn c23_braces_in_prose_before_object() {
    ok(
        "Segui o formato {chave: valor}:\n{\"a\": 1}",
        json!({"a": 1}),
        &[Prose],
    );
}

#[test]
fn c24_unbalanced_prose_brace_before_object() {
    ok("Use { para abrir: {\"a\": 1}", json!({"a": 1}), &[Prose]);
}

#[test]
fn c25_multiple_objects_take_first() {
    ok("{\"a\": 1} {\"b\": 2}", json!({"a": 1}), &[Prose]);
    ok("{\"a\": 1}\n\n{\"a\": 2}", json!({"a": 1}), &[Prose]);
}

#[test]
fn c26_top_level_array_takes_its_first_object() {
    ok("[{\"a\": 1}, {\"a\": 2}]", json!({"a": 1}), &[Prose]);
}

// ---- strings, escapes, unicode -------------------------------------------------------------

#[test]
fn c27_braces_inside_strings() {
    ok(
        r#"{"t": "use {x} and } or {", "n": 1}"#,
        json!({"t": "use {x} and } or {", "n": 1}),
        &[],
    );
}

#[test]
fn c28_escaped_quotes() {
    ok(
        r#"{"t": "ele disse \"oi {\"", "n": 2,5}"#,
        json!({"t": "ele disse \"oi {\"", "n": 2.5}),
        &[PtDecimal],
    );
}

#[test]
fn c29_escaped_backslash_before_quote() {
    ok(
        r#"{"t": "C:\\", "n": 3}"#,
        json!({"t": "C:\\", "n": 3}),
        &[],
    );
}

#[test]
fn c30_unicode_accents() {
    ok(
        r#"{"produto": "Aspirador robô", "cidade": "São Paulo", "nota": 3,5}"#,
        json!({"produto": "Aspirador robô", "cidade": "São Paulo", "nota": 3.5}),
        &[PtDecimal],
    );
}

#[test]
fn c31_unicode_emoji() {
    ok(
        "Prontinho 🎉 {\"msg\": \"Oba 🎉 chegou! {\", \"n\": 1,5}",
        json!({"msg": "Oba 🎉 chegou! {", "n": 1.5}),
        &[Prose, PtDecimal],
    );
}

#[test]
fn c32_unicode_escape_sequence() {
    ok(r#"{"t": "\u00e9\u00e7"}"#, json!({"t": "éç"}), &[]);
}

#[test]
fn c33_crlf_pretty_printed() {
    ok(
        "{\r\n  \"a\": 1,\r\n  \"b\": 2,5\r\n}\r\n",
        json!({"a": 1, "b": 2.5}),
        &[PtDecimal],
    );
}

// ---- think blocks ------------------------------------------------------------------------

#[test]
fn c34_think_block_before_json() {
    ok(
        "<think>\nVou classificar {talvez}.\n</think>\n{\"a\": 2,5}",
        json!({"a": 2.5}),
        &[ThinkBlock, PtDecimal],
    );
}

#[test]
fn c35_think_block_with_draft_object() {
    ok(
        "<think>{\"draft\": 1}</think>{\"final\": 2}",
        json!({"final": 2}),
        &[ThinkBlock],
    );
}

#[test]
fn c36_think_closed_only() {
    ok(
        "raciocínio...</think>\n{\"a\": 1}",
        json!({"a": 1}),
        &[ThinkBlock],
    );
}

#[test]
fn c37_think_unclosed_means_no_answer() {
    fails("<think>pensando {\"a\": 1}", |f| {
        *f == ExtractFailure::Empty
    });
}

// ---- trailing commas ---------------------------------------------------------------------

#[test]
fn c38_trailing_comma_object() {
    ok(
        "{\n  \"a\": 1,\n  \"b\": false,\n}",
        json!({"a": 1, "b": false}),
        &[TrailingComma],
    );
}

#[test]
fn c39_trailing_comma_array_and_object() {
    ok(
        r#"{"xs": [1, 2,], }"#,
        json!({"xs": [1, 2]}),
        &[TrailingComma],
    );
}

#[test]
fn c40_trailing_comma_after_pt_decimal() {
    ok(
        r#"{"x": 4,5,}"#,
        json!({"x": 4.5}),
        &[PtDecimal, TrailingComma],
    );
}

// ---- truncation --------------------------------------------------------------------------

#[test]
fn c41_truncated_mid_key() {
    ok(
        "{\n  \"sentiment\": \"positivo\",\n  \"sentiment_score\": 4.5,\n  \"complaint_ca",
        json!({"sentiment": "positivo", "sentiment_score": 4.5}),
        &[Truncated],
    );
}

#[test]
fn c42_truncated_mid_string_value_is_dropped() {
    ok(r#"{"a": 1, "b": "positi"#, json!({"a": 1}), &[Truncated]);
}

#[test]
fn c43_truncated_mid_number_is_dropped() {
    // `4` may be the start of `45`: never kept
    ok(r#"{"a": "x", "b": 4"#, json!({"a": "x"}), &[Truncated]);
}

#[test]
fn c44_truncated_right_after_comma_keeps_last_member() {
    ok(r#"{"a": 1, "b": 2,"#, json!({"a": 1, "b": 2}), &[Truncated]);
}

#[test]
fn c45_truncated_nested_member_dropped() {
    ok(
        r#"{"a": 1, "b": {"c": 2, "d""#,
        json!({"a": 1}),
        &[Truncated],
    );
}

#[test]
fn c46_truncated_with_pt_decimal_and_prose() {
    ok(
        "Aqui: {\"nota\": 4,5, \"cat\": \"entr",
        json!({"nota": 4.5}),
        &[Prose, PtDecimal, Truncated],
    );
}

#[test]
fn c47_truncated_before_first_member_fails() {
    fails(r#"{"a": 1"#, |f| {
        matches!(f, ExtractFailure::Unbalanced { .. })
    });
    fails("{", |f| matches!(f, ExtractFailure::Unbalanced { .. }));
}

#[test]
fn c48_truncation_repair_can_be_disabled() {
    let o = ExtractOptions {
        repair_truncated: false,
        ..Default::default()
    };
    assert!(matches!(
        extract_json(r#"{"a": 1, "b": 2,"#, &o),
        Err(ExtractFailure::Unbalanced { start: 0 })
    ));
}

// ---- failures ----------------------------------------------------------------------------

#[test]
fn c49_empty_and_whitespace() {
    fails("", |f| *f == ExtractFailure::Empty);
    fails("  \n\t ", |f| *f == ExtractFailure::Empty);
}

#[test]
fn c50_no_object() {
    fails("Não sei responder.", |f| *f == ExtractFailure::NoObject);
    fails("[1, 2, 3]", |f| *f == ExtractFailure::NoObject);
}

#[test]
fn c51_invalid_after_repairs() {
    fails("{'a': 'b'}", |f| {
        matches!(f, ExtractFailure::Invalid { .. })
    });
    fails("{chave: valor}", |f| {
        matches!(f, ExtractFailure::Invalid { .. })
    });
    fails(r#"{"a": [1, 2}"#, |f| {
        matches!(f, ExtractFailure::Invalid { .. })
    });
}

#[test]
fn c52_repairs_can_be_disabled() {
    let o = ExtractOptions {
        pt_decimals: false,
        trailing_commas: false,
        ..Default::default()
    };
    assert!(matches!(
        extract_json(r#"{"x": 4,5}"#, &o),
        Err(ExtractFailure::Invalid { .. })
    ));
    assert!(matches!(
        extract_json(r#"{"x": 4,}"#, &o),
        Err(ExtractFailure::Invalid { .. })
    ));
}

#[test]
fn c53_strict_parser_baseline() {
    assert!(parse_strict("```json\n{\"a\": 1}\n```").is_ok());
    assert!(parse_strict("{\"a\": 1}").is_ok());
    assert!(parse_strict("{\"a\": 4,5}").is_err());
    assert!(parse_strict("Segue: {\"a\": 1}").is_err());
    assert!(parse_strict("").is_err());
}

// ---- the example completions --------------------------------------------------------------

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("experiments/data/pairs")
}

fn read_jsonl(path: &PathBuf) -> Option<Vec<Value>> {
    let text = std::fs::read_to_string(path).ok()?;
    Some(
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).expect("valid JSONL"))
            .collect(),
    )
}

fn samples() -> Option<(Vec<Value>, HashMap<String, Value>)> {
    let dir = data_dir();
    let (Some(rows), Some(eval)) = (
        read_jsonl(&dir.join("completions_sample.jsonl")),
        read_jsonl(&dir.join("eval.jsonl")),
    ) else {
        eprintln!("skipping: {} not found", dir.display());
        return None;
    };
    let expected = eval
        .into_iter()
        .filter_map(|r| Some((r["id"].as_str()?.to_string(), r.get("expected")?.clone())))
        .collect();
    Some((rows, expected))
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
fn sample_completions_extract_as_their_quirk_says() {
    let Some((rows, expected)) = samples() else {
        return;
    };
    assert_eq!(rows.len(), 15);
    let opts = ExtractOptions::default();
    for row in &rows {
        let quirk = row["quirk"].as_str().unwrap();
        let completion = row["completion"].as_str().unwrap();
        let want = &expected[row["prompt_id"].as_str().unwrap()];
        let got = extract_json(completion, &opts);
        let has = |r: Repair| got.as_ref().is_ok_and(|e| e.repairs.contains(&r));
        match quirk {
            "clean"
            | "pt_decimal"
            | "pt_decimal_pretty"
            | "code_fence"
            | "code_fence_pt_decimal"
            | "prose_around"
            | "prose_around_pt_decimal"
            | "trailing_comma"
            | "think_block"
            | "pt_decimal_trailing_note"
            | "braces_in_prose" => {
                let e = got.as_ref().unwrap_or_else(|f| panic!("{quirk}: {f}"));
                assert_eq!(&Value::Object(e.value.clone()), want, "{quirk}");
            }
            "truncated" => {
                let e = got.as_ref().unwrap();
                assert!(has(Truncated));
                // only complete members, and those agree with the reference
                assert_eq!(e.value.len(), 2);
                for (k, v) in &e.value {
                    assert_eq!(&want[k], v, "{k}");
                }
            }
            "wrong_values" => {
                let e = got.as_ref().unwrap();
                assert!(e.repairs.is_empty());
                assert_ne!(&Value::Object(e.value.clone()), want);
            }
            "single_quotes" => assert!(matches!(got, Err(ExtractFailure::Invalid { .. }))),
            "empty" => assert_eq!(got, Err(ExtractFailure::Empty)),
            other => panic!("unknown quirk {other}"),
        }
        match quirk {
            "pt_decimal" | "pt_decimal_pretty" | "pt_decimal_trailing_note" => {
                assert!(has(PtDecimal), "{quirk}")
            }
            "code_fence" => assert!(has(Fence)),
            "code_fence_pt_decimal" => assert!(has(Fence) && has(PtDecimal)),
            "prose_around" => assert!(has(Prose)),
            "prose_around_pt_decimal" | "braces_in_prose" => {
                assert!(has(Prose) && has(PtDecimal), "{quirk}")
            }
            "trailing_comma" => assert!(has(TrailingComma)),
            "think_block" => assert!(has(ThinkBlock) && has(PtDecimal)),
            "clean" => assert!(got.as_ref().unwrap().repairs.is_empty()),
            _ => {}
        }
    }
}

#[test]
fn sample_completions_strict_vs_tolerant() {
    let Some((rows, _)) = samples() else {
        return;
    };
    let mut strict_ok = Vec::new();
    let mut tolerant_only = Vec::new();
    for row in &rows {
        let id = row["id"].as_str().unwrap().to_string();
        let completion = row["completion"].as_str().unwrap();
        let strict = parse_strict(completion).is_ok();
        let tolerant = extract_json(completion, &ExtractOptions::default()).is_ok();
        // strict_json_ok in the data is `json.loads` of the raw text; parse_strict also strips
        // fences, so the fenced clean row parses strictly here.
        let quirk = row["quirk"].as_str().unwrap();
        if quirk != "code_fence" {
            assert_eq!(strict, row["strict_json_ok"].as_bool().unwrap(), "{id}");
        }
        // the tolerant parser finds an object wherever the seed parser did
        if row["seed_parser_ok"].as_bool().unwrap() {
            assert!(tolerant, "{id}");
        }
        if strict {
            strict_ok.push(id.clone());
            assert!(tolerant, "{id}");
        } else if tolerant {
            tolerant_only.push(id);
        }
    }
    assert_eq!(
        strict_ok,
        ["completion-001", "completion-004", "completion-012"]
    );
    // everything else except single quotes (011) and the empty output (015)
    assert_eq!(tolerant_only.len(), 10, "{tolerant_only:?}");

    let c = compare_parsers(
        rows.iter().map(|r| r["completion"].as_str().unwrap()),
        &ExtractOptions::default(),
    );
    assert_eq!((c.total, c.strict_ok, c.tolerant_ok), (15, 3, 13));
    assert_eq!((c.tolerant_only, c.strict_only), (10, 0));
    assert_eq!(c.repairs[&PtDecimal], 7);
    assert_eq!(c.repairs[&Truncated], 1);
    assert_eq!(c.failures["invalid"], 1);
    assert_eq!(c.failures["empty"], 1);
}

#[test]
fn sample_completions_scores() {
    let Some((rows, expected)) = samples() else {
        return;
    };
    let options = JsonRewardOptions {
        fields: extraction_fields(),
        parse_score: 0.2,
        reference_weight: 0.4,
        compare: CompareOptions {
            substring: true,
            ..Default::default()
        },
        ..Default::default()
    };
    options.validate().unwrap();
    let mut by_quirk = HashMap::new();
    for row in &rows {
        let want = &expected[row["prompt_id"].as_str().unwrap()];
        let s = score_json(row["completion"].as_str().unwrap(), Some(want), &options);
        by_quirk.insert(row["quirk"].as_str().unwrap().to_string(), s);
    }
    let score = |q: &str| by_quirk[q].score.as_f64().unwrap();
    for q in [
        "clean",
        "pt_decimal",
        "code_fence_pt_decimal",
        "think_block",
        "braces_in_prose",
    ] {
        assert!((score(q) - 1.0).abs() < 1e-12, "{q}: {}", score(q));
    }
    // truncated: 2 of 5 fields, both matching: 0.2 + 0.4 * 0.4 + 0.4 * 0.4 = 0.52
    assert!(
        (score("truncated") - 0.52).abs() < 1e-12,
        "{}",
        score("truncated")
    );
    // wrong values: schema 1; sentiment and category wrong → reference 3/5
    assert!((score("wrong_values") - (0.2 + 0.4 + 0.4 * 0.6)).abs() < 1e-12);
    assert_eq!(by_quirk["empty"].score, Score::Value(0.0));
    assert_eq!(by_quirk["single_quotes"].score, Score::Value(0.0));
    // the strict parser scores the PT-BR row 0: the V4 misspecification
    let strict = JsonRewardOptions {
        parser: runner::rewards::json::ParserMode::Strict,
        ..options.clone()
    };
    let row = rows.iter().find(|r| r["quirk"] == "pt_decimal").unwrap();
    let want = &expected[row["prompt_id"].as_str().unwrap()];
    let s = score_json(row["completion"].as_str().unwrap(), Some(want), &strict);
    assert_eq!(s.score, Score::Value(0.0));
}
