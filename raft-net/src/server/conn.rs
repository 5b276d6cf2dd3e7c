//! Client connections: RESP2 in, driver requests, RESP2 out. Commands of one read are dispatched
//! together and answered in order (pipelining), so many clients' writes share Readies and fsyncs.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use raft_core::NodeId;
use raft_kv::{Command, CommandError, Reply, Session};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tracing::debug;

use super::app::MemberAddrs;
use super::driver::{AdminOp, AdminReply, KvResult, Request, ServerError};
use super::reply::request;
use crate::wire::{CommandParser, RespLimits, RespValue};

/// Largest bulk string accepted on the client port (values beyond raft-kv's limit are refused
/// with an error by the state machine's validation, without closing the connection).
pub const MAX_BULK_BYTES: usize = 8 << 20;
/// Most commands answered per read (bounds the memory of one pipelined batch).
const MAX_PIPELINE: usize = 4096;

/// How to render a kv reply for the command that asked.
#[derive(Clone, Copy, Debug)]
enum Render {
    Ok,
    Value,
    Values,
    Integer,
    Deleted,
    Exists,
    Registered,
}

enum Pending {
    Now(RespValue),
    Kv(oneshot::Receiver<KvResult>, Render),
    /// DEL of several keys: one write each, the count of those that existed.
    Deletes(Vec<oneshot::Receiver<KvResult>>),
    Admin(oneshot::Receiver<Result<AdminReply, ServerError>>, Vec<Bytes>),
    Quit,
}

fn err(text: impl Into<String>) -> RespValue {
    RespValue::Error(text.into())
}

fn wrong_arity(name: &str) -> RespValue {
    err(format!("ERR wrong number of arguments for '{}' command", name.to_ascii_lowercase()))
}

fn server_error(e: &ServerError, timeout: Duration) -> RespValue {
    match e {
        ServerError::NoLeader => err("CLUSTERDOWN no leader is elected right now; retry shortly"),
        ServerError::Redirect { leader, addr } => err(format!("MOVED {leader} {}", addr.as_deref().unwrap_or("?"))),
        ServerError::Timeout => err(format!("TIMEOUT the outcome is unknown (no commit seen within {}s, or a snapshot replaced the entries): the write may or may not take effect", timeout.as_secs())),
        ServerError::Dropped => err("TRYAGAIN the write was not committed (the leader changed); retry"),
        ServerError::Refused(reason) => err(format!("ERR {reason}")),
        ServerError::Unavailable => err("ERR the server is shutting down"),
    }
}

fn command_error(e: &CommandError) -> RespValue {
    match e {
        CommandError::NotAnInteger => err("ERR value is not an integer or out of range"),
        CommandError::IntegerOverflow => err("ERR increment or decrement would overflow"),
        other => err(format!("ERR {other}")),
    }
}

fn render(reply: Reply, how: Render) -> RespValue {
    match (reply, how) {
        (Reply::Error(e), _) => command_error(&e),
        (Reply::Ok, _) => RespValue::ok(),
        (Reply::Value(v), Render::Value) => RespValue::BulkString(v.map(Bytes::from)),
        (Reply::Values(vs), Render::Exists) => RespValue::Integer(vs.iter().filter(|v| v.is_some()).count() as i64),
        (Reply::Values(vs), _) => RespValue::Array(Some(vs.into_iter().map(|v| RespValue::BulkString(v.map(Bytes::from))).collect())),
        (Reply::Integer(n), _) => RespValue::Integer(n),
        (Reply::Deleted { existed }, _) => RespValue::Integer(existed as i64),
        (Reply::Registered { client }, _) => RespValue::Integer(client as i64),
        (Reply::CasResult { swapped, .. }, _) => RespValue::Integer(swapped as i64),
        (other, how) => err(format!("ERR internal: unexpected reply {other:?} for {how:?}")),
    }
}

struct Dispatcher<'a> {
    driver: &'a mpsc::Sender<Request>,
    stale_reads: &'a mut bool,
}

