//! `begin`, `commit`, `rollback`, and the key commands run inside an open transaction.
//!
//! The session holds at most one [`Transaction`]. Every way out of it ends the
//! transaction on its node or leaves that to the node's timeout, and takes it out of the
//! session, so the prompt never shows a transaction that is gone: `commit` (whatever its
//! outcome), `rollback`, a `Conflict` (nothing can succeed in it any more), and a
//! `NotFound` (its timeout passed, or its node restarted).

use std::time::Duration;

use kahuna_client::{Client, Error, GetOptions, ReadOptions, Transaction};

use super::{Outcome, Reader, Session, scan};
use crate::error::ShellError;
use crate::parse::Command;

/// Which write a transaction buffered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Buffered {
    /// `set`.
    Set,
    /// `del`.
    Delete,
    /// `extend`.
    Extend,
}

/// How a rollback went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rollback {
    /// The node discarded the transaction.
    Done,
    /// The transaction had already ended on its node (its timeout passed).
    AlreadyEnded,
    /// The node could not be reached; it rolls the transaction back when its timeout
    /// passes. Holds the error.
    Unreachable(String),
}

/// Opens a transaction for `begin`.
///
/// # Cancel safety
///
/// A dropped future may leave a transaction open on a node until its timeout.
pub async fn begin(client: &Client, session: &mut Session, timeout_ms: Option<u64>) -> Result<Outcome, ShellError> {
    let txn = match (timeout_ms, session.txn_timeout_default) {
        (Some(ms), _) => client.begin(Some(Duration::from_millis(ms))).await?,
        (None, None) => client.begin(None).await?,
        (None, Some(default)) => match client.begin(Some(default)).await {
            // A node configured with a shorter maximum refuses the shell's default: its
            // own default is the next best thing, and `begin` prints what was granted.
            Err(Error::InvalidInput(message)) if message.contains("timeout") => client.begin(None).await?,
            other => other?,
        },
    };
    let outcome = Outcome::Begun {
        id: txn.id().to_owned(),
        snapshot_ts: txn.snapshot_ts(),
        timeout: txn.timeout(),
        served_by: txn.served_by(),
    };
    session.txn = Some(txn);
    Ok(outcome)
}

/// Runs `command` in the session's open transaction. The caller has checked that one is
/// open and that the command may run in it.
///
/// # Cancel safety
///
/// A dropped future may leave a write buffered or not; the transaction stays open.
pub async fn execute(session: &mut Session, command: Command) -> Result<Outcome, ShellError> {
    match command {
        Command::Commit => {
            let txn = session.txn.take().ok_or_else(no_transaction)?;
            commit(txn).await
        }
        Command::Rollback => {
            let txn = session.txn.take().ok_or_else(no_transaction)?;
            let (id, served_by) = (txn.id().to_owned(), txn.served_by());
            Ok(Outcome::RolledBack { id, rollback: roll_back(txn).await, served_by })
        }
        command => {
            let txn = session.txn.as_ref().ok_or_else(no_transaction)?;
            match run_in(txn, command).await {
                Err(error) if error.code == "Conflict" || error.code == "NotFound" => {
                    let txn = session.txn.take().ok_or_else(no_transaction)?;
                    Err(ended(txn, error).await)
                }
                other => other,
            }
        }
    }
}

