//! Tokenizers: from an HF model directory (`tokenizer.json` + configs), or built from GGUF
//! metadata (byte-level BPE as llama.cpp's converter stores it).

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use candle_core::quantized::gguf_file;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

use crate::{Error, Result};

/// A tokenizer plus what generation and chat need to know about it.
#[derive(Clone)]
pub struct Tok {
    pub inner: tokenizers::Tokenizer,
    /// Token ids that end a completion (eos, `<|im_end|>`, ...).
    pub eos_ids: Vec<u32>,
    /// Jinja chat template from `tokenizer_config.json` or GGUF metadata, if any.
    pub chat_template: Option<String>,
    /// BOS token text, if the template or model uses one.
    pub bos_token: Option<String>,
    /// EOS token text.
    pub eos_token: Option<String>,
}

impl Tok {
    /// Token ids of `text`. Special tokens written in the text (`<|im_start|>`) map to their
    /// ids; nothing is added around the text (chat templates add BOS themselves when a model
    /// wants one).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        self.inner
            .encode(text, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| Error::Tokenizer(e.to_string()))
    }

    /// Text of `ids`, special tokens skipped.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, true)
            .map_err(|e| Error::Tokenizer(e.to_string()))
    }

    /// Text of `ids` with special tokens kept (to see exactly what a model was fed).
    pub fn decode_with_special(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, false)
            .map_err(|e| Error::Tokenizer(e.to_string()))
    }

    /// Id of a token given by its text (e.g. `<|im_end|>`), if the vocabulary has it.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }
}

/// GGUF `tokenizer.ggml.token_type` values (llama.cpp's `llama_token_type`).
const TOKEN_TYPE_CONTROL: i32 = 3;
const TOKEN_TYPE_USER_DEFINED: i32 = 4;

/// Text that a correctly configured byte-level tokenizer must reproduce exactly.
const ROUND_TRIP_PROBE: &str =
    "Olá, açúcar! 12345 x=f(y)+3;\n\tdef main():  return 'ok' 🙂 日本語  <tag>";

/// Build a tokenizer from GGUF metadata (`tokenizer.ggml.*`: byte-level BPE vocab, merges, special
/// tokens, bos/eos ids, chat template). Supports `tokenizer.ggml.model = gpt2` with the
/// pre-tokenizers `smollm`, `gpt2`/`default`, `qwen2` and `llama-bpe`.
pub fn from_gguf(content: &gguf_file::Content) -> Result<Tok> {
    let md = &content.metadata;
    let model = meta_str(md, "tokenizer.ggml.model")?;
    if model != "gpt2" {
        return Err(Error::Tokenizer(format!(
            "GGUF tokenizer model `{model}` is not supported (only byte-level BPE, `gpt2`); \
             use the model's HF directory with its tokenizer.json instead"
        )));
    }
    let tokens: Vec<String> = meta_vec(md, "tokenizer.ggml.tokens")?
        .iter()
        .map(|v| v.to_string().cloned())
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::Tokenizer(format!("tokenizer.ggml.tokens: {e}")))?;
    let merges: Vec<(String, String)> = meta_vec(md, "tokenizer.ggml.merges")?
        .iter()
        .map(|v| {
            let s = v
                .to_string()
                .map_err(|e| Error::Tokenizer(format!("tokenizer.ggml.merges: {e}")))?;
            s.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| Error::Tokenizer(format!("malformed merge `{s}` in GGUF")))
        })
        .collect::<Result<_>>()?;
    let token_types: Vec<i32> = match md.get("tokenizer.ggml.token_type") {
        Some(v) => v
            .to_vec()
            .and_then(|xs| xs.iter().map(|x| x.to_i32()).collect())
            .map_err(|e| Error::Tokenizer(format!("tokenizer.ggml.token_type: {e}")))?,
        None => vec![1; tokens.len()],
    };
    if token_types.len() != tokens.len() {
        return Err(Error::Tokenizer(format!(
            "GGUF has {} tokens but {} token types",
            tokens.len(),
            token_types.len()
        )));
    }

    let vocab: Vocab = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect();
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(|e| Error::Tokenizer(format!("building BPE from GGUF: {e}")))?;
    let mut tk = Tokenizer::new(bpe);
    let pre = md
        .get("tokenizer.ggml.pre")
        .and_then(|v| v.to_string().ok())
        .map(String::as_str)
        .unwrap_or("default");
    tk.with_pre_tokenizer(Some(pre_tokenizer_for(pre)?));
    tk.with_decoder(Some(ByteLevelDecoder::default()));

    // Control tokens (`<|im_start|>`, ...) are special: matched in text, skipped by `decode`.
    // User-defined tokens are matched in text but decoded like ordinary ones.
    let added_of = |wanted: i32| -> Vec<AddedToken> {
        tokens
            .iter()
            .zip(&token_types)
            .filter(|(_, ty)| **ty == wanted)
            .map(|(t, _)| {
                AddedToken::from(t.clone(), wanted == TOKEN_TYPE_CONTROL).normalized(false)
            })
            .collect()
    };
    tk.add_special_tokens(added_of(TOKEN_TYPE_CONTROL))
        .map_err(|e| Error::Tokenizer(format!("adding GGUF special tokens: {e}")))?;
    tk.add_tokens(added_of(TOKEN_TYPE_USER_DEFINED))
        .map_err(|e| Error::Tokenizer(format!("adding GGUF user-defined tokens: {e}")))?;

    let token_at = |key: &str| -> Option<(u32, String)> {
        let id = md.get(key)?.to_u32().ok()?;
        tokens.get(id as usize).map(|t| (id, t.clone()))
    };
    let bos = token_at("tokenizer.ggml.bos_token_id");
    let eos = token_at("tokenizer.ggml.eos_token_id");
    let chat_template = md
        .get("tokenizer.chat_template")
        .and_then(|v| v.to_string().ok())
        .cloned();

    let mut eos_ids = BTreeSet::new();
    for key in ["tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id"] {
        if let Some((id, _)) = token_at(key) {
            eos_ids.insert(id);
        }
    }
    add_conventional_stops(&tk, chat_template.as_deref(), &mut eos_ids);

    let tok = Tok {
        inner: tk,
        eos_ids: eos_ids.into_iter().collect(),
        chat_template,
        bos_token: bos.map(|(_, t)| t),
        eos_token: eos.map(|(_, t)| t),
    };
    check_round_trip(&tok)?;
    Ok(tok)
}

