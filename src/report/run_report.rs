//! `runner report RUN_DIR`: `report.md`, `report.csv` and a self-contained `report.html` (inline
//! CSS and SVG plots, no scripts, no external resources) of one run.
//!
//! Contents: the run's identity and status; its final metrics; the eval curve (the best eval
//! marked); for a partitioned run the per-partition summary table (`summary.json`, see
//! [`crate::run::summary`]) with a first→last drift row; and in the HTML, plots over optimizer
//! steps of the reward, the reward per reward function and per task, KL, LR, grad norm and
//! completion length, and the eval curve with the best step marked.
//!
//! `report.csv` is the per-partition summary table plus a `drift` row (last − first of each
//! numeric column) for a partitioned run, else the final metrics as `metric,value` rows.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::report::compare::num;
use crate::report::runs::{self, EvalPoint};
use crate::report::svg::{self, esc, Marker, Plot, Series};
use crate::run::summary::PartitionSummary;
use crate::{Error, Result};

/// Report file names.
pub const REPORT_MD: &str = "report.md";
pub const REPORT_CSV: &str = "report.csv";
pub const REPORT_HTML: &str = "report.html";

/// The files written.
#[derive(Debug, Clone)]
pub struct ReportFiles {
    pub markdown: PathBuf,
    pub csv: PathBuf,
    pub html: PathBuf,
}

/// Everything a report shows, read from the run directory.
pub struct RunData {
    pub name: String,
    pub run_id: String,
    pub spec_hash: Option<String>,
    pub completed: usize,
    pub last_error: Option<String>,
    pub finals: BTreeMap<String, f64>,
    pub train: Vec<BTreeMap<String, f64>>,
    pub evals: Vec<EvalPoint>,
    pub best: Option<(String, f64, usize)>,
    /// task → (x, total reward mean) from the score stages' `by_task`.
    pub by_task: BTreeMap<String, Vec<(f64, f64)>>,
    /// Partition summaries, or why there are none.
    pub partitions: std::result::Result<Vec<PartitionSummary>, String>,
}

fn read_json(path: &Path) -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// Read what the report shows from `run`.
pub fn load(run: &Path) -> Result<RunData> {
    if runs::dir_kind(run)? != runs::DirKind::Run {
        return Err(Error::Run(format!(
            "{} is not a run directory (no state.json)",
            run.display()
        )));
    }
    let state = read_json(&run.join(crate::run::dir::STATE_FILE)).unwrap_or(Value::Null);
    let name = runs::recorded_spec(run)
        .ok()
        .flatten()
        .map(|s| s.name)
        .unwrap_or_else(|| {
            run.parent()
                .and_then(Path::file_name)
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        });
    let records = runs::completed_records(run)?;
    let mut by_task: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    let mut partition_x = 0.0;
    for rec in &records {
        if rec.get("kind").and_then(Value::as_str) != Some("score") {
            continue;
        }
        let id = rec.get("id").and_then(Value::as_str).unwrap_or("");
        let x = match id.strip_prefix("step-").and_then(|r| r.split('/').next()) {
            Some(n) => n.parse::<f64>().map(|s| s + 1.0).unwrap_or(f64::NAN),
            None => {
                partition_x += 1.0;
                partition_x
            }
        };
        if let Some(t) = rec
            .get("outputs")
            .and_then(|o| o.get("by_task"))
            .and_then(Value::as_object)
        {
            for (task, per) in t {
                let y = per
                    .get("total")
                    .and_then(|t| t.get("mean"))
                    .and_then(Value::as_f64)
                    .unwrap_or(f64::NAN);
                by_task.entry(task.clone()).or_default().push((x, y));
            }
        }
    }
    let partitions = if crate::run::summary::json_path(run).is_file()
        || crate::run::summary::csv_path(run).is_file()
    {
        crate::run::summary::read_summaries(run).map_err(|e| e.to_string())
    } else {
        Err("not a partitioned run (no summary.json): per-partition table skipped".into())
    };
    Ok(RunData {
        name,
        run_id: run
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        spec_hash: state
            .get("spec_hash")
            .and_then(Value::as_str)
            .map(str::to_string),
        completed: records.len(),
        last_error: state
            .get("last_error")
            .and_then(|e| e.get("message"))
            .and_then(Value::as_str)
            .map(str::to_string),
        finals: runs::final_metrics(run).unwrap_or_default(),
        train: runs::train_rows(run)?,
        evals: runs::eval_points(run)?,
        best: runs::best_eval(run)?,
        by_task,
        partitions,
    })
}

