//! Decode and training throughput, each beside the physical bound of this machine.
//!
//! The bounds come from two measurements taken in the same run: memory bandwidth (a parallel
//! read of a buffer much larger than the caches) and f32 matmul throughput (a candle matmul).
//! A decode step must read every weight once (bytes / bandwidth) and do `2 · params · batch`
//! FLOPs (FLOPs / matmul rate): the step cannot be faster than the larger of the two.
//!
//! Training FLOPs, for LoRA with frozen base weights (documented estimate):
//! forward `2·P·N`; backward computes only the activation gradients through frozen matmuls,
//! another `2·P·N` (no `2·P·N` weight gradients, unlike full fine-tuning's `6·P·N`); attention
//! scores and weighted sums `4·L·B·T²·H·hd` forward and twice that backward; LoRA adapters
//! `6·r·(in+out)·N` per targeted module. `P` counts the linear weights including the LM head,
//! `N = B·T` tokens.

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

use super::chat::{self, Message};
use super::generate::{generate, GenerateRequest};
use super::load::{load, LoadOptions};
use super::model::{Config, LoraConfig, TrainBatch};
use super::sample::SamplingParams;
use crate::{Error, Result};

/// Machine figures the bounds are computed from.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MachineFigures {
    /// Parallel read bandwidth, GB/s (10⁹ bytes).
    pub memory_bandwidth_gb_s: f64,
    /// f32 matmul throughput on a `size`³ product, GFLOP/s.
    pub matmul_gflop_s: f64,
    pub matmul_size: usize,
    pub threads: usize,
}

/// Measure bandwidth and matmul throughput (best of a few runs each).
pub fn measure_machine(device: &Device) -> Result<MachineFigures> {
    Ok(MachineFigures {
        memory_bandwidth_gb_s: memory_bandwidth_gb_s(),
        matmul_gflop_s: matmul_gflop_s(device, 2048)?,
        matmul_size: 2048,
        threads: super::device::threads(),
    })
}

/// Best of 5 parallel sums over a 512 MiB buffer (well beyond any cache).
pub fn memory_bandwidth_gb_s() -> f64 {
    read_bandwidth_gb_s(512 << 20)
}

/// Best of 5 parallel sums over a buffer of `bytes` bytes, in GB/s.
pub fn read_bandwidth_gb_s(bytes: usize) -> f64 {
    let n = (bytes / 4).max(4);
    let buf: Vec<f32> = (0..n).into_par_iter().map(|i| (i & 7) as f32).collect();
    let mut best = f64::INFINITY;
    let mut sink = 0.0f32;
    for _ in 0..5 {
        let t = Instant::now();
        let s: f32 = buf
            .par_chunks(1 << 16)
            .map(|c| {
                // Four independent accumulators so the adds do not serialise.
                let mut acc = [0.0f32; 4];
                for q in c.chunks_exact(4) {
                    for k in 0..4 {
                        acc[k] += q[k];
                    }
                }
                acc.iter().sum::<f32>()
            })
            .sum();
        best = best.min(t.elapsed().as_secs_f64());
        sink += s;
    }
    std::hint::black_box(sink);
    (n * 4) as f64 / best / 1e9
}

/// Best of 3 `size`³ f32 matmuls, in GFLOP/s (`2·size³` FLOPs each).
pub fn matmul_gflop_s(device: &Device, size: usize) -> Result<f64> {
    let a = Tensor::randn(0f32, 1.0, (size, size), device)?;
    let b = Tensor::randn(0f32, 1.0, (size, size), device)?;
    a.matmul(&b)?.sum_all()?.to_scalar::<f32>()?; // warm-up
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let t = Instant::now();
        let c = a.matmul(&b)?;
        device.synchronize()?;
        best = best.min(t.elapsed().as_secs_f64());
        std::hint::black_box(c);
    }
    Ok(2.0 * (size as f64).powi(3) / best / 1e9)
}

/// Parameters of the linear layers (attention, MLP) of all blocks, and of the LM head.
pub fn linear_params(c: &Config) -> (u64, u64) {
    let d = c.hidden_size as u64;
    let q = (c.num_attention_heads * c.head_dim) as u64;
    let kv = (c.num_key_value_heads * c.head_dim) as u64;
    let ff = c.intermediate_size as u64;
    let per_layer = d * q + 2 * d * kv + q * d + 3 * d * ff;
    (
        per_layer * c.num_hidden_layers as u64,
        c.vocab_size as u64 * d,
    )
}

