//! The list-append workload, after Elle: short transactions read and append to a few
//! lists; checked by [`check_append`](crate::check_append) for G0, G1a/b/c, G-single, G2,
//! lost appends and real-time order.
//!
//! Each transaction runs 1 to [`MOPS_MAX`] micro-operations on random lists, recorded as
//! one `txn` whose `value` is the list of them: `["r", key, null]` (the `ok` fills in the
//! list read) or `["append", key, v]`. A list is one key holding its elements as decimal
//! text joined by commas; an append reads the key in the transaction and writes it back
//! with `,v` added (the read joins the read set, so two concurrent appends to one list
//! conflict instead of one overwriting the other). Values count up per list, so each is
//! unique to its key, and a read names exactly the appends it saw.
//!
//! `keys` lists are in use at a time, each a bucket of its own so that transactions span
//! partitions. A list is retired after [`APPENDS_PER_LIST_MAX`] appends and a fresh one
//! takes its place, which keeps values (read and rewritten by every append) short.
//!
//! Outcomes follow the transactional rule of `txn.rs`: `Conflict` on commit is `fail`,
//! any other commit error `info`; the checker treats an `info` transaction as committed
//! exactly when some read saw one of its appends.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use kahuna_client::{DeleteItem, GetOptions, SetOptions};
use rand::Rng;
use serde_json::{Value, json};

use super::driver::{Process, drive, probe};
use super::txn::{Abandoned, Prepared, finish, txn_timeout};
use super::{WorkloadError, WorkloadKind, WorkloadOptions, WorkloadRun};

/// Most micro-operations in one transaction.
const MOPS_MAX: usize = 4;
/// Share of micro-operations that read a list rather than append to it.
const READ_PROBABILITY: f64 = 0.5;
/// Appends handed out on one list before a fresh list replaces it.
const APPENDS_PER_LIST_MAX: u64 = 128;
/// Keys deleted per request at the end.
const CLEANUP_BATCH: usize = 500;
/// How long deleting the lists may take at the end.
const CLEANUP_TIMEOUT_MS: u64 = 5_000;

/// The key of list `id` in a run: a bucket of its own.
pub(super) fn list_key(prefix: &str, id: usize) -> String {
    format!("{prefix}-list-{id}")
}

/// Runs the list-append workload, then deletes every list it used (best effort,
/// unrecorded).
pub(super) async fn run(options: &WorkloadOptions) -> Result<WorkloadRun, WorkloadError> {
    let probe_client = probe(options).await?;
    let lists = Arc::new(Mutex::new(AppendLists::new(&options.key_prefix, options.keys, APPENDS_PER_LIST_MAX)));
    let timeout = txn_timeout(options);
    let run = drive(WorkloadKind::Append, options, |process| {
        let lists = lists.clone();
        async move { client_loop(process, &lists, timeout).await }
    })
    .await?;
    let keys = lock(&lists).keys();
    let cleanup = async {
        for chunk in keys.chunks(CLEANUP_BATCH) {
            let _ = probe_client.delete_many(chunk.iter().map(|k| DeleteItem::new(k.as_str()))).await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_millis(CLEANUP_TIMEOUT_MS), cleanup).await;
    Ok(run)
}

/// The lists of a list-append run: which list each slot uses now, and how many appends
/// each list has handed out. Invariant: every value handed out for a list is one more
/// than the previous, so values are unique per key. A list is retired after its last
/// value and a fresh one takes its slot, which keeps values short. Shared with the
/// simulation's workload.
#[derive(Debug)]
pub struct AppendLists {
    prefix: String,
    /// Values handed out on one list before it is retired.
    per_list: u64,
    /// The list id behind each slot.
    slots: Vec<usize>,
    /// Appends handed out, by list id.
    appends: Vec<u64>,
}

impl AppendLists {
    /// `slots` lists in use at a time, keys `{prefix}-list-{id}`, each retired after
    /// `per_list` values.
    pub fn new(prefix: &str, slots: usize, per_list: u64) -> AppendLists {
        AppendLists { prefix: prefix.to_string(), per_list, slots: (0..slots).collect(), appends: vec![0; slots] }
    }

    /// Lists in use at a time.
    pub fn slots(&self) -> usize {
        self.slots.len()
    }

    /// The key slot `slot` reads now.
    pub fn read(&self, slot: usize) -> String {
        list_key(&self.prefix, self.slots[slot])
    }

    /// The key and the fresh value of an append through slot `slot`; retires the list
    /// once it has handed out its last value.
    pub fn append(&mut self, slot: usize) -> (String, u64) {
        let id = self.slots[slot];
        self.appends[id] += 1;
        let value = self.appends[id];
        if value >= self.per_list {
            self.slots[slot] = self.appends.len();
            self.appends.push(0);
        }
        (list_key(&self.prefix, id), value)
    }

    /// The micro-operations of one transaction: 1 to `mops_max`, each on a random slot,
    /// a read with probability `read_probability`, else an append of the list's next value.
    pub fn plan(&mut self, rng: &mut impl Rng, mops_max: usize, read_probability: f64) -> Vec<ListOp> {
        let count = rng.random_range(1..=mops_max);
        let slots = self.slots.len();
        (0..count)
            .map(|_| {
                let slot = rng.random_range(0..slots);
                if rng.random_bool(read_probability) {
                    ListOp::Read(self.read(slot))
                } else {
                    let (key, value) = self.append(slot);
                    ListOp::Append(key, value)
                }
            })
            .collect()
    }

    /// The keys of the lists in use now.
    pub fn in_use(&self) -> Vec<String> {
        (0..self.slots.len()).map(|slot| self.read(slot)).collect()
    }

    /// Every key the run may have written.
    pub fn keys(&self) -> Vec<String> {
        (0..self.appends.len()).map(|id| list_key(&self.prefix, id)).collect()
    }
}

/// The list state, still usable after a panicking process: each change is one call.
fn lock(lists: &Mutex<AppendLists>) -> MutexGuard<'_, AppendLists> {
    lists.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One micro-operation of a list-append transaction. Shared with the simulation, which
/// also sends it between its processes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ListOp {
    /// Read a list.
    Read(String),
    /// Append a value to a list.
    Append(String, u64),
}

