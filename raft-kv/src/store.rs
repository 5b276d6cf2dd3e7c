//! The replicated key-value state machine.

use bytes::{Bytes, BytesMut};

use crate::command::{decode_request, ClientId, Command, Reply, Request, Session};
use crate::error::{CommandError, DecodeError};
use crate::limits::Limits;
use crate::session::{Admission, SessionState, SessionTable};
use crate::snapshot::{self, Parts};

/// The key-value map: ordered, so iteration and snapshots are deterministic. A persistent
/// B-tree of reference-counted keys and values: a clone takes constant time and shares
/// everything until either copy changes, so a driver can clone the store and encode a snapshot
/// of it on another thread while it keeps applying entries.
pub(crate) type Map = imbl::OrdMap<Bytes, Bytes>;

/// The outcome of applying one committed log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The reply to send to the client that proposed the entry (if it is still waiting).
    pub reply: Reply,
    /// The request's session, if it carried one, so a driver can match the reply to a pending
    /// client request. `None` for no-op and malformed entries.
    pub session: Option<Session>,
    /// `true` if the entry was a retry of an already applied request: `reply` is the stored
    /// reply and the entry had no effect on the map.
    pub duplicate: bool,
}

impl Applied {
    fn fresh(reply: Reply, session: Option<Session>) -> Self {
        Applied { reply, session, duplicate: false }
    }
}

/// The key-value state machine: an ordered map of byte strings plus the client session table.
///
/// It is pure and deterministic: the same entries applied in the same order give the same state
/// and the same replies on every replica, byte for byte. See the [crate docs](crate) for how a
/// driver uses it.
///
/// Cloning is cheap whatever the size of the map (a persistent B-tree of reference-counted
/// keys and values; only the session table, bounded by [`Limits::max_sessions`], is copied):
/// a driver that must not stall can clone the store and call [`KvStore::snapshot`] on the
/// clone from another thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvStore {
    limits: Limits,
    map: Map,
    sessions: SessionTable,
    /// The index of the last entry applied (or restored); 0 before any.
    applied_index: u64,
    /// The log clock: the largest `time_ms` of any request applied so far.
    clock_ms: u64,
}

impl KvStore {
    /// Creates an empty store.
    ///
    /// # Panics
    ///
    /// If `limits.max_sessions` is 0.
    pub fn new(limits: Limits) -> Self {
        limits.assert_valid();
        KvStore { limits, map: Map::new(), sessions: SessionTable::default(), applied_index: 0, clock_ms: 0 }
    }

    // ---- Inputs -------------------------------------------------------------------------

    /// Applies the data of the committed log entry at `index`.
    ///
    /// Empty `data` is a no-op entry (e.g. a new leader's blank entry): it only advances the
    /// applied index and replies [`Reply::Ok`]. Data that does not decode as a [`Request`]
    /// yields [`CommandError::Malformed`] on every replica alike and also advances the applied
    /// index. Indices may skip numbers (entries that are not for the state machine, such as
    /// membership changes, need not be passed), but must strictly increase.
    ///
    /// A write with a session is applied at most once: see the [crate docs](crate#sessions)
    /// for the rules. Cost: O(log n) per key written, plus O(log n) per session expired.
    ///
    /// # Panics
    ///
    /// If `index` is not greater than [`applied_index`](Self::applied_index).
    pub fn apply(&mut self, index: u64, data: &[u8]) -> Applied {
        assert!(index > self.applied_index, "entry {index} applied after entry {}", self.applied_index);
        self.applied_index = index;
        if data.is_empty() {
            return Applied::fresh(Reply::Ok, None);
        }
        match decode_request(data) {
            Ok(request) => self.apply_request(index, request),
            Err(error) => Applied::fresh(Reply::Error(error.into()), None),
        }
    }

    /// Restores a store from a [`snapshot`](Self::snapshot), possibly taken on another replica.
    ///
    /// `limits` apply from now on; they should be the ones the snapshot was taken under. If
    /// the snapshot holds more than `limits.max_sessions` sessions, the least recently active
    /// are evicted, as registration would.
    ///
    /// # Errors
    ///
    /// A [`DecodeError`] if `data` is truncated, of another format version, has trailing
    /// bytes, or is otherwise not a valid snapshot (including keys or sessions out of order).
    /// Never panics on bad input.
    ///
    /// # Panics
    ///
    /// If `limits.max_sessions` is 0.
    pub fn restore(data: &[u8], limits: Limits) -> Result<KvStore, DecodeError> {
        limits.assert_valid();
        let Parts { applied_index, clock_ms, map, mut sessions } = snapshot::decode(data)?;
        sessions.shrink_to(limits.max_sessions);
        let store = KvStore { limits, map, sessions, applied_index, clock_ms };
        store.check_invariants();
        Ok(store)
    }

    // ---- Reads and outputs ---------------------------------------------------------------

