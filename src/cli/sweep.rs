//! `runner sweep`: expand a spec's sweep into named points; with `--apply`, run them (one after
//! another, or `--jobs N` child processes at a time) and keep `<runs>/<sweep>/sweep.csv` and
//! `sweep.md` up to date; with `--executor slurm`, submit them as one sbatch job array;
//! `runner sweep status` shows where each point stands.

use crate::run::apply::{prepare_spec, start};
use crate::run::ApplyRequest;
use crate::spec::resolve::{resolve, ResolveOptions};
use crate::spec::{Device, Experiment};
use crate::stages::Registry;
use crate::sweep::slurm::{self, ArrayJob, Submission};
use crate::sweep::status::{self, Manifest};
use crate::sweep::table::{self, PointRecord, PointStatus, SortKey};
use crate::sweep::{jobs, SweepPoint};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Where the points run.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Executor {
    /// On this machine (in this process, or `--jobs N` child processes).
    Local,
    /// As one Slurm job array (`sbatch`), one task per point.
    Slurm,
}

/// Arguments of `runner sweep`.
#[derive(clap::Args, Debug)]
#[command(
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    after_help = "Examples:
  runner sweep experiments/polychromic.yaml
  runner sweep experiments/polychromic.yaml --apply --sort eval/mean_reward
  runner sweep experiments/polychromic.yaml --apply --jobs 2
  runner sweep experiments/polychromic.yaml --executor slurm --dry-run
  runner sweep status experiments/polychromic.yaml

Each point is the spec plus a few --set overrides, printed beside its name, so one point can be
run alone: runner sweep FILE --apply --point NAME (or runner apply FILE --set ...).
With --apply, runs/<sweep name>/sweep.csv and sweep.md get one row per point (parameters,
status, run directory, wall time, final metrics), rewritten after every point. A failed point
is reported and the sweep goes on; the exit status is 1 when any point failed.
--jobs N runs N points at once as child processes; on CPU each gets model.threads =
cores / N unless the spec sets model.threads."
)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The spec file with a `sweep` section.
    #[arg(required = true)]
    pub file: Option<PathBuf>,
    /// Override a field of the base spec (every point): `--set path=value`; repeatable.
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub sets: Vec<String>,
    /// Run the points (each in its own run directory `runs/<point name>/<run id>/`).
    #[arg(long)]
    pub apply: bool,
    /// With --apply: run this one point only (no tables); how --jobs and Slurm run a point.
    #[arg(long, value_name = "NAME", requires = "apply")]
    pub point: Option<String>,
    /// Run up to N points at once as child processes (local), or let at most N array tasks
    /// run at once (Slurm). Local default 1 (in this process).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub jobs: Option<u32>,
    /// Order sweep.md by this metric, `METRIC` or `METRIC:desc` (highest first) or
    /// `METRIC:asc`.
    #[arg(long, value_name = "METRIC[:asc]")]
    pub sort: Option<String>,
    /// Where the points run.
    #[arg(long, value_enum, default_value = "local")]
    pub executor: Executor,
    /// With --executor slurm: write the sbatch script but do not submit it.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the points (and with --apply, the outcome of each) as JSON.
    #[arg(long)]
    pub json: bool,
    /// Where run directories (and the sweep's tables) are created.
    #[arg(long, value_name = "DIR", default_value = "runs")]
    pub runs_dir: PathBuf,
    /// Ignore `RUNNER_*` environment variables.
    #[arg(long)]
    pub no_env: bool,
    /// No progress bars.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Sub-commands of `runner sweep`.
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Show each point's state (from its run directory, and Slurm when the sweep was
    /// submitted) and refresh sweep.csv / sweep.md.
    Status(StatusArgs),
}