/// Turn-ending tokens of common chat formats, when the vocabulary has them: `<|im_end|>` for
/// ChatML templates (and the built-in template), `<|endoftext|>` everywhere.
fn add_conventional_stops(tk: &Tokenizer, template: Option<&str>, eos_ids: &mut BTreeSet<u32>) {
    let chatml = template.is_none_or(|t| t.contains("<|im_end|>"));
    if chatml {
        if let Some(id) = tk.token_to_id("<|im_end|>") {
            eos_ids.insert(id);
        }
    }
    if let Some(id) = tk.token_to_id("<|endoftext|>") {
        eos_ids.insert(id);
    }
}

/// The HF pre-tokenizer that matches llama.cpp's `tokenizer.ggml.pre` name.
fn pre_tokenizer_for(pre: &str) -> Result<PreTokenizerWrapper> {
    // Regexes as in the models' tokenizer.json (Split, isolated, then ByteLevel without regex).
    const QWEN2: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    const LLAMA3: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    let byte_level = |use_regex: bool| ByteLevel::new(false, true, use_regex);
    let split = |re: &str| -> Result<PreTokenizerWrapper> {
        Split::new(
            SplitPattern::Regex(re.to_string()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map(PreTokenizerWrapper::Split)
        .map_err(|e| Error::Tokenizer(format!("pre-tokenizer regex: {e}")))
    };
    Ok(match pre {
        "smollm" => PreTokenizerWrapper::Sequence(Sequence::new(vec![
            PreTokenizerWrapper::Digits(Digits::new(true)),
            PreTokenizerWrapper::ByteLevel(byte_level(true)),
        ])),
        "default" | "gpt2" | "gpt-2" => PreTokenizerWrapper::ByteLevel(byte_level(true)),
        "qwen2" => PreTokenizerWrapper::Sequence(Sequence::new(vec![
            split(QWEN2)?,
            PreTokenizerWrapper::ByteLevel(byte_level(false)),
        ])),
        "llama-bpe" | "llama3" => PreTokenizerWrapper::Sequence(Sequence::new(vec![
            split(LLAMA3)?,
            PreTokenizerWrapper::ByteLevel(byte_level(false)),
        ])),
        other => {
            return Err(Error::Tokenizer(format!(
                "GGUF pre-tokenizer `{other}` is not supported (known: smollm, gpt2, default, \
                 qwen2, llama-bpe); use the model's HF directory with its tokenizer.json instead"
            )))
        }
    })
}

/// A byte-level tokenizer must decode its own encoding to the same text; a wrong
/// pre-tokenizer or decoder shows up here rather than as a subtly broken model.
fn check_round_trip(tok: &Tok) -> Result<()> {
    let ids = tok.encode(ROUND_TRIP_PROBE)?;
    let back = tok.decode(&ids)?;
    if back != ROUND_TRIP_PROBE {
        return Err(Error::Tokenizer(format!(
            "tokenizer built from GGUF does not round-trip text: {ROUND_TRIP_PROBE:?} came back \
             as {back:?}"
        )));
    }
    Ok(())
}

fn meta_str<'a>(md: &'a HashMap<String, gguf_file::Value>, key: &str) -> Result<&'a str> {
    md.get(key)
        .ok_or_else(|| Error::Tokenizer(format!("GGUF metadata has no `{key}`")))?
        .to_string()
        .map(String::as_str)
        .map_err(|e| Error::Tokenizer(format!("GGUF `{key}`: {e}")))
}

