//! Length-prefixed, checksummed frames over a byte stream.
//!
//! Every unit sent between peers (handshake messages and, after the handshake, envelopes) travels
//! in one frame:
//!
//! ```text
//! offset  size  field
//! 0       4     N: payload length in bytes, u32 little-endian
//! 4       4     CRC-32C (Castagnoli) of the N payload bytes, u32 little-endian
//! 8       N     payload
//! ```
//!
//! An empty payload (N = 0, checksum 0) is a valid frame. A receiver checks N against its
//! maximum frame size *before* it waits for or allocates the payload, so a hostile or corrupt
//! header cannot make it reserve gigabytes; a frame that announces too much, or whose checksum
//! does not match, ends the connection: a byte stream cannot be resynchronised after a bad
//! header. The checksum catches corruption that TCP's weak checksum lets through and bugs that
//! desynchronise the stream; it is not a defence against an attacker (see
//! [`super::handshake`]).
//!
//! [`decode`] is incremental: feed it whatever has arrived and it returns a complete payload,
//! or `Ok(None)` when more bytes are needed, without consuming anything until a whole frame is
//! there. [`encode`] and [`encode_with`] append frames to a buffer, so many frames can be
//! batched into one write.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Bytes of the frame header: payload length and checksum.
pub const HEADER_LEN: usize = 8;

/// The default maximum payload length: 16 MiB.
pub const DEFAULT_MAX_FRAME_LEN: usize = 16 * 1024 * 1024;

/// Why a frame could not be encoded or decoded. Either way the connection carrying it should be
/// closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The frame's payload is longer than the limit (or than a u32 can describe).
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// The payload length announced by the header (decoding) or produced (encoding).
        len: usize,
        /// The limit in force.
        max: usize,
    },
    /// The payload's CRC-32C differs from the header's.
    #[error("frame checksum mismatch: header says {expected:#010x}, payload has {actual:#010x}")]
    ChecksumMismatch {
        /// The checksum in the header.
        expected: u32,
        /// The checksum of the payload received.
        actual: u32,
    },
}

/// The limit actually enforced: the configured one, capped by what the u32 length can express.
fn effective_max(max: usize) -> usize {
    max.min(u32::MAX as usize)
}

/// Appends one frame carrying `payload` to `out`.
///
/// Fails with [`FrameError::TooLarge`] (leaving `out` unchanged) when the payload is longer than
/// `max`: refusing here is better than sending a frame that the peer will reject by closing the
/// connection.
pub fn encode(payload: &[u8], max: usize, out: &mut BytesMut) -> Result<(), FrameError> {
    let max = effective_max(max);
    if payload.len() > max {
        return Err(FrameError::TooLarge { len: payload.len(), max });
    }
    out.reserve(HEADER_LEN + payload.len());
    // The length fits in a u32: checked against `effective_max` above.
    out.put_u32_le(payload.len() as u32);
    out.put_u32_le(crc32c::crc32c(payload));
    out.put_slice(payload);
    Ok(())
}

