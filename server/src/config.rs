//! `kahuna serve` settings: flags, each also a `KAHUNA_*` environment variable.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use kahuna_kernel::{KernelConfig, NodeId};

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
    /// Data partitions, fixed when the cluster is created.
    #[arg(long, env = "KAHUNA_PARTITIONS", default_value_t = kahuna_kernel::DEFAULT_PARTITIONS)]
    pub partitions: u32,
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
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
