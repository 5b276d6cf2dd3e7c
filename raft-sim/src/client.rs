//! Simulated clients: each registers a session, then runs a key-value workload over a small key
//! space, one operation at a time, with timeouts, retries to other servers and redirects to the
//! leader. A retried write keeps its session sequence number, so it applies exactly once. Every
//! operation's invocation and completion go into the history the linearizability checker reads.

use raft_core::NodeId;
use raft_kv::ClientId;
use rand_chacha::ChaCha8Rng;
use rand_core::Rng;

use crate::linearizability::{Completion, History, KvInput, KvOutput, Operation};
use crate::net::chance;
use crate::options::Options;

/// What a client asks a server.
#[derive(Clone, Debug)]
pub(crate) enum RequestOp {
    /// Open a session.
    Register,
    /// A write (or a read through the log, `session` None).
    Command { session: Option<raft_kv::Session>, key: Vec<u8>, input: KvInput },
    /// A read by ReadIndex.
    Read { key: Vec<u8> },
}

/// A client request on the wire.
#[derive(Clone, Debug)]
pub(crate) struct ClientRequest {
    pub(crate) client: usize,
    pub(crate) attempt: u64,
    pub(crate) op: RequestOp,
}

/// A server's answer.
#[derive(Clone, Debug)]
pub(crate) enum ClientReply {
    Registered(ClientId),
    Done(KvOutput),
    /// Not the leader: try the hinted one.
    NotLeader(Option<NodeId>),
    /// Failed without effect (e.g. dropped): retry.
    Retry,
    /// The session is gone: the operation's outcome is unknown; register again.
    SessionExpired,
}

/// The operation a client is working on.
#[derive(Clone, Debug)]
pub(crate) struct Pending {
    pub(crate) op: RequestOp,
    pub(crate) invoked_us: u64,
    /// Whether it is recorded in the history (registrations are not).
    pub(crate) recorded: bool,
    pub(crate) attempts: u64,
}

#[derive(Debug)]
pub(crate) struct Client {
    pub(crate) idx: usize,
    pub(crate) session: Option<ClientId>,
    seq: u64,
    next_value: u64,
    pub(crate) pending: Option<Pending>,
    /// Current attempt number; replies and timeouts of older attempts are ignored.
    pub(crate) attempt: u64,
    pub(crate) target: NodeId,
    pub(crate) leader_hint: Option<NodeId>,
    /// The client still has its final operation (the liveness phase) to run.
    pub(crate) final_op_due: bool,
    pub(crate) completed: u64,
}

impl Client {
    pub(crate) fn new(idx: usize, servers: u64) -> Client {
        Client {
            idx,
            session: None,
            seq: 0,
            next_value: 0,
            pending: None,
            attempt: 0,
            target: NodeId(1 + idx as u64 % servers),
            leader_hint: None,
            final_op_due: true,
            completed: 0,
        }
    }

    /// Chooses the next operation: register first, then the workload.
    pub(crate) fn next_op(&mut self, rng: &mut ChaCha8Rng, o: &Options, now_us: u64) -> Pending {
        let Some(client) = self.session else {
            return Pending { op: RequestOp::Register, invoked_us: now_us, recorded: false, attempts: 0 };
        };
        let key = format!("k{}", rng.next_u64() % o.keys).into_bytes();
        let op = if chance(rng, o.read_ppm) {
            if chance(rng, o.log_read_ppm) {
                RequestOp::Command { session: None, key, input: KvInput::Get }
            } else {
                RequestOp::Read { key }
            }
        } else {
            self.seq += 1;
            self.next_value += 1;
            let value = format!("c{}.{}", self.idx, self.next_value).into_bytes();
            let input = match rng.next_u64() % 10 {
                0..=3 => KvInput::Put(value),
                4..=6 => KvInput::Append(value),
                7..=8 => {
                    // Expect either nothing or a value some client may have written.
                    let expected = (rng.next_u64() % 3 != 0)
                        .then(|| format!("c{}.{}", rng.next_u64() % o.clients, 1 + rng.next_u64() % 4).into_bytes());
                    KvInput::Cas { expected, new: value }
                }
                _ => KvInput::Delete,
            };
            RequestOp::Command { session: Some(raft_kv::Session { client, seq: self.seq }), key, input }
        };
        Pending { op, invoked_us: now_us, recorded: true, attempts: 0 }
    }

    /// Where to send the next attempt: the hinted leader, else the next server.
    pub(crate) fn pick_target(&mut self, rng: &mut ChaCha8Rng, servers: u64) {
        self.target = match self.leader_hint.take() {
            Some(l) => l,
            None => NodeId(1 + rng.next_u64() % servers),
        };
    }

    /// Records a finished operation in the history.
    pub(crate) fn record(&self, history: &mut History, p: &Pending, completion: Completion) {
        if !p.recorded {
            return;
        }
        let (key, input) = match &p.op {
            RequestOp::Command { key, input, .. } => (key.clone(), input.clone()),
            RequestOp::Read { key } => (key.clone(), KvInput::Get),
            RequestOp::Register => return,
        };
        // Reads that got no answer had no effect: leave them out.
        if matches!(completion, Completion::Unknown) && input == KvInput::Get {
            return;
        }
        history.push(Operation { client: self.idx as u64, key, input, call: p.invoked_us, completion });
    }
}
