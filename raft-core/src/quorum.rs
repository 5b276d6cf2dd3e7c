//! Quorum math, pure functions over sorted voter sets (no roles, no progress).
//!
//! A *majority configuration* is a sorted, duplicate-free slice of voter ids. A *joint*
//! configuration (§6, thesis §4.3) is two majority configurations that must both agree; the
//! [`crate::Membership`] type combines the two with the functions here.
//!
//! Conventions, chosen so that a joint configuration whose outgoing half is empty behaves exactly
//! like its incoming half: an empty majority configuration has committed everything
//! (`u64::MAX`) and wins every vote.

use crate::types::NodeId;

/// The outcome of a vote as far as it is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VoteResult {
    /// A quorum granted the vote.
    Won,
    /// Too many voters refused: a quorum can no longer grant it.
    Lost,
    /// Neither yet: some voters have not answered.
    Pending,
}

/// Voters needed for a majority of `n` voters.
#[inline]
pub const fn majority(n: usize) -> usize {
    n / 2 + 1
}

/// Voters held on the stack when computing a committed index; larger clusters use the heap.
const STACK_VOTERS: usize = 9;

/// The largest value `v` such that a majority of `voters` have acknowledged at least `v`: the
/// committed index when `acked` gives each voter's match index (§5.3, §5.4). Voters missing from
/// `acked` count as zero. Returns `u64::MAX` for an empty configuration.
pub fn majority_committed(voters: &[NodeId], mut acked: impl FnMut(NodeId) -> u64) -> u64 {
    let n = voters.len();
    if n == 0 {
        return u64::MAX;
    }
    debug_assert!(is_sorted_unique(voters), "voters must be sorted and unique");
    let pick = |values: &mut [u64]| {
        // Sort descending; the majority(n)-th largest value is acknowledged by a majority.
        values.sort_unstable_by(|a, b| b.cmp(a));
        values[majority(n) - 1]
    };
    if n <= STACK_VOTERS {
        let mut values = [0u64; STACK_VOTERS];
        for (slot, &id) in values.iter_mut().zip(voters) {
            *slot = acked(id);
        }
        pick(&mut values[..n])
    } else {
        let mut values: Vec<u64> = voters.iter().map(|&id| acked(id)).collect();
        pick(&mut values)
    }
}

/// Tallies a majority vote. `vote` gives each voter's answer: `Some(true)` granted,
/// `Some(false)` refused, `None` not yet answered. An empty configuration wins.
pub fn majority_vote(voters: &[NodeId], mut vote: impl FnMut(NodeId) -> Option<bool>) -> VoteResult {
    if voters.is_empty() {
        return VoteResult::Won;
    }
    let (mut granted, mut refused) = (0usize, 0usize);
    for &id in voters {
        match vote(id) {
            Some(true) => granted += 1,
            Some(false) => refused += 1,
            None => {}
        }
    }
    let need = majority(voters.len());
    if granted >= need {
        VoteResult::Won
    } else if voters.len() - refused < need {
        VoteResult::Lost
    } else {
        VoteResult::Pending
    }
}

/// Combines the two halves of a joint vote: both must win; either losing loses.
pub fn joint_vote(incoming: VoteResult, outgoing: VoteResult) -> VoteResult {
    match (incoming, outgoing) {
        (VoteResult::Won, VoteResult::Won) => VoteResult::Won,
        (VoteResult::Lost, _) | (_, VoteResult::Lost) => VoteResult::Lost,
        _ => VoteResult::Pending,
    }
}

