//! The `sql` reward against experiments/data/commerce.db: read-only guards, time and row
//! limits, result comparison, and the data's own sql_qa references.

use std::path::PathBuf;
use std::time::Instant;

use runner::rewards::sql::{extract_sql, QueryError, SqlOptions, SqlReward};
use runner::rewards::Score;
use serde_json::{json, Value};

fn db() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("experiments/data/commerce.db");
    if p.exists() {
        Some(p)
    } else {
        eprintln!("skipping: {} is absent", p.display());
        None
    }
}

fn reward(timeout_ms: u64, max_rows: usize) -> Option<SqlReward> {
    let database = db()?;
    Some(
        SqlReward::new(SqlOptions {
            database,
            runs_score: 0.2,
            timeout_ms,
            max_rows,
        })
        .unwrap_or_else(|e| panic!("{e}")),
    )
}

fn sha(path: &std::path::Path) -> Vec<u8> {
    use std::hash::{Hash, Hasher};
    let bytes = std::fs::read(path).unwrap_or_default();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish().to_le_bytes().to_vec()
}

#[test]
fn writes_attach_and_pragmas_are_refused() {
    let Some(r) = reward(2000, 10_000) else {
        return;
    };
    let Some(path) = db() else { return };
    let before = sha(&path);
    let refused = [
        "DELETE FROM customers",
        "UPDATE customers SET name = 'x'",
        "INSERT INTO customers (customer_id, name) VALUES (999, 'x')",
        "DROP TABLE customers",
        "CREATE TABLE t (x)",
        "CREATE TEMP TABLE t (x)",
        "ATTACH DATABASE ':memory:' AS other",
        "ATTACH DATABASE '/tmp/runner-sql-attack.db' AS other",
        "DETACH DATABASE main",
        "PRAGMA writable_schema = 1",
        "PRAGMA writable_schema",
        "PRAGMA query_only = 0",
        "PRAGMA journal_mode = DELETE",
        "BEGIN",
        "VACUUM",
        "ANALYZE",
        "REINDEX",
        "SELECT load_extension('/tmp/evil.so')",
        "WITH x AS (SELECT 1) DELETE FROM customers",
        "CREATE VIEW v AS SELECT 1",
    ];
    for sql in refused {
        let got = r.query(sql);
        assert!(
            matches!(got, Err(QueryError::Sql(_))),
            "{sql:?} was not refused: {got:?}"
        );
        // as a completion it scores 0
        let res = r.score_against(sql, &vec![]);
        assert_eq!(res.score, Score::Value(0.0), "{sql:?}");
    }
    assert!(!std::path::Path::new("/tmp/runner-sql-attack.db").exists());
    // reading still works after the refusals, and the file is unchanged
    assert_eq!(
        r.query("SELECT COUNT(*) FROM customers").map(|x| x.len()),
        Ok(1)
    );
    assert_eq!(sha(&path), before);
}

#[test]
fn runaway_recursive_cte_is_stopped_by_the_time_limit() {
    let Some(r) = reward(300, 10_000) else { return };
    let t = Instant::now();
    let got = r.query(
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) \
         SELECT COUNT(*) FROM c",
    );
    let took = t.elapsed();
    assert_eq!(got, Err(QueryError::Timeout(300)));
    assert!(took.as_millis() < 3000, "took {took:?}");
    let res = r.score_against(
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT max(x) FROM c;",
        &vec![],
    );
    assert_eq!(res.score, Score::Value(0.0));
    assert!(res
        .error
        .map(|e| e.to_string().contains("time limit"))
        .unwrap_or(false));
    // a query after a timeout runs normally (the handler is per query)
    assert!(r.query("SELECT 1").is_ok());
}

#[test]
fn huge_cross_join_hits_max_rows() {
    let Some(r) = reward(5000, 1000) else { return };
    let got = r.query("SELECT * FROM order_items a, order_items b, order_items c");
    assert_eq!(got, Err(QueryError::TooManyRows(1000)));
    // exactly max_rows is fine
    let got = r.query("SELECT * FROM order_items a, order_items b LIMIT 1000");
    assert_eq!(got.map(|x| x.len()), Ok(1000));
}

#[test]
fn values_too_long_are_refused() {
    let Some(r) = reward(2000, 10) else { return };
    assert!(matches!(
        r.query("SELECT zeroblob(100000000)"),
        Err(QueryError::Sql(_))
    ));
}

