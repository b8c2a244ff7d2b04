//! The storage thread: the one owner of redb's write transactions.
//!
//! Work from every partition (log appends, votes, truncations, purges, applies,
//! snapshot installs) is queued here. Each job writes one of the node's two stores: log
//! jobs add records to the batch's [`LogBatch`] for the Raft log (`wal`), state jobs
//! get the state file's redb tables ([`Tables`], see `schema`). The thread drains the
//! queue into one log write and one state write transaction, commits them — the log
//! first, each fsynced when a job in the batch asks for it ([`Flush`]) — and only then
//! completes each job. That is group commit: many writers share one fsync and each
//! still waits for exactly one. A store no job of the batch writes is not touched: on a
//! busy node appends and applies often land in different batches, and a redb commit
//! costs CPU even without an fsync.
//!
//! The log file commits before the state file, so state on disk never runs ahead of
//! the log on disk: an entry is appended (and its append queued here) before it can be
//! applied. Purging the log is the other direction and is ordered by the log store: it
//! purges only entries a state sync already covers ([`Storage::sync_state`] records what
//! each one made durable), syncing first when none did.
//!
//! While nobody reads, a batch's state transaction is not committed with it. A redb
//! commit costs CPU for every table it touched and every page it dirtied, even without
//! an fsync, so the transaction stays open for the next batches (at most
//! [`STATE_BATCHES_MAX`] of them, for at most [`STATE_AGE_MAX`]) and its jobs are
//! answered at once: what they applied is in the log, and a crash replays it. Until the
//! commit, readers would not see it, so a reader first asks for it ([`Storage::read`]):
//! when work waits uncommitted, a publish job makes the thread commit before the read
//! transaction opens. That wait is what deferring costs a reader, so a batch after any
//! read commits at once, as every batch did before. Should a commit fail, work already
//! answered is lost from the state file, so from then on every job fails: the node must
//! restart and replay its log.
//!
//! Reads never come here otherwise: they open their own redb read transaction.
//!
//! A deterministic simulation runs the node on a simulated disk ([`DataFiles::Simulated`])
//! and without the thread ([`StorageMode::Inline`]): each job commits in the caller, since
//! a real thread would race the simulator's clock.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use redb::{
    Database, Durability, Key, ReadTransaction, ReadableDatabase, ReadableTable, Table, TableDefinition, Value,
    WriteTransaction,
};

use crate::error::StoreError;
use crate::schema::{
    FINISHED, FORMAT, FORMAT_VERSION, INTENTS, LOCK_OPERATIONS, LOCKS, META, OPERATIONS, PREPARED, SEQUENCE_KEYS,
    SEQUENCES, TXN_RECORDS, VERSIONS,
};
use crate::sim_disk::SimDisk;
use crate::state_machine::applied_indexes;
use crate::types::PartitionId;
use crate::version_index::VersionIndex;
use crate::wal::{LogBatch, LogDir, SEGMENT_BYTES, Wal};

/// Most jobs folded into one write transaction.
const BATCH_JOBS_MAX: usize = 4096;
/// Most batches whose state work shares one state commit.
const STATE_BATCHES_MAX: usize = 64;
/// Longest a state transaction stays open after its first batch.
const STATE_AGE_MAX: Duration = Duration::from_millis(10);

/// What a job needs fsynced before it completes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flush {
    /// Nothing: visible at once, on disk with a later flush (applies, truncations).
    Nothing,
    /// The log file (appends, votes).
    Log,
    /// The state file (before purging the log, installing a snapshot).
    State,
}

/// One of the state file's tables in a batch's write transaction, opened the first time
/// a job of the batch uses it. Opening one is a lookup in redb's table tree and each open
/// table is flushed at commit; a put uses four of the eleven (`meta`, `versions`,
/// `operations`, `intents`; `prepared` when checking scans).
pub(crate) struct LazyTable<'t, K: Key + 'static, V: Value + 'static> {
    txn: &'t WriteTransaction,
    definition: TableDefinition<'static, K, V>,
    table: Option<Table<'t, K, V>>,
}

