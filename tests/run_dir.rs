//! Run directories: atomic writes, the lock, state and events, and the executor (with fake
//! stages registered the way later issues register real ones): order, resume, refusals.

use runner::plan::{self, PlanSource};
use runner::run::apply::{apply, start, ApplyRequest, Prepared};
use runner::run::events::read_events;
use runner::run::{atomic, RunDir, RunLock, RunState, StageRecord};
use runner::spec::resolve::spec_hash;
use runner::spec::Experiment;
use runner::stages::{Registry, Stage, StageContext, StageKind, StageOutput};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn atomic_write_leaves_no_temp_files() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("a.json");
    for i in 0..5 {
        atomic::write_json(&target, &serde_json::json!({ "i": i })).unwrap();
    }
    let back: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&target).unwrap()).unwrap();
    assert_eq!(back["i"], 4);
    assert_eq!(files_in(dir.path()), vec!["a.json"]);

    // A write that cannot be renamed into place (the target is a directory) fails cleanly and
    // still leaves no temp file.
    let blocker = dir.path().join("blocker");
    std::fs::create_dir(&blocker).unwrap();
    std::fs::write(blocker.join("x"), "keep").unwrap();
    assert!(atomic::write_text(&blocker, "text").is_err());
    assert_eq!(files_in(dir.path()), vec!["a.json", "blocker"]);
}

#[test]
fn lock_refuses_a_second_holder_naming_the_pid() {
    let dir = tempfile::tempdir().unwrap();
    let first = RunLock::acquire(dir.path()).unwrap();
    let err = RunLock::acquire(dir.path()).unwrap_err().to_string();
    let expected = format!(
        "run directory {} is locked by PID {}",
        dir.path().display(),
        std::process::id()
    );
    assert!(err.contains(&expected), "{err}");
    assert_eq!(
        runner::run::lock::holder_pid(dir.path()),
        Some(std::process::id())
    );
    drop(first);
    let again = RunLock::acquire(dir.path());
    assert!(again.is_ok(), "the lock is free once dropped");
}

#[test]
fn lock_refuses_another_process() {
    // This process holds the lock; a child `runner apply --resume` on the same dir must refuse.
    let dir = tempfile::tempdir().unwrap();
    let mut st = RunState::new("r", "h");
    st.save(&dir.path().join("state.json")).unwrap();
    let _held = RunLock::acquire(dir.path()).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_runner"))
        .args(["apply", "--quiet", "--resume"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("is locked by PID {}", std::process::id())),
        "{stderr}"
    );
}

#[test]
fn state_round_trip_and_version_check() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let mut st = RunState::new("20261122T001500000Z-1a2b3c4d", "abc");
    let now = chrono::Utc::now();
    st.mark_completed(StageRecord {
        id: "step-0000/generate".into(),
        kind: "generate".into(),
        started_at: now,
        finished_at: now,
        outputs: serde_json::json!({ "rollouts": "stages/step-0000_generate/rollouts.jsonl" }),
    });
    st.save(&path).unwrap();
    let back = RunState::load(&path).unwrap();
    assert_eq!(back, st);
    assert!(back.is_completed("step-0000/generate"));
    assert!(!back.is_completed("step-0000/score"));

    let mut raw: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    raw["schema_version"] = 99.into();
    std::fs::write(&path, raw.to_string()).unwrap();
    let err = RunState::load(&path).unwrap_err().to_string();
    assert!(err.contains("schema_version 99"), "{err}");
    std::fs::write(&path, "{ not json").unwrap();
    assert!(RunState::load(&path).is_err());
}

