//! The reward library: pure functions from a completion (plus its reference) to a [`Score`].
//!
//! One module per reward kind; each exposes a plain options struct (serde + schemars, so the
//! spec can embed it) and a scoring function. Nothing here does I/O or runs a model.
//!
//! # Unscorable is not zero
//! A reward that *cannot* score an output (a judge answer with no labels, a reference that is
//! not a number, a crash or a timeout upstream) returns [`Score::Unscorable`] with a reason. A
//! reward that *can* score an output and finds it bad (a completion without a JSON object, a
//! wrong answer) returns `Score::Value(0.0)`: a parse failure is a score. The two are different
//! types, so an unscorable output cannot become 0 by accident: [`RewardStats`] leaves it out of
//! the mean and std and counts it, [`composite`] propagates it, and the advantage computation
//! (`crate::rank::advantage`) leaves it out of the group statistics.

pub mod answer;
pub mod format;
pub mod json;
pub mod judge;
pub mod judge_client;
pub mod keywords;
pub mod quality;
pub mod semantic;
pub mod set;
pub mod sql;
pub mod task;
pub mod text;

#[cfg(test)]
mod robustness;

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The result of one reward function on one completion.
///
/// `Value` is always finite (construct through [`Score::value`], which turns NaN and ±inf into
/// `Unscorable`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Score {
    /// A finite reward value.
    Value(f64),
    /// The reward could not score this output; the reason says why (never counted as 0).
    Unscorable(String),
}

impl Score {
    /// A value, or `Unscorable` when `x` is not finite.
    pub fn value(x: f64) -> Score {
        if x.is_finite() {
            Score::Value(x)
        } else {
            Score::Unscorable(format!("non-finite reward value {x}"))
        }
    }

    /// An unscorable result with a reason.
    pub fn unscorable(reason: impl Into<String>) -> Score {
        Score::Unscorable(reason.into())
    }

    /// The value, `None` when unscorable.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Score::Value(x) => Some(*x),
            Score::Unscorable(_) => None,
        }
    }

    /// True when unscorable.
    pub fn is_unscorable(&self) -> bool {
        matches!(self, Score::Unscorable(_))
    }

    /// The JSON form used in scored rows: a number, or `null` when unscorable (the reason is
    /// recorded separately by the caller).
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Score::Value(x) => serde_json::Number::from_f64(*x)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            Score::Unscorable(_) => serde_json::Value::Null,
        }
    }
}

/// Summary of one reward function over a batch: what every summary table reports per reward.
///
/// `mean` and `std` are over the scorable values only; `std` is the **sample** standard deviation
/// (Bessel's correction, divisor n − 1), like `torch.std` and TRL's `nanstd`, which TRL logs as
/// `rewards/<name>/std`. Both are `None` when too few values are scorable (mean: 0 values, std:
/// fewer than 2), never a made-up 0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RewardStats {
    /// Mean of the scorable values; `None` when none is scorable.
    pub mean: Option<f64>,
    /// Sample std (n − 1) of the scorable values; `None` with fewer than 2.
    pub std: Option<f64>,
    /// Smallest scorable value.
    pub min: Option<f64>,
    /// Largest scorable value.
    pub max: Option<f64>,
    /// Number of unscorable outputs.
    pub unscorable: usize,
    /// Number of outputs seen (scorable + unscorable).
    pub count: usize,
}

impl RewardStats {
    /// Statistics of a batch of scores.
    pub fn from_scores<'a>(scores: impl IntoIterator<Item = &'a Score>) -> RewardStats {
        let mut values = Vec::new();
        let mut unscorable = 0usize;
        for s in scores {
            match s.as_f64() {
                Some(x) => values.push(x),
                None => unscorable += 1,
            }
        }
        let count = values.len() + unscorable;
        RewardStats {
            mean: mean(&values),
            std: sample_std(&values),
            min: values.iter().copied().reduce(f64::min),
            max: values.iter().copied().reduce(f64::max),
            unscorable,
            count,
        }
    }

    /// Number of scorable outputs.
    pub fn scored(&self) -> usize {
        self.count - self.unscorable
    }
}

/// Arithmetic mean; `None` for an empty slice.
pub fn mean(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        None
    } else {
        Some(values.iter().sum::<f64>() / values.len() as f64)
    }
}

