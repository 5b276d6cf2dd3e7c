//! The `raft-sim` command: run one seed, or explore many.

use std::io::Write;
use std::ops::Range;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, Parser, Subcommand};
use raft_sim::{explore, run, shrink, LinearizabilityStatus, Options, Overrides, RunReport, Schedule, SeedResult, Violation};

/// Deterministic simulator for raft-core: drives a cluster through crashes, partitions, message
/// loss, duplication, reordering and delay, slow disks and membership changes, checks Raft's
/// safety properties after every event and the client history for linearizability, and replays
/// any run bit for bit from its seed.
#[derive(Parser)]
#[command(name = "raft-sim", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one seed: print its options, a summary and the trace hash. Exits 1 on a violation,
    /// after printing a shrunk reproduction.
    Run {
        /// The seed; every option not given below is drawn from it.
        #[arg(long)]
        seed: u64,
        /// Write the event log to this file.
        #[arg(long, value_name = "FILE")]
        trace: Option<PathBuf>,
        /// Use this fault schedule instead of the seed's (e.g. 'crash@1200:3,restart@1800:3');
        /// an empty string runs without scheduled faults.
        #[arg(long, value_name = "SPEC")]
        faults: Option<String>,
        /// Do not shrink a failing run.
        #[arg(long)]
        no_shrink: bool,
        #[command(flatten)]
        options: OptionFlags,
    },
    /// Run many seeds in parallel; print a summary. Exits 1 if any seed violates a property,
    /// after shrinking the first failing seed.
    Explore {
        /// Seeds to run, as START..END (END excluded), e.g. 0..1000.
        #[arg(long, value_name = "A..B", value_parser = parse_seeds)]
        seeds: Range<u64>,
        /// Worker threads (default: the number of CPUs).
        #[arg(long)]
        jobs: Option<usize>,
        /// Use this fault schedule for every seed instead of each seed's own.
        #[arg(long, value_name = "SPEC")]
        faults: Option<String>,
        /// Do not shrink the first failing seed.
        #[arg(long)]
        no_shrink: bool,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
        #[command(flatten)]
        options: OptionFlags,
    },
}

/// Options that override what the seed would draw.
#[derive(Args, Clone, Debug)]
struct OptionFlags {
    /// Initial voters.
    #[arg(long)]
    nodes: Option<u64>,
    /// Extra servers that membership changes may add.
    #[arg(long)]
    spares: Option<u64>,
    /// Length of the fault phase, virtual milliseconds.
    #[arg(long, value_name = "MS")]
    duration: Option<u64>,
    /// Bound on the liveness phase, virtual milliseconds.
    #[arg(long, value_name = "MS")]
    liveness: Option<u64>,
    /// Message loss, parts per million.
    #[arg(long, value_name = "PPM")]
    loss: Option<u32>,
    /// Message duplication, parts per million.
    #[arg(long, value_name = "PPM")]
    dup: Option<u32>,
    /// Long message delays, parts per million.
    #[arg(long, value_name = "PPM")]
    long_delay: Option<u32>,
    /// Mean time between crashes, milliseconds (0: none).
    #[arg(long, value_name = "MS")]
    crash_every: Option<u64>,
    /// Mean time between network faults, milliseconds (0: none).
    #[arg(long, value_name = "MS")]
    partition_every: Option<u64>,
    /// Mean time between membership changes, milliseconds (0: none).
    #[arg(long, value_name = "MS")]
    membership_every: Option<u64>,
    /// Concurrent clients.
    #[arg(long)]
    clients: Option<u64>,
    /// Keys the clients use.
    #[arg(long)]
    keys: Option<u64>,
    /// Message size limit, bytes.
    #[arg(long, value_name = "BYTES")]
    max_bytes_per_msg: Option<u64>,
    /// Snapshot every this many applied entries (0: never).
    #[arg(long, value_name = "ENTRIES")]
    compaction: Option<u64>,
    /// PreVote on or off.
    #[arg(long, value_name = "BOOL")]
    pre_vote: Option<bool>,
    /// CheckQuorum on or off.
    #[arg(long, value_name = "BOOL")]
    check_quorum: Option<bool>,
    /// Crashes may tear the first unsynced record.
    #[arg(long, value_name = "BOOL")]
    torn_writes: Option<bool>,
}

