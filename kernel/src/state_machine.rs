//! One partition's replicated state machine: applying entries to the MVCC keyspace,
//! and snapshots of the whole partition for log compaction and lagging replicas.

use std::io::Cursor;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageIOError, StoredMembership};
use redb::{ReadTransaction, ReadableTable, Table, TableDefinition};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{KvError, StoreError};
use crate::hlc::Hlc;
use crate::locks::{LockRecord, TokenSpace, apply_lock};
use crate::log_store::io_error;
use crate::mvcc::{KeySpace, apply_write};
use crate::raft_types::{ApplyResult, Command, Entry, LogId, Proposal, StorageError, TxnCommand, TypeConfig};
use crate::redb_space::RedbSpace;
use crate::schema::{
    FINISHED, FINISHED_TABLE, INTENTS, INTENTS_TABLE, LOCK_OPERATIONS, LOCK_OPERATIONS_TABLE, LOCKS, LOCKS_TABLE, META,
    META_APPLIED, META_COMPACTED_BEFORE, META_LAST_COMMIT_TS, META_MEMBERSHIP, META_TABLE, OPERATIONS,
    OPERATIONS_TABLE, PREPARED, PREPARED_TABLE, SEQUENCE_KEYS, SEQUENCE_KEYS_TABLE, SEQUENCES, SEQUENCES_TABLE,
    TXN_RECORDS, TXN_RECORDS_TABLE, VERSIONS, VERSIONS_TABLE, decode, encode,
};
use crate::sequences::{self, KeyRecord};
use crate::storage::{Flush, Storage, Tables};
use crate::txn_state::{self, Finished, Intent, Prepared, Record};
use crate::types::{
    LockOp, LockReply, PartitionId, SequenceInfo, SequenceOp, SequenceReply, Version, WriteResult, lock_intent_key,
    sequence_intent_key,
};

type Membership = StoredMembership<u64, openraft::BasicNode>;

/// The first outcome of a write that carried an operation id.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct OperationRecord {
    pub(crate) ts: u64,
    pub(crate) results: Vec<WriteResult>,
}

/// The first outcome of an unlock or extend that carried an operation id.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LockOperationRecord {
    pub(crate) ts: u64,
    pub(crate) result: Result<LockReply, KvError>,
}

/// Everything a partition's state machine holds, as sent to a lagging replica.
#[derive(Debug, Default, Serialize, Deserialize)]
struct PartitionSnapshot {
    versions: Vec<(String, u64, Version)>,
    operations: Vec<(String, OperationRecord)>,
    last_commit_ts: u64,
    compacted_before: u64,
    locks: Vec<(String, LockRecord)>,
    lock_operations: Vec<(String, LockOperationRecord)>,
    sequences: Vec<(String, SequenceInfo)>,
    sequence_keys: Vec<(String, String, KeyRecord)>,
    /// (key, txn id, intent).
    intents: Vec<(String, String, Intent)>,
    prepared: Vec<(String, Prepared)>,
    finished: Vec<(String, Finished)>,
    txn_records: Vec<(String, Record)>,
}

/// A table keyed `(partition, name)`.
type NamedTable = TableDefinition<'static, (u32, &'static str), &'static [u8]>;

/// Every row of partition `p` in a `(partition, name)` table.
fn read_named<T: DeserializeOwned>(
    txn: &ReadTransaction,
    definition: NamedTable,
    table: &'static str,
    p: PartitionId,
) -> Result<Vec<(String, T)>, StoreError> {
    let mut rows = Vec::new();
    for row in txn.open_table(definition)?.range((p, "")..(p + 1, ""))? {
        let (k, v) = row?;
        rows.push((k.value().1.to_owned(), decode(table, v.value())?));
    }
    Ok(rows)
}

/// Replaces partition `p`'s rows of a `(partition, name)` table with `rows`.
fn install_named<T: Serialize>(
    table: &mut Table<'_, (u32, &'static str), &'static [u8]>,
    p: PartitionId,
    rows: &[(String, T)],
) -> Result<(), StoreError> {
    table.retain_in((p, "")..(p + 1, ""), |_, _| false)?;
    for (name, record) in rows {
        table.insert((p, name.as_str()), encode(record).as_slice())?;
    }
    Ok(())
}

