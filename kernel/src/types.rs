//! The vocabulary shared by the kernel's API, its Raft entries and its storage.

use serde::{Deserialize, Serialize};

/// A node's id in the cluster (1, 2, 3...).
pub type NodeId = u64;
/// A data partition's number, `0..partitions`.
pub type PartitionId = u32;

/// How a key is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Durability {
    /// Committed by a Raft quorum and fsynced before the reply.
    #[default]
    Persistent,
    /// In memory on the partition leader only; lost on leader change or restart.
    Ephemeral,
}

/// How fresh a read must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Consistency {
    /// ReadIndex on the partition leader: sees every write acknowledged before it.
    #[default]
    Linearizable,
    /// The local replica's state, possibly behind.
    Serializable,
}

/// One stored version of a key. Its commit timestamp is part of its storage key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    /// Per key: 0 for the first write, +1 per set or delete.
    pub revision: i64,
    /// `None` is a tombstone left by a delete.
    pub value: Option<Vec<u8>>,
    /// Unix ms after which the version is invisible; 0 = never.
    pub expires_at_ms: u64,
}

impl Version {
    /// Whether the version is a live value at `now_ms`.
    pub fn is_live_at(&self, now_ms: u64) -> bool {
        self.value.is_some() && (self.expires_at_ms == 0 || self.expires_at_ms > now_ms)
    }
}

/// A key's value as a client sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    pub revision: i64,
    pub commit_ts: u64,
    pub expires_at_ms: u64,
}

/// Set a key, when its conditions hold.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SetArgs {
    pub key: String,
    pub value: Vec<u8>,
    /// Only when the key does not exist.
    pub nx: bool,
    /// Only when the key exists.
    pub xx: bool,
    pub compare_value: Option<Vec<u8>>,
    pub compare_revision: Option<i64>,
    /// 0 = no expiry.
    pub ttl_ms: u64,
}

/// Delete a key, when its conditions hold.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DeleteArgs {
    pub key: String,
    pub compare_value: Option<Vec<u8>>,
    pub compare_revision: Option<i64>,
}

/// One mutation of one key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriteOp {
    Set(SetArgs),
    Delete(DeleteArgs),
    /// Moves the expiry to commit time + `ttl_ms` (0 removes it); the revision stays.
    Extend {
        key: String,
        ttl_ms: u64,
    },
}

impl WriteOp {
    /// The key the operation writes.
    pub fn key(&self) -> &str {
        match self {
            Self::Set(a) => &a.key,
            Self::Delete(a) => &a.key,
            Self::Extend { key, .. } => key,
        }
    }
}

/// What one [`WriteOp`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriteResult {
    /// `revision`: the new one when modified, else the current one (-1 when absent).
    Set {
        modified: bool,
        revision: i64,
        commit_ts: u64,
    },
    /// `revision`: the tombstone's when deleted, else the current one (-1 when absent).
    Delete {
        deleted: bool,
        revision: i64,
        commit_ts: u64,
    },
    Extend {
        extended: bool,
        expires_at_ms: u64,
        commit_ts: u64,
    },
}

/// A point read of one key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PointRead {
    pub key: String,
    /// The version with this revision.
    pub at_revision: Option<i64>,
    /// The version visible at this HLC timestamp.
    pub as_of: Option<u64>,
}

/// A request to one partition. The server splits client requests that span
/// partitions and forwards each part to that partition's leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PartitionRequest {
    /// Mutations applied atomically, in order, as one Raft entry.
    Write { ops: Vec<WriteOp>, operation_id: Option<String>, durability: Durability },
    /// Point reads, answered in order.
    Read { reads: Vec<PointRead>, durability: Durability, consistency: Consistency },
    /// Every live key of a bucket.
    Bucket { bucket: String, durability: Durability, consistency: Consistency },
    /// Live keys starting with `prefix` and greater than `after`, at most `limit`.
    Scan { prefix: String, after: Option<String>, limit: u32, durability: Durability, consistency: Consistency },
}

impl PartitionRequest {
    /// The durability the request addresses.
    pub fn durability(&self) -> Durability {
        match self {
            Self::Write { durability, .. }
            | Self::Read { durability, .. }
            | Self::Bucket { durability, .. }
            | Self::Scan { durability, .. } => *durability,
        }
    }
}

/// The answer to a [`PartitionRequest`], from the node named in `served_by`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PartitionResponse {
    Write(Vec<WriteResult>),
    Read(Vec<Option<KeyValue>>),
    /// Sorted by key; for a scan, `more` says a further page may exist.
    Items {
        items: Vec<KeyValue>,
        more: bool,
    },
}

/// A replica's view of one partition, for `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionStatus {
    pub partition: PartitionId,
    pub leader: Option<NodeId>,
    pub term: u64,
    pub role: String,
    pub last_log_index: u64,
    pub applied_index: u64,
    pub snapshot_index: u64,
    pub voters: Vec<NodeId>,
    /// Snapshots this replica installed from a leader since it started.
    pub snapshots_installed: u64,
}
