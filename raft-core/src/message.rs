//! Messages between Raft nodes. The driver moves them between nodes; encoding them for a wire is
//! the driver's business (enable the `serde` feature to derive serde traits).

use bytes::Bytes;

#[cfg(feature = "serde")]
use serde::{Deserialize, Serialize};

use crate::entry::Entry;
use crate::snapshot::SnapshotMeta;
use crate::types::{EntryId, LogIndex, NodeId, Term};

/// A message from one node to another. `term` is the sender's current term (§5.1), except for
/// the messages that carry no leadership information ([`MessageBody::Propose`] and
/// [`MessageBody::ReadIndex`]), whose term receivers ignore.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct Message {
    /// Sender.
    pub from: NodeId,
    /// Recipient.
    pub to: NodeId,
    /// The sender's current term.
    pub term: Term,
    /// What the message says.
    pub body: MessageBody,
}

/// The kinds of messages.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub enum MessageBody {
    /// RequestVote (§5.2), or a pre-vote (thesis §9.6) when `pre_vote` is set.
    RequestVote(VoteRequest),
    /// Answer to a RequestVote.
    RequestVoteResponse(VoteResponse),
    /// AppendEntries (§5.3).
    AppendEntries(AppendEntries),
    /// Answer to an AppendEntries.
    AppendEntriesResponse(AppendResponse),
    /// A leader's heartbeat: carries the commit index and the read round (thesis §6.4).
    Heartbeat(Heartbeat),
    /// Answer to a heartbeat.
    HeartbeatResponse(HeartbeatResponse),
    /// Leadership transfer: the recipient starts an election at once (thesis §3.10).
    TimeoutNow,
    /// A follower forwards a linearizable read to the leader.
    ReadIndex(ReadIndexRequest),
    /// The leader answers a forwarded read with the index to wait for.
    ReadIndexResponse(ReadIndexResponse),
    /// A follower forwards proposals to the leader.
    Propose(ForwardedProposals),
    /// One chunk of a snapshot (§7). Boxed: it is rare and large, and every other message
    /// stays small.
    InstallSnapshot(Box<SnapshotChunk>),
    /// Answer to a snapshot chunk.
    InstallSnapshotResponse(SnapshotResponse),
}

/// RequestVote arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct VoteRequest {
    /// A pre-vote: asks "would you vote for me in `term`?" without anyone changing term.
    pub pre_vote: bool,
    /// The candidate's last log entry, for the §5.4.1 up-to-date check.
    pub last_log: EntryId,
    /// Sent because of a leadership transfer: voters ignore their leader lease (thesis §3.10).
    pub leadership_transfer: bool,
}

/// RequestVote result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct VoteResponse {
    /// Answers a pre-vote.
    pub pre_vote: bool,
    /// Whether the vote was granted.
    pub granted: bool,
}

/// AppendEntries arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct AppendEntries {
    /// The entry immediately preceding `entries` (prevLogIndex, prevLogTerm).
    pub prev_log: EntryId,
    /// Entries to store, consecutive from `prev_log.index + 1`; empty for a probe.
    pub entries: Vec<Entry>,
    /// The leader's commit index.
    pub leader_commit: LogIndex,
}

/// AppendEntries result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub enum AppendResponse {
    /// The follower's log matches the leader's up to `match_index` (and that prefix is durable).
    Accepted {
        /// The last index known to match.
        match_index: LogIndex,
    },
    /// The follower has no entry matching `rejected` (the request's prev_log.index). `hint` is
    /// the follower's last entry whose index is at most `rejected` and whose term is at most the
    /// request's prev_log term: the leader can skip straight past every term that cannot match
    /// (fast backtracking, §5.3's optimisation as etcd implements it).
    Rejected {
        /// The request's prev_log.index.
        rejected: LogIndex,
        /// The follower's best guess of where the logs may match.
        hint: EntryId,
    },
}

/// Heartbeat arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct Heartbeat {
    /// The commit index, capped at what the leader knows the follower has (so a follower never
    /// commits an entry it has not verified).
    pub commit: LogIndex,
    /// The leader's latest read round; echoed back to confirm leadership for reads.
    pub read_round: u64,
}

/// Heartbeat result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct HeartbeatResponse {
    /// The read round of the heartbeat being answered.
    pub read_round: u64,
}

/// A forwarded read request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct ReadIndexRequest {
    /// The caller's id for the read, returned in the [`crate::ReadState`].
    pub ctx: u64,
}

/// The leader's answer to a forwarded read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct ReadIndexResponse {
    /// The caller's id for the read.
    pub ctx: u64,
    /// Once the follower has applied up to this index, the read is linearizable.
    pub index: LogIndex,
}

/// Proposals forwarded by a follower.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct ForwardedProposals {
    /// The commands, in order.
    pub data: Vec<Bytes>,
}

/// One chunk of a snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct SnapshotChunk {
    /// What the snapshot covers.
    pub meta: SnapshotMeta,
    /// Byte offset of `data` in the snapshot.
    pub offset: u64,
    /// The snapshot's total size in bytes.
    pub total_len: u64,
    /// The chunk.
    pub data: Bytes,
}

/// Answer to a snapshot chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct SnapshotResponse {
    /// The snapshot being answered (its last included entry).
    pub snapshot: EntryId,
    /// How many bytes the follower holds so far: the leader continues from there. Equal to the
    /// total length once the whole snapshot is durably installed.
    pub next_offset: u64,
    /// The snapshot is installed and durable (or was not needed: the follower already had it).
    pub done: bool,
}

impl MessageBody {
    /// A short name of the message kind, for traces and counters.
    pub fn name(&self) -> &'static str {
        match self {
            MessageBody::RequestVote(r) if r.pre_vote => "PreVote",
            MessageBody::RequestVote(_) => "RequestVote",
            MessageBody::RequestVoteResponse(r) if r.pre_vote => "PreVoteResponse",
            MessageBody::RequestVoteResponse(_) => "RequestVoteResponse",
            MessageBody::AppendEntries(_) => "AppendEntries",
            MessageBody::AppendEntriesResponse(AppendResponse::Accepted { .. }) => "AppendAccepted",
            MessageBody::AppendEntriesResponse(AppendResponse::Rejected { .. }) => "AppendRejected",
            MessageBody::Heartbeat(_) => "Heartbeat",
            MessageBody::HeartbeatResponse(_) => "HeartbeatResponse",
            MessageBody::TimeoutNow => "TimeoutNow",
            MessageBody::ReadIndex(_) => "ReadIndex",
            MessageBody::ReadIndexResponse(_) => "ReadIndexResponse",
            MessageBody::Propose(_) => "Propose",
            MessageBody::InstallSnapshot(_) => "InstallSnapshot",
            MessageBody::InstallSnapshotResponse(_) => "InstallSnapshotResponse",
        }
    }
}

impl Message {
    /// Approximate size in bytes, for transport limits and accounting.
    pub fn size_bytes(&self) -> u64 {
        const HEADER: u64 = 32;
        HEADER
            + match &self.body {
                MessageBody::AppendEntries(a) => a.entries.iter().map(Entry::size_bytes).sum(),
                MessageBody::Propose(p) => p.data.iter().map(|d| d.len() as u64 + 8).sum(),
                MessageBody::InstallSnapshot(c) => c.data.len() as u64 + 64,
                _ => 16,
            }
    }
}
