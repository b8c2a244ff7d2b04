//! Runs a [`Plan`]: the preload, then `clients` tasks for warmup plus duration, then the
//! merged summary.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, anyhow};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::driver::{Driver, Keyspace, OpError};
use crate::plan::{Op, Plan, Schedule, latency_start};
use crate::report::Progress;
use crate::stats::{Recorder, Summary};

/// How often the progress bar is redrawn.
const PROGRESS_TICK_MS: u64 = 200;

/// The result of a run.
#[derive(Clone, Debug)]
pub(crate) struct Outcome {
    pub(crate) summary: Summary,
}

/// The time frame every client follows.
#[derive(Clone, Copy, Debug)]
struct Window {
    start: Instant,
    /// End of the warmup: operations sent (or, open loop, due) from here on are measured.
    measure_start: Instant,
    /// No operation is sent (or, open loop, due) at or after this.
    end: Instant,
}

/// Counters the progress bar reads while the clients run; measured operations only.
#[derive(Debug, Default)]
struct Live {
    ops: AtomicU64,
    errors: AtomicU64,
}

/// Preloads when the workload reads, runs the clients and merges what they recorded.
/// Client `i` uses `drivers[i % drivers.len()]`.
pub(crate) async fn execute<D: Driver>(plan: &Plan, drivers: &[D], progress: Progress) -> anyhow::Result<Outcome> {
    anyhow::ensure!(!drivers.is_empty(), "no driver to run the clients on");
    if let Some(keyspace) = plan.preload() {
        preload(plan, drivers, keyspace, &progress).await?;
    }

    let plan = Arc::new(plan.clone());
    let live = Arc::new(Live::default());
    let start = Instant::now();
    let window = Window { start, measure_start: start + plan.warmup, end: start + plan.warmup + plan.duration };
    let mut clients = JoinSet::new();
    for (index, driver) in (0..plan.clients).zip(drivers.iter().cycle()) {
        clients.spawn(client(driver.clone(), index, Arc::clone(&plan), window, Arc::clone(&live)));
    }
    let bar = progress.run_bar(plan.warmup + plan.duration);
    let ticker = tokio::spawn(show_progress(bar.clone(), window, Arc::clone(&live)));

    let mut recorded = Recorder::new();
    let mut failure = None;
    while let Some(joined) = clients.join_next().await {
        match joined {
            Ok(recorder) => recorded.merge(&recorder),
            Err(e) => failure = failure.or(Some(e)),
        }
    }
    ticker.abort();
    bar.finish_and_clear();
    if let Some(e) = failure {
        return Err(anyhow!(e).context("a benchmark client panicked"));
    }
    Ok(Outcome { summary: recorded.summary(window.measure_start, plan.duration) })
}

/// Writes every key of the keyspace once, with `plan.clients` writers.
async fn preload<D: Driver>(plan: &Plan, drivers: &[D], keyspace: Keyspace, progress: &Progress) -> anyhow::Result<()> {
    let keys = plan.keys;
    progress.note(&format!("preloading {} keys ({keyspace:?})", keys.count()));
    let bar = progress.preload_bar(keys.count());
    let writers = u64::from(plan.clients).min(keys.count());
    let mut tasks = JoinSet::new();
    for (writer, driver) in (0..writers).zip(drivers.iter().cycle()) {
        let (driver, value, bar) = (driver.clone(), Arc::clone(&plan.value), bar.clone());
        tasks.spawn(async move {
            for index in (writer..keys.count()).step_by(usize::try_from(writers).unwrap_or(usize::MAX)) {
                let key = keys.key(index);
                driver.put(&key, &value, keyspace).await.with_context(|| format!("preloading key {key:?}"))?;
                bar.inc(1);
            }
            anyhow::Ok(())
        });
    }
    // The first failure returns at once; dropping the set aborts the other writers.
    while let Some(joined) = tasks.join_next().await {
        joined.context("a preload task panicked")??;
    }
    bar.finish_and_clear();
    Ok(())
}

/// One client: sends operations until the window ends, one at a time, and records the
/// measured ones.
async fn client<D: Driver>(driver: D, index: u32, plan: Arc<Plan>, window: Window, live: Arc<Live>) -> Recorder {
    let mut rng = plan.client_rng(index);
    let mut recorder = Recorder::new();
    let schedule = plan.rate.map(|rate| Schedule::for_client(window.start, rate, plan.clients, index));
    let mut previous_done = window.start;
    let mut sent_count: u64 = 0;
    loop {
        let (latency_from, measured) = if let Some(schedule) = &schedule {
            // A backlog left from the warmup is dropped, so the measured time starts
            // on schedule; a backlog built up within it counts in full.
            if Instant::now() >= window.measure_start {
                sent_count = sent_count.max(schedule.count_before(window.measure_start));
            }
            let intended = schedule.intended(sent_count);
            if intended >= window.end {
                break;
            }
            if Instant::now() >= window.end {
                // Behind: the sends still due in the measured time never happen.
                recorder.unsent(schedule.count_before(window.end).saturating_sub(sent_count));
                break;
            }
            sent_count += 1;
            tokio::time::sleep_until(intended).await;
            (latency_start(intended, previous_done, Instant::now()), intended >= window.measure_start)
        } else {
            let sent = Instant::now();
            if sent >= window.end {
                break;
            }
            (sent, sent >= window.measure_start)
        };
        let key = plan.keys.random_key(&mut rng);
        let result = run_op(&driver, plan.next_op(&mut rng), &key, &plan.value).await;
        let done = Instant::now();
        previous_done = done;
        if !measured {
            continue;
        }
        match result {
            Ok(found) => {
                recorder.success(done.saturating_duration_since(latency_from), done);
                if !found {
                    recorder.miss();
                }
                live.ops.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                recorder.error(&e, done);
                live.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    recorder
}

/// Runs one operation; a put reports `true` (found) so only reads can miss.
async fn run_op<D: Driver>(driver: &D, op: Op, key: &str, value: &[u8]) -> Result<bool, OpError> {
    match op {
        Op::Put(keyspace) => driver.put(key, value, keyspace).await.map(|()| true),
        Op::Get(keyspace, read) => driver.get(key, keyspace, read).await,
    }
}

/// Redraws the run's bar until aborted: time elapsed, phase, measured ops and rate.
async fn show_progress(bar: indicatif::ProgressBar, window: Window, live: Arc<Live>) {
    let mut tick = tokio::time::interval(Duration::from_millis(PROGRESS_TICK_MS));
    loop {
        tick.tick().await;
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(window.start);
        bar.set_position(u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX));
        if now < window.measure_start {
            bar.set_message("warmup");
            continue;
        }
        let ops = live.ops.load(Ordering::Relaxed);
        let errors = live.errors.load(Ordering::Relaxed);
        let measured_s = now.saturating_duration_since(window.measure_start).as_secs_f64();
        let rate = if measured_s > 0.0 { ops as f64 / measured_s } else { 0.0 };
        bar.set_message(format!("{ops} ops, {rate:.0} ops/s, {errors} errors"));
    }
}