/// Sample standard deviation (divisor n − 1, as `torch.std`); `None` with fewer than 2 values.
pub fn sample_std(values: &[f64]) -> Option<f64> {
    if values.len() < 2 {
        return None;
    }
    let m = mean(values)?;
    let ss: f64 = values.iter().map(|x| (x - m) * (x - m)).sum();
    Some((ss / (values.len() - 1) as f64).sqrt())
}

/// Options of a composite reward: a weighted sum of other named rewards with an optional gate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CompositeOptions {
    /// Weight per component reward name, e.g. `{judge: 0.0, semantic: 0.8, format: 0.2}`.
    pub components: BTreeMap<String, f64>,
    /// Validity gate; `null` = none.
    #[serde(default)]
    pub gate: Option<GateOptions>,
}

/// A validity gate: the composite is `otherwise` unless the gating reward reaches `min`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GateOptions {
    /// Name of the gating reward (usually a `format` reward).
    pub reward: String,
    /// The gate passes when the gating reward is at least this. Default 1.0.
    #[serde(default = "one")]
    pub min: f64,
    /// Composite value when the gate fails. Default 0.
    #[serde(default)]
    pub otherwise: f64,
    /// Added to the weighted sum when the gate passes (validity bonus). Default 0.
    #[serde(default)]
    pub bonus: f64,
}

fn one() -> f64 {
    1.0
}

