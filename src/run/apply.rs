//! `apply`: from a spec file or a saved plan to a run directory with its stages run.
//!
//! Order: resolve → validate → compile → check every stage kind is implemented → create (or
//! open, for `--resume`) the run directory → lock it → write `spec.yaml`, `spec.resolved.yaml`,
//! `plan.json`, `state.json` → run the stage instances in plan order. Nothing is created when a
//! step before the lock fails: a stage kind without an implementation stops `apply` before any
//! run directory exists, so no directory ever suggests a run that did not happen.

use super::{atomic, execute, EventLog, RunDir, RunLock, RunState};
use crate::plan::{self, Plan, PlanSource};
use crate::spec::resolve::{resolve, resolved_yaml, spec_hash, ResolveOptions};
use crate::spec::validate::validate_file;
use crate::spec::Experiment;
use crate::stages::Registry;
use crate::{Error, Result};
use serde_json::json;
use std::path::{Path, PathBuf};

pub mod daily;

pub use daily::PartitionOptions;

/// What to apply and where.
#[derive(Debug, Clone, Default)]
pub struct ApplyRequest {
    /// A spec file (`.yaml`/`.yml`) or a saved plan (`.json`); optional with `resume`.
    pub input: Option<PathBuf>,
    /// `--set path=value` overrides (spec input only).
    pub sets: Vec<String>,
    /// Apply `RUNNER_*` environment variables.
    pub use_env: bool,
    /// Root of run directories (`runs/`).
    pub runs_dir: PathBuf,
    /// Continue this run directory instead of creating one.
    pub resume: Option<PathBuf>,
    /// Run directory name instead of the plan's (sweep points use their point name).
    pub run_name: Option<String>,
    /// Show a progress bar.
    pub progress: bool,
    /// The daily loop's `--partition`, `--from/--to`, `--outcomes-from` (see [`daily`]).
    pub partition: PartitionOptions,
    /// `--force STAGE`: re-run these stage kinds (and what reads them) instead of reusing
    /// earlier runs' outputs (see [`super::cache`]).
    pub force: Vec<crate::stages::StageKind>,
}

/// A spec resolved, validated and compiled, ready to run.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The resolved spec.
    pub spec: Experiment,
    /// Its hash.
    pub spec_hash: String,
    /// The spec file as written (for `spec.yaml`).
    pub spec_text: String,
    /// The plan.
    pub plan: Plan,
    /// Validation warnings (printed, not fatal).
    pub warnings: Vec<String>,
}

/// What `apply` did.
#[derive(Debug, Clone, Default)]
pub struct ApplyReport {
    /// The run directory.
    pub run_dir: PathBuf,
    /// Whether it continued an existing run.
    pub resumed: bool,
    /// Instances run, skipped (already completed) and in all.
    pub summary: execute::ExecSummary,
    /// Validation warnings.
    pub warnings: Vec<String>,
    /// Daily loop: partition dates skipped (no prompt file and nothing to score).
    pub skipped_partitions: Vec<String>,
    /// Daily loop: predictions left for a later run ("D (outcomes of H)").
    pub pending: Vec<String>,
}

/// Whether a path names a saved plan rather than a spec.
pub fn is_plan_path(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"))
}

/// Resolve, validate and compile a spec file.
pub fn prepare_spec(path: &Path, sets: &[String], use_env: bool) -> Result<Prepared> {
    prepare_spec_shaped(path, sets, use_env, &[], &mut |_| Ok(()))
}

