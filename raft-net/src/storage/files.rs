//! The small files beside the log: `meta` (node and cluster ids) and `snapshot`, plus the
//! file-system helpers every writer here uses (directory fsync, write-temp-then-rename).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use raft_core::{EntryId, LogIndex, Membership, NodeId, Snapshot, SnapshotMeta, Term};

use super::error::{io_at, Result, StorageError};

/// Name of the metadata file in the data directory.
pub(super) const META_FILE: &str = "meta";
/// Name of the snapshot file in the data directory.
pub(super) const SNAPSHOT_FILE: &str = "snapshot";
/// Suffix of files being written before their rename.
pub(super) const TMP_SUFFIX: &str = ".tmp";
/// Name of the lock file in the data directory: whoever holds an exclusive `flock` on it owns
/// the directory. Its content is nothing; the lock dies with the process that holds it.
pub(super) const LOCK_FILE: &str = "lock";

/// Takes the data directory's lock, or fails with [`StorageError::Locked`] if someone else
/// holds it. The lock lasts as long as the returned file is open.
pub(super) fn lock_dir(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new().write(true).create(true).truncate(false).open(&path).map_err(io_at(&path))?;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use rustix::fs::{flock, FlockOperation};
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(e) if e == rustix::io::Errno::WOULDBLOCK => return Err(StorageError::Locked { dir: dir.to_path_buf() }),
            Err(e) => return Err(io_at(&path)(e.into())),
        }
    }
    Ok(file)
}

const META_MAGIC: &[u8; 8] = b"RAFTMETA";
const META_VERSION: u32 = 1;
/// magic, version, node id, cluster id, crc.
const META_BYTES: usize = 8 + 4 + 8 + 8 + 4;

const SNAPSHOT_MAGIC: &[u8; 8] = b"RAFTSNP1";
const SNAPSHOT_VERSION: u32 = 1;

/// Called before every change to a file or directory. In tests, `crash_after` arms it to fail
/// from the n-th change on, which leaves the files exactly as a process crash at that point
/// would (the changes before it reached the kernel; nothing after it happened). Elsewhere it
/// does nothing.
#[inline]
pub(super) fn crash_point(path: &Path) -> Result<()> {
    #[cfg(test)]
    {
        let crashed = CRASH_AFTER.with(|budget| match budget.get() {
            Some(0) => true,
            Some(n) => {
                budget.set(Some(n - 1));
                false
            }
            None => false,
        });
        if crashed {
            return Err(io_at(path)(io::Error::other("injected crash")));
        }
    }
    let _ = path;
    Ok(())
}

#[cfg(test)]
thread_local! {
    static CRASH_AFTER: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

/// Arms (`Some(n)`: the first `n` changes happen, every later one fails) or disarms
/// [`crash_point`] for the current thread.
#[cfg(test)]
pub(super) fn crash_after(changes: Option<usize>) {
    CRASH_AFTER.with(|budget| budget.set(changes));
}

/// The file name with [`TMP_SUFFIX`] appended.
pub(super) fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(TMP_SUFFIX);
    PathBuf::from(name)
}

/// Makes the creation, rename and deletion of entries of `dir` durable.
pub(super) fn sync_dir(dir: &Path, fsync: bool) -> Result<()> {
    if fsync {
        File::open(dir).and_then(|d| d.sync_all()).map_err(io_at(dir))?;
    }
    Ok(())
}

/// Writes a file under a temporary name, fsyncs it, renames it to `path` and fsyncs the
/// directory: after a crash, `path` holds either its old content or all of the new one.
pub(super) fn write_atomically(path: &Path, fsync: bool, write: impl FnOnce(&mut BufWriter<File>) -> io::Result<()>) -> Result<()> {
    let tmp = tmp_path(path);
    crash_point(&tmp)?;
    let file = OpenOptions::new().write(true).create(true).truncate(true).open(&tmp).map_err(io_at(&tmp))?;
    let mut out = BufWriter::new(file);
    write(&mut out).map_err(io_at(&tmp))?;
    let file = out.into_inner().map_err(|e| e.into_error()).map_err(io_at(&tmp))?;
    if fsync {
        file.sync_all().map_err(io_at(&tmp))?;
    }
    drop(file);
    crash_point(path)?;
    fs::rename(&tmp, path).map_err(io_at(path))?;
    sync_dir(path.parent().expect("data files live in a directory"), fsync)
}

/// Removes `path` if it exists.
pub(super) fn remove_if_exists(path: &Path) -> Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_at(path)(e)),
    }
}

/// Reads a whole file, or `None` if it does not exist.
pub(super) fn read_if_exists(path: &Path) -> Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_at(path)(e)),
    }
}

/// The ids stored in the `meta` file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Meta {
    pub(super) node_id: NodeId,
    pub(super) cluster_id: u64,
}

pub(super) fn encode_meta(meta: Meta) -> Vec<u8> {
    let mut buf = Vec::with_capacity(META_BYTES);
    buf.extend_from_slice(META_MAGIC);
    buf.extend_from_slice(&META_VERSION.to_le_bytes());
    buf.extend_from_slice(&meta.node_id.0.to_le_bytes());
    buf.extend_from_slice(&meta.cluster_id.to_le_bytes());
    let crc = crc32c::crc32c(&buf);
    buf.extend_from_slice(&crc.to_le_bytes());
    buf
}

