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
//! first flushes the state file in a batch of its own, then purges.
//!
//! Reads never come here: they open their own redb read transaction.
//!
//! A deterministic simulation runs the node on a simulated disk ([`DataFiles::Simulated`])
//! and without the thread ([`StorageMode::Inline`]): each job commits in the caller, since
//! a real thread would race the simulator's clock.

use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread;

use redb::{Database, Durability, ReadableDatabase, ReadableTable, Table, WriteTransaction};

use crate::error::StoreError;
use crate::schema::{
    FINISHED, FORMAT, FORMAT_VERSION, INTENTS, LOCK_OPERATIONS, LOCKS, META, OPERATIONS, PREPARED, SEQUENCE_KEYS,
    SEQUENCES, TXN_RECORDS, VERSIONS,
};
use crate::sim_disk::SimDisk;
use crate::wal::{LogBatch, LogDir, Wal};

/// Most jobs folded into one write transaction.
const BATCH_JOBS_MAX: usize = 4096;

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

/// The state file's tables in one batch's write transaction, opened once per batch.
pub(crate) struct Tables<'t> {
    pub(crate) meta: Table<'t, (u32, &'static str), &'static [u8]>,
    pub(crate) versions: Table<'t, (u32, &'static str, u64), &'static [u8]>,
    pub(crate) operations: Table<'t, (u32, &'static str), &'static [u8]>,
    pub(crate) locks: Table<'t, (u32, &'static str), &'static [u8]>,
    pub(crate) lock_operations: Table<'t, (u32, &'static str), &'static [u8]>,
    pub(crate) sequences: Table<'t, (u32, &'static str), &'static [u8]>,
    pub(crate) sequence_keys: Table<'t, (u32, &'static str, &'static str), &'static [u8]>,
    pub(crate) intents: Table<'t, (u32, &'static str, &'static str), &'static [u8]>,
    pub(crate) prepared: Table<'t, (u32, &'static str), &'static [u8]>,
    pub(crate) finished: Table<'t, (u32, &'static str), &'static [u8]>,
    pub(crate) txn_records: Table<'t, (u32, &'static str), &'static [u8]>,
}

impl<'t> Tables<'t> {
    fn open(txn: &'t WriteTransaction) -> Result<Self, StoreError> {
        Ok(Self {
            meta: txn.open_table(META)?,
            versions: txn.open_table(VERSIONS)?,
            operations: txn.open_table(OPERATIONS)?,
            locks: txn.open_table(LOCKS)?,
            lock_operations: txn.open_table(LOCK_OPERATIONS)?,
            sequences: txn.open_table(SEQUENCES)?,
            sequence_keys: txn.open_table(SEQUENCE_KEYS)?,
            intents: txn.open_table(INTENTS)?,
            prepared: txn.open_table(PREPARED)?,
            finished: txn.open_table(FINISHED)?,
            txn_records: txn.open_table(TXN_RECORDS)?,
        })
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
    jobs: Option<mpsc::Sender<Job>>,
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
        let state = match files {
            DataFiles::Directory => {
                std::fs::create_dir_all(dir)?;
                Database::create(dir.join(STATE_FILE))?
            }
            DataFiles::Simulated(disk) => redb::Builder::new().create_with_backend(disk.backend(STATE_FILE))?,
        };
        // The state file first: its format check refuses a directory of an older build.
        check_format(&state)?;
        let log = Wal::open(match files {
            DataFiles::Directory => LogDir::Directory(dir.to_path_buf()),
            DataFiles::Simulated(disk) => LogDir::Simulated(disk.clone()),
        })?;
        let (log, state) = (Arc::new(log), Arc::new(state));
        let jobs = match mode {
            StorageMode::Inline => None,
            StorageMode::Thread => {
                let (jobs, queue) = mpsc::channel::<Job>();
                let (thread_log, thread_state) = (log.clone(), state.clone());
                thread::Builder::new()
                    .name("kahuna-storage".into())
                    .spawn(move || run(&thread_log, &thread_state, &queue))?;
                Some(jobs)
            }
        };
        Ok(Arc::new(Self { log, state, jobs }))
    }

    /// The state file, for read transactions.
    pub(crate) fn db(&self) -> &Database {
        &self.state
    }

    /// The Raft log, for reads.
    pub(crate) fn log(&self) -> &Wal {
        &self.log
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
            None => run_batch(&self.log, &self.state, vec![job]),
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
    Tables::open(&txn)?;
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

fn run(log: &Wal, state: &Database, queue: &mpsc::Receiver<Job>) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < BATCH_JOBS_MAX {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if let Err(e) = run_batch(log, state, batch) {
            // The jobs' completions were dropped: their callers see the thread stop.
            tracing::error!("storage batch failed: {e}");
        }
    }
    tracing::debug!("storage thread stopped");
}

fn begin(db: &Database, durable: bool) -> Result<WriteTransaction, StoreError> {
    let mut txn = db.begin_write()?;
    txn.set_durability(if durable { Durability::Immediate } else { Durability::None })
        .map_err(|e| StoreError::Corrupt { table: "durability", reason: e.to_string() })?;
    Ok(txn)
}

fn run_batch(log: &Wal, state: &Database, batch: Vec<Job>) -> Result<(), StoreError> {
    let (mut log_work, mut state_work) = (Vec::new(), Vec::new());
    let (mut log_durable, mut state_durable) = (false, false);
    for job in batch {
        log_durable |= job.flush == Flush::Log;
        state_durable |= job.flush == Flush::State;
        match job.work {
            Work::Log(work) => log_work.push(work),
            Work::State(work) => state_work.push(work),
        }
    }
    let (writes_log, writes_state) = (!log_work.is_empty(), !state_work.is_empty());
    let state_txn = writes_state.then(|| begin(state, state_durable)).transpose()?;
    let mut completions = Vec::with_capacity(log_work.len() + state_work.len());
    let mut log_batch = LogBatch::default();
    completions.extend(log_work.into_iter().map(|work| work(&mut log_batch)));
    if let Some(txn) = &state_txn {
        let mut tables = Tables::open(txn)?;
        completions.extend(state_work.into_iter().map(|work| work(&mut tables)));
    }
    let started = std::time::Instant::now();
    // Log first: state on disk must never hold an entry the log on disk lacks.
    let outcome = match writes_log {
        true => log.commit(log_batch, log_durable),
        false => Ok(()),
    }
    .and_then(|()| commit(state_txn).map_err(StoreError::from))
    .map_err(|e| e.to_string());
    tracing::trace!(
        jobs = completions.len(),
        writes_log,
        writes_state,
        log_durable,
        state_durable,
        commit_us = started.elapsed().as_micros() as u64,
        "storage batch"
    );
    if let Err(e) = &outcome {
        tracing::error!("storage commit failed: {e}");
    }
    for complete in completions {
        complete(outcome.clone());
    }
    Ok(())
}

fn commit(txn: Option<WriteTransaction>) -> Result<(), redb::CommitError> {
    txn.map_or(Ok(()), WriteTransaction::commit)
}
