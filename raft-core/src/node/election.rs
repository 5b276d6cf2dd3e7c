//! Leader election (§5.2, §5.4.1), PreVote (thesis §9.6), CheckQuorum (thesis §6.2) and
//! leadership transfer (thesis §3.10).

use super::{Node, Role, Transfer};
use crate::error::{Error, Result};
use crate::message::{MessageBody, VoteRequest, VoteResponse};
use crate::quorum::VoteResult;
use crate::types::{NodeId, Term};

impl Node {
    /// Followers and candidates: count a tick toward the election timeout.
    pub(super) fn tick_election(&mut self) {
        self.election_elapsed += 1;
        if self.election_elapsed >= self.randomized_election_timeout && self.is_promotable() {
            self.start_election(false);
        }
    }

    /// Starts a pre-vote round (if enabled and not a transfer) or a real election.
    pub(super) fn start_election(&mut self, transfer: bool) {
        if self.config.pre_vote && !transfer {
            self.become_pre_candidate();
            self.request_votes(true, false);
        } else {
            self.become_candidate();
            self.request_votes(false, transfer);
        }
    }

    /// Sends RequestVote to every other voter and records this node's own vote: at once for a
    /// pre-vote (nothing is promised), after the term and vote are durable for a real one.
    fn request_votes(&mut self, pre_vote: bool, leadership_transfer: bool) {
        // A pre-vote asks about the term the node would campaign in, without moving to it.
        let term = if pre_vote { self.term.next() } else { self.term };
        let req = VoteRequest { pre_vote, last_log: self.log.last_id(), leadership_transfer };
        let voters: Vec<NodeId> = self.log.membership().members().filter(|&id| self.log.membership().is_voter(id)).collect();
        for &to in voters.iter().filter(|&&to| to != self.id) {
            self.outbox.now.push(crate::message::Message { from: self.id, to, term, body: MessageBody::RequestVote(req) });
        }
        // Our own vote last: with a single voter it decides the election at once.
        let own = VoteResponse { pre_vote, granted: true };
        if pre_vote {
            self.handle_vote_response(self.id, own);
        } else {
            self.send_after_persist(self.id, MessageBody::RequestVoteResponse(own));
        }
    }

    /// RequestVote receiver (Figure 2, §5.4.1), for every role.
    pub(super) fn handle_vote_request(&mut self, from: NodeId, msg_term: Term, req: VoteRequest) {
        // Same term (or a pre-vote for a later one, whose term rules check_term skipped).
        let can_vote = self.vote == Some(from)
            // Not yet voted in this term, and no leader known in it.
            || (self.vote.is_none() && self.leader.is_none())
            // A pre-vote for a future term: this node's vote in its own term is irrelevant.
            || (req.pre_vote && msg_term > self.term);
        #[cfg(not(raft_bug = "vote_without_up_to_date_check"))]
        let up_to_date = req.last_log.is_up_to_date_with(self.log.last_id());
        // BUG: grant without comparing logs (§5.4.1), so a stale candidate can win.
        #[cfg(raft_bug = "vote_without_up_to_date_check")]
        let up_to_date = true;
        let granted = can_vote && up_to_date;
        let resp = MessageBody::RequestVoteResponse(VoteResponse { pre_vote: req.pre_vote, granted });
        if req.pre_vote {
            // A granted pre-vote answers in the term it was asked about, so the pre-candidate
            // does not take it for a stale reply; a refusal carries our term so a lagging
            // pre-candidate catches up.
            let term = if granted { msg_term } else { self.term };
            self.outbox.now.push(crate::message::Message { from: self.id, to: from, term, body: resp });
            return;
        }
        if granted {
            self.election_elapsed = 0;
            self.vote = Some(from);
        }
        // The vote is promised only once the term and vote are durable.
        self.send_after_persist(from, resp);
    }

    /// A vote answer, for (pre-)candidates.
    pub(super) fn handle_vote_response(&mut self, from: NodeId, resp: VoteResponse) {
        let membership = self.log.membership();
        let tally = match &mut self.role {
            Role::PreCandidate(tally) if resp.pre_vote => tally,
            Role::Candidate(tally) if !resp.pre_vote => tally,
            _ => return,
        };
        #[cfg(not(raft_bug = "count_duplicate_votes"))]
        {
            if tally.votes.iter().any(|(id, _)| *id == from) {
                return; // a duplicate answer counts once
            }
            tally.votes.push((from, resp.granted));
        }
        #[cfg(raft_bug = "count_duplicate_votes")]
        tally.votes.push((from, resp.granted));

        #[cfg(not(raft_bug = "count_duplicate_votes"))]
        let result = membership.vote_result(|id| tally.votes.iter().find(|(v, _)| *v == id).map(|(_, g)| *g));
        #[cfg(raft_bug = "count_duplicate_votes")]
        let result = {
            // BUG: tally answers, not voters, so a duplicated grant counts twice.
            let voters = membership.voters().len();
            let granted = tally.votes.iter().filter(|(id, g)| *g && membership.is_voter(*id)).count();
            if granted > voters / 2 {
                VoteResult::Won
            } else {
                membership.vote_result(|id| tally.votes.iter().find(|(v, _)| *v == id).map(|(_, g)| *g))
            }
        };
        // A real election is won only once the candidate's own vote counted, i.e. once its term
        // and vote are durable: a leader whose term a crash could make it forget could lead the
        // same term twice with different logs. (A pre-vote promises nothing.)
        let own_vote_durable = resp.pre_vote || tally.votes.iter().any(|&(id, granted)| id == self.id && granted);
        match result {
            VoteResult::Won if !own_vote_durable => {}
            VoteResult::Won => {
                if resp.pre_vote {
                    self.start_election_after_pre_vote();
                } else {
                    self.become_leader();
                }
            }
            VoteResult::Lost => self.become_follower(self.term, None),
            VoteResult::Pending => {}
        }
    }

