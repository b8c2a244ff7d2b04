//! Sequence semantics, pure: creating, reserving and replaying, with no storage.
//!
//! A sequence hands out `start`, `start + increment`, ... up to its maximum. It stores
//! how many values it handed out (`allocated`) rather than the next value, so the next
//! value is computed in `i128` and can never wrap. A reservation that would pass the
//! maximum allocates nothing. An idempotency key remembers its allocation so that a
//! retried call gets the same values instead of new ones.

use serde::{Deserialize, Serialize};

use crate::error::KvError;
use crate::types::{Allocation, SequenceInfo, SequenceOp, SequenceReply};

/// The first allocation made under an idempotency key, kept for the retention window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// Commit timestamp of the allocation; compaction drops records older than the window.
    pub ts: u64,
    pub allocation: Allocation,
}

impl Allocation {
    /// The last value of the allocation.
    pub fn last(&self) -> i64 {
        let last = i128::from(self.first) + i128::from(self.count.saturating_sub(1)) * i128::from(self.increment);
        // Allocations are checked against the sequence's maximum (at most i64::MAX).
        i64::try_from(last).unwrap_or(i64::MAX)
    }
}

impl SequenceInfo {
    fn value_at(&self, index: u64) -> i128 {
        i128::from(self.start) + i128::from(index) * i128::from(self.increment)
    }

    /// The largest value the sequence may hand out.
    pub fn limit(&self) -> i64 {
        self.max.unwrap_or(i64::MAX)
    }

    /// The value the next call gets; `None` when the sequence is exhausted.
    pub fn next_value(&self) -> Option<i64> {
        i64::try_from(self.value_at(self.allocated)).ok().filter(|v| *v <= self.limit())
    }

    /// The high-water mark: the last value handed out; `None` before the first.
    pub fn last_value(&self) -> Option<i64> {
        let last = self.allocated.checked_sub(1)?;
        i64::try_from(self.value_at(last)).ok()
    }
}

/// Checks a new sequence's settings and returns it, or the existing one unchanged
/// (`false`: not created).
pub fn create(
    existing: Option<&SequenceInfo>,
    start: i64,
    increment: i64,
    max: Option<i64>,
) -> Result<(SequenceInfo, bool), KvError> {
    if increment <= 0 {
        return Err(KvError::InvalidInput(format!("sequence increment must be at least 1 (got {increment})")));
    }
    if let Some(max) = max
        && max < start
    {
        return Err(KvError::InvalidInput(format!("sequence max {max} is below its start {start}")));
    }
    Ok(match existing {
        Some(info) => (info.clone(), false),
        None => (SequenceInfo { start, increment, max, allocated: 0 }, true),
    })
}

/// Hands out `count` values of sequence `name`: the updated sequence and the values.
/// Passing the maximum is [`KvError::Exhausted`] and allocates nothing.
pub fn reserve(name: &str, info: &SequenceInfo, count: u64) -> Result<(SequenceInfo, Allocation), KvError> {
    if count == 0 {
        return Err(KvError::InvalidInput("reserve count must be at least 1".into()));
    }
    let first = info.value_at(info.allocated);
    let last = info.value_at(info.allocated.saturating_add(count - 1));
    let limit = info.limit();
    if last > i128::from(limit) {
        let remaining =
            if first > i128::from(limit) { 0 } else { (i128::from(limit) - first) / i128::from(info.increment) + 1 };
        return Err(KvError::Exhausted(format!(
            "sequence {name:?} has {remaining} value(s) left before its maximum {limit}; {count} asked, none allocated"
        )));
    }
    // `first <= last <= limit <= i64::MAX` and `first >= start`, so it fits.
    let first = i64::try_from(first).map_err(|_| KvError::Internal(format!("sequence {name:?} overflowed")))?;
    let allocated = info.allocated.saturating_add(count);
    Ok((SequenceInfo { allocated, ..info.clone() }, Allocation { first, count, increment: info.increment }))
}

