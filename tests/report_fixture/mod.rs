//! Fabricated run directories for the compare / report tests: the files a run writes
//! (state.json, metrics.csv, spec.resolved.yaml, eval stage outputs, trainer state), with
//! chosen values.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use serde_json::json;

/// One eval completion: (prompt index, sample index, reward, completion text).
pub type Sample = (usize, usize, f64, &'static str);

/// A fabricated run.
pub struct FakeRun {
    pub name: String,
    pub seed: u64,
    /// metrics.csv rows: (step, reward, kl) — NaN writes "nan", None an empty cell.
    pub steps: Vec<(usize, Option<f64>, Option<f64>)>,
    /// Evals: (0-based step, mean_reward, samples).
    pub evals: Vec<(usize, f64, Vec<Sample>)>,
    /// Best eval kept: (metric, value, steps completed).
    pub best: Option<(String, f64, usize)>,
    /// Per-task reward of the score stages: (0-based step, task, mean).
    pub tasks: Vec<(usize, String, f64)>,
}

impl FakeRun {
    pub fn new(name: &str, seed: u64) -> FakeRun {
        FakeRun {
            name: name.into(),
            seed,
            steps: Vec::new(),
            evals: Vec::new(),
            best: None,
            tasks: Vec::new(),
        }
    }

    /// Write the run under `root/<name>/<id>/`; returns its directory.
    pub fn write(&self, root: &Path, id: &str) -> PathBuf {
        let dir = root.join(&self.name).join(id);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("spec.resolved.yaml"),
            format!(
                "name: {}\nseed: {}\nrewards:\n  fmt: {{kind: format, regex: 'a'}}\n  ok: {{kind: answer}}\n\
                 eval: {{num_generations: 2, metrics: [mean_reward, pass@2]}}\n",
                self.name, self.seed
            ),
        )
        .unwrap();
        let mut csv = String::from(
            "step,loss,reward,kl,grad_norm,lr,completions/mean_length,completions/min_length,completions/max_length,rewards/fmt/mean\n",
        );
        for (s, r, kl) in &self.steps {
            let cell = |v: &Option<f64>| match v {
                Some(x) if x.is_nan() => "nan".to_string(),
                Some(x) => format!("{x}"),
                None => String::new(),
            };
            csv.push_str(&format!(
                "{s},0.1,{},{},0.5,0.001,{},{},{},0.5\n",
                cell(r),
                cell(kl),
                10 + s,
                5,
                20 + 2 * s
            ));
        }
        if !self.steps.is_empty() {
            std::fs::write(dir.join("metrics.csv"), csv).unwrap();
        }
        let mut completed = Vec::new();
        for (step, task, mean) in &self.tasks {
            completed.push(json!({
                "id": format!("step-{step:04}/score"), "kind": "score",
                "started_at": "2026-11-22T00:00:00Z", "finished_at": "2026-11-22T00:00:01Z",
                "outputs": {"by_task": {task: {"total": {"mean": mean, "std": 0.0, "unscorable": 0}}}}
            }));
        }
        for (step, mean, samples) in &self.evals {
            let id = format!("step-{step:04}/eval");
            let sd = dir.join("stages").join(format!("step-{step:04}_eval"));
            std::fs::create_dir_all(&sd).unwrap();
            let mut lines = String::new();
            for (p, i, r, text) in samples {
                let row = json!({
                    "set": "eval", "record_id": format!("r{p}"), "prompt_index": p, "index": i,
                    "prompt": "say a", "completion": text, "prompt_ids": [1, 2],
                    "completion_ids": vec![5u32; text.len()], "logprobs": [], "finish": "eos",
                    "task": null, "reference": "1", "record": {},
                    "rewards": {"fmt": r, "ok": if *r >= 1.0 { 1.0 } else { 0.0 }}, "reward": r,
                });
                lines.push_str(&row.to_string());
                lines.push('\n');
            }
            std::fs::write(sd.join("eval_completions.jsonl"), lines).unwrap();
            std::fs::write(
                sd.join("eval.json"),
                json!({"step": step, "metrics": {"mean_reward": mean}}).to_string(),
            )
            .unwrap();
            completed.push(json!({
                "id": id, "kind": "eval",
                "started_at": "2026-11-22T00:00:00Z", "finished_at": "2026-11-22T00:00:01Z",
                "outputs": {
                    "eval": {"mean_reward": mean, "distinct_2": null},
                    "eval_best": null,
                    "completions": format!("stages/step-{step:04}_eval/eval_completions.jsonl"),
                    "summary": format!("stages/step-{step:04}_eval/eval.json"),
                }
            }));
        }
        std::fs::write(
            dir.join("state.json"),
            json!({"schema_version": 1, "run_id": id, "spec_hash": "abc", "completed": completed})
                .to_string(),
        )
        .unwrap();
        if let Some((m, v, s)) = &self.best {
            let t = dir.join("trainer");
            std::fs::create_dir_all(&t).unwrap();
            std::fs::write(
                t.join("training_state.json"),
                json!({"format_version": 1, "best": {"metric": m, "value": v, "step": s}})
                    .to_string(),
            )
            .unwrap();
        }
        dir
    }
}

/// Samples over 2 prompts × 2 completions with the given rewards (in key order).
pub fn four(rewards: [f64; 4]) -> Vec<Sample> {
    let texts = ["a b c", "a b d", "x y z", "x y x y"];
    (0..4)
        .map(|i| (i / 2, i % 2, rewards[i], texts[i]))
        .collect()
}
