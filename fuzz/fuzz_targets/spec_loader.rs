//! Fuzzes the spec loader end to end: bytes → YAML file → validation (schema + rules) →
//! resolution → typed spec → plan compilation. No input may panic, hang or allocate
//! without bound; every failure must come back as a diagnostic or an `Err`.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use runner::plan::{self, PlanSource};
use runner::spec::resolve::{resolve, resolved_yaml, spec_hash, ResolveOptions};
use runner::spec::validate::validate_file;

/// One directory for the whole fuzzing process: the spec is rewritten in place each run.
/// The project's example specs are copied next to it so that `extends: v4.yaml` resolves.
fn spec_path() -> &'static PathBuf {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir for the fuzzed spec");
        let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../experiments");
        for entry in std::fs::read_dir(examples).into_iter().flatten().flatten() {
            let _ = std::fs::copy(entry.path(), dir.path().join(entry.file_name()));
        }
        let path = dir.path().join("spec.yaml");
        (dir, path)
    })
    .1
}

fuzz_target!(|data: &[u8]| {
    // Real specs are a few KiB; larger inputs only slow the fuzzer down.
    if data.len() > 64 * 1024 {
        return;
    }
    let path = spec_path();
    if std::fs::write(path, data).is_err() {
        return;
    }
    let opts = ResolveOptions {
        sets: Vec::new(),
        use_env: false,
    };
    let _ = validate_file(path, &opts);
    if let Ok(resolved) = resolve(path, &opts) {
        let hash = spec_hash(&resolved.spec);
        let _ = resolved_yaml(&resolved.spec);
        let source = PlanSource {
            spec_path: Some(path.clone()),
            sets: Vec::new(),
            use_env: false,
        };
        if let Ok(p) = plan::compile(&resolved.spec, &hash, source) {
            let _ = p.instances();
            let _ = serde_json::to_string(&p);
        }
    }
});
