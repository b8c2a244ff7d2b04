//! `kahuna bench`: a load generator that reports throughput and latency for one workload
//! against a running Kahuna cluster.
//!
//! Clients run as separate tokio tasks. In the closed loop (the default) each client sends
//! its next operation as soon as the previous one returns. With `--rate` the loop is open:
//! every client follows a fixed send schedule that together makes up the total rate, and
//! latency runs from the time an operation was *meant* to be sent whenever the client was
//! still busy then, so a stalled server cannot hide its queueing delay (coordinated
//! omission). The summary gives ops, errors, ops/s and p50/p99/p999/max latency in ms, as
//! text or as one JSON object (`--json`).
//!
//! Systems under test plug in through [`Driver`]; only [`KahunaDriver`] exists so far. Peer
//! drivers (etcd, Redis) will sit beside it behind a cargo feature, so that the same tool
//! gives every system's figures in one run.
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
//! - `keys`: the keyspace: fixed-width key names and the value bytes.
//! - `driver`: the [`Driver`] seam every system under test implements.
//! - `kahuna`: [`KahunaDriver`], over `kahuna-client`.
//! - `stats`: per-client recording and the merged [`Summary`].
//! - `runner`: preload, the client tasks, warmup and the progress bar.
//! - `report`: the text and JSON output.
//!
//! New workloads (locks, sequences, scripts, transactions) add a variant to `Workload`, an
//! operation to `plan::Op` and a method to [`Driver`] with a default that reports
//! "Unsupported", so that peer drivers without the feature still compile.

mod args;
mod driver;
mod kahuna;
mod keys;
mod plan;
mod report;
mod runner;
mod stats;

pub use args::{
    BenchArgs, CLIENTS_MAX, DURATION_S_MAX, KEY_BYTES_MAX, KEYS_MAX, RATE_MAX, Target, VALUE_BYTES_MAX, WARMUP_S_MAX,
    Workload,
};
pub use driver::{Driver, Keyspace, OpError, ReadMode};
pub use kahuna::KahunaDriver;
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
    let drivers = match args.target {
        Target::Kahuna => {
            let timeout = Duration::from_millis(args.timeout_ms);
            (0..args.conns)
                .map(|_| KahunaDriver::connect(&args.endpoints, timeout))
                .collect::<Result<Vec<_>, _>>()
                .context("cannot create the Kahuna client")?
        }
    };
    let outcome = runner::execute(&plan, &drivers, report::Progress::new(args.json)).await?;
    report::print(&args, &plan, &outcome.summary)?;
    if outcome.summary.ops == 0 {
        match &outcome.summary.first_error {
            Some(first) => anyhow::bail!("not one operation succeeded; first error: {first}"),
            None => anyhow::bail!("not one operation completed in the measured time (see unsent)"),
        }
    }
    Ok(())
}
