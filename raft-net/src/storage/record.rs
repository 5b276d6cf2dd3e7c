//! The record format of segment files: framing (`[u32 LE body length][u32 LE CRC32C of
//! body][body]`) and the three record bodies. Pure functions over byte slices; no I/O.
//!
//! Decoding never panics and never allocates more than the input holds, whatever the bytes.

use bytes::Bytes;
use raft_core::{Entry, EntryKind, HardState, LogIndex, NodeId, Term};

/// Bytes of the frame header: body length and checksum.
pub(super) const FRAME_BYTES: usize = 8;
/// Magic at the start of every segment's header record.
pub(super) const SEGMENT_MAGIC: &[u8; 8] = b"RAFTSEG1";
/// Version of the segment format written by this code.
pub(super) const SEGMENT_VERSION: u32 = 1;

const TYPE_HEADER: u8 = 1;
const TYPE_ENTRY: u8 = 2;
const TYPE_HARD_STATE: u8 = 3;

/// Header body: type, magic, version, first index.
const HEADER_BODY_BYTES: usize = 1 + 8 + 4 + 8;
/// Hard state body: type, term, vote (0 = none), commit.
const HARD_STATE_BODY_BYTES: usize = 1 + 8 + 8 + 8;
/// Entry body before the payload: type, term, index, kind.
const ENTRY_FIXED_BYTES: usize = 1 + 8 + 8 + 1;

/// The smallest entry record (empty payload): bounds how many entries a file can hold.
const MIN_ENTRY_RECORD_BYTES: u64 = (FRAME_BYTES + ENTRY_FIXED_BYTES) as u64;
/// The largest payload one entry record can carry (the body length is a `u32`).
pub(super) const MAX_ENTRY_DATA_BYTES: u64 = u32::MAX as u64 - ENTRY_FIXED_BYTES as u64;

/// One decoded record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Record {
    /// First record of every segment.
    Header {
        /// Format version.
        version: u32,
        /// Index of the segment's first entry (the file is named after it).
        first: LogIndex,
    },
    /// A log entry.
    Entry(Entry),
    /// A hard state.
    HardState(HardState),
}

/// Why the bytes at some offset are not a well-framed record. These are what a torn write
/// leaves behind, so recovery may treat them as a torn tail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum FrameError {
    /// Fewer than [`FRAME_BYTES`] bytes remain.
    TruncatedHeader,
    /// A zero body length (zero-filled space reads like this).
    ZeroLength,
    /// The body would extend past the end of the file.
    TruncatedBody { len: u32 },
    /// The body's checksum does not match.
    CrcMismatch,
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::TruncatedHeader => write!(f, "incomplete record header"),
            FrameError::ZeroLength => write!(f, "zero record length"),
            FrameError::TruncatedBody { len } => write!(f, "record body of {len} bytes extends past the end of the file"),
            FrameError::CrcMismatch => write!(f, "CRC mismatch"),
        }
    }
}

