//! The benchmark cluster shared by the `throughput` and `compaction` examples: the workload of
//! `../shared/anchors/raftrs-bench` (tikv's raft-rs), ported to raft-core.
//!
//! 3 voters in one thread; messages moved (not encoded) through an in-memory outbox; "persist" =
//! append to an in-memory store per node; payloads whose first 8 bytes are a sequence number; a
//! closed loop keeping K proposals outstanding at the leader; the logical clock is never ticked.
//! A proposal completes when the leader applies it.

#![allow(dead_code)] // each example uses a different part

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;
use cpu_time::ProcessTime;
use raft_core::{Bootstrap, CompactionPolicy, Config, Entry, EntryKind, HardState, LogIndex, Message, Node, NodeId, Ready, SnapshotData};

const LEADER: usize = 0;

/// What the benchmark cluster is built with.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    pub payload: usize,
    pub max_bytes_per_msg: u64,
    pub max_inflight_msgs: usize,
    pub compaction: CompactionPolicy,
}

/// One replica: the node, its in-memory "disk", and a trivial state machine.
struct Replica {
    node: Node,
    stored: VecDeque<Entry>,
    hard_state: HardState,
    applied_index: LogIndex,
    applied_bytes: u64,
}

/// Counts of one run.
#[derive(Default, Clone, Copy, Debug)]
pub struct Counters {
    pub rounds: u64,
    pub readies: u64,
    pub msgs: u64,
    pub snapshots: u64,
}

/// The outcome of one measured run.
#[derive(Clone, Copy, Debug)]
pub struct RunResult {
    pub n: u64,
    pub wall_s: f64,
    pub cpu_us: f64,
    pub c: Counters,
    /// Peak log entries held in memory, summed over the three nodes' cores.
    pub peak_entries: u64,
    /// Peak bytes of those entries (payload plus per-entry overhead).
    pub peak_bytes: u64,
}

impl RunResult {
    pub fn per_second(&self) -> f64 {
        self.n as f64 / self.wall_s
    }

    pub fn cpu_us_per_proposal(&self) -> f64 {
        self.cpu_us / self.n as f64
    }
}

pub struct Cluster {
    replicas: Vec<Replica>,
    outbox: Vec<Message>,
    c: Counters,
    next_expected_seq: u64,
    completed: u64,
    payload: usize,
    peak_entries: u64,
    peak_bytes: u64,
}

impl Cluster {
    pub fn new(cfg: &BenchConfig) -> Cluster {
        let ids: Vec<NodeId> = (1..=3).map(NodeId).collect();
        let replicas = ids
            .iter()
            .map(|&id| {
                let mut config = Config::new(id);
                config.election_ticks = 10;
                config.heartbeat_ticks = 1;
                config.max_inflight_msgs = cfg.max_inflight_msgs;
                config.max_bytes_per_msg = cfg.max_bytes_per_msg;
                // raft-rs 0.7 defaults, as in the anchor.
                config.pre_vote = false;
                config.check_quorum = false;
                config.max_uncommitted_bytes = u64::MAX;
                config.max_committed_bytes_per_ready = u64::MAX;
                config.compaction = cfg.compaction;
                let node = Node::new(config, Bootstrap::NewCluster { voters: ids.clone() }).expect("valid config");
                Replica { node, stored: VecDeque::new(), hard_state: HardState::default(), applied_index: LogIndex(0), applied_bytes: 0 }
            })
            .collect();
        Cluster {
            replicas,
            outbox: Vec::new(),
            c: Counters::default(),
            next_expected_seq: 0,
            completed: 0,
            payload: cfg.payload,
            peak_entries: 0,
            peak_bytes: 0,
        }
    }

    fn apply(&mut self, idx: usize, entries: &[Entry]) {
        for e in entries {
            let r = &mut self.replicas[idx];
            assert_eq!(e.index, r.applied_index.next(), "apply gap");
            r.applied_index = e.index;
            r.applied_bytes += e.data.len() as u64;
            if e.kind != EntryKind::Normal {
                continue; // bootstrap membership, leader's blank entry
            }
            if idx == LEADER {
                assert_eq!(e.data.len(), self.payload);
                let seq = u64::from_le_bytes(e.data[..8].try_into().expect("8 bytes"));
                assert_eq!(seq, self.next_expected_seq, "proposal applied out of order");
                self.next_expected_seq += 1;
                self.completed += 1;
            }
        }
    }

    fn persist(r: &mut Replica, rd: &mut Ready) {
        assert!(rd.snapshot.is_none(), "followers keep up in this workload: no snapshot is ever sent");
        let first_stored = r.stored.front().map_or(1, |e| e.index.0);
        if let Some(from) = rd.truncate_from {
            r.stored.truncate(from.0.saturating_sub(first_stored) as usize);
        }
        if let Some(first) = rd.entries.first() {
            r.stored.truncate(first.index.0.saturating_sub(first_stored) as usize);
            r.stored.extend(rd.entries.drain(..));
        }
        if let Some(hs) = rd.hard_state {
            r.hard_state = hs;
        }
    }

