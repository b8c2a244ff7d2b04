//! Clusters where one node's wall clock is skewed with libfaketime (`LD_PRELOAD`).
//!
//! The skewed node runs `kahuna serve` with `FAKETIME=<offset>` (for example `+120s`)
//! and `DONT_FAKE_MONOTONIC=1`, so only `CLOCK_REALTIME` (what the HLC reads) moves;
//! tokio's timers keep the real monotonic clock. The other nodes run unchanged. Nodes are
//! plain child processes on loopback, started here because [`crate::common::Node`] keeps
//! its command private.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kahuna_proto::v1::cluster_client::ClusterClient;
use kahuna_proto::v1::key_value_client::KeyValueClient;
use kahuna_proto::v1::{StatusRequest, StatusResponse};
use tonic::transport::Channel;

use crate::common::free_port;

/// Set to `1` to turn a skip (libfaketime missing) into a failure.
pub const REQUIRED_ENV: &str = "KAHUNA_FAULTS_REQUIRED";
/// Overrides where libfaketime is looked for.
pub const LIBFAKETIME_ENV: &str = "KAHUNA_LIBFAKETIME";

/// The libfaketime shared object, or `None` when it is not installed.
///
/// Looks at `$KAHUNA_LIBFAKETIME`, then `faketime/libfaketime.so.1` under the usual
/// library directories (any multiarch triplet), then the multithreaded variant.
pub fn libfaketime() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(LIBFAKETIME_ENV) {
        let path = PathBuf::from(path);
        return path.is_file().then_some(path);
    }
    let mut dirs: Vec<PathBuf> = Vec::new();
    for root in ["/usr/lib", "/usr/local/lib", "/lib", "/usr/lib64", "/lib64"] {
        dirs.push(Path::new(root).join("faketime"));
        // Multiarch: /usr/lib/x86_64-linux-gnu/faketime, /usr/lib/aarch64-linux-gnu/faketime, ...
        if let Ok(entries) = std::fs::read_dir(root) {
            let mut triplets: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.ends_with("-linux-gnu")))
                .collect();
            triplets.sort();
            dirs.extend(triplets.into_iter().map(|t| t.join("faketime")));
        }
    }
    for name in ["libfaketime.so.1", "libfaketimeMT.so.1"] {
        if let Some(found) = dirs.iter().map(|d| d.join(name)).find(|p| p.is_file()) {
            return Some(found);
        }
    }
    None
}

/// libfaketime's path, or `None` after printing `SKIPPED ...` when it is missing. Panics
/// instead when `KAHUNA_FAULTS_REQUIRED=1`. Never installs anything.
pub fn libfaketime_or_skip(test: &str) -> Option<PathBuf> {
    if let Some(path) = libfaketime() {
        return Some(path);
    }
    let reason = "libfaketime not installed (apt-get install faketime)";
    assert!(std::env::var(REQUIRED_ENV).as_deref() != Ok("1"), "{test}: cannot run ({REQUIRED_ENV}=1): {reason}");
    eprintln!("SKIPPED: {reason}");
    None
}

/// One node process; killed on drop.
pub struct SkewedNode {
    pub id: u64,
    pub address: String,
    pub data_dir: PathBuf,
    /// The `FAKETIME` offset this node runs with, if any.
    pub faketime: Option<String>,
    child: Child,
}

impl SkewedNode {
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.with_extension("log")).unwrap_or_default()
    }

    pub fn kv(&self) -> KeyValueClient<Channel> {
        KeyValueClient::new(channel(&self.address)).max_decoding_message_size(kahuna_proto::MAX_MESSAGE_BYTES)
    }

    pub async fn status(&self) -> Option<StatusResponse> {
        let mut c = ClusterClient::new(channel(&self.address));
        c.status(StatusRequest {}).await.ok().map(|r| r.into_inner())
    }
}

impl Drop for SkewedNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn channel(address: &str) -> Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{address}"))
        .expect("endpoint")
        .connect_timeout(Duration::from_millis(500))
        .timeout(Duration::from_secs(10))
        .connect_lazy()
}

/// `n` nodes on loopback, node `skewed` under libfaketime with `FAKETIME=faketime`.
pub struct SkewedCluster {
    pub nodes: Vec<SkewedNode>,
    pub partitions: u32,
    pub skewed: u64,
    _dir: tempfile::TempDir,
}

impl SkewedCluster {
    pub async fn start(n: usize, partitions: u32, skewed: u64, faketime: &str, libfaketime: &Path) -> SkewedCluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let peers: BTreeMap<u64, String> =
            (1..=n as u64).map(|id| (id, format!("127.0.0.1:{}", free_port()))).collect();
        let peers_flag = peers.iter().map(|(id, a)| format!("{id}={a}")).collect::<Vec<_>>().join(",");
        let mut nodes = Vec::new();
        for (id, address) in &peers {
            let data_dir = dir.path().join(format!("node{id}"));
            let log = std::fs::File::create(data_dir.with_extension("log")).expect("log file");
            let mut command = Command::new(env!("CARGO_BIN_EXE_kahuna"));
            command
                .arg("serve")
                .args(["--node-id", &id.to_string(), "--listen", address])
                .arg("--data-dir")
                .arg(&data_dir)
                .args(["--partitions", &partitions.to_string(), "--peers", &peers_flag])
                .env("KAHUNA_LOG", "info,openraft=warn")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log);
            let skew = (*id == skewed).then(|| faketime.to_owned());
            if let Some(offset) = &skew {
                command.env("LD_PRELOAD", libfaketime).env("FAKETIME", offset).env("DONT_FAKE_MONOTONIC", "1");
            }
            let child = command.spawn().expect("spawn kahuna");
            nodes.push(SkewedNode { id: *id, address: address.clone(), data_dir, faketime: skew, child });
        }
        let cluster = SkewedCluster { nodes, partitions, skewed, _dir: dir };
        cluster.wait_ready(Duration::from_secs(30)).await;
        cluster
    }

    pub fn node(&self, id: u64) -> &SkewedNode {
        self.nodes.iter().find(|n| n.id == id).expect("node id")
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.address.clone()).collect()
    }

    /// Waits until every node sees a leader for every partition.
    pub async fn wait_ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let mut ready = true;
            for node in &self.nodes {
                match node.status().await {
                    Some(s)
                        if s.partitions.len() == self.partitions as usize
                            && s.partitions.iter().all(|p| p.leader != 0) => {}
                    _ => ready = false,
                }
            }
            if ready {
                return;
            }
            assert!(Instant::now() < deadline, "cluster not ready within {timeout:?}\n{}", self.logs());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Partition -> leader, as the first node that answers sees it.
    pub async fn leaders(&self) -> BTreeMap<u32, u64> {
        for node in &self.nodes {
            if let Some(s) = node.status().await {
                return s.partitions.iter().map(|p| (p.partition, p.leader)).collect();
            }
        }
        BTreeMap::new()
    }

    /// Every node's log, for failure messages.
    pub fn logs(&self) -> String {
        let logs: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("--- node {} (FAKETIME={:?}) ---\n{}", n.id, n.faketime, n.log()))
            .collect();
        logs.join("\n")
    }
}
