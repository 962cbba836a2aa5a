//! Plans: a resolved spec compiled into the stages to run, their loop structure, the resolved
//! parameters of each, the LR at landmark steps, the estimated rollouts and tokens, and the
//! hash of the resolved spec (`runner apply PLAN` refuses a plan whose spec changed since).
//!
//! Steps are 0-based optimizer steps throughout (as in [`crate::train::schedule`]).

pub mod data;
pub mod partitions;
pub mod render;

use crate::spec::{DataSource, Experiment, ScheduleMode};
use crate::stages::StageKind;
use crate::sweep::{self, SweepPoint};
use crate::train::schedule::{LrSchedule, LrSchedulerType};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

pub use partitions::{Round, ScorePair};

/// Version of the `plan.json` format; bumped on incompatible changes.
pub const PLAN_FORMAT_VERSION: u32 = 1;

/// A compiled plan (`plan.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Format version ([`PLAN_FORMAT_VERSION`]).
    pub format_version: u32,
    /// Version of the runner that compiled it.
    pub runner_version: String,
    /// The experiment's name.
    pub name: String,
    /// The run directory name under `runs/`: the name, plus `_<run_suffix>` when the schedule
    /// sets one.
    pub run_name: String,
    /// The experiment's description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Where the spec came from, so `apply` can re-resolve it and detect a stale plan.
    pub source: PlanSource,
    /// Hash of the resolved spec.
    pub spec_hash: String,
    /// The loop structure.
    #[serde(rename = "loop")]
    pub loop_: LoopPlan,
    /// The stages in order, with when they run and their resolved parameters.
    pub stages: Vec<PlannedStage>,
    /// The learning rate at landmark steps (of each partition's training in the daily loop).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr: Option<LrSummary>,
    /// Estimated volume of the run.
    pub estimates: Estimates,
    /// The spec's sweep points (`runner sweep --apply` runs them; `apply` runs the spec itself).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sweep: Vec<SweepPoint>,
    /// Caveats: numbers that could not be computed, assumptions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// How the spec was resolved.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PlanSource {
    /// The spec file (`None` for a spec built in memory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec_path: Option<PathBuf>,
    /// The `--set path=value` overrides applied, in order.
    #[serde(default)]
    pub sets: Vec<String>,
    /// Whether `RUNNER_*` environment variables were applied.
    #[serde(default = "yes")]
    pub use_env: bool,
}

fn yes() -> bool {
    true
}

/// The outer loop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum LoopPlan {
    /// One online RL run: every step generates, scores, ranks and trains; eval after the steps
    /// listed (and after the last).
    Steps {
        /// Optimizer steps.
        total_steps: usize,
        /// 0-based steps after which eval runs.
        eval_after: Vec<usize>,
    },
    /// The daily loop: one round per date.
    Partitions {
        /// The rounds, in date order.
        rounds: Vec<Round>,
        /// Predictions whose scoring date is after the range (scored by a later run).
        pending: Vec<ScorePair>,
    },
}

/// One stage of the plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedStage {
    /// The stage kind.
    pub kind: StageKind,
    /// When it runs, in words ("once, first", "every step", "per partition", ...).
    pub runs: String,
    /// Instances of it in the run.
    pub instances: usize,
    /// The resolved spec values it uses.
    pub params: serde_json::Value,
}

/// The learning rate at landmark steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LrSummary {
    /// What the schedule spans ("the run", "each partition's training (N steps)").
    pub scope: String,
    /// The scheduler.
    pub scheduler: LrSchedulerType,
    /// Peak LR.
    pub peak: f64,
    /// Steps the schedule spans.
    pub total_steps: usize,
    /// Warm-up steps.
    pub warmup_steps: usize,
    /// LR at the first step, the end of warm-up, the middle and the last step.
    pub points: Vec<LrPoint>,
    /// First step after warm-up where the LR is under 1 % of the peak (the V4 lesson: steps
    /// after it barely train).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub below_1pct_from: Option<usize>,
}

/// The LR at one step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LrPoint {
    /// `first`, `warmup_end`, `middle`, `last`.
    pub at: String,
    /// 0-based step.
    pub step: usize,
    /// The learning rate.
    pub lr: f64,
}

