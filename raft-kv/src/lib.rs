//! `raft-kv`: the replicated key-value state machine of this workspace, with exactly-once client
//! sessions.
//!
//! [`KvStore`] is pure and deterministic: no clocks, no randomness, no I/O, and ordered maps
//! only. Apply the same committed log entries in the same order on every replica and they end
//! in the same state, with the same replies, byte for byte. It knows nothing of Raft itself; a
//! driver (the simulator or the network server) feeds it committed entries.
//!
//! # The driver's contract
//!
//! - **Writes**: encode a [`Request`] with [`encode_request`] (after an optional early check with
//!   [`KvStore::validate`]), propose the bytes to Raft, and once the entry is committed call
//!   [`KvStore::apply`] with its index and data, in log order, exactly once per entry. The
//!   returned [`Applied`] carries the reply for the waiting client. Pass empty data for a
//!   leader's no-op entry; entries that are not for the state machine (membership changes) may
//!   be skipped, since indices must only strictly increase.
//! - **Linearizable reads** (ReadIndex, thesis §6.4): ask Raft for a read index `R`; when Raft
//!   confirms it, wait until [`KvStore::applied_index`] `>= R`, then call [`KvStore::query`]
//!   with a `Get` or `MultiGet`. Serving before `applied_index >= R` may return stale data; a
//!   `query` without a read index is a stale read, which is fine only if the client asked for
//!   one. A read proposed through the log as a request is linearizable too, at the cost of a
//!   log entry.
//! - **Snapshots**: [`KvStore::snapshot`] serialises everything (map, sessions, applied index,
//!   log clock); [`KvStore::restore`] rebuilds an identical store on any replica. Restore
//!   rejects bad bytes with a [`DecodeError`] and never panics.
//!
//! # Sessions
//!
//! Exactly-once semantics follow the Raft thesis §6.3. A client first proposes
//! [`Command::RegisterSession`]; its client id is the index of that entry. Every write then
//! carries a [`Session`] `{ client, seq }` with `seq` starting at 1, one outstanding request per
//! client, and a retry reusing the same `seq`. When a write is applied:
//!
//! - unknown client (never registered, expired or evicted): [`CommandError::SessionExpired`],
//!   not applied, so a retry that arrives after its session expired can never apply twice;
//! - `seq` equal to the last applied: the stored reply, [`Applied::duplicate`] set, no effect;
//! - `seq` below the last applied: [`CommandError::StaleSequence`], not applied;
//! - `seq` above the last applied: applied, and its reply stored (errors included).
//!
//! Reads and `RegisterSession` need no session (one given is ignored). A write without a session
//! is applied every time it appears in the log: at-most-once is then the client's problem.
//!
//! Sessions expire by *log time*: each request carries its proposer's timestamp
//! ([`Request::time_ms`]), and the log clock is the largest one applied so far. Before each
//! request is applied, sessions idle for longer than [`Limits::session_ttl_ms`] of log time are
//! removed, so every replica expires exactly the same sessions at the same entry. At most
//! [`Limits::max_sessions`] sessions are kept: registering beyond that evicts the least recently
//! active (ties broken by the lower client id).
//!
//! # Limits
//!
//! Keys, values (including the result of an append) and the number of sessions are bounded by
//! [`Limits`]; a violation is a deterministic [`CommandError`] reply. The number of pairs in one
//! `MultiPut`/`MultiGet` is bounded only by the size of a log entry, which Raft limits. A
//! session stores its last reply, so session memory is at most `max_sessions` replies (a failed
//! compare-and-set's reply holds the current value).
//!
//! # Example
//!
//! ```
//! use raft_kv::{encode_request, Command, KvStore, Limits, Reply, Request, Session};
//!
//! let mut store = KvStore::new(Limits::default());
//!
//! // Entry 1: a client registers; its id is the entry's index.
//! let register = Request { session: None, time_ms: 1_000, command: Command::RegisterSession };
//! let applied = store.apply(1, &encode_request(&register));
//! assert_eq!(applied.reply, Reply::Registered { client: 1 });
//!
//! // Entry 2: its first write. Entry 3: the same request, retried after a lost reply.
//! let append = Request {
//!     session: Some(Session { client: 1, seq: 1 }),
//!     time_ms: 1_010,
//!     command: Command::Append { key: b"log".to_vec(), value: b"a".to_vec() },
//! };
//! let data = encode_request(&append);
//! assert_eq!(store.apply(2, &data).reply, Reply::Integer(1));
//! let retry = store.apply(3, &data);
//! assert!(retry.duplicate);
//! assert_eq!(retry.reply, Reply::Integer(1)); // the stored reply; not appended twice
//! assert_eq!(store.get(b"log"), Some(&b"a"[..]));
//!
//! // Entry 4: a leader's no-op.
//! store.apply(4, &[]);
//!
//! // A linearizable read: Raft returned read index 4, and applied_index >= 4.
//! assert!(store.applied_index() >= 4);
//! let read = store.query(&Command::Get { key: b"log".to_vec() });
//! assert_eq!(read, Reply::Value(Some(b"a".to_vec())));
//!
//! // Another replica catches up from a snapshot and is identical.
//! let copy = KvStore::restore(&store.snapshot(), Limits::default()).unwrap();
//! assert_eq!(copy, store);
//! ```

#![warn(missing_docs)]

mod codec;
mod command;
mod error;
mod limits;
mod session;
mod snapshot;
mod store;

pub use command::{decode_request, encode_request, ClientId, Command, Reply, Request, Session, REQUEST_FORMAT_VERSION};
pub use error::{CommandError, DecodeError};
pub use limits::Limits;
pub use session::SessionState;
pub use snapshot::SNAPSHOT_FORMAT_VERSION;
pub use store::{Applied, KvStore};
