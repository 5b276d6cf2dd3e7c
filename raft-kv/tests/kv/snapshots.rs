//! Snapshots: a snapshot taken on one replica restores to an identical state on another, and bad
//! bytes are rejected without panicking.

use raft_kv::{Command, DecodeError, KvStore, Limits, Reply, SNAPSHOT_FORMAT_VERSION};

use crate::{append, incr, put, Harness};

/// A store with keys, sessions in several states, a stored error reply and a moved log clock.
fn busy_store() -> Harness {
    let mut h = Harness::with_limits(Limits { max_sessions: 3, session_ttl_ms: 10_000, ..Limits::default() });
    let a = h.register();
    let b = h.register();
    h.advance(250);
    h.write_as(a, 1, put("x", "1"));
    h.write_as(b, 1, incr("x", 1));
    h.write_as(b, 2, append("x", "!"));
    h.write_as(a, 2, incr("x", 1)); // NotAnInteger, stored as a's reply
    h.write(Command::MultiPut { pairs: vec![(vec![], vec![]), (vec![0xff; 10], vec![0; 100])] });
    h.apply_raw(&[]);
    h.register();
    h.register(); // evicts a
    h
}

#[test]
fn a_snapshot_restores_to_an_identical_store() {
    let h = busy_store();
    let bytes = h.store.snapshot();
    assert_eq!(bytes[0], SNAPSHOT_FORMAT_VERSION);
    let restored = KvStore::restore(&bytes, *h.store.limits()).expect("valid snapshot");
    assert_eq!(restored, h.store);
    assert_eq!(restored.snapshot(), bytes, "the encoding is canonical");
    assert_eq!(restored.applied_index(), h.store.applied_index());
    assert_eq!(restored.log_clock_ms(), 250);
    assert_eq!(restored.session_count(), 3);
}

#[test]
fn a_restored_replica_goes_on_exactly_like_the_original() {
    let mut original = busy_store();
    let mut copy = Harness {
        store: KvStore::restore(&original.store.snapshot(), *original.store.limits()).unwrap(),
        next_index: original.next_index,
        time_ms: original.time_ms,
    };
    for h in [&mut original, &mut copy] {
        // Client 2 retries its last request, then writes anew; its retry must be a duplicate.
        let retry = h.write_as(2, 2, append("x", "!"));
        assert!(retry.duplicate);
        assert_eq!(h.write_as(2, 3, append("x", "?")).reply, Reply::Integer(3));
        h.advance(20_000);
        h.register(); // expires every other session
    }
    assert_eq!(original.store, copy.store);
    assert_eq!(original.store.get(b"x"), Some(&b"2!?"[..]));
}

#[test]
fn an_empty_store_round_trips() {
    let store = KvStore::new(Limits::default());
    let restored = KvStore::restore(&store.snapshot(), Limits::default()).unwrap();
    assert_eq!(restored, store);
}

#[test]
fn every_truncation_is_rejected() {
    let bytes = busy_store().store.snapshot();
    for len in 0..bytes.len() {
        assert_eq!(KvStore::restore(&bytes[..len], Limits::default()), Err(DecodeError::Truncated), "cut to {len} bytes");
    }
}

#[test]
fn wrong_version_trailing_bytes_and_garbage_are_rejected() {
    let mut bytes = busy_store().store.snapshot();
    bytes.push(0);
    assert_eq!(KvStore::restore(&bytes, Limits::default()), Err(DecodeError::TrailingBytes { count: 1 }));
    bytes.pop();
    bytes[0] = 2;
    assert_eq!(KvStore::restore(&bytes, Limits::default()), Err(DecodeError::UnsupportedVersion { found: 2, supported: 1 }));
    assert!(KvStore::restore(b"\x01garbage garbage garbage", Limits::default()).is_err());
}

#[test]
fn corrupting_any_byte_never_panics() {
    let bytes = busy_store().store.snapshot();
    for i in 0..bytes.len() {
        for flip in [0x01, 0x80, 0xff] {
            let mut corrupt = bytes.clone();
            corrupt[i] ^= flip;
            if let Ok(store) = KvStore::restore(&corrupt, Limits::default()) {
                store.check_invariants();
            }
        }
    }
}

#[test]
fn restoring_under_fewer_sessions_evicts_the_least_recently_active() {
    let h = busy_store();
    let limits = Limits { max_sessions: 1, ..*h.store.limits() };
    let restored = KvStore::restore(&h.store.snapshot(), limits).unwrap();
    assert_eq!(restored.session_count(), 1);
    // Sessions 2, 9 and 10 were all last active at 250: the highest client id survives.
    assert!(restored.session(10).is_some());
}
