//! raftkv: a replicated key-value server that speaks the Redis protocol.
//!
//! ```text
//! raftkv cluster --nodes 5                    # a local 5-node cluster; Ctrl-C stops it
//! raftkv serve --id 1 --data d1 --listen 127.0.0.1:6001 --peer-listen 127.0.0.1:7001 \
//!              --peers 1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003
//! raftkv serve --id 4 --data d4 --listen 127.0.0.1:6004 --peer-listen 127.0.0.1:7004 --join 127.0.0.1:6001
//! raftkv status --cluster 127.0.0.1:6001
//! raftkv client --servers 127.0.0.1:6001,127.0.0.1:6002 set k v
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use clap::{Args, Parser, Subcommand};
use raft_core::{CompactionPolicy, NodeId};
use raft_net::client::{format_reply, Client};
use raft_net::server::{self, request, ServerConfig};
use raft_net::wire::RespValue;

/// A replicated key-value server that speaks the Redis protocol (RESP2), built on raft-core.
#[derive(Parser)]
#[command(name = "raftkv", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one server: start a new cluster (--peers), join one (--join), or resume from --data.
    Serve(Box<ServeArgs>),
    /// Run a local cluster of N servers on 127.0.0.1 (one process each); Ctrl-C stops them all.
    Cluster {
        /// Number of servers.
        #[arg(long, default_value_t = 5)]
        nodes: u64,
        /// Keep the servers' data in this directory (default: a temporary one, removed at exit).
        #[arg(long, value_name = "DIR")]
        data: Option<PathBuf>,
        /// A shared secret the servers use to authenticate each other.
        #[arg(long, value_name = "SECRET")]
        cluster_secret: Option<String>,
    },
    /// Show a cluster's members, leader, terms and replication lag.
    Status {
        /// The client address of any member.
        #[arg(long, value_name = "HOST:PORT")]
        cluster: String,
    },
    /// Run one command against a cluster, retrying across servers; writes apply exactly once.
    Client {
        /// Client addresses of the servers, comma-separated.
        #[arg(long, value_name = "HOST:PORT,...", value_delimiter = ',', required = true)]
        servers: Vec<String>,
        /// How long to wait for each attempt, milliseconds.
        #[arg(long, default_value_t = 6000)]
        timeout_ms: u64,
        /// The command and its arguments, e.g. `set k v`, `get k`, `incr counter`.
        #[arg(required = true, num_args = 1.., trailing_var_arg = true)]
        command: Vec<String>,
    },
}

#[derive(Args, Clone)]
struct ServeArgs {
    /// This server's id (a positive integer, unique in the cluster).
    #[arg(long)]
    id: u64,
    /// Data directory (created when starting a new cluster or joining).
    #[arg(long, value_name = "DIR")]
    data: PathBuf,
    /// Address to serve clients on (RESP).
    #[arg(long, value_name = "HOST:PORT")]
    listen: String,
    /// Address to serve peers on.
    #[arg(long, value_name = "HOST:PORT")]
    peer_listen: String,
    /// Every initial member, itself included: ID=PEERHOST:PEERPORT,... (new cluster only).
    #[arg(long, value_name = "LIST", conflicts_with = "join")]
    peers: Option<String>,
    /// Join a running cluster through the client address of any member.
    #[arg(long, value_name = "HOST:PORT")]
    join: Option<String>,
    /// The client address others should use, if different from --listen (e.g. across machines).
    #[arg(long, value_name = "HOST:PORT")]
    advertise_client: Option<String>,
    /// The peer address others should use, if different from --peer-listen.
    #[arg(long, value_name = "HOST:PORT")]
    advertise_peer: Option<String>,
    /// Cluster id in hex (default: derived from --peers).
    #[arg(long, value_name = "HEX")]
    cluster_id: Option<String>,
    /// A shared secret peers must prove they know (an HMAC challenge at connect).
    #[arg(long, value_name = "SECRET", conflicts_with = "cluster_secret_file")]
    cluster_secret: Option<String>,
    /// Read the shared secret from this file.
    #[arg(long, value_name = "FILE")]
    cluster_secret_file: Option<PathBuf>,
    /// Length of one Raft tick, milliseconds.
    #[arg(long, default_value_t = 50)]
    tick_ms: u64,
    /// Election timeout in ticks (randomised up to twice this).
    #[arg(long, default_value_t = 10)]
    election_ticks: u32,
    /// How long a client waits for an outcome, milliseconds.
    #[arg(long, default_value_t = 5000)]
    request_timeout_ms: u64,
    /// Snapshot after this many applied entries (a snapshot holds the whole store: not too often).
    #[arg(long, default_value_t = 100_000)]
    snapshot_entries: u64,
    /// Do not fsync (experiments only: a crash may then lose acknowledged writes).
    #[arg(long)]
    no_fsync: bool,
    /// Threads for the async runtime (1: everything but the storage thread on one thread, which
    /// keeps latency low when servers share a few cores).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Stop cleanly when standard input reaches its end: a supervisor or test harness that
    /// holds the other end of a pipe takes the server with it when it dies, even by SIGKILL.
    #[arg(long)]
    stop_on_stdin_close: bool,
}

