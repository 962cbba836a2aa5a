//! Chat templates rendered with minijinja, configured like transformers' renderer
//! (`trim_blocks`, `lstrip_blocks`, loop controls, `raise_exception`, `strftime_now`, a Python
//! `json.dumps`-style `tojson`, and Python string methods such as `.strip()` or `.split()`).

use std::io::Write;

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

/// Largest template source accepted. HF chat templates are a few KiB; a bigger one is most
/// likely not a template at all.
pub const MAX_TEMPLATE_BYTES: usize = 1 << 20;

/// Instructions a render may execute (minijinja fuel). A template renders each message with a
/// few dozen instructions, so this allows conversations of thousands of turns while stopping
/// a hostile template (nested `range(100000)` loops) in well under a second.
pub const MAX_TEMPLATE_FUEL: u64 = 2_000_000;

/// Largest rendered prompt, in bytes: far beyond any model's context, small enough to keep a
/// runaway template from exhausting memory through its output.
pub const MAX_OUTPUT_BYTES: usize = 16 << 20;

/// Stack of the rendering thread (see [`render_template`]).
const RENDER_STACK_BYTES: usize = 512 << 20;

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
///
/// The template is untrusted input (it comes with a downloaded tokenizer): its size, the
/// instructions it may run ([`MAX_TEMPLATE_FUEL`]) and its output ([`MAX_OUTPUT_BYTES`]) are
/// bounded, and every failure is an `Err`. Not bounded: memory of values a template builds by
/// repeated string concatenation without printing them (minijinja has no limit on `~`); fuel
/// bounds the number of such steps.
pub fn render_template(
    template: &str,
    messages: &[Message],
    add_generation_prompt: bool,
    enable_thinking: Option<bool>,
    bos_token: Option<&str>,
    eos_token: Option<&str>,
) -> crate::Result<String> {
    if template.len() > MAX_TEMPLATE_BYTES {
        return Err(crate::Error::Tokenizer(format!(
            "chat template is {} bytes, more than the {MAX_TEMPLATE_BYTES} accepted",
            template.len()
        )));
    }
    // Values a template builds can nest as deep as its fuel allows, and minijinja drops and
    // prints them recursively: render on a thread whose stack holds the deepest one (the
    // memory is only committed as it is used). A panic there becomes an error too.
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("chat-template".into())
            .stack_size(RENDER_STACK_BYTES)
            .spawn_scoped(scope, || {
                render_bounded(
                    template,
                    messages,
                    add_generation_prompt,
                    enable_thinking,
                    bos_token,
                    eos_token,
                )
            })
            .map_err(|e| {
                crate::Error::Tokenizer(format!("chat template: cannot start renderer: {e}"))
            })?
            .join()
            .unwrap_or_else(|_| {
                Err(crate::Error::Tokenizer(
                    "chat template rendering panicked".into(),
                ))
            })
    })
}

fn render_bounded(
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
    let mut out = BoundedWriter::default();
    match tmpl.render_captured_to(Value::from_serialize(&ctx), &mut out) {
        Ok(_) => {}
        Err(_) if out.overflowed => {
            return Err(crate::Error::Tokenizer(format!(
                "chat template rendering: output exceeds {MAX_OUTPUT_BYTES} bytes"
            )))
        }
        Err(e) => return Err(template_error("rendering", &e)),
    }
    String::from_utf8(out.buf)
        .map_err(|e| crate::Error::Tokenizer(format!("chat template rendering: {e}")))
}

/// Collects the rendered text, failing once it would pass [`MAX_OUTPUT_BYTES`].
#[derive(Default)]
struct BoundedWriter {
    buf: Vec<u8>,
    overflowed: bool,
}

impl Write for BoundedWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + data.len() > MAX_OUTPUT_BYTES {
            self.overflowed = true;
            return Err(std::io::Error::other("chat template output too large"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
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
    env.set_fuel(Some(MAX_TEMPLATE_FUEL));
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function("raise_exception", raise_exception);
    env.add_function("strftime_now", strftime_now);
    env.add_filter("tojson", tojson);
    env
}

fn raise_exception(msg: String) -> Result<Value, minijinja::Error> {
    Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
}

/// chrono's `format(..).to_string()` panics on an invalid specifier (`%Q`); write it instead.
fn strftime_now(format: String) -> Result<String, minijinja::Error> {
    use std::fmt::Write as _;
    let mut out = String::new();
    write!(out, "{}", chrono::Local::now().format(&format)).map_err(|_| {
        minijinja::Error::new(
            ErrorKind::InvalidOperation,
            format!("strftime_now: invalid format `{format}`"),
        )
    })?;
    Ok(out)
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
        let t = "{{ strftime_now('%Q') }}";
        let err = render_template(t, &[], false, None, None, None).unwrap_err();
        assert!(err.to_string().contains("invalid format"), "{err}");
        let t = "{{ strftime_now('%Y') | length }}";
        assert_eq!(
            render_template(t, &[], false, None, None, None).unwrap(),
            "4"
        );
    }

    #[test]
    fn hostile_templates_are_bounded() {
        // 10^10 iterations: stopped by fuel, not a hang.
        let t = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}";
        let err = render_template(t, &[], false, None, None, None).unwrap_err();
        assert!(err.to_string().contains("fuel"), "{err}");
        // 100 × 100 MB of output: stopped at the output cap.
        let t = "{% for i in range(100) %}{{ 'x' * 100000000 }}{% endfor %}";
        let err = render_template(t, &[], false, None, None, None).unwrap_err();
        assert!(err.to_string().contains("exceeds"), "{err}");
        // A template too large to be one.
        let t = "x".repeat(MAX_TEMPLATE_BYTES + 1);
        assert!(render_template(&t, &[], false, None, None, None).is_err());
        // A value nested 100000 deep (built by a loop, so the parser's limit does not apply).
        let t = "{% set ns = namespace(x=[]) %}{% for i in range(100) %}{% for j in range(100000) %}{% set ns.x = [ns.x] %}{% endfor %}{% endfor %}{{ ns.x | length }}";
        assert!(render_template(t, &[], false, None, None, None).is_err());
        // Deep nesting is a parse error, not a stack overflow.
        let t = format!("{{{{ {}1{} }}}}", "(".repeat(10_000), ")".repeat(10_000));
        assert!(render_template(&t, &[], false, None, None, None).is_err());
    }
}
