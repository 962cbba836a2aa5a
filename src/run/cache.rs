//! Stage caching: every stage instance has a cache key, and an instance whose key matches a
//! completed instance of an earlier run of the same run name is copied from it instead of run.
//!
//! ## The key
//! `sha256` over named parts (kept in `state.json` as `cache.<instance id>`, so `runner plan`
//! can name the first part that differs):
//! - `runner`: the runner version; `kind`: the stage kind; `at`: the step, date or scored pairs;
//! - `spec:<path>`: the resolved spec sections the kind reads (below), as canonical JSON;
//! - `file:<path>`: the sha256 of each data file the instance reads (a missing file counts as
//!   `missing`);
//! - `input:<instance id>`: the keys of the instances whose outputs it reads. "The policy" of an
//!   instance is the trainer state after the last `sft`/`train` instance before it in plan
//!   order, so a partition's generate depends on the previous partition's training.
//!
//! | kind | spec sections | inputs |
//! |---|---|---|
//! | sft | seed, model, data.sft (or data.train), data.prompt, data.task, train.sft, train.{micro_batch_size, max_grad_norm, adam_*, weight_decay} | — |
//! | generate | seed, model, data.train, data.prompt, data.task, generate, train.{batch_size, gradient_accumulation_steps} | policy |
//! | score | rewards, data.outcomes (daily loop) | the generate instance(s) of its predictions; the policy when a judge runs on it |
//! | rank | seed, rank, train.objective | score |
//! | train | seed, model, generate, rewards, monitors, train (without train.sft), the plan's step count | score, rank, policy |
//! | eval | seed, model, data.prompt, data.task, data of each eval set, generate, rewards, eval | policy, the previous eval (best so far) |
//!
//! So a changed reward weight re-runs score and what follows; generation from a policy that
//! has not changed (the first step, or partitions before the first training) is reused, while
//! later generations sample from a policy trained on the new rewards and re-run too.
//! Files a reward reads (SQL databases, judge prompts) are keyed by their path, not contents.
//!
//! ## Lookup
//! No index file: the earlier runs `runs/<run name>/*/state.json` are scanned (a state file
//! is written atomically, so a run in progress is read consistently), newest run first.
//! An instance is reused when its key matches, its input instances are reused too (an input
//! that re-runs — forced, or missing — re-runs what reads it), and the recorded artifacts are
//! still there. A hit hard-links (or copies) the instance's `stages/<id>/` folder into the new
//! run and records the instance as completed with `cache.<id>.from_run`.
//!
//! ## Trainer state
//! `sft` and `train` instances change the run-level trainer state (`trainer/`). Their cache
//! records keep the checksums of the state they left (`trainer`); a hit is only usable when
//! the source run still has that state: its `trainer/`, a snapshot under `checkpoints/` (numbered,
//! `final`, dated partition snapshots) or `stages/sft/trainer/` (kept after every executed
//! `sft`). It is installed into the new run before the next instance that runs (and at the
//! end), with the new run's own best eval so far; the in-memory policy is then reloaded.
//! A train hit also writes its `metrics.csv` row and links the source's snapshots of that state;
//! an eval hit carries its best-eval bookkeeping (and `checkpoints/best/` when the source's
//! still matches).
//!
//! `--force KIND` re-runs every instance of that kind and, through the inputs, what follows.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::state::{RunState, StageRecord};
use super::{dir, RunDir};
use crate::plan::{LoopPlan, Plan, StageInstance};
use crate::spec::resolve::canonical_json;
use crate::spec::{Experiment, Reward};
use crate::stages::StageKind;
use crate::{Error, Result};

/// Version of the key derivation; changing it invalidates every key.
pub const KEY_SCHEME: &str = "runner-cache-1";

/// One named part of a cache key, as stored (long values shortened to 16 hex digits of their
/// sha256; the key itself hashes the full values).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyPart {
    /// `runner`, `kind`, `at`, `spec:<path>`, `file:<path>`, `input:<id>`, `plan:<what>`.
    pub name: String,
    /// The value, or a digest of it.
    pub value: String,
}

/// The cache record of a completed instance (`state.json`, `cache.<instance id>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheRecord {
    /// The cache key (hex sha256).
    pub key: String,
    /// What the key is made of, in order.
    pub parts: Vec<KeyPart>,
    /// The run id the instance was copied from (a cache hit); absent when it ran here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_run: Option<String>,
    /// `sft`/`train`: the trainer state the instance left, file → sha256 (as listed in its
    /// `training_state.json`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trainer: Option<BTreeMap<String, String>>,
}

/// The cache key of one plan instance.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceKey {
    /// The instance id.
    pub id: String,
    /// Its kind.
    pub kind: StageKind,
    /// The key (hex sha256).
    pub key: String,
    /// Its parts, as stored.
    pub parts: Vec<KeyPart>,
    /// The instances whose outputs it reads (ids).
    pub inputs: Vec<String>,
}

impl InstanceKey {
    /// The cache record of this instance when it ran here.
    pub fn record(&self, trainer: Option<BTreeMap<String, String>>) -> CacheRecord {
        CacheRecord {
            key: self.key.clone(),
            parts: self.parts.clone(),
            from_run: None,
            trainer,
        }
    }
}

/// Builds one key.
struct KeyBuilder {
    hasher: Sha256,
    parts: Vec<KeyPart>,
    inputs: Vec<String>,
}

