//! The nemesis: faults chosen by the seed, injected between simulation steps.
//!
//! Faults on nodes (at most one at a time): a node cut off from the other nodes, a node
//! crashed (its unsynced writes lost, or some of them kept, as an OS may have written
//! them back) and restarted later, both aimed at a random node or at the busiest leader,
//! and now and then every node cut off from every other. Faults on links (any time): a
//! slow link. A cut holds messages (turmoil's `hold`) and delivers them when it heals, as
//! TCP retransmits after a partition shorter than its timeouts. A crashed node is silent
//! until it restarts, as a machine without power is: what it sends while it is torn down
//! (FINs, resets) and what others send it are dropped; after the restart its old
//! connections are reset. Everything heals when the fault phase ends.
//!
//! The silence is also what keeps a crash deterministic: tokio tears a runtime's tasks
//! down in an order that depends on process-wide task ids, so the messages they send on
//! the way down must not reach anyone.

use std::collections::BTreeMap;
use std::time::Duration;

use kahuna_kernel::{NodeId, SimDisk};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use turmoil::Sim;

use crate::net::host_name;
use crate::node::Board;

/// Simulated time before the first fault: the cluster forms first.
const QUIET_START: Duration = Duration::from_secs(3);
/// Gap between two node faults, ms.
const GAP_MS: std::ops::Range<u64> = 200..2_000;
/// Length of a node fault, ms.
const FAULT_MS: std::ops::Range<u64> = 300..5_000;
/// Length of a slow-link fault, ms.
const SLOW_MS: std::ops::Range<u64> = 500..4_000;
/// Largest latency of a slow link, ms.
const SLOW_LATENCY_MS: std::ops::Range<u64> = 50..600;

/// A fault in progress, with what ends it.
#[derive(Debug, Clone)]
enum Active {
    /// Messages between these host pairs are held.
    Cut(Vec<(NodeId, NodeId)>),
    /// The node is down.
    Crashed(NodeId),
}

/// Injects and heals faults; keeps a log of what it did.
pub struct Nemesis {
    rng: SmallRng,
    nodes: Vec<NodeId>,
    /// Every host, clients included: what a crashed node is cut off from.
    hosts: Vec<String>,
    disks: BTreeMap<NodeId, SimDisk>,
    board: Board,
    /// Faults stop (and everything heals) at this simulated time.
    end: Duration,
    /// The normal largest latency of a link.
    latency_max: Duration,
    node_fault: Option<(Duration, Active)>,
    next_node_fault: Duration,
    slow: Option<(Duration, NodeId, NodeId)>,
    next_slow: Duration,
    healed: bool,
    log: Vec<String>,
    crashes: usize,
    cuts: usize,
}

impl Nemesis {
    /// A nemesis for `nodes`, drawing from `seed`, that stops at `end`.
    pub fn new(
        seed: u64,
        nodes: Vec<NodeId>,
        hosts: Vec<String>,
        disks: BTreeMap<NodeId, SimDisk>,
        board: Board,
        end: Duration,
        latency_max: Duration,
    ) -> Self {
        Self {
            rng: SmallRng::seed_from_u64(seed),
            nodes,
            hosts,
            disks,
            board,
            end,
            latency_max,
            node_fault: None,
            next_node_fault: QUIET_START,
            slow: None,
            next_slow: QUIET_START,
            healed: false,
            log: Vec::new(),
            crashes: 0,
            cuts: 0,
        }
    }

    /// What the nemesis did, one line per action, with simulated times.
    pub fn log(&self) -> &[String] {
        &self.log
    }

    /// Crashes and cuts injected.
    pub fn counts(&self) -> (usize, usize) {
        (self.crashes, self.cuts)
    }

    fn note(&mut self, now: Duration, what: String) {
        tracing::info!(at_ms = now.as_millis() as u64, "nemesis: {what}");
        self.log.push(format!("{:>8.3}s {what}", now.as_secs_f64()));
    }

    fn ms(&mut self, range: std::ops::Range<u64>) -> Duration {
        Duration::from_millis(self.rng.random_range(range))
    }

