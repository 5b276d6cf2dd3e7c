//! Throughput benchmark: the workload of `../shared/anchors/raftrs-bench` (tikv's raft-rs),
//! ported to raft-core, so the two can be run back to back and compared.
//!
//! 3 voters in one thread; messages moved (not encoded) through an in-memory outbox; "persist" =
//! append to an in-memory store per node; 128-byte payloads whose first 8 bytes are a sequence
//! number; a closed loop keeping K proposals outstanding at the leader; the logical clock is never
//! ticked. A proposal completes when the leader applies it. See the anchor's README for the
//! workload, kept exactly; raft-core's own defaults that differ from raft-rs's (PreVote,
//! CheckQuorum, limits) are set to raft-rs's values here.
//!
//! ```text
//! cargo run --release -p raft-core --example throughput -- --k 1,8,64,1024 --runs 5
//! ```

use std::time::Instant;

use cpu_time::ProcessTime;
use raft_core::{Bootstrap, CompactionPolicy, Config, Entry, EntryKind, HardState, LogIndex, Message, Node, NodeId, Ready};

const LEADER: usize = 0;

#[derive(Clone, Debug)]
struct Opts {
    ks: Vec<usize>,
    n: u64,
    n_k1: u64,
    runs: usize,
    payload: usize,
    max_bytes_per_msg: u64,
    max_inflight_msgs: usize,
}

fn usage(error: &str) -> ! {
    if !error.is_empty() {
        eprintln!("error: {error}");
    }
    eprintln!(
        "usage: throughput [--k 1,8,64,1024] [--n 200000] [--n-k1 200000] [--runs 5] [--payload 128] \
         [--max-size-per-msg 1048576] [--max-inflight-msgs 256]"
    );
    std::process::exit(2)
}

fn parse_opts() -> Opts {
    let mut o = Opts {
        ks: vec![1, 8, 64, 1024],
        n: 200_000,
        n_k1: 200_000,
        runs: 5,
        payload: 128,
        max_bytes_per_msg: 1 << 20,
        max_inflight_msgs: 256,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            usage("");
        }
        let value = args.next().unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        let num = |v: &str| v.trim().parse::<u64>().unwrap_or_else(|_| usage(&format!("{flag}: not a number: {v}")));
        match flag.as_str() {
            "--k" => o.ks = value.split(',').map(|s| num(s) as usize).collect(),
            "--n" => o.n = num(&value),
            "--n-k1" => o.n_k1 = num(&value),
            "--runs" => o.runs = num(&value) as usize,
            "--payload" => o.payload = num(&value) as usize,
            "--max-size-per-msg" => o.max_bytes_per_msg = num(&value),
            "--max-inflight-msgs" => o.max_inflight_msgs = num(&value) as usize,
            _ => usage(&format!("unknown flag {flag}")),
        }
    }
    if o.payload < 8 {
        usage("--payload must hold an 8-byte sequence number");
    }
    if o.ks.is_empty() || o.ks.contains(&0) || o.runs == 0 {
        usage("--k values and --runs must be at least 1");
    }
    o
}

/// One replica: the node, its in-memory "disk", and a trivial state machine.
struct Replica {
    node: Node,
    stored: Vec<Entry>,
    hard_state: HardState,
    applied_index: LogIndex,
    applied_bytes: u64,
}

#[derive(Default, Clone, Copy, Debug)]
struct Counters {
    rounds: u64,
    readies: u64,
    msgs: u64,
}

struct Cluster {
    replicas: Vec<Replica>,
    outbox: Vec<Message>,
    c: Counters,
    next_expected_seq: u64,
    completed: u64,
    payload: usize,
}

