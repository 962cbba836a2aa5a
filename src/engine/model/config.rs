//! Model configuration: one `Config` for the Llama / Qwen2 / Qwen3 family, parsed from an HF
//! `config.json` or built from GGUF metadata.

use candle_core::quantized::gguf_file;
use serde::{Deserialize, Serialize};

/// The architecture within the family. The differences are small: Qwen2 has biases on q/k/v,
/// Qwen3 has a per-head RMSNorm on q and k (and an explicit `head_dim`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    Llama,
    Qwen2,
    Qwen3,
}

impl Arch {
    /// HF `model_type`.
    pub fn model_type(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
            Arch::Qwen3 => "qwen3",
        }
    }

    /// HF `architectures[0]`.
    pub fn hf_class(self) -> &'static str {
        match self {
            Arch::Llama => "LlamaForCausalLM",
            Arch::Qwen2 => "Qwen2ForCausalLM",
            Arch::Qwen3 => "Qwen3ForCausalLM",
        }
    }

    fn from_name(name: &str) -> crate::Result<Self> {
        match name {
            "llama" | "mistral" => Ok(Arch::Llama),
            "qwen2" => Ok(Arch::Qwen2),
            "qwen3" => Ok(Arch::Qwen3),
            other => Err(crate::Error::Model(format!(
                "unsupported architecture `{other}` (supported: llama, qwen2, qwen3)"
            ))),
        }
    }
}

/// One `eos_token_id` or several, as HF configs write it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EosIds {
    One(u32),
    Many(Vec<u32>),
}

/// The fields of an HF `config.json` that the family uses (unknown fields are ignored).
#[derive(Debug, Clone, Deserialize)]
pub struct HfConfig {
    pub model_type: String,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: Option<usize>,
    pub head_dim: Option<usize>,
    pub rms_norm_eps: f64,
    pub rope_theta: Option<f64>,
    pub max_position_embeddings: Option<usize>,
    pub vocab_size: usize,
    pub tie_word_embeddings: Option<bool>,
    /// Qwen3 / Llama: biases on q/k/v/o.
    pub attention_bias: Option<bool>,
    pub bos_token_id: Option<u32>,
    pub eos_token_id: Option<EosIds>,
    pub hidden_act: Option<String>,
    /// Rope scaling (e.g. Llama 3's); not supported, rejected when present.
    pub rope_scaling: Option<serde_json::Value>,
}

/// The configuration of a model of the family.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    pub arch: Arch,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub max_position_embeddings: usize,
    pub vocab_size: usize,
    pub tie_word_embeddings: bool,
    /// Biases on q/k/v (Qwen2 always; Llama/Qwen3 when `attention_bias`).
    pub qkv_bias: bool,
    /// Bias on o_proj (Llama/Qwen3 with `attention_bias`).
    pub o_bias: bool,
    /// Per-head RMSNorm on q and k (Qwen3).
    pub qk_norm: bool,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
}

impl Config {
    /// Parse an HF `config.json`.
    pub fn from_hf_json(text: &str) -> crate::Result<Self> {
        let hf: HfConfig = serde_json::from_str(text)
            .map_err(|e| crate::Error::Model(format!("config.json: {e}")))?;
        Self::from_hf(hf)
    }

