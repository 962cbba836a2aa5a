//! `state.json`: which stage instances of the plan have completed, with their outputs. It is
//! the only thing `--resume` trusts; it is rewritten atomically after every stage instance.
//!
//! Each completed instance may also have a cache record (`cache.<instance id>`, see
//! [`super::cache`]): its cache key, what the key was made of, and where a cached instance was
//! copied from. State files written before caching have none and load unchanged.

use super::atomic;
use super::cache::CacheRecord;
use crate::{Error, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// Version of the `state.json` format; bumped on incompatible changes.
pub const STATE_SCHEMA_VERSION: u32 = 1;

/// The state of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunState {
    /// Format version of this file ([`STATE_SCHEMA_VERSION`]).
    pub schema_version: u32,
    /// The run id (the run directory's name).
    pub run_id: String,
    /// Hash of the resolved spec the run was started with; `--resume` refuses another.
    pub spec_hash: String,
    /// When the run directory was created.
    pub created_at: DateTime<Utc>,
    /// When this file was last written.
    pub updated_at: DateTime<Utc>,
    /// Completed stage instances, in the order they completed.
    pub completed: Vec<StageRecord>,
    /// The last failure, if the last attempt stopped on one (cleared when a stage completes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<StageFailure>,
    /// Cache records of completed instances, by instance id (absent in state files written
    /// before caching).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub cache: BTreeMap<String, CacheRecord>,
}

/// A completed stage instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageRecord {
    /// The plan's id of the instance, e.g. `generate@2025-08-02` or `train`.
    pub id: String,
    /// Its stage kind (`generate`, `score`, ...).
    pub kind: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    /// What the stage produced: artifact paths relative to the run directory, metrics.
    #[serde(default)]
    pub outputs: serde_json::Value,
}

/// The stage instance a run last failed on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageFailure {
    pub id: String,
    pub at: DateTime<Utc>,
    pub message: String,
}

impl RunState {
    /// A fresh state with nothing completed.
    pub fn new(run_id: &str, spec_hash: &str) -> RunState {
        let now = Utc::now();
        RunState {
            schema_version: STATE_SCHEMA_VERSION,
            run_id: run_id.to_string(),
            spec_hash: spec_hash.to_string(),
            created_at: now,
            updated_at: now,
            completed: Vec::new(),
            last_error: None,
            cache: BTreeMap::new(),
        }
    }

    /// Whether the stage instance `id` has completed.
    pub fn is_completed(&self, id: &str) -> bool {
        self.completed.iter().any(|r| r.id == id)
    }

    /// The record of a completed instance.
    pub fn record(&self, id: &str) -> Option<&StageRecord> {
        self.completed.iter().find(|r| r.id == id)
    }

    /// Record a completed instance (replacing an earlier record of the same id, and dropping
    /// its cache record: [`RunState::set_cache`] adds the new one).
    pub fn mark_completed(&mut self, record: StageRecord) {
        self.completed.retain(|r| r.id != record.id);
        self.cache.remove(&record.id);
        self.completed.push(record);
        self.last_error = None;
    }

    /// The cache record of the completed instance `id`, if it has one.
    pub fn cache_record(&self, id: &str) -> Option<&CacheRecord> {
        self.cache.get(id)
    }

    /// Set the cache record of instance `id`.
    pub fn set_cache(&mut self, id: &str, record: CacheRecord) {
        self.cache.insert(id.to_string(), record);
    }

    /// Load `state.json`, refusing other format versions.
    pub fn load(path: &Path) -> Result<RunState> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let raw: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::Run(format!("{}: not valid JSON: {e}", path.display())))?;
        let version = raw.get("schema_version").and_then(|v| v.as_u64());
        if version != Some(u64::from(STATE_SCHEMA_VERSION)) {
            return Err(Error::Run(format!(
                "{}: state schema_version {} is not the supported {STATE_SCHEMA_VERSION}",
                path.display(),
                version.map_or("(missing)".to_string(), |v| v.to_string())
            )));
        }
        serde_json::from_value(raw)
            .map_err(|e| Error::Run(format!("{}: malformed state: {e}", path.display())))
    }

    /// Save atomically, stamping `updated_at`.
    pub fn save(&mut self, path: &Path) -> Result<()> {
        self.updated_at = Utc::now();
        atomic::write_json(path, self)
    }
}
