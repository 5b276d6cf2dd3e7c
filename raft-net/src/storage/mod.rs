//! The durable Raft log of one node: append-only segment files of checksummed records, the
//! hard state, the latest snapshot, and the node's identity, in one data directory.
//!
//! [`DurableLog`] is synchronous and does blocking `std::fs` I/O; the server runs it on an OS
//! thread of its own. The driver hands it each [`raft_core::Ready`]'s persistence part
//! ([`DurableLog::persist_ready`], or [`DurableLog::append`] and [`DurableLog::save_snapshot`]),
//! calls [`DurableLog::sync`] once for a batch of them (group commit), and only then
//! acknowledges them with [`raft_core::Node::on_persisted`]. On start it calls
//! [`DurableLog::open`] and restarts the node from [`Recovered::into_persisted_state`].
//!
//! ```
//! use bytes::Bytes;
//! use raft_core::{Entry, EntryKind, HardState, LogIndex, NodeId, Term};
//! use raft_net::storage::{DurableLog, Options};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let mut log = DurableLog::create(dir.path(), NodeId(1), 42, Options::default()).unwrap();
//! let entry = Entry { term: Term(1), index: LogIndex(1), kind: EntryKind::Normal, data: Bytes::from_static(b"x") };
//! let hs = HardState { term: Term(1), vote: Some(NodeId(1)), commit: LogIndex(0) };
//! log.append(None, &[entry.clone()], Some(hs)).unwrap();
//! log.sync().unwrap(); // now durable: acknowledge the Ready
//! drop(log);
//!
//! let (_log, recovered) = DurableLog::open(dir.path(), Options::default()).unwrap();
//! assert_eq!((recovered.node_id, recovered.cluster_id), (NodeId(1), 42));
//! assert_eq!((recovered.hard_state, recovered.entries), (hs, vec![entry]));
//! assert_eq!(recovered.repaired, None);
//! ```
//!
//! # Files
//!
//! ```text
//! DIR/meta                              node id, cluster id, format version (written once)
//! DIR/lock                              held (flock) by the process that has the log open
//! DIR/snapshot                          the latest snapshot (only one is kept)
//! DIR/log/00000000000000000001.seg      segment files, each named by the index of the
//! DIR/log/00000000000000004711.seg      first entry it holds (20 digits, so names sort)
//! ```
//!
//! `DIR/lock` is empty: a [`DurableLog`] holds an exclusive `flock` on it while it is open (on
//! Linux), so a second process opening the directory gets [`StorageError::Locked`] instead of
//! writing the same log. The lock dies with the process, crash included.
//!
//! Files named `*.tmp` are being written and not yet renamed into place; recovery deletes them.
//! Other files in `log/` are ignored (with a warning).
//!
//! # Formats
//!
//! All integers are little-endian; checksums are CRC32C (Castagnoli).
//!
//! A **segment** is a sequence of records, each framed as
//! `[u32 body length][u32 CRC32C of body][body]`, where the body starts with its type:
//!
//! | type | body after the type byte                          | |
//! |------|---------------------------------------------------|-|
//! | 1    | `"RAFTSEG1"`, u32 version (1), u64 first index     | segment header: first record of every segment, nowhere else |
//! | 2    | u64 term, u64 index, u8 kind (0 blank, 1 normal, 2 membership), payload | an entry |
//! | 3    | u64 term, u64 vote (0 = none), u64 commit          | a hard state |
//!
//! Every segment starts with its header and a copy of the hard state current at its creation,
//! so deleting older segments never loses the hard state. Within a segment, entries are
//! consecutive. A new segment is started when the active one has reached
//! [`Options::segment_bytes`] (checked before each entry, so a segment may exceed it by one
//! record).
//!
//! The **snapshot** file is `"RAFTSNP1"`, u32 version (1), u64 last term, u64 last index, u32
//! length and bytes of the membership ([`raft_core::Membership::encode`] with an empty
//! context), u64 length and bytes of the data, then a u32 CRC32C of everything before it.
//!
//! The **meta** file is `"RAFTMETA"`, u32 version (1), u64 node id, u64 cluster id, u32 CRC32C.
//!
//! # What is durable when
//!
//! - [`DurableLog::append`] only encodes records into a buffer (handed to the kernel when it
//!   reaches [`Options::write_buffer_bytes`]); [`DurableLog::sync`] flushes it and fdatasyncs the
//!   active segment. Nothing appended is durable before `sync` returns.
//! - Everything else is durable when the call that did it returns, and first makes everything
//!   appended before it durable: starting a segment (the old one is fdatasynced, the new one
//!   written with its header and hard state and fsynced, then the directory fsynced); a
//!   truncation (rare: see below); [`DurableLog::save_snapshot`] (written to `snapshot.tmp`,
//!   fsynced, renamed, directory fsynced; then old segments deleted and the directory fsynced);
//!   [`DurableLog::create`] (segment, then `meta` via temporary file and rename, directories
//!   fsynced).
//! - A truncation cuts the segment holding the first removed entry at that entry's offset,
//!   after deleting the later segments. To stay correct across a crash at any point, it first
//!   makes the log durable, and (when later segments exist) rewrites the cut segment with a copy
//!   of the hard state appended before deleting them; it then writes the entries that follow to
//!   a new segment named after the truncation point, created before the old one is cut, so
//!   recovery can always tell where the log continues (if the truncation point is the first
//!   entry of its segment, that segment is instead replaced atomically by an empty one).
//!   Truncations are rare (a follower's uncommitted suffix conflicting with a new leader), so
//!   their few fsyncs do not matter.
//! - Dropping a [`DurableLog`] without [`DurableLog::sync`] may lose what was appended since
//!   the last sync, like a crash: buffered records are not written on drop.
//!
//! The hard state recovered is the *greatest* one read (later term; in the same term, the one
//! with a vote; largest commit index), not the last one read. Hard states only move forward
//! (§5.1), so the two are the same for a correct driver, and this way no deletion of a segment
//! can bring back an older term or vote.
//!
//! # Recovery
//!
//! [`DurableLog::open`] reads `meta` (missing: [`StorageError::NotInitialized`]), then the
//! snapshot (verified by its checksum: a bad one is [`StorageError::CorruptSnapshot`]), then
//! every segment in order of its first index, checking every record's length, checksum and
//! structure, and that each entry's index follows the previous one. The rules:
//!
//! - **Preallocated space**: zeros from some offset to the end of a segment file are space
//!   the log reserved ahead of its writes ([`Options::preallocate_bytes`]): the segment ends
//!   there, and nothing is repaired. (A write that reached the disk only as zeros never
//!   happened, as far as the log can tell: that is the same as an unsynced write lost.)
//! - **Torn tail**: a bad record (incomplete, zero length, or failing its checksum) in the
//!   newest segment with nothing valid after it (no valid record starts at any later offset) is
//!   what a crash during a write leaves: the segment is cut where that record starts, and the
//!   repair is described in [`Recovered::repaired`]. A newest segment whose *header* is torn was
//!   being created: it is deleted (unless it is the only segment).
//! - **Corruption** refuses to start with [`StorageError::Corrupt`] naming the file and byte
//!   offset: a bad record followed by valid data, a bad record in any segment but the newest, a
//!   bad or missing segment header, a record whose checksum is right but whose content is not
//!   (unknown type, a header name that contradicts the file name, an entry out of sequence), a
//!   gap between segments not covered by the snapshot, or a log that starts after the snapshot
//!   ends.
//! - **Truncation**: a segment whose first index is at or below the last entry read was
//!   created by a truncation; the entries from its first index on are dropped (and the older
//!   file cut, if the crash came before that). Within a segment an entry must be exactly the
//!   next index: a truncation never continues in the same file, so anything else is corruption.
//! - **Snapshot**: entries at or below the snapshot's index are skipped, and segments holding
//!   nothing else are deleted (finishing a compaction). If the log holds the snapshot's last
//!   entry with a different term, the entries after it are discarded (an interrupted snapshot
//!   install, §7).
//!
//! Recovery decides before it changes anything: when it refuses, the directory is untouched.
//! No byte content of any file makes it panic.

