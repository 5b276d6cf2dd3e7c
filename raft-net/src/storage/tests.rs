//! Scenario and property tests of the durable log, through its public API. Corruption tests
//! find record boundaries with their own reader of the documented frame format
//! (`[u32 length][u32 crc][body]`), not with the code under test.

use std::fs;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use proptest::prelude::*;
use raft_core::{Entry, EntryId, EntryKind, HardState, LogIndex, Membership, NodeId, Ready, Snapshot, SnapshotMeta, Term};
use tempfile::TempDir;

use super::{DurableLog, Options, Recovered, StorageError};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

const CLUSTER: u64 = 0xC1u64;

fn options(segment_bytes: u64) -> Options {
    Options { segment_bytes, ..Options::default() }
}

/// Like `options`, without fsync: for tests that run many file operations (fsync costs
/// milliseconds here and proves nothing a process-level reopen could check).
fn fast_options(segment_bytes: u64) -> Options {
    Options { segment_bytes, fsync: false, ..Options::default() }
}

fn entry(term: u64, index: u64) -> Entry {
    let data = Bytes::from(format!("entry {index} of term {term}: some payload").into_bytes());
    Entry { term: Term(term), index: LogIndex(index), kind: EntryKind::Normal, data }
}

fn entries(term: u64, range: std::ops::RangeInclusive<u64>) -> Vec<Entry> {
    range.map(|i| entry(term, i)).collect()
}

fn hs(term: u64, vote: Option<u64>, commit: u64) -> HardState {
    HardState { term: Term(term), vote: vote.map(NodeId), commit: LogIndex(commit) }
}

fn snapshot(term: u64, index: u64) -> Snapshot {
    let meta =
        SnapshotMeta { last: EntryId::new(Term(term), LogIndex(index)), membership: Membership::new([NodeId(1), NodeId(2), NodeId(3)]) };
    Snapshot { meta, data: Bytes::from(format!("state machine at {index}").into_bytes()) }
}

fn create(dir: &Path, options: Options) -> DurableLog {
    DurableLog::create(dir, NodeId(1), CLUSTER, options).expect("create")
}

fn reopen(dir: &Path, options: Options) -> (DurableLog, Recovered) {
    DurableLog::open(dir, options).unwrap_or_else(|e| panic!("open failed: {e}"))
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> =
        fs::read_dir(dir.join("log")).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|x| x == "seg")).collect();
    files.sort();
    files
}

/// Record boundaries of a segment file: (offset, total length) of every well-framed record.
fn records(path: &Path) -> Vec<(u64, u64)> {
    let buf = fs::read(path).unwrap();
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos + 8 <= buf.len() {
        let len = u32::from_le_bytes(buf[pos..pos + 4].try_into().unwrap()) as usize;
        // A zero length is no record: preallocated space (or damage).
        if len == 0 || pos + 8 + len > buf.len() {
            break;
        }
        out.push((pos as u64, 8 + len as u64));
        pos += 8 + len;
    }
    out
}

/// The record type byte of the record at `offset`.
fn record_type(path: &Path, offset: u64) -> u8 {
    fs::read(path).unwrap()[offset as usize + 8]
}

fn modify(path: &Path, f: impl FnOnce(&mut Vec<u8>)) {
    let mut buf = fs::read(path).unwrap();
    f(&mut buf);
    fs::write(path, buf).unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// The file and offset of a `Corrupt` error; panics on anything else.
fn corrupt_at(result: Result<(DurableLog, Recovered), StorageError>) -> (PathBuf, u64, String) {
    match result {
        Err(StorageError::Corrupt { file, offset, reason }) => (file, offset, reason),
        Err(other) => panic!("expected a Corrupt error, got {other}"),
        Ok(_) => panic!("expected a Corrupt error, but open succeeded"),
    }
}

/// A directory with entries 1..=n of term 1 written in batches with hard states, synced.
fn written_log(dir: &Path, options: Options, n: u64) -> Vec<Entry> {
    let mut log = create(dir, options);
    let all = entries(1, 1..=n);
    for (k, batch) in all.chunks(7).enumerate() {
        log.append(None, batch, Some(hs(1, Some(1), k as u64))).unwrap();
    }
    log.sync().unwrap();
    all
}

// ---------------------------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------------------------

#[test]
fn round_trip_across_segment_rotations() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path();
    let mut log = create(dir, options(600));
    let mut want = Vec::new();
    for term in 1..=5u64 {
        let batch = entries(term, want.len() as u64 + 1..=want.len() as u64 + 12);
        log.append(None, &batch, Some(hs(term, Some(term % 3 + 1), want.len() as u64))).unwrap();
        want.extend(batch);
    }
    log.sync().unwrap();
    let segments = segment_files(dir).len();
    assert!(segments >= 5, "tiny segments rotate: {segments}");
    assert_eq!(log.segment_paths().count(), segments);
    drop(log);

    let (mut log, rec) = reopen(dir, options(600));
    assert_eq!((rec.node_id, rec.cluster_id), (NodeId(1), CLUSTER));
    assert_eq!(rec.hard_state, hs(5, Some(3), 48));
    assert_eq!(rec.entries, want);
    assert_eq!(rec.snapshot, None);
    assert_eq!(rec.repaired, None);
    assert_eq!(log.last_index(), LogIndex(60));

    // Appending after a reopen continues the same log.
    log.append(None, &entries(6, 61..=70), Some(hs(6, None, 60))).unwrap();
    log.sync().unwrap();
    drop(log);
    let (_, rec) = reopen(dir, options(600));
    want.extend(entries(6, 61..=70));
    assert_eq!(rec.entries, want);
    assert_eq!(rec.hard_state, hs(6, None, 60));
}

#[test]
fn unsynced_appends_are_lost_like_in_a_crash() {
    let tmp = TempDir::new().unwrap();
    let mut log = create(tmp.path(), options(1 << 20));
    log.append(None, &entries(1, 1..=3), Some(hs(1, None, 0))).unwrap();
    log.sync().unwrap();
    log.append(None, &entries(1, 4..=6), Some(hs(2, Some(1), 3))).unwrap();
    drop(log); // no sync: the buffer never reached the file
    let (_, rec) = reopen(tmp.path(), options(1 << 20));
    assert_eq!(rec.entries, entries(1, 1..=3));
    assert_eq!(rec.hard_state, hs(1, None, 0));
}

#[test]
fn a_lower_commit_index_never_replaces_a_higher_one() {
    let tmp = TempDir::new().unwrap();
    let mut log = create(tmp.path(), options(1 << 20));
    log.append(None, &entries(1, 1..=5), Some(hs(1, Some(1), 5))).unwrap();
    log.append(None, &[], Some(hs(1, Some(1), 3))).unwrap();
    assert_eq!(log.hard_state(), hs(1, Some(1), 5));
    log.sync().unwrap();
    drop(log);
    assert_eq!(reopen(tmp.path(), options(1 << 20)).1.hard_state, hs(1, Some(1), 5));
}

#[test]
#[should_panic(expected = "term goes back")]
fn a_hard_state_going_back_is_a_programmer_error() {
    let tmp = TempDir::new().unwrap();
    let mut log = create(tmp.path(), fast_options(1 << 20));
    log.append(None, &[], Some(hs(3, None, 0))).unwrap();
    let _ = log.append(None, &[], Some(hs(2, None, 0)));
}

