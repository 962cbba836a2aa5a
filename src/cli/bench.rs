//! `runner bench decode|train`: throughput beside this machine's physical bounds.

use crate::cli::runtime::Runtime;
use crate::engine::bench::{self, DecodeSettings, GrpoPhases, GrpoSettings, TrainSettings};
use crate::engine::model::LoraConfig;

/// Arguments of `runner bench`.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples (use a release build for real figures):\n  \
    runner bench decode --model smollm2-135m-instruct --batch 8 --new-tokens 128\n  \
    runner bench train --model smollm2-135m-instruct --batch 8 --seq-len 192 --lora-r 16 --json\n  \
    runner bench grpo --model smollm2-135m-instruct --rollouts 8 --new-tokens 64 --lora-r 16 --targets q_proj,v_proj")]
pub struct Args {
    #[command(subcommand)]
    pub command: BenchCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum BenchCommand {
    /// Decode throughput of a group of rollouts of one prompt (shared prefill, KV cache).
    Decode(DecodeArgs),
    /// Seconds per forward+backward of the LoRA training loss on random token batches.
    Train(TrainArgs),
    /// One GRPO step per phase: batched generation of a group, loss forward, backward, AdamW.
    Grpo(GrpoArgs),
}

/// Settings shared by both benchmarks.
#[derive(clap::Args, Debug)]
pub struct Common {
    /// Model: a known name, an HF model directory, a .gguf file or an HF hub id.
    #[arg(long, default_value = "smollm2-135m-instruct")]
    pub model: String,
    #[command(flatten)]
    pub runtime: Runtime,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct DecodeArgs {
    #[command(flatten)]
    pub common: Common,
    /// Rollouts decoded together.
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Tokens generated per rollout (stop tokens are disabled).
    #[arg(long, default_value_t = 128)]
    pub new_tokens: usize,
    /// The user message (chat-templated).
    #[arg(
        long,
        default_value = "Write a short story about a robot who learns to paint."
    )]
    pub prompt: String,
}

/// The LoRA adapter the training benches attach.
#[derive(clap::Args, Debug)]
pub struct LoraArgs {
    #[arg(long, default_value_t = 16)]
    pub lora_r: usize,
    /// LoRA alpha (default 2·r).
    #[arg(long)]
    pub lora_alpha: Option<f64>,
    /// LoRA target modules, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "q_proj,v_proj")]
    pub targets: Vec<String>,
}

impl LoraArgs {
    /// The adapter settings (no dropout: benches measure the deterministic step).
    fn config(self) -> LoraConfig {
        LoraConfig {
            r: self.lora_r,
            alpha: self.lora_alpha.unwrap_or(2.0 * self.lora_r as f64),
            dropout: 0.0,
            target_modules: self.targets,
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    #[command(flatten)]
    pub common: Common,
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    #[arg(long, default_value_t = 192)]
    pub seq_len: usize,
    #[command(flatten)]
    pub lora: LoraArgs,
    /// Measured steps (after one warm-up step); the median is reported.
    #[arg(long, default_value_t = 3)]
    pub steps: usize,
    /// Leading prompt tokens per sequence excluded from the loss (default: a quarter).
    #[arg(long)]
    pub prompt_len: Option<usize>,
}

#[derive(clap::Args, Debug)]
pub struct GrpoArgs {
    #[command(flatten)]
    pub common: Common,
    /// Rollouts of the prompt (group size; also the training micro-batch).
    #[arg(long, default_value_t = 8)]
    pub rollouts: usize,
    /// Tokens per rollout (stop tokens are disabled).
    #[arg(long, default_value_t = 64)]
    pub new_tokens: usize,
    #[command(flatten)]
    pub lora: LoraArgs,
    /// Measured steps (after one warm-up step); per-phase medians are reported.
    #[arg(long, default_value_t = 3)]
    pub steps: usize,
    /// The user message (chat-templated).
    #[arg(
        long,
        default_value = "Write a short story about a robot who learns to paint."
    )]
    pub prompt: String,
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    match args.command {
        BenchCommand::Decode(a) => decode(a),
        BenchCommand::Train(a) => train(a),
        BenchCommand::Grpo(a) => grpo(a),
    }
}

