//! An in-memory [`KeySpace`]: the ephemeral keyspace, and the model the redb keyspace
//! is tested against.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::ops::Bound;

use crate::error::StoreError;
use crate::mvcc::{KeyReader, KeySpace, ScanVisitor, compaction_victims};
use crate::types::Version;

/// Each key's versions, found by hash; the keys again in order, for scans. A point read
/// in a `BTreeMap<String, BTreeMap<u64, Version>>` compared its key with a dozen keys,
/// each behind a pointer of its own, then walked the key's own tree: cache misses that
/// made the lookup a fifth of an ephemeral get's CPU on the node.
#[derive(Debug, Default, Clone)]
pub struct MemSpace {
    keys: HashMap<String, Versions>,
    /// The keys of `keys`, in order.
    order: BTreeSet<String>,
}

/// One key's versions, oldest first. Writes come at ever later timestamps, so a new
/// version goes at the back, and compaction drops from the front.
#[derive(Debug, Default, Clone)]
struct Versions(VecDeque<(u64, Version)>);

impl Versions {
    fn latest(&self) -> Option<&(u64, Version)> {
        self.0.back()
    }

    fn at_or_before(&self, ts: u64) -> Option<&(u64, Version)> {
        let after = self.0.partition_point(|(t, _)| *t <= ts);
        after.checked_sub(1).and_then(|i| self.0.get(i))
    }

    fn visible(&self, as_of: Option<u64>) -> Option<&(u64, Version)> {
        match as_of {
            Some(ts) => self.at_or_before(ts),
            None => self.latest(),
        }
    }

    /// Adds `version` at `ts`, replacing one already there.
    fn insert(&mut self, ts: u64, version: &Version) {
        match self.0.back() {
            Some((last, _)) if *last >= ts => {
                let at = self.0.partition_point(|(t, _)| *t < ts);
                match self.0.get_mut(at) {
                    Some((t, v)) if *t == ts => *v = version.clone(),
                    _ => self.0.insert(at, (ts, version.clone())),
                }
            }
            _ => self.0.push_back((ts, version.clone())),
        }
    }
}

impl KeyReader for MemSpace {
    fn latest(&self, key: &str) -> Result<Option<(u64, Version)>, StoreError> {
        Ok(self.keys.get(key).and_then(Versions::latest).cloned())
    }

    fn at_or_before(&self, key: &str, ts: u64) -> Result<Option<(u64, Version)>, StoreError> {
        Ok(self.keys.get(key).and_then(|vs| vs.at_or_before(ts)).cloned())
    }

    fn versions(&self, key: &str) -> Result<Vec<(u64, Version)>, StoreError> {
        Ok(self.keys.get(key).map(|vs| vs.0.iter().rev().cloned().collect()).unwrap_or_default())
    }

    fn scan(&self, start: &str, as_of: Option<u64>, visit: &mut ScanVisitor<'_>) -> Result<(), StoreError> {
        for key in self.order.range::<str, _>((Bound::Included(start), Bound::Unbounded)) {
            let Some(versions) = self.keys.get(key) else {
                debug_assert!(false, "{key} is ordered but has no versions");
                continue;
            };
            if !visit(key, versions.visible(as_of).map(|(ts, v)| (*ts, v))) {
                break;
            }
        }
        Ok(())
    }
}

impl KeySpace for MemSpace {
    fn put(&mut self, key: &str, ts: u64, version: &Version) -> Result<(), StoreError> {
        match self.keys.get_mut(key) {
            Some(versions) => versions.insert(ts, version),
            None => {
                self.keys.insert(key.to_owned(), Versions(VecDeque::from([(ts, version.clone())])));
                self.order.insert(key.to_owned());
            }
        }
        Ok(())
    }

    fn compact(&mut self, before_ts: u64) -> Result<u64, StoreError> {
        let mut removed = 0;
        self.keys.retain(|_, versions| {
            // The victims are the oldest versions.
            let victims = compaction_victims(versions.0.iter().rev().map(|(ts, v)| (*ts, v)), before_ts).len();
            versions.0.drain(..victims);
            removed += victims as u64;
            !versions.0.is_empty()
        });
        if self.order.len() != self.keys.len() {
            self.order.retain(|key| self.keys.contains_key(key));
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    fn version(revision: i64) -> Version {
        Version { revision, value: Some(revision.to_le_bytes().to_vec()), expires_at_ms: 0 }
    }

    proptest! {
        /// Versions written in any order (replays may repeat a timestamp) read as a map
        /// keyed by timestamp does.
        #[test]
        fn versions_read_as_a_map_of_timestamps(writes in prop::collection::vec(0u64..20, 1..30), probe in 0u64..22) {
            let mut versions = Versions::default();
            let mut model = BTreeMap::new();
            for (i, ts) in writes.into_iter().enumerate() {
                versions.insert(ts, &version(i as i64));
                model.insert(ts, version(i as i64));
            }
            prop_assert!(versions.0.iter().map(|(t, _)| *t).eq(model.keys().copied()));
            prop_assert_eq!(versions.latest().map(|(t, v)| (*t, v)), model.iter().next_back().map(|(t, v)| (*t, v)));
            let found = model.range(..=probe).next_back().map(|(t, v)| (*t, v));
            prop_assert_eq!(versions.at_or_before(probe).map(|(t, v)| (*t, v)), found);
        }
    }
}
