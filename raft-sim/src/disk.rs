//! A node's simulated disk. Writes are records (snapshot, truncation, entry, hard state) that
//! become durable only when an fsync that started after them completes; an fsync covers every
//! write pending when it starts (group commit). A crash loses what is not durable, except that
//! with torn writes a random prefix of the pending records may have reached the disk, the next
//! one torn (and dropped by recovery, as a checksum would).

use std::collections::VecDeque;

use raft_core::{Entry, HardState, LogIndex, PersistedState, Ready, ReadyNumber, Snapshot};

/// One durable record.
#[derive(Clone, Debug)]
enum Record {
    Snapshot(Snapshot),
    Truncate(LogIndex),
    Entry(Entry),
    HardState(HardState),
}

#[derive(Debug)]
struct PendingWrite {
    seq: u64,
    ready: ReadyNumber,
    records: Vec<Record>,
}

/// What a disk holds at one index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Held {
    /// Covered by the durable snapshot (only committed entries are).
    InSnapshot,
    /// An entry of this term.
    Entry(raft_core::Term),
    /// Nothing durable.
    Nothing,
}

/// What survives a crash.
#[derive(Clone, Debug, Default)]
pub(crate) struct Durable {
    pub(crate) hard_state: HardState,
    pub(crate) snapshot: Option<Snapshot>,
    pub(crate) entries: VecDeque<Entry>,
}

impl Durable {
    fn apply(&mut self, r: Record) {
        match r {
            Record::Snapshot(s) => {
                let last = s.meta.last.index;
                while self.entries.front().is_some_and(|e| e.index <= last) {
                    self.entries.pop_front();
                }
                // Entries after a snapshot that does not match them are dropped by a Truncate
                // record the core emits in the same Ready.
                self.snapshot = Some(s);
            }
            Record::Truncate(from) => {
                while self.entries.back().is_some_and(|e| e.index >= from) {
                    self.entries.pop_back();
                }
            }
            Record::Entry(e) => {
                while self.entries.back().is_some_and(|x| x.index >= e.index) {
                    self.entries.pop_back();
                }
                self.entries.push_back(e);
            }
            Record::HardState(h) => self.hard_state = h,
        }
    }
}

/// A node's disk.
#[derive(Debug, Default)]
pub(crate) struct Disk {
    pub(crate) durable: Durable,
    pending: Vec<PendingWrite>,
    next_seq: u64,
    /// The write sequence number the fsync in progress covers.
    syncing: Option<u64>,
    /// fsyncs take ten times longer.
    pub(crate) slow: bool,
    /// fsyncs completed (for the summary).
    pub(crate) syncs: u64,
}

impl Disk {
    /// Queues a Ready's persistence part (in the documented order).
    pub(crate) fn write(&mut self, rd: &Ready) {
        let mut records = Vec::with_capacity(rd.entries.len() + 3);
        if let Some(s) = &rd.snapshot {
            records.push(Record::Snapshot(s.clone()));
        }
        if let Some(from) = rd.truncate_from {
            records.push(Record::Truncate(from));
        }
        records.extend(rd.entries.iter().cloned().map(Record::Entry));
        if let Some(h) = rd.hard_state {
            records.push(Record::HardState(h));
        }
        self.next_seq += 1;
        self.pending.push(PendingWrite { seq: self.next_seq, ready: rd.number, records });
    }

    /// Starts an fsync covering everything pending, unless one is running. Returns what it covers.
    pub(crate) fn start_sync(&mut self) -> Option<u64> {
        if self.syncing.is_some() || self.pending.is_empty() {
            return None;
        }
        let upto = self.pending.last().expect("non-empty").seq;
        self.syncing = Some(upto);
        Some(upto)
    }

    /// The fsync covering writes up to `upto` finished: they are durable. Returns the last Ready
    /// they belong to.
    pub(crate) fn sync_done(&mut self, upto: u64) -> Option<ReadyNumber> {
        assert_eq!(self.syncing, Some(upto), "the fsync that finished is the one that ran");
        self.syncing = None;
        self.syncs += 1;
        let n = self.pending.partition_point(|w| w.seq <= upto);
        let mut last = None;
        for w in self.pending.drain(..n) {
            last = Some(w.ready);
            for r in w.records {
                self.durable.apply(r);
            }
        }
        last
    }

