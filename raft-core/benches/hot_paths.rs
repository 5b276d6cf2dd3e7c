//! Criterion micro-benchmarks of raft-core's hot paths. Measurements, not tests: the figures
//! for comparison with raft-rs come from `examples/throughput.rs`; these show where the time of
//! one replication round goes.
//!
//! ```text
//! cargo bench -p raft-core --bench hot_paths
//! ```
//!
//! - `quorum/majority_committed/N`: the commit index a leader computes from N voters' match
//!   indexes (every acknowledgement that moves a match index runs it).
//! - `quorum/joint_committed`: the same for a joint configuration (3 outgoing + 3 incoming).
//! - `replication/round/K`: a 3-voter cluster in memory, one leader round of K proposals of 128
//!   bytes: append to the leader's log, one batched AppendEntries per follower, the followers'
//!   appends and acknowledgements, the commit, and applying on every node. Throughput is in
//!   proposals.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use raft_core::quorum::majority_committed;
use raft_core::{Bootstrap, Config, LogIndex, Membership, Message, Node, NodeId, SnapshotData};

fn quorum(c: &mut Criterion) {
    let mut group = c.benchmark_group("quorum");
    for n in [3u64, 5, 7] {
        let voters: Vec<NodeId> = (1..=n).map(NodeId).collect();
        // Distinct match indexes in no particular order, as acknowledgements leave them.
        let matched: Vec<u64> = (1..=n).map(|i| 1_000 + (i * 7919) % 97).collect();
        group.bench_with_input(BenchmarkId::new("majority_committed", n), &voters, |b, voters| {
            b.iter(|| majority_committed(black_box(voters), |id| matched[(id.0 - 1) as usize]));
        });
    }
    let joint = Membership::from_parts((4..=6).map(NodeId), (1..=3).map(NodeId), []).expect("a valid joint configuration");
    let matched: Vec<u64> = (1..=6).map(|i| 1_000 + (i * 7919) % 97).collect();
    group.bench_function("joint_committed", |b| b.iter(|| black_box(&joint).committed(|id| matched[(id.0 - 1) as usize])));
    group.finish();
}

/// Three voters moving messages in memory; persistence is acknowledged at once, and each node
/// snapshots (an empty state machine) whenever its Ready says one is due, so the logs stay
/// bounded however long criterion runs.
struct Cluster {
    nodes: Vec<Node>,
    mailbox: Vec<Message>,
    /// Entries each node applied, by index (all kinds).
    applied: Vec<LogIndex>,
}

impl Cluster {
    fn new() -> Cluster {
        let ids: Vec<NodeId> = (1..=3).map(NodeId).collect();
        let nodes = ids
            .iter()
            .map(|&id| {
                let mut config = Config::new(id);
                config.max_uncommitted_bytes = u64::MAX;
                Node::new(config, Bootstrap::NewCluster { voters: ids.clone() }).expect("a valid configuration")
            })
            .collect();
        let mut cluster = Cluster { nodes, mailbox: Vec::new(), applied: vec![LogIndex(0); 3] };
        cluster.nodes[0].campaign();
        while cluster.round() {}
        assert!(cluster.nodes[0].is_leader(), "node 1 won the election");
        cluster
    }

    /// Handles every node's Readies, then delivers the messages. Returns whether anything
    /// happened.
    fn round(&mut self) -> bool {
        let mut any = false;
        for (i, node) in self.nodes.iter_mut().enumerate() {
            while node.has_ready() {
                any = true;
                let mut rd = node.ready();
                self.mailbox.append(&mut rd.messages);
                if let Some(last) = rd.committed_entries.last() {
                    self.applied[i] = last.index;
                }
                node.advance(&rd);
                if rd.snapshot_due {
                    node.compact(SnapshotData { index: self.applied[i], data: Bytes::new() }).expect("a snapshot at the applied index");
                }
            }
        }
        for m in std::mem::take(&mut self.mailbox) {
            any = true;
            let to = (m.to.0 - 1) as usize;
            self.nodes[to].step(m).expect("a well-formed message");
        }
        any
    }
}

fn replication(c: &mut Criterion) {
    let mut group = c.benchmark_group("replication");
    let payload = Bytes::from(vec![7u8; 128]);
    for k in [1u64, 64, 1024] {
        group.throughput(Throughput::Elements(k));
        group.bench_with_input(BenchmarkId::new("round", k), &k, |b, &k| {
            let mut cluster = Cluster::new();
            b.iter(|| {
                let target = cluster.applied[0].0 + k;
                for _ in 0..k {
                    cluster.nodes[0].propose(payload.clone()).expect("the leader accepts");
                }
                while cluster.round() {}
                assert_eq!(cluster.applied[0].0, target, "every proposal of the round was applied");
            });
        });
    }
    group.finish();
}

criterion_group!(benches, quorum, replication);
criterion_main!(benches);
