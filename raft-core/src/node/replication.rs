//! Log replication (§5.3), the commit rule (§5.4.2), and flow control.
//!
//! The leader never sends from inside an input method: proposals, acknowledgements and commit
//! changes only update progress, and [`Node::ready`] sends what is due to each peer in one
//! message (`flush_leader_sends`). K proposals made between two Readies thus travel in one
//! AppendEntries per follower, and a commit index change rides on the next append, or on a
//! heartbeat when there is nothing else to send.

use bytes::Bytes;

use super::{LeaderState, Node, Role};
use crate::entry::{Entry, EntryKind, ENTRY_OVERHEAD_BYTES};
use crate::error::{Error, Result};
use crate::log::RaftLog;
use crate::message::{AppendEntries, AppendResponse, ForwardedProposals, Heartbeat, HeartbeatResponse, Message, MessageBody};
use crate::progress::{Progress, ReplicationState};
use crate::types::{EntryId, LogIndex, NodeId, Term};

/// What the leader owes one peer at the next flush.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Due {
    Nothing,
    /// Entries (or a probe) to send.
    Append,
    /// The next snapshot chunk.
    SnapshotChunk,
    /// Only the commit index changed: a heartbeat carries it.
    Commit,
}

fn due(pr: &Progress, log: &RaftLog) -> Due {
    match pr.state {
        ReplicationState::Snapshot => match &pr.snapshot {
            Some(t) if t.sent_offset == t.acked_offset => Due::SnapshotChunk,
            _ => Due::Nothing,
        },
        // Entries to stream; or, probing, a peer whose log we have not matched yet: an empty
        // probe finds out where it stands (a new member, or one whose probe was lost).
        _ if !pr.is_paused() && (pr.next <= log.last_index() || (pr.state == ReplicationState::Probe && pr.matched < log.last_index())) => {
            Due::Append
        }
        _ if pr.commit_sent < pr.matched.min(log.committed()) => Due::Commit,
        _ => Due::Nothing,
    }
}

impl Node {
    // ---------------------------------------------------------------------------------------
    // Leader: proposals and sending
    // ---------------------------------------------------------------------------------------

    /// Appends a proposal of the leader's own term, within the flow-control limits.
    pub(super) fn leader_append_proposal(&mut self, kind: EntryKind, data: Bytes) -> Result<EntryId> {
        let Role::Leader(leader) = &mut self.role else { unreachable!("only a leader appends proposals") };
        if let Some(transfer) = leader.transfer {
            return Err(Error::TransferInProgress { to: transfer.to });
        }
        let size = data.len() as u64;
        if size + ENTRY_OVERHEAD_BYTES > self.config.max_bytes_per_msg {
            return Err(Error::ProposalTooLarge { size, limit: self.config.max_bytes_per_msg });
        }
        let uncommitted = leader.uncommitted_bytes + size;
        let _ = leader;
        // One proposal is always accepted when nothing is pending, so the limit cannot wedge.
        if leader.uncommitted_bytes > 0 && uncommitted > self.config.max_uncommitted_bytes {
            return Err(Error::UncommittedLimit { uncommitted, limit: self.config.max_uncommitted_bytes });
        }
        Ok(self.leader_append(kind, data))
    }

    /// Appends an entry of the leader's term without flow-control checks (for entries the
    /// protocol itself needs, like leaving a joint configuration).
    pub(super) fn leader_append(&mut self, kind: EntryKind, data: Bytes) -> EntryId {
        let Role::Leader(leader) = &mut self.role else { unreachable!("only a leader appends") };
        leader.uncommitted_bytes += data.len() as u64;
        let id = EntryId::new(self.term, self.log.last_index().next());
        self.log.append_own(Entry { term: id.term, index: id.index, kind, data });
        id
    }

    /// Whether the leader has anything to send at the next flush.
    pub(super) fn leader_has_sends(&self) -> bool {
        let Role::Leader(leader) = &self.role else { return false };
        leader.reads.needs_broadcast() || leader.progress.iter().any(|(id, pr)| *id != self.id && due(pr, &self.log) != Due::Nothing)
    }

