//! The replicated log as one node holds it in memory.
//!
//! The core owns the log since the last snapshot; the driver keeps a durable copy by writing what
//! each [`crate::Ready`] hands out. Compaction behind snapshots keeps memory bounded. Cursors,
//! always ordered `applied <= committed` and `persisted <= last`:
//!
//! ```text
//!   snapshot.index   applied     committed    persisted            last
//!   ──────┤░░░░░░░░░░░░░┤░░░░░░░░░░░░┤░░░░░░░░░░░░┤░░░░░░░░░░░░░░░░░░┤
//!   compacted      handed to apply   known committed   durable   handed to persist ≥ unstable_from
//! ```

use std::collections::VecDeque;

use crate::entry::{Entry, EntryKind};
use crate::error::{Error, Result};
use crate::membership::Membership;
use crate::ready::DroppedEntries;
use crate::snapshot::SnapshotMeta;
use crate::types::{EntryId, LogIndex, NodeId, Term};

/// What a follower's append did to the log.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Appended {
    /// The last index known to match the leader's log: prev_log.index + number of entries.
    pub(crate) last_verified: LogIndex,
    /// The index from which conflicting entries were removed, if any were.
    pub(crate) truncated_from: Option<LogIndex>,
    /// The entries removed, as runs of one term.
    pub(crate) dropped: Vec<DroppedEntries>,
}

#[derive(Debug)]
pub(crate) struct RaftLog {
    /// The last entry covered by the latest snapshot; `EntryId::ZERO` if none.
    snapshot_last: EntryId,
    /// Entries after `snapshot_last`, consecutive.
    entries: VecDeque<Entry>,
    committed: LogIndex,
    /// Highest index that is durable with the entries this log holds.
    persisted: LogIndex,
    /// First index not yet handed to the driver for persisting.
    unstable_from: LogIndex,
    /// Lowest index from which handed-out entries were removed since the last Ready.
    truncate_pending: Option<LogIndex>,
    /// Highest index handed to the driver to apply.
    applied: LogIndex,
    /// Membership entries in the log (index, membership), oldest first. The first element is the
    /// membership in force at the snapshot (its index may be at or below the snapshot index).
    memberships: Vec<(LogIndex, Membership)>,
    /// Sum of `Entry::size_bytes` over `entries`.
    resident_bytes: u64,
    /// Sum of `Entry::size_bytes` over entries in (snapshot, applied].
    applied_bytes: u64,
}

impl RaftLog {
    /// A log that starts after `snapshot` (which may be `EntryId::ZERO` for an empty log), with
    /// `membership` in force there (empty for a node that waits to be added to a cluster).
    pub(crate) fn new(snapshot_last: EntryId, membership: Membership) -> RaftLog {
        RaftLog {
            snapshot_last,
            entries: VecDeque::new(),
            committed: snapshot_last.index,
            persisted: snapshot_last.index,
            unstable_from: snapshot_last.index.next(),
            truncate_pending: None,
            applied: snapshot_last.index,
            memberships: vec![(snapshot_last.index, membership)],
            resident_bytes: 0,
            applied_bytes: 0,
        }
    }

    /// Rebuilds a log from what the driver persisted: entries after the snapshot, all durable.
    pub(crate) fn restore(snapshot: Option<&SnapshotMeta>, entries: Vec<Entry>, commit: LogIndex, applied: LogIndex) -> Result<RaftLog> {
        let invalid = |reason: String| Error::InvalidPersistedState { reason };
        let (last, membership) = match snapshot {
            Some(meta) => (meta.last, meta.membership.clone()),
            None => (EntryId::ZERO, Membership::default()),
        };
        let mut log = RaftLog::new(last, membership);
        let mut prev = last;
        for entry in entries {
            if entry.index != prev.index.next() {
                return Err(invalid(format!("entry {} follows entry {}: the log has a gap", entry.index, prev.index)));
            }
            if entry.term < prev.term {
                return Err(invalid(format!("entry {} has term {} below the previous entry's {}", entry.index, entry.term, prev.term)));
            }
            prev = entry.id();
            log.push(entry).map_err(|e| invalid(e.to_string()))?;
        }
        log.persisted = log.last_index();
        log.unstable_from = log.last_index().next();
        // The commit index is not needed for safety and a driver may lose its last write: cap it
        // at what the log holds instead of refusing to start.
        log.committed = commit.max(last.index).min(log.last_index());
        let applied = applied.max(last.index);
        if applied > log.committed {
            return Err(invalid(format!("applied index {applied} is beyond the commit index {}", log.committed)));
        }
        log.applied = applied;
        log.applied_bytes = log.iter_range(last.index.next(), applied).map(Entry::size_bytes).sum();
        Ok(log)
    }

