//! Diversity and correctness metrics over sets of sampled texts, each with an exact,
//! documented definition checked against a reference implementation (NLTK, sacrebleu, the
//! Codex paper's pass@k) in `tests/metrics.rs`.
//!
//! | metric | function | definition |
//! |---|---|---|
//! | distinct-n | [`distinct_n`] | distinct n-grams / n-grams, [`Pooling::Pooled`] or [`Pooling::PerSentence`] |
//! | Self-BLEU (NLTK) | [`self_bleu_nltk`] | mean NLTK `sentence_bleu` of each text against all others, method1 |
//! | Self-BLEU (sacrebleu) | [`self_bleu_sacre`] | mean sacrebleu `sentence_bleu` (13a, exp, effective order), 0..100 |
//! | semantic diversity | [`semantic_diversity`] | mean over pairs of 1 − cosine of sentence embeddings |
//! | effective diversity | [`effective_diversity`] | semantic diversity of the samples with quality ≥ a threshold |
//! | pass@k | [`pass_at_k`] | 1 − C(n−c, k)/C(n, k), product form |
//!
//! Every function checks its input first: an empty or degenerate input (no texts, fewer than
//! two texts to compare, no n-gram at all, k > n, a zero embedding) is an `Err` naming the
//! cause, never a 0 that would read as "no diversity".
//!
//! Tokenisation: distinct-n and NLTK Self-BLEU split on whitespace exactly as Python's
//! `str.split()` does ([`tokenize::python_split`]), which is what NLTK users pass; sacrebleu
//! Self-BLEU uses sacrebleu's `13a` tokenizer ([`tokenize::tokenize_13a`]).

pub mod compute;
pub mod distinct;
pub mod ngrams;
pub mod pass_at_k;
pub mod sacre_bleu;
pub mod self_bleu;
pub mod semantic;
pub mod tokenize;

pub use compute::{compute, GroupBy, GroupReport, MetricOptions, MetricReport, Sample, METRICS};
pub use distinct::{distinct_n, Pooling};
pub use pass_at_k::pass_at_k;
pub use sacre_bleu::self_bleu_sacre;
pub use self_bleu::self_bleu_nltk;
pub use semantic::{
    effective_diversity, semantic_diversity, EffectiveDiversity, SemanticAccumulator,
};
