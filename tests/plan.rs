//! Plans: loop structure, stage instances, LR landmarks and estimates against hand-computed
//! values, plan.json round trip, stale plans, and the CLI.

use runner::plan::{self, LoopPlan, Plan, PlanSource};
use runner::run::apply::{prepare_plan, prepare_spec};
use runner::spec::{Experiment, PartitionOverride, Partitions, ScheduleMode};
use runner::train::schedule::LrSchedulerType;
use std::path::Path;

mod common;
use std::process::Command;

fn compile(spec: &Experiment) -> Plan {
    plan::compile(spec, "0123456789abcdef", PlanSource::default()).unwrap()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * b.abs().max(1e-30)
}

fn v4_like() -> Experiment {
    let mut s = Experiment {
        name: "v4".into(),
        ..Experiment::default()
    };
    s.train.max_steps = Some(200);
    s.train.learning_rate = 2e-6;
    s.train.lr_scheduler_type = LrSchedulerType::Cosine;
    s.train.warmup_ratio = Some(0.1);
    s.train.batch_size = 2;
    s.generate.num_generations = 16;
    s.generate.max_completion_length = 512;
    s.eval.every = Some(10);
    s
}

#[test]
fn lr_landmarks_match_hand_values() {
    let plan = compile(&v4_like());
    let lr = plan.lr.expect("steps known");
    assert_eq!((lr.total_steps, lr.warmup_steps), (200, 20));
    let at: Vec<(&str, usize, f64)> = lr
        .points
        .iter()
        .map(|p| (p.at.as_str(), p.step, p.lr))
        .collect();
    // middle: cos(π·80/180) = cos 80° = 0.17364817766693; last: cos 179° = −0.99984769515639.
    let mid = 2e-6 * 0.5 * (1.0 + 0.17364817766693033);
    let last = 2e-6 * 0.5 * (1.0 - 0.9998476951563913);
    assert_eq!(at[0], ("first", 0, 0.0));
    assert_eq!((at[1].0, at[1].1), ("warmup_end", 20));
    assert!(close(at[1].2, 2e-6));
    assert_eq!((at[2].0, at[2].1), ("middle", 100));
    assert!(close(at[2].2, mid), "{} vs {mid}", at[2].2);
    assert_eq!((at[3].0, at[3].1), ("last", 199));
    assert!((at[3].2 - last).abs() < 1e-16, "{} vs {last}", at[3].2);
    assert!(
        (at[3].2 - 1.523e-10).abs() < 1e-13,
        "the seed's ~1.5e-10 at the end of V4"
    );
    // Under 1 %: cos(π p) < −0.98 ⇔ p > acos(−0.98)/π = 0.93624 ⇔ step − 20 > 168.5 ⇒ 189.
    assert_eq!(lr.below_1pct_from, Some(189));

    let mut v41 = v4_like();
    v41.train.max_steps = Some(600);
    v41.train.learning_rate = 5e-6;
    v41.train.lr_scheduler_type = LrSchedulerType::ConstantWithWarmup;
    v41.train.warmup_ratio = Some(0.05);
    let lr = compile(&v41).lr.unwrap();
    assert_eq!(lr.warmup_steps, 30);
    let steps: Vec<usize> = lr.points.iter().map(|p| p.step).collect();
    assert_eq!(steps, [0, 30, 300, 599]);
    assert!(lr.points[1..].iter().all(|p| close(p.lr, 5e-6)));
    assert_eq!(lr.below_1pct_from, None);
}

#[test]
fn estimates_by_hand() {
    let plan = compile(&v4_like());
    let e = &plan.estimates;
    assert_eq!(e.prompts_per_step, 2);
    assert_eq!(e.optimizer_steps, 200);
    assert_eq!(e.train_rollouts, 200 * 2 * 16);
    assert_eq!(e.eval_rollouts, 0, "no eval data → not counted");
    assert_eq!(e.completion_tokens_max, 6400 * 512);
    assert_eq!(e.prompt_tokens, 0);
    assert!(plan.notes.iter().any(|n| n.contains("eval set `eval`")));

    // With data: 4 train prompts of 40 characters, a 4-character system prompt, 3 eval prompts.
    let dir = tempfile::tempdir().unwrap();
    let train = dir.path().join("train.jsonl");
    let line = format!("{{\"prompt\": \"{}\"}}\n", "x".repeat(40));
    std::fs::write(&train, line.repeat(4)).unwrap();
    let eval = dir.path().join("eval.jsonl");
    std::fs::write(&eval, line.repeat(3)).unwrap();
    let mut s = Experiment {
        name: "t".into(),
        ..Experiment::default()
    };
    s.data.train = Some(serde_json::from_value(serde_json::json!({ "path": train })).unwrap());
    s.data.eval = Some(serde_json::from_value(serde_json::json!({ "path": eval })).unwrap());
    s.data.prompt.system = Some("abcd".into());
    s.train.num_train_epochs = 2.0;
    s.train.batch_size = 2;
    s.generate.num_generations = 4;
    s.generate.max_completion_length = 10;
    s.eval.num_generations = 5;
    let plan = compile(&s);
    let e = &plan.estimates;
    assert_eq!(e.optimizer_steps, 4, "2 epochs × ceil(4 / 2)");
    assert_eq!(e.train_rollouts, 4 * 2 * 4);
    assert_eq!(e.eval_rollouts, 3 * 5, "one eval, after the last step");
    assert_eq!(e.rollouts, 47);
    assert_eq!(e.prompt_tokens_per_prompt, Some(11.0), "ceil((40 + 4) / 4)");
    assert_eq!(e.completion_tokens_max, 470);
    assert_eq!(e.prompt_tokens, 47 * 11);
    assert_eq!(e.tokens_max, 470 + 517);
}

