//! The state machine's side of transactions: validating a transaction's part against its
//! snapshot, the intents that hold keys from prepare to resolve, the records that keep
//! decisions, and the intent checks of plain writes and snapshot reads.
//!
//! Everything here runs inside the storage thread's write transaction (or a read
//! transaction, for reads) and judges time only by timestamps carried in entries, so
//! every replica reaches the same outcome.
//!
//! The rules:
//! - A part validates when no key it read or writes has a version newer than the
//!   snapshot, no scanned range holds one, and no other transaction's intent covers
//!   them (a write intent blocks reads and writes; a read intent blocks writes; a
//!   prepared scan blocks writes into its range). A failed validation is `Conflict`.
//! - A plain write that meets an intent changes nothing and answers `Locked`; the kernel
//!   waits for the transaction to resolve (or resolves it after its deadline) and retries.
//! - A snapshot read at T that meets a write intent prepared at or before T answers
//!   `Locked`: the transaction may still commit at or below T. Intents prepared after T
//!   are ignored: their commit timestamp is at least their prepare timestamp.

use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use crate::error::{KvError, StoreError};
use crate::locks::LockRecord;
use crate::mvcc::{KeyReader, apply_write};
use crate::redb_space::RedbSpace;
use crate::schema::{
    FINISHED_TABLE, INTENTS_TABLE, LOCKS_TABLE, PREPARED_TABLE, SEQUENCES_TABLE, TXN_RECORDS_TABLE, decode, encode,
};
use crate::state_machine::get_named;
use crate::storage::{NamedTable, Tables};
use crate::types::{
    PartitionId, ScannedRange, SequenceInfo, TxnDecision, TxnPart, TxnRecord, TxnReply, WriteOp, WriteResult,
};

/// A prepared transaction's hold on one key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Intent {
    /// It writes the key (else it only read it).
    pub(crate) write: bool,
    pub(crate) prepare_ts: u64,
    /// Unix ms after which anyone may resolve the transaction from its record.
    pub(crate) deadline_ms: u64,
    pub(crate) record_partition: PartitionId,
}

/// A transaction's part prepared on this partition, waiting for its decision.
/// `deadline_ms` is the prepare's physical time plus the transaction's timeout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Prepared {
    pub(crate) prepare_ts: u64,
    pub(crate) deadline_ms: u64,
    pub(crate) record_partition: PartitionId,
    pub(crate) part: TxnPart,
}

/// How a transaction ended on this partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Finished {
    pub(crate) ts: u64,
    pub(crate) reply: Result<TxnReply, KvError>,
}

/// A multi-partition transaction's decision, on its record partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Record {
    pub(crate) ts: u64,
    pub(crate) decision: TxnDecision,
}

type IntentKey<'a> = (u32, &'a str, &'a str);
type NamedKey<'a> = (u32, &'a str);

/// The intents on `key`: (txn id, intent).
fn intents_on<T>(table: &T, p: PartitionId, key: &str) -> Result<Vec<(String, Intent)>, StoreError>
where
    T: ReadableTable<IntentKey<'static>, &'static [u8]>,
{
    let mut found = Vec::new();
    for row in table.range((p, key, "")..)? {
        let (k, v) = row?;
        let (rp, rkey, txn) = k.value();
        if rp != p || rkey != key {
            break;
        }
        found.push((txn.to_owned(), decode(INTENTS_TABLE, v.value())?));
    }
    Ok(found)
}

/// Calls `visit` with every intent on a key in `range` until it returns false.
fn intents_in<T>(
    table: &T,
    p: PartitionId,
    range: &ScannedRange,
    mut visit: impl FnMut(&str, &str, Intent) -> bool,
) -> Result<(), StoreError>
where
    T: ReadableTable<IntentKey<'static>, &'static [u8]>,
{
    let start = match &range.after {
        Some(after) if after.as_str() >= range.prefix.as_str() => after.as_str(),
        _ => range.prefix.as_str(),
    };
    for row in table.range((p, start, "")..)? {
        let (k, v) = row?;
        let (rp, key, txn) = k.value();
        if rp != p || !key.starts_with(&range.prefix) {
            break;
        }
        if range.through.as_deref().is_some_and(|t| key > t) {
            break;
        }
        if range.contains(key) && !visit(key, txn, decode(INTENTS_TABLE, v.value())?) {
            break;
        }
    }
    Ok(())
}

