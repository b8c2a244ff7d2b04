//! The client-facing KeyValue service. Requests for one key go to that key's partition;
//! batches are split by partition (each part atomic); scans fan out to every partition
//! and merge in key order.

use std::collections::BTreeMap;

use futures::future::try_join_all;
use kahuna_kernel::{
    Kernel, KeyValue, PartitionId, PartitionRequest, PartitionResponse, Served, WriteOp, WriteResult, check_batch,
};
use kahuna_proto::v1::key_value_server::KeyValue as KeyValueApi;
use kahuna_proto::v1::*;
use tonic::{Request, Response, Status};

use crate::convert::{self, consistency, durability, operation_id};
use crate::pipeline;
use crate::status::to_status;

/// The writes of a batch bound for one partition: their request positions, the ops,
/// and the group's operation id.
type WriteGroup = (Vec<usize>, Vec<WriteOp>, Option<String>);

/// One write of a batch: the op, its operation id and its durability.
type BatchItem = (WriteOp, Option<String>, kahuna_kernel::Durability);

/// Converts a batch's requests with `op`, reading each one's durability and operation id
/// with `meta`; fails on the first malformed one.
fn batch_items<R>(
    requests: Vec<R>,
    meta: impl Fn(&R) -> (i32, &str),
    op: impl Fn(R) -> Result<WriteOp, Status>,
) -> Result<Vec<BatchItem>, Status> {
    requests
        .into_iter()
        .map(|r| {
            let (raw_durability, id) = meta(&r);
            let (dur, id) = (durability(raw_durability)?, operation_id(id));
            Ok((op(r)?, id, dur))
        })
        .collect()
}

#[derive(Clone)]
pub struct KvService {
    kernel: Kernel,
}

impl KvService {
    pub fn new(kernel: Kernel) -> Self {
        Self { kernel }
    }

    async fn run(&self, p: PartitionId, request: PartitionRequest) -> Result<Served<PartitionResponse>, Status> {
        self.kernel.execute(p, request).await.map_err(to_status)
    }

    /// Runs one write and returns its single result.
    async fn write_one(
        &self,
        op: WriteOp,
        id: Option<String>,
        durability: kahuna_kernel::Durability,
    ) -> Result<(WriteResult, u64), Status> {
        let p = self.kernel.partition_of(op.key());
        let served = self.run(p, PartitionRequest::Write { ops: vec![op], operation_id: id, durability }).await?;
        match served.value {
            PartitionResponse::Write(mut results) if results.len() == 1 => Ok((results.remove(0), served.served_by)),
            other => Err(Status::internal(format!("unexpected response {other:?}"))),
        }
    }

    /// Runs one read and returns its single value.
    async fn read_one(
        &self,
        read: kahuna_kernel::PointRead,
        durability: kahuna_kernel::Durability,
        consistency: kahuna_kernel::Consistency,
    ) -> Result<(Option<KeyValue>, u64), Status> {
        let p = self.kernel.partition_of(&read.key);
        let served = self.run(p, PartitionRequest::Read { reads: vec![read], durability, consistency }).await?;
        match served.value {
            PartitionResponse::Read(mut values) if values.len() == 1 => Ok((values.pop().flatten(), served.served_by)),
            other => Err(Status::internal(format!("unexpected response {other:?}"))),
        }
    }

