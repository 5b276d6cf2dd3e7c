//! The sending side: one task per peer that owns the outgoing connection.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use raft_core::{Message, NodeId};
use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

use super::{Inbound, PeerCounters, Settings};
use crate::wire::handshake::connect_handshake;
use crate::wire::{codec, frame};

/// Everything a peer's sender task owns.
pub(super) struct PeerTask {
    pub(super) peer: NodeId,
    pub(super) settings: Arc<Settings>,
    pub(super) queue: mpsc::Receiver<Message>,
    pub(super) addr: watch::Receiver<String>,
    pub(super) counters: Arc<PeerCounters>,
}

/// Why an established connection ended.
enum Ended {
    /// The peer's address changed: reconnect at once.
    AddrChanged,
    /// The peer was removed or the transport stopped.
    Removed,
    /// The connection broke; reconnect after a backoff.
    Failed(String),
}

/// Runs until the peer is removed: waits for a message, connects, writes batches until the
/// connection breaks, backs off, and again.
pub(super) async fn run_peer(mut t: PeerTask) {
    let config = &t.settings.config;
    let mut backoff = Backoff::new(config.backoff_min, config.backoff_max);
    // A message taken off the queue and not yet written: it goes first on the next connection.
    let mut pending: Option<Message> = None;
    let mut failures: u64 = 0;
    loop {
        if pending.is_none() {
            // Connect only when there is something to send: an idle peer costs nothing.
            match t.queue.recv().await {
                Some(msg) => pending = Some(msg),
                None => return,
            }
        }
        let addr = t.addr.borrow_and_update().clone();
        let error = match connect(&t, &addr).await {
            Ok(stream) => {
                backoff.reset();
                failures = 0;
                t.counters.connected.store(true, Ordering::Relaxed);
                t.counters.connects.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(peer = %t.peer, %addr, "connected to peer");
                let ended = write_loop(&mut t, stream, &mut pending).await;
                t.counters.connected.store(false, Ordering::Relaxed);
                match ended {
                    Ended::AddrChanged => continue,
                    Ended::Removed => return,
                    Ended::Failed(error) => error,
                }
            }
            Err(error) => error,
        };
        failures += 1;
        // Warn when a peer becomes unreachable, then only at debug level while it stays so: a
        // peer that is down for an hour must not flood the log.
        if failures == 1 {
            tracing::warn!(peer = %t.peer, %addr, %error, "peer unreachable");
        } else {
            tracing::debug!(peer = %t.peer, %addr, %error, failures, "peer still unreachable");
        }
        t.counters.set_error(error);
        // Never wait for the driver here; a full channel means it has plenty to do already.
        let _ = t.settings.inbound.try_send(Inbound::Unreachable(t.peer));
        tokio::select! {
            () = tokio::time::sleep(backoff.next_delay()) => {}
            changed = t.addr.changed() => if changed.is_err() { return },
        }
    }
}

/// Resolves, connects and runs the handshake, all bounded in time.
async fn connect(t: &PeerTask, addr: &str) -> Result<TcpStream, String> {
    let timeout = t.settings.config.connect_timeout;
    let mut stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return Err(format!("connect to {addr}: {e}")),
        Err(_) => return Err(format!("connect to {addr}: timed out after {timeout:?}")),
    };
    // Batches are already coalesced; do not let Nagle delay a lone heartbeat.
    stream.set_nodelay(true).map_err(|e| format!("set TCP_NODELAY: {e}"))?;
    connect_handshake(&mut stream, &t.settings.handshake, Some(t.peer)).await.map_err(|e| format!("handshake with {addr}: {e}"))?;
    Ok(stream)
}

/// Writes batches until the connection breaks, the address changes or the peer is removed.
async fn write_loop(t: &mut PeerTask, mut stream: TcpStream, pending: &mut Option<Message>) -> Ended {
    let (mut reader, mut writer) = stream.split();
    let mut out = BytesMut::new();
    // The acceptor writes nothing after the handshake; reading only notices that it closed.
    let mut scratch = [0u8; 64];
    loop {
        let first = match pending.take() {
            Some(msg) => msg,
            None => tokio::select! {
                biased;
                read = reader.read(&mut scratch) => match read {
                    Ok(0) => return Ended::Failed("the peer closed the connection".to_string()),
                    Ok(_) => continue,
                    Err(e) => return Ended::Failed(format!("read: {e}")),
                },
                changed = t.addr.changed() => return if changed.is_ok() { Ended::AddrChanged } else { Ended::Removed },
                msg = t.queue.recv() => match msg {
                    Some(msg) => msg,
                    None => return Ended::Removed,
                },
            },
        };
        let batched = encode_batch(t, first, &mut out);
        if batched == 0 {
            continue;
        }
        let timeout = t.settings.config.write_timeout;
        let written = tokio::time::timeout(timeout, async {
            writer.write_all(&out).await?;
            writer.flush().await
        })
        .await;
        out.clear();
        let error = match written {
            Ok(Ok(())) => {
                t.counters.sent.fetch_add(batched, Ordering::Relaxed);
                continue;
            }
            Ok(Err(e)) => format!("write: {e}"),
            Err(_) => format!("write: batch not written within {timeout:?}"),
        };
        // Some of the batch may have arrived; Raft copes with both loss and duplicates.
        t.counters.add_dropped(batched);
        return Ended::Failed(error);
    }
}

/// Frames `first` and whatever else is queued into `out`, up to the batch size. Returns how many
/// messages were framed; one that does not fit in a frame is dropped and counted.
fn encode_batch(t: &mut PeerTask, first: Message, out: &mut BytesMut) -> u64 {
    let config = &t.settings.config;
    let mut framed = 0;
    let mut next = Some(first);
    while let Some(msg) = next {
        match frame::encode_with(out, config.max_frame_len, |o| codec::encode_message(&msg, o)) {
            Ok(()) => framed += 1,
            Err(error) => {
                t.counters.add_dropped(1);
                tracing::warn!(peer = %t.peer, kind = msg.body.name(), %error, "dropping a message that cannot be sent");
            }
        }
        next = if out.len() < config.max_batch_bytes { t.queue.try_recv().ok() } else { None };
    }
    framed
}

/// Exponential backoff with jitter between reconnect attempts.
#[derive(Debug)]
pub(super) struct Backoff {
    min: Duration,
    max: Duration,
    base: Duration,
}

impl Backoff {
    /// Delays from `min` (at least 1 ms, so a failing peer never makes a busy loop) doubling up
    /// to `max` (at least `min`).
    pub(super) fn new(min: Duration, max: Duration) -> Backoff {
        let min = min.max(Duration::from_millis(1));
        Backoff { min, max: max.max(min), base: min }
    }

    /// Back to the shortest delay, after a success.
    pub(super) fn reset(&mut self) {
        self.base = self.min;
    }

    /// The delay before the next attempt: uniform in [base/2, base] ("equal jitter"), so that
    /// nodes that lost a peer at the same moment do not all retry in step; then the base doubles
    /// up to the maximum.
    pub(super) fn next_delay(&mut self) -> Duration {
        let base = self.base;
        self.base = base.checked_mul(2).unwrap_or(self.max).min(self.max);
        let nanos = u64::try_from(base.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rand::rng().random_range(nanos / 2..=nanos))
    }
}
