//! The lock workload, as `kahuna check`'s: clients contend for a few locks with short
//! leases, write to each lock's fenced resource with the token they were granted, and
//! release; checked by `check_lock` (grants in real-time order carry increasing tokens,
//! no token goes to two owners, no resource accepts a token older than one it accepted).
//!
//! The seed makes each lock persistent (its record in Raft) or ephemeral (in the leader's
//! memory, its tokens carrying the leader's term). The resource of a lock is a persistent
//! key holding the last token it accepted: a fenced write reads it and, unless the token
//! is older, swaps the token in with a compare-and-set on the revision it read (judging
//! again when another writer got there first); an older token is rejected. So `ok` means
//! accepted, `fail` rejected, and a stale token accepted would mean a broken lock service
//! or a broken compare-and-set. Some holders sleep past their lease before writing, and
//! clock jumps end leases early, so stale tokens do reach the resources.
//!
//! Its recovery takes every lock once (acquire, fenced write, release).

use std::sync::Arc;
use std::time::Duration;

use kahuna_check::History;
use kahuna_kernel::{
    Consistency, Durability, LockOp, PartitionRequest, PartitionResponse, PointRead, SetArgs, WriteOp, WriteResult,
    partition_of,
};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::derive;

use super::{Answer, Completion, Recorder, WorkloadSpec, any_node, call, think};

/// Lease of every grant: short, so that leases end during a run.
const LEASE_MS: u64 = 300;
/// How long an acquire may wait in the lock's queue on the leader.
const WAIT_MS: u64 = 200;
/// Share of holders that stall past their lease before writing.
const STALL_PROBABILITY: f64 = 0.1;
/// Most compare-and-set attempts of one fenced write before it gives up (as `fail`: no
/// attempt wrote anything).
const FENCED_ATTEMPTS_MAX: usize = 8;
/// Locks of a run: the seed picks within this range.
const LOCKS: std::ops::RangeInclusive<usize> = 2..=3;

/// One lock of the run and how it is kept.
#[derive(Debug, Clone)]
struct LockSpec {
    name: String,
    durability: Durability,
}

/// The lock workload of one run. Cheap to clone.
#[derive(Clone)]
pub(super) struct Locks {
    spec: Arc<WorkloadSpec>,
    recorder: Recorder,
    locks: Arc<[LockSpec]>,
}

impl Locks {
    pub(super) fn new(spec: Arc<WorkloadSpec>, recorder: Recorder) -> Self {
        let mut rng = SmallRng::seed_from_u64(derive(spec.seed, 200));
        let count = rng.random_range(LOCKS);
        let locks = (0..count)
            .map(|i| {
                // One in three ephemeral; each lock its own bucket, so they spread over
                // the partitions.
                let durability =
                    if rng.random_range(0..3) == 0 { Durability::Ephemeral } else { Durability::Persistent };
                LockSpec { name: format!("lock-{i}"), durability }
            })
            .collect();
        Self { spec, recorder, locks }
    }

    /// Locks to recover.
    pub(super) fn objects(&self) -> usize {
        self.locks.len()
    }

    pub(super) fn name(&self, l: usize) -> &str {
        &self.locks[l].name
    }

    pub(super) fn history(&self) -> History {
        self.recorder.history()
    }

    /// The locks the seed chose, one line.
    pub(super) fn setup(&self) -> String {
        let locks: Vec<String> = self.locks.iter().map(|l| format!("{} {:?}", l.name, l.durability)).collect();
        format!("locks: {}", locks.join(", "))
    }

    /// Tries to take lock `l` for `owner` through `node`; returns the token when granted.
    async fn acquire(&self, process: u64, node: u64, l: usize, owner: &str) -> Option<u64> {
        let lock = &self.locks[l];
        self.recorder.invoke(process, "acquire", json!({ "lock": lock.name, "owner": owner }));
        let request = PartitionRequest::Lock {
            op: LockOp::Acquire { name: lock.name.clone(), owner: owner.to_owned(), lease_ms: LEASE_MS },
            durability: lock.durability,
            operation_id: None,
            wait_ms: WAIT_MS,
        };
        let answer = call(node, partition_of(&lock.name, self.spec.partitions), request).await;
        let (completion, token) = match answer.write_failure() {
            Some(failure) => (failure, None),
            None => match answer {
                Answer::Served { value: PartitionResponse::Lock(reply), node } => {
                    match reply.holder.filter(|h| reply.done && h.owner == owner) {
                        Some(holder) => {
                            (Completion::Ok(json!({ "token": holder.token, "node": node })), Some(holder.token))
                        }
                        None => (Completion::Fail(json!({ "error": "held by another owner", "node": node })), None),
                    }
                }
                other => (Completion::Info(json!({ "error": format!("unexpected answer {other:?}") })), None),
            },
        };
        self.recorder.complete(process, "acquire", &completion);
        token
    }