    /// Splits writes by partition, runs each group as one entry, and returns the
    /// results in request order.
    async fn write_many(&self, items: Vec<BatchItem>) -> Result<(Vec<WriteResult>, u64), Status> {
        check_batch(items.len()).map_err(to_status)?;
        let mut groups: BTreeMap<(PartitionId, bool), WriteGroup> = BTreeMap::new();
        for (index, (op, id, dur)) in items.into_iter().enumerate() {
            let p = self.kernel.partition_of(op.key());
            let group = groups.entry((p, dur == kahuna_kernel::Durability::Ephemeral)).or_default();
            // A group is de-duplicated by its first item's operation id.
            if group.2.is_none() {
                group.2 = id.map(|id| format!("{id}#{p}"));
            }
            group.0.push(index);
            group.1.push(op);
        }
        let total = groups.values().map(|g| g.0.len()).sum::<usize>();
        let calls = groups.into_iter().map(|((p, ephemeral), (indexes, ops, id))| async move {
            let durability =
                if ephemeral { kahuna_kernel::Durability::Ephemeral } else { kahuna_kernel::Durability::Persistent };
            let served = self.run(p, PartitionRequest::Write { ops, operation_id: id, durability }).await?;
            match served.value {
                PartitionResponse::Write(results) => Ok::<_, Status>((indexes, results)),
                other => Err(Status::internal(format!("unexpected response {other:?}"))),
            }
        });
        let mut ordered: Vec<Option<WriteResult>> = vec![None; total];
        for (indexes, results) in try_join_all(calls).await? {
            for (index, result) in indexes.into_iter().zip(results) {
                ordered[index] = Some(result);
            }
        }
        let results =
            ordered.into_iter().collect::<Option<Vec<_>>>().ok_or_else(|| Status::internal("missing batch result"))?;
        Ok((results, self.kernel.node_id()))
    }

    async fn read_many(
        &self,
        reads: Vec<kahuna_kernel::PointRead>,
        durability: kahuna_kernel::Durability,
        consistency: kahuna_kernel::Consistency,
    ) -> Result<(Vec<Option<KeyValue>>, u64), Status> {
        check_batch(reads.len()).map_err(to_status)?;
        let mut groups: BTreeMap<PartitionId, (Vec<usize>, Vec<kahuna_kernel::PointRead>)> = BTreeMap::new();
        let total = reads.len();
        for (index, read) in reads.into_iter().enumerate() {
            let group = groups.entry(self.kernel.partition_of(&read.key)).or_default();
            group.0.push(index);
            group.1.push(read);
        }
        let single = groups.len() == 1;
        let calls = groups.into_iter().map(|(p, (indexes, reads))| async move {
            let served = self.run(p, PartitionRequest::Read { reads, durability, consistency }).await?;
            match served.value {
                PartitionResponse::Read(values) => Ok::<_, Status>((indexes, values, served.served_by)),
                other => Err(Status::internal(format!("unexpected response {other:?}"))),
            }
        });
        let mut ordered = vec![None; total];
        let mut served_by = self.kernel.node_id();
        for (indexes, values, by) in try_join_all(calls).await? {
            if single {
                served_by = by;
            }
            for (index, value) in indexes.into_iter().zip(values) {
                ordered[index] = value;
            }
        }
        Ok((ordered, served_by))
    }
}

#[tonic::async_trait]
impl KeyValueApi for KvService {
    type PipelineStream = pipeline::ReplyStream;

    async fn pipeline(
        &self,
        request: Request<tonic::Streaming<PipelineRequest>>,
    ) -> Result<Response<Self::PipelineStream>, Status> {
        Ok(Response::new(pipeline::open(self.clone(), request.into_inner())))
    }

    async fn set(&self, request: Request<SetRequest>) -> Result<Response<SetResponse>, Status> {
        let r = request.into_inner();
        let (dur, id) = (durability(r.durability)?, operation_id(&r.operation_id));
        let (result, by) = self.write_one(convert::set_op(r)?, id, dur).await?;
        Ok(Response::new(convert::set_response(result, by)?))
    }

    async fn get(&self, request: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        let r = request.into_inner();
        let (dur, cons) = (durability(r.durability)?, consistency(r.consistency)?);
        let read = convert::point_read(r.key, r.at_revision, r.as_of)?;
        let (value, by) = self.read_one(read, dur, cons).await?;
        Ok(Response::new(convert::get_response(value, by)))
    }

    async fn exists(&self, request: Request<ExistsRequest>) -> Result<Response<ExistsResponse>, Status> {
        let r = request.into_inner();
        let (dur, cons) = (durability(r.durability)?, consistency(r.consistency)?);
        let read = convert::point_read(r.key, None, None)?;
        let (value, served_by) = self.read_one(read, dur, cons).await?;
        Ok(Response::new(ExistsResponse { exists: value.is_some(), served_by }))
    }

