//! The node checked against the paper, sentence by sentence (§5.1-§5.4.2), plus PreVote,
//! CheckQuorum, leader transfer, ReadIndex, proposals and restart. Each test is named for the
//! rule it checks.

use bytes::Bytes;

use crate::testing::Network;
use crate::*;

fn id(n: u64) -> NodeId {
    NodeId(n)
}

/// A node of a new cluster of `n` voters whose first Ready was persisted.
fn new_node(me: u64, n: u64, adjust: impl Fn(&mut Config)) -> Node {
    let mut config = Config::new(id(me));
    adjust(&mut config);
    let mut node = Node::new(config, Bootstrap::NewCluster { voters: (1..=n).map(NodeId).collect() }).unwrap();
    drain(&mut node);
    node
}

fn no_pre_vote(c: &mut Config) {
    c.pre_vote = false;
}

/// Handles Readies synchronously until there are none; returns the messages sent.
fn drain(node: &mut Node) -> Vec<Message> {
    let mut out = Vec::new();
    while node.has_ready() {
        let rd = node.ready();
        out.extend(rd.messages.iter().cloned());
        node.on_persisted(rd.number);
    }
    node.check_invariants();
    out
}

fn msg(from: u64, to: u64, term: u64, body: MessageBody) -> Message {
    Message { from: id(from), to: id(to), term: Term(term), body }
}

fn vote_request(last_index: u64, last_term: u64) -> MessageBody {
    MessageBody::RequestVote(VoteRequest {
        pre_vote: false,
        last_log: EntryId::new(Term(last_term), LogIndex(last_index)),
        leadership_transfer: false,
    })
}

fn granted(msgs: &[Message], to: u64) -> Option<bool> {
    msgs.iter().find_map(|m| match m.body {
        MessageBody::RequestVoteResponse(r) if m.to == id(to) => Some(r.granted),
        _ => None,
    })
}

fn ticks_until_role_changes(node: &mut Node) -> u32 {
    let before = node.role();
    for t in 1..=1000 {
        node.tick();
        if node.role() != before {
            return t;
        }
    }
    panic!("the role never changed");
}

mod s5_1_terms {
    use super::*;

    #[test]
    fn a_server_that_sees_a_larger_term_updates_its_term_and_reverts_to_follower() {
        let mut net = Network::new(3);
        net.elect(id(1));
        let mut leader = net.node_mut(id(1));
        leader.step(msg(2, 1, 9, MessageBody::HeartbeatResponse(HeartbeatResponse { read_round: 0 }))).unwrap();
        leader = net.node_mut(id(1));
        assert_eq!((leader.role(), leader.term(), leader.vote()), (RoleKind::Follower, Term(9), None));
    }

    #[test]
    fn a_request_with_a_stale_term_is_rejected_and_answered_with_the_current_term() {
        let mut node = new_node(2, 3, |_| {});
        node.step(msg(1, 2, 5, MessageBody::Heartbeat(Heartbeat { commit: LogIndex(0), read_round: 0 }))).unwrap();
        drain(&mut node);
        node.step(msg(
            3,
            2,
            4,
            MessageBody::AppendEntries(AppendEntries { prev_log: EntryId::ZERO, entries: vec![], leader_commit: LogIndex(0) }),
        ))
        .unwrap();
        let out = drain(&mut node);
        assert_eq!(out.len(), 1, "one reply to the stale leader");
        assert_eq!((out[0].to, out[0].term), (id(3), Term(5)), "the stale leader learns the newer term");
        assert_eq!(node.leader(), Some(id(1)), "the stale message changed nothing");
    }

    #[test]
    fn terms_never_go_back_across_a_restart() {
        let mut net = Network::new(3);
        net.elect(id(1));
        let term = net.node(id(2)).term();
        net.crash(id(2));
        net.restart(id(2));
        assert_eq!(net.node(id(2)).term(), term);
        assert_eq!(net.node(id(2)).role(), RoleKind::Follower, "a restarted node comes back as a follower");
    }
}

mod s5_2_election {
    use super::*;

    #[test]
    fn a_follower_that_hears_nothing_for_an_election_timeout_starts_an_election() {
        let mut node = new_node(1, 3, no_pre_vote);
        ticks_until_role_changes(&mut node);
        assert_eq!(node.role(), RoleKind::Candidate);
        assert_eq!((node.term(), node.vote()), (Term(2), Some(id(1))), "it increments its term and votes for itself");
        let out = drain(&mut node);
        let asked: Vec<NodeId> = out.iter().filter(|m| matches!(m.body, MessageBody::RequestVote(_))).map(|m| m.to).collect();
        assert_eq!(asked, [id(2), id(3)], "it asks every other voter");
    }

