//! The daily loop: which predictions each date's round scores.
//!
//! Round D generates predictions for D's prompts and scores the predictions of D−1 against D's
//! outcomes (what happened the next day), then trains on them. An override
//! `{predictions_from: P, outcomes_from: H}` moves P's scoring to round H (backfill/recovery,
//! e.g. 20250810's predictions scored with 20250811's outcomes); an override to an earlier or
//! the same date is scored in P's own round, right after P's predictions exist. Predictions
//! whose scoring date lies after `to` are pending: a later run scores them.

use crate::spec::Partitions;
use crate::{Error, Result};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

/// Predictions of one date scored with the outcomes of another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScorePair {
    /// Date (YYYYMMDD) whose predictions are scored.
    pub predictions_from: String,
    /// Date (YYYYMMDD) whose outcomes score them.
    pub outcomes_from: String,
    /// Set by a `schedule.partitions.overrides` entry rather than the D−1 rule.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub overridden: bool,
}

/// One round of the daily loop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Round {
    /// The partition date, YYYYMMDD.
    pub date: String,
    /// False when the date's prompt file is missing and `skip_missing` is on: the round
    /// generates nothing (it may still score earlier predictions).
    pub generate: bool,
    /// The predictions this round scores and trains on.
    pub score: Vec<ScorePair>,
    /// Prompts of the date (records of its train file), when readable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompts: Option<usize>,
    /// Optimizer steps of this round's training, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_steps: Option<usize>,
}

/// Parse a YYYYMMDD date, naming the field on error.
pub fn parse_date(field: &str, s: &str) -> Result<NaiveDate> {
    NaiveDate::parse_from_str(s, "%Y%m%d")
        .map_err(|_| Error::Spec(format!("{field}: `{s}` is not a date in YYYYMMDD form")))
}

/// Format a date as YYYYMMDD.
pub fn fmt_date(d: NaiveDate) -> String {
    d.format("%Y%m%d").to_string()
}

/// Every date of the range, in order.
pub fn dates(p: &Partitions) -> Result<Vec<String>> {
    let from = parse_date("schedule.partitions.from", &p.from)?;
    let to = parse_date("schedule.partitions.to", &p.to)?;
    if to < from {
        return Err(Error::Spec(format!(
            "schedule.partitions: `to` ({}) is before `from` ({})",
            p.to, p.from
        )));
    }
    let mut out = Vec::new();
    let mut d = from;
    while d <= to {
        out.push(fmt_date(d));
        d = d
            .succ_opt()
            .ok_or_else(|| Error::Spec("schedule.partitions: date out of range".into()))?;
    }
    Ok(out)
}

/// The rounds of the range and the pending pairs. `has_prompts(date)` / `has_outcomes(date)`
/// say whether a date's prompt / outcome file exists: with `skip_missing`, dates without prompts
/// generate nothing and pairs whose outcomes are missing wait (pending).
pub fn rounds(
    p: &Partitions,
    has_prompts: &dyn Fn(&str) -> bool,
    has_outcomes: &dyn Fn(&str) -> bool,
) -> Result<(Vec<Round>, Vec<ScorePair>)> {
    let all = dates(p)?;
    for (i, o) in p.overrides.iter().enumerate() {
        parse_date(
            &format!("schedule.partitions.overrides[{i}].predictions_from"),
            &o.predictions_from,
        )?;
        parse_date(
            &format!("schedule.partitions.overrides[{i}].outcomes_from"),
            &o.outcomes_from,
        )?;
    }
    let mut rounds: Vec<Round> = all
        .iter()
        .map(|d| Round {
            date: d.clone(),
            generate: !p.skip_missing || has_prompts(d),
            score: Vec::new(),
            prompts: None,
            train_steps: None,
        })
        .collect();
    let mut pending = Vec::new();
    let generating: Vec<String> = rounds
        .iter()
        .filter(|r| r.generate)
        .map(|r| r.date.clone())
        .collect();
    for pred in generating {
        let pair = match p.overrides.iter().find(|o| o.predictions_from == pred) {
            Some(o) => ScorePair {
                predictions_from: pred.clone(),
                outcomes_from: o.outcomes_from.clone(),
                overridden: true,
            },
            None => {
                let next = parse_date("schedule.partitions", &pred)?
                    .succ_opt()
                    .ok_or_else(|| Error::Spec("schedule.partitions: date out of range".into()))?;
                ScorePair {
                    predictions_from: pred.clone(),
                    outcomes_from: fmt_date(next),
                    overridden: false,
                }
            }
        };
        // Predictions exist once their own round has generated them, so a pair is scored in
        // round max(predictions, outcomes) (YYYYMMDD strings order as dates).
        let at = pair
            .outcomes_from
            .clone()
            .max(pair.predictions_from.clone());
        if p.skip_missing && !has_outcomes(&pair.outcomes_from) {
            pending.push(pair);
            continue;
        }
        match rounds.iter_mut().find(|r| r.date == at) {
            Some(r) => r.score.push(pair),
            None => pending.push(pair),
        }
    }
    Ok((rounds, pending))
}
