//! The bank workload: money moves between accounts in transactions and is never created
//! or destroyed; checked by [`check_bank`](crate::check_bank).
//!
//! `keys` accounts start with [`BALANCE_INITIAL`] each, written in one transaction before
//! the clients start (not recorded: no client runs yet). Each account is a key of its own
//! bucket (no `/` in its name), so the accounts spread over the partitions and a transfer
//! usually commits across two of them. Each process then loops over:
//!
//! - `read` (a share [`READ_PROBABILITY`]): one transaction reads every account; its `ok`
//!   carries `value: {account: balance}`. An account found missing is left out of the map,
//!   so the total comes out wrong and the checker reports it.
//! - `transfer {from, to, amount}`: one transaction reads both balances and writes them
//!   moved by `amount`, unless that would overdraw `from`: then it rolls back and records
//!   `fail` with `error: "insufficient funds"`.
//!
//! Outcomes follow the transactional rule of `txn.rs`: `Conflict` on commit is `fail`,
//! any other commit error `info`. Every `ok` read must add up to [`total`]`(keys)`,
//! whatever happened to the transfers.

use std::sync::Arc;
use std::time::Duration;

use kahuna_client::{Client, DeleteItem, Error, GetOptions, SetOptions, Transaction};
use rand::Rng;
use serde_json::{Map, Value, json};

use super::driver::{Process, drive, probe};
use super::txn::{Abandoned, Prepared, finish, txn_timeout};
use super::{WorkloadError, WorkloadKind, WorkloadOptions, WorkloadRun};

/// Each account's balance before the first transfer.
pub(super) const BALANCE_INITIAL: i64 = 100;
/// Largest amount one transfer moves.
const TRANSFER_AMOUNT_MAX: i64 = 30;
/// Share of operations that read every account.
const READ_PROBABILITY: f64 = 0.4;
/// Most accounts a run may have: a read reads each of them, one call apiece.
pub(super) const ACCOUNTS_MAX: usize = 1_000;
/// Most attempts at writing the initial balances (conflicts, failover).
const SETUP_ATTEMPTS_MAX: u32 = 10;
/// Pause between setup attempts.
const SETUP_BACKOFF_MS: u64 = 200;
/// How long deleting the accounts may take at the end.
const CLEANUP_TIMEOUT_MS: u64 = 5_000;

/// The sum every read must see with `keys` accounts.
pub(super) fn total(keys: usize) -> i64 {
    i64::try_from(keys).unwrap_or(i64::MAX).saturating_mul(BALANCE_INITIAL)
}

/// The key of account `index` in a run: a bucket of its own.
pub(super) fn account(prefix: &str, index: usize) -> String {
    format!("{prefix}-bank-{index}")
}

/// Writes the initial balances, runs the clients, then deletes the accounts (best effort,
/// unrecorded).
pub(super) async fn run(options: &WorkloadOptions) -> Result<WorkloadRun, WorkloadError> {
    if options.keys > ACCOUNTS_MAX {
        let message = format!("{} accounts asked, the bank workload allows at most {ACCOUNTS_MAX}", options.keys);
        return Err(WorkloadError::InvalidOptions(message));
    }
    let probe_client = probe(options).await?;
    let accounts: Arc<[String]> = (0..options.keys).map(|i| account(&options.key_prefix, i)).collect();
    let timeout = txn_timeout(options);
    setup(&probe_client, &accounts, timeout).await?;
    let run = drive(WorkloadKind::Bank, options, |process| {
        let accounts = accounts.clone();
        async move { client_loop(process, &accounts, timeout).await }
    })
    .await?;
    let cleanup = probe_client.delete_many(accounts.iter().map(|a| DeleteItem::new(a.as_str())));
    let _ = tokio::time::timeout(Duration::from_millis(CLEANUP_TIMEOUT_MS), cleanup).await;
    Ok(run)
}

/// Writes [`BALANCE_INITIAL`] to every account in one transaction, retrying on conflicts
/// and failures. A retry after an unknown commit finds the accounts written and stops.
async fn setup(client: &Client, accounts: &[String], timeout: Duration) -> Result<(), WorkloadError> {
    let mut last = String::new();
    for attempt in 0..SETUP_ATTEMPTS_MAX {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(SETUP_BACKOFF_MS)).await;
        }
        match setup_once(client, accounts, timeout).await {
            Ok(()) => return Ok(()),
            Err(SetupError::Client(e)) => last = e.to_string(),
            Err(SetupError::Inconsistent(why)) => {
                return Err(WorkloadError::Setup { workload: WorkloadKind::Bank, reason: why });
            }
        }
    }
    let reason = format!("the initial balances were not written after {SETUP_ATTEMPTS_MAX} attempts: {last}");
    Err(WorkloadError::Setup { workload: WorkloadKind::Bank, reason })
}

enum SetupError {
    /// Worth another attempt.
    Client(Error),
    /// The accounts exist but do not hold a fresh bank: give up.
    Inconsistent(String),
}

impl From<Error> for SetupError {
    fn from(error: Error) -> Self {
        SetupError::Client(error)
    }
}

