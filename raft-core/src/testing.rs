//! An in-memory test network of Raft nodes, for readable scenario tests (enabled with the
//! `testing` feature, and in this crate's own tests).
//!
//! Each node has a [`Disk`] that its driver writes synchronously, so a crash keeps exactly what
//! the node made durable; messages wait in one in-flight queue until a test delivers, drops,
//! duplicates or reorders them; links can be cut to partition the cluster. Everything is
//! deterministic: the same calls give the same run.
//!
//! ```
//! use raft_core::testing::Network;
//! use raft_core::NodeId;
//!
//! let mut net = Network::new(3);
//! net.elect(NodeId(1));
//! net.propose(NodeId(1), "x").unwrap();
//! net.deliver_all();
//! assert!(net.ids().all(|id| net.applied_data(id) == vec![b"x".to_vec()]));
//! ```

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;

use crate::{
    Bootstrap, Config, DroppedEntries, Entry, EntryKind, HardState, LogIndex, Message, Node, PersistedState, Proposed, ReadState, Ready,
    Result, RoleKind, Snapshot, SnapshotData, Term,
};
use crate::{EntryId, NodeId};

/// What one node made durable.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Disk {
    /// The durable hard state.
    pub hard_state: HardState,
    /// The durable snapshot.
    pub snapshot: Option<Snapshot>,
    /// Durable entries after the snapshot.
    pub entries: Vec<Entry>,
}

impl Disk {
    /// Writes a Ready's persistence part.
    pub fn persist(&mut self, rd: &Ready) {
        if let Some(snapshot) = &rd.snapshot {
            let last = snapshot.meta.last.index;
            self.entries.retain(|e| e.index > last);
            self.snapshot = Some(snapshot.clone());
        }
        if let Some(from) = rd.truncate_from {
            self.entries.retain(|e| e.index < from);
        }
        if let Some(first) = rd.entries.first() {
            self.entries.retain(|e| e.index < first.index);
            self.entries.extend(rd.entries.iter().cloned());
        }
        if let Some(hs) = rd.hard_state {
            self.hard_state = hs;
        }
    }

    /// Forgets entries covered by a snapshot the node took itself.
    pub fn compact(&mut self, snapshot: Snapshot) {
        let last = snapshot.meta.last.index;
        self.entries.retain(|e| e.index > last);
        self.snapshot = Some(snapshot);
    }
}

/// The test state machine's snapshot: the applied entries, in order (index, term, kind, data).
fn encode_applied(applied: &[Entry]) -> Bytes {
    let mut out = Vec::new();
    for e in applied {
        out.extend_from_slice(&e.index.0.to_le_bytes());
        out.extend_from_slice(&e.term.0.to_le_bytes());
        out.push(match e.kind {
            EntryKind::Blank => 0,
            EntryKind::Normal => 1,
            EntryKind::Membership => 2,
        });
        out.extend_from_slice(&(e.data.len() as u32).to_le_bytes());
        out.extend_from_slice(&e.data);
    }
    Bytes::from(out)
}

fn decode_applied(data: &Bytes) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut pos = 0;
    let u64_at = |p: usize| u64::from_le_bytes(data[p..p + 8].try_into().expect("8 bytes"));
    while pos < data.len() {
        let index = LogIndex(u64_at(pos));
        let term = Term(u64_at(pos + 8));
        let kind = match data[pos + 16] {
            0 => EntryKind::Blank,
            1 => EntryKind::Normal,
            _ => EntryKind::Membership,
        };
        let len = u32::from_le_bytes(data[pos + 17..pos + 21].try_into().expect("4 bytes")) as usize;
        out.push(Entry { term, index, kind, data: data.slice(pos + 21..pos + 21 + len) });
        pos += 21 + len;
    }
    out
}

/// One node of the network with its driver's state.
#[derive(Debug)]
pub struct Member {
    /// The running node; `None` while crashed.
    pub node: Option<Node>,
    /// Its durable state.
    pub disk: Disk,
    /// Entries applied by its "state machine", in order (rebuilt from the snapshot on restart).
    pub applied: Vec<Entry>,
    /// The state machine's applied index.
    pub applied_index: LogIndex,
    /// Reads confirmed for it.
    pub read_states: Vec<ReadState>,
    /// Entries it reported dropped.
    pub dropped: Vec<DroppedEntries>,
    /// With [`Network::async_disk`]: written but not yet durable (lost in a crash).
    pending: Vec<PendingWrite>,
    config: Config,
}

