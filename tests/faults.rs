//! Fault injection (issue 8): `kill -9` of the real `runner apply` at random moments followed by
//! `--resume`, two `apply`s on one run directory, a full disk during a run, and corrupt inputs
//! (truncated safetensors / GGUF model files, a trainer state whose checksum fails).
//!
//! Every test runs a tiny random model (tests/common) on CPU in a few seconds. The full-disk
//! test mounts a tmpfs and skips with a message when it cannot (not root, no CAP_SYS_ADMIN).

mod common;
mod support_train;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use runner::engine::load::{self, LoadOptions, ModelFiles};
use runner::engine::model::Arch;
use runner::train::state;

/// Optimizer steps of the tiny run (the kill test uses more: [`KILL_STEPS`]).
const STEPS: usize = 8;
/// Steps of the kill test's run: long enough that 20 kills land in different phases.
const KILL_STEPS: usize = 16;

/// A tiny project: model (weights + tokenizer), data and a spec of `steps` optimizer steps
/// with an eval every 3 steps and a checkpoint every 2, so a run passes through sampling,
/// scoring, training, trainer-state saves, checkpoints and evals.
struct Project {
    dir: tempfile::TempDir,
    spec: PathBuf,
}

impl Project {
    fn new(steps: usize) -> Project {
        let dir = tempfile::tempdir().unwrap();
        let model = common::tiny_model_dir(dir.path(), 7);
        let train = dir.path().join("train.jsonl");
        let eval = dir.path().join("eval.jsonl");
        std::fs::write(&train, common::arithmetic_rows("t", 6)).unwrap();
        std::fs::write(&eval, common::arithmetic_rows("e", 2)).unwrap();
        let spec = dir.path().join("tiny.yaml");
        std::fs::write(&spec, spec_text(&model, &train, &eval, steps)).unwrap();
        Project { dir, spec }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Written out in full (not `common::tiny_spec`): the path-confinement test edits this text.
fn spec_text(model: &Path, train: &Path, eval: &Path, steps: usize) -> String {
    format!(
        r#"
name: tiny
seed: 5
model:
  base: {model}
  # every module at r 32: the trainer state (adapter + optimizer moments, ~0.4 MB) outweighs
  # state.json, so the full-disk test can run out of room inside a trainer / checkpoint write
  adapter: {{r: 32, lora_alpha: 64, lora_dropout: 0.1, target_modules: [q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj]}}
data:
  train:
    path: {train}
    fields: {{prompt: question, reference: answer, id: id}}
  eval:
    path: {eval}
    fields: {{prompt: question, reference: answer, id: id}}
  prompt:
    template: "{{{{ question }}}} answer:"
generate:
  num_generations: 4
  max_completion_length: 8
  temperature: 1.0
rewards:
  format:
    kind: format
    weight: 1.0
    regex: '[0-9]'
  correct:
    kind: answer
    weight: 0.5
train:
  learning_rate: 1.0e-3
  lr_scheduler_type: linear
  max_steps: {steps}
  batch_size: 2
  checkpoint: {{every: 2, keep_last: 2}}
eval:
  every: 3
  sets: [eval]
  num_generations: 2
  metrics: [mean_reward]
"#,
        model = model.display(),
        train = train.display(),
        eval = eval.display(),
    )
}

/// The real binary, without `RUNNER_*` variables of the caller.
fn runner() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_runner"));
    for (k, _) in std::env::vars() {
        if k.starts_with("RUNNER_") {
            c.env_remove(k);
        }
    }
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    c
}

fn apply_cmd(spec: &Path, runs: &Path) -> Command {
    let mut c = runner();
    c.arg("apply")
        .arg(spec)
        .arg("--runs-dir")
        .arg(runs)
        .args(["--no-env", "--quiet"]);
    c
}

fn resume_cmd(run: &Path) -> Command {
    let mut c = runner();
    c.arg("apply")
        .arg("--resume")
        .arg(run)
        .args(["--no-env", "--quiet"]);
    c
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn run_ok(mut c: Command) -> Output {
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    o
}

/// The run directories under `runs/tiny/`.
fn run_dirs(runs: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(runs.join("tiny"))
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// The tensors of a safetensors file by name, as raw f32 bits (bitwise comparison).
fn tensor_bits(path: &Path) -> BTreeMap<String, Vec<u32>> {
    candle_core::safetensors::load(path, &candle_core::Device::Cpu)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .into_iter()
        .map(|(k, t)| {
            let v: Vec<f32> = t
                .to_dtype(candle_core::DType::F32)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            (k, v.into_iter().map(f32::to_bits).collect())
        })
        .collect()
}

/// Temp files of atomic writes and the trainer's in-progress directory: by design possibly
/// incomplete after a crash, never read as artifacts.
/// Scratch, not results: hidden names (temp files and directories, `.old-*` / `.trash-*` being
/// swapped out or deleted) and the trainer's half-written next state.
fn is_scratch(name: &str) -> bool {
    name.starts_with('.') || name == "trainer.next"
}

/// Every artifact of a run directory is whole: JSON / JSONL / CSV / safetensors parse, and each
/// trainer state (`trainer/`, `checkpoints/*/`) verifies against its checksums.
fn check_artifacts(run: &Path) -> Result<usize, String> {
    let mut n = 0;
    let mut stack = vec![run.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let rd = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for e in rd {
            let e = e.map_err(|e| e.to_string())?;
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if is_scratch(&name) {
                continue;
            }
            if p.is_dir() {
                if p.join(state::STATE_FILE).is_file() {
                    state::read_verified(&p).map_err(|e| format!("{}: {e}", p.display()))?;
                }
                stack.push(p);
                continue;
            }
            let bad = |what: String| format!("{}: {what}", p.display());
            let ext = p.extension().and_then(|x| x.to_str()).unwrap_or("");
            match ext {
                "json" => {
                    let s = std::fs::read_to_string(&p).map_err(|e| bad(e.to_string()))?;
                    serde_json::from_str::<serde_json::Value>(&s)
                        .map_err(|e| bad(e.to_string()))?;
                }
                "jsonl" => {
                    let s = std::fs::read_to_string(&p).map_err(|e| bad(e.to_string()))?;
                    if !s.is_empty() && !s.ends_with('\n') {
                        return Err(bad("last line not terminated".into()));
                    }
                    for (i, l) in s.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
                        serde_json::from_str::<serde_json::Value>(l)
                            .map_err(|e| bad(format!("line {}: {e}", i + 1)))?;
                    }
                }
                "csv" => {
                    let mut r = csv::Reader::from_path(&p).map_err(|e| bad(e.to_string()))?;
                    let width = r.headers().map_err(|e| bad(e.to_string()))?.len();
                    for rec in r.records() {
                        let rec = rec.map_err(|e| bad(e.to_string()))?;
                        if rec.len() != width {
                            return Err(bad(format!("{} fields, header has {width}", rec.len())));
                        }
                    }
                }
                "safetensors" => {
                    candle_core::safetensors::load(&p, &candle_core::Device::Cpu)
                        .map_err(|e| bad(e.to_string()))?;
                }
                "yaml" => {
                    let s = std::fs::read_to_string(&p).map_err(|e| bad(e.to_string()))?;
                    serde_yaml::from_str::<serde_yaml::Value>(&s)
                        .map_err(|e| bad(e.to_string()))?;
                }
                _ => continue,
            }
            n += 1;
        }
    }
    Ok(n)
}

/// What the run was doing when it was killed, from its event log and scratch directories.
fn phase_at_kill(run: &Path) -> String {
    let mut phase = std::fs::read_to_string(run.join("events.jsonl"))
        .ok()
        .and_then(|s| s.lines().last().map(str::to_string))
        .and_then(|l| serde_json::from_str::<serde_json::Value>(&l).ok())
        .map(|e| {
            format!(
                "{} {}",
                e["kind"].as_str().unwrap_or("?"),
                e["stage"].as_str().unwrap_or("")
            )
        })
        .unwrap_or_else(|| "before the first event".into());
    if run.join("trainer.next").exists() {
        phase.push_str(" [trainer state write]");
    }
    let ck = run.join("checkpoints");
    if std::fs::read_dir(&ck)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .any(|e| e.file_name().to_string_lossy().starts_with(".tmp"))
        })
        .unwrap_or(false)
    {
        phase.push_str(" [checkpoint write]");
    }
    phase
}