/// With --partition/--from/--to, `--set` overrides that give the spec's
/// `schedule.partitions` the dates apply will run, so that validation warns about the data
/// files of the selected partitions only, not of the spec's whole range. Empty when there is
/// nothing to narrow, or when the options cannot be applied (apply then says why). Also used
/// by `runner plan --from/--to`.
pub fn selected_range_sets(
    file: &Path,
    sets: &[String],
    use_env: bool,
    opts: &PartitionOptions,
    runs_dir: &Path,
) -> Vec<String> {
    if !opts.is_set() {
        return Vec::new();
    }
    let resolve_opts = crate::spec::resolve::ResolveOptions {
        sets: sets.to_vec(),
        use_env,
    };
    let Ok(resolved) = crate::spec::resolve::resolve(file, &resolve_opts) else {
        return Vec::new();
    };
    let mut spec = resolved.spec;
    if spec.schedule.mode != crate::spec::ScheduleMode::Partitions {
        return Vec::new();
    }
    let name = crate::plan::run_name(&spec);
    if daily::shape_spec(&mut spec, opts, runs_dir, &name).is_err() {
        return Vec::new();
    }
    match &spec.schedule.partitions {
        // JSON strings are YAML strings: the dates stay strings, not integers.
        Some(p) => vec![
            format!(
                "schedule.partitions.from={}",
                serde_json::Value::from(p.from.clone())
            ),
            format!(
                "schedule.partitions.to={}",
                serde_json::Value::from(p.to.clone())
            ),
        ],
        None => Vec::new(),
    }
}

/// [`prepare_spec`] with `shape` applied to the resolved spec before it is hashed and compiled
/// (the daily loop's partition options, see [`daily::shape_spec`]).
/// `narrow_sets` are added to `sets` for validation only (see [`selected_range_sets`]: the
/// data-file warnings then cover the selected partitions).
pub fn prepare_spec_shaped(
    path: &Path,
    sets: &[String],
    use_env: bool,
    narrow_sets: &[String],
    shape: &mut dyn FnMut(&mut Experiment) -> Result<()>,
) -> Result<Prepared> {
    let opts = ResolveOptions {
        sets: sets.to_vec(),
        use_env,
    };
    let narrowed = ResolveOptions {
        sets: sets.iter().chain(narrow_sets).cloned().collect(),
        use_env,
    };
    let diags = validate_file(path, &narrowed);
    let (errors, warnings): (Vec<_>, Vec<_>) = diags.into_iter().partition(|d| d.is_error());
    if !errors.is_empty() {
        let lines: Vec<String> = errors.iter().map(|d| d.to_string()).collect();
        return Err(Error::Spec(format!(
            "{} is invalid ({} error{}):\n{}",
            path.display(),
            errors.len(),
            if errors.len() == 1 { "" } else { "s" },
            lines.join("\n")
        )));
    }
    let mut resolved = resolve(path, &opts)?;
    shape(&mut resolved.spec)?;
    // `validate_file` above also refused files outside the spec's project and allowed roots
    // (spec::locate::roots).
    let hash = spec_hash(&resolved.spec);
    let spec_text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let source = PlanSource {
        spec_path: Some(path.to_path_buf()),
        sets: sets.to_vec(),
        use_env,
    };
    let plan = plan::compile(&resolved.spec, &hash, source)?;
    Ok(Prepared {
        spec: resolved.spec,
        spec_hash: hash,
        spec_text,
        plan,
        warnings: warnings.iter().map(|d| d.to_string()).collect(),
    })
}

/// Load a saved plan and check that its spec, resolved again the same way, still has the hash
/// the plan was made from (like terraform, a stale plan is refused).
pub fn prepare_plan(path: &Path) -> Result<Prepared> {
    let saved = Plan::load(path)?;
    let spec_path = saved.source.spec_path.clone().ok_or_else(|| {
        Error::Run(format!(
            "{}: the plan does not name its spec file",
            path.display()
        ))
    })?;
    let fresh = prepare_spec(&spec_path, &saved.source.sets, saved.source.use_env)?;
    if fresh.spec_hash != saved.spec_hash {
        return Err(Error::Run(format!(
            "stale plan: spec changed since the plan was made (hash {} ≠ {}); run `runner plan` again",
            short(&saved.spec_hash),
            short(&fresh.spec_hash)
        )));
    }
    Ok(Prepared {
        plan: saved,
        ..fresh
    })
}

/// Prepare whatever `input` is (spec or plan).
pub fn prepare(input: &Path, sets: &[String], use_env: bool) -> Result<Prepared> {
    if is_plan_path(input) {
        if !sets.is_empty() {
            return Err(Error::Run(
                "--set cannot be combined with a saved plan (the plan fixes its overrides; make a new plan)".into(),
            ));
        }
        prepare_plan(input)
    } else {
        prepare_spec(input, sets, use_env)
    }
}

