//! The n-gram index behind both Self-BLEU definitions.
//!
//! Self-BLEU scores every text against all the others, so the reference side of text `i` is
//! "every text but `i`". BLEU needs, per hypothesis n-gram, the maximum count over the
//! references; keeping the two largest counts of each n-gram over the whole corpus (and which
//! text holds the largest) answers "maximum over all texts but `i`" in O(1): it is the largest
//! count unless `i` holds it, then the second largest. Counting is done once per text, so
//! Self-BLEU over `N` texts costs O(N · words · max_n) instead of NLTK's O(N² · words · max_n).
//!
//! N-grams get exact dense ids per order (no hashing of contents into a fixed-width key): the
//! id of an n-gram is interned from (id of its first n−1 tokens, id of its last token).

use std::collections::HashMap;

/// The two largest counts of one n-gram over the corpus.
#[derive(Debug, Clone, Copy, Default)]
struct Top2 {
    first: u32,
    /// The text holding `first` (the first such text when several do).
    owner: u32,
    second: u32,
}

/// Per-text n-gram counts of a corpus and the per-n-gram top-2 counts over it.
#[derive(Debug)]
pub struct NgramIndex {
    max_n: usize,
    /// `counts[text][n − 1]`: (n-gram id, count), one entry per distinct n-gram.
    counts: Vec<Vec<Vec<(u32, u32)>>>,
    /// Tokens per text.
    lens: Vec<usize>,
    /// `top[n − 1][id]`.
    top: Vec<Vec<Top2>>,
    /// All lengths, sorted (for the closest other length).
    sorted_lens: Vec<usize>,
}

impl NgramIndex {
    /// Index `texts` (already tokenised) for n-grams of orders 1..=max_n.
    pub fn new<S: AsRef<str>>(texts: &[Vec<S>], max_n: usize) -> NgramIndex {
        let mut vocab: HashMap<&str, u32> = HashMap::new();
        let token_ids: Vec<Vec<u32>> = texts
            .iter()
            .map(|t| {
                t.iter()
                    .map(|w| {
                        let next = vocab.len() as u32;
                        *vocab.entry(w.as_ref()).or_insert(next)
                    })
                    .collect()
            })
            .collect();
        let mut interned: Vec<HashMap<(u32, u32), u32>> = vec![HashMap::new(); max_n];
        let mut top: Vec<Vec<Top2>> = vec![Vec::new(); max_n];
        top[0] = vec![Top2::default(); vocab.len()];
        let mut counts = Vec::with_capacity(texts.len());
        for (t, ids) in token_ids.iter().enumerate() {
            let mut per_order = Vec::with_capacity(max_n);
            // prev[i] = id of the (n−1)-gram starting at i.
            let mut prev: Vec<u32> = ids.clone();
            for n in 1..=max_n {
                let cur: Vec<u32> = if n == 1 {
                    prev.clone()
                } else {
                    let map = &mut interned[n - 1];
                    let cur: Vec<u32> = (0..ids.len().saturating_sub(n - 1))
                        .map(|i| {
                            let next = map.len() as u32;
                            *map.entry((prev[i], ids[i + n - 1])).or_insert(next)
                        })
                        .collect();
                    if top[n - 1].len() < map.len() {
                        top[n - 1].resize(map.len(), Top2::default());
                    }
                    cur
                };
                let c = run_lengths(&cur);
                for &(id, k) in &c {
                    let e = &mut top[n - 1][id as usize];
                    if k > e.first {
                        e.second = e.first;
                        e.first = k;
                        e.owner = t as u32;
                    } else if k > e.second {
                        e.second = k;
                    }
                }
                per_order.push(c);
                prev = cur;
            }
            counts.push(per_order);
        }
        let lens: Vec<usize> = token_ids.iter().map(Vec::len).collect();
        let mut sorted_lens = lens.clone();
        sorted_lens.sort_unstable();
        NgramIndex {
            max_n,
            counts,
            lens,
            top,
            sorted_lens,
        }
    }

    /// Texts indexed.
    pub fn len(&self) -> usize {
        self.lens.len()
    }

