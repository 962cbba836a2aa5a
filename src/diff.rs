//! Differences between two resolved specs, leaf by leaf.
//!
//! Both sides are compared after resolution (defaults, `extends`, environment and `--set`
//! applied), as the fully explicit JSON documents, so a value inherited on one side and written
//! on the other is no difference, and a changed default is. A side may also be a run
//! directory: its `spec.resolved.yaml` is what ran.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value as Json;

use crate::spec::resolve::{resolve, ResolveOptions};
use crate::spec::Experiment;

/// Fields that identify or describe an experiment rather than configure it; left out of a
/// diff unless asked for (two specs always differ in name).
pub const META_FIELDS: &[&str] = &["name", "description", "extends"];

/// How a leaf differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    Changed,
    /// Only in B.
    Added,
    /// Only in A.
    Removed,
}

/// One differing leaf.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    /// Dotted field path (`train.max_steps`, `monitors.0.value`).
    pub path: String,
    pub kind: ChangeKind,
    /// The value in A (`None` when added).
    pub old: Option<Json>,
    /// The value in B (`None` when removed).
    pub new: Option<Json>,
}

/// The changed leaves from `a` to `b`, in document order (A's order, then keys only in B).
/// Maps are compared key by key; lists of equal length item by item, other lists whole.
pub fn diff_values(a: &Json, b: &Json) -> Vec<Change> {
    let mut out = Vec::new();
    walk(a, b, "", &mut out);
    out
}

fn join(path: &str, seg: &str) -> String {
    if path.is_empty() {
        seg.to_string()
    } else {
        format!("{path}.{seg}")
    }
}

fn walk(a: &Json, b: &Json, path: &str, out: &mut Vec<Change>) {
    match (a, b) {
        (Json::Object(ma), Json::Object(mb)) => {
            for (k, va) in ma {
                let p = join(path, k);
                match mb.get(k) {
                    Some(vb) => walk(va, vb, &p, out),
                    None => leaves(va, &p, ChangeKind::Removed, out),
                }
            }
            for (k, vb) in mb {
                if !ma.contains_key(k) {
                    leaves(vb, &join(path, k), ChangeKind::Added, out);
                }
            }
        }
        (Json::Array(la), Json::Array(lb))
            if la.len() == lb.len() && la.iter().any(is_container) =>
        {
            for (i, (va, vb)) in la.iter().zip(lb).enumerate() {
                walk(va, vb, &join(path, &i.to_string()), out);
            }
        }
        _ => {
            if !same(a, b) {
                out.push(Change {
                    path: path.to_string(),
                    kind: ChangeKind::Changed,
                    old: Some(a.clone()),
                    new: Some(b.clone()),
                });
            }
        }
    }
}

fn is_container(v: &Json) -> bool {
    v.is_object() || v.is_array()
}

/// Equality where `1` and `1.0` are the same number.
fn same(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(p), Some(q)) => p == q,
            _ => x == y,
        },
        (Json::Array(x), Json::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q))
        }
        (Json::Object(x), Json::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// Every leaf under a value present on one side only.
fn leaves(v: &Json, path: &str, kind: ChangeKind, out: &mut Vec<Change>) {
    match v {
        Json::Object(m) if !m.is_empty() => {
            for (k, x) in m {
                leaves(x, &join(path, k), kind, out);
            }
        }
        _ => out.push(Change {
            path: path.to_string(),
            kind,
            old: (kind == ChangeKind::Removed).then(|| v.clone()),
            new: (kind == ChangeKind::Added).then(|| v.clone()),
        }),
    }
}

/// Removes the [`META_FIELDS`] from a list of changes.
pub fn without_meta(changes: Vec<Change>) -> Vec<Change> {
    changes
        .into_iter()
        .filter(|c| {
            let top = c.path.split('.').next().unwrap_or("");
            !META_FIELDS.contains(&top)
        })
        .collect()
}

/// The resolved document of one side: a spec file (resolved with `opts`) or a run directory
/// (its `spec.resolved.yaml`, as recorded).
pub fn load_side(path: &Path, opts: &ResolveOptions) -> crate::Result<Json> {
    if path.is_dir() {
        let file: PathBuf = path.join("spec.resolved.yaml");
        let text = std::fs::read_to_string(&file).map_err(|e| {
            crate::Error::Run(format!(
                "{}: not a run directory with a spec.resolved.yaml ({e})",
                path.display()
            ))
        })?;
        let raw: Json = serde_yaml::from_str(&text)
            .map_err(|e| crate::Error::Spec(format!("{}: {e}", file.display())))?;
        // Normalise through the types when the record still fits them (same field order and
        // number forms as a freshly resolved spec); otherwise compare what was recorded.
        return Ok(match serde_json::from_value::<Experiment>(raw.clone()) {
            Ok(spec) => serde_json::to_value(spec)?,
            Err(_) => raw,
        });
    }
    if !path.exists() {
        return Err(crate::Error::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or directory"),
        ));
    }
    let resolved = resolve(path, opts)?;
    Ok(serde_json::to_value(&resolved.spec)?)
}

