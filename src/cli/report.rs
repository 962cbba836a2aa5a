//! `runner report`: `report.md`, `report.csv` and a self-contained `report.html` of a run.

use std::path::PathBuf;

use crate::report::run_report::write_report;

/// Arguments of `runner report`.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  runner report runs/quickstart/20261122T043544Z-3d84563f
  runner report runs/newrun_daily/20261122T060000Z-1a2b3c4d --out /tmp/report

report.html has inline SVG plots (reward, reward per function and per task, KL, LR, grad norm,
completion length, the eval curve with the best step marked) and no external resources.
report.csv is the per-partition summary with a first→last drift row (partitioned runs), else
the final metrics.")]
pub struct Args {
    /// The run directory.
    pub run_dir: PathBuf,
    /// Write the report files here instead of into the run directory.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    let files = write_report(&args.run_dir, args.out.as_deref())?;
    for p in [&files.markdown, &files.csv, &files.html] {
        println!("wrote {}", p.display());
    }
    Ok(0)
}
