//! Kahuna's transaction engine (DESIGN §2–§3): interactive transactions and Lua scripts
//! share it.
//!
//! A [`Transaction`] is coordinated by the node that began it:
//! - **Begin** takes a snapshot timestamp after reading every reachable node's clock
//!   ([`Kernel::sync_clock`]), so the snapshot is no earlier than any commit
//!   acknowledged before the call: that is the "strict" of strict serializability. When
//!   some node's clock could not be read, the snapshot may be older than such a commit;
//!   such a transaction is validated at commit even when it wrote nothing, so that it
//!   serializes at its commit instead.
//! - **Reads** come from the snapshot on each partition's leader (which first makes
//!   sure no commit can still land at or below it, and waits for prepared transactions
//!   that might), overlaid with the transaction's own buffered writes. Every key read,
//!   every key whose conditions were judged and every range scanned is remembered.
//! - **Commit** validates all of that against the snapshot where the data lives. One
//!   partition: one `TxnCommit` entry that validates and writes. Several: `TxnPrepare`
//!   on each (validate, then hold the keys with intents), the decision written to the
//!   transaction's record on the first participant (`TxnDecide`, the first decision
//!   wins), then `TxnResolve` everywhere. Anyone meeting an intent past its deadline
//!   decides "abort" in the record (losing to a commit already there) and resolves it,
//!   so a coordinator crash at any point leaves nothing held and nothing half-visible;
//!   one meeting it before the deadline applies the decision once the record holds one
//!   (the coordinator died after deciding, or could not reach that participant).
//!
//! Transactions cover persistent keys; ephemeral keys live only in a leader's memory
//! and are outside them (`InvalidInput`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use kahuna_kernel::{
    Consistency, DeleteArgs, Durability, Kernel, KeyValue, KvError, LockOp, LockRecord, LockReply, PartitionId,
    PartitionRequest, PartitionResponse, PointRead, ScannedRange, SequenceInfo, SequenceOp, SequenceReply, SetArgs,
    TxnDecision, TxnPart, TxnRecord, TxnReply, WriteOp, check_key, lock_step, physical_ms, sequence_step,
};
// tokio's clock, not std's: the same in production, and the one a simulation drives.
use tokio::time::Instant;

/// Settings of the engine.
#[derive(Debug, Clone)]
pub struct TxnConfig {
    /// Timeout of a transaction that asks for none.
    pub timeout_default: Duration,
    /// Longest timeout a transaction may ask for.
    pub timeout_max: Duration,
    /// Test hook: the process aborts right after every participant prepared a
    /// multi-partition commit (before the decision is written).
    pub crash_after_prepare: bool,
}

/// Default transaction timeout (DESIGN §2).
pub const TIMEOUT_DEFAULT: Duration = Duration::from_secs(5);
/// Default longest transaction timeout.
pub const TIMEOUT_MAX_DEFAULT: Duration = Duration::from_secs(60);

impl Default for TxnConfig {
    fn default() -> Self {
        Self { timeout_default: TIMEOUT_DEFAULT, timeout_max: TIMEOUT_MAX_DEFAULT, crash_after_prepare: false }
    }
}

/// Begins transactions on one node. Cheap to clone.
#[derive(Clone)]
pub struct TxnEngine {
    kernel: Kernel,
    config: TxnConfig,
    /// Makes transaction ids unique on this node (with the node id and the snapshot).
    /// One per engine rather than per process, so that simulated nodes sharing a process
    /// number their transactions as separate processes would, run after run.
    next_txn: Arc<AtomicU64>,
}

impl TxnEngine {
    pub fn new(kernel: Kernel, config: TxnConfig) -> Self {
        Self { kernel, config, next_txn: Arc::new(AtomicU64::new(1)) }
    }

    pub fn kernel(&self) -> &Kernel {
        &self.kernel
    }

    pub fn config(&self) -> &TxnConfig {
        &self.config
    }

