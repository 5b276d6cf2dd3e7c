//! One test (or table) per command, plus limits, queries, no-op and malformed entries.

use raft_kv::{Command, CommandError, KvStore, Limits, Reply, Request, Session};

use crate::{append, get, incr, put, value, Harness};

#[test]
fn get_returns_the_value_or_none() {
    let mut h = Harness::new();
    assert_eq!(h.store.query(&get("a")), Reply::Value(None));
    h.write(put("a", "1"));
    assert_eq!(h.store.query(&get("a")), value("1"));
    // A read through the log gives the same answer and changes nothing.
    let applied = h.apply(None, get("a"));
    assert_eq!(applied.reply, value("1"));
    assert_eq!(h.store.len(), 1);
    assert_eq!(h.store.get(b"a"), Some(&b"1"[..]));
}

#[test]
fn multi_get_answers_in_key_order_given() {
    let mut h = Harness::new();
    h.write(put("a", "1"));
    h.write(put("c", "3"));
    let keys = vec![b"c".to_vec(), b"b".to_vec(), b"a".to_vec(), b"c".to_vec()];
    let expected = Reply::Values(vec![Some(b"3".to_vec()), None, Some(b"1".to_vec()), Some(b"3".to_vec())]);
    assert_eq!(h.store.query(&Command::MultiGet { keys: keys.clone() }), expected);
    assert_eq!(h.apply(None, Command::MultiGet { keys }).reply, expected);
    assert_eq!(h.store.query(&Command::MultiGet { keys: vec![] }), Reply::Values(vec![]));
}

#[test]
fn put_inserts_and_overwrites() {
    let mut h = Harness::new();
    assert_eq!(h.write(put("a", "1")), Reply::Ok);
    assert_eq!(h.write(put("a", "2")), Reply::Ok);
    assert_eq!(h.store.get(b"a"), Some(&b"2"[..]));
    assert_eq!(h.write(put("", "")), Reply::Ok, "empty key and value are fine");
    assert_eq!(h.store.get(b""), Some(&b""[..]));
    assert_eq!(h.store.len(), 2);
}

#[test]
fn delete_says_whether_the_key_existed() {
    let mut h = Harness::new();
    h.write(put("a", "1"));
    assert_eq!(h.write(Command::Delete { key: "a".into() }), Reply::Deleted { existed: true });
    assert_eq!(h.write(Command::Delete { key: "a".into() }), Reply::Deleted { existed: false });
    assert!(h.store.is_empty());
}

#[test]
fn append_creates_extends_and_returns_the_new_length() {
    let mut h = Harness::new();
    assert_eq!(h.write(append("a", "xy")), Reply::Integer(2));
    assert_eq!(h.write(append("a", "z")), Reply::Integer(3));
    assert_eq!(h.write(append("a", "")), Reply::Integer(3));
    assert_eq!(h.store.get(b"a"), Some(&b"xyz"[..]));
}

#[test]
fn append_beyond_the_value_limit_fails_and_changes_nothing() {
    let limits = Limits { max_value_bytes: 4, ..Limits::default() };
    let mut h = Harness::with_limits(limits);
    assert_eq!(h.write(append("a", "abc")), Reply::Integer(3));
    assert_eq!(h.write(append("a", "de")), Reply::Error(CommandError::ValueTooLarge { len: 5, max: 4 }));
    assert_eq!(h.store.get(b"a"), Some(&b"abc"[..]));
    assert_eq!(h.write(append("a", "d")), Reply::Integer(4), "exactly at the limit");
}

#[test]
fn increment_follows_redis_incrby() {
    let mut h = Harness::new();
    assert_eq!(h.write(incr("n", 5)), Reply::Integer(5), "missing key counts as 0");
    assert_eq!(h.write(incr("n", -7)), Reply::Integer(-2));
    assert_eq!(h.store.get(b"n"), Some(&b"-2"[..]), "stored as decimal text");
    h.write(put("m", "41"));
    assert_eq!(h.write(incr("m", 1)), Reply::Integer(42));
}

