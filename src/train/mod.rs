//! Training: learning-rate schedules (and, with issue 5, the GRPO-family losses and the trainer).

pub mod checkpoint;
pub mod diversity;
pub mod loss;
pub mod metrics;
pub mod monitor;
pub mod optim;
pub mod schedule;
pub mod state;