impl KeyBuilder {
    fn new() -> KeyBuilder {
        let mut hasher = Sha256::new();
        hasher.update(KEY_SCHEME.as_bytes());
        hasher.update(b"\n");
        KeyBuilder {
            hasher,
            parts: Vec::new(),
            inputs: Vec::new(),
        }
    }

    fn part(&mut self, name: &str, value: &str) {
        self.hasher.update(name.as_bytes());
        self.hasher.update([0u8]);
        self.hasher.update(value.as_bytes());
        self.hasher.update(b"\n");
        let shown = if value.len() > 24 {
            short_digest(value.as_bytes())
        } else {
            value.to_string()
        };
        self.parts.push(KeyPart {
            name: name.to_string(),
            value: shown,
        });
    }

    fn input(&mut self, id: &str, key: &str) {
        self.part(&format!("input:{id}"), key);
        self.inputs.push(id.to_string());
    }

    fn finish(self, id: &str, kind: StageKind) -> InstanceKey {
        InstanceKey {
            id: id.to_string(),
            kind,
            key: hex::encode(self.hasher.finalize()),
            parts: self.parts,
            inputs: self.inputs,
        }
    }
}

fn short_digest(bytes: &[u8]) -> String {
    hex::encode(&Sha256::digest(bytes)[..8])
}

/// The value at a dotted path of a JSON document (`Null` when absent).
fn at_path<'a>(doc: &'a Value, path: &str) -> &'a Value {
    let mut v = doc;
    for seg in path.split('.') {
        v = match v.get(seg) {
            Some(x) => x,
            None => return &Value::Null,
        };
    }
    v
}

/// sha256 of a file's contents, or `missing`.
fn file_digest(path: &str, memo: &mut HashMap<String, String>) -> Result<String> {
    if let Some(d) = memo.get(path) {
        return Ok(d.clone());
    }
    let p = Path::new(path);
    let d = if p.is_file() {
        crate::train::state::file_sum(p)?.sha256
    } else {
        "missing".to_string()
    };
    memo.insert(path.to_string(), d.clone());
    Ok(d)
}

/// The spec sections an instance of `kind` reads (dotted paths into the resolved spec).
/// `train` is keyed without `train.sft` (see [`section_value`]).
fn sections(kind: StageKind, spec: &Experiment) -> Vec<String> {
    let own = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<String>>();
    match kind {
        StageKind::Sft => {
            let data = if spec.data.sft.is_some() {
                "data.sft"
            } else {
                "data.train"
            };
            own(&[
                "seed",
                "model",
                data,
                "data.prompt",
                "data.task",
                "train.sft",
                "train.micro_batch_size",
                "train.max_grad_norm",
                "train.adam_beta1",
                "train.adam_beta2",
                "train.adam_epsilon",
                "train.weight_decay",
            ])
        }
        StageKind::Generate => own(&[
            "seed",
            "model",
            "data.train",
            "data.prompt",
            "data.task",
            "generate",
            "train.batch_size",
            "train.gradient_accumulation_steps",
        ]),
        StageKind::Score => own(&["rewards", "data.outcomes"]),
        StageKind::Rank => own(&["seed", "rank", "train.objective"]),
        StageKind::Train => own(&["seed", "model", "generate", "rewards", "monitors", "train"]),
        StageKind::Eval => {
            let mut v = own(&["seed", "model", "data.prompt", "data.task"]);
            for set in &spec.eval.sets {
                v.push(set_path(spec, set));
            }
            v.extend(own(&["generate", "rewards", "eval"]));
            v
        }
    }
}

/// The spec path of an eval set's source.
fn set_path(spec: &Experiment, set: &str) -> String {
    match set {
        "train" => "data.train".into(),
        "eval" => "data.eval".into(),
        "sft" if spec.data.sft.is_some() => "data.sft".into(),
        "sft" => "data.train".into(),
        other => format!("data.extra.{other}"),
    }
}

/// A section's value as keyed: `train` without its `sft` part (the sft instance has its own key).
fn section_value(doc: &Value, path: &str) -> Value {
    let mut v = at_path(doc, path).clone();
    if path == "train" {
        if let Some(o) = v.as_object_mut() {
            o.remove("sft");
        }
    }
    v
}

/// Whether a spec change at `change_path` falls in the keyed section `section`.
fn in_section(section: &str, change_path: &str) -> bool {
    let inside = change_path == section
        || change_path
            .strip_prefix(section)
            .is_some_and(|r| r.starts_with('.'));
    inside && !(section == "train" && in_section("train.sft", change_path))
}

/// Whether a judge reward runs on the policy itself (a local judge naming no model).
fn judges_with_policy(spec: &Experiment) -> bool {
    spec.rewards
        .values()
        .any(|r| matches!(r, Reward::Judge(j) if j.endpoint.is_none() && j.model.is_none()))
}