    /// Sends everything due to each peer: at most one append (or chunk) per peer per Ready.
    pub(super) fn flush_leader_sends(&mut self) {
        let Role::Leader(leader) = &self.role else { return };
        if leader.reads.needs_broadcast() {
            self.broadcast_heartbeats();
        }
        let Role::Leader(leader) = &self.role else { return };
        let peers: smallvec_ids::Ids = leader.progress.iter().map(|(id, _)| *id).filter(|&id| id != self.id).collect();
        for to in peers {
            let Role::Leader(leader) = &self.role else { return };
            let pr = leader.progress(to).expect("peer listed above");
            match due(pr, &self.log) {
                Due::Nothing => {}
                Due::Append => self.send_append(to),
                Due::SnapshotChunk => self.send_snapshot_chunk(to),
                Due::Commit => self.send_heartbeat(to),
            }
        }
    }

    /// Sends `to` the entries from its next index (§5.3), or starts a snapshot if they were
    /// compacted away.
    fn send_append(&mut self, to: NodeId) {
        let Node { role: Role::Leader(leader), log, outbox, config, term, id, .. } = self else { return };
        let pr = leader.progress_mut(to).expect("appends go to members");
        let prev_index = pr.next.prev();
        let Some(prev_term) = log.term(prev_index) else {
            self.start_snapshot_transfer(to);
            return;
        };
        let entries = log.slice(pr.next, log.last_index(), config.max_bytes_per_msg);
        let last = entries.last().map_or(prev_index, |e| e.index);
        let leader_commit = log.committed();
        pr.commit_sent = pr.commit_sent.max(leader_commit.min(last));
        pr.sent_append(last, !entries.is_empty());
        let body = MessageBody::AppendEntries(AppendEntries { prev_log: EntryId::new(prev_term, prev_index), entries, leader_commit });
        outbox.now.push(Message { from: *id, to, term: *term, body });
    }

    /// A heartbeat to one peer: the commit index it may learn, and the latest read round.
    fn send_heartbeat(&mut self, to: NodeId) {
        let Node { role: Role::Leader(leader), log, outbox, term, id, .. } = self else { return };
        let read_round = leader.reads.latest_round();
        let pr = leader.progress_mut(to).expect("heartbeats go to members");
        // Never tell a follower to commit past what it is known to hold (§5.3).
        let commit = pr.matched.min(log.committed());
        pr.commit_sent = pr.commit_sent.max(commit);
        outbox.now.push(Message { from: *id, to, term: *term, body: MessageBody::Heartbeat(Heartbeat { commit, read_round }) });
    }

    /// Heartbeats to every peer (on the heartbeat tick, or to confirm leadership for reads).
    pub(super) fn broadcast_heartbeats(&mut self) {
        let Role::Leader(leader) = &mut self.role else { return };
        leader.reads.mark_broadcast();
        let peers: smallvec_ids::Ids = leader.progress.iter().map(|(id, _)| *id).filter(|&id| id != self.id).collect();
        for to in peers {
            self.send_heartbeat(to);
        }
    }

    // ---------------------------------------------------------------------------------------
    // Leader: answers and the commit rule
    // ---------------------------------------------------------------------------------------

    pub(super) fn handle_append_response(&mut self, from: NodeId, resp: AppendResponse) {
        let Node { role: Role::Leader(leader), log, .. } = self else { return };
        let Some(pr) = leader.progress_mut(from) else { return };
        pr.recent_active = true;
        pr.ticks_since_contact = 0;
        match resp {
            AppendResponse::Accepted { match_index } => {
                if match_index > log.last_index() {
                    return; // cannot be an answer to anything this leader sent
                }
                let answers_probe = pr.state == ReplicationState::Probe && match_index == pr.next.prev();
                if pr.maybe_update(match_index) || answers_probe {
                    match pr.state {
                        ReplicationState::Probe => pr.become_replicate(),
                        ReplicationState::Snapshot if pr.snapshot.as_ref().is_some_and(|t| pr.matched >= t.snapshot.index) => {
                            pr.become_probe()
                        }
                        _ => {}
                    }
                    self.maybe_commit();
                    self.maybe_send_timeout_now();
                }
            }
            AppendResponse::Rejected { rejected, hint } => {
                // Skip every entry of a term the follower cannot have (fast backtracking).
                let probe_at = if hint.term > Term(0) { log.find_conflict_by_term(hint.index, hint.term).index } else { hint.index };
                if pr.maybe_decrease_to(rejected, probe_at) && pr.state == ReplicationState::Replicate {
                    pr.stream_broke();
                }
            }
        }
    }

