//! What a leader knows about each follower: match and next index (§5.3), the replication state
//! (probe, replicate, snapshot) and the window of AppendEntries in flight.
//!
//! Transitions are methods of [`Progress`] only; the node decides *when* to call them.
//!
//! - **Probe**: the leader does not know where the logs match. It sends one AppendEntries at a
//!   time and waits for the answer (or a heartbeat answer) before the next, backing up with the
//!   follower's conflict hint.
//! - **Replicate**: the logs matched at `matched`. The leader streams entries optimistically,
//!   advancing `next` as it sends, with at most `max_inflight_msgs` messages unanswered.
//! - **Snapshot**: the entries the follower needs were compacted away; a snapshot is being sent.

use std::collections::VecDeque;

use crate::types::{EntryId, LogIndex};

/// The replication state of a peer, as reported by [`crate::Node::progress`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplicationState {
    /// Looking for the point where the logs match, one message at a time.
    Probe,
    /// Streaming entries with a window of messages in flight.
    Replicate,
    /// Receiving a snapshot.
    Snapshot,
}

/// A snapshot transfer to one follower.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SnapshotTransfer {
    /// The snapshot being sent (its last entry).
    pub(crate) snapshot: EntryId,
    /// Bytes the follower confirmed holding.
    pub(crate) acked_offset: u64,
    /// Bytes sent so far (may run ahead of `acked_offset` by one chunk).
    pub(crate) sent_offset: u64,
    /// Ticks since the last chunk went out; a chunk unanswered for an election timeout is resent.
    pub(crate) ticks_since_send: u32,
}

/// Sent-but-unanswered AppendEntries to one peer: the last index each carried, oldest first.
///
/// The window adapts, additive increase and multiplicative decrease as in TCP: it starts at
/// `capacity` (`max_inflight_msgs`), halves whenever the stream breaks (a rejection or a lost
/// round sends the peer back to probing) and grows by one with every acknowledgement that moves
/// the match index, up to `capacity`. A stream that keeps breaking (heavy reordering, loss)
/// then sends a few messages at a time instead of refilling a full window after every break,
/// each refill answered by a full window of stale replies that break it again: a message storm.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Inflights {
    capacity: usize,
    /// The current window, `1..=capacity`.
    limit: usize,
    last_indexes: VecDeque<LogIndex>,
}

impl Inflights {
    pub(crate) fn new(capacity: usize) -> Inflights {
        assert!(capacity > 0);
        Inflights { capacity, limit: capacity, last_indexes: VecDeque::new() }
    }

    pub(crate) fn is_full(&self) -> bool {
        self.last_indexes.len() >= self.limit
    }

    /// The current window.
    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// The stream broke: halve the window.
    pub(crate) fn shrink(&mut self) {
        self.limit = (self.limit / 2).max(1);
    }

    /// An acknowledgement moved the match index: widen the window by one.
    pub(crate) fn grow(&mut self) {
        self.limit = (self.limit + 1).min(self.capacity);
    }

    pub(crate) fn len(&self) -> usize {
        self.last_indexes.len()
    }

    pub(crate) fn add(&mut self, last: LogIndex) {
        assert!(!self.is_full(), "sending beyond the inflight window");
        debug_assert!(self.last_indexes.back().is_none_or(|&b| b <= last), "inflights are sent in index order");
        self.last_indexes.push_back(last);
    }

    /// Frees every message whose entries are all acknowledged (last index <= `index`).
    pub(crate) fn free_to(&mut self, index: LogIndex) {
        while self.last_indexes.front().is_some_and(|&l| l <= index) {
            self.last_indexes.pop_front();
        }
    }

    pub(crate) fn reset(&mut self) {
        self.last_indexes.clear();
    }
}

/// The leader's view of one peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Progress {
    /// Highest index known to match the leader's log (and be durable on the peer).
    pub(crate) matched: LogIndex,
    /// Next index to send.
    pub(crate) next: LogIndex,
    pub(crate) state: ReplicationState,
    /// Probe state: a message is out and unanswered.
    pub(crate) probe_sent: bool,
    pub(crate) inflights: Inflights,
    /// Set on any message from the peer; CheckQuorum reads and clears it every election timeout.
    pub(crate) recent_active: bool,
    /// Ticks since the peer last answered (for status reports).
    pub(crate) ticks_since_contact: u64,
    /// Highest read round the peer has acknowledged (ReadIndex).
    pub(crate) read_round: u64,
    /// Highest commit index sent to the peer.
    pub(crate) commit_sent: LogIndex,
    /// `matched` at the previous heartbeat answer: no change over a whole round while entries
    /// are outstanding means appends were lost.
    pub(crate) matched_at_heartbeat: LogIndex,
    /// Present in Snapshot state.
    pub(crate) snapshot: Option<SnapshotTransfer>,
}

