//! `runner compare`: the statistics on hand-computed cases, and the CLI on fabricated runs
//! (seed aggregation, changes in %, exact p-values, JSON output).

mod report_fixture;

use assert_cmd::Command;
use report_fixture::{four, FakeRun};
use runner::report::stats::{bootstrap_mean_ci, paired_permutation_test};

#[test]
fn exact_permutation_p_values_by_hand() {
    // All positive: only the all-+ and all-− assignments reach |Σ| = 10 → 2/16.
    let t = paired_permutation_test(&[1.0, 2.0, 3.0, 4.0], 1000, 0, 16).unwrap();
    assert!(t.exact);
    assert_eq!(t.permutations, 16);
    assert!((t.p - 0.125).abs() < 1e-12);
    // [1, 2, −3, 4]: |Σ| = 4; 10 of the 16 assignments reach it (enumerated by hand/Python).
    let t = paired_permutation_test(&[1.0, 2.0, -3.0, 4.0], 1000, 0, 16).unwrap();
    assert!((t.p - 0.625).abs() < 1e-12, "{}", t.p);
    // Six differences: 4 of 64.
    let t = paired_permutation_test(&[0.5, 1.5, 2.0, -0.25, 1.0, 3.0], 1000, 0, 16).unwrap();
    assert!((t.p - 0.0625).abs() < 1e-12, "{}", t.p);
    // Zero differences do not count; all zero → p = 1.
    let t = paired_permutation_test(&[0.0, 1.0, 2.0, 3.0, 4.0, 0.0], 1000, 0, 16).unwrap();
    assert!((t.p - 0.125).abs() < 1e-12);
    assert_eq!(t.pairs, 6);
    assert_eq!(
        paired_permutation_test(&[0.0, 0.0], 10, 0, 16).unwrap().p,
        1.0
    );
    // Empty or non-finite input is an error, not a p-value.
    assert!(paired_permutation_test(&[], 10, 0, 16).is_err());
    assert!(paired_permutation_test(&[1.0, f64::NAN], 10, 0, 16).is_err());
}

#[test]
fn monte_carlo_p_value_is_close_reproducible_and_never_zero() {
    let d: Vec<f64> = (0..18)
        .map(|i| {
            if i % 3 == 0 {
                -0.4
            } else {
                0.3 + 0.01 * i as f64
            }
        })
        .collect();
    let exact = paired_permutation_test(&d, 0, 0, 20).unwrap();
    assert!(exact.exact);
    let mc = paired_permutation_test(&d, 20_000, 7, 4).unwrap();
    assert!(!mc.exact);
    // MC standard error ≈ sqrt(p(1−p)/B) < 0.004.
    assert!(
        (mc.p - exact.p).abs() < 0.015,
        "mc {} exact {}",
        mc.p,
        exact.p
    );
    assert_eq!(mc, paired_permutation_test(&d, 20_000, 7, 4).unwrap());
    let big = vec![1.0; 40];
    let t = paired_permutation_test(&big, 1000, 1, 16).unwrap();
    assert!(t.p > 0.0 && (t.p - 1.0 / 1001.0).abs() < 1e-12);
}

#[test]
fn bootstrap_ci_of_a_constant_and_reproducibility() {
    assert_eq!(
        bootstrap_mean_ci(&[0.7; 25], 500, 3, 0.95).unwrap(),
        (0.7, 0.7)
    );
    // 0/1 values, half ones: se = 0.5/√400 = 0.025, so the 95 % interval ≈ 0.5 ± 0.049.
    let xs: Vec<f64> = (0..400).map(|i| f64::from(i % 2)).collect();
    let (lo, hi) = bootstrap_mean_ci(&xs, 10_000, 42, 0.95).unwrap();
    assert!(
        (lo - 0.451).abs() < 0.006 && (hi - 0.549).abs() < 0.006,
        "{lo} {hi}"
    );
    assert_eq!((lo, hi), bootstrap_mean_ci(&xs, 10_000, 42, 0.95).unwrap());
    assert_ne!((lo, hi), bootstrap_mean_ci(&xs, 10_000, 43, 0.95).unwrap());
    assert!(bootstrap_mean_ci(&[], 10, 0, 0.95).is_err());
    assert!(bootstrap_mean_ci(&[1.0], 10, 0, 1.5).is_err());
}