/// A tiny seeded generator (xorshift), so the kill moments reproduce.
struct Rng(u64);

impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn kill9(child: &mut Child) -> bool {
    let running = child.try_wait().unwrap().is_none();
    let _ = child.kill(); // SIGKILL on Unix
    let _ = child.wait();
    running
}

#[test]
fn kill_9_at_random_moments_then_resume_matches_an_uninterrupted_run() {
    let p = Project::new(KILL_STEPS);

    // The reference: one uninterrupted run, timed.
    let runs_a = p.path().join("runs_a");
    let t0 = Instant::now();
    run_ok(apply_cmd(&p.spec, &runs_a));
    let full = t0.elapsed();
    let a = run_dirs(&runs_a).pop().unwrap();
    check_artifacts(&a).unwrap();

    let runs_b = p.path().join("runs_b");
    let mut rng = Rng(0x5eed_f417);
    let mut phases: BTreeMap<String, usize> = BTreeMap::new();
    let mut live_kills = 0;
    eprintln!("uninterrupted run: {full:?}");
    for k in 0..20 {
        // Kill within the next share of the remaining work (by steps trained so far), so the 20
        // kills spread over the whole run: start-up, sampling, scoring, training, trainer-state
        // saves, checkpoints and evals.
        let done = run_dirs(&runs_b)
            .pop()
            .and_then(|r| runner::train::metrics::read_rows(&r.join("metrics.csv")).ok())
            .map_or(0, |rows| rows.len());
        let remaining = 1.0 - done as f64 / KILL_STEPS as f64;
        let delay = full.mul_f64(0.02 + 0.12 * remaining * rng.unit());
        let mut child = match run_dirs(&runs_b).pop() {
            Some(run) => resume_cmd(&run),
            None => apply_cmd(&p.spec, &runs_b),
        }
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
        std::thread::sleep(delay);
        let live = kill9(&mut child);
        live_kills += usize::from(live);
        let dirs = run_dirs(&runs_b);
        assert!(
            dirs.len() <= 1,
            "kill {k}: several run directories {dirs:?}"
        );
        if let Some(run) = dirs.first() {
            let phase = if live {
                phase_at_kill(run)
            } else {
                "already finished".into()
            };
            *phases.entry(phase).or_default() += 1;
            if let Err(e) = check_artifacts(run) {
                panic!("kill {k} after {delay:?}: broken artifact: {e}");
            }
        } else {
            *phases.entry("before the run directory".into()).or_default() += 1;
        }
    }
    eprintln!("kills that hit a live process: {live_kills}/20; phases: {phases:#?}");
    assert!(live_kills >= 15, "most kills must hit a running process");

    let b = run_dirs(&runs_b).pop().expect("a run directory");
    let o = run_ok(resume_cmd(&b));
    eprintln!("final resume: {}", String::from_utf8_lossy(&o.stdout));
    check_artifacts(&b).unwrap();
    assert_eq!(run_dirs(&runs_b).len(), 1);

    // Bit for bit the same training.
    for f in [
        "trainer/adapter_model.safetensors",
        "trainer/optimizer.safetensors",
        "checkpoints/final/adapter_model.safetensors",
    ] {
        let (x, y) = (tensor_bits(&a.join(f)), tensor_bits(&b.join(f)));
        assert!(!x.is_empty(), "{f}");
        assert!(x == y, "{f} differs from the uninterrupted run's");
    }
    let ra = runner::train::metrics::read_rows(&a.join("metrics.csv")).unwrap();
    let rb = runner::train::metrics::read_rows(&b.join("metrics.csv")).unwrap();
    assert_eq!(ra.len(), KILL_STEPS);
    assert_eq!(rb.len(), KILL_STEPS);
    for (x, y) in ra.iter().zip(&rb) {
        for k in ["step", "loss", "grad_norm", "reward"] {
            assert_eq!(
                x.get(k),
                y.get(k),
                "metrics.csv {k} at step {:?}",
                x.get("step")
            );
        }
    }
}

