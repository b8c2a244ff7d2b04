//! The client-facing Locks service. A lock name routes like a key; each call is one
//! request to that partition's leader (forwarded there when this node does not lead).

use kahuna_kernel::{
    Durability, Kernel, LockHolder, LockOp, LockReply, PartitionRequest, PartitionResponse, check_lease, check_wait,
};
use kahuna_proto::v1;
use kahuna_proto::v1::locks_server::Locks;
use tonic::{Request, Response, Status};

use crate::convert::{consistency, durability, operation_id};
use crate::status::to_status;

pub struct LocksService {
    kernel: Kernel,
}

impl LocksService {
    pub fn new(kernel: Kernel) -> Self {
        Self { kernel }
    }

    /// Sends a lock request to the lock's partition; returns the reply and the server.
    async fn run(&self, name: &str, request: PartitionRequest) -> Result<(LockReply, u64), Status> {
        let p = self.kernel.partition_of_name(name);
        let served = self.kernel.execute(p, request).await.map_err(to_status)?;
        match served.value {
            PartitionResponse::Lock(reply) => Ok((reply, served.served_by)),
            other => Err(Status::internal(format!("unexpected response {other:?}"))),
        }
    }

    /// Runs a lock operation with the given durability and operation id.
    async fn op(
        &self,
        op: LockOp,
        durability: Durability,
        operation_id: Option<String>,
        wait_ms: u64,
    ) -> Result<(LockReply, u64), Status> {
        let name = op.name().to_owned();
        self.run(&name, PartitionRequest::Lock { op, durability, operation_id, wait_ms }).await
    }

    fn lease(&self, lease_ms: i64) -> Result<u64, Status> {
        check_lease(lease_ms, self.kernel.lock_lease_ms_max()).map_err(to_status)
    }
}

fn holder(h: LockHolder) -> v1::LockHolder {
    v1::LockHolder { owner: h.owner, token: h.token, expires_at_ms: h.expires_at_ms as i64 }
}

#[tonic::async_trait]
impl Locks for LocksService {
    async fn try_lock(&self, request: Request<v1::TryLockRequest>) -> Result<Response<v1::TryLockResponse>, Status> {
        let r = request.into_inner();
        let (dur, lease_ms) = (durability(r.durability)?, self.lease(r.lease_ms)?);
        let wait_ms = check_wait(r.wait_ms).map_err(to_status)?;
        let op = LockOp::Acquire { name: r.name, owner: r.owner, lease_ms };
        let (reply, served_by) = self.op(op, dur, None, wait_ms).await?;
        Ok(Response::new(v1::TryLockResponse {
            acquired: reply.done,
            holder: reply.holder.map(holder),
            commit_ts: reply.commit_ts,
            served_by,
        }))
    }

    async fn unlock(&self, request: Request<v1::UnlockRequest>) -> Result<Response<v1::UnlockResponse>, Status> {
        let r = request.into_inner();
        let (dur, id) = (durability(r.durability)?, operation_id(&r.operation_id));
        let op = LockOp::Release { name: r.name, owner: r.owner };
        let (reply, served_by) = self.op(op, dur, id, 0).await?;
        Ok(Response::new(v1::UnlockResponse { released: reply.done, commit_ts: reply.commit_ts, served_by }))
    }

    async fn extend(
        &self,
        request: Request<v1::ExtendLockRequest>,
    ) -> Result<Response<v1::ExtendLockResponse>, Status> {
        let r = request.into_inner();
        let (dur, id, lease_ms) = (durability(r.durability)?, operation_id(&r.operation_id), self.lease(r.lease_ms)?);
        let op = LockOp::Extend { name: r.name, owner: r.owner, lease_ms };
        let (reply, served_by) = self.op(op, dur, id, 0).await?;
        Ok(Response::new(v1::ExtendLockResponse {
            extended: reply.done,
            holder: reply.holder.map(holder),
            commit_ts: reply.commit_ts,
            served_by,
        }))
    }

    async fn get_lock(&self, request: Request<v1::GetLockRequest>) -> Result<Response<v1::GetLockResponse>, Status> {
        let r = request.into_inner();
        let (dur, cons) = (durability(r.durability)?, consistency(r.consistency)?);
        let name = r.name;
        let (reply, served_by) = self
            .run(&name, PartitionRequest::GetLock { name: name.clone(), durability: dur, consistency: cons })
            .await?;
        Ok(Response::new(v1::GetLockResponse {
            held: reply.holder.is_some(),
            holder: reply.holder.map(holder),
            last_token: reply.last_token,
            served_by,
        }))
    }
}
