//! The bank workload, not available until transactions land.
//!
//! Plan, in [`check_bank`](crate::check_bank)'s fields: `keys` accounts start with
//! [`BALANCE_INITIAL`] each (written in one transaction before the clients start); each
//! process either reads every account in one transaction (`read`, the `ok` carries
//! `value: {account: balance}`) or moves a random amount between two accounts in one
//! transaction that refuses to overdraw (`transfer {from, to, amount}`). Every read must
//! add up to [`total`]`(keys)`.

use super::{WorkloadError, WorkloadKind, WorkloadOptions, WorkloadRun};

/// What this workload waits for.
pub(super) const NEEDS: &str = "transactions (snapshot reads across keys, atomic commit), which do not exist yet";

/// Each account's balance before the first transfer.
pub(super) const BALANCE_INITIAL: i64 = 100;

/// The sum every read must see with `keys` accounts.
pub(super) fn total(keys: usize) -> i64 {
    i64::try_from(keys).unwrap_or(i64::MAX).saturating_mul(BALANCE_INITIAL)
}

/// Fails with [`WorkloadError::NotAvailable`] until transactions land.
pub(super) async fn run(_options: &WorkloadOptions) -> Result<WorkloadRun, WorkloadError> {
    Err(WorkloadError::NotAvailable { workload: WorkloadKind::Bank, needs: NEEDS })
}
