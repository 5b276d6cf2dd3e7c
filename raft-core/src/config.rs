//! Node configuration, validated at construction.

use crate::error::{Error, Result};
use crate::types::NodeId;

/// When the driver should take a snapshot and let the core compact its log (see
/// [`crate::Ready::snapshot_due`]). The core never decides to compact on its own: it only says
/// when the log since the last snapshot has grown past these bounds, which keeps memory flat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompactionPolicy {
    /// A snapshot is due once this many applied entries follow the last snapshot. `None`: never
    /// by count.
    pub max_entries: Option<u64>,
    /// A snapshot is due once the applied entries after the last snapshot hold this many bytes.
    /// `None`: never by size.
    pub max_bytes: Option<u64>,
    /// Entries kept in memory before a snapshot's index when the log is compacted behind it, so
    /// a follower that is only slightly behind catches up from the log instead of receiving the
    /// whole snapshot (etcd keeps 5,000 for the same reason).
    pub retain_entries: u64,
}

impl CompactionPolicy {
    /// Never ask for a snapshot (the log grows without bound).
    pub const NEVER: CompactionPolicy = CompactionPolicy { max_entries: None, max_bytes: None, retain_entries: 0 };
}

impl Default for CompactionPolicy {
    fn default() -> Self {
        CompactionPolicy { max_entries: Some(10_000), max_bytes: Some(64 << 20), retain_entries: 5_000 }
    }
}

/// Configuration of one Raft node. Build with [`Config::new`] and adjust fields; the node checks
/// it with [`Config::validate`] at construction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// This node's id; never zero.
    pub id: NodeId,
    /// Election timeout in ticks. Each node draws its timeout from
    /// `[election_ticks, 2 * election_ticks)` with its own seeded PRNG (§5.2). A leader with
    /// CheckQuorum steps down after `election_ticks` without hearing from a quorum.
    pub election_ticks: u32,
    /// A leader sends heartbeats every `heartbeat_ticks` ticks. Must be less than
    /// `election_ticks`.
    pub heartbeat_ticks: u32,
    /// Run a pre-vote round (thesis §9.6) before incrementing the term, so a node that was cut off
    /// cannot disrupt a healthy cluster when it returns.
    pub pre_vote: bool,
    /// Leaders step down when they have not heard from a quorum for an election timeout, and
    /// followers that heard from a leader within the election timeout ignore vote requests
    /// (thesis §6.2, §9.6) except for a leadership transfer.
    pub check_quorum: bool,
    /// Most AppendEntries messages in flight to one peer (pipelining window). The window a peer
    /// actually gets adapts below this: it halves whenever the stream to the peer breaks (a
    /// rejection, or a heartbeat round without progress) and grows by one with each
    /// acknowledgement that moves the peer's match index, so a lossy or reordering network is
    /// not flooded with refilled windows.
    pub max_inflight_msgs: usize,
    /// Most bytes of entries in one AppendEntries message (and of one snapshot chunk). A single
    /// proposal must fit.
    pub max_bytes_per_msg: u64,
    /// Most payload bytes of uncommitted entries a leader holds; further proposals are refused
    /// with [`Error::UncommittedLimit`] until some commit.
    pub max_uncommitted_bytes: u64,
    /// Most bytes of committed entries handed out in one [`crate::Ready`] (at least one entry).
    pub max_committed_bytes_per_ready: u64,
    /// Most read requests waiting at a leader for their quorum round.
    pub max_pending_reads: usize,
    /// A follower forwards proposals to the leader it knows instead of refusing them with
    /// [`Error::NotLeader`].
    pub forward_proposals: bool,
    /// Seed of the node's PRNG (election jitter). Mixed with the id, so one seed serves a whole
    /// cluster; same seed and inputs give the same outputs.
    pub seed: u64,
    /// When a snapshot is due.
    pub compaction: CompactionPolicy,
}

impl Config {
    /// A configuration with the defaults for node `id`: election 10 ticks, heartbeat 1 tick,
    /// PreVote and CheckQuorum on, 256 messages in flight, 1 MiB per message, 64 MiB
    /// uncommitted.
    pub fn new(id: NodeId) -> Config {
        Config {
            id,
            election_ticks: 10,
            heartbeat_ticks: 1,
            pre_vote: true,
            check_quorum: true,
            max_inflight_msgs: 256,
            max_bytes_per_msg: 1 << 20,
            max_uncommitted_bytes: 64 << 20,
            max_committed_bytes_per_ready: 64 << 20,
            max_pending_reads: 4096,
            forward_proposals: true,
            seed: 0,
            compaction: CompactionPolicy::default(),
        }
    }

    /// Checks every field; the error names the field.
    pub fn validate(&self) -> Result<()> {
        let invalid = |field: &'static str, reason: &str| Err(Error::ConfigInvalid { field, reason: reason.to_string() });
        if !self.id.is_valid() {
            return invalid("id", "node id 0 is reserved");
        }
        if self.heartbeat_ticks == 0 {
            return invalid("heartbeat_ticks", "must be at least 1");
        }
        if self.election_ticks <= self.heartbeat_ticks {
            return invalid("election_ticks", "must be greater than heartbeat_ticks");
        }
        if self.election_ticks > 1 << 20 {
            return invalid("election_ticks", "must be at most 2^20");
        }
        if self.max_inflight_msgs == 0 || self.max_inflight_msgs > 1 << 16 {
            return invalid("max_inflight_msgs", "must be between 1 and 65536");
        }
        if self.max_bytes_per_msg < 64 {
            return invalid("max_bytes_per_msg", "must be at least 64");
        }
        if self.max_uncommitted_bytes == 0 {
            return invalid("max_uncommitted_bytes", "must be at least 1");
        }
        if self.max_committed_bytes_per_ready == 0 {
            return invalid("max_committed_bytes_per_ready", "must be at least 1");
        }
        if self.max_pending_reads == 0 {
            return invalid("max_pending_reads", "must be at least 1");
        }
        if self.compaction.max_entries == Some(0) {
            return invalid("compaction", "max_entries must be at least 1 (or None)");
        }
        if self.compaction.max_bytes == Some(0) {
            return invalid("compaction", "max_bytes must be at least 1 (or None)");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(Config::new(NodeId(1)).validate(), Ok(()));
    }

    #[test]
    fn each_invalid_field_is_named() {
        let table: &[(fn(&mut Config), &str)] = &[
            (|c| c.id = NodeId(0), "id"),
            (|c| c.heartbeat_ticks = 0, "heartbeat_ticks"),
            (|c| c.election_ticks = c.heartbeat_ticks, "election_ticks"),
            (|c| c.max_inflight_msgs = 0, "max_inflight_msgs"),
            (|c| c.max_bytes_per_msg = 1, "max_bytes_per_msg"),
            (|c| c.max_uncommitted_bytes = 0, "max_uncommitted_bytes"),
            (|c| c.max_committed_bytes_per_ready = 0, "max_committed_bytes_per_ready"),
            (|c| c.max_pending_reads = 0, "max_pending_reads"),
            (|c| c.compaction.max_entries = Some(0), "compaction"),
        ];
        for (mutate, field) in table {
            let mut c = Config::new(NodeId(1));
            mutate(&mut c);
            match c.validate() {
                Err(Error::ConfigInvalid { field: got, .. }) => assert_eq!(got, *field),
                other => panic!("{field}: expected ConfigInvalid, got {other:?}"),
            }
        }
    }
}
