//! `runner metrics`: compute a diversity or correctness metric over a file of samples from any
//! model (see `crate::metrics` for the exact definitions).
//!
//! Input rows (JSON Lines, blank lines skipped): `text` (or the field named by
//! `--text-field`, a string), optional `prompt` (string), `group` (string or number),
//! `correct` (true/false or 1/0, for pass@k), `quality` (number, for `--min-quality`) and
//! `embedding` (array of numbers, used by `semantic` instead of the embedder when every row has
//! one). Every malformed line is reported with its line number before anything is computed.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde_json::Value;

use crate::metrics::{compute, GroupBy, MetricOptions, MetricReport, Sample};
use crate::rewards::semantic::Embedder;

/// The field `--group-by` groups on.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupField {
    /// Samples with the same `prompt` form a group.
    Prompt,
    /// Samples with the same `group` form a group.
    Group,
}

/// Arguments of `runner metrics`.
#[derive(clap::Args, Debug)]
#[command(after_help = "Metrics:
  distinct-N       distinct N-grams / N-grams, pooled over all texts and per sentence (str.split() tokens)
  self-bleu        mean NLTK sentence_bleu of each text vs all others (weights 1/n up to --n, method1), 0..1
  self-bleu-sacre  mean sacrebleu sentence_bleu of each text vs all others (13a, exp, effective order), 0..100
  semantic         mean pairwise 1 - cosine of sentence embeddings (--embedder), 0..2
  pass@k           unbiased pass@k per problem (--group-by prompt), averaged; rows need `correct`

Examples:
  runner metrics --input samples.jsonl --metric distinct-2
  runner metrics --input samples.jsonl --metric self-bleu --group-by prompt --json
  runner metrics --input samples.jsonl --metric pass@k --k 1,10 --group-by prompt
  runner metrics --input samples.jsonl --metric semantic --min-quality 0.5")]
pub struct Args {
    /// Samples (JSON Lines): `text`, optional `prompt`, `group`, `correct`, `quality`,
    /// `embedding`.
    #[arg(long, value_name = "JSONL")]
    pub input: PathBuf,
    /// distinct-N (e.g. distinct-2), self-bleu, self-bleu-sacre, semantic or pass@k.
    #[arg(long, value_name = "NAME")]
    pub metric: String,
    /// Maximum n-gram order of self-bleu (uniform weights 1/n).
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub n: usize,
    /// The k values of pass@k, comma-separated.
    #[arg(long, value_name = "K,...", value_delimiter = ',', default_value = "1")]
    pub k: Vec<usize>,
    /// Compute per prompt (or per `group`) and average over groups.
    #[arg(long, value_enum, value_name = "FIELD")]
    pub group_by: Option<GroupField>,
    /// Effective diversity: keep only rows with `quality` ≥ this.
    #[arg(long, value_name = "Q")]
    pub min_quality: Option<f64>,
    /// Sentence embedder for `semantic` (a known asset or an HF BERT directory).
    #[arg(long, value_name = "ID_OR_DIR", default_value = "all-minilm-l6-v2")]
    pub embedder: String,
    /// The input field holding the text.
    #[arg(long, value_name = "NAME", default_value = "text")]
    pub text_field: String,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Run `runner metrics`.
pub fn run(args: Args) -> anyhow::Result<i32> {
    let samples = read_samples(&args.input, &args.text_field)?;
    if args.n == 0 {
        bail!("--n must be at least 1");
    }
    let needs_embedder = args.metric == "semantic" && samples.iter().any(|s| s.embedding.is_none());
    let embedder = if needs_embedder {
        Some(
            Embedder::load(&args.embedder)
                .with_context(|| format!("loading the embedder `{}`", args.embedder))?,
        )
    } else {
        None
    };
    let opts = MetricOptions {
        n: args.n,
        ks: args.k.clone(),
        group_by: args.group_by.map(|g| match g {
            GroupField::Prompt => GroupBy::Prompt,
            GroupField::Group => GroupBy::Group,
        }),
        embedder: embedder.as_ref(),
        min_quality: args.min_quality,
    };
    let report = compute(&args.metric, &samples, &opts)
        .with_context(|| format!("{}: {}", args.input.display(), args.metric))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    Ok(0)
}

/// Reads every row; all malformed lines are reported (with line numbers) in one error.
pub fn read_samples(path: &Path, text_field: &str) -> anyhow::Result<Vec<Sample>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut problems = Vec::new();
    let mut samples = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match parse_row(line, text_field) {
            Ok(s) => samples.push(s),
            Err(e) => problems.push(format!("{}:{}: {e}", path.display(), i + 1)),
        }
    }
    if !problems.is_empty() {
        let shown = problems.len().min(20);
        let more = if problems.len() > shown {
            format!("\n  ... and {} more", problems.len() - shown)
        } else {
            String::new()
        };
        bail!(
            "{} malformed line(s) in {}:\n  {}{more}",
            problems.len(),
            path.display(),
            problems[..shown].join("\n  ")
        );
    }
    if samples.is_empty() {
        bail!("{}: no samples (the file has no rows)", path.display());
    }
    Ok(samples)
}

