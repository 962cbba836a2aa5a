//! Semantic rules on a resolved [`Experiment`]: what the schema cannot say. Each rule is a
//! small function that returns findings with the field path they are about; `validate`
//! locates them in the files.
//!
//! Errors make a run impossible or meaningless (a group of one completion, a warm-up longer
//! than the run, a gate naming no reward, a missing file); warnings flag settings that run
//! but probably do not do what was meant (the lessons of the seed reports: an LR schedule that
//! stops training early, GSPO that equals GRPO, a diversity term without a gradient).

use std::path::{Path, PathBuf};

use super::suggest::{did_you_mean, hint};
use super::types::*;
use super::validate::Severity;
use crate::train::schedule::{LrSchedule, LrSchedulerType};

/// Model names the runner can fetch itself (`runner models pull`).
pub const KNOWN_MODELS: &[&str] = &["smollm2-135m-instruct", "all-minilm-l6-v2"];

/// One rule violation, not yet located.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// Dotted field path the finding is about.
    pub path: String,
    /// Point at the key (a name that is wrong) rather than the value.
    pub key: bool,
    pub severity: Severity,
    pub message: String,
    pub hint: Option<String>,
}

impl Finding {
    fn error(path: impl Into<String>, message: impl Into<String>) -> Finding {
        Finding {
            path: path.into(),
            key: false,
            severity: Severity::Error,
            message: message.into(),
            hint: None,
        }
    }

    fn warning(path: impl Into<String>, message: impl Into<String>) -> Finding {
        Finding {
            severity: Severity::Warning,
            ..Finding::error(path, message)
        }
    }

    fn at_key(mut self) -> Finding {
        self.key = true;
        self
    }

    fn hint(mut self, h: Option<String>) -> Finding {
        self.hint = h;
        self
    }
}

/// What the rules need besides the spec.
#[derive(Debug, Clone)]
pub struct RuleContext {
    /// Directory that relative data/model paths are relative to (the working directory).
    pub base_dir: PathBuf,
    /// Directory of the spec file (to say when a path only exists relative to it).
    pub spec_dir: PathBuf,
    /// The local Hugging Face hub cache (`$HF_HUB_CACHE`, `$HF_HOME/hub`, `~/.cache/huggingface/hub`).
    pub hf_cache: Option<PathBuf>,
}

impl RuleContext {
    /// The context for validating the spec at `spec` from the current directory.
    pub fn for_spec(spec: &Path) -> RuleContext {
        let hf_cache = std::env::var_os("HF_HUB_CACHE")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HF_HOME").map(|h| PathBuf::from(h).join("hub")))
            .or_else(|| {
                std::env::var_os("HOME").map(|h| {
                    PathBuf::from(h)
                        .join(".cache")
                        .join("huggingface")
                        .join("hub")
                })
            });
        RuleContext {
            base_dir: PathBuf::from("."),
            spec_dir: spec.parent().map(Path::to_path_buf).unwrap_or_default(),
            hf_cache,
        }
    }
}

/// Runs every rule.
pub fn check(spec: &Experiment, ctx: &RuleContext) -> Vec<Finding> {
    let mut out = Vec::new();
    group_size(spec, &mut out);
    batch_arithmetic(spec, &mut out);
    warmup(spec, &mut out);
    lr_decay(spec, &mut out);
    clipping(spec, &mut out);
    gspo_equals_grpo(spec, &mut out);
    dr_grpo_scaling(spec, &mut out);
    reward_references(spec, &mut out);
    reward_weights(spec, &mut out);
    task_names(spec, &mut out);
    sampler_profiles(spec, &mut out);
    eval_sets(spec, &mut out);
    eval_metrics(spec, &mut out);
    diversity(spec, &mut out);
    partitions(spec, &mut out);
    sweep_paths(spec, &mut out);
    data_files(spec, ctx, &mut out);
    models(spec, ctx, &mut out);
    out
}