/// The data files an instance reads.
fn files(inst: &StageInstance, spec: &Experiment) -> Vec<String> {
    let date = inst.date.as_deref();
    let src_path = |s: &crate::spec::DataSource| {
        crate::plan::data::source_path(
            s,
            if s.path.contains("{date}") {
                date
            } else {
                None
            },
        )
    };
    match inst.kind {
        StageKind::Sft => spec
            .data
            .sft
            .as_ref()
            .or(spec.data.train.as_ref())
            .map(|s| vec![crate::plan::data::source_path(s, None)])
            .unwrap_or_default(),
        StageKind::Generate => spec
            .data
            .train
            .as_ref()
            .map(|s| vec![src_path(s)])
            .unwrap_or_default(),
        StageKind::Score => match &spec.data.outcomes {
            Some(o) => inst
                .pairs
                .iter()
                .map(|p| o.path.replace("{date}", &p.outcomes_from))
                .collect(),
            None => Vec::new(),
        },
        StageKind::Eval => spec
            .eval
            .sets
            .iter()
            .filter_map(|set| crate::data::sets::source(spec, set).ok())
            .map(src_path)
            .collect(),
        StageKind::Rank | StageKind::Train => Vec::new(),
    }
}

/// Where an instance sits in the loop.
fn at(inst: &StageInstance) -> String {
    let mut s = match (&inst.step, &inst.date) {
        (Some(st), _) => format!("step {st}"),
        (None, Some(d)) => format!("date {d}"),
        (None, None) => "once".to_string(),
    };
    if !inst.pairs.is_empty() {
        let p: Vec<String> = inst
            .pairs
            .iter()
            .map(|p| format!("{}x{}", p.predictions_from, p.outcomes_from))
            .collect();
        s.push_str(&format!(" pairs {}", p.join(",")));
    }
    s
}

/// The step count a train instance's LR schedule spans.
fn train_span(plan: &Plan, inst: &StageInstance) -> String {
    match &plan.loop_ {
        LoopPlan::Steps { total_steps, .. } => total_steps.to_string(),
        LoopPlan::Partitions { rounds, .. } => inst
            .date
            .as_ref()
            .and_then(|d| rounds.iter().find(|r| &r.date == d))
            .and_then(|r| r.train_steps)
            .map_or("unknown".to_string(), |s| s.to_string()),
    }
}

/// The cache key of every instance of `plan`, in plan order. Data files are read (relative to
/// the working directory) to hash their contents.
///
/// `lineage` is the digest of what a daily-loop run takes over from its chain run (see
/// [`lineage_digest`]); every instance of such a run depends on it.
pub fn instance_keys(
    spec: &Experiment,
    plan: &Plan,
    lineage: Option<&str>,
) -> Result<Vec<InstanceKey>> {
    let doc = serde_json::to_value(spec)?;
    let mut memo = HashMap::new();
    let mut keys: Vec<InstanceKey> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut last_trainer: Option<usize> = None;
    let mut last_eval: Option<usize> = None;
    for inst in plan.instances() {
        let mut b = KeyBuilder::new();
        b.part("runner", crate::VERSION);
        b.part("kind", inst.kind.name());
        b.part("at", &at(&inst));
        if let Some(l) = lineage {
            b.part("lineage", l);
        }
        for s in sections(inst.kind, spec) {
            b.part(
                &format!("spec:{s}"),
                &canonical_json(&section_value(&doc, &s)),
            );
        }
        if inst.kind == StageKind::Train {
            b.part("plan:steps", &train_span(plan, &inst));
        }
        for f in files(&inst, spec) {
            let d = file_digest(&f, &mut memo)?;
            b.part(&format!("file:{f}"), &d);
        }
        let key_of = |id: &str| index.get(id).map(|&i| (i, keys[i].key.clone()));
        let policy = last_trainer.map(|i| (keys[i].id.clone(), keys[i].key.clone()));
        let mut inputs: Vec<(String, String)> = Vec::new();
        match inst.kind {
            StageKind::Sft => {}
            StageKind::Generate => inputs.extend(policy.clone()),
            StageKind::Score => {
                let gens: Vec<String> = if inst.pairs.is_empty() {
                    vec![crate::stages::artifacts::sibling_id(&inst.id, "generate")]
                } else {
                    inst.pairs
                        .iter()
                        .map(|p| format!("{}/generate", p.predictions_from))
                        .collect()
                };
                for g in gens {
                    if let Some((_, k)) = key_of(&g) {
                        inputs.push((g, k));
                    }
                }
                if judges_with_policy(spec) {
                    inputs.extend(policy.clone());
                }
            }
            StageKind::Rank => {
                let s = crate::stages::artifacts::sibling_id(&inst.id, "score");
                if let Some((_, k)) = key_of(&s) {
                    inputs.push((s, k));
                }
            }
            StageKind::Train => {
                for kind in ["score", "rank"] {
                    let s = crate::stages::artifacts::sibling_id(&inst.id, kind);
                    if let Some((_, k)) = key_of(&s) {
                        inputs.push((s, k));
                    }
                }
                inputs.extend(policy.clone());
            }
            StageKind::Eval => {
                inputs.extend(policy.clone());
                if let Some(i) = last_eval {
                    inputs.push((keys[i].id.clone(), keys[i].key.clone()));
                }
            }
        }
        for (id, k) in &inputs {
            b.input(id, k);
        }
        let k = b.finish(&inst.id, inst.kind);
        let pos = keys.len();
        index.insert(inst.id.clone(), pos);
        match inst.kind {
            StageKind::Sft | StageKind::Train => last_trainer = Some(pos),
            StageKind::Eval => last_eval = Some(pos),
            _ => {}
        }
        keys.push(k);
    }
    Ok(keys)
}

/// A completed instance of an earlier run.
#[derive(Debug, Clone)]
pub struct Found {
    /// The earlier run's directory.
    pub run: PathBuf,
    /// Its run id.
    pub run_id: String,
    /// The instance's state record there.
    pub record: StageRecord,
    /// Its cache record there.
    pub cache: CacheRecord,
}

