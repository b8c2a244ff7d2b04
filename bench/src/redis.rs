//! [`RedisDriver`]: the benchmark operations over the `redis` crate (feature `peers`).
//!
//! | workload | commands |
//! |---|---|
//! | put, eput / get, get-serializable, eget | SET / GET |
//! | lock | `SET name owner NX PX lease`, then DEL when it was set |
//! | sequence-next / sequence-reserve | INCR / INCRBY count (counters made by `SET name 0 NX`) |
//! | script | EVALSHA of [`SCRIPT`] (loaded by SCRIPT LOAD; EVAL when the server lost it) |
//!
//! Redis keeps everything in memory with optional persistence, so the ephemeral forms
//! (eput, eget) map to the same commands, and a serializable get is the same GET. Its lock
//! is the single-instance pattern from the SET documentation: no fencing token, and DEL
//! frees the lock whoever holds it (the owner check needs a script), so it does less than
//! Kahuna's and etcd's. The transactions (txn, txn-2p) are unsupported: WATCH/MULTI/EXEC
//! binds its state to a connection, which the clients share here, and a Lua script is not
//! an interactive transaction.

use std::sync::LazyLock;
use std::time::Duration;

use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;

use crate::args::Workload;
use crate::driver::{Driver, Keyspace, OpError, ReadMode};

/// The script of the script workload, as Kahuna's (`kahuna_bench::KAHUNA_SCRIPT`) in
/// Redis' Lua: reads `KEYS[1]` and writes it back as its value plus one (a missing or
/// non-numeric value counts as 0); returns the new value.
pub const SCRIPT: &str = "local n = (tonumber(redis.call('GET', KEYS[1])) or 0) + 1
redis.call('SET', KEYS[1], n)
return n";

/// [`SCRIPT`] with its SHA-1, hashed once.
static LOADED: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(SCRIPT));

/// Drives one Redis server through one multiplexed connection, shared by clones (their
/// commands are pipelined on it).
#[derive(Clone)]
pub struct RedisDriver {
    connection: MultiplexedConnection,
}

impl std::fmt::Debug for RedisDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisDriver").finish_non_exhaustive()
    }
}

impl RedisDriver {
    /// Connects to the first of `endpoints` (`host:port` or a `redis://` URL) with `timeout`
    /// per command and for the connection. Redis has one server, so the others are unused.
    pub async fn connect(endpoints: &[String], timeout: Duration) -> Result<RedisDriver, OpError> {
        let url = redis_url(endpoints)
            .ok_or_else(|| OpError { kind: "InvalidArgument".into(), message: "no Redis endpoint".into() })?;
        let client = redis::Client::open(url).map_err(op_error)?;
        let config =
            AsyncConnectionConfig::new().set_connection_timeout(Some(timeout)).set_response_timeout(Some(timeout));
        let connection = client.get_multiplexed_async_connection_with_config(&config).await.map_err(op_error)?;
        Ok(RedisDriver { connection })
    }
}

/// The URL of the first non-empty endpoint, `redis://` added when no scheme is given.
fn redis_url(endpoints: &[String]) -> Option<String> {
    let endpoint = endpoints.iter().map(|e| e.trim()).find(|e| !e.is_empty())?;
    Some(if endpoint.contains("://") { endpoint.to_owned() } else { format!("redis://{endpoint}") })
}

/// A stable kind: `Timeout`, the server's error code, or the client's error kind.
fn op_error(error: redis::RedisError) -> OpError {
    let kind = if error.is_timeout() {
        "Timeout".to_owned()
    } else if let Some(code) = error.code() {
        code.to_owned()
    } else {
        format!("{:?}", error.kind())
    };
    OpError { kind, message: error.to_string() }
}

impl Driver for RedisDriver {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn supports(&self, workload: Workload) -> bool {
        offers(workload)
    }

    async fn put(&self, key: &str, value: &[u8], _keyspace: Keyspace) -> Result<(), OpError> {
        let mut connection = self.connection.clone();
        redis::cmd("SET").arg(key).arg(value).query_async::<()>(&mut connection).await.map_err(op_error)
    }

