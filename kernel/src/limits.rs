//! Limits on what a client may send, checked before anything is proposed.

use crate::error::KvError;
use crate::types::WriteOp;

/// Longest key, in bytes of UTF-8.
pub const KEY_BYTES_MAX: usize = 1024;
/// Default largest value, in bytes (configurable per node).
pub const VALUE_BYTES_MAX_DEFAULT: usize = 1024 * 1024;
/// Keys with this prefix belong to Kahuna itself.
pub const RESERVED_PREFIX: &str = "__kahuna:";
/// Longest ttl or lease a client may ask for: ten years.
pub const TTL_MS_MAX: i64 = 10 * 365 * 24 * 3600 * 1000;
/// Default number of keys a scan returns.
pub const SCAN_LIMIT_DEFAULT: u32 = 100;
/// Most keys one scan page may return.
pub const SCAN_LIMIT_MAX: u32 = 10_000;
/// Most keys `get by bucket` returns; a larger bucket must be read with a scan.
pub const BUCKET_KEYS_MAX: usize = 10_000;
/// Most operations in one batch request.
pub const BATCH_OPS_MAX: usize = 1_000;
/// Most keys one transaction may read and write (each key counted once per partition).
pub const TXN_KEYS_MAX: usize = 10_000;
/// Longest operation id, in bytes.
pub const OPERATION_ID_BYTES_MAX: usize = 128;
/// Most key and value bytes one partition's share of a write may carry (a batch request,
/// or a transaction's writes there), and the highest value limit a node accepts. Each
/// becomes one Raft entry, and a follower must take an entry in one append-entries call,
/// which openraft 0.9 gives one heartbeat interval (100 ms) to be sent, written, synced
/// and answered: an entry that cannot make it could never reach a follower, and every
/// entry after it would wait behind it.
pub const WRITE_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Longest lock or sequence name, in bytes of UTF-8.
pub const NAME_BYTES_MAX: usize = 1024;
/// Longest lock owner, in bytes.
pub const OWNER_BYTES_MAX: usize = 256;
/// Default longest lock lease (configurable per node): one day.
pub const LOCK_LEASE_MS_MAX_DEFAULT: u64 = 24 * 3600 * 1000;
/// Longest a try-lock may wait for the lock on the server.
pub const LOCK_WAIT_MS_MAX: u64 = 300_000;
/// Most waiters queued on one lock of one partition leader; more are refused.
pub const LOCK_WAITERS_MAX: usize = 1024;
/// Most values one sequence reserve may hand out.
pub const RESERVE_COUNT_MAX: u64 = 1_000_000;
/// Longest sequence idempotency key, in bytes.
pub const IDEMPOTENCY_KEY_BYTES_MAX: usize = 128;

/// Checks a lock or sequence name (`what` says which): non-empty, at most
/// [`NAME_BYTES_MAX`], not reserved.
pub fn check_name(what: &str, name: &str) -> Result<(), KvError> {
    if name.is_empty() {
        return Err(KvError::InvalidInput(format!("{what} name is empty")));
    }
    if name.len() > NAME_BYTES_MAX {
        return Err(KvError::InvalidInput(format!(
            "{what} name is {} bytes, the limit is {NAME_BYTES_MAX}",
            name.len()
        )));
    }
    if name.starts_with(RESERVED_PREFIX) {
        return Err(KvError::InvalidInput(format!("{what} names beginning {RESERVED_PREFIX:?} are reserved")));
    }
    Ok(())
}

/// Checks a lock owner: non-empty, at most [`OWNER_BYTES_MAX`].
pub fn check_owner(owner: &str) -> Result<(), KvError> {
    if owner.is_empty() {
        return Err(KvError::InvalidInput("lock owner is empty".into()));
    }
    if owner.len() > OWNER_BYTES_MAX {
        return Err(KvError::InvalidInput(format!(
            "lock owner is {} bytes, the limit is {OWNER_BYTES_MAX}",
            owner.len()
        )));
    }
    Ok(())
}

/// Checks a lock lease in ms: at least 1, at most `lease_ms_max`; returns it unsigned.
pub fn check_lease(lease_ms: i64, lease_ms_max: u64) -> Result<u64, KvError> {
    if lease_ms <= 0 {
        return Err(KvError::InvalidInput(format!("lock lease must be at least 1 ms (got {lease_ms} ms)")));
    }
    let lease = lease_ms as u64;
    if lease > lease_ms_max {
        return Err(KvError::InvalidInput(format!("lock lease {lease_ms} ms is above the limit of {lease_ms_max} ms")));
    }
    Ok(lease)
}

