//! The request encoding: round trips, a pinned wire format, and rejection of malformed input.

use proptest::prelude::*;
use raft_kv::{decode_request, encode_request, Command, DecodeError, Request, Session, REQUEST_FORMAT_VERSION};

/// One request of every command, with edge values.
fn every_command() -> Vec<Request> {
    let commands = vec![
        Command::Get { key: b"k".to_vec() },
        Command::MultiGet { keys: vec![b"a".to_vec(), vec![], vec![0xff; 300]] },
        Command::Put { key: b"k".to_vec(), value: vec![0; 200] },
        Command::Delete { key: vec![] },
        Command::Append { key: b"k".to_vec(), value: b"v".to_vec() },
        Command::Increment { key: b"n".to_vec(), delta: i64::MIN },
        Command::CompareAndSet { key: b"k".to_vec(), expected: None, new: Some(b"x".to_vec()) },
        Command::CompareAndSet { key: b"k".to_vec(), expected: Some(vec![]), new: None },
        Command::MultiPut { pairs: vec![(b"a".to_vec(), b"1".to_vec()), (b"b".to_vec(), vec![])] },
        Command::RegisterSession,
    ];
    commands
        .into_iter()
        .enumerate()
        .map(|(i, command)| Request {
            session: (i % 2 == 0).then_some(Session { client: u64::MAX - i as u64, seq: i as u64 + 1 }),
            time_ms: if i % 3 == 0 { u64::MAX } else { i as u64 },
            command,
        })
        .collect()
}

#[test]
fn every_command_round_trips() {
    for request in every_command() {
        let bytes = encode_request(&request);
        assert_eq!(bytes[0], REQUEST_FORMAT_VERSION);
        assert_eq!(decode_request(&bytes), Ok(request));
    }
}

#[test]
fn the_wire_format_is_pinned() {
    let request = Request {
        session: Some(Session { client: 7, seq: 1 }),
        time_ms: 300,
        command: Command::Put { key: b"k".to_vec(), value: b"v".to_vec() },
    };
    // version, Some, client, seq, time_ms (varint 300), tag Put = 2, key, value.
    let expected = [1, 1, 7, 1, 0xac, 0x02, 2, 1, b'k', 1, b'v'];
    assert_eq!(encode_request(&request), expected);
    let register = Request { session: None, time_ms: 0, command: Command::RegisterSession };
    assert_eq!(encode_request(&register), [1, 0, 0, 8]);
}

#[test]
fn every_truncation_is_reported_as_truncated() {
    for request in every_command() {
        let bytes = encode_request(&request);
        for len in 0..bytes.len() {
            assert_eq!(decode_request(&bytes[..len]), Err(DecodeError::Truncated), "{request:?} cut to {len} bytes");
        }
    }
}

#[test]
fn another_version_is_rejected() {
    let mut bytes = encode_request(&every_command()[0]);
    for version in [0, 2, 255] {
        bytes[0] = version;
        assert_eq!(decode_request(&bytes), Err(DecodeError::UnsupportedVersion { found: version, supported: 1 }));
    }
}

#[test]
fn trailing_bytes_are_rejected() {
    for request in every_command() {
        let mut bytes = encode_request(&request);
        bytes.extend_from_slice(&[0, 0]);
        assert_eq!(decode_request(&bytes), Err(DecodeError::TrailingBytes { count: 2 }));
    }
}

#[test]
fn unknown_command_tags_are_rejected() {
    // version, no session, time 0, then a tag past the last command (RegisterSession = 8).
    for tag in [9_u8, 99, 127] {
        assert_eq!(decode_request(&[1, 0, 0, tag]), Err(DecodeError::UnknownTag));
    }
    // The largest tag a varint can carry (u32::MAX).
    assert_eq!(decode_request(&[1, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f]), Err(DecodeError::UnknownTag));
    // Tags are u32: a longer varint is malformed, not a tag.
    assert!(matches!(decode_request(&[1, 0, 0, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01]), Err(DecodeError::Malformed { .. })));
}

