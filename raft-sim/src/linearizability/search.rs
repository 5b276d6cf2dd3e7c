//! The search for a linearization: Wing & Gong's algorithm with Lowe's memoisation, laid out as
//! in Porcupine: the call and return entries of the returned operations form one doubly linked
//! list in time order; the candidates to linearize next are the call entries before the first
//! return entry; a linearized operation is lifted out of the list and put back on backtracking;
//! a memo of (linearized set, state) prunes configurations already explored.
//!
//! # Operations with unknown outcome
//!
//! Such an operation may take effect at any point after its call, or never: it returns at
//! +infinity with any output. Trying each open one at every configuration, as plain WGL would,
//! makes each of them a "phantom" state at every later position, and the search drowns in them
//! once a few dozen are open (they stay open forever). So they only enter the search as a
//! *block* placed immediately before a returned operation whose outcome the block changes. This
//! loses no linearization. Take any linearization and a block `B` (one or more unknown-outcome
//! operations in a row) followed by the returned operation `r`, from state `s`. If `r` is also
//! accepted from `s`, and it either ends in the same state whether `B` went first or not
//! (`B` is absorbed), or `B` can follow `r` to reach the same state (they commute), then drop
//! `B` or move it after `r`. Unknown-outcome operations never have to precede anything, so the
//! result is still a linearization. Each such rewrite removes an unknown-outcome operation from
//! the middle or moves one later, so rewriting stops, and what remains has only blocks that
//! change the outcome of the operation after them. Unknown operations left at the end did not
//! happen. So the search succeeds as soon as every *returned* operation is placed.
//!
//! The blocks possible at a configuration are the configuration's *closure*. It is built
//! breadth-first and lazily, only once no returned candidate works on its own. For each state it
//! keeps only the blocks whose sets of operations are minimal under inclusion, because a block
//! that uses more unknown-outcome operations to reach the same state can never help.
//!
//! The memo uses the same rule. It is keyed by (set of returned operations, state) and holds an
//! antichain of sets of unknown-outcome operations. A configuration is pruned when one with the
//! same key and a subset of its unknown-outcome operations has been visited. Every move from the
//! larger configuration is also a move from the smaller one, so this is a simulation and the
//! search stays complete.
//!
//! Unknown-outcome operations with equal inputs are interchangeable, so they are used in order
//! of call (the earlier one is available whenever the later one is).
//!
//! # Passes
//!
//! Blocks of every length make a complete search, but a closure of `k` open appends holds every
//! ordered subset of them, and a search that backtracks through many dead ends would build one
//! at each. Histories seldom need more than one or two unknown-outcome operations in a row, so
//! the search runs in passes that cap the block length at 1, 2, 3, ... (iterative deepening). A
//! pass that finds a linearization is right. A pass that exhausts its space without ever having
//! cut a block short was complete, so its violation stands. A pass that did cut one short proves
//! nothing, and a deeper pass follows. A shallow pass may take long to fail where a deeper one
//! would succeed at once, so passes run in rounds with doubling step slices, deeper passes
//! getting smaller slices, and a finished pass is not run again.

use std::collections::BTreeSet;

use super::bitset::{is_subset, Bitset};
use super::fxhash::{fx_hash, mix64, FxHashMap};
use super::model::Model;

/// One operation of a single object's history, as the generic search sees it.
#[derive(Debug)]
pub struct ModelOp<'a, I, O> {
    /// When the client invoked the operation (virtual time, any unit).
    pub call: u64,
    /// What the client asked for.
    pub input: &'a I,
    /// `Some((at, output))` if the client was told `output` at time `at`; `None` if the outcome
    /// is unknown (the operation may or may not have taken effect, at any time after `call`).
    pub returned: Option<(u64, &'a O)>,
}

impl<I, O> Clone for ModelOp<'_, I, O> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<I, O> Copy for ModelOp<'_, I, O> {}

