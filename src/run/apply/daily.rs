//! The daily loop's side of `apply` (`schedule.mode: partitions`): the partition options of
//! the command line, and how a new run continues the earlier runs of its run name.
//!
//! * `--partition D` runs the single partition D; `--from A --to B` backfills A..B (both
//!   replace `schedule.partitions.from/to` before the spec is hashed, so they are part of the
//!   run's resolved spec); `--partition D --outcomes-from H` scores the predictions of D with
//!   the outcomes of H, trains and snapshots (the predictions of D are taken from the earlier
//!   run that made them, or generated now when none did); `--partition next` runs the first
//!   date with a prompt file after the last partition completed by the latest run of the run
//!   name.
//! * The earlier run a new run continues (its *chain* run) is the newest run directory under
//!   `<runs>/<run name>/` (ids start with the creation time) that completed at least one
//!   partition (status `done` in its `summary.json`) and whose last completed partition is
//!   before the new run's first date (for an override: the newest that has the predictions of
//!   D). With `resume_from_last_model` (the default) the new run starts from its
//!   `checkpoints/final_model/` (trainer state included, so step numbers continue), scores its
//!   pending predictions (the last day's, whose outcomes came after it) in the first round they
//!   fit, and copies those predictions into `<run>/imported/<date>/rollouts.jsonl`, so a run
//!   never reads another run directory after it started. `partitions.json` records all this.
//! * `backfill: false` starts a range after the last partition the latest run completed.
//! * Run suffixes (`schedule.run_suffix`) make the run name, so each namespace has its own chain.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::plan::partitions::{self, completed_dates, Lineage, Round, ScorePair};
use crate::plan::{LoopPlan, Plan};
use crate::run::summary::{self, PartitionSummary};
use crate::run::{RunDir, RunState};
use crate::spec::{Experiment, PartitionOverride, ScheduleMode};
use crate::stages::StageKind;
use crate::train::checkpoint;
use crate::{Error, Result};

/// The partition options of `runner apply`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartitionOptions {
    /// `--partition D` (YYYYMMDD) or `--partition next`.
    pub partition: Option<String>,
    /// `--from A`: first date of a backfill (replaces `schedule.partitions.from`).
    pub from: Option<String>,
    /// `--to B`: last date of a backfill (replaces `schedule.partitions.to`).
    pub to: Option<String>,
    /// `--outcomes-from H` (with `--partition D`): score D's predictions with H's outcomes.
    pub outcomes_from: Option<String>,
}

/// The value of `--partition` that asks for the daily update.
pub const NEXT: &str = "next";

/// How far `--partition next` looks for a date with a prompt file.
const NEXT_LOOKAHEAD_DAYS: usize = 366;

impl PartitionOptions {
    /// Whether any option is given.
    pub fn is_set(&self) -> bool {
        self.partition.is_some()
            || self.from.is_some()
            || self.to.is_some()
            || self.outcomes_from.is_some()
    }

    /// The override target `(D, H)` when `--outcomes-from` is given.
    pub fn override_pair(&self) -> Option<(&str, &str)> {
        match (&self.partition, &self.outcomes_from) {
            (Some(d), Some(h)) if d != NEXT => Some((d.as_str(), h.as_str())),
            _ => None,
        }
    }

    /// Check the combination and the dates.
    pub fn check(&self) -> Result<()> {
        if self.partition.is_some() && (self.from.is_some() || self.to.is_some()) {
            return Err(Error::Run(
                "--partition runs one date; it cannot be combined with --from/--to".into(),
            ));
        }
        if self.outcomes_from.is_some() && self.partition.as_deref().is_none_or(|p| p == NEXT) {
            return Err(Error::Run(
                "--outcomes-from H needs --partition D (the date whose predictions H scores)"
                    .into(),
            ));
        }
        for (flag, v) in [
            ("--partition", &self.partition),
            ("--from", &self.from),
            ("--to", &self.to),
            ("--outcomes-from", &self.outcomes_from),
        ] {
            if let Some(v) = v {
                if v != NEXT || flag != "--partition" {
                    partitions::parse_date(flag, v)?;
                }
            }
        }
        Ok(())
    }
}

