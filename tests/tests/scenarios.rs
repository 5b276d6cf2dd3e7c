//! Scenario tests: stories of what happens to a cluster, on the in-memory test network.
//! Each checks the safety properties after every step that matters (`check_safety`).

use raft_core::testing::Network;
use raft_core::{Config, EntryKind, Message, MessageBody, NodeId, RoleKind, Term};

fn id(n: u64) -> NodeId {
    NodeId(n)
}

/// Delivers messages one at a time until `done` holds (or nothing is left); what is left in
/// flight stays there.
fn deliver_until(net: &mut Network, mut done: impl FnMut(&Network) -> bool) {
    net.process_all();
    for _ in 0..10_000 {
        if done(net) || !net.deliver_one() {
            return;
        }
        net.process_all();
    }
    panic!("condition never reached");
}

/// Delivers only the messages `keep` accepts, dropping the others, until nothing is in flight.
fn deliver_only(net: &mut Network, keep: impl Fn(&Message) -> bool) {
    deliver_transformed(net, |m| keep(&m).then_some(m));
}

/// Delivers every message as `f` rewrites it (`None` drops it), until nothing is in flight.
fn deliver_transformed(net: &mut Network, f: impl Fn(Message) -> Option<Message>) {
    for _ in 0..10_000 {
        let msgs = net.take_in_flight();
        if msgs.is_empty() {
            return;
        }
        for m in msgs.into_iter().filter_map(&f) {
            net.deliver(m);
        }
    }
    panic!("messages kept flowing");
}

/// Ticks everyone until a running node in `among` leads (and is the only leader of the newest
/// term); returns it.
fn await_leader(net: &mut Network, among: &[u64]) -> NodeId {
    for _ in 0..300 {
        net.run_ticks(1);
        net.check_safety();
        if let Some(l) = net.leader() {
            if among.contains(&l.0) {
                return l;
            }
        }
    }
    panic!("no leader among {among:?}");
}

/// The message without the entries of `term` it carries (as if it had carried fewer entries).
fn without_entries_of_term(mut m: Message, term: u64) -> Message {
    if let MessageBody::AppendEntries(a) = &mut m.body {
        if let Some(cut) = a.entries.iter().position(|e| e.term == Term(term)) {
            a.entries.truncate(cut);
        }
    }
    m
}

/// Figure 8 of the Raft paper: an entry from an earlier term that reaches a majority is *not*
/// committed by counting, because a later leader may still overwrite it.
#[test]
fn figure_8_an_old_terms_entry_on_a_majority_is_not_committed_and_may_be_overwritten() {
    let payload = |tag: &str| format!("{tag:<40}"); // one entry per message with 64-byte messages
    let mut net = Network::with_config(5, |c: &mut Config| {
        c.pre_vote = false;
        c.check_quorum = false;
        c.max_bytes_per_msg = 64;
    });

    // (a) S1 leads term 2 and replicates entry A (index 3) to S2 only, then crashes.
    net.elect(id(1));
    assert_eq!(net.node(id(1)).term(), Term(2));
    net.propose(id(1), payload("A")).unwrap();
    deliver_only(&mut net, |m| m.to == id(2) && m.from == id(1));
    net.crash(id(1));

    // (b) S5 wins term 3 with votes from S3, S4 and itself, appends its blank entry at
    //     index 3, and crashes before replicating it.
    net.node_mut(id(5)).campaign();
    deliver_until(&mut net, |n| n.node(id(5)).role() == RoleKind::Leader);
    assert_eq!(net.node(id(5)).term(), Term(3));
    net.drop_all();
    net.crash(id(5));

    // (c) S1 restarts and wins term 4; it brings A to S3 (now on S1, S2, S3: a majority) but
    //     its own term-4 entry reaches nobody.
    net.restart(id(1));
    while !net.node(id(1)).is_leader() {
        net.node_mut(id(1)).campaign();
        deliver_until(&mut net, |n| n.node(id(1)).role() == RoleKind::Leader);
        if !net.node(id(1)).is_leader() {
            net.drop_all();
        }
    }
    assert_eq!(net.node(id(1)).term(), Term(4));
    deliver_transformed(&mut net, |m| Some(without_entries_of_term(m, 4)));
    for n in [1, 2, 3] {
        assert_eq!(net.node(id(n)).term_at(raft_core::LogIndex(3)), Some(Term(2)), "S{n} holds A");
    }
    assert_eq!(net.node(id(1)).commit_index(), raft_core::LogIndex(2), "A is on a majority but not committed (§5.4.2)");
    net.check_safety();

    // (d) S1 crashes; S5 restarts and wins term 5 (its last entry, term 3, beats A's term 2)
    //     and overwrites A everywhere. That is safe precisely because A was never committed.
    net.crash(id(1));
    net.restart(id(5));
    while !net.node(id(5)).is_leader() {
        net.node_mut(id(5)).campaign();
        deliver_until(&mut net, |n| n.node(id(5)).role() == RoleKind::Leader);
    }
    net.deliver_all();
    net.check_safety();
    for n in [2, 3, 4, 5] {
        assert_eq!(net.node(id(n)).term_at(raft_core::LogIndex(3)), Some(Term(3)), "S{n}: A was overwritten");
        assert!(!net.applied_data(id(n)).iter().any(|d| d.starts_with(b"A ")), "A was never applied");
    }
    // S1 comes back and converges too.
    net.restart(id(1));
    net.run_ticks(3);
    net.check_safety();
    assert_eq!(net.node(id(1)).last_entry(), net.node(id(5)).last_entry());
}

