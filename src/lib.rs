//! runner: a declarative experiment runner for RL fine-tuning of small language models.
//!
//! Data flows one way, and the modules follow it:
//! `spec` (what) → `plan` (how) → `stages` (do) → `run` (results). The `engine` is the
//! candle model implementation the stages use; `cli` is the thin command-line edge.

pub mod cli;
pub mod data;
pub mod diff;
pub mod engine;
pub mod error;
pub mod metrics;
pub mod plan;
pub mod rank;
pub mod report;
pub mod rewards;
pub mod run;
pub mod spec;
pub mod stages;
pub mod sweep;
pub mod train;

pub use error::{Error, Result};

/// The runner version, part of every cache key and run record.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
