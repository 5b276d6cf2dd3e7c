//! Linearizability checking of a key-value store's client history.
//!
//! At the end of a simulated run, the simulator records every client operation (when it was
//! called, and when and what it returned, or that its outcome is unknown) into a [`History`] and
//! calls [`check`]. Each key is checked on its own (all operations are single-key, and
//! linearizability is local: a history is linearizable iff each object's sub-history is).
//!
//! # How
//!
//! The search is Wing & Gong's, with Lowe's memoisation of (set of linearized operations, model
//! state), laid out as in Porcupine: call and return entries in one doubly linked list in time
//! order; the candidates for the next linearization point are the call entries before the first
//! return entry; a linearized operation is lifted out of the list and put back on backtracking.
//! The sequential specification is a [`Model`]; [`KvModel`] is the key-value one, and
//! [`check_model`] checks any model.
//!
//! # Unknown outcomes
//!
//! A client that timed out does not know whether its operation took effect. Such an operation
//! ([`Completion::Unknown`]) is treated as returning at +infinity with any output accepted: it may
//! take effect at any time after its call, or never. Unknown-outcome `Get`s constrain nothing and
//! are dropped. The others enter the search only as short blocks placed right before a returned
//! operation whose outcome they change, which loses no linearization but keeps the dozens of
//! operations that stay open forever in a long run from multiplying the search.
//!
//! # Time
//!
//! Operation `a` precedes `b` only if `a` returned strictly before `b` was called: intervals that
//! merely touch (`a` returns at `t`, `b` is called at `t`) are concurrent. This can hide a
//! violation whose evidence is a single time unit, never invent one.
//!
//! # Determinism and limits
//!
//! Keys are checked in sorted order; the same history gives the same [`Outcome`], explanation
//! included, byte for byte. The search of each key is limited to a budget of steps (see
//! [`check_model`]); when it runs out the verdict is [`Outcome::Inconclusive`], never a violation
//! that was not proven. Memory grows with the steps spent, not with the history alone.
//!
//! # Example
//!
//! ```
//! use raft_sim::linearizability::{check, Completion, History, KvInput, KvOutput, Operation, Outcome};
//!
//! let mut history = History::new();
//! // Client 1 writes "a" during [0, 10]; client 2 then reads during [20, 30] and sees nothing.
//! history.push(Operation {
//!     client: 1,
//!     key: b"k".to_vec(),
//!     input: KvInput::Put(b"a".to_vec()),
//!     call: 0,
//!     completion: Completion::Returned { at: 10, output: KvOutput::Ok },
//! });
//! history.push(Operation {
//!     client: 2,
//!     key: b"k".to_vec(),
//!     input: KvInput::Get,
//!     call: 20,
//!     completion: Completion::Returned { at: 30, output: KvOutput::Value(None) },
//! });
//! match check(&history, 100_000) {
//!     Outcome::Violation(v) => assert_eq!(v.key, b"k".to_vec()),
//!     other => panic!("a stale read must be a violation, got {other:?}"),
//! }
//! ```
#![warn(missing_docs)]

mod bitset;
mod fxhash;
mod model;
mod search;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt::Write as _;

pub use model::{KvModel, Model};
pub use search::{check_model, LongestPrefix, ModelOp, SearchOutcome};

/// A key of the store.
pub type Key = Vec<u8>;

/// What a client asked of one key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KvInput {
    /// Read the value. Output: [`KvOutput::Value`].
    Get,
    /// Set the value. Output: [`KvOutput::Ok`].
    Put(Vec<u8>),
    /// Append bytes to the value (an absent key counts as empty, and is created). Output:
    /// [`KvOutput::Len`].
    Append(Vec<u8>),
    /// Set the value to `new` iff it is now `expected` (`None`: iff the key is absent). Output:
    /// [`KvOutput::Cas`].
    Cas {
        /// The value the key must have, or `None` if it must be absent.
        expected: Option<Vec<u8>>,
        /// The value to set.
        new: Vec<u8>,
    },
    /// Remove the key (absent or not). Output: [`KvOutput::Ok`].
    Delete,
}

/// What a client was told.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KvOutput {
    /// The value read by a `Get`; `None` if the key was absent.
    Value(Option<Vec<u8>>),
    /// A `Put` or `Delete` took effect.
    Ok,
    /// An `Append` took effect; the value's new length in bytes.
    Len(u64),
    /// A `Cas` was applied: whether the value matched and was replaced.
    Cas {
        /// Whether the value matched `expected` and was replaced by `new`.
        swapped: bool,
    },
}

