//! The checked-in JSON Schema must be the one the spec types generate (run `runner schema`
//! after changing a spec type), and every example spec must satisfy it.

use std::path::PathBuf;

use runner::spec::types::{experiment_schema, experiment_schema_string, EXPERIMENT_SCHEMA_PATH};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn checked_in_schema_is_up_to_date() {
    let path = root().join(EXPERIMENT_SCHEMA_PATH);
    let on_disk = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run `runner schema`", path.display()));
    assert!(
        on_disk == experiment_schema_string(),
        "{} is stale: run `cargo run -- schema` and commit the result",
        path.display()
    );
}

#[test]
fn every_example_satisfies_the_schema() {
    let schema = experiment_schema();
    let validator = jsonschema::draft7::new(&schema).expect("the schema compiles");
    let dir = root().join("experiments");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("experiments/ exists") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("readable");
        let doc: serde_json::Value = serde_yaml::from_str(&text).expect("valid YAML");
        let errors: Vec<String> = validator
            .iter_errors(&doc)
            .map(|e| format!("{}: {e}", e.instance_path))
            .collect();
        assert!(errors.is_empty(), "{}: {errors:?}", path.display());
        checked += 1;
    }
    assert!(checked >= 10);
}

#[test]
fn schema_errors_point_at_the_offending_key() {
    let schema = experiment_schema();
    let validator = jsonschema::draft7::new(&schema).expect("the schema compiles");
    let bad: serde_json::Value = serde_yaml::from_str(
        "rewards:\n  a: {kind: json, parsr: x}\n  b: {kind: jsno}\ntrain: {loss_type: grpoo}\n",
    )
    .unwrap();
    let errors: Vec<(String, String)> = validator
        .iter_errors(&bad)
        .map(|e| (e.instance_path.to_string(), e.to_string()))
        .collect();
    let has =
        |path: &str, needle: &str| errors.iter().any(|(p, m)| p == path && m.contains(needle));
    assert!(has("/rewards/a", "parsr"), "{errors:?}");
    assert!(has("/rewards/b/kind", "jsno"), "{errors:?}");
    assert!(has("/train/loss_type", "grpoo"), "{errors:?}");
    // Descriptions reach the schema (editor hover text).
    let lr = &schema["definitions"]["Train"]["properties"]["learning_rate"]["description"];
    assert!(lr.as_str().is_some_and(|d| d.contains("TRL")));
}

#[test]
fn schema_command_writes_and_checks() {
    use assert_cmd::Command;
    let tmp = tempfile::tempdir().unwrap();
    let root_arg = tmp.path().to_str().expect("utf-8 temp path");
    // Missing file: --check fails.
    Command::cargo_bin("runner")
        .unwrap()
        .args(["schema", "--check", "--root", root_arg])
        .assert()
        .code(1);
    // Written: --check passes and the file is the generated schema.
    Command::cargo_bin("runner")
        .unwrap()
        .args(["schema", "--root", root_arg])
        .assert()
        .code(0);
    let written = std::fs::read_to_string(tmp.path().join(EXPERIMENT_SCHEMA_PATH)).unwrap();
    assert_eq!(written, experiment_schema_string());
    assert!(written.ends_with("}\n"));
    Command::cargo_bin("runner")
        .unwrap()
        .args(["schema", "--check", "--root", root_arg])
        .assert()
        .code(0);
    // Edited by hand: --check fails again.
    std::fs::write(tmp.path().join(EXPERIMENT_SCHEMA_PATH), "{}\n").unwrap();
    Command::cargo_bin("runner")
        .unwrap()
        .args(["schema", "--check", "--root", root_arg])
        .assert()
        .code(1);
    // --stdout prints the same text.
    let out = Command::cargo_bin("runner")
        .unwrap()
        .args(["schema", "--stdout"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        experiment_schema_string()
    );
}
