//! A raftkv client that retries across servers and applies each write exactly once.
//!
//! It opens a session (`RAFT.SESSION`), then sends every write as `RAFT.SEQ <client> <seq> ...`
//! with the next sequence number. When a server fails, times out, or answers that the outcome is
//! unknown, the client resends the *same* sequence number to the next server; the state machine
//! recognises the retry and answers with the stored reply instead of applying it again. Reads are
//! linearizable (ReadIndex) and retried freely.
//!
//! Plain Redis clients get no such guarantee: a write they resend after a timeout is a new write.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::net::TcpStream;

use crate::server::roundtrip;
use crate::wire::RespValue;

/// Why a command finally failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Every attempt failed; the last error is given.
    #[error("no server answered after {attempts} attempts (last: {last})")]
    Exhausted {
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: String,
    },
    /// The command is not one this client knows how to send.
    #[error("{0}")]
    Usage(String),
}

/// Commands that write (sent with the session).
const WRITES: &[&str] = &["SET", "DEL", "INCR", "APPEND", "MSET"];

/// A client of a raftkv cluster.
pub struct Client {
    servers: Vec<String>,
    current: usize,
    conn: Option<(TcpStream, BytesMut)>,
    session: Option<(u64, u64)>,
    timeout: Duration,
    attempts: u32,
}

fn retryable(e: &str) -> bool {
    ["CLUSTERDOWN", "TIMEOUT", "TRYAGAIN", "MOVED", "ERR the server is shutting down", "ERR could not reach the leader"]
        .iter()
        .any(|p| e.starts_with(p))
}

impl Client {
    /// A client of these servers (client addresses, host:port).
    pub fn new(servers: Vec<String>, timeout: Duration) -> Client {
        Client { servers, current: 0, conn: None, session: None, timeout, attempts: 40 }
    }

    async fn roundtrip(&mut self, args: &[&[u8]]) -> Result<RespValue, String> {
        if self.conn.is_none() {
            let addr = &self.servers[self.current % self.servers.len()];
            let stream = tokio::time::timeout(self.timeout, TcpStream::connect(addr))
                .await
                .map_err(|_| format!("connect to {addr} timed out"))?
                .map_err(|e| format!("{addr}: {e}"))?;
            let _ = stream.set_nodelay(true);
            self.conn = Some((stream, BytesMut::with_capacity(4096)));
        }
        let (stream, buf) = self.conn.as_mut().expect("connected");
        match tokio::time::timeout(self.timeout + Duration::from_secs(1), roundtrip(stream, buf, args)).await {
            Ok(r) => r,
            Err(_) => Err("no reply in time".into()),
        }
    }

    /// Sends a command, retrying on the next server until one answers.
    async fn send(&mut self, args: &[&[u8]]) -> Result<RespValue, ClientError> {
        let mut last = String::new();
        for attempt in 0..self.attempts {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis((50 * u64::from(attempt)).min(500))).await;
            }
            match self.roundtrip(args).await {
                Ok(RespValue::Error(e)) if retryable(&e) => last = e,
                Ok(v) => return Ok(v),
                Err(e) => last = e,
            }
            // Try the next server.
            self.conn = None;
            self.current += 1;
        }
        Err(ClientError::Exhausted { attempts: self.attempts, last })
    }

    /// Runs a command (`args[0]` is its name). Writes are applied exactly once.
    pub async fn command(&mut self, args: &[Bytes]) -> Result<RespValue, ClientError> {
        let Some(name) = args.first() else { return Err(ClientError::Usage("no command given".into())) };
        let upper = String::from_utf8_lossy(name).to_ascii_uppercase();
        if !WRITES.contains(&upper.as_str()) {
            let refs: Vec<&[u8]> = args.iter().map(|a| &a[..]).collect();
            return self.send(&refs).await;
        }
        if self.session.is_none() {
            match self.send(&[b"RAFT.SESSION"]).await? {
                RespValue::Integer(client) => self.session = Some((client as u64, 0)),
                other => return Err(ClientError::Exhausted { attempts: 1, last: format!("could not open a session: {other:?}") }),
            }
        }
        let (client, seq) = self.session.expect("opened above");
        let seq = seq + 1;
        self.session = Some((client, seq));
        let (c, s) = (client.to_string(), seq.to_string());
        let mut refs: Vec<&[u8]> = vec![b"RAFT.SEQ", c.as_bytes(), s.as_bytes()];
        refs.extend(args.iter().map(|a| &a[..]));
        self.send(&refs).await
    }
}

/// Formats a reply the way redis-cli does.
pub fn format_reply(v: &RespValue) -> String {
    match v {
        RespValue::SimpleString(s) => s.clone(),
        RespValue::Error(e) => format!("(error) {e}"),
        RespValue::Integer(n) => format!("(integer) {n}"),
        RespValue::BulkString(Some(b)) => format!("\"{}\"", String::from_utf8_lossy(b)),
        RespValue::BulkString(None) | RespValue::Array(None) => "(nil)".into(),
        RespValue::Array(Some(items)) if items.is_empty() => "(empty array)".into(),
        RespValue::Array(Some(items)) => {
            items.iter().enumerate().map(|(i, v)| format!("{}) {}", i + 1, format_reply(v))).collect::<Vec<_>>().join("\n")
        }
    }
}
