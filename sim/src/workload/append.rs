//! The list-append workload, as `kahuna check`'s (after Elle): short transactions read and
//! append to a few lists, each coordinated by a random node's transaction engine; checked
//! by `check_append` for G0, G1a/b/c, G-single, G2, lost appends and real-time order.
//!
//! Each transaction runs 1 to [`MOPS_MAX`] micro-operations on random lists, recorded as
//! one `txn` whose `value` lists them: `["r", key, null]` (the `ok` fills in the list
//! read) or `["append", key, v]`. Values count up per list, so each is unique to its key.
//! A few lists are in use at a time (`kahuna_check::AppendLists`), each a bucket of its
//! own so that transactions span partitions (two-phase commit); a list is retired after
//! [`APPENDS_PER_LIST_MAX`] appends, which keeps values short. The outcome rule is `kahuna check`'s: given up
//! before the commit, or a `Conflict` on it, is `fail`; any other commit error `info`.
//! Its recovery reads every list in use in one transaction.

use std::sync::{Arc, Mutex, MutexGuard};

use kahuna_check::{AppendLists, History, ListOp, decode_list};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use super::{CALL_TIMEOUT, Completion, Recorder, WorkloadSpec, any_node, think};
use crate::derive;
use crate::net::{self, AppendTxn, CallError, ExecReply, ExecRequest, TxnOutcome};

/// Most micro-operations in one transaction.
const MOPS_MAX: usize = 4;
/// Share of micro-operations that read a list rather than append to it.
const READ_PROBABILITY: f64 = 0.5;
/// Appends handed out on one list before a fresh list replaces it.
const APPENDS_PER_LIST_MAX: u64 = 64;
/// Lists in use at a time: the seed picks within this range.
const SLOTS: std::ops::RangeInclusive<usize> = 3..=5;
/// Longest pause between two micro-operations, in ms (a client's think time).
const PAUSE_MS_MAX: u64 = 10;
/// A transaction's timeout: a few calls and a commit fit, and one stranded on a crashed
/// coordinator stops holding its keys soon after.
const TXN_TIMEOUT_MS: u64 = 2_000;

/// The prefix of the lists' keys (`sim-list-0`, …): each key a bucket of its own.
const KEY_PREFIX: &str = "sim";

/// The list-append workload of one run. Cheap to clone.
#[derive(Clone)]
pub(super) struct Appends {
    spec: Arc<WorkloadSpec>,
    recorder: Recorder,
    lists: Arc<Mutex<AppendLists>>,
}

impl Appends {
    pub(super) fn new(spec: Arc<WorkloadSpec>, recorder: Recorder) -> Self {
        let mut rng = SmallRng::seed_from_u64(derive(spec.seed, 700));
        let slots = rng.random_range(SLOTS);
        let lists = AppendLists::new(KEY_PREFIX, slots, APPENDS_PER_LIST_MAX);
        Self { spec, recorder, lists: Arc::new(Mutex::new(lists)) }
    }

    fn lists(&self) -> MutexGuard<'_, AppendLists> {
        self.lists.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn history(&self) -> History {
        self.recorder.history()
    }

    /// The lists the seed chose, one line.
    pub(super) fn setup(&self) -> String {
        format!("append lists in use at a time: {}", self.lists().slots())
    }

    /// Picks the micro-operations of one transaction.
    fn plan(&self, rng: &mut SmallRng) -> Vec<ListOp> {
        self.lists().plan(rng, MOPS_MAX, READ_PROBABILITY)
    }

    /// Runs `mops` as one transaction coordinated by `node` and records it.
    async fn invoke(&self, process: u64, node: u64, rng: &mut SmallRng, mops: Vec<ListOp>) -> Completion {
        let request: Vec<Value> = mops.iter().map(ListOp::request).collect();
        self.recorder.invoke(process, "txn", json!({ "value": request }));
        let mops: Vec<(u64, ListOp)> = mops.into_iter().map(|m| (rng.random_range(0..=PAUSE_MS_MAX), m)).collect();
        let txn = AppendTxn { mops: mops.clone(), timeout_ms: TXN_TIMEOUT_MS };
        let completion = match net::execute(node, &ExecRequest::Append(txn), CALL_TIMEOUT).await {
            Ok(ExecReply::Txn(TxnOutcome::Committed { reads })) => {
                let mut reads = reads.into_iter();
                let done: Vec<Value> = mops
                    .iter()
                    .map(|(_, mop)| match mop {
                        ListOp::Read(key) => json!(["r", key, decode_list(&reads.next().unwrap_or_default())]),
                        ListOp::Append(..) => mop.request(),
                    })
                    .collect();
                Completion::Ok(json!({ "value": done, "node": node }))
            }
            Ok(ExecReply::Txn(TxnOutcome::Abandoned(e) | TxnOutcome::Conflict(e))) => {
                Completion::Fail(json!({ "error": e, "node": node }))
            }
            Ok(ExecReply::Txn(TxnOutcome::Unknown(e))) => Completion::Info(json!({ "error": e, "node": node })),
            Ok(other) => Completion::Info(json!({ "error": format!("unexpected answer {other:?}"), "node": node })),
            Err(e @ CallError::NotSent(_)) => Completion::Fail(json!({ "error": e.to_string(), "node": node })),
            Err(e) => Completion::Info(json!({ "error": e.to_string(), "node": node })),
        };
        self.recorder.complete(process, "txn", &completion);
        completion
    }

    /// One client: one transaction after another, each through a random node.
    pub(super) async fn client(self, index: u64) {
        let spec = self.spec.clone();
        let mut rng = SmallRng::seed_from_u64(derive(spec.seed, 800 + index));
        let mut process = index;
        while self.recorder.active(&spec) {
            let mops = self.plan(&mut rng);
            let node = any_node(&spec, &mut rng);
            // A process with a transaction of unknown outcome is never reused.
            if let Completion::Info(_) = self.invoke(process, node, &mut rng, mops).await {
                process += spec.clients.append;
            }
            think(&mut rng).await;
        }
    }

    /// One recovery attempt: every list in use read in one transaction.
    pub(super) async fn recover(self, process: u64, attempt: usize) -> bool {
        let mut rng = SmallRng::seed_from_u64(derive(self.spec.seed, 900 + attempt as u64));
        let node = self.spec.nodes[attempt % self.spec.nodes.len()];
        let mops: Vec<ListOp> = self.lists().in_use().into_iter().map(ListOp::Read).collect();
        matches!(self.invoke(process, node, &mut rng, mops).await, Completion::Ok(_))
    }
}