#[test]
#[should_panic(expected = "entries must follow the log")]
fn a_gap_after_the_log_is_a_programmer_error() {
    let tmp = TempDir::new().unwrap();
    let mut log = create(tmp.path(), fast_options(1 << 20));
    let _ = log.append(None, &entries(1, 2..=3), None);
}

// ---------------------------------------------------------------------------------------------
// Truncation
// ---------------------------------------------------------------------------------------------

#[test]
fn truncation_then_appends_survive_reopen() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path();
    let opts = options(500);
    let mut log = create(dir, opts.clone());
    log.append(None, &entries(1, 1..=40), Some(hs(1, Some(1), 10))).unwrap();
    // In the active segment.
    log.append(Some(LogIndex(38)), &entries(2, 38..=45), Some(hs(2, Some(2), 12))).unwrap();
    // Far back, across several segments.
    log.append(Some(LogIndex(15)), &entries(3, 15..=20), Some(hs(3, None, 14))).unwrap();
    // Implied by an entry that is already in the log.
    log.append(None, &entries(4, 19..=30), Some(hs(4, Some(3), 14))).unwrap();
    // A truncation that removes nothing.
    log.append(Some(LogIndex(31)), &entries(4, 31..=31), None).unwrap();
    log.sync().unwrap();
    drop(log);

    let mut want = entries(1, 1..=14);
    want.extend(entries(3, 15..=18));
    want.extend(entries(4, 19..=31));
    let (log, rec) = reopen(dir, opts);
    assert_eq!(rec.entries, want);
    assert_eq!(rec.hard_state, hs(4, Some(3), 14));
    assert_eq!(rec.repaired, None);
    assert_eq!(log.last_index(), LogIndex(31));
}

#[test]
fn truncation_at_every_index_then_reopen() {
    // Every cut point: segment firsts, middles, the active segment, the last entry.
    let n = 40;
    for from in 1..=n {
        let tmp = TempDir::new().unwrap();
        let dir = tmp.path();
        let mut all = written_log(dir, fast_options(400), n);
        let (mut log, _) = reopen(dir, fast_options(400));
        let mut tail = entries(2, from..=from + 2);
        log.append(Some(LogIndex(from)), &tail, Some(hs(2, None, 0))).unwrap();
        log.sync().unwrap();
        drop(log);
        all.truncate(from as usize - 1);
        all.append(&mut tail);
        let (_, rec) = reopen(dir, fast_options(400));
        assert_eq!(rec.entries, all, "truncation at {from}");
        // The greater commit index stays (it never goes back).
        assert_eq!(rec.hard_state, hs(2, None, 5), "truncation at {from}");
        assert_eq!(rec.repaired, None);
    }
}

#[test]
fn an_interrupted_truncation_is_completed_by_recovery() {
    // The state a crash leaves between creating the segment that continues the log at the
    // truncation point and cutting the old segment: the old entries are still in the file.
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path();
    written_log(dir, options(1 << 20), 20);
    let before = fs::read(&segment_files(dir)[0]).unwrap();
    let (mut log, _) = reopen(dir, options(1 << 20));
    log.append(Some(LogIndex(12)), &entries(2, 12..=13), Some(hs(2, Some(2), 3))).unwrap();
    log.sync().unwrap();
    drop(log);
    let files = segment_files(dir);
    assert_eq!(files.len(), 2, "the truncation continues the log in a new segment");
    fs::write(&files[0], &before).unwrap(); // undo the cut

    let (_, rec) = reopen(dir, options(1 << 20));
    let mut want = entries(1, 1..=11);
    want.extend(entries(2, 12..=13));
    assert_eq!(rec.entries, want);
    assert_eq!(rec.hard_state, hs(2, Some(2), 3));
    let repaired = rec.repaired.expect("reported");
    assert!(repaired.contains("interrupted truncation"), "{repaired}");
    assert!(fs::metadata(&files[0]).unwrap().len() < before.len() as u64, "the old segment was cut");
}

// ---------------------------------------------------------------------------------------------
// Torn tails
// ---------------------------------------------------------------------------------------------

/// A log whose last record is entry 30, alone in the last write.
fn log_ending_in_an_entry(dir: &Path) -> (Vec<Entry>, PathBuf, u64, u64) {
    let mut all = written_log(dir, options(700), 29);
    let (mut log, _) = reopen(dir, options(700));
    let last = entry(1, 30);
    log.append(None, std::slice::from_ref(&last), None).unwrap();
    log.sync().unwrap();
    drop(log);
    all.push(last);
    let path = segment_files(dir).pop().unwrap();
    let &(offset, len) = records(&path).last().unwrap();
    assert_eq!(record_type(&path, offset), 2, "the last record is an entry");
    (all, path, offset, len)
}

#[test]
fn torn_tail_cut_at_every_byte_of_the_last_record() {
    let tmp = TempDir::new().unwrap();
    let (all, path, offset, len) = log_ending_in_an_entry(tmp.path());
    for cut in offset..offset + len {
        let copy = TempDir::new().unwrap();
        copy_dir(tmp.path(), copy.path());
        let seg = copy.path().join("log").join(path.file_name().unwrap());
        modify(&seg, |b| b.truncate(cut as usize));

        let (mut log, rec) = reopen(copy.path(), options(700));
        assert_eq!(rec.entries, all[..29], "cut at {cut}");
        assert_eq!(rec.hard_state, hs(1, Some(1), 4));
        if cut > offset {
            let repaired = rec.repaired.unwrap_or_else(|| panic!("cut at {cut}: repair not reported"));
            assert!(repaired.contains(&format!("at offset {offset}")), "{repaired}");
        } else {
            assert_eq!(rec.repaired, None, "a file ending at a record boundary is not torn");
        }
        // The log goes on from where it was cut.
        log.append(None, &entries(2, 30..=31), Some(hs(2, None, 29))).unwrap();
        log.sync().unwrap();
        drop(log);
        let (_, rec) = reopen(copy.path(), options(700));
        assert_eq!(rec.entries[29..], entries(2, 30..=31)[..], "cut at {cut}");
        assert_eq!(rec.repaired, None);
    }
}