    async fn delete(&self, request: Request<DeleteRequest>) -> Result<Response<DeleteResponse>, Status> {
        let r = request.into_inner();
        let (dur, id) = (durability(r.durability)?, operation_id(&r.operation_id));
        let (result, by) = self.write_one(convert::delete_op(r), id, dur).await?;
        Ok(Response::new(convert::delete_response(result, by)?))
    }

    async fn extend(&self, request: Request<ExtendRequest>) -> Result<Response<ExtendResponse>, Status> {
        let r = request.into_inner();
        let (dur, id) = (durability(r.durability)?, operation_id(&r.operation_id));
        let ttl_ms = kahuna_kernel::check_ttl(r.ttl_ms).map_err(to_status)?;
        let (result, served_by) = self.write_one(WriteOp::Extend { key: r.key, ttl_ms }, id, dur).await?;
        match result {
            WriteResult::Extend { extended, expires_at_ms, commit_ts } => Ok(Response::new(ExtendResponse {
                extended,
                expires_at_ms: expires_at_ms as i64,
                commit_ts,
                served_by,
            })),
            other => Err(Status::internal(format!("unexpected result {other:?}"))),
        }
    }

    async fn get_by_bucket(
        &self,
        request: Request<GetByBucketRequest>,
    ) -> Result<Response<GetByBucketResponse>, Status> {
        let r = request.into_inner();
        let (dur, cons) = (durability(r.durability)?, consistency(r.consistency)?);
        let p = self.kernel.partition_of_bucket(&r.bucket);
        let served =
            self.run(p, PartitionRequest::Bucket { bucket: r.bucket, durability: dur, consistency: cons }).await?;
        match served.value {
            PartitionResponse::Items { items, .. } => Ok(Response::new(GetByBucketResponse {
                items: items.into_iter().map(convert::entry).collect(),
                served_by: served.served_by,
            })),
            other => Err(Status::internal(format!("unexpected response {other:?}"))),
        }
    }

    async fn scan(&self, request: Request<ScanRequest>) -> Result<Response<ScanResponse>, Status> {
        let r = request.into_inner();
        let (dur, cons) = (durability(r.durability)?, consistency(r.consistency)?);
        let after = (!r.cursor.is_empty()).then_some(r.cursor);
        let (merged, more) =
            self.kernel.scan(&r.prefix, after.as_deref(), r.limit, None, dur, cons).await.map_err(to_status)?;
        let next_cursor = if more { merged.last().map(|kv| kv.key.clone()).unwrap_or_default() } else { String::new() };
        Ok(Response::new(ScanResponse {
            items: merged.into_iter().map(convert::entry).collect(),
            next_cursor,
            served_by: self.kernel.node_id(),
        }))
    }

    async fn set_many(&self, request: Request<SetManyRequest>) -> Result<Response<SetManyResponse>, Status> {
        let items = batch_items(request.into_inner().items, |r| (r.durability, &r.operation_id), convert::set_op)?;
        let (results, by) = self.write_many(items).await?;
        let results = results.into_iter().map(|r| convert::set_response(r, by)).collect::<Result<_, _>>()?;
        Ok(Response::new(SetManyResponse { results, served_by: by }))
    }

    async fn get_many(&self, request: Request<GetManyRequest>) -> Result<Response<GetManyResponse>, Status> {
        let r = request.into_inner();
        let (dur, cons) = (durability(r.durability)?, consistency(r.consistency)?);
        let reads = r.keys.into_iter().map(|k| convert::point_read(k, None, None)).collect::<Result<Vec<_>, _>>()?;
        let (values, by) = self.read_many(reads, dur, cons).await?;
        let results = values.into_iter().map(|v| convert::get_response(v, by)).collect();
        Ok(Response::new(GetManyResponse { results, served_by: by }))
    }

    async fn delete_many(&self, request: Request<DeleteManyRequest>) -> Result<Response<DeleteManyResponse>, Status> {
        let items = batch_items(
            request.into_inner().items,
            |r| (r.durability, &r.operation_id),
            |r| Ok(convert::delete_op(r)),
        )?;
        let (results, by) = self.write_many(items).await?;
        let results = results.into_iter().map(|r| convert::delete_response(r, by)).collect::<Result<_, _>>()?;
        Ok(Response::new(DeleteManyResponse { results, served_by: by }))
    }
}
