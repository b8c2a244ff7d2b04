//! The seam between the load generator and a system under test.

use std::future::{Future, ready};

use crate::args::Workload;

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

/// The kind of [`OpError::unsupported`].
pub const UNSUPPORTED: &str = "Unsupported";
/// The kind of [`OpError::conflict`].
pub const CONFLICT: &str = "Conflict";

impl OpError {
    /// `what` (say "a transaction") is not offered by `system`: the message reads
    /// "a transaction is not supported by redis".
    pub fn unsupported(system: &str, what: &str) -> OpError {
        OpError { kind: UNSUPPORTED.into(), message: format!("{what} is not supported by {system}") }
    }

    /// An optimistic write found that what it read had changed meanwhile; nothing was
    /// written.
    pub fn conflict(message: impl Into<String>) -> OpError {
        OpError { kind: CONFLICT.into(), message: message.into() }
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
/// must share the connection and be cheap. Each method is one operation of the
/// benchmark: usually one request, but a lock cycle is two, and a transaction or a
/// compare-and-swap loop as many as the system needs (each method says). Retries the
/// driver's client makes on its own count as part of that operation's latency, and an
/// operation is an error only when the driver gives up.
///
/// Every method beyond put and get has a default body returning
/// [`OpError::unsupported`], so a driver offers only what has a faithful equivalent in
/// its system; [`Driver::supports`] tells the runner beforehand, so an unsupported run
/// stops before its preload. Adding a workload adds such a method.
pub trait Driver: Clone + Send + Sync + 'static {
    /// Short name used in reports (`kahuna`, `etcd`, `redis`).
    fn name(&self) -> &'static str;

    /// Whether this system offers `workload`. A run of a workload it does not offer stops
    /// at once with "the `WORKLOAD` workload is not supported by `SYSTEM`".
    fn supports(&self, workload: Workload) -> bool;

    /// Writes `value` under `key` unconditionally.
    fn put(&self, key: &str, value: &[u8], keyspace: Keyspace) -> impl Future<Output = Result<(), OpError>> + Send;

    /// Reads `key`; returns whether it exists.
    fn get(&self, key: &str, keyspace: Keyspace, read: ReadMode) -> impl Future<Output = Result<bool, OpError>> + Send;

    /// The number of partitions keys are spread over, which decides what "two keys in one
    /// partition" means; `None` for a system with one replicated log for all keys (the
    /// benchmark then routes keys as a Kahuna cluster of the default size would, so every
    /// system gets the same key pairs).
    fn partitions(&self) -> impl Future<Output = Result<Option<u32>, OpError>> + Send {
        ready(Ok(None))
    }

    /// Takes lock `name` for `owner` with a lease of `lease_ms`, without waiting; returns
    /// whether it was taken (false: someone else holds it).
    fn try_lock(&self, name: &str, owner: &str, lease_ms: u64) -> impl Future<Output = Result<bool, OpError>> + Send {
        let _ = (name, owner, lease_ms);
        ready(Err(OpError::unsupported(self.name(), "a lock")))
    }

    /// Frees lock `name` that `owner` took with [`Driver::try_lock`].
    fn unlock(&self, name: &str, owner: &str) -> impl Future<Output = Result<(), OpError>> + Send {
        let _ = (name, owner);
        ready(Err(OpError::unsupported(self.name(), "a lock")))
    }

    /// Creates sequence `name` counting 1, 2, 3... when it does not exist yet (setup, not
    /// measured).
    fn create_sequence(&self, name: &str) -> impl Future<Output = Result<(), OpError>> + Send {
        let _ = name;
        ready(Err(OpError::unsupported(self.name(), "a sequence")))
    }

    /// Takes the next value of sequence `name`.
    fn next_sequence(&self, name: &str) -> impl Future<Output = Result<(), OpError>> + Send {
        let _ = name;
        ready(Err(OpError::unsupported(self.name(), "a sequence")))
    }

    /// Takes the next `count` values of sequence `name` as one range.
    fn reserve_sequence(&self, name: &str, count: u64) -> impl Future<Output = Result<(), OpError>> + Send {
        let _ = (name, count);
        ready(Err(OpError::unsupported(self.name(), "a sequence")))
    }

    /// Caches the benchmark script on the server this driver talks to (setup, not
    /// measured), so that [`Driver::run_script`] can name it by hash.
    fn load_script(&self) -> impl Future<Output = Result<(), OpError>> + Send {
        ready(Err(OpError::unsupported(self.name(), "a Lua script")))
    }

    /// Runs the benchmark script by its hash on `key`: read the key, write it back as
    /// its value plus one (a missing or non-numeric value counts as 0), atomically.
    fn run_script(&self, key: &str) -> impl Future<Output = Result<(), OpError>> + Send {
        let _ = key;
        ready(Err(OpError::unsupported(self.name(), "a Lua script")))
    }

    /// Reads `a` and `b`, then writes `value` to both, committing only when neither
    /// changed since the read; when one did, nothing is written and the result is an
    /// [`OpError::conflict`] (counted as an error, not retried).
    fn txn(&self, a: &str, b: &str, value: &[u8]) -> impl Future<Output = Result<(), OpError>> + Send {
        let _ = (a, b, value);
        ready(Err(OpError::unsupported(self.name(), "an interactive transaction")))
    }
}
