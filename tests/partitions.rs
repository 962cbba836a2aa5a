//! The daily loop (`schedule.mode: partitions`) through `runner::run::apply` on a tiny random
//! model: a backfill with a missing day, the daily update (`--partition next`) continuing from
//! the last model, an override, a backfill interrupted between partitions and resumed, the
//! per-date snapshots and the per-partition summary.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use runner::plan::partitions::Lineage;
use runner::run::apply::PartitionOptions;
use runner::run::summary::{read_summaries, PartitionSummary};
use runner::run::{ApplyReport, ApplyRequest, RunState};
use runner::stages::{Registry, Stage, StageContext, StageKind, StageOutput};

fn tiny_model(dir: &Path) -> PathBuf {
    common::tiny_model_dir(dir, 7)
}

/// Headlines for 0801, 0802, 0804, 0805 (0803 is a missing day), two a day, with outcomes.
fn write_data(dir: &Path) {
    std::fs::create_dir_all(dir.join("headlines")).unwrap();
    std::fs::create_dir_all(dir.join("outcomes")).unwrap();
    for (k, date) in ["20250801", "20250802", "20250804", "20250805"]
        .iter()
        .enumerate()
    {
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
        std::fs::write(dir.join(format!("headlines/{date}.jsonl")), h).unwrap();
        std::fs::write(dir.join(format!("outcomes/{date}.jsonl")), o).unwrap();
    }
}

fn write_spec(dir: &Path, model: &Path) -> PathBuf {
    let text = format!(
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
  profiles: {{tight: {{temperature: 0.7}}, default: {{}}}}
  profile: tight
  auto_profile:
    from: tight
    to: default
    when: [{{metric: validity, op: ge, value: 0.0}}]
  retries: 1
  retry_on: valid
rewards:
  valid: {{kind: format, weight: 1.0, regex: '[0-9]'}}
  think: {{kind: keywords, weight: 0.5, groups: [[up, down]]}}
train:
  learning_rate: 1.0e-3
  lr_scheduler_type: constant
  batch_size: 2
  num_train_epochs: 1
eval:
  sets: [train]
  num_generations: 1
  max_examples: 1
  metrics: [mean_reward]
schedule:
  mode: partitions
  run_suffix: T
  partitions: {{from: "20250801", to: "20250805", backfill: true}}
"#,
        model = model.display(),
        d = dir.display(),
    );
    let p = dir.join("daily.yaml");
    std::fs::write(&p, text).unwrap();
    p
}

struct Setup {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    spec: PathBuf,
}

fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let model = tiny_model(&dir);
    write_data(&dir);
    let spec = write_spec(&dir, &model);
    Setup {
        _tmp: tmp,
        dir,
        spec,
    }
}

fn request(s: &Setup, runs: &str, opts: PartitionOptions) -> ApplyRequest {
    ApplyRequest {
        input: Some(s.spec.clone()),
        runs_dir: s.dir.join(runs),
        partition: opts,
        ..ApplyRequest::default()
    }
}

fn range(from: &str, to: &str) -> PartitionOptions {
    PartitionOptions {
        from: Some(from.into()),
        to: Some(to.into()),
        ..PartitionOptions::default()
    }
}

fn row<'a>(rows: &'a [PartitionSummary], date: &str) -> &'a PartitionSummary {
    rows.iter()
        .find(|r| r.date == date)
        .unwrap_or_else(|| panic!("no summary row {date} in {rows:?}"))
}

