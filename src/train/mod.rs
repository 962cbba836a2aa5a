//! Training: learning-rate schedules (and, with issue 5, the GRPO-family losses and the trainer).

pub mod schedule;
pub mod diversity;
pub mod loss;
pub mod optim;
pub mod state;
pub mod checkpoint;
pub mod monitor;
pub mod metrics;
