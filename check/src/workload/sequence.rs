//! The sequence workload: concurrent `next` and `reserve` on one sequence, every call
//! with an idempotency key, checked by [`check_sequence`](crate::check_sequence) for
//! values handed out twice and keys answered with two allocations.
//!
//! After an unknown outcome (timeout, unavailable) a process replays the same call with
//! the same idempotency key, as a careful application would; the replay must return
//! the first allocation. Values may be skipped (an allocation whose reply was lost and
//! never replayed), never repeated.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use kahuna_client::{Error, OperationId, SequenceOptions};
use rand::Rng;
use serde_json::json;

use super::driver::{Process, drive, probe};
use super::{WorkloadError, WorkloadKind, WorkloadOptions, WorkloadRun};

/// Largest `reserve` count the workload asks for.
const RESERVE_COUNT_MAX: u64 = 5;
/// How long deleting the run's sequence may take at the end.
const CLEANUP_TIMEOUT_MS: u64 = 5_000;

/// The name of the run's sequence.
pub(super) fn name(prefix: &str) -> String {
    format!("{prefix}-sequence")
}

/// Creates the run's sequence, runs the clients against it, then deletes it.
pub(super) async fn run(options: &WorkloadOptions) -> Result<WorkloadRun, WorkloadError> {
    let probe_client = probe(options).await?;
    let sequence: Arc<str> = name(&options.key_prefix).into();
    probe_client.create_sequence(&*sequence, SequenceOptions::default()).await.map_err(WorkloadError::Client)?;
    let keys = Arc::new(AtomicU64::new(1));
    let run = drive(WorkloadKind::Sequence, options, |process| {
        let (sequence, keys) = (sequence.clone(), keys.clone());
        async move { client_loop(process, &sequence, &keys).await }
    })
    .await?;
    let cleanup = probe_client.delete_sequence(&*sequence);
    let _ = tokio::time::timeout(Duration::from_millis(CLEANUP_TIMEOUT_MS), cleanup).await;
    Ok(run)
}

/// A call to make: its idempotency key and, for `reserve`, its count.
struct Call {
    key: String,
    count: Option<u64>,
}

/// One process: half `next`, half `reserve`; an unknown outcome is replayed once the
/// next time round, with the same key and count.
async fn client_loop(mut p: Process, sequence: &str, keys: &AtomicU64) {
    let mut replay: Option<Call> = None;
    while p.running() {
        let call = replay.take().unwrap_or_else(|| {
            let key = format!("k{}-{}", p.id, keys.fetch_add(1, Ordering::Relaxed));
            let count = p.rng.random_bool(0.5).then(|| p.rng.random_range(1..=RESERVE_COUNT_MAX));
            Call { key, count }
        });
        let unknown = match call.count {
            None => next(&p, sequence, &call.key).await,
            Some(count) => reserve(&p, sequence, &call.key, count).await,
        };
        if unknown {
            replay = Some(call);
        }
    }
}

/// Whether the error leaves the outcome unknown (the call may have allocated).
fn is_unknown(error: &Error) -> bool {
    !matches!(error, Error::InvalidInput(_) | Error::NotFound(_) | Error::Exhausted(_))
}

async fn next(p: &Process, sequence: &str, key: &str) -> bool {
    let pending = p.invoke("next", json!({"sequence": sequence, "idempotency_key": key}));
    match p.client.next_sequence(sequence, OperationId::Given(key.to_owned())).await {
        Ok(r) => {
            p.ok(pending, json!({"value": r.value, "replayed": r.replayed, "node": r.served_by}));
            false
        }
        Err(e) => {
            p.error(pending, &e);
            is_unknown(&e)
        }
    }
}

async fn reserve(p: &Process, sequence: &str, key: &str, count: u64) -> bool {
    let pending = p.invoke("reserve", json!({"sequence": sequence, "idempotency_key": key, "count": count}));
    match p.client.reserve_sequence(sequence, count, OperationId::Given(key.to_owned())).await {
        Ok(r) => {
            p.ok(pending, json!({"value": [r.first, r.last], "replayed": r.replayed, "node": r.served_by}));
            false
        }
        Err(e) => {
            p.error(pending, &e);
            is_unknown(&e)
        }
    }
}
