//! Transport tests over real sockets on 127.0.0.1. Every wait is bounded: a hang fails the test.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use raft_core::{Heartbeat, MessageBody, SnapshotChunk, SnapshotMeta, Term};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc::Receiver;

use super::outbound::Backoff;
use super::*;
use crate::wire::codec;
use crate::wire::frame;
use crate::wire::handshake::{connect_handshake, HandshakeError};

const CLUSTER: u64 = 42;
/// The bound on any single wait; generous, because CI machines stall.
const WAIT: Duration = Duration::from_secs(10);

fn any_local_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn start_with(config: TransportConfig, handshake: HandshakeConfig) -> (TransportHandle, Receiver<Inbound>) {
    Transport::start(config, handshake).expect("start transport")
}

fn start(node: u64) -> (TransportHandle, Receiver<Inbound>) {
    start_with(TransportConfig::new(any_local_port()), HandshakeConfig::new(CLUSTER, NodeId(node)))
}

/// A heartbeat whose read round numbers it, so tests can check order and loss.
fn heartbeat(from: u64, to: u64, round: u64) -> Message {
    Message {
        from: NodeId(from),
        to: NodeId(to),
        term: Term(1),
        body: MessageBody::Heartbeat(Heartbeat { commit: Default::default(), read_round: round }),
    }
}

fn round_of(msg: &Message) -> u64 {
    match &msg.body {
        MessageBody::Heartbeat(h) => h.read_round,
        other => panic!("expected a heartbeat, got {}", other.name()),
    }
}

/// The next message delivered, skipping unreachable reports.
async fn next_message(rx: &mut Receiver<Inbound>) -> Message {
    let wait = async {
        loop {
            match rx.recv().await.expect("transport stopped") {
                Inbound::Message(msg) => return msg,
                Inbound::Unreachable(_) => continue,
            }
        }
    };
    tokio::time::timeout(WAIT, wait).await.expect("no message arrived in time")
}

/// The next unreachable report, skipping messages.
async fn next_unreachable(rx: &mut Receiver<Inbound>) -> NodeId {
    let wait = async {
        loop {
            match rx.recv().await.expect("transport stopped") {
                Inbound::Unreachable(id) => return id,
                Inbound::Message(_) => continue,
            }
        }
    };
    tokio::time::timeout(WAIT, wait).await.expect("no unreachable report in time")
}

fn link(a: &TransportHandle, a_id: u64, b: &TransportHandle, b_id: u64) {
    a.set_peer_addr(NodeId(b_id), b.local_addr().to_string());
    b.set_peer_addr(NodeId(a_id), a.local_addr().to_string());
}

fn peer_stats(t: &TransportHandle, id: u64) -> PeerStats {
    t.stats().peers.get(&NodeId(id)).cloned().expect("peer has stats")
}

/// Reads until the other side closes the connection.
async fn assert_closed_by_peer(stream: &mut TcpStream) {
    let drain = async {
        let mut sink = [0u8; 1024];
        loop {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    };
    tokio::time::timeout(WAIT, drain).await.expect("the transport should have closed the connection");
}

/// A raw connection that has completed the handshake as node `as_node`.
async fn handshaken(addr: SocketAddr, as_node: u64) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    connect_handshake(&mut stream, &HandshakeConfig::new(CLUSTER, NodeId(as_node)), None).await.expect("handshake");
    stream
}

