//! The fault schedule: an explicit, ordered list of faults with their virtual times.
//!
//! A run's schedule is generated from the seed (its own random stream, so it does not move when
//! other options change) unless given with `--faults`. Being explicit is what lets the shrinker
//! remove faults one by one and print the exact command that replays what is left. Message-level
//! faults (loss, duplication, delay, reordering) are rates in [`crate::Options`] instead.
//!
//! Text form, one fault per comma-separated item, times in milliseconds:
//! `crash@1200:3`, `restart@1800:3`, `partition@2000:1.2` (nodes 1 and 2 against the rest),
//! `isolate@2100:4`, `bridge@2200:3:1.2` (node 3 sees both sides of {1,2} against the rest),
//! `cut@2300:1>2` (messages from 1 to 2 are lost), `heal@2600`, `slowdisk@100:2`,
//! `fastdisk@900:2`, `add@3000:6` (as a learner), `promote@3500:6`, `remove@4000:2`,
//! `transfer@4200:3`, and faults aimed at whoever leads when they fire: `crashleader@5000`,
//! `isolateleader@5100`, `crashsyncing@5300` (a server with an fsync in flight), plus
//! `restartall@5600` (every crashed server restarts).

use std::fmt;

use raft_core::NodeId;
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

use crate::options::Options;

/// One fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The node crashes: its volatile state and unsynced writes are gone.
    Crash(NodeId),
    /// The node restarts from its durable state.
    Restart(NodeId),
    /// The cluster splits: these nodes against the rest.
    Partition(Vec<NodeId>),
    /// The node is cut off from everyone.
    Isolate(NodeId),
    /// `side` against the rest, except `bridge` talks to both.
    Bridge {
        /// The node that sees both sides.
        bridge: NodeId,
        /// One side.
        side: Vec<NodeId>,
    },
    /// Messages from one node to another are lost (one way only).
    Cut {
        /// Sender.
        from: NodeId,
        /// Recipient.
        to: NodeId,
    },
    /// Every link works again.
    Heal,
    /// The node's fsyncs become ten times slower.
    SlowDisk(NodeId),
    /// The node's fsyncs are back to normal.
    FastDisk(NodeId),
    /// Ask the leader to add a server as a learner.
    AddLearner(NodeId),
    /// Ask the leader to promote a learner.
    Promote(NodeId),
    /// Ask the leader to remove a member.
    Remove(NodeId),
    /// Ask the leader to hand leadership to a node.
    Transfer(NodeId),
    /// Crash whichever server leads (the highest term) when the fault fires.
    CrashLeader,
    /// Cut off whichever server leads when the fault fires.
    IsolateLeader,
    /// Crash a server that has an fsync in flight (its unsynced writes are lost).
    CrashSyncing,
    /// Restart every crashed server.
    RestartAll,
}

/// A fault at a virtual time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scheduled {
    /// When, in virtual milliseconds.
    pub at_ms: u64,
    /// What.
    pub fault: Fault,
}

/// An ordered list of faults.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Schedule {
    /// The faults, by time.
    pub faults: Vec<Scheduled>,
}

fn ids(list: &[NodeId]) -> String {
    list.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(".")
}

impl fmt::Display for Scheduled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.at_ms;
        match &self.fault {
            Fault::Crash(n) => write!(f, "crash@{t}:{n}"),
            Fault::Restart(n) => write!(f, "restart@{t}:{n}"),
            Fault::Partition(side) => write!(f, "partition@{t}:{}", ids(side)),
            Fault::Isolate(n) => write!(f, "isolate@{t}:{n}"),
            Fault::Bridge { bridge, side } => write!(f, "bridge@{t}:{bridge}:{}", ids(side)),
            Fault::Cut { from, to } => write!(f, "cut@{t}:{from}>{to}"),
            Fault::Heal => write!(f, "heal@{t}"),
            Fault::SlowDisk(n) => write!(f, "slowdisk@{t}:{n}"),
            Fault::FastDisk(n) => write!(f, "fastdisk@{t}:{n}"),
            Fault::AddLearner(n) => write!(f, "add@{t}:{n}"),
            Fault::Promote(n) => write!(f, "promote@{t}:{n}"),
            Fault::Remove(n) => write!(f, "remove@{t}:{n}"),
            Fault::Transfer(n) => write!(f, "transfer@{t}:{n}"),
            Fault::CrashLeader => write!(f, "crashleader@{t}"),
            Fault::IsolateLeader => write!(f, "isolateleader@{t}"),
            Fault::CrashSyncing => write!(f, "crashsyncing@{t}"),
            Fault::RestartAll => write!(f, "restartall@{t}"),
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let items: Vec<String> = self.faults.iter().map(|s| s.to_string()).collect();
        f.write_str(&items.join(","))
    }
}

