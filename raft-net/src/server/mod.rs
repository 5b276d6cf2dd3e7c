//! The raftkv server: a raft-core node, a raft-kv store, a durable log, a peer transport and a
//! Redis-protocol (RESP2) client port, wired together by a thin driver.
//!
//! Start one with [`start`]. A server either starts a new cluster (`peers`: every initial
//! member, itself included), joins a running one (`join`: the client address of any member), or
//! resumes from its data directory (neither is needed then; flags that contradict what is on disk
//! are refused).

mod app;
mod conn;
mod driver;
mod reply;
mod storage_thread;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use raft_core::{Bootstrap, CompactionPolicy, Config, EntryKind, Node, NodeId};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{info, warn};

pub use app::MemberAddrs;
pub use driver::{AdminOp, AdminReply, Request, ServerError};
pub use reply::{encode_command, parse_reply, request, roundtrip};

use crate::storage::{DurableLog, Options as StorageOptions, StorageError};
use crate::wire::{HandshakeConfig, RespValue, Transport, TransportConfig};
use app::{App, Envelope};
use driver::{Driver, DriverSettings};
use storage_thread::{StorageStats, StorageThread};

/// Everything a server is started with.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// This server's id (never 0).
    pub id: NodeId,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// host:port to serve clients (RESP) on.
    pub listen: String,
    /// host:port to serve peers on.
    pub peer_listen: String,
    /// The client address other servers and clients should use (default: `listen`).
    pub advertise_client: Option<String>,
    /// The peer address other servers should use (default: `peer_listen`).
    pub advertise_peer: Option<String>,
    /// Start a new cluster with these members (each id with its peer address), itself included.
    pub peers: Option<Vec<(NodeId, String)>>,
    /// Join a running cluster through this member's client address.
    pub join: Option<String>,
    /// The cluster's id (default for a new cluster: derived from `peers`).
    pub cluster_id: Option<u64>,
    /// A shared secret peers must prove they know.
    pub secret: Option<Vec<u8>>,
    /// Length of one Raft tick.
    pub tick: Duration,
    /// Election timeout, in ticks (randomised up to twice this).
    pub election_ticks: u32,
    /// Heartbeat interval, in ticks.
    pub heartbeat_ticks: u32,
    /// How long a client waits for an outcome before being told it is unknown.
    pub request_timeout: Duration,
    /// fsync writes (off only for experiments: a crash may then lose acknowledged writes).
    pub fsync: bool,
    /// When to snapshot the state machine.
    pub compaction: CompactionPolicy,
}

impl ServerConfig {
    /// A configuration with the defaults: 50 ms ticks, elections after 10-20 ticks, heartbeats
    /// every tick, 5 s request timeout, fsync on.
    pub fn new(id: NodeId, data_dir: impl Into<PathBuf>, listen: impl Into<String>, peer_listen: impl Into<String>) -> ServerConfig {
        ServerConfig {
            id,
            data_dir: data_dir.into(),
            listen: listen.into(),
            peer_listen: peer_listen.into(),
            advertise_client: None,
            advertise_peer: None,
            peers: None,
            join: None,
            cluster_id: None,
            secret: None,
            tick: Duration::from_millis(50),
            election_ticks: 10,
            heartbeat_ticks: 1,
            request_timeout: Duration::from_secs(5),
            fsync: true,
            compaction: CompactionPolicy::default(),
        }
    }
}

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The configuration is inconsistent (or contradicts the data directory).
    #[error("{0}")]
    Config(String),
    /// The data directory could not be used.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// Joining the cluster failed.
    #[error("cannot join through {addr}: {reason}")]
    Join {
        /// The member contacted.
        addr: String,
        /// Why.
        reason: String,
    },
}

/// A running server.
pub struct ServerHandle {
    /// The bound client address.
    pub client_addr: SocketAddr,
    /// The bound peer address.
    pub peer_addr: SocketAddr,
    /// The cluster id.
    pub cluster_id: u64,
    shutdown: watch::Sender<bool>,
    driver: JoinHandle<()>,
    acceptor: JoinHandle<()>,
}