/// Prepare `input` for `req`: a spec with the request's partition options applied, or a
/// saved plan (which takes no partition options).
pub fn prepare_for(req: &ApplyRequest, input: &Path) -> Result<Prepared> {
    if !req.partition.is_set() {
        return prepare(input, &req.sets, req.use_env);
    }
    if is_plan_path(input) {
        return Err(Error::Run(
            "--partition/--from/--to/--outcomes-from apply to a spec file, not a saved plan \
             (make the plan with them instead)"
                .into(),
        ));
    }
    let narrow = selected_range_sets(input, &req.sets, req.use_env, &req.partition, &req.runs_dir);
    prepare_spec_shaped(input, &req.sets, req.use_env, &narrow, &mut |spec| {
        let name = req.run_name.clone().unwrap_or_else(|| plan::run_name(spec));
        daily::shape_spec(spec, &req.partition, &req.runs_dir, &name)
    })
}

/// Apply: see the module doc.
pub fn apply(req: &ApplyRequest, registry: &Registry) -> Result<ApplyReport> {
    match &req.resume {
        Some(dir) => resume(req, dir, registry),
        None => {
            let input = req.input.as_deref().ok_or_else(|| {
                Error::Run(
                    "nothing to apply: give a spec file or a plan (or --resume RUN_DIR)".into(),
                )
            })?;
            let prepared = prepare_for(req, input)?;
            start(req, prepared, registry)
        }
    }
}

/// Create a run directory for a prepared spec and run it.
pub fn start(req: &ApplyRequest, mut p: Prepared, registry: &Registry) -> Result<ApplyReport> {
    registry.check(&p.plan)?;
    let name = req
        .run_name
        .clone()
        .unwrap_or_else(|| p.plan.run_name.clone());
    let connection = daily::connect(&mut p.plan, &p.spec, &req.partition, &req.runs_dir, &name)?;
    let cache = match super::cache::before_start(req, &name, &p, connection.as_ref())? {
        Ok(cache) => cache,
        Err(up_to_date) => return Ok(up_to_date),
    };
    let run = RunDir::create(&req.runs_dir, &name, &p.spec_hash, chrono::Utc::now())?;
    let _lock = RunLock::acquire(run.path())?;
    daily::install(&run, &p.spec, &p.plan, connection.as_ref())?;
    atomic::write_text(&run.spec(), &p.spec_text)?;
    atomic::write_text(&run.resolved(), &resolved_yaml(&p.spec)?)?;
    atomic::write_json(&run.plan(), &p.plan)?;
    let mut state = RunState::new(&run.id(), &p.spec_hash);
    state.save(&run.state())?;
    let mut events = EventLog::open(&run.events())?;
    events.emit(
        None,
        "run_started",
        json!({
            "run_id": run.id(),
            "spec_hash": p.spec_hash,
            "runner_version": crate::VERSION,
            "pid": std::process::id(),
            "resumed": false,
        }),
    )?;
    let summary = execute::execute_with(
        &run,
        &p.spec,
        &p.plan,
        registry,
        &mut state,
        &mut events,
        req.progress,
        Some(&cache),
    )?;
    let (skipped_partitions, pending) = daily::skipped_and_pending(&p.plan);
    Ok(ApplyReport {
        run_dir: run.path().to_path_buf(),
        resumed: false,
        summary,
        warnings: p.warnings,
        skipped_partitions,
        pending,
    })
}