/// One earlier run: its directory and state.
#[derive(Debug, Clone)]
struct EarlierRun {
    dir: PathBuf,
    state: RunState,
}

/// The earlier runs of one run name, newest first.
#[derive(Debug, Clone, Default)]
pub struct Earlier {
    runs: Vec<EarlierRun>,
    /// Runs whose state could not be read, with why (reported, not fatal).
    pub unreadable: Vec<String>,
}

impl Earlier {
    /// Scan `<runs_root>/<run name>/*/state.json`, leaving out `exclude` (the run being resumed).
    pub fn scan(runs_root: &Path, run_name: &str, exclude: Option<&Path>) -> Result<Earlier> {
        let parent = runs_root.join(dir::safe_name(run_name));
        let mut out = Earlier::default();
        let entries = match std::fs::read_dir(&parent) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(Error::io(&parent, e)),
        };
        let excluded = exclude.and_then(|p| p.canonicalize().ok());
        for e in entries {
            let e = e.map_err(|e| Error::io(&parent, e))?;
            let d = e.path();
            let sf = d.join(dir::STATE_FILE);
            if !sf.is_file() {
                continue;
            }
            if excluded.is_some() && d.canonicalize().ok() == excluded {
                continue;
            }
            match RunState::load(&sf) {
                Ok(state) => out.runs.push(EarlierRun { dir: d, state }),
                Err(err) => out.unreadable.push(err.to_string()),
            }
        }
        out.runs.sort_by(|a, b| {
            (b.state.created_at, b.dir.file_name()).cmp(&(a.state.created_at, a.dir.file_name()))
        });
        Ok(out)
    }

    /// Whether there is any earlier run.
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// The newest completed instance with cache key `key` and id `id` whose artifacts are there.
    fn lookup(&self, id: &str, key: &str) -> Option<Found> {
        for r in &self.runs {
            let Some(c) = r.state.cache_record(id) else {
                continue;
            };
            if c.key != key {
                continue;
            }
            let Some(rec) = r.state.record(id) else {
                continue;
            };
            if !artifacts_present(&r.dir, rec) {
                continue;
            }
            return Some(Found {
                run: r.dir.clone(),
                run_id: r.state.run_id.clone(),
                record: rec.clone(),
                cache: c.clone(),
            });
        }
        None
    }

    /// Why instance `k` has no hit: the first part that differs from its newest earlier record.
    fn miss_reason(&self, k: &InstanceKey, new_doc: &Value) -> String {
        if self.runs.is_empty() {
            return "no earlier run".into();
        }
        let mut without_keys = false;
        for r in &self.runs {
            if r.state.record(&k.id).is_none() {
                continue;
            }
            let Some(c) = r.state.cache_record(&k.id) else {
                without_keys = true;
                continue;
            };
            return first_difference(&r.dir, &c.parts, k, new_doc)
                .unwrap_or_else(|| format!("the outputs in run {} are gone", r.state.run_id));
        }
        if without_keys {
            "earlier runs have no cache keys (made before caching)".into()
        } else {
            "not in earlier runs".into()
        }
    }
}

/// Whether the artifacts a record names (relative paths under `stages/`) are all there.
fn artifacts_present(run: &Path, rec: &StageRecord) -> bool {
    let Some(o) = rec.outputs.as_object() else {
        return true;
    };
    o.values()
        .filter_map(Value::as_str)
        .filter(|s| s.starts_with("stages/"))
        .all(|s| run.join(s).exists())
}

/// The first part of `new` that differs from `old`, in words.
fn first_difference(
    old_run: &Path,
    old: &[KeyPart],
    new: &InstanceKey,
    new_doc: &Value,
) -> Option<String> {
    let old_by: HashMap<&str, &str> = old
        .iter()
        .map(|p| (p.name.as_str(), p.value.as_str()))
        .collect();
    for p in &new.parts {
        let before = old_by.get(p.name.as_str()).copied();
        if before == Some(p.value.as_str()) {
            continue;
        }
        let Some(before) = before else {
            return Some(format!("{} is new", describe(&p.name)));
        };
        return Some(if p.name == "runner" {
            format!("runner version changed ({before} → {})", p.value)
        } else if let Some(section) = p.name.strip_prefix("spec:") {
            spec_change(old_run, section, new_doc).unwrap_or_else(|| format!("{section} changed"))
        } else if let Some(f) = p.name.strip_prefix("file:") {
            format!("data file {f} changed")
        } else if let Some(i) = p.name.strip_prefix("input:") {
            format!("input {i} changed")
        } else {
            format!("{} changed ({before} → {})", describe(&p.name), p.value)
        });
    }
    let new_names: BTreeSet<&str> = new.parts.iter().map(|p| p.name.as_str()).collect();
    old.iter()
        .find(|p| !new_names.contains(p.name.as_str()))
        .map(|p| format!("{} is gone", describe(&p.name)))
}

fn describe(part: &str) -> String {
    if let Some(i) = part.strip_prefix("input:") {
        format!("input {i}")
    } else if let Some(f) = part.strip_prefix("file:") {
        format!("data file {f}")
    } else if let Some(s) = part.strip_prefix("spec:") {
        s.to_string()
    } else if let Some(s) = part.strip_prefix("plan:") {
        format!("plan {s}")
    } else {
        part.to_string()
    }
}