#[test]
fn events_append_across_opens_and_survive_a_torn_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    {
        let mut log = runner::run::EventLog::open(&path).unwrap();
        log.emit(None, "run_started", serde_json::json!({ "n": 1 }))
            .unwrap();
        log.emit(Some("sft"), "stage_started", serde_json::Value::Null)
            .unwrap();
    }
    {
        let mut log = runner::run::EventLog::open(&path).unwrap();
        log.emit(
            Some("sft"),
            "stage_finished",
            serde_json::json!({ "ok": true }),
        )
        .unwrap();
    }
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 3);
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(v.get("ts").is_some() && v.get("kind").is_some() && v.get("payload").is_some());
    }
    let events = read_events(&path).unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["run_started", "stage_started", "stage_finished"]);
    assert_eq!(events[1].stage.as_deref(), Some("sft"));

    // A crash mid-write leaves a torn last line: it is skipped, earlier ones still read.
    std::fs::write(&path, format!("{text}{{\"ts\":\"20")).unwrap();
    assert_eq!(read_events(&path).unwrap().len(), 3);
}

#[test]
fn run_ids_and_names() {
    let t = chrono::DateTime::parse_from_rfc3339("2026-11-22T00:15:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    assert_eq!(
        runner::run::run_id(t, "1a2b3c4d5e6f"),
        "20261122T001500000Z-1a2b3c4d"
    );
    assert_eq!(
        runner::run::safe_name("polychromic@lambda=1.0,seed=2"),
        "polychromic@lambda=1.0,seed=2"
    );
    assert_eq!(runner::run::safe_name("a/b c"), "a_b_c");
    assert_eq!(runner::run::safe_name(".."), "unnamed");
    let dir = tempfile::tempdir().unwrap();
    let a = RunDir::create(dir.path(), "x", "1a2b3c4d", t).unwrap();
    let b = RunDir::create(dir.path(), "x", "1a2b3c4d", t).unwrap();
    assert_eq!(a.id(), "20261122T001500000Z-1a2b3c4d");
    assert_eq!(b.id(), "20261122T001500000Z-1a2b3c4d-2");
}

// ------------------------------------------------------------------------------------------
// The executor, with fake stages.

/// A fake stage: records the instance ids it ran, and fails once on `fail_on`.
struct Fake {
    log: Arc<Mutex<Vec<String>>>,
    fail_on: Mutex<Option<String>>,
}

impl Stage for Fake {
    fn run(&self, ctx: &mut StageContext<'_>) -> runner::Result<StageOutput> {
        let id = ctx.instance.id.clone();
        let mut fail_on = self.fail_on.lock().unwrap();
        if fail_on.as_deref() == Some(id.as_str()) {
            *fail_on = None;
            return Err(runner::Error::Other(format!("injected failure in {id}")));
        }
        // A stage writes its artifacts under its own folder, atomically.
        let dir = ctx.run_dir.stage_dir(&id)?;
        atomic::write_text(&dir.join("out.txt"), &id)?;
        let counter = ctx.resources.get_mut::<usize>("calls").map(|c| {
            *c += 1;
            *c
        });
        if counter.is_none() {
            ctx.resources.insert("calls", 1usize);
        }
        drop(fail_on);
        ctx.events
            .emit(Some(&id), "metric", serde_json::json!({ "x": 1 }))?;
        self.log.lock().unwrap().push(id.clone());
        Ok(StageOutput {
            outputs: serde_json::json!({ "artifact": format!("stages/{id}/out.txt") }),
        })
    }
}

fn fake_registry(fail_on: Option<&str>) -> (Registry, Arc<Mutex<Vec<String>>>) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let stage = Arc::new(Fake {
        log: log.clone(),
        fail_on: Mutex::new(fail_on.map(str::to_string)),
    });
    let mut reg = Registry::empty();
    for k in StageKind::ALL {
        reg.register(k, stage.clone());
    }
    (reg, log)
}

fn small_spec() -> Experiment {
    let mut spec = Experiment {
        name: "fake".into(),
        ..Experiment::default()
    };
    spec.train.max_steps = Some(3);
    spec.eval.every = Some(2);
    spec
}

