//! The bank invariant: transfers move money, never create or destroy it.
//!
//! Operations:
//! - `{"f": "read"}`; the `ok` carries `"value": {"account": balance, ...}` read in one
//!   transaction.
//! - `{"f": "transfer", "from": A, "to": B, "amount": N}`.
//!
//! Every `ok` read must add up to the configured total, since a snapshot read sees each
//! transfer whole or not at all; with `negative_allowed` false no balance may be below zero.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::history::{History, Operation, Outcome};
use crate::report::{Verdict, Violation, ViolationKind, impl_report, verdict_of};

/// What [`check_bank`] expects of every read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BankOptions {
    /// The sum of all balances, fixed by the workload's setup.
    pub total: i64,
    /// Whether overdrafts are legal in this workload.
    pub negative_allowed: bool,
}

impl BankOptions {
    /// Expects every read to total `total`, with no negative balance.
    pub fn new(total: i64) -> Self {
        Self { total, negative_allowed: false }
    }
}

/// The outcome of [`check_bank`].
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BankReport {
    /// Valid when every ok read had the right total and no forbidden negative balance.
    pub verdict: Verdict,
    /// `ok` reads checked.
    pub reads: usize,
    /// Transfers that completed `ok`.
    pub transfers_ok: usize,
    /// Transfers that failed or whose outcome is unknown.
    pub transfers_not_ok: usize,
    /// What went wrong.
    pub violations: Vec<Violation>,
}

impl BankReport {
    fn counts(&self) -> Vec<(&'static str, usize)> {
        vec![("reads", self.reads), ("transfers ok", self.transfers_ok), ("transfers not ok", self.transfers_not_ok)]
    }
}

impl_report!(BankReport, "bank");

/// Checks every `ok` read's balances against `options`.
pub fn check_bank(history: &History, options: &BankOptions) -> BankReport {
    let mut report = BankReport::default();
    match history.operations() {
        Ok(ops) => check_reads(&ops, options, &mut report),
        Err(e) => report.violations.push(Violation::unpaired(&e)),
    }
    report.verdict = verdict_of(&report.violations);
    report
}

fn check_reads(ops: &[Operation], options: &BankOptions, report: &mut BankReport) {
    for op in ops {
        match (op.f.as_str(), op.outcome) {
            ("transfer", Outcome::Ok) => report.transfers_ok += 1,
            ("transfer", _) => report.transfers_not_ok += 1,
            ("read", Outcome::Ok) => {
                report.reads += 1;
                check_read(op, options, &mut report.violations);
            }
            _ => {}
        }
    }
}

fn check_read(op: &Operation, options: &BankOptions, violations: &mut Vec<Violation>) {
    let balances = match balances(op) {
        Ok(b) => b,
        Err(reason) => {
            violations.push(Violation::malformed(op, reason));
            return;
        }
    };
    // i128 cannot overflow on any number of i64 balances a history can hold.
    let total: i128 = balances.iter().map(|(_, b)| i128::from(*b)).sum();
    if total != i128::from(options.total) {
        let explanation = format!(
            "read at {} ns totals {total}, expected {}: {}",
            op.complete_time,
            options.total,
            listing(&balances)
        );
        violations.push(Violation::new(ViolationKind::WrongTotal, explanation, vec![op.op_ref()]));
    }
    let negative: Vec<_> = balances.iter().filter(|(_, b)| *b < 0).cloned().collect();
    if !options.negative_allowed && !negative.is_empty() {
        let explanation = format!("read at {} ns saw negative balances: {}", op.complete_time, listing(&negative));
        violations.push(Violation::new(ViolationKind::NegativeBalance, explanation, vec![op.op_ref()]));
    }
}

/// The read's balances in account order (serde_json maps are sorted).
fn balances(op: &Operation) -> Result<Vec<(String, i64)>, String> {
    let map: &Map<String, Value> = match op.field("value") {
        Some(Value::Object(map)) => map,
        Some(other) => {
            return Err(format!("`value` should map accounts to balances, found {other}"));
        }
        None => return Err("field `value` is missing".to_string()),
    };
    map.iter()
        .map(|(account, v)| match v.as_i64() {
            Some(b) => Ok((account.clone(), b)),
            None => Err(format!("balance of {account:?} should be an integer, found {v}")),
        })
        .collect()
}

fn listing(balances: &[(String, i64)]) -> String {
    let parts: Vec<String> = balances.iter().map(|(a, b)| format!("{a}={b}")).collect();
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::testkit::Builder;

    fn read(b: Builder, p: u64, t: u64, balances: Value) -> Builder {
        b.ok(p, "read", t, t + 5, json!({}), json!({"value": balances}))
    }

    fn transfer(b: Builder, p: u64, t: u64) -> Builder {
        b.ok(p, "transfer", t, t + 5, json!({"from": "a", "to": "b", "amount": 5}), Value::Null)
    }

    #[test]
    fn conserved_totals_pass() {
        let b = read(Builder::new(), 0, 0, json!({"a": 50, "b": 50}));
        let b = transfer(b, 1, 10);
        let b = b.info(1, "transfer", 20, 25, json!({"from": "b", "to": "a", "amount": 1}));
        let b = read(b, 0, 30, json!({"a": 45, "b": 55}));
        let report = check_bank(&b.build(), &BankOptions::new(100));
        assert!(report.ok(), "{report}");
        assert_eq!((report.reads, report.transfers_ok, report.transfers_not_ok), (2, 1, 1));
    }

    #[test]
    fn changed_total_is_caught() {
        let b = read(Builder::new(), 0, 0, json!({"a": 50, "b": 50}));
        let b = transfer(b, 1, 10);
        let b = read(b, 0, 30, json!({"a": 45, "b": 50}));
        let report = check_bank(&b.build(), &BankOptions::new(100));
        let kinds: Vec<_> = report.violations.iter().map(|v| v.kind).collect();
        assert_eq!(kinds, vec![ViolationKind::WrongTotal], "{report}");
        assert!(report.violations[0].explanation.contains("totals 95"), "{report}");
    }

    #[test]
    fn negative_balances_are_flagged_unless_allowed() {
        let b = read(Builder::new(), 0, 0, json!({"a": -5, "b": 105}));
        let history = b.build();
        let report = check_bank(&history, &BankOptions::new(100));
        assert_eq!(report.violations[0].kind, ViolationKind::NegativeBalance, "{report}");
        let lenient = BankOptions { negative_allowed: true, ..BankOptions::new(100) };
        assert!(check_bank(&history, &lenient).ok());
        let b = read(Builder::new(), 0, 0, json!({"a": "lots"}));
        assert_eq!(check_bank(&b.build(), &BankOptions::new(100)).verdict, Verdict::Unknown);
    }
}
