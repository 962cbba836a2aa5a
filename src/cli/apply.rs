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

Daily loop (schedule.mode: partitions):
  runner apply experiments/newrun_daily.yaml --from 20250802 --to 20250804   # backfill
  runner apply experiments/newrun_daily.yaml --partition next                # daily update
  runner apply experiments/newrun_daily.yaml --partition 20250805            # one date
  runner apply experiments/newrun_daily.yaml --partition 20250806 --outcomes-from 20250805
A new daily-loop run continues the newest run of its run name (runs/<name>_<run_suffix>/)
whose last completed partition is before its first date: its final_model and its pending
predictions (schedule.partitions.resume_from_last_model, default true).

Stages whose inputs are unchanged since an earlier run of the same name are copied from it
(`runner plan` shows which, and why the others run); an unchanged spec prints `up to date`.

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
    /// Daily loop: run one partition date (YYYYMMDD), or `next` for the first date after the
    /// last one the latest run of this run name completed (resuming from its model).
    #[arg(long, value_name = "DATE|next")]
    pub partition: Option<String>,
    /// Daily loop: backfill from this date (replaces schedule.partitions.from).
    #[arg(long, value_name = "YYYYMMDD")]
    pub from: Option<String>,
    /// Daily loop: backfill to this date (replaces schedule.partitions.to).
    #[arg(long, value_name = "YYYYMMDD")]
    pub to: Option<String>,
    /// Daily loop override, with --partition D: score D's predictions with this date's outcomes.
    #[arg(long, value_name = "YYYYMMDD")]
    pub outcomes_from: Option<String>,
    /// Re-run this stage kind (and what reads its outputs) instead of reusing an earlier run's
    /// outputs from the cache; repeatable (`--force generate --force eval`). With --resume: the
    /// instances of STAGE not yet completed run instead of being copied; completed ones are
    /// kept (a warning names them), and a STAGE with nothing left to run is refused.
    #[arg(long, value_name = "STAGE", value_parser = super::plan::parse_stage)]
    pub force: Vec<crate::stages::StageKind>,
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    if args.file.is_none() && args.resume.is_none() {
        eprintln!("error: give a spec file or a plan to apply, or --resume RUN_DIR");
        return Ok(2);
    }
    let partition = crate::run::apply::PartitionOptions {
        partition: args.partition,
        from: args.from,
        to: args.to,
        outcomes_from: args.outcomes_from,
    };
    // The spec's diagnostics are printed here, before anything runs; the report's warnings are
    // the same ones again, printed only when this check did not run (a saved plan, --resume
    // alone).
    let mut diagnosed = false;
    if let Some(file) = &args.file {
        if !crate::run::apply::is_plan_path(file) {
            let mut sets = args.sets.clone();
            sets.extend(crate::run::apply::selected_range_sets(
                file,
                &args.sets,
                !args.no_env,
                &partition,
                &args.runs_dir,
            ));
            if let Some(code) = super::plan::report_diagnostics(file, &sets, !args.no_env) {
                return Ok(code);
            }
            diagnosed = true;
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
        partition,
        force: args.force,
    };
    match apply(&req, &Registry::builtin()) {
        Ok(report) => {
            if !diagnosed {
                for w in &report.warnings {
                    eprintln!("{w}");
                }
            }
            let s = report.summary;
            if s.up_to_date {
                println!("up to date: {}", report.run_dir.display());
                return Ok(0);
            }
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
            if !report.skipped_partitions.is_empty() {
                println!(
                    "skipped partitions (no prompt file): {}",
                    report.skipped_partitions.join(", ")
                );
            }
            if !report.pending.is_empty() {
                println!(
                    "pending for a later run: predictions of {}",
                    report.pending.join(", ")
                );
            }
            let summary = report.run_dir.join(crate::run::summary::SUMMARY_CSV);
            if summary.is_file() {
                println!("per-partition summary: {}", summary.display());
            }
            Ok(0)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(1)
        }
    }
}
