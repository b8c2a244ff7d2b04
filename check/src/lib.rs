//! Kahuna's history recorder and checkers, in the style of Jepsen.
//!
//! A workload runner records what its clients did through a [`Recorder`] (one shared clock,
//! invoke then `ok`/`fail`/`info` per operation), saves it as JSONL, and hands the
//! [`History`] to a checker. Every checker returns a report with a [`Verdict`], counts, the
//! [`Violation`]s it found with the operations involved, `ok()`, and a `Display` summary.
//! `Unknown` (search bound exceeded, malformed input) is never a pass.
//!
//! ```
//! use kahuna_check::{Recorder, RegisterOptions, check_register};
//! use serde_json::json;
//!
//! let recorder = Recorder::new();
//! recorder.invoke(0, "write", json!({"key": "x", "value": 1})).ok(json!({}));
//! recorder.invoke(1, "read", json!({"key": "x"})).ok(json!({"value": 1}));
//! // A reply that never came: the operation may or may not have happened.
//! let _lost = recorder.invoke(2, "cas", json!({"key": "x", "expected": 1, "new": 2}));
//!
//! let report = check_register(&recorder.history(), &RegisterOptions::default());
//! assert!(report.ok(), "{report}");
//! ```
//!
//! Operation fields each checker reads (arguments on the invoke, results on the `ok`; a
//! missing `key`/`lock`/`sequence` names the single default one):
//!
//! | checker | `f` and fields |
//! |---|---|
//! | [`check_register`] | `read` {key, value (result; null = never written)}, `write` {key, value}, `cas` {key, expected, new} (`fail` = did not swap) |
//! | [`check_lock`] | `acquire` {lock, owner?, token (result)}, `release` {lock}, `write` {resource, token} (`ok` = accepted, `fail` = rejected) |
//! | [`check_sequence`] | `next` {sequence, idempotency_key?, value: N (result)}, `reserve` {sequence, count, idempotency_key?, value: \[first, last\] (result)} |
//! | [`check_append`] | `txn` {value: \[\["append", k, v\], \["r", k, null → \[v, ...\] (result)\], ...\]} |
//! | [`check_bank`] | `read` {value: {account: balance} (result)}, `transfer` {from, to, amount} |
//!
//! The module behind each checker explains what it infers and why that is sound.
//!
//! [`run_workload`] drives a live cluster with concurrent clients and records the history
//! for one of these checkers ([`WorkloadKind`]); [`check_workload`] judges it, and [`run`]
//! does both for `kahuna check` ([`CheckArgs`]). The append and bank workloads run
//! interactive transactions; a `Conflict` on commit is recorded as `fail` and any other
//! commit error as `info`.

// The event model: JSONL parsing and writing, pairing invokes with completions.
mod history;
// The thread-safe recorder that stamps events from one monotonic clock.
mod recorder;
// Verdicts, violations and the `Report` trait shared by all checkers.
mod report;
// Per-key register linearizability (Wing–Gong search with memoization).
mod register;
// Lock safety: fencing tokens, duplicate grants, overlapping holders.
mod lock;
// Sequence uniqueness and idempotency-key stability.
mod sequence;
// Elle-style anomalies on list-append transactions (G0 .. G2, realtime).
mod append;
// The bank invariant: conserved totals, no negative balances.
mod bank;
#[cfg(test)]
mod testkit;
// Workload runners against a live cluster, and `kahuna check`.
mod workload;

pub use append::{AppendOptions, AppendReport, check_append};
pub use bank::{BankOptions, BankReport, check_bank};
pub use history::{Event, EventKind, History, Operation, Outcome, PairError, ParseError, TIME_INFINITY};
pub use lock::{LockReport, check_lock};
pub use recorder::{Pending, Recorder};
pub use register::{RegisterOptions, RegisterReport, check_register};
pub use report::{OpRef, Report, Verdict, Violation, ViolationKind};
pub use sequence::{SequenceReport, check_sequence};
pub use workload::{
    AppendLists, CLIENTS_MAX, CheckArgs, DURATION_SECS_MAX, EXIT_UNDECIDED, EXIT_VIOLATIONS, KEYS_MAX, ListOp, Tally,
    WorkloadError, WorkloadKind, WorkloadOptions, WorkloadRun, check_workload, decode_list, history_time, run,
    run_workload, violations_in,
};