/// A Ready's persistence part, waiting for a sync.
#[derive(Debug)]
struct PendingWrite {
    number: crate::ReadyNumber,
    ready: Ready,
}

/// A set of nodes and the messages between them.
#[derive(Debug)]
pub struct Network {
    members: BTreeMap<NodeId, Member>,
    in_flight: VecDeque<Message>,
    /// Directed links that drop everything.
    cut: BTreeSet<(NodeId, NodeId)>,
    /// Take a snapshot whenever the node says one is due.
    pub auto_compact: bool,
    /// Writes become durable only at [`Network::sync`] (or when [`Network::deliver_all`] runs);
    /// a crash loses the rest. Off: every Ready is durable at once.
    pub async_disk: bool,
    /// Messages delivered so far.
    pub delivered: u64,
    /// Messages delivered so far, by [`crate::MessageBody::name`].
    pub delivered_by_kind: BTreeMap<&'static str, u64>,
    history: History,
}

/// What the safety checks remember over a whole run.
#[derive(Debug, Default)]
struct History {
    /// Every leader seen, by term.
    leaders: BTreeMap<Term, NodeId>,
    /// Every entry seen committed, with the term of the node that first saw it committed.
    committed: BTreeMap<LogIndex, (EntryId, Term)>,
    /// Each running node's commit index at the last check.
    commit: BTreeMap<NodeId, LogIndex>,
}

/// Most delivery rounds `deliver_all` runs before declaring the cluster live-locked.
const MAX_ROUNDS: usize = 1_000;

impl Network {
    /// `n` nodes with ids 1..=n forming a new cluster, default configuration (seed 0).
    pub fn new(n: u64) -> Network {
        Network::with_config(n, |_| {})
    }

    /// `n` nodes with ids 1..=n; `adjust` edits each node's default configuration.
    pub fn with_config(n: u64, adjust: impl Fn(&mut Config)) -> Network {
        let voters: Vec<NodeId> = (1..=n).map(NodeId).collect();
        let mut net = Network {
            members: BTreeMap::new(),
            in_flight: VecDeque::new(),
            cut: BTreeSet::new(),
            auto_compact: false,
            async_disk: false,
            delivered: 0,
            delivered_by_kind: BTreeMap::new(),
            history: History::default(),
        };
        for &id in &voters {
            let mut config = Config::new(id);
            adjust(&mut config);
            let node = Node::new(config.clone(), Bootstrap::NewCluster { voters: voters.clone() }).expect("valid test configuration");
            net.insert(id, node, config);
        }
        net.process_all();
        net
    }

    fn insert(&mut self, id: NodeId, node: Node, config: Config) {
        let member = Member {
            node: Some(node),
            disk: Disk::default(),
            applied: Vec::new(),
            applied_index: LogIndex(0),
            read_states: Vec::new(),
            dropped: Vec::new(),
            pending: Vec::new(),
            config,
        };
        self.members.insert(id, member);
    }

    /// Adds a fresh server that will join the cluster (it has no log and no membership).
    pub fn add_joiner(&mut self, id: NodeId, adjust: impl Fn(&mut Config)) {
        let mut config = Config::new(id);
        adjust(&mut config);
        let node = Node::new(config.clone(), Bootstrap::Join).expect("valid test configuration");
        self.insert(id, node, config);
    }

    /// The ids of all nodes, crashed or not.
    pub fn ids(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.members.keys().copied()
    }

    /// A running node.
    ///
    /// # Panics
    ///
    /// If `id` is unknown or crashed.
    pub fn node(&self, id: NodeId) -> &Node {
        self.members[&id].node.as_ref().unwrap_or_else(|| panic!("node {id} is crashed"))
    }

    /// A running node, mutably. Call [`Network::process`] after giving it input.
    pub fn node_mut(&mut self, id: NodeId) -> &mut Node {
        self.members.get_mut(&id).and_then(|m| m.node.as_mut()).unwrap_or_else(|| panic!("node {id} is crashed"))
    }

    /// A member with its driver state.
    pub fn member(&self, id: NodeId) -> &Member {
        &self.members[&id]
    }

    /// Whether `id` is running.
    pub fn is_up(&self, id: NodeId) -> bool {
        self.members[&id].node.is_some()
    }

    /// Messages waiting for delivery.
    pub fn in_flight(&self) -> &VecDeque<Message> {
        &self.in_flight
    }

