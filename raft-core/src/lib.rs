//! Raft consensus (Ongaro & Ousterhout, 2014; Ongaro's thesis, 2014) as a pure, deterministic,
//! sans-IO state machine.
//!
//! A [`Node`] is one server. It never reads a clock, a socket, a file, a thread or a global random
//! generator: every input is a method call and every output is drained by the driver. The same
//! inputs in the same order give the same outputs, byte for byte, which is what lets the
//! simulator (`raft-sim`) replay any run from its seed.
//!
//! Included: leader election with randomised timeouts (§5.2) from a seeded PRNG, PreVote and
//! CheckQuorum (thesis §9.6, §6.2), log replication with the log-matching check and fast
//! backtracking (§5.3), per-peer flow control (probe / replicate / snapshot states, a bounded
//! window of messages in flight that halves when the stream breaks and regrows with each
//! acknowledgement, a byte limit per message, a cap on uncommitted bytes), the
//! commit rule of §5.4.2, snapshots sent in chunks and log compaction (§7), membership changes
//! by joint consensus with learners (§6, thesis §4.3), leadership transfer (thesis §3.10) and
//! linearizable reads by ReadIndex (thesis §6.4).
//!
//! # Inputs
//!
//! - [`Node::tick`]: one logical clock tick (election timeout, heartbeats, CheckQuorum).
//! - [`Node::step`]: a message from another node.
//! - [`Node::propose`], [`Node::propose_membership`], [`Node::read_index`],
//!   [`Node::transfer_leadership`], [`Node::campaign`]: requests.
//! - Acknowledgements: [`Node::on_persisted`] (a [`Ready`]'s persistence part is durable),
//!   [`Node::compact`] (the application took a snapshot), [`Node::report_unreachable`].
//!
//! # Outputs: the driver contract
//!
//! Call [`Node::ready`] whenever [`Node::has_ready`] is true (after any input). A [`Ready`]
//! holds, and the driver must handle in this order:
//!
//! 1. **What to persist**: [`Ready::truncate_from`] (delete stored entries from that index),
//!    [`Ready::snapshot`] (a snapshot received from the leader: install it, store it), then
//!    [`Ready::entries`] (append) and [`Ready::hard_state`] (store; write it after the entries).
//!    If [`Ready::must_sync`], make it durable (fsync) before the next step of item 3. Persisting
//!    may happen on another thread, in the background, for many Readies in a row (group commit);
//!    they must become durable in order.
//! 2. **Messages that may be sent now**: [`Ready::messages`]. Send them in any order, even before
//!    item 1 is durable (a leader writes its log in parallel with its followers, thesis
//!    §10.2.1).
//! 3. **Messages that may be sent only after item 1 is durable**: votes granted or refused and
//!    append acknowledgements promise state that a crash must not forget. The core does not hand
//!    them to the driver until the driver calls [`Node::on_persisted`] with the Ready's
//!    [`Ready::number`] (or a later one); they then come out in the `messages` of the next
//!    Ready. A driver therefore *cannot* send them early: the rule is in the type, not in a
//!    comment.
//! 4. **Committed entries to apply**: [`Ready::committed_entries`], in log order, each handed out
//!    exactly once (after the snapshot of item 1, if any). Only entries durable on this node are
//!    handed out. Apply [`EntryKind::Normal`] entries to the state machine; [`EntryKind::Blank`]
//!    and [`EntryKind::Membership`] entries carry nothing to apply (membership takes effect
//!    inside the core when appended, see [`membership`]).
//! 5. **Read states, role changes and the rest**: [`Ready::read_states`] (serve each read once
//!    the state machine has applied its index), [`Ready::role`] (role, leader or term changed),
//!    [`Ready::dropped`] (entries removed before they committed: fail the proposals among them),
//!    [`Ready::snapshot_due`] (snapshot the state machine and call [`Node::compact`]).
//!
//! A synchronous driver simply does all of this and then calls [`Node::advance`].
//!
//! # Restart
//!
//! A node restarts from what its driver persisted ([`Node::restart`] with a
//! [`PersistedState`]): it comes back as a follower in its durable term, with its durable vote
//! and log, so it never breaks a promise it made before the crash. Entries committed after the
//! state machine's applied index are handed out again.
//!
//! # Example
//!
//! Three nodes in memory, driven until a proposal commits everywhere:
//!
//! ```
//! use raft_core::{Bootstrap, Config, EntryKind, Message, Node, NodeId};
//! use std::collections::VecDeque;
//!
//! let ids = [NodeId(1), NodeId(2), NodeId(3)];
//! let mut nodes: Vec<Node> = ids
//!     .iter()
//!     .map(|&id| Node::new(Config::new(id), Bootstrap::NewCluster { voters: ids.to_vec() }).unwrap())
//!     .collect();
//! // What each node made durable, and what it applied.
//! let mut disks: Vec<Vec<raft_core::Entry>> = vec![Vec::new(); 3];
//! let mut applied: Vec<Vec<Vec<u8>>> = vec![Vec::new(); 3];
//! let mut wire: VecDeque<Message> = VecDeque::new();
//!
//! // One pass of the driver loop over every node: handle Readies, then deliver messages.
//! let mut run = |nodes: &mut Vec<Node>, wire: &mut VecDeque<Message>| {
//!     for (i, node) in nodes.iter_mut().enumerate() {
//!         while node.has_ready() {
//!             let rd = node.ready();
//!             // 1. persist (a real driver writes and fsyncs here)
//!             if let Some(from) = rd.truncate_from {
//!                 disks[i].retain(|e| e.index < from);
//!             }
//!             disks[i].extend(rd.entries.iter().cloned());
//!             // 2. send
//!             wire.extend(rd.messages.iter().cloned());
//!             // 4. apply
//!             for e in &rd.committed_entries {
//!                 if e.kind == EntryKind::Normal {
//!                     applied[i].push(e.data.to_vec());
//!                 }
//!             }
//!             // 3. durable now: release the answers that waited for it
//!             node.advance(&rd);
//!         }
//!     }
//!     while let Some(m) = wire.pop_front() {
//!         let to = (m.to.0 - 1) as usize;
//!         nodes[to].step(m).unwrap();
//!     }
//! };
//!
//! // Tick until someone is elected.
//! while !nodes.iter().any(|n| n.is_leader()) {
//!     for node in nodes.iter_mut() {
//!         node.tick();
//!     }
//!     run(&mut nodes, &mut wire);
//! }
//! let leader = nodes.iter().position(|n| n.is_leader()).unwrap();
//! nodes[leader].propose(&b"hello"[..]).unwrap();
//! for _ in 0..5 {
//!     run(&mut nodes, &mut wire);
//! }
//! assert!(applied.iter().all(|a| a == &vec![b"hello".to_vec()]));
//! ```
//!
//! # Choices worth knowing
//!
//! - The core keeps the log since the last snapshot in memory; the driver's copy on disk is for
//!   restarts. [`Config::compaction`] says when a snapshot is due, so memory stays bounded.
//! - A leader sends appends when the driver asks for a Ready, not on every proposal: proposals
//!   made between two Readies travel in one message per follower.
//! - Membership takes effect when appended (the paper's rule), not when applied; see
//!   [`membership`].
//! - Deliberately broken variants for the simulator's self-test are compiled in only with
//!   `RUSTFLAGS='--cfg raft_bug="NAME"'`; they never reach a normal build.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod config;
mod entry;
mod error;
mod log;
pub mod membership;
mod message;
mod node;
mod progress;
pub mod quorum;
mod ready;
mod snapshot;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
mod types;

pub use config::{CompactionPolicy, Config};
pub use entry::{Entry, EntryKind, ENTRY_OVERHEAD_BYTES};
pub use error::{Error, Result};
pub use membership::{ChangeStep, Membership};
pub use message::{
    AppendEntries, AppendResponse, ForwardedProposals, Heartbeat, HeartbeatResponse, Message, MessageBody, ReadIndexRequest,
    ReadIndexResponse, SnapshotChunk, SnapshotResponse, VoteRequest, VoteResponse,
};
pub use node::{Node, PeerProgress, Proposed};
pub use progress::ReplicationState;
pub use ready::{Bootstrap, DroppedEntries, HardState, PersistedState, ReadState, Ready, ReadyNumber, RoleKind, RoleState, SnapshotData};
pub use snapshot::{Snapshot, SnapshotMeta};
pub use types::{EntryId, LogIndex, NodeId, Term};
