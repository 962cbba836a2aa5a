//! The `sql` reward: run the completion's SQL against a SQLite database, read-only, with a time
//! limit and a row limit, and compare its result set with the expected one.
//!
//! # Safety of running model output
//! The database is opened with `SQLITE_OPEN_READ_ONLY | SQLITE_OPEN_NO_MUTEX` (no URI parsing,
//! so `file:…?mode=rwc` tricks do not apply), `PRAGMA query_only = 1` is set, no database may be
//! attached (`SQLITE_LIMIT_ATTACHED = 0`) and strings/blobs are capped at 1 MB. An authorizer
//! then allows only what a read needs — `SELECT`, reading columns, (recursive) CTEs and scalar
//! functions (except a few that reach outside the database, such as `load_extension`) — and
//! denies everything else: `INSERT`/`UPDATE`/`DELETE` (also into TEMP tables, which a read-only
//! connection would otherwise allow), `CREATE`/`DROP`/`ALTER`, `ATTACH`/`DETACH`, transactions,
//! and every `PRAGMA`. A progress handler interrupts a statement after `timeout_ms`, and at most
//! `max_rows` rows are read.
//!
//! # Scoring
//! - The SQL is taken from the completion ([`extract_sql`]): `<think>` blocks removed, the first
//!   Markdown code fence (```` ```sql ````) when there is one, else the whole text; it must hold
//!   exactly one statement (a trailing `;` and comments are fine).
//! - 1 when the result equals the expected rows as a **multiset of rows** (row order ignored,
//!   column order as returned), numbers equal within `1e-6 · max(1, |a|, |b|)` (so `60` = `60.0`
//!   and `701.06` = `701.0600000000001`), text exactly, `NULL` = `NULL`;
//!   `runs_score` when the query runs but returns something else; 0 when it cannot be
//!   extracted, does not prepare, is refused, runs past the time limit or returns more than
//!   `max_rows` rows. These are properties of the model's query, so they are scores (a slow or
//!   runaway query is a wrong answer, not a broken scorer).
//! - The expected rows come from a record field (a JSON array of arrays) or from running the
//!   reference query under the same rules. A broken *reference* (missing, not rows, a query that
//!   fails) is not the model's fault: the row is [`Score::Unscorable`] with a reason naming the
//!   record.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::limits::Limit;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use serde_json::Value;

use super::Score;
use crate::{Error, Result};

/// Longest string or blob a query may build (bytes).
const MAX_VALUE_BYTES: i32 = 1_000_000;
/// VM instructions between two checks of the time limit.
const PROGRESS_OPS: i32 = 1_000;
/// Functions a completion may not call: they reach outside the database or the process.
const DENIED_FUNCTIONS: &[&str] = &[
    "load_extension",
    "fts3_tokenizer",
    "readfile",
    "writefile",
    "edit",
    "sqlite_dbpage",
];

/// Options of a `sql` reward (what the spec's `SqlReward` maps to).
#[derive(Debug, Clone, PartialEq)]
pub struct SqlOptions {
    /// SQLite database file.
    pub database: PathBuf,
    /// Score of a query that runs but returns a different result, in [0, 1].
    pub runs_score: f64,
    /// Longest a query may run.
    pub timeout_ms: u64,
    /// Most rows read from a query.
    pub max_rows: usize,
}

/// One result cell, compared with numeric tolerance.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// SQL `NULL` / JSON `null`.
    Null,
    /// An integer or real (JSON number; `true`/`false` read as 1/0, as SQLite stores them).
    Num(f64),
    /// Text.
    Text(String),
    /// A blob (JSON has none; never equal to an expected JSON cell).
    Blob(Vec<u8>),
}

/// A result set: rows of cells.
pub type Rows = Vec<Vec<Cell>>;

/// Why a query gave no rows.
#[derive(Debug, Clone, PartialEq)]
pub enum QueryError {
    /// No SQL or more than one statement.
    Extract(String),
    /// Failed to prepare or run (syntax, refused by the authorizer, runtime error).
    Sql(String),
    /// Ran past the time limit.
    Timeout(u64),
    /// Returned more than `max_rows` rows.
    TooManyRows(usize),
}

impl std::fmt::Display for QueryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QueryError::Extract(m) => write!(f, "no runnable SQL: {m}"),
            QueryError::Sql(m) => write!(f, "query failed: {m}"),
            QueryError::Timeout(ms) => write!(f, "query ran past the time limit of {ms} ms"),
            QueryError::TooManyRows(n) => write!(f, "query returned more than {n} rows"),
        }
    }
}

