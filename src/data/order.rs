//! Which records each training step uses: the records are visited epoch after epoch, each
//! epoch in its own seeded permutation, and step `s` takes positions `[s·B, (s+1)·B)` of that
//! endless sequence. It depends only on (seed, step), so a resumed run continues exactly.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The order of the records in epoch `epoch`: a permutation of `0..n` seeded from
/// (seed, epoch), or the file order when `shuffle` is false.
pub fn epoch_order(n: usize, seed: u64, epoch: usize, shuffle: bool) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    if shuffle {
        let mut rng = ChaCha8Rng::seed_from_u64(mix(seed, epoch as u64));
        order.shuffle(&mut rng);
    }
    order
}

/// The record indices step `step` uses: `batch` of them, taken from the concatenated epochs.
/// Empty when there are no records.
pub fn step_batch(
    n_records: usize,
    batch: usize,
    seed: u64,
    step: usize,
    shuffle: bool,
) -> Vec<usize> {
    if n_records == 0 || batch == 0 {
        return Vec::new();
    }
    let start = step * batch;
    let mut out = Vec::with_capacity(batch);
    let mut cached: Option<(usize, Vec<usize>)> = None;
    for pos in start..start + batch {
        let (epoch, i) = (pos / n_records, pos % n_records);
        if cached.as_ref().is_none_or(|(e, _)| *e != epoch) {
            cached = Some((epoch, epoch_order(n_records, seed, epoch, shuffle)));
        }
        if let Some((_, order)) = &cached {
            out.push(order[i]);
        }
    }
    out
}

/// A well-spread 64-bit seed from two numbers (SplitMix64 finaliser).
pub fn mix(a: u64, b: u64) -> u64 {
    let mut z = a ^ b
        .wrapping_add(0x9e37_79b9_7f4a_7c15)
        .wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_record_once_per_epoch() {
        let n = 7;
        let b = 3;
        // 7 steps of 3 = 21 positions = 3 whole epochs.
        let seq: Vec<usize> = (0..7).flat_map(|s| step_batch(n, b, 42, s, true)).collect();
        for epoch in 0..3 {
            let mut e = seq[epoch * n..(epoch + 1) * n].to_vec();
            e.sort_unstable();
            assert_eq!(e, (0..n).collect::<Vec<_>>(), "epoch {epoch}");
        }
        // Epochs differ in order (with overwhelming probability for n = 7).
        assert_ne!(seq[0..n], seq[n..2 * n]);
    }

    #[test]
    fn deterministic_and_seed_dependent() {
        assert_eq!(step_batch(50, 4, 1, 9, true), step_batch(50, 4, 1, 9, true));
        let a: Vec<usize> = (0..10)
            .flat_map(|s| step_batch(50, 4, 1, s, true))
            .collect();
        let b: Vec<usize> = (0..10)
            .flat_map(|s| step_batch(50, 4, 2, s, true))
            .collect();
        assert_ne!(a, b);
    }

    #[test]
    fn unshuffled_is_file_order_wrapping() {
        assert_eq!(step_batch(5, 2, 0, 0, false), vec![0, 1]);
        assert_eq!(step_batch(5, 2, 0, 2, false), vec![4, 0]);
        assert_eq!(step_batch(5, 3, 0, 3, false), vec![4, 0, 1]);
        assert!(step_batch(0, 3, 0, 0, false).is_empty());
    }

    #[test]
    fn batch_larger_than_data_spans_epochs() {
        let s = step_batch(3, 7, 5, 0, true);
        assert_eq!(s.len(), 7);
        let mut first: Vec<usize> = s[0..3].to_vec();
        first.sort_unstable();
        assert_eq!(first, vec![0, 1, 2]);
    }
}