    /// Serves a read-only command (`Get`, `MultiGet`) from local state, without the log.
    ///
    /// The result is linearizable only if the driver first obtained a read index from Raft
    /// (ReadIndex, thesis §6.4) and waited until [`applied_index`](Self::applied_index) is at
    /// least that index; otherwise it may be stale. Any other command gets
    /// [`CommandError::NotReadOnly`]; a key over the limit gets [`CommandError::KeyTooLarge`].
    pub fn query(&self, command: &Command) -> Reply {
        if let Err(error) = self.limits.check_command(command) {
            return Reply::Error(error);
        }
        match command {
            Command::Get { key } => Reply::Value(self.map.get(key.as_slice()).map(|v| v.to_vec())),
            Command::MultiGet { keys } => Reply::Values(keys.iter().map(|key| self.map.get(key.as_slice()).map(|v| v.to_vec())).collect()),
            _ => Reply::Error(CommandError::NotReadOnly),
        }
    }

    /// Checks the stateless rules (key and value sizes, sequence number not 0) that applying
    /// the request would check, so a server can reject it before proposing it.
    ///
    /// Passing does not mean the request will succeed: whether its session is still known, its
    /// sequence not stale and an append's result within limits depend on the state when the
    /// entry is applied.
    ///
    /// # Errors
    ///
    /// The [`CommandError`] that applying the request would reply with.
    pub fn validate(&self, request: &Request) -> Result<(), CommandError> {
        self.limits.check_request(request)
    }

    /// Serialises the whole state: map, sessions, applied index and log clock. The encoding is
    /// canonical: replicas in the same state produce identical bytes. See
    /// [`SNAPSHOT_FORMAT_VERSION`](crate::SNAPSHOT_FORMAT_VERSION).
    pub fn snapshot(&self) -> Vec<u8> {
        snapshot::encode(Parts { applied_index: self.applied_index, clock_ms: self.clock_ms, map: &self.map, sessions: &self.sessions })
    }

    // ---- Getters ---------------------------------------------------------------------------

