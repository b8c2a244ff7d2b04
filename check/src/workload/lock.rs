//! The lock workload, waiting for the client's lock API.
//!
//! Plan, in [`check_lock`](crate::check_lock)'s fields: each process loops over a few lock
//! names: `acquire {lock, owner}` (try-lock with a short lease; the `ok` carries `token`),
//! then a fenced `write {resource, token}` to a resource key that accepts a token only if
//! it is at least the last one accepted (a compare-and-set on the resource's revision, so
//! `ok` means accepted and `fail` rejected), then `release {lock}`. Some processes sleep
//! past their lease before writing, so stale tokens reach the resource. A timeout on an
//! acquire is `info`: the grant may exist with a token nobody saw.
//!
//! When the API lands: implement `run` with [`drive`](super::driver) as
//! [`register`](super::register) does, and make `NEEDS` unused by returning `None` from
//! [`WorkloadKind::missing_api`].

use super::{WorkloadError, WorkloadKind, WorkloadOptions, WorkloadRun};

/// What this workload waits for.
pub(super) const NEEDS: &str = "locks in kahuna-client (try-lock with lease and fencing token, unlock)";

/// Fails with [`WorkloadError::NotAvailable`] until the client has locks.
pub(super) async fn run(_options: &WorkloadOptions) -> Result<WorkloadRun, WorkloadError> {
    Err(WorkloadError::NotAvailable { workload: WorkloadKind::Lock, needs: NEEDS })
}