#[test]
fn scoring_matches_runs_and_fails() {
    let Some(r) = reward(2000, 10_000) else {
        return;
    };
    let reference = json!("SELECT name FROM customers WHERE city = 'Curitiba' ORDER BY name;");
    let score = |c: &str| {
        r.score(c, None, Some(&reference), false, "`t`")
            .score
            .as_f64()
    };
    // same rows in another order: a multiset match
    assert_eq!(
        score("SELECT name FROM customers WHERE city = 'Curitiba' ORDER BY name DESC"),
        Some(1.0)
    );
    assert_eq!(
        score("```sql\nSELECT c.name FROM customers c WHERE c.city LIKE 'curitiba';\n```"),
        Some(1.0)
    );
    // runs, differs
    assert_eq!(
        score("SELECT name FROM customers WHERE city = 'Recife'"),
        Some(0.2)
    );
    // an extra column is a different result
    assert_eq!(
        score("SELECT name, city FROM customers WHERE city = 'Curitiba'"),
        Some(0.2)
    );
    // errors, several statements, no SQL
    assert_eq!(score("SELECT nome FROM clientes"), Some(0.0));
    assert_eq!(score("SELECT 1; SELECT 2"), Some(0.0));
    assert_eq!(score(""), Some(0.0));
    // a broken reference is not the model's fault
    let bad = json!("SELECT * FROM nowhere");
    let s = r
        .score("SELECT 1", None, Some(&bad), false, "`rec-7`")
        .score;
    match s {
        Score::Unscorable(why) => assert!(why.contains("`rec-7`"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert!(r
        .score("SELECT 1", None, None, false, "`r`")
        .score
        .is_unscorable());
    assert!(r
        .score("SELECT 1", Some(&json!("60")), None, true, "`r`")
        .score
        .is_unscorable());
}

#[test]
fn numbers_compare_with_tolerance() {
    let Some(r) = reward(2000, 10) else { return };
    let expected = json!([[701.06, 60]]);
    let s = r
        .score(
            "SELECT 701.06 + 0.0000000000001, 60.0",
            Some(&expected),
            None,
            true,
            "`n`",
        )
        .score;
    assert_eq!(s, Score::Value(1.0));
    let s = r
        .score("SELECT 701.07, 60", Some(&expected), None, true, "`n`")
        .score;
    assert_eq!(s, Score::Value(0.2));
}

/// Every sql_qa row of the example data: its reference query, run as a completion, matches its
/// `expected_rows` (the reward agrees with the data's checker).
#[test]
fn example_data_references_score_one() {
    let Some(r) = reward(2000, 10_000) else {
        return;
    };
    let mut n = 0;
    let mut mismatched: Vec<String> = Vec::new();
    for split in ["eval", "train"] {
        let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join(format!("experiments/data/pairs/{split}.jsonl"));
        let Ok(text) = std::fs::read_to_string(&p) else {
            eprintln!("skipping {}", p.display());
            continue;
        };
        for line in text.lines() {
            let row: Value = serde_json::from_str(line).unwrap_or(Value::Null);
            if row["task"] != "sql_qa" {
                continue;
            }
            let completion = row["reference_sql"].as_str().unwrap_or_default();
            let res = r.score(
                completion,
                row.get("expected_rows"),
                None,
                true,
                row["id"].as_str().unwrap_or("?"),
            );
            let by_ref = r.score(completion, None, row.get("reference"), false, "x");
            assert_eq!(by_ref.score, Score::Value(1.0), "{}", row["id"]);
            n += 1;
            if res.score != Score::Value(1.0) {
                let got = r.query(completion).unwrap_or_default();
                eprintln!(
                    "{}: expected {} got {got:?}",
                    row["id"], row["expected_rows"]
                );
                mismatched.push(row["id"].as_str().unwrap_or("?").to_string());
            }
        }
    }
    // Every `expected_rows` must be what its `reference_sql` returns on the bundled SQLite
    // (sql_qa-eval-010 once carried Python SQLite 3.40's ROUND(2.525, 2) = 2.53).
    eprintln!("{n} sql_qa references checked; mismatches: {mismatched:?}");
    assert!(mismatched.is_empty(), "{mismatched:?}");
}

#[test]
fn extraction_rules() {
    assert_eq!(extract_sql("SELECT 1;").as_deref(), Ok("SELECT 1"));
    assert!(extract_sql("SELECT 1; SELECT 2").is_err());
    assert_eq!(
        extract_sql("Claro!\n```sql\nSELECT 1\n```\nObs.: a consulta conta.").as_deref(),
        Ok("SELECT 1")
    );
}

#[test]
fn missing_database_is_a_spec_error() {
    let e = SqlReward::new(SqlOptions {
        database: "no/such.db".into(),
        runs_score: 0.2,
        timeout_ms: 10,
        max_rows: 10,
    })
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(e.contains("no/such.db"), "{e}");
}
