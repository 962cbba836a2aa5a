//! `runner validate` on broken specs: every fixture in `tests/fixtures/broken/` must produce a
//! diagnostic at the exact line:col, with the field path and the key parts of the message
//! (and the did-you-mean where one applies). None may panic. The shipped experiments must all
//! validate.

use std::path::{Path, PathBuf};
use std::process::Command;

use runner::spec::resolve::ResolveOptions;
use runner::spec::validate::{validate_file, Diagnostic, Severity};

const DIR: &str = "tests/fixtures/broken";

/// What one fixture must report (among possibly other diagnostics).
struct Case {
    file: &'static str,
    line: usize,
    col: usize,
    path: &'static str,
    severity: Severity,
    message: &'static [&'static str],
    hint: Option<&'static str>,
}

const E: Severity = Severity::Error;
const W: Severity = Severity::Warning;

#[rustfmt::skip]
const CASES: &[Case] = &[
    // Typos in keys.
    Case { file: "key_typo_train.yaml", line: 15, col: 3, path: "train.lerning_rate", severity: E, message: &["unknown field `lerning_rate`"], hint: Some("did you mean `learning_rate`?") },
    Case { file: "key_typo_top.yaml", line: 15, col: 1, path: "evall", severity: E, message: &["unknown field `evall`"], hint: Some("did you mean `eval`?") },
    Case { file: "key_typo_generate.yaml", line: 16, col: 3, path: "generate.num_generation", severity: E, message: &["unknown field `num_generation`"], hint: Some("did you mean `num_generations`?") },
    Case { file: "key_typo_reward.yaml", line: 12, col: 5, path: "rewards.fmt.regx", severity: E, message: &["unknown field `regx`"], hint: Some("did you mean `regex`?") },
    Case { file: "key_typo_nested.yaml", line: 5, col: 5, path: "model.adapter.rank", severity: E, message: &["unknown field `rank`", "expected one of", "`r`", "`lora_alpha`"], hint: None },
    // Typos in enum values.
    Case { file: "enum_scheduler.yaml", line: 15, col: 22, path: "train.lr_scheduler_type", severity: E, message: &["unknown value `consine`", "`constant_with_warmup`"], hint: Some("did you mean `cosine`?") },
    Case { file: "enum_loss_type.yaml", line: 15, col: 14, path: "train.loss_type", severity: E, message: &["unknown value `drgrpo`", "`dapo`"], hint: Some("did you mean `dr_grpo`?") },
    Case { file: "enum_reward_kind.yaml", line: 11, col: 11, path: "rewards.fmt.kind", severity: E, message: &["unknown value `fromat`", "`semantic`"], hint: Some("did you mean `format`?") },
    Case { file: "enum_scale_rewards.yaml", line: 16, col: 18, path: "rank.scale_rewards", severity: E, message: &["unknown value `grup`", "`group`, `batch`, `none`"], hint: Some("did you mean `group`?") },
    Case { file: "enum_target_module.yaml", line: 5, col: 30, path: "model.adapter.target_modules.1", severity: E, message: &["unknown value `vproj`"], hint: Some("did you mean `v_proj`?") },
    // Wrong types and ranges.
    Case { file: "type_max_steps.yaml", line: 14, col: 14, path: "train.max_steps", severity: E, message: &["expected an integer or null, found the string `many`"], hint: None },
    Case { file: "type_learning_rate.yaml", line: 15, col: 18, path: "train.learning_rate", severity: E, message: &["expected a number, found the string `fast`"], hint: None },
    Case { file: "type_section_scalar.yaml", line: 13, col: 8, path: "train", severity: E, message: &["expected a mapping, found `5`"], hint: None },
    Case { file: "type_stop_string.yaml", line: 16, col: 9, path: "generate.stop", severity: E, message: &["expected a list, found the string `###`"], hint: None },
    Case { file: "range_num_generations_zero.yaml", line: 16, col: 20, path: "generate.num_generations", severity: E, message: &["must be at least 1, found 0"], hint: None },
    Case { file: "range_top_p.yaml", line: 16, col: 10, path: "generate.top_p", severity: E, message: &["must be at most 1", "found 1.5"], hint: None },
    Case { file: "name_pattern.yaml", line: 1, col: 7, path: "name", severity: E, message: &["`my run!` does not match the pattern"], hint: None },
    // Missing required fields.
    Case { file: "missing_regex.yaml", line: 10, col: 3, path: "rewards.fmt.regex", severity: E, message: &["missing required field `regex`"], hint: None },
    Case { file: "key_typo_reward.yaml", line: 10, col: 3, path: "rewards.fmt.regex", severity: E, message: &["missing required field `regex`"], hint: None },
    Case { file: "missing_data_path.yaml", line: 5, col: 3, path: "data.train.path", severity: E, message: &["missing required field `path`"], hint: None },
    Case { file: "missing_reward_kind.yaml", line: 10, col: 3, path: "rewards.fmt.kind", severity: E, message: &["missing required field `kind`", "`format`"], hint: None },
    // Bad extends and cycles.
    Case { file: "extends_missing.yaml", line: 1, col: 10, path: "extends", severity: E, message: &["parent spec `no_such_parent.yaml` not found"], hint: None },
    Case { file: "extends_cycle_a.yaml", line: 1, col: 10, path: "extends", severity: E, message: &["extends cycle:", "extends_cycle_a.yaml → ", "extends_cycle_b.yaml → ", "extends_cycle_b.yaml"], hint: None },
    Case { file: "extends_self.yaml", line: 2, col: 10, path: "extends", severity: E, message: &["extends cycle:", "extends_self.yaml"], hint: None },
    Case { file: "extends_bad_type.yaml", line: 1, col: 10, path: "extends", severity: E, message: &["expected a string or null, found a list"], hint: None },
    // A problem in a parent is reported in the parent file.
    Case { file: "extends_parent_typo.yaml", line: 15, col: 3, path: "train.epsilon_hihg", severity: E, message: &["unknown field `epsilon_hihg`"], hint: Some("did you mean `epsilon_high`?") },
    // YAML syntax and structure.
    Case { file: "yaml_bad_indent.yaml", line: 5, col: 4, path: "", severity: E, message: &["YAML syntax error", "did not find expected key"], hint: None },
    Case { file: "yaml_unclosed_flow.yaml", line: 5, col: 1, path: "", severity: E, message: &["YAML syntax error"], hint: None },
    Case { file: "yaml_tab_indent.yaml", line: 2, col: 2, path: "", severity: E, message: &["YAML syntax error", "tabs"], hint: None },
    Case { file: "duplicate_key.yaml", line: 15, col: 1, path: "train", severity: E, message: &["duplicate key `train`"], hint: None },
    Case { file: "not_a_mapping.yaml", line: 1, col: 1, path: "", severity: E, message: &["a spec must be a mapping"], hint: None },
    // Semantic rules.
    Case { file: "num_generations_one.yaml", line: 16, col: 20, path: "generate.num_generations", severity: E, message: &["must be at least 2, found 1"], hint: None },
    Case { file: "micro_batch_indivisible.yaml", line: 16, col: 21, path: "train.micro_batch_size", severity: E, message: &["3 does not divide the 8 completions", "batch_size 2 × num_generations 4"], hint: None },
    Case { file: "warmup_too_long.yaml", line: 15, col: 17, path: "train.warmup_steps", severity: E, message: &["warm-up of 20 steps does not end within the run of 10 steps"], hint: None },
    Case { file: "warmup_ratio_whole_run.yaml", line: 15, col: 17, path: "train.warmup_ratio", severity: E, message: &["warm-up of 10 steps does not end within the run of 10 steps"], hint: None },
    Case { file: "epsilon_high_below.yaml", line: 16, col: 17, path: "train.epsilon_high", severity: E, message: &["0.1 is below epsilon 0.2"], hint: None },
    Case { file: "composite_undefined.yaml", line: 18, col: 7, path: "rewards.total.components.frmt", severity: E, message: &["no reward named `frmt`"], hint: Some("did you mean `fmt`?") },
    Case { file: "gate_undefined.yaml", line: 18, col: 15, path: "rewards.total.gate.reward", severity: E, message: &["no reward named `validty`"], hint: Some("did you mean `validity`?") },
    Case { file: "retry_on_undefined.yaml", line: 17, col: 13, path: "generate.retry_on", severity: E, message: &["no reward named `fmtt`"], hint: Some("did you mean `fmt`?") },
    Case { file: "all_weights_zero.yaml", line: 10, col: 3, path: "rewards", severity: E, message: &["every reward has weight 0"], hint: None },
    Case { file: "task_undefined.yaml", line: 15, col: 13, path: "rewards.fmt.tasks.0", severity: E, message: &["task `extracton` is not in data.task.names"], hint: Some("did you mean `extraction`?") },
    Case { file: "profile_undefined.yaml", line: 18, col: 12, path: "generate.profile", severity: E, message: &["no sampler profile `tigth`"], hint: Some("did you mean `tight`?") },
    Case { file: "eval_set_undefined.yaml", line: 16, col: 16, path: "eval.sets.1", severity: E, message: &["no data source `holdot`"], hint: None },
    Case { file: "sweep_path_typo.yaml", line: 17, col: 5, path: "sweep.grid.train.learnig_rate", severity: E, message: &["`train.learnig_rate` is not a field of the spec"], hint: Some("did you mean `learning_rate`?") },
    Case { file: "zip_unequal.yaml", line: 17, col: 26, path: "sweep.zip.train.learning_rate", severity: E, message: &["has 2 values but `seed` has 3"], hint: None },
    Case { file: "partitions_reversed.yaml", line: 19, col: 9, path: "schedule.partitions.to", severity: E, message: &["ends (20250802) before it starts (20250811)"], hint: None },
    Case { file: "model_unknown.yaml", line: 3, col: 9, path: "model.base", severity: E, message: &["`smollm2-135m` is not a known model"], hint: Some("did you mean `smollm2-135m-instruct`?") },
    // Missing files.
    Case { file: "missing_data_file.yaml", line: 6, col: 11, path: "data.train.path", severity: E, message: &["file `tests/fixtures/broken/data/nope.jsonl` does not exist"], hint: None },
    Case { file: "missing_sqlite.yaml", line: 12, col: 15, path: "rewards.sql.database", severity: E, message: &["file `tests/fixtures/broken/data/shop.db` does not exist"], hint: None },
    Case { file: "partitions_dir_missing.yaml", line: 6, col: 11, path: "data.train.path", severity: E, message: &["directory", "nodir", "of the `{date}` pattern does not exist"], hint: None },
    // Paths outside the spec's project and allowed roots (the check `apply` and `plan` share).
    Case { file: "path_outside_project.yaml", line: 6, col: 11, path: "data.train.path", severity: E, message: &["`/etc/passwd.jsonl` is outside the spec's project and the allowed roots", ".runner-allowed-roots"], hint: None },
    // Warnings: the spec stays valid.
    Case { file: "partitions_missing_dates.yaml", line: 6, col: 11, path: "data.train.path", severity: W, message: &["2 of 4 partition dates have no file: 20250802, 20250804"], hint: None },
    Case { file: "gspo_no_iterations.yaml", line: 15, col: 30, path: "train.importance_sampling_level", severity: W, message: &["importance ratio is always 1", "GSPO trains exactly like GRPO"], hint: None },
    Case { file: "dr_grpo_std_scaling.yaml", line: 17, col: 18, path: "rank.scale_rewards", severity: W, message: &["Dr. GRPO", "std scaling"], hint: Some("set rank.scale_rewards: none") },
    Case { file: "text_penalty_no_gradient.yaml", line: 17, col: 13, path: "train.objective.diversity.kind", severity: W, message: &["`text_penalty` has no gradient"], hint: Some("use set_polychromic or diversity_bonus") },
];

