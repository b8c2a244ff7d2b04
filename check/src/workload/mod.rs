//! Workload runners: concurrent clients drive a live cluster while a [`Recorder`] writes
//! down what they saw; the matching checker then judges the history.
//!
//! A run is split in two so that a test can inject faults while the workload runs and
//! judge the history afterwards: [`run_workload`] (clients, recording, progress) and
//! [`check_workload`] (the checker for that workload). [`run`] does both for
//! `kahuna check` and prints the figures.
//!
//! Each client task is one history *process*: it invokes one operation at a time, records
//! `ok` or `fail` for definite outcomes and `info` when the outcome is unknown (a timeout,
//! an unavailable cluster). Writes carry operation ids (the client's default), so the
//! client's own retries never apply a write twice.
//!
//! Submodules, one per workload, plus `driver` (tasks, deadline, progress), `txn` (how
//! the transactional workloads record their ends) and `cli` (`kahuna check`).

mod append;
mod bank;
mod cli;
mod driver;
mod lock;
mod register;
mod sequence;
mod txn;

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::history::{History, Operation, Outcome};
use crate::report::{Report, ViolationKind};
use crate::{AppendOptions, BankOptions, RegisterOptions, check_append, check_bank, check_lock, check_register};
use crate::{check_sequence, report::Verdict};

pub use append::{AppendLists, ListOp, decode_list};
pub use cli::{CheckArgs, EXIT_UNDECIDED, EXIT_VIOLATIONS, run};

/// Most client tasks one run may start.
pub const CLIENTS_MAX: usize = 1_024;
/// Most keys (registers, accounts, lists) one run may spread its operations over.
pub const KEYS_MAX: usize = 100_000;
/// Longest run, in seconds (one day).
pub const DURATION_SECS_MAX: u64 = 86_400;

/// Which workload to run; each has its own checker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum WorkloadKind {
    /// get / set / compare-and-set on a few keys; checked for linearizability per key.
    Register,
    /// try-lock, fenced writes, unlock; checked for lock safety.
    Lock,
    /// next / reserve with idempotency keys; checked for uniqueness.
    Sequence,
    /// list-append transactions; checked for G0 .. G2 and real-time order.
    Append,
    /// transfers between accounts and reads of them all, in transactions; checked for
    /// conserved totals and no negative balance.
    Bank,
}

impl WorkloadKind {
    /// The workload's name as `--workload` spells it.
    pub fn name(self) -> &'static str {
        match self {
            WorkloadKind::Register => "register",
            WorkloadKind::Lock => "lock",
            WorkloadKind::Sequence => "sequence",
            WorkloadKind::Append => "append",
            WorkloadKind::Bank => "bank",
        }
    }

    /// Every kind of violation this workload's checker reports, so that a runner can show
    /// each counter, zeros included. `Malformed` (and, for the register, the search bound)
    /// are the inconclusive ones.
    pub fn violation_kinds(self) -> &'static [ViolationKind] {
        use ViolationKind::*;
        match self {
            WorkloadKind::Register => &[NotLinearizable, SearchBoundExceeded, Malformed],
            WorkloadKind::Lock => {
                &[StaleTokenAccepted, DuplicateToken, TokenNotIncreasing, OverlappingHolders, Malformed]
            }
            WorkloadKind::Sequence => &[DuplicateValue, IdempotencyMismatch, Malformed],
            WorkloadKind::Append => &[
                G0,
                G1a,
                G1b,
                G1c,
                GSingle,
                G2,
                RealTime,
                IncompatibleOrder,
                DuplicateElements,
                LostAppend,
                UnknownValue,
                Malformed,
            ],
            WorkloadKind::Bank => &[WrongTotal, NegativeBalance, Malformed],
        }
    }

    /// The key of register, lock, list or account `index` of a run whose keys start with
    /// `prefix` (the sequence workload has one sequence, whatever `index`). Each is a
    /// bucket of its own, so a test can find the partition it lives in and aim a fault at
    /// that partition's leader.
    pub fn key(self, prefix: &str, index: usize) -> String {
        match self {
            WorkloadKind::Register => register::key(prefix, index),
            WorkloadKind::Lock => lock::lock_name(prefix, index),
            WorkloadKind::Sequence => sequence::name(prefix),
            WorkloadKind::Append => append::list_key(prefix, index),
            WorkloadKind::Bank => bank::account(prefix, index),
        }
    }
}

