//! Deterministic simulation of whole Kahuna clusters under [turmoil].
//!
//! Each simulated host runs the real kernel (`Kernel::open_with_clock`: real openraft,
//! real redb, real MVCC) and the server's real node-to-node gRPC service and transport
//! (tonic over turmoil's simulated TCP). What is simulated: the network (latency, cuts,
//! connections reset by crashes), time (turmoil's clock drives tokio's timers and each
//! node's HLC, with a per-node skew) and the disk (`SimDisk`: a crash loses what was not
//! synced). The storage thread runs inline (`StorageMode::Inline`) and election timeouts
//! are fixed per node (`KernelConfig::election_timeout_ms`), so that one seed gives one
//! run.
//!
//! A seed chooses the cluster's settings, the workload's operations and the nemesis's
//! faults (cuts, crashes with unsynced writes lost, restarts, slow links, leaders aimed
//! at); the recorded history is checked for linearizability with `kahuna-check`.
//!
//! ```no_run
//! let run = kahuna_sim::run(&kahuna_sim::SimConfig::new(7)).expect("the simulation runs");
//! assert!(run.failures().is_empty(), "{}", run.summary());
//! ```
//!
//! - `cluster`: one run from a seed: setup, the step loop, the verdict.
//! - `node`: a simulated node's software, its clock, the board of who leads.
//! - `net`: turmoil sockets for tonic, and the execute protocol clients use.
//! - `workload`: the register clients and the recovery reads.
//! - `nemesis`: the faults.

mod cluster;
mod nemesis;
mod net;
mod node;
mod workload;

pub use cluster::{SimConfig, SimError, SimRun, run};
pub use node::SimClock;
pub use workload::CALL_TIMEOUT;

/// Whether this build gives one run per seed: only with `--cfg tokio_unstable` does turmoil
/// seed each host's tokio RNG (which orders `select!` branches and `watch` wake-ups).
/// Without it, runs of one seed differ (which of two ready requests a node answers first,
/// say) though each is still a valid test.
pub const DETERMINISTIC: bool = cfg!(tokio_unstable);

/// The command that reruns `config`'s seed bit for bit, printed with every failure.
pub fn reproduce_command(config: &SimConfig) -> String {
    let seconds = if config.active == SimConfig::new(config.seed).active {
        String::new()
    } else {
        format!("KAHUNA_SIM_SECONDS={} ", config.active.as_secs())
    };
    format!(
        "KAHUNA_SIM_SEED={} {seconds}RUSTFLAGS=\"--cfg tokio_unstable\" CARGO_TARGET_DIR=target/sim \
         cargo test -p kahuna-sim --test t10_register -- --exact seeds --nocapture",
        config.seed
    )
}