fn decode(a: DecodeArgs) -> anyhow::Result<i32> {
    let (dtype, dev) = a.common.runtime.setup()?;
    let r = bench::decode(&DecodeSettings {
        model: a.common.model.clone(),
        batch: a.batch,
        new_tokens: a.new_tokens,
        dtype,
        device: dev,
        prompt: a.prompt,
        seed: a.common.seed,
    })?;
    if a.common.json {
        println!("{}", serde_json::to_string(&r)?);
        return Ok(0);
    }
    println!(
        "decode {} ({}), batch {}, {} prompt + {} new tokens, {} threads",
        r.model, r.dtype, r.batch, r.prompt_tokens, r.new_tokens, r.machine.threads
    );
    println!("  prefill (+1st token): {:.3} s", r.prefill_s);
    println!(
        "  decode: {:.1} tok/s ({:.1} ms/step); end to end {:.1} tok/s",
        r.decode_tok_s, r.ms_per_step, r.total_tok_s
    );
    println!(
        "  bound: {:.1} tok/s (bandwidth: {:.0} MB/step at {:.1} GB/s → {:.1} tok/s; \
         compute: {:.2} GFLOP/step at {:.0} GFLOP/s → {:.1} tok/s); {:.0}% of bound",
        r.bound_tok_s,
        (r.weight_bytes_per_step + r.kv_bytes_per_step) as f64 / 1e6,
        r.machine.memory_bandwidth_gb_s,
        r.bandwidth_bound_tok_s,
        r.flops_per_step / 1e9,
        r.machine.matmul_gflop_s,
        r.compute_bound_tok_s,
        100.0 * r.fraction_of_bound
    );
    if let Some(m) = r.peak_rss_mb {
        println!("  peak RSS: {m:.0} MB");
    }
    Ok(0)
}

fn train(a: TrainArgs) -> anyhow::Result<i32> {
    let (dtype, dev) = a.common.runtime.setup()?;
    let r = bench::train(&TrainSettings {
        model: a.common.model.clone(),
        batch: a.batch,
        seq_len: a.seq_len,
        lora: a.lora.config(),
        dtype,
        device: dev,
        steps: a.steps,
        prompt_len: a.prompt_len.unwrap_or(a.seq_len / 4),
        seed: a.common.seed,
    })?;
    if a.common.json {
        println!("{}", serde_json::to_string(&r)?);
        return Ok(0);
    }
    println!(
        "train {} ({}), LoRA r {} on {}, batch {} × {} tokens, {} trainable params, {} threads",
        r.model,
        r.dtype,
        r.lora_r,
        r.targets.join(","),
        r.batch,
        r.seq_len,
        r.trainable_params,
        r.machine.threads
    );
    println!(
        "  forward+backward: {:.3} s/step (forward {:.3} s, backward {:.3} s), {:.0} tok/s",
        r.step_s, r.forward_s, r.backward_s, r.tok_s
    );
    println!(
        "  bound: {:.0} GFLOP/step at {:.0} GFLOP/s → {:.3} s; {:.0}% of bound",
        r.flops_per_step / 1e9,
        r.machine.matmul_gflop_s,
        r.compute_bound_s,
        100.0 * r.fraction_of_bound
    );
    if let Some(m) = r.peak_rss_mb {
        println!("  peak RSS: {m:.0} MB");
    }
    Ok(0)
}

fn grpo(a: GrpoArgs) -> anyhow::Result<i32> {
    let (dtype, dev) = a.common.runtime.setup()?;
    let r = bench::grpo(&GrpoSettings {
        model: a.common.model.clone(),
        rollouts: a.rollouts,
        new_tokens: a.new_tokens,
        lora: a.lora.config(),
        dtype,
        device: dev,
        prompt: a.prompt,
        steps: a.steps,
        seed: a.common.seed,
    })?;
    if a.common.json {
        println!("{}", serde_json::to_string(&r)?);
        return Ok(0);
    }
    println!(
        "grpo step {} ({}), {} rollouts × {} new tokens ({} prompt tokens), LoRA r {} on {}, \
         {} threads",
        r.model,
        r.dtype,
        r.rollouts,
        r.new_tokens,
        r.prompt_tokens,
        r.lora_r,
        r.targets.join(","),
        r.threads
    );
    let show = |what: &str, p: &GrpoPhases| {
        println!(
            "  {what}: total {:.3} s = generation {:.3} + forward {:.3} + backward {:.3} + \
             optimizer {:.3}",
            p.total_s, p.generation_s, p.forward_s, p.backward_s, p.optimizer_s
        )
    };
    show("warm-up step", &r.warmup);
    show(&format!("median of {}", r.steps.len()), &r.median);
    if let Some(m) = r.peak_rss_mb {
        println!("  peak RSS: {m:.0} MB");
    }
    Ok(0)
}
