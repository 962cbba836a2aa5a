//! `runner validate`: every problem of a spec at once, each located as `FILE:LINE:COL`.
//!
//! The passes, in order:
//! 1. each file of the `extends` chain is read and parsed (YAML syntax errors with their
//!    position, duplicate keys, a missing or cyclic `extends`);
//! 2. each file is checked against the JSON Schema generated from the spec types as written,
//!    as a *partial* spec (unknown keys, wrong types, bad enum values; required fields are not
//!    required of one layer alone);
//! 3. the merged document (defaults + the chain) is checked as a whole (required fields);
//! 4. the spec is resolved (environment, `--set`) and typed; resolution problems are reported;
//! 5. the semantic [`rules`](super::rules) run on the typed spec.
//!
//! Passes 4–5 run only when 1–3 found no error, since rules need a typed spec. Nothing here
//! panics on any input: every failure becomes a [`Diagnostic`].

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use jsonschema::error::ValidationErrorKind;
use serde::Serialize;
use serde_json::Value as Json;

use super::locate::{join, locate_in, pointer_to_path, Location, Locator, SourceMap};
use super::resolve::{resolve_detailed, IssueKind, Origin, ResolveIssue, ResolveOptions};
use super::rules::{self, RuleContext};
use super::suggest::{self, did_you_mean, plain};
use super::types::Experiment;

/// How bad a problem is: errors make a spec invalid, warnings do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One problem, located.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// The file as given (or a label: `env RUNNER_X`, `--set a.b=c`).
    pub file: String,
    /// 1-based line; 0 when the origin is not a file.
    pub line: usize,
    /// 1-based column; 0 when the origin is not a file.
    pub col: usize,
    /// Dotted field path (`train.learning_rate`, `rewards.fmt.kind`); empty for file-level
    /// problems.
    pub path: String,
    pub message: String,
    pub severity: Severity,
    /// A suggestion, e.g. ``did you mean `format`?``.
    pub hint: Option<String>,
}

impl Diagnostic {
    /// A diagnostic at `loc`.
    pub fn new(
        loc: Location,
        path: impl Into<String>,
        severity: Severity,
        message: impl Into<String>,
    ) -> Diagnostic {
        Diagnostic {
            file: loc.file,
            line: loc.line,
            col: loc.col,
            path: path.into(),
            message: message.into(),
            severity,
            hint: None,
        }
    }

    /// Adds a hint.
    pub fn with_hint(mut self, hint: Option<String>) -> Diagnostic {
        self.hint = hint;
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// The order diagnostics are printed in: by file, then position.
    pub fn sort_key(&self) -> (String, usize, usize, Severity, String) {
        (
            self.file.clone(),
            self.line,
            self.col,
            self.severity,
            self.path.clone(),
        )
    }
}

impl fmt::Display for Diagnostic {
    /// `FILE:LINE:COL: field.path: message (did you mean `x`?)`; warnings say so after the path.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.col)?;
        }
        write!(f, ": ")?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        if self.severity == Severity::Warning {
            write!(f, "warning: ")?;
        }
        write!(f, "{}", self.message)?;
        if let Some(h) = &self.hint {
            write!(f, " ({h})")?;
        }
        Ok(())
    }
}

/// The JSON Schema of a spec, generated from the types (the same document `runner schema`
/// writes).
pub fn experiment_schema() -> Json {
    crate::spec::types::experiment_schema()
}

