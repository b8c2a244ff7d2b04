//! The Raft log of every partition of a node, in append-only segment files.
//!
//! A batch of the storage thread becomes one write at the end of the newest segment,
//! then one `fdatasync` when a job asked for it: a durable append costs about what the
//! disk's fsync costs. (A redb commit of the same entries cost three times as much: it
//! writes B-tree pages and a header, and syncs twice.)
//!
//! What is on disk: segments `raft-log-NNNNNNNNNN.wal`, numbered upwards, each a run of
//! checksummed records (see `record`): entries, truncations, purges and votes of all
//! partitions, interleaved in the order they were written. Each segment opens with a
//! header restating every partition's vote and purge point. A segment is synced in full
//! before the next one is started, so only the newest can end in a torn write, and
//! opening cuts it back to its last whole record.
//!
//! The newest segment is made its full size when started (a hole of zeroes, `set_len`),
//! and cut back to its records when the next one starts. Appending inside the file's
//! length spares each `fdatasync` the size change an append past the end makes it
//! write: 300-byte appends with `fdatasync` took 0.19–0.21 ms at p50 on these machines,
//! 0.13–0.15 ms inside a file already that long. So the newest segment reads as
//! zeroes after its last record (no frame has length zero); a torn write into that
//! space is cut off and zeroed again, so no stray frame of it can line up behind
//! records written later.
//!
//! What is in memory: per partition, the vote, the purge point and where each entry is
//! (segment, offset), so a read is one positioned read per run of adjacent entries.
//!
//! Space comes back by segments: once a durable write made the purges before it safe,
//! the oldest segment is deleted when none of its entries is live any more, and when
//! fewer than half its bytes are live, those entries are first copied to the newest
//! segment (a partition that rarely writes would otherwise pin every segment after its
//! last purge).

mod files;
mod record;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use openraft::Vote;

use crate::error::StoreError;
use crate::raft_types::LogId;
pub(crate) use files::LogDir;
use files::LogFile;
use record::{MAGIC, Record, VERSION, frame, unframe};

/// A segment is closed, and a new one started, once a write would take it past this.
pub(crate) const SEGMENT_BYTES: u64 = 32 << 20;

fn segment_name(n: u64) -> String {
    format!("raft-log-{n:010}.wal")
}

fn segment_number(name: &str) -> Option<u64> {
    name.strip_prefix("raft-log-")?.strip_suffix(".wal")?.parse().ok()
}

fn corrupt(reason: String) -> StoreError {
    StoreError::Corrupt { table: "raft log", reason }
}

/// Where an entry's record is.
#[derive(Debug, Clone, Copy)]
struct Loc {
    segment: u64,
    offset: u64,
    len: u32,
}

#[derive(Default)]
struct PartitionLog {
    vote: Option<Vote<u64>>,
    purged: Option<LogId>,
    entries: BTreeMap<u64, Loc>,
}

struct Segment {
    file: Arc<dyn LogFile>,
    /// Bytes of entries still in some partition's log.
    live: u64,
    len: u64,
}

/// What readers see: every partition's log, and the segments its entries are in.
#[derive(Default)]
struct Index {
    partitions: HashMap<u32, PartitionLog>,
    segments: BTreeMap<u64, Segment>,
}

/// A change to a partition's log; an entry's `at` is its offset in the batch.
#[derive(Clone, Copy)]
enum Op {
    Entry { partition: u32, index: u64, at: u64, len: u32 },
    Truncate { partition: u32, from: u64 },
    Purge { partition: u32, upto: LogId },
    Vote { partition: u32, vote: Vote<u64> },
}

impl Index {
    fn dead(&mut self, gone: impl IntoIterator<Item = Loc>) {
        for loc in gone {
            if let Some(segment) = self.segments.get_mut(&loc.segment) {
                segment.live = segment.live.saturating_sub(u64::from(loc.len));
            }
        }
    }