/// The verdict of [`check_model`] on one object's history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SearchOutcome<S> {
    /// A linearization exists.
    Linearizable {
        /// A witness: indices into the checked operations, in linearization order. It holds
        /// every returned operation and those unknown-outcome operations that took effect.
        order: Vec<usize>,
        /// Search steps used.
        steps: u64,
    },
    /// No linearization exists.
    Violation(LongestPrefix<S>),
    /// The step budget ran out first.
    Inconclusive(LongestPrefix<S>),
}

/// The longest linearizable prefix the search found: what a violation report explains.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LongestPrefix<S> {
    /// Indices into the checked operations, in linearization order.
    pub ops: Vec<usize>,
    /// The state after applying `ops`.
    pub state: S,
    /// The returned operation outside `ops` with the earliest return time: the operation the
    /// search could not place before its deadline. `None` only if every returned operation is
    /// in `ops`.
    pub unplaced: Option<usize>,
    /// Search steps used.
    pub steps: u64,
}

/// Checks one object's history against `model`, spending at most `budget_steps` search steps
/// (a step is one move tried, one backtrack, or one unknown-outcome operation applied while
/// building the blocks of a configuration; the last expansion may overrun the budget by the
/// number of open unknown-outcome operations).
///
/// Two operations are concurrent unless one returned strictly before the other was called: an
/// operation returning at `t` and one called at `t` may be linearized in either order. This can
/// only hide a violation, never invent one.
///
/// Operations with unknown outcome (`returned: None`) are placed only in short blocks right
/// before a returned operation whose outcome they change, which loses no linearization. The
/// search runs in passes that allow blocks of 1, 2, 3, ... such operations, with doubling step
/// slices; a violation is reported only by a pass that never had to cut a block short, so it is
/// proven. Many open unknown-outcome writes that do not overwrite each other (appends, in every
/// order) make proofs of violation expensive: expect [`SearchOutcome::Inconclusive`] there
/// rather than a slow answer.
///
/// Deterministic: the same `ops` give the same outcome, witness and steps.
///
/// # Panics
///
/// If a returned operation's return time is before its call time.
pub fn check_model<M: Model>(model: &M, ops: &[ModelOp<'_, M::Input, M::Output>], budget_steps: u64) -> SearchOutcome<M::State> {
    // Passes with growing block lengths, in rounds: see the module docs.
    let unknown_ops = ops.iter().filter(|op| op.returned.is_none() && !model.is_read_only(op.input)).count();
    // A pass whose blocks may hold every unknown-outcome operation never cuts one short.
    let deepest = unknown_ops.max(1);
    let base = (budget_steps / 64).max(1024);
    // Passes that exhausted their space having cut a block short: they proved nothing, and
    // running them again would not either.
    let mut exhausted = BTreeSet::new();
    let mut used = 0u64;
    let mut longest: Option<LongestPrefix<M::State>> = None;
    let mut round = 0u32;
    loop {
        let shallowest =
            (1..=deepest).find(|b| !exhausted.contains(b)).expect("the deepest pass never cuts a block short, so it ends the search");
        let passes: Vec<usize> = (shallowest..=deepest.min(shallowest + round as usize)).filter(|b| !exhausted.contains(b)).collect();
        for max_block in passes {
            // Deeper passes get smaller slices; every slice doubles each round.
            let halvings = (max_block - shallowest) as u32;
            let slice = base.checked_shl(round.saturating_sub(halvings)).unwrap_or(u64::MAX).min(budget_steps - used);
            let mut search = Search::new(model, ops, max_block);
            let outcome = search.run(slice);
            used = (used + search.steps).min(budget_steps);
            let prefix = match outcome {
                SearchOutcome::Linearizable { order, .. } => return SearchOutcome::Linearizable { order, steps: used },
                SearchOutcome::Violation(prefix) if !search.truncated => {
                    return SearchOutcome::Violation(LongestPrefix { steps: used, ..prefix });
                }
                SearchOutcome::Violation(prefix) => {
                    exhausted.insert(max_block);
                    prefix
                }
                SearchOutcome::Inconclusive(prefix) => prefix,
            };
            if longest.as_ref().is_none_or(|l| prefix.ops.len() > l.ops.len()) {
                longest = Some(prefix);
            }
            if used == budget_steps {
                let longest = longest.expect("a pass ran");
                return SearchOutcome::Inconclusive(LongestPrefix { steps: used, ..longest });
            }
        }
        round += 1;
    }
}

/// End of a list; also "no such member".
const NIL: usize = usize::MAX;
/// Head of the list of returned operations' call and return entries.
const HEAD: usize = 0;
/// Salt so that state-id hashes differ from bit hashes.
const STATE_SALT: u64 = 0xbb67_ae85_84ca_a73b;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EntryKind {
    Head,
    Call,
    Return,
}

/// A node of the doubly linked list of returned operations' entries.
#[derive(Clone, Copy, Debug)]
struct Entry {
    prev: usize,
    next: usize,
    time: u64,
    kind: EntryKind,
    /// Dense id of the operation (see [`Member`]).
    member: usize,
}

/// An operation taking part in the search. Dense ids: returned operations are `0..returned`,
/// then unknown-outcome ones in order of call time.
#[derive(Clone, Copy, Debug)]
struct Member {
    /// Index into the checked operations.
    original: usize,
    /// `NIL` for unknown-outcome operations, which have no entries.
    call_entry: usize,
    return_entry: usize,
    /// For an unknown-outcome operation, the unknown id (member minus the number of returned
    /// members) of the one called just before it with an equal input, or `NIL`. Such twins are
    /// interchangeable, so they are used in order of call.
    twin_before: usize,
}

/// Every state seen, stored once; the search refers to states by id.
struct Interner<S> {
    states: Vec<S>,
    /// Hash of a state to the newest id with that hash.
    newest: FxHashMap<u64, usize>,
    /// Id to the next older id with the same hash (`NIL` at the end).
    older: Vec<usize>,
}

impl<S: Eq + std::hash::Hash> Interner<S> {
    fn new() -> Self {
        Interner { states: Vec::new(), newest: FxHashMap::default(), older: Vec::new() }
    }

    fn intern(&mut self, state: S) -> usize {
        let hash = fx_hash(&state);
        let head = self.newest.get(&hash).copied().unwrap_or(NIL);
        let mut id = head;
        while id != NIL {
            if self.states[id] == state {
                return id;
            }
            id = self.older[id];
        }
        let id = self.states.len();
        self.states.push(state);
        self.older.push(head);
        self.newest.insert(hash, id);
        id
    }
}

/// A visited configuration: a set of returned operations, a state, and a set of unknown ones.
struct Visited {
    state: usize,
    returned: Box<[u64]>,
    unknown: Box<[u64]>,
}

/// Configurations visited so far, bucketed by (returned set, state); a bucket holds an antichain
/// of unknown sets.
#[derive(Default)]
struct Memo {
    buckets: FxHashMap<u64, Vec<Visited>>,
}

impl Memo {
    /// Records the configuration and returns `true`, unless it is subsumed by a visited one
    /// (same returned set and state, subset of its unknown set), then returns `false`.
    fn visit(&mut self, returned: &Bitset, state: usize, unknown: &Bitset) -> bool {
        let key = returned.hash() ^ mix64(state as u64 ^ STATE_SALT);
        let bucket = self.buckets.entry(key).or_default();
        let same = |v: &Visited| v.state == state && *v.returned == *returned.words();
        if bucket.iter().any(|v| same(v) && is_subset(&v.unknown, unknown.words())) {
            return false;
        }
        // Keep the bucket an antichain: drop what the new configuration subsumes.
        bucket.retain(|v| !(same(v) && is_subset(unknown.words(), &v.unknown)));
        bucket.push(Visited { state, returned: returned.words().into(), unknown: unknown.words().into() });
        true
    }
}

/// A block of unknown-outcome operations in the closure of a configuration.
struct Block {
    /// The state after it.
    state: usize,
    /// The block this one extends by `member` (`NIL` for the empty root block).
    parent: usize,
    member: usize,
    /// The number of operations in it.
    len: usize,
    /// Unknown ids (member minus the number of returned operations) in the block.
    set: Bitset,
}

/// The blocks of unknown-outcome operations reachable from one configuration, breadth-first:
/// `blocks[0]` is the empty block, and for each state only blocks with inclusion-minimal sets
/// are kept.
struct Closure {
    /// Open unknown-outcome members that may take effect now.
    candidates: Vec<usize>,
    blocks: Vec<Block>,
    by_state: FxHashMap<usize, Vec<usize>>,
    /// `blocks[..expanded]` have had their extensions generated.
    expanded: usize,
    /// The state each returned candidate leads to from the configuration's own state, once
    /// computed (`None`: rejected).
    plain: FxHashMap<usize, Option<usize>>,
}

/// Where the enumeration of moves from the current configuration is.
enum Cursor {
    /// Trying returned candidates alone: the entry to look at next.
    Plain(usize),
    /// Trying `blocks[block]` followed by a returned candidate: the entry to look at next
    /// (`HEAD`: move on to the next block).
    Blocks { closure: Box<Closure>, block: usize, entry: usize },
}

/// One move on the search stack: a block of unknown-outcome operations (possibly empty), then one
/// returned operation.
struct Frame {
    returned: usize,
    block: Vec<usize>,
    /// The state before the move.
    prev_state: usize,
    /// Where the enumeration resumes when the move is undone.
    resume: Cursor,
}

struct Search<'s, M: Model> {
    model: &'s M,
    ops: &'s [ModelOp<'s, M::Input, M::Output>],
    members: Vec<Member>,
    /// Number of returned members; they have ids `0..returned`.
    returned: usize,
    entries: Vec<Entry>,
    states: Interner<M::State>,
    /// `(state, unknown member)` to the state after it.
    step_any_cache: FxHashMap<(usize, usize), usize>,
    memo: Memo,
    done_returned: Bitset,
    done_unknown: Bitset,
    frames: Vec<Frame>,
    /// Members linearized so far, in order.
    path: Vec<usize>,
    state: usize,
    steps: u64,
    /// The longest path seen, and the state after it.
    best: Vec<usize>,
    best_state: usize,
    /// The shortest path length since `best` was recorded: `best[..low]` equals the path's
    /// start, so recording a new best copies only what lies beyond it.
    low: usize,
    /// Longest block of unknown-outcome operations tried.
    max_block: usize,
    /// Whether some block could not be extended because of `max_block`.
    truncated: bool,
}

