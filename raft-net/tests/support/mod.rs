//! Helpers for the multi-process tests of `raftkv`: free ports, server processes that are always
//! killed (a [`Server`] kills and reaps its process when dropped, also while a test panics), a
//! small synchronous RESP client, `RAFT.INFO` parsing, and polling with a deadline.
//!
//! Nothing here sleeps to synchronise: every wait polls a condition every [`POLL`] until it holds
//! or its deadline passes, and a deadline passing is a test failure that says what it waited
//! for and what it saw last.

#![allow(dead_code)] // Each test file uses its own part of this module.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use raft_net::client::format_reply;
use raft_net::server::{encode_command, parse_reply};
use raft_net::wire::RespValue;

/// The binary under test.
pub const RAFTKV: &str = env!("CARGO_BIN_EXE_raftkv");

/// How often a condition is polled.
pub const POLL: Duration = Duration::from_millis(50);

/// The default bound on one wait: generous, because two cores may run several clusters at once.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// How long one command may take before the client gives up on the connection. Servers answer
/// every request within their request timeout (2 s here), so this only catches a hung server.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(15);

/// Server flags every test uses: 20 ms ticks and elections after 10-20 ticks, so a failover
/// takes well under a second; clients learn an unknown outcome after 2 s instead of 5.
pub const FAST: &[&str] = &["--tick-ms", "20", "--election-ticks", "10", "--request-timeout-ms", "2000"];

// ---------------------------------------------------------------------------------------------
// Waiting
// ---------------------------------------------------------------------------------------------

/// Polls `f` every [`POLL`] until it returns `Ok`, and returns that value.
///
/// # Panics
///
/// When `timeout` passes first: the message names `what` and the last error.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match f() {
            Ok(v) => return v,
            Err(e) if Instant::now() >= deadline => panic!("timed out after {timeout:?} waiting for {what}; last: {e}"),
            Err(_) => std::thread::sleep(POLL),
        }
    }
}

/// Prints the steps of a story with the time since it began (shown when a test fails, or with
/// `--nocapture`), so a slow or stuck step is easy to find.
pub struct Steps(Instant);

impl Steps {
    /// Starts the clock.
    pub fn start() -> Steps {
        Steps(Instant::now())
    }

    /// Prints one step.
    pub fn note(&self, what: &str) {
        eprintln!("[{:>7.3}s] {what}", self.0.elapsed().as_secs_f64());
    }
}

// ---------------------------------------------------------------------------------------------
// Ports
// ---------------------------------------------------------------------------------------------

/// Ports handed out in this process, so two tests running in parallel never get the same one.
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// Ports the kernel never picks by itself: the 10 000 just below its ephemeral range. A server
/// on an ephemeral port could find it taken, when it restarts, by some outgoing connection (the
/// tests open thousands); these stay free unless someone asks for them by number.
fn quiet_ports() -> Option<std::ops::Range<u32>> {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let low: u32 = range.split_whitespace().next()?.parse().ok()?;
    (low >= 11_024).then(|| low - 10_000..low)
}

/// A port on 127.0.0.1 that is free right now and was not handed out before in this process.
pub fn free_port() -> u16 {
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(range) = quiet_ports() {
        // Start somewhere that depends on the process, so concurrent test binaries differ.
        let start = std::process::id().wrapping_mul(7919);
        for i in 0..range.len() as u32 {
            let port = (range.start + start.wrapping_add(i) % range.len() as u32) as u16;
            if !handed_out.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
                handed_out.insert(port);
                return port;
            }
        }
    }
    for _ in 0..1000 {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
        let port = listener.local_addr().expect("local address").port();
        if handed_out.insert(port) {
            return port;
        }
    }
    panic!("no free port");
}

// ---------------------------------------------------------------------------------------------
// RESP client
// ---------------------------------------------------------------------------------------------

fn resolve(addr: &str) -> Result<SocketAddr, String> {
    addr.to_socket_addrs().map_err(|e| format!("{addr}: {e}"))?.next().ok_or_else(|| format!("{addr}: no address"))
}

/// One client connection speaking RESP2, with timeouts on everything.
pub struct Conn {
    stream: TcpStream,
    buf: BytesMut,
    addr: String,
}

