//! Named metrics over samples (rows of a samples.jsonl), optionally per group — what
//! `runner metrics`, eval, compare and sweep tables call.
//!
//! Names: `distinct-N` (any N ≥ 1; values `distinct-N` pooled and `distinct-N/per-sentence`),
//! `self-bleu` (NLTK, 0..1, max order [`MetricOptions::n`]), `self-bleu-sacre` (sacrebleu,
//! 0..100), `semantic` (mean pairwise 1 − cosine) and `pass@k` (values `pass@K` per k).
//!
//! Grouping: with [`MetricOptions::group_by`], each group (same `prompt`, or same `group`) is
//! computed on its own and the reported value is the unweighted mean over groups (each
//! group's value is in [`MetricReport::groups`]). Without it, all samples form one set — except
//! pass@k over samples of several different prompts, which is an error (pass@k is per
//! problem; say `--group-by prompt`).
//!
//! Effective diversity: [`MetricOptions::min_quality`] keeps only samples with `quality` ≥ the
//! threshold before a diversity metric is computed.

use std::collections::BTreeMap;

use super::distinct::{distinct_n, shorter_than, Pooling};
use super::pass_at_k::pass_at_k;
use super::sacre_bleu::self_bleu_sacre;
use super::self_bleu::{self_bleu_nltk, DEFAULT_MAX_N};
use super::semantic::SemanticAccumulator;
use crate::rewards::semantic::Embedder;
use crate::{Error, Result};

/// The metric names [`compute`] accepts (`distinct-N` for any N ≥ 1).
pub const METRICS: &[&str] = &[
    "distinct-N",
    "self-bleu",
    "self-bleu-sacre",
    "semantic",
    "pass@k",
];

/// Texts embedded per call when `semantic` embeds with the embedder: memory stays bounded by
/// this many embeddings plus the embedder's own batch activations, whatever the sample count.
pub const EMBED_CHUNK: usize = 256;

/// One sample (a row of a samples.jsonl).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Sample {
    /// The generated text.
    pub text: String,
    /// The prompt it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// A group label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Whether it is correct (pass@k).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correct: Option<bool>,
    /// A quality score (for effective diversity: [`MetricOptions::min_quality`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<f64>,
    /// A precomputed sentence embedding (`semantic` uses these when every sample has one,
    /// instead of the embedder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding: Option<Vec<f32>>,
}

/// Which field groups samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum GroupBy {
    /// Samples with the same `prompt`.
    Prompt,
    /// Samples with the same `group`.
    Group,
}

impl GroupBy {
    fn field(self) -> &'static str {
        match self {
            GroupBy::Prompt => "prompt",
            GroupBy::Group => "group",
        }
    }
}

/// Options of [`compute`].
#[derive(Debug, Clone, Default)]
pub struct MetricOptions<'a> {
    /// Max n-gram order of Self-BLEU (NLTK), weights 1/n each; 0 means the default 4.
    pub n: usize,
    /// The k of pass@k; empty means `[1]`.
    pub ks: Vec<usize>,
    /// Compute per group and average the groups.
    pub group_by: Option<GroupBy>,
    /// The sentence embedder (`semantic` without precomputed embeddings).
    pub embedder: Option<&'a Embedder>,
    /// Keep only samples with `quality` ≥ this (effective diversity).
    pub min_quality: Option<f64>,
}

/// The value(s) of one group.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct GroupReport {
    /// The group's key.
    pub key: String,
    /// Samples in the group (after the quality filter).
    pub samples: usize,
    /// Values by name.
    pub values: BTreeMap<String, f64>,
}

/// The result of [`compute`].
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MetricReport {
    /// The metric name as asked.
    pub metric: String,
    /// Its exact definition in one sentence.
    pub definition: String,
    /// Samples used (after the quality filter).
    pub samples: usize,
    /// Values by name (the unweighted mean over groups when grouped).
    pub values: BTreeMap<String, f64>,
    /// Per-group values, in order of first appearance (empty when not grouped).
    pub groups: Vec<GroupReport>,
    /// Remarks (filtered samples, texts left out).
    pub notes: Vec<String>,
}

/// A parsed metric name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Distinct(usize),
    SelfBleu,
    SelfBleuSacre,
    Semantic,
    PassAtK,
}

