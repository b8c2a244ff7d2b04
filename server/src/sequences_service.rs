//! The client-facing Sequences service. A sequence name routes like a key; each call is
//! one request to that partition's leader. Sequences are always persistent.

use kahuna_kernel::{Allocation, Kernel, PartitionRequest, PartitionResponse, SequenceInfo, SequenceOp, SequenceReply};
use kahuna_proto::v1;
use kahuna_proto::v1::sequences_server::Sequences;
use tonic::{Request, Response, Status};

use crate::convert::{consistency, operation_id};
use crate::status::to_status;

pub struct SequencesService {
    kernel: Kernel,
}

impl SequencesService {
    pub fn new(kernel: Kernel) -> Self {
        Self { kernel }
    }

    async fn run(&self, name: &str, request: PartitionRequest) -> Result<(SequenceReply, u64), Status> {
        let p = self.kernel.partition_of_name(name);
        let served = self.kernel.execute(p, request).await.map_err(to_status)?;
        match served.value {
            PartitionResponse::Sequence(reply) => Ok((reply, served.served_by)),
            other => Err(Status::internal(format!("unexpected response {other:?}"))),
        }
    }

    /// Hands out `count` values of `name`.
    async fn reserve(&self, name: String, count: u64, key: &str) -> Result<(Allocation, bool, u64), Status> {
        let op = SequenceOp::Reserve { name: name.clone(), count, idempotency_key: operation_id(key) };
        match self.run(&name, PartitionRequest::Sequence { op }).await? {
            (SequenceReply::Allocated { allocation, replayed }, by) => Ok((allocation, replayed, by)),
            (other, _) => Err(unexpected(other)),
        }
    }
}

fn unexpected(reply: SequenceReply) -> Status {
    Status::internal(format!("unexpected reply {reply:?}"))
}

fn info(name: String, s: SequenceInfo) -> v1::SequenceInfo {
    v1::SequenceInfo {
        name,
        start: s.start,
        increment: s.increment,
        max: s.max,
        allocated: s.allocated,
        last: s.last_value(),
        next: s.next_value(),
    }
}

#[tonic::async_trait]
impl Sequences for SequencesService {
    async fn create(
        &self,
        request: Request<v1::CreateSequenceRequest>,
    ) -> Result<Response<v1::CreateSequenceResponse>, Status> {
        let r = request.into_inner();
        let op = SequenceOp::Create { name: r.name.clone(), start: r.start, increment: r.increment, max: r.max };
        match self.run(&r.name, PartitionRequest::Sequence { op }).await? {
            (SequenceReply::Created { created, info: s }, served_by) => {
                Ok(Response::new(v1::CreateSequenceResponse { created, sequence: Some(info(r.name, s)), served_by }))
            }
            (other, _) => Err(unexpected(other)),
        }
    }

    async fn next(&self, request: Request<v1::NextRequest>) -> Result<Response<v1::NextResponse>, Status> {
        let r = request.into_inner();
        let (allocation, replayed, served_by) = self.reserve(r.name, 1, &r.idempotency_key).await?;
        Ok(Response::new(v1::NextResponse { value: allocation.first, replayed, served_by }))
    }

    async fn reserve(&self, request: Request<v1::ReserveRequest>) -> Result<Response<v1::ReserveResponse>, Status> {
        let r = request.into_inner();
        let (a, replayed, served_by) = self.reserve(r.name, r.count, &r.idempotency_key).await?;
        Ok(Response::new(v1::ReserveResponse {
            first: a.first,
            last: a.last(),
            count: a.count,
            increment: a.increment,
            replayed,
            served_by,
        }))
    }

    async fn get(&self, request: Request<v1::GetSequenceRequest>) -> Result<Response<v1::GetSequenceResponse>, Status> {
        let r = request.into_inner();
        let request = PartitionRequest::GetSequence { name: r.name.clone(), consistency: consistency(r.consistency)? };
        match self.run(&r.name, request).await? {
            (SequenceReply::Info(found), served_by) => Ok(Response::new(v1::GetSequenceResponse {
                found: found.is_some(),
                sequence: found.map(|s| info(r.name, s)),
                served_by,
            })),
            (other, _) => Err(unexpected(other)),
        }
    }

    async fn delete(
        &self,
        request: Request<v1::DeleteSequenceRequest>,
    ) -> Result<Response<v1::DeleteSequenceResponse>, Status> {
        let r = request.into_inner();
        let op = SequenceOp::Delete { name: r.name.clone() };
        match self.run(&r.name, PartitionRequest::Sequence { op }).await? {
            (SequenceReply::Deleted { deleted }, served_by) => {
                Ok(Response::new(v1::DeleteSequenceResponse { deleted, served_by }))
            }
            (other, _) => Err(unexpected(other)),
        }
    }
}
