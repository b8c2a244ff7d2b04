//! Locks and sequences on a partition: persistent operations go through Raft, ephemeral
//! locks live in the leader's [`Ephemeral`](super::Ephemeral) state, and try-locks
//! that may wait queue on the leader ([`LockWaits`](crate::lock_waits::LockWaits)).

use std::time::Duration;

// tokio's clock, not std's: the same in production, and the one a simulation drives.
use tokio::time::Instant;

use super::Partition;
use crate::error::KvError;
use crate::locks::{LockRecord, TokenSpace, apply_lock};
use crate::raft_types::{ApplyResult, Command};
use crate::schema::{LOCKS, LOCKS_TABLE, SEQUENCES, SEQUENCES_TABLE, decode};
use crate::state_machine::LockOperationRecord;
use crate::types::{Consistency, Durability, LockOp, LockReply, SequenceInfo, SequenceOp, SequenceReply};

/// Added to a lease end before a waiter retries, so that the retry's timestamp is
/// surely past it.
const EXPIRY_MARGIN_MS: u64 = 1;

impl Partition {
    /// Runs a lock operation. An acquire with `wait_ms > 0` that finds the lock held
    /// waits in the lock's FIFO queue, retrying when the lock is released or the
    /// holder's lease ends, until `wait_ms` has passed.
    ///
    /// # Cancel safety
    /// Dropping the future leaves the queue at once; an acquire already proposed may
    /// still grant the lock (the owner can re-acquire to learn its token).
    pub(super) async fn lock_op(
        &self,
        op: &LockOp,
        durability: Durability,
        operation_id: Option<&str>,
        wait_ms: u64,
    ) -> Result<LockReply, KvError> {
        let key = (durability, op.name().to_owned());
        if !matches!(op, LockOp::Acquire { .. }) {
            let reply = self.lock_once(op, durability, operation_id).await?;
            if matches!(op, LockOp::Release { .. }) && reply.done {
                self.waits.released(&key);
            }
            return Ok(reply);
        }
        // An acquire is idempotent per owner, so it never carries an operation id: a
        // recorded "not acquired" would otherwise answer every later retry.
        let queued = wait_ms > 0 && self.waits.has_waiters(&key);
        let mut last = None;
        if !queued {
            let reply = self.lock_once(op, durability, None).await?;
            if reply.done || wait_ms == 0 {
                return Ok(reply);
            }
            last = Some(reply);
        }
        let deadline = Instant::now() + Duration::from_millis(wait_ms);
        let ticket = self.waits.enqueue(key)?;
        if let Some(holder) = last.as_ref().and_then(|r| r.holder.as_ref()) {
            ticket.set_holder_expires_at_ms(Some(holder.expires_at_ms));
        }
        loop {
            if tokio::time::timeout_at(deadline, ticket.turn()).await.is_err() {
                break;
            }
            if let Some(expires_at_ms) = ticket.holder_expires_at_ms() {
                let lease_left = expires_at_ms.saturating_sub(self.hlc.wall_ms()) + EXPIRY_MARGIN_MS;
                let retry_at = (Instant::now() + Duration::from_millis(lease_left)).min(deadline);
                let _ = tokio::time::timeout_at(retry_at, ticket.woken()).await;
            }
            if Instant::now() >= deadline {
                break;
            }
            let reply = self.lock_once(op, durability, None).await?;
            let expires_at_ms = reply.holder.as_ref().map(|h| h.expires_at_ms);
            ticket.set_holder_expires_at_ms(expires_at_ms);
            if reply.done {
                return Ok(reply);
            }
            last = Some(reply);
        }
        match last {
            Some(reply) => Ok(reply),
            // Queued behind others from the start and never got a turn: report the
            // lock as it stands now, without changing it.
            None => self.get_lock(op.name(), durability, Consistency::Linearizable).await,
        }
    }

    /// Applies one lock operation: through Raft when persistent, else in the leader's
    /// ephemeral lock table.
    async fn lock_once(
        &self,
        op: &LockOp,
        durability: Durability,
        operation_id: Option<&str>,
    ) -> Result<LockReply, KvError> {
        match durability {
            Durability::Persistent => {
                let command = Command::Lock { op: op.clone(), operation_id: operation_id.map(str::to_owned) };
                match self.propose(command).await? {
                    ApplyResult::Lock(result) => result,
                    ApplyResult::Blocked(e) => Err(e),
                    other => Err(KvError::Internal(format!("unexpected apply result {other:?}"))),
                }
            }
            Durability::Ephemeral => {
                self.with_ephemeral(|eph, ts| {
                    if let Some(record) = operation_id.and_then(|id| eph.lock_operations.get(id)) {
                        return record.result.clone();
                    }
                    let tokens = TokenSpace::ephemeral(eph.term);
                    let (next, result) = apply_lock(eph.locks.get(op.name()), op, ts, tokens);
                    if let Some(next) = next {
                        eph.locks.insert(op.name().to_owned(), next);
                    }
                    if let Some(id) = operation_id {
                        let record = LockOperationRecord { ts, result: result.clone() };
                        eph.lock_operations.insert(id.to_owned(), record);
                    }
                    result
                })
                .await
            }
        }
    }

    /// Reads a lock: its live holder (judged at this node's HLC) and last token.
    pub(super) async fn get_lock(
        &self,
        name: &str,
        durability: Durability,
        consistency: Consistency,
    ) -> Result<LockReply, KvError> {
        match durability {
            Durability::Persistent => {
                if consistency == Consistency::Linearizable {
                    self.barrier().await?;
                }
                let record: Option<LockRecord> = self.read_named(LOCKS, LOCKS_TABLE, name).await?;
                Ok(record.unwrap_or_default().reply(false, self.hlc.now()))
            }
            Durability::Ephemeral => {
                let eph = self.ephemeral_state(consistency).await?;
                let record = eph.and_then(|eph| eph.locks.get(name).cloned());
                Ok(record.unwrap_or_default().reply(false, self.hlc.now()))
            }
        }
    }

    /// Runs a sequence operation through Raft.
    pub(super) async fn sequence_op(&self, op: SequenceOp) -> Result<SequenceReply, KvError> {
        match self.propose(Command::Sequence { op }).await? {
            ApplyResult::Sequence(result) => result,
            ApplyResult::Blocked(e) => Err(e),
            other => Err(KvError::Internal(format!("unexpected apply result {other:?}"))),
        }
    }

    /// Reads a sequence's state.
    pub(super) async fn get_sequence(&self, name: &str, consistency: Consistency) -> Result<SequenceReply, KvError> {
        if consistency == Consistency::Linearizable {
            self.barrier().await?;
        }
        let info: Option<SequenceInfo> = self.read_named(SEQUENCES, SEQUENCES_TABLE, name).await?;
        Ok(SequenceReply::Info(info))
    }

    /// Reads this replica's record `name` of a `(partition, name)` table.
    async fn read_named<T: serde::de::DeserializeOwned>(
        &self,
        definition: redb::TableDefinition<'static, (u32, &'static str), &'static [u8]>,
        table: &'static str,
        name: &str,
    ) -> Result<Option<T>, KvError> {
        let internal = |e: redb::Error| KvError::Internal(e.to_string());
        let txn = self.storage.read().await?;
        let rows = txn.open_table(definition).map_err(|e| internal(e.into()))?;
        let found = rows.get((self.id, name)).map_err(|e| internal(e.into()))?;
        Ok(found.map(|v| decode(table, v.value())).transpose()?)
    }
}