fn parse_kind(metric: &str) -> Result<Kind> {
    let unknown = || {
        Error::Other(format!(
            "unknown metric `{metric}` (known: {})",
            METRICS.join(", ")
        ))
    };
    Ok(match metric {
        "self-bleu" => Kind::SelfBleu,
        "self-bleu-sacre" => Kind::SelfBleuSacre,
        "semantic" => Kind::Semantic,
        "pass@k" => Kind::PassAtK,
        m => match m.strip_prefix("distinct-") {
            Some(n) => match n.parse::<usize>() {
                Ok(n) if n >= 1 => Kind::Distinct(n),
                _ => return Err(unknown()),
            },
            None => return Err(unknown()),
        },
    })
}

fn definition(kind: Kind, max_n: usize) -> String {
    match kind {
        Kind::Distinct(n) => format!(
            "distinct {n}-grams / {n}-grams over all texts pooled (distinct-{n}) and the mean of \
             that ratio per text with ≥ {n} tokens (distinct-{n}/per-sentence); tokens: Python \
             str.split()"
        ),
        Kind::SelfBleu => format!(
            "mean NLTK sentence_bleu of each text against all others, weights 1/{max_n} up to \
             {max_n}-grams, SmoothingFunction().method1, tokens: Python str.split(); 0..1"
        ),
        Kind::SelfBleuSacre => "mean sacrebleu sentence_bleu of each text against all others, \
             tokenize=13a, smooth_method=exp, effective order; 0..100"
            .to_string(),
        Kind::Semantic => {
            "mean over pairs of 1 − cosine similarity of sentence embeddings; 0..2".to_string()
        }
        Kind::PassAtK => "unbiased pass@k = 1 − C(n−c, k)/C(n, k) per problem (n samples, c \
             correct), product form, averaged over problems"
            .to_string(),
    }
}

/// Compute the metric named `metric` over `samples` (see the module docs). Errors name the
/// cause: unknown metric, no samples, a sample without the field the metric or grouping needs,
/// a group too small for the metric, k larger than a group.
pub fn compute(metric: &str, samples: &[Sample], opts: &MetricOptions) -> Result<MetricReport> {
    let kind = parse_kind(metric)?;
    if samples.is_empty() {
        return Err(Error::Other(format!("{metric}: no samples")));
    }
    let max_n = if opts.n == 0 { DEFAULT_MAX_N } else { opts.n };
    let ks: Vec<usize> = if opts.ks.is_empty() {
        vec![1]
    } else {
        opts.ks.clone()
    };
    let mut notes = Vec::new();
    let kept = filter_quality(kind, samples, opts.min_quality, &mut notes)?;
    if kept.is_empty() {
        return Err(Error::Other(format!("{metric}: no samples left")));
    }
    let groups = group(kind, &kept, opts.group_by)?;
    let mut reports = Vec::with_capacity(groups.len());
    for (key, members) in &groups {
        let values = compute_group(kind, members, max_n, &ks, opts.embedder).map_err(|e| {
            if opts.group_by.is_some() {
                Error::Other(format!("group `{key}`: {e}"))
            } else {
                e
            }
        })?;
        reports.push(GroupReport {
            key: key.clone(),
            samples: members.len(),
            values,
        });
    }
    if let Kind::Distinct(n) = kind {
        let texts: Vec<&str> = kept.iter().map(|s| s.text.as_str()).collect();
        let short = shorter_than(&texts, n);
        if short > 0 {
            notes.push(format!(
                "{short} of {} texts have fewer than {n} tokens: left out of \
                 distinct-{n}/per-sentence (they add no {n}-gram to the pooled figure)",
                texts.len()
            ));
        }
    }
    let values = mean_over_groups(&reports);
    Ok(MetricReport {
        metric: metric.to_string(),
        definition: definition(kind, max_n),
        samples: kept.len(),
        values,
        groups: if opts.group_by.is_some() {
            reports
        } else {
            Vec::new()
        },
        notes,
    })
}

/// The samples with quality ≥ the threshold (all without one).
fn filter_quality<'s>(
    kind: Kind,
    samples: &'s [Sample],
    min_quality: Option<f64>,
    notes: &mut Vec<String>,
) -> Result<Vec<&'s Sample>> {
    let Some(t) = min_quality else {
        return Ok(samples.iter().collect());
    };
    if kind == Kind::PassAtK {
        return Err(Error::Other(
            "pass@k: a quality threshold does not apply (it is for diversity metrics)".into(),
        ));
    }
    if !t.is_finite() {
        return Err(Error::Other(format!(
            "the quality threshold must be finite, got {t}"
        )));
    }
    let mut kept = Vec::new();
    for (i, s) in samples.iter().enumerate() {
        match s.quality {
            Some(q) if !q.is_finite() => {
                return Err(Error::Other(format!(
                    "sample {i}: quality is not finite ({q})"
                )))
            }
            Some(q) if q >= t => kept.push(s),
            Some(_) => {}
            None => {
                return Err(Error::Other(format!(
                    "sample {i} has no `quality` (needed by the quality threshold)"
                )))
            }
        }
    }
    notes.push(format!(
        "effective diversity: {} of {} samples have quality ≥ {t}",
        kept.len(),
        samples.len()
    ));
    Ok(kept)
}

