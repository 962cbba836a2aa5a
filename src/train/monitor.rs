//! Monitors (`spec.monitors`): conditions on logged metrics that warn or stop the run, checked
//! after every optimizer step on that step's metrics. A monitor triggers after `patience`
//! consecutive steps on which its condition holds (steps where its metric is not logged leave
//! the count as it is); its count then starts again. Counters live in the trainer state, so a
//! resumed run counts on.

use std::collections::BTreeMap;

use crate::spec::{CompareOp, Monitor, MonitorAction};

/// A monitor that fired.
#[derive(Debug, Clone, PartialEq)]
pub struct Triggered {
    /// The monitor's key ([`key`]).
    pub key: String,
    /// Warn or stop.
    pub action: MonitorAction,
    /// The metric's value at the step.
    pub value: f64,
    /// What happened, in words, naming the monitor.
    pub message: String,
}

/// A stable key for the `i`-th monitor: `<i>:<metric> <op> <value>`.
pub fn key(i: usize, m: &Monitor) -> String {
    format!("{i}:{} {} {}", m.metric, op_symbol(m.op), m.value)
}

fn op_symbol(op: CompareOp) -> &'static str {
    match op {
        CompareOp::Gt => ">",
        CompareOp::Ge => ">=",
        CompareOp::Lt => "<",
        CompareOp::Le => "<=",
    }
}

/// The value of `name` among a step's metrics: as logged (`grad_norm`), or with the `train/`
/// prefix TRL's loggers add (`train/grad_norm`).
pub fn lookup(metrics: &BTreeMap<String, f64>, name: &str) -> Option<f64> {
    metrics
        .get(name)
        .or_else(|| name.strip_prefix("train/").and_then(|n| metrics.get(n)))
        .copied()
}

/// Check every monitor against the metrics of step `step` (optimizer steps completed, as in
/// `metrics.csv`), updating `counts`; returns the monitors that fired, in spec order.
pub fn check(
    monitors: &[Monitor],
    step: usize,
    metrics: &BTreeMap<String, f64>,
    counts: &mut BTreeMap<String, usize>,
) -> Vec<Triggered> {
    let mut out = Vec::new();
    for (i, m) in monitors.iter().enumerate() {
        if m.after_step.is_some_and(|a| step < a) {
            continue;
        }
        let Some(v) = lookup(metrics, &m.metric) else {
            continue;
        };
        let k = key(i, m);
        let c = counts.entry(k.clone()).or_insert(0);
        if m.op.holds(v, m.value) {
            *c += 1;
        } else {
            *c = 0;
        }
        if *c >= m.patience.max(1) {
            *c = 0;
            let action = m.action;
            let verb = match action {
                MonitorAction::Warn => "warning",
                MonitorAction::Stop => "stopping the run",
            };
            out.push(Triggered {
                key: k,
                action,
                value: v,
                message: format!(
                    "monitor #{i} `{} {} {}` fired at step {step} ({} = {v}{}): {verb}",
                    m.metric,
                    op_symbol(m.op),
                    m.value,
                    m.metric,
                    if m.patience > 1 {
                        format!(", {} steps in a row", m.patience)
                    } else {
                        String::new()
                    }
                ),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mon(metric: &str, op: CompareOp, value: f64, patience: usize) -> Monitor {
        Monitor {
            metric: metric.into(),
            op,
            value,
            patience,
            after_step: None,
            action: MonitorAction::Warn,
        }
    }

    #[test]
    fn patience_after_step_and_prefix() {
        let mut m = vec![
            mon("frac_reward_zero_std", CompareOp::Gt, 0.5, 2),
            mon("train/grad_norm", CompareOp::Gt, 2.0, 1),
        ];
        m[1].after_step = Some(3);
        m[1].action = MonitorAction::Stop;
        let mut counts = BTreeMap::new();
        let row = |z: f64, g: f64| {
            BTreeMap::from([
                ("frac_reward_zero_std".to_string(), z),
                ("grad_norm".to_string(), g),
            ])
        };
        assert!(check(&m, 1, &row(0.6, 5.0), &mut counts).is_empty()); // patience 1 of 2; grad before step 3
        let t = check(&m, 2, &row(0.7, 5.0), &mut counts);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].action, MonitorAction::Warn);
        assert!(t[0].message.contains("frac_reward_zero_std"));
        assert!(check(&m, 3, &row(0.1, 1.0), &mut counts).is_empty());
        let t = check(&m, 4, &row(0.9, 2.5), &mut counts);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].action, MonitorAction::Stop);
        assert_eq!(t[0].value, 2.5);
        // A metric not logged leaves the count alone.
        assert!(check(&m, 5, &BTreeMap::new(), &mut counts).is_empty());
        assert_eq!(check(&m, 6, &row(0.9, 0.0), &mut counts).len(), 1);
    }
}