/// Estimated volume. Token counts are upper bounds on completions (every rollout at
/// `max_completion_length`) plus a prompt estimate (≈ 4 characters per token).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Estimates {
    /// Prompts per optimizer step (`batch_size × gradient_accumulation_steps`).
    pub prompts_per_step: usize,
    /// Rollouts per prompt.
    pub num_generations: usize,
    /// Optimizer steps in all.
    pub optimizer_steps: usize,
    /// Training rollouts generated.
    pub train_rollouts: usize,
    /// Eval completions generated (0 when the eval sets' sizes are unknown).
    pub eval_rollouts: usize,
    /// All rollouts.
    pub rollouts: usize,
    /// Completion length cap in tokens.
    pub max_completion_length: usize,
    /// Upper bound on completion tokens (rollouts × cap).
    pub completion_tokens_max: u64,
    /// Estimated prompt tokens per prompt, if the data could be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_per_prompt: Option<f64>,
    /// Estimated prompt tokens over all rollouts (each rollout's forward sees its prompt).
    pub prompt_tokens: u64,
    /// completion_tokens_max + prompt_tokens.
    pub tokens_max: u64,
}

/// One unit of execution: a stage kind at one step or partition. Its `id` keys `state.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageInstance {
    /// Stable id, e.g. `sft`, `step-0017/generate`, `20250804/score`.
    pub id: String,
    /// The stage kind.
    pub kind: StageKind,
    /// The 0-based optimizer step (steps mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<usize>,
    /// The partition date (daily loop).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
    /// Predictions scored / trained on in this instance (daily loop score, rank, train).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pairs: Vec<ScorePair>,
}

impl Plan {
    /// Every stage instance, in execution order.
    pub fn instances(&self) -> Vec<StageInstance> {
        let mut out = Vec::new();
        if self.has(StageKind::Sft) {
            out.push(instance(
                "sft".into(),
                StageKind::Sft,
                None,
                None,
                Vec::new(),
            ));
        }
        match &self.loop_ {
            LoopPlan::Steps {
                total_steps,
                eval_after,
            } => {
                let width = total_steps.saturating_sub(1).to_string().len().max(4);
                for s in 0..*total_steps {
                    let prefix = format!("step-{s:0width$}");
                    for kind in [
                        StageKind::Generate,
                        StageKind::Score,
                        StageKind::Rank,
                        StageKind::Train,
                    ] {
                        out.push(instance(
                            format!("{prefix}/{kind}"),
                            kind,
                            Some(s),
                            None,
                            Vec::new(),
                        ));
                    }
                    if self.has(StageKind::Eval) && eval_after.contains(&s) {
                        out.push(instance(
                            format!("{prefix}/eval"),
                            StageKind::Eval,
                            Some(s),
                            None,
                            Vec::new(),
                        ));
                    }
                }
            }
            LoopPlan::Partitions { rounds, .. } => {
                for r in rounds {
                    let d = Some(r.date.clone());
                    if r.generate {
                        out.push(instance(
                            format!("{}/generate", r.date),
                            StageKind::Generate,
                            None,
                            d.clone(),
                            Vec::new(),
                        ));
                    }
                    if !r.score.is_empty() {
                        for kind in [StageKind::Score, StageKind::Rank, StageKind::Train] {
                            out.push(instance(
                                format!("{}/{kind}", r.date),
                                kind,
                                None,
                                d.clone(),
                                r.score.clone(),
                            ));
                        }
                        if self.has(StageKind::Eval) {
                            out.push(instance(
                                format!("{}/eval", r.date),
                                StageKind::Eval,
                                None,
                                d.clone(),
                                Vec::new(),
                            ));
                        }
                    }
                }
            }
        }
        out
    }

    /// The stage kinds the plan runs, in plan order.
    pub fn kinds(&self) -> Vec<StageKind> {
        self.stages
            .iter()
            .filter(|s| s.instances > 0)
            .map(|s| s.kind)
            .collect()
    }

    fn has(&self, kind: StageKind) -> bool {
        self.stages
            .iter()
            .any(|s| s.kind == kind && s.instances > 0)
    }