fn locked(key: &str, txn_id: &str, intent: &Intent) -> KvError {
    KvError::Locked {
        key: key.to_owned(),
        txn_id: txn_id.to_owned(),
        record_partition: intent.record_partition,
        deadline_ms: intent.deadline_ms,
    }
}

/// Whether a snapshot read at `as_of` of `key` must wait: `Locked` when a write intent
/// prepared at or before `as_of` holds it.
pub(crate) fn check_read<T>(table: &T, p: PartitionId, key: &str, as_of: u64) -> Result<Result<(), KvError>, StoreError>
where
    T: ReadableTable<IntentKey<'static>, &'static [u8]>,
{
    let blocking = intents_on(table, p, key)?.into_iter().find(|(_, i)| i.write && i.prepare_ts <= as_of);
    Ok(match blocking {
        Some((txn, intent)) => Err(locked(key, &txn, &intent)),
        None => Ok(()),
    })
}

/// As [`check_read`], for a snapshot scan of `range`.
pub(crate) fn check_scan<T>(
    table: &T,
    p: PartitionId,
    range: &ScannedRange,
    as_of: u64,
) -> Result<Result<(), KvError>, StoreError>
where
    T: ReadableTable<IntentKey<'static>, &'static [u8]>,
{
    let mut blocked = None;
    intents_in(table, p, range, |key, txn, intent| {
        if intent.write && intent.prepare_ts <= as_of {
            blocked = Some(locked(key, txn, &intent));
            return false;
        }
        true
    })?;
    Ok(blocked.map_or(Ok(()), Err))
}

/// Whether plain writes of `keys` may apply now: `Locked` when any intent holds one of
/// them or a prepared scan covers it.
pub(crate) fn check_plain_writes<'k>(
    t: &mut Tables<'_>,
    p: PartitionId,
    keys: impl Iterator<Item = &'k str>,
) -> Result<Result<(), KvError>, StoreError> {
    let keys: Vec<&str> = keys.collect();
    for key in &keys {
        if let Some((txn, intent)) = intents_on(t.intents.open()?, p, key)?.into_iter().next() {
            return Ok(Err(locked(key, &txn, &intent)));
        }
    }
    for (txn, prepared) in prepared_of(t.prepared.open()?, p)? {
        if let Some(key) = keys.iter().find(|k| prepared.part.scans.iter().any(|r| r.contains(k))) {
            let intent = Intent {
                write: false,
                prepare_ts: prepared.prepare_ts,
                deadline_ms: prepared.deadline_ms,
                record_partition: prepared.record_partition,
            };
            return Ok(Err(locked(key, &txn, &intent)));
        }
    }
    Ok(Ok(()))
}

/// Every transaction prepared on partition `p` and not yet resolved.
pub(crate) fn prepared_of<T>(table: &T, p: PartitionId) -> Result<Vec<(String, Prepared)>, StoreError>
where
    T: ReadableTable<NamedKey<'static>, &'static [u8]>,
{
    let mut found = Vec::new();
    for row in table.range((p, "")..(p + 1, ""))? {
        let (k, v) = row?;
        found.push((k.value().1.to_owned(), decode(PREPARED_TABLE, v.value())?));
    }
    Ok(found)
}

fn conflict(message: String) -> Result<Result<(), KvError>, StoreError> {
    Ok(Err(KvError::Conflict(message)))
}