fn meta_vec<'a>(
    md: &'a HashMap<String, gguf_file::Value>,
    key: &str,
) -> Result<&'a Vec<gguf_file::Value>> {
    md.get(key)
        .ok_or_else(|| Error::Tokenizer(format!("GGUF metadata has no `{key}`")))?
        .to_vec()
        .map_err(|e| Error::Tokenizer(format!("GGUF `{key}`: {e}")))
}

/// Load `tokenizer.json` (+ `tokenizer_config.json` for eos/bos and the chat template, and
/// `generation_config.json` / `config.json` for eos ids) from an HF model directory.
///
/// The chat template is taken from `tokenizer_config.json` (a string, or a list of named
/// templates, `default` preferred), else from `chat_template.jinja` or `chat_template.json`.
/// Padding configured in `tokenizer.json` is switched off: `encode` returns one sequence's ids.
pub fn from_hf_dir(dir: &Path) -> Result<Tok> {
    let tj = dir.join("tokenizer.json");
    if !tj.is_file() {
        return Err(Error::Tokenizer(format!(
            "{} has no tokenizer.json (needed to tokenize for this model)",
            dir.display()
        )));
    }
    let mut inner = Tokenizer::from_file(&tj)
        .map_err(|e| Error::Tokenizer(format!("{}: {e}", tj.display())))?;
    inner.with_padding(None);

    let cfg = read_json_opt(&dir.join("tokenizer_config.json"))?;
    let cfg_token = |key: &str| cfg.as_ref().and_then(|c| special_token_text(c.get(key)?));
    let bos_token = cfg_token("bos_token");
    let eos_token = cfg_token("eos_token");

    // Tokens declared only in tokenizer_config.json's added_tokens_decoder (rare) are added so
    // that templates using them tokenize as single ids.
    if let Some(decl) = cfg
        .as_ref()
        .and_then(|c| c.get("added_tokens_decoder"))
        .and_then(|d| d.as_object())
    {
        let missing: Vec<AddedToken> = decl
            .values()
            .filter_map(|t| {
                let content = t.get("content")?.as_str()?;
                let special = t.get("special").and_then(|s| s.as_bool()).unwrap_or(false);
                inner
                    .token_to_id(content)
                    .is_none()
                    .then(|| AddedToken::from(content.to_string(), special).normalized(false))
            })
            .collect();
        if !missing.is_empty() {
            inner
                .add_special_tokens(missing)
                .map_err(|e| Error::Tokenizer(format!("adding configured tokens: {e}")))?;
        }
    }

    let chat_template = match cfg.as_ref().and_then(|c| c.get("chat_template")) {
        Some(t) => template_from_json(t),
        None => None,
    }
    .or(read_template_files(dir)?);

    let mut eos_ids = BTreeSet::new();
    for file in ["generation_config.json", "config.json"] {
        if let Some(v) = read_json_opt(&dir.join(file))? {
            match v.get("eos_token_id") {
                Some(serde_json::Value::Number(n)) => {
                    if let Some(id) = n.as_u64() {
                        eos_ids.insert(id as u32);
                    }
                }
                Some(serde_json::Value::Array(xs)) => {
                    eos_ids.extend(xs.iter().filter_map(|x| x.as_u64()).map(|x| x as u32));
                }
                _ => {}
            }
        }
    }
    if let Some(id) = eos_token.as_deref().and_then(|t| inner.token_to_id(t)) {
        eos_ids.insert(id);
    }
    if eos_ids.is_empty() {
        add_conventional_stops(&inner, chat_template.as_deref(), &mut eos_ids);
    }

    Ok(Tok {
        inner,
        eos_ids: eos_ids.into_iter().collect(),
        chat_template,
        bos_token,
        eos_token,
    })
}

/// `"<s>"` or `{"content": "<s>", ...}` (both appear in `tokenizer_config.json`); null → None.
fn special_token_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Object(o) => o.get("content")?.as_str().map(str::to_string),
        _ => None,
    }
}

/// A template string, or the `default` one of a list of `{name, template}` entries.
fn template_from_json(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Array(xs) => {
            let named = |name: &str| {
                xs.iter().find_map(|x| {
                    (x.get("name")?.as_str()? == name)
                        .then(|| x.get("template")?.as_str().map(str::to_string))
                        .flatten()
                })
            };
            named("default").or_else(|| {
                xs.first()
                    .and_then(|x| x.get("template")?.as_str().map(str::to_string))
            })
        }
        _ => None,
    }
}

/// Newer transformers versions save the template beside the config.
fn read_template_files(dir: &Path) -> Result<Option<String>> {
    let jinja = dir.join("chat_template.jinja");
    if jinja.is_file() {
        return std::fs::read_to_string(&jinja)
            .map(Some)
            .map_err(|e| Error::io(&jinja, e));
    }
    Ok(read_json_opt(&dir.join("chat_template.json"))?
        .and_then(|v| template_from_json(v.get("chat_template")?)))
}

fn read_json_opt(path: &Path) -> Result<Option<serde_json::Value>> {
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| Error::Tokenizer(format!("{}: {e}", path.display())))
}