fn metric_steps(run: &Path) -> Vec<String> {
    std::fs::read_to_string(run.join("metrics.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().to_string())
        .collect()
}

/// The backfill 0801..0804: 0803 has no headlines (skipped, reported), 0802's predictions
/// are scored with the next date that has outcomes (0804), 0804's wait for 0805.
fn check_backfill(report: &ApplyReport) {
    let run = &report.run_dir;
    assert_eq!(report.skipped_partitions, vec!["20250803".to_string()]);
    assert_eq!(
        report.pending,
        vec!["20250804 (outcomes of 20250805)".to_string()]
    );
    let rows = read_summaries(run).unwrap();
    assert_eq!(rows.len(), 4, "{rows:?}");
    let r1 = row(&rows, "20250801");
    assert_eq!(
        (r1.status.as_str(), r1.headlines, r1.rollouts),
        ("done", 2, 4)
    );
    assert_eq!(r1.training_steps, 0);
    assert_eq!(r1.sampler.as_deref(), Some("tight"));
    let r2 = row(&rows, "20250802");
    assert_eq!(r2.status, "done");
    assert_eq!(r2.scored_pairs, vec!["20250801×20250802".to_string()]);
    assert_eq!(r2.training_steps, 1, "2 groups at batch 2 = one step");
    assert_eq!(
        r2.sampler.as_deref(),
        Some("tight"),
        "nothing scored before 0802"
    );
    assert!(r2.validity.is_some() && r2.composite_reward.is_some());
    assert!(r2.trade_thinking.is_some() && r2.mean_words.is_some());
    assert!(
        r2.paragraph_quality.is_none(),
        "no quality reward in the spec"
    );
    assert!(r2.avg_reward.is_some());
    let r3 = row(&rows, "20250803");
    assert!(
        r3.status.starts_with("skipped: no prompt file"),
        "{}",
        r3.status
    );
    assert_eq!(r3.training_steps, 0);
    let r4 = row(&rows, "20250804");
    assert_eq!(r4.status, "done");
    assert_eq!(r4.scored_pairs, vec!["20250802×20250804".to_string()]);
    assert_eq!(
        r4.sampler.as_deref(),
        Some("default"),
        "auto profile after 0802"
    );
    assert_eq!(r4.training_steps, 1);
    // summary.csv mirrors summary.json
    let csv = std::fs::read_to_string(run.join("summary.csv")).unwrap();
    assert_eq!(csv.lines().count(), 5);
    assert!(csv
        .lines()
        .nth(3)
        .unwrap()
        .starts_with("20250803,skipped: no prompt file"));
    // snapshots
    let ck = run.join("checkpoints");
    for name in [
        "final_model_20250802",
        "final_model_20250804",
        "final_model",
    ] {
        assert!(
            ck.join(name).join("training_state.json").is_file(),
            "{name} missing"
        );
    }
    assert!(
        !ck.join("final_model_20250801").exists(),
        "0801 trained nothing"
    );
    assert_eq!(metric_steps(run), vec!["1", "2"]);
    // retries recorded in the generate outputs
    let state = RunState::load(&run.join("state.json")).unwrap();
    let gen = &state.record("20250801/generate").unwrap().outputs;
    let retries = &gen["retries"];
    assert!(retries["failed_first"].as_u64().unwrap() <= 4, "{retries}");
    assert_eq!(
        retries["fixed"].as_u64().unwrap() + retries["still_failing"].as_u64().unwrap(),
        retries["failed_first"].as_u64().unwrap()
    );
    assert_eq!(gen["profile"], "tight");
    assert!(
        state.record("20250804/eval").is_some(),
        "eval after training"
    );
}

#[test]
fn backfill_then_daily_update_then_override() {
    let s = setup();
    let reg = Registry::builtin();
    let a = runner::run::apply(&request(&s, "runs", range("20250801", "20250804")), &reg).unwrap();
    assert!(
        a.run_dir.starts_with(s.dir.join("runs/daily_T")),
        "suffix namespaces the run"
    );
    check_backfill(&a);

    // The daily update: the next date with headlines after 0804 is 0805; it starts from the
    // backfill's final model (step 2) and scores 0804's predictions with 0805's outcomes.
    let next = PartitionOptions {
        partition: Some("next".into()),
        ..PartitionOptions::default()
    };
    let b = runner::run::apply(&request(&s, "runs", next.clone()), &reg).unwrap();
    assert_ne!(a.run_dir, b.run_dir);
    let lineage = Lineage::load(&b.run_dir).unwrap();
    assert_eq!(lineage.base_step, 2);
    assert_eq!(
        lineage.previous_run.as_deref(),
        Some(a.run_dir.to_str().unwrap())
    );
    assert!(b
        .run_dir
        .join(&lineage.imported_predictions["20250804"])
        .is_file());
    let rows = read_summaries(&b.run_dir).unwrap();
    assert_eq!(rows.len(), 1);
    let r5 = row(&rows, "20250805");
    assert_eq!(r5.status, "done");
    assert_eq!(r5.scored_pairs, vec!["20250804×20250805".to_string()]);
    assert_eq!(
        r5.sampler.as_deref(),
        Some("default"),
        "profile carried over"
    );
    assert_eq!(
        metric_steps(&b.run_dir),
        vec!["3"],
        "steps continue from the backfill"
    );
    assert!(b
        .run_dir
        .join("checkpoints/final_model_20250805/training_state.json")
        .is_file());
    // the backfill's final model was the starting point: the trainer state says step 3 now
    let st: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            b.run_dir
                .join("checkpoints/final_model/training_state.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(st["step"], 3);
    // Nothing after 0805: `next` says so instead of running an empty round.
    let err = runner::run::apply(&request(&s, "runs", next), &reg).unwrap_err();
    assert!(err.to_string().contains("no date after 20250805"), "{err}");

    // Override: score 0802's predictions (made by the backfill) with 0804's outcomes.
    let over = PartitionOptions {
        partition: Some("20250802".into()),
        outcomes_from: Some("20250804".into()),
        ..PartitionOptions::default()
    };
    let c = runner::run::apply(&request(&s, "runs", over), &reg).unwrap();
    let state = RunState::load(&c.run_dir.join("state.json")).unwrap();
    let ids: Vec<&str> = state.completed.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "20250802/score",
            "20250802/rank",
            "20250802/train",
            "20250802/eval"
        ],
        "the predictions are imported, not generated again"
    );
    let rows = read_summaries(&c.run_dir).unwrap();
    let r = row(&rows, "20250802");
    assert_eq!(r.scored_pairs, vec!["20250802×20250804".to_string()]);
    assert_eq!(r.training_steps, 1);
    assert!(c
        .run_dir
        .join("checkpoints/final_model_20250802/training_state.json")
        .is_file());
}

/// Fails the first time `fail_id` runs, then behaves like the built-in stage.
struct FailOnce {
    inner: Arc<dyn Stage>,
    fail_id: &'static str,
    failed: AtomicBool,
}

impl Stage for FailOnce {
    fn run(&self, ctx: &mut StageContext<'_>) -> runner::Result<StageOutput> {
        if ctx.instance.id == self.fail_id && !self.failed.swap(true, Ordering::SeqCst) {
            return Err(runner::Error::Run("injected failure".into()));
        }
        self.inner.run(ctx)
    }
}

#[test]
fn backfill_interrupted_between_partitions_resumes_to_the_same_model() {
    let s = setup();
    let mut reg = Registry::builtin();
    reg.register(
        StageKind::Generate,
        Arc::new(FailOnce {
            inner: Registry::builtin().get(StageKind::Generate).unwrap(),
            fail_id: "20250804/generate",
            failed: AtomicBool::new(false),
        }),
    );
    let req = request(&s, "interrupted", range("20250801", "20250804"));
    let err = runner::run::apply(&req, &reg).unwrap_err();
    assert!(err.to_string().contains("injected failure"), "{err}");
    let parent = s.dir.join("interrupted/daily_T");
    let run = std::fs::read_dir(&parent)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let rows = read_summaries(&run).unwrap();
    assert_eq!(row(&rows, "20250802").status, "done");
    assert_eq!(row(&rows, "20250804").status, "pending");
    let resumed = runner::run::apply(
        &ApplyRequest {
            resume: Some(run.clone()),
            ..ApplyRequest::default()
        },
        &reg,
    )
    .unwrap();
    assert!(resumed.resumed);
    check_backfill(&resumed);

    // The same backfill without the interruption ends on the same adapter.
    let whole = runner::run::apply(
        &request(&s, "whole", range("20250801", "20250804")),
        &Registry::builtin(),
    )
    .unwrap();
    let adapter = |run: &Path| {
        std::fs::read(run.join("checkpoints/final_model/adapter_model.safetensors")).unwrap()
    };
    assert!(
        adapter(&run) == adapter(&whole.run_dir),
        "resumed backfill differs from the uninterrupted one"
    );
}

#[test]
fn partition_options_are_checked() {
    let s = setup();
    let reg = Registry::builtin();
    let bad = [
        (
            PartitionOptions {
                partition: Some("20250802".into()),
                from: Some("20250801".into()),
                ..PartitionOptions::default()
            },
            "cannot be combined",
        ),
        (
            PartitionOptions {
                outcomes_from: Some("20250804".into()),
                ..PartitionOptions::default()
            },
            "needs --partition D",
        ),
        (
            PartitionOptions {
                partition: Some("2025-08-02".into()),
                ..PartitionOptions::default()
            },
            "YYYYMMDD",
        ),
        (
            PartitionOptions {
                partition: Some("next".into()),
                ..PartitionOptions::default()
            },
            "no earlier run",
        ),
    ];
    for (opts, want) in bad {
        let err = runner::run::apply(&request(&s, "runs", opts.clone()), &reg).unwrap_err();
        assert!(err.to_string().contains(want), "{opts:?}: {err}");
    }
    assert!(
        !s.dir.join("runs/daily_T").exists() || {
            std::fs::read_dir(s.dir.join("runs/daily_T"))
                .unwrap()
                .count()
                == 0
        }
    );
}

/// `runner apply --from/--to` warns about missing data files of the selected partitions only
/// (not of the spec's whole range), and prints each warning once.
#[test]
fn cli_apply_warns_once_for_the_selected_partitions_only() {
    let s = setup();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_runner"))
        .args([
            "apply", "--quiet", "--no-env", "--from", "20250802", "--to", "20250804",
        ])
        .arg("--runs-dir")
        .arg(s.dir.join("runs"))
        .arg(&s.spec)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let missing: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("partition dates have no file"))
        .collect();
    // 20250803 has no headline and no outcome file: one warning for each pattern, once.
    assert_eq!(missing.len(), 2, "{stderr}");
    for field in ["data.train.path", "data.outcomes.path"] {
        let lines: Vec<&&str> = missing.iter().filter(|l| l.contains(field)).collect();
        assert_eq!(lines.len(), 1, "{field}: {stderr}");
        assert!(
            lines[0].contains("1 of 3 partition dates have no file: 20250803"),
            "{stderr}"
        );
    }
    let mut seen = std::collections::BTreeSet::new();
    for l in stderr.lines().filter(|l| l.contains("warning")) {
        assert!(seen.insert(l), "printed twice: {l}\n{stderr}");
    }
}

