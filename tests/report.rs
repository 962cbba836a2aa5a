//! `runner report` and `report::runs::final_metrics` on fabricated run directories: the
//! markdown / CSV / HTML files, the per-partition table with first→last drift, plots that
//! survive missing, NaN and single values.

mod report_fixture;

use assert_cmd::Command;
use report_fixture::{four, FakeRun};
use runner::run::summary::{write_summaries, PartitionSummary};

fn steps_run(root: &std::path::Path) -> std::path::PathBuf {
    let mut r = FakeRun::new("quick", 3);
    r.steps = vec![
        (1, Some(0.25), Some(f64::NAN)),
        (2, None, Some(0.01)),
        (3, Some(0.5), Some(0.02)),
        (4, Some(0.75), None),
    ];
    r.evals = vec![
        (1, 0.5, four([0.0, 1.0, 0.5, 0.0])),
        (3, 0.625, four([1.0, 1.0, 0.5, 0.0])),
    ];
    r.best = Some(("mean_reward".into(), 0.625, 4));
    r.tasks = vec![
        (0, "math".into(), 0.2),
        (1, "math".into(), 0.4),
        (1, "sql".into(), 0.1),
    ];
    r.write(root, "20260101T000000Z-cafe")
}

#[test]
fn final_metrics_of_a_run() {
    let d = tempfile::tempdir().unwrap();
    let run = steps_run(d.path());
    let m = runner::report::runs::final_metrics(&run).unwrap();
    assert_eq!(m["train/step"], 4.0);
    assert_eq!(m["train/reward"], 0.75);
    assert!(
        !m.contains_key("train/kl"),
        "an empty cell is left out, not 0"
    );
    assert_eq!(m["eval/mean_reward"], 0.625);
    assert_eq!(m["eval/step"], 4.0);
    assert!(
        !m.contains_key("eval/distinct_2"),
        "a null eval metric is left out"
    );
    assert_eq!(m["eval_best/mean_reward"], 0.625);
    assert_eq!(m["eval_best/step"], 4.0);
    let s = runner::report::runs::eval_samples(&run).unwrap();
    assert_eq!(s.metrics["mean_reward"].len(), 4);
    assert_eq!(s.mean("mean_reward"), Some(0.625));
    assert!(s.metrics["mean_reward"].contains_key("eval/r0/1"));
    // pass@1 per prompt: prompt 0 has 2 of 2 passing, prompt 1 none.
    assert_eq!(s.metrics["pass@1"]["eval/r0"], 1.0);
    assert_eq!(s.metrics["pass@1"]["eval/r1"], 0.0);
}

#[test]
fn report_of_a_steps_run() {
    let d = tempfile::tempdir().unwrap();
    let run = steps_run(d.path());
    let out = Command::cargo_bin("runner")
        .unwrap()
        .arg("report")
        .arg(&run)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let md = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(
        md.contains("# Run report: quick (20260101T000000Z-cafe)"),
        "{md}"
    );
    assert!(md.contains("| step-0003/eval ★ best | 4 |"), "{md}");
    assert!(md.contains("Skipped: not a partitioned run"), "{md}");
    let csv = std::fs::read_to_string(run.join("report.csv")).unwrap();
    assert!(csv.starts_with("metric,value\n") && csv.contains("eval/mean_reward,0.625"));
    let html = std::fs::read_to_string(run.join("report.html")).unwrap();
    assert!(!html.contains("http://") && !html.contains("https://") && !html.contains("<script"));
    for id in [
        "reward",
        "reward-per-function",
        "reward-per-task",
        "kl",
        "lr",
        "grad-norm",
        "completion-length",
        "eval",
    ] {
        assert!(
            html.contains(&format!("id=\"plot-{id}\" data-has-data=\"true\"")),
            "{id}"
        );
    }
    assert!(!html.contains("NaN") && !html.contains("inf,"));
    assert!(html.contains("best 0.6250"));
    // The NaN KL at step 1 and the missing one at step 4 leave one 2-point segment.
    let kl = html
        .split("id=\"plot-kl\"")
        .nth(1)
        .unwrap()
        .split("</figure>")
        .next()
        .unwrap();
    assert_eq!(kl.matches("<path class=\"line\"").count(), 1);
    assert_eq!(kl.matches("M").count(), 1, "{kl}");
}

#[test]
fn report_of_a_partitioned_run_has_the_summary_table_with_drift() {
    let d = tempfile::tempdir().unwrap();
    let mut r = FakeRun::new("daily", 1);
    r.evals = vec![(0, 0.3, four([0.0, 0.5, 0.5, 0.2]))];
    let run = r.write(d.path(), "20260101T000000Z-beef");
    let row = |date: &str, comp: Option<f64>, status: &str| PartitionSummary {
        date: date.into(),
        status: status.into(),
        headlines: 32,
        rollouts: 256,
        sampler: Some("tight".into()),
        validity: Some(0.0),
        composite_reward: comp,
        trade_thinking: Some(0.15),
        ..PartitionSummary::default()
    };
    write_summaries(
        &run,
        &[
            row("20250802", Some(0.2933), "done"),
            row("20250803", None, "skipped: no headlines"),
            row("20250804", Some(0.2110), "done"),
        ],
    )
    .unwrap();
    let files = runner::report::run_report::write_report(&run, None).unwrap();
    let md = std::fs::read_to_string(&files.markdown).unwrap();
    assert!(
        md.contains("| 20250802 | done | tight | 32 | 256 | 0.0000 | 0.2933 |"),
        "{md}"
    );
    assert!(md.contains("0.2933 → 0.2110 (−0.0823)"), "{md}");
    let csv = std::fs::read_to_string(&files.csv).unwrap();
    assert!(csv.starts_with("date,status,sampler,headlines,rollouts,validity,composite_reward"));
    let drift = csv.lines().last().unwrap();
    let comp: f64 = drift.split(',').nth(6).unwrap().parse().unwrap();
    assert!((comp - (0.2110 - 0.2933)).abs() < 1e-12, "{drift}");
    let html = std::fs::read_to_string(&files.html).unwrap();
    assert!(html.contains("first→last"));
    // No training rows: the step plots say so instead of failing.
    assert!(html.contains("id=\"plot-reward\" data-has-data=\"false\""));
    assert!(html.contains("no data"));
    // A single eval point is drawn as a dot.
    let ev = html
        .split("id=\"plot-eval\"")
        .nth(1)
        .unwrap()
        .split("</figure>")
        .next()
        .unwrap();
    assert!(ev.contains("class=\"dot\""), "{ev}");
}

#[test]
fn report_of_a_non_run_is_an_error() {
    let d = tempfile::tempdir().unwrap();
    let out = Command::cargo_bin("runner")
        .unwrap()
        .arg("report")
        .arg(d.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("neither a run directory"));
}
