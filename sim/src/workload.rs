//! The register workload: a few clients reading, writing and compare-and-setting a few
//! keys through `Kernel::execute` on random nodes, recorded in `check`'s history format
//! with simulated-time timestamps, then a recovery phase that reads every key once the
//! faults have stopped.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use kahuna_check::{Event, EventKind, History};
use kahuna_kernel::{
    Consistency, Durability, KvError, NodeId, PartitionRequest, PartitionResponse, PointRead, SetArgs, WriteOp,
    WriteResult, partition_of,
};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use crate::net::{self, CallError};

/// How long a client waits for a node's answer before recording the outcome as unknown:
/// past a forwarded request's own timeout, so an answer that can come does.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long after the faults end the recovery reads start.
const HEAL_MARGIN: Duration = Duration::from_millis(10);
/// Longest pause of a client between two operations, in ms.
const THINK_MS_MAX: u64 = 50;

/// What the workload does.
#[derive(Debug, Clone)]
pub struct WorkloadSpec {
    pub seed: u64,
    pub clients: u64,
    pub keys: usize,
    pub nodes: Vec<NodeId>,
    pub partitions: u32,
    /// Clients invoke operations until this much simulated time has passed.
    pub active: Duration,
    /// After that, how long each key may take to be read successfully.
    pub recovery: Duration,
}

/// What the workload saw.
#[derive(Debug, Clone, Default)]
pub struct WorkloadOutcome {
    pub history: History,
    /// Keys not read successfully within the recovery time after the faults stopped.
    pub unrecovered: Vec<String>,
    /// Simulated time from the end of the faults until every key was read, if it was.
    pub recovered_after: Option<Duration>,
}

/// Events recorded by every client, stamped with one simulated clock.
#[derive(Clone)]
struct Recorder {
    base: Instant,
    events: Arc<Mutex<Vec<Event>>>,
}

impl Recorder {
    fn lock(&self) -> MutexGuard<'_, Vec<Event>> {
        self.events.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record(&self, kind: EventKind, process: u64, f: &str, fields: Value) {
        let fields = match fields {
            Value::Object(map) => map,
            other => Map::from_iter([("value".to_owned(), other)]),
        };
        let time = u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.lock().push(Event { kind, process, time, f: f.to_owned(), fields });
    }
}

/// One register operation.
#[derive(Debug, Clone)]
enum Op {
    Read,
    Write(u64),
    Cas { expected: u64, new: u64 },
}

impl Op {
    fn name(&self) -> &'static str {
        match self {
            Op::Read => "read",
            Op::Write(_) => "write",
            Op::Cas { .. } => "cas",
        }
    }

    fn fields(&self, key: &str) -> Value {
        match self {
            Op::Read => json!({ "key": key }),
            Op::Write(value) => json!({ "key": key, "value": value }),
            Op::Cas { expected, new } => json!({ "key": key, "expected": expected, "new": new }),
        }
    }

    fn request(&self, key: &str) -> PartitionRequest {
        let set = |value: u64, compare: Option<u64>| PartitionRequest::Write {
            ops: vec![WriteOp::Set(SetArgs {
                key: key.to_owned(),
                value: value.to_string().into_bytes(),
                compare_value: compare.map(|v| v.to_string().into_bytes()),
                ..SetArgs::default()
            })],
            operation_id: None,
            durability: Durability::Persistent,
        };
        match self {
            Op::Read => PartitionRequest::Read {
                reads: vec![PointRead { key: key.to_owned(), at_revision: None, as_of: None }],
                durability: Durability::Persistent,
                consistency: Consistency::Linearizable,
            },
            Op::Write(value) => set(*value, None),
            Op::Cas { expected, new } => set(*new, Some(*expected)),
        }
    }
}

/// How an operation ended, and the completion's fields.
enum Completion {
    Ok(Value),
    Fail(String),
    Info(String),
}

/// Judges a node's answer (or its absence) to `op`.
fn complete(op: &Op, answer: Result<net::ExecReply, CallError>) -> Completion {
    let served = match answer {
        Ok(Ok(served)) => served,
        // A read changes nothing: whatever went wrong, it did not happen.
        Ok(Err(e)) if matches!(op, Op::Read) => return Completion::Fail(e.to_string()),
        Err(e) if matches!(op, Op::Read) => return Completion::Fail(e.to_string()),
        // Refused before anything was proposed, or never sent.
        Ok(Err(e @ (KvError::NotLeader { .. } | KvError::InvalidInput(_)))) => return Completion::Fail(e.to_string()),
        Err(e @ CallError::NotSent(_)) => return Completion::Fail(e.to_string()),
        // Any other error of a write (a timeout, an unreachable leader, a stopped
        // partition) may follow a proposal that still commits.
        Ok(Err(e)) => return Completion::Info(e.to_string()),
        Err(e) => return Completion::Info(e.to_string()),
    };
    match (op, served.value) {
        (Op::Read, PartitionResponse::Read(values)) => match values.into_iter().next() {
            Some(Some(kv)) => match String::from_utf8_lossy(&kv.value).parse::<u64>() {
                Ok(v) => Completion::Ok(json!({ "value": v })),
                Err(_) => Completion::Ok(json!({ "value": String::from_utf8_lossy(&kv.value) })),
            },
            _ => Completion::Ok(json!({ "value": null })),
        },
        (Op::Write(_), PartitionResponse::Write(results)) => match results.first() {
            Some(WriteResult::Set { modified: true, .. }) => Completion::Ok(json!({})),
            other => Completion::Info(format!("unexpected write result {other:?}")),
        },
        (Op::Cas { .. }, PartitionResponse::Write(results)) => match results.first() {
            Some(WriteResult::Set { modified: true, .. }) => Completion::Ok(json!({})),
            Some(WriteResult::Set { modified: false, .. }) => Completion::Fail("compare failed".into()),
            other => Completion::Info(format!("unexpected cas result {other:?}")),
        },
        (_, other) => Completion::Info(format!("unexpected answer {other:?}")),
    }
}