    #[test]
    fn election_timeouts_are_drawn_from_t_to_2t_with_the_node_seed() {
        let mut seen = std::collections::BTreeSet::new();
        for seed in 0..40 {
            let mut node = new_node(1, 3, |c| c.seed = seed);
            let t = ticks_until_role_changes(&mut node);
            assert!((10..20).contains(&t), "timeout {t} outside [10, 20)");
            seen.insert(t);
            let mut again = new_node(1, 3, |c| c.seed = seed);
            assert_eq!(ticks_until_role_changes(&mut again), t, "same seed, same timeout");
        }
        assert!(seen.len() >= 5, "timeouts are spread: {seen:?}");
    }

    #[test]
    fn a_candidate_with_votes_from_a_majority_becomes_leader_and_asserts_itself() {
        let mut net = Network::with_config(3, no_pre_vote);
        net.elect(id(1));
        net.run_ticks(1);
        assert_eq!(net.node(id(2)).leader(), Some(id(1)));
        assert_eq!(net.node(id(3)).leader(), Some(id(1)));
        assert!(net.delivered_count("Heartbeat") >= 2, "the leader sends heartbeats");
    }

    #[test]
    fn each_server_votes_for_at_most_one_candidate_per_term_first_come_first_served() {
        let mut node = new_node(3, 3, no_pre_vote);
        node.step(msg(1, 3, 2, vote_request(1, 1))).unwrap();
        node.step(msg(2, 3, 2, vote_request(1, 1))).unwrap();
        let out = drain(&mut node);
        assert_eq!(granted(&out, 1), Some(true));
        assert_eq!(granted(&out, 2), Some(false));
        node.step(msg(1, 3, 2, vote_request(1, 1))).unwrap();
        assert_eq!(granted(&drain(&mut node), 1), Some(true), "a repeated request from the same candidate is granted again");
    }

    #[test]
    fn a_vote_is_sent_only_after_the_term_and_vote_are_durable() {
        let mut node = new_node(2, 3, no_pre_vote);
        node.step(msg(1, 2, 2, vote_request(1, 1))).unwrap();
        let rd = node.ready();
        assert_eq!(rd.hard_state.map(|h| (h.term, h.vote)), Some((Term(2), Some(id(1)))));
        assert!(rd.must_sync);
        assert!(rd.messages.is_empty(), "the vote waits for persistence");
        node.on_persisted(rd.number);
        let rd = node.ready();
        assert_eq!(granted(&rd.messages, 1), Some(true));
    }

    #[test]
    fn a_candidate_counts_its_own_vote_only_once_durable() {
        let mut node = new_node(1, 1, no_pre_vote);
        node.campaign();
        assert_eq!(node.role(), RoleKind::Candidate, "a single voter cannot win before its vote is durable");
        let rd = node.ready();
        node.on_persisted(rd.number);
        assert_eq!(node.role(), RoleKind::Leader);
    }

    #[test]
    fn a_candidate_does_not_lead_before_its_own_term_and_vote_are_durable() {
        // Found by the property tests: a candidate that won on other voters' grants alone led its
        // term before the term was durable, crashed, forgot it, campaigned for the same term again
        // and was granted again (the voters had voted for it in that term): two leaderships of one
        // term with different logs.
        let mut node = new_node(3, 3, no_pre_vote);
        node.campaign();
        let rd = node.ready(); // term 2 and the vote for itself, not yet durable
        assert!(rd.must_sync);
        for voter in [1, 2] {
            node.step(msg(voter, 3, 2, MessageBody::RequestVoteResponse(VoteResponse { pre_vote: false, granted: true }))).unwrap();
        }
        assert_eq!(node.role(), RoleKind::Candidate, "a quorum of others' votes is not enough while its own state is not durable");
        node.on_persisted(rd.number);
        assert_eq!(node.role(), RoleKind::Leader);
    }

    #[test]
    fn a_candidate_that_hears_from_a_leader_of_its_term_returns_to_follower() {
        let mut node = new_node(1, 3, no_pre_vote);
        node.campaign();
        drain(&mut node);
        node.step(msg(2, 1, 2, MessageBody::Heartbeat(Heartbeat { commit: LogIndex(1), read_round: 0 }))).unwrap();
        assert_eq!((node.role(), node.leader()), (RoleKind::Follower, Some(id(2))));
    }

    #[test]
    fn a_split_vote_times_out_and_a_later_term_elects_a_leader() {
        let mut net = Network::with_config(4, no_pre_vote);
        net.node_mut(id(1)).campaign();
        net.node_mut(id(2)).campaign();
        // Node 3 hears node 1 first, node 4 hears node 2 first: 2 votes each, 3 needed.
        let mut msgs = net.take_in_flight();
        msgs.sort_by_key(|m| (m.to, if m.to == id(3) { m.from } else { NodeId(10 - m.from.0) }));
        for m in msgs {
            net.deliver(m);
        }
        net.deliver_all();
        assert_eq!(net.leader(), None, "nobody wins a split vote");
        for _ in 0..100 {
            net.run_ticks(1);
            if net.leader().is_some() {
                break;
            }
        }
        let leader = net.leader().expect("a later election succeeds");
        assert!(net.node(leader).term() > Term(2));
    }
}

