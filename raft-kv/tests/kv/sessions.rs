//! The session rules of thesis §6.3: duplicates, reordering, expiry by log time, eviction.

use raft_kv::{Command, CommandError, KvStore, Limits, Reply, Session};

use crate::{append, incr, put, Harness};

fn limits(max_sessions: usize, session_ttl_ms: u64) -> Limits {
    Limits { max_sessions, session_ttl_ms, ..Limits::default() }
}

#[test]
fn registration_assigns_the_entry_index_as_client_id() {
    let mut h = Harness::new();
    h.apply_raw(&[]);
    assert_eq!(h.register(), 2);
    assert_eq!(h.register(), 3);
    let session = h.store.session(2).expect("session 2 is open");
    assert_eq!(session.last_seq(), 0);
    assert_eq!(session.last_reply(), &Reply::Registered { client: 2 });
    assert_eq!(h.store.session_count(), 2);
}

#[test]
fn a_retried_write_returns_the_stored_reply_and_applies_once() {
    let mut h = Harness::new();
    let client = h.register();
    let first = h.write_as(client, 1, append("log", "a"));
    assert_eq!(first.reply, Reply::Integer(1));
    assert!(!first.duplicate);
    assert_eq!(first.session, Some(Session { client, seq: 1 }));
    for _ in 0..3 {
        let retry = h.write_as(client, 1, append("log", "a"));
        assert!(retry.duplicate);
        assert_eq!(retry.reply, Reply::Integer(1));
    }
    assert_eq!(h.store.get(b"log"), Some(&b"a"[..]));
    assert_eq!(h.write_as(client, 2, append("log", "b")).reply, Reply::Integer(2));
    assert_eq!(h.store.session(client).map(|s| s.last_seq()), Some(2));
}

#[test]
fn an_error_reply_is_stored_and_repeated_like_any_other() {
    let mut h = Harness::new();
    let client = h.register();
    h.write(put("n", "text"));
    let first = h.write_as(client, 1, incr("n", 1));
    assert_eq!(first.reply, Reply::Error(CommandError::NotAnInteger));
    // Even if the key becomes an integer meanwhile, the retry gets the original answer.
    h.write(put("n", "1"));
    let retry = h.write_as(client, 1, incr("n", 1));
    assert!(retry.duplicate);
    assert_eq!(retry.reply, first.reply);
    assert_eq!(h.store.get(b"n"), Some(&b"1"[..]));
}

#[test]
fn a_reordered_older_request_is_stale_and_not_applied() {
    let mut h = Harness::new();
    let client = h.register();
    h.write_as(client, 1, append("log", "a"));
    h.write_as(client, 2, append("log", "b"));
    let late = h.write_as(client, 1, append("log", "a"));
    assert_eq!(late.reply, Reply::Error(CommandError::StaleSequence { last_applied: 2 }));
    assert!(!late.duplicate);
    assert_eq!(h.store.get(b"log"), Some(&b"ab"[..]));
}

#[test]
fn a_sequence_gap_is_applied() {
    let mut h = Harness::new();
    let client = h.register();
    h.write_as(client, 1, append("log", "a"));
    assert_eq!(h.write_as(client, 5, append("log", "b")).reply, Reply::Integer(2));
    assert_eq!(h.write_as(client, 4, append("log", "c")).reply, Reply::Error(CommandError::StaleSequence { last_applied: 5 }));
}

#[test]
fn sequence_zero_is_rejected() {
    let mut h = Harness::new();
    let client = h.register();
    assert_eq!(h.write_as(client, 0, put("a", "1")).reply, Reply::Error(CommandError::ZeroSequence));
    assert!(h.store.is_empty());
}

#[test]
fn an_unknown_client_is_told_its_session_expired_and_nothing_is_applied() {
    let mut h = Harness::new();
    let reply = h.write_as(42, 1, put("a", "1")).reply;
    assert_eq!(reply, Reply::Error(CommandError::SessionExpired));
    assert!(h.store.is_empty());
    assert_eq!(h.store.session_count(), 0, "a write does not open a session");
}

#[test]
fn writes_without_a_session_apply_every_time() {
    let mut h = Harness::new();
    h.write(append("log", "a"));
    h.write(append("log", "a"));
    assert_eq!(h.store.get(b"log"), Some(&b"aa"[..]));
}

#[test]
fn reads_and_registration_need_no_session_and_ignore_one() {
    let mut h = Harness::new();
    h.write(put("a", "1"));
    let read = h.apply(Some(Session { client: 99, seq: 7 }), Command::Get { key: "a".into() });
    assert_eq!(read.reply, Reply::Value(Some("1".into())));
    let reg = h.apply(Some(Session { client: 99, seq: 7 }), Command::RegisterSession);
    assert_eq!(reg.reply, Reply::Registered { client: 3 });
}

