//! The transport seam between nodes, and openraft's network traits on top of it.
//!
//! The kernel only needs "send these bytes for partition p to node n and get bytes
//! back" ([`Transport`]); the server implements it over gRPC and tests may implement it
//! in memory. Every message carries the sender's HLC both ways and the receiver merges
//! it, so clocks never run backwards across a causal chain of messages.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use openraft::BasicNode;
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use serde::{Serialize, de::DeserializeOwned};
use tokio::sync::mpsc;

use crate::hlc::Hlc;
use crate::raft_types::TypeConfig;
use crate::types::{NodeId, PartitionId};

/// What a [`NodeMessage`] carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum MessageKind {
    AppendEntries = 1,
    Vote = 2,
    InstallSnapshot = 3,
    /// A client request forwarded to the partition leader.
    Forward = 4,
    /// A request for the receiver's clock (the reply's `hlc`), when a transaction begins.
    Clock = 5,
    /// Whether the receiver holds the votes a leader leads partitions under
    /// (`leadership`: linearizable reads).
    ConfirmLeader = 6,
}

impl MessageKind {
    /// Decodes the wire number of a kind.
    pub fn from_u32(n: u32) -> Option<Self> {
        match n {
            1 => Some(Self::AppendEntries),
            2 => Some(Self::Vote),
            3 => Some(Self::InstallSnapshot),
            4 => Some(Self::Forward),
            5 => Some(Self::Clock),
            6 => Some(Self::ConfirmLeader),
            _ => None,
        }
    }
}

/// One node-to-node message (a request or its reply).
#[derive(Debug, Clone)]
pub struct NodeMessage {
    pub partition: PartitionId,
    /// The sender's HLC when it sent the message.
    pub hlc: u64,
    pub kind: MessageKind,
    pub from: NodeId,
    /// The kernel's own encoding; opaque to the transport.
    pub payload: Vec<u8>,
}

/// Sending a message to a node failed before an answer came back.
#[derive(Debug, Clone, thiserror::Error)]
#[error("node {target}: {reason}")]
pub struct TransportError {
    pub target: NodeId,
    pub reason: String,
}

/// A boxed future returned by [`Transport::call`].
pub type CallFuture = Pin<Box<dyn Future<Output = Result<NodeMessage, TransportError>> + Send>>;

/// Delivers node-to-node messages. Implementations must not retry: openraft and the
/// kernel decide what is safe to send again.
pub trait Transport: Send + Sync + 'static {
    /// Sends `message` to node `target` and returns its reply, within `timeout`.
    fn call(&self, target: NodeId, message: NodeMessage, timeout: Duration) -> CallFuture;
}

/// Encodes a message payload.
pub(crate) fn encode_payload<T: Serialize>(value: &T) -> Vec<u8> {
    crate::schema::encode(value)
}

/// Decodes a message payload.
pub(crate) fn decode_payload<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, postcard::Error> {
    postcard::from_bytes(bytes)
}

/// openraft's network factory for one partition.
#[derive(Clone)]
pub(crate) struct Network {
    pub(crate) node_id: NodeId,
    pub(crate) partition: PartitionId,
    pub(crate) transport: Arc<dyn Transport>,
    pub(crate) hlc: Arc<Hlc>,
    /// Told whenever a peer refuses this node's candidacy and shows a longer log than the
    /// candidate's; the partition then keeps this node out of elections for a while
    /// (`partition::stand_aside`).
    pub(crate) outdated: mpsc::UnboundedSender<()>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, _node: &BasicNode) -> Connection {
        Connection { target, net: self.clone() }
    }
}

/// A partition's link to one peer.
pub(crate) struct Connection {
    target: NodeId,
    net: Network,
}

type RpcError<E = openraft::error::Infallible> = RPCError<NodeId, BasicNode, RaftError<NodeId, E>>;

impl Connection {
    async fn call<Req, Resp, E>(
        &self,
        kind: MessageKind,
        request: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RpcError<E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let message = NodeMessage {
            partition: self.net.partition,
            hlc: self.net.hlc.now(),
            kind,
            from: self.net.node_id,
            payload: encode_payload(request),
        };
        let reply = self
            .net
            .transport
            .call(self.target, message, option.hard_ttl())
            .await
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
        self.net.hlc.observe(reply.hlc);
        let result: Result<Resp, RaftError<NodeId, E>> =
            decode_payload(&reply.payload).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcError> {
        self.call(MessageKind::AppendEntries, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcError<InstallSnapshotError>> {
        self.call(MessageKind::InstallSnapshot, &rpc, &option).await
    }

    async fn vote(&mut self, rpc: VoteRequest<NodeId>, option: RPCOption) -> Result<VoteResponse<NodeId>, RpcError> {
        let candidate_log = rpc.last_log_id;
        let response: VoteResponse<NodeId> = self.call(MessageKind::Vote, &rpc, &option).await?;
        if !response.vote_granted && response.last_log_id > candidate_log {
            // Nobody listens once the partition is closing; then there is nothing to do.
            let _ = self.net.outdated.send(());
        }
        Ok(response)
    }

    fn backoff(&self) -> Backoff {
        // A peer that is down is probed a few times a second, so a restarted node
        // catches up soon after it is back.
        Backoff::new(std::iter::repeat(Duration::from_millis(200)))
    }
}