mod s5_3_log_replication {
    use super::*;

    #[test]
    fn proposals_between_two_readies_travel_in_one_append_per_follower() {
        let mut net = Network::new(3);
        net.elect(id(1));
        let before = net.delivered_count("AppendEntries");
        for k in 0..10 {
            net.node_mut(id(1)).propose(format!("p{k}")).unwrap();
        }
        net.deliver_all();
        assert_eq!(net.delivered_count("AppendEntries") - before, 2, "one message per follower for ten proposals");
        assert_eq!(net.applied_data(id(3)).len(), 10);
    }

    #[test]
    fn a_follower_rejects_an_append_whose_previous_entry_it_does_not_hold() {
        let mut node = new_node(2, 3, |_| {});
        let append = AppendEntries { prev_log: EntryId::new(Term(2), LogIndex(5)), entries: vec![], leader_commit: LogIndex(0) };
        node.step(msg(1, 2, 2, MessageBody::AppendEntries(append))).unwrap();
        let out = drain(&mut node);
        assert!(matches!(out[0].body, MessageBody::AppendEntriesResponse(AppendResponse::Rejected { rejected: LogIndex(5), .. })));
        assert_eq!(node.last_entry().index, LogIndex(1), "nothing appended");
    }

    #[test]
    fn a_follower_deletes_a_conflicting_entry_and_all_that_follow_it() {
        let e = |i: u64, t: u64| Entry { term: Term(t), index: LogIndex(i), kind: EntryKind::Normal, data: Bytes::new() };
        let mut node = new_node(2, 3, |_| {});
        let first = AppendEntries {
            prev_log: EntryId::new(Term(1), LogIndex(1)),
            entries: vec![e(2, 2), e(3, 2), e(4, 2)],
            leader_commit: LogIndex(1),
        };
        node.step(msg(1, 2, 2, MessageBody::AppendEntries(first))).unwrap();
        drain(&mut node);
        let conflicting =
            AppendEntries { prev_log: EntryId::new(Term(2), LogIndex(2)), entries: vec![e(3, 3)], leader_commit: LogIndex(1) };
        node.step(msg(3, 2, 3, MessageBody::AppendEntries(conflicting))).unwrap();
        let rd = node.ready();
        assert_eq!(rd.truncate_from, Some(LogIndex(3)), "the driver is told to delete from the conflict");
        assert_eq!(rd.entries.iter().map(Entry::id).collect::<Vec<_>>(), [EntryId::new(Term(3), LogIndex(3))]);
        assert_eq!(rd.dropped, [DroppedEntries { term: Term(2), first: LogIndex(3), last: LogIndex(4), may_have_committed: false }]);
        assert_eq!(node.last_entry(), EntryId::new(Term(3), LogIndex(3)));
    }

    #[test]
    fn a_stale_duplicate_or_reordered_append_never_truncates_the_log() {
        let e = |i: u64| Entry { term: Term(2), index: LogIndex(i), kind: EntryKind::Normal, data: Bytes::new() };
        let append = |prev: u64, entries: Vec<Entry>| {
            MessageBody::AppendEntries(AppendEntries {
                prev_log: EntryId::new(Term(if prev == 1 { 1 } else { 2 }), LogIndex(prev)),
                entries,
                leader_commit: LogIndex(1),
            })
        };
        let mut node = new_node(2, 3, |_| {});
        node.step(msg(1, 2, 2, append(1, vec![e(2), e(3), e(4), e(5)]))).unwrap();
        drain(&mut node);
        // An older message, arriving late, carries a prefix of what the log already holds.
        node.step(msg(1, 2, 2, append(1, vec![e(2), e(3)]))).unwrap();
        node.step(msg(1, 2, 2, append(3, vec![]))).unwrap();
        let rd = node.ready();
        assert_eq!(rd.truncate_from, None);
        assert_eq!(node.last_entry().index, LogIndex(5), "newer entries survive stale messages");
        node.on_persisted(rd.number);
    }

    #[test]
    fn an_append_is_acknowledged_only_once_the_entries_are_durable() {
        let e = Entry { term: Term(2), index: LogIndex(2), kind: EntryKind::Normal, data: Bytes::from_static(b"x") };
        let mut node = new_node(2, 3, |_| {});
        let append = AppendEntries { prev_log: EntryId::new(Term(1), LogIndex(1)), entries: vec![e], leader_commit: LogIndex(1) };
        node.step(msg(1, 2, 2, MessageBody::AppendEntries(append.clone()))).unwrap();
        let rd = node.ready();
        assert_eq!(rd.entries.len(), 1);
        assert!(rd.messages.is_empty(), "no acknowledgement before the entry is durable");
        // A duplicate arrives before the first Ready is durable: its answer waits too.
        node.step(msg(1, 2, 2, MessageBody::AppendEntries(append))).unwrap();
        let rd2 = node.ready();
        assert!(rd2.messages.is_empty(), "a duplicate's answer also waits for the earlier Ready");
        node.on_persisted(rd.number);
        let rd3 = node.ready();
        let acks: Vec<_> = rd3.messages.iter().map(|m| m.body.clone()).collect();
        assert_eq!(acks.len(), 2);
        assert!(acks.iter().all(|b| *b == MessageBody::AppendEntriesResponse(AppendResponse::Accepted { match_index: LogIndex(2) })));
    }

