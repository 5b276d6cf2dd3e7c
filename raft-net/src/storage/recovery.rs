//! `DurableLog::open`: reading a data directory back, checking every byte, and repairing what a
//! crash may legitimately leave behind. The rules are in the module docs of `storage`.
//!
//! Recovery first reads everything and decides; it changes files only once the whole directory
//! has been found sound, so a refusal leaves the directory exactly as it was.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use raft_core::{Entry, HardState, LogIndex, Snapshot, Term};

use super::error::{io_at, Result, StorageError};
use super::files::{self, read_if_exists, remove_if_exists, sync_dir, tmp_path, META_FILE, SNAPSHOT_FILE, TMP_SUFFIX};
use super::log::{merge_hard_state, set_file_len, DurableLog};
use super::record::{self, Record, SEGMENT_VERSION};
use super::segment::{open_for_append, parse_segment_name, Segment, LOG_DIR};
use super::{Options, Recovered};

pub(super) fn open(dir: &Path, options: Options) -> Result<(DurableLog, Recovered)> {
    let meta_path = dir.join(META_FILE);
    let Some(meta_bytes) = read_if_exists(&meta_path)? else {
        return Err(StorageError::NotInitialized { dir: dir.to_path_buf() });
    };
    // Nothing is read for good, let alone repaired, while another process may be writing.
    let lock = files::lock_dir(dir)?;
    let meta = files::decode_meta(&meta_path, &meta_bytes)?;
    let snapshot_path = dir.join(SNAPSHOT_FILE);
    let snapshot = match read_if_exists(&snapshot_path)? {
        Some(bytes) => Some(files::decode_snapshot(&snapshot_path, bytes)?),
        None => None,
    };
    let log_dir = dir.join(LOG_DIR);
    let listing = list_log_dir(&log_dir)?;
    let mut scan = Scan::new(snapshot.as_ref());
    for (i, (first, path)) in listing.segments.iter().enumerate() {
        let position = match (i == 0, i + 1 == listing.segments.len()) {
            (_, false) => Position::Older,
            (true, true) => Position::Only,
            (false, true) => Position::Newest,
        };
        scan.segment(path, *first, position)?;
    }

    // The directory is sound: from here on, repair.
    repair_files(dir, &listing, &scan, options.fsync)?;
    let Scan { hard_state, mut entries, mut segments, snapshot_entry_term, mut repairs, .. } = scan;
    let snapshot_index = snapshot.as_ref().map_or(LogIndex(0), |s| s.meta.last.index);
    // §7: entries after the snapshot are the log's only if the log holds the snapshot's last
    // entry. A crash between storing a snapshot and removing them leaves them behind.
    let divergent = match (&snapshot, snapshot_entry_term, entries.first(), entries.last()) {
        (Some(s), Some(term), Some(first), Some(last)) if term != s.meta.last.term => {
            repairs.push(format!(
                "discarded entries {}..={}: the log's entry {snapshot_index} has term {term} but the snapshot's has term {} \
                 (a snapshot install was interrupted)",
                first.index, last.index, s.meta.last.term,
            ));
            true
        }
        _ => false,
    };
    if divergent {
        entries.clear();
    }
    for segment in &mut segments {
        segment.drop_through(snapshot_index);
    }
    let active = segments.last().expect("at least one segment");
    let active_path = active.path.clone();
    let allocated = fs::metadata(&active_path).map_err(io_at(&active_path))?.len();
    let mut log = DurableLog {
        dir: dir.to_path_buf(),
        log_dir,
        active: open_for_append(&active_path, active.len)?,
        allocated,
        options,
        meta,
        hard_state,
        snapshot: snapshot.as_ref().map(|s| s.meta.clone()),
        segments,
        pending: Vec::new(),
        failed: None,
        _lock: lock,
    };
    if snapshot.is_some() {
        // Finish a compaction a crash interrupted.
        log.compact()?;
    }
    if divergent {
        log.truncate(snapshot_index.next())?;
    }
    log.check_invariants();
    let repaired = (!repairs.is_empty()).then(|| repairs.join("; "));
    let recovered = log.recovered(snapshot, entries, repaired);
    Ok((log, recovered))
}

/// Applies what the scan decided: removes leftovers of interrupted atomic writes (their renames
/// never happened, so the files they were meant to replace are intact) and segments whose
/// creation was cut short, and cuts segments to their valid length.
fn repair_files(dir: &Path, listing: &Listing, scan: &Scan, fsync: bool) -> Result<()> {
    for tmp in [tmp_path(&dir.join(META_FILE)), tmp_path(&dir.join(SNAPSHOT_FILE))] {
        if remove_if_exists(&tmp)? {
            sync_dir(dir, fsync)?;
        }
    }
    for path in listing.tmp_files.iter().chain(&scan.remove) {
        fs::remove_file(path).map_err(io_at(path))?;
    }
    if !listing.tmp_files.is_empty() || !scan.remove.is_empty() {
        sync_dir(&dir.join(LOG_DIR), fsync)?;
    }
    for segment in &scan.segments {
        let on_disk = fs::metadata(&segment.path).map_err(io_at(&segment.path))?.len();
        let preallocated = scan.zeros_from.get(&segment.path) == Some(&segment.len);
        if on_disk != segment.len && !preallocated {
            set_file_len(&segment.path, segment.len, fsync)?;
        }
    }
    Ok(())
}

