//! [`RedisDriver`]: the benchmark operations over the `redis` crate (feature `peers`).
//!
//! put is SET and get is GET. Redis keeps everything in memory with optional persistence,
//! so the ephemeral forms (eput, eget) map to the same commands, and a serializable get is
//! the same GET.

use std::time::Duration;

use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;

use crate::driver::{Driver, Keyspace, OpError, ReadMode};

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

    async fn put(&self, key: &str, value: &[u8], _keyspace: Keyspace) -> Result<(), OpError> {
        let mut connection = self.connection.clone();
        redis::cmd("SET").arg(key).arg(value).query_async::<()>(&mut connection).await.map_err(op_error)
    }

    async fn get(&self, key: &str, _keyspace: Keyspace, _read: ReadMode) -> Result<bool, OpError> {
        let mut connection = self.connection.clone();
        let value: Option<Vec<u8>> = redis::cmd("GET").arg(key).query_async(&mut connection).await.map_err(op_error)?;
        Ok(value.is_some())
    }
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

    #[tokio::test]
    async fn no_endpoint_is_refused_before_any_network() {
        let error = RedisDriver::connect(&[String::new()], Duration::from_secs(1)).await.unwrap_err();
        assert_eq!(error.kind, "InvalidArgument");
    }
}