    #[test]
    fn a_follower_commits_no_further_than_the_leader_verified() {
        let e = |i: u64| Entry { term: Term(2), index: LogIndex(i), kind: EntryKind::Normal, data: Bytes::new() };
        let mut node = new_node(2, 3, |_| {});
        // The follower holds 2..=4 from an earlier leader's message, but this one verifies only up to 2.
        node.step(msg(
            1,
            2,
            2,
            MessageBody::AppendEntries(AppendEntries {
                prev_log: EntryId::new(Term(1), LogIndex(1)),
                entries: vec![e(2), e(3), e(4)],
                leader_commit: LogIndex(1),
            }),
        ))
        .unwrap();
        drain(&mut node);
        node.step(msg(
            1,
            2,
            2,
            MessageBody::AppendEntries(AppendEntries {
                prev_log: EntryId::new(Term(1), LogIndex(1)),
                entries: vec![e(2)],
                leader_commit: LogIndex(9),
            }),
        ))
        .unwrap();
        assert_eq!(node.commit_index(), LogIndex(2));
    }

    #[test]
    fn a_follower_fifty_entries_behind_with_conflicts_catches_up_in_a_few_probes() {
        let mut net = Network::new(3);
        net.elect(id(3));
        net.isolate(3);
        for k in 0..5 {
            net.propose(id(3), format!("lost{k}")).unwrap();
        }
        // Nodes 1 and 2 elect a leader of their own and commit 55 entries.
        for _ in 0..200 {
            net.run_ticks(1);
            if net.leader().is_some_and(|l| l != id(3) && net.node(l).term() > Term(2)) {
                break;
            }
        }
        let leader = net.leader().filter(|&l| l != id(3)).expect("nodes 1 and 2 elect a leader");
        for k in 0..55 {
            net.propose(leader, format!("kept{k}")).unwrap();
        }
        net.deliver_all();
        let rejections_before = net.delivered_count("AppendRejected");
        net.heal();
        net.run_ticks(3);
        let rejections = net.delivered_count("AppendRejected") - rejections_before;
        assert!(rejections <= 2, "fast backtracking skips whole terms: {rejections} rejections");
        assert_eq!(net.node(id(3)).last_entry(), net.node(leader).last_entry());
        assert_eq!(net.applied_data(id(3)), net.applied_data(leader));
        assert!(net.member(id(3)).dropped.iter().any(|d| d.term == Term(2)), "the lost proposals are reported dropped");
        net.check_safety();
    }

    #[test]
    fn the_leader_keeps_at_most_max_inflight_appends_unanswered() {
        let mut net = Network::with_config(3, |c| {
            c.max_inflight_msgs = 3;
            c.max_bytes_per_msg = 64;
        });
        net.elect(id(1));
        net.drop_all();
        for k in 0..20u8 {
            net.node_mut(id(1)).propose(vec![k; 30]).unwrap();
            net.process(id(1));
        }
        let to_2 = net.in_flight().iter().filter(|m| m.to == id(2) && matches!(m.body, MessageBody::AppendEntries(_))).count();
        assert_eq!(to_2, 3, "the window of 3 fills, then the leader waits");
        net.deliver_all();
        assert_eq!(net.applied_data(id(2)).len(), 20, "acknowledgements reopen the window");
    }

    #[test]
    fn each_append_respects_max_bytes_per_msg() {
        let mut net = Network::with_config(3, |c| c.max_bytes_per_msg = 200);
        net.elect(id(1));
        for k in 0..10u8 {
            net.node_mut(id(1)).propose(vec![k; 60]).unwrap();
        }
        let msgs = net.take_in_flight();
        for m in &msgs {
            if let MessageBody::AppendEntries(a) = &m.body {
                let bytes: u64 = a.entries.iter().map(Entry::size_bytes).sum();
                assert!(bytes <= 200, "append of {bytes} bytes");
                assert!(!a.entries.is_empty());
            }
        }
        assert!(net.node_mut(id(1)).propose(vec![0; 300]).is_err_and(|e| matches!(e, Error::ProposalTooLarge { .. })));
    }

    #[test]
    fn proposals_beyond_max_uncommitted_bytes_are_refused_until_some_commit() {
        let mut net = Network::with_config(3, |c| c.max_uncommitted_bytes = 100);
        net.elect(id(1));
        net.isolate(1);
        net.propose(id(1), vec![0; 60]).unwrap();
        let err = net.propose(id(1), vec![0; 60]).unwrap_err();
        assert_eq!(err, Error::UncommittedLimit { uncommitted: 120, limit: 100 });
        net.heal();
        net.run_ticks(2);
        net.propose(id(1), vec![0; 60]).expect("committing freed the budget");
    }
}

