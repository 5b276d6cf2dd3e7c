//! raft-sim (work in progress).