/// Arguments of `runner sweep status`.
#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// The spec file, or the sweep directory `runs/<sweep name>/`.
    pub target: PathBuf,
    /// Overrides the sweep was run with (spec file only).
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub sets: Vec<String>,
    /// Root of the run directories (spec file only).
    #[arg(long, value_name = "DIR", default_value = "runs")]
    pub runs_dir: PathBuf,
    /// Order sweep.md by this metric (`METRIC`, `METRIC:asc`).
    #[arg(long, value_name = "METRIC[:asc]")]
    pub sort: Option<String>,
    /// Print the records as JSON.
    #[arg(long)]
    pub json: bool,
    /// Ignore `RUNNER_*` environment variables.
    #[arg(long)]
    pub no_env: bool,
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    if let Some(Command::Status(s)) = args.command {
        return status_cmd(s);
    }
    let Some(file) = args.file.clone() else {
        eprintln!("error: give the spec file with a sweep section");
        return Ok(2);
    };
    let use_env = !args.no_env;
    if let Some(code) = super::plan::report_diagnostics(&file, &args.sets, use_env) {
        return Ok(code);
    }
    let sort = match args.sort.as_deref().map(SortKey::parse).transpose() {
        Ok(s) => s.unwrap_or_default(),
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(2);
        }
    };
    if args.dry_run && args.executor != Executor::Slurm {
        eprintln!("error: --dry-run goes with --executor slurm");
        return Ok(2);
    }
    let opts = ResolveOptions {
        sets: args.sets.clone(),
        use_env,
    };
    let (spec, points) = match resolve(&file, &opts)
        .and_then(|r| crate::sweep::expand(&r.spec).map(|p| (r.spec, p)))
    {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(1);
        }
    };
    if points.is_empty() {
        eprintln!(
            "{}: the spec has no sweep (sweep.grid, sweep.zip and sweep.seeds are empty)",
            file.display()
        );
        return Ok(if args.apply || args.executor == Executor::Slurm {
            1
        } else {
            0
        });
    }
    if let Some(name) = &args.point {
        return run_one_point(&args, &file, &points, name);
    }
    if args.executor == Executor::Slurm {
        return submit_slurm(&args, &file, &spec, &points);
    }
    if !args.apply {
        if args.json {
            println!("{}", serde_json::to_string_pretty(&points)?);
        } else {
            println!("{} points:", points.len());
            for p in &points {
                println!("  {}\n      --set {}", p.name, p.sets.join(" --set "));
            }
        }
        return Ok(0);
    }
    apply_all(&args, &file, &spec, &points, &sort)
}

/// The spec file as an absolute path (children and Slurm tasks may start elsewhere).
fn absolute(p: &Path) -> anyhow::Result<PathBuf> {
    Ok(if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()?.join(p)
    })
}

fn manifest(args: &Args, file: &Path, spec: &Experiment, points: &[SweepPoint]) -> Manifest {
    Manifest {
        name: spec.name.clone(),
        spec: absolute(file).unwrap_or_else(|_| file.to_path_buf()),
        sets: args.sets.clone(),
        runs_dir: absolute(&args.runs_dir).unwrap_or_else(|_| args.runs_dir.clone()),
        points: points.to_vec(),
    }
}

/// An error on one line (validation errors come one per line): lines joined with ` / `.
fn one_line(s: &str) -> String {
    let lines: Vec<&str> = s.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    lines.join(" / ")
}

/// Run the named point in this process (the child side of `--jobs` and of Slurm tasks).
fn run_one_point(
    args: &Args,
    file: &Path,
    points: &[SweepPoint],
    name: &str,
) -> anyhow::Result<i32> {
    let Some(point) = points.iter().find(|p| p.name == name) else {
        let names: Vec<&str> = points.iter().map(|p| p.name.as_str()).collect();
        eprintln!(
            "error: the sweep has no point {name:?}; its points: {}",
            names.join(", ")
        );
        return Ok(2);
    };
    match apply_point(args, file, point) {
        Ok(dir) => {
            println!("completed {}: {}", point.name, dir.display());
            Ok(0)
        }
        Err(e) => {
            eprintln!("error: {}: {}", point.name, one_line(&e.to_string()));
            Ok(1)
        }
    }
}

/// Apply one point in this process: the spec with the sweep's and the point's `--set`s, in run
/// directory `runs/<point name>/`.
fn apply_point(args: &Args, file: &Path, p: &SweepPoint) -> crate::Result<PathBuf> {
    let use_env = !args.no_env;
    let mut sets = args.sets.clone();
    sets.extend(p.sets.iter().cloned());
    let req = ApplyRequest {
        input: Some(file.to_path_buf()),
        sets: sets.clone(),
        use_env,
        runs_dir: args.runs_dir.clone(),
        run_name: Some(p.name.clone()),
        progress: !args.quiet && !args.json,
        ..ApplyRequest::default()
    };
    let registry = Registry::builtin();
    // A point that does not validate gets no run directory: `sweep status` reads its error
    // from `runs/<point>/invalid.txt` instead.
    let prep = match prepare_spec(file, &sets, use_env) {
        Ok(prep) => {
            status::clear_invalid(&args.runs_dir, &p.name)?;
            prep
        }
        Err(e) => {
            status::record_invalid(&args.runs_dir, &p.name, &one_line(&e.to_string()))?;
            return Err(e);
        }
    };
    let report = start(&req, prep, &registry)?;
    Ok(report.run_dir)
}

