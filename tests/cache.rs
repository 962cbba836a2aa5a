//! Stage caching on a tiny model: an unchanged re-apply does nothing, a changed reward weight
//! reuses the generation of the unchanged policy and re-runs scoring and what follows,
//! `--force` re-runs, `runner plan` shows cached / to run with the reason, a changed eval reuses
//! training through its snapshots (with the same results as a fresh run), and state files from
//! before caching still load.

mod common;

use std::path::{Path, PathBuf};

use runner::run::apply::prepare_spec;
use runner::run::cache::{CachePlan, Decision};
use runner::run::{ApplyReport, ApplyRequest, RunState};
use runner::stages::{Registry, StageKind};

struct Setup {
    _dir: tempfile::TempDir,
    root: PathBuf,
    spec: PathBuf,
    runs: PathBuf,
}

fn setup(checkpoint_every: bool) -> Setup {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().to_path_buf();
    let m = common::tiny_model_dir(&root, 7);
    let train = root.join("train.jsonl");
    let eval = root.join("eval.jsonl");
    std::fs::write(&train, common::arithmetic_rows("t", 4)).unwrap();
    std::fs::write(&eval, common::arithmetic_rows("e", 2)).unwrap();
    let ck = if checkpoint_every {
        ", checkpoint: {every: 1}"
    } else {
        ""
    };
    let spec = common::tiny_spec(
        &m,
        &train,
        Some(&eval),
        &format!(
            "generate: {{max_completion_length: 6}}\n\
             train: {{learning_rate: 1.0e-2{ck}}}\n\
             eval: {{metrics: [mean_reward, completion_length]}}"
        ),
    );
    let spec_path = root.join("tiny.yaml");
    std::fs::write(&spec_path, spec).unwrap();
    Setup {
        runs: root.join("runs"),
        spec: spec_path,
        root,
        _dir: d,
    }
}

/// 2 steps × (generate, score, rank, train, eval).
const INSTANCES: usize = 10;

fn apply(s: &Setup, sets: &[&str], force: &[StageKind]) -> ApplyReport {
    apply_in(s, &s.runs, sets, force)
}

fn apply_in(s: &Setup, runs: &Path, sets: &[&str], force: &[StageKind]) -> ApplyReport {
    let req = ApplyRequest {
        input: Some(s.spec.clone()),
        sets: sets.iter().map(|x| x.to_string()).collect(),
        runs_dir: runs.to_path_buf(),
        force: force.to_vec(),
        ..ApplyRequest::default()
    };
    runner::run::apply(&req, &Registry::builtin()).unwrap()
}

fn decide(s: &Setup, sets: &[&str], force: &[StageKind]) -> CachePlan {
    let sets: Vec<String> = sets.iter().map(|x| x.to_string()).collect();
    let p = prepare_spec(&s.spec, &sets, false).unwrap();
    CachePlan::decide(
        &s.runs,
        &p.plan.run_name,
        &p.spec,
        &p.plan,
        None,
        force,
        None,
        &Default::default(),
    )
    .unwrap()
}

fn state(run: &Path) -> RunState {
    RunState::load(&run.join("state.json")).unwrap()
}

fn run_dirs(s: &Setup) -> usize {
    std::fs::read_dir(s.runs.join("tiny")).unwrap().count()
}

fn from_run(st: &RunState, id: &str) -> Option<String> {
    st.cache_record(id)
        .unwrap_or_else(|| panic!("{id} has no cache record"))
        .from_run
        .clone()
}

fn file(run: &Path, rel: &str) -> Vec<u8> {
    std::fs::read(run.join(rel)).unwrap()
}

