//! Snapshots, log compaction and membership changes, told as stories on the in-memory network.

use raft_core::testing::Network;
use raft_core::{ChangeStep, CompactionPolicy, Config, Error, LogIndex, MessageBody, NodeId, RoleKind};

fn id(n: u64) -> NodeId {
    NodeId(n)
}

fn await_leader(net: &mut Network, among: &[u64]) -> NodeId {
    for _ in 0..400 {
        net.run_ticks(1);
        net.check_safety();
        if let Some(l) = net.leader().filter(|l| among.contains(&l.0)) {
            return l;
        }
    }
    panic!("no leader among {among:?}");
}

fn write(net: &mut Network, leader: NodeId, tags: impl IntoIterator<Item = String>) {
    for tag in tags {
        net.propose(leader, tag).unwrap();
        net.deliver_all();
    }
}

fn tags(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|k| format!("{prefix}{k}")).collect()
}

fn small_compaction(c: &mut Config) {
    c.compaction = CompactionPolicy { max_entries: Some(10), max_bytes: None, retain_entries: 0 };
}

// -------------------------------------------------------------------------------------------
// Snapshots and compaction
// -------------------------------------------------------------------------------------------

#[test]
fn memory_stays_bounded_with_the_default_compaction_policy() {
    let mut net = Network::with_config(3, small_compaction);
    net.auto_compact = true;
    net.elect(id(1));
    for k in 0..200 {
        net.propose(id(1), format!("{k}")).unwrap();
        net.deliver_all();
        for n in 1..=3 {
            assert!(net.node(id(n)).resident_entries() <= 12, "node {n} holds {} entries", net.node(id(n)).resident_entries());
        }
    }
    assert_eq!(net.applied_data(id(3)).len(), 200);
}

#[test]
fn a_lagging_follower_catches_up_by_snapshot() {
    let mut net = Network::with_config(3, small_compaction);
    net.auto_compact = true;
    net.elect(id(1));
    net.crash(id(3));
    write(&mut net, id(1), tags("a", 50));
    assert!(net.node(id(1)).first_index() > LogIndex(20), "the leader compacted its log");
    net.restart(id(3));
    net.run_ticks(5);
    assert!(net.delivered_count("InstallSnapshot") >= 1, "the entries it needs are gone: it gets a snapshot");
    assert_eq!(net.applied_data(id(3)), net.applied_data(id(1)));
    write(&mut net, id(1), tags("b", 5));
    assert_eq!(net.applied_data(id(3)), net.applied_data(id(1)), "and replicates normally afterwards");
    net.check_safety();
}

#[test]
fn a_snapshot_sent_in_chunks_survives_lost_chunks() {
    // 64-byte messages, and a state machine snapshot of ~30 entries of 30 bytes: many chunks.
    let mut net = Network::with_config(3, |c| {
        small_compaction(c);
        c.max_bytes_per_msg = 64;
    });
    net.auto_compact = true;
    net.elect(id(1));
    net.isolate(3);
    for k in 0..30 {
        net.propose(id(1), format!("{k:>30}")).unwrap();
        net.deliver_all();
    }
    net.heal();
    // Lose every third snapshot chunk.
    let mut seen = 0;
    for _ in 0..600 {
        net.tick_all();
        for m in net.take_in_flight() {
            if matches!(m.body, MessageBody::InstallSnapshot(_)) {
                seen += 1;
                if seen % 3 == 0 {
                    continue;
                }
            }
            net.deliver(m);
        }
        if net.applied_data(id(3)) == net.applied_data(id(1)) {
            break;
        }
    }
    assert!(seen > 10, "the snapshot went out in many chunks ({seen})");
    assert_eq!(net.applied_data(id(3)), net.applied_data(id(1)), "the transfer resumed after each lost chunk");
    net.check_safety();
}

