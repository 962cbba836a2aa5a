//! `runner compare`: one table of metrics over runs and eval outputs (baseline first), with
//! bootstrap confidence intervals, changes in % and paired permutation-test p-values.

use std::path::PathBuf;

use crate::report::compare::{compare, render_markdown, CompareOptions};

/// Arguments of `runner compare`.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  runner compare runs/baseline/20261122T0100Z-aaaa runs/polychromic/20261122T0300Z-bbbb
  runner compare evals/quickstart-20261122T050000Z            # every checkpoint of a `runner eval`
  runner compare runs/poly@lambda=0,seed=* runs/poly@lambda=1.0,seed=* --json

The first input is the baseline. Run directories whose resolved specs differ only by `seed` are
aggregated into one column. Per-sample metrics (from the last eval's completions) get a 95 %
percentile bootstrap CI and a paired sign-flip permutation p-value against the baseline.")]
pub struct Args {
    /// Run directories, `runner eval` output directories (one checkpoint) or `runner eval` top
    /// directories; the first is the baseline.
    #[arg(required = true, value_name = "RUN_OR_EVAL")]
    pub inputs: Vec<PathBuf>,
    /// Bootstrap resamples (also the Monte Carlo permutations when the exact test is too big).
    #[arg(long, default_value_t = 10_000)]
    pub resamples: usize,
    /// Seed of the resampling (same seed, same intervals and p-values).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Confidence level of the intervals.
    #[arg(long, default_value_t = 0.95)]
    pub level: f64,
    /// Exact permutation test up to this many non-zero paired differences (2^N sign flips).
    #[arg(long, default_value_t = 16)]
    pub exact_max: usize,
    /// Only these metrics (repeatable; a trailing `*` matches a prefix, e.g. `reward/*`).
    #[arg(long = "metric", value_name = "NAME")]
    pub metrics: Vec<String>,
    /// Do not aggregate runs that differ only by seed.
    #[arg(long)]
    pub no_aggregate: bool,
    /// Print JSON instead of the markdown table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    anyhow::ensure!(args.resamples > 0, "--resamples must be at least 1");
    anyhow::ensure!(
        args.level > 0.0 && args.level < 1.0,
        "--level must be in (0, 1)"
    );
    anyhow::ensure!(args.exact_max <= 30, "--exact-max must be at most 30");
    let opts = CompareOptions {
        resamples: args.resamples,
        seed: args.seed,
        level: args.level,
        exact_max: args.exact_max,
        metrics: args.metrics,
        aggregate_seeds: !args.no_aggregate,
    };
    let c = compare(&args.inputs, &opts)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&c)?);
    } else {
        print!("{}", render_markdown(&c));
    }
    Ok(0)
}
