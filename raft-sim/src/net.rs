//! The simulated network between servers: latency with jitter (which reorders), loss,
//! duplication, occasional long delays, and directed links that can be cut (partitions, one-way
//! cuts, isolation, a bridge node).

use std::collections::BTreeSet;

use raft_core::NodeId;
use rand_chacha::ChaCha8Rng;
use rand_core::Rng;

use crate::options::{Options, Ppm, MILLION};

/// Link state between servers.
#[derive(Debug, Default)]
pub(crate) struct SimNetwork {
    /// Directed links that drop everything.
    cut: BTreeSet<(NodeId, NodeId)>,
    /// Message faults are off in the liveness phase.
    pub(crate) calm: bool,
}

/// What happens to one message.
pub(crate) enum Fate {
    Lost,
    /// Delivered after these delays (two for a duplicate).
    Delivered(Vec<u64>),
}

pub(crate) fn chance(rng: &mut ChaCha8Rng, ppm: Ppm) -> bool {
    ppm > 0 && (rng.next_u64() % u64::from(MILLION)) < u64::from(ppm)
}

pub(crate) fn between(rng: &mut ChaCha8Rng, lo: u64, hi: u64) -> u64 {
    if hi <= lo {
        lo
    } else {
        lo + rng.next_u64() % (hi - lo + 1)
    }
}

impl SimNetwork {
    pub(crate) fn is_cut(&self, from: NodeId, to: NodeId) -> bool {
        self.cut.contains(&(from, to))
    }

    /// Decides a message's fate.
    pub(crate) fn fate(&self, rng: &mut ChaCha8Rng, o: &Options, from: NodeId, to: NodeId) -> Fate {
        if self.is_cut(from, to) {
            return Fate::Lost;
        }
        if !self.calm && chance(rng, o.loss_ppm) {
            return Fate::Lost;
        }
        let calm = self.calm;
        let delay = |rng: &mut ChaCha8Rng| {
            let mut d = between(rng, o.latency_min_us, o.latency_max_us);
            if !calm && chance(rng, o.long_delay_ppm) {
                d += between(rng, 0, o.long_delay_ms * 1000);
            }
            d
        };
        let first = delay(rng);
        if !calm && chance(rng, o.dup_ppm) {
            let second = delay(rng);
            return Fate::Delivered(vec![first, second]);
        }
        Fate::Delivered(vec![first])
    }

    /// `side` against the rest of `all`, both ways.
    pub(crate) fn partition(&mut self, side: &[NodeId], all: &[NodeId]) {
        for &a in side {
            for &b in all.iter().filter(|b| !side.contains(b)) {
                self.cut.insert((a, b));
                self.cut.insert((b, a));
            }
        }
    }

    /// Cuts one direction of one link.
    pub(crate) fn cut_one_way(&mut self, from: NodeId, to: NodeId) {
        self.cut.insert((from, to));
    }

    /// `side` against the rest, except that `bridge` keeps its links to everyone.
    pub(crate) fn bridge(&mut self, bridge: NodeId, side: &[NodeId], all: &[NodeId]) {
        self.partition(side, all);
        self.cut.retain(|&(a, b)| a != bridge && b != bridge);
    }

    pub(crate) fn heal(&mut self) {
        self.cut.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bridge_talks_to_both_sides_that_cannot_talk_to_each_other() {
        let all: Vec<NodeId> = (1..=5).map(NodeId).collect();
        let mut net = SimNetwork::default();
        net.bridge(NodeId(3), &[NodeId(1), NodeId(2)], &all);
        assert!(net.is_cut(NodeId(1), NodeId(4)) && net.is_cut(NodeId(5), NodeId(2)));
        assert!(!net.is_cut(NodeId(1), NodeId(3)) && !net.is_cut(NodeId(3), NodeId(5)));
        assert!(!net.is_cut(NodeId(1), NodeId(2)));
        net.heal();
        assert!(!net.is_cut(NodeId(1), NodeId(4)));
    }
}