/// Groups in order of first appearance; one group `all` when not grouping.
fn group<'s>(
    kind: Kind,
    samples: &[&'s Sample],
    by: Option<GroupBy>,
) -> Result<Vec<(String, Vec<&'s Sample>)>> {
    let Some(by) = by else {
        if kind == Kind::PassAtK {
            let mut prompts = samples.iter().filter_map(|s| s.prompt.as_deref());
            if let Some(first) = prompts.next() {
                if let Some(other) = prompts.find(|p| *p != first) {
                    return Err(Error::Other(format!(
                        "pass@k is per problem, and the samples answer different prompts \
                         (`{}`, `{}`, ...): group them (--group-by prompt)",
                        short(first),
                        short(other)
                    )));
                }
            }
        }
        return Ok(vec![("all".to_string(), samples.to_vec())]);
    };
    let mut order: Vec<(String, Vec<&Sample>)> = Vec::new();
    let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for (i, s) in samples.iter().enumerate() {
        let key = match by {
            GroupBy::Prompt => s.prompt.as_ref(),
            GroupBy::Group => s.group.as_ref(),
        }
        .ok_or_else(|| Error::Other(format!("sample {i} has no `{}` to group by", by.field())))?;
        match index.get(key) {
            Some(&g) => order[g].1.push(s),
            None => {
                index.insert(key.clone(), order.len());
                order.push((key.clone(), vec![s]));
            }
        }
    }
    Ok(order)
}

/// The first 40 characters of a key, for messages.
fn short(s: &str) -> String {
    let t: String = s.chars().take(40).collect();
    if t.len() < s.len() {
        format!("{t}…")
    } else {
        t
    }
}

fn compute_group(
    kind: Kind,
    members: &[&Sample],
    max_n: usize,
    ks: &[usize],
    embedder: Option<&Embedder>,
) -> Result<BTreeMap<String, f64>> {
    let texts: Vec<&str> = members.iter().map(|s| s.text.as_str()).collect();
    let mut v = BTreeMap::new();
    match kind {
        Kind::Distinct(n) => {
            v.insert(
                format!("distinct-{n}"),
                distinct_n(&texts, n, Pooling::Pooled)?,
            );
            v.insert(
                format!("distinct-{n}/per-sentence"),
                distinct_n(&texts, n, Pooling::PerSentence)?,
            );
        }
        Kind::SelfBleu => {
            v.insert("self-bleu".into(), self_bleu_nltk(&texts, max_n)?);
        }
        Kind::SelfBleuSacre => {
            v.insert("self-bleu-sacre".into(), self_bleu_sacre(&texts)?);
        }
        Kind::Semantic => {
            v.insert("semantic".into(), semantic(members, embedder)?);
        }
        Kind::PassAtK => {
            let mut c = 0usize;
            for (i, s) in members.iter().enumerate() {
                match s.correct {
                    Some(true) => c += 1,
                    Some(false) => {}
                    None => {
                        return Err(Error::Other(format!("pass@k: sample {i} has no `correct`")))
                    }
                }
            }
            for &k in ks {
                v.insert(format!("pass@{k}"), pass_at_k(members.len(), c, k)?);
            }
        }
    }
    Ok(v)
}

/// Semantic diversity from the samples' own embeddings when all have one, else embedding the
/// texts [`EMBED_CHUNK`] at a time.
fn semantic(members: &[&Sample], embedder: Option<&Embedder>) -> Result<f64> {
    let mut acc = SemanticAccumulator::new();
    let with = members.iter().filter(|s| s.embedding.is_some()).count();
    if with == members.len() {
        for s in members {
            if let Some(e) = &s.embedding {
                acc.push(e)?;
            }
        }
        return acc.value();
    }
    if with > 0 {
        return Err(Error::Other(format!(
            "semantic: {with} of {} samples carry an `embedding`; give all or none",
            members.len()
        )));
    }
    let Some(embedder) = embedder else {
        return Err(Error::Other(
            "semantic: needs a sentence embedder (or an `embedding` on every sample)".into(),
        ));
    };
    if members.len() < 2 {
        return acc.value();
    }
    for chunk in members.chunks(EMBED_CHUNK) {
        let texts: Vec<&str> = chunk.iter().map(|s| s.text.as_str()).collect();
        for e in embedder.embed(&texts)? {
            acc.push(&e)?;
        }
    }
    acc.value()
}