/// Runs a key command in `txn`.
async fn run_in(txn: &Transaction, command: Command) -> Result<Outcome, ShellError> {
    let served_by = txn.served_by();
    let buffered = |op, key, applied| Outcome::Buffered { op, key, applied, served_by };
    Ok(match command {
        Command::Get { key, options } => {
            let options = GetOptions { consistency: Default::default(), ..options };
            let result = txn.get(key.clone(), options).await?;
            Outcome::Get { key, result }
        }
        Command::Exists { key, options } => {
            let result = txn.exists(key.clone(), ReadOptions { consistency: Default::default(), ..options }).await?;
            Outcome::Exists { key, result }
        }
        Command::Scan { prefix, options, limit, cursor } => {
            return scan(Reader::Txn(txn), prefix, options, limit, cursor).await;
        }
        Command::Set { key, value, options } => {
            let applied = txn.set(key.clone(), value, options).await?;
            buffered(Buffered::Set, key, applied)
        }
        Command::Delete { key, options } => {
            let applied = txn.delete(key.clone(), options).await?;
            buffered(Buffered::Delete, key, applied)
        }
        Command::Extend { key, ttl_ms, durability } => {
            let applied = txn.extend(key.clone(), ttl_ms, durability).await?;
            buffered(Buffered::Extend, key, applied)
        }
        other => {
            let reason = other.refused_in_transaction();
            return Err(ShellError::invalid(reason.unwrap_or_else(|| "this does not run in a transaction".into())));
        }
    })
}

/// Commits `txn`, which ends it whatever the outcome.
async fn commit(txn: Transaction) -> Result<Outcome, ShellError> {
    let (id, served_by) = (txn.id().to_owned(), txn.served_by());
    let error = match txn.commit().await {
        Ok(commit_ts) => return Ok(Outcome::Committed { id, commit_ts, served_by }),
        Err(error) => error,
    };
    let what = match &error {
        Error::Conflict(_) => "it was not committed and nothing was written; run the transaction again from begin",
        Error::NotFound(_) => "nothing was committed",
        Error::Timeout(_) | Error::Unavailable(_) => {
            "the commit's outcome is unknown: it may or may not have been committed"
        }
        _ => "nothing was committed",
    };
    Err(ShellError::new(error.code(), format!("{}; {what}", about(&id, error.message()))))
}

/// Returns `message` naming transaction `id`, unless it does already (the server's
/// messages usually do).
fn about(id: &str, message: &str) -> String {
    if message.contains(id) { message.to_owned() } else { format!("transaction {id}: {message}") }
}

/// Rolls `txn` back; never fails, since the transaction ends either way (the node's
/// timeout ends one it cannot be told about).
pub async fn roll_back(txn: Transaction) -> Rollback {
    match txn.rollback().await {
        Ok(true) => Rollback::Done,
        Ok(false) | Err(Error::NotFound(_)) => Rollback::AlreadyEnded,
        Err(error) => Rollback::Unreachable(error.to_string()),
    }
}

/// Ends `txn` after `error` (`Conflict` or `NotFound`) made it useless, and says so.
async fn ended(txn: Transaction, error: ShellError) -> ShellError {
    let id = txn.id().to_owned();
    let what = if error.code == "Conflict" {
        // Nothing it does can commit any more; free the node's memory now.
        let _ = roll_back(txn).await;
        "it was rolled back; run the transaction again from begin"
    } else {
        drop(txn);
        "nothing was committed; begin again"
    };
    ShellError { message: format!("{}; {what}", about(&id, &error.message)), ..error }
}

fn no_transaction() -> ShellError {
    ShellError::invalid("no transaction is open; begin one first")
}

/// Returns the id shortened for a prompt: `node-…-counter` for the server's
/// `node-snapshot-counter` ids, else at most `PROMPT_ID_CHARS_MAX` characters.
pub fn short_id(id: &str) -> String {
    const PROMPT_ID_CHARS_MAX: usize = 12;
    let parts: Vec<&str> = id.split('-').collect();
    if let [first, .., last] = parts.as_slice()
        && parts.len() >= 3
    {
        return format!("{first}-…-{last}");
    }
    if id.chars().count() <= PROMPT_ID_CHARS_MAX {
        return id.to_owned();
    }
    let head: String = id.chars().take(PROMPT_ID_CHARS_MAX - 1).collect();
    format!("{head}…")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_ids_are_short() {
        assert_eq!(short_id("1-000192ab34cd0000-7"), "1-…-7");
        assert_eq!(short_id("abc"), "abc");
        assert_eq!(short_id("0123456789abcdef"), "0123456789a…");
    }
}
