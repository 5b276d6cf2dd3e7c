//! One run, from a seed, options and a fault schedule to a report.

use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Once;

use crate::check::Violation;
use crate::faults::Schedule;
use crate::linearizability::Outcome;
use crate::options::Options;
use crate::world::{Stats, World};

/// Search steps the linearizability checker may spend per key.
pub const LINEARIZABILITY_BUDGET: u64 = 2_000_000;

/// What the linearizability check concluded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinearizabilityStatus {
    /// The history is linearizable.
    Linearizable,
    /// The search ran out of budget on a key: neither proven nor refuted.
    Inconclusive(String),
    /// Not checked (the run failed earlier).
    NotChecked,
}

/// The outcome of one run.
#[derive(Clone, Debug)]
pub struct RunReport {
    /// The seed.
    pub seed: u64,
    /// The options it ran with.
    pub options: Options,
    /// The faults it ran with.
    pub schedule: Schedule,
    /// Counts.
    pub stats: Stats,
    /// Hash of every event: equal hashes, equal runs.
    pub trace_hash: u64,
    /// The first property violated, if any.
    pub violation: Option<Violation>,
    /// The linearizability check's verdict (when no other violation came first).
    pub linearizability: LinearizabilityStatus,
    /// The event log, when asked for.
    pub trace: Option<Vec<String>>,
}

thread_local! {
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Panics inside a run (a failed `check_invariants()` assertion, say) are violations: record
/// their message instead of printing it.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let in_run = LAST_PANIC.with(|p| p.borrow().is_some());
            if in_run {
                let location = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
                let msg = info
                    .payload()
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| info.payload().downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "panic".into());
                LAST_PANIC.with(|p| *p.borrow_mut() = Some(format!("{msg}{location}")));
            } else {
                default(info);
            }
        }));
    });
}

/// Runs one simulation. Deterministic: the same arguments give the same report.
pub fn run(seed: u64, options: &Options, schedule: &Schedule, keep_trace: bool) -> RunReport {
    install_panic_hook();
    let mut world = World::new(seed, options, schedule, keep_trace);
    LAST_PANIC.with(|p| *p.borrow_mut() = Some(String::new()));
    let result = catch_unwind(AssertUnwindSafe(|| world.run()));
    let panic_msg = LAST_PANIC.with(|p| p.borrow_mut().take()).unwrap_or_default();
    let mut violation = match result {
        Ok(Ok(())) => None,
        Ok(Err(v)) => Some(v),
        Err(_) => Some(Violation { property: "invariant (panic)", nodes: vec![], detail: panic_msg, at_us: world.stats.virtual_us }),
    };
    let mut linearizability = LinearizabilityStatus::NotChecked;
    if violation.is_none() {
        match world.check_linearizability(LINEARIZABILITY_BUDGET) {
            Outcome::Linearizable => linearizability = LinearizabilityStatus::Linearizable,
            Outcome::Inconclusive { key, reason } => {
                linearizability = LinearizabilityStatus::Inconclusive(format!("key {}: {reason}", String::from_utf8_lossy(&key)))
            }
            Outcome::Violation(v) => {
                violation = Some(Violation {
                    property: "linearizability",
                    nodes: vec![],
                    detail: format!("key {}: {}", String::from_utf8_lossy(&v.key), v.explanation),
                    at_us: world.stats.virtual_us,
                })
            }
        }
    }
    if let Some(v) = &violation {
        let text = v.to_string();
        world.trace.line(v.at_us, || format!("VIOLATION {text}"));
    }
    RunReport {
        seed,
        options: options.clone(),
        schedule: schedule.clone(),
        stats: world.stats.clone(),
        trace_hash: world.trace.hash.value(),
        violation,
        linearizability,
        trace: world.trace.lines.take(),
    }
}