impl ListOp {
    /// As the invoke records it: reads without their result.
    pub fn request(&self) -> Value {
        match self {
            ListOp::Read(key) => json!(["r", key, null]),
            ListOp::Append(key, value) => json!(["append", key, value]),
        }
    }
}

/// One process: one transaction after another.
async fn client_loop(mut p: Process, lists: &Mutex<AppendLists>, timeout: Duration) {
    while p.running() {
        let mops = lock(lists).plan(&mut p.rng, MOPS_MAX, READ_PROBABILITY);
        let request: Vec<Value> = mops.iter().map(ListOp::request).collect();
        let pending = p.invoke("txn", json!({"value": request}));
        let prepared = run_txn(&p, &mops, timeout).await;
        finish(&p, pending, prepared).await;
    }
}

/// Runs `mops` in one transaction, up to its commit.
async fn run_txn(p: &Process, mops: &[ListOp], timeout: Duration) -> Result<Prepared, Abandoned> {
    let txn = p.client.begin(Some(timeout)).await?;
    let mut done = Vec::with_capacity(mops.len());
    for mop in mops {
        match mop {
            ListOp::Read(key) => {
                let text = txn.get(key.as_str(), GetOptions::new()).await?.kv.map(|kv| kv.value).unwrap_or_default();
                done.push(json!(["r", key, decode_list(&text)]));
            }
            ListOp::Append(key, value) => {
                let text = txn.get(key.as_str(), GetOptions::new()).await?.kv.map(|kv| kv.value).unwrap_or_default();
                if !txn.set(key.as_str(), extend(&text, *value), SetOptions::new()).await? {
                    // An unconditional write always applies; refuse to commit around a hole.
                    return Err(Abandoned::Refused(json!({"error": format!("append to {key} not applied")})));
                }
                done.push(mop.request());
            }
        }
    }
    let results = json!({"value": done, "snapshot_ts": txn.snapshot_ts()});
    Ok((txn, results))
}

/// A stored list as the history records it: its elements, each the integer a list-append
/// workload appended or the raw text of anything else (which the checker reports as never
/// appended). No key, or an empty value, is the empty list.
pub fn decode_list(bytes: &[u8]) -> Value {
    let text = String::from_utf8_lossy(bytes);
    if text.is_empty() {
        return json!([]);
    }
    let elements = text.split(',').map(|e| e.parse::<u64>().map_or_else(|_| json!(e), |n| json!(n)));
    Value::Array(elements.collect())
}

/// The stored list `bytes` with `value` appended. Keeps the stored text as it is, so a
/// garbled element stays visible to later reads.
fn extend(bytes: &[u8], value: u64) -> Vec<u8> {
    let mut out = bytes.to_vec();
    if !out.is_empty() {
        out.push(b',');
    }
    out.extend_from_slice(value.to_string().as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    #[test]
    fn lists_round_trip_through_their_text() {
        let text = extend(&extend(&extend(b"", 1), 2), 30);
        assert_eq!(text, b"1,2,30");
        assert_eq!(decode_list(&text), json!([1, 2, 30]));
        assert_eq!(decode_list(b""), json!([]));
        assert_eq!(decode_list(b"1,x"), json!([1, "x"]));
    }

    #[test]
    fn lists_retire_after_their_last_value() {
        let mut lists = AppendLists::new("p", 2, APPENDS_PER_LIST_MAX);
        for expected in 1..=APPENDS_PER_LIST_MAX {
            assert_eq!(lists.append(1), ("p-list-1".to_string(), expected));
        }
        assert_eq!(lists.read(1), "p-list-2");
        assert_eq!(lists.append(1), ("p-list-2".to_string(), 1));
        assert_eq!(lists.read(0), "p-list-0");
        assert_eq!(lists.keys(), ["p-list-0", "p-list-1", "p-list-2"]);
    }

    #[test]
    fn plans_are_short_and_values_unique_per_key() {
        let lists = Mutex::new(AppendLists::new("p", 3, APPENDS_PER_LIST_MAX));
        let mut rng = StdRng::seed_from_u64(7);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..2_000 {
            let mops = lock(&lists).plan(&mut rng, MOPS_MAX, READ_PROBABILITY);
            assert!((1..=MOPS_MAX).contains(&mops.len()));
            for mop in mops {
                if let ListOp::Append(key, value) = mop {
                    assert!(seen.insert((key, value)), "a value handed out twice");
                }
            }
        }
        assert!(lock(&lists).appends.len() > 3, "lists were retired");
        assert!(!list_key("kahuna-check-0badf00d", 3).contains('/'));
    }
}