/// Combines named scores into one.
///
/// Rules, in order:
/// 1. a name the options refer to that is missing from `scores` is a spec error (`Err`);
/// 2. an unscorable gate makes the composite unscorable;
/// 3. a failing gate (value < `min`) gives `otherwise` (0 by default), whatever the components;
/// 4. any component with a nonzero weight that is unscorable makes the composite unscorable
///    (unlike TRL's `nansum`, which silently counts it as 0); zero-weight components are ignored;
/// 5. otherwise the weighted sum of the components, plus the gate's `bonus`.
pub fn composite(options: &CompositeOptions, scores: &BTreeMap<String, Score>) -> Result<Score> {
    let lookup = |name: &str| {
        scores
            .get(name)
            .ok_or_else(|| Error::Spec(format!("composite refers to unknown reward `{name}`")))
    };
    // Resolve every name first, so a missing name is reported even when the gate fails.
    let gate = match &options.gate {
        Some(g) => Some((g, lookup(&g.reward)?)),
        None => None,
    };
    let mut parts = Vec::with_capacity(options.components.len());
    for (name, w) in &options.components {
        parts.push((name, *w, lookup(name)?));
    }
    let mut bonus = 0.0;
    if let Some((g, s)) = gate {
        match s {
            Score::Unscorable(why) => {
                return Ok(Score::unscorable(format!("gate `{}`: {why}", g.reward)))
            }
            Score::Value(v) if *v < g.min => return Ok(Score::value(g.otherwise)),
            Score::Value(_) => bonus = g.bonus,
        }
    }
    let mut sum = bonus;
    for (name, w, s) in parts {
        if w == 0.0 {
            continue;
        }
        match s {
            Score::Value(v) => sum += w * v,
            Score::Unscorable(why) => {
                return Ok(Score::unscorable(format!("component `{name}`: {why}")))
            }
        }
    }
    Ok(Score::value(sum))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scores(items: &[(&str, Score)]) -> BTreeMap<String, Score> {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    fn opts(components: &[(&str, f64)], gate: Option<GateOptions>) -> CompositeOptions {
        CompositeOptions {
            components: components
                .iter()
                .map(|(k, w)| (k.to_string(), *w))
                .collect(),
            gate,
        }
    }

    fn gate(min: f64) -> GateOptions {
        GateOptions {
            reward: "format".into(),
            min,
            otherwise: 0.0,
            bonus: 0.0,
        }
    }

    #[test]
    fn score_value_rejects_non_finite() {
        assert!(Score::value(f64::NAN).is_unscorable());
        assert!(Score::value(f64::INFINITY).is_unscorable());
        assert_eq!(Score::value(0.5), Score::Value(0.5));
        assert_eq!(Score::unscorable("x").to_json(), serde_json::Value::Null);
        assert_eq!(Score::Value(0.25).to_json(), serde_json::json!(0.25));
    }

    #[test]
    fn score_serde_round_trip() {
        let s = Score::unscorable("timeout");
        let j = serde_json::to_string(&s).unwrap();
        assert_eq!(j, r#"{"unscorable":"timeout"}"#);
        assert_eq!(serde_json::from_str::<Score>(&j).unwrap(), s);
    }

    #[test]
    fn stats_leave_unscorable_out_and_use_sample_std() {
        let s = [
            Score::Value(1.0),
            Score::Value(2.0),
            Score::unscorable("x"),
            Score::Value(3.0),
            Score::Value(4.0),
        ];
        let st = RewardStats::from_scores(&s);
        assert_eq!(st.count, 5);
        assert_eq!(st.unscorable, 1);
        assert_eq!(st.scored(), 4);
        assert_eq!(st.mean, Some(2.5));
        // sum of squares 2.25+0.25+0.25+2.25 = 5, / 3 → sqrt(5/3)
        assert!((st.std.unwrap() - (5.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert_eq!(st.min, Some(1.0));
        assert_eq!(st.max, Some(4.0));
    }

    #[test]
    fn stats_of_nothing_scorable_are_none_not_zero() {
        let st = RewardStats::from_scores(&[Score::unscorable("a"), Score::unscorable("b")]);
        assert_eq!(st.mean, None);
        assert_eq!(st.std, None);
        assert_eq!(st.unscorable, 2);
        let one = RewardStats::from_scores(&[Score::Value(0.3)]);
        assert_eq!(one.mean, Some(0.3));
        assert_eq!(one.std, None);
    }

    #[test]
    fn composite_weighted_sum() {
        let o = opts(&[("judge", 0.0), ("semantic", 0.8), ("format", 0.2)], None);
        let s = scores(&[
            ("judge", Score::unscorable("no labels")),
            ("semantic", Score::Value(0.5)),
            ("format", Score::Value(1.0)),
        ]);
        // judge has weight 0: ignored even though unscorable; 0.8*0.5 + 0.2*1 = 0.6
        let c = composite(&o, &s).unwrap().as_f64().unwrap();
        assert!((c - 0.6).abs() < 1e-12);
    }

    #[test]
    fn composite_unscorable_component_propagates() {
        let o = opts(&[("semantic", 0.8), ("format", 0.2)], None);
        let s = scores(&[
            ("semantic", Score::unscorable("embedder crashed")),
            ("format", Score::Value(1.0)),
        ]);
        let c = composite(&o, &s).unwrap();
        assert!(c.is_unscorable(), "{c:?}");
    }

    #[test]
    fn composite_gate() {
        let o = opts(&[("semantic", 1.0)], Some(gate(1.0)));
        let pass = scores(&[
            ("semantic", Score::Value(0.7)),
            ("format", Score::Value(1.0)),
        ]);
        assert_eq!(composite(&o, &pass).unwrap(), Score::Value(0.7));
        let fail = scores(&[
            ("semantic", Score::Value(0.7)),
            ("format", Score::Value(0.5)),
        ]);
        assert_eq!(composite(&o, &fail).unwrap(), Score::Value(0.0));
        // a failing gate decides the value even when a component is unscorable
        let fail_unsc = scores(&[
            ("semantic", Score::unscorable("x")),
            ("format", Score::Value(0.0)),
        ]);
        assert_eq!(composite(&o, &fail_unsc).unwrap(), Score::Value(0.0));
        let gate_unsc = scores(&[
            ("semantic", Score::Value(0.7)),
            ("format", Score::unscorable("x")),
        ]);
        assert!(composite(&o, &gate_unsc).unwrap().is_unscorable());
        let mut g = gate(0.5);
        g.bonus = 0.1;
        let o = opts(&[("semantic", 1.0)], Some(g));
        let c = composite(&o, &fail).unwrap().as_f64().unwrap();
        assert!((c - 0.8).abs() < 1e-12);
    }

    #[test]
    fn composite_unknown_name_is_error() {
        let o = opts(&[("nope", 1.0)], None);
        assert!(composite(&o, &BTreeMap::new()).is_err());
        let o = opts(&[], Some(gate(1.0)));
        assert!(composite(&o, &BTreeMap::new()).is_err());
    }
}