fn prepared(spec: &Experiment) -> Prepared {
    let hash = spec_hash(spec);
    let plan = plan::compile(spec, &hash, PlanSource::default()).unwrap();
    Prepared {
        spec: spec.clone(),
        spec_hash: hash,
        spec_text: "name: fake\n".into(),
        plan,
        warnings: Vec::new(),
    }
}

fn request(runs: &Path) -> ApplyRequest {
    ApplyRequest {
        runs_dir: runs.to_path_buf(),
        ..ApplyRequest::default()
    }
}

const ORDER: [&str; 14] = [
    "step-0000/generate",
    "step-0000/score",
    "step-0000/rank",
    "step-0000/train",
    "step-0001/generate",
    "step-0001/score",
    "step-0001/rank",
    "step-0001/train",
    "step-0001/eval",
    "step-0002/generate",
    "step-0002/score",
    "step-0002/rank",
    "step-0002/train",
    "step-0002/eval",
];

#[test]
fn apply_runs_instances_in_plan_order_and_writes_the_run_dir() {
    let runs = tempfile::tempdir().unwrap();
    let spec = small_spec();
    let (reg, log) = fake_registry(None);
    let report = start(&request(runs.path()), prepared(&spec), &reg).unwrap();
    assert_eq!(*log.lock().unwrap(), ORDER);
    assert_eq!(report.summary.executed, 14);
    assert_eq!(report.summary.total, 14);
    let dir = &report.run_dir;
    assert_eq!(dir.parent().unwrap(), runs.path().join("fake"));
    let files = files_in(dir);
    for f in [
        "events.jsonl",
        "plan.json",
        "runner.lock",
        "spec.resolved.yaml",
        "spec.yaml",
        "stages",
        "state.json",
    ] {
        assert!(files.contains(&f.to_string()), "{f} missing from {files:?}");
    }
    assert!(!files.iter().any(|f| f.starts_with(".tmp")), "{files:?}");
    let state = RunState::load(&dir.join("state.json")).unwrap();
    assert_eq!(state.completed.len(), 14);
    assert_eq!(state.spec_hash, spec_hash(&spec));
    assert_eq!(
        state.record("step-0001/eval").unwrap().outputs["artifact"],
        "stages/step-0001/eval/out.txt"
    );
    let resolved: Experiment =
        serde_yaml::from_str(&std::fs::read_to_string(dir.join("spec.resolved.yaml")).unwrap())
            .unwrap();
    assert_eq!(resolved, spec);
    let events = read_events(&dir.join("events.jsonl")).unwrap();
    assert_eq!(events.first().unwrap().kind, "run_started");
    assert_eq!(events.last().unwrap().kind, "run_finished");
    assert_eq!(
        events.iter().filter(|e| e.kind == "stage_finished").count(),
        14
    );
}