#[test]
fn torn_tail_overwritten_with_zeros_or_garbage() {
    let tmp = TempDir::new().unwrap();
    let (all, path, offset, len) = log_ending_in_an_entry(tmp.path());
    let damage: [(&str, fn(&mut [u8])); 3] = [
        ("ones", |r| r.fill(0xff)),
        ("garbage", |r| r.iter_mut().enumerate().for_each(|(k, b)| *b = (k as u8).wrapping_mul(37).wrapping_add(11))),
        ("a flipped bit", |r| r[r.len() - 1] ^= 0x04),
    ];
    for (name, damage) in damage {
        let copy = TempDir::new().unwrap();
        copy_dir(tmp.path(), copy.path());
        let seg = copy.path().join("log").join(path.file_name().unwrap());
        modify(&seg, |b| damage(&mut b[offset as usize..(offset + len) as usize]));
        let (_, rec) = reopen(copy.path(), options(700));
        assert_eq!(rec.entries, all[..29], "{name}");
        assert!(rec.repaired.is_some(), "{name}");
        assert_eq!(fs::metadata(&seg).unwrap().len(), offset, "{name}: the file is cut where the torn record started");
    }
    // The last record zeroed to the end of the file: a write that never reached the disk, like
    // one that was never synced. The segment ends before it; nothing needs repairing.
    let copy = TempDir::new().unwrap();
    copy_dir(tmp.path(), copy.path());
    let seg = copy.path().join("log").join(path.file_name().unwrap());
    modify(&seg, |b| b[offset as usize..].fill(0));
    let size = fs::metadata(&seg).unwrap().len();
    let (mut log, rec) = reopen(copy.path(), options(700));
    assert_eq!((rec.entries.as_slice(), rec.repaired), (&all[..29], None));
    assert_eq!(fs::metadata(&seg).unwrap().len(), size, "preallocated space is kept");
    // And the log appends over the zeros.
    log.append(None, &entries(1, 30..=31), None).unwrap();
    log.sync().unwrap();
    drop(log);
    let (_, rec) = reopen(copy.path(), options(700));
    assert_eq!((rec.entries, rec.repaired), (entries(1, 1..=31), None));
}

#[test]
fn preallocated_space_is_the_end_of_a_segment_not_damage() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path();
    let prealloc = Options { preallocate_bytes: 1 << 16, ..options(1500) };
    let mut log = create(dir, prealloc.clone());
    let mut all = Vec::new();
    for k in 0..10u64 {
        let batch = entries(1, k * 10 + 1..=k * 10 + 10);
        log.append(None, &batch, Some(hs(1, Some(1), k * 10))).unwrap();
        log.sync().unwrap();
        all.extend(batch);
    }
    let segments = segment_files(dir);
    assert!(segments.len() >= 3, "the log rotated");
    let active = segments.last().unwrap();
    let records_end = records(active).last().map(|&(o, l)| o + l).unwrap();
    assert!(fs::metadata(active).unwrap().len() > records_end, "the active segment is preallocated");
    for old in &segments[..segments.len() - 1] {
        let end = records(old).last().map(|&(o, l)| o + l).unwrap();
        assert_eq!(fs::metadata(old).unwrap().len(), end, "a full segment gives its spare space back at rotation");
    }
    drop(log);

    // Reopened, nothing is repaired and the space is kept; appends land after the records.
    let (mut log, rec) = reopen(dir, prealloc.clone());
    assert_eq!((rec.entries.as_slice(), rec.repaired.as_deref()), (all.as_slice(), None));
    let size = fs::metadata(active).unwrap().len();
    log.append(None, &entries(1, 101..=105), Some(hs(2, None, 100))).unwrap();
    log.sync().unwrap();
    drop(log);
    assert_eq!(fs::metadata(active).unwrap().len(), size);
    let (_, rec) = reopen(dir, prealloc.clone());
    all.extend(entries(1, 101..=105));
    assert_eq!((rec.entries.as_slice(), rec.hard_state, rec.repaired), (all.as_slice(), hs(2, None, 100), None));

    // A torn record in the preallocated space is cut like any torn tail (the zeros with it).
    let end = records(active).last().map(|&(o, l)| o + l).unwrap();
    modify(active, |b| b[end as usize..end as usize + 11].fill(0x5a));
    let (_, rec) = reopen(dir, prealloc.clone());
    assert_eq!(rec.entries, all);
    assert!(rec.repaired.as_deref().is_some_and(|r| r.contains("torn write")), "{:?}", rec.repaired);
    assert_eq!(fs::metadata(active).unwrap().len(), end);

    // Corruption before the zeros is still corruption.
    let recs = records(active);
    let (offset, _) = recs[recs.len() / 2];
    modify(active, |b| {
        b.resize(b.len() + 4096, 0);
        b[offset as usize + 9] ^= 0x01;
    });
    let (file, at, _) = corrupt_at(DurableLog::open(dir, prealloc));
    assert_eq!((file, at), (active.clone(), offset));
}

#[test]
fn torn_hard_state_record_falls_back_to_the_previous_hard_state() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path();
    let mut log = create(dir, options(1 << 20));
    log.append(None, &entries(1, 1..=3), Some(hs(1, Some(1), 2))).unwrap();
    log.sync().unwrap();
    log.append(None, &[], Some(hs(2, Some(2), 3))).unwrap();
    log.sync().unwrap();
    drop(log);
    let path = segment_files(dir).pop().unwrap();
    let &(offset, _) = records(&path).last().unwrap();
    assert_eq!(record_type(&path, offset), 3);
    modify(&path, |b| b.truncate(offset as usize + 20));
    let (_, rec) = reopen(dir, options(1 << 20));
    assert_eq!(rec.hard_state, hs(1, Some(1), 2));
    assert_eq!(rec.entries, entries(1, 1..=3));
}

#[test]
fn a_segment_whose_creation_was_cut_short_is_removed() {
    for partial in [0usize, 5, 20] {
        let tmp = TempDir::new().unwrap();
        let dir = tmp.path();
        let all = written_log(dir, options(700), 30);
        let files = segment_files(dir);
        // What a crash during rotation leaves: the next segment with part of its header.
        let header = fs::read(&files[0]).unwrap()[..partial].to_vec();
        let next = dir.join("log").join(format!("{:020}.seg", 31));
        fs::write(&next, header).unwrap();
        let (mut log, rec) = reopen(dir, options(700));
        assert_eq!(rec.entries, all, "partial header of {partial} bytes");
        assert!(rec.repaired.unwrap().contains("creation was cut short"));
        assert!(!next.exists());
        log.append(None, &entries(1, 31..=31), None).unwrap();
        log.sync().unwrap();
    }
    // The only segment cannot have been cut short: its header is corruption.
    let tmp = TempDir::new().unwrap();
    written_log(tmp.path(), options(1 << 20), 3);
    let only = segment_files(tmp.path()).pop().unwrap();
    modify(&only, |b| b[1] ^= 0x40);
    let (file, offset, reason) = corrupt_at(DurableLog::open(tmp.path(), options(1 << 20)));
    assert_eq!((file, offset), (only, 0));
    assert!(reason.contains("header"), "{reason}");
}

// ---------------------------------------------------------------------------------------------
// Corruption
// ---------------------------------------------------------------------------------------------

#[test]
fn corruption_in_the_middle_of_the_last_segment_is_refused() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path();
    written_log(dir, options(2000), 60);
    let path = segment_files(dir).pop().unwrap();
    let recs = records(&path);
    assert!(recs.len() >= 6, "the last segment holds several records");
    let (offset, len) = recs[recs.len() / 2];
    // A flipped bit in the length, in the checksum, and in the body.
    for at in [0, 5, 8 + 9, len - 1] {
        let copy = TempDir::new().unwrap();
        copy_dir(dir, copy.path());
        let seg = copy.path().join("log").join(path.file_name().unwrap());
        modify(&seg, |b| b[(offset + at) as usize] ^= 0x01);
        let before = fs::read(&seg).unwrap();
        let result = DurableLog::open(copy.path(), options(2000));
        let message = match &result {
            Err(e) => e.to_string(),
            Ok(_) => String::new(),
        };
        let (file, off, _) = corrupt_at(result);
        assert_eq!((file, off), (seg.clone(), offset), "flip at +{at}");
        assert!(message.starts_with(&format!("corrupt record in {} at offset {offset}: ", seg.display())), "{message}");
        assert_eq!(fs::read(&seg).unwrap(), before, "a refused directory is left untouched");
    }
}

