//! The node-to-node gRPC service: Raft RPCs (one by one or in batches over a stream) and
//! forwarded client requests, handed to the kernel.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};

use kahuna_kernel::{Kernel, MessageKind, NodeId, NodeMessage};
use kahuna_proto::node::node_server::Node;
use kahuna_proto::node::{Batch, Envelope};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::status::{invalid, status_text, to_status};

/// The node-to-node service of one node: hands every message to its kernel.
pub struct NodeService {
    kernel: Kernel,
}

impl NodeService {
    pub fn new(kernel: Kernel) -> Self {
        Self { kernel }
    }
}

/// The answers of one `RaftStream`, as tonic sends them.
pub type BatchStream = ReceiverStream<Result<Batch, Status>>;

#[tonic::async_trait]
impl Node for NodeService {
    async fn raft(&self, request: Request<Envelope>) -> Result<Response<Envelope>, Status> {
        handle(&self.kernel, request.into_inner()).await.map(Response::new)
    }

    type RaftStreamStream = BatchStream;

    async fn raft_stream(&self, request: Request<Streaming<Batch>>) -> Result<Response<BatchStream>, Status> {
        // One answer waits at most: the sender has one batch in flight per stream.
        let (answers, stream) = mpsc::channel(1);
        tokio::spawn(answer_batches(self.kernel.clone(), request.into_inner(), answers));
        Ok(Response::new(ReceiverStream::new(stream)))
    }

    async fn forward(&self, request: Request<Envelope>) -> Result<Response<Envelope>, Status> {
        handle(&self.kernel, request.into_inner()).await.map(Response::new)
    }
}

/// Answers the batches arriving on `inbound` in turn until the sender closes its side or
/// goes away (then the batch being handled still finishes: its appends are queued on the
/// storage thread anyway).
async fn answer_batches(kernel: Kernel, mut inbound: Streaming<Batch>, answers: mpsc::Sender<Result<Batch, Status>>) {
    loop {
        let batch = match inbound.message().await {
            Ok(Some(batch)) => batch,
            Ok(None) => return,
            Err(status) => {
                tracing::debug!("raft stream ended: {status}");
                return;
            }
        };
        if answers.send(Ok(handle_batch(&kernel, batch).await)).await.is_err() {
            return;
        }
    }
}

/// Handles a batch's messages concurrently and answers them together, reply i for
/// message i. Concurrently: each message may wait for its partition's log fsync, and the
/// storage thread folds those waits into one.
async fn handle_batch(kernel: &Kernel, batch: Batch) -> Batch {
    let started = std::time::Instant::now();
    let replies = futures::future::join_all(batch.messages.into_iter().map(|envelope| async {
        handle(kernel, envelope)
            .await
            .unwrap_or_else(|status| Envelope { error: status_text(&status), ..Envelope::default() })
    }))
    .await;
    tracing::trace!(messages = replies.len(), handled_us = started.elapsed().as_micros() as u64, "raft batch handled");
    Batch { messages: replies }
}

async fn handle(kernel: &Kernel, envelope: Envelope) -> Result<Envelope, Status> {
    let kind = MessageKind::from_u32(envelope.kind)
        .ok_or_else(|| invalid(format!("unknown message kind {}", envelope.kind)))?;
    same_partition_count(kernel.partitions(), &envelope)?;
    from_a_peer(kernel.node_id(), kernel.peers(), &envelope)?;
    let message = NodeMessage {
        partition: envelope.partition,
        hlc: envelope.hlc,
        kind,
        from: envelope.from,
        payload: envelope.payload,
    };
    let reply = kernel.handle(message).await.map_err(to_status)?;
    Ok(Envelope {
        partition: reply.partition,
        hlc: reply.hlc,
        kind: reply.kind as u32,
        payload: reply.payload,
        from: reply.from,
        error: String::new(),
        partitions: kernel.partitions(),
    })
}

/// Refuses a message from a node created with another partition count: the two would
/// send a key to different partitions, so writes through one could be missed by reads
/// through the other. (0: the sender does not know its count yet, or predates the field.)
fn same_partition_count(ours: u32, envelope: &Envelope) -> Result<(), Status> {
    if envelope.partitions == 0 || envelope.partitions == ours {
        return Ok(());
    }
    let message = format!(
        "node {} has {} partitions, this node has {ours}: every node of a cluster must be created with the same \
         --partitions",
        envelope.from, envelope.partitions
    );
    // Once loud, then quiet: the peer keeps sending (heartbeats of every partition).
    static REPORTED: AtomicBool = AtomicBool::new(false);
    Err(refuse_loudly_once(&REPORTED, message))
}

/// Refuses a message from a node that is not one of this node's peers, or that claims
/// this node's own id: a peer list pointing at another cluster's node must not feed it
/// Raft messages. (Seen in CI through two test clusters sharing a port: a one-node
/// cluster took another cluster's append-entries for its own and a partition panicked.)
fn from_a_peer(me: NodeId, peers: &BTreeMap<NodeId, String>, envelope: &Envelope) -> Result<(), Status> {
    let from = envelope.from;
    if from != me && peers.contains_key(&from) {
        return Ok(());
    }
    let peers: Vec<&NodeId> = peers.keys().filter(|&&id| id != me).collect();
    let message = format!(
        "a message from node {from}, which is not a peer of node {me} (its peers: {peers:?}): every node of a \
         cluster must be started with the same --peers and its own --node-id"
    );
    static REPORTED: AtomicBool = AtomicBool::new(false);
    Err(refuse_loudly_once(&REPORTED, message))
}

/// A `FailedPrecondition` refusal, logged as an error the first time `reported` sees one
/// and at debug level after that (a misconfigured peer keeps sending).
fn refuse_loudly_once(reported: &AtomicBool, message: String) -> Status {
    if !reported.swap(true, Ordering::Relaxed) {
        tracing::error!("{message}");
    } else {
        tracing::debug!("{message}");
    }
    Status::failed_precondition(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_from_a_node_with_another_partition_count_are_refused() {
        let from = |partitions| Envelope { from: 2, partitions, ..Envelope::default() };
        assert!(same_partition_count(3, &from(3)).is_ok());
        assert!(same_partition_count(3, &from(0)).is_ok(), "a sender that does not know its count yet");
        let refused = same_partition_count(3, &from(16)).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
        assert!(refused.message().contains("node 2 has 16 partitions, this node has 3"), "{}", refused.message());
    }

    #[test]
    fn messages_from_a_node_that_is_not_a_peer_are_refused() {
        let peers: BTreeMap<NodeId, String> = (1..=3).map(|id| (id, format!("127.0.0.1:{}", 2070 + id))).collect();
        let from = |from| Envelope { from, ..Envelope::default() };
        assert!(from_a_peer(1, &peers, &from(2)).is_ok());
        let stranger = from_a_peer(1, &peers, &from(4)).unwrap_err();
        assert_eq!(stranger.code(), tonic::Code::FailedPrecondition);
        assert!(
            stranger.message().contains("node 4, which is not a peer of node 1 (its peers: [2, 3])"),
            "{}",
            stranger.message()
        );
        assert!(from_a_peer(1, &peers, &from(1)).is_err(), "a sender claiming this node's own id");
        let alone = BTreeMap::from([(1, "127.0.0.1:2071".to_owned())]);
        assert!(from_a_peer(1, &alone, &from(1)).is_err(), "a one-node cluster has no peers");
    }
}
