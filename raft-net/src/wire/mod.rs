//! Wire formats and the peer transport.
//!
//! The layers, bottom up:
//!
//! - [`frame`]: length-prefixed, CRC-32C-checksummed frames over a byte stream;
//! - [`codec`]: the payload of a peer frame, a versioned postcard [`codec::PeerEnvelope`]
//!   carrying a [`raft_core::Message`];
//! - [`handshake`]: the first exchange on each peer connection (cluster id, node id, and mutual
//!   proof of the cluster secret);
//! - [`transport`]: one outgoing connection per peer with reconnects, backoff and bounded queues,
//!   and a listener that delivers what peers send;
//! - [`resp`]: RESP2, the Redis protocol spoken on the client port.
//!
//! Each module's documentation describes its format byte by byte.
//!
//! # Example: two nodes
//!
//! ```
//! use raft_core::{Message, MessageBody, NodeId, Term};
//! use raft_net::wire::{HandshakeConfig, Inbound, Transport, TransportConfig};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! let cluster_id = 0x5eed;
//! let listen = "127.0.0.1:0".parse().unwrap();
//! let secret = "at least sixteen random bytes";
//! let (one, _inbox_one) =
//!     Transport::start(TransportConfig::new(listen), HandshakeConfig::new(cluster_id, NodeId(1)).with_secret(secret))?;
//! let (two, mut inbox_two) =
//!     Transport::start(TransportConfig::new(listen), HandshakeConfig::new(cluster_id, NodeId(2)).with_secret(secret))?;
//!
//! // The driver tells the transport where each member lives (host:port, resolved per connect)...
//! one.set_peer_addr(NodeId(2), two.local_addr().to_string());
//! // ...sends whatever `Ready` says may be sent, without waiting...
//! one.send(Message { from: NodeId(1), to: NodeId(2), term: Term(1), body: MessageBody::TimeoutNow });
//! // ...and steps what arrives, passing unreachable reports on to `Node::report_unreachable`.
//! match inbox_two.recv().await {
//!     Some(Inbound::Message(msg)) => assert_eq!(msg.body, MessageBody::TimeoutNow),
//!     other => panic!("unexpected {other:?}"),
//! }
//! # Ok(())
//! # }
//! ```

pub mod codec;
pub mod frame;
pub mod handshake;
pub mod resp;
pub mod transport;

#[cfg(test)]
mod test_support;

pub use codec::{CodecError, PeerEnvelope};
pub use frame::FrameError;
pub use handshake::{accept_handshake, connect_handshake, HandshakeConfig, HandshakeError};
pub use resp::{CommandParser, RespError, RespLimits, RespValue};
pub use transport::{Inbound, PeerStats, Transport, TransportConfig, TransportHandle, TransportStats};
