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

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::{BasicNode, LogId, Vote};
use serde::{Serialize, de::DeserializeOwned};
use tokio::sync::mpsc;
use tokio::time::Instant;

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
    /// Told when a peer refuses this node's candidacy for a reason that another try at
    /// once would meet again; the partition then keeps this node out of elections for a
    /// while (`partition::stand_aside`).
    pub(crate) refusals: mpsc::UnboundedSender<Refusal>,
}

/// Why a peer refused this node's candidacy, when waiting before the next try helps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The peer's log is longer than the candidate's: the candidate cannot win until it
    /// has caught up, and its tries only push the terms up.
    LongerLog,
    /// The peer had voted for another candidate (itself, say) in the same term and has the
    /// same log: the vote is split, and a candidacy of the peer's can win this node's vote
    /// as this node's can win the peer's. (A peer with a shorter log stands aside when
    /// this node refuses it, so the next try here is what ends the election.)
    SplitVote,
}

impl Refusal {
    /// Why `response` refused a candidacy of `request`'s; `None` when it granted the vote
    /// or refused it for another reason (a live leader's lease, a higher term).
    fn of(request: &VoteRequest<NodeId>, response: &VoteResponse<NodeId>) -> Option<Self> {
        if response.vote_granted {
            None
        } else if response.last_log_id > request.last_log_id {
            Some(Self::LongerLog)
        } else if response.last_log_id == request.last_log_id
            && !response.vote.committed
            && response.vote.leader_id.term == request.vote.leader_id.term
        {
            Some(Self::SplitVote)
        } else {
            None
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, _node: &BasicNode) -> Connection {
        Connection { target, net: self.clone(), last_ack: None }
    }
}

/// How long after a peer last acknowledged an `AppendEntries` a heartbeat that would tell
/// it nothing but a newer commit index is answered in place (`Connection::append_entries`).
/// A replication stream then sends something at least every heartbeat interval (100 ms)
/// plus this, well inside the shortest election timeout (250 ms in the simulation, 300 ms
/// otherwise), so followers never miss their leader.
pub(crate) const COMMIT_ONLY_WINDOW: Duration = Duration::from_millis(20);

/// A partition's link to one peer.
pub(crate) struct Connection {
    target: NodeId,
    net: Network,
    /// The peer's last successful answer on this link.
    last_ack: Option<Ack>,
}

/// What a peer's `Success` to an `AppendEntries` established.
#[derive(Debug, Clone, Copy)]
struct Ack {
    /// The leader's vote the peer accepted.
    vote: Vote<NodeId>,
    /// The peer's log matches the leader's up to here.
    matched: Option<LogId<NodeId>>,
    /// When the acknowledged request was sent.
    sent: Instant,
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
        // openraft 0.9 follows every commit with an empty `AppendEntries` to each follower
        // to carry the new commit index: with one entry in flight per partition, a second
        // round trip per entry, and a separate apply on every follower. When this link's
        // peer accepted the same vote and the same log position moments ago, the answer
        // is known, so it is given here and the commit index rides on the next message,
        // which comes within the window plus a heartbeat interval. Nothing is decided on
        // it: it matches no new entry (`prev_log_id` is what the peer already holds), and
        // a vote the peer has granted since reaches the leader on that next message.
        // openraft's own leadership check (`ensure_linearizable`) and votes each use a
        // fresh connection, which has no acknowledgement and always sends.
        if rpc.entries.is_empty()
            && let Some(ack) = self.last_ack
            && ack.vote == rpc.vote
            && ack.matched == rpc.prev_log_id
            && ack.sent.elapsed() < COMMIT_ONLY_WINDOW
        {
            return Ok(AppendEntriesResponse::Success);
        }
        let sent = Instant::now();
        let (vote, matched) = (rpc.vote, rpc.entries.last().map(|e| e.log_id).or(rpc.prev_log_id));
        let response = self.call(MessageKind::AppendEntries, &rpc, &option).await;
        self.last_ack = matches!(response, Ok(AppendEntriesResponse::Success)).then_some(Ack { vote, matched, sent });
        response
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcError<InstallSnapshotError>> {
        self.call(MessageKind::InstallSnapshot, &rpc, &option).await
    }

    async fn vote(&mut self, rpc: VoteRequest<NodeId>, option: RPCOption) -> Result<VoteResponse<NodeId>, RpcError> {
        let response: VoteResponse<NodeId> = self.call(MessageKind::Vote, &rpc, &option).await?;
        if let Some(refusal) = Refusal::of(&rpc, &response) {
            // Nobody listens once the partition is closing; then there is nothing to do.
            let _ = self.net.refusals.send(refusal);
        }
        Ok(response)
    }

