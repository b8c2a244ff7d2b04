//! The register workload: reads, blind writes and compare-and-sets on a few keys, checked
//! for linearizability per key by [`check_register`](crate::check_register).
//!
//! Every written value is a fresh integer (one counter for the whole run), stored as its
//! decimal text. Unique values make a compare-and-set on a revision equivalent to one on
//! a value: the key holds value `v` exactly while it is at the revision that wrote `v`
//! (the workload never deletes and the run's keys are new). So both server paths are
//! exercised and both are recorded as `cas {key, expected, new}`, with `compare` saying
//! which was sent. A `cas` from "never written" is sent as `nx`.
//!
//! Each key has its own bucket (no `/`), so the keys spread over the partitions and a
//! fault on one partition leader meets some of them.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use kahuna_client::{DeleteItem, GetOptions, SetOptions};
use rand::Rng;
use serde_json::{Value, json};

use super::driver::{Process, drive, probe};
use super::{WorkloadError, WorkloadKind, WorkloadOptions, WorkloadRun};

/// How long the run's keys may take to delete at the end before they are left behind.
const CLEANUP_TIMEOUT_MS: u64 = 5_000;

/// The key of register `index` in a run.
pub(super) fn key(prefix: &str, index: usize) -> String {
    format!("{prefix}-register-{index}")
}

/// Runs the register workload, then deletes its keys (best effort, unrecorded).
pub(super) async fn run(options: &WorkloadOptions) -> Result<WorkloadRun, WorkloadError> {
    let probe_client = probe(options).await?;
    let keys: Arc<[String]> = (0..options.keys).map(|i| key(&options.key_prefix, i)).collect();
    let values = Arc::new(AtomicU64::new(1));
    let run = drive(WorkloadKind::Register, options, |process| {
        let keys = keys.clone();
        let values = values.clone();
        async move { client_loop(process, &keys, &values).await }
    })
    .await?;
    let items = keys.iter().map(|k| DeleteItem::new(k.as_str()));
    let cleanup = probe_client.delete_many(items);
    let _ = tokio::time::timeout(Duration::from_millis(CLEANUP_TIMEOUT_MS), cleanup).await;
    Ok(run)
}

/// What a process last learned about a key: its value (JSON null when absent) and
/// revision. Forgotten after any outcome that leaves the key's state unknown.
#[derive(Debug, Clone)]
struct Known {
    value: Value,
    revision: Option<i64>,
}

/// One process: half reads, a quarter writes, a quarter compare-and-sets.
async fn client_loop(mut p: Process, keys: &[String], values: &AtomicU64) {
    let mut known: HashMap<usize, Known> = HashMap::new();
    while p.running() {
        let index = p.rng.random_range(0..keys.len());
        let key = &keys[index];
        match p.rng.random_range(0..4u8) {
            0 | 1 => read(&p, key, index, &mut known).await,
            2 => write(&p, key, index, values.fetch_add(1, Ordering::Relaxed), &mut known).await,
            _ => {
                let new = values.fetch_add(1, Ordering::Relaxed);
                let by_revision = p.rng.random_bool(0.5);
                cas(&p, key, index, new, by_revision, &mut known).await;
            }
        }
    }
}

async fn read(p: &Process, key: &str, index: usize, known: &mut HashMap<usize, Known>) {
    let pending = p.invoke("read", json!({"key": key}));
    match p.client.get(key, GetOptions::new()).await {
        Ok(got) => {
            let (value, revision) = match got.kv {
                Some(kv) => (decode(&kv.value), Some(kv.revision)),
                None => (Value::Null, None),
            };
            known.insert(index, Known { value: value.clone(), revision });
            p.ok(pending, json!({"value": value, "revision": revision, "node": got.served_by}));
        }
        Err(e) => p.error(pending, &e),
    }
}

async fn write(p: &Process, key: &str, index: usize, value: u64, known: &mut HashMap<usize, Known>) {
    let pending = p.invoke("write", json!({"key": key, "value": value}));
    let result = p.client.set(key, value.to_string(), SetOptions::new()).await;
    known.remove(&index);
    match result {
        Ok(set) if set.modified => {
            known.insert(index, Known { value: json!(value), revision: set.revision });
            p.ok(pending, json!({"revision": set.revision, "node": set.served_by}));
        }
        // An unconditional set is always applied; if the server says otherwise, it did not
        // apply it, and the checker holds it to that.
        Ok(set) => p.fail(pending, json!({"revision": set.revision, "node": set.served_by, "error": "not modified"})),
        Err(e) => p.error(pending, &e),
    }
}

/// Swaps in `new` if the key still holds what this process last saw of it.
async fn cas(p: &Process, key: &str, index: usize, new: u64, by_revision: bool, known: &mut HashMap<usize, Known>) {
    let last = known.remove(&index).unwrap_or(Known { value: Value::Null, revision: None });
    let (options, compare) = match (&last.value, last.revision) {
        (Value::Null, _) => (SetOptions::new().nx(), "absent"),
        (Value::Number(_), Some(revision)) if by_revision => (SetOptions::new().compare_revision(revision), "revision"),
        (Value::Number(n), _) => (SetOptions::new().compare_value(n.to_string()), "value"),
        // A value this workload did not write: nothing sensible to compare with.
        _ => return read(p, key, index, known).await,
    };
    let pending = p.invoke("cas", json!({"key": key, "expected": last.value, "new": new, "compare": compare}));
    match p.client.set(key, new.to_string(), options).await {
        Ok(set) if set.modified => {
            known.insert(index, Known { value: json!(new), revision: set.revision });
            p.ok(pending, json!({"revision": set.revision, "node": set.served_by}));
        }
        Ok(set) => p.fail(pending, json!({"revision": set.revision, "node": set.served_by})),
        Err(e) => p.error(pending, &e),
    }
}

/// A stored value as the history records it: the integer this workload wrote, or the
/// raw text of anything else (which the checker then reports as never written).
fn decode(bytes: &[u8]) -> Value {
    let text = String::from_utf8_lossy(bytes);
    text.parse::<u64>().map_or_else(|_| Value::String(text.into_owned()), |n| json!(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_written_integers_and_keeps_anything_else() {
        assert_eq!(decode(b"42"), json!(42));
        assert_eq!(decode(b"x1"), json!("x1"));
        assert_eq!(decode(&[0xff, b'1']), json!("\u{fffd}1"));
    }

    #[test]
    fn keys_have_their_own_buckets() {
        let key = key("kahuna-check-0badf00d", 3);
        assert_eq!(key, "kahuna-check-0badf00d-register-3");
        assert!(!key.contains('/'));
    }
}
