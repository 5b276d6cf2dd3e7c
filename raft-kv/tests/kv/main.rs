//! Tests of the key-value state machine, one module per concern. A single test binary keeps
//! link time down.

mod commands;
mod encoding;
mod prop;
mod sessions;
mod snapshots;

use raft_kv::{Applied, ClientId, Command, KvStore, Limits, Reply, Request, Session};

/// A store fed by a pretend Raft log: entries get consecutive indices, and every request carries
/// the harness's current time as its leader timestamp.
pub struct Harness {
    pub store: KvStore,
    pub next_index: u64,
    pub time_ms: u64,
}

impl Default for Harness {
    fn default() -> Self {
        Self::with_limits(Limits::default())
    }
}

impl Harness {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_limits(limits: Limits) -> Self {
        Harness { store: KvStore::new(limits), next_index: 1, time_ms: 0 }
    }

    /// Commits and applies raw entry data at the next index.
    pub fn apply_raw(&mut self, data: &[u8]) -> Applied {
        let index = self.next_index;
        self.next_index += 1;
        let applied = self.store.apply(index, data);
        assert_eq!(self.store.applied_index(), index);
        self.store.check_invariants();
        applied
    }

    pub fn apply(&mut self, session: Option<Session>, command: Command) -> Applied {
        let request = Request { session, time_ms: self.time_ms, command };
        self.apply_raw(&raft_kv::encode_request(&request))
    }

    /// Applies a write without a session and returns its reply.
    pub fn write(&mut self, command: Command) -> Reply {
        self.apply(None, command).reply
    }

    /// Applies a write in `client`'s session with sequence number `seq`.
    pub fn write_as(&mut self, client: ClientId, seq: u64, command: Command) -> Applied {
        self.apply(Some(Session { client, seq }), command)
    }

    pub fn register(&mut self) -> ClientId {
        match self.apply(None, Command::RegisterSession).reply {
            Reply::Registered { client } => client,
            other => panic!("registration failed: {other:?}"),
        }
    }

    pub fn advance(&mut self, ms: u64) {
        self.time_ms += ms;
    }
}

pub fn put(key: &str, value: &str) -> Command {
    Command::Put { key: key.into(), value: value.into() }
}

pub fn get(key: &str) -> Command {
    Command::Get { key: key.into() }
}

pub fn append(key: &str, value: &str) -> Command {
    Command::Append { key: key.into(), value: value.into() }
}

pub fn incr(key: &str, delta: i64) -> Command {
    Command::Increment { key: key.into(), delta }
}

pub fn value(value: &str) -> Reply {
    Reply::Value(Some(value.into()))
}