/// A leader cut off with a minority keeps accepting proposals that can never commit; the
/// majority elects a new leader and moves on; when the partition heals the old leader steps
/// down, its uncommitted entries are replaced, and it reports them dropped.
#[test]
fn a_leader_partitioned_away_steps_down_and_its_uncommitted_entries_are_dropped_on_rejoin() {
    let mut net = Network::new(5);
    net.elect(id(1));
    for k in 0..3 {
        net.propose(id(1), format!("x{k}")).unwrap();
    }
    net.deliver_all();

    net.partition(&[1, 2], &[3, 4, 5]);
    for k in 0..2 {
        net.propose(id(1), format!("lost{k}")).unwrap();
    }
    net.deliver_all();
    let new_leader = await_leader(&mut net, &[3, 4, 5]);
    net.run_ticks(10); // one CheckQuorum period
    assert_ne!(net.node(id(1)).role(), RoleKind::Leader, "CheckQuorum: the cut-off leader stepped down");
    for k in 0..3 {
        net.propose(new_leader, format!("y{k}")).unwrap();
    }
    net.deliver_all();

    net.heal();
    net.run_ticks(5);
    net.check_safety();
    let expected: Vec<Vec<u8>> = ["x0", "x1", "x2", "y0", "y1", "y2"].iter().map(|s| s.as_bytes().to_vec()).collect();
    for n in 1..=5 {
        assert_eq!(net.applied_data(id(n)), expected, "node {n}");
    }
    let dropped = &net.member(id(1)).dropped;
    assert!(dropped.iter().any(|d| !d.may_have_committed && d.last >= d.first), "the old leader reports its lost proposals: {dropped:?}");
}

/// With five voters, any two may be down and the other three still elect a leader and commit;
/// when the two return they catch up.
#[test]
fn five_voters_keep_committing_with_any_two_down() {
    for a in 1..=5u64 {
        for b in a + 1..=5 {
            let mut net = Network::new(5);
            net.elect(id(1));
            net.crash(id(a));
            net.crash(id(b));
            let up: Vec<u64> = (1..=5).filter(|n| *n != a && *n != b).collect();
            let leader = if net.leader().is_some_and(|l| net.is_up(l)) { net.leader().unwrap() } else { await_leader(&mut net, &up) };
            net.propose(leader, "w").unwrap();
            net.deliver_all();
            for &n in &up {
                assert_eq!(net.applied_data(id(n)), [b"w".to_vec()], "down {a},{b}: node {n}");
            }
            net.restart(id(a));
            net.restart(id(b));
            net.run_ticks(3);
            net.check_safety();
            for n in [a, b] {
                assert_eq!(net.applied_data(id(n)), [b"w".to_vec()], "node {n} caught up after restart");
            }
        }
    }
}

