//! The options of one run. Every option is drawn from the seed ("swarm testing": each seed
//! explores a different corner: a lossy network, slow disks, tiny messages, frequent crashes...)
//! unless it is given on the command line; all are printed first, so a run is described by its
//! seed plus the options given.

use std::fmt;

use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

/// Parts per million: probabilities as integers, so runs never depend on float rounding.
pub type Ppm = u32;

/// One million: a certainty in [`Ppm`].
pub const MILLION: Ppm = 1_000_000;

/// Every knob of a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Initial voters (3 or 5).
    pub nodes: u64,
    /// Extra servers membership changes may add (ids after the voters).
    pub spares: u64,
    /// Length of the fault phase, virtual milliseconds.
    pub duration_ms: u64,
    /// Bound on the liveness phase: after every fault heals, a leader must be elected and every
    /// pending client operation complete within this many virtual milliseconds.
    pub liveness_ms: u64,
    /// Base tick length, virtual milliseconds.
    pub tick_ms: u64,
    /// Largest clock drift between nodes' tick rates, in percent.
    pub drift_pct: u64,
    /// Election timeout in ticks.
    pub election_ticks: u32,
    /// Heartbeat interval in ticks.
    pub heartbeat_ticks: u32,
    /// PreVote on.
    pub pre_vote: bool,
    /// CheckQuorum on.
    pub check_quorum: bool,
    /// Message size limit in bytes.
    pub max_bytes_per_msg: u64,
    /// Messages in flight per peer.
    pub max_inflight_msgs: usize,
    /// Snapshot after this many applied entries (`None`: never).
    pub compaction_entries: Option<u64>,
    /// Entries kept before a snapshot's index when compacting.
    pub retain_entries: u64,
    /// One-way network latency, minimum, microseconds.
    pub latency_min_us: u64,
    /// One-way network latency, maximum (jitter reorders messages), microseconds.
    pub latency_max_us: u64,
    /// Chance that a message is lost.
    pub loss_ppm: Ppm,
    /// Chance that a message is delivered twice.
    pub dup_ppm: Ppm,
    /// Chance that a message is delayed by up to `long_delay_ms`.
    pub long_delay_ppm: Ppm,
    /// The longest delay of a delayed message, milliseconds.
    pub long_delay_ms: u64,
    /// fsync latency, minimum, microseconds.
    pub fsync_min_us: u64,
    /// fsync latency, maximum, microseconds.
    pub fsync_max_us: u64,
    /// A crash may tear the first record that was not yet durable.
    pub torn_writes: bool,
    /// Mean time between crashes, milliseconds (0: no crashes).
    pub crash_every_ms: u64,
    /// Mean time between network faults (partitions, cuts, isolations, bridges), milliseconds
    /// (0: none).
    pub partition_every_ms: u64,
    /// Mean time between disk slow-downs, milliseconds (0: none).
    pub slow_disk_every_ms: u64,
    /// Mean time between membership changes, milliseconds (0: none).
    pub membership_every_ms: u64,
    /// Mean time between leadership transfers, milliseconds (0: none).
    pub transfer_every_ms: u64,
    /// Concurrent clients.
    pub clients: u64,
    /// Keys the clients use (few, to force contention).
    pub keys: u64,
    /// Share of reads among client operations.
    pub read_ppm: Ppm,
    /// Share of reads that go through the log instead of ReadIndex.
    pub log_read_ppm: Ppm,
    /// Followers forward writes to the leader (else they redirect the client).
    pub forward_writes: bool,
    /// Client request timeout, milliseconds.
    pub client_timeout_ms: u64,
    /// Chance that a client abandons an operation after a timeout (its outcome then stays
    /// unknown).
    pub abandon_ppm: Ppm,
    /// Pause between a client's operations, maximum, milliseconds.
    pub think_ms: u64,
}

