//! Snapshots of the trainer state under `<run>/checkpoints/`: numbered `checkpoint-<step>/`
//! every `train.checkpoint.every` steps (the newest `keep_last` kept), `final/` at the end and
//! `best/` on the eval stage's request. Each is a complete copy of `<run>/trainer/` (files are
//! hard-linked when the file system allows: the trainer never rewrites a file in place), made
//! in a temp directory and renamed into place.

use std::path::{Path, PathBuf};

use crate::run::RunDir;
use crate::train::state;
use crate::{Error, Result};

/// The snapshots' parent directory under a run.
pub const CHECKPOINTS_DIR: &str = "checkpoints";
/// Prefix of numbered snapshots.
pub const NUMBERED_PREFIX: &str = "checkpoint-";

/// `<run>/checkpoints/`.
pub fn checkpoints_dir(run: &RunDir) -> PathBuf {
    run.path().join(CHECKPOINTS_DIR)
}

/// Copy the current trainer state to `<run>/checkpoints/<name>/` (atomic, replacing an older
/// snapshot of that name); returns its path.
pub fn save_snapshot(run: &RunDir, name: &str) -> Result<PathBuf> {
    if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
        return Err(Error::Run(format!("invalid checkpoint name `{name}`")));
    }
    let src = state::locate(run)?.ok_or_else(|| {
        Error::Run(format!(
            "cannot save checkpoint `{name}`: {} has no trainer state yet",
            run.path().display()
        ))
    })?;
    let st = state::read_verified(&src)?;
    let parent = checkpoints_dir(run);
    std::fs::create_dir_all(&parent).map_err(|e| Error::io(&parent, e))?;
    let tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempdir_in(&parent)
        .map_err(|e| Error::io(&parent, e))?;
    let mut names: Vec<&str> = st.files.keys().map(String::as_str).collect();
    names.push(state::STATE_FILE);
    for n in names {
        link_or_copy(&src.join(n), &tmp.path().join(n))?;
    }
    let dest = parent.join(name);
    let old = parent.join(format!(".old-{name}"));
    if old.exists() {
        crate::run::atomic::remove_dir(&old)?;
    }
    if dest.exists() {
        std::fs::rename(&dest, &old).map_err(|e| Error::io(&dest, e))?;
    }
    let tmp_path = tmp.keep();
    std::fs::rename(&tmp_path, &dest).map_err(|e| Error::io(&tmp_path, e))?;
    if old.exists() {
        crate::run::atomic::remove_dir(&old)?;
    }
    Ok(dest)
}

fn link_or_copy(from: &Path, to: &Path) -> Result<()> {
    if std::fs::hard_link(from, to).is_ok() {
        return Ok(());
    }
    std::fs::copy(from, to).map_err(|e| Error::io(from, e))?;
    Ok(())
}

/// Save `checkpoint-<step>/` and delete the oldest numbered snapshots beyond `keep_last`.
pub fn save_numbered(run: &RunDir, step: usize, keep_last: Option<usize>) -> Result<PathBuf> {
    let path = save_snapshot(run, &format!("{NUMBERED_PREFIX}{step}"))?;
    if let Some(k) = keep_last {
        let mut steps = numbered(run)?;
        steps.sort_unstable();
        let excess = steps.len().saturating_sub(k.max(1));
        for s in &steps[..excess] {
            let d = checkpoints_dir(run).join(format!("{NUMBERED_PREFIX}{s}"));
            crate::run::atomic::remove_dir(&d)?;
        }
    }
    Ok(path)
}

/// The steps of the numbered snapshots present.
pub fn numbered(run: &RunDir) -> Result<Vec<usize>> {
    let dir = checkpoints_dir(run);
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for e in std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
        let e = e.map_err(|e| Error::io(&dir, e))?;
        if let Some(s) = e
            .file_name()
            .to_str()
            .and_then(|n| n.strip_prefix(NUMBERED_PREFIX))
            .and_then(|n| n.parse::<usize>().ok())
        {
            out.push(s);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// The best eval recorded so far: (metric, value, steps completed).
pub fn best_so_far(run: &RunDir) -> Result<Option<(String, f64, usize)>> {
    Ok(state::load(run)?.and_then(|s| s.best))
}

/// Record `(metric, value, step)` as the best eval in the trainer state and snapshot the state
/// to `checkpoints/best/`. The caller decides that it is better (`eval.keep_best.mode`).
pub fn save_best(run: &RunDir, metric: &str, value: f64, step: usize) -> Result<PathBuf> {
    if !value.is_finite() {
        return Err(Error::Run(format!(
            "best eval {metric} = {value} is not a finite number"
        )));
    }
    state::update(run, |s| s.best = Some((metric.to_string(), value, step)))?;
    save_snapshot(run, "best")
}

/// Make the snapshot at `snapshot` (e.g. another run's `checkpoints/final_model/`) the trainer
/// state of `run` (`<run>/trainer/`, which must not exist yet): verified, then copied (or
/// hard-linked) into a temp directory renamed into place. Returns the state.
pub fn adopt_snapshot(snapshot: &Path, run: &RunDir) -> Result<state::TrainerState> {
    let st = state::read_verified(snapshot)?;
    let dest = state::trainer_dir(run);
    if dest.exists() {
        return Err(Error::Run(format!(
            "cannot start from {}: {} already has a trainer state",
            snapshot.display(),
            run.path().display()
        )));
    }
    let tmp = tempfile::Builder::new()
        .prefix(".tmp-trainer-")
        .tempdir_in(run.path())
        .map_err(|e| Error::io(run.path(), e))?;
    let mut names: Vec<&str> = st.files.keys().map(String::as_str).collect();
    names.push(state::STATE_FILE);
    for n in names {
        link_or_copy(&snapshot.join(n), &tmp.path().join(n))?;
    }
    let tmp_path = tmp.keep();
    std::fs::rename(&tmp_path, &dest).map_err(|e| Error::io(&tmp_path, e))?;
    Ok(st)
}

/// Name of the dated snapshot of a partition: `final_model_YYYYMMDD`.
pub fn dated_final(date: &str) -> String {
    format!("{FINAL_MODEL}_{date}")
}

/// Name of the rolling snapshot of the daily loop (the latest partition's model).
pub const FINAL_MODEL: &str = "final_model";

/// `<run>/checkpoints/` of a run directory given by path.
pub fn checkpoints_dir_of(run: &Path) -> PathBuf {
    run.join(CHECKPOINTS_DIR)
}
