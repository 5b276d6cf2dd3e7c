//! One simulated run: servers (a raft-core node, a raft-kv store, a disk), a network, clients,
//! and the event loop that drives them in virtual time.
//!
//! A run has two phases. In the **fault phase** the schedule's faults fire while message faults
//! (loss, duplication, long delays) and clients run. At its end everything heals: crashed servers
//! restart, links come back, message faults stop, disks are fast again. In the **liveness
//! phase** every client runs one last operation; all must complete within `liveness_ms`. Safety
//! checkers run after every event; linearizability is checked at the end.

use std::collections::BTreeMap;

use bytes::Bytes;
use raft_core::{
    Bootstrap, ChangeStep, CompactionPolicy, Config, EntryId, EntryKind, LogIndex, Message, Node, NodeId, Proposed, Ready, RoleKind,
    Snapshot, SnapshotData, Term,
};
use raft_kv::{Command, KvStore, Limits, Reply};
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

use crate::check::{Checker, Violation};
use crate::client::{Client, ClientReply, ClientRequest, Pending, RequestOp};
use crate::disk::{Disk, Held};
use crate::event::{Event, EventQueue};
use crate::faults::{Fault, Schedule};
use crate::linearizability::{self, Completion, History, KvInput, KvOutput};
use crate::net::{between, chance, Fate, SimNetwork};
use crate::options::Options;
use crate::trace::Trace;

/// Counts reported at the end of a run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Events processed.
    pub events: u64,
    /// Virtual time at the end, microseconds.
    pub virtual_us: u64,
    /// Leaders elected.
    pub elections: u64,
    /// Highest commit index reached.
    pub commit_index: u64,
    /// Faults injected, by kind.
    pub faults: BTreeMap<&'static str, u64>,
    /// Messages sent between servers.
    pub messages_sent: u64,
    /// Messages lost (loss rate, cut links, crashed recipients).
    pub messages_lost: u64,
    /// Messages duplicated.
    pub messages_duplicated: u64,
    /// fsyncs completed.
    pub fsyncs: u64,
    /// Records lost in crashes (not yet durable).
    pub records_lost: u64,
    /// Snapshots taken by servers.
    pub snapshots_taken: u64,
    /// Snapshots installed from a leader.
    pub snapshots_installed: u64,
    /// Client operations that completed.
    pub ops_completed: u64,
    /// Client operations abandoned with an unknown outcome.
    pub ops_unknown: u64,
    /// Client operations recorded in the history.
    pub history_len: u64,
}

/// Someone waiting at a server for an outcome.
#[derive(Clone, Debug)]
struct Waiter {
    client: usize,
    attempt: u64,
    term: Term,
    key: Vec<u8>,
    input: Option<KvInput>,
}

struct Server {
    id: NodeId,
    node: Option<Node>,
    incarnation: u64,
    disk: Disk,
    kv: KvStore,
    config: Config,
    tick_us: u64,
    /// Proposals made here, by index.
    by_index: BTreeMap<LogIndex, Waiter>,
    /// Writes forwarded to the leader, by session.
    by_session: BTreeMap<(u64, u64), Waiter>,
    /// Reads waiting for their ReadIndex, by context.
    reads: BTreeMap<u64, Waiter>,
    /// Reads confirmed, waiting for the state machine to reach their index.
    reads_ready: Vec<(LogIndex, Waiter)>,
    next_ctx: u64,
}

/// Whether the run is still injecting faults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Faults,
    Liveness,
}

fn kv_limits() -> Limits {
    // Sessions must outlive any run: a client's session never expires under it.
    Limits { session_ttl_ms: 24 * 3_600_000, ..Limits::default() }
}

pub(crate) struct World<'a> {
    o: &'a Options,
    schedule: &'a Schedule,
    now: u64,
    queue: EventQueue,
    rng: ChaCha8Rng,
    servers: Vec<Option<Server>>,
    ids: Vec<NodeId>,
    net: SimNetwork,
    clients: Vec<Client>,
    pub(crate) history: History,
    pub(crate) checker: Checker,
    pub(crate) trace: Trace,
    pub(crate) stats: Stats,
    phase: Phase,
    liveness_deadline: u64,
    finish_at: Option<u64>,
}

type Step = Result<(), Violation>;

