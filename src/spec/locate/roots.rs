//! Path confinement: the files a spec names (data and outcome files, SQL databases, local
//! models and adapters) must resolve inside the spec's project or an explicitly allowed root,
//! so that a spec — or a `--set`, an environment override, a sweep point — cannot make runner
//! read arbitrary files of the machine.
//!
//! The allowed roots of a spec file:
//! 1. its project root: the nearest ancestor of the spec's directory holding `.git`, else the
//!    spec's directory;
//! 2. the working directory (relative spec paths are relative to it);
//! 3. each line of `<project root>/.runner-allowed-roots` (relative to the project root; blank
//!    lines and `#` comments ignored) — project configuration, so a spec cannot widen it;
//! 4. each entry of `RUNNER_ALLOWED_ROOTS` (separated like `PATH`; relative to the working
//!    directory).
//!
//! Paths are compared after resolving symlinks and `..` (a symlink inside the project that
//! points outside counts as outside); a path that does not exist yet is resolved through its
//! nearest existing ancestor. Writes need no such check: everything a run writes is under its
//! run directory, whose name is made safe by [`crate::run::safe_name`].

use std::path::{Component, Path, PathBuf};

use serde_json::Value as Json;

use crate::spec::Experiment;

/// Environment variable listing further allowed roots (separated like `PATH`).
pub const ALLOWED_ROOTS_ENV: &str = "RUNNER_ALLOWED_ROOTS";
/// File at the project root listing further allowed roots, one per line.
pub const ALLOWED_ROOTS_FILE: &str = ".runner-allowed-roots";

/// Spec keys whose string values are file paths, wherever they appear.
const PATH_KEYS: &[&str] = &["path", "database"];
/// Spec keys whose values are a model: a path only when they look like one (else a known model
/// name or a hub id, which are not files of this machine).
const MODEL_KEYS: &[&str] = &["base", "init_from", "embedder", "model"];

/// One spec path outside every allowed root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathViolation {
    /// Dotted field path (`data.train.path`).
    pub field: String,
    /// The path as written.
    pub value: String,
    /// What is wrong and how to allow it.
    pub message: String,
}

/// The directories a spec's paths may resolve into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedRoots {
    /// Canonical directories.
    pub roots: Vec<PathBuf>,
}

impl AllowedRoots {
    /// The roots of the spec at `spec_file` (see the module doc), from the current working
    /// directory and environment.
    pub fn for_spec(spec_file: &Path) -> AllowedRoots {
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        let env = std::env::var_os(ALLOWED_ROOTS_ENV);
        AllowedRoots::build(spec_file, &cwd, env.as_deref())
    }

    /// [`AllowedRoots::for_spec`] with the working directory and the environment variable's
    /// value given.
    pub fn build(spec_file: &Path, cwd: &Path, env: Option<&std::ffi::OsStr>) -> AllowedRoots {
        let project = project_root(&absolute(cwd, spec_file));
        let mut roots = vec![project.clone(), cwd.to_path_buf()];
        if let Ok(text) = std::fs::read_to_string(project.join(ALLOWED_ROOTS_FILE)) {
            for line in text.lines().map(str::trim) {
                if !line.is_empty() && !line.starts_with('#') {
                    roots.push(absolute(&project, Path::new(line)));
                }
            }
        }
        if let Some(v) = env {
            for p in std::env::split_paths(v).filter(|p| !p.as_os_str().is_empty()) {
                roots.push(absolute(cwd, &p));
            }
        }
        let mut roots: Vec<PathBuf> = roots.iter().map(|r| resolve_existing(r)).collect();
        roots.dedup();
        AllowedRoots { roots }
    }

    /// Whether `path` (absolute, or relative to the working directory) is inside a root.
    pub fn contains(&self, cwd: &Path, path: &Path) -> bool {
        let p = resolve_existing(&absolute(cwd, path));
        self.roots.iter().any(|r| p.starts_with(r))
    }
}

