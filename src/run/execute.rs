//! Running a plan's stage instances in order into a run directory, recording each completed
//! instance in `state.json` and every start, finish and failure in `events.jsonl`. Completed
//! instances are skipped, which is all `--resume` needs. A completed instance whose outputs
//! carry `stop_run` (a monitor with `action: stop`) ends the run after it is recorded.
//!
//! With a [`CachePlan`] (see [`super::cache`]) an instance that an earlier run of the same name
//! has is copied from it instead of run (event `stage_cached`); every completed instance's
//! cache key goes into `state.json`. Trainer states of cached `sft`/`train` instances are
//! installed just before the next instance that runs (and at the end), and the in-memory
//! policy and optimizer are then dropped so they reload from it.

use super::cache::{self, CachePlan, Decision, Hit};
use super::{EventLog, RunDir, RunState, StageRecord};
use crate::plan::Plan;
use crate::spec::Experiment;
use crate::stages::{Registry, Resources, StageContext, StageKind};
use crate::{Error, Result};
use chrono::Utc;
use serde_json::json;
use std::path::PathBuf;

/// What [`execute`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExecSummary {
    /// Instances run now.
    pub executed: usize,
    /// Instances skipped because `state.json` has them completed.
    pub skipped: usize,
    /// Instances copied from earlier runs (cache hits).
    pub cached: usize,
    /// Nothing to do: every instance is a cache hit in one earlier run (`run_dir` of the report
    /// is that run; no run directory was created).
    pub up_to_date: bool,
    /// Instances in the plan.
    pub total: usize,
}

/// Run every instance of `plan` not yet completed in `state`, in order. Stops at the first
/// failing instance (recorded as `last_error`; a resume retries it). Checks first that every
/// stage kind of the plan is implemented, so nothing starts otherwise. Earlier runs of the same
/// run name (the run directory's siblings) are used as a cache, nothing forced; see
/// [`execute_with`].
pub fn execute(
    run: &RunDir,
    spec: &Experiment,
    plan: &Plan,
    registry: &Registry,
    state: &mut RunState,
    events: &mut EventLog,
    show_progress: bool,
) -> Result<ExecSummary> {
    // The cache is an optimisation: when it cannot be worked out, everything runs.
    let cache = match cache_for(run, spec, plan, &[], state) {
        Ok(c) => c,
        Err(e) => {
            events.emit(None, "cache_disabled", json!({ "error": e.to_string() }))?;
            None
        }
    };
    execute_with(
        run,
        spec,
        plan,
        registry,
        state,
        events,
        show_progress,
        cache.as_ref(),
    )
}

/// The cache decisions for continuing `run` (its siblings are the earlier runs); `None` when
/// the run directory has no parent to look in.
pub fn cache_for(
    run: &RunDir,
    spec: &Experiment,
    plan: &Plan,
    force: &[StageKind],
    state: &RunState,
) -> Result<Option<CachePlan>> {
    let Some(parent) = run.path().parent() else {
        return Ok(None);
    };
    let (Some(root), Some(name)) = (parent.parent(), parent.file_name()) else {
        return Ok(None);
    };
    let completed: cache::Completed = state.completed.iter().map(|r| r.id.clone()).collect();
    let lineage = cache::lineage_digest_of_run(run.path())?;
    CachePlan::decide(
        root,
        &name.to_string_lossy(),
        spec,
        plan,
        lineage.as_deref(),
        force,
        Some(run.path()),
        &completed,
    )
    .map(Some)
}

/// What cached instances left to do before the next instance runs.
#[derive(Default)]
struct CacheCarry {
    /// The trainer state of the last cached sft/train, still to install.
    trainer: Option<PathBuf>,
    /// The best eval so far in this run: (metric, value, steps).
    best: Option<(String, f64, usize)>,
    /// The run whose `checkpoints/best/` holds `best` (a cached eval found it).
    best_from: Option<PathBuf>,
}

impl CacheCarry {
    /// Install a pending trainer state; the in-memory policy, optimizer and reward set (which
    /// may judge with the policy) are dropped so they reload from it.
    fn settle(&mut self, run: &RunDir, resources: &mut Resources) -> Result<()> {
        if let Some(src) = self.trainer.take() {
            cache::install_trainer_state(run, &src, self.best.clone())?;
            *resources = Resources::default();
        }
        Ok(())
    }
}