    /// The leader with the highest term among running nodes.
    pub fn leader(&self) -> Option<NodeId> {
        self.members
            .iter()
            .filter_map(|(id, m)| m.node.as_ref().filter(|n| n.role() == RoleKind::Leader).map(|n| (n.term(), *id)))
            .max()
            .map(|(_, id)| id)
    }

    /// Drives a node's Readies until it has none: persist to its disk, acknowledge, queue its
    /// messages, apply committed entries.
    pub fn process(&mut self, id: NodeId) {
        let auto_compact = self.auto_compact;
        let Some(m) = self.members.get_mut(&id) else { return };
        let Some(node) = m.node.as_mut() else { return };
        let mut guard = 0;
        while node.has_ready() {
            guard += 1;
            assert!(guard < 1000, "node {id} keeps producing Readies");
            let mut rd = node.ready();
            let snapshot_due = rd.snapshot_due;
            if let Some(snapshot) = &rd.snapshot {
                // The state machine is replaced by the snapshot's.
                m.applied_index = snapshot.meta.last.index;
                m.applied = decode_applied(&snapshot.data);
            }
            for e in &rd.committed_entries {
                assert_eq!(e.index, m.applied_index.next(), "node {id} applies in order without gaps");
                m.applied_index = e.index;
                m.applied.push(e.clone());
            }
            m.read_states.extend(rd.read_states.iter().copied());
            m.dropped.extend(rd.dropped.iter().copied());
            for msg in rd.messages.drain(..) {
                if !self.cut.contains(&(msg.from, msg.to)) {
                    self.in_flight.push_back(msg);
                }
            }
            if self.async_disk {
                if rd.has_persistence() {
                    m.pending.push(PendingWrite { number: rd.number, ready: rd });
                }
            } else {
                m.disk.persist(&rd);
                node.on_persisted(rd.number);
            }
            if auto_compact && snapshot_due {
                let data = encode_applied(&m.applied);
                let meta = node.compact(SnapshotData { index: m.applied_index, data: data.clone() }).expect("compact at the applied index");
                m.disk.compact(Snapshot { meta, data });
            }
            node.check_invariants();
        }
    }

    /// Takes a snapshot of `id`'s state machine at its applied index and compacts its log.
    pub fn compact(&mut self, id: NodeId) -> Result<()> {
        let m = self.members.get_mut(&id).expect("known node");
        let node = m.node.as_mut().expect("running node");
        let data = encode_applied(&m.applied);
        let meta = node.compact(SnapshotData { index: m.applied_index, data: data.clone() })?;
        m.disk.compact(Snapshot { meta, data });
        Ok(())
    }

    /// Proposes a membership change at `id` and processes it.
    pub fn propose_membership(&mut self, id: NodeId, steps: &[crate::ChangeStep]) -> Result<EntryId> {
        let r = self.node_mut(id).propose_membership(steps, Bytes::new());
        self.process(id);
        r
    }

    /// Makes everything `id` wrote durable and tells it so (with [`Network::async_disk`]).
    pub fn sync(&mut self, id: NodeId) {
        let Some(m) = self.members.get_mut(&id) else { return };
        let Some(node) = m.node.as_mut() else { return };
        let mut last = None;
        for w in m.pending.drain(..) {
            m.disk.persist(&w.ready);
            last = Some(w.number);
        }
        if let Some(number) = last {
            node.on_persisted(number);
        }
        self.process(id);
    }

    /// [`Network::sync`] for every node.
    pub fn sync_all(&mut self) {
        let ids: Vec<NodeId> = self.members.keys().copied().collect();
        for id in ids {
            self.sync(id);
        }
    }

    /// [`Network::process`] for every node.
    pub fn process_all(&mut self) {
        let ids: Vec<NodeId> = self.members.keys().copied().collect();
        for id in ids {
            self.process(id);
        }
    }

    /// Delivers the oldest in-flight message (dropped if its link is cut or its target is down).
    /// Returns false when nothing is in flight.
    pub fn deliver_one(&mut self) -> bool {
        let Some(msg) = self.in_flight.pop_front() else { return false };
        self.deliver(msg);
        true
    }

    /// Steps one message into its target and processes the target.
    pub fn deliver(&mut self, msg: Message) {
        let to = msg.to;
        if self.cut.contains(&(msg.from, msg.to)) {
            return;
        }
        let Some(node) = self.members.get_mut(&to).and_then(|m| m.node.as_mut()) else { return };
        self.delivered += 1;
        *self.delivered_by_kind.entry(msg.body.name()).or_default() += 1;
        node.step(msg).expect("test messages are well formed");
        self.process(to);
    }