/// Validates one spec file with everything it extends; returns every problem found, sorted.
/// A spec is valid when no diagnostic is an error.
pub fn validate_file(path: &Path, opts: &ResolveOptions) -> Vec<Diagnostic> {
    let mut diags = Vec::new();
    let schema = experiment_schema();
    let chain = load_chain(path, &mut diags);
    let chain_ok = !diags.iter().any(Diagnostic::is_error);

    // Pass 2: each layer as written.
    for file in &chain {
        for issue in check_schema(&schema, &schema, &file.doc, "", true) {
            let loc = locate_in(&file.map, &file.label, &issue.path, issue.key);
            diags.push(issue.into_diagnostic(loc));
        }
    }

    let mut locator = Locator::new();
    for file in &chain {
        locator.add_file(file.label.clone(), file.map.clone());
    }

    // Pass 3: the merged document, for what only the whole can miss (required fields).
    if chain_ok {
        let mut merged = serde_json::to_value(Experiment::default()).unwrap_or(Json::Null);
        for file in chain.iter().rev() {
            merge(&mut merged, &file.doc);
        }
        // As in resolution: the name belongs to the file (its stem unless written).
        if let (Some(top), Json::Object(m)) = (chain.first(), &mut merged) {
            if top.doc.get("name").is_none() {
                let stem = path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                m.insert("name".into(), Json::String(stem));
            }
        }
        for issue in check_schema(&schema, &schema, &merged, "", false) {
            let loc = locator.locate(&issue.path, issue.key);
            let d = issue.into_diagnostic(loc);
            if !diags
                .iter()
                .any(|x| x.path == d.path && x.message == d.message)
            {
                diags.push(d);
            }
        }
    }

    // Passes 4–5: resolution and the semantic rules.
    if !diags.iter().any(Diagnostic::is_error) {
        match resolve_detailed(path, opts) {
            Err(e) => {
                for issue in &e.issues {
                    let d = from_resolve_issue(issue, &chain, &locator);
                    if !diags
                        .iter()
                        .any(|x| x.path == d.path && x.message == d.message)
                    {
                        diags.push(d);
                    }
                }
            }
            Ok(resolved) => {
                let mut overridden = Vec::new();
                for (p, origin) in &resolved.provenance {
                    if matches!(origin, Origin::Env { .. } | Origin::Set { .. }) {
                        locator.add_override(p.clone(), origin.to_string());
                        overridden.push(p.clone());
                    }
                }
                // Values from `--set` and the environment never went through the schema passes
                // above: check the resolved spec at those paths (e.g. a negative temperature).
                if !overridden.is_empty() {
                    let doc = serde_json::to_value(&resolved.spec).unwrap_or(Json::Null);
                    for issue in check_schema(&schema, &schema, &doc, "", false) {
                        let under = |o: &String| {
                            issue.path == *o || issue.path.starts_with(&format!("{o}."))
                        };
                        if !overridden.iter().any(under) {
                            continue;
                        }
                        let loc = locator.locate(&issue.path, issue.key);
                        let d = issue.into_diagnostic(loc);
                        if !diags
                            .iter()
                            .any(|x| x.path == d.path && x.message == d.message)
                        {
                            diags.push(d);
                        }
                    }
                }
                // Every file the spec names lies in its project or an allowed root (the same
                // check `apply`, `plan` and sweeps get through this function).
                let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
                let roots = crate::spec::locate::roots::AllowedRoots::for_spec(path);
                for v in crate::spec::locate::roots::check_spec(&resolved.spec, &roots, &cwd) {
                    let loc = locator.locate(&v.field, false);
                    diags.push(Diagnostic::new(loc, v.field, Severity::Error, v.message));
                }
                let ctx = RuleContext::for_spec(path);
                for finding in rules::check(&resolved.spec, &ctx) {
                    let loc = locator.locate(&finding.path, finding.key);
                    diags.push(
                        Diagnostic::new(loc, finding.path, finding.severity, finding.message)
                            .with_hint(finding.hint),
                    );
                }
            }
        }
    }
    diags.sort_by_key(Diagnostic::sort_key);
    diags.dedup();
    diags
}

// ---------------------------------------------------------------------------------------------
// Pass 1: the chain
// ---------------------------------------------------------------------------------------------

/// One parsed file of the `extends` chain.
struct SpecFile {
    /// The path as reported (as given, parents joined onto their child's directory).
    label: String,
    map: SourceMap,
    doc: Json,
}

