//! The Raft driver: one task owns the [`Node`] and the application state and does what the core's
//! driver contract says, nothing more. Peer frame in: `step`. Timer: `tick`. Then drain Readies:
//! hand the persistence part to the storage thread (which fsyncs, then reports the Ready durable),
//! send messages, apply committed entries, answer clients. No Raft rule lives here.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use raft_core::{ChangeStep, Entry, EntryKind, LogIndex, Node, NodeId, Proposed, Ready, RoleKind, Snapshot, SnapshotData, Term};
use raft_kv::{Command, Session};
use tokio::sync::{mpsc, oneshot};
use tracing::{error, info, warn};

use super::app::{App, Envelope, MemberAddrs};
use super::storage_thread::{StorageEvent, StorageOp, StorageStats, StorageThread};
use crate::wire::{Inbound, TransportHandle};

/// Why a request failed. The connection layer turns these into Redis errors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerError {
    /// No leader is known right now (an election is under way): retry shortly.
    NoLeader,
    /// This request must run on the leader, which lives at this client address.
    Redirect {
        /// The leader's id.
        leader: NodeId,
        /// Its client address, if known.
        addr: Option<String>,
    },
    /// No outcome within the request timeout: a write may or may not take effect.
    Timeout,
    /// The write did not commit (its entry was replaced after a leader change): retry.
    Dropped,
    /// Refused, with the reason (a limit, an invalid membership change...).
    Refused(String),
    /// The server is shutting down or its disk failed.
    Unavailable,
}

/// A kv outcome.
pub type KvResult = Result<raft_kv::Reply, ServerError>;

/// Administrative operations.
#[derive(Debug)]
pub enum AdminOp {
    /// RAFT.INFO.
    Info,
    /// Add a server (as a learner, promoted once caught up). `join` also returns the cluster id
    /// and the address book.
    Add {
        /// Its id.
        id: NodeId,
        /// Its addresses.
        addrs: MemberAddrs,
        /// Answer with what a joining server needs.
        join: bool,
    },
    /// Remove a member.
    Remove(NodeId),
    /// Hand leadership to a voter.
    Transfer(NodeId),
}

/// Administrative answers.
#[derive(Debug, PartialEq, Eq)]
pub enum AdminReply {
    /// RAFT.INFO text.
    Info(String),
    /// Done.
    Ok,
    /// What a joining server needs.
    Joined {
        /// The cluster's id.
        cluster_id: u64,
        /// Every member's addresses.
        members: Vec<(NodeId, MemberAddrs)>,
    },
}

/// What client connections ask the driver.
#[derive(Debug)]
pub enum Request {
    /// A write (through the log). With a session it applies exactly once.
    Write {
        /// The command.
        command: Command,
        /// The client session, for exactly-once retries.
        session: Option<Session>,
        /// Where the outcome goes.
        reply: oneshot::Sender<KvResult>,
    },
    /// A read: linearizable (ReadIndex) unless `stale`.
    Read {
        /// The command (Get or MultiGet).
        command: Command,
        /// Serve from local state without confirming leadership.
        stale: bool,
        /// Where the outcome goes.
        reply: oneshot::Sender<KvResult>,
    },
    /// An administrative operation.
    Admin {
        /// The operation.
        op: AdminOp,
        /// Where the outcome goes.
        reply: oneshot::Sender<Result<AdminReply, ServerError>>,
    },
}

struct PendingWrite {
    reply: oneshot::Sender<KvResult>,
    deadline: Instant,
}

struct PendingRead {
    command: Command,
    reply: oneshot::Sender<KvResult>,
    deadline: Instant,
}

struct PendingAdmin {
    reply: oneshot::Sender<Result<AdminReply, ServerError>>,
    deadline: Instant,
    join: bool,
}

struct PendingTransfer {
    to: NodeId,
    reply: oneshot::Sender<Result<AdminReply, ServerError>>,
    deadline: Instant,
}

/// Settings of the driver.
pub(crate) struct DriverSettings {
    /// Addresses known locally (the data directory's peers file): used to reach peers until the
    /// replicated address book has them.
    pub(crate) initial_peers: BTreeMap<NodeId, MemberAddrs>,
    pub(crate) id: NodeId,
    pub(crate) cluster_id: u64,
    pub(crate) addrs: MemberAddrs,
    pub(crate) tick: Duration,
    pub(crate) request_timeout: Duration,
}