impl Dispatcher<'_> {
    async fn send(&self, r: Request) -> bool {
        self.driver.send(r).await.is_ok()
    }

    async fn write(&self, command: Command, session: Option<Session>, how: Render) -> Pending {
        let (tx, rx) = oneshot::channel();
        if !self.send(Request::Write { command, session, reply: tx }).await {
            return Pending::Now(server_error(&ServerError::Unavailable, Duration::ZERO));
        }
        Pending::Kv(rx, how)
    }

    async fn read(&self, command: Command, how: Render) -> Pending {
        let (tx, rx) = oneshot::channel();
        if !self.send(Request::Read { command, stale: *self.stale_reads, reply: tx }).await {
            return Pending::Now(server_error(&ServerError::Unavailable, Duration::ZERO));
        }
        Pending::Kv(rx, how)
    }

    async fn admin(&self, op: AdminOp, args: Vec<Bytes>) -> Pending {
        let (tx, rx) = oneshot::channel();
        if !self.send(Request::Admin { op, reply: tx }).await {
            return Pending::Now(server_error(&ServerError::Unavailable, Duration::ZERO));
        }
        Pending::Admin(rx, args)
    }

    /// Maps one client command to what answers it.
    async fn dispatch(&mut self, args: Vec<Bytes>) -> Pending {
        let name = String::from_utf8_lossy(&args[0]).to_ascii_uppercase();
        let a = &args[1..];
        let v = |i: usize| a[i].to_vec();
        let arity = |ok: bool| if ok { None } else { Some(Pending::Now(wrong_arity(&name))) };
        macro_rules! need {
            ($cond:expr) => {
                if let Some(p) = arity($cond) {
                    return p;
                }
            };
        }
        match name.as_str() {
            "PING" => {
                need!(a.len() <= 1);
                Pending::Now(if a.is_empty() { RespValue::SimpleString("PONG".into()) } else { RespValue::BulkString(Some(a[0].clone())) })
            }
            "ECHO" => {
                need!(a.len() == 1);
                Pending::Now(RespValue::BulkString(Some(a[0].clone())))
            }
            "QUIT" => Pending::Quit,
            "SELECT" => {
                need!(a.len() == 1);
                Pending::Now(if &a[0][..] == b"0" { RespValue::ok() } else { err("ERR DB index is out of range") })
            }
            "READONLY" => {
                *self.stale_reads = true;
                Pending::Now(RespValue::ok())
            }
            "READWRITE" => {
                *self.stale_reads = false;
                Pending::Now(RespValue::ok())
            }
            "GET" => {
                need!(a.len() == 1);
                self.read(Command::Get { key: v(0) }, Render::Value).await
            }
            "MGET" => {
                need!(!a.is_empty());
                self.read(Command::MultiGet { keys: a.iter().map(|k| k.to_vec()).collect() }, Render::Values).await
            }
            "EXISTS" => {
                need!(!a.is_empty());
                self.read(Command::MultiGet { keys: a.iter().map(|k| k.to_vec()).collect() }, Render::Exists).await
            }
            "SET" => {
                need!(a.len() >= 2);
                if a.len() > 2 {
                    return Pending::Now(err("ERR syntax error (SET options are not supported)"));
                }
                self.write(Command::Put { key: v(0), value: v(1) }, None, Render::Ok).await
            }
            "MSET" => {
                need!(!a.is_empty() && a.len() % 2 == 0);
                let pairs = a.chunks(2).map(|p| (p[0].to_vec(), p[1].to_vec())).collect();
                self.write(Command::MultiPut { pairs }, None, Render::Ok).await
            }
            "DEL" => {
                need!(!a.is_empty());
                if a.len() == 1 {
                    return self.write(Command::Delete { key: v(0) }, None, Render::Deleted).await;
                }
                let mut rxs = Vec::new();
                for k in a {
                    let (tx, rx) = oneshot::channel();
                    if !self.send(Request::Write { command: Command::Delete { key: k.to_vec() }, session: None, reply: tx }).await {
                        return Pending::Now(server_error(&ServerError::Unavailable, Duration::ZERO));
                    }
                    rxs.push(rx);
                }
                Pending::Deletes(rxs)
            }
            "INCR" | "DECR" => {
                need!(a.len() == 1);
                let delta = if name == "INCR" { 1 } else { -1 };
                self.write(Command::Increment { key: v(0), delta }, None, Render::Integer).await
            }
            "INCRBY" | "DECRBY" => {
                need!(a.len() == 2);
                let Some(n) = std::str::from_utf8(&a[1]).ok().and_then(|s| s.parse::<i64>().ok()) else {
                    return Pending::Now(err("ERR value is not an integer or out of range"));
                };
                let delta = if name == "INCRBY" { Some(n) } else { n.checked_neg() };
                let Some(delta) = delta else { return Pending::Now(err("ERR decrement would overflow")) };
                self.write(Command::Increment { key: v(0), delta }, None, Render::Integer).await
            }
            "APPEND" => {
                need!(a.len() == 2);
                self.write(Command::Append { key: v(0), value: v(1) }, None, Render::Integer).await
            }
            // Redis tools probe these at start (redis-benchmark asks for `save` and `appendonly`).
            "CONFIG" => {
                let get = a.first().is_some_and(|s| s.eq_ignore_ascii_case(b"GET"));
                let mut items = Vec::new();
                for p in a.iter().skip(1).filter(|_| get) {
                    let value: &'static [u8] = match &p.to_ascii_lowercase()[..] {
                        b"save" => b"",
                        b"appendonly" => b"no",
                        _ => continue,
                    };
                    items.push(RespValue::BulkString(Some(p.clone())));
                    items.push(RespValue::BulkString(Some(Bytes::from_static(value))));
                }
                Pending::Now(RespValue::Array(Some(items)))
            }
            "COMMAND" => Pending::Now(RespValue::Array(Some(vec![]))),
            "CLIENT" => Pending::Now(RespValue::ok()),
            "INFO" => Pending::Now(RespValue::BulkString(Some(Bytes::from_static(b"# Server\r\nredis_version:7.0.0\r\nraftkv:1\r\n")))),
            "RAFT.INFO" => {
                need!(a.is_empty());
                self.admin(AdminOp::Info, args.clone()).await
            }
            "RAFT.NODE" => {
                need!(!a.is_empty());
                let sub = String::from_utf8_lossy(&a[0]).to_ascii_uppercase();
                let id = |i: usize| std::str::from_utf8(&a[i]).ok().and_then(|s| s.parse::<u64>().ok()).filter(|&n| n > 0).map(NodeId);
                match sub.as_str() {
                    "ADD" => {
                        need!(a.len() == 4);
                        let Some(node) = id(1) else { return Pending::Now(err("ERR invalid node id")) };
                        let addrs = MemberAddrs {
                            peer: String::from_utf8_lossy(&a[2]).into_owned(),
                            client: String::from_utf8_lossy(&a[3]).into_owned(),
                        };
                        if !addrs.peer.contains(':') || !addrs.client.contains(':') {
                            return Pending::Now(err("ERR addresses must be HOST:PORT"));
                        }
                        self.admin(AdminOp::Add { id: node, addrs, join: false }, args.clone()).await
                    }
                    "REMOVE" => {
                        need!(a.len() == 2);
                        let Some(node) = id(1) else { return Pending::Now(err("ERR invalid node id")) };
                        self.admin(AdminOp::Remove(node), args.clone()).await
                    }
                    _ => Pending::Now(err(format!(
                        "ERR unknown subcommand '{}' for 'raft.node' (ADD or REMOVE)",
                        String::from_utf8_lossy(&a[0])
                    ))),
                }
            }
            "RAFT.JOIN" => {
                need!(a.len() == 3);
                let Some(node) = std::str::from_utf8(&a[0]).ok().and_then(|s| s.parse::<u64>().ok()).filter(|&n| n > 0).map(NodeId) else {
                    return Pending::Now(err("ERR invalid node id"));
                };
                let addrs =
                    MemberAddrs { peer: String::from_utf8_lossy(&a[1]).into_owned(), client: String::from_utf8_lossy(&a[2]).into_owned() };
                self.admin(AdminOp::Add { id: node, addrs, join: true }, args.clone()).await
            }
            "RAFT.TRANSFER_LEADER" => {
                need!(a.len() == 1);
                let Some(node) = std::str::from_utf8(&a[0]).ok().and_then(|s| s.parse::<u64>().ok()).filter(|&n| n > 0).map(NodeId) else {
                    return Pending::Now(err("ERR invalid node id"));
                };
                self.admin(AdminOp::Transfer(node), args.clone()).await
            }
            "RAFT.SESSION" => {
                need!(a.is_empty());
                self.write(Command::RegisterSession, None, Render::Registered).await
            }
            "RAFT.SEQ" => {
                // RAFT.SEQ <client> <seq> <command> [args...]: a write in a client session.
                need!(a.len() >= 3);
                let num = |i: usize| std::str::from_utf8(&a[i]).ok().and_then(|s| s.parse::<u64>().ok());
                let (Some(client), Some(seq)) = (num(0), num(1)) else {
                    return Pending::Now(err("ERR invalid client id or sequence number"));
                };
                let session = Some(Session { client, seq });
                let inner = String::from_utf8_lossy(&a[2]).to_ascii_uppercase();
                let b = &a[3..];
                let w = |i: usize| b[i].to_vec();
                let (command, how) = match (inner.as_str(), b.len()) {
                    ("SET", 2) => (Command::Put { key: w(0), value: w(1) }, Render::Ok),
                    ("DEL", 1) => (Command::Delete { key: w(0) }, Render::Deleted),
                    ("INCR", 1) => (Command::Increment { key: w(0), delta: 1 }, Render::Integer),
                    ("APPEND", 2) => (Command::Append { key: w(0), value: w(1) }, Render::Integer),
                    ("MSET", n) if n >= 2 && n % 2 == 0 => {
                        (Command::MultiPut { pairs: b.chunks(2).map(|p| (p[0].to_vec(), p[1].to_vec())).collect() }, Render::Ok)
                    }
                    _ => {
                        return Pending::Now(err(format!(
                            "ERR RAFT.SEQ supports SET, DEL, INCR, APPEND and MSET with their arguments, not '{inner}'"
                        )))
                    }
                };
                self.write(command, session, how).await
            }
            _ => {
                let mut text = format!("ERR unknown command '{}', with args beginning with:", String::from_utf8_lossy(&args[0]));
                for arg in a.iter().take(3) {
                    text.push_str(&format!(" '{}'", String::from_utf8_lossy(arg)));
                }
                Pending::Now(err(text))
            }
        }
    }
}

