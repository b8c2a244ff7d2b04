//! The persistent keyspace's key index: each key's version timestamps, in memory.
//!
//! The `versions` table keeps versions in commit order (`(partition, commit ts, key)`),
//! so a put appends to the table's last page instead of copying a random leaf of a
//! key-ordered B-tree (bench/PERF-LOG.md, stop 26). Finding a key's versions then needs
//! this index, as etcd keeps its key index beside its revision-ordered store: the index
//! says which timestamps a key has, the table what each holds.
//!
//! Readers use the index with a redb read transaction that may be older than it: the
//! storage thread adds to the index as it applies, before its transaction commits. So the
//! index may list timestamps a table snapshot lacks, and every lookup asks the table:
//! a timestamp without a row is skipped. It must never list fewer than a snapshot in use
//! holds, so an entry leaves only after its row has been gone for a while: compaction
//! and snapshot installs retire entries, and the partition's next compaction or install
//! forgets those its table no longer holds (compaction runs once a minute; a read
//! transaction lives for one request).

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::{PoisonError, RwLock};

use redb::{Database, ReadableDatabase, ReadableTable};

use crate::error::StoreError;
use crate::schema::VERSIONS;
use crate::types::PartitionId;

/// A key and its version timestamps, oldest first.
type KeyTimes = (String, Vec<u64>);

/// Keys [`VersionIndex::each_key`] copies out under the lock at a time.
const SCAN_CHUNK_KEYS: usize = 64;

/// Every partition's keys and their version timestamps.
#[derive(Debug, Default)]
pub(crate) struct VersionIndex {
    partitions: RwLock<HashMap<PartitionId, PartitionIndex>>,
}

#[derive(Debug, Default)]
struct PartitionIndex {
    /// Each key's version timestamps, oldest first.
    keys: BTreeMap<String, Vec<u64>>,
    /// Entries whose rows were removed, listed until the next compaction or install.
    retired: Vec<(String, u64)>,
}

impl PartitionIndex {
    fn add(&mut self, key: &str, ts: u64) {
        let times = match self.keys.get_mut(key) {
            Some(times) => times,
            None => self.keys.entry(key.to_owned()).or_default(),
        };
        match times.last() {
            Some(&last) if last >= ts => {
                if let Err(at) = times.binary_search(&ts) {
                    times.insert(at, ts);
                }
            }
            _ => times.push(ts),
        }
    }
}

impl VersionIndex {
    /// The index of every row of the `versions` table in `db`.
    pub(crate) fn load(db: &Database) -> Result<Self, StoreError> {
        let mut partitions: HashMap<PartitionId, PartitionIndex> = HashMap::new();
        let txn = db.begin_read()?;
        for row in txn.open_table(VERSIONS)?.iter()? {
            let (k, _) = row?;
            let (p, ts, key) = k.value();
            partitions.entry(p).or_default().add(key, ts);
        }
        Ok(Self { partitions: RwLock::new(partitions) })
    }

    /// Records that `key` has a version at `ts` in partition `p`.
    pub(crate) fn add(&self, p: PartitionId, key: &str, ts: u64) {
        self.write().entry(p).or_default().add(key, ts);
    }