#[test]
fn corruption_in_an_older_segment_is_refused() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path();
    written_log(dir, options(700), 40);
    let files = segment_files(dir);
    assert!(files.len() >= 3);
    let older = &files[1];
    let recs = records(older);
    // Even damage that would pass for a torn tail in the newest segment: its last record.
    for (offset, len) in [recs[recs.len() / 2], recs[recs.len() - 1]] {
        let copy = TempDir::new().unwrap();
        copy_dir(dir, copy.path());
        let seg = copy.path().join("log").join(older.file_name().unwrap());
        modify(&seg, |b| b[(offset + len - 1) as usize] ^= 0x80);
        let (file, off, reason) = corrupt_at(DurableLog::open(copy.path(), options(700)));
        assert_eq!((file, off), (seg.clone(), offset));
        assert!(reason.contains("CRC mismatch"), "{reason}");
    }
    // A cut older segment.
    let copy = TempDir::new().unwrap();
    copy_dir(dir, copy.path());
    let seg = copy.path().join("log").join(older.file_name().unwrap());
    let (offset, _) = recs[recs.len() - 1];
    modify(&seg, |b| b.truncate(offset as usize + 3));
    assert_eq!(corrupt_at(DurableLog::open(copy.path(), options(700))).1, offset);
}

#[test]
fn bad_headers_gaps_and_misnamed_segments_are_refused() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path();
    written_log(dir, options(700), 40);
    let files = segment_files(dir);
    assert!(files.len() >= 4);
    let fresh = || {
        let copy = TempDir::new().unwrap();
        copy_dir(dir, copy.path());
        let files = segment_files(copy.path());
        (copy, files)
    };

    // Bad magic (the checksum is recomputed, so only the content is wrong).
    let (copy, f) = fresh();
    modify(&f[1], |b| {
        b[9] = b'X';
        let crc = crc32c::crc32c(&b[8..29]);
        b[4..8].copy_from_slice(&crc.to_le_bytes());
    });
    let (file, offset, reason) = corrupt_at(DurableLog::open(copy.path(), options(700)));
    assert_eq!((file, offset), (f[1].clone(), 0));
    assert!(reason.contains("magic"), "{reason}");

    // A missing segment in the middle: a gap.
    let (copy, f) = fresh();
    fs::remove_file(&f[1]).unwrap();
    let (file, offset, reason) = corrupt_at(DurableLog::open(copy.path(), options(700)));
    assert_eq!((file, offset), (f[2].clone(), 0));
    assert!(reason.contains("gap"), "{reason}");

    // A missing first segment, without a snapshot.
    let (copy, f) = fresh();
    fs::remove_file(&f[0]).unwrap();
    let (file, _, reason) = corrupt_at(DurableLog::open(copy.path(), options(700)));
    assert_eq!(file, f[1]);
    assert!(reason.contains("entries are missing"), "{reason}");

    // A file whose name contradicts its header.
    let (copy, f) = fresh();
    let newest = f.last().unwrap();
    let renamed = newest.with_file_name(format!("{:020}.seg", 1000));
    fs::rename(newest, &renamed).unwrap();
    let (file, offset, reason) = corrupt_at(DurableLog::open(copy.path(), options(700)));
    assert_eq!((file, offset), (renamed, 0));
    assert!(reason.contains("file name"), "{reason}");

    // No segment at all.
    let (copy, f) = fresh();
    for file in f {
        fs::remove_file(file).unwrap();
    }
    assert!(matches!(DurableLog::open(copy.path(), options(700)), Err(StorageError::Inconsistent { .. })));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Whatever bytes a segment holds, recovery answers with a state or an error, never a panic.
    #[test]
    fn arbitrary_damage_never_panics(edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
                                     cut in proptest::option::of(any::<prop::sample::Index>())) {
        let tmp = TempDir::new().unwrap();
        written_log(tmp.path(), fast_options(700), 20);
        let files = segment_files(tmp.path());
        for (at, byte) in edits {
            let file = &files[at.index(files.len())];
            modify(file, |b| { let i = at.index(b.len()); b[i] = byte; });
        }
        if let Some(cut) = cut {
            let last = files.last().unwrap();
            modify(last, |b| { let keep = cut.index(b.len() + 1); b.truncate(keep); });
        }
        if let Ok((mut log, rec)) = DurableLog::open(tmp.path(), fast_options(700)) {
            // Whatever was recovered is a log one can continue.
            let next = rec.last_index().next();
            log.append(None, &[entry(rec.hard_state.term.0.max(1), next.0)], None).unwrap();
            log.sync().unwrap();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Snapshots and compaction
// ---------------------------------------------------------------------------------------------

/// Reopens a `written_log(.., 60)` (entries `all`) that took a snapshot at 45 and then
/// appended entries 61..=62 of term 2 with hard state (2, none, 50), and checks it recovers
/// exactly that, with nothing repaired.
fn reopen_to_snapshot_45_then_61_62(dir: &Path, all: &[Entry]) -> (DurableLog, Recovered) {
    let (log, rec) = reopen(dir, options(700));
    assert_eq!(rec.snapshot, Some(snapshot(1, 45)));
    let mut want = all[45..].to_vec();
    want.extend(entries(2, 61..=62));
    assert_eq!(rec.entries, want);
    assert_eq!(rec.hard_state, hs(2, None, 50));
    assert_eq!(rec.repaired, None);
    (log, rec)
}

#[test]
fn snapshot_compacts_old_segments_and_reopens() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path();
    let all = written_log(dir, options(700), 60);
    let (mut log, _) = reopen(dir, options(700));
    let before = segment_files(dir);
    log.save_snapshot(&snapshot(1, 45)).unwrap();
    let after = segment_files(dir);
    assert!(after.len() < before.len(), "{} segments before, {} after", before.len(), after.len());
    // The oldest remaining segment holds entry 46.
    let first: u64 = after[0].file_stem().unwrap().to_str().unwrap().parse().unwrap();
    assert!(first <= 46 && before.iter().any(|p| p == &after[0]));
    assert_eq!((log.first_index(), log.last_index()), (LogIndex(46), LogIndex(60)));
    log.append(None, &entries(2, 61..=62), Some(hs(2, None, 50))).unwrap();
    log.sync().unwrap();
    drop(log);

    let (log, rec) = reopen_to_snapshot_45_then_61_62(dir, &all);
    assert_eq!(log.snapshot_meta(), Some(&snapshot(1, 45).meta));
    let persisted = rec.into_persisted_state();
    assert_eq!(persisted.applied, LogIndex(45));
}

#[test]
fn a_snapshot_written_off_thread_lets_the_log_keep_appending() {
    // The server's path for snapshots it takes: begin (log durable), write on another thread
    // while the log appends and syncs, then finish (compaction).
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path();
    let all = written_log(dir, options(700), 60);
    let (mut log, _) = reopen(dir, options(700));
    let before = segment_files(dir);
    let write = log.begin_snapshot(snapshot(1, 45)).unwrap();
    let writer = std::thread::spawn(move || write.write());
    log.append(None, &entries(2, 61..=62), Some(hs(2, None, 50))).unwrap();
    log.sync().unwrap();
    let meta = writer.join().unwrap().unwrap();
    assert_eq!(segment_files(dir), before, "nothing is deleted before the snapshot is recorded");
    log.finish_snapshot(meta).unwrap();
    assert!(segment_files(dir).len() < before.len());
    assert_eq!((log.first_index(), log.last_index()), (LogIndex(46), LogIndex(62)));
    // A snapshot that is not newer (a leader's overtook it) changes nothing.
    log.finish_snapshot(snapshot(1, 40).meta).unwrap();
    assert_eq!(log.snapshot_meta(), Some(&snapshot(1, 45).meta));
    drop(log);

    reopen_to_snapshot_45_then_61_62(dir, &all);
}

#[test]
fn a_crash_during_an_off_thread_snapshot_recovers_the_old_or_the_new_snapshot() {
    let tmp = TempDir::new().unwrap();
    let base = tmp.path().join("base");
    let all = written_log(&base, options(700), 60);

    // Crash after begin, before the file is written: the old state, whole.
    let dir = tmp.path().join("before-write");
    copy_dir(&base, &dir);
    let (mut log, _) = reopen(&dir, options(700));
    let write = log.begin_snapshot(snapshot(1, 45)).unwrap();
    drop((log, write));
    let (_, rec) = reopen(&dir, options(700));
    assert_eq!((rec.snapshot, rec.entries), (None, all.clone()));

    // Crash after the file is durable, before the log recorded it: the new snapshot, and
    // recovery finishes the compaction.
    let dir = tmp.path().join("before-finish");
    copy_dir(&base, &dir);
    let (mut log, _) = reopen(&dir, options(700));
    let segments_before = segment_files(&dir).len();
    log.begin_snapshot(snapshot(1, 45)).unwrap().write().unwrap();
    drop(log);
    let (_, rec) = reopen(&dir, options(700));
    assert_eq!(rec.snapshot, Some(snapshot(1, 45)));
    assert_eq!(rec.entries, all[45..].to_vec());
    assert!(segment_files(&dir).len() < segments_before);
}

#[test]
#[should_panic(expected = "has term 1 in the log")]
fn an_off_thread_snapshot_must_match_the_log() {
    let tmp = TempDir::new().unwrap();
    written_log(tmp.path(), fast_options(700), 10);
    let (mut log, _) = reopen(tmp.path(), fast_options(700));
    let _ = log.begin_snapshot(snapshot(2, 5));
}

#[test]
fn snapshot_covering_the_whole_log_and_beyond() {
    // A follower far behind installs the leader's snapshot: nothing of its log survives, and
    // the next entry is the one after the snapshot.
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path();
    written_log(dir, options(700), 30);
    let (mut log, _) = reopen(dir, options(700));
    log.save_snapshot(&snapshot(3, 100)).unwrap();
    assert_eq!(segment_files(dir), vec![dir.join("log").join(format!("{:020}.seg", 101))]);
    assert_eq!((log.first_index(), log.last_index()), (LogIndex(101), LogIndex(100)));
    log.append(None, &entries(3, 101..=105), Some(hs(3, Some(2), 100))).unwrap();
    log.sync().unwrap();
    drop(log);
    let (mut log, rec) = reopen(dir, options(700));
    assert_eq!(rec.entries, entries(3, 101..=105));
    assert_eq!(rec.snapshot, Some(snapshot(3, 100)));

    // A snapshot at exactly the last entry.
    log.save_snapshot(&snapshot(3, 105)).unwrap();
    drop(log);
    let (_, rec) = reopen(dir, options(700));
    assert_eq!((rec.entries.len(), rec.last_index()), (0, LogIndex(105)));
}

#[test]
fn snapshot_whose_last_entry_conflicts_drops_the_log_after_it() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path();
    written_log(dir, options(700), 30);
    let (mut log, _) = reopen(dir, options(700));
    // The leader's entry 20 has term 2; ours has term 1: entries 21.. are not the leader's.
    log.save_snapshot(&snapshot(2, 20)).unwrap();
    assert_eq!(log.last_index(), LogIndex(20));
    drop(log);
    let (_, rec) = reopen(dir, options(700));
    assert_eq!((rec.last_index(), rec.entries), (LogIndex(20), vec![]));
    assert_eq!(rec.repaired, None);
}