    pub(super) fn handle_heartbeat_response(&mut self, from: NodeId, resp: HeartbeatResponse) {
        let last = self.log.last_index();
        let Role::Leader(leader) = &mut self.role else { return };
        // Only rounds this leader issued count (a bogus echo must not confirm reads).
        let read_round = resp.read_round.min(leader.reads.latest_round());
        let Some(pr) = leader.progress_mut(from) else { return };
        pr.recent_active = true;
        pr.ticks_since_contact = 0;
        // The peer is alive: a lost probe may be sent again.
        pr.probe_sent = false;
        // Streaming, but nothing acknowledged for a whole heartbeat round while entries are
        // outstanding: appends were lost. Probe again from the match.
        if pr.state == ReplicationState::Replicate && pr.matched < last && pr.matched == pr.matched_at_heartbeat {
            pr.stream_broke();
        }
        pr.matched_at_heartbeat = pr.matched;
        pr.read_round = pr.read_round.max(read_round);
        self.maybe_confirm_reads();
    }

    /// The leader's own log counts toward commitment once durable (thesis §10.2.1).
    pub(super) fn leader_update_own_match(&mut self) {
        let persisted = self.log.persisted();
        let Role::Leader(leader) = &mut self.role else { return };
        let own = leader.progress_mut(self.id).expect("the leader tracks itself");
        if own.maybe_update(persisted) {
            self.maybe_commit();
        }
    }

    /// The commit rule (§5.3, §5.4.2): the highest index replicated on a quorum commits, but only
    /// if it belongs to the leader's term; earlier terms' entries commit indirectly with it.
    pub(super) fn maybe_commit(&mut self) -> bool {
        let Role::Leader(leader) = &self.role else { return false };
        let quorum_index = LogIndex(self.log.membership().committed(|id| leader.progress(id).map_or(0, |p| p.matched.0)));
        if quorum_index <= self.log.committed() {
            return false;
        }
        // Figure 8: counting replicas of an older term's entry is not enough.
        #[cfg(not(raft_bug = "commit_previous_term_by_counting"))]
        if self.log.term(quorum_index) != Some(self.term) {
            return false;
        }
        self.log.commit_to(quorum_index);
        self.on_leader_commit_advanced();
        true
    }

    fn on_leader_commit_advanced(&mut self) {
        self.release_reads_waiting_for_commit();
        self.maybe_finish_membership_change();
    }

    // ---------------------------------------------------------------------------------------
    // Followers
    // ---------------------------------------------------------------------------------------

    /// Any message from the current leader: (pre-)candidates learn there is one and step down.
    pub(super) fn follow(&mut self, from: NodeId) -> Result<()> {
        match self.role {
            Role::Leader(_) => {
                return Err(Error::InvalidMessage { from, reason: format!("a second leader in term {}", self.term) });
            }
            Role::Follower => {}
            Role::PreCandidate(_) | Role::Candidate(_) => self.become_follower(self.term, Some(from)),
        }
        self.leader = Some(from);
        self.election_elapsed = 0;
        Ok(())
    }

    /// AppendEntries receiver (Figure 2). Answers after everything it promises is durable.
    pub(super) fn handle_append_entries(&mut self, from: NodeId, msg_term: Term, mut req: AppendEntries) -> Result<()> {
        validate_entries(from, msg_term, &req)?;
        self.follow(from)?;
        let committed = self.log.committed();
        if req.prev_log.index < committed {
            // Everything up to our commit index matches the leader's log already. Keep only what
            // follows it, if the message reaches that far.
            let skip = (committed.0 - req.prev_log.index.0) as usize;
            if skip > req.entries.len()
                || req.entries[skip - 1].id() != EntryId::new(self.log.term(committed).unwrap_or(Term(0)), committed)
            {
                self.send_after_persist(from, MessageBody::AppendEntriesResponse(AppendResponse::Accepted { match_index: committed }));
                return Ok(());
            }
            req.prev_log = req.entries[skip - 1].id();
            req.entries.drain(..skip);
        }
        let answer = match self.log.maybe_append(req.prev_log, req.entries) {
            Err(Error::InvalidMessage { reason, .. }) => return Err(Error::InvalidMessage { from, reason }),
            Err(e) => return Err(Error::InvalidMessage { from, reason: e.to_string() }),
            Ok(Some(appended)) => {
                self.record_dropped(appended.dropped);
                // Commit only what this message verified to match the leader's log.
                self.log.commit_to(req.leader_commit.min(appended.last_verified));
                AppendResponse::Accepted { match_index: appended.last_verified }
            }
            Ok(None) => {
                let hint = self.log.find_conflict_by_term(req.prev_log.index.min(self.log.last_index()), req.prev_log.term);
                AppendResponse::Rejected { rejected: req.prev_log.index, hint }
            }
        };
        self.send_after_persist(from, MessageBody::AppendEntriesResponse(answer));
        Ok(())
    }

