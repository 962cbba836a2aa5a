//! Batched generation of rollout groups with a shared prompt prefill and a KV cache.
//!
//! Prompts are generated one after the other. For each prompt: one prefill at batch 1, then
//! the KV cache is copied to the `n_per_prompt` rollouts, which decode together as one batch.
//! A rollout that stops (eos / stop token, stop string, length) leaves the batch: its cache
//! rows are dropped, so it costs nothing more. Each rollout samples with its own
//! [`Sampler`] seeded from `(seed, hash of the prompt tokens, index)`, so it is reproducible
//! whatever else is in the request.

use candle_core::Tensor;

use super::model::Model;
use super::sample::{Sampler, SamplingParams};
use super::tokenizer::Tok;

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenerateRequest {
    /// Prompt token ids (already chat-templated).
    pub prompts: Vec<Vec<u32>>,
    /// Rollouts per prompt (the group size G).
    pub n_per_prompt: usize,
    pub params: SamplingParams,
    pub max_new_tokens: usize,
    /// Extra stop token ids besides the tokenizer's eos ids.
    pub stop_token_ids: Vec<u32>,
    /// Stop strings: generation of a rollout ends when its text contains one (it is cut there).
    pub stop_strings: Vec<String>,
    pub seed: u64,
}

/// Why a rollout ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    Eos,
    StopString,
    Length,
}

/// One sampled completion.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Rollout {
    pub prompt_index: usize,
    /// Index within the prompt's group.
    pub index: usize,
    /// The sampled tokens, including the stop token or the token that completed a stop string.
    pub tokens: Vec<u32>,
    /// Log-prob of each sampled token (temperature-scaled full distribution).
    pub logprobs: Vec<f32>,
    /// The decoded completion (special tokens skipped), cut before a stop string.
    pub text: String,
    pub finish: FinishReason,
}

/// The key that seeds a prompt's samplers: FNV-1a over the prompt's token ids.
pub fn prompt_key(prompt: &[u32]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for t in prompt {
        for b in t.to_le_bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// Generate `n_per_prompt` rollouts for every prompt, in prompt order then index order.
pub fn generate(model: &Model, tok: &Tok, req: &GenerateRequest) -> crate::Result<Vec<Rollout>> {
    let mut stop_ids: Vec<u32> = tok.eos_ids.clone();
    stop_ids.extend(&req.stop_token_ids);
    stop_ids.extend(&model.config.eos_token_ids);
    stop_ids.sort_unstable();
    stop_ids.dedup();
    let mut out = Vec::with_capacity(req.prompts.len() * req.n_per_prompt);
    for (pi, prompt) in req.prompts.iter().enumerate() {
        out.extend(generate_group(model, tok, req, &stop_ids, pi, prompt)?);
    }
    Ok(out)
}

/// A rollout while it is being generated.
struct Running {
    sampler: Sampler,
    tokens: Vec<u32>,
    logprobs: Vec<f32>,
    finish: Option<FinishReason>,
    /// Text cut before the stop string, when one was hit.
    cut_text: Option<String>,
}

fn generate_group(
    model: &Model,
    tok: &Tok,
    req: &GenerateRequest,
    stop_ids: &[u32],
    prompt_index: usize,
    prompt: &[u32],
) -> crate::Result<Vec<Rollout>> {
    if prompt.is_empty() {
        return Err(crate::Error::Model(format!(
            "prompt {prompt_index} is empty"
        )));
    }
    let vocab = model.config.vocab_size as u32;
    if let Some(bad) = prompt.iter().find(|&&t| t >= vocab) {
        return Err(crate::Error::Model(format!(
            "prompt {prompt_index} has token id {bad}, beyond the vocabulary ({vocab})"
        )));
    }
    let n = req.n_per_prompt;
    let key = prompt_key(prompt);
    let mut rs: Vec<Running> = (0..n)
        .map(|i| Running {
            sampler: Sampler::new(req.params.clone(), req.seed, key, i as u64),
            tokens: Vec::new(),
            logprobs: Vec::new(),
            finish: None,
            cut_text: None,
        })
        .collect();
    if n > 0 && req.max_new_tokens == 0 {
        for r in &mut rs {
            r.finish = Some(FinishReason::Length);
        }
    }
    if n > 0 && req.max_new_tokens > 0 {
        let device = model.device();
        let capacity = prompt.len() + req.max_new_tokens;
        let mut cache = model.new_cache(capacity);
        let input = Tensor::new(prompt, device)?.unsqueeze(0)?;
        let first = model.forward_logits(&input, &mut cache)?.to_vec2::<f32>()?;
        let mut cache = cache.broadcast(n, capacity)?;
        // Rows of the batch, in cache order: indices into `rs` of the running rollouts.
        let mut active: Vec<usize> = (0..n).collect();
        let mut logits: Vec<Vec<f32>> = vec![first[0].clone(); n];
        loop {
            for (row, &i) in active.iter().enumerate() {
                step(&mut rs[i], &logits[row], tok, req, stop_ids)?;
            }
            let keep: Vec<u32> = (0..active.len() as u32)
                .filter(|&row| rs[active[row as usize]].finish.is_none())
                .collect();
            if keep.is_empty() {
                break;
            }
            if keep.len() < active.len() {
                cache.select_rows(&keep)?;
                active = keep.iter().map(|&row| active[row as usize]).collect();
            }
            let last: Vec<u32> = active
                .iter()
                .map(|&i| rs[i].tokens.last().copied().unwrap_or(0))
                .collect();
            let input = Tensor::new(last.as_slice(), device)?.unsqueeze(1)?;
            logits = model.forward_logits(&input, &mut cache)?.to_vec2::<f32>()?;
        }
    }
    rs.into_iter()
        .enumerate()
        .map(|(index, r)| {
            let text = match r.cut_text {
                Some(t) => t,
                None => tok.decode(&r.tokens)?,
            };
            Ok(Rollout {
                prompt_index,
                index,
                tokens: r.tokens,
                logprobs: r.logprobs,
                text,
                finish: r.finish.unwrap_or(FinishReason::Length),
            })
        })
        .collect()
}

/// Sample one token for a running rollout and decide whether it stops.
fn step(
    r: &mut Running,
    logits: &[f32],
    tok: &Tok,
    req: &GenerateRequest,
    stop_ids: &[u32],
) -> crate::Result<()> {
    let (t, lp) = r.sampler.sample(logits, &r.tokens);
    r.tokens.push(t);
    r.logprobs.push(lp);
    if stop_ids.binary_search(&t).is_ok() {
        r.finish = Some(FinishReason::Eos);
        return Ok(());
    }
    if !req.stop_strings.is_empty() {
        let text = tok.decode(&r.tokens)?;
        let hit = req
            .stop_strings
            .iter()
            .filter(|s| !s.is_empty())
            .filter_map(|s| text.find(s.as_str()))
            .min();
        if let Some(pos) = hit {
            r.cut_text = Some(text[..pos].to_string());
            r.finish = Some(FinishReason::StopString);
            return Ok(());
        }
    }
    if r.tokens.len() >= req.max_new_tokens {
        r.finish = Some(FinishReason::Length);
    }
    Ok(())
}
