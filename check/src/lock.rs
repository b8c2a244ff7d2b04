//! Lock safety: fencing tokens and mutual exclusion.
//!
//! Operations:
//! - `{"f": "acquire", "lock": L, "owner": O?}`; the `ok` carries `"token": N`. Without an
//!   `owner` the process is the owner. `fail` means not granted; an unknown acquire may have
//!   been granted with a token nobody saw, so it constrains nothing.
//! - `{"f": "release", "lock": L}`: a holding interval ends at the invoke of the holder's
//!   next release of that lock (whatever its outcome), or never.
//! - `{"f": "write", "resource": R, "token": N}`: `ok` means the fenced resource accepted
//!   the token, `fail` that it rejected it.
//!
//! Leases may expire, so two holders overlapping in real time is expected; what keeps the
//! resource safe is that the later grant carries the greater token. Acquires that overlap
//! in real time may have been granted in either order, so only pairs where one acquire
//! completed before the other was invoked are judged. Hence the checks:
//! grants ordered by real time carry strictly increasing tokens (equal only for the same
//! owner re-acquiring), no token goes to two owners, and no resource accepts a token lower
//! than one it accepted earlier in real time.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::history::{History, Operation, Outcome, TIME_INFINITY};
use crate::report::{Verdict, Violation, ViolationKind, impl_report, verdict_of};

/// The outcome of [`check_lock`].
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LockReport {
    /// Valid when no violation was found.
    pub verdict: Verdict,
    /// Acquires that completed `ok`.
    pub grants: usize,
    /// Release invokes.
    pub releases: usize,
    /// Resource writes that were accepted.
    pub writes_accepted: usize,
    /// Resource writes that were rejected.
    pub writes_rejected: usize,
    /// What went wrong.
    pub violations: Vec<Violation>,
}

impl LockReport {
    fn counts(&self) -> Vec<(&'static str, usize)> {
        vec![
            ("grants", self.grants),
            ("releases", self.releases),
            ("writes accepted", self.writes_accepted),
            ("writes rejected", self.writes_rejected),
        ]
    }
}

impl_report!(LockReport, "lock");

/// A granted lock: who, which token, and when they held it.
#[derive(Debug, Clone)]
struct Grant {
    op: usize,
    owner: String,
    token: u64,
    invoke: u64,
    /// When the holder learned it held the lock.
    acquired: u64,
    /// Invoke of the holder's next release; `TIME_INFINITY` if none.
    released: u64,
}

/// An event with a token in real time: a grant or an accepted resource write.
#[derive(Debug, Clone, Copy)]
struct Stamped {
    invoke: u64,
    complete: u64,
    token: u64,
    /// Index of the grant or the operation it came from.
    id: usize,
}

/// Checks fencing tokens and holders of every lock and fenced resource in `history`.
pub fn check_lock(history: &History) -> LockReport {
    let mut report = LockReport::default();
    match history.operations() {
        Ok(ops) => check_ops(&ops, &mut report),
        Err(e) => report.violations.push(Violation::unpaired(&e)),
    }
    report.verdict = verdict_of(&report.violations);
    report
}

fn check_ops(ops: &[Operation], report: &mut LockReport) {
    for grants in grants(ops, report).values() {
        check_grants(ops, grants, &mut report.violations);
    }
    for writes in resource_writes(ops, report).values() {
        check_resource(ops, writes, &mut report.violations);
    }
}

/// Grants per lock, with their holding intervals closed by releases.
fn grants(ops: &[Operation], report: &mut LockReport) -> BTreeMap<String, Vec<Grant>> {
    let mut locks: BTreeMap<String, Vec<Grant>> = BTreeMap::new();
    // (process, lock) -> grants still held; a process holds until it invokes a release.
    let mut open: BTreeMap<(u64, String), Vec<usize>> = BTreeMap::new();
    for (i, op) in ops.iter().enumerate() {
        let lock = match (op.f.as_str(), op.name_field("lock")) {
            ("acquire" | "release", Ok(lock)) => lock,
            ("acquire" | "release", Err(reason)) => {
                report.violations.push(Violation::malformed(op, reason));
                continue;
            }
            _ => continue,
        };
        let held = locks.entry(lock.clone()).or_default();
        let open = open.entry((op.process, lock)).or_default();
        if op.f == "release" {
            report.releases += 1;
            for g in open.drain(..) {
                held[g].released = op.invoke_time;
            }
            continue;
        }
        if op.outcome != Outcome::Ok {
            continue;
        }
        match grant(i, op) {
            Ok(g) => {
                report.grants += 1;
                open.push(held.len());
                held.push(g);
            }
            Err(reason) => report.violations.push(Violation::malformed(op, reason)),
        }
    }
    locks
}