/// The record of a point that just ended: its run directory (the one this attempt created,
/// else — when nothing needed running — its newest), the run's own status, the attempt's error.
fn record_after(
    runs_dir: &Path,
    point: &SweepPoint,
    before: &[PathBuf],
    outcome: Result<Option<PathBuf>, String>,
    wall_s: f64,
) -> PointRecord {
    let mut rec = PointRecord::pending(point);
    let fresh = status::run_dirs(runs_dir, &point.name)
        .into_iter()
        .rfind(|d| !before.contains(d));
    let dir = match &outcome {
        Ok(Some(d)) => Some(d.clone()),
        Ok(None) => fresh.or_else(|| status::latest_run(runs_dir, &point.name)),
        Err(_) => fresh,
    };
    rec.wall_s = Some(wall_s);
    match &dir {
        Some(d) => match status::probe(d) {
            Ok(p) => {
                rec.status = p.status;
                rec.error = p.error;
            }
            Err(e) => {
                rec.status = PointStatus::Failed;
                rec.error = Some(e.to_string());
            }
        },
        None => rec.status = PointStatus::Failed,
    }
    if let Err(e) = &outcome {
        if !matches!(rec.status, PointStatus::Stopped | PointStatus::Failed) {
            rec.status = PointStatus::Failed;
        }
        if rec.status == PointStatus::Failed {
            rec.error = Some(e.clone());
        }
    } else if rec.status != PointStatus::Completed && rec.status != PointStatus::Stopped {
        rec.status = PointStatus::Failed;
        rec.error.get_or_insert_with(|| {
            "the point reported success but its run did not finish".to_string()
        });
    }
    if let Some(d) = &dir {
        if matches!(rec.status, PointStatus::Completed | PointStatus::Stopped) {
            status::add_metrics(&mut rec, d);
        }
    }
    rec.run_dir = dir;
    rec
}