    /// Processes and delivers until nothing is in flight.
    ///
    /// # Panics
    ///
    /// After too many rounds (a live-lock).
    pub fn deliver_all(&mut self) {
        for _ in 0..MAX_ROUNDS {
            if self.async_disk {
                self.sync_all();
            }
            self.process_all();
            if self.in_flight.is_empty() && (!self.async_disk || self.members.values().all(|m| m.pending.is_empty())) {
                return;
            }
            while self.deliver_one() {}
        }
        panic!("messages still flowing after {MAX_ROUNDS} rounds");
    }

    /// How many messages of `kind` (a [`crate::MessageBody::name`]) were delivered.
    pub fn delivered_count(&self, kind: &str) -> u64 {
        self.delivered_by_kind.get(kind).copied().unwrap_or(0)
    }

    /// Takes every in-flight message out of the network (to deliver selectively, or drop).
    pub fn take_in_flight(&mut self) -> Vec<Message> {
        self.process_all();
        self.in_flight.drain(..).collect()
    }

    /// Drops every in-flight message.
    pub fn drop_all(&mut self) {
        self.take_in_flight();
    }

    /// Duplicates every in-flight message (each copy follows its original).
    pub fn duplicate_all(&mut self) {
        let msgs = self.take_in_flight();
        for m in msgs {
            self.in_flight.push_back(m.clone());
            self.in_flight.push_back(m);
        }
    }

    /// Reverses the order of in-flight messages.
    pub fn reverse_in_flight(&mut self) {
        let mut msgs = self.take_in_flight();
        msgs.reverse();
        self.in_flight.extend(msgs);
    }

    /// Cuts every link between the two groups, both ways.
    pub fn partition(&mut self, a: &[u64], b: &[u64]) {
        for &x in a {
            for &y in b {
                self.cut.insert((NodeId(x), NodeId(y)));
                self.cut.insert((NodeId(y), NodeId(x)));
            }
        }
    }

    /// Cuts `id` off from everyone.
    pub fn isolate(&mut self, id: u64) {
        let others: Vec<u64> = self.members.keys().map(|n| n.0).filter(|&n| n != id).collect();
        self.partition(&[id], &others);
    }

    /// Cuts the link from `from` to `to` only.
    pub fn cut_one_way(&mut self, from: u64, to: u64) {
        self.cut.insert((NodeId(from), NodeId(to)));
    }

    /// Restores every link.
    pub fn heal(&mut self) {
        self.cut.clear();
    }

    /// One tick on every running node.
    pub fn tick_all(&mut self) {
        let ids: Vec<NodeId> = self.members.keys().copied().collect();
        for id in ids {
            self.tick(id);
        }
    }

    /// One tick on `id` (if running).
    pub fn tick(&mut self, id: NodeId) {
        if let Some(node) = self.members.get_mut(&id).and_then(|m| m.node.as_mut()) {
            node.tick();
            self.process(id);
        }
    }

    /// `n` rounds of: tick everyone, deliver everything.
    pub fn run_ticks(&mut self, n: usize) {
        for _ in 0..n {
            self.tick_all();
            self.deliver_all();
        }
    }

    /// Makes `id` campaign and delivers until quiet; asserts it won.
    pub fn elect(&mut self, id: NodeId) {
        self.node_mut(id).campaign();
        self.deliver_all();
        assert_eq!(self.node(id).role(), RoleKind::Leader, "node {id} should have won the election");
    }

    /// Proposes at `id` and processes it (delivery is up to the test).
    pub fn propose(&mut self, id: NodeId, data: impl Into<Bytes>) -> Result<Proposed> {
        let r = self.node_mut(id).propose(data);
        self.process(id);
        r
    }

    /// Crashes `id`: its volatile state is gone, its disk stays; messages to it are lost.
    pub fn crash(&mut self, id: NodeId) {
        let m = self.members.get_mut(&id).expect("known node");
        m.node = None;
        m.pending.clear();
        self.history.commit.remove(&id);
    }