fn parse_peers(list: &str) -> Result<Vec<(NodeId, String)>, String> {
    list.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|item| {
            let (id, addr) = item.trim().split_once('=').ok_or_else(|| format!("--peers: expected ID=HOST:PORT, got '{item}'"))?;
            let id: u64 = id.parse().map_err(|_| format!("--peers: bad id '{id}'"))?;
            if id == 0 {
                return Err("--peers: node id 0 is reserved".into());
            }
            if !addr.contains(':') {
                return Err(format!("--peers: '{addr}' is not HOST:PORT"));
            }
            Ok((NodeId(id), addr.to_string()))
        })
        .collect()
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("install a SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

/// Resolves once standard input reaches its end (or fails): read on a thread of its own, since
/// a blocking read must not hold up the runtime.
async fn stdin_closed() {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let spawned = std::thread::Builder::new().name("raftkv-stdin".into()).spawn(move || {
        let mut buf = [0u8; 256];
        let mut stdin = std::io::stdin().lock();
        while matches!(std::io::Read::read(&mut stdin, &mut buf), Ok(n) if n > 0) {}
        let _ = tx.send(());
    });
    if spawned.is_ok() {
        let _ = rx.await;
    } else {
        std::future::pending::<()>().await;
    }
}

async fn serve(a: ServeArgs) -> ExitCode {
    let fail = |msg: String| {
        eprintln!("raftkv serve: {msg}");
        ExitCode::from(2)
    };
    if a.id == 0 {
        return fail("--id must be at least 1".into());
    }
    let mut config = ServerConfig::new(NodeId(a.id), a.data.clone(), a.listen.clone(), a.peer_listen.clone());
    config.advertise_client = a.advertise_client.clone();
    config.advertise_peer = a.advertise_peer.clone();
    config.join = a.join.clone();
    if let Some(p) = &a.peers {
        match parse_peers(p) {
            Ok(peers) => config.peers = Some(peers),
            Err(e) => return fail(e),
        }
    }
    if let Some(c) = &a.cluster_id {
        match u64::from_str_radix(c.trim_start_matches("0x"), 16) {
            Ok(c) => config.cluster_id = Some(c),
            Err(_) => return fail(format!("--cluster-id: '{c}' is not hexadecimal")),
        }
    }
    config.secret = match (&a.cluster_secret, &a.cluster_secret_file) {
        (Some(s), _) => Some(s.clone().into_bytes()),
        (None, Some(f)) => match std::fs::read(f) {
            Ok(b) => Some(b.trim_ascii().to_vec()),
            Err(e) => return fail(format!("--cluster-secret-file {}: {e}", f.display())),
        },
        (None, None) => None,
    };
    if config.secret.as_ref().is_some_and(|s| s.is_empty()) {
        return fail("the cluster secret is empty".into());
    }
    if a.tick_ms == 0 || a.election_ticks < 2 {
        return fail("--tick-ms must be at least 1 and --election-ticks at least 2".into());
    }
    config.tick = Duration::from_millis(a.tick_ms);
    config.election_ticks = a.election_ticks;
    config.request_timeout = Duration::from_millis(a.request_timeout_ms.max(1));
    config.fsync = !a.no_fsync;
    config.compaction = CompactionPolicy {
        max_entries: Some(a.snapshot_entries.max(1)),
        max_bytes: Some(256 << 20),
        retain_entries: (a.snapshot_entries / 2).min(5_000),
    };
    let handle = match server::start(config).await {
        Ok(h) => h,
        Err(e) => return fail(e.to_string()),
    };
    eprintln!("raftkv: node {} serving clients on {} (peers on {})", a.id, handle.client_addr, handle.peer_addr);
    let stop = async {
        if a.stop_on_stdin_close {
            tokio::select! {
                _ = shutdown_signal() => {}
                _ = stdin_closed() => eprintln!("raftkv: standard input closed; stopping"),
            }
        } else {
            shutdown_signal().await;
        }
    };
    if handle.run_until(stop).await {
        eprintln!("raftkv: node {} stopped", a.id);
        ExitCode::SUCCESS
    } else {
        eprintln!("raftkv: node {} stopped: its disk failed (see the log above)", a.id);
        ExitCode::from(1)
    }
}

/// Ports that are free right now (the listeners are dropped before the servers bind them).
///
/// Taken from the 10,000 ports just below the kernel's ephemeral range when it can tell: a port
/// the kernel hands out could be taken, between this call and the server's bind, by one of the
/// outgoing connections the first servers open to their peers.
fn free_ports(n: usize) -> std::io::Result<Vec<u16>> {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next().and_then(|p| p.parse::<u16>().ok()))
        .filter(|&low| low >= 11_024);
    let mut listeners = Vec::with_capacity(n);
    if let Some(low) = low {
        // Start at a place that depends on the process, so two clusters started at once differ.
        let span = 10_000u32;
        let start = std::process::id().wrapping_mul(7919) % span;
        for i in 0..span {
            if listeners.len() == n {
                break;
            }
            let port = (u32::from(low) - span + (start + i) % span) as u16;
            if let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", port)) {
                listeners.push(l);
            }
        }
    }
    while listeners.len() < n {
        listeners.push(std::net::TcpListener::bind("127.0.0.1:0")?);
    }
    listeners.iter().map(|l| l.local_addr().map(|a| a.port())).collect()
}