/// Wait until `f` holds (polling), or panic after `secs`.
fn wait_for(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(
            t.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn second_apply_on_a_run_directory_is_refused_with_the_holders_pid() {
    let p = Project::new(STEPS);
    let runs = p.path().join("runs");
    let mut first = apply_cmd(&p.spec, &runs)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = first.id();
    // The lock is taken before `state.json` is written; wait for both, so the second apply
    // meets a run directory that is one.
    wait_for(60, "the first apply to take the lock", || {
        run_dirs(&runs).first().is_some_and(|r| {
            runner::run::lock::holder_pid(r) == Some(pid) && r.join("state.json").is_file()
        })
    });
    let run = run_dirs(&runs).pop().unwrap();
    let second = resume_cmd(&run).output().unwrap();
    let still_running = first.try_wait().unwrap().is_none();
    if still_running {
        assert!(!second.status.success(), "{}", text(&second));
        let err = String::from_utf8_lossy(&second.stderr);
        assert!(err.contains(&format!("PID {pid}")), "{err}");
        assert!(
            err.contains("wait for it") && err.contains(&format!("kill {pid}")),
            "{err}"
        );
        // A second fresh apply of the same spec makes its own run directory: no conflict.
    } else {
        eprintln!("the first apply finished before the second started; lock check skipped");
    }

    // The holder dies without cleaning up: its PID stays in the file, the lock does not.
    kill9(&mut first);
    assert_eq!(runner::run::lock::holder_pid(&run), Some(pid));
    let third = resume_cmd(&run).spawn().unwrap();
    let third_pid = third.id();
    let o = third.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(runner::run::lock::holder_pid(&run), Some(third_pid));
    check_artifacts(&run).unwrap();
}

/// A tmpfs mounted for the test, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, bytes: usize) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).ok()?;
        let o = match Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(at)
            .output()
        {
            Ok(o) => o,
            Err(e) => {
                eprintln!("SKIP full-disk test: cannot run `mount` ({e})");
                return None;
            }
        };
        if !o.status.success() {
            eprintln!(
                "SKIP full-disk test: cannot mount a tmpfs ({}); run as root to include it",
                String::from_utf8_lossy(&o.stderr).trim()
            );
            return None;
        }
        Some(Tmpfs(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).output();
    }
}

/// Copy a directory tree (hard links become copies).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if src.is_dir() {
            copy_tree(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

/// Fill the file system of `dir` with a ballast file, then give `pages` pages back.
fn fill_leaving(dir: &Path, pages: u64) {
    use std::io::Write;
    let path = dir.join("ballast");
    let mut f = std::fs::File::create(&path).unwrap();
    let page = vec![0u8; 4096];
    let mut len = 0u64;
    while f.write_all(&page).is_ok() {
        len += 4096;
    }
    drop(f);
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(len.saturating_sub(pages * 4096)).unwrap();
}

/// A run killed after it trained at least `steps` steps (on the normal disk).
fn killed_run(p: &Project, runs: &Path, steps: usize) -> PathBuf {
    let mut child = apply_cmd(&p.spec, runs)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(120, "steps to train", || {
        run_dirs(runs)
            .pop()
            .and_then(|r| runner::train::metrics::read_rows(&r.join("metrics.csv")).ok())
            .is_some_and(|rows| rows.len() >= steps)
    });
    assert!(
        kill9(&mut child),
        "the run finished before it could be stopped"
    );
    run_dirs(runs).pop().unwrap()
}

/// Needs root to mount the tmpfs; skips with a message otherwise
/// (`cargo test --test faults full_disk -- --nocapture` prints where each size stopped).
#[test]
fn full_disk_stops_the_run_with_a_clear_error_and_resume_completes() {
    let p = Project::new(STEPS);
    let runs_a = p.path().join("runs_a");
    run_ok(apply_cmd(&p.spec, &runs_a));
    let a = run_dirs(&runs_a).pop().unwrap();
    let reference = tensor_bits(&a.join("trainer/adapter_model.safetensors"));
    let snapshot = killed_run(&p, &p.path().join("runs_b"), 2);

    // The same stopped run resumed on a disk with 1, 2, 3, ... pages free: each resume stops at
    // a later write (the state, stage outputs, the trainer state, a checkpoint), always with an
    // error naming the file, never a panic, and leaves only whole artifacts behind.
    let mnt = p.path().join("disk");
    let Some(fs) = Tmpfs::mount(&mnt, 16 << 20) else {
        return;
    };
    let mut stopped_in: Vec<String> = Vec::new();
    let mut in_trainer_save = false;
    // state.json is rewritten (atomically: a second copy) after every stage, so the first
    // sizes stop there; the trainer save comes a few pages later.
    let state_pages = std::fs::metadata(snapshot.join("state.json"))
        .unwrap()
        .len()
        / 4096;
    for pages in (1..=state_pages + 600).step_by(3) {
        let run = mnt.join("tiny").join(snapshot.file_name().unwrap());
        let _ = std::fs::remove_dir_all(mnt.join("tiny"));
        let _ = std::fs::remove_file(mnt.join("ballast"));
        copy_tree(&snapshot, &run);
        fill_leaving(&mnt, pages);
        let o = resume_cmd(&run).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(!err.contains("panicked"), "{pages} pages: {}", text(&o));
        if o.status.success() {
            eprintln!("{pages} pages free: the run fit");
            break;
        }
        if pages < state_pages {
            continue;
        }
        let line = err
            .lines()
            .find(|l| l.contains("No space left"))
            .unwrap_or_else(|| panic!("{pages} pages: no ENOSPC message: {}", text(&o)))
            .to_string();
        let trainer = line.contains("trainer") || line.contains("checkpoint");
        stopped_in.push(format!("{pages} pages free: {line}"));
        check_artifacts(&run).unwrap_or_else(|e| panic!("{pages} pages: {e}"));
        if trainer && !in_trainer_save {
            in_trainer_save = true;
            // The previous trainer state is intact: with room again, the run resumes from it
            // and ends with the uninterrupted run's adapter.
            std::fs::remove_file(mnt.join("ballast")).unwrap();
            run_ok(resume_cmd(&run));
            check_artifacts(&run).unwrap();
            assert!(
                tensor_bits(&run.join("trainer/adapter_model.safetensors")) == reference,
                "{pages} pages: adapter differs after resume"
            );
            break;
        }
    }
    drop(fs);
    eprintln!("full-disk stops:\n{}", stopped_in.join("\n"));
    assert!(
        in_trainer_save,
        "no disk size stopped the run in a trainer-state or checkpoint write"
    );
}

// ---------------------------------------------------------------------------------------------
// corrupt inputs
// ---------------------------------------------------------------------------------------------

/// Cut points through a file of `len` bytes: the start, inside the header, and across the data.
fn cut_points(len: usize) -> Vec<usize> {
    let mut v: Vec<usize> = vec![0, 1, 4, 7, 8, 9, 16, 24, 32, 64, 100];
    v.extend((1..32).map(|i| len * i / 32));
    v.push(len - 1);
    v.retain(|&c| c < len);
    v.sort();
    v.dedup();
    v
}

#[test]
fn truncated_safetensors_model_is_a_clear_error_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = common::tiny_config(Arch::Llama, false);
    common::write_hf_dir(tmp.path(), &cfg, &common::random_weights(&cfg, 3));
    let f = tmp.path().join("model.safetensors");
    let bytes = std::fs::read(&f).unwrap();
    for cut in cut_points(bytes.len()) {
        std::fs::write(&f, &bytes[..cut]).unwrap();
        let r = std::panic::catch_unwind(|| {
            load::load_model(
                &ModelFiles::HfDir(tmp.path().to_path_buf()),
                &LoadOptions::default(),
            )
            .map(|_| ())
        });
        let err = match r {
            Ok(Err(e)) => e.to_string(),
            Ok(Ok(())) => panic!("cut at {cut}/{}: loaded a truncated file", bytes.len()),
            Err(_) => panic!("cut at {cut}/{}: panicked", bytes.len()),
        };
        assert!(err.contains("model.safetensors"), "cut at {cut}: {err}");
    }
}

#[test]
fn truncated_gguf_model_is_a_clear_error_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = common::tiny_config(Arch::Llama, false);
    let f = tmp.path().join("tiny.gguf");
    common::write_gguf(&f, &cfg, &common::random_weights(&cfg, 4));
    load::load_model(&ModelFiles::Gguf(f.clone()), &LoadOptions::default()).unwrap();
    let bytes = std::fs::read(&f).unwrap();
    for cut in cut_points(bytes.len()) {
        std::fs::write(&f, &bytes[..cut]).unwrap();
        let r = std::panic::catch_unwind(|| {
            load::load_model(&ModelFiles::Gguf(f.clone()), &LoadOptions::default()).map(|_| ())
        });
        let err = match r {
            Ok(Err(e)) => e.to_string(),
            Ok(Ok(())) => panic!("cut at {cut}/{}: loaded a truncated file", bytes.len()),
            Err(_) => panic!("cut at {cut}/{}: panicked", bytes.len()),
        };
        assert!(err.contains("tiny.gguf"), "cut at {cut}: {err}");
    }
}

