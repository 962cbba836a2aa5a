//! Resolution: from a spec file to a fully explicit [`Experiment`].
//!
//! Layers, lowest precedence first (later layers win; maps merge key by key, lists and scalars
//! are replaced whole):
//! 1. built-in defaults (`Experiment::default()`),
//! 2. the `extends` chain, root ancestor first (paths relative to the extending file),
//! 3. the file itself (its `name` defaults to the file stem; a parent's name is not inherited),
//! 4. `RUNNER_*` environment variables, `__` separating path segments
//!    (`RUNNER_TRAIN__LEARNING_RATE=5e-6`); only variables whose first segment is a spec section
//!    are read, so unrelated `RUNNER_*` variables (CI runners set `RUNNER_OS`, `RUNNER_TEMP`) are
//!    ignored, and `name`/`description`/`extends` cannot be set this way,
//! 5. `--set path=value` flags in order, the value parsed as YAML (`5e-6`, `true`, `[1, 2]`);
//!    a numeric segment indexes into a list (`eval.sets.0=train`).
//!
//! Merging is done by figment; errors come back as structured [`ResolveIssue`]s (field path,
//! kind, the layer that wrote the offending value) so `validate` can locate them in the file.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Serialized};
use figment::value::{Dict, Map};
use figment::{Figment, Metadata, Profile, Provider, Source};
use serde_json::Value as Json;
use sha2::{Digest, Sha256};

use super::types::Experiment;

/// Options of a resolution beyond the file itself.
#[derive(Debug, Clone, Default)]
pub struct ResolveOptions {
    /// `--set path=value` flags, applied in order after everything else.
    pub sets: Vec<String>,
    /// Read `RUNNER_*` environment variables.
    pub use_env: bool,
}

/// Where a resolved value came from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "from", rename_all = "snake_case")]
pub enum Origin {
    /// The built-in default.
    Default,
    /// A spec file (the file itself or an ancestor in its `extends` chain).
    File { path: PathBuf },
    /// An environment variable.
    Env { var: String },
    /// A `--set` flag (as written).
    Set { flag: String },
    /// Filled in by the resolver (the `name` from the file stem).
    Derived { rule: String },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => write!(f, "default"),
            Origin::File { path } => write!(f, "{}", path.display()),
            Origin::Env { var } => write!(f, "env {var}"),
            Origin::Set { flag } => write!(f, "--set {flag}"),
            Origin::Derived { rule } => write!(f, "{rule}"),
        }
    }
}

/// A resolved spec.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The typed, fully explicit spec (`extends` is `None`: the chain is inlined).
    pub spec: Experiment,
    /// The `extends` chain, child first (`files[0]` is the file that was resolved).
    pub files: Vec<PathBuf>,
    /// The merged document before typing (same shape as the spec).
    pub raw: Json,
    /// Origin of every leaf of `raw` (lists count as leaves), by dotted path.
    pub provenance: BTreeMap<String, Origin>,
}

/// What went wrong, structurally.
#[derive(Debug, Clone, PartialEq)]
pub enum IssueKind {
    /// The file could not be read.
    Io,
    /// YAML syntax error (line/col set).
    Syntax,
    /// The document is not a mapping of keys.
    NotAMapping,
    /// `extends` names a file that does not exist (`target` as resolved).
    ExtendsMissing { target: PathBuf },
    /// `extends` leads back to a file already in the chain; `chain` lists it, ending in the repeat.
    ExtendsCycle { chain: Vec<PathBuf> },
    /// `extends` is not a string.
    ExtendsInvalid,
    /// A `--set` flag that is not `path=value` or whose value is not YAML.
    BadSet { flag: String },
    /// A key the section does not have; `path` is the section, `field` the key.
    UnknownField {
        field: String,
        expected: Vec<String>,
    },
    /// A value that is not one of the enum's variants; `path` ends at the field.
    UnknownVariant {
        value: String,
        expected: Vec<String>,
    },
    /// A required key is absent; `path` is the section, `field` the key.
    MissingField { field: String },
    /// A value of the wrong type.
    InvalidType { found: String, expected: String },
    /// A value of the right type but not allowed.
    InvalidValue { found: String, expected: String },
    /// Anything else.
    Other,
}