#[test]
fn resume_skips_completed_instances_and_retries_the_failed_one() {
    let runs = tempfile::tempdir().unwrap();
    let spec = small_spec();
    let (reg, log) = fake_registry(Some("step-0001/rank"));
    let err = start(&request(runs.path()), prepared(&spec), &reg)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("stage step-0001/rank failed: injected failure"),
        "{err}"
    );
    assert_eq!(log.lock().unwrap().len(), 6);
    let run_dir = std::fs::read_dir(runs.path().join("fake"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let state = RunState::load(&run_dir.join("state.json")).unwrap();
    assert_eq!(state.completed.len(), 6);
    assert_eq!(state.last_error.as_ref().unwrap().id, "step-0001/rank");
    let events = read_events(&run_dir.join("events.jsonl")).unwrap();
    assert_eq!(events.last().unwrap().kind, "stage_failed");

    // Resume with the same registry (its failure is spent): only the rest runs.
    let req = ApplyRequest {
        resume: Some(run_dir.clone()),
        ..request(runs.path())
    };
    let report = apply(&req, &reg).unwrap();
    assert!(report.resumed);
    assert_eq!(report.summary.skipped, 6);
    assert_eq!(report.summary.executed, 8);
    assert_eq!(*log.lock().unwrap(), ORDER);
    let state = RunState::load(&run_dir.join("state.json")).unwrap();
    assert_eq!(state.completed.len(), 14);
    assert!(state.last_error.is_none());

    // Resuming a finished run runs nothing.
    let report = apply(&req, &reg).unwrap();
    assert_eq!((report.summary.executed, report.summary.skipped), (0, 14));
}

#[test]
fn resume_refuses_a_changed_spec_and_a_held_lock() {
    let runs = tempfile::tempdir().unwrap();
    let spec = small_spec();
    let (reg, _) = fake_registry(None);
    let report = start(&request(runs.path()), prepared(&spec), &reg).unwrap();
    let dir = report.run_dir;
    let req = ApplyRequest {
        resume: Some(dir.clone()),
        ..request(runs.path())
    };

    let held = RunLock::acquire(&dir).unwrap();
    let err = apply(&req, &reg).unwrap_err().to_string();
    assert!(
        err.contains(&format!("is locked by PID {}", std::process::id())),
        "{err}"
    );
    drop(held);

    // A spec file given with --resume must resolve to the run's spec.
    let other = runs.path().join("other.yaml");
    std::fs::write(
        &other,
        "name: fake\nrewards:\n  q:\n    kind: quality\ntrain:\n  max_steps: 4\n",
    )
    .unwrap();
    let req_other = ApplyRequest {
        input: Some(other),
        use_env: false,
        ..req.clone()
    };
    let err = apply(&req_other, &reg).unwrap_err().to_string();
    assert!(err.contains("resolves to a different spec"), "{err}");

    // An edited spec.resolved.yaml no longer matches the hash the run started with.
    let mut edited = spec.clone();
    edited.train.learning_rate = 5e-6;
    std::fs::write(
        dir.join("spec.resolved.yaml"),
        serde_yaml::to_string(&edited).unwrap(),
    )
    .unwrap();
    let err = apply(&req, &reg).unwrap_err().to_string();
    assert!(
        err.contains("cannot resume") && err.contains("not the spec the run started with"),
        "{err}"
    );
}

#[test]
fn unimplemented_stage_kinds_stop_apply_before_anything_exists() {
    let runs = tempfile::tempdir().unwrap();
    let spec = small_spec();
    let err = start(&request(runs.path()), prepared(&spec), &Registry::empty())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(
            "cannot apply: stage kinds not implemented yet: generate, score, rank, train, eval"
        ),
        "{err}"
    );
    assert!(
        files_in(runs.path()).is_empty(),
        "no run directory is created"
    );

    // Partially implemented: only the missing kinds are named.
    let (full, _) = fake_registry(None);
    let mut partial = Registry::empty();
    partial.register(StageKind::Generate, full.get(StageKind::Generate).unwrap());
    let err = start(&request(runs.path()), prepared(&spec), &partial)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("not implemented yet: score, rank, train, eval"),
        "{err}"
    );
    // The built-in registry implements every kind.
    for kind in StageKind::ALL {
        assert!(runner::stages::implemented(kind), "{kind}");
    }
}

#[test]
fn resources_are_shared_between_instances() {
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    struct Count;
    impl Stage for Count {
        fn run(&self, ctx: &mut StageContext<'_>) -> runner::Result<StageOutput> {
            let n = match ctx.resources.get_mut::<usize>("n") {
                Some(n) => {
                    *n += 1;
                    *n
                }
                None => {
                    ctx.resources.insert("n", 1usize);
                    1
                }
            };
            CALLS.store(n, Ordering::SeqCst);
            Ok(StageOutput::default())
        }
    }
    let runs = tempfile::tempdir().unwrap();
    let mut reg = Registry::empty();
    for k in StageKind::ALL {
        reg.register(k, Arc::new(Count));
    }
    start(&request(runs.path()), prepared(&small_spec()), &reg).unwrap();
    assert_eq!(CALLS.load(Ordering::SeqCst), 14);
}
