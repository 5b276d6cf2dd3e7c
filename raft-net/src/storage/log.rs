//! [`DurableLog`]: the write paths (append, sync, truncation, snapshot, compaction).
//! Recovery lives in `recovery.rs`.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use raft_core::{Entry, HardState, LogIndex, NodeId, Ready, Snapshot, SnapshotMeta, Term};

use super::error::{io_at, Result, StorageError};
use super::files::{self, crash_point, sync_dir, write_atomically, Meta, META_FILE, SNAPSHOT_FILE};
use super::record::{self, Record, FRAME_BYTES, MAX_ENTRY_DATA_BYTES};
use super::segment::{create_segment, open_for_append, preallocate, segment_prologue, Segment, LOG_DIR};
use super::{Options, Recovered};

/// The durable Raft log of one node: segment files, the hard state, the latest snapshot and
/// the node's identity, in one data directory. See the [module docs](super) for the file
/// layout, what is fsynced when, and the recovery rules.
///
/// The API is synchronous and does blocking file I/O: run it on a thread of its own.
///
/// # Errors and failure
///
/// Every method that writes returns [`StorageError`] on I/O failure. After a failed write or
/// sync the log is *failed*: what reached the disk is unknown, so every later call returns
/// [`StorageError::Failed`] until the directory is reopened with [`DurableLog::open`], which
/// recovers from what is really on disk.
#[derive(Debug)]
pub struct DurableLog {
    pub(super) dir: PathBuf,
    pub(super) log_dir: PathBuf,
    pub(super) options: Options,
    pub(super) meta: Meta,
    /// The greatest hard state written (see [`merge_hard_state`]).
    pub(super) hard_state: HardState,
    /// The stored snapshot's metadata.
    pub(super) snapshot: Option<SnapshotMeta>,
    /// Sorted by first index; never empty; the last one is the active segment.
    pub(super) segments: Vec<Segment>,
    /// The active segment, opened for appending at the end of its valid records.
    pub(super) active: File,
    /// The active segment file's length: the valid records handed to the operating system,
    /// plus any zeros preallocated after them.
    pub(super) allocated: u64,
    /// Encoded records not yet handed to the operating system.
    pub(super) pending: Vec<u8>,
    /// The first error of a write path, once one happened.
    pub(super) failed: Option<String>,
    /// The open lock file: this log owns the directory while it is open.
    pub(super) _lock: File,
}

/// A snapshot file being written off the log's thread: made by [`DurableLog::begin_snapshot`],
/// run with [`SnapshotWrite::write`], finished with [`DurableLog::finish_snapshot`].
#[derive(Debug)]
pub struct SnapshotWrite {
    path: PathBuf,
    fsync: bool,
    snapshot: Snapshot,
}

impl SnapshotWrite {
    /// Writes the snapshot to `snapshot.tmp`, fsyncs it, renames it to `snapshot` and fsyncs
    /// the directory: durable when it returns. Blocking; any thread.
    ///
    /// # Errors
    ///
    /// [`StorageError::Io`]: the log that began the write should then be treated as failed
    /// (the server stops), as for any failed write.
    pub fn write(self) -> Result<SnapshotMeta> {
        write_atomically(&self.path, self.fsync, |out| files::write_snapshot(out, &self.snapshot))?;
        Ok(self.snapshot.meta)
    }
}

/// The hard state that wins when two are found: the one with the later term, or in the same
/// term the one that holds a vote; the commit index is the larger of the two.
///
/// Hard states only move forward (§5.1: terms never decrease and a server votes at most once
/// per term; the commit index never decreases), so the greatest hard state written is the last
/// one written. Recovery relies on this to take the greatest record it reads rather than the
/// last: which file holds the newest copy then does not matter, which is what makes truncation
/// across segments crash-safe (see `DurableLog::truncate`).
pub(super) fn merge_hard_state(current: HardState, new: HardState) -> HardState {
    let key = |hs: &HardState| (hs.term, hs.vote.is_some());
    let commit = current.commit.max(new.commit);
    if key(&new) >= key(&current) {
        HardState { commit, ..new }
    } else {
        HardState { commit, ..current }
    }
}

