//! The part every workload shares: one client task per history process, the deadline,
//! the grace period after it, live counts and the progress display.

use std::cell::Cell;
use std::future::Future;
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use indicatif::{ProgressBar, ProgressStyle};
use kahuna_client::{Client, Error};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::{Value, json};
use tokio::task::JoinSet;

use super::{Tally, WorkloadError, WorkloadKind, WorkloadOptions, WorkloadRun};
use crate::recorder::{Pending, Recorder};

/// How often the progress display refreshes.
const PROGRESS_TICK_MS: u64 = 250;
/// How often a plain progress line is printed when stderr is not a terminal.
const PROGRESS_LINE_MS: u64 = 5_000;

/// Outcomes counted as they are recorded, for the progress display.
#[derive(Debug, Default)]
pub(super) struct LiveTally {
    ok: AtomicUsize,
    failed: AtomicUsize,
    unknown: AtomicUsize,
}

impl LiveTally {
    fn snapshot(&self) -> Tally {
        Tally {
            ok: self.ok.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            unknown: self.unknown.load(Ordering::Relaxed),
        }
    }
}

/// One client task: a history process with its own client, random source and deadline.
pub(super) struct Process {
    /// The history process id.
    pub(super) id: u64,
    pub(super) client: Client,
    pub(super) rng: StdRng,
    recorder: Recorder,
    deadline: Instant,
    live: Arc<LiveTally>,
}

impl Process {
    /// True until the run's duration is over; no operation is invoked after that.
    pub(super) fn running(&self) -> bool {
        Instant::now() < self.deadline
    }

    /// Records the invoke of `f` with its arguments.
    pub(super) fn invoke(&self, f: &str, fields: Value) -> Pending {
        self.recorder.invoke(self.id, f, fields)
    }

    /// The operation took effect.
    pub(super) fn ok(&self, pending: Pending, results: Value) {
        self.live.ok.fetch_add(1, Ordering::Relaxed);
        pending.ok(results);
    }

    /// The operation definitely did not take effect.
    pub(super) fn fail(&self, pending: Pending, results: Value) {
        self.live.failed.fetch_add(1, Ordering::Relaxed);
        pending.fail(results);
    }

    /// The call failed: `fail` when the error proves nothing was applied, `info` otherwise.
    ///
    /// Only errors the server returns before touching state are definite. A timeout may
    /// come after the write committed, and `Unavailable` may come from a node that lost
    /// its connection to a leader that did commit; anything unexpected is also unknown.
    pub(super) fn error(&self, pending: Pending, error: &Error) {
        if matches!(error, Error::InvalidInput(_) | Error::NotFound(_) | Error::Compacted(_)) {
            self.failed(pending, error);
        } else {
            self.unknown(pending, error);
        }
    }

    /// The operation definitely did not take effect, and `error` says why (for example a
    /// transaction abandoned before its commit was sent).
    pub(super) fn failed(&self, pending: Pending, error: &Error) {
        self.fail(pending, error_fields(error));
    }

    /// The operation may or may not have taken effect: `error` came after it was sent.
    pub(super) fn unknown(&self, pending: Pending, error: &Error) {
        self.live.unknown.fetch_add(1, Ordering::Relaxed);
        pending.info(error_fields(error));
    }
}

/// How the history records an error: its message and stable code.
fn error_fields(error: &Error) -> Value {
    json!({"error": error.to_string(), "code": error.code()})
}

/// Builds the client of process `id`: the endpoints rotated by `id`, so processes start
/// on different nodes and each node's faults meet some of them.
pub(super) fn client_for(options: &WorkloadOptions, id: usize) -> Result<Client, WorkloadError> {
    let mut endpoints = options.endpoints.clone();
    let shift = id % endpoints.len();
    endpoints.rotate_left(shift);
    Client::builder(endpoints)
        .timeout(options.timeout)
        .retries(options.retries)
        .pipeline(options.pipeline)
        .build()
        .map_err(WorkloadError::Client)
}

