//! The vocabulary shared by the kernel's API, its Raft entries and its storage.

use serde::{Deserialize, Serialize};

use crate::locks::LockRecord;

/// A node's id in the cluster (1, 2, 3...).
pub type NodeId = u64;
/// A data partition's number, `0..partitions`.
pub type PartitionId = u32;

/// How a key is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
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
    #[serde(with = "serde_bytes")]
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
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
    pub revision: i64,
    pub commit_ts: u64,
    pub expires_at_ms: u64,
}

/// Set a key, when its conditions hold.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SetArgs {
    pub key: String,
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
    /// Only when the key does not exist.
    pub nx: bool,
    /// Only when the key exists.
    pub xx: bool,
    #[serde(with = "serde_bytes")]
    pub compare_value: Option<Vec<u8>>,
    pub compare_revision: Option<i64>,
    /// 0 = no expiry.
    pub ttl_ms: u64,
}

/// Delete a key, when its conditions hold.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DeleteArgs {
    pub key: String,
    #[serde(with = "serde_bytes")]
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

/// The holder of a lock: who, with which fencing token, until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockHolder {
    pub owner: String,
    /// Strictly increases per lock name with every grant to a new holder.
    pub token: u64,
    /// Unix ms at which the lease ends; the lock is free from then on.
    pub expires_at_ms: u64,
}

impl LockHolder {
    /// Whether the lease still runs at `now_ms`.
    pub fn is_live_at(&self, now_ms: u64) -> bool {
        self.expires_at_ms > now_ms
    }
}

/// A change to one lock, judged at the commit timestamp of its Raft entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LockOp {
    /// Takes the lock when it is free or expired; extends it (same token) when `owner`
    /// already holds it.
    Acquire { name: String, owner: String, lease_ms: u64 },
    /// Frees the lock; only its holder may.
    Release { name: String, owner: String },
    /// Restarts the holder's lease at `lease_ms` from now, keeping the token.
    Extend { name: String, owner: String, lease_ms: u64 },
}

impl LockOp {
    /// The lock the operation addresses.
    pub fn name(&self) -> &str {
        match self {
            Self::Acquire { name, .. } | Self::Release { name, .. } | Self::Extend { name, .. } => name,
        }
    }

    /// The owner on whose behalf it runs.
    pub fn owner(&self) -> &str {
        match self {
            Self::Acquire { owner, .. } | Self::Release { owner, .. } | Self::Extend { owner, .. } => owner,
        }
    }
}

/// What a lock operation (or a lock read) found or did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockReply {
    /// Acquired, released or extended; false for a read or when it did not take effect.
    pub done: bool,
    /// The holder afterwards; `None` when the lock is free.
    pub holder: Option<LockHolder>,
    /// The largest token ever granted for this name (0 = never).
    pub last_token: u64,
    /// When the operation was judged (HLC).
    pub commit_ts: u64,
}

/// A sequence's settings and how far it has gone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SequenceInfo {
    pub start: i64,
    /// Always at least 1.
    pub increment: i64,
    /// The largest value it may hand out; `None` = up to `i64::MAX`.
    pub max: Option<i64>,
    /// Values handed out so far.
    pub allocated: u64,
}

/// Values handed out by one call: `first`, `first + increment`, ... (`count` of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    pub first: i64,
    pub count: u64,
    pub increment: i64,
}

/// A change to one sequence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SequenceOp {
    /// Creates the sequence unless it exists (then reports the existing one).
    Create { name: String, start: i64, increment: i64, max: Option<i64> },
    /// Hands out `count` values; a replayed idempotency key gets its first allocation.
    Reserve { name: String, count: u64, idempotency_key: Option<String> },
    /// Removes the sequence and its idempotency records.
    Delete { name: String },
}

impl SequenceOp {
    /// The sequence the operation addresses.
    pub fn name(&self) -> &str {
        match self {
            Self::Create { name, .. } | Self::Reserve { name, .. } | Self::Delete { name } => name,
        }
    }
}

