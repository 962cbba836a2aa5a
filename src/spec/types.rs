//! The typed experiment spec: one struct per section, with serde (every struct denies unknown
//! keys) and schemars (the doc comment of every field becomes its JSON-schema description, and
//! with it the hover text in editors).
//!
//! Option names follow TRL's `GRPOConfig` / HF `TrainingArguments` wherever TRL has the same
//! concept, so a TRL user reads a spec without a glossary. Every field has a default except the
//! few that cannot have one (a data source's `path`, a format reward's `regex`, ...), so a spec
//! only writes what differs from the defaults; `runner plan` shows the fully resolved spec.
//!
//! Relative file paths in a spec are relative to the working directory `runner` runs in (the
//! project root, as in `runner apply experiments/v4.yaml`).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::train::schedule::{warmup_steps_from_ratio, LrSchedule, LrSchedulerType};

// ---------------------------------------------------------------------------------------------
// Root
// ---------------------------------------------------------------------------------------------

/// An experiment: what to train, on what, with which rewards, and how to loop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Experiment {
    /// Name of the experiment; names the run directory `runs/<name>/` and the sweep points
    /// (`<name>@lambda=1.0,seed=2`). Defaults to the spec file's stem (`v4_1.yaml` → `v4_1`); it
    /// is never inherited through `extends`.
    #[schemars(pattern(r"^[A-Za-z0-9][A-Za-z0-9._-]*$"))]
    pub name: String,
    /// Free text: what the experiment tests and why. Shown by `runner plan`.
    pub description: Option<String>,
    /// Path of a parent spec (relative to this file) whose settings this one starts from; maps
    /// merge key by key, lists and scalars set here replace the parent's. Chains may be of any
    /// depth; cycles are errors. The resolved spec has no `extends` (everything is inlined).
    pub extends: Option<String>,
    /// Master random seed (TRL `seed`): data order, sampling, LoRA init, dropout. Default 42 as
    /// in HF `TrainingArguments`.
    pub seed: u64,
    /// The policy model and how it is adapted (LoRA or full fine-tuning).
    pub model: Model,
    /// Training and evaluation data: sources, field mapping, prompt template, task labels.
    pub data: Data,
    /// Rollout sampling: group size, completion length, sampler parameters and profiles.
    pub generate: Generate,
    /// Named reward functions (`rewards.<name>`), each with a `kind`, a `weight` and the kind's
    /// options. The training reward is the weighted sum over all rewards (TRL `reward_weights`
    /// semantics); a weight of 0 computes and logs a reward without training on it.
    pub rewards: BTreeMap<String, Reward>,
    /// How rewards become advantages within each group of rollouts.
    pub rank: Rank,
    /// The optimisation: loss, clipping, KL, optimizer, LR schedule, steps, objective terms.
    pub train: Train,
    /// Periodic evaluation: when, on which data, which metrics, which checkpoint to keep.
    pub eval: Eval,
    /// Conditions on logged metrics that warn or stop the run.
    pub monitors: Vec<Monitor>,
    /// The outer loop: a fixed number of steps, or one round per date partition.
    pub schedule: Schedule,
    /// Expansion into several runs: a grid and/or zipped lists over any field path, times seeds.
    pub sweep: Sweep,
    /// Cluster resources of one run (one sweep point = one Slurm array task with
    /// `runner sweep --executor slurm`). Ignored when running locally.
    pub resources: Resources,
}

impl Default for Experiment {
    fn default() -> Self {
        Experiment {
            name: String::new(),
            description: None,
            extends: None,
            seed: 42,
            model: Model::default(),
            data: Data::default(),
            generate: Generate::default(),
            rewards: BTreeMap::new(),
            rank: Rank::default(),
            train: Train::default(),
            eval: Eval::default(),
            monitors: Vec::new(),
            schedule: Schedule::default(),
            sweep: Sweep::default(),
            resources: Resources::default(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// model
// ---------------------------------------------------------------------------------------------

/// The policy model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Model {
    /// The base model: a known short id (`smollm2-135m-instruct`, fetched and cached by
    /// `runner models pull`), an HF hub id (`Polygl0t/Tucano2-qwen-0.5B-Instruct`), a local HF
    /// model directory, or a `.gguf` file. TRL: `model_name_or_path`.
    pub base: String,
    /// Hub revision (branch, tag or commit) when `base` is a hub id; `null` = the default branch.
    pub revision: Option<String>,
    /// What is trained: LoRA adapters (default) or all weights.
    pub adapter: Adapter,
    /// Weight and compute dtype. `f32` (default) is exact on CPU; `bf16` halves memory.
    pub dtype: Dtype,
    /// Where to compute: `cpu` (default), `cuda` (needs the `cuda` build feature), or `auto`
    /// (CUDA when available, else CPU).
    pub device: Device,
    /// CPU threads for compute; `null` = all cores. On small machines 1 thread can decode faster
    /// than 2 (measure with `runner bench`).
    #[schemars(range(min = 1))]
    pub threads: Option<usize>,
    /// Longest prompt + completion in tokens (TRL `max_seq_length`); `null` = the model's limit.
    #[schemars(range(min = 1))]
    pub max_seq_length: Option<usize>,
}

impl Default for Model {
    fn default() -> Self {
        Model {
            base: "smollm2-135m-instruct".into(),
            revision: None,
            adapter: Adapter::default(),
            dtype: Dtype::F32,
            device: Device::Cpu,
            threads: None,
            max_seq_length: None,
        }
    }
}

/// Trainable parameters: LoRA adapters on chosen linear layers, or the full model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Adapter {
    /// `lora` (default): only low-rank adapters train, base weights stay frozen. `full`: every
    /// weight trains (small models only); the LoRA options below are then unused.
    pub kind: AdapterKind,
    /// LoRA rank (PEFT `r`). Default 16.
    #[schemars(range(min = 1))]
    pub r: usize,
    /// LoRA scaling numerator (PEFT `lora_alpha`); the update is scaled by `lora_alpha / r`.
    /// Default 32 (= 2 r).
    pub lora_alpha: f64,
    /// Dropout on the LoRA input during training (PEFT `lora_dropout`), in [0, 1). Default 0.05.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub lora_dropout: f64,
    /// Linear layers that get adapters (PEFT `target_modules`). Default `[q_proj, v_proj]`.
    pub target_modules: Vec<TargetModule>,
    /// A PEFT adapter directory to start from instead of a fresh initialisation; `null` = fresh.
    pub init_from: Option<String>,
}

impl Default for Adapter {
    fn default() -> Self {
        Adapter {
            kind: AdapterKind::Lora,
            r: 16,
            lora_alpha: 32.0,
            lora_dropout: 0.05,
            target_modules: vec![TargetModule::QProj, TargetModule::VProj],
            init_from: None,
        }
    }
}

/// What trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AdapterKind {
    /// Low-rank adapters; base weights frozen.
    Lora,
    /// Full fine-tuning of every weight.
    Full,
}

/// A linear layer of a Llama/Qwen decoder block (PEFT names).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum TargetModule {
    /// Attention query projection.
    QProj,
    /// Attention key projection.
    KProj,
    /// Attention value projection.
    VProj,
    /// Attention output projection.
    OProj,
    /// MLP gate projection.
    GateProj,
    /// MLP up projection.
    UpProj,
    /// MLP down projection.
    DownProj,
}

/// Numeric type of weights and compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Dtype {
    /// 32-bit float.
    F32,
    /// bfloat16.
    Bf16,
}

/// Compute device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Device {
    /// The CPU.
    Cpu,
    /// The first CUDA GPU (build with `--features cuda`).
    Cuda,
    /// CUDA when available, else the CPU.
    Auto,
}

// ---------------------------------------------------------------------------------------------
// data
// ---------------------------------------------------------------------------------------------

/// Training and evaluation data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Data {
    /// Prompts to train on. A path containing `{date}` is partitioned: one file per date of
    /// `schedule.partitions`.
    pub train: Option<DataSource>,
    /// Held-out prompts for `eval` (referred to as `eval` in `eval.sets`).
    pub eval: Option<DataSource>,
    /// Further named sources that `eval.sets` may name (e.g. a fixed headline set for A/B).
    pub extra: BTreeMap<String, DataSource>,
    /// Realised outcomes that score a partition's predictions (the daily loop): one file per
    /// date, joined to the prompts by a key field.
    pub outcomes: Option<OutcomeSource>,
    /// How a record becomes the model's input.
    pub prompt: PromptSpec,
    /// How each record's task label is found (for per-task rewards and per-task eval metrics).
    pub task: TaskSpec,
    /// Data for the optional SFT warm-up stage (`train.sft`); `null` = `data.train`.
    pub sft: Option<DataSource>,
    /// What a malformed line of any data file (invalid JSON, a JSONL line that is not an
    /// object, a CSV row that does not parse) does: `fail` (default) stops with the file and
    /// line number; `skip` leaves the line out and prints each one skipped as
    /// `FILE:LINE: reason`.
    pub on_bad_line: OnBadLine,
}