impl<'t, K: Key + 'static, V: Value + 'static> LazyTable<'t, K, V> {
    fn new(txn: &'t WriteTransaction, definition: TableDefinition<'static, K, V>) -> Self {
        Self { txn, definition, table: None }
    }

    /// The table, opened now if no job of the batch opened it yet.
    pub(crate) fn open(&mut self) -> Result<&mut Table<'t, K, V>, StoreError> {
        let table = match self.table.take() {
            Some(table) => table,
            None => self.txn.open_table(self.definition)?,
        };
        Ok(self.table.insert(table))
    }
}

/// A table keyed by partition and name (locks, sequences, operations, ...).
pub(crate) type NamedTable<'t> = LazyTable<'t, (u32, &'static str), &'static [u8]>;

/// The state file's tables in one batch's write transaction, and the index of the
/// `versions` table's keys.
pub(crate) struct Tables<'t> {
    pub(crate) index: &'t VersionIndex,
    pub(crate) meta: NamedTable<'t>,
    pub(crate) versions: LazyTable<'t, (u32, u64, &'static str), &'static [u8]>,
    pub(crate) operations: NamedTable<'t>,
    pub(crate) locks: NamedTable<'t>,
    pub(crate) lock_operations: NamedTable<'t>,
    pub(crate) sequences: NamedTable<'t>,
    pub(crate) sequence_keys: LazyTable<'t, (u32, &'static str, &'static str), &'static [u8]>,
    pub(crate) intents: LazyTable<'t, (u32, &'static str, &'static str), &'static [u8]>,
    pub(crate) prepared: NamedTable<'t>,
    pub(crate) finished: NamedTable<'t>,
    pub(crate) txn_records: NamedTable<'t>,
}

impl<'t> Tables<'t> {
    fn new(txn: &'t WriteTransaction, index: &'t VersionIndex) -> Self {
        Self {
            index,
            meta: LazyTable::new(txn, META),
            versions: LazyTable::new(txn, VERSIONS),
            operations: LazyTable::new(txn, OPERATIONS),
            locks: LazyTable::new(txn, LOCKS),
            lock_operations: LazyTable::new(txn, LOCK_OPERATIONS),
            sequences: LazyTable::new(txn, SEQUENCES),
            sequence_keys: LazyTable::new(txn, SEQUENCE_KEYS),
            intents: LazyTable::new(txn, INTENTS),
            prepared: LazyTable::new(txn, PREPARED),
            finished: LazyTable::new(txn, FINISHED),
            txn_records: LazyTable::new(txn, TXN_RECORDS),
        }
    }

    /// Opens every table, creating those the file lacks.
    fn create_all(txn: &'t WriteTransaction) -> Result<(), StoreError> {
        // Opening tables reads no index: an empty one serves.
        let index = VersionIndex::default();
        let mut t = Tables::new(txn, &index);
        t.meta.open()?;
        t.versions.open()?;
        t.operations.open()?;
        t.locks.open()?;
        t.lock_operations.open()?;
        t.sequences.open()?;
        t.sequence_keys.open()?;
        t.intents.open()?;
        t.prepared.open()?;
        t.finished.open()?;
        t.txn_records.open()?;
        Ok(())
    }
}

/// Called once the batch holding a job committed (or failed to).
pub(crate) type Completion = Box<dyn FnOnce(Result<(), String>) + Send>;
/// A log job's records for the batch's log write; returns what to do after the commit.
pub(crate) type LogWork = Box<dyn FnOnce(&mut LogBatch) -> Completion + Send>;
/// A state job's work inside the batch's state transaction.
type StateWork = Box<dyn for<'t> FnOnce(&mut Tables<'t>) -> Completion + Send>;

/// A job's work, on the one file it writes.
enum Work {
    Log(LogWork),
    State(StateWork),
    /// Nothing to write: commit the state transaction left open, so readers see it.
    Publish(Completion),
}

