//! One partition's replicated state machine: applying entries to the MVCC keyspace,
//! and snapshots of the whole partition for log compaction and lagging replicas.

use std::io::Cursor;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageIOError, StoredMembership};
use redb::{ReadTransaction, ReadableDatabase, ReadableTable};
use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::hlc::Hlc;
use crate::log_store::io_error;
use crate::mvcc::{KeySpace, apply_write};
use crate::raft_types::{ApplyResult, Command, Entry, LogId, StorageError, TypeConfig};
use crate::redb_space::RedbSpace;
use crate::schema::{
    META, META_APPLIED, META_COMPACTED_BEFORE, META_LAST_COMMIT_TS, META_MEMBERSHIP, META_TABLE, OPERATIONS,
    OPERATIONS_TABLE, VERSIONS, VERSIONS_TABLE, decode, encode,
};
use crate::storage::{Storage, Tables};
use crate::types::{PartitionId, Version, WriteResult};

type Membership = StoredMembership<u64, openraft::BasicNode>;

/// The first outcome of a write that carried an operation id.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct OperationRecord {
    pub(crate) ts: u64,
    pub(crate) results: Vec<WriteResult>,
}

/// Everything a partition's state machine holds, as sent to a lagging replica.
#[derive(Debug, Default, Serialize, Deserialize)]
struct PartitionSnapshot {
    versions: Vec<(String, u64, Version)>,
    operations: Vec<(String, OperationRecord)>,
    last_commit_ts: u64,
    compacted_before: u64,
}

/// A partition's state machine; clones share the storage.
#[derive(Clone)]
pub(crate) struct StateMachine {
    partition: PartitionId,
    storage: Arc<Storage>,
    hlc: Arc<Hlc>,
    /// Snapshots installed from a leader since this process started.
    pub(crate) installed: Arc<AtomicU64>,
}

impl StateMachine {
    pub(crate) fn new(partition: PartitionId, storage: Arc<Storage>, hlc: Arc<Hlc>) -> Self {
        Self { partition, storage, hlc, installed: Arc::default() }
    }
}

