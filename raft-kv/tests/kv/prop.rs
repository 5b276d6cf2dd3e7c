//! The exactly-once property: random command sequences, with random duplicated and late
//! retries, applied to two replicas (one of them rebuilt from a snapshot midway) end identical,
//! and every write took effect at most once, exactly once if it was acknowledged.

use std::collections::BTreeMap;

use proptest::prelude::*;
use raft_kv::{decode_request, encode_request, Applied, ClientId, Command, CommandError, KvStore, Limits, Reply, Request, Session};

const SLOTS: usize = 4;

fn limits() -> Limits {
    // Small enough that values hit their limit, sessions get evicted and expire.
    Limits { max_key_bytes: 8, max_value_bytes: 64, max_sessions: 3, session_ttl_ms: 1_000 }
}

#[derive(Debug, Clone)]
enum Op {
    /// The client in `slot` opens a (new) session.
    Register { slot: usize },
    /// The client appends a unique token to a token key: the exactly-once witness.
    AppendToken { slot: usize, key: u8 },
    /// Any other write on the plain keys, in a session or (slot `None`) without one.
    Write { slot: Option<usize>, command: Command },
    /// The client's latest request is proposed again (its reply was lost).
    Retry { slot: usize },
    /// An older request of the client arrives late (reordered).
    LateRetry { slot: usize, back: usize },
    /// A leader's no-op entry.
    Blank,
    /// An entry that is not a valid request.
    Garbage(Vec<u8>),
    /// Leader time moves on (or, after a leader change, back a little).
    Time(i64),
}

fn plain_key() -> impl Strategy<Value = Vec<u8>> {
    // Mostly k0..k3; sometimes a key over the 8-byte limit.
    prop_oneof![
        9 => (0..4_u8).prop_map(|i| format!("k{i}").into_bytes()),
        1 => Just(b"key-too-long".to_vec()),
    ]
}

fn small_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![(-3..30_i64).prop_map(|n| n.to_string().into_bytes()), prop::collection::vec(b'a'..=b'c', 0..4),]
}

