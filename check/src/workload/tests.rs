use std::time::{Duration, SystemTime};

use clap::{Parser, ValueEnum};
use serde_json::json;

use super::*;
use crate::Recorder;

#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    check: CheckArgs,
}

#[test]
fn parses_the_documented_flags() {
    let cli = Cli::try_parse_from([
        "check",
        "--endpoints",
        "10.0.0.1:2070,10.0.0.2:2070",
        "--workload",
        "register",
        "--duration",
        "7",
        "--clients",
        "3",
        "--keys",
        "4",
        "--history",
        "h.jsonl",
        "--json",
    ])
    .expect("parses");
    let options = cli.check.options();
    assert_eq!(options.endpoints, ["10.0.0.1:2070", "10.0.0.2:2070"]);
    assert_eq!(options.duration, Duration::from_secs(7));
    assert_eq!((options.clients, options.keys), (3, 4));
    assert!(cli.check.json && options.progress);
    assert_eq!(cli.check.history.as_deref(), Some(std::path::Path::new("h.jsonl")));
    for name in ["lock", "sequence", "append", "bank"] {
        let cli = Cli::try_parse_from(["check", "--workload", name]).expect("parses");
        assert_eq!(cli.check.workload.name(), name);
    }
    assert!(Cli::try_parse_from(["check", "--workload", "queue"]).is_err());
}

#[test]
fn options_name_the_broken_limit() {
    let ok = WorkloadOptions::new(["127.0.0.1:1"]);
    assert!(ok.validate().is_ok());
    assert!(ok.key_prefix.starts_with("kahuna-check-"));
    type Breaks = fn(&mut WorkloadOptions);
    let cases: [(Breaks, &str); 4] = [
        (|o| o.clients = 0, "clients"),
        (|o| o.keys = KEYS_MAX + 1, "keys"),
        (|o| o.duration = Duration::ZERO, "duration"),
        (|o| o.key_prefix = "__kahuna:x".into(), "reserved"),
    ];
    for (breaks, word) in cases {
        let mut options = ok.clone();
        breaks(&mut options);
        let message = options.validate().expect_err("invalid").to_string();
        assert!(message.contains(word), "{message}");
    }
}

#[test]
fn grace_covers_every_attempt() {
    let mut options = WorkloadOptions::new(["127.0.0.1:1"]);
    options.timeout = Duration::from_millis(500);
    options.retries = 2;
    assert_eq!(options.grace(), Duration::from_millis(3 * 500 + 2 * kahuna_client::BACKOFF_MS_MAX));
}

#[tokio::test]
async fn an_unreachable_cluster_fails_before_recording() {
    // Port 1 on loopback: connection refused at once. Nothing is set up or recorded, the
    // bank's initial balances included.
    let mut options = WorkloadOptions::new(["127.0.0.1:1"]);
    options.timeout = Duration::from_millis(200);
    options.retries = 0;
    for kind in
        [WorkloadKind::Register, WorkloadKind::Lock, WorkloadKind::Sequence, WorkloadKind::Append, WorkloadKind::Bank]
    {
        let error = run_workload(kind, &options).await.expect_err("unreachable");
        assert!(matches!(error, WorkloadError::Unreachable { .. }), "{kind}: {error}");
    }
}

#[tokio::test]
async fn a_bank_too_large_to_read_is_refused() {
    let mut options = WorkloadOptions::new(["127.0.0.1:1"]);
    options.keys = bank::ACCOUNTS_MAX + 1;
    let error = run_workload(WorkloadKind::Bank, &options).await.expect_err("too many accounts");
    assert!(matches!(error, WorkloadError::InvalidOptions(_)), "{error}");
    assert!(error.to_string().contains("accounts"), "{error}");
}

#[test]
fn transactions_live_a_few_call_budgets() {
    let mut options = WorkloadOptions::new(["127.0.0.1:1"]);
    options.timeout = Duration::from_millis(1_500);
    assert_eq!(txn::txn_timeout(&options), Duration::from_secs(6));
    options.timeout = Duration::from_millis(10);
    assert_eq!(txn::txn_timeout(&options), Duration::from_secs(1));
    options.timeout = Duration::from_secs(3_600);
    assert_eq!(txn::txn_timeout(&options), Duration::from_secs(60));
}

