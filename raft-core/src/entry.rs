//! Log entries: what the replicated log holds.

use bytes::Bytes;

#[cfg(feature = "serde")]
use serde::{Deserialize, Serialize};

use crate::types::{EntryId, LogIndex, Term};

/// What an entry carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub enum EntryKind {
    /// The empty entry a new leader appends at the start of its term (§5.4.2, §8), so that it can
    /// commit earlier entries and serve reads. The application applies nothing for it.
    Blank,
    /// An application command; `data` is opaque to Raft.
    Normal,
    /// A new cluster membership (joint or simple), encoded by [`crate::Membership::encode`]. It
    /// takes effect as soon as it is appended to a log (see [`crate::membership`]).
    Membership,
}

/// One entry of the replicated log.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct Entry {
    /// The term of the leader that created the entry.
    pub term: Term,
    /// The entry's position in the log.
    pub index: LogIndex,
    /// What the entry carries.
    pub kind: EntryKind,
    /// The payload: an application command for [`EntryKind::Normal`], an encoded membership for
    /// [`EntryKind::Membership`], empty for [`EntryKind::Blank`].
    pub data: Bytes,
}

/// Bytes charged per entry beyond its payload when enforcing byte limits (index, term, kind and
/// framing), so that many empty entries still count against `max_bytes_per_msg`.
pub const ENTRY_OVERHEAD_BYTES: u64 = 24;

impl Entry {
    /// The entry's identity.
    #[inline]
    pub fn id(&self) -> EntryId {
        EntryId::new(self.term, self.index)
    }

    /// The size charged against byte limits: payload plus [`ENTRY_OVERHEAD_BYTES`].
    #[inline]
    pub fn size_bytes(&self) -> u64 {
        self.data.len() as u64 + ENTRY_OVERHEAD_BYTES
    }

    /// The size of the payload alone, as counted by the uncommitted-bytes limit.
    #[inline]
    pub fn payload_bytes(&self) -> u64 {
        self.data.len() as u64
    }
}