/// What the reward concluded for one completion.
#[derive(Debug, Clone, PartialEq)]
pub struct SqlResult {
    /// The reward.
    pub score: Score,
    /// Why the completion's query failed, when it did.
    pub error: Option<QueryError>,
}

/// A `sql` reward with its open connection.
pub struct SqlReward {
    options: SqlOptions,
    conn: Mutex<Connection>,
    /// Results of reference queries, by SQL text (a prompt's G completions share one).
    reference_cache: Mutex<HashMap<String, std::result::Result<Rows, QueryError>>>,
}

impl std::fmt::Debug for SqlReward {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlReward")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl SqlReward {
    /// Opens the database read-only and installs the guards; a missing database or bad options
    /// are errors.
    pub fn new(options: SqlOptions) -> Result<SqlReward> {
        if !(0.0..=1.0).contains(&options.runs_score) {
            return Err(Error::Spec(
                "sql reward: runs_score must be in [0, 1]".into(),
            ));
        }
        if options.timeout_ms == 0 || options.max_rows == 0 {
            return Err(Error::Spec(
                "sql reward: timeout_ms and max_rows must be at least 1".into(),
            ));
        }
        let conn = open_guarded(&options.database)?;
        Ok(SqlReward {
            options,
            conn: Mutex::new(conn),
            reference_cache: Mutex::new(HashMap::new()),
        })
    }

    /// The options.
    pub fn options(&self) -> &SqlOptions {
        &self.options
    }

    /// Runs one SQL statement under the guards and returns its rows.
    pub fn query(&self, sql: &str) -> std::result::Result<Rows, QueryError> {
        let mut conn = self
            .conn
            .lock()
            .map_err(|_| QueryError::Sql("connection lock poisoned".into()))?;
        run_query(
            &mut conn,
            sql,
            self.options.timeout_ms,
            self.options.max_rows,
        )
    }

    /// Scores a completion against the expected rows.
    pub fn score_against(&self, completion: &str, expected: &Rows) -> SqlResult {
        let got = extract_sql(completion)
            .map_err(QueryError::Extract)
            .and_then(|sql| self.query(&sql));
        match got {
            Ok(rows) => SqlResult {
                score: Score::Value(if rows_equal(&rows, expected) {
                    1.0
                } else {
                    self.options.runs_score
                }),
                error: None,
            },
            Err(e) => SqlResult {
                score: Score::Value(0.0),
                error: Some(e),
            },
        }
    }

    /// The rows of a reference query (cached by its text).
    pub fn reference_rows(&self, sql: &str) -> std::result::Result<Rows, QueryError> {
        if let Ok(cache) = self.reference_cache.lock() {
            if let Some(r) = cache.get(sql) {
                return r.clone();
            }
        }
        let r = extract_sql(sql)
            .map_err(QueryError::Extract)
            .and_then(|s| self.query(&s));
        if let Ok(mut cache) = self.reference_cache.lock() {
            cache.insert(sql.to_string(), r.clone());
        }
        r
    }

    /// Scores a completion for a record. `expected` is the record's expected-rows value (when
    /// the reward reads a field), else `reference` is the reference query. `record` names the
    /// record in unscorable reasons.
    pub fn score(
        &self,
        completion: &str,
        expected: Option<&Value>,
        reference: Option<&Value>,
        uses_field: bool,
        record: &str,
    ) -> SqlResult {
        let unscorable = |why: String| SqlResult {
            score: Score::unscorable(format!("record {record}: {why}")),
            error: None,
        };
        let rows = if uses_field {
            match expected {
                None | Some(Value::Null) => {
                    return unscorable("has no expected rows field".into());
                }
                Some(v) => match rows_from_json(v) {
                    Ok(r) => r,
                    Err(e) => return unscorable(format!("expected rows: {e}")),
                },
            }
        } else {
            match reference {
                Some(Value::String(sql)) => match self.reference_rows(sql) {
                    Ok(r) => r,
                    Err(e) => return unscorable(format!("reference query: {e}")),
                },
                Some(Value::Null) | None => return unscorable("has no reference query".into()),
                Some(_) => return unscorable("reference is not a SQL string".into()),
            }
        };
        self.score_against(completion, &rows)
    }
}