mod s5_4_safety {
    use super::*;

    #[test]
    fn s5_4_1_a_voter_denies_a_candidate_whose_log_is_less_up_to_date() {
        // voter log: index 1 term 1 (bootstrap) + entries of term 2 up to 3
        let e = |i: u64| Entry { term: Term(2), index: LogIndex(i), kind: EntryKind::Normal, data: Bytes::new() };
        // (candidate last index, last term, granted)
        let table = [(3, 2, true), (4, 2, true), (2, 2, false), (9, 1, false), (1, 3, true)];
        for (li, lt, want) in table {
            let mut node = new_node(2, 3, no_pre_vote);
            node.step(msg(
                1,
                2,
                2,
                MessageBody::AppendEntries(AppendEntries {
                    prev_log: EntryId::new(Term(1), LogIndex(1)),
                    entries: vec![e(2), e(3)],
                    leader_commit: LogIndex(1),
                }),
            ))
            .unwrap();
            drain(&mut node);
            for _ in 0..30 {
                node.tick(); // let the lease of leader 1 expire, without campaigning
            }
            let mut node = node;
            node.step(msg(3, 2, 9, vote_request(li, lt))).unwrap();
            let out = drain(&mut node);
            assert_eq!(granted(&out, 3), Some(want), "candidate last ({li}, t{lt})");
        }
    }

    #[test]
    fn s5_4_2_a_new_leader_appends_a_blank_entry_of_its_term() {
        let mut net = Network::new(3);
        net.elect(id(2));
        let last = net.node(id(2)).last_entry();
        assert_eq!(last.term, net.node(id(2)).term());
        assert_eq!(net.node(id(2)).entry(last.index).unwrap().kind, EntryKind::Blank);
        assert_eq!(net.node(id(2)).commit_index(), last.index, "committing it commits everything before");
    }

    #[test]
    fn s5_4_2_a_leader_never_commits_an_older_terms_entry_by_counting_replicas() {
        // Node 1 restarts holding entry 2 of term 2, uncommitted, and becomes leader of term 3.
        let e = |i: u64, t: u64| Entry { term: Term(t), index: LogIndex(i), kind: EntryKind::Normal, data: Bytes::new() };
        let membership = Membership::new([id(1), id(2), id(3)]);
        let first = Entry { term: Term(1), index: LogIndex(1), kind: EntryKind::Membership, data: membership.encode(b"") };
        let state = PersistedState {
            hard_state: HardState { term: Term(2), vote: None, commit: LogIndex(1) },
            entries: vec![first, e(2, 2)],
            ..Default::default()
        };
        let mut config = Config::new(id(1));
        config.pre_vote = false;
        let mut leader = Node::restart(config, state).unwrap();
        leader.campaign();
        drain(&mut leader);
        leader.step(msg(2, 1, 3, MessageBody::RequestVoteResponse(VoteResponse { pre_vote: false, granted: true }))).unwrap();
        drain(&mut leader);
        assert!(leader.is_leader());
        assert_eq!(leader.last_entry(), EntryId::new(Term(3), LogIndex(3)), "its blank entry");
        // Node 2 now holds entry 2 too: a majority has it, but it is of term 2.
        leader.step(msg(2, 1, 3, MessageBody::AppendEntriesResponse(AppendResponse::Accepted { match_index: LogIndex(2) }))).unwrap();
        assert_eq!(leader.commit_index(), LogIndex(1), "Figure 8: an older term's entry is not committed by counting");
        leader.step(msg(2, 1, 3, MessageBody::AppendEntriesResponse(AppendResponse::Accepted { match_index: LogIndex(3) }))).unwrap();
        assert_eq!(leader.commit_index(), LogIndex(3), "it commits with the leader's own entry");
    }

    #[test]
    fn s5_4_2_a_leader_counts_its_own_entries_only_once_durable() {
        let mut leader = new_node(1, 3, no_pre_vote);
        leader.campaign();
        drain(&mut leader);
        leader.step(msg(2, 1, 2, MessageBody::RequestVoteResponse(VoteResponse { pre_vote: false, granted: true }))).unwrap();
        drain(&mut leader);
        let id3 = leader.propose("x").unwrap();
        let Proposed::Appended(entry) = id3 else { panic!("leader appends") };
        let rd = leader.ready(); // entry 3 handed out, not yet durable
        leader.step(msg(2, 1, 2, MessageBody::AppendEntriesResponse(AppendResponse::Accepted { match_index: entry.index }))).unwrap();
        assert!(leader.commit_index() < entry.index, "one replica plus an undurable leader is not a majority");
        leader.on_persisted(rd.number);
        assert_eq!(leader.commit_index(), entry.index);
    }
}

mod pre_vote {
    use super::*;