    /// Restarts `id` from its disk.
    pub fn restart(&mut self, id: NodeId) {
        let m = self.members.get_mut(&id).expect("known node");
        assert!(m.node.is_none(), "node {id} is running");
        // The state machine is rebuilt from the snapshot, then replays committed entries.
        let applied = m.disk.snapshot.as_ref().map_or(LogIndex(0), |s| s.meta.last.index);
        m.applied = m.disk.snapshot.as_ref().map_or_else(Vec::new, |s| decode_applied(&s.data));
        m.applied_index = applied;
        let state =
            PersistedState { hard_state: m.disk.hard_state, snapshot: m.disk.snapshot.clone(), entries: m.disk.entries.clone(), applied };
        let durable_commit = m.disk.hard_state.commit;
        let node = Node::restart(m.config.clone(), state).expect("restart from a consistent disk");
        assert!(node.commit_index() >= durable_commit.min(node.last_entry().index), "node {id} restarted below its durable commit index");
        m.node = Some(node);
        self.process(id);
    }

    /// Drops the oldest in-flight message.
    pub fn drop_front(&mut self) {
        self.in_flight.pop_front();
    }

    /// Duplicates the oldest in-flight message.
    pub fn duplicate_front(&mut self) {
        if let Some(m) = self.in_flight.front().cloned() {
            self.in_flight.push_front(m);
        }
    }

    /// Swaps the oldest in-flight message with the one `k` places behind it (a reordering).
    pub fn swap_front(&mut self, k: usize) {
        if self.in_flight.len() > 1 {
            let k = k % self.in_flight.len();
            self.in_flight.swap(0, k);
        }
    }

    /// The data of the normal entries `id` applied, in order.
    pub fn applied_data(&self, id: NodeId) -> Vec<Vec<u8>> {
        self.members[&id].applied.iter().filter(|e| e.kind == EntryKind::Normal).map(|e| e.data.to_vec()).collect()
    }

    /// Asserts the safety properties across all nodes, and over the run so far: at most one
    /// leader per term (ever), log matching, leader completeness (a leader holds every entry seen
    /// committed in an earlier term), state machine safety (every node applied the same entry at
    /// each index), and commit indexes that never go back.
    pub fn check_safety(&mut self) {
        for (id, m) in &self.members {
            let Some(n) = &m.node else { continue };
            n.check_invariants();
            if n.role() == RoleKind::Leader {
                if let Some(other) = self.history.leaders.insert(n.term(), *id) {
                    assert_eq!(other, *id, "election safety: two leaders in term {}: {other} and {id}", n.term());
                }
            }
            let commit = n.commit_index();
            if let Some(before) = self.history.commit.insert(*id, commit) {
                assert!(commit >= before, "node {id}'s commit index went back from {before} to {commit}");
            }
            for index in (n.first_index().0..=commit.0).map(LogIndex) {
                let Some(term) = n.term_at(index) else { continue };
                let seen = self.history.committed.entry(index).or_insert((EntryId::new(term, index), n.term()));
                assert_eq!(seen.0.term, term, "node {id} committed {index} with term {term}, but {} was committed before", seen.0);
            }
        }
        for (id, m) in &self.members {
            let Some(n) = m.node.as_ref().filter(|n| n.role() == RoleKind::Leader) else { continue };
            for (index, (entry, seen_in)) in &self.history.committed {
                if *seen_in < n.term() && *index >= n.first_index() {
                    assert_eq!(
                        n.term_at(*index),
                        Some(entry.term),
                        "leader completeness: leader {id} of term {} lacks committed entry {entry}",
                        n.term()
                    );
                }
            }
        }
        // Log matching: two logs holding the same (index, term) agree on everything before it.
        let running: Vec<&Node> = self.members.values().filter_map(|m| m.node.as_ref()).collect();
        for (i, a) in running.iter().enumerate() {
            for b in &running[i + 1..] {
                let lo = a.first_index().max(b.first_index());
                let hi = a.last_entry().index.min(b.last_entry().index);
                let mut idx = hi;
                while idx >= lo && idx.0 > 0 {
                    if a.term_at(idx) == b.term_at(idx) {
                        for k in lo.0..=idx.0 {
                            let (ea, eb) = (a.entry(LogIndex(k)), b.entry(LogIndex(k)));
                            assert_eq!(ea, eb, "log matching: nodes {} and {} agree at {idx} but differ at {k}", a.id(), b.id());
                        }
                        break;
                    }
                    idx = idx.prev();
                }
            }
        }
        // State machine safety: every node applied the same entry at each index.
        let mut by_index: BTreeMap<LogIndex, (NodeId, EntryId)> = BTreeMap::new();
        for (id, m) in &self.members {
            for e in &m.applied {
                if let Some((other, seen)) = by_index.insert(e.index, (*id, e.id())) {
                    assert_eq!(seen, e.id(), "nodes {other} and {id} applied different entries at {}", e.index);
                }
            }
        }
    }
}