fn opts() -> ResolveOptions {
    ResolveOptions {
        sets: Vec::new(),
        use_env: false,
    }
}

fn fixture(name: &str) -> PathBuf {
    Path::new(DIR).join(name)
}

fn show(diags: &[Diagnostic]) -> String {
    diags
        .iter()
        .map(|d| format!("  {d}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn every_broken_spec_is_located_and_explained() {
    assert!(CASES.len() >= 30);
    let mut failures = Vec::new();
    for case in CASES {
        let path = fixture(case.file);
        let diags = validate_file(&path, &opts());
        let found = diags.iter().find(|d| {
            d.line == case.line
                && d.col == case.col
                && d.path == case.path
                && d.severity == case.severity
                && case.message.iter().all(|m| d.message.contains(m))
                && d.hint.as_deref() == case.hint
        });
        if found.is_none() {
            failures.push(format!(
                "{}: expected {}:{} `{}` {:?} {:?} hint {:?}; got:\n{}",
                case.file,
                case.line,
                case.col,
                case.path,
                case.severity,
                case.message,
                case.hint,
                show(&diags)
            ));
        }
        let has_error = diags.iter().any(Diagnostic::is_error);
        if has_error != (case.severity == Severity::Error) {
            failures.push(format!(
                "{}: valid = {} but the case is a {:?}:\n{}",
                case.file,
                !has_error,
                case.severity,
                show(&diags)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn the_file_is_the_one_that_wrote_the_value() {
    // The typo is in the parent: it is reported there, not in the child.
    let diags = validate_file(&fixture("extends_parent_typo.yaml"), &opts());
    let d = diags
        .iter()
        .find(|d| d.path == "train.epsilon_hihg")
        .expect("the parent's typo");
    assert_eq!(d.file, format!("{DIR}/parent_with_typo.yaml"));
    let cycle = validate_file(&fixture("extends_cycle_a.yaml"), &opts());
    assert_eq!(
        cycle[0].file,
        format!("{DIR}/extends_cycle_b.yaml"),
        "{}",
        show(&cycle)
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let diags = validate_file(&fixture("many_problems.yaml"), &opts());
    let lines: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
    assert_eq!(
        lines,
        vec![
            format!("{DIR}/many_problems.yaml:15:3: train.lerning_rate: unknown field `lerning_rate` (did you mean `learning_rate`?)"),
            format!("{DIR}/many_problems.yaml:16:14: train.loss_type: unknown value `grop`, expected one of `grpo`, `bnpo`, `dr_grpo`, `dapo` (did you mean `grpo`?)"),
            format!("{DIR}/many_problems.yaml:17:15: train.batch_size: expected an integer, found the string `two`"),
            format!("{DIR}/many_problems.yaml:19:3: generate.temprature: unknown field `temprature` (did you mean `temperature`?)"),
        ]
    );
}

#[test]
fn set_flags_are_located_by_the_flag() {
    let mut o = opts();
    o.sets = vec!["train.max_steps=abc".into()];
    let diags = validate_file(&fixture("gspo_no_iterations.yaml"), &o);
    let d = diags
        .iter()
        .find(|d| d.is_error())
        .unwrap_or_else(|| panic!("an error for the bad --set:\n{}", show(&diags)));
    assert_eq!(d.file, "--set train.max_steps=abc", "{}", show(&diags));
    assert_eq!(d.path, "train.max_steps");
    assert_eq!((d.line, d.col), (0, 0));
    assert!(
        d.to_string()
            .starts_with("--set train.max_steps=abc: train.max_steps: "),
        "{d}"
    );
}

#[test]
fn set_values_meet_the_schema_minimums_too() {
    let mut o = opts();
    o.sets = vec!["generate.temperature=-1".into()];
    let diags = validate_file(&fixture("gspo_no_iterations.yaml"), &o);
    let errors: Vec<String> = diags
        .iter()
        .filter(|d| d.is_error())
        .map(|d| d.to_string())
        .collect();
    assert_eq!(
        errors,
        vec![
            "--set generate.temperature=-1: generate.temperature: must be at least 0.0, found -1.0"
                .to_string()
        ],
        "{}",
        show(&diags)
    );
    o.sets = vec!["generate.temperature=0.5".into()];
    let diags = validate_file(&fixture("gspo_no_iterations.yaml"), &o);
    assert!(!diags.iter().any(|d| d.is_error()), "{}", show(&diags));
}

#[test]
fn no_input_panics() {
    // Every fixture, and some hostile documents, come back as diagnostics.
    let dir = tempfile::tempdir().expect("tempdir");
    let hostile = [
        "",
        "~",
        "[",
        "{a: [}",
        "a: &x [*x]",
        "? [a, b]\n: c\n",
        "train: {max_steps: 1e400}",
        "rewards: {r: {kind: composite, components: {r: 1.0}}}",
        "rewards: [1, 2]",
        "generate: {num_generations: -3}",
        "schedule: {mode: partitions, partitions: {from: '2025', to: 'x'}}",
        "\u{feff}train: {}",
        "extends: ''",
        "extends: /",
        "sweep: {grid: {'': [1]}, zip: {'a..b': []}}",
        "model: {base: ''}",
        "train: {max_steps: 18446744073709551615, warmup_ratio: 0.5}",
    ];
    for (i, text) in hostile.iter().enumerate() {
        let p = dir.path().join(format!("h{i}.yaml"));
        std::fs::write(&p, text).expect("write");
        let _ = validate_file(&p, &opts());
    }
    for entry in std::fs::read_dir(DIR).expect("fixtures") {
        let p = entry.expect("entry").path();
        if p.extension().is_some_and(|e| e == "yaml") {
            let _ = validate_file(&p, &opts());
        }
    }
}

#[test]
fn shipped_experiments_validate() {
    let dir = Path::new("experiments");
    let mut specs: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect(),
        Err(_) => Vec::new(),
    };
    specs.sort();
    if specs.is_empty() {
        eprintln!("skipping: no experiments/*.yaml yet");
        return;
    }
    let mut failures = Vec::new();
    for spec in &specs {
        let diags = validate_file(spec, &opts());
        if diags.iter().any(Diagnostic::is_error) {
            failures.push(show(&diags));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn runner(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_runner"))
        .args(args)
        .env_remove("RUNNER_TRAIN__MAX_STEPS")
        .output()
        .expect("run the runner binary");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn exit_codes() {
    let broken = format!("{DIR}/key_typo_train.yaml");
    let (code, out, _) = runner(&["validate", "--no-env", &broken]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("key_typo_train.yaml:15:3: train.lerning_rate: unknown field"),
        "{out}"
    );
    assert!(
        out.contains("1 file checked: 0 valid, 1 invalid; 1 error, 0 warnings"),
        "{out}"
    );

    let warn_only = format!("{DIR}/gspo_no_iterations.yaml");
    let (code, out, _) = runner(&["validate", "--no-env", &warn_only]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("warning: `sequence` with num_iterations = 1"),
        "{out}"
    );

    let (code, _, err) = runner(&[
        "validate",
        "--no-env",
        "tests/fixtures/broken/does_not_exist.yaml",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("does_not_exist.yaml"), "{err}");

    let (code, _, _) = runner(&["validate"]);
    assert_eq!(code, 2, "missing FILE is a usage error");

    let (code, out, _) = runner(&[
        "validate", "--no-env", "--format", "json", &broken, &warn_only,
    ]);
    assert_eq!(code, 1, "{out}");
    let doc: serde_json::Value = serde_json::from_str(&out).expect("JSON output");
    assert_eq!(doc["errors"], 1);
    assert_eq!(doc["warnings"], 1);
    assert_eq!(doc["files"][0]["valid"], false);
    assert_eq!(
        doc["files"][0]["diagnostics"][0]["path"],
        "train.lerning_rate"
    );
    assert_eq!(doc["files"][0]["diagnostics"][0]["line"], 15);
    assert_eq!(
        doc["files"][0]["diagnostics"][0]["hint"],
        "did you mean `learning_rate`?"
    );
    assert_eq!(doc["files"][1]["valid"], true);

    let (code, out, _) = runner(&["validate", "--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("runner validate experiments/"), "{out}");

    let (code, out, _) = runner(&[
        "validate",
        "--no-env",
        &warn_only,
        "--set",
        "train.num_iterations=2",
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("warning:"), "--set applies: {out}");
}
