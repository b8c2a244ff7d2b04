//! `kahuna serve` settings: flags, each also a `KAHUNA_*` environment variable.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use kahuna_kernel::{KernelConfig, NodeId};
use kahuna_script::{EngineConfig, Limits};
use kahuna_txn::TxnConfig;

/// Smallest memory limit a script may be given: the Lua libraries alone need a few
/// hundred KiB.
pub const SCRIPT_MEMORY_BYTES_MIN: usize = 1024 * 1024;
/// Time a script's transaction gets beyond the script's own time budget, for its commit.
pub const SCRIPT_COMMIT_MS_MARGIN: u64 = 5_000;

/// Runs a Kahuna node. With no flags: a single node, data in `./kahuna-data`, gRPC on
/// 127.0.0.1:2070.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// This node's id; must be one of --peers when given.
    #[arg(long, env = "KAHUNA_NODE_ID", default_value_t = 1)]
    pub node_id: NodeId,
    /// Address the gRPC server listens on.
    #[arg(long, env = "KAHUNA_LISTEN", default_value = "127.0.0.1:2070")]
    pub listen: SocketAddr,
    /// Every node of the cluster as `ID=HOST:PORT,...` (this one included). Nodes
    /// started with the same list form a cluster. Empty: a single node.
    #[arg(long, env = "KAHUNA_PEERS", default_value = "")]
    pub peers: String,
    /// Directory holding this node's data file.
    #[arg(long, env = "KAHUNA_DATA_DIR", default_value = "kahuna-data")]
    pub data_dir: PathBuf,
    /// Data partitions, fixed when the cluster is created (default 3); a node started
    /// without it takes the count its data directory was created with.
    #[arg(long, env = "KAHUNA_PARTITIONS")]
    pub partitions: Option<u32>,
    /// Largest value accepted, in bytes.
    #[arg(long, env = "KAHUNA_VALUE_BYTES_MAX", default_value_t = kahuna_kernel::VALUE_BYTES_MAX_DEFAULT)]
    pub value_bytes_max: usize,
    /// How long old versions stay readable with `at` / `as of`, in ms.
    #[arg(long, env = "KAHUNA_RETENTION_MS", default_value_t = 3_600_000)]
    pub retention_ms: u64,
    /// How often history is compacted, in ms.
    #[arg(long, env = "KAHUNA_COMPACTION_INTERVAL_MS", default_value_t = 60_000)]
    pub compaction_interval_ms: u64,
    /// Raft entries between snapshots of a partition.
    #[arg(long, env = "KAHUNA_SNAPSHOT_LOGS", default_value_t = 10_000)]
    pub snapshot_logs: u64,
    /// How long a request may wait for the cluster, in ms.
    #[arg(long, env = "KAHUNA_REQUEST_TIMEOUT_MS", default_value_t = 5_000)]
    pub request_timeout_ms: u64,
    /// Longest lock lease a client may ask for, in ms.
    #[arg(long, env = "KAHUNA_LOCK_LEASE_MS_MAX", default_value_t = kahuna_kernel::LOCK_LEASE_MS_MAX_DEFAULT)]
    pub lock_lease_ms_max: u64,
    /// Timeout of a transaction that asks for none, in ms.
    #[arg(long, env = "KAHUNA_TXN_TIMEOUT_MS", default_value_t = 5_000)]
    pub txn_timeout_ms: u64,
    /// Longest timeout a transaction may ask for, in ms.
    #[arg(long, env = "KAHUNA_TXN_TIMEOUT_MS_MAX", default_value_t = 60_000)]
    pub txn_timeout_ms_max: u64,
    /// Time budget of one run of a script (instructions plus waiting for reads), in ms.
    #[arg(long, env = "KAHUNA_SCRIPT_TIME_MS_MAX", default_value_t = kahuna_script::TIME_MS_MAX_DEFAULT)]
    pub script_time_ms_max: u64,
    /// Memory limit of one run of a script, in bytes.
    #[arg(long, env = "KAHUNA_SCRIPT_MEMORY_BYTES_MAX", default_value_t = kahuna_script::MEMORY_BYTES_MAX_DEFAULT)]
    pub script_memory_bytes_max: usize,
    /// Test hook: `crash-after-prepare` aborts the process right after every participant
    /// of a multi-partition commit prepared, before the decision is written.
    #[arg(long, env = "KAHUNA_FAULT", hide = true, value_enum)]
    pub fault: Option<Fault>,
}