#[test]
fn trainer_state_with_a_bad_checksum_is_refused_naming_the_file() {
    use support_train::*;
    let tmp = tempfile::tempdir().unwrap();
    let base = write_model(&tmp.path().join("model"));
    let spec = tmp.path().join("tiny.yaml");
    std::fs::write(&spec, spec_yaml(&base, 4, "", "")).unwrap();
    let runs = tmp.path().join("runs");
    apply_spec(&spec, &runs, &registry(Some(2), None)).unwrap_err();
    let run = only_run(&runs);
    for name in ["adapter_model.safetensors", "optimizer.safetensors"] {
        // Same length, one bit flipped in the data: only the checksum can tell.
        let f = run.join("trainer").join(name);
        let good = std::fs::read(&f).unwrap();
        let mut bad = good.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0x01;
        std::fs::write(&f, &bad).unwrap();
        let err = resume(&run, &registry(None, None)).unwrap_err().to_string();
        assert!(err.contains(name) && err.contains("corrupt"), "{err}");
        assert!(
            err.contains("checkpoints/"),
            "says where to restore from: {err}"
        );
        std::fs::write(&f, &good).unwrap();
    }
    // A numbered checkpoint is verified the same way when a run starts from it.
    resume(&run, &registry(None, None)).unwrap();
    let ck = run.join("checkpoints/checkpoint-4");
    state::read_verified(&ck).unwrap();
    let f = ck.join("adapter_model.safetensors");
    let mut bad = std::fs::read(&f).unwrap();
    let last = bad.len() - 1;
    bad[last] ^= 0x01;
    // Checkpoints share the trainer's files by hard link: write a new inode.
    std::fs::remove_file(&f).unwrap();
    std::fs::write(&f, &bad).unwrap();
    let err = state::read_verified(&ck).unwrap_err().to_string();
    assert!(
        err.contains("adapter_model.safetensors") && err.contains("checkpoint-4"),
        "{err}"
    );
}