// ---------------------------------------------------------------------------------------------
// partition table
// ---------------------------------------------------------------------------------------------

/// Columns of the per-partition table: (title, value of a row).
type Getter = fn(&PartitionSummary) -> Option<f64>;

const NUMERIC: [(&str, &str, Getter); 11] = [
    ("Headlines", "headlines", |r| Some(r.headlines as f64)),
    ("Rollouts", "rollouts", |r| Some(r.rollouts as f64)),
    ("Validity", "validity", |r| r.validity),
    ("Composite reward", "composite_reward", |r| {
        r.composite_reward
    }),
    ("Trade-thinking", "trade_thinking", |r| r.trade_thinking),
    ("Paragraph quality", "paragraph_quality", |r| {
        r.paragraph_quality
    }),
    ("Leak rate", "leak_rate", |r| r.leak_rate),
    ("Mean words", "mean_words", |r| r.mean_words),
    // Judging and training happen only on a partition that scored predictions (the first
    // partition of a run only generates): elsewhere they have no value, not 0.
    ("Judge retries", "judge_retries", |r| {
        scored(r).then_some(r.judge_retries as f64)
    }),
    ("Training steps", "training_steps", |r| {
        scored(r).then_some(r.training_steps as f64)
    }),
    ("Avg reward", "avg_reward", |r| r.avg_reward),
];

/// Whether the partition scored (and so judged and trained on) any predictions.
fn scored(r: &PartitionSummary) -> bool {
    !r.scored_pairs.is_empty() || r.training_steps > 0 || r.judge_retries > 0
}

/// KL is last in the seed tables; kept apart so the const array stays simple.
fn kl_of(r: &PartitionSummary) -> Option<f64> {
    r.kl
}

fn numeric_columns() -> Vec<(&'static str, &'static str, Getter)> {
    let mut v = NUMERIC.to_vec();
    v.push(("KL", "kl", kl_of));
    v
}

/// First and last present values of a column over the partitions that are done (all rows
/// when none is marked done).
pub fn drift(rows: &[PartitionSummary], get: Getter) -> Option<(f64, f64)> {
    drift_span(rows, get).map(|s| (s.first, s.last))
}

/// A column's first and last present values, with the date of the first.
#[derive(Debug, Clone, PartialEq)]
pub struct DriftSpan {
    /// Date of the first partition that has the value.
    pub first_date: String,
    /// Whether that is a later partition than the first one in the pool (the column has no
    /// value on the earlier ones, e.g. training steps on a generate-only first partition).
    pub starts_later: bool,
    /// First present value.
    pub first: f64,
    /// Last present value.
    pub last: f64,
}

/// [`drift`] with the date the span starts from.
pub fn drift_span(rows: &[PartitionSummary], get: Getter) -> Option<DriftSpan> {
    let done: Vec<&PartitionSummary> = rows.iter().filter(|r| r.status == "done").collect();
    let pool: Vec<&PartitionSummary> = if done.is_empty() {
        rows.iter().collect()
    } else {
        done
    };
    let vals: Vec<(&PartitionSummary, f64)> = pool
        .iter()
        .filter_map(|r| get(r).map(|x| (*r, x)))
        .filter(|(_, x)| x.is_finite())
        .collect();
    let (first_row, first) = *vals.first()?;
    let (_, last) = *vals.last()?;
    Some(DriftSpan {
        first_date: first_row.date.clone(),
        starts_later: pool.first().is_some_and(|p| !std::ptr::eq(*p, first_row)),
        first,
        last,
    })
}

