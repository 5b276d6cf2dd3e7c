//! The storage thread: the durable log lives on its own OS thread so fsync never blocks the
//! async runtime. It takes every write waiting when it wakes up, writes them all, and makes them
//! durable with **one** fsync (group commit), then tells the driver which Ready is now durable.

use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;

use raft_core::{Ready, ReadyNumber, Snapshot};
use tokio::sync::mpsc;

use crate::storage::DurableLog;

/// A request for the storage thread.
pub(crate) enum StorageOp {
    /// A Ready's persistence part (the other fields are empty).
    Write(Box<Ready>),
    /// A snapshot this server took (durable on return: temp file, fsync, rename).
    SaveSnapshot(Snapshot),
    /// Make everything durable and stop.
    Shutdown,
}

/// What the storage thread reports back.
#[derive(Debug)]
pub(crate) enum StorageEvent {
    /// Every write up to this Ready is durable.
    Persisted(ReadyNumber),
    /// The disk failed: the server must stop (a node that cannot persist must not answer).
    Failed(String),
}

/// Counters for the status page.
#[derive(Debug, Default)]
pub(crate) struct StorageStats {
    pub(crate) fsyncs: std::sync::atomic::AtomicU64,
    pub(crate) writes: std::sync::atomic::AtomicU64,
}

pub(crate) struct StorageThread {
    pub(crate) tx: std_mpsc::Sender<StorageOp>,
    handle: Option<JoinHandle<()>>,
}

impl StorageThread {
    pub(crate) fn start(
        mut log: DurableLog,
        events: mpsc::UnboundedSender<StorageEvent>,
        stats: std::sync::Arc<StorageStats>,
    ) -> StorageThread {
        let (tx, rx) = std_mpsc::channel::<StorageOp>();
        let handle = std::thread::Builder::new()
            .name("raftkv-storage".into())
            .spawn(move || {
                use std::sync::atomic::Ordering::Relaxed;
                while let Ok(first) = rx.recv() {
                    // Everything waiting now shares one fsync.
                    let mut batch = vec![first];
                    batch.extend(rx.try_iter());
                    let mut durable_through = None;
                    let mut need_sync = false;
                    let mut stop = false;
                    let mut result = Ok(());
                    for op in batch {
                        match op {
                            StorageOp::Write(rd) => {
                                stats.writes.fetch_add(1, Relaxed);
                                need_sync |= rd.must_sync;
                                durable_through = Some(rd.number);
                                if let Err(e) = log.persist_ready(&rd) {
                                    result = Err(e.to_string());
                                    break;
                                }
                            }
                            StorageOp::SaveSnapshot(s) => {
                                if let Err(e) = log.save_snapshot(&s) {
                                    result = Err(e.to_string());
                                    break;
                                }
                            }
                            StorageOp::Shutdown => {
                                need_sync = true;
                                stop = true;
                            }
                        }
                    }
                    if result.is_ok() && need_sync {
                        result = log.sync().map_err(|e| e.to_string());
                        stats.fsyncs.fetch_add(1, Relaxed);
                    }
                    match result {
                        Err(e) => {
                            let _ = events.send(StorageEvent::Failed(e));
                            return;
                        }
                        Ok(()) => {
                            if let (true, Some(n)) = (need_sync, durable_through) {
                                if events.send(StorageEvent::Persisted(n)).is_err() {
                                    return;
                                }
                            }
                        }
                    }
                    if stop {
                        return;
                    }
                }
            })
            .expect("spawn the storage thread");
        StorageThread { tx, handle: Some(handle) }
    }

    pub(crate) fn send(&self, op: StorageOp) {
        // If the thread died, its Failed event already reached the driver.
        let _ = self.tx.send(op);
    }

    /// Syncs and joins the thread.
    pub(crate) fn shutdown(&mut self) {
        let _ = self.tx.send(StorageOp::Shutdown);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
