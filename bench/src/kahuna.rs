//! [`KahunaDriver`]: the benchmark operations over `kahuna-client`.
//!
//! | workload | calls |
//! |---|---|
//! | put, eput / get, get-serializable, eget | `set` / `get` (persistent or ephemeral) |
//! | lock | `try_lock` (no wait, persistent, 10 s lease), then `unlock`: two calls |
//! | sequence-next, sequence-reserve | `next_sequence`, `reserve_sequence` (sequences made by `create_sequence`) |
//! | script | `eval_sha` of [`SCRIPT`] (loaded by `script_load`); `eval` when a node lacks it |
//! | txn, txn-2p | `begin`; both `get`s together; both `set`s together; `commit` |
//!
//! Writes carry the client's default operation id (sequences: idempotency key), a fresh
//! one per call, so the client retries them safely and the server applies each at most
//! once.

use std::sync::Arc;
use std::time::Duration;

use kahuna_client::{
    Client, Error, GetOptions, LockOptions, OperationId, ScriptArgs, ScriptErrorKind, SequenceOptions, SetOptions,
    UnlockOptions,
};

use crate::args::Workload;
use crate::driver::{Driver, Keyspace, OpError, ReadMode};

/// The script of the script workload: reads `kahuna.args[1]` and writes it back as its
/// value plus one (a missing or non-numeric value counts as 0); returns the new value.
/// The Redis driver runs the same steps in Redis' Lua.
pub const SCRIPT: &str = "local key = kahuna.args[1]
local kv = kahuna.get(key)
local n = (kv and tonumber(kv.value) or 0) + 1
kahuna.set(key, n)
return n";

/// Drives a Kahuna cluster through one [`Client`] (one connection per endpoint, shared
/// by clones).
#[derive(Clone, Debug)]
pub struct KahunaDriver {
    client: Client,
    /// The hash of [`SCRIPT`], as the server names it.
    script_hash: Arc<str>,
}

impl KahunaDriver {
    /// Wraps an existing client.
    pub fn new(client: Client) -> KahunaDriver {
        KahunaDriver { client, script_hash: kahuna_client::script_hash(SCRIPT).into() }
    }

    /// Creates a client for `endpoints` with `timeout` per attempt and default retries,
    /// pipelining single-key calls when `pipeline` says so. Connects lazily: nothing
    /// touches the network until the first operation.
    pub fn connect(
        endpoints: &[String],
        timeout: Duration,
        pipeline: bool,
    ) -> Result<KahunaDriver, kahuna_client::Error> {
        let endpoints = endpoints.iter().map(|e| e.trim()).filter(|e| !e.is_empty());
        Client::builder(endpoints).timeout(timeout).pipeline(pipeline).build().map(KahunaDriver::new)
    }
}

fn op_error(error: Error) -> OpError {
    OpError { kind: error.code().to_owned(), message: error.message().to_owned() }
}