async fn cluster(nodes: u64, data: Option<PathBuf>, secret: Option<String>) -> ExitCode {
    if nodes == 0 || nodes > 99 {
        eprintln!("raftkv cluster: --nodes must be between 1 and 99");
        return ExitCode::from(2);
    }
    let (root, temporary) = match data {
        Some(d) => (d, false),
        None => (std::env::temp_dir().join(format!("raftkv-cluster-{}", std::process::id())), true),
    };
    let ports = match free_ports(2 * nodes as usize) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("raftkv cluster: no free ports: {e}");
            return ExitCode::from(1);
        }
    };
    let peers: Vec<String> = (0..nodes).map(|i| format!("{}=127.0.0.1:{}", i + 1, ports[2 * i as usize + 1])).collect();
    let exe = std::env::current_exe().expect("the path of this program");
    let mut children = Vec::new();
    println!("raftkv: starting {nodes} servers (data in {})", root.display());
    for i in 0..nodes {
        let id = i + 1;
        let dir = root.join(format!("node{id}"));
        let (client, peer) = (ports[2 * i as usize], ports[2 * i as usize + 1]);
        let mut cmd = std::process::Command::new(&exe);
        cmd.arg("serve").arg("--id").arg(id.to_string()).arg("--data").arg(&dir);
        cmd.arg("--listen").arg(format!("127.0.0.1:{client}")).arg("--peer-listen").arg(format!("127.0.0.1:{peer}"));
        if !dir.join("meta").exists() {
            cmd.arg("--peers").arg(peers.join(","));
        }
        if let Some(s) = &secret {
            cmd.arg("--cluster-secret").arg(s);
        }
        match cmd.spawn() {
            Ok(child) => children.push(child),
            Err(e) => {
                eprintln!("raftkv cluster: cannot start node {id}: {e}");
                for mut c in children {
                    let _ = c.kill();
                }
                return ExitCode::from(1);
            }
        }
        println!("node {id}: clients 127.0.0.1:{client}   (redis-cli -p {client})   peers 127.0.0.1:{peer}");
    }
    println!("raftkv: status: raftkv status --cluster 127.0.0.1:{}   (Ctrl-C stops the cluster)", ports[0]);
    shutdown_signal().await;
    println!("raftkv: stopping the cluster");
    for c in &children {
        // A terminal's Ctrl-C reaches the servers too; a SIGTERM to this process does not.
        let _ = std::process::Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
    }
    for mut c in children {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            match c.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if std::time::Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
                _ => {
                    let _ = c.kill();
                    let _ = c.wait();
                    break;
                }
            }
        }
    }
    if temporary {
        let _ = std::fs::remove_dir_all(&root);
    }
    ExitCode::SUCCESS
}