fn grant(i: usize, op: &Operation) -> Result<Grant, String> {
    let owner = match op.field("owner") {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => format!("process {}", op.process),
    };
    Ok(Grant {
        op: i,
        owner,
        token: op.u64_field("token")?,
        invoke: op.invoke_time,
        acquired: op.complete_time,
        released: TIME_INFINITY,
    })
}

fn check_grants(ops: &[Operation], grants: &[Grant], violations: &mut Vec<Violation>) {
    duplicate_tokens(ops, grants, violations);
    let stamped: Vec<Stamped> = grants
        .iter()
        .enumerate()
        .map(|(id, g)| Stamped { invoke: g.invoke, complete: g.acquired, token: g.token, id })
        .collect();
    for (earlier, later) in regressions(&stamped) {
        let (a, b) = (&grants[earlier], &grants[later]);
        let overlap = b.acquired < a.released && a.acquired < b.released;
        let kind = if overlap && a.owner != b.owner {
            ViolationKind::OverlappingHolders
        } else {
            ViolationKind::TokenNotIncreasing
        };
        let explanation = format!(
            "lock granted to {} with token {} at {} ns, then to {} with lower token {} at {} \
             ns{}",
            a.owner,
            a.token,
            a.acquired,
            b.owner,
            b.token,
            b.acquired,
            if overlap { ", while the first still held it" } else { "" },
        );
        let refs = vec![ops[b.op].op_ref(), ops[a.op].op_ref()];
        violations.push(Violation::new(kind, explanation, refs));
    }
}

/// Two different owners granted one token: fencing cannot tell them apart.
fn duplicate_tokens(ops: &[Operation], grants: &[Grant], violations: &mut Vec<Violation>) {
    let mut first: BTreeMap<u64, &Grant> = BTreeMap::new();
    for g in grants {
        let Some(prior) = first.get(&g.token) else {
            first.insert(g.token, g);
            continue;
        };
        if prior.owner != g.owner {
            let explanation = format!("token {} granted to both {} and {}", g.token, prior.owner, g.owner);
            let refs = vec![ops[g.op].op_ref(), ops[prior.op].op_ref()];
            violations.push(Violation::new(ViolationKind::DuplicateToken, explanation, refs));
        }
    }
}

/// Ok resource writes per resource, counting accepted and rejected ones.
fn resource_writes(ops: &[Operation], report: &mut LockReport) -> BTreeMap<String, Vec<Stamped>> {
    let mut resources: BTreeMap<String, Vec<Stamped>> = BTreeMap::new();
    for (id, op) in ops.iter().enumerate().filter(|(_, op)| op.f == "write") {
        match op.outcome {
            Outcome::Fail => report.writes_rejected += 1,
            Outcome::Unknown => {}
            Outcome::Ok => {
                let parsed = op.name_field("resource").and_then(|r| Ok((r, op.u64_field("token")?)));
                let (resource, token) = match parsed {
                    Ok(p) => p,
                    Err(reason) => {
                        report.violations.push(Violation::malformed(op, reason));
                        continue;
                    }
                };
                report.writes_accepted += 1;
                let s = Stamped { invoke: op.invoke_time, complete: op.complete_time, token, id };
                resources.entry(resource).or_default().push(s);
            }
        }
    }
    resources
}

fn check_resource(ops: &[Operation], writes: &[Stamped], violations: &mut Vec<Violation>) {
    for (earlier, later) in regressions(writes) {
        let (a, b) = (&ops[earlier], &ops[later]);
        let resource = b.name_field("resource").unwrap_or_default();
        let (ta, tb) = (a.u64_field("token").unwrap_or(0), b.u64_field("token").unwrap_or(0));
        let explanation = format!(
            "resource {resource:?} accepted token {tb} at {} ns after it had accepted token \
             {ta} (acknowledged at {} ns)",
            b.complete_time, a.complete_time
        );
        let refs = vec![b.op_ref(), a.op_ref()];
        violations.push(Violation::new(ViolationKind::StaleTokenAccepted, explanation, refs));
    }
}

