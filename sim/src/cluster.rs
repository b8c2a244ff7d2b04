//! One simulation run: a cluster, the workloads, the nemesis, all chosen by one seed; the
//! histories they recorded, each judged by its checker.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use kahuna_check::{
    AppendOptions, History, Outcome, RegisterOptions, Report, check_append, check_lock, check_register, check_sequence,
};
use kahuna_kernel::{NodeId, SimDisk, fnv1a64};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::derive;
use crate::nemesis::{FaultCounts, Nemesis, Targets};
use crate::net::{NODE_PORT, host_name};
use crate::node::{self, Board, NodeSpec, SimClock};
use crate::workload::{self, CALL_TIMEOUT, Clients, Workload, WorkloadOutcome, WorkloadSpec};

/// The simulated wall clock starts here (2024-01-01), so every run sees the same times.
const EPOCH_SECS: u64 = 1_704_067_200;
/// The normal largest latency of a link; most messages take far less (exponential).
const LATENCY_MAX: Duration = Duration::from_millis(20);
/// The simulated host the workload's clients run on.
const WORKLOAD_HOST: &str = "workload";
/// Each node's request timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// What to simulate. Everything not set here is drawn from the seed.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub seed: u64,
    pub nodes: u64,
    /// Clients of each workload; they all run at once against the one cluster.
    pub clients: Clients,
    /// Registers of the register workload.
    pub keys: usize,
    /// Simulated time with clients and faults; the recovery phase follows.
    pub active: Duration,
    /// After the faults, how long every object (key, lock, sequence) may take to be
    /// served again.
    pub recovery: Duration,
    /// Whether the nemesis runs.
    pub faults: bool,
}

impl SimConfig {
    /// The configuration CI runs for `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            nodes: 3,
            clients: Clients { register: 4, lock: 3, sequence: 3, append: 3 },
            keys: 4,
            active: Duration::from_secs(20),
            recovery: Duration::from_secs(30),
            faults: true,
        }
    }
}

/// A simulation that could not run to its end.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// Turmoil stopped the run: a host's software failed (a node could not open its data
    /// after a crash, say) or the run overstayed its simulated time.
    #[error("simulation failed after {elapsed:?} simulated: {reason}")]
    Turmoil { elapsed: Duration, reason: String },
}

/// One workload's history and its checker's verdict.
#[derive(Debug, Clone)]
pub struct Checked {
    pub history: History,
    /// Whether the checker found the history valid.
    pub ok: bool,
    /// The checker's report, as it prints itself.
    pub report: String,
}

impl Checked {
    fn new(history: History, report: &impl Report) -> Self {
        Self { ok: report.ok(), report: report.to_string(), history }
    }

    /// `"N ops (ok, failed, unknown)"`.
    fn counts(&self) -> String {
        let ops = self.history.operations().unwrap_or_default();
        let count = |o: Outcome| ops.iter().filter(|op| op.outcome == o).count();
        format!(
            "{} ops ({} ok, {} failed, {} unknown)",
            ops.len(),
            count(Outcome::Ok),
            count(Outcome::Fail),
            count(Outcome::Unknown)
        )
    }
}

/// What a run produced.
#[derive(Debug)]
pub struct SimRun {
    pub config: SimConfig,
    /// The settings the seed chose, one line.
    pub setup: String,
    /// Each workload that ran, checked.
    pub checked: BTreeMap<Workload, Checked>,
    /// FNV-1a of every history as JSONL: equal for equal runs.
    pub history_hash: u64,
    pub workload: WorkloadOutcome,
    /// The nemesis's actions.
    pub faults: Vec<String>,
    pub counts: FaultCounts,
    pub steps: u64,
    pub simulated: Duration,
}

impl SimRun {
    /// Everything that makes this run a failure; empty when it passed.
    pub fn failures(&self) -> Vec<String> {
        let mut failures = Vec::new();
        for (workload, checked) in &self.checked {
            if !checked.ok {
                failures.push(format!("{} checker: {}", workload.name(), checked.report));
            }
        }
        failures.extend(self.workload.anomalies.iter().cloned());
        if !self.workload.unrecovered.is_empty() {
            failures.push(format!(
                "{:?} not served within {:?} after the faults stopped",
                self.workload.unrecovered, self.config.recovery
            ));
        }
        failures
    }

    /// One line: the counts of the run.
    pub fn summary(&self) -> String {
        let workloads: Vec<String> =
            self.checked.iter().map(|(w, checked)| format!("{} {}", w.name(), checked.counts())).collect();
        format!(
            "seed {}: {}; {} crashes, {} cuts, {} one-way cuts, {} clock jumps, {:.1}s simulated in {} steps, \
             recovered after {}, histories {:016x}, {}",
            self.config.seed,
            workloads.join(", "),
            self.counts.crashes,
            self.counts.cuts,
            self.counts.one_way_cuts,
            self.counts.clock_jumps,
            self.simulated.as_secs_f64(),
            self.steps,
            self.workload.recovered_after.map_or("never".to_owned(), |d| format!("{:.1}s", d.as_secs_f64())),
            self.history_hash,
            if self.failures().is_empty() { "PASS" } else { "FAIL" },
        )
    }
}

