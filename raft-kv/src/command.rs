//! Requests, commands and replies, and the versioned binary encoding of requests.
//!
//! # Wire format (version 1)
//!
//! An encoded [`Request`] is one format-version byte ([`REQUEST_FORMAT_VERSION`]) followed by the
//! [postcard](https://docs.rs/postcard) encoding of the request: integers as LEB128 varints,
//! byte strings as a varint length and the raw bytes, options as a 0/1 flag, enums as a varint
//! variant index. The variant order of [`Command`], [`Reply`] and
//! [`CommandError`] is therefore part of the format: add variants only at the
//! end, and change anything else only together with the version byte.

use serde::{Deserialize, Serialize};

use crate::codec;
use crate::error::{CommandError, DecodeError};

/// The format version written as the first byte of every encoded request.
pub const REQUEST_FORMAT_VERSION: u8 = 1;

/// A client's identity: the log index of the entry that registered its session (thesis §6.3),
/// so every replica assigns the same id without coordination.
pub type ClientId = u64;

/// The session a write belongs to: who sent it and its per-client sequence number.
///
/// Sequence numbers start at 1 and each client has at most one outstanding request, so the
/// state machine needs to remember only the last sequence number and reply of each client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Session {
    /// The client's id, as returned in [`Reply::Registered`].
    pub client: ClientId,
    /// The request's sequence number, starting at 1 and increasing with each new request; a
    /// retry of the same request reuses its sequence number.
    pub seq: u64,
}

/// An operation on the key-value map.
///
/// `Get` and `MultiGet` are reads: they may be served by [`KvStore::query`](crate::KvStore::query)
/// after a ReadIndex, or proposed through the log. Everything else is a write and must be
/// proposed through the log. Multi-key commands are atomic: they are one log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Read one key. Reply: [`Reply::Value`].
    Get {
        /// The key to read.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    /// Read several keys at one point in the log. Reply: [`Reply::Values`], in the order of
    /// `keys`.
    MultiGet {
        /// The keys to read.
        keys: Vec<Vec<u8>>,
    },
    /// Set a key to a value. Reply: [`Reply::Ok`].
    Put {
        /// The key to set.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        /// Its new value.
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
    /// Remove a key. Reply: [`Reply::Deleted`], saying whether the key existed.
    Delete {
        /// The key to remove.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    /// Append bytes to a key's value (a missing key counts as empty). Reply: [`Reply::Integer`],
    /// the new length in bytes, as Redis `APPEND`.
    Append {
        /// The key to append to.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        /// The bytes to append.
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
    /// Add `delta` to a key whose value is a decimal `i64` string, as Redis `INCRBY`/`DECRBY`
    /// (a missing key counts as 0). Reply: [`Reply::Integer`], the new value; or
    /// [`CommandError::NotAnInteger`] / [`CommandError::IntegerOverflow`].
    Increment {
        /// The key to increment.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        /// The amount to add; negative to decrement.
        delta: i64,
    },
    /// Set `key` to `new` only if its current value equals `expected` (`None` = absent; `new`
    /// `None` = delete). Reply: [`Reply::CasResult`].
    CompareAndSet {
        /// The key to compare and set.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        /// The value the key must have now, or `None` if it must be absent.
        #[serde(with = "serde_bytes")]
        expected: Option<Vec<u8>>,
        /// The value to set, or `None` to delete the key.
        #[serde(with = "serde_bytes")]
        new: Option<Vec<u8>>,
    },
    /// Set several keys atomically. Pairs are applied in order, so a repeated key ends with its
    /// last value. Reply: [`Reply::Ok`].
    MultiPut {
        /// The `(key, value)` pairs to set.
        pairs: Vec<(Vec<u8>, Vec<u8>)>,
    },
    /// Open a client session. Needs no session itself. Reply: [`Reply::Registered`] with the new
    /// client id (the index of this entry).
    RegisterSession,
}

impl Command {
    /// Whether the command only reads (`Get`, `MultiGet`) and so may be served by
    /// [`KvStore::query`](crate::KvStore::query).
    pub fn is_read_only(&self) -> bool {
        matches!(self, Command::Get { .. } | Command::MultiGet { .. })
    }

    /// Whether the command is a write that is deduplicated by its session: everything but the
    /// reads and `RegisterSession`, which ignore a session if one is given.
    pub(crate) fn uses_session(&self) -> bool {
        !self.is_read_only() && !matches!(self, Command::RegisterSession)
    }
}

/// One client request: the payload of a log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// The client session for exactly-once writes. `None` for reads and `RegisterSession`; a
    /// write without a session is applied every time it appears in the log (at-most-once is
    /// then the client's problem).
    pub session: Option<Session>,
    /// The proposing server's wall-clock time in milliseconds, carried in the log entry. The
    /// state machine's log clock is the maximum `time_ms` applied so far, so session expiry
    /// depends only on the log and is identical on every replica.
    pub time_ms: u64,
    /// What to do.
    pub command: Command,
}

/// The result of a command. Replies are part of the replicated state: they are stored in client
/// sessions and snapshots, so every replica produces identical replies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// The write succeeded (`Put`, `MultiPut`); also the reply to a no-op (empty) entry.
    Ok,
    /// `Delete` succeeded; `existed` says whether the key was present (Redis `DEL` returns 1 or 0).
    Deleted {
        /// Whether the key was present before the delete.
        existed: bool,
    },
    /// The value of a `Get`: `None` if the key is absent.
    Value(Option<Vec<u8>>),
    /// The values of a `MultiGet`, in the order of its keys.
    Values(Vec<Option<Vec<u8>>>),
    /// The result of `Increment` (the new value) or `Append` (the new length in bytes).
    Integer(i64),
    /// The result of `CompareAndSet`.
    CasResult {
        /// Whether the value matched `expected` and was replaced.
        swapped: bool,
        /// The key's value after the command (the new value if swapped, else the unchanged
        /// current value).
        current: Option<Vec<u8>>,
    },
    /// `RegisterSession` succeeded: use `client` in every [`Session`] from now on.
    Registered {
        /// The new client id.
        client: ClientId,
    },
    /// The command could not take effect; this is a deterministic, replicated result.
    Error(CommandError),
}

/// Encodes a request for a log entry: [`REQUEST_FORMAT_VERSION`], then the postcard encoding.
///
/// ```
/// use raft_kv::{decode_request, encode_request, Command, Request, Session};
///
/// let request = Request {
///     session: Some(Session { client: 7, seq: 1 }),
///     time_ms: 1_000,
///     command: Command::Put { key: b"k".to_vec(), value: b"v".to_vec() },
/// };
/// let bytes = encode_request(&request);
/// assert_eq!(bytes[0], raft_kv::REQUEST_FORMAT_VERSION);
/// assert_eq!(decode_request(&bytes), Ok(request));
/// ```
pub fn encode_request(request: &Request) -> Vec<u8> {
    codec::encode(REQUEST_FORMAT_VERSION, request)
}

/// Decodes a request encoded by [`encode_request`].
///
/// # Errors
///
/// Returns [`DecodeError::Truncated`] for empty or cut-off input,
/// [`DecodeError::UnsupportedVersion`] for another format version, [`DecodeError::UnknownTag`]
/// for an undefined command, [`DecodeError::TrailingBytes`] if bytes follow the request, and
/// [`DecodeError::Malformed`] for anything else invalid. Never panics.
pub fn decode_request(data: &[u8]) -> Result<Request, DecodeError> {
    codec::decode(REQUEST_FORMAT_VERSION, data)
}
