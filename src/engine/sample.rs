//! The sampler: logits row → token id and its log-probability.
//!
//! Semantics follow HF `generate` (the processors in its order): repetition penalty on the raw
//! logits, then temperature, top-k, top-p (over the renormalised top-k survivors), min-p. The
//! returned log-prob is NOT of the filtered distribution: it is
//! `log_softmax(logits / temperature)[token]` over the full vocabulary, without penalty or
//! filtering — exactly what a trainer recomputes from the same logits (TRL's old-policy
//! log-probs), so importance ratios start at 1.

use rand::Rng;

/// Sampling parameters, named as in HF `generate` / TRL.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SamplingParams {
    /// Softmax temperature; 0 means greedy.
    pub temperature: f32,
    /// Nucleus sampling mass (1.0 = off).
    pub top_p: f32,
    /// Keep only the k most likely tokens (0 = off).
    pub top_k: usize,
    /// Drop tokens whose probability is below `min_p` × the top token's (0 = off).
    pub min_p: f32,
    /// HF-style repetition penalty over the tokens in `history` (1.0 = off): a positive logit
    /// is divided by it, a negative one multiplied, once per distinct token.
    pub repetition_penalty: f32,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            min_p: 0.0,
            repetition_penalty: 1.0,
        }
    }
}

impl SamplingParams {
    /// Greedy decoding (temperature 0).
    pub fn greedy() -> Self {
        SamplingParams {
            temperature: 0.0,
            ..Default::default()
        }
    }

    /// Check the ranges (temperature ≥ 0, top_p in (0, 1], min_p in [0, 1],
    /// repetition_penalty > 0, all finite).
    pub fn validate(&self) -> crate::Result<()> {
        let bad = |what: &str| Err(crate::Error::Other(format!("sampling: {what}")));
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            return bad("temperature must be a finite number ≥ 0");
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad("top_p must be in (0, 1]");
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return bad("min_p must be in [0, 1]");
        }
        if !(self.repetition_penalty.is_finite() && self.repetition_penalty > 0.0) {
            return bad("repetition_penalty must be a finite number > 0");
        }
        Ok(())
    }
}

/// One rollout's sampler. Its RNG stream is a pure function of `(seed, prompt_key, index)`, so
/// each rollout is reproducible on its own, whatever batch it was generated in.
pub struct Sampler {
    pub params: SamplingParams,
    rng: rand_chacha::ChaCha8Rng,
    /// Scratch buffers reused across steps (no per-step allocation of vocabulary size).
    work: Vec<f32>,
    exps: Vec<f32>,
    cand: Vec<(f32, u32)>,
}

/// First candidate-set size tried when top-p runs without top-k; doubled until the nucleus
/// fits, so a peaked distribution never pays for a sort of the whole vocabulary.
const NUCLEUS_FIRST_GUESS: usize = 64;

impl Sampler {
    pub fn new(params: SamplingParams, seed: u64, prompt_key: u64, index: u64) -> Self {
        use rand::SeedableRng;
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&seed.to_le_bytes());
        key[8..16].copy_from_slice(&prompt_key.to_le_bytes());
        key[16..24].copy_from_slice(&index.to_le_bytes());
        Sampler {
            params,
            rng: rand_chacha::ChaCha8Rng::from_seed(key),
            work: Vec::new(),
            exps: Vec::new(),
            cand: Vec::new(),
        }
    }

    /// Pick the next token from one row of raw logits. `history` holds the tokens the
    /// repetition penalty applies to: HF penalises the whole `input_ids` (prompt + tokens
    /// generated so far); pass only the generated ones to leave the prompt unpenalised.
    /// Returns the token and its log-probability under the temperature-scaled full
    /// distribution of the raw logits (temperature 0 → scale 1), before penalty and filters.
    /// NaN logits count as −∞. An empty row returns `(0, −∞)`.
    pub fn sample(&mut self, logits: &[f32], history: &[u32]) -> (u32, f32) {
        if logits.is_empty() {
            return (0, f32::NEG_INFINITY);
        }
        let p = &self.params;
        self.work.clear();
        self.work.extend(
            logits
                .iter()
                .map(|&l| if l.is_nan() { f32::NEG_INFINITY } else { l }),
        );
        let penalised = apply_repetition_penalty(&mut self.work, history, p.repetition_penalty);

        if p.temperature <= 0.0 {
            let token = argmax(&self.work);
            return (token as u32, full_logprob(logits, token, 1.0));
        }
        let inv_t = 1.0 / p.temperature;
        self.work.iter_mut().for_each(|l| *l *= inv_t);
        let Some(dist) = Dist::new(&self.work, &mut self.exps) else {
            return (0, f32::NEG_INFINITY);
        };
        let u: f64 = self.rng.random();
        let token = pick(&dist, &mut self.cand, p, u);
        // Without a penalty the scaled row is the one the log-prob is defined on: reuse its
        // normaliser instead of a second pass over the vocabulary.
        let logprob = if penalised {
            full_logprob(logits, token, p.temperature)
        } else {
            dist.logprob(token)
        };
        (token as u32, logprob)
    }
}

