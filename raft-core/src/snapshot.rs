//! Snapshots (§7): what they cover, and reassembling one from chunks on a follower.

use bytes::{Bytes, BytesMut};

#[cfg(feature = "serde")]
use serde::{Deserialize, Serialize};

use crate::membership::Membership;
use crate::types::EntryId;

/// What a snapshot covers: every entry up to and including `last`, and the membership in force
/// at that entry.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct SnapshotMeta {
    /// The last entry the snapshot includes.
    pub last: EntryId,
    /// The membership in force at `last` (the latest membership entry at or before it).
    pub membership: Membership,
}

/// A snapshot: metadata plus the state machine's serialised state, opaque to Raft.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct Snapshot {
    /// What it covers.
    pub meta: SnapshotMeta,
    /// The application's state, as the application serialised it.
    pub data: Bytes,
}

/// A snapshot being received chunk by chunk on a follower.
#[derive(Debug)]
pub(crate) struct IncomingSnapshot {
    pub(crate) meta: SnapshotMeta,
    pub(crate) total_len: u64,
    pub(crate) buf: BytesMut,
}

impl IncomingSnapshot {
    pub(crate) fn new(meta: SnapshotMeta, total_len: u64) -> IncomingSnapshot {
        IncomingSnapshot { meta, total_len, buf: BytesMut::new() }
    }

    /// Bytes received so far.
    pub(crate) fn received(&self) -> u64 {
        self.buf.len() as u64
    }

    pub(crate) fn is_complete(&self) -> bool {
        self.received() == self.total_len
    }

    /// Takes the chunk if it continues exactly where the buffer ends; ignores it otherwise (a
    /// duplicate or a chunk after a lost one: the reply's offset tells the leader where to
    /// resume).
    pub(crate) fn accept(&mut self, offset: u64, data: &Bytes) -> bool {
        let fits = offset == self.received() && offset.saturating_add(data.len() as u64) <= self.total_len;
        if fits {
            self.buf.extend_from_slice(data);
        }
        fits
    }

    pub(crate) fn finish(self) -> Snapshot {
        debug_assert!(self.is_complete());
        Snapshot { meta: self.meta, data: self.buf.freeze() }
    }
}
