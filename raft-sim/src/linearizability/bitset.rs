//! A fixed-size bitset of operations with an incrementally maintained Zobrist hash.

use super::fxhash::mix64;

/// Salt so that bit hashes differ from the state-id hashes they are combined with.
const BIT_SALT: u64 = 0x6a09_e667_f3bc_c909;

/// Set of operation ids (`0..len`). `hash()` is the XOR of a fixed mix of every member, so
/// inserting or removing one id updates it in O(1) (Zobrist hashing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Bitset {
    words: Vec<u64>,
    hash: u64,
}

impl Bitset {
    /// The empty set over ids `0..len`.
    pub(crate) fn new(len: usize) -> Self {
        Bitset { words: vec![0; len.div_ceil(64)], hash: 0 }
    }

    /// Whether `id` is in the set.
    pub(crate) fn contains(&self, id: usize) -> bool {
        self.words[id / 64] & (1 << (id % 64)) != 0
    }

    /// Adds `id`, which must be absent.
    pub(crate) fn insert(&mut self, id: usize) {
        assert!(!self.contains(id), "bit {id} already set");
        self.words[id / 64] |= 1 << (id % 64);
        self.hash ^= mix64(id as u64 ^ BIT_SALT);
    }

    /// Removes `id`, which must be present.
    pub(crate) fn remove(&mut self, id: usize) {
        assert!(self.contains(id), "bit {id} not set");
        self.words[id / 64] &= !(1 << (id % 64));
        self.hash ^= mix64(id as u64 ^ BIT_SALT);
    }

    /// The Zobrist hash of the members.
    pub(crate) fn hash(&self) -> u64 {
        self.hash
    }

    /// The raw words, for storing in the memo.
    pub(crate) fn words(&self) -> &[u64] {
        &self.words
    }
}

/// Whether every bit of `small` is also set in `large` (slices of equal length).
pub(crate) fn is_subset(small: &[u64], large: &[u64]) -> bool {
    debug_assert_eq!(small.len(), large.len());
    small.iter().zip(large).all(|(s, l)| s & !l == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linearizability_bitset_hash_depends_only_on_members() {
        let mut a = Bitset::new(130);
        let mut b = Bitset::new(130);
        a.insert(3);
        a.insert(129);
        b.insert(129);
        b.insert(7);
        b.insert(3);
        b.remove(7);
        assert_eq!(a, b);
        assert_eq!(a.hash(), b.hash());
        assert!(is_subset(a.words(), b.words()));
        a.remove(129);
        assert!(is_subset(a.words(), b.words()));
        assert!(!is_subset(b.words(), a.words()));
        assert_ne!(a.hash(), b.hash());
    }
}