fn plain_command() -> impl Strategy<Value = Command> {
    prop_oneof![
        plain_key().prop_map(|key| Command::Get { key }),
        prop::collection::vec(plain_key(), 0..3).prop_map(|keys| Command::MultiGet { keys }),
        (plain_key(), small_value()).prop_map(|(key, value)| Command::Put { key, value }),
        plain_key().prop_map(|key| Command::Delete { key }),
        (plain_key(), small_value()).prop_map(|(key, value)| Command::Append { key, value }),
        (plain_key(), -5..5_i64).prop_map(|(key, delta)| Command::Increment { key, delta }),
        (plain_key(), prop::option::of(small_value()), prop::option::of(small_value()))
            .prop_map(|(key, expected, new)| Command::CompareAndSet { key, expected, new }),
        prop::collection::vec((plain_key(), small_value()), 0..3).prop_map(|pairs| Command::MultiPut { pairs }),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let slot = 0..SLOTS;
    prop_oneof![
        2 => slot.clone().prop_map(|slot| Op::Register { slot }),
        6 => (slot.clone(), 0..3_u8).prop_map(|(slot, key)| Op::AppendToken { slot, key }),
        4 => (prop::option::of(slot.clone()), plain_command())
            .prop_map(|(slot, command)| Op::Write { slot, command }),
        4 => slot.clone().prop_map(|slot| Op::Retry { slot }),
        1 => (slot, any::<usize>()).prop_map(|(slot, back)| Op::LateRetry { slot, back }),
        1 => Just(Op::Blank),
        1 => prop::collection::vec(any::<u8>(), 0..6).prop_map(Op::Garbage),
        3 => (-20..100_i64).prop_map(Op::Time),
    ]
}

/// What a client slot knows: its session and every request it has proposed (in any session).
#[derive(Default)]
struct Client {
    id: Option<ClientId>,
    next_seq: u64,
    proposed: Vec<usize>,
}

/// A log entry and, for token appends, the (key, token) it carries.
#[derive(Clone)]
struct Entry {
    data: Vec<u8>,
    token: Option<(Vec<u8>, Vec<u8>)>,
}

/// Clients proposing to a pretend leader whose committed log is applied, entry by entry, to the
/// reference replica, so clients can react to replies as real ones do: a client told its
/// session expired registers a new one.
struct World {
    log: Vec<Entry>,
    replies: Vec<Applied>,
    replica: KvStore,
    clients: Vec<Client>,
    time_ms: u64,
}

impl World {
    fn new() -> Self {
        World {
            log: Vec::new(),
            replies: Vec::new(),
            replica: KvStore::new(limits()),
            clients: (0..SLOTS).map(|_| Client::default()).collect(),
            time_ms: 0,
        }
    }

    fn run(ops: &[Op]) -> Self {
        let mut world = World::new();
        for op in ops {
            world.step(op);
        }
        world
    }

    fn commit(&mut self, entry: Entry) -> &Applied {
        let index = self.log.len() as u64 + 1;
        let applied = self.replica.apply(index, &entry.data);
        self.replica.check_invariants();
        self.log.push(entry);
        self.replies.push(applied);
        self.replies.last().expect("just pushed")
    }

    fn encode(&self, session: Option<Session>, command: Command) -> Vec<u8> {
        encode_request(&Request { session, time_ms: self.time_ms, command })
    }

    fn register(&mut self, slot: usize) {
        let data = self.encode(None, Command::RegisterSession);
        let reply = self.commit(Entry { data, token: None }).reply.clone();
        let Reply::Registered { client } = reply else {
            panic!("registration failed: {reply:?}");
        };
        self.clients[slot].id = Some(client);
        self.clients[slot].next_seq = 1;
    }

    /// The client in `slot` proposes a new write in its session, registering first if it has
    /// none.
    fn propose(&mut self, slot: usize, command: Command, token: Option<(Vec<u8>, Vec<u8>)>) {
        if self.clients[slot].id.is_none() {
            self.register(slot);
        }
        let client = &mut self.clients[slot];
        let session = Session { client: client.id.expect("registered"), seq: client.next_seq };
        client.next_seq += 1;
        client.proposed.push(self.log.len());
        let data = self.encode(Some(session), command);
        self.commit_as(slot, Entry { data, token });
    }

    /// Commits a client's entry; a client told its session expired forgets it.
    fn commit_as(&mut self, slot: usize, entry: Entry) {
        let data = entry.data.clone();
        let expired = self.commit(entry).reply == Reply::Error(CommandError::SessionExpired);
        let current = self.clients[slot].id;
        let session = decode_request(&data).ok().and_then(|r| r.session);
        if expired && session.map(|s| s.client) == current {
            self.clients[slot].id = None;
        }
    }

    fn step(&mut self, op: &Op) {
        match op {
            Op::Register { slot } => self.register(*slot),
            Op::AppendToken { slot, key } => {
                let key = format!("t{key}").into_bytes();
                // Unique: the index of the entry that first carries it (or one before, if the
                // client registers first; still unique).
                let token = format!("<{}>", self.log.len() + 1).into_bytes();
                let command = Command::Append { key: key.clone(), value: token.clone() };
                self.propose(*slot, command, Some((key, token)));
            }
            Op::Write { slot: None, command } => {
                let data = self.encode(None, command.clone());
                self.commit(Entry { data, token: None });
            }
            Op::Write { slot: Some(slot), command } => self.propose(*slot, command.clone(), None),
            Op::Retry { slot } => {
                if let Some(&original) = self.clients[*slot].proposed.last() {
                    self.commit_as(*slot, self.log[original].clone());
                }
            }
            Op::LateRetry { slot, back } => {
                let proposed = &self.clients[*slot].proposed;
                if proposed.len() >= 2 {
                    let original = proposed[back % (proposed.len() - 1)];
                    self.commit_as(*slot, self.log[original].clone());
                }
            }
            Op::Blank => {
                self.commit(Entry { data: vec![], token: None });
            }
            Op::Garbage(bytes) => {
                self.commit(Entry { data: bytes.clone(), token: None });
            }
            Op::Time(delta) => self.time_ms = self.time_ms.saturating_add_signed(*delta),
        }
    }
}

fn apply_all(store: &mut KvStore, log: &[Entry], first_index: u64) -> Vec<Applied> {
    let mut replies = Vec::with_capacity(log.len());
    for (offset, entry) in log.iter().enumerate() {
        replies.push(store.apply(first_index + offset as u64, &entry.data));
        store.check_invariants();
    }
    replies
}

fn occurrences(haystack: &[u8], needle: &[u8]) -> usize {
    haystack.windows(needle.len()).filter(|w| *w == needle).count()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn replicas_agree_and_writes_take_effect_exactly_once(
        ops in prop::collection::vec(op(), 1..200),
        cut in any::<prop::sample::Index>(),
    ) {
        // Replica A applies the whole log as it is committed.
        let World { log, replies, replica: a, .. } = World::run(&ops);

        // Replica B applies a prefix, is snapshotted, and C is restored from that snapshot and
        // applies the rest.
        let cut = cut.index(log.len() + 1);
        let mut b = KvStore::new(limits());
        let prefix_replies = apply_all(&mut b, &log[..cut], 1);
        let mut c = KvStore::restore(&b.snapshot(), limits()).expect("own snapshot restores");
        prop_assert_eq!(&c, &b);
        let suffix_replies = apply_all(&mut c, &log[cut..], cut as u64 + 1);

        prop_assert_eq!(&replies[..cut], &prefix_replies[..]);
        prop_assert_eq!(&replies[cut..], &suffix_replies[..]);
        prop_assert_eq!(&a, &c);
        prop_assert_eq!(a.snapshot(), c.snapshot());

        // A retry of an applied write always gets the reply of its first application.
        // (Reads ignore their session, so only writes are checked.)
        let mut first_reply: BTreeMap<Session, &Reply> = BTreeMap::new();
        for (entry, applied) in log.iter().zip(&replies) {
            let Ok(request) = decode_request(&entry.data) else {
                continue;
            };
            let Some(session) = request.session else {
                continue;
            };
            if request.command.is_read_only() {
                continue;
            }
            let rejected = matches!(
                applied.reply,
                Reply::Error(CommandError::SessionExpired | CommandError::StaleSequence { .. })
            );
            if applied.duplicate {
                prop_assert_eq!(Some(&&applied.reply), first_reply.get(&session));
            } else if !rejected {
                let fresh = first_reply.insert(session, &applied.reply).is_none();
                prop_assert!(fresh, "{:?} applied twice", session);
            }
        }

        // Every token is in its key exactly as often as its append took effect: at most once.
        let mut effects: BTreeMap<&[u8], usize> = BTreeMap::new();
        for (entry, applied) in log.iter().zip(&replies) {
            if let Some((_, token)) = &entry.token {
                let took_effect = !applied.duplicate && matches!(applied.reply, Reply::Integer(_));
                *effects.entry(token.as_slice()).or_default() += usize::from(took_effect);
            }
        }
        for entry in &log {
            let Some((key, token)) = &entry.token else { continue };
            let count = effects[token.as_slice()];
            prop_assert!(count <= 1, "token {:?} applied {} times", String::from_utf8_lossy(token), count);
            let value = a.get(key).unwrap_or_default();
            prop_assert_eq!(occurrences(value, token), count);
        }
    }
}