/// `model.threads` for each of `jobs` concurrent CPU points, unless the spec sets it.
fn thread_share(spec: &Experiment, jobs: usize) -> Option<usize> {
    if jobs <= 1 || spec.model.threads.is_some() || spec.model.device != Device::Cpu {
        return None;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    Some((cores / jobs).max(1))
}

fn apply_all(
    args: &Args,
    file: &Path,
    spec: &Experiment,
    points: &[SweepPoint],
    sort: &SortKey,
) -> anyhow::Result<i32> {
    let sweep_dir = status::sweep_dir(&args.runs_dir, &spec.name);
    manifest(args, file, spec, points).save(&sweep_dir)?;
    let mut records: Vec<PointRecord> = points.iter().map(PointRecord::pending).collect();
    table::write_tables(&sweep_dir, &spec.name, &records, sort)?;
    let jobs = args.jobs.unwrap_or(1) as usize;
    let n = points.len();
    let report = |i: usize, r: &PointRecord| {
        if args.json {
            return;
        }
        let detail = match (&r.error, &r.run_dir) {
            (Some(e), _) if r.status == PointStatus::Failed => one_line(e),
            (_, Some(d)) => d.display().to_string(),
            (Some(e), None) => one_line(e),
            (None, None) => String::new(),
        };
        println!("[{}/{n}] {}: {}: {detail}", i + 1, r.name, r.status);
    };
    let mut table_error: Option<crate::Error> = None;
    if jobs <= 1 {
        for (i, p) in points.iter().enumerate() {
            let before = status::run_dirs(&args.runs_dir, &p.name);
            records[i].status = PointStatus::Running;
            table::write_tables(&sweep_dir, &spec.name, &records, sort)?;
            let t0 = Instant::now();
            let outcome = apply_point(args, file, p)
                .map(Some)
                .map_err(|e| one_line(&e.to_string()));
            records[i] = record_after(
                &args.runs_dir,
                p,
                &before,
                outcome,
                t0.elapsed().as_secs_f64(),
            );
            report(i, &records[i]);
            table::write_tables(&sweep_dir, &spec.name, &records, sort)?;
        }
    } else {
        let exe = std::env::current_exe()?;
        let mut sets = args.sets.clone();
        if let Some(t) = thread_share(spec, jobs) {
            if !args.json {
                println!("{jobs} jobs at once on CPU: model.threads = {t} per point");
            }
            sets.push(format!("model.threads={t}"));
        }
        let befores: Vec<Vec<PathBuf>> = points
            .iter()
            .map(|p| status::run_dirs(&args.runs_dir, &p.name))
            .collect();
        let command = |p: &SweepPoint| {
            let mut c = std::process::Command::new(&exe);
            c.arg("sweep")
                .arg(file)
                .args(["--apply", "--quiet", "--point"])
                .arg(&p.name)
                .arg("--runs-dir")
                .arg(&args.runs_dir);
            if args.no_env {
                c.arg("--no-env");
            }
            for s in &sets {
                c.arg("--set").arg(s);
            }
            c
        };
        jobs::run_points(points, jobs, &sweep_dir.join("logs"), command, |ev| {
            match ev {
                jobs::JobEvent::Started { index } => {
                    records[index].status = PointStatus::Running;
                }
                jobs::JobEvent::Finished {
                    index,
                    outcome,
                    wall_s,
                    ..
                } => {
                    let p = &points[index];
                    records[index] = record_after(
                        &args.runs_dir,
                        p,
                        &befores[index],
                        outcome.map(|()| None),
                        wall_s,
                    );
                    report(index, &records[index]);
                }
            }
            if let Err(e) = table::write_tables(&sweep_dir, &spec.name, &records, sort) {
                table_error.get_or_insert(e);
            }
        })?;
    }
    if let Some(e) = table_error {
        return Err(e.into());
    }
    if let Some(m) = &sort.metric {
        if !table::metric_names(&records).contains(m) {
            eprintln!(
                "warning: no point has metric {m:?} to sort by; metrics: {}",
                table::metric_names(&records).join(", ")
            );
        }
    }
    let failed = records
        .iter()
        .filter(|r| r.status == PointStatus::Failed)
        .count();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&records)?);
    } else {
        println!(
            "{} of {n} points completed, {failed} failed; tables: {} and {}",
            records
                .iter()
                .filter(|r| r.status == PointStatus::Completed)
                .count(),
            sweep_dir.join(table::CSV_FILE).display(),
            sweep_dir.join(table::MD_FILE).display()
        );
    }
    Ok(if failed > 0 { 1 } else { 0 })
}

fn submit_slurm(
    args: &Args,
    file: &Path,
    spec: &Experiment,
    points: &[SweepPoint],
) -> anyhow::Result<i32> {
    let sweep_dir = absolute(&status::sweep_dir(&args.runs_dir, &spec.name))?;
    let slurm_dir = sweep_dir.join(slurm::SLURM_DIR);
    std::fs::create_dir_all(&slurm_dir)?;
    let exe = std::env::current_exe()?;
    let spec_abs = absolute(file)?;
    let runs_abs = absolute(&args.runs_dir)?;
    let mut sets = args.sets.clone();
    if let (Some(c), None) = (spec.resources.cpus, spec.model.threads) {
        sets.push(format!("model.threads={c}"));
    }
    let tasks = points
        .iter()
        .map(|p| {
            let mut argv = vec![
                exe.display().to_string(),
                "sweep".into(),
                spec_abs.display().to_string(),
                "--apply".into(),
                "--quiet".into(),
                "--point".into(),
                p.name.clone(),
                "--runs-dir".into(),
                runs_abs.display().to_string(),
            ];
            if args.no_env {
                argv.push("--no-env".into());
            }
            for s in &sets {
                argv.push("--set".into());
                argv.push(s.clone());
            }
            (p.name.clone(), argv)
        })
        .collect();
    let job = ArrayJob {
        job_name: spec.name.clone(),
        workdir: std::env::current_dir()?,
        log_dir: slurm_dir.clone(),
        resources: spec.resources.clone(),
        max_parallel: args.jobs.map(|j| j as usize),
        tasks,
    };
    let script = match slurm::render_script(&job) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(1);
        }
    };
    let script_path = slurm_dir.join(slurm::SCRIPT_FILE);
    crate::run::atomic::write_text(&script_path, &script)?;
    manifest(args, file, spec, points).save(&sweep_dir)?;
    let records: Vec<PointRecord> = points.iter().map(PointRecord::pending).collect();
    table::write_tables(&sweep_dir, &spec.name, &records, &SortKey::default())?;
    if args.dry_run {
        println!(
            "wrote {} ({} array tasks); submit it with: sbatch --parsable {}",
            script_path.display(),
            points.len(),
            script_path.display()
        );
        return Ok(0);
    }
    let job_id = match slurm::submit(&script_path) {
        Ok(id) => id,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(1);
        }
    };
    Submission {
        job_id: job_id.clone(),
        submitted_at: chrono::Utc::now().to_rfc3339(),
        script: script_path.clone(),
        points: points.iter().map(|p| p.name.clone()).collect(),
    }
    .save(&sweep_dir)?;
    println!(
        "submitted job array {job_id} ({} tasks, script {}); follow it with: runner sweep status {}",
        points.len(),
        script_path.display(),
        sweep_dir.display()
    );
    Ok(0)
}