/// Handling of malformed data lines (`data.on_bad_line`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnBadLine {
    /// Stop with an error naming the file and line.
    #[default]
    Fail,
    /// Leave the line out, with a warning naming the file and line.
    Skip,
}

/// One data file (or a `{date}` pattern of files).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DataSource {
    /// File path, relative to the working directory. `{date}` is replaced by the partition date
    /// (YYYYMMDD), e.g. `experiments/data/headlines/{date}.jsonl`.
    pub path: String,
    /// File format; `auto` (default) goes by the extension (`.jsonl`, `.json`, `.csv`).
    #[serde(default)]
    pub format: DataFormat,
    /// Which record fields hold the prompt, reference answer, task label and id.
    #[serde(default)]
    pub fields: FieldMap,
    /// Use at most this many records (after shuffling); `null` = all.
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub limit: Option<usize>,
    /// Shuffle records with the experiment seed before use. Default true.
    #[serde(default = "default_true")]
    pub shuffle: bool,
}

/// Record format of a data file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum DataFormat {
    /// By file extension.
    #[default]
    Auto,
    /// One JSON object per line.
    Jsonl,
    /// A JSON array of objects.
    Json,
    /// CSV with a header row.
    Csv,
}

/// Names of the record fields the runner reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct FieldMap {
    /// Field with the prompt text (or, for chat data, a list of `{role, content}` messages, as
    /// TRL's conversational `prompt`). Default `prompt`.
    pub prompt: String,
    /// Field with the reference answer / expected output used by `answer`, `json` (reference
    /// match) and `semantic` rewards; `null` = none.
    pub reference: Option<String>,
    /// Field with the task label; `null` = classify with `data.task.rules`.
    pub task: Option<String>,
    /// Field with a stable record id; `null` = the line number.
    pub id: Option<String>,
}

impl Default for FieldMap {
    fn default() -> Self {
        FieldMap {
            prompt: "prompt".into(),
            reference: None,
            task: None,
            id: None,
        }
    }
}

/// Per-date outcome files for the daily loop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OutcomeSource {
    /// Path pattern with `{date}` (YYYYMMDD), e.g. `experiments/data/outcomes/{date}.jsonl`.
    pub path: String,
    /// File format; `auto` goes by the extension.
    #[serde(default)]
    pub format: DataFormat,
    /// Field present in both the prompt records and the outcome records that joins them
    /// (e.g. `ticker`).
    pub join_on: String,
    /// Outcome field that judges and outcome-aware rewards read (e.g. `move_pct`).
    pub value: String,
}

/// How a record becomes the model input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct PromptSpec {
    /// A minijinja template rendered with the record's fields as variables, e.g.
    /// `"Headline: {{ text }}\nForecast the next trading day."`; `null` = the prompt field as is.
    pub template: Option<String>,
    /// System prompt placed before the user turn; `null` = none.
    pub system: Option<String>,
    /// Wrap the prompt in the model's chat template (TRL does for conversational data). Default
    /// true; false feeds the raw text (base models without a template).
    pub chat_template: bool,
}

impl Default for PromptSpec {
    fn default() -> Self {
        PromptSpec {
            template: None,
            system: None,
            chat_template: true,
        }
    }
}

/// Task labels: read from a field, or classified from the prompt by rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TaskSpec {
    /// The task names in use (e.g. extraction, sql_qa, insights, push); rewards' `tasks` and
    /// per-task metrics refer to these. Empty = a single unnamed task.
    pub names: Vec<String>,
    /// Ordered classification rules applied to the user text when the record has no task field;
    /// the first rule that matches wins.
    pub rules: Vec<TaskRule>,
    /// Task of records no rule matches; `null` = such records are an error.
    pub default: Option<String>,
}

/// One task classification rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskRule {
    /// Task assigned when the rule matches.
    pub task: String,
    /// Matches when the user text contains any of these (case-insensitive).
    #[serde(default)]
    pub contains: Vec<String>,
    /// Matches when this regex finds a match in the user text; `null` = unused.
    #[serde(default)]
    pub regex: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// generate
// ---------------------------------------------------------------------------------------------

/// Rollout sampling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Generate {
    /// Completions sampled per prompt, the group size G (TRL `num_generations`, default 8).
    /// Group advantages need at least 2.
    #[schemars(range(min = 1))]
    pub num_generations: usize,
    /// Longest completion in tokens (TRL `max_completion_length`, default 256).
    #[schemars(range(min = 1))]
    pub max_completion_length: usize,
    /// Sampling temperature (TRL `temperature`, default 1.0); 0 = greedy.
    #[schemars(range(min = 0.0))]
    pub temperature: f64,
    /// Nucleus sampling mass in (0, 1] (TRL `top_p`, default 1.0 = off).
    #[schemars(range(min = 0.0, max = 1.0))]
    pub top_p: f64,
    /// Keep only the k most likely tokens (TRL `top_k`); `null` = off.
    #[schemars(range(min = 1))]
    pub top_k: Option<usize>,
    /// Drop tokens below `min_p ×` the top token's probability (TRL `min_p`); `null` = off.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub min_p: Option<f64>,
    /// Penalty > 1 on tokens already present (TRL `repetition_penalty`, default 1.0 = off).
    #[schemars(range(min = 0.0))]
    pub repetition_penalty: f64,
    /// Strings that end a completion (not included in it), besides the model's end-of-turn token.
    pub stop: Vec<String>,
    /// Named sampler profiles that override the parameters above, e.g. `tight` (low temperature,
    /// short) and `default`. A profile only lists what it changes.
    pub profiles: BTreeMap<String, SamplerProfile>,
    /// The profile in use at the start; `null` = the parameters above as they are.
    pub profile: Option<String>,
    /// Switch profiles between partitions when metrics of the previous one allow it, e.g.
    /// tight → default when validity ≥ 0.10 and leak ≤ 0.10. `null` = never switch.
    pub auto_profile: Option<AutoProfile>,
    /// Extra attempts for a completion that fails `retry_on`, replacing it; 0 = none.
    pub retries: u32,
    /// Name of a reward (usually a `format` reward) whose value below 1 marks a completion as a
    /// format failure to retry; `null` = no retries.
    pub retry_on: Option<String>,
}

impl Default for Generate {
    fn default() -> Self {
        Generate {
            num_generations: 8,
            max_completion_length: 256,
            temperature: 1.0,
            top_p: 1.0,
            top_k: None,
            min_p: None,
            repetition_penalty: 1.0,
            stop: Vec::new(),
            profiles: BTreeMap::new(),
            profile: None,
            auto_profile: None,
            retries: 0,
            retry_on: None,
        }
    }
}

/// A named set of sampler overrides; unset fields keep the `generate` value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields, default)]
pub struct SamplerProfile {
    /// Overrides `generate.temperature`.
    #[schemars(range(min = 0.0))]
    pub temperature: Option<f64>,
    /// Overrides `generate.top_p`.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub top_p: Option<f64>,
    /// Overrides `generate.top_k`.
    #[schemars(range(min = 1))]
    pub top_k: Option<usize>,
    /// Overrides `generate.min_p`.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub min_p: Option<f64>,
    /// Overrides `generate.repetition_penalty`.
    #[schemars(range(min = 0.0))]
    pub repetition_penalty: Option<f64>,
    /// Overrides `generate.max_completion_length`.
    #[schemars(range(min = 1))]
    pub max_completion_length: Option<usize>,
}

/// A rule that moves from one sampler profile to another between partitions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AutoProfile {
    /// Profile the rule applies to (the current one), e.g. `tight`.
    pub from: String,
    /// Profile switched to, e.g. `default`.
    pub to: String,
    /// All must hold on the previous partition's metrics (e.g. `validity ge 0.10`,
    /// `leak_rate le 0.10`).
    pub when: Vec<Condition>,
}

/// A comparison of a logged metric with a threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    /// Metric name as logged, e.g. `reward/validity`, `eval/mean_reward`, `leak_rate`.
    pub metric: String,
    /// Comparison: `gt` >, `ge` ≥, `lt` <, `le` ≤.
    pub op: CompareOp,
    /// Threshold.
    pub value: f64,
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CompareOp {
    /// Greater than.
    Gt,
    /// Greater than or equal.
    Ge,
    /// Less than.
    Lt,
    /// Less than or equal.
    Le,
}