async fn setup_once(client: &Client, accounts: &[String], timeout: Duration) -> Result<(), SetupError> {
    let txn = client.begin(Some(timeout)).await?;
    let mut balances = Map::new();
    for account in accounts {
        if let Some(balance) = txn.get(account.as_str(), GetOptions::new()).await?.kv.map(|kv| decode(&kv.value)) {
            balances.insert(account.clone(), balance);
        }
    }
    if balances.len() == accounts.len() && balances.values().all(|b| b == &json!(BALANCE_INITIAL)) {
        // An earlier attempt committed although its answer was lost.
        return Ok(());
    }
    if !balances.is_empty() {
        let found = Value::Object(balances);
        return Err(SetupError::Inconsistent(format!("the accounts already hold balances: {found}")));
    }
    for account in accounts {
        if !txn.set(account.as_str(), BALANCE_INITIAL.to_string(), SetOptions::new().nx()).await? {
            let why = format!("account {account} appeared while the bank was set up");
            return Err(SetupError::Inconsistent(why));
        }
    }
    txn.commit().await?;
    Ok(())
}

/// One process: reads of every account and transfers, at random.
async fn client_loop(mut p: Process, accounts: &[String], timeout: Duration) {
    while p.running() {
        // One account leaves nothing to transfer between.
        if accounts.len() < 2 || p.rng.random_bool(READ_PROBABILITY) {
            let pending = p.invoke("read", json!({}));
            let prepared = read(&p, accounts, timeout).await;
            finish(&p, pending, prepared).await;
        } else {
            let from = p.rng.random_range(0..accounts.len());
            // Any account but `from`, uniformly.
            let to = (from + p.rng.random_range(1..accounts.len())) % accounts.len();
            let amount = p.rng.random_range(1..=TRANSFER_AMOUNT_MAX);
            let (from, to) = (&accounts[from], &accounts[to]);
            let pending = p.invoke("transfer", json!({"from": from, "to": to, "amount": amount}));
            let prepared = transfer(&p, from, to, amount, timeout).await;
            finish(&p, pending, prepared).await;
        }
    }
}

/// Reads every account in one transaction.
async fn read(p: &Process, accounts: &[String], timeout: Duration) -> Result<Prepared, Abandoned> {
    let txn = p.client.begin(Some(timeout)).await?;
    let mut balances = Map::new();
    for account in accounts {
        if let Some(kv) = txn.get(account.as_str(), GetOptions::new()).await?.kv {
            balances.insert(account.clone(), decode(&kv.value));
        }
    }
    let results = json!({"value": balances, "snapshot_ts": txn.snapshot_ts()});
    Ok((txn, results))
}

/// Moves `amount` from `from` to `to` in one transaction, refusing to overdraw.
async fn transfer(p: &Process, from: &str, to: &str, amount: i64, timeout: Duration) -> Result<Prepared, Abandoned> {
    let txn = p.client.begin(Some(timeout)).await?;
    let from_balance = balance(&txn, from).await?;
    let to_balance = balance(&txn, to).await?;
    let (Some(from_after), Some(to_after)) = (from_balance.checked_sub(amount), to_balance.checked_add(amount)) else {
        return Err(Abandoned::Refused(
            json!({"error": "balance out of range", "balances": [from_balance, to_balance]}),
        ));
    };
    if from_after < 0 {
        return Err(Abandoned::Refused(json!({"error": "insufficient funds", "balance": from_balance})));
    }
    for (account, after) in [(from, from_after), (to, to_after)] {
        if !txn.set(account, after.to_string(), SetOptions::new()).await? {
            // An unconditional write always applies; refuse to commit half a transfer.
            return Err(Abandoned::Refused(json!({"error": format!("write of {account} not applied")})));
        }
    }
    let results = json!({"balances": [from_balance, to_balance], "snapshot_ts": txn.snapshot_ts()});
    Ok((txn, results))
}

/// An account's balance in the transaction's view; a missing or garbled one refuses the
/// transfer (a read will report it).
async fn balance(txn: &Transaction, account: &str) -> Result<i64, Abandoned> {
    let kv = txn.get(account, GetOptions::new()).await?.kv;
    match kv.as_ref().map(|kv| decode(&kv.value)) {
        Some(Value::Number(n)) if n.is_i64() => Ok(n.as_i64().unwrap_or_default()),
        Some(other) => Err(Abandoned::Refused(json!({"error": format!("account {account} holds {other}")}))),
        None => Err(Abandoned::Refused(json!({"error": format!("account {account} is missing")}))),
    }
}

/// A stored balance as the history records it: the integer, or the raw text of anything
/// else (which the checker reports as malformed).
fn decode(bytes: &[u8]) -> Value {
    let text = String::from_utf8_lossy(bytes);
    text.parse::<i64>().map_or_else(|_| Value::String(text.into_owned()), |n| json!(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_have_their_own_buckets() {
        let key = account("kahuna-check-0badf00d", 3);
        assert_eq!(key, "kahuna-check-0badf00d-bank-3");
        assert!(!key.contains('/'), "a `/` would put every account in one partition");
        assert_eq!(total(8), 800);
        assert_eq!(total(usize::MAX), i64::MAX);
    }

    #[test]
    fn decodes_balances_and_keeps_anything_else() {
        assert_eq!(decode(b"-5"), json!(-5));
        assert_eq!(decode(b"100"), json!(100));
        assert_eq!(decode(b"1e3"), json!("1e3"));
    }
}