impl<'s, M: Model> Search<'s, M> {
    fn new(model: &'s M, ops: &'s [ModelOp<'s, M::Input, M::Output>], max_block: usize) -> Self {
        let mut returned_ops = Vec::new();
        let mut unknown_ops = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            match op.returned {
                Some((at, _)) => {
                    assert!(at >= op.call, "operation {i} returns at {at} before its call at {}", op.call);
                    returned_ops.push(i);
                }
                None if model.is_read_only(op.input) => {}
                None => unknown_ops.push(i),
            }
        }
        unknown_ops.sort_by_key(|&i| (ops[i].call, i));
        let returned = returned_ops.len();
        let mut members: Vec<Member> = returned_ops
            .iter()
            .chain(&unknown_ops)
            .map(|&original| Member { original, call_entry: NIL, return_entry: NIL, twin_before: NIL })
            .collect();
        link_twins(ops, &mut members[returned..]);
        let entries = link_entries(ops, &mut members[..returned]);

        let mut states = Interner::new();
        let state = states.intern(model.init());
        Search {
            model,
            ops,
            returned,
            done_returned: Bitset::new(returned),
            done_unknown: Bitset::new(members.len() - returned),
            members,
            entries,
            states,
            step_any_cache: FxHashMap::default(),
            memo: Memo::default(),
            frames: Vec::new(),
            path: Vec::new(),
            state,
            steps: 0,
            best: Vec::new(),
            best_state: state,
            low: 0,
            max_block,
            truncated: false,
        }
    }