/// Opens `path` read-only with every guard in place.
pub fn open_guarded(path: &Path) -> Result<Connection> {
    if !path.is_file() {
        return Err(Error::Spec(format!(
            "sql reward: database {} does not exist",
            path.display()
        )));
    }
    let sql_err = |e: rusqlite::Error| Error::Other(format!("sql reward: {}: {e}", path.display()));
    let mut conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sql_err)?;
    conn.execute_batch("PRAGMA query_only = 1;")
        .map_err(sql_err)?;
    conn.set_limit(Limit::SQLITE_LIMIT_ATTACHED, 0)
        .map_err(sql_err)?;
    conn.set_limit(Limit::SQLITE_LIMIT_LENGTH, MAX_VALUE_BYTES)
        .map_err(sql_err)?;
    conn.authorizer(Some(authorize)).map_err(sql_err)?;
    Ok(conn)
}

/// The authorizer: reads only.
fn authorize(ctx: AuthContext<'_>) -> Authorization {
    match ctx.action {
        AuthAction::Select | AuthAction::Read { .. } | AuthAction::Recursive => {
            Authorization::Allow
        }
        AuthAction::Function { function_name } => {
            let name = function_name.to_ascii_lowercase();
            if DENIED_FUNCTIONS.contains(&name.as_str()) {
                Authorization::Deny
            } else {
                Authorization::Allow
            }
        }
        _ => Authorization::Deny,
    }
}

fn run_query(
    conn: &mut Connection,
    sql: &str,
    timeout_ms: u64,
    max_rows: usize,
) -> std::result::Result<Rows, QueryError> {
    let deadline = Instant::now() + Duration::from_millis(timeout_ms);
    let timed_out = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = timed_out.clone();
    conn.progress_handler(
        PROGRESS_OPS,
        Some(move || {
            let over = Instant::now() >= deadline;
            if over {
                flag.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            over
        }),
    )
    .map_err(|e| QueryError::Sql(e.to_string()))?;
    let result = collect_rows(conn, sql, max_rows);
    // remove the handler so nothing outside a query is interrupted
    let _ = conn.progress_handler(0, None::<fn() -> bool>);
    match result {
        Err(_) if timed_out.load(std::sync::atomic::Ordering::Relaxed) => {
            Err(QueryError::Timeout(timeout_ms))
        }
        r => r,
    }
}

fn collect_rows(
    conn: &Connection,
    sql: &str,
    max_rows: usize,
) -> std::result::Result<Rows, QueryError> {
    let err = |e: rusqlite::Error| QueryError::Sql(e.to_string());
    let mut stmt = conn.prepare(sql).map_err(err)?;
    if !stmt.readonly() {
        return Err(QueryError::Sql("not a read-only statement".into()));
    }
    let ncol = stmt.column_count();
    let mut rows = stmt.query([]).map_err(err)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(err)? {
        if out.len() == max_rows {
            return Err(QueryError::TooManyRows(max_rows));
        }
        let mut cells = Vec::with_capacity(ncol);
        for i in 0..ncol {
            let v = row.get_ref(i).map_err(err)?;
            cells.push(match v {
                ValueRef::Null => Cell::Null,
                ValueRef::Integer(x) => Cell::Num(x as f64),
                ValueRef::Real(x) => Cell::Num(x),
                ValueRef::Text(t) => Cell::Text(String::from_utf8_lossy(t).into_owned()),
                ValueRef::Blob(b) => Cell::Blob(b.to_vec()),
            });
        }
        out.push(cells);
    }
    Ok(out)
}

/// Reads expected rows from JSON: an array of rows, each an array of cells (a bare scalar row
/// is accepted as a one-column row).
pub fn rows_from_json(v: &Value) -> std::result::Result<Rows, String> {
    let Value::Array(rows) = v else {
        return Err("not a JSON array of rows".into());
    };
    rows.iter()
        .enumerate()
        .map(|(i, r)| match r {
            Value::Array(cells) => cells
                .iter()
                .map(|c| cell_from_json(c).ok_or_else(|| format!("row {i}: nested value")))
                .collect(),
            scalar => cell_from_json(scalar)
                .map(|c| vec![c])
                .ok_or_else(|| format!("row {i}: not an array of cells")),
        })
        .collect()
}

fn cell_from_json(v: &Value) -> Option<Cell> {
    match v {
        Value::Null => Some(Cell::Null),
        Value::Bool(b) => Some(Cell::Num(f64::from(u8::from(*b)))),
        Value::Number(n) => n.as_f64().map(Cell::Num),
        Value::String(s) => Some(Cell::Text(s.clone())),
        Value::Array(_) | Value::Object(_) => None,
    }
}

fn cells_equal(a: &Cell, b: &Cell) -> bool {
    match (a, b) {
        (Cell::Num(x), Cell::Num(y)) => (x - y).abs() <= 1e-6 * x.abs().max(y.abs()).max(1.0),
        _ => a == b,
    }
}

fn row_equal(a: &[Cell], b: &[Cell]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| cells_equal(x, y))
}

