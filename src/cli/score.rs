//! `runner score`: score existing completions offline with a spec's rewards (or one reward
//! kind with its defaults) and print a per-reward, per-task table.
//!
//! Input rows (JSON Lines) hold at least the completion (`completion`, or the field named by
//! `--completion-field`), plus when present `prompt` (a string or a list of `{role, content}`
//! messages: the user messages' text is used), the reference (the spec's
//! `data.*.fields.reference`, else `reference`), `task` (else the spec's task rules), `group`
//! (else rows with the same prompt form a group) and `outcome`. Each output row is the input row
//! plus `rewards: {name: number | null}` (null = unscorable; rewards whose `tasks` exclude the
//! row are left out), `unscorable: {name: reason}` when any, and `parsed: {name: object | null}`
//! for `json` rewards.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde_json::{json, Map, Value};

use crate::rewards::json::{compare_parsers, extract_json, parse_strict, ExtractOptions};
use crate::rewards::set::{RewardContext, RewardSet, ScoreInput, Scored, NO_TASK};
use crate::rewards::task::task_of;
use crate::rewards::RewardStats;
use crate::spec::resolve::ResolveOptions;
use crate::spec::{Experiment, FieldMap};

/// The parser `--compare-parser` compares the tolerant one with.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BaselineParser {
    /// `json.loads` after stripping code fences (the V4 parser).
    Strict,
}

/// Arguments of `runner score`.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  runner score experiments/v4_1.yaml --input completions.jsonl --output scored.jsonl
  runner score experiments/v4_1.yaml --input experiments/data/pairs/eval.jsonl --completion-field reference
  runner score --reward json --input experiments/data/pairs/completions_sample.jsonl --compare-parser strict")]
pub struct Args {
    /// The spec whose rewards score the completions (or use --reward).
    #[arg(
        value_name = "SPEC",
        required_unless_present = "reward",
        conflicts_with = "reward"
    )]
    pub spec: Option<PathBuf>,
    /// Score with one reward of this kind and its default options instead of a spec
    /// (json, quality, keywords, answer, semantic, ...).
    #[arg(long, value_name = "KIND")]
    pub reward: Option<String>,
    /// Completions to score (JSON Lines).
    #[arg(long, value_name = "JSONL")]
    pub input: PathBuf,
    /// Write the scored rows here (JSON Lines, written atomically).
    #[arg(long, value_name = "JSONL")]
    pub output: Option<PathBuf>,
    /// The input field holding the completion (e.g. `reference` to score the data's own
    /// reference answers).
    #[arg(long, value_name = "NAME", default_value = "completion")]
    pub completion_field: String,
    /// Also count how many completions parse with the strict parser, the tolerant one, both or
    /// neither (over the rows a json reward applies to; all rows without one).
    #[arg(long, value_enum, value_name = "PARSER")]
    pub compare_parser: Option<BaselineParser>,
    /// Print the summary as JSON instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Override a spec field: `--set path=value` (value parsed as YAML); repeatable.
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub sets: Vec<String>,
    /// Ignore `RUNNER_*` environment variables.
    #[arg(long)]
    pub no_env: bool,
}

/// One parsed input row.
struct InputRow {
    line: usize,
    row: Map<String, Value>,
    prompt: String,
    completion: String,
    reference: Option<Value>,
    task: Option<String>,
    group: usize,
    outcome: Option<Value>,
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    let spec = load_spec(&args)?;
    let set = RewardSet::from_spec(&spec, &RewardContext::default())
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("building the rewards")?;
    let rows = match read_rows(&args.input, &args.completion_field, &spec) {
        Ok(rows) => rows,
        Err(RowsError::Io(e)) => return Err(e),
        Err(RowsError::Bad(problems)) => {
            for p in &problems {
                eprintln!("{p}");
            }
            eprintln!(
                "{}: {} bad row{}; nothing was scored",
                args.input.display(),
                problems.len(),
                if problems.len() == 1 { "" } else { "s" }
            );
            return Ok(1);
        }
    };
    if rows.is_empty() {
        bail!("{}: no rows to score", args.input.display());
    }
    let inputs: Vec<ScoreInput<'_>> = rows
        .iter()
        .map(|r| ScoreInput {
            prompt: &r.prompt,
            completion: &r.completion,
            reference: r.reference.as_ref(),
            task: r.task.as_deref(),
            record: &r.row,
            group: r.group,
            outcome: r.outcome.as_ref(),
        })
        .collect();
    let scored = set
        .score(&inputs)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("scoring")?;
    let tasks: Vec<Option<&str>> = rows.iter().map(|r| r.task.as_deref()).collect();
    let by_task = scored.stats_by_task(&tasks);
    let comparison = args
        .compare_parser
        .map(|_| parser_comparison(&set, &scored, &rows));