impl fmt::Display for WorkloadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How a workload runs: where, how long, how many clients and keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadOptions {
    /// Cluster endpoints (`host:port`); client `i` tries them starting at `i % len`, so the
    /// load and the faults' victims spread over every node.
    pub endpoints: Vec<String>,
    /// How long clients keep invoking new operations. Operations in flight at the end get
    /// [`WorkloadOptions::grace`] to finish and are left unknown after that.
    pub duration: Duration,
    /// Concurrent clients, one history process each.
    pub clients: usize,
    /// Keys the operations spread over: registers, locks, bank accounts, or the lists in
    /// use at a time (each list is retired after a number of appends). More registers keep
    /// the linearizability search small when many outcomes are unknown.
    pub keys: usize,
    /// Budget of one attempt of a call (the client fails over to the next endpoint after it).
    pub timeout: Duration,
    /// Retries of a call after its first attempt (reads, and writes with operation ids).
    pub retries: u32,
    /// Seeds each client's choice of operations and keys (client `i` uses `seed + i`).
    pub seed: u64,
    /// Prefix of every key the run touches; unique per run by default, so that every
    /// register starts never written.
    pub key_prefix: String,
    /// Shows progress on stderr.
    pub progress: bool,
    /// Clients send single-key calls over pipelines
    /// ([`ClientBuilder::pipeline`](kahuna_client::ClientBuilder::pipeline)).
    pub pipeline: bool,
}

impl WorkloadOptions {
    /// Defaults: 30 s, 5 clients, 8 keys, 2 s per attempt, 2 retries, a fresh key prefix
    /// and seed, no progress, unary calls.
    pub fn new(endpoints: impl IntoIterator<Item = impl Into<String>>) -> WorkloadOptions {
        let seed: u64 = rand::random();
        WorkloadOptions {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            duration: Duration::from_secs(30),
            clients: 5,
            keys: 8,
            timeout: Duration::from_secs(2),
            retries: 2,
            seed,
            key_prefix: format!("kahuna-check-{:08x}", seed >> 32),
            progress: false,
            pipeline: false,
        }
    }

    /// How long operations still in flight at the end of `duration` may take: every
    /// attempt of one call plus the backoffs between them.
    pub fn grace(&self) -> Duration {
        let attempts = self.retries.saturating_add(1);
        let backoffs = Duration::from_millis(kahuna_client::BACKOFF_MS_MAX).saturating_mul(self.retries);
        self.timeout.saturating_mul(attempts).saturating_add(backoffs)
    }

    /// Checks every limit, naming the one broken.
    pub fn validate(&self) -> Result<(), WorkloadError> {
        let invalid = |message: String| Err(WorkloadError::InvalidOptions(message));
        if self.endpoints.is_empty() {
            return invalid("no endpoints given".into());
        }
        if self.clients == 0 || self.clients > CLIENTS_MAX {
            return invalid(format!("{} clients asked, must be 1 to {CLIENTS_MAX}", self.clients));
        }
        if self.keys == 0 || self.keys > KEYS_MAX {
            return invalid(format!("{} keys asked, must be 1 to {KEYS_MAX}", self.keys));
        }
        if self.duration.is_zero() || self.duration > Duration::from_secs(DURATION_SECS_MAX) {
            return invalid(format!("duration {:?} must be above 0 and at most {DURATION_SECS_MAX} s", self.duration));
        }
        if self.key_prefix.is_empty() || self.key_prefix.starts_with("__kahuna:") {
            return invalid(format!("key prefix {:?} is empty or reserved", self.key_prefix));
        }
        Ok(())
    }
}

/// Why a workload could not run. Violations are not errors: they are in the checker's
/// report.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkloadError {
    /// An option breaks a limit; the message names it.
    #[error("invalid workload options: {0}")]
    InvalidOptions(String),
    /// The workload could not prepare its keys (the bank's initial balances); nothing
    /// was recorded.
    #[error("the {workload} workload could not set up: {reason}")]
    Setup {
        /// The workload asked for.
        workload: WorkloadKind,
        /// What went wrong, naming the keys or the last error.
        reason: String,
    },
    /// The client could not be created (a malformed endpoint, a bad setting).
    #[error("cannot create a client: {0}")]
    Client(kahuna_client::Error),
    /// No endpoint answered before the workload started.
    #[error("cannot reach the cluster at {endpoints}: {source}")]
    Unreachable {
        /// The endpoints tried, comma-separated.
        endpoints: String,
        /// The last error.
        source: kahuna_client::Error,
    },
}

/// What a workload run recorded.
#[derive(Debug, Clone)]
pub struct WorkloadRun {
    /// The workload that ran.
    pub workload: WorkloadKind,
    /// Every event, with times in ns since `started_at`.
    pub history: History,
    /// Operations by outcome.
    pub tally: Tally,
    /// Wall-clock time of the history's time 0, to place outside events (faults) in it.
    pub started_at: SystemTime,
    /// From the first invoke to the last completion.
    pub elapsed: Duration,
    /// The prefix of every key the run touched.
    pub key_prefix: String,
}

