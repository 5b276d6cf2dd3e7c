//! Safety checkers, run as the world changes; each is incremental so a long run stays linear.
//!
//! - **Election safety**: at most one leader per term over the whole run (checked when a node
//!   reports becoming leader).
//! - **Log matching**: every (index, term) ever seen in any log has the same predecessor term and
//!   the same content everywhere (checked for each entry a node hands out to persist). By
//!   induction over indexes this is the paper's property: logs holding the same (index, term)
//!   are identical up to it.
//! - **Leader completeness**: a new leader holds every entry known committed in an earlier term
//!   (checked at each election).
//! - **State machine safety**: every node applies the same entry at each index.
//! - **Monotonicity**: a running node's commit index never goes back; a node's durable term never
//!   goes back, across crashes too.
//! - **Durability of promises**: a leader's term is durable on its own disk, and every entry a
//!   leader counts as replicated on a peer (its match index, in the peer's current term) is in
//!   that peer's durable log or snapshot. Checked across nodes after every event; this is what
//!   answering before an fsync breaks, whether or not a crash later exposes it.
//! - **Acknowledged writes are never lost**: checked at the end against every member's log.

use std::collections::BTreeMap;

use raft_core::{Entry, EntryId, LogIndex, Node, NodeId, Term};

use crate::trace::TraceHash;

/// A safety or liveness property that did not hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The property, e.g. "election safety".
    pub property: &'static str,
    /// The nodes involved.
    pub nodes: Vec<NodeId>,
    /// What exactly went wrong.
    pub detail: String,
    /// Virtual time, microseconds.
    pub at_us: u64,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let nodes: Vec<String> = self.nodes.iter().map(|n| n.to_string()).collect();
        write!(f, "{} violated at {:.3}ms (nodes {}): {}", self.property, self.at_us as f64 / 1000.0, nodes.join(", "), self.detail)
    }
}

fn data_hash(e: &Entry) -> u64 {
    let mut h = TraceHash::default();
    h.write_u64(e.kind as u64);
    h.write_bytes(&e.data);
    h.value()
}

/// Everything the checkers remember.
#[derive(Debug, Default)]
pub(crate) struct Checker {
    leaders: BTreeMap<Term, NodeId>,
    /// (index, term) -> (predecessor's term, content hash, first holder).
    entries: BTreeMap<(LogIndex, Term), (Option<Term>, u64, NodeId)>,
    /// index -> (entry, the applying node's term when first applied, node).
    applied: BTreeMap<LogIndex, (EntryId, Term, NodeId)>,
    /// Running nodes' commit indexes.
    commit: BTreeMap<NodeId, LogIndex>,
    /// Durable terms, across crashes.
    durable_term: BTreeMap<NodeId, Term>,
    /// Writes a client was told succeeded: index -> entry.
    pub(crate) acknowledged: BTreeMap<LogIndex, EntryId>,
    pub(crate) elections: u64,
}

type Check = Result<(), Violation>;

fn violation(property: &'static str, nodes: Vec<NodeId>, at_us: u64, detail: String) -> Check {
    Err(Violation { property, nodes, detail, at_us })
}

impl Checker {
    /// `node` just became leader.
    pub(crate) fn on_leader(&mut self, node: &Node, at_us: u64) -> Check {
        self.elections += 1;
        let (id, term) = (node.id(), node.term());
        if let Some(&other) = self.leaders.get(&term) {
            if other != id {
                return violation("election safety", vec![other, id], at_us, format!("two leaders in term {term}: {other} and {id}"));
            }
        }
        self.leaders.insert(term, id);
        // Leader completeness: every entry applied somewhere in an earlier term is in its log.
        for (&index, &(entry, seen_in, by)) in self.applied.range(node.first_index()..) {
            if seen_in < term && node.term_at(index) != Some(entry.term) {
                return violation(
                    "leader completeness",
                    vec![id, by],
                    at_us,
                    format!(
                        "leader {id} of term {term} lacks entry {entry}, committed (applied by {by}) in term {seen_in}; it holds {:?}",
                        node.term_at(index)
                    ),
                );
            }
        }
        Ok(())
    }

    /// `node` handed out `entries` to persist; they are now in its log.
    pub(crate) fn on_entries(&mut self, node: &Node, entries: &[Entry], at_us: u64) -> Check {
        for e in entries {
            let prev = node.term_at(e.index.prev());
            let hash = data_hash(e);
            match self.entries.get(&(e.index, e.term)) {
                Some(&(p, h, first)) if (p, h) != (prev, hash) => {
                    let what = if p != prev { format!("predecessor terms {p:?} and {prev:?}") } else { "different contents".to_string() };
                    return violation(
                        "log matching",
                        vec![first, node.id()],
                        at_us,
                        format!("entry {} is in the logs of {first} and {} with {what}", e.id(), node.id()),
                    );
                }
                Some(_) => {}
                None => {
                    self.entries.insert((e.index, e.term), (prev, hash, node.id()));
                }
            }
        }
        Ok(())
    }