    if let Some(out) = &args.output {
        write_output(out, &rows, &set, &scored)?;
        eprintln!("wrote {} scored rows to {}", rows.len(), out.display());
    }
    if args.json {
        let summary = json!({
            "input": args.input,
            "rows": rows.len(),
            "rewards": scored.stats(),
            "total": scored.total_stats(),
            "by_task": by_task,
            "judge_retries": scored.judge_retries,
            "compare_parser": comparison,
        });
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print!("{}", render_table(&scored, &by_task));
        if let Some(c) = &comparison {
            print!("{}", render_comparison(c));
        }
    }
    Ok(0)
}

/// The spec: the file resolved, or a one-reward spec for `--reward KIND`.
fn load_spec(args: &Args) -> anyhow::Result<Experiment> {
    if let Some(path) = &args.spec {
        let opts = ResolveOptions {
            sets: args.sets.clone(),
            use_env: !args.no_env,
        };
        return crate::spec::resolve::resolve(path, &opts)
            .map(|r| r.spec)
            .map_err(|e| anyhow::anyhow!("{e}"))
            .with_context(|| format!("resolving {}", path.display()));
    }
    let kind = args.reward.as_deref().unwrap_or_default();
    let doc = json!({"rewards": {kind: {"kind": kind}}});
    serde_json::from_value::<Experiment>(doc).map_err(|e| {
        let msg = e.to_string();
        let hint = match msg.split("missing field `").nth(1) {
            Some(rest) => {
                let field = rest.split('`').next().unwrap_or(rest);
                format!(
                    "a `{kind}` reward has no default for `{field}`; write a spec with \
                     `rewards: {{my_{kind}: {{kind: {kind}, {field}: ...}}}}` and pass it instead \
                     of --reward"
                )
            }
            None if msg.contains("unknown variant") => format!(
                "unknown reward kind `{kind}` (kinds: json, format, semantic, quality, keywords, \
                 answer, sql, judge, composite)"
            ),
            None => msg,
        };
        anyhow::anyhow!("--reward {kind}: {hint}")
    })
}

enum RowsError {
    Io(anyhow::Error),
    Bad(Vec<String>),
}

/// The spec's name of a data field (train source first, then eval), or the default.
fn field_map(spec: &Experiment) -> FieldMap {
    [&spec.data.train, &spec.data.eval]
        .into_iter()
        .flatten()
        .map(|d| d.fields.clone())
        .next()
        .unwrap_or_default()
}

/// Reads and checks every row; all problems are reported with their line numbers.
fn read_rows(
    path: &Path,
    completion_field: &str,
    spec: &Experiment,
) -> Result<Vec<InputRow>, RowsError> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading {}", path.display()))
        .map_err(RowsError::Io)?;
    let fields = field_map(spec);
    let reference_field = fields
        .reference
        .clone()
        .unwrap_or_else(|| "reference".into());
    let task_field = fields.task.clone().unwrap_or_else(|| "task".into());
    let task_map = FieldMap {
        task: Some(task_field),
        ..fields.clone()
    };
    let mut problems = Vec::new();
    let mut rows = Vec::new();
    let mut groups: HashMap<String, usize> = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let at = format!("{}:{n}", path.display());
        let row = match serde_json::from_str::<Value>(line) {
            Ok(Value::Object(m)) => m,
            Ok(_) => {
                problems.push(format!("{at}: not a JSON object"));
                continue;
            }
            Err(e) => {
                problems.push(format!("{at}: invalid JSON: {e}"));
                continue;
            }
        };
        let completion = match row.get(completion_field) {
            Some(Value::String(s)) => s.clone(),
            Some(other) => {
                problems.push(format!(
                    "{at}: `{completion_field}` must be a string, found {}",
                    kind_of(other)
                ));
                continue;
            }
            None => {
                let hint = if completion_field == "completion" {
                    " (use --completion-field NAME to score another field)"
                } else {
                    ""
                };
                problems.push(format!("{at}: no `{completion_field}` field{hint}"));
                continue;
            }
        };
        let prompt = match prompt_text(row.get(&fields.prompt).or_else(|| row.get("prompt"))) {
            Ok(p) => p,
            Err(why) => {
                problems.push(format!("{at}: `prompt` {why}"));
                continue;
            }
        };
        let group = match row.get("group") {
            None | Some(Value::Null) => {
                let next = groups.len();
                *groups.entry(format!("prompt:{prompt}")).or_insert(next)
            }
            Some(v) => match v.as_u64() {
                Some(g) => {
                    let next = groups.len();
                    *groups.entry(format!("group:{g}")).or_insert(next)
                }
                None => {
                    problems.push(format!(
                        "{at}: `group` must be a non-negative integer, found {v}"
                    ));
                    continue;
                }
            },
        };
        let task = task_of(&spec.data.task, &task_map, &row, &prompt);
        rows.push(InputRow {
            line: n,
            reference: row.get(&reference_field).filter(|v| !v.is_null()).cloned(),
            outcome: row.get("outcome").filter(|v| !v.is_null()).cloned(),
            prompt,
            completion,
            task,
            group,
            row,
        });
    }
    if problems.is_empty() {
        Ok(rows)
    } else {
        Err(RowsError::Bad(problems))
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The prompt as text: a string, or the user messages' contents of a message list.
fn prompt_text(v: Option<&Value>) -> Result<String, String> {
    match v {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(msgs)) => {
            let mut parts = Vec::new();
            for m in msgs {
                let role = m.get("role").and_then(Value::as_str);
                let content = m.get("content").and_then(Value::as_str);
                match (role, content) {
                    (Some("user"), Some(c)) => parts.push(c),
                    (Some(_), Some(_)) => {}
                    _ => return Err("messages must be {role, content} objects".into()),
                }
            }
            Ok(parts.join("\n\n"))
        }
        Some(other) => Err(format!(
            "must be a string or a list of messages, found {}",
            kind_of(other)
        )),
    }
}