impl CompareOp {
    /// Whether `lhs op rhs` holds (false for NaN).
    pub fn holds(self, lhs: f64, rhs: f64) -> bool {
        match self {
            CompareOp::Gt => lhs > rhs,
            CompareOp::Ge => lhs >= rhs,
            CompareOp::Lt => lhs < rhs,
            CompareOp::Le => lhs <= rhs,
        }
    }
}

/// The sampler parameters after applying a profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SamplerParams {
    pub temperature: f64,
    pub top_p: f64,
    pub top_k: Option<usize>,
    pub min_p: Option<f64>,
    pub repetition_penalty: f64,
    pub max_completion_length: usize,
    pub stop: Vec<String>,
}

impl Generate {
    /// The sampler parameters with profile `profile` applied (`None` = the active `profile`, or
    /// none). Errors when the profile is not defined.
    pub fn sampler(&self, profile: Option<&str>) -> crate::Result<SamplerParams> {
        let mut p = SamplerParams {
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: self.top_k,
            min_p: self.min_p,
            repetition_penalty: self.repetition_penalty,
            max_completion_length: self.max_completion_length,
            stop: self.stop.clone(),
        };
        let Some(name) = profile.or(self.profile.as_deref()) else {
            return Ok(p);
        };
        let prof = self.profiles.get(name).ok_or_else(|| {
            crate::Error::Spec(format!(
                "generate.profile: sampler profile `{name}` is not defined in generate.profiles"
            ))
        })?;
        if let Some(v) = prof.temperature {
            p.temperature = v;
        }
        if let Some(v) = prof.top_p {
            p.top_p = v;
        }
        if prof.top_k.is_some() {
            p.top_k = prof.top_k;
        }
        if prof.min_p.is_some() {
            p.min_p = prof.min_p;
        }
        if let Some(v) = prof.repetition_penalty {
            p.repetition_penalty = v;
        }
        if let Some(v) = prof.max_completion_length {
            p.max_completion_length = v;
        }
        Ok(p)
    }
}

// ---------------------------------------------------------------------------------------------
// rewards
// ---------------------------------------------------------------------------------------------

/// A reward function, chosen by `kind`; each kind accepts only its own options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reward {
    /// Parses a JSON object from the completion and scores parse success, required fields,
    /// allowed values and (optionally) agreement with the reference.
    Json(JsonReward),
    /// Checks the completion's shape against a regex (one-line schemas), with partial credit
    /// for a relaxed pattern.
    Format(FormatReward),
    /// Cosine similarity of sentence embeddings between the completion and a target text.
    Semantic(SemanticReward),
    /// Heuristic paragraph quality in [0, 1]: length window, instruction echo / meta leakage,
    /// degenerate output.
    Quality(QualityReward),
    /// Fraction of keyword groups the completion mentions (e.g. trade-thinking terms).
    Keywords(KeywordsReward),
    /// Exact (or tolerance) match of an extracted final answer with the reference.
    Answer(AnswerReward),
    /// Runs the completion's SQL against a SQLite database and compares the result with the
    /// reference query's.
    Sql(SqlReward),
    /// An LLM judge: ranks a group of completions (strict ranks 1..G mapped to [0, 1]) or
    /// scores each with a rubric.
    Judge(JudgeReward),
    /// A weighted sum of other named rewards, optionally gated by a validity reward and blended
    /// with an outcome reward.
    Composite(CompositeReward),
}

/// Writes one reward-kind struct with the options every kind shares (`weight`, `tasks`)
/// followed by the kind's own fields.
macro_rules! reward_kind {
    ($(#[$meta:meta])* $name:ident { $($(#[$fmeta:meta])* $field:ident : $ty:ty,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            /// Weight of this reward in the training reward (the weighted sum over all rewards,
            /// TRL `reward_weights`). Default 1.0; 0 = computed and logged, not trained on (e.g.
            /// a component of a composite, or a gate).
            #[serde(default = "default_one")]
            pub weight: f64,
            /// Tasks this reward applies to (names from `data.task`); other records score 0 on
            /// it and it is left out of their weighted sum. Empty (default) = all tasks.
            #[serde(default)]
            pub tasks: Vec<String>,
            /// Most unscorable results this reward may give in one scoring (one step's or one
            /// partition's completions), as a fraction in [0, 1]; above it the score stage
            /// fails with an error naming the reward (e.g. a judge server that stays down), and
            /// `--resume` scores again. `null` (default) = no limit: unscorable results are
            /// counted (`rewards/<name>/unscorable`), get advantage 0, and the run goes on.
            /// `0` = stop at the first.
            #[serde(default)]
            #[schemars(range(min = 0.0, max = 1.0))]
            pub max_unscorable: Option<f64>,
            $($(#[$fmeta])* pub $field: $ty,)*
        }
    };
}

reward_kind! {
    /// Options of a `json` reward.
    JsonReward {
        /// JSON parser: `strict` (`json.loads` after stripping code fences; V4) or `tolerant`
        /// (also accepts PT-BR decimal commas `4,5` outside strings and the first `{...}` block
        /// in surrounding text; V4.1). Default `strict`.
        #[serde(default)]
        parser: JsonParser,
        /// Fields the object must have; each present field earns an equal share of
        /// `1 − parse_score − reference_weight`.
        #[serde(default)]
        required_fields: Vec<String>,
        /// Allowed values per field (e.g. `sentiment: [positivo, neutro, negativo]`); a value
        /// outside the list earns no credit for that field.
        #[serde(default)]
        allowed_values: BTreeMap<String, Vec<String>>,
        /// Credit for a completion that parses to a JSON object at all, in [0, 1]. Default 0.2.
        #[serde(default = "default_parse_score")]
        #[schemars(range(min = 0.0, max = 1.0))]
        parse_score: f64,
        /// Fields compared with the same fields of the reference JSON (partial credit per
        /// matching field); empty = no reference comparison.
        #[serde(default)]
        reference_fields: Vec<String>,
        /// Share of the reward given to matching `reference_fields`, in [0, 1]. Default 0.
        #[serde(default)]
        #[schemars(range(min = 0.0, max = 1.0))]
        reference_weight: f64,
    }
}

/// How a `json` reward parses completions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum JsonParser {
    /// Standard JSON only (after stripping Markdown code fences).
    #[default]
    Strict,
    /// Also PT-BR decimal commas outside strings, and the first `{...}` block in the text.
    Tolerant,
}

reward_kind! {
    /// Options of a `format` reward.
    FormatReward {
        /// Regex searched in the trimmed completion (Rust `regex` syntax); a match scores 1.
        /// Anchor it (`^...$`) to require the whole completion to match.
        regex: String,
        /// A looser regex (searched the same way) whose match earns `relaxed_score`, to accept
        /// near-misses; `null` = none.
        #[serde(default)]
        relaxed_regex: Option<String>,
        /// Score of a completion matching only `relaxed_regex`, in [0, 1]. Default 0.5.
        #[serde(default = "default_half")]
        #[schemars(range(min = 0.0, max = 1.0))]
        relaxed_score: f64,
        /// Require a single line (after trimming). Default false.
        #[serde(default)]
        one_line: bool,
    }
}

reward_kind! {
    /// Options of a `semantic` reward.
    SemanticReward {
        /// Sentence embedder (a known id or local directory). Default `all-minilm-l6-v2`.
        #[serde(default = "default_embedder")]
        embedder: String,
        /// What the completion is compared with: the `prompt`, the `reference` field, or the
        /// partition's `outcome` record. Default `prompt`.
        #[serde(default)]
        against: SemanticTarget,
        /// Similarities at or below this floor score 0, rescaled linearly to 1 at similarity 1.
        /// Default 0.
        #[serde(default)]
        #[schemars(range(min = -1.0, max = 1.0))]
        floor: f64,
    }
}

/// Target text of a `semantic` reward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum SemanticTarget {
    /// The rendered prompt (topical relevance).
    #[default]
    Prompt,
    /// The record's reference field.
    Reference,
    /// The joined outcome record, as text.
    Outcome,
}

reward_kind! {
    /// Options of a `quality` reward.
    QualityReward {
        /// Fewest words for full credit. Default 40.
        #[serde(default = "default_min_words")]
        min_words: usize,
        /// Most words for full credit. Default 200.
        #[serde(default = "default_max_words")]
        max_words: usize,
        /// Completions shorter than this many characters score 0 (degenerate output). Default 10.
        #[serde(default = "default_min_chars")]
        min_chars: usize,
        /// Regexes of instruction echo / meta leakage (e.g. `(?i)keep it professional`); each
        /// matching line costs `leak_penalty`.
        #[serde(default)]
        leak_patterns: Vec<String>,
        /// Score subtracted per leaked line, in [0, 1]. Default 0.25.
        #[serde(default = "default_leak_penalty")]
        #[schemars(range(min = 0.0, max = 1.0))]
        leak_penalty: f64,
        /// Completions longer than this many characters score 0 (e.g. push notifications of at
        /// most 120); `null` = no limit.
        #[serde(default)]
        #[schemars(range(min = 1))]
        max_chars: Option<usize>,
    }
}