/// The project root of a spec file: the nearest ancestor of its directory holding `.git`, else
/// its directory.
pub fn project_root(spec_file: &Path) -> PathBuf {
    let dir = spec_file.parent().unwrap_or(Path::new("."));
    let dir = resolve_existing(dir);
    dir.ancestors()
        .find(|d| d.join(".git").exists())
        .map(Path::to_path_buf)
        .unwrap_or(dir)
}

/// Every file path a spec names, as (dotted field, value): the values of `path` and `database`
/// keys anywhere, and model fields that look like local paths. `{date}` is left in place.
pub fn spec_paths(spec: &Experiment) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Ok(v) = serde_json::to_value(spec) {
        collect(&v, "", &mut out);
    }
    out
}

fn collect(v: &Json, at: &str, out: &mut Vec<(String, String)>) {
    match v {
        Json::Object(m) => {
            for (k, x) in m {
                let field = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                match x {
                    Json::String(s) if PATH_KEYS.contains(&k.as_str()) => {
                        out.push((field, s.clone()))
                    }
                    Json::String(s) if MODEL_KEYS.contains(&k.as_str()) && looks_local(s) => {
                        out.push((field, s.clone()))
                    }
                    _ => collect(x, &field, out),
                }
            }
        }
        Json::Array(xs) => {
            for (i, x) in xs.iter().enumerate() {
                collect(x, &format!("{at}.{i}"), out);
            }
        }
        _ => {}
    }
}

/// A model value that names a file or directory of this machine rather than a known model
/// name or a hub id (`owner/name`).
fn looks_local(s: &str) -> bool {
    s.starts_with('/')
        || s.starts_with('.')
        || s.starts_with('~')
        || s.ends_with(".gguf")
        || s.ends_with(".safetensors")
        || s.matches('/').count() > 1
        || Path::new(s).exists()
}

