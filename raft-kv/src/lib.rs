//! Key-value state machine (work in progress).