/// [`execute`] with explicit cache decisions (`None`: run everything).
#[allow(clippy::too_many_arguments)]
pub fn execute_with(
    run: &RunDir,
    spec: &Experiment,
    plan: &Plan,
    registry: &Registry,
    state: &mut RunState,
    events: &mut EventLog,
    show_progress: bool,
    cache: Option<&CachePlan>,
) -> Result<ExecSummary> {
    registry.check(plan)?;
    let instances = plan.instances();
    let mut summary = ExecSummary {
        total: instances.len(),
        ..ExecSummary::default()
    };
    if let Some(c) = cache {
        for why in &c.unreadable {
            events.emit(None, "cache_run_unreadable", json!({ "error": why }))?;
        }
    }
    let bar = progress_bar(instances.len() as u64, show_progress);
    let mut resources = Resources::default();
    let mut last_reward: Option<f64> = None;
    let mut carry = CacheCarry {
        best: crate::train::checkpoint::best_so_far(run).unwrap_or(None),
        ..CacheCarry::default()
    };
    for inst in &instances {
        if state.is_completed(&inst.id) {
            summary.skipped += 1;
            bar.inc(1);
            continue;
        }
        let entry = cache.and_then(|c| c.entry(&inst.id));
        if let Some(Decision::Hit(hit)) = entry.map(|e| &e.decision) {
            take_hit(run, spec, plan, inst, hit, state, events, &mut carry)?;
            summary.cached += 1;
            bar.inc(1);
            continue;
        }
        carry.settle(run, &mut resources)?;
        let stage = registry
            .get(inst.kind)
            .ok_or_else(|| Error::Run(crate::stages::not_implemented_message(&[inst.kind])))?;
        bar.set_message(match last_reward {
            Some(r) => format!("{} · reward {r:.3}", inst.id),
            None => inst.id.clone(),
        });
        let started_at = Utc::now();
        let reason = match entry.map(|e| &e.decision) {
            Some(Decision::Run(why)) => Some(why.clone()),
            _ => None,
        };
        events.emit(
            Some(&inst.id),
            "stage_started",
            json!({ "kind": inst.kind, "cache_miss": reason }),
        )?;
        let result = {
            let mut ctx = StageContext {
                run_dir: run,
                spec,
                plan,
                instance: inst,
                state,
                events: &mut *events,
                resources: &mut resources,
            };
            stage.run(&mut ctx)
        };
        match result {
            Ok(out) => {
                state.mark_completed(StageRecord {
                    id: inst.id.clone(),
                    kind: inst.kind.name().to_string(),
                    started_at,
                    finished_at: Utc::now(),
                    outputs: out.outputs.clone(),
                });
                if let Some(e) = entry {
                    let trainer = match inst.kind {
                        StageKind::Sft => {
                            cache::keep_state(run, &inst.id)?;
                            trainer_now(run)?
                        }
                        StageKind::Train => trainer_now(run)?,
                        _ => None,
                    };
                    state.set_cache(&inst.id, e.key.record(trainer));
                }
                if inst.kind == StageKind::Eval {
                    let best = crate::train::checkpoint::best_so_far(run)?;
                    if best != carry.best {
                        // This eval found a new best and snapshotted it itself.
                        carry.best = best;
                        carry.best_from = None;
                    }
                }
                state.save(&run.state())?;
                events.emit(
                    Some(&inst.id),
                    "stage_finished",
                    json!({ "outputs": out.outputs }),
                )?;
                summary.executed += 1;
                bar.inc(1);
                if let Some(r) = train_reward(&out.outputs) {
                    last_reward = Some(r);
                }
                if let Some(msg) = out
                    .outputs
                    .get(crate::stages::train::STOP_KEY)
                    .and_then(|v| v.as_str())
                {
                    events.emit(Some(&inst.id), "run_stopped", json!({ "reason": msg }))?;
                    bar.abandon();
                    return Err(Error::Run(format!(
                        "run stopped after {}: {msg}; continue with `runner apply --resume {}`",
                        inst.id,
                        run.path().display()
                    )));
                }
            }
            Err(e) => {
                let message = e.to_string();
                state.last_error = Some(super::state::StageFailure {
                    id: inst.id.clone(),
                    at: Utc::now(),
                    message: message.clone(),
                });
                state.save(&run.state())?;
                events.emit(Some(&inst.id), "stage_failed", json!({ "error": message }))?;
                bar.abandon();
                return Err(Error::Run(format!(
                    "stage {} failed: {message} (fix it and continue with `runner apply --resume {}`)",
                    inst.id,
                    run.path().display()
                )));
            }
        }
    }
    carry.settle(run, &mut resources)?;
    if let (Some(src), Some(best)) = (&carry.best_from, &carry.best) {
        if !cache::link_best(src, run, best)? {
            events.emit(
                None,
                "cache_note",
                json!({ "message": format!(
                    "checkpoints/best/ of the cached best eval is no longer kept in {}",
                    src.display()
                ) }),
            )?;
        }
    }
    bar.finish_and_clear();
    events.emit(
        None,
        "run_finished",
        json!({ "executed": summary.executed, "skipped": summary.skipped, "cached": summary.cached }),
    )?;
    Ok(summary)
}

