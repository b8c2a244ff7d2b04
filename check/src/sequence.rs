//! Sequence uniqueness and idempotency.
//!
//! Operations:
//! - `{"f": "next", "sequence": S, "idempotency_key": K?}`; the `ok` carries `"value": N`.
//! - `{"f": "reserve", "sequence": S, "count": C, "idempotency_key": K?}`; the `ok` carries
//!   `"value": [first, last]`, an inclusive range (a bare `N` means `[N, N]`).
//!
//! `sequence` may be omitted for a single-sequence workload. Only `ok` allocations count:
//! an unknown one may have allocated values nobody saw, which is allowed (values may be
//! skipped, never repeated). Two allocations overlap only when they share a value, so
//! inclusive ranges are compared directly; with an increment other than 1 every value of
//! a sequence lies on the same stride, so overlapping ranges still share a value.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::history::{History, Operation, Outcome};
use crate::report::{Verdict, Violation, ViolationKind, impl_report, verdict_of};

/// The outcome of [`check_sequence`].
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SequenceReport {
    /// Valid when no value was handed out twice and every idempotency key was stable.
    pub verdict: Verdict,
    /// `ok` allocations, replays included.
    pub allocations: usize,
    /// Allocations answered from an idempotency record (same key seen before).
    pub replays: usize,
    /// Values handed out by distinct allocations (saturating).
    pub values: u64,
    /// What went wrong.
    pub violations: Vec<Violation>,
}

impl SequenceReport {
    fn counts(&self) -> Vec<(&'static str, usize)> {
        let values = usize::try_from(self.values).unwrap_or(usize::MAX);
        vec![("allocations", self.allocations), ("replays", self.replays), ("values", values)]
    }
}

impl_report!(SequenceReport, "sequence");

/// One `ok` allocation: the inclusive range `first..=last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Allocation {
    /// Index into the history's operations.
    op: usize,
    first: u64,
    last: u64,
}

/// Allocations of one sequence, split by whether an idempotency key can replay them.
#[derive(Debug, Default)]
struct Allocations {
    keyed: BTreeMap<String, Vec<Allocation>>,
    unkeyed: Vec<Allocation>,
}

/// Checks that no value is handed out twice and idempotency keys replay their allocation.
pub fn check_sequence(history: &History) -> SequenceReport {
    let mut report = SequenceReport::default();
    match history.operations() {
        Ok(ops) => check_ops(&ops, &mut report),
        Err(e) => report.violations.push(Violation::unpaired(&e)),
    }
    report.verdict = verdict_of(&report.violations);
    report
}

fn check_ops(ops: &[Operation], report: &mut SequenceReport) {
    for (name, allocs) in collect(ops, report) {
        let distinct = check_keys(ops, &name, &allocs.keyed, report);
        let mut all = allocs.unkeyed;
        all.extend(distinct);
        // Saturating: a single range may span all of u64.
        let values = all.iter().map(|a| (a.last - a.first).saturating_add(1));
        report.values = values.fold(report.values, u64::saturating_add);
        check_unique(ops, &name, all, &mut report.violations);
    }
}

/// Groups `ok` allocations by sequence and idempotency key.
fn collect(ops: &[Operation], report: &mut SequenceReport) -> BTreeMap<String, Allocations> {
    let mut sequences: BTreeMap<String, Allocations> = BTreeMap::new();
    let relevant =
        |(_, op): &(usize, &Operation)| op.outcome == Outcome::Ok && matches!(op.f.as_str(), "next" | "reserve");
    for (i, op) in ops.iter().enumerate().filter(relevant) {
        let parsed = parse(i, op).and_then(|a| Ok((a, op.name_field("sequence")?)));
        let (range, name) = match parsed {
            Ok(parsed) => parsed,
            Err(reason) => {
                report.violations.push(Violation::malformed(op, reason));
                continue;
            }
        };
        report.allocations += 1;
        let allocs = sequences.entry(name).or_default();
        match idempotency_key(op) {
            Some(key) => allocs.keyed.entry(key).or_default().push(range),
            None => allocs.unkeyed.push(range),
        }
    }
    sequences
}

fn idempotency_key(op: &Operation) -> Option<String> {
    match op.field("idempotency_key") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => Some(other.to_string()),
    }
}

/// The allocated range, checked to be non-empty.
fn parse(index: usize, op: &Operation) -> Result<Allocation, String> {
    let bad = |v: &Value| format!("`value` should be N or [first, last], found {v}");
    let (first, last) = match op.field("value") {
        Some(Value::Array(range)) => match range.as_slice() {
            [a, b] => (a.as_u64().ok_or_else(|| bad(a))?, b.as_u64().ok_or_else(|| bad(b))?),
            _ => return Err(bad(&Value::Array(range.clone()))),
        },
        Some(v) => (v.as_u64().ok_or_else(|| bad(v))?, v.as_u64().ok_or_else(|| bad(v))?),
        None => return Err("field `value` is missing".to_string()),
    };
    if first > last {
        return Err(format!("range [{first}, {last}] is empty"));
    }
    Ok(Allocation { op: index, first, last })
}