/// The first changed field of `section` between an earlier run's resolved spec and the new one:
/// `rewards.format.weight changed (1 → 0.5)`.
fn spec_change(old_run: &Path, section: &str, new_doc: &Value) -> Option<String> {
    let text = std::fs::read_to_string(old_run.join(dir::RESOLVED_FILE)).ok()?;
    let old: Experiment = serde_yaml::from_str(&text).ok()?;
    let old_doc = serde_json::to_value(&old).ok()?;
    let changes = crate::diff::diff_values(
        &section_value(&old_doc, section),
        &section_value(new_doc, section),
    );
    let c = changes.first()?;
    let path = if c.path.is_empty() {
        section.to_string()
    } else {
        format!("{section}.{}", c.path)
    };
    if !in_section(section, &path) {
        return None;
    }
    let show = |v: &Option<Value>| v.as_ref().map_or("(none)".to_string(), crate::diff::render);
    Some(format!(
        "{path} changed ({} → {})",
        clip(&show(&c.old)),
        clip(&show(&c.new))
    ))
}

fn clip(s: &str) -> String {
    if s.chars().count() > 40 {
        format!("{}…", s.chars().take(39).collect::<String>())
    } else {
        s.to_string()
    }
}

/// What happens to one instance.
#[derive(Debug, Clone)]
pub enum Decision {
    /// Completed already in the run being resumed.
    Done,
    /// Copied from an earlier run.
    Hit(Box<Hit>),
    /// Run, and why.
    Run(String),
}

/// A usable cache hit.
#[derive(Debug, Clone)]
pub struct Hit {
    /// Where from.
    pub found: Found,
    /// `sft`/`train`: the source's directory holding the trainer state the instance left,
    /// when it is needed and there.
    pub trainer_dir: Option<PathBuf>,
}

/// One instance's key and decision.
#[derive(Debug, Clone)]
pub struct CacheEntry {
    /// The key.
    pub key: InstanceKey,
    /// What happens to it.
    pub decision: Decision,
}

/// The cache decisions of a whole plan.
#[derive(Debug, Clone)]
pub struct CachePlan {
    /// One entry per instance, in plan order.
    pub entries: Vec<CacheEntry>,
    /// The directory the earlier runs were looked up in.
    pub runs_parent: PathBuf,
    /// Earlier runs that could not be read.
    pub unreadable: Vec<String>,
}

/// The trainer state (file → sha256) a `training_state.json` in `dir` lists, unverified.
pub fn trainer_files(dir: &Path) -> Option<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(dir.join(crate::train::state::STATE_FILE)).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    let files = v.get("files")?.as_object()?;
    Some(
        files
            .iter()
            .filter_map(|(k, f)| Some((k.clone(), f.get("sha256")?.as_str()?.to_string())))
            .collect(),
    )
}

/// The snapshot directories of a run that may hold a given trainer state.
fn state_candidates(run: &Path, id: &str) -> Vec<PathBuf> {
    let mut out = vec![
        run.join("stages")
            .join(dir::safe_name(id))
            .join(crate::train::state::TRAINER_DIR),
        run.join(crate::train::state::TRAINER_DIR),
    ];
    let ck = run.join(crate::train::checkpoint::CHECKPOINTS_DIR);
    if let Ok(rd) = std::fs::read_dir(&ck) {
        let mut v: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
        v.sort();
        out.extend(v);
    }
    out
}

/// The directory of `found`'s run that holds the trainer state the instance left (verified).
pub fn locate_state(found: &Found) -> Option<PathBuf> {
    let want = found.cache.trainer.as_ref()?;
    state_candidates(&found.run, &found.record.id)
        .into_iter()
        .find(|d| {
            trainer_files(d).as_ref() == Some(want) && crate::train::state::read_verified(d).is_ok()
        })
}

/// Which instances are completed in a resumed run (empty for a new one).
pub type Completed = BTreeSet<String>;

impl CachePlan {
    /// Decide, for every instance of `plan`, whether an earlier run of `run_name` under
    /// `runs_root` has it (leaving out `current`, a run being resumed, whose completed
    /// instances are `completed`). Kinds in `force` run. `lineage`: see [`instance_keys`].
    #[allow(clippy::too_many_arguments)]
    pub fn decide(
        runs_root: &Path,
        run_name: &str,
        spec: &Experiment,
        plan: &Plan,
        lineage: Option<&str>,
        force: &[StageKind],
        current: Option<&Path>,
        completed: &Completed,
    ) -> Result<CachePlan> {
        let keys = instance_keys(spec, plan, lineage)?;
        let earlier = Earlier::scan(runs_root, run_name, current)?;
        let doc = serde_json::to_value(spec)?;
        let mut unusable: HashMap<String, String> = HashMap::new();
        // Each pass either settles or finds one more train/sft hit whose trainer state is not
        // kept, which then runs; so this ends after at most (trainer instances + 1) passes.
        loop {
            match decide_pass(&keys, &earlier, &doc, force, completed, &unusable) {
                Ok(entries) => {
                    return Ok(CachePlan {
                        entries,
                        runs_parent: runs_root.join(dir::safe_name(run_name)),
                        unreadable: earlier.unreadable.clone(),
                    })
                }
                Err((id, why)) => {
                    unusable.insert(id, why);
                }
            }
        }
    }