    /// The state machine's snapshot: its applied index and byte count (all it holds).
    fn take_snapshot(&mut self, idx: usize) {
        let r = &mut self.replicas[idx];
        let mut data = r.applied_index.0.to_le_bytes().to_vec();
        data.extend_from_slice(&r.applied_bytes.to_le_bytes());
        let meta = r.node.compact(SnapshotData { index: r.applied_index, data: Bytes::from(data) }).expect("snapshot at the applied index");
        // The driver's durable copy drops what the snapshot covers, too.
        while r.stored.front().is_some_and(|e| e.index <= meta.last.index) {
            r.stored.pop_front();
        }
        self.c.snapshots += 1;
    }

    /// Handles every Ready node `idx` has. Returns whether it had any.
    fn handle_readies(&mut self, idx: usize) -> bool {
        let mut any = false;
        while self.replicas[idx].node.has_ready() {
            any = true;
            self.c.readies += 1;
            let mut rd = self.replicas[idx].node.ready();
            // Messages and entries are moved out of the Ready, as raft-rs's take_messages() does.
            self.outbox.append(&mut rd.messages);
            self.apply(idx, &rd.committed_entries);
            let r = &mut self.replicas[idx];
            Cluster::persist(r, &mut rd);
            r.node.advance(&rd);
            if rd.snapshot_due {
                self.take_snapshot(idx);
            }
        }
        any
    }

    fn round(&mut self, sample_memory: bool) -> bool {
        self.c.rounds += 1;
        let mut any = false;
        for idx in 0..self.replicas.len() {
            any |= self.handle_readies(idx);
        }
        if sample_memory {
            let entries: u64 = self.replicas.iter().map(|r| r.node.resident_entries() as u64).sum();
            let bytes: u64 = self.replicas.iter().map(|r| r.node.resident_bytes()).sum();
            self.peak_entries = self.peak_entries.max(entries);
            self.peak_bytes = self.peak_bytes.max(bytes);
        }
        let msgs = std::mem::take(&mut self.outbox);
        any |= !msgs.is_empty();
        self.c.msgs += msgs.len() as u64;
        for m in msgs {
            let to = (m.to.0 - 1) as usize;
            self.replicas[to].node.step(m).expect("well-formed message");
        }
        any
    }

    /// Elects node 1 and runs until every node applied its blank entry. Not measured.
    fn elect(&mut self) {
        self.replicas[LEADER].node.campaign();
        for _ in 0..1000 {
            if !self.round(false) {
                break;
            }
        }
        assert!(self.replicas[LEADER].node.is_leader());
        let last = self.replicas[LEADER].node.last_entry().index;
        for r in &self.replicas {
            assert_eq!(r.applied_index, last, "election warm-up did not settle");
            assert!(!r.node.has_ready());
        }
    }
}

/// One measured run: N proposals with K outstanding. `sample_memory` adds a few loads per round
/// to track the peak memory of the logs.
pub fn run_once(cfg: &BenchConfig, k: usize, n: u64, sample_memory: bool) -> RunResult {
    let mut cl = Cluster::new(cfg);
    cl.elect();
    cl.c = Counters::default();
    let template: Vec<u8> = (0..cfg.payload).map(|i| (i as u8).wrapping_mul(31)).collect();
    let mut proposed: u64 = 0;
    let mut idle_rounds = 0u32;

    let cpu0 = ProcessTime::now();
    let t0 = Instant::now();
    while cl.completed < n {
        let in_flight = proposed - cl.completed;
        let want = (k as u64).saturating_sub(in_flight).min(n - proposed);
        for _ in 0..want {
            let mut data = template.clone();
            data[..8].copy_from_slice(&proposed.to_le_bytes());
            cl.replicas[LEADER].node.propose(data).expect("leader accepts");
            proposed += 1;
        }
        if cl.round(sample_memory) {
            idle_rounds = 0;
        } else {
            idle_rounds += 1;
            assert!(idle_rounds < 3, "cluster stalled with {} in flight", proposed - cl.completed);
        }
    }
    let wall = t0.elapsed();
    let cpu = cpu0.elapsed();

    // Followers catch up (unmeasured), then all agree.
    while cl.round(sample_memory) {}
    let last = cl.replicas[LEADER].applied_index;
    for r in &cl.replicas {
        assert_eq!(r.applied_index, last);
        assert_eq!(r.hard_state.commit, last);
        assert_eq!(r.stored.back().map(|e| e.index), Some(last), "every entry persisted");
    }
    assert_eq!(cl.completed, n);
    RunResult {
        n,
        wall_s: wall.as_secs_f64(),
        cpu_us: cpu.as_secs_f64() * 1e6,
        c: cl.c,
        peak_entries: cl.peak_entries,
        peak_bytes: cl.peak_bytes,
    }
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim().to_string()
}

/// Prints usage (and an error) and exits with status 2.
pub fn usage(text: &str, error: &str) -> ! {
    if !error.is_empty() {
        eprintln!("error: {error}");
    }
    eprintln!("{text}");
    std::process::exit(2)
}
