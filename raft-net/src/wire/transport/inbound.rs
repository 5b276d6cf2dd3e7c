//! The receiving side: the accept loop and one task per accepted connection.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use raft_core::NodeId;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::{Inbound, Settings};
use crate::wire::codec::{self, CodecError, PeerEnvelope};
use crate::wire::frame::{self, FrameError};
use crate::wire::handshake::accept_handshake;

/// How much room to make in the read buffer before each read, at least.
const READ_CHUNK: usize = 64 * 1024;

/// The most room made for the rest of a large frame at once. The buffer grows with the bytes
/// that actually arrive, so a peer that announces a large frame and stalls holds little memory.
const MAX_READ_RESERVE: usize = 1024 * 1024;

/// The pause after a failed `accept` (typically: out of file descriptors), so the loop does not
/// spin while the condition lasts.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Why a peer connection was closed after its handshake.
#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error("bad frame: {0}")]
    Frame(#[from] FrameError),
    #[error("undecodable message: {0}")]
    Codec(#[from] CodecError),
    #[error("read: {0}")]
    Io(#[from] io::Error),
    #[error("connection closed in the middle of a frame ({buffered} bytes buffered)")]
    Truncated { buffered: usize },
}

/// Accepts connections until shutdown, serving each in its own task. Errors on one connection
/// never stop the loop.
pub(super) async fn accept_loop(listener: TcpListener, settings: Arc<Settings>, mut shutdown: watch::Receiver<bool>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            Some(done) = connections.join_next(), if !connections.is_empty() => {
                if let Err(e) = done {
                    if e.is_panic() {
                        tracing::error!(error = %e, "a peer connection task panicked");
                    }
                }
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, addr)) => {
                    let limit = settings.config.max_inbound_connections;
                    if connections.len() >= limit {
                        tracing::warn!(peer_addr = %addr, limit, "too many peer connections; closing the new one");
                        continue;
                    }
                    connections.spawn(serve(stream, addr, Arc::clone(&settings)));
                }
                Err(error) => {
                    tracing::warn!(%error, "accepting a peer connection failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                }
            },
        }
    }
    // Close every connection before the listener goes, so that `shutdown` returns with nothing
    // left open.
    connections.shutdown().await;
}

/// Serves one accepted connection: handshake, then messages until it ends.
async fn serve(mut stream: TcpStream, addr: SocketAddr, settings: Arc<Settings>) {
    let peer = match accept_handshake(&mut stream, &settings.handshake).await {
        Ok(peer) => peer,
        Err(reason) => {
            tracing::warn!(peer_addr = %addr, %reason, "peer handshake failed; closing the connection");
            return;
        }
    };
    tracing::debug!(peer_addr = %addr, %peer, "peer connected");
    match read_messages(&mut stream, addr, peer, &settings).await {
        Ok(()) => tracing::debug!(peer_addr = %addr, %peer, "peer connection ended"),
        Err(reason) => tracing::warn!(peer_addr = %addr, %peer, %reason, "closing the peer connection"),
    }
}

/// Reads frames and delivers their messages until the peer closes the connection (`Ok`), the
/// driver stops listening (`Ok`), or something is wrong with what arrived (`Err`).
async fn read_messages(stream: &mut TcpStream, addr: SocketAddr, peer: NodeId, settings: &Settings) -> Result<(), ReadError> {
    let max = settings.config.max_frame_len;
    let me = settings.handshake.node_id;
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    loop {
        while let Some(payload) = frame::decode(&mut buf, max)? {
            // Irrefutable today; a new envelope variant makes this fail to compile until handled.
            let PeerEnvelope::Raft(msg) = codec::decode_envelope(&payload)?;
            if msg.from != peer {
                tracing::warn!(peer_addr = %addr, %peer, from = %msg.from, kind = msg.body.name(), "dropping a message whose sender is not the peer");
                continue;
            }
            if msg.to != me {
                tracing::warn!(peer_addr = %addr, %peer, to = %msg.to, kind = msg.body.name(), "dropping a message addressed to another node");
                continue;
            }
            if settings.inbound.send(Inbound::Message(msg)).await.is_err() {
                return Ok(());
            }
        }
        // Make room for (a good part of) the rest of a large frame in one step.
        buf.reserve(frame::bytes_needed(&buf, max).unwrap_or(0).clamp(READ_CHUNK, MAX_READ_RESERVE));
        if stream.read_buf(&mut buf).await? == 0 {
            return if buf.is_empty() { Ok(()) } else { Err(ReadError::Truncated { buffered: buf.len() }) };
        }
    }
}