/// A row of temperature-scaled logits with its softmax weights computed once:
/// `exps[i] = exp(scaled[i] - max)`, `z = Σ exps`.
struct Dist<'a> {
    scaled: &'a [f32],
    exps: &'a [f32],
    max: f32,
    z: f64,
}

impl<'a> Dist<'a> {
    /// `None` when every logit is −∞.
    fn new(scaled: &'a [f32], exps: &'a mut Vec<f32>) -> Option<Self> {
        let max = scaled.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        if max == f32::NEG_INFINITY {
            return None;
        }
        exps.clear();
        exps.extend(scaled.iter().map(|&l| (l - max).exp()));
        // f32 partial sums over short chunks, accumulated in f64.
        let z = exps
            .chunks(256)
            .map(|c| f64::from(c.iter().sum::<f32>()))
            .sum();
        Some(Dist {
            scaled,
            exps,
            max,
            z,
        })
    }

    fn logprob(&self, token: usize) -> f32 {
        (f64::from(self.scaled[token] - self.max) - self.z.ln()) as f32
    }
}

/// HF's `RepetitionPenaltyLogitsProcessor`: each distinct token of `history` once.
/// Returns whether any logit changed.
fn apply_repetition_penalty(logits: &mut [f32], history: &[u32], penalty: f32) -> bool {
    if penalty == 1.0 || history.is_empty() {
        return false;
    }
    let mut changed = false;
    let mut seen = std::collections::HashSet::with_capacity(history.len());
    for &t in history {
        let i = t as usize;
        if i < logits.len() && seen.insert(t) {
            let l = logits[i];
            logits[i] = if l < 0.0 { l * penalty } else { l / penalty };
            changed = true;
        }
    }
    changed
}

/// `log_softmax(logits / t)[token]` over the full row, accumulated in f64.
fn full_logprob(logits: &[f32], token: usize, t: f32) -> f32 {
    let clean = |l: f32| if l.is_nan() { f32::NEG_INFINITY } else { l };
    let max = logits
        .iter()
        .copied()
        .map(clean)
        .fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        return f32::NEG_INFINITY;
    }
    let inv_t = 1.0 / t;
    // f32 exps (fast), f32 partial sums over short chunks, accumulated in f64.
    let z: f64 = logits
        .chunks(256)
        .map(|c| {
            f64::from(
                c.iter()
                    .map(|&l| ((clean(l) - max) * inv_t).exp())
                    .sum::<f32>(),
            )
        })
        .sum();
    (f64::from((clean(logits[token]) - max) * inv_t) - z.ln()) as f32
}

/// Draw from the filtered distribution with `u` uniform in [0, 1).
fn pick(d: &Dist, cand: &mut Vec<(f32, u32)>, p: &SamplingParams, u: f64) -> usize {
    let n_vocab = d.scaled.len();
    let top_k = if p.top_k > 0 && p.top_k < n_vocab {
        p.top_k
    } else {
        0
    };
    let use_top_p = p.top_p < 1.0;
    let floor = min_p_floor(d.max, p.min_p);
    if top_k == 0 && !use_top_p {
        return draw_full(d, floor, u);
    }

    // Candidates sorted by descending logit: the top-k survivors (ties with the k-th kept, as
    // HF does), or, for top-p alone, a prefix grown until it holds the nucleus.
    let mut n = if top_k > 0 {
        top_k
    } else {
        NUCLEUS_FIRST_GUESS.min(n_vocab)
    };
    loop {
        top_candidates(d.scaled, n, cand);
        if top_k > 0 || cand.len() >= n_vocab {
            break;
        }
        let mass: f64 = cand
            .iter()
            .map(|&(_, i)| f64::from(d.exps[i as usize]))
            .sum();
        if mass / d.z >= f64::from(p.top_p) {
            break;
        }
        n = (n * 4).min(n_vocab);
    }

    // Top-p over the candidates renormalised (after top-k, like HF): keep a token while the
    // mass before it is below top_p.
    let total: f64 = if top_k > 0 {
        cand.iter()
            .map(|&(_, i)| f64::from(d.exps[i as usize]))
            .sum()
    } else {
        d.z
    };
    let mut keep = cand.len();
    if use_top_p {
        let mut before = 0.0;
        for (k, &(_, i)) in cand.iter().enumerate() {
            if k > 0 && before / total >= f64::from(p.top_p) {
                keep = k;
                break;
            }
            before += f64::from(d.exps[i as usize]);
        }
    }
    // Min-p is relative to the top token, so renormalisation does not change it.
    let kept = cand[..keep].iter().filter(|(l, _)| *l >= floor);
    let mass: f64 = kept
        .clone()
        .map(|&(_, i)| f64::from(d.exps[i as usize]))
        .sum();
    let mut target = u * mass;
    let mut last = cand[0].1;
    for &(_, i) in kept {
        let w = f64::from(d.exps[i as usize]);
        last = i;
        if target < w {
            return i as usize;
        }
        target -= w;
    }
    last as usize
}

