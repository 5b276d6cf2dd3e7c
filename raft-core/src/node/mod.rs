//! The Raft node: one server's state machine. Inputs are method calls, outputs are drained with
//! [`Node::ready`]. See the crate documentation for the driver contract.
//!
//! This module holds the node's state, the Ready/acknowledgement protocol, ticks, the term rules
//! common to every role (§5.1) and the role transitions (`become_*`). The rules of each concern
//! live in submodules: `election` (§5.2, PreVote, transfer), `replication` (§5.3, §5.4, flow
//! control), `reads` (ReadIndex), `snapshot` (§7) and `membership` (§6).

mod election;
mod membership;
mod reads;
mod replication;
mod snapshot;

#[cfg(test)]
mod tests;

use std::collections::VecDeque;

use bytes::Bytes;
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

use crate::config::Config;
use crate::entry::{Entry, EntryKind};
use crate::error::{Error, Result};
use crate::log::RaftLog;
use crate::membership::Membership;
use crate::message::{Message, MessageBody};
use crate::progress::{Progress, ReplicationState};
use crate::ready::{Bootstrap, DroppedEntries, HardState, PersistedState, ReadState, Ready, ReadyNumber, RoleKind, RoleState};
use crate::snapshot::{IncomingSnapshot, Snapshot};
use crate::types::{EntryId, LogIndex, NodeId, Term};

use reads::ReadQueue;

/// The result of a successful [`Node::propose`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proposed {
    /// The leader appended the proposal as this entry. It is committed when an entry with this
    /// id is handed out in [`Ready::committed_entries`]; it will never commit if an entry with
    /// the same index and another term is, or if it appears in [`Ready::dropped`].
    Appended(EntryId),
    /// A follower forwarded the proposal to the leader it knows. The follower cannot track it:
    /// recognise it when applied (e.g. by a request id inside the command) or time out.
    Forwarded {
        /// Where it went.
        leader: NodeId,
    },
}

/// What the leader knows about one member, from [`Node::progress`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerProgress {
    /// The member.
    pub id: NodeId,
    /// Whether it votes (in either half of a joint configuration).
    pub is_voter: bool,
    /// Highest index known to be replicated and durable on it.
    pub match_index: LogIndex,
    /// Next index the leader will send it.
    pub next_index: LogIndex,
    /// The replication state.
    pub state: ReplicationState,
    /// Ticks since it last answered (0 for the leader itself).
    pub ticks_since_contact: u64,
}

/// Messages produced while handling inputs: those that may leave at once, and those that must
/// wait until the state they depend on is durable (votes, append acknowledgements).
#[derive(Debug, Default)]
struct Outbox {
    now: Vec<Message>,
    after_persist: Vec<Message>,
}

/// A Ready whose persistence part the driver has not yet confirmed.
#[derive(Debug)]
struct PendingPersist {
    number: ReadyNumber,
    last_entry: Option<EntryId>,
    snapshot: Option<EntryId>,
    /// Messages released once this Ready (and every earlier one) is durable.
    messages: Vec<Message>,
}

/// Votes received by a (pre-)candidate, one per voter.
#[derive(Debug, Default)]
struct VoteTally {
    votes: Vec<(NodeId, bool)>,
}

/// A leadership transfer in progress (thesis §3.10).
#[derive(Debug, Clone, Copy)]
struct Transfer {
    to: NodeId,
    /// TimeoutNow was sent (the target caught up).
    timeout_now_sent: bool,
}

/// The leader's volatile state (Figure 2, "volatile state on leaders"), plus flow control,
/// reads and transfer.
#[derive(Debug)]
struct LeaderState {
    /// One entry per member, this node included, sorted by id.
    progress: Vec<(NodeId, Progress)>,
    heartbeat_elapsed: u32,
    transfer: Option<Transfer>,
    reads: ReadQueue,
    /// Payload bytes of this term's entries not yet handed out as committed.
    uncommitted_bytes: u64,
    /// The commit index when this node became leader: any later one is an entry of its term.
    commit_at_election: LogIndex,
}

