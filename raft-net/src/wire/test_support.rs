//! Messages for the wire tests: one of each kind, and a proptest strategy over all of them.

use bytes::Bytes;
use proptest::prelude::*;
use raft_core::{
    AppendEntries, AppendResponse, Entry, EntryId, EntryKind, ForwardedProposals, Heartbeat, HeartbeatResponse, LogIndex, Membership,
    Message, MessageBody, NodeId, ReadIndexRequest, ReadIndexResponse, SnapshotChunk, SnapshotMeta, SnapshotResponse, Term, VoteRequest,
    VoteResponse,
};

fn eid(term: u64, index: u64) -> EntryId {
    EntryId::new(Term(term), LogIndex(index))
}

/// The index of `body`'s variant in [`MessageBody`]. Exhaustive on purpose: a new variant fails
/// to compile here until [`one_of_each_body`] covers it.
pub(crate) fn body_variant(body: &MessageBody) -> usize {
    match body {
        MessageBody::RequestVote(_) => 0,
        MessageBody::RequestVoteResponse(_) => 1,
        MessageBody::AppendEntries(_) => 2,
        MessageBody::AppendEntriesResponse(_) => 3,
        MessageBody::Heartbeat(_) => 4,
        MessageBody::HeartbeatResponse(_) => 5,
        MessageBody::TimeoutNow => 6,
        MessageBody::ReadIndex(_) => 7,
        MessageBody::ReadIndexResponse(_) => 8,
        MessageBody::Propose(_) => 9,
        MessageBody::InstallSnapshot(_) => 10,
        MessageBody::InstallSnapshotResponse(_) => 11,
    }
}

/// How many variants [`MessageBody`] has.
pub(crate) const BODY_VARIANTS: usize = 12;

/// A message from 1 to 2 in term 5 carrying `body`.
pub(crate) fn msg(body: MessageBody) -> Message {
    Message { from: NodeId(1), to: NodeId(2), term: Term(5), body }
}

/// One message of every body variant (and both shapes of the append response), in variant
/// order.
pub(crate) fn one_of_each_body() -> Vec<Message> {
    let entries = vec![
        Entry { term: Term(4), index: LogIndex(8), kind: EntryKind::Blank, data: Bytes::new() },
        Entry { term: Term(5), index: LogIndex(9), kind: EntryKind::Normal, data: Bytes::from_static(b"set x 1") },
        Entry {
            term: Term(5),
            index: LogIndex(10),
            kind: EntryKind::Membership,
            data: Membership::new([NodeId(1), NodeId(2)]).encode(b""),
        },
    ];
    let bodies = vec![
        MessageBody::RequestVote(VoteRequest { pre_vote: true, last_log: eid(4, 7), leadership_transfer: false }),
        MessageBody::RequestVoteResponse(VoteResponse { pre_vote: false, granted: true }),
        MessageBody::AppendEntries(AppendEntries { prev_log: eid(4, 7), entries, leader_commit: LogIndex(6) }),
        MessageBody::AppendEntriesResponse(AppendResponse::Accepted { match_index: LogIndex(10) }),
        MessageBody::AppendEntriesResponse(AppendResponse::Rejected { rejected: LogIndex(7), hint: eid(3, 5) }),
        MessageBody::Heartbeat(Heartbeat { commit: LogIndex(6), read_round: 17 }),
        MessageBody::HeartbeatResponse(HeartbeatResponse { read_round: 17 }),
        MessageBody::TimeoutNow,
        MessageBody::ReadIndex(ReadIndexRequest { ctx: u64::MAX }),
        MessageBody::ReadIndexResponse(ReadIndexResponse { ctx: 3, index: LogIndex(10) }),
        MessageBody::Propose(ForwardedProposals { data: vec![Bytes::from_static(b"a"), Bytes::new(), Bytes::from(vec![0xff; 300])] }),
        MessageBody::InstallSnapshot(Box::new(SnapshotChunk {
            meta: SnapshotMeta { last: eid(4, 10), membership: Membership::new([NodeId(1), NodeId(2), NodeId(3)]) },
            offset: 4096,
            total_len: 10_000,
            data: Bytes::from(vec![7; 1000]),
        })),
        MessageBody::InstallSnapshotResponse(SnapshotResponse { snapshot: eid(4, 10), next_offset: 5096, done: false }),
    ];
    let msgs: Vec<Message> = bodies.into_iter().map(msg).collect();
    let mut covered = [false; BODY_VARIANTS];
    for m in &msgs {
        covered[body_variant(&m.body)] = true;
    }
    assert!(covered.iter().all(|&c| c), "one_of_each_body misses a variant: {covered:?}");
    msgs
}