impl Schedule {
    /// Parses the text form (see the module docs). The empty string is the empty schedule.
    pub fn parse(text: &str) -> Result<Schedule, String> {
        let mut faults = Vec::new();
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            faults.push(parse_item(item).map_err(|e| format!("bad fault '{item}': {e}"))?);
        }
        faults.sort_by_key(|s: &Scheduled| s.at_ms);
        Ok(Schedule { faults })
    }

    /// The schedule drawn from `seed` for these options.
    pub fn generate(seed: u64, o: &Options) -> Schedule {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(1);
        Generator::new(o, rng).run()
    }

    /// The time of the last fault, milliseconds.
    pub fn last_ms(&self) -> u64 {
        self.faults.last().map_or(0, |s| s.at_ms)
    }
}

fn parse_item(item: &str) -> Result<Scheduled, String> {
    let (kind, rest) = item.split_once('@').ok_or("expected KIND@MS[:ARGS]")?;
    let mut parts = rest.split(':');
    let at_ms = parts.next().unwrap_or_default().parse::<u64>().map_err(|_| "bad time")?;
    let args: Vec<&str> = parts.collect();
    let node = |i: usize| -> Result<NodeId, String> {
        let s = args.get(i).ok_or("missing node id")?;
        let n = s.parse::<u64>().map_err(|_| format!("bad node id '{s}'"))?;
        if n == 0 {
            return Err("node id 0 is reserved".into());
        }
        Ok(NodeId(n))
    };
    let list = |i: usize| -> Result<Vec<NodeId>, String> {
        let s = args.get(i).ok_or("missing node list")?;
        s.split('.').map(|x| x.parse::<u64>().map(NodeId).map_err(|_| format!("bad node id '{x}'"))).collect()
    };
    let fault = match kind {
        "crash" => Fault::Crash(node(0)?),
        "restart" => Fault::Restart(node(0)?),
        "partition" => Fault::Partition(list(0)?),
        "isolate" => Fault::Isolate(node(0)?),
        "bridge" => Fault::Bridge { bridge: node(0)?, side: list(1)? },
        "cut" => {
            let s = args.first().ok_or("missing FROM>TO")?;
            let (a, b) = s.split_once('>').ok_or("expected FROM>TO")?;
            let p = |x: &str| x.parse::<u64>().map(NodeId).map_err(|_| format!("bad node id '{x}'"));
            Fault::Cut { from: p(a)?, to: p(b)? }
        }
        "heal" => Fault::Heal,
        "slowdisk" => Fault::SlowDisk(node(0)?),
        "fastdisk" => Fault::FastDisk(node(0)?),
        "add" => Fault::AddLearner(node(0)?),
        "promote" => Fault::Promote(node(0)?),
        "remove" => Fault::Remove(node(0)?),
        "transfer" => Fault::Transfer(node(0)?),
        "crashleader" => Fault::CrashLeader,
        "isolateleader" => Fault::IsolateLeader,
        "crashsyncing" => Fault::CrashSyncing,
        "restartall" => Fault::RestartAll,
        other => return Err(format!("unknown fault kind '{other}'")),
    };
    Ok(Scheduled { at_ms, fault })
}

/// Draws a schedule: independent processes for crashes, network faults, slow disks, membership
/// changes and transfers, each with exponential-ish gaps around its mean.
struct Generator<'a> {
    o: &'a Options,
    rng: ChaCha8Rng,
    out: Vec<Scheduled>,
}

impl<'a> Generator<'a> {
    fn new(o: &'a Options, rng: ChaCha8Rng) -> Self {
        Generator { o, rng, out: Vec::new() }
    }

    fn below(&mut self, n: u64) -> u64 {
        self.rng.next_u64() % n.max(1)
    }

    /// A gap around `mean`: uniform in [mean/4, 7*mean/4].
    fn gap(&mut self, mean: u64) -> u64 {
        mean / 4 + self.below(mean * 3 / 2 + 1)
    }

    fn voter(&mut self) -> NodeId {
        NodeId(1 + self.below(self.o.nodes))
    }

    fn any_server(&mut self) -> NodeId {
        NodeId(1 + self.below(self.o.nodes + self.o.spares))
    }

    fn some_nodes(&mut self) -> Vec<NodeId> {
        let n = self.o.nodes + self.o.spares;
        let mut side: Vec<NodeId> = (1..=n).filter(|_| self.rng.next_u64() % 2 == 0).map(NodeId).collect();
        if side.is_empty() || side.len() as u64 == n {
            side = vec![NodeId(1 + self.below(n))];
        }
        side
    }

    fn push(&mut self, at_ms: u64, fault: Fault) {
        if at_ms < self.o.duration_ms {
            self.out.push(Scheduled { at_ms, fault });
        }
    }

