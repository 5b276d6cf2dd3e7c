//! The crate's one error type.

use crate::types::{LogIndex, NodeId};

/// Everything that can go wrong in an operation of the core. Programmer errors (breaking the
/// driver contract, e.g. acknowledging a Ready that was never handed out) are assertions, not
/// errors; everything that can come from the network, the disk or a user is an `Error`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The operation needs the leader. `leader_hint` is the leader this node believes in, if any;
    /// retry there.
    #[error("not the leader (leader hint: {leader_hint:?})")]
    NotLeader {
        /// The leader this node last heard from in its current term.
        leader_hint: Option<NodeId>,
    },
    /// The leader already holds `max_uncommitted_bytes` of uncommitted proposals; retry later.
    #[error("proposal dropped: {uncommitted} uncommitted bytes would exceed the limit of {limit}")]
    UncommittedLimit {
        /// Uncommitted payload bytes the proposal would bring the leader to.
        uncommitted: u64,
        /// The configured `max_uncommitted_bytes`.
        limit: u64,
    },
    /// The leader is handing leadership over and accepts no proposals until that ends.
    #[error("proposal dropped: leadership transfer to {to} in progress")]
    TransferInProgress {
        /// The transfer's target.
        to: NodeId,
    },
    /// A proposal larger than `max_bytes_per_msg` could never be replicated.
    #[error("proposal of {size} bytes exceeds max_bytes_per_msg {limit}")]
    ProposalTooLarge {
        /// The proposal's size in bytes.
        size: u64,
        /// The configured `max_bytes_per_msg`.
        limit: u64,
    },
    /// A configuration value is out of range.
    #[error("invalid config: {field}: {reason}")]
    ConfigInvalid {
        /// The offending field of [`crate::Config`].
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A membership change was refused, or a membership entry could not be decoded.
    #[error("invalid membership: {reason}")]
    InvalidMembership {
        /// Why.
        reason: String,
    },
    /// A membership change is already under way (appended at `pending_index` and not yet
    /// committed, or a joint configuration not yet left); one change at a time.
    #[error("a membership change is already in progress (entry {pending_index})")]
    MembershipChangeInProgress {
        /// The index of the change still in progress.
        pending_index: LogIndex,
    },
    /// The leader has not yet committed an entry of its own term, so it cannot change membership
    /// (thesis §4.1) yet; retry shortly.
    #[error("the leader has not yet committed an entry of its term")]
    LeaderNotReady,
    /// A leadership transfer target is not a voter, or is this node.
    #[error("cannot transfer leadership to {to}: {reason}")]
    InvalidTransferTarget {
        /// The requested target.
        to: NodeId,
        /// Why it was refused.
        reason: &'static str,
    },
    /// Too many read requests are waiting; retry later.
    #[error("too many pending read requests (limit {limit})")]
    ReadQueueFull {
        /// The configured `max_pending_reads`.
        limit: usize,
    },
    /// A message that is structurally invalid (e.g. entries that do not follow each other, a
    /// membership entry that cannot be decoded, a message not addressed to this node). The
    /// message was ignored; nothing changed.
    #[error("invalid message from {from}: {reason}")]
    InvalidMessage {
        /// The sender named in the message.
        from: NodeId,
        /// What is wrong with it.
        reason: String,
    },
    /// Persisted state handed to [`crate::Node::restart`] is inconsistent.
    #[error("persisted state is inconsistent: {reason}")]
    InvalidPersistedState {
        /// What is inconsistent.
        reason: String,
    },
    /// A snapshot handed to the core does not fit the log (e.g. beyond the applied index).
    #[error("snapshot refused: {reason}")]
    InvalidSnapshot {
        /// Why.
        reason: String,
    },
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
