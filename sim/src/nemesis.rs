//! The nemesis: faults chosen by the seed, injected between simulation steps.
//!
//! Faults on nodes (at most one at a time), each aimed at a random node or at the busiest
//! leader: a node cut off from the other nodes; a one-way cut (the node's messages to the
//! others held while theirs reach it, or the reverse, or one direction of one link); a
//! node crashed (its unsynced writes lost, or some of them kept, as an OS may have written
//! them back) and restarted later; and now and then every node cut off from every other.
//! Faults on links (any time): a slow link. Faults on clocks (any time): a node's clock
//! steps forward or back by up to a few seconds and stays there, as after an NTP step
//! or an operator's `date -s`; nodes keep their clocks across crashes and the end of the
//! faults, as machines do.
//!
//! A cut holds messages (turmoil's `hold`) and delivers them when it heals, as TCP
//! retransmits after a partition shorter than its timeouts. Turmoil holds both directions
//! of a link at once, so a one-way cut holds the link and, after every step, lets the
//! other direction's messages through (at the step's latency, not the link's). That is
//! what TCP does on established connections when one direction drops packets: the data
//! of the blocked direction arrives on retransmission after the heal, the other's arrives
//! at once. (A connection opened from the open side completes, since turmoil answers a
//! SYN without a message back; a real one would wait for its SYN-ACK.) Turmoil cannot lose
//! single TCP segments: its TCP has no retransmission, so a dropped segment leaves a gap
//! that stalls the stream forever, which no real TCP connection does; lossy links appear
//! here only as what TCP makes of them, slow links.
//!
//! A crashed node is silent until it restarts, as a machine without power is: what it
//! sends while it is torn down (FINs, resets) and what others send it are dropped; after
//! the restart its old connections are reset. Everything but the clocks heals when the
//! fault phase ends.
//!
//! The silence is also what keeps a crash deterministic: tokio tears a runtime's tasks
//! down in an order that depends on process-wide task ids, so the messages they send on
//! the way down must not reach anyone.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use kahuna_kernel::{NodeId, SimDisk};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use turmoil::Sim;

use crate::net::host_name;
use crate::node::{Board, SimClock};

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
/// Gap between two clock jumps, ms.
const JUMP_GAP_MS: std::ops::Range<u64> = 1_000..6_000;
/// Size of one clock jump, ms: past a lock lease and an election timeout, so that a jump
/// forward ends leases early and a jump back makes a node stamp below its peers.
const JUMP_MS: std::ops::Range<i64> = 200..3_000;
/// Largest distance of a node's clock from simulated time, ms: a jump that would go
/// further goes the other way.
const SKEW_MS_MAX: i64 = 5_000;

/// A fault in progress, with what ends it.
#[derive(Debug, Clone)]
enum Active {
    /// Messages between these host pairs are held.
    Cut(Vec<(NodeId, NodeId)>),
    /// Messages from the first node of each pair to the second are held; the other
    /// direction flows (its addresses, source first).
    OneWay { pairs: Vec<(NodeId, NodeId)>, open: Vec<(IpAddr, IpAddr)> },
    /// The node is down.
    Crashed(NodeId),
}

/// How many faults of each kind the nemesis injected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounts {
    pub crashes: usize,
    /// Two-way cuts: a node isolated, or every node from every other.
    pub cuts: usize,
    pub one_way_cuts: usize,
    pub slow_links: usize,
    pub clock_jumps: usize,
}

/// Injects and heals faults; keeps a log of what it did.
pub struct Nemesis {
    rng: SmallRng,
    nodes: Vec<NodeId>,
    /// Every host, clients included: what a crashed node is cut off from.
    hosts: Vec<String>,
    disks: BTreeMap<NodeId, SimDisk>,
    clocks: BTreeMap<NodeId, SimClock>,
    board: Board,
    /// Faults stop (and everything heals) at this simulated time.
    end: Duration,
    /// The normal largest latency of a link.
    latency_max: Duration,
    node_fault: Option<(Duration, Active)>,
    next_node_fault: Duration,
    slow: Option<(Duration, NodeId, NodeId)>,
    next_slow: Duration,
    next_jump: Duration,
    healed: bool,
    log: Vec<String>,
    counts: FaultCounts,
}

/// What the nemesis works on: the cluster's nodes and what it reaches into.
pub struct Targets {
    pub nodes: Vec<NodeId>,
    /// Every host, clients included.
    pub hosts: Vec<String>,
    pub disks: BTreeMap<NodeId, SimDisk>,
    pub clocks: BTreeMap<NodeId, SimClock>,
    pub board: Board,
}

impl Nemesis {
    /// A nemesis for `targets`, drawing from `seed`, that stops at `end`.
    pub fn new(seed: u64, targets: Targets, end: Duration, latency_max: Duration) -> Self {
        Self {
            rng: SmallRng::seed_from_u64(seed),
            nodes: targets.nodes,
            hosts: targets.hosts,
            disks: targets.disks,
            clocks: targets.clocks,
            board: targets.board,
            end,
            latency_max,
            node_fault: None,
            next_node_fault: QUIET_START,
            slow: None,
            next_slow: QUIET_START,
            next_jump: QUIET_START,
            healed: false,
            log: Vec::new(),
            counts: FaultCounts::default(),
        }
    }

    /// What the nemesis did, one line per action, with simulated times.
    pub fn log(&self) -> &[String] {
        &self.log
    }

    /// Faults injected, by kind.
    pub fn counts(&self) -> FaultCounts {
        self.counts
    }