/// What the log directory holds.
struct Listing {
    /// Segment files by first index, sorted.
    segments: Vec<(LogIndex, PathBuf)>,
    /// Leftovers of interrupted atomic rewrites.
    tmp_files: Vec<PathBuf>,
}

fn list_log_dir(log_dir: &Path) -> Result<Listing> {
    let read = match fs::read_dir(log_dir) {
        Ok(read) => read,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(StorageError::Inconsistent { path: log_dir.to_path_buf(), reason: "the log directory is missing".into() });
        }
        Err(e) => return Err(io_at(log_dir)(e)),
    };
    let mut listing = Listing { segments: Vec::new(), tmp_files: Vec::new() };
    for dir_entry in read {
        let dir_entry = dir_entry.map_err(io_at(log_dir))?;
        let name = dir_entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(first) = parse_segment_name(name) {
            listing.segments.push((first, dir_entry.path()));
        } else if name.ends_with(TMP_SUFFIX) {
            listing.tmp_files.push(dir_entry.path());
        } else {
            tracing::warn!(file = %dir_entry.path().display(), "ignoring a file that is not a segment");
        }
    }
    listing.segments.sort();
    if listing.segments.is_empty() {
        return Err(StorageError::Inconsistent {
            path: log_dir.to_path_buf(),
            reason: "no segment files (a log always keeps at least one)".into(),
        });
    }
    Ok(listing)
}

/// Where a segment file sits in the log, which decides what damage may be repaired.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Position {
    /// Followed by newer segments: it was complete and durable before they were created.
    Older,
    /// The newest of several: its tail may be torn, or its creation may have been cut short.
    Newest,
    /// The only segment: its tail may be torn.
    Only,
}

/// The state rebuilt so far, segment by segment.
struct Scan {
    snapshot_index: LogIndex,
    hard_state: HardState,
    /// The index of the last entry read (covered by the snapshot or not), 0 before any.
    last: LogIndex,
    /// Entries after the snapshot, consecutive, ending at `last` when `last` is after it.
    entries: Vec<Entry>,
    /// Segments read, with the offsets of every entry they hold and their valid length.
    segments: Vec<Segment>,
    /// The term of the log's entry at the snapshot's index, if the log holds it.
    snapshot_entry_term: Option<Term>,
    /// Segment files to delete (a creation cut short).
    remove: Vec<PathBuf>,
    /// What was repaired, for `Recovered::repaired`.
    repairs: Vec<String>,
    /// Segments whose records end in preallocated zeros, and where the zeros start.
    zeros_from: BTreeMap<PathBuf, u64>,
}

impl Scan {
    fn new(snapshot: Option<&Snapshot>) -> Scan {
        Scan {
            snapshot_index: snapshot.map_or(LogIndex(0), |s| s.meta.last.index),
            hard_state: HardState::default(),
            last: LogIndex(0),
            entries: Vec::new(),
            segments: Vec::new(),
            snapshot_entry_term: None,
            remove: Vec::new(),
            repairs: Vec::new(),
            zeros_from: BTreeMap::new(),
        }
    }

