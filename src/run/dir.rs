//! The layout of a run directory, `<runs>/<name>/<run-id>/`, and creating / opening one.

use crate::{Error, Result};
use chrono::{DateTime, Utc};
use std::path::{Path, PathBuf};

/// The spec file as the user wrote it.
pub const SPEC_FILE: &str = "spec.yaml";
/// The resolved spec (defaults, `extends`, env and `--set` applied; every field explicit).
pub const RESOLVED_FILE: &str = "spec.resolved.yaml";
/// The compiled plan.
pub const PLAN_FILE: &str = "plan.json";
/// Which stage instances completed ([`super::state::RunState`]).
pub const STATE_FILE: &str = "state.json";
/// The event log ([`super::events`]).
pub const EVENTS_FILE: &str = "events.jsonl";

/// A run directory on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    path: PathBuf,
}

/// The run id for a spec hash at time `now`: `YYYYMMDDTHHMMSSmmmZ-<first 8 hex of the hash>`.
/// Milliseconds, so that ids sort in creation order even for runs of different specs started
/// within one second (the daily loop and the cache look for the newest run by id).
pub fn run_id(now: DateTime<Utc>, spec_hash: &str) -> String {
    let short: String = spec_hash
        .trim_start_matches("sha256:")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(8)
        .collect();
    format!("{}-{short}", now.format("%Y%m%dT%H%M%S%3fZ"))
}

/// A run name made safe as one directory name: characters other than ASCII letters, digits and
/// `._-@=,+` become `_` (so sweep point names like `polychromic@lambda=1.0,seed=2` survive).
pub fn safe_name(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-@=,+".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    match s.as_str() {
        "" | "." | ".." => "unnamed".to_string(),
        _ => s,
    }
}

impl RunDir {
    /// Create a new, empty run directory `<runs_root>/<name>/<run-id>/`. When a directory of that
    /// id exists already (two runs in one second), `-2`, `-3`, ... is appended.
    pub fn create(
        runs_root: &Path,
        name: &str,
        spec_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<RunDir> {
        let parent = runs_root.join(safe_name(name));
        std::fs::create_dir_all(&parent).map_err(|e| Error::io(&parent, e))?;
        let id = run_id(now, spec_hash);
        for n in 1..1000 {
            let candidate = if n == 1 {
                parent.join(&id)
            } else {
                parent.join(format!("{id}-{n}"))
            };
            match std::fs::create_dir(&candidate) {
                Ok(()) => return Ok(RunDir { path: candidate }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(Error::io(&candidate, e)),
            }
        }
        Err(Error::Run(format!(
            "could not create a fresh run directory under {}",
            parent.display()
        )))
    }

    /// Open an existing run directory (for `--resume`); it must hold a `state.json`.
    pub fn open(path: &Path) -> Result<RunDir> {
        let dir = RunDir {
            path: path.to_path_buf(),
        };
        if !dir.state().is_file() {
            return Err(Error::Run(format!(
                "{} is not a run directory (no {STATE_FILE})",
                path.display()
            )));
        }
        Ok(dir)
    }

    /// The directory itself.
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// The run id (the directory's name).
    pub fn id(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
    /// `spec.yaml`.
    pub fn spec(&self) -> PathBuf {
        self.path.join(SPEC_FILE)
    }
    /// `spec.resolved.yaml`.
    pub fn resolved(&self) -> PathBuf {
        self.path.join(RESOLVED_FILE)
    }
    /// `plan.json`.
    pub fn plan(&self) -> PathBuf {
        self.path.join(PLAN_FILE)
    }
    /// `state.json`.
    pub fn state(&self) -> PathBuf {
        self.path.join(STATE_FILE)
    }
    /// `events.jsonl`.
    pub fn events(&self) -> PathBuf {
        self.path.join(EVENTS_FILE)
    }
    /// A stage instance's own artifact folder, `stages/<instance id>/` (created on demand).
    pub fn stage_dir(&self, instance_id: &str) -> Result<PathBuf> {
        let d = self.path.join("stages").join(safe_name(instance_id));
        std::fs::create_dir_all(&d).map_err(|e| Error::io(&d, e))?;
        Ok(d)
    }
}
