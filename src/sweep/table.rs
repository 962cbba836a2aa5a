//! The sweep's result tables, `<runs>/<sweep name>/sweep.csv` and `sweep.md`: one row per
//! point with its parameters, status, run directory, wall time and final metrics. Both are
//! rewritten (atomically) after every point, so a sweep killed half-way still leaves a table of
//! what finished.

use super::SweepPoint;
use crate::run::atomic;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// File name of the CSV table in the sweep directory.
pub const CSV_FILE: &str = "sweep.csv";
/// File name of the Markdown table in the sweep directory.
pub const MD_FILE: &str = "sweep.md";

/// Where a point stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PointStatus {
    /// Not started (no run directory yet).
    Pending,
    /// Queued by a scheduler (Slurm), not started.
    Queued,
    /// Its run is in progress (the run directory is locked).
    Running,
    /// Its run finished every stage.
    Completed,
    /// A monitor stopped its run early.
    Stopped,
    /// Its run (or its spec) failed.
    Failed,
    /// Its run ended without finishing or failing (killed, pre-empted); `--resume` continues it.
    Interrupted,
}

impl PointStatus {
    /// The lowercase name used in tables.
    pub fn as_str(self) -> &'static str {
        match self {
            PointStatus::Pending => "pending",
            PointStatus::Queued => "queued",
            PointStatus::Running => "running",
            PointStatus::Completed => "completed",
            PointStatus::Stopped => "stopped",
            PointStatus::Failed => "failed",
            PointStatus::Interrupted => "interrupted",
        }
    }

    /// Whether the point will not change any more by itself.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            PointStatus::Completed
                | PointStatus::Stopped
                | PointStatus::Failed
                | PointStatus::Interrupted
        )
    }
}

impl std::fmt::Display for PointStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One row of the tables.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointRecord {
    /// The point's name (also its run name).
    pub name: String,
    /// Its swept field values (path, value).
    pub assignments: Vec<(String, Value)>,
    /// Where it stands.
    pub status: PointStatus,
    /// Its run directory, once it has one.
    pub run_dir: Option<PathBuf>,
    /// Seconds the point took (spec checks, run, metrics), once it ended.
    pub wall_s: Option<f64>,
    /// Why it failed (first line), or why its metrics could not be read.
    pub error: Option<String>,
    /// Final metrics of its run (`report::runs::final_metrics`).
    pub metrics: BTreeMap<String, f64>,
}

impl PointRecord {
    /// A record for a point that has not started.
    pub fn pending(point: &SweepPoint) -> PointRecord {
        PointRecord {
            name: point.name.clone(),
            assignments: point.assignments.clone(),
            status: PointStatus::Pending,
            run_dir: None,
            wall_s: None,
            error: None,
            metrics: BTreeMap::new(),
        }
    }
}

/// How the Markdown table is ordered: by a metric (points without it last), else in sweep order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SortKey {
    /// The metric column.
    pub metric: Option<String>,
    /// Ascending instead of the default descending (best-first for rewards).
    pub ascending: bool,
}

impl SortKey {
    /// Parse `METRIC`, `METRIC:desc` or `METRIC:asc`.
    pub fn parse(s: &str) -> Result<SortKey> {
        let (metric, dir) = match s.rsplit_once(':') {
            Some((m, d)) if d == "asc" || d == "desc" => (m, d),
            _ => (s, "desc"),
        };
        if metric.is_empty() {
            return Err(Error::Other(format!(
                "--sort {s:?}: give a metric name, e.g. --sort eval/mean_reward"
            )));
        }
        Ok(SortKey {
            metric: Some(metric.to_string()),
            ascending: dir == "asc",
        })
    }
}

/// The swept paths, in the order of the first record that has them.
fn param_paths(records: &[PointRecord]) -> Vec<String> {
    let mut paths: Vec<String> = Vec::new();
    for r in records {
        for (p, _) in &r.assignments {
            if !paths.contains(p) {
                paths.push(p.clone());
            }
        }
    }
    paths
}

/// Every metric name any record has, sorted.
pub fn metric_names(records: &[PointRecord]) -> Vec<String> {
    let set: BTreeSet<&String> = records.iter().flat_map(|r| r.metrics.keys()).collect();
    set.into_iter().cloned().collect()
}

fn param_value(r: &PointRecord, path: &str) -> String {
    r.assignments
        .iter()
        .find(|(p, _)| p == path)
        .map(|(_, v)| super::format_value(v))
        .unwrap_or_default()
}

/// A metric value for the tables: full precision in CSV.
fn csv_number(x: f64) -> String {
    format!("{x}")
}

/// A metric value for the Markdown table: 4 significant decimals.
fn md_number(x: f64) -> String {
    if x == 0.0 || (x.abs() >= 1e-3 && x.abs() < 1e6) {
        format!("{x:.4}")
    } else {
        format!("{x:.3e}")
    }
}

