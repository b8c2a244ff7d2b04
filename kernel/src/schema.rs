//! Every redb table of a node's state file, with its key layout, and the format version.
//!
//! The state file holds all partitions' state machines; it is fsynced only before the
//! Raft log is purged or a snapshot installed (the log, in `wal`, is what makes a write
//! durable). Every key starts with the partition number so a partition's rows are
//! contiguous. Integers inside keys are encoded by redb's tuple and integer types
//! (fixed-width little-endian, compared numerically).

use redb::TableDefinition;
use serde::{Serialize, de::DeserializeOwned};

use crate::error::StoreError;

/// The layout this build reads and writes. A file with another version is refused.
/// Version 3: the Raft log moved from a redb file into segment files (`wal`).
/// Version 4: `versions` keyed by commit timestamp before key (appends, with an
/// in-memory key index: `version_index`).
pub(crate) const FORMAT_VERSION: u64 = 4;

/// `"format"` → [`FORMAT_VERSION`].
pub(crate) const FORMAT_TABLE: &str = "format";
pub(crate) const FORMAT: TableDefinition<&str, u64> = TableDefinition::new(FORMAT_TABLE);

/// `(partition, name)` → postcard of the state machine's own state
/// (`META_APPLIED`, `META_MEMBERSHIP`, `META_LAST_COMMIT_TS`, `META_COMPACTED_BEFORE`).
pub(crate) const META_TABLE: &str = "meta";
pub(crate) const META: TableDefinition<(u32, &str), &[u8]> = TableDefinition::new(META_TABLE);

pub(crate) const META_APPLIED: &str = "applied";
pub(crate) const META_MEMBERSHIP: &str = "membership";
pub(crate) const META_LAST_COMMIT_TS: &str = "last_commit_ts";
pub(crate) const META_COMPACTED_BEFORE: &str = "compacted_before";

/// `(partition, commit_ts, key)` → postcard of a `Version`. In commit order, so a write
/// appends; which timestamps a key has is in memory (`version_index`).
pub(crate) const VERSIONS_TABLE: &str = "versions";
pub(crate) const VERSIONS: TableDefinition<(u32, u64, &str), &[u8]> = TableDefinition::new(VERSIONS_TABLE);

/// `(partition, operation id)` → postcard of an `OperationRecord`: the first outcome
/// of a write that carried an operation id, answered again to retries.
pub(crate) const OPERATIONS_TABLE: &str = "operations";
pub(crate) const OPERATIONS: TableDefinition<(u32, &str), &[u8]> = TableDefinition::new(OPERATIONS_TABLE);

/// `(partition, lock name)` → postcard of a `LockRecord`: the last holder (live or
/// expired) and the largest fencing token granted. Rows are never deleted, so tokens
/// keep increasing after unlocks and expiries.
pub(crate) const LOCKS_TABLE: &str = "locks";
pub(crate) const LOCKS: TableDefinition<(u32, &str), &[u8]> = TableDefinition::new(LOCKS_TABLE);

/// `(partition, operation id)` → postcard of a `LockOperationRecord`: the first outcome
/// of an unlock or extend that carried an operation id. Pruned like `operations`.
pub(crate) const LOCK_OPERATIONS_TABLE: &str = "lock_operations";
pub(crate) const LOCK_OPERATIONS: TableDefinition<(u32, &str), &[u8]> = TableDefinition::new(LOCK_OPERATIONS_TABLE);

/// `(partition, sequence name)` → postcard of a `SequenceInfo`.
pub(crate) const SEQUENCES_TABLE: &str = "sequences";
pub(crate) const SEQUENCES: TableDefinition<(u32, &str), &[u8]> = TableDefinition::new(SEQUENCES_TABLE);

/// `(partition, sequence name, idempotency key)` → postcard of a `KeyRecord`: the first
/// allocation made under the key. Pruned by compaction after the operation retention
/// window; a sequence's rows are contiguous, so deleting it drops them as one range.
pub(crate) const SEQUENCE_KEYS_TABLE: &str = "sequence_keys";
pub(crate) const SEQUENCE_KEYS: TableDefinition<(u32, &str, &str), &[u8]> = TableDefinition::new(SEQUENCE_KEYS_TABLE);

/// `(partition, key, txn id)` → postcard of an `Intent`: a prepared transaction holds
/// the key (it read or writes it) until it is resolved. A key's intents are contiguous.
pub(crate) const INTENTS_TABLE: &str = "intents";
pub(crate) const INTENTS: TableDefinition<(u32, &str, &str), &[u8]> = TableDefinition::new(INTENTS_TABLE);

/// `(partition, txn id)` → postcard of a `Prepared`: the part a transaction prepared
/// here and has not resolved yet (its writes wait here for the decision).
pub(crate) const PREPARED_TABLE: &str = "prepared";
pub(crate) const PREPARED: TableDefinition<(u32, &str), &[u8]> = TableDefinition::new(PREPARED_TABLE);

/// `(partition, txn id)` → postcard of a `Finished`: how a transaction ended on this
/// partition (a one-partition commit's outcome, or "resolved"), so a replayed commit
/// answers the first outcome and a late prepare is refused. Pruned after the operation
/// retention window.
pub(crate) const FINISHED_TABLE: &str = "finished";
pub(crate) const FINISHED: TableDefinition<(u32, &str), &[u8]> = TableDefinition::new(FINISHED_TABLE);

/// `(partition, txn id)` → postcard of a `Record`: the decision of a multi-partition
/// transaction, on its first participant. Pruned after the operation retention window.
pub(crate) const TXN_RECORDS_TABLE: &str = "txn_records";
pub(crate) const TXN_RECORDS: TableDefinition<(u32, &str), &[u8]> = TableDefinition::new(TXN_RECORDS_TABLE);

/// How many bytes [`encode`] makes of `value`, without making them.
pub(crate) fn encoded_len<T: Serialize>(value: &T) -> usize {
    postcard::serialize_with_flavor(value, postcard::ser_flavors::Size::default()).unwrap_or(usize::MAX)
}

/// Encodes a record for storage.
pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // postcard cannot fail on our types: no maps with non-string keys or unsized
    // sequences; an empty vector would only hide a bug, so fall back loudly.
    postcard::to_stdvec(value).unwrap_or_else(|e| {
        tracing::error!("encoding a record failed: {e}");
        Vec::new()
    })
}

/// Decodes a stored record, naming the table on failure.
pub(crate) fn decode<T: DeserializeOwned>(table: &'static str, bytes: &[u8]) -> Result<T, StoreError> {
    postcard::from_bytes(bytes).map_err(|e| StoreError::Corrupt { table, reason: e.to_string() })
}
