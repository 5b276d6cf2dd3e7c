//! The payload of a peer frame: a versioned, postcard-encoded [`PeerEnvelope`].
//!
//! # Format
//!
//! ```text
//! offset  size  field
//! 0       1     codec version, currently 1 (CODEC_VERSION)
//! 1       ..    postcard encoding of a PeerEnvelope, filling the rest of the payload exactly
//! ```
//!
//! Postcard (<https://postcard.jamesmunns.com/wire-format>) writes unsigned integers as LEB128
//! varints (7 bits a byte, low bits first, high bit = "more"), enum variants as a varint of the
//! variant's index in declaration order followed by its fields, structs as their fields in
//! declaration order, `bool` as one byte 0 or 1, and byte strings and vectors as a varint length
//! followed by the elements. So `PeerEnvelope::Raft(msg)` is `0x00` then the [`Message`]: `from`,
//! `to` and `term` as varints, then the body's variant index (0 = RequestVote, 1 =
//! RequestVoteResponse, ... in the order of [`raft_core::MessageBody`]) and its fields. For
//! example `Message { from: 1, to: 2, term: 3, body: TimeoutNow }` is the payload
//! `01 00 01 02 03 06`.
//!
//! Because the layout follows declaration order, reordering or inserting variants or fields in
//! raft-core's message types changes the wire format: bump [`CODEC_VERSION`] when that happens.
//! New [`PeerEnvelope`] variants go at the end, which old payloads survive.
//!
//! Decoding checks everything a corrupt or hostile payload could get wrong: the version, that
//! the envelope fills the payload exactly, and the invariants the serde derive cannot express
//! (node ids are never zero; a snapshot's membership is well formed, sorted and without
//! duplicates). It never panics, and it never allocates more than the payload's own size
//! suggests.

use bytes::{BufMut, BytesMut};
use raft_core::Message;
use serde::{Deserialize, Serialize};

use super::frame::FrameError;

/// The codec version written as the first byte of every peer payload.
pub const CODEC_VERSION: u8 = 1;

/// Everything peers send each other once the handshake is done.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum PeerEnvelope {
    /// A Raft message for the receiver's node.
    Raft(Message),
}

/// Serialises exactly like [`PeerEnvelope`] (same variant indices), but borrows the message, so
/// the hot path encodes without cloning entries.
#[derive(Serialize)]
enum EnvelopeRef<'a> {
    Raft(&'a Message),
}

