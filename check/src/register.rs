//! Linearizability of single registers, one key at a time.
//!
//! Operations (fields on the invoke; results on the `ok`):
//! - `{"f": "read", "key": K, "value": V|null}`: `value` on the `ok` is what was read;
//!   `null` means the key had never been written (the initial value).
//! - `{"f": "write", "key": K, "value": V}`.
//! - `{"f": "cas", "key": K, "expected": V, "new": V}`: `ok` means it swapped, `fail` that it
//!   definitely did not.
//!
//! `key` may be omitted for a single-register workload. A failed write or cas never took
//! effect and is dropped; a read that did not complete `ok` constrains nothing and is dropped;
//! an unknown write or cas may take effect at any point after its invoke, or never.
//!
//! The search (in `search.rs`) is Wing & Gong's, with Lowe's memoization of (linearized set,
//! register value) as in Porcupine: linearizability is compositional, so each key is
//! searched on its own. Its cost grows with the number of ops concurrent at any moment,
//! and unknown outcomes stay concurrent with everything after them, so long runs with many
//! timeouts should spread ops over many keys (as Jepsen's `independent` does); past
//! `states_max` a key is reported `Unknown`, never passed.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use serde_json::Value;

use crate::history::{History, Operation, Outcome};
use crate::report::{OpRef, Verdict, Violation, ViolationKind, impl_report, verdict_of};
use search::{End, Furthest, Search};

/// Bounds and starting state for [`check_register`].
#[derive(Debug, Clone, PartialEq)]
pub struct RegisterOptions {
    /// Distinct (linearized set, value) configurations explored per key before the key is
    /// reported `Unknown`. Each is remembered while its key is searched, at about
    /// (concurrent ops + unknown ops) / 8 bytes plus a few dozen of overhead, so the
    /// default (one million) stays within a few hundred MiB.
    pub states_max: usize,
    /// The value every register holds before its first write; `null` means "never written".
    pub initial: Value,
}

impl Default for RegisterOptions {
    fn default() -> Self {
        Self { states_max: 1_000_000, initial: Value::Null }
    }
}

/// The outcome of [`check_register`].
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RegisterReport {
    /// Valid only when every key is linearizable.
    pub verdict: Verdict,
    /// Distinct keys seen.
    pub keys: usize,
    /// Operations that constrain the search (ok reads, ok or unknown writes and cas).
    pub ops: usize,
    /// Keys shown linearizable.
    pub keys_linearizable: usize,
    /// Keys on which the search bound ran out.
    pub keys_unknown: usize,
    /// Configurations explored over all keys.
    pub states_explored: usize,
    /// Non-linearizable keys, malformed operations, and keys the bound cut short.
    pub violations: Vec<Violation>,
}

impl RegisterReport {
    fn counts(&self) -> Vec<(&'static str, usize)> {
        vec![
            ("keys", self.keys),
            ("ops", self.ops),
            ("linearizable", self.keys_linearizable),
            ("unknown", self.keys_unknown),
            ("states", self.states_explored),
        ]
    }
}

impl_report!(RegisterReport, "register");

/// Checks that every key's reads, writes and compare-and-sets are linearizable.
pub fn check_register(history: &History, options: &RegisterOptions) -> RegisterReport {
    let mut report = RegisterReport::default();
    match history.operations() {
        Ok(ops) => check_keys(&ops, options, &mut report),
        Err(e) => report.violations.push(Violation::unpaired(&e)),
    }
    report.verdict = verdict_of(&report.violations);
    report
}

fn check_keys(ops: &[Operation], options: &RegisterOptions, report: &mut RegisterReport) {
    let mut values = Values::default();
    let initial = values.intern(&options.initial);
    let keys = partition(ops, &mut values, &mut report.violations);
    report.keys = keys.len();
    for (key, reg_ops) in &keys {
        report.ops += reg_ops.len();
        let result = Search::new(reg_ops, initial, options.states_max).run();
        report.states_explored += result.states;
        let violation = match result.end {
            End::Linearizable => {
                report.keys_linearizable += 1;
                continue;
            }
            End::Bound => {
                report.keys_unknown += 1;
                bound_violation(key, reg_ops.len(), options)
            }
            End::NotLinearizable(furthest) => not_linearizable(key, reg_ops, ops, &values, &furthest),
        };
        report.violations.push(violation);
    }
}

/// What one register operation does, with values interned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Action {
    Read(u32),
    Write(u32),
    Cas { expected: u32, new: u32 },
}

/// A register operation as the search sees it.
#[derive(Debug, Clone, Copy)]
struct RegOp {
    action: Action,
    invoke: u64,
    /// `TIME_INFINITY` for unknown outcomes.
    complete: u64,
    /// False when the outcome is unknown: the op may be left out of a linearization.
    required: bool,
    /// Index into the history's operations.
    source: usize,
}

