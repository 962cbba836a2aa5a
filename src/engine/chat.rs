//! Chat templates rendered with minijinja, configured like transformers' renderer
//! (`trim_blocks`, `lstrip_blocks`, loop controls, `raise_exception`, `strftime_now`, a Python
//! `json.dumps`-style `tojson`, and Python string methods such as `.strip()` or `.split()`).

use minijinja::value::{Kwargs, Value};
use minijinja::{Environment, ErrorKind};

use super::tokenizer::Tok;

/// One chat message.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Message {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// The template used when a tokenizer brings none: plain ChatML (`<|im_start|>role\n...`).
pub const CHATML_TEMPLATE: &str = "{%- for message in messages %}\
{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}\
{%- endfor %}\
{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";

/// Render `messages` with the tokenizer's chat template (or a built-in ChatML one).
/// `enable_thinking` is passed to templates that understand it (Qwen3); `None` leaves it
/// undefined, which such templates treat as thinking on.
pub fn render(
    tok: &Tok,
    messages: &[Message],
    add_generation_prompt: bool,
    enable_thinking: Option<bool>,
) -> crate::Result<String> {
    let template = tok.chat_template.as_deref().unwrap_or(CHATML_TEMPLATE);
    render_template(
        template,
        messages,
        add_generation_prompt,
        enable_thinking,
        tok.bos_token.as_deref(),
        tok.eos_token.as_deref(),
    )
}

/// Render a given template source (what `render` does with the tokenizer's one).
pub fn render_template(
    template: &str,
    messages: &[Message],
    add_generation_prompt: bool,
    enable_thinking: Option<bool>,
    bos_token: Option<&str>,
    eos_token: Option<&str>,
) -> crate::Result<String> {
    let env = environment();
    let tmpl = env
        .template_from_str(template)
        .map_err(|e| template_error("parsing", &e))?;
    let mut ctx = serde_json::Map::new();
    ctx.insert("messages".into(), serde_json::to_value(messages)?);
    ctx.insert(
        "add_generation_prompt".into(),
        serde_json::Value::Bool(add_generation_prompt),
    );
    ctx.insert("bos_token".into(), bos_token.unwrap_or("").into());
    ctx.insert("eos_token".into(), eos_token.unwrap_or("").into());
    if let Some(t) = enable_thinking {
        ctx.insert("enable_thinking".into(), serde_json::Value::Bool(t));
    }
    tmpl.render(Value::from_serialize(&ctx))
        .map_err(|e| template_error("rendering", &e))
}

fn template_error(what: &str, e: &minijinja::Error) -> crate::Error {
    let mut msg = format!("chat template {what}: {e}");
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    crate::Error::Tokenizer(msg)
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function("raise_exception", raise_exception);
    env.add_function("strftime_now", strftime_now);
    env.add_filter("tojson", tojson);
    env
}

fn raise_exception(msg: String) -> Result<Value, minijinja::Error> {
    Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
}

fn strftime_now(format: String) -> String {
    chrono::Local::now().format(&format).to_string()
}

/// transformers' `tojson`: `json.dumps(x, ensure_ascii=False, indent=indent)` — Python's
/// separators (`", "`, `": "`), no HTML escaping (minijinja's own filter escapes `<`, `>`).
fn tojson(value: Value, kwargs: Kwargs) -> Result<Value, minijinja::Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    let _: Option<bool> = kwargs.get("sort_keys")?;
    kwargs.assert_all_used()?;
    let json = serde_json::to_value(&value)
        .map_err(|e| minijinja::Error::new(ErrorKind::InvalidOperation, format!("tojson: {e}")))?;
    let mut out = String::new();
    python_json(&json, indent, 0, &mut out);
    Ok(Value::from_safe_string(out))
}