    fn run(&mut self, budget_steps: u64) -> SearchOutcome<M::State> {
        let fresh = self.memo.visit(&self.done_returned, self.state, &self.done_unknown);
        assert!(fresh, "the memo starts empty");
        let mut cursor = Cursor::Plain(self.entries[HEAD].next);
        loop {
            if self.entries[HEAD].next == NIL {
                // Every returned operation is placed; unknown ones left over did not happen.
                let order = self.path.iter().map(|&m| self.members[m].original).collect();
                return SearchOutcome::Linearizable { order, steps: self.steps };
            }
            if self.steps >= budget_steps {
                return SearchOutcome::Inconclusive(self.longest_prefix());
            }
            self.steps += 1;
            let next = match cursor {
                Cursor::Plain(entry) => Some(self.visit_plain(entry)),
                Cursor::Blocks { closure, block, entry } => self.visit_block(closure, block, entry),
            };
            cursor = match next.or_else(|| self.backtrack()) {
                Some(next) => next,
                None => return SearchOutcome::Violation(self.longest_prefix()),
            };
        }
    }

    /// Tries the returned operation of a call entry alone; at the first return entry, moves on
    /// to blocks of unknown-outcome operations.
    fn visit_plain(&mut self, id: usize) -> Cursor {
        // The list is not empty and ends with a return entry, so the scan stops in time.
        assert_ne!(id, NIL, "scan ran off the list");
        let entry = self.entries[id];
        match entry.kind {
            EntryKind::Call => match self.step_returned(self.state, entry.member) {
                None => Cursor::Plain(entry.next),
                Some(after) => self.take(entry.member, Vec::new(), after, Cursor::Plain(entry.next)),
            },
            // The earliest pending return: nothing called after it can go next.
            EntryKind::Return => Cursor::Blocks { closure: Box::new(self.closure(entry.time)), block: 0, entry: HEAD },
            EntryKind::Head => unreachable!("the head is never scanned"),
        }
    }