/// Faults a node injects into itself, for recovery tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Fault {
    /// Abort the process after every participant prepared a multi-partition commit.
    CrashAfterPrepare,
}

/// Parses `1=host:port,2=host:port`.
pub fn parse_peers(text: &str) -> Result<BTreeMap<NodeId, String>, String> {
    let mut peers = BTreeMap::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, address) = part.split_once('=').ok_or_else(|| format!("peer {part:?} is not ID=HOST:PORT"))?;
        let id: NodeId = id.trim().parse().map_err(|_| format!("peer id {id:?} is not a number"))?;
        if id == 0 {
            return Err("peer ids start at 1".into());
        }
        let address = address.trim();
        if address.rsplit_once(':').is_none_or(|(host, port)| host.is_empty() || port.parse::<u16>().is_err()) {
            return Err(format!("peer address {address:?} is not HOST:PORT"));
        }
        if peers.insert(id, address.to_owned()).is_some() {
            return Err(format!("peer id {id} appears twice"));
        }
    }
    Ok(peers)
}

impl ServeArgs {
    /// The kernel's configuration, checked.
    pub fn kernel_config(&self) -> Result<KernelConfig, String> {
        let mut peers = parse_peers(&self.peers)?;
        if peers.is_empty() {
            peers.insert(self.node_id, self.listen.to_string());
        }
        if !peers.contains_key(&self.node_id) {
            return Err(format!("--node-id {} is not in --peers", self.node_id));
        }
        if self.lock_lease_ms_max == 0 || self.lock_lease_ms_max > kahuna_kernel::TTL_MS_MAX as u64 {
            return Err(format!("--lock-lease-ms-max must be 1 to {} ms", kahuna_kernel::TTL_MS_MAX));
        }
        if self.value_bytes_max > kahuna_kernel::WRITE_BYTES_MAX {
            return Err(format!(
                "--value-bytes-max must be at most {} (a follower must take a write in one Raft message)",
                kahuna_kernel::WRITE_BYTES_MAX
            ));
        }
        if self.snapshot_logs < 2 {
            return Err("--snapshot-logs must be at least 2".into());
        }
        Ok(KernelConfig {
            node_id: self.node_id,
            peers,
            data_dir: self.data_dir.clone(),
            partitions: self.partitions,
            value_bytes_max: self.value_bytes_max,
            retention_ms: self.retention_ms,
            operation_retention_ms: 600_000,
            snapshot_logs: self.snapshot_logs,
            request_timeout: Duration::from_millis(self.request_timeout_ms.max(1)),
            compaction_interval: Duration::from_millis(self.compaction_interval_ms.max(100)),
            lock_lease_ms_max: self.lock_lease_ms_max,
            // Files in the data directory, the storage thread, random election timeouts.
            ..KernelConfig::default()
        })
    }
}

impl ServeArgs {
    /// The transaction engine's configuration, checked.
    pub fn txn_config(&self) -> Result<TxnConfig, String> {
        if self.txn_timeout_ms_max == 0 {
            return Err("--txn-timeout-ms-max must be at least 1 ms".into());
        }
        if self.txn_timeout_ms == 0 || self.txn_timeout_ms > self.txn_timeout_ms_max {
            return Err(format!("--txn-timeout-ms must be 1 to {} ms (--txn-timeout-ms-max)", self.txn_timeout_ms_max));
        }
        Ok(TxnConfig {
            timeout_default: Duration::from_millis(self.txn_timeout_ms),
            timeout_max: Duration::from_millis(self.txn_timeout_ms_max),
            crash_after_prepare: self.fault == Some(Fault::CrashAfterPrepare),
        })
    }