impl Progress {
    pub(crate) fn new(next: LogIndex, max_inflight: usize) -> Progress {
        Progress {
            matched: LogIndex(0),
            next,
            state: ReplicationState::Probe,
            probe_sent: false,
            inflights: Inflights::new(max_inflight),
            recent_active: false,
            ticks_since_contact: 0,
            read_round: 0,
            commit_sent: LogIndex(0),
            matched_at_heartbeat: LogIndex(0),
            snapshot: None,
        }
    }

    /// Probe from just after the match (or after the snapshot that was just installed).
    pub(crate) fn become_probe(&mut self) {
        let after_snapshot = self.snapshot.take().map_or(LogIndex(0), |s| s.snapshot.index);
        self.state = ReplicationState::Probe;
        self.next = self.matched.max(after_snapshot).next();
        self.probe_sent = false;
        self.inflights.reset();
    }

    /// The stream to this peer broke (a rejection, or a round without progress): probe again
    /// from the match, with half the window once streaming resumes.
    pub(crate) fn stream_broke(&mut self) {
        self.inflights.shrink();
        self.become_probe();
    }

    /// Stream from just after the match.
    pub(crate) fn become_replicate(&mut self) {
        self.state = ReplicationState::Replicate;
        self.next = self.matched.next();
        self.snapshot = None;
        self.inflights.reset();
    }

    /// Send `snapshot` instead of entries.
    pub(crate) fn become_snapshot(&mut self, snapshot: EntryId) {
        self.state = ReplicationState::Snapshot;
        self.inflights.reset();
        self.snapshot = Some(SnapshotTransfer { snapshot, acked_offset: 0, sent_offset: 0, ticks_since_send: 0 });
    }

    /// The peer acknowledged a match at `index`. Returns whether `matched` moved.
    pub(crate) fn maybe_update(&mut self, index: LogIndex) -> bool {
        let updated = index > self.matched;
        if updated {
            self.matched = index;
            self.probe_sent = false;
            self.inflights.grow();
        }
        self.next = self.next.max(index.next());
        self.inflights.free_to(index);
        updated
    }

    /// The peer rejected an append whose prev_log.index was `rejected`; `hint` is the index to
    /// probe next (already refined by the leader's own log). Returns false for a stale rejection
    /// (one about a message older than what we know), which changes nothing.
    pub(crate) fn maybe_decrease_to(&mut self, rejected: LogIndex, hint: LogIndex) -> bool {
        match self.state {
            ReplicationState::Replicate => {
                // Everything up to `matched` is known to match: a rejection there is stale.
                if rejected <= self.matched {
                    return false;
                }
                self.next = self.matched.next();
                true
            }
            ReplicationState::Probe | ReplicationState::Snapshot => {
                // Only the answer to the last probe counts.
                if self.next.prev() != rejected {
                    return false;
                }
                self.next = rejected.min(hint.next()).max(self.matched.next());
                self.probe_sent = false;
                true
            }
        }
    }

    /// Whether the leader must hold back further appends to this peer.
    pub(crate) fn is_paused(&self) -> bool {
        match self.state {
            ReplicationState::Probe => self.probe_sent,
            ReplicationState::Replicate => self.inflights.is_full(),
            ReplicationState::Snapshot => true,
        }
    }

