//! The storage layer's one error type.

use std::io;
use std::path::{Path, PathBuf};

use raft_core::LogIndex;

/// Everything that can go wrong in the durable log. Every variant that concerns a file names it,
/// so an operator can act on the message alone.
///
/// Breaking the caller's contract (appending with a gap, a hard state whose term goes back, a
/// snapshot older than the stored one) is a programmer error and panics instead; see the
/// `# Panics` sections of [`super::DurableLog`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// An operating-system call failed on `path`.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory the call was about.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// A segment file holds bytes that are not a valid record, and they are not a torn tail
    /// that recovery may cut away (see the module docs). The server must not start: the log
    /// may have lost acknowledged entries.
    #[error("corrupt record in {} at offset {offset}: {reason}", file.display())]
    Corrupt {
        /// The segment file.
        file: PathBuf,
        /// Byte offset of the bad record (or of the header, for a bad segment header).
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// The snapshot file fails its checksum or cannot be decoded.
    #[error("corrupt snapshot file {}: {reason}", file.display())]
    CorruptSnapshot {
        /// The snapshot file.
        file: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The files of the data directory do not fit together (e.g. no segment file at all, or a
    /// log that starts after the snapshot ends).
    #[error("inconsistent data directory {}: {reason}", path.display())]
    Inconsistent {
        /// The file or directory at fault.
        path: PathBuf,
        /// What does not fit.
        reason: String,
    },
    /// The `meta` file is missing, corrupt or of an unknown version, or `create` was given
    /// invalid ids.
    #[error("node metadata {}: {reason}", path.display())]
    Meta {
        /// The meta file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// [`super::DurableLog::open`] on a directory that was never initialised with
    /// [`super::DurableLog::create`].
    #[error("{} is not a data directory (no meta file): create it first", dir.display())]
    NotInitialized {
        /// The directory.
        dir: PathBuf,
    },
    /// Another process (or another [`super::DurableLog`] in this one) has the directory open:
    /// two writers would corrupt it. Only checked where the platform has `flock` (Linux).
    #[error("{} is in use by another process (it holds the lock on {}): is another server running on it?", dir.display(), dir.join(super::files::LOCK_FILE).display())]
    Locked {
        /// The data directory.
        dir: PathBuf,
    },
    /// [`super::DurableLog::create`] on a directory that already holds files.
    #[error("refusing to create a data directory in {}: it is not empty", dir.display())]
    NotEmpty {
        /// The directory.
        dir: PathBuf,
    },
    /// An entry too large for one record (the record length is a `u32`).
    #[error("entry {index} of {size} bytes is too large for one log record")]
    EntryTooLarge {
        /// The entry's index.
        index: LogIndex,
        /// Its payload size in bytes.
        size: u64,
    },
    /// An earlier write or sync failed. What reached the disk is unknown (and after a failed
    /// fsync the kernel may have dropped the dirty pages), so the log refuses further work: drop
    /// it and [`super::DurableLog::open`] the directory again, which recovers from what is
    /// really on disk.
    #[error("the log in {} failed earlier ({cause}); reopen it to recover", dir.display())]
    Failed {
        /// The data directory.
        dir: PathBuf,
        /// The first error, as text.
        cause: String,
    },
}

/// Shorthand for results of the storage layer.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// Wraps an [`io::Error`] with the path it concerns: `file.sync_data().map_err(io_at(&path))?`.
pub(super) fn io_at(path: &Path) -> impl FnOnce(io::Error) -> StorageError + '_ {
    move |source| StorageError::Io { path: path.to_path_buf(), source }
}