impl LeaderState {
    fn progress(&self, id: NodeId) -> Option<&Progress> {
        self.progress.binary_search_by_key(&id, |(i, _)| *i).ok().map(|k| &self.progress[k].1)
    }

    fn progress_mut(&mut self, id: NodeId) -> Option<&mut Progress> {
        self.progress.binary_search_by_key(&id, |(i, _)| *i).ok().map(|k| &mut self.progress[k].1)
    }
}

/// The node's role, carrying the state only that role has.
#[derive(Debug)]
enum Role {
    Follower,
    PreCandidate(VoteTally),
    Candidate(VoteTally),
    Leader(Box<LeaderState>),
}

/// One Raft server. See the crate documentation for how to drive it.
#[derive(Debug)]
pub struct Node {
    id: NodeId,
    config: Config,
    term: Term,
    vote: Option<NodeId>,
    /// The leader of `term`, if known.
    leader: Option<NodeId>,
    log: RaftLog,
    role: Role,
    /// Ticks since the last election or since hearing from the leader (leaders: since the last
    /// CheckQuorum).
    election_elapsed: u32,
    randomized_election_timeout: u32,
    rng: ChaCha8Rng,
    outbox: Outbox,
    next_ready: ReadyNumber,
    pending_persists: VecDeque<PendingPersist>,
    /// The hard state and role last handed out, to report changes.
    last_hard_state: HardState,
    last_role: Option<RoleState>,
    read_states: Vec<ReadState>,
    dropped: Vec<DroppedEntries>,
    /// The latest snapshot of the local state machine (sent to followers that fell behind).
    snapshot: Option<Snapshot>,
    /// A snapshot being received from the leader.
    incoming_snapshot: Option<IncomingSnapshot>,
    /// A received snapshot to hand to the driver in the next Ready.
    snapshot_to_install: Option<Snapshot>,
}

impl Node {
    /// A new node: one of the initial members of a new cluster, or a server that will join a
    /// running one (see [`Bootstrap`]). Its first [`Ready`] asks to persist its initial state.
    pub fn new(config: Config, bootstrap: Bootstrap) -> Result<Node> {
        config.validate()?;
        let mut node = Node::with_log(config, RaftLog::new(EntryId::ZERO, Membership::default()), HardState::default());
        // The hard state as if nothing was ever persisted, so the first Ready reports it.
        node.last_hard_state = HardState::default();
        if let Bootstrap::NewCluster { voters } = bootstrap {
            if !voters.contains(&node.id) {
                return Err(Error::InvalidMembership {
                    reason: format!("the initial voters {voters:?} do not include this node ({})", node.id),
                });
            }
            let membership = Membership::from_parts(voters, [], [])?;
            // Every initial member holds the same first entry, so it counts as committed.
            let first = Entry { term: Term(1), index: LogIndex(1), kind: EntryKind::Membership, data: membership.encode(b"") };
            node.term = Term(1);
            node.log.append_own(first);
            node.log.commit_to(LogIndex(1));
        }
        Ok(node)
    }

