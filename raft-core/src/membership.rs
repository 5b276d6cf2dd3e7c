//! Cluster membership: voters, learners, and joint configurations (§6, thesis §4.3).
//!
//! # When a configuration takes effect
//!
//! A server uses the **latest membership entry in its log, committed or not** (the paper's rule,
//! §6: "once a given server adds the new configuration entry to its log, it uses that
//! configuration for all future decisions"). We chose this over etcd's apply-time rule because
//! the core then owns membership entirely: the driver never has to feed a change back in, a
//! change can never be "applied twice" or "forgotten", and a membership entry that is truncated
//! away (a leader crashed before committing it) simply disappears together with its effect — the
//! log keeps a short history of membership entries so truncation can restore the previous one.
//!
//! Every change of the voter set goes through a **joint configuration**: the leader first appends
//! C(old,new), in which elections and commits need a majority of the old voters *and* a majority
//! of the new ones, and once that entry commits it appends C(new) automatically. Single-server
//! changes are the same mechanism with a one-element difference, so there is one code path and
//! none of the single-server hazards (thesis §4.1's bug) apply. Changes that only touch learners
//! do not change any quorum and are appended as a simple configuration directly.
//!
//! Learners receive the log but never vote or campaign. A new voter must first be added as a
//! learner; **the driver decides when to promote it** (typically when its match index is close
//! to the leader's last index, see [`crate::Node::progress`]), because only the driver knows what
//! "caught up" means for its application.

use bytes::{BufMut, Bytes, BytesMut};

#[cfg(feature = "serde")]
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::quorum::{self, VoteResult};
use crate::types::NodeId;

/// A cluster configuration. Possibly joint: while `outgoing` is non-empty, quorums need a
/// majority of `voters` and a majority of `outgoing`. Deserializing (with the `serde` feature)
/// checks the same rules as [`Membership::from_parts`]: sorted, unique, valid.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[cfg_attr(feature = "serde", serde(try_from = "MembershipParts"))]
pub struct Membership {
    voters: Vec<NodeId>,
    outgoing: Vec<NodeId>,
    learners: Vec<NodeId>,
}

/// The wire form of a [`Membership`], checked when converted.
#[cfg(feature = "serde")]
#[derive(Deserialize)]
struct MembershipParts {
    voters: Vec<NodeId>,
    outgoing: Vec<NodeId>,
    learners: Vec<NodeId>,
}

#[cfg(feature = "serde")]
impl TryFrom<MembershipParts> for Membership {
    type Error = Error;

    fn try_from(p: MembershipParts) -> Result<Membership, Error> {
        if ![&p.voters, &p.outgoing, &p.learners].iter().all(|set| quorum::is_sorted_unique(set)) {
            return Err(Error::InvalidMembership { reason: "member ids not sorted and unique".into() });
        }
        let m = Membership { voters: p.voters, outgoing: p.outgoing, learners: p.learners };
        m.validate()?;
        Ok(m)
    }
}

/// One step of a membership change, as a user asks for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub enum ChangeStep {
    /// Add a learner (or demote a voter to learner).
    AddLearner(NodeId),
    /// Promote a learner to voter. The node must already be a learner.
    PromoteLearner(NodeId),
    /// Remove a voter or learner.
    Remove(NodeId),
}

/// Encoding version of membership entries.
const ENCODING_VERSION: u8 = 1;

fn sorted_unique(mut ids: Vec<NodeId>) -> Vec<NodeId> {
    ids.sort_unstable();
    ids.dedup();
    ids
}

impl Membership {
    /// A simple (non-joint) configuration of `voters` and no learners.
    pub fn new(voters: impl IntoIterator<Item = NodeId>) -> Membership {
        Membership { voters: sorted_unique(voters.into_iter().collect()), outgoing: Vec::new(), learners: Vec::new() }
    }

    /// A configuration from all three sets; checked by [`Membership::validate`].
    pub fn from_parts(
        voters: impl IntoIterator<Item = NodeId>,
        outgoing: impl IntoIterator<Item = NodeId>,
        learners: impl IntoIterator<Item = NodeId>,
    ) -> Result<Membership, Error> {
        let m = Membership {
            voters: sorted_unique(voters.into_iter().collect()),
            outgoing: sorted_unique(outgoing.into_iter().collect()),
            learners: sorted_unique(learners.into_iter().collect()),
        };
        m.validate()?;
        Ok(m)
    }