fn cell_rank(c: &Cell) -> u8 {
    match c {
        Cell::Null => 0,
        Cell::Num(_) => 1,
        Cell::Text(_) => 2,
        Cell::Blob(_) => 3,
    }
}

fn cmp_cells(a: &Cell, b: &Cell) -> std::cmp::Ordering {
    match (a, b) {
        (Cell::Num(x), Cell::Num(y)) => x.total_cmp(y),
        (Cell::Text(x), Cell::Text(y)) => x.cmp(y),
        (Cell::Blob(x), Cell::Blob(y)) => x.cmp(y),
        _ => cell_rank(a).cmp(&cell_rank(b)),
    }
}

fn cmp_rows(a: &[Cell], b: &[Cell]) -> std::cmp::Ordering {
    for (x, y) in a.iter().zip(b) {
        let o = cmp_cells(x, y);
        if o.is_ne() {
            return o;
        }
    }
    a.len().cmp(&b.len())
}

/// Whether two result sets are equal as multisets of rows (row order ignored, numbers within
/// tolerance). Sorted pairwise comparison first; when that fails on a small set, a greedy
/// matching settles cases where numbers within tolerance sorted differently.
pub fn rows_equal(a: &Rows, b: &Rows) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut sa: Vec<&Vec<Cell>> = a.iter().collect();
    let mut sb: Vec<&Vec<Cell>> = b.iter().collect();
    sa.sort_by(|x, y| cmp_rows(x, y));
    sb.sort_by(|x, y| cmp_rows(x, y));
    if sa.iter().zip(&sb).all(|(x, y)| row_equal(x, y)) {
        return true;
    }
    if a.len() > 2000 {
        return false;
    }
    let mut used = vec![false; sb.len()];
    sa.iter().all(
        |x| match (0..sb.len()).find(|&j| !used[j] && row_equal(x, sb[j])) {
            Some(j) => {
                used[j] = true;
                true
            }
            None => false,
        },
    )
}

/// The one SQL statement of a completion: `<think>` blocks removed, the first code fence's
/// content when there is a fence (an unclosed fence runs to the end), else the whole text;
/// then split at the first `;` outside strings, identifiers and comments. Anything but
/// whitespace, `;` and comments after it is a second statement: an error.
pub fn extract_sql(completion: &str) -> std::result::Result<String, String> {
    let text = strip_think(completion);
    let body = fenced(&text).unwrap_or(&text);
    let (first, rest) = split_first_statement(body);
    let first = first.trim();
    if first.is_empty() || only_comments(first) {
        return Err("no SQL statement".into());
    }
    if !only_comments(rest) {
        return Err("more than one statement".into());
    }
    Ok(first.to_string())
}

fn strip_think(text: &str) -> String {
    let mut s = text.to_string();
    while let Some(start) = s.find("<think>") {
        match s[start..].find("</think>") {
            Some(end) => s.replace_range(start..start + end + "</think>".len(), ""),
            None => s.truncate(start),
        }
    }
    if let Some(end) = s.find("</think>") {
        s.replace_range(..end + "</think>".len(), "");
    }
    s
}

/// Content of the first ``` fence: its first line is a language tag (```` ```sql ````) unless it
/// holds a space or the closing fence (```` ```SELECT 1``` ````); an unclosed fence runs to the end.
fn fenced(text: &str) -> Option<&str> {
    let start = text.find("```")?;
    let after = &text[start + 3..];
    let body = match after.find('\n') {
        Some(nl) if !after[..nl].trim().contains(' ') && !after[..nl].contains("```") => {
            &after[nl + 1..]
        }
        _ => after,
    };
    Some(match body.find("```") {
        Some(end) => &body[..end],
        None => body,
    })
}

/// Splits at the first `;` outside quotes and comments: (statement, rest after the `;`).
fn split_first_statement(s: &str) -> (&str, &str) {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            q @ (b'\'' | b'"' | b'`') => {
                i += 1;
                while i < b.len() {
                    if b[i] == q {
                        // doubled quote = escaped quote
                        if i + 1 < b.len() && b[i + 1] == q {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
            }
            b'[' => {
                while i < b.len() && b[i] != b']' {
                    i += 1;
                }
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    i += 1;
                }
                i += 1;
            }
            b';' => return (&s[..i], &s[i + 1..]),
            _ => {}
        }
        i += 1;
    }
    (s, "")
}