fn write_output(
    path: &Path,
    rows: &[InputRow],
    set: &RewardSet,
    scored: &Scored,
) -> anyhow::Result<()> {
    let json_names = set.json_names();
    let mut text = String::new();
    for (i, r) in rows.iter().enumerate() {
        let mut out = r.row.clone();
        let mut rewards = Map::new();
        let mut unscorable = Map::new();
        for name in &scored.names {
            if !scored.applies(name, i) {
                continue;
            }
            if let Some(s) = scored.per_reward.get(name).and_then(|v| v.get(i)) {
                rewards.insert(name.clone(), s.to_json());
                if let crate::rewards::Score::Unscorable(why) = s {
                    unscorable.insert(name.clone(), Value::String(why.clone()));
                }
            }
        }
        out.insert("rewards".into(), Value::Object(rewards));
        if !unscorable.is_empty() {
            out.insert("unscorable".into(), Value::Object(unscorable));
        }
        let mut parsed = Map::new();
        for name in &json_names {
            if !scored.applies(name, i) {
                continue;
            }
            let p = scored
                .parsed
                .get(name)
                .and_then(|v| v.get(i))
                .cloned()
                .flatten()
                .unwrap_or(Value::Null);
            parsed.insert(name.clone(), p);
        }
        if !json_names.is_empty() {
            out.insert("parsed".into(), Value::Object(parsed));
        }
        text.push_str(&serde_json::to_string(&Value::Object(out))?);
        text.push('\n');
    }
    crate::run::atomic::write_text(path, &text)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("writing {}", path.display()))
}

fn fmt_opt(x: Option<f64>) -> String {
    x.map(|v| format!("{v:.4}")).unwrap_or_else(|| "-".into())
}

/// The per-reward, per-task table: every reward over all rows it applies to (task `all`), then
/// per task; the training reward last as `total`.
pub fn render_table(
    scored: &Scored,
    by_task: &BTreeMap<String, BTreeMap<String, RewardStats>>,
) -> String {
    let mut lines: Vec<[String; 6]> = Vec::new();
    let mut push = |reward: &str, task: &str, s: &RewardStats| {
        lines.push([
            reward.to_string(),
            task.to_string(),
            fmt_opt(s.mean),
            fmt_opt(s.std),
            s.unscorable.to_string(),
            s.count.to_string(),
        ]);
    };
    let stats = scored.stats();
    let mut names: Vec<&str> = scored.names.iter().map(String::as_str).collect();
    names.push("total");
    for name in names {
        let all = if name == "total" {
            scored.total_stats()
        } else {
            match stats.get(name) {
                Some(s) => s.clone(),
                None => continue,
            }
        };
        push(name, "all", &all);
        let per_task: Vec<(&String, &RewardStats)> = by_task
            .iter()
            .filter_map(|(t, m)| m.get(name).map(|s| (t, s)))
            .collect();
        // one task only (or none): its line would repeat `all`
        if per_task.len() > 1 || per_task.iter().any(|(t, _)| t.as_str() != NO_TASK) {
            for (t, s) in per_task {
                push(name, t, s);
            }
        }
    }
    let header = ["reward", "task", "mean", "std", "unscorable", "n"];
    let mut width = header.map(str::len);
    for l in &lines {
        for (w, c) in width.iter_mut().zip(l) {
            *w = (*w).max(c.chars().count());
        }
    }
    let row = |cells: [&str; 6]| {
        let mut s = String::new();
        for (k, c) in cells.iter().enumerate() {
            let pad = width[k] - c.chars().count();
            if k < 2 {
                s.push_str(c);
                s.push_str(&" ".repeat(pad));
            } else {
                s.push_str(&" ".repeat(pad));
                s.push_str(c);
            }
            s.push_str(if k + 1 < cells.len() { "  " } else { "\n" });
        }
        s
    };
    let mut out = row(header);
    for l in &lines {
        out.push_str(&row([&l[0], &l[1], &l[2], &l[3], &l[4], &l[5]]));
    }
    out
}