impl Conn {
    /// Connects (within 2 s).
    pub fn open(addr: &str) -> Result<Conn, String> {
        let stream = TcpStream::connect_timeout(&resolve(addr)?, Duration::from_secs(2)).map_err(|e| format!("connect {addr}: {e}"))?;
        stream.set_read_timeout(Some(REPLY_TIMEOUT)).map_err(|e| e.to_string())?;
        stream.set_write_timeout(Some(REPLY_TIMEOUT)).map_err(|e| e.to_string())?;
        let _ = stream.set_nodelay(true);
        Ok(Conn { stream, buf: BytesMut::new(), addr: addr.to_string() })
    }

    /// Writes raw bytes.
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.stream.write_all(bytes).map_err(|e| format!("write to {}: {e}", self.addr))
    }

    /// Reads one reply.
    pub fn read_reply(&mut self) -> Result<RespValue, String> {
        let mut chunk = [0u8; 64 * 1024];
        loop {
            if let Some(v) = parse_reply(&mut self.buf).map_err(|e| format!("bad reply from {}: {e}", self.addr))? {
                return Ok(v);
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(format!("{} closed the connection", self.addr)),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(format!("read from {}: {e}", self.addr)),
            }
        }
    }

    /// Reads until the server closes the connection (or `timeout` passes, an error); returns
    /// what arrived that was not read as a reply yet.
    pub fn read_until_closed(&mut self, timeout: Duration) -> Result<Vec<u8>, String> {
        let deadline = Instant::now() + timeout;
        let mut rest = self.buf.split().to_vec();
        let mut chunk = [0u8; 4096];
        self.stream.set_read_timeout(Some(POLL)).map_err(|e| e.to_string())?;
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return Ok(rest),
                Ok(n) => rest.extend_from_slice(&chunk[..n]),
                // A reset is a close too.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(rest),
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(e) => return Err(format!("read from {}: {e}", self.addr)),
            }
            if Instant::now() >= deadline {
                return Err(format!("{} kept the connection open for {timeout:?}", self.addr));
            }
        }
    }

    /// Sends one command and reads its reply.
    pub fn call(&mut self, args: &[&[u8]]) -> Result<RespValue, String> {
        let mut out = BytesMut::new();
        encode_command(args, &mut out);
        self.send_raw(&out)?;
        self.read_reply()
    }

    /// [`Conn::call`] with text arguments.
    pub fn call_str(&mut self, args: &[&str]) -> Result<RespValue, String> {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.call(&args)
    }

    /// Sends many commands in one write and reads their replies, in order.
    pub fn pipeline(&mut self, commands: &[Vec<String>]) -> Result<Vec<RespValue>, String> {
        let mut out = BytesMut::new();
        for c in commands {
            let args: Vec<&[u8]> = c.iter().map(|a| a.as_bytes()).collect();
            encode_command(&args, &mut out);
        }
        self.send_raw(&out)?;
        commands.iter().map(|_| self.read_reply()).collect()
    }
}

/// Sends one command on a new connection.
pub fn call(addr: &str, args: &[&str]) -> Result<RespValue, String> {
    Conn::open(addr)?.call_str(args)
}

/// A reply as redis-cli would show it, for messages.
pub fn show(v: &RespValue) -> String {
    format_reply(v)
}

/// Whether a reply is `+OK`.
pub fn is_ok(v: &RespValue) -> bool {
    matches!(v, RespValue::SimpleString(s) if s == "OK")
}

/// `SET key value` on `addr`: `Ok` only for `+OK`.
pub fn set(addr: &str, key: &str, value: &str) -> Result<(), String> {
    match call(addr, &["SET", key, value])? {
        v if is_ok(&v) => Ok(()),
        other => Err(format!("SET {key} on {addr}: {}", show(&other))),
    }
}

/// The values of `keys` as a bulk-string array reply holds them.
fn values(reply: RespValue, n: usize) -> Result<Vec<Option<String>>, String> {
    match reply {
        RespValue::Array(Some(items)) if items.len() == n => items
            .into_iter()
            .map(|v| match v {
                RespValue::BulkString(b) => Ok(b.map(|b| String::from_utf8_lossy(&b).into_owned())),
                other => Err(format!("MGET element {}", show(&other))),
            })
            .collect(),
        other => Err(format!("MGET of {n} keys answered {}", show(&other))),
    }
}

