//! Fuzzes the tolerant JSON extractor and the strict baseline: no input may panic, and a
//! successful extraction records each repair at most once.
#![no_main]

use libfuzzer_sys::fuzz_target;
use runner::rewards::json::{
    extract_json, parse_strict, score_json, ExtractOptions, JsonRewardOptions,
};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(e) = extract_json(text, &ExtractOptions::default()) {
        let mut r = e.repairs.clone();
        r.sort();
        r.dedup();
        assert_eq!(r.len(), e.repairs.len());
    }
    let _ = parse_strict(text);
    let s = score_json(text, None, &JsonRewardOptions::default());
    if let Some(x) = s.score.as_f64() {
        assert!((0.0..=1.0).contains(&x));
    }
});