fn framed_message(msg: &Message) -> BytesMut {
    let mut out = BytesMut::new();
    frame::encode_with(&mut out, frame::DEFAULT_MAX_FRAME_LEN, |o| codec::encode_message(msg, o)).unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_transports_exchange_messages_both_ways_in_order() {
    let (a, mut rx_a) = start(1);
    let (b, mut rx_b) = start(2);
    link(&a, 1, &b, 2);

    for round in 0..1000 {
        a.send(heartbeat(1, 2, round));
    }
    for round in 0..1000 {
        assert_eq!(next_message(&mut rx_b).await, heartbeat(1, 2, round));
    }
    b.send(heartbeat(2, 1, 7));
    assert_eq!(next_message(&mut rx_a).await, heartbeat(2, 1, 7));

    let stats = peer_stats(&a, 2);
    assert!(stats.connected, "{stats:?}");
    assert_eq!(stats.connects, 1);
    assert_eq!(stats.messages_dropped, 0);
    assert_eq!(stats.addr, b.local_addr().to_string());
}

#[tokio::test]
async fn large_messages_arrive_and_oversized_ones_are_dropped_and_counted() {
    let mut config = TransportConfig::new(any_local_port());
    config.max_frame_len = 256 * 1024;
    let (a, _rx_a) = start_with(config, HandshakeConfig::new(CLUSTER, NodeId(1)));
    let (b, mut rx_b) = start(2);
    link(&a, 1, &b, 2);

    let chunk = |len: usize| Message {
        from: NodeId(1),
        to: NodeId(2),
        term: Term(1),
        body: MessageBody::InstallSnapshot(Box::new(SnapshotChunk {
            meta: SnapshotMeta { last: Default::default(), membership: raft_core::Membership::new([NodeId(1), NodeId(2)]) },
            offset: 0,
            total_len: len as u64,
            data: Bytes::from(vec![9; len]),
        })),
    };
    a.send(chunk(200 * 1024));
    a.send(chunk(300 * 1024));
    a.send(heartbeat(1, 2, 1));
    assert_eq!(next_message(&mut rx_b).await, chunk(200 * 1024));
    assert_eq!(next_message(&mut rx_b).await, heartbeat(1, 2, 1), "the oversized chunk is skipped, the rest flows");
    assert_eq!(peer_stats(&a, 2).messages_dropped, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_peer_is_reconnected_and_delivery_resumes() {
    let (a, mut rx_a) = start(1);
    let (b, mut rx_b) = start(2);
    link(&a, 1, &b, 2);
    a.send(heartbeat(1, 2, 0));
    assert_eq!(round_of(&next_message(&mut rx_b).await), 0);

    // Node 2 goes away; node 1 notices.
    let b_addr = b.local_addr();
    b.shutdown().await;
    drop((b, rx_b));
    assert_eq!(next_unreachable(&mut rx_a).await, NodeId(2));

    // Node 2 comes back on the same port. Messages sent while the old connection was dying may
    // be lost (Raft retransmits), so keep sending until one arrives, as Raft would.
    let (b2, mut rx_b2) = start_with(TransportConfig::new(b_addr), HandshakeConfig::new(CLUSTER, NodeId(2)));
    let mut first = None;
    for round in 1..=100 {
        a.send(heartbeat(1, 2, round));
        if let Ok(msg) = tokio::time::timeout(Duration::from_millis(200), next_message(&mut rx_b2)).await {
            first = Some(round_of(&msg));
            break;
        }
    }
    let mut last = first.expect("delivery never resumed after the restart");
    // From now on nothing is lost: all later rounds arrive, in order.
    for round in 1000..1100 {
        a.send(heartbeat(1, 2, round));
    }
    while last < 1099 {
        let round = round_of(&next_message(&mut rx_b2).await);
        assert!(round > last, "round {round} after {last}");
        assert!(last < 1000 || round == last + 1, "lost a message between {last} and {round}");
        last = round;
    }
    assert!(peer_stats(&a, 2).connects >= 2);
    b2.send(heartbeat(2, 1, 5));
    b2.set_peer_addr(NodeId(1), a.local_addr().to_string());
    b2.send(heartbeat(2, 1, 6));
    assert_eq!(round_of(&next_message(&mut rx_a).await), 6);
    assert_eq!(b2.stats().dropped_no_peer, 1, "the message sent before node 1 had an address");
}

#[tokio::test]
async fn bad_clients_are_disconnected_while_a_legitimate_peer_is_served() {
    let (server, mut rx) = start(2);
    let (peer, _rx_peer) = start(1);
    peer.set_peer_addr(NodeId(2), server.local_addr().to_string());
    let addr = server.local_addr();
    peer.send(heartbeat(1, 2, 0));
    assert_eq!(round_of(&next_message(&mut rx).await), 0);

    // Not our protocol at all.
    let mut raw = TcpStream::connect(addr).await.unwrap();
    raw.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    assert_closed_by_peer(&mut raw).await;

    // Another cluster.
    let mut raw = TcpStream::connect(addr).await.unwrap();
    match connect_handshake(&mut raw, &HandshakeConfig::new(99, NodeId(3)), Some(NodeId(2))).await {
        Err(HandshakeError::RefusedByPeer { reason }) => assert_eq!(reason, "cluster id mismatch: expected 42, got 99"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_closed_by_peer(&mut raw).await;

    // After a good handshake: a header announcing 4 GiB.
    let mut raw = handshaken(addr, 3).await;
    raw.write_all(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]).await.unwrap();
    assert_closed_by_peer(&mut raw).await;

    // After a good handshake: a corrupted frame.
    let mut raw = handshaken(addr, 3).await;
    let mut corrupt = framed_message(&heartbeat(3, 2, 99));
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0x40;
    raw.write_all(&corrupt).await.unwrap();
    assert_closed_by_peer(&mut raw).await;

    // After a good handshake: a sound frame that holds no message.
    let mut raw = handshaken(addr, 3).await;
    let mut junk = BytesMut::new();
    frame::encode(b"\x01\xff\xff\xff", frame::DEFAULT_MAX_FRAME_LEN, &mut junk).unwrap();
    raw.write_all(&junk).await.unwrap();
    assert_closed_by_peer(&mut raw).await;

    // After a good handshake as node 3: a message claiming to be from node 1, or for node 4, is
    // dropped; node 3's own message on the same connection still arrives, and it is the first.
    let mut raw = handshaken(addr, 3).await;
    let mut out = framed_message(&heartbeat(1, 2, 66));
    out.put(framed_message(&heartbeat(3, 4, 77)));
    out.put(framed_message(&heartbeat(3, 2, 88)));
    raw.write_all(&out).await.unwrap();
    assert_eq!(next_message(&mut rx).await, heartbeat(3, 2, 88));

    // A connection cut in the middle of a frame.
    let mut raw = handshaken(addr, 3).await;
    raw.write_all(&framed_message(&heartbeat(3, 2, 1))[..10]).await.unwrap();
    drop(raw);

    // The legitimate peer never noticed.
    peer.send(heartbeat(1, 2, 1));
    assert_eq!(next_message(&mut rx).await, heartbeat(1, 2, 1));
    assert_eq!(peer_stats(&peer, 2).connects, 1);
}

#[tokio::test]
async fn the_send_queue_is_bounded_and_overflow_is_counted() {
    // A listener that never accepts: the TCP connection opens, the handshake hangs.
    let black_hole = tokio::net::TcpListener::bind(any_local_port()).await.unwrap();
    let mut config = TransportConfig::new(any_local_port());
    config.send_queue_len = 8;
    let (a, _rx) = start_with(config, HandshakeConfig::new(CLUSTER, NodeId(1)));
    a.set_peer_addr(NodeId(2), black_hole.local_addr().unwrap().to_string());

    for round in 0..100 {
        a.send(heartbeat(1, 2, round));
    }
    let stats = peer_stats(&a, 2);
    // 8 queued, and at most one more already taken off the queue by the connecting task.
    assert!((91..=92).contains(&stats.messages_dropped), "{stats:?}");
    assert_eq!(stats.messages_sent, 0);
    assert!(!stats.connected);
}

#[tokio::test]
async fn an_unreachable_peer_is_reported_and_recovers_when_its_address_is_fixed() {
    // A port nobody listens on.
    let dead = std::net::TcpListener::bind(any_local_port()).unwrap().local_addr().unwrap();
    let mut config = TransportConfig::new(any_local_port());
    config.send_queue_len = 4;
    let (a, mut rx_a) = start_with(config, HandshakeConfig::new(CLUSTER, NodeId(1)));
    a.set_peer_addr(NodeId(2), dead.to_string());

    a.send(heartbeat(1, 2, 0));
    assert_eq!(next_unreachable(&mut rx_a).await, NodeId(2));
    let stats = peer_stats(&a, 2);
    assert!(!stats.connected);
    assert!(stats.last_error.as_deref().is_some_and(|e| e.starts_with(&format!("connect to {dead}"))), "{stats:?}");

    let dropped_before = stats.messages_dropped;
    for round in 1..=20 {
        a.send(heartbeat(1, 2, round));
    }
    assert!(peer_stats(&a, 2).messages_dropped >= dropped_before + 15, "{:?}", peer_stats(&a, 2));

    // The right address wakes the sender from its backoff; what it holds is delivered: the
    // message it took off the queue before failing, then the four the queue kept.
    let (b, mut rx_b) = start(2);
    a.set_peer_addr(NodeId(2), b.local_addr().to_string());
    let mut got = Vec::new();
    for _ in 0..5 {
        got.push(round_of(&next_message(&mut rx_b).await));
    }
    assert_eq!(got, [0, 1, 2, 3, 4]);
    a.send(heartbeat(1, 2, 500));
    assert_eq!(round_of(&next_message(&mut rx_b).await), 500);
    assert!(peer_stats(&a, 2).connected);
}

#[tokio::test]
async fn reaching_the_wrong_node_is_an_unreachable_peer() {
    let (a, mut rx_a) = start(1);
    let (b, _rx_b) = start(2);
    // Node 1 believes node 3 lives at node 2's address.
    a.set_peer_addr(NodeId(3), b.local_addr().to_string());
    a.send(heartbeat(1, 3, 0));
    assert_eq!(next_unreachable(&mut rx_a).await, NodeId(3));
    let error = peer_stats(&a, 3).last_error.unwrap();
    assert!(error.contains("node id mismatch: dialled node 3, reached node 2"), "{error}");
}

#[tokio::test]
async fn with_a_cluster_secret_only_nodes_that_know_it_talk() {
    let with_secret = |node, secret: &str| HandshakeConfig::new(CLUSTER, NodeId(node)).with_secret(secret);
    let (a, _rx_a) = start_with(TransportConfig::new(any_local_port()), with_secret(1, "right secret"));
    let (b, mut rx_b) = start_with(TransportConfig::new(any_local_port()), with_secret(2, "right secret"));
    let (c, mut rx_c) = start_with(TransportConfig::new(any_local_port()), with_secret(3, "wrong secret"));
    a.set_peer_addr(NodeId(2), b.local_addr().to_string());
    c.set_peer_addr(NodeId(2), b.local_addr().to_string());

    c.send(heartbeat(3, 2, 1));
    assert_eq!(next_unreachable(&mut rx_c).await, NodeId(2));
    let stats = peer_stats(&c, 2);
    assert!(stats.last_error.as_deref().is_some_and(|e| e.contains("cluster secret")), "{stats:?}");
    assert_eq!((stats.connects, stats.messages_sent), (0, 0), "nothing is written without a handshake");

    a.send(heartbeat(1, 2, 2));
    assert_eq!(next_message(&mut rx_b).await, heartbeat(1, 2, 2));
}

#[tokio::test]
async fn messages_without_a_peer_are_counted_and_removed_peers_are_forgotten() {
    let (a, _rx_a) = start(1);
    let (b, mut rx_b) = start(2);
    a.send(heartbeat(1, 2, 0));
    assert_eq!(a.stats().dropped_no_peer, 1);

    a.set_peer_addr(NodeId(1), "127.0.0.1:1".to_string());
    assert!(!a.stats().peers.contains_key(&NodeId(1)), "this node's own address is ignored");

    a.set_peer_addr(NodeId(2), b.local_addr().to_string());
    a.send(heartbeat(1, 2, 1));
    assert_eq!(next_message(&mut rx_b).await, heartbeat(1, 2, 1));

    a.remove_peer(NodeId(2));
    assert!(a.stats().peers.is_empty());
    a.send(heartbeat(1, 2, 2));
    assert_eq!(a.stats().dropped_no_peer, 2);

    a.shutdown().await;
    a.set_peer_addr(NodeId(2), b.local_addr().to_string());
    assert!(a.stats().peers.is_empty(), "no peers after shutdown");
}

#[test]
fn start_outside_a_runtime_is_an_error_not_a_panic() {
    let err = Transport::start(TransportConfig::new(any_local_port()), HandshakeConfig::new(CLUSTER, NodeId(1))).unwrap_err();
    assert!(err.to_string().contains("Tokio runtime"), "{err}");
}

#[tokio::test]
async fn start_on_a_busy_port_is_an_error() {
    let (a, _rx) = start(1);
    let err = Transport::start(TransportConfig::new(a.local_addr()), HandshakeConfig::new(CLUSTER, NodeId(2))).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
}

#[test]
fn backoff_doubles_with_jitter_up_to_the_cap_and_resets() {
    let ms = Duration::from_millis;
    let mut backoff = Backoff::new(ms(50), ms(2000));
    let bases = [50, 100, 200, 400, 800, 1600, 2000, 2000, 2000];
    for base in bases {
        let delay = backoff.next_delay();
        assert!(delay >= ms(base) / 2 && delay <= ms(base), "{delay:?} for base {base} ms");
    }
    backoff.reset();
    assert!(backoff.next_delay() <= ms(50));

    // Jitter: a hundred delays from the same base are not all equal.
    let delays: Vec<Duration> = (0..100).map(|_| Backoff::new(ms(1000), ms(1000)).next_delay()).collect();
    assert!(delays.iter().any(|d| *d != delays[0]));
}