/// What a sequence operation (or read) produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SequenceReply {
    /// `created` is false when the sequence already existed; `info` is its state.
    Created {
        created: bool,
        info: SequenceInfo,
    },
    /// `replayed`: answered from the idempotency record of an earlier call.
    Allocated {
        allocation: Allocation,
        replayed: bool,
    },
    Deleted {
        deleted: bool,
    },
    /// A read; `None` when the sequence does not exist.
    Info(Option<SequenceInfo>),
}

/// Keys a transaction scanned in one partition: those starting with `prefix`, greater
/// than `after`, up to and including `through` (to the end of the prefix when `None`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScannedRange {
    pub prefix: String,
    pub after: Option<String>,
    pub through: Option<String>,
}

impl ScannedRange {
    /// Whether `key` lies in the range.
    pub fn contains(&self, key: &str) -> bool {
        key.starts_with(&self.prefix)
            && self.after.as_deref().is_none_or(|a| key > a)
            && self.through.as_deref().is_none_or(|t| key <= t)
    }
}

/// A lock or sequence a transaction used: the state it read (at commit it must be
/// unchanged, else `Conflict`) and the state it leaves (`None`: only read).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnRecord {
    Lock {
        name: String,
        seen: LockRecord,
        write: Option<LockRecord>,
    },
    /// `seen`/`write` of `None`: the sequence does not exist (is deleted).
    Sequence {
        name: String,
        seen: Option<SequenceInfo>,
        write: Option<Option<SequenceInfo>>,
    },
}

impl TxnRecord {
    /// The lock's or sequence's name.
    pub fn name(&self) -> &str {
        match self {
            Self::Lock { name, .. } | Self::Sequence { name, .. } => name,
        }
    }

    /// Whether the transaction changes it.
    pub fn writes(&self) -> bool {
        match self {
            Self::Lock { write, .. } => write.is_some(),
            Self::Sequence { write, .. } => write.is_some(),
        }
    }

    /// The reserved key a prepared transaction's intent on the record is kept under
    /// (user keys cannot start with `__kahuna:`).
    pub fn intent_key(&self) -> String {
        match self {
            Self::Lock { name, .. } => lock_intent_key(name),
            Self::Sequence { name, .. } => sequence_intent_key(name),
        }
    }
}

/// The reserved key of intents on lock `name`.
pub fn lock_intent_key(name: &str) -> String {
    format!("__kahuna:lock/{name}")
}

/// The reserved key of intents on sequence `name`.
pub fn sequence_intent_key(name: &str) -> String {
    format!("__kahuna:sequence/{name}")
}

/// What a transaction did in one partition; validated against its snapshot at commit.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TxnPart {
    /// Keys read (or whose conditions were judged): none may have changed since the snapshot.
    pub reads: Vec<String>,
    /// Ranges scanned: no key in them may have changed since the snapshot.
    pub scans: Vec<ScannedRange>,
    /// The final write of each key written (unconditional: conditions were judged in the
    /// transaction's view and their keys are validated like reads).
    pub writes: Vec<WriteOp>,
    /// Locks and sequences read or changed.
    pub records: Vec<TxnRecord>,
}

impl TxnPart {
    /// Every key the part validates: its reads and its writes.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.reads.iter().map(String::as_str).chain(self.writes.iter().map(WriteOp::key))
    }
}

/// The outcome of a multi-partition transaction, kept in its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnDecision {
    /// Every participant prepared; the writes become versions at `commit_ts` everywhere.
    Commit {
        commit_ts: u64,
    },
    Abort,
}

