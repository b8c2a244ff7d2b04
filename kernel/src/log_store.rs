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

/// Most encoded entry bytes in one append-entries message (one larger entry still goes
/// alone). openraft asks for up to 300 entries per message and an entry may carry a
/// value of the configured limit (1 MiB by default): unbounded, a follower far behind was
/// sent one message above the 64 MiB a node message may have, refused every time, and
/// never caught up. Small, a message is also sent, written and answered well within the
/// one heartbeat interval (100 ms) openraft 0.9 waits for it.
pub(crate) const APPEND_BYTES_MAX: usize = 1024 * 1024;

/// The in-memory tail of the log: a contiguous run of the newest entries, each with its
/// encoded length (known from the append, which encodes it for the log anyway), so that
/// replication reads are bounded in bytes without encoding anything again.
#[derive(Default)]
struct Tail {
    entries: Mutex<BTreeMap<u64, (Entry, usize)>>,
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

    fn lock_tail(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, (Entry, usize)>> {
        // A panic while holding the lock leaves the map consistent (single inserts and
        // removals), so a poisoned lock is still usable.
        self.tail.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The entries in `start..end` on disk, up to `bytes_max` (see [`Wal::read`]), and
    /// their encoded bytes in total.
    ///
    /// [`Wal::read`]: crate::wal::Wal::read
    fn read_disk(&self, start: u64, end: u64, bytes_max: usize) -> Result<(Vec<Entry>, usize), StoreError> {
        let rows = self.storage.log().read(self.partition, start, end, bytes_max)?;
        let bytes = rows.iter().map(Vec::len).fold(0, usize::saturating_add);
        let entries = rows.iter().map(|row| decode(LOG_TABLE, row)).collect::<Result<_, _>>()?;
        Ok((entries, bytes))
    }

    /// The entries in `start..end`, from disk and then from the tail, stopping before the
    /// entry that would take their encoded size past `bytes_max` (the first one comes
    /// whatever its size).
    fn entries(&self, start: u64, end: u64, bytes_max: usize) -> Result<Vec<Entry>, StoreError> {
        let (tail_first, cached): (u64, Vec<(Entry, usize)>) = {
            let tail = self.lock_tail();
            let first = tail.keys().next().copied().unwrap_or(u64::MAX);
            let from = start.max(first);
            let mut bytes = 0usize;
            let cached = match from < end {
                true => tail
                    .range(from..end)
                    .take_while(|(_, (_, len))| {
                        let first = bytes == 0;
                        bytes = bytes.saturating_add(*len);
                        first || bytes <= bytes_max
                    })
                    .map(|(_, cached)| cached.clone())
                    .collect(),
                false => Vec::new(),
            };
            (first, cached)
        };
        let disk_end = end.min(tail_first);
        let (mut entries, mut bytes) = self.read_disk(start, disk_end, bytes_max)?;
        if entries.len() as u64 != disk_end.saturating_sub(start) && !entries.is_empty() {
            // The budget ran out on disk (or entries there are missing): what follows
            // would leave a gap.
            return Ok(entries);
        }
        for (entry, len) in cached {
            bytes = bytes.saturating_add(len);
            if !entries.is_empty() && bytes > bytes_max {
                break;
            }
            entries.push(entry);
        }
        Ok(entries)
    }

    fn last_on_disk(&self) -> Result<Option<LogId>, StoreError> {
        let Some(last) = self.storage.log().last_index(self.partition) else { return Ok(None) };
        Ok(self.read_disk(last, last + 1, usize::MAX)?.0.pop().map(|e| e.log_id))
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
        self.entries(start, end, usize::MAX).map_err(read_error)
    }

    /// What replication sends to a follower: at most [`APPEND_BYTES_MAX`] of entries.
    async fn limited_get_log_entries(&mut self, start: u64, end: u64) -> Result<Vec<Entry>, StorageError> {
        self.entries(start, end, APPEND_BYTES_MAX).map_err(read_error)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let purged = self.storage.log().purged(self.partition);
        let tail_last = self.lock_tail().values().next_back().map(|(e, _)| e.log_id);
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
            for (entry, (_, bytes)) in entries.into_iter().zip(&rows) {
                tail.insert(entry.log_id.index, (entry, bytes.len()));
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
        // The state file must hold what the purged entries did before they go: after a
        // crash each partition restarts from its durable applied index. A sync covers
        // every partition, so the purges of a snapshot wave after the first find their
        // entries already covered and skip theirs; each sync writes every state page
        // changed since the last one and holds the storage thread meanwhile (0.1–0.4 s
        // under load, more than 1 s for the first in a minute).
        if !self.storage.state_durable_through(p, upto) {
            self.storage.sync_state().await.map_err(io_error)?;
        }
        self.storage
            .run_log(Flush::Nothing, move |log| {
                log.purge(p, log_id);
                Ok(())
            })
            .await
            .map_err(io_error)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use openraft::storage::RaftStateMachine;
    use openraft::testing::log_id;
    use openraft::{EntryPayload, RaftLogReader};

    use super::*;
    use crate::hlc::Hlc;
    use crate::raft_types::{Command, Proposal};
    use crate::sim_disk::SimDisk;
    use crate::state_machine::StateMachine;
    use crate::storage::{DataFiles, StorageMode};
    use crate::types::{SetArgs, WriteOp};

    /// An entry setting a key to `bytes` bytes.
    fn entry(index: u64, bytes: usize) -> Entry {
        let set = SetArgs { key: format!("k{index}"), value: vec![7; bytes], ..SetArgs::default() };
        let command = Command::Write { ops: vec![WriteOp::Set(set)], operation_id: None };
        Entry { log_id: log_id(1, 1, index), payload: EntryPayload::Normal(Proposal { ts: index, command }) }
    }

    /// An entry as the tail holds it, with its encoded length.
    fn cached(entry: Entry) -> (Entry, usize) {
        let len = encode(&entry).len();
        (entry, len)
    }

    fn indexes(entries: &[Entry]) -> Vec<u64> {
        entries.iter().map(|e| e.log_id.index).collect()
    }

    /// Appends entries `from..=to` to partition `p`'s log and applies them.
    async fn append_and_apply(
        storage: &Arc<Storage>,
        machine: &mut StateMachine,
        p: PartitionId,
        from: u64,
        to: u64,
    ) -> Result<(), Box<dyn std::error::Error>> {
        let bytes: Vec<(u64, Vec<u8>)> = (from..=to).map(|i| (i, encode(&entry(i, 8)))).collect();
        storage
            .run_log(Flush::Log, move |log| {
                for (index, bytes) in bytes {
                    log.entry(p, index, bytes);
                }
                Ok(())
            })
            .await?;
        machine.apply((from..=to).map(|i| entry(i, 8))).await?;
        Ok(())
    }

    /// A purge leaves the state file durable through the purged index, syncing it only when
    /// no earlier sync covers that: after a crash a partition restarts from what the last
    /// sync held, never from before a purged entry.
    #[tokio::test]
    async fn a_purge_syncs_the_state_only_when_no_earlier_sync_covers_it() -> Result<(), Box<dyn std::error::Error>> {
        let disk = SimDisk::new();
        let open = || Storage::open_with(Path::new("sim"), &DataFiles::Simulated(disk.clone()), StorageMode::Inline);
        let hlc = Arc::new(Hlc::system());
        let applied_after_crash = |p: PartitionId| {
            disk.crash();
            let mut machine = StateMachine::new(p, open()?, hlc.clone());
            Ok::<_, StoreError>(async move { machine.applied_state().await.map(|(applied, _)| applied) })
        };

        let storage = open()?;
        let mut machines = [0, 1].map(|p| StateMachine::new(p, storage.clone(), hlc.clone()));
        append_and_apply(&storage, &mut machines[0], 0, 1, 10).await?;
        append_and_apply(&storage, &mut machines[1], 1, 1, 10).await?;
        // Partition 0's purge syncs, and the sync holds partition 1 through 10 as well.
        LogStore::new(0, storage.clone()).purge(log_id(1, 1, 5)).await?;
        append_and_apply(&storage, &mut machines[1], 1, 11, 20).await?;
        // Covered: partition 1's purge through 8 leaves 11..=20 unsynced.
        LogStore::new(1, storage.clone()).purge(log_id(1, 1, 8)).await?;
        assert_eq!(applied_after_crash(1)?.await?, Some(log_id(1, 1, 10)), "a covered purge synced");

        // Not covered: a purge past what the last sync held syncs first.
        let storage = open()?;
        let mut machine = StateMachine::new(1, storage.clone(), hlc.clone());
        append_and_apply(&storage, &mut machine, 1, 11, 20).await?;
        LogStore::new(1, storage.clone()).purge(log_id(1, 1, 15)).await?;
        assert_eq!(applied_after_crash(1)?.await?, Some(log_id(1, 1, 20)), "a purge through 15 did not sync");
        Ok(())
    }

    /// Replication reads at most `APPEND_BYTES_MAX` of entries (at least one), whether they
    /// come from disk, from the in-memory tail or from both; other reads get the range.
    #[tokio::test]
    async fn replication_reads_are_bounded_in_bytes() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let storage = Storage::open(dir.path())?;
        let mut store = LogStore::new(0, storage.clone());
        let quarter = APPEND_BYTES_MAX / 4;
        // Entries 1..=6 on disk only, 7..=12 in the tail only; a quarter of the budget each.
        let on_disk: Vec<(u64, Vec<u8>)> = (1..=6).map(|i| (i, encode(&entry(i, quarter)))).collect();
        storage
            .run_log(Flush::Log, move |log| {
                for (index, bytes) in on_disk {
                    log.entry(0, index, bytes);
                }
                Ok(())
            })
            .await?;
        store.lock_tail().extend((7..=12).map(|i| (i, cached(entry(i, quarter)))));

        let limited = |store: &mut LogStore, start, end| {
            let mut store = store.clone();
            async move { store.limited_get_log_entries(start, end).await.map(|e| indexes(&e)) }
        };
        // Four entries each a little above a quarter: three fit.
        assert_eq!(limited(&mut store, 1, 13).await?, vec![1, 2, 3], "from disk");
        assert_eq!(limited(&mut store, 7, 13).await?, vec![7, 8, 9], "from the tail");
        assert_eq!(limited(&mut store, 5, 13).await?, vec![5, 6, 7], "across both");
        assert_eq!(limited(&mut store, 12, 13).await?, vec![12]);
        assert_eq!(indexes(&store.try_get_log_entries(1..13).await?), (1..=12).collect::<Vec<_>>());

        // One entry above the budget still goes, alone.
        store.lock_tail().insert(13, cached(entry(13, 2 * APPEND_BYTES_MAX)));
        store.lock_tail().insert(14, cached(entry(14, 1)));
        assert_eq!(limited(&mut store, 13, 15).await?, vec![13]);
        assert_eq!(limited(&mut store, 14, 15).await?, vec![14]);
        Ok(())
    }
}