struct Job {
    flush: Flush,
    work: Work,
}

/// The state file's name.
const STATE_FILE: &str = "state.redb";

/// Where a node's two data files live.
#[derive(Debug, Clone, Default)]
pub enum DataFiles {
    /// The Raft log's segments and `state.redb` in the data directory.
    #[default]
    Directory,
    /// The same files on a simulated disk (deterministic simulation only).
    Simulated(SimDisk),
}

/// Who commits the storage jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StorageMode {
    /// The storage thread, folding queued jobs into one commit (group commit).
    #[default]
    Thread,
    /// The caller, one commit per job, before `submit` returns. For a deterministic
    /// simulation on one thread: no real thread races simulated time. Blocks the caller
    /// for the commit, so it has no place on a real runtime.
    Inline,
}

/// Handle to a node's Raft log and state file, and whoever commits to them.
pub(crate) struct Storage {
    log: Arc<Wal>,
    state: Arc<Database>,
    /// Which timestamps each key of the `versions` table has.
    index: Arc<VersionIndex>,
    jobs: Option<mpsc::Sender<Job>>,
    /// Whether the storage thread holds state work answered but not committed.
    unpublished: Arc<AtomicBool>,
    /// Whether a reader came since the storage thread's last batch.
    read_lately: Arc<AtomicBool>,
    /// Per partition, an applied index the state file holds durably (the latest a state
    /// sync recorded; none since the node started: unknown).
    durable_applied: Mutex<HashMap<PartitionId, u64>>,
}

impl Storage {
    /// Opens (or creates) the data files in `dir` and starts the storage thread.
    #[cfg(test)]
    pub(crate) fn open(dir: &Path) -> Result<Arc<Self>, StoreError> {
        Self::open_with(dir, &DataFiles::Directory, StorageMode::Thread)
    }

    /// Opens (or creates) the data files in `dir` or on a simulated disk, committed by the
    /// storage thread or inline.
    pub(crate) fn open_with(dir: &Path, files: &DataFiles, mode: StorageMode) -> Result<Arc<Self>, StoreError> {
        Self::open_segments(dir, files, mode, SEGMENT_BYTES, STATE_AGE_MAX)
    }

    fn open_segments(
        dir: &Path,
        files: &DataFiles,
        mode: StorageMode,
        segment_bytes: u64,
        state_age_max: Duration,
    ) -> Result<Arc<Self>, StoreError> {
        let state = match files {
            DataFiles::Directory => {
                std::fs::create_dir_all(dir)?;
                Database::create(dir.join(STATE_FILE))?
            }
            DataFiles::Simulated(disk) => redb::Builder::new().create_with_backend(disk.backend(STATE_FILE))?,
        };
        // The state file first: its format check refuses a directory of an older build.
        check_format(&state)?;
        let index = Arc::new(VersionIndex::load(&state)?);
        let log = Wal::open_with(
            match files {
                DataFiles::Directory => LogDir::Directory(dir.to_path_buf()),
                DataFiles::Simulated(disk) => LogDir::Simulated(disk.clone()),
            },
            segment_bytes,
        )?;
        let (log, state) = (Arc::new(log), Arc::new(state));
        let (unpublished, read_lately) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        let jobs = match mode {
            StorageMode::Inline => None,
            StorageMode::Thread => {
                let (jobs, queue) = mpsc::channel::<Job>();
                let carried = Carried {
                    unpublished: unpublished.clone(),
                    read_lately: read_lately.clone(),
                    age_max: state_age_max,
                    ..Carried::immediate()
                };
                let (thread_log, thread_state, thread_index) = (log.clone(), state.clone(), index.clone());
                thread::Builder::new()
                    .name("kahuna-storage".into())
                    .spawn(move || run(&thread_log, &thread_state, &thread_index, &queue, carried))?;
                Some(jobs)
            }
        };
        Ok(Arc::new(Self { log, state, index, jobs, unpublished, read_lately, durable_applied: Mutex::default() }))
    }