/// Validates `part` of transaction `txn_id` against its snapshot (see the module rules).
fn validate(
    t: &mut Tables<'_>,
    p: PartitionId,
    txn_id: &str,
    snapshot_ts: u64,
    part: &TxnPart,
) -> Result<Result<(), KvError>, StoreError> {
    let versions = RedbSpace { table: t.versions.open()?, index: t.index, partition: p };
    let writes: Vec<&str> = part.writes.iter().map(WriteOp::key).collect();
    for key in part.keys() {
        if let Some((ts, _)) = versions.latest(key)?
            && ts > snapshot_ts
        {
            return conflict(format!("key {key:?} changed after the transaction's snapshot"));
        }
        let writing = writes.contains(&key);
        for (other, intent) in intents_on(t.intents.open()?, p, key)? {
            if other != txn_id && (intent.write || writing) {
                return conflict(format!("key {key:?} is held by transaction {other}"));
            }
        }
    }
    for record in &part.records {
        if !record_unchanged(&mut t.locks, &mut t.sequences, p, record)? {
            return conflict(format!("{} changed after the transaction read it", describe(record)));
        }
        let key = record.intent_key();
        for (other, intent) in intents_on(t.intents.open()?, p, &key)? {
            if other != txn_id && (intent.write || record.writes()) {
                return conflict(format!("{} is held by transaction {other}", describe(record)));
            }
        }
    }
    for (other, prepared) in prepared_of(t.prepared.open()?, p)? {
        if other == txn_id {
            continue;
        }
        if let Some(key) = writes.iter().find(|k| prepared.part.scans.iter().any(|r| r.contains(k))) {
            return conflict(format!("key {key:?} lies in a range scanned by transaction {other}"));
        }
    }
    for range in &part.scans {
        let mut changed = None;
        let start = match &range.after {
            Some(after) if after.as_str() >= range.prefix.as_str() => after.clone(),
            _ => range.prefix.clone(),
        };
        versions.scan(&start, None, &mut |key, newest| {
            if !key.starts_with(&range.prefix) || range.through.as_deref().is_some_and(|th| key > th) {
                return false;
            }
            if range.contains(key) && newest.is_some_and(|(ts, _)| ts > snapshot_ts) {
                changed = Some(key.to_owned());
                return false;
            }
            true
        })?;
        if let Some(key) = changed {
            return conflict(format!("key {key:?} in a scanned range changed after the transaction's snapshot"));
        }
        let mut held = None;
        intents_in(t.intents.open()?, p, range, |key, other, intent| {
            if other != txn_id && intent.write {
                held = Some((key.to_owned(), other.to_owned()));
                return false;
            }
            true
        })?;
        if let Some((key, other)) = held {
            return conflict(format!("key {key:?} in a scanned range is held by transaction {other}"));
        }
    }
    Ok(Ok(()))
}

fn describe(record: &TxnRecord) -> String {
    match record {
        TxnRecord::Lock { name, .. } => format!("lock {name:?}"),
        TxnRecord::Sequence { name, .. } => format!("sequence {name:?}"),
    }
}

/// Whether a lock or sequence is as the transaction read it. Their states only move
/// forward (tokens and allocations grow), so equal means untouched.
fn record_unchanged(
    locks: &mut NamedTable<'_>,
    sequences: &mut NamedTable<'_>,
    p: PartitionId,
    record: &TxnRecord,
) -> Result<bool, StoreError> {
    Ok(match record {
        TxnRecord::Lock { name, seen, .. } => {
            let current: Option<LockRecord> = get_named(locks.open()?, LOCKS_TABLE, p, name)?;
            current.unwrap_or_default() == *seen
        }
        TxnRecord::Sequence { name, seen, .. } => {
            let current: Option<SequenceInfo> = get_named(sequences.open()?, SEQUENCES_TABLE, p, name)?;
            current == *seen
        }
    })
}

/// Applies the transaction's writes of keys (at `ts`) and of locks and sequences.
fn writes_at(t: &mut Tables<'_>, p: PartitionId, part: &TxnPart, ts: u64) -> Result<Vec<WriteResult>, StoreError> {
    for record in &part.records {
        match record {
            TxnRecord::Lock { name, write: Some(state), .. } => {
                t.locks.open()?.insert((p, name.as_str()), encode(state).as_slice())?;
            }
            TxnRecord::Sequence { name, write: Some(Some(info)), .. } => {
                t.sequences.open()?.insert((p, name.as_str()), encode(info).as_slice())?;
            }
            TxnRecord::Sequence { name, write: Some(None), .. } => {
                t.sequences.open()?.remove((p, name.as_str()))?;
                let end = format!("{name}\0");
                t.sequence_keys.open()?.retain_in((p, name.as_str(), "")..(p, end.as_str(), ""), |_, _| false)?;
            }
            TxnRecord::Lock { write: None, .. } | TxnRecord::Sequence { write: None, .. } => {}
        }
    }
    let mut space = RedbSpace { table: t.versions.open()?, index: t.index, partition: p };
    part.writes.iter().map(|op| apply_write(&mut space, op, ts)).collect()
}