/// The CSV text: `point, <param paths…>, status, run_dir, wall_s, <metrics…>, error`.
pub fn render_csv(records: &[PointRecord]) -> Result<String> {
    let params = param_paths(records);
    let metrics = metric_names(records);
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header: Vec<String> = vec!["point".into()];
    header.extend(params.iter().cloned());
    header.extend(["status", "run_dir", "wall_s"].map(String::from));
    header.extend(metrics.iter().cloned());
    header.push("error".into());
    let csv_err = |e: csv::Error| Error::Other(format!("writing {CSV_FILE}: {e}"));
    w.write_record(&header).map_err(csv_err)?;
    for r in records {
        let mut row: Vec<String> = vec![r.name.clone()];
        row.extend(params.iter().map(|p| param_value(r, p)));
        row.push(r.status.to_string());
        row.push(
            r.run_dir
                .as_ref()
                .map(|d| d.display().to_string())
                .unwrap_or_default(),
        );
        row.push(r.wall_s.map(|s| format!("{s:.3}")).unwrap_or_default());
        row.extend(
            metrics
                .iter()
                .map(|m| r.metrics.get(m).map(|&x| csv_number(x)).unwrap_or_default()),
        );
        row.push(r.error.clone().unwrap_or_default());
        w.write_record(&row).map_err(csv_err)?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| Error::Other(format!("writing {CSV_FILE}: {e}")))?;
    String::from_utf8(bytes).map_err(|e| Error::Other(format!("writing {CSV_FILE}: {e}")))
}

/// Records ordered for display: by the sort metric (missing values last, ties in sweep order).
pub fn sorted<'a>(records: &'a [PointRecord], sort: &SortKey) -> Vec<&'a PointRecord> {
    let mut rows: Vec<&PointRecord> = records.iter().collect();
    if let Some(m) = &sort.metric {
        rows.sort_by(|a, b| {
            let (x, y) = (a.metrics.get(m), b.metrics.get(m));
            match (x, y) {
                (Some(x), Some(y)) => {
                    let o = x.total_cmp(y);
                    if sort.ascending {
                        o
                    } else {
                        o.reverse()
                    }
                }
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            }
        });
    }
    rows
}

fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// The Markdown text: a title, counts per status, and the table (sorted by `sort`).
pub fn render_md(sweep_name: &str, records: &[PointRecord], sort: &SortKey) -> String {
    let params = param_paths(records);
    let mut metrics = metric_names(records);
    if let Some(m) = &sort.metric {
        if let Some(i) = metrics.iter().position(|x| x == m) {
            let first = metrics.remove(i);
            metrics.insert(0, first);
        }
    }
    let mut out = format!("# Sweep `{sweep_name}`\n\n");
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for r in records {
        *counts.entry(r.status.as_str()).or_default() += 1;
    }
    let counts: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
    out.push_str(&format!("{} points: {}.", records.len(), counts.join(", ")));
    match &sort.metric {
        Some(m) => out.push_str(&format!(
            " Sorted by `{m}` ({}).\n\n",
            if sort.ascending {
                "ascending"
            } else {
                "descending"
            }
        )),
        None => out.push_str(" In sweep order.\n\n"),
    }
    let mut header: Vec<String> = vec!["point".into()];
    header.extend(
        params
            .iter()
            .map(|p| p.rsplit('.').next().unwrap_or(p).to_string()),
    );
    header.extend(["status", "wall s"].map(String::from));
    header.extend(metrics.iter().cloned());
    out.push_str(&format!("| {} |\n", header.join(" | ")));
    out.push_str(&format!("|{}\n", "---|".repeat(header.len())));
    for r in sorted(records, sort) {
        let mut row: Vec<String> = vec![md_cell(&r.name)];
        row.extend(params.iter().map(|p| md_cell(&param_value(r, p))));
        row.push(r.status.to_string());
        row.push(r.wall_s.map(|s| format!("{s:.0}")).unwrap_or_default());
        row.extend(
            metrics
                .iter()
                .map(|m| r.metrics.get(m).map(|&x| md_number(x)).unwrap_or_default()),
        );
        out.push_str(&format!("| {} |\n", row.join(" | ")));
    }
    let failures: Vec<&PointRecord> = records.iter().filter(|r| r.error.is_some()).collect();
    if !failures.is_empty() {
        out.push_str("\n## Errors\n\n");
        for r in failures {
            let e = r.error.as_deref().unwrap_or_default();
            out.push_str(&format!("- `{}`: {}\n", r.name, md_cell(e)));
        }
    }
    out
}

/// Write `sweep.csv` and `sweep.md` into `dir` (created if needed), each atomically.
pub fn write_tables(
    dir: &Path,
    sweep_name: &str,
    records: &[PointRecord],
    sort: &SortKey,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    atomic::write_text(&dir.join(CSV_FILE), &render_csv(records)?)?;
    atomic::write_text(&dir.join(MD_FILE), &render_md(sweep_name, records, sort))
}