/// Smallest scaled logit min-p keeps: `p ≥ min_p·p_max` ⇔ `l ≥ l_max + ln(min_p)`.
fn min_p_floor(max: f32, min_p: f32) -> f32 {
    if min_p > 0.0 {
        max + min_p.ln()
    } else {
        f32::NEG_INFINITY
    }
}

/// Inverse-CDF draw over the whole row (in vocabulary order) among logits ≥ `floor`.
fn draw_full(d: &Dist, floor: f32, u: f64) -> usize {
    let filtered = floor > f32::NEG_INFINITY;
    let total: f64 = if filtered {
        d.scaled
            .iter()
            .zip(d.exps)
            .filter(|(l, _)| **l >= floor)
            .map(|(_, e)| f64::from(*e))
            .sum()
    } else {
        d.z
    };
    let mut target = u * total;
    let mut last = 0;
    for (i, (&l, &e)) in d.scaled.iter().zip(d.exps).enumerate() {
        if e > 0.0 && l >= floor {
            let w = f64::from(e);
            last = i;
            if target < w {
                return i;
            }
            target -= w;
        }
    }
    last
}

/// Fill `out` with the `n` largest `(logit, id)` plus any tied with the n-th, sorted by
/// descending logit (ties by id). Linear selection, then a sort of the survivors only.
fn top_candidates(scaled: &[f32], n: usize, out: &mut Vec<(f32, u32)>) {
    out.clear();
    out.extend(scaled.iter().enumerate().map(|(i, &l)| (l, i as u32)));
    let desc = |a: &(f32, u32), b: &(f32, u32)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
    if n < out.len() {
        out.select_nth_unstable_by(n - 1, desc);
        let kth = out[n - 1].0;
        let (head, tail) = out.split_at_mut(n);
        // Ties with the k-th logit stay (HF keeps `scores >= kth`).
        let mut extra: Vec<(f32, u32)> = tail.iter().copied().filter(|c| c.0 == kth).collect();
        let mut kept = head.to_vec();
        kept.append(&mut extra);
        *out = kept;
    }
    out.sort_unstable_by(desc);
}

