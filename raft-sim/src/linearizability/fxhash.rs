//! A small deterministic hasher for memo tables (FxHash-style, with a final mix).
//!
//! `std`'s default hasher is randomly seeded per process. The checker only ever *looks up* in its
//! hash tables (it never iterates them), so a random seed could not change a verdict, but a fixed
//! hasher keeps runs reproducible down to memory use and timing, and it is faster on the short
//! keys used here.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};

/// Multiplier of rustc's FxHash.
const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

/// FxHash-style word-at-a-time hasher.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct FxHasher {
    hash: u64,
}

impl FxHasher {
    fn add_word(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add_word(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            // The length byte keeps "ab" and "ab\0" apart.
            self.add_word(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 59));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add_word(u64::from(i));
    }

    fn write_u32(&mut self, i: u32) {
        self.add_word(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        self.add_word(i);
    }

    fn write_usize(&mut self, i: usize) {
        self.add_word(i as u64);
    }

    fn finish(&self) -> u64 {
        // The multiply leaves the low bits weak; hash tables index by them, so mix.
        mix64(self.hash)
    }
}

/// A `HashMap` with the deterministic [`FxHasher`]. Only for look-ups: never iterate one where
/// the order could reach the output.
pub(crate) type FxHashMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// Hashes one value with [`FxHasher`].
pub(crate) fn fx_hash<T: Hash + ?Sized>(value: &T) -> u64 {
    let mut hasher = FxHasher::default();
    value.hash(&mut hasher);
    hasher.finish()
}

/// The splitmix64 finaliser: a bijective, well-spread mix of one word.
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linearizability_fx_hash_is_fixed_and_separates_padding() {
        assert_eq!(fx_hash(&b"abc"[..]), fx_hash(&b"abc"[..]));
        assert_ne!(fx_hash(&b"ab"[..]), fx_hash(&b"ab\0"[..]));
        assert_ne!(fx_hash(&Some(Vec::<u8>::new())), fx_hash(&None::<Vec<u8>>));
    }
}
