//! Runs a [`Plan`]: the setup (what the system offers, its partitions, the script, the
//! preload), then `clients` tasks for warmup plus duration, then the merged summary.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, anyhow};
use rand::Rng;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::args::Workload;
use crate::driver::{Driver, Keyspace, OpError};
use crate::plan::{Op, Plan, Preload, Schedule, Span, latency_start};
use crate::report::Progress;
use crate::stats::{Recorder, Summary};

/// How often the progress bar is redrawn.
const PROGRESS_TICK_MS: u64 = 200;
/// Fewest concurrent preload writers (more when there are more clients): the preload is
/// not measured, so a one-client run need not fill the keyspace one write at a time.
const PRELOAD_WRITERS_MIN: u64 = 64;
/// Lease of every lock the lock workload takes: long enough to outlive any cycle, short
/// enough that a lock left by a stopped run frees itself soon.
pub(crate) const LOCK_LEASE_MS: u64 = 10_000;

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

/// Sets up what the workload needs ([`setup`]), runs the clients and merges what they
/// recorded. Client `i` uses `drivers[i % drivers.len()]`.
pub(crate) async fn execute<D: Driver>(plan: &Plan, drivers: &[D], progress: Progress) -> anyhow::Result<Outcome> {
    let plan = Arc::new(setup(plan, drivers, &progress).await?);
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

/// Everything before the clients start, none of it measured: stops when the system does
/// not offer the workload, learns its partitions (transactions), loads the script on every
/// driver (script), and preloads. Returns the plan the clients run.
async fn setup<D: Driver>(plan: &Plan, drivers: &[D], progress: &Progress) -> anyhow::Result<Plan> {
    let Some(first) = drivers.first() else { anyhow::bail!("no driver to run the clients on") };
    if !first.supports(plan.workload) {
        anyhow::bail!("the {} workload is not supported by {}", plan.workload.name(), first.name());
    }
    let mut plan = plan.clone();
    if matches!(plan.workload, Workload::Txn | Workload::Txn2p) {
        let partitions = first.partitions().await.context("cannot learn the number of partitions")?;
        plan = plan.with_partitions(partitions).map_err(anyhow::Error::msg)?;
    }
    if plan.workload == Workload::Script {
        for driver in drivers {
            driver.load_script().await.context("cannot load the benchmark script")?;
        }
    }
    if let Some(preload) = plan.preload() {
        run_preload(&plan, drivers, preload, progress).await?;
    }
    Ok(plan)
}

/// Writes (or creates) every item of `preload` once, with as many writers as clients but
/// at least [`PRELOAD_WRITERS_MIN`].
async fn run_preload<D: Driver>(
    plan: &Plan,
    drivers: &[D],
    preload: Preload,
    progress: &Progress,
) -> anyhow::Result<()> {
    let count = plan.preload_count(preload);
    let noun = match preload {
        Preload::Keys(Keyspace::Persistent) | Preload::TxnKeys => "keys",
        Preload::Keys(Keyspace::Ephemeral) => "ephemeral keys",
        Preload::Sequences => "sequences",
    };
    progress.note(&format!("preloading {count} {noun}"));
    let bar = progress.preload_bar(count, noun);
    let writers = u64::from(plan.clients).max(PRELOAD_WRITERS_MIN).min(count);
    let shared = Arc::new(plan.clone());
    let mut tasks = JoinSet::new();
    for (writer, driver) in (0..writers).zip(drivers.iter().cycle()) {
        let (driver, plan, bar) = (driver.clone(), Arc::clone(&shared), bar.clone());
        tasks.spawn(async move {
            for index in (writer..count).step_by(usize::try_from(writers).unwrap_or(usize::MAX)) {
                preload_one(&driver, &plan, preload, index).await?;
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

/// Item `index` of `preload`.
async fn preload_one<D: Driver>(driver: &D, plan: &Plan, preload: Preload, index: u64) -> anyhow::Result<()> {
    match preload {
        Preload::Keys(keyspace) => {
            let key = plan.keys.key(index);
            driver.put(&key, &plan.value, keyspace).await.with_context(|| format!("preloading key {key:?}"))
        }
        Preload::TxnKeys => {
            let key = plan.pairs.key(index);
            driver.put(&key, &plan.value, Keyspace::Persistent).await.with_context(|| format!("preloading key {key:?}"))
        }
        Preload::Sequences => {
            let name = plan.keys.sequence_name(index);
            driver.create_sequence(&name).await.with_context(|| format!("creating sequence {name:?}"))
        }
    }
}

/// One client: sends operations until the window ends, one at a time, and records the
/// measured ones.
async fn client<D: Driver>(driver: D, index: u32, plan: Arc<Plan>, window: Window, live: Arc<Live>) -> Recorder {
    let mut rng = plan.client_rng(index);
    let owner = format!("bench-{:x}-{index}", plan.seed);
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
        let op = plan.next_op(&mut rng);
        let result = run_op(&driver, &plan, op, &owner, &mut rng).await;
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

/// Runs one operation on keys (or names) drawn from `rng`. Returns false for a miss: a
/// read that found no key, or a lock another client held (then not unlocked); every other
/// success is true.
async fn run_op<D: Driver>(driver: &D, plan: &Plan, op: Op, owner: &str, rng: &mut impl Rng) -> Result<bool, OpError> {
    let keys = plan.keys;
    match op {
        Op::Put(keyspace) => driver.put(&keys.random_key(rng), &plan.value, keyspace).await.map(|()| true),
        Op::Get(keyspace, read) => driver.get(&keys.random_key(rng), keyspace, read).await,
        Op::LockCycle => {
            let name = keys.lock_name(keys.random_index(rng));
            if !driver.try_lock(&name, owner, LOCK_LEASE_MS).await? {
                return Ok(false);
            }
            driver.unlock(&name, owner).await.map(|()| true)
        }
        Op::SequenceNext => driver.next_sequence(&keys.sequence_name(keys.random_index(rng))).await.map(|()| true),
        Op::SequenceReserve(count) => {
            driver.reserve_sequence(&keys.sequence_name(keys.random_index(rng)), count).await.map(|()| true)
        }
        Op::Script => driver.run_script(&keys.random_key(rng)).await.map(|()| true),
        Op::Txn(span) => {
            let pair = match span {
                Span::OnePartition => Some(plan.pairs.one_partition(rng)),
                Span::TwoPartitions => plan.pairs.two_partitions(rng),
            };
            // The setup checked that two-partition pairs exist.
            let Some((a, b)) = pair else {
                return Err(OpError { kind: "NoPair".into(), message: "no keys in two partitions".into() });
            };
            driver.txn(&a, &b, &plan.value).await.map(|()| true)
        }
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
