//! raft-net: a thin TCP runtime around raft-core (work in progress).

pub mod storage;
pub mod wire;