    /// Tries `blocks[block]` followed by the returned operation of `entry`. `None` when the
    /// closure is exhausted.
    fn visit_block(&mut self, mut closure: Box<Closure>, block: usize, entry: usize) -> Option<Cursor> {
        if entry == HEAD || self.entries[entry].kind == EntryKind::Return {
            let next = block + 1;
            while closure.blocks.len() <= next {
                if closure.expanded == closure.blocks.len() {
                    return None;
                }
                self.expand(&mut closure);
            }
            return Some(Cursor::Blocks { closure, block: next, entry: self.entries[HEAD].next });
        }
        let e = self.entries[entry];
        debug_assert_eq!(e.kind, EntryKind::Call);
        match self.block_changes_outcome(&mut closure, block, e.member) {
            None => Some(Cursor::Blocks { closure, block, entry: e.next }),
            Some(after) => {
                let ops = chain(&closure, block);
                let resume = Cursor::Blocks { closure, block, entry: e.next };
                Some(self.take(e.member, ops, after, resume))
            }
        }
    }

    /// The state after `blocks[block]` then returned `member`, if that is accepted and the block
    /// changes the outcome (see the module docs: otherwise the block is absorbed by the
    /// operation, or commutes with it, and need not go first).
    fn block_changes_outcome(&mut self, closure: &mut Closure, block: usize, member: usize) -> Option<usize> {
        let after = self.step_returned(closure.blocks[block].state, member)?;
        let plain = match closure.plain.get(&member) {
            Some(&plain) => plain,
            None => {
                let plain = self.step_returned(closure.blocks[0].state, member);
                closure.plain.insert(member, plain);
                plain
            }
        };
        if let Some(plain) = plain {
            if plain == after {
                return None;
            }
            let mut moved = plain;
            for m in chain(closure, block) {
                moved = self.step_unknown(moved, m);
            }
            if moved == after {
                return None;
            }
        }
        Some(after)
    }

    /// The closure of the current configuration, with only its empty block; `bound` is the
    /// earliest pending return.
    fn closure(&self, bound: u64) -> Closure {
        let candidates = (self.returned..self.members.len())
            .take_while(|&m| self.ops[self.members[m].original].call <= bound)
            .filter(|&m| !self.done_unknown.contains(m - self.returned))
            .collect();
        let mut by_state = FxHashMap::default();
        by_state.insert(self.state, vec![0]);
        Closure {
            candidates,
            blocks: vec![Block {
                state: self.state,
                parent: NIL,
                member: NIL,
                len: 0,
                set: Bitset::new(self.members.len() - self.returned),
            }],
            by_state,
            expanded: 0,
            plain: FxHashMap::default(),
        }
    }