    /// Restarts a node from what its driver persisted. It comes back as a follower in its
    /// persisted term, with its vote, and never breaks a promise made before the crash. If the
    /// log holds entries of a later term than the hard state (a crash tore the last write after
    /// its entries, before its hard state), it comes back in that later term with no vote, and
    /// its first Ready persists it.
    ///
    /// # Errors
    ///
    /// [`Error::ConfigInvalid`] for a bad configuration; [`Error::InvalidPersistedState`] for a
    /// state no correct driver can have persisted (entries out of order, a vote for node 0, a
    /// commit index beyond the log).
    pub fn restart(config: Config, state: PersistedState) -> Result<Node> {
        config.validate()?;
        let invalid = |reason: String| Error::InvalidPersistedState { reason };
        let durable = state.hard_state;
        let PersistedState { snapshot, entries, applied, .. } = state;
        let log = RaftLog::restore(snapshot.as_ref().map(|s| &s.meta), entries, durable.commit, applied)?;
        if durable.vote == Some(NodeId(0)) {
            return Err(invalid("a vote for node 0".into()));
        }
        // A crash may tear the write of a Ready between its entries (or snapshot) and its hard
        // state, which the output contract puts last: the log then holds entries of a term the
        // durable hard state never reached. They are entries of a real leader of that term, never
        // acknowledged (nothing is before the whole Ready is durable); keeping them is as safe as
        // having received them. But a node is never in a term older than its own log: move to
        // that term with no vote. The node cast no vote in it (a vote is durable before it is
        // sent), and declining to vote is always safe. The first Ready persists the new term.
        let last_term = log.last_id().term;
        let hs = if last_term > durable.term { HardState { term: last_term, vote: None, commit: durable.commit } } else { durable };
        let mut node = Node::with_log(config, log, hs);
        node.last_hard_state = durable;
        node.snapshot = snapshot;
        Ok(node)
    }

    fn with_log(config: Config, log: RaftLog, hs: HardState) -> Node {
        // One seed serves a whole cluster: mix in the id so nodes draw different timeouts.
        let seed = config.seed ^ config.id.0.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut node = Node {
            id: config.id,
            config,
            term: hs.term,
            vote: hs.vote,
            leader: None,
            log,
            role: Role::Follower,
            election_elapsed: 0,
            randomized_election_timeout: 0,
            rng: ChaCha8Rng::seed_from_u64(seed),
            outbox: Outbox::default(),
            next_ready: ReadyNumber(1),
            pending_persists: VecDeque::new(),
            last_hard_state: HardState::default(),
            last_role: None,
            read_states: Vec::new(),
            dropped: Vec::new(),
            snapshot: None,
            incoming_snapshot: None,
            snapshot_to_install: None,
        };
        node.last_hard_state = node.hard_state();
        node.reset_election_timer();
        node
    }

    // ---------------------------------------------------------------------------------------
    // Getters
    // ---------------------------------------------------------------------------------------

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The current term.
    pub fn term(&self) -> Term {
        self.term
    }

    /// The vote cast in the current term.
    pub fn vote(&self) -> Option<NodeId> {
        self.vote
    }

