//! `runner compare`: one table of metrics over runs and eval outputs, the first input's
//! column the baseline, with bootstrap confidence intervals of each mean and of the paired
//! difference to the baseline, the change in % and a paired permutation-test p-value.
//!
//! Inputs are run directories (their last eval, plus their final train metrics), output
//! directories of `runner eval` for one checkpoint, or the top directory of a `runner eval`
//! (its checkpoints in order). Run directories whose resolved specs differ only by `seed` are one
//! column: per sample key the values are averaged over the seeds, then
//! resampled / paired like a single run's (the spread over seeds is reported besides).
//!
//! Per-sample metrics ([`crate::report::samples`]) get the statistics; final metrics of runs
//! without per-sample values (`train/…`, `eval/…` of runs whose completions are missing) are
//! shown as values only. Pairs are the sample keys both columns have.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use crate::report::runs::{self, DirKind, EvalSamples};
use crate::report::samples::Unit;
use crate::report::stats;
use crate::{Error, Result};

/// `index.json` of a `runner eval` top directory: the checkpoint output dirs in order.
pub const EVAL_INDEX_FILE: &str = "index.json";

/// Options of [`compare`].
#[derive(Debug, Clone, Serialize)]
pub struct CompareOptions {
    /// Bootstrap resamples (and Monte Carlo permutations).
    pub resamples: usize,
    /// Seed of the resampling.
    pub seed: u64,
    /// Confidence level of the intervals.
    pub level: f64,
    /// Exact permutation test up to this many non-zero paired differences.
    pub exact_max: usize,
    /// Only metrics matching one of these (exact names, or a prefix ending in `*`); empty = the
    /// per-sample metrics plus `train/reward`, `train/kl` and eval metrics without samples.
    pub metrics: Vec<String>,
    /// Aggregate runs that differ only by seed.
    pub aggregate_seeds: bool,
}

impl Default for CompareOptions {
    fn default() -> Self {
        CompareOptions {
            resamples: 10_000,
            seed: 0,
            level: 0.95,
            exact_max: 16,
            metrics: Vec::new(),
            aggregate_seeds: true,
        }
    }
}

/// One column: a run, a seed group of runs, or an eval output.
#[derive(Debug, Clone, Serialize)]
pub struct ColumnInfo {
    pub label: String,
    pub dirs: Vec<PathBuf>,
    /// The seeds of an aggregated group (empty otherwise).
    pub seeds: Vec<u64>,
}

/// One metric of one column.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Cell {
    /// The mean (per-sample metrics) or the final value (mean over seeds).
    pub value: Option<f64>,
    /// Bootstrap interval of the mean.
    pub ci: Option<(f64, f64)>,
    /// Values the mean is over.
    pub n: usize,
    /// Standard deviation of the per-seed values (aggregated columns).
    pub seed_sd: Option<f64>,
    /// Change vs the baseline, in % of |baseline|.
    pub delta_pct: Option<f64>,
    /// Mean paired difference to the baseline (this − baseline).
    pub diff: Option<f64>,
    /// Bootstrap interval of the mean paired difference.
    pub diff_ci: Option<(f64, f64)>,
    /// Pairs with the baseline.
    pub pairs: usize,
    /// Paired permutation-test p-value.
    pub p: Option<f64>,
    /// Whether `p` is exact.
    pub p_exact: Option<bool>,
}

/// One metric row.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub metric: String,
    /// `sample`, `prompt` or `final` (no per-sample values).
    pub unit: String,
    /// One cell per column, baseline first.
    pub cells: Vec<Cell>,
}

/// The comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub columns: Vec<ColumnInfo>,
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
    pub options: CompareOptions,
}

/// A loaded column.
struct Column {
    info: ColumnInfo,
    samples: Option<EvalSamples>,
    finals: BTreeMap<String, f64>,
    finals_sd: BTreeMap<String, f64>,
    /// Per-seed sample means, per metric (aggregated columns).
    seed_means: BTreeMap<String, Vec<f64>>,
}

/// The inputs with `runner eval` top directories expanded into their checkpoint outputs.
pub fn expand_inputs(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for i in inputs {
        let index = i.join(EVAL_INDEX_FILE);
        if index.is_file() && runs::dir_kind(i).is_err() {
            let text = std::fs::read_to_string(&index).map_err(|e| Error::io(&index, e))?;
            let v: Value = serde_json::from_str(&text)
                .map_err(|e| Error::Run(format!("{}: {e}", index.display())))?;
            let dirs = v
                .get("checkpoints")
                .and_then(Value::as_array)
                .ok_or_else(|| Error::Run(format!("{}: no `checkpoints` list", index.display())))?;
            for d in dirs {
                let rel = d.get("dir").and_then(Value::as_str).ok_or_else(|| {
                    Error::Run(format!("{}: a checkpoint without `dir`", index.display()))
                })?;
                out.push(i.join(rel));
            }
        } else {
            out.push(i.clone());
        }
    }
    Ok(out)
}