#[test]
fn structurally_invalid_input_is_malformed() {
    let cases: &[&[u8]] = &[
        // Option flag 2 for the session.
        &[1, 2, 0, 0, 8],
        // time_ms as an overlong varint (11 continuation bytes).
        &[1, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 8],
        // CompareAndSet with an option flag 7 for `expected`.
        &[1, 0, 0, 6, 1, b'k', 7],
    ];
    for &bytes in cases {
        assert!(matches!(decode_request(bytes), Err(DecodeError::Malformed { .. })), "{bytes:?} gave {:?}", decode_request(bytes));
    }
}

#[test]
fn a_huge_length_prefix_is_truncated_not_allocated() {
    // Put with a key length of about 2^35 and one byte of data.
    let bytes = [1, 0, 0, 2, 0xff, 0xff, 0xff, 0xff, 0x7f, b'a'];
    assert_eq!(decode_request(&bytes), Err(DecodeError::Truncated));
    // MultiGet claiming 2^32 keys.
    let bytes = [1, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0x0f, 0];
    assert_eq!(decode_request(&bytes), Err(DecodeError::Truncated));
}

#[test]
fn errors_read_clearly() {
    assert_eq!(
        DecodeError::UnsupportedVersion { found: 9, supported: 1 }.to_string(),
        "unsupported format version 9 (this build reads version 1)"
    );
    assert_eq!(DecodeError::TrailingBytes { count: 3 }.to_string(), "3 trailing byte(s) after a complete value");
}

fn arb_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..8)
}

pub fn arb_command() -> impl Strategy<Value = Command> {
    prop_oneof![
        arb_bytes().prop_map(|key| Command::Get { key }),
        prop::collection::vec(arb_bytes(), 0..4).prop_map(|keys| Command::MultiGet { keys }),
        (arb_bytes(), arb_bytes()).prop_map(|(key, value)| Command::Put { key, value }),
        arb_bytes().prop_map(|key| Command::Delete { key }),
        (arb_bytes(), arb_bytes()).prop_map(|(key, value)| Command::Append { key, value }),
        (arb_bytes(), any::<i64>()).prop_map(|(key, delta)| Command::Increment { key, delta }),
        (arb_bytes(), prop::option::of(arb_bytes()), prop::option::of(arb_bytes()))
            .prop_map(|(key, expected, new)| Command::CompareAndSet { key, expected, new }),
        prop::collection::vec((arb_bytes(), arb_bytes()), 0..4).prop_map(|pairs| Command::MultiPut { pairs }),
        Just(Command::RegisterSession),
    ]
}

fn arb_request() -> impl Strategy<Value = Request> {
    let session = prop::option::of((any::<u64>(), any::<u64>())).prop_map(|s| s.map(|(client, seq)| Session { client, seq }));
    (session, any::<u64>(), arb_command()).prop_map(|(session, time_ms, command)| Request { session, time_ms, command })
}

proptest! {
    #[test]
    fn any_request_round_trips(request in arb_request()) {
        prop_assert_eq!(decode_request(&encode_request(&request)), Ok(request));
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        versioned in any::<bool>(),
        mut bytes in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        if versioned {
            bytes.insert(0, REQUEST_FORMAT_VERSION);
        }
        let _ = decode_request(&bytes);
    }

    #[test]
    fn corrupting_one_byte_never_panics(
        request in arb_request(),
        position in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let mut bytes = encode_request(&request);
        let i = position.index(bytes.len());
        bytes[i] = byte;
        // Either an error or some valid request. (Not necessarily the same bytes re-encoded:
        // postcard accepts non-minimal varints, which is harmless since every replica decodes
        // the same entry bytes to the same request.)
        if let Ok(decoded) = decode_request(&bytes) {
            prop_assert_eq!(decode_request(&encode_request(&decoded)), Ok(decoded));
        }
    }
}