reward_kind! {
    /// Options of a `keywords` reward.
    KeywordsReward {
        /// Keyword groups: the score is the fraction of groups with at least one word present
        /// (case-insensitive, whole words), e.g. `[[entry, buy], [stop, stop-loss], [target]]`.
        #[serde(default)]
        groups: Vec<Vec<String>>,
        /// Record field holding per-record keywords (a list of strings, each its own group),
        /// added to `groups` (e.g. `key_numbers` of the insights task); `null` = none.
        #[serde(default)]
        groups_field: Option<String>,
        /// Groups needed for a score of 1; `null` = all groups.
        #[serde(default)]
        #[schemars(range(min = 1))]
        saturate_at: Option<usize>,
    }
}

reward_kind! {
    /// Options of an `answer` reward.
    AnswerReward {
        /// How the final answer is taken from the completion. Default `last_number`.
        #[serde(default)]
        extract: AnswerExtract,
        /// Regex with one capture group, for `extract: regex`: the group of its last match is the
        /// answer (e.g. `Answer:\s*(-?\d+)`); `null` otherwise.
        #[serde(default)]
        regex: Option<String>,
        /// Absolute tolerance for numeric answers. Default 0 (exact).
        #[serde(default)]
        #[schemars(range(min = 0.0))]
        tolerance: f64,
    }
}

/// How an `answer` reward extracts the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum AnswerExtract {
    /// The last number in the completion.
    #[default]
    LastNumber,
    /// The content of the last `\boxed{...}`.
    Boxed,
    /// The capture group of the last match of `regex`.
    Regex,
    /// The whole trimmed completion.
    Whole,
}

reward_kind! {
    /// Options of a `sql` reward.
    SqlReward {
        /// SQLite database file the queries run against (read-only), e.g.
        /// `experiments/data/commerce.db`.
        database: String,
        /// Score of a query that runs but returns a different result, in [0, 1]. Default 0.2.
        #[serde(default = "default_parse_score")]
        #[schemars(range(min = 0.0, max = 1.0))]
        runs_score: f64,
        /// Record field with the expected result rows (a list of rows); `null` = run the
        /// reference query (the `reference` field) and compare with its result.
        #[serde(default)]
        expected_rows_field: Option<String>,
        /// Longest a query may run, in milliseconds. Default 2000.
        #[serde(default = "default_sql_timeout")]
        #[schemars(range(min = 1))]
        timeout_ms: u64,
        /// Most result rows read from a query; a query returning more scores as failing (a
        /// runaway `SELECT *` cannot exhaust memory). Default 10000.
        #[serde(default = "default_sql_max_rows")]
        #[schemars(range(min = 1))]
        max_rows: usize,
    }
}

reward_kind! {
    /// Options of a `judge` reward.
    JudgeReward {
        /// Judge model; `null` = the base policy model (as in the seeds' self-evaluation).
        #[serde(default)]
        model: Option<String>,
        /// `rank`: the judge orders the whole group, rank 1..G maps linearly to 1.0..0.0.
        /// `score`: each completion gets a rubric score in [0, 1]. Default `rank`.
        #[serde(default)]
        mode: JudgeMode,
        /// The instructions the judge follows (minijinja; sees the prompt, completions and
        /// outcome).
        #[serde(default)]
        rubric: String,
        /// What the judge sees besides the completions: the partition's `outcomes`, the
        /// `reference`, or `none`. Default `none`.
        #[serde(default)]
        against: JudgeAgainst,
        /// Rank mode: reject duplicate and out-of-range ranks and stop at G (strict 1..G).
        /// Default true.
        #[serde(default = "default_true")]
        strict: bool,
        /// Rank mode: the rank given to completions the judge did not pick, clamped to 1..G;
        /// `null` = G − 1 (the seeds' "pad unpicked = 7" of 8).
        #[serde(default)]
        #[schemars(range(min = 1))]
        pad_unpicked: Option<usize>,
        /// Judge calls retried when its output cannot be parsed. Default 2.
        #[serde(default = "default_judge_retries")]
        retries: u32,
        /// Base URL of an OpenAI-compatible server (vLLM, llama.cpp server, Ollama), e.g.
        /// `http://127.0.0.1:8000/v1`; the judge posts to `{endpoint}/chat/completions`. `null` =
        /// the local engine runs the judge model.
        #[serde(default)]
        endpoint: Option<String>,
        /// Environment variable holding the endpoint's API key (sent as a bearer token); `null`
        /// = no key.
        #[serde(default)]
        api_key_env: Option<String>,
        /// Per-request timeout of the HTTP judge, in milliseconds. Default 60000.
        #[serde(default = "default_judge_timeout")]
        #[schemars(range(min = 1))]
        timeout_ms: u64,
        /// HTTP attempts after a failed one (connection error, timeout, 5xx, 429), with
        /// exponential backoff from `backoff_ms`. Default 3.
        #[serde(default = "default_judge_http_retries")]
        http_retries: u32,
        /// First backoff delay in milliseconds (doubled per retry). Default 500.
        #[serde(default = "default_judge_backoff")]
        backoff_ms: u64,
        /// Most tokens the judge may write. Default 64.
        #[serde(default = "default_judge_max_tokens")]
        #[schemars(range(min = 1))]
        max_tokens: usize,
    }
}

/// How a judge turns completions into rewards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum JudgeMode {
    /// Order the group; rank r of G maps to (G − r) / (G − 1).
    #[default]
    Rank,
    /// Score each completion in [0, 1].
    Score,
}

/// Extra evidence a judge sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum JudgeAgainst {
    /// Completions only.
    #[default]
    None,
    /// The record's reference field.
    Reference,
    /// The partition's realised outcomes (`data.outcomes`).
    Outcomes,
}

reward_kind! {
    /// Options of a `composite` reward.
    CompositeReward {
        /// Weighted sum of other rewards by name, e.g. `{rank: 0.8, trade_thinking: 0.2}`.
        components: BTreeMap<String, f64>,
        /// Zero the composite unless a validity reward passes; `null` = no gate.
        #[serde(default)]
        gate: Option<Gate>,
        /// Blend with an outcome reward: `(1 − alpha) × sum + alpha × outcome`; `null` = none.
        #[serde(default)]
        outcome: Option<OutcomeBlend>,
    }
}

/// A validity gate on a composite.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Gate {
    /// Name of the gating reward (usually a `format` reward).
    pub reward: String,
    /// The gate passes when the gating reward is at least this. Default 1.0.
    #[serde(default = "default_one")]
    pub min: f64,
    /// Composite value when the gate fails. Default 0.
    #[serde(default)]
    pub otherwise: f64,
    /// Added to the composite when the gate passes (a small validity bonus to bootstrap
    /// adherence). Default 0.
    #[serde(default)]
    pub bonus: f64,
}

/// An outcome blend of a composite.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OutcomeBlend {
    /// Name of the outcome reward (e.g. a `judge` against outcomes).
    pub reward: String,
    /// Blend factor in [0, 1] (the seeds' `outcome_alpha`).
    #[schemars(range(min = 0.0, max = 1.0))]
    pub alpha: f64,
}

