//! The rows passed between stages on disk (JSONL, written atomically).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::engine::generate::FinishReason;
use crate::{Error, Result};

/// One sampled completion (generate → score).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutRow {
    pub record_id: String,
    /// Index of the prompt within the step's batch (the group).
    pub prompt_index: usize,
    /// Index within the group.
    pub index: usize,
    /// The user text of the prompt.
    pub prompt: String,
    pub completion: String,
    pub prompt_ids: Vec<u32>,
    pub completion_ids: Vec<u32>,
    /// Sampling-time log-probs of the completion tokens (π_old).
    pub logprobs: Vec<f32>,
    pub finish: FinishReason,
    pub task: Option<String>,
    pub reference: Option<Value>,
    /// The raw data record the prompt came from (what rewards may read besides the text).
    #[serde(default)]
    pub record: serde_json::Map<String, Value>,
}

/// A rollout with its rewards (score → rank).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoredRow {
    #[serde(flatten)]
    pub rollout: RolloutRow,
    /// Each reward's score; `null` = unscorable.
    pub rewards: BTreeMap<String, Option<f64>>,
    /// The training reward; `null` = unscorable.
    pub reward: Option<f64>,
}

/// A rollout's advantage (rank → train).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdvantageRow {
    pub record_id: String,
    pub prompt_index: usize,
    pub index: usize,
    pub advantage: f64,
    /// Whether the rollout's group takes part in the loss (false for zero-std groups under
    /// `rank.filter_zero_std`).
    #[serde(default = "yes")]
    pub kept: bool,
}

fn yes() -> bool {
    true
}

/// Write `rows` as JSONL to `path`, atomically.
pub fn write_jsonl<T: Serialize>(path: &Path, rows: &[T]) -> Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| Error::Other(format!("{}: no parent directory", path.display())))?;
    std::fs::create_dir_all(dir).map_err(|e| Error::Io {
        path: dir.to_path_buf(),
        source: e,
    })?;
    let io = |e: std::io::Error| Error::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    {
        let mut w = std::io::BufWriter::new(tmp.as_file_mut());
        for row in rows {
            serde_json::to_writer(&mut w, row)?;
            w.write_all(b"\n").map_err(io)?;
        }
        w.flush().map_err(io)?;
    }
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}

/// Read JSONL rows from `path`; errors name the line.
pub fn read_jsonl<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let row = serde_json::from_str(line)
            .map_err(|e| Error::Run(format!("{}:{}: {e}", path.display(), i + 1)))?;
        out.push(row);
    }
    Ok(out)
}

/// The id of the instance of kind `kind` in the same step or partition as `instance_id`
/// (`step-0003/score` → `step-0003/generate`).
pub fn sibling_id(instance_id: &str, kind: &str) -> String {
    match instance_id.rsplit_once('/') {
        Some((prefix, _)) => format!("{prefix}/{kind}"),
        None => kind.to_string(),
    }
}

/// `path` relative to the run directory (as recorded in stage outputs).
pub fn relative(run: &crate::run::RunDir, path: &Path) -> String {
    path.strip_prefix(run.path())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// The artifact `key` recorded in the outputs of the completed instance `id`, as a path.
pub fn input_path(
    run: &crate::run::RunDir,
    state: &crate::run::RunState,
    id: &str,
    key: &str,
) -> Result<std::path::PathBuf> {
    let rec = state.record(id).ok_or_else(|| {
        Error::Run(format!(
            "stage {id} has not completed: its `{key}` is needed"
        ))
    })?;
    let rel = rec
        .outputs
        .get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| Error::Run(format!("stage {id} recorded no `{key}` output")))?;
    Ok(run.path().join(rel))
}