#[test]
fn increment_rejects_non_integers_and_overflow_without_effect() {
    let mut h = Harness::new();
    for text in ["abc", "", "1.5", " 1", "+1", "01", "-0", "9223372036854775808"] {
        h.write(put("x", text));
        assert_eq!(h.write(incr("x", 1)), Reply::Error(CommandError::NotAnInteger), "{text:?}");
        assert_eq!(h.store.get(b"x"), Some(text.as_bytes()));
    }
    h.write(put("x", &i64::MAX.to_string()));
    assert_eq!(h.write(incr("x", 1)), Reply::Error(CommandError::IntegerOverflow));
    h.write(put("x", &i64::MIN.to_string()));
    assert_eq!(h.write(incr("x", -1)), Reply::Error(CommandError::IntegerOverflow));
    assert_eq!(h.store.get(b"x"), Some(i64::MIN.to_string().as_bytes()));
}

#[test]
fn compare_and_set_table() {
    fn cas(expected: Option<&str>, new: Option<&str>) -> Command {
        Command::CompareAndSet { key: "k".into(), expected: expected.map(Into::into), new: new.map(Into::into) }
    }
    fn result(swapped: bool, current: Option<&str>) -> Reply {
        Reply::CasResult { swapped, current: current.map(Into::into) }
    }
    // (command, expected reply, value afterwards), applied in order.
    let table = [
        (cas(Some("a"), Some("b")), result(false, None), None),
        (cas(None, Some("a")), result(true, Some("a")), Some("a")),
        (cas(None, Some("b")), result(false, Some("a")), Some("a")),
        (cas(Some("x"), Some("b")), result(false, Some("a")), Some("a")),
        (cas(Some("a"), Some("b")), result(true, Some("b")), Some("b")),
        (cas(Some("b"), None), result(true, None), None),
        (cas(None, None), result(true, None), None),
    ];
    let mut h = Harness::new();
    for (step, (command, reply, after)) in table.into_iter().enumerate() {
        assert_eq!(h.write(command), reply, "step {step}");
        assert_eq!(h.store.get(b"k"), after.map(str::as_bytes), "step {step}");
    }
}

#[test]
fn multi_put_is_atomic_and_last_pair_wins() {
    let limits = Limits { max_value_bytes: 3, ..Limits::default() };
    let mut h = Harness::with_limits(limits);
    let pairs = |list: &[(&str, &str)]| Command::MultiPut { pairs: list.iter().map(|&(k, v)| (k.into(), v.into())).collect() };
    assert_eq!(h.write(pairs(&[("a", "1"), ("b", "2"), ("a", "3")])), Reply::Ok);
    assert_eq!(h.store.get(b"a"), Some(&b"3"[..]));
    assert_eq!(h.store.get(b"b"), Some(&b"2"[..]));
    // One oversized value fails the whole batch.
    assert_eq!(h.write(pairs(&[("c", "1"), ("d", "toolong")])), Reply::Error(CommandError::ValueTooLarge { len: 7, max: 3 }));
    assert_eq!(h.store.get(b"c"), None);
    assert_eq!(h.write(pairs(&[])), Reply::Ok);
    assert_eq!(h.store.len(), 2);
}

#[test]
fn every_keyed_command_enforces_the_key_limit() {
    let limits = Limits { max_key_bytes: 2, ..Limits::default() };
    let long: Vec<u8> = b"abc".to_vec();
    let too_large = Reply::Error(CommandError::KeyTooLarge { len: 3, max: 2 });
    let commands = [
        Command::Get { key: long.clone() },
        Command::MultiGet { keys: vec![b"ok".to_vec(), long.clone()] },
        Command::Put { key: long.clone(), value: vec![] },
        Command::Delete { key: long.clone() },
        Command::Append { key: long.clone(), value: vec![] },
        Command::Increment { key: long.clone(), delta: 1 },
        Command::CompareAndSet { key: long.clone(), expected: None, new: None },
        Command::MultiPut { pairs: vec![(b"ok".to_vec(), vec![]), (long.clone(), vec![])] },
    ];
    let mut h = Harness::with_limits(limits);
    for command in commands {
        let request = Request { session: None, time_ms: 0, command: command.clone() };
        assert_eq!(h.store.validate(&request), Err(CommandError::KeyTooLarge { len: 3, max: 2 }));
        assert_eq!(h.write(command.clone()), too_large, "{command:?}");
        if command.is_read_only() {
            assert_eq!(h.store.query(&command), too_large);
        }
    }
    assert!(h.store.is_empty());
    assert_eq!(h.write(put("ab", "")), Reply::Ok, "exactly at the limit");
}