    /// The state file, for reads that need no applied work (opening the node, tests).
    pub(crate) fn db(&self) -> &Database {
        &self.state
    }

    /// A read transaction of the state file that holds every job answered before the
    /// call: state work left uncommitted is committed first.
    pub(crate) async fn read(&self) -> Result<ReadTransaction, StoreError> {
        self.read_lately.store(true, Ordering::Relaxed);
        if self.unpublished.load(Ordering::SeqCst) {
            let (tx, rx) = tokio::sync::oneshot::channel();
            self.submit(Job { flush: Flush::Nothing, work: Work::Publish(answer(Ok(()), tx)) })?;
            rx.await.map_err(|_| StoreError::Stopped)??;
        }
        Ok(self.state.begin_read()?)
    }

    /// Runs `f`, long read-only work such as a snapshot build, where it does not hold up
    /// the node's async workers (two on these machines: one 0.5 s snapshot build on each
    /// stalled every request of the node): on a blocking thread, or in place when jobs
    /// commit inline (a simulation, where no real thread may race its clock).
    pub(crate) async fn off_runtime<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T, StoreError> + Send + 'static,
    {
        match self.jobs {
            None => f(),
            Some(_) => tokio::task::spawn_blocking(f).await.map_err(|e| StoreError::Task(e.to_string()))?,
        }
    }

    /// The index of the `versions` table's keys, for reads (with [`Storage::read`]).
    pub(crate) fn index(&self) -> &VersionIndex {
        &self.index
    }

    /// The Raft log, for reads.
    pub(crate) fn log(&self) -> &Wal {
        &self.log
    }

    /// Whether a state sync already made partition `p`'s state durable through `index`.
    pub(crate) fn state_durable_through(&self, p: PartitionId, index: u64) -> bool {
        self.durable_applied.lock().unwrap_or_else(|e| e.into_inner()).get(&p).is_some_and(|&at| at >= index)
    }

    /// Makes the state file durable and records what it then holds of every partition
    /// (each one's applied index, read inside the synced batch).
    pub(crate) async fn sync_state(&self) -> Result<(), StoreError> {
        let found = self.run(Flush::State, applied_indexes).await?;
        let mut durable = self.durable_applied.lock().unwrap_or_else(|e| e.into_inner());
        for (p, index) in found {
            let at = durable.entry(p).or_insert(index);
            *at = (*at).max(index);
        }
        Ok(())
    }

    /// Queues `work` on the log; its completion runs after the batch commits.
    pub(crate) fn submit_log(&self, flush: Flush, work: LogWork) -> Result<(), StoreError> {
        debug_assert!(flush != Flush::State, "a log job cannot ask for the state file's fsync");
        self.submit(Job { flush, work: Work::Log(work) })
    }

    fn submit(&self, job: Job) -> Result<(), StoreError> {
        match &self.jobs {
            Some(jobs) => jobs.send(job).map_err(|_| StoreError::Stopped),
            // Completions run before this returns; none of them submits again.
            None => run_batch(&self.log, &self.state, &self.index, vec![job], &mut Carried::immediate()),
        }
    }

    /// Runs `f` on the state file in the next batch and returns its result once the batch
    /// committed.
    ///
    /// # Cancel safety
    /// Dropping the future does not withdraw the job: it still runs and commits.
    pub(crate) async fn run<T, F>(&self, flush: Flush, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'t> FnOnce(&mut Tables<'t>) -> Result<T, StoreError> + Send + 'static,
    {
        debug_assert!(flush != Flush::Log, "a state job cannot ask for the log file's fsync");
        let (tx, rx) = tokio::sync::oneshot::channel();
        let work: StateWork = Box::new(move |tables| answer(f(tables), tx));
        self.submit(Job { flush, work: Work::State(work) })?;
        rx.await.map_err(|_| StoreError::Stopped)?
    }

