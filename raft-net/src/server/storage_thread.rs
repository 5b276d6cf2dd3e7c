//! The storage thread: the durable log lives on its own OS thread so fsync never blocks the
//! async runtime. It takes every write waiting when it wakes up, writes them all, and makes them
//! durable with **one** fsync (group commit), then tells the driver which Ready is now durable.
//! A snapshot the server took is written by a thread of its own
//! ([`DurableLog::begin_snapshot`]), so the log keeps committing while a file as large as the
//! state machine goes to disk.

use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;

use raft_core::{Ready, ReadyNumber, Snapshot, SnapshotMeta};
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

/// The storage thread's state.
struct Storage {
    log: DurableLog,
    events: mpsc::UnboundedSender<StorageEvent>,
    stats: std::sync::Arc<StorageStats>,
    /// A snapshot file being written by a thread of its own (at most one at a time), so group
    /// commit never waits for a file as large as the state machine.
    snapshot_write: Option<JoinHandle<crate::storage::Result<SnapshotMeta>>>,
}

impl Storage {
    fn run(&mut self, rx: &std_mpsc::Receiver<StorageOp>) {
        use std::sync::atomic::Ordering::Relaxed;
        loop {
            // While a snapshot is being written, wake up now and then to finish it even if no
            // write comes.
            let first = if self.snapshot_write.is_some() {
                match rx.recv_timeout(SNAPSHOT_POLL) {
                    Ok(op) => Some(op),
                    Err(std_mpsc::RecvTimeoutError::Timeout) => None,
                    Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
                }
            } else {
                match rx.recv() {
                    Ok(op) => Some(op),
                    Err(_) => return,
                }
            };
            // Everything waiting now shares one fsync.
            let batch: Vec<StorageOp> = first.into_iter().chain(rx.try_iter()).collect();
            let mut durable_through = None;
            let mut need_sync = false;
            let mut stop = false;
            let mut result = self.maybe_finish_snapshot(false);
            for op in batch {
                if result.is_err() {
                    break;
                }
                match op {
                    StorageOp::Write(rd) => {
                        self.stats.writes.fetch_add(1, Relaxed);
                        need_sync |= rd.must_sync;
                        durable_through = Some(rd.number);
                        if rd.snapshot.is_some() {
                            // A snapshot from the leader replaces the file: never race a write.
                            result = self.maybe_finish_snapshot(true);
                        }
                        if result.is_ok() {
                            result = self.log.persist_ready(&rd).map_err(|e| e.to_string());
                        }
                    }
                    StorageOp::SaveSnapshot(s) => result = self.begin_snapshot(s),
                    StorageOp::Shutdown => {
                        result = self.maybe_finish_snapshot(true);
                        need_sync = true;
                        stop = true;
                    }
                }
            }
            if result.is_ok() && need_sync {
                result = self.log.sync().map_err(|e| e.to_string());
                self.stats.fsyncs.fetch_add(1, Relaxed);
            }
            match result {
                Err(e) => {
                    let _ = self.events.send(StorageEvent::Failed(e));
                    return;
                }
                Ok(()) => {
                    if let (true, Some(n)) = (need_sync, durable_through) {
                        if self.events.send(StorageEvent::Persisted(n)).is_err() {
                            return;
                        }
                    }
                }
            }
            if stop {
                return;
            }
        }
    }

    /// Hands a snapshot this server took to a thread of its own (after the previous one is
    /// finished).
    fn begin_snapshot(&mut self, snapshot: Snapshot) -> Result<(), String> {
        self.maybe_finish_snapshot(true)?;
        let index = snapshot.meta.last.index;
        let write = self.log.begin_snapshot(snapshot).map_err(|e| e.to_string())?;
        let handle = std::thread::Builder::new()
            .name("raftkv-snapshot".into())
            .spawn(move || {
                let started = std::time::Instant::now();
                let result = write.write();
                if result.is_ok() {
                    tracing::info!("snapshot at {index} written in {:.1} ms", started.elapsed().as_secs_f64() * 1e3);
                }
                result
            })
            .map_err(|e| format!("cannot start a thread to write the snapshot: {e}"))?;
        self.snapshot_write = Some(handle);
        Ok(())
    }

    /// Finishes the snapshot write in progress if it is done (or, with `wait`, once it is):
    /// records it in the log, which deletes the segments it covers.
    fn maybe_finish_snapshot(&mut self, wait: bool) -> Result<(), String> {
        match &self.snapshot_write {
            Some(h) if wait || h.is_finished() => {}
            _ => return Ok(()),
        }
        let handle = self.snapshot_write.take().expect("matched above");
        match handle.join() {
            Ok(Ok(meta)) => self.log.finish_snapshot(meta).map_err(|e| e.to_string()),
            Ok(Err(e)) => Err(format!("writing a snapshot failed: {e}")),
            Err(_) => Err("the snapshot writer thread panicked".into()),
        }
    }
}

/// How often the storage thread checks on a snapshot being written when no write comes.
const SNAPSHOT_POLL: std::time::Duration = std::time::Duration::from_millis(50);

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
        log: DurableLog,
        events: mpsc::UnboundedSender<StorageEvent>,
        stats: std::sync::Arc<StorageStats>,
    ) -> StorageThread {
        let (tx, rx) = std_mpsc::channel::<StorageOp>();
        let handle = std::thread::Builder::new()
            .name("raftkv-storage".into())
            .spawn(move || {
                let mut state = Storage { log, events, stats, snapshot_write: None };
                state.run(&rx);
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