/// True when `s` holds only whitespace, `;` and SQL comments.
fn only_comments(s: &str) -> bool {
    let mut rest = s.trim_start_matches(|c: char| c.is_whitespace() || c == ';');
    loop {
        if rest.is_empty() {
            return true;
        }
        if let Some(r) = rest.strip_prefix("--") {
            rest = r.find('\n').map(|i| &r[i..]).unwrap_or("");
        } else if let Some(r) = rest.strip_prefix("/*") {
            rest = r.find("*/").map(|i| &r[i + 2..]).unwrap_or("");
        } else {
            return false;
        }
        rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == ';');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_one_statement() {
        assert_eq!(extract_sql("SELECT 1;").unwrap(), "SELECT 1");
        assert_eq!(extract_sql("  SELECT 1  ").unwrap(), "SELECT 1");
        assert_eq!(
            extract_sql("Aqui:\n```sql\nSELECT name FROM t;\n```\nExplicação: …").unwrap(),
            "SELECT name FROM t"
        );
        assert_eq!(extract_sql("```\nSELECT 2\n```").unwrap(), "SELECT 2");
        assert_eq!(
            extract_sql("<think>use ; here</think>SELECT 3; -- done").unwrap(),
            "SELECT 3"
        );
        assert_eq!(
            extract_sql("SELECT 'a;b' FROM t /* ; */;").unwrap(),
            "SELECT 'a;b' FROM t /* ; */"
        );
        assert_eq!(extract_sql("SELECT 'it''s;' ;").unwrap(), "SELECT 'it''s;'");
        assert!(extract_sql("SELECT 1; SELECT 2;").is_err());
        assert!(extract_sql("SELECT 1; DROP TABLE x").is_err());
        assert!(extract_sql("").is_err());
        assert!(extract_sql("-- nothing\n;").is_err());
        assert!(extract_sql("```sql\n```").is_err());
    }

    #[test]
    fn multiset_comparison_with_tolerance() {
        let a = vec![
            vec![Cell::Text("x".into()), Cell::Num(1.0)],
            vec![Cell::Text("y".into()), Cell::Num(701.06)],
        ];
        let b = vec![
            vec![Cell::Text("y".into()), Cell::Num(701.060_000_000_000_1)],
            vec![Cell::Text("x".into()), Cell::Num(1.0)],
        ];
        assert!(rows_equal(&a, &b));
        let c = vec![
            vec![Cell::Text("x".into()), Cell::Num(1.0)],
            vec![Cell::Text("x".into()), Cell::Num(1.0)],
        ];
        assert!(!rows_equal(&a, &c));
        // multiset: duplicates count
        let d = vec![
            vec![Cell::Num(1.0)],
            vec![Cell::Num(1.0)],
            vec![Cell::Num(2.0)],
        ];
        let e = vec![
            vec![Cell::Num(1.0)],
            vec![Cell::Num(2.0)],
            vec![Cell::Num(2.0)],
        ];
        assert!(!rows_equal(&d, &e));
        // column order matters
        let f = vec![vec![Cell::Num(1.0), Cell::Text("x".into())]];
        let g = vec![vec![Cell::Text("x".into()), Cell::Num(1.0)]];
        assert!(!rows_equal(&f, &g));
        // text never equals a number
        assert!(!rows_equal(
            &vec![vec![Cell::Text("60".into())]],
            &vec![vec![Cell::Num(60.0)]]
        ));
        assert!(rows_equal(&vec![vec![Cell::Null]], &vec![vec![Cell::Null]]));
    }

    #[test]
    fn rows_from_json_shapes() {
        let r = rows_from_json(&serde_json::json!([["a", 1, null, true], [2.5]])).unwrap();
        assert_eq!(
            r,
            vec![
                vec![
                    Cell::Text("a".into()),
                    Cell::Num(1.0),
                    Cell::Null,
                    Cell::Num(1.0)
                ],
                vec![Cell::Num(2.5)]
            ]
        );
        assert!(rows_from_json(&serde_json::json!({"a": 1})).is_err());
        assert!(rows_from_json(&serde_json::json!([[{"a": 1}]])).is_err());
    }
}