/// Applies a sequence operation to the state a transaction read (`None`: no such
/// sequence): the state afterwards and the reply. Idempotency keys belong to single
/// calls; inside a transaction the transaction itself is the unit, so they are refused.
pub fn sequence_step(
    info: Option<&SequenceInfo>,
    op: &SequenceOp,
) -> Result<(Option<SequenceInfo>, SequenceReply), KvError> {
    match op {
        SequenceOp::Create { start, increment, max, .. } => {
            let (info, created) = create(info, *start, *increment, *max)?;
            Ok((Some(info.clone()), SequenceReply::Created { created, info }))
        }
        SequenceOp::Reserve { idempotency_key: Some(_), .. } => Err(KvError::InvalidInput(
            "idempotency keys are not used inside a transaction: the transaction commits once or not at all".into(),
        )),
        SequenceOp::Reserve { name, count, idempotency_key: None } => {
            let info = info.ok_or_else(|| KvError::NotFound(format!("sequence {name:?} does not exist")))?;
            let (next, allocation) = reserve(name, info, *count)?;
            Ok((Some(next), SequenceReply::Allocated { allocation, replayed: false }))
        }
        SequenceOp::Delete { .. } => Ok((None, SequenceReply::Deleted { deleted: info.is_some() })),
    }
}

/// Answers a replayed idempotency key: the first allocation, when the count matches.
pub fn replay(name: &str, key: &str, prior: &KeyRecord, count: u64) -> Result<Allocation, KvError> {
    if prior.allocation.count != count {
        return Err(KvError::InvalidInput(format!(
            "idempotency key {key:?} of sequence {name:?} was first used for {} value(s), not {count}",
            prior.allocation.count
        )));
    }
    Ok(prior.allocation)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[test]
    fn create_checks_settings() {
        assert!(create(None, 1, 0, None).is_err_and(|e| e.to_string().contains("increment must be at least 1")));
        assert!(create(None, 1, -2, None).is_err());
        assert!(create(None, 10, 1, Some(9)).is_err_and(|e| e.to_string().contains("below its start")));
        let (info, created) = create(None, 5, 2, Some(9)).expect("valid");
        assert!(created);
        assert_eq!(info.next_value(), Some(5));
        assert_eq!(info.last_value(), None);
        let (same, created) = create(Some(&info), 0, 1, None).expect("exists");
        assert!(!created);
        assert_eq!(same, info);
    }

    #[test]
    fn reserve_until_the_maximum() {
        let (info, _) = create(None, 5, 2, Some(11)).expect("valid");
        let (info, a) = reserve("s", &info, 2).expect("5, 7");
        assert_eq!((a.first, a.last(), a.count), (5, 7, 2));
        let refused = reserve("s", &info, 3).expect_err("9, 11, 13 passes 11");
        assert!(matches!(&refused, KvError::Exhausted(m) if m.contains("2 value(s) left")), "{refused}");
        let (info, a) = reserve("s", &info, 2).expect("9, 11");
        assert_eq!((a.first, a.last()), (9, 11));
        assert_eq!(info.last_value(), Some(11));
        assert_eq!(info.next_value(), None);
        assert!(reserve("s", &info, 1).is_err_and(|e| e.to_string().contains("0 value(s) left")));
        assert!(reserve("s", &info, 0).is_err());
    }

    #[test]
    fn no_wrap_at_i64_max() {
        let (info, _) = create(None, i64::MAX - 1, 1, None).expect("valid");
        let (info, a) = reserve("s", &info, 2).expect("the last two");
        assert_eq!(a.last(), i64::MAX);
        assert!(matches!(reserve("s", &info, 1), Err(KvError::Exhausted(_))));
        let (big, _) = create(None, 0, i64::MAX, None).expect("valid");
        assert!(reserve("s", &big, 3).is_err());
    }

    #[test]
    fn replays_need_the_same_count() {
        let prior = KeyRecord { ts: 1, allocation: Allocation { first: 3, count: 2, increment: 1 } };
        assert_eq!(replay("s", "k", &prior, 2), Ok(prior.allocation));
        assert!(replay("s", "k", &prior, 1).is_err_and(|e| e.to_string().contains("first used for 2")));
    }

    proptest! {
        /// Whatever the settings and counts, no value is handed out twice, none passes
        /// the maximum, and a refused reservation changes nothing.
        #[test]
        fn values_are_unique_and_bounded(
            start in -1_000i64..1_000,
            increment in 1i64..7,
            span in 0i64..400,
            counts in proptest::collection::vec(1u64..20, 1..40),
        ) {
            let (mut info, _) = create(None, start, increment, Some(start + span)).expect("valid");
            let mut seen = BTreeSet::new();
            for count in counts {
                match reserve("s", &info, count) {
                    Ok((next, a)) => {
                        for i in 0..a.count {
                            let v = a.first + i as i64 * a.increment;
                            prop_assert!(v <= start + span);
                            prop_assert!(seen.insert(v), "{v} handed out twice");
                        }
                        info = next;
                    }
                    Err(e) => prop_assert!(matches!(e, KvError::Exhausted(_))),
                }
            }
            prop_assert_eq!(seen.len() as u64, info.allocated);
        }
    }
}