    /// The run every instance is a hit in, when all are hits from one run: nothing to do.
    pub fn up_to_date(&self) -> Option<PathBuf> {
        let mut run: Option<&Path> = None;
        for e in &self.entries {
            match &e.decision {
                Decision::Hit(h) => match run {
                    None => run = Some(&h.found.run),
                    Some(r) if r == h.found.run => {}
                    Some(_) => return None,
                },
                _ => return None,
            }
        }
        run.map(Path::to_path_buf)
    }

    /// Instances copied from earlier runs.
    pub fn hits(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| matches!(e.decision, Decision::Hit(_)))
            .count()
    }

    /// The entry of instance `id`.
    pub fn entry(&self, id: &str) -> Option<&CacheEntry> {
        self.entries.iter().find(|e| e.key.id == id)
    }

    /// The view `runner plan` shows.
    pub fn view(&self) -> CacheView {
        let instances = self
            .entries
            .iter()
            .map(|e| {
                let (status, run, reason) = match &e.decision {
                    Decision::Done => ("done", None, None),
                    Decision::Hit(h) => ("cached", Some(h.found.run_id.clone()), None),
                    Decision::Run(why) => ("to_run", None, Some(why.clone())),
                };
                InstanceView {
                    id: e.key.id.clone(),
                    kind: e.key.kind,
                    status: status.to_string(),
                    run,
                    reason,
                    key: e.key.key.clone(),
                }
            })
            .collect();
        CacheView {
            runs_dir: self.runs_parent.clone(),
            up_to_date: self.up_to_date(),
            instances,
            unreadable: self.unreadable.clone(),
        }
    }
}

type PassResult = std::result::Result<Vec<CacheEntry>, (String, String)>;

fn decide_pass(
    keys: &[InstanceKey],
    earlier: &Earlier,
    doc: &Value,
    force: &[StageKind],
    completed: &Completed,
    unusable: &HashMap<String, String>,
) -> PassResult {
    let mut entries: Vec<CacheEntry> = Vec::with_capacity(keys.len());
    let mut rerun: BTreeSet<&str> = BTreeSet::new();
    // The last sft/train hit whose trainer state is still to be installed: (entry index).
    let mut pending: Option<usize> = None;
    let need_state =
        |entries: &mut Vec<CacheEntry>, i: usize| -> std::result::Result<(), (String, String)> {
            let id = entries[i].key.id.clone();
            let Decision::Hit(h) = &mut entries[i].decision else {
                return Ok(());
            };
            if h.trainer_dir.is_some() {
                return Ok(());
            }
            match locate_state(&h.found) {
                Some(d) => {
                    h.trainer_dir = Some(d);
                    Ok(())
                }
                None => Err((
                    id,
                    format!(
                        "the trainer state it left is not kept in run {} (keep snapshots with \
                     train.checkpoint.every)",
                        h.found.run_id
                    ),
                )),
            }
        };
    for k in keys {
        let decision = if completed.contains(&k.id) {
            Decision::Done
        } else if force.contains(&k.kind) {
            Decision::Run("forced".into())
        } else if let Some(i) = k.inputs.iter().find(|i| rerun.contains(i.as_str())) {
            Decision::Run(format!("input {i} re-runs"))
        } else if let Some(why) = unusable.get(&k.id) {
            Decision::Run(why.clone())
        } else {
            match earlier.lookup(&k.id, &k.key) {
                Some(found) => Decision::Hit(Box::new(Hit {
                    found,
                    trainer_dir: None,
                })),
                None => Decision::Run(earlier.miss_reason(k, doc)),
            }
        };
        let trainer_kind = matches!(k.kind, StageKind::Sft | StageKind::Train);
        match &decision {
            Decision::Run(_) => {
                rerun.insert(&k.id);
                if let Some(p) = pending.take() {
                    need_state(&mut entries, p)?;
                }
            }
            Decision::Hit(_) if trainer_kind => pending = Some(entries.len()),
            Decision::Done if trainer_kind => pending = None,
            _ => {}
        }
        entries.push(CacheEntry {
            key: k.clone(),
            decision,
        });
    }
    // A new run ends with the trainer state of its last training; not needed when everything
    // is a hit from one run (nothing is created then).
    if let Some(p) = pending {
        let all_one_run = CachePlan {
            entries: entries.clone(),
            runs_parent: PathBuf::new(),
            unreadable: Vec::new(),
        }
        .up_to_date()
        .is_some();
        if !all_one_run {
            need_state(&mut entries, p)?;
        }
    }
    Ok(entries)
}

/// The cache status of a plan, as `runner plan` shows it (text and JSON).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CacheView {
    /// Where earlier runs were looked up.
    pub runs_dir: PathBuf,
    /// The run that already has everything (apply then does nothing).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub up_to_date: Option<PathBuf>,
    /// Per instance, in plan order.
    pub instances: Vec<InstanceView>,
    /// Earlier runs whose state could not be read.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unreadable: Vec<String>,
}

/// One instance's cache status.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InstanceView {
    /// Instance id.
    pub id: String,
    /// Stage kind.
    pub kind: StageKind,
    /// `cached`, `to_run` or `done` (completed in the run being resumed).
    pub status: String,
    /// The run id it is copied from (cached).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    /// Why it runs (to_run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Its cache key.
    pub key: String,
}

impl InstanceView {
    /// `cached (run <id>)` / `to run (<reason>)` / `done`.
    pub fn status_text(&self) -> String {
        match (self.status.as_str(), &self.run, &self.reason) {
            ("cached", Some(r), _) => format!("cached (run {r})"),
            ("to_run", _, Some(why)) => format!("to run ({why})"),
            (s, _, _) => s.replace('_', " "),
        }
    }
}

