//! The peer transport: moves [`raft_core::Message`]s between nodes over TCP.
//!
//! # Connections
//!
//! Each node listens on [`TransportConfig::listen`]. Every connection carries messages in one
//! direction only: a node sends to peer P over the one connection it dialled to P, and receives
//! from P over the connection P dialled to it. A connection starts with the
//! [handshake](super::handshake) (the connector names itself and, with a cluster secret, both
//! sides prove they know it), then carries [frames](super::frame) whose payloads are
//! [envelopes](super::codec) from the connector to the acceptor, until either side closes it. The
//! acceptor never writes after the handshake, so the connector's read side sees the end of the
//! connection as soon as the peer goes away.
//!
//! # Sending
//!
//! [`TransportHandle::send`] never waits: it puts the message on the recipient's bounded queue
//! ([`TransportConfig::send_queue_len`]), or drops and counts it if the queue is full or the
//! recipient has no address. Raft is built for lossy networks: it retransmits what matters, so
//! dropping under overload is safer than letting memory grow or the driver block.
//!
//! Per peer, a task connects when there is something to send, writes everything queued as a batch
//! of frames (up to [`TransportConfig::max_batch_bytes`]) with one write, and repeats. When
//! connecting, the handshake or a write fails, it reports [`Inbound::Unreachable`] (the driver
//! passes it to `Node::report_unreachable`), waits an exponentially growing, jittered delay
//! ([`TransportConfig::backoff_min`] doubling up to [`TransportConfig::backoff_max`]) and tries
//! again; messages of a failed write are lost, those still queued are sent after reconnecting.
//! Addresses are `host:port` strings resolved on every connection attempt, so DNS changes and
//! [`TransportHandle::set_peer_addr`] take effect on the next connection.
//!
//! # Receiving
//!
//! Accepted connections are served concurrently (at most
//! [`TransportConfig::max_inbound_connections`]); each delivers the messages it reads, in order,
//! as [`Inbound::Message`] on the channel [`Transport::start`] returns. The channel is bounded:
//! a slow driver slows the readers, and TCP flow control slows the senders. A message whose
//! `from` is not the node that completed the handshake, or whose `to` is not this node, is
//! dropped with a warning. A failed handshake, a bad frame (too large, checksum mismatch) or an
//! undecodable payload closes that connection with a `tracing` warning naming the peer's address
//! and the reason; other connections and the listener carry on.

mod inbound;
mod outbound;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use raft_core::{Message, NodeId};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::frame::DEFAULT_MAX_FRAME_LEN;
use super::handshake::HandshakeConfig;

/// Settings of a [`Transport`]. [`TransportConfig::new`] gives the defaults documented on each
/// field.
#[derive(Clone, Debug)]
pub struct TransportConfig {
    /// The address to accept peer connections on.
    pub listen: SocketAddr,
    /// The largest frame payload sent or accepted, in bytes. Default
    /// [`DEFAULT_MAX_FRAME_LEN`] (16 MiB); keep Raft's `max_bytes_per_msg` and snapshot chunk
    /// size well below it.
    pub max_frame_len: usize,
    /// Messages queued per peer before new ones are dropped. Default 4096.
    pub send_queue_len: usize,
    /// Received messages buffered for the driver before readers wait. Default 4096.
    pub inbound_queue_len: usize,
    /// A batch is written once it holds this many bytes, even if more messages are queued.
    /// Default 1 MiB.
    pub max_batch_bytes: usize,
    /// The bound on resolving and connecting (the handshake has its own). Default 3 s.
    pub connect_timeout: Duration,
    /// Writing one batch taking longer than this fails the connection (the peer stopped
    /// reading, or the network is too slow for [`TransportConfig::max_batch_bytes`]). Default
    /// 10 s.
    pub write_timeout: Duration,
    /// The first reconnect delay (at least 1 ms is used). Default 50 ms.
    pub backoff_min: Duration,
    /// The largest reconnect delay. Default 2 s.
    pub backoff_max: Duration,
    /// Accepted connections served at once; more are closed at once. Default 1024.
    pub max_inbound_connections: usize,
}

