//! The node-to-node gRPC service: Raft RPCs (one by one or in batches) and forwarded
//! client requests, handed to the kernel.

use kahuna_kernel::{Kernel, MessageKind, NodeMessage};
use kahuna_proto::node::node_server::Node;
use kahuna_proto::node::{Batch, Envelope};
use tonic::{Request, Response, Status};

use crate::status::{invalid, to_status};

/// The node-to-node service of one node: hands every message to its kernel.
pub struct NodeService {
    kernel: Kernel,
}

impl NodeService {
    pub fn new(kernel: Kernel) -> Self {
        Self { kernel }
    }

    async fn handle(&self, envelope: Envelope) -> Result<Envelope, Status> {
        let kind = MessageKind::from_u32(envelope.kind)
            .ok_or_else(|| invalid(format!("unknown message kind {}", envelope.kind)))?;
        let message = NodeMessage {
            partition: envelope.partition,
            hlc: envelope.hlc,
            kind,
            from: envelope.from,
            payload: envelope.payload,
        };
        let reply = self.kernel.handle(message).await.map_err(to_status)?;
        Ok(Envelope {
            partition: reply.partition,
            hlc: reply.hlc,
            kind: reply.kind as u32,
            payload: reply.payload,
            from: reply.from,
            error: String::new(),
        })
    }
}

#[tonic::async_trait]
impl Node for NodeService {
    async fn raft(&self, request: Request<Envelope>) -> Result<Response<Envelope>, Status> {
        self.handle(request.into_inner()).await.map(Response::new)
    }

    async fn raft_batch(&self, request: Request<Batch>) -> Result<Response<Batch>, Status> {
        // Concurrently: each message may wait for its partition's log fsync, and the
        // storage thread folds those waits into one.
        let started = std::time::Instant::now();
        let replies = futures::future::join_all(request.into_inner().messages.into_iter().map(|envelope| async {
            self.handle(envelope).await.unwrap_or_else(|status| Envelope {
                error: format!("{}: {}", status.code(), status.message()),
                ..Envelope::default()
            })
        }))
        .await;
        tracing::trace!(
            messages = replies.len(),
            handled_us = started.elapsed().as_micros() as u64,
            "raft batch handled"
        );
        Ok(Response::new(Batch { messages: replies }))
    }

    async fn forward(&self, request: Request<Envelope>) -> Result<Response<Envelope>, Status> {
        self.handle(request.into_inner()).await.map(Response::new)
    }
}
