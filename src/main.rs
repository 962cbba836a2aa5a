use clap::{Parser, Subcommand};
use runner::cli;

/// Declarative experiment runner for RL fine-tuning (GRPO family) of small language models.
///
/// Specs in `experiments/*.yaml` are validated, resolved (defaults, extends, env, --set),
/// compiled into a plan of stages generate → score → rank → train → eval, and applied.
#[derive(Parser)]
#[command(name = "runner", version, about, long_about = None, arg_required_else_help = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check specs against the JSON Schema and the semantic rules; report every problem.
    Validate(cli::validate::Args),
    /// Compile a spec into a plan of stages and show it.
    Plan(cli::plan::Args),
    /// Run a spec or a saved plan into a run directory.
    Apply(cli::apply::Args),
    /// Compare two specs (or run directories) after resolution.
    Diff(cli::diff::Args),
    /// Expand a spec's sweep into named points, and optionally run them.
    Sweep(cli::sweep::Args),
    /// Write the JSON Schemas generated from the spec types.
    Schema(cli::schema::Args),
    /// Score existing completions offline with a spec's rewards; print a per-task table.
    Score(cli::score::Args),
    /// Sample completions from a model (and optionally a trained adapter).
    Generate(cli::generate::Args),
    /// Measure decode and training throughput.
    Bench(cli::bench::Args),
    /// Compute distinct-n, Self-BLEU, semantic diversity or pass@k over a file of samples.
    Metrics(cli::metrics::Args),
    /// Fetch and list cached models.
    Models(cli::models::Args),
    /// Export a model with a trained adapter merged into its weights.
    Export(cli::export::Args),
    /// Evaluate checkpoints on a spec's fixed eval prompt set (rewards, diversity, pass@k).
    Eval(cli::eval::Args),
    /// Compare runs or eval outputs: one table with CIs, changes in % and p-values.
    Compare(cli::compare::Args),
    /// Write report.md, report.csv and report.html (SVG plots) of a run.
    Report(cli::report::Args),
}

fn main() {
    // Before any tensor is allocated: keep glibc from mmapping/unmapping every large tensor.
    runner::engine::device::tune_allocator();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Validate(a) => cli::validate::run(a),
        Command::Plan(a) => cli::plan::run(a),
        Command::Apply(a) => cli::apply::run(a),
        Command::Diff(a) => cli::diff::run(a),
        Command::Sweep(a) => cli::sweep::run(a),
        Command::Schema(a) => cli::schema::run(a),
        Command::Score(a) => cli::score::run(a),
        Command::Generate(a) => cli::generate::run(a),
        Command::Bench(a) => cli::bench::run(a),
        Command::Metrics(a) => cli::metrics::run(a),
        Command::Models(a) => cli::models::run(a),
        Command::Export(a) => cli::export::run(a),
        Command::Eval(a) => cli::eval::run(a),
        Command::Compare(a) => cli::compare::run(a),
        Command::Report(a) => cli::report::run(a),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
    }
}
