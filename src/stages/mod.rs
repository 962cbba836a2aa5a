//! Stages: the units of work a plan runs (sft → generate → score → rank → train → eval), one
//! trait every stage implements, and the registry of stage kinds this build implements.
//!
//! None is implemented yet (later issues add the computations), so `runner apply` stops before
//! starting anything and names the missing kinds. A later issue makes a kind real by adding an
//! implementation of [`Stage`] and one line in [`Registry::builtin`]; tests register fakes with
//! [`Registry::register`].

pub mod artifacts;
pub mod eval;
pub mod generate;
pub mod policy;
pub mod rank;
pub mod score;
pub mod sft;
pub mod train;

use crate::plan::{Plan, StageInstance};
use crate::run::{EventLog, RunDir, RunState};
use crate::spec::Experiment;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::any::Any;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The kinds of stage, in plan order.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum StageKind {
    /// Supervised warm-up on reference completions (`train.sft`), before RL.
    Sft,
    /// Sample `num_generations` rollouts per prompt.
    Generate,
    /// Compute every reward of every rollout.
    Score,
    /// Turn a group's rewards into advantages (`rank.scale_rewards`).
    Rank,
    /// Policy update (GRPO family loss).
    Train,
    /// Evaluate on the eval sets.
    Eval,
}

impl StageKind {
    /// Every kind, in plan order.
    pub const ALL: [StageKind; 6] = [
        StageKind::Sft,
        StageKind::Generate,
        StageKind::Score,
        StageKind::Rank,
        StageKind::Train,
        StageKind::Eval,
    ];

    /// The kind's name as in specs, plans and state files.
    pub fn name(self) -> &'static str {
        match self {
            StageKind::Sft => "sft",
            StageKind::Generate => "generate",
            StageKind::Score => "score",
            StageKind::Rank => "rank",
            StageKind::Train => "train",
            StageKind::Eval => "eval",
        }
    }

    /// Parse a kind name.
    pub fn parse(name: &str) -> Option<StageKind> {
        StageKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

impl std::fmt::Display for StageKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What a completed stage instance reports; stored in `state.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StageOutput {
    /// Artifacts (paths relative to the run directory) and metrics, as the stage chooses.
    pub outputs: serde_json::Value,
}

/// In-memory objects shared by the stage instances of one `apply` process (the loaded policy,
/// the optimizer, a reward model), keyed by name. Not persisted: a resumed run rebuilds them
/// from the artifacts earlier instances recorded.
#[derive(Default)]
pub struct Resources {
    slots: BTreeMap<String, Box<dyn Any + Send>>,
}

impl Resources {
    /// The object under `key`, if it is there and of type `T`.
    pub fn get_mut<T: Any + Send>(&mut self, key: &str) -> Option<&mut T> {
        self.slots.get_mut(key).and_then(|b| b.downcast_mut())
    }
    /// Put `value` under `key`, replacing what was there.
    pub fn insert<T: Any + Send>(&mut self, key: &str, value: T) {
        self.slots.insert(key.to_string(), Box::new(value));
    }
    /// Take the object under `key` out.
    pub fn remove(&mut self, key: &str) -> Option<Box<dyn Any + Send>> {
        self.slots.remove(key)
    }
}

/// Everything a stage instance may read or write.
pub struct StageContext<'a> {
    /// The run directory; artifacts go under [`RunDir::stage_dir`].
    pub run_dir: &'a RunDir,
    /// The resolved spec.
    pub spec: &'a Experiment,
    /// The whole plan.
    pub plan: &'a Plan,
    /// The instance to run (its kind, step or partition, parameters).
    pub instance: &'a StageInstance,
    /// What has completed so far, with outputs (read the inputs of this instance here).
    pub state: &'a RunState,
    /// The run's event log, for progress and metrics events.
    pub events: &'a mut EventLog,
    /// Objects shared between instances within this process.
    pub resources: &'a mut Resources,
}

/// One stage kind's computation.
pub trait Stage: Send + Sync {
    /// Run one instance. Return its outputs, or an error (the run stops there; `--resume`
    /// retries the instance).
    fn run(&self, ctx: &mut StageContext<'_>) -> Result<StageOutput>;
}

/// The stage implementations available to `apply`.
#[derive(Clone, Default)]
pub struct Registry {
    stages: BTreeMap<StageKind, Arc<dyn Stage>>,
}

impl Registry {
    /// A registry with nothing in it.
    pub fn empty() -> Registry {
        Registry::default()
    }

    /// The stages this build implements. Later issues register their stages here.
    pub fn builtin() -> Registry {
        let mut r = Registry::empty();
        r.register(StageKind::Sft, Arc::new(sft::SftStage));
        r.register(StageKind::Train, Arc::new(train::TrainStage));
        r.register(StageKind::Generate, Arc::new(generate::GenerateStage));
        r.register(StageKind::Score, Arc::new(score::ScoreStage));
        r.register(StageKind::Rank, Arc::new(rank::RankStage));
        r.register(StageKind::Eval, Arc::new(eval::EvalStage));
        r
    }

    /// Register (or replace) the implementation of `kind`.
    pub fn register(&mut self, kind: StageKind, stage: Arc<dyn Stage>) -> &mut Registry {
        self.stages.insert(kind, stage);
        self
    }

    /// The implementation of `kind`, if any.
    pub fn get(&self, kind: StageKind) -> Option<Arc<dyn Stage>> {
        self.stages.get(&kind).cloned()
    }

    /// Whether `kind` has an implementation.
    pub fn is_implemented(&self, kind: StageKind) -> bool {
        self.stages.contains_key(&kind)
    }

    /// The kinds among `kinds` without an implementation, deduplicated, in plan order.
    pub fn missing(&self, kinds: impl IntoIterator<Item = StageKind>) -> Vec<StageKind> {
        let mut out: Vec<StageKind> = kinds
            .into_iter()
            .filter(|k| !self.is_implemented(*k))
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// `Ok` when every kind the plan uses is implemented; otherwise the error `apply` stops with
    /// before starting anything.
    pub fn check(&self, plan: &Plan) -> Result<()> {
        let missing = self.missing(plan.kinds());
        if missing.is_empty() {
            return Ok(());
        }
        Err(Error::Run(not_implemented_message(&missing)))
    }
}

/// Whether this build implements `kind` (the built-in registry).
pub fn implemented(kind: StageKind) -> bool {
    Registry::builtin().is_implemented(kind)
}

/// Prefix of the message `apply` stops with when a stage kind has no implementation.
pub const NOT_IMPLEMENTED: &str = "cannot apply: stage kinds not implemented yet";

/// "cannot apply: stage kinds not implemented yet: generate, score (...)".
pub fn not_implemented_message(missing: &[StageKind]) -> String {
    let names: Vec<&str> = missing.iter().map(|k| k.name()).collect();
    format!(
        "{NOT_IMPLEMENTED}: {} (their computations come with later issues; nothing was started \
         and no run directory was created — `runner plan` shows what would run)",
        names.join(", ")
    )
}