    pub(crate) fn snapshot_last(&self) -> EntryId {
        self.snapshot_last
    }

    pub(crate) fn first_index(&self) -> LogIndex {
        self.snapshot_last.index.next()
    }

    pub(crate) fn last_index(&self) -> LogIndex {
        self.entries.back().map_or(self.snapshot_last.index, |e| e.index)
    }

    pub(crate) fn last_id(&self) -> EntryId {
        self.entries.back().map_or(self.snapshot_last, Entry::id)
    }

    pub(crate) fn committed(&self) -> LogIndex {
        self.committed
    }

    pub(crate) fn persisted(&self) -> LogIndex {
        self.persisted
    }

    pub(crate) fn applied(&self) -> LogIndex {
        self.applied
    }

    pub(crate) fn resident_entries(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn resident_bytes(&self) -> u64 {
        self.resident_bytes
    }

    /// Entries and bytes applied since the last snapshot, for the compaction policy.
    pub(crate) fn applied_since_snapshot(&self) -> (u64, u64) {
        (self.applied.0 - self.snapshot_last.index.0, self.applied_bytes)
    }

    /// The membership in force: the latest membership entry in the log, committed or not.
    pub(crate) fn membership(&self) -> &Membership {
        &self.memberships.last().expect("the membership history is never empty").1
    }

    /// The index of the entry that set the membership in force.
    pub(crate) fn membership_index(&self) -> LogIndex {
        self.memberships.last().expect("the membership history is never empty").0
    }

    /// The membership in force at `index` (the latest membership entry at or before it).
    pub(crate) fn membership_at(&self, index: LogIndex) -> &Membership {
        let pos = self.memberships.partition_point(|(i, _)| *i <= index);
        &self.memberships[pos.saturating_sub(1)].1
    }

    #[inline]
    fn offset(&self, index: LogIndex) -> Option<usize> {
        if index <= self.snapshot_last.index {
            return None;
        }
        let offset = (index.0 - self.snapshot_last.index.0 - 1) as usize;
        (offset < self.entries.len()).then_some(offset)
    }

    /// The term of the entry at `index`, if the log knows it (the snapshot's last entry counts).
    #[inline]
    pub(crate) fn term(&self, index: LogIndex) -> Option<Term> {
        if index == self.snapshot_last.index {
            return Some(self.snapshot_last.term);
        }
        self.offset(index).map(|o| self.entries[o].term)
    }

    /// Whether the log holds `id`.
    #[inline]
    pub(crate) fn matches(&self, id: EntryId) -> bool {
        self.term(id.index) == Some(id.term)
    }

    pub(crate) fn entry(&self, index: LogIndex) -> Option<&Entry> {
        self.offset(index).map(|o| &self.entries[o])
    }

    /// Entries in `[lo, hi]` that the log holds in memory.
    pub(crate) fn iter_range(&self, lo: LogIndex, hi: LogIndex) -> impl Iterator<Item = &Entry> {
        let start = lo.max(self.first_index());
        let end = hi.min(self.last_index());
        let range = match (self.offset(start), self.offset(end)) {
            (Some(a), Some(b)) if a <= b => a..b + 1,
            _ => 0..0,
        };
        self.entries.range(range)
    }

    /// Clones of entries from `lo` (which must be in memory) up to `hi`, stopping before the
    /// total would exceed `max_bytes` but always including at least one entry.
    pub(crate) fn slice(&self, lo: LogIndex, hi: LogIndex, max_bytes: u64) -> Vec<Entry> {
        let mut out = Vec::new();
        let mut bytes = 0u64;
        for entry in self.iter_range(lo, hi) {
            bytes += entry.size_bytes();
            if bytes > max_bytes && !out.is_empty() {
                break;
            }
            out.push(entry.clone());
        }
        out
    }

    fn push(&mut self, entry: Entry) -> Result<()> {
        debug_assert_eq!(entry.index, self.last_index().next(), "entries must be consecutive");
        debug_assert!(entry.term >= self.last_id().term, "terms never decrease along the log");
        if entry.kind == EntryKind::Membership {
            let (membership, _) = Membership::decode(&entry.data)?;
            self.memberships.push((entry.index, membership));
        }
        self.resident_bytes += entry.size_bytes();
        self.entries.push_back(entry);
        Ok(())
    }

    /// Leader append: entries it created in its own term.
    pub(crate) fn append_own(&mut self, entry: Entry) {
        assert_eq!(entry.index, self.last_index().next(), "a leader appends at the end of its log");
        self.push(entry).expect("a leader only appends membership entries it encoded itself");
    }

    /// Follower append (§5.3, receiver rules 2-4): `prev` must match; entries already present are
    /// skipped; the log is truncated only at the first real conflict, never because a message is
    /// stale, duplicated or reordered. Returns `None` if `prev` does not match.
    pub(crate) fn maybe_append(&mut self, prev: EntryId, entries: Vec<Entry>) -> Result<Option<Appended>> {
        if !self.matches(prev) {
            return Ok(None);
        }
        let last_verified = prev.index.plus(entries.len() as u64);
        let mut appended = Appended { last_verified, truncated_from: None, dropped: Vec::new() };
        // The first entry that the log does not already hold.
        if let Some(first_new) = entries.iter().position(|e| !self.matches(e.id())) {
            let new = &entries[first_new..];
            // Refuse structurally invalid input before changing anything.
            for (k, e) in new.iter().enumerate() {
                if e.index != new[0].index.plus(k as u64) {
                    return Err(Error::InvalidMessage { from: NodeId(0), reason: "entries are not consecutive".into() });
                }
                if e.kind == EntryKind::Membership {
                    Membership::decode(&e.data)?;
                }
            }
            let start = new[0].index;
            if start <= self.last_index() {
                if start <= self.committed {
                    return Err(Error::InvalidMessage {
                        from: NodeId(0),
                        reason: format!("conflicting entry {} at or below the commit index {}", new[0].id(), self.committed),
                    });
                }
                appended.dropped = self.truncate_from(start);
                appended.truncated_from = Some(start);
            }
            for entry in entries.into_iter().skip(first_new) {
                self.push(entry).expect("membership entries were decoded above");
            }
        }
        #[cfg(raft_bug = "truncate_on_stale_append")]
        {
            // BUG: drop whatever follows the message's entries, although it matched, so a stale
            // or reordered AppendEntries deletes newer, acknowledged entries.
            let cut = last_verified.next().max(self.committed.next());
            if cut <= self.last_index() {
                appended.dropped.extend(self.truncate_from(cut));
                appended.truncated_from = Some(appended.truncated_from.map_or(cut, |t| t.min(cut)));
            }
        }
        Ok(Some(appended))
    }

    /// Removes every entry from `index` on. Only ever above the commit index.
    fn truncate_from(&mut self, index: LogIndex) -> Vec<DroppedEntries> {
        assert!(index > self.committed, "never truncate committed entries ({index} <= {})", self.committed);
        let keep = (index.0 - self.first_index().0) as usize;
        for e in self.entries.range(keep..) {
            self.resident_bytes -= e.size_bytes();
        }
        let dropped = runs(self.entries.range(keep..), false);
        self.entries.truncate(keep);
        if index < self.unstable_from {
            self.truncate_pending = Some(self.truncate_pending.map_or(index, |t| t.min(index)));
            self.unstable_from = index;
        }
        self.persisted = self.persisted.min(index.prev());
        while self.memberships.len() > 1 && self.memberships.last().is_some_and(|(i, _)| *i >= index) {
            self.memberships.pop();
        }
        dropped
    }

    /// Raises the commit index; never lowers it.
    pub(crate) fn commit_to(&mut self, index: LogIndex) -> bool {
        if index <= self.committed {
            return false;
        }
        assert!(index <= self.last_index(), "commit {index} beyond the last index {}", self.last_index());
        self.committed = index;
        true
    }

    /// The largest index at or below `index` whose term is at most `term` (the fast-backtracking
    /// hint), or `(index, 0)` once below what the log knows.
    pub(crate) fn find_conflict_by_term(&self, index: LogIndex, term: Term) -> EntryId {
        let mut i = index.min(self.last_index());
        loop {
            match self.term(i) {
                Some(t) if t <= term => return EntryId::new(t, i),
                Some(_) if i.0 > 0 => i = i.prev(),
                _ => return EntryId::new(Term(0), i),
            }
        }
    }

    /// Entries not yet handed out for persisting, and the truncation point the driver must apply
    /// first. Marks them handed out.
    pub(crate) fn take_unstable(&mut self) -> (Option<LogIndex>, Vec<Entry>) {
        let from = self.unstable_from;
        let entries: Vec<Entry> = self.iter_range(from, self.last_index()).cloned().collect();
        self.unstable_from = self.last_index().next();
        (self.truncate_pending.take(), entries)
    }

    pub(crate) fn has_unstable(&self) -> bool {
        self.unstable_from <= self.last_index() || self.truncate_pending.is_some()
    }

    /// The driver made the log durable up to `id`: believe it only if the log still holds `id`
    /// (it may have been truncated and rewritten since).
    pub(crate) fn persisted_to(&mut self, id: EntryId) -> bool {
        if id.index > self.persisted && id.index < self.unstable_from && self.matches(id) {
            self.persisted = id.index;
            return true;
        }
        false
    }

    /// Committed and durable entries not yet handed out to apply, up to `max_bytes` (at least one).
    pub(crate) fn take_committed(&mut self, max_bytes: u64) -> Vec<Entry> {
        let hi = self.committed.min(self.persisted);
        if hi <= self.applied {
            return Vec::new();
        }
        let out = self.slice(self.applied.next(), hi, max_bytes);
        if let Some(last) = out.last() {
            self.applied = last.index;
            self.applied_bytes += out.iter().map(Entry::size_bytes).sum::<u64>();
        }
        out
    }

    pub(crate) fn has_committed_to_apply(&self) -> bool {
        self.committed.min(self.persisted) > self.applied
    }

    /// Drops entries up to `index` (which must be applied), remembering its id as the snapshot's
    /// last entry.
    pub(crate) fn compact(&mut self, index: LogIndex) {
        assert!(index <= self.applied, "compact {index} beyond the applied index {}", self.applied);
        if index <= self.snapshot_last.index {
            return;
        }
        let term = self.term(index).expect("an applied index above the snapshot is in memory");
        while self.entries.front().is_some_and(|e| e.index <= index) {
            let e = self.entries.pop_front().expect("checked non-empty");
            self.resident_bytes -= e.size_bytes();
            self.applied_bytes -= e.size_bytes();
        }
        self.snapshot_last = EntryId::new(term, index);
        // Keep the membership in force at `index` as the new base.
        let keep_from = self.memberships.partition_point(|(i, _)| *i <= index).saturating_sub(1);
        self.memberships.drain(..keep_from);
    }

    /// Installs a snapshot received from the leader (§7): entries after it that match are kept;
    /// otherwise the whole log is discarded. The caller checked it is newer than the commit index.
    /// Returns the uncommitted entries it discarded.
    pub(crate) fn restore_snapshot(&mut self, meta: &SnapshotMeta) -> Vec<DroppedEntries> {
        let last = meta.last;
        assert!(last.index > self.committed, "a snapshot older than the commit index is never installed");
        let mut dropped = Vec::new();
        if self.matches(last) {
            // Keep the suffix after the snapshot (§7: "retain the entries following it").
            while self.entries.front().is_some_and(|e| e.index <= last.index) {
                let e = self.entries.pop_front().expect("checked non-empty");
                self.resident_bytes -= e.size_bytes();
            }
            let keep_from = self.memberships.partition_point(|(i, _)| *i <= last.index);
            self.memberships.drain(..keep_from);
            self.memberships.insert(0, (last.index, meta.membership.clone()));
        } else {
            // Entries up to the snapshot may be part of it; those after it certainly are not
            // (the log does not match the leader's at the snapshot's last entry).
            let uncommitted = |e: &&Entry| e.index > self.committed;
            dropped = runs(self.entries.iter().filter(uncommitted).filter(|e| e.index <= last.index), true);
            dropped.extend(runs(self.entries.iter().filter(|e| e.index > last.index), false));
            self.entries.clear();
            self.resident_bytes = 0;
            self.memberships = vec![(last.index, meta.membership.clone())];
            // Nothing after the snapshot is ours any more, and the snapshot itself is durable only
            // once the driver says so.
            self.persisted = self.persisted.min(last.index.prev());
            // The driver must delete whatever it stored after the snapshot too.
            let from = last.index.next();
            self.truncate_pending = Some(self.truncate_pending.map_or(from, |t| t.min(from)));
        }
        self.snapshot_last = last;
        self.unstable_from = self.unstable_from.max(last.index.next());
        self.committed = last.index;
        self.applied = last.index;
        self.applied_bytes = 0;
        dropped
    }

    /// The driver made an installed snapshot durable.
    pub(crate) fn snapshot_persisted(&mut self, last: EntryId) {
        if self.snapshot_last == last && self.persisted < last.index {
            self.persisted = last.index;
        }
    }

    /// Asserts the log's own invariants.
    pub(crate) fn check_invariants(&self) {
        let mut prev = self.snapshot_last;
        let mut bytes = 0;
        for e in &self.entries {
            assert_eq!(e.index, prev.index.next(), "log entries are consecutive");
            assert!(e.term >= prev.term, "terms never decrease along the log");
            prev = e.id();
            bytes += e.size_bytes();
        }
        assert_eq!(bytes, self.resident_bytes, "resident byte count");
        assert!(self.applied <= self.committed, "applied {} <= committed {}", self.applied, self.committed);
        assert!(self.committed <= self.last_index(), "committed {} <= last {}", self.committed, self.last_index());
        assert!(self.persisted <= self.last_index(), "persisted {} <= last {}", self.persisted, self.last_index());
        assert!(self.applied >= self.snapshot_last.index, "the snapshot never runs ahead of applied");
        assert!(self.unstable_from <= self.last_index().next());
        assert!(self.unstable_from >= self.first_index());
        assert!(self.memberships.windows(2).all(|w| w[0].0 < w[1].0), "membership history is ordered");
    }
}

/// Groups consecutive entries into runs of one term.
fn runs<'a>(entries: impl Iterator<Item = &'a Entry>, may_have_committed: bool) -> Vec<DroppedEntries> {
    let mut out: Vec<DroppedEntries> = Vec::new();
    for e in entries {
        match out.last_mut() {
            Some(run) if run.term == e.term && run.last.next() == e.index => run.last = e.index,
            _ => out.push(DroppedEntries { term: e.term, first: e.index, last: e.index, may_have_committed }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn e(index: u64, term: u64) -> Entry {
        Entry { term: Term(term), index: LogIndex(index), kind: EntryKind::Normal, data: Bytes::from(vec![index as u8; 4]) }
    }

    fn id(index: u64, term: u64) -> EntryId {
        EntryId::new(Term(term), LogIndex(index))
    }

    /// A log holding entries with the given terms at indexes 1.., all durable.
    fn log_with_terms(terms: &[u64]) -> RaftLog {
        let entries = terms.iter().enumerate().map(|(i, &t)| e(i as u64 + 1, t)).collect();
        RaftLog::restore(None, entries, LogIndex(0), LogIndex(0)).unwrap()
    }

    fn terms(log: &RaftLog) -> Vec<u64> {
        log.entries.iter().map(|e| e.term.0).collect()
    }

    #[test]
    fn append_table_truncates_only_on_real_conflict() {
        // (log terms, prev, new entries (index, term), expected verified, expected log terms, truncated)
        type Case = (&'static [u64], (u64, u64), &'static [(u64, u64)], Option<u64>, &'static [u64], Option<u64>);
        let table: &[Case] = &[
            // prev does not match: nothing changes
            (&[1, 1, 2], (3, 3), &[(4, 3)], None, &[1, 1, 2], None),
            (&[1, 1, 2], (5, 2), &[], None, &[1, 1, 2], None),
            // plain append at the end
            (&[1, 1, 2], (3, 2), &[(4, 2), (5, 2)], Some(5), &[1, 1, 2, 2, 2], None),
            // duplicate / stale message: entries already present, nothing truncated
            (&[1, 1, 2, 2], (1, 1), &[(2, 1)], Some(2), &[1, 1, 2, 2], None),
            (&[1, 1, 2, 2], (1, 1), &[], Some(1), &[1, 1, 2, 2], None),
            // overlapping: some present, some new
            (&[1, 1, 2], (1, 1), &[(2, 1), (3, 2), (4, 3)], Some(4), &[1, 1, 2, 3], None),
            // real conflict: truncate at the first differing entry
            (&[1, 1, 2, 2], (1, 1), &[(2, 1), (3, 3)], Some(3), &[1, 1, 3], Some(3)),
            (&[1, 1, 2, 2], (0, 0), &[(1, 1), (2, 4)], Some(2), &[1, 4], Some(2)),
        ];
        for &(log_terms, (pi, pt), new, want_verified, want_terms, want_trunc) in table {
            let mut log = log_with_terms(log_terms);
            let entries = new.iter().map(|&(i, t)| e(i, t)).collect();
            let got = log.maybe_append(id(pi, pt), entries).unwrap();
            assert_eq!(got.as_ref().map(|a| a.last_verified.0), want_verified, "case {log_terms:?} prev ({pi},{pt}) {new:?}");
            assert_eq!(got.and_then(|a| a.truncated_from).map(|i| i.0), want_trunc, "truncation for {log_terms:?} {new:?}");
            assert_eq!(terms(&log), want_terms, "log after {log_terms:?} + {new:?}");
            log.check_invariants();
        }
    }

    #[test]
    fn conflict_below_commit_is_an_error_not_a_truncation() {
        let mut log = log_with_terms(&[1, 1, 2]);
        log.commit_to(LogIndex(3));
        let err = log.maybe_append(id(1, 1), vec![e(2, 5)]).unwrap_err();
        assert!(matches!(err, Error::InvalidMessage { .. }), "{err}");
        assert_eq!(terms(&log), [1, 1, 2]);
    }

    #[test]
    fn find_conflict_by_term_skips_whole_terms() {
        let log = log_with_terms(&[1, 1, 1, 4, 4, 5, 5, 6, 6, 6]);
        // (index, term, expected hint)
        let table = [((10, 6), (10, 6)), ((10, 5), (7, 5)), ((10, 3), (3, 1)), ((12, 4), (5, 4)), ((10, 0), (0, 0)), ((2, 9), (2, 1))];
        for ((i, t), (wi, wt)) in table {
            assert_eq!(log.find_conflict_by_term(LogIndex(i), Term(t)), id(wi, wt), "hint for ({i}, {t})");
        }
    }

    #[test]
    fn truncating_handed_out_entries_tells_the_driver() {
        let mut log = log_with_terms(&[]);
        for i in 1..=4 {
            log.maybe_append(id(i - 1, if i == 1 { 0 } else { 1 }), vec![e(i, 1)]).unwrap();
        }
        let (trunc, handed) = log.take_unstable();
        assert_eq!((trunc, handed.len()), (None, 4));
        assert!(log.persisted_to(id(4, 1)));
        log.maybe_append(id(2, 1), vec![e(3, 2)]).unwrap();
        assert_eq!(log.persisted(), LogIndex(2), "a truncation lowers what counts as durable");
        let (trunc, handed) = log.take_unstable();
        assert_eq!(trunc, Some(LogIndex(3)));
        assert_eq!(handed.iter().map(Entry::id).collect::<Vec<_>>(), [id(3, 2)]);
        assert!(!log.persisted_to(id(4, 1)), "an ack for a truncated entry is ignored");
        assert!(log.persisted_to(id(3, 2)));
    }

    #[test]
    fn committed_entries_wait_for_local_durability() {
        let mut log = log_with_terms(&[]);
        log.maybe_append(id(0, 0), vec![e(1, 1), e(2, 1), e(3, 1)]).unwrap();
        log.commit_to(LogIndex(3));
        assert!(log.take_committed(u64::MAX).is_empty(), "nothing durable yet");
        log.take_unstable();
        log.persisted_to(id(2, 1));
        let applied: Vec<_> = log.take_committed(u64::MAX).iter().map(|e| e.index.0).collect();
        assert_eq!(applied, [1, 2]);
        log.persisted_to(id(3, 1));
        assert_eq!(log.take_committed(1).len(), 1, "at least one entry even over the byte limit");
    }

    #[test]
    fn compaction_keeps_terms_and_membership() {
        let m1 = Membership::new([NodeId(1)]);
        let m2 = Membership::new([NodeId(1), NodeId(2)]);
        let mut log = RaftLog::new(EntryId::ZERO, m1.clone());
        log.append_own(e(1, 1));
        log.append_own(Entry { term: Term(1), index: LogIndex(2), kind: EntryKind::Membership, data: m2.encode(b"") });
        log.append_own(e(3, 2));
        log.take_unstable();
        log.persisted_to(id(3, 2));
        log.commit_to(LogIndex(3));
        log.take_committed(u64::MAX);
        log.compact(LogIndex(2));
        assert_eq!(log.first_index(), LogIndex(3));
        assert_eq!(log.term(LogIndex(2)), Some(Term(1)), "the snapshot's last term is remembered");
        assert_eq!(log.term(LogIndex(1)), None);
        assert_eq!(log.membership(), &m2);
        assert_eq!(log.membership_at(LogIndex(2)), &m2);
        assert_eq!(log.resident_entries(), 1);
        log.check_invariants();
    }

    #[test]
    fn truncating_a_membership_entry_restores_the_previous_membership() {
        let m1 = Membership::new([NodeId(1), NodeId(2), NodeId(3)]);
        let m2 = m1.apply_steps(&[crate::ChangeStep::AddLearner(NodeId(4))]).unwrap();
        let mut log = RaftLog::new(EntryId::ZERO, m1.clone());
        log.maybe_append(
            EntryId::ZERO,
            vec![e(1, 1), Entry { term: Term(1), index: LogIndex(2), kind: EntryKind::Membership, data: m2.encode(b"") }],
        )
        .unwrap();
        assert_eq!(log.membership(), &m2, "a membership takes effect when appended");
        log.maybe_append(id(1, 1), vec![e(2, 2)]).unwrap();
        assert_eq!(log.membership(), &m1, "and is undone when truncated away");
    }

    #[test]
    fn restore_refuses_gaps_and_caps_commit() {
        let err = RaftLog::restore(None, vec![e(1, 1), e(3, 1)], LogIndex(0), LogIndex(0)).unwrap_err();
        assert!(err.to_string().contains("gap"), "{err}");
        let err = RaftLog::restore(None, vec![e(1, 2), e(2, 1)], LogIndex(0), LogIndex(0)).unwrap_err();
        assert!(err.to_string().contains("term"), "{err}");
        let log = RaftLog::restore(None, vec![e(1, 1)], LogIndex(9), LogIndex(0)).unwrap();
        assert_eq!(log.committed(), LogIndex(1));
    }

    #[test]
    fn snapshot_install_keeps_a_matching_suffix_and_drops_a_conflicting_log() {
        let meta = |i, t| SnapshotMeta { last: id(i, t), membership: Membership::new([NodeId(1)]) };
        let mut log = log_with_terms(&[1, 1, 2, 2, 3]);
        log.restore_snapshot(&meta(3, 2));
        assert_eq!((log.first_index(), log.last_index()), (LogIndex(4), LogIndex(5)), "suffix after a matching snapshot kept");
        log.check_invariants();

        let mut log = log_with_terms(&[1, 1, 2, 2, 3]);
        log.take_unstable();
        log.restore_snapshot(&meta(3, 9));
        assert_eq!((log.first_index(), log.last_index()), (LogIndex(4), LogIndex(3)), "conflicting log discarded");
        let (trunc, entries) = log.take_unstable();
        assert_eq!((trunc, entries.len()), (Some(LogIndex(4)), 0), "the driver is told to drop its stored suffix");
        log.check_invariants();
    }
}
