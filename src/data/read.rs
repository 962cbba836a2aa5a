//! Reading a data file into raw JSON objects, each with the line (JSONL), element (JSON array)
//! or file line (CSV) it came from, so errors can point at it.

use std::path::Path;

use serde_json::{Map, Value};

use crate::spec::DataFormat;
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

/// Every record of the file, in file order.
pub fn read_raw(path: &Path, format: DataFormat) -> Result<Vec<RawRecord>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    match resolve_format(path, format)? {
        DataFormat::Jsonl => read_jsonl(path, &text),
        DataFormat::Json => read_json(path, &text),
        DataFormat::Csv => read_csv(path, &text),
        DataFormat::Auto => Err(Error::Other("data format unresolved".into())),
    }
}

fn read_jsonl(path: &Path, text: &str) -> Result<Vec<RawRecord>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(line)
            .map_err(|e| Error::Spec(format!("{}:{n}: invalid JSON: {e}", path.display())))?;
        out.push((n, object(path, n, v)?));
    }
    Ok(out)
}

fn read_json(path: &Path, text: &str) -> Result<Vec<RawRecord>> {
    let v: Value = serde_json::from_str(text)
        .map_err(|e| Error::Spec(format!("{}: invalid JSON: {e}", path.display())))?;
    let Value::Array(items) = v else {
        return Err(Error::Spec(format!(
            "{}: a .json data file must hold an array of objects",
            path.display()
        )));
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, v)| Ok((i + 1, object(path, i + 1, v)?)))
        .collect()
}

fn read_csv(path: &Path, text: &str) -> Result<Vec<RawRecord>> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(text.as_bytes());
    let headers = rdr
        .headers()
        .map_err(|e| Error::Spec(format!("{}:1: CSV header: {e}", path.display())))?
        .clone();
    let mut out = Vec::new();
    for row in rdr.records() {
        let row = row.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line());
            Error::Spec(format!("{}:{line}: CSV: {e}", path.display()))
        })?;
        let line = row.position().map_or(0, |p| p.line() as usize);
        let mut m = Map::new();
        for (h, v) in headers.iter().zip(row.iter()) {
            m.insert(h.to_string(), Value::String(v.to_string()));
        }
        out.push((line, m));
    }
    Ok(out)
}

fn object(path: &Path, n: usize, v: Value) -> Result<Map<String, Value>> {
    match v {
        Value::Object(m) => Ok(m),
        other => Err(Error::Spec(format!(
            "{}:{n}: a record must be a JSON object, found {}",
            path.display(),
            kind(&other)
        ))),
    }
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