/// Group advantages need at least two completions per prompt.
fn group_size(spec: &Experiment, out: &mut Vec<Finding>) {
    let g = spec.generate.num_generations;
    if g < 2 {
        out.push(Finding::error(
            "generate.num_generations",
            format!(
                "must be at least 2, found {g}: advantages compare completions within a group, \
                 and a group of one has no signal"
            ),
        ));
    }
}

/// Micro-batches must split a step's completions into whole groups' worth of rows (TRL: the
/// generation batch must be divisible by num_generations).
fn batch_arithmetic(spec: &Experiment, out: &mut Vec<Finding>) {
    let t = &spec.train;
    let g = spec.generate.num_generations;
    let per_micro = t.batch_size * g;
    if let Some(m) = t.micro_batch_size {
        if per_micro > 0 && !per_micro.is_multiple_of(m) {
            out.push(Finding::error(
                "train.micro_batch_size",
                format!(
                    "{m} does not divide the {per_micro} completions of a micro-step \
                     (batch_size {} × num_generations {g})",
                    t.batch_size
                ),
            ));
        }
    }
    if let Some(d) = &t.objective.diversity {
        let prompts = t.batch_size * t.gradient_accumulation_steps;
        if d.max_examples_for_diversity > prompts {
            out.push(Finding::warning(
                "train.objective.diversity.max_examples_for_diversity",
                format!(
                    "{} prompts requested but a step has only {prompts} (batch_size {} × \
                     gradient_accumulation_steps {}); at most {prompts} are used",
                    d.max_examples_for_diversity, t.batch_size, t.gradient_accumulation_steps
                ),
            ));
        }
    }
}

/// Warm-up must end inside the run.
fn warmup(spec: &Experiment, out: &mut Vec<Finding>) {
    let t = &spec.train;
    if t.warmup_steps.is_some() && t.warmup_ratio.is_some() {
        out.push(Finding::warning(
            "train.warmup_ratio",
            "ignored: `warmup_steps` is also set and takes precedence",
        ));
    }
    if t.lr_scheduler_type == LrSchedulerType::Constant
        && (t.warmup_steps.unwrap_or(0) > 0 || t.warmup_ratio.unwrap_or(0.0) > 0.0)
    {
        let field = if t.warmup_steps.is_some() {
            "train.warmup_steps"
        } else {
            "train.warmup_ratio"
        };
        out.push(
            Finding::warning(field, "`constant` has no warm-up; this setting is ignored")
                .hint(Some(hint("constant_with_warmup"))),
        );
    }
    let Some(total) = spec.total_train_steps() else {
        return;
    };
    let w = spec.warmup_steps_for(total);
    if w >= total && w > 0 {
        let field = if t.warmup_steps.is_some() {
            "train.warmup_steps"
        } else {
            "train.warmup_ratio"
        };
        out.push(Finding::error(
            field,
            format!(
                "warm-up of {w} steps does not end within the run of {total} steps \
                 (train.max_steps): the LR never reaches its peak"
            ),
        ));
    }
}

/// A schedule under 1 % of its peak before the last 10 % of steps trains on nothing for the
/// rest of the run (the V4 lesson). Needs a known step count (`train.max_steps`).
fn lr_decay(spec: &Experiment, out: &mut Vec<Finding>) {
    if let Some(s) = spec.lr_schedule() {
        out.extend(early_decay(&s, 0.01, 0.10));
    }
}