#[test]
fn malformed_data_lines_fail_with_line_numbers_or_are_skipped_as_the_spec_says() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("train.jsonl");
    std::fs::write(
        &f,
        "{\"prompt\": \"a\"}\n{\"prompt\": \"b\"\n\"just a string\"\n{\"prompt\": \"c\"}\n",
    )
    .unwrap();
    let mut spec: runner::spec::Experiment = serde_yaml::from_str(&format!(
        "name: x\nmodel: {{base: m}}\ndata:\n  train: {{path: '{}', shuffle: false}}\n",
        f.display()
    ))
    .unwrap();
    assert_eq!(spec.data.on_bad_line, runner::spec::OnBadLine::Fail);
    let source = spec.data.train.clone().unwrap();
    let err = runner::data::load_records(&spec, &source, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("train.jsonl:2: invalid JSON"), "{err}");
    spec.data.on_bad_line = runner::spec::OnBadLine::Skip;
    let recs = runner::data::load_records(&spec, &source, None).unwrap();
    let texts: Vec<&str> = recs.iter().map(|r| r.prompt_text.as_str()).collect();
    assert_eq!(texts, vec!["a", "c"]);
}

/// Every file under `dir`, relative.
fn all_files(dir: &Path) -> std::collections::BTreeSet<PathBuf> {
    let mut out = std::collections::BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p.clone());
            }
            out.insert(p.strip_prefix(dir).unwrap().to_path_buf());
        }
    }
    out
}