/// `MGET keys` on `addr`, in chunks: linearizable (ReadIndex), or, with `local`, the server's
/// own state (`READONLY`) without asking the leader.
pub fn mget(addr: &str, keys: &[String], local: bool) -> Result<Vec<Option<String>>, String> {
    let mut conn = Conn::open(addr)?;
    if local {
        let r = conn.call_str(&["READONLY"])?;
        if !is_ok(&r) {
            return Err(format!("READONLY on {addr}: {}", show(&r)));
        }
    }
    let mut out = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(256) {
        let mut args = vec!["MGET"];
        args.extend(chunk.iter().map(String::as_str));
        out.extend(values(conn.call_str(&args)?, chunk.len())?);
    }
    Ok(out)
}

/// Linearizable `GET key` on `addr`.
pub fn get(addr: &str, key: &str) -> Result<Option<String>, String> {
    match call(addr, &["GET", key])? {
        RespValue::BulkString(b) => Ok(b.map(|b| String::from_utf8_lossy(&b).into_owned())),
        other => Err(format!("GET {key} on {addr}: {}", show(&other))),
    }
}

// ---------------------------------------------------------------------------------------------
// RAFT.INFO
// ---------------------------------------------------------------------------------------------

/// A parsed `RAFT.INFO` reply.
#[derive(Clone, Debug)]
pub struct Info(pub BTreeMap<String, String>);

impl Info {
    /// A field, or "" when absent.
    pub fn get(&self, key: &str) -> &str {
        self.0.get(key).map_or("", String::as_str)
    }

    /// A numeric field.
    ///
    /// # Panics
    ///
    /// When the field is absent or not a number: the server broke its output format.
    pub fn num(&self, key: &str) -> u64 {
        self.get(key).parse().unwrap_or_else(|_| panic!("RAFT.INFO field {key} is not a number: {:?}", self.0))
    }

    /// This node's id.
    pub fn node_id(&self) -> u64 {
        self.num("node_id")
    }

    /// leader, follower, candidate or learner.
    pub fn role(&self) -> &str {
        self.get("role")
    }

    /// The leader this node knows, if any.
    pub fn leader(&self) -> Option<u64> {
        self.get("leader_id").parse().ok()
    }

    /// The members listed, each with its fields (`role`, `match`, `peer`, `client`...).
    pub fn members(&self) -> BTreeMap<u64, BTreeMap<String, String>> {
        self.0
            .iter()
            .filter_map(|(k, v)| {
                let id = k.strip_prefix("member_")?.parse().ok()?;
                let fields = v.split(',').filter_map(|f| f.split_once('=')).map(|(a, b)| (a.to_string(), b.to_string())).collect();
                Some((id, fields))
            })
            .collect()
    }
}

/// `RAFT.INFO` of the server at `addr`.
pub fn info(addr: &str) -> Result<Info, String> {
    match call(addr, &["RAFT.INFO"])? {
        RespValue::BulkString(Some(b)) => Ok(Info(
            String::from_utf8_lossy(&b)
                .lines()
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.to_string(), v.trim().to_string()))
                .collect(),
        )),
        other => Err(format!("RAFT.INFO on {addr}: {}", show(&other))),
    }
}

// ---------------------------------------------------------------------------------------------
// Server processes
// ---------------------------------------------------------------------------------------------