/// The spec's paths outside `roots`, each with a message saying how to allow it.
pub fn check_spec(spec: &Experiment, roots: &AllowedRoots, cwd: &Path) -> Vec<PathViolation> {
    spec_paths(spec)
        .into_iter()
        .filter_map(|(field, value)| {
            let probe = value.replace("{date}", "00000000");
            let probe = match probe.strip_prefix("~/") {
                Some(rest) => std::env::var_os("HOME")
                    .map(|h| PathBuf::from(h).join(rest))
                    .unwrap_or_else(|| PathBuf::from(&probe)),
                None => PathBuf::from(&probe),
            };
            if roots.contains(cwd, &probe) {
                return None;
            }
            let message = format!(
                "`{value}` is outside the spec's project and the allowed roots ({}); list its \
                 directory in {ALLOWED_ROOTS_FILE} at the project root or in ${ALLOWED_ROOTS_ENV} \
                 to allow it",
                roots
                    .roots
                    .iter()
                    .map(|r| r.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            Some(PathViolation {
                field,
                value,
                message,
            })
        })
        .collect()
}

/// [`check_spec`] for the spec file at `spec_file`, from the current directory and
/// environment; an error listing every violation.
pub fn confine(spec: &Experiment, spec_file: &Path) -> crate::Result<()> {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let roots = AllowedRoots::for_spec(spec_file);
    let bad = check_spec(spec, &roots, &cwd);
    if bad.is_empty() {
        return Ok(());
    }
    Err(crate::Error::Spec(
        bad.iter()
            .map(|v| format!("{}: {}", v.field, v.message))
            .collect::<Vec<_>>()
            .join("\n"),
    ))
}

fn absolute(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// `p` with symlinks and `..` resolved: canonical for the longest existing prefix, the rest
/// normalised lexically (`..` of a missing directory still climbs).
fn resolve_existing(p: &Path) -> PathBuf {
    let mut existing = p.to_path_buf();
    let mut rest: Vec<std::ffi::OsString> = Vec::new();
    loop {
        if let Ok(c) = std::fs::canonicalize(&existing) {
            let mut out = c;
            for part in rest.iter().rev() {
                out.push(part);
            }
            return normalize(&out);
        }
        match (existing.file_name(), existing.parent()) {
            (Some(name), Some(parent)) => {
                rest.push(name.to_os_string());
                existing = parent.to_path_buf();
            }
            _ => return normalize(p),
        }
    }
}

fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("proj");
        std::fs::create_dir_all(root.join(".git")).unwrap();
        std::fs::create_dir_all(root.join("experiments/data")).unwrap();
        std::fs::create_dir_all(d.path().join("shared/data")).unwrap();
        let spec = root.join("experiments/x.yaml");
        std::fs::write(&spec, "name: x\n").unwrap();
        (d, root, spec)
    }

    fn spec_with(train: &str) -> Experiment {
        let mut s = Experiment::default();
        s.data.train = serde_yaml::from_str(&format!("path: '{train}'")).unwrap();
        s
    }

    #[test]
    fn project_root_is_the_git_root() {
        let (_d, root, spec) = project();
        assert_eq!(project_root(&spec), std::fs::canonicalize(&root).unwrap());
    }

    #[test]
    fn paths_inside_the_project_pass_and_outside_fail() {
        let (d, root, spec) = project();
        let roots = AllowedRoots::build(&spec, &root, None);
        for ok in [
            "experiments/data/a.jsonl",
            "experiments/data/{date}.jsonl",
            "./experiments/../experiments/data/new/b.jsonl",
        ] {
            assert!(check_spec(&spec_with(ok), &roots, &root).is_empty(), "{ok}");
        }
        let abs_inside = root.join("experiments/data/a.jsonl");
        assert!(
            check_spec(&spec_with(&abs_inside.display().to_string()), &roots, &root).is_empty()
        );
        for bad in [
            "/etc/passwd",
            "../shared/data/a.jsonl",
            "experiments/../../x.jsonl",
        ] {
            let v = check_spec(&spec_with(bad), &roots, &root);
            assert_eq!(v.len(), 1, "{bad}");
            assert_eq!(v[0].field, "data.train.path");
            assert!(
                v[0].message.contains(ALLOWED_ROOTS_FILE),
                "{}",
                v[0].message
            );
        }
        // A symlink inside the project that leads outside is outside.
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(d.path().join("shared"), root.join("experiments/link"))
                .unwrap();
            let v = check_spec(&spec_with("experiments/link/data/a.jsonl"), &roots, &root);
            assert_eq!(v.len(), 1);
        }
    }

    #[test]
    fn allowed_roots_file_and_env_widen_the_roots() {
        let (d, root, spec) = project();
        let shared = "../shared/data/stocknet/{date}.jsonl";
        std::fs::write(
            root.join(ALLOWED_ROOTS_FILE),
            "# data shared by projects\n../shared\n",
        )
        .unwrap();
        let roots = AllowedRoots::build(&spec, &root, None);
        assert!(check_spec(&spec_with(shared), &roots, &root).is_empty());
        std::fs::remove_file(root.join(ALLOWED_ROOTS_FILE)).unwrap();
        let env = std::ffi::OsString::from(format!(
            "/nonexistent:{}",
            d.path().join("shared").display()
        ));
        let roots = AllowedRoots::build(&spec, &root, Some(&env));
        assert!(check_spec(&spec_with(shared), &roots, &root).is_empty());
        assert_eq!(
            check_spec(&spec_with("/etc/passwd"), &roots, &root).len(),
            1
        );
    }

    #[test]
    fn model_paths_are_checked_hub_ids_are_not() {
        let (_d, root, spec) = project();
        let roots = AllowedRoots::build(&spec, &root, None);
        let mut s = Experiment::default();
        s.model.base = "Qwen/Qwen3-0.6B".into();
        assert!(check_spec(&s, &roots, &root).is_empty());
        s.model.base = "/opt/models/evil.gguf".into();
        let v = check_spec(&s, &roots, &root);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].field, "model.base");
    }
}