/// Run directories under `<runs>/<run_name>/` that completed a partition, newest first, with
/// their completed dates (sorted).
fn chain_candidates(runs_root: &Path, run_name: &str) -> Result<Vec<(PathBuf, Vec<String>)>> {
    let parent = runs_root.join(crate::run::safe_name(run_name));
    if !parent.is_dir() {
        return Ok(Vec::new());
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&parent)
        .map_err(|e| Error::io(&parent, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    Ok(dirs
        .into_iter()
        .rev()
        .filter_map(|d| {
            let mut done = completed_dates(&d);
            done.sort();
            (!done.is_empty()).then_some((d, done))
        })
        .collect())
}

fn prompt_file_exists(spec: &Experiment, date: &str) -> bool {
    spec.data
        .train
        .as_ref()
        .is_some_and(|s| Path::new(&crate::plan::data::source_path(s, Some(date))).is_file())
}

fn outcomes_exist(spec: &Experiment, date: &str) -> bool {
    spec.data
        .outcomes
        .as_ref()
        .is_none_or(|s| Path::new(&s.path.replace("{date}", date)).is_file())
}

/// Apply the partition options (and `backfill: false`) to the resolved spec, before it is
/// hashed and compiled. `run_name` is the spec's run directory name.
pub fn shape_spec(
    spec: &mut Experiment,
    opts: &PartitionOptions,
    runs_root: &Path,
    run_name: &str,
) -> Result<()> {
    if spec.schedule.mode != ScheduleMode::Partitions {
        if opts.is_set() {
            return Err(Error::Run(
                "--partition/--from/--to/--outcomes-from apply to a daily-loop spec \
                 (schedule.mode: partitions)"
                    .into(),
            ));
        }
        return Ok(());
    }
    opts.check()?;
    let latest = chain_candidates(runs_root, run_name)?.into_iter().next();
    let next_after = |last: &str| -> Result<String> {
        let mut d = partitions::next_date(last)?;
        for _ in 0..NEXT_LOOKAHEAD_DAYS {
            if prompt_file_exists(spec, &d) {
                return Ok(d);
            }
            d = partitions::next_date(&d)?;
        }
        Err(Error::Run(format!(
            "--partition next: no date after {last} has a prompt file yet (looked {NEXT_LOOKAHEAD_DAYS} days ahead)"
        )))
    };
    let (from, to) = match opts.partition.as_deref() {
        Some(NEXT) => {
            let (dir, done) = latest.as_ref().ok_or_else(|| {
                Error::Run(format!(
                    "--partition next: no earlier run of `{run_name}` under {} completed a \
                     partition; run a backfill first (--from A --to B) or give --partition DATE",
                    runs_root.display()
                ))
            })?;
            let last = done
                .last()
                .ok_or_else(|| Error::Run(format!("{}: no completed partition", dir.display())))?;
            let n = next_after(last)?;
            (Some(n.clone()), Some(n))
        }
        Some(d) => (Some(d.to_string()), Some(d.to_string())),
        None => (opts.from.clone(), opts.to.clone()),
    };
    let parts = spec.schedule.partitions.as_mut().ok_or_else(|| {
        Error::Spec("schedule.partitions: required when schedule.mode is `partitions`".into())
    })?;
    if let Some(f) = from {
        parts.from = f;
    }
    if let Some(t) = to {
        parts.to = t;
    }
    if let Some((d, h)) = opts.override_pair() {
        parts.overrides.retain(|o| o.predictions_from != d);
        parts.overrides.push(PartitionOverride {
            predictions_from: d.to_string(),
            outcomes_from: h.to_string(),
        });
    }
    if !parts.backfill && opts.partition.is_none() {
        if let Some((dir, done)) = &latest {
            if let Some(last) = done.last() {
                if last.as_str() >= parts.from.as_str() {
                    let start = partitions::next_date(last)?;
                    if start > parts.to {
                        return Err(Error::Run(format!(
                            "nothing to do: every date up to {} is done in {} (backfill: false); \
                             set schedule.partitions.backfill: true to recompute",
                            parts.to,
                            dir.display()
                        )));
                    }
                    parts.from = start;
                }
            }
        }
    }
    Ok(())
}

/// What a new run takes over from its chain run.
#[derive(Debug, Clone, Default)]
pub struct Connection {
    /// The chain run.
    pub prev_run: PathBuf,
    /// Its `checkpoints/final_model/`, when it trained.
    pub model_from: Option<PathBuf>,
    /// Optimizer steps of that model.
    pub base_step: usize,
    /// Predictions to copy: date → rollouts file in the chain run.
    pub imports: BTreeMap<String, PathBuf>,
    /// The chain run's summary rows.
    pub previous_summary: Vec<PartitionSummary>,
}

/// The rollouts of `date`'s predictions in run `run`: its generate instance, else its own
/// import.
pub fn predictions_in(run: &Path, date: &str) -> Option<PathBuf> {
    let from_state = RunState::load(&run.join(crate::run::dir::STATE_FILE))
        .ok()
        .and_then(|st| {
            st.record(&format!("{date}/generate"))
                .and_then(|r| r.outputs.get("rollouts"))
                .and_then(|v| v.as_str())
                .map(|rel| run.join(rel))
        });
    from_state
        .or_else(|| {
            Lineage::load(run)
                .ok()
                .and_then(|l| l.imported_predictions.get(date).map(|rel| run.join(rel)))
        })
        .filter(|p| p.is_file())
}

/// Choose the chain run of a new run and rewrite `plan`'s rounds accordingly (see the module
/// doc). `None` when the run starts fresh.
pub fn connect(
    plan: &mut Plan,
    spec: &Experiment,
    opts: &PartitionOptions,
    runs_root: &Path,
    run_name: &str,
) -> Result<Option<Connection>> {
    let Some(parts) = spec.schedule.partitions.as_ref() else {
        return Ok(None);
    };
    if spec.schedule.mode != ScheduleMode::Partitions {
        return Ok(None);
    }
    let LoopPlan::Partitions { rounds, pending } = &mut plan.loop_ else {
        return Ok(None);
    };
    let candidates = if parts.resume_from_last_model {
        chain_candidates(runs_root, run_name)?
    } else {
        Vec::new()
    };
    let mut imports = BTreeMap::new();
    let chain = if let Some((d, h)) = opts.override_pair() {
        if !outcomes_exist(spec, h) {
            return Err(Error::Run(format!(
                "--outcomes-from {h}: there is no outcomes file for {h}"
            )));
        }
        let chain = candidates
            .iter()
            .find(|(dir, _)| predictions_in(dir, d).is_some())
            .or_else(|| {
                candidates
                    .iter()
                    .find(|(_, done)| done.last().is_some_and(|l| l.as_str() < d))
            })
            .map(|(dir, _)| dir.clone());
        let imported = chain.as_ref().and_then(|c| predictions_in(c, d));
        *rounds = vec![Round {
            date: d.to_string(),
            generate: imported.is_none(),
            score: vec![ScorePair {
                predictions_from: d.to_string(),
                outcomes_from: h.to_string(),
                overridden: true,
            }],
            prompts: None,
            train_steps: None,
        }];
        pending.clear();
        if let Some(p) = imported {
            imports.insert(d.to_string(), p);
        }
        chain
    } else {
        let first = rounds.first().map(|r| r.date.clone()).unwrap_or_default();
        let chain = candidates
            .iter()
            .find(|(_, done)| done.last().is_some_and(|l| *l < first))
            .map(|(dir, _)| dir.clone());
        if let Some(c) = &chain {
            let carried = match Plan::load(&c.join("plan.json"))?.loop_ {
                LoopPlan::Partitions { pending, .. } => pending,
                LoopPlan::Steps { .. } => Vec::new(),
            };
            let placed = partitions::carry_in(
                rounds,
                pending,
                carried,
                spec.schedule.outcome_lag_days.unwrap_or(1),
                &|d| outcomes_exist(spec, d),
            );
            for pair in placed {
                match predictions_in(c, &pair.predictions_from) {
                    Some(p) => {
                        imports.insert(pair.predictions_from.clone(), p);
                    }
                    None => {
                        return Err(Error::Run(format!(
                            "{} lists the predictions of {} as pending but has no rollouts \
                             for them",
                            c.display(),
                            pair.predictions_from
                        )))
                    }
                }
            }
        }
        chain
    };
    recount(plan, spec);
    let Some(prev_run) = chain else {
        return Ok(None);
    };
    let snap = checkpoint::checkpoints_dir_of(&prev_run).join(checkpoint::FINAL_MODEL);
    let (model_from, base_step) = if snap.join(crate::train::state::STATE_FILE).is_file() {
        let st = crate::train::state::read_verified(&snap)?;
        (Some(snap), st.step)
    } else {
        (None, 0)
    };
    plan.notes.push(format!(
        "continues {}: model {}, predictions of {} imported",
        prev_run.display(),
        model_from
            .as_ref()
            .map_or("fresh (it trained nothing)".to_string(), |p| format!(
                "from {} (step {base_step})",
                p.display()
            )),
        if imports.is_empty() {
            "no date".to_string()
        } else {
            imports.keys().cloned().collect::<Vec<_>>().join(", ")
        }
    ));
    Ok(Some(Connection {
        previous_summary: summary::read_summaries(&prev_run).unwrap_or_default(),
        prev_run,
        model_from,
        base_step,
        imports,
    }))
}

/// Stage instance counts of a rewritten plan.
fn recount(plan: &mut Plan, spec: &Experiment) {
    let LoopPlan::Partitions { rounds, .. } = &plan.loop_ else {
        return;
    };
    let generating = rounds.iter().filter(|r| r.generate).count();
    let trained = rounds.iter().filter(|r| !r.score.is_empty()).count();
    let evals = if spec.eval_sets().is_empty() {
        0
    } else {
        trained
    };
    for s in plan.stages.iter_mut() {
        match s.kind {
            StageKind::Generate => s.instances = generating,
            StageKind::Score | StageKind::Rank | StageKind::Train => s.instances = trained,
            StageKind::Eval => s.instances = evals,
            StageKind::Sft => {}
        }
    }
}

/// Directory of an imported date's predictions inside a run.
pub const IMPORTED_DIR: &str = "imported";

/// In the new run directory: adopt the chain run's model, copy the imported predictions, write
/// `partitions.json` and the first summary (every round `pending`, or `skipped: <why>`).
pub fn install(
    run: &RunDir,
    spec: &Experiment,
    plan: &Plan,
    conn: Option<&Connection>,
) -> Result<()> {
    let LoopPlan::Partitions { rounds, .. } = &plan.loop_ else {
        return Ok(());
    };
    if let Some(c) = conn {
        if let Some(m) = &c.model_from {
            checkpoint::adopt_snapshot(m, run)?;
        }
        let mut imported = BTreeMap::new();
        for (date, src) in &c.imports {
            let dir = run.path().join(IMPORTED_DIR).join(date);
            std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
            let dest = dir.join(crate::stages::generate::ROLLOUTS_FILE);
            let bytes = std::fs::read(src).map_err(|e| Error::io(src, e))?;
            crate::run::atomic::write_bytes(&dest, &bytes)?;
            imported.insert(
                date.clone(),
                format!(
                    "{IMPORTED_DIR}/{date}/{}",
                    crate::stages::generate::ROLLOUTS_FILE
                ),
            );
        }
        Lineage {
            previous_run: Some(c.prev_run.display().to_string()),
            model_from: c.model_from.as_ref().map(|p| p.display().to_string()),
            base_step: c.base_step,
            imported_predictions: imported,
            previous_summary: c.previous_summary.clone(),
        }
        .save(run.path())?;
    }
    let rows: Vec<PartitionSummary> = rounds
        .iter()
        .map(|r| PartitionSummary {
            date: r.date.clone(),
            status: if r.generate || !r.score.is_empty() {
                "pending".into()
            } else {
                skip_reason(spec, &r.date)
            },
            ..PartitionSummary::default()
        })
        .collect();
    summary::write_summaries(run.path(), &rows)
}

/// `skipped: no prompt file <path>` for a date without one.
pub fn skip_reason(spec: &Experiment, date: &str) -> String {
    match spec.data.train.as_ref() {
        Some(s) => format!(
            "skipped: no prompt file {}",
            crate::plan::data::source_path(s, Some(date))
        ),
        None => "skipped: no data.train".into(),
    }
}

/// Dates the plan skips (no prompt file, nothing to score) and predictions left pending.
pub fn skipped_and_pending(plan: &Plan) -> (Vec<String>, Vec<String>) {
    match &plan.loop_ {
        LoopPlan::Partitions { rounds, pending } => (
            rounds
                .iter()
                .filter(|r| !r.generate && r.score.is_empty())
                .map(|r| r.date.clone())
                .collect(),
            pending
                .iter()
                .map(|p| format!("{} (outcomes of {})", p.predictions_from, p.outcomes_from))
                .collect(),
        ),
        LoopPlan::Steps { .. } => (Vec::new(), Vec::new()),
    }
}