/// One resolution problem.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolveIssue {
    /// Field path inside the spec (`["train", "learning_rate"]`); empty for file-level problems.
    /// For unknown and missing fields it is the enclosing section (the key is in `kind`).
    pub path: Vec<String>,
    /// The structured kind.
    pub kind: IssueKind,
    /// Human message (without location).
    pub message: String,
    /// The spec file the problem is in, when it came from a file.
    pub file: Option<PathBuf>,
    /// The layer that wrote the offending value, when known.
    pub origin: Option<Origin>,
    /// 1-based line in `file`, when the resolver knows it (syntax errors, `extends`).
    pub line: Option<usize>,
    /// 1-based column in `file`, when known.
    pub col: Option<usize>,
}

impl ResolveIssue {
    fn new(kind: IssueKind, message: impl Into<String>) -> Self {
        ResolveIssue {
            path: Vec::new(),
            kind,
            message: message.into(),
            file: None,
            origin: None,
            line: None,
            col: None,
        }
    }

    /// The dotted field path, including the key of unknown/missing-field issues.
    pub fn field_path(&self) -> String {
        let mut p = self.path.clone();
        match &self.kind {
            IssueKind::UnknownField { field, .. } | IssueKind::MissingField { field } => {
                p.push(field.clone())
            }
            _ => {}
        }
        p.join(".")
    }
}

impl fmt::Display for ResolveIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, &self.origin) {
            (Some(file), _) => {
                write!(f, "{}", file.display())?;
                if let Some(l) = self.line {
                    write!(f, ":{l}")?;
                    if let Some(c) = self.col {
                        write!(f, ":{c}")?;
                    }
                }
                write!(f, ": ")?;
            }
            (None, Some(o)) => write!(f, "{o}: ")?,
            (None, None) => {}
        }
        let path = self.field_path();
        if !path.is_empty() {
            write!(f, "{path}: ")?;
        }
        write!(f, "{}", self.message)
    }
}

/// Every problem found while resolving (at least one).
#[derive(Debug, Clone, PartialEq)]
pub struct ResolveError {
    pub issues: Vec<ResolveIssue>,
}

impl fmt::Display for ResolveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, issue) in self.issues.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{issue}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ResolveError {}

impl From<ResolveError> for crate::Error {
    fn from(e: ResolveError) -> Self {
        crate::Error::Spec(e.to_string())
    }
}

impl From<ResolveIssue> for ResolveError {
    fn from(issue: ResolveIssue) -> Self {
        ResolveError {
            issues: vec![issue],
        }
    }
}

/// Resolves `path` with the layers of the module doc.
pub fn resolve(path: &Path, opts: &ResolveOptions) -> crate::Result<Resolved> {
    resolve_detailed(path, opts).map_err(Into::into)
}

/// [`resolve`], with the problems as structured issues.
pub fn resolve_detailed(path: &Path, opts: &ResolveOptions) -> Result<Resolved, ResolveError> {
    let chain = load_chain(path)?;
    let top = &chain[0];

    // A layer per source, lowest first; `layers` mirrors them as JSON to attribute errors.
    let defaults = serde_json::to_value(Experiment::default()).map_err(other_issue)?;
    let mut layers: Vec<(Origin, Json)> = vec![(Origin::Default, defaults.clone())];
    let mut fig = Figment::from(Named::new(defaults.clone(), "built-in defaults", None));
    for file in chain.iter().rev() {
        let doc = file.doc.clone();
        fig = fig.merge(Named::new(
            doc.clone(),
            "spec file",
            Some(Source::File(file.path.clone())),
        ));
        layers.push((
            Origin::File {
                path: file.path.clone(),
            },
            doc,
        ));
    }
    // The name belongs to the file, not to its ancestors.
    if top.doc.get("name").is_none() {
        let stem = top
            .path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let doc = serde_json::json!({ "name": stem });
        fig = fig.merge(Named::new(
            doc.clone(),
            "file name",
            Some(Source::Custom("file name".into())),
        ));
        layers.push((
            Origin::Derived {
                rule: "file name".into(),
            },
            doc,
        ));
    }
    if opts.use_env {
        let doc = env_layer(&defaults);
        if doc.as_object().is_some_and(|m| !m.is_empty()) {
            layers.push((Origin::Env { var: String::new() }, doc.clone()));
            fig = fig.merge(Named::new(
                doc,
                "environment",
                Some(Source::Custom("RUNNER_* environment variables".into())),
            ));
        }
    }
    for flag in &opts.sets {
        let (key, value) = set_layer(&fig, flag)?;
        let mut doc = Json::Object(Default::default());
        insert_path(&mut doc, &key, value.clone());
        layers.push((Origin::Set { flag: flag.clone() }, doc.clone()));
        fig = fig.merge(Named::new(
            doc,
            "--set flag",
            Some(Source::Custom(format!("--set {flag}"))),
        ));
    }

    let mut raw: Json = fig
        .extract()
        .map_err(|e| figment_issues(e, &layers, &Json::Null))?;
    let mut spec: Experiment = fig
        .extract()
        .map_err(|e| figment_issues(e, &layers, &raw))?;
    spec.extends = None;
    if let Some(obj) = raw.as_object_mut() {
        obj.insert("extends".into(), Json::Null);
    }
    let mut provenance = BTreeMap::new();
    collect_provenance(&raw, &mut Vec::new(), &layers, &mut provenance);
    Ok(Resolved {
        spec,
        files: chain.into_iter().map(|f| f.path).collect(),
        raw,
        provenance,
    })
}