fn dtype_bytes(dtype: DType) -> u64 {
    dtype.size_in_bytes() as u64
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

/// Peak resident memory of this process (Linux `VmHWM`), in MB.
pub fn peak_rss_mb() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Settings of a decode benchmark.
#[derive(Debug, Clone)]
pub struct DecodeSettings {
    pub model: String,
    pub batch: usize,
    pub new_tokens: usize,
    pub dtype: DType,
    pub device: Device,
    pub prompt: String,
    pub seed: u64,
}

/// Result of a decode benchmark.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DecodeReport {
    pub bench: &'static str,
    pub model: String,
    pub dtype: String,
    pub batch: usize,
    pub prompt_tokens: usize,
    pub new_tokens: usize,
    /// Prefill of the prompt plus the first sampled token of every rollout, seconds.
    pub prefill_s: f64,
    /// Wall time of the remaining `new_tokens - 1` decode steps, seconds.
    pub decode_s: f64,
    /// Generated tokens (all rollouts) per second of decode.
    pub decode_tok_s: f64,
    pub ms_per_step: f64,
    /// End-to-end: all generated tokens / (prefill + decode).
    pub total_tok_s: f64,
    pub weight_bytes_per_step: u64,
    pub kv_bytes_per_step: u64,
    pub flops_per_step: f64,
    /// Tokens/s if each step only had to read its bytes at the measured bandwidth.
    pub bandwidth_bound_tok_s: f64,
    /// Tokens/s if each step only had to do its FLOPs at the measured matmul rate.
    pub compute_bound_tok_s: f64,
    /// The binding one of the two (the smaller).
    pub bound_tok_s: f64,
    /// `decode_tok_s / bound_tok_s`.
    pub fraction_of_bound: f64,
    pub machine: MachineFigures,
    pub peak_rss_mb: Option<f64>,
}

/// Generate a group of `batch` rollouts of one chat prompt for exactly `new_tokens` tokens each
/// (stop tokens disabled). Prefill is timed by a run with one new token; decode throughput is
/// the extra time of the full run over it.
pub fn decode(s: &DecodeSettings) -> Result<DecodeReport> {
    if s.batch == 0 || s.new_tokens < 2 {
        return Err(Error::Other(
            "bench decode needs --batch ≥ 1 and --new-tokens ≥ 2".into(),
        ));
    }
    let opts = LoadOptions {
        dtype: s.dtype,
        device: s.device.clone(),
        lora: None,
    };
    let mut lm = load(&s.model, &opts)?;
    // Every rollout runs the full length: no stop tokens.
    lm.tokenizer.eos_ids.clear();
    lm.model.config.eos_token_ids.clear();
    let text = chat::render(
        &lm.tokenizer,
        &[Message::new("user", s.prompt.as_str())],
        true,
        None,
    )?;
    let prompt = lm.tokenizer.encode(&text)?;
    let req = |new_tokens: usize| GenerateRequest {
        prompts: vec![prompt.clone()],
        n_per_prompt: s.batch,
        params: SamplingParams::default(),
        max_new_tokens: new_tokens,
        stop_token_ids: Vec::new(),
        stop_strings: Vec::new(),
        seed: s.seed,
    };
    let timed = |new_tokens: usize| -> Result<(f64, usize)> {
        let t = Instant::now();
        let out = generate(&lm.model, &lm.tokenizer, &req(new_tokens))?;
        Ok((
            t.elapsed().as_secs_f64(),
            out.iter().map(|r| r.tokens.len()).sum(),
        ))
    };
    timed(4)?; // warm-up: thread pool, allocator, caches
    let (prefill_s, _) = timed(1)?;
    let (total_s, generated) = timed(s.new_tokens)?;
    if generated != s.batch * s.new_tokens {
        return Err(Error::Other(format!(
            "bench decode: expected {} tokens, generation returned {generated}",
            s.batch * s.new_tokens
        )));
    }
    let decode_s = (total_s - prefill_s).max(1e-9);
    let steps = (s.new_tokens - 1) as f64;
    let decode_tok_s = s.batch as f64 * steps / decode_s;

    let machine = measure_machine(&s.device)?;
    let c = &lm.model.config;
    let (blocks, head) = linear_params(c);
    let bytes = dtype_bytes(s.dtype);
    let weight_bytes = (blocks + head) * bytes;
    // K and V of every layer over the mean context of the decode, for every rollout.
    let mean_ctx = (prompt.len() + s.new_tokens / 2) as u64;
    let kv_width = (c.num_key_value_heads * c.head_dim) as u64;
    let kv_bytes = 2 * c.num_hidden_layers as u64 * kv_width * mean_ctx * s.batch as u64 * bytes;
    let attn_flops = 4.0
        * c.num_hidden_layers as f64
        * (c.num_attention_heads * c.head_dim) as f64
        * mean_ctx as f64
        * s.batch as f64;
    let flops = 2.0 * (blocks + head) as f64 * s.batch as f64 + attn_flops;
    let step_bw = (weight_bytes + kv_bytes) as f64 / (machine.memory_bandwidth_gb_s * 1e9);
    let step_fl = flops / (machine.matmul_gflop_s * 1e9);
    let bandwidth_bound = s.batch as f64 / step_bw;
    let compute_bound = s.batch as f64 / step_fl;
    let bound = bandwidth_bound.min(compute_bound);
    Ok(DecodeReport {
        bench: "decode",
        model: s.model.clone(),
        dtype: format!("{:?}", s.dtype).to_lowercase(),
        batch: s.batch,
        prompt_tokens: prompt.len(),
        new_tokens: s.new_tokens,
        prefill_s,
        decode_s,
        decode_tok_s,
        ms_per_step: decode_s / steps * 1e3,
        total_tok_s: generated as f64 / total_s,
        weight_bytes_per_step: weight_bytes,
        kv_bytes_per_step: kv_bytes,
        flops_per_step: flops,
        bandwidth_bound_tok_s: bandwidth_bound,
        compute_bound_tok_s: compute_bound,
        bound_tok_s: bound,
        fraction_of_bound: decode_tok_s / bound,
        machine,
        peak_rss_mb: peak_rss_mb(),
    })
}

