//! Multi-version key semantics, shared by the persistent keyspace (redb, applied from
//! Raft entries) and the ephemeral one (memory on the leader).
//!
//! Everything here is pure over a [`KeySpace`]: time comes in as the entry's commit
//! timestamp, never from a clock, so replicas applying the same entries agree.

use crate::error::{KvError, StoreError};
use crate::hlc::physical_ms;
use crate::types::{DeleteArgs, KeyValue, PointRead, SetArgs, Version, WriteOp, WriteResult};

/// Called by [`KeyReader::scan`] with a key and its visible version (commit ts, version).
pub type ScanVisitor<'a> = dyn FnMut(&str, Option<(u64, &Version)>) -> bool + 'a;

/// Read access to versioned keys. Versions of a key are identified by commit timestamp.
pub trait KeyReader {
    /// The newest version of `key`, live or not.
    fn latest(&self, key: &str) -> Result<Option<(u64, Version)>, StoreError>;
    /// The newest version of `key` committed at or before `ts`.
    fn at_or_before(&self, key: &str, ts: u64) -> Result<Option<(u64, Version)>, StoreError>;
    /// Every retained version of `key`, newest first.
    fn versions(&self, key: &str) -> Result<Vec<(u64, Version)>, StoreError>;
    /// Calls `visit` with each key `>= start`, in key order, and its version visible at
    /// `as_of` (the newest when `None`; `None` when nothing is visible then), until
    /// `visit` returns false.
    fn scan(&self, start: &str, as_of: Option<u64>, visit: &mut ScanVisitor<'_>) -> Result<(), StoreError>;
}

/// Versioned storage of keys: reads plus the two ways of changing it.
pub trait KeySpace: KeyReader {
    /// Stores (or replaces) the version of `key` committed at `ts`.
    fn put(&mut self, key: &str, ts: u64, version: &Version) -> Result<(), StoreError>;
    /// Drops the versions that [`compaction_victims`] picks, for every key.
    fn compact(&mut self, before_ts: u64) -> Result<u64, StoreError>;
}

/// Applies one write at commit timestamp `ts`.
pub fn apply_write(space: &mut impl KeySpace, op: &WriteOp, ts: u64) -> Result<WriteResult, StoreError> {
    match op {
        WriteOp::Set(args) => apply_set(space, args, ts),
        WriteOp::Delete(args) => apply_delete(space, args, ts),
        WriteOp::Extend { key, ttl_ms } => apply_extend(space, key, *ttl_ms, ts),
    }
}

/// The revision a new version of a key gets, given its newest version.
fn next_revision(latest: &Option<(u64, Version)>) -> i64 {
    latest.as_ref().map_or(0, |(_, v)| v.revision + 1)
}

/// The live version among `latest` at `ts`, if any.
fn live(latest: &Option<(u64, Version)>, ts: u64) -> Option<&Version> {
    latest.as_ref().map(|(_, v)| v).filter(|v| v.is_live_at(physical_ms(ts)))
}

/// Whether the compare-value / compare-revision conditions hold against `current`.
fn compares_hold(current: Option<&Version>, value: &Option<Vec<u8>>, revision: Option<i64>) -> bool {
    let value_ok = match value {
        None => true,
        Some(expected) => current.and_then(|v| v.value.as_ref()) == Some(expected),
    };
    let revision_ok = match revision {
        None => true,
        Some(expected) => current.map(|v| v.revision) == Some(expected),
    };
    value_ok && revision_ok
}

fn expiry(ts: u64, ttl_ms: u64) -> u64 {
    if ttl_ms == 0 { 0 } else { physical_ms(ts).saturating_add(ttl_ms) }
}

fn apply_set(space: &mut impl KeySpace, a: &SetArgs, ts: u64) -> Result<WriteResult, StoreError> {
    let latest = space.latest(&a.key)?;
    let current = live(&latest, ts);
    let allowed = !(a.nx && current.is_some() || a.xx && current.is_none())
        && compares_hold(current, &a.compare_value, a.compare_revision);
    if !allowed {
        let revision = current.map_or(-1, |v| v.revision);
        return Ok(WriteResult::Set { modified: false, revision, commit_ts: ts });
    }
    let version =
        Version { revision: next_revision(&latest), value: Some(a.value.clone()), expires_at_ms: expiry(ts, a.ttl_ms) };
    space.put(&a.key, ts, &version)?;
    Ok(WriteResult::Set { modified: true, revision: version.revision, commit_ts: ts })
}

fn apply_delete(space: &mut impl KeySpace, a: &DeleteArgs, ts: u64) -> Result<WriteResult, StoreError> {
    let latest = space.latest(&a.key)?;
    let current = live(&latest, ts);
    let Some(current) = current.filter(|c| compares_hold(Some(c), &a.compare_value, a.compare_revision)) else {
        let revision = live(&latest, ts).map_or(-1, |v| v.revision);
        return Ok(WriteResult::Delete { deleted: false, revision, commit_ts: ts });
    };
    let tombstone = Version { revision: current.revision + 1, value: None, expires_at_ms: 0 };
    space.put(&a.key, ts, &tombstone)?;
    Ok(WriteResult::Delete { deleted: true, revision: tombstone.revision, commit_ts: ts })
}

fn apply_extend(space: &mut impl KeySpace, key: &str, ttl_ms: u64, ts: u64) -> Result<WriteResult, StoreError> {
    let latest = space.latest(key)?;
    match (&latest, live(&latest, ts)) {
        (Some((version_ts, _)), Some(current)) => {
            // Only the expiry changes: the version keeps its revision and commit time.
            let extended = Version { expires_at_ms: expiry(ts, ttl_ms), ..current.clone() };
            space.put(key, *version_ts, &extended)?;
            Ok(WriteResult::Extend { extended: true, expires_at_ms: extended.expires_at_ms, commit_ts: ts })
        }
        _ => Ok(WriteResult::Extend { extended: false, expires_at_ms: 0, commit_ts: ts }),
    }
}

/// Answers a point read. `now_ts` judges expiry for reads of the latest version;
/// `compacted_before` is the partition's compaction horizon.
pub fn read_point(
    space: &impl KeyReader,
    read: &PointRead,
    now_ts: u64,
    compacted_before: u64,
) -> Result<Option<KeyValue>, KvError> {
    let to_kv = |ts: u64, v: Version, at: u64| -> Option<KeyValue> {
        let live = v.is_live_at(physical_ms(at));
        live.then(|| KeyValue {
            key: read.key.clone(),
            value: v.value.unwrap_or_default(),
            revision: v.revision,
            commit_ts: ts,
            expires_at_ms: v.expires_at_ms,
        })
    };
    if let Some(revision) = read.at_revision {
        let versions = space.versions(&read.key)?;
        if let Some((ts, v)) = versions.iter().find(|(_, v)| v.revision == revision).cloned() {
            // A historical revision is shown as it was written, even if since expired.
            return Ok(v.value.is_some().then(|| KeyValue {
                key: read.key.clone(),
                value: v.value.unwrap_or_default(),
                revision: v.revision,
                commit_ts: ts,
                expires_at_ms: v.expires_at_ms,
            }));
        }
        let oldest = versions.last().map(|(_, v)| v.revision);
        if compacted_before > 0 && oldest.is_none_or(|o| revision < o) && revision >= 0 {
            return Err(KvError::Compacted(format!(
                "revision {revision} of {:?} is older than the retained history",
                read.key
            )));
        }
        return Ok(None);
    }
    if let Some(as_of) = read.as_of {
        if as_of < compacted_before {
            return Err(KvError::Compacted(format!(
                "timestamp {as_of} is older than the retained history (from {compacted_before})"
            )));
        }
        return Ok(space.at_or_before(&read.key, as_of)?.and_then(|(ts, v)| to_kv(ts, v, as_of)));
    }
    Ok(space.latest(&read.key)?.and_then(|(ts, v)| to_kv(ts, v, now_ts)))
}

/// Live keys starting with `prefix` and greater than `after`, at most `limit`; the flag
/// says whether more may follow.
pub fn scan_prefix(
    space: &impl KeyReader,
    prefix: &str,
    after: Option<&str>,
    limit: usize,
    as_of: Option<u64>,
    now_ts: u64,
) -> Result<(Vec<KeyValue>, bool), KvError> {
    let start = match after {
        Some(after) if after >= prefix => after,
        _ => prefix,
    };
    let judge_at = physical_ms(as_of.unwrap_or(now_ts));
    let mut items = Vec::new();
    let mut more = false;
    space.scan(start, as_of, &mut |key, found| {
        if !key.starts_with(prefix) {
            return false;
        }
        let Some((ts, v)) = found.filter(|(_, v)| v.is_live_at(judge_at)) else {
            return true;
        };
        if after.is_some_and(|a| key <= a) {
            return true;
        }
        if items.len() == limit {
            more = true;
            return false;
        }
        items.push(KeyValue {
            key: key.to_owned(),
            value: v.value.clone().unwrap_or_default(),
            revision: v.revision,
            commit_ts: ts,
            expires_at_ms: v.expires_at_ms,
        });
        true
    })?;
    Ok((items, more))
}

/// Which versions of one key (given newest first) compaction at `before_ts` removes:
/// every version older than the one visible at `before_ts`, and that one too when it
/// is a tombstone or expired (nothing at or after `before_ts` can read it).
pub fn compaction_victims<'a>(newest_first: impl IntoIterator<Item = (u64, &'a Version)>, before_ts: u64) -> Vec<u64> {
    let mut older = newest_first.into_iter().skip_while(|(ts, _)| *ts >= before_ts);
    let Some((visible_ts, visible)) = older.next() else {
        return Vec::new();
    };
    let drop_visible = !visible.is_live_at(physical_ms(before_ts));
    drop_visible.then_some(visible_ts).into_iter().chain(older.map(|(ts, _)| ts)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hlc::from_physical_ms;
    use crate::memspace::MemSpace;
    use proptest::prelude::*;

    fn set(key: &str, value: &str) -> WriteOp {
        WriteOp::Set(SetArgs { key: key.into(), value: value.into(), ..Default::default() })
    }

    fn get(space: &MemSpace, key: &str, now: u64) -> Option<KeyValue> {
        let read = PointRead { key: key.into(), at_revision: None, as_of: None };
        read_point(space, &read, now, 0).unwrap()
    }

    fn ts(ms: u64) -> u64 {
        from_physical_ms(ms)
    }

    #[test]
    fn revisions_count_sets_and_deletes() {
        let mut s = MemSpace::default();
        assert!(matches!(apply_write(&mut s, &set("k", "a"), ts(1)).unwrap(), WriteResult::Set { revision: 0, .. }));
        assert!(matches!(apply_write(&mut s, &set("k", "b"), ts(2)).unwrap(), WriteResult::Set { revision: 1, .. }));
        let del = WriteOp::Delete(DeleteArgs { key: "k".into(), ..Default::default() });
        assert!(matches!(
            apply_write(&mut s, &del, ts(3)).unwrap(),
            WriteResult::Delete { deleted: true, revision: 2, .. }
        ));
        assert_eq!(get(&s, "k", ts(4)), None);
        assert!(matches!(apply_write(&mut s, &set("k", "c"), ts(5)).unwrap(), WriteResult::Set { revision: 3, .. }));
        let extend = WriteOp::Extend { key: "k".into(), ttl_ms: 100 };
        apply_write(&mut s, &extend, ts(6)).unwrap();
        assert_eq!(get(&s, "k", ts(7)).unwrap().revision, 3);
    }

    #[test]
    fn conditions() {
        let mut s = MemSpace::default();
        let nx = WriteOp::Set(SetArgs { key: "k".into(), value: b"1".to_vec(), nx: true, ..Default::default() });
        assert!(matches!(apply_write(&mut s, &nx, ts(1)).unwrap(), WriteResult::Set { modified: true, .. }));
        assert!(matches!(
            apply_write(&mut s, &nx, ts(2)).unwrap(),
            WriteResult::Set { modified: false, revision: 0, .. }
        ));
        let xx = WriteOp::Set(SetArgs { key: "j".into(), value: b"1".to_vec(), xx: true, ..Default::default() });
        assert!(matches!(
            apply_write(&mut s, &xx, ts(3)).unwrap(),
            WriteResult::Set { modified: false, revision: -1, .. }
        ));
        let cmp = |v: &str, rev: Option<i64>| {
            WriteOp::Set(SetArgs {
                key: "k".into(),
                value: b"2".to_vec(),
                compare_value: Some(v.as_bytes().to_vec()),
                compare_revision: rev,
                ..Default::default()
            })
        };
        assert!(matches!(
            apply_write(&mut s, &cmp("0", None), ts(4)).unwrap(),
            WriteResult::Set { modified: false, .. }
        ));
        assert!(matches!(
            apply_write(&mut s, &cmp("1", Some(5)), ts(5)).unwrap(),
            WriteResult::Set { modified: false, .. }
        ));
        assert!(matches!(
            apply_write(&mut s, &cmp("1", Some(0)), ts(6)).unwrap(),
            WriteResult::Set { modified: true, revision: 1, .. }
        ));
    }

    #[test]
    fn expiry_is_judged_by_commit_time() {
        let mut s = MemSpace::default();
        let op = WriteOp::Set(SetArgs { key: "k".into(), value: b"v".to_vec(), ttl_ms: 100, ..Default::default() });
        apply_write(&mut s, &op, ts(1000)).unwrap();
        assert!(get(&s, "k", ts(1099)).is_some());
        assert!(get(&s, "k", ts(1100)).is_none());
        // nx succeeds on an expired key, and the revision keeps counting.
        let nx = WriteOp::Set(SetArgs { key: "k".into(), value: b"w".to_vec(), nx: true, ..Default::default() });
        assert!(matches!(
            apply_write(&mut s, &nx, ts(1200)).unwrap(),
            WriteResult::Set { modified: true, revision: 1, .. }
        ));
    }

    #[test]
    fn reads_at_revision_and_time() {
        let mut s = MemSpace::default();
        apply_write(&mut s, &set("k", "a"), ts(10)).unwrap();
        apply_write(&mut s, &set("k", "b"), ts(20)).unwrap();
        let at = |rev| read_point(&s, &PointRead { key: "k".into(), at_revision: Some(rev), as_of: None }, ts(30), 0);
        assert_eq!(at(0).unwrap().unwrap().value, b"a");
        assert_eq!(at(1).unwrap().unwrap().value, b"b");
        assert_eq!(at(2).unwrap(), None);
        let asof = |t| read_point(&s, &PointRead { key: "k".into(), at_revision: None, as_of: Some(t) }, ts(30), 0);
        assert_eq!(asof(ts(9)).unwrap(), None);
        assert_eq!(asof(ts(15)).unwrap().unwrap().value, b"a");
        assert_eq!(asof(ts(20)).unwrap().unwrap().value, b"b");
    }

    #[test]
    fn compaction_keeps_what_later_reads_need() {
        let mut s = MemSpace::default();
        apply_write(&mut s, &set("k", "a"), ts(10)).unwrap();
        apply_write(&mut s, &set("k", "b"), ts(20)).unwrap();
        apply_write(&mut s, &set("k", "c"), ts(30)).unwrap();
        apply_write(&mut s, &set("gone", "x"), ts(10)).unwrap();
        let del = WriteOp::Delete(DeleteArgs { key: "gone".into(), ..Default::default() });
        apply_write(&mut s, &del, ts(11)).unwrap();
        assert_eq!(s.compact(ts(25)).unwrap(), 3);
        let horizon = ts(25);
        let asof =
            |t| read_point(&s, &PointRead { key: "k".into(), at_revision: None, as_of: Some(t) }, ts(40), horizon);
        assert_eq!(asof(ts(25)).unwrap().unwrap().value, b"b");
        assert!(matches!(asof(ts(15)), Err(KvError::Compacted(_))));
        let at0 = read_point(&s, &PointRead { key: "k".into(), at_revision: Some(0), as_of: None }, ts(40), horizon);
        assert!(matches!(at0, Err(KvError::Compacted(_))));
        assert!(s.versions("gone").unwrap().is_empty());
    }

    #[test]
    fn scans_skip_dead_keys_and_page() {
        let mut s = MemSpace::default();
        for k in ["p/a", "p/b", "p/c", "q/a"] {
            apply_write(&mut s, &set(k, "v"), ts(1)).unwrap();
        }
        let del = WriteOp::Delete(DeleteArgs { key: "p/b".into(), ..Default::default() });
        apply_write(&mut s, &del, ts(2)).unwrap();
        let (items, more) = scan_prefix(&s, "p/", None, 1, None, ts(3)).unwrap();
        assert_eq!(items.iter().map(|i| i.key.as_str()).collect::<Vec<_>>(), ["p/a"]);
        assert!(more);
        let (items, more) = scan_prefix(&s, "p/", Some("p/a"), 10, None, ts(3)).unwrap();
        assert_eq!(items.iter().map(|i| i.key.as_str()).collect::<Vec<_>>(), ["p/c"]);
        assert!(!more);
    }

    proptest! {
        /// The version visible at any time equals a model that replays writes up to it.
        #[test]
        fn visibility_matches_a_replay(writes in prop::collection::vec((0u8..3, 0u8..4), 1..40), probe in 0u64..50) {
            let mut s = MemSpace::default();
            let mut model: Vec<(u64, Option<u8>)> = Vec::new();
            for (i, (k, v)) in writes.iter().enumerate() {
                let t = ts(i as u64 + 1);
                let key = format!("k{k}");
                if *v == 3 {
                    let del = WriteOp::Delete(DeleteArgs { key, ..Default::default() });
                    apply_write(&mut s, &del, t).unwrap();
                    if *k == 0 { model.push((t, None)); }
                } else {
                    apply_write(&mut s, &set(&key, &v.to_string()), t).unwrap();
                    if *k == 0 { model.push((t, Some(*v))); }
                }
            }
            let at = ts(probe);
            let expected = model.iter().rev().find(|(t, _)| *t <= at).and_then(|(_, v)| *v);
            let read = PointRead { key: "k0".into(), at_revision: None, as_of: Some(at) };
            let got = read_point(&s, &read, at, 0).unwrap().map(|kv| kv.value);
            prop_assert_eq!(got, expected.map(|v| v.to_string().into_bytes()));
        }
    }
}