/// Every message duplicated and the order reversed, every round: the logs still agree and each
/// proposal is applied once, in order.
#[test]
fn duplicated_and_reordered_messages_never_break_agreement() {
    let mut net = Network::new(3);
    net.elect(id(2));
    for k in 0..20 {
        net.propose(id(2), format!("{k}")).unwrap();
        net.duplicate_all();
        net.reverse_in_flight();
        while net.deliver_one() {
            net.check_safety();
        }
        net.deliver_all();
    }
    let expected: Vec<Vec<u8>> = (0..20).map(|k| format!("{k}").into_bytes()).collect();
    for n in 1..=3 {
        assert_eq!(net.applied_data(id(n)), expected);
    }
}

/// A leader that can still send but no longer hears anyone (a one-way cut) steps down after
/// an election timeout, and the others elect a new leader: the cluster stays available.
#[test]
fn a_leader_that_can_send_but_not_hear_steps_down_and_the_cluster_moves_on() {
    let mut net = Network::new(3);
    net.elect(id(1));
    net.cut_one_way(2, 1);
    net.cut_one_way(3, 1);
    let new_leader = await_leader(&mut net, &[2, 3]);
    net.propose(new_leader, "after").unwrap();
    net.deliver_all();
    assert_eq!(net.applied_data(id(2)), [b"after".to_vec()]);
    net.check_safety();
}

/// A node that crashes and restarts over and over while the leader keeps writing never applies
/// anything twice or out of order, and ends with every entry.
#[test]
fn a_follower_crashing_repeatedly_converges_without_applying_twice() {
    let mut net = Network::new(3);
    net.elect(id(1));
    for k in 0..30 {
        net.propose(id(1), format!("{k}")).unwrap();
        if k % 3 == 0 {
            net.crash(id(3));
        }
        net.deliver_all();
        if k % 3 == 2 {
            net.restart(id(3));
        }
        net.check_safety();
    }
    if !net.is_up(id(3)) {
        net.restart(id(3));
    }
    net.run_ticks(3);
    let applied = net.applied_data(id(3));
    assert_eq!(applied.len(), 30);
    assert!(net.member(id(3)).applied.windows(2).all(|w| w[0].index < w[1].index));
    assert!(net.member(id(3)).applied.iter().filter(|e| e.kind == EntryKind::Normal).count() == 30);
}

/// Story: a follower 300 entries behind catches up through a network that delivers every batch
/// of messages in reverse order, with one entry per message and a window of 256 messages. Each
/// reversed batch breaks the stream (the follower rejects appends whose predecessor has not
/// arrived yet), and every break used to refill a full window, whose stale replies broke it
/// again: a storm that grows without bound. The leader now halves its window when the stream
/// breaks and widens it again with each acknowledgement, so the catch-up costs a bounded number
/// of messages.
#[test]
fn a_follower_catches_up_through_a_reordering_network_without_a_message_storm() {
    let mut net = Network::with_config(3, |c| {
        c.max_bytes_per_msg = 64;
        c.max_inflight_msgs = 256;
    });
    net.elect(id(1));
    net.isolate(3);
    for k in 0..300 {
        net.propose(id(1), format!("{k:03}")).unwrap();
    }
    net.deliver_all();
    net.heal();
    let before = net.delivered_count("AppendEntries");
    for _ in 0..5_000 {
        if net.applied_data(id(3)).len() == 300 {
            break;
        }
        net.tick(id(1));
        let mut batch = net.take_in_flight();
        batch.reverse();
        for m in batch {
            net.deliver(m);
        }
        net.check_safety();
    }
    assert_eq!(net.applied_data(id(3)), net.applied_data(id(1)), "the follower caught up");
    let sent = net.delivered_count("AppendEntries") - before;
    assert!(sent < 10 * 300, "{sent} AppendEntries delivered to catch up on 300 entries");
}