    /// The index of the last entry applied, or of the snapshot restored; 0 initially.
    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }

    /// The log clock in milliseconds: the largest `time_ms` of any request applied.
    pub fn log_clock_ms(&self) -> u64 {
        self.clock_ms
    }

    /// The limits this store enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the map has no keys.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.map.get(key).map(|v| &v[..])
    }

    /// All `(key, value)` pairs in increasing key order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.map.iter().map(|(k, v)| (&k[..], &v[..]))
    }

    /// The session of `client`, if it is open (registered and not expired or evicted).
    pub fn session(&self, client: ClientId) -> Option<&SessionState> {
        self.sessions.get(client)
    }

    /// The number of open sessions.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Asserts the store's internal invariants: the session indexes agree, there are at most
    /// `max_sessions` sessions, every client id is an applied index and no session was active
    /// after the log clock. O(n): meant for tests and simulators, after every event.
    ///
    /// # Panics
    ///
    /// If an invariant does not hold (a bug in this crate).
    pub fn check_invariants(&self) {
        self.sessions.check_invariants(self.clock_ms, self.limits.max_sessions);
        for (client, _) in self.sessions.iter() {
            assert!(client >= 1, "client id 0 is not a log index");
            assert!(client <= self.applied_index, "client id from the future");
        }
    }

    // ---- Applying ----------------------------------------------------------------------------

    fn apply_request(&mut self, index: u64, request: Request) -> Applied {
        let Request { session, time_ms, command } = request;
        // The log clock is the largest leader timestamp seen, so it never moves back even when
        // a new leader's clock lags the old one's. Expiring before admission makes expiry a
        // function of the log alone: every replica expires the same sessions at the same entry.
        self.clock_ms = self.clock_ms.max(time_ms);
        self.sessions.expire(self.clock_ms, self.limits.session_ttl_ms);

        if command.is_read_only() {
            // A read through the log needs no session and changes nothing.
            return Applied::fresh(self.query(&command), session);
        }
        if matches!(command, Command::RegisterSession) {
            // The client id is this entry's index: unique, and the same on every replica.
            self.sessions.register(index, self.clock_ms, self.limits.max_sessions);
            return Applied::fresh(Reply::Registered { client: index }, session);
        }
        self.apply_write(session, command)
    }

    /// Applies a write under the session rules of thesis §6.3.
    fn apply_write(&mut self, session: Option<Session>, command: Command) -> Applied {
        assert!(command.uses_session());
        let Some(client_session) = session else {
            // No session: applied every time it appears in the log (at-most-once is the
            // client's responsibility).
            return Applied::fresh(self.execute_write(command), None);
        };
        if client_session.seq == 0 {
            return Applied::fresh(Reply::Error(CommandError::ZeroSequence), session);
        }
        // Thesis §6.3: an unknown session is an error, never a fresh apply, so a retry that
        // arrives after its session expired cannot be applied twice.
        match self.sessions.admit(client_session, self.clock_ms) {
            Admission::Unknown => Applied::fresh(Reply::Error(CommandError::SessionExpired), session),
            Admission::Stale { last_applied } => Applied::fresh(Reply::Error(CommandError::StaleSequence { last_applied }), session),
            Admission::Duplicate(reply) => Applied { reply: reply.clone(), session, duplicate: true },
            Admission::New => {
                let reply = self.execute_write(command);
                self.sessions.record(client_session, reply.clone());
                Applied::fresh(reply, session)
            }
        }
    }

    /// Executes a write against the map. Errors are replies, not panics.
    fn execute_write(&mut self, command: Command) -> Reply {
        if let Err(error) = self.limits.check_command(&command) {
            return Reply::Error(error);
        }
        let result = match command {
            Command::Put { key, value } => {
                self.map.insert(key.into(), value.into());
                Ok(Reply::Ok)
            }
            Command::Delete { key } => Ok(Reply::Deleted { existed: self.map.remove(key.as_slice()).is_some() }),
            Command::Append { key, value } => self.append(key, &value),
            Command::Increment { key, delta } => self.increment(key, delta),
            Command::CompareAndSet { key, expected, new } => Ok(self.compare_and_set(key, expected.as_deref(), new)),
            Command::MultiPut { pairs } => {
                // Limits were checked for every pair above, so the batch is all or nothing.
                self.map.extend(pairs.into_iter().map(|(k, v)| (Bytes::from(k), Bytes::from(v))));
                Ok(Reply::Ok)
            }
            Command::Get { .. } | Command::MultiGet { .. } | Command::RegisterSession => {
                unreachable!("reads and registrations are dispatched before writes")
            }
        };
        result.unwrap_or_else(Reply::Error)
    }

    fn append(&mut self, key: Vec<u8>, suffix: &[u8]) -> Result<Reply, CommandError> {
        let current_len = self.map.get(key.as_slice()).map_or(0, Bytes::len);
        let new_len = current_len.saturating_add(suffix.len());
        self.limits.check_value_len(new_len)?;
        // Unless a snapshot being encoded still shares the value, this extends it in place.
        let current = self.map.remove(key.as_slice()).unwrap_or_default();
        let mut value = current.try_into_mut().unwrap_or_else(|shared| BytesMut::from(&shared[..]));
        value.extend_from_slice(suffix);
        assert_eq!(value.len(), new_len);
        self.map.insert(key.into(), value.freeze());
        let len = i64::try_from(new_len).expect("a Vec's length is at most isize::MAX");
        Ok(Reply::Integer(len))
    }

    fn increment(&mut self, key: Vec<u8>, delta: i64) -> Result<Reply, CommandError> {
        let current = match self.map.get(key.as_slice()) {
            None => 0,
            Some(value) => parse_canonical_i64(value).ok_or(CommandError::NotAnInteger)?,
        };
        let new = current.checked_add(delta).ok_or(CommandError::IntegerOverflow)?;
        let text = new.to_string().into_bytes();
        self.limits.check_value_len(text.len())?;
        self.map.insert(key.into(), text.into());
        Ok(Reply::Integer(new))
    }

    fn compare_and_set(&mut self, key: Vec<u8>, expected: Option<&[u8]>, new: Option<Vec<u8>>) -> Reply {
        let current = self.map.get(key.as_slice()).map(|v| &v[..]);
        if current != expected {
            return Reply::CasResult { swapped: false, current: current.map(<[u8]>::to_vec) };
        }
        match new {
            Some(value) => {
                self.map.insert(key.into(), Bytes::copy_from_slice(&value));
                Reply::CasResult { swapped: true, current: Some(value) }
            }
            None => {
                self.map.remove(key.as_slice());
                Reply::CasResult { swapped: true, current: None }
            }
        }
    }
}

/// Parses a decimal `i64` the way Redis does for `INCR`: an optional `-`, then digits with no
/// leading zero (except the number `0` itself), no sign `+`, no spaces, no `-0`.
fn parse_canonical_i64(bytes: &[u8]) -> Option<i64> {
    let digits = bytes.strip_prefix(b"-").unwrap_or(bytes);
    let canonical = match digits {
        [] => false,
        [b'0'] => digits.len() == bytes.len(),
        [first, ..] => *first != b'0' && digits.iter().all(u8::is_ascii_digit),
    };
    if !canonical {
        return None;
    }
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::parse_canonical_i64;

    #[test]
    fn parses_integers_like_redis() {
        let table: &[(&[u8], Option<i64>)] = &[
            (b"0", Some(0)),
            (b"42", Some(42)),
            (b"-42", Some(-42)),
            (b"9223372036854775807", Some(i64::MAX)),
            (b"-9223372036854775808", Some(i64::MIN)),
            (b"9223372036854775808", None),
            (b"", None),
            (b"-", None),
            (b"-0", None),
            (b"007", None),
            (b"+1", None),
            (b" 1", None),
            (b"1 ", None),
            (b"1.5", None),
            (b"abc", None),
        ];
        for &(input, expected) in table {
            assert_eq!(parse_canonical_i64(input), expected, "{:?}", String::from_utf8_lossy(input));
        }
    }
}