fn info_map(text: &str) -> Vec<(String, String)> {
    text.lines().filter_map(|l| l.split_once(':')).map(|(k, v)| (k.to_string(), v.trim().to_string())).collect()
}

async fn status(addr: String) -> ExitCode {
    let info = match tokio::time::timeout(Duration::from_secs(5), request(&addr, &[b"RAFT.INFO"])).await {
        Ok(Ok(RespValue::BulkString(Some(b)))) => String::from_utf8_lossy(&b).into_owned(),
        Ok(Ok(other)) => {
            eprintln!("raftkv status: unexpected answer from {addr}: {}", format_reply(&other));
            return ExitCode::from(1);
        }
        Ok(Err(e)) => {
            eprintln!("raftkv status: {e}");
            return ExitCode::from(1);
        }
        Err(_) => {
            eprintln!("raftkv status: {addr} did not answer");
            return ExitCode::from(1);
        }
    };
    let mut map = info_map(&info);
    // The leader knows every member's replication state: ask it when we can.
    let leader = map.iter().find(|(k, _)| k == "leader_id").map(|(_, v)| v.clone()).unwrap_or_default();
    let node = map.iter().find(|(k, _)| k == "node_id").map(|(_, v)| v.clone()).unwrap_or_default();
    if leader != node && leader != "none" {
        let leader_client = map
            .iter()
            .find(|(k, _)| *k == format!("member_{leader}"))
            .and_then(|(_, v)| v.split(',').find_map(|p| p.strip_prefix("client=")).map(str::to_string));
        if let Some(lc) = leader_client.filter(|c| c != "?") {
            if let Ok(Ok(RespValue::BulkString(Some(b)))) =
                tokio::time::timeout(Duration::from_secs(5), request(&lc, &[b"RAFT.INFO"])).await
            {
                map = info_map(&String::from_utf8_lossy(&b));
            }
        }
    }
    let get = |k: &str| map.iter().find(|(key, _)| key == k).map_or("?".to_string(), |(_, v)| v.clone());
    println!(
        "cluster {}   leader: node {}   term {}   commit index {}   (as seen by node {}, {})",
        get("cluster_id"),
        get("leader_id"),
        get("term"),
        get("commit_index"),
        get("node_id"),
        get("role")
    );
    println!(
        "{:<5} {:<8} {:<22} {:<22} {:>10} {:>8} {:>13} {:>9}",
        "node", "role", "client", "peer", "match", "lag", "last contact", "connected"
    );
    for (k, v) in &map {
        if !k.starts_with("member_") {
            continue;
        }
        let field = |name: &str| v.split(',').find_map(|p| p.strip_prefix(&format!("{name}="))).unwrap_or("?").to_string();
        let id = field("id");
        let role = if id == get("leader_id") { "leader".to_string() } else { field("role") };
        println!(
            "{:<5} {:<8} {:<22} {:<22} {:>10} {:>8} {:>13} {:>9}",
            id,
            role,
            field("client"),
            field("peer"),
            field("match"),
            field("lag"),
            field("last_contact"),
            field("connected")
        );
    }
    ExitCode::SUCCESS
}

async fn client(servers: Vec<String>, timeout_ms: u64, command: Vec<String>) -> ExitCode {
    let mut c = Client::new(servers, Duration::from_millis(timeout_ms.max(1)));
    let args: Vec<Bytes> = command.into_iter().map(Bytes::from).collect();
    match c.command(&args).await {
        Ok(v) => {
            println!("{}", format_reply(&v));
            if matches!(v, RespValue::Error(_)) {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("raftkv client: {e}");
            ExitCode::from(1)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let threads = match &cli.command {
        Command::Serve(a) => a.threads,
        _ => 2,
    };
    let runtime = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build()
    };
    let runtime = match runtime {
        Ok(r) => r,
        Err(e) => {
            eprintln!("raftkv: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async {
        match cli.command {
            Command::Serve(a) => {
                let a = *a;
                init_logging();
                serve(a).await
            }
            Command::Cluster { nodes, data, cluster_secret } => cluster(nodes, data, cluster_secret).await,
            Command::Status { cluster } => status(cluster).await,
            Command::Client { servers, timeout_ms, command } => client(servers, timeout_ms, command).await,
        }
    })
}