pub(crate) struct Driver {
    node: Node,
    app: App,
    s: DriverSettings,
    transport: TransportHandle,
    storage: StorageThread,
    pub(crate) storage_stats: Arc<StorageStats>,
    next_request_id: u64,
    writes: BTreeMap<u64, PendingWrite>,
    /// Proposals appended here (as leader): index -> (term, request id), to fail dropped ones.
    by_index: BTreeMap<LogIndex, (Term, u64)>,
    admins: BTreeMap<LogIndex, (Term, PendingAdmin)>,
    reads: BTreeMap<u64, PendingRead>,
    reads_ready: Vec<(LogIndex, PendingRead)>,
    transfers: Vec<PendingTransfer>,
    next_read_ctx: u64,
    last_announce: Option<Instant>,
    started: Instant,
    /// Snapshots encoded off the driver come back on this channel; `run` takes the receiver.
    encoded_tx: mpsc::UnboundedSender<EncodedSnapshot>,
    encoded_rx: Option<mpsc::UnboundedReceiver<EncodedSnapshot>>,
    /// Whether a snapshot is being encoded (at most one at a time).
    encoding: bool,
}

/// A snapshot of the state machine at `index`, encoded on a blocking thread.
struct EncodedSnapshot {
    index: LogIndex,
    data: Bytes,
    /// How long the clone took on the driver, and the encoding off it.
    clone_time: Duration,
    encode_time: Duration,
}

impl Driver {
    pub(crate) fn new(
        node: Node,
        app: App,
        s: DriverSettings,
        transport: TransportHandle,
        storage: StorageThread,
        stats: Arc<StorageStats>,
    ) -> Driver {
        let (encoded_tx, encoded_rx) = mpsc::unbounded_channel();
        let d = Driver {
            node,
            app,
            s,
            transport,
            storage,
            storage_stats: stats,
            next_request_id: 0,
            writes: BTreeMap::new(),
            by_index: BTreeMap::new(),
            admins: BTreeMap::new(),
            reads: BTreeMap::new(),
            reads_ready: Vec::new(),
            transfers: Vec::new(),
            next_read_ctx: 0,
            last_announce: None,
            started: Instant::now(),
            encoded_tx,
            encoded_rx: Some(encoded_rx),
            encoding: false,
        };
        d.sync_peers();
        d
    }

