//! Shrinking a failing run to a short reproduction: turn message faults off, remove faults from
//! the schedule (in halves, then one by one), and end the fault phase early, keeping each change
//! only if the run still violates the same property. Every trial is a deterministic re-run.

use crate::check::Violation;
use crate::faults::Schedule;
use crate::options::{Options, Overrides};
use crate::run::run;

/// A smaller failing run.
#[derive(Clone, Debug)]
pub struct Shrunk {
    /// The seed (unchanged).
    pub seed: u64,
    /// The options to give on the command line (the original ones plus what shrinking changed).
    pub overrides: Overrides,
    /// The faults left.
    pub schedule: Schedule,
    /// The violation the shrunk run reports.
    pub violation: Violation,
    /// Re-runs tried.
    pub trials: usize,
}

impl Shrunk {
    /// The command that replays the shrunk run (with the `RUSTFLAGS` of a deliberately broken
    /// build, when this is one).
    pub fn command(&self) -> String {
        let prefix = built_with_bug().map(|b| format!("RUSTFLAGS='--cfg raft_bug=\"{b}\"' ")).unwrap_or_default();
        let mut cmd = format!("{prefix}cargo run --release -p raft-sim -- run --seed {}", self.seed);
        let o = &self.overrides;
        let mut flag = |name: &str, v: Option<String>| {
            if let Some(v) = v {
                cmd.push_str(&format!(" --{name} {v}"));
            }
        };
        flag("nodes", o.nodes.map(|v| v.to_string()));
        flag("spares", o.spares.map(|v| v.to_string()));
        flag("duration", o.duration_ms.map(|v| v.to_string()));
        flag("liveness", o.liveness_ms.map(|v| v.to_string()));
        flag("loss", o.loss_ppm.map(|v| v.to_string()));
        flag("dup", o.dup_ppm.map(|v| v.to_string()));
        flag("long-delay", o.long_delay_ppm.map(|v| v.to_string()));
        flag("clients", o.clients.map(|v| v.to_string()));
        flag("keys", o.keys.map(|v| v.to_string()));
        flag("max-bytes-per-msg", o.max_bytes_per_msg.map(|v| v.to_string()));
        flag("compaction", o.compaction_entries.map(|v| v.to_string()));
        flag("pre-vote", o.pre_vote.map(|v| v.to_string()));
        flag("check-quorum", o.check_quorum.map(|v| v.to_string()));
        flag("torn-writes", o.torn_writes.map(|v| v.to_string()));
        cmd.push_str(&format!(" --faults '{}'", self.schedule));
        cmd
    }
}

/// The deliberately broken raft-core variant this binary was built with, if any.
pub fn built_with_bug() -> Option<&'static str> {
    if cfg!(raft_bug = "vote_without_up_to_date_check") {
        Some("vote_without_up_to_date_check")
    } else if cfg!(raft_bug = "commit_previous_term_by_counting") {
        Some("commit_previous_term_by_counting")
    } else if cfg!(raft_bug = "truncate_on_stale_append") {
        Some("truncate_on_stale_append")
    } else if cfg!(raft_bug = "ack_before_persist") {
        Some("ack_before_persist")
    } else if cfg!(raft_bug = "count_duplicate_votes") {
        Some("count_duplicate_votes")
    } else {
        None
    }
}

/// Shrinks a failing run; stops after `max_trials` re-runs.
pub fn shrink(seed: u64, overrides: &Overrides, schedule: &Schedule, first: &Violation, max_trials: usize) -> Shrunk {
    let mut best = Shrunk { seed, overrides: overrides.clone(), schedule: schedule.clone(), violation: first.clone(), trials: 0 };
    let property = first.property;
    // Re-runs a candidate; keeps it if it fails the same way.
    let attempt = |best: &mut Shrunk, ov: Overrides, sched: Schedule| -> bool {
        if best.trials >= max_trials {
            return false;
        }
        best.trials += 1;
        let options = Options::derive(seed, &ov);
        if options.validate().is_err() {
            return false;
        }
        let report = run(seed, &options, &sched, false);
        match report.violation {
            Some(v) if v.property == property => {
                best.overrides = ov;
                best.schedule = sched;
                best.violation = v;
                true
            }
            _ => false,
        }
    };

    // 1. Message faults off, one kind at a time.
    for zero in
        [|o: &mut Overrides| o.loss_ppm = Some(0), |o: &mut Overrides| o.dup_ppm = Some(0), |o: &mut Overrides| o.long_delay_ppm = Some(0)]
    {
        let mut ov = best.overrides.clone();
        zero(&mut ov);
        if ov != best.overrides {
            let sched = best.schedule.clone();
            attempt(&mut best, ov, sched);
        }
    }
    // 2. End the fault phase right after the violation (or earlier).
    let violation_ms = best.violation.at_us / 1000 + 1;
    let base = Options::derive(seed, &best.overrides);
    if violation_ms < base.duration_ms {
        let mut ov = best.overrides.clone();
        ov.duration_ms = Some(violation_ms);
        let sched = Schedule { faults: best.schedule.faults.iter().filter(|f| f.at_ms < violation_ms).cloned().collect() };
        attempt(&mut best, ov, sched);
    }
    // 3. Remove faults: chunks of halving size, then single faults, until nothing more goes.
    let mut chunk = best.schedule.faults.len().div_ceil(2).max(1);
    loop {
        let mut removed_any = false;
        let mut start = 0;
        while start < best.schedule.faults.len() {
            let mut faults = best.schedule.faults.clone();
            let end = (start + chunk).min(faults.len());
            faults.drain(start..end);
            let ov = best.overrides.clone();
            if attempt(&mut best, ov, Schedule { faults }) {
                removed_any = true;
            } else {
                start += chunk;
            }
        }
        if best.trials >= max_trials || (chunk == 1 && !removed_any) {
            break;
        }
        if !removed_any {
            chunk = (chunk / 2).max(1);
        }
    }
    // 4. Shorter again, now that the schedule is smaller.
    let last = best.schedule.last_ms() + 1;
    let current = Options::derive(seed, &best.overrides).duration_ms;
    let violation_ms = best.violation.at_us / 1000 + 1;
    for d in [last.max(violation_ms), current / 2] {
        if d > 0 && d < current {
            let mut ov = best.overrides.clone();
            ov.duration_ms = Some(d);
            let sched = Schedule { faults: best.schedule.faults.iter().filter(|f| f.at_ms < d).cloned().collect() };
            if attempt(&mut best, ov, sched) {
                break;
            }
        }
    }
    best
}
