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
                out.extend(compaction_victims(versions, before_ts).into_iter().map(|ts| (key.clone(), ts)));
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