    async fn get(&self, key: &str, _keyspace: Keyspace, _read: ReadMode) -> Result<bool, OpError> {
        let mut connection = self.connection.clone();
        let value: Option<Vec<u8>> = redis::cmd("GET").arg(key).query_async(&mut connection).await.map_err(op_error)?;
        Ok(value.is_some())
    }

    async fn try_lock(&self, name: &str, owner: &str, lease_ms: u64) -> Result<bool, OpError> {
        let mut connection = self.connection.clone();
        let set: Option<String> = redis::cmd("SET")
            .arg(name)
            .arg(owner)
            .arg("NX")
            .arg("PX")
            .arg(lease_ms)
            .query_async(&mut connection)
            .await
            .map_err(op_error)?;
        Ok(set.is_some())
    }

    /// DEL, without checking the owner (see the module notes).
    async fn unlock(&self, name: &str, _owner: &str) -> Result<(), OpError> {
        let mut connection = self.connection.clone();
        redis::cmd("DEL").arg(name).query_async::<()>(&mut connection).await.map_err(op_error)
    }

    async fn create_sequence(&self, name: &str) -> Result<(), OpError> {
        let mut connection = self.connection.clone();
        redis::cmd("SET").arg(name).arg(0).arg("NX").query_async::<()>(&mut connection).await.map_err(op_error)
    }

    async fn next_sequence(&self, name: &str) -> Result<(), OpError> {
        let mut connection = self.connection.clone();
        redis::cmd("INCR").arg(name).query_async::<i64>(&mut connection).await.map(|_| ()).map_err(op_error)
    }

    async fn reserve_sequence(&self, name: &str, count: u64) -> Result<(), OpError> {
        let mut connection = self.connection.clone();
        let command = redis::cmd("INCRBY").arg(name).arg(count).query_async::<i64>(&mut connection).await;
        command.map(|_| ()).map_err(op_error)
    }

    /// SCRIPT LOAD, checking that the server names the script as the client does.
    async fn load_script(&self) -> Result<(), OpError> {
        let mut connection = self.connection.clone();
        let hash = LOADED.load_async(&mut connection).await.map_err(op_error)?;
        if hash != LOADED.get_hash() {
            return Err(OpError {
                kind: "MalformedResponse".into(),
                message: format!("the server names the script {hash}, the client {}", LOADED.get_hash()),
            });
        }
        Ok(())
    }

    /// EVALSHA; on NOSCRIPT the crate loads the script and runs it again.
    async fn run_script(&self, key: &str) -> Result<(), OpError> {
        let mut connection = self.connection.clone();
        LOADED.key(key).invoke_async::<i64>(&mut connection).await.map(|_| ()).map_err(op_error)
    }
}

/// Whether Redis has a faithful equivalent of `workload`.
fn offers(workload: Workload) -> bool {
    !matches!(workload, Workload::Txn | Workload::Txn2p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_endpoint_becomes_a_url() {
        let given = [" ".to_owned(), "127.0.0.1:6379".to_owned(), "127.0.0.1:6380".to_owned()];
        assert_eq!(redis_url(&given).as_deref(), Some("redis://127.0.0.1:6379"));
        assert_eq!(redis_url(&["redis://h:1/2".to_owned()]).as_deref(), Some("redis://h:1/2"));
        assert_eq!(redis_url(&[String::new()]), None);
    }

    #[test]
    fn errors_count_by_kind() {
        let io = redis::RedisError::from(std::io::Error::new(std::io::ErrorKind::TimedOut, "slow"));
        assert_eq!(op_error(io).kind, "Timeout");
        let refused = redis::RedisError::from(std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "no"));
        assert!(!op_error(refused).kind.is_empty());
    }

    #[test]
    fn transactions_are_not_offered() {
        let missing: Vec<_> = Workload::ALL.into_iter().filter(|&w| !offers(w)).collect();
        assert_eq!(missing, [Workload::Txn, Workload::Txn2p]);
        assert_eq!(LOADED.get_hash().len(), 40);
    }

    #[tokio::test]
    async fn no_endpoint_is_refused_before_any_network() {
        let error = RedisDriver::connect(&[String::new()], Duration::from_secs(1)).await.unwrap_err();
        assert_eq!(error.kind, "InvalidArgument");
    }
}
