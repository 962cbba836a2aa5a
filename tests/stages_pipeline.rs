//! The whole steps plan (generate → score → rank → train, eval every 2 steps) through
//! `runner::run::apply` on a tiny random model with the tiny character tokenizer.

mod common;

use std::path::{Path, PathBuf};

use runner::run::{ApplyRequest, RunState};
use runner::stages::artifacts::{read_jsonl, AdvantageRow, RolloutRow, ScoredRow};
use runner::stages::Registry;

const G: usize = 4;
const BATCH: usize = 2;
const STEPS: usize = 3;

fn tiny_model(dir: &Path) -> PathBuf {
    common::tiny_model_dir(dir, 7)
}

fn write_data(dir: &Path) -> (PathBuf, PathBuf) {
    let train = dir.join("train.jsonl");
    let eval = dir.join("eval.jsonl");
    std::fs::write(&train, common::arithmetic_rows("t", 5)).unwrap();
    std::fs::write(&eval, common::arithmetic_rows("e", 3)).unwrap();
    (train, eval)
}

fn spec_text(model: &Path, train: &Path, eval: &Path) -> String {
    common::tiny_spec(
        model,
        train,
        Some(eval),
        &format!(
            "generate: {{num_generations: {G}}}\n\
             train: {{max_steps: {STEPS}, batch_size: {BATCH}}}\n\
             eval: {{every: 2, metrics: [mean_reward, reward/format, completion_length, distinct_2]}}"
        ),
    )
}

#[test]
fn tiny_tokenizer_round_trips() {
    let d = tempfile::tempdir().unwrap();
    let m = tiny_model(d.path());
    let tok = runner::engine::tokenizer::from_hf_dir(&m).unwrap();
    assert_eq!(tok.vocab_size(), common::VOCAB);
    let ids = tok
        .encode("<|im_start|>user\nwhat is 2?<|im_end|>")
        .unwrap();
    assert_eq!(ids[0], 1);
    assert_eq!(*ids.last().unwrap(), 2);
    assert_eq!(tok.decode(&ids).unwrap(), "user\nwhat is 2?");
    assert!(tok.eos_ids.contains(&2));
}

#[test]
fn steps_plan_runs_end_to_end() {
    let d = tempfile::tempdir().unwrap();
    let model = tiny_model(d.path());
    let (train, eval) = write_data(d.path());
    let spec_path = d.path().join("tiny.yaml");
    std::fs::write(&spec_path, spec_text(&model, &train, &eval)).unwrap();
    let req = ApplyRequest {
        input: Some(spec_path),
        runs_dir: d.path().join("runs"),
        ..ApplyRequest::default()
    };
    let report = runner::run::apply(&req, &Registry::builtin()).unwrap();
    // 3 steps × 4 stages + evals after steps 1 and 2.
    assert_eq!(report.summary.executed, STEPS * 4 + 2);
    let run = report.run_dir;
    let state = RunState::load(&run.join("state.json")).unwrap();
    let out = |id: &str| {
        state
            .record(id)
            .unwrap_or_else(|| panic!("{id}"))
            .outputs
            .clone()
    };
    for s in 0..STEPS {
        let p = format!("step-{s:04}");
        let rollouts: Vec<RolloutRow> =
            read_jsonl(&run.join(out(&format!("{p}/generate"))["rollouts"].as_str().unwrap()))
                .unwrap();
        assert_eq!(rollouts.len(), BATCH * G);
        for pi in 0..BATCH {
            let group: Vec<&RolloutRow> =
                rollouts.iter().filter(|r| r.prompt_index == pi).collect();
            assert_eq!(group.len(), G, "G rows per prompt");
            assert!(group.iter().all(|r| r.record_id == group[0].record_id));
        }
        for r in &rollouts {
            assert_eq!(r.completion_ids.len(), r.logprobs.len());
            assert!(r.logprobs.iter().all(|l| l.is_finite() && *l <= 0.0));
            assert!(!r.completion_ids.is_empty() && r.completion_ids.len() <= 8);
        }
        let score = out(&format!("{p}/score"));
        let scored: Vec<ScoredRow> =
            read_jsonl(&run.join(score["scored"].as_str().unwrap())).unwrap();
        assert_eq!(scored.len(), rollouts.len());
        assert!(score["rewards/format/mean"].as_f64().unwrap().is_finite());
        assert!(scored.iter().all(|r| r.rewards.contains_key("format")));
        let rank = out(&format!("{p}/rank"));
        let adv: Vec<AdvantageRow> =
            read_jsonl(&run.join(rank["advantages"].as_str().unwrap())).unwrap();
        assert_eq!(adv.len(), rollouts.len());
        for pi in 0..BATCH {
            let sum: f64 = adv
                .iter()
                .filter(|a| a.prompt_index == pi)
                .map(|a| a.advantage)
                .sum();
            assert!(
                sum.abs() < 1e-6,
                "advantages of a group sum to 0, got {sum}"
            );
        }
        let f = rank["frac_reward_zero_std"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&f));
        assert!(state.is_completed(&format!("{p}/train")));
    }
    // Two steps use different prompts from the epoch order.
    let ids0 = out("step-0000/generate")["record_ids"].clone();
    let ids1 = out("step-0001/generate")["record_ids"].clone();
    assert_ne!(ids0, ids1);
    for e in ["step-0001/eval", "step-0002/eval"] {
        let o = out(e);
        let m = &o["eval"];
        for k in [
            "mean_reward",
            "reward/format",
            "completion_length",
            "distinct_2",
        ] {
            assert!(
                m[k].as_f64().is_some_and(f64::is_finite),
                "{e}: {k} = {}",
                m[k]
            );
        }
        let dir = run.join("stages").join(e.replace('/', "_"));
        let comp = run.join(o["completions"].as_str().unwrap());
        let rows: Vec<ScoredRow> = read_jsonl(&comp).unwrap();
        assert_eq!(rows.len(), 3 * 2);
        assert!(
            run.join(o["summary"].as_str().unwrap()).is_file(),
            "{}",
            dir.display()
        );
    }
    assert!(!out("step-0001/eval")["eval_best"].is_null());
    assert!(run.join("checkpoints/best").is_dir());
}

