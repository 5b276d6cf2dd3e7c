//! The versioned snapshot format: the whole state machine (map, sessions, applied index and log
//! clock) as one byte string.
//!
//! # Format (version 1)
//!
//! One version byte ([`SNAPSHOT_FORMAT_VERSION`]), then the postcard encoding of, in order:
//! the applied index, the log clock in milliseconds, the `(key, value)` pairs in strictly
//! increasing key order, and the sessions in strictly increasing client order, each as
//! `(client, last_seq, last_active_ms, last_reply)`. The encoding is canonical: equal states give
//! equal bytes, and restore rejects any input that is not in canonical order.

use bytes::Bytes;
use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::codec;
use crate::command::{ClientId, Reply};
use crate::error::DecodeError;
use crate::session::{SessionState, SessionTable};
use crate::store::Map;

/// The format version written as the first byte of every snapshot.
pub const SNAPSHOT_FORMAT_VERSION: u8 = 1;

/// The state a snapshot holds, borrowed from or moved into a [`KvStore`](crate::KvStore).
pub(crate) struct Parts<M, S> {
    pub(crate) applied_index: u64,
    pub(crate) clock_ms: u64,
    pub(crate) map: M,
    pub(crate) sessions: S,
}

/// Serialises the borrowed state without copying it first.
pub(crate) fn encode(parts: Parts<&Map, &SessionTable>) -> Vec<u8> {
    let wire = WireRef {
        applied_index: parts.applied_index,
        clock_ms: parts.clock_ms,
        entries: EntriesRef(parts.map),
        sessions: SessionsRef(parts.sessions),
    };
    codec::encode(SNAPSHOT_FORMAT_VERSION, &wire)
}

/// Decodes and validates a snapshot.
pub(crate) fn decode(data: &[u8]) -> Result<Parts<Map, SessionTable>, DecodeError> {
    let wire: WireOwned = codec::decode(SNAPSHOT_FORMAT_VERSION, data)?;

    let keys_ordered = wire.entries.windows(2).all(|w| w[0].0 < w[1].0);
    if !keys_ordered {
        return Err(malformed("snapshot keys are not in strictly increasing order"));
    }
    let clients_ordered = wire.sessions.windows(2).all(|w| w[0].client < w[1].client);
    if !clients_ordered {
        return Err(malformed("snapshot sessions are not in strictly increasing client order"));
    }
    let mut sessions = SessionTable::default();
    for record in wire.sessions {
        // A client id is the index of the entry that registered it (thesis §6.3).
        if record.client == 0 || record.client > wire.applied_index {
            return Err(malformed("snapshot session id is not an applied log index"));
        }
        if record.last_active_ms > wire.clock_ms {
            return Err(malformed("snapshot session was active after the log clock"));
        }
        let state = SessionState { last_seq: record.last_seq, last_reply: record.last_reply, last_active_ms: record.last_active_ms };
        sessions.insert(record.client, state);
    }
    Ok(Parts {
        applied_index: wire.applied_index,
        clock_ms: wire.clock_ms,
        // Keys are checked above to be strictly increasing: no key is lost to a duplicate.
        map: wire.entries.into_iter().map(|(k, v)| (Bytes::from(k.into_vec()), Bytes::from(v.into_vec()))).collect(),
        sessions,
    })
}

fn malformed(reason: &'static str) -> DecodeError {
    DecodeError::Malformed { reason }
}

/// The serialising view. Its fields must encode exactly like [`WireOwned`]'s.
#[derive(Serialize)]
struct WireRef<'a> {
    applied_index: u64,
    clock_ms: u64,
    entries: EntriesRef<'a>,
    sessions: SessionsRef<'a>,
}

#[derive(Deserialize)]
struct WireOwned {
    applied_index: u64,
    clock_ms: u64,
    entries: Vec<(ByteBuf, ByteBuf)>,
    sessions: Vec<SessionRecord>,
}

#[derive(Serialize)]
struct SessionRecordRef<'a> {
    client: ClientId,
    last_seq: u64,
    last_active_ms: u64,
    last_reply: &'a Reply,
}

#[derive(Deserialize)]
struct SessionRecord {
    client: ClientId,
    last_seq: u64,
    last_active_ms: u64,
    last_reply: Reply,
}

