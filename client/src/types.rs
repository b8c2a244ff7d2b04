//! What calls return. Every result names the node that served it (`served_by`).

/// A node id, as in the cluster configuration.
pub type NodeId = u64;

/// One version of a key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KeyValue {
    /// The key.
    pub key: String,
    /// The value bytes.
    pub value: Vec<u8>,
    /// Per-key revision: first write 0, +1 per set or delete.
    pub revision: i64,
    /// HLC commit timestamp (see [`hlc_unix_ms`](crate::hlc_unix_ms)).
    pub commit_ts: u64,
    /// Unix milliseconds at which the key expires; `None` for never.
    pub expires_at_ms: Option<u64>,
}

/// Builds a [`KeyValue`] from the protocol's key/value message without naming its type,
/// so that only field names tie this crate to the generated code.
macro_rules! key_value_from_proto {
    ($kv:expr) => {{
        let kv = $kv;
        $crate::types::KeyValue {
            key: kv.key,
            value: kv.value,
            revision: kv.revision,
            commit_ts: kv.commit_ts,
            expires_at_ms: $crate::types::positive(kv.expires_at_ms),
        }
    }};
}
pub(crate) use key_value_from_proto;

/// Maps the protocol's "0 or negative means none" integers to an `Option`.
pub(crate) fn positive(value: i64) -> Option<u64> {
    u64::try_from(value).ok().filter(|v| *v > 0)
}

/// Maps the protocol's "-1 means absent" revisions to an `Option`.
pub(crate) fn revision(value: i64) -> Option<i64> {
    (value >= 0).then_some(value)
}

/// Outcome of a set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetResult {
    /// False when a condition (nx, xx, compare) did not hold; nothing was written.
    pub modified: bool,
    /// The new revision, or the current one when not modified; `None` when the key is
    /// absent.
    pub revision: Option<i64>,
    /// HLC commit timestamp of the write (or of the read that refused it).
    pub commit_ts: u64,
    /// Node that served the call.
    pub served_by: NodeId,
}

/// Outcome of a get.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GetResult {
    /// The version read; `None` when the key does not exist (or did not at that point).
    pub kv: Option<KeyValue>,
    /// Node that served the call.
    pub served_by: NodeId,
}

/// Outcome of an exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExistsResult {
    /// Whether the key exists.
    pub exists: bool,
    /// Node that served the call.
    pub served_by: NodeId,
}

/// Outcome of a delete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeleteResult {
    /// False when the key was absent or a compare did not hold.
    pub deleted: bool,
    /// The tombstone's revision, or the current one when not deleted; `None` when the
    /// key is absent.
    pub revision: Option<i64>,
    /// HLC commit timestamp.
    pub commit_ts: u64,
    /// Node that served the call.
    pub served_by: NodeId,
}

/// Outcome of an extend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExtendResult {
    /// False when the key does not exist.
    pub extended: bool,
    /// New expiry in unix milliseconds; `None` for never.
    pub expires_at_ms: Option<u64>,
    /// HLC commit timestamp.
    pub commit_ts: u64,
    /// Node that served the call.
    pub served_by: NodeId,
}

/// Outcome of a get by bucket, or of a scan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Items {
    /// Key/values sorted by key.
    pub items: Vec<KeyValue>,
    /// For a scan: where the next page starts; `None` when the scan is complete.
    /// Always `None` for a get by bucket.
    pub next_cursor: Option<String>,
    /// Node that served the call (for a multi-page scan, the last page).
    pub served_by: NodeId,
}

/// Outcome of a batch: one result per item, in request order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch<T> {
    /// Per-item results in request order.
    pub results: Vec<T>,
    /// Node that served the call.
    pub served_by: NodeId,
}

/// The holder of a lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockHolder {
    /// Who holds it.
    pub owner: String,
    /// The fencing token: larger for every new holder of the same name. Pass it to the
    /// resources the lock guards, which refuse tokens older than one they have seen.
    pub token: u64,
    /// Unix milliseconds at which the lease ends.
    pub expires_at_ms: u64,
}

/// Outcome of a try-lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockResult {
    /// Whether the caller holds the lock now.
    pub acquired: bool,
    /// The holder now: the caller when acquired, else whoever held it when the wait ran
    /// out (`None` if it was free by then).
    pub holder: Option<LockHolder>,
    /// HLC timestamp at which the lock was judged.
    pub commit_ts: u64,
    /// Node that served the call.
    pub served_by: NodeId,
}

impl LockResult {
    /// The caller's fencing token, when acquired.
    pub fn token(&self) -> Option<u64> {
        self.holder.as_ref().filter(|_| self.acquired).map(|h| h.token)
    }
}

/// Outcome of an unlock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnlockResult {
    /// False when the lock was not held any more (free, or the lease ended).
    pub released: bool,
    /// HLC commit timestamp.
    pub commit_ts: u64,
    /// Node that served the call.
    pub served_by: NodeId,
}

