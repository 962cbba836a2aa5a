//! `runner diff`: resolved specs compared leaf by leaf, in text, JSON and Markdown, with the
//! exit codes 0 same / 1 different / 2 error; run directories compare their recorded spec.

use std::process::Command;

const V4_1_CHANGES: &str = "\
rewards.extraction.parser: strict → tolerant
train.learning_rate: 2e-6 → 5e-6
train.lr_scheduler_type: cosine → constant_with_warmup
train.warmup_ratio: 0.1 → 0.05
train.max_steps: 200 → 600
";

fn runner(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_runner"))
        .args(args)
        .output()
        .expect("run the runner binary");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn have_v4() -> bool {
    let ok = std::path::Path::new("experiments/v4.yaml").is_file()
        && std::path::Path::new("experiments/v4_1.yaml").is_file();
    if !ok {
        eprintln!("skipping: experiments/v4.yaml or v4_1.yaml is missing");
    }
    ok
}

#[test]
fn v4_to_v4_1_is_exactly_the_four_changes() {
    if !have_v4() {
        return;
    }
    let (code, out, err) = runner(&[
        "diff",
        "--no-env",
        "experiments/v4.yaml",
        "experiments/v4_1.yaml",
    ]);
    assert_eq!(code, 1, "{err}");
    // 1. tolerant parser, 2. max_steps, 3. schedule (kind and warm-up), 4. learning rate.
    assert_eq!(out, V4_1_CHANGES);
}

#[test]
fn same_specs_exit_zero_and_print_nothing() {
    if !have_v4() {
        return;
    }
    let (code, out, _) = runner(&[
        "diff",
        "--no-env",
        "experiments/v4_1.yaml",
        "experiments/v4_1.yaml",
    ]);
    assert_eq!((code, out.as_str()), (0, ""));
    // Defaults are accounted for: writing a default out is no difference.
    let dir = tempfile::tempdir().expect("tempdir");
    let a = dir.path().join("a.yaml");
    let b = dir.path().join("b.yaml");
    std::fs::write(&a, "train: {max_steps: 5}\n").expect("write");
    std::fs::write(
        &b,
        "train: {max_steps: 5, epsilon: 0.2, lr_scheduler_type: linear}\nseed: 42\n",
    )
    .expect("write");
    let (code, out, err) = runner(&["diff", "--no-env", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert_eq!((code, out.as_str()), (0, ""), "{err}");
    // --all also shows the names (the file stems).
    let (code, out, _) = runner(&[
        "diff",
        "--no-env",
        "--all",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
    ]);
    assert_eq!((code, out.as_str()), (1, "name: a → b\n"));
}

#[test]
fn added_and_removed_leaves_and_set_flags() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = dir.path().join("a.yaml");
    let b = dir.path().join("b.yaml");
    std::fs::write(&a, "rewards:\n  f: {kind: format, regex: x}\n").expect("write");
    std::fs::write(&b, "rewards:\n  g: {kind: format, regex: x, weight: 0.5}\n").expect("write");
    let (code, out, err) = runner(&["diff", "--no-env", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines.contains(&"rewards.f.kind: format → (absent)"),
        "{out}"
    );
    assert!(lines.contains(&"rewards.f.regex: x → (absent)"), "{out}");
    assert!(lines.contains(&"rewards.g.weight: (absent) → 0.5"), "{out}");
    let first_added = lines
        .iter()
        .position(|l| l.starts_with("rewards.g."))
        .unwrap();
    assert!(
        lines[..first_added]
            .iter()
            .all(|l| l.starts_with("rewards.f.")),
        "A's leaves first: {out}"
    );
    // --set applies to both sides.
    let (code, out, _) = runner(&[
        "diff",
        "--no-env",
        a.to_str().unwrap(),
        a.to_str().unwrap(),
        "--set",
        "train.max_steps=3",
    ]);
    assert_eq!((code, out.as_str()), (0, ""));
}

#[test]
fn json_and_markdown_formats() {
    if !have_v4() {
        return;
    }
    let (code, out, _) = runner(&[
        "diff",
        "--no-env",
        "--format",
        "json",
        "experiments/v4.yaml",
        "experiments/v4_1.yaml",
    ]);
    assert_eq!(code, 1);
    let doc: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(doc["same"], false);
    assert_eq!(doc["a"], "experiments/v4.yaml");
    let changes = doc["changes"].as_array().expect("changes");
    assert_eq!(changes.len(), 5);
    assert_eq!(changes[4]["path"], "train.max_steps");
    assert_eq!(changes[4]["kind"], "changed");
    assert_eq!(changes[4]["old"], 200);
    assert_eq!(changes[4]["new"], 600);
    assert_eq!(changes[1]["old"], 2e-6);

    let (code, out, _) = runner(&[
        "diff",
        "--no-env",
        "--format",
        "markdown",
        "experiments/v4.yaml",
        "experiments/v4_1.yaml",
    ]);
    assert_eq!(code, 1);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        "| field | experiments/v4.yaml | experiments/v4_1.yaml |"
    );
    assert_eq!(lines[1], "|---|---|---|");
    assert_eq!(
        lines[2],
        "| `rewards.extraction.parser` | `strict` | `tolerant` |"
    );
    assert_eq!(lines[6], "| `train.max_steps` | `200` | `600` |");
    assert_eq!(lines.len(), 7);
}

#[test]
fn run_directories_compare_their_resolved_spec() {
    if !have_v4() {
        return;
    }
    let run = tempfile::tempdir().expect("tempdir");
    let resolved = runner::spec::resolve::resolve(
        std::path::Path::new("experiments/v4_1.yaml"),
        &runner::spec::resolve::ResolveOptions {
            sets: Vec::new(),
            use_env: false,
        },
    )
    .expect("v4_1 resolves");
    let yaml = runner::spec::resolve::resolved_yaml(&resolved.spec).expect("yaml");
    std::fs::write(run.path().join("spec.resolved.yaml"), yaml).expect("write");
    let dir = run.path().to_str().unwrap();
    let (code, out, err) = runner(&["diff", "--no-env", "experiments/v4_1.yaml", dir]);
    assert_eq!((code, out.as_str()), (0, ""), "{err}");
    let (code, out, _) = runner(&["diff", "--no-env", "experiments/v4.yaml", dir]);
    assert_eq!((code, out.as_str()), (1, V4_1_CHANGES));
}

#[test]
fn errors_exit_two() {
    let (code, _, err) = runner(&[
        "diff",
        "--no-env",
        "experiments/nope.yaml",
        "experiments/v4.yaml",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("nope.yaml"), "{err}");
    let empty = tempfile::tempdir().expect("tempdir");
    let (code, _, err) = runner(&[
        "diff",
        "--no-env",
        empty.path().to_str().unwrap(),
        "experiments/v4.yaml",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("spec.resolved.yaml"), "{err}");
    let (code, _, err) = runner(&[
        "diff",
        "--no-env",
        "tests/fixtures/broken/key_typo_train.yaml",
        "experiments/v4.yaml",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("lerning_rate"), "{err}");
    let (code, _, _) = runner(&["diff", "experiments/v4.yaml"]);
    assert_eq!(code, 2, "usage error");
    let (code, out, _) = runner(&["diff", "--help"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("runner diff experiments/v4.yaml experiments/v4_1.yaml"),
        "{out}"
    );
}
