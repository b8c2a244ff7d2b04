//! The transaction engine's [`Transaction`] as a script's transaction ([`ScriptTxn`]).
//!
//! Scripts read and write persistent keys only, as interactive transactions do: an
//! ephemeral option is `InvalidInput`. Kernel errors map as [`ScriptError::from`] says:
//! a failed validation is [`ScriptError::Conflict`] (the engine re-runs the script), bad
//! input is [`ScriptError::InvalidInput`], anything else is [`ScriptError::Kv`]. Locks and
//! sequences are the transaction's too: judged at its snapshot, taking effect with its
//! commit (persistent locks only; no idempotency keys, the transaction is the unit).

use kahuna_kernel::{
    DeleteArgs, Durability, KeyValue, LockOp, LockReply, PointRead, SequenceInfo, SequenceOp, SequenceReply, SetArgs,
};
use kahuna_txn::{Transaction, TxnEngine};

use crate::error::ScriptError;
use crate::txn::{ReadOpts, ScanOpts, ScanPage, ScriptTxn, TxnSource};

/// Refuses the ephemeral keyspace, naming the function's target.
fn persistent(durability: Durability, what: &str) -> Result<(), ScriptError> {
    match durability {
        Durability::Persistent => Ok(()),
        Durability::Ephemeral => Err(ScriptError::invalid(format!(
            "{what}: scripts read and write persistent keys only (a script is a transaction, and \
             transactions do not cover the ephemeral keyspace); drop the durability option"
        ))),
    }
}

impl ScriptTxn for Transaction {
    fn snapshot_ts(&self) -> u64 {
        Transaction::snapshot_ts(self)
    }

    async fn get(&mut self, key: &str, opts: ReadOpts) -> Result<Option<KeyValue>, ScriptError> {
        persistent(opts.durability, &format!("key {key:?}"))?;
        let read = PointRead { key: key.to_owned(), at_revision: opts.at_revision, as_of: opts.as_of };
        Ok(Transaction::get(self, &read).await?)
    }

    async fn scan(&mut self, prefix: &str, opts: ScanOpts) -> Result<ScanPage, ScriptError> {
        persistent(opts.durability, &format!("prefix {prefix:?}"))?;
        let (items, more) = Transaction::scan(self, prefix, opts.after.as_deref(), opts.limit).await?;
        Ok(ScanPage { items, more })
    }

    async fn set(&mut self, args: SetArgs, durability: Durability) -> Result<bool, ScriptError> {
        persistent(durability, &format!("key {:?}", args.key))?;
        Ok(Transaction::set(self, args).await?)
    }

    async fn delete(&mut self, args: DeleteArgs, durability: Durability) -> Result<bool, ScriptError> {
        persistent(durability, &format!("key {:?}", args.key))?;
        Ok(Transaction::delete(self, args).await?)
    }

    async fn extend(&mut self, key: &str, ttl_ms: u64, durability: Durability) -> Result<bool, ScriptError> {
        persistent(durability, &format!("key {key:?}"))?;
        Ok(Transaction::extend(self, key, ttl_ms).await?)
    }

    async fn lock(&mut self, op: LockOp, durability: Durability) -> Result<LockReply, ScriptError> {
        persistent(durability, &format!("lock {:?}", op.name()))?;
        Ok(Transaction::lock(self, op).await?)
    }

    async fn get_lock(&mut self, name: &str, durability: Durability) -> Result<LockReply, ScriptError> {
        persistent(durability, &format!("lock {name:?}"))?;
        Ok(Transaction::get_lock(self, name).await?)
    }

    async fn sequence(&mut self, op: SequenceOp) -> Result<SequenceReply, ScriptError> {
        Ok(Transaction::sequence(self, op).await?)
    }

    async fn get_sequence(&mut self, name: &str) -> Result<Option<SequenceInfo>, ScriptError> {
        Ok(Transaction::get_sequence(self, name).await?)
    }

    async fn commit(self) -> Result<Option<u64>, ScriptError> {
        Ok(Transaction::commit(self).await?)
    }

    async fn rollback(self) {
        Transaction::rollback(self).await
    }
}

/// Begins each attempt's transaction with the engine's default timeout.
impl TxnSource for TxnEngine {
    type Txn = Transaction;

    async fn begin(&self) -> Result<Transaction, ScriptError> {
        Ok(TxnEngine::begin(self, None).await?)
    }
}