/// Reads `path` and its ancestors, child first, reporting what stops the chain.
fn load_chain(path: &Path, diags: &mut Vec<Diagnostic>) -> Vec<SpecFile> {
    let mut chain: Vec<SpecFile> = Vec::new();
    let mut seen: Vec<PathBuf> = Vec::new();
    let mut current = path.to_path_buf();
    loop {
        let label = current.display().to_string();
        let at_start = Location {
            file: label.clone(),
            line: 1,
            col: 1,
        };
        let text = match std::fs::read_to_string(&current) {
            Ok(t) => t,
            Err(e) => {
                diags.push(Diagnostic::new(
                    Location {
                        file: label,
                        line: 0,
                        col: 0,
                    },
                    "",
                    Severity::Error,
                    format!("cannot read: {e}"),
                ));
                return chain;
            }
        };
        seen.push(std::fs::canonicalize(&current).unwrap_or_else(|_| current.clone()));
        let map = match SourceMap::parse(&text) {
            Ok(m) => m,
            Err(e) => {
                diags.push(Diagnostic::new(
                    Location {
                        file: label,
                        line: e.pos.line,
                        col: e.pos.col,
                    },
                    "",
                    Severity::Error,
                    format!("YAML syntax error: {}", e.message),
                ));
                return chain;
            }
        };
        for (p, pos) in &map.duplicates {
            let key = p.rsplit('.').next().unwrap_or(p);
            diags.push(Diagnostic::new(
                Location {
                    file: label.clone(),
                    line: pos.line,
                    col: pos.col,
                },
                p.clone(),
                Severity::Error,
                format!("duplicate key `{key}` (a key may appear only once in a mapping)"),
            ));
        }
        let doc = match serde_yaml::from_str::<Option<Json>>(&text) {
            Ok(Some(d)) => d,
            Ok(None) => Json::Object(Default::default()),
            Err(e) => {
                if map.duplicates.is_empty() {
                    let (line, col) = e
                        .location()
                        .map(|l| (l.line(), l.column()))
                        .unwrap_or((1, 1));
                    let msg = e.to_string();
                    let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
                    diags.push(Diagnostic::new(
                        Location {
                            file: label,
                            line,
                            col,
                        },
                        "",
                        Severity::Error,
                        format!("invalid YAML: {msg}"),
                    ));
                }
                return chain;
            }
        };
        if !doc.is_object() {
            diags.push(Diagnostic::new(
                at_start,
                "",
                Severity::Error,
                "a spec must be a mapping of sections (name:, model:, train:, ...)",
            ));
            return chain;
        }
        let extends = doc.get("extends").cloned();
        let extends_at = locate_in(&map, &label, "extends", false);
        chain.push(SpecFile { label, map, doc });
        let parent = match extends {
            None | Some(Json::Null) => return chain,
            Some(Json::String(s)) => s,
            // The schema pass reports the wrong type.
            Some(_) => return chain,
        };
        let base = current.parent().unwrap_or(Path::new(""));
        let next = base.join(&parent);
        if !next.is_file() {
            diags.push(Diagnostic::new(
                extends_at,
                "extends",
                Severity::Error,
                format!("parent spec `{parent}` not found ({})", next.display()),
            ));
            return chain;
        }
        let canon = std::fs::canonicalize(&next).unwrap_or_else(|_| next.clone());
        if seen.contains(&canon) {
            let mut names: Vec<String> = chain.iter().map(|f| f.label.clone()).collect();
            names.push(next.display().to_string());
            diags.push(Diagnostic::new(
                extends_at,
                "extends",
                Severity::Error,
                format!("extends cycle: {}", names.join(" → ")),
            ));
            return chain;
        }
        current = next;
    }
}

