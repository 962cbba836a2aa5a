//! The command-line edge: one module per subcommand, each with an `Args` (clap) and a
//! `run(Args) -> anyhow::Result<i32>` returning the process exit code.

pub mod apply;
pub mod bench;
pub mod compare;
pub mod diff;
pub mod eval;
pub mod export;
pub mod generate;
pub mod metrics;
pub mod models;
pub mod plan;
pub mod report;
pub mod runtime;
pub mod schema;
pub mod score;
pub mod sweep;
pub mod validate;