impl WorkloadRun {
    /// The history time (ns since `started_at`) of a wall-clock instant; 0 before the run.
    pub fn time_of(&self, at: SystemTime) -> u64 {
        history_time(self.started_at, at)
    }
}

/// The history time (ns since `started_at`) of `at`; 0 before `started_at`, saturating.
pub fn history_time(started_at: SystemTime, at: SystemTime) -> u64 {
    at.duration_since(started_at).map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Operations counted by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    /// Took effect (`ok`).
    pub ok: usize,
    /// Definitely did not take effect (`fail`).
    pub failed: usize,
    /// May or may not have taken effect (`info`, or never completed).
    pub unknown: usize,
}

impl Tally {
    /// Counts `ops` by outcome.
    pub fn of(ops: &[Operation]) -> Tally {
        Tally::window(ops, 0, u64::MAX)
    }

    /// Counts the operations invoked at history times in `[from_ns, to_ns)`.
    pub fn window(ops: &[Operation], from_ns: u64, to_ns: u64) -> Tally {
        let mut tally = Tally::default();
        for op in ops.iter().filter(|op| (from_ns..to_ns).contains(&op.invoke_time)) {
            tally.add(op.outcome);
        }
        tally
    }

    /// Counts `ops` by operation name (`read`, `write`, `cas`, ...).
    pub fn by_f(ops: &[Operation]) -> BTreeMap<String, Tally> {
        let mut tallies: BTreeMap<String, Tally> = BTreeMap::new();
        for op in ops {
            tallies.entry(op.f.clone()).or_default().add(op.outcome);
        }
        tallies
    }

    /// Adds one operation.
    pub fn add(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Ok => self.ok += 1,
            Outcome::Fail => self.failed += 1,
            Outcome::Unknown => self.unknown += 1,
        }
    }

    /// All operations counted.
    pub fn total(&self) -> usize {
        self.ok + self.failed + self.unknown
    }
}

impl fmt::Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ok {} / failed {} / unknown {}", self.ok, self.failed, self.unknown)
    }
}

/// Runs `kind` against the cluster in `options` and returns what it recorded.
///
/// Checks that some endpoint answers before starting. Returns once every client has
/// finished, at most [`WorkloadOptions::grace`] after `duration`; operations cut off then
/// stay unknown in the history.
///
/// # Cancel safety
///
/// Dropping the future stops the clients at their next await; writes already sent may
/// still apply, and the keys the run wrote stay behind (a finished run deletes them).
pub async fn run_workload(kind: WorkloadKind, options: &WorkloadOptions) -> Result<WorkloadRun, WorkloadError> {
    options.validate()?;
    match kind {
        WorkloadKind::Register => register::run(options).await,
        WorkloadKind::Lock => lock::run(options).await,
        WorkloadKind::Sequence => sequence::run(options).await,
        WorkloadKind::Append => append::run(options).await,
        WorkloadKind::Bank => bank::run(options).await,
    }
}

/// Judges a history recorded by `kind`'s workload with its checker. `keys` is the run's
/// key count (the bank total depends on it).
pub fn check_workload(kind: WorkloadKind, history: &History, keys: usize) -> Box<dyn Report + Send + Sync> {
    match kind {
        WorkloadKind::Register => Box::new(check_register(history, &RegisterOptions::default())),
        WorkloadKind::Lock => Box::new(check_lock(history)),
        WorkloadKind::Sequence => Box::new(check_sequence(history)),
        WorkloadKind::Append => Box::new(check_append(history, &AppendOptions::default())),
        WorkloadKind::Bank => Box::new(check_bank(history, &BankOptions::new(bank::total(keys)))),
    }
}

/// The violations a report found among operations invoked in `[from_ns, to_ns)`, by the
/// first operation each names; a violation naming no operation counts in every window.
pub fn violations_in(report: &dyn Report, from_ns: u64, to_ns: u64) -> usize {
    let inside = |t: u64| (from_ns..to_ns).contains(&t);
    report.violations().iter().filter(|v| v.ops.first().is_none_or(|op| inside(op.invoke_time))).count()
}

/// True when a run may be called a pass: the checker is sure and something succeeded.
pub(crate) fn passed(verdict: Verdict, tally: &Tally) -> bool {
    verdict == Verdict::Valid && tally.ok > 0
}

#[cfg(test)]
mod tests;