    /// Records an AppendEntries carrying entries up to `last` (or none, `last` = next - 1).
    pub(crate) fn sent_append(&mut self, last: LogIndex, carried_entries: bool) {
        match self.state {
            ReplicationState::Replicate => {
                if carried_entries {
                    self.next = last.next();
                    self.inflights.add(last);
                }
            }
            ReplicationState::Probe => self.probe_sent = true,
            ReplicationState::Snapshot => unreachable!("no appends while sending a snapshot"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(state: ReplicationState, matched: u64, next: u64) -> Progress {
        let mut p = Progress::new(LogIndex(next), 4);
        p.state = state;
        p.matched = LogIndex(matched);
        p
    }

    #[test]
    fn decrease_table() {
        use ReplicationState::*;
        // (state, matched, next, rejected, hint, changed, next after)
        let table = [
            // replicate: a rejection at or below match is stale
            (Replicate, 5, 10, 5, 5, false, 10),
            (Replicate, 5, 10, 4, 4, false, 10),
            // replicate: a real rejection falls back to match + 1
            (Replicate, 5, 10, 9, 9, true, 6),
            // probe: only the answer to the outstanding probe counts
            (Probe, 0, 10, 5, 5, false, 10),
            (Probe, 0, 10, 9, 9, true, 9),
            // probe: the hint lets the leader skip back several entries at once
            (Probe, 0, 10, 9, 3, true, 4),
            // probe: never below match + 1
            (Probe, 5, 10, 9, 2, true, 6),
            // probe: a hint beyond the rejection is capped by it
            (Probe, 0, 10, 9, 50, true, 9),
        ];
        for (state, matched, next, rejected, hint, changed, next_after) in table {
            let mut p = progress(state, matched, next);
            p.probe_sent = true;
            assert_eq!(
                p.maybe_decrease_to(LogIndex(rejected), LogIndex(hint)),
                changed,
                "{state:?} m{matched} n{next} rej{rejected} hint{hint}"
            );
            assert_eq!(p.next, LogIndex(next_after), "{state:?} m{matched} n{next} rej{rejected} hint{hint}");
            if changed && state == Probe {
                assert!(!p.probe_sent, "a rejection answers the probe");
            }
        }
    }

    #[test]
    fn update_table() {
        // (matched, next, acked, updated, matched after, next after)
        let table = [(5, 10, 7, true, 7, 10), (5, 10, 12, true, 12, 13), (5, 10, 5, false, 5, 10), (5, 10, 3, false, 5, 10)];
        for (matched, next, acked, updated, m_after, n_after) in table {
            let mut p = progress(ReplicationState::Replicate, matched, next);
            assert_eq!(p.maybe_update(LogIndex(acked)), updated);
            assert_eq!((p.matched, p.next), (LogIndex(m_after), LogIndex(n_after)));
        }
    }

    #[test]
    fn the_window_halves_when_the_stream_breaks_and_regrows_with_acknowledgements() {
        let mut p = progress(ReplicationState::Replicate, 0, 1);
        assert_eq!(p.inflights.limit(), 4, "a fresh peer gets the whole window");
        for (i, want) in [(1, 2), (2, 1), (3, 1)] {
            p.matched = LogIndex(i);
            p.stream_broke();
            assert_eq!((p.state, p.inflights.limit()), (ReplicationState::Probe, want), "break {i}");
        }
        p.become_replicate();
        assert_eq!(p.inflights.limit(), 1, "streaming resumes with the narrowed window");
        assert!(!p.is_paused());
        p.sent_append(p.next, true);
        assert!(p.is_paused(), "one message fills the narrowed window");
        for (acked, want) in [(4, 2), (5, 3), (6, 4), (7, 4), (7, 4)] {
            p.maybe_update(LogIndex(acked));
            assert_eq!(p.inflights.limit(), want, "after the ack of {acked}");
        }
    }

    #[test]
    fn pause_rules_per_state() {
        let mut p = progress(ReplicationState::Probe, 0, 1);
        assert!(!p.is_paused());
        p.sent_append(LogIndex(0), false);
        assert!(p.is_paused(), "probe: one message at a time");
        p.maybe_update(LogIndex(0));
        assert!(p.is_paused(), "an ack that does not move match leaves the probe outstanding");
        p.maybe_update(LogIndex(1));
        assert!(!p.is_paused(), "progress answers the probe");

        p.become_replicate();
        for i in 1..=4 {
            assert!(!p.is_paused());
            p.sent_append(LogIndex(1 + i), true);
        }
        assert!(p.is_paused(), "replicate: window of 4 full");
        assert_eq!(p.next, LogIndex(6), "next runs ahead optimistically");
        p.maybe_update(LogIndex(3));
        assert_eq!(p.inflights.len(), 2, "acks free every message they cover");
        assert!(!p.is_paused());

        p.become_snapshot(EntryId::new(crate::Term(1), LogIndex(100)));
        assert!(p.is_paused(), "snapshot: no appends");
        p.become_probe();
        assert_eq!(p.next, LogIndex(101), "after a snapshot, probe right after it");
    }
}
