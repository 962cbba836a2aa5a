//! Sweep expansion: counts, stable names, zip, seeds, exclusion, sum-to-one, and that each
//! point's `--set` flags reproduce it through resolution.

use runner::spec::resolve::{resolve, ResolveOptions};
use runner::spec::{Experiment, Sweep};
use runner::sweep::{expand, expand_sweep, format_value, set_value};
use serde_json::{json, Value};
use std::collections::BTreeMap;

fn sweep(v: Value) -> Sweep {
    serde_json::from_value(v).unwrap()
}

fn names(s: &Sweep) -> Vec<String> {
    expand_sweep("exp", s, &json!({}))
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect()
}

#[test]
fn grid_times_seeds_in_stable_order() {
    let s = sweep(json!({
        "grid": { "train.objective.diversity.lambda": [0.0, 0.3, 1.0, 2.0] },
        "seeds": [1, 2, 3]
    }));
    let n = names(&s);
    assert_eq!(n.len(), 12);
    assert_eq!(n[0], "exp@lambda=0.0,seed=1");
    assert_eq!(n[7], "exp@lambda=1.0,seed=2");
    assert_eq!(n[11], "exp@lambda=2.0,seed=3");
    let points = expand_sweep("exp", &s, &json!({})).unwrap();
    assert_eq!(
        points[7].sets,
        ["train.objective.diversity.lambda=1.0", "seed=2"]
    );
    assert_eq!(names(&s), n, "expansion is deterministic");
}

#[test]
fn grid_is_a_cartesian_product_and_zip_advances_together() {
    let s = sweep(json!({
        "grid": { "train.learning_rate": [1e-6, 5e-6], "generate.temperature": [0.8, 1.0, 1.2] },
        "zip": { "train.max_steps": [200, 600], "train.warmup_ratio": [0.1, 0.05] }
    }));
    let points = expand_sweep("exp", &s, &json!({})).unwrap();
    assert_eq!(points.len(), 2 * 3 * 2);
    // Grid paths in path order (generate.* before train.*), first outermost; zip innermost.
    assert_eq!(
        points[0].name,
        "exp@temperature=0.8,learning_rate=1e-6,max_steps=200,warmup_ratio=0.1"
    );
    assert_eq!(
        points[1].name,
        "exp@temperature=0.8,learning_rate=1e-6,max_steps=600,warmup_ratio=0.05"
    );
    assert_eq!(
        points[11].name,
        "exp@temperature=1.2,learning_rate=5e-6,max_steps=600,warmup_ratio=0.05"
    );
    // Zipped values never mix.
    for p in &points {
        let a: BTreeMap<&str, &Value> =
            p.assignments.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let pair = (
            a["train.max_steps"].as_u64().unwrap(),
            a["train.warmup_ratio"].as_f64().unwrap(),
        );
        assert!(pair == (200, 0.1) || pair == (600, 0.05), "{pair:?}");
    }
}

#[test]
fn zip_length_mismatch_is_an_error() {
    let s =
        sweep(json!({ "zip": { "train.max_steps": [200, 600], "train.learning_rate": [1e-6] } }));
    let err = expand_sweep("exp", &s, &json!({})).unwrap_err().to_string();
    assert!(
        err.contains("sweep.zip") && err.contains("same length"),
        "{err}"
    );
    assert!(
        err.contains("train.max_steps has 2") && err.contains("train.learning_rate has 1"),
        "{err}"
    );

    let empty = sweep(json!({ "grid": { "seed": [] } }));
    assert!(expand_sweep("exp", &empty, &json!({}))
        .unwrap_err()
        .to_string()
        .contains("empty"));
}

#[test]
fn exclusion_drops_matching_points() {
    let s = sweep(json!({
        "grid": { "train.objective.diversity.lambda": [0.0, 1.0, 2.0] },
        "seeds": [1, 2],
        "exclude": [ { "train.objective.diversity.lambda": 2, "seed": 2 }, { "train.objective.diversity.lambda": 0.0 } ]
    }));
    assert_eq!(
        names(&s),
        [
            "exp@lambda=1.0,seed=1",
            "exp@lambda=1.0,seed=2",
            "exp@lambda=2.0,seed=1"
        ]
    );
    let bad = sweep(json!({ "seeds": [1], "exclude": [ { "train.beta": 0.0 } ] }));
    let err = expand_sweep("exp", &bad, &json!({}))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("sweep.exclude[0]") && err.contains("train.beta") && err.contains("not swept"),
        "{err}"
    );
}

