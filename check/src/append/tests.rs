use serde_json::{Value, json};

use super::*;
use crate::testkit::Builder;

/// The request a client sends for `mops`: reads without results.
fn request(mops: &Value) -> Value {
    let list = mops.as_array().cloned().unwrap_or_default();
    let cleared: Vec<Value> = list
        .into_iter()
        .map(|m| match m.as_array().map(Vec::as_slice) {
            Some([f, k, _]) if f == "r" => json!([f, k, null]),
            _ => m,
        })
        .collect();
    json!({ "value": cleared })
}

fn ok(b: Builder, p: u64, t0: u64, t1: u64, mops: Value) -> Builder {
    let args = request(&mops);
    b.ok(p, "txn", t0, t1, args, json!({ "value": mops }))
}

fn fail(b: Builder, p: u64, t0: u64, t1: u64, mops: Value) -> Builder {
    b.fail(p, "txn", t0, t1, request(&mops))
}

fn info(b: Builder, p: u64, t0: u64, t1: u64, mops: Value) -> Builder {
    b.info(p, "txn", t0, t1, request(&mops))
}

fn check(b: Builder) -> AppendReport {
    check_append(&b.build(), &AppendOptions::default())
}

fn kinds(report: &AppendReport) -> Vec<ViolationKind> {
    report.violations.iter().map(|v| v.kind).collect()
}

#[test]
fn serial_history_passes() {
    let b = ok(Builder::new(), 0, 0, 10, json!([["append", "x", 1], ["r", "x", [1]]]));
    let b = ok(b, 1, 20, 30, json!([["r", "x", [1]], ["append", "x", 2], ["append", "y", 1]]));
    let b = ok(b, 2, 25, 40, json!([["r", "y", [1]], ["append", "x", 3]]));
    let b = fail(b, 0, 50, 60, json!([["append", "x", 9]]));
    let b = info(b, 1, 50, 60, json!([["append", "y", 7]]));
    let b = info(b, 3, 55, 65, json!([["append", "y", 8]]));
    let b = ok(b, 0, 70, 80, json!([["r", "x", [1, 2, 3]], ["r", "y", [1, 8]]]));
    let report = check(b);
    assert!(report.ok(), "{report}");
    assert_eq!((report.txns_ok, report.txns_failed, report.txns_unknown), (4, 1, 2));
    assert!(report.edges_ww >= 2 && report.edges_wr >= 2 && report.edges_rw >= 1, "{report}");
}

#[test]
fn g0_write_cycle_is_caught() {
    let b = ok(Builder::new(), 0, 0, 10, json!([["append", "x", 1], ["append", "y", 1]]));
    let b = ok(b, 1, 0, 10, json!([["append", "x", 2], ["append", "y", 2]]));
    let b = ok(b, 2, 20, 30, json!([["r", "x", [1, 2]], ["r", "y", [2, 1]]]));
    let report = check(b);
    assert!(kinds(&report).contains(&ViolationKind::G0), "{report}");
    let g0 = report.violations.iter().find(|v| v.kind == ViolationKind::G0).expect("a G0");
    assert_eq!(g0.ops.len(), 2, "{g0}");
    assert!(g0.explanation.contains("ww x") && g0.explanation.contains("ww y"), "{g0}");
}

#[test]
fn g1a_aborted_read_is_caught() {
    let b = fail(Builder::new(), 0, 0, 10, json!([["append", "x", 1]]));
    let b = ok(b, 1, 20, 30, json!([["r", "x", [1]]]));
    assert_eq!(kinds(&check(b)), vec![ViolationKind::G1a]);
}

#[test]
fn g1b_intermediate_read_is_caught() {
    let b = ok(Builder::new(), 0, 0, 10, json!([["append", "x", 1], ["append", "x", 2]]));
    let b = ok(b, 1, 5, 30, json!([["r", "x", [1]]]));
    let report = check(b);
    assert!(kinds(&report).contains(&ViolationKind::G1b), "{report}");
}

#[test]
fn g1c_circular_information_flow_is_caught() {
    let b = ok(Builder::new(), 0, 0, 10, json!([["append", "x", 1], ["r", "y", [1]]]));
    let b = ok(b, 1, 0, 10, json!([["append", "y", 1], ["r", "x", [1]]]));
    assert_eq!(kinds(&check(b)), vec![ViolationKind::G1c]);
}

#[test]
fn g_single_read_skew_is_caught() {
    // T2 sees T1's append to y but not its append to x.
    let b = ok(Builder::new(), 0, 0, 10, json!([["append", "x", 1], ["append", "y", 1]]));
    let b = ok(b, 1, 0, 10, json!([["r", "x", []], ["r", "y", [1]]]));
    let b = ok(b, 2, 20, 30, json!([["r", "x", [1]]]));
    let report = check(b);
    assert_eq!(kinds(&report), vec![ViolationKind::GSingle], "{report}");
    assert_eq!(report.violations[0].ops.len(), 2);
}