/// Options given on the command line; `None` means "draw from the seed".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Overrides {
    /// See [`Options::nodes`].
    pub nodes: Option<u64>,
    /// See [`Options::spares`].
    pub spares: Option<u64>,
    /// See [`Options::duration_ms`].
    pub duration_ms: Option<u64>,
    /// See [`Options::liveness_ms`].
    pub liveness_ms: Option<u64>,
    /// See [`Options::loss_ppm`].
    pub loss_ppm: Option<Ppm>,
    /// See [`Options::dup_ppm`].
    pub dup_ppm: Option<Ppm>,
    /// See [`Options::long_delay_ppm`].
    pub long_delay_ppm: Option<Ppm>,
    /// See [`Options::crash_every_ms`].
    pub crash_every_ms: Option<u64>,
    /// See [`Options::partition_every_ms`].
    pub partition_every_ms: Option<u64>,
    /// See [`Options::membership_every_ms`].
    pub membership_every_ms: Option<u64>,
    /// See [`Options::clients`].
    pub clients: Option<u64>,
    /// See [`Options::keys`].
    pub keys: Option<u64>,
    /// See [`Options::max_bytes_per_msg`].
    pub max_bytes_per_msg: Option<u64>,
    /// See [`Options::compaction_entries`] (0 means never).
    pub compaction_entries: Option<u64>,
    /// See [`Options::pre_vote`].
    pub pre_vote: Option<bool>,
    /// See [`Options::check_quorum`].
    pub check_quorum: Option<bool>,
    /// See [`Options::torn_writes`].
    pub torn_writes: Option<bool>,
}

fn pick<T: Copy>(rng: &mut ChaCha8Rng, choices: &[T]) -> T {
    choices[(rng.next_u64() % choices.len() as u64) as usize]
}

fn between(rng: &mut ChaCha8Rng, lo: u64, hi: u64) -> u64 {
    lo + rng.next_u64() % (hi - lo + 1)
}

impl Options {
    /// The options of the run with `seed`: every value drawn from the seed's own stream (always
    /// the same draws, whatever is overridden), then the overrides applied.
    pub fn derive(seed: u64, overrides: &Overrides) -> Options {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(0);
        let r = &mut rng;
        let nodes = pick(r, &[3, 5, 5]);
        let latency_min_us = pick(r, &[100, 500, 1_000]);
        let mut o = Options {
            nodes,
            spares: pick(r, &[0, 1, 2]),
            duration_ms: 10_000,
            liveness_ms: 30_000,
            tick_ms: pick(r, &[5, 10, 20]),
            drift_pct: pick(r, &[0, 2, 10]),
            election_ticks: pick(r, &[5, 10, 20]),
            heartbeat_ticks: 1,
            pre_vote: pick(r, &[true, true, false]),
            check_quorum: pick(r, &[true, true, false]),
            max_bytes_per_msg: pick(r, &[64, 256, 4096, 1 << 20]),
            max_inflight_msgs: pick(r, &[1, 4, 256]),
            compaction_entries: pick(r, &[Some(8), Some(50), Some(500), None]),
            retain_entries: 0,
            latency_min_us,
            latency_max_us: latency_min_us * pick(r, &[1, 5, 20]),
            loss_ppm: pick(r, &[0, 10_000, 50_000, 200_000]),
            dup_ppm: pick(r, &[0, 10_000, 50_000]),
            long_delay_ppm: pick(r, &[0, 1_000, 20_000]),
            long_delay_ms: pick(r, &[100, 1_000]),
            fsync_min_us: pick(r, &[100, 500, 2_000]),
            fsync_max_us: 0,
            torn_writes: pick(r, &[true, false]),
            crash_every_ms: pick(r, &[0, 500, 2_000, 5_000]),
            partition_every_ms: pick(r, &[0, 500, 2_000, 5_000]),
            slow_disk_every_ms: pick(r, &[0, 3_000]),
            membership_every_ms: pick(r, &[0, 0, 1_000, 3_000]),
            transfer_every_ms: pick(r, &[0, 2_000]),
            clients: between(r, 1, 6),
            keys: between(r, 1, 6),
            read_ppm: pick(r, &[200_000, 500_000]),
            log_read_ppm: pick(r, &[0, 300_000]),
            forward_writes: pick(r, &[true, false]),
            client_timeout_ms: pick(r, &[300, 1_000]),
            abandon_ppm: pick(r, &[0, 100_000]),
            think_ms: pick(r, &[0, 20, 100]),
        };
        o.fsync_max_us = o.fsync_min_us * pick(r, &[1, 4]);
        // Half the runs keep a tail of entries behind each snapshot, half compact to the snapshot
        // (so followers get snapshots more often).
        let keep_tail = pick(r, &[false, true]);
        o.retain_entries = if keep_tail { o.compaction_entries.unwrap_or(0) / 2 } else { 0 };
        o.heartbeat_ticks = (o.election_ticks / 5).max(1);
        o.apply(overrides);
        o
    }

