//! Membership changes (§6, thesis §4.3): joint consensus, learners, removing the leader.
//!
//! See [`crate::membership`] for the rules. The leader appends C(old,new), and once it commits,
//! appends C(new) by itself. A leader that is not a voter of the configuration it committed
//! steps down, handing leadership to its most up-to-date voter if one has caught up.

use bytes::Bytes;

use super::{Node, Role};
use crate::entry::EntryKind;
use crate::error::{Error, Result};
use crate::membership::ChangeStep;
use crate::message::MessageBody;
use crate::types::{EntryId, LogIndex, NodeId};

impl Node {
    /// Proposes a membership change: the steps apply together (several voters may be added and
    /// removed at once). A change of the voter set goes through a joint configuration, left
    /// automatically once it commits; a change that only touches learners is appended as is.
    /// `context` travels in the entry, for the application (e.g. a new member's address).
    ///
    /// Refused when this node is not the leader, when a change is still in progress (appended
    /// but not committed, or a joint configuration not yet left), before the leader has
    /// committed an entry of its term (thesis §4.1), or when the steps are invalid.
    pub fn propose_membership(&mut self, steps: &[ChangeStep], context: impl Into<Bytes>) -> Result<EntryId> {
        if !self.is_leader() {
            return Err(Error::NotLeader { leader_hint: self.leader });
        }
        let committed = self.log.committed();
        if self.log.term(committed) != Some(self.term) {
            return Err(Error::LeaderNotReady);
        }
        let pending = self.log.membership_index();
        if pending > committed || self.log.membership().is_joint() {
            return Err(Error::MembershipChangeInProgress { pending_index: pending });
        }
        let next = self.log.membership().apply_steps(steps)?;
        let data = next.encode(&context.into());
        let id = self.leader_append_proposal(EntryKind::Membership, data)?;
        self.sync_leader_progress();
        Ok(id)
    }

    /// Whether a membership change is in progress: its entry is not committed, or the
    /// configuration is joint.
    pub fn membership_change_pending(&self) -> bool {
        self.log.membership_index() > self.log.committed() || self.log.membership().is_joint()
    }

    /// After the leader's commit index moved: leave a committed joint configuration, or step
    /// down if the committed configuration no longer has this node as a voter.
    pub(super) fn maybe_finish_membership_change(&mut self) {
        if self.log.membership_index() > self.log.committed() {
            return;
        }
        // The latest configuration is committed: servers it removed got it; stop tracking them.
        self.sync_leader_progress();
        let membership = self.log.membership();
        if membership.is_joint() {
            let next = membership.leave_joint();
            let data = next.encode(b"");
            // Leaving the joint configuration is never refused by flow control or a transfer:
            // it is what lets the cluster make progress with the new voters.
            self.leader_append(EntryKind::Membership, data);
            self.sync_leader_progress();
            return;
        }
        if !membership.is_voter(self.id) {
            self.step_down_after_removal();
        }
    }

    /// The leader is no longer a voter: it hands over to a caught-up voter, then follows.
    fn step_down_after_removal(&mut self) {
        let last = self.log.last_index();
        let Role::Leader(leader) = &self.role else { return };
        let successor: Option<NodeId> = leader
            .progress
            .iter()
            .filter(|(id, pr)| *id != self.id && self.log.membership().is_voter(*id) && pr.matched == last)
            .map(|(id, _)| *id)
            .next();
        if let Some(to) = successor {
            self.send(to, MessageBody::TimeoutNow);
        }
        self.become_follower(self.term, None);
    }

    /// Makes the leader's progress entries match the membership in force plus the last
    /// committed one: a server being removed keeps receiving the log until the configuration
    /// that removes it commits, so it learns of its removal and stops campaigning.
    pub(super) fn sync_leader_progress(&mut self) {
        let next: LogIndex = self.log.last_index().next();
        let max_inflight = self.config.max_inflight_msgs;
        let members = self.replication_targets();
        let Role::Leader(leader) = &mut self.role else { return };
        leader.sync_members(members.into_iter(), self.id, next, max_inflight);
    }

    /// Everyone the leader replicates to: the members of the latest and of the last committed
    /// configuration, sorted.
    pub(super) fn replication_targets(&self) -> Vec<NodeId> {
        let mut ids: Vec<NodeId> = self.log.membership().members().chain(self.log.membership_at(self.log.committed()).members()).collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }
}