impl TransportConfig {
    /// The defaults, listening on `listen`.
    pub fn new(listen: SocketAddr) -> TransportConfig {
        TransportConfig {
            listen,
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
            send_queue_len: 4096,
            inbound_queue_len: 4096,
            max_batch_bytes: 1024 * 1024,
            connect_timeout: Duration::from_secs(3),
            write_timeout: Duration::from_secs(10),
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_secs(2),
            max_inbound_connections: 1024,
        }
    }
}

/// What the transport delivers to the driver.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Inbound {
    /// A message from a peer, for this node's `Node::step`.
    Message(Message),
    /// Connecting or writing to this peer just failed; pass it to `Node::report_unreachable`.
    /// Repeated on each failed attempt (at most one per backoff delay), and dropped rather than
    /// waited for when the channel is full.
    Unreachable(NodeId),
}

/// A peer's counters, for a status page.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerStats {
    /// The peer's address as last set.
    pub addr: String,
    /// Whether an outgoing connection is established (handshake done).
    pub connected: bool,
    /// Successful connections (handshakes) so far.
    pub connects: u64,
    /// Messages written to the connection (handed to the kernel; not necessarily received).
    pub messages_sent: u64,
    /// Messages dropped: queue full, lost in a failed write, or too large for a frame.
    pub messages_dropped: u64,
    /// The last connection or write error, if any.
    pub last_error: Option<String>,
}

/// The whole transport's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TransportStats {
    /// Each peer with an address, by id.
    pub peers: BTreeMap<NodeId, PeerStats>,
    /// Messages dropped because their recipient has no address (or is this node).
    pub dropped_no_peer: u64,
}

/// Counters a peer's task updates and the handle reads.
#[derive(Debug, Default)]
struct PeerCounters {
    connected: AtomicBool,
    connects: AtomicU64,
    sent: AtomicU64,
    dropped: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl PeerCounters {
    fn add_dropped(&self, n: u64) {
        self.dropped.fetch_add(n, Ordering::Relaxed);
    }

    fn set_error(&self, error: String) {
        *lock(&self.last_error) = Some(error);
    }
}

/// What every task of one transport shares, read-only.
#[derive(Debug)]
struct Settings {
    config: TransportConfig,
    handshake: HandshakeConfig,
    inbound: mpsc::Sender<Inbound>,
}

/// One peer with an address: its queue and the task that drains it.
#[derive(Debug)]
struct PeerSlot {
    queue: mpsc::Sender<Message>,
    addr: watch::Sender<String>,
    counters: Arc<PeerCounters>,
    task: JoinHandle<()>,
}

/// Namespace of [`Transport::start`].
#[derive(Debug)]
pub struct Transport;

impl Transport {
    /// Binds [`TransportConfig::listen`], starts accepting peers, and returns the handle to send
    /// with and the channel on which received messages and unreachable reports arrive.
    ///
    /// Must be called from within a Tokio runtime; the transport's tasks run on it. Fails if
    /// there is no runtime or the address cannot be bound.
    pub fn start(config: TransportConfig, handshake: HandshakeConfig) -> io::Result<(TransportHandle, mpsc::Receiver<Inbound>)> {
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|e| io::Error::other(format!("Transport::start needs a Tokio runtime: {e}")))?;
        // Bind synchronously so that a busy port is an error here, not in a background task.
        let std_listener = std::net::TcpListener::bind(config.listen)?;
        std_listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(std_listener)?;
        let local_addr = listener.local_addr()?;

        let (inbound_tx, inbound_rx) = mpsc::channel(config.inbound_queue_len.max(1));
        let settings = Arc::new(Settings { config, handshake, inbound: inbound_tx });
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let accept_task = runtime.spawn(inbound::accept_loop(listener, Arc::clone(&settings), shutdown_rx));
        let inner = Inner {
            settings,
            runtime,
            local_addr,
            peers: Mutex::new(BTreeMap::new()),
            dropped_no_peer: AtomicU64::new(0),
            accept_task: Mutex::new(Some(accept_task)),
            shutdown: shutdown_tx,
        };
        Ok((TransportHandle { inner: Arc::new(inner) }, inbound_rx))
    }
}