    fn apply(&mut self, ov: &Overrides) {
        macro_rules! set {
            ($($field:ident),*) => { $( if let Some(v) = ov.$field { self.$field = v; } )* };
        }
        set!(
            nodes,
            spares,
            duration_ms,
            liveness_ms,
            loss_ppm,
            dup_ppm,
            long_delay_ppm,
            crash_every_ms,
            partition_every_ms,
            membership_every_ms,
            clients,
            keys,
            max_bytes_per_msg,
            pre_vote,
            check_quorum,
            torn_writes
        );
        if let Some(c) = ov.compaction_entries {
            self.compaction_entries = (c > 0).then_some(c);
            self.retain_entries = self.retain_entries.min(c / 2);
        }
        if self.spares == 0 {
            self.membership_every_ms = 0;
        }
    }

    /// Checks the values the command line can set.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=9).contains(&self.nodes) {
            return Err(format!("--nodes must be between 1 and 9, got {}", self.nodes));
        }
        if self.spares > 4 {
            return Err(format!("--spares must be at most 4, got {}", self.spares));
        }
        if self.duration_ms == 0 || self.liveness_ms == 0 {
            return Err("--duration and --liveness must be at least 1 ms".into());
        }
        for (name, v) in [("--loss", self.loss_ppm), ("--dup", self.dup_ppm), ("--long-delay", self.long_delay_ppm)] {
            if v > MILLION {
                return Err(format!("{name} must be at most 1000000 ppm (100%), got {v}"));
            }
        }
        if self.clients == 0 || self.keys == 0 {
            return Err("--clients and --keys must be at least 1".into());
        }
        if self.max_bytes_per_msg < 64 {
            return Err("--max-bytes-per-msg must be at least 64".into());
        }
        Ok(())
    }
}

impl fmt::Display for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = self;
        writeln!(f, "  cluster      nodes={} spares={} pre_vote={} check_quorum={}", o.nodes, o.spares, o.pre_vote, o.check_quorum)?;
        writeln!(
            f,
            "  time         duration={}ms liveness<={}ms tick={}ms drift<={}% election={}t heartbeat={}t",
            o.duration_ms, o.liveness_ms, o.tick_ms, o.drift_pct, o.election_ticks, o.heartbeat_ticks
        )?;
        writeln!(
            f,
            "  replication  max_bytes_per_msg={} max_inflight={} compaction={} retain={}",
            o.max_bytes_per_msg,
            o.max_inflight_msgs,
            o.compaction_entries.map_or("off".to_string(), |c| format!("every {c} entries")),
            o.retain_entries
        )?;
        writeln!(
            f,
            "  network      latency={}..{}us loss={}ppm dup={}ppm long_delay={}ppm up to {}ms",
            o.latency_min_us, o.latency_max_us, o.loss_ppm, o.dup_ppm, o.long_delay_ppm, o.long_delay_ms
        )?;
        writeln!(f, "  disk         fsync={}..{}us torn_writes={}", o.fsync_min_us, o.fsync_max_us, o.torn_writes)?;
        writeln!(
            f,
            "  faults       crash every ~{}ms, network fault every ~{}ms, slow disk every ~{}ms, membership change every ~{}ms, transfer every ~{}ms (0 = never)",
            o.crash_every_ms, o.partition_every_ms, o.slow_disk_every_ms, o.membership_every_ms, o.transfer_every_ms
        )?;
        write!(
            f,
            "  clients      clients={} keys={} reads={}ppm log_reads={}ppm forward_writes={} timeout={}ms abandon={}ppm think<={}ms",
            o.clients, o.keys, o.read_ppm, o.log_read_ppm, o.forward_writes, o.client_timeout_ms, o.abandon_ppm, o.think_ms
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_options_and_seeds_differ() {
        let a = Options::derive(42, &Overrides::default());
        assert_eq!(a, Options::derive(42, &Overrides::default()));
        let distinct: std::collections::BTreeSet<String> = (0..50).map(|s| Options::derive(s, &Overrides::default()).to_string()).collect();
        assert!(distinct.len() > 40, "seeds explore different options");
    }

    #[test]
    fn overrides_change_only_what_they_name() {
        let base = Options::derive(7, &Overrides::default());
        let o = Options::derive(7, &Overrides { loss_ppm: Some(0), nodes: Some(3), ..Overrides::default() });
        assert_eq!((o.loss_ppm, o.nodes), (0, 3));
        assert_eq!((o.dup_ppm, o.tick_ms, o.keys), (base.dup_ppm, base.tick_ms, base.keys));
    }

    #[test]
    fn validation_names_the_flag() {
        let mut o = Options::derive(1, &Overrides::default());
        o.loss_ppm = 2_000_000;
        assert!(o.validate().unwrap_err().contains("--loss"));
        o.loss_ppm = 0;
        o.nodes = 0;
        assert!(o.validate().unwrap_err().contains("--nodes"));
    }
}
