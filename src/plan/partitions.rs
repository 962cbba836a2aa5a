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
///
/// `lag` is `schedule.outcome_lag_days`: the predictions of D are paired with the outcomes of
/// D + `lag` and scored in round max(D + 1, outcomes) (overrides: max(D, outcomes)).
pub fn rounds(
    p: &Partitions,
    lag: u32,
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
                let next = add_days(&pred, lag)?;
                // A missing day (weekend, holiday) is skipped: the predictions are scored with
                // the next date of the range that has outcomes.
                let outcomes_from = if p.skip_missing && !has_outcomes(&next) {
                    all.iter()
                        .find(|d| **d > next && has_outcomes(d))
                        .cloned()
                        .unwrap_or(next)
                } else {
                    next
                };
                ScorePair {
                    predictions_from: pred.clone(),
                    outcomes_from,
                    overridden: false,
                }
            }
        };
        // Predictions exist once their own round has generated them, so a pair is scored in
        // round max(predictions, outcomes) (YYYYMMDD strings order as dates).
        let made = if pair.overridden {
            pair.predictions_from.clone()
        } else {
            // The outcome of D's predictions is known the day after D at the earliest.
            add_days(&pair.predictions_from, 1)?
        };
        let at = pair.outcomes_from.clone().max(made);
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

/// `date` + `days`, YYYYMMDD.
pub fn add_days(date: &str, days: u32) -> Result<String> {
    parse_date("schedule.partitions", date)?
        .checked_add_days(chrono::Days::new(u64::from(days)))
        .map(fmt_date)
        .ok_or_else(|| Error::Spec("schedule.partitions: date out of range".into()))
}

/// File (in a partitioned run directory) recording what the run continues from: written by
/// `apply` before the first stage runs.
pub const LINEAGE_FILE: &str = "partitions.json";

/// Where a partitioned run continues from: the previous run of the same run name (the latest
/// one with a completed partition), the model it starts from, and the predictions of earlier
/// dates it scores, copied into this run so it never reads another run directory again.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Lineage {
    /// The previous run directory, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_run: Option<String>,
    /// The snapshot the model was taken from (`<prev>/checkpoints/final_model`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_from: Option<String>,
    /// Optimizer steps the imported model had completed (the first partition starts there).
    #[serde(default)]
    pub base_step: usize,
    /// Predictions of earlier dates copied from the previous run: date → rollouts path
    /// relative to this run.
    #[serde(default)]
    pub imported_predictions: std::collections::BTreeMap<String, String>,
    /// The previous run's per-partition summary rows (the auto sampler profile reads the last).
    #[serde(default)]
    pub previous_summary: Vec<crate::run::summary::PartitionSummary>,
}

