//! What the transactional workloads (`append`, `bank`) share: the life they give a
//! transaction, and how its end goes into the history.
//!
//! The rule for outcomes: a transaction abandoned before its commit was sent did not take
//! effect (`fail`), whatever the error; a commit answered with [`Error::Conflict`] did not
//! either (`fail`); any other commit error leaves the outcome unknown (`info`), because
//! the commit may have been applied before the answer was lost, and a node restarted in
//! between may no longer know the first outcome.

use std::time::Duration;

use kahuna_client::{Error, Transaction};
use serde_json::{Map, Value, json};

use super::WorkloadOptions;
use super::driver::Process;
use crate::recorder::Pending;

/// How many call budgets a transaction may live: a few calls and a commit fit, and a
/// transaction stranded on a killed node stops holding its keys soon after.
const TXN_TIMEOUT_CALLS: u32 = 4;
/// Shortest and longest life given to a transaction, ms (the server's maximum is 60 s).
const TXN_TIMEOUT_MS_MIN: u64 = 1_000;
const TXN_TIMEOUT_MS_MAX: u64 = 60_000;

/// The timeout each transaction of a run begins with.
pub(super) fn txn_timeout(options: &WorkloadOptions) -> Duration {
    let wanted = options.timeout.saturating_mul(TXN_TIMEOUT_CALLS);
    wanted.clamp(Duration::from_millis(TXN_TIMEOUT_MS_MIN), Duration::from_millis(TXN_TIMEOUT_MS_MAX))
}

/// Why a transaction was given up before its commit was sent: nothing of it took
/// effect. Dropping the transaction rolls it back in the background.
#[derive(Debug)]
pub(super) enum Abandoned {
    /// A call of the transaction failed.
    Error(Error),
    /// The workload chose not to commit (an overdraft); the fields say why.
    Refused(Value),
}

impl From<Error> for Abandoned {
    fn from(error: Error) -> Self {
        Abandoned::Error(error)
    }
}

/// A transaction ready to commit, with the results its `ok` will carry (a JSON object).
pub(super) type Prepared = (Transaction, Value);

/// Records how the transaction behind `pending` ended: abandoned (`fail`), or committed
/// now: `ok` with the results plus the commit timestamp and node, `fail` on a conflict,
/// `info` on any other commit error.
///
/// # Cancel safety
///
/// Dropping the future leaves `pending` unknown, which is what the commit then is.
pub(super) async fn finish(p: &Process, pending: Pending, prepared: Result<Prepared, Abandoned>) {
    let (txn, results) = match prepared {
        Ok(prepared) => prepared,
        Err(Abandoned::Error(error)) => return p.failed(pending, &error),
        Err(Abandoned::Refused(why)) => return p.fail(pending, why),
    };
    let node = txn.served_by();
    match txn.commit().await {
        Ok(commit_ts) => {
            let mut results = match results {
                Value::Object(map) => map,
                other => Map::from_iter([("value".to_string(), other)]),
            };
            results.insert("commit_ts".into(), json!(commit_ts));
            results.insert("node".into(), json!(node));
            p.ok(pending, Value::Object(results));
        }
        Err(error @ Error::Conflict(_)) => p.failed(pending, &error),
        Err(error) => p.unknown(pending, &error),
    }
}