impl OptionFlags {
    fn overrides(&self) -> Overrides {
        Overrides {
            nodes: self.nodes,
            spares: self.spares,
            duration_ms: self.duration,
            liveness_ms: self.liveness,
            loss_ppm: self.loss,
            dup_ppm: self.dup,
            long_delay_ppm: self.long_delay,
            crash_every_ms: self.crash_every,
            partition_every_ms: self.partition_every,
            membership_every_ms: self.membership_every,
            clients: self.clients,
            keys: self.keys,
            max_bytes_per_msg: self.max_bytes_per_msg,
            compaction_entries: self.compaction,
            pre_vote: self.pre_vote,
            check_quorum: self.check_quorum,
            torn_writes: self.torn_writes,
        }
    }
}

fn parse_seeds(s: &str) -> Result<Range<u64>, String> {
    let (a, b) = s.split_once("..").ok_or_else(|| format!("expected START..END, got '{s}'"))?;
    let a: u64 = a.trim().parse().map_err(|_| format!("bad start seed '{a}'"))?;
    let b: u64 = b.trim().parse().map_err(|_| format!("bad end seed '{b}'"))?;
    if a >= b {
        return Err(format!("empty seed range {a}..{b}"));
    }
    Ok(a..b)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { seed, trace, faults, no_shrink, options } => cmd_run(seed, trace, faults, no_shrink, options.overrides()),
        Command::Explore { seeds, jobs, faults, no_shrink, quiet, options } => {
            cmd_explore(seeds, jobs, faults, no_shrink, quiet, options.overrides())
        }
    }
}

fn fail(msg: String) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(2)
}

fn options_for(seed: u64, overrides: &Overrides) -> Result<Options, String> {
    let options = Options::derive(seed, overrides);
    options.validate()?;
    Ok(options)
}

fn parse_faults(spec: Option<&str>) -> Result<Option<Schedule>, String> {
    spec.map(|s| Schedule::parse(s).map_err(|e| format!("--faults: {e}"))).transpose()
}

fn print_summary(r: &RunReport) {
    let s = &r.stats;
    let faults: Vec<String> = s.faults.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!("summary:");
    println!("  events          {}", s.events);
    println!("  virtual time    {:.3}s", s.virtual_us as f64 / 1e6);
    println!("  elections       {}", s.elections);
    println!("  commit index    {}", s.commit_index);
    println!("  faults          {}", if faults.is_empty() { "none".to_string() } else { faults.join(" ") });
    println!(
        "  messages        sent={} lost={} duplicated={}  fsyncs={} records lost in crashes={}",
        s.messages_sent, s.messages_lost, s.messages_duplicated, s.fsyncs, s.records_lost
    );
    println!("  snapshots       taken={} installed={}", s.snapshots_taken, s.snapshots_installed);
    println!("  client ops      completed={} unknown={} in history={}", s.ops_completed, s.ops_unknown, s.history_len);
    let lin = match &r.linearizability {
        LinearizabilityStatus::Linearizable => format!("linearizable ({} operations)", s.history_len),
        LinearizabilityStatus::Inconclusive(why) => format!("inconclusive: {why}"),
        LinearizabilityStatus::NotChecked => "not checked".to_string(),
    };
    println!("  history         {lin}");
    println!("trace hash: {:016x}", r.trace_hash);
}

fn print_violation(v: &Violation, seed: u64) {
    println!("VIOLATION (seed {seed}): {}", v.property);
    let nodes: Vec<String> = v.nodes.iter().map(|n| n.to_string()).collect();
    println!("  nodes involved: {}", if nodes.is_empty() { "-".to_string() } else { nodes.join(", ") });
    println!("  at {:.3}ms: {}", v.at_us as f64 / 1000.0, v.detail);
}

fn report_shrunk(seed: u64, overrides: &Overrides, schedule: &Schedule, v: &Violation) {
    eprintln!("shrinking (re-running with fewer faults)...");
    let s = shrink(seed, overrides, schedule, v, 300);
    println!(
        "shrunk in {} re-runs: {} fault(s) left (from {}): {}",
        s.trials,
        s.schedule.faults.len(),
        schedule.faults.len(),
        if s.schedule.faults.is_empty() { "none".to_string() } else { s.schedule.to_string() }
    );
    println!("  still violates {}: {}", s.violation.property, s.violation.detail);
    println!("replay: {}", s.command());
}