impl ServerHandle {
    /// Stops the server: no more clients, everything written is synced.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        self.acceptor.abort();
        let _ = self.driver.await;
    }

    /// Runs until `signal` fires (then shuts down cleanly and returns true) or the server stops
    /// by itself because its disk failed (returns false).
    pub async fn run_until(mut self, signal: impl std::future::Future<Output = ()>) -> bool {
        tokio::select! {
            _ = signal => {
                let _ = self.shutdown.send(true);
                self.acceptor.abort();
                let _ = (&mut self.driver).await;
                true
            }
            _ = &mut self.driver => {
                self.acceptor.abort();
                false
            }
        }
    }
}

/// The cluster id a new cluster gets from its member list: every initial member computes the
/// same one from the same `--peers`.
pub fn cluster_id_from_peers(peers: &[(NodeId, String)]) -> u64 {
    let mut sorted: Vec<&(NodeId, String)> = peers.iter().collect();
    sorted.sort();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (id, addr) in sorted {
        for b in format!("{id}={addr};").bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

enum BootstrapKind {
    New,
    Join,
}

fn peers_file(dir: &Path) -> PathBuf {
    dir.join("peers")
}

/// Writes the initial address book (temp file, fsync, rename) so a restart needs no flags.
fn save_peers(dir: &Path, members: &BTreeMap<NodeId, MemberAddrs>) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = dir.join("peers.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    for (id, a) in members {
        writeln!(f, "{id} {} {}", a.peer, if a.client.is_empty() { "-" } else { &a.client })?;
    }
    f.sync_all()?;
    std::fs::rename(&tmp, peers_file(dir))?;
    std::fs::File::open(dir)?.sync_all()
}

fn load_peers(dir: &Path) -> Result<BTreeMap<NodeId, MemberAddrs>, StartError> {
    let path = peers_file(dir);
    let text = std::fs::read_to_string(&path).map_err(|e| StartError::Config(format!("cannot read {}: {e}", path.display())))?;
    let mut members = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let bad = || StartError::Config(format!("{} line {}: expected 'ID PEERADDR CLIENTADDR'", path.display(), n + 1));
        let [id, peer, client] = parts[..] else { return Err(bad()) };
        let id = id.parse::<u64>().map_err(|_| bad())?;
        members.insert(
            NodeId(id),
            MemberAddrs { peer: peer.to_string(), client: if client == "-" { String::new() } else { client.to_string() } },
        );
    }
    Ok(members)
}

