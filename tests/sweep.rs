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

// ---------------------------------------------------------------------------------------------
// Tables, Slurm script and scheduler-state parsing
// ---------------------------------------------------------------------------------------------

use runner::sweep::slurm::{
    merge_status, parse_job_id, parse_states, render_script, shell_quote, task_ids, ArrayJob,
};
use runner::sweep::table::{render_csv, render_md, sorted, PointRecord, PointStatus, SortKey};

fn record(name: &str, lambda: f64, status: PointStatus, reward: Option<f64>) -> PointRecord {
    PointRecord {
        name: name.into(),
        assignments: vec![
            ("train.objective.diversity.lambda".into(), json!(lambda)),
            ("seed".into(), json!(1)),
        ],
        status,
        run_dir: Some(format!("runs/{name}/x").into()),
        wall_s: Some(12.34),
        error: (status == PointStatus::Failed).then(|| "boom | bad\nsecond line".into()),
        metrics: reward
            .map(|r| BTreeMap::from([("eval/mean_reward".to_string(), r)]))
            .unwrap_or_default(),
    }
}

#[test]
fn tables_have_one_row_per_point_and_sort_by_a_metric() {
    let recs = vec![
        record(
            "s@lambda=0.0,seed=1",
            0.0,
            PointStatus::Completed,
            Some(0.25),
        ),
        record("s@lambda=1.0,seed=1", 1.0, PointStatus::Failed, None),
        record(
            "s@lambda=2.0,seed=1",
            2.0,
            PointStatus::Completed,
            Some(0.5),
        ),
    ];
    let csv = render_csv(&recs).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "point,train.objective.diversity.lambda,seed,status,run_dir,wall_s,eval/mean_reward,error"
    );
    assert_eq!(
        lines[1],
        "\"s@lambda=0.0,seed=1\",0.0,1,completed,\"runs/s@lambda=0.0,seed=1/x\",12.340,0.25,"
    );
    // The error keeps its newline inside a quoted field.
    assert!(csv.contains("\"boom | bad\nsecond line\""), "{csv}");

    let desc = SortKey::parse("eval/mean_reward").unwrap();
    let order: Vec<&str> = sorted(&recs, &desc)
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(
        order,
        [
            "s@lambda=2.0,seed=1",
            "s@lambda=0.0,seed=1",
            "s@lambda=1.0,seed=1"
        ],
        "highest first, missing last"
    );
    let asc = SortKey::parse("eval/mean_reward:asc").unwrap();
    let order: Vec<&str> = sorted(&recs, &asc)
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(order[0], "s@lambda=0.0,seed=1");
    assert_eq!(order[2], "s@lambda=1.0,seed=1", "missing stays last");
    assert!(SortKey::parse(":asc").is_err());

    let md = render_md("s", &recs, &desc);
    assert!(md.contains("3 points: 2 completed, 1 failed."), "{md}");
    assert!(
        md.contains("Sorted by `eval/mean_reward` (descending)"),
        "{md}"
    );
    assert!(
        md.contains("| point | lambda | seed | status | wall s | eval/mean_reward |"),
        "{md}"
    );
    let first_row = md.lines().find(|l| l.starts_with("| s@")).unwrap();
    assert_eq!(
        first_row,
        "| s@lambda=2.0,seed=1 | 2.0 | 1 | completed | 12 | 0.5000 |"
    );
    // Pipes and newlines in errors cannot break the table.
    assert!(
        md.contains("- `s@lambda=1.0,seed=1`: boom \\| bad second line"),
        "{md}"
    );
}

fn job(tasks: usize) -> ArrayJob {
    ArrayJob {
        job_name: "poly@x".into(),
        workdir: "/work/proj".into(),
        log_dir: "/work/proj/runs/poly/slurm".into(),
        resources: serde_json::from_value(json!({
            "gpus": 1, "cpus": 4, "memory": "16G", "time": "02:00:00",
            "partition": "gpu", "account": "lab-1"
        }))
        .unwrap(),
        max_parallel: Some(2),
        tasks: (0..tasks)
            .map(|i| {
                (
                    format!("poly@seed={i}"),
                    vec![
                        "/opt/runner".into(),
                        "sweep".into(),
                        "it's.yaml".into(),
                        "--point".into(),
                        format!("poly@seed={i}"),
                    ],
                )
            })
            .collect(),
    }
}

#[test]
fn slurm_script_is_a_job_array_with_the_spec_resources() {
    let s = render_script(&job(3)).unwrap();
    for line in [
        "#!/bin/bash",
        "#SBATCH --job-name=poly_x",
        "#SBATCH --array=0-2%2",
        "#SBATCH --output=/work/proj/runs/poly/slurm/%A_%a.out",
        "#SBATCH --chdir=/work/proj",
        "#SBATCH --gres=gpu:1",
        "#SBATCH --cpus-per-task=4",
        "#SBATCH --mem=16G",
        "#SBATCH --time=02:00:00",
        "#SBATCH --partition=gpu",
        "#SBATCH --account=lab-1",
        "  1) exec /opt/runner sweep 'it'\\''s.yaml' --point poly@seed=1 ;;",
    ] {
        assert!(s.lines().any(|l| l == line), "{line:?} not in\n{s}");
    }
    // Directives come before the first command, as sbatch requires.
    let last_directive = s.rfind("#SBATCH").unwrap();
    assert!(last_directive < s.find("case ").unwrap());

    // A value that would end the directive and start a command is refused.
    let mut bad = job(1);
    bad.resources.partition = Some("gpu\nrm -rf /".into());
    let err = render_script(&bad).unwrap_err().to_string();
    assert!(err.contains("resources.partition"), "{err}");
    assert!(render_script(&job(0)).is_err());
    assert_eq!(shell_quote("a b"), "'a b'");
    assert_eq!(shell_quote("x@lambda=1.0,seed=2"), "x@lambda=1.0,seed=2");
    assert_eq!(shell_quote(""), "''");
}

#[test]
fn slurm_outputs_are_parsed() {
    assert_eq!(parse_job_id("1234\n").unwrap(), "1234");
    assert_eq!(parse_job_id("77;cluster\n").unwrap(), "77");
    assert!(parse_job_id("sbatch: error: x").is_err());
    assert_eq!(task_ids("12_3", "12"), [3]);
    assert_eq!(task_ids("12_3.batch", "12"), [3]);
    assert_eq!(task_ids("12_[0-2,5%2]", "12"), [0, 1, 2, 5]);
    assert!(task_ids("123_1", "12").is_empty(), "another job");
    assert!(task_ids("12", "12").is_empty(), "the array's own line");
    let st = parse_states(
        "12_0|COMPLETED\n12_1|CANCELLED by 0\n12_[2-3]|PENDING\nbad line\n",
        "12",
    );
    assert_eq!(st[&0], "COMPLETED");
    assert_eq!(st[&1], "CANCELLED");
    assert_eq!(st[&3], "PENDING");

    use PointStatus::*;
    assert_eq!(merge_status(Pending, Some("PENDING")).0, Queued);
    assert_eq!(merge_status(Pending, Some("RUNNING")).0, Running);
    assert_eq!(merge_status(Completed, Some("RUNNING")).0, Completed);
    let (s, why) = merge_status(Interrupted, Some("TIMEOUT"));
    assert_eq!(s, Failed);
    assert!(why.unwrap().contains("TIMEOUT"));
    assert_eq!(merge_status(Running, None).0, Running);
}