/// Whether a plain lock or sequence command on `intent_key` may apply now: `Locked`
/// when a prepared transaction holds the lock or sequence.
pub(crate) fn check_record(
    t: &mut Tables<'_>,
    p: PartitionId,
    intent_key: &str,
) -> Result<Result<(), KvError>, StoreError> {
    Ok(match intents_on(t.intents.open()?, p, intent_key)?.into_iter().next() {
        Some((txn, intent)) => Err(locked(intent_key, &txn, &intent)),
        None => Ok(()),
    })
}

fn finish(
    t: &mut Tables<'_>,
    p: PartitionId,
    txn_id: &str,
    ts: u64,
    reply: Result<TxnReply, KvError>,
) -> Result<Result<TxnReply, KvError>, StoreError> {
    let record = Finished { ts, reply: reply.clone() };
    t.finished.open()?.insert((p, txn_id), encode(&record).as_slice())?;
    Ok(reply)
}

fn finished<T>(table: &T, p: PartitionId, txn_id: &str) -> Result<Option<Finished>, StoreError>
where
    T: ReadableTable<NamedKey<'static>, &'static [u8]>,
{
    get_named(table, FINISHED_TABLE, p, txn_id)
}

/// A one-partition commit at entry timestamp `ts`.
pub(crate) fn apply_commit(
    t: &mut Tables<'_>,
    p: PartitionId,
    txn_id: &str,
    snapshot_ts: u64,
    part: &TxnPart,
    ts: u64,
) -> Result<Result<TxnReply, KvError>, StoreError> {
    if let Some(done) = finished(t.finished.open()?, p, txn_id)? {
        return Ok(done.reply);
    }
    if let Err(e) = validate(t, p, txn_id, snapshot_ts, part)? {
        return finish(t, p, txn_id, ts, Err(e));
    }
    writes_at(t, p, part, ts)?;
    finish(t, p, txn_id, ts, Ok(TxnReply::Committed { commit_ts: ts }))
}

/// Phase one: validate `prepared.part` against the snapshot, then hold every key with
/// an intent. `prepared` is what the entry asks to keep (stamped with its timestamp).
pub(crate) fn apply_prepare(
    t: &mut Tables<'_>,
    p: PartitionId,
    txn_id: &str,
    snapshot_ts: u64,
    prepared: Prepared,
) -> Result<Result<TxnReply, KvError>, StoreError> {
    if finished(t.finished.open()?, p, txn_id)?.is_some() {
        // Resolved before this prepare arrived (a late or repeated proposal): refuse, so
        // no intent outlives the decision.
        return Ok(Err(KvError::Conflict(format!("transaction {txn_id} was already resolved"))));
    }
    if let Some(found) = t.prepared.open()?.get((p, txn_id))? {
        let prepared: Prepared = decode(PREPARED_TABLE, found.value())?;
        return Ok(Ok(TxnReply::Prepared { prepare_ts: prepared.prepare_ts }));
    }
    if let Err(e) = validate(t, p, txn_id, snapshot_ts, &prepared.part)? {
        return Ok(Err(e));
    }
    let Prepared { prepare_ts: ts, deadline_ms, record_partition, ref part } = prepared;
    let writes: Vec<String> = part.writes.iter().map(|w| w.key().to_owned()).collect();
    for key in part.reads.iter().chain(&writes) {
        let intent = Intent { write: writes.contains(key), prepare_ts: ts, deadline_ms, record_partition };
        t.intents.open()?.insert((p, key.as_str(), txn_id), encode(&intent).as_slice())?;
    }
    for record in &part.records {
        let intent = Intent { write: record.writes(), prepare_ts: ts, deadline_ms, record_partition };
        t.intents.open()?.insert((p, record.intent_key().as_str(), txn_id), encode(&intent).as_slice())?;
    }
    t.prepared.open()?.insert((p, txn_id), encode(&prepared).as_slice())?;
    Ok(Ok(TxnReply::Prepared { prepare_ts: ts }))
}