    fn run(mut self) -> Schedule {
        let d = self.o.duration_ms;
        if self.o.crash_every_ms > 0 {
            let mut t = self.gap(self.o.crash_every_ms);
            while t < d {
                let down = self.gap(self.o.crash_every_ms / 2 + 50);
                // A third of the crashes hit the leader (leader changes are where Raft bugs live),
                // a third a server in the middle of an fsync (where durability bugs live).
                let kind = self.below(3);
                if kind < 2 {
                    self.push(t, if kind == 0 { Fault::CrashLeader } else { Fault::CrashSyncing });
                    self.push(t + down, Fault::RestartAll);
                } else {
                    let n = self.any_server();
                    self.push(t, Fault::Crash(n));
                    self.push(t + down, Fault::Restart(n));
                }
                t += self.gap(self.o.crash_every_ms);
            }
        }
        if self.o.partition_every_ms > 0 {
            let mut t = self.gap(self.o.partition_every_ms);
            while t < d {
                let fault = match self.below(6) {
                    0 | 1 => Fault::Partition(self.some_nodes()),
                    2 => Fault::Isolate(self.any_server()),
                    5 => Fault::IsolateLeader,
                    3 => {
                        let bridge = self.any_server();
                        let side = self.some_nodes().into_iter().filter(|&n| n != bridge).collect::<Vec<_>>();
                        if side.is_empty() {
                            Fault::Isolate(bridge)
                        } else {
                            Fault::Bridge { bridge, side }
                        }
                    }
                    _ => {
                        let from = self.any_server();
                        let to = self.any_server();
                        if from == to {
                            Fault::Isolate(from)
                        } else {
                            Fault::Cut { from, to }
                        }
                    }
                };
                let lasts = self.gap(self.o.partition_every_ms / 2 + 50);
                self.push(t, fault);
                self.push(t + lasts, Fault::Heal);
                t += self.gap(self.o.partition_every_ms) + lasts;
            }
        }
        if self.o.slow_disk_every_ms > 0 {
            let mut t = self.gap(self.o.slow_disk_every_ms);
            while t < d {
                let n = self.any_server();
                let lasts = self.gap(self.o.slow_disk_every_ms / 2);
                self.push(t, Fault::SlowDisk(n));
                self.push(t + lasts, Fault::FastDisk(n));
                t += self.gap(self.o.slow_disk_every_ms);
            }
        }
        if self.o.membership_every_ms > 0 {
            let mut t = self.gap(self.o.membership_every_ms);
            while t < d {
                let fault = match self.below(4) {
                    0 => Fault::AddLearner(self.any_server()),
                    1 => Fault::Promote(self.any_server()),
                    2 => Fault::Remove(self.any_server()),
                    _ => Fault::AddLearner(NodeId(self.o.nodes + 1 + self.below(self.o.spares))),
                };
                self.push(t, fault);
                t += self.gap(self.o.membership_every_ms);
            }
        }
        if self.o.transfer_every_ms > 0 {
            let mut t = self.gap(self.o.transfer_every_ms);
            while t < d {
                let n = self.voter();
                self.push(t, Fault::Transfer(n));
                t += self.gap(self.o.transfer_every_ms);
            }
        }
        self.out.sort_by_key(|s| s.at_ms);
        Schedule { faults: self.out }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::Overrides;

    #[test]
    fn text_form_round_trips() {
        let text = "crash@1200:3,restart@1800:3,partition@2000:1.2,isolate@2100:4,bridge@2200:3:1.2,cut@2300:1>2,heal@2600,slowdisk@2700:2,fastdisk@2900:2,add@3000:6,promote@3500:6,remove@4000:2,transfer@4200:3,crashleader@5000,isolateleader@5100,crashsyncing@5300,restartall@5600";
        let s = Schedule::parse(text).unwrap();
        assert_eq!(s.faults.len(), 17);
        assert_eq!(s.to_string(), text);
        assert_eq!(Schedule::parse("").unwrap(), Schedule::default());
    }

    #[test]
    fn bad_faults_are_refused_with_the_item() {
        for bad in ["crash", "crash@x:1", "crash@10:0", "explode@10:1", "cut@5:1", "partition@5"] {
            let err = Schedule::parse(bad).unwrap_err();
            assert!(err.contains(bad), "{bad}: {err}");
        }
    }

    #[test]
    fn generation_is_deterministic_and_stays_within_the_run() {
        for seed in 0..30 {
            let o = Options::derive(seed, &Overrides::default());
            let a = Schedule::generate(seed, &o);
            assert_eq!(a, Schedule::generate(seed, &o));
            assert!(a.faults.iter().all(|f| f.at_ms < o.duration_ms));
            assert!(a.faults.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
            assert_eq!(Schedule::parse(&a.to_string()).unwrap(), a, "seed {seed}");
        }
    }
}