#[test]
fn a_leader_change_aborts_a_snapshot_transfer_cleanly() {
    let mut net = Network::with_config(3, |c| {
        small_compaction(c);
        c.max_bytes_per_msg = 64;
    });
    net.auto_compact = true;
    net.elect(id(1));
    net.isolate(3);
    write(&mut net, id(1), (0..30).map(|k| format!("{k:>30}")));
    net.heal();
    // A few chunks reach node 3, then leader 1 dies in the middle of the transfer.
    for _ in 0..3 {
        net.tick_all();
        for m in net.take_in_flight() {
            net.deliver(m);
        }
    }
    net.crash(id(1));
    let leader = await_leader(&mut net, &[2, 3]);
    net.run_ticks(40);
    assert_eq!(net.applied_data(id(3)), net.applied_data(leader));
    net.restart(id(1));
    net.run_ticks(5);
    net.check_safety();
}

#[test]
fn restart_from_a_snapshot_plus_the_log_after_it() {
    let mut net = Network::with_config(3, small_compaction);
    net.auto_compact = true;
    net.elect(id(1));
    write(&mut net, id(1), tags("x", 25));
    let before = net.applied_data(id(2));
    assert!(net.member(id(2)).disk.snapshot.is_some());
    for n in 1..=3 {
        net.crash(id(n));
        net.restart(id(n));
    }
    assert_eq!(net.applied_data(id(2)), before);
    let leader = await_leader(&mut net, &[1, 2, 3]);
    write(&mut net, leader, tags("y", 3));
    assert_eq!(net.applied_data(id(2)).len(), 28);
    net.check_safety();
}

#[test]
fn compaction_refuses_an_index_beyond_what_was_applied() {
    let mut net = Network::new(1);
    net.elect(id(1));
    let beyond = net.node(id(1)).applied_index().next();
    let err = net.node_mut(id(1)).compact(raft_core::SnapshotData { index: beyond, data: bytes::Bytes::new() }).unwrap_err();
    assert!(matches!(err, Error::InvalidSnapshot { .. }), "{err}");
}

// -------------------------------------------------------------------------------------------
// Membership changes
// -------------------------------------------------------------------------------------------

#[test]
fn add_a_learner_catch_it_up_and_promote_it() {
    let mut net = Network::new(3);
    net.elect(id(1));
    write(&mut net, id(1), tags("before", 5));
    net.add_joiner(id(4), |_| {});
    net.propose_membership(id(1), &[ChangeStep::AddLearner(id(4))]).unwrap();
    net.deliver_all();
    assert!(net.node(id(4)).is_learner());
    assert_eq!(net.applied_data(id(4)), net.applied_data(id(1)), "the learner receives the log");
    let progress = net.node(id(1)).progress();
    let p4 = progress.iter().find(|p| p.id == id(4)).unwrap();
    assert!(!p4.is_voter && p4.match_index == net.node(id(1)).last_entry().index, "caught up: the driver may promote it");

    net.propose_membership(id(1), &[ChangeStep::PromoteLearner(id(4))]).unwrap();
    net.deliver_all();
    let m = net.node(id(1)).membership().clone();
    assert!(!m.is_joint(), "the joint configuration was left automatically");
    assert_eq!(m.voters(), &[id(1), id(2), id(3), id(4)]);
    // With 4 voters, 3 are needed: two down now blocks commits...
    net.crash(id(2));
    net.crash(id(3));
    net.propose(id(1), "blocked").unwrap();
    net.deliver_all();
    assert!(!net.applied_data(id(4)).contains(&b"blocked".to_vec()));
    // ...and one back unblocks them.
    net.restart(id(2));
    net.run_ticks(3);
    assert!(net.applied_data(id(4)).contains(&b"blocked".to_vec()));
    net.check_safety();
}