    /// Begins a transaction: a snapshot timestamp no earlier than any commit acknowledged
    /// before the call. `timeout` (default `timeout_default`, at most `timeout_max`, else
    /// `InvalidInput`) bounds its life: after it, every call fails and nothing commits.
    pub async fn begin(&self, timeout: Option<Duration>) -> Result<Transaction, KvError> {
        let timeout = timeout.unwrap_or(self.config.timeout_default);
        if timeout.is_zero() || timeout > self.config.timeout_max {
            return Err(KvError::InvalidInput(format!(
                "transaction timeout must be 1..={} ms, not {} ms",
                self.config.timeout_max.as_millis(),
                timeout.as_millis()
            )));
        }
        let sync = self.kernel.sync_clock().await;
        let snapshot_ts = sync.ts;
        let id =
            format!("{}-{snapshot_ts:016x}-{}", self.kernel.node_id(), self.next_txn.fetch_add(1, Ordering::Relaxed));
        Ok(Transaction {
            engine: self.clone(),
            id,
            snapshot_ts,
            snapshot_complete: sync.complete,
            timeout,
            deadline: Instant::now() + timeout,
            view: BTreeMap::new(),
            reads: BTreeSet::new(),
            scans: Vec::new(),
            writes: BTreeMap::new(),
            records: BTreeMap::new(),
        })
    }
}

/// One transaction: reads from its snapshot (with its own writes visible), writes
/// buffered until [`Transaction::commit`].
///
/// Calls before commit never fail with `Conflict` (reads wait for prepared transactions
/// instead), so a script that catches an error cannot hide one: validation happens once,
/// at commit.
pub struct Transaction {
    engine: TxnEngine,
    id: String,
    snapshot_ts: u64,
    /// Every node's clock went into the snapshot (`ClockSync::complete`): no commit
    /// acknowledged before `begin` is above it.
    snapshot_complete: bool,
    timeout: Duration,
    deadline: Instant,
    /// The transaction's view of every key it read or wrote: `None` = absent.
    view: BTreeMap<String, Option<KeyValue>>,
    /// Keys read or whose conditions were judged (validated at commit).
    reads: BTreeSet<String>,
    /// Ranges scanned (validated at commit in every partition).
    scans: Vec<ScannedRange>,
    /// The final write of each written key.
    writes: BTreeMap<String, WriteOp>,
    /// Locks and sequences read or changed, by name.
    records: BTreeMap<(RecordKind, String), TxnRecord>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum RecordKind {
    Lock,
    Sequence,
}

impl Transaction {
    /// Unique id, e.g. `"1-0001a2b3c4d5e6f7-3"`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The snapshot's HLC timestamp.
    pub fn snapshot_ts(&self) -> u64 {
        self.snapshot_ts
    }

    /// When the transaction times out, on the standard clock. The transaction itself
    /// judges its deadline on tokio's clock, which is the standard clock in production
    /// and the simulated one under a simulation.
    pub fn deadline(&self) -> std::time::Instant {
        self.deadline.into_std()
    }

    /// Whether the transaction buffered any write (of a key, lock or sequence).
    pub fn has_writes(&self) -> bool {
        !self.writes.is_empty() || self.records.values().any(TxnRecord::writes)
    }

    fn check_open(&self) -> Result<(), KvError> {
        if Instant::now() >= self.deadline {
            return Err(KvError::Timeout(format!(
                "transaction {} passed its timeout of {} ms; nothing was committed",
                self.id,
                self.timeout.as_millis()
            )));
        }
        Ok(())
    }

    /// Reads a key in the transaction's view (`read.as_of`, when given, may not be later
    /// than the snapshot; `at_revision` reads history). Persistent keys only.
    pub async fn get(&mut self, read: &PointRead) -> Result<Option<KeyValue>, KvError> {
        self.check_open()?;
        check_key(&read.key)?;
        if read.at_revision.is_some() || read.as_of.is_some() {
            if read.at_revision.is_some() && read.as_of.is_some() {
                return Err(KvError::InvalidInput("`at` a revision and `as of` a time cannot be combined".into()));
            }
            if let Some(as_of) = read.as_of
                && as_of > self.snapshot_ts
            {
                return Err(KvError::InvalidInput(format!(
                    "as-of timestamp {as_of} is after the transaction's snapshot {}",
                    self.snapshot_ts
                )));
            }
            // History does not change: nothing to validate.
            return self.read_snapshot(read.clone()).await;
        }
        self.current(&read.key).await
    }