    /// Checks the structural rules: at least one voter, no zero ids, learners are not incoming
    /// voters (a voter being demoted may be an outgoing voter and a learner at once).
    pub fn validate(&self) -> Result<(), Error> {
        let invalid = |reason: &str| Err(Error::InvalidMembership { reason: reason.to_string() });
        if self.voters.is_empty() {
            return invalid("a configuration needs at least one voter");
        }
        if self.members().any(|id| !id.is_valid()) {
            return invalid("node id 0 is reserved");
        }
        if self.learners.iter().any(|l| self.voters.binary_search(l).is_ok()) {
            return invalid("a node cannot be both a voter and a learner");
        }
        Ok(())
    }

    /// The (incoming) voters, sorted.
    pub fn voters(&self) -> &[NodeId] {
        &self.voters
    }

    /// The outgoing voters of a joint configuration, sorted; empty when not joint.
    pub fn outgoing(&self) -> &[NodeId] {
        &self.outgoing
    }

    /// The learners, sorted.
    pub fn learners(&self) -> &[NodeId] {
        &self.learners
    }

    /// Whether this is a joint configuration C(old,new).
    pub fn is_joint(&self) -> bool {
        !self.outgoing.is_empty()
    }

    /// Whether `id` votes (in either half of a joint configuration).
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.binary_search(&id).is_ok() || self.outgoing.binary_search(&id).is_ok()
    }

    /// Whether `id` is a learner and not a voter of either half.
    pub fn is_learner_only(&self, id: NodeId) -> bool {
        self.learners.binary_search(&id).is_ok() && !self.is_voter(id)
    }

    /// Whether `id` belongs to the configuration in any role.
    pub fn contains(&self, id: NodeId) -> bool {
        self.is_voter(id) || self.learners.binary_search(&id).is_ok()
    }

    /// Every member (voters of both halves and learners), sorted, without duplicates.
    pub fn members(&self) -> impl Iterator<Item = NodeId> + '_ {
        MergeUnique::new([&self.voters[..], &self.outgoing[..], &self.learners[..]])
    }

    /// The largest index acknowledged by a quorum, given each voter's acknowledged index.
    pub fn committed(&self, mut acked: impl FnMut(NodeId) -> u64) -> u64 {
        let incoming = quorum::majority_committed(&self.voters, &mut acked);
        let outgoing = quorum::majority_committed(&self.outgoing, &mut acked);
        incoming.min(outgoing)
    }

    /// The outcome of an election, given each voter's answer so far.
    pub fn vote_result(&self, mut vote: impl FnMut(NodeId) -> Option<bool>) -> VoteResult {
        quorum::joint_vote(quorum::majority_vote(&self.voters, &mut vote), quorum::majority_vote(&self.outgoing, &mut vote))
    }

    /// The configuration that `steps` lead to from this one, ready to be appended: a joint
    /// configuration if the voter set changes, a simple one if only learners change.
    ///
    /// Refuses to change a joint configuration (leave it first), an empty change, a step that
    /// names a node twice, promoting a node that is not a learner, and a result without voters.
    pub fn apply_steps(&self, steps: &[ChangeStep]) -> Result<Membership, Error> {
        if self.is_joint() {
            return Err(Error::InvalidMembership { reason: "the configuration is joint: it must be left before another change".into() });
        }
        if steps.is_empty() {
            return Err(Error::InvalidMembership { reason: "empty change".into() });
        }
        let step_id = |s: &ChangeStep| match *s {
            ChangeStep::AddLearner(id) | ChangeStep::PromoteLearner(id) | ChangeStep::Remove(id) => id,
        };
        let mut named: Vec<NodeId> = steps.iter().map(step_id).collect();
        named.sort_unstable();
        if named.windows(2).any(|w| w[0] == w[1]) {
            return Err(Error::InvalidMembership { reason: "a change names the same node twice".into() });
        }
        if named.iter().any(|id| !id.is_valid()) {
            return Err(Error::InvalidMembership { reason: "node id 0 is reserved".into() });
        }
        let mut voters = self.voters.clone();
        let mut learners = self.learners.clone();
        for step in steps {
            match *step {
                ChangeStep::AddLearner(id) => {
                    voters.retain(|&v| v != id);
                    learners.push(id);
                }
                ChangeStep::PromoteLearner(id) => {
                    if !learners.contains(&id) {
                        return Err(Error::InvalidMembership { reason: format!("node {id} is not a learner: add it as a learner first") });
                    }
                    learners.retain(|&l| l != id);
                    voters.push(id);
                }
                ChangeStep::Remove(id) => {
                    if !self.contains(id) {
                        return Err(Error::InvalidMembership { reason: format!("node {id} is not a member") });
                    }
                    voters.retain(|&v| v != id);
                    learners.retain(|&l| l != id);
                }
            }
        }
        let voters = sorted_unique(voters);
        let learners = sorted_unique(learners);
        if voters.is_empty() {
            return Err(Error::InvalidMembership { reason: "the change would leave no voters".into() });
        }
        let outgoing = if voters == self.voters { Vec::new() } else { self.voters.clone() };
        let next = Membership { voters, outgoing, learners };
        next.validate()?;
        Ok(next)
    }

    /// The simple configuration that ends this joint one: C(new) from C(old,new).
    pub fn leave_joint(&self) -> Membership {
        Membership { voters: self.voters.clone(), outgoing: Vec::new(), learners: self.learners.clone() }
    }

    /// Encodes the membership followed by an opaque `context` (e.g. the new member's address),
    /// as carried by an [`crate::EntryKind::Membership`] entry.
    pub fn encode(&self, context: &[u8]) -> Bytes {
        let n = self.voters.len() + self.outgoing.len() + self.learners.len();
        let mut buf = BytesMut::with_capacity(1 + 12 + 8 * n + 4 + context.len());
        buf.put_u8(ENCODING_VERSION);
        for set in [&self.voters, &self.outgoing, &self.learners] {
            buf.put_u32_le(set.len() as u32);
            for id in set {
                buf.put_u64_le(id.0);
            }
        }
        buf.put_u32_le(context.len() as u32);
        buf.put_slice(context);
        buf.freeze()
    }

    /// Decodes what [`Membership::encode`] wrote: the membership and its context. Malformed input
    /// is an error, never a panic.
    pub fn decode(data: &Bytes) -> Result<(Membership, Bytes), Error> {
        let corrupt = |reason: &str| Error::InvalidMembership { reason: format!("undecodable membership entry: {reason}") };
        let mut pos = 0usize;
        let take = |pos: &mut usize, len: usize| -> Result<std::ops::Range<usize>, Error> {
            let end = pos.checked_add(len).filter(|&e| e <= data.len()).ok_or_else(|| corrupt("truncated"))?;
            let range = *pos..end;
            *pos = end;
            Ok(range)
        };
        let version = data[take(&mut pos, 1)?][0];
        if version != ENCODING_VERSION {
            return Err(corrupt("unsupported version"));
        }
        let mut sets: [Vec<NodeId>; 3] = Default::default();
        for set in &mut sets {
            let count = u32::from_le_bytes(data[take(&mut pos, 4)?].try_into().expect("4 bytes")) as usize;
            if count > (data.len() - pos) / 8 {
                return Err(corrupt("member count exceeds the entry"));
            }
            for _ in 0..count {
                set.push(NodeId(u64::from_le_bytes(data[take(&mut pos, 8)?].try_into().expect("8 bytes"))));
            }
            if !quorum::is_sorted_unique(set) {
                return Err(corrupt("member ids not sorted"));
            }
        }
        let context_len = u32::from_le_bytes(data[take(&mut pos, 4)?].try_into().expect("4 bytes")) as usize;
        let context = data.slice(take(&mut pos, context_len)?);
        if pos != data.len() {
            return Err(corrupt("trailing bytes"));
        }
        let [voters, outgoing, learners] = sets;
        let m = Membership { voters, outgoing, learners };
        m.validate()?;
        Ok((m, context))
    }
}