/// Continue a run directory. Its own `spec.resolved.yaml` and `plan.json` are what runs; a spec
/// or plan given as well must resolve to the same hash, else the resume is refused.
fn resume(req: &ApplyRequest, dir: &Path, registry: &Registry) -> Result<ApplyReport> {
    if req.partition.is_set() {
        return Err(Error::Run(
            "--resume continues a run with its own partitions; drop --partition/--from/--to/\
             --outcomes-from"
                .into(),
        ));
    }
    let run = RunDir::open(dir)?;
    let _lock = RunLock::acquire(run.path())?;
    let mut state = RunState::load(&run.state())?;
    let text = std::fs::read_to_string(run.resolved()).map_err(|e| Error::io(run.resolved(), e))?;
    let spec: Experiment = serde_yaml::from_str(&text)
        .map_err(|e| Error::Run(format!("{}: {e}", run.resolved().display())))?;
    let hash = spec_hash(&spec);
    if hash != state.spec_hash {
        return Err(Error::Run(format!(
            "cannot resume {}: its spec.resolved.yaml (hash {}) is not the spec the run started with ({})",
            dir.display(),
            short(&hash),
            short(&state.spec_hash)
        )));
    }
    let mut warnings = Vec::new();
    if let Some(input) = &req.input {
        let given = prepare(input, &req.sets, req.use_env)?;
        if given.spec_hash != state.spec_hash {
            return Err(Error::Run(format!(
                "cannot resume {}: {} resolves to a different spec (hash {} ≠ the run's {}); \
                 start a new run instead",
                dir.display(),
                input.display(),
                short(&given.spec_hash),
                short(&state.spec_hash)
            )));
        }
        warnings = given.warnings;
    }
    let plan = Plan::load(&run.plan())?;
    if plan.spec_hash != state.spec_hash {
        return Err(Error::Run(format!(
            "cannot resume {}: plan.json was made from another spec (hash {} ≠ {})",
            dir.display(),
            short(&plan.spec_hash),
            short(&state.spec_hash)
        )));
    }
    registry.check(&plan)?;
    warnings.extend(resume_force_check(&plan, &state, &req.force)?);
    let mut events = EventLog::open(&run.events())?;
    events.emit(
        None,
        "run_started",
        json!({
            "run_id": run.id(),
            "spec_hash": state.spec_hash,
            "runner_version": crate::VERSION,
            "pid": std::process::id(),
            "resumed": true,
            "completed_before": state.completed.len(),
            "force": req.force,
        }),
    )?;
    // The cache is an optimisation: when it cannot be worked out, everything left runs (which
    // is what --force asks for anyway).
    let cache = match execute::cache_for(&run, &spec, &plan, &req.force, &state) {
        Ok(c) => c,
        Err(e) => {
            events.emit(None, "cache_disabled", json!({ "error": e.to_string() }))?;
            None
        }
    };
    let summary = execute::execute_with(
        &run,
        &spec,
        &plan,
        registry,
        &mut state,
        &mut events,
        req.progress,
        cache.as_ref(),
    )?;
    let (skipped_partitions, pending) = daily::skipped_and_pending(&plan);
    Ok(ApplyReport {
        run_dir: run.path().to_path_buf(),
        resumed: true,
        summary,
        warnings,
        skipped_partitions,
        pending,
    })
}

/// `--force KIND` with `--resume`: the instances of KIND not yet completed run (with what
/// reads them) instead of being copied from earlier runs; completed instances are never re-run
/// by a resume (later stages and the trainer state already built on them). A forced kind with
/// no instance left to run would do nothing, so it is refused; one with some instances already
/// completed gives a warning naming them.
pub fn resume_force_check(
    plan: &Plan,
    state: &RunState,
    force: &[crate::stages::StageKind],
) -> Result<Vec<String>> {
    let mut warnings = Vec::new();
    let instances = plan.instances();
    for &kind in force {
        let (done, left): (Vec<_>, Vec<_>) = instances
            .iter()
            .filter(|i| i.kind == kind)
            .partition(|i| state.is_completed(&i.id));
        if left.is_empty() {
            return Err(Error::Run(format!(
                "--force {kind} with --resume would do nothing: {} (a resume never re-runs \
                 completed instances; to re-run them start a new run: `runner apply SPEC \
                 --force {kind}`)",
                if done.is_empty() {
                    "the plan has no such stage".to_string()
                } else {
                    format!("every {kind} instance of this run is already completed")
                }
            )));
        }
        if !done.is_empty() {
            let ids: Vec<&str> = done.iter().map(|i| i.id.as_str()).collect();
            warnings.push(format!(
                "--force {kind} with --resume: re-runs the {} {kind} instance{} not yet \
                 completed; the completed {} stay{} as they are (a resume never re-runs \
                 completed work; start a new run with `--force {kind}` for that)",
                left.len(),
                if left.len() == 1 { "" } else { "s" },
                ids.join(", "),
                if ids.len() == 1 { "s" } else { "" },
            ));
        }
    }
    Ok(warnings)
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}