#[test]
fn a_learner_never_campaigns_and_does_not_count_for_commits() {
    let mut net = Network::new(3);
    net.elect(id(1));
    net.add_joiner(id(4), |_| {});
    net.propose_membership(id(1), &[ChangeStep::AddLearner(id(4))]).unwrap();
    net.deliver_all();
    net.isolate(4);
    net.run_ticks(60);
    assert_eq!(net.node(id(4)).role(), RoleKind::Follower, "a learner never campaigns");
    net.heal();
    net.crash(id(2));
    net.crash(id(3));
    net.propose(id(1), "x").unwrap();
    net.deliver_all();
    assert!(net.node(id(1)).commit_index() < net.node(id(1)).last_entry().index, "a learner's copy does not make a quorum");
}

#[test]
fn replace_two_of_five_voters_at_once() {
    let mut net = Network::new(5);
    net.elect(id(1));
    write(&mut net, id(1), tags("a", 3));
    for n in [6, 7] {
        net.add_joiner(id(n), |_| {});
    }
    net.propose_membership(id(1), &[ChangeStep::AddLearner(id(6)), ChangeStep::AddLearner(id(7))]).unwrap();
    net.deliver_all();
    net.propose_membership(
        id(1),
        &[ChangeStep::PromoteLearner(id(6)), ChangeStep::PromoteLearner(id(7)), ChangeStep::Remove(id(4)), ChangeStep::Remove(id(5))],
    )
    .unwrap();
    net.deliver_all();
    let m = net.node(id(1)).membership().clone();
    assert_eq!(m.voters(), &[id(1), id(2), id(3), id(6), id(7)]);
    assert!(!m.is_joint());
    net.crash(id(4));
    net.crash(id(5));
    // The new five-voter cluster keeps committing with any two of its voters down.
    let voters = [1u64, 2, 3, 6, 7];
    for (i, &a) in voters.iter().enumerate() {
        for &b in &voters[i + 1..] {
            net.crash(id(a));
            net.crash(id(b));
            let up: Vec<u64> = voters.iter().copied().filter(|&v| v != a && v != b).collect();
            let leader = await_leader(&mut net, &up);
            let tag = format!("w{a}{b}");
            net.propose(leader, tag.clone()).unwrap();
            net.deliver_all();
            for &n in &up {
                assert!(net.applied_data(id(n)).contains(&tag.clone().into_bytes()), "down {a},{b}: node {n}");
            }
            net.restart(id(a));
            net.restart(id(b));
            net.run_ticks(2);
        }
    }
    net.check_safety();
}

#[test]
fn remove_the_leader_it_steps_down_once_the_change_commits() {
    let mut net = Network::new(3);
    net.elect(id(1));
    net.propose_membership(id(1), &[ChangeStep::Remove(id(1))]).unwrap();
    net.deliver_all();
    assert_ne!(net.node(id(1)).role(), RoleKind::Leader, "the removed leader stepped down");
    let leader = await_leader(&mut net, &[2, 3]);
    assert_eq!(net.node(leader).membership().voters(), &[id(2), id(3)]);
    write(&mut net, leader, tags("after", 2));
    assert!(net.applied_data(id(2)).ends_with(&[b"after0".to_vec(), b"after1".to_vec()]));
    // The removed server cannot disrupt the cluster: it never campaigns, terms stay put.
    let term = net.node(leader).term();
    net.run_ticks(60);
    assert_eq!(net.node(leader).term(), term);
    assert_eq!(net.node(id(1)).role(), RoleKind::Follower);
    net.check_safety();
}

#[test]
fn a_removed_server_that_missed_its_removal_cannot_disrupt_the_cluster() {
    let mut net = Network::new(3);
    net.elect(id(1));
    net.isolate(3);
    net.propose_membership(id(1), &[ChangeStep::Remove(id(3))]).unwrap();
    net.deliver_all();
    assert_eq!(net.node(id(1)).membership().voters(), &[id(1), id(2)]);
    // Node 3 never heard of its removal; it keeps trying to get elected, with pre-votes only.
    net.run_ticks(40);
    net.heal();
    let term = net.node(id(1)).term();
    net.run_ticks(60);
    assert_eq!(net.leader(), Some(id(1)));
    assert_eq!(net.node(id(1)).term(), term, "no term inflation from the removed server");
    net.check_safety();
}

