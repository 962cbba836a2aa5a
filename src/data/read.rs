//! Reading a data file into raw JSON objects, each with the line (JSONL), element (JSON array)
//! or file line (CSV) it came from, so errors can point at it. A malformed line is fatal or
//! skipped (with a warning naming it) as `data.on_bad_line` says.

use std::path::Path;

use serde_json::{Map, Value};

use crate::spec::{DataFormat, OnBadLine};
use crate::{Error, Result};

/// A raw record and where it came from (1-based).
pub type RawRecord = (usize, Map<String, Value>);

/// The format of `path`: `format`, or by extension when `auto`.
pub fn resolve_format(path: &Path, format: DataFormat) -> Result<DataFormat> {
    if format != DataFormat::Auto {
        return Ok(format);
    }
    match path.extension().and_then(|e| e.to_str()) {
        Some("jsonl") | Some("ndjson") => Ok(DataFormat::Jsonl),
        Some("json") => Ok(DataFormat::Json),
        Some("csv") => Ok(DataFormat::Csv),
        _ => Err(Error::Spec(format!(
            "{}: cannot tell the data format from the extension (expected .jsonl, .json or \
             .csv); set the source's `format`",
            path.display()
        ))),
    }
}

/// A line left out under `on_bad_line: skip`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    /// 1-based line (JSONL, CSV) or element (JSON array).
    pub line: usize,
    /// What is wrong with it.
    pub reason: String,
}

/// Every record of the file, in file order; the first malformed line is an error naming the
/// file and line.
pub fn read_raw(path: &Path, format: DataFormat) -> Result<Vec<RawRecord>> {
    read_raw_with(path, format, OnBadLine::Fail).map(|(records, _)| records)
}

/// [`read_raw`] with a policy for malformed lines: under [`OnBadLine::Skip`] they are left out
/// and returned (and each printed to stderr as `FILE:LINE: reason`). A file that cannot be
/// read at all (missing, not UTF-8, a `.json` file that is not an array) is an error either
/// way.
pub fn read_raw_with(
    path: &Path,
    format: DataFormat,
    on_bad_line: OnBadLine,
) -> Result<(Vec<RawRecord>, Vec<BadLine>)> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut bad = Vec::new();
    let records = match resolve_format(path, format)? {
        DataFormat::Jsonl => read_jsonl(path, &text, on_bad_line, &mut bad),
        DataFormat::Json => read_json(path, &text, on_bad_line, &mut bad),
        DataFormat::Csv => read_csv(path, &text, on_bad_line, &mut bad),
        DataFormat::Auto => Err(Error::Other("data format unresolved".into())),
    }?;
    report_skipped(path, &bad);
    Ok((records, bad))
}

/// Lines shown individually before the rest is summarised.
const SHOWN_BAD_LINES: usize = 20;

fn report_skipped(path: &Path, bad: &[BadLine]) {
    for b in bad.iter().take(SHOWN_BAD_LINES) {
        eprintln!(
            "warning: {}:{}: skipped ({}; data.on_bad_line is skip)",
            path.display(),
            b.line,
            b.reason
        );
    }
    if bad.len() > SHOWN_BAD_LINES {
        eprintln!(
            "warning: {}: {} more malformed lines skipped ({} in all)",
            path.display(),
            bad.len() - SHOWN_BAD_LINES,
            bad.len()
        );
    }
}

/// Applies the policy to one line's problem: an error under `fail`, a recorded skip otherwise.
fn bad_line(
    path: &Path,
    line: usize,
    reason: String,
    on_bad_line: OnBadLine,
    bad: &mut Vec<BadLine>,
) -> Result<()> {
    match on_bad_line {
        OnBadLine::Fail => Err(Error::Spec(format!(
            "{}:{line}: {reason} (set data.on_bad_line: skip to leave such lines out)",
            path.display()
        ))),
        OnBadLine::Skip => {
            bad.push(BadLine { line, reason });
            Ok(())
        }
    }
}

fn read_jsonl(
    path: &Path,
    text: &str,
    on_bad_line: OnBadLine,
    bad: &mut Vec<BadLine>,
) -> Result<Vec<RawRecord>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Value>(line) {
            Ok(Value::Object(m)) => out.push((n, m)),
            Ok(other) => bad_line(
                path,
                n,
                format!("a record must be a JSON object, found {}", kind(&other)),
                on_bad_line,
                bad,
            )?,
            Err(e) => bad_line(path, n, format!("invalid JSON: {e}"), on_bad_line, bad)?,
        }
    }
    Ok(out)
}