/// One client operation on one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    /// The client that issued it (for reports only).
    pub client: u64,
    /// The key it reads or writes.
    pub key: Key,
    /// What was asked.
    pub input: KvInput,
    /// When the client invoked it (virtual time, any unit).
    pub call: u64,
    /// How it ended.
    pub completion: Completion,
}

/// How an operation ended, from its client's point of view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Completion {
    /// The client was told `output` at virtual time `at` (after the call).
    Returned {
        /// When the reply arrived.
        at: u64,
        /// The reply.
        output: KvOutput,
    },
    /// The client timed out or failed ambiguously: the operation may or may not have taken
    /// effect, at any time after its call. (Operations that certainly failed without effect are
    /// not recorded at all.)
    Unknown,
}

/// The client operations of one run, in any order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    ops: Vec<Operation>,
}

impl History {
    /// An empty history.
    pub fn new() -> Self {
        History::default()
    }

    /// Records one operation. Reports name operations by their position in push order (`#0`,
    /// `#1`, ...).
    ///
    /// # Panics
    ///
    /// If the operation returned at or before its call time.
    pub fn push(&mut self, op: Operation) {
        if let Completion::Returned { at, .. } = op.completion {
            assert!(op.call < at, "operation of client {} returns at {at}, not after its call at {}", op.client, op.call);
        }
        self.ops.push(op);
    }

    /// The number of operations recorded.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether no operation is recorded.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The operations, in push order.
    pub fn operations(&self) -> &[Operation] {
        &self.ops
    }
}

/// The verdict on a whole history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every key's history is linearizable.
    Linearizable,
    /// Some key's history is not; the first such key in sorted order.
    Violation(Violation),
    /// No violation was found, but the search of `key` (the first such key in sorted order)
    /// exhausted its step budget.
    Inconclusive {
        /// The key whose search ran out of budget.
        key: Key,
        /// Why, and how far the search got.
        reason: String,
    },
}

/// Proof material for a non-linearizable key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The key.
    pub key: Key,
    /// A failing sub-history of the key, in push order: the key's operations called no later
    /// than the return of the operation that could not be placed, when those alone already fail;
    /// otherwise all of the key's operations.
    pub ops: Vec<Operation>,
    /// Human-readable: the longest linearizable prefix found, its final state, and the operation
    /// that could not be placed. Operations are named by their position in the history (`#n`).
    pub explanation: String,
}

/// Checks that `history` is linearizable with respect to [`KvModel`], key by key in sorted order,
/// spending at most `budget_steps_per_key` search steps on each key.
///
/// Returns the first violating key's [`Violation`] if any key fails. Otherwise returns
/// [`Outcome::Inconclusive`] for the first key whose budget ran out, if any, else
/// [`Outcome::Linearizable`]. A violation is reported only when proven. Reporting one may cost
/// up to one more budget, spent on confirming a smaller failing window.
pub fn check(history: &History, budget_steps_per_key: u64) -> Outcome {
    let mut by_key: BTreeMap<&[u8], Vec<usize>> = BTreeMap::new();
    for (i, op) in history.ops.iter().enumerate() {
        by_key.entry(&op.key).or_default().push(i);
    }
    let mut inconclusive = None;
    for (key, indices) in &by_key {
        match search_key(history, indices, budget_steps_per_key) {
            SearchOutcome::Linearizable { .. } => {}
            SearchOutcome::Violation(prefix) => {
                return Outcome::Violation(violation(history, key, indices, &prefix, budget_steps_per_key));
            }
            SearchOutcome::Inconclusive(prefix) => {
                if inconclusive.is_none() {
                    let reason = format!(
                        "search budget of {budget_steps_per_key} steps exhausted; longest linearizable prefix: {} of {} operations",
                        prefix.ops.len(),
                        indices.len()
                    );
                    inconclusive = Some(Outcome::Inconclusive { key: key.to_vec(), reason });
                }
            }
        }
    }
    inconclusive.unwrap_or(Outcome::Linearizable)
}

/// Searches the operations `indices` of `history` (one key). Indices in the result are
/// positions in `indices`.
fn search_key(history: &History, indices: &[usize], budget: u64) -> SearchOutcome<Option<Vec<u8>>> {
    let ops: Vec<ModelOp<'_, KvInput, KvOutput>> = indices
        .iter()
        .map(|&i| {
            let op = &history.ops[i];
            ModelOp {
                call: op.call,
                input: &op.input,
                returned: match &op.completion {
                    Completion::Returned { at, output } => Some((*at, output)),
                    Completion::Unknown => None,
                },
            }
        })
        .collect();
    check_model(&KvModel, &ops, budget)
}