/// Settings of a training-step benchmark.
#[derive(Debug, Clone)]
pub struct TrainSettings {
    pub model: String,
    pub batch: usize,
    pub seq_len: usize,
    pub lora: LoraConfig,
    pub dtype: DType,
    pub device: Device,
    /// Measured steps after one warm-up step.
    pub steps: usize,
    /// Leading tokens of each sequence treated as prompt (mask 0); the rest is completion.
    pub prompt_len: usize,
    pub seed: u64,
}

/// Result of a training-step benchmark.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TrainReport {
    pub bench: &'static str,
    pub model: String,
    pub dtype: String,
    pub batch: usize,
    pub seq_len: usize,
    pub lora_r: usize,
    pub targets: Vec<String>,
    pub trainable_params: usize,
    /// Median seconds of forward (masked-mean token log-probs) + backward.
    pub step_s: f64,
    pub forward_s: f64,
    pub backward_s: f64,
    pub steps_s: Vec<f64>,
    /// `batch · seq_len / step_s`.
    pub tok_s: f64,
    /// Estimated FLOPs of one step (see the module docs).
    pub flops_per_step: f64,
    /// Seconds the FLOPs take at the measured matmul rate.
    pub compute_bound_s: f64,
    pub fraction_of_bound: f64,
    pub machine: MachineFigures,
    pub peak_rss_mb: Option<f64>,
}

