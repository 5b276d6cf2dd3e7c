//! Sequential specifications that histories are checked against.

use std::hash::Hash;

use super::{KvInput, KvOutput};

/// A sequential specification: what one object (here, one key) does when operations are applied
/// to it one at a time.
///
/// The checker searches for an order of the operations, consistent with real time, in which every
/// returned operation is accepted by [`Model::step`]. Operations with an unknown outcome are
/// applied with [`Model::step_any`] at some point, or not at all.
pub trait Model {
    /// The object's state. The checker interns states and memoises on them, so equal states must
    /// hash equally, and the representation should be compact.
    type State: Clone + Eq + Hash;
    /// What a client asked for. Unknown-outcome operations with equal inputs are treated as
    /// interchangeable, and the hash must agree with equality.
    type Input: Eq + Hash;
    /// What the client was told.
    type Output;

    /// The state before any operation.
    fn init(&self) -> Self::State;

    /// Applies `input` to `state` for an operation that returned `output`: the new state, or
    /// `None` if the specification could not have produced `output` from `state`.
    fn step(&self, state: &Self::State, input: &Self::Input, output: &Self::Output) -> Option<Self::State>;

    /// Applies `input` to `state` for an operation whose outcome is unknown, accepting whatever
    /// output it would have produced. (That it may not have happened at all is the checker's
    /// business: it may leave the operation out.)
    fn step_any(&self, state: &Self::State, input: &Self::Input) -> Self::State;

    /// Whether `input` never changes the state. The checker drops unknown-outcome operations of
    /// such inputs, since they constrain nothing. Must only return `true` if `step_any` returns
    /// its `state` unchanged for every state. The default, `false`, is always correct.
    fn is_read_only(&self, input: &Self::Input) -> bool {
        let _ = input;
        false
    }
}

/// One key of a key-value store: absent, or a byte string.
///
/// `Get` reads; `Put` sets; `Append` concatenates (an absent key counts as empty) and returns the
/// new length in bytes; `Cas { expected, new }` sets `new` iff the current value equals
/// `expected` (`None` meaning absent); `Delete` removes the key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KvModel;

impl KvModel {
    /// The state after `input`, with the output the specification produces.
    fn apply(state: &Option<Vec<u8>>, input: &KvInput) -> (Option<Vec<u8>>, KvOutput) {
        match input {
            KvInput::Get => (state.clone(), KvOutput::Value(state.clone())),
            KvInput::Put(value) => (Some(value.clone()), KvOutput::Ok),
            KvInput::Append(suffix) => {
                let mut value = Vec::with_capacity(state.as_ref().map_or(0, Vec::len) + suffix.len());
                value.extend_from_slice(state.as_deref().unwrap_or_default());
                value.extend_from_slice(suffix);
                let len = value.len() as u64;
                (Some(value), KvOutput::Len(len))
            }
            KvInput::Cas { expected, new } => {
                if state == expected {
                    (Some(new.clone()), KvOutput::Cas { swapped: true })
                } else {
                    (state.clone(), KvOutput::Cas { swapped: false })
                }
            }
            KvInput::Delete => (None, KvOutput::Ok),
        }
    }
}

impl Model for KvModel {
    type State = Option<Vec<u8>>;
    type Input = KvInput;
    type Output = KvOutput;

    fn init(&self) -> Self::State {
        None
    }

    fn step(&self, state: &Self::State, input: &KvInput, output: &KvOutput) -> Option<Self::State> {
        // Check the cheap cases without building the new value: a `Get` is most of a workload,
        // and a wrong `Append` length need not copy a long value.
        match (input, output) {
            (KvInput::Get, KvOutput::Value(seen)) => return (seen == state).then(|| state.clone()),
            (KvInput::Append(suffix), KvOutput::Len(len)) => {
                let old = state.as_ref().map_or(0, Vec::len);
                if (old + suffix.len()) as u64 != *len {
                    return None;
                }
            }
            _ => {}
        }
        let (next, expected) = Self::apply(state, input);
        (expected == *output).then_some(next)
    }

    fn step_any(&self, state: &Self::State, input: &KvInput) -> Self::State {
        Self::apply(state, input).0
    }

    fn is_read_only(&self, input: &KvInput) -> bool {
        matches!(input, KvInput::Get)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Option<Vec<u8>> {
        Some(s.as_bytes().to_vec())
    }

    #[test]
    fn linearizability_kv_model_follows_its_specification() {
        let m = KvModel;
        let absent = m.init();
        assert_eq!(m.step(&absent, &KvInput::Get, &KvOutput::Value(None)), Some(None));
        assert_eq!(m.step(&absent, &KvInput::Get, &KvOutput::Value(v("a"))), None);
        let a = m.step(&absent, &KvInput::Put(b"a".to_vec()), &KvOutput::Ok).unwrap();
        assert_eq!(a, v("a"));
        let ab = m.step(&a, &KvInput::Append(b"b".to_vec()), &KvOutput::Len(2));
        assert_eq!(ab, Some(v("ab")));
        assert_eq!(m.step(&a, &KvInput::Append(b"b".to_vec()), &KvOutput::Len(1)), None);
        assert_eq!(m.step_any(&absent, &KvInput::Append(b"xy".to_vec())), v("xy"), "append on an absent key creates it");
        let cas_absent = KvInput::Cas { expected: None, new: b"n".to_vec() };
        let swapped = KvOutput::Cas { swapped: true };
        let refused = KvOutput::Cas { swapped: false };
        assert_eq!(m.step(&absent, &cas_absent, &swapped), Some(v("n")));
        assert_eq!(m.step(&a, &cas_absent, &swapped), None);
        assert_eq!(m.step(&a, &cas_absent, &refused), Some(v("a")));
        assert_eq!(m.step(&a, &KvInput::Delete, &KvOutput::Ok), Some(None));
        assert_eq!(m.step(&a, &KvInput::Delete, &KvOutput::Len(0)), None);
        assert!(m.is_read_only(&KvInput::Get));
        assert!(!m.is_read_only(&KvInput::Delete));
    }
}