    /// Writes `token` to lock `l`'s resource unless it is older than the last one
    /// accepted; returns whether the write ended definitely (accepted or rejected).
    async fn fenced_write(&self, process: u64, rng: &mut SmallRng, l: usize, token: u64) -> bool {
        let resource = format!("{}-resource", self.locks[l].name);
        let partition = partition_of(&resource, self.spec.partitions);
        self.recorder.invoke(process, "write", json!({ "resource": resource, "token": token }));
        let mut completion = Completion::Fail(json!({ "error": "resource contended" }));
        for _ in 0..FENCED_ATTEMPTS_MAX {
            let read = PartitionRequest::Read {
                reads: vec![PointRead { key: resource.clone(), at_revision: None, as_of: None }],
                durability: Durability::Persistent,
                consistency: Consistency::Linearizable,
            };
            let answer = call(any_node(&self.spec, rng), partition, read).await;
            if let Some(failure) = answer.read_failure() {
                // Nothing was written by this call.
                completion = failure;
                break;
            }
            let current = match answer {
                Answer::Served { value: PartitionResponse::Read(mut found), .. } if found.len() == 1 => found.remove(0),
                other => {
                    completion = Completion::Fail(json!({ "error": format!("unexpected answer {other:?}") }));
                    break;
                }
            };
            let accepted = current.as_ref().and_then(|kv| String::from_utf8_lossy(&kv.value).parse::<u64>().ok());
            if let Some(last) = accepted.filter(|last| token < *last) {
                completion = Completion::Fail(json!({ "rejected_by": last }));
                break;
            }
            let set = SetArgs {
                key: resource.clone(),
                value: token.to_string().into_bytes(),
                nx: current.is_none(),
                compare_revision: current.as_ref().map(|kv| kv.revision),
                ..SetArgs::default()
            };
            let write = PartitionRequest::Write {
                ops: vec![WriteOp::Set(set)],
                operation_id: None,
                durability: Durability::Persistent,
            };
            let answer = call(any_node(&self.spec, rng), partition, write).await;
            if let Some(failure) = answer.write_failure() {
                completion = failure;
                break;
            }
            match answer {
                Answer::Served { value: PartitionResponse::Write(results), .. } => match results.first() {
                    Some(WriteResult::Set { modified: true, revision, .. }) => {
                        completion = Completion::Ok(json!({ "revision": revision }));
                        break;
                    }
                    // Another writer changed the resource since the read: judge again.
                    Some(WriteResult::Set { modified: false, .. }) => {}
                    other => {
                        let error = format!("unexpected write result {other:?}");
                        completion = Completion::Info(json!({ "error": error }));
                        break;
                    }
                },
                other => {
                    completion = Completion::Info(json!({ "error": format!("unexpected answer {other:?}") }));
                    break;
                }
            }
        }
        self.recorder.complete(process, "write", &completion);
        !matches!(completion, Completion::Info(_))
    }

    /// Releases lock `l` for `owner` through `node`.
    async fn release(&self, process: u64, node: u64, l: usize, owner: &str) {
        let lock = &self.locks[l];
        self.recorder.invoke(process, "release", json!({ "lock": lock.name, "owner": owner }));
        let request = PartitionRequest::Lock {
            op: LockOp::Release { name: lock.name.clone(), owner: owner.to_owned() },
            durability: lock.durability,
            operation_id: None,
            wait_ms: 0,
        };
        let answer = call(node, partition_of(&lock.name, self.spec.partitions), request).await;
        let completion = match answer.write_failure() {
            Some(failure) => failure,
            None => match answer {
                Answer::Served { value: PartitionResponse::Lock(reply), node } if reply.done => {
                    Completion::Ok(json!({ "node": node }))
                }
                // The lease had ended: there was nothing to release.
                Answer::Served { value: PartitionResponse::Lock(_), node } => {
                    Completion::Fail(json!({ "error": "not held", "node": node }))
                }
                other => Completion::Info(json!({ "error": format!("unexpected answer {other:?}") })),
            },
        };
        self.recorder.complete(process, "release", &completion);
    }

    /// One client: acquire a random lock, maybe stall, write its resource, release.
    pub(super) async fn client(self, index: u64) {
        let spec = self.spec.clone();
        let mut rng = SmallRng::seed_from_u64(derive(spec.seed, 300 + index));
        let owner = format!("client-{index}");
        while self.recorder.active(&spec) {
            let l = rng.random_range(0..self.locks.len());
            let node = any_node(&spec, &mut rng);
            if let Some(token) = self.acquire(index, node, l, &owner).await {
                if rng.random_bool(STALL_PROBABILITY) {
                    tokio::time::sleep(Duration::from_millis(LEASE_MS + 100)).await;
                }
                self.fenced_write(index, &mut rng, l, token).await;
                let node = any_node(&spec, &mut rng);
                self.release(index, node, l, &owner).await;
            }
            think(&mut rng).await;
        }
    }

    /// One recovery attempt on lock `l`: taken, its resource written, released.
    pub(super) async fn recover(self, l: usize, process: u64, attempt: usize) -> bool {
        let mut rng = SmallRng::seed_from_u64(derive(self.spec.seed, 400 + process + attempt as u64));
        let node = self.spec.nodes[(l + attempt) % self.spec.nodes.len()];
        let owner = format!("recovery-{l}");
        let Some(token) = self.acquire(process, node, l, &owner).await else { return false };
        let written = self.fenced_write(process, &mut rng, l, token).await;
        self.release(process, node, l, &owner).await;
        written
    }
}
