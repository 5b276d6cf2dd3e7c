//! Linearizable reads by ReadIndex (thesis §6.4).
//!
//! The leader records its commit index as the read's index, then confirms it is still the
//! leader with a round of heartbeats: each read gets a *read round* number, heartbeats carry the
//! latest round, and followers echo it. Once a quorum has echoed a round, every read of that round
//! or earlier is safe: no other leader could have committed anything the read would miss. A new
//! leader first waits until it has committed an entry of its own term (its blank entry), because
//! before that its commit index may lag the cluster's (§8).

use std::collections::VecDeque;

use super::{Node, Role};
use crate::error::{Error, Result};
use crate::message::{MessageBody, ReadIndexRequest, ReadIndexResponse};
use crate::ready::ReadState;
use crate::types::{LogIndex, NodeId};

/// A read waiting for its quorum round.
#[derive(Debug, Clone, Copy)]
struct PendingRead {
    /// Who asked: this node, or a follower that forwarded it.
    from: NodeId,
    ctx: u64,
    index: LogIndex,
    round: u64,
}

/// The leader's reads in flight.
#[derive(Debug, Default)]
pub(super) struct ReadQueue {
    /// The latest round issued.
    round: u64,
    /// The latest round sent out in heartbeats.
    broadcast_round: u64,
    /// Reads in round order.
    pending: VecDeque<PendingRead>,
    /// Reads that arrived before the leader committed an entry of its term.
    waiting_for_commit: Vec<(NodeId, u64)>,
}

impl ReadQueue {
    pub(super) fn latest_round(&self) -> u64 {
        self.round
    }

    /// A round was issued that no heartbeat has carried yet.
    pub(super) fn needs_broadcast(&self) -> bool {
        self.round > self.broadcast_round
    }

    pub(super) fn mark_broadcast(&mut self) {
        self.broadcast_round = self.round;
    }

    fn len(&self) -> usize {
        self.pending.len() + self.waiting_for_commit.len()
    }
}

impl Node {
    /// Requests a linearizable read. When it is safe, a [`ReadState`] with the same `ctx`
    /// appears in a later [`crate::Ready`]: serve the read once the state machine has applied its
    /// index. On a follower the request is forwarded to the leader. A read whose leader loses
    /// its leadership is never answered: the caller times out and retries.
    pub fn read_index(&mut self, ctx: u64) -> Result<()> {
        if self.is_leader() {
            return self.leader_read(self.id, ctx);
        }
        match self.leader {
            Some(leader) => {
                self.send(leader, MessageBody::ReadIndex(ReadIndexRequest { ctx }));
                Ok(())
            }
            None => Err(Error::NotLeader { leader_hint: None }),
        }
    }

    fn leader_read(&mut self, from: NodeId, ctx: u64) -> Result<()> {
        let committed = self.log.committed();
        let committed_in_term = self.log.term(committed) == Some(self.term);
        let limit = self.config.max_pending_reads;
        let Role::Leader(leader) = &mut self.role else { unreachable!("leader_read on a leader") };
        if leader.reads.len() >= limit {
            return Err(Error::ReadQueueFull { limit });
        }
        if !committed_in_term {
            leader.reads.waiting_for_commit.push((from, ctx));
            return Ok(());
        }
        leader.reads.round += 1;
        let round = leader.reads.round;
        leader.reads.pending.push_back(PendingRead { from, ctx, index: committed, round });
        // With a single voter the quorum is this node: the read is confirmed at once.
        self.maybe_confirm_reads();
        Ok(())
    }

    /// Releases every read whose round a quorum has acknowledged.
    pub(super) fn maybe_confirm_reads(&mut self) {
        let Node { role: Role::Leader(leader), log, outbox, read_states, id, term, .. } = self else { return };
        if leader.reads.pending.is_empty() {
            return;
        }
        let own_round = leader.reads.round;
        let confirmed =
            log.membership().committed(|peer| if peer == *id { own_round } else { leader.progress(peer).map_or(0, |p| p.read_round) });
        while let Some(read) = leader.reads.pending.front().copied() {
            if read.round > confirmed {
                break;
            }
            leader.reads.pending.pop_front();
            if read.from == *id {
                read_states.push(ReadState { ctx: read.ctx, index: read.index });
            } else {
                let body = MessageBody::ReadIndexResponse(ReadIndexResponse { ctx: read.ctx, index: read.index });
                outbox.now.push(crate::message::Message { from: *id, to: read.from, term: *term, body });
            }
        }
    }

    /// Once the leader has committed in its term, reads that waited for it get their round.
    pub(super) fn release_reads_waiting_for_commit(&mut self) {
        if self.log.term(self.log.committed()) != Some(self.term) {
            return;
        }
        let Role::Leader(leader) = &mut self.role else { return };
        if leader.reads.waiting_for_commit.is_empty() {
            return;
        }
        let waiting = std::mem::take(&mut leader.reads.waiting_for_commit);
        for (from, ctx) in waiting {
            // Cannot fail: the queue only shrank.
            let _ = self.leader_read(from, ctx);
        }
    }

    pub(super) fn handle_read_index_request(&mut self, from: NodeId, req: ReadIndexRequest) {
        if self.is_leader() {
            // A full queue drops the request; the follower's caller times out.
            let _ = self.leader_read(from, req.ctx);
        }
    }

    pub(super) fn handle_read_index_response(&mut self, resp: ReadIndexResponse) {
        self.read_states.push(ReadState { ctx: resp.ctx, index: resp.index });
    }
}
