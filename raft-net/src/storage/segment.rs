//! Segment files: naming, creation, and the in-memory index of the entries each one holds.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use raft_core::{HardState, LogIndex};

use super::error::{io_at, Result};
use super::files::{crash_point, sync_dir};
use super::record::{encode_hard_state, encode_header};

/// Name of the directory of segment files inside the data directory.
pub(super) const LOG_DIR: &str = "log";
/// Suffix of segment files.
const SEGMENT_SUFFIX: &str = ".seg";
/// Digits of the zero-padded first index in a segment's name (enough for any `u64`).
const NAME_DIGITS: usize = 20;

/// The file name of the segment whose first entry is `first`: `00000000000000000001.seg`.
pub(super) fn segment_name(first: LogIndex) -> String {
    format!("{:0width$}{SEGMENT_SUFFIX}", first.0, width = NAME_DIGITS)
}

/// The first index a segment file name stands for, if `name` is one.
pub(super) fn parse_segment_name(name: &str) -> Option<LogIndex> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != NAME_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|&i| i > 0).map(LogIndex)
}

/// One segment file and the live entries it holds.
///
/// `offsets[k]` is the byte offset of entry `start + k`. Entries covered by the snapshot are
/// dropped from the front (so `start` moves forward), entries removed by a truncation from the
/// back; `next()` is then the index the file's next entry record must have.
#[derive(Debug)]
pub(super) struct Segment {
    /// The file.
    pub(super) path: PathBuf,
    /// The first index, from its header (and its name).
    pub(super) first: LogIndex,
    /// The index of `offsets[0]`.
    pub(super) start: LogIndex,
    /// Byte offsets of the live entries.
    pub(super) offsets: VecDeque<u64>,
    /// Length of the file's valid records, including bytes still buffered in memory for the
    /// active segment.
    pub(super) len: u64,
}

impl Segment {
    /// A segment holding no entry yet.
    pub(super) fn empty(path: PathBuf, first: LogIndex, len: u64) -> Segment {
        Segment { path, first, start: first, offsets: VecDeque::new(), len }
    }

    /// The index the next entry record written to this file must have.
    pub(super) fn next(&self) -> LogIndex {
        self.start.plus(self.offsets.len() as u64)
    }

    /// Whether it holds entries after the snapshot.
    pub(super) fn has_live(&self) -> bool {
        !self.offsets.is_empty()
    }

    /// The byte offset of entry `index`, if this segment holds it.
    pub(super) fn offset_of(&self, index: LogIndex) -> Option<u64> {
        let k = index.0.checked_sub(self.start.0)?;
        self.offsets.get(usize::try_from(k).ok()?).copied()
    }

    /// Forgets entries up to and including `index` (covered by a snapshot).
    pub(super) fn drop_through(&mut self, index: LogIndex) {
        while self.start <= index && self.offsets.pop_front().is_some() {
            self.start = self.start.next();
        }
    }

    /// Forgets entries from `index` on; returns the offset where the first of them started.
    pub(super) fn truncate_from(&mut self, index: LogIndex) -> Option<u64> {
        let cut = self.offset_of(index)?;
        self.offsets.truncate((index.0 - self.start.0) as usize);
        Some(cut)
    }
}

/// Opens an existing segment for appending after its `len` bytes of valid records (the file
/// may be longer: preallocated zeros, which the appends overwrite).
pub(super) fn open_for_append(path: &Path, len: u64) -> Result<File> {
    let mut file = OpenOptions::new().write(true).open(path).map_err(io_at(path))?;
    file.seek(SeekFrom::Start(len)).map_err(io_at(path))?;
    Ok(file)
}

/// Extends `file` (now `from` bytes long) to `to` bytes of zeros, allocating the blocks
/// (`fallocate` where there is one; a file system without it gets a sparse extension).
/// Not durable by itself: the next fsync of the file makes the new length durable.
pub(super) fn preallocate(file: &File, path: &Path, from: u64, to: u64) -> Result<()> {
    debug_assert!(to > from);
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if rustix::fs::fallocate(file, rustix::fs::FallocateFlags::empty(), from, to - from).is_ok() {
        return Ok(());
    }
    let _ = from;
    file.set_len(to).map_err(io_at(path))
}

/// The bytes a new segment starts with: its header and a copy of the current hard state, so
/// deleting older segments never loses the hard state.
pub(super) fn segment_prologue(first: LogIndex, hard_state: &HardState) -> Vec<u8> {
    let mut buf = Vec::with_capacity(64);
    encode_header(&mut buf, first);
    encode_hard_state(&mut buf, hard_state);
    buf
}

/// Creates the segment file whose first entry will be `first`, writes its prologue and makes
/// both the file and its directory entry durable before returning. Refuses to overwrite a file.
pub(super) fn create_segment(log_dir: &Path, first: LogIndex, hard_state: &HardState, fsync: bool) -> Result<(Segment, File)> {
    let path = log_dir.join(segment_name(first));
    let prologue = segment_prologue(first, hard_state);
    crash_point(&path)?;
    let mut file = OpenOptions::new().write(true).create_new(true).open(&path).map_err(io_at(&path))?;
    crash_point(&path)?;
    file.write_all(&prologue).map_err(io_at(&path))?;
    if fsync {
        file.sync_all().map_err(io_at(&path))?;
    }
    sync_dir(log_dir, fsync)?;
    Ok((Segment::empty(path, first, prologue.len() as u64), file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_by_index_and_parse_back() {
        assert_eq!(segment_name(LogIndex(1)), "00000000000000000001.seg");
        assert_eq!(parse_segment_name(&segment_name(LogIndex(u64::MAX))), Some(LogIndex(u64::MAX)));
        assert!(segment_name(LogIndex(9)) < segment_name(LogIndex(10)));
        for bad in ["1.seg", "0000000000000000000a.seg", "00000000000000000001.seg.tmp", "00000000000000000000.seg", "x"] {
            assert_eq!(parse_segment_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn index_bookkeeping() {
        let mut seg = Segment::empty(PathBuf::from("s"), LogIndex(5), 0);
        seg.offsets.extend([10, 20, 30, 40]);
        assert_eq!(seg.next(), LogIndex(9));
        assert_eq!(seg.offset_of(LogIndex(7)), Some(30));
        assert_eq!(seg.offset_of(LogIndex(4)), None);
        assert_eq!(seg.truncate_from(LogIndex(8)), Some(40));
        assert_eq!(seg.next(), LogIndex(8));
        seg.drop_through(LogIndex(5));
        assert_eq!((seg.start, seg.offset_of(LogIndex(6))), (LogIndex(6), Some(20)));
        seg.drop_through(LogIndex(100));
        assert!(!seg.has_live());
        assert_eq!(seg.next(), LogIndex(8), "an emptied segment still knows its next index");
    }
}