/// Merges `over` into `base` as resolution does: maps key by key, anything else replaced.
fn merge(base: &mut Json, over: &Json) {
    match (base, over) {
        (Json::Object(b), Json::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(k) {
                    Some(slot) if slot.is_object() && v.is_object() => merge(slot, v),
                    _ => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, o) => *b = o.clone(),
    }
}

// ---------------------------------------------------------------------------------------------
// Passes 2–3: the JSON Schema
// ---------------------------------------------------------------------------------------------

/// A schema problem before it is located.
#[derive(Debug, Clone)]
struct Issue {
    path: String,
    /// Locate the key (unknown/missing fields) rather than the value.
    key: bool,
    message: String,
    hint: Option<String>,
}

impl Issue {
    fn new(path: String, key: bool, message: String) -> Issue {
        Issue {
            path,
            key,
            message,
            hint: None,
        }
    }

    fn into_diagnostic(self, loc: Location) -> Diagnostic {
        Diagnostic::new(loc, self.path, Severity::Error, self.message).with_hint(self.hint)
    }
}

/// `schema` with the root's `$defs` (and dialect) attached, so it compiles on its own.
fn standalone(root: &Json, schema: &Json) -> Json {
    let mut out = match schema {
        Json::Object(m) => m.clone(),
        Json::Bool(b) => return Json::Bool(*b),
        _ => serde_json::Map::new(),
    };
    for key in ["$schema", "$defs", "definitions"] {
        if let (Some(v), false) = (root.get(key), out.contains_key(key)) {
            out.insert(key.to_string(), v.clone());
        }
    }
    Json::Object(out)
}

/// Schema problems of `instance` (at field path `prefix`) against `schema`; `partial` skips
/// required fields. Choices (`oneOf`/`anyOf`) are explained by the branch that fits best.
fn check_schema(
    root: &Json,
    schema: &Json,
    instance: &Json,
    prefix: &str,
    partial: bool,
) -> Vec<Issue> {
    let mut out = Vec::new();
    let root_key = fingerprint(&root.to_string());
    check_into(
        root, root_key, schema, instance, prefix, partial, 0, &mut out,
    );
    out
}

fn fingerprint(text: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

/// Compiled validators of (root, sub-schema) pairs: compiling is most of a validation's cost
/// (the fuzzing target and a sweep validate the same schema thousands of times).
type ValidatorCache = Mutex<HashMap<(u64, String), Arc<jsonschema::Validator>>>;

/// The validator of `schema` standing alone under `root` (fingerprint `root_key`), compiled
/// once per process.
fn validator(
    root: &Json,
    root_key: u64,
    schema: &Json,
) -> std::result::Result<Arc<jsonschema::Validator>, String> {
    static CACHE: OnceLock<ValidatorCache> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let key = (root_key, schema.to_string());
    if let Some(v) = cache.lock().ok().and_then(|c| c.get(&key).cloned()) {
        return Ok(v);
    }
    let v =
        Arc::new(jsonschema::validator_for(&standalone(root, schema)).map_err(|e| e.to_string())?);
    if let Ok(mut c) = cache.lock() {
        c.insert(key, v.clone());
    }
    Ok(v)
}

#[allow(clippy::too_many_arguments)]
fn check_into(
    root: &Json,
    root_key: u64,
    schema: &Json,
    instance: &Json,
    prefix: &str,
    partial: bool,
    depth: usize,
    out: &mut Vec<Issue>,
) {
    if depth > 24 {
        return;
    }
    let validator = match validator(root, root_key, schema) {
        Ok(v) => v,
        Err(e) => {
            out.push(Issue::new(
                prefix.to_string(),
                false,
                format!("internal error: the spec schema does not compile: {e}"),
            ));
            return;
        }
    };
    // The standalone schema, for suggestions: only built when there is an error to explain.
    let whole_cell = std::cell::OnceCell::new();
    let whole = || whole_cell.get_or_init(|| standalone(root, schema));
    for err in validator.iter_errors(instance) {
        let ptr = err.instance_path.as_str().to_string();
        let rel = pointer_to_path(&ptr);
        let path = if rel.is_empty() {
            prefix.to_string()
        } else {
            join(prefix, &rel)
        };
        let here = instance.pointer(&ptr).unwrap_or(&Json::Null);
        let spath = err.schema_path.as_str().to_string();
        match &err.kind {
            ValidationErrorKind::AdditionalProperties { unexpected } => {
                let parent = spath.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
                let allowed = suggest::schema_at(whole(), parent)
                    .map(|s| suggest::property_names(whole(), s))
                    .unwrap_or_default();
                for k in unexpected {
                    out.push(unknown_field(&path, k, &allowed));
                }
            }
            ValidationErrorKind::Required { property } => {
                if !partial {
                    let p = plain(property);
                    // Name the choices when the missing field is an enum (e.g. a reward's `kind`).
                    let parent = spath.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
                    let choices: Vec<String> = suggest::schema_at(whole(), parent)
                        .and_then(|s| suggest::deref(whole(), s).get("properties")?.get(&p))
                        .map(|s| suggest::enum_values(whole(), s).iter().map(plain).collect())
                        .unwrap_or_default();
                    let message = if choices.is_empty() {
                        format!("missing required field `{p}`")
                    } else {
                        format!(
                            "missing required field `{p}` (one of {})",
                            backticked(&choices)
                        )
                    };
                    out.push(Issue::new(join(&path, &p), true, message));
                }
            }
            ValidationErrorKind::Enum { options } => {
                let opts = options.as_array().cloned().unwrap_or_default();
                out.push(unknown_value(&path, here, &opts));
            }
            ValidationErrorKind::Constant { expected_value } => {
                out.push(unknown_value(
                    &path,
                    here,
                    std::slice::from_ref(expected_value),
                ));
            }
            ValidationErrorKind::OneOfNotValid | ValidationErrorKind::AnyOf => {
                let branches: Vec<Json> = suggest::schema_at(whole(), &spath)
                    .and_then(Json::as_array)
                    .map(|list| {
                        list.iter()
                            .map(|b| suggest::deref(whole(), b).clone())
                            .collect()
                    })
                    .unwrap_or_default();
                explain_choice(root, root_key, &branches, here, &path, partial, depth, out);
            }
            ValidationErrorKind::OneOfMultipleValid => {}
            ValidationErrorKind::Type { .. } => {
                let parent = spath.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
                let expected = suggest::schema_at(whole(), parent)
                    .map(describe_type)
                    .unwrap_or_else(|| "another type".into());
                out.push(Issue::new(
                    path,
                    false,
                    format!("expected {expected}, found {}", describe_value(here)),
                ));
            }
            ValidationErrorKind::Minimum { limit } => out.push(Issue::new(
                path,
                false,
                format!("must be at least {limit}, found {}", plain(here)),
            )),
            ValidationErrorKind::Maximum { limit } => out.push(Issue::new(
                path,
                false,
                format!("must be at most {limit}, found {}", plain(here)),
            )),
            ValidationErrorKind::Pattern { pattern } => out.push(Issue::new(
                path,
                false,
                format!("`{}` does not match the pattern `{pattern}`", plain(here)),
            )),
            _ => out.push(Issue::new(path, false, err.to_string())),
        }
    }
}

fn unknown_field(path: &str, key: &str, allowed: &[String]) -> Issue {
    let hint = did_you_mean(key, allowed.iter().map(String::as_str));
    let mut message = format!("unknown field `{key}`");
    if hint.is_none() && !allowed.is_empty() {
        message.push_str(&format!(", expected one of {}", backticked(allowed)));
    }
    Issue {
        path: join(path, key),
        key: true,
        message,
        hint: hint.map(|h| suggest::hint(&h)),
    }
}

fn unknown_value(path: &str, here: &Json, options: &[Json]) -> Issue {
    let names: Vec<String> = options.iter().map(plain).collect();
    let value = plain(here);
    let hint = here
        .as_str()
        .and_then(|s| did_you_mean(s, names.iter().map(String::as_str)));
    Issue {
        path: path.to_string(),
        key: false,
        message: format!(
            "unknown value `{value}`, expected one of {}",
            backticked(&names)
        ),
        hint: hint.map(|h| suggest::hint(&h)),
    }
}

fn backticked(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Explains why no branch of a `oneOf`/`anyOf` matched: a bad enum value, a bad or missing
/// discriminator (`kind`), or the problems of the branch that fits the value best.
#[allow(clippy::too_many_arguments)]
fn explain_choice(
    root: &Json,
    root_key: u64,
    branches: &[Json],
    here: &Json,
    path: &str,
    partial: bool,
    depth: usize,
    out: &mut Vec<Issue>,
) {
    if branches.is_empty() {
        out.push(Issue::new(path.to_string(), false, "invalid value".into()));
        return;
    }
    // An enum documented per variant: a list of consts.
    let enum_like = branches.iter().all(|b| {
        (b.get("const").is_some() || b.get("enum").is_some()) && b.get("properties").is_none()
    });
    if enum_like {
        let opts: Vec<Json> = branches
            .iter()
            .flat_map(|b| suggest::enum_values(root, b))
            .collect();
        if here.is_string() || !branches.iter().any(|b| accepts_type(root, b, here)) {
            out.push(unknown_value(path, here, &opts));
            return;
        }
    }
    // A tagged union (rewards by `kind`).
    if let (Some(tag), Some(obj)) = (discriminator(branches), here.as_object()) {
        let consts: Vec<Json> = branches
            .iter()
            .filter_map(|b| const_of(b, &tag).cloned())
            .collect();
        match obj.get(&tag) {
            Some(v) => match branches.iter().find(|b| const_of(b, &tag) == Some(v)) {
                Some(b) => check_into(root, root_key, b, here, path, partial, depth + 1, out),
                None => out.push(unknown_value(&join(path, &tag), v, &consts)),
            },
            None if !partial => {
                let names: Vec<String> = consts.iter().map(plain).collect();
                out.push(Issue::new(
                    join(path, &tag),
                    true,
                    format!(
                        "missing required field `{tag}` (one of {})",
                        backticked(&names)
                    ),
                ));
            }
            None => best_branch(root, root_key, branches, here, path, partial, depth, out),
        }
        return;
    }
    let fitting: Vec<Json> = branches
        .iter()
        .filter(|b| accepts_type(root, b, here))
        .cloned()
        .collect();
    if fitting.is_empty() {
        let expected: Vec<String> = branches.iter().map(describe_type).collect();
        out.push(Issue::new(
            path.to_string(),
            false,
            format!(
                "expected {}, found {}",
                expected.join(" or "),
                describe_value(here)
            ),
        ));
        return;
    }
    best_branch(root, root_key, &fitting, here, path, partial, depth, out);
}

/// Reports the problems of the branch with the fewest (none when one branch accepts).
#[allow(clippy::too_many_arguments)]
fn best_branch(
    root: &Json,
    root_key: u64,
    branches: &[Json],
    here: &Json,
    path: &str,
    partial: bool,
    depth: usize,
    out: &mut Vec<Issue>,
) {
    let mut best: Option<Vec<Issue>> = None;
    for b in branches {
        let mut issues = Vec::new();
        check_into(
            root,
            root_key,
            b,
            here,
            path,
            partial,
            depth + 1,
            &mut issues,
        );
        if best.as_ref().is_none_or(|x| issues.len() < x.len()) {
            best = Some(issues);
        }
    }
    out.extend(best.unwrap_or_default());
}

/// A property whose value every branch fixes with a `const` (the tag of a tagged union).
fn discriminator(branches: &[Json]) -> Option<String> {
    let first = branches.first()?.get("properties")?.as_object()?;
    first
        .keys()
        .find(|k| branches.iter().all(|b| const_of(b, k).is_some()))
        .cloned()
}

fn const_of<'a>(branch: &'a Json, prop: &str) -> Option<&'a Json> {
    let p = branch.get("properties")?.get(prop)?;
    p.get("const").or_else(|| {
        p.get("enum")
            .and_then(Json::as_array)
            .filter(|a| a.len() == 1)
            .and_then(|a| a.first())
    })
}

/// The JSON type name of a value, as the schema spells it.
fn type_name(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "boolean",
        Json::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Json::Number(_) => "number",
        Json::String(_) => "string",
        Json::Array(_) => "array",
        Json::Object(_) => "object",
    }
}

