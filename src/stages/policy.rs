//! The in-memory policy shared by the stage instances of one `apply` (Resources key
//! [`RESOURCE_KEY`]): loaded on first use from `spec.model`, with fresh LoRA adapters (seeded
//! from `spec.seed`), a PEFT adapter to start from (`adapter.init_from`), or every weight
//! trainable (`adapter.kind: full`); then the run's latest trainer state is restored into it,
//! so a resumed run continues from where training stopped.

use std::sync::Arc;

use candle_core::DType;

use crate::data::Record;
use crate::engine::chat::{self, Message};
use crate::engine::load::{self, LoadOptions};
use crate::engine::model::{LoraConfig, Model};
use crate::engine::tokenizer::Tok;
use crate::run::RunDir;
use crate::spec::{AdapterKind, Dtype, Experiment};
use crate::stages::StageContext;
use crate::{Error, Result};

/// The key the policy is stored under in [`crate::stages::Resources`].
pub const RESOURCE_KEY: &str = "policy";

/// The policy model and its tokenizer.
pub struct Policy {
    pub model: Arc<Model>,
    pub tok: Arc<Tok>,
}

/// The policy, loaded on first use (restoring the run's latest trainer state when it has one).
pub fn policy<'a>(ctx: &'a mut StageContext<'_>) -> Result<&'a mut Policy> {
    if ctx.resources.get_mut::<Policy>(RESOURCE_KEY).is_none() {
        let p = load_policy(ctx.spec, ctx.run_dir)?;
        ctx.events.emit(
            Some(&ctx.instance.id),
            "policy_loaded",
            serde_json::json!({
                "base": ctx.spec.model.base,
                "adapter": ctx.spec.model.adapter.kind,
                "trainable_params": p.model.trainable_vars().iter().map(|v| v.elem_count()).sum::<usize>(),
            }),
        )?;
        ctx.resources.insert(RESOURCE_KEY, p);
    }
    ctx.resources
        .get_mut::<Policy>(RESOURCE_KEY)
        .ok_or_else(|| Error::Run("the policy resource has an unexpected type".into()))
}

/// The spec's base model and tokenizer (`model.base`, dtype, device, threads), no adapter.
pub fn load_base(spec: &Experiment) -> Result<load::LoadedModel> {
    let m = &spec.model;
    crate::engine::device::set_threads(m.threads);
    let device_name = match m.device {
        crate::spec::Device::Cpu => "cpu",
        crate::spec::Device::Cuda => "cuda",
        crate::spec::Device::Auto => "auto",
    };
    let opts = LoadOptions {
        dtype: match m.dtype {
            Dtype::F32 => DType::F32,
            Dtype::Bf16 => DType::BF16,
        },
        device: crate::engine::device::device(device_name)?,
        lora: None,
    };
    load::load(&m.base, &opts)
}

/// Load the policy of `spec` and restore the trainer state of `run` into it.
pub fn load_policy(spec: &Experiment, run: &RunDir) -> Result<Policy> {
    let m = &spec.model;
    let loaded = load_base(spec)?;
    let mut model = loaded.model;
    match m.adapter.kind {
        AdapterKind::Lora => match &m.adapter.init_from {
            Some(dir) => {
                crate::engine::peft::load_adapter(&mut model, std::path::Path::new(dir))?;
            }
            None => model.attach_lora(&lora_config(spec)?, spec.seed)?,
        },
        AdapterKind::Full => model.enable_full_finetune()?,
    }
    crate::train::state::restore_into(run, &mut model)?;
    model.set_training(false);
    Ok(Policy {
        model: Arc::new(model),
        tok: Arc::new(loaded.tokenizer),
    })
}

/// The LoRA settings of `spec.model.adapter`, with PEFT's module names.
pub fn lora_config(spec: &Experiment) -> Result<LoraConfig> {
    let a = &spec.model.adapter;
    let target_modules = a
        .target_modules
        .iter()
        .map(|t| match serde_json::to_value(t)? {
            serde_json::Value::String(s) => Ok(s),
            other => Err(Error::Other(format!("unexpected target module {other}"))),
        })
        .collect::<Result<Vec<String>>>()?;
    Ok(LoraConfig {
        r: a.r,
        alpha: a.lora_alpha,
        dropout: a.lora_dropout,
        target_modules,
    })
}

/// The prompt token ids of `record`: its messages in the model's chat template with the
/// assistant turn opened (`data.prompt.chat_template: true`), or the raw text of the messages
/// joined by blank lines (`false`).
pub fn chat_prompt_ids(p: &Policy, record: &Record, spec: &Experiment) -> Result<Vec<u32>> {
    prompt_ids(&p.tok, &record.messages, spec)
}

/// [`chat_prompt_ids`] for bare messages.
pub fn prompt_ids(tok: &Tok, messages: &[Message], spec: &Experiment) -> Result<Vec<u32>> {
    let text = if spec.data.prompt.chat_template {
        chat::render(tok, messages, true, None)?
    } else {
        messages
            .iter()
            .map(|m| m.content.as_str())
            .collect::<Vec<_>>()
            .join("\n\n")
    };
    let ids = tok.encode(&text)?;
    if ids.is_empty() {
        return Err(Error::Run(
            "a prompt encodes to no tokens (empty prompt text?)".into(),
        ));
    }
    Ok(ids)
}
