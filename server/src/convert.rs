//! Conversions between the client protocol and the kernel's vocabulary. Every field a
//! client sends is checked here or in the kernel; nothing is trusted.

use kahuna_kernel::{
    Consistency, DeleteArgs, Durability, KeyValue, PointRead, SetArgs, WriteOp, WriteResult, check_ttl,
};
use kahuna_proto::v1;
use kahuna_script::ScriptValue;
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
    let args = SetArgs {
        key: r.key,
        value: r.value,
        nx: r.nx,
        xx: r.xx,
        compare_value: r.compare_value,
        compare_revision: r.compare_revision,
        ttl_ms: 0,
    };
    set_args(args, r.ttl_ms).map(WriteOp::Set)
}

/// Checks a set's flags and its protocol ttl (`ttl_ms` of `args` is replaced).
pub fn set_args(mut args: SetArgs, ttl_ms: i64) -> Result<SetArgs, Status> {
    if args.nx && args.xx {
        return Err(invalid("nx and xx cannot be combined"));
    }
    args.ttl_ms = check_ttl(ttl_ms).map_err(crate::status::to_status)?;
    Ok(args)
}

/// The durability of a transaction's request: persistent only, because transactions
/// (and so scripts) do not cover the ephemeral keyspace.
pub fn txn_durability(raw: i32, key: &str) -> Result<(), Status> {
    match durability(raw)? {
        Durability::Persistent => Ok(()),
        Durability::Ephemeral => Err(invalid(format!(
            "transactions read and write persistent keys only; {key:?} was asked for in the ephemeral \
             keyspace (use the KeyValue calls for ephemeral keys)"
        ))),
    }
}

/// A script value from the protocol. Its nesting is bounded by the protocol decoder's
/// recursion limit; the script engine applies its own, smaller limits.
pub fn script_value(v: v1::ScriptValue) -> ScriptValue {
    use v1::script_value::Kind;
    match v.kind {
        None | Some(Kind::Nil(_)) => ScriptValue::Nil,
        Some(Kind::Boolean(b)) => ScriptValue::Boolean(b),
        Some(Kind::Integer(n)) => ScriptValue::Integer(n),
        Some(Kind::Float(f)) => ScriptValue::Float(f),
        Some(Kind::String(bytes)) => ScriptValue::String(bytes),
        Some(Kind::Array(a)) => ScriptValue::Array(a.items.into_iter().map(script_value).collect()),
        Some(Kind::Map(m)) => ScriptValue::Map(m.entries.into_iter().map(|(k, v)| (k, script_value(v))).collect()),
    }
}

/// A script value for the protocol; nesting was bounded when the script returned it.
pub fn script_value_to_proto(v: ScriptValue) -> v1::ScriptValue {
    use v1::script_value::Kind;
    let kind = match v {
        ScriptValue::Nil => Kind::Nil(v1::ScriptNil {}),
        ScriptValue::Boolean(b) => Kind::Boolean(b),
        ScriptValue::Integer(n) => Kind::Integer(n),
        ScriptValue::Float(f) => Kind::Float(f),
        ScriptValue::String(bytes) => Kind::String(bytes),
        ScriptValue::Array(items) => {
            Kind::Array(v1::ScriptArray { items: items.into_iter().map(script_value_to_proto).collect() })
        }
        ScriptValue::Map(entries) => Kind::Map(v1::ScriptMap {
            entries: entries.into_iter().map(|(k, v)| (k, script_value_to_proto(v))).collect(),
        }),
    };
    v1::ScriptValue { kind: Some(kind) }
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