#[test]
fn g2_write_skew_is_caught() {
    let b = ok(Builder::new(), 0, 0, 10, json!([["r", "x", []], ["r", "y", []], ["append", "x", 1]]));
    let b = ok(b, 1, 0, 10, json!([["r", "x", []], ["r", "y", []], ["append", "y", 1]]));
    let b = ok(b, 2, 20, 30, json!([["r", "x", [1]], ["r", "y", [1]]]));
    let report = check(b);
    assert_eq!(kinds(&report), vec![ViolationKind::G2], "{report}");
    let serializable = AppendOptions { realtime: false, ..AppendOptions::default() };
    let b = ok(Builder::new(), 0, 0, 10, json!([["r", "x", []], ["r", "y", []], ["append", "x", 1]]));
    let b = ok(b, 1, 0, 10, json!([["r", "x", []], ["r", "y", []], ["append", "y", 1]]));
    assert_eq!(kinds(&check_append(&b.build(), &serializable)), vec![ViolationKind::G2]);
}

#[test]
fn realtime_violation_is_caught_only_under_strict_serializability() {
    // T1 commits x=1 and completes; T2 starts afterwards yet reads x empty.
    let b = ok(Builder::new(), 0, 0, 10, json!([["append", "x", 1]]));
    let b = ok(b, 1, 20, 30, json!([["r", "x", []]]));
    let b = ok(b, 2, 40, 50, json!([["r", "x", [1]]]));
    let history = b.build();
    let report = check_append(&history, &AppendOptions::default());
    assert_eq!(kinds(&report), vec![ViolationKind::RealTime], "{report}");
    assert!(report.violations[0].explanation.contains("realtime"), "{report}");
    let serializable = AppendOptions { realtime: false, ..AppendOptions::default() };
    assert!(check_append(&history, &serializable).ok());
}

#[test]
fn unseen_committed_appends_order_after_reads() {
    // T2 read x empty and completed before T1 began: fine. Nobody read x=1 afterwards.
    let b = ok(Builder::new(), 1, 0, 10, json!([["r", "x", []]]));
    let b = ok(b, 0, 20, 30, json!([["append", "x", 1]]));
    assert!(check(b).ok());
    // But a read that starts after the append completed must see it.
    let b = ok(Builder::new(), 0, 0, 10, json!([["append", "x", 1]]));
    let b = ok(b, 1, 20, 30, json!([["r", "x", []]]));
    let report = check(b);
    assert_eq!(kinds(&report), vec![ViolationKind::LostAppend, ViolationKind::RealTime]);
    assert_eq!(report.appends_lost, 1);
}

#[test]
fn incompatible_orders_duplicates_and_unknown_values_are_caught() {
    let b = ok(Builder::new(), 0, 0, 10, json!([["append", "x", 1]]));
    let b = ok(b, 1, 0, 10, json!([["append", "x", 2]]));
    let b = ok(b, 2, 20, 30, json!([["r", "x", [1, 2]]]));
    let b = ok(b, 3, 20, 30, json!([["r", "x", [2, 1]]]));
    assert!(kinds(&check(b)).contains(&ViolationKind::IncompatibleOrder));
    let b = ok(Builder::new(), 0, 0, 10, json!([["append", "x", 1]]));
    let b = ok(b, 2, 20, 30, json!([["r", "x", [1, 1]]]));
    assert!(kinds(&check(b)).contains(&ViolationKind::DuplicateElements));
    let b = ok(Builder::new(), 2, 20, 30, json!([["r", "x", [5]]]));
    assert_eq!(kinds(&check(b)), vec![ViolationKind::UnknownValue]);
}

#[test]
fn malformed_txns_are_reported_not_panicked_on() {
    let b = Builder::new()
        .ok(0, "txn", 0, 10, json!({"value": [["append", "x"]]}), Value::Null)
        .ok(1, "txn", 0, 10, json!({"value": 3}), Value::Null)
        .ok(2, "txn", 0, 10, json!({"value": [["r", "x", 5]]}), Value::Null);
    let report = check(b);
    assert_eq!(report.verdict, Verdict::Unknown, "{report}");
    assert_eq!(report.violations.len(), 3);
}

#[test]
fn many_serial_txns_are_fast_and_valid() {
    let mut b = Builder::new();
    let mut seen: Vec<u64> = Vec::new();
    for i in 0..1_000u64 {
        let read = json!(["r", "k", seen.clone()]);
        b = ok(b, i % 7, i * 10, i * 10 + 5, json!([read, ["append", "k", i]]));
        seen.push(i);
    }
    let report = check(b);
    assert!(report.ok(), "{report}");
    assert_eq!(report.edges_ww, 999);
}

mod model {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    /// A micro-op request: append to a key, or read it.
    #[derive(Debug, Clone)]
    enum Req {
        Append(u8),
        Read(u8),
    }

    fn txn() -> impl Strategy<Value = Vec<Req>> {
        let req = prop_oneof![(0u8..3).prop_map(Req::Append), (0u8..3).prop_map(Req::Read)];
        prop::collection::vec(req, 1..5)
    }