/// Runs the simulation `config` describes, to its end.
pub fn run(config: &SimConfig) -> Result<SimRun, SimError> {
    let mut rng = SmallRng::seed_from_u64(derive(config.seed, 0));
    let ids: Vec<NodeId> = (1..=config.nodes).collect();
    let peers: BTreeMap<NodeId, String> =
        ids.iter().map(|id| (*id, format!("{}:{NODE_PORT}", host_name(*id)))).collect();
    let partitions = rng.random_range(1..=4u32);
    let snapshot_logs = [20u64, 100, 1_000][rng.random_range(0..3)];
    // Distinct election timeouts, at least 20 ms apart, so that ties cannot repeat.
    let mut timeouts: Vec<u64> = (0..10u64).map(|i| 250 + 20 * i).collect();
    let board = Board::default();
    let mut disks = BTreeMap::new();
    let mut clocks = BTreeMap::new();
    let mut specs = Vec::new();
    for id in &ids {
        let election_timeout_ms = timeouts.swap_remove(rng.random_range(0..timeouts.len()));
        let skew_ms = rng.random_range(-50..=50);
        let disk = SimDisk::new();
        disks.insert(*id, disk.clone());
        let clock = SimClock::new(skew_ms);
        clocks.insert(*id, clock.clone());
        specs.push(NodeSpec {
            id: *id,
            peers: peers.clone(),
            partitions,
            disk,
            election_timeout_ms,
            clock,
            snapshot_logs,
            request_timeout: REQUEST_TIMEOUT,
            board: board.clone(),
        });
    }
    let setup = format!(
        "{} nodes, {partitions} partitions, snapshot every {snapshot_logs} entries, election timeouts {:?} ms, \
         clock skews {:?} ms",
        config.nodes,
        specs.iter().map(|s| s.election_timeout_ms).collect::<Vec<_>>(),
        specs.iter().map(|s| s.clock.skew_ms()).collect::<Vec<_>>(),
    );

    let total = config.active + config.recovery + CALL_TIMEOUT + Duration::from_secs(5);
    let mut sim = new_sim(config.seed, total);
    for spec in specs {
        sim.host(host_name(spec.id), move || node::run(spec.clone()));
    }
    let outcome = Arc::new(Mutex::new(WorkloadOutcome::default()));
    let workload = WorkloadSpec {
        seed: derive(config.seed, 2),
        clients: config.clients,
        keys: config.keys,
        nodes: ids.clone(),
        partitions,
        active: config.active,
        recovery: config.recovery,
    };
    sim.client(WORKLOAD_HOST, workload::run(workload, outcome.clone()));

    let fault_end = if config.faults { config.active } else { Duration::ZERO };
    let hosts = ids.iter().map(|id| host_name(*id)).chain([WORKLOAD_HOST.to_owned()]).collect();
    let targets = Targets { nodes: ids, hosts, disks, clocks, board };
    let mut nemesis = Nemesis::new(derive(config.seed, 3), targets, fault_end, LATENCY_MAX);
    let mut steps = 0u64;
    loop {
        steps += 1;
        match sim.step() {
            Ok(true) => break,
            Ok(false) => nemesis.tick(&mut sim),
            Err(e) => return Err(SimError::Turmoil { elapsed: sim.elapsed(), reason: e.to_string() }),
        }
    }
    let workload = std::mem::take(&mut *outcome.lock().unwrap_or_else(|p| p.into_inner()));
    let mut checked = BTreeMap::new();
    let mut jsonl = Vec::new();
    for (kind, history) in &workload.histories {
        // Writing to memory cannot fail.
        let _ = history.to_jsonl(&mut jsonl);
        let history = history.clone();
        let judged = match kind {
            Workload::Register => Checked::new(history.clone(), &check_register(&history, &RegisterOptions::default())),
            Workload::Lock => Checked::new(history.clone(), &check_lock(&history)),
            Workload::Sequence => Checked::new(history.clone(), &check_sequence(&history)),
            Workload::Append => Checked::new(history.clone(), &check_append(&history, &AppendOptions::default())),
        };
        checked.insert(*kind, judged);
    }
    let setup = std::iter::once(setup).chain(workload.setup.iter().cloned()).collect::<Vec<_>>().join("; ");
    Ok(SimRun {
        config: config.clone(),
        setup,
        checked,
        history_hash: fnv1a64(&jsonl),
        workload,
        faults: nemesis.log().to_vec(),
        counts: nemesis.counts(),
        steps,
        simulated: sim.elapsed(),
    })
}

/// A simulation of at most `duration`, its randomness drawn from `seed`: the links and
/// clock every run and scenario uses.
pub(crate) fn new_sim<'a>(seed: u64, duration: Duration) -> turmoil::Sim<'a> {
    turmoil::Builder::new()
        .rng_seed(derive(seed, 1))
        .epoch(SystemTime::UNIX_EPOCH + Duration::from_secs(EPOCH_SECS))
        .simulation_duration(duration)
        .tick_duration(Duration::from_millis(1))
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(LATENCY_MAX)
        // Held messages arrive in a burst when a cut heals; a small buffer would reset
        // the connections they belong to, which TCP does not do.
        .tcp_capacity(1 << 16)
        .build()
}
