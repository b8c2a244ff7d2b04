//! End to end: record through `Recorder`, save JSONL, read it back, check it, as the
//! `kahuna check` workload runner will.

use std::fs::File;

use kahuna_check::{
    AppendOptions, BankOptions, History, ParseError, Recorder, RegisterOptions, Report, Verdict, ViolationKind,
    check_append, check_bank, check_lock, check_register, check_sequence,
};
use serde_json::{Value, json};

/// Saves `recorder` to a temporary file and reads it back.
fn round_trip(recorder: &Recorder, name: &str) -> History {
    let path = std::env::temp_dir().join(format!("kahuna-check-t10-{name}-{}.jsonl", std::process::id()));
    recorder.save(&path).expect("history saves");
    let history = History::from_jsonl(File::open(&path).expect("history reopens")).expect("parses");
    let _ = std::fs::remove_file(&path);
    assert_eq!(history, recorder.history());
    history
}

fn all_reports(history: &History) -> Vec<Box<dyn Report>> {
    vec![
        Box::new(check_register(history, &RegisterOptions::default())),
        Box::new(check_lock(history)),
        Box::new(check_sequence(history)),
        Box::new(check_append(history, &AppendOptions::default())),
    ]
}

/// One recorder per workload, as `kahuna check --workload W` runs one workload at a time
/// (registers and fenced resources both use `write`).
struct Workloads {
    register: Recorder,
    lock: Recorder,
    sequence: Recorder,
    append: Recorder,
}

impl Workloads {
    fn new() -> Self {
        let base = std::time::Instant::now();
        Self {
            register: Recorder::with_base(base),
            lock: Recorder::with_base(base),
            sequence: Recorder::with_base(base),
            append: Recorder::with_base(base),
        }
    }

    fn reports(&self, name: &str) -> Vec<Box<dyn Report>> {
        let register = round_trip(&self.register, &format!("{name}-register"));
        let lock = round_trip(&self.lock, &format!("{name}-lock"));
        let sequence = round_trip(&self.sequence, &format!("{name}-sequence"));
        let append = round_trip(&self.append, &format!("{name}-append"));
        vec![
            Box::new(check_register(&register, &RegisterOptions::default())),
            Box::new(check_lock(&lock)),
            Box::new(check_sequence(&sequence)),
            Box::new(check_append(&append, &AppendOptions::default())),
        ]
    }
}

#[test]
fn a_clean_run_passes_every_checker() {
    let w = Workloads::new();
    w.register.invoke(0, "write", json!({"key": "x", "value": 1})).ok(Value::Null);
    w.register.invoke(1, "read", json!({"key": "x"})).ok(json!({"value": 1}));
    let timed_out = w.register.invoke(4, "cas", json!({"key": "x", "expected": 1, "new": 2}));
    drop(timed_out);
    w.lock.invoke(0, "acquire", json!({"lock": "L"})).ok(json!({"token": 1}));
    w.lock.invoke(0, "write", json!({"resource": "R", "token": 1})).ok(Value::Null);
    w.lock.invoke(0, "release", json!({"lock": "L"})).ok(Value::Null);
    w.sequence.invoke(2, "next", json!({"sequence": "s"})).ok(json!({"value": 1}));
    let mops = json!([["append", "k", 1]]);
    w.append.invoke(3, "txn", json!({"value": mops})).ok(json!({"value": mops}));
    for report in w.reports("clean") {
        assert!(report.ok(), "{report}");
        assert!(report.violations().is_empty());
        assert_eq!(report.to_json()["verdict"], "valid");
    }
}

#[test]
fn a_faulty_run_is_caught_by_each_checker() {
    let w = Workloads::new();
    let r = &w.register;
    r.invoke(0, "write", json!({"key": "x", "value": 1})).ok(Value::Null);
    r.invoke(0, "write", json!({"key": "x", "value": 2})).ok(Value::Null);
    r.invoke(1, "read", json!({"key": "x"})).ok(json!({"value": 1}));
    let l = &w.lock;
    l.invoke(0, "acquire", json!({"lock": "L"})).ok(json!({"token": 2}));
    l.invoke(0, "write", json!({"resource": "R", "token": 2})).ok(Value::Null);
    l.invoke(1, "write", json!({"resource": "R", "token": 1})).ok(Value::Null);
    w.sequence.invoke(2, "next", json!({"sequence": "s"})).ok(json!({"value": 1}));
    w.sequence.invoke(2, "next", json!({"sequence": "s"})).ok(json!({"value": 1}));
    let a = &w.append;
    let append = json!([["append", "k", 1]]);
    a.invoke(3, "txn", json!({"value": append})).ok(json!({"value": append}));
    let read = json!({"value": [["r", "k", null]]});
    a.invoke(3, "txn", read.clone()).ok(json!({"value": [["r", "k", []]]}));
    a.invoke(3, "txn", read).ok(json!({"value": [["r", "k", [1]]]}));
    let kinds: Vec<Vec<ViolationKind>> = w
        .reports("faulty")
        .iter()
        .map(|report| {
            assert_eq!(report.verdict(), Verdict::Invalid, "{report}");
            report.violations().iter().map(|v| v.kind).collect()
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            vec![ViolationKind::NotLinearizable],
            vec![ViolationKind::StaleTokenAccepted],
            vec![ViolationKind::DuplicateValue],
            vec![ViolationKind::RealTime],
        ]
    );
}

#[test]
fn bank_reads_are_checked_from_jsonl() {
    let text = r#"{"type":"invoke","process":0,"time":10,"f":"read"}
{"type":"ok","process":0,"time":20,"f":"read","value":{"a":60,"b":40}}
{"type":"invoke","process":1,"time":30,"f":"transfer","from":"a","to":"b","amount":10}
{"type":"ok","process":1,"time":40,"f":"transfer","from":"a","to":"b","amount":10}
{"type":"invoke","process":0,"time":50,"f":"read"}
{"type":"ok","process":0,"time":60,"f":"read","value":{"a":50,"b":40}}
"#;
    let history = History::from_jsonl(text.as_bytes()).expect("parses");
    let report = check_bank(&history, &BankOptions::new(100));
    assert!(!report.ok());
    assert!(report.to_string().contains("totals 90"), "{report}");
}

#[test]
fn a_corrupt_file_names_its_line() {
    let text = "{\"type\":\"invoke\",\"process\":0,\"time\":1,\"f\":\"read\"}\n{\"type\":\"ok\",";
    let err = History::from_jsonl(text.as_bytes()).expect_err("truncated line");
    assert!(matches!(err, ParseError::Json { line: 2, .. }), "{err}");
    assert!(err.to_string().starts_with("history line 2:"), "{err}");
}

#[test]
fn unpaired_histories_are_unknown_not_passing() {
    let text = "{\"type\":\"ok\",\"process\":0,\"time\":1,\"f\":\"read\",\"value\":null}\n";
    let history = History::from_jsonl(text.as_bytes()).expect("parses");
    for report in all_reports(&history) {
        assert_eq!(report.verdict(), Verdict::Unknown, "{report}");
        assert!(!report.ok());
        assert!(report.to_string().contains("no outstanding invoke"), "{report}");
    }
}
