//! Where each point of a sweep stands, read from the run directories alone (so it works for
//! points run by this process, by child processes, or by Slurm tasks on other machines):
//! the newest run directory of the point's name, its `events.jsonl` (the last `run_finished`,
//! `run_stopped` or `stage_failed`) and its lock (held = running).

use super::table::{PointRecord, PointStatus};
use super::SweepPoint;
use crate::run::dir::{safe_name, EVENTS_FILE, STATE_FILE};
use crate::run::lock::LOCK_FILE;
use crate::run::{Event, RunState};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::io::BufRead;
use std::path::{Path, PathBuf};

/// File in the sweep directory naming the spec and its points (written by `--apply` and
/// `--executor slurm`, read by `runner sweep status DIR`).
pub const MANIFEST_FILE: &str = "points.json";

/// What a sweep directory records about its sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The experiment's name.
    pub name: String,
    /// The spec file (absolute).
    pub spec: PathBuf,
    /// `--set` overrides given to the sweep itself (applied to every point).
    pub sets: Vec<String>,
    /// The root of the run directories.
    pub runs_dir: PathBuf,
    /// The points.
    pub points: Vec<SweepPoint>,
}

impl Manifest {
    /// Read `points.json` from a sweep directory.
    pub fn load(sweep_dir: &Path) -> Result<Manifest> {
        let path = sweep_dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        serde_json::from_str(&text)
            .map_err(|e| Error::Run(format!("{}: not a sweep manifest: {e}", path.display())))
    }

    /// Write `points.json` into a sweep directory (atomically).
    pub fn save(&self, sweep_dir: &Path) -> Result<()> {
        std::fs::create_dir_all(sweep_dir).map_err(|e| Error::io(sweep_dir, e))?;
        crate::run::atomic::write_json(&sweep_dir.join(MANIFEST_FILE), self)
    }
}

/// The directory of a sweep's tables: `<runs>/<sweep name>/`.
pub fn sweep_dir(runs_dir: &Path, sweep_name: &str) -> PathBuf {
    runs_dir.join(safe_name(sweep_name))
}

/// Every run directory (holding a `state.json`) of run name `name`, oldest first.
pub fn run_dirs(runs_dir: &Path, name: &str) -> Vec<PathBuf> {
    let parent = runs_dir.join(safe_name(name));
    let Ok(entries) = std::fs::read_dir(&parent) else {
        return Vec::new();
    };
    let mut dirs: Vec<(chrono::DateTime<chrono::Utc>, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.join(STATE_FILE).is_file())
        .map(|p| {
            let created = RunState::load(&p.join(STATE_FILE))
                .map(|s| s.created_at)
                .unwrap_or_default();
            (created, p)
        })
        .collect();
    dirs.sort();
    dirs.into_iter().map(|(_, p)| p).collect()
}

/// The newest run directory of run name `name`.
pub fn latest_run(runs_dir: &Path, name: &str) -> Option<PathBuf> {
    run_dirs(runs_dir, name).pop()
}

/// A run directory's status, wall time (first to last state write) and error, if any.
#[derive(Debug, Clone, PartialEq)]
pub struct RunProbe {
    /// Where the run stands.
    pub status: PointStatus,
    /// Seconds from creation to the last state write.
    pub wall_s: Option<f64>,
    /// The failure message of a failed run, or the reason of a stop.
    pub error: Option<String>,
}

/// Whether another process holds the run directory's lock.
pub fn is_locked(run_dir: &Path) -> bool {
    let Ok(file) = std::fs::File::open(run_dir.join(LOCK_FILE)) else {
        return false;
    };
    match fs4::fs_std::FileExt::try_lock_shared(&file) {
        Ok(true) => {
            let _ = fs4::fs_std::FileExt::unlock(&file);
            false
        }
        Ok(false) => true,
        Err(_) => false,
    }
}