#[test]
fn steps_loop_instances() {
    let mut s = Experiment {
        name: "s".into(),
        ..Experiment::default()
    };
    s.train.max_steps = Some(5);
    s.eval.every = Some(2);
    s.train.sft = Some(serde_json::from_value(serde_json::json!({})).unwrap());
    let plan = compile(&s);
    match &plan.loop_ {
        LoopPlan::Steps {
            total_steps,
            eval_after,
        } => {
            assert_eq!(*total_steps, 5);
            assert_eq!(eval_after, &[1, 3, 4]);
        }
        other => panic!("{other:?}"),
    }
    let ids: Vec<String> = plan.instances().into_iter().map(|i| i.id).collect();
    assert_eq!(ids.len(), 1 + 5 * 4 + 3);
    assert_eq!(ids[0], "sft");
    assert_eq!(
        &ids[1..5],
        [
            "step-0000/generate",
            "step-0000/score",
            "step-0000/rank",
            "step-0000/train"
        ]
    );
    assert_eq!(ids[9], "step-0001/eval");
    assert_eq!(ids.last().unwrap(), "step-0004/eval");
    let kinds: Vec<&str> = plan.kinds().iter().map(|k| k.name()).collect();
    assert_eq!(kinds, ["sft", "generate", "score", "rank", "train", "eval"]);
    let train = plan
        .stages
        .iter()
        .find(|st| st.kind.name() == "train")
        .unwrap();
    assert_eq!(train.params["max_steps"], 5);
    assert!(
        train.params.get("sft").is_none(),
        "sft parameters belong to the sft stage"
    );
}

#[test]
fn daily_partitions_score_the_day_before_with_overrides_and_pending() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("h")).unwrap();
    std::fs::create_dir_all(d.join("o")).unwrap();
    for date in ["20250802", "20250803", "20250805", "20250806"] {
        std::fs::write(
            d.join(format!("h/{date}.jsonl")),
            "{\"prompt\":\"a\"}\n{\"prompt\":\"b\"}\n",
        )
        .unwrap();
    }
    for date in ["20250802", "20250803", "20250804", "20250805", "20250806"] {
        std::fs::write(d.join(format!("o/{date}.jsonl")), "{}\n").unwrap();
    }
    let mut s = Experiment {
        name: "daily".into(),
        ..Experiment::default()
    };
    s.schedule.mode = ScheduleMode::Partitions;
    s.schedule.run_suffix = Some("NEWRUN".into());
    s.data.train = Some(
        serde_json::from_value(
            serde_json::json!({ "path": format!("{}/h/{{date}}.jsonl", d.display()) }),
        )
        .unwrap(),
    );
    s.data.outcomes = Some(
        serde_json::from_value(serde_json::json!({
            "path": format!("{}/o/{{date}}.jsonl", d.display()), "join_on": "id", "value": "v"
        }))
        .unwrap(),
    );
    s.schedule.partitions = Some(Partitions {
        every: Default::default(),
        from: "20250802".into(),
        to: "20250806".into(),
        backfill: true,
        resume_from_last_model: true,
        skip_missing: true,
        overrides: vec![PartitionOverride {
            predictions_from: "20250803".into(),
            outcomes_from: "20250805".into(),
        }],
    });
    s.train.max_steps = Some(3);
    let plan = compile(&s);
    assert_eq!(plan.run_name, "daily_NEWRUN");
    let LoopPlan::Partitions { rounds, pending } = &plan.loop_ else {
        panic!("{:?}", plan.loop_)
    };
    type Row<'a> = (&'a str, bool, Vec<(&'a str, &'a str, bool)>);
    let summary: Vec<Row> = rounds
        .iter()
        .map(|r| {
            (
                r.date.as_str(),
                r.generate,
                r.score
                    .iter()
                    .map(|p| {
                        (
                            p.predictions_from.as_str(),
                            p.outcomes_from.as_str(),
                            p.overridden,
                        )
                    })
                    .collect(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("20250802", true, vec![]),
            ("20250803", true, vec![("20250802", "20250803", false)]),
            ("20250804", false, vec![]), // no prompt file; 0803's predictions moved to 0805
            ("20250805", true, vec![("20250803", "20250805", true)]),
            ("20250806", true, vec![("20250805", "20250806", false)]),
        ]
    );
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].predictions_from, "20250806");
    assert_eq!(pending[0].outcomes_from, "20250807");
    let ids: Vec<String> = plan.instances().into_iter().map(|i| i.id).collect();
    assert_eq!(
        ids,
        [
            "20250802/generate",
            "20250803/generate",
            "20250803/score",
            "20250803/rank",
            "20250803/train",
            "20250803/eval",
            "20250805/generate",
            "20250805/score",
            "20250805/rank",
            "20250805/train",
            "20250805/eval",
            "20250806/generate",
            "20250806/score",
            "20250806/rank",
            "20250806/train",
            "20250806/eval",
        ]
    );
    assert_eq!(
        plan.estimates.train_rollouts,
        4 * 2 * 8,
        "4 dates × 2 prompts × 8 generations"
    );
    assert_eq!(
        plan.estimates.optimizer_steps, 9,
        "3 trained rounds × max_steps 3"
    );
}