fn cell(v: Option<f64>, integer: bool) -> String {
    match v {
        None => "—".into(),
        Some(x) if integer => format!("{x:.0}"),
        Some(x) => fixed_or_sci(x),
    }
}

/// Four decimals, or three significant digits in scientific notation for a non-zero value
/// that four decimals would show as 0 (a KL of 3e-6 is not 0.0000).
fn fixed_or_sci(x: f64) -> String {
    if x != 0.0 && x.abs() < 5e-4 {
        format!("{x:.2e}")
    } else {
        format!("{x:.4}")
    }
}

fn is_count(key: &str) -> bool {
    matches!(
        key,
        "headlines" | "rollouts" | "judge_retries" | "training_steps"
    )
}

fn signed(x: f64, integer: bool) -> String {
    let body = if integer {
        format!("{:.0}", x.abs())
    } else {
        fixed_or_sci(x.abs())
    };
    if x < 0.0 {
        format!("−{body}")
    } else {
        format!("+{body}")
    }
}

/// The per-partition table as rows of cells (header first), with the drift row last.
pub fn partition_table(rows: &[PartitionSummary]) -> Vec<Vec<String>> {
    let cols = numeric_columns();
    let mut out = Vec::new();
    let mut header = vec!["Date".to_string(), "Status".into(), "Sampler".into()];
    header.extend(cols.iter().map(|c| c.0.to_string()));
    header.push("Scored pairs".into());
    out.push(header);
    for r in rows {
        let mut line = vec![
            r.date.clone(),
            r.status.clone(),
            r.sampler.clone().unwrap_or_else(|| "—".into()),
        ];
        line.extend(cols.iter().map(|c| cell(c.2(r), is_count(c.1))));
        line.push(r.scored_pairs.join(" "));
        out.push(line);
    }
    let mut d = vec!["first→last".to_string(), String::new(), String::new()];
    d.extend(cols.iter().map(|c| match drift_span(rows, c.2) {
        Some(span) => {
            let int = is_count(c.1);
            let (a, b) = (span.first, span.last);
            let from = if span.starts_later {
                format!(" from {}", span.first_date)
            } else {
                String::new()
            };
            format!(
                "{} → {} ({}){from}",
                cell(Some(a), int),
                cell(Some(b), int),
                signed(b - a, int)
            )
        }
        None => "—".into(),
    }));
    d.push(String::new());
    out.push(d);
    out
}

fn partition_csv(rows: &[PartitionSummary]) -> Result<String> {
    let cols = numeric_columns();
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header = vec!["date", "status", "sampler"];
    header.extend(cols.iter().map(|c| c.1));
    header.push("scored_pairs");
    let err = |e: csv::Error| Error::Other(format!("csv: {e}"));
    w.write_record(&header).map_err(err)?;
    let opt = |v: Option<f64>| v.map(|x| format!("{x}")).unwrap_or_default();
    for r in rows {
        let mut line = vec![
            r.date.clone(),
            r.status.clone(),
            r.sampler.clone().unwrap_or_default(),
        ];
        line.extend(cols.iter().map(|c| opt(c.2(r))));
        line.push(r.scored_pairs.join(" "));
        w.write_record(&line).map_err(err)?;
    }
    let mut d = vec!["drift".to_string(), "last-first".into(), String::new()];
    d.extend(
        cols.iter()
            .map(|c| opt(drift(rows, c.2).map(|(a, b)| b - a))),
    );
    d.push(String::new());
    w.write_record(&d).map_err(err)?;
    let bytes = w
        .into_inner()
        .map_err(|e| Error::Other(format!("csv: {e}")))?;
    String::from_utf8(bytes).map_err(|e| Error::Other(format!("csv: {e}")))
}

fn finals_csv(finals: &BTreeMap<String, f64>) -> Result<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let err = |e: csv::Error| Error::Other(format!("csv: {e}"));
    w.write_record(["metric", "value"]).map_err(err)?;
    for (k, v) in finals {
        w.write_record([k.clone(), format!("{v}")]).map_err(err)?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| Error::Other(format!("csv: {e}")))?;
    String::from_utf8(bytes).map_err(|e| Error::Other(format!("csv: {e}")))
}