    /// Generates the one-longer extensions of the next unexpanded block, skipping those that
    /// reach a state some kept block reaches with a subset of their operations.
    fn expand(&mut self, closure: &mut Closure) {
        let parent = closure.expanded;
        closure.expanded += 1;
        let at_limit = closure.blocks[parent].len == self.max_block;
        if at_limit && self.truncated {
            // This pass already cannot prove a violation; the check below would tell nothing.
            return;
        }
        for i in 0..closure.candidates.len() {
            let member = closure.candidates[i];
            let unknown = member - self.returned;
            let twin = self.members[member].twin_before;
            if closure.blocks[parent].set.contains(unknown)
                || (twin != NIL && !self.done_unknown.contains(twin) && !closure.blocks[parent].set.contains(twin))
            {
                continue;
            }
            self.steps += 1;
            let state = self.step_unknown(closure.blocks[parent].state, member);
            let mut set = closure.blocks[parent].set.clone();
            set.insert(unknown);
            let subsumed = closure
                .by_state
                .get(&state)
                .is_some_and(|ids| ids.iter().any(|&id| is_subset(closure.blocks[id].set.words(), set.words())));
            if subsumed {
                continue;
            }
            if at_limit {
                // A longer block reaches a new state: left for a deeper pass, should this one
                // fail. (If every extension at the limit is subsumed, so is every longer block,
                // and the closure is complete.)
                self.truncated = true;
                return;
            }
            closure.by_state.entry(state).or_default().push(closure.blocks.len());
            let len = closure.blocks[parent].len + 1;
            closure.blocks.push(Block { state, parent, member, len, set });
        }
    }

    /// The state after returned `member` from `state`, if the model accepts its output.
    fn step_returned(&mut self, state: usize, member: usize) -> Option<usize> {
        let op = &self.ops[self.members[member].original];
        let (_, output) = op.returned.expect("a returned member");
        let next = self.model.step(&self.states.states[state], op.input, output)?;
        Some(self.states.intern(next))
    }

    /// The state after unknown-outcome `member` takes effect from `state`.
    fn step_unknown(&mut self, state: usize, member: usize) -> usize {
        if let Some(&next) = self.step_any_cache.get(&(state, member)) {
            return next;
        }
        let op = &self.ops[self.members[member].original];
        let next = self.model.step_any(&self.states.states[state], op.input);
        let next = self.states.intern(next);
        self.step_any_cache.insert((state, member), next);
        next
    }

    /// Makes the move (`block`, then returned `member`) to state `after`, unless a visited
    /// configuration subsumes the result; returns where the enumeration goes next.
    fn take(&mut self, member: usize, block: Vec<usize>, after: usize, resume: Cursor) -> Cursor {
        self.mark(member, &block, true);
        if !self.memo.visit(&self.done_returned, after, &self.done_unknown) {
            self.mark(member, &block, false);
            return resume;
        }
        self.path.extend_from_slice(&block);
        self.path.push(member);
        self.frames.push(Frame { returned: member, block, prev_state: self.state, resume });
        self.state = after;
        self.lift(member);
        if self.path.len() > self.best.len() {
            self.best.truncate(self.low);
            self.best.extend_from_slice(&self.path[self.low..]);
            self.best_state = self.state;
            self.low = self.path.len();
        }
        Cursor::Plain(self.entries[HEAD].next)
    }

    /// Undoes the newest move and says where the enumeration resumes. `None` when the stack is
    /// empty: the search space is exhausted.
    fn backtrack(&mut self) -> Option<Cursor> {
        let frame = self.frames.pop()?;
        self.unlift(frame.returned);
        self.mark(frame.returned, &frame.block, false);
        self.path.truncate(self.path.len() - 1 - frame.block.len());
        self.low = self.low.min(self.path.len());
        self.state = frame.prev_state;
        Some(frame.resume)
    }