#[test]
fn a_second_change_is_refused_while_one_is_in_progress() {
    let mut net = Network::new(3);
    net.elect(id(1));
    net.add_joiner(id(4), |_| {});
    net.isolate(2);
    net.isolate(3);
    let first = net.propose_membership(id(1), &[ChangeStep::AddLearner(id(4))]).unwrap();
    let err = net.propose_membership(id(1), &[ChangeStep::AddLearner(id(5))]).unwrap_err();
    assert_eq!(err, Error::MembershipChangeInProgress { pending_index: first.index });
    assert!(err.to_string().contains("already in progress"));
    let err = net.propose_membership(id(2), &[ChangeStep::AddLearner(id(5))]).unwrap_err();
    assert!(matches!(err, Error::NotLeader { .. }));
}

#[test]
fn a_leader_crashing_in_the_joint_state_the_new_leader_finishes_the_change() {
    let mut net = Network::new(3);
    net.elect(id(1));
    net.add_joiner(id(4), |_| {});
    net.propose_membership(id(1), &[ChangeStep::AddLearner(id(4))]).unwrap();
    net.deliver_all();
    // C(old,new) reaches everyone and commits, but the leader dies before leaving the joint state.
    net.propose_membership(id(1), &[ChangeStep::PromoteLearner(id(4)), ChangeStep::Remove(id(3))]).unwrap();
    let msgs = net.take_in_flight();
    for m in msgs {
        net.deliver(m);
    }
    let joint = net.node(id(2)).membership().clone();
    assert!(joint.is_joint());
    net.drop_all();
    net.crash(id(1));
    let leader = await_leader(&mut net, &[2, 3, 4]);
    net.run_ticks(3);
    let m = net.node(leader).membership().clone();
    assert!(!m.is_joint(), "the new leader left the joint configuration");
    assert_eq!(m.voters(), &[id(1), id(2), id(4)]);
    net.restart(id(1));
    net.run_ticks(5);
    net.check_safety();
}

#[test]
fn a_leader_crashing_before_the_change_reaches_anyone_rolls_it_back() {
    let mut net = Network::new(3);
    net.elect(id(1));
    net.propose_membership(id(1), &[ChangeStep::Remove(id(3))]).unwrap();
    assert!(net.node(id(1)).membership().is_joint(), "in effect on the leader as soon as appended");
    net.drop_all();
    net.crash(id(1));
    let leader = await_leader(&mut net, &[2, 3]);
    assert_eq!(net.node(leader).membership().voters(), &[id(1), id(2), id(3)], "the change never happened");
    // The old leader comes back: its uncommitted change is truncated away and undone.
    net.restart(id(1));
    assert!(net.node(id(1)).membership().is_joint());
    net.run_ticks(5);
    assert_eq!(net.node(id(1)).membership().voters(), &[id(1), id(2), id(3)]);
    assert!(!net.node(id(1)).membership().is_joint(), "a truncated membership entry takes its effect with it");
    net.check_safety();
}

#[test]
fn membership_survives_restart_and_snapshots() {
    let mut net = Network::with_config(3, small_compaction);
    net.auto_compact = true;
    net.elect(id(1));
    net.add_joiner(id(4), small_compaction);
    net.propose_membership(id(1), &[ChangeStep::AddLearner(id(4))]).unwrap();
    net.deliver_all();
    write(&mut net, id(1), tags("fill", 30));
    let snapshot = net.member(id(2)).disk.snapshot.clone().expect("compacted");
    assert!(snapshot.meta.membership.learners().contains(&id(4)), "the snapshot carries the membership");
    net.crash(id(2));
    net.restart(id(2));
    assert!(net.node(id(2)).membership().learners().contains(&id(4)), "restored from the snapshot");
    // A new joiner gets the membership through a snapshot only.
    net.add_joiner(id(5), small_compaction);
    net.propose_membership(id(1), &[ChangeStep::AddLearner(id(5))]).unwrap();
    net.deliver_all();
    net.run_ticks(3);
    assert!(net.node(id(5)).membership().learners().contains(&id(5)));
    assert_eq!(net.applied_data(id(5)), net.applied_data(id(1)));
    net.check_safety();
}