/// Sends messages to peers and manages their addresses. Cheap to clone; the transport stops
/// when the last clone is dropped (or at [`TransportHandle::shutdown`]).
#[derive(Clone, Debug)]
pub struct TransportHandle {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    settings: Arc<Settings>,
    runtime: tokio::runtime::Handle,
    local_addr: SocketAddr,
    peers: Mutex<BTreeMap<NodeId, PeerSlot>>,
    dropped_no_peer: AtomicU64,
    accept_task: Mutex<Option<JoinHandle<()>>>,
    shutdown: watch::Sender<bool>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for slot in lock(&self.peers).values() {
            slot.task.abort();
        }
        if let Some(task) = lock(&self.accept_task).take() {
            // Dropping the accept loop drops its connection tasks with it.
            task.abort();
        }
    }
}

/// Locks a mutex, ignoring poisoning: every critical section here leaves the data consistent.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl TransportHandle {
    /// The address actually listened on (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// Queues `msg` for `msg.to` without waiting. Dropped and counted if the peer has no
    /// address or its queue is full.
    pub fn send(&self, msg: Message) {
        let peers = lock(&self.inner.peers);
        let Some(slot) = peers.get(&msg.to) else {
            self.inner.dropped_no_peer.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(to = %msg.to, kind = msg.body.name(), "dropping message for a peer without an address");
            return;
        };
        if let Err(e) = slot.queue.try_send(msg) {
            slot.counters.add_dropped(1);
            let msg = e.into_inner();
            tracing::trace!(to = %msg.to, kind = msg.body.name(), "send queue full; dropping message");
        }
    }

    /// Sets the `host:port` of peer `id`, starting its sender if it is new. The address is
    /// resolved on each connection attempt; changing it closes the current connection and
    /// reconnects at once. This node's own id is ignored, and so is every call after
    /// [`TransportHandle::shutdown`].
    pub fn set_peer_addr(&self, id: NodeId, addr: String) {
        let mut peers = lock(&self.inner.peers);
        // Checked under the lock that `shutdown` takes the peers under, so no peer is added after.
        if id == self.inner.settings.handshake.node_id || *self.inner.shutdown.borrow() {
            return;
        }
        if let Some(slot) = peers.get(&id) {
            slot.addr.send_if_modified(|current| {
                let changed = *current != addr;
                *current = addr;
                changed
            });
            return;
        }
        let (queue_tx, queue_rx) = mpsc::channel(self.inner.settings.config.send_queue_len.max(1));
        let (addr_tx, addr_rx) = watch::channel(addr);
        let counters = Arc::new(PeerCounters::default());
        let task = self.inner.runtime.spawn(outbound::run_peer(outbound::PeerTask {
            peer: id,
            settings: Arc::clone(&self.inner.settings),
            queue: queue_rx,
            addr: addr_rx,
            counters: Arc::clone(&counters),
        }));
        peers.insert(id, PeerSlot { queue: queue_tx, addr: addr_tx, counters, task });
    }

    /// Forgets peer `id`: closes its connection and drops its queued messages.
    pub fn remove_peer(&self, id: NodeId) {
        if let Some(slot) = lock(&self.inner.peers).remove(&id) {
            slot.task.abort();
        }
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> TransportStats {
        let peers = lock(&self.inner.peers)
            .iter()
            .map(|(&id, slot)| {
                let c = &slot.counters;
                let stats = PeerStats {
                    addr: slot.addr.borrow().clone(),
                    connected: c.connected.load(Ordering::Relaxed),
                    connects: c.connects.load(Ordering::Relaxed),
                    messages_sent: c.sent.load(Ordering::Relaxed),
                    messages_dropped: c.dropped.load(Ordering::Relaxed),
                    last_error: lock(&c.last_error).clone(),
                };
                (id, stats)
            })
            .collect();
        TransportStats { peers, dropped_no_peer: self.inner.dropped_no_peer.load(Ordering::Relaxed) }
    }

    /// Stops the transport and waits until it has: the listener is closed (its port can be
    /// bound again), every connection is closed, and queued messages are dropped. Later sends are
    /// dropped.
    pub async fn shutdown(&self) {
        let _ = self.inner.shutdown.send(true);
        let accept_task = lock(&self.inner.accept_task).take();
        if let Some(task) = accept_task {
            let _ = task.await;
        }
        let peers = std::mem::take(&mut *lock(&self.inner.peers));
        for slot in peers.into_values() {
            slot.task.abort();
            let _ = slot.task.await;
        }
    }
}