// ---------------------------------------------------------------------------------------------
// plots
// ---------------------------------------------------------------------------------------------

fn series_of(train: &[BTreeMap<String, f64>], col: &str, name: &str) -> Series {
    Series {
        name: name.to_string(),
        points: train
            .iter()
            .filter_map(|r| Some((*r.get("step")?, r.get(col).copied().unwrap_or(f64::NAN))))
            .collect(),
    }
}

/// The metric the eval curve shows: the keep-best metric, else `mean_reward`, else the first.
fn eval_metric(d: &RunData) -> Option<String> {
    let has = |m: &str| d.evals.iter().any(|e| e.metrics.contains_key(m));
    if let Some((m, _, _)) = &d.best {
        if has(m) {
            return Some(m.clone());
        }
    }
    if has("mean_reward") {
        return Some("mean_reward".into());
    }
    d.evals
        .iter()
        .find_map(|e| e.metrics.keys().next().cloned())
}

/// The x of an eval: steps completed, else its position (dates as labels).
fn eval_xs(d: &RunData) -> (Vec<f64>, Vec<(f64, String)>) {
    if d.evals.iter().all(|e| e.step.is_some()) {
        return (
            d.evals.iter().map(|e| e.step.unwrap_or(0) as f64).collect(),
            Vec::new(),
        );
    }
    let xs: Vec<f64> = (1..=d.evals.len()).map(|i| i as f64).collect();
    let labels = d
        .evals
        .iter()
        .zip(&xs)
        .map(|(e, x)| (*x, e.date.clone().unwrap_or_else(|| e.id.clone())))
        .collect();
    (xs, labels)
}

/// The report's plots.
pub fn plots(d: &RunData) -> Vec<Plot> {
    let t = &d.train;
    let step = "optimizer step".to_string();
    let mk = |id: &str, title: &str, y: &str, series: Vec<Series>| Plot {
        id: id.into(),
        title: title.into(),
        x_label: step.clone(),
        y_label: y.into(),
        series,
        ..Plot::default()
    };
    let mut reward_cols: Vec<String> = t
        .iter()
        .flat_map(|r| r.keys())
        .filter(|k| k.starts_with("rewards/") && k.ends_with("/mean"))
        .cloned()
        .collect();
    reward_cols.sort();
    reward_cols.dedup();
    let per_fn: Vec<Series> = reward_cols
        .iter()
        .map(|c| {
            let name = c
                .trim_start_matches("rewards/")
                .trim_end_matches("/mean")
                .to_string();
            series_of(t, c, &name)
        })
        .collect();
    let per_task: Vec<Series> = d
        .by_task
        .iter()
        .map(|(task, pts)| Series {
            name: task.clone(),
            points: pts.clone(),
        })
        .collect();
    let mut out = vec![
        mk(
            "reward",
            "Reward",
            "mean reward",
            vec![series_of(t, "reward", "reward")],
        ),
        mk(
            "reward-per-function",
            "Reward per reward function",
            "mean",
            per_fn,
        ),
        mk(
            "reward-per-task",
            "Reward per task",
            "mean total reward",
            per_task,
        ),
        mk(
            "kl",
            "KL to the reference",
            "kl",
            vec![series_of(t, "kl", "kl")],
        ),
        mk("lr", "Learning rate", "lr", vec![series_of(t, "lr", "lr")]),
        mk(
            "grad-norm",
            "Gradient norm",
            "grad norm",
            vec![series_of(t, "grad_norm", "grad_norm")],
        ),
        mk(
            "completion-length",
            "Completion length",
            "tokens",
            vec![
                series_of(t, "completions/mean_length", "mean"),
                series_of(t, "completions/min_length", "min"),
                series_of(t, "completions/max_length", "max"),
            ],
        ),
    ];
    let metric = eval_metric(d);
    let (xs, labels) = eval_xs(d);
    let mut eval = Plot {
        id: "eval".into(),
        title: format!(
            "Eval: {}",
            metric.clone().unwrap_or_else(|| "(none)".into())
        ),
        x_label: if labels.is_empty() {
            "steps completed".into()
        } else {
            "partition".into()
        },
        y_label: metric.clone().unwrap_or_default(),
        x_labels: labels,
        ..Plot::default()
    };
    if let Some(m) = &metric {
        eval.series.push(Series {
            name: m.clone(),
            points: d
                .evals
                .iter()
                .zip(&xs)
                .map(|(e, x)| (*x, e.metrics.get(m).copied().unwrap_or(f64::NAN)))
                .collect(),
        });
        if let Some((bm, bv, bs)) = &d.best {
            if bm == m {
                let x = if eval.x_labels.is_empty() {
                    Some(*bs as f64)
                } else {
                    // Partition evals: the eval whose value is the best.
                    d.evals
                        .iter()
                        .zip(&xs)
                        .find(|(e, _)| e.metrics.get(m) == Some(bv))
                        .map(|(_, x)| *x)
                };
                if let Some(x) = x {
                    eval.markers.push(Marker {
                        x,
                        y: *bv,
                        label: format!("best {}", num(Some(*bv))),
                    });
                }
            }
        }
    }
    out.push(eval);
    out
}

