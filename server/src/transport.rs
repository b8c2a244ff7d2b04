//! The kernel's transport seam over gRPC: one `Node` service for every partition.
//!
//! Append-entries and leadership-confirmation messages to a peer leave through that
//! peer's outbox: a task that sends whatever has queued up as one batch, one batch in
//! flight at a time. Each partition is its own Raft group, so a node leading several
//! partitions would otherwise send one message per partition per round; under load the
//! queue fills while a batch is in flight and the next batch carries all of it. An idle
//! peer's message leaves at once. The batches travel on one long-lived `RaftStream` per
//! peer rather than as a call each: a unary call's headers, stream setup and service
//! stack cost more CPU than a small batch itself (3 nodes, one client's puts: 3.2 → 2.3
//! ms of CPU per put over the three nodes, `bench/PERF-LOG.md`). Votes (which must not wait
//! behind other partitions' appends), snapshots (large), forwarded client requests
//! (which may wait on locks) and clock reads go one by one.
//!
//! A peer whose calls time out [`TIMEOUTS_BEFORE_RECONNECT`] times in a row gets a new
//! connection: after a network cut heals, the old TCP connection may sit out seconds of
//! retransmission backoff, and a new one does not.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kahuna_kernel::{Batches, CallFuture, MessageKind, NodeId, NodeMessage, Transport, TransportError};
use kahuna_proto::MAX_MESSAGE_BYTES;
use kahuna_proto::node::node_client::NodeClient;
use kahuna_proto::node::{Batch, Envelope};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tonic::{Status, Streaming};

use crate::status::status_text;

/// How long a connection attempt to a peer may take.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// Most payload bytes in one batch (one larger message still goes, alone).
const BATCH_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Calls to a peer timing out in a row before its connection is made anew.
const TIMEOUTS_BEFORE_RECONNECT: u32 = 3;

/// Makes a lazily connecting channel to an endpoint.
type Connect = Box<dyn Fn(&Endpoint) -> Channel + Send + Sync>;

/// A message waiting in an outbox, and where its reply goes.
struct Pending {
    envelope: Envelope,
    deadline: Instant,
    reply: oneshot::Sender<Result<Envelope, Failure>>,
}

/// One peer: its gRPC client and the outbox feeding its batch calls.
#[derive(Clone)]
struct Peer {
    client: NodeClient<Channel>,
    outbox: mpsc::UnboundedSender<Pending>,
    /// Calls that timed out since the last answer.
    timeouts: Arc<AtomicU32>,
}

/// The connected peers, by id.
type Peers = Arc<Mutex<HashMap<NodeId, Peer>>>;

/// Sends node-to-node messages over lazily connected, cached gRPC channels.
pub struct GrpcTransport {
    peers: BTreeMap<NodeId, String>,
    clients: Peers,
    connect: Connect,
    /// This node's partition count, sent with every message; 0 until the kernel is open.
    partitions: AtomicU32,
}

/// Why a call failed, and whether it was for want of an answer in time.
#[derive(Debug, Clone)]
struct Failure {
    reason: String,
    timed_out: bool,
}

impl Failure {
    fn new(reason: impl Into<String>) -> Self {
        Self { reason: reason.into(), timed_out: false }
    }

    fn timeout(timeout: Duration) -> Self {
        Self { reason: format!("no answer within {} ms", timeout.as_millis()), timed_out: true }
    }
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
        Arc::new(Self { peers, clients: Peers::default(), connect: Box::new(connect), partitions: AtomicU32::new(0) })
    }

    /// Sets the partition count sent with every message from now on (the kernel's, known
    /// once it opened its data directory).
    pub fn set_partitions(&self, partitions: u32) {
        self.partitions.store(partitions, Ordering::Relaxed);
    }

    /// The peer `target`, connected (lazily) and its outbox started on first use; needs
    /// to run inside a tokio runtime.
    fn peer(&self, target: NodeId) -> Result<Peer, TransportError> {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(peer) = clients.get(&target) {
            return Ok(peer.clone());
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
        let runtime = tokio::runtime::Handle::try_current().map_err(|e| fail(format!("no runtime: {e}")))?;
        let (outbox, queue) = mpsc::unbounded_channel();
        runtime.spawn(send_batches(client.clone(), queue));
        let peer = Peer { client, outbox, timeouts: Arc::default() };
        clients.insert(target, peer.clone());
        Ok(peer)
    }
}

