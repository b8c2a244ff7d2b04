//! Errors of the kernel's API.
//!
//! [`KvError`] is what a client can cause or must handle; each variant has a stable
//! code ([`KvError::code`]) that the server maps to a gRPC status. Retryable errors
//! (`NotLeader`, `Unavailable`, `Timeout`) are kept apart from permanent ones.
//! [`StoreError`] is a failure of the node's own disk or state: fatal for the node.

use serde::{Deserialize, Serialize};

/// A request failed; the variant says whether retrying can help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[non_exhaustive]
pub enum KvError {
    /// The request is malformed or breaks a limit; the message names which.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// This node does not lead the partition; `leader` is the one it knows of.
    #[error("node does not lead partition {partition} (leader: {leader:?})")]
    NotLeader { partition: u32, leader: Option<u64> },
    /// No leader could serve the request now (election in progress, no quorum).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The history point asked for has been compacted away.
    #[error("compacted: {0}")]
    Compacted(String),
    /// The cluster did not answer in time; the outcome of a write is unknown.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The node failed internally (disk, corrupt data); the message says what.
    #[error("internal error: {0}")]
    Internal(String),
    /// The named object (a sequence) does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// A sequence cannot hand out the values asked for without passing its maximum;
    /// nothing was allocated.
    #[error("exhausted: {0}")]
    Exhausted(String),
    /// A transaction's validation failed: something it read, scanned or wrote changed
    /// after its snapshot, or another transaction holds one of its keys. Nothing was
    /// committed; run the transaction again.
    #[error("conflict: {0}")]
    Conflict(String),
    /// A key is held by a prepared transaction that is not resolved yet. Retryable: the
    /// kernel waits for it, and resolves it from its record once `deadline_ms` passed.
    #[error("key {key:?} is held by transaction {txn_id} (prepared, not yet resolved)")]
    Locked { key: String, txn_id: String, record_partition: u32, deadline_ms: u64 },
}

impl KvError {
    /// A stable name for the error, sent to clients beside the gRPC status.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidInput(_) => "InvalidInput",
            Self::NotLeader { .. } => "NotLeader",
            Self::Unavailable(_) => "Unavailable",
            Self::Compacted(_) => "Compacted",
            Self::Timeout(_) => "Timeout",
            Self::Internal(_) => "Internal",
            Self::NotFound(_) => "NotFound",
            Self::Exhausted(_) => "Exhausted",
            Self::Conflict(_) => "Conflict",
            Self::Locked { .. } => "Locked",
        }
    }

    /// The message without the kind's prefix (`"key … changed"` rather than
    /// `"conflict: key … changed"`), for transports that carry the kind beside it.
    pub fn message(&self) -> String {
        match self {
            Self::InvalidInput(m)
            | Self::Unavailable(m)
            | Self::Compacted(m)
            | Self::Timeout(m)
            | Self::Internal(m)
            | Self::NotFound(m)
            | Self::Exhausted(m)
            | Self::Conflict(m) => m.clone(),
            Self::NotLeader { .. } | Self::Locked { .. } => self.to_string(),
        }
    }

    /// Whether the same request may succeed if sent again (reads, or writes with an
    /// operation id).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::NotLeader { .. } | Self::Unavailable(_) | Self::Timeout(_) | Self::Locked { .. })
    }
}

/// The node's storage failed. The node cannot go on safely with this partition.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("storage: {0}")]
    Redb(#[from] redb::Error),
    #[error("corrupt record in {table}: {reason}")]
    Corrupt { table: &'static str, reason: String },
    #[error("data directory: {0}")]
    Io(#[from] std::io::Error),
    #[error("commit failed: {0}")]
    Commit(String),
    #[error("storage thread stopped")]
    Stopped,
    #[error("storage task failed: {0}")]
    Task(String),
    #[error("data format version {found} is not supported (this build reads {supported})")]
    Format { found: u64, supported: u64 },
}

macro_rules! redb_into_store_error {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                Self::Redb(e.into())
            }
        }
    )*};
}
redb_into_store_error!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

impl From<StoreError> for KvError {
    fn from(e: StoreError) -> Self {
        KvError::Internal(e.to_string())
    }
}

/// Starting a node failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("raft: {0}")]
    Raft(String),
}
