//! Learning-rate schedules, with the formulas of HF transformers' `get_scheduler` (so a TRL
//! user's `lr_scheduler_type` means the same thing here).
//!
//! Step `s` is the 0-based optimizer step; the LR used at step `s` is `peak × factor(s)`.
//! As in HF, a schedule with warm-up starts at factor 0 on step 0.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The LR schedule, by TRL / HF `lr_scheduler_type` name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LrSchedulerType {
    /// Peak LR at every step; no warm-up.
    Constant,
    /// Linear warm-up from 0, then the peak LR until the end.
    ConstantWithWarmup,
    /// Linear warm-up, then linear decay to 0 at the last step.
    Linear,
    /// Linear warm-up, then half a cosine down to 0 at the last step.
    Cosine,
    /// Linear warm-up, then half a cosine down to `min_lr_rate × peak`.
    CosineWithMinLr,
    /// Warm-up, a stable phase at the peak, then a cosine decay over the last `decay_ratio` of
    /// the steps down to `min_lr_rate × peak`.
    WarmupStableDecay,
}

/// A fully resolved schedule: everything needed to give the LR of any step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LrSchedule {
    pub kind: LrSchedulerType,
    pub peak_lr: f64,
    pub total_steps: usize,
    pub warmup_steps: usize,
    /// Floor as a fraction of the peak (cosine_with_min_lr, warmup_stable_decay).
    pub min_lr_rate: f64,
    /// Fraction of all steps spent decaying (warmup_stable_decay only).
    pub decay_ratio: f64,
}

/// HF's rule for turning `warmup_ratio` into steps: `ceil(total × ratio)`.
pub fn warmup_steps_from_ratio(ratio: f64, total_steps: usize) -> usize {
    (total_steps as f64 * ratio).ceil() as usize
}

impl LrSchedule {
    /// The multiplier of the peak LR at 0-based step `step`.
    pub fn factor(&self, step: usize) -> f64 {
        use std::f64::consts::PI;
        let s = step as f64;
        let w = self.warmup_steps as f64;
        let t = self.total_steps as f64;
        let warm = |s: f64| s / w.max(1.0);
        if self.kind != LrSchedulerType::Constant && s < w {
            return warm(s);
        }
        let progress = (s - w) / (t - w).max(1.0);
        match self.kind {
            LrSchedulerType::Constant | LrSchedulerType::ConstantWithWarmup => 1.0,
            LrSchedulerType::Linear => ((t - s) / (t - w).max(1.0)).max(0.0),
            LrSchedulerType::Cosine => (0.5 * (1.0 + (PI * progress).cos())).max(0.0),
            LrSchedulerType::CosineWithMinLr => {
                let f = 0.5 * (1.0 + (PI * progress).cos());
                f * (1.0 - self.min_lr_rate) + self.min_lr_rate
            }
            LrSchedulerType::WarmupStableDecay => {
                let decay = (t * self.decay_ratio).round();
                let stable = (t - w - decay).max(0.0);
                if s < w + stable {
                    1.0
                } else if s < w + stable + decay {
                    let p = (s - w - stable) / decay.max(1.0);
                    let f = 0.5 * (1.0 + (PI * p).cos());
                    f.max(0.0) * (1.0 - self.min_lr_rate) + self.min_lr_rate
                } else {
                    self.min_lr_rate
                }
            }
        }
    }

    /// The LR at 0-based step `step`.
    pub fn lr_at(&self, step: usize) -> f64 {
        self.peak_lr * self.factor(step)
    }

    /// The first step after warm-up at which the LR is below `frac × peak`, if any.
    pub fn first_step_below(&self, frac: f64) -> Option<usize> {
        (self.warmup_steps.min(self.total_steps)..self.total_steps).find(|&s| self.factor(s) < frac)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sched(kind: LrSchedulerType, total: usize, warmup: usize) -> LrSchedule {
        LrSchedule {
            kind,
            peak_lr: 1.0,
            total_steps: total,
            warmup_steps: warmup,
            min_lr_rate: 0.1,
            decay_ratio: 0.2,
        }
    }

    #[test]
    fn hf_formulas_by_hand() {
        // Values worked out from transformers' optimization.py lambdas.
        let c = sched(LrSchedulerType::Cosine, 200, 20);
        assert_eq!(c.factor(0), 0.0);
        assert!((c.factor(10) - 0.5).abs() < 1e-12);
        assert!((c.factor(20) - 1.0).abs() < 1e-12);
        assert!((c.factor(110) - 0.5).abs() < 1e-12); // halfway through the decay
        assert!(c.factor(200).abs() < 1e-12);
        let l = sched(LrSchedulerType::Linear, 100, 10);
        assert!((l.factor(55) - 0.5).abs() < 1e-12);
        let cw = sched(LrSchedulerType::ConstantWithWarmup, 600, 30);
        assert!((cw.factor(15) - 0.5).abs() < 1e-12);
        assert_eq!(cw.factor(599), 1.0);
        assert_eq!(sched(LrSchedulerType::Constant, 10, 5).factor(0), 1.0);
        let m = sched(LrSchedulerType::CosineWithMinLr, 100, 0);
        assert!((m.factor(100) - 0.1).abs() < 1e-12);
        let wsd = sched(LrSchedulerType::WarmupStableDecay, 100, 10);
        assert_eq!(wsd.factor(50), 1.0);
        assert!((wsd.factor(90) - (0.5 * 0.9 + 0.1)).abs() < 1e-12);
        assert!((wsd.factor(100) - 0.1).abs() < 1e-12);
        assert_eq!(warmup_steps_from_ratio(0.05, 600), 30);
        assert_eq!(warmup_steps_from_ratio(0.1, 201), 21);
    }

    #[test]
    fn first_step_below_one_percent() {
        let c = sched(LrSchedulerType::Cosine, 200, 20);
        let s = c.first_step_below(0.01).expect("cosine reaches 0");
        assert!(c.factor(s) < 0.01 && c.factor(s - 1) >= 0.01);
        assert!(sched(LrSchedulerType::ConstantWithWarmup, 600, 30)
            .first_step_below(0.01)
            .is_none());
    }
}
