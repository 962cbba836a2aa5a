//! `runner validate`: check specs against the JSON Schema and the semantic rules, and report
//! every problem at once as `FILE:LINE:COL: field.path: message`.

use std::path::PathBuf;

use crate::spec::resolve::ResolveOptions;
use crate::spec::validate::{validate_file, Diagnostic};

/// Output formats of `runner validate`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// One `FILE:LINE:COL: field.path: message` line per problem, then a summary.
    Text,
    /// A JSON document with every diagnostic.
    Json,
}

/// Arguments of `runner validate`.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Exit status: 0 valid (warnings allowed), 1 invalid, 2 usage or I/O error.

Examples:
  runner validate experiments/*.yaml
  runner validate experiments/v4_1.yaml --set train.max_steps=50
  runner validate experiments/quickstart.yaml --no-env --format json"
)]
pub struct Args {
    /// Spec files to validate (each with the files it `extends`).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Override a field after resolution: `--set path=value` (value parsed as YAML); repeatable.
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub sets: Vec<String>,
    /// Ignore `RUNNER_*` environment variables.
    #[arg(long)]
    pub no_env: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    let opts = ResolveOptions {
        sets: args.sets.clone(),
        use_env: !args.no_env,
    };
    let mut io_error = false;
    let mut reports: Vec<(String, Vec<Diagnostic>)> = Vec::new();
    for file in &args.files {
        if !file.is_file() {
            eprintln!("error: {}: no such file", file.display());
            io_error = true;
            continue;
        }
        reports.push((file.display().to_string(), validate_file(file, &opts)));
    }
    let mut all: Vec<&Diagnostic> = reports.iter().flat_map(|(_, d)| d).collect();
    all.sort_by_key(|d| d.sort_key());
    // A parent's problem is found once per spec that extends it; print it once.
    all.dedup();
    let errors = all.iter().filter(|d| d.is_error()).count();
    let warnings = all.len() - errors;
    let invalid = reports
        .iter()
        .filter(|(_, d)| d.iter().any(Diagnostic::is_error))
        .count();
    let mut out = String::new();
    match args.format {
        Format::Text => {
            for d in &all {
                out.push_str(&format!("{d}\n"));
            }
            out.push_str(&format!(
                "{} file{} checked: {} valid, {invalid} invalid; {errors} error{}, {warnings} warning{}\n",
                reports.len(),
                plural(reports.len()),
                reports.len() - invalid,
                plural(errors),
                plural(warnings)
            ));
        }
        Format::Json => {
            let files: Vec<serde_json::Value> = reports
                .iter()
                .map(|(f, d)| {
                    serde_json::json!({
                        "file": f,
                        "valid": !d.iter().any(Diagnostic::is_error),
                        "diagnostics": d,
                    })
                })
                .collect();
            let doc = serde_json::json!({
                "files": files,
                "errors": errors,
                "warnings": warnings,
                "valid": invalid == 0 && !io_error,
            });
            out.push_str(&serde_json::to_string_pretty(&doc)?);
            out.push('\n');
        }
    }
    write_stdout(&out)?;
    Ok(if io_error {
        2
    } else if errors > 0 {
        1
    } else {
        0
    })
}

/// Writes to stdout; a closed pipe (`runner validate ... | head`) is not an error.
pub(crate) fn write_stdout(text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}