#[test]
fn sum_to_one_keeps_only_points_that_sum_to_one() {
    let base = json!({ "rewards": { "fmt": { "kind": "format", "weight": 0.2 } } });
    let s = sweep(json!({
        "grid": { "rewards.llm.weight": [0.0, 0.2, 0.4], "rewards.semantic.weight": [0.8, 0.6, 0.4] },
        "sum_to_one": ["rewards.llm.weight", "rewards.semantic.weight", "rewards.fmt.weight"]
    }));
    let points = expand_sweep("exp", &s, &base).unwrap();
    let n: Vec<&str> = points.iter().map(|p| p.name.as_str()).collect();
    // The two paths share the label `weight`, so names use the full paths.
    assert_eq!(
        n,
        [
            "exp@rewards.llm.weight=0.0,rewards.semantic.weight=0.8",
            "exp@rewards.llm.weight=0.2,rewards.semantic.weight=0.6",
            "exp@rewards.llm.weight=0.4,rewards.semantic.weight=0.4",
        ]
    );
    let missing = sweep(json!({ "seeds": [1], "sum_to_one": ["rewards.nope.weight"] }));
    assert!(expand_sweep("exp", &missing, &base)
        .unwrap_err()
        .to_string()
        .contains("rewards.nope.weight"));
}

#[test]
fn labels_override_short_names() {
    let s = sweep(json!({
        "grid": { "train.objective.diversity.lambda": [1.0] },
        "labels": { "train.objective.diversity.lambda": "λ" }
    }));
    assert_eq!(names(&s), ["exp@λ=1.0"]);
}

#[test]
fn value_formatting_is_stable() {
    assert_eq!(format_value(&json!(1.0)), "1.0");
    assert_eq!(format_value(&json!(0.3)), "0.3");
    assert_eq!(format_value(&json!(2)), "2");
    assert_eq!(format_value(&json!(5e-6)), "5e-6");
    assert_eq!(format_value(&json!("cosine")), "cosine");
    assert_eq!(
        set_value(&json!("true")),
        "\"true\"",
        "a string that YAML would read as a bool is quoted"
    );
    assert_eq!(set_value(&json!("a,b")), "\"a,b\"");
    assert_eq!(set_value(&json!([1, 2])), "[1,2]");
    let yaml_back: Value = serde_yaml::from_str(&set_value(&json!(5e-6))).unwrap();
    assert_eq!(yaml_back.as_f64(), Some(5e-6));
}

#[test]
fn no_sweep_gives_no_points() {
    assert!(expand(&Experiment::default()).unwrap().is_empty());
}

#[test]
fn each_point_is_reproducible_with_set_flags() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("poly.yaml");
    std::fs::write(
        &spec,
        "name: poly\nrewards:\n  q:\n    kind: quality\ntrain:\n  max_steps: 10\n  objective:\n    diversity:\n      kind: set_polychromic\n      lambda: 0.0\n\
         sweep:\n  grid:\n    train.objective.diversity.lambda: [0.0, 1.0]\n    train.lr_scheduler_type: [cosine, constant]\n  seeds: [7]\n",
    )
    .unwrap();
    let opts = ResolveOptions {
        sets: vec![],
        use_env: false,
    };
    let base = resolve(&spec, &opts).unwrap();
    let points = expand(&base.spec).unwrap();
    assert_eq!(points.len(), 4);
    // Grid axes in path order: train.lr_scheduler_type < train.objective.*.
    assert_eq!(
        points[2].name,
        "poly@lr_scheduler_type=constant,lambda=0.0,seed=7"
    );
    for p in &points {
        let r = resolve(
            &spec,
            &ResolveOptions {
                sets: p.sets.clone(),
                use_env: false,
            },
        )
        .unwrap();
        let v = serde_json::to_value(&r.spec).unwrap();
        for (path, want) in &p.assignments {
            let got = runner::sweep::lookup(&v, path).unwrap();
            assert!(
                runner::sweep::same_value(got, want),
                "{}: {path} = {got} ≠ {want}",
                p.name
            );
        }
    }
}

#[test]
fn cli_sweep_lists_points_and_apply_reports_each() {
    let exe = env!("CARGO_BIN_EXE_runner");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let spec = root.join("experiments/polychromic.yaml");
    if !spec.is_file() {
        eprintln!("experiments/polychromic.yaml absent: skipped");
        return;
    }
    let out = std::process::Command::new(exe)
        .current_dir(root)
        .args(["sweep", "--json", "--no-env"])
        .arg(&spec)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let points: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(points.len(), 12);
    assert_eq!(points[7]["name"], "polychromic@lambda=1.0,seed=2");

    let runs = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(exe)
        .current_dir(root)
        .args([
            "sweep",
            "--apply",
            "--quiet",
            "--no-env",
            "--set",
            "sweep.seeds=[1]",
            "--set",
            "model.base=/nonexistent/no-such-model",
            "--runs-dir",
        ])
        .arg(runs.path())
        .arg(&spec)
        .output()
        .unwrap();
    // A spec whose model does not exist is refused once, before any point starts.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("model path `/nonexistent/no-such-model` does not exist")
            && stderr.contains("nothing was planned or run"),
        "{stderr}"
    );
}