    fn backoff(&self) -> Backoff {
        // A peer that is down is probed a few times a second, so a restarted node
        // catches up soon after it is back.
        Backoff::new(std::iter::repeat(Duration::from_millis(200)))
    }
}

/// Peers that never answer: the transport of kernels opened alone in unit tests.
#[cfg(test)]
pub(crate) struct NoPeers;

#[cfg(test)]
impl Transport for NoPeers {
    fn call(&self, target: NodeId, _: NodeMessage, _: Duration) -> CallFuture {
        Box::pin(async move { Err(TransportError { target, reason: "unreachable in this test".into() }) })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use openraft::testing::log_id;

    use super::*;

    /// A peer that accepts every `AppendEntries` and counts them, or cannot be reached.
    #[derive(Default)]
    struct Accepting {
        calls: AtomicUsize,
        down: AtomicBool,
    }

    impl Transport for Accepting {
        fn call(&self, target: NodeId, message: NodeMessage, _: Duration) -> CallFuture {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.down.load(Ordering::SeqCst) {
                return Box::pin(async move { Err(TransportError { target, reason: "down in this test".into() }) });
            }
            let reply: Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>> = Ok(AppendEntriesResponse::Success);
            let reply = NodeMessage { from: target, payload: encode_payload(&reply), ..message };
            Box::pin(async move { Ok(reply) })
        }
    }

    fn request(
        vote: Vote<NodeId>,
        prev: Option<LogId<NodeId>>,
        entries: usize,
        commit: u64,
    ) -> AppendEntriesRequest<TypeConfig> {
        let next = prev.map_or(1, |p| p.index + 1);
        let entries = (next..next + entries as u64)
            .map(|i| openraft::Entry { log_id: log_id(1, 1, i), payload: openraft::EntryPayload::Blank })
            .collect();
        AppendEntriesRequest { vote, prev_log_id: prev, entries, leader_commit: Some(log_id(1, 1, commit)) }
    }

    async fn connect(peer: &Arc<Accepting>) -> Connection {
        let (refusals, _) = mpsc::unbounded_channel();
        let mut net =
            Network { node_id: 1, partition: 0, transport: peer.clone(), hlc: Arc::new(Hlc::system()), refusals };
        net.new_client(2, &BasicNode::default()).await
    }

    /// A heartbeat that only carries a commit index to a peer that just acknowledged the
    /// same position under the same vote is answered without sending; anything else is
    /// sent: entries, another position or vote, a lapsed window, a link whose last call
    /// failed, and a fresh link (openraft's leadership check).
    #[tokio::test(start_paused = true)]
    async fn a_commit_only_heartbeat_is_answered_in_place_only_right_after_the_same_ack() {
        let peer = Arc::new(Accepting::default());
        let sent = || peer.calls.load(Ordering::SeqCst);
        let option = || RPCOption::new(Duration::from_secs(1));
        let vote = Vote::new_committed(1, 1);
        let mut link = connect(&peer).await;

        link.append_entries(request(vote, None, 0, 0), option()).await.expect("first heartbeat");
        assert_eq!(sent(), 1, "a link with no acknowledgement sends");
        link.append_entries(request(vote, None, 2, 0), option()).await.expect("entries");
        assert_eq!(sent(), 2, "entries are always sent");
        let after = Some(log_id(1, 1, 2));
        let answer = link.append_entries(request(vote, after, 0, 2), option()).await.expect("commit");
        assert_eq!((sent(), answer), (2, AppendEntriesResponse::Success), "the commit index waits");

        link.append_entries(request(vote, Some(log_id(1, 1, 1)), 0, 2), option()).await.expect("other position");
        assert_eq!(sent(), 3, "another position is sent");
        link.append_entries(request(Vote::new_committed(2, 1), after, 0, 2), option()).await.expect("other vote");
        assert_eq!(sent(), 4, "another vote is sent");
        link.append_entries(request(vote, after, 0, 2), option()).await.expect("back");
        assert_eq!(sent(), 5, "the last ack was for another position");
        link.append_entries(request(vote, after, 0, 2), option()).await.expect("answered");
        assert_eq!(sent(), 5);
        tokio::time::advance(COMMIT_ONLY_WINDOW).await;
        link.append_entries(request(vote, after, 0, 2), option()).await.expect("lapsed");
        assert_eq!(sent(), 6, "past the window the heartbeat is sent");

        peer.down.store(true, Ordering::SeqCst);
        link.append_entries(request(vote, after, 0, 2), option()).await.expect("still answered in place");
        assert_eq!(sent(), 6);
        link.append_entries(request(vote, after, 1, 2), option()).await.expect_err("the peer is down");
        peer.down.store(false, Ordering::SeqCst);
        link.append_entries(request(vote, after, 0, 2), option()).await.expect("after the failure");
        assert_eq!(sent(), 8, "after a failed call the heartbeat is sent");

        let mut fresh = connect(&peer).await;
        fresh.append_entries(request(vote, after, 0, 2), option()).await.expect("fresh");
        assert_eq!(sent(), 9, "a fresh link sends");
    }

    /// A refused candidacy pauses the candidate only when another try at once would be
    /// refused again: a peer with a longer log, or a split vote between equal logs.
    #[test]
    fn refusals_that_pause_a_candidate() {
        let request = VoteRequest::new(Vote::new(3, 1), Some(log_id(2, 2, 10)));
        let answer =
            |vote: Vote<NodeId>, last: u64, granted| VoteResponse::new(vote, Some(log_id(2, 2, last)), granted);
        let refusal = |vote, last, granted| Refusal::of(&request, &answer(vote, last, granted));
        assert_eq!(refusal(Vote::new(3, 1), 10, true), None, "granted");
        assert_eq!(refusal(Vote::new(2, 2), 11, false), Some(Refusal::LongerLog));
        assert_eq!(refusal(Vote::new(3, 2), 11, false), Some(Refusal::LongerLog));
        assert_eq!(refusal(Vote::new(3, 2), 10, false), Some(Refusal::SplitVote));
        assert_eq!(refusal(Vote::new(3, 2), 9, false), None, "the peer stands aside: this node goes on");
        assert_eq!(refusal(Vote::new_committed(2, 2), 10, false), None, "a live leader's lease");
        assert_eq!(refusal(Vote::new(4, 2), 10, false), None, "a higher term: openraft takes it");
    }
}