fn status_cmd(args: StatusArgs) -> anyhow::Result<i32> {
    let sort = match args.sort.as_deref().map(SortKey::parse).transpose() {
        Ok(s) => s.unwrap_or_default(),
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(2);
        }
    };
    let (name, runs_dir, sweep_dir, points) = if args.target.is_dir() {
        let m = match Manifest::load(&args.target) {
            Ok(m) => m,
            Err(e) => {
                eprintln!("error: {e} (give the sweep directory runs/<sweep name>/ or the spec)");
                return Ok(2);
            }
        };
        (m.name, m.runs_dir, args.target.clone(), m.points)
    } else {
        let opts = ResolveOptions {
            sets: args.sets.clone(),
            use_env: !args.no_env,
        };
        match resolve(&args.target, &opts)
            .and_then(|r| crate::sweep::expand(&r.spec).map(|p| (r.spec, p)))
        {
            Ok((spec, points)) => {
                let dir = status::sweep_dir(&args.runs_dir, &spec.name);
                (spec.name, args.runs_dir.clone(), dir, points)
            }
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(2);
            }
        }
    };
    let mut records = status::collect(&runs_dir, &points);
    let mut slurm_states: Vec<Option<String>> = vec![None; records.len()];
    let submission = Submission::load(&sweep_dir).unwrap_or_else(|e| {
        eprintln!("warning: {e}");
        None
    });
    if let Some(sub) = &submission {
        match slurm::task_states(&sub.job_id) {
            Some(states) => {
                for (i, rec) in records.iter_mut().enumerate() {
                    let Some(task) = sub.points.iter().position(|n| *n == rec.name) else {
                        continue;
                    };
                    let state = states.get(&task).cloned();
                    let (status, why) = slurm::merge_status(rec.status, state.as_deref());
                    rec.status = status;
                    if let Some(w) = why {
                        rec.error.get_or_insert(w);
                    }
                    slurm_states[i] = state;
                }
            }
            None => eprintln!(
                "note: job {} was submitted, but neither sacct nor squeue answered",
                sub.job_id
            ),
        }
    }
    if sweep_dir.is_dir() {
        table::write_tables(&sweep_dir, &name, &records, &sort)?;
    }
    if args.json {
        let rows: Vec<serde_json::Value> = records
            .iter()
            .zip(&slurm_states)
            .map(|(r, s)| {
                let mut v = serde_json::to_value(r).unwrap_or_default();
                if let Some(o) = v.as_object_mut() {
                    o.insert("slurm".into(), serde_json::json!(s));
                }
                v
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        if let Some(sub) = &submission {
            println!("slurm job {} (submitted {})", sub.job_id, sub.submitted_at);
        }
        let width = records.iter().map(|r| r.name.len()).max().unwrap_or(5);
        for (r, s) in records.iter().zip(&slurm_states) {
            let mut line = format!("{:width$}  {:11}", r.name, r.status.as_str());
            if submission.is_some() {
                line.push_str(&format!("  {:11}", s.as_deref().unwrap_or("-")));
            }
            if let Some(w) = r.wall_s {
                line.push_str(&format!("  {w:>7.1}s"));
            }
            if let Some(d) = &r.run_dir {
                line.push_str(&format!("  {}", d.display()));
            }
            if let Some(e) = &r.error {
                line.push_str(&format!("  ({})", one_line(e)));
            }
            println!("{line}");
        }
        let done = records.iter().filter(|r| r.status.is_final()).count();
        println!("{done} of {} points ended", records.len());
    }
    let failed = records.iter().any(|r| r.status == PointStatus::Failed);
    Ok(if failed { 1 } else { 0 })
}
