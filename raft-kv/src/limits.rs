//! Configurable limits on keys, values and sessions.

use crate::command::{Command, Request};
use crate::error::CommandError;

/// Limits enforced by the state machine.
///
/// Limits are part of the state machine's definition: every replica of a cluster must use the
/// same `Limits`, or replicas could compute different replies for the same log entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The longest key accepted, in bytes (default 1 KiB).
    pub max_key_bytes: usize,
    /// The longest value accepted or produced (by `Append`), in bytes (default 1 MiB).
    pub max_value_bytes: usize,
    /// The most client sessions kept; registering beyond it evicts the least recently active
    /// session (default 10 000). Must be at least 1.
    pub max_sessions: usize,
    /// A session whose last activity is older than the log clock minus this many milliseconds
    /// expires (default one hour, as LogCabin).
    pub session_ttl_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_key_bytes: 1024, max_value_bytes: 1024 * 1024, max_sessions: 10_000, session_ttl_ms: 60 * 60 * 1000 }
    }
}

impl Limits {
    /// Checks the stateless rules of a request: key and value sizes, and a session's sequence
    /// number. Stateful rules (session known, sequence not stale, append result size) are
    /// checked when the entry is applied.
    pub(crate) fn check_request(&self, request: &Request) -> Result<(), CommandError> {
        if let Some(session) = request.session {
            if session.seq == 0 && request.command.uses_session() {
                return Err(CommandError::ZeroSequence);
            }
        }
        self.check_command(&request.command)
    }

    /// Checks the sizes of every key and value a command carries.
    pub(crate) fn check_command(&self, command: &Command) -> Result<(), CommandError> {
        match command {
            Command::Get { key } | Command::Delete { key } | Command::Increment { key, .. } => self.check_key(key),
            Command::MultiGet { keys } => keys.iter().try_for_each(|key| self.check_key(key)),
            Command::Put { key, value } | Command::Append { key, value } => {
                self.check_key(key)?;
                self.check_value(value)
            }
            Command::CompareAndSet { key, expected, new } => {
                self.check_key(key)?;
                expected.iter().try_for_each(|v| self.check_value(v))?;
                new.iter().try_for_each(|v| self.check_value(v))
            }
            Command::MultiPut { pairs } => pairs.iter().try_for_each(|(key, value)| {
                self.check_key(key)?;
                self.check_value(value)
            }),
            Command::RegisterSession => Ok(()),
        }
    }

    pub(crate) fn check_key(&self, key: &[u8]) -> Result<(), CommandError> {
        if key.len() > self.max_key_bytes {
            return Err(CommandError::KeyTooLarge { len: key.len(), max: self.max_key_bytes });
        }
        Ok(())
    }

    pub(crate) fn check_value_len(&self, len: usize) -> Result<(), CommandError> {
        if len > self.max_value_bytes {
            return Err(CommandError::ValueTooLarge { len, max: self.max_value_bytes });
        }
        Ok(())
    }

    fn check_value(&self, value: &[u8]) -> Result<(), CommandError> {
        self.check_value_len(value.len())
    }

    /// Asserts that the limits are usable.
    pub(crate) fn assert_valid(&self) {
        assert!(self.max_sessions >= 1, "Limits::max_sessions must be at least 1");
    }
}
