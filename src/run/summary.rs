//! Per-partition summaries of a partitioned run: one row per partition date in
//! `<run>/summary.csv` and one element per date in `<run>/summary.json` (a JSON array).
//!
//! Written (atomically, both files) after every partition by the apply loop, read by
//! `runner report`. The columns are the per-day tables of the daily-loop seed reports:
//! headlines, rollouts, sampler, validity, composite reward, trade-thinking, paragraph quality,
//! leak rate, mean words, judge retries, training steps, average reward and KL.

use crate::run::atomic;
use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// File name of the CSV summary inside a run directory.
pub const SUMMARY_CSV: &str = "summary.csv";
/// File name of the JSON summary inside a run directory.
pub const SUMMARY_JSON: &str = "summary.json";

/// One row of `<run>/summary.csv` and one element of `<run>/summary.json`, per partition date.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PartitionSummary {
    /// Partition date, `YYYYMMDD`.
    pub date: String,
    /// `"done"`, `"skipped: <why>"` or `"pending"`.
    pub status: String,
    /// Prompts (headlines) generated for on this date.
    pub headlines: usize,
    /// Completions generated on this date.
    pub rollouts: usize,
    /// Sampler profile used for this date's generation.
    pub sampler: Option<String>,
    /// Fraction of valid completions (mean of the format/json rewards); `None` when the spec has none.
    pub validity: Option<f64>,
    /// Mean total (weighted) reward of the scored partition.
    pub composite_reward: Option<f64>,
    /// Mean of the keywords (trade-thinking) reward.
    pub trade_thinking: Option<f64>,
    /// Mean of the paragraph-quality reward.
    pub paragraph_quality: Option<f64>,
    /// Fraction of completions that leak the instructions (meta lines / instruction echo).
    pub leak_rate: Option<f64>,
    /// Mean completion length in words.
    pub mean_words: Option<f64>,
    /// Judge calls retried while scoring this partition.
    pub judge_retries: u64,
    /// Optimiser steps trained on this partition.
    pub training_steps: usize,
    /// Mean reward seen by the trainer on this partition.
    pub avg_reward: Option<f64>,
    /// Mean KL to the reference over this partition's training steps.
    pub kl: Option<f64>,
    /// The prediction × outcome date pairs scored for this partition, e.g. `"20250804×20250805"`.
    pub scored_pairs: Vec<String>,
}

/// The CSV header, in field order.
const COLUMNS: [&str; 16] = [
    "date",
    "status",
    "headlines",
    "rollouts",
    "sampler",
    "validity",
    "composite_reward",
    "trade_thinking",
    "paragraph_quality",
    "leak_rate",
    "mean_words",
    "judge_retries",
    "training_steps",
    "avg_reward",
    "kl",
    "scored_pairs",
];

/// Path of the CSV summary of `run`.
pub fn csv_path(run: &Path) -> PathBuf {
    run.join(SUMMARY_CSV)
}

/// Path of the JSON summary of `run`.
pub fn json_path(run: &Path) -> PathBuf {
    run.join(SUMMARY_JSON)
}

/// Write `rows` to `<run>/summary.csv` and `<run>/summary.json`, each atomically.
pub fn write_summaries(run: &Path, rows: &[PartitionSummary]) -> Result<()> {
    atomic::write_text(&csv_path(run), &to_csv(rows)?)?;
    atomic::write_json(&json_path(run), rows)
}

/// Read `<run>/summary.json`; a clear error when the run has no summary (not a partitioned run,
/// or no partition finished yet).
pub fn read_summaries(run: &Path) -> Result<Vec<PartitionSummary>> {
    let path = json_path(run);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::Run(format!(
                "{} has no {SUMMARY_JSON}: it is not a partitioned run (schedule.mode: partitions) \
                 or no partition has finished yet",
                run.display()
            )))
        }
        Err(e) => return Err(Error::io(&path, e)),
    };
    serde_json::from_str(&text)
        .map_err(|e| Error::Run(format!("{}: not a partition summary: {e}", path.display())))
}