/// Checks how long a try-lock may wait, in ms (0 = not at all); returns it unsigned.
pub fn check_wait(wait_ms: i64) -> Result<u64, KvError> {
    if wait_ms < 0 {
        return Err(KvError::InvalidInput(format!("lock wait must not be negative (got {wait_ms} ms)")));
    }
    let wait = wait_ms as u64;
    if wait > LOCK_WAIT_MS_MAX {
        return Err(KvError::InvalidInput(format!(
            "lock wait {wait_ms} ms is above the limit of {LOCK_WAIT_MS_MAX} ms"
        )));
    }
    Ok(wait)
}

/// Checks a reserve count: 1 to [`RESERVE_COUNT_MAX`].
pub fn check_count(count: u64) -> Result<(), KvError> {
    if count == 0 {
        return Err(KvError::InvalidInput("reserve count must be at least 1".into()));
    }
    if count > RESERVE_COUNT_MAX {
        return Err(KvError::InvalidInput(format!("reserve count {count} is above the limit of {RESERVE_COUNT_MAX}")));
    }
    Ok(())
}

/// Checks a sequence idempotency key: non-empty (absent keys are `None`), at most
/// [`IDEMPOTENCY_KEY_BYTES_MAX`].
pub fn check_idempotency_key(key: &str) -> Result<(), KvError> {
    if key.is_empty() {
        return Err(KvError::InvalidInput("idempotency key is empty".into()));
    }
    if key.len() > IDEMPOTENCY_KEY_BYTES_MAX {
        return Err(KvError::InvalidInput(format!(
            "idempotency key is {} bytes, the limit is {IDEMPOTENCY_KEY_BYTES_MAX}",
            key.len()
        )));
    }
    Ok(())
}

/// Checks a key: non-empty, at most [`KEY_BYTES_MAX`], not reserved.
pub fn check_key(key: &str) -> Result<(), KvError> {
    if key.is_empty() {
        return Err(KvError::InvalidInput("key is empty".into()));
    }
    if key.len() > KEY_BYTES_MAX {
        return Err(KvError::InvalidInput(format!("key is {} bytes, the limit is {KEY_BYTES_MAX}", key.len())));
    }
    if key.starts_with(RESERVED_PREFIX) {
        return Err(KvError::InvalidInput(format!("keys beginning {RESERVED_PREFIX:?} are reserved")));
    }
    Ok(())
}

/// Checks a value against the node's limit.
pub fn check_value(value: &[u8], value_bytes_max: usize) -> Result<(), KvError> {
    if value.len() > value_bytes_max {
        return Err(KvError::InvalidInput(format!("value is {} bytes, the limit is {value_bytes_max}", value.len())));
    }
    Ok(())
}

/// Checks a ttl in ms (0 = none) and returns it unsigned.
pub fn check_ttl(ttl_ms: i64) -> Result<u64, KvError> {
    if ttl_ms < 0 {
        return Err(KvError::InvalidInput(format!("ttl must not be negative (got {ttl_ms} ms)")));
    }
    if ttl_ms > TTL_MS_MAX {
        return Err(KvError::InvalidInput(format!("ttl {ttl_ms} ms is above the limit of {TTL_MS_MAX} ms")));
    }
    Ok(ttl_ms as u64)
}

/// Checks an operation id.
pub fn check_operation_id(id: &str) -> Result<(), KvError> {
    if id.len() > OPERATION_ID_BYTES_MAX {
        return Err(KvError::InvalidInput(format!(
            "operation id is {} bytes, the limit is {OPERATION_ID_BYTES_MAX}",
            id.len()
        )));
    }
    Ok(())
}

/// Resolves a requested scan limit (0 = default).
pub fn scan_limit(limit: u32) -> Result<u32, KvError> {
    match limit {
        0 => Ok(SCAN_LIMIT_DEFAULT),
        n if n > SCAN_LIMIT_MAX => Err(KvError::InvalidInput(format!(
            "scan limit {n} is above the maximum of {SCAN_LIMIT_MAX}; page with the cursor"
        ))),
        n => Ok(n),
    }
}