    fn apply(&mut self, segment: u64, base: u64, op: Op) {
        match op {
            Op::Entry { partition, index, at, len } => {
                let loc = Loc { segment, offset: base + at, len };
                let replaced = self.partitions.entry(partition).or_default().entries.insert(index, loc);
                if let Some(s) = self.segments.get_mut(&segment) {
                    s.live += u64::from(len);
                }
                self.dead(replaced);
            }
            Op::Truncate { partition, from } => {
                let gone = self.partitions.entry(partition).or_default().entries.split_off(&from);
                self.dead(gone.into_values());
            }
            Op::Purge { partition, upto } => {
                let log = self.partitions.entry(partition).or_default();
                if log.purged.is_some_and(|p| p >= upto) {
                    return;
                }
                log.purged = Some(upto);
                let kept = log.entries.split_off(&(upto.index.saturating_add(1)));
                let gone = std::mem::replace(&mut log.entries, kept);
                self.dead(gone.into_values());
            }
            Op::Vote { partition, vote } => {
                self.partitions.entry(partition).or_default().vote = Some(vote);
            }
        }
    }

    /// The header a new segment starts with.
    fn header(&self, segment: u64) -> Record {
        let mut votes: Vec<_> = self.partitions.iter().filter_map(|(p, l)| Some((*p, l.vote?))).collect();
        let mut purged: Vec<_> = self.partitions.iter().filter_map(|(p, l)| Some((*p, l.purged?))).collect();
        votes.sort_by_key(|(p, _)| *p);
        purged.sort_by_key(|(p, _)| *p);
        Record::Header { magic: MAGIC, version: VERSION, segment, votes, purged }
    }

    /// Reads the entries at `locs` (ascending), one read per run of adjacent records.
    fn read(&self, partition: u32, locs: &[(u64, Loc)]) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut out = Vec::with_capacity(locs.len());
        let mut rest = locs;
        while let Some(((_, first), _)) = rest.split_first() {
            let run = 1 + rest
                .windows(2)
                .take_while(|w| {
                    w[1].1.segment == w[0].1.segment && w[1].1.offset == w[0].1.offset + u64::from(w[0].1.len)
                })
                .count();
            let (this, next) = rest.split_at(run);
            let end = this.last().map_or(first.offset, |(_, l)| l.offset + u64::from(l.len));
            let segment = self
                .segments
                .get(&first.segment)
                .ok_or_else(|| corrupt(format!("segment {} of an entry is gone", first.segment)))?;
            let mut bytes = vec![0; (end - first.offset) as usize];
            segment.file.read_at(first.offset, &mut bytes)?;
            let mut at = 0;
            for (index, loc) in this {
                let (record, _) = unframe(&bytes[at..]).map_err(|e| {
                    corrupt(format!("entry {index} of partition {partition} in segment {}: {e}", loc.segment))
                })?;
                match record {
                    Record::Entry { partition: p, index: i, entry } if p == partition && i == *index => out.push(entry),
                    _ => return Err(corrupt(format!("entry {index} of partition {partition}: another record there"))),
                }
                at += loc.len as usize;
            }
            rest = next;
        }
        Ok(out)
    }
}

/// The writer's position: the newest segment and how far it is written and synced.
struct Head {
    segment: u64,
    len: u64,
    /// Written since the last sync.
    dirty: bool,
    /// Set by a failed write: the segment's tail is unknown, so nothing more is written.
    failed: Option<String>,
}

/// Changes to the log gathered by one storage batch, written by [`Wal::commit`].
#[derive(Default)]
pub(crate) struct LogBatch {
    bytes: Vec<u8>,
    ops: Vec<Op>,
}

/// Most bytes a batch's buffer keeps for the next batch once written.
const BATCH_BUFFER_KEPT: usize = 4 << 20;

impl LogBatch {
    /// Empties the batch for the next one, keeping its buffer: a buffer grown anew for
    /// every batch had the allocator fault fresh pages in, about 2 % of a node's CPU.
    fn clear(&mut self) {
        self.bytes.clear();
        self.bytes.shrink_to(BATCH_BUFFER_KEPT);
        self.ops.clear();
    }

    pub(crate) fn entry(&mut self, partition: u32, index: u64, entry: Vec<u8>) {
        let at = self.bytes.len() as u64;
        let len = frame(&Record::Entry { partition, index, entry }, &mut self.bytes);
        self.ops.push(Op::Entry { partition, index, at, len: len as u32 });
    }