// ---------------------------------------------------------------------------------------------
// rendering
// ---------------------------------------------------------------------------------------------

fn md_table(rows: &[Vec<String>], numeric_from: usize) -> String {
    let mut s = String::new();
    let Some(header) = rows.first() else {
        return s;
    };
    let _ = writeln!(s, "| {} |", header.join(" | "));
    let align: Vec<&str> = (0..header.len())
        .map(|i| if i >= numeric_from { "---:" } else { "---" })
        .collect();
    let _ = writeln!(s, "|{}|", align.join("|"));
    for r in &rows[1..] {
        let cells: Vec<String> = r.iter().map(|c| c.replace('|', "\\|")).collect();
        let _ = writeln!(s, "| {} |", cells.join(" | "));
    }
    s
}

fn eval_table(d: &RunData) -> Vec<Vec<String>> {
    let mut names: Vec<String> = d
        .evals
        .iter()
        .flat_map(|e| e.metrics.keys().cloned())
        .collect();
    names.sort();
    names.dedup();
    let mut out = vec![{
        let mut h = vec!["Eval".to_string(), "Step".into()];
        h.extend(names.iter().cloned());
        h
    }];
    for e in &d.evals {
        let is_best = d.best.as_ref().is_some_and(|(m, v, s)| {
            e.metrics.get(m) == Some(v) && e.step.is_none_or(|st| st == *s)
        });
        let mut line = vec![
            format!("{}{}", e.id, if is_best { " ★ best" } else { "" }),
            e.step
                .map(|s| s.to_string())
                .or_else(|| e.date.clone())
                .unwrap_or_else(|| "—".into()),
        ];
        line.extend(names.iter().map(|n| num(e.metrics.get(n).copied())));
        out.push(line);
    }
    out
}

fn finals_table(d: &RunData) -> Vec<Vec<String>> {
    let mut out = vec![vec!["Metric".to_string(), "Value".into()]];
    for (k, v) in &d.finals {
        out.push(vec![k.clone(), num(Some(*v))]);
    }
    out
}

/// `report.md`.
pub fn markdown(d: &RunData) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Run report: {} ({})\n", d.name, d.run_id);
    if let Some(h) = &d.spec_hash {
        let _ = writeln!(s, "- spec hash: `{h}`");
    }
    let _ = writeln!(s, "- stage instances completed: {}", d.completed);
    let _ = writeln!(s, "- optimizer steps logged: {}", d.train.len());
    if let Some(e) = &d.last_error {
        let _ = writeln!(s, "- last error: {e}");
    }
    if let Some((m, v, st)) = &d.best {
        let _ = writeln!(s, "- best eval: {m} = {} after step {st}", num(Some(*v)));
    }
    s.push_str("\n## Final metrics\n\n");
    if d.finals.is_empty() {
        s.push_str("No metrics yet.\n");
    } else {
        s.push_str(&md_table(&finals_table(d), 1));
    }
    s.push_str("\n## Eval curve\n\n");
    if d.evals.is_empty() {
        s.push_str("No eval has completed.\n");
    } else {
        s.push_str(&md_table(&eval_table(d), 1));
    }
    s.push_str("\n## Per-partition summary\n\n");
    match &d.partitions {
        Ok(rows) if !rows.is_empty() => s.push_str(&md_table(&partition_table(rows), 3)),
        Ok(_) => s.push_str("The run's summary has no partitions yet.\n"),
        Err(why) => {
            let _ = writeln!(s, "Skipped: {why}.");
        }
    }
    s
}