    /// Called after every simulation step.
    pub fn tick(&mut self, sim: &mut Sim<'_>) {
        let now = sim.elapsed();
        if now >= self.end {
            if !self.healed {
                self.heal_all(sim, now);
            }
            return;
        }
        if let Some((until, fault)) = self.node_fault.clone()
            && now >= until
        {
            self.end_fault(sim, now, fault);
            self.node_fault = None;
            let gap = self.ms(GAP_MS);
            self.next_node_fault = now + gap;
        }
        if self.node_fault.is_none() && now >= self.next_node_fault {
            let length = self.ms(FAULT_MS);
            let fault = self.start_fault(sim, now);
            self.node_fault = Some((now + length, fault));
        }
        if let Some((until, a, b)) = self.slow
            && now >= until
        {
            sim.set_link_max_message_latency(host_name(a), host_name(b), self.latency_max);
            self.note(now, format!("link n{a}-n{b} back to normal"));
            self.slow = None;
            let gap = self.ms(GAP_MS);
            self.next_slow = now + gap;
        }
        if self.slow.is_none() && now >= self.next_slow {
            let a = self.nodes[self.rng.random_range(0..self.nodes.len())];
            let others: Vec<NodeId> = self.nodes.iter().copied().filter(|n| *n != a).collect();
            let b = others[self.rng.random_range(0..others.len())];
            let latency = self.ms(SLOW_LATENCY_MS);
            let length = self.ms(SLOW_MS);
            sim.set_link_max_message_latency(host_name(a), host_name(b), latency);
            self.note(now, format!("link n{a}-n{b} slow (up to {} ms)", latency.as_millis()));
            self.slow = Some((now + length, a, b));
        }
    }

    /// Picks and injects a node fault.
    fn start_fault(&mut self, sim: &mut Sim<'_>, now: Duration) -> Active {
        let random = self.nodes[self.rng.random_range(0..self.nodes.len())];
        let (target, aim) = match self.board.busiest_leader() {
            Some(leader) if self.rng.random_bool(0.5) => (leader, "the busiest leader"),
            _ => (random, "a random node"),
        };
        match self.rng.random_range(0..10) {
            0..4 => {
                let pairs: Vec<(NodeId, NodeId)> =
                    self.nodes.iter().filter(|n| **n != target).map(|n| (target, *n)).collect();
                self.cut(sim, now, pairs, format!("cut off n{target} ({aim})"))
            }
            4..9 => {
                self.crash(sim, now, target, aim);
                Active::Crashed(target)
            }
            _ => {
                let mut pairs = Vec::new();
                for (i, a) in self.nodes.iter().enumerate() {
                    pairs.extend(self.nodes[i + 1..].iter().map(|b| (*a, *b)));
                }
                self.cut(sim, now, pairs, "cut every node off from every other".to_owned())
            }
        }
    }

    fn cut(&mut self, sim: &mut Sim<'_>, now: Duration, pairs: Vec<(NodeId, NodeId)>, what: String) -> Active {
        for (a, b) in &pairs {
            sim.hold(host_name(*a), host_name(*b));
        }
        self.cuts += 1;
        self.note(now, what);
        Active::Cut(pairs)
    }

    fn crash(&mut self, sim: &mut Sim<'_>, now: Duration, node: NodeId, aim: &str) {
        // Half the crashes lose every unsynced page; the others keep each with chance 1/2.
        let torn = self.rng.random_bool(0.5);
        let unsynced: u64 = ["raft-log.redb", "state.redb"]
            .iter()
            .map(|f| self.disks.get(&node).map_or(0, |d| d.unsynced_bytes(f)))
            .sum();
        if let Some(disk) = self.disks.get(&node) {
            // First the disk, so nothing the dying node does on its way down reaches it.
            if torn {
                let rng = &mut self.rng;
                disk.crash_keeping(|_, _| rng.random_bool(0.5));
            } else {
                disk.crash();
            }
        }
        let name = host_name(node);
        for other in self.hosts.iter().filter(|h| **h != name) {
            sim.partition(name.as_str(), other.as_str());
        }
        sim.crash(name.as_str());
        self.board.forget(node);
        self.crashes += 1;
        let lost = if torn { "some of" } else { "all" };
        self.note(now, format!("crash n{node} ({aim}), losing {lost} {unsynced} unsynced bytes"));
    }

    fn end_fault(&mut self, sim: &mut Sim<'_>, now: Duration, fault: Active) {
        match fault {
            Active::Cut(pairs) => {
                for (a, b) in &pairs {
                    sim.release(host_name(*a), host_name(*b));
                }
                self.note(now, "heal the cut".to_owned());
            }
            Active::Crashed(node) => {
                let name = host_name(node);
                for other in self.hosts.iter().filter(|h| **h != name) {
                    sim.repair(name.as_str(), other.as_str());
                }
                sim.bounce(name.as_str());
                self.note(now, format!("restart n{node}"));
            }
        }
    }

    fn heal_all(&mut self, sim: &mut Sim<'_>, now: Duration) {
        if let Some((_, fault)) = self.node_fault.take() {
            self.end_fault(sim, now, fault);
        }
        if let Some((_, a, b)) = self.slow.take() {
            sim.set_link_max_message_latency(host_name(a), host_name(b), self.latency_max);
        }
        self.healed = true;
        self.note(now, "faults over: everything healed".to_owned());
    }
}