    #[test]
    fn an_isolated_node_does_not_inflate_its_term() {
        let mut net = Network::new(3);
        net.elect(id(1));
        net.isolate(3);
        let term = net.node(id(3)).term();
        net.run_ticks(100);
        assert_eq!(net.node(id(3)).term(), term, "pre-votes that cannot win change no term");
        net.heal();
        net.run_ticks(5);
        assert_eq!(net.leader(), Some(id(1)), "the returning node does not depose the leader");
    }

    #[test]
    fn a_won_pre_vote_leads_to_a_real_election_in_the_next_term() {
        let mut net = Network::new(3);
        let term = net.node(id(2)).term();
        net.elect(id(2));
        assert_eq!(net.node(id(2)).term(), term.next());
        assert!(net.delivered_count("PreVote") >= 2);
    }
}

mod check_quorum {
    use super::*;

    #[test]
    fn a_leader_that_hears_from_no_quorum_for_an_election_timeout_steps_down() {
        let mut net = Network::new(3);
        net.elect(id(1));
        net.isolate(1);
        net.run_ticks(25);
        assert_ne!(net.node(id(1)).role(), RoleKind::Leader);
    }

    #[test]
    fn a_follower_that_heard_from_its_leader_ignores_vote_requests() {
        let mut net = Network::new(3);
        net.elect(id(1));
        net.run_ticks(1);
        let node = net.node_mut(id(2));
        node.step(msg(3, 2, 10, vote_request(100, 9))).unwrap();
        assert_eq!(node.term(), Term(2), "no term change");
        assert!(drain(node).is_empty(), "no answer");
    }

    #[test]
    fn a_stale_leader_learns_the_new_term_from_a_follower_and_steps_down() {
        let mut net = Network::new(3);
        net.elect(id(1));
        net.isolate(1);
        net.run_ticks(30);
        let new_leader = net.leader().filter(|&l| l != id(1)).expect("the majority elects a new leader");
        net.heal();
        net.run_ticks(2);
        assert_eq!(net.leader(), Some(new_leader));
        assert_eq!(net.node(id(1)).leader(), Some(new_leader));
    }
}

mod leader_transfer {
    use super::*;

    #[test]
    fn transfer_to_an_up_to_date_voter_makes_it_leader_at_once() {
        let mut net = Network::new(3);
        net.elect(id(1));
        net.node_mut(id(1)).transfer_leadership(id(3)).unwrap();
        net.deliver_all();
        assert_eq!(net.leader(), Some(id(3)));
        assert_eq!(net.delivered_count("PreVote"), 2, "a transfer skips the pre-vote (only the first election used it)");
    }

    #[test]
    fn transfer_to_a_lagging_voter_first_catches_it_up() {
        let mut net = Network::new(3);
        net.elect(id(1));
        net.isolate(3);
        for k in 0..5 {
            net.propose(id(1), format!("{k}")).unwrap();
        }
        net.deliver_all();
        net.heal();
        net.node_mut(id(1)).transfer_leadership(id(3)).unwrap();
        assert!(net.propose(id(1), "during").is_err_and(|e| matches!(e, Error::TransferInProgress { to } if to == id(3))));
        net.run_ticks(2);
        assert_eq!(net.leader(), Some(id(3)));
        assert_eq!(net.applied_data(id(3)).len(), 5);
    }

    #[test]
    fn a_transfer_that_cannot_finish_is_abandoned_after_an_election_timeout() {
        let mut net = Network::new(3);
        net.elect(id(1));
        net.isolate(3);
        net.propose(id(1), "x").unwrap();
        net.deliver_all();
        net.node_mut(id(1)).transfer_leadership(id(3)).unwrap();
        net.run_ticks(10);
        assert_eq!(net.node(id(1)).transfer_target(), None);
        assert!(net.propose(id(1), "after").is_ok(), "proposals are accepted again");
    }

    #[test]
    fn transfer_targets_must_be_other_voters() {
        let mut net = Network::new(3);
        net.elect(id(1));
        assert!(matches!(net.node_mut(id(1)).transfer_leadership(id(1)), Err(Error::InvalidTransferTarget { .. })));
        assert!(matches!(net.node_mut(id(1)).transfer_leadership(id(7)), Err(Error::InvalidTransferTarget { .. })));
        assert!(matches!(net.node_mut(id(2)).transfer_leadership(id(3)), Err(Error::NotLeader { leader_hint: Some(l) }) if l == id(1)));
    }
}

mod read_index {
    use super::*;

    #[test]
    fn a_leader_serves_a_read_once_a_quorum_confirms_its_leadership() {
        let mut net = Network::new(3);
        net.elect(id(1));
        net.propose(id(1), "w").unwrap();
        net.deliver_all();
        net.node_mut(id(1)).read_index(7).unwrap();
        net.process(id(1));
        assert!(net.member(id(1)).read_states.is_empty(), "not before the heartbeat round");
        net.deliver_all();
        let commit = net.node(id(1)).commit_index();
        assert_eq!(net.member(id(1)).read_states, [ReadState { ctx: 7, index: commit }]);
    }

