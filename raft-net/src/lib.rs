//! raft-net: a thin TCP runtime around raft-core, and `raftkv`, a replicated key-value server
//! that speaks the Redis protocol.
//!
//! - [`storage`]: the durable log (segment files of checksummed records, group commit, snapshots).
//! - [`wire`]: peer frames, the message codec, the peer handshake, RESP2, the peer transport.
//! - [`server`]: the server: a driver task around a raft-core node, a storage thread, and the
//!   client port.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod client;
pub mod server;
pub mod storage;
pub mod wire;
