//! Compaction benchmark: the throughput bench's workload at K = 64, committing many 128-byte
//! proposals with the default compaction policy (the driver snapshots its state machine whenever a
//! Ready says `snapshot_due`, and drops the log behind it) and again with compaction off. Prints,
//! for each, proposals per second and the peak number and bytes of log entries held in memory by
//! the three nodes, then one summary line.
//!
//! ```text
//! cargo run --release -p raft-core --example compaction -- --proposals 10000000
//! ```
//!
//! Without compaction every entry stays in memory, so that run is capped at `--uncompacted`
//! proposals (default 2,000,000, about 2 GB) unless `--no-compaction-proposals` says otherwise;
//! the throughput ratio compares proposals per second, which does not depend on the run length
//! once the run is long enough.

mod support;

use raft_core::CompactionPolicy;
use support::{loadavg, run_once, usage, BenchConfig, RunResult};

const USAGE: &str = "usage: compaction [--proposals 10000000] [--uncompacted 2000000] [--k 64] [--payload 128] [--no-compaction]";

fn report(label: &str, r: &RunResult) {
    println!(
        "{label:<28} {:>10} proposals  {:>9.0} proposals/s  {:>6.3} us CPU/proposal  peak {:>9} entries  {:>12} bytes  snapshots {}",
        r.n,
        r.per_second(),
        r.cpu_us_per_proposal(),
        r.peak_entries,
        r.peak_bytes,
        r.c.snapshots
    );
}

fn main() {
    let (mut proposals, mut uncompacted, mut k, mut payload, mut with_compaction) = (10_000_000u64, 2_000_000u64, 64usize, 128usize, true);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--no-compaction" {
            with_compaction = false;
            continue;
        }
        if flag == "-h" || flag == "--help" {
            usage(USAGE, "");
        }
        let value = args.next().unwrap_or_else(|| usage(USAGE, &format!("{flag} needs a value")));
        let num = value.trim().parse::<u64>().unwrap_or_else(|_| usage(USAGE, &format!("{flag}: not a number: {value}")));
        match flag.as_str() {
            "--proposals" => proposals = num,
            "--uncompacted" => uncompacted = num,
            "--k" => k = num as usize,
            "--payload" => payload = num as usize,
            _ => usage(USAGE, &format!("unknown flag {flag}")),
        }
    }
    if proposals == 0 || uncompacted == 0 || k == 0 || payload < 8 {
        usage(USAGE, "--proposals, --uncompacted and --k must be at least 1, --payload at least 8");
    }
    let base = BenchConfig { payload, max_bytes_per_msg: 1 << 20, max_inflight_msgs: 256, compaction: CompactionPolicy::default() };
    println!("raft-core compaction | 3 voters, 1 thread | K {k} | payload {payload} B | default policy {:?}", CompactionPolicy::default());
    println!("loadavg at start: {}", loadavg());

    let compacted = with_compaction.then(|| {
        let r = run_once(&base, k, proposals, true);
        report("with compaction", &r);
        r
    });
    let plain = run_once(&BenchConfig { compaction: CompactionPolicy::NEVER, ..base }, k, uncompacted.min(proposals), true);
    report("without compaction", &plain);
    println!("loadavg at end: {}", loadavg());
    if let Some(c) = compacted {
        println!("peak_entries={} peak_bytes={} throughput_ratio={:.3}", c.peak_entries, c.peak_bytes, c.per_second() / plain.per_second());
    } else {
        println!("peak_entries={} peak_bytes={} throughput_ratio=n/a", plain.peak_entries, plain.peak_bytes);
    }
}
