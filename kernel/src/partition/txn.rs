//! Transaction steps on a partition (one-partition commit, prepare, decide, resolve):
//! each is one Raft entry, judged by `txn_state` at apply.

use super::Partition;
use crate::error::KvError;
use crate::raft_types::{ApplyResult, Command, TxnCommand};
use crate::schema::{PREPARED, TXN_RECORDS};
use crate::txn_state;
use crate::types::{PartitionId, PartitionRequest, TxnDecision, TxnReply};

impl Partition {
    /// Proposes a transaction step and answers its outcome.
    pub(super) async fn txn_step(&self, request: &PartitionRequest) -> Result<TxnReply, KvError> {
        let (command, snapshot_ts) = match request.clone() {
            PartitionRequest::TxnCommit { txn_id, snapshot_ts, part } => {
                (TxnCommand::Commit { txn_id, snapshot_ts, part }, Some(snapshot_ts))
            }
            PartitionRequest::TxnPrepare { txn_id, snapshot_ts, part, record_partition, timeout_ms } => {
                (TxnCommand::Prepare { txn_id, snapshot_ts, part, record_partition, timeout_ms }, Some(snapshot_ts))
            }
            PartitionRequest::TxnDecide { txn_id, decision } => (TxnCommand::Decide { txn_id, decision }, None),
            PartitionRequest::TxnResolve { txn_id, decision } => (TxnCommand::Resolve { txn_id, decision }, None),
            other => return Err(KvError::Internal(format!("{other:?} reached the transaction path"))),
        };
        if let Some(snapshot_ts) = snapshot_ts {
            // A commit's timestamp is above its snapshot's, even when the snapshot came
            // from a node whose clock is ahead of this one.
            self.hlc.observe(snapshot_ts);
        }
        match self.propose(Command::Txn(command)).await? {
            ApplyResult::Txn(outcome) => outcome,
            other => Err(KvError::Internal(format!("unexpected apply result {other:?}"))),
        }
    }

    /// The decision transaction `txn_id`'s record holds on this replica, if any, read
    /// without asking a quorum: the first decision written is final, so one found here is
    /// the decision; none found may only mean this replica has not applied it yet.
    pub(crate) async fn recorded_decision(&self, txn_id: &str) -> Result<Option<TxnDecision>, KvError> {
        let txn = self.storage.read().await?;
        let table = txn.open_table(TXN_RECORDS).map_err(|e| KvError::Internal(e.to_string()))?;
        Ok(txn_state::recorded_decision(&table, self.id, txn_id)?)
    }

    /// Transactions prepared here whose deadline passed at unix ms `now_ms`, when this
    /// node leads the partition: (txn id, record partition).
    pub(crate) async fn overdue_transactions(&self, now_ms: u64) -> Result<Vec<(String, PartitionId)>, KvError> {
        if self.leader_term().is_none() {
            return Ok(Vec::new());
        }
        let txn = self.storage.read().await?;
        let table = txn.open_table(PREPARED).map_err(|e| KvError::Internal(e.to_string()))?;
        Ok(txn_state::overdue(&table, self.id, now_ms)?)
    }
}
