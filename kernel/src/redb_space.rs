//! The persistent keyspace: a [`KeySpace`] over one partition's rows of the redb
//! `versions` table, used for reads (any readable table) and for applying entries
//! (the storage thread's open table).

use redb::{ReadableTable, Table};

use crate::error::StoreError;
use crate::mvcc::{KeyReader, KeySpace, ScanVisitor, compaction_victims};
use crate::schema::{VERSIONS_TABLE, decode, encode};
use crate::types::{PartitionId, Version};

type VersionKey<'a> = (u32, &'a str, u64);

/// One partition's versions in a redb table `T`.
pub(crate) struct RedbSpace<T> {
    pub(crate) table: T,
    pub(crate) partition: PartitionId,
}

fn row(key_guard: VersionKey<'_>, bytes: &[u8]) -> Result<(u64, Version), StoreError> {
    Ok((!key_guard.2, decode(VERSIONS_TABLE, bytes)?))
}

impl<T> KeyReader for RedbSpace<T>
where
    T: std::ops::Deref,
    T::Target: ReadableTable<VersionKey<'static>, &'static [u8]>,
{
    fn latest(&self, key: &str) -> Result<Option<(u64, Version)>, StoreError> {
        let p = self.partition;
        let mut range = self.table.range((p, key, 0u64)..=(p, key, u64::MAX))?;
        match range.next() {
            Some(entry) => {
                let (k, v) = entry?;
                Ok(Some(row(k.value(), v.value())?))
            }
            None => Ok(None),
        }
    }

    fn at_or_before(&self, key: &str, ts: u64) -> Result<Option<(u64, Version)>, StoreError> {
        let p = self.partition;
        let mut range = self.table.range((p, key, !ts)..=(p, key, u64::MAX))?;
        match range.next() {
            Some(entry) => {
                let (k, v) = entry?;
                Ok(Some(row(k.value(), v.value())?))
            }
            None => Ok(None),
        }
    }

    fn versions(&self, key: &str) -> Result<Vec<(u64, Version)>, StoreError> {
        let p = self.partition;
        let mut out = Vec::new();
        for entry in self.table.range((p, key, 0u64)..=(p, key, u64::MAX))? {
            let (k, v) = entry?;
            out.push(row(k.value(), v.value())?);
        }
        Ok(out)
    }

    fn scan(&self, start: &str, as_of: Option<u64>, visit: &mut ScanVisitor<'_>) -> Result<(), StoreError> {
        let p = self.partition;
        let lower = (p, start, 0u64);
        let mut current: Option<String> = None;
        let mut found: Option<(u64, Version)> = None;
        for entry in self.table.range(lower..)? {
            let (k, v) = entry?;
            let (partition, key, inverted) = k.value();
            if partition != p {
                break;
            }
            if current.as_deref() != Some(key) {
                if let Some(done) = current.take()
                    && !visit(&done, found.as_ref().map(|(t, v)| (*t, v)))
                {
                    return Ok(());
                }
                current = Some(key.to_owned());
                found = None;
            }
            let ts = !inverted;
            if found.is_none() && as_of.is_none_or(|at| ts <= at) {
                found = Some((ts, decode(VERSIONS_TABLE, v.value())?));
            }
        }
        if let Some(done) = current {
            visit(&done, found.as_ref().map(|(t, v)| (*t, v)));
        }
        Ok(())
    }
}

impl KeySpace for RedbSpace<&mut Table<'_, VersionKey<'static>, &'static [u8]>> {
    fn put(&mut self, key: &str, ts: u64, version: &Version) -> Result<(), StoreError> {
        self.table.insert((self.partition, key, !ts), encode(version).as_slice())?;
        Ok(())
    }

    fn compact(&mut self, before_ts: u64) -> Result<u64, StoreError> {
        // Collect first: redb tables cannot be changed while iterated.
        let p = self.partition;
        let mut victims: Vec<(String, u64)> = Vec::new();
        let mut key_versions: Vec<(u64, Version)> = Vec::new();
        let mut current: Option<String> = None;
        let flush = |key: &Option<String>, versions: &mut Vec<(u64, Version)>, out: &mut Vec<(String, u64)>| {
            if let Some(key) = key {
                let newest_first = versions.iter().map(|(ts, v)| (*ts, v));
                out.extend(compaction_victims(newest_first, before_ts).into_iter().map(|ts| (key.clone(), ts)));
            }
            versions.clear();
        };
        for entry in self.table.range((p, "", 0u64)..)? {
            let (k, v) = entry?;
            let (partition, key, inverted) = k.value();
            if partition != p {
                break;
            }
            if current.as_deref() != Some(key) {
                flush(&current, &mut key_versions, &mut victims);
                current = Some(key.to_owned());
            }
            key_versions.push((!inverted, decode(VERSIONS_TABLE, v.value())?));
        }
        flush(&current, &mut key_versions, &mut victims);
        for (key, ts) in &victims {
            self.table.remove((p, key.as_str(), !ts))?;
        }
        Ok(victims.len() as u64)
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
    use redb::Database;

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
            {
                let mut table = txn.open_table(VERSIONS).unwrap();
                let mut disk = RedbSpace { table: &mut table, partition: 7 };
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
            let other = RedbSpace { table: &table, partition: 8 };
            prop_assert!(other.latest("b0/k0").unwrap().is_none());
        }
    }
}