    /// Read a saved plan, checking its format version.
    pub fn load(path: &std::path::Path) -> Result<Plan> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let raw: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
            Error::Run(format!(
                "{}: not a plan (invalid JSON: {e})",
                path.display()
            ))
        })?;
        match raw.get("format_version").and_then(|v| v.as_u64()) {
            Some(v) if v == u64::from(PLAN_FORMAT_VERSION) => {}
            Some(v) => {
                return Err(Error::Run(format!(
                    "{}: plan format_version {v} is not the supported {PLAN_FORMAT_VERSION}; run `runner plan` again",
                    path.display()
                )))
            }
            None => {
                return Err(Error::Run(format!(
                    "{}: not a plan (no format_version)",
                    path.display()
                )))
            }
        }
        serde_json::from_value(raw)
            .map_err(|e| Error::Run(format!("{}: malformed plan: {e}", path.display())))
    }
}

fn instance(
    id: String,
    kind: StageKind,
    step: Option<usize>,
    date: Option<String>,
    pairs: Vec<ScorePair>,
) -> StageInstance {
    StageInstance {
        id,
        kind,
        step,
        date,
        pairs,
    }
}

/// The run directory name of a spec: `name`, or `name_SUFFIX` with a schedule `run_suffix`.
pub fn run_name(spec: &Experiment) -> String {
    match spec.schedule.run_suffix.as_deref() {
        Some(s) if !s.is_empty() => format!("{}_{s}", spec.name),
        _ => spec.name.clone(),
    }
}

/// Compile a resolved spec into a plan. `spec_hash` is the hash of the resolved spec
/// (`crate::spec::resolve::spec_hash`); data files are read (relative to the working
/// directory) to size the run.
pub fn compile(spec: &Experiment, spec_hash: &str, source: PlanSource) -> Result<Plan> {
    let mut notes = Vec::new();
    let sampler = spec.generate.sampler(None)?;
    let prompts_per_step = spec.train.batch_size * spec.train.gradient_accumulation_steps;

    let (loop_, optimizer_steps, train_prompts_generated, lr_sched, lr_scope, eval_count) =
        match spec.schedule.mode {
            ScheduleMode::Steps => {
                let total = steps_total(spec, &mut notes)?;
                let eval_after = if spec.eval.sets.is_empty() {
                    Vec::new()
                } else {
                    eval_steps(spec, total)
                };
                let n_eval = eval_after.len();
                let sched = spec.lr_schedule_for(total);
                (
                    LoopPlan::Steps {
                        total_steps: total,
                        eval_after,
                    },
                    total,
                    total * prompts_per_step,
                    Some(sched),
                    "the run".to_string(),
                    n_eval,
                )
            }
            ScheduleMode::Partitions => compile_partitions(spec, &mut notes)?,
        };
    let eval_count = if spec.eval.sets.is_empty() {
        0
    } else {
        eval_count
    };

    let stages = planned_stages(spec, &loop_, eval_count);
    let lr = lr_sched.map(|s| lr_summary(&s, lr_scope));
    let estimates = estimate(
        spec,
        optimizer_steps,
        train_prompts_generated,
        eval_count,
        sampler.max_completion_length,
        &mut notes,
    );
    let sweep = sweep::expand(spec)?;
    if !sweep.is_empty() {
        notes.push(format!(
            "the spec has a sweep of {} points: `runner sweep --apply` runs them; `runner apply` runs the spec as written",
            sweep.len()
        ));
    }
    Ok(Plan {
        format_version: PLAN_FORMAT_VERSION,
        runner_version: crate::VERSION.to_string(),
        name: spec.name.clone(),
        run_name: run_name(spec),
        description: spec.description.clone(),
        source,
        spec_hash: spec_hash.to_string(),
        loop_,
        stages,
        lr,
        estimates,
        sweep,
        notes,
    })
}