impl DurableLog {
    // -------------------------------------------------------------------------------------
    // Opening
    // -------------------------------------------------------------------------------------

    /// Initialises a new data directory for node `node_id` of cluster `cluster_id`: an empty
    /// log (one segment holding the empty hard state) and the `meta` file, all durable. `dir`
    /// is created if missing.
    ///
    /// # Errors
    ///
    /// [`StorageError::NotEmpty`] if `dir` already holds anything (never overwrite a node's
    /// state), [`StorageError::Meta`] for node id 0, [`StorageError::Io`] otherwise.
    pub fn create(dir: &Path, node_id: NodeId, cluster_id: u64, options: Options) -> Result<DurableLog> {
        let meta_path = dir.join(META_FILE);
        if !node_id.is_valid() {
            return Err(StorageError::Meta { path: meta_path, reason: "node id 0 is reserved".into() });
        }
        let existed = dir.exists();
        fs::create_dir_all(dir).map_err(io_at(dir))?;
        if fs::read_dir(dir).map_err(io_at(dir))?.next().is_some() {
            return Err(StorageError::NotEmpty { dir: dir.to_path_buf() });
        }
        let lock = files::lock_dir(dir)?;
        if !existed {
            let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            sync_dir(parent, options.fsync)?;
        }
        let log_dir = dir.join(LOG_DIR);
        fs::create_dir(&log_dir).map_err(io_at(&log_dir))?;
        let hard_state = HardState::default();
        let (segment, active) = create_segment(&log_dir, LogIndex(1), &hard_state, options.fsync)?;
        // The meta file comes last and its rename syncs `dir`: a directory with a meta file is
        // complete, and one without is refused by `open`.
        let meta = Meta { node_id, cluster_id };
        write_atomically(&meta_path, options.fsync, |out| out.write_all(&files::encode_meta(meta)))?;
        let log = DurableLog {
            dir: dir.to_path_buf(),
            log_dir,
            options,
            meta,
            hard_state,
            snapshot: None,
            allocated: segment.len,
            segments: vec![segment],
            active,
            pending: Vec::new(),
            failed: None,
            _lock: lock,
        };
        log.check_invariants();
        Ok(log)
    }

    /// Opens an existing data directory and recovers its state: the stored ids, the hard state,
    /// the snapshot and the entries after it. Repairs a torn tail (and says so in
    /// [`Recovered::repaired`]); refuses to start on any other damage. See the module docs for
    /// the exact rules.
    ///
    /// # Errors
    ///
    /// [`StorageError::NotInitialized`] without a meta file; [`StorageError::Corrupt`],
    /// [`StorageError::CorruptSnapshot`], [`StorageError::Inconsistent`] or
    /// [`StorageError::Meta`] on damage, naming the file (and offset); [`StorageError::Io`].
    pub fn open(dir: &Path, options: Options) -> Result<(DurableLog, Recovered)> {
        super::recovery::open(dir, options)
    }

    // -------------------------------------------------------------------------------------
    // Getters
    // -------------------------------------------------------------------------------------

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The node id stored at creation.
    pub fn node_id(&self) -> NodeId {
        self.meta.node_id
    }

    /// The cluster id stored at creation.
    pub fn cluster_id(&self) -> u64 {
        self.meta.cluster_id
    }

    /// The hard state written last (durable once [`DurableLog::sync`] returns).
    pub fn hard_state(&self) -> HardState {
        self.hard_state
    }

    /// The stored snapshot's metadata, if any.
    pub fn snapshot_meta(&self) -> Option<&SnapshotMeta> {
        self.snapshot.as_ref()
    }