    fn note(&mut self, now: Duration, what: String) {
        tracing::info!(at_ms = now.as_millis() as u64, "nemesis: {what}");
        self.log.push(format!("{:>8.3}s {what}", now.as_secs_f64()));
    }

    fn ms(&mut self, range: std::ops::Range<u64>) -> Duration {
        Duration::from_millis(self.rng.random_range(range))
    }

    fn random_node(&mut self) -> NodeId {
        self.nodes[self.rng.random_range(0..self.nodes.len())]
    }

    /// A random node other than `node`.
    fn other_node(&mut self, node: NodeId) -> NodeId {
        let others: Vec<NodeId> = self.nodes.iter().copied().filter(|n| *n != node).collect();
        others[self.rng.random_range(0..others.len())]
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
        if let Some((_, Active::OneWay { open, .. })) = &self.node_fault {
            pass_one_way(sim, open);
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
            let a = self.random_node();
            let b = self.other_node(a);
            let latency = self.ms(SLOW_LATENCY_MS);
            let length = self.ms(SLOW_MS);
            sim.set_link_max_message_latency(host_name(a), host_name(b), latency);
            self.counts.slow_links += 1;
            self.note(now, format!("link n{a}-n{b} slow (up to {} ms)", latency.as_millis()));
            self.slow = Some((now + length, a, b));
        }
        if now >= self.next_jump {
            self.jump_clock(now);
            let gap = self.ms(JUMP_GAP_MS);
            self.next_jump = now + gap;
        }
    }

    /// Steps a random node's clock forward or back.
    fn jump_clock(&mut self, now: Duration) {
        let node = self.random_node();
        let Some(clock) = self.clocks.get(&node).cloned() else { return };
        let mut delta = self.rng.random_range(JUMP_MS);
        if self.rng.random_bool(0.5) {
            delta = -delta;
        }
        if (clock.skew_ms() + delta).abs() > SKEW_MS_MAX {
            delta = -delta;
        }
        let skew = clock.jump(delta);
        self.counts.clock_jumps += 1;
        let direction = if delta > 0 { "forward" } else { "back" };
        self.note(now, format!("clock of n{node} jumps {direction} {} ms (now {skew:+} ms)", delta.abs()));
    }

    /// Picks and injects a node fault.
    fn start_fault(&mut self, sim: &mut Sim<'_>, now: Duration) -> Active {
        let random = self.random_node();
        let (target, aim) = match self.board.busiest_leader() {
            Some(leader) if self.rng.random_bool(0.5) => (leader, "the busiest leader"),
            _ => (random, "a random node"),
        };
        let others: Vec<NodeId> = self.nodes.iter().copied().filter(|n| *n != target).collect();
        match self.rng.random_range(0..20) {
            0..6 => {
                let pairs = others.iter().map(|n| (target, *n)).collect();
                self.cut(sim, now, pairs, format!("cut off n{target} ({aim})"))
            }
            6..8 => {
                let pairs = others.iter().map(|n| (target, *n)).collect();
                let what = format!("one-way cut: n{target} ({aim}) cannot send to the others, hears them");
                self.one_way(sim, now, pairs, what)
            }
            8..10 => {
                let pairs = others.iter().map(|n| (*n, target)).collect();
                let what = format!("one-way cut: n{target} ({aim}) cannot hear the others, reaches them");
                self.one_way(sim, now, pairs, what)
            }
            10..11 => {
                let other = self.other_node(target);
                let what = format!("one-way cut: n{target} ({aim}) cannot send to n{other}");
                self.one_way(sim, now, vec![(target, other)], what)
            }
            11..19 => {
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
        self.counts.cuts += 1;
        self.note(now, what);
        Active::Cut(pairs)
    }

    /// Holds the messages from the first node of each pair to the second; the reverse
    /// direction is let through by [`pass_one_way`] after every step.
    fn one_way(&mut self, sim: &mut Sim<'_>, now: Duration, pairs: Vec<(NodeId, NodeId)>, what: String) -> Active {
        let mut open = Vec::new();
        for (from, to) in &pairs {
            let (from, to) = (host_name(*from), host_name(*to));
            sim.hold(from.as_str(), to.as_str());
            open.push((sim.lookup(to.as_str()), sim.lookup(from.as_str())));
        }
        pass_one_way(sim, &open);
        self.counts.one_way_cuts += 1;
        self.note(now, what);
        Active::OneWay { pairs, open }
    }

    fn crash(&mut self, sim: &mut Sim<'_>, now: Duration, node: NodeId, aim: &str) {
        // Half the crashes lose every unsynced page; the others keep each with chance 1/2.
        let torn = self.rng.random_bool(0.5);
        let unsynced: u64 = self.disks.get(&node).map_or(0, |d| d.files().iter().map(|f| d.unsynced_bytes(f)).sum());
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
        self.counts.crashes += 1;
        let lost = if torn { "some of" } else { "all" };
        self.note(now, format!("crash n{node} ({aim}), losing {lost} {unsynced} unsynced bytes"));
    }

    fn end_fault(&mut self, sim: &mut Sim<'_>, now: Duration, fault: Active) {
        match fault {
            Active::Cut(pairs) | Active::OneWay { pairs, .. } => {
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
        self.note(now, "faults over: everything healed but the clocks".to_owned());
    }
}

/// Delivers the held messages that travel an open direction `(source, destination)` of
/// a one-way cut, at the next step.
fn pass_one_way(sim: &Sim<'_>, open: &[(IpAddr, IpAddr)]) {
    sim.links(|links| {
        for link in links {
            for sent in link {
                let (src, dst) = sent.pair();
                if open.contains(&(src.ip(), dst.ip())) {
                    sent.deliver();
                }
            }
        }
    });
}