    /// The script engine's configuration, checked.
    pub fn script_config(&self) -> Result<EngineConfig, String> {
        // A script's transaction must outlive the script and its commit.
        let script_ms_max = self.txn_timeout_ms_max.saturating_sub(SCRIPT_COMMIT_MS_MARGIN);
        if self.script_time_ms_max == 0 || self.script_time_ms_max > script_ms_max {
            return Err(format!(
                "--script-time-ms-max must be 1 to {script_ms_max} ms (--txn-timeout-ms-max less \
                 {SCRIPT_COMMIT_MS_MARGIN} ms for the commit)"
            ));
        }
        if self.script_memory_bytes_max < SCRIPT_MEMORY_BYTES_MIN {
            return Err(format!("--script-memory-bytes-max must be at least {SCRIPT_MEMORY_BYTES_MIN} bytes"));
        }
        let limits = Limits {
            time_ms_max: self.script_time_ms_max,
            memory_bytes_max: self.script_memory_bytes_max,
            ..Limits::default()
        };
        // As many idle states as runs at once, so a node busy at its limit builds none.
        Ok(EngineConfig { limits, idle_states_max: crate::SCRIPT_RUNS_MAX, ..EngineConfig::default() })
    }

    /// The timeout of the transaction each run of a script begins: the script's time
    /// budget plus room for the commit, at most the transactions' maximum.
    pub fn script_txn_timeout(&self) -> Duration {
        Duration::from_millis(
            self.script_time_ms_max.saturating_add(SCRIPT_COMMIT_MS_MARGIN).min(self.txn_timeout_ms_max),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    fn args(flags: &[&str]) -> ServeArgs {
        Cli::try_parse_from(std::iter::once("kahuna").chain(flags.iter().copied())).map(|c| c.serve).unwrap()
    }

    #[test]
    fn txn_and_script_settings() {
        let a = args(&[]);
        let txn = a.txn_config().unwrap();
        assert_eq!(txn.timeout_default, Duration::from_secs(5));
        assert!(!txn.crash_after_prepare);
        let scripts = a.script_config().unwrap();
        assert_eq!(scripts.limits.time_ms_max, kahuna_script::TIME_MS_MAX_DEFAULT);
        assert_eq!(a.script_txn_timeout(), Duration::from_millis(6_000));
        let a = args(&["--fault", "crash-after-prepare", "--script-time-ms-max", "200"]);
        assert!(a.txn_config().unwrap().crash_after_prepare);
        assert_eq!(a.script_config().unwrap().limits.time_ms_max, 200);
        assert!(args(&["--txn-timeout-ms", "0"]).txn_config().is_err());
        assert!(args(&["--txn-timeout-ms", "70000"]).txn_config().is_err());
        assert!(args(&["--script-time-ms-max", "58000"]).script_config().is_err());
        assert!(args(&["--script-memory-bytes-max", "1000"]).script_config().is_err());
    }

    #[test]
    fn the_value_limit_keeps_a_write_within_one_raft_message() {
        assert!(args(&[]).kernel_config().is_ok());
        let most = kahuna_kernel::WRITE_BYTES_MAX.to_string();
        assert!(args(&["--value-bytes-max", &most]).kernel_config().is_ok());
        let over = (kahuna_kernel::WRITE_BYTES_MAX + 1).to_string();
        let refused = args(&["--value-bytes-max", &over]).kernel_config().unwrap_err();
        assert!(refused.contains("--value-bytes-max must be at most"), "{refused}");
    }

    #[test]
    fn peers() {
        let p = parse_peers("1=127.0.0.1:1, 2=localhost:2").unwrap();
        assert_eq!(p.len(), 2);
        assert!(parse_peers("1=x").is_err());
        assert!(parse_peers("a=x:1").is_err());
        assert!(parse_peers("1=x:1,1=y:2").is_err());
        assert!(parse_peers("0=x:1").is_err());
        assert!(parse_peers("").unwrap().is_empty());
    }
}
