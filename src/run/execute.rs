//! Running a plan's stage instances in order into a run directory, recording each completed
//! instance in `state.json` and every start, finish and failure in `events.jsonl`. Completed
//! instances are skipped, which is all `--resume` needs. A completed instance whose outputs
//! carry `stop_run` (a monitor with `action: stop`) ends the run after it is recorded.

use super::{EventLog, RunDir, RunState, StageRecord};
use crate::plan::Plan;
use crate::spec::Experiment;
use crate::stages::{Registry, Resources, StageContext};
use crate::{Error, Result};
use chrono::Utc;
use serde_json::json;

/// What [`execute`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExecSummary {
    /// Instances run now.
    pub executed: usize,
    /// Instances skipped because `state.json` has them completed.
    pub skipped: usize,
    /// Instances in the plan.
    pub total: usize,
}

/// Run every instance of `plan` not yet completed in `state`, in order. Stops at the first
/// failing instance (recorded as `last_error`; a resume retries it). Checks first that every
/// stage kind of the plan is implemented, so nothing starts otherwise.
pub fn execute(
    run: &RunDir,
    spec: &Experiment,
    plan: &Plan,
    registry: &Registry,
    state: &mut RunState,
    events: &mut EventLog,
    show_progress: bool,
) -> Result<ExecSummary> {
    registry.check(plan)?;
    let instances = plan.instances();
    let mut summary = ExecSummary {
        total: instances.len(),
        ..ExecSummary::default()
    };
    let bar = progress_bar(instances.len() as u64, show_progress);
    let mut resources = Resources::default();
    let mut last_reward: Option<f64> = None;
    for inst in &instances {
        if state.is_completed(&inst.id) {
            summary.skipped += 1;
            bar.inc(1);
            continue;
        }
        let stage = registry
            .get(inst.kind)
            .ok_or_else(|| Error::Run(crate::stages::not_implemented_message(&[inst.kind])))?;
        bar.set_message(match last_reward {
            Some(r) => format!("{} · reward {r:.3}", inst.id),
            None => inst.id.clone(),
        });
        let started_at = Utc::now();
        events.emit(
            Some(&inst.id),
            "stage_started",
            json!({ "kind": inst.kind }),
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
    bar.finish_and_clear();
    events.emit(
        None,
        "run_finished",
        json!({ "executed": summary.executed, "skipped": summary.skipped }),
    )?;
    Ok(summary)
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