fn argmax(xs: &[f32]) -> usize {
    let mut best = 0;
    for (i, x) in xs.iter().enumerate() {
        if *x > xs[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(t: f32, top_k: usize, top_p: f32, min_p: f32) -> SamplingParams {
        SamplingParams {
            temperature: t,
            top_p,
            top_k,
            min_p,
            repetition_penalty: 1.0,
        }
    }

    /// The set of tokens that can come out (by drawing at many u's) for a filter setting.
    fn support(logits: &[f32], p: &SamplingParams) -> Vec<usize> {
        let mut cand = Vec::new();
        let mut exps = Vec::new();
        let scaled: Vec<f32> = logits.iter().map(|l| l / p.temperature).collect();
        let d = Dist::new(&scaled, &mut exps).unwrap();
        let mut out: Vec<usize> = (0..2000)
            .map(|i| pick(&d, &mut cand, p, (i as f64 + 0.5) / 2000.0))
            .collect();
        out.sort();
        out.dedup();
        out
    }

    fn ln_probs(ps: &[f64]) -> Vec<f32> {
        ps.iter().map(|p| p.ln() as f32).collect()
    }

    #[test]
    fn top_k_keeps_the_k_largest_and_ties() {
        let l = [1.0, 5.0, 3.0, 4.0, 2.0];
        assert_eq!(support(&l, &params(1.0, 2, 1.0, 0.0)), vec![1, 3]);
        assert_eq!(support(&l, &params(1.0, 1, 1.0, 0.0)), vec![1]);
        // A tie with the k-th logit is kept, as HF's `scores < kth` removal does.
        let tied = [1.0, 5.0, 4.0, 4.0, 2.0];
        assert_eq!(support(&tied, &params(1.0, 2, 1.0, 0.0)), vec![1, 2, 3]);
    }

    #[test]
    fn top_p_keeps_the_smallest_set_reaching_the_mass() {
        // probs 0.5, 0.3, 0.15, 0.05
        let l = ln_probs(&[0.5, 0.3, 0.15, 0.05]);
        assert_eq!(support(&l, &params(1.0, 0, 0.49, 0.0)), vec![0]);
        assert_eq!(support(&l, &params(1.0, 0, 0.6, 0.0)), vec![0, 1]);
        assert_eq!(support(&l, &params(1.0, 0, 0.79, 0.0)), vec![0, 1]);
        assert_eq!(support(&l, &params(1.0, 0, 0.81, 0.0)), vec![0, 1, 2]);
        assert_eq!(support(&l, &params(1.0, 0, 0.99, 0.0)), vec![0, 1, 2, 3]);
    }

    #[test]
    fn top_p_is_applied_to_the_renormalised_top_k() {
        // Full probs 0.4, 0.2, 0.1, ... top-k 2 renormalises to 2/3, 1/3: top-p 0.55 keeps
        // only the first (2/3 ≥ 0.55), whereas over the full distribution it needs two.
        let l = ln_probs(&[0.4, 0.2, 0.1, 0.1, 0.1, 0.1]);
        assert_eq!(support(&l, &params(1.0, 2, 0.55, 0.0)), vec![0]);
        assert_eq!(support(&l, &params(1.0, 0, 0.55, 0.0)), vec![0, 1]);
    }

    #[test]
    fn min_p_is_relative_to_the_top_token() {
        let l = ln_probs(&[0.5, 0.3, 0.15, 0.05]);
        // 0.3 / 0.5 = 0.6, 0.15 / 0.5 = 0.3, 0.05 / 0.5 = 0.1
        assert_eq!(support(&l, &params(1.0, 0, 1.0, 0.5)), vec![0, 1]);
        assert_eq!(support(&l, &params(1.0, 0, 1.0, 0.25)), vec![0, 1, 2]);
        assert_eq!(support(&l, &params(1.0, 0, 1.0, 0.05)), vec![0, 1, 2, 3]);
        // Temperature comes first: at t = 0.5 the ratios square (0.36, 0.09, 0.01).
        assert_eq!(support(&l, &params(0.5, 0, 1.0, 0.25)), vec![0, 1]);
    }

    #[test]
    fn repetition_penalty_follows_hf() {
        let mut l = vec![2.0, -2.0, 1.0, 0.5];
        apply_repetition_penalty(&mut l, &[0, 1, 1, 9], 2.0);
        assert_eq!(l, vec![1.0, -4.0, 1.0, 0.5]);
        // Greedy with the penalty switches away from the repeated best token.
        let mut s = Sampler::new(
            SamplingParams {
                repetition_penalty: 3.0,
                ..SamplingParams::greedy()
            },
            0,
            0,
            0,
        );
        assert_eq!(s.sample(&[2.0, 1.0, 0.0], &[0]).0, 1);
        assert_eq!(s.sample(&[2.0, 1.0, 0.0], &[]).0, 0);
    }

    #[test]
    fn greedy_takes_the_argmax_and_reports_its_logprob() {
        let mut s = Sampler::new(SamplingParams::greedy(), 1, 2, 3);
        let l = [0.1, 2.0, -1.0, 1.5];
        let (t, lp) = s.sample(&l, &[]);
        assert_eq!(t, 1);
        let z: f64 = l.iter().map(|x| (*x as f64).exp()).sum();
        assert!((lp as f64 - (2.0 - z.ln())).abs() < 1e-6);
    }

    #[test]
    fn logprob_is_the_full_temperature_softmax_before_filters() {
        let l = [3.0f32, 1.0, 0.0, -2.0];
        let t = 0.7f32;
        let mut s = Sampler::new(
            SamplingParams {
                temperature: t,
                top_k: 1,
                top_p: 0.5,
                min_p: 0.2,
                repetition_penalty: 1.0,
            },
            5,
            0,
            0,
        );
        let (tok, lp) = s.sample(&l, &[]);
        assert_eq!(tok, 0);
        let z: f64 = l.iter().map(|x| (*x as f64 / t as f64).exp()).sum();
        let want = 3.0 / t as f64 - z.ln();
        assert!((lp as f64 - want).abs() < 1e-6, "{lp} vs {want}");
    }

    #[test]
    fn same_key_same_stream_different_index_different_stream() {
        let l: Vec<f32> = (0..50).map(|i| (i as f32 * 0.37).sin()).collect();
        let run = |idx: u64| {
            let mut s = Sampler::new(SamplingParams::default(), 42, 7, idx);
            (0..40).map(|_| s.sample(&l, &[]).0).collect::<Vec<_>>()
        };
        assert_eq!(run(0), run(0));
        assert_ne!(run(0), run(1));
    }

    #[test]
    fn nan_and_empty_rows_do_not_panic() {
        let mut s = Sampler::new(SamplingParams::default(), 0, 0, 0);
        assert_eq!(s.sample(&[], &[]), (0, f32::NEG_INFINITY));
        let (t, lp) = s.sample(&[f32::NAN, 0.0, f32::NAN], &[]);
        assert_eq!(t, 1);
        assert!(lp.abs() < 1e-6);
    }

    /// Pearson chi-square of sampled frequencies against softmax(l / t), for plain temperature
    /// sampling and for top-k + top-p (renormalised survivors).
    #[test]
    fn frequencies_match_the_distribution() {
        let l = [1.0f32, 0.5, 0.0, -0.5, -1.0, 2.0];
        let check = |p: SamplingParams, expected: &[f64]| {
            let n = 60_000;
            let mut s = Sampler::new(p, 123, 4, 5);
            let mut counts = vec![0usize; l.len()];
            for _ in 0..n {
                counts[s.sample(&l, &[]).0 as usize] += 1;
            }
            let mut chi2 = 0.0;
            let mut dof = 0;
            for (c, e) in counts.iter().zip(expected) {
                if *e == 0.0 {
                    assert_eq!(*c, 0, "a filtered token was drawn");
                    continue;
                }
                let ex = e * n as f64;
                chi2 += (*c as f64 - ex).powi(2) / ex;
                dof += 1;
            }
            // 99.9th percentile of chi-square with ≤ 5 degrees of freedom is 20.5.
            assert!(
                chi2 < 20.5,
                "chi2 {chi2} with {} dof, counts {counts:?}",
                dof - 1
            );
        };
        let t = 0.8f64;
        let w: Vec<f64> = l.iter().map(|x| (*x as f64 / t).exp()).collect();
        let z: f64 = w.iter().sum();
        check(
            params(0.8, 0, 1.0, 0.0),
            &w.iter().map(|x| x / z).collect::<Vec<_>>(),
        );
        // top-k 4 keeps ids 5, 0, 1, 2; renormalised; top-p 0.9 then drops the tail of those.
        let mut kept: Vec<(usize, f64)> = [5usize, 0, 1, 2].iter().map(|&i| (i, w[i])).collect();
        let zk: f64 = kept.iter().map(|x| x.1).sum();
        kept.iter_mut().for_each(|x| x.1 /= zk);
        let mut before = 0.0;
        let mut expected = vec![0.0; l.len()];
        for &(i, q) in &kept {
            if before >= 0.9 {
                break;
            }
            expected[i] = q;
            before += q;
        }
        let ze: f64 = expected.iter().sum();
        expected.iter_mut().for_each(|x| *x /= ze);
        check(params(0.8, 4, 0.9, 0.0), &expected);
    }

    #[test]
    fn nucleus_search_grows_past_the_first_guess() {
        // A flat 1000-token row: top-p 0.5 needs 500 tokens, more than the first guess.
        let l = vec![0.0f32; 1000];
        let p = params(1.0, 0, 0.5, 0.0);
        let s = support(&l, &p);
        assert_eq!(s.len(), 500);
    }

    #[test]
    fn validate_rejects_out_of_range_values() {
        assert!(SamplingParams::default().validate().is_ok());
        assert!(params(-1.0, 0, 1.0, 0.0).validate().is_err());
        assert!(params(1.0, 0, 0.0, 0.0).validate().is_err());
        assert!(params(1.0, 0, 1.0, 1.5).validate().is_err());
    }
}
