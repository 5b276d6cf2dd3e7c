//! The first exchange on every peer connection: who is calling, from which cluster, and (when
//! a cluster secret is configured) proof in both directions that each side knows the secret.
//!
//! # Messages
//!
//! Each handshake message is one [`frame`] (at most [`MAX_HANDSHAKE_FRAME_LEN`]
//! bytes of payload) whose payload is the postcard encoding of a [`HandshakeMessage`]: a varint
//! variant index (0 = Hello, 1 = Challenge, 2 = Proof, 3 = Accepted, 4 = Refused) followed by
//! the fields in order: integers as LEB128 varints, nonces and MACs as 32 raw bytes, an
//! `Option` as one byte 0 (none) or 1 followed by the value, a string as a varint length and
//! UTF-8 bytes. There is no codec version byte: `Hello` carries [`PROTOCOL_VERSION`].
//!
//! # Exchange
//!
//! ```text
//! connector (dials)                                   acceptor (listens)
//!   Hello { version, cluster_id, node_id, nonce_c } ->
//!                                                       checks version, cluster id, node id
//!                                                    <- Challenge { cluster_id, node_id, nonce_a,
//!                                                                   proof: MAC_accept(nonce_c) }
//!   checks cluster id, the node it dialled, the proof
//!   Proof { hmac: MAC_connect(nonce_a) }            ->
//!                                                       checks the proof
//!                                                    <- Accepted
//! ```
//!
//! Either side may instead send `Refused { reason }` at its turn (for example "cluster id
//! mismatch: expected 7, got 8") and close; the other side then fails with
//! [`HandshakeError::RefusedByPeer`] carrying that reason, and the refusing side fails with
//! [`HandshakeError::Rejected`] carrying the same text. Malformed input is refused the same
//! way. After `Accepted` the connection carries [`codec`](super::codec) frames from the
//! connector to the acceptor only.
//!
//! # Proofs
//!
//! With a secret configured, each side proves it knows the secret by a MAC over the *other*
//! side's fresh random nonce, so a recorded proof is useless on a later connection:
//!
//! ```text
//! MAC_connect = HMAC-SHA256(secret, "raft-net/1 connect" || nonce_a || cluster_id u64 LE || connector's node_id u64 LE)
//! MAC_accept  = HMAC-SHA256(secret, "raft-net/1 accept"  || nonce_c || cluster_id u64 LE || acceptor's node_id u64 LE)
//! ```
//!
//! The role labels matter: without them, an impostor that receives a nonce from A could open a
//! second connection to B, send A's nonce as its own, and replay B's answer to A (a reflection
//! attack). MACs are compared in constant time. A side with a secret refuses a peer that sends no
//! proof; a side without one sends none, so a secret on only one side always fails.
//!
//! Without a secret, only the cluster id and, when the connector knows whom it dialled, the
//! node id are checked: that protects against misconfiguration, not against attackers.
//!
//! The handshake authenticates the peer, not the bytes that follow it: it does not encrypt, and
//! an attacker on the network path could inject frames after a genuine handshake. Run the
//! cluster on a trusted network or inside a tunnel (WireGuard, stunnel) where that matters.
//!
//! The whole exchange is bounded by [`HandshakeConfig::timeout`], so a silent peer cannot hold a
//! connection (or an accept slot) open.

use std::fmt;
use std::io;
use std::time::Duration;

use bytes::BytesMut;
use hmac::{Hmac, Mac};
use raft_core::NodeId;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::frame::{self, FrameError, HEADER_LEN};

/// The handshake protocol version sent in `Hello`.
pub const PROTOCOL_VERSION: u32 = 1;

/// The largest handshake frame payload accepted. Handshake messages are small; a larger frame is
/// garbage (or a client speaking another protocol) and is refused before it is read.
pub const MAX_HANDSHAKE_FRAME_LEN: usize = 4096;

/// Bytes in a nonce and in a proof.
pub const NONCE_LEN: usize = 32;

/// The default bound on a whole handshake.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest refusal reason sent, in bytes; longer reasons are cut at a character boundary.
const MAX_REASON_LEN: usize = 1024;

const CONNECT_LABEL: &[u8] = b"raft-net/1 connect";
const ACCEPT_LABEL: &[u8] = b"raft-net/1 accept";