/// Relays an administrative command to the leader's client port and returns its reply.
async fn relay(addr: &str, args: &[Bytes]) -> RespValue {
    let refs: Vec<&[u8]> = args.iter().map(|a| &a[..]).collect();
    match tokio::time::timeout(Duration::from_secs(10), request(addr, &refs)).await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => err(format!("ERR could not reach the leader at {addr}: {e}")),
        Err(_) => err(format!("ERR the leader at {addr} did not answer in time")),
    }
}

async fn resolve(p: Pending, timeout: Duration) -> Option<RespValue> {
    Some(match p {
        Pending::Now(v) => v,
        Pending::Quit => return None,
        Pending::Kv(rx, how) => match rx.await {
            Ok(Ok(reply)) => render(reply, how),
            Ok(Err(e)) => server_error(&e, timeout),
            Err(_) => server_error(&ServerError::Unavailable, timeout),
        },
        Pending::Deletes(rxs) => {
            let mut deleted = 0;
            for rx in rxs {
                match rx.await {
                    Ok(Ok(Reply::Deleted { existed })) => deleted += existed as i64,
                    Ok(Ok(Reply::Error(e))) => return Some(command_error(&e)),
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Some(server_error(&e, timeout)),
                    Err(_) => return Some(server_error(&ServerError::Unavailable, timeout)),
                }
            }
            RespValue::Integer(deleted)
        }
        Pending::Admin(rx, args) => match rx.await {
            Ok(Ok(AdminReply::Ok)) => RespValue::ok(),
            Ok(Ok(AdminReply::Info(text))) => RespValue::BulkString(Some(Bytes::from(text))),
            Ok(Ok(AdminReply::Joined { cluster_id, members })) => {
                let mut items = vec![RespValue::Integer(cluster_id as i64)];
                for (id, a) in members {
                    items.push(RespValue::BulkString(Some(Bytes::from(format!("{id}={}={}", a.peer, a.client)))));
                }
                RespValue::Array(Some(items))
            }
            // Membership changes run on the leader: relay the command there.
            Ok(Err(ServerError::Redirect { addr: Some(addr), .. })) => relay(&addr, &args).await,
            Ok(Err(e)) => server_error(&e, timeout),
            Err(_) => server_error(&ServerError::Unavailable, timeout),
        },
    })
}