/// The map as a sequence of `(key, value)` tuples in key order.
struct EntriesRef<'a>(&'a Map);

impl Serialize for EntriesRef<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // As byte strings: one copy per key and value, not one call per byte. The wire bytes
        // are the same as a sequence of `u8` in postcard.
        serializer.collect_seq(self.0.iter().map(|(k, v)| (serde_bytes::Bytes::new(k), serde_bytes::Bytes::new(v))))
    }
}

/// The session table as a sequence of records in client order.
struct SessionsRef<'a>(&'a SessionTable);

impl Serialize for SessionsRef<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for (client, state) in self.0.iter() {
            seq.serialize_element(&SessionRecordRef {
                client,
                last_seq: state.last_seq,
                last_active_ms: state.last_active_ms,
                last_reply: &state.last_reply,
            })?;
        }
        seq.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Record = (ClientId, u64, u64, Reply);

    /// Builds snapshot bytes by hand; a tuple encodes exactly like the wire structs.
    fn craft(applied_index: u64, clock_ms: u64, entries: &[(&[u8], &[u8])], sessions: &[Record]) -> Vec<u8> {
        let entries: Vec<(Vec<u8>, Vec<u8>)> = entries.iter().map(|&(k, v)| (k.to_vec(), v.to_vec())).collect();
        codec::encode(SNAPSHOT_FORMAT_VERSION, &(applied_index, clock_ms, entries, sessions.to_vec()))
    }

    fn session(client: ClientId, last_active_ms: u64) -> Record {
        (client, 1, last_active_ms, Reply::Ok)
    }

    fn reason(data: &[u8]) -> &'static str {
        match decode(data) {
            Err(DecodeError::Malformed { reason }) => reason,
            Err(other) => panic!("expected Malformed, got {other:?}"),
            Ok(_) => panic!("expected Malformed, got a snapshot"),
        }
    }

    #[test]
    fn a_crafted_valid_snapshot_decodes() {
        let data = craft(5, 100, &[(b"a", b"1"), (b"b", b"2")], &[session(2, 90), session(5, 100)]);
        let parts = decode(&data).expect("valid");
        assert_eq!(parts.applied_index, 5);
        assert_eq!(parts.map.len(), 2);
        assert_eq!(parts.sessions.len(), 2);
        // And re-encodes to the same bytes.
        let again =
            encode(Parts { applied_index: parts.applied_index, clock_ms: parts.clock_ms, map: &parts.map, sessions: &parts.sessions });
        assert_eq!(again, data);
    }

    #[test]
    fn out_of_order_or_duplicate_keys_are_rejected() {
        let unsorted = craft(1, 0, &[(b"b", b""), (b"a", b"")], &[]);
        assert_eq!(reason(&unsorted), "snapshot keys are not in strictly increasing order");
        let duplicate = craft(1, 0, &[(b"a", b"1"), (b"a", b"2")], &[]);
        assert_eq!(reason(&duplicate), "snapshot keys are not in strictly increasing order");
    }

    #[test]
    fn out_of_order_or_duplicate_sessions_are_rejected() {
        let expected = "snapshot sessions are not in strictly increasing client order";
        assert_eq!(reason(&craft(9, 0, &[], &[session(3, 0), session(2, 0)])), expected);
        assert_eq!(reason(&craft(9, 0, &[], &[session(3, 0), session(3, 0)])), expected);
    }

    #[test]
    fn impossible_sessions_are_rejected() {
        let not_an_index = "snapshot session id is not an applied log index";
        assert_eq!(reason(&craft(9, 0, &[], &[session(0, 0)])), not_an_index);
        assert_eq!(reason(&craft(9, 0, &[], &[session(10, 0)])), not_an_index);
        assert_eq!(reason(&craft(9, 50, &[], &[session(4, 51)])), "snapshot session was active after the log clock");
    }

    #[test]
    fn an_unknown_reply_tag_is_rejected() {
        let mut data = craft(9, 0, &[], &[session(4, 0)]);
        // The stored reply is the last byte: `Reply::Ok` has tag 0.
        *data.last_mut().unwrap() = 100;
        assert!(matches!(decode(&data), Err(DecodeError::UnknownTag)));
    }
}
