//! The seam to the transaction engine: what a script may do inside its transaction.
//!
//! The engine in `txn/` implements [`ScriptTxn`] and hands one transaction per attempt
//! to the script engine, directly or through a [`TxnSource`]. The script engine calls
//! [`ScriptTxn::commit`] when the script returns and [`ScriptTxn::rollback`] when it
//! fails, so a failing or killed script never leaves partial writes.

use std::future::Future;

use kahuna_kernel::{
    DeleteArgs, Durability, KeyValue, LockOp, LockReply, SequenceInfo, SequenceOp, SequenceReply, SetArgs,
};

use crate::error::ScriptError;

/// How `kahuna.get` and `kahuna.exists` read a key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadOpts {
    pub durability: Durability,
    /// The version with this revision, when it is still within the history window.
    pub at_revision: Option<i64>,
    /// The version visible at this HLC timestamp (at most the snapshot's).
    pub as_of: Option<u64>,
}

/// How `kahuna.scan` pages through a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanOpts {
    pub durability: Durability,
    /// Only keys greater than this one (the last key of the previous page).
    pub after: Option<String>,
    /// Most keys to return, already checked against the kernel's scan limits.
    pub limit: u32,
}

/// One page of a scan, sorted by key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanPage {
    pub items: Vec<KeyValue>,
    /// A further page may exist: scan again with `after` = the last key.
    pub more: bool,
}

/// A transaction as a script sees it.
///
/// Correctness notes for implementors:
/// - Every read comes from one snapshot (at [`ScriptTxn::snapshot_ts`]) overlaid with the
///   transaction's own buffered writes (read-your-writes); a read past the snapshot
///   (`as_of` later than it) is `InvalidInput`.
/// - Writes are buffered and reach the store only in [`ScriptTxn::commit`].
/// - The conditions of a set or delete (`nx`, `xx`, compare value, compare revision) are
///   judged against the same view, and the key joins the read set, so that commit
///   validation catches a concurrent change.
/// - After any method returned [`ScriptError::Conflict`], `commit` must fail with a
///   conflict too: a script may catch the error with `pcall` and return normally.
/// - Lock and sequence operations, when supported, take effect atomically with the
///   writes at commit.
///
/// Methods with a default answer [`ScriptError::Unsupported`]; the Lua functions built on
/// them then fail with that error.
pub trait ScriptTxn: Send + Sized + 'static {
    /// The snapshot's HLC timestamp; `kahuna.now()` returns it.
    fn snapshot_ts(&self) -> u64;

    /// The live value of `key` in the transaction's view, or the one `opts` asks for.
    fn get(&mut self, key: &str, opts: ReadOpts) -> impl Future<Output = Result<Option<KeyValue>, ScriptError>> + Send;

    /// Live keys starting with `prefix`, sorted, at most `opts.limit`.
    fn scan(&mut self, prefix: &str, opts: ScanOpts) -> impl Future<Output = Result<ScanPage, ScriptError>> + Send;

    /// Buffers a set when its conditions hold in the transaction's view; returns whether
    /// they held (false: nothing buffered).
    fn set(&mut self, args: SetArgs, durability: Durability) -> impl Future<Output = Result<bool, ScriptError>> + Send;

    /// Buffers a delete when the key is live and its conditions hold; returns whether
    /// they did.
    fn delete(
        &mut self,
        args: DeleteArgs,
        durability: Durability,
    ) -> impl Future<Output = Result<bool, ScriptError>> + Send;

    /// Buffers an expiry change (`ttl_ms` from commit; 0 removes it) of a live key;
    /// returns whether the key was live.
    fn extend(
        &mut self,
        key: &str,
        ttl_ms: u64,
        durability: Durability,
    ) -> impl Future<Output = Result<bool, ScriptError>> + Send {
        let _ = (key, ttl_ms, durability);
        std::future::ready(Err(ScriptError::unsupported("kahuna.extend is not supported by this transaction engine")))
    }

    /// A lock operation, applied with the transaction's writes.
    fn lock(
        &mut self,
        op: LockOp,
        durability: Durability,
    ) -> impl Future<Output = Result<LockReply, ScriptError>> + Send {
        let _ = (op, durability);
        std::future::ready(Err(ScriptError::unsupported(
            "locks in scripts arrive with lock support in the transaction engine",
        )))
    }

    /// A lock's holder in the transaction's view.
    fn get_lock(
        &mut self,
        name: &str,
        durability: Durability,
    ) -> impl Future<Output = Result<LockReply, ScriptError>> + Send {
        let _ = (name, durability);
        std::future::ready(Err(ScriptError::unsupported(
            "locks in scripts arrive with lock support in the transaction engine",
        )))
    }

    /// A sequence operation, applied with the transaction's writes.
    fn sequence(&mut self, op: SequenceOp) -> impl Future<Output = Result<SequenceReply, ScriptError>> + Send {
        let _ = op;
        std::future::ready(Err(ScriptError::unsupported(
            "sequences in scripts arrive with sequence support in the transaction engine",
        )))
    }

    /// A sequence's state in the transaction's view; `None` when it does not exist.
    fn get_sequence(&mut self, name: &str) -> impl Future<Output = Result<Option<SequenceInfo>, ScriptError>> + Send {
        let _ = name;
        std::future::ready(Err(ScriptError::unsupported(
            "sequences in scripts arrive with sequence support in the transaction engine",
        )))
    }

    /// Validates and commits the buffered writes atomically. Returns the commit
    /// timestamp, or `None` when there was nothing to write. A failed validation is
    /// [`ScriptError::Conflict`] and commits nothing.
    fn commit(self) -> impl Future<Output = Result<Option<u64>, ScriptError>> + Send;

    /// Discards the buffered writes and releases whatever the transaction holds. The
    /// default drops the transaction.
    fn rollback(self) -> impl Future<Output = ()> + Send {
        drop(self);
        std::future::ready(())
    }
}

/// Begins a fresh transaction (a new snapshot) for each attempt of a script.
///
/// Closures `Fn() -> impl Future<Output = Result<T, ScriptError>>` implement it.
pub trait TxnSource: Sync {
    type Txn: ScriptTxn;

    /// Begins a transaction.
    fn begin(&self) -> impl Future<Output = Result<Self::Txn, ScriptError>> + Send;
}

impl<F, Fut, T> TxnSource for F
where
    F: Fn() -> Fut + Sync,
    Fut: Future<Output = Result<T, ScriptError>> + Send,
    T: ScriptTxn,
{
    type Txn = T;

    fn begin(&self) -> impl Future<Output = Result<T, ScriptError>> + Send {
        self()
    }
}
