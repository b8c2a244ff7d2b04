use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::testkit::Builder;

fn check(history: &History) -> RegisterReport {
    check_register(history, &RegisterOptions::default())
}

fn write(b: Builder, p: u64, t0: u64, t1: u64, v: i64) -> Builder {
    b.ok(p, "write", t0, t1, json!({"key": "x", "value": v}), Value::Null)
}

fn read(b: Builder, p: u64, t0: u64, t1: u64, v: Value) -> Builder {
    b.ok(p, "read", t0, t1, json!({"key": "x"}), json!({"value": v}))
}

fn cas(b: Builder, p: u64, t0: u64, t1: u64, from: i64, to: i64) -> Builder {
    b.ok(p, "cas", t0, t1, json!({"key": "x", "expected": from, "new": to}), Value::Null)
}

#[test]
fn concurrent_ops_may_take_effect_in_either_order() {
    let b = write(Builder::new(), 0, 0, 10, 1);
    let b = write(b, 1, 5, 30, 2);
    // Both reads overlap the second write: 1 then 2 is a valid order.
    let b = read(b, 2, 12, 20, json!(1));
    let b = read(b, 2, 21, 40, json!(2));
    let report = check(&b.build());
    assert!(report.ok(), "{report}");
    assert_eq!(report.keys_linearizable, 1);
}

#[test]
fn stale_read_is_caught() {
    let b = write(Builder::new(), 0, 0, 10, 1);
    let b = write(b, 0, 20, 30, 2);
    let b = read(b, 1, 40, 50, json!(1));
    let report = check(&b.build());
    assert_eq!(report.verdict, Verdict::Invalid, "{report}");
    let v = &report.violations[0];
    assert_eq!(v.kind, ViolationKind::NotLinearizable);
    assert!(v.explanation.contains("read 1"), "{}", v.explanation);
    assert_eq!(v.ops[0].event, 4, "the stale read is named first");
}

#[test]
fn lost_update_two_cas_from_same_value_is_caught() {
    let b = write(Builder::new(), 0, 0, 10, 0);
    let b = cas(b, 1, 20, 40, 0, 1);
    let b = cas(b, 2, 21, 41, 0, 2);
    let report = check(&b.build());
    assert_eq!(report.verdict, Verdict::Invalid, "{report}");
}

#[test]
fn read_of_never_written_value_is_caught() {
    let b = write(Builder::new(), 0, 0, 10, 1);
    let b = read(b, 1, 0, 20, json!(9));
    assert!(!check(&b.build()).ok());
}

#[test]
fn initial_null_then_write() {
    let b = read(Builder::new(), 0, 0, 5, Value::Null);
    let b = write(b, 0, 10, 20, 3);
    let b = read(b, 1, 30, 40, json!(3));
    assert!(check(&b.build()).ok());
    // A null read after a completed write is stale.
    let b = write(Builder::new(), 0, 0, 5, 3);
    let b = read(b, 1, 10, 20, Value::Null);
    assert!(!check(&b.build()).ok());
}

#[test]
fn failed_writes_never_happen_and_unknown_ones_may() {
    let b = write(Builder::new(), 0, 0, 10, 1);
    let b = b.fail(1, "write", 20, 30, json!({"key": "x", "value": 2}));
    let b = read(b, 2, 40, 50, json!(2));
    assert!(!check(&b.build()).ok(), "a failed write was observed");

    let b = write(Builder::new(), 0, 0, 10, 1);
    let b = b.info(1, "write", 20, 30, json!({"key": "x", "value": 2}));
    let b = read(b, 2, 40, 50, json!(1));
    let b = read(b, 2, 60, 70, json!(2));
    assert!(check(&b.build()).ok(), "an unknown write may land late");

    let b = write(Builder::new(), 0, 0, 10, 1);
    let b = b.info(1, "write", 20, 30, json!({"key": "x", "value": 2}));
    let b = read(b, 2, 40, 50, json!(2));
    let b = read(b, 2, 60, 70, json!(1));
    assert!(!check(&b.build()).ok(), "an unknown write lands at most once");
}

