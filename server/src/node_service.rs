//! The node-to-node gRPC service: Raft RPCs and forwarded client requests, handed to
//! the kernel.

use kahuna_kernel::{Kernel, MessageKind, NodeMessage};
use kahuna_proto::node::Envelope;
use kahuna_proto::node::node_server::Node;
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

    async fn handle(&self, envelope: Envelope) -> Result<Response<Envelope>, Status> {
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
        Ok(Response::new(Envelope {
            partition: reply.partition,
            hlc: reply.hlc,
            kind: reply.kind as u32,
            payload: reply.payload,
            from: reply.from,
        }))
    }
}

#[tonic::async_trait]
impl Node for NodeService {
    async fn raft(&self, request: Request<Envelope>) -> Result<Response<Envelope>, Status> {
        self.handle(request.into_inner()).await
    }

    async fn forward(&self, request: Request<Envelope>) -> Result<Response<Envelope>, Status> {
        self.handle(request.into_inner()).await
    }
}