/// Whether a schema's declared type (if any) admits the value's type.
fn accepts_type(root: &Json, schema: &Json, v: &Json) -> bool {
    let schema = suggest::deref(root, schema);
    let t = type_name(v);
    let ok = |name: &str| name == t || (name == "number" && t == "integer");
    if let Some(ty) = schema.get("type") {
        return match ty {
            Json::String(s) => ok(s),
            Json::Array(list) => list.iter().filter_map(Json::as_str).any(ok),
            _ => true,
        };
    }
    if let Some(c) = schema.get("const") {
        return type_name(c) == t;
    }
    if let Some(list) = schema.get("enum").and_then(Json::as_array) {
        return list.iter().any(|c| type_name(c) == t);
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(list) = schema.get(key).and_then(Json::as_array) {
            return list.iter().any(|b| accepts_type(root, b, v));
        }
    }
    true
}

/// "a number", "an integer or null", from a schema's `type`.
fn describe_type(schema: &Json) -> String {
    let article = |t: &str| match t {
        "integer" => "an integer".to_string(),
        "array" => "a list".to_string(),
        "object" => "a mapping".to_string(),
        "null" => "null".to_string(),
        other => format!("a {other}"),
    };
    match schema.get("type") {
        Some(Json::String(s)) => article(s),
        Some(Json::Array(list)) => list
            .iter()
            .filter_map(Json::as_str)
            .map(article)
            .collect::<Vec<_>>()
            .join(" or "),
        _ => {
            if let Some(c) = schema.get("const") {
                format!("`{}`", plain(c))
            } else if schema.get("$ref").is_some() || schema.get("properties").is_some() {
                "a mapping".into()
            } else {
                "another value".into()
            }
        }
    }
}

