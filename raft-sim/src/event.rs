//! Virtual time and the event queue, ordered by (time, sequence number): two events at the same
//! time happen in the order they were scheduled, so a run never depends on heap internals.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use raft_core::{Message, NodeId};

use crate::client::{ClientReply, ClientRequest};

/// Something that happens at a virtual time.
#[derive(Debug)]
pub(crate) enum Event {
    /// A node's clock ticks.
    Tick(NodeId),
    /// A message reaches its recipient.
    Deliver(Message),
    /// A client request reaches a server.
    Request { to: NodeId, req: ClientRequest },
    /// A server's answer reaches a client.
    Reply { client: usize, attempt: u64, reply: ClientReply },
    /// An fsync finished: writes up to `upto` are durable.
    SyncDone { node: NodeId, incarnation: u64, upto: u64 },
    /// A client starts its next operation (or its first).
    ClientWake { client: usize },
    /// A client's attempt timed out.
    ClientTimeout { client: usize, attempt: u64 },
    /// A client sends its operation again (after a redirect or a refusal).
    ClientRetry { client: usize, attempt: u64 },
    /// The next fault of the schedule.
    Fault(usize),
    /// The fault phase ends: everything heals and the liveness phase starts.
    EndOfFaults,
}

struct Queued {
    at_us: u64,
    seq: u64,
    event: Event,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        (self.at_us, self.seq) == (other.at_us, other.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Queued {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: BinaryHeap is a max-heap, we want the earliest first.
        (other.at_us, other.seq).cmp(&(self.at_us, self.seq))
    }
}

/// Pending events.
#[derive(Default)]
pub(crate) struct EventQueue {
    heap: BinaryHeap<Queued>,
    next_seq: u64,
}

impl EventQueue {
    pub(crate) fn push(&mut self, at_us: u64, event: Event) {
        self.next_seq += 1;
        self.heap.push(Queued { at_us, seq: self.next_seq, event });
    }

    pub(crate) fn pop(&mut self) -> Option<(u64, Event)> {
        self.heap.pop().map(|q| (q.at_us, q.event))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_come_out_by_time_then_by_scheduling_order() {
        let mut q = EventQueue::default();
        q.push(20, Event::ClientWake { client: 1 });
        q.push(10, Event::ClientWake { client: 2 });
        q.push(20, Event::ClientWake { client: 3 });
        q.push(10, Event::ClientWake { client: 4 });
        let order: Vec<(u64, usize)> = std::iter::from_fn(|| q.pop())
            .map(|(t, e)| match e {
                Event::ClientWake { client } => (t, client),
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(order, [(10, 2), (10, 4), (20, 1), (20, 3)]);
    }
}