/// Every allocation under one key must be the first one; returns one allocation per key.
fn check_keys(
    ops: &[Operation],
    name: &str,
    keyed: &BTreeMap<String, Vec<Allocation>>,
    report: &mut SequenceReport,
) -> Vec<Allocation> {
    let mut distinct = Vec::new();
    for (key, allocs) in keyed {
        let Some((first, rest)) = allocs.split_first() else {
            continue;
        };
        distinct.push(*first);
        report.replays += rest.len();
        for other in rest.iter().filter(|a| (a.first, a.last) != (first.first, first.last)) {
            let explanation = format!(
                "sequence {name:?}, idempotency key {key:?}: first answered {}, then {}",
                range(first),
                range(other)
            );
            let refs = vec![ops[other.op].op_ref(), ops[first.op].op_ref()];
            let v = Violation::new(ViolationKind::IdempotencyMismatch, explanation, refs);
            report.violations.push(v);
        }
    }
    distinct
}

/// Sweeps allocations by first value; any that starts at or below the greatest last value
/// seen so far shares values with the allocation holding that last value.
fn check_unique(ops: &[Operation], name: &str, mut all: Vec<Allocation>, violations: &mut Vec<Violation>) {
    all.sort_by_key(|a| (a.first, a.last));
    let mut reach: Option<Allocation> = None;
    for a in all {
        match reach {
            Some(r) if a.first <= r.last => {
                let shared = format!("[{}, {}]", a.first, a.last.min(r.last));
                let explanation =
                    format!("sequence {name:?}: values {shared} handed out twice, in {} and {}", range(&r), range(&a));
                let refs = vec![ops[a.op].op_ref(), ops[r.op].op_ref()];
                violations.push(Violation::new(ViolationKind::DuplicateValue, explanation, refs));
                if a.last > r.last {
                    reach = Some(a);
                }
            }
            _ => reach = Some(a),
        }
    }
}

fn range(a: &Allocation) -> String {
    if a.first == a.last { a.first.to_string() } else { format!("[{}, {}]", a.first, a.last) }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::testkit::Builder;

    fn next(b: Builder, p: u64, t: u64, key: Option<&str>, v: u64) -> Builder {
        let args = json!({"sequence": "s", "idempotency_key": key});
        b.ok(p, "next", t, t + 5, args, json!({"value": v}))
    }

    fn reserve(b: Builder, p: u64, t: u64, key: Option<&str>, range: [u64; 2]) -> Builder {
        let args = json!({"sequence": "s", "count": range[1] - range[0] + 1, "idempotency_key": key});
        b.ok(p, "reserve", t, t + 5, args, json!({"value": range}))
    }

    fn kinds(report: &SequenceReport) -> Vec<ViolationKind> {
        report.violations.iter().map(|v| v.kind).collect()
    }

    #[test]
    fn unique_values_and_replays_pass() {
        let b = next(Builder::new(), 0, 0, None, 1);
        let b = next(b, 1, 1, Some("a"), 2);
        let b = next(b, 1, 10, Some("a"), 2);
        let b = reserve(b, 2, 20, Some("b"), [3, 10]);
        let b = reserve(b, 0, 30, Some("b"), [3, 10]);
        let b = b.info(0, "next", 40, 45, json!({"sequence": "s"}));
        let b = next(b, 0, 50, None, 12);
        let report = check_sequence(&b.build());
        assert!(report.ok(), "{report}");
        assert_eq!((report.allocations, report.replays, report.values), (6, 2, 11));
    }

    #[test]
    fn duplicate_value_is_caught() {
        let b = next(Builder::new(), 0, 0, None, 1);
        let b = reserve(b, 1, 10, None, [5, 9]);
        let b = next(b, 2, 20, Some("k"), 7);
        let report = check_sequence(&b.build());
        assert_eq!(kinds(&report), vec![ViolationKind::DuplicateValue], "{report}");
        assert!(report.violations[0].explanation.contains("[7, 7]"), "{report}");
    }

    #[test]
    fn idempotency_key_with_two_allocations_is_caught() {
        let b = reserve(Builder::new(), 0, 0, Some("k"), [1, 3]);
        let b = reserve(b, 1, 10, Some("k"), [4, 6]);
        let report = check_sequence(&b.build());
        assert_eq!(kinds(&report), vec![ViolationKind::IdempotencyMismatch], "{report}");
    }

    #[test]
    fn sequences_are_independent_and_bad_values_malformed() {
        let b = next(Builder::new(), 0, 0, None, 1);
        let b = b.ok(1, "next", 10, 15, json!({"sequence": "t"}), json!({"value": 1}));
        assert!(check_sequence(&b.build()).ok());
        let b = Builder::new().ok(0, "reserve", 0, 5, json!({}), json!({"value": [5, 2]}));
        let report = check_sequence(&b.build());
        assert_eq!(kinds(&report), vec![ViolationKind::Malformed], "{report}");
        assert_eq!(report.verdict, Verdict::Unknown);
    }
}
