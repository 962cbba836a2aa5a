//! The trainer's persistent state, written after EVERY optimizer step to `<run>/trainer/`, so
//! `runner apply --resume` continues exactly where a run stopped.
//!
//! `trainer/` holds the trained weights (a PEFT adapter — `adapter_config.json` +
//! `adapter_model.safetensors` — or, under full fine-tuning, `trainable.safetensors`), the
//! optimizer state (`optimizer.safetensors`) and `training_state.json`: the step, LR, schedule,
//! seeds, data cursor, best eval so far, monitor counters, the last step's metrics, and the
//! sha256 of every file it lists.
//!
//! A save writes a complete new directory `trainer.next/` (files first, `training_state.json`
//! last), then swaps it in (`trainer/` → `trainer.prev/`, `trainer.next/` → `trainer/`, remove
//! `trainer.prev/`). A crash at any point leaves one complete, verifiable state: [`locate`]
//! recovers `trainer.next/` (when complete) or `trainer.prev/` when `trainer/` is missing. A
//! checksum mismatch on restore is an error naming the file.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::engine::model::Model;
use crate::engine::peft;
use crate::run::{atomic, RunDir};
use crate::train::optim::AdamW;
use crate::train::schedule::LrSchedule;
use crate::{Error, Result};

/// The trainer directory under a run.
pub const TRAINER_DIR: &str = "trainer";
/// The state file, written last.
pub const STATE_FILE: &str = "training_state.json";
/// Optimizer moments and step count.
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
/// The trainable weights under full fine-tuning (`trainable.{i}` in `Model::trainable_vars` order).
pub const FULL_WEIGHTS_FILE: &str = "trainable.safetensors";
/// Version of `training_state.json`.
pub const FORMAT_VERSION: u32 = 1;

/// What wrote the state last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// The `sft` warm-up finished (RL has not stepped yet).
    Sft,
    /// An RL optimizer step.
    Rl,
}

/// How the trained weights are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WeightsKind {
    /// A PEFT LoRA adapter.
    Lora,
    /// Every trainable weight (full fine-tuning).
    Full,
}

/// A file of the state and its checksum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSum {
    /// Lower-case hex sha256 of the contents.
    pub sha256: String,
    /// Size in bytes.
    pub bytes: u64,
}

/// The best eval so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct BestJson {
    metric: String,
    value: f64,
    step: usize,
}

mod best_serde {
    use super::BestJson;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(
        v: &Option<(String, f64, usize)>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        v.as_ref()
            .map(|(metric, value, step)| BestJson {
                metric: metric.clone(),
                value: *value,
                step: *step,
            })
            .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<(String, f64, usize)>, D::Error> {
        Ok(Option::<BestJson>::deserialize(d)?.map(|b| (b.metric, b.value, b.step)))
    }
}

/// The trainer's state after its last optimizer step (`training_state.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    /// Format version ([`FORMAT_VERSION`]).
    pub format_version: u32,
    /// The runner that wrote it.
    pub runner_version: String,
    /// What wrote it last.
    pub phase: Phase,
    /// RL optimizer steps completed; the next 0-based step to run is `step`.
    pub step: usize,
    /// The LR of the last step (`None` before any RL step).
    pub lr: Option<f64>,
    /// The LR schedule the steps follow.
    pub scheduler: Option<LrSchedule>,
    /// The spec's master seed (sampling and dropout seeds derive from (seed, step)).
    pub seed: u64,
    /// The dropout seed of the last step.
    pub dropout_seed: Option<u64>,
    /// Where the next step's data starts: with per-step batches from (seed, step), the step.
    pub data_cursor: usize,
    /// Best eval so far: (metric, value, steps completed when measured). Written by the eval
    /// stage through [`crate::train::checkpoint::save_best`].
    #[serde(with = "best_serde", default)]
    pub best: Option<(String, f64, usize)>,
    /// SFT warm-up steps taken (0 without one).
    #[serde(default)]
    pub sft_steps: usize,
    /// Consecutive-trigger counters of the spec's monitors, by monitor key.
    #[serde(default)]
    pub monitors: BTreeMap<String, usize>,
    /// The last step's logged metrics (a re-run of a completed step returns them).
    #[serde(default)]
    pub last_metrics: BTreeMap<String, f64>,
    /// How the weights are stored.
    pub weights: WeightsKind,
    /// Whether `optimizer.safetensors` is part of the state.
    pub has_optimizer: bool,
    /// Every file of the state with its checksum.
    pub files: BTreeMap<String, FileSum>,
    /// When it was written.
    pub written_at: chrono::DateTime<chrono::Utc>,
}

impl TrainerState {
    /// A state with nothing trained yet.
    pub fn fresh(seed: u64) -> TrainerState {
        TrainerState {
            format_version: FORMAT_VERSION,
            runner_version: crate::VERSION.to_string(),
            phase: Phase::Rl,
            step: 0,
            lr: None,
            scheduler: None,
            seed,
            dropout_seed: None,
            data_cursor: 0,
            best: None,
            sft_steps: 0,
            monitors: BTreeMap::new(),
            last_metrics: BTreeMap::new(),
            weights: WeightsKind::Lora,
            has_optimizer: false,
            files: BTreeMap::new(),
            written_at: chrono::Utc::now(),
        }
    }
}