/// `runner plan --from/--to` plans the selected range, as `runner apply --from/--to` runs it
/// (and, like apply, warns only about the selected partitions' files).
#[test]
fn cli_plan_from_to_plans_the_selected_range() {
    let s = setup();
    let plan = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_runner"))
            .args(["plan", "--no-env", "--runs-dir"])
            .arg(s.dir.join("runs"))
            .args(extra)
            .arg(&s.spec)
            .output()
            .unwrap()
    };
    let out = plan(&["--json", "--from", "20250804", "--to", "20250805"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("have no file"), "{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let dates: Vec<&str> = v["loop"]["rounds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["date"].as_str().unwrap())
        .collect();
    assert_eq!(dates, ["20250804", "20250805"], "{}", v["loop"]);
    // Without the options the spec's whole range is planned, its missing day warned about.
    let out = plan(&["--json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("1 of 5 partition dates have no file: 20250803"),
        "{stderr}"
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["loop"]["rounds"].as_array().unwrap().len(), 5);
    // A saved plan cannot carry the options: refused, saying what to do instead.
    let saved = s.dir.join("p.json");
    let out = plan(&["--from", "20250804", "--out", saved.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("schedule.partitions.from="), "{stderr}");
    assert!(!saved.exists());
}

/// Library callers get the same narrowed warnings as the CLI prints: `ApplyReport.warnings`
/// of a `--from/--to` run name only the selected partitions' missing files.
#[test]
fn apply_report_warnings_cover_the_selected_partitions_only() {
    let s = setup();
    let reg = Registry::builtin();
    let r = runner::run::apply(&request(&s, "runs", range("20250802", "20250804")), &reg).unwrap();
    let missing: Vec<&String> = r
        .warnings
        .iter()
        .filter(|w| w.contains("partition dates have no file"))
        .collect();
    assert_eq!(missing.len(), 2, "{:?}", r.warnings);
    assert!(
        missing
            .iter()
            .all(|w| w.contains("1 of 3 partition dates have no file: 20250803")),
        "{missing:?}"
    );
}
