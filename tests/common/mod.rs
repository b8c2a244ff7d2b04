//! Test harness: real `kahuna serve` processes on loopback, each with its own data
//! directory, and raw gRPC clients to them.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kahuna_proto::v1::cluster_client::ClusterClient;
use kahuna_proto::v1::key_value_client::KeyValueClient;
use kahuna_proto::v1::{GetRequest, SetRequest, StatusRequest, StatusResponse};
use tonic::transport::Channel;

/// A free loopback port (bound then released), never one handed out before in this
/// process: the tests of one binary run at once, and the kernel may hand a released port
/// to the next bind before its first taker's node listens on it (seen in CI: two clusters
/// shared a port, and one's nodes sent Raft messages to the other's).
pub fn free_port() -> u16 {
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port");
        if HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner()).insert(port) {
            return port;
        }
    }
}

/// The nodes' log filter: `KAHUNA_TEST_NODE_LOG`, or the default of `kahuna serve`
/// (`info,openraft=info` shows elections).
pub fn node_log_filter() -> String {
    std::env::var("KAHUNA_TEST_NODE_LOG").unwrap_or_else(|_| "info,openraft=warn".to_owned())
}

/// One node of a test cluster.
pub struct Node {
    pub id: u64,
    pub address: String,
    pub data_dir: PathBuf,
    args: Vec<String>,
    /// Extra environment of the process (such as libfaketime's).
    pub env: Vec<(String, String)>,
    child: Option<Child>,
}

impl Node {
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "node {} already running", self.id);
        let log = std::fs::File::create(self.data_dir.with_extension("log")).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_kahuna"))
            .arg("serve")
            .args(&self.args)
            .env("KAHUNA_LOG", node_log_filter())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn kahuna");
        self.child = Some(child);
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn signal(&self, signal: &str) {
        if let Some(child) = &self.child {
            let status = Command::new("kill").arg(format!("-{signal}")).arg(child.id().to_string()).status();
            assert!(status.is_ok_and(|s| s.success()), "kill -{signal} failed");
        }
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        self.signal("TERM");
        let mut child = self.child.take()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        child.wait().ok()
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Gives `flag` the value `value` from the next start on (adds it when absent).
    pub fn set_arg(&mut self, flag: &str, value: &str) {
        match self.args.iter().position(|a| a == flag) {
            Some(i) => self.args[i + 1] = value.to_owned(),
            None => self.args.extend([flag.to_owned(), value.to_owned()]),
        }
    }

    /// Whether the process ended by itself (and reaps it).
    pub fn has_exited(&mut self) -> bool {
        let exited = self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))));
        if exited {
            self.child = None;
        }
        exited
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.with_extension("log")).unwrap_or_default()
    }

    pub async fn kv(&self) -> KeyValueClient<Channel> {
        KeyValueClient::new(channel(&self.address)).max_decoding_message_size(kahuna_proto::MAX_MESSAGE_BYTES)
    }

    pub async fn cluster(&self) -> ClusterClient<Channel> {
        ClusterClient::new(channel(&self.address))
    }

    pub async fn status(&self) -> Option<StatusResponse> {
        let mut c = self.cluster().await;
        c.status(StatusRequest {}).await.ok().map(|r| r.into_inner())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

fn channel(address: &str) -> Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{address}"))
        .expect("endpoint")
        .connect_timeout(Duration::from_millis(500))
        .timeout(Duration::from_secs(10))
        .connect_lazy()
}

/// A cluster of real processes sharing one temporary directory.
pub struct Cluster {
    pub nodes: Vec<Node>,
    pub partitions: u32,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts `n` nodes with `partitions` partitions and extra flags.
    pub async fn start(n: usize, partitions: u32, extra: &[&str]) -> Cluster {
        Self::start_with_env(n, partitions, extra, |_| Vec::new()).await
    }