    /// Calls `f` with `key`'s timestamps at or before `at_most` (all when `None`), newest
    /// first, until it returns something.
    pub(crate) fn find_newest<R>(
        &self,
        p: PartitionId,
        key: &str,
        at_most: Option<u64>,
        mut f: impl FnMut(u64) -> Result<Option<R>, StoreError>,
    ) -> Result<Option<R>, StoreError> {
        let partitions = self.read();
        let Some(times) = partitions.get(&p).and_then(|index| index.keys.get(key)) else {
            return Ok(None);
        };
        let end = at_most.map_or(times.len(), |at| times.partition_point(|&t| t <= at));
        for &ts in times[..end].iter().rev() {
            if let Some(found) = f(ts)? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// `key`'s timestamps, newest first.
    pub(crate) fn times(&self, p: PartitionId, key: &str) -> Vec<u64> {
        let partitions = self.read();
        let times = partitions.get(&p).and_then(|index| index.keys.get(key));
        times.map(|times| times.iter().rev().copied().collect()).unwrap_or_default()
    }

    /// Calls `f` with each key of partition `p` from `start` (included or not), in key
    /// order, and its timestamps, oldest first, until `f` returns false. The keys are
    /// copied out [`SCAN_CHUNK_KEYS`] at a time, so the storage thread never waits long
    /// for a scan.
    pub(crate) fn each_key(
        &self,
        p: PartitionId,
        start: Bound<&str>,
        mut f: impl FnMut(&str, &[u64]) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        let mut from = start.map(str::to_owned);
        loop {
            let chunk = self.keys_from(p, from.as_ref().map(String::as_str), SCAN_CHUNK_KEYS);
            let Some((last, _)) = chunk.last() else { return Ok(()) };
            let next = Bound::Excluded(last.clone());
            for (key, times) in &chunk {
                if !f(key, times)? {
                    return Ok(());
                }
            }
            from = next;
        }
    }

    /// At most `max` keys of partition `p` from `start`, in key order, with their
    /// timestamps.
    fn keys_from(&self, p: PartitionId, start: Bound<&str>, max: usize) -> Vec<KeyTimes> {
        let partitions = self.read();
        let Some(index) = partitions.get(&p) else { return Vec::new() };
        let range = index.keys.range::<str, _>((start, Bound::Unbounded));
        range.take(max).map(|(key, times)| (key.clone(), times.clone())).collect()
    }

    /// Retires `removed` (entries whose rows are gone) and returns the entries retired
    /// before, for the caller to [`forget`](Self::forget) those still without a row.
    pub(crate) fn retire(&self, p: PartitionId, removed: Vec<(String, u64)>) -> Vec<(String, u64)> {
        std::mem::replace(&mut self.write().entry(p).or_default().retired, removed)
    }

    /// Drops `gone` from partition `p`'s keys: one pass over each key's timestamps (a
    /// hot key can hold millions, and compaction retire a minute of them at once).
    pub(crate) fn forget(&self, p: PartitionId, gone: &[(String, u64)]) {
        let mut by_key: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
        for (key, ts) in gone {
            by_key.entry(key.as_str()).or_default().push(*ts);
        }
        let mut partitions = self.write();
        let Some(index) = partitions.get_mut(&p) else { return };
        for (key, mut drop) in by_key {
            let Some(times) = index.keys.get_mut(key) else { continue };
            drop.sort_unstable();
            times.retain(|t| drop.binary_search(t).is_err());
            if times.is_empty() {
                index.keys.remove(key);
            }
        }
    }

    /// Adds the rows of a snapshot installed over partition `p` and retires every entry
    /// it does not hold (returning those retired before, as [`retire`](Self::retire)).
    pub(crate) fn install<'a>(
        &self,
        p: PartitionId,
        rows: impl IntoIterator<Item = (&'a str, u64)>,
    ) -> Vec<(String, u64)> {
        let mut installed = PartitionIndex::default();
        for (key, ts) in rows {
            installed.add(key, ts);
        }
        let mut partitions = self.write();
        let index = partitions.entry(p).or_default();
        let mut retired = Vec::new();
        for (key, times) in &index.keys {
            let kept = installed.keys.get(key);
            retired.extend(
                times.iter().filter(|t| kept.is_none_or(|k| k.binary_search(t).is_err())).map(|&t| (key.clone(), t)),
            );
        }
        // Merged a key at a time: adding them one by one would shift each key's times.
        for (key, ts) in &retired {
            installed.keys.entry(key.clone()).or_default().push(*ts);
        }
        for times in installed.keys.values_mut() {
            times.sort_unstable();
            times.dedup();
        }
        let before = std::mem::take(&mut index.retired);
        installed.retired = retired;
        *index = installed;
        before
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<PartitionId, PartitionIndex>> {
        // The index holds no invariant a panicking writer could break halfway that a
        // lookup relies on: every entry is checked against the table.
        self.partitions.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<PartitionId, PartitionIndex>> {
        self.partitions.write().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn newest(index: &VersionIndex, key: &str) -> Vec<u64> {
        index.times(1, key)
    }

    #[test]
    fn timestamps_stay_ordered_and_unique() {
        let index = VersionIndex::default();
        for ts in [5, 9, 7, 9, 1] {
            index.add(1, "k", ts);
        }
        assert_eq!(newest(&index, "k"), [9, 7, 5, 1]);
        assert_eq!(index.find_newest(1, "k", None, |ts| Ok((ts < 8).then_some(ts))).unwrap(), Some(7));
        assert_eq!(index.find_newest(1, "k", Some(6), |ts| Ok(Some(ts))).unwrap(), Some(5));
        assert_eq!(index.find_newest(1, "k", Some(0), |ts| Ok(Some(ts))).unwrap(), None);
        assert!(index.times(2, "k").is_empty());
    }

    #[test]
    fn keys_come_in_order_a_chunk_at_a_time() {
        let index = VersionIndex::default();
        for key in ["c", "a", "b", "d"] {
            index.add(1, key, 1);
        }
        let first = index.keys_from(1, Bound::Included("b"), 2);
        assert_eq!(first.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), ["b", "c"]);
        let next = index.keys_from(1, Bound::Excluded("c"), 2);
        assert_eq!(next.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), ["d"]);
    }

    #[test]
    fn each_key_goes_through_every_chunk_and_stops_when_told() {
        let index = VersionIndex::default();
        let keys: Vec<String> = (0..150).map(|i| format!("k{i:03}")).collect();
        for key in &keys {
            index.add(1, key, 1);
        }
        let mut seen = Vec::new();
        index
            .each_key(1, Bound::Excluded("k000"), |key, _| {
                seen.push(key.to_owned());
                Ok(key < "k140")
            })
            .unwrap();
        assert_eq!(seen, keys[1..=140]);
    }

    #[test]
    fn retired_entries_are_forgotten_one_round_later() {
        let index = VersionIndex::default();
        index.add(1, "k", 1);
        index.add(1, "k", 2);
        assert!(index.retire(1, vec![("k".into(), 1)]).is_empty());
        // Still listed: a reader's older snapshot may hold the row.
        assert_eq!(newest(&index, "k"), [2, 1]);
        let due = index.retire(1, Vec::new());
        index.forget(1, &due);
        assert_eq!(newest(&index, "k"), [2]);
    }

    #[test]
    fn a_hot_key_forgets_many_entries_at_once() {
        let index = VersionIndex::default();
        for ts in 1..=100_000 {
            index.add(1, "hot", ts);
        }
        let gone: Vec<(String, u64)> = (1..=99_990).rev().map(|ts| ("hot".to_owned(), ts)).collect();
        index.forget(1, &gone);
        assert_eq!(newest(&index, "hot"), (99_991..=100_000).rev().collect::<Vec<u64>>());
    }

    #[test]
    fn an_install_keeps_what_it_replaces_until_later() {
        let index = VersionIndex::default();
        index.add(1, "old", 1);
        index.add(1, "k", 1);
        let due = index.install(1, [("k", 1), ("k", 3), ("new", 2)]);
        assert!(due.is_empty());
        assert_eq!(newest(&index, "k"), [3, 1]);
        assert_eq!(newest(&index, "old"), [1]);
        let due = index.retire(1, Vec::new());
        assert_eq!(due, [("old".to_owned(), 1)]);
        index.forget(1, &due);
        assert!(newest(&index, "old").is_empty());
        assert_eq!(newest(&index, "new"), [2]);
    }
}