    pub(crate) fn truncate(&mut self, partition: u32, from: u64) {
        frame(&Record::Truncate { partition, from }, &mut self.bytes);
        self.ops.push(Op::Truncate { partition, from });
    }

    pub(crate) fn purge(&mut self, partition: u32, upto: LogId) {
        frame(&Record::Purge { partition, upto }, &mut self.bytes);
        self.ops.push(Op::Purge { partition, upto });
    }

    pub(crate) fn vote(&mut self, partition: u32, vote: Vote<u64>) {
        frame(&Record::Vote { partition, vote }, &mut self.bytes);
        self.ops.push(Op::Vote { partition, vote });
    }
}

/// A node's Raft log. Reads may come from any thread; writes come from the storage
/// thread only (the head's mutex orders them regardless).
pub(crate) struct Wal {
    dir: LogDir,
    /// [`SEGMENT_BYTES`], smaller in tests.
    segment_bytes: u64,
    index: RwLock<Index>,
    head: Mutex<Head>,
}

impl Wal {
    /// Opens the log in `dir`, replaying its segments (a new log starts one).
    #[cfg(test)]
    pub(crate) fn open(dir: LogDir) -> Result<Self, StoreError> {
        Self::open_with(dir, SEGMENT_BYTES)
    }

    /// As [`Wal::open`], closing segments at `segment_bytes` ([`SEGMENT_BYTES`] but in tests).
    pub(crate) fn open_with(dir: LogDir, segment_bytes: u64) -> Result<Self, StoreError> {
        let mut numbers: Vec<u64> = dir.list()?.iter().filter_map(|n| segment_number(n)).collect();
        numbers.sort_unstable();
        let mut index = Index::default();
        let mut head = None;
        for (i, &n) in numbers.iter().enumerate() {
            let newest = i + 1 == numbers.len();
            match replay(&dir, n, newest, &mut index)? {
                Some(len) => head = Some((n, len)),
                // A newest segment whose header never reached the disk holds nothing.
                None => dir.remove(&segment_name(n))?,
            }
        }
        let wal = Self {
            dir,
            segment_bytes,
            index: RwLock::new(index),
            head: Mutex::new(Head { segment: 0, len: 0, dirty: false, failed: None }),
        };
        match head {
            Some((segment, len)) => *wal.lock_head() = Head { segment, len, dirty: false, failed: None },
            None => {
                let mut head = wal.lock_head();
                wal.start_segment(&mut head, numbers.last().map_or(1, |n| n + 1))?;
                wal.sync_head(&mut head)?;
            }
        }
        Ok(wal)
    }

    fn read_index(&self) -> RwLockReadGuard<'_, Index> {
        // Index changes are single map operations; a panic cannot leave one half done.
        self.index.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_index(&self) -> RwLockWriteGuard<'_, Index> {
        self.index.write().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_head(&self) -> MutexGuard<'_, Head> {
        self.head.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn vote(&self, partition: u32) -> Option<Vote<u64>> {
        self.read_index().partitions.get(&partition).and_then(|l| l.vote)
    }

    pub(crate) fn purged(&self, partition: u32) -> Option<LogId> {
        self.read_index().partitions.get(&partition).and_then(|l| l.purged)
    }

    /// The index of the partition's last entry on disk.
    pub(crate) fn last_index(&self, partition: u32) -> Option<u64> {
        self.read_index().partitions.get(&partition).and_then(|l| l.entries.keys().next_back().copied())
    }

    /// The encoded entries of the partition with indexes in `start..end` that are on disk,
    /// stopping before the entry that would take the bytes read past `bytes_max` (the
    /// first entry is read whatever its size).
    pub(crate) fn read(
        &self,
        partition: u32,
        start: u64,
        end: u64,
        bytes_max: usize,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        if start >= end {
            return Ok(Vec::new());
        }
        // The read lock is held through the reads: a segment is not deleted under them.
        let index = self.read_index();
        let Some(log) = index.partitions.get(&partition) else { return Ok(Vec::new()) };
        let mut bytes = 0usize;
        let locs: Vec<(u64, Loc)> = log
            .entries
            .range(start..end)
            .take_while(|(_, l)| {
                let first = bytes == 0;
                bytes = bytes.saturating_add(l.len as usize);
                first || bytes <= bytes_max
            })
            .map(|(i, l)| (*i, *l))
            .collect();
        index.read(partition, &locs)
    }

