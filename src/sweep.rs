//! Sweep expansion: a spec's `sweep` section (grid, zipped lists, seeds, exclusions, sum-to-one
//! constraints) becomes a list of named points. Each point is the spec with a few `--set`
//! overrides, so any point is reproducible alone with `runner apply FILE --set ...`.
//!
//! Order: grid axes (in path order, the first outermost), then the zipped lists, then seeds
//! (innermost). Names are `<name>@<label>=<value>,...`, labels being the last path segment
//! (the full path when two axes share it, or `sweep.labels`).

pub mod jobs;
pub mod slurm;
pub mod status;
pub mod table;

use crate::spec::{Experiment, Sweep};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Tolerance of the `sum_to_one` constraints.
pub const SUM_TOLERANCE: f64 = 1e-9;

/// One point of a sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepPoint {
    /// Stable name, e.g. `polychromic@lambda=1.0,seed=2`.
    pub name: String,
    /// The field values of this point, as (path, value), in axis order.
    pub assignments: Vec<(String, Value)>,
    /// The same as `--set path=value` flags.
    pub sets: Vec<String>,
}

/// One axis of the product: a path and its values (zipped lists form one axis of tuples).
struct Axis {
    paths: Vec<String>,
    values: Vec<Vec<Value>>,
}

/// Expand a spec's sweep. A spec without one gives no points.
pub fn expand(spec: &Experiment) -> Result<Vec<SweepPoint>> {
    if spec.sweep.is_empty() {
        return Ok(Vec::new());
    }
    let base = serde_json::to_value(spec)?;
    expand_sweep(&spec.name, &spec.sweep, &base)
}

/// Expand `sweep` for an experiment called `name` whose resolved spec (as JSON) is `base`
/// (read for `sum_to_one` paths that are not swept).
pub fn expand_sweep(name: &str, sweep: &Sweep, base: &Value) -> Result<Vec<SweepPoint>> {
    let axes = axes(sweep)?;
    let paths: Vec<String> = axes.iter().flat_map(|a| a.paths.clone()).collect();
    check_exclusions(sweep, &paths)?;
    let labels = labels(sweep, &paths);

    let mut points = Vec::new();
    let mut index = vec![0usize; axes.len()];
    loop {
        let assignments: Vec<(String, Value)> = axes
            .iter()
            .zip(&index)
            .flat_map(|(a, &i)| a.paths.iter().cloned().zip(a.values[i].iter().cloned()))
            .collect();
        if !excluded(sweep, &assignments) && sums_hold(sweep, &assignments, base)? {
            points.push(point(name, &labels, assignments));
        }
        // Odometer increment, last axis fastest.
        let mut k = axes.len();
        loop {
            if k == 0 {
                return Ok(points);
            }
            k -= 1;
            index[k] += 1;
            if index[k] < axes[k].values.len() {
                break;
            }
            index[k] = 0;
        }
    }
}

fn axes(sweep: &Sweep) -> Result<Vec<Axis>> {
    let mut axes = Vec::new();
    for (path, values) in &sweep.grid {
        if values.is_empty() {
            return Err(Error::Spec(format!(
                "sweep.grid.{path}: the list of values is empty"
            )));
        }
        axes.push(Axis {
            paths: vec![path.clone()],
            values: values.iter().map(|v| vec![v.clone()]).collect(),
        });
    }
    if !sweep.zip.is_empty() {
        let lens: Vec<(&String, usize)> = sweep.zip.iter().map(|(p, v)| (p, v.len())).collect();
        let n = lens[0].1;
        if lens.iter().any(|(_, l)| *l != n) {
            let detail: Vec<String> = lens.iter().map(|(p, l)| format!("{p} has {l}")).collect();
            return Err(Error::Spec(format!(
                "sweep.zip: zipped lists must have the same length, but {}",
                detail.join(", ")
            )));
        }
        if n == 0 {
            return Err(Error::Spec("sweep.zip: the zipped lists are empty".into()));
        }
        if let Some(p) = sweep.zip.keys().find(|p| sweep.grid.contains_key(*p)) {
            return Err(Error::Spec(format!(
                "sweep.zip.{p}: the path is also in sweep.grid"
            )));
        }
        axes.push(Axis {
            paths: sweep.zip.keys().cloned().collect(),
            values: (0..n)
                .map(|i| sweep.zip.values().map(|v| v[i].clone()).collect())
                .collect(),
        });
    }
    if !sweep.seeds.is_empty() {
        if sweep.grid.contains_key("seed") || sweep.zip.contains_key("seed") {
            return Err(Error::Spec(
                "sweep.seeds: `seed` is also swept in sweep.grid or sweep.zip".into(),
            ));
        }
        axes.push(Axis {
            paths: vec!["seed".into()],
            values: sweep.seeds.iter().map(|s| vec![Value::from(*s)]).collect(),
        });
    }
    Ok(axes)
}