    /// A snapshot the node took itself, saved durably at once (write, fsync, rename).
    pub(crate) fn save_snapshot(&mut self, s: Snapshot) {
        self.durable.apply(Record::Snapshot(s));
    }

    /// Power loss: pending writes are gone, except (with `torn`) a prefix of `keep` records that
    /// reached the disk; the record after them is torn and recovery drops it. Returns the number
    /// of records lost.
    pub(crate) fn crash(&mut self, keep: Option<usize>) -> usize {
        let records: Vec<Record> = self.pending.drain(..).flat_map(|w| w.records).collect();
        self.syncing = None;
        let keep = keep.unwrap_or(0).min(records.len());
        let lost = records.len() - keep;
        for r in records.into_iter().take(keep) {
            self.durable.apply(r);
        }
        lost
    }

    /// Whether an fsync is in flight.
    pub(crate) fn syncing(&self) -> bool {
        self.syncing.is_some()
    }

    /// What the disk durably holds at `index`.
    pub(crate) fn durable_at(&self, index: raft_core::LogIndex) -> Held {
        let d = &self.durable;
        if d.snapshot.as_ref().is_some_and(|s| index <= s.meta.last.index) {
            return Held::InSnapshot;
        }
        let Some(first) = d.entries.front().map(|e| e.index) else { return Held::Nothing };
        if index < first {
            return Held::Nothing;
        }
        d.entries.get((index.0 - first.0) as usize).filter(|e| e.index == index).map_or(Held::Nothing, |e| Held::Entry(e.term))
    }

    /// Records not yet durable.
    pub(crate) fn pending_records(&self) -> usize {
        self.pending.iter().map(|w| w.records.len()).sum()
    }

    /// What a restarting node reads.
    pub(crate) fn recover(&self) -> PersistedState {
        let d = &self.durable;
        let applied = d.snapshot.as_ref().map_or(LogIndex(0), |s| s.meta.last.index);
        PersistedState { hard_state: d.hard_state, snapshot: d.snapshot.clone(), entries: d.entries.iter().cloned().collect(), applied }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use raft_core::{EntryKind, Term};

    fn ready(number: u64, entries: &[u64], hs_term: Option<u64>) -> Ready {
        Ready {
            number: ReadyNumber(number),
            entries: entries
                .iter()
                .map(|&i| Entry { term: Term(1), index: LogIndex(i), kind: EntryKind::Normal, data: Bytes::new() })
                .collect(),
            hard_state: hs_term.map(|t| HardState { term: Term(t), vote: None, commit: LogIndex(0) }),
            must_sync: true,
            ..Ready::default()
        }
    }

    #[test]
    fn writes_are_durable_only_after_an_fsync_that_covers_them() {
        let mut d = Disk::default();
        d.write(&ready(1, &[1, 2], Some(1)));
        let first = d.start_sync().unwrap();
        d.write(&ready(2, &[3], Some(2)));
        assert_eq!(d.start_sync(), None, "one fsync at a time");
        assert_eq!(d.sync_done(first), Some(ReadyNumber(1)));
        assert_eq!(d.durable.entries.len(), 2);
        assert_eq!(d.durable.hard_state.term, Term(1));
        let second = d.start_sync().unwrap();
        assert_eq!(d.sync_done(second), Some(ReadyNumber(2)), "group commit: the next fsync covers what queued meanwhile");
        assert_eq!(d.durable.entries.len(), 3);
    }

    #[test]
    fn a_crash_loses_unsynced_writes_or_keeps_a_prefix_when_torn() {
        let mut d = Disk::default();
        d.write(&ready(1, &[1, 2, 3], Some(4)));
        assert_eq!(d.crash(None), 4);
        assert!(d.durable.entries.is_empty());
        d.write(&ready(2, &[1, 2, 3], Some(4)));
        assert_eq!(d.crash(Some(2)), 2, "two records reached the disk, the third was torn");
        assert_eq!(d.durable.entries.iter().map(|e| e.index.0).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(d.durable.hard_state.term, Term(0), "the hard state after the torn record is lost");
    }
}
