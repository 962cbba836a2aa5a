//! Running sweep points as child processes, at most N at a time (`runner sweep --jobs N`).
//!
//! Each point is one child (`runner sweep FILE --apply --point NAME ...`, built by the caller),
//! its stdout and stderr going to `<sweep dir>/logs/<point>.log`. N worker threads take points in
//! sweep order; the caller hears of every start and end (to update the tables) on its own thread.

use super::SweepPoint;
use crate::run::safe_name;
use crate::{Error, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Instant;

/// What happened to a point's child.
#[derive(Debug)]
pub enum JobEvent {
    /// The child of point `index` started.
    Started {
        /// Index into the points.
        index: usize,
    },
    /// It ended.
    Finished {
        /// Index into the points.
        index: usize,
        /// `Ok(())` on exit status 0, else why not (exit status and the log's last error line).
        outcome: std::result::Result<(), String>,
        /// Seconds it ran.
        wall_s: f64,
        /// Its log file.
        log: PathBuf,
    },
}

/// The log file of a point's child.
pub fn log_path(log_dir: &Path, point: &str) -> PathBuf {
    log_dir.join(format!("{}.log", safe_name(point)))
}

/// The line of a log that best says why a child failed: its last `error:` line, else its
/// last non-empty line.
pub fn failure_line(log: &str) -> Option<String> {
    let lines: Vec<&str> = log
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines
        .iter()
        .rev()
        .find(|l| l.starts_with("error"))
        .or_else(|| lines.last())
        .map(|l| l.to_string())
}

fn run_child(mut cmd: Command, log: &Path) -> std::result::Result<(), String> {
    let file = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let err_file = file
        .try_clone()
        .map_err(|e| format!("{}: {e}", log.display()))?;
    let status = cmd
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(err_file)
        .status()
        .map_err(|e| format!("could not start {:?}: {e}", cmd.get_program()))?;
    if status.success() {
        return Ok(());
    }
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let why = failure_line(&text).unwrap_or_else(|| "no output".into());
    Err(format!("{status}: {why} (log: {})", log.display()))
}

/// Run every point's command, at most `jobs` at once, calling `on_event` (on this thread) for
/// each start and end. Returns when all children ended.
pub fn run_points<F, E>(
    points: &[SweepPoint],
    jobs: usize,
    log_dir: &Path,
    command: F,
    mut on_event: E,
) -> Result<()>
where
    F: Fn(&SweepPoint) -> Command + Sync,
    E: FnMut(JobEvent),
{
    if jobs == 0 {
        return Err(Error::Other("--jobs must be at least 1".into()));
    }
    std::fs::create_dir_all(log_dir).map_err(|e| Error::io(log_dir, e))?;
    let next = AtomicUsize::new(0);
    let (tx, rx) = mpsc::channel::<JobEvent>();
    std::thread::scope(|scope| {
        for _ in 0..jobs.min(points.len()) {
            let tx = tx.clone();
            let (next, command) = (&next, &command);
            scope.spawn(move || loop {
                let index = next.fetch_add(1, Ordering::SeqCst);
                let Some(point) = points.get(index) else {
                    return;
                };
                let log = log_path(log_dir, &point.name);
                if tx.send(JobEvent::Started { index }).is_err() {
                    return;
                }
                let t0 = Instant::now();
                let outcome = run_child(command(point), &log);
                let ev = JobEvent::Finished {
                    index,
                    outcome,
                    wall_s: t0.elapsed().as_secs_f64(),
                    log,
                };
                if tx.send(ev).is_err() {
                    return;
                }
            });
        }
        drop(tx);
        for ev in rx {
            on_event(ev);
        }
    });
    Ok(())
}