/// Writes the decision unless the record holds one; answers the recorded decision.
pub(crate) fn apply_decide(
    t: &mut Tables<'_>,
    p: PartitionId,
    txn_id: &str,
    decision: TxnDecision,
    ts: u64,
) -> Result<Result<TxnReply, KvError>, StoreError> {
    if let Some(found) = t.txn_records.open()?.get((p, txn_id))? {
        let record: Record = decode(TXN_RECORDS_TABLE, found.value())?;
        return Ok(Ok(TxnReply::Decided(record.decision)));
    }
    t.txn_records.open()?.insert((p, txn_id), encode(&Record { ts, decision }).as_slice())?;
    Ok(Ok(TxnReply::Decided(decision)))
}

/// Applies the decision to what the transaction prepared here, and drops its intents.
pub(crate) fn apply_resolve(
    t: &mut Tables<'_>,
    p: PartitionId,
    txn_id: &str,
    decision: TxnDecision,
    ts: u64,
) -> Result<Result<TxnReply, KvError>, StoreError> {
    let prepared = match t.prepared.open()?.remove((p, txn_id))? {
        Some(found) => Some(decode::<Prepared>(PREPARED_TABLE, found.value())?),
        None => None,
    };
    if let Some(prepared) = prepared {
        let writes: Vec<&str> = prepared.part.writes.iter().map(WriteOp::key).collect();
        for key in prepared.part.reads.iter().map(String::as_str).chain(writes) {
            t.intents.open()?.remove((p, key, txn_id))?;
        }
        for record in &prepared.part.records {
            t.intents.open()?.remove((p, record.intent_key().as_str(), txn_id))?;
        }
        if let TxnDecision::Commit { commit_ts } = decision {
            // The keys were held since the prepare, so no version of them is newer than
            // `commit_ts` (at least the prepare's timestamp) even when the partition has
            // moved past it.
            writes_at(t, p, &prepared.part, commit_ts)?;
        }
    }
    if finished(t.finished.open()?, p, txn_id)?.is_none() {
        return finish(t, p, txn_id, ts, Ok(TxnReply::Resolved));
    }
    Ok(Ok(TxnReply::Resolved))
}

/// Drops finished markers and records older than `before_ts` (operation retention).
pub(crate) fn compact(t: &mut Tables<'_>, p: PartitionId, before_ts: u64) -> Result<(), StoreError> {
    t.finished.open()?.retain_in((p, "")..(p + 1, ""), |_, v| {
        decode::<Finished>(FINISHED_TABLE, v).is_ok_and(|r| r.ts >= before_ts)
    })?;
    t.txn_records.open()?.retain_in((p, "")..(p + 1, ""), |_, v| {
        decode::<Record>(TXN_RECORDS_TABLE, v).is_ok_and(|r| r.ts >= before_ts)
    })?;
    Ok(())
}

/// The decision transaction `txn_id`'s record on `p` holds, if any.
pub(crate) fn recorded_decision<T>(table: &T, p: PartitionId, txn_id: &str) -> Result<Option<TxnDecision>, StoreError>
where
    T: ReadableTable<NamedKey<'static>, &'static [u8]>,
{
    let Some(found) = table.get((p, txn_id))? else { return Ok(None) };
    Ok(Some(decode::<Record>(TXN_RECORDS_TABLE, found.value())?.decision))
}

/// Transactions prepared on `p` whose deadline passed at unix ms `now_ms`: (txn id,
/// record partition).
pub(crate) fn overdue<T>(table: &T, p: PartitionId, now_ms: u64) -> Result<Vec<(String, PartitionId)>, StoreError>
where
    T: ReadableTable<NamedKey<'static>, &'static [u8]>,
{
    Ok(prepared_of(table, p)?
        .into_iter()
        .filter(|(_, prepared)| prepared.deadline_ms <= now_ms)
        .map(|(txn, prepared)| (txn, prepared.record_partition))
        .collect())
}