/// Appends a framed record whose body `write_body` produces.
fn frame(buf: &mut Vec<u8>, write_body: impl FnOnce(&mut Vec<u8>)) {
    let start = buf.len();
    buf.extend_from_slice(&[0; FRAME_BYTES]);
    write_body(buf);
    let body = &buf[start + FRAME_BYTES..];
    let len = u32::try_from(body.len()).expect("callers check the size of entries");
    let crc = crc32c::crc32c(body);
    buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Appends a segment header record.
pub(super) fn encode_header(buf: &mut Vec<u8>, first: LogIndex) {
    frame(buf, |b| {
        b.push(TYPE_HEADER);
        b.extend_from_slice(SEGMENT_MAGIC);
        b.extend_from_slice(&SEGMENT_VERSION.to_le_bytes());
        b.extend_from_slice(&first.0.to_le_bytes());
    });
}

/// Appends an entry record. The payload must be at most [`MAX_ENTRY_DATA_BYTES`].
pub(super) fn encode_entry(buf: &mut Vec<u8>, entry: &Entry) {
    frame(buf, |b| {
        b.push(TYPE_ENTRY);
        b.extend_from_slice(&entry.term.0.to_le_bytes());
        b.extend_from_slice(&entry.index.0.to_le_bytes());
        b.push(kind_to_byte(entry.kind));
        b.extend_from_slice(&entry.data);
    });
}

/// Appends a hard state record.
pub(super) fn encode_hard_state(buf: &mut Vec<u8>, hs: &HardState) {
    frame(buf, |b| {
        b.push(TYPE_HARD_STATE);
        b.extend_from_slice(&hs.term.0.to_le_bytes());
        b.extend_from_slice(&hs.vote.map_or(0, |v| v.0).to_le_bytes());
        b.extend_from_slice(&hs.commit.0.to_le_bytes());
    });
}

fn kind_to_byte(kind: EntryKind) -> u8 {
    match kind {
        EntryKind::Blank => 0,
        EntryKind::Normal => 1,
        EntryKind::Membership => 2,
    }
}

fn kind_from_byte(byte: u8) -> Option<EntryKind> {
    match byte {
        0 => Some(EntryKind::Blank),
        1 => Some(EntryKind::Normal),
        2 => Some(EntryKind::Membership),
        _ => None,
    }
}

fn u32_at(buf: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(buf.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

fn u64_at(buf: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(buf.get(at..at.checked_add(8)?)?.try_into().ok()?))
}

/// Reads the frame at `pos`: its body and the offset just past it.
pub(super) fn read_frame(buf: &[u8], pos: usize) -> Result<(&[u8], usize), FrameError> {
    let remaining = buf.len().saturating_sub(pos);
    if remaining < FRAME_BYTES {
        return Err(FrameError::TruncatedHeader);
    }
    let len = u32_at(buf, pos).ok_or(FrameError::TruncatedHeader)?;
    let crc = u32_at(buf, pos + 4).ok_or(FrameError::TruncatedHeader)?;
    if len == 0 {
        return Err(FrameError::ZeroLength);
    }
    if len as usize > remaining - FRAME_BYTES {
        return Err(FrameError::TruncatedBody { len });
    }
    let start = pos + FRAME_BYTES;
    let body = &buf[start..start + len as usize];
    if crc32c::crc32c(body) != crc {
        return Err(FrameError::CrcMismatch);
    }
    Ok((body, start + len as usize))
}

/// Decodes a record body whose frame was valid. An error here is never a torn write (the
/// checksum matched): the record was written wrong or deliberately altered.
pub(super) fn decode_body(body: &[u8]) -> Result<Record, String> {
    let Some((&kind, rest)) = body.split_first() else { return Err("empty record body".into()) };
    match kind {
        TYPE_HEADER => {
            if body.len() != HEADER_BODY_BYTES {
                return Err(format!("segment header of {} bytes, expected {HEADER_BODY_BYTES}", body.len()));
            }
            if &rest[..8] != SEGMENT_MAGIC {
                return Err("bad segment magic".into());
            }
            let version = u32_at(rest, 8).ok_or("short header")?;
            let first = u64_at(rest, 12).ok_or("short header")?;
            if first == 0 {
                return Err("segment header names first index 0".into());
            }
            Ok(Record::Header { version, first: LogIndex(first) })
        }
        TYPE_ENTRY => {
            if body.len() < ENTRY_FIXED_BYTES {
                return Err(format!("entry record of {} bytes is shorter than its fixed part", body.len()));
            }
            let term = u64_at(rest, 0).ok_or("short entry")?;
            let index = u64_at(rest, 8).ok_or("short entry")?;
            let kind = kind_from_byte(rest[16]).ok_or_else(|| format!("unknown entry kind {}", rest[16]))?;
            if index == 0 {
                return Err("entry with index 0".into());
            }
            let data = Bytes::copy_from_slice(&body[ENTRY_FIXED_BYTES..]);
            Ok(Record::Entry(Entry { term: Term(term), index: LogIndex(index), kind, data }))
        }
        TYPE_HARD_STATE => {
            if body.len() != HARD_STATE_BODY_BYTES {
                return Err(format!("hard state record of {} bytes, expected {HARD_STATE_BODY_BYTES}", body.len()));
            }
            let term = u64_at(rest, 0).ok_or("short hard state")?;
            let vote = u64_at(rest, 8).ok_or("short hard state")?;
            let commit = u64_at(rest, 16).ok_or("short hard state")?;
            let vote = (vote != 0).then_some(NodeId(vote));
            Ok(Record::HardState(HardState { term: Term(term), vote, commit: LogIndex(commit) }))
        }
        other => Err(format!("unknown record type {other}")),
    }
}

/// Whether a complete, checksummed, decodable record starts at `pos`. Used after a bad record
/// to tell a torn tail (nothing valid after it) from corruption (valid data after it), so it is
/// called at every offset of a file's tail and must be cheap on garbage: it checks the type byte
/// and the fixed-size fields before paying for a checksum. `entry_indexes` is the range every
/// genuine entry record of the file falls in; garbage almost never does.
pub(super) fn looks_like_record(buf: &[u8], pos: usize, entry_indexes: std::ops::RangeInclusive<u64>) -> bool {
    let Some(len) = u32_at(buf, pos) else { return false };
    let len = len as usize;
    let start = pos + FRAME_BYTES;
    if len == 0 || start.checked_add(len).is_none_or(|end| end > buf.len()) {
        return false;
    }
    let plausible = match buf[start] {
        TYPE_HEADER => len == HEADER_BODY_BYTES && buf[start + 1..start + 9] == SEGMENT_MAGIC[..],
        TYPE_HARD_STATE => len == HARD_STATE_BODY_BYTES,
        TYPE_ENTRY => {
            len >= ENTRY_FIXED_BYTES
                && kind_from_byte(buf[start + 17]).is_some()
                && u64_at(buf, start + 9).is_some_and(|index| entry_indexes.contains(&index))
        }
        _ => false,
    };
    plausible && read_frame(buf, pos).is_ok_and(|(body, _)| decode_body(body).is_ok())
}

/// The range of entry indexes a segment file of `file_len` bytes whose first entry is `first`
/// can hold (entries of a segment are consecutive, each record at least
/// `MIN_ENTRY_RECORD_BYTES` long).
pub(super) fn possible_entry_indexes(first: LogIndex, file_len: usize) -> std::ops::RangeInclusive<u64> {
    first.0..=first.0.saturating_add(file_len as u64 / MIN_ENTRY_RECORD_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry(term: u64, index: u64, kind: EntryKind, data: &[u8]) -> Entry {
        Entry { term: Term(term), index: LogIndex(index), kind, data: Bytes::copy_from_slice(data) }
    }

    fn decode_all(buf: &[u8]) -> Vec<Record> {
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < buf.len() {
            let (body, next) = read_frame(buf, pos).expect("valid frame");
            out.push(decode_body(body).expect("valid body"));
            pos = next;
        }
        out
    }

    #[test]
    fn records_round_trip() {
        let hs = HardState { term: Term(7), vote: Some(NodeId(3)), commit: LogIndex(5) };
        let e1 = entry(7, 9, EntryKind::Normal, b"hello");
        let e2 = entry(7, 10, EntryKind::Blank, b"");
        let e3 = entry(8, 11, EntryKind::Membership, &[1, 2, 3]);
        let mut buf = Vec::new();
        encode_header(&mut buf, LogIndex(9));
        assert_eq!(buf.len(), FRAME_BYTES + HEADER_BODY_BYTES);
        encode_hard_state(&mut buf, &HardState::default());
        encode_entry(&mut buf, &e1);
        encode_entry(&mut buf, &e2);
        encode_entry(&mut buf, &e3);
        encode_hard_state(&mut buf, &hs);
        let want = vec![
            Record::Header { version: SEGMENT_VERSION, first: LogIndex(9) },
            Record::HardState(HardState::default()),
            Record::Entry(e1.clone()),
            Record::Entry(e2),
            Record::Entry(e3),
            Record::HardState(hs),
        ];
        assert_eq!(decode_all(&buf), want);
        let mut one = Vec::new();
        encode_entry(&mut one, &e1);
        assert_eq!(one.len() as u64, MIN_ENTRY_RECORD_BYTES + 5);
    }

    #[test]
    fn framing_errors_are_told_apart() {
        let mut buf = Vec::new();
        encode_entry(&mut buf, &entry(1, 1, EntryKind::Normal, b"abc"));
        assert_eq!(read_frame(&buf[..5], 0), Err(FrameError::TruncatedHeader));
        assert_eq!(read_frame(&buf[..buf.len() - 1], 0), Err(FrameError::TruncatedBody { len: 21 }));
        assert_eq!(read_frame(&[0u8; 32], 0), Err(FrameError::ZeroLength));
        let mut flipped = buf.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(read_frame(&flipped, 0), Err(FrameError::CrcMismatch));
    }

    #[test]
    fn valid_checksum_but_bad_structure_is_refused() {
        let table: &[(&[u8], &str)] = &[
            (&[9], "unknown record type"),
            (&[TYPE_ENTRY, 1, 2], "shorter than its fixed part"),
            (&[TYPE_HARD_STATE, 0], "hard state record"),
            (&[TYPE_HEADER, 0, 0], "segment header of"),
        ];
        for &(body, want) in table {
            let err = decode_body(body).unwrap_err();
            assert!(err.contains(want), "{body:?}: {err}");
        }
        let mut bad_kind = Vec::new();
        encode_entry(&mut bad_kind, &entry(1, 1, EntryKind::Normal, b""));
        bad_kind[FRAME_BYTES + 17] = 7;
        assert!(decode_body(&bad_kind[FRAME_BYTES..]).unwrap_err().contains("unknown entry kind"));
    }

    #[test]
    fn looks_like_record_finds_real_records_only() {
        let mut buf = vec![0u8; 40];
        let at = buf.len();
        encode_entry(&mut buf, &entry(3, 12, EntryKind::Normal, b"payload"));
        let range = possible_entry_indexes(LogIndex(10), buf.len());
        assert!(looks_like_record(&buf, at, range.clone()));
        assert!((0..at).all(|pos| !looks_like_record(&buf, pos, range.clone())));
        assert!(!looks_like_record(&buf, at, 100..=200), "an index outside the segment's range is not plausible");
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200), pos in 0usize..220) {
            if let Ok((body, next)) = read_frame(&bytes, pos) {
                prop_assert!(next <= bytes.len());
                let _ = decode_body(body);
            }
            let _ = decode_body(&bytes);
            let _ = looks_like_record(&bytes, pos, 0..=u64::MAX);
        }

        #[test]
        fn entries_round_trip(term in any::<u64>(), index in 1u64.., kind in 0u8..3, data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let e = entry(term, index, kind_from_byte(kind).unwrap(), &data);
            let mut buf = Vec::new();
            encode_entry(&mut buf, &e);
            prop_assert_eq!(decode_all(&buf), vec![Record::Entry(e)]);
        }
    }
}