/// "the string `abc`", "a list", "1.5".
fn describe_value(v: &Json) -> String {
    match v {
        Json::Null => "null".into(),
        Json::Bool(b) => format!("the boolean `{b}`"),
        Json::Number(n) => format!("`{n}`"),
        Json::String(s) => format!("the string `{s}`"),
        Json::Array(_) => "a list".into(),
        Json::Object(_) => "a mapping".into(),
    }
}

// ---------------------------------------------------------------------------------------------
// Pass 4: resolution issues
// ---------------------------------------------------------------------------------------------

fn from_resolve_issue(issue: &ResolveIssue, chain: &[SpecFile], locator: &Locator) -> Diagnostic {
    let path = issue.field_path();
    let key = matches!(
        issue.kind,
        IssueKind::UnknownField { .. } | IssueKind::MissingField { .. }
    );
    let loc = match (&issue.origin, &issue.file, issue.line) {
        (_, Some(file), Some(line)) => Location {
            file: file.display().to_string(),
            line,
            col: issue.col.unwrap_or(1),
        },
        (Some(o @ (Origin::Env { .. } | Origin::Set { .. })), _, _) => Location {
            file: o.to_string(),
            line: 0,
            col: 0,
        },
        (Some(Origin::File { path: f }), _, _) => {
            let label = f.display().to_string();
            match chain.iter().find(|c| c.label == label) {
                Some(c) => locate_in(&c.map, &label, &path, key),
                None => locator.locate(&path, key),
            }
        }
        _ => locator.locate(&path, key),
    };
    let hint = match &issue.kind {
        IssueKind::UnknownField { field, expected } => {
            did_you_mean(field, expected.iter().map(String::as_str))
        }
        IssueKind::UnknownVariant { value, expected } => {
            did_you_mean(value, expected.iter().map(String::as_str))
        }
        _ => None,
    };
    Diagnostic::new(loc, path, Severity::Error, issue.message.clone())
        .with_hint(hint.map(|h| suggest::hint(&h)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn issues(doc: Json, partial: bool) -> Vec<String> {
        let schema = experiment_schema();
        check_schema(&schema, &schema, &doc, "", partial)
            .into_iter()
            .map(|i| {
                format!(
                    "{}: {}{}",
                    i.path,
                    i.message,
                    i.hint.map(|h| format!(" ({h})")).unwrap_or_default()
                )
            })
            .collect()
    }

    #[test]
    fn schema_issues_are_explained() {
        let got = issues(json!({"train": {"lerning_rate": 1e-6}}), true);
        assert_eq!(
            got,
            vec![
                "train.lerning_rate: unknown field `lerning_rate` (did you mean `learning_rate`?)"
            ]
        );
        let got = issues(json!({"train": {"lr_scheduler_type": "consine"}}), true);
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(
            got[0].starts_with("train.lr_scheduler_type: unknown value `consine`"),
            "{got:?}"
        );
        assert!(got[0].ends_with("(did you mean `cosine`?)"), "{got:?}");
        let got = issues(
            json!({"rewards": {"f": {"kind": "fromat", "regex": "x"}}}),
            true,
        );
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(
            got[0].starts_with("rewards.f.kind: unknown value `fromat`"),
            "{got:?}"
        );
        assert!(got[0].ends_with("(did you mean `format`?)"), "{got:?}");
        let got = issues(
            json!({"rewards": {"f": {"kind": "format", "regx": "x"}}}),
            false,
        );
        assert!(
            got.contains(
                &"rewards.f.regx: unknown field `regx` (did you mean `regex`?)".to_string()
            ),
            "{got:?}"
        );
        assert!(
            got.contains(&"rewards.f.regex: missing required field `regex`".to_string()),
            "{got:?}"
        );
        let got = issues(json!({"train": {"max_steps": "many"}}), true);
        assert_eq!(
            got,
            vec!["train.max_steps: expected an integer or null, found the string `many`"]
        );
        let got = issues(json!({"rewards": {"f": {"weight": 0.5}}}), true);
        assert!(got.is_empty(), "{got:?}");
        let got = issues(json!({"train": {"warmup_ratio": 1.5}}), true);
        assert_eq!(
            got,
            vec!["train.warmup_ratio: must be at most 1.0, found 1.5"]
        );
    }
}
