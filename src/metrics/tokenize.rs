//! The tokenisations the metrics use, each matching the Python library it stands in for.

use std::sync::OnceLock;

use regex::Regex;

/// Python's `str.split()` without arguments: runs of whitespace separate tokens, leading and
/// trailing whitespace is dropped. This is the tokenisation NLTK users pass to `sentence_bleu`
/// (`text.split()`); it keeps punctuation attached to words and is case-sensitive.
pub fn python_split(text: &str) -> Vec<&str> {
    text.split(is_python_space)
        .filter(|t| !t.is_empty())
        .collect()
}

/// Python's `str.isspace()` for one character: Unicode White_Space plus the information
/// separators U+001C..U+001F, which Rust's `char::is_whitespace` does not include.
pub fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// The four substitutions of sacrebleu's `TokenizerRegexp`, in order.
fn rules_13a() -> &'static [(Regex, &'static str); 4] {
    static RULES: OnceLock<[(Regex, &'static str); 4]> = OnceLock::new();
    RULES.get_or_init(|| {
        let re = |p: &str| Regex::new(p).unwrap_or_else(|e| panic!("13a pattern {p}: {e}"));
        [
            // Symbols and ASCII punctuation except . , ' and - become separate tokens
            // (sacrebleu: `[\{-\~\[-\` -\&\(-\+\:-\@\/]`).
            (
                re(r"([\x20-\x26\x28-\x2B\x2F\x3A-\x40\x5B-\x60\x7B-\x7E])"),
                " ${1} ",
            ),
            // Period and comma unless preceded by a digit.
            (re(r"([^0-9])([.,])"), "${1} ${2} "),
            // Period and comma unless followed by a digit.
            (re(r"([.,])([^0-9])"), " ${1} ${2}"),
            // Dash preceded by a digit.
            (re(r"([0-9])(-)"), "${1} ${2} "),
        ]
    })
}

/// sacrebleu's `13a` tokenizer as `BLEU` applies it (mteval-v13a): the segment is
/// right-stripped (`str.rstrip()`), `<skipped>` and `-\n` are removed, newlines become spaces,
/// `&quot; &amp; &lt; &gt;` are unescaped, then sacrebleu's four regular expressions separate
/// punctuation, and the result is split on whitespace (Python `str.split()`).
pub fn tokenize_13a(text: &str) -> Vec<String> {
    let mut line = text.trim_end_matches(is_python_space).to_string();
    line = line.replace("<skipped>", "");
    line = line.replace("-\n", "");
    line = line.replace('\n', " ");
    if line.contains('&') {
        line = line.replace("&quot;", "\"");
        line = line.replace("&amp;", "&");
        line = line.replace("&lt;", "<");
        line = line.replace("&gt;", ">");
    }
    let mut line = format!(" {line} ");
    for (re, rep) in rules_13a() {
        line = re.replace_all(&line, *rep).into_owned();
    }
    python_split(&line)
        .into_iter()
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_split_by_hand() {
        assert_eq!(python_split("  a\tb\n\nc  "), ["a", "b", "c"]);
        assert_eq!(
            python_split("a\u{1f}b\u{a0}c\u{3000}d"),
            ["a", "b", "c", "d"]
        );
        assert!(python_split(" \n ").is_empty());
        // Zero-width space is not whitespace for Python either.
        assert_eq!(python_split("a\u{200b}b"), ["a\u{200b}b"]);
    }

    /// Outputs of `sacrebleu.tokenizers.tokenizer_13a.Tokenizer13a()(line).split()`.
    #[test]
    fn tokenize_13a_by_hand() {
        assert_eq!(
            tokenize_13a("Olá, mundo! O preço é R$3,50."),
            ["Olá", ",", "mundo", "!", "O", "preço", "é", "R", "$", "3,50", "."]
        );
        assert_eq!(
            tokenize_13a("1-2 a-b x.y 3.5"),
            ["1", "-", "2", "a-b", "x", ".", "y", "3.5"]
        );
        assert_eq!(
            tokenize_13a("&amp;&lt;p&gt; it's"),
            ["&", "<", "p", ">", "it's"]
        );
    }
}