/// What a transaction step did on one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnReply {
    /// A one-partition commit applied its writes at `commit_ts`.
    Committed { commit_ts: u64 },
    /// The part validated and its intents are placed, at `prepare_ts`.
    Prepared { prepare_ts: u64 },
    /// The transaction's record holds this decision (the first one proposed wins).
    Decided(TxnDecision),
    /// The partition applied the decision (or had nothing left to apply).
    Resolved,
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
    /// Live keys starting with `prefix` and greater than `after`, at most `limit`; as they
    /// were at HLC time `as_of` when given (a transaction's snapshot).
    Scan {
        prefix: String,
        after: Option<String>,
        limit: u32,
        as_of: Option<u64>,
        durability: Durability,
        consistency: Consistency,
    },
    /// A lock operation. An acquire may wait up to `wait_ms` for the lock, queued in
    /// FIFO order on the leader; `operation_id` de-duplicates releases and extends.
    Lock { op: LockOp, durability: Durability, operation_id: Option<String>, wait_ms: u64 },
    /// A lock's holder.
    GetLock { name: String, durability: Durability, consistency: Consistency },
    /// A sequence operation (sequences are persistent).
    Sequence { op: SequenceOp },
    /// A sequence's state.
    GetSequence { name: String, consistency: Consistency },
    /// A one-partition transaction: validated against `snapshot_ts` and applied as one
    /// entry. A replay of `txn_id` answers the first outcome.
    TxnCommit { txn_id: String, snapshot_ts: u64, part: TxnPart },
    /// Phase one of a multi-partition commit: validate the part and hold its keys with
    /// intents until the transaction is resolved. `record_partition` keeps the decision;
    /// after `timeout_ms` anyone may resolve the transaction from it.
    TxnPrepare { txn_id: String, snapshot_ts: u64, part: TxnPart, record_partition: PartitionId, timeout_ms: u64 },
    /// Writes the decision into the transaction's record unless one is there already;
    /// answers the decision the record holds.
    TxnDecide { txn_id: String, decision: TxnDecision },
    /// Applies the decision on a participant: the prepared writes at the commit
    /// timestamp, or nothing; the intents go either way.
    TxnResolve { txn_id: String, decision: TxnDecision },
}

impl PartitionRequest {
    /// The durability the request addresses.
    pub fn durability(&self) -> Durability {
        match self {
            Self::Write { durability, .. }
            | Self::Read { durability, .. }
            | Self::Bucket { durability, .. }
            | Self::Scan { durability, .. }
            | Self::Lock { durability, .. }
            | Self::GetLock { durability, .. } => *durability,
            Self::Sequence { .. }
            | Self::GetSequence { .. }
            | Self::TxnCommit { .. }
            | Self::TxnPrepare { .. }
            | Self::TxnDecide { .. }
            | Self::TxnResolve { .. } => Durability::Persistent,
        }
    }

    /// How long the request may wait on the leader beyond the normal request timeout.
    pub fn wait_ms(&self) -> u64 {
        match self {
            Self::Lock { wait_ms, .. } => *wait_ms,
            _ => 0,
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
    Lock(LockReply),
    Sequence(SequenceReply),
    Txn(TxnReply),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Values were encoded as sequences of bytes before they were marked `serde_bytes`;
    /// postcard writes both as a length and the bytes, so logs, state files and
    /// snapshots written before read the same, and the other way round.
    #[test]
    fn values_encode_as_they_did_before_serde_bytes() {
        #[derive(Serialize, Deserialize, Debug, PartialEq)]
        struct Before {
            revision: i64,
            value: Option<Vec<u8>>,
            expires_at_ms: u64,
        }
        for value in [None, Some(Vec::new()), Some(b"v".to_vec()), Some(vec![0xff; 300])] {
            let before = Before { revision: 7, value: value.clone(), expires_at_ms: 9 };
            let now = Version { revision: 7, value, expires_at_ms: 9 };
            let bytes = postcard::to_stdvec(&before).expect("encodes");
            assert_eq!(postcard::to_stdvec(&now).expect("encodes"), bytes);
            assert_eq!(postcard::from_bytes::<Version>(&bytes).expect("decodes"), now);
        }
    }
}