/// Pairs `(earlier.id, later.id)` where `earlier` completed before `later` was invoked yet
/// carries a greater token. Each `later` is reported once, against the greatest such token.
///
/// Sorting by completion time makes "completed before t" a prefix, so a prefix maximum
/// answers each query with one binary search: O(n log n) rather than all pairs.
fn regressions(items: &[Stamped]) -> Vec<(usize, usize)> {
    let mut by_complete: Vec<Stamped> = items.to_vec();
    by_complete.sort_by_key(|s| s.complete);
    let mut prefix_max: Vec<Stamped> = Vec::with_capacity(by_complete.len());
    for s in &by_complete {
        let best = match prefix_max.last() {
            Some(m) if m.token >= s.token => *m,
            _ => *s,
        };
        prefix_max.push(best);
    }
    let mut found = Vec::new();
    for later in items {
        let before = by_complete.partition_point(|s| s.complete < later.invoke);
        let Some(earlier) = before.checked_sub(1).map(|i| prefix_max[i]) else {
            continue;
        };
        if earlier.token > later.token {
            found.push((earlier.id, later.id));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::testkit::Builder;

    fn acquire(b: Builder, p: u64, t0: u64, t1: u64, token: u64) -> Builder {
        b.ok(p, "acquire", t0, t1, json!({"lock": "L"}), json!({"token": token}))
    }

    fn release(b: Builder, p: u64, t0: u64, t1: u64) -> Builder {
        b.ok(p, "release", t0, t1, json!({"lock": "L"}), Value::Null)
    }

    fn write(b: Builder, p: u64, t0: u64, t1: u64, token: u64) -> Builder {
        b.ok(p, "write", t0, t1, json!({"resource": "R", "token": token}), Value::Null)
    }

    fn kinds(report: &LockReport) -> Vec<ViolationKind> {
        report.violations.iter().map(|v| v.kind).collect()
    }

    #[test]
    fn increasing_tokens_with_expired_lease_overlap_pass() {
        let b = acquire(Builder::new(), 0, 0, 10, 1);
        let b = write(b, 0, 20, 30, 1);
        // Process 0 stalls past its lease; process 1 gets a greater token meanwhile.
        let b = acquire(b, 1, 40, 50, 2);
        let b = write(b, 1, 60, 70, 2);
        let b = b.fail(0, "write", 80, 90, json!({"resource": "R", "token": 1}));
        let b = release(b, 0, 100, 110);
        let b = release(b, 1, 100, 110);
        let b = acquire(b, 0, 120, 130, 3);
        let report = check_lock(&b.build());
        assert!(report.ok(), "{report}");
        assert_eq!((report.grants, report.writes_accepted, report.writes_rejected), (3, 2, 1));
    }

    #[test]
    fn stale_fencing_token_accepted_is_caught() {
        let b = acquire(Builder::new(), 0, 0, 10, 1);
        let b = acquire(b, 1, 40, 50, 2);
        let b = write(b, 1, 60, 70, 2);
        let b = write(b, 0, 80, 90, 1);
        let report = check_lock(&b.build());
        assert_eq!(kinds(&report), vec![ViolationKind::StaleTokenAccepted], "{report}");
        assert_eq!(report.violations[0].ops[0].event, 6, "the stale write comes first");
    }

    #[test]
    fn concurrent_writes_may_be_accepted_in_token_order() {
        let b = write(Builder::new(), 0, 0, 50, 2);
        let b = write(b, 1, 10, 60, 1);
        assert!(check_lock(&b.build()).ok());
    }

    #[test]
    fn overlapping_holders_with_lower_token_are_caught() {
        let b = acquire(Builder::new(), 0, 0, 10, 5);
        let b = acquire(b, 1, 20, 30, 4);
        let b = release(b, 0, 40, 50);
        let report = check_lock(&b.build());
        assert_eq!(kinds(&report), vec![ViolationKind::OverlappingHolders], "{report}");
    }

    #[test]
    fn token_going_backwards_after_release_is_caught() {
        let b = acquire(Builder::new(), 0, 0, 10, 5);
        let b = release(b, 0, 20, 30);
        let b = acquire(b, 1, 40, 50, 3);
        let report = check_lock(&b.build());
        assert_eq!(kinds(&report), vec![ViolationKind::TokenNotIncreasing], "{report}");
    }

    #[test]
    fn same_token_to_two_owners_is_caught_but_reacquire_is_not() {
        let b = acquire(Builder::new(), 0, 0, 10, 7);
        let b = acquire(b, 0, 20, 30, 7);
        assert!(check_lock(&b.build()).ok(), "re-acquire by the same owner");
        let b = acquire(Builder::new(), 0, 0, 10, 7);
        let b = acquire(b, 1, 5, 30, 7);
        let report = check_lock(&b.build());
        assert_eq!(kinds(&report), vec![ViolationKind::DuplicateToken], "{report}");
    }

    #[test]
    fn missing_token_is_malformed() {
        let b = Builder::new().ok(0, "acquire", 0, 10, json!({"lock": "L"}), Value::Null);
        let report = check_lock(&b.build());
        assert_eq!(report.verdict, Verdict::Unknown);
    }
}