/// A value as written in a spec: strings bare, lists and maps in flow style.
pub fn render(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        Json::Array(items) => format!(
            "[{}]",
            items.iter().map(render).collect::<Vec<_>>().join(", ")
        ),
        Json::Object(m) => format!(
            "{{{}}}",
            m.iter()
                .map(|(k, x)| format!("{k}: {}", render(x)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string(),
    }
}

fn side(v: &Option<Json>) -> String {
    v.as_ref().map(render).unwrap_or_else(|| "(absent)".into())
}

/// `path: old → new`, one line per change.
pub fn format_text(changes: &[Change]) -> String {
    let mut s = String::new();
    for c in changes {
        let _ = writeln!(s, "{}: {} → {}", c.path, side(&c.old), side(&c.new));
    }
    s
}

/// A Markdown table of the changes, headed by the two sides' names.
pub fn format_markdown(a: &str, b: &str, changes: &[Change]) -> String {
    let cell = |v: &Option<Json>| match v {
        Some(x) => format!("`{}`", render(x).replace('|', "\\|").replace('`', "'")),
        None => "—".to_string(),
    };
    let mut s = format!("| field | {a} | {b} |\n|---|---|---|\n");
    for c in changes {
        let _ = writeln!(s, "| `{}` | {} | {} |", c.path, cell(&c.old), cell(&c.new));
    }
    s
}

/// The changes as a JSON document: `{a, b, same, changes: [{path, kind, old, new}]}`.
pub fn format_json(a: &str, b: &str, changes: &[Change]) -> Json {
    serde_json::json!({
        "a": a,
        "b": b,
        "same": changes.is_empty(),
        "changes": changes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn leaves_in_document_order() {
        let a = json!({"name": "a", "train": {"lr": 2e-6, "steps": 200, "mods": ["q", "v"]},
                       "rewards": {"x": {"w": 1.0}}, "mon": [{"v": 1}]});
        let b = json!({"name": "b", "train": {"lr": 5e-6, "steps": 200.0, "mods": ["q", "k", "v"]},
                       "rewards": {"y": {"w": 1.0}}, "mon": [{"v": 2}]});
        let text = format_text(&without_meta(diff_values(&a, &b)));
        assert_eq!(
            text,
            "train.lr: 2e-6 → 5e-6\n\
             train.mods: [q, v] → [q, k, v]\n\
             rewards.x.w: 1.0 → (absent)\n\
             rewards.y.w: (absent) → 1.0\n\
             mon.0.v: 1 → 2\n"
        );
        assert!(diff_values(&a, &a).is_empty());
        let md = format_markdown(
            "A",
            "B",
            &diff_values(&json!({"k": "a|b"}), &json!({"k": null})),
        );
        assert_eq!(
            md,
            "| field | A | B |\n|---|---|---|\n| `k` | `a\\|b` | `null` |\n"
        );
    }
}