/// Merges sorted slices into one sorted, duplicate-free sequence without allocating.
struct MergeUnique<'a, const N: usize> {
    slices: [&'a [NodeId]; N],
    last: Option<NodeId>,
}

impl<'a, const N: usize> MergeUnique<'a, N> {
    fn new(slices: [&'a [NodeId]; N]) -> Self {
        MergeUnique { slices, last: None }
    }
}

impl<const N: usize> Iterator for MergeUnique<'_, N> {
    type Item = NodeId;

    fn next(&mut self) -> Option<NodeId> {
        loop {
            let smallest = self.slices.iter().filter_map(|s| s.first().copied()).min()?;
            for s in &mut self.slices {
                if s.first() == Some(&smallest) {
                    *s = &s[1..];
                }
            }
            if self.last != Some(smallest) {
                self.last = Some(smallest);
                return Some(smallest);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ids(v: &[u64]) -> Vec<NodeId> {
        v.iter().map(|&i| NodeId(i)).collect()
    }

    #[test]
    fn members_merges_all_roles_in_order() {
        let m = Membership::from_parts(ids(&[1, 4]), ids(&[1, 2, 3]), ids(&[3, 7])).unwrap();
        assert_eq!(m.members().collect::<Vec<_>>(), ids(&[1, 2, 3, 4, 7]));
        assert!(m.is_voter(NodeId(2)), "outgoing voters still vote");
        assert!(!m.is_learner_only(NodeId(3)), "a demoted voter votes in the outgoing half");
        assert!(m.is_learner_only(NodeId(7)));
    }

    #[test]
    fn joint_commit_needs_both_majorities() {
        // old {1,2,3}, new {3,4,5}
        let m = Membership::from_parts(ids(&[3, 4, 5]), ids(&[1, 2, 3]), []).unwrap();
        // Old voters 1,2 at 10; new voters 4,5 at 2: each half's majority: old=10, new=2 (3 at 2).
        let acked = |id: NodeId| match id.0 {
            1 | 2 => 10,
            _ => 2,
        };
        assert_eq!(m.committed(acked), 2);
        let granted = |id: NodeId| Some(matches!(id.0, 1 | 2));
        assert_eq!(m.vote_result(granted), VoteResult::Lost, "old majority alone cannot win");
    }

    #[test]
    fn steps_to_joint_or_simple_configurations() {
        let base = Membership::from_parts(ids(&[1, 2, 3]), [], ids(&[4])).unwrap();
        // Promoting a learner changes voters: joint.
        let m = base.apply_steps(&[ChangeStep::PromoteLearner(NodeId(4))]).unwrap();
        assert_eq!((m.voters(), m.outgoing(), m.learners()), (&ids(&[1, 2, 3, 4])[..], &ids(&[1, 2, 3])[..], &[][..]));
        // Adding a learner does not: simple.
        let m = base.apply_steps(&[ChangeStep::AddLearner(NodeId(5))]).unwrap();
        assert!(!m.is_joint());
        assert_eq!(m.learners(), &ids(&[4, 5])[..]);
        // Demoting a voter: it stays an outgoing voter and becomes a learner.
        let m = base.apply_steps(&[ChangeStep::AddLearner(NodeId(3))]).unwrap();
        assert_eq!(m.outgoing(), &ids(&[1, 2, 3])[..]);
        assert!(m.learners().contains(&NodeId(3)));
        assert_eq!(m.leave_joint().voters(), &ids(&[1, 2])[..]);
    }

    #[test]
    fn invalid_steps_are_refused_with_a_reason() {
        let base = Membership::new(ids(&[1, 2, 3]));
        let table: &[(&[ChangeStep], &str)] = &[
            (&[], "empty"),
            (&[ChangeStep::PromoteLearner(NodeId(9))], "not a learner"),
            (&[ChangeStep::Remove(NodeId(9))], "not a member"),
            (&[ChangeStep::Remove(NodeId(1)), ChangeStep::Remove(NodeId(2)), ChangeStep::Remove(NodeId(3))], "no voters"),
            (&[ChangeStep::AddLearner(NodeId(4)), ChangeStep::Remove(NodeId(4))], "twice"),
            (&[ChangeStep::AddLearner(NodeId(0))], "reserved"),
        ];
        for &(steps, want) in table {
            let err = base.apply_steps(steps).unwrap_err().to_string();
            assert!(err.contains(want), "{steps:?}: {err}");
        }
        let joint = base.apply_steps(&[ChangeStep::Remove(NodeId(3))]).unwrap();
        assert!(joint.apply_steps(&[ChangeStep::Remove(NodeId(2))]).unwrap_err().to_string().contains("joint"));
    }

    #[test]
    fn decode_rejects_malformed_entries() {
        let m = Membership::from_parts(ids(&[1, 2]), ids(&[1]), ids(&[5])).unwrap();
        let good = m.encode(b"ctx");
        assert_eq!(Membership::decode(&good).unwrap(), (m, Bytes::from_static(b"ctx")));
        for cut in 0..good.len() {
            assert!(Membership::decode(&good.slice(..cut)).is_err(), "truncated at {cut}");
        }
        let mut trailing = good.to_vec();
        trailing.push(0);
        assert!(Membership::decode(&Bytes::from(trailing)).is_err());
        let mut version = good.to_vec();
        version[0] = 9;
        assert!(Membership::decode(&Bytes::from(version)).is_err());
        let mut huge = good.to_vec();
        huge[1..5].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Membership::decode(&Bytes::from(huge)).is_err());
    }

    /// Naive joint commit: the largest v reached by a majority of each non-empty half.
    fn naive_joint_committed(incoming: &[u64], outgoing: &[u64]) -> u64 {
        let naive = |acked: &[u64]| {
            if acked.is_empty() {
                return u64::MAX;
            }
            (0..=50).rev().find(|&v| acked.iter().filter(|&&a| a >= v).count() * 2 > acked.len()).unwrap_or(0)
        };
        naive(incoming).min(naive(outgoing))
    }

    proptest! {
        #[test]
        fn joint_committed_matches_naive(acked in proptest::collection::vec(0u64..50, 6),
                                         incoming_mask in 1u8..64, outgoing_mask in 0u8..64) {
            let pick = |mask: u8| (0..6u64).filter(|i| mask & (1 << i) != 0).map(|i| NodeId(i + 1)).collect::<Vec<_>>();
            let (inc, out) = (pick(incoming_mask), pick(outgoing_mask));
            let m = Membership::from_parts(inc.clone(), out.clone(), []).unwrap();
            let value = |id: NodeId| acked[(id.0 - 1) as usize];
            let want = naive_joint_committed(
                &inc.iter().map(|&i| value(i)).collect::<Vec<_>>(),
                &out.iter().map(|&i| value(i)).collect::<Vec<_>>(),
            );
            prop_assert_eq!(m.committed(value), want);
        }

        #[test]
        fn encoding_round_trips(v in proptest::collection::btree_set(1u64..100, 1..6),
                                o in proptest::collection::btree_set(1u64..100, 0..6),
                                ctx in proptest::collection::vec(any::<u8>(), 0..20)) {
            let learners: Vec<NodeId> = (200..203).map(NodeId).collect();
            let m = Membership::from_parts(v.iter().map(|&i| NodeId(i)), o.iter().map(|&i| NodeId(i)), learners).unwrap();
            let (back, back_ctx) = Membership::decode(&m.encode(&ctx)).unwrap();
            prop_assert_eq!(back, m);
            prop_assert_eq!(&back_ctx[..], &ctx[..]);
        }
    }
}

#[cfg(all(test, feature = "serde"))]
mod serde_tests {
    use super::*;

    #[test]
    fn deserializing_checks_the_same_rules_as_from_parts() {
        let ok: Membership = serde_json::from_str(r#"{"voters":[1,2,3],"outgoing":[],"learners":[4]}"#).unwrap();
        assert_eq!(ok, Membership::from_parts([NodeId(1), NodeId(2), NodeId(3)], [], [NodeId(4)]).unwrap());
        for bad in [
            r#"{"voters":[2,1],"outgoing":[],"learners":[]}"#,
            r#"{"voters":[1,1],"outgoing":[],"learners":[]}"#,
            r#"{"voters":[],"outgoing":[],"learners":[]}"#,
            r#"{"voters":[1],"outgoing":[],"learners":[1]}"#,
            r#"{"voters":[0],"outgoing":[],"learners":[]}"#,
        ] {
            assert!(serde_json::from_str::<Membership>(bad).is_err(), "{bad}");
        }
    }
}
