//! Versioned postcard framing shared by requests and snapshots: one format-version byte, then
//! the postcard encoding of the value, and nothing after it.

use serde::{de::DeserializeOwned, Serialize};

use crate::error::DecodeError;

/// Encodes `value` as `[version] ++ postcard(value)`.
pub(crate) fn encode<T: Serialize + ?Sized>(version: u8, value: &T) -> Vec<u8> {
    let out = vec![version];
    // postcard fails to serialise only a sequence of unknown length or a `collect_str` error;
    // every type of this crate serialises sequences with a known length and has no strings
    // built by `collect_str`, so this cannot fail.
    postcard::to_extend(value, out).expect("postcard serialisation of raft-kv types is infallible")
}

/// Decodes `[version] ++ postcard(value)`, rejecting another version and trailing bytes.
pub(crate) fn decode<T: DeserializeOwned>(version: u8, data: &[u8]) -> Result<T, DecodeError> {
    let (&found, body) = data.split_first().ok_or(DecodeError::Truncated)?;
    if found != version {
        return Err(DecodeError::UnsupportedVersion { found, supported: version });
    }
    let (value, rest) = postcard::take_from_bytes::<T>(body).map_err(decode_error)?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes { count: rest.len() });
    }
    Ok(value)
}

/// Maps postcard's errors to ours, keeping postcard out of the public API.
fn decode_error(error: postcard::Error) -> DecodeError {
    use postcard::Error as E;
    match error {
        E::DeserializeUnexpectedEnd => DecodeError::Truncated,
        // serde's derived enum visitors reject an out-of-range variant index with a custom
        // error, which postcard reports as `SerdeDeCustom`; none of our types produces a
        // custom error for any other reason, so this is an unknown tag.
        E::SerdeDeCustom | E::DeserializeBadEnum => DecodeError::UnknownTag,
        E::DeserializeBadVarint => DecodeError::Malformed { reason: "invalid or overlong varint" },
        E::DeserializeBadBool => DecodeError::Malformed { reason: "boolean byte is neither 0 nor 1" },
        E::DeserializeBadOption => DecodeError::Malformed { reason: "option flag is neither 0 nor 1" },
        E::DeserializeBadChar | E::DeserializeBadUtf8 => DecodeError::Malformed { reason: "invalid UTF-8 text" },
        _ => DecodeError::Malformed { reason: "invalid encoding" },
    }
}