/// The fully explicit resolved spec as YAML: every field written, defaults included.
pub fn resolved_yaml(spec: &Experiment) -> crate::Result<String> {
    Ok(serde_yaml::to_string(spec)?)
}

/// sha256 (hex) of the canonical JSON (keys sorted, no whitespace) of the resolved spec.
pub fn spec_hash(spec: &Experiment) -> String {
    // Serialising plain data to a Value cannot fail (no maps with non-string keys).
    let value = serde_json::to_value(spec).unwrap_or(Json::Null);
    let canonical = canonical_json(&value);
    hex::encode(Sha256::digest(canonical.as_bytes()))
}

/// JSON text with object keys sorted at every level.
pub fn canonical_json(value: &Json) -> String {
    fn sorted(v: &Json) -> Json {
        match v {
            Json::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                let mut out = serde_json::Map::new();
                for k in keys {
                    out.insert(k.clone(), sorted(&m[k]));
                }
                Json::Object(out)
            }
            Json::Array(a) => Json::Array(a.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    sorted(value).to_string()
}

// ---------------------------------------------------------------------------------------------
// The extends chain
// ---------------------------------------------------------------------------------------------

/// One file of the chain, parsed.
struct ChainFile {
    path: PathBuf,
    doc: Json,
}

/// Loads `path` and its ancestors, child first.
fn load_chain(path: &Path) -> Result<Vec<ChainFile>, ResolveError> {
    let mut chain: Vec<ChainFile> = Vec::new();
    let mut seen: Vec<PathBuf> = Vec::new();
    let mut current = path.to_path_buf();
    loop {
        let text = std::fs::read_to_string(&current).map_err(|e| {
            let mut issue = ResolveIssue::new(IssueKind::Io, format!("cannot read: {e}"));
            issue.file = Some(current.clone());
            issue
        })?;
        seen.push(std::fs::canonicalize(&current).unwrap_or_else(|_| current.clone()));
        let doc = parse_doc(&current, &text)?;
        let parent = match doc.get("extends") {
            None | Some(Json::Null) => None,
            Some(Json::String(s)) => Some(s.clone()),
            Some(_) => {
                let mut issue = ResolveIssue::new(
                    IssueKind::ExtendsInvalid,
                    "must be the path of a parent spec (a string)",
                );
                issue.path = vec!["extends".into()];
                locate_extends(&mut issue, &current, &text);
                return Err(issue.into());
            }
        };
        chain.push(ChainFile {
            path: current.clone(),
            doc,
        });
        let Some(parent) = parent else {
            return Ok(chain);
        };
        let base = current.parent().unwrap_or(Path::new(""));
        let next = base.join(&parent);
        if !next.is_file() {
            let mut issue = ResolveIssue::new(
                IssueKind::ExtendsMissing {
                    target: next.clone(),
                },
                format!("parent spec `{parent}` not found ({})", next.display()),
            );
            issue.path = vec!["extends".into()];
            locate_extends(&mut issue, &current, &text);
            return Err(issue.into());
        }
        let canon = std::fs::canonicalize(&next).unwrap_or_else(|_| next.clone());
        if seen.contains(&canon) {
            let mut files: Vec<PathBuf> = chain.iter().map(|f| f.path.clone()).collect();
            files.push(next.clone());
            let shown: Vec<String> = files.iter().map(|p| short_name(p, path)).collect();
            let mut issue = ResolveIssue::new(
                IssueKind::ExtendsCycle { chain: files },
                format!("extends cycle: {}", shown.join(" → ")),
            );
            issue.path = vec!["extends".into()];
            locate_extends(&mut issue, &current, &text);
            return Err(issue.into());
        }
        current = next;
    }
}

/// Parses one spec file into JSON, reporting syntax errors with their location.
fn parse_doc(path: &Path, text: &str) -> Result<Json, ResolveError> {
    let doc: Json = serde_yaml::from_str::<Option<Json>>(text)
        .map_err(|e| {
            let mut issue = ResolveIssue::new(IssueKind::Syntax, yaml_message(&e));
            issue.file = Some(path.to_path_buf());
            if let Some(loc) = e.location() {
                issue.line = Some(loc.line());
                issue.col = Some(loc.column());
            }
            issue
        })?
        .unwrap_or_else(|| Json::Object(Default::default()));
    if !doc.is_object() {
        let mut issue = ResolveIssue::new(
            IssueKind::NotAMapping,
            "a spec must be a mapping of sections (name:, model:, train:, ...)",
        );
        issue.file = Some(path.to_path_buf());
        issue.line = Some(1);
        issue.col = Some(1);
        return Err(issue.into());
    }
    Ok(doc)
}

/// serde_yaml's message without its trailing " at line X column Y".
fn yaml_message(e: &serde_yaml::Error) -> String {
    let msg = e.to_string();
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg,
    }
}

/// Points an issue at the `extends:` line of `file`.
fn locate_extends(issue: &mut ResolveIssue, file: &Path, text: &str) {
    issue.file = Some(file.to_path_buf());
    issue.origin = Some(Origin::File {
        path: file.to_path_buf(),
    });
    for (i, line) in text.lines().enumerate() {
        if let Some(rest) = line.strip_prefix("extends") {
            if rest.trim_start().starts_with(':') {
                issue.line = Some(i + 1);
                let value_col = line
                    .find(':')
                    .map(|c| c + 1 + line[c + 1..].len() - line[c + 1..].trim_start().len() + 1);
                issue.col = value_col.or(Some(1));
                return;
            }
        }
    }
}

/// A path shown relative to the directory of the resolved file when it lies inside it.
fn short_name(p: &Path, top: &Path) -> String {
    let dir = top.parent().unwrap_or(Path::new(""));
    match p.strip_prefix(dir) {
        Ok(rel) if !dir.as_os_str().is_empty() => rel.display().to_string(),
        _ => p.display().to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// Providers
// ---------------------------------------------------------------------------------------------

/// A JSON document as a figment provider with its own name and source (for provenance).
struct Named {
    doc: Json,
    name: &'static str,
    source: Option<Source>,
}

impl Named {
    fn new(doc: Json, name: &'static str, source: Option<Source>) -> Self {
        Named { doc, name, source }
    }
}

impl Provider for Named {
    fn metadata(&self) -> Metadata {
        let m = Metadata::named(self.name);
        match &self.source {
            Some(s) => m.source(s.clone()),
            None => m,
        }
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Serialized::defaults(&self.doc).data()
    }
}

/// `RUNNER_*` variables whose first segment is a spec section, as one document. Values are
/// parsed as YAML, like `--set` values (figment's own parser reads `5e-6` as a string).
fn env_layer(defaults: &Json) -> Json {
    let sections: Vec<String> = defaults
        .as_object()
        .map(|m| {
            m.keys()
                .filter(|k| !matches!(k.as_str(), "name" | "description" | "extends"))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let env = Env::prefixed("RUNNER_").split("__").filter(move |key| {
        let key = key.as_str().to_ascii_lowercase();
        let first = key.split('.').next().unwrap_or("");
        sections.iter().any(|s| s == first)
    });
    let mut doc = Json::Object(Default::default());
    let mut vars: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v))
        .collect();
    vars.sort();
    for (key, value) in vars {
        let path: Vec<String> = key.split('.').map(str::to_string).collect();
        let value = serde_yaml::from_str::<Json>(&value).unwrap_or(Json::String(value));
        insert_path(&mut doc, &path, value);
    }
    doc
}

/// The environment variable that sets a dotted path.
fn env_var_name(path: &str) -> String {
    format!("RUNNER_{}", path.replace('.', "__").to_ascii_uppercase())
}

/// Turns one `--set path=value` flag into a (dotted key, value) pair to merge. A numeric
/// segment that indexes a list rewrites the whole list (figment replaces lists on merge).
fn set_layer(fig: &Figment, flag: &str) -> Result<(Vec<String>, Json), ResolveError> {
    let bad = |msg: String| {
        let mut issue = ResolveIssue::new(
            IssueKind::BadSet {
                flag: flag.to_string(),
            },
            msg,
        );
        issue.origin = Some(Origin::Set {
            flag: flag.to_string(),
        });
        ResolveError::from(issue)
    };
    let (path, raw) = flag
        .split_once('=')
        .ok_or_else(|| bad("--set expects path=value (e.g. train.learning_rate=5e-6)".into()))?;
    let segs: Vec<String> = path.trim().split('.').map(str::to_string).collect();
    if segs.iter().any(|s| s.is_empty()) {
        return Err(bad(format!(
            "`{path}` is not a field path like train.max_steps"
        )));
    }
    let value: Json = if raw.trim().is_empty() {
        Json::Null
    } else {
        serde_yaml::from_str(raw)
            .map_err(|e| bad(format!("value `{raw}` is not YAML: {}", yaml_message(&e))))?
    };
    let current: Json = fig.extract().unwrap_or(Json::Null);
    // A field that holds a string keeps the text as written: `--set
    // schedule.partitions.from=20250802` is the date string, not the integer YAML reads.
    let existing = segs.iter().try_fold(&current, |node, seg| match node {
        Json::Object(m) => m.get(seg),
        Json::Array(items) => seg.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    });
    let value = match (existing, value) {
        (Some(Json::String(_)), Json::Number(_) | Json::Bool(_)) => Json::String(raw.trim().into()),
        (_, v) => v,
    };
    // Find the first segment that indexes into a list.
    let mut node = &current;
    for (i, seg) in segs.iter().enumerate() {
        match node {
            Json::Array(items) => {
                let idx: usize = seg.parse().map_err(|_| {
                    bad(format!(
                        "`{}` is a list: index it with a number, not `{seg}`",
                        segs[..i].join(".")
                    ))
                })?;
                if idx >= items.len() {
                    return Err(bad(format!(
                        "index {idx} is past the end of `{}` ({} items)",
                        segs[..i].join("."),
                        items.len()
                    )));
                }
                let mut list = node.clone();
                if let Json::Array(items) = &mut list {
                    if i + 1 == segs.len() {
                        items[idx] = value;
                    } else {
                        if !items[idx].is_object() {
                            items[idx] = Json::Object(Default::default());
                        }
                        insert_path(&mut items[idx], &segs[i + 1..], value);
                    }
                }
                return Ok((segs[..i].to_vec(), list));
            }
            Json::Object(m) => match m.get(seg) {
                Some(next) => node = next,
                None => break,
            },
            _ => break,
        }
    }
    Ok((segs, value))
}

/// Sets `value` at `path` in `doc`, creating objects on the way.
fn insert_path(doc: &mut Json, path: &[String], value: Json) {
    let Some((last, init)) = path.split_last() else {
        *doc = value;
        return;
    };
    let mut node = doc;
    for seg in init {
        if !node.is_object() {
            *node = Json::Object(Default::default());
        }
        let Json::Object(m) = node else { return };
        node = m
            .entry(seg.clone())
            .or_insert_with(|| Json::Object(Default::default()));
    }
    if !node.is_object() {
        *node = Json::Object(Default::default());
    }
    if let Json::Object(m) = node {
        m.insert(last.clone(), value);
    }
}

// ---------------------------------------------------------------------------------------------
// Provenance and error attribution
// ---------------------------------------------------------------------------------------------

/// The value at `path` in `doc`, if present.
fn lookup<'a>(doc: &'a Json, path: &[String]) -> Option<&'a Json> {
    let mut node = doc;
    for seg in path {
        node = match node {
            Json::Object(m) => m.get(seg)?,
            Json::Array(a) => a.get(seg.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(node)
}

/// The highest layer that writes `path`.
fn origin_of(layers: &[(Origin, Json)], path: &[String]) -> Option<Origin> {
    layers.iter().rev().find_map(|(origin, doc)| {
        lookup(doc, path).map(|_| match origin {
            Origin::Env { .. } => Origin::Env {
                var: env_var_name(&path.join(".")),
            },
            o => o.clone(),
        })
    })
}

fn collect_provenance(
    node: &Json,
    path: &mut Vec<String>,
    layers: &[(Origin, Json)],
    out: &mut BTreeMap<String, Origin>,
) {
    match node {
        Json::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                path.push(k.clone());
                collect_provenance(v, path, layers, out);
                path.pop();
            }
        }
        _ => {
            if let Some(o) = origin_of(layers, path) {
                out.insert(path.join("."), o);
            }
        }
    }
}

fn other_issue(e: impl fmt::Display) -> ResolveError {
    ResolveIssue::new(IssueKind::Other, e.to_string()).into()
}

/// Converts figment's (chained) errors into issues, attributed to the layer that wrote them.
fn figment_issues(err: figment::Error, layers: &[(Origin, Json)], raw: &Json) -> ResolveError {
    use figment::error::Kind;
    let mut issues = Vec::new();
    for e in err {
        let mut path = e.path.clone();
        let (kind, message) = match &e.kind {
            Kind::UnknownField(field, expected) => {
                // figment ends the path with the unknown key for structs, not inside tagged
                // enums: make `path` the enclosing section in both cases.
                if path.last() == Some(field) {
                    path.pop();
                }
                (
                    IssueKind::UnknownField {
                        field: field.clone(),
                        expected: expected.iter().map(|s| s.to_string()).collect(),
                    },
                    format!("unknown field `{field}`{}", one_of(expected)),
                )
            }
            Kind::UnknownVariant(value, expected) => {
                // In an internally tagged enum (rewards) serde reports at the entry; point at
                // its `kind` key.
                if let Some(Json::Object(m)) = lookup(raw, &path) {
                    if m.get("kind").and_then(Json::as_str) == Some(value.as_str()) {
                        path.push("kind".into());
                    }
                }
                (
                    IssueKind::UnknownVariant {
                        value: value.clone(),
                        expected: expected.iter().map(|s| s.to_string()).collect(),
                    },
                    format!("unknown value `{value}`{}", one_of(expected)),
                )
            }
            Kind::MissingField(field) => (
                IssueKind::MissingField {
                    field: field.to_string(),
                },
                format!("missing required field `{field}`"),
            ),
            Kind::InvalidType(actual, expected) => (
                IssueKind::InvalidType {
                    found: actual.to_string(),
                    expected: expected.clone(),
                },
                format!("expected {expected}, found {actual}"),
            ),
            Kind::InvalidValue(actual, expected) => (
                IssueKind::InvalidValue {
                    found: actual.to_string(),
                    expected: expected.clone(),
                },
                format!("invalid value {actual}: expected {expected}"),
            ),
            other => (IssueKind::Other, other.to_string()),
        };
        let mut issue = ResolveIssue::new(kind, message);
        let mut at = path.clone();
        if let IssueKind::UnknownField { field, .. } = &issue.kind {
            at.push(field.clone());
        }
        issue.origin = origin_of(layers, &at).or_else(|| origin_of(layers, &path));
        if let Some(Origin::File { path: file }) = &issue.origin {
            issue.file = Some(file.clone());
        }
        issue.path = path;
        issues.push(issue);
    }
    if issues.is_empty() {
        issues.push(ResolveIssue::new(IssueKind::Other, "invalid spec"));
    }
    ResolveError { issues }
}

fn one_of(expected: &[&str]) -> String {
    match expected {
        [] => String::new(),
        [one] => format!(", expected `{one}`"),
        many => format!(
            ", expected one of {}",
            many.iter()
                .map(|s| format!("`{s}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}