/// Runs one operation on a node and records it; returns how it ended.
async fn invoke(recorder: &Recorder, process: u64, node: NodeId, partitions: u32, key: &str, op: &Op) -> Completion {
    recorder.record(EventKind::Invoke, process, op.name(), op.fields(key));
    let request = (partition_of(key, partitions), op.request(key));
    let completion = complete(op, net::execute(node, &request, CALL_TIMEOUT).await);
    let (kind, fields) = match &completion {
        Completion::Ok(fields) => (EventKind::Ok, fields.clone()),
        Completion::Fail(error) => (EventKind::Fail, json!({ "error": error, "node": node })),
        Completion::Info(error) => (EventKind::Info, json!({ "error": error, "node": node })),
    };
    recorder.record(kind, process, op.name(), fields);
    completion
}

fn key_name(k: usize) -> String {
    format!("k{k}")
}

/// One client: random operations on random keys through random nodes, one at a time.
async fn client(spec: Arc<WorkloadSpec>, index: u64, recorder: Recorder) {
    let mut rng = SmallRng::seed_from_u64(spec.seed ^ 0x5bd1_e995_u64.wrapping_mul(index + 1));
    let mut process = index;
    let mut written = 0u64;
    // The last value this client saw in each key: what its compare-and-sets expect.
    let mut seen: Vec<Option<u64>> = vec![None; spec.keys];
    while recorder.base.elapsed() < spec.active {
        let k = rng.random_range(0..spec.keys);
        let node = spec.nodes[rng.random_range(0..spec.nodes.len())];
        let next_value = |written: &mut u64| {
            *written += 1;
            (index + 1) * 1_000_000 + *written
        };
        let op = match (rng.random_range(0..10), seen[k]) {
            (0..4, _) => Op::Read,
            (4..7, _) | (_, None) => Op::Write(next_value(&mut written)),
            (_, Some(expected)) => Op::Cas { expected, new: next_value(&mut written) },
        };
        let key = key_name(k);
        match invoke(&recorder, process, node, spec.partitions, &key, &op).await {
            Completion::Ok(fields) => {
                seen[k] = match &op {
                    Op::Read => fields.get("value").and_then(Value::as_u64),
                    Op::Write(v) | Op::Cas { new: v, .. } => Some(*v),
                };
            }
            Completion::Fail(_) => {}
            // A process with an operation of unknown outcome is never reused (as in
            // Jepsen): its later operations run as a new process.
            Completion::Info(_) => process += spec.clients,
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..=THINK_MS_MAX))).await;
    }
}

/// Reads key `k` through each node in turn until one answers, up to `deadline`; returns
/// when it did, if it did.
async fn recover(
    spec: Arc<WorkloadSpec>,
    k: usize,
    process: u64,
    recorder: Recorder,
    deadline: Instant,
) -> Option<Instant> {
    let key = key_name(k);
    let mut attempt = 0usize;
    while Instant::now() < deadline {
        let node = spec.nodes[(k + attempt) % spec.nodes.len()];
        if let Completion::Ok(_) = invoke(&recorder, process, node, spec.partitions, &key, &Op::Read).await {
            return Some(Instant::now());
        }
        attempt += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// Runs the workload and, once the faults are over, the recovery reads (while clients
/// may still wait for answers to their last operations); the outcome goes to `out`.
pub async fn run(spec: WorkloadSpec, out: Arc<Mutex<WorkloadOutcome>>) -> turmoil::Result {
    let recorder = Recorder { base: Instant::now(), events: Arc::default() };
    let spec = Arc::new(spec);
    let clients: Vec<_> = (0..spec.clients).map(|i| tokio::spawn(client(spec.clone(), i, recorder.clone()))).collect();
    // The nemesis heals everything once `active` has passed (after that step: a little
    // later here, so that no recovery read sets out into the last of the faults).
    let healed = recorder.base + spec.active;
    tokio::time::sleep_until(healed + HEAL_MARGIN).await;
    let deadline = healed + spec.recovery;
    let readers: Vec<_> = (0..spec.keys)
        .map(|k| {
            // Processes past every client's: each reader is its own logical thread.
            let process = 1_000_000 + k as u64;
            tokio::spawn(recover(spec.clone(), k, process, recorder.clone(), deadline))
        })
        .collect();
    let mut unrecovered = Vec::new();
    let mut last_read = healed;
    for (k, handle) in readers.into_iter().enumerate() {
        match handle.await? {
            Some(at) => last_read = last_read.max(at),
            None => unrecovered.push(key_name(k)),
        }
    }
    for handle in clients {
        handle.await?;
    }
    let recovered_after = unrecovered.is_empty().then(|| last_read - healed);
    let history = History::from_events(recorder.lock().clone());
    let mut outcome = out.lock().unwrap_or_else(|p| p.into_inner());
    *outcome = WorkloadOutcome { history, unrecovered, recovered_after };
    Ok(())
}
