//! `runner diff`: compare two specs (or run directories) after resolution.

use std::path::PathBuf;

use crate::diff::{
    diff_values, format_json, format_markdown, format_text, load_side, without_meta,
};
use crate::spec::resolve::ResolveOptions;

/// Output formats of `runner diff`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `path: old → new`, one line per changed leaf.
    Text,
    /// `{a, b, same, changes: [{path, kind, old, new}]}`.
    Json,
    /// A Markdown table (for reports and pull requests).
    Markdown,
}

/// Arguments of `runner diff`.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Both sides are resolved first (defaults, extends, environment, --set), so only real
differences show. `name`, `description` and `extends` are left out unless --all.
Exit status: 0 same, 1 different, 2 error.

Examples:
  runner diff experiments/v4.yaml experiments/v4_1.yaml
  runner diff experiments/v4_1.yaml runs/v4_1/20260427-101500 --format markdown
  runner diff experiments/polychromic.yaml experiments/polychromic.yaml --set train.objective.diversity.lambda=1.0"
)]
pub struct Args {
    /// The first spec file or run directory.
    pub a: PathBuf,
    /// The second spec file or run directory.
    pub b: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Override a field of both sides after resolution: `--set path=value`; repeatable.
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub sets: Vec<String>,
    /// Ignore `RUNNER_*` environment variables.
    #[arg(long)]
    pub no_env: bool,
    /// Include `name`, `description` and `extends`.
    #[arg(long)]
    pub all: bool,
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    let opts = ResolveOptions {
        sets: args.sets.clone(),
        use_env: !args.no_env,
    };
    let load = |p: &PathBuf| match load_side(p, &opts) {
        Ok(v) => Some(v),
        Err(e) => {
            eprintln!("error: {}: {e}", p.display());
            None
        }
    };
    let (a, b) = (load(&args.a), load(&args.b));
    let (Some(a), Some(b)) = (a, b) else {
        return Ok(2);
    };
    let mut changes = diff_values(&a, &b);
    if !args.all {
        changes = without_meta(changes);
    }
    let (na, nb) = (args.a.display().to_string(), args.b.display().to_string());
    let out = match args.format {
        Format::Text => format_text(&changes),
        Format::Json => format!(
            "{}\n",
            serde_json::to_string_pretty(&format_json(&na, &nb, &changes))?
        ),
        Format::Markdown => format_markdown(&na, &nb, &changes),
    };
    super::validate::write_stdout(&out)?;
    Ok(if changes.is_empty() { 0 } else { 1 })
}
