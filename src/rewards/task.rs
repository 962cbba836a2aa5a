//! The task label of a record: the data field named by `data.fields.task`, else the first
//! matching rule of `data.task.rules`, else `data.task.default`.
//!
//! A rule matches when the prompt text contains any of its `contains` phrases
//! (case-insensitive) **or** its `regex` finds a match. Rule regexes are compiled once per
//! pattern and cached; check them up front with [`check_rules`] (an invalid regex never
//! matches).

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use regex::Regex;
use serde_json::{Map, Value};

use crate::spec::{FieldMap, TaskRule, TaskSpec};
use crate::{Error, Result};

/// The task of a record (data field, else rules, else default); `None` when none applies.
pub fn task_of(
    spec: &TaskSpec,
    field_map: &FieldMap,
    record: &Map<String, Value>,
    prompt_text: &str,
) -> Option<String> {
    if let Some(t) = field_map
        .task
        .as_deref()
        .and_then(|f| record.get(f))
        .and_then(field_text)
    {
        return Some(t);
    }
    classify(spec, prompt_text)
}

/// The task the rules (else the default) give a prompt text.
pub fn classify(spec: &TaskSpec, prompt_text: &str) -> Option<String> {
    spec.rules
        .iter()
        .find(|r| rule_matches(r, prompt_text))
        .map(|r| r.task.clone())
        .or_else(|| spec.default.clone())
}

/// Checks that every rule's regex compiles.
pub fn check_rules(spec: &TaskSpec) -> Result<()> {
    for (i, r) in spec.rules.iter().enumerate() {
        if let Some(p) = &r.regex {
            Regex::new(p).map_err(|e| Error::Spec(format!("data.task.rules.{i}.regex: {e}")))?;
        }
    }
    Ok(())
}

/// A task field's value as text: a non-empty string, or a number/bool written out.
fn field_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn rule_matches(rule: &TaskRule, text: &str) -> bool {
    let lower = text.to_lowercase();
    if rule
        .contains
        .iter()
        .any(|c| !c.is_empty() && lower.contains(&c.to_lowercase()))
    {
        return true;
    }
    rule.regex
        .as_deref()
        .and_then(cached_regex)
        .is_some_and(|re| re.is_match(text))
}

fn cached_regex(pattern: &str) -> Option<Regex> {
    static CACHE: OnceLock<Mutex<HashMap<String, Option<Regex>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let mut map = cache.lock().ok()?;
    map.entry(pattern.to_string())
        .or_insert_with(|| Regex::new(pattern).ok())
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec() -> TaskSpec {
        TaskSpec {
            names: vec!["sql_qa".into(), "push".into(), "other".into()],
            rules: vec![
                TaskRule {
                    task: "sql_qa".into(),
                    contains: vec!["CONSULTA SQL".into()],
                    regex: None,
                },
                TaskRule {
                    task: "push".into(),
                    contains: vec![],
                    regex: Some(r"\bnotifica[çc][ãa]o\b".into()),
                },
            ],
            default: Some("other".into()),
        }
    }

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn field_wins_over_rules() {
        let fm = FieldMap {
            task: Some("task".into()),
            ..FieldMap::default()
        };
        let rec = map(json!({"task": "push"}));
        assert_eq!(
            task_of(&spec(), &fm, &rec, "escreva uma consulta sql").as_deref(),
            Some("push")
        );
        // named field missing or empty: the rules decide
        let rec = map(json!({"task": ""}));
        assert_eq!(
            task_of(&spec(), &fm, &rec, "Escreva uma consulta SQL").as_deref(),
            Some("sql_qa")
        );
    }

    #[test]
    fn rules_in_order_then_default() {
        let fm = FieldMap::default();
        let rec = Map::new();
        assert_eq!(
            task_of(&spec(), &fm, &rec, "uma notificação push").as_deref(),
            Some("push")
        );
        assert_eq!(
            task_of(&spec(), &fm, &rec, "nada a ver").as_deref(),
            Some("other")
        );
        let mut s = spec();
        s.default = None;
        assert_eq!(task_of(&s, &fm, &rec, "nada a ver"), None);
    }

    #[test]
    fn bad_rule_regex_is_reported_and_never_matches() {
        let mut s = spec();
        s.rules[1].regex = Some("(".into());
        assert!(check_rules(&s).is_err());
        assert!(check_rules(&spec()).is_ok());
        assert_eq!(classify(&s, "(").as_deref(), Some("other"));
    }
}