#[test]
fn failed_cas_did_not_swap() {
    let b = write(Builder::new(), 0, 0, 10, 1);
    let b = b.fail(1, "cas", 20, 30, json!({"key": "x", "expected": 1, "new": 5}));
    let b = read(b, 2, 40, 50, json!(1));
    assert!(check(&b.build()).ok());
}

#[test]
fn keys_are_checked_independently() {
    let b = Builder::new()
        .ok(0, "write", 0, 10, json!({"key": "a", "value": 1}), Value::Null)
        .ok(0, "write", 20, 30, json!({"key": "b", "value": 1}), Value::Null)
        .ok(1, "read", 40, 50, json!({"key": "a"}), json!({"value": 1}))
        .ok(1, "read", 60, 70, json!({"key": "b"}), json!({"value": null}));
    let report = check(&b.build());
    assert_eq!(report.keys, 2);
    assert_eq!(report.keys_linearizable, 1);
    assert!(report.violations[0].explanation.contains("\"b\""), "{report}");
}

#[test]
fn malformed_ops_make_the_verdict_unknown() {
    let b = Builder::new().ok(0, "cas", 0, 10, json!({"key": "x", "new": 1}), Value::Null);
    let report = check(&b.build());
    assert_eq!(report.verdict, Verdict::Unknown);
    assert_eq!(report.violations[0].kind, ViolationKind::Malformed);
    assert!(!report.ok());
}

#[test]
fn search_bound_reports_unknown() {
    // Many concurrent writes of distinct values followed by reads of them force a search.
    let mut b = Builder::new();
    for p in 0..12u64 {
        b = write(b, p, 0, 100, p as i64);
    }
    for p in 0..12u64 {
        b = read(b, 20 + p, 200 + p * 10, 205 + p * 10, json!(11 - p as i64));
    }
    let options = RegisterOptions { states_max: 5, ..RegisterOptions::default() };
    let report = check_register(&b.build(), &options);
    assert_eq!(report.verdict, Verdict::Unknown, "{report}");
    assert_eq!(report.violations[0].kind, ViolationKind::SearchBoundExceeded);
}

#[test]
fn concurrent_writes_are_searched() {
    // Blind concurrent writes cost up to 2^n configurations (the search must find which
    // one was last), which is why per-key histories should stay short and bounded.
    let mut b = Builder::new();
    for p in 0..12u64 {
        b = write(b, p, p, 1000 + p, p as i64);
    }
    let b = read(b, 100, 2000, 2001, json!(7));
    let report = check(&b.build());
    assert!(report.ok(), "{report}");
}

#[test]
fn many_timed_out_writes_of_few_values_are_searched_quickly() {
    let mut b = write(Builder::new(), 0, 0, 10, 0);
    for p in 1..=60u64 {
        let args = json!({"key": "x", "value": p % 3});
        b = b.info(p, "write", 20 + p, 30 + p, args);
    }
    let b = read(b, 100, 200, 210, json!(2));
    let b = read(b, 100, 220, 230, json!(1));
    let b = read(b, 100, 240, 250, json!(2));
    let b = read(b, 100, 260, 270, json!(0));
    let report = check(&b.build());
    assert!(report.ok(), "{report}");
    assert!(report.states_explored < 10_000, "{report}");
    // Each timed-out write lands at most once: 61 writes cannot explain 62 changes.
    let mut b = write(Builder::new(), 0, 0, 10, 0);
    for p in 1..=3u64 {
        b = b.info(p, "write", 20 + p, 30 + p, json!({"key": "x", "value": 1}));
    }
    for i in 0..4u64 {
        b = read(b, 100, 200 + 40 * i, 210 + 40 * i, json!(1));
        b = b.ok(101, "write", 220 + 40 * i, 230 + 40 * i, json!({"key": "x", "value": 0}), Value::Null);
    }
    assert_eq!(check(&b.build()).verdict, Verdict::Invalid);
}

/// One step of a sequential model run.
#[derive(Debug, Clone)]
enum Step {
    Read,
    Write(u8),
    Cas(u8, u8),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![Just(Step::Read), (0u8..4).prop_map(Step::Write), (0u8..4, 0u8..4).prop_map(|(e, n)| Step::Cas(e, n)),]
}