/// Who this node is, for the handshake.
#[derive(Clone)]
pub struct HandshakeConfig {
    /// The cluster this node belongs to; peers of other clusters are refused.
    pub cluster_id: u64,
    /// This node's id.
    pub node_id: NodeId,
    /// The shared cluster secret. When set, peers must prove they know it, and this node proves
    /// it to them. Use at least 16 random bytes.
    pub secret: Option<Vec<u8>>,
    /// The bound on a whole handshake, either side.
    pub timeout: Duration,
}

impl HandshakeConfig {
    /// A configuration without a secret and with the default timeout.
    pub fn new(cluster_id: u64, node_id: NodeId) -> HandshakeConfig {
        HandshakeConfig { cluster_id, node_id, secret: None, timeout: DEFAULT_HANDSHAKE_TIMEOUT }
    }

    /// Sets the cluster secret.
    pub fn with_secret(mut self, secret: impl Into<Vec<u8>>) -> HandshakeConfig {
        self.secret = Some(secret.into());
        self
    }

    /// Sets the handshake timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> HandshakeConfig {
        self.timeout = timeout;
        self
    }
}

impl fmt::Debug for HandshakeConfig {
    /// Never prints the secret, only whether there is one.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandshakeConfig")
            .field("cluster_id", &self.cluster_id)
            .field("node_id", &self.node_id)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// The messages of the handshake, in the order they are exchanged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HandshakeMessage {
    /// Connector to acceptor: who is calling.
    Hello {
        /// [`PROTOCOL_VERSION`] of the connector.
        version: u32,
        /// The connector's cluster.
        cluster_id: u64,
        /// The connector's node id.
        node_id: NodeId,
        /// A fresh random nonce the acceptor must prove the secret over.
        nonce: [u8; NONCE_LEN],
    },
    /// Acceptor to connector: who answered, and a nonce to prove the secret over.
    Challenge {
        /// The acceptor's cluster.
        cluster_id: u64,
        /// The acceptor's node id.
        node_id: NodeId,
        /// A fresh random nonce the connector must prove the secret over.
        nonce: [u8; NONCE_LEN],
        /// The acceptor's proof over the connector's nonce, if it has a secret.
        proof: Option<[u8; NONCE_LEN]>,
    },
    /// Connector to acceptor: the connector's proof over the acceptor's nonce, if it has a
    /// secret.
    Proof {
        /// The MAC, or `None` without a secret.
        hmac: Option<[u8; NONCE_LEN]>,
    },
    /// Acceptor to connector: the handshake succeeded.
    Accepted,
    /// Either direction: the sender refuses the connection and closes it.
    Refused {
        /// Why, for the other side's log.
        reason: String,
    },
}

impl HandshakeMessage {
    /// The variant's name, for errors.
    pub fn kind(&self) -> &'static str {
        match self {
            HandshakeMessage::Hello { .. } => "Hello",
            HandshakeMessage::Challenge { .. } => "Challenge",
            HandshakeMessage::Proof { .. } => "Proof",
            HandshakeMessage::Accepted => "Accepted",
            HandshakeMessage::Refused { .. } => "Refused",
        }
    }
}