    fn mark(&mut self, member: usize, block: &[usize], done: bool) {
        for &m in block {
            if done {
                self.done_unknown.insert(m - self.returned);
            } else {
                self.done_unknown.remove(m - self.returned);
            }
        }
        if done {
            self.done_returned.insert(member);
        } else {
            self.done_returned.remove(member);
        }
    }

    /// Removes the member's entries from the list. Entries keep their own links, so `unlift`
    /// in reverse order restores them (dancing links).
    fn lift(&mut self, member: usize) {
        let m = self.members[member];
        self.unlink(m.call_entry);
        self.unlink(m.return_entry);
    }

    fn unlift(&mut self, member: usize) {
        let m = self.members[member];
        self.relink(m.return_entry);
        self.relink(m.call_entry);
    }

    fn unlink(&mut self, id: usize) {
        let Entry { prev, next, .. } = self.entries[id];
        self.entries[prev].next = next;
        if next != NIL {
            self.entries[next].prev = prev;
        }
    }

    fn relink(&mut self, id: usize) {
        let Entry { prev, next, .. } = self.entries[id];
        self.entries[prev].next = id;
        if next != NIL {
            self.entries[next].prev = id;
        }
    }

    fn longest_prefix(&self) -> LongestPrefix<M::State> {
        let mut placed = Bitset::new(self.returned);
        for &member in &self.best {
            if member < self.returned {
                placed.insert(member);
            }
        }
        let unplaced = (0..self.returned)
            .filter(|&id| !placed.contains(id))
            .min_by_key(|&id| (self.entries[self.members[id].return_entry].time, id))
            .map(|id| self.members[id].original);
        LongestPrefix {
            ops: self.best.iter().map(|&m| self.members[m].original).collect(),
            state: self.states.states[self.best_state].clone(),
            unplaced,
            steps: self.steps,
        }
    }
}

/// Points each unknown-outcome member (`unknown` is indexed by unknown id, in order of call) at
/// the one called just before it with an equal input.
fn link_twins<I: Eq + std::hash::Hash, O>(ops: &[ModelOp<'_, I, O>], unknown: &mut [Member]) {
    // Hash to the newest member of each group of equal inputs with that hash.
    let mut newest: FxHashMap<u64, Vec<usize>> = FxHashMap::default();
    for id in 0..unknown.len() {
        let input = ops[unknown[id].original].input;
        let groups = newest.entry(fx_hash(input)).or_default();
        match groups.iter_mut().find(|g| *ops[unknown[**g].original].input == *input) {
            Some(group) => {
                unknown[id].twin_before = *group;
                *group = id;
            }
            None => groups.push(id),
        }
    }
}

/// The doubly linked list of the returned members' call and return entries, in time order: at
/// equal times calls before returns (so touching intervals are concurrent), then by member.
fn link_entries<I, O>(ops: &[ModelOp<'_, I, O>], returned: &mut [Member]) -> Vec<Entry> {
    let mut timeline: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * returned.len());
    for (id, m) in returned.iter().enumerate() {
        let op = &ops[m.original];
        let (at, _) = op.returned.expect("a returned member");
        timeline.push((op.call, false, id));
        timeline.push((at, true, id));
    }
    timeline.sort_unstable();
    let mut entries = vec![Entry { prev: NIL, next: NIL, time: 0, kind: EntryKind::Head, member: NIL }];
    for (time, is_return, member) in timeline {
        let id = entries.len();
        let prev = id - 1;
        let kind = if is_return { EntryKind::Return } else { EntryKind::Call };
        entries.push(Entry { prev, next: NIL, time, kind, member });
        entries[prev].next = id;
        if is_return {
            returned[member].return_entry = id;
        } else {
            returned[member].call_entry = id;
        }
    }
    entries
}

/// The members of `blocks[block]`, in order.
fn chain(closure: &Closure, block: usize) -> Vec<usize> {
    let mut members = Vec::new();
    let mut b = block;
    while closure.blocks[b].parent != NIL {
        members.push(closure.blocks[b].member);
        b = closure.blocks[b].parent;
    }
    members.reverse();
    members
}
