//! The Slurm executor: one sbatch job array per sweep, one array task per point, each task
//! running that point with `runner sweep FILE --apply --point NAME` (the same code path as
//! `runner apply`); resources from the spec's `resources` section. `squeue` / `sacct` report the
//! tasks' scheduler states for `runner sweep status`.

use super::table::PointStatus;
use crate::spec::Resources;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Sub-directory of the sweep directory for the script, the task logs and the job record.
pub const SLURM_DIR: &str = "slurm";
/// The job array script.
pub const SCRIPT_FILE: &str = "sweep.sbatch";
/// The record of the submission ([`Submission`]).
pub const JOB_FILE: &str = "job.json";

/// Everything the job array script needs.
#[derive(Debug, Clone)]
pub struct ArrayJob {
    /// Slurm job name (the sweep's name).
    pub job_name: String,
    /// Working directory of every task (absolute; spec-relative paths resolve from it).
    pub workdir: PathBuf,
    /// Directory of the task logs `%A_%a.out` (absolute).
    pub log_dir: PathBuf,
    /// Resources of one task.
    pub resources: Resources,
    /// At most this many tasks at once (`--array=…%N`); `None` = as the cluster allows.
    pub max_parallel: Option<usize>,
    /// One command (argv) per array task, with the point's name.
    pub tasks: Vec<(String, Vec<String>)>,
}

/// What was submitted, kept in `slurm/job.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Submission {
    /// The Slurm job id of the array.
    pub job_id: String,
    /// When it was submitted (RFC 3339).
    pub submitted_at: String,
    /// The script submitted.
    pub script: PathBuf,
    /// Point names, indexed by array task id.
    pub points: Vec<String>,
}

impl Submission {
    /// Read `slurm/job.json` of a sweep directory; `None` when the sweep was never submitted.
    pub fn load(sweep_dir: &Path) -> Result<Option<Submission>> {
        let path = sweep_dir.join(SLURM_DIR).join(JOB_FILE);
        if !path.is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| Error::Run(format!("{}: {e}", path.display())))
    }

    /// Write it into `slurm/job.json` of a sweep directory (atomically).
    pub fn save(&self, sweep_dir: &Path) -> Result<()> {
        let dir = sweep_dir.join(SLURM_DIR);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        crate::run::atomic::write_json(&dir.join(JOB_FILE), self)
    }
}