/// Why a handshake failed. The connection should be closed in every case.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// This side refused the peer, and told it so with this reason.
    #[error("refused the peer: {reason}")]
    Rejected {
        /// The reason, as sent to the peer.
        reason: String,
    },
    /// The peer refused this side.
    #[error("refused by the peer: {reason}")]
    RefusedByPeer {
        /// The reason the peer gave.
        reason: String,
    },
    /// The peer sent a frame that is too large or fails its checksum.
    #[error("bad handshake frame: {0}")]
    Frame(#[from] FrameError),
    /// The peer sent a frame that is not a handshake message.
    #[error("malformed handshake message: {0}")]
    Malformed(#[source] postcard::Error),
    /// The peer sent a valid message at the wrong step.
    #[error("unexpected handshake message: expected {expected}, got {got}")]
    Unexpected {
        /// What the protocol called for.
        expected: &'static str,
        /// What arrived.
        got: &'static str,
    },
    /// The peer closed the connection before the handshake finished.
    #[error("connection closed during the handshake")]
    Closed,
    /// The handshake did not finish in time.
    #[error("handshake timed out after {after:?}")]
    Timeout {
        /// The bound that was exceeded.
        after: Duration,
    },
    /// Reading or writing the connection failed.
    #[error("handshake i/o error: {0}")]
    Io(#[source] io::Error),
}

impl From<io::Error> for HandshakeError {
    fn from(e: io::Error) -> HandshakeError {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            HandshakeError::Closed
        } else {
            HandshakeError::Io(e)
        }
    }
}

impl HandshakeError {
    /// The reason to send the peer in a `Refused`, when this side is the one ending the
    /// handshake because of what the peer sent.
    fn reason_for_peer(&self) -> Option<String> {
        match self {
            HandshakeError::Rejected { reason } => Some(reason.clone()),
            HandshakeError::Frame(_) | HandshakeError::Malformed(_) | HandshakeError::Unexpected { .. } => Some(self.to_string()),
            HandshakeError::RefusedByPeer { .. } | HandshakeError::Closed | HandshakeError::Timeout { .. } | HandshakeError::Io(_) => None,
        }
    }
}

fn reject<T>(reason: String) -> Result<T, HandshakeError> {
    Err(HandshakeError::Rejected { reason })
}

/// Runs the connector's side of the handshake on a freshly connected `stream` and returns the
/// peer's node id.
///
/// `expected_peer` is the node this side meant to dial, if it knows: reaching another node (a
/// stale address) is refused. Bounded by `config.timeout`.
pub async fn connect_handshake<S>(stream: &mut S, config: &HandshakeConfig, expected_peer: Option<NodeId>) -> Result<NodeId, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let attempt = async {
        let result = connect_exchange(&mut *stream, config, expected_peer).await;
        tell_peer_on_failure(stream, result).await
    };
    tokio::time::timeout(config.timeout, attempt).await.unwrap_or(Err(HandshakeError::Timeout { after: config.timeout }))
}

/// Runs the acceptor's side of the handshake on a freshly accepted `stream` and returns the
/// peer's node id. Bounded by `config.timeout`.
pub async fn accept_handshake<S>(stream: &mut S, config: &HandshakeConfig) -> Result<NodeId, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let attempt = async {
        let result = accept_exchange(&mut *stream, config).await;
        tell_peer_on_failure(stream, result).await
    };
    tokio::time::timeout(config.timeout, attempt).await.unwrap_or(Err(HandshakeError::Timeout { after: config.timeout }))
}

/// When the handshake failed because of what the peer sent, tells it why (best effort: the
/// connection is closed next either way).
async fn tell_peer_on_failure<S>(stream: &mut S, result: Result<NodeId, HandshakeError>) -> Result<NodeId, HandshakeError>
where
    S: AsyncWrite + Unpin,
{
    if let Err(e) = &result {
        if let Some(reason) = e.reason_for_peer() {
            let _ = write_message(stream, &HandshakeMessage::Refused { reason: truncate(reason) }).await;
        }
    }
    result
}

async fn connect_exchange<S>(stream: &mut S, config: &HandshakeConfig, expected_peer: Option<NodeId>) -> Result<NodeId, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let my_nonce: [u8; NONCE_LEN] = rand::random();
    let hello =
        HandshakeMessage::Hello { version: PROTOCOL_VERSION, cluster_id: config.cluster_id, node_id: config.node_id, nonce: my_nonce };
    write_message(stream, &hello).await?;

    let (cluster_id, peer, their_nonce, their_proof) = match read_message(stream).await? {
        HandshakeMessage::Challenge { cluster_id, node_id, nonce, proof } => (cluster_id, node_id, nonce, proof),
        HandshakeMessage::Refused { reason } => return Err(HandshakeError::RefusedByPeer { reason }),
        other => return Err(HandshakeError::Unexpected { expected: "Challenge", got: other.kind() }),
    };
    check_cluster(config, cluster_id)?;
    check_peer_id(config, peer)?;
    if let Some(expected) = expected_peer {
        if peer != expected {
            return reject(format!("node id mismatch: dialled node {expected}, reached node {peer}"));
        }
    }
    if let Some(secret) = &config.secret {
        check_proof(secret, ACCEPT_LABEL, &my_nonce, cluster_id, peer, their_proof)?;
    }

    let hmac = config.secret.as_deref().map(|s| proof(s, CONNECT_LABEL, &their_nonce, config.cluster_id, config.node_id));
    write_message(stream, &HandshakeMessage::Proof { hmac }).await?;
    match read_message(stream).await? {
        HandshakeMessage::Accepted => Ok(peer),
        HandshakeMessage::Refused { reason } => Err(HandshakeError::RefusedByPeer { reason }),
        other => Err(HandshakeError::Unexpected { expected: "Accepted", got: other.kind() }),
    }
}