#[test]
fn corrupt_snapshot_is_refused_and_leftover_tmp_is_removed() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path();
    written_log(dir, options(700), 30);
    let (mut log, _) = reopen(dir, options(700));
    log.save_snapshot(&snapshot(1, 20)).unwrap();
    drop(log);
    assert!(!segment_files(dir).iter().any(|p| p.ends_with("00000000000000000001.seg")), "compacted");

    // An interrupted snapshot write leaves snapshot.tmp: ignored and removed.
    fs::write(dir.join("snapshot.tmp"), b"half a snapshot").unwrap();
    let (_, rec) = reopen(dir, options(700));
    assert_eq!(rec.snapshot, Some(snapshot(1, 20)));
    assert!(!dir.join("snapshot.tmp").exists());

    let copy = TempDir::new().unwrap();
    copy_dir(dir, copy.path());
    modify(&copy.path().join("snapshot"), |b| {
        let mid = b.len() / 2;
        b[mid] ^= 0x20;
    });
    match DurableLog::open(copy.path(), options(700)) {
        Err(e @ StorageError::CorruptSnapshot { .. }) => {
            assert!(e.to_string().contains(&copy.path().join("snapshot").display().to_string()), "{e}")
        }
        other => panic!("expected CorruptSnapshot, got {:?}", other.map(|(_, r)| r)),
    }
    // Without its snapshot the log misses its beginning.
    let copy = TempDir::new().unwrap();
    copy_dir(dir, copy.path());
    fs::remove_file(copy.path().join("snapshot")).unwrap();
    let (_, _, reason) = corrupt_at(DurableLog::open(copy.path(), options(700)));
    assert!(reason.contains("entries are missing"), "{reason}");
}

#[test]
fn persist_ready_applies_snapshot_truncation_entries_then_hard_state() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path();
    written_log(dir, options(700), 30);
    let (mut log, _) = reopen(dir, options(700));
    // A follower installs a snapshot at 25 that matches its log, then the leader's entries
    // conflict from 28 on.
    let ready = Ready {
        snapshot: Some(snapshot(1, 25)),
        truncate_from: Some(LogIndex(28)),
        entries: entries(4, 28..=29),
        hard_state: Some(hs(4, Some(3), 25)),
        must_sync: true,
        ..Ready::default()
    };
    log.persist_ready(&ready).unwrap();
    log.sync().unwrap();
    drop(log);
    let (_, rec) = reopen(dir, options(700));
    let mut want = entries(1, 26..=27);
    want.extend(entries(4, 28..=29));
    assert_eq!(rec.entries, want);
    assert_eq!(rec.hard_state, hs(4, Some(3), 25));
    assert_eq!(rec.snapshot, Some(snapshot(1, 25)));
}

