//! The model engine on candle: one transformer family (Llama, Qwen2, Qwen3) that both samples
//! rollouts (batched, KV cache) and trains (LoRA, ops with a correct backward).
//!
//! - `ops`: hot-path ops with a backward (RMSNorm, causal softmax, RoPE, SwiGLU, frozen linear,
//!   chunked LM-head log-probs).
//! - `model`: config structs mirroring HF `config.json`, the transformer, LoRA, KV cache.
//! - `load`: one loader for HF directories, HF hub ids and GGUF files.
//! - `tokenizer`, `chat`: tokenizers (incl. built from GGUF metadata) and chat templates.
//! - `sample`, `generate`: the sampler and batched group generation.
//! - `peft`: adapters in PEFT's on-disk format.
//! - `assets`: the runner's cache directory and the models it can fetch by name.
//! - `device`: device, dtype and thread/allocator settings.
//! - `bench`: decode and train throughput measurements.

pub mod assets;
pub mod bench;
pub mod chat;
pub mod device;
pub mod generate;
pub mod load;
pub mod model;
pub mod ops;
pub mod peft;
pub mod sample;
pub mod tokenizer;
