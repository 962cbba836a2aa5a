//! `runner apply`: run a spec or a saved plan into a run directory (or continue one).

use crate::run::{apply, ApplyRequest};
use crate::stages::Registry;
use std::path::PathBuf;

/// Arguments of `runner apply`.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  runner apply experiments/quickstart.yaml
  runner apply experiments/v4_1.yaml --set train.max_steps=50 --runs-dir /tmp/runs
  runner plan experiments/v4_1.yaml --out v4_1.plan.json && runner apply v4_1.plan.json
  runner apply --resume runs/v4_1/20261122T001500Z-1a2b3c4d

A saved plan is refused when its spec changed since it was made (re-plan). A stage kind this
build does not implement yet stops apply before anything starts.")]
pub struct Args {
    /// A spec file (.yaml) or a plan saved by `runner plan --out` (.json). Optional with
    /// --resume (the run directory's own spec is used; a file given must resolve to it).
    pub file: Option<PathBuf>,
    /// Override a field after resolution: `--set path=value`; repeatable (spec files only).
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub sets: Vec<String>,
    /// Continue this run directory from its state.json (completed stage instances are skipped).
    #[arg(long, value_name = "RUN_DIR")]
    pub resume: Option<PathBuf>,
    /// Where run directories are created.
    #[arg(long, value_name = "DIR", default_value = "runs")]
    pub runs_dir: PathBuf,
    /// Ignore `RUNNER_*` environment variables.
    #[arg(long)]
    pub no_env: bool,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    if args.file.is_none() && args.resume.is_none() {
        eprintln!("error: give a spec file or a plan to apply, or --resume RUN_DIR");
        return Ok(2);
    }
    if let Some(file) = &args.file {
        if !crate::run::apply::is_plan_path(file) {
            if let Some(code) = super::plan::report_diagnostics(file, &args.sets, !args.no_env) {
                return Ok(code);
            }
        }
    }
    let req = ApplyRequest {
        input: args.file,
        sets: args.sets,
        use_env: !args.no_env,
        runs_dir: args.runs_dir,
        resume: args.resume,
        run_name: None,
        progress: !args.quiet,
    };
    match apply(&req, &Registry::builtin()) {
        Ok(report) => {
            for w in &report.warnings {
                eprintln!("{w}");
            }
            let s = report.summary;
            println!(
                "{} {}: {} stage instances run, {} already done, {} in the plan",
                if report.resumed {
                    "resumed"
                } else {
                    "completed"
                },
                report.run_dir.display(),
                s.executed,
                s.skipped,
                s.total
            );
            Ok(0)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(1)
        }
    }
}