    /// Build from a parsed HF config, checking what the family supports.
    pub fn from_hf(hf: HfConfig) -> crate::Result<Self> {
        let arch = Arch::from_name(&hf.model_type)?;
        if let Some(act) = &hf.hidden_act {
            if act != "silu" {
                return Err(crate::Error::Model(format!(
                    "hidden_act `{act}` is not supported (only silu)"
                )));
            }
        }
        if let Some(scaling) = &hf.rope_scaling {
            let kind = scaling
                .get("rope_type")
                .or_else(|| scaling.get("type"))
                .and_then(|v| v.as_str());
            if !scaling.is_null() && kind != Some("default") {
                return Err(crate::Error::Model(format!(
                    "rope_scaling {scaling} is not supported"
                )));
            }
        }
        if hf.num_attention_heads == 0 || hf.hidden_size == 0 {
            return Err(crate::Error::Model(
                "config.json: hidden_size and num_attention_heads must be positive".into(),
            ));
        }
        let head_dim = hf
            .head_dim
            .unwrap_or(hf.hidden_size / hf.num_attention_heads);
        let attention_bias = hf.attention_bias.unwrap_or(false);
        let cfg = Config {
            arch,
            hidden_size: hf.hidden_size,
            intermediate_size: hf.intermediate_size,
            num_hidden_layers: hf.num_hidden_layers,
            num_attention_heads: hf.num_attention_heads,
            num_key_value_heads: hf.num_key_value_heads.unwrap_or(hf.num_attention_heads),
            head_dim,
            rms_norm_eps: hf.rms_norm_eps,
            rope_theta: hf.rope_theta.unwrap_or(10_000.0),
            max_position_embeddings: hf.max_position_embeddings.unwrap_or(4096),
            vocab_size: hf.vocab_size,
            tie_word_embeddings: hf.tie_word_embeddings.unwrap_or(false),
            qkv_bias: arch == Arch::Qwen2 || attention_bias,
            o_bias: arch != Arch::Qwen2 && attention_bias,
            qk_norm: arch == Arch::Qwen3,
            bos_token_id: hf.bos_token_id,
            eos_token_ids: match hf.eos_token_id {
                None => Vec::new(),
                Some(EosIds::One(i)) => vec![i],
                Some(EosIds::Many(v)) => v,
            },
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Build from GGUF metadata (`general.architecture` and the `{arch}.*` keys).
    /// `vocab_size` and tied embeddings come from the tensors, so the caller passes them.
    pub fn from_gguf(
        content: &gguf_file::Content,
        vocab_size: usize,
        tie_word_embeddings: bool,
    ) -> crate::Result<Self> {
        let md = &content.metadata;
        let get = |key: &str| {
            md.get(key)
                .ok_or_else(|| crate::Error::Model(format!("GGUF metadata lacks `{key}`")))
        };
        let arch_name = get("general.architecture")?.to_string()?.clone();
        let arch = Arch::from_name(&arch_name)?;
        let a = arch_name.as_str();
        let usize_of = |key: &str| -> crate::Result<usize> {
            let v = get(key)?;
            Ok(v.to_u64().or_else(|_| v.to_u32().map(u64::from))? as usize)
        };
        let f64_of = |key: &str| -> crate::Result<f64> {
            let v = get(key)?;
            Ok(v.to_f64().or_else(|_| v.to_f32().map(f64::from))?)
        };
        let hidden_size = usize_of(&format!("{a}.embedding_length"))?;
        let num_attention_heads = usize_of(&format!("{a}.attention.head_count"))?;
        if num_attention_heads == 0 {
            return Err(crate::Error::Model("GGUF: head_count is 0".into()));
        }
        let num_key_value_heads =
            usize_of(&format!("{a}.attention.head_count_kv")).unwrap_or(num_attention_heads);
        let head_dim = usize_of(&format!("{a}.attention.key_length"))
            .unwrap_or(hidden_size / num_attention_heads);
        let u32_of = |key: &str| md.get(key).and_then(|v| v.to_u32().ok());
        let cfg = Config {
            arch,
            hidden_size,
            intermediate_size: usize_of(&format!("{a}.feed_forward_length"))?,
            num_hidden_layers: usize_of(&format!("{a}.block_count"))?,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            rms_norm_eps: f64_of(&format!("{a}.attention.layer_norm_rms_epsilon"))?,
            rope_theta: f64_of(&format!("{a}.rope.freq_base")).unwrap_or(10_000.0),
            max_position_embeddings: usize_of(&format!("{a}.context_length")).unwrap_or(4096),
            vocab_size,
            tie_word_embeddings,
            qkv_bias: content.tensor_infos.contains_key("blk.0.attn_q.bias"),
            o_bias: content.tensor_infos.contains_key("blk.0.attn_output.bias"),
            qk_norm: arch == Arch::Qwen3,
            bos_token_id: u32_of("tokenizer.ggml.bos_token_id"),
            eos_token_ids: u32_of("tokenizer.ggml.eos_token_id").into_iter().collect(),
        };
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> crate::Result<()> {
        if self.num_key_value_heads == 0
            || !self
                .num_attention_heads
                .is_multiple_of(self.num_key_value_heads)
        {
            return Err(crate::Error::Model(format!(
                "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                self.num_attention_heads, self.num_key_value_heads
            )));
        }
        if self.head_dim == 0 || !self.head_dim.is_multiple_of(2) {
            return Err(crate::Error::Model(format!(
                "head_dim {} must be even and positive",
                self.head_dim
            )));
        }
        Ok(())
    }

    /// The HF `config.json` for this configuration (for exported models).
    pub fn to_hf_json(&self, torch_dtype: &str) -> serde_json::Value {
        let eos = match self.eos_token_ids.as_slice() {
            [] => serde_json::Value::Null,
            [one] => serde_json::json!(one),
            many => serde_json::json!(many),
        };
        let mut v = serde_json::json!({
            "architectures": [self.arch.hf_class()],
            "model_type": self.arch.model_type(),
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim,
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "max_position_embeddings": self.max_position_embeddings,
            "vocab_size": self.vocab_size,
            "tie_word_embeddings": self.tie_word_embeddings,
            "hidden_act": "silu",
            "bos_token_id": self.bos_token_id,
            "eos_token_id": eos,
            "torch_dtype": torch_dtype,
            "use_cache": true,
        });
        if self.arch != Arch::Qwen2 {
            v["attention_bias"] = serde_json::json!(self.qkv_bias);
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_smollm2_config() {
        let text = r#"{"architectures":["LlamaForCausalLM"],"model_type":"llama","hidden_size":576,
            "intermediate_size":1536,"num_hidden_layers":30,"num_attention_heads":9,
            "num_key_value_heads":3,"rms_norm_eps":1e-05,"rope_theta":100000,
            "max_position_embeddings":8192,"vocab_size":49152,"tie_word_embeddings":true,
            "bos_token_id":1,"eos_token_id":2,"hidden_act":"silu","rope_scaling":null}"#;
        let c = Config::from_hf_json(text).unwrap();
        assert_eq!(c.arch, Arch::Llama);
        assert_eq!(c.head_dim, 64);
        assert_eq!(c.num_key_value_heads, 3);
        assert!(c.tie_word_embeddings && !c.qkv_bias && !c.qk_norm);
        assert_eq!(c.eos_token_ids, vec![2]);
        assert_eq!(c.rope_theta, 100000.0);
    }

    #[test]
    fn qwen_flags_and_bad_heads() {
        let base = r#""hidden_size":64,"intermediate_size":128,"num_hidden_layers":2,
            "num_attention_heads":4,"num_key_value_heads":2,"rms_norm_eps":1e-6,"vocab_size":100"#;
        let q2 = Config::from_hf_json(&format!(r#"{{"model_type":"qwen2",{base}}}"#)).unwrap();
        assert!(q2.qkv_bias && !q2.qk_norm);
        let q3 = Config::from_hf_json(&format!(
            r#"{{"model_type":"qwen3","head_dim":32,"eos_token_id":[1,2],{base}}}"#
        ))
        .unwrap();
        assert!(!q3.qkv_bias && q3.qk_norm && q3.head_dim == 32);
        assert_eq!(q3.eos_token_ids, vec![1, 2]);
        let bad = base.replace(r#""num_key_value_heads":2"#, r#""num_key_value_heads":3"#);
        assert!(Config::from_hf_json(&format!(r#"{{"model_type":"llama",{bad}}}"#)).is_err());
        assert!(Config::from_hf_json(&format!(r#"{{"model_type":"gpt2",{base}}}"#)).is_err());
    }
}
