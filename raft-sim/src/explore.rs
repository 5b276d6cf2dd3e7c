//! Many seeds, in parallel across cores: each seed is still one deterministic, single-threaded
//! run; threads only take seeds from a shared counter. Results are reported in seed order.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;

use crate::check::Violation;
use crate::faults::Schedule;
use crate::options::{Options, Overrides};
use crate::run::{run, LinearizabilityStatus};

/// What one seed of an exploration found.
#[derive(Clone, Debug)]
pub struct SeedResult {
    /// The seed.
    pub seed: u64,
    /// Events processed.
    pub events: u64,
    /// Virtual time simulated, microseconds.
    pub virtual_us: u64,
    /// The violation, if any.
    pub violation: Option<Violation>,
    /// Whether the linearizability check was inconclusive.
    pub inconclusive: bool,
}

/// Runs every seed in `seeds` on `jobs` threads. `progress` is called after each result (from the
/// calling thread) with the results so far. Returns the results sorted by seed.
pub fn explore(
    seeds: std::ops::Range<u64>,
    jobs: usize,
    overrides: &Overrides,
    faults: Option<&Schedule>,
    mut progress: impl FnMut(&[SeedResult]),
) -> Vec<SeedResult> {
    let next = Arc::new(AtomicU64::new(seeds.start));
    let (tx, rx) = mpsc::channel();
    let end = seeds.end;
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1) {
            let (next, tx) = (Arc::clone(&next), tx.clone());
            scope.spawn(move || loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= end {
                    break;
                }
                let options = Options::derive(seed, overrides);
                let schedule = faults.cloned().unwrap_or_else(|| Schedule::generate(seed, &options));
                let report = run(seed, &options, &schedule, false);
                let result = SeedResult {
                    seed,
                    events: report.stats.events,
                    virtual_us: report.stats.virtual_us,
                    violation: report.violation,
                    inconclusive: matches!(report.linearizability, LinearizabilityStatus::Inconclusive(_)),
                };
                if tx.send(result).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        let mut results = Vec::new();
        for r in rx {
            results.push(r);
            progress(&results);
        }
        results.sort_by_key(|r| r.seed);
        results
    })
}
