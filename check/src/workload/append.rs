//! The list-append workload, not available until transactions land.
//!
//! Plan, in [`check_append`](crate::check_append)'s fields: each process runs short
//! interactive transactions of 1 to 4 micro-operations over `keys` lists, `["append", k,
//! v]` with values unique per key and `["r", k, null]` whose `ok` fills in the list read,
//! committed as one `txn`. A `Conflict` on commit is a `fail` (nothing was applied); a
//! timeout on commit is `info`. The lists are stored as one key each, so a read of a list
//! is one snapshot read inside the transaction.
//!
//! It cannot be emulated with single-key compare-and-sets: the anomalies it looks for
//! (G1c, G-single, G2) only exist across keys of one transaction.

use super::{WorkloadError, WorkloadKind, WorkloadOptions, WorkloadRun};

/// What this workload waits for.
pub(super) const NEEDS: &str = "transactions (begin, reads and writes, commit), which do not exist yet";

/// Fails with [`WorkloadError::NotAvailable`] until transactions land.
pub(super) async fn run(_options: &WorkloadOptions) -> Result<WorkloadRun, WorkloadError> {
    Err(WorkloadError::NotAvailable { workload: WorkloadKind::Append, needs: NEEDS })
}
