//! The rank stage's pure logic: turning a batch of rewards (including judge ranks) into
//! group-relative advantages.

pub mod advantage;

pub use advantage::{group_advantages, judge_scores, AdvantageOptions, GroupAdvantages};