fn read_json(
    path: &Path,
    text: &str,
    on_bad_line: OnBadLine,
    bad: &mut Vec<BadLine>,
) -> Result<Vec<RawRecord>> {
    let v: Value = serde_json::from_str(text)
        .map_err(|e| Error::Spec(format!("{}: invalid JSON: {e}", path.display())))?;
    let Value::Array(items) = v else {
        return Err(Error::Spec(format!(
            "{}: a .json data file must hold an array of objects",
            path.display()
        )));
    };
    let mut out = Vec::new();
    for (i, v) in items.into_iter().enumerate() {
        match v {
            Value::Object(m) => out.push((i + 1, m)),
            other => bad_line(
                path,
                i + 1,
                format!(
                    "element {}: a record must be a JSON object, found {}",
                    i + 1,
                    kind(&other)
                ),
                on_bad_line,
                bad,
            )?,
        }
    }
    Ok(out)
}

fn read_csv(
    path: &Path,
    text: &str,
    on_bad_line: OnBadLine,
    bad: &mut Vec<BadLine>,
) -> Result<Vec<RawRecord>> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(text.as_bytes());
    let headers = rdr
        .headers()
        .map_err(|e| Error::Spec(format!("{}:1: CSV header: {e}", path.display())))?
        .clone();
    let mut out = Vec::new();
    for row in rdr.records() {
        let row = match row {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line() as usize);
                bad_line(path, line, format!("CSV: {e}"), on_bad_line, bad)?;
                continue;
            }
        };
        let line = row.position().map_or(0, |p| p.line() as usize);
        let mut m = Map::new();
        for (h, v) in headers.iter().zip(row.iter()) {
            m.insert(h.to_string(), Value::String(v.to_string()));
        }
        out.push((line, m));
    }
    Ok(out)
}

/// The JSON kind of a value, for messages.
pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    const JSONL: &str = "{\"a\": 1}\n{\"a\": 2,\n\n[1, 2]\n{\"a\": 3}\nnot json\n";

    #[test]
    fn malformed_jsonl_line_is_fatal_with_its_line_number() {
        let d = tempfile::tempdir().unwrap();
        let p = file(d.path(), "x.jsonl", JSONL);
        let err = read_raw(&p, DataFormat::Auto).unwrap_err().to_string();
        assert!(err.contains("x.jsonl:2: invalid JSON"), "{err}");
        assert!(err.contains("on_bad_line: skip"), "{err}");
    }

    #[test]
    fn malformed_jsonl_lines_are_skipped_and_reported_by_line() {
        let d = tempfile::tempdir().unwrap();
        let p = file(d.path(), "x.jsonl", JSONL);
        let (recs, bad) = read_raw_with(&p, DataFormat::Auto, OnBadLine::Skip).unwrap();
        let lines: Vec<usize> = recs.iter().map(|(n, _)| *n).collect();
        assert_eq!(lines, vec![1, 5]);
        assert_eq!(recs[1].1["a"], 3);
        let bad_lines: Vec<usize> = bad.iter().map(|b| b.line).collect();
        assert_eq!(bad_lines, vec![2, 4, 6]);
        assert!(bad[0].reason.contains("invalid JSON"));
        assert!(bad[1].reason.contains("found a list"), "{}", bad[1].reason);
    }

    #[test]
    fn malformed_csv_rows_and_json_elements() {
        let d = tempfile::tempdir().unwrap();
        let p = file(d.path(), "x.csv", "q,a\n1,2\n3\n4,5\n6,7,8\n");
        let err = read_raw(&p, DataFormat::Auto).unwrap_err().to_string();
        assert!(err.contains("x.csv:3: CSV"), "{err}");
        let (recs, bad) = read_raw_with(&p, DataFormat::Auto, OnBadLine::Skip).unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[1].1["q"], "4");
        assert_eq!(bad.iter().map(|b| b.line).collect::<Vec<_>>(), vec![3, 5]);

        let p = file(d.path(), "y.json", "[{\"a\": 1}, 2, {\"a\": 3}]");
        let err = read_raw(&p, DataFormat::Auto).unwrap_err().to_string();
        assert!(err.contains("y.json:2:"), "{err}");
        let (recs, bad) = read_raw_with(&p, DataFormat::Auto, OnBadLine::Skip).unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(bad[0].line, 2);
        // A file that is not an array at all is not a bad line: fatal either way.
        let p = file(d.path(), "z.json", "{\"a\": 1}");
        assert!(read_raw_with(&p, DataFormat::Auto, OnBadLine::Skip).is_err());
    }
}
