//! Durable log and snapshot files (work in progress).
