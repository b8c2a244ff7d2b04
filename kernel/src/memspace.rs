//! An in-memory [`KeySpace`]: the ephemeral keyspace, and the model the redb keyspace
//! is tested against.

use std::collections::BTreeMap;

use crate::error::StoreError;
use crate::mvcc::{KeyReader, KeySpace, ScanVisitor, compaction_victims};
use crate::types::Version;

/// Keys in order, each with its versions keyed by commit timestamp.
#[derive(Debug, Default, Clone)]
pub struct MemSpace {
    keys: BTreeMap<String, BTreeMap<u64, Version>>,
}

impl KeyReader for MemSpace {
    fn latest(&self, key: &str) -> Result<Option<(u64, Version)>, StoreError> {
        Ok(self.keys.get(key).and_then(|vs| vs.iter().next_back()).map(|(ts, v)| (*ts, v.clone())))
    }

    fn at_or_before(&self, key: &str, ts: u64) -> Result<Option<(u64, Version)>, StoreError> {
        Ok(self.keys.get(key).and_then(|vs| vs.range(..=ts).next_back()).map(|(t, v)| (*t, v.clone())))
    }

    fn versions(&self, key: &str) -> Result<Vec<(u64, Version)>, StoreError> {
        Ok(self.keys.get(key).map(|vs| vs.iter().rev().map(|(t, v)| (*t, v.clone())).collect()).unwrap_or_default())
    }

    fn scan(&self, start: &str, as_of: Option<u64>, visit: &mut ScanVisitor<'_>) -> Result<(), StoreError> {
        for (key, versions) in self.keys.range(start.to_owned()..) {
            let found = match as_of {
                Some(ts) => versions.range(..=ts).next_back(),
                None => versions.iter().next_back(),
            };
            if !visit(key, found.map(|(ts, v)| (*ts, v))) {
                break;
            }
        }
        Ok(())
    }
}

impl KeySpace for MemSpace {
    fn put(&mut self, key: &str, ts: u64, version: &Version) -> Result<(), StoreError> {
        self.keys.entry(key.to_owned()).or_default().insert(ts, version.clone());
        Ok(())
    }

    fn compact(&mut self, before_ts: u64) -> Result<u64, StoreError> {
        let mut removed = 0;
        self.keys.retain(|_, versions| {
            let newest_first: Vec<(u64, Version)> = versions.iter().rev().map(|(t, v)| (*t, v.clone())).collect();
            for ts in compaction_victims(&newest_first, before_ts) {
                if versions.remove(&ts).is_some() {
                    removed += 1;
                }
            }
            !versions.is_empty()
        });
        Ok(removed)
    }
}