/// The resolved spec of a run without `seed`, as canonical JSON (the seed-group key).
fn group_key(dir: &Path) -> Option<(String, u64)> {
    let text = std::fs::read_to_string(dir.join(crate::run::dir::RESOLVED_FILE)).ok()?;
    let v: serde_yaml::Value = serde_yaml::from_str(&text).ok()?;
    let mut j: Value = serde_json::to_value(v).ok()?;
    let obj = j.as_object_mut()?;
    let seed = obj.remove("seed").and_then(|s| s.as_u64()).unwrap_or(0);
    Some((crate::spec::resolve::canonical_json(&j), seed))
}

fn dir_label(dir: &Path) -> String {
    let name = |p: &Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| p.display().to_string())
    };
    match runs::dir_kind(dir) {
        Ok(DirKind::Run) => match dir.parent() {
            Some(parent) if parent.file_name().is_some() => name(parent),
            _ => name(dir),
        },
        Ok(DirKind::EvalOutput) => {
            std::fs::read_to_string(dir.join(crate::stages::eval::EVAL_FILE))
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                .and_then(|v| {
                    v.get("checkpoint")?
                        .get("label")?
                        .as_str()
                        .map(str::to_string)
                })
                .unwrap_or_else(|| name(dir))
        }
        Err(_) => name(dir),
    }
}

fn load_member(
    dir: &Path,
    notes: &mut Vec<String>,
) -> Result<(Option<EvalSamples>, BTreeMap<String, f64>)> {
    let finals = runs::final_metrics(dir)?;
    let samples = match runs::eval_samples(dir) {
        Ok(s) => {
            for n in &s.notes {
                notes.push(format!("{}: {n}", dir.display()));
            }
            Some(s)
        }
        Err(e) => {
            notes.push(format!("{}: no per-sample values ({e})", dir.display()));
            None
        }
    };
    Ok((samples, finals))
}

/// Average seed members: keys every member has, value = mean over members.
fn aggregate(
    members: &[(Option<EvalSamples>, BTreeMap<String, f64>)],
    notes: &mut Vec<String>,
    label: &str,
) -> Column {
    let all: Vec<&EvalSamples> = members.iter().filter_map(|m| m.0.as_ref()).collect();
    let samples = if all.len() == members.len() && !all.is_empty() {
        let mut out = EvalSamples::default();
        let metrics: BTreeSet<&String> = all.iter().flat_map(|s| s.metrics.keys()).collect();
        for m in metrics {
            let maps: Vec<Option<&BTreeMap<String, f64>>> =
                all.iter().map(|s| s.metrics.get(m)).collect();
            if maps.iter().any(Option::is_none) {
                notes.push(format!("{label}: {m} is missing in some seeds; left out"));
                continue;
            }
            let maps: Vec<&BTreeMap<String, f64>> = maps.into_iter().flatten().collect();
            let keys: Vec<&String> = maps[0]
                .keys()
                .filter(|k| maps.iter().all(|mm| mm.contains_key(*k)))
                .collect();
            let dropped = maps.iter().map(|mm| mm.len()).max().unwrap_or(0) - keys.len();
            if dropped > 0 {
                notes.push(format!(
                    "{label}: {m}: {dropped} keys not present in every seed were left out"
                ));
            }
            let avg: BTreeMap<String, f64> = keys
                .into_iter()
                .map(|k| {
                    let v = maps.iter().map(|mm| mm[k]).sum::<f64>() / maps.len() as f64;
                    (k.clone(), v)
                })
                .collect();
            if let Some(u) = all[0].units.get(m) {
                out.units.insert(m.clone(), *u);
            }
            out.metrics.insert(m.clone(), avg);
        }
        Some(out)
    } else {
        if !all.is_empty() {
            notes.push(format!(
                "{label}: per-sample values missing for some seeds; only final metrics compared"
            ));
        }
        None
    };
    let mut seed_means: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    if samples.is_some() {
        for s in &all {
            for m in s.metrics.keys() {
                if let Some(x) = s.mean(m) {
                    seed_means.entry(m.clone()).or_default().push(x);
                }
            }
        }
    }
    let keys: BTreeSet<&String> = members.iter().flat_map(|m| m.1.keys()).collect();
    let mut finals = BTreeMap::new();
    let mut finals_sd = BTreeMap::new();
    for k in keys {
        let v: Vec<f64> = members.iter().filter_map(|m| m.1.get(k).copied()).collect();
        if v.len() != members.len() {
            continue;
        }
        if let Some(x) = stats::mean(&v) {
            finals.insert(k.clone(), x);
        }
        if let Some(s) = stats::sd(&v) {
            finals_sd.insert(k.clone(), s);
        }
    }
    Column {
        info: ColumnInfo {
            label: label.to_string(),
            dirs: Vec::new(),
            seeds: Vec::new(),
        },
        samples,
        finals,
        finals_sd,
        seed_means,
    }
}