impl Reward {
    /// The kind's name as written in specs (`json`, `format`, ...).
    pub fn kind_name(&self) -> &'static str {
        match self {
            Reward::Json(_) => "json",
            Reward::Format(_) => "format",
            Reward::Semantic(_) => "semantic",
            Reward::Quality(_) => "quality",
            Reward::Keywords(_) => "keywords",
            Reward::Answer(_) => "answer",
            Reward::Sql(_) => "sql",
            Reward::Judge(_) => "judge",
            Reward::Composite(_) => "composite",
        }
    }

    /// The weight of this reward in the training reward.
    pub fn weight(&self) -> f64 {
        self.common().0
    }

    /// The tasks this reward applies to (empty = all).
    pub fn tasks(&self) -> &[String] {
        self.common().1
    }

    fn common(&self) -> (f64, &[String], Option<f64>) {
        match self {
            Reward::Json(r) => (r.weight, &r.tasks, r.max_unscorable),
            Reward::Format(r) => (r.weight, &r.tasks, r.max_unscorable),
            Reward::Semantic(r) => (r.weight, &r.tasks, r.max_unscorable),
            Reward::Quality(r) => (r.weight, &r.tasks, r.max_unscorable),
            Reward::Keywords(r) => (r.weight, &r.tasks, r.max_unscorable),
            Reward::Answer(r) => (r.weight, &r.tasks, r.max_unscorable),
            Reward::Sql(r) => (r.weight, &r.tasks, r.max_unscorable),
            Reward::Judge(r) => (r.weight, &r.tasks, r.max_unscorable),
            Reward::Composite(r) => (r.weight, &r.tasks, r.max_unscorable),
        }
    }

    /// The reward's `max_unscorable`: the fraction of unscorable results one scoring may
    /// hold before the run stops (`None` = no limit).
    pub fn max_unscorable(&self) -> Option<f64> {
        self.common().2
    }

    /// Names of other rewards this one refers to (a composite's components, gate and outcome),
    /// with the field path (relative to the reward) that names each.
    pub fn references(&self) -> Vec<(String, &str)> {
        let Reward::Composite(c) = self else {
            return Vec::new();
        };
        let mut out: Vec<(String, &str)> = c
            .components
            .keys()
            .map(|k| (format!("components.{k}"), k.as_str()))
            .collect();
        if let Some(g) = &c.gate {
            out.push(("gate.reward".into(), g.reward.as_str()));
        }
        if let Some(o) = &c.outcome {
            out.push(("outcome.reward".into(), o.reward.as_str()));
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------
// rank
// ---------------------------------------------------------------------------------------------

/// Group advantages: rewards centred on their group's mean, optionally scaled.
///
/// Judge ranking (an LLM ordering each group, strict ranks 1..G) is a `judge` reward with
/// `mode: rank`; its ranks reach the advantages through the rewards like any other reward.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Rank {
    /// Advantage scaling (TRL `scale_rewards`): `group` divides by the group's reward std
    /// (GRPO), `batch` by the batch std, `none` only centres (Dr. GRPO). Default `group`.
    pub scale_rewards: ScaleRewards,
    /// Drop groups whose rewards are all equal (zero std: no learning signal) from the loss;
    /// they are still logged as `frac_reward_zero_std`. Default false.
    pub filter_zero_std: bool,
}

impl Default for Rank {
    fn default() -> Self {
        Rank {
            scale_rewards: ScaleRewards::Group,
            filter_zero_std: false,
        }
    }
}

/// TRL `scale_rewards`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ScaleRewards {
    /// Divide by the group's std.
    Group,
    /// Divide by the whole batch's std.
    Batch,
    /// No scaling (TRL `scale_rewards=False`).
    None,
}

// ---------------------------------------------------------------------------------------------
// train
// ---------------------------------------------------------------------------------------------

/// The optimisation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Train {
    /// Loss aggregation (TRL `loss_type`): `grpo` (per-sequence mean), `bnpo` (per-batch token
    /// mean), `dr_grpo` (constant normaliser, no length bias), `dapo` (token mean over the
    /// global batch; TRL's default).
    pub loss_type: LossType,
    /// Importance ratio level (TRL `importance_sampling_level`): `token` (GRPO) or `sequence`
    /// (GSPO: one length-normalised ratio per completion). Default `token`.
    pub importance_sampling_level: ImportanceSamplingLevel,
    /// Lower clipping range of the importance ratio (TRL `epsilon`, default 0.2).
    #[schemars(range(min = 0.0))]
    pub epsilon: f64,
    /// Upper clipping range (TRL `epsilon_high`, DAPO clip-higher); `null` = `epsilon`.
    #[schemars(range(min = 0.0))]
    pub epsilon_high: Option<f64>,
    /// KL coefficient against the reference model (TRL `beta`, default 0.0: no reference model
    /// is kept and the logged KL is meaningless).
    #[schemars(range(min = 0.0))]
    pub beta: f64,
    /// Optimisation passes over each generated batch (TRL `num_iterations`, μ; default 1). With
    /// 1 the importance ratio is identically 1.
    #[schemars(range(min = 1))]
    pub num_iterations: usize,
    /// Leave truncated completions (hit `max_completion_length`) out of the loss (TRL
    /// `mask_truncated_completions`). Default false.
    pub mask_truncated_completions: bool,
    /// Optimizer (HF `optim`): `adamw` (default) or `sgd`.
    pub optim: Optimizer,
    /// Peak learning rate (TRL `learning_rate`; GRPOConfig default 1e-6).
    #[schemars(range(min = 0.0))]
    pub learning_rate: f64,
    /// AdamW decoupled weight decay (HF `weight_decay`, default 0).
    #[schemars(range(min = 0.0))]
    pub weight_decay: f64,
    /// AdamW β1 (HF `adam_beta1`, default 0.9).
    #[schemars(range(min = 0.0, max = 1.0))]
    pub adam_beta1: f64,
    /// AdamW β2 (HF `adam_beta2`, default 0.999).
    #[schemars(range(min = 0.0, max = 1.0))]
    pub adam_beta2: f64,
    /// AdamW ε (HF `adam_epsilon`, default 1e-8).
    #[schemars(range(min = 0.0))]
    pub adam_epsilon: f64,
    /// LR schedule (HF `lr_scheduler_type`). Default `linear` as in HF.
    pub lr_scheduler_type: LrSchedulerType,
    /// Warm-up as a fraction of the total steps, `ceil(total × ratio)` steps (HF
    /// `warmup_ratio`); ignored when `warmup_steps` is set. `null` = no warm-up.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub warmup_ratio: Option<f64>,
    /// Warm-up steps (HF `warmup_steps`); takes precedence over `warmup_ratio`.
    pub warmup_steps: Option<usize>,
    /// LR floor as a fraction of the peak for `cosine_with_min_lr` and `warmup_stable_decay`
    /// (HF `lr_scheduler_kwargs.min_lr_rate`). Default 0.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub min_lr_rate: f64,
    /// Fraction of the steps spent decaying in `warmup_stable_decay`. Default 0.1.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub decay_ratio: f64,
    /// Optimizer steps to run (HF `max_steps`); overrides `num_train_epochs`. `null` = run
    /// `num_train_epochs` (per partition in the daily loop).
    #[schemars(range(min = 1))]
    pub max_steps: Option<usize>,
    /// Passes over the training prompts when `max_steps` is null (HF `num_train_epochs`,
    /// default 1).
    #[schemars(range(min = 0.0))]
    pub num_train_epochs: f64,
    /// Prompts per optimizer micro-step; each yields `generate.num_generations` completions.
    /// (TRL's `per_device_train_batch_size` counts completions instead.) Default 1.
    #[schemars(range(min = 1))]
    pub batch_size: usize,
    /// Completions per forward/backward pass (memory bound); must divide `batch_size ×
    /// num_generations`. `null` = all at once.
    #[schemars(range(min = 1))]
    pub micro_batch_size: Option<usize>,
    /// Micro-steps accumulated per optimizer step (HF `gradient_accumulation_steps`, default 1).
    #[schemars(range(min = 1))]
    pub gradient_accumulation_steps: usize,
    /// Global gradient-norm clip (HF `max_grad_norm`, default 1.0); `null` = no clipping.
    #[schemars(range(min = 0.0))]
    pub max_grad_norm: Option<f64>,
    /// Extra objective terms beside the policy-gradient loss.
    pub objective: Objective,
    /// Every this many optimizer steps, measure each objective term's gradient norm (the
    /// policy term with the quality part of the advantage, the diversity part, β·KL) on the
    /// step's first micro-batch and log `grad_norm/<term>` and `grad_share/<term>` (one extra
    /// backward per term; the update is unchanged). Default 10; 0 = off.
    pub grad_share_every: usize,
    /// When checkpoints are written and how many are kept.
    pub checkpoint: Checkpoint,
    /// An optional supervised warm-up before RL (e.g. V4.2 scenario B); `null` = none.
    pub sft: Option<SftStage>,
}

impl Default for Train {
    fn default() -> Self {
        Train {
            loss_type: LossType::Dapo,
            importance_sampling_level: ImportanceSamplingLevel::Token,
            epsilon: 0.2,
            epsilon_high: None,
            beta: 0.0,
            num_iterations: 1,
            mask_truncated_completions: false,
            optim: Optimizer::Adamw,
            learning_rate: 1e-6,
            weight_decay: 0.0,
            adam_beta1: 0.9,
            adam_beta2: 0.999,
            adam_epsilon: 1e-8,
            lr_scheduler_type: LrSchedulerType::Linear,
            warmup_ratio: None,
            warmup_steps: None,
            min_lr_rate: 0.0,
            decay_ratio: 0.1,
            max_steps: None,
            num_train_epochs: 1.0,
            batch_size: 1,
            micro_batch_size: None,
            gradient_accumulation_steps: 1,
            max_grad_norm: Some(1.0),
            objective: Objective::default(),
            grad_share_every: 10,
            checkpoint: Checkpoint::default(),
            sft: None,
        }
    }
}