/// Hard-link `from` (a file or a directory tree) to `to`, copying where links fail.
pub fn link_tree(from: &Path, to: &Path) -> Result<()> {
    let meta = std::fs::symlink_metadata(from).map_err(|e| Error::io(from, e))?;
    if meta.is_dir() {
        std::fs::create_dir_all(to).map_err(|e| Error::io(to, e))?;
        for e in std::fs::read_dir(from).map_err(|e| Error::io(from, e))? {
            let e = e.map_err(|e| Error::io(from, e))?;
            link_tree(&e.path(), &to.join(e.file_name()))?;
        }
        Ok(())
    } else if meta.is_file() {
        if to.exists() {
            std::fs::remove_file(to).map_err(|e| Error::io(to, e))?;
        }
        if std::fs::hard_link(from, to).is_err() {
            std::fs::copy(from, to).map_err(|e| Error::io(from, e))?;
        }
        Ok(())
    } else {
        // Symlinks and special files are not artifacts a stage writes.
        Ok(())
    }
}

/// Replace a directory atomically enough: build `<dest>.cache-tmp`, move `dest` aside, rename.
fn replace_dir(src: &Path, dest: &Path, edit: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let parent = dest
        .parent()
        .ok_or_else(|| Error::Run(format!("{}: no parent directory", dest.display())))?;
    std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    let tmp = tempfile::Builder::new()
        .prefix(".cache-")
        .tempdir_in(parent)
        .map_err(|e| Error::io(parent, e))?;
    link_tree(src, tmp.path())?;
    edit(tmp.path())?;
    let old = parent.join(format!(
        ".old-{}",
        dest.file_name()
            .map_or("dir".into(), |n| n.to_string_lossy().into_owned())
    ));
    if old.exists() {
        crate::run::atomic::remove_dir(&old)?;
    }
    if dest.exists() {
        std::fs::rename(dest, &old).map_err(|e| Error::io(dest, e))?;
    }
    let kept = tmp.keep();
    std::fs::rename(&kept, dest).map_err(|e| Error::io(&kept, e))?;
    if old.exists() {
        crate::run::atomic::remove_dir(&old)?;
    }
    Ok(())
}

/// Copy a cache hit's stage folder into `run`.
pub fn copy_stage_dir(found: &Found, run: &RunDir) -> Result<()> {
    let name = dir::safe_name(&found.record.id);
    let src = found.run.join("stages").join(&name);
    if !src.is_dir() {
        return Ok(());
    }
    replace_dir(&src, &run.path().join("stages").join(&name), |_| Ok(()))
}

/// Install the trainer state in `src` as `run`'s `trainer/`, with `best` as its best eval.
pub fn install_trainer_state(
    run: &RunDir,
    src: &Path,
    best: Option<(String, f64, usize)>,
) -> Result<()> {
    let dest = crate::train::state::trainer_dir(run);
    replace_dir(src, &dest, |tmp| {
        let mut st = crate::train::state::read_verified(tmp)?;
        if st.best != best {
            st.best = best;
            super::atomic::write_json(&tmp.join(crate::train::state::STATE_FILE), &st)?;
        }
        Ok(())
    })
}

/// Link the snapshots under the source's `checkpoints/` (other than `best/`) that hold the
/// trainer state `files` into `run`'s `checkpoints/`.
pub fn link_snapshots(
    source_run: &Path,
    run: &RunDir,
    files: &BTreeMap<String, String>,
) -> Result<Vec<String>> {
    let ck = source_run.join(crate::train::checkpoint::CHECKPOINTS_DIR);
    let mut linked = Vec::new();
    let Ok(rd) = std::fs::read_dir(&ck) else {
        return Ok(linked);
    };
    let mut dirs: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
    dirs.sort();
    for d in dirs {
        let Some(name) = d.file_name().map(|n| n.to_string_lossy().into_owned()) else {
            continue;
        };
        if name == "best" || name.starts_with('.') {
            continue;
        }
        if trainer_files(&d).as_ref() == Some(files) {
            let dest = crate::train::checkpoint::checkpoints_dir(run).join(&name);
            replace_dir(&d, &dest, |_| Ok(()))?;
            linked.push(format!(
                "{}/{name}",
                crate::train::checkpoint::CHECKPOINTS_DIR
            ));
        }
    }
    Ok(linked)
}

/// Link the source's `checkpoints/best/` into `run` when it records `best`.
pub fn link_best(source_run: &Path, run: &RunDir, best: &(String, f64, usize)) -> Result<bool> {
    let src = source_run
        .join(crate::train::checkpoint::CHECKPOINTS_DIR)
        .join("best");
    let Ok(st) = crate::train::state::read_verified(&src) else {
        return Ok(false);
    };
    if st.best.as_ref() != Some(best) {
        return Ok(false);
    }
    let dest = crate::train::checkpoint::checkpoints_dir(run).join("best");
    replace_dir(&src, &dest, |_| Ok(()))?;
    Ok(true)
}

/// The best-eval bookkeeping an eval record carries: `Some` when it found a new best.
pub fn eval_new_best(outputs: &Value) -> Option<(String, f64, usize)> {
    let b = outputs.get("eval_best")?;
    if b.get("new").and_then(Value::as_bool) != Some(true) {
        return None;
    }
    Some((
        b.get("metric")?.as_str()?.to_string(),
        b.get("value")?.as_f64()?,
        b.get("step")?.as_u64()? as usize,
    ))
}