fn python_json(v: &serde_json::Value, indent: Option<usize>, level: usize, out: &mut String) {
    use serde_json::Value as J;
    let newline = |out: &mut String, level: usize| {
        if let Some(n) = indent {
            out.push('\n');
            out.push_str(&" ".repeat(n * level));
        }
    };
    let item_sep = if indent.is_some() { "," } else { ", " };
    match v {
        J::Array(xs) if !xs.is_empty() => {
            out.push('[');
            for (i, x) in xs.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, level + 1);
                python_json(x, indent, level + 1, out);
            }
            newline(out, level);
            out.push(']');
        }
        J::Object(m) if !m.is_empty() => {
            out.push('{');
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, level + 1);
                out.push_str(&J::String(k.clone()).to_string());
                out.push_str(": ");
                python_json(x, indent, level + 1, out);
            }
            newline(out, level);
            out.push('}');
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msgs(pairs: &[(&str, &str)]) -> Vec<Message> {
        pairs.iter().map(|(r, c)| Message::new(*r, *c)).collect()
    }

    /// SmolLM2-135M-Instruct's template as shipped in its tokenizer_config.json.
    const SMOLLM2: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    /// A Qwen3-like template: system turn, `</think>` stripping of past assistant turns with
    /// Python string methods, and the `enable_thinking` switch.
    const QWEN3_LIKE: &str = r#"{%- if messages[0].role == 'system' %}
    {{- '<|im_start|>system\n' + messages[0].content + '<|im_end|>\n' }}
{%- endif %}
{%- for message in messages %}
    {%- if message.role == "user" or (message.role == "system" and not loop.first) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>\n' }}
    {%- elif message.role == "assistant" %}
        {%- set content = message.content %}
        {%- if '</think>' in content %}
            {%- set content = content.split('</think>')[-1].lstrip('\n') %}
        {%- endif %}
        {{- '<|im_start|>assistant\n' + content.strip() + '<|im_end|>\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
    {%- if enable_thinking is defined and enable_thinking is false %}
        {{- '<think>\n\n</think>\n\n' }}
    {%- endif %}
{%- endif %}"#;

    fn r(t: &str, m: &[Message], gen: bool, think: Option<bool>) -> String {
        render_template(t, m, gen, think, None, Some("<|im_end|>")).unwrap()
    }

    #[test]
    fn smollm2_template_adds_the_default_system_turn() {
        let out = r(SMOLLM2, &msgs(&[("user", "What is 2+2?")]), true, None);
        assert_eq!(
            out,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging \
             Face<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"
        );
        let out = r(
            SMOLLM2,
            &msgs(&[("system", "Be brief."), ("user", "Oi")]),
            false,
            None,
        );
        assert_eq!(
            out,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nOi<|im_end|>\n"
        );
    }

    #[test]
    fn qwen3_like_template_switches_thinking() {
        let m = msgs(&[("system", "S"), ("user", "Q")]);
        let base = "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n";
        assert_eq!(r(QWEN3_LIKE, &m, true, None), base);
        assert_eq!(r(QWEN3_LIKE, &m, true, Some(true)), base);
        assert_eq!(
            r(QWEN3_LIKE, &m, true, Some(false)),
            format!("{base}<think>\n\n</think>\n\n")
        );
        // Past reasoning is dropped with Python string methods (split, lstrip, strip).
        let m = msgs(&[
            ("user", "Q"),
            ("assistant", "<think>\nhmm\n</think>\n\n A "),
            ("user", "Q2"),
        ]);
        assert_eq!(
            r(QWEN3_LIKE, &m, false, None),
            "<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\nA<|im_end|>\n\
             <|im_start|>user\nQ2<|im_end|>\n"
        );
    }

    #[test]
    fn builtin_chatml_when_no_template() {
        let out = r(CHATML_TEMPLATE, &msgs(&[("user", "hi")]), true, None);
        assert_eq!(
            out,
            "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn helpers_behave_like_transformers() {
        let t = "{{ {'a': 1, 'b': [1, '<x>']} | tojson }}|{% for i in range(5) %}{% if i == 2 %}{% break %}{% endif %}{{ i }}{% endfor %}|{{ bos_token }}";
        let out = render_template(t, &[], false, None, Some("<s>"), None).unwrap();
        assert_eq!(out, "{\"a\": 1, \"b\": [1, \"<x>\"]}|01|<s>");
        let t = "{{ raise_exception('only user and assistant roles') }}";
        let err = render_template(t, &[], false, None, None, None).unwrap_err();
        assert!(
            err.to_string().contains("only user and assistant roles"),
            "{err}"
        );
        let t = "{{ strftime_now('%Y') | length }}";
        assert_eq!(
            render_template(t, &[], false, None, None, None).unwrap(),
            "4"
        );
    }
}