impl Driver for KahunaDriver {
    fn name(&self) -> &'static str {
        "kahuna"
    }

    fn supports(&self, _workload: Workload) -> bool {
        true
    }

    async fn put(&self, key: &str, value: &[u8], keyspace: Keyspace) -> Result<(), OpError> {
        let options = match keyspace {
            Keyspace::Persistent => SetOptions::new(),
            Keyspace::Ephemeral => SetOptions::new().ephemeral(),
        };
        self.client.set(key, value, options).await.map(|_| ()).map_err(op_error)
    }

    async fn get(&self, key: &str, keyspace: Keyspace, read: ReadMode) -> Result<bool, OpError> {
        let mut options = GetOptions::new();
        if keyspace == Keyspace::Ephemeral {
            options = options.ephemeral();
        }
        if read == ReadMode::Serializable {
            options = options.serializable();
        }
        self.client.get(key, options).await.map(|got| got.kv.is_some()).map_err(op_error)
    }

    /// The partitions the serving node reports.
    async fn partitions(&self) -> Result<Option<u32>, OpError> {
        let status = self.client.status().await.map_err(op_error)?;
        let count = u32::try_from(status.partitions.len()).unwrap_or(u32::MAX);
        if count == 0 {
            return Err(OpError { kind: "MalformedResponse".into(), message: "the node reports no partition".into() });
        }
        Ok(Some(count))
    }

    async fn try_lock(&self, name: &str, owner: &str, lease_ms: u64) -> Result<bool, OpError> {
        self.client.try_lock(name, owner, lease_ms, LockOptions::new()).await.map(|r| r.acquired).map_err(op_error)
    }

    async fn unlock(&self, name: &str, owner: &str) -> Result<(), OpError> {
        self.client.unlock(name, owner, UnlockOptions::default()).await.map(|_| ()).map_err(op_error)
    }

    async fn create_sequence(&self, name: &str) -> Result<(), OpError> {
        self.client.create_sequence(name, SequenceOptions::new()).await.map(|_| ()).map_err(op_error)
    }

    async fn next_sequence(&self, name: &str) -> Result<(), OpError> {
        self.client.next_sequence(name, OperationId::Auto).await.map(|_| ()).map_err(op_error)
    }

    async fn reserve_sequence(&self, name: &str, count: u64) -> Result<(), OpError> {
        self.client.reserve_sequence(name, count, OperationId::Auto).await.map(|_| ()).map_err(op_error)
    }

    /// Loads [`SCRIPT`] on the current endpoint's node; fails when the hash the node
    /// gives differs from the client's.
    async fn load_script(&self) -> Result<(), OpError> {
        let hash = self.client.script_load(SCRIPT).await.map_err(op_error)?;
        if *hash != *self.script_hash {
            return Err(OpError {
                kind: "MalformedResponse".into(),
                message: format!("the node names the script {hash}, the client {}", self.script_hash),
            });
        }
        Ok(())
    }

    /// Runs [`SCRIPT`] by hash; a node that does not have it cached (another node after a
    /// failover, or an evicted entry) gets the text once, which caches it again.
    async fn run_script(&self, key: &str) -> Result<(), OpError> {
        let args = ScriptArgs::new().arg(key).route_by(key);
        match self.client.eval_sha(&self.script_hash, &args).await {
            Err(Error::Script { kind: ScriptErrorKind::NotLoaded, .. }) => {
                self.client.eval(SCRIPT, &args).await.map(|_| ()).map_err(op_error)
            }
            other => other.map(|_| ()).map_err(op_error),
        }
    }

    /// `begin`; the two reads sent together; the two writes sent together; `commit`: four
    /// round trips. A conflict at commit is [`OpError::conflict`]; the transaction is not
    /// retried.
    /// A failure before the commit drops the transaction, which rolls it back.
    async fn txn(&self, a: &str, b: &str, value: &[u8]) -> Result<(), OpError> {
        let txn = self.client.begin(None).await.map_err(op_error)?;
        tokio::try_join!(txn.get(a, GetOptions::new()), txn.get(b, GetOptions::new())).map_err(op_error)?;
        tokio::try_join!(txn.set(a, value, SetOptions::new()), txn.set(b, value, SetOptions::new()))
            .map_err(op_error)?;
        // Error::Conflict keeps its code, which is the kind OpError::conflict gives.
        txn.commit().await.map(|_| ()).map_err(op_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::CONFLICT;

    #[test]
    fn conflicts_keep_their_kind() {
        assert_eq!(op_error(Error::Conflict("changed".into())).kind, CONFLICT);
        assert_eq!(OpError::conflict("changed").kind, CONFLICT);
    }

    #[tokio::test]
    async fn the_script_hash_is_the_servers_sha256() {
        let driver = KahunaDriver::connect(&["127.0.0.1:1".to_owned()], Duration::from_secs(1), false).unwrap();
        assert_eq!(&*driver.script_hash, kahuna_client::script_hash(SCRIPT));
        assert_eq!(driver.script_hash.len(), 64);
        assert!(Workload::ALL.iter().all(|&w| driver.supports(w)));
    }
}