/// The warning of [`lr_decay`] for a schedule: the first step under `frac` of the peak, when
/// it comes before the last `tail` of the steps.
pub fn early_decay(s: &LrSchedule, frac: f64, tail: f64) -> Option<Finding> {
    let total = s.total_steps;
    let step = first_step_below(s, frac)?;
    let tail_start = (total as f64 * (1.0 - tail)).floor() as usize;
    if step >= tail_start {
        return None;
    }
    Some(
        Finding::warning(
            "train.lr_scheduler_type",
            format!(
                "the `{}` schedule falls below {}% of the peak LR at step {step} of {total}: the \
             last {} steps barely train",
                serde_json::to_value(s.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                frac * 100.0,
                total - step
            ),
        )
        .hint(Some(
            "use constant_with_warmup, or cosine_with_min_lr with a min_lr_rate".into(),
        )),
    )
}

/// The first step after warm-up with an LR under `frac` of the peak, by bisection: every
/// schedule is non-increasing after its warm-up, and a step count from a spec can be huge
/// (a linear scan of `u64::MAX` steps would never end). Agrees with
/// [`LrSchedule::first_step_below`].
fn first_step_below(s: &LrSchedule, frac: f64) -> Option<usize> {
    let (mut lo, mut hi) = (s.warmup_steps.min(s.total_steps), s.total_steps);
    if lo >= hi || s.factor(hi - 1) >= frac {
        return None;
    }
    // Invariant: factor(hi - 1) < frac; every step before lo is at or above it.
    hi -= 1;
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if s.factor(mid) < frac {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    Some(lo)
}

/// DAPO clip-higher: the upper clip range must not be below the lower one.
fn clipping(spec: &Experiment, out: &mut Vec<Finding>) {
    if let Some(hi) = spec.train.epsilon_high {
        if hi < spec.train.epsilon {
            out.push(Finding::error(
                "train.epsilon_high",
                format!(
                    "{hi} is below epsilon {}: the upper clip range must be at least the lower",
                    spec.train.epsilon
                ),
            ));
        }
    }
}

/// With one optimisation pass per batch the policy never moves before the loss is computed,
/// so every importance ratio is 1 and GSPO's sequence-level ratio changes nothing.
fn gspo_equals_grpo(spec: &Experiment, out: &mut Vec<Finding>) {
    if spec.train.importance_sampling_level == ImportanceSamplingLevel::Sequence
        && spec.train.num_iterations == 1
    {
        out.push(Finding::warning(
            "train.importance_sampling_level",
            "`sequence` with num_iterations = 1: the importance ratio is always 1, so GSPO \
             trains exactly like GRPO; set train.num_iterations ≥ 2 for the sequence-level \
             ratio to matter",
        ));
    }
}

/// Dr. GRPO removes the std normalisation; scaling by the std reintroduces its bias.
fn dr_grpo_scaling(spec: &Experiment, out: &mut Vec<Finding>) {
    if spec.train.loss_type == LossType::DrGrpo && spec.rank.scale_rewards != ScaleRewards::None {
        out.push(
            Finding::warning(
                "rank.scale_rewards",
                "Dr. GRPO (loss_type dr_grpo) with std scaling: dividing advantages by the \
                 reward std reintroduces the difficulty bias Dr. GRPO removes",
            )
            .hint(Some("set rank.scale_rewards: none".into())),
        );
    }
}

/// Composite components, gates, outcome blends and `generate.retry_on` must name rewards.
fn reward_references(spec: &Experiment, out: &mut Vec<Finding>) {
    let names: Vec<&str> = spec.rewards.keys().map(String::as_str).collect();
    for (name, reward) in &spec.rewards {
        for (rel, target) in reward.references() {
            let path = format!("rewards.{name}.{rel}");
            let is_key = rel.starts_with("components.");
            if target == name {
                out.push(Finding::error(
                    path,
                    format!("reward `{name}` refers to itself"),
                ));
            } else if !spec.rewards.contains_key(target) {
                let f = Finding::error(path, format!("no reward named `{target}` is defined"))
                    .hint(did_you_mean(target, names.iter().copied()).map(|s| hint(&s)));
                out.push(if is_key { f.at_key() } else { f });
            }
        }
    }
    if let Some(r) = &spec.generate.retry_on {
        if !spec.rewards.contains_key(r) {
            out.push(
                Finding::error(
                    "generate.retry_on",
                    format!("no reward named `{r}` is defined"),
                )
                .hint(did_you_mean(r, names.iter().copied()).map(|s| hint(&s))),
            );
        }
    }
    if spec.generate.retries > 0 && spec.generate.retry_on.is_none() {
        out.push(Finding::warning(
            "generate.retries",
            "retries are set but `retry_on` names no reward, so nothing is retried",
        ));
    }
}

/// Training needs a reward with a non-zero weight.
fn reward_weights(spec: &Experiment, out: &mut Vec<Finding>) {
    if spec.rewards.is_empty() {
        out.push(Finding::error(
            "rewards",
            "no reward is defined: training needs at least one",
        ));
        return;
    }
    if spec.rewards.values().all(|r| r.weight() == 0.0) {
        out.push(Finding::error(
            "rewards",
            "every reward has weight 0: the training reward is always 0",
        ));
    }
}

/// Task names used by rewards and task rules must be declared in `data.task.names`.
fn task_names(spec: &Experiment, out: &mut Vec<Finding>) {
    let declared = &spec.data.task.names;
    if declared.is_empty() {
        return;
    }
    let mut check = |path: String, task: &str| {
        if !declared.iter().any(|d| d == task) {
            out.push(
                Finding::error(path, format!("task `{task}` is not in data.task.names")).hint(
                    did_you_mean(task, declared.iter().map(String::as_str)).map(|s| hint(&s)),
                ),
            );
        }
    };
    for (name, r) in &spec.rewards {
        for (i, t) in r.tasks().iter().enumerate() {
            check(format!("rewards.{name}.tasks.{i}"), t);
        }
    }
    for (i, rule) in spec.data.task.rules.iter().enumerate() {
        check(format!("data.task.rules.{i}.task"), &rule.task);
    }
    if let Some(d) = &spec.data.task.default {
        check("data.task.default".into(), d);
    }
}

/// Profiles named by `profile`, `auto_profile` and `eval.profile` must be defined.
fn sampler_profiles(spec: &Experiment, out: &mut Vec<Finding>) {
    let g = &spec.generate;
    let names: Vec<&str> = g.profiles.keys().map(String::as_str).collect();
    let mut check = |path: &str, p: &str| {
        if !g.profiles.contains_key(p) {
            out.push(
                Finding::error(
                    path,
                    format!("no sampler profile `{p}` in generate.profiles"),
                )
                .hint(did_you_mean(p, names.iter().copied()).map(|s| hint(&s))),
            );
        }
    };
    if let Some(p) = &g.profile {
        check("generate.profile", p);
    }
    if let Some(a) = &g.auto_profile {
        check("generate.auto_profile.from", &a.from);
        check("generate.auto_profile.to", &a.to);
    }
    if let Some(p) = &spec.eval.profile {
        check("eval.profile", p);
    }
}

/// Eval sets must name defined data sources.
fn eval_sets(spec: &Experiment, out: &mut Vec<Finding>) {
    let mut known: Vec<&str> = vec!["train", "eval"];
    known.extend(spec.data.extra.keys().map(String::as_str));
    for (i, set) in spec.eval.sets.iter().enumerate() {
        let path = format!("eval.sets.{i}");
        let defined = match set.as_str() {
            "train" => spec.data.train.is_some(),
            "eval" => spec.data.eval.is_some(),
            other => spec.data.extra.contains_key(other),
        };
        if !defined {
            let f = match set.as_str() {
                "train" | "eval" => Finding::warning(
                    path,
                    format!("data.{set} is not set, so this set is not evaluated"),
                ),
                _ => Finding::error(
                    path,
                    format!(
                        "no data source `{set}` (expected `train`, `eval` or a name under \
                         data.extra)"
                    ),
                )
                .hint(did_you_mean(set, known.iter().copied()).map(|s| hint(&s))),
            };
            out.push(f);
        }
    }
}

/// A diversity score computed from sampled text and subtracted from the loss is a constant
/// for autograd: it moves the loss value, never the weights (the polychromic lesson).
/// `pass@k` counts completions every `answer` reward scores 1: without one it cannot be computed
/// (it would fail at the first eval, after the training steps before it).
fn eval_metrics(spec: &Experiment, out: &mut Vec<Finding>) {
    let has_answer = spec
        .rewards
        .values()
        .any(|r| matches!(r, crate::spec::types::Reward::Answer(_)));
    for (i, m) in spec.eval.metrics.iter().enumerate() {
        if m.starts_with("pass@") && !has_answer {
            out.push(Finding::error(
                format!("eval.metrics.{i}"),
                format!("`{m}` needs an `answer` reward (a completion passes when every answer reward scores 1), and the spec has none"),
            ));
        }
    }
}

fn diversity(spec: &Experiment, out: &mut Vec<Finding>) {
    if let Some(d) = &spec.train.objective.diversity {
        let g = spec.generate.num_generations;
        if d.kind == DiversityKind::SetPolychromic && d.lambda > 0.0 && d.n_generations >= g {
            // Sets of n out of G completions: with n ≥ G a prompt has one set, and each
            // rollout's advantage (mean score of its sets − mean over all sets) is 0.
            out.push(
                Finding::warning(
                    "train.objective.diversity.n_generations",
                    format!(
                        "sets of {} out of {g} completions per prompt: there is only one set, so \
                         every set_polychromic advantage is 0 and nothing trains",
                        d.n_generations
                    ),
                )
                .hint(Some(format!(
                    "use a set size below generate.num_generations (e.g. {})",
                    (g / 2).max(2)
                ))),
            );
        }
        if d.kind == DiversityKind::TextPenalty && d.lambda > 0.0 {
            out.push(
                Finding::warning(
                    "train.objective.diversity.kind",
                    format!(
                        "`text_penalty` has no gradient: loss − λ·diversity with a score computed \
                         from sampled text shifts the loss value but cannot change the model, \
                         whatever λ (= {})",
                        d.lambda
                    ),
                )
                .hint(Some("use set_polychromic or diversity_bonus".into())),
            );
        }
    }
}

/// Partitioned runs need a valid date range.
fn partitions(spec: &Experiment, out: &mut Vec<Finding>) {
    let s = &spec.schedule;
    match (&s.mode, &s.partitions) {
        (ScheduleMode::Partitions, None) => out.push(Finding::error(
            "schedule.partitions",
            "schedule.mode is `partitions` but no partitions (from, to) are given",
        )),
        (ScheduleMode::Steps, Some(_)) => out.push(Finding::warning(
            "schedule.partitions",
            "ignored: schedule.mode is `steps`",
        )),
        _ => {}
    }
    let Some(p) = &s.partitions else { return };
    let from = parse_date(&p.from);
    let to = parse_date(&p.to);
    if from.is_none() {
        out.push(Finding::error(
            "schedule.partitions.from",
            format!("`{}` is not a date YYYYMMDD", p.from),
        ));
    }
    if to.is_none() {
        out.push(Finding::error(
            "schedule.partitions.to",
            format!("`{}` is not a date YYYYMMDD", p.to),
        ));
    }
    if let (Some(f), Some(t)) = (from, to) {
        if f > t {
            out.push(Finding::error(
                "schedule.partitions.to",
                format!("ends ({}) before it starts ({})", p.to, p.from),
            ));
        }
    }
    for (i, o) in p.overrides.iter().enumerate() {
        for (field, d) in [
            ("predictions_from", &o.predictions_from),
            ("outcomes_from", &o.outcomes_from),
        ] {
            if parse_date(d).is_none() {
                out.push(Finding::error(
                    format!("schedule.partitions.overrides.{i}.{field}"),
                    format!("`{d}` is not a date YYYYMMDD"),
                ));
            }
        }
    }
}

fn parse_date(s: &str) -> Option<chrono::NaiveDate> {
    chrono::NaiveDate::parse_from_str(s, "%Y%m%d").ok()
}

/// The dates of a partition range, inclusive (empty when invalid).
fn partition_dates(p: &Partitions) -> Vec<String> {
    let (Some(mut d), Some(to)) = (parse_date(&p.from), parse_date(&p.to)) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    while d <= to && out.len() < 10_000 {
        out.push(d.format("%Y%m%d").to_string());
        match d.succ_opt() {
            Some(n) => d = n,
            None => break,
        }
    }
    out
}

/// Sweep axes must be field paths of the spec.
fn sweep_paths(spec: &Experiment, out: &mut Vec<Finding>) {
    let Ok(doc) = serde_json::to_value(spec) else {
        return;
    };
    let mut lengths: Vec<(String, usize)> = Vec::new();
    for (section, axes) in [("grid", &spec.sweep.grid), ("zip", &spec.sweep.zip)] {
        for (path, values) in axes {
            let at = format!("sweep.{section}.{path}");
            if let Some(f) = check_field_path(&doc, path, &at) {
                out.push(f);
            }
            if values.is_empty() {
                out.push(Finding::error(at.clone(), "no values to sweep over"));
            }
            if section == "zip" {
                lengths.push((path.clone(), values.len()));
            }
        }
    }
    if let Some((first, n)) = lengths.first() {
        for (p, m) in &lengths[1..] {
            if m != n {
                out.push(Finding::error(
                    format!("sweep.zip.{p}"),
                    format!(
                        "has {m} values but `{first}` has {n}: zipped lists must be equally long"
                    ),
                ));
            }
        }
    }
}

/// A finding when `path` names no field of the resolved document `doc`.
fn check_field_path(doc: &serde_json::Value, path: &str, at: &str) -> Option<Finding> {
    let mut node = doc;
    for seg in path.split('.') {
        let next = match node {
            serde_json::Value::Object(m) => m.get(seg).ok_or_else(|| {
                let keys: Vec<&str> = m.keys().map(String::as_str).collect();
                (did_you_mean(seg, keys.iter().copied()), seg)
            }),
            // Inside an unset optional section or a list, the rest cannot be checked here.
            serde_json::Value::Null | serde_json::Value::Array(_) => return None,
            _ => Err((None, seg)),
        };
        match next {
            Ok(n) => node = n,
            Err((suggestion, seg)) => {
                return Some(
                    Finding::error(
                        at,
                        format!("`{path}` is not a field of the spec (no `{seg}`)"),
                    )
                    .at_key()
                    .hint(suggestion.map(|s| hint(&s))),
                )
            }
        }
    }
    None
}

/// Every data file, database and adapter must exist before any compute starts.
fn data_files(spec: &Experiment, ctx: &RuleContext, out: &mut Vec<Finding>) {
    let dates = spec
        .schedule
        .partitions
        .as_ref()
        .filter(|_| spec.schedule.mode == ScheduleMode::Partitions)
        .map(partition_dates)
        .unwrap_or_default();
    let d = &spec.data;
    let mut sources: Vec<(String, &str)> = Vec::new();
    for (name, src) in [("train", &d.train), ("eval", &d.eval), ("sft", &d.sft)] {
        if let Some(s) = src {
            sources.push((format!("data.{name}.path"), &s.path));
        }
    }
    for (name, s) in &d.extra {
        sources.push((format!("data.extra.{name}.path"), &s.path));
    }
    if let Some(o) = &d.outcomes {
        sources.push(("data.outcomes.path".into(), &o.path));
    }
    for (path, file) in sources {
        check_data_path(&path, file, &dates, ctx, out);
    }
    for (name, r) in &spec.rewards {
        if let Reward::Sql(s) = r {
            check_file(&format!("rewards.{name}.database"), &s.database, ctx, out);
        }
    }
    if let Some(a) = &spec.model.adapter.init_from {
        check_file("model.adapter.init_from", a, ctx, out);
    }
}

fn check_data_path(
    field: &str,
    file: &str,
    dates: &[String],
    ctx: &RuleContext,
    out: &mut Vec<Finding>,
) {
    if !file.contains("{date}") {
        check_file(field, file, ctx, out);
        return;
    }
    let full = ctx.base_dir.join(file);
    let dir = full.parent().map(Path::to_path_buf).unwrap_or_default();
    let pattern_dir = dir.to_string_lossy().contains("{date}");
    if !pattern_dir && !dir.is_dir() {
        out.push(Finding::error(
            field,
            format!(
                "directory `{}` of the `{{date}}` pattern does not exist",
                dir.display()
            ),
        ));
        return;
    }
    if dates.is_empty() {
        return;
    }
    let missing: Vec<&String> = dates
        .iter()
        .filter(|d| !ctx.base_dir.join(file.replace("{date}", d)).exists())
        .collect();
    if !missing.is_empty() {
        let shown: Vec<&str> = missing.iter().take(8).map(|s| s.as_str()).collect();
        let more = if missing.len() > 8 {
            format!(" and {} more", missing.len() - 8)
        } else {
            String::new()
        };
        out.push(Finding::warning(
            field,
            format!(
                "{} of {} partition dates have no file: {}{more}",
                missing.len(),
                dates.len(),
                shown.join(", ")
            ),
        ));
    }
}

fn check_file(field: &str, file: &str, ctx: &RuleContext, out: &mut Vec<Finding>) {
    if ctx.base_dir.join(file).exists() {
        return;
    }
    let beside_spec = ctx.spec_dir.join(file);
    let hint = beside_spec.exists().then(|| {
        format!(
            "`{}` exists: paths are relative to the working directory, not to the spec file",
            beside_spec.display()
        )
    });
    out.push(Finding::error(field, format!("file `{file}` does not exist")).hint(hint));
}

/// The base model (and embedders, judges) must be local, known, or a hub id.
fn models(spec: &Experiment, ctx: &RuleContext, out: &mut Vec<Finding>) {
    check_model("model.base", &spec.model.base, ctx, out);
    for (name, r) in &spec.rewards {
        match r {
            Reward::Semantic(s) => {
                check_model(&format!("rewards.{name}.embedder"), &s.embedder, ctx, out)
            }
            Reward::Judge(j) => {
                if let Some(m) = &j.model {
                    check_model(&format!("rewards.{name}.model"), m, ctx, out);
                }
            }
            _ => {}
        }
    }
}

/// Checks one model reference without fetching anything.
pub fn check_model(field: &str, name: &str, ctx: &RuleContext, out: &mut Vec<Finding>) {
    if KNOWN_MODELS.contains(&name) {
        return;
    }
    let local = ctx.base_dir.join(name);
    if local.exists() {
        if name.ends_with(".gguf") && !local.is_file() {
            out.push(Finding::error(field, format!("`{name}` is not a file")));
        }
        return;
    }
    let looks_like_path = name.starts_with('.')
        || name.starts_with('/')
        || name.starts_with('~')
        || name.ends_with(".gguf")
        || name.ends_with(".safetensors")
        || name.matches('/').count() > 1;
    if !looks_like_path && is_hub_id(name) {
        let cached = ctx.hf_cache.as_ref().is_some_and(|c| {
            c.join(format!("models--{}", name.replace('/', "--")))
                .is_dir()
        });
        if !cached {
            out.push(Finding::warning(
                field,
                format!(
                    "`{name}` is not in the local Hugging Face cache: it is downloaded on first \
                     use, which needs network access to the hub"
                ),
            ));
        }
        return;
    }
    let msg = if looks_like_path {
        format!("model path `{name}` does not exist")
    } else {
        format!(
            "`{name}` is not a known model ({}), a local path, or a hub id `org/name`",
            KNOWN_MODELS.join(", ")
        )
    };
    out.push(
        Finding::error(field, msg)
            .hint(did_you_mean(name, KNOWN_MODELS.iter().copied()).map(|s| hint(&s))),
    );
}

/// `org/name` with the characters the hub allows.
fn is_hub_id(s: &str) -> bool {
    let ok = |p: &str| {
        !p.is_empty()
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && !p.starts_with('.')
    };
    match s.split_once('/') {
        Some((org, name)) => ok(org) && ok(name),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> RuleContext {
        RuleContext {
            base_dir: PathBuf::from("."),
            spec_dir: PathBuf::from("."),
            hf_cache: None,
        }
    }

    fn messages(spec: &Experiment) -> Vec<String> {
        check(spec, &ctx())
            .into_iter()
            .map(|f| format!("{}: {}", f.path, f.message))
            .collect()
    }

    #[test]
    fn defaults_only_lack_a_reward() {
        let spec = Experiment::default();
        assert_eq!(
            messages(&spec),
            vec![
                "rewards: no reward is defined: training needs at least one",
                "eval.sets.0: data.eval is not set, so this set is not evaluated"
            ]
        );
    }

    #[test]
    fn polychromic_with_one_set_per_prompt_and_pass_at_k_without_answer_reward() {
        let spec: Experiment = serde_yaml::from_str(
            "generate: {num_generations: 4}\n\
             rewards: {len: {kind: format, regex: '.*'}}\n\
             train: {objective: {diversity: {kind: set_polychromic, lambda: 1.0, n_generations: 4}}}\n\
             eval: {metrics: [mean_reward, pass@1]}",
        )
        .unwrap();
        let m = messages(&spec);
        assert!(
            m.iter().any(|x| x.starts_with(
                "train.objective.diversity.n_generations: sets of 4 out of 4 completions"
            )),
            "{m:?}"
        );
        assert!(
            m.iter()
                .any(|x| x.starts_with("eval.metrics.1: `pass@1` needs an `answer` reward")),
            "{m:?}"
        );
        let ok: Experiment = serde_yaml::from_str(
            "generate: {num_generations: 8}\n\
             rewards: {a: {kind: answer}}\n\
             train: {objective: {diversity: {kind: set_polychromic, lambda: 1.0, n_generations: 4}}}\n\
             eval: {metrics: [pass@1]}",
        )
        .unwrap();
        let m = messages(&ok);
        assert!(
            !m.iter()
                .any(|x| x.contains("n_generations") || x.contains("pass@")),
            "{m:?}"
        );
    }

    #[test]
    fn early_decay_names_the_step() {
        let cosine = LrSchedule {
            kind: LrSchedulerType::Cosine,
            peak_lr: 2e-6,
            total_steps: 200,
            warmup_steps: 20,
            min_lr_rate: 0.0,
            decay_ratio: 0.1,
        };
        // HF cosine only reaches 1 % in its last 7 % of decay: no warning.
        assert!(early_decay(&cosine, 0.01, 0.10).is_none());
        // Under 5 %: 0.5 (1 + cos(π p)) < 0.05 ⇔ p > 0.8564, i.e. step 20 + 0.8564 × 180 = 174.2.
        let f = early_decay(&cosine, 0.05, 0.10).expect("falls under 5 % at step 175");
        assert!(f.message.contains("at step 175 of 200"), "{}", f.message);
        assert_eq!(f.severity, Severity::Warning);
        assert_eq!(f.path, "train.lr_scheduler_type");
    }

    #[test]
    fn bisection_agrees_with_the_scan() {
        use LrSchedulerType::*;
        for kind in [
            Constant,
            ConstantWithWarmup,
            Linear,
            Cosine,
            CosineWithMinLr,
            WarmupStableDecay,
        ] {
            for (total, warmup) in [(1, 0), (10, 3), (200, 20), (600, 30), (97, 96), (50, 80)] {
                for frac in [0.01, 0.05, 0.5, 0.99] {
                    let s = LrSchedule {
                        kind,
                        peak_lr: 1e-5,
                        total_steps: total,
                        warmup_steps: warmup,
                        min_lr_rate: 0.0,
                        decay_ratio: 0.3,
                    };
                    assert_eq!(
                        first_step_below(&s, frac),
                        s.first_step_below(frac),
                        "{kind:?} {total} {warmup} {frac}"
                    );
                }
            }
        }
        let huge = LrSchedule {
            kind: Linear,
            peak_lr: 1.0,
            total_steps: usize::MAX,
            warmup_steps: 0,
            min_lr_rate: 0.0,
            decay_ratio: 0.1,
        };
        assert!(early_decay(&huge, 0.01, 0.10).is_none());
    }

    #[test]
    fn hub_ids() {
        assert!(is_hub_id("Qwen/Qwen3-0.6B"));
        assert!(!is_hub_id("qwen3"));
        assert!(!is_hub_id("a/b/c"));
        let mut out = Vec::new();
        check_model("model.base", "smollm2-135m-instruc", &ctx(), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0].hint.as_deref(),
            Some("did you mean `smollm2-135m-instruct`?")
        );
    }
}
