//! The seam between the load generator and a system under test.

use std::future::Future;

/// Which keyspace an operation uses. Systems without an ephemeral keyspace answer
/// ephemeral operations with an [`OpError`] of kind `Unsupported`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keyspace {
    /// Replicated and fsynced before the reply.
    Persistent,
    /// Held in memory by the leader only.
    Ephemeral,
}

/// Freshness of a read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadMode {
    /// Sees every write acknowledged before the read began.
    Linearizable,
    /// May be served by any replica, possibly stale.
    Serializable,
}

/// A failed operation: a stable short kind for counting (`Unavailable`, `Timeout`, ...)
/// and a message for people.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpError {
    /// Stable short name of the failure; the summary counts errors by it.
    pub kind: String,
    /// Detail.
    pub message: String,
}

impl OpError {
    /// An operation this system does not offer.
    pub fn unsupported(what: &str) -> OpError {
        OpError { kind: "Unsupported".into(), message: format!("{what} is not supported by this system") }
    }
}

impl std::fmt::Display for OpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl std::error::Error for OpError {}

/// One system under test, as the benchmark clients see it.
///
/// A driver value stands for one connection (or client object); the runner makes
/// `--conns` of them and hands each client task a clone of one, round-robin, so clones
/// must share the connection and be cheap. Each operation is one request; retries the
/// driver's client makes on its own count as part of that operation's latency, and an
/// operation is an error only when the driver gives up.
///
/// Adding a workload adds a method here with a default body returning
/// [`OpError::unsupported`], so drivers that lack it still compile.
pub trait Driver: Clone + Send + Sync + 'static {
    /// Short name used in reports (`kahuna`, `etcd`, `redis`).
    fn name(&self) -> &'static str;

    /// Writes `value` under `key` unconditionally.
    fn put(&self, key: &str, value: &[u8], keyspace: Keyspace) -> impl Future<Output = Result<(), OpError>> + Send;

    /// Reads `key`; returns whether it exists.
    fn get(&self, key: &str, keyspace: Keyspace, read: ReadMode) -> impl Future<Output = Result<bool, OpError>> + Send;
}
