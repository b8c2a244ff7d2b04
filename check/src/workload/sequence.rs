//! The sequence workload, waiting for the client's sequence API.
//!
//! Plan, in [`check_sequence`](crate::check_sequence)'s fields: one sequence per run
//! (created with start 1, increment 1); each process mixes `next {sequence,
//! idempotency_key}` (the `ok` carries `value`) and `reserve {sequence, count,
//! idempotency_key}` (the `ok` carries `value: [first, last]`). After an unknown outcome
//! the process replays the same idempotency key, so the checker sees replays and can
//! require them to return the first allocation; values may be skipped, never repeated.
//!
//! When the API lands: implement `run` with [`drive`](super::driver) as
//! [`register`](super::register) does, and return `None` from
//! [`WorkloadKind::missing_api`].

use super::{WorkloadError, WorkloadKind, WorkloadOptions, WorkloadRun};

/// What this workload waits for.
pub(super) const NEEDS: &str = "sequences in kahuna-client (create, next and reserve with idempotency keys)";

/// Fails with [`WorkloadError::NotAvailable`] until the client has sequences.
pub(super) async fn run(_options: &WorkloadOptions) -> Result<WorkloadRun, WorkloadError> {
    Err(WorkloadError::NotAvailable { workload: WorkloadKind::Sequence, needs: NEEDS })
}
