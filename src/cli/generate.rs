//! `runner generate`: a quick look at what a model (optionally with a trained adapter) says.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;

use crate::engine::chat::{self, Message};
use crate::engine::generate::{generate, GenerateRequest};
use crate::engine::load::{load, LoadOptions};
use crate::engine::peft;
use crate::engine::sample::SamplingParams;

pub use super::runtime::DtypeArg;
use super::runtime::Runtime;

/// Arguments of `runner generate`.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
    runner generate --model smollm2-135m-instruct --prompt 'What is the capital of France?' --temperature 0\n  \
    runner generate --model smollm2-135m-instruct --adapter runs/exp1/adapter --prompt 'Oi!' -n 4 --json")]
pub struct Args {
    /// Model: a known name (`runner models list`), an HF model directory, a .gguf file or an HF
    /// hub id.
    #[arg(long, default_value = "smollm2-135m-instruct")]
    pub model: String,
    /// A trained LoRA adapter directory (PEFT format) to apply on top of the model.
    #[arg(long, value_name = "DIR")]
    pub adapter: Option<PathBuf>,
    /// The user message (or, with --raw, the exact prompt text).
    #[arg(long)]
    pub prompt: String,
    /// A system message placed before the user message.
    #[arg(long, conflicts_with = "raw")]
    pub system: Option<String>,
    /// Feed the prompt as is, without the chat template.
    #[arg(long)]
    pub raw: bool,
    /// For templates with a thinking switch (Qwen3): turn thinking on or off.
    #[arg(long, value_name = "BOOL")]
    pub thinking: Option<bool>,
    /// Number of completions.
    #[arg(short = 'n', long = "num", default_value_t = 1)]
    pub n: usize,
    #[arg(long, default_value_t = 256)]
    pub max_new_tokens: usize,
    /// Sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.7)]
    pub temperature: f32,
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    /// 0 disables top-k.
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    #[arg(long, default_value_t = 0.0)]
    pub min_p: f32,
    #[arg(long, default_value_t = 1.0)]
    pub repetition_penalty: f32,
    /// Stop when the completion contains this text (repeatable).
    #[arg(long = "stop", value_name = "TEXT")]
    pub stop: Vec<String>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    pub runtime: Runtime,
    /// Print one JSON object per completion (text, token count, finish reason).
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    let (dtype, dev) = args.runtime.setup()?;
    let params = SamplingParams {
        temperature: args.temperature,
        top_p: args.top_p,
        top_k: args.top_k,
        min_p: args.min_p,
        repetition_penalty: args.repetition_penalty,
    };
    params.validate()?;
    anyhow::ensure!(args.n > 0, "-n must be at least 1");

    let started = Instant::now();
    let opts = LoadOptions {
        dtype,
        device: dev,
        lora: None,
    };
    let mut loaded = load(&args.model, &opts).with_context(|| format!("loading {}", args.model))?;
    if let Some(dir) = &args.adapter {
        peft::load_adapter(&mut loaded.model, dir)
            .with_context(|| format!("loading adapter {}", dir.display()))?;
    }
    let load_s = started.elapsed().as_secs_f64();

    let prompt_text = if args.raw {
        args.prompt.clone()
    } else {
        let mut messages = Vec::new();
        if let Some(s) = &args.system {
            messages.push(Message::new("system", s.as_str()));
        }
        messages.push(Message::new("user", args.prompt.as_str()));
        chat::render(&loaded.tokenizer, &messages, true, args.thinking)?
    };
    let prompt_ids = loaded.tokenizer.encode(&prompt_text)?;

    let req = GenerateRequest {
        prompts: vec![prompt_ids.clone()],
        n_per_prompt: args.n,
        params,
        max_new_tokens: args.max_new_tokens,
        stop_token_ids: Vec::new(),
        stop_strings: args.stop.clone(),
        seed: args.seed,
    };
    let gen_started = Instant::now();
    let rollouts = generate(&loaded.model, &loaded.tokenizer, &req)?;
    let gen_s = gen_started.elapsed().as_secs_f64();
    let n_tokens: usize = rollouts.iter().map(|r| r.tokens.len()).sum();

    for r in &rollouts {
        if args.json {
            let obj = serde_json::json!({
                "index": r.index,
                "text": r.text,
                "num_tokens": r.tokens.len(),
                "finish": r.finish,
                "sum_logprob": r.logprobs.iter().map(|&l| f64::from(l)).sum::<f64>(),
            });
            println!("{obj}");
        } else {
            if rollouts.len() > 1 {
                println!(
                    "--- completion {} ({} tokens, {:?}) ---",
                    r.index,
                    r.tokens.len(),
                    r.finish
                );
            }
            println!("{}", r.text);
        }
    }
    eprintln!(
        "[{} prompt tokens; {n_tokens} generated in {gen_s:.2} s ({:.1} tok/s); load {load_s:.2} s]",
        prompt_ids.len(),
        n_tokens as f64 / gen_s.max(1e-9)
    );
    Ok(0)
}
