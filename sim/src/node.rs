//! One simulated node: a real `Kernel` on a simulated disk and clock, the server's real
//! node-to-node gRPC service, a real transaction engine, and the execute service the
//! workload talks to.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use kahuna_kernel::{
    Clock, DataFiles, Hlc, Kernel, KernelConfig, KvError, NodeId, PartitionId, PartitionStatus, PointRead, SetArgs,
    SimDisk, StorageMode,
};
use kahuna_proto::MAX_MESSAGE_BYTES;
use kahuna_proto::node::node_server::NodeServer;
use kahuna_server::NodeService;
use kahuna_txn::{TxnConfig, TxnEngine};
use turmoil::net::{TcpListener, TcpStream};

use crate::net::{self, AppendTxn, EXEC_PORT, ExecReply, ExecRequest, NODE_PORT, TxnOutcome};
use kahuna_check::ListOp;

/// How often a node publishes its partitions' status on the [`Board`].
const PUBLISH_INTERVAL: Duration = Duration::from_millis(100);

/// A node's physical clock: the simulator's time since its epoch, plus a skew that the
/// nemesis may change mid-run (a clock stepped forward or back, as NTP or an operator
/// does). Clones share the skew, so a node keeps its clock across crashes, as a machine
/// does.
#[derive(Debug, Clone, Default)]
pub struct SimClock {
    skew_ms: Arc<AtomicI64>,
}

impl SimClock {
    /// A clock `skew_ms` ahead of simulated time (behind when negative).
    pub fn new(skew_ms: i64) -> Self {
        Self { skew_ms: Arc::new(AtomicI64::new(skew_ms)) }
    }

    /// How far ahead of simulated time the clock is, in ms.
    pub fn skew_ms(&self) -> i64 {
        self.skew_ms.load(Ordering::Relaxed)
    }

    /// Steps the clock by `delta_ms` (back when negative) and returns the new skew.
    pub fn jump(&self, delta_ms: i64) -> i64 {
        self.skew_ms.fetch_add(delta_ms, Ordering::Relaxed).saturating_add(delta_ms)
    }
}

impl Clock for SimClock {
    fn now_ms(&self) -> u64 {
        // Outside a host (never on a node's own path) there is no simulated time to read.
        let since_epoch = turmoil::since_epoch().unwrap_or_default().as_millis() as i64;
        u64::try_from(since_epoch.saturating_add(self.skew_ms())).unwrap_or(0)
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

    /// Every node that claims to lead `partition`, with the term it leads in.
    pub fn leaders(&self, partition: PartitionId) -> Vec<(NodeId, u64)> {
        let board = self.lock();
        let leads = |s: &&PartitionStatus| s.partition == partition && s.role == "leader";
        board.iter().flat_map(|(id, statuses)| statuses.iter().filter(leads).map(|s| (*id, s.term))).collect()
    }

    /// Each live node's last log index of `partition`.
    pub fn last_log_indexes(&self, partition: PartitionId) -> BTreeMap<NodeId, u64> {
        self.each_node(partition, |s| s.last_log_index)
    }

    /// How many snapshots each live node installed for `partition` since it started.
    pub fn snapshots_installed(&self, partition: PartitionId) -> BTreeMap<NodeId, u64> {
        self.each_node(partition, |s| s.snapshots_installed)
    }

    /// `field` of each live node's status of `partition`.
    fn each_node(&self, partition: PartitionId, field: impl Fn(&PartitionStatus) -> u64) -> BTreeMap<NodeId, u64> {
        let board = self.lock();
        let of = |statuses: &Vec<PartitionStatus>| statuses.iter().find(|s| s.partition == partition).map(&field);
        board.iter().filter_map(|(id, statuses)| of(statuses).map(|i| (*id, i))).collect()
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
    /// The node's clock, shared with the nemesis (which makes it jump).
    pub clock: SimClock,
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
        partitions: Some(spec.partitions),
        snapshot_logs: spec.snapshot_logs,
        request_timeout: spec.request_timeout,
        compaction_interval: Duration::from_secs(5),
        files: DataFiles::Simulated(spec.disk.clone()),
        storage: StorageMode::Inline,
        election_timeout_ms: Some(spec.election_timeout_ms),
        ..KernelConfig::default()
    };
    let hlc = Arc::new(Hlc::new(Arc::new(spec.clock.clone())));
    let transport = net::transport(spec.peers.clone());
    let kernel = Kernel::open_with_clock(config, transport.clone(), hlc).await?;
    transport.set_partitions(kernel.partitions());
    tokio::spawn(serve_node(kernel.clone(), node_listener));
    let txns = TxnEngine::new(kernel.clone(), TxnConfig::default());
    tokio::spawn(serve_exec(txns, exec_listener));
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

/// Serves the execute protocol: one request per connection, answered by `Kernel::execute`
/// or, for a transaction, by the transaction engine.
async fn serve_exec(txns: TxnEngine, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(exec_one(txns.clone(), stream));
            }
            Err(e) => tracing::debug!("execute service: accept: {e}"),
        }
    }
}

async fn exec_one(txns: TxnEngine, mut stream: TcpStream) {
    let request = match net::read_frame::<ExecRequest>(&mut stream).await {
        Ok(request) => request,
        Err(e) => {
            tracing::debug!("execute service: reading a request: {e}");
            return;
        }
    };
    let reply = match request {
        ExecRequest::Partition(partition, request) => {
            ExecReply::Partition(txns.kernel().execute(partition, request).await)
        }
        ExecRequest::Append(txn) => ExecReply::Txn(append(&txns, txn).await),
    };
    // The client may have given up; its outcome is then unknown to it, as it should be.
    if let Err(e) = net::write_frame(&mut stream, &reply).await {
        tracing::debug!("execute service: answering: {e}");
    }
}

/// Runs one list-append transaction as its coordinator, up to its commit.
async fn append(txns: &TxnEngine, request: AppendTxn) -> TxnOutcome {
    let abandoned = |e: KvError| TxnOutcome::Abandoned(e.to_string());
    let mut txn = match txns.begin(Some(Duration::from_millis(request.timeout_ms))).await {
        Ok(txn) => txn,
        Err(e) => return abandoned(e),
    };
    let mut reads = Vec::new();
    for (pause_ms, mop) in request.mops {
        tokio::time::sleep(Duration::from_millis(pause_ms)).await;
        let key = match &mop {
            ListOp::Read(key) | ListOp::Append(key, _) => key.clone(),
        };
        let read = PointRead { key: key.clone(), at_revision: None, as_of: None };
        let text = match txn.get(&read).await {
            Ok(found) => found.map(|kv| kv.value).unwrap_or_default(),
            Err(e) => return abandoned(e),
        };
        match mop {
            ListOp::Read(_) => reads.push(text),
            ListOp::Append(_, value) => {
                let mut list = text;
                if !list.is_empty() {
                    list.push(b',');
                }
                list.extend_from_slice(value.to_string().as_bytes());
                match txn.set(SetArgs { key: key.clone(), value: list, ..SetArgs::default() }).await {
                    Ok(true) => {}
                    // An unconditional write always applies; never commit around a hole.
                    Ok(false) => return TxnOutcome::Abandoned(format!("append to {key} not applied")),
                    Err(e) => return abandoned(e),
                }
            }
        }
    }
    match txn.commit().await {
        Ok(_) => TxnOutcome::Committed { reads },
        Err(KvError::Conflict(e)) => TxnOutcome::Conflict(e),
        Err(e) => TxnOutcome::Unknown(e.to_string()),
    }
}