/// `<run>/trainer/`.
pub fn trainer_dir(run: &RunDir) -> PathBuf {
    run.path().join(TRAINER_DIR)
}

fn next_dir(run: &RunDir) -> PathBuf {
    run.path().join(format!("{TRAINER_DIR}.next"))
}

fn prev_dir(run: &RunDir) -> PathBuf {
    run.path().join(format!("{TRAINER_DIR}.prev"))
}

/// sha256 and size of a file.
pub fn file_sum(path: &Path) -> Result<FileSum> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        bytes += n as u64;
        h.update(&buf[..n]);
    }
    Ok(FileSum {
        sha256: hex::encode(h.finalize()),
        bytes,
    })
}

/// Read and check the state in `dir` (format version, every listed file's checksum).
pub fn read_verified(dir: &Path) -> Result<TrainerState> {
    let path = dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let raw: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::Run(format!("{}: not valid JSON: {e}", path.display())))?;
    let version = raw.get("format_version").and_then(|v| v.as_u64());
    if version != Some(u64::from(FORMAT_VERSION)) {
        return Err(Error::Run(format!(
            "{}: trainer state format_version {} is not the supported {FORMAT_VERSION}",
            path.display(),
            version.map_or("(missing)".to_string(), |v| v.to_string())
        )));
    }
    let state: TrainerState = serde_json::from_value(raw)
        .map_err(|e| Error::Run(format!("{}: malformed trainer state: {e}", path.display())))?;
    for (name, want) in &state.files {
        let fp = dir.join(name);
        if !fp.is_file() {
            return Err(Error::Run(format!(
                "trainer state {}: {name} is listed in {STATE_FILE} but missing",
                dir.display()
            )));
        }
        let got = file_sum(&fp)?;
        if got != *want {
            return Err(Error::Run(format!(
                "trainer state {}: {name} is corrupt or truncated (sha256 {} / {} bytes, {STATE_FILE} \
                 says {} / {} bytes); restore it from a checkpoint under checkpoints/",
                dir.display(),
                &got.sha256[..12],
                got.bytes,
                &want.sha256[..want.sha256.len().min(12)],
                want.bytes
            )));
        }
    }
    Ok(state)
}

/// The directory holding the run's current trainer state, recovering from a save that was
/// interrupted between its renames; `None` when the run has no trainer state.
pub fn locate(run: &RunDir) -> Result<Option<PathBuf>> {
    let cur = trainer_dir(run);
    if cur.join(STATE_FILE).is_file() {
        return Ok(Some(cur));
    }
    for cand in [next_dir(run), prev_dir(run)] {
        if cand.join(STATE_FILE).is_file() && read_verified(&cand).is_ok() {
            if cur.exists() {
                atomic::remove_dir(&cur)?;
            }
            std::fs::rename(&cand, &cur).map_err(|e| Error::io(&cand, e))?;
            return Ok(Some(cur));
        }
    }
    Ok(None)
}

/// The run's trainer state, verified; `None` when there is none.
pub fn load(run: &RunDir) -> Result<Option<TrainerState>> {
    match locate(run)? {
        Some(dir) => read_verified(&dir).map(Some),
        None => Ok(None),
    }
}

/// Load the run's trainer state into `model` (its adapter, or its weights under full
/// fine-tuning); `None` when the run has no state yet. The optimizer state is loaded
/// separately ([`load_optimizer`]) by the stage that owns the optimizer.
pub fn restore_into(run: &RunDir, model: &mut Model) -> Result<Option<TrainerState>> {
    let Some(dir) = locate(run)? else {
        return Ok(None);
    };
    let state = read_verified(&dir)?;
    load_weights(&dir, &state, model)?;
    Ok(Some(state))
}

/// Load the weights of the verified state in `dir` into `model`.
pub fn load_weights(dir: &Path, state: &TrainerState, model: &mut Model) -> Result<()> {
    match state.weights {
        WeightsKind::Lora => {
            peft::load_adapter(model, dir)?;
        }
        WeightsKind::Full => {
            model.enable_full_finetune()?;
            let path = dir.join(FULL_WEIGHTS_FILE);
            let tensors = read_tensors(&path)?;
            let vars = model.trainable_vars();
            if tensors.len() != vars.len() {
                return Err(Error::Run(format!(
                    "{}: {} tensors for a model with {} trainable weights",
                    path.display(),
                    tensors.len(),
                    vars.len()
                )));
            }
            for (i, v) in vars.iter().enumerate() {
                let t = tensors.get(&format!("trainable.{i}")).ok_or_else(|| {
                    Error::Run(format!("{}: lacks trainable.{i}", path.display()))
                })?;
                if t.dims() != v.dims() {
                    return Err(Error::Run(format!(
                        "{}: trainable.{i} has shape {:?}, the model's weight {:?}",
                        path.display(),
                        t.dims(),
                        v.dims()
                    )));
                }
                v.set(&t.to_device(v.device())?.to_dtype(v.dtype())?)?;
            }
        }
    }
    Ok(())
}