/// Optimizer steps of a steps-mode run: `max_steps`, else epochs over the train data.
fn steps_total(spec: &Experiment, notes: &mut Vec<String>) -> Result<usize> {
    if let Some(s) = spec.total_train_steps() {
        return Ok(s);
    }
    let src = spec.data.train.as_ref().ok_or_else(|| {
        Error::Spec(
            "cannot size the run: train.max_steps is not set and there is no data.train".into(),
        )
    })?;
    let rows = data::count_records(src, None).ok_or_else(|| {
        Error::Spec(format!(
            "cannot size the run: train.max_steps is not set and data.train ({}) cannot be read",
            src.path
        ))
    })?;
    let total = spec.total_train_steps_for(rows);
    notes.push(format!(
        "steps from {} epochs over {rows} train prompts at {} prompts per step",
        spec.train.num_train_epochs,
        spec.train.batch_size * spec.train.gradient_accumulation_steps
    ));
    Ok(total)
}

/// Steps after which eval runs: every `eval.every` steps and after the last.
fn eval_steps(spec: &Experiment, total: usize) -> Vec<usize> {
    if total == 0 {
        return Vec::new();
    }
    let mut out: Vec<usize> = match spec.eval.every {
        Some(n) if n > 0 => (1..=total / n).map(|k| k * n - 1).collect(),
        _ => Vec::new(),
    };
    if out.last() != Some(&(total - 1)) {
        out.push(total - 1);
    }
    out
}

type LoopParts = (LoopPlan, usize, usize, Option<LrSchedule>, String, usize);

fn compile_partitions(spec: &Experiment, notes: &mut Vec<String>) -> Result<LoopParts> {
    let parts = spec.schedule.partitions.as_ref().ok_or_else(|| {
        Error::Spec("schedule.partitions: required when schedule.mode is `partitions`".into())
    })?;
    let train_src = spec.data.train.as_ref();
    let has_prompts = |d: &str| {
        train_src.is_some_and(|s| std::path::Path::new(&data::source_path(s, Some(d))).is_file())
    };
    let outcomes_src = spec.data.outcomes.as_ref();
    let has_outcomes = |d: &str| {
        outcomes_src.is_none_or(|s| std::path::Path::new(&s.path.replace("{date}", d)).is_file())
    };
    let (mut rounds, pending) = partitions::rounds(
        parts,
        spec.schedule.outcome_lag_days.unwrap_or(1),
        &has_prompts,
        &has_outcomes,
    )?;
    let mut generated = 0usize;
    let mut unknown = Vec::new();
    for r in rounds.iter_mut() {
        if r.generate {
            r.prompts = train_src.and_then(|s| data::count_records(s, Some(&r.date)));
            match r.prompts {
                Some(n) => generated += n,
                None => unknown.push(r.date.clone()),
            }
        }
    }
    let prompts_of =
        |rounds: &[Round], d: &str| rounds.iter().find(|r| r.date == d).and_then(|r| r.prompts);
    let mut steps = 0usize;
    let mut first_sched: Option<LrSchedule> = None;
    let mut trained_rounds = 0usize;
    for i in 0..rounds.len() {
        if rounds[i].score.is_empty() {
            continue;
        }
        trained_rounds += 1;
        let rows: Option<usize> = rounds[i]
            .score
            .iter()
            .map(|p| prompts_of(&rounds, &p.predictions_from))
            .sum();
        let round_steps = match (spec.train.max_steps, rows) {
            (Some(s), _) => Some(s),
            (None, Some(n)) => Some(spec.total_train_steps_for(n)),
            (None, None) => None,
        };
        rounds[i].train_steps = round_steps;
        if let Some(s) = round_steps {
            steps += s;
            if first_sched.is_none() {
                first_sched = Some(spec.lr_schedule_for(s));
            }
        }
    }
    if !unknown.is_empty() {
        notes.push(format!(
            "prompt files unreadable for {}: rollouts and steps of those dates are not counted",
            unknown.join(", ")
        ));
    }
    let skipped: Vec<&str> = rounds
        .iter()
        .filter(|r| !r.generate)
        .map(|r| r.date.as_str())
        .collect();
    if !skipped.is_empty() {
        notes.push(format!(
            "no prompt file for {} (skipped: skip_missing)",
            skipped.join(", ")
        ));
    }
    if !pending.is_empty() {
        let p: Vec<String> = pending
            .iter()
            .map(|p| format!("{} (outcomes of {})", p.predictions_from, p.outcomes_from))
            .collect();
        notes.push(format!(
            "pending, for a later run: predictions of {} — their outcomes are after the range or not there yet",
            p.join(", ")
        ));
    }
    let scope = match &first_sched {
        Some(s) => format!("each partition's training (first: {} steps)", s.total_steps),
        None => "each partition's training".to_string(),
    };
    Ok((
        LoopPlan::Partitions { rounds, pending },
        steps,
        generated,
        first_sched,
        scope,
        trained_rounds,
    ))
}

