//! Named data sets (`train`, `eval`, `data.extra` names, `sft`) and a per-process cache of their
//! loaded records, so steps do not re-read the files.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{load_records, Record};
use crate::spec::{DataSource, Experiment};
use crate::stages::Resources;
use crate::{Error, Result};

const CACHE_KEY: &str = "data/records";

type Cache = BTreeMap<(String, Option<String>), Arc<Vec<Record>>>;

/// The source a set name refers to: `train`, `eval`, `sft` (falls back to `train`) or a name
/// under `data.extra`.
pub fn source<'a>(spec: &'a Experiment, set: &str) -> Result<&'a DataSource> {
    let d = &spec.data;
    let found = match set {
        "train" => d.train.as_ref(),
        "eval" => d.eval.as_ref(),
        "sft" => d.sft.as_ref().or(d.train.as_ref()),
        other => d.extra.get(other),
    };
    found.ok_or_else(|| {
        let mut known: Vec<String> = Vec::new();
        if d.train.is_some() {
            known.push("train".into());
        }
        if d.eval.is_some() {
            known.push("eval".into());
        }
        known.extend(d.extra.keys().cloned());
        Error::Spec(format!(
            "data set `{set}` is not defined (defined: {})",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        ))
    })
}

/// The records of set `set` (for partition `date`), loaded once per process.
pub fn cached(
    resources: &mut Resources,
    spec: &Experiment,
    set: &str,
    date: Option<&str>,
) -> Result<Arc<Vec<Record>>> {
    let key = (set.to_string(), date.map(str::to_string));
    if let Some(r) = resources
        .get_mut::<Cache>(CACHE_KEY)
        .and_then(|c| c.get(&key))
    {
        return Ok(r.clone());
    }
    let src = source(spec, set)?;
    let records = Arc::new(load_records(spec, src, date)?);
    if records.is_empty() {
        return Err(Error::Spec(format!(
            "data set `{set}` ({}) has no records",
            crate::plan::data::source_path(src, date)
        )));
    }
    if resources.get_mut::<Cache>(CACHE_KEY).is_none() {
        resources.insert(CACHE_KEY, Cache::new());
    }
    if let Some(c) = resources.get_mut::<Cache>(CACHE_KEY) {
        c.insert(key, records.clone());
    }
    Ok(records)
}