/// Removes terminal colour codes (the server's log is meant for terminals).
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Kills a child process (SIGKILL) and reaps it.
fn kill_and_reap(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// One `raftkv serve` process (or none, while it is stopped). Dropping it kills the process.
pub struct Server {
    /// Its node id.
    pub id: u64,
    /// Its client (RESP) address.
    pub client: String,
    /// Its peer address.
    pub peer: String,
    /// Its data directory.
    pub data: PathBuf,
    /// Its stderr, across every start (appended to).
    pub log: PathBuf,
    /// Run inside this network namespace (`ip netns exec`).
    pub netns: Option<String>,
    /// Flags given at every start, after the common ones.
    pub flags: Vec<String>,
    starts: u32,
    child: Option<Child>,
}

impl Server {
    /// A server (not started) with fresh ports on 127.0.0.1 and its files under `root`.
    pub fn new(id: u64, root: &Path, flags: &[&str]) -> Server {
        let client = format!("127.0.0.1:{}", free_port());
        let peer = format!("127.0.0.1:{}", free_port());
        Server::with_addrs(id, root, client, peer, flags)
    }

    /// A server (not started) with the given addresses.
    pub fn with_addrs(id: u64, root: &Path, client: String, peer: String, flags: &[&str]) -> Server {
        Server {
            id,
            client,
            peer,
            data: root.join(format!("node{id}")),
            log: root.join(format!("node{id}.log")),
            netns: None,
            flags: flags.iter().map(|s| s.to_string()).collect(),
            starts: 0,
            child: None,
        }
    }

    /// The `raftkv serve` command line, with `mode` (`--peers ...`, `--join ...` or nothing)
    /// and this server's flags.
    pub fn command(&self, mode: &[String]) -> Command {
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, RAFTKV]);
                c
            }
            None => Command::new(RAFTKV),
        };
        cmd.arg("serve").args(["--id", &self.id.to_string()]).arg("--data").arg(&self.data);
        cmd.args(["--listen", &self.client, "--peer-listen", &self.peer]);
        cmd.args(mode).args(&self.flags);
        // Tests read the log: make it plain text at a known level whatever the environment says
        // (RAFTKV_TEST_LOG can raise it, e.g. to `debug`, to investigate a failure).
        cmd.env("RUST_LOG", std::env::var("RAFTKV_TEST_LOG").unwrap_or_else(|_| "info".to_string())).env("NO_COLOR", "1");
        cmd
    }

    /// Starts the process with `mode` (see [`Server::command`]); its stderr goes to `self.log`.
    ///
    /// # Panics
    ///
    /// If it is running already or cannot be spawned.
    pub fn start(&mut self, mode: &[String]) {
        assert!(self.child.is_none(), "node {} is running already", self.id);
        self.starts += 1;
        let mut log = OpenOptions::new().create(true).append(true).open(&self.log).expect("open the server log");
        writeln!(log, "==== test: start {} of node {} with {mode:?}", self.starts, self.id).expect("write the server log");
        // The server stops when its stdin closes: if this test process dies, even by SIGKILL,
        // the kernel closes the pipe and no server outlives it.
        let child =
            self.command(mode).arg("--stop-on-stdin-close").stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::from(log)).spawn();
        self.child = Some(child.unwrap_or_else(|e| panic!("spawn node {}: {e}", self.id)));
    }

    /// Kills the process with SIGKILL (a crash: nothing is flushed or synced) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_and_reap(&mut child);
        }
    }

    /// Closes the server's standard input, as the kernel does when the process holding the
    /// other end (this test) dies: the server then stops by itself.
    pub fn close_stdin(&mut self) {
        if let Some(child) = &mut self.child {
            drop(child.stdin.take());
        }
    }

    /// Freezes the process (SIGSTOP): to its peers it looks like a server behind a network
    /// partition or in a long pause. Its sockets still accept bytes, which it reads on resuming.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// Lets a paused process run again (SIGCONT).
    pub fn resume(&self) {
        self.signal("CONT");
    }

    fn signal(&self, name: &str) {
        let pid = self.child.as_ref().unwrap_or_else(|| panic!("node {} is not running", self.id)).id();
        let status = Command::new("kill").arg(format!("-{name}")).arg(pid.to_string()).status().expect("run kill");
        assert!(status.success(), "kill -{name} {pid} (node {}) failed", self.id);
    }

    /// Whether the process is running (reaps it if it exited).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut().map(|c| c.try_wait()) {
            Some(Ok(None)) => true,
            Some(_) => {
                self.child = None;
                false
            }
            None => false,
        }
    }

    /// Waits for the process to exit by itself.
    ///
    /// # Panics
    ///
    /// If it is still running after `timeout` (it is killed then), or was not started.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let child = self.child.as_mut().unwrap_or_else(|| panic!("node {} was not started", self.id));
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                return status;
            }
            if Instant::now() >= deadline {
                self.kill();
                panic!("node {} still runs after {timeout:?}; expected it to exit. Its log:\n{}", self.id, self.log_text());
            }
            std::thread::sleep(POLL);
        }
    }

    /// Its stderr so far, without colour codes.
    pub fn log_text(&self) -> String {
        let mut bytes = Vec::new();
        if let Ok(mut f) = File::open(&self.log) {
            let _ = f.read_to_end(&mut bytes);
        }
        strip_ansi(&String::from_utf8_lossy(&bytes))
    }

    /// Waits until its log contains `needle`; returns the log.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> String {
        wait_for(&format!("node {}'s log to mention {needle:?}", self.id), timeout, || {
            let text = self.log_text();
            if text.contains(needle) {
                Ok(text)
            } else {
                Err(text.lines().rev().take(5).collect::<Vec<_>>().join(" | "))
            }
        })
    }

    /// Its `RAFT.INFO`.
    pub fn info(&self) -> Result<Info, String> {
        info(&self.client)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// How a short-lived command ended.
pub struct Exited {
    /// Its exit status.
    pub status: ExitStatus,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error, without colour codes.
    pub stderr: String,
}

/// Runs `cmd` (which must exit by itself) with its output captured, bounded by `timeout` (the
/// process is killed and the test fails after that).
pub fn run_to_exit(mut cmd: Command, timeout: Duration) -> Exited {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (out_path, err_path) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let out = File::create(&out_path).expect("create the stdout file");
    let err = File::create(&err_path).expect("create the stderr file");
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::from(out)).stderr(Stdio::from(err)).spawn().expect("spawn");
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break s;
        }
        if Instant::now() >= deadline {
            kill_and_reap(&mut child);
            panic!("{cmd:?} still runs after {timeout:?}; stderr: {}", std::fs::read_to_string(&err_path).unwrap_or_default());
        }
        std::thread::sleep(POLL);
    };
    let read = |p: &Path| strip_ansi(&std::fs::read_to_string(p).unwrap_or_default());
    Exited { status, stdout: read(&out_path), stderr: read(&err_path) }
}