    /// The event loop. Returns when asked to shut down or when the disk fails.
    pub(crate) async fn run(
        mut self,
        mut requests: mpsc::Receiver<Request>,
        mut inbound: mpsc::Receiver<Inbound>,
        mut storage_events: mpsc::UnboundedReceiver<StorageEvent>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut encoded = self.encoded_rx.take().expect("run is called once");
        let mut ticker = tokio::time::interval(self.s.tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                ev = storage_events.recv() => match ev {
                    Some(StorageEvent::Persisted(n)) => self.node.on_persisted(n),
                    Some(StorageEvent::Failed(e)) => {
                        error!("the disk failed: {e}; stopping (a node that cannot persist must not answer)");
                        break;
                    }
                    None => break,
                },
                msg = inbound.recv() => match msg {
                    Some(m) => self.on_inbound(m),
                    None => break,
                },
                req = requests.recv() => match req {
                    Some(r) => self.on_request(r),
                    None => break,
                },
                Some(snapshot) = encoded.recv() => self.on_snapshot_encoded(snapshot),
                _ = ticker.tick() => self.on_tick(),
                _ = shutdown.changed() => break,
            }
            // Take whatever else is waiting before producing a Ready: many proposals and acks
            // share one Ready, one AppendEntries per peer and one fsync.
            for _ in 0..1024 {
                if let Ok(ev) = storage_events.try_recv() {
                    match ev {
                        StorageEvent::Persisted(n) => self.node.on_persisted(n),
                        StorageEvent::Failed(e) => {
                            error!("the disk failed: {e}; stopping");
                            self.stop();
                            return;
                        }
                    }
                    continue;
                }
                if let Ok(m) = inbound.try_recv() {
                    self.on_inbound(m);
                    continue;
                }
                if let Ok(r) = requests.try_recv() {
                    self.on_request(r);
                    continue;
                }
                break;
            }
            self.process_ready();
        }
        self.stop();
    }

    fn stop(&mut self) {
        self.storage.shutdown();
        for (_, w) in std::mem::take(&mut self.writes) {
            let _ = w.reply.send(Err(ServerError::Unavailable));
        }
    }

    // -----------------------------------------------------------------------------------------
    // Inputs
    // -----------------------------------------------------------------------------------------

    fn on_inbound(&mut self, m: Inbound) {
        match m {
            Inbound::Message(msg) => {
                let from = msg.from;
                if let Err(e) = self.node.step(msg) {
                    warn!("refused a message from node {from}: {e}");
                }
            }
            Inbound::Unreachable(peer) => self.node.report_unreachable(peer),
        }
    }

    fn on_tick(&mut self) {
        self.node.tick();
        let now = Instant::now();
        // Outcomes that did not arrive in time.
        let expired: Vec<u64> = self.writes.iter().filter(|(_, w)| w.deadline <= now).map(|(id, _)| *id).collect();
        for id in expired {
            if let Some(w) = self.writes.remove(&id) {
                let _ = w.reply.send(Err(ServerError::Timeout));
            }
        }
        let expired: Vec<u64> = self.reads.iter().filter(|(_, r)| r.deadline <= now).map(|(c, _)| *c).collect();
        for ctx in expired {
            if let Some(r) = self.reads.remove(&ctx) {
                let _ = r.reply.send(Err(ServerError::Timeout));
            }
        }
        let (late, ok): (Vec<_>, Vec<_>) = self.reads_ready.drain(..).partition(|(_, r)| r.deadline <= now);
        self.reads_ready = ok;
        for (_, r) in late {
            let _ = r.reply.send(Err(ServerError::Timeout));
        }
        let expired: Vec<LogIndex> = self.admins.iter().filter(|(_, (_, a))| a.deadline <= now).map(|(i, _)| *i).collect();
        for i in expired {
            if let Some((_, a)) = self.admins.remove(&i) {
                let _ = a.reply.send(Err(ServerError::Timeout));
            }
        }
        let (late, waiting): (Vec<_>, Vec<_>) = self.transfers.drain(..).partition(|t| t.deadline <= now);
        self.transfers = waiting;
        for t in late {
            let _ = t.reply.send(Err(ServerError::Refused(format!("leadership did not move to {} in time", t.to))));
        }
        self.maybe_promote_learners();
        self.maybe_announce();
    }

    /// The driver decides when a learner has caught up (see raft_core::membership): once its
    /// match index reaches the commit index, the leader promotes it.
    fn maybe_promote_learners(&mut self) {
        if !self.node.is_leader() || self.node.membership_change_pending() {
            return;
        }
        let commit = self.node.commit_index();
        let caught_up = self
            .node
            .progress()
            .into_iter()
            .find(|p| !p.is_voter && self.node.membership().is_learner_only(p.id) && p.match_index >= commit);
        if let Some(p) = caught_up {
            match self.node.propose_membership(&[ChangeStep::PromoteLearner(p.id)], Bytes::new()) {
                Ok(entry) => info!("promoting learner {} (caught up at {}), entry {entry}", p.id, p.match_index),
                Err(e) => warn!("could not promote learner {}: {e}", p.id),
            }
        }
    }

    /// Announce our own addresses through the log until the replicated address book has them.
    fn maybe_announce(&mut self) {
        if self.app.members.get(&self.s.id) == Some(&self.s.addrs) || self.node.leader().is_none() {
            return;
        }
        if !self.node.membership().contains(self.s.id) {
            return;
        }
        if self.last_announce.is_some_and(|t| t.elapsed() < Duration::from_secs(2)) {
            return;
        }
        self.last_announce = Some(Instant::now());
        let data = Envelope::Announce { id: self.s.id, addrs: self.s.addrs.clone() }.encode();
        if let Err(e) = self.node.propose(data) {
            warn!("could not announce our addresses: {e}");
        }
    }

    fn on_request(&mut self, r: Request) {
        let deadline = Instant::now() + self.s.request_timeout;
        match r {
            Request::Write { command, session, reply } => self.propose_write(command, session, reply, deadline),
            Request::Read { command, stale, reply } => {
                if stale {
                    let _ = reply.send(Ok(self.app.kv.query(&command)));
                    return;
                }
                if let Some(e) = self.not_a_member() {
                    let _ = reply.send(Err(e));
                    return;
                }
                self.next_read_ctx += 1;
                match self.node.read_index(self.next_read_ctx) {
                    Ok(()) => {
                        self.reads.insert(self.next_read_ctx, PendingRead { command, reply, deadline });
                    }
                    Err(raft_core::Error::NotLeader { .. }) => {
                        let _ = reply.send(Err(ServerError::NoLeader));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(ServerError::Refused(e.to_string())));
                    }
                }
            }
            Request::Admin { op, reply } => self.on_admin(op, reply, deadline),
        }
    }

    /// A server that was removed from the cluster (or not yet added) says so.
    fn not_a_member(&self) -> Option<ServerError> {
        let m = self.node.membership();
        (!m.voters().is_empty() && !m.contains(self.s.id) && !self.node.is_leader())
            .then(|| ServerError::Refused(format!("node {} is not a member of the cluster (removed, or not yet added)", self.s.id)))
    }

    fn propose_write(&mut self, command: Command, session: Option<Session>, reply: oneshot::Sender<KvResult>, deadline: Instant) {
        if let Some(e) = self.not_a_member() {
            let _ = reply.send(Err(e));
            return;
        }
        let request = raft_kv::Request { session, time_ms: self.started.elapsed().as_millis() as u64 + wall_ms_base(), command };
        if let Err(e) = self.app.kv.validate(&request) {
            let _ = reply.send(Ok(raft_kv::Reply::Error(e)));
            return;
        }
        self.next_request_id += 1;
        let request_id = self.next_request_id;
        let data = Envelope::Request { origin: self.s.id, request_id, request: Bytes::from(raft_kv::encode_request(&request)) }.encode();
        match self.node.propose(data) {
            Ok(Proposed::Appended(entry)) => {
                self.by_index.insert(entry.index, (entry.term, request_id));
                self.writes.insert(request_id, PendingWrite { reply, deadline });
            }
            Ok(Proposed::Forwarded { .. }) => {
                self.writes.insert(request_id, PendingWrite { reply, deadline });
            }
            Err(raft_core::Error::NotLeader { .. }) => {
                let _ = reply.send(Err(ServerError::NoLeader));
            }
            Err(e) => {
                let _ = reply.send(Err(ServerError::Refused(e.to_string())));
            }
        }
    }

    fn redirect(&self) -> ServerError {
        match self.node.leader() {
            Some(leader) => {
                ServerError::Redirect { leader, addr: self.app.members.get(&leader).map(|a| a.client.clone()).filter(|a| !a.is_empty()) }
            }
            None => ServerError::NoLeader,
        }
    }

    fn on_admin(&mut self, op: AdminOp, reply: oneshot::Sender<Result<AdminReply, ServerError>>, deadline: Instant) {
        match op {
            AdminOp::Info => {
                let _ = reply.send(Ok(AdminReply::Info(self.info())));
            }
            AdminOp::Add { id, addrs, join } => {
                if !self.node.is_leader() {
                    let _ = reply.send(Err(self.redirect()));
                    return;
                }
                if self.node.membership().contains(id) {
                    // A joiner retrying, with the addresses it was added with: answer as if added.
                    // Anyone else claiming a member's id is refused, or it would take its place.
                    let known = self.app.members.get(&id).or_else(|| self.s.initial_peers.get(&id));
                    if known.is_some_and(|k| k.peer == addrs.peer) {
                        let _ = reply.send(Ok(self.joined_reply(join)));
                    } else {
                        let at = known.map_or("?".to_string(), |k| k.peer.clone());
                        let _ = reply
                            .send(Err(ServerError::Refused(format!("node {id} is already a member (peer address {at}); pick another id"))));
                    }
                    return;
                }
                let context = Envelope::Announce { id, addrs: addrs.clone() }.encode();
                match self.node.propose_membership(&[ChangeStep::AddLearner(id)], context) {
                    Ok(entry) => {
                        self.app.learn(id, addrs);
                        self.sync_peers();
                        self.admins.insert(entry.index, (entry.term, PendingAdmin { reply, deadline, join }));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(ServerError::Refused(e.to_string())));
                    }
                }
            }
            AdminOp::Remove(id) => {
                if !self.node.is_leader() {
                    let _ = reply.send(Err(self.redirect()));
                    return;
                }
                match self.node.propose_membership(&[ChangeStep::Remove(id)], Bytes::new()) {
                    Ok(entry) => {
                        self.admins.insert(entry.index, (entry.term, PendingAdmin { reply, deadline, join: false }));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(ServerError::Refused(e.to_string())));
                    }
                }
            }
            AdminOp::Transfer(to) => {
                if self.node.leader() == Some(to) {
                    let _ = reply.send(Ok(AdminReply::Ok));
                    return;
                }
                if !self.node.is_leader() {
                    let _ = reply.send(Err(self.redirect()));
                    return;
                }
                match self.node.transfer_leadership(to) {
                    Ok(()) => self.transfers.push(PendingTransfer { to, reply, deadline }),
                    Err(e) => {
                        let _ = reply.send(Err(ServerError::Refused(e.to_string())));
                    }
                }
            }
        }
    }

    fn joined_reply(&self, join: bool) -> AdminReply {
        if join {
            AdminReply::Joined { cluster_id: self.s.cluster_id, members: self.app.members.iter().map(|(id, a)| (*id, a.clone())).collect() }
        } else {
            AdminReply::Ok
        }
    }

    // -----------------------------------------------------------------------------------------
    // Outputs
    // -----------------------------------------------------------------------------------------

    fn process_ready(&mut self) {
        let mut guard = 0;
        while self.node.has_ready() {
            guard += 1;
            if guard > 10_000 {
                error!("the node keeps producing Readies; yielding");
                return;
            }
            let mut rd = self.node.ready();
            if let Some(role) = rd.role {
                self.on_role(role);
            }
            if let Some(snapshot) = &rd.snapshot {
                self.install_snapshot(snapshot);
            }
            // Addresses of new members travel in membership entries: learn them as soon as the
            // entries reach us, so a new leader can reach every member.
            let mut learned = false;
            for e in rd.entries.iter().filter(|e| e.kind == EntryKind::Membership) {
                learned |= self.learn_from_membership_entry(e);
            }
            if learned {
                self.sync_peers();
            }
            // Messages first: they never depend on this Ready being durable, and the followers'
            // round trip (network, their fsync, network) is the longer path to a commit.
            for m in rd.messages.drain(..) {
                self.transport.send(m);
            }
            if rd.has_persistence() {
                let persist = Ready {
                    number: rd.number,
                    snapshot: rd.snapshot.take(),
                    truncate_from: rd.truncate_from,
                    entries: std::mem::take(&mut rd.entries),
                    hard_state: rd.hard_state,
                    must_sync: rd.must_sync,
                    ..Ready::default()
                };
                self.storage.send(StorageOp::Write(Box::new(persist)));
            }
            for e in std::mem::take(&mut rd.committed_entries) {
                self.apply(e);
            }
            for rs in &rd.read_states {
                if let Some(r) = self.reads.remove(&rs.ctx) {
                    self.reads_ready.push((rs.index, r));
                }
            }
            self.serve_ready_reads();
            for d in &rd.dropped {
                let lost: Vec<LogIndex> =
                    self.by_index.range(d.first..=d.last).filter(|(_, (t, _))| *t == d.term).map(|(i, _)| *i).collect();
                for i in lost {
                    if let Some((_, id)) = self.by_index.remove(&i) {
                        if let Some(w) = self.writes.remove(&id) {
                            let _ = w.reply.send(Err(if d.may_have_committed { ServerError::Timeout } else { ServerError::Dropped }));
                        }
                    }
                }
            }
            if rd.snapshot_due {
                self.take_snapshot();
            }
        }
    }

    fn on_role(&mut self, role: raft_core::RoleState) {
        info!("role {:?} in term {}, leader {:?}", role.role, role.term, role.leader);
        if role.role != RoleKind::Leader {
            // Reads this server was confirming as leader will never be confirmed now.
            for (_, r) in std::mem::take(&mut self.reads) {
                let _ = r.reply.send(Err(ServerError::NoLeader));
            }
        }
        if let Some(leader) = role.leader {
            let (done, waiting): (Vec<_>, Vec<_>) = self.transfers.drain(..).partition(|t| t.to == leader);
            self.transfers = waiting;
            for t in done {
                let _ = t.reply.send(Ok(AdminReply::Ok));
            }
        }
    }

    fn learn_from_membership_entry(&mut self, e: &Entry) -> bool {
        match raft_core::Membership::decode(&e.data) {
            Ok((_, context)) if !context.is_empty() => match Envelope::decode(&context) {
                Ok(Envelope::Announce { id, addrs }) => {
                    let before = self.app.members.get(&id).cloned();
                    self.app.learn(id, addrs);
                    before.as_ref() != self.app.members.get(&id)
                }
                _ => false,
            },
            _ => false,
        }
    }

    fn install_snapshot(&mut self, snapshot: &Snapshot) {
        match App::restore(&snapshot.data) {
            Ok(app) => {
                info!("installed a snapshot up to {}", snapshot.meta.last);
                let mut app = app;
                // Keep addresses we learned that the snapshot does not know.
                for (id, a) in std::mem::take(&mut self.app.members) {
                    app.members.entry(id).or_insert(a);
                }
                self.app = app;
                self.sync_peers();
                // Writes waiting here may be inside the snapshot, whose entries are never applied
                // one by one here: their outcome is unknown now. Say so at once rather than at the
                // timeout (a client with a session retries and gets the stored reply).
                for (_, w) in std::mem::take(&mut self.writes) {
                    let _ = w.reply.send(Err(ServerError::Timeout));
                }
                self.by_index.clear();
            }
            Err(e) => error!("a snapshot from the leader could not be restored: {e}"),
        }
    }

    /// Starts a snapshot of the state machine as it is now: the driver only clones it (cheap:
    /// keys and values are shared), a blocking thread encodes it, and
    /// [`Driver::on_snapshot_encoded`] compacts the log once it is back. The driver keeps
    /// serving meanwhile, so a state machine of any size never stalls it for long.
    fn take_snapshot(&mut self) {
        if self.encoding {
            return;
        }
        let started = Instant::now();
        let index = LogIndex(self.app.kv.applied_index());
        let frozen = self.app.clone();
        let clone_time = started.elapsed();
        let done = self.encoded_tx.clone();
        self.encoding = true;
        tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let data = frozen.snapshot();
            let _ = done.send(EncodedSnapshot { index, data, clone_time, encode_time: started.elapsed() });
        });
    }

    fn on_snapshot_encoded(&mut self, snapshot: EncodedSnapshot) {
        self.encoding = false;
        let EncodedSnapshot { index, data, clone_time, encode_time } = snapshot;
        match self.node.compact(SnapshotData { index, data: data.clone() }) {
            Ok(meta) => {
                info!(
                    "took a snapshot at {index}: {} bytes (cloned in {:.1} ms, encoded off the driver in {:.1} ms)",
                    data.len(),
                    clone_time.as_secs_f64() * 1e3,
                    encode_time.as_secs_f64() * 1e3,
                );
                self.storage.send(StorageOp::SaveSnapshot(Snapshot { meta, data }));
            }
            // A snapshot from the leader overtook it.
            Err(e) => info!("snapshot at {index} not used: {e}"),
        }
    }

    fn apply(&mut self, e: Entry) {
        let index = e.index;
        match e.kind {
            EntryKind::Normal => match Envelope::decode(&e.data) {
                Ok(Envelope::Request { origin, request_id, request }) => {
                    let applied = self.app.kv.apply(index.0, &request);
                    if origin == self.s.id {
                        if let Some(w) = self.writes.remove(&request_id) {
                            let _ = w.reply.send(Ok(applied.reply));
                        }
                    }
                }
                Ok(Envelope::Announce { id, addrs }) => {
                    self.app.kv.apply(index.0, &[]);
                    self.app.learn(id, addrs);
                    self.sync_peers();
                }
                Err(err) => {
                    // Deterministic on every replica: the entry is skipped everywhere.
                    warn!("entry {index} is not a raftkv entry ({err}); skipped");
                    self.app.kv.apply(index.0, &[]);
                }
            },
            EntryKind::Blank | EntryKind::Membership => {
                self.app.kv.apply(index.0, &[]);
                if e.kind == EntryKind::Membership && self.learn_from_membership_entry(&e) {
                    self.sync_peers();
                }
            }
        }
        if let Some((term, request_id)) = self.by_index.remove(&index) {
            if term != e.term {
                if let Some(w) = self.writes.remove(&request_id) {
                    let _ = w.reply.send(Err(ServerError::Dropped));
                }
            }
        }
        if let Some((term, a)) = self.admins.remove(&index) {
            let _ = a.reply.send(if term == e.term { Ok(self.joined_reply(a.join)) } else { Err(ServerError::Dropped) });
        }
    }

    fn serve_ready_reads(&mut self) {
        let applied = LogIndex(self.app.kv.applied_index());
        if self.reads_ready.iter().all(|(i, _)| *i > applied) {
            return;
        }
        let (ready, waiting): (Vec<_>, Vec<_>) = self.reads_ready.drain(..).partition(|(i, _)| *i <= applied);
        self.reads_ready = waiting;
        for (_, r) in ready {
            let _ = r.reply.send(Ok(self.app.kv.query(&r.command)));
        }
    }

    /// A member's addresses: the replicated address book, else the local peers file.
    fn addrs_of(&self, id: NodeId) -> Option<&MemberAddrs> {
        let replicated = self.app.members.get(&id);
        match (replicated, self.s.initial_peers.get(&id)) {
            (Some(a), _) if !a.client.is_empty() => Some(a),
            (_, Some(b)) if !b.client.is_empty() || replicated.is_none() => Some(b),
            (a, b) => a.or(b),
        }
    }

    /// Tells the transport where every member lives (the replicated address book first, the
    /// local peers file for what it does not know yet).
    fn sync_peers(&self) {
        for (id, a) in self.s.initial_peers.iter().chain(&self.app.members) {
            if *id != self.s.id && !a.peer.is_empty() {
                self.transport.set_peer_addr(*id, a.peer.clone());
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Status
    // -----------------------------------------------------------------------------------------

    fn info(&self) -> String {
        let n = &self.node;
        let role = match n.role() {
            RoleKind::Leader => "leader",
            RoleKind::Candidate | RoleKind::PreCandidate => "candidate",
            RoleKind::Follower if n.is_learner() => "learner",
            RoleKind::Follower => "follower",
        };
        let membership = n.membership();
        let mut out = String::new();
        let mut line = |k: &str, v: String| {
            out.push_str(k);
            out.push(':');
            out.push_str(&v);
            out.push_str("\r\n");
        };
        line("node_id", self.s.id.to_string());
        line("cluster_id", format!("{:016x}", self.s.cluster_id));
        line("role", role.into());
        line("leader_id", n.leader().map_or("none".into(), |l| l.to_string()));
        line("term", n.term().to_string());
        line("commit_index", n.commit_index().to_string());
        line("applied_index", self.app.kv.applied_index().to_string());
        line("last_log_index", n.last_entry().index.to_string());
        line("snapshot_index", n.snapshot_last().index.to_string());
        line("keys", self.app.kv.len().to_string());
        line("joint_configuration", if membership.is_joint() { "yes".into() } else { "no".into() });
        line("fsyncs", self.storage_stats.fsyncs.load(std::sync::atomic::Ordering::Relaxed).to_string());
        let progress = n.progress();
        let stats = self.transport.stats();
        let members: Vec<NodeId> = membership.members().collect();
        line("members", members.len().to_string());
        let last = n.last_entry().index;
        for id in members {
            let addrs = self.addrs_of(id);
            let kind = if membership.is_voter(id) { "voter" } else { "learner" };
            let (matched, lag, contact) = match progress.iter().find(|p| p.id == id) {
                Some(p) => {
                    let ms = p.ticks_since_contact * self.s.tick.as_millis() as u64;
                    (p.match_index.to_string(), (last.0 - p.match_index.0.min(last.0)).to_string(), format!("{ms}ms"))
                }
                None => ("?".into(), "?".into(), "?".into()),
            };
            let connected = if id == self.s.id {
                "self".to_string()
            } else {
                stats.peers.get(&id).map_or("no".into(), |p| if p.connected { "yes".into() } else { "no".into() })
            };
            line(
                &format!("member_{id}"),
                format!(
                    "id={id},peer={},client={},role={kind},match={matched},lag={lag},last_contact={contact},connected={connected}",
                    addrs.map_or("?", |a| a.peer.as_str()),
                    addrs.map_or("?", |a| if a.client.is_empty() { "?" } else { a.client.as_str() }),
                ),
            );
        }
        out
    }
}

/// Log time is carried in entries (for session expiry). A leader's proposal carries its wall
/// clock; replicas never read a clock when applying.
fn wall_ms_base() -> u64 {
    use std::sync::OnceLock;
    static BASE: OnceLock<u64> = OnceLock::new();
    *BASE.get_or_init(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64))
}