/// Appends one frame to `out` whose payload `write` appends, without an intermediate buffer.
///
/// The header is reserved first and filled in once `write` returns. If `write` fails, or the
/// payload turns out longer than `max` ([`FrameError::TooLarge`], converted into `E`), `out` is
/// truncated back to its previous length, so a failed frame never leaves half a frame behind.
pub fn encode_with<E>(out: &mut BytesMut, max: usize, write: impl FnOnce(&mut BytesMut) -> Result<(), E>) -> Result<(), E>
where
    E: From<FrameError>,
{
    let max = effective_max(max);
    let start = out.len();
    out.put_bytes(0, HEADER_LEN);
    if let Err(e) = write(out) {
        out.truncate(start);
        return Err(e);
    }
    let payload_start = start + HEADER_LEN;
    let len = out.len() - payload_start;
    if len > max {
        out.truncate(start);
        return Err(FrameError::TooLarge { len, max }.into());
    }
    let crc = crc32c::crc32c(&out[payload_start..]);
    // The length fits in a u32: checked against `effective_max` above.
    out[start..start + 4].copy_from_slice(&(len as u32).to_le_bytes());
    out[start + 4..payload_start].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// Reads the header at the front of `buf`, if it is all there: (payload length, checksum).
fn peek_header(buf: &[u8]) -> Option<(usize, u32)> {
    let header: &[u8; HEADER_LEN] = buf.get(..HEADER_LEN)?.try_into().ok()?;
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    Some((len as usize, crc))
}

/// Takes one complete frame off the front of `buf` and returns its payload.
///
/// Returns `Ok(None)` when `buf` does not yet hold a whole frame; nothing is consumed then, so
/// the caller reads more bytes onto the end of `buf` and calls again. A header announcing more
/// than `max` bytes is rejected as soon as the header itself has arrived, before any payload is
/// awaited. On error `buf` is left as it was; the stream cannot be resynchronised and the
/// connection should be closed.
///
/// The payload is split off `buf` without copying.
pub fn decode(buf: &mut BytesMut, max: usize) -> Result<Option<Bytes>, FrameError> {
    let max = effective_max(max);
    let Some((len, expected)) = peek_header(buf) else {
        return Ok(None);
    };
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    if buf.len() - HEADER_LEN < len {
        return Ok(None);
    }
    let actual = crc32c::crc32c(&buf[HEADER_LEN..HEADER_LEN + len]);
    if actual != expected {
        return Err(FrameError::ChecksumMismatch { expected, actual });
    }
    buf.advance(HEADER_LEN);
    Ok(Some(buf.split_to(len).freeze()))
}

/// How many more bytes `buf` needs before [`decode`] can return the frame at its front, when
/// the header has arrived and is acceptable; `None` when the header is incomplete or too large.
/// Readers use it to reserve space for a large frame once instead of growing the buffer in many
/// small steps.
pub fn bytes_needed(buf: &[u8], max: usize) -> Option<usize> {
    let (len, _) = peek_header(buf)?;
    if len > effective_max(max) {
        return None;
    }
    Some((HEADER_LEN + len).saturating_sub(buf.len()))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::wire::codec;
    use crate::wire::test_support::arb_message;

    fn framed(payload: &[u8]) -> BytesMut {
        let mut out = BytesMut::new();
        encode(payload, DEFAULT_MAX_FRAME_LEN, &mut out).unwrap();
        out
    }

    #[test]
    fn header_is_length_then_crc32c_little_endian() {
        let out = framed(b"hello");
        assert_eq!(&out[..4], &5u32.to_le_bytes());
        assert_eq!(&out[4..8], &crc32c::crc32c(b"hello").to_le_bytes());
        assert_eq!(&out[8..], b"hello");
        // Known CRC-32C check value (RFC 3720 appendix B.4): "123456789" -> 0xE3069283.
        assert_eq!(&framed(b"123456789")[4..8], &0xE306_9283u32.to_le_bytes());
    }

    #[test]
    fn round_trips_including_empty_payloads() {
        for payload in [&b""[..], b"x", b"hello world", &[0u8; 70_000][..]] {
            let mut buf = framed(payload);
            assert_eq!(decode(&mut buf, DEFAULT_MAX_FRAME_LEN).unwrap().as_deref(), Some(payload));
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn encode_with_matches_encode_and_rolls_back_on_failure() {
        let mut a = BytesMut::from(&b"prefix"[..]);
        encode_with::<FrameError>(&mut a, 1024, |o| {
            o.put_slice(b"payload");
            Ok(())
        })
        .unwrap();
        let mut b = BytesMut::from(&b"prefix"[..]);
        encode(b"payload", 1024, &mut b).unwrap();
        assert_eq!(a, b);

        let err = encode_with::<FrameError>(&mut a, 4, |o| {
            o.put_slice(b"too long");
            Ok(())
        });
        assert_eq!(err, Err(FrameError::TooLarge { len: 8, max: 4 }));
        assert_eq!(a, b, "a rejected frame leaves nothing behind");

        #[derive(Debug, PartialEq)]
        struct Failed;
        impl From<FrameError> for Failed {
            fn from(_: FrameError) -> Failed {
                Failed
            }
        }
        let err = encode_with(&mut a, 1024, |o| {
            o.put_slice(b"partial");
            Err(Failed)
        });
        assert_eq!(err, Err(Failed));
        assert_eq!(a, b, "a failed writer leaves nothing behind");
    }

    #[test]
    fn every_truncation_needs_more_bytes() {
        let full = framed(b"a frame of some length");
        for cut in 0..full.len() {
            let mut buf = BytesMut::from(&full[..cut]);
            assert_eq!(decode(&mut buf, DEFAULT_MAX_FRAME_LEN), Ok(None), "cut at {cut}");
            assert_eq!(buf.len(), cut, "nothing consumed at cut {cut}");
        }
        let mut buf = full.clone();
        assert!(decode(&mut buf, DEFAULT_MAX_FRAME_LEN).unwrap().is_some());
    }

    #[test]
    fn every_flipped_payload_or_checksum_byte_is_detected() {
        let full = framed(b"checksummed payload");
        for i in 4..full.len() {
            for bit in 0..8 {
                let mut buf = full.clone();
                buf[i] ^= 1 << bit;
                let got = decode(&mut buf, DEFAULT_MAX_FRAME_LEN);
                assert!(matches!(got, Err(FrameError::ChecksumMismatch { .. })), "byte {i} bit {bit}: {got:?}");
            }
        }
    }

    #[test]
    fn oversized_header_is_rejected_before_the_payload_arrives() {
        let mut buf = BytesMut::new();
        buf.put_u32_le(u32::MAX);
        buf.put_u32_le(0);
        let capacity_before = buf.capacity();
        assert_eq!(
            decode(&mut buf, DEFAULT_MAX_FRAME_LEN),
            Err(FrameError::TooLarge { len: u32::MAX as usize, max: DEFAULT_MAX_FRAME_LEN })
        );
        assert_eq!(buf.capacity(), capacity_before, "nothing reserved for the announced payload");
        assert_eq!(bytes_needed(&buf, DEFAULT_MAX_FRAME_LEN), None);

        // Exactly at the limit is fine; one byte over is not.
        let mut at_limit = framed(&[7u8; 100]);
        assert!(decode(&mut at_limit, 100).unwrap().is_some());
        let mut over = framed(&[7u8; 101]);
        assert_eq!(decode(&mut over, 100), Err(FrameError::TooLarge { len: 101, max: 100 }));
        assert_eq!(encode(&[7u8; 101], 100, &mut BytesMut::new()), Err(FrameError::TooLarge { len: 101, max: 100 }));
    }

    #[test]
    fn bytes_needed_counts_the_rest_of_the_frame() {
        let full = framed(&[1u8; 50]);
        assert_eq!(bytes_needed(&full[..7], 1024), None);
        assert_eq!(bytes_needed(&full[..8], 1024), Some(50));
        assert_eq!(bytes_needed(&full[..20], 1024), Some(38));
        assert_eq!(bytes_needed(&full, 1024), Some(0));
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(soup in proptest::collection::vec(any::<u8>(), 0..512), max in 0usize..1024) {
            let mut buf = BytesMut::from(&soup[..]);
            // Decode until an error or a need for more bytes; each success consumes input.
            for _ in 0..=soup.len() {
                match decode(&mut buf, max) {
                    Ok(Some(_)) => continue,
                    Ok(None) | Err(_) => break,
                }
            }
        }

        #[test]
        fn messages_round_trip_through_frames_split_anywhere(
            msgs in proptest::collection::vec(arb_message(), 1..8),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
        ) {
            let mut stream = BytesMut::new();
            for m in &msgs {
                encode_with(&mut stream, DEFAULT_MAX_FRAME_LEN, |o| codec::encode_message(m, o)).unwrap();
            }
            let mut points: Vec<usize> = cuts.iter().map(|c| c.index(stream.len() + 1)).collect();
            points.push(stream.len());
            points.sort_unstable();

            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            let mut fed = 0;
            for p in points {
                buf.extend_from_slice(&stream[fed..p]);
                fed = p;
                while let Some(payload) = decode(&mut buf, DEFAULT_MAX_FRAME_LEN).unwrap() {
                    got.push(codec::decode_message(&payload).unwrap());
                }
            }
            prop_assert!(buf.is_empty());
            prop_assert_eq!(got, msgs);
        }
    }
}