#[test]
fn spec_names_cannot_make_runner_write_outside_its_run_directory() {
    let p = Project::new(2);
    // Hostile names: the experiment, the run suffix, a reward, a data set and an eval set.
    let hostile = std::fs::read_to_string(&p.spec)
        .unwrap()
        .replace(
            "  format:\n    kind: format",
            "  ../../r:\n    kind: format",
        )
        .replace("  eval:\n    path:", "  extra:\n    ../../e:\n      path:")
        .replace(
            "    fields: {prompt: question, reference: answer, id: id}\n  prompt:",
            "      fields: {prompt: question, reference: answer, id: id}\n  prompt:",
        )
        .replace("sets: [eval]", "sets: [../../e]")
        + "schedule: {run_suffix: '../../../../tmp/escaped_suffix'}\n";
    std::fs::write(&p.spec, &hostile).unwrap();
    // The experiment name itself must be one plain directory name.
    let bad_name = hostile.replace("name: tiny", "name: ../../escaped");
    let bad_spec = p.path().join("bad_name.yaml");
    std::fs::write(&bad_spec, bad_name).unwrap();
    let o = apply_cmd(&bad_spec, &p.path().join("work/runs"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("name: `../../escaped` does not match"),
        "{}",
        text(&o)
    );
    std::fs::remove_file(&bad_spec).unwrap();

    let before = all_files(p.path());
    let runs = p.path().join("work/runs");
    std::fs::create_dir_all(&runs).unwrap();
    let o = apply_cmd(&p.spec, &runs).output().unwrap();
    eprintln!("{}", text(&o));
    let after = all_files(p.path());
    let outside: Vec<&PathBuf> = after
        .difference(&before)
        .filter(|f| !f.starts_with("work"))
        .collect();
    assert!(outside.is_empty(), "written outside runs/: {outside:?}");
    assert!(!Path::new("/tmp/escaped_suffix").exists());
    // Everything under runs/ is under one run directory, named safely.
    let dirs: Vec<PathBuf> = std::fs::read_dir(&runs)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    let name = dirs[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(!name.contains('/') && name != ".." && name != ".", "{name}");
}

#[test]
fn spec_paths_must_stay_in_the_project_or_allowed_roots() {
    use runner::spec::locate::roots::{check_spec, confine, AllowedRoots};
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // The project's own example specs pass from the crate root.
    let opts = runner::spec::resolve::ResolveOptions {
        sets: Vec::new(),
        use_env: false,
    };
    for e in std::fs::read_dir(root.join("experiments"))
        .unwrap()
        .flatten()
    {
        let f = e.path();
        if f.extension().and_then(|x| x.to_str()) != Some("yaml") {
            continue;
        }
        let r = runner::spec::resolve::resolve(&f, &opts).unwrap();
        let roots = AllowedRoots::build(&f, root, None);
        let bad = check_spec(&r.spec, &roots, root);
        assert!(bad.is_empty(), "{}: {bad:?}", f.display());
    }
    // A spec in a project of its own that points elsewhere is refused, naming the field.
    let tmp = tempfile::tempdir().unwrap();
    let proj = tmp.path().join("proj");
    std::fs::create_dir_all(proj.join(".git")).unwrap();
    let spec_file = proj.join("x.yaml");
    let mut spec = runner::spec::Experiment::default();
    spec.data.train = serde_yaml::from_str("path: /etc/passwd.jsonl").unwrap();
    std::fs::write(&spec_file, "name: x\n").unwrap();
    let err = confine(&spec, &spec_file);
    // The working directory (the crate root) is allowed too, and /etc is neither.
    let err = err.unwrap_err().to_string();
    assert!(
        err.contains("data.train.path") && err.contains("/etc/passwd.jsonl"),
        "{err}"
    );
    // ../shared/data (the stocknet data next to the project) is usable once allowed.
    let shared = tmp.path().join("shared/data/stocknet");
    std::fs::create_dir_all(&shared).unwrap();
    spec.data.train = serde_yaml::from_str(&format!(
        "path: '{}/{{date}}.jsonl'",
        proj.join("../shared/data/stocknet").display()
    ))
    .unwrap();
    let roots = AllowedRoots::build(&spec_file, &proj, None);
    assert_eq!(check_spec(&spec, &roots, &proj).len(), 1);
    std::fs::write(proj.join(".runner-allowed-roots"), "../shared/data\n").unwrap();
    let roots = AllowedRoots::build(&spec_file, &proj, None);
    assert!(check_spec(&spec, &roots, &proj).is_empty());
}