/// Why a payload could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The payload has no version byte.
    #[error("empty payload")]
    Empty,
    /// The payload was written by a codec version this node does not speak.
    #[error("unsupported codec version {got} (this node speaks {supported})")]
    UnsupportedVersion {
        /// The version byte received.
        got: u8,
        /// The version this node speaks.
        supported: u8,
    },
    /// The bytes after the version are not a valid postcard envelope.
    #[error("malformed payload: {0}")]
    Malformed(#[source] postcard::Error),
    /// A valid envelope was followed by more bytes.
    #[error("{len} unexpected bytes after the envelope")]
    TrailingBytes {
        /// How many bytes were left over.
        len: usize,
    },
    /// The envelope decoded but breaks an invariant of the message types.
    #[error("invalid message: {reason}")]
    Invalid {
        /// What is wrong.
        reason: &'static str,
    },
    /// Serialisation failed (not expected for raft-core's types).
    #[error("encoding failed: {0}")]
    Encode(#[source] postcard::Error),
    /// The encoded payload does not fit in a frame.
    #[error(transparent)]
    Frame(#[from] FrameError),
}

/// A postcard output flavour that appends to a `BytesMut` with whole-slice copies.
struct AppendTo<'a>(&'a mut BytesMut);

impl postcard::ser_flavors::Flavor for AppendTo<'_> {
    type Output = ();

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.put_u8(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

fn encode_versioned<T: Serialize + ?Sized>(value: &T, out: &mut BytesMut) -> Result<(), CodecError> {
    let start = out.len();
    out.put_u8(CODEC_VERSION);
    postcard::serialize_with_flavor::<T, _, _>(value, AppendTo(out)).map_err(|e| {
        out.truncate(start);
        CodecError::Encode(e)
    })
}

/// Appends the payload for `envelope` (version byte, then postcard) to `out`. On error `out` is
/// left as it was.
pub fn encode_envelope(envelope: &PeerEnvelope, out: &mut BytesMut) -> Result<(), CodecError> {
    encode_versioned(envelope, out)
}

/// Appends the payload for `PeerEnvelope::Raft(msg)` to `out`, byte for byte what
/// [`encode_envelope`] would write, without cloning `msg`. On error `out` is left as it was.
pub fn encode_message(msg: &Message, out: &mut BytesMut) -> Result<(), CodecError> {
    encode_versioned(&EnvelopeRef::Raft(msg), out)
}

/// Decodes a whole payload into an envelope, checking the version, that nothing trails the
/// envelope, and the invariants of the message inside.
pub fn decode_envelope(payload: &[u8]) -> Result<PeerEnvelope, CodecError> {
    let (&version, body) = payload.split_first().ok_or(CodecError::Empty)?;
    if version != CODEC_VERSION {
        return Err(CodecError::UnsupportedVersion { got: version, supported: CODEC_VERSION });
    }
    let (envelope, rest) = postcard::take_from_bytes::<PeerEnvelope>(body).map_err(CodecError::Malformed)?;
    if !rest.is_empty() {
        return Err(CodecError::TrailingBytes { len: rest.len() });
    }
    match &envelope {
        PeerEnvelope::Raft(msg) => validate(msg)?,
    }
    Ok(envelope)
}

/// Decodes a payload that must carry a Raft message.
pub fn decode_message(payload: &[u8]) -> Result<Message, CodecError> {
    match decode_envelope(payload)? {
        PeerEnvelope::Raft(msg) => Ok(msg),
    }
}

/// What serde's derive does not check on what it builds. (A snapshot's membership is checked by
/// raft-core's own deserializer: sorted, unique, well formed.)
fn validate(msg: &Message) -> Result<(), CodecError> {
    if !msg.from.is_valid() || !msg.to.is_valid() {
        return Err(CodecError::Invalid { reason: "node id 0 is reserved" });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use proptest::prelude::*;
    use raft_core::{MessageBody, NodeId, Term};

    use super::*;
    use crate::wire::test_support::{arb_message, one_of_each_body};

    fn payload(msg: &Message) -> Bytes {
        let mut out = BytesMut::new();
        encode_message(msg, &mut out).unwrap();
        out.freeze()
    }

    #[test]
    fn every_body_variant_round_trips() {
        let msgs = one_of_each_body();
        for msg in msgs {
            assert_eq!(decode_message(&payload(&msg)).unwrap(), msg, "{}", msg.body.name());
        }
    }

    #[test]
    fn the_documented_example_is_byte_exact() {
        let msg = Message { from: NodeId(1), to: NodeId(2), term: Term(3), body: MessageBody::TimeoutNow };
        assert_eq!(&payload(&msg)[..], &[0x01, 0x00, 0x01, 0x02, 0x03, 0x06]);
    }

    #[test]
    fn borrowed_encoding_matches_the_envelope_encoding() {
        for msg in one_of_each_body() {
            let mut via_envelope = BytesMut::new();
            encode_envelope(&PeerEnvelope::Raft(msg.clone()), &mut via_envelope).unwrap();
            assert_eq!(payload(&msg), via_envelope, "{}", msg.body.name());
        }
    }

    #[test]
    fn rejects_empty_wrong_version_trailing_and_truncated_payloads() {
        assert!(matches!(decode_message(&[]), Err(CodecError::Empty)));

        let good = payload(&one_of_each_body()[2]);
        let mut wrong_version = good.to_vec();
        wrong_version[0] = 2;
        assert!(matches!(decode_message(&wrong_version), Err(CodecError::UnsupportedVersion { got: 2, supported: 1 })));

        let mut trailing = good.to_vec();
        trailing.push(0);
        assert!(matches!(decode_message(&trailing), Err(CodecError::TrailingBytes { len: 1 })));

        for cut in 1..good.len() {
            assert!(matches!(decode_message(&good[..cut]), Err(CodecError::Malformed(_))), "cut at {cut}");
        }
    }

    #[test]
    fn rejects_unknown_variants_and_reserved_ids() {
        // Envelope variant 9 does not exist.
        assert!(matches!(decode_message(&[1, 9, 1, 2, 3, 6]), Err(CodecError::Malformed(_))));
        // Message body variant 99 does not exist.
        assert!(matches!(decode_message(&[1, 0, 1, 2, 3, 99]), Err(CodecError::Malformed(_))));
        // from = 0.
        assert!(matches!(decode_message(&[1, 0, 0, 2, 3, 6]), Err(CodecError::Invalid { .. })));
        // A length prefix of 2^63 for a vector of entries: an error, not an allocation.
        let huge_len = [1, 0, 1, 2, 3, 2, 1, 1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01];
        assert!(decode_message(&huge_len).is_err());
    }

    #[test]
    fn rejects_a_snapshot_membership_that_is_not_canonical() {
        let snapshot = one_of_each_body().into_iter().find(|m| matches!(m.body, MessageBody::InstallSnapshot(_))).unwrap();
        let good = payload(&snapshot);
        assert!(decode_message(&good).is_ok());
        // The membership's voters [1, 2, 3] sit right after the snapshot's last entry id; swap two
        // of them so the list is unsorted.
        let pos = good.windows(4).position(|w| w == [3, 1, 2, 3]).expect("voters in the payload");
        let mut unsorted = good.to_vec();
        unsorted.swap(pos + 1, pos + 2);
        assert!(matches!(decode_message(&unsorted), Err(CodecError::Malformed(_))), "raft-core's deserializer refuses it");
    }

    proptest! {
        #[test]
        fn arbitrary_messages_round_trip(msg in arb_message()) {
            prop_assert_eq!(decode_message(&payload(&msg)).unwrap(), msg);
        }

        #[test]
        fn garbage_never_panics(mut soup in proptest::collection::vec(any::<u8>(), 0..256), versioned in any::<bool>()) {
            if versioned && !soup.is_empty() {
                soup[0] = CODEC_VERSION;
            }
            let _ = decode_envelope(&soup);
        }
    }
}
