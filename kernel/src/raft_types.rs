//! openraft's type configuration and what a Raft entry of ours carries.

use std::io::Cursor;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::KvError;
use crate::types::{
    LockOp, LockReply, PartitionId, SequenceOp, SequenceReply, TxnDecision, TxnPart, TxnReply, WriteOp, WriteResult,
};

openraft::declare_raft_types!(
    /// Kahuna's openraft types: one instance per partition shares them.
    pub TypeConfig:
        D = Proposal,
        R = ApplyResult,
        NodeId = u64,
        Node = openraft::BasicNode,
        SnapshotData = Cursor<Vec<u8>>,
);

pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<u64>;
pub type StorageError = openraft::StorageError<u64>;
pub type Raft = openraft::Raft<TypeConfig>;

/// A command, stamped by the leader with its HLC when proposed. The commit timestamp is
/// fixed at apply time as `max(ts, last commit_ts + 1)`, the same on every replica.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    pub ts: u64,
    pub command: Command,
}

impl std::fmt::Display for Proposal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.command {
            Command::Write { ops, .. } => write!(f, "write({} ops)@{}", ops.len(), self.ts),
            Command::Compact { before_ts, .. } => write!(f, "compact(<{before_ts})@{}", self.ts),
            Command::Lock { op, .. } => write!(f, "lock({:?})@{}", op.name(), self.ts),
            Command::Sequence { op } => write!(f, "sequence({:?})@{}", op.name(), self.ts),
            Command::Txn(step) => write!(f, "txn({})@{}", step.txn_id(), self.ts),
            Command::Batch(proposals) => write!(f, "batch({} proposals)@{}", proposals.len(), self.ts),
        }
    }
}

/// What a Raft entry asks the state machine to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Mutations applied atomically in order. With an operation id, a replay of the
    /// same id answers the first outcome instead of applying again.
    Write { ops: Vec<WriteOp>, operation_id: Option<String> },
    /// Drops history older than `before_ts` and operation records older than
    /// `operations_before_ts`.
    Compact { before_ts: u64, operations_before_ts: u64 },
    /// A lock operation, judged at the entry's commit timestamp. With an operation id,
    /// a replay answers the first outcome.
    Lock { op: LockOp, operation_id: Option<String> },
    /// A sequence operation; reserves de-duplicate by their idempotency key.
    Sequence { op: SequenceOp },
    /// A step of a transaction's commit.
    Txn(TxnCommand),
    /// Proposals that queued while the partition's previous entry was in flight, applied
    /// one by one in order, each at its own stamp, as if each were an entry of its own
    /// (openraft 0.9 puts one entry of a partition on disk per fsync: one entry carrying
    /// many proposals is group commit within the partition). Never nested. Shared, not
    /// copied, when openraft clones the entry to apply or replicate it (serde's `rc`
    /// encodes it as the vector itself).
    Batch(Arc<Vec<Proposal>>),
}

/// The steps of a transaction's commit, as Raft entries (see `PartitionRequest`'s
/// `Txn*` requests, which they carry).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnCommand {
    Commit { txn_id: String, snapshot_ts: u64, part: TxnPart },
    Prepare { txn_id: String, snapshot_ts: u64, part: TxnPart, record_partition: PartitionId, timeout_ms: u64 },
    Decide { txn_id: String, decision: TxnDecision },
    Resolve { txn_id: String, decision: TxnDecision },
}

impl TxnCommand {
    /// The transaction the step belongs to.
    pub fn txn_id(&self) -> &str {
        match self {
            Self::Commit { txn_id, .. }
            | Self::Prepare { txn_id, .. }
            | Self::Decide { txn_id, .. }
            | Self::Resolve { txn_id, .. } => txn_id,
        }
    }
}

/// What applying an entry produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ApplyResult {
    /// Blank and membership entries.
    None,
    Write(Vec<WriteResult>),
    Compacted {
        versions_removed: u64,
    },
    /// A refusal (not the owner, exhausted...) is an outcome of the entry, the same on
    /// every replica, so it travels as a value rather than as a storage failure.
    Lock(Result<LockReply, KvError>),
    Sequence(Result<SequenceReply, KvError>),
    /// A conflict is an outcome too, the same on every replica.
    Txn(Result<TxnReply, KvError>),
    /// A write met a prepared transaction's intent and changed nothing (`KvError::Locked`).
    Blocked(KvError),
    /// The outcomes of a [`Command::Batch`]'s proposals, in order.
    Batch(Vec<ApplyResult>),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch's proposals behind an `Arc` encode as the vector itself, so entries
    /// written before it was shared read the same, and the other way round.
    #[test]
    fn a_shared_batch_encodes_as_its_vector() {
        let proposals = vec![Proposal {
            ts: 5,
            command: Command::Sequence { op: crate::types::SequenceOp::Delete { name: "s".into() } },
        }];
        let shared = postcard::to_stdvec(&Command::Batch(Arc::new(proposals.clone()))).expect("encodes");
        let mut plain = vec![5u8]; // the variant index of `Batch`
        plain.extend(postcard::to_stdvec(&proposals).expect("encodes"));
        assert_eq!(shared, plain);
        assert_eq!(postcard::from_bytes::<Command>(&plain).expect("decodes"), Command::Batch(Arc::new(proposals)));
    }
}
