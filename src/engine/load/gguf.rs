//! GGUF files: metadata → `Config`, tensors dequantized and renamed to HF names, Q/K rows
//! un-permuted from GGML's interleaved RoPE layout (llama.cpp's converter permutes them for
//! the Llama architecture only).

use std::collections::HashMap;
use std::path::Path;

use candle_core::quantized::gguf_file;
use candle_core::{Device, Tensor};

use crate::engine::model::{Arch, Config};

/// A GGUF file's metadata and its tensors under HF names (f32, on the CPU).
pub struct GgufWeights {
    pub content: gguf_file::Content,
    pub config: Config,
    pub tensors: HashMap<String, Tensor>,
}

/// Read `path`: parse metadata, dequantize every tensor to f32.
pub fn read(path: &Path) -> crate::Result<GgufWeights> {
    let mut file = std::fs::File::open(path).map_err(|e| crate::Error::io(path, e))?;
    let content = gguf_file::Content::read(&mut file).map_err(|e| {
        crate::Error::Model(format!("{}: not a readable GGUF file: {e}", path.display()))
    })?;
    let embd = content
        .tensor_infos
        .get("token_embd.weight")
        .ok_or_else(|| {
            crate::Error::Model(format!("{}: no token_embd.weight tensor", path.display()))
        })?;
    let vocab_size = *embd.shape.dims().first().ok_or_else(|| {
        crate::Error::Model(format!(
            "{}: token_embd.weight has no dimensions",
            path.display()
        ))
    })?;
    let tied = !content.tensor_infos.contains_key("output.weight");
    let config = Config::from_gguf(&content, vocab_size, tied)?;
    let mut tensors = HashMap::new();
    let names: Vec<String> = content.tensor_infos.keys().cloned().collect();
    for name in names {
        let Some(hf) = hf_name(&name) else {
            continue; // e.g. rope_freqs: not a weight of this family
        };
        let t = content
            .tensor(&mut file, &name, &Device::Cpu)
            .and_then(|q| q.dequantize(&Device::Cpu))
            .map_err(|e| crate::Error::Model(format!("{}: tensor {name}: {e}", path.display())))?;
        let t = if config.arch == Arch::Llama {
            if name.ends_with("attn_q.weight") || name.ends_with("attn_q.bias") {
                unpermute(&t, config.num_attention_heads)?
            } else if name.ends_with("attn_k.weight") || name.ends_with("attn_k.bias") {
                unpermute(&t, config.num_key_value_heads)?
            } else {
                t
            }
        } else {
            t
        };
        tensors.insert(hf, t);
    }
    Ok(GgufWeights {
        content,
        config,
        tensors,
    })
}

/// GGUF tensor name → HF name (`None` for tensors the family does not use).
pub fn hf_name(gguf: &str) -> Option<String> {
    match gguf {
        "token_embd.weight" => return Some("model.embed_tokens.weight".into()),
        "output_norm.weight" => return Some("model.norm.weight".into()),
        "output.weight" => return Some("lm_head.weight".into()),
        _ => {}
    }
    let rest = gguf.strip_prefix("blk.")?;
    let (layer, rest) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (module, kind) = rest.rsplit_once('.')?;
    let hf_module = match module {
        "attn_norm" => "input_layernorm",
        "ffn_norm" => "post_attention_layernorm",
        "attn_q" => "self_attn.q_proj",
        "attn_k" => "self_attn.k_proj",
        "attn_v" => "self_attn.v_proj",
        "attn_output" => "self_attn.o_proj",
        "attn_q_norm" => "self_attn.q_norm",
        "attn_k_norm" => "self_attn.k_norm",
        "ffn_gate" => "mlp.gate_proj",
        "ffn_up" => "mlp.up_proj",
        "ffn_down" => "mlp.down_proj",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{hf_module}.{kind}"))
}

/// Undo llama.cpp's Q/K permutation: rows `(head, 2, half)` were stored as `(head, half, 2)`.
pub fn unpermute(w: &Tensor, n_head: usize) -> crate::Result<Tensor> {
    let dims = w.dims().to_vec();
    let out = dims[0];
    if n_head == 0 || !out.is_multiple_of(2 * n_head) {
        return Err(crate::Error::Model(format!(
            "cannot un-permute a tensor with {out} rows over {n_head} heads"
        )));
    }
    let rest: usize = dims[1..].iter().product();
    Ok(w.reshape((n_head, out / n_head / 2, 2, rest))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape(dims)?)
}

/// llama.cpp's permutation (HF layout → GGUF layout), the inverse of [`unpermute`].
pub fn permute(w: &Tensor, n_head: usize) -> crate::Result<Tensor> {
    let dims = w.dims().to_vec();
    let out = dims[0];
    if n_head == 0 || !out.is_multiple_of(2 * n_head) {
        return Err(crate::Error::Model(format!(
            "cannot permute a tensor with {out} rows over {n_head} heads"
        )));
    }
    let rest: usize = dims[1..].iter().product();
    Ok(w.reshape((n_head, 2, out / n_head / 2, rest))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape(dims)?)
}
