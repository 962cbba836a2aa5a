//! `runner export`: write a model (optionally with a PEFT adapter merged in) as an HF model
//! directory: `config.json`, `model.safetensors` (HF tensor names), `tokenizer.json`,
//! `tokenizer_config.json` and `generation_config.json`.

use std::path::PathBuf;

use anyhow::{bail, Context};
use candle_core::DType;

use crate::engine::{load, peft};

/// Arguments of `runner export`.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Example:\n  runner export --model smollm2-135m-instruct \
    --adapter runs/grpo/train/adapter --out exported/smollm2-grpo --merge\n\n\
    The output loads with transformers' AutoModelForCausalLM.from_pretrained(OUT) and with\n\
    `runner generate --model OUT`."
)]
pub struct Args {
    /// Base model: HF directory, .gguf file, known model name or HF hub id.
    #[arg(long)]
    pub model: String,
    /// PEFT adapter directory (adapter_config.json + adapter_model.safetensors).
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// Output directory (created; existing model files in it are replaced).
    #[arg(long)]
    pub out: PathBuf,
    /// Merge the adapter into the base weights (W + alpha/r · B A).
    #[arg(long)]
    pub merge: bool,
    /// Dtype of the written weights: f32 or bf16.
    #[arg(long, default_value = "f32")]
    pub dtype: String,
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    let (dtype, dtype_name) = match args.dtype.as_str() {
        "f32" => (DType::F32, "float32"),
        "bf16" => (DType::BF16, "bfloat16"),
        other => bail!("--dtype {other}: expected f32 or bf16"),
    };
    if args.adapter.is_some() && !args.merge {
        bail!(
            "an adapter is already in PEFT's format; pass --merge to write a merged model \
             (or copy the adapter directory as it is)"
        );
    }
    let opts = load::LoadOptions::default();
    let mut lm = load::load(&args.model, &opts)
        .with_context(|| format!("loading model `{}`", args.model))?;
    if let Some(dir) = &args.adapter {
        peft::load_adapter(&mut lm.model, dir)
            .with_context(|| format!("loading adapter {}", dir.display()))?;
    }
    let out = &args.out;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let weights = lm.model.hf_weights(args.merge, dtype)?;
    peft::write_safetensors(&out.join("model.safetensors"), &weights)?;
    let config = lm.model.config.to_hf_json(dtype_name);
    peft::write_atomic(
        &out.join("config.json"),
        serde_json::to_string_pretty(&config)?.as_bytes(),
    )?;
    let tok = &lm.tokenizer;
    let tj = tok
        .inner
        .to_string(true)
        .map_err(|e| anyhow::anyhow!("serialising the tokenizer: {e}"))?;
    peft::write_atomic(&out.join("tokenizer.json"), tj.as_bytes())?;
    let mut tc = serde_json::json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": lm.model.config.max_position_embeddings,
    });
    if let Some(t) = &tok.chat_template {
        tc["chat_template"] = serde_json::json!(t);
    }
    if let Some(t) = &tok.eos_token {
        tc["eos_token"] = serde_json::json!(t);
    }
    if let Some(t) = &tok.bos_token {
        tc["bos_token"] = serde_json::json!(t);
    }
    peft::write_atomic(
        &out.join("tokenizer_config.json"),
        serde_json::to_string_pretty(&tc)?.as_bytes(),
    )?;
    let gen = serde_json::json!({
        "bos_token_id": lm.model.config.bos_token_id,
        "eos_token_id": tok.eos_ids,
    });
    peft::write_atomic(
        &out.join("generation_config.json"),
        serde_json::to_string_pretty(&gen)?.as_bytes(),
    )?;
    println!(
        "wrote {} ({} tensors{})",
        out.display(),
        weights.len(),
        if args.adapter.is_some() {
            ", adapter merged"
        } else {
            ""
        }
    );
    Ok(0)
}