#[test]
fn persist_ready_with_a_snapshot_and_a_truncation_inside_it() {
    // The core may hand out a snapshot together with a truncation it decided before installing
    // it: everything after the snapshot goes, and the Ready's entries follow the snapshot.
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path();
    written_log(dir, options(700), 30);
    let (mut log, _) = reopen(dir, options(700));
    let ready = Ready {
        snapshot: Some(snapshot(1, 25)),
        truncate_from: Some(LogIndex(22)),
        entries: entries(5, 26..=27),
        hard_state: Some(hs(5, None, 25)),
        must_sync: true,
        ..Ready::default()
    };
    log.persist_ready(&ready).unwrap();
    log.sync().unwrap();
    drop(log);
    let (_, rec) = reopen(dir, options(700));
    assert_eq!(rec.entries, entries(5, 26..=27));
    assert_eq!(rec.snapshot, Some(snapshot(1, 25)));
}

// ---------------------------------------------------------------------------------------------
// Metadata
// ---------------------------------------------------------------------------------------------

#[test]
fn create_and_open_keep_the_ids() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path().join("node-7");
    let log = DurableLog::create(&dir, NodeId(7), 0xDEAD_BEEF, options(1 << 20)).unwrap();
    assert_eq!((log.node_id(), log.cluster_id(), log.last_index()), (NodeId(7), 0xDEAD_BEEF, LogIndex(0)));
    drop(log);
    let (log, rec) = reopen(&dir, options(1 << 20));
    assert_eq!((rec.node_id, rec.cluster_id), (NodeId(7), 0xDEAD_BEEF));
    assert_eq!((log.node_id(), log.cluster_id()), (NodeId(7), 0xDEAD_BEEF));
    assert_eq!((rec.hard_state, rec.entries, rec.snapshot, rec.repaired), (HardState::default(), vec![], None, None));
}

#[test]
fn open_without_meta_and_create_over_data_are_refused() {
    let tmp = TempDir::new().unwrap();
    let missing = tmp.path().join("nothing-here");
    assert!(matches!(DurableLog::open(&missing, options(1 << 20)), Err(StorageError::NotInitialized { .. })));
    let empty = tmp.path().join("empty");
    fs::create_dir(&empty).unwrap();
    let err = DurableLog::open(&empty, options(1 << 20)).unwrap_err();
    assert!(matches!(err, StorageError::NotInitialized { .. }));
    assert!(err.to_string().contains("empty") && err.to_string().contains("create it first"), "{err}");

    let used = tmp.path().join("used");
    drop(create(&used, options(1 << 20)));
    let err = DurableLog::create(&used, NodeId(2), CLUSTER, options(1 << 20)).unwrap_err();
    assert!(matches!(err, StorageError::NotEmpty { .. }), "{err}");
    let stray = tmp.path().join("stray");
    fs::create_dir(&stray).unwrap();
    fs::write(stray.join("notes.txt"), b"hello").unwrap();
    assert!(matches!(DurableLog::create(&stray, NodeId(2), CLUSTER, options(1 << 20)), Err(StorageError::NotEmpty { .. })));

    assert!(matches!(DurableLog::create(&tmp.path().join("zero"), NodeId(0), CLUSTER, options(1 << 20)), Err(StorageError::Meta { .. })));

    // A corrupt meta file names itself.
    modify(&used.join("meta"), |b| b[12] ^= 1);
    let err = DurableLog::open(&used, options(1 << 20)).unwrap_err();
    assert!(matches!(err, StorageError::Meta { .. }) && err.to_string().contains("meta"), "{err}");
}

#[test]
fn a_data_directory_has_one_owner_at_a_time() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path().join("node");
    let log = create(&dir, fast_options(1 << 20));
    for _ in 0..2 {
        let err = DurableLog::open(&dir, fast_options(1 << 20)).expect_err("a second owner");
        assert!(matches!(err, StorageError::Locked { .. }), "{err}");
        assert!(err.to_string().contains("is in use by another process"), "{err}");
    }
    drop(log);
    let (log, rec) = reopen(&dir, fast_options(1 << 20));
    assert_eq!(rec.repaired, None);
    assert!(matches!(DurableLog::open(&dir, fast_options(1 << 20)), Err(StorageError::Locked { .. })));
    drop(log);
    reopen(&dir, fast_options(1 << 20));
}

// ---------------------------------------------------------------------------------------------
// Failure
// ---------------------------------------------------------------------------------------------

#[test]
fn a_failed_write_fails_the_log_until_reopened() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path();
    let mut log = create(dir, options(200));
    log.append(None, &entries(1, 1..=3), None).unwrap();
    log.sync().unwrap();
    // Rotation must create a file in a directory that is gone.
    fs::rename(dir.join("log"), dir.join("log-moved")).unwrap();
    let err = log.append(None, &entries(1, 4..=10), None).unwrap_err();
    assert!(matches!(err, StorageError::Io { .. }), "{err}");
    let err = log.sync().unwrap_err();
    assert!(matches!(err, StorageError::Failed { .. }), "{err}");
    assert!(err.to_string().contains("reopen"), "{err}");
    drop(log);
    fs::remove_dir_all(dir.join("log")).ok();
    fs::rename(dir.join("log-moved"), dir.join("log")).unwrap();
    let (_, rec) = reopen(dir, options(200));
    assert_eq!(rec.entries[..3], entries(1, 1..=3)[..]);
}

// ---------------------------------------------------------------------------------------------
// Driving a real node
// ---------------------------------------------------------------------------------------------

#[test]
fn a_node_restarts_from_what_it_persisted() {
    use raft_core::{Bootstrap, Config, Node, SnapshotData};
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path();
    let mut log = create(dir, options(2000));
    let config = Config::new(NodeId(1));
    let mut node = Node::new(config.clone(), Bootstrap::NewCluster { voters: vec![NodeId(1)] }).unwrap();
    let mut applied = LogIndex(0);
    fn drive(node: &mut Node, log: &mut DurableLog, applied: &mut LogIndex) {
        for _ in 0..1000 {
            if !node.has_ready() {
                return;
            }
            let rd = node.ready();
            log.persist_ready(&rd).unwrap();
            if rd.must_sync {
                log.sync().unwrap();
            }
            if let Some(last) = rd.committed_entries.last() {
                *applied = last.index;
            }
            node.advance(&rd);
        }
        panic!("the node never went quiet");
    }
    for _ in 0..100 {
        if node.is_leader() {
            break;
        }
        node.tick();
        drive(&mut node, &mut log, &mut applied);
    }
    assert!(node.is_leader());
    for k in 0..40 {
        node.propose(Bytes::from(format!("command {k}"))).unwrap();
        drive(&mut node, &mut log, &mut applied);
        if k == 25 {
            let meta = node.compact(SnapshotData { index: applied, data: Bytes::from_static(b"sm") }).unwrap();
            log.save_snapshot(&Snapshot { meta, data: Bytes::from_static(b"sm") }).unwrap();
        }
    }
    // A commit-only hard state need not be synced for the node, but a clean shutdown syncs.
    log.sync().unwrap();
    let (last, hard_state) = (node.last_entry(), node.hard_state());
    drop(log);

    let (_, rec) = reopen(dir, options(2000));
    assert_eq!(rec.hard_state, hard_state);
    let restarted = Node::restart(config, rec.into_persisted_state()).unwrap();
    assert_eq!(restarted.last_entry(), last);
    assert_eq!(restarted.term(), hard_state.term);
}