    /// Writes `batch` at the end of the log, synced when `durable`; then frees the
    /// segments nothing needs any more. After a failed write every commit fails.
    /// `batch` comes back empty, its buffer kept for the next one.
    pub(crate) fn commit(&self, batch: &mut LogBatch, durable: bool) -> Result<(), StoreError> {
        let written = self.commit_helper(batch, durable);
        batch.clear();
        written
    }

    fn commit_helper(&self, batch: &LogBatch, durable: bool) -> Result<(), StoreError> {
        let mut head = self.lock_head();
        if let Some(failed) = &head.failed {
            return Err(StoreError::Commit(format!("an earlier write to the raft log failed: {failed}")));
        }
        let written = self.write(&mut head, batch, durable).and_then(|()| match durable {
            true => self.reclaim(&mut head),
            false => Ok(()),
        });
        if let Err(e) = &written {
            head.failed = Some(e.to_string());
        }
        written
    }

    fn head_file(&self, head: &Head) -> Result<Arc<dyn LogFile>, StoreError> {
        let index = self.read_index();
        let segment = index.segments.get(&head.segment).ok_or_else(|| corrupt("the newest segment is gone".into()))?;
        Ok(segment.file.clone())
    }

    fn write(&self, head: &mut Head, batch: &LogBatch, durable: bool) -> Result<(), StoreError> {
        if !batch.bytes.is_empty() {
            if head.len + batch.bytes.len() as u64 > self.segment_bytes {
                self.seal_head(head)?;
                self.start_segment(head, head.segment + 1)?;
            }
            let base = head.len;
            self.head_file(head)?.write_at(base, &batch.bytes)?;
            head.len += batch.bytes.len() as u64;
            head.dirty = true;
            if durable {
                self.sync_head(head)?;
            }
            let mut index = self.write_index();
            if let Some(segment) = index.segments.get_mut(&head.segment) {
                segment.len = head.len;
            }
            for op in &batch.ops {
                index.apply(head.segment, base, *op);
            }
        } else if durable && head.dirty {
            self.sync_head(head)?;
        }
        Ok(())
    }

    fn sync_head(&self, head: &mut Head) -> Result<(), StoreError> {
        self.head_file(head)?.sync()?;
        head.dirty = false;
        Ok(())
    }

    /// Cuts the newest segment back to its records and syncs it, before a newer one
    /// starts: only the newest segment may end in unwritten space.
    fn seal_head(&self, head: &mut Head) -> Result<(), StoreError> {
        let file = self.head_file(head)?;
        file.set_len(head.len)?;
        file.sync()?;
        head.dirty = false;
        Ok(())
    }

    /// Starts segment `n` with its header, at its full size; the caller sealed the one
    /// before.
    fn start_segment(&self, head: &mut Head, n: u64) -> Result<(), StoreError> {
        let file = self.dir.open(&segment_name(n), true)?;
        file.set_len(0)?;
        let mut bytes = Vec::new();
        let mut index = self.write_index();
        frame(&index.header(n), &mut bytes);
        file.write_at(0, &bytes)?;
        let len = bytes.len() as u64;
        file.set_len(self.segment_bytes.max(len))?;
        index.segments.insert(n, Segment { file, live: 0, len });
        *head = Head { segment: n, len, dirty: true, failed: None };
        tracing::debug!(segment = n, "raft log segment started");
        Ok(())
    }

    /// Deletes the oldest segments nothing needs, copying their few live entries forward
    /// first. Runs right after a sync, so the purges that freed them are on disk.
    fn reclaim(&self, head: &mut Head) -> Result<(), StoreError> {
        loop {
            let (oldest, live, len) = {
                let index = self.read_index();
                match index.segments.first_key_value() {
                    Some((n, s)) if *n != head.segment => (*n, s.live, s.len),
                    _ => return Ok(()),
                }
            };
            if live > 0 {
                if live * 2 > len {
                    return Ok(());
                }
                let batch = self.live_entries(oldest)?;
                self.write(head, &batch, true)?;
                let left = self.read_index().segments.get(&oldest).map_or(0, |s| s.live);
                if left > 0 {
                    return Err(corrupt(format!("segment {oldest} still holds {left} live bytes after its copy")));
                }
            }
            self.write_index().segments.remove(&oldest);
            self.dir.remove(&segment_name(oldest))?;
            tracing::debug!(segment = oldest, copied_bytes = live, "raft log segment deleted");
        }
    }