/// TRL `loss_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LossType {
    /// Mean over each sequence's tokens, then over sequences (original GRPO; length-biased).
    Grpo,
    /// Token mean over the local batch.
    Bnpo,
    /// Sum over tokens divided by a constant (`max_completion_length`), no length bias.
    DrGrpo,
    /// Token mean over the global (accumulated) batch.
    Dapo,
}

/// TRL `importance_sampling_level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ImportanceSamplingLevel {
    /// One ratio per token (GRPO).
    Token,
    /// One length-normalised ratio per sequence (GSPO).
    Sequence,
}

/// Optimizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Optimizer {
    /// AdamW with decoupled weight decay.
    Adamw,
    /// Plain SGD.
    Sgd,
}

/// Extra objective terms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Objective {
    /// A diversity term over a prompt's completions; `null` = none.
    pub diversity: Option<Diversity>,
}

/// A diversity term.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Diversity {
    /// `set_polychromic`: set-level RL objective rewarding sets of completions that are both
    /// good and diverse. `diversity_bonus`: λ × the completion's diversity added to its reward.
    /// `text_penalty`: the seeds' `quality_loss − λ·diversity_score`, where the diversity score
    /// is computed from sampled text and carries no gradient (kept so validation can flag it).
    pub kind: DiversityKind,
    /// λ, the weight of the diversity term (0 = the baseline). Default 0.
    #[serde(default)]
    #[schemars(range(min = 0.0))]
    pub lambda: f64,
    /// Completions sampled per prompt to measure diversity. Default 4.
    #[serde(default = "default_n_generations")]
    #[schemars(range(min = 2))]
    pub n_generations: usize,
    /// Prompts per step used to measure diversity. Default 4.
    #[serde(default = "default_n_generations")]
    #[schemars(range(min = 1))]
    pub max_examples_for_diversity: usize,
    /// Measure diversity every this many steps. Default 1.
    #[serde(default = "default_one_usize")]
    #[schemars(range(min = 1))]
    pub compute_every_n_steps: usize,
    /// Diversity measure: `embedding` (mean pairwise cosine distance, MiniLM), `distinct_2`
    /// (distinct bigram ratio) or `self_bleu` (1 − self-BLEU). Default `embedding`.
    #[serde(default)]
    pub metric: DiversityMetric,
}

/// Kinds of diversity term.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DiversityKind {
    /// Set-level polychromic objective (has a gradient through the set's rewards).
    SetPolychromic,
    /// Per-completion diversity bonus added to the reward.
    DiversityBonus,
    /// `loss − λ·diversity` with a text-derived score: no gradient flows from it.
    TextPenalty,
}

/// Diversity measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum DiversityMetric {
    /// Mean pairwise cosine distance of sentence embeddings.
    #[default]
    Embedding,
    /// Distinct bigrams / all bigrams.
    Distinct2,
    /// 1 − mean self-BLEU.
    SelfBleu,
}

/// Checkpoint policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Checkpoint {
    /// Save every this many optimizer steps (HF `save_steps`); `null` = only at the end (and at
    /// the end of each partition: dated snapshots in the daily loop).
    #[schemars(range(min = 1))]
    pub every: Option<usize>,
    /// Keep only the newest this many step checkpoints (HF `save_total_limit`); `null` = all.
    /// The final and best checkpoints are always kept.
    #[schemars(range(min = 1))]
    pub keep_last: Option<usize>,
}

impl Default for Checkpoint {
    fn default() -> Self {
        Checkpoint {
            every: None,
            keep_last: Some(3),
        }
    }
}

/// A supervised fine-tuning warm-up run before the RL stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SftStage {
    /// Passes over the SFT data. Default 1.
    #[serde(default = "default_one")]
    #[schemars(range(min = 0.0))]
    pub epochs: f64,
    /// Peak learning rate of the warm-up (constant with 3 % warm-up). Default 2e-5.
    #[serde(default = "default_sft_lr")]
    #[schemars(range(min = 0.0))]
    pub learning_rate: f64,
    /// Prompts per step. Default 8.
    #[serde(default = "default_sft_batch")]
    #[schemars(range(min = 1))]
    pub batch_size: usize,
    /// Tasks to keep from the SFT data (empty = all), e.g. `[extraction]`.
    #[serde(default)]
    pub tasks: Vec<String>,
}

// ---------------------------------------------------------------------------------------------
// eval
// ---------------------------------------------------------------------------------------------

/// Periodic evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Eval {
    /// Evaluate every this many optimizer steps (HF `eval_steps`); `null` = at the end (and after
    /// every partition in the daily loop).
    #[schemars(range(min = 1))]
    pub every: Option<usize>,
    /// Data sets to evaluate: `eval`, `train`, or names under `data.extra`. Default `[eval]`.
    pub sets: Vec<String>,
    /// Metrics to compute, e.g. `mean_reward`, `reward/<name>`, `validity`, `leak_rate`,
    /// `completion_length`, `distinct_2`, `self_bleu`, `pass@k`.
    pub metrics: Vec<String>,
    /// Also log every metric per task (`eval/<metric>/<task>`). Default false.
    pub by_task: bool,
    /// Keep the checkpoint that is best on a metric (HF `metric_for_best_model`); `null` = keep
    /// the last.
    pub keep_best: Option<KeepBest>,
    /// Completions per eval prompt (k of pass@k). Default 1.
    #[schemars(range(min = 1))]
    pub num_generations: usize,
    /// Evaluate at most this many prompts per set; `null` = all.
    #[schemars(range(min = 1))]
    pub max_examples: Option<usize>,
    /// Sampler profile for eval generations; `null` = the training sampler.
    pub profile: Option<String>,
}

impl Default for Eval {
    fn default() -> Self {
        Eval {
            every: None,
            sets: vec!["eval".into()],
            metrics: vec!["mean_reward".into()],
            by_task: false,
            keep_best: None,
            num_generations: 1,
            max_examples: None,
            profile: None,
        }
    }
}

/// Which checkpoint to keep as best.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KeepBest {
    /// Metric compared, e.g. `eval/mean_reward`.
    pub metric: String,
    /// `max` (default) keeps the highest value, `min` the lowest (HF `greater_is_better`).
    #[serde(default)]
    pub mode: BestMode,
}

/// Direction of "best".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum BestMode {
    /// Higher is better.
    #[default]
    Max,
    /// Lower is better.
    Min,
}

// ---------------------------------------------------------------------------------------------
// monitors
// ---------------------------------------------------------------------------------------------

/// A watch on a logged metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Monitor {
    /// Metric name as logged, e.g. `train/grad_norm`, `eval/extraction`.
    pub metric: String,
    /// Comparison that triggers the monitor: `gt`, `ge`, `lt`, `le`.
    pub op: CompareOp,
    /// Threshold.
    pub value: f64,
    /// Consecutive logged values that must trigger before acting. Default 1.
    #[serde(default = "default_one_usize")]
    #[schemars(range(min = 1))]
    pub patience: usize,
    /// Only check from this optimizer step on (e.g. "still below 0.20 after step 100"); `null` =
    /// from the start.
    #[serde(default)]
    pub after_step: Option<usize>,
    /// `warn` (default): log and continue; `stop`: end the run after saving a checkpoint.
    #[serde(default)]
    pub action: MonitorAction,
}

/// What a triggered monitor does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum MonitorAction {
    /// Log a warning event and continue.
    #[default]
    Warn,
    /// Save and stop the run.
    Stop,
}

// ---------------------------------------------------------------------------------------------
// schedule
// ---------------------------------------------------------------------------------------------

/// The outer loop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Schedule {
    /// `steps` (default): one training run of `train.max_steps`. `partitions`: one round of
    /// generate → score → rank → train per date partition.
    pub mode: ScheduleMode,
    /// The date partitions, for `mode: partitions`.
    pub partitions: Option<Partitions>,
    /// Suffix naming this run's storage namespace and checkpoints (the seeds' `--run_suffix`,
    /// e.g. `NEWRUN`), so runs of one experiment never share state; `null` = none.
    pub run_suffix: Option<String>,
    /// Daily loop: the predictions of date D are scored with the outcome file of D + this many
    /// days, in the round of D + 1 (the day after they were made) or later. `null` (default) =
    /// 1: the file of the next day (an outcome file holds what happened on its date). 0: the
    /// file of D itself, for data whose file of D holds the move from D's close to the next
    /// close (StockNet's `close` → `next_close`).
    #[schemars(range(max = 30))]
    pub outcome_lag_days: Option<u32>,
}