/// `--compare-parser strict`: counts over the rows a json reward applies to (all rows when the
/// spec has none), with up to 3 example lines per class.
fn parser_comparison(set: &RewardSet, scored: &Scored, rows: &[InputRow]) -> Value {
    let json_names = set.json_names();
    let picked: Vec<&InputRow> = rows
        .iter()
        .enumerate()
        .filter(|(i, _)| json_names.is_empty() || json_names.iter().any(|n| scored.applies(n, *i)))
        .map(|(_, r)| r)
        .collect();
    let options = ExtractOptions::default();
    let c = compare_parsers(picked.iter().map(|r| r.completion.as_str()), &options);
    let mut examples: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
    for r in &picked {
        let strict = parse_strict(&r.completion).is_ok();
        let tolerant = extract_json(&r.completion, &options);
        let class = match (strict, &tolerant) {
            (true, Ok(_)) => "both",
            (false, Ok(_)) => "tolerant_only",
            (true, Err(_)) => "strict_only",
            (false, Err(_)) => "neither",
        };
        let list = examples.entry(class).or_default();
        if list.len() < 3 {
            let mut e = json!({
                "line": r.line,
                "completion": truncate(&r.completion, 120),
            });
            if let Some(id) = r.row.get("id") {
                e["id"] = id.clone();
            }
            match &tolerant {
                Ok(x) if !x.repairs.is_empty() => e["repairs"] = json!(x.repairs),
                Err(f) => e["failure"] = json!(f.kind()),
                _ => {}
            }
            list.push(e);
        }
    }
    json!({
        "total": c.total,
        "both": c.strict_ok - c.strict_only,
        "tolerant_only": c.tolerant_only,
        "strict_only": c.strict_only,
        "neither": c.total - c.tolerant_ok - c.strict_only,
        "strict_ok": c.strict_ok,
        "tolerant_ok": c.tolerant_ok,
        "repairs": c.repairs,
        "failures": c.failures,
        "examples": examples,
    })
}

fn truncate(s: &str, n: usize) -> String {
    let one_line = s.replace('\n', "\\n");
    if one_line.chars().count() <= n {
        one_line
    } else {
        one_line.chars().take(n).collect::<String>() + "…"
    }
}

fn render_comparison(c: &Value) -> String {
    let n = |k: &str| c[k].as_u64().unwrap_or(0);
    let mut s = format!(
        "\nparsers over {} completions: both {}, tolerant only {}, strict only {}, neither {}\n",
        n("total"),
        n("both"),
        n("tolerant_only"),
        n("strict_only"),
        n("neither")
    );
    if let Some(r) = c["repairs"].as_object().filter(|m| !m.is_empty()) {
        let parts: Vec<String> = r.iter().map(|(k, v)| format!("{k} {v}")).collect();
        s.push_str(&format!("tolerant repairs: {}\n", parts.join(", ")));
    }
    if let Some(f) = c["failures"].as_object().filter(|m| !m.is_empty()) {
        let parts: Vec<String> = f.iter().map(|(k, v)| format!("{k} {v}")).collect();
        s.push_str(&format!("tolerant failures: {}\n", parts.join(", ")));
    }
    for class in ["tolerant_only", "neither", "strict_only"] {
        if let Some(list) = c["examples"][class].as_array() {
            for e in list {
                let id = e.get("id").and_then(Value::as_str).unwrap_or("");
                s.push_str(&format!(
                    "  {class} line {} {id}: {}\n",
                    e["line"],
                    e["completion"].as_str().unwrap_or("")
                ));
            }
        }
    }
    s
}