/// Unweighted mean over groups of each value name.
fn mean_over_groups(groups: &[GroupReport]) -> BTreeMap<String, f64> {
    let mut sums: BTreeMap<String, (f64, usize)> = BTreeMap::new();
    for g in groups {
        for (k, &x) in &g.values {
            let e = sums.entry(k.clone()).or_insert((0.0, 0));
            e.0 += x;
            e.1 += 1;
        }
    }
    sums.into_iter()
        .map(|(k, (s, n))| (k, s / n as f64))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str, prompt: &str, correct: bool) -> Sample {
        Sample {
            text: text.into(),
            prompt: Some(prompt.into()),
            correct: Some(correct),
            ..Default::default()
        }
    }

    #[test]
    fn grouped_pass_at_k_averages_problems() {
        let rows = vec![
            s("a", "p", true),
            s("b", "p", false),
            s("c", "q", false),
            s("d", "q", false),
        ];
        let opts = MetricOptions {
            ks: vec![1, 2],
            group_by: Some(GroupBy::Prompt),
            ..Default::default()
        };
        let r = compute("pass@k", &rows, &opts).unwrap();
        // p: pass@1 = 1/2, pass@2 = 1; q: 0, 0.
        assert_eq!(r.values["pass@1"], 0.25);
        assert_eq!(r.values["pass@2"], 0.5);
        assert_eq!(r.groups.len(), 2);
        assert_eq!(r.groups[0].key, "p");
        // Ungrouped over two prompts: an error that says what to do.
        let e = compute("pass@k", &rows, &MetricOptions::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("--group-by prompt"), "{e}");
        // k larger than a group names the group.
        let opts = MetricOptions {
            ks: vec![3],
            group_by: Some(GroupBy::Prompt),
            ..Default::default()
        };
        let e = compute("pass@k", &rows, &opts).unwrap_err().to_string();
        assert!(e.contains("group `p`") && e.contains("k = 3"), "{e}");
    }

    #[test]
    fn errors_name_the_cause() {
        let rows = vec![s("a b", "p", true)];
        let e = compute("self-bleu", &rows, &MetricOptions::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("at least 2"), "{e}");
        assert!(compute("distinct-0", &rows, &MetricOptions::default()).is_err());
        let e = compute("bleu", &rows, &MetricOptions::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown metric"), "{e}");
        assert!(compute("self-bleu", &[], &MetricOptions::default()).is_err());
        let opts = MetricOptions {
            group_by: Some(GroupBy::Group),
            ..Default::default()
        };
        let e = compute("distinct-2", &rows, &opts).unwrap_err().to_string();
        assert!(e.contains("no `group`"), "{e}");
        let e = compute(
            "semantic",
            &[s("a", "p", true), s("b", "p", true)],
            &MetricOptions::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("embedder"), "{e}");
    }

    #[test]
    fn quality_filter_and_embeddings() {
        let mk = |e: Vec<f32>, q: f64| Sample {
            text: "x".into(),
            quality: Some(q),
            embedding: Some(e),
            ..Default::default()
        };
        let rows = vec![
            mk(vec![1.0, 0.0], 0.9),
            mk(vec![0.0, 1.0], 0.8),
            mk(vec![1.0, 0.0], 0.1),
        ];
        let opts = MetricOptions {
            min_quality: Some(0.5),
            ..Default::default()
        };
        let r = compute("semantic", &rows, &opts).unwrap();
        assert_eq!(r.samples, 2);
        assert!((r.values["semantic"] - 1.0).abs() < 1e-15);
        assert!(r.notes[0].contains("2 of 3"), "{:?}", r.notes);
        // All three: cosines 0, 1, 0 → 1 − 1/3.
        let r = compute("semantic", &rows, &MetricOptions::default()).unwrap();
        assert!((r.values["semantic"] - 2.0 / 3.0).abs() < 1e-15);
    }
}