pub(super) fn decode_meta(path: &Path, bytes: &[u8]) -> Result<Meta> {
    let bad = |reason: String| StorageError::Meta { path: path.to_path_buf(), reason };
    if bytes.len() != META_BYTES {
        return Err(bad(format!("{} bytes, expected {META_BYTES}", bytes.len())));
    }
    let (body, crc) = bytes.split_at(META_BYTES - 4);
    if crc32c::crc32c(body).to_le_bytes() != crc {
        return Err(bad("CRC mismatch".into()));
    }
    let mut r = Reader::new(body);
    if r.take(8) != Some(&META_MAGIC[..]) {
        return Err(bad("bad magic: not a raft-net meta file".into()));
    }
    let version = r.u32().expect("length checked");
    if version != META_VERSION {
        return Err(bad(format!("unsupported format version {version} (this build reads {META_VERSION})")));
    }
    let node_id = NodeId(r.u64().expect("length checked"));
    let cluster_id = r.u64().expect("length checked");
    if !node_id.is_valid() {
        return Err(bad("node id 0".into()));
    }
    Ok(Meta { node_id, cluster_id })
}

/// Writes `snapshot` in the snapshot file format (see the module docs of `storage`).
pub(super) fn write_snapshot(out: &mut impl Write, snapshot: &Snapshot) -> io::Result<()> {
    let membership = snapshot.meta.membership.encode(b"");
    let mut head = Vec::with_capacity(64 + membership.len());
    head.extend_from_slice(SNAPSHOT_MAGIC);
    head.extend_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
    head.extend_from_slice(&snapshot.meta.last.term.0.to_le_bytes());
    head.extend_from_slice(&snapshot.meta.last.index.0.to_le_bytes());
    head.extend_from_slice(&(membership.len() as u32).to_le_bytes());
    head.extend_from_slice(&membership);
    head.extend_from_slice(&(snapshot.data.len() as u64).to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&head), &snapshot.data);
    out.write_all(&head)?;
    out.write_all(&snapshot.data)?;
    out.write_all(&crc.to_le_bytes())
}

/// Decodes a snapshot file's content; every error names `path`.
pub(super) fn decode_snapshot(path: &Path, bytes: Vec<u8>) -> Result<Snapshot> {
    let bad = |reason: String| StorageError::CorruptSnapshot { file: path.to_path_buf(), reason };
    let Some(body_len) = bytes.len().checked_sub(4) else {
        return Err(bad(format!("{} bytes is too short for a snapshot", bytes.len())));
    };
    let (body, crc) = bytes.split_at(body_len);
    if crc32c::crc32c(body).to_le_bytes() != crc {
        return Err(bad("CRC mismatch".into()));
    }
    let mut r = Reader::new(body);
    if r.take(8) != Some(&SNAPSHOT_MAGIC[..]) {
        return Err(bad("bad magic: not a raft-net snapshot".into()));
    }
    let short = || bad("truncated header".into());
    let version = r.u32().ok_or_else(short)?;
    if version != SNAPSHOT_VERSION {
        return Err(bad(format!("unsupported format version {version} (this build reads {SNAPSHOT_VERSION})")));
    }
    let term = r.u64().ok_or_else(short)?;
    let index = r.u64().ok_or_else(short)?;
    let membership_len = r.u32().ok_or_else(short)? as usize;
    let membership = r.take(membership_len).ok_or_else(short)?;
    let (membership, _context) = Membership::decode(&Bytes::copy_from_slice(membership)).map_err(|e| bad(e.to_string()))?;
    let data_len = r.u64().ok_or_else(short)?;
    if data_len != r.remaining() as u64 {
        return Err(bad(format!("data length {data_len} but {} bytes follow", r.remaining())));
    }
    if index == 0 {
        return Err(bad("snapshot of index 0".into()));
    }
    let data_start = body.len() - r.remaining();
    let mut bytes = bytes;
    bytes.truncate(body_len);
    let data = Bytes::from(bytes).slice(data_start..);
    Ok(Snapshot { meta: SnapshotMeta { last: EntryId::new(Term(term), LogIndex(index)), membership }, data })
}

/// A bounds-checked little-endian cursor.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.buf.len() {
            return None;
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Some(head)
    }

    fn u32(&mut self) -> Option<u32> {
        self.take(4).map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
    }

    fn u64(&mut self) -> Option<u64> {
        self.take(8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }

    fn remaining(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Snapshot {
        let membership = Membership::from_parts([NodeId(1), NodeId(2)], [], [NodeId(3)]).unwrap();
        Snapshot { meta: SnapshotMeta { last: EntryId::new(Term(4), LogIndex(17)), membership }, data: Bytes::from_static(b"state!") }
    }

    #[test]
    fn snapshot_round_trips_and_every_damage_is_detected() {
        let path = Path::new("/data/snapshot");
        let mut buf = Vec::new();
        write_snapshot(&mut buf, &snapshot()).unwrap();
        assert_eq!(decode_snapshot(path, buf.clone()).unwrap(), snapshot());
        for cut in 0..buf.len() {
            let err = decode_snapshot(path, buf[..cut].to_vec()).unwrap_err();
            assert!(err.to_string().contains("/data/snapshot"), "{err}");
        }
        for at in 0..buf.len() {
            let mut flipped = buf.clone();
            flipped[at] ^= 0x10;
            assert!(matches!(decode_snapshot(path, flipped), Err(StorageError::CorruptSnapshot { .. })), "flip at {at}");
        }
    }

    #[test]
    fn meta_round_trips_and_damage_is_detected() {
        let path = Path::new("/data/meta");
        let meta = Meta { node_id: NodeId(3), cluster_id: 0xfeed };
        let buf = encode_meta(meta);
        assert_eq!(decode_meta(path, &buf).unwrap(), meta);
        for at in 0..buf.len() {
            let mut flipped = buf.clone();
            flipped[at] ^= 1;
            let err = decode_meta(path, &flipped).unwrap_err();
            assert!(err.to_string().contains("/data/meta"), "{err}");
        }
        assert!(decode_meta(path, &buf[..10]).is_err());
    }
}