    #[test]
    fn a_partitioned_leader_never_confirms_a_read() {
        let mut net = Network::new(3);
        net.elect(id(1));
        net.isolate(1);
        net.node_mut(id(1)).read_index(1).unwrap();
        net.run_ticks(30);
        assert!(net.member(id(1)).read_states.is_empty());
    }

    #[test]
    fn a_new_leader_delays_reads_until_it_commits_an_entry_of_its_term() {
        let mut leader = new_node(1, 3, no_pre_vote);
        leader.campaign();
        drain(&mut leader);
        leader.step(msg(2, 1, 2, MessageBody::RequestVoteResponse(VoteResponse { pre_vote: false, granted: true }))).unwrap();
        drain(&mut leader);
        leader.read_index(5).unwrap();
        // A bogus echo of a round never issued must not confirm anything.
        leader.step(msg(2, 1, 2, MessageBody::HeartbeatResponse(HeartbeatResponse { read_round: 99 }))).unwrap();
        assert!(leader.ready().read_states.is_empty(), "the blank entry is not committed yet");
        leader.step(msg(2, 1, 2, MessageBody::AppendEntriesResponse(AppendResponse::Accepted { match_index: LogIndex(2) }))).unwrap();
        let out = drain(&mut leader);
        let hb_round = out.iter().find_map(|m| match m.body {
            MessageBody::Heartbeat(h) if m.to == id(2) => Some(h.read_round),
            _ => None,
        });
        let round = hb_round.expect("the read starts a heartbeat round once committed");
        assert!(leader.ready().read_states.is_empty(), "not confirmed before the round is answered");
        leader.step(msg(2, 1, 2, MessageBody::HeartbeatResponse(HeartbeatResponse { read_round: round }))).unwrap();
        assert_eq!(leader.ready().read_states, [ReadState { ctx: 5, index: LogIndex(2) }]);
    }

    #[test]
    fn a_follower_forwards_a_read_to_the_leader_and_gets_the_index() {
        let mut net = Network::new(3);
        net.elect(id(1));
        net.node_mut(id(3)).read_index(42).unwrap();
        net.deliver_all();
        let commit = net.node(id(1)).commit_index();
        assert_eq!(net.member(id(3)).read_states, [ReadState { ctx: 42, index: commit }]);
        let mut lone = new_node(2, 3, |_| {});
        assert_eq!(lone.read_index(1), Err(Error::NotLeader { leader_hint: None }));
    }

    #[test]
    fn a_single_voter_confirms_reads_at_once() {
        let mut net = Network::new(1);
        net.elect(id(1));
        net.node_mut(id(1)).read_index(3).unwrap();
        net.process(id(1));
        assert_eq!(net.member(id(1)).read_states.len(), 1);
    }
}

mod proposals {
    use super::*;

    #[test]
    fn a_follower_forwards_proposals_to_its_leader() {
        let mut net = Network::new(3);
        net.elect(id(1));
        assert_eq!(net.propose(id(2), "fwd"), Ok(Proposed::Forwarded { leader: id(1) }));
        net.deliver_all();
        assert_eq!(net.applied_data(id(2)), [b"fwd".to_vec()]);
    }

    #[test]
    fn without_forwarding_a_follower_refuses_with_the_leader_hint() {
        let mut net = Network::with_config(3, |c| c.forward_proposals = false);
        net.elect(id(1));
        assert_eq!(net.propose(id(2), "x"), Err(Error::NotLeader { leader_hint: Some(id(1)) }));
        let mut lone = new_node(2, 3, |_| {});
        assert_eq!(lone.propose("x"), Err(Error::NotLeader { leader_hint: None }));
    }

    #[test]
    fn a_leader_returns_the_index_and_term_of_the_appended_entry() {
        let mut net = Network::new(3);
        net.elect(id(1));
        let last = net.node(id(1)).last_entry();
        assert_eq!(net.propose(id(1), "a"), Ok(Proposed::Appended(EntryId::new(last.term, last.index.next()))));
    }
}

mod restart {
    use super::*;

    #[test]
    fn a_restarted_node_keeps_its_vote_and_does_not_vote_twice_in_a_term() {
        let mut net = Network::with_config(3, no_pre_vote);
        let node = net.node_mut(id(3));
        node.step(msg(1, 3, 2, vote_request(1, 1))).unwrap();
        net.process(id(3));
        net.drop_all();
        net.crash(id(3));
        net.restart(id(3));
        assert_eq!(net.node(id(3)).vote(), Some(id(1)));
        let node = net.node_mut(id(3));
        node.step(msg(2, 3, 2, vote_request(5, 1))).unwrap();
        assert_eq!(granted(&drain(node), 2), Some(false));
    }

