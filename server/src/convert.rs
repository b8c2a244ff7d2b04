//! Conversions between the client protocol and the kernel's vocabulary. Every field a
//! client sends is checked here or in the kernel; nothing is trusted.

use kahuna_kernel::{
    Consistency, DeleteArgs, Durability, KeyValue, PointRead, SetArgs, WriteOp, WriteResult, check_ttl,
};
use kahuna_proto::v1;
use tonic::Status;

use crate::status::invalid;

pub fn durability(raw: i32) -> Result<Durability, Status> {
    match v1::Durability::try_from(raw) {
        Ok(v1::Durability::Persistent) => Ok(Durability::Persistent),
        Ok(v1::Durability::Ephemeral) => Ok(Durability::Ephemeral),
        Err(_) => Err(invalid(format!("unknown durability {raw}"))),
    }
}

pub fn consistency(raw: i32) -> Result<Consistency, Status> {
    match v1::Consistency::try_from(raw) {
        Ok(v1::Consistency::Linearizable) => Ok(Consistency::Linearizable),
        Ok(v1::Consistency::Serializable) => Ok(Consistency::Serializable),
        Err(_) => Err(invalid(format!("unknown consistency {raw}"))),
    }
}

pub fn operation_id(raw: &str) -> Option<String> {
    (!raw.is_empty()).then(|| raw.to_owned())
}

pub fn set_op(r: v1::SetRequest) -> Result<WriteOp, Status> {
    if r.nx && r.xx {
        return Err(invalid("nx and xx cannot be combined"));
    }
    let ttl_ms = check_ttl(r.ttl_ms).map_err(crate::status::to_status)?;
    Ok(WriteOp::Set(SetArgs {
        key: r.key,
        value: r.value,
        nx: r.nx,
        xx: r.xx,
        compare_value: r.compare_value,
        compare_revision: r.compare_revision,
        ttl_ms,
    }))
}

pub fn delete_op(r: v1::DeleteRequest) -> WriteOp {
    WriteOp::Delete(DeleteArgs { key: r.key, compare_value: r.compare_value, compare_revision: r.compare_revision })
}

pub fn point_read(key: String, at_revision: Option<i64>, as_of: Option<u64>) -> Result<PointRead, Status> {
    if at_revision.is_some_and(|r| r < 0) {
        return Err(invalid("revision must not be negative"));
    }
    Ok(PointRead { key, at_revision, as_of })
}

pub fn entry(kv: KeyValue) -> v1::Entry {
    v1::Entry {
        key: kv.key,
        value: kv.value,
        revision: kv.revision,
        commit_ts: kv.commit_ts,
        expires_at_ms: kv.expires_at_ms as i64,
    }
}

pub fn set_response(result: WriteResult, served_by: u64) -> Result<v1::SetResponse, Status> {
    match result {
        WriteResult::Set { modified, revision, commit_ts } => {
            Ok(v1::SetResponse { modified, revision, commit_ts, served_by })
        }
        other => Err(Status::internal(format!("unexpected result {other:?}"))),
    }
}

pub fn delete_response(result: WriteResult, served_by: u64) -> Result<v1::DeleteResponse, Status> {
    match result {
        WriteResult::Delete { deleted, revision, commit_ts } => {
            Ok(v1::DeleteResponse { deleted, revision, commit_ts, served_by })
        }
        other => Err(Status::internal(format!("unexpected result {other:?}"))),
    }
}

pub fn get_response(found: Option<KeyValue>, served_by: u64) -> v1::GetResponse {
    v1::GetResponse { found: found.is_some(), kv: found.map(entry), served_by }
}
