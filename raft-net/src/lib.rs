//! raft-net (work in progress).
