//! `kahuna bench`: a load generator that reports throughput and latency for one workload
//! against a running Kahuna cluster.
//!
//! Workloads (`--workload`): persistent `put`; `get` (linearizable) and `get-serializable`;
//! `mixed` (half each); ephemeral `eput` and `eget`; `lock` (try-lock then unlock, one
//! operation per cycle); `sequence-next` and `sequence-reserve` (`--reserve` values);
//! `script` (a Lua script run by hash that reads one key and writes it back
//! incremented); `txn` (read two keys of one partition, write both, commit) and `txn-2p`
//! (the same over two partitions). Each driver's module says how it maps them.
//!
//! Clients run as separate tokio tasks. In the closed loop (the default) each client sends
//! its next operation as soon as the previous one returns. With `--rate` the loop is open:
//! every client follows a fixed send schedule that together makes up the total rate, and
//! latency runs from the time an operation was *meant* to be sent whenever the client was
//! still busy then, so a stalled server cannot hide its queueing delay (coordinated
//! omission). The summary gives ops, errors, ops/s and p50/p99/p999/max latency in ms, as
//! text or as one JSON object (`--json`).
//!
//! Systems under test plug in through [`Driver`]: [`KahunaDriver`] always, and with the
//! cargo feature `peers` the etcd driver (`etcd-client`) and the Redis driver (`redis`), so
//! that the same tool gives every system's figures in one run (`--target`). The feature is
//! off by default because etcd-client's build script needs a `protoc` (set `PROTOC`;
//! `scripts/bench-compare.sh` points it at the vendored one).
//!
//! ```no_run
//! use clap::Parser;
//!
//! #[derive(Parser)]
//! struct Cli {
//!     #[command(flatten)]
//!     bench: kahuna_bench::BenchArgs,
//! }
//!
//! #[tokio::main]
//! async fn main() -> anyhow::Result<()> {
//!     // e.g. `--workload get --clients 64 --duration 30 --json`
//!     kahuna_bench::run(Cli::parse().bench).await
//! }
//! ```
//!
//! Modules (private; everything public is re-exported below):
//! - `args`: the command-line flags and their limits.
//! - `plan`: flags checked and turned into what the clients run (operation mix, pacing).
//! - `keys`: the keyspace: fixed-width key, lock and sequence names, and the value bytes.
//! - `pairs`: the transaction keys, paired within one partition or across two by the
//!   servers' own routing.
//! - `driver`: the [`Driver`] seam every system under test implements.
//! - `kahuna`: [`KahunaDriver`], over `kahuna-client`.
//! - `etcd`, `redis` (feature `peers`): `EtcdDriver` and `RedisDriver`.
//! - `stats`: per-client recording and the merged [`Summary`].
//! - `runner`: preload, the client tasks, warmup and the progress bar.
//! - `report`: the text and JSON output.
//!
//! A new workload adds a variant to `Workload`, an operation to `plan::Op` and a method to
//! [`Driver`] with a default that reports "Unsupported", so that drivers without it still
//! compile; each driver's [`Driver::supports`] says whether it offers it, so that a run of
//! a workload the system lacks stops before its preload.

mod args;
mod driver;
#[cfg(feature = "peers")]
mod etcd;
mod kahuna;
mod keys;
mod pairs;
mod plan;
#[cfg(feature = "peers")]
mod redis;
mod report;
mod runner;
mod stats;

pub use args::{
    BenchArgs, CLIENTS_MAX, DURATION_S_MAX, KEY_BYTES_MAX, KEYS_MAX, RATE_MAX, RESERVE_COUNT_MAX, Target,
    VALUE_BYTES_MAX, WARMUP_S_MAX, Workload,
};
pub use driver::{CONFLICT, Driver, Keyspace, OpError, ReadMode, UNSUPPORTED};
#[cfg(feature = "peers")]
pub use etcd::EtcdDriver;
pub use kahuna::{KahunaDriver, SCRIPT as KAHUNA_SCRIPT};
#[cfg(feature = "peers")]
pub use redis::RedisDriver;
pub use stats::Summary;

use std::time::Duration;

use anyhow::Context;

/// Runs the benchmark `args` describe and prints its summary on stdout: a few aligned lines,
/// or with `--json` one JSON object. Progress goes to stderr.
///
/// Fails when the flags do not fit together, when the preload fails, or when not one
/// operation succeeded (the summary is printed first); operation errors otherwise are
/// counted in the summary, not returned.
///
/// # Cancel safety
///
/// Dropping the future stops the clients at their next await point; writes already sent
/// may or may not be applied. Nothing else is left behind besides the keys written.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let plan = plan::Plan::from_args(&args).map_err(anyhow::Error::msg)?;
    let timeout = Duration::from_millis(args.timeout_ms);
    let progress = report::Progress::new(args.json);
    let outcome = match args.target {
        Target::Kahuna => {
            let drivers = (0..args.conns)
                .map(|_| KahunaDriver::connect(&args.endpoints, timeout, args.pipeline))
                .collect::<Result<Vec<_>, _>>()
                .context("cannot create the Kahuna client")?;
            runner::execute(&plan, &drivers, progress).await?
        }
        #[cfg(feature = "peers")]
        Target::Etcd => {
            let mut drivers = Vec::new();
            for _ in 0..args.conns {
                drivers.push(EtcdDriver::connect(&args.endpoints, timeout).await.context("cannot connect to etcd")?);
            }
            runner::execute(&plan, &drivers, progress).await?
        }
        #[cfg(feature = "peers")]
        Target::Redis => {
            let mut drivers = Vec::new();
            for _ in 0..args.conns {
                drivers.push(RedisDriver::connect(&args.endpoints, timeout).await.context("cannot connect to Redis")?);
            }
            runner::execute(&plan, &drivers, progress).await?
        }
        #[cfg(not(feature = "peers"))]
        Target::Etcd | Target::Redis => anyhow::bail!(
            "--target {} needs kahuna built with the cargo feature `peers` (cargo build --release --features peers)",
            args.target.name()
        ),
    };
    report::print(&args, &plan, &outcome.summary)?;
    if outcome.summary.ops == 0 {
        match &outcome.summary.first_error {
            Some(first) => anyhow::bail!("not one operation succeeded; first error: {first}"),
            None => anyhow::bail!("not one operation completed in the measured time (see unsent)"),
        }
    }
    Ok(())
}