// ---------------------------------------------------------------------------------------------
// Crash at every step of the multi-file operations
// ---------------------------------------------------------------------------------------------

const CRASH_SEGMENT_BYTES: u64 = 300;

/// Entries 1..=40 of term 1 over many segments; the hard state's term rises with every batch, so
/// the newest hard state exists only in the newest segment. Returns the entries and that hard
/// state.
fn crash_setup(dir: &Path) -> (Vec<Entry>, HardState) {
    let mut log = create(dir, fast_options(CRASH_SEGMENT_BYTES));
    let all = entries(1, 1..=40);
    for (k, batch) in all.chunks(4).enumerate() {
        log.append(None, batch, Some(hs(k as u64 + 1, Some(1), 2))).unwrap();
    }
    log.sync().unwrap();
    assert!(segment_files(dir).len() >= 8);
    (all, log.hard_state())
}

/// Runs `op` on a fresh `crash_setup` log with a crash injected after 0, 1, 2, ... file changes
/// until it completes. After each crash the directory must open, and `check` judges what came
/// back (given the setup's entries and hard state).
fn crash_at_every_change(op: impl Fn(&mut DurableLog) -> Result<(), StorageError>, check: impl Fn(&Recovered, &[Entry], HardState, usize)) {
    for changes in 0..200 {
        let tmp = TempDir::new().unwrap();
        let (old, old_hs) = crash_setup(tmp.path());
        let (mut log, _) = reopen(tmp.path(), fast_options(CRASH_SEGMENT_BYTES));
        super::files::crash_after(Some(changes));
        let result = op(&mut log);
        super::files::crash_after(None);
        drop(log);
        let (_, rec) = DurableLog::open(tmp.path(), fast_options(CRASH_SEGMENT_BYTES))
            .unwrap_or_else(|e| panic!("after a crash following {changes} file changes, open failed: {e}"));
        check(&rec, &old, old_hs, changes);
        if result.is_ok() {
            assert!(changes > 0, "the operation changes files");
            return;
        }
    }
    panic!("the operation never completed");
}

/// Recovered entries are the old log cut somewhere at or after `keep`, or the old log up to
/// `keep` followed by a prefix of `new`.
fn old_or_new(rec: &[Entry], old: &[Entry], keep: usize, new: &[Entry]) -> bool {
    if rec.len() < keep || rec[..keep] != old[..keep] {
        return false;
    }
    let rest = &rec[keep..];
    old[keep..].starts_with(rest) || new.starts_with(rest)
}

#[test]
fn a_crash_during_a_truncation_never_loses_the_kept_entries_or_the_hard_state() {
    // Cut points: far back (several later segments), a segment's first entry, the active segment.
    let first_of_a_segment = {
        let tmp = TempDir::new().unwrap();
        crash_setup(tmp.path());
        let name = segment_files(tmp.path())[3].file_stem().unwrap().to_str().unwrap().to_owned();
        name.parse::<u64>().unwrap()
    };
    for from in [7, first_of_a_segment, 39] {
        let new_hs = hs(20, Some(2), 3);
        let new = entries(20, from..=from + 2);
        crash_at_every_change(
            |log| {
                log.append(Some(LogIndex(from)), &new, Some(new_hs))?;
                log.sync()
            },
            |rec, old, old_hs, changes| {
                let keep = from as usize - 1;
                assert!(old_or_new(&rec.entries, old, keep, &new), "truncation at {from}, crash after {changes}: {:?}", rec.entries);
                assert!([old_hs, new_hs].contains(&rec.hard_state), "truncation at {from}, crash after {changes}: {:?}", rec.hard_state);
            },
        );
    }
}

#[test]
fn a_crash_during_a_snapshot_install_leaves_the_old_or_the_new_state() {
    // Matching the log (compaction), conflicting with it (the log after it goes), beyond it.
    for (term, index) in [(1, 25), (7, 20), (7, 100)] {
        let snap = snapshot(term, index);
        let new = entries(7, index + 1..=index + 3);
        crash_at_every_change(
            |log| {
                log.save_snapshot(&snap)?;
                log.append(None, &new, Some(hs(30, None, index)))?;
                log.sync()
            },
            |rec, old, old_hs, changes| {
                let what = format!("snapshot at {index} of term {term}, crash after {changes}");
                match &rec.snapshot {
                    None => assert_eq!(rec.entries, old, "{what}"),
                    Some(s) => {
                        assert_eq!(s, &snap, "{what}");
                        // Only a snapshot matching the log keeps entries after it (§7).
                        let kept = if term == 1 { &old[index as usize..] } else { &[][..] };
                        assert!(old_or_new(&rec.entries, kept, 0, &new), "{what}: {:?}", rec.entries);
                    }
                }
                assert!([old_hs, hs(30, None, index)].contains(&rec.hard_state), "{what}");
            },
        );
    }
}

#[test]
fn a_crash_during_rotations_keeps_a_prefix() {
    let new = entries(1, 41..=60);
    crash_at_every_change(
        |log| {
            for e in &new {
                log.append(None, std::slice::from_ref(e), None)?;
            }
            log.sync()
        },
        |rec, old, _, changes| {
            assert!(old_or_new(&rec.entries, old, old.len(), &new), "crash after {changes}: {:?}", rec.entries.len());
        },
    );
}

// ---------------------------------------------------------------------------------------------
// Property test against a model
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Op {
    /// Append `n` entries, in a new term if `new_term`.
    Append {
        n: u64,
        new_term: bool,
        size: usize,
    },
    /// Truncate `back` entries from the end and write `n` entries of a new term in their place,
    /// by `truncate_from` or, if `implied`, by the entries alone.
    Truncate {
        back: u64,
        n: u64,
        implied: bool,
    },
    /// A new hard state: maybe a new term, maybe a vote, a commit index `plus` ahead.
    HardState {
        new_term: bool,
        vote: bool,
        plus: u64,
    },
    /// A snapshot `back` entries before the end (beyond it if `back` is 0), with the log's term
    /// at that index unless `conflicting`.
    Snapshot {
        back: u64,
        conflicting: bool,
    },
    Sync,
    /// Sync, close, open: everything comes back.
    Reopen,
    /// Close without sync and open: the durable part comes back, and at most what followed.
    Crash,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1u64..6, prop::bool::weighted(0.2), 0usize..40).prop_map(|(n, new_term, size)| Op::Append { n, new_term, size }),
        2 => (0u64..12, 0u64..4, any::<bool>()).prop_map(|(back, n, implied)| Op::Truncate { back, n, implied }),
        2 => (prop::bool::weighted(0.3), any::<bool>(), 0u64..4).prop_map(|(new_term, vote, plus)| Op::HardState { new_term, vote, plus }),
        1 => (0u64..15, prop::bool::weighted(0.2)).prop_map(|(back, conflicting)| Op::Snapshot { back, conflicting }),
        2 => Just(Op::Sync),
        1 => Just(Op::Reopen),
        1 => Just(Op::Crash),
    ]
}

/// The obvious in-memory log.
#[derive(Clone, Debug, Default, PartialEq)]
struct Model {
    snapshot: Option<Snapshot>,
    entries: Vec<Entry>,
    hard_state: HardState,
}

