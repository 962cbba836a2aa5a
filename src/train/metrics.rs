//! `metrics.csv`: one row per optimizer step with TRL's metric names, under a header fixed for
//! the run (from the spec: the fixed columns, then `rewards/<fn>/mean|std|unscorable` per
//! reward, then any extra columns). `step` is the number of optimizer steps completed (HF's
//! `global_step`). Each row is one `write` of a whole line followed by fsync; a torn last line
//! (a crash mid-write) is cut off when the file is next opened, and writing a step again
//! (a resumed step) replaces the rows from that step on, so the file never holds a half row or
//! a step twice.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::run::atomic;
use crate::{Error, Result};

/// The metrics file name under the run directory.
pub const METRICS_FILE: &str = "metrics.csv";

/// The columns every run logs, in order (after `step`).
pub const FIXED_COLUMNS: [&str; 18] = [
    "loss",
    "reward",
    "reward_std",
    "frac_reward_zero_std",
    "kl",
    "entropy",
    "clip_ratio/low_mean",
    "clip_ratio/high_mean",
    "clip_ratio/region_mean",
    "grad_norm",
    "lr",
    "completions/mean_length",
    "completions/min_length",
    "completions/max_length",
    "completions/clipped_ratio",
    "num_tokens",
    "tokens_per_s",
    "step_time",
];

/// The header of a run: `step`, the fixed columns, the per-reward columns, then `extra`.
pub fn header(reward_names: &[String], extra: &[String]) -> Vec<String> {
    let mut h = vec!["step".to_string()];
    h.extend(FIXED_COLUMNS.iter().map(|s| s.to_string()));
    for r in reward_names {
        for part in ["mean", "std", "unscorable"] {
            h.push(format!("rewards/{r}/{part}"));
        }
    }
    h.extend(extra.iter().cloned());
    h
}

/// An open `metrics.csv` with its header.
#[derive(Debug)]
pub struct MetricsCsv {
    path: PathBuf,
    header: Vec<String>,
}

fn format_value(v: Option<f64>) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{x}"),
        Some(x) if x.is_nan() => "nan".into(),
        Some(x) if x > 0.0 => "inf".into(),
        Some(_) => "-inf".into(),
        None => String::new(),
    }
}

fn csv_line(fields: &[String]) -> Result<String> {
    let mut w = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(Vec::new());
    w.write_record(fields)
        .map_err(|e| Error::Other(format!("csv: {e}")))?;
    let bytes = w
        .into_inner()
        .map_err(|e| Error::Other(format!("csv: {e}")))?;
    String::from_utf8(bytes).map_err(|e| Error::Other(format!("csv: {e}")))
}

impl MetricsCsv {
    /// Open (creating with `header` if absent) the metrics file at `path`. An existing file
    /// must have the same header; a torn last line is removed.
    pub fn open(path: &Path, header: Vec<String>) -> Result<MetricsCsv> {
        let me = MetricsCsv {
            path: path.to_path_buf(),
            header,
        };
        if !path.is_file() {
            atomic::write_text(path, &csv_line(&me.header)?)?;
            return Ok(me);
        }
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let complete = match text.rfind('\n') {
            Some(i) => &text[..=i],
            None => "",
        };
        let first = complete.lines().next().unwrap_or("");
        let want = csv_line(&me.header)?;
        if first != want.trim_end_matches('\n') {
            return Err(Error::Run(format!(
                "{}: its header is not this run's ({} columns vs {}); was the spec changed?",
                path.display(),
                first.split(',').count(),
                me.header.len()
            )));
        }
        if complete.len() != text.len() {
            atomic::write_text(path, complete)?;
        }
        Ok(me)
    }

    /// The header.
    pub fn header(&self) -> &[String] {
        &self.header
    }