#[test]
fn membership_changes_wait_until_the_leader_committed_in_its_term() {
    let mut net = Network::with_config(3, |c| c.pre_vote = false);
    net.node_mut(id(1)).campaign();
    // Deliver only the election, not the blank entry's acknowledgements.
    for _ in 0..100 {
        if net.node(id(1)).is_leader() {
            break;
        }
        net.deliver_one();
        net.process_all();
    }
    assert!(net.node(id(1)).is_leader());
    net.drop_all();
    assert_eq!(net.propose_membership(id(1), &[ChangeStep::AddLearner(id(4))]), Err(Error::LeaderNotReady));
}

/// Thesis §4.2.2: a leader that removed itself and crashed after the joint configuration
/// committed, but before the new one did, holds the only copy of C(new) a majority of the old
/// voters needs. It must still campaign (without counting its own vote) so the change can
/// commit; found by the property tests.
#[test]
fn a_removed_server_still_campaigns_until_its_removal_commits() {
    let mut net = Network::new(2);
    net.elect(id(2));
    net.propose_membership(id(2), &[ChangeStep::Remove(id(2))]).unwrap();
    // C(old,new) = voters {1}, outgoing {1, 2} reaches node 1 and commits; then the leader appends
    // C(new) = {1} and crashes before node 1 gets it.
    let msgs = net.take_in_flight();
    for m in msgs {
        net.deliver(m);
    }
    net.process_all();
    let to_node_1: Vec<_> = net.take_in_flight();
    for m in to_node_1.into_iter().filter(|m| m.to == id(2)) {
        net.deliver(m);
    }
    assert!(!net.node(id(2)).membership().is_joint(), "node 2 appended C(new) without itself");
    assert!(net.node(id(1)).membership().is_joint(), "node 1 still has only C(old,new)");
    net.drop_all();
    net.crash(id(2));
    net.restart(id(2));
    // Node 1 needs node 2's vote (outgoing half), but node 2's log is longer: only node 2 can win.
    let leader = await_leader(&mut net, &[1, 2]);
    net.run_ticks(30);
    let final_leader = net.leader().expect("a leader once C(new) commits");
    assert_eq!(final_leader, id(1), "the removed server led only until its removal committed (first leader: {leader})");
    assert_eq!(net.node(id(1)).membership().voters(), &[id(1)]);
    assert!(!net.node(id(1)).membership().is_joint());
    net.check_safety();
}

/// With a tail of entries kept behind each snapshot, a follower that is only slightly behind
/// catches up from the log: no snapshot is sent. One further behind than the tail gets one.
#[test]
fn a_follower_slightly_behind_catches_up_from_the_retained_log_without_a_snapshot() {
    let mut net =
        Network::with_config(3, |c| c.compaction = CompactionPolicy { max_entries: Some(10), max_bytes: None, retain_entries: 8 });
    net.auto_compact = true;
    net.elect(id(1));
    write(&mut net, id(1), tags("a", 20));
    net.crash(id(3));
    write(&mut net, id(1), tags("b", 5));
    assert!(net.node(id(1)).snapshot_last().index > net.node(id(1)).first_index(), "the leader keeps entries before its snapshot");
    net.restart(id(3));
    net.run_ticks(5);
    assert_eq!(net.delivered_count("InstallSnapshot"), 0, "five entries behind: the retained log suffices");
    assert_eq!(net.applied_data(id(3)), net.applied_data(id(1)));

    net.crash(id(3));
    write(&mut net, id(1), tags("c", 40));
    net.restart(id(3));
    net.run_ticks(5);
    assert!(net.delivered_count("InstallSnapshot") >= 1, "forty entries behind: beyond the tail, a snapshot");
    assert_eq!(net.applied_data(id(3)), net.applied_data(id(1)));
    net.check_safety();
}
