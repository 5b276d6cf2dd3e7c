//! The client session table: per client, the last sequence number applied and its reply, for
//! exactly-once writes (thesis §6.3), with log-driven expiry and a bound on the number of
//! sessions.

use std::collections::{BTreeMap, BTreeSet};

use crate::command::{ClientId, Reply, Session};

/// What the state machine remembers about one client session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionState {
    pub(crate) last_seq: u64,
    pub(crate) last_reply: Reply,
    pub(crate) last_active_ms: u64,
}

impl SessionState {
    /// The highest sequence number applied for this client (0 right after registration).
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// The reply to the request with sequence number [`last_seq`](Self::last_seq), returned
    /// again to a retry of it. Right after registration, the `Registered` reply.
    pub fn last_reply(&self) -> &Reply {
        &self.last_reply
    }

    /// The log clock (milliseconds) when this session last sent a request that reached the
    /// state machine; the session expires once the log clock passes this plus the TTL.
    pub fn last_active_ms(&self) -> u64 {
        self.last_active_ms
    }
}

/// How a write with a session is to be handled.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Admission<'a> {
    /// The client has no session (never registered, expired or evicted): do not apply.
    Unknown,
    /// The sequence number is older than the last applied: do not apply.
    Stale { last_applied: u64 },
    /// A retry of the last applied request: answer with its stored reply, do not apply.
    Duplicate(&'a Reply),
    /// A new request: apply it, then [`SessionTable::record`] its reply.
    New,
}

/// All sessions, indexed by client and by (last activity, client) so that expiry and eviction of
/// the least recently active sessions cost O(log n) each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SessionTable {
    by_client: BTreeMap<ClientId, SessionState>,
    /// Exactly the pairs `(state.last_active_ms, client)` of `by_client`, ordered by activity
    /// with a deterministic tie-break on client id.
    by_activity: BTreeSet<(u64, ClientId)>,
}

impl SessionTable {
    pub(crate) fn len(&self) -> usize {
        self.by_client.len()
    }

    pub(crate) fn get(&self, client: ClientId) -> Option<&SessionState> {
        self.by_client.get(&client)
    }