    fn start_election_after_pre_vote(&mut self) {
        self.become_candidate();
        self.request_votes(false, false);
    }

    /// TimeoutNow: the leader asks this node to take over (thesis §3.10). Campaign at once,
    /// skipping the pre-vote: the cluster is healthy, and voters must ignore their lease.
    pub(super) fn handle_timeout_now(&mut self, from: NodeId) {
        if self.is_leader() || !self.is_promotable() || self.leader != Some(from) {
            return;
        }
        self.start_election(true);
    }

    /// Leaders: count a tick toward heartbeats and CheckQuorum.
    pub(super) fn tick_leader(&mut self) {
        self.election_elapsed += 1;
        let Role::Leader(leader) = &mut self.role else { unreachable!("tick_leader on a leader") };
        leader.heartbeat_elapsed += 1;
        for (_, pr) in leader.progress.iter_mut() {
            pr.ticks_since_contact += 1;
        }
        if self.election_elapsed >= self.config.election_ticks {
            self.election_elapsed = 0;
            if self.config.check_quorum && !self.quorum_recently_active() {
                // Thesis §6.2: a leader cut off from a quorum steps down, so clients look for
                // the leader elsewhere instead of waiting on one that cannot commit.
                self.become_follower(self.term, None);
                return;
            }
            // A transfer that did not finish within an election timeout is abandoned.
            let Role::Leader(leader) = &mut self.role else { unreachable!() };
            leader.transfer = None;
        }
        let Role::Leader(leader) = &mut self.role else { unreachable!() };
        if leader.heartbeat_elapsed >= self.config.heartbeat_ticks {
            leader.heartbeat_elapsed = 0;
            self.broadcast_heartbeats();
        }
        self.tick_snapshot_transfers();
    }

    /// Whether a quorum has been heard from since the last check; clears the marks.
    fn quorum_recently_active(&mut self) -> bool {
        let Role::Leader(leader) = &mut self.role else { return false };
        let id = self.id;
        let result = self.log.membership().vote_result(|peer| Some(peer == id || leader.progress(peer).is_some_and(|p| p.recent_active)));
        for (peer, pr) in leader.progress.iter_mut() {
            if *peer != id {
                pr.recent_active = false;
            }
        }
        result == VoteResult::Won
    }

    /// Hands leadership to `to` (thesis §3.10): the leader stops accepting proposals, brings `to`
    /// up to date, then tells it to start an election at once. Abandoned after an election
    /// timeout.
    pub fn transfer_leadership(&mut self, to: NodeId) -> Result<()> {
        let Role::Leader(leader) = &mut self.role else {
            return Err(Error::NotLeader { leader_hint: self.leader });
        };
        if to == self.id {
            return Err(Error::InvalidTransferTarget { to, reason: "this node already leads" });
        }
        if !self.log.membership().is_voter(to) {
            return Err(Error::InvalidTransferTarget { to, reason: "not a voter" });
        }
        if leader.transfer.is_some_and(|t| t.to == to) {
            return Ok(());
        }
        leader.transfer = Some(Transfer { to, timeout_now_sent: false });
        // The transfer must finish within one election timeout.
        self.election_elapsed = 0;
        self.maybe_send_timeout_now();
        Ok(())
    }

    /// The leadership transfer in progress, if any.
    pub fn transfer_target(&self) -> Option<NodeId> {
        match &self.role {
            Role::Leader(leader) => leader.transfer.map(|t| t.to),
            _ => None,
        }
    }

    /// Sends TimeoutNow once the transfer target's log matches ours.
    pub(super) fn maybe_send_timeout_now(&mut self) {
        let last = self.log.last_index();
        let Role::Leader(leader) = &mut self.role else { return };
        let Some(transfer) = leader.transfer.as_mut() else { return };
        if transfer.timeout_now_sent {
            return;
        }
        if leader.progress.iter().any(|(id, pr)| *id == transfer.to && pr.matched == last) {
            transfer.timeout_now_sent = true;
            let to = transfer.to;
            self.send(to, MessageBody::TimeoutNow);
        }
    }
}
