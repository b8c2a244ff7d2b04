//! The workloads: clients on the workload host that call `Kernel::execute` on random
//! nodes through the execute protocol, each workload recording its own history in
//! `check`'s format with simulated-time timestamps, all of them at once against one
//! cluster; then a recovery phase in which every workload shows, object by object, that
//! the cluster serves it again once the faults have stopped.
//!
//! - `register`: reads, writes and compare-and-sets of a few keys (linearizability).
//! - `lock`: contended locks with short leases, persistent and ephemeral, and writes to
//!   a fenced resource with the granted tokens (lock safety).
//! - `sequence`: `next` and `reserve` with idempotency keys, replayed after unknown
//!   outcomes (no value twice, one allocation per key, values on the stride).
//! - `append`: list-append transactions coordinated by random nodes' transaction engines
//!   (Elle's anomalies G0 to G2, and real-time order).
//!
//! What a node's answer (or its absence) proves is judged once, in [`call`]: refusals
//! before anything was proposed are definite, everything else after the request was sent
//! may have taken effect.

mod append;
mod lock;
mod register;
mod sequence;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use kahuna_check::{Event, EventKind, History};
use kahuna_kernel::{KvError, NodeId, PartitionId, PartitionRequest, PartitionResponse};
use rand::Rng;
use rand::rngs::SmallRng;
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use crate::net::{self, CallError, ExecReply, ExecRequest};

/// How long a client waits for a node's answer before recording the outcome as unknown:
/// past a forwarded request's own timeout, so an answer that can come does.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long after the faults end the recovery starts.
const HEAL_MARGIN: Duration = Duration::from_millis(10);
/// Longest pause of a client between two operations, in ms.
const THINK_MS_MAX: u64 = 50;
/// Pause between two recovery attempts on one object.
const RECOVERY_PAUSE: Duration = Duration::from_millis(100);
/// Process ids of recovery tasks start here, past every client's.
const RECOVERY_PROCESS_BASE: u64 = 1_000_000;

/// A workload, and the history it records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Workload {
    Register,
    Lock,
    Sequence,
    Append,
}

impl Workload {
    pub const ALL: [Workload; 4] = [Workload::Register, Workload::Lock, Workload::Sequence, Workload::Append];

    pub fn name(self) -> &'static str {
        match self {
            Workload::Register => "register",
            Workload::Lock => "lock",
            Workload::Sequence => "sequence",
            Workload::Append => "append",
        }
    }
}

/// Concurrent clients of each workload; 0 leaves a workload out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clients {
    pub register: u64,
    pub lock: u64,
    pub sequence: u64,
    pub append: u64,
}

impl Clients {
    pub fn of(&self, workload: Workload) -> u64 {
        match workload {
            Workload::Register => self.register,
            Workload::Lock => self.lock,
            Workload::Sequence => self.sequence,
            Workload::Append => self.append,
        }
    }

    fn of_mut(&mut self, workload: Workload) -> &mut u64 {
        match workload {
            Workload::Register => &mut self.register,
            Workload::Lock => &mut self.lock,
            Workload::Sequence => &mut self.sequence,
            Workload::Append => &mut self.append,
        }
    }

    /// These counts changed by `overrides`, a list like `"lock=0,append=5"`.
    pub fn with(mut self, overrides: &str) -> Result<Self, String> {
        for item in overrides.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (name, count) = item.split_once('=').ok_or_else(|| format!("{item:?} is not WORKLOAD=COUNT"))?;
            let workload = Workload::ALL
                .into_iter()
                .find(|w| w.name() == name.trim())
                .ok_or_else(|| format!("no workload {name:?} (register, lock, sequence, append)"))?;
            *self.of_mut(workload) = count.trim().parse().map_err(|e| format!("{item:?}: {e}"))?;
        }
        Ok(self)
    }
}

impl std::fmt::Display for Clients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let counts: Vec<String> = Workload::ALL.iter().map(|w| format!("{}={}", w.name(), self.of(*w))).collect();
        f.write_str(&counts.join(","))
    }
}

/// What the workloads do.
#[derive(Debug, Clone)]
pub struct WorkloadSpec {
    pub seed: u64,
    pub clients: Clients,
    /// Registers of the register workload.
    pub keys: usize,
    pub nodes: Vec<NodeId>,
    pub partitions: u32,
    /// Clients invoke operations until this much simulated time has passed.
    pub active: Duration,
    /// After that, how long each object may take to be served again.
    pub recovery: Duration,
}

/// What the workloads saw.
#[derive(Debug, Clone, Default)]
pub struct WorkloadOutcome {
    /// One history per workload that ran.
    pub histories: BTreeMap<Workload, History>,
    /// Objects (`"register k1"`, `"lock lock-0"`, ...) not served within the recovery time
    /// after the faults stopped.
    pub unrecovered: Vec<String>,
    /// Simulated time from the end of the faults until every object was served, if it was.
    pub recovered_after: Option<Duration>,
    /// Problems a workload found beyond its checker's (a value off its sequence's stride).
    pub anomalies: Vec<String>,
    /// Settings the workloads drew from the seed, one line each.
    pub setup: Vec<String>,
}