fn parse_row(line: &str, text_field: &str) -> Result<Sample, String> {
    let row = match serde_json::from_str::<Value>(line) {
        Ok(Value::Object(m)) => m,
        Ok(_) => return Err("not a JSON object".into()),
        Err(e) => return Err(format!("invalid JSON: {e}")),
    };
    let text = match row.get(text_field) {
        Some(Value::String(s)) => s.clone(),
        Some(v) => {
            return Err(format!(
                "`{text_field}` must be a string, found {}",
                kind(v)
            ))
        }
        None => return Err(format!("no `{text_field}` field (use --text-field NAME)")),
    };
    let prompt = match row.get("prompt") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(v) => return Err(format!("`prompt` must be a string, found {}", kind(v))),
    };
    let group = match row.get("group") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(v) => {
            return Err(format!(
                "`group` must be a string or number, found {}",
                kind(v)
            ))
        }
    };
    let correct = match row.get("correct") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(Value::Number(n)) if n.as_f64() == Some(1.0) => Some(true),
        Some(Value::Number(n)) if n.as_f64() == Some(0.0) => Some(false),
        Some(v) => return Err(format!("`correct` must be true/false or 1/0, found {v}")),
    };
    let quality = match row.get("quality") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => n.as_f64(),
        Some(v) => return Err(format!("`quality` must be a number, found {}", kind(v))),
    };
    let embedding = match row.get("embedding") {
        None | Some(Value::Null) => None,
        Some(Value::Array(a)) => Some(
            a.iter()
                .map(|x| x.as_f64().map(|f| f as f32))
                .collect::<Option<Vec<f32>>>()
                .ok_or("`embedding` must be an array of numbers")?,
        ),
        Some(v) => return Err(format!("`embedding` must be an array, found {}", kind(v))),
    };
    Ok(Sample {
        text,
        prompt,
        group,
        correct,
        quality,
        embedding,
    })
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The text report: header, per-group table when grouped, values, notes.
pub fn render(r: &MetricReport) -> String {
    let mut out = format!(
        "{} over {} samples\n  ({})\n",
        r.metric, r.samples, r.definition
    );
    let names: Vec<&String> = r.values.keys().collect();
    if !r.groups.is_empty() {
        let key_w = r
            .groups
            .iter()
            .map(|g| g.key.chars().take(40).count())
            .max()
            .unwrap_or(5)
            .max(5);
        out.push_str(&format!("\n{:<key_w$}  {:>7}", "group", "samples"));
        for n in &names {
            out.push_str(&format!("  {n:>12}"));
        }
        out.push('\n');
        for g in &r.groups {
            let key: String = g
                .key
                .chars()
                .take(40)
                .collect::<String>()
                .replace('\n', " ");
            out.push_str(&format!("{key:<key_w$}  {:>7}", g.samples));
            for n in &names {
                match g.values.get(*n) {
                    Some(v) => out.push_str(&format!("  {v:>12.6}")),
                    None => out.push_str(&format!("  {:>12}", "-")),
                }
            }
            out.push('\n');
        }
        out.push_str(&format!("\nmean over {} groups:\n", r.groups.len()));
    } else {
        out.push('\n');
    }
    for (n, v) in &r.values {
        out.push_str(&format!("{n:<28} {v:.6}\n"));
    }
    for note in &r.notes {
        out.push_str(&format!("note: {note}\n"));
    }
    out
}