mod error;
mod files;
mod log;
mod record;
mod recovery;
mod segment;
#[cfg(test)]
mod tests;

use raft_core::{Entry, HardState, LogIndex, NodeId, PersistedState, Snapshot};

pub use error::{Result, StorageError};
pub use log::{DurableLog, SnapshotWrite};

/// Tuning of a [`DurableLog`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Start a new segment file once the active one holds this many bytes (and at least one
    /// entry). Default 64 MiB.
    pub segment_bytes: u64,
    /// Hand buffered records to the operating system once this many bytes are buffered
    /// (they are always handed over by [`DurableLog::sync`]). Default 256 KiB.
    pub write_buffer_bytes: usize,
    /// Whether to fsync at all. Default `true`. `false` is for tests only: a crash of the
    /// machine may then lose or tear anything.
    pub fsync: bool,
    /// Extend the active segment file with zeros this many bytes at a time, ahead of the
    /// writes (`fallocate` on Linux), so that most fsyncs need not also make a new file length
    /// durable: on ext4 that makes an `fdatasync` after a small append about a quarter
    /// faster. `0` turns it off. Default 4 MiB. Recovery reads the zeros after the last record
    /// as the end of the segment, not as damage.
    pub preallocate_bytes: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options { segment_bytes: 64 << 20, write_buffer_bytes: 256 << 10, fsync: true, preallocate_bytes: 4 << 20 }
    }
}

/// What [`DurableLog::open`] found on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovered {
    /// The node id stored when the directory was created.
    pub node_id: NodeId,
    /// The cluster id stored when the directory was created.
    pub cluster_id: u64,
    /// The durable hard state.
    pub hard_state: HardState,
    /// The stored snapshot, if any.
    pub snapshot: Option<Snapshot>,
    /// The entries after the snapshot, consecutive.
    pub entries: Vec<Entry>,
    /// What recovery repaired, if anything (a torn tail cut away, a segment whose creation was
    /// cut short, an interrupted truncation or snapshot install completed), for the operator's
    /// log. `None` for a clean directory.
    pub repaired: Option<String>,
}

impl Recovered {
    /// The index of the last entry after the snapshot; the snapshot's index if there is none.
    pub fn last_index(&self) -> LogIndex {
        match (self.entries.last(), &self.snapshot) {
            (Some(e), _) => e.index,
            (None, Some(s)) => s.meta.last.index,
            (None, None) => LogIndex(0),
        }
    }

    /// The state to restart a [`raft_core::Node`] from, for a state machine restored from the
    /// snapshot (applied index = the snapshot's index; committed entries after it are handed
    /// out again).
    pub fn into_persisted_state(self) -> PersistedState {
        let applied = self.snapshot.as_ref().map_or(LogIndex(0), |s| s.meta.last.index);
        PersistedState { hard_state: self.hard_state, snapshot: self.snapshot, entries: self.entries, applied }
    }
}