/// The runs of one column with their seeds.
type SeedMembers = Vec<(PathBuf, u64)>;

fn load_columns(
    inputs: &[PathBuf],
    opts: &CompareOptions,
    notes: &mut Vec<String>,
) -> Result<Vec<Column>> {
    // Group: (key, members) in order of first appearance.
    let mut groups: Vec<(Option<String>, SeedMembers)> = Vec::new();
    for dir in inputs {
        let kind = runs::dir_kind(dir)?;
        let key = if opts.aggregate_seeds && kind == DirKind::Run {
            group_key(dir)
        } else {
            None
        };
        match key {
            Some((k, seed)) => {
                if let Some(g) = groups
                    .iter_mut()
                    .find(|g| g.0.as_deref() == Some(k.as_str()))
                {
                    if g.1.iter().any(|(d, s)| *s == seed && d != dir) {
                        notes.push(format!(
                            "{} has the same spec and seed as {}; both are averaged",
                            dir.display(),
                            g.1[0].0.display()
                        ));
                    }
                    g.1.push((dir.clone(), seed));
                } else {
                    groups.push((Some(k), vec![(dir.clone(), seed)]));
                }
            }
            None => groups.push((None, vec![(dir.clone(), 0)])),
        }
    }
    let mut cols = Vec::new();
    for (key, members) in groups {
        let mut loaded = Vec::new();
        for (d, _) in &members {
            loaded.push(load_member(d, notes)?);
        }
        let base_label = dir_label(&members[0].0);
        let label = if members.len() > 1 {
            format!("{base_label} ({} seeds)", members.len())
        } else {
            base_label
        };
        let mut col = if members.len() == 1 {
            let (samples, finals) = loaded.pop().unwrap_or((None, BTreeMap::new()));
            Column {
                info: ColumnInfo {
                    label: label.clone(),
                    dirs: Vec::new(),
                    seeds: Vec::new(),
                },
                samples,
                finals,
                finals_sd: BTreeMap::new(),
                seed_means: BTreeMap::new(),
            }
        } else {
            aggregate(&loaded, notes, &label)
        };
        col.info.dirs = members.iter().map(|(d, _)| d.clone()).collect();
        if key.is_some() && members.len() > 1 {
            col.info.seeds = members.iter().map(|(_, s)| *s).collect();
        }
        cols.push(col);
    }
    // Unique labels.
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for c in &mut cols {
        let n = seen.entry(c.info.label.clone()).or_insert(0);
        *n += 1;
        if *n > 1 {
            c.info.label = format!("{} #{n}", c.info.label);
        }
    }
    Ok(cols)
}

/// Whether `name` matches a filter (exact, or prefix with a trailing `*`).
pub fn matches(filters: &[String], name: &str) -> bool {
    filters.iter().any(|f| match f.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => f == name,
    })
}

/// Sort rank of a metric name (rewards first, then rates, lengths, diversity, pass@k).
fn metric_rank(m: &str) -> (usize, String) {
    let r = if m == "mean_reward" {
        0
    } else if m.starts_with("reward/") {
        1
    } else if m == "validity" || m == "leak_rate" {
        2
    } else if m == "completion_length" {
        3
    } else if m.starts_with("distinct-") || m.starts_with("self-bleu") || m == "semantic" {
        4
    } else if let Some(k) = m.strip_prefix("pass@") {
        let k: usize = k.parse().unwrap_or(usize::MAX);
        return (5, format!("{k:020}"));
    } else if m.starts_with("eval/") {
        6
    } else if m.starts_with("eval_best/") {
        7
    } else {
        8
    };
    (r, m.to_string())
}

fn pct(diff: f64, base: f64) -> Option<f64> {
    (base != 0.0 && base.is_finite() && diff.is_finite()).then(|| diff / base.abs() * 100.0)
}