    pub(super) fn handle_heartbeat(&mut self, from: NodeId, hb: Heartbeat) {
        if self.follow(from).is_err() {
            return;
        }
        // The leader caps the commit index at our match, so these entries are ours already.
        self.log.commit_to(hb.commit.min(self.log.last_index()));
        self.send(from, MessageBody::HeartbeatResponse(HeartbeatResponse { read_round: hb.read_round }));
    }

    /// Proposals a follower forwarded. A leader appends what it can; anything refused is lost
    /// and the follower's caller times out. Non-leaders drop them (no forwarding chains).
    pub(super) fn handle_forwarded_proposals(&mut self, _from: NodeId, proposals: ForwardedProposals) {
        if !self.is_leader() {
            return;
        }
        for data in proposals.data {
            if self.leader_append_proposal(EntryKind::Normal, data).is_err() {
                break;
            }
        }
    }
}

/// Structural checks of an AppendEntries before it touches the log: entries consecutive after
/// prev_log, terms never decreasing and never beyond the sender's term.
fn validate_entries(from: NodeId, msg_term: Term, req: &AppendEntries) -> Result<()> {
    let invalid = |reason: &str| Err(Error::InvalidMessage { from, reason: reason.to_string() });
    let mut prev = req.prev_log;
    if prev.term > msg_term {
        return invalid("prev_log term beyond the sender's term");
    }
    for e in &req.entries {
        if e.index != prev.index.next() {
            return invalid("entries do not follow prev_log consecutively");
        }
        if e.term < prev.term || e.term > msg_term {
            return invalid("entry terms must not decrease nor exceed the sender's term");
        }
        if e.kind == EntryKind::Blank && !e.data.is_empty() {
            return invalid("a blank entry with data");
        }
        prev = e.id();
    }
    Ok(())
}

impl LeaderState {
    /// Adds and removes progress entries so they match `members` (plus the leader itself).
    pub(super) fn sync_members(&mut self, members: impl Iterator<Item = NodeId>, leader_id: NodeId, next: LogIndex, max_inflight: usize) {
        let mut wanted: Vec<NodeId> = members.collect();
        if !wanted.contains(&leader_id) {
            wanted.push(leader_id);
            wanted.sort_unstable();
        }
        let old = std::mem::take(&mut self.progress);
        let mut old = old.into_iter().peekable();
        for id in wanted {
            while old.peek().is_some_and(|(o, _)| *o < id) {
                old.next();
            }
            match old.peek() {
                Some((o, _)) if *o == id => self.progress.push(old.next().expect("peeked")),
                _ => self.progress.push((id, Progress::new(next, max_inflight))),
            }
        }
    }
}

/// A small inline list of node ids, to iterate peers while mutating the node.
pub(super) mod smallvec_ids {
    use crate::types::NodeId;

    /// Up to 8 ids inline; more spill to the heap.
    #[derive(Default)]
    pub(crate) struct Ids {
        inline: [NodeId; 8],
        len: usize,
        spill: Vec<NodeId>,
    }

    impl FromIterator<NodeId> for Ids {
        fn from_iter<I: IntoIterator<Item = NodeId>>(iter: I) -> Self {
            let mut ids = Ids::default();
            for id in iter {
                if ids.len < ids.inline.len() {
                    ids.inline[ids.len] = id;
                    ids.len += 1;
                } else {
                    ids.spill.push(id);
                }
            }
            ids
        }
    }

    impl IntoIterator for Ids {
        type Item = NodeId;
        type IntoIter = std::iter::Chain<std::iter::Take<std::array::IntoIter<NodeId, 8>>, std::vec::IntoIter<NodeId>>;

        fn into_iter(self) -> Self::IntoIter {
            self.inline.into_iter().take(self.len).chain(self.spill)
        }
    }
}
