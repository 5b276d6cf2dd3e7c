//! Throughput benchmark: the workload of `../shared/anchors/raftrs-bench` (tikv's raft-rs),
//! ported to raft-core, so the two can be run back to back and compared. The workload is kept
//! exactly (see `support/mod.rs` and the anchor's README); raft-core's own defaults that differ
//! from raft-rs's (PreVote, CheckQuorum, limits) are set to raft-rs's values.
//!
//! ```text
//! cargo run --release -p raft-core --example throughput -- --k 1,8,64,1024 --runs 5
//! ```

mod support;

use raft_core::CompactionPolicy;
use support::{loadavg, median, run_once, usage, BenchConfig};

const USAGE: &str = "usage: throughput [--k 1,8,64,1024] [--n 200000] [--n-k1 200000] [--runs 5] [--payload 128] \
                     [--max-size-per-msg 1048576] [--max-inflight-msgs 256]";

struct Opts {
    ks: Vec<usize>,
    n: u64,
    n_k1: u64,
    runs: usize,
    cfg: BenchConfig,
}

fn parse_opts() -> Opts {
    let mut o = Opts {
        ks: vec![1, 8, 64, 1024],
        n: 200_000,
        n_k1: 200_000,
        runs: 5,
        // The anchor's workload: no compaction, the log grows for the whole run.
        cfg: BenchConfig { payload: 128, max_bytes_per_msg: 1 << 20, max_inflight_msgs: 256, compaction: CompactionPolicy::NEVER },
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            usage(USAGE, "");
        }
        let value = args.next().unwrap_or_else(|| usage(USAGE, &format!("{flag} needs a value")));
        let num = |v: &str| v.trim().parse::<u64>().unwrap_or_else(|_| usage(USAGE, &format!("{flag}: not a number: {v}")));
        match flag.as_str() {
            "--k" => o.ks = value.split(',').map(|s| num(s) as usize).collect(),
            "--n" => o.n = num(&value),
            "--n-k1" => o.n_k1 = num(&value),
            "--runs" => o.runs = num(&value) as usize,
            "--payload" => o.cfg.payload = num(&value) as usize,
            "--max-size-per-msg" => o.cfg.max_bytes_per_msg = num(&value),
            "--max-inflight-msgs" => o.cfg.max_inflight_msgs = num(&value) as usize,
            _ => usage(USAGE, &format!("unknown flag {flag}")),
        }
    }
    if o.cfg.payload < 8 {
        usage(USAGE, "--payload must hold an 8-byte sequence number");
    }
    if o.ks.is_empty() || o.ks.contains(&0) || o.runs == 0 || o.n == 0 || o.n_k1 == 0 {
        usage(USAGE, "--k values, --n, --n-k1 and --runs must be at least 1");
    }
    o
}

fn main() {
    let o = parse_opts();
    println!(
        "raft-core (this workspace) | 3 voters, 1 thread | payload {} B | max_inflight_msgs {} | max_size_per_msg {} | runs {} (median)",
        o.cfg.payload, o.cfg.max_inflight_msgs, o.cfg.max_bytes_per_msg, o.runs
    );
    println!("loadavg at start: {}", loadavg());
    let mut rows = Vec::new();
    for &k in &o.ks {
        let n = if k == 1 { o.n_k1 } else { o.n };
        let res: Vec<_> = (0..o.runs)
            .map(|r| {
                let rr = run_once(&o.cfg, k, n, false);
                eprintln!(
                    "  K={:<5} run {}: {:>10.0} prop/s  {:>7.3} us CPU/prop  rounds {}  readies {}  msgs {}  wall {:.3}s",
                    k,
                    r + 1,
                    rr.per_second(),
                    rr.cpu_us_per_proposal(),
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
        let tputs: Vec<f64> = res.iter().map(|r| r.per_second()).collect();
        let cpus: Vec<f64> = res.iter().map(|r| r.cpu_us_per_proposal()).collect();
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
