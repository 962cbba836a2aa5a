//! Data records: prompt files (JSONL, JSON, CSV) loaded into typed records — messages, user
//! text, reference, task, id — and the order in which training steps visit them.
//!
//! How a record becomes the model input (`data.prompt`):
//! - with a `template`, the user message is the template rendered with the record's fields as
//!   variables (a field the template uses but the record lacks is an error);
//! - otherwise the prompt field is the user text (a string) or the whole conversation (a list
//!   of `{role, content}` messages, TRL's conversational format);
//! - `system` is put first unless the messages already begin with a system message (the data's
//!   own system prompt wins).
//!
//! Errors name the file, the line (JSONL), element (JSON) or line (CSV), and the field.

pub mod order;
pub mod read;
pub mod sets;

use std::path::Path;

use minijinja::{Environment, UndefinedBehavior};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value};

use crate::engine::chat::Message;
use crate::spec::{DataSource, Experiment, FieldMap};
use crate::{Error, Result};

pub use order::step_batch;

/// One data record, ready to prompt the model with.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Stable id: the `fields.id` field, else the line number.
    pub id: String,
    /// 1-based line (JSONL, CSV) or element (JSON array) the record came from.
    pub line: usize,
    /// The chat messages, system prompt first when there is one.
    pub messages: Vec<Message>,
    /// The user text (the last user message): what rewards see as the prompt.
    pub prompt_text: String,
    /// The reference answer, when the field map names a reference field.
    pub reference: Option<Value>,
    /// The task label, when known.
    pub task: Option<String>,
    /// The raw record.
    pub fields: Map<String, Value>,
}

/// Load the records of `source` (`{date}` in its path replaced by `date`): read, turned into
/// messages, shuffled with the experiment seed when `source.shuffle`, cut to `source.limit`.
pub fn load_records(
    spec: &Experiment,
    source: &DataSource,
    date: Option<&str>,
) -> Result<Vec<Record>> {
    let path_s = crate::plan::data::source_path(source, date);
    let path = Path::new(&path_s);
    let (raw, _skipped) = read::read_raw_with(path, source.format, spec.data.on_bad_line)?;
    let env = template_env();
    let template = match &spec.data.prompt.template {
        Some(t) => Some(
            env.template_from_str(t)
                .map_err(|e| Error::Spec(format!("data.prompt.template: {e}")))?,
        ),
        None => None,
    };
    let mut out = Vec::with_capacity(raw.len());
    for (line, fields) in raw {
        let at = |what: String| Error::Spec(format!("{}:{line}: {what}", path.display()));
        let mut messages = match &template {
            Some(t) => {
                let text = t
                    .render(minijinja::Value::from_serialize(&fields))
                    .map_err(|e| at(format!("data.prompt.template: {}", template_error(&e))))?;
                vec![Message::new("user", text)]
            }
            None => prompt_messages(&fields, &source.fields).map_err(at)?,
        };
        if let Some(system) = &spec.data.prompt.system {
            if messages.first().is_none_or(|m| m.role != "system") {
                messages.insert(0, Message::new("system", system.clone()));
            }
        }
        let prompt_text = messages
            .iter()
            .rev()
            .find(|m| m.role == "user")
            .map(|m| m.content.clone())
            .ok_or_else(|| at(format!("field `{}`: no user message", source.fields.prompt)))?;
        let reference = match &source.fields.reference {
            Some(f) => match fields.get(f) {
                None => return Err(at(format!("reference field `{f}` is missing"))),
                Some(Value::Null) => None,
                Some(v) => Some(v.clone()),
            },
            None => None,
        };
        let id = match &source.fields.id {
            Some(f) => match fields.get(f) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Number(n)) => n.to_string(),
                Some(other) => {
                    return Err(at(format!(
                        "id field `{f}` must be a string or a number, found {}",
                        read::kind(other)
                    )))
                }
                None => return Err(at(format!("id field `{f}` is missing"))),
            },
            None => line.to_string(),
        };
        let task = task_of(spec, &source.fields, &fields, &prompt_text).map_err(at)?;
        out.push(Record {
            id,
            line,
            messages,
            prompt_text,
            reference,
            task,
            fields,
        });
    }
    if source.shuffle {
        let mut rng = ChaCha8Rng::seed_from_u64(order::mix(spec.seed, 0x6461_7461));
        out.shuffle(&mut rng);
    }
    if let Some(l) = source.limit {
        out.truncate(l);
    }
    Ok(out)
}

/// The record's task: its task field, else the spec's rules, else the default. A record no
/// rule matches is an error when there are rules and no default.
fn task_of(
    spec: &Experiment,
    fields: &FieldMap,
    record: &Map<String, Value>,
    prompt_text: &str,
) -> std::result::Result<Option<String>, String> {
    if let Some(f) = &fields.task {
        return match record.get(f) {
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Null) | None => Err(format!("task field `{f}` is missing")),
            Some(other) => Err(format!(
                "task field `{f}` must be a string, found {}",
                read::kind(other)
            )),
        };
    }
    let t = &spec.data.task;
    if t.rules.is_empty() {
        return Ok(t.default.clone());
    }
    match crate::rewards::task::task_of(t, fields, record, prompt_text) {
        Some(task) => Ok(Some(task)),
        None => t.default.clone().map(Some).ok_or_else(|| {
            "no data.task rule matches this record and data.task.default is null".to_string()
        }),
    }
}

/// The messages of the prompt field: a string (one user message) or a list of messages.
fn prompt_messages(
    record: &Map<String, Value>,
    fields: &FieldMap,
) -> std::result::Result<Vec<Message>, String> {
    let f = &fields.prompt;
    match record.get(f) {
        None => Err(format!(
            "prompt field `{f}` is missing (set data.*.fields.prompt or data.prompt.template)"
        )),
        Some(Value::String(s)) => Ok(vec![Message::new("user", s.clone())]),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let role = m.get("role").and_then(Value::as_str);
                let content = m.get("content").and_then(Value::as_str);
                match (role, content) {
                    (Some(r), Some(c)) => Ok(Message::new(r, c)),
                    _ => Err(format!(
                        "prompt field `{f}`, message {i}: expected {{\"role\": string, \
                         \"content\": string}}"
                    )),
                }
            })
            .collect(),
        Some(other) => Err(format!(
            "prompt field `{f}` must be a string or a list of messages, found {}",
            read::kind(other)
        )),
    }
}

fn template_env() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_keep_trailing_newline(false);
    env
}

fn template_error(e: &minijinja::Error) -> String {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    msg
}

#[cfg(test)]
mod tests;