// ------------------------------------------------------------------------------------------
// Spec files, saved plans and the CLI.

/// A tiny random Llama with its tokenizer in `dir/model` (once per directory).
fn tiny_model(dir: &Path) -> std::path::PathBuf {
    let m = dir.join("model");
    if !m.join("config.json").is_file() {
        let cfg = common::tiny_config(runner::engine::model::Arch::Llama, true);
        common::write_hf_dir(&m, &cfg, &common::random_weights(&cfg, 7));
        common::write_tiny_tokenizer(&m);
    }
    m
}

fn write_spec(dir: &Path, lr: &str) -> std::path::PathBuf {
    let data = dir.join("train.jsonl");
    std::fs::write(
        &data,
        "{\"prompt\": \"1+1=\", \"answer\": \"2\"}\n".repeat(8),
    )
    .unwrap();
    let spec = dir.join("tiny.yaml");
    std::fs::write(
        &spec,
        format!(
            "name: tiny\ndata:\n  train:\n    path: {}\n    fields: {{prompt: prompt, reference: answer}}\n\
             rewards:\n  answer:\n    kind: answer\ngenerate:\n  num_generations: 4\n\
             train:\n  max_steps: 3\n  learning_rate: {lr}\neval:\n  sets: [train]\n\
             model:\n  base: {}\n",
            data.display(),
            tiny_model(dir).display()
        ),
    )
    .unwrap();
    spec
}

#[test]
fn saved_plan_round_trips_and_goes_stale_when_the_spec_changes() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(dir.path(), "1.0e-5");
    let p = prepare_spec(&spec, &["train.max_steps=4".into()], false).unwrap();
    assert_eq!(p.plan.source.sets, ["train.max_steps=4"]);
    assert_eq!(p.plan.estimates.optimizer_steps, 4);
    let saved = dir.path().join("tiny.plan.json");
    runner::run::atomic::write_json(&saved, &p.plan).unwrap();
    assert_eq!(Plan::load(&saved).unwrap(), p.plan);
    let again = prepare_plan(&saved).unwrap();
    assert_eq!(again.spec_hash, p.spec_hash);

    write_spec(dir.path(), "2.0e-5");
    let err = prepare_plan(&saved).unwrap_err().to_string();
    assert!(
        err.contains("stale plan: spec changed since the plan was made (hash"),
        "{err}"
    );
    assert!(err.contains("run `runner plan` again"), "{err}");

    std::fs::write(&saved, "{\"format_version\": 99}").unwrap();
    let err = Plan::load(&saved).unwrap_err().to_string();
    assert!(err.contains("format_version 99"), "{err}");
}

fn runner_cmd() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_runner"));
    c.env_remove("RUNNER_TRAIN__LEARNING_RATE");
    c
}

