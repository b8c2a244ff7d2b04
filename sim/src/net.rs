//! Sockets over turmoil's simulated network: the node-to-node gRPC transport (the real
//! `GrpcTransport`, its channels on simulated TCP), and the small framed protocol the
//! workload's clients use to ask a node to `Kernel::execute` a request or to coordinate
//! a transaction.

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use kahuna_check::ListOp;
use kahuna_kernel::{KvError, NodeId, PartitionId, PartitionRequest, PartitionResponse, Served};
use kahuna_server::GrpcTransport;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::{Endpoint, Uri};
use turmoil::net::TcpStream;

/// The port of every node's node-to-node gRPC service.
pub const NODE_PORT: u16 = 2070;
/// The port of every node's execute service (the workload's way in).
pub const EXEC_PORT: u16 = 2071;
/// The largest frame of the execute protocol.
const FRAME_BYTES_MAX: usize = 16 * 1024 * 1024;

/// The simulated host name of node `id`.
pub fn host_name(id: NodeId) -> String {
    format!("n{id}")
}

/// How long HTTP/2 remembers a stream this side reset (a call given up on). h2 measures
/// it on the real clock (1 s by default), which would make a frame that arrives late for
/// such a stream ignored or counted as an error depending on the machine's speed: one
/// hour is longer than any run.
const RESET_STREAM_MEMORY: Duration = Duration::from_secs(3600);

/// A node-to-node transport: the server's gRPC transport, its channels connected over
/// simulated TCP.
pub fn transport(peers: BTreeMap<NodeId, String>) -> Arc<GrpcTransport> {
    GrpcTransport::with_channels(peers, |endpoint: &Endpoint| {
        endpoint.clone().http2_reset_stream_duration(RESET_STREAM_MEMORY).connect_with_connector_lazy(connector())
    })
}

/// A simulated TCP stream as hyper wants it.
type Io = hyper_util::rt::TokioIo<TcpStream>;
type Connecting = Pin<Box<dyn Future<Output = io::Result<Io>> + Send>>;

/// Connects tonic channels to `host:port` over simulated TCP.
fn connector() -> impl tower::Service<Uri, Response = Io, Error = io::Error, Future = Connecting> + Clone {
    tower::service_fn(|uri: Uri| {
        Box::pin(async move {
            let authority =
                uri.authority().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no host in the uri"))?;
            let stream = TcpStream::connect(authority.as_str()).await?;
            Ok(hyper_util::rt::TokioIo::new(stream))
        }) as Connecting
    })
}

/// A request of the execute protocol.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ExecRequest {
    /// `Kernel::execute` of a request for a partition.
    Partition(PartitionId, PartitionRequest),
    /// A list-append transaction, coordinated by the node's transaction engine.
    Append(AppendTxn),
}

/// Its reply.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ExecReply {
    /// What `Kernel::execute` answered.
    Partition(Result<Served<PartitionResponse>, KvError>),
    /// How the transaction ended.
    Txn(TxnOutcome),
}

/// One transaction of the list-append workload. A list is one key holding its elements
/// as decimal text joined by commas; an append reads the key in the transaction and
/// writes it back with `,v` added, so two concurrent appends to one list conflict.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppendTxn {
    /// Micro-operations, in order, each after a pause in ms (a client's think time
    /// between calls, drawn by the workload so that the run stays one per seed).
    pub mops: Vec<(u64, ListOp)>,
    pub timeout_ms: u64,
}

/// How a transaction ended, by what it proves.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum TxnOutcome {
    /// Committed (or, without writes, served from its snapshot): the stored text each
    /// read saw, in order (empty for a missing key).
    Committed { reads: Vec<Vec<u8>> },
    /// Given up before its commit was sent: nothing of it took effect.
    Abandoned(String),
    /// Its commit answered `Conflict`: nothing of it took effect.
    Conflict(String),
    /// Its commit failed otherwise: it may have taken effect.
    Unknown(String),
}

/// Writes one length-prefixed postcard frame.
pub async fn write_frame<T: Serialize>(stream: &mut TcpStream, value: &T) -> io::Result<()> {
    let bytes = postcard::to_stdvec(value).map_err(io::Error::other)?;
    let len = u32::try_from(bytes.len()).map_err(|_| io::Error::other("frame too large"))?;
    stream.write_all(&len.to_be_bytes()).await?;
    stream.write_all(&bytes).await?;
    stream.flush().await
}

/// Reads one length-prefixed postcard frame.
pub async fn read_frame<T: DeserializeOwned>(stream: &mut TcpStream) -> io::Result<T> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > FRAME_BYTES_MAX {
        return Err(io::Error::other(format!("frame of {len} bytes is over {FRAME_BYTES_MAX}")));
    }
    let mut bytes = vec![0u8; len];
    stream.read_exact(&mut bytes).await?;
    postcard::from_bytes(&bytes).map_err(io::Error::other)
}

/// How long a client waits for a connection before giving up on a node.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Why a client's call to a node gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// No connection was made, so the request was never sent.
    #[error("not sent: {0}")]
    NotSent(String),
    /// The node did not answer within the client's timeout: the request may have run.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The connection failed after the request was sent: it may have run.
    #[error("connection: {0}")]
    Io(#[from] io::Error),
}

/// Sends one request to node `id`'s execute service and waits up to `timeout` for the
/// reply, on a connection of its own.
pub async fn execute(id: NodeId, request: &ExecRequest, timeout: Duration) -> Result<ExecReply, CallError> {
    let host = host_name(id);
    let connect = TcpStream::connect((host.as_str(), EXEC_PORT));
    let mut stream = match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return Err(CallError::NotSent(e.to_string())),
        Err(_) => return Err(CallError::NotSent(format!("no connection within {CONNECT_TIMEOUT:?}"))),
    };
    let call = async {
        write_frame(&mut stream, request).await?;
        read_frame::<ExecReply>(&mut stream).await
    };
    tokio::time::timeout(timeout, call).await.map_err(|_| CallError::Timeout(timeout))?.map_err(CallError::Io)
}