/// Forward + backward of the masked-mean token log-prob loss with LoRA on random token
/// batches; median over `steps` after a warm-up.
pub fn train(s: &TrainSettings) -> Result<TrainReport> {
    if s.batch == 0 || s.seq_len < 2 || s.prompt_len + 1 >= s.seq_len || s.steps == 0 {
        return Err(Error::Other(
            "bench train needs --batch ≥ 1, --steps ≥ 1 and --seq-len > prompt length + 1".into(),
        ));
    }
    let targets = s.lora.targets()?;
    let opts = LoadOptions {
        dtype: s.dtype,
        device: s.device.clone(),
        lora: Some(s.lora.clone()),
    };
    let lm = load(&s.model, &opts)?;
    let model = &lm.model;
    let vars = model.trainable_vars();
    if vars.is_empty() {
        return Err(Error::Model("the model has no trainable parameters".into()));
    }
    let trainable_params: usize = vars.iter().map(|v| v.elem_count()).sum();
    let vocab = model.config.vocab_size as u32;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(s.seed);
    let (b, t) = (s.batch, s.seq_len);
    let mask: Vec<f32> = (0..b * t)
        .map(|i| if i % t >= s.prompt_len { 1.0 } else { 0.0 })
        .collect();
    let completion_mask = Tensor::from_vec(mask, (b, t), &s.device)?;
    let mask_next = completion_mask.narrow(1, 1, t - 1)?;
    let n_counted = mask_next.sum_all()?.to_scalar::<f32>()? as f64;

    let mut fwd = Vec::new();
    let mut bwd = Vec::new();
    for step in 0..=s.steps {
        let ids: Vec<u32> = (0..b * t).map(|_| rng.random_range(0..vocab)).collect();
        let batch = TrainBatch {
            input_ids: Tensor::from_vec(ids, (b, t), &s.device)?,
            completion_mask: completion_mask.clone(),
        };
        let t0 = Instant::now();
        let lp = model.token_logprobs_masked_at(&batch, 1.0)?;
        let loss = ((lp * &mask_next)?.sum_all()? / -n_counted)?;
        loss.to_scalar::<f32>()?; // forces the forward on lazy devices
        let t1 = Instant::now();
        let grads = loss.backward()?;
        s.device.synchronize()?;
        let t2 = Instant::now();
        let missing = vars
            .iter()
            .filter(|v| grads.get(v.as_tensor()).is_none())
            .count();
        if missing > 0 {
            return Err(Error::Model(format!(
                "backward left {missing} of {} trainable tensors without a gradient",
                vars.len()
            )));
        }
        if step > 0 {
            fwd.push((t1 - t0).as_secs_f64());
            bwd.push((t2 - t1).as_secs_f64());
        }
    }
    let steps_s: Vec<f64> = fwd.iter().zip(&bwd).map(|(f, b)| f + b).collect();
    let step_s = median(steps_s.clone());

    let machine = measure_machine(&s.device)?;
    let c = &model.config;
    let (blocks, head) = linear_params(c);
    let n = (b * t) as f64;
    let attn_fwd = 4.0
        * c.num_hidden_layers as f64
        * b as f64
        * (t * t) as f64
        * (c.num_attention_heads * c.head_dim) as f64;
    let lora_flops: f64 = targets
        .iter()
        .map(|m| {
            let (i, o) = module_shape(c, m);
            6.0 * s.lora.r as f64 * (i + o) as f64 * n * c.num_hidden_layers as f64
        })
        .sum();
    let flops = 4.0 * (blocks + head) as f64 * n + 3.0 * attn_fwd + lora_flops;
    let compute_bound_s = flops / (machine.matmul_gflop_s * 1e9);
    Ok(TrainReport {
        bench: "train",
        model: s.model.clone(),
        dtype: format!("{:?}", s.dtype).to_lowercase(),
        batch: b,
        seq_len: t,
        lora_r: s.lora.r,
        targets,
        trainable_params,
        step_s,
        forward_s: median(fwd),
        backward_s: median(bwd),
        steps_s,
        tok_s: n / step_s,
        flops_per_step: flops,
        compute_bound_s,
        fraction_of_bound: compute_bound_s / step_s,
        machine,
        peak_rss_mb: peak_rss_mb(),
    })
}

/// Settings of a GRPO-step benchmark.
#[derive(Debug, Clone)]
pub struct GrpoSettings {
    pub model: String,
    /// Rollouts of the one prompt (the group size G, also the micro-batch).
    pub rollouts: usize,
    /// Tokens per rollout (stop tokens disabled, every rollout runs the full length).
    pub new_tokens: usize,
    pub lora: LoraConfig,
    pub dtype: DType,
    pub device: Device,
    pub prompt: String,
    /// Measured steps after one warm-up step.
    pub steps: usize,
    pub seed: u64,
}

/// Seconds of each phase of one GRPO step.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct GrpoPhases {
    /// Batched decode of the group (prefill + `new_tokens` steps).
    pub generation_s: f64,
    /// Per-token log-probs of prompt+completion with LoRA, plus the policy loss.
    pub forward_s: f64,
    pub backward_s: f64,
    /// Gradient clipping + AdamW update.
    pub optimizer_s: f64,
    pub total_s: f64,
}