fn arb_eid() -> impl Strategy<Value = EntryId> {
    (any::<u64>(), any::<u64>()).prop_map(|(t, i)| eid(t, i))
}

fn arb_bytes(max: usize) -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

fn arb_entry() -> impl Strategy<Value = Entry> {
    (any::<u64>(), any::<u64>(), prop_oneof![Just(EntryKind::Blank), Just(EntryKind::Normal), Just(EntryKind::Membership)], arb_bytes(64))
        .prop_map(|(t, i, kind, data)| Entry { term: Term(t), index: LogIndex(i), kind, data })
}

fn arb_membership() -> impl Strategy<Value = Membership> {
    proptest::collection::vec(1u64..10, 1..5).prop_map(|ids| Membership::new(ids.into_iter().map(NodeId)))
}

fn arb_body() -> impl Strategy<Value = MessageBody> {
    prop_oneof![
        (any::<bool>(), arb_eid(), any::<bool>()).prop_map(|(pre_vote, last_log, leadership_transfer)| MessageBody::RequestVote(
            VoteRequest { pre_vote, last_log, leadership_transfer }
        )),
        (any::<bool>(), any::<bool>()).prop_map(|(pre_vote, granted)| MessageBody::RequestVoteResponse(VoteResponse { pre_vote, granted })),
        (arb_eid(), proptest::collection::vec(arb_entry(), 0..4), any::<u64>()).prop_map(|(prev_log, entries, c)| {
            MessageBody::AppendEntries(AppendEntries { prev_log, entries, leader_commit: LogIndex(c) })
        }),
        any::<u64>().prop_map(|i| MessageBody::AppendEntriesResponse(AppendResponse::Accepted { match_index: LogIndex(i) })),
        (any::<u64>(), arb_eid())
            .prop_map(|(r, hint)| MessageBody::AppendEntriesResponse(AppendResponse::Rejected { rejected: LogIndex(r), hint })),
        (any::<u64>(), any::<u64>()).prop_map(|(c, read_round)| MessageBody::Heartbeat(Heartbeat { commit: LogIndex(c), read_round })),
        any::<u64>().prop_map(|read_round| MessageBody::HeartbeatResponse(HeartbeatResponse { read_round })),
        Just(MessageBody::TimeoutNow),
        any::<u64>().prop_map(|ctx| MessageBody::ReadIndex(ReadIndexRequest { ctx })),
        (any::<u64>(), any::<u64>()).prop_map(|(ctx, i)| MessageBody::ReadIndexResponse(ReadIndexResponse { ctx, index: LogIndex(i) })),
        proptest::collection::vec(arb_bytes(32), 0..4).prop_map(|data| MessageBody::Propose(ForwardedProposals { data })),
        (arb_eid(), arb_membership(), any::<u64>(), any::<u64>(), arb_bytes(128)).prop_map(
            |(last, membership, offset, total_len, data)| {
                MessageBody::InstallSnapshot(Box::new(SnapshotChunk { meta: SnapshotMeta { last, membership }, offset, total_len, data }))
            }
        ),
        (arb_eid(), any::<u64>(), any::<bool>()).prop_map(|(snapshot, next_offset, done)| MessageBody::InstallSnapshotResponse(
            SnapshotResponse { snapshot, next_offset, done }
        )),
    ]
}

/// Any valid message: non-zero node ids, any term, any body.
pub(crate) fn arb_message() -> impl Strategy<Value = Message> {
    (1u64.., 1u64.., any::<u64>(), arb_body()).prop_map(|(from, to, term, body)| Message {
        from: NodeId(from),
        to: NodeId(to),
        term: Term(term),
        body,
    })
}