impl Cluster {
    fn new(o: &Opts) -> Cluster {
        let ids: Vec<NodeId> = (1..=3).map(NodeId).collect();
        let replicas = ids
            .iter()
            .map(|&id| {
                let mut config = Config::new(id);
                config.election_ticks = 10;
                config.heartbeat_ticks = 1;
                config.max_inflight_msgs = o.max_inflight_msgs;
                config.max_bytes_per_msg = o.max_bytes_per_msg;
                // raft-rs 0.7 defaults, as in the anchor.
                config.pre_vote = false;
                config.check_quorum = false;
                config.max_uncommitted_bytes = u64::MAX;
                config.max_committed_bytes_per_ready = u64::MAX;
                config.compaction = CompactionPolicy::NEVER;
                let node = Node::new(config, Bootstrap::NewCluster { voters: ids.clone() }).expect("valid config");
                Replica { node, stored: Vec::new(), hard_state: HardState::default(), applied_index: LogIndex(0), applied_bytes: 0 }
            })
            .collect();
        Cluster { replicas, outbox: Vec::new(), c: Counters::default(), next_expected_seq: 0, completed: 0, payload: o.payload }
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
        if let Some(from) = rd.truncate_from {
            r.stored.truncate((from.0 - 1) as usize);
        }
        if let Some(first) = rd.entries.first() {
            r.stored.truncate((first.index.0 - 1) as usize);
            r.stored.append(&mut rd.entries);
        }
        if let Some(hs) = rd.hard_state {
            r.hard_state = hs;
        }
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
            assert!(rd.snapshot.is_none(), "no snapshots in this workload");
            self.apply(idx, &rd.committed_entries);
            let r = &mut self.replicas[idx];
            Cluster::persist(r, &mut rd);
            r.node.advance(&rd);
        }
        any
    }

    fn round(&mut self) -> bool {
        self.c.rounds += 1;
        let mut any = false;
        for idx in 0..self.replicas.len() {
            any |= self.handle_readies(idx);
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
            if !self.round() {
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

#[derive(Clone, Copy, Debug)]
struct RunResult {
    n: u64,
    wall_s: f64,
    cpu_us: f64,
    c: Counters,
}

fn run_once(o: &Opts, k: usize, n: u64) -> RunResult {
    let mut cl = Cluster::new(o);
    cl.elect();
    cl.c = Counters::default();
    let template: Vec<u8> = (0..o.payload).map(|i| (i as u8).wrapping_mul(31)).collect();
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
        if cl.round() {
            idle_rounds = 0;
        } else {
            idle_rounds += 1;
            assert!(idle_rounds < 3, "cluster stalled with {} in flight", proposed - cl.completed);
        }
    }
    let wall = t0.elapsed();
    let cpu = cpu0.elapsed();

    // Followers catch up (unmeasured), then all agree.
    while cl.round() {}
    let last = cl.replicas[LEADER].applied_index;
    for r in &cl.replicas {
        assert_eq!(r.applied_index, last);
        assert_eq!(r.hard_state.commit, last);
        assert_eq!(r.stored.len() as u64, last.0, "every entry persisted");
    }
    assert_eq!(cl.completed, n);
    RunResult { n, wall_s: wall.as_secs_f64(), cpu_us: cpu.as_secs_f64() * 1e6, c: cl.c }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim().to_string()
}

fn main() {
    let o = parse_opts();
    println!(
        "raft-core (this workspace) | 3 voters, 1 thread | payload {} B | max_inflight_msgs {} | max_size_per_msg {} | runs {} (median)",
        o.payload, o.max_inflight_msgs, o.max_bytes_per_msg, o.runs
    );
    println!("loadavg at start: {}", loadavg());
    let mut rows = Vec::new();
    for &k in &o.ks {
        let n = if k == 1 { o.n_k1 } else { o.n };
        let res: Vec<RunResult> = (0..o.runs)
            .map(|r| {
                let rr = run_once(&o, k, n);
                eprintln!(
                    "  K={:<5} run {}: {:>10.0} prop/s  {:>7.3} us CPU/prop  rounds {}  readies {}  msgs {}  wall {:.3}s",
                    k,
                    r + 1,
                    rr.n as f64 / rr.wall_s,
                    rr.cpu_us / rr.n as f64,
                    rr.c.rounds,
                    rr.c.readies,
                    rr.c.msgs,
                    rr.wall_s
                );
                rr
            })
            .collect();
        rows.push((k, n, res));
    }
    println!();
    println!("| K | proposals/run | proposals/s (wall, median) | min–max | CPU µs/proposal (median) | min–max | Ready rounds | rounds/proposal | Readies handled | messages delivered | messages/proposal |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (k, n, res) in rows {
        let tputs: Vec<f64> = res.iter().map(|r| r.n as f64 / r.wall_s).collect();
        let cpus: Vec<f64> = res.iter().map(|r| r.cpu_us / r.n as f64).collect();
        let rounds = median(res.iter().map(|r| r.c.rounds as f64).collect());
        let msgs = median(res.iter().map(|r| r.c.msgs as f64).collect());
        println!(
            "| {} | {} | {:.0} | {:.0}–{:.0} | {:.3} | {:.3}–{:.3} | {:.0} | {:.3} | {:.0} | {:.0} | {:.3} |",
            k,
            n,
            median(tputs.clone()),
            tputs.iter().cloned().fold(f64::INFINITY, f64::min),
            tputs.iter().cloned().fold(0.0, f64::max),
            median(cpus.clone()),
            cpus.iter().cloned().fold(f64::INFINITY, f64::min),
            cpus.iter().cloned().fold(0.0, f64::max),
            rounds,
            rounds / n as f64,
            median(res.iter().map(|r| r.c.readies as f64).collect()),
            msgs,
            msgs / n as f64,
        );
    }
    println!("loadavg at end: {}", loadavg());
}