    /// Write the row of `step` (columns not in `values` stay empty; names not in the header
    /// are an error). Rows of `step` or later already in the file are replaced.
    pub fn write_row(&self, step: usize, values: &BTreeMap<String, f64>) -> Result<()> {
        if let Some(k) = values.keys().find(|k| !self.header.contains(k)) {
            return Err(Error::Run(format!(
                "metric `{k}` is not a column of {}",
                self.path.display()
            )));
        }
        self.drop_from(step)?;
        let fields: Vec<String> = self
            .header
            .iter()
            .map(|h| {
                if h == "step" {
                    step.to_string()
                } else {
                    format_value(values.get(h).copied())
                }
            })
            .collect();
        let line = csv_line(&fields)?;
        let mut f = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(|e| Error::io(&self.path, e))?;
        f.write_all(line.as_bytes())
            .and_then(|_| f.sync_data())
            .map_err(|e| Error::io(&self.path, e))
    }

    /// Remove rows whose step is ≥ `step` (rewriting the file atomically when there are any).
    fn drop_from(&self, step: usize) -> Result<()> {
        let text = std::fs::read_to_string(&self.path).map_err(|e| Error::io(&self.path, e))?;
        let mut keep = String::with_capacity(text.len());
        let mut dropped = false;
        for (i, line) in text.split_inclusive('\n').enumerate() {
            let row_step = line
                .split(',')
                .next()
                .and_then(|s| s.trim().parse::<usize>().ok());
            if i > 0 && row_step.is_some_and(|s| s >= step) {
                dropped = true;
                continue;
            }
            keep.push_str(line);
        }
        if dropped {
            atomic::write_text(&self.path, &keep)?;
        }
        Ok(())
    }
}

/// Read `metrics.csv` back: one map per row (empty cells left out).
pub fn read_rows(path: &Path) -> Result<Vec<BTreeMap<String, f64>>> {
    let mut r =
        csv::Reader::from_path(path).map_err(|e| Error::Run(format!("{}: {e}", path.display())))?;
    let header: Vec<String> = r
        .headers()
        .map_err(|e| Error::Run(format!("{}: {e}", path.display())))?
        .iter()
        .map(str::to_string)
        .collect();
    let mut out = Vec::new();
    for rec in r.records() {
        let rec = rec.map_err(|e| Error::Run(format!("{}: {e}", path.display())))?;
        let mut row = BTreeMap::new();
        for (h, v) in header.iter().zip(rec.iter()) {
            if v.is_empty() {
                continue;
            }
            let x: f64 = v.parse().map_err(|_| {
                Error::Run(format!(
                    "{}: `{v}` in column {h} is not a number",
                    path.display()
                ))
            })?;
            row.insert(h.clone(), x);
        }
        out.push(row);
    }
    Ok(out)
}

/// Mean and sample standard deviation (n − 1, as torch's `std`) of `xs`; std is 0 for n < 2.
pub fn mean_std(xs: &[f64]) -> (f64, f64) {
    if xs.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    if xs.len() < 2 {
        return (mean, 0.0);
    }
    let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_replace_and_torn_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(METRICS_FILE);
        let h = header(&["fmt".to_string()], &[]);
        let m = MetricsCsv::open(&p, h.clone()).unwrap();
        let mut v = BTreeMap::from([("loss".to_string(), 0.5)]);
        m.write_row(1, &v).unwrap();
        v.insert("rewards/fmt/mean".into(), 0.25);
        m.write_row(2, &v).unwrap();
        m.write_row(2, &v).unwrap(); // a re-run step replaces its row
        let rows = read_rows(&p).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1]["rewards/fmt/mean"], 0.25);
        assert_eq!(rows[1]["step"], 2.0);
        // A torn last line is cut when reopened.
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"3,0.1,0.").unwrap();
        drop(f);
        let m = MetricsCsv::open(&p, h).unwrap();
        assert_eq!(read_rows(&p).unwrap().len(), 2);
        // Another header is refused.
        assert!(MetricsCsv::open(&p, header(&[], &[])).is_err());
        assert!(m
            .write_row(3, &BTreeMap::from([("nope".into(), 1.0)]))
            .is_err());
    }

    #[test]
    fn sample_std() {
        let (m, s) = mean_std(&[1.0, 2.0, 3.0, 4.0]);
        assert!((m - 2.5).abs() < 1e-12);
        assert!((s - (5.0f64 / 3.0).sqrt()).abs() < 1e-12);
    }
}
