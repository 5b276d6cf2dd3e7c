//! `raft-sim`: a deterministic discrete-event simulator for raft-core.
//!
//! It drives a cluster of raft-core nodes, each with a raft-kv store and a simulated disk,
//! through crashes that lose unsynced writes (and may tear the last record), symmetric and
//! one-way partitions, isolated and bridge nodes, message loss, duplication, reordering and long
//! delays, slow disks, clock drift, membership changes, leadership transfers and snapshots, while
//! clients run a key-value workload with sessions, timeouts and retries.
//!
//! Everything is derived from one seed: the run's options ("swarm testing", see [`Options`]), the
//! fault schedule ([`Schedule`]) and every random choice of the world, each from its own stream
//! of one ChaCha PRNG. Time is virtual; events are ordered by (time, sequence number); nothing
//! depends on wall time, thread scheduling or hash order. The same seed and options give the same
//! run, bit for bit, which a trace hash confirms.
//!
//! After every event the checkers assert election safety, log matching, leader completeness,
//! state machine safety, monotonic commit indexes and durable terms, and each node's own
//! `check_invariants()`; at the end, that acknowledged writes were never lost, that the client
//! history is linearizable ([`linearizability`]), and (liveness) that after every fault healed a
//! leader was elected and every client operation completed in bounded virtual time. A violation
//! is shrunk to a short fault schedule ([`shrink`]) with the command that replays it.
//!
//! ```
//! use raft_sim::{run, Options, Overrides, Schedule};
//!
//! let options = Options::derive(7, &Overrides { duration_ms: Some(2_000), ..Overrides::default() });
//! let schedule = Schedule::generate(7, &options);
//! let a = run(7, &options, &schedule, false);
//! let b = run(7, &options, &schedule, false);
//! assert!(a.violation.is_none(), "{:?}", a.violation);
//! assert_eq!(a.trace_hash, b.trace_hash, "same seed, same run");
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod check;
mod client;
mod disk;
mod event;
pub mod explore;
pub mod faults;
pub mod linearizability;
mod net;
pub mod options;
pub mod run;
pub mod shrink;
pub mod trace;
mod world;

pub use check::Violation;
pub use explore::{explore, SeedResult};
pub use faults::{Fault, Schedule, Scheduled};
pub use options::{Options, Overrides};
pub use run::{run, LinearizabilityStatus, RunReport};
pub use shrink::{shrink, Shrunk};
pub use world::Stats;