    /// Reads one segment file.
    fn segment(&mut self, path: &Path, name_first: LogIndex, position: Position) -> Result<()> {
        let buf = fs::read(path).map_err(io_at(path))?;
        let corrupt = |offset: usize, reason: String| StorageError::Corrupt { file: path.to_path_buf(), offset: offset as u64, reason };
        let entry_indexes = record::possible_entry_indexes(name_first, buf.len());
        let valid_after = |pos: usize| (pos + 1..buf.len()).any(|p| record::looks_like_record(&buf, p, entry_indexes.clone()));

        let (body, mut pos) = match record::read_frame(&buf, 0) {
            Ok(frame) => frame,
            // Segments are created with their header and made durable before anything is
            // written after them, so only the newest one can have a torn header, and only if
            // its creation was cut short: nothing of the log is in it.
            Err(e) if position == Position::Newest && !valid_after(0) => {
                self.remove.push(path.to_path_buf());
                self.repairs.push(format!("removed {}: its creation was cut short ({e} in its header)", path.display()));
                return Ok(());
            }
            Err(e) => return Err(corrupt(0, format!("bad segment header: {e}"))),
        };
        let first = match record::decode_body(body).map_err(|r| corrupt(0, format!("bad segment header: {r}")))? {
            Record::Header { version, .. } if version != SEGMENT_VERSION => {
                return Err(corrupt(0, format!("unsupported segment format version {version} (this build reads {SEGMENT_VERSION})")));
            }
            Record::Header { first, .. } if first != name_first => {
                return Err(corrupt(0, format!("the header says the first index is {first}, the file name says {name_first}")));
            }
            Record::Header { first, .. } => first,
            other => return Err(corrupt(0, format!("the first record is not a segment header but {}", kind_name(&other)))),
        };
        self.begin_segment(path, first)?;
        self.segments.push(Segment::empty(path.to_path_buf(), first, buf.len() as u64));

        while pos < buf.len() {
            match record::read_frame(&buf, pos) {
                Ok((body, next)) => {
                    match record::decode_body(body).map_err(|r| corrupt(pos, r))? {
                        Record::Entry(entry) => self.push_entry(entry, pos).map_err(|r| corrupt(pos, r))?,
                        Record::HardState(hs) => self.hard_state = merge_hard_state(self.hard_state, hs),
                        header @ Record::Header { .. } => {
                            return Err(corrupt(pos, format!("a {} in the middle of a segment", kind_name(&header))));
                        }
                    }
                    pos = next;
                }
                // Zeros to the end of the file: space preallocated ahead of the writes. The
                // segment ends here, whatever its position.
                Err(_) if buf[pos..].iter().all(|&b| b == 0) => {
                    self.segments.last_mut().expect("pushed above").len = pos as u64;
                    self.zeros_from.insert(path.to_path_buf(), pos as u64);
                    break;
                }
                // A torn tail: the end of the newest segment, with nothing valid after it. Cut it.
                Err(e) if position != Position::Older && !valid_after(pos) => {
                    self.repairs.push(format!(
                        "truncated a torn write at the end of {} at offset {pos} ({e}; {} bytes dropped)",
                        path.display(),
                        buf.len() - pos
                    ));
                    self.segments.last_mut().expect("pushed above").len = pos as u64;
                    break;
                }
                Err(e) if position == Position::Older => {
                    return Err(corrupt(pos, format!("{e} (in a segment that newer segments follow, so it is not a torn write)")));
                }
                Err(e) => return Err(corrupt(pos, format!("{e} (valid records follow, so it is not a torn write)"))),
            }
        }
        Ok(())
    }

    /// Checks where a segment starts against the log read so far.
    fn begin_segment(&mut self, path: &Path, first: LogIndex) -> Result<()> {
        if first <= self.last {
            // The segment was created by a truncation at `first` (see `DurableLog::truncate`):
            // the log continues here, and what older segments hold from `first` on is gone.
            self.truncate_from(first);
        } else if first > self.last.next() {
            if first.prev() > self.snapshot_index {
                let reason = if self.segments.is_empty() {
                    format!(
                        "the log starts at index {first} but the snapshot covers entries only up to {}: entries are missing",
                        self.snapshot_index
                    )
                } else {
                    format!("gap in the log: this segment starts at index {first} but the previous one ends at {}", self.last)
                };
                return Err(StorageError::Corrupt { file: path.to_path_buf(), offset: 0, reason });
            }
            // Entries up to `first - 1` are covered by the snapshot: a compaction deleted the
            // segments in between.
            self.last = first.prev();
        }
        Ok(())
    }

    /// Drops entries from `from` on: from the entry list, and from the segments that hold them,
    /// whose files are then cut where the first dropped entry starts.
    fn truncate_from(&mut self, from: LogIndex) {
        let mut cut_files = Vec::new();
        // Segment names are distinct and sorted, so every earlier segment starts before `from`
        // and keeps at least its first entry.
        for segment in self.segments.iter_mut().rev() {
            let Some(cut) = segment.truncate_from(from) else { break };
            segment.len = cut;
            cut_files.push(format!("{} at offset {cut}", segment.path.display()));
        }
        if !cut_files.is_empty() {
            cut_files.reverse();
            self.repairs.push(format!("completed an interrupted truncation of the log from entry {from} (cut {})", cut_files.join(", ")));
        }
        let keep = self.entries.partition_point(|e| e.index < from);
        self.entries.truncate(keep);
        if from <= self.snapshot_index {
            self.snapshot_entry_term = None;
        }
        self.last = from.prev();
    }

    fn push_entry(&mut self, entry: Entry, offset: usize) -> Result<(), String> {
        let want = self.last.next();
        if entry.index != want {
            return Err(format!("entry {} where entry {want} should follow", entry.index));
        }
        let segment = self.segments.last_mut().expect("entries follow a header");
        segment.offsets.push_back(offset as u64);
        if entry.index == self.snapshot_index {
            self.snapshot_entry_term = Some(entry.term);
        }
        self.last = entry.index;
        if entry.index > self.snapshot_index {
            self.entries.push(entry);
        }
        Ok(())
    }
}

fn kind_name(record: &Record) -> &'static str {
    match record {
        Record::Header { .. } => "segment header",
        Record::Entry(_) => "entry",
        Record::HardState(_) => "hard state",
    }
}
