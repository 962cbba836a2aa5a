//! Reading run results back and presenting them: [`runs`] (final metrics and per-sample eval
//! values of a run or an eval output), [`samples`] (the per-sample / per-prompt values).

pub mod checkpoint_eval;
pub mod compare;
pub mod run_report;
pub mod runs;
pub mod samples;
pub mod stats;
pub mod svg;
