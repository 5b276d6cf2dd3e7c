//! A 3-node cluster in memory: elect a leader, commit a few commands, crash the leader, elect
//! another, commit more, and print what every node applied.
//!
//! ```text
//! cargo run --release -p raft-core --example cluster
//! ```

use std::collections::VecDeque;

use raft_core::{Bootstrap, Config, Entry, EntryKind, HardState, LogIndex, Message, Node, NodeId, PersistedState};

/// One server: the node, what it made durable, and what it applied.
struct Server {
    node: Option<Node>,
    config: Config,
    durable: (HardState, Vec<Entry>),
    applied: Vec<String>,
}

struct Cluster {
    servers: Vec<Server>,
    wire: VecDeque<Message>,
    ticks: u64,
}

impl Cluster {
    fn new(n: u64) -> Cluster {
        let ids: Vec<NodeId> = (1..=n).map(NodeId).collect();
        let servers = ids
            .iter()
            .map(|&id| {
                let mut config = Config::new(id);
                config.seed = 7;
                let node = Node::new(config.clone(), Bootstrap::NewCluster { voters: ids.clone() }).expect("valid config");
                Server { node: Some(node), config, durable: (HardState::default(), Vec::new()), applied: Vec::new() }
            })
            .collect();
        Cluster { servers, wire: VecDeque::new(), ticks: 0 }
    }

    /// Drains every node's Readies, then delivers every message.
    fn pump(&mut self) {
        for s in &mut self.servers {
            let Some(node) = s.node.as_mut() else { continue };
            while node.has_ready() {
                let rd = node.ready();
                if let Some(from) = rd.truncate_from {
                    s.durable.1.retain(|e| e.index < from);
                }
                s.durable.1.extend(rd.entries.iter().cloned());
                if let Some(hs) = rd.hard_state {
                    s.durable.0 = hs;
                }
                self.wire.extend(rd.messages.iter().cloned());
                for e in rd.committed_entries.iter().filter(|e| e.kind == EntryKind::Normal) {
                    s.applied.push(String::from_utf8_lossy(&e.data).into_owned());
                }
                node.advance(&rd);
            }
        }
        while let Some(m) = self.wire.pop_front() {
            if let Some(node) = self.servers[(m.to.0 - 1) as usize].node.as_mut() {
                node.step(m).expect("well-formed message");
            }
        }
    }

    /// Pumps until no message is in flight and no node has a Ready.
    fn settle(&mut self) {
        for _ in 0..100 {
            self.pump();
            let busy = self.servers.iter().any(|s| s.node.as_ref().is_some_and(Node::has_ready));
            if self.wire.is_empty() && !busy {
                return;
            }
        }
        panic!("the cluster never settled");
    }

    fn tick_until_leader(&mut self) -> usize {
        for _ in 0..1000 {
            if let Some(i) = self.servers.iter().position(|s| s.node.as_ref().is_some_and(Node::is_leader)) {
                return i;
            }
            self.ticks += 1;
            for s in &mut self.servers {
                if let Some(node) = s.node.as_mut() {
                    node.tick();
                }
            }
            self.pump();
        }
        panic!("no leader elected");
    }

    fn commit(&mut self, leader: usize, commands: &[&str]) {
        for c in commands {
            self.servers[leader].node.as_mut().expect("leader is up").propose(c.to_string()).expect("leader accepts");
        }
        self.settle();
    }
}

fn main() {
    let mut cluster = Cluster::new(3);
    let leader = cluster.tick_until_leader();
    let term = cluster.servers[leader].node.as_ref().map(Node::term).unwrap_or_default();
    println!("tick {:>3}: node {} elected leader of term {}", cluster.ticks, leader + 1, term);
    cluster.commit(leader, &["set x 1", "set y 2", "set x 3"]);

    println!("tick {:>3}: node {} crashes", cluster.ticks, leader + 1);
    cluster.servers[leader].node = None;
    let next = cluster.tick_until_leader();
    let term = cluster.servers[next].node.as_ref().map(Node::term).unwrap_or_default();
    println!("tick {:>3}: node {} elected leader of term {}", cluster.ticks, next + 1, term);
    cluster.commit(next, &["set z 4", "del y"]);

    // The crashed node restarts from its durable state and catches up.
    let s = &mut cluster.servers[leader];
    let state = PersistedState { hard_state: s.durable.0, entries: s.durable.1.clone(), snapshot: None, applied: LogIndex(0) };
    s.applied.clear(); // its state machine is rebuilt by replaying the log
    s.node = Some(Node::restart(s.config.clone(), state).expect("consistent durable state"));
    println!("tick {:>3}: node {} restarts", cluster.ticks, leader + 1);
    for _ in 0..3 {
        cluster.ticks += 1;
        for s in &mut cluster.servers {
            if let Some(node) = s.node.as_mut() {
                node.tick();
            }
        }
        cluster.settle();
    }

    println!();
    for (i, s) in cluster.servers.iter().enumerate() {
        let node = s.node.as_ref().expect("all up");
        println!("node {} ({:?}, commit index {}): {}", i + 1, node.role(), node.commit_index(), s.applied.join(" | "));
    }
    let reference = &cluster.servers[0].applied;
    assert!(cluster.servers.iter().all(|s| &s.applied == reference), "every node applied the same commands");
    assert_eq!(reference.len(), 5);
    println!("\nall 3 nodes applied the same 5 commands in the same order");
}
