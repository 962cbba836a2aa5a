//! Did-you-mean suggestions for unknown keys and enum values, and the JSON-Schema look-ups
//! that list what is allowed at a place in a spec.

use serde_json::Value;

/// The most similar candidate to `word`, if one is similar enough to be a likely typo.
///
/// Names that differ only in case or in `-`/`_` separators always match; otherwise the best
/// Jaro-Winkler similarity must reach 0.85, or the Damerau-Levenshtein distance be at most
/// a third of the word's length (at least 1), so `lerning_rate` finds `learning_rate` while
/// `foo` finds nothing in a list of unrelated names.
pub fn did_you_mean<'a, I>(word: &str, candidates: I) -> Option<String>
where
    I: IntoIterator<Item = &'a str>,
{
    let norm = |s: &str| s.to_lowercase().replace(['-', ' '], "_");
    let w = norm(word);
    let mut best: Option<(f64, usize, &str)> = None;
    for c in candidates {
        if c == word {
            continue;
        }
        let n = norm(c);
        if n == w || n.replace('_', "") == w.replace('_', "") {
            return Some(c.to_string());
        }
        let jw = strsim::jaro_winkler(&w, &n);
        let dl = strsim::damerau_levenshtein(&w, &n);
        let better = match best {
            None => true,
            Some((bjw, bdl, _)) => dl < bdl || (dl == bdl && jw > bjw),
        };
        if better {
            best = Some((jw, dl, c));
        }
    }
    let (jw, dl, c) = best?;
    let max_edits = (w.chars().count() / 3).max(1);
    (jw >= 0.85 || dl <= max_edits).then(|| c.to_string())
}

/// Formats a suggestion as the hint printed after a message: ``did you mean `x`?``.
pub fn hint(suggestion: &str) -> String {
    format!("did you mean `{suggestion}`?")
}

/// Follows `$ref`s (`#/$defs/X` style JSON pointers into `root`) until a non-reference schema.
pub fn deref<'a>(root: &'a Value, mut schema: &'a Value) -> &'a Value {
    for _ in 0..32 {
        let Some(r) = schema.get("$ref").and_then(Value::as_str) else {
            return schema;
        };
        match r.strip_prefix('#').and_then(|p| root.pointer(p)) {
            Some(s) => schema = s,
            None => return schema,
        }
    }
    schema
}

/// The sub-schemas a schema combines (`anyOf`, `oneOf`, `allOf`), dereferenced.
fn branches<'a>(root: &'a Value, schema: &'a Value) -> Vec<&'a Value> {
    let mut out = Vec::new();
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(list) = schema.get(key).and_then(Value::as_array) {
            out.extend(list.iter().map(|s| deref(root, s)));
        }
    }
    out
}

/// The property names a schema (or any of its branches) declares.
pub fn property_names(root: &Value, schema: &Value) -> Vec<String> {
    let schema = deref(root, schema);
    let mut out: Vec<String> = schema
        .get("properties")
        .and_then(Value::as_object)
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    for b in branches(root, schema) {
        for n in property_names(root, b) {
            if !out.contains(&n) {
                out.push(n);
            }
        }
    }
    out
}

/// The allowed values of an enum-like schema: `enum` lists, `const`s, and those of branches.
pub fn enum_values(root: &Value, schema: &Value) -> Vec<Value> {
    let schema = deref(root, schema);
    let mut out: Vec<Value> = Vec::new();
    if let Some(list) = schema.get("enum").and_then(Value::as_array) {
        out.extend(list.iter().cloned());
    }
    if let Some(c) = schema.get("const") {
        out.push(c.clone());
    }
    for b in branches(root, schema) {
        for v in enum_values(root, b) {
            if !out.contains(&v) {
                out.push(v);
            }
        }
    }
    out
}

/// The schema at a JSON-Schema keyword location such as `/properties/train/$ref/properties/x`
/// (as `jsonschema` reports it); `$ref` segments are followed.
pub fn schema_at<'a>(root: &'a Value, schema_path: &str) -> Option<&'a Value> {
    let mut cur = root;
    for seg in schema_path.split('/').skip(1) {
        let seg = seg.replace("~1", "/").replace("~0", "~");
        if seg == "$ref" {
            cur = deref(root, cur);
            continue;
        }
        cur = match cur {
            Value::Object(m) => m.get(&seg)?,
            Value::Array(a) => a.get(seg.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// Renders a JSON value the way a user wrote it in YAML (strings without quotes).
pub fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn typos_find_their_names() {
        let keys = [
            "learning_rate",
            "lr_scheduler_type",
            "max_steps",
            "warmup_ratio",
        ];
        assert_eq!(
            did_you_mean("lerning_rate", keys).as_deref(),
            Some("learning_rate")
        );
        assert_eq!(did_you_mean("max_step", keys).as_deref(), Some("max_steps"));
        assert_eq!(
            did_you_mean("warmup-ratio", keys).as_deref(),
            Some("warmup_ratio")
        );
        assert_eq!(
            did_you_mean("Max_Steps", keys).as_deref(),
            Some("max_steps")
        );
        assert_eq!(did_you_mean("foo", keys), None);
        assert_eq!(did_you_mean("lr", keys), None);
        let kinds = [
            "json",
            "format",
            "semantic",
            "quality",
            "judge",
            "composite",
        ];
        assert_eq!(did_you_mean("fromat", kinds).as_deref(), Some("format"));
        assert_eq!(did_you_mean("semantc", kinds).as_deref(), Some("semantic"));
        assert_eq!(
            did_you_mean("consine", ["cosine", "linear", "constant"]).as_deref(),
            Some("cosine")
        );
    }

    #[test]
    fn schema_lookups() {
        let root = json!({
            "$defs": {
                "T": {"type": "object", "properties": {"lr": {}, "steps": {}}},
                "K": {"oneOf": [{"const": "a"}, {"enum": ["b", "c"]}]}
            },
            "properties": {"train": {"$ref": "#/$defs/T"}, "k": {"$ref": "#/$defs/K"}}
        });
        let t = schema_at(&root, "/properties/train/$ref").unwrap();
        assert_eq!(property_names(&root, t), vec!["lr", "steps"]);
        let k = schema_at(&root, "/properties/k").unwrap();
        assert_eq!(
            enum_values(&root, k),
            vec![json!("a"), json!("b"), json!("c")]
        );
        assert_eq!(plain(&json!("x")), "x");
        assert_eq!(plain(&json!(1.5)), "1.5");
    }
}