#[test]
fn an_idle_session_expires_by_log_time_and_its_retry_is_not_applied() {
    let mut h = Harness::with_limits(limits(100, 1_000));
    let idle = h.register();
    let busy = h.register();
    h.write_as(idle, 1, append("log", "a"));
    h.advance(600);
    h.write_as(busy, 1, put("x", "1"));
    h.advance(600);
    // The log clock is now 1200: `idle` was last active at 0 < 1200 - 1000.
    h.write_as(busy, 2, put("x", "2"));
    assert!(h.store.session(idle).is_none());
    assert!(h.store.session(busy).is_some());
    let retry = h.write_as(idle, 1, append("log", "a"));
    assert_eq!(retry.reply, Reply::Error(CommandError::SessionExpired));
    assert_eq!(h.store.get(b"log"), Some(&b"a"[..]));
}

#[test]
fn a_session_exactly_at_the_ttl_survives() {
    let mut h = Harness::with_limits(limits(100, 1_000));
    let client = h.register();
    h.advance(1_000);
    assert_eq!(h.write_as(client, 1, put("a", "1")).reply, Reply::Ok);
    h.advance(1_001);
    assert_eq!(h.write_as(client, 2, put("a", "2")).reply, Reply::Error(CommandError::SessionExpired));
}

#[test]
fn retries_and_stale_requests_keep_a_session_alive() {
    let mut h = Harness::with_limits(limits(100, 1_000));
    let client = h.register();
    h.write_as(client, 2, put("a", "1"));
    for _ in 0..5 {
        h.advance(800);
        assert!(h.write_as(client, 2, put("a", "1")).duplicate);
        h.advance(800);
        h.write_as(client, 1, put("a", "1"));
    }
    assert_eq!(h.store.session(client).map(|s| s.last_active_ms()), Some(h.time_ms));
}

#[test]
fn the_log_clock_never_moves_back() {
    let mut h = Harness::with_limits(limits(100, 1_000));
    h.time_ms = 5_000;
    h.write(put("a", "1"));
    // A new leader whose clock lags proposes with an older timestamp: the session is marked
    // active at the log clock (5000), not at the entry's own time.
    h.time_ms = 4_500;
    let client = h.register();
    assert_eq!(h.store.log_clock_ms(), 5_000);
    assert_eq!(h.store.session(client).map(|s| s.last_active_ms()), Some(5_000));
    // At 5900 the cutoff is 4900: the session lives (it would not, had it been active at 4500).
    h.time_ms = 5_900;
    assert_eq!(h.write_as(client, 1, put("a", "2")).reply, Reply::Ok);
}

#[test]
fn no_op_and_malformed_entries_do_not_advance_the_clock() {
    let mut h = Harness::with_limits(limits(100, 1_000));
    h.time_ms = 700;
    let client = h.register();
    h.apply_raw(&[]);
    h.apply_raw(&[1, 200]);
    assert_eq!(h.store.log_clock_ms(), 700);
    assert!(h.store.session(client).is_some());
}

#[test]
fn registering_beyond_the_limit_evicts_the_least_recently_active() {
    let mut h = Harness::with_limits(limits(2, u64::MAX));
    let a = h.register();
    let b = h.register();
    h.advance(10);
    h.write_as(a, 1, put("k", "a"));
    let c = h.register();
    assert!(h.store.session(b).is_none(), "b was the least recently active");
    assert!(h.store.session(a).is_some());
    assert!(h.store.session(c).is_some());
    assert_eq!(h.store.session_count(), 2);
    assert_eq!(h.write_as(b, 1, put("k", "b")).reply, Reply::Error(CommandError::SessionExpired));
    // a and c are both active at 10: the tie goes against the lower client id.
    h.register();
    assert!(h.store.session(a).is_none());
    assert!(h.store.session(c).is_some());
}

#[test]
fn every_replica_expires_the_same_sessions() {
    let mut a = Harness::with_limits(limits(3, 500));
    let mut log = Vec::new();
    for step in 0..40_u64 {
        a.time_ms = step * 97 % 1_300 + step * 10; // not monotone: the log clock is the max
        let command = if step % 3 == 0 { Command::RegisterSession } else { put("k", &step.to_string()) };
        let session = (step % 3 != 0).then_some(Session { client: step / 3 * 3 + 1, seq: step });
        let request = raft_kv::Request { session, time_ms: a.time_ms, command };
        let data = raft_kv::encode_request(&request);
        a.apply_raw(&data);
        log.push(data);
    }
    let mut b = KvStore::new(limits(3, 500));
    for (i, data) in log.iter().enumerate() {
        b.apply(i as u64 + 1, data);
    }
    assert_eq!(a.store, b);
    assert_eq!(a.store.snapshot(), b.snapshot());
}