/// Serves one client connection until it closes.
pub(crate) async fn serve(mut stream: TcpStream, driver: mpsc::Sender<Request>, timeout: Duration) {
    let peer = stream.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    let _ = stream.set_nodelay(true);
    let mut parser = CommandParser::new(RespLimits { max_bulk_len: MAX_BULK_BYTES, ..RespLimits::default() });
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let mut out = BytesMut::with_capacity(16 * 1024);
    let mut stale_reads = false;
    loop {
        match stream.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let mut pending = Vec::new();
        let mut protocol_error = None;
        while pending.len() < MAX_PIPELINE {
            match parser.parse(&mut buf) {
                Ok(Some(args)) if args.is_empty() => {}
                Ok(Some(args)) => {
                    let mut d = Dispatcher { driver: &driver, stale_reads: &mut stale_reads };
                    pending.push(d.dispatch(args).await);
                }
                Ok(None) => break,
                Err(e) => {
                    protocol_error = Some(e);
                    break;
                }
            }
        }
        let mut quit = false;
        for p in pending {
            match resolve(p, timeout).await {
                Some(v) => v.encode(&mut out),
                None => {
                    RespValue::ok().encode(&mut out);
                    quit = true;
                    break;
                }
            }
        }
        if let Some(e) = &protocol_error {
            debug!("protocol error from {peer}: {e}; closing");
            e.to_reply().encode(&mut out);
        }
        if stream.write_all(&out).await.is_err() {
            return;
        }
        out.clear();
        if quit || protocol_error.is_some() {
            let _ = stream.shutdown().await;
            return;
        }
    }
}