impl<'a> World<'a> {
    pub(crate) fn new(seed: u64, o: &'a Options, schedule: &'a Schedule, keep_trace: bool) -> World<'a> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(2);
        let total = o.nodes + o.spares;
        let ids: Vec<NodeId> = (1..=total).map(NodeId).collect();
        let voters: Vec<NodeId> = (1..=o.nodes).map(NodeId).collect();
        let mut servers = Vec::new();
        for &id in &ids {
            let mut config = Config::new(id);
            config.seed = seed;
            config.election_ticks = o.election_ticks;
            config.heartbeat_ticks = o.heartbeat_ticks;
            config.pre_vote = o.pre_vote;
            config.check_quorum = o.check_quorum;
            config.max_bytes_per_msg = o.max_bytes_per_msg;
            config.max_inflight_msgs = o.max_inflight_msgs;
            config.forward_proposals = o.forward_writes;
            config.compaction = CompactionPolicy { max_entries: o.compaction_entries, max_bytes: None, retain_entries: o.retain_entries };
            let bootstrap = if id.0 <= o.nodes { Bootstrap::NewCluster { voters: voters.clone() } } else { Bootstrap::Join };
            let node = Node::new(config.clone(), bootstrap).expect("options produce a valid config");
            // Clock drift: each node's tick length differs by up to drift_pct.
            let drift = between(&mut rng, 0, 2 * o.drift_pct) as i64 - o.drift_pct as i64;
            let tick_us = ((o.tick_ms * 1000) as i64 * (100 + drift) / 100) as u64;
            servers.push(Some(Server {
                id,
                node: Some(node),
                incarnation: 0,
                disk: Disk::default(),
                kv: KvStore::new(kv_limits()),
                config,
                tick_us,
                by_index: BTreeMap::new(),
                by_session: BTreeMap::new(),
                reads: BTreeMap::new(),
                reads_ready: Vec::new(),
                next_ctx: 0,
            }));
        }
        let clients = (0..o.clients as usize).map(|c| Client::new(c, total)).collect();
        let mut w = World {
            o,
            schedule,
            now: 0,
            queue: EventQueue::default(),
            rng,
            servers,
            ids,
            net: SimNetwork::default(),
            clients,
            history: History::new(),
            checker: Checker::default(),
            trace: Trace::new(keep_trace),
            stats: Stats::default(),
            phase: Phase::Faults,
            liveness_deadline: u64::MAX,
            finish_at: None,
        };
        w.bootstrap_durably();
        for i in 0..w.ids.len() {
            let id = w.ids[i];
            let tick = w.server(id).tick_us;
            let first = between(&mut w.rng, 1, tick);
            w.queue.push(first, Event::Tick(id));
        }
        for c in 0..w.clients.len() {
            let at = between(&mut w.rng, 0, 10_000);
            w.queue.push(at, Event::ClientWake { client: c });
        }
        for (i, f) in schedule.faults.iter().enumerate() {
            w.queue.push(f.at_ms * 1000, Event::Fault(i));
        }
        w.queue.push(o.duration_ms * 1000, Event::EndOfFaults);
        w
    }

    /// The initial members' first Ready (their bootstrap entry) is on disk before time 0.
    fn bootstrap_durably(&mut self) {
        for s in self.servers.iter_mut().flatten() {
            let node = s.node.as_mut().expect("all up");
            while node.has_ready() {
                let rd = node.ready();
                s.disk.write(&rd);
                if let Some(upto) = s.disk.start_sync() {
                    s.disk.sync_done(upto);
                }
                for e in &rd.committed_entries {
                    s.kv.apply(e.index.0, &[]);
                }
                node.on_persisted(rd.number);
            }
        }
    }

    fn server(&self, id: NodeId) -> &Server {
        self.servers[(id.0 - 1) as usize].as_ref().expect("server present")
    }

    fn take(&mut self, id: NodeId) -> Server {
        self.servers[(id.0 - 1) as usize].take().expect("server present")
    }

    fn put(&mut self, s: Server) {
        let i = (s.id.0 - 1) as usize;
        self.servers[i] = Some(s);
    }

    fn leader(&self) -> Option<NodeId> {
        self.servers
            .iter()
            .flatten()
            .filter_map(|s| s.node.as_ref().filter(|n| n.is_leader()).map(|n| (n.term(), s.id)))
            .max()
            .map(|(_, id)| id)
    }

    /// Runs to the end. `Err` is the first violation.
    pub(crate) fn run(&mut self) -> Step {
        let hard_stop = (self.o.duration_ms + self.o.liveness_ms + 60_000) * 1000;
        // A run has a budget of events as well as of virtual time: a message storm must end the
        // run with a report, not hang the tool.
        let max_events = 50 * (self.o.duration_ms + self.o.liveness_ms) + 200_000;
        while let Some((at, event)) = self.queue.pop() {
            self.now = at;
            self.stats.events += 1;
            self.stats.virtual_us = at;
            // The run ends once followers had time to catch up *and* there is a leader: without
            // PreVote, a server rejoining with a higher term may depose the leader just then,
            // and the election that follows must be given its chance (within the liveness
            // deadline) rather than be judged at one arbitrary instant.
            if self.finish_at.is_some_and(|f| at >= f) && self.leader().is_some() {
                break;
            }
            if self.phase == Phase::Liveness && at > self.liveness_deadline {
                return self.liveness_failure();
            }
            assert!(at < hard_stop, "the run passed its hard time limit");
            if self.stats.events > max_events {
                return Err(Violation {
                    property: "event budget",
                    nodes: vec![],
                    detail: format!(
                        "more than {max_events} events by {:.3}s of virtual time: a message storm or live-lock",
                        at as f64 / 1e6
                    ),
                    at_us: at,
                });
            }
            self.trace.hash.write_u64(at);
            self.handle(event)?;
            self.check_durable_promises()?;
            if self.phase == Phase::Liveness && !self.o.pre_vote && !self.o.check_quorum {
                self.decommission_removed();
            }
            if self.phase == Phase::Liveness && self.finish_at.is_none() && self.all_clients_done() {
                // Let followers catch up before the final checks.
                self.finish_at = Some(self.now + 3 * u64::from(self.o.election_ticks) * self.o.tick_ms * 1000);
            }
        }
        self.stats.virtual_us = self.now;
        self.stats.elections = self.checker.elections;
        self.stats.history_len = self.history.len() as u64;
        self.final_checks()
    }

    /// A leader's term is durable, and what a leader counts as replicated on a peer that is still
    /// in its term is durable on that peer.
    fn check_durable_promises(&self) -> Step {
        for s in self.servers.iter().flatten() {
            let Some(leader) = s.node.as_ref().filter(|n| n.is_leader()) else { continue };
            let durable_term = s.disk.durable.hard_state.term;
            if durable_term != leader.term() {
                return Err(Violation {
                    property: "a leader's term is durable",
                    nodes: vec![s.id],
                    detail: format!("node {} leads term {} but its durable term is {durable_term}", s.id, leader.term()),
                    at_us: self.now,
                });
            }
            for p in leader.progress() {
                if p.id == s.id || p.match_index.0 == 0 {
                    continue;
                }
                let Some(peer) = self.servers.get((p.id.0 - 1) as usize).and_then(Option::as_ref) else { continue };
                let peer_term = peer.node.as_ref().map_or(peer.disk.durable.hard_state.term, Node::term);
                if peer_term != leader.term() {
                    continue; // the peer moved on: this leader's view of it is stale
                }
                let Some(want) = leader.term_at(p.match_index) else { continue };
                let held = peer.disk.durable_at(p.match_index);
                if held != Held::Entry(want) && held != Held::InSnapshot {
                    return Err(Violation {
                        property: "acknowledged entries are durable",
                        nodes: vec![s.id, p.id],
                        detail: format!(
                            "leader {} counts entry {}@t{want} as replicated on node {}, whose disk holds {held:?} there",
                            s.id, p.match_index, p.id
                        ),
                        at_us: self.now,
                    });
                }
            }
        }
        Ok(())
    }

    fn all_clients_done(&self) -> bool {
        self.clients.iter().all(|c| !c.final_op_due && c.pending.is_none())
    }

    fn liveness_failure(&self) -> Step {
        let pending: Vec<String> =
            self.clients.iter().filter(|c| c.pending.is_some() || c.final_op_due).map(|c| format!("client {}", c.idx)).collect();
        let leader = self.leader();
        if pending.is_empty() {
            return Err(Violation {
                property: "liveness",
                nodes: vec![],
                detail: format!("{} ms after every fault healed, no server leads", self.o.liveness_ms),
                at_us: self.now,
            });
        }
        Err(Violation {
            property: "liveness",
            nodes: leader.into_iter().collect(),
            detail: format!(
                "{} ms after every fault healed, {} still had operations pending ({}); leader: {:?}",
                self.o.liveness_ms,
                pending.len(),
                pending.join(", "),
                leader
            ),
            at_us: self.now,
        })
    }

    fn final_checks(&mut self) -> Step {
        let Some(leader) = self.leader() else {
            return Err(Violation {
                property: "liveness",
                nodes: vec![],
                detail: "no leader at the end of the run".into(),
                at_us: self.now,
            });
        };
        let node = self.server(leader).node.as_ref().expect("leader is up");
        let members: Vec<NodeId> = node.membership().members().collect();
        let nodes: Vec<&Node> = members.iter().filter_map(|&m| self.server(m).node.as_ref()).collect();
        self.checker.check_acknowledged(node, &nodes, self.now)
    }

    // ---------------------------------------------------------------------------------------
    // Events
    // ---------------------------------------------------------------------------------------

    fn handle(&mut self, event: Event) -> Step {
        match event {
            Event::Tick(id) => {
                self.trace.hash.write_u64(1);
                self.trace.hash.write_u64(id.0);
                let tick = self.server(id).tick_us;
                self.queue.push(self.now + tick, Event::Tick(id));
                let mut s = self.take(id);
                if let Some(node) = s.node.as_mut() {
                    node.tick();
                }
                let r = self.drive(&mut s);
                self.put(s);
                r
            }
            Event::Deliver(m) => {
                self.trace.hash.write_u64(2);
                self.trace.hash.write_u64(m.from.0 << 32 | m.to.0);
                self.trace.hash.write_u64(m.term.0);
                self.trace.hash.write_bytes(m.body.name().as_bytes());
                self.deliver(m)
            }
            Event::Request { to, req } => {
                self.trace.hash.write_u64(3);
                self.trace.hash.write_u64(to.0 << 32 | req.client as u64);
                let mut s = self.take(to);
                let reply = self.handle_request(&mut s, &req);
                let r = self.drive(&mut s);
                self.put(s);
                if let Some(reply) = reply {
                    self.reply(req.client, req.attempt, reply);
                }
                r
            }
            Event::Reply { client, attempt, reply } => {
                self.trace.hash.write_u64(4);
                self.trace.hash.write_u64(client as u64);
                self.on_reply(client, attempt, reply);
                Ok(())
            }
            Event::SyncDone { node, incarnation, upto } => {
                self.trace.hash.write_u64(5);
                self.trace.hash.write_u64(node.0);
                self.sync_done(node, incarnation, upto)
            }
            Event::ClientWake { client } => {
                self.trace.hash.write_u64(6);
                self.trace.hash.write_u64(client as u64);
                self.client_wake(client);
                Ok(())
            }
            Event::ClientTimeout { client, attempt } => {
                self.trace.hash.write_u64(7);
                self.trace.hash.write_u64(client as u64);
                self.client_timeout(client, attempt);
                Ok(())
            }
            Event::ClientRetry { client, attempt } => {
                self.trace.hash.write_u64(10);
                self.trace.hash.write_u64(client as u64);
                self.client_retry(client, attempt);
                Ok(())
            }
            Event::Fault(i) => {
                self.trace.hash.write_u64(8);
                self.trace.hash.write_u64(i as u64);
                let f = self.schedule.faults[i].clone();
                self.trace.line(self.now, || format!("FAULT {f}"));
                self.fault(f.fault)
            }
            Event::EndOfFaults => {
                self.trace.hash.write_u64(9);
                self.trace.line(self.now, || "END OF FAULTS: heal everything, restart crashed servers; liveness phase".into());
                self.end_of_faults()
            }
        }
    }

    fn deliver(&mut self, m: Message) -> Step {
        if self.net.is_cut(m.from, m.to) {
            self.stats.messages_lost += 1;
            return Ok(());
        }
        let to = m.to;
        let mut s = self.take(to);
        let result = match s.node.as_mut() {
            None => {
                self.stats.messages_lost += 1;
                Ok(())
            }
            Some(node) => {
                if self.trace.enabled() {
                    let text = format!("{} -> {} t{} {:?}", m.from, m.to, m.term, m.body);
                    self.trace.line(self.now, || text);
                }
                let from = m.from;
                match node.step(m) {
                    Ok(()) => self.drive(&mut s),
                    Err(e) => Err(Violation {
                        property: "protocol",
                        nodes: vec![from, to],
                        detail: format!("node {to} refused a message from {from}: {e}"),
                        at_us: self.now,
                    }),
                }
            }
        };
        self.put(s);
        result
    }

    fn send(&mut self, m: Message) {
        self.stats.messages_sent += 1;
        match self.net.fate(&mut self.rng, self.o, m.from, m.to) {
            Fate::Lost => self.stats.messages_lost += 1,
            Fate::Delivered(delays) => {
                if delays.len() > 1 {
                    self.stats.messages_duplicated += 1;
                }
                for d in delays {
                    self.queue.push(self.now + d, Event::Deliver(m.clone()));
                }
            }
        }
    }

    // ---------------------------------------------------------------------------------------
    // The driver of one server: what raft-net does with real sockets and disks
    // ---------------------------------------------------------------------------------------

    fn drive(&mut self, s: &mut Server) -> Step {
        let mut guard = 0;
        loop {
            let Some(node) = s.node.as_mut() else { return Ok(()) };
            if !node.has_ready() {
                break;
            }
            guard += 1;
            assert!(guard < 10_000, "node {} keeps producing Readies", s.id);
            let rd = node.ready();
            if let Some(role) = rd.role {
                let id = s.id;
                self.trace.line(self.now, || format!("node {id} is {:?} of term {} (leader {:?})", role.role, role.term, role.leader));
                if role.role == RoleKind::Leader {
                    self.checker.on_leader(node, self.now)?;
                }
            }
            if !rd.entries.is_empty() {
                self.checker.on_entries(node, &rd.entries, self.now)?;
            }
            if let Some(snap) = &rd.snapshot {
                s.kv = KvStore::restore(&snap.data, kv_limits()).map_err(|e| Violation {
                    property: "snapshot",
                    nodes: vec![s.id],
                    detail: format!("node {} could not restore a snapshot it received: {e}", s.id),
                    at_us: self.now,
                })?;
                self.stats.snapshots_installed += 1;
                // Proposals covered by the snapshot: their outcome is in the session table; the
                // clients retry and get the stored reply.
                let covered: Vec<LogIndex> = s.by_index.range(..=snap.meta.last.index).map(|(i, _)| *i).collect();
                for i in covered {
                    let w = s.by_index.remove(&i).expect("listed");
                    Self::queue_reply(&mut self.queue, &mut self.rng, self.o, self.now, w.client, w.attempt, ClientReply::Retry);
                }
            }
            // Persist. A Ready that needs no sync (a commit-only hard state) is written and
            // becomes durable with the next fsync; only a finished fsync acknowledges anything.
            if rd.has_persistence() {
                s.disk.write(&rd);
                if rd.must_sync {
                    Self::maybe_start_sync(&mut self.queue, &mut self.rng, self.o, self.now, s);
                }
            }
            for m in rd.messages.iter().cloned() {
                self.send(m);
            }
            self.apply(s, &rd)?;
            if rd.snapshot_due {
                let data = Bytes::from(s.kv.snapshot());
                let index = LogIndex(s.kv.applied_index());
                let node = s.node.as_mut().expect("still up");
                if let Ok(meta) = node.compact(SnapshotData { index, data: data.clone() }) {
                    s.disk.save_snapshot(Snapshot { meta, data });
                    self.stats.snapshots_taken += 1;
                }
            }
        }
        let node = s.node.as_ref().expect("still up");
        self.stats.commit_index = self.stats.commit_index.max(node.commit_index().0);
        self.checker.after_event(node, self.now)
    }

    fn maybe_start_sync(queue: &mut EventQueue, rng: &mut ChaCha8Rng, o: &Options, now: u64, s: &mut Server) {
        if let Some(upto) = s.disk.start_sync() {
            let mut d = between(rng, o.fsync_min_us, o.fsync_max_us);
            if s.disk.slow {
                d *= 10;
            }
            queue.push(now + d, Event::SyncDone { node: s.id, incarnation: s.incarnation, upto });
        }
    }

    fn sync_done(&mut self, id: NodeId, incarnation: u64, upto: u64) -> Step {
        let mut s = self.take(id);
        let result = if s.incarnation != incarnation || s.node.is_none() {
            Ok(()) // the server crashed while syncing: that fsync never finished
        } else {
            let last = s.disk.sync_done(upto);
            self.stats.fsyncs += 1;
            let r = self.checker.on_durable_term(id, s.disk.durable.hard_state.term, self.now);
            if let (Ok(()), Some(n)) = (&r, last) {
                s.node.as_mut().expect("up").on_persisted(n);
            }
            Self::maybe_start_sync(&mut self.queue, &mut self.rng, self.o, self.now, &mut s);
            r.and_then(|()| self.drive(&mut s))
        };
        self.put(s);
        result
    }

    /// Applies committed entries, answers waiting clients, serves reads and fails dropped
    /// proposals.
    fn apply(&mut self, s: &mut Server, rd: &Ready) -> Step {
        let term = s.node.as_ref().map_or(Term(0), Node::term);
        for e in &rd.committed_entries {
            self.checker.on_apply(s.id, term, e, self.now)?;
            let data: &[u8] = if e.kind == EntryKind::Normal { &e.data } else { &[] };
            let applied = s.kv.apply(e.index.0, data);
            if let Some(w) = s.by_index.remove(&e.index) {
                let reply = if w.term == e.term && e.kind == EntryKind::Normal {
                    self.client_reply(&w, &applied.reply, e.id())
                } else {
                    ClientReply::Retry
                };
                Self::queue_reply(&mut self.queue, &mut self.rng, self.o, self.now, w.client, w.attempt, reply);
            }
            if let Some(session) = applied.session {
                if let Some(w) = s.by_session.remove(&(session.client, session.seq)) {
                    let reply = self.client_reply(&w, &applied.reply, e.id());
                    Self::queue_reply(&mut self.queue, &mut self.rng, self.o, self.now, w.client, w.attempt, reply);
                }
            }
        }
        for rs in &rd.read_states {
            if let Some(w) = s.reads.remove(&rs.ctx) {
                s.reads_ready.push((rs.index, w));
            }
        }
        let applied = LogIndex(s.kv.applied_index());
        let (ready, waiting): (Vec<_>, Vec<_>) = s.reads_ready.drain(..).partition(|(i, _)| *i <= applied);
        s.reads_ready = waiting;
        for (_, w) in ready {
            let value = match s.kv.query(&Command::Get { key: w.key.clone() }) {
                Reply::Value(v) => v,
                other => unreachable!("a Get answers a value, not {other:?}"),
            };
            Self::queue_reply(
                &mut self.queue,
                &mut self.rng,
                self.o,
                self.now,
                w.client,
                w.attempt,
                ClientReply::Done(KvOutput::Value(value)),
            );
        }
        for d in &rd.dropped {
            let lost: Vec<LogIndex> = s.by_index.range(d.first..=d.last).filter(|(_, w)| w.term == d.term).map(|(i, _)| *i).collect();
            for i in lost {
                let w = s.by_index.remove(&i).expect("listed");
                Self::queue_reply(&mut self.queue, &mut self.rng, self.o, self.now, w.client, w.attempt, ClientReply::Retry);
            }
        }
        Ok(())
    }

    /// Maps the state machine's reply to what the client is told.
    fn client_reply(&mut self, w: &Waiter, reply: &Reply, entry: EntryId) -> ClientReply {
        let output = match (reply, &w.input) {
            (Reply::Registered { client }, _) => return ClientReply::Registered(*client),
            (Reply::Error(raft_kv::CommandError::SessionExpired), _) => return ClientReply::SessionExpired,
            // An abandoned write applied after the client moved on: nobody waits for this
            // answer any more (the attempt is stale), and a retry would get the same.
            (Reply::Error(raft_kv::CommandError::StaleSequence { .. }), _) => return ClientReply::Retry,
            (Reply::Ok, _) | (Reply::Deleted { .. }, _) => KvOutput::Ok,
            (Reply::Value(v), _) => KvOutput::Value(v.clone()),
            (Reply::Integer(n), _) => KvOutput::Len(*n as u64),
            (Reply::CasResult { swapped, .. }, _) => KvOutput::Cas { swapped: *swapped },
            (other, input) => unreachable!("unexpected reply {other:?} to {input:?}"),
        };
        if w.input.as_ref().is_some_and(|i| *i != KvInput::Get) {
            self.checker.on_acknowledged(entry);
        }
        ClientReply::Done(output)
    }

    fn queue_reply(queue: &mut EventQueue, rng: &mut ChaCha8Rng, o: &Options, now: u64, client: usize, attempt: u64, reply: ClientReply) {
        let d = between(rng, o.latency_min_us, o.latency_max_us);
        queue.push(now + d, Event::Reply { client, attempt, reply });
    }

    fn reply(&mut self, client: usize, attempt: u64, reply: ClientReply) {
        Self::queue_reply(&mut self.queue, &mut self.rng, self.o, self.now, client, attempt, reply);
    }

    // ---------------------------------------------------------------------------------------
    // Client requests at a server
    // ---------------------------------------------------------------------------------------

    fn handle_request(&mut self, s: &mut Server, req: &ClientRequest) -> Option<ClientReply> {
        let now_ms = self.now / 1000;
        let node = s.node.as_mut()?; // a crashed server does not answer
        let waiter =
            |key: Vec<u8>, input: Option<KvInput>, term: Term| Waiter { client: req.client, attempt: req.attempt, term, key, input };
        match &req.op {
            RequestOp::Register | RequestOp::Command { session: None, .. } if !node.is_leader() => {
                Some(ClientReply::NotLeader(node.leader()))
            }
            RequestOp::Register => {
                let data = raft_kv::encode_request(&raft_kv::Request { session: None, time_ms: now_ms, command: Command::RegisterSession });
                match node.propose(data) {
                    Ok(Proposed::Appended(id)) => {
                        s.by_index.insert(id.index, waiter(Vec::new(), None, id.term));
                        None
                    }
                    _ => Some(ClientReply::Retry),
                }
            }
            RequestOp::Command { session, key, input } => {
                let command = match input {
                    KvInput::Get => Command::Get { key: key.clone() },
                    KvInput::Put(v) => Command::Put { key: key.clone(), value: v.clone() },
                    KvInput::Append(v) => Command::Append { key: key.clone(), value: v.clone() },
                    KvInput::Cas { expected, new } => {
                        Command::CompareAndSet { key: key.clone(), expected: expected.clone(), new: Some(new.clone()) }
                    }
                    KvInput::Delete => Command::Delete { key: key.clone() },
                };
                let data = raft_kv::encode_request(&raft_kv::Request { session: *session, time_ms: now_ms, command });
                match node.propose(data) {
                    Ok(Proposed::Appended(id)) => {
                        s.by_index.insert(id.index, waiter(key.clone(), Some(input.clone()), id.term));
                        None
                    }
                    Ok(Proposed::Forwarded { .. }) => {
                        let session = session.expect("only writes with a session are forwarded");
                        s.by_session.insert((session.client, session.seq), waiter(key.clone(), Some(input.clone()), Term(0)));
                        None
                    }
                    Err(raft_core::Error::NotLeader { leader_hint }) => Some(ClientReply::NotLeader(leader_hint)),
                    Err(_) => Some(ClientReply::Retry),
                }
            }
            RequestOp::Read { key } => {
                s.next_ctx += 1;
                match node.read_index(s.next_ctx) {
                    Ok(()) => {
                        s.reads.insert(s.next_ctx, waiter(key.clone(), Some(KvInput::Get), Term(0)));
                        None
                    }
                    Err(raft_core::Error::NotLeader { leader_hint }) => Some(ClientReply::NotLeader(leader_hint)),
                    Err(_) => Some(ClientReply::Retry),
                }
            }
        }
    }

    // ---------------------------------------------------------------------------------------
    // Clients
    // ---------------------------------------------------------------------------------------

    fn client_wake(&mut self, c: usize) {
        let servers = self.ids.len() as u64;
        let client = &mut self.clients[c];
        if client.pending.is_some() {
            return;
        }
        let op = match self.phase {
            Phase::Faults => client.next_op(&mut self.rng, self.o, self.now),
            Phase::Liveness if client.final_op_due => {
                let op = client.next_op(&mut self.rng, self.o, self.now);
                if !matches!(op.op, RequestOp::Register) {
                    client.final_op_due = false;
                }
                op
            }
            Phase::Liveness => return,
        };
        client.pending = Some(op);
        client.pick_target(&mut self.rng, servers);
        self.send_attempt(c);
    }

    fn send_attempt(&mut self, c: usize) {
        let client = &mut self.clients[c];
        let pending = client.pending.as_mut().expect("an operation to send");
        pending.attempts += 1;
        client.attempt += 1;
        let req = ClientRequest { client: c, attempt: client.attempt, op: pending.op.clone() };
        let to = client.target;
        let attempt = client.attempt;
        let lost = !self.net.calm && chance(&mut self.rng, self.o.loss_ppm);
        if !lost {
            let d = between(&mut self.rng, self.o.latency_min_us, self.o.latency_max_us);
            self.queue.push(self.now + d, Event::Request { to, req });
        }
        self.queue.push(self.now + self.o.client_timeout_ms * 1000, Event::ClientTimeout { client: c, attempt });
    }

    /// Sends the pending operation again after a pause (a redirect or a refusal). A retry is a
    /// new attempt: the timeout and any late reply of the current one are ignored.
    fn retry(&mut self, c: usize, after_us: u64) {
        self.clients[c].attempt += 1;
        let attempt = self.clients[c].attempt;
        self.queue.push(self.now + after_us, Event::ClientRetry { client: c, attempt });
    }

    fn client_retry(&mut self, c: usize, attempt: u64) {
        if self.clients[c].attempt != attempt || self.clients[c].pending.is_none() {
            return;
        }
        let servers = self.ids.len() as u64;
        self.clients[c].pick_target(&mut self.rng, servers);
        self.send_attempt(c);
    }

    fn finish(&mut self, c: usize, completion: Option<Completion>) {
        let client = &mut self.clients[c];
        let p: Pending = client.pending.take().expect("finishing a pending operation");
        if let Some(completion) = completion {
            match completion {
                Completion::Unknown => self.stats.ops_unknown += 1,
                Completion::Returned { .. } => {
                    self.stats.ops_completed += 1;
                    client.completed += 1;
                }
            }
            client.record(&mut self.history, &p, completion);
        }
        client.attempt += 1;
        let think = between(&mut self.rng, 0, self.o.think_ms * 1000);
        self.queue.push(self.now + think, Event::ClientWake { client: c });
    }

    fn on_reply(&mut self, c: usize, attempt: u64, reply: ClientReply) {
        if self.clients[c].attempt != attempt || self.clients[c].pending.is_none() {
            return; // an answer to an attempt the client gave up on
        }
        match reply {
            ClientReply::Registered(id) => {
                self.clients[c].session = Some(id);
                self.finish(c, None);
            }
            ClientReply::Done(output) => self.finish(c, Some(Completion::Returned { at: self.now, output })),
            ClientReply::NotLeader(hint) => {
                self.clients[c].leader_hint = hint;
                self.retry(c, 1_000);
            }
            ClientReply::Retry => self.retry(c, 5_000),
            ClientReply::SessionExpired => {
                self.clients[c].session = None;
                self.finish(c, Some(Completion::Unknown));
            }
        }
    }

    fn client_timeout(&mut self, c: usize, attempt: u64) {
        let client = &self.clients[c];
        if client.attempt != attempt || client.pending.is_none() {
            return;
        }
        let timed_out = client.pending.as_ref().is_some_and(|p| p.attempts > 0);
        let recorded = client.pending.as_ref().is_some_and(|p| p.recorded);
        if timed_out && recorded && self.phase == Phase::Faults && chance(&mut self.rng, self.o.abandon_ppm) {
            self.finish(c, Some(Completion::Unknown));
            return;
        }
        // The server did not answer: try another one.
        let servers = self.ids.len() as u64;
        self.clients[c].leader_hint = None;
        self.clients[c].pick_target(&mut self.rng, servers);
        self.send_attempt(c);
    }

    // ---------------------------------------------------------------------------------------
    // Faults
    // ---------------------------------------------------------------------------------------

    fn count(&mut self, kind: &'static str) {
        *self.stats.faults.entry(kind).or_default() += 1;
    }

    fn valid(&self, id: NodeId) -> bool {
        id.0 >= 1 && id.0 <= self.ids.len() as u64
    }

    fn fault(&mut self, f: Fault) -> Step {
        let all = self.ids.clone();
        match f {
            Fault::Crash(id) if self.valid(id) => self.crash(id),
            Fault::Restart(id) if self.valid(id) => return self.restart(id),
            Fault::Partition(side) => {
                self.count("partition");
                self.net.partition(&side, &all);
            }
            Fault::Isolate(id) => {
                self.count("isolate");
                self.net.partition(&[id], &all);
            }
            Fault::Bridge { bridge, side } => {
                self.count("bridge");
                self.net.bridge(bridge, &side, &all);
            }
            Fault::Cut { from, to } => {
                self.count("one-way cut");
                self.net.cut_one_way(from, to);
            }
            Fault::Heal => self.net.heal(),
            Fault::CrashSyncing => {
                // A server with an fsync in flight: the moment its unsynced promises matter.
                let syncing: Vec<NodeId> =
                    self.servers.iter().flatten().filter(|s| s.node.is_some() && s.disk.syncing()).map(|s| s.id).collect();
                if !syncing.is_empty() {
                    let pick = syncing[(self.rng.next_u64() % syncing.len() as u64) as usize];
                    self.crash(pick);
                }
            }
            Fault::CrashLeader => {
                if let Some(leader) = self.leader() {
                    self.crash(leader);
                }
            }
            Fault::IsolateLeader => {
                if let Some(leader) = self.leader() {
                    self.count("isolate");
                    self.net.partition(&[leader], &all);
                }
            }
            Fault::RestartAll => {
                for id in all {
                    self.restart(id)?;
                }
            }
            Fault::SlowDisk(id) if self.valid(id) => {
                self.count("slow disk");
                self.servers[(id.0 - 1) as usize].as_mut().expect("present").disk.slow = true;
            }
            Fault::FastDisk(id) if self.valid(id) => self.servers[(id.0 - 1) as usize].as_mut().expect("present").disk.slow = false,
            Fault::AddLearner(id) | Fault::Promote(id) | Fault::Remove(id) | Fault::Transfer(id) if self.valid(id) => {
                let Some(leader) = self.leader() else { return Ok(()) };
                let mut s = self.take(leader);
                let node = s.node.as_mut().expect("leader is up");
                let (kind, result) = match f {
                    Fault::AddLearner(_) => {
                        ("add learner", node.propose_membership(&[ChangeStep::AddLearner(id)], Bytes::new()).map(|_| ()))
                    }
                    Fault::Promote(_) => ("promote", node.propose_membership(&[ChangeStep::PromoteLearner(id)], Bytes::new()).map(|_| ())),
                    Fault::Remove(_) => ("remove", node.propose_membership(&[ChangeStep::Remove(id)], Bytes::new()).map(|_| ())),
                    _ => ("transfer", node.transfer_leadership(id)),
                };
                if result.is_ok() {
                    self.count(kind);
                }
                let id = s.id;
                self.trace.line(self.now, || format!("  leader {id}: {kind} -> {result:?}"));
                let r = self.drive(&mut s);
                self.put(s);
                return r;
            }
            _ => {}
        }
        Ok(())
    }

    fn crash(&mut self, id: NodeId) {
        let torn = self.o.torn_writes;
        let s = self.servers[(id.0 - 1) as usize].as_mut().expect("present");
        if s.node.is_none() {
            return;
        }
        s.node = None;
        s.incarnation += 1;
        let pending = s.disk.pending_records();
        let keep = torn.then(|| (self.rng.next_u64() % (pending as u64 + 1)) as usize);
        let lost = s.disk.crash(keep);
        s.by_index.clear();
        s.by_session.clear();
        s.reads.clear();
        s.reads_ready.clear();
        let durable_term = s.disk.durable.hard_state.term;
        self.stats.records_lost += lost as u64;
        self.checker.on_crash(id);
        self.count("crash");
        self.trace.line(self.now, || format!("  node {id} crashed, {lost} unsynced records lost, durable term {durable_term}"));
    }

    fn restart(&mut self, id: NodeId) -> Step {
        let mut s = self.take(id);
        if s.node.is_some() {
            self.put(s);
            return Ok(());
        }
        let state = s.disk.recover();
        let result = (|| {
            self.checker.on_durable_term(id, state.hard_state.term, self.now)?;
            s.kv = match &state.snapshot {
                Some(snap) => KvStore::restore(&snap.data, kv_limits()).map_err(|e| Violation {
                    property: "snapshot",
                    nodes: vec![id],
                    detail: format!("node {id} could not restore its own durable snapshot: {e}"),
                    at_us: self.now,
                })?,
                None => KvStore::new(kv_limits()),
            };
            let node = Node::restart(s.config.clone(), state).map_err(|e| Violation {
                property: "restart",
                nodes: vec![id],
                detail: format!("node {id} cannot restart from its durable state: {e}"),
                at_us: self.now,
            })?;
            s.node = Some(node);
            self.count("restart");
            self.trace.line(self.now, || format!("  node {id} restarted"));
            self.drive(&mut s)
        })();
        self.put(s);
        result
    }

    fn end_of_faults(&mut self) -> Step {
        self.phase = Phase::Liveness;
        self.liveness_deadline = self.now + self.o.liveness_ms * 1000;
        self.net.heal();
        self.net.calm = true;
        for i in 0..self.ids.len() {
            let id = self.ids[i];
            self.servers[i].as_mut().expect("present").disk.slow = false;
            self.restart(id)?;
        }
        if !self.o.pre_vote && !self.o.check_quorum {
            // Without PreVote and CheckQuorum, a removed server that never learned of its removal
            // keeps forcing elections (as in the thesis, §4.2.3). An operator decommissions
            // removed servers: stop every server outside the most advanced configuration.
            let most_advanced = self.servers.iter().flatten().filter_map(|s| s.node.as_ref()).max_by_key(|n| (n.commit_index(), n.id()));
            if let Some(node) = most_advanced {
                let keep: Vec<NodeId> = node.membership().members().collect();
                for id in self.ids.clone() {
                    if !keep.contains(&id) {
                        self.crash(id);
                    }
                }
            }
        }
        for c in 0..self.clients.len() {
            self.queue.push(self.now, Event::ClientWake { client: c });
        }
        Ok(())
    }

    /// Stops, as an operator would, every server that a leader's committed configuration no
    /// longer lists. Only for runs without PreVote and CheckQuorum, where nothing else stops a
    /// removed server that missed the commit of its removal from forcing elections forever
    /// (thesis §4.2.3): a change that completes during the liveness phase (a joint
    /// configuration left automatically) would otherwise leave one behind.
    fn decommission_removed(&mut self) {
        let Some(leader) = self.leader() else { return };
        let node = self.server(leader).node.as_ref().expect("the leader is up");
        if node.membership_index() > node.commit_index() || node.membership().is_joint() {
            return;
        }
        let removed: Vec<NodeId> =
            self.ids.iter().copied().filter(|&id| !node.membership().contains(id) && self.server(id).node.is_some()).collect();
        for id in removed {
            self.trace.line(self.now, || format!("  node {id} decommissioned: its removal is committed"));
            self.crash(id);
        }
    }

    /// The run's history, checked for linearizability.
    pub(crate) fn check_linearizability(&self, budget: u64) -> linearizability::Outcome {
        linearizability::check(&self.history, budget)
    }
}