    /// `node` applied `entry`.
    pub(crate) fn on_apply(&mut self, node: NodeId, term: Term, entry: &Entry, at_us: u64) -> Check {
        match self.applied.get(&entry.index) {
            Some(&(seen, _, by)) if seen != entry.id() => violation(
                "state machine safety",
                vec![by, node],
                at_us,
                format!("at index {} node {by} applied {seen} but node {node} applied {}", entry.index, entry.id()),
            ),
            Some(_) => Ok(()),
            None => {
                self.applied.insert(entry.index, (entry.id(), term, node));
                Ok(())
            }
        }
    }

    /// After any event that touched `node` (running).
    pub(crate) fn after_event(&mut self, node: &Node, at_us: u64) -> Check {
        node.check_invariants();
        let commit = node.commit_index();
        if let Some(&before) = self.commit.get(&node.id()) {
            if commit < before {
                return violation(
                    "commit index never goes back",
                    vec![node.id()],
                    at_us,
                    format!("node {} went from {before} to {commit}", node.id()),
                );
            }
        }
        self.commit.insert(node.id(), commit);
        Ok(())
    }

    /// `node` crashed: its next incarnation starts from its durable commit index.
    pub(crate) fn on_crash(&mut self, node: NodeId) {
        self.commit.remove(&node);
    }

    /// `node`'s durable hard state now has `term`.
    pub(crate) fn on_durable_term(&mut self, node: NodeId, term: Term, at_us: u64) -> Check {
        let before = self.durable_term.get(&node).copied().unwrap_or_default();
        if term < before {
            return violation(
                "durable term never goes back",
                vec![node],
                at_us,
                format!("node {node}'s durable term went from {before} to {term}"),
            );
        }
        self.durable_term.insert(node, term);
        Ok(())
    }

    /// A client was told its write at `entry` succeeded.
    pub(crate) fn on_acknowledged(&mut self, entry: EntryId) {
        self.acknowledged.insert(entry.index, entry);
    }

    /// At the end: every acknowledged write is held by the leader and by a quorum of the voters
    /// of its configuration (a lagging member may still be catching up; that is no loss).
    pub(crate) fn check_acknowledged(&self, leader: &Node, members: &[&Node], at_us: u64) -> Check {
        let holds =
            |node: &Node, index: LogIndex, entry: EntryId| index <= node.snapshot_last().index || node.term_at(index) == Some(entry.term);
        for (&index, &entry) in &self.acknowledged {
            if !holds(leader, index, entry) {
                return violation(
                    "acknowledged writes are never lost",
                    vec![leader.id()],
                    at_us,
                    format!("write {entry} was acknowledged but leader {} holds {:?} at {index}", leader.id(), leader.term_at(index)),
                );
            }
            let result = leader.membership().vote_result(|id| Some(members.iter().any(|n| n.id() == id && holds(n, index, entry))));
            if result != raft_core::quorum::VoteResult::Won {
                let missing: Vec<NodeId> = members.iter().filter(|n| !holds(n, index, entry)).map(|n| n.id()).collect();
                return violation(
                    "acknowledged writes are never lost",
                    missing.clone(),
                    at_us,
                    format!("write {entry} was acknowledged but is missing on {missing:?}: no quorum of the final configuration holds it"),
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use raft_core::EntryKind;

    #[test]
    fn state_machine_safety_catches_two_entries_at_one_index() {
        let mut c = Checker::default();
        let e = |t: u64| Entry { term: Term(t), index: LogIndex(4), kind: EntryKind::Normal, data: Bytes::new() };
        c.on_apply(NodeId(1), Term(2), &e(2), 0).unwrap();
        c.on_apply(NodeId(2), Term(2), &e(2), 0).unwrap();
        let v = c.on_apply(NodeId(3), Term(3), &e(3), 5).unwrap_err();
        assert_eq!(v.property, "state machine safety");
        assert_eq!(v.nodes, [NodeId(1), NodeId(3)]);
    }

    #[test]
    fn durable_terms_never_go_back() {
        let mut c = Checker::default();
        c.on_durable_term(NodeId(1), Term(3), 0).unwrap();
        assert_eq!(c.on_durable_term(NodeId(1), Term(2), 1).unwrap_err().property, "durable term never goes back");
    }
}