fn sample_row(metric: &str, cols: &[Column], opts: &CompareOptions) -> Result<Row> {
    let base = cols[0].samples.as_ref().and_then(|s| s.metrics.get(metric));
    let mut unit = "sample";
    let mut cells = Vec::new();
    for c in cols.iter() {
        let mut cell = Cell::default();
        let Some(vals) = c.samples.as_ref().and_then(|s| s.metrics.get(metric)) else {
            cells.push(cell);
            continue;
        };
        if c.samples.as_ref().and_then(|s| s.units.get(metric)) == Some(&Unit::Prompt) {
            unit = "prompt";
        }
        let xs: Vec<f64> = vals.values().copied().filter(|x| x.is_finite()).collect();
        cell.n = xs.len();
        cell.value = stats::mean(&xs);
        if !xs.is_empty() {
            cell.ci = Some(stats::bootstrap_mean_ci(
                &xs,
                opts.resamples,
                opts.seed,
                opts.level,
            )?);
        }
        cell.seed_sd = c.seed_means.get(metric).and_then(|v| stats::sd(v));
        cells.push(cell);
    }
    // Paired differences against the baseline.
    if let Some(base) = base {
        let base_mean = cells[0].value;
        for (ci, c) in cols.iter().enumerate().skip(1) {
            let Some(vals) = c.samples.as_ref().and_then(|s| s.metrics.get(metric)) else {
                continue;
            };
            let d: Vec<f64> = vals
                .iter()
                .filter_map(|(k, x)| base.get(k).map(|b| x - b))
                .filter(|x| x.is_finite())
                .collect();
            let cell = &mut cells[ci];
            if let (Some(v), Some(b)) = (cell.value, base_mean) {
                cell.delta_pct = pct(v - b, b);
            }
            cell.pairs = d.len();
            if d.is_empty() {
                continue;
            }
            cell.diff = stats::mean(&d);
            cell.diff_ci = Some(stats::bootstrap_mean_ci(
                &d,
                opts.resamples,
                opts.seed,
                opts.level,
            )?);
            let t = stats::paired_permutation_test(&d, opts.resamples, opts.seed, opts.exact_max)?;
            cell.p = Some(t.p);
            cell.p_exact = Some(t.exact);
        }
    }
    Ok(Row {
        metric: metric.to_string(),
        unit: unit.to_string(),
        cells,
    })
}

fn final_row(metric: &str, cols: &[Column]) -> Row {
    let mut cells: Vec<Cell> = cols
        .iter()
        .map(|c| Cell {
            value: c.finals.get(metric).copied(),
            n: c.info.dirs.len(),
            seed_sd: c.finals_sd.get(metric).copied(),
            ..Cell::default()
        })
        .collect();
    if let Some(b) = cells[0].value {
        for c in cells.iter_mut().skip(1) {
            c.delta_pct = c.value.and_then(|v| pct(v - b, b));
        }
    }
    Row {
        metric: metric.to_string(),
        unit: "final".into(),
        cells,
    }
}

/// Compare `inputs` (baseline first).
pub fn compare(inputs: &[PathBuf], opts: &CompareOptions) -> Result<Comparison> {
    let inputs = expand_inputs(inputs)?;
    if inputs.is_empty() {
        return Err(Error::Run("compare: no runs or eval outputs given".into()));
    }
    let mut notes = Vec::new();
    let cols = load_columns(&inputs, opts, &mut notes)?;
    if cols.len() < 2 {
        notes.push("only one column after aggregating seeds: nothing to compare against".into());
    }
    let mut sample_metrics: BTreeSet<String> = cols
        .iter()
        .filter_map(|c| c.samples.as_ref())
        .flat_map(|s| s.metrics.keys().cloned())
        .collect();
    let mut final_metrics: BTreeSet<String> =
        cols.iter().flat_map(|c| c.finals.keys().cloned()).collect();
    if opts.metrics.is_empty() {
        final_metrics.retain(|m| {
            m == "train/reward"
                || m == "train/kl"
                || m.strip_prefix("eval/")
                    .is_some_and(|e| e != "step" && !sample_metrics.contains(e))
        });
    } else {
        sample_metrics.retain(|m| matches(&opts.metrics, m));
        final_metrics.retain(|m| matches(&opts.metrics, m));
        if sample_metrics.is_empty() && final_metrics.is_empty() {
            return Err(Error::Run(format!(
                "compare: no metric matches {}",
                opts.metrics.join(", ")
            )));
        }
    }
    let mut sm: Vec<String> = sample_metrics.into_iter().collect();
    sm.sort_by_key(|m| metric_rank(m));
    let mut fm: Vec<String> = final_metrics.into_iter().collect();
    fm.sort_by_key(|m| metric_rank(m));
    let mut rows = Vec::new();
    for m in &sm {
        rows.push(sample_row(m, &cols, opts)?);
    }
    for m in &fm {
        rows.push(final_row(m, &cols));
    }
    Ok(Comparison {
        columns: cols.into_iter().map(|c| c.info).collect(),
        rows,
        notes,
        options: opts.clone(),
    })
}