/// Outer-loop kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleMode {
    /// A single training run measured in optimizer steps.
    #[default]
    Steps,
    /// One round per date partition.
    Partitions,
}

/// Daily partitions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Partitions {
    /// Partition period; only `daily`.
    #[serde(default)]
    pub every: PartitionPeriod,
    /// First date, YYYYMMDD, inclusive.
    #[schemars(pattern(r"^[0-9]{8}$"))]
    pub from: String,
    /// Last date, YYYYMMDD, inclusive.
    #[schemars(pattern(r"^[0-9]{8}$"))]
    pub to: String,
    /// Process every date in the range in order, recomputing what exists (the seeds'
    /// `--force_evaluations --force_training`); false = only dates not yet completed.
    #[serde(default)]
    pub backfill: bool,
    /// Start each partition from the previous partition's final model (`--resume_from_last_model`).
    /// Default true.
    #[serde(default = "default_true")]
    pub resume_from_last_model: bool,
    /// Skip dates whose input files are missing (weekends, holidays) instead of failing.
    /// Default true.
    #[serde(default = "default_true")]
    pub skip_missing: bool,
    /// Score the predictions of one date with another date's outcomes (backfill/recovery).
    #[serde(default)]
    pub overrides: Vec<PartitionOverride>,
}

/// Partition periods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum PartitionPeriod {
    /// One partition per calendar day.
    #[default]
    Daily,
}

/// One override of which outcomes score which predictions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PartitionOverride {
    /// Date (YYYYMMDD) whose predictions are scored.
    #[schemars(pattern(r"^[0-9]{8}$"))]
    pub predictions_from: String,
    /// Date (YYYYMMDD) whose outcomes (and headlines) score them.
    #[schemars(pattern(r"^[0-9]{8}$"))]
    pub outcomes_from: String,
}

// ---------------------------------------------------------------------------------------------
// sweep
// ---------------------------------------------------------------------------------------------

/// Expansion into several runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Sweep {
    /// Cartesian product: field path → values, e.g. `train.objective.diversity.lambda:
    /// [0.0, 0.3, 1.0, 2.0]`.
    pub grid: BTreeMap<String, Vec<serde_json::Value>>,
    /// Zipped lists: field path → values, all lists the same length; the i-th values go
    /// together (then crossed with the grid).
    pub zip: BTreeMap<String, Vec<serde_json::Value>>,
    /// Seeds: every point runs once per seed (sets `seed`); empty = the spec's seed only.
    pub seeds: Vec<u64>,
    /// Partial points to leave out: each entry maps paths to values; a point matching all of
    /// an entry's values is excluded.
    pub exclude: Vec<BTreeMap<String, serde_json::Value>>,
    /// Field paths whose values must sum to 1 at every point (e.g. reward weights); points
    /// that do not are excluded.
    pub sum_to_one: Vec<String>,
    /// Short labels for paths in point names (path → label); default = the last path segment.
    pub labels: BTreeMap<String, String>,
}

impl Sweep {
    /// Whether the sweep expands to more than the spec itself.
    pub fn is_empty(&self) -> bool {
        self.grid.is_empty() && self.zip.is_empty() && self.seeds.is_empty()
    }
}

// ---------------------------------------------------------------------------------------------
// resources
// ---------------------------------------------------------------------------------------------

/// Scheduler resources of one run (each sweep point's Slurm array task gets these).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Resources {
    /// GPUs per run (`#SBATCH --gres=gpu:N`); `null` = none requested.
    #[schemars(range(min = 1))]
    pub gpus: Option<u32>,
    /// CPU cores per run (`#SBATCH --cpus-per-task`); also the run's `model.threads` when that
    /// is not set. `null` = the scheduler's default.
    #[schemars(range(min = 1))]
    pub cpus: Option<u32>,
    /// Memory per run (`#SBATCH --mem`), a number with an optional unit `K`, `M`, `G` or `T`
    /// (`16G`); `null` = the scheduler's default.
    #[schemars(pattern(r"^[0-9]+[KMGT]?$"))]
    pub memory: Option<String>,
    /// Wall-clock limit per run (`#SBATCH --time`) in a Slurm time format: `minutes`,
    /// `HH:MM:SS`, `D-HH:MM:SS` (`02:00:00`); `null` = the partition's limit.
    #[schemars(pattern(r"^([0-9]+-)?[0-9]+(:[0-9]{2}){0,2}$"))]
    pub time: Option<String>,
    /// Slurm partition (`#SBATCH --partition`); `null` = the cluster's default.
    #[schemars(pattern(r"^[A-Za-z0-9_.,-]+$"))]
    pub partition: Option<String>,
    /// Slurm account to charge (`#SBATCH --account`); `null` = the user's default.
    #[schemars(pattern(r"^[A-Za-z0-9_.-]+$"))]
    pub account: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Derived values
// ---------------------------------------------------------------------------------------------

impl Experiment {
    /// Total optimizer steps when the spec alone determines it (`train.max_steps`); `None`
    /// when it depends on the data size (then use [`Experiment::total_train_steps_for`]).
    pub fn total_train_steps(&self) -> Option<usize> {
        self.train.max_steps
    }

    /// Total optimizer steps for a training set of `train_rows` prompts: `max_steps`, else
    /// `ceil(epochs × ceil(rows / (batch_size × grad_accum)))` (HF's epoch arithmetic).
    pub fn total_train_steps_for(&self, train_rows: usize) -> usize {
        if let Some(s) = self.train.max_steps {
            return s;
        }
        let per_step = (self.train.batch_size * self.train.gradient_accumulation_steps).max(1);
        let steps_per_epoch = train_rows.div_ceil(per_step);
        (self.train.num_train_epochs * steps_per_epoch as f64).ceil() as usize
    }

    /// Warm-up steps for a run of `total` steps: `warmup_steps`, else `ceil(total × ratio)`.
    pub fn warmup_steps_for(&self, total: usize) -> usize {
        match (self.train.warmup_steps, self.train.warmup_ratio) {
            (Some(s), _) => s,
            (None, Some(r)) => warmup_steps_from_ratio(r, total),
            (None, None) => 0,
        }
    }

    /// The LR schedule over [`Experiment::total_train_steps`]; `None` when the step count needs
    /// the data size (use [`Experiment::lr_schedule_for`]).
    pub fn lr_schedule(&self) -> Option<LrSchedule> {
        self.total_train_steps().map(|t| self.lr_schedule_for(t))
    }

    /// The `eval.sets` that name a defined data source: `train` / `eval` without their data
    /// section are dropped (validation warns that they are not evaluated); unknown names stay
    /// (validation rejects them).
    pub fn eval_sets(&self) -> Vec<&str> {
        self.eval
            .sets
            .iter()
            .map(String::as_str)
            .filter(|s| match *s {
                "train" => self.data.train.is_some(),
                "eval" => self.data.eval.is_some(),
                _ => true,
            })
            .collect()
    }

    /// The LR schedule over `total_steps` steps.
    pub fn lr_schedule_for(&self, total_steps: usize) -> LrSchedule {
        LrSchedule {
            kind: self.train.lr_scheduler_type,
            peak_lr: self.train.learning_rate,
            total_steps,
            warmup_steps: self.warmup_steps_for(total_steps),
            min_lr_rate: self.train.min_lr_rate,
            decay_ratio: self.train.decay_ratio,
        }
    }

    /// Completions generated per optimizer step: prompts × group size × accumulation.
    pub fn completions_per_step(&self) -> usize {
        self.train.batch_size
            * self.generate.num_generations
            * self.train.gradient_accumulation_steps
    }

    /// The upper clipping range in effect (`epsilon_high`, else `epsilon`).
    pub fn epsilon_high(&self) -> f64 {
        self.train.epsilon_high.unwrap_or(self.train.epsilon)
    }
}

// ---------------------------------------------------------------------------------------------
// serde default helpers
// ---------------------------------------------------------------------------------------------

fn default_true() -> bool {
    true
}
fn default_one() -> f64 {
    1.0
}
fn default_one_usize() -> usize {
    1
}
fn default_half() -> f64 {
    0.5
}
fn default_parse_score() -> f64 {
    0.2
}
fn default_embedder() -> String {
    "all-minilm-l6-v2".into()
}
fn default_min_words() -> usize {
    40
}
fn default_max_words() -> usize {
    200
}
fn default_min_chars() -> usize {
    10
}
fn default_leak_penalty() -> f64 {
    0.25
}
fn default_sql_timeout() -> u64 {
    2000
}
fn default_sql_max_rows() -> usize {
    10_000
}
fn default_judge_timeout() -> u64 {
    60_000
}
fn default_judge_http_retries() -> u32 {
    3
}
fn default_judge_backoff() -> u64 {
    500
}
fn default_judge_max_tokens() -> usize {
    64
}
fn default_judge_retries() -> u32 {
    2
}
fn default_n_generations() -> usize {
    4
}
fn default_sft_lr() -> f64 {
    2e-5
}
fn default_sft_batch() -> usize {
    8
}