    /// The key's value in the transaction's view; the key joins the read set.
    async fn current(&mut self, key: &str) -> Result<Option<KeyValue>, KvError> {
        if let Some(seen) = self.view.get(key) {
            return Ok(seen.clone());
        }
        let read = PointRead { key: key.to_owned(), at_revision: None, as_of: Some(self.snapshot_ts) };
        let found = self.read_snapshot(read).await?;
        self.reads.insert(key.to_owned());
        self.view.insert(key.to_owned(), found.clone());
        Ok(found)
    }

    async fn read_snapshot(&mut self, read: PointRead) -> Result<Option<KeyValue>, KvError> {
        let kernel = self.engine.kernel.clone();
        let p = kernel.partition_of(&read.key);
        let request = PartitionRequest::Read {
            reads: vec![read],
            durability: Durability::Persistent,
            consistency: Consistency::Linearizable,
        };
        match kernel.execute(p, request).await?.value {
            PartitionResponse::Read(mut values) if values.len() == 1 => Ok(values.pop().flatten()),
            other => Err(KvError::Internal(format!("unexpected answer to a read: {other:?}"))),
        }
    }

    /// Live keys starting with `prefix`, greater than `after`, at most `limit` (checked
    /// like a scan's limit), in the transaction's view; the flag says whether more may
    /// follow. The range seen joins the scan set.
    pub async fn scan(
        &mut self,
        prefix: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<(Vec<KeyValue>, bool), KvError> {
        self.check_open()?;
        let kernel = self.engine.kernel.clone();
        let (stored, stored_more) = kernel
            .scan(prefix, after, limit, Some(self.snapshot_ts), Durability::Persistent, Consistency::Linearizable)
            .await?;
        // The stored page is complete up to its last key when more may follow; own
        // writes beyond that key wait for the next page.
        let horizon = if stored_more { stored.last().map(|kv| kv.key.clone()) } else { None };
        let in_page = |key: &str| {
            key.starts_with(prefix) && after.is_none_or(|a| key > a) && horizon.as_deref().is_none_or(|h| key <= h)
        };
        let mut merged: BTreeMap<String, KeyValue> = stored.into_iter().map(|kv| (kv.key.clone(), kv)).collect();
        for key in self.writes.keys().filter(|k| in_page(k)) {
            match self.view.get(key) {
                Some(Some(kv)) => merged.insert(key.clone(), kv.clone()),
                _ => merged.remove(key),
            };
        }
        let mut items: Vec<KeyValue> = merged.into_values().collect();
        let mut more = stored_more;
        if items.len() > limit as usize {
            items.truncate(limit as usize);
            more = true;
        }
        let through = if more { items.last().map(|kv| kv.key.clone()).or(horizon) } else { None };
        self.scans.push(ScannedRange { prefix: prefix.to_owned(), after: after.map(str::to_owned), through });
        Ok((items, more))
    }

    /// Buffers a set when its conditions hold in the transaction's view; returns whether
    /// they held.
    pub async fn set(&mut self, args: SetArgs) -> Result<bool, KvError> {
        self.check_open()?;
        check_key(&args.key)?;
        kahuna_kernel::check_value(&args.value, self.engine.kernel.value_bytes_max())?;
        if args.nx && args.xx {
            return Err(KvError::InvalidInput("nx and xx cannot be combined".into()));
        }
        let current = self.current(&args.key).await?;
        let holds = !(args.nx && current.is_some() || args.xx && current.is_none())
            && compares_hold(current.as_ref(), args.compare_value.as_deref(), args.compare_revision);
        if !holds {
            return Ok(false);
        }
        let kv = KeyValue {
            key: args.key.clone(),
            value: args.value.clone(),
            revision: next_revision(current.as_ref()),
            commit_ts: 0,
            expires_at_ms: expiry(self.snapshot_ts, args.ttl_ms),
        };
        let write = SetArgs { key: args.key.clone(), value: args.value, ttl_ms: args.ttl_ms, ..Default::default() };
        self.view.insert(args.key.clone(), Some(kv));
        self.writes.insert(args.key, WriteOp::Set(write));
        Ok(true)
    }

    /// Buffers a delete of a live key whose conditions hold; returns whether they held.
    pub async fn delete(&mut self, args: DeleteArgs) -> Result<bool, KvError> {
        self.check_open()?;
        check_key(&args.key)?;
        let current = self.current(&args.key).await?;
        let holds =
            current.is_some() && compares_hold(current.as_ref(), args.compare_value.as_deref(), args.compare_revision);
        if !holds {
            return Ok(false);
        }
        let write = DeleteArgs { key: args.key.clone(), ..Default::default() };
        self.view.insert(args.key.clone(), None);
        self.writes.insert(args.key, WriteOp::Delete(write));
        Ok(true)
    }

    /// Buffers an expiry change of a live key (`ttl_ms` from commit, 0 = none).
    pub async fn extend(&mut self, key: &str, ttl_ms: u64) -> Result<bool, KvError> {
        self.check_open()?;
        check_key(key)?;
        let Some(mut kv) = self.current(key).await? else {
            return Ok(false);
        };
        kv.expires_at_ms = expiry(self.snapshot_ts, ttl_ms);
        let write = match self.writes.remove(key) {
            // A key set in this transaction is set with the new expiry.
            Some(WriteOp::Set(set)) => WriteOp::Set(SetArgs { ttl_ms, ..set }),
            _ => WriteOp::Extend { key: key.to_owned(), ttl_ms },
        };
        self.view.insert(key.to_owned(), Some(kv));
        self.writes.insert(key.to_owned(), write);
        Ok(true)
    }

    /// A lock's state in the transaction's view (read from its partition's leader the
    /// first time; validated unchanged at commit).
    async fn lock_record(&mut self, name: &str) -> Result<&mut TxnRecord, KvError> {
        let key = (RecordKind::Lock, name.to_owned());
        if !self.records.contains_key(&key) {
            let request = PartitionRequest::GetLock {
                name: name.to_owned(),
                durability: Durability::Persistent,
                consistency: Consistency::Linearizable,
            };
            let kernel = &self.engine.kernel;
            let seen = match kernel.execute(kernel.partition_of_name(name), request).await?.value {
                PartitionResponse::Lock(reply) => LockRecord { holder: reply.holder, last_token: reply.last_token },
                other => return Err(KvError::Internal(format!("unexpected answer to a lock read: {other:?}"))),
            };
            self.records.insert(key.clone(), TxnRecord::Lock { name: name.to_owned(), seen, write: None });
        }
        self.records.get_mut(&key).ok_or_else(|| KvError::Internal("lock record vanished".into()))
    }

    /// A lock's holder in the transaction's view.
    pub async fn get_lock(&mut self, name: &str) -> Result<LockReply, KvError> {
        self.check_open()?;
        let ts = self.snapshot_ts;
        match self.lock_record(name).await? {
            TxnRecord::Lock { seen, write, .. } => Ok(write.as_ref().unwrap_or(seen).reply(false, ts)),
            TxnRecord::Sequence { .. } => Err(KvError::Internal("a sequence filed as a lock".into())),
        }
    }

    /// A lock operation in the transaction's view, judged at the snapshot time; it takes
    /// effect with the transaction's commit. Persistent locks only.
    pub async fn lock(&mut self, op: LockOp) -> Result<LockReply, KvError> {
        self.check_open()?;
        let ts = self.snapshot_ts;
        match self.lock_record(op.name()).await? {
            TxnRecord::Lock { seen, write, .. } => {
                let current = write.as_ref().unwrap_or(seen);
                let (next, reply) = lock_step(current, &op, ts);
                let reply = reply?;
                if reply.done {
                    *write = Some(next);
                }
                Ok(reply)
            }
            TxnRecord::Sequence { .. } => Err(KvError::Internal("a sequence filed as a lock".into())),
        }
    }

    /// A sequence's state in the transaction's view (read the first time, validated
    /// unchanged at commit).
    async fn sequence_record(&mut self, name: &str) -> Result<&mut TxnRecord, KvError> {
        let key = (RecordKind::Sequence, name.to_owned());
        if !self.records.contains_key(&key) {
            let request =
                PartitionRequest::GetSequence { name: name.to_owned(), consistency: Consistency::Linearizable };
            let kernel = &self.engine.kernel;
            let seen = match kernel.execute(kernel.partition_of_name(name), request).await?.value {
                PartitionResponse::Sequence(SequenceReply::Info(info)) => info,
                other => return Err(KvError::Internal(format!("unexpected answer to a sequence read: {other:?}"))),
            };
            self.records.insert(key.clone(), TxnRecord::Sequence { name: name.to_owned(), seen, write: None });
        }
        self.records.get_mut(&key).ok_or_else(|| KvError::Internal("sequence record vanished".into()))
    }

    /// A sequence's state in the transaction's view; `None` when it does not exist.
    pub async fn get_sequence(&mut self, name: &str) -> Result<Option<SequenceInfo>, KvError> {
        self.check_open()?;
        match self.sequence_record(name).await? {
            TxnRecord::Sequence { seen, write, .. } => Ok(write.as_ref().unwrap_or(seen).clone()),
            TxnRecord::Lock { .. } => Err(KvError::Internal("a lock filed as a sequence".into())),
        }
    }

    /// A sequence operation in the transaction's view; it takes effect with the commit.
    /// Idempotency keys are refused (the transaction commits once or not at all).
    pub async fn sequence(&mut self, op: SequenceOp) -> Result<SequenceReply, KvError> {
        self.check_open()?;
        match self.sequence_record(op.name()).await? {
            TxnRecord::Sequence { seen, write, .. } => {
                let current = write.as_ref().unwrap_or(seen).clone();
                let (next, reply) = sequence_step(current.as_ref(), &op)?;
                if next != current {
                    *write = Some(next);
                }
                Ok(reply)
            }
            TxnRecord::Lock { .. } => Err(KvError::Internal("a lock filed as a sequence".into())),
        }
    }

    /// What the transaction did, per partition.
    fn parts(&mut self) -> BTreeMap<PartitionId, TxnPart> {
        let kernel = &self.engine.kernel;
        let mut parts: BTreeMap<PartitionId, TxnPart> = BTreeMap::new();
        for key in &self.reads {
            if !self.writes.contains_key(key) {
                parts.entry(kernel.partition_of(key)).or_default().reads.push(key.clone());
            }
        }
        for (key, op) in std::mem::take(&mut self.writes) {
            parts.entry(kernel.partition_of(&key)).or_default().writes.push(op);
        }
        for (_, record) in std::mem::take(&mut self.records) {
            parts.entry(kernel.partition_of_name(record.name())).or_default().records.push(record);
        }
        if !self.scans.is_empty() {
            // A scanned range spans every partition: a key inserted into it anywhere
            // is a phantom.
            for p in 0..kernel.partitions() {
                parts.entry(p).or_default().scans.extend(self.scans.iter().cloned());
            }
        }
        parts
    }

    /// Validates and commits atomically: the commit timestamp, `None` when nothing was
    /// written, `KvError::Conflict` when validation failed (nothing committed).
    pub async fn commit(mut self) -> Result<Option<u64>, KvError> {
        self.check_open()?;
        let read_only = !self.has_writes();
        if read_only && self.snapshot_complete {
            // Every read came from one snapshot taken after everything acknowledged
            // before the transaction began: it serializes at its snapshot.
            return Ok(None);
        }
        // Without writes, the snapshot may predate a commit acknowledged before `begin`
        // (a node whose clock was not read led it): the reads stand only if nothing they
        // saw has changed since, and the transaction then serializes at this commit of
        // nothing.
        let mut parts = self.parts();
        if parts.is_empty() {
            // It read nothing: nothing to be stale.
            return Ok(None);
        }
        let kernel = self.engine.kernel.clone();
        let committed = if parts.len() == 1
            && let Some((p, part)) = parts.pop_first()
        {
            let request = PartitionRequest::TxnCommit { txn_id: self.id.clone(), snapshot_ts: self.snapshot_ts, part };
            match kernel.execute(p, request).await?.value {
                PartitionResponse::Txn(TxnReply::Committed { commit_ts }) => Some(commit_ts),
                other => return Err(KvError::Internal(format!("unexpected answer to a commit: {other:?}"))),
            }
        } else {
            self.two_phase(parts).await?
        };
        Ok(committed.filter(|_| !read_only))
    }

    async fn two_phase(self, parts: BTreeMap<PartitionId, TxnPart>) -> Result<Option<u64>, KvError> {
        let kernel = self.engine.kernel.clone();
        let participants: Vec<PartitionId> = parts.keys().copied().collect();
        let record_partition = participants[0];
        let timeout_ms = u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX);
        let prepares = parts.into_iter().map(|(p, part)| {
            let request = PartitionRequest::TxnPrepare {
                txn_id: self.id.clone(),
                snapshot_ts: self.snapshot_ts,
                part,
                record_partition,
                timeout_ms,
            };
            let kernel = kernel.clone();
            async move { kernel.execute(p, request).await }
        });
        let mut decision = TxnDecision::Commit { commit_ts: self.snapshot_ts + 1 };
        let mut refusal = None;
        for outcome in futures::future::join_all(prepares).await {
            match outcome.map(|served| served.value) {
                Ok(PartitionResponse::Txn(TxnReply::Prepared { prepare_ts })) => {
                    if let TxnDecision::Commit { commit_ts } = &mut decision {
                        *commit_ts = (*commit_ts).max(prepare_ts);
                    }
                }
                Ok(other) => {
                    refusal.get_or_insert(KvError::Internal(format!("unexpected answer to a prepare: {other:?}")));
                    decision = TxnDecision::Abort;
                }
                Err(e) => {
                    refusal.get_or_insert(e);
                    decision = TxnDecision::Abort;
                }
            }
        }
        if self.engine.config.crash_after_prepare && decision != TxnDecision::Abort {
            tracing::error!(txn = %self.id, "test hook crash-after-prepare: aborting the process");
            std::process::abort();
        }
        let decided = self.decide(record_partition, decision).await?;
        let resolves = participants.iter().map(|&p| {
            let request = PartitionRequest::TxnResolve { txn_id: self.id.clone(), decision: decided };
            let kernel = kernel.clone();
            async move { (p, kernel.execute(p, request).await) }
        });
        for (p, outcome) in futures::future::join_all(resolves).await {
            if let Err(e) = outcome {
                // Decided: whoever meets the intents, or the leader's sweep, finishes it.
                tracing::debug!(txn = %self.id, partition = p, "resolve left to recovery: {e}");
            }
        }
        match decided {
            TxnDecision::Commit { commit_ts } => Ok(Some(commit_ts)),
            TxnDecision::Abort => Err(match refusal {
                Some(e @ KvError::Conflict(_)) => e,
                Some(e) => KvError::Conflict(format!("transaction {} aborted: a participant failed: {e}", self.id)),
                None => KvError::Conflict(format!(
                    "transaction {} was aborted by recovery after passing its timeout",
                    self.id
                )),
            }),
        }
    }