/// Insert or replace the row for `row.date`, keeping rows sorted by date.
pub fn upsert(rows: &mut Vec<PartitionSummary>, row: PartitionSummary) {
    match rows.binary_search_by(|r| r.date.as_str().cmp(row.date.as_str())) {
        Ok(i) => rows[i] = row,
        Err(i) => rows.insert(i, row),
    }
}

/// Read the run's summary (empty when it has none yet), apply `f` to the row of `date`
/// (created with status `pending` when absent), and write both files again.
pub fn update_row(run: &Path, date: &str, f: impl FnOnce(&mut PartitionSummary)) -> Result<()> {
    let mut rows = if json_path(run).is_file() {
        read_summaries(run)?
    } else {
        Vec::new()
    };
    let mut row = rows
        .iter()
        .find(|r| r.date == date)
        .cloned()
        .unwrap_or_else(|| PartitionSummary {
            date: date.to_string(),
            status: "pending".into(),
            ..PartitionSummary::default()
        });
    f(&mut row);
    upsert(&mut rows, row);
    write_summaries(run, &rows)
}

/// Render `rows` as CSV (header + one line per row; `None` is an empty cell, `scored_pairs`
/// joined with `;`).
pub fn to_csv(rows: &[PartitionSummary]) -> Result<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let csv_err = |e: csv::Error| Error::Other(format!("summary csv: {e}"));
    w.write_record(COLUMNS).map_err(csv_err)?;
    for r in rows {
        w.write_record([
            r.date.clone(),
            r.status.clone(),
            r.headlines.to_string(),
            r.rollouts.to_string(),
            r.sampler.clone().unwrap_or_default(),
            opt(r.validity),
            opt(r.composite_reward),
            opt(r.trade_thinking),
            opt(r.paragraph_quality),
            opt(r.leak_rate),
            opt(r.mean_words),
            r.judge_retries.to_string(),
            r.training_steps.to_string(),
            opt(r.avg_reward),
            opt(r.kl),
            r.scored_pairs.join(";"),
        ])
        .map_err(csv_err)?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| Error::Other(format!("summary csv: {e}")))?;
    String::from_utf8(bytes).map_err(|e| Error::Other(format!("summary csv: {e}")))
}

fn opt(v: Option<f64>) -> String {
    // A KL of 3.2e-6 is not 0.000000: small non-zero values in scientific notation.
    v.map(|x| {
        if x != 0.0 && x.abs() < 1e-3 {
            format!("{x:.6e}")
        } else {
            format!("{x:.6}")
        }
    })
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(date: &str) -> PartitionSummary {
        PartitionSummary {
            date: date.into(),
            status: "done".into(),
            headlines: 2,
            rollouts: 4,
            sampler: Some("tight".into()),
            validity: Some(0.25),
            training_steps: 1,
            scored_pairs: vec!["20250801×20250802".into()],
            ..Default::default()
        }
    }

    #[test]
    fn small_values_keep_their_digits_in_the_csv() {
        assert_eq!(opt(Some(3.2e-6)), "3.200000e-6");
        assert_eq!(opt(Some(0.25)), "0.250000");
        assert_eq!(opt(Some(0.0)), "0.000000");
        assert_eq!(opt(None), "");
    }

    #[test]
    fn round_trip_and_csv() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_summaries(dir.path())
            .unwrap_err()
            .to_string()
            .contains("summary.json"));
        let mut rows = vec![row("20250803")];
        upsert(&mut rows, row("20250801"));
        let mut again = row("20250803");
        again.status = "skipped: no headlines".into();
        upsert(&mut rows, again.clone());
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].date, "20250801");
        write_summaries(dir.path(), &rows).unwrap();
        assert_eq!(read_summaries(dir.path()).unwrap(), rows);
        let csv = std::fs::read_to_string(csv_path(dir.path())).unwrap();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("date,status,headlines,rollouts,sampler,validity"));
        assert_eq!(
            lines[1],
            "20250801,done,2,4,tight,0.250000,,,,,,0,1,,,20250801×20250802"
        );
        assert!(lines[2].starts_with("20250803,skipped: no headlines,"));
    }
}