impl Lineage {
    /// Read `<run>/partitions.json`; the empty lineage when the run has none.
    pub fn load(run: &std::path::Path) -> Result<Lineage> {
        let path = run.join(LINEAGE_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .map_err(|e| Error::Run(format!("{}: malformed: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Lineage::default()),
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    /// Write `<run>/partitions.json` atomically.
    pub fn save(&self, run: &std::path::Path) -> Result<()> {
        crate::run::atomic::write_json(&run.join(LINEAGE_FILE), self)
    }
}

/// The day after `date` (YYYYMMDD).
pub fn next_date(date: &str) -> Result<String> {
    let d = parse_date("partition", date)?;
    d.succ_opt()
        .map(fmt_date)
        .ok_or_else(|| Error::Spec(format!("partition: no date after {date}")))
}

/// The day before `date` (YYYYMMDD).
pub fn prev_date(date: &str) -> Result<String> {
    let d = parse_date("partition", date)?;
    d.pred_opt()
        .map(fmt_date)
        .ok_or_else(|| Error::Spec(format!("partition: no date before {date}")))
}

/// The partition dates a run directory completed (status `done` in its summary), sorted.
pub fn completed_dates(run: &std::path::Path) -> Vec<String> {
    crate::run::summary::read_summaries(run)
        .map(|rows| {
            rows.into_iter()
                .filter(|r| r.status == "done")
                .map(|r| r.date)
                .collect()
        })
        .unwrap_or_default()
}

/// The latest run directory under `<runs_root>/<run_name>/` with at least one completed
/// partition (run ids start with their creation time, so the greatest name is the latest),
/// skipping `exclude` (the run being created).
pub fn latest_run(
    runs_root: &std::path::Path,
    run_name: &str,
    exclude: Option<&std::path::Path>,
) -> Result<Option<std::path::PathBuf>> {
    let parent = runs_root.join(crate::run::safe_name(run_name));
    if !parent.is_dir() {
        return Ok(None);
    }
    let mut dirs: Vec<std::path::PathBuf> = std::fs::read_dir(&parent)
        .map_err(|e| Error::io(&parent, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir() && exclude.is_none_or(|x| x != p.as_path()))
        .collect();
    dirs.sort();
    Ok(dirs
        .into_iter()
        .rev()
        .find(|d| !completed_dates(d).is_empty()))
}

/// Put pairs carried over from an earlier run (its pending predictions) into `rounds`: a pair
/// is scored in the first round on or after max(predictions, outcomes) whose outcomes exist;
/// pairs whose predictions this plan generates again are dropped (this run's own generation
/// wins); the others stay `pending`. Returns the carried pairs placed in a round.
///
/// `lag` is `schedule.outcome_lag_days`: only with the default 1 does a pair whose outcomes are
/// missing move to the next date that has them (with another lag it stays pending).
pub fn carry_in(
    rounds: &mut [Round],
    pending: &mut Vec<ScorePair>,
    carried: Vec<ScorePair>,
    lag: u32,
    has_outcomes: &dyn Fn(&str) -> bool,
) -> Vec<ScorePair> {
    let mut placed = Vec::new();
    for pair in carried {
        let regenerated = rounds
            .iter()
            .any(|r| r.generate && r.date == pair.predictions_from);
        let duplicate = rounds.iter().any(|r| r.score.contains(&pair)) || pending.contains(&pair);
        if regenerated || duplicate {
            continue;
        }
        let mut pair = pair;
        if lag == 1 && !pair.overridden && !has_outcomes(&pair.outcomes_from) {
            // Its next day had no outcomes: the next round that has them scores it.
            if let Some(r) = rounds
                .iter()
                .find(|r| r.date > pair.predictions_from && has_outcomes(&r.date))
            {
                pair.outcomes_from = r.date.clone();
            }
        }
        let at = pair
            .outcomes_from
            .clone()
            .max(pair.predictions_from.clone());
        let slot = if has_outcomes(&pair.outcomes_from) {
            rounds.iter_mut().find(|r| r.date >= at)
        } else {
            None
        };
        match slot {
            Some(r) => {
                r.score.push(pair.clone());
                placed.push(pair);
            }
            None => pending.push(pair),
        }
    }
    placed
}

#[cfg(test)]
mod carry_tests {
    use super::*;

    fn round(date: &str, generate: bool) -> Round {
        Round {
            date: date.into(),
            generate,
            score: Vec::new(),
            prompts: None,
            train_steps: None,
        }
    }

    fn pair(p: &str, o: &str) -> ScorePair {
        ScorePair {
            predictions_from: p.into(),
            outcomes_from: o.into(),
            overridden: false,
        }
    }

    #[test]
    fn carried_pairs_land_in_their_round_or_stay_pending() {
        let mut rounds = vec![round("20250805", true), round("20250806", false)];
        let mut pending = Vec::new();
        let placed = carry_in(
            &mut rounds,
            &mut pending,
            vec![
                pair("20250804", "20250805"), // → round 0805
                pair("20250803", "20250804"), // outcomes before the range → first round
                pair("20250805", "20250806"), // regenerated here: dropped
                pair("20250804", "20250809"), // outcomes after the range: pending
                pair("20250802", "20250803"), // outcomes missing: the next round with them
            ],
            1,
            &|d| d != "20250803" && d != "20250806",
        );
        assert_eq!(placed.len(), 3);
        assert_eq!(
            rounds[0].score,
            vec![
                pair("20250804", "20250805"),
                pair("20250803", "20250804"),
                pair("20250802", "20250805")
            ]
        );
        assert!(rounds[1].score.is_empty());
        assert_eq!(pending, vec![pair("20250804", "20250809")]);
    }
}

#[cfg(test)]
mod missing_day_tests {
    use super::*;

    #[test]
    fn predictions_before_a_missing_day_are_scored_with_the_next_day_with_outcomes() {
        let p = Partitions {
            every: Default::default(),
            from: "20250801".into(),
            to: "20250805".into(),
            backfill: true,
            resume_from_last_model: true,
            skip_missing: true,
            overrides: Vec::new(),
        };
        let missing = |d: &str| d == "20250802" || d == "20250803";
        let (rounds, pending) = rounds(&p, 1, &|d| !missing(d), &|d| !missing(d)).unwrap();
        let scored: Vec<(&str, Vec<(&str, &str)>)> = rounds
            .iter()
            .map(|r| {
                (
                    r.date.as_str(),
                    r.score
                        .iter()
                        .map(|s| (s.predictions_from.as_str(), s.outcomes_from.as_str()))
                        .collect(),
                )
            })
            .collect();
        assert_eq!(
            scored,
            vec![
                ("20250801", vec![]),
                ("20250802", vec![]),
                ("20250803", vec![]),
                ("20250804", vec![("20250801", "20250804")]),
                ("20250805", vec![("20250804", "20250805")]),
            ]
        );
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].outcomes_from, "20250806");
    }

    fn pairs(rounds: &[Round]) -> Vec<(String, String, String)> {
        rounds
            .iter()
            .flat_map(|r| {
                r.score.iter().map(|p| {
                    (
                        r.date.clone(),
                        p.predictions_from.clone(),
                        p.outcomes_from.clone(),
                    )
                })
            })
            .collect()
    }

    fn range(from: &str, to: &str) -> Partitions {
        Partitions {
            every: Default::default(),
            from: from.into(),
            to: to.into(),
            backfill: true,
            resume_from_last_model: true,
            skip_missing: true,
            overrides: Vec::new(),
        }
    }

    fn t(r: &str, p: &str, o: &str) -> (String, String, String) {
        (r.into(), p.into(), o.into())
    }

    #[test]
    fn outcome_lag_pairs_predictions_with_the_outcomes_of_their_own_day_or_the_next() {
        let p = range("20250801", "20250803");
        let all = |_: &str| true;
        // Default (lag 1): round D scores D−1's predictions with D's outcome file.
        let (r1, pend1) = rounds(&p, 1, &all, &all).unwrap();
        assert_eq!(
            pairs(&r1),
            vec![
                t("20250802", "20250801", "20250802"),
                t("20250803", "20250802", "20250803")
            ]
        );
        assert_eq!(pend1[0].outcomes_from, "20250804");
        // Lag 0: the same rounds score D−1's predictions, with D−1's own outcome file.
        let (r0, pend0) = rounds(&p, 0, &all, &all).unwrap();
        assert_eq!(
            pairs(&r0),
            vec![
                t("20250802", "20250801", "20250801"),
                t("20250803", "20250802", "20250802")
            ]
        );
        assert_eq!(pend0.len(), 1);
        assert_eq!(
            (
                pend0[0].predictions_from.as_str(),
                pend0[0].outcomes_from.as_str()
            ),
            ("20250803", "20250803")
        );
    }

    #[test]
    fn outcome_lag_zero_over_a_weekend_keeps_fridays_file() {
        // Fri 20150807, Sat/Sun missing, Mon 20150810: Friday's file holds Fri → Mon.
        let p = range("20150807", "20150810");
        let present = |d: &str| d == "20150807" || d == "20150810";
        let (r, pending) = rounds(&p, 0, &present, &present).unwrap();
        assert_eq!(pairs(&r), vec![t("20150808", "20150807", "20150807")]);
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].outcomes_from, "20150810");
        // Lag 1 waits for Monday's file.
        let (r, _) = rounds(&p, 1, &present, &present).unwrap();
        assert_eq!(pairs(&r), vec![t("20150810", "20150807", "20150810")]);
    }
}
