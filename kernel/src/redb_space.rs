//! The persistent keyspace: a [`KeySpace`] over one partition's rows of the redb
//! `versions` table and its entries in the [`VersionIndex`], used for reads (any
//! readable table) and for applying entries (the storage thread's open table).
//!
//! Rows are keyed by commit timestamp, so the index says which timestamps a key has;
//! a timestamp the table does not hold (applied after this table's transaction began,
//! or removed) is skipped.

use std::ops::Bound;

use redb::{ReadableTable, Table};

use crate::error::StoreError;
use crate::mvcc::{KeyReader, KeySpace, ScanVisitor, compaction_victims};
use crate::schema::{VERSIONS_TABLE, decode, encode};
use crate::types::{PartitionId, Version};
use crate::version_index::VersionIndex;

type VersionKey<'a> = (u32, u64, &'a str);

/// One partition's versions in a redb table `T`.
pub(crate) struct RedbSpace<'i, T> {
    pub(crate) table: T,
    pub(crate) index: &'i VersionIndex,
    pub(crate) partition: PartitionId,
}

impl<T> RedbSpace<'_, T>
where
    T: std::ops::Deref,
    T::Target: ReadableTable<VersionKey<'static>, &'static [u8]>,
{
    /// The version of `key` at `ts`, if the table holds one.
    fn row(&self, key: &str, ts: u64) -> Result<Option<Version>, StoreError> {
        match self.table.get((self.partition, ts, key))? {
            Some(bytes) => Ok(Some(decode(VERSIONS_TABLE, bytes.value())?)),
            None => Ok(None),
        }
    }

    /// Whether the table holds a version of `key` at `ts` (without decoding it).
    fn holds(&self, key: &str, ts: u64) -> Result<bool, StoreError> {
        Ok(self.table.get((self.partition, ts, key))?.is_some())
    }

    /// The newest version of `key` at or before `ts` (any when `None`).
    fn newest(&self, key: &str, ts: Option<u64>) -> Result<Option<(u64, Version)>, StoreError> {
        self.index.find_newest(self.partition, key, ts, |t| Ok(self.row(key, t)?.map(|v| (t, v))))
    }
}

impl<T> KeyReader for RedbSpace<'_, T>
where
    T: std::ops::Deref,
    T::Target: ReadableTable<VersionKey<'static>, &'static [u8]>,
{
    fn latest(&self, key: &str) -> Result<Option<(u64, Version)>, StoreError> {
        self.newest(key, None)
    }

    fn at_or_before(&self, key: &str, ts: u64) -> Result<Option<(u64, Version)>, StoreError> {
        self.newest(key, Some(ts))
    }

    fn versions(&self, key: &str) -> Result<Vec<(u64, Version)>, StoreError> {
        let mut out = Vec::new();
        for ts in self.index.times(self.partition, key) {
            if let Some(v) = self.row(key, ts)? {
                out.push((ts, v));
            }
        }
        Ok(out)
    }

    fn scan(&self, start: &str, as_of: Option<u64>, visit: &mut ScanVisitor<'_>) -> Result<(), StoreError> {
        self.index.each_key(self.partition, Bound::Included(start), |key, times| {
            let (mut found, mut held) = (None, false);
            for &ts in times.iter().rev() {
                if as_of.is_some_and(|at| ts > at) {
                    // Too new to read: only whether the table holds it matters.
                    held = held || self.holds(key, ts)?;
                    continue;
                }
                if let Some(version) = self.row(key, ts)? {
                    (found, held) = (Some((ts, version)), true);
                    break;
                }
            }
            // A key none of whose rows this table holds is not there at all.
            Ok(!held || visit(key, found.as_ref().map(|(t, v)| (*t, v))))
        })
    }
}

impl KeySpace for RedbSpace<'_, &mut Table<'_, VersionKey<'static>, &'static [u8]>> {
    fn put(&mut self, key: &str, ts: u64, version: &Version) -> Result<(), StoreError> {
        self.table.insert((self.partition, ts, key), encode(version).as_slice())?;
        self.index.add(self.partition, key, ts);
        Ok(())
    }