async fn accept_exchange<S>(stream: &mut S, config: &HandshakeConfig) -> Result<NodeId, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (version, cluster_id, peer, their_nonce) = match read_message(stream).await? {
        HandshakeMessage::Hello { version, cluster_id, node_id, nonce } => (version, cluster_id, node_id, nonce),
        other => return Err(HandshakeError::Unexpected { expected: "Hello", got: other.kind() }),
    };
    if version != PROTOCOL_VERSION {
        return reject(format!("unsupported protocol version {version} (this node speaks {PROTOCOL_VERSION})"));
    }
    check_cluster(config, cluster_id)?;
    check_peer_id(config, peer)?;

    let my_nonce: [u8; NONCE_LEN] = rand::random();
    let my_proof = config.secret.as_deref().map(|s| proof(s, ACCEPT_LABEL, &their_nonce, config.cluster_id, config.node_id));
    let challenge =
        HandshakeMessage::Challenge { cluster_id: config.cluster_id, node_id: config.node_id, nonce: my_nonce, proof: my_proof };
    write_message(stream, &challenge).await?;

    let their_proof = match read_message(stream).await? {
        HandshakeMessage::Proof { hmac } => hmac,
        HandshakeMessage::Refused { reason } => return Err(HandshakeError::RefusedByPeer { reason }),
        other => return Err(HandshakeError::Unexpected { expected: "Proof", got: other.kind() }),
    };
    if let Some(secret) = &config.secret {
        check_proof(secret, CONNECT_LABEL, &my_nonce, cluster_id, peer, their_proof)?;
    }
    write_message(stream, &HandshakeMessage::Accepted).await?;
    Ok(peer)
}

fn check_cluster(config: &HandshakeConfig, got: u64) -> Result<(), HandshakeError> {
    if got != config.cluster_id {
        return reject(format!("cluster id mismatch: expected {}, got {got}", config.cluster_id));
    }
    Ok(())
}

fn check_peer_id(config: &HandshakeConfig, peer: NodeId) -> Result<(), HandshakeError> {
    if !peer.is_valid() {
        return reject("node id 0 is reserved".to_string());
    }
    if peer == config.node_id {
        return reject(format!("peer claims this node's own id {peer}"));
    }
    Ok(())
}

type HmacSha256 = Hmac<Sha256>;

fn keyed(secret: &[u8], label: &[u8], nonce: &[u8; NONCE_LEN], cluster_id: u64, node_id: NodeId) -> HmacSha256 {
    // HMAC takes keys of any length (long keys are hashed), so this cannot fail.
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(label);
    mac.update(nonce);
    mac.update(&cluster_id.to_le_bytes());
    mac.update(&node_id.get().to_le_bytes());
    mac
}

fn proof(secret: &[u8], label: &[u8], nonce: &[u8; NONCE_LEN], cluster_id: u64, node_id: NodeId) -> [u8; NONCE_LEN] {
    keyed(secret, label, nonce, cluster_id, node_id).finalize().into_bytes().into()
}

/// Checks the peer's proof over our nonce, in constant time.
fn check_proof(
    secret: &[u8],
    label: &[u8],
    my_nonce: &[u8; NONCE_LEN],
    cluster_id: u64,
    peer: NodeId,
    got: Option<[u8; NONCE_LEN]>,
) -> Result<(), HandshakeError> {
    let Some(got) = got else {
        return reject(format!("node {peer} did not prove it knows the cluster secret (is it configured without one?)"));
    };
    if keyed(secret, label, my_nonce, cluster_id, peer).verify_slice(&got).is_err() {
        return reject(format!("node {peer} failed to prove it knows the cluster secret (the secrets differ)"));
    }
    Ok(())
}

fn truncate(mut reason: String) -> String {
    if reason.len() > MAX_REASON_LEN {
        let mut cut = MAX_REASON_LEN;
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        reason.truncate(cut);
    }
    reason
}