/// Runs `steps` against a model register, one op at a time on rotating processes, and
/// records what a correct store would answer. Returns the history and the event indices of
/// the reads' completions.
fn sequential(steps: &[Step]) -> (History, Vec<usize>) {
    let mut state: Option<u8> = None;
    let mut b = Builder::new();
    let mut reads = Vec::new();
    for (i, s) in steps.iter().enumerate() {
        let (p, t0) = (i as u64 % 3, i as u64 * 10);
        let key = json!({"key": "k"});
        b = match *s {
            Step::Read => {
                reads.push(2 * i + 1);
                b.ok(p, "read", t0, t0 + 5, key, json!({"value": state}))
            }
            Step::Write(v) => {
                state = Some(v);
                b.ok(p, "write", t0, t0 + 5, json!({"key": "k", "value": v}), Value::Null)
            }
            Step::Cas(e, n) => {
                let args = json!({"key": "k", "expected": e, "new": n});
                if state == Some(e) {
                    state = Some(n);
                    b.ok(p, "cas", t0, t0 + 5, args, Value::Null)
                } else {
                    b.fail(p, "cas", t0, t0 + 5, args)
                }
            }
        };
    }
    (b.build(), reads)
}

proptest! {
    #[test]
    fn sequential_model_histories_are_linearizable(steps in prop::collection::vec(step(), 0..60)) {
        let (history, _) = sequential(&steps);
        let report = check(&history);
        prop_assert!(report.ok(), "{}", report);
    }

    #[test]
    fn mutating_a_read_is_caught(
        steps in prop::collection::vec(step(), 0..60),
        pick in any::<prop::sample::Index>(),
        delta in 1u8..5,
    ) {
        // A final read guarantees there is a read to mutate.
        let steps: Vec<Step> = steps.into_iter().chain([Step::Read]).collect();
        let (history, reads) = sequential(&steps);
        let target = reads[pick.index(reads.len())];
        let mut events = history.events().to_vec();
        let seen = events[target].fields.get("value").and_then(Value::as_u64);
        // Any other value, including null for a read that saw a value.
        let wrong = match seen {
            Some(_) if delta == 4 => Value::Null,
            Some(v) => json!((v + u64::from(delta)) % 5),
            None => json!(delta),
        };
        events[target].fields.insert("value".to_string(), wrong);
        let report = check(&History::from_events(events));
        prop_assert_eq!(report.verdict, Verdict::Invalid, "{}", report);
    }
}

/// An op of a concurrent run: what it does, when it runs, where inside its interval it
/// takes effect (percent), and whether its reply was lost (then it took effect or not).
#[derive(Debug, Clone)]
struct Timed {
    step: Step,
    start: u64,
    len: u64,
    at_pct: u64,
    lost_reply: bool,
    applied: bool,
}

fn timed() -> impl Strategy<Value = Timed> {
    (step(), 0u64..400, 0u64..60, 0u64..=100, prop::bool::weighted(0.1), any::<bool>()).prop_map(
        |(step, start, len, at_pct, lost_reply, applied)| Timed { step, start, len, at_pct, lost_reply, applied },
    )
}

/// A linearizable concurrent history: each op takes effect atomically at a point inside
/// its interval, in the order of those points. Each op runs on its own process.
fn concurrent(ops: &[Timed]) -> History {
    let mut order: Vec<usize> = (0..ops.len()).collect();
    order.sort_by_key(|&i| (ops[i].start + ops[i].len * ops[i].at_pct / 100, i));
    let mut state: Option<u8> = None;
    let mut b = Builder::new();
    for i in order {
        let op = &ops[i];
        let (p, t0, t1) = (i as u64, op.start, op.start + op.len);
        if op.lost_reply {
            let args = match op.step {
                Step::Read => json!({"key": "k"}),
                Step::Write(v) => json!({"key": "k", "value": v}),
                Step::Cas(e, n) => json!({"key": "k", "expected": e, "new": n}),
            };
            if op.applied {
                state = apply(&op.step, state).1;
            }
            b = b.info(p, fname(&op.step), t0, t1, args);
            continue;
        }
        let (ok, next) = apply(&op.step, state);
        b = match op.step {
            Step::Read => b.ok(p, "read", t0, t1, json!({"key": "k"}), json!({"value": state})),
            Step::Write(v) => b.ok(p, "write", t0, t1, json!({"key": "k", "value": v}), Value::Null),
            Step::Cas(e, n) if ok => b.ok(p, "cas", t0, t1, json!({"key": "k", "expected": e, "new": n}), Value::Null),
            Step::Cas(e, n) => b.fail(p, "cas", t0, t1, json!({"key": "k", "expected": e, "new": n})),
        };
        state = next;
    }
    b.build()
}