impl Transport for GrpcTransport {
    fn call(&self, target: NodeId, message: NodeMessage, timeout: Duration) -> CallFuture {
        let peer = self.peer(target);
        let clients = self.clients.clone();
        let partitions = self.partitions.load(Ordering::Relaxed);
        Box::pin(async move {
            let peer = peer?;
            let fail = |reason: String| TransportError { target, reason };
            let reply = match exchange(&peer, message, partitions, timeout).await {
                Ok(reply) => {
                    peer.timeouts.store(0, Ordering::Relaxed);
                    reply
                }
                Err(failure) => {
                    if failure.timed_out
                        && peer.timeouts.fetch_add(1, Ordering::Relaxed) + 1 >= TIMEOUTS_BEFORE_RECONNECT
                    {
                        forget(&clients, target, &peer);
                    }
                    return Err(fail(failure.reason));
                }
            };
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

/// Sends `message` to `peer` (through its outbox, or alone) and waits for the reply.
async fn exchange(peer: &Peer, message: NodeMessage, partitions: u32, timeout: Duration) -> Result<Envelope, Failure> {
    let envelope = Envelope {
        partition: message.partition,
        hlc: message.hlc,
        kind: message.kind as u32,
        payload: message.payload,
        from: message.from,
        error: String::new(),
        partitions,
    };
    match message.kind {
        // Votes go alone: a batch is answered only when all of its messages are, and a
        // vote waiting behind other partitions' appends can arrive after the candidate's
        // election timeout (seen in t20: two survivors took nine terms, 9 s, to elect).
        MessageKind::AppendEntries | MessageKind::ConfirmLeader => {
            let (reply, answer) = oneshot::channel();
            let pending = Pending { envelope, deadline: Instant::now() + timeout, reply };
            peer.outbox.send(pending).map_err(|_| Failure::new("the peer's outbox stopped"))?;
            tokio::time::timeout(timeout, answer)
                .await
                .map_err(|_| Failure::timeout(timeout))?
                .map_err(|_| Failure::new("the batch carrying the message was dropped"))?
        }
        kind => {
            let mut client = peer.client.clone();
            let call = async {
                match kind {
                    MessageKind::Forward => client.forward(envelope).await,
                    _ => client.raft(envelope).await,
                }
            };
            let reply =
                tokio::time::timeout(timeout, call).await.map_err(|_| Failure::timeout(timeout))?.map_err(failure)?;
            Ok(reply.into_inner())
        }
    }
}

/// Drops `peer`'s connection (if it is still the one in use), so that the next call
/// connects anew.
fn forget(clients: &Peers, target: NodeId, peer: &Peer) {
    let mut clients = clients.lock().unwrap_or_else(|p| p.into_inner());
    if clients.get(&target).is_some_and(|current| Arc::ptr_eq(&current.timeouts, &peer.timeouts)) {
        clients.remove(&target);
        tracing::debug!(target, "calls to the peer keep timing out; reconnecting");
    }
}

/// A peer's outbox: waits for a message, sends everything queued by then as one batch on
/// the peer's `RaftStream`, and waits for its answer before the next batch (messages
/// queued meanwhile join that one). Ends when the transport is dropped.
async fn send_batches(mut client: NodeClient<Channel>, queue: mpsc::UnboundedReceiver<Pending>) {
    let mut batches = Batches::new(queue);
    let mut stream = None;
    while let Some(first) = batches.first().await {
        let batch = batches.fill(first, usize::MAX, BATCH_BYTES_MAX, |pending| pending.envelope.payload.len());
        send_batch(&mut client, &mut stream, batch).await;
    }
}

/// A peer's open `RaftStream`: where batches go and where their answers come from.
struct RaftStream {
    batches: mpsc::Sender<Batch>,
    answers: Streaming<Batch>,
}

/// Sends one batch and hands each waiter its own reply, or the batch's failure. A batch
/// that fails or is not answered by the last of its messages' deadlines takes the stream
/// with it: an answer that comes later could not be told from the next batch's.
async fn send_batch(client: &mut NodeClient<Channel>, stream: &mut Option<RaftStream>, batch: Vec<Pending>) {
    // A waiter that gave up needs no answer.
    let batch: Vec<Pending> = batch.into_iter().filter(|p| !p.reply.is_closed()).collect();
    let Some(deadline) = batch.iter().map(|p| p.deadline).max() else { return };
    let (messages, waiters): (Vec<Envelope>, Vec<_>) = batch.into_iter().map(|p| (p.envelope, p.reply)).unzip();
    let sent = messages.len();
    tracing::trace!(messages = sent, "raft batch");
    let started = Instant::now();
    let replies = match tokio::time::timeout_at(deadline, exchange_on(client, stream, Batch { messages })).await {
        Err(_) => Err(Failure::timeout(deadline - started)),
        Ok(Err(failure)) => Err(failure),
        Ok(Ok(replies)) if replies.len() == sent => Ok(replies),
        Ok(Ok(replies)) => Err(Failure::new(format!("the batch of {sent} messages got {} replies", replies.len()))),
    };
    if replies.is_err() {
        *stream = None;
    }
    tracing::trace!(
        messages = sent,
        ok = replies.is_ok(),
        round_trip_us = started.elapsed().as_micros() as u64,
        "raft batch answered"
    );
    match replies {
        Ok(replies) => {
            for (waiter, reply) in waiters.into_iter().zip(replies) {
                let _ = waiter.send(if reply.error.is_empty() { Ok(reply) } else { Err(Failure::new(reply.error)) });
            }
        }
        Err(reason) => {
            for waiter in waiters {
                let _ = waiter.send(Err(reason.clone()));
            }
        }
    }
}

/// Sends `batch` on the peer's stream, opened first if there is none, and reads its answer.
async fn exchange_on(
    client: &mut NodeClient<Channel>,
    stream: &mut Option<RaftStream>,
    batch: Batch,
) -> Result<Vec<Envelope>, Failure> {
    let open = match stream.take() {
        Some(open) => open,
        None => {
            // One batch waits at most: the next is sent only once this one is answered.
            let (batches, queued) = mpsc::channel(1);
            let answers = client.raft_stream(ReceiverStream::new(queued)).await.map_err(failure)?.into_inner();
            RaftStream { batches, answers }
        }
    };
    let open = stream.insert(open);
    open.batches.send(batch).await.map_err(|_| Failure::new("the raft stream closed"))?;
    match open.answers.message().await {
        Ok(Some(reply)) => Ok(reply.messages),
        Ok(None) => Err(Failure::new("the peer closed the raft stream")),
        Err(status) => Err(failure(status)),
    }
}

/// A failed call's status as a failure.
fn failure(status: Status) -> Failure {
    Failure::new(status_text(&status))
}
