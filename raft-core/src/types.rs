//! The paper's vocabulary as newtypes: [`NodeId`], [`Term`], [`LogIndex`], [`EntryId`].
//!
//! Newtypes cost nothing at run time and keep a term from being compared with an index by
//! accident. All are `Copy`, ordered, and print as their number.

use std::fmt;

#[cfg(feature = "serde")]
use serde::{Deserialize, Serialize};

macro_rules! number_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
        #[cfg_attr(feature = "serde", serde(transparent))]
        pub struct $name(pub u64);

        impl $name {
            /// The zero value.
            pub const ZERO: $name = $name(0);

            /// The raw number.
            #[inline]
            pub const fn get(self) -> u64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl From<u64> for $name {
            #[inline]
            fn from(value: u64) -> Self {
                $name(value)
            }
        }
    };
}

number_newtype!(
    /// Identifies one server of the cluster. Zero is reserved and never a valid id.
    NodeId
);
number_newtype!(
    /// A Raft term (§5.1): a logical clock that only moves forward.
    Term
);
number_newtype!(
    /// The position of an entry in the replicated log. The first entry has index 1; index 0 is the
    /// empty log.
    LogIndex
);

impl Term {
    /// The next term.
    #[inline]
    pub const fn next(self) -> Term {
        Term(self.0 + 1)
    }
}

impl LogIndex {
    /// The following index.
    #[inline]
    pub const fn next(self) -> LogIndex {
        LogIndex(self.0 + 1)
    }

    /// The preceding index, saturating at zero.
    #[inline]
    pub const fn prev(self) -> LogIndex {
        LogIndex(self.0.saturating_sub(1))
    }

    /// `self + n`.
    #[inline]
    pub const fn plus(self, n: u64) -> LogIndex {
        LogIndex(self.0 + n)
    }
}

impl NodeId {
    /// Whether this id may name a server (zero is reserved).
    #[inline]
    pub const fn is_valid(self) -> bool {
        self.0 != 0
    }
}

/// An entry's identity: its index and the term in which a leader created it. By the Log Matching
/// Property (§5.3), two logs that hold the same `EntryId` are identical up to that index.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct EntryId {
    /// The entry's term.
    pub term: Term,
    /// The entry's index.
    pub index: LogIndex,
}

impl EntryId {
    /// The id of the empty log's (virtual) last entry: index 0, term 0.
    pub const ZERO: EntryId = EntryId { term: Term(0), index: LogIndex(0) };

    /// Builds an id from its parts.
    #[inline]
    pub const fn new(term: Term, index: LogIndex) -> EntryId {
        EntryId { term, index }
    }

    /// The §5.4.1 comparison: is a log ending in `self` at least as up-to-date as one ending in
    /// `other`? Compare terms first; with equal terms, the longer log is more up-to-date.
    #[inline]
    pub fn is_up_to_date_with(self, other: EntryId) -> bool {
        (self.term, self.index) >= (other.term, other.index)
    }
}

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@t{}", self.index, self.term)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn up_to_date_compares_terms_first_then_length() {
        // (candidate last, voter last, candidate is up to date?)
        let table = [
            ((2, 1), (1, 9), true),  // higher last term wins even if shorter
            ((1, 9), (2, 1), false), // lower last term loses even if longer
            ((2, 5), (2, 5), true),  // identical logs are up to date
            ((2, 6), (2, 5), true),  // same term, longer
            ((2, 4), (2, 5), false), // same term, shorter
            ((0, 0), (0, 0), true),  // two empty logs
        ];
        for ((ct, ci), (vt, vi), want) in table {
            let cand = EntryId::new(Term(ct), LogIndex(ci));
            let voter = EntryId::new(Term(vt), LogIndex(vi));
            assert_eq!(cand.is_up_to_date_with(voter), want, "{cand} vs {voter}");
        }
    }

    #[test]
    fn displays_as_plain_numbers() {
        assert_eq!(NodeId(7).to_string(), "7");
        assert_eq!(EntryId::new(Term(3), LogIndex(12)).to_string(), "12@t3");
    }
}