    /// As [`Cluster::start`], with extra environment variables for node `id` from `env(id)`.
    pub async fn start_with_env(
        n: usize,
        partitions: u32,
        extra: &[&str],
        env: impl Fn(u64) -> Vec<(String, String)>,
    ) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let peers: BTreeMap<u64, String> =
            ports.iter().enumerate().map(|(i, p)| (i as u64 + 1, format!("127.0.0.1:{p}"))).collect();
        let peers_flag = peers.iter().map(|(id, a)| format!("{id}={a}")).collect::<Vec<_>>().join(",");
        let mut nodes = Vec::new();
        for (id, address) in &peers {
            let data_dir = dir.path().join(format!("node{id}"));
            let mut args = vec![
                "--node-id".to_owned(),
                id.to_string(),
                "--listen".to_owned(),
                address.clone(),
                "--data-dir".to_owned(),
                data_dir.display().to_string(),
                "--partitions".to_owned(),
                partitions.to_string(),
            ];
            if n > 1 {
                args.push("--peers".to_owned());
                args.push(peers_flag.clone());
            }
            args.extend(extra.iter().map(|s| s.to_string()));
            let mut node = Node { id: *id, address: address.clone(), data_dir, args, env: env(*id), child: None };
            node.start();
            nodes.push(node);
        }
        let cluster = Cluster { nodes, partitions, _dir: dir };
        cluster.wait_ready(Duration::from_secs(30)).await;
        cluster
    }

    pub fn node(&mut self, id: u64) -> &mut Node {
        self.nodes.iter_mut().find(|n| n.id == id).expect("node id")
    }

    /// Node `id`, shared.
    pub fn node_ref(&self, id: u64) -> &Node {
        self.nodes.iter().find(|n| n.id == id).expect("node id")
    }

    /// Every node's address.
    pub fn endpoints(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.address.clone()).collect()
    }

    /// Partition -> leader, as the first node that answers sees it.
    pub async fn leaders(&self) -> BTreeMap<u32, u64> {
        for node in self.running() {
            if let Some(s) = node.status().await {
                return s.partitions.iter().map(|p| (p.partition, p.leader)).collect();
            }
        }
        BTreeMap::new()
    }

    /// Every node's log (and extra environment), for failure messages.
    pub fn logs(&self) -> String {
        let logs: Vec<String> =
            self.nodes.iter().map(|n| format!("--- node {} {:?} ---\n{}", n.id, n.env, n.log())).collect();
        logs.join("\n")
    }

    /// Waits until every running node sees a leader for every partition.
    pub async fn wait_ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let mut ready = true;
            for node in self.nodes.iter().filter(|n| n.is_running()) {
                match node.status().await {
                    Some(s)
                        if s.partitions.len() == self.partitions as usize
                            && s.partitions.iter().all(|p| {
                                p.leader != 0 && self.nodes.iter().any(|n| n.id == p.leader && n.is_running())
                            }) => {}
                    _ => ready = false,
                }
            }
            if ready {
                return;
            }
            assert!(Instant::now() <= deadline, "cluster not ready within {timeout:?}\n{}", self.logs());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The leader of `partition` as seen by the first running node.
    pub async fn leader_of(&self, partition: u32) -> u64 {
        for node in self.nodes.iter().filter(|n| n.is_running()) {
            if let Some(s) = node.status().await
                && let Some(p) = s.partitions.iter().find(|p| p.partition == partition)
                && p.leader != 0
            {
                return p.leader;
            }
        }
        0
    }

    pub fn running(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(|n| n.is_running())
    }
}

/// A plain persistent set with an operation id (so retries are safe).
pub fn set_req(key: &str, value: &str) -> SetRequest {
    SetRequest { key: key.into(), value: value.as_bytes().to_vec(), operation_id: operation_id(), ..Default::default() }
}

/// A fresh operation id, unique within the test process.
pub fn operation_id() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    format!("test-{}-{}", std::process::id(), NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
}

pub fn get_req(key: &str) -> GetRequest {
    GetRequest { key: key.into(), ..Default::default() }
}

/// Retries `f` until it succeeds or `timeout` passes (for writes during failover).
pub async fn eventually<T, E: std::fmt::Debug, F, Fut>(timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match f().await {
            Ok(v) => return v,
            Err(e) if Instant::now() > deadline => panic!("still failing after {timeout:?}: {e:?}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// The routing the server uses, for picking keys in a given partition.
pub fn partition_of(key: &str, partitions: u32) -> u32 {
    kahuna_proto::routing::partition_of(key, partitions)
}