/// A word quoted for a POSIX shell (single quotes; a `'` inside becomes `'\''`).
pub fn shell_quote(s: &str) -> String {
    let safe = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./=:,@+%".contains(c));
    if safe {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// A value that goes into an `#SBATCH` line: no whitespace, quotes or shell characters (a
/// newline there would end the directive and start a command).
fn directive_value(field: &str, v: &str) -> Result<String> {
    if v.is_empty()
        || !v
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.,:-".contains(c))
    {
        return Err(Error::Spec(format!(
            "resources.{field}: {v:?} may only hold letters, digits and `_.,:-`"
        )));
    }
    Ok(v.to_string())
}

/// The `#SBATCH` lines of a task's resources.
pub fn resource_directives(r: &Resources) -> Result<Vec<String>> {
    let mut out = Vec::new();
    if let Some(g) = r.gpus {
        out.push(format!("#SBATCH --gres=gpu:{g}"));
    }
    if let Some(c) = r.cpus {
        out.push(format!("#SBATCH --cpus-per-task={c}"));
    }
    if let Some(m) = &r.memory {
        out.push(format!("#SBATCH --mem={}", directive_value("memory", m)?));
    }
    if let Some(t) = &r.time {
        out.push(format!("#SBATCH --time={}", directive_value("time", t)?));
    }
    if let Some(p) = &r.partition {
        out.push(format!(
            "#SBATCH --partition={}",
            directive_value("partition", p)?
        ));
    }
    if let Some(a) = &r.account {
        out.push(format!(
            "#SBATCH --account={}",
            directive_value("account", a)?
        ));
    }
    Ok(out)
}

/// The sbatch script of a job array: directives, then a `case` on `SLURM_ARRAY_TASK_ID` that
/// `exec`s the task's command.
pub fn render_script(job: &ArrayJob) -> Result<String> {
    if job.tasks.is_empty() {
        return Err(Error::Run("a job array needs at least one task".into()));
    }
    let name = directive_value(
        "job name",
        &crate::run::safe_name(&job.job_name).replace(['@', '=', '+'], "_"),
    )?;
    let mut s = String::from("#!/bin/bash\n");
    s.push_str("# Written by `runner sweep --executor slurm`: one array task per sweep point.\n");
    s.push_str(&format!("#SBATCH --job-name={name}\n"));
    let last = job.tasks.len() - 1;
    match job.max_parallel {
        Some(n) => s.push_str(&format!("#SBATCH --array=0-{last}%{n}\n")),
        None => s.push_str(&format!("#SBATCH --array=0-{last}\n")),
    }
    // Paths in #SBATCH lines cannot be quoted; refuse what sbatch would split.
    for (what, p) in [
        ("log directory", &job.log_dir),
        ("working directory", &job.workdir),
    ] {
        let text = p.display().to_string();
        if text
            .chars()
            .any(|c| c.is_whitespace() || c == '"' || c == '\'')
        {
            return Err(Error::Run(format!(
                "the {what} {text:?} has spaces or quotes, which #SBATCH lines cannot hold"
            )));
        }
    }
    s.push_str(&format!(
        "#SBATCH --output={}/%A_%a.out\n",
        job.log_dir.display()
    ));
    s.push_str(&format!("#SBATCH --chdir={}\n", job.workdir.display()));
    for d in resource_directives(&job.resources)? {
        s.push_str(&d);
        s.push('\n');
    }
    s.push_str("set -euo pipefail\n\n");
    s.push_str("case \"${SLURM_ARRAY_TASK_ID:?not run as a Slurm array task}\" in\n");
    for (i, (point, argv)) in job.tasks.iter().enumerate() {
        let cmd: Vec<String> = argv.iter().map(|a| shell_quote(a)).collect();
        s.push_str(&format!("  # {}\n", point.replace('\n', " ")));
        s.push_str(&format!("  {i}) exec {} ;;\n", cmd.join(" ")));
    }
    s.push_str("  *) echo \"no sweep point for array task $SLURM_ARRAY_TASK_ID\" >&2; exit 2 ;;\n");
    s.push_str("esac\n");
    Ok(s)
}

/// The job id in `sbatch --parsable` output (`ID` or `ID;CLUSTER`).
pub fn parse_job_id(stdout: &str) -> Result<String> {
    let line = stdout
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    let id = line.split(';').next().unwrap_or("").trim();
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
        return Err(Error::Run(format!(
            "sbatch did not print a job id (got {stdout:?})"
        )));
    }
    Ok(id.to_string())
}

/// Submit a script with `sbatch --parsable`; the job id.
pub fn submit(script: &Path) -> Result<String> {
    let out = Command::new("sbatch")
        .arg("--parsable")
        .arg(script)
        .output()
        .map_err(|e| Error::Run(format!("could not run sbatch: {e} (is Slurm installed?)")))?;
    if !out.status.success() {
        return Err(Error::Run(format!(
            "sbatch {} failed ({}): {}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    parse_job_id(&String::from_utf8_lossy(&out.stdout))
}

/// Array task ids of a Slurm job id field: `123_4` → [4], `123_[0-2,5%2]` → [0, 1, 2, 5];
/// empty for another job or the array's parent line.
pub fn task_ids(job_field: &str, job_id: &str) -> Vec<usize> {
    let Some(rest) = job_field
        .strip_prefix(job_id)
        .and_then(|r| r.strip_prefix('_'))
    else {
        return Vec::new();
    };
    let rest = rest.split('.').next().unwrap_or("");
    if let Ok(i) = rest.parse::<usize>() {
        return vec![i];
    }
    let Some(inner) = rest.strip_prefix('[').and_then(|r| r.strip_suffix(']')) else {
        return Vec::new();
    };
    let inner = inner.split('%').next().unwrap_or("");
    let mut ids = Vec::new();
    for part in inner.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<usize>(), b.parse::<usize>()) {
                    if b >= a && b - a < 100_000 {
                        ids.extend(a..=b);
                    }
                }
            }
            None => {
                if let Ok(i) = part.parse() {
                    ids.push(i);
                }
            }
        }
    }
    ids
}

/// Parse `JOBID|STATE` lines (from squeue or sacct) into task id → state.
pub fn parse_states(text: &str, job_id: &str) -> BTreeMap<usize, String> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let mut cols = line.trim().split('|');
        let (Some(job), Some(state)) = (cols.next(), cols.next()) else {
            continue;
        };
        // sacct writes `CANCELLED by 0`; keep the state word.
        let state = state.split_whitespace().next().unwrap_or("").to_string();
        if state.is_empty() {
            continue;
        }
        for t in task_ids(job.trim(), job_id) {
            out.insert(t, state.clone());
        }
    }
    out
}

fn run_query(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Scheduler states of an array's tasks: `sacct` first (it knows finished tasks for as long as
/// accounting keeps them), then `squeue -t all` (queued, running, and ended tasks until
/// `MinJobAge` passes; it wins where both answer). Tasks neither knows are
/// absent; `None` when neither command could be run.
pub fn task_states(job_id: &str) -> Option<BTreeMap<usize, String>> {
    let sacct = run_query(
        Command::new("sacct")
            .args(["-n", "-P", "-X", "-o", "JobID,State", "-j"])
            .arg(job_id),
    );
    let squeue = run_query(
        Command::new("squeue")
            .args(["-h", "-r", "-t", "all", "-o", "%i|%T", "-j"])
            .arg(job_id),
    );
    if sacct.is_none() && squeue.is_none() {
        return None;
    }
    let mut states = sacct.map(|t| parse_states(&t, job_id)).unwrap_or_default();
    if let Some(t) = squeue {
        states.extend(parse_states(&t, job_id));
    }
    Some(states)
}

/// A point's status given its run directory's status and its task's Slurm state: the run
/// directory wins once it says the run ended; before that, Slurm says queued / running / why the
/// task ended (a task that ended without a finished run failed).
pub fn merge_status(run: PointStatus, slurm: Option<&str>) -> (PointStatus, Option<String>) {
    let Some(state) = slurm else {
        return (run, None);
    };
    if matches!(
        run,
        PointStatus::Completed | PointStatus::Stopped | PointStatus::Failed
    ) {
        return (run, None);
    }
    match state {
        "PENDING" | "REQUEUED" | "CONFIGURING" | "SUSPENDED" | "RESV_DEL_HOLD" | "REQUEUE_HOLD"
        | "REQUEUE_FED" => (PointStatus::Queued, None),
        "RUNNING" | "COMPLETING" | "STAGE_OUT" | "SIGNALING" | "RESIZING" => {
            (PointStatus::Running, None)
        }
        "COMPLETED" => (run, None),
        other => (
            PointStatus::Failed,
            Some(format!("slurm task ended {other} before its run finished")),
        ),
    }
}