/// `generate.retries` re-samples every failing completion with its own seed: the retried
/// completions of one prompt differ from each other (they were once all the same), and a
/// second run reproduces them.
#[test]
fn retried_completions_of_a_prompt_differ_and_reproduce() {
    let d = tempfile::tempdir().unwrap();
    let model = tiny_model(d.path());
    let (train, _) = write_data(d.path());
    let spec_path = d.path().join("retry.yaml");
    let text = common::tiny_spec(
        &model,
        &train,
        None,
        "generate: {num_generations: 4, retries: 1, retry_on: never, temperature: 4.0}\n\
         rewards: {never: {kind: format, weight: 0.1, regex: 'NEVER-MATCHES-9999'}}\n\
         train: {max_steps: 1, batch_size: 2}",
    );
    std::fs::write(&spec_path, text).unwrap();
    let run_once = |runs: &str| -> Vec<RolloutRow> {
        let req = ApplyRequest {
            input: Some(spec_path.clone()),
            runs_dir: d.path().join(runs),
            ..ApplyRequest::default()
        };
        let report = runner::run::apply(&req, &Registry::builtin()).unwrap();
        let state = RunState::load(&report.run_dir.join("state.json")).unwrap();
        let gen = &state.record("step-0000/generate").unwrap().outputs;
        assert_eq!(gen["retries"]["failed_first"], 8, "{gen}");
        assert_eq!(gen["retries"]["attempts"], 8, "{gen}");
        read_jsonl(&report.run_dir.join(gen["rollouts"].as_str().unwrap())).unwrap()
    };
    let rows = run_once("runs");
    for pi in 0..2 {
        let texts: std::collections::BTreeSet<&Vec<u32>> = rows
            .iter()
            .filter(|r| r.prompt_index == pi)
            .map(|r| &r.completion_ids)
            .collect();
        assert!(
            texts.len() > 1,
            "prompt {pi}: every retry the same: {texts:?}"
        );
    }
    let again = run_once("runs2");
    let ids = |rows: &[RolloutRow]| -> Vec<Vec<u32>> {
        rows.iter().map(|r| r.completion_ids.clone()).collect()
    };
    assert_eq!(ids(&rows), ids(&again));
}