    /// As [`Storage::run`], on the log.
    pub(crate) async fn run_log<T, F>(&self, flush: Flush, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut LogBatch) -> Result<T, StoreError> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.submit_log(flush, Box::new(move |tables| answer(f(tables), tx)))?;
        rx.await.map_err(|_| StoreError::Stopped)?
    }
}

/// The completion that sends a job's `result` to its waiter once the batch committed.
fn answer<T: Send + 'static>(
    result: Result<T, StoreError>,
    tx: tokio::sync::oneshot::Sender<Result<T, StoreError>>,
) -> Completion {
    Box::new(move |commit: Result<(), String>| {
        let outcome = match (commit, result) {
            (Ok(()), r) => r,
            (Err(e), _) => Err(StoreError::Commit(e)),
        };
        let _ = tx.send(outcome);
    })
}

fn check_format(state: &Database) -> Result<(), StoreError> {
    let txn = state.begin_write()?;
    {
        let mut format = txn.open_table(FORMAT)?;
        let found = format.get("version")?.map(|v| v.value());
        match found {
            None => {
                format.insert("version", FORMAT_VERSION)?;
            }
            Some(v) if v == FORMAT_VERSION => {}
            Some(found) => return Err(StoreError::Format { found, supported: FORMAT_VERSION }),
        }
    }
    // Create every table so read transactions never meet a missing one.
    Tables::create_all(&txn)?;
    txn.commit()?;
    Ok(())
}

/// Reads and writes one `u64` setting kept in the `format` table (such as the
/// partition count fixed at cluster creation); returns the stored value.
pub(crate) fn setting_or_init(db: &Database, name: &str, value: u64) -> Result<u64, StoreError> {
    if let Some(found) = db.begin_read()?.open_table(FORMAT)?.get(name)? {
        return Ok(found.value());
    }
    let txn = db.begin_write()?;
    txn.open_table(FORMAT)?.insert(name, value)?;
    txn.commit()?;
    Ok(value)
}

/// What the storage thread carries from one batch to the next: the state transaction
/// left open, how long it may stay so, and the log batch's buffer.
struct Carried {
    /// How long state work may stay uncommitted after its batch: zero when every batch
    /// commits (inline), else [`STATE_AGE_MAX`].
    age_max: Duration,
    open: Option<OpenState>,
    /// [`Storage::unpublished`] and [`Storage::read_lately`], shared with the readers.
    unpublished: Arc<AtomicBool>,
    read_lately: Arc<AtomicBool>,
    /// Set once a commit failed with answered work in it: every later job fails so.
    failed: Option<String>,
    log_batch: LogBatch,
}

/// A state transaction holding answered work, waiting for its commit.
struct OpenState {
    txn: WriteTransaction,
    since: Instant,
    batches: usize,
}

impl Carried {
    fn immediate() -> Self {
        Self {
            age_max: Duration::ZERO,
            open: None,
            unpublished: Arc::default(),
            read_lately: Arc::default(),
            failed: None,
            log_batch: LogBatch::default(),
        }
    }

    /// How long the open transaction may still wait for its commit, if one is open.
    fn patience(&self) -> Option<Duration> {
        self.open.as_ref().map(|open| self.age_max.saturating_sub(open.since.elapsed()))
    }
}

fn run(log: &Wal, state: &Database, index: &VersionIndex, queue: &mpsc::Receiver<Job>, mut carried: Carried) {
    loop {
        let first = match carried.patience() {
            None => queue.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(wait) => queue.recv_timeout(wait),
        };
        let batch = match first {
            Ok(first) => {
                let mut batch = vec![first];
                while batch.len() < BATCH_JOBS_MAX {
                    match queue.try_recv() {
                        Ok(job) => batch.push(job),
                        Err(_) => break,
                    }
                }
                batch
            }
            // An empty batch commits the open transaction.
            Err(RecvTimeoutError::Timeout) => Vec::new(),
            Err(RecvTimeoutError::Disconnected) if carried.open.is_some() => Vec::new(),
            Err(RecvTimeoutError::Disconnected) => break,
        };
        if let Err(e) = run_batch(log, state, index, batch, &mut carried) {
            // The jobs' completions were dropped: their callers see the thread stop.
            tracing::error!("storage batch failed: {e}");
        }
    }
    tracing::debug!("storage thread stopped");
}

