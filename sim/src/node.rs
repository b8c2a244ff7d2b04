//! One simulated node: a real `Kernel` on a simulated disk and clock, the server's real
//! node-to-node gRPC service, and the execute service the workload talks to.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use kahuna_kernel::{Clock, DataFiles, Hlc, Kernel, KernelConfig, NodeId, PartitionStatus, SimDisk, StorageMode};
use kahuna_proto::MAX_MESSAGE_BYTES;
use kahuna_proto::node::node_server::NodeServer;
use kahuna_server::NodeService;
use turmoil::net::{TcpListener, TcpStream};

use crate::net::{self, EXEC_PORT, ExecRequest, NODE_PORT};

/// How often a node publishes its partitions' status on the [`Board`].
const PUBLISH_INTERVAL: Duration = Duration::from_millis(100);

/// A node's physical clock: the simulator's time since its epoch, plus a fixed skew.
#[derive(Debug, Clone, Copy)]
pub struct SimClock {
    pub skew_ms: i64,
}

impl Clock for SimClock {
    fn now_ms(&self) -> u64 {
        // Outside a host (never on a node's own path) there is no simulated time to read.
        let since_epoch = turmoil::since_epoch().unwrap_or_default().as_millis() as i64;
        u64::try_from(since_epoch.saturating_add(self.skew_ms)).unwrap_or(0)
    }
}

/// What every live node last said about its partitions; the nemesis reads it to aim at
/// leaders. Written only from inside the simulation, so it is as deterministic as it.
#[derive(Debug, Clone, Default)]
pub struct Board {
    inner: Arc<Mutex<BTreeMap<NodeId, Vec<PartitionStatus>>>>,
}

impl Board {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<NodeId, Vec<PartitionStatus>>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn publish(&self, node: NodeId, status: Vec<PartitionStatus>) {
        self.lock().insert(node, status);
    }

    /// Forgets a node that went down.
    pub fn forget(&self, node: NodeId) {
        self.lock().remove(&node);
    }

    /// The node that leads the most partitions in its own view, if any leads one.
    pub fn busiest_leader(&self) -> Option<NodeId> {
        let board = self.lock();
        let leads = |statuses: &Vec<PartitionStatus>| statuses.iter().filter(|s| s.role == "leader").count();
        board
            .iter()
            .filter(|(_, s)| leads(s) > 0)
            .max_by_key(|(id, s)| (leads(s), std::cmp::Reverse(**id)))
            .map(|(id, _)| *id)
    }
}

/// Everything a node is started with; kept across its crashes, as its disk is.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub id: NodeId,
    /// Every node: id → `host:port` of its node service.
    pub peers: BTreeMap<NodeId, String>,
    pub partitions: u32,
    pub disk: SimDisk,
    /// This node's fixed election timeout (distinct per node).
    pub election_timeout_ms: u64,
    pub skew_ms: i64,
    pub snapshot_logs: u64,
    pub request_timeout: Duration,
    pub board: Board,
}

/// Runs node `spec` until the simulator crashes it.
pub async fn run(spec: NodeSpec) -> turmoil::Result {
    let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    let node_listener = TcpListener::bind((any, NODE_PORT)).await?;
    let exec_listener = TcpListener::bind((any, EXEC_PORT)).await?;
    let config = KernelConfig {
        node_id: spec.id,
        peers: spec.peers.clone(),
        data_dir: PathBuf::from(net::host_name(spec.id)),
        partitions: spec.partitions,
        snapshot_logs: spec.snapshot_logs,
        request_timeout: spec.request_timeout,
        compaction_interval: Duration::from_secs(5),
        files: DataFiles::Simulated(spec.disk.clone()),
        storage: StorageMode::Inline,
        election_timeout_ms: Some(spec.election_timeout_ms),
        ..KernelConfig::default()
    };
    let hlc = Arc::new(Hlc::new(Arc::new(SimClock { skew_ms: spec.skew_ms })));
    let kernel = Kernel::open_with_clock(config, net::transport(spec.peers.clone()), hlc).await?;
    tokio::spawn(serve_node(kernel.clone(), node_listener));
    tokio::spawn(serve_exec(kernel.clone(), exec_listener));
    loop {
        spec.board.publish(spec.id, kernel.status());
        tokio::time::sleep(PUBLISH_INTERVAL).await;
    }
}

/// Serves the node-to-node gRPC service (the server's real `NodeService`) over HTTP/2.
///
/// hyper serves it directly rather than through tonic's `Server`, whose HTTP/2 responses
/// carry a `date` header read from the real clock: its HPACK-encoded length changes with
/// the second, which changes how frames are cut into writes, and so the run.
async fn serve_node(kernel: Kernel, listener: TcpListener) {
    let service = NodeServer::new(NodeService::new(kernel))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::debug!("node service: accept: {e}");
                continue;
            }
        };
        let service = TowerToHyperService::new(service.clone());
        tokio::spawn(async move {
            let mut http = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
            http.timer(TokioTimer::new()).auto_date_header(false);
            if let Err(e) = http.serve_connection(TokioIo::new(stream), service).await {
                tracing::debug!("node service: connection: {e}");
            }
        });
    }
}

/// Serves the execute protocol: one request per connection, answered by `Kernel::execute`.
async fn serve_exec(kernel: Kernel, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(exec_one(kernel.clone(), stream));
            }
            Err(e) => tracing::debug!("execute service: accept: {e}"),
        }
    }
}

async fn exec_one(kernel: Kernel, mut stream: TcpStream) {
    let (partition, request) = match net::read_frame::<ExecRequest>(&mut stream).await {
        Ok(request) => request,
        Err(e) => {
            tracing::debug!("execute service: reading a request: {e}");
            return;
        }
    };
    let reply = kernel.execute(partition, request).await;
    // The client may have given up; its outcome is then unknown to it, as it should be.
    if let Err(e) = net::write_frame(&mut stream, &reply).await {
        tracing::debug!("execute service: answering: {e}");
    }
}