    /// A batch rewriting the entries still live in `segment`.
    fn live_entries(&self, segment: u64) -> Result<LogBatch, StoreError> {
        let index = self.read_index();
        let mut batch = LogBatch::default();
        for (partition, log) in &index.partitions {
            let locs: Vec<(u64, Loc)> =
                log.entries.iter().filter(|(_, l)| l.segment == segment).map(|(i, l)| (*i, *l)).collect();
            for ((i, _), entry) in locs.iter().zip(index.read(*partition, &locs)?) {
                batch.entry(*partition, *i, entry);
            }
        }
        Ok(batch)
    }
}

/// Replays segment `n` into `index`; returns the length of its records, or `None` for a
/// newest segment whose header is missing or torn. The newest segment ends at its last
/// whole record: zeroes after it are space never written, anything else a torn write,
/// which is cut off; a bad record in any other segment is corruption.
fn replay(dir: &LogDir, n: u64, newest: bool, index: &mut Index) -> Result<Option<u64>, StoreError> {
    let file = dir.open(&segment_name(n), false)?;
    let mut bytes = vec![0; file.len()? as usize];
    file.read_at(0, &mut bytes)?;
    let header = match unframe(&bytes) {
        Ok((Record::Header { magic, version, segment, votes, purged }, len)) => {
            if magic != MAGIC || segment != n {
                return Err(corrupt(format!("segment {n} has a foreign header")));
            }
            if version != VERSION {
                return Err(StoreError::Format { found: u64::from(version), supported: u64::from(VERSION) });
            }
            (votes, purged, len)
        }
        Ok(_) => return Err(corrupt(format!("segment {n} does not start with a header"))),
        Err(e) if newest => {
            tracing::warn!(segment = n, "raft log: the newest segment's header is {e}; it held nothing synced");
            return Ok(None);
        }
        Err(e) => return Err(corrupt(format!("segment {n}: header {e}"))),
    };
    let (votes, purged, mut at) = header;
    index.segments.insert(n, Segment { file: file.clone(), live: 0, len: 0 });
    for (partition, vote) in votes {
        index.apply(n, 0, Op::Vote { partition, vote });
    }
    for (partition, upto) in purged {
        index.apply(n, 0, Op::Purge { partition, upto });
    }
    while at < bytes.len() {
        let (record, len) = match unframe(&bytes[at..]) {
            Ok(found) => found,
            // The rest of the segment was never written.
            Err(_) if newest && bytes[at..].iter().all(|b| *b == 0) => break,
            Err(e) if newest => {
                // Cut off and made zeroes again: left in place, a whole frame of the torn
                // write could line up behind records written later and be read as one.
                tracing::warn!(segment = n, offset = at, cut = bytes.len() - at, "raft log: torn tail ({e}) cut off");
                file.set_len(at as u64)?;
                file.set_len(bytes.len() as u64)?;
                file.sync()?;
                break;
            }
            Err(e) => return Err(corrupt(format!("segment {n} at {at}: {e}"))),
        };
        let op = match record {
            Record::Entry { partition, index, .. } => Op::Entry { partition, index, at: at as u64, len: len as u32 },
            Record::Truncate { partition, from } => Op::Truncate { partition, from },
            Record::Purge { partition, upto } => Op::Purge { partition, upto },
            Record::Vote { partition, vote } => Op::Vote { partition, vote },
            Record::Header { .. } => return Err(corrupt(format!("segment {n} at {at}: a second header"))),
        };
        index.apply(n, 0, op);
        at += len;
    }
    if let Some(segment) = index.segments.get_mut(&n) {
        segment.len = at as u64;
    }
    Ok(Some(at as u64))
}

#[cfg(test)]
mod tests;
