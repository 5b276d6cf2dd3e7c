//! The crate's two error types: [`DecodeError`] for bytes that cannot be decoded, and
//! [`CommandError`] for deterministic application-level failures that are part of the replicated
//! result of a command.

use serde::{Deserialize, Serialize};

/// Why bytes could not be decoded as a request ([`decode_request`](crate::decode_request)) or a
/// snapshot ([`KvStore::restore`](crate::KvStore::restore)).
///
/// Decoding never panics: every malformed input maps to one of these variants.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ended before a complete value was read (this includes empty input).
    #[error("truncated input: the data ended before a complete value was read")]
    Truncated,
    /// The first byte names a format version this build does not understand.
    #[error("unsupported format version {found} (this build reads version {supported})")]
    UnsupportedVersion {
        /// The version byte found at the start of the input.
        found: u8,
        /// The only version this build reads.
        supported: u8,
    },
    /// An enum tag (command, reply or error kind) is not one this format version defines.
    #[error("unknown enum tag: the input names a variant this format version does not define")]
    UnknownTag,
    /// The input is structurally invalid: a bad varint, option flag or boolean, or a snapshot
    /// whose contents break an invariant (keys out of order, duplicate sessions, ...).
    #[error("malformed input: {reason}")]
    Malformed {
        /// What was wrong, in words.
        reason: &'static str,
    },
    /// A complete value was read but bytes were left over after it.
    #[error("{count} trailing byte(s) after a complete value")]
    TrailingBytes {
        /// How many bytes were left over.
        count: usize,
    },
}

/// A deterministic application-level error: the result of applying (or querying) a command that
/// could not take effect.
///
/// These are *replies*, not operating errors: every replica computes the same `CommandError` for
/// the same log entry, and it is stored in the client's session like any other reply, so a retry
/// gets the same answer. Returned inside [`Reply::Error`](crate::Reply::Error).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// The log entry's bytes could not be decoded as a request.
    #[error("malformed log entry: {reason}")]
    Malformed {
        /// The decode error, in words.
        reason: String,
    },
    /// A key is longer than [`Limits::max_key_bytes`](crate::Limits::max_key_bytes).
    #[error("key of {len} bytes exceeds the limit of {max} bytes")]
    KeyTooLarge {
        /// The key's length in bytes.
        len: usize,
        /// The configured maximum.
        max: usize,
    },
    /// A value (given, or resulting from an append) is longer than
    /// [`Limits::max_value_bytes`](crate::Limits::max_value_bytes).
    #[error("value of {len} bytes exceeds the limit of {max} bytes")]
    ValueTooLarge {
        /// The value's length in bytes.
        len: usize,
        /// The configured maximum.
        max: usize,
    },
    /// `Increment` found a value that is not a canonical decimal `i64` (as Redis `INCR`).
    #[error("value is not an integer or out of range")]
    NotAnInteger,
    /// `Increment` would overflow an `i64`.
    #[error("increment or decrement would overflow")]
    IntegerOverflow,
    /// The request's session is unknown: never registered, expired or evicted. The write was
    /// not applied; the client must register a new session (thesis §6.3).
    #[error("session expired or unknown; register a new session")]
    SessionExpired,
    /// The request's sequence number is older than the last one applied for its session, so its
    /// reply is no longer stored. The write was not applied.
    #[error("stale sequence number: the session has already applied sequence {last_applied}")]
    StaleSequence {
        /// The last sequence number applied for this session.
        last_applied: u64,
    },
    /// Sequence numbers start at 1; 0 is never valid.
    #[error("sequence number 0 is invalid; sequences start at 1")]
    ZeroSequence,
    /// A write or `RegisterSession` was given to [`KvStore::query`](crate::KvStore::query),
    /// which serves only `Get` and `MultiGet`.
    #[error("not a read-only command; writes must go through the log")]
    NotReadOnly,
}

impl From<DecodeError> for CommandError {
    fn from(error: DecodeError) -> Self {
        CommandError::Malformed { reason: error.to_string() }
    }
}
