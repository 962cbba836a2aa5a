//! Robustness: thousands of random and mutated strings through the JSON extractor and the
//! judge's rank parser, with a fixed seed. Neither may panic, every outcome must satisfy the
//! parsers' invariants, and the whole run must stay fast (no quadratic blow-up).

use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::json::{extract_json, parse_strict, ExtractOptions, Repair};
use super::judge::{parse_ranking, RankOptions};

/// Pieces that exercise the parsers' special cases.
const FRAGMENTS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    "\"",
    "\\",
    "\\\"",
    ",",
    ":",
    " ",
    "\n",
    "4,5",
    "-0,5",
    "1,2",
    "```",
    "```json\n",
    "<think>",
    "</think>",
    "\"a\": ",
    "{\"k\": ",
    "true",
    "null",
    "é",
    "ção",
    "🎉",
    "\u{0}",
    "\u{feff}",
    "A",
    "B",
    "H",
    "Z",
    ">",
    "1.",
    "2)",
    "A: 9",
    "Ranking:",
    "**",
    "'",
    "{'a': 1}",
    "{\"x\": [1,2]}",
    "Answer: 42",
    "\r\n",
    "\t",
];

fn random_char(rng: &mut ChaCha8Rng) -> char {
    match rng.random_range(0..4) {
        0 => rng.random_range(b' '..=b'~') as char,
        1 => ['{', '}', '[', ']', '"', '\\', ',', ':'][rng.random_range(0..8)],
        // any scalar value (surrogates skipped)
        _ => loop {
            if let Some(c) = char::from_u32(rng.random_range(0..0x11_0000)) {
                break c;
            }
        },
    }
}

fn random_input(rng: &mut ChaCha8Rng) -> String {
    let mut s = String::new();
    let parts = rng.random_range(0..40);
    for _ in 0..parts {
        if rng.random_bool(0.5) {
            s.push_str(FRAGMENTS[rng.random_range(0..FRAGMENTS.len())]);
        } else {
            for _ in 0..rng.random_range(1..6) {
                s.push(random_char(rng));
            }
        }
    }
    s
}

/// A valid-looking completion mutated by deleting, duplicating or inserting characters.
fn mutated_input(rng: &mut ChaCha8Rng) -> String {
    const BASES: &[&str] = &[
        "{\"sentiment\": \"positivo\", \"sentiment_score\": 4,5, \"product\": \"Bola {x}\", \"ok\": true}",
        "```json\n{\n  \"a\": [1, 2, {\"b\": \"c\\\"d\"}],\n  \"n\": -0,5,\n}\n```",
        "<think>hmm {</think>Claro: {\"a\": {\"b\": {\"c\": 1}}} fim",
        "1. C\n2. A\n3. F\n4. B\n5. E\n6. D\n7. H\n8. G",
        "Final ranking: C > A > F > B > E > D > H > G",
    ];
    let mut chars: Vec<char> = BASES[rng.random_range(0..BASES.len())].chars().collect();
    for _ in 0..rng.random_range(0..8) {
        if chars.is_empty() {
            break;
        }
        let i = rng.random_range(0..chars.len());
        match rng.random_range(0..3) {
            0 => {
                chars.remove(i);
            }
            1 => {
                let c = chars[i];
                chars.insert(i, c);
            }
            _ => chars.insert(i, random_char(rng)),
        }
    }
    if rng.random_bool(0.3) {
        let cut = rng.random_range(0..=chars.len());
        chars.truncate(cut);
    }
    chars.into_iter().collect()
}

/// Deeply nested or long inputs: the worst cases for the bracket scanners.
fn adversarial_inputs() -> Vec<String> {
    vec![
        "{".repeat(20_000),
        "[".repeat(20_000) + &"]".repeat(19_999),
        "{\"a\":".repeat(5_000),
        "{x".repeat(10_000),
        "\"".repeat(20_000),
        "{\"a\": \"".to_string() + &"\\".repeat(20_001),
        "A > ".repeat(10_000),
        "1. A\n".repeat(5_000),
        format!("{{\"x\": {}}}", "1,".repeat(10_000)),
    ]
}

fn check_one(input: &str, opts: &ExtractOptions) {
    if let Ok(e) = extract_json(input, opts) {
        // each repair is recorded at most once
        let mut r: Vec<Repair> = e.repairs.clone();
        r.sort();
        r.dedup();
        assert_eq!(r.len(), e.repairs.len(), "{input:?}");
    }
    let _ = parse_strict(input);
    for g in [2usize, 4, 8] {
        if let Ok(r) = parse_ranking(input, g, &RankOptions::default()) {
            assert_eq!(r.ranks.len(), g);
            assert!(r.ranks.iter().all(|&k| (1..=g).contains(&k)), "{input:?}");
            assert!(r.rewards().iter().all(|&x| (0.0..=1.0).contains(&x)));
        }
    }
}

#[test]
fn parsers_survive_random_and_mutated_input() {
    let mut rng = ChaCha8Rng::seed_from_u64(20260427);
    let opts = ExtractOptions::default();
    let start = Instant::now();
    let mut slowest = Duration::ZERO;
    for i in 0..4000 {
        let input = if i % 2 == 0 {
            random_input(&mut rng)
        } else {
            mutated_input(&mut rng)
        };
        let t = Instant::now();
        check_one(&input, &opts);
        slowest = slowest.max(t.elapsed());
    }
    for input in adversarial_inputs() {
        let t = Instant::now();
        check_one(&input, &opts);
        slowest = slowest.max(t.elapsed());
    }
    // generous bounds (debug build, shared 2-core machine); quadratic behaviour would blow them
    assert!(
        slowest < Duration::from_secs(2),
        "slowest input took {slowest:?}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(60),
        "took {:?}",
        start.elapsed()
    );
}