    /// The index of the first entry after the snapshot (1 without a snapshot).
    pub fn first_index(&self) -> LogIndex {
        self.snapshot_index().next()
    }

    /// The index of the last entry written; the snapshot's index if no entry follows it, 0 for
    /// an empty log.
    pub fn last_index(&self) -> LogIndex {
        self.active_segment().next().prev()
    }

    /// The segment files, oldest first.
    pub fn segment_paths(&self) -> impl Iterator<Item = &Path> + '_ {
        self.segments.iter().map(|s| s.path.as_path())
    }

    // -------------------------------------------------------------------------------------
    // Commands
    // -------------------------------------------------------------------------------------

    /// Writes entries and a hard state, after first removing every entry from `truncate_from`
    /// on (a [`Ready`]'s persistence part, without its snapshot). An entry whose index is
    /// already in the log also truncates from there, as if given as `truncate_from`.
    ///
    /// Cheap: records are encoded into a buffer and handed to the operating system in large
    /// writes; nothing is durable until [`DurableLog::sync`]. Call it for many Readies, then
    /// `sync` once (group commit). A truncation is the exception: it is rare, and it makes
    /// everything before it durable so that no crash can mix old and new records (see the module
    /// docs). The hard state is written after the entries.
    ///
    /// A `truncate_from` at or below the snapshot's index removes every entry after the
    /// snapshot. A `hard_state` whose commit index is lower than the stored one keeps the stored
    /// commit index (it never decreases).
    ///
    /// # Panics
    ///
    /// On a broken contract: entries that do not follow each other, that leave a gap after the
    /// log (after the truncation) or that the snapshot covers; a hard state whose term goes back
    /// or that changes or withdraws the vote of its term.
    ///
    /// # Errors
    ///
    /// [`StorageError::EntryTooLarge`] (nothing is written), [`StorageError::Io`],
    /// [`StorageError::Failed`].
    pub fn append(&mut self, truncate_from: Option<LogIndex>, entries: &[Entry], hard_state: Option<HardState>) -> Result<()> {
        if let Some(e) = entries.iter().find(|e| e.data.len() as u64 > MAX_ENTRY_DATA_BYTES) {
            return Err(StorageError::EntryTooLarge { index: e.index, size: e.data.len() as u64 });
        }
        self.guarded(|log| log.append_inner(truncate_from, entries, hard_state))
    }

    /// Makes everything written so far durable: flushes the buffer and fdatasyncs the active
    /// segment. Every other file change (segment creation, deletion, truncation, snapshot) is
    /// already durable when the call that made it returns.
    ///
    /// # Errors
    ///
    /// [`StorageError::Io`], [`StorageError::Failed`]. After a failed sync the log is failed
    /// for good: the kernel may have dropped the unsynced pages, so retrying cannot be trusted.
    pub fn sync(&mut self) -> Result<()> {
        self.guarded(DurableLog::flush_and_sync)
    }

    /// Stores `snapshot` as the only snapshot and compacts the log behind it. Used both for a
    /// snapshot received from the leader ([`Ready::snapshot`]) and for one taken locally (after
    /// [`raft_core::Node::compact`]).
    ///
    /// Order: everything appended before is made durable; the snapshot is written to
    /// `snapshot.tmp`, fsynced, renamed to `snapshot`, and the directory fsynced. If the log
    /// holds the snapshot's last entry with another term, the entries after it belong to a
    /// different history and are removed too (§7: keep the entries following the snapshot only
    /// if the log has its last entry). Finally, segments holding only entries covered by the
    /// snapshot are deleted. Durable when it returns.
    ///
    /// # Panics
    ///
    /// If the snapshot is not newer than the stored one.
    ///
    /// # Errors
    ///
    /// [`StorageError::Io`], [`StorageError::Failed`].
    pub fn save_snapshot(&mut self, snapshot: &Snapshot) -> Result<()> {
        let index = snapshot.meta.last.index;
        assert!(index > self.snapshot_index(), "snapshot at {index} is not newer than the stored one at {}", self.snapshot_index());
        self.guarded(|log| log.save_snapshot_inner(snapshot))
    }

    /// Starts storing a snapshot **this node took** of its own applied entries, without
    /// holding up the log: the slow part (writing and fsyncing a file as large as the state
    /// machine) is the returned [`SnapshotWrite`], which may run on any thread while this log
    /// keeps appending and syncing. Hand its result to [`DurableLog::finish_snapshot`], which
    /// records the snapshot and compacts the log behind it.
    ///
    /// Before it returns, everything appended so far is durable (a snapshot must never be
    /// newer on disk than the log and hard state it was taken after). Until the snapshot is
    /// finished, the log keeps the segments it covers, so a crash at any point recovers either
    /// the old snapshot with the whole log, or the new snapshot (recovery then finishes the
    /// compaction). Start no other snapshot write, and call no [`DurableLog::save_snapshot`],
    /// until the returned write has finished: two writes would race for the snapshot file.
    ///
    /// # Panics
    ///
    /// If the snapshot is not newer than the stored one, or the log does not hold its last
    /// entry with the same term (it is not a snapshot of this log's applied entries: use
    /// [`DurableLog::save_snapshot`] for one received from a leader).
    ///
    /// # Errors
    ///
    /// [`StorageError::Io`], [`StorageError::Failed`].
    pub fn begin_snapshot(&mut self, snapshot: Snapshot) -> Result<SnapshotWrite> {
        let last = snapshot.meta.last;
        assert!(
            last.index > self.snapshot_index(),
            "snapshot at {} is not newer than the stored one at {}",
            last.index,
            self.snapshot_index()
        );
        assert!(last.index <= self.last_index(), "snapshot at {} is beyond the log's last entry {}", last.index, self.last_index());
        self.guarded(|log| {
            let term = log.term_at(last.index)?;
            assert_eq!(term, last.term, "the snapshot's last entry {} has term {} in the log", last.index, term);
            log.flush_and_sync()?;
            Ok(SnapshotWrite { path: log.dir.join(SNAPSHOT_FILE), fsync: log.options.fsync, snapshot })
        })
    }

    /// Records a snapshot a [`SnapshotWrite`] made durable and deletes the segments it covers.
    /// A snapshot that is not newer than the stored one (one received from a leader overtook
    /// it) changes nothing.
    ///
    /// # Errors
    ///
    /// [`StorageError::Io`], [`StorageError::Failed`].
    pub fn finish_snapshot(&mut self, meta: SnapshotMeta) -> Result<()> {
        if meta.last.index <= self.snapshot_index() {
            return Ok(());
        }
        self.guarded(|log| {
            log.snapshot = Some(meta);
            log.compact()
        })
    }

    /// Applies a [`Ready`]'s persistence part in the documented order: snapshot
    /// ([`DurableLog::save_snapshot`]), then truncation, entries and hard state
    /// ([`DurableLog::append`]). Does not sync: call [`DurableLog::sync`] when
    /// [`Ready::must_sync`] (after as many Readies as you like) before acknowledging them with
    /// [`raft_core::Node::on_persisted`].
    ///
    /// # Panics
    ///
    /// As [`DurableLog::append`] and [`DurableLog::save_snapshot`].
    ///
    /// # Errors
    ///
    /// As [`DurableLog::append`] and [`DurableLog::save_snapshot`].
    pub fn persist_ready(&mut self, ready: &Ready) -> Result<()> {
        if let Some(snapshot) = &ready.snapshot {
            self.save_snapshot(snapshot)?;
        }
        if ready.truncate_from.is_some() || !ready.entries.is_empty() || ready.hard_state.is_some() {
            self.append(ready.truncate_from, &ready.entries, ready.hard_state)?;
        }
        Ok(())
    }

    // -------------------------------------------------------------------------------------
    // Internals
    // -------------------------------------------------------------------------------------

    /// Runs a write path; remembers its first error and refuses further work after one.
    fn guarded<T>(&mut self, op: impl FnOnce(&mut DurableLog) -> Result<T>) -> Result<T> {
        if let Some(cause) = &self.failed {
            return Err(StorageError::Failed { dir: self.dir.clone(), cause: cause.clone() });
        }
        let result = op(self);
        match &result {
            Ok(_) => self.check_invariants(),
            Err(e) => self.failed = Some(e.to_string()),
        }
        result
    }

    pub(super) fn snapshot_index(&self) -> LogIndex {
        self.snapshot.as_ref().map_or(LogIndex(0), |m| m.last.index)
    }

    fn active_segment(&self) -> &Segment {
        self.segments.last().expect("the log always has an active segment")
    }

    fn append_inner(&mut self, truncate_from: Option<LogIndex>, entries: &[Entry], hard_state: Option<HardState>) -> Result<()> {
        for pair in entries.windows(2) {
            assert_eq!(pair[1].index, pair[0].index.next(), "entries to append must be consecutive");
        }
        let last = self.last_index();
        let first_unsnapshotted = self.snapshot_index().next();
        if let Some(first) = entries.first() {
            assert!(first.index >= first_unsnapshotted, "entry {} is covered by the snapshot", first.index);
        }
        // An entry already in the log replaces it and everything after it. A truncation point in
        // the snapshot means everything after the snapshot: the core can hand out a snapshot
        // together with a truncation it decided before installing it (raft-core `restore_snapshot`
        // keeps a pending truncation), and entries up to the snapshot are gone anyway.
        let implied = entries.first().map(|e| e.index).filter(|&i| i <= last);
        let cut = match (truncate_from, implied) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
        .map(|from| from.max(first_unsnapshotted));
        let last_after_cut = cut.map_or(last, |c| last.min(c.prev()));
        if let Some(first) = entries.first() {
            assert_eq!(first.index, last_after_cut.next(), "entries must follow the log (last index {last_after_cut})");
        }
        if let Some(hs) = &hard_state {
            assert_forward(&self.hard_state, hs);
        }
        if let Some(from) = cut.filter(|&from| from <= last) {
            self.truncate(from)?;
        }
        for entry in entries {
            self.write_entry(entry)?;
        }
        if let Some(hs) = hard_state {
            self.write_hard_state(hs)?;
        }
        Ok(())
    }

    fn write_entry(&mut self, entry: &Entry) -> Result<()> {
        let active = self.active_segment();
        // Rotate only once the segment holds an entry, so every segment but the newest holds one.
        if active.len >= self.options.segment_bytes && active.next() > active.first {
            self.rotate()?;
        }
        let before = self.pending.len();
        record::encode_entry(&mut self.pending, entry);
        let written = (self.pending.len() - before) as u64;
        let active = self.segments.last_mut().expect("active segment");
        debug_assert_eq!(active.next(), entry.index);
        active.offsets.push_back(active.len);
        active.len += written;
        self.maybe_flush()
    }

    fn write_hard_state(&mut self, hs: HardState) -> Result<()> {
        let merged = merge_hard_state(self.hard_state, hs);
        if merged == self.hard_state {
            return Ok(());
        }
        let before = self.pending.len();
        record::encode_hard_state(&mut self.pending, &merged);
        self.segments.last_mut().expect("active segment").len += (self.pending.len() - before) as u64;
        self.hard_state = merged;
        self.maybe_flush()
    }

    fn maybe_flush(&mut self) -> Result<()> {
        if self.pending.len() >= self.options.write_buffer_bytes {
            self.flush()?;
        }
        Ok(())
    }

    /// Hands buffered records to the operating system (not durable yet), first extending the
    /// file with preallocated zeros if the records would run past them.
    fn flush(&mut self) -> Result<()> {
        if !self.pending.is_empty() {
            let segment = self.segments.last().expect("active segment");
            let (path, end) = (&segment.path, segment.len);
            if self.options.preallocate_bytes > 0 && end > self.allocated {
                let to = end + self.options.preallocate_bytes;
                crash_point(path)?;
                preallocate(&self.active, path, self.allocated, to)?;
                self.allocated = to;
            }
            crash_point(path)?;
            self.active.write_all(&self.pending).map_err(io_at(path))?;
            self.pending.clear();
            self.allocated = self.allocated.max(end);
        }
        Ok(())
    }

    pub(super) fn flush_and_sync(&mut self) -> Result<()> {
        self.flush()?;
        if self.options.fsync {
            let path = &self.active_segment().path;
            self.active.sync_data().map_err(io_at(path))?;
        }
        Ok(())
    }

    /// Starts a new segment at the next index. The old one is made durable first: a newer
    /// segment must never follow an incomplete one, or recovery would see a bad record in a
    /// segment that is not the last and refuse to start.
    fn rotate(&mut self) -> Result<()> {
        self.flush_and_sync()?;
        // Give back the preallocated space the old segment will never use.
        let old = self.active_segment();
        if self.allocated > old.len {
            set_file_len(&old.path, old.len, self.options.fsync)?;
        }
        let first = self.last_index().next();
        let (segment, file) = create_segment(&self.log_dir, first, &self.hard_state, self.options.fsync)?;
        self.allocated = segment.len;
        self.segments.push(segment);
        self.active = file;
        Ok(())
    }

    /// The segment holding entry `index`.
    fn segment_of(&self, index: LogIndex) -> Option<usize> {
        let i = self.segments.partition_point(|s| s.start <= index).checked_sub(1)?;
        self.segments[i].offset_of(index).map(|_| i)
    }

    /// Physically removes every entry from `from` on (`from` is in the log, after the snapshot).
    ///
    /// Truncation is rare (a follower whose uncommitted suffix conflicts with a new leader, §5.3),
    /// so it buys simple crash reasoning with a few fsyncs: every step below leaves files that
    /// recover either to the old log or to the truncated one, never to a mix, and never to an
    /// older hard state. Losing only part of the truncated suffix is harmless: the entries from
    /// `from` on conflict with the leader, so none of them was ever committed (Log Matching).
    ///
    /// 1. Make everything written so far durable.
    /// 2. If later segments exist (the cut is in an older segment X): rewrite X with a copy of
    ///    the current hard state appended (temporary file, fsync, rename), then delete the later
    ///    segments, newest first. Appending in place would not do: a torn append to a segment
    ///    that is not the last reads as corruption. Recovery takes the greatest hard state it
    ///    reads (see [`merge_hard_state`]), so the copy in X keeps it whatever was deleted.
    /// 3. If `from` is X's first entry, atomically replace X by a fresh segment holding only its
    ///    header and the hard state. Otherwise create a new segment named `from` (header and hard
    ///    state, durable): recovery reads its header as "the log continues at `from`" and drops
    ///    X's entries from `from` on even if the next step is lost; then cut X at `from`'s offset.
    pub(super) fn truncate(&mut self, from: LogIndex) -> Result<()> {
        assert!(from > self.snapshot_index(), "never truncate into the snapshot");
        self.flush_and_sync()?;
        let x = self.segment_of(from).expect("the truncation point is in the log");
        let fsync = self.options.fsync;
        if x + 1 < self.segments.len() {
            self.rewrite_with_hard_state(x)?;
            for later in self.segments.drain(x + 1..).rev() {
                crash_point(&later.path)?;
                fs::remove_file(&later.path).map_err(io_at(&later.path))?;
            }
            sync_dir(&self.log_dir, fsync)?;
        }
        let hard_state = self.hard_state;
        let segment = self.segments.last_mut().expect("segment x");
        if from == segment.first {
            let prologue = segment_prologue(from, &hard_state);
            write_atomically(&segment.path, fsync, |out| out.write_all(&prologue))?;
            segment.offsets.clear();
            segment.start = from;
            segment.len = prologue.len() as u64;
            self.active = open_for_append(&segment.path, segment.len)?;
            self.allocated = segment.len;
        } else {
            let cut = segment.offset_of(from).expect("segment x holds `from`");
            let (fresh, file) = create_segment(&self.log_dir, from, &hard_state, fsync)?;
            let segment = self.segments.last_mut().expect("segment x");
            set_file_len(&segment.path, cut, fsync)?;
            segment.truncate_from(from);
            segment.len = cut;
            self.allocated = fresh.len;
            self.segments.push(fresh);
            self.active = file;
            // X may now hold only entries covered by the snapshot.
            self.remove_dead_segments()?;
        }
        Ok(())
    }

    /// Replaces segment `i` (not the active one) atomically by its content plus a hard state
    /// record holding the current hard state.
    fn rewrite_with_hard_state(&mut self, i: usize) -> Result<()> {
        let segment = &mut self.segments[i];
        let mut bytes = fs::read(&segment.path).map_err(io_at(&segment.path))?;
        if (bytes.len() as u64) < segment.len {
            return Err(StorageError::Inconsistent {
                path: segment.path.clone(),
                reason: format!("the file is {} bytes but {} were written to it", bytes.len(), segment.len),
            });
        }
        bytes.truncate(segment.len as usize);
        record::encode_hard_state(&mut bytes, &self.hard_state);
        write_atomically(&segment.path, self.options.fsync, |out| out.write_all(&bytes))?;
        segment.len = bytes.len() as u64;
        Ok(())
    }

    /// Deletes the oldest segments while they hold no entry after the snapshot (never the
    /// active one). Each segment starts with a copy of the hard state, so the hard state records
    /// of deleted segments are never the greatest.
    fn remove_dead_segments(&mut self) -> Result<()> {
        let dead = self.segments[..self.segments.len() - 1].iter().take_while(|s| !s.has_live()).count();
        if dead == 0 {
            return Ok(());
        }
        for segment in self.segments.drain(..dead) {
            crash_point(&segment.path)?;
            fs::remove_file(&segment.path).map_err(io_at(&segment.path))?;
        }
        sync_dir(&self.log_dir, self.options.fsync)
    }

    fn save_snapshot_inner(&mut self, snapshot: &Snapshot) -> Result<()> {
        let last = snapshot.meta.last;
        // The snapshot stands for entries up to `last`; whatever the log says before it must
        // be on disk first, so no crash leaves a snapshot with a log that misses its prefix
        // *and* its hard state.
        self.flush_and_sync()?;
        let path = self.dir.join(SNAPSHOT_FILE);
        write_atomically(&path, self.options.fsync, |out| files::write_snapshot(out, snapshot))?;
        self.snapshot = Some(snapshot.meta.clone());
        if self.last_index() > last.index && self.term_at(last.index)? != last.term {
            // §7: the log does not hold the snapshot's last entry, so nothing after it is ours.
            self.truncate(last.index.next())?;
        }
        self.compact()
    }

    /// Drops entries covered by the snapshot from the index and deletes segments that hold
    /// nothing else. If no entry follows the snapshot, the next entry is `snapshot + 1`, which
    /// the active segment cannot take unless it starts there: start a new segment for it.
    pub(super) fn compact(&mut self) -> Result<()> {
        let through = self.snapshot_index();
        for segment in &mut self.segments {
            segment.drop_through(through);
        }
        let log_is_empty = self.segments.iter().all(|s| !s.has_live());
        if log_is_empty && self.active_segment().first != through.next() {
            self.flush_and_sync()?;
            let (segment, file) = create_segment(&self.log_dir, through.next(), &self.hard_state, self.options.fsync)?;
            self.allocated = segment.len;
            self.segments.push(segment);
            self.active = file;
        }
        self.remove_dead_segments()
    }

    /// Reads the term of entry `index` from disk, verifying its record.
    fn term_at(&mut self, index: LogIndex) -> Result<Term> {
        self.flush()?;
        let i = self.segment_of(index).expect("the entry is in the log");
        let segment = &self.segments[i];
        let offset = segment.offset_of(index).expect("segment_of found it");
        let path = &segment.path;
        let corrupt = |reason: String| StorageError::Corrupt { file: path.clone(), offset, reason };
        let mut file = File::open(path).map_err(io_at(path))?;
        file.seek(SeekFrom::Start(offset)).map_err(io_at(path))?;
        let mut head = [0u8; FRAME_BYTES];
        file.read_exact(&mut head).map_err(io_at(path))?;
        let len = u32::from_le_bytes(head[..4].try_into().expect("4 bytes")) as u64;
        if offset + FRAME_BYTES as u64 + len > segment.len {
            return Err(corrupt(format!("record length {len} runs past the written data")));
        }
        let mut frame = head.to_vec();
        frame.resize(FRAME_BYTES + len as usize, 0);
        file.read_exact(&mut frame[FRAME_BYTES..]).map_err(io_at(path))?;
        let (body, _) = record::read_frame(&frame, 0).map_err(|e| corrupt(e.to_string()))?;
        match record::decode_body(body).map_err(corrupt)? {
            Record::Entry(e) if e.index == index => Ok(e.term),
            other => Err(corrupt(format!("expected entry {index}, found {other:?}"))),
        }
    }

    /// Asserts the in-memory index's invariants (debug builds and tests).
    pub(super) fn check_invariants(&self) {
        if !cfg!(debug_assertions) {
            return;
        }
        let snapshot = self.snapshot_index();
        assert!(!self.segments.is_empty(), "no active segment");
        for pair in self.segments.windows(2) {
            assert!(pair[0].first < pair[1].first, "segments out of order");
            assert!(pair[0].has_live(), "an old segment without live entries was kept: {}", pair[0].path.display());
            assert_eq!(pair[0].next(), pair[1].start, "segments do not follow each other");
        }
        if let Some(first) = self.segments.iter().find(|s| s.has_live()) {
            assert_eq!(first.start, snapshot.next(), "the log does not start right after the snapshot");
        }
        let active = self.active_segment();
        assert!(active.next() > snapshot, "the next entry would fall into the snapshot");
        assert!(self.pending.len() as u64 <= active.len, "more buffered than written");
        assert!(self.allocated >= active.len - self.pending.len() as u64, "the active file is shorter than what was written to it");
    }

    /// What `open` returns alongside the log.
    pub(super) fn recovered(&self, snapshot: Option<Snapshot>, entries: Vec<Entry>, repaired: Option<String>) -> Recovered {
        Recovered { node_id: self.meta.node_id, cluster_id: self.meta.cluster_id, hard_state: self.hard_state, snapshot, entries, repaired }
    }
}

/// Asserts that `new` may follow `current` (§5.1, Figure 2).
fn assert_forward(current: &HardState, new: &HardState) {
    assert!(new.term >= current.term, "hard state term goes back from {} to {}", current.term, new.term);
    if new.term == current.term {
        if let Some(vote) = current.vote {
            assert_eq!(new.vote, Some(vote), "the vote of term {} changes", new.term);
        }
    }
}

/// Cuts `path` to `len` bytes, durably.
pub(super) fn set_file_len(path: &Path, len: u64, fsync: bool) -> Result<()> {
    crash_point(path)?;
    let file = OpenOptions::new().write(true).open(path).map_err(io_at(path))?;
    file.set_len(len).map_err(io_at(path))?;
    if fsync {
        file.sync_data().map_err(io_at(path))?;
    }
    Ok(())
}
