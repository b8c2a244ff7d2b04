//! The lock workload: processes contend for a few persistent locks with short leases,
//! write to a fenced resource with the token they were granted, and release; checked by
//! [`check_lock`](crate::check_lock).
//!
//! The resource of each lock is a Kahuna key holding the last token it accepted. A
//! fenced write reads it and, when the token is not older, swaps the token in with a
//! compare-and-set on the revision it read (retrying when another writer got there
//! first); an older token is rejected. So `ok` means accepted and `fail` rejected, and a
//! stale token accepted would mean a broken lock service or a broken compare-and-set.
//! Some holders sleep past their lease before writing, so stale tokens do reach the
//! resource. A timeout on an acquire is `info`: the grant may exist with a token nobody
//! saw.

use std::sync::Arc;
use std::time::Duration;

use kahuna_client::{DeleteItem, GetOptions, LockOptions, SetOptions, UnlockOptions};
use rand::Rng;
use serde_json::json;

use super::driver::{Process, drive, probe};
use super::{WorkloadError, WorkloadKind, WorkloadOptions, WorkloadRun};

/// Lease of every grant: short, so expiries happen during a run.
const LEASE_MS: u64 = 300;
/// How long an acquire may wait in the lock's queue.
const WAIT_MS: u64 = 200;
/// Share of holders that stall past their lease before writing.
const STALL_PROBABILITY: f64 = 0.1;
/// Most compare-and-set attempts of one fenced write before it gives up as unknown.
const FENCED_ATTEMPTS_MAX: usize = 8;
/// How long deleting the run's resource keys may take at the end.
const CLEANUP_TIMEOUT_MS: u64 = 5_000;

/// The name of lock `index` in a run: a bucket of its own, so the locks spread over the
/// partitions.
pub(super) fn lock_name(prefix: &str, index: usize) -> String {
    format!("{prefix}-lock-{index}")
}

/// Names of the run's locks.
fn lock_names(options: &WorkloadOptions) -> Vec<String> {
    (0..options.keys).map(|i| lock_name(&options.key_prefix, i)).collect()
}

fn resource_of(lock: &str) -> String {
    format!("{lock}-resource")
}

/// Runs the lock workload, then deletes the resources (best effort, unrecorded).
pub(super) async fn run(options: &WorkloadOptions) -> Result<WorkloadRun, WorkloadError> {
    let probe_client = probe(options).await?;
    let locks: Arc<[String]> = lock_names(options).into();
    let run = drive(WorkloadKind::Lock, options, |process| {
        let locks = locks.clone();
        async move { client_loop(process, &locks).await }
    })
    .await?;
    let items = locks.iter().map(|l| DeleteItem::new(resource_of(l)));
    let _ = tokio::time::timeout(Duration::from_millis(CLEANUP_TIMEOUT_MS), probe_client.delete_many(items)).await;
    Ok(run)
}

/// One process: acquire a random lock, maybe stall, write the resource, release.
async fn client_loop(mut p: Process, locks: &[String]) {
    let owner = format!("process-{}", p.id);
    while p.running() {
        let lock = &locks[p.rng.random_range(0..locks.len())];
        let pending = p.invoke("acquire", json!({"lock": lock, "owner": owner}));
        let options = LockOptions { wait_ms: WAIT_MS, ..LockOptions::new() };
        let token = match p.client.try_lock(lock.as_str(), owner.as_str(), LEASE_MS, options).await {
            Ok(r) => match r.holder.filter(|h| r.acquired && h.owner == owner) {
                Some(holder) => {
                    p.ok(pending, json!({"token": holder.token, "node": r.served_by}));
                    holder.token
                }
                None => {
                    p.fail(pending, json!({"node": r.served_by}));
                    continue;
                }
            },
            Err(e) => {
                p.error(pending, &e);
                continue;
            }
        };
        if p.rng.random_bool(STALL_PROBABILITY) {
            tokio::time::sleep(Duration::from_millis(LEASE_MS + 100)).await;
        }
        fenced_write(&p, &resource_of(lock), token).await;
        let pending = p.invoke("release", json!({"lock": lock, "owner": owner}));
        match p.client.unlock(lock.as_str(), owner.as_str(), UnlockOptions::default()).await {
            Ok(u) if u.released => p.ok(pending, json!({"node": u.served_by})),
            Ok(u) => p.fail(pending, json!({"node": u.served_by})),
            Err(e) => p.error(pending, &e),
        }
    }
}

/// Writes `token` to the resource if it is not older than the last accepted one.
async fn fenced_write(p: &Process, resource: &str, token: u64) {
    let pending = p.invoke("write", json!({"resource": resource, "token": token}));
    for _ in 0..FENCED_ATTEMPTS_MAX {
        let current = match p.client.get(resource, GetOptions::new()).await {
            Ok(got) => got.kv,
            Err(e) => return p.error(pending, &e),
        };
        let accepted = current.as_ref().and_then(|kv| String::from_utf8_lossy(&kv.value).parse::<u64>().ok());
        if accepted.is_some_and(|last| token < last) {
            return p.fail(pending, json!({"rejected_by": accepted}));
        }
        let options = match &current {
            Some(kv) => SetOptions::new().compare_revision(kv.revision),
            None => SetOptions::new().nx(),
        };
        match p.client.set(resource, token.to_string(), options).await {
            Ok(set) if set.modified => return p.ok(pending, json!({"revision": set.revision})),
            // Another writer changed the resource since the read: judge again.
            Ok(_) => continue,
            Err(e) => return p.error(pending, &e),
        }
    }
    // Still contended after every attempt: nothing was written by this call.
    p.fail(pending, json!({"error": "resource contended"}));
}
