//! The register workload: clients reading, writing and compare-and-setting a few keys
//! through random nodes; checked for linearizability per key. Its recovery reads every
//! key once.

use std::sync::Arc;

use kahuna_check::History;
use kahuna_kernel::{
    Consistency, Durability, PartitionRequest, PartitionResponse, PointRead, SetArgs, WriteOp, WriteResult,
    partition_of,
};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::derive;

use super::{Answer, Completion, Recorder, WorkloadSpec, any_node, call, think};

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

    /// Judges a node's answer (or its absence).
    fn complete(&self, answer: Answer) -> Completion {
        let failure = match self {
            Op::Read => answer.read_failure(),
            Op::Write(_) | Op::Cas { .. } => answer.write_failure(),
        };
        let value = match (failure, answer) {
            (Some(failure), _) => return failure,
            (None, Answer::Served { value, .. }) => value,
            (None, other) => return Completion::Info(json!({ "error": format!("unexpected {other:?}") })),
        };
        match (self, value) {
            (Op::Read, PartitionResponse::Read(values)) => match values.into_iter().next() {
                Some(Some(kv)) => match String::from_utf8_lossy(&kv.value).parse::<u64>() {
                    Ok(v) => Completion::Ok(json!({ "value": v })),
                    Err(_) => Completion::Ok(json!({ "value": String::from_utf8_lossy(&kv.value) })),
                },
                _ => Completion::Ok(json!({ "value": null })),
            },
            (Op::Write(_), PartitionResponse::Write(results)) => match results.first() {
                Some(WriteResult::Set { modified: true, .. }) => Completion::Ok(json!({})),
                other => Completion::Info(json!({ "error": format!("unexpected write result {other:?}") })),
            },
            (Op::Cas { .. }, PartitionResponse::Write(results)) => match results.first() {
                Some(WriteResult::Set { modified: true, .. }) => Completion::Ok(json!({})),
                Some(WriteResult::Set { modified: false, .. }) => {
                    Completion::Fail(json!({ "error": "compare failed" }))
                }
                other => Completion::Info(json!({ "error": format!("unexpected cas result {other:?}") })),
            },
            (_, other) => Completion::Info(json!({ "error": format!("unexpected answer {other:?}") })),
        }
    }
}

pub(super) fn key_name(k: usize) -> String {
    format!("k{k}")
}

/// The register workload of one run. Cheap to clone.
#[derive(Clone)]
pub(super) struct Register {
    spec: Arc<WorkloadSpec>,
    recorder: Recorder,
}

impl Register {
    pub(super) fn new(spec: Arc<WorkloadSpec>, recorder: Recorder) -> Self {
        Self { spec, recorder }
    }

    /// Registers to recover.
    pub(super) fn objects(&self) -> usize {
        self.spec.keys
    }

    pub(super) fn history(&self) -> History {
        self.recorder.history()
    }

    /// Runs `op` on `key` through `node` and records it.
    async fn invoke(&self, process: u64, node: u64, key: &str, op: &Op) -> Completion {
        self.recorder.invoke(process, op.name(), op.fields(key));
        let partition = partition_of(key, self.spec.partitions);
        let mut completion = op.complete(call(node, partition, op.request(key)).await);
        if let Completion::Fail(fields) | Completion::Info(fields) = &mut completion
            && let Some(map) = fields.as_object_mut()
        {
            map.insert("node".to_owned(), json!(node));
        }
        self.recorder.complete(process, op.name(), &completion);
        completion
    }

    /// One client: random operations on random keys through random nodes, one at a time.
    pub(super) async fn client(self, index: u64) {
        let spec = self.spec.clone();
        let mut rng = SmallRng::seed_from_u64(derive(spec.seed, 100 + index));
        let mut process = index;
        let mut written = 0u64;
        // The last value this client saw in each key: what its compare-and-sets expect.
        let mut seen: Vec<Option<u64>> = vec![None; spec.keys];
        while self.recorder.active(&spec) {
            let k = rng.random_range(0..spec.keys);
            let node = any_node(&spec, &mut rng);
            let next_value = |written: &mut u64| {
                *written += 1;
                (index + 1) * 1_000_000 + *written
            };
            let op = match (rng.random_range(0..10), seen[k]) {
                (0..4, _) => Op::Read,
                (4..7, _) | (_, None) => Op::Write(next_value(&mut written)),
                (_, Some(expected)) => Op::Cas { expected, new: next_value(&mut written) },
            };
            match self.invoke(process, node, &key_name(k), &op).await {
                Completion::Ok(fields) => {
                    seen[k] = match &op {
                        Op::Read => fields.get("value").and_then(Value::as_u64),
                        Op::Write(v) | Op::Cas { new: v, .. } => Some(*v),
                    };
                }
                Completion::Fail(_) => {}
                // A process with an operation of unknown outcome is never reused (as in
                // Jepsen): its later operations run as a new process.
                Completion::Info(_) => process += spec.clients.register,
            }
            think(&mut rng).await;
        }
    }

    /// One recovery attempt: reads key `k` through the next node in turn.
    pub(super) async fn recover(self, k: usize, process: u64, attempt: usize) -> bool {
        let node = self.spec.nodes[(k + attempt) % self.spec.nodes.len()];
        matches!(self.invoke(process, node, &key_name(k), &Op::Read).await, Completion::Ok(_))
    }
}