async fn join_cluster(addr: &str, id: NodeId, me: &MemberAddrs) -> Result<(u64, BTreeMap<NodeId, MemberAddrs>), StartError> {
    let fail = |reason: String| StartError::Join { addr: addr.to_string(), reason };
    let mut last = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    for attempt in 0.. {
        if attempt > 0 {
            if tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let id_text = id.to_string();
        let args: [&[u8]; 4] = [b"RAFT.JOIN", id_text.as_bytes(), me.peer.as_bytes(), me.client.as_bytes()];
        let result = request(addr, &args);
        match tokio::time::timeout(Duration::from_secs(10), result).await {
            Ok(Ok(RespValue::Array(Some(items)))) if !items.is_empty() => {
                let RespValue::Integer(cluster_id) = items[0] else { return Err(fail("malformed reply".into())) };
                let mut members = BTreeMap::new();
                for item in &items[1..] {
                    let RespValue::BulkString(Some(b)) = item else { return Err(fail("malformed member".into())) };
                    let text = String::from_utf8_lossy(b);
                    let mut parts = text.splitn(3, '=');
                    let (Some(i), Some(p), Some(c)) = (parts.next(), parts.next(), parts.next()) else {
                        return Err(fail("malformed member".into()));
                    };
                    let i = i.parse::<u64>().map_err(|_| fail("malformed member id".into()))?;
                    members.insert(NodeId(i), MemberAddrs { peer: p.to_string(), client: c.to_string() });
                }
                return Ok((cluster_id as u64, members));
            }
            Ok(Ok(RespValue::Error(e))) if e.starts_with("ERR") && !e.contains("reach the leader") => return Err(fail(e)),
            Ok(Ok(other)) => last = format!("{other:?}"),
            Ok(Err(e)) => last = e,
            Err(_) => last = "no answer in 10 s".into(),
        }
        warn!("joining through {addr}: {last}; retrying");
    }
    Err(fail(last))
}

/// Starts a server.
pub async fn start(config: ServerConfig) -> Result<ServerHandle, StartError> {
    let id = config.id;
    if !id.is_valid() {
        return Err(StartError::Config("--id must be at least 1".into()));
    }
    let me = MemberAddrs {
        peer: config.advertise_peer.clone().unwrap_or_else(|| config.peer_listen.clone()),
        client: config.advertise_client.clone().unwrap_or_else(|| config.listen.clone()),
    };
    let storage_options = StorageOptions { fsync: config.fsync, ..StorageOptions::default() };
    let mut node_config = Config::new(id);
    node_config.election_ticks = config.election_ticks;
    node_config.heartbeat_ticks = config.heartbeat_ticks;
    node_config.compaction = config.compaction;
    node_config.seed = id.0 ^ std::process::id() as u64;
    // A value at raft-kv's limit plus its envelope must fit one message; frames allow 16 MiB.
    node_config.max_bytes_per_msg = 4 << 20;
    node_config.validate().map_err(|e| StartError::Config(e.to_string()))?;

    // Bind first: a port clash must fail before a data directory is created or a cluster is joined.
    let listener = TcpListener::bind(&config.listen).await.map_err(|e| StartError::Bind { addr: config.listen.clone(), source: e })?;
    let peer_probe =
        std::net::TcpListener::bind(&config.peer_listen).map_err(|e| StartError::Bind { addr: config.peer_listen.clone(), source: e })?;
    let (log, node, app, cluster_id, initial_peers) = match DurableLog::open(&config.data_dir, storage_options.clone()) {
        Ok((log, recovered)) => {
            if recovered.node_id != id {
                return Err(StartError::Config(format!(
                    "{} belongs to node {}, not to node {id}",
                    config.data_dir.display(),
                    recovered.node_id
                )));
            }
            if let Some(peers) = &config.peers {
                let want = config.cluster_id.unwrap_or_else(|| cluster_id_from_peers(peers));
                if want != recovered.cluster_id {
                    return Err(StartError::Config(format!(
                        "--peers describe cluster {want:016x}, but {} holds cluster {:016x}; restart without --peers to resume",
                        config.data_dir.display(),
                        recovered.cluster_id
                    )));
                }
            } else if let Some(c) = config.cluster_id.filter(|c| *c != recovered.cluster_id) {
                return Err(StartError::Config(format!(
                    "--cluster-id {c:016x} contradicts {} ({:016x})",
                    config.data_dir.display(),
                    recovered.cluster_id
                )));
            }
            if config.join.is_some() {
                info!("--join ignored: resuming from {}", config.data_dir.display());
            }
            if let Some(r) = &recovered.repaired {
                warn!("recovery repaired the log: {r}");
            }
            let mut app = match &recovered.snapshot {
                Some(s) => App::restore(&s.data).map_err(|e| StartError::Config(format!("the stored snapshot cannot be restored: {e}")))?,
                None => App::new(BTreeMap::new()),
            };
            let initial_peers = load_peers(&config.data_dir)?;
            // Addresses of members added by entries not yet committed.
            for e in recovered.entries.iter().filter(|e| e.kind == EntryKind::Membership) {
                if let Ok((_, ctx)) = raft_core::Membership::decode(&e.data) {
                    if let Ok(Envelope::Announce { id, addrs }) = Envelope::decode(&ctx) {
                        app.learn(id, addrs);
                    }
                }
            }
            let cluster_id = recovered.cluster_id;
            let info = format!("resuming node {id} of cluster {cluster_id:016x} at index {}", recovered.last_index());
            let node = Node::restart(node_config, recovered.into_persisted_state()).map_err(|e| StartError::Config(e.to_string()))?;
            info!("{info}");
            (log, node, app, cluster_id, initial_peers)
        }
        Err(StorageError::NotInitialized { .. }) => {
            let (cluster_id, members, bootstrap) = match (&config.peers, &config.join) {
                (Some(_), Some(_)) => {
                    return Err(StartError::Config("give --peers (new cluster) or --join (existing one), not both".into()))
                }
                (None, None) => {
                    return Err(StartError::Config(format!(
                        "{} holds no data: give --peers to start a new cluster or --join to join one",
                        config.data_dir.display()
                    )))
                }
                (Some(peers), None) => {
                    if !peers.iter().any(|(p, _)| *p == id) {
                        return Err(StartError::Config(format!("--peers must include this node ({id})")));
                    }
                    let mut ids: Vec<NodeId> = peers.iter().map(|(p, _)| *p).collect();
                    ids.sort();
                    if ids.windows(2).any(|w| w[0] == w[1]) {
                        return Err(StartError::Config("--peers names a node twice".into()));
                    }
                    let members = peers.iter().map(|(p, a)| (*p, MemberAddrs { peer: a.clone(), client: String::new() })).collect();
                    (config.cluster_id.unwrap_or_else(|| cluster_id_from_peers(peers)), members, Bootstrap::NewCluster { voters: ids })
                }
                (None, Some(addr)) => {
                    let (cluster_id, members) = join_cluster(addr, id, &me).await?;
                    info!("joined cluster {cluster_id:016x} through {addr} ({} members)", members.len());
                    (cluster_id, members, Bootstrap::Join)
                }
            };
            let mut initial_peers = members.clone();
            initial_peers.insert(id, me.clone());
            std::fs::create_dir_all(&config.data_dir)
                .map_err(|e| StartError::Config(format!("cannot create {}: {e}", config.data_dir.display())))?;
            let log = DurableLog::create(&config.data_dir, id, cluster_id, storage_options)?;
            save_peers(&config.data_dir, &initial_peers).map_err(|e| StartError::Config(format!("cannot write the peers file: {e}")))?;
            let bootstrap_kind = if matches!(bootstrap, Bootstrap::Join) { BootstrapKind::Join } else { BootstrapKind::New };
            let node = Node::new(node_config, bootstrap).map_err(|e| StartError::Config(e.to_string()))?;
            info!("node {id} created cluster data for {cluster_id:016x}");
            // A joiner's address book comes from a member: it is the cluster's replicated one.
            let app = if matches!(bootstrap_kind, BootstrapKind::Join) { App::new(members) } else { App::new(BTreeMap::new()) };
            (log, node, app, cluster_id, initial_peers)
        }
        Err(e) => return Err(e.into()),
    };

    let peer_addr: SocketAddr = tokio::net::lookup_host(&config.peer_listen)
        .await
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| StartError::Config(format!("--peer-listen {}: not an address", config.peer_listen)))?;
    drop(peer_probe);
    let mut handshake = HandshakeConfig::new(cluster_id, id);
    if let Some(secret) = &config.secret {
        handshake = handshake.with_secret(secret.clone());
    }
    let (transport, inbound) = Transport::start(TransportConfig::new(peer_addr), handshake)
        .map_err(|e| StartError::Bind { addr: config.peer_listen.clone(), source: e })?;
    let peer_addr = transport.local_addr();
    let client_addr = listener.local_addr().map_err(|e| StartError::Bind { addr: config.listen.clone(), source: e })?;

    let (storage_tx, storage_rx) = mpsc::unbounded_channel();
    let stats = Arc::new(StorageStats::default());
    let storage = StorageThread::start(log, storage_tx, Arc::clone(&stats));
    let (requests_tx, requests_rx) = mpsc::channel(65_536);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let settings = DriverSettings { initial_peers, id, cluster_id, addrs: me, tick: config.tick, request_timeout: config.request_timeout };
    let driver = Driver::new(node, app, settings, transport.clone(), storage, stats);
    let driver = tokio::spawn(async move {
        driver.run(requests_rx, inbound, storage_rx, shutdown_rx).await;
        transport.shutdown().await;
    });
    let timeout = config.request_timeout;
    let acceptor = tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(conn::serve(stream, requests_tx.clone(), timeout));
                }
                Err(e) => {
                    warn!("accepting a client failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    });
    info!("node {id} serving clients on {client_addr}, peers on {peer_addr}");
    Ok(ServerHandle { client_addr, peer_addr, cluster_id, shutdown: shutdown_tx, driver, acceptor })
}
