//! Snapshots and log compaction (§7).
//!
//! The application snapshots its state machine at an applied index and hands it to
//! [`Node::compact`]; the core records it and drops the log prefix. A follower whose next entry
//! was compacted away receives that snapshot in chunks of at most `max_bytes_per_msg`, one chunk
//! in flight at a time. Each answer says how many bytes the follower holds, so a lost chunk is
//! resent from there (after an election timeout without an answer), and a follower that lost its
//! partial copy (a restart, or a newer snapshot) restarts from zero. A leader change aborts the
//! transfer: the new leader starts over with its own snapshot.

use super::{Node, Role};
use crate::error::{Error, Result};
use crate::message::{MessageBody, SnapshotChunk, SnapshotResponse};
use crate::ready::SnapshotData;
use crate::snapshot::{IncomingSnapshot, Snapshot, SnapshotMeta};
use crate::types::{EntryId, LogIndex, NodeId};

impl Node {
    /// The application took a snapshot of its state machine at `snapshot.index` (which it has
    /// applied): record it and drop the log up to that index. Returns the snapshot's metadata,
    /// which the driver stores with the data.
    ///
    /// The log keeps [`crate::CompactionPolicy::retain_entries`] entries before `snapshot.index`, so a
    /// follower that is only slightly behind catches up from the log.
    pub fn compact(&mut self, snapshot: SnapshotData) -> Result<SnapshotMeta> {
        let index = snapshot.index;
        if index > self.log.applied() {
            return Err(Error::InvalidSnapshot { reason: format!("index {index} is beyond the applied index {}", self.log.applied()) });
        }
        let current = self.snapshot_last().index;
        if index <= current {
            return Err(Error::InvalidSnapshot { reason: format!("index {index} is not beyond the current snapshot at {current}") });
        }
        let term = self.log.term(index).expect("applied entries after the compacted prefix are in memory");
        let meta = SnapshotMeta { last: EntryId::new(term, index), membership: self.log.membership_at(index).clone() };
        let drop_through = LogIndex(index.0.saturating_sub(self.config.compaction.retain_entries));
        if drop_through > self.log.snapshot_last().index {
            self.log.compact(drop_through);
        }
        self.snapshot = Some(Snapshot { meta: meta.clone(), data: snapshot.data });
        Ok(meta)
    }

    /// The latest snapshot this node holds (taken locally or received), if any.
    pub fn snapshot(&self) -> Option<&Snapshot> {
        self.snapshot.as_ref()
    }

    /// Switches `to` to snapshot state: its next entry is no longer in the log.
    pub(super) fn start_snapshot_transfer(&mut self, to: NodeId) {
        let Some(last) = self.snapshot.as_ref().map(|s| s.meta.last) else {
            unreachable!("entries are only compacted behind a snapshot");
        };
        let Role::Leader(leader) = &mut self.role else { return };
        let pr = leader.progress_mut(to).expect("snapshots go to members");
        pr.become_snapshot(last);
        self.send_snapshot_chunk(to);
    }

    /// Sends `to` the chunk after what it acknowledged.
    pub(super) fn send_snapshot_chunk(&mut self, to: NodeId) {
        let Node { role: Role::Leader(leader), snapshot: Some(snapshot), outbox, config, term, id, .. } = self else { return };
        let pr = leader.progress_mut(to).expect("snapshots go to members");
        let Some(transfer) = pr.snapshot.as_mut() else { return };
        if transfer.snapshot != snapshot.meta.last {
            // The leader compacted again since: send the newer snapshot instead.
            pr.become_snapshot(snapshot.meta.last);
        }
        let transfer = pr.snapshot.as_mut().expect("snapshot state");
        let total = snapshot.data.len() as u64;
        let offset = transfer.acked_offset.min(total);
        let end = offset.saturating_add(config.max_bytes_per_msg).min(total);
        transfer.sent_offset = end.max(offset + 1); // an empty snapshot still needs one chunk
        transfer.ticks_since_send = 0;
        let chunk = SnapshotChunk {
            meta: snapshot.meta.clone(),
            offset,
            total_len: total,
            data: snapshot.data.slice(offset as usize..end as usize),
        };
        outbox.now.push(crate::message::Message { from: *id, to, term: *term, body: MessageBody::InstallSnapshot(Box::new(chunk)) });
    }

