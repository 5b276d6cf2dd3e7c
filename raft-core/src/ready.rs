//! What the core hands to the driver ([`Ready`]) and what the driver hands back on restart.

use bytes::Bytes;

#[cfg(feature = "serde")]
use serde::{Deserialize, Serialize};

use crate::entry::Entry;
use crate::message::Message;
use crate::snapshot::{Snapshot, SnapshotMeta};
use crate::types::{LogIndex, NodeId, Term};

/// The state Raft must persist besides the log (Figure 2): current term and vote, plus the
/// commit index (not needed for safety, it saves re-learning it after a restart).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct HardState {
    /// Latest term the node has seen.
    pub term: Term,
    /// The candidate voted for in `term`, if any.
    pub vote: Option<NodeId>,
    /// Highest index known committed.
    pub commit: LogIndex,
}

/// A node's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub enum RoleKind {
    /// Follows a leader (or waits for one). Learners are always followers.
    Follower,
    /// Asking whether it could win an election, without changing term (PreVote).
    PreCandidate,
    /// Campaigning in its current term.
    Candidate,
    /// Leads its current term.
    Leader,
}

/// Role, leader and term, reported in a [`Ready`] whenever any of them changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct RoleState {
    /// The node's role.
    pub role: RoleKind,
    /// The leader it knows of in `term`, if any (itself when leading).
    pub leader: Option<NodeId>,
    /// The node's current term.
    pub term: Term,
}

/// A linearizable read that may now be served: once the state machine has applied `index`,
/// reading it gives a result at least as recent as any write acknowledged before the read was
/// requested (thesis §6.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct ReadState {
    /// The caller's id for the read, as given to [`crate::Node::read_index`].
    pub ctx: u64,
    /// Serve the read after applying at least this index.
    pub index: LogIndex,
}

/// Entries removed from this node's log without having been committed here: any proposal among
/// them (match by index and term) will never commit and can be failed at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct DroppedEntries {
    /// The term shared by the entries of this run.
    pub term: Term,
    /// First index of the run.
    pub first: LogIndex,
    /// Last index of the run.
    pub last: LogIndex,
    /// `false`: the entries certainly never commit (they were replaced by conflicting ones).
    /// `true`: a snapshot replaced them, so they may have committed elsewhere and be part of the
    /// snapshot's state; check the state machine (e.g. the client session table).
    pub may_have_committed: bool,
}

/// Identifies a [`Ready`]; hand it back to [`crate::Node::on_persisted`] once its persistence
/// part is durable. Numbers increase by one per Ready.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReadyNumber(pub u64);

/// Everything the core wants done, drained with [`crate::Node::ready`]. Handle the parts in
/// this order (the crate docs explain why):
///
/// 1. **Persist**: delete stored entries from [`Ready::truncate_from`] on, install and store
///    [`Ready::snapshot`], append [`Ready::entries`], store [`Ready::hard_state`]; make it durable
///    (fsync) if [`Ready::must_sync`], then call [`crate::Node::on_persisted`].
/// 2. **Send** [`Ready::messages`] (they never depend on anything not yet durable).
/// 3. **Apply** [`Ready::committed_entries`] in order (after installing the snapshot, if any).
/// 4. **Serve** [`Ready::read_states`] once applied up to their index; fail proposals in
///    [`Ready::dropped`]; note [`Ready::role`] changes; take a snapshot if
///    [`Ready::snapshot_due`].
#[derive(Debug, Default)]
#[must_use = "a Ready holds work the driver must do"]
pub struct Ready {
    /// This Ready's number, for [`crate::Node::on_persisted`].
    pub number: ReadyNumber,
    /// Role, leader or term changed since the last Ready.
    pub role: Option<RoleState>,
    /// Term, vote or commit changed: store it.
    pub hard_state: Option<HardState>,
    /// A snapshot received from the leader: restore the state machine from it and store it.
    /// Stored entries up to its index are no longer needed.
    pub snapshot: Option<Snapshot>,
    /// Before appending, delete every stored entry with an index at or above this one (they
    /// conflicted with the leader's log).
    pub truncate_from: Option<LogIndex>,
    /// Entries to append to stable storage, consecutive.
    pub entries: Vec<Entry>,
    /// Whether the persistence part must be durable (fsync) before [`crate::Node::on_persisted`]:
    /// true when it holds entries, a snapshot, a truncation or a new term or vote. A commit-only
    /// hard state may be written lazily.
    pub must_sync: bool,
    /// Messages to send now. Answers that depend on durable state (votes, append
    /// acknowledgements) are held by the core until [`crate::Node::on_persisted`] confirms the
    /// state they depend on, and then appear here: a driver cannot send them early.
    pub messages: Vec<Message>,
    /// Committed entries to apply, in log order, each handed out exactly once.
    pub committed_entries: Vec<Entry>,
    /// Reads confirmed by a quorum (see [`ReadState`]).
    pub read_states: Vec<ReadState>,
    /// Entries removed from the log before committing (see [`DroppedEntries`]).
    pub dropped: Vec<DroppedEntries>,
    /// The compaction policy says a snapshot is due: snapshot the state machine at its applied
    /// index and hand it to [`crate::Node::compact`].
    pub snapshot_due: bool,
}

impl Ready {
    /// Whether there is anything to persist.
    pub fn has_persistence(&self) -> bool {
        self.hard_state.is_some() || self.snapshot.is_some() || self.truncate_from.is_some() || !self.entries.is_empty()
    }

    /// Whether the Ready holds nothing at all.
    pub fn is_empty(&self) -> bool {
        self.role.is_none()
            && !self.has_persistence()
            && self.messages.is_empty()
            && self.committed_entries.is_empty()
            && self.read_states.is_empty()
            && self.dropped.is_empty()
            && !self.snapshot_due
    }
}

/// How a fresh node starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Bootstrap {
    /// One of the initial members of a new cluster. Every initial member must be given the same
    /// list (including itself): each starts with the same first log entry, a membership entry
    /// with these voters at index 1, term 1, which counts as committed.
    NewCluster {
        /// The initial voters.
        voters: Vec<NodeId>,
    },
    /// A server that will join a running cluster: it starts with an empty log and no
    /// membership, never campaigns, and waits for a leader to send it the log after the
    /// cluster added it (as a learner).
    Join,
}

/// What a driver persisted, to restart a node from (see [`crate::Node::restart`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PersistedState {
    /// The last durable hard state.
    pub hard_state: HardState,
    /// The latest durable snapshot, if any: its metadata and data.
    pub snapshot: Option<Snapshot>,
    /// The durable entries after the snapshot, consecutive.
    pub entries: Vec<Entry>,
    /// The index the state machine has already applied (e.g. the snapshot's index when the state
    /// machine was just restored from it). Committed entries after it are handed out again.
    pub applied: LogIndex,
}

impl PersistedState {
    /// The snapshot metadata, if any.
    pub fn snapshot_meta(&self) -> Option<&SnapshotMeta> {
        self.snapshot.as_ref().map(|s| &s.meta)
    }
}

/// Snapshot data handed to [`crate::Node::compact`]: the state machine serialised at `index`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotData {
    /// The last applied index the state includes.
    pub index: LogIndex,
    /// The serialised state machine.
    pub data: Bytes,
}
