//! One partition's Raft log and vote, in the node's log (`wal`), written by the shared
//! storage thread.
//!
//! Appended entries go into an in-memory tail first, so they are readable at once
//! (openraft requires that when `append` returns) and replication can start while the
//! fsync is still running. The tail is trimmed only of entries already on disk.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{LogState, OptionalSend, RaftLogReader, StorageIOError, Vote};

use crate::error::StoreError;
use crate::raft_types::{Entry, LogId, StorageError, TypeConfig};
use crate::schema::{decode, encode};
use crate::storage::{Flush, Storage};
use crate::types::PartitionId;

/// Entries kept in memory beyond those needed; older flushed ones are read from disk.
const LOG_TAIL_ENTRIES_MAX: usize = 2048;

/// The in-memory tail of the log: a contiguous run of the newest entries.
#[derive(Default)]
struct Tail {
    entries: Mutex<BTreeMap<u64, Entry>>,
    /// Highest index known to be written to the log (synced or not).
    flushed: AtomicU64,
}

/// A partition's log storage; clones share the same tail.
#[derive(Clone)]
pub(crate) struct LogStore {
    partition: PartitionId,
    storage: Arc<Storage>,
    tail: Arc<Tail>,
}

pub(crate) fn io_error<E: std::error::Error + 'static>(e: E) -> StorageError {
    StorageIOError::write(&e).into()
}

fn read_error(e: StoreError) -> StorageError {
    StorageIOError::read(&e).into()
}

impl LogStore {
    pub(crate) fn new(partition: PartitionId, storage: Arc<Storage>) -> Self {
        Self { partition, storage, tail: Arc::default() }
    }

    fn lock_tail(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Entry>> {
        // A panic while holding the lock leaves the map consistent (single inserts and
        // removals), so a poisoned lock is still usable.
        self.tail.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn read_disk(&self, start: u64, end: u64) -> Result<Vec<Entry>, StoreError> {
        let rows = self.storage.log().read(self.partition, start, end)?;
        rows.iter().map(|bytes| decode(LOG_TABLE, bytes)).collect()
    }

    fn last_on_disk(&self) -> Result<Option<LogId>, StoreError> {
        let Some(last) = self.storage.log().last_index(self.partition) else { return Ok(None) };
        Ok(self.read_disk(last, last + 1)?.pop().map(|e| e.log_id))
    }
}

/// Names the log in decoding errors.
const LOG_TABLE: &str = "raft log";

fn bounds<RB: RangeBounds<u64>>(range: &RB) -> (u64, u64) {
    let start = match range.start_bound() {
        Bound::Included(s) => *s,
        Bound::Excluded(s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(e) => e.saturating_add(1),
        Bound::Excluded(e) => *e,
        Bound::Unbounded => u64::MAX,
    };
    (start, end)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let (start, end) = bounds(&range);
        let (tail_first, cached): (u64, Vec<Entry>) = {
            let tail = self.lock_tail();
            let first = tail.keys().next().copied().unwrap_or(u64::MAX);
            let from = start.max(first);
            let cached = if from < end { tail.range(from..end).map(|(_, e)| e.clone()).collect() } else { Vec::new() };
            (first, cached)
        };
        let mut entries = self.read_disk(start, end.min(tail_first)).map_err(read_error)?;
        entries.extend(cached);
        Ok(entries)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let purged = self.storage.log().purged(self.partition);
        let tail_last = self.lock_tail().values().next_back().map(|e| e.log_id);
        let last = match tail_last {
            Some(id) => Some(id),
            None => self.last_on_disk().map_err(read_error)?,
        };
        Ok(LogState { last_purged_log_id: purged, last_log_id: last.or(purged) })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError> {
        let (p, vote) = (self.partition, *vote);
        self.storage
            .run_log(Flush::Log, move |log| {
                log.vote(p, vote);
                Ok(())
            })
            .await
            .map_err(io_error)
    }

    /// The vote as saved, but never committed: openraft reads the vote only when the
    /// partition starts, and restores a node whose committed vote names itself as leader
    /// of that term at once. Its ephemeral state (keys, and locks whose fencing tokens
    /// carry the term) died with the process, so a leader of the same term would hand out
    /// ephemeral tokens again from the bottom of the term's range (the simulation's seed
    /// 12: token `1 << 32 | 1` granted twice). Uncommitted, the vote still binds the node
    /// to its choice in that term, and any leadership after a restart is a new term.
    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError> {
        let vote = self.storage.log().vote(self.partition);
        Ok(vote.map(|v| Vote { committed: false, ..v }))
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let Some(last) = entries.last().map(|e| e.log_id.index) else {
            callback.log_io_completed(Ok(()));
            return Ok(());
        };
        let rows: Vec<(u64, Vec<u8>)> = entries.iter().map(|e| (e.log_id.index, encode(e))).collect();
        {
            let mut tail = self.lock_tail();
            for entry in entries {
                tail.insert(entry.log_id.index, entry);
            }
            let flushed = self.tail.flushed.load(Ordering::Acquire);
            while tail.len() > LOG_TAIL_ENTRIES_MAX {
                match tail.first_key_value() {
                    Some((first, _)) if *first <= flushed => tail.pop_first(),
                    _ => break,
                };
            }
        }
        let (p, tail) = (self.partition, self.tail.clone());
        self.storage
            .submit_log(
                Flush::Log,
                Box::new(move |log| {
                    for (index, bytes) in rows {
                        log.entry(p, index, bytes);
                    }
                    Box::new(move |commit: Result<(), String>| {
                        let outcome = commit.map(|()| {
                            tail.flushed.fetch_max(last, Ordering::AcqRel);
                        });
                        callback.log_io_completed(outcome.map_err(std::io::Error::other));
                    })
                }),
            )
            .map_err(io_error)
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let from = log_id.index;
        {
            let mut tail = self.lock_tail();
            tail.split_off(&from);
            self.tail.flushed.fetch_min(from.saturating_sub(1), Ordering::AcqRel);
        }
        let p = self.partition;
        self.storage
            .run_log(Flush::Nothing, move |log| {
                log.truncate(p, from);
                Ok(())
            })
            .await
            .map_err(io_error)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let upto = log_id.index;
        {
            let mut tail = self.lock_tail();
            let keep = tail.split_off(&(upto + 1));
            *tail = keep;
        }
        let p = self.partition;
        // Make the state file durable first, in a batch of its own: the purged entries
        // must never be needed to rebuild state after a crash.
        self.storage.run(Flush::State, |_| Ok(())).await.map_err(io_error)?;
        self.storage
            .run_log(Flush::Nothing, move |log| {
                log.purge(p, log_id);
                Ok(())
            })
            .await
            .map_err(io_error)
    }
}