/// Keep a copy (hard links) of `run`'s current trainer state in `stages/<id>/trainer/`, so a
/// later run can reuse the instance (done after `sft`, whose state RL overwrites).
pub fn keep_state(run: &RunDir, id: &str) -> Result<()> {
    let Some(src) = crate::train::state::locate(run)? else {
        return Ok(());
    };
    let dest = run.stage_dir(id)?.join(crate::train::state::TRAINER_DIR);
    replace_dir(&src, &dest, |_| Ok(()))
}

/// The digest of what a daily-loop run takes over from its chain run: the adopted model's
/// trainer state (file → sha256), the imported predictions (date → sha256) and the chain
/// run's last summary row (the auto sampler profile reads it). `None` when it takes nothing.
pub fn lineage_digest(
    model_from: Option<&Path>,
    imports: &BTreeMap<String, PathBuf>,
    previous_summary_last: Option<&crate::run::summary::PartitionSummary>,
) -> Result<Option<String>> {
    if model_from.is_none() && imports.is_empty() && previous_summary_last.is_none() {
        return Ok(None);
    }
    let mut memo = HashMap::new();
    let mut imported = serde_json::Map::new();
    for (date, path) in imports {
        imported.insert(
            date.clone(),
            Value::String(file_digest(&path.to_string_lossy(), &mut memo)?),
        );
    }
    let doc = serde_json::json!({
        "model": model_from.map(trainer_files),
        "imports": imported,
        "previous": previous_summary_last,
    });
    Ok(Some(hex::encode(Sha256::digest(
        canonical_json(&doc).as_bytes(),
    ))))
}

/// [`lineage_digest`] of a run directory's own `partitions.json` (for `--resume`).
pub fn lineage_digest_of_run(run: &Path) -> Result<Option<String>> {
    let l = crate::plan::partitions::Lineage::load(run)?;
    let imports: BTreeMap<String, PathBuf> = l
        .imported_predictions
        .iter()
        .map(|(d, rel)| (d.clone(), run.join(rel)))
        .collect();
    let model = l.model_from.as_ref().map(PathBuf::from);
    lineage_digest(model.as_deref(), &imports, l.previous_summary.last())
}

/// `apply`'s cache step for a new run (after the daily loop's connection is chosen, before the
/// run directory is created): the decisions, or — every instance a hit in one earlier run —
/// the report of that run, up to date, with nothing created.
pub fn before_start(
    req: &super::ApplyRequest,
    run_name: &str,
    p: &super::apply::Prepared,
    connection: Option<&super::apply::daily::Connection>,
) -> Result<std::result::Result<CachePlan, super::ApplyReport>> {
    let lineage = match connection {
        Some(c) => lineage_digest(
            c.model_from.as_deref(),
            &c.imports,
            c.previous_summary.last(),
        )?,
        None => None,
    };
    let plan = CachePlan::decide(
        &req.runs_dir,
        run_name,
        &p.spec,
        &p.plan,
        lineage.as_deref(),
        &req.force,
        None,
        &Completed::new(),
    )?;
    let Some(run_dir) = plan.up_to_date() else {
        return Ok(Ok(plan));
    };
    let (skipped_partitions, pending) = super::apply::daily::skipped_and_pending(&p.plan);
    Ok(Err(super::ApplyReport {
        run_dir,
        resumed: false,
        summary: super::ExecSummary {
            total: plan.entries.len(),
            cached: plan.entries.len(),
            up_to_date: true,
            ..super::ExecSummary::default()
        },
        warnings: p.warnings.clone(),
        skipped_partitions,
        pending,
    }))
}

/// Carry a cached daily-loop instance's figures into `run`'s per-partition summary: the fields
/// its stage kind writes when it runs (generate: headlines, rollouts, sampler; score: the reward
/// figures and scored pairs; train: steps, average reward, KL and `done`), taken from the
/// source run's row of `date`. Later stages (the auto sampler profile) read them.
pub fn carry_summary(
    found: &Found,
    run: &RunDir,
    kind: StageKind,
    date: &str,
    generated_only: bool,
) -> Result<()> {
    use crate::run::summary;
    if !summary::json_path(&found.run).is_file() {
        return Ok(());
    }
    let Some(src) = summary::read_summaries(&found.run)?
        .into_iter()
        .find(|r| r.date == date)
    else {
        return Ok(());
    };
    summary::update_row(run.path(), date, |row| match kind {
        StageKind::Generate => {
            row.headlines = src.headlines;
            row.rollouts = src.rollouts;
            row.sampler = src.sampler.clone();
            if generated_only {
                row.status = "done".into();
            }
        }
        StageKind::Score => {
            row.validity = src.validity;
            row.composite_reward = src.composite_reward;
            row.trade_thinking = src.trade_thinking;
            row.paragraph_quality = src.paragraph_quality;
            row.leak_rate = src.leak_rate;
            row.mean_words = src.mean_words;
            row.judge_retries = src.judge_retries;
            row.scored_pairs = src.scored_pairs.clone();
        }
        StageKind::Train => {
            row.training_steps = src.training_steps;
            row.avg_reward = src.avg_reward;
            row.kl = src.kl;
            if src.status == "done" {
                row.status = "done".into();
            }
        }
        _ => {}
    })
}