impl Model {
    fn snapshot_index(&self) -> u64 {
        self.snapshot.as_ref().map_or(0, |s| s.meta.last.index.0)
    }

    fn last_index(&self) -> u64 {
        self.entries.last().map_or(self.snapshot_index(), |e| e.index.0)
    }

    fn term_at(&self, index: u64) -> Option<Term> {
        self.entries.iter().find(|e| e.index.0 == index).map(|e| e.term)
    }
}

/// The model, plus what is known to be durable, for crash checks.
struct Harness {
    model: Model,
    durable: Model,
    /// Hard states written since `durable` (including its own).
    hard_states: Vec<HardState>,
    term: u64,
}

impl Harness {
    fn synced(&mut self) {
        self.durable = self.model.clone();
        self.hard_states = vec![self.model.hard_state];
    }

    fn new_entries(&mut self, first: u64, n: u64, size: usize) -> Vec<Entry> {
        (first..first + n)
            .map(|i| Entry { term: Term(self.term), index: LogIndex(i), kind: EntryKind::Normal, data: Bytes::from(vec![i as u8; size]) })
            .collect()
    }
}

fn check(log: &DurableLog, model: &Model) {
    assert_eq!(log.last_index(), LogIndex(model.last_index()));
    assert_eq!(log.first_index(), LogIndex(model.snapshot_index() + 1));
    assert_eq!(log.hard_state(), model.hard_state);
    assert_eq!(log.snapshot_meta(), model.snapshot.as_ref().map(|s| &s.meta));
}

fn run(ops: Vec<Op>, options: Options) {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path();
    let mut log = Some(create(dir, options.clone()));
    let mut h = Harness { model: Model::default(), durable: Model::default(), hard_states: vec![HardState::default()], term: 1 };
    for op in ops {
        let l = log.as_mut().unwrap();
        match op {
            Op::Append { n, new_term, size } => {
                h.term += new_term as u64;
                let batch = h.new_entries(h.model.last_index() + 1, n, size);
                l.append(None, &batch, None).unwrap();
                h.model.entries.extend(batch);
            }
            Op::Truncate { back, n, implied } => {
                let floor = h.model.snapshot_index();
                let last = h.model.last_index();
                // A truncation point may fall into the snapshot: it then removes everything
                // after the snapshot.
                let cut = last.saturating_sub(back).max(1);
                let from = cut.max(floor + 1);
                if implied && n == 0 {
                    continue;
                }
                h.term += 1;
                let batch = h.new_entries(from, n, 3);
                l.append((!implied).then_some(LogIndex(cut)), &batch, None).unwrap();
                h.model.entries.retain(|e| e.index.0 < from);
                if from <= last {
                    h.synced(); // a truncation makes everything before it durable
                }
                h.model.entries.extend(batch);
            }
            Op::HardState { new_term, vote, plus } => {
                let cur = h.model.hard_state;
                let term = cur.term.0.max(h.term) + new_term as u64;
                h.term = term;
                let vote = if term == cur.term.0 { cur.vote.or(vote.then_some(NodeId(2))) } else { vote.then_some(NodeId(3)) };
                let next = HardState { term: Term(term), vote, commit: LogIndex(cur.commit.0 + plus) };
                l.append(None, &[], Some(next)).unwrap();
                h.model.hard_state = next;
                h.hard_states.push(next);
            }
            Op::Snapshot { back, conflicting } => {
                let last = h.model.last_index();
                let index = if back == 0 { last + 3 } else { last.saturating_sub(back) };
                if index <= h.model.snapshot_index() {
                    continue;
                }
                let term = match h.model.term_at(index) {
                    Some(t) if !conflicting => t.0,
                    _ => h.term + 1,
                };
                h.term = h.term.max(term);
                let snap = snapshot(term, index);
                l.save_snapshot(&snap).unwrap();
                if h.model.term_at(index) == Some(Term(term)) {
                    h.model.entries.retain(|e| e.index.0 > index);
                } else {
                    h.model.entries.clear();
                }
                h.model.snapshot = Some(snap);
                h.synced();
            }
            Op::Sync => {
                l.sync().unwrap();
                h.synced();
            }
            Op::Reopen => {
                l.sync().unwrap();
                drop(log.take());
                let (l, rec) = reopen(dir, options.clone());
                assert_eq!(rec.repaired, None);
                assert_eq!(rec.snapshot, h.model.snapshot);
                assert_eq!(rec.hard_state, h.model.hard_state);
                assert_eq!(rec.entries, h.model.entries);
                log = Some(l);
                h.synced();
            }
            Op::Crash => {
                drop(log.take());
                let (l, rec) = reopen(dir, options.clone());
                assert_eq!(rec.repaired, None, "whole records reach the file, so nothing is torn");
                assert_eq!(rec.snapshot, h.model.snapshot);
                assert!(rec.entries.len() >= h.durable.entries.len(), "lost durable entries");
                assert_eq!(rec.entries[..h.durable.entries.len()], h.durable.entries[..], "durable entries changed");
                assert!(rec.entries.len() <= h.model.entries.len());
                assert_eq!(rec.entries[..], h.model.entries[..rec.entries.len()], "entries that were never written");
                assert!(h.hard_states.contains(&rec.hard_state), "hard state {:?} not among {:?}", rec.hard_state, h.hard_states);
                h.model.entries = rec.entries;
                h.model.hard_state = rec.hard_state;
                log = Some(l);
                h.synced();
            }
        }
        check(log.as_ref().unwrap(), &h.model);
    }
    let l = log.as_mut().unwrap();
    l.sync().unwrap();
    drop(log);
    let (_, rec) = reopen(dir, options);
    assert_eq!((rec.snapshot, rec.hard_state, rec.entries), (h.model.snapshot, h.model.hard_state, h.model.entries));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn durable_log_matches_the_model(ops in proptest::collection::vec(op(), 1..40),
                                     segment_bytes in prop::sample::select(vec![0u64, 150, 400, 4096]),
                                     write_buffer_bytes in prop::sample::select(vec![0usize, 100, 1 << 20]),
                                     preallocate_bytes in prop::sample::select(vec![0u64, 64, 4096])) {
        run(ops, Options { segment_bytes, write_buffer_bytes, fsync: false, preallocate_bytes });
    }
}

/// The same with fsync on, a few times, so the model test also runs the real sync calls.
#[test]
fn durable_log_matches_the_model_with_fsync() {
    let ops = vec![
        Op::Append { n: 5, new_term: false, size: 30 },
        Op::HardState { new_term: true, vote: true, plus: 2 },
        Op::Append { n: 5, new_term: false, size: 30 },
        Op::Truncate { back: 3, n: 2, implied: false },
        Op::Sync,
        Op::Snapshot { back: 4, conflicting: false },
        Op::Append { n: 5, new_term: true, size: 10 },
        Op::Crash,
        Op::Truncate { back: 6, n: 1, implied: true },
        Op::Reopen,
        Op::Snapshot { back: 0, conflicting: true },
        Op::Append { n: 3, new_term: false, size: 0 },
        Op::Reopen,
    ];
    run(ops, Options { segment_bytes: 200, write_buffer_bytes: 64, fsync: true, preallocate_bytes: 256 });
}
