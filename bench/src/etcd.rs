//! [`EtcdDriver`]: the benchmark operations over `etcd-client` (feature `peers`).
//!
//! | workload | requests |
//! |---|---|
//! | put / get / get-serializable | Put / linearizable Range / serializable Range |
//! | lock | Txn "create revision = 0 → Put(owner, session lease)", then Txn "value = owner → Delete" |
//! | sequence-next, sequence-reserve | Range, then Txn "mod revision = read → Put(n + count)", again on a lost race |
//! | txn, txn-2p | one Txn of two Ranges, then Txn "both mod revisions = read → Put both" |
//!
//! A lock is a key holding its owner and attached to one lease per connection, kept alive
//! in the background (the session of etcd's own `concurrency` package), so a cycle is two
//! requests like Kahuna's; the lease, not the key, expires when the client goes away.
//! etcd's create revision serves as a fencing token. A sequence is a counter key advanced
//! by compare-and-swap, up to [`SEQUENCE_CAS_ATTEMPTS_MAX`] attempts. etcd has one Raft
//! log for all keys, so txn and txn-2p are the same operation on it.
//!
//! etcd has no ephemeral keyspace and no scripts, so eput, eget and script are
//! unsupported.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, KvClient, LeaseClient, PutOptions, Txn, TxnOp,
    TxnOpResponse,
};
use tokio::sync::OnceCell;
use tokio::task::JoinHandle;

use crate::args::Workload;
use crate::driver::{Driver, Keyspace, OpError, ReadMode};

/// Most compare-and-swap attempts of one sequence operation before it counts as a
/// conflict.
pub const SEQUENCE_CAS_ATTEMPTS_MAX: u32 = 64;
/// Shortest lock session lease, in seconds (etcd rounds shorter ones up anyway).
const LOCK_LEASE_S_MIN: i64 = 2;

/// Drives an etcd cluster through one [`Client`] (one balanced gRPC channel over the
/// endpoints, shared by clones).
#[derive(Clone)]
pub struct EtcdDriver {
    kv: KvClient,
    lease: LeaseClient,
    /// The lease every lock of this connection is attached to; granted on the first lock.
    session: Arc<OnceCell<LockSession>>,
}

/// A lease kept alive by a background task until dropped (with the last driver clone).
struct LockSession {
    id: i64,
    keeper: JoinHandle<()>,
}

impl Drop for LockSession {
    fn drop(&mut self) {
        // The lease then ends at its TTL, and the locks still attached with it.
        self.keeper.abort();
    }
}

impl std::fmt::Debug for EtcdDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdDriver").finish_non_exhaustive()
    }
}

impl EtcdDriver {
    /// Connects to `endpoints` (`host:port` or `http://host:port`) with `timeout` per
    /// request and per connection attempt.
    pub async fn connect(endpoints: &[String], timeout: Duration) -> Result<EtcdDriver, OpError> {
        let endpoints = etcd_endpoints(endpoints);
        if endpoints.is_empty() {
            return Err(OpError { kind: "InvalidArgument".into(), message: "no etcd endpoint".into() });
        }
        let options = ConnectOptions::new().with_timeout(timeout).with_connect_timeout(timeout);
        let client = Client::connect(&endpoints, Some(options)).await.map_err(op_error)?;
        Ok(EtcdDriver { kv: client.kv_client(), lease: client.lease_client(), session: Arc::default() })
    }

    /// The lease of this connection's locks, granted with a TTL of `lease_ms` (rounded up
    /// to whole seconds) on the first call.
    async fn session(&self, lease_ms: u64) -> Result<&LockSession, OpError> {
        self.session
            .get_or_try_init(|| async {
                let ttl_s = i64::try_from(lease_ms.div_ceil(1_000)).unwrap_or(i64::MAX).max(LOCK_LEASE_S_MIN);
                let mut lease = self.lease.clone();
                let granted = lease.grant(ttl_s, None).await.map_err(op_error)?;
                let keeper = tokio::spawn(keep_alive(lease, granted.id(), granted.ttl()));
                Ok(LockSession { id: granted.id(), keeper })
            })
            .await
    }

