//! Raft consensus as a pure state machine (work in progress).
#![forbid(unsafe_code)]
#![warn(missing_docs)]
