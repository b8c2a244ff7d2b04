//! The sequence workload, as `kahuna check`'s: clients call `next` and `reserve` on one or
//! two sequences, every call with an idempotency key; checked by `check_sequence` (no
//! value handed out twice, every key answered with one allocation).
//!
//! After an unknown outcome a client replays the same call with the same key and count
//! the next time round, as a careful application would; the replay must return the first
//! allocation. The seed picks each sequence's start, increment and maximum (sometimes
//! close enough to be reached during the run, after which calls fail with `Exhausted`).
//! Beyond the checker, every value handed out must lie on its sequence's stride and not
//! past its maximum. The sequences are created before the first fault. Its recovery
//! takes one more value from each sequence (or learns it is exhausted).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use kahuna_check::{History, Outcome};
use kahuna_kernel::{PartitionRequest, PartitionResponse, SequenceOp, SequenceReply, partition_of};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::derive;

use super::{Answer, Completion, Recorder, Workload, WorkloadSpec, any_node, call, think};

/// Largest `reserve` count the workload asks for.
const RESERVE_COUNT_MAX: u64 = 5;
/// Sequences of a run: the seed picks within this range.
const SEQUENCES: std::ops::RangeInclusive<usize> = 1..=2;
/// Values a sequence with a maximum can hand out, at most: a few hundred calls reach it.
const CAPACITY_MAX: i64 = 1_500;

/// One sequence of the run, as created.
#[derive(Debug, Clone)]
struct SequenceSpec {
    name: String,
    start: i64,
    increment: i64,
    max: Option<i64>,
}

/// A call to make: its idempotency key and, for `reserve`, its count.
#[derive(Debug, Clone)]
struct Call {
    sequence: usize,
    key: String,
    count: Option<u64>,
}

/// The sequence workload of one run. Cheap to clone.
#[derive(Clone)]
pub(super) struct Sequences {
    spec: Arc<WorkloadSpec>,
    recorder: Recorder,
    sequences: Arc<[SequenceSpec]>,
    /// Numbers idempotency keys across clients.
    keys: Arc<AtomicU64>,
}

impl Sequences {
    pub(super) fn new(spec: Arc<WorkloadSpec>, recorder: Recorder) -> Self {
        let mut rng = SmallRng::seed_from_u64(derive(spec.seed, 500));
        let count = rng.random_range(SEQUENCES);
        let sequences = (0..count)
            .map(|i| {
                let start = rng.random_range(0..1_000);
                let increment = rng.random_range(1..=3);
                let max = rng.random_bool(0.5).then(|| start + increment * (rng.random_range(300..CAPACITY_MAX) - 1));
                SequenceSpec { name: format!("seq-{i}"), start, increment, max }
            })
            .collect();
        Self { spec, recorder, sequences, keys: Arc::new(AtomicU64::new(1)) }
    }

    /// Sequences to recover.
    pub(super) fn objects(&self) -> usize {
        self.sequences.len()
    }

    pub(super) fn name(&self, s: usize) -> &str {
        &self.sequences[s].name
    }

    pub(super) fn history(&self) -> History {
        self.recorder.history()
    }

    /// The sequences the seed chose, one line.
    pub(super) fn setup(&self) -> String {
        let sequences: Vec<String> = self
            .sequences
            .iter()
            .map(|s| {
                let max = s.max.map_or(String::new(), |m| format!(" max {m}"));
                format!("{} start {} increment {}{max}", s.name, s.start, s.increment)
            })
            .collect();
        format!("sequences: {}", sequences.join(", "))
    }

    fn partition(&self, s: usize) -> u32 {
        partition_of(&self.sequences[s].name, self.spec.partitions)
    }