fn read_tensors(path: &Path) -> Result<HashMap<String, Tensor>> {
    candle_core::safetensors::load(path, &Device::Cpu)
        .map_err(|e| Error::Run(format!("{}: {e}", path.display())))
}

/// Load the optimizer state of the run's trainer state into `opt`. `Ok(false)` when the state
/// holds none (e.g. right after SFT, whose optimizer RL does not continue).
pub fn load_optimizer(run: &RunDir, opt: &mut AdamW) -> Result<bool> {
    let Some(dir) = locate(run)? else {
        return Ok(false);
    };
    let state = read_verified(&dir)?;
    if !state.has_optimizer {
        return Ok(false);
    }
    let tensors = read_tensors(&dir.join(OPTIMIZER_FILE))?;
    opt.load_state(&tensors)?;
    Ok(true)
}

/// Save the trainer state: `model`'s trained weights, the optimizer state (when given) and
/// `state` (whose `files`, `weights`, `has_optimizer` and `written_at` are filled in here).
/// The `best` recorded on disk by the eval stage wins over the in-memory one.
pub fn save(
    run: &RunDir,
    state: &mut TrainerState,
    model: &Model,
    optimizer: Option<&AdamW>,
) -> Result<()> {
    if let Some(dir) = locate(run)? {
        if let Ok(disk) = read_verified(&dir) {
            if disk.best.is_some() {
                state.best = disk.best;
            }
        }
    }
    let next = next_dir(run);
    if next.exists() {
        atomic::remove_dir(&next)?;
    }
    std::fs::create_dir_all(&next).map_err(|e| Error::io(&next, e))?;
    let mut names = Vec::new();
    if model.lora_config().is_some() {
        peft::save_adapter(model, &next)?;
        state.weights = WeightsKind::Lora;
        names.push(peft::WEIGHTS_FILE);
        names.push(peft::CONFIG_FILE);
    } else {
        let vars = model.trainable_vars();
        if vars.is_empty() {
            return Err(Error::Run(
                "the model has neither LoRA adapters nor trainable weights to save".into(),
            ));
        }
        let tensors: Vec<(String, Tensor)> = vars
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("trainable.{i}"), v.as_tensor().clone()))
            .collect();
        peft::write_safetensors(&next.join(FULL_WEIGHTS_FILE), &tensors)?;
        state.weights = WeightsKind::Full;
        names.push(FULL_WEIGHTS_FILE);
    }
    state.has_optimizer = false;
    if let Some(opt) = optimizer {
        // candle's writer keeps every dtype (the step counts are f64 scalars); the directory
        // swap below makes the write atomic.
        let tensors: HashMap<String, Tensor> = opt.state_tensors()?.into_iter().collect();
        let path = next.join(OPTIMIZER_FILE);
        candle_core::safetensors::save(&tensors, &path)
            .map_err(|e| Error::Run(format!("{}: {e}", path.display())))?;
        state.has_optimizer = true;
        names.push(OPTIMIZER_FILE);
    }
    state.files = names
        .iter()
        .map(|n| Ok((n.to_string(), file_sum(&next.join(n))?)))
        .collect::<Result<_>>()?;
    state.format_version = FORMAT_VERSION;
    state.runner_version = crate::VERSION.to_string();
    state.written_at = chrono::Utc::now();
    atomic::write_json(&next.join(STATE_FILE), state)?;
    swap_in(run)
}

/// `trainer.next/` → `trainer/`, keeping a complete state on disk at every instant.
fn swap_in(run: &RunDir) -> Result<()> {
    let (cur, next, prev) = (trainer_dir(run), next_dir(run), prev_dir(run));
    if prev.exists() {
        atomic::remove_dir(&prev)?;
    }
    if cur.exists() {
        std::fs::rename(&cur, &prev).map_err(|e| Error::io(&cur, e))?;
    }
    std::fs::rename(&next, &cur).map_err(|e| Error::io(&next, e))?;
    sync_dir(run.path());
    if prev.exists() {
        atomic::remove_dir(&prev)?;
    }
    Ok(())
}

fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

/// Rewrite only `training_state.json` of the current state (the weights are untouched), e.g.
/// to record a new best eval.
pub fn update(run: &RunDir, f: impl FnOnce(&mut TrainerState)) -> Result<TrainerState> {
    let dir = locate(run)?.ok_or_else(|| {
        Error::Run(format!(
            "{} has no trainer state yet (no optimizer step has run)",
            run.path().display()
        ))
    })?;
    let mut state = read_verified(&dir)?;
    f(&mut state);
    atomic::write_json(&dir.join(STATE_FILE), &state)?;
    Ok(state)
}

/// Seed of the dropout masks of step `step` (0-based), from the master seed.
pub fn dropout_seed(seed: u64, step: usize) -> u64 {
    // splitmix64 of (seed, step, a tag), so dropout never shares a stream with sampling.
    let mut z = seed
        .wrapping_add((step as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
