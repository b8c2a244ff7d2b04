//! The kernel's transport seam over gRPC: one `Node` service for every partition.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kahuna_kernel::{CallFuture, MessageKind, NodeId, NodeMessage, Transport, TransportError};
use kahuna_proto::MAX_MESSAGE_BYTES;
use kahuna_proto::node::Envelope;
use kahuna_proto::node::node_client::NodeClient;
use tonic::transport::{Channel, Endpoint};

/// How long a connection attempt to a peer may take.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// Makes a lazily connecting channel to an endpoint.
type Connect = Box<dyn Fn(&Endpoint) -> Channel + Send + Sync>;

/// Sends node-to-node messages over lazily connected, cached gRPC channels.
pub struct GrpcTransport {
    peers: BTreeMap<NodeId, String>,
    clients: Mutex<HashMap<NodeId, NodeClient<Channel>>>,
    connect: Connect,
}

impl GrpcTransport {
    /// A transport to the given peers (id → `host:port`) over TCP.
    pub fn new(peers: BTreeMap<NodeId, String>) -> Arc<Self> {
        Self::with_channels(peers, Endpoint::connect_lazy)
    }

    /// A transport whose channels `connect` makes from each peer's endpoint (such as
    /// `Endpoint::connect_with_connector_lazy` over a simulated network).
    pub fn with_channels(
        peers: BTreeMap<NodeId, String>,
        connect: impl Fn(&Endpoint) -> Channel + Send + Sync + 'static,
    ) -> Arc<Self> {
        Arc::new(Self { peers, clients: Mutex::default(), connect: Box::new(connect) })
    }

    fn client(&self, target: NodeId) -> Result<NodeClient<Channel>, TransportError> {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(client) = clients.get(&target) {
            return Ok(client.clone());
        }
        let fail = |reason: String| TransportError { target, reason };
        let address = self.peers.get(&target).ok_or_else(|| fail("not a known peer".into()))?;
        let endpoint = Endpoint::from_shared(format!("http://{address}"))
            .map_err(|e| fail(format!("bad address {address:?}: {e}")))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_while_idle(true);
        let client = NodeClient::new((self.connect)(&endpoint))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        clients.insert(target, client.clone());
        Ok(client)
    }
}

impl Transport for GrpcTransport {
    fn call(&self, target: NodeId, message: NodeMessage, timeout: Duration) -> CallFuture {
        let client = self.client(target);
        Box::pin(async move {
            let mut client = client?;
            let fail = |reason: String| TransportError { target, reason };
            let envelope = Envelope {
                partition: message.partition,
                hlc: message.hlc,
                kind: message.kind as u32,
                payload: message.payload,
                from: message.from,
            };
            let call = async {
                match message.kind {
                    MessageKind::Forward => client.forward(envelope).await,
                    _ => client.raft(envelope).await,
                }
            };
            let reply = tokio::time::timeout(timeout, call)
                .await
                .map_err(|_| fail(format!("no answer within {} ms", timeout.as_millis())))?
                .map_err(|s| fail(format!("{}: {}", s.code(), s.message())))?
                .into_inner();
            let kind =
                MessageKind::from_u32(reply.kind).ok_or_else(|| fail(format!("unknown reply kind {}", reply.kind)))?;
            Ok(NodeMessage {
                partition: reply.partition,
                hlc: reply.hlc,
                kind,
                from: reply.from,
                payload: reply.payload,
            })
        })
    }
}