/// Outcome of a lock extend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtendLockResult {
    /// False when the lease had already ended; re-acquire the lock (new token).
    pub extended: bool,
    /// The holder now.
    pub holder: Option<LockHolder>,
    /// HLC commit timestamp.
    pub commit_ts: u64,
    /// Node that served the call.
    pub served_by: NodeId,
}

/// Outcome of a get-lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockInfo {
    /// The live holder; `None` when the lock is free.
    pub holder: Option<LockHolder>,
    /// The largest token ever granted for the name; 0 when never.
    pub last_token: u64,
    /// Node that served the call.
    pub served_by: NodeId,
}

/// A sequence's settings and progress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SequenceInfo {
    /// The sequence's name.
    pub name: String,
    /// Its first value.
    pub start: i64,
    /// The step between values.
    pub increment: i64,
    /// The largest value it hands out; `None` for `i64::MAX`.
    pub max: Option<i64>,
    /// Values handed out so far.
    pub allocated: u64,
    /// The high-water mark: the last value handed out; `None` before the first.
    pub last: Option<i64>,
    /// The value the next call gets; `None` when exhausted.
    pub next: Option<i64>,
}

/// Outcome of a create-sequence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateSequenceResult {
    /// False when the sequence existed already; `sequence` shows it unchanged.
    pub created: bool,
    /// The sequence.
    pub sequence: SequenceInfo,
    /// Node that served the call.
    pub served_by: NodeId,
}

/// Outcome of a next-sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NextResult {
    /// The value handed out.
    pub value: i64,
    /// True when answered from an earlier call with the same idempotency key.
    pub replayed: bool,
    /// Node that served the call.
    pub served_by: NodeId,
}

/// Outcome of a reserve-sequence: the values `first`, `first + increment`, ..., `last`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReserveResult {
    /// The first value.
    pub first: i64,
    /// The last value.
    pub last: i64,
    /// How many values.
    pub count: u64,
    /// The step between them.
    pub increment: i64,
    /// True when answered from an earlier call with the same idempotency key.
    pub replayed: bool,
    /// Node that served the call.
    pub served_by: NodeId,
}

impl ReserveResult {
    /// Every value of the range, in order.
    pub fn values(&self) -> impl Iterator<Item = i64> + use<> {
        let (first, increment) = (self.first, self.increment);
        (0..self.count).map(move |i| first.saturating_add((i as i64).saturating_mul(increment)))
    }
}

/// Outcome of a get-sequence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GetSequenceResult {
    /// The sequence; `None` when it does not exist.
    pub sequence: Option<SequenceInfo>,
    /// Node that served the call.
    pub served_by: NodeId,
}

/// Outcome of a delete-sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeleteSequenceResult {
    /// False when there was no such sequence.
    pub deleted: bool,
    /// Node that served the call.
    pub served_by: NodeId,
}

/// A node of the cluster configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    /// Node id.
    pub id: NodeId,
    /// Its client address.
    pub address: String,
}

/// One partition as the serving node sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionStatus {
    /// Partition number.
    pub partition: u32,
    /// Leader node; `None` when unknown.
    pub leader: Option<NodeId>,
    /// Raft term.
    pub term: u64,
    /// This node's role: leader, follower, candidate or learner.
    pub role: String,
    /// Index of the last log entry.
    pub last_log_index: u64,
    /// Index of the last applied entry.
    pub applied_index: u64,
    /// Index covered by the latest snapshot.
    pub snapshot_index: u64,
    /// Voting members.
    pub voters: Vec<NodeId>,
}

/// Outcome of a cluster status call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterStatus {
    /// The node that answered (also `served_by`).
    pub node_id: NodeId,
    /// The cluster's nodes.
    pub nodes: Vec<NodeInfo>,
    /// Every partition as that node sees it.
    pub partitions: Vec<PartitionStatus>,
    /// That node's HLC reading.
    pub hlc: u64,
    /// Its software version.
    pub version: String,
}

/// Outcome of a script run.
#[derive(Clone, Debug, PartialEq)]
pub struct ScriptResult {
    /// What the script returned (several values: an array of them).
    pub value: crate::ScriptValue,
    /// The hash of the script that ran (64 hex digits).
    pub hash: String,
    /// When its writes committed; `None` when it wrote nothing.
    pub commit_ts: Option<u64>,
    /// Runs it took on the node: more than 1 after conflicts.
    pub attempts: u32,
    /// Node that ran it.
    pub served_by: NodeId,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_sentinels_become_options() {
        assert_eq!(positive(0), None);
        assert_eq!(positive(-5), None);
        assert_eq!(positive(17), Some(17));
        assert_eq!(revision(-1), None);
        assert_eq!(revision(0), Some(0));
    }
}
