//! Durable log rates on this machine's disk: buffered appends, one fsync per entry (also with
//! and without preallocated segment space), group commit (64 entries per fsync), and recovery. A measurement, not a test.
//!
//! ```text
//! cargo run --release -p raft-net --example storage_bench [DIR]
//! ```

use std::path::PathBuf;
use std::time::Instant;

use bytes::Bytes;
use raft_core::{Entry, EntryKind, HardState, LogIndex, NodeId, Term};
use raft_net::storage::{DurableLog, Options};

fn main() {
    let base = std::env::args().nth(1).map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!("raftkv-storage-bench-{}", std::process::id()));
    let mut log = DurableLog::create(&dir, NodeId(1), 1, Options::default()).expect("create a data dir");
    let payload = Bytes::from(vec![7u8; 128]);
    let make = |i: u64| Entry { term: Term(1), index: LogIndex(i), kind: EntryKind::Normal, data: payload.clone() };

    let n = 1_000_000u64;
    let start = Instant::now();
    for i in 1..=n {
        log.append(None, &[make(i)], None).expect("append");
    }
    log.sync().expect("sync");
    let secs = start.elapsed().as_secs_f64();
    println!("append:       {n} entries of 128 bytes in {secs:.2}s: {:.0} appends/s", n as f64 / secs);

    let syncs = 200u64;
    let start = Instant::now();
    for i in n + 1..=n + syncs {
        log.append(None, &[make(i)], Some(HardState { term: Term(1), vote: None, commit: LogIndex(i - 1) })).expect("append");
        log.sync().expect("sync");
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "fsync:        {syncs} append+fdatasync rounds in {secs:.2}s: {:.0} fsyncs/s ({:.2} ms each)",
        syncs as f64 / secs,
        secs * 1000.0 / syncs as f64
    );

    // One entry per fdatasync, in a fresh log, with and without preallocated segment space,
    // alternating so both see the same disk weather.
    let mut logs: Vec<(&str, DurableLog, Vec<f64>)> = [("preallocated", 4u64 << 20), ("not preallocated", 0)]
        .into_iter()
        .map(|(name, preallocate_bytes)| {
            let options = Options { preallocate_bytes, ..Options::default() };
            (name, DurableLog::create(&dir.join(name.replace(' ', "-")), NodeId(1), 1, options).expect("create"), Vec::new())
        })
        .collect();
    for i in 1..=1000u64 {
        for (_, log, times) in &mut logs {
            let start = Instant::now();
            log.append(None, &[make(i)], None).expect("append");
            log.sync().expect("sync");
            times.push(start.elapsed().as_secs_f64() * 1000.0);
        }
    }
    for (name, _, mut times) in logs {
        times.sort_by(f64::total_cmp);
        let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
        println!("fsync, {name:<16}: 1000 append+fdatasync rounds: p50 {:.3} ms, p99 {:.3} ms", at(0.5), at(0.99));
    }

    let rounds = 200u64;
    let start = Instant::now();
    let mut next = n + syncs + 1;
    for _ in 0..rounds {
        let batch: Vec<Entry> = (next..next + 64).map(make).collect();
        next += 64;
        log.append(None, &batch, None).expect("append");
        log.sync().expect("sync");
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "group commit: {} entries in {rounds} fsyncs in {secs:.2}s: {:.0} durable entries/s",
        rounds * 64,
        (rounds * 64) as f64 / secs
    );

    drop(log);
    let start = Instant::now();
    let (_, recovered) = DurableLog::open(&dir, Options::default()).expect("reopen");
    println!("recovery:     {} entries in {:.2}s", recovered.entries.len(), start.elapsed().as_secs_f64());
    std::fs::remove_dir_all(&dir).expect("clean up");
}