fn html_table(rows: &[Vec<String>], numeric_from: usize) -> String {
    let mut s = String::from("<table>");
    for (i, r) in rows.iter().enumerate() {
        s.push_str("<tr>");
        for (j, c) in r.iter().enumerate() {
            let tag = if i == 0 { "th" } else { "td" };
            let class = if j >= numeric_from {
                " class=\"num\""
            } else {
                ""
            };
            let _ = write!(s, "<{tag}{class}>{}</{tag}>", esc(c));
        }
        s.push_str("</tr>");
    }
    s.push_str("</table>");
    s
}

const CSS: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1400px}\
table{border-collapse:collapse;margin:1em 0;font-size:13px}\
td,th{border:1px solid #ccc;padding:3px 8px}th{background:#f4f4f4}td.num{text-align:right}\
.plots{display:flex;flex-wrap:wrap;gap:12px}figure.plot{margin:0;border:1px solid #ddd;padding:4px}\
figcaption{font-size:12px;color:#555}svg text{font-size:11px;fill:#333}svg text.title{font-size:13px;font-weight:600}\
svg text.empty{fill:#999;font-size:14px}svg text.mark{fill:#d62728;font-weight:600}";

/// `report.html` (self-contained).
pub fn html(d: &RunData) -> String {
    let mut s = String::new();
    let title = format!("Run report: {} ({})", d.name, d.run_id);
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{CSS}</style></head><body>",
        esc(&title)
    );
    let _ = write!(s, "<h1>{}</h1><ul>", esc(&title));
    if let Some(h) = &d.spec_hash {
        let _ = write!(s, "<li>spec hash: <code>{}</code></li>", esc(h));
    }
    let _ = write!(
        s,
        "<li>stage instances completed: {}</li><li>optimizer steps logged: {}</li>",
        d.completed,
        d.train.len()
    );
    if let Some(e) = &d.last_error {
        let _ = write!(s, "<li>last error: {}</li>", esc(e));
    }
    if let Some((m, v, st)) = &d.best {
        let _ = write!(
            s,
            "<li>best eval: {} = {} after step {st}</li>",
            esc(m),
            num(Some(*v))
        );
    }
    s.push_str("</ul><h2>Plots</h2><div class=\"plots\">");
    for p in plots(d) {
        let has = svg::has_data(&p);
        let _ = write!(
            s,
            "<figure class=\"plot\" id=\"plot-{}\" data-has-data=\"{has}\">{}<figcaption>{}</figcaption></figure>",
            esc(&p.id),
            svg::render(&p),
            esc(&p.title)
        );
    }
    s.push_str("</div><h2>Final metrics</h2>");
    if d.finals.is_empty() {
        s.push_str("<p>No metrics yet.</p>");
    } else {
        s.push_str(&html_table(&finals_table(d), 1));
    }
    s.push_str("<h2>Eval curve</h2>");
    if d.evals.is_empty() {
        s.push_str("<p>No eval has completed.</p>");
    } else {
        s.push_str(&html_table(&eval_table(d), 1));
    }
    s.push_str("<h2>Per-partition summary</h2>");
    match &d.partitions {
        Ok(rows) if !rows.is_empty() => s.push_str(&html_table(&partition_table(rows), 3)),
        Ok(_) => s.push_str("<p>The run's summary has no partitions yet.</p>"),
        Err(why) => {
            let _ = write!(s, "<p>Skipped: {}.</p>", esc(why));
        }
    }
    s.push_str("</body></html>\n");
    s
}

/// Write `report.md`, `report.csv` and `report.html` into `out` (default: the run directory).
pub fn write_report(run: &Path, out: Option<&Path>) -> Result<ReportFiles> {
    let d = load(run)?;
    let dir = out.unwrap_or(run);
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let files = ReportFiles {
        markdown: dir.join(REPORT_MD),
        csv: dir.join(REPORT_CSV),
        html: dir.join(REPORT_HTML),
    };
    crate::run::atomic::write_text(&files.markdown, &markdown(&d))?;
    let csv = match &d.partitions {
        Ok(rows) if !rows.is_empty() => partition_csv(rows)?,
        _ => finals_csv(&d.finals)?,
    };
    crate::run::atomic::write_text(&files.csv, &csv)?;
    crate::run::atomic::write_text(&files.html, &html(&d))?;
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(date: &str, status: &str, composite: Option<f64>, headlines: usize) -> PartitionSummary {
        PartitionSummary {
            date: date.into(),
            status: status.into(),
            headlines,
            composite_reward: composite,
            ..PartitionSummary::default()
        }
    }

    #[test]
    fn drift_first_to_last_over_done_rows() {
        let rows = vec![
            row("20250802", "done", Some(0.2933), 32),
            row("20250803", "skipped: no headlines", None, 0),
            row("20250804", "done", None, 31),
            row("20250805", "done", Some(0.2110), 31),
        ];
        let (a, b) = drift(&rows, |r| r.composite_reward).unwrap();
        assert_eq!((a, b), (0.2933, 0.2110));
        let t = partition_table(&rows);
        let last = t.last().unwrap();
        assert_eq!(last[0], "first→last");
        let ci = t[0].iter().position(|h| h == "Composite reward").unwrap();
        assert_eq!(last[ci], "0.2933 → 0.2110 (−0.0823)");
        let hi = t[0].iter().position(|h| h == "Headlines").unwrap();
        assert_eq!(last[hi], "32 → 31 (−1)");
        let csv = partition_csv(&rows).unwrap();
        let drift_line = csv.lines().last().unwrap();
        assert!(
            drift_line.starts_with("drift,last-first,,-1,"),
            "{drift_line}"
        );
    }

    /// Judge retries and training steps have no value on a generate-only partition (the first
    /// of a run): their first→last row starts from the first partition that trained, and says
    /// which.
    #[test]
    fn training_drift_starts_from_the_first_trained_partition() {
        let trained = |date: &str, steps: usize, retries: u64, kl: f64| PartitionSummary {
            training_steps: steps,
            judge_retries: retries,
            kl: Some(kl),
            scored_pairs: vec![format!("x×{date}")],
            ..row(date, "done", Some(0.5), 2)
        };
        let rows = vec![
            row("20250802", "done", Some(0.4), 2),
            trained("20250803", 4, 3, 1e-4),
            trained("20250804", 6, 1, 2e-4),
        ];
        let t = partition_table(&rows);
        let col = |name: &str| t[0].iter().position(|h| h == name).unwrap();
        let last = t.last().unwrap();
        assert_eq!(last[col("Training steps")], "4 → 6 (+2) from 20250803");
        assert_eq!(last[col("Judge retries")], "3 → 1 (−2) from 20250803");
        assert_eq!(
            last[col("KL")],
            "1.00e-4 → 2.00e-4 (+1.00e-4) from 20250803"
        );
        // Columns present from the first partition on say nothing more.
        assert_eq!(last[col("Headlines")], "2 → 2 (+0)");
        assert_eq!(t[1][col("Training steps")], "—");
        let csv = partition_csv(&rows).unwrap();
        let drift_line = csv.lines().last().unwrap();
        let steps_at = csv
            .lines()
            .next()
            .unwrap()
            .split(',')
            .position(|h| h == "training_steps")
            .unwrap();
        assert_eq!(drift_line.split(',').nth(steps_at), Some("2"), "{csv}");
    }
}