    /// Sessions in increasing client order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (ClientId, &SessionState)> + '_ {
        self.by_client.iter().map(|(&client, state)| (client, state))
    }

    /// Opens a session for `client` at `now_ms`, first evicting the least recently active
    /// sessions (ties broken by lowest client id) until there is room. Returns how many were
    /// evicted.
    pub(crate) fn register(&mut self, client: ClientId, now_ms: u64, max_sessions: usize) -> usize {
        assert!(max_sessions >= 1, "max_sessions must be at least 1");
        let mut evicted = 0;
        while self.len() >= max_sessions {
            let (_, oldest) = self.by_activity.pop_first().expect("a non-empty table has a least recently active session");
            self.by_client.remove(&oldest);
            evicted += 1;
        }
        let state = SessionState { last_seq: 0, last_reply: Reply::Registered { client }, last_active_ms: now_ms };
        self.insert(client, state);
        evicted
    }

    /// Inserts a session that must not exist yet (registration or restore).
    pub(crate) fn insert(&mut self, client: ClientId, state: SessionState) {
        let fresh = self.by_activity.insert((state.last_active_ms, client));
        assert!(fresh, "session {client} is already in the activity index");
        let previous = self.by_client.insert(client, state);
        assert!(previous.is_none(), "session {client} registered twice");
    }

    /// Removes every session last active before `now_ms - ttl_ms`. Returns how many expired.
    pub(crate) fn expire(&mut self, now_ms: u64, ttl_ms: u64) -> usize {
        let cutoff_ms = now_ms.saturating_sub(ttl_ms);
        let mut expired = 0;
        while let Some(&(last_active_ms, client)) = self.by_activity.first() {
            if last_active_ms >= cutoff_ms {
                break;
            }
            self.by_activity.pop_first();
            let removed = self.by_client.remove(&client);
            assert!(removed.is_some(), "activity index names a missing session");
            expired += 1;
        }
        expired
    }

    /// Evicts least recently active sessions until at most `max_sessions` remain.
    pub(crate) fn shrink_to(&mut self, max_sessions: usize) {
        while self.len() > max_sessions {
            let (_, oldest) = self.by_activity.pop_first().expect("table is non-empty");
            self.by_client.remove(&oldest);
        }
    }

    /// Decides how to handle a write from `session` and, if the client is known, marks it
    /// active at `now_ms` (a retry or a stale request still shows the client is alive).
    pub(crate) fn admit(&mut self, session: Session, now_ms: u64) -> Admission<'_> {
        assert!(session.seq > 0, "sequence 0 is rejected before admission");
        let Some(state) = self.by_client.get_mut(&session.client) else {
            return Admission::Unknown;
        };
        // The log clock is monotone, so activity never moves back.
        assert!(now_ms >= state.last_active_ms, "log clock moved backwards");
        let moved = self.by_activity.remove(&(state.last_active_ms, session.client));
        assert!(moved, "session {} missing from activity index", session.client);
        state.last_active_ms = now_ms;
        self.by_activity.insert((now_ms, session.client));

        use std::cmp::Ordering;
        match session.seq.cmp(&state.last_seq) {
            Ordering::Less => Admission::Stale { last_applied: state.last_seq },
            Ordering::Equal => Admission::Duplicate(&state.last_reply),
            Ordering::Greater => Admission::New,
        }
    }

    /// Records the reply of a newly applied request that [`admit`](Self::admit) returned
    /// [`Admission::New`] for.
    pub(crate) fn record(&mut self, session: Session, reply: Reply) {
        let state = self.by_client.get_mut(&session.client).expect("record follows a successful admit");
        assert!(session.seq > state.last_seq, "recorded sequence must increase");
        state.last_seq = session.seq;
        state.last_reply = reply;
    }

    /// Asserts that both indexes agree and every session was active no later than `clock_ms`.
    /// O(n): for tests and simulators.
    pub(crate) fn check_invariants(&self, clock_ms: u64, max_sessions: usize) {
        assert_eq!(self.by_client.len(), self.by_activity.len());
        assert!(self.by_client.len() <= max_sessions, "too many sessions");
        for (&client, state) in &self.by_client {
            assert!(self.by_activity.contains(&(state.last_active_ms, client)));
            assert!(state.last_active_ms <= clock_ms, "session active in the future");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(client: ClientId, seq: u64) -> Session {
        Session { client, seq }
    }

    #[test]
    fn admit_classifies_by_sequence() {
        let mut table = SessionTable::default();
        table.register(5, 0, 10);
        assert_eq!(table.admit(session(4, 1), 0), Admission::Unknown);
        assert_eq!(table.admit(session(5, 1), 0), Admission::New);
        table.record(session(5, 1), Reply::Ok);
        assert_eq!(table.admit(session(5, 1), 0), Admission::Duplicate(&Reply::Ok));
        table.record(session(5, 3), Reply::Integer(3));
        assert_eq!(table.admit(session(5, 2), 0), Admission::Stale { last_applied: 3 });
    }

    #[test]
    fn register_evicts_least_recently_active_with_client_id_tie_break() {
        let mut table = SessionTable::default();
        table.register(3, 10, 2);
        table.register(2, 10, 2);
        assert_eq!(table.register(9, 20, 2), 1);
        // 2 and 3 tie at 10 ms; the lower client id goes first.
        assert!(table.get(2).is_none());
        assert!(table.get(3).is_some());
        // Touching 3 makes 9 the least recently active.
        let _ = table.admit(session(3, 1), 30);
        assert_eq!(table.register(11, 30, 2), 1);
        assert!(table.get(9).is_none());
        table.check_invariants(30, 2);
    }

    #[test]
    fn expire_removes_only_sessions_older_than_the_cutoff() {
        let mut table = SessionTable::default();
        table.register(1, 100, 10);
        table.register(2, 200, 10);
        table.register(3, 300, 10);
        // Cutoff 200: 1 is older, 2 is exactly at the cutoff and survives.
        assert_eq!(table.expire(300, 100), 1);
        assert!(table.get(1).is_none());
        assert!(table.get(2).is_some());
        assert_eq!(table.expire(u64::MAX, u64::MAX), 0);
        table.check_invariants(300, 10);
    }
}