    /// Resends a chunk that went unanswered for an election timeout.
    pub(super) fn tick_snapshot_transfers(&mut self) {
        let timeout = self.config.election_ticks;
        let Role::Leader(leader) = &mut self.role else { return };
        for (_, pr) in leader.progress.iter_mut() {
            if let Some(t) = pr.snapshot.as_mut() {
                t.ticks_since_send += 1;
                if t.ticks_since_send >= timeout {
                    t.sent_offset = t.acked_offset;
                }
            }
        }
    }

    /// A follower's answer to a chunk.
    pub(super) fn handle_snapshot_response(&mut self, from: NodeId, resp: SnapshotResponse) {
        let Role::Leader(leader) = &mut self.role else { return };
        let Some(pr) = leader.progress_mut(from) else { return };
        pr.recent_active = true;
        pr.ticks_since_contact = 0;
        if resp.done {
            // Installed (or not needed): the follower's log matches ours up to the snapshot.
            let this_transfer = pr.snapshot.as_ref().is_some_and(|t| t.snapshot == resp.snapshot);
            let moved = resp.snapshot.index <= self.log.last_index() && pr.maybe_update(resp.snapshot.index);
            if this_transfer {
                pr.become_probe();
            }
            if moved {
                self.maybe_commit();
            }
            return;
        }
        let Some(t) = pr.snapshot.as_mut() else { return };
        if t.snapshot != resp.snapshot {
            return; // about an older transfer
        }
        // Continue from what the follower holds (it may have lost its partial copy).
        t.acked_offset = resp.next_offset;
        t.sent_offset = t.acked_offset;
    }

    /// A chunk of the leader's snapshot (§7, InstallSnapshot receiver).
    pub(super) fn handle_snapshot_chunk(&mut self, from: NodeId, chunk: SnapshotChunk) -> Result<()> {
        let invalid = |reason: &str| Err(Error::InvalidMessage { from, reason: reason.to_string() });
        if chunk.offset.checked_add(chunk.data.len() as u64).is_none_or(|end| end > chunk.total_len) {
            return invalid("snapshot chunk beyond the snapshot's length");
        }
        if chunk.meta.membership.validate().is_err() {
            return invalid("snapshot with an invalid membership");
        }
        self.follow(from)?;
        let last = chunk.meta.last;
        let reply = |next_offset, done| MessageBody::InstallSnapshotResponse(SnapshotResponse { snapshot: last, next_offset, done });
        if last.index <= self.log.committed() {
            // An older snapshot never replaces newer state; we hold all it covers already.
            self.send_after_persist(from, reply(chunk.total_len, true));
            return Ok(());
        }
        let same = self.incoming_snapshot.as_ref().is_some_and(|s| s.meta.last == last && s.total_len == chunk.total_len);
        if !same {
            if chunk.offset != 0 {
                // A chunk of a transfer we know nothing of: ask for it from the start.
                self.incoming_snapshot = None;
                self.send(from, reply(0, false));
                return Ok(());
            }
            self.incoming_snapshot = Some(IncomingSnapshot::new(chunk.meta.clone(), chunk.total_len));
        }
        let incoming = self.incoming_snapshot.as_mut().expect("set above");
        incoming.accept(chunk.offset, &chunk.data);
        if !incoming.is_complete() {
            let received = incoming.received();
            self.send(from, reply(received, false));
            return Ok(());
        }
        let snapshot = self.incoming_snapshot.take().expect("complete").finish();
        let dropped = self.log.restore_snapshot(&snapshot.meta);
        self.record_dropped(dropped);
        self.snapshot = Some(snapshot.clone());
        self.snapshot_to_install = Some(snapshot);
        // The follower answers only once the snapshot is durable.
        self.send_after_persist(from, reply(chunk.total_len, true));
        Ok(())
    }
}