/// Whether ids are strictly increasing (sorted, no duplicates).
pub fn is_sorted_unique(ids: &[NodeId]) -> bool {
    ids.windows(2).all(|w| w[0] < w[1])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ids(v: &[u64]) -> Vec<NodeId> {
        v.iter().map(|&i| NodeId(i)).collect()
    }

    #[test]
    fn majority_sizes() {
        let table = [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3), (6, 4), (7, 4)];
        for (n, want) in table {
            assert_eq!(majority(n), want, "majority({n})");
        }
    }

    #[test]
    fn committed_index_is_the_value_a_majority_has_reached() {
        // (voter ids, their acked values in order, expected committed)
        let table: &[(&[u64], &[u64], u64)] = &[
            (&[1], &[5], 5),
            (&[1, 2], &[5, 3], 3),
            (&[1, 2, 3], &[5, 3, 1], 3),
            (&[1, 2, 3], &[1, 1, 9], 1),
            (&[1, 2, 3], &[0, 0, 9], 0),
            (&[1, 2, 3, 4], &[4, 3, 2, 1], 2),
            (&[1, 2, 3, 4, 5], &[9, 9, 1, 1, 1], 1),
            (&[1, 2, 3, 4, 5], &[9, 9, 8, 1, 1], 8),
            (&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], 6),
        ];
        for &(voters, acked, want) in table {
            let voters = ids(voters);
            let got = majority_committed(&voters, |id| acked[(id.0 - 1) as usize]);
            assert_eq!(got, want, "voters {voters:?} acked {acked:?}");
        }
    }

    #[test]
    fn empty_configuration_commits_everything_and_wins() {
        assert_eq!(majority_committed(&[], |_| 0), u64::MAX);
        assert_eq!(majority_vote(&[], |_| None), VoteResult::Won);
    }

    #[test]
    fn vote_tally_table() {
        // (voters, granted, refused, expected)
        let table: &[(&[u64], &[u64], &[u64], VoteResult)] = &[
            (&[1], &[1], &[], VoteResult::Won),
            (&[1], &[], &[1], VoteResult::Lost),
            (&[1, 2, 3], &[1], &[], VoteResult::Pending),
            (&[1, 2, 3], &[1, 2], &[], VoteResult::Won),
            (&[1, 2, 3], &[1], &[2], VoteResult::Pending),
            (&[1, 2, 3], &[1], &[2, 3], VoteResult::Lost),
            (&[1, 2, 3, 4], &[1, 2], &[3], VoteResult::Pending),
            (&[1, 2, 3, 4], &[1, 2], &[3, 4], VoteResult::Lost),
            (&[1, 2, 3, 4, 5], &[1, 2, 3], &[4, 5], VoteResult::Won),
        ];
        for &(voters, granted, refused, want) in table {
            let voters = ids(voters);
            let got = majority_vote(&voters, |id| {
                if granted.contains(&id.0) {
                    Some(true)
                } else if refused.contains(&id.0) {
                    Some(false)
                } else {
                    None
                }
            });
            assert_eq!(got, want, "voters {voters:?} granted {granted:?} refused {refused:?}");
        }
    }

    #[test]
    fn joint_vote_needs_both_halves() {
        use VoteResult::*;
        let table = [
            (Won, Won, Won),
            (Won, Pending, Pending),
            (Pending, Won, Pending),
            (Won, Lost, Lost),
            (Lost, Won, Lost),
            (Pending, Lost, Lost),
            (Pending, Pending, Pending),
        ];
        for (a, b, want) in table {
            assert_eq!(joint_vote(a, b), want, "{a:?} + {b:?}");
        }
    }

    /// The naive definition: the largest v such that at least a majority acked >= v.
    fn naive_committed(acked: &[u64]) -> u64 {
        let n = acked.len();
        let mut best = 0;
        for &candidate in acked {
            let count = acked.iter().filter(|&&a| a >= candidate).count();
            if count * 2 > n && candidate > best {
                best = candidate;
            }
        }
        best
    }

    proptest! {
        #[test]
        fn committed_matches_naive_definition(acked in proptest::collection::vec(0u64..50, 1..15)) {
            let voters: Vec<NodeId> = (1..=acked.len() as u64).map(NodeId).collect();
            let got = majority_committed(&voters, |id| acked[(id.0 - 1) as usize]);
            prop_assert_eq!(got, naive_committed(&acked));
        }

        #[test]
        fn vote_matches_naive_definition(answers in proptest::collection::vec(proptest::option::of(any::<bool>()), 1..12)) {
            let voters: Vec<NodeId> = (1..=answers.len() as u64).map(NodeId).collect();
            let got = majority_vote(&voters, |id| answers[(id.0 - 1) as usize]);
            let n = answers.len();
            let yes = answers.iter().filter(|a| **a == Some(true)).count();
            let possible = answers.iter().filter(|a| **a != Some(false)).count();
            let want = if yes * 2 > n { VoteResult::Won } else if possible * 2 <= n { VoteResult::Lost } else { VoteResult::Pending };
            prop_assert_eq!(got, want);
        }
    }
}