/// The trainer state `run` holds now (file → sha256), for the cache record of sft/train.
fn trainer_now(run: &RunDir) -> Result<Option<std::collections::BTreeMap<String, String>>> {
    Ok(crate::train::state::locate(run)?.and_then(|d| cache::trainer_files(&d)))
}

/// Copy a cache hit into the run: its stage folder, its record, its side effects (the
/// trainer state to install, the metrics row and snapshots of a train, the best eval of an eval).
#[allow(clippy::too_many_arguments)]
fn take_hit(
    run: &RunDir,
    spec: &Experiment,
    plan: &Plan,
    inst: &crate::plan::StageInstance,
    hit: &Hit,
    state: &mut RunState,
    events: &mut EventLog,
    carry: &mut CacheCarry,
) -> Result<()> {
    let kind = inst.kind;
    let f = &hit.found;
    cache::copy_stage_dir(f, run)?;
    if let Some(date) = &inst.date {
        let generated_only = match &plan.loop_ {
            crate::plan::LoopPlan::Partitions { rounds, .. } => rounds
                .iter()
                .find(|r| &r.date == date)
                .is_none_or(|r| r.score.is_empty()),
            crate::plan::LoopPlan::Steps { .. } => false,
        };
        cache::carry_summary(f, run, kind, date, generated_only)?;
    }
    let mut linked = Vec::new();
    match kind {
        StageKind::Sft | StageKind::Train => {
            if let Some(files) = &f.cache.trainer {
                linked = cache::link_snapshots(&f.run, run, files)?;
            }
            if kind == StageKind::Train {
                write_metrics_row(run, spec, &f.record.outputs)?;
            } else {
                let sft_csv = f.run.join(crate::stages::sft::SFT_METRICS_FILE);
                if sft_csv.is_file() {
                    cache::link_tree(
                        &sft_csv,
                        &run.path().join(crate::stages::sft::SFT_METRICS_FILE),
                    )?;
                }
            }
            // Not every hit's state is kept, only the ones a later step needs.
            carry.trainer = hit.trainer_dir.clone();
        }
        StageKind::Eval => {
            if let Some(b) = cache::eval_new_best(&f.record.outputs) {
                carry.best = Some(b);
                carry.best_from = Some(f.run.clone());
            }
        }
        _ => {}
    }
    let now = Utc::now();
    state.mark_completed(StageRecord {
        started_at: now,
        finished_at: now,
        ..f.record.clone()
    });
    let mut rec = f.cache.clone();
    rec.from_run = Some(f.run_id.clone());
    state.set_cache(&f.record.id, rec);
    state.save(&run.state())?;
    events.emit(
        Some(&f.record.id),
        "stage_cached",
        json!({
            "from_run": f.run_id,
            "key": f.cache.key,
            "snapshots": linked,
            "outputs": f.record.outputs,
        }),
    )?;
    Ok(())
}

/// The `metrics.csv` row of a cached train instance, from its recorded outputs.
fn write_metrics_row(run: &RunDir, spec: &Experiment, outputs: &serde_json::Value) -> Result<()> {
    let (Some(step), Some(m)) = (
        outputs.get("step").and_then(|v| v.as_u64()),
        outputs.get("metrics").and_then(|v| v.as_object()),
    ) else {
        return Ok(());
    };
    let values: std::collections::BTreeMap<String, f64> = m
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), v.as_f64()?)))
        .collect();
    let csv = crate::train::metrics::MetricsCsv::open(
        &run.path().join(crate::train::metrics::METRICS_FILE),
        crate::stages::train::metrics_header(spec),
    )?;
    csv.write_row(step as usize, &values)
}

/// The mean reward a train instance reported, for the progress bar.
fn train_reward(outputs: &serde_json::Value) -> Option<f64> {
    outputs.get("metrics")?.get("reward")?.as_f64()
}

fn progress_bar(len: u64, show: bool) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{elapsed_precise} [{bar:30}] {pos}/{len} ETA {eta} {msg}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}