/// Events of one workload's clients, stamped with the run's one simulated clock.
#[derive(Clone)]
pub(crate) struct Recorder {
    base: Instant,
    events: Arc<Mutex<Vec<Event>>>,
}

impl Recorder {
    fn new(base: Instant) -> Self {
        Self { base, events: Arc::default() }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Event>> {
        self.events.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record(&self, kind: EventKind, process: u64, f: &str, fields: Value) {
        let fields = match fields {
            Value::Object(map) => map,
            Value::Null => Map::new(),
            other => Map::from_iter([("value".to_owned(), other)]),
        };
        let time = u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.lock().push(Event { kind, process, time, f: f.to_owned(), fields });
    }

    /// Records the invoke of `f` with its arguments.
    pub(crate) fn invoke(&self, process: u64, f: &str, fields: Value) {
        self.record(EventKind::Invoke, process, f, fields);
    }

    /// Records how `f` ended.
    pub(crate) fn complete(&self, process: u64, f: &str, completion: &Completion) {
        let (kind, fields) = match completion {
            Completion::Ok(fields) => (EventKind::Ok, fields.clone()),
            Completion::Fail(fields) => (EventKind::Fail, fields.clone()),
            Completion::Info(fields) => (EventKind::Info, fields.clone()),
        };
        self.record(kind, process, f, fields);
    }

    /// Whether the clients' active time is over.
    pub(crate) fn active(&self, spec: &WorkloadSpec) -> bool {
        self.base.elapsed() < spec.active
    }

    fn history(&self) -> History {
        History::from_events(self.lock().clone())
    }
}

/// How an operation ended, with the completion's fields.
#[derive(Debug, Clone)]
pub(crate) enum Completion {
    /// It took effect.
    Ok(Value),
    /// It did not.
    Fail(Value),
    /// It may have, or may yet.
    Info(Value),
}

/// A node's answer to one request, or its absence, sorted by what it proves.
#[derive(Debug)]
pub(crate) enum Answer {
    /// The request was served.
    Served { value: PartitionResponse, node: NodeId },
    /// Refused before anything was proposed (not the leader, invalid, not found, past a
    /// sequence's maximum), or never sent: nothing happened.
    Refused(String),
    /// Anything else (a timeout, an unreachable leader, a stopped partition, a lost
    /// connection) may follow a proposal that still commits.
    Unknown(String),
}

impl Answer {
    /// The completion of an operation that changes nothing: whatever went wrong, it did
    /// not happen.
    pub(crate) fn read_failure(&self) -> Option<Completion> {
        match self {
            Answer::Served { .. } => None,
            Answer::Refused(e) | Answer::Unknown(e) => Some(Completion::Fail(json!({ "error": e }))),
        }
    }

    /// The completion of an operation that may change something, when it was not served.
    pub(crate) fn write_failure(&self) -> Option<Completion> {
        match self {
            Answer::Served { .. } => None,
            Answer::Refused(e) => Some(Completion::Fail(json!({ "error": e }))),
            Answer::Unknown(e) => Some(Completion::Info(json!({ "error": e }))),
        }
    }
}

/// Sends `request` for `partition` to node `node` and sorts its answer.
pub(crate) async fn call(node: NodeId, partition: PartitionId, request: PartitionRequest) -> Answer {
    let reply = match net::execute(node, &ExecRequest::Partition(partition, request), CALL_TIMEOUT).await {
        Ok(ExecReply::Partition(reply)) => Ok(reply),
        Ok(ExecReply::Txn(other)) => return Answer::Unknown(format!("n{node}: unexpected answer {other:?}")),
        Err(e) => Err(e),
    };
    match reply {
        Ok(Ok(served)) => Answer::Served { value: served.value, node: served.served_by },
        Ok(Err(
            e @ (KvError::NotLeader { .. } | KvError::InvalidInput(_) | KvError::NotFound(_) | KvError::Exhausted(_)),
        )) => Answer::Refused(format!("n{node}: {e}")),
        Err(e @ CallError::NotSent(_)) => Answer::Refused(format!("n{node}: {e}")),
        Ok(Err(e)) => Answer::Unknown(format!("n{node}: {e}")),
        Err(e) => Answer::Unknown(format!("n{node}: {e}")),
    }
}

/// A random node.
pub(crate) fn any_node(spec: &WorkloadSpec, rng: &mut SmallRng) -> NodeId {
    spec.nodes[rng.random_range(0..spec.nodes.len())]
}

/// A client's pause between two operations.
pub(crate) async fn think(rng: &mut SmallRng) {
    tokio::time::sleep(Duration::from_millis(rng.random_range(0..=THINK_MS_MAX))).await;
}

/// Tries `attempt` on one object until it succeeds or `deadline` passes; returns when it
/// succeeded, if it did.
async fn recover_object<F, Fut>(deadline: Instant, mut attempt: F) -> Option<Instant>
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = bool>,
{
    let mut tries = 0usize;
    while Instant::now() < deadline {
        if attempt(tries).await {
            return Some(Instant::now());
        }
        tries += 1;
        tokio::time::sleep(RECOVERY_PAUSE).await;
    }
    None
}

/// Runs the workloads and, once the faults are over, the recovery (while clients may
/// still wait for answers to their last operations); the outcome goes to `out`.
pub async fn run(spec: WorkloadSpec, out: Arc<Mutex<WorkloadOutcome>>) -> turmoil::Result {
    let base = Instant::now();
    let spec = Arc::new(spec);
    let register = register::Register::new(spec.clone(), Recorder::new(base));
    let lock = lock::Locks::new(spec.clone(), Recorder::new(base));
    let sequence = sequence::Sequences::new(spec.clone(), Recorder::new(base));
    let append = append::Appends::new(spec.clone(), Recorder::new(base));
    // Before any client starts, and before the first fault: settings that must exist.
    sequence.create_all().await;
    let mut clients = Vec::new();
    for i in 0..spec.clients.register {
        clients.push(tokio::spawn(register.clone().client(i)));
    }
    for i in 0..spec.clients.lock {
        clients.push(tokio::spawn(lock.clone().client(i)));
    }
    for i in 0..spec.clients.sequence {
        clients.push(tokio::spawn(sequence.clone().client(i)));
    }
    for i in 0..spec.clients.append {
        clients.push(tokio::spawn(append.clone().client(i)));
    }
    // The nemesis heals everything once `active` has passed (after that step: a little
    // later here, so that no recovery attempt sets out into the last of the faults).
    let healed = base + spec.active;
    tokio::time::sleep_until(healed + HEAL_MARGIN).await;
    let deadline = healed + spec.recovery;
    let mut recoveries = Vec::new();
    let mut process = RECOVERY_PROCESS_BASE;
    if spec.clients.register > 0 {
        for k in 0..register.objects() {
            let (w, p) = (register.clone(), process);
            let name = format!("register {}", register::key_name(k));
            recoveries.push((name, tokio::spawn(recover_object(deadline, move |n| w.clone().recover(k, p, n)))));
            process += 1;
        }
    }
    if spec.clients.lock > 0 {
        for l in 0..lock.objects() {
            let (w, p) = (lock.clone(), process);
            let name = format!("lock {}", lock.name(l));
            recoveries.push((name, tokio::spawn(recover_object(deadline, move |n| w.clone().recover(l, p, n)))));
            process += 1;
        }
    }
    if spec.clients.sequence > 0 {
        for s in 0..sequence.objects() {
            let (w, p) = (sequence.clone(), process);
            let name = format!("sequence {}", sequence.name(s));
            recoveries.push((name, tokio::spawn(recover_object(deadline, move |n| w.clone().recover(s, p, n)))));
            process += 1;
        }
    }
    if spec.clients.append > 0 {
        let (w, p) = (append.clone(), process);
        let name = "append lists".to_owned();
        recoveries.push((name, tokio::spawn(recover_object(deadline, move |n| w.clone().recover(p, n)))));
    }
    let mut unrecovered = Vec::new();
    let mut last = healed;
    for (name, handle) in recoveries {
        match handle.await? {
            Some(at) => last = last.max(at),
            None => unrecovered.push(name),
        }
    }
    for handle in clients {
        handle.await?;
    }
    let mut histories = BTreeMap::new();
    for workload in Workload::ALL.into_iter().filter(|w| spec.clients.of(*w) > 0) {
        let history = match workload {
            Workload::Register => register.history(),
            Workload::Lock => lock.history(),
            Workload::Sequence => sequence.history(),
            Workload::Append => append.history(),
        };
        histories.insert(workload, history);
    }
    let mut anomalies = Vec::new();
    if spec.clients.sequence > 0 {
        anomalies.extend(sequence.anomalies(&histories));
    }
    let setup = vec![lock.setup(), sequence.setup(), append.setup()];
    let recovered_after = unrecovered.is_empty().then(|| last - healed);
    let mut outcome = out.lock().unwrap_or_else(|p| p.into_inner());
    *outcome = WorkloadOutcome { histories, unrecovered, recovered_after, anomalies, setup };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_counts_are_overridden_by_name_and_print_back() {
        let base = Clients { register: 4, lock: 3, sequence: 3, append: 3 };
        let changed = base.with("lock=0, append=5").expect("valid overrides");
        assert_eq!(changed, Clients { register: 4, lock: 0, sequence: 3, append: 5 });
        assert_eq!(changed.to_string(), "register=4,lock=0,sequence=3,append=5");
        assert_eq!(base.with(&changed.to_string()), Ok(changed), "the printed form parses back");
        assert!(base.with("bank=1").is_err_and(|e| e.contains("no workload")));
        assert!(base.with("lock").is_err());
        assert!(base.with("lock=x").is_err());
    }
}
