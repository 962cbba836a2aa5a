//! `runner sweep --apply` on a tiny model: sweep.csv / sweep.md with final metrics, a failing
//! point reported while the others run, and `--jobs 2` child processes (never more than two at
//! once).

mod common;
mod sweep_support;

use std::path::Path;
use sweep_support::{csv_rows, project, runner, text};

/// Four points: a negative temperature (under the schema's minimum) and a string temperature fail
/// validation (no run directory), the other two complete.
const SWEEP: &str = "sweep:\n  grid:\n    generate.temperature: [1.0, -1.0, hot, 0.7]\n";

fn check_tables(dir: &Path) -> Vec<std::collections::BTreeMap<String, String>> {
    let sweep_dir = dir.join("runs/tinysweep");
    let rows = csv_rows(&sweep_dir.join("sweep.csv"));
    let names: Vec<&str> = rows.iter().map(|r| r["point"].as_str()).collect();
    assert_eq!(
        names,
        [
            "tinysweep@temperature=1.0",
            "tinysweep@temperature=-1.0",
            "tinysweep@temperature=hot",
            "tinysweep@temperature=0.7"
        ]
    );
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r["generate.temperature"], ["1.0", "-1.0", "hot", "0.7"][i]);
        if i == 1 || i == 2 {
            assert_eq!(r["status"], "failed", "{r:?}");
            assert!(r["error"].contains("temperature"), "{r:?}");
            assert!(r["run_dir"].is_empty(), "{r:?}");
            continue;
        }
        assert_eq!(r["status"], "completed", "{r:?}");
        let run = dir.join(&r["run_dir"]);
        assert!(run.join("state.json").is_file(), "{r:?}");
        assert!(r["wall_s"].parse::<f64>().unwrap() > 0.0);
        // Final metrics from report::runs::final_metrics: train/* and eval/* columns.
        for k in ["train/reward", "train/loss", "eval/mean_reward"] {
            let v = r.get(k).unwrap_or_else(|| panic!("no {k} column: {r:?}"));
            assert!(v.parse::<f64>().is_ok_and(f64::is_finite), "{k} = {v:?}");
        }
        assert_eq!(r["train/step"], "1", "{r:?}");
        assert!(r["error"].is_empty(), "{r:?}");
    }
    let md = std::fs::read_to_string(sweep_dir.join("sweep.md")).unwrap();
    assert!(md.contains("4 points: 2 completed, 2 failed"), "{md}");
    assert!(md.contains("| tinysweep@temperature=0.7 |"), "{md}");
    assert!(md.contains("## Errors"), "{md}");
    rows
}

#[test]
fn apply_writes_tables_and_reports_a_failing_point() {
    let d = tempfile::tempdir().unwrap();
    let spec = project(d.path(), SWEEP);
    let out = runner(
        d.path(),
        &[
            "sweep",
            spec.to_str().unwrap(),
            "--apply",
            "--quiet",
            "--sort",
            "eval/mean_reward:asc",
        ],
    );
    let t = text(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a failed point makes the exit status 1\n{t}"
    );
    assert!(
        t.contains("[2/4] tinysweep@temperature=-1.0: failed"),
        "{t}"
    );
    assert!(t.contains("[3/4] tinysweep@temperature=hot: failed"), "{t}");
    assert!(
        t.contains("[4/4] tinysweep@temperature=0.7: completed"),
        "{t}"
    );
    assert!(t.contains("2 of 4 points completed, 2 failed"), "{t}");
    let rows = check_tables(d.path());
    let md = std::fs::read_to_string(d.path().join("runs/tinysweep/sweep.md")).unwrap();
    assert!(rows[0].contains_key("eval/mean_reward"));
    assert!(
        md.contains("Sorted by `eval/mean_reward` (ascending)"),
        "{md}"
    );

    // `sweep status FILE` reads the same from the run directories; the points that failed
    // validation have none, their error is recorded in runs/<point>/invalid.txt: failed.
    let st = runner(
        d.path(),
        &["sweep", "status", spec.to_str().unwrap(), "--json"],
    );
    let recs: Vec<serde_json::Value> =
        serde_json::from_slice(&st.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&st)));
    let statuses: Vec<&str> = recs.iter().map(|r| r["status"].as_str().unwrap()).collect();
    assert_eq!(
        statuses,
        ["completed", "failed", "failed", "completed"],
        "{}",
        text(&st)
    );
    let err = recs[1]["error"].as_str().unwrap_or_default();
    assert!(err.contains("generate.temperature"), "{err}");
}

#[test]
fn jobs_two_runs_children_at_most_two_at_once() {
    let d = tempfile::tempdir().unwrap();
    let spec = project(d.path(), SWEEP);
    let out = runner(
        d.path(),
        &["sweep", spec.to_str().unwrap(), "--apply", "--jobs", "2"],
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    let rows = check_tables(d.path());
    // Each child logged to runs/tinysweep/logs/<point>.log; the failing one says why.
    let log = std::fs::read_to_string(
        d.path()
            .join("runs/tinysweep/logs/tinysweep@temperature=-1.0.log"),
    )
    .unwrap();
    assert!(log.contains("temperature"), "{log}");
    assert!(rows[1]["error"].contains(".log"), "{:?}", rows[1]);

    // Never more than 2 runs at once: from the run directories' lifetimes.
    let mut spans = Vec::new();
    for r in rows.iter().filter(|r| !r["run_dir"].is_empty()) {
        let state: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(d.path().join(&r["run_dir"]).join("state.json")).unwrap(),
        )
        .unwrap();
        let at =
            |k: &str| chrono::DateTime::parse_from_rfc3339(state[k].as_str().unwrap()).unwrap();
        spans.push((at("created_at"), at("updated_at")));
    }
    for (s, _) in &spans {
        let live = spans.iter().filter(|(a, b)| a <= s && s <= b).count();
        assert!(live <= 2, "{spans:?}");
    }
}

#[test]
fn point_flag_runs_one_point_and_rejects_unknown_names() {
    let d = tempfile::tempdir().unwrap();
    let spec = project(d.path(), "sweep:\n  seeds: [1, 2]\n");
    let bad = runner(
        d.path(),
        &[
            "sweep",
            spec.to_str().unwrap(),
            "--apply",
            "--point",
            "nope",
        ],
    );
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
    assert!(text(&bad).contains("tinysweep@seed=2"), "{}", text(&bad));
    let one = runner(
        d.path(),
        &[
            "sweep",
            spec.to_str().unwrap(),
            "--apply",
            "--quiet",
            "--point",
            "tinysweep@seed=2",
        ],
    );
    assert!(one.status.success(), "{}", text(&one));
    let runs = d.path().join("runs");
    assert!(runs.join("tinysweep@seed=2").is_dir());
    assert!(!runs.join("tinysweep@seed=1").exists());
    let resolved = std::fs::read_dir(runs.join("tinysweep@seed=2"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let y = std::fs::read_to_string(resolved.join("spec.resolved.yaml")).unwrap();
    assert!(y.contains("seed: 2"), "{y}");
}