    /// Runs `txns` one after another against a map of lists, as a serial store would, and
    /// returns each txn's completed micro-ops.
    fn serial(txns: &[Vec<Req>]) -> Vec<Value> {
        let mut lists: BTreeMap<u8, Vec<u64>> = BTreeMap::new();
        let mut next = 0u64;
        let mut done = Vec::new();
        for t in txns {
            let mops: Vec<Value> = t
                .iter()
                .map(|req| match *req {
                    Req::Append(k) => {
                        next += 1;
                        lists.entry(k).or_default().push(next);
                        json!(["append", k.to_string(), next])
                    }
                    Req::Read(k) => {
                        json!(["r", k.to_string(), lists.get(&k).cloned().unwrap_or_default()])
                    }
                })
                .collect();
            done.push(Value::Array(mops));
        }
        done
    }

    fn history(done: &[Value]) -> Builder {
        let mut b = Builder::new();
        for (i, mops) in done.iter().enumerate() {
            let t0 = i as u64 * 10;
            b = ok(b, i as u64 % 4, t0, t0 + 5, mops.clone());
        }
        b
    }

    /// A read (txn, mop) with a non-empty result whose txn had not yet appended to its key.
    fn foreign_reads(done: &[Value]) -> Vec<(usize, usize)> {
        let mut found = Vec::new();
        for (t, mops) in done.iter().enumerate() {
            let mops = mops.as_array().cloned().unwrap_or_default();
            for (i, m) in mops.iter().enumerate() {
                let own = mops[..i].iter().any(|p| p[0] == "append" && p[1] == m[1]);
                let seen = m[2].as_array().is_some_and(|l| !l.is_empty());
                if m[0] == "r" && seen && !own {
                    found.push((t, i));
                }
            }
        }
        found
    }

    /// A txn of a concurrent run: its requests, its interval, where inside it the txn takes
    /// effect (percent), and whether its reply was lost (then it took effect or not).
    #[derive(Debug, Clone)]
    struct Timed {
        reqs: Vec<Req>,
        start: u64,
        len: u64,
        at_pct: u64,
        lost_reply: bool,
        applied: bool,
    }

    fn timed() -> impl Strategy<Value = Timed> {
        let lost = prop::bool::weighted(0.15);
        (txn(), 0u64..300, 0u64..60, 0u64..=100, lost, any::<bool>()).prop_map(
            |(reqs, start, len, at_pct, lost_reply, applied)| Timed { reqs, start, len, at_pct, lost_reply, applied },
        )
    }

    /// A strictly serializable history: each txn takes effect atomically at a point inside
    /// its interval; a lost reply's txn may or may not have. One process per txn.
    fn concurrent(txns: &[Timed]) -> Builder {
        let mut order: Vec<usize> = (0..txns.len()).collect();
        order.sort_by_key(|&i| (txns[i].start + txns[i].len * txns[i].at_pct / 100, i));
        let effective: Vec<Vec<Req>> = order
            .iter()
            .map(|&i| {
                let t = &txns[i];
                if t.lost_reply && !t.applied { vec![] } else { t.reqs.clone() }
            })
            .collect();
        let done = serial(&effective);
        let mut b = Builder::new();
        for (k, &i) in order.iter().enumerate() {
            let t = &txns[i];
            let (t0, t1) = (t.start, t.start + t.len);
            b = match (t.lost_reply, t.applied) {
                (false, _) => ok(b, i as u64, t0, t1, done[k].clone()),
                (true, true) => info(b, i as u64, t0, t1, done[k].clone()),
                // Never applied: the request still names fresh values to append.
                (true, false) => info(b, i as u64, t0, t1, unapplied(&t.reqs, i)),
            };
        }
        b
    }

    /// Micro-ops for a request that never took effect, with values no applied txn uses.
    fn unapplied(reqs: &[Req], txn: usize) -> Value {
        let mops = reqs.iter().enumerate().map(|(j, r)| match *r {
            Req::Append(k) => json!(["append", k.to_string(), 1_000_000 + txn * 10 + j]),
            Req::Read(k) => json!(["r", k.to_string(), null]),
        });
        Value::Array(mops.collect())
    }

    proptest! {
        #[test]
        fn concurrent_strictly_serializable_histories_pass(
            txns in prop::collection::vec(timed(), 1..30),
        ) {
            let report = check(concurrent(&txns));
            prop_assert!(report.ok(), "{}", report);
        }

        #[test]
        fn serial_histories_are_strictly_serializable(
            txns in prop::collection::vec(txn(), 1..40),
        ) {
            let report = check(history(&serial(&txns)));
            prop_assert!(report.ok(), "{}", report);
        }

        #[test]
        fn a_read_missing_a_committed_append_is_caught(
            txns in prop::collection::vec(txn(), 1..40),
            pick in any::<prop::sample::Index>(),
        ) {
            let mut done = serial(&txns);
            let reads = foreign_reads(&done);
            prop_assume!(!reads.is_empty());
            let (t, i) = reads[pick.index(reads.len())];
            if let Some(list) = done[t][i][2].as_array_mut() {
                list.pop();
            }
            let report = check(history(&done));
            prop_assert_eq!(report.verdict, Verdict::Invalid, "{}", report);
        }
    }
}