    /// Adds `delta` to counter `name` by compare-and-swap on its mod revision: a Range,
    /// then a Txn that puts the sum when nothing changed and else reads the key again for
    /// the next attempt.
    async fn add(&self, name: &str, delta: u64) -> Result<i64, OpError> {
        let delta = i64::try_from(delta).map_err(|_| invalid(format!("count {delta} is too large")))?;
        let mut kv = self.kv.clone();
        let response = kv.get(name, None).await.map_err(op_error)?;
        let (mut value, mut revision) = counter(response.kvs().first())?;
        for _ in 0..SEQUENCE_CAS_ATTEMPTS_MAX {
            let next =
                value.checked_add(delta).ok_or_else(|| invalid(format!("sequence {name} would pass i64::MAX")))?;
            let txn = Txn::new()
                .when([Compare::mod_revision(name, CompareOp::Equal, revision)])
                .and_then([TxnOp::put(name, next.to_string(), None)])
                .or_else([TxnOp::get(name, None)]);
            let response = kv.txn(txn).await.map_err(op_error)?;
            if response.succeeded() {
                return Ok(next);
            }
            (value, revision) = match response.op_responses().first() {
                Some(TxnOpResponse::Get(get)) => counter(get.kvs().first())?,
                _ => return Err(malformed("a failed compare-and-swap did not return the key")),
            };
        }
        Err(OpError::conflict(format!(
            "sequence {name}: {SEQUENCE_CAS_ATTEMPTS_MAX} compare-and-swap attempts in a row lost a race"
        )))
    }
}

/// Whether etcd has a faithful equivalent of `workload`.
fn offers(workload: Workload) -> bool {
    !matches!(workload, Workload::Eput | Workload::Eget | Workload::Script)
}

/// Keeps lease `id` alive every third of its `ttl_s` until the task is aborted or the
/// stream breaks (then the lease expires and lock attempts fail, counted as errors).
async fn keep_alive(mut lease: LeaseClient, id: i64, ttl_s: i64) {
    let Ok((mut keeper, mut responses)) = lease.keep_alive(id).await else { return };
    let period = Duration::from_secs(u64::try_from(ttl_s / 3).unwrap_or(1).max(1));
    let mut tick = tokio::time::interval(period);
    tick.tick().await;
    loop {
        tick.tick().await;
        if keeper.keep_alive().await.is_err() || !matches!(responses.message().await, Ok(Some(_))) {
            return;
        }
    }
}

/// The value and mod revision of a counter key; a missing key is 0 at revision 0, which
/// etcd compares a missing key's mod revision with.
fn counter(kv: Option<&etcd_client::KeyValue>) -> Result<(i64, i64), OpError> {
    match kv {
        None => Ok((0, 0)),
        Some(kv) => Ok((parse_counter(kv.value())?, kv.mod_revision())),
    }
}

/// A counter's value: decimal text.
fn parse_counter(value: &[u8]) -> Result<i64, OpError> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| malformed(format!("a sequence holds {:?}, not a number", String::from_utf8_lossy(value))))
}

fn invalid(message: String) -> OpError {
    OpError { kind: "InvalidArgument".into(), message }
}

fn malformed(message: impl Into<String>) -> OpError {
    OpError { kind: "MalformedResponse".into(), message: message.into() }
}

/// The endpoints as etcd-client takes them: trimmed, empty ones dropped, `http://` added
/// when no scheme is given.
fn etcd_endpoints(endpoints: &[String]) -> Vec<String> {
    endpoints
        .iter()
        .map(|e| e.trim())
        .filter(|e| !e.is_empty())
        .map(|e| if e.contains("://") { e.to_owned() } else { format!("http://{e}") })
        .collect()
}

/// A stable kind: the gRPC code for statuses, else the error's family.
fn op_error(error: etcd_client::Error) -> OpError {
    let kind = match &error {
        etcd_client::Error::GRpcStatus(status) => format!("{:?}", status.code()),
        etcd_client::Error::TransportError(_) => "Transport".to_owned(),
        etcd_client::Error::IoError(_) => "Io".to_owned(),
        etcd_client::Error::InvalidArgs(_) | etcd_client::Error::InvalidUri(_) => "InvalidArgument".to_owned(),
        _ => "Etcd".to_owned(),
    };
    OpError { kind, message: error.to_string() }
}