/// Asks the cluster for its status through any endpoint, so that a run against a
/// cluster that is down fails at once instead of recording nothing but timeouts.
pub(super) async fn probe(options: &WorkloadOptions) -> Result<Client, WorkloadError> {
    let client = client_for(options, 0)?;
    match client.status().await {
        Ok(_) => Ok(client),
        Err(source) => Err(WorkloadError::Unreachable { endpoints: options.endpoints.join(","), source }),
    }
}

/// Runs `body` once per process until the deadline, then collects the history.
///
/// `body(process)` loops while `process.running()`. Tasks still running `grace` after the
/// deadline are aborted; their last operations stay unknown, which is what they are.
pub(super) async fn drive<F, Fut>(
    kind: WorkloadKind,
    options: &WorkloadOptions,
    mut body: F,
) -> Result<WorkloadRun, WorkloadError>
where
    F: FnMut(Process) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let started_at = SystemTime::now();
    let base = Instant::now();
    let recorder = Recorder::with_base(base);
    let live = Arc::new(LiveTally::default());
    let deadline = base + options.duration;
    let mut tasks = JoinSet::new();
    for i in 0..options.clients {
        let id = u64::try_from(i).unwrap_or(u64::MAX);
        let process = Process {
            id,
            client: client_for(options, i)?,
            rng: StdRng::seed_from_u64(options.seed.wrapping_add(id)),
            recorder: recorder.clone(),
            deadline,
            live: live.clone(),
        };
        tasks.spawn(body(process));
    }
    let progress = Progress::new(options.progress, kind, options.duration);
    let hard_stop = tokio::time::Instant::from_std(deadline + options.grace());
    let mut ticks = tokio::time::interval(Duration::from_millis(PROGRESS_TICK_MS));
    let mut aborted = false;
    loop {
        tokio::select! {
            joined = tasks.join_next() => match joined {
                None => break,
                Some(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Some(_) => {}
            },
            _ = ticks.tick() => progress.show(base.elapsed(), live.snapshot()),
            _ = tokio::time::sleep_until(hard_stop), if !aborted => {
                aborted = true;
                tasks.abort_all();
            }
        }
    }
    progress.finish();
    let history = recorder.history();
    let ops = history.operations().unwrap_or_default();
    Ok(WorkloadRun {
        workload: kind,
        tally: Tally::of(&ops),
        history,
        started_at,
        elapsed: base.elapsed(),
        key_prefix: options.key_prefix.clone(),
    })
}

/// Progress on stderr: a bar on a terminal, a line every few seconds otherwise.
struct Progress {
    bar: Option<ProgressBar>,
    plain: bool,
    kind: WorkloadKind,
    duration: Duration,
    next_line: Cell<Duration>,
}

impl Progress {
    fn new(enabled: bool, kind: WorkloadKind, duration: Duration) -> Progress {
        let terminal = enabled && std::io::stderr().is_terminal();
        let bar = terminal.then(|| {
            let bar = ProgressBar::new(duration.as_secs().max(1));
            let template = "{prefix} [{bar:30}] {pos}/{len} s  {msg}";
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_prefix(format!("{kind}"));
            bar
        });
        let next_line = Cell::new(Duration::from_millis(PROGRESS_LINE_MS));
        Progress { bar, plain: enabled && !terminal, kind, duration, next_line }
    }

    fn show(&self, elapsed: Duration, tally: Tally) {
        if let Some(bar) = &self.bar {
            bar.set_position(elapsed.as_secs().min(self.duration.as_secs()));
            bar.set_message(tally.to_string());
            return;
        }
        if !self.plain {
            return;
        }
        if elapsed >= self.next_line.get() {
            self.next_line.set(self.next_line.get() + Duration::from_millis(PROGRESS_LINE_MS));
            let (done, total) = (elapsed.as_secs().min(self.duration.as_secs()), self.duration.as_secs());
            eprintln!("kahuna check: {} {done}/{total} s: {tally}", self.kind);
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