/// Checks how many keys a transaction touches in one partition.
pub fn check_txn_keys(len: usize) -> Result<(), KvError> {
    if len > TXN_KEYS_MAX {
        return Err(KvError::InvalidInput(format!(
            "a transaction touches {len} keys in one partition, the limit is {TXN_KEYS_MAX}"
        )));
    }
    Ok(())
}

/// Checks the key and value bytes of one partition's share of a write against
/// [`WRITE_BYTES_MAX`].
pub fn check_write_bytes(ops: &[WriteOp]) -> Result<(), KvError> {
    let bytes = ops.iter().fold(0usize, |sum, op| {
        let value = match op {
            WriteOp::Set(set) => set.value.len(),
            WriteOp::Delete(_) | WriteOp::Extend { .. } => 0,
        };
        sum.saturating_add(op.key().len()).saturating_add(value)
    });
    if bytes > WRITE_BYTES_MAX {
        return Err(KvError::InvalidInput(format!(
            "the writes to one partition are {bytes} bytes of keys and values, the limit is {WRITE_BYTES_MAX}"
        )));
    }
    Ok(())
}

/// Checks the operation count of a batch (at least one, at most [`BATCH_OPS_MAX`]).
pub fn check_batch(len: usize) -> Result<(), KvError> {
    if len == 0 {
        return Err(KvError::InvalidInput("batch is empty".into()));
    }
    if len > BATCH_OPS_MAX {
        return Err(KvError::InvalidInput(format!("batch has {len} operations, the limit is {BATCH_OPS_MAX}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert!(check_key("a").is_ok());
        assert!(check_key("").is_err());
        assert!(check_key(&"k".repeat(KEY_BYTES_MAX)).is_ok());
        let long = check_key(&"k".repeat(KEY_BYTES_MAX + 1)).unwrap_err();
        assert!(long.to_string().contains("1024"));
        assert!(check_key("__kahuna:x").is_err());
    }

    #[test]
    fn values_and_ttls() {
        assert!(check_value(&[0; 10], 10).is_ok());
        assert!(check_value(&[0; 11], 10).is_err());
        assert_eq!(check_ttl(0), Ok(0));
        assert!(check_ttl(-1).is_err());
        assert!(check_ttl(TTL_MS_MAX + 1).is_err());
        assert_eq!(scan_limit(0), Ok(SCAN_LIMIT_DEFAULT));
        assert!(scan_limit(SCAN_LIMIT_MAX + 1).is_err());
        assert!(check_batch(0).is_err());
    }

    #[test]
    fn one_partitions_writes_stay_under_one_raft_message() {
        let set = |key: &str, bytes: usize| {
            WriteOp::Set(crate::types::SetArgs { key: key.into(), value: vec![7; bytes], ..Default::default() })
        };
        let half = WRITE_BYTES_MAX / 2;
        assert!(check_write_bytes(&[set("a", half - 1), set("b", half - 1)]).is_ok());
        let over = check_write_bytes(&[set("a", half), set("b", half)]).unwrap_err();
        assert!(over.to_string().contains(&format!("{} bytes", WRITE_BYTES_MAX + 2)), "{over}");
        assert!(matches!(over, KvError::InvalidInput(_)));
    }

    #[test]
    fn lock_and_sequence_inputs() {
        assert!(check_name("lock", "").is_err_and(|e| e.to_string().contains("lock name is empty")));
        assert!(check_name("sequence", &"s".repeat(NAME_BYTES_MAX + 1)).is_err());
        assert!(check_name("lock", "__kahuna:x").is_err());
        assert!(check_owner("").is_err());
        assert!(check_owner(&"o".repeat(OWNER_BYTES_MAX + 1)).is_err());
        assert!(check_lease(0, 10).is_err_and(|e| e.to_string().contains("at least 1 ms")));
        assert!(check_lease(-5, 10).is_err());
        assert!(check_lease(11, 10).is_err_and(|e| e.to_string().contains("above the limit of 10 ms")));
        assert_eq!(check_lease(10, 10), Ok(10));
        assert!(check_wait(-1).is_err());
        assert!(check_wait(LOCK_WAIT_MS_MAX as i64 + 1).is_err());
        assert_eq!(check_wait(0), Ok(0));
        assert!(check_count(0).is_err());
        assert!(check_count(RESERVE_COUNT_MAX + 1).is_err());
        assert!(check_idempotency_key("").is_err());
        assert!(check_idempotency_key(&"k".repeat(IDEMPOTENCY_KEY_BYTES_MAX + 1)).is_err());
    }
}
