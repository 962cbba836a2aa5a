//! `events.jsonl`: an append-only log, one JSON object per line, flushed and synced per event,
//! so a crashed run still has every event up to the crash.

use crate::{Error, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

/// One event of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// When it happened (UTC, RFC 3339).
    pub ts: DateTime<Utc>,
    /// The stage instance id it concerns (`None` for run-level events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    /// What happened, e.g. `run_started`, `stage_started`, `stage_finished`, `stage_failed`.
    pub kind: String,
    /// Kind-specific details.
    #[serde(default)]
    pub payload: serde_json::Value,
}

impl Event {
    /// An event stamped now.
    pub fn now(stage: Option<&str>, kind: &str, payload: serde_json::Value) -> Event {
        Event {
            ts: Utc::now(),
            stage: stage.map(str::to_string),
            kind: kind.to_string(),
            payload,
        }
    }
}

/// An open `events.jsonl`, appending.
#[derive(Debug)]
pub struct EventLog {
    file: File,
    path: PathBuf,
}

impl EventLog {
    /// Open (creating if needed) the log at `path` for appending.
    pub fn open(path: &Path) -> Result<EventLog> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        Ok(EventLog {
            file,
            path: path.to_path_buf(),
        })
    }

    /// Append one event as a line, then flush and sync it.
    pub fn append(&mut self, event: &Event) -> Result<()> {
        let mut line = serde_json::to_string(event)?;
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .and_then(|_| self.file.flush())
            .and_then(|_| self.file.sync_data())
            .map_err(|e| Error::io(&self.path, e))
    }

    /// Append an event stamped now.
    pub fn emit(
        &mut self,
        stage: Option<&str>,
        kind: &str,
        payload: serde_json::Value,
    ) -> Result<()> {
        self.append(&Event::now(stage, kind, payload))
    }

    /// Path of the log.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Read every event of a log. A malformed line is an error naming its line number; a torn last
/// line (a crash mid-write) is skipped.
pub fn read_events(path: &Path) -> Result<Vec<Event>> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let lines: Vec<String> = BufReader::new(file)
        .lines()
        .collect::<std::io::Result<_>>()
        .map_err(|e| Error::io(path, e))?;
    let n = lines.len();
    let mut out = Vec::with_capacity(n);
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(line) {
            Ok(ev) => out.push(ev),
            Err(_) if i + 1 == n => break,
            Err(e) => {
                return Err(Error::Run(format!(
                    "{}:{}: malformed event: {e}",
                    path.display(),
                    i + 1
                )))
            }
        }
    }
    Ok(out)
}