fn cmd_run(seed: u64, trace: Option<PathBuf>, faults: Option<String>, no_shrink: bool, overrides: Overrides) -> ExitCode {
    let options = match options_for(seed, &overrides) {
        Ok(o) => o,
        Err(e) => return fail(e),
    };
    let schedule = match parse_faults(faults.as_deref()) {
        Ok(s) => s.unwrap_or_else(|| Schedule::generate(seed, &options)),
        Err(e) => return fail(e),
    };
    println!("raft-sim run --seed {seed}");
    println!("options (drawn from the seed unless given on the command line):");
    println!("{options}");
    println!("faults ({}): {}", schedule.faults.len(), if schedule.faults.is_empty() { "none".to_string() } else { schedule.to_string() });
    let start = Instant::now();
    let report = run(seed, &options, &schedule, trace.is_some());
    let wall = start.elapsed();
    print_summary(&report);
    eprintln!(
        "wall time: {:.3}s ({:.0} virtual seconds per wall second)",
        wall.as_secs_f64(),
        report.stats.virtual_us as f64 / 1e6 / wall.as_secs_f64().max(1e-9)
    );
    if let (Some(path), Some(lines)) = (&trace, &report.trace) {
        let written = std::fs::File::create(path).and_then(|mut f| {
            for l in lines {
                writeln!(f, "{l}")?;
            }
            Ok(())
        });
        if let Err(e) = written {
            return fail(format!("cannot write the trace to {}: {e}", path.display()));
        }
        eprintln!("trace: {} events written to {}", lines.len(), path.display());
    }
    match &report.violation {
        None => {
            println!("result: OK");
            ExitCode::SUCCESS
        }
        Some(v) => {
            print_violation(v, seed);
            if !no_shrink {
                report_shrunk(seed, &overrides, &schedule, v);
            }
            ExitCode::from(1)
        }
    }
}

fn cmd_explore(
    seeds: Range<u64>,
    jobs: Option<usize>,
    faults: Option<String>,
    no_shrink: bool,
    quiet: bool,
    overrides: Overrides,
) -> ExitCode {
    if let Err(e) = options_for(seeds.start, &overrides) {
        return fail(e);
    }
    let fixed = match parse_faults(faults.as_deref()) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let jobs = jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1);
    let total = seeds.end - seeds.start;
    println!("raft-sim explore --seeds {}..{} ({total} seeds, {jobs} jobs)", seeds.start, seeds.end);
    let start = Instant::now();
    let mut last_draw = Instant::now();
    let results = explore(seeds.clone(), jobs, &overrides, fixed.as_ref(), |done: &[SeedResult]| {
        let n = done.len() as u64;
        if quiet || (n < total && last_draw.elapsed().as_millis() < 200) {
            return;
        }
        last_draw = Instant::now();
        let width = 30;
        let filled = (n * width / total) as usize;
        let bad = done.iter().filter(|r| r.violation.is_some()).count();
        let rate = n as f64 / start.elapsed().as_secs_f64().max(1e-9);
        eprint!(
            "\r[{}{}] {n}/{total} seeds  {rate:.1} seeds/s  {bad} violations ",
            "#".repeat(filled),
            ".".repeat(width as usize - filled)
        );
        if n == total {
            eprintln!();
        }
    });
    let wall = start.elapsed().as_secs_f64().max(1e-9);
    let events: u64 = results.iter().map(|r| r.events).sum();
    let virtual_s: f64 = results.iter().map(|r| r.virtual_us as f64 / 1e6).sum();
    let failing: Vec<&SeedResult> = results.iter().filter(|r| r.violation.is_some()).collect();
    let inconclusive = results.iter().filter(|r| r.inconclusive).count();
    println!(
        "summary: {} seeds in {wall:.1}s: {:.1} seeds/s, {:.0} events/s, {:.0} virtual s per wall s",
        results.len(),
        results.len() as f64 / wall,
        events as f64 / wall,
        virtual_s / wall
    );
    println!("violations: {}   inconclusive linearizability checks: {inconclusive}", failing.len());
    for r in failing.iter().take(10) {
        let v = r.violation.as_ref().expect("failing");
        println!("  seed {}: {} — {}", r.seed, v.property, v.detail);
    }
    if failing.len() > 10 {
        println!("  ... and {} more", failing.len() - 10);
    }
    let Some(first) = failing.first() else {
        return ExitCode::SUCCESS;
    };
    let v = first.violation.as_ref().expect("failing");
    println!();
    print_violation(v, first.seed);
    if !no_shrink {
        let options = Options::derive(first.seed, &overrides);
        let schedule = fixed.clone().unwrap_or_else(|| Schedule::generate(first.seed, &options));
        report_shrunk(first.seed, &overrides, &schedule, v);
    }
    ExitCode::from(1)
}
