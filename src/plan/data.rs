//! What the plan reads of the data files to size the run: record counts and a prompt-length
//! estimate. Nothing here fails the plan: an unreadable file gives `None`, and the plan says
//! which numbers it could not compute (validation reports missing files properly).

use crate::spec::{DataFormat, DataSource};
use std::path::Path;

/// Characters per token assumed for the prompt-token estimate (English/Portuguese BPE ≈ 4).
pub const CHARS_PER_TOKEN: f64 = 4.0;

/// The source's path with `{date}` replaced.
pub fn source_path(source: &DataSource, date: Option<&str>) -> String {
    match date {
        Some(d) => source.path.replace("{date}", d),
        None => source.path.clone(),
    }
}

/// Records of a source (after its `limit`), or `None` when the file cannot be read.
pub fn count_records(source: &DataSource, date: Option<&str>) -> Option<usize> {
    let path = source_path(source, date);
    let records = read_records(Path::new(&path), source.format, None)?;
    Some(match source.limit {
        Some(l) => records.len().min(l),
        None => records.len(),
    })
}

/// Mean prompt length in characters over the first records of a source (prompt field text, or
/// the contents of a message list), or `None` when unreadable or empty.
pub fn mean_prompt_chars(source: &DataSource, date: Option<&str>) -> Option<f64> {
    let path = source_path(source, date);
    let records = read_records(Path::new(&path), source.format, Some(200))?;
    let lens: Vec<usize> = records
        .iter()
        .filter_map(|r| r.get(&source.fields.prompt))
        .map(text_len)
        .collect();
    if lens.is_empty() {
        return None;
    }
    Some(lens.iter().sum::<usize>() as f64 / lens.len() as f64)
}

fn text_len(v: &serde_json::Value) -> usize {
    match v {
        serde_json::Value::String(s) => s.chars().count(),
        serde_json::Value::Array(items) => items
            .iter()
            .map(|m| m.get("content").map_or(0, text_len))
            .sum(),
        other => other.to_string().chars().count(),
    }
}

/// Read records (objects) of a JSONL / JSON-array / CSV file; `max` stops early.
fn read_records(
    path: &Path,
    format: DataFormat,
    max: Option<usize>,
) -> Option<Vec<serde_json::Value>> {
    let format = match format {
        DataFormat::Auto => match path.extension().and_then(|e| e.to_str()) {
            Some("jsonl") | Some("ndjson") => DataFormat::Jsonl,
            Some("json") => DataFormat::Json,
            Some("csv") => DataFormat::Csv,
            _ => return None,
        },
        f => f,
    };
    let cap = max.unwrap_or(usize::MAX);
    match format {
        DataFormat::Jsonl => {
            let text = std::fs::read_to_string(path).ok()?;
            let mut out = Vec::new();
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                if out.len() >= cap {
                    break;
                }
                out.push(serde_json::from_str(line).ok()?);
            }
            Some(out)
        }
        DataFormat::Json => {
            let text = std::fs::read_to_string(path).ok()?;
            match serde_json::from_str(&text).ok()? {
                serde_json::Value::Array(items) => Some(items.into_iter().take(cap).collect()),
                _ => None,
            }
        }
        DataFormat::Csv => {
            let mut rdr = csv::Reader::from_path(path).ok()?;
            let headers = rdr.headers().ok()?.clone();
            let mut out = Vec::new();
            for rec in rdr.records() {
                if out.len() >= cap {
                    break;
                }
                let rec = rec.ok()?;
                let obj: serde_json::Map<String, serde_json::Value> = headers
                    .iter()
                    .zip(rec.iter())
                    .map(|(h, v)| (h.to_string(), serde_json::Value::String(v.to_string())))
                    .collect();
                out.push(serde_json::Value::Object(obj));
            }
            Some(out)
        }
        DataFormat::Auto => None,
    }
}