/// A number with 4 significant decimals (or `—`).
pub fn num(x: Option<f64>) -> String {
    match x {
        None => "—".into(),
        Some(v) if !v.is_finite() => format!("{v}"),
        Some(v) if v != 0.0 && (v.abs() >= 1e5 || v.abs() < 1e-3) => format!("{v:.3e}"),
        Some(v) => format!("{v:.4}"),
    }
}

fn signed_pct(x: f64) -> String {
    if x >= 0.0 {
        format!("+{x:.1}%")
    } else {
        format!("−{:.1}%", -x)
    }
}

fn p_text(c: &Cell) -> String {
    match (c.p, c.p_exact) {
        (Some(p), Some(true)) => format!("{p:.4}"),
        (Some(p), _) => format!("{p:.4}≈"),
        _ => "—".into(),
    }
}

/// The comparison as a markdown table with notes.
pub fn render_markdown(c: &Comparison) -> String {
    let mut s = String::new();
    let level = (c.options.level * 100.0).round();
    let mut header = vec![
        "Metric".to_string(),
        format!("{} (baseline)", c.columns[0].label),
    ];
    for col in c.columns.iter().skip(1) {
        header.push(col.label.clone());
        header.push("Change".into());
        header.push("p".into());
    }
    s.push_str(&format!("| {} |\n", header.join(" | ")));
    let mut align = vec!["---".to_string(), "---:".to_string()];
    for _ in c.columns.iter().skip(1) {
        align.extend(["---:".to_string(), "---:".to_string(), "---:".to_string()]);
    }
    s.push_str(&format!("|{}|\n", align.join("|")));
    let value_cell = |cell: &Cell| -> String {
        let mut t = num(cell.value);
        if let Some((lo, hi)) = cell.ci {
            t.push_str(&format!(" [{}, {}]", num(Some(lo)), num(Some(hi))));
        }
        t
    };
    for r in &c.rows {
        let mut line = vec![
            if r.unit == "final" {
                r.metric.clone()
            } else {
                format!("{} ({})", r.metric, r.unit)
            },
            value_cell(&r.cells[0]),
        ];
        for cell in r.cells.iter().skip(1) {
            line.push(value_cell(cell));
            let base = r.cells[0].value;
            let change = match cell.delta_pct {
                Some(d) => {
                    let mut t = signed_pct(d);
                    if let (Some((lo, hi)), Some(b)) = (cell.diff_ci, base) {
                        if let (Some(l), Some(h)) = (pct(lo, b), pct(hi, b)) {
                            t.push_str(&format!(" [{}, {}]", signed_pct(l), signed_pct(h)));
                        }
                    }
                    t
                }
                None => match (cell.diff, cell.value, base) {
                    (Some(d), _, _) => format!("{:+.4}", d),
                    (None, Some(v), Some(b)) => format!("{:+.4}", v - b),
                    _ => "—".into(),
                },
            };
            line.push(change);
            line.push(p_text(cell));
        }
        s.push_str(&format!("| {} |\n", line.join(" | ")));
    }
    s.push('\n');
    s.push_str(&format!(
        "Values: mean [{level}% percentile bootstrap CI, B = {}, seed {}] over samples (`sample`) \
         or prompts (`prompt`); `final` rows are the runs' final metrics (no CI). Change: \
         (column − baseline) / |baseline| with the {level}% bootstrap CI of the mean paired \
         difference. p: two-sided paired sign-flip permutation test on the per-key differences \
         (exact up to {} non-zero pairs, else Monte Carlo with B flips, marked ≈).\n",
        c.options.resamples, c.options.seed, c.options.exact_max
    ));
    for col in &c.columns {
        if !col.seeds.is_empty() {
            let seeds: Vec<String> = col.seeds.iter().map(u64::to_string).collect();
            s.push_str(&format!(
                "\n- {}: seeds {} averaged per key",
                col.label,
                seeds.join(", ")
            ));
        }
    }
    for n in &c.notes {
        s.push_str(&format!("\n- {n}"));
    }
    if c.columns.iter().any(|c| !c.seeds.is_empty()) || !c.notes.is_empty() {
        s.push('\n');
    }
    s
}
