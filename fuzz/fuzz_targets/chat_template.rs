//! Fuzzes the chat-template renderer: the input is a template, a NUL byte, then messages
//! separated by 0x01 bytes (each `role` 0x02 `content`). No template may panic, hang or grow
//! output without bound: the renderer bounds template size, instructions (fuel) and output.
#![no_main]

use libfuzzer_sys::fuzz_target;
use runner::engine::chat::{render_template, Message};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (template, rest) = text.split_once('\0').unwrap_or((text, ""));
    let messages: Vec<Message> = rest
        .split('\u{1}')
        .filter(|m| !m.is_empty())
        .map(|m| {
            let (role, content) = m.split_once('\u{2}').unwrap_or(("user", m));
            Message::new(role, content)
        })
        .collect();
    let flags = data.first().copied().unwrap_or(0);
    let thinking = match flags % 3 {
        0 => None,
        1 => Some(true),
        _ => Some(false),
    };
    if let Ok(out) = render_template(
        template,
        &messages,
        flags & 4 != 0,
        thinking,
        Some("<s>"),
        Some("</s>"),
    ) {
        assert!(out.len() <= runner::engine::chat::MAX_OUTPUT_BYTES);
    }
});