/// What partition D's score stage pairs for `schedule.outcome_lag_days` = `lag`: the
/// predictions of P are scored against the outcomes of P + lag, in round max(P + 1, P + lag)
/// (see [`partitions::rounds`]).
pub fn score_pairing(lag: u32) -> String {
    match lag {
        0 => "per partition D: predictions of D−1 against D−1's own outcomes \
              (outcome_lag_days: 0), or an override"
            .to_string(),
        1 => "per partition D: predictions of D−1 against D's outcomes, or an override".to_string(),
        n => format!(
            "per partition D: predictions of D−{n} against D's outcomes (outcome_lag_days: {n}), \
             or an override"
        ),
    }
}

fn planned_stages(spec: &Experiment, loop_: &LoopPlan, eval_count: usize) -> Vec<PlannedStage> {
    let to_json = |v: serde_json::Result<serde_json::Value>| v.unwrap_or(serde_json::Value::Null);
    let mut out = Vec::new();
    if let Some(sft) = &spec.train.sft {
        out.push(PlannedStage {
            kind: StageKind::Sft,
            runs: "once, before RL".into(),
            instances: 1,
            params: serde_json::json!({
                "sft": to_json(serde_json::to_value(sft)),
                "data": to_json(serde_json::to_value(spec.data.sft.as_ref().or(spec.data.train.as_ref()))),
                "model": to_json(serde_json::to_value(&spec.model)),
            }),
        });
    }
    let (per, n_gen, n_train) = match loop_ {
        LoopPlan::Steps { total_steps, .. } => {
            ("every step".to_string(), *total_steps, *total_steps)
        }
        LoopPlan::Partitions { rounds, .. } => (
            "per partition".to_string(),
            rounds.iter().filter(|r| r.generate).count(),
            rounds.iter().filter(|r| !r.score.is_empty()).count(),
        ),
    };
    let scored = match loop_ {
        LoopPlan::Steps { .. } => "every step".to_string(),
        LoopPlan::Partitions { .. } => score_pairing(spec.schedule.outcome_lag_days.unwrap_or(1)),
    };
    out.push(PlannedStage {
        kind: StageKind::Generate,
        runs: per.clone(),
        instances: n_gen,
        params: serde_json::json!({
            "model": to_json(serde_json::to_value(&spec.model)),
            "generate": to_json(serde_json::to_value(&spec.generate)),
            "data": to_json(serde_json::to_value(&spec.data.train)),
            "prompt": to_json(serde_json::to_value(&spec.data.prompt)),
        }),
    });
    out.push(PlannedStage {
        kind: StageKind::Score,
        runs: scored,
        instances: n_train,
        params: serde_json::json!({
            "rewards": to_json(serde_json::to_value(&spec.rewards)),
            "outcomes": to_json(serde_json::to_value(&spec.data.outcomes)),
        }),
    });
    out.push(PlannedStage {
        kind: StageKind::Rank,
        runs: per.clone(),
        instances: n_train,
        params: to_json(serde_json::to_value(&spec.rank)),
    });
    let mut train = to_json(serde_json::to_value(&spec.train));
    if let Some(obj) = train.as_object_mut() {
        obj.remove("sft");
    }
    out.push(PlannedStage {
        kind: StageKind::Train,
        runs: per,
        instances: n_train,
        params: train,
    });
    let eval_runs = match (loop_, spec.eval.every) {
        (LoopPlan::Steps { .. }, Some(n)) => format!("every {n} steps and after the last"),
        (LoopPlan::Steps { .. }, None) => "after the last step".into(),
        (LoopPlan::Partitions { .. }, _) => "after each partition's training".into(),
    };
    out.push(PlannedStage {
        kind: StageKind::Eval,
        runs: eval_runs,
        instances: eval_count,
        params: serde_json::json!({
            "eval": to_json(serde_json::to_value(&spec.eval)),
            "monitors": to_json(serde_json::to_value(&spec.monitors)),
        }),
    });
    out
}