/// Writes one handshake message as a frame and flushes it.
pub(crate) async fn write_message<S: AsyncWrite + Unpin>(stream: &mut S, msg: &HandshakeMessage) -> Result<(), HandshakeError> {
    let payload = postcard::to_allocvec(msg).map_err(HandshakeError::Malformed)?;
    let mut out = BytesMut::new();
    frame::encode(&payload, MAX_HANDSHAKE_FRAME_LEN, &mut out)?;
    stream.write_all(&out).await?;
    stream.flush().await?;
    Ok(())
}

/// Reads exactly one handshake frame (never a byte past it) and decodes it.
pub(crate) async fn read_message<S: AsyncRead + Unpin>(stream: &mut S) -> Result<HandshakeMessage, HandshakeError> {
    let mut buf = BytesMut::zeroed(HEADER_LEN);
    stream.read_exact(&mut buf).await?;
    // At most two rounds: the header, then the rest of the frame it announces.
    let payload = loop {
        if let Some(payload) = frame::decode(&mut buf, MAX_HANDSHAKE_FRAME_LEN)? {
            break payload;
        }
        let have = buf.len();
        let need = frame::bytes_needed(&buf, MAX_HANDSHAKE_FRAME_LEN).unwrap_or(0);
        assert!(need > 0, "decode wants more bytes, so the frame is incomplete");
        buf.resize(have + need, 0);
        stream.read_exact(&mut buf[have..]).await?;
    };
    let (msg, rest) = postcard::take_from_bytes::<HandshakeMessage>(&payload).map_err(HandshakeError::Malformed)?;
    if !rest.is_empty() {
        return Err(HandshakeError::Unexpected { expected: "one message per frame", got: "trailing bytes" });
    }
    Ok(msg)
}

#[cfg(test)]
mod tests {
    use tokio::io::{duplex, DuplexStream};

    use super::*;

    const CLUSTER: u64 = 7;

    fn cfg(node: u64) -> HandshakeConfig {
        HandshakeConfig::new(CLUSTER, NodeId(node)).with_timeout(Duration::from_secs(5))
    }

    /// Runs both sides over an in-memory pipe: (connector's result, acceptor's result).
    async fn run(
        connector: HandshakeConfig,
        acceptor: HandshakeConfig,
        expected: Option<NodeId>,
    ) -> (Result<NodeId, HandshakeError>, Result<NodeId, HandshakeError>) {
        let (mut a, mut b) = duplex(64 * 1024);
        tokio::join!(connect_handshake(&mut a, &connector, expected), accept_handshake(&mut b, &acceptor))
    }

    fn rejected(r: &Result<NodeId, HandshakeError>) -> &str {
        match r {
            Err(HandshakeError::Rejected { reason }) => reason,
            other => panic!("expected Rejected, got {other:?}"),
        }
    }