/// Builds the report for a key whose operations `indices` failed with `prefix`, trying first to
/// confirm the smaller window of operations called by the unplaced operation's return.
fn violation(history: &History, key: &[u8], indices: &[usize], prefix: &LongestPrefix<Option<Vec<u8>>>, budget: u64) -> Violation {
    let unplaced = prefix.unplaced.expect("a violation leaves a returned operation unplaced");
    let deadline = match history.ops[indices[unplaced]].completion {
        Completion::Returned { at, .. } => at,
        Completion::Unknown => unreachable!("the unplaced operation returned"),
    };
    let window: Vec<usize> = indices.iter().copied().filter(|&i| history.ops[i].call <= deadline).collect();
    if window.len() < indices.len() {
        if let SearchOutcome::Violation(smaller) = search_key(history, &window, budget) {
            return report(history, key, &window, &smaller);
        }
    }
    report(history, key, indices, prefix)
}

/// Most operations of the prefix an explanation lists.
const EXPLAIN_PREFIX_OPS: usize = 8;

fn report(history: &History, key: &[u8], indices: &[usize], prefix: &LongestPrefix<Option<Vec<u8>>>) -> Violation {
    let ops: Vec<Operation> = indices.iter().map(|&i| history.ops[i].clone()).collect();
    let unknown = ops.iter().filter(|op| op.completion == Completion::Unknown).count();
    let mut text = format!("key {}: {} operations ({unknown} with unknown outcome) are not linearizable. ", fmt_bytes(key), ops.len());
    let _ = write!(text, "Longest linearizable prefix: {} operations", prefix.ops.len());
    let skipped = prefix.ops.len().saturating_sub(EXPLAIN_PREFIX_OPS);
    if skipped > 0 {
        let _ = write!(text, ", the last {EXPLAIN_PREFIX_OPS} being");
    }
    for (n, &p) in prefix.ops[skipped..].iter().enumerate() {
        let sep = if n == 0 { ": " } else { "; " };
        let _ = write!(text, "{sep}{}", fmt_op(indices[p], &history.ops[indices[p]]));
    }
    let _ = write!(text, ". State after it: {}. ", fmt_state(&prefix.state));
    if let Some(u) = prefix.unplaced {
        let op = &history.ops[indices[u]];
        let _ = write!(
            text,
            "Could not place {}: nothing pending can be linearized next from that state before it returns.",
            fmt_op(indices[u], op)
        );
    }
    Violation { key: key.to_vec(), ops, explanation: text }
}

/// Longest value shown in full; longer ones are cut.
const SHOWN_BYTES: usize = 24;

fn fmt_bytes(bytes: &[u8]) -> String {
    let shown = &bytes[..bytes.len().min(SHOWN_BYTES)];
    let escaped: String = shown.iter().flat_map(|&b| std::ascii::escape_default(b)).map(char::from).collect();
    if shown.len() < bytes.len() {
        format!("\"{escaped}\"...({} bytes)", bytes.len())
    } else {
        format!("\"{escaped}\"")
    }
}

fn fmt_state(state: &Option<Vec<u8>>) -> String {
    state.as_deref().map_or_else(|| "absent".to_string(), fmt_bytes)
}

fn fmt_op(index: usize, op: &Operation) -> String {
    let input = match &op.input {
        KvInput::Get => "get".to_string(),
        KvInput::Put(v) => format!("put {}", fmt_bytes(v)),
        KvInput::Append(v) => format!("append {}", fmt_bytes(v)),
        KvInput::Cas { expected, new } => {
            format!("cas {} -> {}", fmt_state(expected), fmt_bytes(new))
        }
        KvInput::Delete => "delete".to_string(),
    };
    match &op.completion {
        Completion::Returned { at, output } => {
            let output = match output {
                KvOutput::Value(v) => fmt_state(v),
                KvOutput::Ok => "ok".to_string(),
                KvOutput::Len(n) => format!("len {n}"),
                KvOutput::Cas { swapped: true } => "swapped".to_string(),
                KvOutput::Cas { swapped: false } => "not swapped".to_string(),
            };
            format!("#{index} client {} {input} [{}, {at}] -> {output}", op.client, op.call)
        }
        Completion::Unknown => format!("#{index} client {} {input} [{}, ?] -> unknown", op.client, op.call),
    }
}
