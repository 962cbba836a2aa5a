//! Training: learning-rate schedules (and, with issue 5, the GRPO-family losses and the trainer).

pub mod schedule;
