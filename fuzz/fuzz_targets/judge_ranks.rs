//! Fuzzes the judge's rank parser: no input may panic, ranks stay in 1..=G and rewards in
//! [0, 1] for every group size.
#![no_main]

use libfuzzer_sys::fuzz_target;
use runner::rewards::judge::{parse_ranking, RankOptions};

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let g = 2 + (first as usize % 25);
    let pad = (first & 1 == 1).then_some(first as usize % 30);
    let options = RankOptions { pad_unpicked: pad };
    if let Ok(r) = parse_ranking(text, g, &options) {
        assert_eq!(r.ranks.len(), g);
        assert!(r.ranks.iter().all(|&k| (1..=g).contains(&k)));
        assert!(r.rewards().iter().all(|&x| (0.0..=1.0).contains(&x)));
    }
});