    #[test]
    fn a_restarted_cluster_keeps_every_committed_entry() {
        let mut net = Network::new(3);
        net.elect(id(1));
        for k in 0..10 {
            net.propose(id(1), format!("{k}")).unwrap();
        }
        net.deliver_all();
        let committed = net.applied_data(id(1));
        for n in 1..=3 {
            net.crash(id(n));
        }
        for n in 1..=3 {
            net.restart(id(n));
        }
        assert_eq!(net.applied_data(id(2)), committed, "entries are re-applied from the log after a restart");
        net.run_ticks(40);
        let leader = net.leader().expect("a leader after the restart");
        net.propose(leader, "after").unwrap();
        net.deliver_all();
        assert_eq!(net.applied_data(id(3)).len(), 11);
        net.check_safety();
    }

    #[test]
    fn a_log_ahead_of_the_torn_hard_state_moves_the_node_to_the_log_s_term_without_a_vote() {
        // A crash tore the last write after its entries (term 3) and before its hard state: the
        // durable hard state still says term 2, with a vote for node 2.
        let e = |i: u64, t: u64| Entry { term: Term(t), index: LogIndex(i), kind: EntryKind::Normal, data: Bytes::new() };
        let state = PersistedState {
            hard_state: HardState { term: Term(2), vote: Some(id(2)), commit: LogIndex(1) },
            entries: vec![e(1, 1), e(2, 3)],
            ..Default::default()
        };
        let mut node = Node::restart(Config::new(id(1)), state).expect("a torn hard state is not an inconsistency");
        assert_eq!((node.term(), node.vote()), (Term(3), None));
        let rd = node.ready();
        assert_eq!(rd.hard_state, Some(HardState { term: Term(3), vote: None, commit: LogIndex(1) }), "the new term is persisted");
        assert!(rd.must_sync);
        node.on_persisted(rd.number);
        // A candidate of term 2 (node 2, which had its vote) is refused: the node is in term 3.
        node.step(msg(2, 1, 2, vote_request(9, 2))).unwrap();
        assert_ne!(granted(&drain(&mut node), 2), Some(true));
        assert_eq!((node.term(), node.vote()), (Term(3), None));
        // In term 3 it has cast no vote: a candidate as up to date gets it, and only one does.
        node.step(msg(3, 1, 3, vote_request(2, 3))).unwrap();
        assert_eq!(granted(&drain(&mut node), 3), Some(true));
        node.step(msg(2, 1, 3, vote_request(9, 3))).unwrap();
        assert_eq!(granted(&drain(&mut node), 2), Some(false));
        assert_eq!((node.term(), node.vote()), (Term(3), Some(id(3))));
    }

    #[test]
    fn restart_refuses_inconsistent_state() {
        let e = |i: u64, t: u64| Entry { term: Term(t), index: LogIndex(i), kind: EntryKind::Normal, data: Bytes::new() };
        let state = PersistedState {
            hard_state: HardState { term: Term(3), vote: None, commit: LogIndex(0) },
            entries: vec![e(1, 1), e(3, 1)],
            ..Default::default()
        };
        assert!(matches!(Node::restart(Config::new(id(1)), state), Err(Error::InvalidPersistedState { .. })));
    }
}

mod messages {
    use super::*;

    #[test]
    fn malformed_messages_are_refused_and_change_nothing() {
        let e = |i: u64, t: u64| Entry { term: Term(t), index: LogIndex(i), kind: EntryKind::Normal, data: Bytes::new() };
        let bad = [
            msg(1, 9, 2, MessageBody::TimeoutNow),
            msg(0, 2, 2, MessageBody::TimeoutNow),
            msg(
                1,
                2,
                2,
                MessageBody::AppendEntries(AppendEntries {
                    prev_log: EntryId::new(Term(1), LogIndex(1)),
                    entries: vec![e(3, 2)],
                    leader_commit: LogIndex(0),
                }),
            ),
            msg(
                1,
                2,
                2,
                MessageBody::AppendEntries(AppendEntries {
                    prev_log: EntryId::new(Term(1), LogIndex(1)),
                    entries: vec![e(2, 5)],
                    leader_commit: LogIndex(0),
                }),
            ),
            msg(
                1,
                2,
                2,
                MessageBody::AppendEntries(AppendEntries {
                    prev_log: EntryId::new(Term(1), LogIndex(1)),
                    entries: vec![Entry {
                        term: Term(2),
                        index: LogIndex(2),
                        kind: EntryKind::Membership,
                        data: Bytes::from_static(b"junk"),
                    }],
                    leader_commit: LogIndex(0),
                }),
            ),
        ];
        for m in bad {
            let mut node = new_node(2, 3, |_| {});
            let desc = format!("{m:?}");
            assert!(matches!(node.step(m), Err(Error::InvalidMessage { .. })), "{desc}");
            assert_eq!(node.last_entry().index, LogIndex(1), "{desc}");
            node.check_invariants();
        }
    }
}

#[test]
fn messages_and_entries_stay_small_because_they_are_moved_on_every_hot_path() {
    assert!(std::mem::size_of::<Message>() <= 96, "Message is {} bytes", std::mem::size_of::<Message>());
    assert!(std::mem::size_of::<Entry>() <= 56, "Entry is {} bytes", std::mem::size_of::<Entry>());
}