/// Result of a GRPO-step benchmark.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GrpoReport {
    pub bench: &'static str,
    pub model: String,
    pub dtype: String,
    pub rollouts: usize,
    pub prompt_tokens: usize,
    pub new_tokens: usize,
    pub lora_r: usize,
    pub targets: Vec<String>,
    pub threads: usize,
    /// The first step (thread pool, allocator and caches warming up).
    pub warmup: GrpoPhases,
    /// Every measured step.
    pub steps: Vec<GrpoPhases>,
    /// Per-phase medians over the measured steps.
    pub median: GrpoPhases,
    pub peak_rss_mb: Option<f64>,
}

/// One GRPO step as the trainer takes it, timed per phase: the group generated in one batched
/// decode, fixed random rewards turned into group advantages (TRL: `(r − mean) / (std + 1e-4)`),
/// the loss (`grpo` aggregation, β = 0, μ = 1 so the ratio is `exp(logp − detach(logp))` and
/// needs no second forward and no reference forward), backward, gradient clipping at 1.0 and
/// an AdamW update (TRL's defaults: lr 1e-6, betas 0.9/0.999, eps 1e-8, no weight decay).
pub fn grpo(s: &GrpoSettings) -> Result<GrpoReport> {
    use crate::spec::{ImportanceSamplingLevel, LossType};
    use crate::train::loss::{policy_loss, LossConfig, LossInputs};
    use crate::train::optim::{clip_grad_norm, AdamW, AdamWConfig};

    if s.rollouts < 2 || s.new_tokens == 0 || s.steps == 0 {
        return Err(Error::Other(
            "bench grpo needs --rollouts ≥ 2, --new-tokens ≥ 1 and --steps ≥ 1".into(),
        ));
    }
    let targets = s.lora.targets()?;
    let opts = LoadOptions {
        dtype: s.dtype,
        device: s.device.clone(),
        lora: Some(s.lora.clone()),
    };
    let mut lm = load(&s.model, &opts)?;
    lm.tokenizer.eos_ids.clear();
    lm.model.config.eos_token_ids.clear();
    let text = chat::render(
        &lm.tokenizer,
        &[Message::new("user", s.prompt.as_str())],
        true,
        None,
    )?;
    let prompt = lm.tokenizer.encode(&text)?;
    let model = &lm.model;
    let vars = model.trainable_vars();
    if vars.is_empty() {
        return Err(Error::Model("the model has no trainable parameters".into()));
    }
    let mut opt = AdamW::new(
        vars.clone(),
        AdamWConfig {
            lr: 1e-6,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        },
    )?;
    let loss_cfg = LossConfig {
        loss_type: LossType::Grpo,
        level: ImportanceSamplingLevel::Token,
        epsilon_low: 0.2,
        epsilon_high: 0.2,
        beta: 0.0,
        max_completion_length: s.new_tokens,
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(s.seed);
    let (g, p) = (s.rollouts, prompt.len());
    let t = p + s.new_tokens;
    let mut all = Vec::with_capacity(s.steps + 1);
    for step in 0..=s.steps {
        // Generation: adapters on, no dropout, as the trainer samples.
        model.set_training(false);
        let t0 = Instant::now();
        let rollouts = generate(
            model,
            &lm.tokenizer,
            &GenerateRequest {
                prompts: vec![prompt.clone()],
                n_per_prompt: g,
                params: SamplingParams::default(),
                max_new_tokens: s.new_tokens,
                stop_token_ids: Vec::new(),
                stop_strings: Vec::new(),
                seed: s.seed.wrapping_add(step as u64),
            },
        )?;
        let t1 = Instant::now();
        if rollouts.iter().any(|r| r.tokens.len() != s.new_tokens) {
            return Err(Error::Other(
                "bench grpo: a rollout ended before --new-tokens".into(),
            ));
        }
        // Rewards and group advantages (not timed: the reward functions are the user's).
        let rewards: Vec<f64> = (0..g).map(|_| rng.random_range(0.0..1.0)).collect();
        let mean = rewards.iter().sum::<f64>() / g as f64;
        let std = (rewards.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (g - 1) as f64).sqrt();
        let adv: Vec<f32> = rewards
            .iter()
            .map(|r| ((r - mean) / (std + 1e-4)) as f32)
            .collect();
        let mut ids = Vec::with_capacity(g * t);
        let mut mask = Vec::with_capacity(g * t);
        for r in &rollouts {
            ids.extend_from_slice(&prompt);
            ids.extend_from_slice(&r.tokens);
            mask.extend((0..t).map(|i| if i >= p { 1.0f32 } else { 0.0 }));
        }
        let completion_mask = Tensor::from_vec(mask, (g, t), &s.device)?;
        let batch = TrainBatch {
            input_ids: Tensor::from_vec(ids, (g, t), &s.device)?,
            completion_mask: completion_mask.clone(),
        };
        let advantages = Tensor::from_vec(adv, g, &s.device)?;
        let mask_next = completion_mask.narrow(1, 1, t - 1)?;

        model.set_training(true);
        let t2 = Instant::now();
        let logp = model.token_logprobs_masked_at(&batch, 1.0)?;
        let out = policy_loss(
            &loss_cfg,
            &LossInputs {
                logp: &logp,
                old_logp: None,
                ref_logp: None,
                advantages: &advantages,
                mask: &mask_next,
                tokens_in_batch: (g * s.new_tokens) as f64,
                num_sequences_in_batch: g as f64,
            },
        )?;
        out.loss.to_scalar::<f32>()?;
        let t3 = Instant::now();
        let mut grads = out.loss.backward()?;
        s.device.synchronize()?;
        let t4 = Instant::now();
        clip_grad_norm(&mut grads, &vars, 1.0)?;
        opt.step(&grads, 1e-6)?;
        s.device.synchronize()?;
        let t5 = Instant::now();
        let secs = |a: Instant, b: Instant| (b - a).as_secs_f64();
        let ph = GrpoPhases {
            generation_s: secs(t0, t1),
            forward_s: secs(t2, t3),
            backward_s: secs(t3, t4),
            optimizer_s: secs(t4, t5),
            total_s: secs(t0, t1) + secs(t2, t5),
        };
        all.push(ph);
    }
    model.set_training(false);
    let warmup = all.remove(0);
    let med = |f: fn(&GrpoPhases) -> f64| median(all.iter().map(f).collect());
    let median_phases = GrpoPhases {
        generation_s: med(|x| x.generation_s),
        forward_s: med(|x| x.forward_s),
        backward_s: med(|x| x.backward_s),
        optimizer_s: med(|x| x.optimizer_s),
        total_s: med(|x| x.total_s),
    };
    Ok(GrpoReport {
        bench: "grpo",
        model: s.model.clone(),
        dtype: format!("{:?}", s.dtype).to_lowercase(),
        rollouts: g,
        prompt_tokens: p,
        new_tokens: s.new_tokens,
        lora_r: s.lora.r,
        targets,
        threads: super::device::threads(),
        warmup,
        steps: all,
        median: median_phases,
        peak_rss_mb: peak_rss_mb(),
    })
}

/// `(in, out)` features of a LoRA target module.
fn module_shape(c: &Config, module: &str) -> (usize, usize) {
    let d = c.hidden_size;
    let q = c.num_attention_heads * c.head_dim;
    let kv = c.num_key_value_heads * c.head_dim;
    let ff = c.intermediate_size;
    match module {
        "q_proj" => (d, q),
        "k_proj" | "v_proj" => (d, kv),
        "o_proj" => (q, d),
        "gate_proj" | "up_proj" => (d, ff),
        "down_proj" => (ff, d),
        _ => (0, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smollm2_linear_params() {
        let c = Config::from_hf_json(
            r#"{"model_type": "llama", "hidden_size": 576, "intermediate_size": 1536,
                "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
                "rms_norm_eps": 1e-5, "rope_theta": 100000.0, "vocab_size": 49152,
                "max_position_embeddings": 8192, "tie_word_embeddings": true}"#,
        )
        .unwrap();
        let (blocks, head) = linear_params(&c);
        // 30 · (576² + 2·576·192 + 576² + 3·576·1536) and 49152 · 576.
        assert_eq!(blocks, 106_168_320);
        assert_eq!(head, 28_311_552);
        assert_eq!(module_shape(&c, "v_proj"), (576, 192));
    }

    #[test]
    fn median_of_even_and_odd() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
    }

    #[test]
    fn machine_measurements_are_positive() {
        let bw = read_bandwidth_gb_s(16 << 20);
        assert!(bw.is_finite() && bw > 0.1, "{bw}");
        let gf = matmul_gflop_s(&Device::Cpu, 256).unwrap();
        assert!(gf.is_finite() && gf > 0.1, "{gf}");
    }
}