impl Action {
    /// The register value after this action from `state`, or `None` if it cannot apply.
    fn step(self, state: u32) -> Option<u32> {
        match self {
            Action::Read(v) => (v == state).then_some(state),
            Action::Write(v) => Some(v),
            Action::Cas { expected, new } => (expected == state).then_some(new),
        }
    }
}

/// Interns JSON values so that states are small, hashable integers.
#[derive(Debug, Default)]
struct Values {
    ids: HashMap<String, u32>,
    names: Vec<String>,
}

impl Values {
    /// serde_json sorts object keys, so the compact text is a canonical form.
    fn intern(&mut self, value: &Value) -> u32 {
        let text = value.to_string();
        if let Some(id) = self.ids.get(&text) {
            return *id;
        }
        let id = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
        self.names.push(text.clone());
        self.ids.insert(text, id);
        id
    }

    fn name(&self, id: u32) -> &str {
        self.names.get(id as usize).map_or("?", String::as_str)
    }
}

/// Splits register operations by key, dropping those that constrain nothing.
fn partition(ops: &[Operation], values: &mut Values, violations: &mut Vec<Violation>) -> BTreeMap<String, Vec<RegOp>> {
    let mut keys: BTreeMap<String, Vec<RegOp>> = BTreeMap::new();
    for (source, op) in ops.iter().enumerate() {
        let parsed = match parse_op(op, values) {
            Ok(Some(action)) => action,
            Ok(None) => continue,
            Err(reason) => {
                violations.push(Violation::malformed(op, reason));
                continue;
            }
        };
        let key = match op.name_field("key") {
            Ok(key) => key,
            Err(reason) => {
                violations.push(Violation::malformed(op, reason));
                continue;
            }
        };
        let required = op.outcome == Outcome::Ok;
        let reg_op = RegOp { action: parsed, invoke: op.invoke_time, complete: op.complete_time, required, source };
        keys.entry(key).or_default().push(reg_op);
    }
    keys
}

/// The action of a register operation, `None` for ops that never took effect or observed
/// nothing, or a reason the op is malformed.
fn parse_op(op: &Operation, values: &mut Values) -> Result<Option<Action>, String> {
    let mut value_of =
        |name: &str| op.field(name).map(|v| values.intern(v)).ok_or_else(|| format!("field `{name}` is missing"));
    match (op.f.as_str(), op.outcome) {
        (_, Outcome::Fail) | ("read", Outcome::Unknown) => Ok(None),
        ("read", Outcome::Ok) => Ok(Some(Action::Read(value_of("value")?))),
        ("write", _) => Ok(Some(Action::Write(value_of("value")?))),
        ("cas", _) => {
            let expected = value_of("expected")?;
            Ok(Some(Action::Cas { expected, new: value_of("new")? }))
        }
        _ => Ok(None),
    }
}

/// Describes a register op with its values, e.g. `cas 1->2`.
fn describe(op: &RegOp, values: &Values) -> String {
    match op.action {
        Action::Read(v) => format!("read {}", values.name(v)),
        Action::Write(v) => format!("write {}", values.name(v)),
        Action::Cas { expected, new } => {
            format!("cas {}->{}", values.name(expected), values.name(new))
        }
    }
}

fn not_linearizable(
    key: &str,
    reg_ops: &[RegOp],
    ops: &[Operation],
    values: &Values,
    furthest: &Furthest,
) -> Violation {
    let blocked = &reg_ops[furthest.blocked];
    let recent: Vec<String> = furthest.recent.iter().map(|&i| describe(&reg_ops[i], values)).collect();
    let explanation = format!(
        "key {key:?}: no linearization of its {} ops; the furthest attempt linearized {} \
         (last: [{}]) leaving the register at {}, after which `{}` cannot take effect before \
         it returned",
        reg_ops.len(),
        furthest.depth,
        recent.join(", "),
        values.name(furthest.state),
        describe(blocked, values),
    );
    let mut refs: Vec<OpRef> = vec![ops[blocked.source].op_ref()];
    refs.extend(furthest.recent.iter().rev().map(|&i| ops[reg_ops[i].source].op_ref()));
    Violation::new(ViolationKind::NotLinearizable, explanation, refs)
}

fn bound_violation(key: &str, ops: usize, options: &RegisterOptions) -> Violation {
    let explanation = format!(
        "key {key:?}: gave up after exploring {} configurations of its {ops} ops; raise \
         `states_max` or shorten the history",
        options.states_max
    );
    Violation::new(ViolationKind::SearchBoundExceeded, explanation, Vec::new())
}

mod search;
#[cfg(test)]
mod tests;