fn begin(db: &Database) -> Result<WriteTransaction, StoreError> {
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::None).map_err(durability_err)?;
    Ok(txn)
}

fn durability_err(e: redb::SetDurabilityError) -> StoreError {
    StoreError::Corrupt { table: "durability", reason: e.to_string() }
}

fn run_batch(
    log: &Wal,
    state: &Database,
    index: &VersionIndex,
    batch: Vec<Job>,
    carried: &mut Carried,
) -> Result<(), StoreError> {
    if let Some(failed) = &carried.failed {
        for job in batch {
            let complete = match job.work {
                Work::Log(work) => work(&mut LogBatch::default()),
                Work::State(_) => continue, // dropped: its caller sees the thread stop
                Work::Publish(complete) => complete,
            };
            complete(Err(failed.clone()));
        }
        return Ok(());
    }
    // No job: the thread was idle past the open transaction's age, or is stopping.
    let idle = batch.is_empty();
    let (mut log_work, mut state_work, mut publish) = (Vec::new(), Vec::new(), Vec::new());
    let (mut log_durable, mut state_durable) = (false, false);
    for job in batch {
        log_durable |= job.flush == Flush::Log;
        state_durable |= job.flush == Flush::State;
        match job.work {
            Work::Log(work) => log_work.push(work),
            Work::State(work) => state_work.push(work),
            Work::Publish(complete) => publish.push(complete),
        }
    }
    let (writes_log, writes_state) = (!log_work.is_empty(), !state_work.is_empty());
    let mut state_txn = match carried.open.take() {
        Some(open) => Some(open),
        None if writes_state => Some(OpenState { txn: begin(state)?, since: Instant::now(), batches: 0 }),
        None => None,
    };
    // Answered work of earlier batches that a failed commit would lose.
    let holds_answered = state_txn.as_ref().is_some_and(|open| open.batches > 0);
    let mut completions = Vec::with_capacity(log_work.len() + state_work.len());
    let mut log_batch = std::mem::take(&mut carried.log_batch);
    completions.extend(log_work.into_iter().map(|work| work(&mut log_batch)));
    // A failure fails the batch below rather than returning here, which would drop the
    // open transaction's answered work without a word.
    let mut outcome = Ok(());
    if let Some(open) = &mut state_txn {
        if state_durable {
            outcome = open.txn.set_durability(Durability::Immediate).map_err(durability_err);
        }
        let mut tables = Tables::new(&open.txn, index);
        completions.extend(state_work.into_iter().map(|work| work(&mut tables)));
        open.batches += usize::from(writes_state);
    }
    let started = Instant::now();
    // Log first: state on disk must never hold an entry the log on disk lacks.
    outcome = outcome.and_then(|()| match writes_log {
        true => log.commit(&mut log_batch, log_durable),
        false => Ok(()),
    });
    carried.log_batch = log_batch;
    let readers = carried.read_lately.swap(false, Ordering::Relaxed);
    let commit_state = state_txn.as_ref().is_some_and(|open| {
        idle || readers
            || state_durable
            || !publish.is_empty()
            || outcome.is_err()
            || open.batches >= STATE_BATCHES_MAX
            || open.since.elapsed() >= carried.age_max
    });
    match state_txn {
        Some(open) if !commit_state => carried.open = Some(open),
        // A failed log write aborts the state transaction with it.
        Some(open) => outcome = outcome.and_then(|()| open.txn.commit().map_err(StoreError::from)),
        None => {}
    }
    let outcome = outcome.map_err(|e| e.to_string());
    tracing::trace!(
        jobs = completions.len(),
        writes_log,
        writes_state,
        log_durable,
        state_durable,
        commit_state,
        commit_us = started.elapsed().as_micros() as u64,
        "storage batch"
    );
    if let Err(e) = &outcome {
        tracing::error!("storage commit failed: {e}");
        if holds_answered {
            tracing::error!("state answered as applied was not committed: the node must restart to replay its log");
            carried.failed = Some(e.clone());
        }
    }
    // Before the completions: a reader that saw one answered sees the flag set.
    carried.unpublished.store(carried.open.is_some() || carried.failed.is_some(), Ordering::SeqCst);
    for complete in completions.into_iter().chain(publish) {
        complete(outcome.clone());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::{Duration, Instant};

    use openraft::testing::log_id;

    use super::*;

    /// Storage on `disk` with its storage thread, and small log segments.
    fn threaded(disk: &SimDisk) -> Result<Arc<Storage>, StoreError> {
        deferring(disk, STATE_AGE_MAX)
    }

    /// As [`threaded`], state work left uncommitted for up to `age`.
    fn deferring(disk: &SimDisk, age: Duration) -> Result<Arc<Storage>, StoreError> {
        Storage::open_segments(Path::new("sim"), &DataFiles::Simulated(disk.clone()), StorageMode::Thread, 4096, age)
    }

    fn entry(index: u64) -> Vec<u8> {
        vec![index as u8; 100]
    }

    /// Waits until `count` says `n` jobs completed.
    fn wait_for(count: &Mutex<usize>, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while *count.lock().unwrap_or_else(|p| p.into_inner()) < n {
            assert!(Instant::now() < deadline, "storage jobs did not complete");
            thread::sleep(Duration::from_millis(1));
        }
    }

    /// A durable log job completes only once its write is synced: crashing the disk from
    /// inside the completion of the n-th job (on the storage thread, so no later batch can
    /// be written first) keeps the first n entries, across small segments.
    #[test]
    fn a_durable_log_job_completes_only_once_synced() -> Result<(), StoreError> {
        for crash_at in [1u64, 7, 40, 123, 199] {
            let disk = SimDisk::new();
            let storage = threaded(&disk)?;
            let (completed, crashed) = (Arc::new(Mutex::new(0usize)), Arc::new(Mutex::new(None)));
            for i in 1..=200u64 {
                let (completed, crashed, disk) = (completed.clone(), crashed.clone(), disk.clone());
                storage.submit_log(
                    Flush::Log,
                    Box::new(move |log| {
                        log.entry(1, i, entry(i));
                        Box::new(move |outcome| {
                            let mut crashed = crashed.lock().unwrap_or_else(|p| p.into_inner());
                            if outcome.is_ok() && crashed.is_none() && i == crash_at {
                                disk.crash();
                                *crashed = Some(i);
                            }
                            *completed.lock().unwrap_or_else(|p| p.into_inner()) += 1;
                        })
                    }),
                )?;
            }
            wait_for(&completed, 200);
            drop(storage);
            assert_eq!(*crashed.lock().unwrap_or_else(|p| p.into_inner()), Some(crash_at));
            let log = Wal::open_with(LogDir::Simulated(disk.clone()), 4096)?;
            let found = log.read(1, 1, crash_at + 1, usize::MAX)?;
            assert!(
                found == (1..=crash_at).map(entry).collect::<Vec<_>>(),
                "crash at {crash_at}: {} entries",
                found.len()
            );
        }
        Ok(())
    }

    /// Submits a log job writing with `write`; its completion counts in `completed`.
    fn submit(
        storage: &Storage,
        completed: &Arc<Mutex<usize>>,
        flush: Flush,
        write: impl FnOnce(&mut LogBatch) + Send + 'static,
    ) -> Result<(), StoreError> {
        let completed = completed.clone();
        storage.submit_log(
            flush,
            Box::new(move |log| {
                write(log);
                Box::new(move |outcome: Result<(), String>| {
                    assert_eq!(outcome, Ok(()));
                    *completed.lock().unwrap_or_else(|p| p.into_inner()) += 1;
                })
            }),
        )
    }

    /// Segments freed by a purge are deleted once a durable write made the purge safe.
    #[test]
    fn purged_segments_are_deleted() -> Result<(), StoreError> {
        let disk = SimDisk::new();
        let storage = threaded(&disk)?;
        let completed = Arc::new(Mutex::new(0usize));
        for i in 1..=300u64 {
            submit(&storage, &completed, Flush::Log, move |log| log.entry(1, i, entry(i)))?;
        }
        submit(&storage, &completed, Flush::Nothing, |log| log.purge(1, log_id(1, 1, 250)))?;
        for i in 301..=320u64 {
            submit(&storage, &completed, Flush::Log, move |log| log.entry(1, i, entry(i)))?;
        }
        wait_for(&completed, 321);
        drop(storage);
        let segments = disk.files().iter().filter(|f| f.ends_with(".wal")).count();
        assert!(segments < 5, "{segments} segments left: the purged ones were not deleted");
        disk.crash();
        let log = Wal::open_with(LogDir::Simulated(disk.clone()), 4096)?;
        assert_eq!(log.purged(1), Some(log_id(1, 1, 250)));
        assert_eq!(log.read(1, 251, 321, usize::MAX)?, (251..=320).map(entry).collect::<Vec<_>>());
        Ok(())
    }

    /// Writes `value` under `(7, name)` in the meta table, in a state job.
    async fn write_meta(storage: &Storage, name: &'static str, value: &'static [u8]) -> Result<(), StoreError> {
        storage
            .run(Flush::Nothing, move |t| {
                t.meta.open()?.insert((7, name), value)?;
                Ok(())
            })
            .await
    }

    fn meta_in(txn: &ReadTransaction, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(txn.open_table(META)?.get((7, name))?.map(|v| v.value().to_vec()))
    }

    /// A state job is answered before its transaction commits; a reader through
    /// `Storage::read` still sees it, one opening the file directly does not yet.
    #[tokio::test]
    async fn answered_state_work_is_published_before_a_read() -> Result<(), StoreError> {
        let storage = deferring(&SimDisk::new(), Duration::from_secs(3600))?;
        write_meta(&storage, "a", b"1").await?;
        assert_eq!(meta_in(&storage.db().begin_read()?, "a")?, None, "committed already");
        assert_eq!(meta_in(&storage.read().await?, "a")?, Some(b"1".to_vec()));
        assert_eq!(meta_in(&storage.db().begin_read()?, "a")?, Some(b"1".to_vec()));
        Ok(())
    }

    /// With nothing more to do, the thread commits the open transaction once it is
    /// [`STATE_AGE_MAX`] old.
    #[tokio::test]
    async fn an_idle_thread_commits_its_open_transaction() -> Result<(), StoreError> {
        let storage = threaded(&SimDisk::new())?;
        write_meta(&storage, "a", b"1").await?;
        // The flag is cleared only after the commit, so once it reads clear the row is in.
        let deadline = Instant::now() + Duration::from_secs(20);
        while storage.unpublished.load(Ordering::SeqCst) {
            assert!(Instant::now() < deadline, "the open transaction was never committed");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        assert_eq!(meta_in(&storage.db().begin_read()?, "a")?, Some(b"1".to_vec()));
        Ok(())
    }

    /// A commit that fails with answered work in it leaves the state file without that
    /// work, so every later job and read fails instead of running on.
    #[tokio::test]
    async fn a_failed_commit_of_answered_work_fails_everything_after() -> Result<(), StoreError> {
        let disk = SimDisk::new();
        let storage = deferring(&disk, Duration::from_secs(3600))?;
        write_meta(&storage, "a", b"1").await?;
        disk.crash(); // fences the open files off: every write to them fails from now on
        assert!(storage.sync_state().await.is_err(), "a durable commit on a crashed disk");
        assert!(write_meta(&storage, "b", b"2").await.is_err(), "state work after the failure");
        assert!(storage.read().await.is_err(), "a read after the failure");
        Ok(())
    }
}