    /// The leader of the current term, if known (this node when it leads).
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }

    /// The current role.
    pub fn role(&self) -> RoleKind {
        match self.role {
            Role::Follower => RoleKind::Follower,
            Role::PreCandidate(_) => RoleKind::PreCandidate,
            Role::Candidate(_) => RoleKind::Candidate,
            Role::Leader(_) => RoleKind::Leader,
        }
    }

    /// Whether this node leads its term.
    pub fn is_leader(&self) -> bool {
        matches!(self.role, Role::Leader(_))
    }

    /// Whether this node is a learner (a member that does not vote).
    pub fn is_learner(&self) -> bool {
        self.log.membership().is_learner_only(self.id)
    }

    /// The hard state as it stands (possibly not yet persisted).
    pub fn hard_state(&self) -> HardState {
        HardState { term: self.term, vote: self.vote, commit: self.log.committed() }
    }

    /// Highest index known committed.
    pub fn commit_index(&self) -> LogIndex {
        self.log.committed()
    }

    /// Highest index handed out for applying.
    pub fn applied_index(&self) -> LogIndex {
        self.log.applied()
    }

    /// Highest index the driver confirmed durable.
    pub fn persisted_index(&self) -> LogIndex {
        self.log.persisted()
    }

    /// The last entry of the log.
    pub fn last_entry(&self) -> EntryId {
        self.log.last_id()
    }

    /// The first index still held in memory (everything before is in the snapshot).
    pub fn first_index(&self) -> LogIndex {
        self.log.first_index()
    }

    /// The term of the entry at `index`, if the log knows it.
    pub fn term_at(&self, index: LogIndex) -> Option<Term> {
        self.log.term(index)
    }

    /// The entry at `index`, if held in memory.
    pub fn entry(&self, index: LogIndex) -> Option<&Entry> {
        self.log.entry(index)
    }

    /// The membership in force (the latest membership entry in the log, committed or not).
    pub fn membership(&self) -> &Membership {
        self.log.membership()
    }

    /// Index of the entry that set the membership in force (0 when it came from a snapshot or
    /// bootstrap and was compacted).
    pub fn membership_index(&self) -> LogIndex {
        self.log.membership_index()
    }

    /// Number of log entries held in memory.
    pub fn resident_entries(&self) -> usize {
        self.log.resident_entries()
    }

    /// Bytes of log entries held in memory (payload plus per-entry overhead).
    pub fn resident_bytes(&self) -> u64 {
        self.log.resident_bytes()
    }

    /// The last entry covered by the latest snapshot (`EntryId::ZERO` if none). Entries up to
    /// it may still be held in memory (see [`crate::CompactionPolicy::retain_entries`]).
    pub fn snapshot_last(&self) -> EntryId {
        let compacted = self.log.snapshot_last();
        match &self.snapshot {
            Some(s) if s.meta.last.index >= compacted.index => s.meta.last,
            _ => compacted,
        }
    }

    /// On the leader: what it knows of every member, sorted by id. Empty on other nodes.
    pub fn progress(&self) -> Vec<PeerProgress> {
        let Role::Leader(leader) = &self.role else { return Vec::new() };
        let membership = self.log.membership();
        leader
            .progress
            .iter()
            .map(|(id, pr)| PeerProgress {
                id: *id,
                is_voter: membership.is_voter(*id),
                match_index: pr.matched,
                next_index: pr.next,
                state: pr.state,
                ticks_since_contact: if *id == self.id { 0 } else { pr.ticks_since_contact },
            })
            .collect()
    }

    /// The role, leader and term.
    pub fn role_state(&self) -> RoleState {
        RoleState { role: self.role(), leader: self.leader, term: self.term }
    }

    // ---------------------------------------------------------------------------------------
    // Outputs: Ready and the driver's acknowledgements
    // ---------------------------------------------------------------------------------------

    /// Whether [`Node::ready`] would return anything.
    pub fn has_ready(&self) -> bool {
        !self.outbox.now.is_empty()
            || !self.outbox.after_persist.is_empty()
            || self.log.has_unstable()
            || self.hard_state() != self.last_hard_state
            || self.last_role != Some(self.role_state())
            || self.log.has_committed_to_apply()
            || !self.read_states.is_empty()
            || !self.dropped.is_empty()
            || self.snapshot_to_install.is_some()
            || self.leader_has_sends()
    }

    /// Drains everything the driver must do now. See [`Ready`] for the order.
    pub fn ready(&mut self) -> Ready {
        #[cfg(raft_bug = "ack_before_persist")]
        self.bug_release_unpersisted_answers();
        self.flush_leader_sends();
        let number = self.next_ready;
        self.next_ready = ReadyNumber(number.0 + 1);
        let mut rd = Ready { number, ..Ready::default() };

        let role = self.role_state();
        if self.last_role != Some(role) {
            self.last_role = Some(role);
            rd.role = Some(role);
        }
        rd.snapshot = self.snapshot_to_install.take();
        let (truncate_from, entries) = self.log.take_unstable();
        rd.truncate_from = truncate_from;
        rd.entries = entries;
        let hs = self.hard_state();
        let mut term_or_vote_changed = false;
        if hs != self.last_hard_state {
            term_or_vote_changed = (hs.term, hs.vote) != (self.last_hard_state.term, self.last_hard_state.vote);
            self.last_hard_state = hs;
            rd.hard_state = Some(hs);
        }
        rd.must_sync = term_or_vote_changed || rd.snapshot.is_some() || rd.truncate_from.is_some() || !rd.entries.is_empty();

        rd.committed_entries = self.log.take_committed(self.config.max_committed_bytes_per_ready);
        if let Role::Leader(leader) = &mut self.role {
            let own: u64 = rd.committed_entries.iter().filter(|e| e.term == self.term).map(Entry::payload_bytes).sum();
            leader.uncommitted_bytes = leader.uncommitted_bytes.saturating_sub(own);
        }
        rd.read_states = std::mem::take(&mut self.read_states);
        rd.dropped = std::mem::take(&mut self.dropped);
        rd.snapshot_due = self.snapshot_due();

        // Answers that depend on durable state wait for this Ready (and every earlier one).
        let held = std::mem::take(&mut self.outbox.after_persist);
        if rd.must_sync {
            self.pending_persists.push_back(PendingPersist {
                number,
                last_entry: rd.entries.last().map(Entry::id),
                snapshot: rd.snapshot.as_ref().map(|s| s.meta.last),
                messages: held,
            });
        } else if let Some(last) = self.pending_persists.back_mut() {
            last.messages.extend(held);
        } else {
            self.outbox.now.extend(held);
        }
        rd.messages = std::mem::take(&mut self.outbox.now);
        rd
    }

    /// The driver made the persistence part of every Ready up to `number` durable. Releases the
    /// answers that waited for it (they appear in the next [`Node::ready`]) and lets the leader
    /// count its own log toward commitment.
    ///
    /// # Panics
    ///
    /// If `number` was never handed out: that is a driver bug.
    pub fn on_persisted(&mut self, number: ReadyNumber) {
        assert!(number < self.next_ready, "acknowledging Ready {number:?} that was never handed out");
        while self.pending_persists.front().is_some_and(|p| p.number <= number) {
            let done = self.pending_persists.pop_front().expect("checked non-empty");
            if let Some(snapshot) = done.snapshot {
                self.log.snapshot_persisted(snapshot);
            }
            if let Some(last) = done.last_entry {
                self.log.persisted_to(last);
            }
            for m in done.messages {
                if m.to == self.id {
                    // A candidate's vote for itself counts only once durable.
                    self.handle_message(m).expect("a node's message to itself is well formed");
                } else {
                    self.outbox.now.push(m);
                }
            }
        }
        self.leader_update_own_match();
    }

    /// Shorthand for a synchronous driver: the Ready was fully handled (persisted, sent,
    /// applied).
    pub fn advance(&mut self, ready: &Ready) {
        self.on_persisted(ready.number);
    }

    /// Whether the compaction policy says a snapshot is due.
    pub fn snapshot_due(&self) -> bool {
        let (_, bytes) = self.log.applied_since_snapshot();
        let entries = self.log.applied().0.saturating_sub(self.snapshot_last().index.0);
        let policy = self.config.compaction;
        policy.max_entries.is_some_and(|max| entries >= max) || policy.max_bytes.is_some_and(|max| bytes >= max)
    }

    #[cfg(raft_bug = "ack_before_persist")]
    fn bug_release_unpersisted_answers(&mut self) {
        // BUG: answer votes and appends before the state they promise is durable.
        for m in std::mem::take(&mut self.outbox.after_persist) {
            if m.to == self.id {
                let _ = self.handle_message(m);
            } else {
                self.outbox.now.push(m);
            }
        }
    }

    // ---------------------------------------------------------------------------------------
    // Inputs
    // ---------------------------------------------------------------------------------------

    /// One logical clock tick: drives election timeouts, heartbeats and CheckQuorum.
    pub fn tick(&mut self) {
        if self.is_leader() {
            self.tick_leader();
        } else {
            self.tick_election();
        }
    }

    /// Handles a message from another node. A malformed message is refused with
    /// [`Error::InvalidMessage`] and changes nothing.
    pub fn step(&mut self, m: Message) -> Result<()> {
        if m.to != self.id {
            return Err(Error::InvalidMessage { from: m.from, reason: format!("addressed to {}, not to this node ({})", m.to, self.id) });
        }
        if m.from == self.id || !m.from.is_valid() {
            return Err(Error::InvalidMessage { from: m.from, reason: "invalid sender".into() });
        }
        self.handle_message(m)
    }

    /// Proposes a command. On the leader it is appended and its entry id returned; on a follower
    /// it is forwarded to the leader (if [`Config::forward_proposals`] and a leader is known) or
    /// refused with [`Error::NotLeader`].
    pub fn propose(&mut self, data: impl Into<Bytes>) -> Result<Proposed> {
        let data = data.into();
        match &self.role {
            Role::Leader(_) => self.leader_append_proposal(EntryKind::Normal, data).map(Proposed::Appended),
            _ => match self.leader {
                Some(leader) if self.config.forward_proposals => {
                    let size = data.len() as u64;
                    if size + crate::entry::ENTRY_OVERHEAD_BYTES > self.config.max_bytes_per_msg {
                        return Err(Error::ProposalTooLarge { size, limit: self.config.max_bytes_per_msg });
                    }
                    self.send(leader, MessageBody::Propose(crate::message::ForwardedProposals { data: vec![data] }));
                    Ok(Proposed::Forwarded { leader })
                }
                leader_hint => Err(Error::NotLeader { leader_hint }),
            },
        }
    }

    /// Starts an election now (as if the election timeout had elapsed), with a pre-vote round
    /// if enabled. Ignored on leaders, learners and non-members.
    pub fn campaign(&mut self) {
        if !self.is_leader() && self.is_promotable() {
            self.start_election(false);
        }
    }

    /// The driver could not reach `peer` (e.g. the connection failed). A leader stops streaming
    /// to it optimistically and probes instead.
    pub fn report_unreachable(&mut self, peer: NodeId) {
        if let Role::Leader(leader) = &mut self.role {
            if let Some(pr) = leader.progress_mut(peer) {
                if pr.state == ReplicationState::Replicate {
                    pr.become_probe();
                }
            }
        }
    }

    // ---------------------------------------------------------------------------------------
    // Dispatch and the term rules common to all roles (§5.1)
    // ---------------------------------------------------------------------------------------

    fn handle_message(&mut self, m: Message) -> Result<()> {
        if !self.check_term(&m) {
            return Ok(());
        }
        let from = m.from;
        match m.body {
            MessageBody::RequestVote(req) => self.handle_vote_request(from, m.term, req),
            MessageBody::RequestVoteResponse(resp) => self.handle_vote_response(from, resp),
            MessageBody::AppendEntries(req) => return self.handle_append_entries(from, m.term, req),
            MessageBody::AppendEntriesResponse(resp) => self.handle_append_response(from, resp),
            MessageBody::Heartbeat(hb) => self.handle_heartbeat(from, hb),
            MessageBody::HeartbeatResponse(resp) => self.handle_heartbeat_response(from, resp),
            MessageBody::TimeoutNow => self.handle_timeout_now(from),
            MessageBody::ReadIndex(req) => self.handle_read_index_request(from, req),
            MessageBody::ReadIndexResponse(resp) => self.handle_read_index_response(resp),
            MessageBody::Propose(p) => self.handle_forwarded_proposals(from, p),
            MessageBody::InstallSnapshot(chunk) => return self.handle_snapshot_chunk(from, *chunk),
            MessageBody::InstallSnapshotResponse(resp) => self.handle_snapshot_response(from, resp),
        }
        Ok(())
    }

    /// Applies §5.1's rules to `m`'s term. Returns whether the message should be handled further.
    fn check_term(&mut self, m: &Message) -> bool {
        use MessageBody as B;
        // Forwarded requests carry no leadership information.
        if matches!(m.body, B::Propose(_) | B::ReadIndex(_) | B::ReadIndexResponse(_)) {
            return true;
        }
        if m.term > self.term {
            if let B::RequestVote(req) = &m.body {
                // Thesis §4.2.3/§9.6: a node that heard from a live leader within the election
                // timeout does not let a (possibly disruptive) candidate depose it.
                if self.in_leader_lease() && !req.leadership_transfer {
                    return false;
                }
                if req.pre_vote {
                    // A pre-vote never changes anyone's term.
                    return true;
                }
            }
            if let B::RequestVoteResponse(resp) = &m.body {
                if resp.pre_vote && resp.granted {
                    // A granted pre-vote carries the term the pre-candidate asked about.
                    return true;
                }
            }
            let leader = matches!(m.body, B::AppendEntries(_) | B::Heartbeat(_) | B::InstallSnapshot(_)).then_some(m.from);
            self.become_follower(m.term, leader);
            return true;
        }
        if m.term < self.term {
            match &m.body {
                // A stale leader (e.g. back from a partition) learns the new term and steps
                // down; without this, CheckQuorum and PreVote could leave it stranded.
                B::AppendEntries(_) | B::Heartbeat(_) | B::InstallSnapshot(_) if self.config.check_quorum || self.config.pre_vote => {
                    self.send(m.from, B::HeartbeatResponse(crate::message::HeartbeatResponse { read_round: 0 }));
                }
                // A pre-candidate with a stale term learns ours, so it stops asking.
                B::RequestVote(req) if req.pre_vote => {
                    self.send(m.from, B::RequestVoteResponse(crate::message::VoteResponse { pre_vote: true, granted: false }));
                }
                _ => {}
            }
            return false;
        }
        true
    }

    /// Whether this node believes a leader is alive (it heard from it within the election
    /// timeout). Only meaningful with CheckQuorum.
    fn in_leader_lease(&self) -> bool {
        self.config.check_quorum && self.leader.is_some() && self.election_elapsed < self.config.election_ticks
    }

    // ---------------------------------------------------------------------------------------
    // Transitions
    // ---------------------------------------------------------------------------------------

    fn become_follower(&mut self, term: Term, leader: Option<NodeId>) {
        assert!(term >= self.term, "terms never decrease ({} -> {term})", self.term);
        if term > self.term {
            self.term = term;
            self.vote = None;
        }
        self.role = Role::Follower;
        self.leader = leader;
        self.reset_election_timer();
    }

    fn become_pre_candidate(&mut self) {
        assert!(!self.is_leader(), "a leader does not campaign");
        // Thesis §9.6: neither term nor vote changes in a pre-vote.
        self.role = Role::PreCandidate(VoteTally::default());
        self.leader = None;
        self.reset_election_timer();
    }

    fn become_candidate(&mut self) {
        assert!(!self.is_leader(), "a leader does not campaign");
        self.term = self.term.next();
        self.vote = Some(self.id);
        self.role = Role::Candidate(VoteTally::default());
        self.leader = None;
        self.reset_election_timer();
    }

    fn become_leader(&mut self) {
        assert!(matches!(self.role, Role::Candidate(_)), "only a candidate becomes leader");
        assert_eq!(self.vote, Some(self.id), "a leader voted for itself");
        let next = self.log.last_index().next();
        let max_inflight = self.config.max_inflight_msgs;
        let progress = self.replication_targets().into_iter().map(|id| (id, Progress::new(next, max_inflight))).collect();
        self.role = Role::Leader(Box::new(LeaderState {
            progress,
            heartbeat_elapsed: 0,
            transfer: None,
            reads: ReadQueue::default(),
            uncommitted_bytes: 0,
            commit_at_election: self.log.committed(),
        }));
        self.leader = Some(self.id);
        self.election_elapsed = 0;
        // §5.4.2, §8: a blank entry of the new term lets the leader commit what earlier leaders
        // left uncommitted and learn the commit index for reads.
        let blank = Entry { term: self.term, index: next, kind: EntryKind::Blank, data: Bytes::new() };
        self.log.append_own(blank);
        self.leader_update_own_match();
    }

    fn reset_election_timer(&mut self) {
        self.election_elapsed = 0;
        let ticks = self.config.election_ticks;
        self.randomized_election_timeout = ticks + (self.rng.next_u64() % u64::from(ticks)) as u32;
    }

    /// Whether this node may campaign: it votes in its latest membership, or in the one in force
    /// at its commit index. A server removed by a change that is not yet committed must still
    /// campaign, since the cluster may need it to commit that change (thesis §4.2.2); its own vote
    /// then does not count, because tallies only count the latest membership's voters.
    fn is_promotable(&self) -> bool {
        self.log.membership().is_voter(self.id) || self.log.membership_at(self.log.committed()).is_voter(self.id)
    }

    // ---------------------------------------------------------------------------------------
    // Helpers
    // ---------------------------------------------------------------------------------------

    /// Queues a message that may leave now.
    fn send(&mut self, to: NodeId, body: MessageBody) {
        self.outbox.now.push(Message { from: self.id, to, term: self.term, body });
    }

    /// Queues a message that may leave only after everything handed out so far is durable.
    fn send_after_persist(&mut self, to: NodeId, body: MessageBody) {
        self.outbox.after_persist.push(Message { from: self.id, to, term: self.term, body });
    }

    fn record_dropped(&mut self, dropped: Vec<DroppedEntries>) {
        self.dropped.extend(dropped);
    }

    // ---------------------------------------------------------------------------------------
    // Invariants
    // ---------------------------------------------------------------------------------------

    /// Asserts every invariant the node maintains about itself. Cheap enough to call after every
    /// event in tests and the simulator.
    ///
    /// # Panics
    ///
    /// On the first violated invariant, naming it.
    pub fn check_invariants(&self) {
        self.log.check_invariants();
        assert!(self.log.last_id().term <= self.term, "no entry has a term beyond the current term");
        assert!(
            self.pending_persists.iter().zip(self.pending_persists.iter().skip(1)).all(|(a, b)| a.number < b.number),
            "pending Readies are in order"
        );
        match &self.role {
            Role::Follower => {}
            Role::PreCandidate(_) => assert_eq!(self.leader, None, "a pre-candidate knows no leader"),
            Role::Candidate(_) => {
                assert_eq!(self.vote, Some(self.id), "a candidate votes for itself");
                assert_eq!(self.leader, None, "a candidate knows no leader");
            }
            Role::Leader(leader) => {
                assert_eq!(self.vote, Some(self.id), "a leader voted for itself");
                assert_eq!(self.leader, Some(self.id), "a leader knows it leads");
                assert_eq!(self.log.last_id().term, self.term, "a leader's last entry is of its term");
                // The members of the latest and last committed configurations, and itself (a
                // leader being removed keeps leading until the change commits).
                let mut members = self.replication_targets();
                if !members.contains(&self.id) {
                    members.push(self.id);
                    members.sort_unstable();
                }
                let tracked: Vec<NodeId> = leader.progress.iter().map(|(id, _)| *id).collect();
                assert_eq!(members, tracked, "the leader tracks exactly the members and itself");
                for (id, pr) in &leader.progress {
                    assert!(pr.matched <= self.log.last_index(), "match of {id} within the log");
                    assert!(pr.next > pr.matched, "next of {id} beyond its match");
                    assert!(pr.next <= self.log.last_index().next(), "next of {id} at most last + 1");
                    assert!(pr.inflights.len() <= self.config.max_inflight_msgs, "inflight window of {id}");
                    assert!((1..=self.config.max_inflight_msgs).contains(&pr.inflights.limit()), "window limit of {id}");
                    assert_eq!(pr.state == ReplicationState::Snapshot, pr.snapshot.is_some(), "snapshot state of {id}");
                }
                let own = leader.progress(self.id).expect("the leader is a member");
                assert_eq!(own.matched, self.log.persisted(), "the leader's own match is its durable index");
                // §5.4.2: a leader commits by counting replicas only entries of its own term.
                let commit = self.log.committed();
                if commit > leader.commit_at_election {
                    assert_eq!(
                        self.log.term(commit),
                        Some(self.term),
                        "a leader's commit index moved to an entry of another term (§5.4.2)"
                    );
                }
            }
        }
    }
}