fn meta_get<T: serde::de::DeserializeOwned>(
    table: &impl ReadableTable<(u32, &'static str), &'static [u8]>,
    partition: PartitionId,
    name: &'static str,
) -> Result<Option<T>, StoreError> {
    let found = table.get((partition, name))?;
    found.map(|v| decode(META_TABLE, v.value())).transpose()
}

/// Reads a partition's compaction horizon (0 = never compacted) in a read transaction.
pub(crate) fn compacted_before(txn: &ReadTransaction, partition: PartitionId) -> Result<u64, StoreError> {
    Ok(meta_get(&txn.open_table(META)?, partition, META_COMPACTED_BEFORE)?.unwrap_or(0))
}

fn applied_state(txn: &ReadTransaction, p: PartitionId) -> Result<(Option<LogId>, Membership), StoreError> {
    let meta = txn.open_table(META)?;
    let applied = meta_get(&meta, p, META_APPLIED)?;
    let membership = meta_get(&meta, p, META_MEMBERSHIP)?.unwrap_or_default();
    Ok((applied, membership))
}

/// Applies entries of partition `p` inside the storage thread's transaction.
fn apply_entries(
    t: &mut Tables<'_>,
    p: PartitionId,
    entries: Vec<Entry>,
) -> Result<(Vec<ApplyResult>, u64), StoreError> {
    let mut last_commit_ts: u64 = meta_get(&t.meta, p, META_LAST_COMMIT_TS)?.unwrap_or(0);
    let mut results = Vec::with_capacity(entries.len());
    let mut last_applied = None;
    for entry in entries {
        let result = match entry.payload {
            EntryPayload::Blank => ApplyResult::None,
            EntryPayload::Normal(proposal) => {
                // Commit timestamps strictly increase per partition, whatever the
                // proposing leader's clock said.
                let ts = proposal.ts.max(last_commit_ts + 1);
                last_commit_ts = ts;
                apply_command(t, p, proposal.command, ts)?
            }
            EntryPayload::Membership(m) => {
                let stored = Membership::new(Some(entry.log_id), m);
                t.meta.insert((p, META_MEMBERSHIP), encode(&stored).as_slice())?;
                ApplyResult::None
            }
        };
        last_applied = Some(entry.log_id);
        results.push(result);
    }
    if let Some(applied) = last_applied {
        t.meta.insert((p, META_APPLIED), encode(&applied).as_slice())?;
        t.meta.insert((p, META_LAST_COMMIT_TS), encode(&last_commit_ts).as_slice())?;
    }
    Ok((results, last_commit_ts))
}

fn apply_command(t: &mut Tables<'_>, p: PartitionId, command: Command, ts: u64) -> Result<ApplyResult, StoreError> {
    match command {
        Command::Write { ops, operation_id } => {
            if let Some(id) = &operation_id
                && let Some(found) = t.operations.get((p, id.as_str()))?
            {
                let record: OperationRecord = decode(OPERATIONS_TABLE, found.value())?;
                return Ok(ApplyResult::Write(record.results));
            }
            let mut space = RedbSpace { table: &mut t.versions, partition: p };
            let results = ops.iter().map(|op| apply_write(&mut space, op, ts)).collect::<Result<Vec<_>, _>>()?;
            if let Some(id) = &operation_id {
                let record = OperationRecord { ts, results: results.clone() };
                t.operations.insert((p, id.as_str()), encode(&record).as_slice())?;
            }
            Ok(ApplyResult::Write(results))
        }
        Command::Compact { before_ts, operations_before_ts } => {
            let mut space = RedbSpace { table: &mut t.versions, partition: p };
            let versions_removed = space.compact(before_ts)?;
            t.operations.retain_in((p, "")..(p + 1, ""), |_, v| {
                decode::<OperationRecord>(OPERATIONS_TABLE, v).is_ok_and(|r| r.ts >= operations_before_ts)
            })?;
            let horizon = meta_get::<u64>(&t.meta, p, META_COMPACTED_BEFORE)?.unwrap_or(0).max(before_ts);
            t.meta.insert((p, META_COMPACTED_BEFORE), encode(&horizon).as_slice())?;
            Ok(ApplyResult::Compacted { versions_removed })
        }
    }
}

fn read_snapshot(
    txn: &ReadTransaction,
    p: PartitionId,
) -> Result<(PartitionSnapshot, Option<LogId>, Membership), StoreError> {
    let (applied, membership) = applied_state(txn, p)?;
    let meta = txn.open_table(META)?;
    let mut snap = PartitionSnapshot {
        last_commit_ts: meta_get(&meta, p, META_LAST_COMMIT_TS)?.unwrap_or(0),
        compacted_before: meta_get(&meta, p, META_COMPACTED_BEFORE)?.unwrap_or(0),
        ..Default::default()
    };
    for row in txn.open_table(VERSIONS)?.range((p, "", 0u64)..(p + 1, "", 0u64))? {
        let (k, v) = row?;
        let (_, key, inverted) = k.value();
        snap.versions.push((key.to_owned(), !inverted, decode(VERSIONS_TABLE, v.value())?));
    }
    for row in txn.open_table(OPERATIONS)?.range((p, "")..(p + 1, ""))? {
        let (k, v) = row?;
        snap.operations.push((k.value().1.to_owned(), decode(OPERATIONS_TABLE, v.value())?));
    }
    Ok((snap, applied, membership))
}

fn install(
    t: &mut Tables<'_>,
    p: PartitionId,
    snap: &PartitionSnapshot,
    applied: Option<LogId>,
    membership: &Membership,
) -> Result<(), StoreError> {
    t.versions.retain_in((p, "", 0u64)..(p + 1, "", 0u64), |_, _| false)?;
    t.operations.retain_in((p, "")..(p + 1, ""), |_, _| false)?;
    for (key, ts, version) in &snap.versions {
        t.versions.insert((p, key.as_str(), !ts), encode(version).as_slice())?;
    }
    for (id, record) in &snap.operations {
        t.operations.insert((p, id.as_str()), encode(record).as_slice())?;
    }
    // Stored as a bare LogId (see `applied_state`), absent when nothing was applied.
    match applied {
        Some(applied) => t.meta.insert((p, META_APPLIED), encode(&applied).as_slice())?,
        None => t.meta.remove((p, META_APPLIED))?,
    };
    t.meta.insert((p, META_MEMBERSHIP), encode(membership).as_slice())?;
    t.meta.insert((p, META_LAST_COMMIT_TS), encode(&snap.last_commit_ts).as_slice())?;
    t.meta.insert((p, META_COMPACTED_BEFORE), encode(&snap.compacted_before).as_slice())?;
    Ok(())
}

fn read_err(e: StoreError) -> StorageError {
    StorageIOError::read_state_machine(&e).into()
}

impl StateMachine {
    fn build(&self) -> Result<Snapshot<TypeConfig>, StoreError> {
        let txn = self.storage.db().begin_read()?;
        let (snap, applied, membership) = read_snapshot(&txn, self.partition)?;
        let snapshot_id = match applied {
            Some(last) => format!("{}-{}-{}", self.partition, last.leader_id, last.index),
            None => format!("{}-empty", self.partition),
        };
        let meta = SnapshotMeta { last_log_id: applied, last_membership: membership, snapshot_id };
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(encode(&snap))) })
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        self.build().map_err(read_err)
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, Membership), StorageError> {
        let txn = self.storage.db().begin_read().map_err(|e| read_err(e.into()))?;
        applied_state(&txn, self.partition).map_err(read_err)
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<ApplyResult>, StorageError>
    where
        I: IntoIterator<Item = Entry> + openraft::OptionalSend,
        I::IntoIter: openraft::OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let p = self.partition;
        // Applies need no fsync of their own: the log is durable, and a crash replays
        // from the last applied index that reached disk.
        let (results, last_commit_ts) = self
            .storage
            .run(false, move |t| apply_entries(t, p, entries))
            .await
            .map_err(|e| StorageError::from(StorageIOError::write_state_machine(&e)))?;
        self.hlc.observe(last_commit_ts);
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, openraft::BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let snap: PartitionSnapshot = decode("snapshot", snapshot.get_ref())
            .map_err(|e| StorageError::from(StorageIOError::read_snapshot(Some(meta.signature()), &e)))?;
        let (p, applied, membership) = (self.partition, meta.last_log_id, meta.last_membership.clone());
        self.hlc.observe(snap.last_commit_ts);
        self.storage.run(true, move |t| install(t, p, &snap, applied, &membership)).await.map_err(io_error)?;
        self.installed.fetch_add(1, Ordering::Relaxed);
        tracing::info!(partition = p, "installed snapshot up to {applied:?}");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        // The state machine in redb is always a complete snapshot of itself: build one
        // from it on demand instead of keeping a second copy.
        let snapshot = self.build().map_err(read_err)?;
        Ok(snapshot.meta.last_log_id.is_some().then_some(snapshot))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log_store::LogStore;
    use openraft::testing::{StoreBuilder, Suite};

    struct Builder;

    impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
        async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError> {
            let dir = tempfile::tempdir().map_err(io_error)?;
            let storage = Storage::open(&dir.path().join("kahuna.redb")).map_err(io_error)?;
            let hlc = Arc::new(Hlc::system());
            Ok((dir, LogStore::new(3, storage.clone()), StateMachine::new(3, storage, hlc)))
        }
    }

    /// openraft's own conformance suite for log and state machine storage.
    #[test]
    fn openraft_storage_suite() -> Result<(), Box<StorageError>> {
        Suite::test_all(Builder).map_err(Box::new)
    }
}