/// Read a run directory's state: the last terminal event after the last `run_started`
/// decides; without one, a held lock means running, else the run was interrupted.
pub fn probe(run_dir: &Path) -> Result<RunProbe> {
    let state = RunState::load(&run_dir.join(STATE_FILE))?;
    let wall = (state.updated_at - state.created_at).num_milliseconds() as f64 / 1000.0;
    let events_path = run_dir.join(EVENTS_FILE);
    let mut last: Option<Event> = None;
    if let Ok(f) = std::fs::File::open(&events_path) {
        for line in std::io::BufReader::new(f).lines() {
            let line = line.map_err(|e| Error::io(&events_path, e))?;
            // A torn last line (a crash mid-write) is skipped, not fatal.
            let Ok(ev) = serde_json::from_str::<Event>(&line) else {
                continue;
            };
            match ev.kind.as_str() {
                "run_started" => last = None,
                "run_finished" | "run_stopped" | "stage_failed" => last = Some(ev),
                _ => {}
            }
        }
    }
    let text = |ev: &Event, key: &str| {
        ev.payload
            .get(key)
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    let (status, error) = match &last {
        Some(ev) if ev.kind == "run_finished" => (PointStatus::Completed, None),
        Some(ev) if ev.kind == "run_stopped" => (PointStatus::Stopped, text(ev, "reason")),
        Some(ev) => (
            PointStatus::Failed,
            text(ev, "error").or_else(|| state.last_error.as_ref().map(|f| f.message.clone())),
        ),
        None if is_locked(run_dir) => (PointStatus::Running, None),
        None => (PointStatus::Interrupted, None),
    };
    Ok(RunProbe {
        status,
        wall_s: (status != PointStatus::Running).then_some(wall),
        error,
    })
}

/// File in `runs/<point>/` holding why the point's last attempt did not validate (such an
/// attempt creates no run directory); the next attempt that validates removes it.
pub const INVALID_FILE: &str = "invalid.txt";

/// Records that the point `name` failed validation with `error`.
pub fn record_invalid(runs_dir: &Path, name: &str, error: &str) -> Result<()> {
    let dir = runs_dir.join(safe_name(name));
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    crate::run::atomic::write_bytes(&dir.join(INVALID_FILE), error.as_bytes())
}

/// Forgets a recorded validation failure of the point `name` (it validates now).
pub fn clear_invalid(runs_dir: &Path, name: &str) -> Result<()> {
    let f = runs_dir.join(safe_name(name)).join(INVALID_FILE);
    match std::fs::remove_file(&f) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(&f, e)),
        _ => Ok(()),
    }
}

/// The recorded validation failure of the point `name`, if its last attempt did not validate.
pub fn invalid(runs_dir: &Path, name: &str) -> Option<String> {
    std::fs::read_to_string(runs_dir.join(safe_name(name)).join(INVALID_FILE)).ok()
}

/// The record of one point from its newest run directory (pending when it has none; failed
/// when its last attempt did not validate, see [`INVALID_FILE`]). Final
/// metrics are read for completed and stopped runs; failing to read them is noted in `error`.
pub fn point_record(runs_dir: &Path, point: &SweepPoint) -> PointRecord {
    let mut rec = PointRecord::pending(point);
    if let Some(error) = invalid(runs_dir, &point.name) {
        rec.status = PointStatus::Failed;
        rec.error = Some(error);
        return rec;
    }
    let Some(dir) = latest_run(runs_dir, &point.name) else {
        return rec;
    };
    match probe(&dir) {
        Ok(p) => {
            rec.status = p.status;
            rec.wall_s = p.wall_s;
            rec.error = p.error;
        }
        Err(e) => {
            rec.status = PointStatus::Failed;
            rec.error = Some(e.to_string());
        }
    }
    if matches!(rec.status, PointStatus::Completed | PointStatus::Stopped) {
        add_metrics(&mut rec, &dir);
    }
    rec.run_dir = Some(dir);
    rec
}

/// Fill a record's metrics from its run directory; a failure to read them becomes its error.
pub fn add_metrics(rec: &mut PointRecord, run_dir: &Path) {
    match crate::report::runs::final_metrics(run_dir) {
        Ok(m) => rec.metrics = m,
        Err(e) => {
            let note = format!("no final metrics: {e}");
            rec.error = Some(match rec.error.take() {
                Some(prev) => format!("{prev}; {note}"),
                None => note,
            });
        }
    }
}

/// Records of every point of a sweep, read from the run directories.
pub fn collect(runs_dir: &Path, points: &[SweepPoint]) -> Vec<PointRecord> {
    points.iter().map(|p| point_record(runs_dir, p)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A point whose last attempt did not validate shows as failed with its error, until an
    /// attempt validates again.
    #[test]
    fn a_recorded_validation_failure_is_failed_until_cleared() {
        let runs = tempfile::tempdir().unwrap();
        let point = SweepPoint {
            name: "s@t=-1".into(),
            assignments: Vec::new(),
            sets: Vec::new(),
        };
        assert_eq!(
            point_record(runs.path(), &point).status,
            PointStatus::Pending
        );
        record_invalid(runs.path(), &point.name, "generate.temperature: -1 < 0").unwrap();
        let rec = point_record(runs.path(), &point);
        assert_eq!(rec.status, PointStatus::Failed);
        assert_eq!(rec.error.as_deref(), Some("generate.temperature: -1 < 0"));
        clear_invalid(runs.path(), &point.name).unwrap();
        clear_invalid(runs.path(), &point.name).unwrap();
        assert_eq!(
            point_record(runs.path(), &point).status,
            PointStatus::Pending
        );
    }
}