#[test]
fn values_are_limited_in_put_and_compare_and_set() {
    let limits = Limits { max_value_bytes: 2, ..Limits::default() };
    let mut h = Harness::with_limits(limits);
    let err = Reply::Error(CommandError::ValueTooLarge { len: 3, max: 2 });
    assert_eq!(h.write(put("a", "abc")), err);
    let cas = Command::CompareAndSet { key: "a".into(), expected: None, new: Some("abc".into()) };
    assert_eq!(h.write(cas), err);
    assert!(h.store.is_empty());
}

#[test]
fn validate_accepts_good_requests_and_rejects_sequence_zero() {
    let h = Harness::new();
    let mut request = Request { session: Some(Session { client: 1, seq: 1 }), time_ms: 0, command: put("a", "b") };
    assert_eq!(h.store.validate(&request), Ok(()));
    request.session = Some(Session { client: 1, seq: 0 });
    assert_eq!(h.store.validate(&request), Err(CommandError::ZeroSequence));
    // Reads and registration ignore the session, so its sequence does not matter.
    request.command = Command::RegisterSession;
    assert_eq!(h.store.validate(&request), Ok(()));
    request.command = get("a");
    assert_eq!(h.store.validate(&request), Ok(()));
}

#[test]
fn query_refuses_writes_and_never_mutates() {
    let h = Harness::new();
    for command in [put("a", "1"), append("a", "1"), incr("a", 1), Command::RegisterSession] {
        assert_eq!(h.store.query(&command), Reply::Error(CommandError::NotReadOnly));
    }
    assert!(h.store.is_empty());
}

#[test]
fn empty_entry_is_a_no_op_that_advances_the_applied_index() {
    let mut store = KvStore::new(Limits::default());
    let applied = store.apply(3, &[]);
    assert_eq!(applied.reply, Reply::Ok);
    assert_eq!(applied.session, None);
    assert!(!applied.duplicate);
    assert_eq!(store.applied_index(), 3);
    assert!(store.is_empty());
}

#[test]
fn malformed_entry_replies_an_error_on_every_replica_and_advances() {
    let mut a = KvStore::new(Limits::default());
    let mut b = KvStore::new(Limits::default());
    for (index, garbage) in [&[0xff_u8, 1, 2][..], &[1], &[1, 0, 0, 99]].iter().enumerate() {
        let index = index as u64 + 1;
        let reply_a = a.apply(index, garbage);
        let reply_b = b.apply(index, garbage);
        assert!(matches!(reply_a.reply, Reply::Error(CommandError::Malformed { .. })));
        assert_eq!(reply_a, reply_b);
        assert_eq!(a.applied_index(), index);
    }
    assert_eq!(a, b);
}

#[test]
#[should_panic(expected = "entry 2 applied after entry 2")]
fn applying_an_index_twice_is_a_programmer_error() {
    let mut store = KvStore::new(Limits::default());
    store.apply(2, &[]);
    store.apply(2, &[]);
}

#[test]
#[should_panic(expected = "max_sessions must be at least 1")]
fn zero_max_sessions_is_rejected() {
    let _ = KvStore::new(Limits { max_sessions: 0, ..Limits::default() });
}

#[test]
fn default_limits_are_sensible() {
    let limits = Limits::default();
    assert_eq!(limits.max_key_bytes, 1024);
    assert_eq!(limits.max_value_bytes, 1024 * 1024);
    assert_eq!(limits.max_sessions, 10_000);
    assert!(limits.session_ttl_ms >= 60_000);
}