    fn refused_by_peer(r: &Result<NodeId, HandshakeError>) -> &str {
        match r {
            Err(HandshakeError::RefusedByPeer { reason }) => reason,
            other => panic!("expected RefusedByPeer, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn same_cluster_without_secret_succeeds() {
        let (c, a) = run(cfg(1), cfg(2), Some(NodeId(2))).await;
        assert_eq!(c.unwrap(), NodeId(2));
        assert_eq!(a.unwrap(), NodeId(1));
        let (c, a) = run(cfg(1), cfg(2), None).await;
        assert_eq!((c.unwrap(), a.unwrap()), (NodeId(2), NodeId(1)));
    }

    #[tokio::test]
    async fn wrong_cluster_is_refused_on_both_sides_with_the_reason() {
        let mut other = cfg(1);
        other.cluster_id = 8;
        let (c, a) = run(other, cfg(2), Some(NodeId(2))).await;
        assert_eq!(rejected(&a), "cluster id mismatch: expected 7, got 8");
        assert_eq!(refused_by_peer(&c), "cluster id mismatch: expected 7, got 8");
    }

    #[tokio::test]
    async fn reaching_another_node_than_the_one_dialled_is_refused() {
        let (c, a) = run(cfg(1), cfg(3), Some(NodeId(2))).await;
        assert_eq!(rejected(&c), "node id mismatch: dialled node 2, reached node 3");
        assert_eq!(refused_by_peer(&a), "node id mismatch: dialled node 2, reached node 3");
    }

    #[tokio::test]
    async fn a_peer_claiming_our_own_or_the_reserved_id_is_refused() {
        let (c, a) = run(cfg(2), cfg(2), None).await;
        assert_eq!(rejected(&a), "peer claims this node's own id 2");
        assert!(c.is_err());
        let (_, a) = run(cfg(0), cfg(2), None).await;
        assert_eq!(rejected(&a), "node id 0 is reserved");
    }

    #[tokio::test]
    async fn same_secret_succeeds() {
        let (c, a) = run(cfg(1).with_secret("s3cret-s3cret-s3cret"), cfg(2).with_secret("s3cret-s3cret-s3cret"), Some(NodeId(2))).await;
        assert_eq!((c.unwrap(), a.unwrap()), (NodeId(2), NodeId(1)));
    }

    #[tokio::test]
    async fn different_secrets_are_refused_on_both_sides() {
        let (c, a) = run(cfg(1).with_secret("one secret"), cfg(2).with_secret("another secret"), Some(NodeId(2))).await;
        // The connector checks the acceptor's proof first.
        let reason = rejected(&c).to_string();
        assert!(reason.contains("failed to prove it knows the cluster secret"), "{reason}");
        assert_eq!(refused_by_peer(&a), reason);
    }

    #[tokio::test]
    async fn a_connector_without_the_secret_is_refused() {
        let (c, a) = run(cfg(1), cfg(2).with_secret("secret"), Some(NodeId(2))).await;
        let reason = rejected(&a).to_string();
        assert!(reason.contains("node 1 did not prove it knows the cluster secret"), "{reason}");
        assert_eq!(refused_by_peer(&c), reason);
    }

    #[tokio::test]
    async fn an_acceptor_without_the_secret_is_refused() {
        let (c, a) = run(cfg(1).with_secret("secret"), cfg(2), Some(NodeId(2))).await;
        let reason = rejected(&c).to_string();
        assert!(reason.contains("node 2 did not prove it knows the cluster secret"), "{reason}");
        assert_eq!(refused_by_peer(&a), reason);
    }

    #[tokio::test]
    async fn a_reflected_proof_is_refused() {
        // An impostor without the secret connects to node 1 claiming to be node 2, then asks the
        // real node 2 to prove the secret over node 1's nonce and replays the answer to node 1.
        let secret = "cluster secret";
        let node1 = cfg(1).with_secret(secret);
        let node2 = cfg(2).with_secret(secret);
        let (mut to_node1, mut node1_end) = duplex(4096);
        let (mut to_node2, mut node2_end) = duplex(4096);
        let node1_task = tokio::spawn(async move { accept_handshake(&mut node1_end, &node1).await });
        let node2_task = tokio::spawn(async move { accept_handshake(&mut node2_end, &node2).await });

        let hello = |node, nonce| HandshakeMessage::Hello { version: PROTOCOL_VERSION, cluster_id: CLUSTER, node_id: NodeId(node), nonce };
        write_message(&mut to_node1, &hello(2, [0; NONCE_LEN])).await.unwrap();
        let HandshakeMessage::Challenge { nonce: node1_nonce, .. } = read_message(&mut to_node1).await.unwrap() else {
            panic!("no challenge")
        };
        write_message(&mut to_node2, &hello(3, node1_nonce)).await.unwrap();
        let HandshakeMessage::Challenge { proof: Some(node2_proof), .. } = read_message(&mut to_node2).await.unwrap() else {
            panic!("no proof from node 2")
        };
        write_message(&mut to_node1, &HandshakeMessage::Proof { hmac: Some(node2_proof) }).await.unwrap();

        let reason = rejected(&node1_task.await.unwrap()).to_string();
        assert!(reason.contains("node 2 failed to prove"), "{reason}");
        assert!(matches!(read_message(&mut to_node1).await.unwrap(), HandshakeMessage::Refused { .. }));
        drop(to_node2);
        assert!(node2_task.await.unwrap().is_err());
    }

    /// Sends `bytes` to an acceptor instead of a Hello: (acceptor's error, what came back).
    async fn accept_garbage(bytes: &[u8]) -> (HandshakeError, Option<HandshakeMessage>) {
        let (mut raw, mut acceptor_end) = duplex(64 * 1024);
        let acceptor = tokio::spawn(async move { accept_handshake(&mut acceptor_end, &cfg(2)).await });
        raw.write_all(bytes).await.unwrap();
        let err = acceptor.await.unwrap().expect_err("garbage accepted");
        let reply = read_message(&mut raw).await.ok();
        (err, reply)
    }

    #[tokio::test]
    async fn garbage_instead_of_hello_is_refused_without_panicking() {
        // Redis's PING: the header announces a frame far over the limit.
        let (err, reply) = accept_garbage(b"*1\r\n$4\r\nPING\r\n").await;
        assert!(matches!(err, HandshakeError::Frame(FrameError::TooLarge { .. })), "{err:?}");
        assert!(matches!(reply, Some(HandshakeMessage::Refused { .. })), "{reply:?}");

        // A well-formed frame whose payload is not a handshake message.
        let mut framed = BytesMut::new();
        frame::encode(&[0xff; 40], MAX_HANDSHAKE_FRAME_LEN, &mut framed).unwrap();
        let (err, reply) = accept_garbage(&framed).await;
        assert!(matches!(err, HandshakeError::Malformed(_)), "{err:?}");
        let Some(HandshakeMessage::Refused { reason }) = reply else { panic!("{reply:?}") };
        assert!(reason.starts_with("malformed handshake message"), "{reason}");

        // A corrupted frame.
        framed[HEADER_LEN] ^= 1;
        let (err, _) = accept_garbage(&framed).await;
        assert!(matches!(err, HandshakeError::Frame(FrameError::ChecksumMismatch { .. })), "{err:?}");

        // A valid message at the wrong step.
        let mut wrong = BytesMut::new();
        frame::encode(&postcard::to_allocvec(&HandshakeMessage::Accepted).unwrap(), MAX_HANDSHAKE_FRAME_LEN, &mut wrong).unwrap();
        let (err, _) = accept_garbage(&wrong).await;
        assert!(matches!(err, HandshakeError::Unexpected { expected: "Hello", got: "Accepted" }), "{err:?}");
    }

    #[tokio::test]
    async fn a_peer_hanging_up_mid_handshake_is_reported_as_closed() {
        let (raw, mut acceptor_end) = duplex(1024);
        drop(raw);
        assert!(matches!(accept_handshake(&mut acceptor_end, &cfg(2)).await, Err(HandshakeError::Closed)));
    }

    async fn silent_peer_times_out(side: &str) {
        let timeout = Duration::from_millis(100);
        let (_silent, mut end): (DuplexStream, DuplexStream) = duplex(1024);
        let config = cfg(2).with_timeout(timeout);
        let started = tokio::time::Instant::now();
        let result = tokio::time::timeout(Duration::from_secs(10), async {
            if side == "accept" {
                accept_handshake(&mut end, &config).await
            } else {
                connect_handshake(&mut end, &config, None).await
            }
        })
        .await
        .expect("the handshake's own timeout should have fired long before");
        assert!(matches!(result, Err(HandshakeError::Timeout { after }) if after == timeout), "{result:?}");
        assert!(started.elapsed() >= timeout);
    }

    #[tokio::test]
    async fn timeouts_bound_a_silent_peer() {
        silent_peer_times_out("accept").await;
        silent_peer_times_out("connect").await;
    }

    #[tokio::test]
    async fn works_over_tcp() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            accept_handshake(&mut s, &cfg(2).with_secret("k")).await
        });
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        assert_eq!(connect_handshake(&mut s, &cfg(1).with_secret("k"), Some(NodeId(2))).await.unwrap(), NodeId(2));
        assert_eq!(acceptor.await.unwrap().unwrap(), NodeId(1));
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let shown = format!("{:?}", cfg(1).with_secret("hunter2"));
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }

    #[test]
    fn proofs_are_bound_to_role_nonce_cluster_and_node() {
        let base = proof(b"k", CONNECT_LABEL, &[1; NONCE_LEN], 7, NodeId(1));
        assert_ne!(base, proof(b"k", ACCEPT_LABEL, &[1; NONCE_LEN], 7, NodeId(1)));
        assert_ne!(base, proof(b"k", CONNECT_LABEL, &[2; NONCE_LEN], 7, NodeId(1)));
        assert_ne!(base, proof(b"k", CONNECT_LABEL, &[1; NONCE_LEN], 8, NodeId(1)));
        assert_ne!(base, proof(b"k", CONNECT_LABEL, &[1; NONCE_LEN], 7, NodeId(2)));
        assert_ne!(base, proof(b"j", CONNECT_LABEL, &[1; NONCE_LEN], 7, NodeId(1)));
    }
}