    /// True when no text is indexed.
    pub fn is_empty(&self) -> bool {
        self.lens.is_empty()
    }

    /// Tokens of text `i`.
    pub fn tokens(&self, i: usize) -> usize {
        self.lens[i]
    }

    /// For text `i` as hypothesis against all other texts as references, per order n
    /// (index n − 1): (clipped matches, hypothesis n-grams).
    pub fn matches_against_others(&self, i: usize) -> Vec<(u64, u64)> {
        (0..self.max_n)
            .map(|o| {
                let mut matched = 0u64;
                let mut total = 0u64;
                for &(id, c) in &self.counts[i][o] {
                    let t = self.top[o][id as usize];
                    let max_ref = if t.owner as usize == i {
                        t.second
                    } else {
                        t.first
                    };
                    matched += u64::from(c.min(max_ref));
                    total += u64::from(c);
                }
                (matched, total)
            })
            .collect()
    }

    /// The length of the other text closest to text `i`'s length, the shorter on a tie (NLTK's
    /// `closest_ref_length`, sacrebleu's `_get_closest_ref_len`). None with one text.
    pub fn closest_other_len(&self, i: usize) -> Option<usize> {
        let c = self.lens[i];
        let s = &self.sorted_lens;
        let lo = s.partition_point(|&l| l < c);
        let hi = s.partition_point(|&l| l <= c);
        if hi - lo >= 2 {
            return Some(c);
        }
        // Only text i has length c: the nearest below and above.
        let below = lo.checked_sub(1).map(|k| s[k]);
        let above = s.get(hi).copied();
        match (below, above) {
            (Some(b), Some(a)) => Some(if a - c < c - b { a } else { b }),
            (b, a) => b.or(a),
        }
    }
}

/// Sorted ids → (id, count) runs.
fn run_lengths(ids: &[u32]) -> Vec<(u32, u32)> {
    let mut v = ids.to_vec();
    v.sort_unstable();
    let mut out: Vec<(u32, u32)> = Vec::new();
    for id in v {
        match out.last_mut() {
            Some((last, k)) if *last == id => *k += 1,
            _ => out.push((id, 1)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &[&str]) -> Vec<Vec<String>> {
        s.iter()
            .map(|t| {
                t.split(' ')
                    .filter(|w| !w.is_empty())
                    .map(String::from)
                    .collect()
            })
            .collect()
    }

    /// "a b a b" / "a b c" / "a b a": bigram "a b" counts 2, 1, 1 → for text 0 the others'
    /// max is 1 (clip 2 → 1); for text 1 it is 2.
    #[test]
    fn top2_excludes_the_hypothesis() {
        let idx = NgramIndex::new(&toks(&["a b a b", "a b c", "a b a"]), 2);
        // text 0: unigrams a(2) b(2): others' max a = 2 (text 2), b = 1 → 2 + 1 = 3 of 4;
        // bigrams ab(2) ba(1): others ab 1, ba 1 (text 2) → 2 of 3.
        assert_eq!(idx.matches_against_others(0), [(3, 4), (2, 3)]);
        // text 1: a b c: a 1, b 1, c 0 → 2 of 3; ab 1 (clipped), bc 0 → 1 of 2.
        assert_eq!(idx.matches_against_others(1), [(2, 3), (1, 2)]);
    }

    #[test]
    fn closest_other_len_by_hand() {
        let idx = NgramIndex::new(&toks(&["a", "a b c", "a b c d e", "x y z"]), 1);
        assert_eq!(idx.closest_other_len(0), Some(3));
        assert_eq!(idx.closest_other_len(1), Some(3)); // the other 3-token text
                                                       // 5: others 1, 3, 3 → 3
        assert_eq!(idx.closest_other_len(2), Some(3));
        let idx = NgramIndex::new(&toks(&["a b", "a b c d", "a b c"]), 1);
        // 3: others 2 and 4 at distance 1 → the shorter, 2
        assert_eq!(idx.closest_other_len(2), Some(2));
        let one = NgramIndex::new(&toks(&["a"]), 1);
        assert_eq!(one.closest_other_len(0), None);
    }
}