// ---------------------------------------------------------------------------------------------
// Clusters
// ---------------------------------------------------------------------------------------------

/// Servers started together with `--peers`. Dropping it kills every process, then removes the
/// data directories; a test that panics also prints the end of each server's log.
pub struct Cluster {
    /// The servers, node `i + 1` at index `i` (joiners are pushed after them).
    pub servers: Vec<Server>,
    /// The `--peers` list of the initial members.
    pub peers: String,
    /// Holds every data directory and log. Declared last: dropped after the processes.
    pub dir: tempfile::TempDir,
}

impl Cluster {
    /// `n` servers with [`FAST`] timing plus `flags`, not started.
    pub fn new(n: u64, flags: &[&str]) -> Cluster {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let flags: Vec<&str> = FAST.iter().chain(flags).copied().collect();
        let servers: Vec<Server> = (1..=n).map(|id| Server::new(id, dir.path(), &flags)).collect();
        let peers = servers.iter().map(|s| format!("{}={}", s.id, s.peer)).collect::<Vec<_>>().join(",");
        Cluster { servers, peers, dir }
    }

    /// `n` servers started with `--peers`, once they have elected a leader.
    pub fn start(n: u64, flags: &[&str]) -> Cluster {
        let mut c = Cluster::new(n, flags);
        for i in 0..c.servers.len() {
            let mode = c.new_cluster_mode();
            c.servers[i].start(&mode);
        }
        c.wait_leader(DEADLINE);
        c.wait_address_book(DEADLINE);
        c
    }

    /// The flags that start a new cluster of the initial members.
    pub fn new_cluster_mode(&self) -> Vec<String> {
        vec!["--peers".to_string(), self.peers.clone()]
    }

    /// The server with this id.
    pub fn node(&mut self, id: u64) -> &mut Server {
        self.servers.iter_mut().find(|s| s.id == id).unwrap_or_else(|| panic!("no node {id}"))
    }

    /// The client address of node `id`.
    pub fn addr(&self, id: u64) -> String {
        self.servers.iter().find(|s| s.id == id).unwrap_or_else(|| panic!("no node {id}")).client.clone()
    }

    /// Ids of the servers whose process is running.
    pub fn running(&mut self) -> Vec<u64> {
        self.servers.iter_mut().filter_map(|s| s.is_running().then_some(s.id)).collect()
    }

    /// Client addresses of the running servers.
    pub fn running_addrs(&mut self) -> Vec<String> {
        self.running().into_iter().map(|id| self.addr(id)).collect()
    }

    /// Restarts a stopped server from its data directory, with the `--peers` it was first
    /// started with or without any (the data directory is authoritative either way).
    pub fn restart(&mut self, id: u64, with_peers: bool) {
        let mode = if with_peers { self.new_cluster_mode() } else { Vec::new() };
        self.node(id).start(&mode);
    }