fn fname(step: &Step) -> &'static str {
    match step {
        Step::Read => "read",
        Step::Write(_) => "write",
        Step::Cas(..) => "cas",
    }
}

/// Whether `step` succeeds from `state`, and the state after it.
fn apply(step: &Step, state: Option<u8>) -> (bool, Option<u8>) {
    match *step {
        Step::Read => (true, state),
        Step::Write(v) => (true, Some(v)),
        Step::Cas(e, n) if state == Some(e) => (true, Some(n)),
        Step::Cas(..) => (false, state),
    }
}

proptest! {
    #[test]
    fn concurrent_linearizable_histories_pass(ops in prop::collection::vec(timed(), 0..30)) {
        let report = check(&concurrent(&ops));
        prop_assert!(report.ok(), "{}", report);
    }
}

/// A random op with a random outcome and result: the history is usually not linearizable.
fn arbitrary_op() -> impl Strategy<Value = (Step, Option<u8>, u8, u64, u64)> {
    (step(), prop::option::of(0u8..3), 0u8..6, 0u64..30, 0u64..15)
}

/// Builds a history from arbitrary ops; outcome 0..=3 ok, 4 fail, 5 info.
fn arbitrary(ops: &[(Step, Option<u8>, u8, u64, u64)]) -> History {
    let mut b = Builder::new();
    for (i, (step, read, outcome, start, len)) in ops.iter().enumerate() {
        let (p, t0, t1) = (i as u64, *start, start + len);
        let (f, args) = match *step {
            Step::Read => ("read", json!({"key": "k"})),
            Step::Write(v) => ("write", json!({"key": "k", "value": v})),
            Step::Cas(e, n) => ("cas", json!({"key": "k", "expected": e, "new": n})),
        };
        b = match outcome {
            0..=3 => b.ok(p, f, t0, t1, args, json!({"value": read})),
            4 => b.fail(p, f, t0, t1, args),
            _ => b.info(p, f, t0, t1, args),
        };
    }
    b.build()
}

/// Tries every order: an op may go next when no unlinearized required op returned before
/// its invoke; unknown ops may be left out.
fn brute_force(ops: &[RegOp], used: &mut Vec<bool>, state: u32) -> bool {
    if ops.iter().zip(used.iter()).all(|(op, u)| *u || !op.required) {
        return true;
    }
    for i in 0..ops.len() {
        let blocked = ops.iter().zip(used.iter()).any(|(y, u)| !*u && y.complete < ops[i].invoke);
        if used[i] || blocked {
            continue;
        }
        if let Some(next) = ops[i].action.step(state) {
            used[i] = true;
            let found = brute_force(ops, used, next);
            used[i] = false;
            if found {
                return true;
            }
        }
    }
    false
}

proptest! {
    #[test]
    fn search_agrees_with_brute_force(ops in prop::collection::vec(arbitrary_op(), 1..8)) {
        let history = arbitrary(&ops);
        let report = check(&history);
        let paired = history.operations().expect("builder pairs");
        let mut values = Values::default();
        let initial = values.intern(&Value::Null);
        let keys = partition(&paired, &mut values, &mut Vec::new());
        let expected = keys.values().all(|reg_ops| {
            brute_force(reg_ops, &mut vec![false; reg_ops.len()], initial)
        });
        prop_assert_eq!(report.ok(), expected, "{}", report);
    }
}