/// Reads one record of a `(partition, name)` table.
pub(crate) fn get_named<T: DeserializeOwned>(
    table: &impl ReadableTable<(u32, &'static str), &'static [u8]>,
    table_name: &'static str,
    p: PartitionId,
    name: &str,
) -> Result<Option<T>, StoreError> {
    let found = table.get((p, name))?;
    found.map(|v| decode(table_name, v.value())).transpose()
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

/// Every partition's applied index as a batch's write transaction sees it. Read inside a
/// durable batch, it is what a crash would restart each partition from (at least: later
/// jobs of the batch only apply more).
pub(crate) fn applied_indexes(t: &mut Tables<'_>) -> Result<Vec<(PartitionId, u64)>, StoreError> {
    let mut found = Vec::new();
    for row in t.meta.open()?.iter()? {
        let (key, value) = row?;
        let (p, name) = key.value();
        if name == META_APPLIED {
            found.push((p, decode::<LogId>(META_TABLE, value.value())?.index));
        }
    }
    Ok(found)
}

/// Applies entries of partition `p` inside the storage thread's transaction.
fn apply_entries(
    t: &mut Tables<'_>,
    p: PartitionId,
    entries: Vec<Entry>,
) -> Result<(Vec<ApplyResult>, u64), StoreError> {
    let mut last_commit_ts: u64 = meta_get(t.meta.open()?, p, META_LAST_COMMIT_TS)?.unwrap_or(0);
    let mut results = Vec::with_capacity(entries.len());
    let mut last_applied = None;
    for entry in entries {
        let result = match entry.payload {
            EntryPayload::Blank => ApplyResult::None,
            EntryPayload::Normal(proposal) => apply_proposal(t, p, &proposal, &mut last_commit_ts)?,
            EntryPayload::Membership(m) => {
                let stored = Membership::new(Some(entry.log_id), m);
                t.meta.open()?.insert((p, META_MEMBERSHIP), encode(&stored).as_slice())?;
                ApplyResult::None
            }
        };
        last_applied = Some(entry.log_id);
        results.push(result);
    }
    if let Some(applied) = last_applied {
        t.meta.open()?.insert((p, META_APPLIED), encode(&applied).as_slice())?;
        t.meta.open()?.insert((p, META_LAST_COMMIT_TS), encode(&last_commit_ts).as_slice())?;
    }
    Ok((results, last_commit_ts))
}

/// Applies one proposal (each of a batch's in turn) at its commit timestamp.
fn apply_proposal(
    t: &mut Tables<'_>,
    p: PartitionId,
    proposal: &Proposal,
    last_commit_ts: &mut u64,
) -> Result<ApplyResult, StoreError> {
    if let Command::Batch(proposals) = &proposal.command {
        let mut results = Vec::with_capacity(proposals.len());
        for inner in proposals.iter() {
            results.push(apply_proposal(t, p, inner, last_commit_ts)?);
        }
        return Ok(ApplyResult::Batch(results));
    }
    // Commit timestamps strictly increase per partition, whatever the proposing leader's
    // clock said.
    let ts = proposal.ts.max(*last_commit_ts + 1);
    *last_commit_ts = ts;
    apply_command(t, p, &proposal.command, ts)
}

fn apply_command(t: &mut Tables<'_>, p: PartitionId, command: &Command, ts: u64) -> Result<ApplyResult, StoreError> {
    match command {
        // `apply_proposal` opens batches before they get here.
        Command::Batch(_) => Err(StoreError::Corrupt { table: "raft log", reason: "a batch as a command".into() }),
        Command::Write { ops, operation_id } => {
            if let Some(id) = &operation_id
                && let Some(found) = t.operations.open()?.get((p, id.as_str()))?
            {
                let record: OperationRecord = decode(OPERATIONS_TABLE, found.value())?;
                return Ok(ApplyResult::Write(record.results));
            }
            if let Err(e) = txn_state::check_plain_writes(t, p, ops.iter().map(|op| op.key()))? {
                return Ok(ApplyResult::Blocked(e));
            }
            let mut space = RedbSpace { table: t.versions.open()?, index: t.index, partition: p };
            let results = ops.iter().map(|op| apply_write(&mut space, op, ts)).collect::<Result<Vec<_>, _>>()?;
            if let Some(id) = &operation_id {
                let record = OperationRecord { ts, results: results.clone() };
                t.operations.open()?.insert((p, id.as_str()), encode(&record).as_slice())?;
            }
            Ok(ApplyResult::Write(results))
        }
        Command::Lock { op, operation_id } => {
            if let Err(e) = txn_state::check_record(t, p, &lock_intent_key(op.name()))? {
                return Ok(ApplyResult::Blocked(e));
            }
            apply_lock_command(t, p, op, operation_id.as_deref(), ts)
        }
        Command::Sequence { op } => {
            if let Err(e) = txn_state::check_record(t, p, &sequence_intent_key(op.name()))? {
                return Ok(ApplyResult::Blocked(e));
            }
            Ok(ApplyResult::Sequence(apply_sequence_command(t, p, op, ts)?))
        }
        Command::Txn(step) => Ok(ApplyResult::Txn(match step {
            TxnCommand::Commit { txn_id, snapshot_ts, part } => {
                txn_state::apply_commit(t, p, txn_id, *snapshot_ts, part, ts)?
            }
            TxnCommand::Prepare { txn_id, snapshot_ts, part, record_partition, timeout_ms } => {
                let deadline_ms = crate::hlc::physical_ms(ts).saturating_add(*timeout_ms);
                let prepared =
                    Prepared { prepare_ts: ts, deadline_ms, record_partition: *record_partition, part: part.clone() };
                txn_state::apply_prepare(t, p, txn_id, *snapshot_ts, prepared)?
            }
            TxnCommand::Decide { txn_id, decision } => txn_state::apply_decide(t, p, txn_id, *decision, ts)?,
            TxnCommand::Resolve { txn_id, decision } => txn_state::apply_resolve(t, p, txn_id, *decision, ts)?,
        })),
        Command::Compact { before_ts, operations_before_ts } => {
            let mut space = RedbSpace { table: t.versions.open()?, index: t.index, partition: p };
            let versions_removed = space.compact(*before_ts)?;
            t.operations.open()?.retain_in((p, "")..(p + 1, ""), |_, v| {
                decode::<OperationRecord>(OPERATIONS_TABLE, v).is_ok_and(|r| r.ts >= *operations_before_ts)
            })?;
            t.lock_operations.open()?.retain_in((p, "")..(p + 1, ""), |_, v| {
                decode::<LockOperationRecord>(LOCK_OPERATIONS_TABLE, v).is_ok_and(|r| r.ts >= *operations_before_ts)
            })?;
            t.sequence_keys.open()?.retain_in((p, "", "")..(p + 1, "", ""), |_, v| {
                decode::<KeyRecord>(SEQUENCE_KEYS_TABLE, v).is_ok_and(|r| r.ts >= *operations_before_ts)
            })?;
            txn_state::compact(t, p, *operations_before_ts)?;
            let horizon = meta_get::<u64>(t.meta.open()?, p, META_COMPACTED_BEFORE)?.unwrap_or(0).max(*before_ts);
            t.meta.open()?.insert((p, META_COMPACTED_BEFORE), encode(&horizon).as_slice())?;
            Ok(ApplyResult::Compacted { versions_removed })
        }
    }
}

fn apply_lock_command(
    t: &mut Tables<'_>,
    p: PartitionId,
    op: &LockOp,
    operation_id: Option<&str>,
    ts: u64,
) -> Result<ApplyResult, StoreError> {
    if let Some(id) = operation_id
        && let Some(record) = get_named::<LockOperationRecord>(t.lock_operations.open()?, LOCK_OPERATIONS_TABLE, p, id)?
    {
        return Ok(ApplyResult::Lock(record.result));
    }
    let current: Option<LockRecord> = get_named(t.locks.open()?, LOCKS_TABLE, p, op.name())?;
    let (next, result) = apply_lock(current.as_ref(), op, ts, TokenSpace::PERSISTENT);
    if let Some(next) = next {
        t.locks.open()?.insert((p, op.name()), encode(&next).as_slice())?;
    }
    if let Some(id) = operation_id {
        let record = LockOperationRecord { ts, result: result.clone() };
        t.lock_operations.open()?.insert((p, id), encode(&record).as_slice())?;
    }
    Ok(ApplyResult::Lock(result))
}

/// Applies a sequence operation; the inner result is the caller's answer (a refusal
/// changes nothing), the outer one a storage failure.
fn apply_sequence_command(
    t: &mut Tables<'_>,
    p: PartitionId,
    op: &SequenceOp,
    ts: u64,
) -> Result<Result<SequenceReply, KvError>, StoreError> {
    let existing: Option<SequenceInfo> = get_named(t.sequences.open()?, SEQUENCES_TABLE, p, op.name())?;
    match op {
        SequenceOp::Create { name, start, increment, max } => {
            let (info, created) = match sequences::create(existing.as_ref(), *start, *increment, *max) {
                Ok(made) => made,
                Err(e) => return Ok(Err(e)),
            };
            if created {
                t.sequences.open()?.insert((p, name.as_str()), encode(&info).as_slice())?;
            }
            Ok(Ok(SequenceReply::Created { created, info }))
        }
        SequenceOp::Reserve { name, count, idempotency_key } => {
            let Some(info) = existing else {
                return Ok(Err(KvError::NotFound(format!("sequence {name:?} does not exist"))));
            };
            let key = idempotency_key.as_deref();
            if let Some(key) = key
                && let Some(prior) = t.sequence_keys.open()?.get((p, name.as_str(), key))?
            {
                let prior: KeyRecord = decode(SEQUENCE_KEYS_TABLE, prior.value())?;
                let replayed = sequences::replay(name, key, &prior, *count);
                return Ok(replayed.map(|allocation| SequenceReply::Allocated { allocation, replayed: true }));
            }
            let (next, allocation) = match sequences::reserve(name, &info, *count) {
                Ok(reserved) => reserved,
                Err(e) => return Ok(Err(e)),
            };
            t.sequences.open()?.insert((p, name.as_str()), encode(&next).as_slice())?;
            if let Some(key) = key {
                let record = KeyRecord { ts, allocation };
                t.sequence_keys.open()?.insert((p, name.as_str(), key), encode(&record).as_slice())?;
            }
            Ok(Ok(SequenceReply::Allocated { allocation, replayed: false }))
        }
        SequenceOp::Delete { name } => {
            let deleted = t.sequences.open()?.remove((p, name.as_str()))?.is_some();
            // "name\0" is the smallest name after "name": the range holds exactly its keys.
            let end = format!("{name}\0");
            t.sequence_keys.open()?.retain_in((p, name.as_str(), "")..(p, end.as_str(), ""), |_, _| false)?;
            Ok(Ok(SequenceReply::Deleted { deleted }))
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
    for row in txn.open_table(VERSIONS)?.range((p, 0u64, "")..(p + 1, 0u64, ""))? {
        let (k, v) = row?;
        let (_, ts, key) = k.value();
        snap.versions.push((key.to_owned(), ts, decode(VERSIONS_TABLE, v.value())?));
    }
    snap.operations = read_named(txn, OPERATIONS, OPERATIONS_TABLE, p)?;
    snap.locks = read_named(txn, LOCKS, LOCKS_TABLE, p)?;
    snap.lock_operations = read_named(txn, LOCK_OPERATIONS, LOCK_OPERATIONS_TABLE, p)?;
    snap.sequences = read_named(txn, SEQUENCES, SEQUENCES_TABLE, p)?;
    for row in txn.open_table(SEQUENCE_KEYS)?.range((p, "", "")..(p + 1, "", ""))? {
        let (k, v) = row?;
        let (_, name, key) = k.value();
        snap.sequence_keys.push((name.to_owned(), key.to_owned(), decode(SEQUENCE_KEYS_TABLE, v.value())?));
    }
    for row in txn.open_table(INTENTS)?.range((p, "", "")..(p + 1, "", ""))? {
        let (k, v) = row?;
        let (_, key, txn_id) = k.value();
        snap.intents.push((key.to_owned(), txn_id.to_owned(), decode(INTENTS_TABLE, v.value())?));
    }
    snap.prepared = read_named(txn, PREPARED, PREPARED_TABLE, p)?;
    snap.finished = read_named(txn, FINISHED, FINISHED_TABLE, p)?;
    snap.txn_records = read_named(txn, TXN_RECORDS, TXN_RECORDS_TABLE, p)?;
    Ok((snap, applied, membership))
}

fn install(
    t: &mut Tables<'_>,
    p: PartitionId,
    snap: &PartitionSnapshot,
    applied: Option<LogId>,
    membership: &Membership,
) -> Result<(), StoreError> {
    let rows = snap.versions.iter().map(|(key, ts, version)| (key.as_str(), *ts, version));
    RedbSpace { table: t.versions.open()?, index: t.index, partition: p }.install(rows)?;
    install_named(t.operations.open()?, p, &snap.operations)?;
    install_named(t.locks.open()?, p, &snap.locks)?;
    install_named(t.lock_operations.open()?, p, &snap.lock_operations)?;
    install_named(t.sequences.open()?, p, &snap.sequences)?;
    t.sequence_keys.open()?.retain_in((p, "", "")..(p + 1, "", ""), |_, _| false)?;
    for (name, key, record) in &snap.sequence_keys {
        t.sequence_keys.open()?.insert((p, name.as_str(), key.as_str()), encode(record).as_slice())?;
    }
    t.intents.open()?.retain_in((p, "", "")..(p + 1, "", ""), |_, _| false)?;
    for (key, txn_id, intent) in &snap.intents {
        t.intents.open()?.insert((p, key.as_str(), txn_id.as_str()), encode(intent).as_slice())?;
    }
    install_named(t.prepared.open()?, p, &snap.prepared)?;
    install_named(t.finished.open()?, p, &snap.finished)?;
    install_named(t.txn_records.open()?, p, &snap.txn_records)?;
    // Stored as a bare LogId (see `applied_state`), absent when nothing was applied.
    match applied {
        Some(applied) => t.meta.open()?.insert((p, META_APPLIED), encode(&applied).as_slice())?,
        None => t.meta.open()?.remove((p, META_APPLIED))?,
    };
    t.meta.open()?.insert((p, META_MEMBERSHIP), encode(membership).as_slice())?;
    t.meta.open()?.insert((p, META_LAST_COMMIT_TS), encode(&snap.last_commit_ts).as_slice())?;
    t.meta.open()?.insert((p, META_COMPACTED_BEFORE), encode(&snap.compacted_before).as_slice())?;
    Ok(())
}

fn read_err(e: StoreError) -> StorageError {
    StorageIOError::read_state_machine(&e).into()
}

impl StateMachine {
    async fn build(&self) -> Result<Snapshot<TypeConfig>, StoreError> {
        let txn = self.storage.read().await?;
        let p = self.partition;
        // Reading and encoding every retained version of the partition takes long.
        let (bytes, applied, membership) = self
            .storage
            .off_runtime(move || {
                let (snap, applied, membership) = read_snapshot(&txn, p)?;
                Ok((encode(&snap), applied, membership))
            })
            .await?;
        let snapshot_id = match applied {
            Some(last) => format!("{}-{}-{}", self.partition, last.leader_id, last.index),
            None => format!("{}-empty", self.partition),
        };
        let meta = SnapshotMeta { last_log_id: applied, last_membership: membership, snapshot_id };
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(bytes)) })
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        self.build().await.map_err(read_err)
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, Membership), StorageError> {
        let txn = self.storage.read().await.map_err(read_err)?;
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
            .run(Flush::Nothing, move |t| apply_entries(t, p, entries))
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
        let bytes = snapshot.into_inner();
        let snap: PartitionSnapshot = (self.storage.off_runtime(move || decode("snapshot", &bytes)).await)
            .map_err(|e| StorageError::from(StorageIOError::read_snapshot(Some(meta.signature()), &e)))?;
        let (p, applied, membership) = (self.partition, meta.last_log_id, meta.last_membership.clone());
        self.hlc.observe(snap.last_commit_ts);
        self.storage.run(Flush::State, move |t| install(t, p, &snap, applied, &membership)).await.map_err(io_error)?;
        self.installed.fetch_add(1, Ordering::Relaxed);
        tracing::info!(partition = p, "installed snapshot up to {applied:?}");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        // The state machine in redb is always a complete snapshot of itself: build one
        // from it on demand instead of keeping a second copy.
        let snapshot = self.build().await.map_err(read_err)?;
        Ok(snapshot.meta.last_log_id.is_some().then_some(snapshot))
    }
}

#[cfg(test)]
mod tests {
    use redb::ReadableDatabase;

    use super::*;
    use crate::log_store::LogStore;
    use crate::types::{SetArgs, WriteOp};
    use openraft::testing::{StoreBuilder, Suite};

    struct Builder;

    impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
        async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError> {
            let dir = tempfile::tempdir().map_err(io_error)?;
            let storage = Storage::open(dir.path()).map_err(io_error)?;
            let hlc = Arc::new(Hlc::system());
            Ok((dir, LogStore::new(3, storage.clone()), StateMachine::new(3, storage, hlc)))
        }
    }

    fn lock(owner: &str) -> Command {
        let op = LockOp::Acquire { name: "r".into(), owner: owner.into(), lease_ms: 1_000 };
        Command::Lock { op, operation_id: None }
    }

    fn reserve(key: &str) -> Command {
        Command::Sequence { op: SequenceOp::Reserve { name: "s".into(), count: 2, idempotency_key: Some(key.into()) } }
    }

    /// A batch entry applies its proposals in order, each at its own commit timestamp (its
    /// stamp, or one past the previous commit), and answers each on its own.
    #[tokio::test]
    async fn a_batch_applies_each_proposal_at_its_own_timestamp() -> Result<(), StoreError> {
        let dir = tempfile::tempdir()?;
        let storage = Storage::open(dir.path())?;
        let set = |key: &str, nx: bool| Command::Write {
            ops: vec![WriteOp::Set(SetArgs { key: key.into(), value: b"v".to_vec(), nx, ..SetArgs::default() })],
            operation_id: None,
        };
        let batch = Command::Batch(Arc::new(vec![
            Proposal { ts: 50, command: set("a", false) },
            Proposal { ts: 30, command: set("a", true) },
            Proposal { ts: 90, command: set("b", false) },
        ]));
        let (results, last) = storage
            .run(Flush::Nothing, move |t| {
                let mut last = 10;
                let result = apply_proposal(t, 3, &Proposal { ts: 99, command: batch }, &mut last)?;
                Ok((result, last))
            })
            .await?;
        let ApplyResult::Batch(results) = results else { panic!("not a batch result: {results:?}") };
        let set_result = |r: &ApplyResult| match r {
            ApplyResult::Write(w) => match w.as_slice() {
                [WriteResult::Set { modified, commit_ts, .. }] => Some((*modified, *commit_ts)),
                _ => None,
            },
            _ => None,
        };
        let found: Vec<_> = results.iter().map(set_result).collect();
        // The second is an nx set of a key the first wrote: applied after it, so refused.
        assert_eq!(found, vec![Some((true, 50)), Some((false, 51)), Some((true, 90))]);
        assert_eq!(last, 90);
        Ok(())
    }

    /// Locks, sequences and idempotency records travel in snapshots, and compaction
    /// drops idempotency records past the window but never a lock's last token.
    #[tokio::test]
    async fn coordination_state_in_snapshots_and_compaction() -> Result<(), StoreError> {
        let dir = tempfile::tempdir()?;
        let storage = Storage::open(&dir.path().join("a"))?;
        let ts = crate::hlc::from_physical_ms(1_000);
        let results = storage
            .run(Flush::State, move |t| {
                let create = SequenceOp::Create { name: "s".into(), start: 1, increment: 1, max: None };
                let commands = [Command::Sequence { op: create }, lock("a"), reserve("k"), reserve("k")];
                commands.into_iter().enumerate().map(|(i, c)| apply_command(t, 3, &c, ts + i as u64)).collect()
            })
            .await?;
        let results: Vec<ApplyResult> = results;
        let first = SequenceReply::Allocated {
            allocation: crate::types::Allocation { first: 1, count: 2, increment: 1 },
            replayed: false,
        };
        assert_eq!(results[2], ApplyResult::Sequence(Ok(first)));
        assert!(matches!(&results[3], ApplyResult::Sequence(Ok(SequenceReply::Allocated { replayed: true, .. }))));

        let (snap, _, _) = read_snapshot(&storage.db().begin_read()?, 3)?;
        assert_eq!((snap.locks.len(), snap.sequences.len(), snap.sequence_keys.len()), (1, 1, 1));
        let other = Storage::open(&dir.path().join("b"))?;
        other.run(Flush::State, move |t| install(t, 3, &snap, None, &Membership::default())).await?;
        let (copied, _, _) = read_snapshot(&other.db().begin_read()?, 3)?;
        assert_eq!(copied.locks[0].1.last_token, 1);
        assert_eq!(copied.sequence_keys[0].2.allocation.first, 1);

        // Past the window: the key goes, the lock's token stays; the lock expired, so
        // the next owner gets token 2.
        let later = crate::hlc::from_physical_ms(10_000);
        let results = other
            .run(Flush::State, move |t| {
                let compact = Command::Compact { before_ts: 0, operations_before_ts: later };
                [compact, lock("b"), reserve("k")].into_iter().map(|c| apply_command(t, 3, &c, later)).collect()
            })
            .await?;
        let results: Vec<ApplyResult> = results;
        assert!(matches!(&results[1], ApplyResult::Lock(Ok(r)) if r.holder.as_ref().map(|h| h.token) == Some(2)));
        assert!(matches!(&results[2], ApplyResult::Sequence(Ok(SequenceReply::Allocated { replayed: false, .. }))));
        Ok(())
    }

    /// A prepared transaction's intents and part travel in snapshots, so a replica that
    /// catches up through one still holds the keys and can apply the decision.
    #[tokio::test]
    async fn prepared_transactions_in_snapshots() -> Result<(), StoreError> {
        use crate::types::{SetArgs, TxnDecision, TxnPart, WriteOp};
        let dir = tempfile::tempdir()?;
        let storage = Storage::open(&dir.path().join("a"))?;
        let ts = crate::hlc::from_physical_ms(1_000);
        let set = WriteOp::Set(SetArgs { key: "k".into(), value: b"v".to_vec(), ..Default::default() });
        let part = TxnPart { reads: vec!["r".into()], writes: vec![set], ..Default::default() };
        let prepare = Command::Txn(TxnCommand::Prepare {
            txn_id: "t1".into(),
            snapshot_ts: ts,
            part,
            record_partition: 3,
            timeout_ms: 5,
        });
        let result = storage.run(Flush::State, move |t| apply_command(t, 3, &prepare, ts + 1)).await?;
        assert!(matches!(result, ApplyResult::Txn(Ok(crate::types::TxnReply::Prepared { .. }))), "{result:?}");

        let (snap, _, _) = read_snapshot(&storage.db().begin_read()?, 3)?;
        assert_eq!((snap.intents.len(), snap.prepared.len()), (2, 1));
        let other = Storage::open(&dir.path().join("b"))?;
        other.run(Flush::State, move |t| install(t, 3, &snap, None, &Membership::default())).await?;
        // A plain write of the held key is refused until the decision is applied.
        let write = |value: &str| Command::Write {
            ops: vec![WriteOp::Set(SetArgs { key: "k".into(), value: value.into(), ..Default::default() })],
            operation_id: None,
        };
        let (blocked, resolve, after) = (write("x"), write("y"), ts + 10);
        let results: Vec<ApplyResult> = other
            .run(Flush::State, move |t| {
                let decision = TxnDecision::Commit { commit_ts: ts + 2 };
                let resolve_cmd = Command::Txn(TxnCommand::Resolve { txn_id: "t1".into(), decision });
                [blocked, resolve_cmd, resolve].into_iter().map(|c| apply_command(t, 3, &c, after)).collect()
            })
            .await?;
        assert!(matches!(&results[0], ApplyResult::Blocked(KvError::Locked { .. })), "{:?}", results[0]);
        assert!(matches!(&results[2], ApplyResult::Write(r) if matches!(r[0], WriteResult::Set { revision: 1, .. })));
        Ok(())
    }

    /// openraft's own conformance suite for log and state machine storage.
    #[test]
    fn openraft_storage_suite() -> Result<(), Box<StorageError>> {
        Suite::test_all(Builder).map_err(Box::new)
    }
}
