//! Property tests: generated linearizable histories pass, corrupted ones fail, and on tiny
//! arbitrary histories the checker agrees with a brute-force search over all orders.

use proptest::prelude::*;
use proptest::test_runner::RngSeed;

use super::tests::assert_witness_replays;
use super::*;

/// `cases` cases from a fixed seed, so that a run replays exactly (the crate's rule), and no
/// regression files written into the source tree. `PROPTEST_RNG_SEED` and `PROPTEST_CASES`
/// explore further.
fn config(cases: u32) -> ProptestConfig {
    fn env<T: std::str::FromStr>(name: &str) -> Option<T> {
        std::env::var(name).ok().and_then(|s| s.parse().ok())
    }
    ProptestConfig {
        cases: env("PROPTEST_CASES").unwrap_or(cases),
        rng_seed: RngSeed::Fixed(env("PROPTEST_RNG_SEED").unwrap_or(0x5eed_1157)),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A value byte that generated writes never contain, so a read of it is never explained.
const NEVER: u8 = 0xff;

/// How a generated `Cas` picks its expected value.
#[derive(Clone, Debug)]
enum Expected {
    Current,
    Absent,
    Literal(u8),
}

#[derive(Clone, Debug)]
enum Kind {
    Get,
    Put,
    Append(u8),
    Cas(Expected),
    Delete,
}

/// One planned operation: key, kind, how far its interval reaches before and after its
/// linearization point, the gap to the next point, and its fate.
#[derive(Clone, Debug)]
struct Plan {
    key: u8,
    kind: Kind,
    before: u64,
    after: u64,
    gap: u64,
    /// `None`: returned; `Some(took_effect)`: unknown outcome.
    unknown: Option<bool>,
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        3 => Just(Kind::Get),
        2 => Just(Kind::Put),
        2 => (0u8..3).prop_map(Kind::Append),
        2 => prop_oneof![
            Just(Expected::Current),
            Just(Expected::Absent),
            (0u8..3).prop_map(Expected::Literal)
        ]
        .prop_map(Kind::Cas),
        1 => Just(Kind::Delete),
    ]
}

fn plan() -> impl Strategy<Value = Plan> {
    (0u8..3, kind(), 0u64..40, 1u64..40, 1u64..25, prop_oneof![8 => Just(None), 1 => Just(Some(true)), 1 => Just(Some(false))])
        .prop_map(|(key, kind, before, after, gap, unknown)| Plan { key, kind, before, after, gap, unknown })
}

/// Builds a linearizable history: operations take effect at strictly increasing points, each
/// inside its interval, on a sequential store; an unknown-outcome operation takes effect at its
/// point or never.
fn linearizable_history(plans: &[Plan]) -> History {
    let mut store: BTreeMap<u8, Option<Vec<u8>>> = BTreeMap::new();
    let mut point = 100;
    let mut h = History::new();
    for (i, p) in plans.iter().enumerate() {
        point += p.gap;
        let state = store.entry(p.key).or_insert(None);
        let input = match &p.kind {
            Kind::Get => KvInput::Get,
            Kind::Put => KvInput::Put(format!("p{i}").into_bytes()),
            Kind::Append(c) => KvInput::Append(vec![b'a' + c]),
            Kind::Cas(e) => KvInput::Cas {
                expected: match e {
                    Expected::Current => state.clone(),
                    Expected::Absent => None,
                    Expected::Literal(n) => Some(format!("p{n}").into_bytes()),
                },
                new: format!("c{i}").into_bytes(),
            },
            Kind::Delete => KvInput::Delete,
        };
        let call = point - p.before;
        let completion = match p.unknown {
            Some(took_effect) => {
                if took_effect {
                    *state = KvModel.step_any(state, &input);
                }
                Completion::Unknown
            }
            None => {
                let output = sequential_output(state, &input);
                *state = KvModel.step(state, &input, &output).expect("own output");
                Completion::Returned { at: point + p.after, output }
            }
        };
        h.push(Operation { client: i as u64 % 5, key: vec![b'k', p.key], input, call, completion });
    }
    h
}

fn sequential_output(state: &Option<Vec<u8>>, input: &KvInput) -> KvOutput {
    match input {
        KvInput::Get => KvOutput::Value(state.clone()),
        KvInput::Put(_) | KvInput::Delete => KvOutput::Ok,
        KvInput::Append(v) => KvOutput::Len((state.as_ref().map_or(0, Vec::len) + v.len()) as u64),
        KvInput::Cas { expected, .. } => KvOutput::Cas { swapped: expected == state },
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn linearizability_generated_linearizable_histories_pass(
        plans in prop::collection::vec(plan(), 1..80),
    ) {
        let h = linearizable_history(&plans);
        prop_assert_eq!(check(&h, 1_000_000), Outcome::Linearizable);
        for key in 0..3u8 {
            let of_key: Vec<Operation> =
                h.operations().iter().filter(|op| op.key == [b'k', key]).cloned().collect();
            assert_witness_replays("generated", &of_key);
        }
    }

    #[test]
    fn linearizability_a_read_of_a_value_never_written_fails(
        plans in prop::collection::vec(plan(), 1..80),
        pick in any::<prop::sample::Index>(),
    ) {
        let mut h = linearizable_history(&plans);
        let gets: Vec<usize> = (0..h.len())
            .filter(|&i| {
                let op = &h.ops[i];
                op.input == KvInput::Get && op.completion != Completion::Unknown
            })
            .collect();
        let corrupted = if gets.is_empty() {
            h.push(Operation {
                client: 9,
                key: b"k0".to_vec(),
                input: KvInput::Get,
                call: 0,
                completion: Completion::Returned { at: 1, output: KvOutput::Ok },
            });
            h.len() - 1
        } else {
            gets[pick.index(gets.len())]
        };
        let key = h.ops[corrupted].key.clone();
        if let Completion::Returned { output, .. } = &mut h.ops[corrupted].completion {
            *output = KvOutput::Value(Some(vec![NEVER]));
        }
        // Proving a violation means exhausting every order, with deeper blocks of unknown-outcome
        // operations; with many of them open in a small window that can take a few passes.
        match check(&h, 10_000_000) {
            Outcome::Violation(v) => {
                prop_assert!(v.key <= key, "reported {:?}, corrupted {:?}", v.key, key);
                prop_assert!(!v.ops.is_empty());
                prop_assert!(v.explanation.contains("Could not place #"), "{}", v.explanation);
            }
            other => prop_assert!(false, "expected a violation, got {:?}", other),
        }
    }
}

proptest! {
    // Tiny histories are cheap, and rare orders of exploration are where memo bugs hide.
    #![proptest_config(config(4096))]

    #[test]
    fn linearizability_agrees_with_brute_force_on_tiny_histories(
        ops in prop::collection::vec(tiny_op(), 1..8),
    ) {
        let mut h = History::new();
        for op in &ops {
            h.push(op.clone());
        }
        let expected = brute_force(&ops);
        let got = check(&h, 1_000_000);
        prop_assert!(!matches!(got, Outcome::Inconclusive { .. }), "{:?}", got);
        prop_assert_eq!(matches!(got, Outcome::Linearizable), expected, "{:?}", got);
    }
}

/// An arbitrary single-key operation over tiny domains, so that verdicts go both ways.
fn tiny_op() -> impl Strategy<Value = Operation> {
    let value = prop_oneof![Just(b"a".to_vec()), Just(b"b".to_vec()), Just(b"ab".to_vec())];
    let input = prop_oneof![
        Just(KvInput::Get),
        value.clone().prop_map(KvInput::Put),
        prop_oneof![Just(b"a".to_vec()), Just(b"b".to_vec())].prop_map(KvInput::Append),
        (prop::option::of(value.clone()), value.clone()).prop_map(|(expected, new)| KvInput::Cas { expected, new }),
        Just(KvInput::Delete),
    ];
    let output = prop_oneof![
        prop::option::of(value).prop_map(KvOutput::Value),
        Just(KvOutput::Ok),
        (0u64..4).prop_map(KvOutput::Len),
        any::<bool>().prop_map(|swapped| KvOutput::Cas { swapped }),
    ];
    (input, output, 0u64..6, 1u64..6, 0u8..4).prop_map(|(input, output, call, len, fate)| {
        // Mostly outputs of the right kind, so the model's verdict is what is exercised.
        let output = match (&input, output) {
            (KvInput::Get, o @ KvOutput::Value(_)) => o,
            (KvInput::Get, _) => KvOutput::Value(None),
            (KvInput::Put(_) | KvInput::Delete, _) => KvOutput::Ok,
            (KvInput::Append(_), o @ KvOutput::Len(_)) => o,
            (KvInput::Append(_), _) => KvOutput::Len(1),
            (KvInput::Cas { .. }, o @ KvOutput::Cas { .. }) => o,
            (KvInput::Cas { .. }, _) => KvOutput::Cas { swapped: true },
        };
        Operation {
            client: u64::from(fate),
            key: b"k".to_vec(),
            input,
            call: call * 10,
            completion: if fate == 0 { Completion::Unknown } else { Completion::Returned { at: call * 10 + len * 10, output } },
        }
    })
}

/// Whether some order of all returned operations and some of the unknown ones respects real
/// time and the model. Tries every order: only for a handful of operations.
fn brute_force(ops: &[Operation]) -> bool {
    fn go(ops: &[Operation], placed: &mut Vec<bool>, state: &Option<Vec<u8>>) -> bool {
        let all_returned = ops.iter().zip(placed.iter()).all(|(op, &p)| p || op.completion == Completion::Unknown);
        if all_returned {
            return true;
        }
        for i in 0..ops.len() {
            if placed[i] {
                continue;
            }
            // `i` may go next only if no unplaced operation returned before it was called.
            let blocked = ops
                .iter()
                .enumerate()
                .any(|(j, other)| !placed[j] && matches!(other.completion, Completion::Returned { at, .. } if at < ops[i].call));
            if blocked {
                continue;
            }
            let next = match &ops[i].completion {
                Completion::Returned { output, .. } => KvModel.step(state, &ops[i].input, output),
                Completion::Unknown => Some(KvModel.step_any(state, &ops[i].input)),
            };
            if let Some(next) = next {
                placed[i] = true;
                let found = go(ops, placed, &next);
                placed[i] = false;
                if found {
                    return true;
                }
            }
        }
        false
    }
    go(ops, &mut vec![false; ops.len()], &None)
}