fn runner() -> Command {
    Command::cargo_bin("runner").unwrap()
}

#[test]
fn cli_table_with_seed_groups_deltas_and_p_values() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    let mut base = FakeRun::new("baseline", 1);
    base.steps = vec![(1, Some(0.2), None), (2, Some(0.4), None)];
    base.evals = vec![(1, 1.0, four([1.0, 1.0, 1.0, 1.0]))];
    let a = base.write(root, "20260101T000000Z-aaaa");
    // Two seeds of another spec: per key (2, 3, 4, 5) and (2, 3, 4, 5) → mean diff 2.5.
    let mut poly = FakeRun::new("poly", 1);
    poly.name = "poly".into();
    poly.steps = vec![(1, Some(0.3), None)];
    poly.evals = vec![(1, 3.5, four([2.0, 3.0, 4.0, 5.0]))];
    let b1 = poly.write(root, "20260101T000000Z-bbb1");
    poly.seed = 2;
    let b2 = poly.write(root, "20260101T000000Z-bbb2");

    let out = runner()
        .args(["compare", "--resamples", "2000", "--json"])
        .args([&a, &b1, &b2])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let cols = v["columns"].as_array().unwrap();
    assert_eq!(cols.len(), 2, "{v:#}");
    assert_eq!(cols[1]["label"], "poly (2 seeds)");
    assert_eq!(cols[1]["seeds"], serde_json::json!([1, 2]));
    let row = v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["metric"] == "mean_reward")
        .unwrap();
    let c = &row["cells"][1];
    assert_eq!(c["value"], 3.5);
    assert_eq!(c["diff"], 2.5);
    assert_eq!(c["delta_pct"], 250.0);
    assert_eq!(c["pairs"], 4);
    assert_eq!(c["p"], 0.125);
    assert_eq!(c["p_exact"], true);
    assert_eq!(row["cells"][0]["ci"], serde_json::json!([1.0, 1.0]));
    // Per-prompt metrics are there (pass@k from the answer reward; diversity).
    let metrics: Vec<&str> = v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["metric"].as_str().unwrap())
        .collect();
    for m in [
        "distinct-2",
        "self-bleu",
        "pass@1",
        "pass@2",
        "train/reward",
    ] {
        assert!(metrics.contains(&m), "{m} missing from {metrics:?}");
    }

    // The markdown table: baseline first, change in %, p.
    let out = runner()
        .args(["compare", "--resamples", "500"])
        .args([&a, &b1, &b2])
        .output()
        .unwrap();
    let md = String::from_utf8(out.stdout).unwrap();
    assert!(
        md.starts_with("| Metric | baseline (baseline) | poly (2 seeds) | Change | p |"),
        "{md}"
    );
    assert!(
        md.contains("| mean_reward (sample) | 1.0000 [1.0000, 1.0000] | 3.5000"),
        "{md}"
    );
    assert!(md.contains("+250.0%") && md.contains("| 0.1250 |"), "{md}");
    assert!(md.contains("seeds 1, 2 averaged"), "{md}");

    // Reproducible with the seed.
    let run = |seed: &str| {
        runner()
            .args(["compare", "--json", "--resamples", "300", "--seed", seed])
            .args([&a, &b1])
            .output()
            .unwrap()
            .stdout
    };
    assert_eq!(run("5"), run("5"));

    // --no-aggregate keeps the seeds apart; --metric filters.
    let out = runner()
        .args([
            "compare",
            "--json",
            "--no-aggregate",
            "--metric",
            "mean_reward",
            "--resamples",
            "100",
        ])
        .args([&a, &b1, &b2])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["columns"].as_array().unwrap().len(), 3);
    assert_eq!(v["rows"].as_array().unwrap().len(), 1);
}

#[test]
fn cli_errors_name_the_problem() {
    let d = tempfile::tempdir().unwrap();
    let out = runner().args(["compare"]).arg(d.path()).output().unwrap();
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("neither a run directory"), "{e}");
}