    /// Writes `decision` into the record (retrying while the outcome is unknown) and
    /// answers the decision the record holds.
    async fn decide(&self, record_partition: PartitionId, decision: TxnDecision) -> Result<TxnDecision, KvError> {
        let kernel = &self.engine.kernel;
        let give_up = Instant::now() + self.timeout;
        loop {
            let request = PartitionRequest::TxnDecide { txn_id: self.id.clone(), decision };
            match kernel.execute(record_partition, request).await {
                Ok(served) => {
                    return match served.value {
                        PartitionResponse::Txn(TxnReply::Decided(decided)) => Ok(decided),
                        other => Err(KvError::Internal(format!("unexpected answer to a decision: {other:?}"))),
                    };
                }
                Err(e) if e.is_retryable() && Instant::now() < give_up => {
                    tracing::debug!(txn = %self.id, "writing the decision again: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => {
                    return Err(KvError::Timeout(format!(
                        "transaction {}: the decision could not be written ({e}); its outcome is decided by \
                         recovery once its timeout passes",
                        self.id
                    )));
                }
            }
        }
    }

    /// Discards the buffered writes. Nothing is held before commit, so nothing else is
    /// needed.
    pub async fn rollback(self) {}
}

/// Whether compare-value / compare-revision hold against the current view.
fn compares_hold(current: Option<&KeyValue>, value: Option<&[u8]>, revision: Option<i64>) -> bool {
    let value_ok = value.is_none_or(|expected| current.is_some_and(|kv| kv.value == expected));
    let revision_ok = revision.is_none_or(|expected| current.is_some_and(|kv| kv.revision == expected));
    value_ok && revision_ok
}

/// The revision the transaction's write will probably get (exact unless the key's
/// newest version is a tombstone or expired, which the view cannot see).
fn next_revision(current: Option<&KeyValue>) -> i64 {
    current.map_or(0, |kv| kv.revision + 1)
}

/// An expiry as the view shows it (the commit fixes the real one from its timestamp).
fn expiry(snapshot_ts: u64, ttl_ms: u64) -> u64 {
    if ttl_ms == 0 { 0 } else { physical_ms(snapshot_ts).saturating_add(ttl_ms) }
}

#[cfg(test)]
mod tests;