#[test]
fn bank_reads_must_total_the_initial_balances() {
    let recorder = Recorder::new();
    let (a, b) = (bank::account("p", 0), bank::account("p", 1));
    recorder.invoke(0, "transfer", json!({"from": a, "to": b, "amount": 5})).ok(json!({}));
    recorder.invoke(1, "read", json!({})).ok(json!({"value": {a.clone(): 95, b.clone(): 105}}));
    assert!(check_workload(WorkloadKind::Bank, &recorder.history(), 2).ok());
    // A read that missed an account (or half a transfer) is caught.
    recorder.invoke(1, "read", json!({})).ok(json!({"value": {a: 95}}));
    assert_eq!(check_workload(WorkloadKind::Bank, &recorder.history(), 2).verdict(), Verdict::Invalid);
}

#[test]
fn tallies_count_by_outcome_and_window() {
    let recorder = Recorder::new();
    recorder.invoke(0, "read", json!({"key": "a"})).ok(json!({"value": null}));
    recorder.invoke(1, "write", json!({"key": "a", "value": 1})).fail(json!({}));
    let _lost = recorder.invoke(2, "cas", json!({"key": "a", "expected": null, "new": 2}));
    let history = recorder.history();
    let ops = history.operations().expect("pairs");
    assert_eq!(Tally::of(&ops), Tally { ok: 1, failed: 1, unknown: 1 });
    assert_eq!(Tally::of(&ops).total(), 3);
    let third = ops[2].invoke_time;
    assert_eq!(Tally::window(&ops, third, u64::MAX), Tally { ok: 0, failed: 0, unknown: 1 });
    assert_eq!(Tally::by_f(&ops)["write"].failed, 1);
    assert_eq!(Tally::of(&ops).to_string(), "ok 1 / failed 1 / unknown 1");
}

#[test]
fn checks_and_places_violations_in_windows() {
    // A stale read: x was 1, then 2, then a read (invoked after) still saw 1.
    let recorder = Recorder::new();
    recorder.invoke(0, "write", json!({"key": "x", "value": 1})).ok(json!({}));
    recorder.invoke(0, "write", json!({"key": "x", "value": 2})).ok(json!({}));
    recorder.invoke(1, "read", json!({"key": "x"})).ok(json!({"value": 1}));
    let history = recorder.history();
    let report = check_workload(WorkloadKind::Register, &history, 1);
    assert_eq!(report.verdict(), Verdict::Invalid);
    assert_eq!(violations_in(report.as_ref(), 0, u64::MAX), 1);
    assert_eq!(violations_in(report.as_ref(), u64::MAX - 1, u64::MAX), 0);
    assert!(!passed(report.verdict(), &Tally::default()));
}

#[test]
fn names_each_workloads_keys_and_counters() {
    assert_eq!(WorkloadKind::Register.key("p", 2), "p-register-2");
    assert_eq!(WorkloadKind::Lock.key("p", 0), "p-lock-0");
    assert_eq!(WorkloadKind::Sequence.key("p", 7), WorkloadKind::Sequence.key("p", 0));
    assert_eq!(WorkloadKind::Append.key("p", 1), "p-list-1");
    assert_eq!(WorkloadKind::Bank.key("p", 3), "p-bank-3");
    for kind in WorkloadKind::value_variants() {
        assert!(!kind.key("p", 0).contains('/'), "{kind}: a bucket of its own");
        let kinds = kind.violation_kinds();
        assert!(kinds.contains(&ViolationKind::Malformed), "{kind}");
        let distinct: std::collections::BTreeSet<_> = kinds.iter().collect();
        assert_eq!(distinct.len(), kinds.len(), "{kind}");
    }
    // The stale read of `checks_and_places_violations_in_windows` is a kind it lists.
    assert!(WorkloadKind::Register.violation_kinds().contains(&ViolationKind::NotLinearizable));
}

#[test]
fn places_wall_clock_instants_in_the_history() {
    let start = SystemTime::now();
    assert_eq!(history_time(start, start + Duration::from_millis(3)), 3_000_000);
    assert_eq!(history_time(start, start - Duration::from_secs(1)), 0);
}