    /// Waits until every running server answers and names the same leader, which says it
    /// leads; returns its id.
    pub fn wait_leader(&mut self, timeout: Duration) -> u64 {
        let addrs: Vec<(u64, String)> = self.running().into_iter().map(|id| (id, self.addr(id))).collect();
        wait_for("every running server to know the same leader", timeout, || {
            let mut leaders = BTreeSet::new();
            let mut confirmed = None;
            for (id, addr) in &addrs {
                let i = info(addr)?;
                leaders.insert(i.leader().ok_or_else(|| format!("node {id} knows no leader ({})", i.role()))?);
                if i.role() == "leader" {
                    confirmed = Some(*id);
                }
            }
            match (leaders.len(), confirmed) {
                (1, Some(l)) if leaders.contains(&l) => Ok(l),
                _ => Err(format!("leaders named: {leaders:?}, self-declared: {confirmed:?}")),
            }
        })
    }

    /// Waits until every running server's RAFT.INFO lists every server of this cluster with
    /// its peer and client addresses. Members announce their addresses through the log once a
    /// leader is elected; until then a follower cannot relay admin commands to the leader (it
    /// answers `-MOVED <id> ?`).
    pub fn wait_address_book(&mut self, timeout: Duration) {
        let addrs: Vec<(u64, String)> = self.running().into_iter().map(|id| (id, self.addr(id))).collect();
        let want: BTreeMap<u64, (String, String)> = self.servers.iter().map(|s| (s.id, (s.peer.clone(), s.client.clone()))).collect();
        wait_for("every server to know every member's addresses", timeout, || {
            for (id, addr) in &addrs {
                let known: BTreeMap<u64, (String, String)> = info(addr)?
                    .members()
                    .into_iter()
                    .map(|(m, f)| (m, (f.get("peer").cloned().unwrap_or_default(), f.get("client").cloned().unwrap_or_default())))
                    .collect();
                if known != want {
                    return Err(format!("node {id} knows {known:?}"));
                }
            }
            Ok(())
        });
    }

    /// Waits until every running server holds the same log and has applied all of it (same
    /// commit, applied and last index everywhere); returns that index.
    pub fn wait_converged(&mut self, timeout: Duration) -> u64 {
        let addrs: Vec<(u64, String)> = self.running().into_iter().map(|id| (id, self.addr(id))).collect();
        wait_for("the running servers to converge", timeout, || {
            let mut seen = BTreeMap::new();
            for (id, addr) in &addrs {
                let i = info(addr)?;
                seen.insert(*id, (i.num("commit_index"), i.num("applied_index"), i.num("last_log_index")));
            }
            let distinct: BTreeSet<_> = seen.values().collect();
            match distinct.into_iter().collect::<Vec<_>>()[..] {
                [&(commit, applied, last)] if commit == applied && applied == last => Ok(commit),
                _ => Err(format!("(commit, applied, last) by node: {seen:?}")),
            }
        })
    }

    /// Writes `key = value`, trying the running servers in turn until one answers `+OK`.
    pub fn set_retry(&mut self, key: &str, value: &str, timeout: Duration) {
        let addrs = self.running_addrs();
        let mut turn = 0;
        wait_for(&format!("SET {key}"), timeout, || {
            turn += 1;
            set(&addrs[turn % addrs.len()], key, value)
        });
    }

    /// Writes `key_i = value_i` for every key through `addr`, pipelined in batches, retrying
    /// (through any running server) the writes that did not get `+OK`.
    pub fn write_many(&mut self, addr: &str, pairs: &[(String, String)]) {
        let mut failed = Vec::new();
        for batch in pairs.chunks(64) {
            let commands: Vec<Vec<String>> = batch.iter().map(|(k, v)| vec!["SET".to_string(), k.clone(), v.clone()]).collect();
            match Conn::open(addr).and_then(|mut c| c.pipeline(&commands)) {
                Ok(replies) => failed.extend(batch.iter().zip(replies).filter(|(_, r)| !is_ok(r)).map(|(p, _)| p.clone())),
                Err(_) => failed.extend(batch.iter().cloned()),
            }
        }
        for (k, v) in failed {
            self.set_retry(&k, &v, DEADLINE);
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for s in &mut self.servers {
            s.kill();
        }
        if std::thread::panicking() {
            for s in &self.servers {
                let text = s.log_text();
                let lines: Vec<&str> = text.lines().collect();
                eprintln!("---- last lines of node {}'s log ({}):", s.id, s.log.display());
                for l in &lines[lines.len().saturating_sub(40)..] {
                    eprintln!("  {l}");
                }
            }
        }
    }
}