// ---------------------------------------------------------------------------------------------
// JSON Schema
// ---------------------------------------------------------------------------------------------

/// Where `runner schema` writes the experiment schema, relative to the project root.
pub const EXPERIMENT_SCHEMA_PATH: &str = "schemas/experiment.schema.json";

/// The JSON Schema (draft-07, which every editor's YAML plugin understands) of [`Experiment`].
pub fn experiment_schema() -> serde_json::Value {
    let generator = schemars::generate::SchemaSettings::draft07().into_generator();
    let schema = generator.into_root_schema_for::<Experiment>();
    let mut value = schema.to_value();
    simplify_schema(&mut value);
    value
}

/// Rewrites schemars' `oneOf` encodings into forms whose validation errors point at the
/// problem: a `oneOf` of string constants becomes an `enum` (so a typo reads "not one of [...]"
/// rather than "not valid under any of oneOf"), and a `oneOf` of objects tagged by `kind` (the
/// rewards) becomes `kind: enum` plus one `if kind = X then <variant>` per variant, so an
/// unknown option is reported against its own variant.
fn simplify_schema(node: &mut serde_json::Value) {
    use serde_json::{json, Value};
    match node {
        Value::Object(map) => {
            for v in map.values_mut() {
                simplify_schema(v);
            }
            let Some(Value::Array(alts)) = map.get("oneOf") else {
                return;
            };
            let consts: Option<Vec<(String, Option<String>)>> = alts
                .iter()
                .map(|a| {
                    let c = a.get("const")?.as_str()?.to_string();
                    let d = a
                        .get("description")
                        .and_then(Value::as_str)
                        .map(str::to_string);
                    Some((c, d))
                })
                .collect();
            let tags: Option<Vec<String>> = alts
                .iter()
                .map(|a| {
                    a.pointer("/properties/kind/const")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                })
                .collect();
            if let Some(consts) = consts {
                map.remove("oneOf");
                let mut desc = map
                    .get("description")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                for (c, d) in &consts {
                    if let Some(d) = d {
                        desc.push_str(&format!("\n- `{c}`: {d}"));
                    }
                }
                map.insert("type".into(), json!("string"));
                map.insert(
                    "enum".into(),
                    Value::Array(consts.iter().map(|(c, _)| json!(c)).collect()),
                );
                map.insert(
                    "enumDescriptions".into(),
                    Value::Array(
                        consts
                            .iter()
                            .map(|(_, d)| json!(d.clone().unwrap_or_default()))
                            .collect(),
                    ),
                );
                map.insert("description".into(), json!(desc.trim_start()));
            } else if let Some(tags) = tags {
                let Some(Value::Array(alts)) = map.remove("oneOf") else {
                    return;
                };
                let branches: Vec<Value> = tags
                    .iter()
                    .zip(alts)
                    .map(|(tag, alt)| {
                        json!({
                            "if": { "properties": { "kind": { "const": tag } }, "required": ["kind"] },
                            "then": alt,
                        })
                    })
                    .collect();
                map.insert("type".into(), json!("object"));
                map.insert("required".into(), json!(["kind"]));
                map.insert(
                    "properties".into(),
                    json!({ "kind": { "type": "string", "enum": tags, "description": "Which reward function; decides the options allowed beside it." } }),
                );
                map.insert("allOf".into(), Value::Array(branches));
            }
        }
        Value::Array(items) => items.iter_mut().for_each(simplify_schema),
        _ => {}
    }
}

/// [`experiment_schema`] as the checked-in file's text: pretty JSON with a trailing newline.
pub fn experiment_schema_string() -> String {
    let value = experiment_schema();
    let mut text = serde_json::to_string_pretty(&value).unwrap_or_else(|_| value.to_string());
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smallest valid options of every kind.
    const MINIMAL: [&str; 9] = [
        "kind: json",
        "kind: format\nregex: x",
        "kind: semantic",
        "kind: quality",
        "kind: keywords",
        "kind: answer",
        "kind: sql\ndatabase: x.db",
        "kind: judge",
        "kind: composite\ncomponents: {a: 1.0}",
    ];

    #[test]
    fn every_reward_kind_rejects_unknown_options() {
        for yaml in MINIMAL {
            let ok: Reward = serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"));
            assert_eq!(ok.weight(), 1.0);
            let kind = ok.kind_name();
            assert!(yaml.starts_with(&format!("kind: {kind}")));
            let bad = format!("{yaml}\nbogus_option: 1");
            let err = serde_yaml::from_str::<Reward>(&bad)
                .expect_err(&bad)
                .to_string();
            assert!(
                err.contains("unknown field `bogus_option`"),
                "{kind}: {err}"
            );
        }
        // An option of another kind is unknown too.
        let err = serde_yaml::from_str::<Reward>("kind: format\nregex: x\nparser: tolerant")
            .expect_err("parser belongs to json");
        assert!(err.to_string().contains("unknown field `parser`"));
        assert!(serde_yaml::from_str::<Reward>("kind: jsno").is_err());
        assert!(serde_yaml::from_str::<Reward>("weight: 1").is_err());
    }

    #[test]
    fn composite_references() {
        let r: Reward = serde_yaml::from_str(
            "kind: composite\ncomponents: {rank: 0.8, tt: 0.2}\ngate: {reward: validity}\n\
             outcome: {reward: judge, alpha: 0.1}",
        )
        .unwrap();
        let refs: Vec<&str> = r.references().into_iter().map(|(_, n)| n).collect();
        assert_eq!(refs, vec!["rank", "tt", "validity", "judge"]);
        let Reward::Composite(c) = r else { panic!() };
        let gate = c.gate.unwrap();
        assert_eq!((gate.min, gate.otherwise, gate.bonus), (1.0, 0.0, 0.0));
    }

    #[test]
    fn sampler_profiles_override_only_what_they_set() {
        let g: Generate = serde_yaml::from_str(
            "temperature: 0.8\ntop_p: 0.95\ntop_k: 50\n\
             profiles: {tight: {temperature: 0.5, max_completion_length: 64}, default: {}}\n\
             profile: tight",
        )
        .unwrap();
        let t = g.sampler(None).unwrap();
        assert_eq!((t.temperature, t.top_p, t.top_k), (0.5, 0.95, Some(50)));
        assert_eq!(t.max_completion_length, 64);
        let d = g.sampler(Some("default")).unwrap();
        assert_eq!((d.temperature, d.max_completion_length), (0.8, 256));
        assert!(g.sampler(Some("loose")).is_err());
    }

    #[test]
    fn step_and_schedule_arithmetic() {
        let mut e = Experiment::default();
        assert_eq!(e.total_train_steps(), None);
        assert!(e.lr_schedule().is_none());
        // 1 epoch over 1480 prompts at 2 prompts × 1 accumulation = 740 steps; 1.5 epochs
        // over 101 prompts at 2 × 2 = ceil(1.5 × 26) = 39.
        e.train.batch_size = 2;
        assert_eq!(e.total_train_steps_for(1480), 740);
        e.train.gradient_accumulation_steps = 2;
        e.train.num_train_epochs = 1.5;
        assert_eq!(e.total_train_steps_for(101), 39);
        e.train.max_steps = Some(600);
        e.train.warmup_ratio = Some(0.05);
        e.train.learning_rate = 5e-6;
        e.train.lr_scheduler_type = LrSchedulerType::ConstantWithWarmup;
        let s = e.lr_schedule().unwrap();
        assert_eq!((s.total_steps, s.warmup_steps, s.peak_lr), (600, 30, 5e-6));
        e.train.warmup_steps = Some(7);
        assert_eq!(
            e.warmup_steps_for(600),
            7,
            "warmup_steps wins over the ratio"
        );
        e.generate.num_generations = 16;
        assert_eq!(e.completions_per_step(), 2 * 16 * 2);
        assert_eq!(e.epsilon_high(), 0.2);
    }

    #[test]
    fn compare_ops() {
        assert!(CompareOp::Ge.holds(0.1, 0.1) && !CompareOp::Gt.holds(0.1, 0.1));
        assert!(CompareOp::Le.holds(0.1, 0.1) && !CompareOp::Lt.holds(0.1, 0.1));
        assert!(!CompareOp::Lt.holds(f64::NAN, 1.0));
    }
}
