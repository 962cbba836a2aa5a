//! `runner sweep`: expand a spec's sweep into named points; with `--apply`, run them one after
//! another through the same code path as `runner apply`.

use crate::run::apply::{prepare_spec, start};
use crate::run::ApplyRequest;
use crate::spec::resolve::{resolve, ResolveOptions};
use crate::stages::Registry;
use std::path::PathBuf;

/// Arguments of `runner sweep`.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  runner sweep experiments/polychromic.yaml
  runner sweep experiments/polychromic.yaml --json
  runner sweep experiments/polychromic.yaml --apply --runs-dir runs

Each point is the spec plus a few --set overrides, printed beside its name, so one point can be
run alone: runner apply experiments/polychromic.yaml --set train.objective.diversity.lambda=1.0")]
pub struct Args {
    /// The spec file with a `sweep` section.
    pub file: PathBuf,
    /// Override a field of the base spec: `--set path=value`; repeatable.
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub sets: Vec<String>,
    /// Run the points one after another (each in its own run directory `runs/<point name>/`).
    #[arg(long)]
    pub apply: bool,
    /// Print the points (and with --apply, the outcome of each) as JSON.
    #[arg(long)]
    pub json: bool,
    /// Where run directories are created (with --apply).
    #[arg(long, value_name = "DIR", default_value = "runs")]
    pub runs_dir: PathBuf,
    /// Ignore `RUNNER_*` environment variables.
    #[arg(long)]
    pub no_env: bool,
    /// No progress bars.
    #[arg(long, short)]
    pub quiet: bool,
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    let use_env = !args.no_env;
    if let Some(code) = super::plan::report_diagnostics(&args.file, &args.sets, use_env) {
        return Ok(code);
    }
    let opts = ResolveOptions {
        sets: args.sets.clone(),
        use_env,
    };
    let points = match resolve(&args.file, &opts).and_then(|r| crate::sweep::expand(&r.spec)) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(1);
        }
    };
    if points.is_empty() {
        eprintln!(
            "{}: the spec has no sweep (sweep.grid, sweep.zip and sweep.seeds are empty)",
            args.file.display()
        );
        return Ok(if args.apply { 1 } else { 0 });
    }
    if !args.apply {
        if args.json {
            println!("{}", serde_json::to_string_pretty(&points)?);
        } else {
            println!("{} points:", points.len());
            for p in &points {
                println!("  {}\n      --set {}", p.name, p.sets.join(" --set "));
            }
        }
        return Ok(0);
    }

    let registry = Registry::builtin();
    let mut results = Vec::new();
    let mut failed = 0;
    for (i, p) in points.iter().enumerate() {
        let mut sets = args.sets.clone();
        sets.extend(p.sets.iter().cloned());
        let req = ApplyRequest {
            input: Some(args.file.clone()),
            sets: sets.clone(),
            use_env,
            runs_dir: args.runs_dir.clone(),
            resume: None,
            run_name: Some(p.name.clone()),
            progress: !args.quiet && !args.json,
        };
        let outcome =
            prepare_spec(&args.file, &sets, use_env).and_then(|prep| start(&req, prep, &registry));
        let (status, detail) = match &outcome {
            Ok(r) => ("completed", r.run_dir.display().to_string()),
            Err(e) => {
                failed += 1;
                ("failed", e.to_string())
            }
        };
        if !args.json {
            println!(
                "[{}/{}] {}: {status}: {detail}",
                i + 1,
                points.len(),
                p.name
            );
        }
        results.push(serde_json::json!({
            "name": p.name,
            "sets": p.sets,
            "status": status,
            "detail": detail,
        }));
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    } else {
        println!(
            "{} of {} points completed",
            points.len() - failed,
            points.len()
        );
    }
    Ok(if failed > 0 { 1 } else { 0 })
}