    fn compact(&mut self, before_ts: u64) -> Result<u64, StoreError> {
        let p = self.partition;
        let mut victims: Vec<(String, u64)> = Vec::new();
        self.index.each_key(p, Bound::Unbounded, |key, times| {
            // Of the rows older than `before_ts`, the newest is the version visible at
            // `before_ts`, the only one whose fate depends on what it holds.
            let (mut visible, mut older) = (None, Vec::new());
            for &ts in times.iter().rev().filter(|&&ts| ts < before_ts) {
                if visible.is_none() {
                    visible = self.row(key, ts)?.map(|v| (ts, v));
                } else if self.holds(key, ts)? {
                    older.push(ts);
                }
            }
            let visible = visible.iter().map(|(ts, v)| (*ts, v));
            let doomed = compaction_victims(visible, before_ts).into_iter().chain(older);
            victims.extend(doomed.map(|ts| (key.to_owned(), ts)));
            Ok(true)
        })?;
        for (key, ts) in &victims {
            self.table.remove((p, *ts, key.as_str()))?;
        }
        let removed = victims.len() as u64;
        let due = self.index.retire(p, victims);
        self.forget_gone(due)?;
        Ok(removed)
    }
}

impl RedbSpace<'_, &mut Table<'_, VersionKey<'static>, &'static [u8]>> {
    /// Replaces partition `p`'s rows with `rows` (a snapshot being installed).
    pub(crate) fn install<'a>(
        &mut self,
        rows: impl IntoIterator<Item = (&'a str, u64, &'a Version)> + Clone,
    ) -> Result<(), StoreError> {
        let p = self.partition;
        self.table.retain_in((p, 0u64, "")..(p + 1, 0u64, ""), |_, _| false)?;
        for (key, ts, version) in rows.clone() {
            self.table.insert((p, ts, key), encode(version).as_slice())?;
        }
        let due = self.index.install(p, rows.into_iter().map(|(key, ts, _)| (key, ts)));
        self.forget_gone(due)
    }

    /// Forgets the retired index entries whose rows are still gone. (One that a row
    /// holds again stays: forgetting it would hide the row.)
    fn forget_gone(&mut self, due: Vec<(String, u64)>) -> Result<(), StoreError> {
        let mut gone = Vec::with_capacity(due.len());
        for (key, ts) in due {
            if !self.holds(&key, ts)? {
                gone.push((key, ts));
            }
        }
        self.index.forget(self.partition, &gone);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! The persistent keyspace must behave exactly like the in-memory one, which the
    //! MVCC tests pin down: one shared suite of random operations against both.

    use super::*;
    use crate::hlc::from_physical_ms;
    use crate::memspace::MemSpace;
    use crate::mvcc::{apply_write, read_point, scan_prefix};
    use crate::schema::VERSIONS;
    use crate::types::{DeleteArgs, PointRead, SetArgs, WriteOp};
    use proptest::prelude::*;
    use redb::{Database, ReadableDatabase};

    fn op(kind: u8, key: u8, value: u8, ttl: u8) -> WriteOp {
        let key = format!("b{}/k{}", key % 2, key);
        match kind % 4 {
            0 | 1 => WriteOp::Set(SetArgs {
                key,
                value: vec![value],
                nx: value.is_multiple_of(7),
                compare_revision: value.is_multiple_of(5).then_some(i64::from(value % 3)),
                ttl_ms: u64::from(ttl % 4) * 3,
                ..Default::default()
            }),
            2 => WriteOp::Delete(DeleteArgs { key, ..Default::default() }),
            _ => WriteOp::Extend { key, ttl_ms: u64::from(ttl % 3) * 5 },
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn redb_matches_memory(ops in prop::collection::vec((any::<u8>(), 0u8..6, any::<u8>(), any::<u8>()), 1..60),
                               compact_at in 0u64..70) {
            let dir = tempfile::tempdir().unwrap();
            let db = Database::create(dir.path().join("t.redb")).unwrap();
            let txn = db.begin_write().unwrap();
            let mut mem = MemSpace::default();
            let index = VersionIndex::default();
            {
                let mut table = txn.open_table(VERSIONS).unwrap();
                let mut disk = RedbSpace { table: &mut table, index: &index, partition: 7 };
                for (i, (kind, key, value, ttl)) in ops.iter().enumerate() {
                    let ts = from_physical_ms(i as u64 + 1);
                    let w = op(*kind, *key, *value, *ttl);
                    prop_assert_eq!(apply_write(&mut disk, &w, ts).unwrap(), apply_write(&mut mem, &w, ts).unwrap());
                }
                let horizon = from_physical_ms(compact_at);
                prop_assert_eq!(disk.compact(horizon).unwrap(), mem.compact(horizon).unwrap());
                for probe in 0..=ops.len() as u64 + 2 {
                    let at = from_physical_ms(probe);
                    for key in (0..6).map(|k| format!("b{}/k{}", k % 2, k)) {
                        for read in [
                            PointRead { key: key.clone(), at_revision: None, as_of: None },
                            PointRead { key: key.clone(), at_revision: None, as_of: Some(at) },
                            PointRead { key: key.clone(), at_revision: Some(probe as i64 % 4), as_of: None },
                        ] {
                            prop_assert_eq!(read_point(&disk, &read, at, horizon), read_point(&mem, &read, at, horizon));
                        }
                    }
                    prop_assert_eq!(scan_prefix(&disk, "b1/", None, 2, None, at), scan_prefix(&mem, "b1/", None, 2, None, at));
                    prop_assert_eq!(scan_prefix(&disk, "b", Some("b0/k2"), 10, Some(at), at), scan_prefix(&mem, "b", Some("b0/k2"), 10, Some(at), at));
                }
            }
            // Another partition's rows are never touched.
            let table = txn.open_table(VERSIONS).unwrap();
            let other = RedbSpace { table: &table, index: &index, partition: 8 };
            prop_assert!(other.latest("b0/k0").unwrap().is_none());
        }
    }

    fn version(value: &str, revision: i64) -> Version {
        Version { revision, value: Some(value.as_bytes().to_vec()), expires_at_ms: 0 }
    }

    /// A read transaction older than the index sees its own snapshot: rows applied after
    /// it are skipped, and rows compacted after it are still found.
    #[test]
    fn a_reader_older_than_the_index_sees_its_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("t.redb")).unwrap();
        let index = VersionIndex::default();
        let (t1, t2, t3) = (from_physical_ms(1), from_physical_ms(2), from_physical_ms(3));
        let txn = db.begin_write().unwrap();
        RedbSpace { table: &mut txn.open_table(VERSIONS).unwrap(), index: &index, partition: 1 }
            .put("k", t1, &version("a", 0))
            .unwrap();
        txn.commit().unwrap();
        let old = db.begin_read().unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut space = RedbSpace { table: &mut txn.open_table(VERSIONS).unwrap(), index: &index, partition: 1 };
            space.put("k", t2, &version("b", 1)).unwrap();
            assert_eq!(space.compact(t3).unwrap(), 1);
            assert_eq!(space.latest("k").unwrap().map(|(ts, _)| ts), Some(t2));
        }
        txn.commit().unwrap();
        let reader = |txn: &redb::ReadTransaction| {
            let table = txn.open_table(VERSIONS).unwrap();
            RedbSpace { table: &table, index: &index, partition: 1 }.latest("k").unwrap().map(|(ts, _)| ts)
        };
        assert_eq!(reader(&old), Some(t1));
        assert_eq!(reader(&db.begin_read().unwrap()), Some(t2));
        // The next compaction forgets the entry whose row is gone.
        let txn = db.begin_write().unwrap();
        RedbSpace { table: &mut txn.open_table(VERSIONS).unwrap(), index: &index, partition: 1 }.compact(t3).unwrap();
        txn.commit().unwrap();
        assert_eq!(index.times(1, "k"), [t2]);
    }
}