    /// Creates every sequence, through each node in turn until one answers (unrecorded:
    /// no client runs yet, and creating is idempotent). Gives up when the active time is
    /// over; the clients then meet `NotFound`, and the recovery fails.
    pub(super) async fn create_all(&self) {
        if self.spec.clients.sequence == 0 {
            return;
        }
        for (s, sequence) in self.sequences.iter().enumerate() {
            let op = SequenceOp::Create {
                name: sequence.name.clone(),
                start: sequence.start,
                increment: sequence.increment,
                max: sequence.max,
            };
            for attempt in 0.. {
                if !self.recorder.active(&self.spec) {
                    return;
                }
                let node = self.spec.nodes[attempt % self.spec.nodes.len()];
                let request = PartitionRequest::Sequence { op: op.clone() };
                if let Answer::Served { .. } = call(node, self.partition(s), request).await {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }

    /// Makes `call_` through `node` and records it; returns how it ended.
    async fn invoke(&self, process: u64, node: u64, call_: &Call) -> Completion {
        let sequence = &self.sequences[call_.sequence];
        let (f, fields) = match call_.count {
            None => ("next", json!({ "sequence": sequence.name, "idempotency_key": call_.key })),
            Some(count) => {
                ("reserve", json!({ "sequence": sequence.name, "idempotency_key": call_.key, "count": count }))
            }
        };
        self.recorder.invoke(process, f, fields);
        let op = SequenceOp::Reserve {
            name: sequence.name.clone(),
            count: call_.count.unwrap_or(1),
            idempotency_key: Some(call_.key.clone()),
        };
        let answer = call(node, self.partition(call_.sequence), PartitionRequest::Sequence { op }).await;
        let completion = match answer.write_failure() {
            Some(failure) => failure,
            None => match answer {
                Answer::Served {
                    value: PartitionResponse::Sequence(SequenceReply::Allocated { allocation, replayed }),
                    node,
                } => {
                    let last = i64::try_from(allocation.count.saturating_sub(1))
                        .ok()
                        .and_then(|n| n.checked_mul(allocation.increment))
                        .and_then(|span| allocation.first.checked_add(span));
                    match (call_.count, last) {
                        (None, _) => {
                            Completion::Ok(json!({ "value": allocation.first, "replayed": replayed, "node": node }))
                        }
                        (Some(_), Some(last)) => Completion::Ok(
                            json!({ "value": [allocation.first, last], "replayed": replayed, "node": node }),
                        ),
                        (Some(_), None) => {
                            Completion::Info(json!({ "error": format!("bad allocation {allocation:?}") }))
                        }
                    }
                }
                other => Completion::Info(json!({ "error": format!("unexpected answer {other:?}") })),
            },
        };
        self.recorder.complete(process, f, &completion);
        completion
    }

    /// One client: half `next`, half `reserve`, on a random sequence through a random
    /// node; an unknown outcome is replayed the next time round with the same key.
    pub(super) async fn client(self, index: u64) {
        let spec = self.spec.clone();
        let mut rng = SmallRng::seed_from_u64(derive(spec.seed, 600 + index));
        let mut replay: Option<Call> = None;
        while self.recorder.active(&spec) {
            let call_ = replay.take().unwrap_or_else(|| Call {
                sequence: rng.random_range(0..self.sequences.len()),
                key: format!("c{index}-{}", self.keys.fetch_add(1, Ordering::Relaxed)),
                count: rng.random_bool(0.5).then(|| rng.random_range(1..=RESERVE_COUNT_MAX)),
            });
            let node = any_node(&spec, &mut rng);
            if let Completion::Info(_) = self.invoke(index, node, &call_).await {
                replay = Some(call_);
            }
            think(&mut rng).await;
        }
    }

    /// One recovery attempt on sequence `s`: one more value, or word that there is none
    /// left (both are answers from a leader).
    pub(super) async fn recover(self, s: usize, process: u64, attempt: usize) -> bool {
        let node = self.spec.nodes[(s + attempt) % self.spec.nodes.len()];
        let call_ = Call { sequence: s, key: format!("recovery-{s}-{attempt}"), count: None };
        match self.invoke(process, node, &call_).await {
            Completion::Ok(_) => true,
            Completion::Fail(fields) => {
                fields.get("error").and_then(Value::as_str).is_some_and(|e| e.contains("exhausted"))
            }
            Completion::Info(_) => false,
        }
    }

    /// Values off their sequence's stride or past its maximum, in the `ok` allocations.
    pub(super) fn anomalies(&self, histories: &BTreeMap<Workload, History>) -> Vec<String> {
        let Some(history) = histories.get(&Workload::Sequence) else { return Vec::new() };
        let Ok(ops) = history.operations() else {
            return vec!["sequence history: unpaired events".to_owned()];
        };
        let mut found = Vec::new();
        for op in ops.iter().filter(|op| op.outcome == Outcome::Ok) {
            let Some(sequence) = op.field("sequence").and_then(Value::as_str) else { continue };
            let Some(spec) = self.sequences.iter().find(|s| s.name == sequence) else { continue };
            let values: Vec<i64> = match op.field("value") {
                Some(Value::Array(range)) => range.iter().filter_map(Value::as_i64).collect(),
                Some(v) => v.as_i64().into_iter().collect(),
                None => Vec::new(),
            };
            for v in values {
                let off_stride = v < spec.start || (v - spec.start) % spec.increment != 0;
                let past_max = spec.max.is_some_and(|max| v > max);
                if off_stride || past_max {
                    found.push(format!(
                        "sequence {sequence}: value {v} handed out (start {}, increment {}, max {:?}), event {}",
                        spec.start, spec.increment, spec.max, op.invoke_event
                    ));
                }
            }
        }
        found
    }
}