#[test]
fn cli_plan_json_out_then_apply_runs_it() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(dir.path(), "1.0e-5");
    let saved = dir.path().join("p.json");
    let out = runner_cmd()
        .args(["plan", "--json", "--out"])
        .arg(&saved)
        .arg(&spec)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["format_version"], 1);
    assert_eq!(printed["loop"]["mode"], "steps");
    assert!(saved.is_file());

    let runs = dir.path().join("runs");
    for input in [&saved, &spec] {
        let out = runner_cmd()
            .args(["apply", "--quiet", "--runs-dir"])
            .arg(&runs)
            .arg(input)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        // The plan is accepted and runs to the end (a tiny random model, 3 steps).
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        assert!(runs.join("tiny").is_dir(), "{stderr}");
    }

    write_spec(dir.path(), "3.0e-5");
    let out = runner_cmd()
        .args(["apply", "--quiet"])
        .arg(&saved)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("stale plan"), "{stderr}");

    let human = runner_cmd().arg("plan").arg(&spec).output().unwrap();
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(
        text.contains("for step in 0..3:") && text.contains("learning rate"),
        "{text}"
    );
}

#[test]
fn every_subcommand_help_shows_an_example() {
    for cmd in ["plan", "apply", "sweep"] {
        let out = runner_cmd().args([cmd, "--help"]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("Examples:") && text.contains(&format!("runner {cmd} ")),
            "{cmd}: {text}"
        );
    }
}

#[test]
fn every_shipped_experiment_compiles() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("experiments");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        eprintln!("no experiments/ directory: skipped");
        return;
    };
    // Spec data paths are relative to the project root.
    std::env::set_current_dir(root).unwrap();
    let mut n = 0;
    for e in entries {
        let path = e.unwrap().path();
        if path.extension().and_then(|x| x.to_str()) != Some("yaml") {
            continue;
        }
        let p =
            prepare_spec(&path, &[], false).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(!p.plan.instances().is_empty(), "{}", path.display());
        let json = serde_json::to_string(&p.plan).unwrap();
        let back: Plan = serde_json::from_str(&json).unwrap();
        // (serde_json's float parsing may differ in the last bit; compare structure.)
        assert_eq!(back.instances(), p.plan.instances());
        assert_eq!(
            (&back.spec_hash, &back.loop_, &back.sweep),
            (&p.plan.spec_hash, &p.plan.loop_, &p.plan.sweep)
        );
        n += 1;
        match path.file_stem().and_then(|s| s.to_str()) {
            Some("v4") => assert_eq!(p.plan.lr.as_ref().unwrap().below_1pct_from, Some(189)),
            Some("v4_1") => assert_eq!(p.plan.lr.as_ref().unwrap().below_1pct_from, None),
            Some("polychromic") => assert_eq!(p.plan.sweep.len(), 12),
            _ => {}
        }
    }
    assert!(n >= 1);
}

/// The score stage's label says the pairing of the spec's `schedule.outcome_lag_days` (it
/// always said "D−1 against D's outcomes", the lag-1 pairing).
#[test]
fn score_label_names_the_pairing_of_the_outcome_lag() {
    let label = |lag: Option<u32>| -> String {
        let mut s = Experiment {
            name: "daily".into(),
            ..Experiment::default()
        };
        s.schedule.mode = ScheduleMode::Partitions;
        s.schedule.outcome_lag_days = lag;
        s.schedule.partitions = Some(Partitions {
            every: Default::default(),
            from: "20250802".into(),
            to: "20250804".into(),
            backfill: true,
            resume_from_last_model: true,
            skip_missing: false,
            overrides: vec![],
        });
        s.train.max_steps = Some(1);
        let plan = compile(&s);
        let score = plan
            .stages
            .iter()
            .find(|st| st.kind == runner::stages::StageKind::Score)
            .unwrap();
        score.runs.clone()
    };
    assert_eq!(
        label(None),
        "per partition D: predictions of D−1 against D's outcomes, or an override"
    );
    assert_eq!(label(Some(1)), label(None));
    assert_eq!(
        label(Some(0)),
        "per partition D: predictions of D−1 against D−1's own outcomes (outcome_lag_days: 0), \
         or an override"
    );
    assert_eq!(
        label(Some(2)),
        "per partition D: predictions of D−2 against D's outcomes (outcome_lag_days: 2), or an \
         override"
    );
}

/// `runner plan --runs-dir X` shows the run directory under X (it always said `runs/`).
#[test]
fn cli_plan_shows_the_run_directory_under_runs_dir() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(dir.path(), "1.0e-5");
    let runs = dir.path().join("elsewhere");
    let out = runner_cmd()
        .args(["plan", "--runs-dir"])
        .arg(&runs)
        .arg(&spec)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want = format!("run directory: {}/<run-id>/", runs.join("tiny").display());
    assert!(text.contains(&want), "want `{want}` in:\n{text}");
}