/// The LR at the first step, the end of warm-up, the middle and the last step.
pub fn lr_summary(s: &LrSchedule, scope: String) -> LrSummary {
    let last = s.total_steps.saturating_sub(1);
    let mut points = vec![("first", 0)];
    if s.warmup_steps > 0 {
        points.push(("warmup_end", s.warmup_steps.min(last)));
    }
    points.push(("middle", s.total_steps / 2));
    points.push(("last", last));
    LrSummary {
        scope,
        scheduler: s.kind,
        peak: s.peak_lr,
        total_steps: s.total_steps,
        warmup_steps: s.warmup_steps,
        points: points
            .into_iter()
            .map(|(at, step)| LrPoint {
                at: at.into(),
                step,
                lr: s.lr_at(step),
            })
            .collect(),
        below_1pct_from: s.first_step_below(0.01),
    }
}

fn estimate(
    spec: &Experiment,
    optimizer_steps: usize,
    train_prompts: usize,
    eval_count: usize,
    max_completion_length: usize,
    notes: &mut Vec<String>,
) -> Estimates {
    let g = spec.generate.num_generations;
    let train_rollouts = train_prompts * g;
    let mut eval_prompts_each = 0usize;
    for set in &spec.eval.sets {
        let src: Option<&DataSource> = match set.as_str() {
            "eval" => spec.data.eval.as_ref(),
            "train" => spec.data.train.as_ref(),
            other => spec.data.extra.get(other),
        };
        let n = src.and_then(|s| {
            let date = first_date(spec);
            data::count_records(
                s,
                if s.path.contains("{date}") {
                    date.as_deref()
                } else {
                    None
                },
            )
        });
        match n {
            Some(n) => eval_prompts_each += spec.eval.max_examples.map_or(n, |m| n.min(m)),
            None => notes.push(format!(
                "eval set `{set}`: size unknown, its rollouts are not counted"
            )),
        }
    }
    let eval_rollouts = eval_prompts_each * spec.eval.num_generations * eval_count;
    let rollouts = train_rollouts + eval_rollouts;
    let prompt_chars = spec.data.train.as_ref().and_then(|s| {
        let date = if s.path.contains("{date}") {
            first_date(spec)
        } else {
            None
        };
        data::mean_prompt_chars(s, date.as_deref())
    });
    let overhead = spec
        .data
        .prompt
        .template
        .as_ref()
        .map_or(0, |t| t.chars().count())
        + spec
            .data
            .prompt
            .system
            .as_ref()
            .map_or(0, |t| t.chars().count());
    let prompt_tokens_per_prompt =
        prompt_chars.map(|c| ((c + overhead as f64) / data::CHARS_PER_TOKEN).ceil());
    if prompt_tokens_per_prompt.is_none() {
        notes.push(
            "prompt tokens unknown (train data unreadable): token estimate counts completions only"
                .into(),
        );
    }
    let completion_tokens_max = rollouts as u64 * max_completion_length as u64;
    let prompt_tokens = prompt_tokens_per_prompt.map_or(0, |p| (p * rollouts as f64) as u64);
    Estimates {
        prompts_per_step: spec.train.batch_size * spec.train.gradient_accumulation_steps,
        num_generations: g,
        optimizer_steps,
        train_rollouts,
        eval_rollouts,
        rollouts,
        max_completion_length,
        completion_tokens_max,
        prompt_tokens_per_prompt,
        prompt_tokens,
        tokens_max: completion_tokens_max + prompt_tokens,
    }
}

fn first_date(spec: &Experiment) -> Option<String> {
    spec.schedule.partitions.as_ref().map(|p| p.from.clone())
}
