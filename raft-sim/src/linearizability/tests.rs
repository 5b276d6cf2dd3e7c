//! Hand-written histories with known verdicts, report format, and a scaling run.

use super::*;

/// Verdict a table case expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    Linearizable,
    Violation,
}

fn b(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

fn done(client: u64, key: &str, input: KvInput, call: u64, at: u64, output: KvOutput) -> Operation {
    Operation { client, key: b(key), input, call, completion: Completion::Returned { at, output } }
}

fn timed_out(client: u64, key: &str, input: KvInput, call: u64) -> Operation {
    Operation { client, key: b(key), input, call, completion: Completion::Unknown }
}

fn put(v: &str) -> KvInput {
    KvInput::Put(b(v))
}

fn append(v: &str) -> KvInput {
    KvInput::Append(b(v))
}

fn cas(expected: Option<&str>, new: &str) -> KvInput {
    KvInput::Cas { expected: expected.map(b), new: b(new) }
}

fn saw(v: Option<&str>) -> KvOutput {
    KvOutput::Value(v.map(b))
}

fn swapped(s: bool) -> KvOutput {
    KvOutput::Cas { swapped: s }
}

fn history(ops: Vec<Operation>) -> History {
    let mut h = History::new();
    for op in ops {
        h.push(op);
    }
    h
}

const BUDGET: u64 = 100_000;

fn table() -> Vec<(&'static str, Expect, Vec<Operation>)> {
    use Expect::*;
    use KvInput::{Delete, Get};
    use KvOutput::{Len, Ok};
    vec![
        ("empty history", Linearizable, vec![]),
        (
            "sequential put, get, append, get, delete, get",
            Linearizable,
            vec![
                done(1, "k", put("a"), 0, 10, Ok),
                done(1, "k", Get, 20, 30, saw(Some("a"))),
                done(2, "k", append("b"), 40, 50, Len(2)),
                done(2, "k", Get, 60, 70, saw(Some("ab"))),
                done(1, "k", Delete, 80, 90, Ok),
                done(2, "k", Get, 100, 110, saw(None)),
            ],
        ),
        ("a fresh key reads absent", Linearizable, vec![done(1, "k", Get, 0, 10, saw(None))]),
        ("a fresh key cannot read a value", Violation, vec![done(1, "k", Get, 0, 10, saw(Some("a")))]),
        (
            "get concurrent with a put sees the new value",
            Linearizable,
            vec![done(1, "k", put("a"), 0, 10, Ok), done(1, "k", put("b"), 20, 40, Ok), done(2, "k", Get, 25, 35, saw(Some("b")))],
        ),
        (
            "get concurrent with a put sees the old value",
            Linearizable,
            vec![done(1, "k", put("a"), 0, 10, Ok), done(1, "k", put("b"), 20, 40, Ok), done(2, "k", Get, 25, 35, saw(Some("a")))],
        ),
        (
            "new value then old value within one put is a violation",
            Violation,
            vec![
                done(1, "k", put("a"), 0, 10, Ok),
                done(1, "k", put("b"), 20, 100, Ok),
                done(2, "k", Get, 25, 35, saw(Some("b"))),
                done(3, "k", Get, 40, 50, saw(Some("a"))),
            ],
        ),
        (
            "stale read after a completed write",
            Violation,
            vec![done(1, "k", put("a"), 0, 10, Ok), done(1, "k", put("b"), 20, 30, Ok), done(2, "k", Get, 40, 50, saw(Some("a")))],
        ),
        ("touching intervals are concurrent", Linearizable, vec![done(1, "k", put("a"), 0, 10, Ok), done(2, "k", Get, 10, 20, saw(None))]),
        (
            "lost update: two appends both see an empty value",
            Violation,
            vec![done(1, "k", append("x"), 0, 10, Len(1)), done(2, "k", append("y"), 5, 15, Len(1))],
        ),
        (
            "lost update: a later read misses a completed append",
            Violation,
            vec![
                done(1, "k", append("x"), 0, 10, Len(1)),
                done(2, "k", append("y"), 20, 30, Len(2)),
                done(3, "k", Get, 40, 50, saw(Some("y"))),
            ],
        ),
        (
            "concurrent appends in the order their lengths say",
            Linearizable,
            vec![
                done(1, "k", append("x"), 0, 10, Len(1)),
                done(2, "k", append("y"), 5, 15, Len(2)),
                done(3, "k", Get, 20, 30, saw(Some("xy"))),
            ],
        ),
        (
            "concurrent appends read in the order their lengths deny",
            Violation,
            vec![
                done(1, "k", append("x"), 0, 10, Len(1)),
                done(2, "k", append("y"), 5, 15, Len(2)),
                done(3, "k", Get, 20, 30, saw(Some("yx"))),
            ],
        ),
        (
            "cas swaps when the value matches",
            Linearizable,
            vec![
                done(1, "k", put("a"), 0, 10, Ok),
                done(1, "k", cas(Some("a"), "b"), 20, 30, swapped(true)),
                done(2, "k", Get, 40, 50, saw(Some("b"))),
            ],
        ),
        (
            "cas refused although the value matched",
            Violation,
            vec![done(1, "k", put("a"), 0, 10, Ok), done(1, "k", cas(Some("a"), "b"), 20, 30, swapped(false))],
        ),
        (
            "cas swapped although the value did not match",
            Violation,
            vec![done(1, "k", put("a"), 0, 10, Ok), done(1, "k", cas(Some("z"), "b"), 20, 30, swapped(true))],
        ),
        (
            "cas on absent succeeds on a fresh key",
            Linearizable,
            vec![done(1, "k", cas(None, "n"), 0, 10, swapped(true)), done(2, "k", Get, 20, 30, saw(Some("n")))],
        ),
        (
            "cas on absent cannot succeed on a present key",
            Violation,
            vec![done(1, "k", put("a"), 0, 10, Ok), done(1, "k", cas(None, "n"), 20, 30, swapped(true))],
        ),
        (
            "two concurrent cas from the same value cannot both swap",
            Violation,
            vec![
                done(1, "k", put("a"), 0, 10, Ok),
                done(1, "k", cas(Some("a"), "b"), 20, 30, swapped(true)),
                done(2, "k", cas(Some("a"), "c"), 22, 32, swapped(true)),
            ],
        ),
        (
            "two concurrent cas from the same value: one swaps, one does not",
            Linearizable,
            vec![
                done(1, "k", put("a"), 0, 10, Ok),
                done(1, "k", cas(Some("a"), "b"), 20, 30, swapped(false)),
                done(2, "k", cas(Some("a"), "c"), 22, 32, swapped(true)),
                done(3, "k", Get, 40, 50, saw(Some("c"))),
            ],
        ),
        (
            "unknown put observed later",
            Linearizable,
            vec![done(1, "k", put("a"), 0, 10, Ok), timed_out(2, "k", put("b"), 20), done(3, "k", Get, 30, 40, saw(Some("b")))],
        ),
        (
            "unknown put observed long after a later write",
            Linearizable,
            vec![
                timed_out(2, "k", put("b"), 0),
                done(1, "k", put("a"), 10, 20, Ok),
                done(3, "k", Get, 30, 40, saw(Some("a"))),
                done(3, "k", Get, 50, 60, saw(Some("b"))),
            ],
        ),
        (
            "unknown put never observed",
            Linearizable,
            vec![
                done(1, "k", put("a"), 0, 10, Ok),
                timed_out(2, "k", put("b"), 20),
                done(3, "k", Get, 30, 40, saw(Some("a"))),
                done(3, "k", Get, 50, 60, saw(Some("a"))),
            ],
        ),
        (
            "unknown put observed by a get that completed before its call",
            Violation,
            vec![done(1, "k", put("a"), 0, 10, Ok), done(3, "k", Get, 20, 30, saw(Some("b"))), timed_out(2, "k", put("b"), 40)],
        ),
        (
            "unknown put cannot take effect twice",
            Violation,
            vec![
                timed_out(2, "k", put("b"), 0),
                done(3, "k", Get, 10, 20, saw(Some("b"))),
                done(1, "k", put("a"), 30, 40, Ok),
                done(3, "k", Get, 50, 60, saw(Some("b"))),
            ],
        ),
        (
            "unknown append seen through a later append's length",
            Linearizable,
            vec![timed_out(1, "k", append("xx"), 0), done(2, "k", append("y"), 10, 20, Len(3))],
        ),
        (
            "unknown append that did not happen",
            Linearizable,
            vec![timed_out(1, "k", append("xx"), 0), done(2, "k", append("y"), 10, 20, Len(1))],
        ),
        (
            "no subset of unknown appends explains the length",
            Violation,
            vec![timed_out(1, "k", append("xx"), 0), done(2, "k", append("y"), 10, 20, Len(2))],
        ),
        (
            "two unknown appends both needed before one append",
            Linearizable,
            vec![
                timed_out(1, "k", append("xx"), 0),
                timed_out(2, "k", append("yyy"), 1),
                done(3, "k", append("z"), 10, 20, Len(6)),
                done(3, "k", Get, 30, 40, saw(Some("yyyxxz"))),
            ],
        ),
        (
            "no block of two unknown appends explains the length",
            Violation,
            vec![timed_out(1, "k", append("xx"), 0), timed_out(2, "k", append("yyy"), 1), done(3, "k", append("z"), 10, 20, Len(5))],
        ),
        (
            "twin unknown deletes can each be seen once",
            Linearizable,
            vec![
                timed_out(1, "k", KvInput::Delete, 0),
                timed_out(2, "k", KvInput::Delete, 1),
                done(3, "k", put("a"), 10, 20, Ok),
                done(3, "k", Get, 30, 40, saw(None)),
                done(3, "k", put("b"), 50, 60, Ok),
                done(3, "k", Get, 70, 80, saw(None)),
            ],
        ),
        (
            "twin unknown deletes cannot be seen three times",
            Violation,
            vec![
                timed_out(1, "k", KvInput::Delete, 0),
                timed_out(2, "k", KvInput::Delete, 1),
                done(3, "k", put("a"), 10, 20, Ok),
                done(3, "k", Get, 30, 40, saw(None)),
                done(3, "k", put("b"), 50, 60, Ok),
                done(3, "k", Get, 70, 80, saw(None)),
                done(3, "k", put("c"), 90, 100, Ok),
                done(3, "k", Get, 110, 120, saw(None)),
            ],
        ),
        (
            "an unknown delete kept for the read that needs it",
            Linearizable,
            vec![
                timed_out(0, "k", KvInput::Delete, 0),
                done(1, "k", put("a"), 0, 20, Ok),
                done(2, "k", cas(None, "a"), 0, 10, swapped(true)),
                done(1, "k", Get, 50, 60, saw(None)),
            ],
        ),
        (
            "unknown delete and unknown cas both taking effect",
            Linearizable,
            vec![
                done(1, "k", put("a"), 0, 10, Ok),
                timed_out(2, "k", KvInput::Delete, 20),
                timed_out(3, "k", cas(None, "c"), 25),
                done(1, "k", Get, 40, 50, saw(Some("c"))),
            ],
        ),
        ("unknown get constrains nothing", Linearizable, vec![timed_out(1, "k", Get, 0), done(2, "k", Get, 10, 20, saw(None))]),
        (
            "a read sees a value never written",
            Violation,
            vec![done(1, "k", put("a"), 0, 10, Ok), done(2, "k", put("b"), 5, 15, Ok), done(3, "k", Get, 20, 30, saw(Some("c")))],
        ),
        (
            "keys are independent objects",
            Linearizable,
            vec![done(1, "x", put("a"), 0, 10, Ok), done(2, "y", Get, 20, 30, saw(None)), done(2, "x", Get, 20, 30, saw(Some("a")))],
        ),
        (
            "a violation on one key among healthy ones",
            Violation,
            vec![
                done(1, "x", put("a"), 0, 10, Ok),
                done(2, "y", put("b"), 0, 10, Ok),
                done(2, "y", Get, 20, 30, saw(None)),
                done(1, "x", Get, 20, 30, saw(Some("a"))),
            ],
        ),
    ]
}

#[test]
fn linearizability_table_of_known_verdicts() {
    for (name, expect, ops) in table() {
        let outcome = check(&history(ops), BUDGET);
        let got = match &outcome {
            Outcome::Linearizable => Expect::Linearizable,
            Outcome::Violation(_) => Expect::Violation,
            Outcome::Inconclusive { .. } => panic!("{name}: inconclusive: {outcome:?}"),
        };
        assert_eq!(got, expect, "{name}: {outcome:?}");
    }
}

#[test]
fn linearizability_witness_of_each_linearizable_case_replays() {
    for (name, expect, ops) in table() {
        if expect != Expect::Linearizable {
            continue;
        }
        let mut keys: Vec<&Key> = ops.iter().map(|op| &op.key).collect();
        keys.sort();
        keys.dedup();
        for key in keys {
            let of_key: Vec<Operation> = ops.iter().filter(|op| &op.key == key).cloned().collect();
            assert_witness_replays(name, &of_key);
        }
    }
}

/// Asserts that `check_model` finds a witness for `ops` (one key), and that the witness respects
/// real time and the model's outputs.
pub(super) fn assert_witness_replays(name: &str, ops: &[Operation]) {
    let model_ops: Vec<ModelOp<'_, KvInput, KvOutput>> = ops
        .iter()
        .map(|op| ModelOp {
            call: op.call,
            input: &op.input,
            returned: match &op.completion {
                Completion::Returned { at, output } => Some((*at, output)),
                Completion::Unknown => None,
            },
        })
        .collect();
    let SearchOutcome::Linearizable { order, .. } = check_model(&KvModel, &model_ops, BUDGET) else {
        panic!("{name}: no witness");
    };
    let mut placed = vec![false; ops.len()];
    let mut state = KvModel.init();
    for &i in &order {
        assert!(!placed[i], "{name}: op {i} placed twice");
        placed[i] = true;
        // Nothing that returned before this op's call may come after it.
        for (j, other) in ops.iter().enumerate() {
            if let Completion::Returned { at, .. } = other.completion {
                assert!(placed[j] || at >= ops[i].call, "{name}: op {i} placed before op {j}");
            }
        }
        state = match &ops[i].completion {
            Completion::Returned { output, .. } => {
                KvModel.step(&state, &ops[i].input, output).unwrap_or_else(|| panic!("{name}: op {i} rejected by the model"))
            }
            Completion::Unknown => KvModel.step_any(&state, &ops[i].input),
        };
    }
    for (i, op) in ops.iter().enumerate() {
        if matches!(op.completion, Completion::Returned { .. }) {
            assert!(placed[i], "{name}: returned op {i} missing from the witness");
        }
    }
}

#[test]
fn linearizability_report_names_the_prefix_and_the_unplaced_operation() {
    use KvOutput::Ok;
    let h = history(vec![
        done(1, "k", put("a"), 0, 10, Ok),
        done(1, "k", put("b"), 20, 30, Ok),
        done(2, "k", KvInput::Get, 40, 50, saw(Some("a"))),
        done(2, "k", KvInput::Get, 60, 70, saw(Some("b"))),
    ]);
    let Outcome::Violation(v) = check(&h, BUDGET) else {
        panic!("stale read must fail");
    };
    assert_eq!(v.key, b("k"));
    // The window stops at the stale read's return: the later get is not needed to fail.
    assert_eq!(v.ops, h.operations()[..3].to_vec());
    assert_eq!(
        v.explanation,
        "key \"k\": 3 operations (0 with unknown outcome) are not linearizable. \
         Longest linearizable prefix: 2 operations: \
         #0 client 1 put \"a\" [0, 10] -> ok; #1 client 1 put \"b\" [20, 30] -> ok. \
         State after it: \"b\". \
         Could not place #2 client 2 get [40, 50] -> \"a\": \
         nothing pending can be linearized next from that state before it returns."
    );
}

#[test]
fn linearizability_report_cuts_long_values_and_prefixes() {
    let long = "v".repeat(100);
    let mut ops = vec![done(1, "k", put(&long), 0, 10, KvOutput::Ok)];
    for i in 0..20u64 {
        ops.push(done(1, "k", KvInput::Get, 20 + 20 * i, 30 + 20 * i, saw(Some(&long))));
    }
    ops.push(timed_out(2, "k", append("\n"), 1000));
    // The unknown append is observed, so it is part of the prefix.
    ops.push(done(1, "k", KvInput::Get, 1500, 1510, saw(Some(&format!("{long}\n")))));
    ops.push(done(1, "k", KvInput::Get, 2000, 2010, saw(Some("w"))));
    let Outcome::Violation(v) = check(&history(ops), BUDGET) else {
        panic!("a never-written value must fail");
    };
    let text = &v.explanation;
    assert!(text.contains("Longest linearizable prefix: 23 operations, the last 8 being: #15 client 1 get"), "{text}");
    assert!(text.contains("\"vvvvvvvvvvvvvvvvvvvvvvvv\"...(100 bytes)"), "{text}");
    assert!(text.contains("; #21 client 2 append \"\\n\" [1000, ?] -> unknown; #22 client 1 get"), "{text}");
    assert!(text.contains("State after it: \"vvvvvvvvvvvvvvvvvvvvvvvv\"...(101 bytes)."), "{text}");
    assert!(text.contains("Could not place #23 client 1 get [2000, 2010] -> \"w\""), "{text}");
}

#[test]
fn linearizability_first_violating_key_in_sorted_order_is_reported() {
    use KvOutput::Ok;
    let h = history(vec![
        done(1, "b", KvInput::Get, 0, 10, saw(Some("x"))),
        done(2, "a", put("1"), 0, 10, Ok),
        done(2, "a", KvInput::Get, 20, 30, saw(None)),
    ]);
    let Outcome::Violation(v) = check(&h, BUDGET) else {
        panic!("both keys fail");
    };
    assert_eq!(v.key, b("a"));
}

#[test]
fn linearizability_same_history_same_outcome_byte_for_byte() {
    let (h, _) = generated_history(400, 4, 5, 7);
    let mut bad = h.clone();
    let last_get =
        bad.ops.iter().rposition(|op| op.input == KvInput::Get && op.completion != Completion::Unknown).expect("the workload reads");
    if let Completion::Returned { output, .. } = &mut bad.ops[last_get].completion {
        *output = saw(Some("never written"));
    }
    let first = check(&bad, 1_000_000);
    assert!(matches!(first, Outcome::Violation(_)), "{first:?}");
    assert_eq!(first, check(&bad, 1_000_000));
    assert_eq!(check(&h, 1_000_000), Outcome::Linearizable);
}

#[test]
fn linearizability_exhausted_budget_is_inconclusive_never_a_violation() {
    use KvOutput::Ok;
    // Ten concurrent puts, then a read of a value nobody wrote: failing needs many steps.
    let mut ops: Vec<Operation> = (0..10).map(|i| done(i, "k", put(&format!("v{i}")), 0, 100, Ok)).collect();
    ops.push(done(10, "k", KvInput::Get, 200, 210, saw(Some("w"))));
    let h = history(ops.clone());
    assert!(matches!(check(&h, 10_000_000), Outcome::Violation(_)));
    for budget in [0, 1, 10, 100] {
        match check(&h, budget) {
            Outcome::Inconclusive { key, reason } => {
                assert_eq!(key, b("k"));
                assert!(reason.contains(&format!("budget of {budget} steps")), "{reason}");
            }
            other => panic!("budget {budget}: {other:?}"),
        }
    }
    // An inconclusive key does not hide a proven violation on a later key.
    let mut both = ops;
    both.push(done(1, "z", KvInput::Get, 0, 10, saw(Some("x"))));
    assert!(matches!(check(&history(both), 100), Outcome::Violation(v) if v.key == b("z")));
}

#[test]
#[should_panic(expected = "not after its call")]
fn linearizability_history_rejects_a_return_before_the_call() {
    History::new().push(done(1, "k", KvInput::Get, 10, 10, saw(None)));
}

/// Deterministic splitmix64 stream for the generated workload.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        fxhash::mix64(self.0)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A linearizable history of `n` operations by `clients` closed-loop clients over `keys` keys:
/// each operation takes effect at a random point of its interval, in that order, on a sequential
/// store; one in 50 times out (half of those take effect, possibly after the client gave up).
/// Returns the history and the number of unknown-outcome operations.
fn generated_history(n: usize, keys: u64, clients: u64, seed: u64) -> (History, usize) {
    let mut rng = Rng(seed);
    let mut free_at = vec![0u64; clients as usize];
    // (linearization point, or None if it never took effect; op without output yet).
    let mut planned: Vec<(Option<u64>, Operation)> = Vec::with_capacity(n);
    let mut unknown = 0;
    for i in 0..n {
        let client = rng.below(clients);
        let call = free_at[client as usize] + 1 + rng.below(5);
        let key = format!("key{}", rng.below(keys));
        let input = match rng.below(10) {
            0..=3 => KvInput::Get,
            4 | 5 => KvInput::Put(format!("c{client}-{i}").into_bytes()),
            6 | 7 => KvInput::Append(vec![b'a' + (i % 26) as u8; 1 + (i % 4)]),
            8 => KvInput::Cas {
                expected: None, // patched below to a plausible value
                new: format!("cas{i}").into_bytes(),
            },
            _ => KvInput::Delete,
        };
        let times_out = rng.below(50) == 0;
        let (at, point) = if times_out {
            unknown += 1;
            free_at[client as usize] = call + 100;
            // May take effect long after the client gave up.
            (None, (rng.below(2) == 0).then(|| call + rng.below(300)))
        } else {
            let at = call + 2 + rng.below(30);
            free_at[client as usize] = at;
            (Some(at), Some(call + 1 + rng.below(at - call - 1)))
        };
        let completion = match at {
            Some(at) => Completion::Returned {
                at,
                output: KvOutput::Ok, // filled in by replay
            },
            None => Completion::Unknown,
        };
        planned.push((point, Operation { client, key: key.into_bytes(), input, call, completion }));
    }
    // Replay in linearization order (ties by index) to fill in outputs.
    let mut order: Vec<usize> = (0..n).filter(|&i| planned[i].0.is_some()).collect();
    order.sort_by_key(|&i| (planned[i].0, i));
    let mut store: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
    for i in order {
        let op = &mut planned[i].1;
        let state = store.entry(op.key.clone()).or_insert(None);
        if let KvInput::Cas { expected, .. } = &mut op.input {
            // Half the time expect the current value, so swaps happen.
            if i % 2 == 0 {
                expected.clone_from(state);
            }
        }
        let next = KvModel.step_any(state, &op.input);
        let output = match &op.input {
            KvInput::Get => KvOutput::Value(state.clone()),
            KvInput::Put(_) | KvInput::Delete => KvOutput::Ok,
            KvInput::Append(_) => KvOutput::Len(next.as_ref().map_or(0, Vec::len) as u64),
            KvInput::Cas { expected, .. } => KvOutput::Cas { swapped: expected == state },
        };
        if let Completion::Returned { output: slot, .. } = &mut op.completion {
            *slot = output;
        }
        *state = next;
    }
    let mut h = History::new();
    for (_, op) in planned {
        h.push(op);
    }
    (h, unknown)
}

#[test]
fn linearizability_scales_to_5000_operations() {
    let (h, unknown) = generated_history(5_000, 8, 5, 42);
    assert!(unknown > 0, "the workload has timeouts");
    // Wall time is printed for information only (run with --nocapture); nothing depends on it.
    let started = std::time::Instant::now();
    let outcome = check(&h, 1_000_000);
    let elapsed = started.elapsed();
    assert_eq!(outcome, Outcome::Linearizable);
    println!(
        "linearizability: {} ops ({unknown} unknown) over 8 keys checked in {:.1} ms ({:.0} ops/s)",
        h.len(),
        elapsed.as_secs_f64() * 1e3,
        h.len() as f64 / elapsed.as_secs_f64()
    );
}

#[test]
fn linearizability_finds_a_violation_at_the_end_of_5000_operations() {
    let (mut h, _) = generated_history(5_000, 8, 5, 42);
    let last_get =
        h.ops.iter().rposition(|op| op.input == KvInput::Get && op.completion != Completion::Unknown).expect("the workload reads");
    let key = h.ops[last_get].key.clone();
    if let Completion::Returned { output, .. } = &mut h.ops[last_get].completion {
        *output = saw(Some("never written"));
    }
    match check(&h, 1_000_000) {
        Outcome::Violation(v) => {
            assert_eq!(v.key, key);
            assert!(v.explanation.contains(&format!("Could not place #{last_get} ")), "{}", v.explanation);
        }
        other => panic!("expected a violation, got {other:?}"),
    }
}