#[test]
fn unchanged_reapply_does_nothing() {
    let s = setup(false);
    let first = apply(&s, &[], &[]);
    assert_eq!(first.summary.executed, INSTANCES);
    assert!(!first.summary.up_to_date);
    let st = state(&first.run_dir);
    for r in &st.completed {
        let c = st.cache_record(&r.id).expect("every instance has a key");
        assert_eq!(c.key.len(), 64);
        assert!(c.from_run.is_none());
    }
    assert!(st
        .cache_record("step-0001/train")
        .unwrap()
        .trainer
        .is_some());
    let again = apply(&s, &[], &[]);
    assert!(again.summary.up_to_date);
    assert_eq!(again.summary.executed, 0);
    assert_eq!(again.summary.cached, INSTANCES);
    assert_eq!(again.run_dir, first.run_dir);
    assert_eq!(run_dirs(&s), 1, "no run directory is created");
}

#[test]
fn changed_reward_weight_rescores_without_regenerating() {
    let s = setup(false);
    let a = apply(&s, &[], &[]);
    let a_id = state(&a.run_dir).run_id;
    let set = ["rewards.correct.weight=0.25"];

    // What `runner plan` shows.
    let plan = decide(&s, &set, &[]);
    let status = |id: &str| match &plan.entry(id).unwrap().decision {
        Decision::Hit(h) => format!("cached {}", h.found.run_id),
        Decision::Run(why) => format!("run {why}"),
        Decision::Done => "done".into(),
    };
    assert_eq!(status("step-0000/generate"), format!("cached {a_id}"));
    assert_eq!(
        status("step-0000/score"),
        "run rewards.correct.weight changed (0.5 → 0.25)"
    );
    assert_eq!(
        status("step-0000/rank"),
        "run input step-0000/score re-runs"
    );
    assert_eq!(
        status("step-0000/train"),
        "run input step-0000/score re-runs"
    );
    assert_eq!(
        status("step-0001/generate"),
        "run input step-0000/train re-runs"
    );
    let text = runner::plan::render::render_cache(&plan.view());
    assert!(
        text.contains(&format!("generate     1 × cached (run {a_id})")),
        "{text}"
    );
    assert!(text.contains("1 cached, 9 to run"), "{text}");

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_runner"))
        .args(["plan", "--no-env", "--runs-dir"])
        .arg(&s.runs)
        .arg(&s.spec)
        .args(["--set", set[0]])
        .current_dir(&s.root)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("to run (rewards.correct.weight changed (0.5 → 0.25))"),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("cached (run {a_id})")), "{stdout}");

    // The apply itself.
    let b = apply(&s, &set, &[]);
    assert_ne!(b.run_dir, a.run_dir);
    assert_eq!(b.summary.cached, 1);
    assert_eq!(b.summary.executed, INSTANCES - 1);
    let sb = state(&b.run_dir);
    assert_eq!(from_run(&sb, "step-0000/generate"), Some(a_id));
    for id in ["step-0000/score", "step-0000/train", "step-0001/generate"] {
        assert_eq!(from_run(&sb, id), None, "{id} ran");
    }
    let rel = "stages/step-0000_generate/rollouts.jsonl";
    assert_eq!(file(&a.run_dir, rel), file(&b.run_dir, rel));
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let ino = |r: &Path| std::fs::metadata(r.join(rel)).unwrap().ino();
        assert_eq!(
            ino(&a.run_dir),
            ino(&b.run_dir),
            "hard-linked, not re-sampled"
        );
    }
    // Scoring used the new weight.
    let scored = |r: &Path| -> Vec<serde_json::Value> {
        String::from_utf8(file(r, "stages/step-0000_score/scored.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    for row in scored(&b.run_dir) {
        let f = row["rewards"]["format"].as_f64().unwrap();
        let c = row["rewards"]["correct"].as_f64().unwrap();
        let total = row["reward"].as_f64().unwrap();
        assert!((total - (f + 0.25 * c)).abs() < 1e-9, "{row}");
    }
    // And the run after it is up to date.
    let again = apply(&s, &set, &[]);
    assert!(again.summary.up_to_date);
    assert_eq!(again.run_dir, b.run_dir);
}

#[test]
fn force_generate_reruns_everything() {
    let s = setup(false);
    let a = apply(&s, &[], &[]);
    let plan = decide(&s, &[], &[StageKind::Generate]);
    match &plan.entry("step-0000/generate").unwrap().decision {
        Decision::Run(why) => assert_eq!(why, "forced"),
        other => panic!("{other:?}"),
    }
    match &plan.entry("step-0000/score").unwrap().decision {
        Decision::Run(why) => assert_eq!(why, "input step-0000/generate re-runs"),
        other => panic!("{other:?}"),
    }
    let b = apply(&s, &[], &[StageKind::Generate]);
    assert_ne!(b.run_dir, a.run_dir);
    assert_eq!(b.summary.cached, 0);
    assert_eq!(b.summary.executed, INSTANCES);
    // The same seed and policy sample the same rollouts again.
    let rel = "stages/step-0000_generate/rollouts.jsonl";
    assert_eq!(file(&a.run_dir, rel), file(&b.run_dir, rel));
}

#[test]
fn changed_eval_reuses_training_from_snapshots_exactly() {
    let s = setup(true);
    let a = apply(&s, &[], &[]);
    let set = ["eval.num_generations=3"];
    let b = apply(&s, &set, &[]);
    // Generate, score, rank and train of both steps are reused; the evals run on the trainer
    // state installed from run A's snapshots.
    assert_eq!(b.summary.cached, 8);
    assert_eq!(b.summary.executed, 2);
    // The same spec from scratch gives the same evals.
    let c = apply_in(&s, &s.root.join("fresh"), &set, &[]);
    assert_eq!(c.summary.executed, INSTANCES);
    for e in ["step-0000_eval", "step-0001_eval"] {
        let rel = format!("stages/{e}/eval_completions.jsonl");
        assert_eq!(
            file(&b.run_dir, &rel),
            file(&c.run_dir, &rel),
            "{e}: cached training gives the evals of a fresh run"
        );
    }
    // The run is complete: metrics.csv rows, the final trainer state and snapshots.
    let csv = String::from_utf8(file(&b.run_dir, "metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 3, "{csv}");
    // The carried rows equal the original run's: every value as written, except the float
    // formatting of wall-time throughput, which may differ in its last digit (1e-12 relative).
    let a_csv = String::from_utf8(file(&a.run_dir, "metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), a_csv.lines().count());
    for (lb, la) in csv.lines().zip(a_csv.lines()) {
        for (vb, va) in lb.split(',').zip(la.split(',')) {
            if vb != va {
                let (x, y): (f64, f64) = (vb.parse().unwrap(), va.parse().unwrap());
                assert!((x - y).abs() <= 1e-12 * y.abs(), "{lb}\n{la}");
            }
        }
    }
    let weights = "trainer/adapter_model.safetensors";
    assert_eq!(file(&b.run_dir, weights), file(&c.run_dir, weights));
    assert!(b.run_dir.join("checkpoints/checkpoint-2").is_dir());
    assert!(b.run_dir.join("checkpoints/final").is_dir());
}

#[test]
fn train_hit_whose_state_is_gone_reruns() {
    let s = setup(false);
    let a = apply(&s, &[], &[]);
    // Without snapshots, the state after step 0 is kept nowhere.
    let ck = a.run_dir.join("checkpoints");
    if ck.exists() {
        std::fs::remove_dir_all(&ck).unwrap();
    }
    let plan = decide(&s, &["eval.num_generations=3"], &[]);
    match &plan.entry("step-0000/train").unwrap().decision {
        Decision::Run(why) => assert!(why.contains("not kept"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        plan.entry("step-0000/rank").unwrap().decision,
        Decision::Hit(_)
    ));
    // The last training's state is run A's trainer/: step 1 generate.. train stay cached only
    // if their inputs do; they read step-0000/train, which re-runs.
    match &plan.entry("step-0001/generate").unwrap().decision {
        Decision::Run(why) => assert_eq!(why, "input step-0000/train re-runs"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn state_without_cache_keys_loads_and_misses() {
    let s = setup(false);
    let dir = s.runs.join("tiny").join("20250101T000000Z-abcdef12");
    std::fs::create_dir_all(&dir).unwrap();
    let old = r#"{
  "schema_version": 1,
  "run_id": "20250101T000000Z-abcdef12",
  "spec_hash": "abc",
  "created_at": "2025-01-01T00:00:00Z",
  "updated_at": "2025-01-01T00:00:00Z",
  "completed": [
    {"id": "step-0000/generate", "kind": "generate",
     "started_at": "2025-01-01T00:00:00Z", "finished_at": "2025-01-01T00:00:01Z",
     "outputs": {"rollouts": "stages/step-0000_generate/rollouts.jsonl"}}
  ]
}"#;
    std::fs::write(dir.join("state.json"), old).unwrap();
    let st = state(&dir);
    assert!(st.cache_record("step-0000/generate").is_none());
    assert!(st.is_completed("step-0000/generate"));
    let plan = decide(&s, &[], &[]);
    match &plan.entry("step-0000/generate").unwrap().decision {
        Decision::Run(why) => {
            assert_eq!(why, "earlier runs have no cache keys (made before caching)")
        }
        other => panic!("{other:?}"),
    }
    match &plan.entry("step-0000/score").unwrap().decision {
        Decision::Run(why) => assert_eq!(why, "input step-0000/generate re-runs"),
        other => panic!("{other:?}"),
    }
    // Saved again, it keeps loading.
    let mut st = st;
    st.save(&dir.join("state.json")).unwrap();
    assert_eq!(state(&dir).completed.len(), 1);
}

/// The daily loop: three dates, each with headlines and outcomes.
fn daily_setup() -> Setup {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().to_path_buf();
    let m = common::tiny_model_dir(&root, 7);
    std::fs::create_dir_all(root.join("headlines")).unwrap();
    std::fs::create_dir_all(root.join("outcomes")).unwrap();
    for (k, date) in ["20250801", "20250802", "20250803"].iter().enumerate() {
        let mut h = String::new();
        let mut o = String::new();
        for i in 0..2 {
            h.push_str(&format!(
                "{{\"id\": \"{date}-{i}\", \"ticker\": \"T{i}\", \"text\": \"stock {i} up {k}\"}}\n"
            ));
            o.push_str(&format!(
                "{{\"date\": \"{date}\", \"ticker\": \"T{i}\", \"move_pct\": {}.5}}\n",
                i + k
            ));
        }
        std::fs::write(root.join(format!("headlines/{date}.jsonl")), h).unwrap();
        std::fs::write(root.join(format!("outcomes/{date}.jsonl")), o).unwrap();
    }
    let spec = format!(
        r#"
name: daily
seed: 5
model:
  base: {model}
  adapter: {{r: 4, lora_alpha: 8, lora_dropout: 0.0, target_modules: [q_proj, v_proj]}}
data:
  train:
    path: {d}/headlines/{{date}}.jsonl
    fields: {{prompt: text, id: id}}
  outcomes:
    path: {d}/outcomes/{{date}}.jsonl
    join_on: ticker
    value: move_pct
  prompt:
    template: "{{{{ text }}}} move:"
generate:
  num_generations: 2
  max_completion_length: 6
  temperature: 1.0
rewards:
  valid: {{kind: format, weight: 1.0, regex: '[0-9]'}}
  think: {{kind: keywords, weight: 0.5, groups: [[up, down]]}}
train:
  learning_rate: 1.0e-3
  lr_scheduler_type: constant
  batch_size: 2
  num_train_epochs: 1
schedule:
  mode: partitions
  partitions: {{from: "20250801", to: "20250803"}}
"#,
        model = m.display(),
        d = root.display(),
    );
    let spec_path = root.join("daily.yaml");
    std::fs::write(&spec_path, spec).unwrap();
    Setup {
        runs: root.join("runs"),
        spec: spec_path,
        root,
        _dir: d,
    }
}

#[test]
fn daily_loop_changed_reward_weight_keeps_generation_before_training() {
    let s = daily_setup();
    let a = apply(&s, &[], &[]);
    assert!(a.summary.executed > 0);
    let a_id = state(&a.run_dir).run_id;
    let again = apply(&s, &[], &[]);
    assert!(again.summary.up_to_date);
    assert_eq!(again.run_dir, a.run_dir);

    let set = ["rewards.think.weight=0.25"];
    let plan = decide(&s, &set, &[]);
    let status = |id: &str| match &plan.entry(id).unwrap().decision {
        Decision::Hit(h) => format!("cached {}", h.found.run_id),
        Decision::Run(why) => format!("run {why}"),
        Decision::Done => "done".into(),
    };
    // No training happened before the generations of 0801 and 0802: the same policy.
    assert_eq!(status("20250801/generate"), format!("cached {a_id}"));
    assert_eq!(status("20250802/generate"), format!("cached {a_id}"));
    assert_eq!(
        status("20250802/score"),
        "run rewards.think.weight changed (0.5 → 0.25)"
    );
    // 0803 samples from the model trained on 0802's (re-scored) predictions.
    assert_eq!(
        status("20250803/generate"),
        "run input 20250802/train re-runs"
    );
    let b = apply(&s, &set, &[]);
    assert_eq!(b.summary.cached, 2);
    let sb = state(&b.run_dir);
    assert_eq!(from_run(&sb, "20250802/generate"), Some(a_id));
    assert_eq!(from_run(&sb, "20250802/score"), None);
    let rel = "stages/20250802_generate/rollouts.jsonl";
    assert_eq!(file(&a.run_dir, rel), file(&b.run_dir, rel));
    // The cached partition's summary figures are carried over.
    let rows = runner::run::summary::read_summaries(&b.run_dir).unwrap();
    let row = |d: &str| rows.iter().find(|r| r.date == d).unwrap().clone();
    let rows_a = runner::run::summary::read_summaries(&a.run_dir).unwrap();
    let row_a = rows_a.iter().find(|r| r.date == "20250801").unwrap();
    assert_eq!(row("20250801").rollouts, 4);
    assert_eq!(row("20250801").status, row_a.status);
    assert_eq!(row("20250801").sampler, row_a.sampler);
    assert_eq!(row("20250802").status, "done");
}

/// The built-in generate stage, failing at one instance (an interruption mid-run).
struct FailAt {
    inner: std::sync::Arc<dyn runner::stages::Stage>,
    id: &'static str,
}

impl runner::stages::Stage for FailAt {
    fn run(
        &self,
        ctx: &mut runner::stages::StageContext<'_>,
    ) -> runner::Result<runner::stages::StageOutput> {
        if ctx.instance.id == self.id {
            return Err(runner::Error::Run("injected interruption".into()));
        }
        self.inner.run(ctx)
    }
}

/// A run of the tiny spec (generation forced, so it is not up to date) stopped at
/// step-0001/generate: step 0 is completed, step 1 is left.
fn interrupted(s: &Setup) -> PathBuf {
    let mut reg = Registry::builtin();
    let inner = reg.get(StageKind::Generate).unwrap();
    reg.register(
        StageKind::Generate,
        std::sync::Arc::new(FailAt {
            inner,
            id: "step-0001/generate",
        }),
    );
    let req = ApplyRequest {
        input: Some(s.spec.clone()),
        runs_dir: s.runs.clone(),
        force: vec![StageKind::Generate],
        ..ApplyRequest::default()
    };
    let err = runner::run::apply(&req, &reg).unwrap_err();
    assert!(err.to_string().contains("injected interruption"), "{err}");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(s.runs.join("tiny"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| state(p).last_error.is_some())
        .collect();
    assert_eq!(dirs.len(), 1);
    dirs.pop().unwrap()
}

fn resume_with(run: &Path, force: &[StageKind]) -> runner::Result<ApplyReport> {
    let req = ApplyRequest {
        resume: Some(run.to_path_buf()),
        force: force.to_vec(),
        ..ApplyRequest::default()
    };
    runner::run::apply(&req, &Registry::builtin())
}

#[test]
fn force_with_resume_reruns_what_is_left_and_refuses_when_nothing_is() {
    let s = setup(true);
    let a = apply(&s, &[], &[]);
    assert_eq!(a.summary.executed, INSTANCES);

    // Without --force, a resume copies the rest from run A (the cache).
    let b = interrupted(&s);
    let rb = resume_with(&b, &[]).unwrap();
    assert_eq!(rb.summary.skipped, INSTANCES / 2);
    assert_eq!(rb.summary.cached, INSTANCES / 2);
    assert_eq!(rb.summary.executed, 0);

    // With --force generate, step 1's generate runs, and what reads it; step 0 stays.
    let c = interrupted(&s);
    let rc = resume_with(&c, &[StageKind::Generate]).unwrap();
    assert_eq!(rc.summary.skipped, INSTANCES / 2);
    assert_eq!(rc.summary.cached, 0);
    assert_eq!(rc.summary.executed, INSTANCES / 2);
    assert!(
        rc.warnings
            .iter()
            .any(|w| w.contains("--force generate with --resume")
                && w.contains("step-0000/generate")),
        "{:?}",
        rc.warnings
    );
    let sc = state(&c);
    assert_eq!(from_run(&sc, "step-0001/generate"), None);
    // The same seed and policy sample the same rollouts as run A.
    let rel = "stages/step-0001_generate/rollouts.jsonl";
    assert_eq!(file(&a.run_dir, rel), file(&c, rel));

    // Every generate of a finished run is completed: --force would do nothing, so it is refused.
    let err = resume_with(&c, &[StageKind::Generate]).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("would do nothing"), "{msg}");
    assert!(msg.contains("runner apply SPEC --force generate"), "{msg}");
}

#[test]
fn plan_shows_each_partition_cached_or_to_run() {
    let s = daily_setup();
    let a = apply(&s, &[], &[]);
    let a_id = state(&a.run_dir).run_id;
    let set = ["rewards.think.weight=0.25"];
    let p = prepare_spec(&s.spec, &set.map(String::from), false).unwrap();
    let view = decide(&s, &set, &[]).view();
    let text = runner::plan::render::render_partitions(&p.plan, &view);
    eprintln!("{text}");
    let block = |date: &str| -> String {
        let start = text.find(&format!("  {date}  ")).unwrap();
        let rest = &text[start + 2..];
        let end = rest.find("\n  2").map_or(rest.len(), |e| e + 1);
        rest[..end].to_string()
    };
    // 0801: generation only (nothing before it to score), from run A.
    let d1 = block("20250801");
    assert!(
        d1.starts_with("20250801  1 cached, 0 to run, 0 done"),
        "{d1}"
    );
    assert!(
        d1.contains(&format!("generate  cached (run {a_id})")),
        "{d1}"
    );
    // 0802: the same generation; its scoring of 0801 re-runs for the changed weight.
    let d2 = block("20250802");
    assert!(
        d2.starts_with("20250802  1 cached, 4 to run, 0 done"),
        "{d2}"
    );
    assert!(
        d2.contains("scores the predictions of 20250801 against the outcomes of 20250802"),
        "{d2}"
    );
    assert!(
        d2.contains("score     to run (rewards.think.weight changed (0.5 → 0.25))"),
        "{d2}"
    );
    // 0803 generates from the model trained on the re-scored 0802.
    let d3 = block("20250803");
    assert!(
        d3.contains("generate  to run (input 20250802/train re-runs)"),
        "{d3}"
    );
    assert!(
        text.contains("pending: the predictions of 20250803 wait for the outcomes of 20250804"),
        "{text}"
    );
    // A steps-mode plan has no per-partition view.
    let steps = setup(false);
    let sp = prepare_spec(&steps.spec, &[], false).unwrap();
    assert_eq!(
        runner::plan::render::render_partitions(&sp.plan, &decide(&steps, &[], &[]).view()),
        ""
    );
}