fn check_exclusions(sweep: &Sweep, paths: &[String]) -> Result<()> {
    for (i, entry) in sweep.exclude.iter().enumerate() {
        if entry.is_empty() {
            return Err(Error::Spec(format!(
                "sweep.exclude[{i}]: an empty entry would exclude every point"
            )));
        }
        if let Some(p) = entry.keys().find(|p| !paths.contains(p)) {
            return Err(Error::Spec(format!(
                "sweep.exclude[{i}]: `{p}` is not swept (swept: {})",
                paths.join(", ")
            )));
        }
    }
    Ok(())
}

/// Short labels per path: `sweep.labels`, else the last segment, else (when two paths share
/// it) the full path.
fn labels(sweep: &Sweep, paths: &[String]) -> Vec<(String, String)> {
    let last = |p: &str| p.rsplit('.').next().unwrap_or(p).to_string();
    paths
        .iter()
        .map(|p| {
            let label = match sweep.labels.get(p) {
                Some(l) => l.clone(),
                None => {
                    let short = last(p);
                    let shared = paths.iter().filter(|q| last(q) == short).count() > 1;
                    if shared {
                        p.clone()
                    } else {
                        short
                    }
                }
            };
            (p.clone(), label)
        })
        .collect()
}

fn point(name: &str, labels: &[(String, String)], assignments: Vec<(String, Value)>) -> SweepPoint {
    let parts: Vec<String> = assignments
        .iter()
        .map(|(p, v)| {
            let label = labels
                .iter()
                .find(|(q, _)| q == p)
                .map_or(p.as_str(), |(_, l)| l.as_str());
            format!("{label}={}", format_value(v))
        })
        .collect();
    let sets = assignments
        .iter()
        .map(|(p, v)| format!("{p}={}", set_value(v)))
        .collect();
    SweepPoint {
        name: format!("{name}@{}", parts.join(",")),
        assignments,
        sets,
    }
}

/// A value as it appears in a point name: integers plainly, floats in Rust's shortest
/// round-trip form with a decimal point (`1.0`, `0.3`, `2e-6`), strings unquoted.
pub fn format_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.to_string(),
            (_, Some(u), _) => u.to_string(),
            (_, _, Some(f)) => format!("{f:?}"),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

/// A value as a `--set` right-hand side that parses back (as YAML) to the same value.
pub fn set_value(v: &Value) -> String {
    match v {
        Value::String(s) => {
            let plain = serde_yaml::from_str::<Value>(s).ok() == Some(Value::String(s.clone()));
            if plain && !s.contains(',') {
                s.clone()
            } else {
                Value::String(s.clone()).to_string()
            }
        }
        Value::Number(_) => format_value(v),
        other => other.to_string(),
    }
}

/// Equality of sweep values with numbers compared numerically (`1` equals `1.0`).
pub fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

fn excluded(sweep: &Sweep, assignments: &[(String, Value)]) -> bool {
    sweep.exclude.iter().any(|entry| {
        entry
            .iter()
            .all(|(p, v)| assignments.iter().any(|(q, w)| q == p && same_value(v, w)))
    })
}

fn sums_hold(sweep: &Sweep, assignments: &[(String, Value)], base: &Value) -> Result<bool> {
    if sweep.sum_to_one.is_empty() {
        return Ok(true);
    }
    let mut total = 0.0;
    for path in &sweep.sum_to_one {
        let v = match assignments.iter().find(|(p, _)| p == path) {
            Some((_, v)) => v.clone(),
            None => lookup(base, path).cloned().ok_or_else(|| {
                Error::Spec(format!(
                    "sweep.sum_to_one: `{path}` is not a field of the spec"
                ))
            })?,
        };
        total += v.as_f64().ok_or_else(|| {
            Error::Spec(format!("sweep.sum_to_one: `{path}` is not a number ({v})"))
        })?;
    }
    Ok((total - 1.0).abs() <= SUM_TOLERANCE)
}

/// The value at a dotted path of a JSON value (object keys; list indices as numbers).
pub fn lookup<'a>(root: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(root, |v, seg| match v {
        Value::Object(m) => m.get(seg),
        Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    })
}