impl Driver for EtcdDriver {
    fn name(&self) -> &'static str {
        "etcd"
    }

    fn supports(&self, workload: Workload) -> bool {
        offers(workload)
    }

    async fn put(&self, key: &str, value: &[u8], keyspace: Keyspace) -> Result<(), OpError> {
        if keyspace == Keyspace::Ephemeral {
            return Err(OpError::unsupported(self.name(), "an ephemeral put"));
        }
        // KvClient methods take `&mut self`; a clone shares the channel.
        let mut kv = self.kv.clone();
        kv.put(key, value, None).await.map(|_| ()).map_err(op_error)
    }

    async fn get(&self, key: &str, keyspace: Keyspace, read: ReadMode) -> Result<bool, OpError> {
        if keyspace == Keyspace::Ephemeral {
            return Err(OpError::unsupported(self.name(), "an ephemeral get"));
        }
        let options = match read {
            ReadMode::Linearizable => None,
            ReadMode::Serializable => Some(GetOptions::new().with_serializable()),
        };
        let mut kv = self.kv.clone();
        kv.get(key, options).await.map(|response| !response.kvs().is_empty()).map_err(op_error)
    }

    /// One Txn: when `name` does not exist, put `owner` under it with the session lease.
    async fn try_lock(&self, name: &str, owner: &str, lease_ms: u64) -> Result<bool, OpError> {
        let session = self.session(lease_ms).await?;
        let txn = Txn::new().when([Compare::create_revision(name, CompareOp::Equal, 0)]).and_then([TxnOp::put(
            name,
            owner,
            Some(PutOptions::new().with_lease(session.id)),
        )]);
        let mut kv = self.kv.clone();
        kv.txn(txn).await.map(|response| response.succeeded()).map_err(op_error)
    }

    /// One Txn: when `name` still holds `owner`, delete it.
    async fn unlock(&self, name: &str, owner: &str) -> Result<(), OpError> {
        let txn =
            Txn::new().when([Compare::value(name, CompareOp::Equal, owner)]).and_then([TxnOp::delete(name, None)]);
        let mut kv = self.kv.clone();
        kv.txn(txn).await.map(|_| ()).map_err(op_error)
    }

    /// Puts 0 under `name` unless it exists.
    async fn create_sequence(&self, name: &str) -> Result<(), OpError> {
        let txn = Txn::new()
            .when([Compare::create_revision(name, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(name, "0", None)]);
        let mut kv = self.kv.clone();
        kv.txn(txn).await.map(|_| ()).map_err(op_error)
    }

    async fn next_sequence(&self, name: &str) -> Result<(), OpError> {
        self.add(name, 1).await.map(|_| ())
    }

    async fn reserve_sequence(&self, name: &str, count: u64) -> Result<(), OpError> {
        self.add(name, count).await.map(|_| ())
    }

    /// Two round trips: one Txn of two linearizable Ranges, then one Txn that puts both
    /// when both mod revisions are still those read (0 for a missing key).
    async fn txn(&self, a: &str, b: &str, value: &[u8]) -> Result<(), OpError> {
        let mut kv = self.kv.clone();
        let read = Txn::new().and_then([TxnOp::get(a, None), TxnOp::get(b, None)]);
        let revisions: Vec<i64> = kv
            .txn(read)
            .await
            .map_err(op_error)?
            .op_responses()
            .iter()
            .map(|response| match response {
                TxnOpResponse::Get(get) => Ok(get.kvs().first().map_or(0, |kv| kv.mod_revision())),
                _ => Err(malformed("a read Txn returned something else than Ranges")),
            })
            .collect::<Result<_, _>>()?;
        let [revision_a, revision_b] = revisions[..] else {
            return Err(malformed(format!("a read Txn of two Ranges returned {} responses", revisions.len())));
        };
        let write = Txn::new()
            .when([
                Compare::mod_revision(a, CompareOp::Equal, revision_a),
                Compare::mod_revision(b, CompareOp::Equal, revision_b),
            ])
            .and_then([TxnOp::put(a, value, None), TxnOp::put(b, value, None)]);
        if kv.txn(write).await.map_err(op_error)?.succeeded() {
            Ok(())
        } else {
            Err(OpError::conflict(format!("{a} or {b} changed after the read")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_get_a_scheme_when_they_lack_one() {
        let given = [" 127.0.0.1:2379".to_owned(), String::new(), "https://h:1".to_owned(), "http://h:2".to_owned()];
        assert_eq!(etcd_endpoints(&given), ["http://127.0.0.1:2379", "https://h:1", "http://h:2"]);
    }

    #[test]
    fn grpc_statuses_count_by_code() {
        let error = op_error(etcd_client::Error::GRpcStatus(tonic::Status::unavailable("leader lost")));
        assert_eq!(error.kind, "Unavailable");
        assert!(error.message.contains("leader lost"), "{}", error.message);
        assert_eq!(op_error(etcd_client::Error::InvalidArgs("x".into())).kind, "InvalidArgument");
        assert_eq!(op_error(etcd_client::Error::WatchError("x".into())).kind, "Etcd");
    }

    #[test]
    fn ephemeral_keys_and_scripts_are_not_offered() {
        let missing: Vec<_> = Workload::ALL.into_iter().filter(|&w| !offers(w)).collect();
        assert_eq!(missing, [Workload::Eput, Workload::Eget, Workload::Script]);
    }

    #[test]
    fn counters_are_decimal_text() {
        assert_eq!(parse_counter(b"0"), Ok(0));
        assert_eq!(parse_counter(b"1234"), Ok(1234));
        assert_eq!(parse_counter(b"x").unwrap_err().kind, "MalformedResponse");
        assert!(parse_counter(&[0xff]).is_err());
        assert_eq!(counter(None), Ok((0, 0)));
    }

    #[tokio::test]
    async fn no_endpoint_is_refused_before_any_network() {
        let error = EtcdDriver::connect(&[" ".to_owned()], Duration::from_secs(1)).await.unwrap_err();
        assert_eq!(error.kind, "InvalidArgument");
    }
}
