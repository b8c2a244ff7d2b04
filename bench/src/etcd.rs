//! [`EtcdDriver`]: the benchmark operations over `etcd-client` (feature `peers`).
//!
//! put is a Put, get a linearizable Range, get-serializable a serializable Range. etcd has
//! no ephemeral keyspace, so eput and eget are `Unsupported`.

use std::time::Duration;

use etcd_client::{Client, ConnectOptions, GetOptions, KvClient};

use crate::driver::{Driver, Keyspace, OpError, ReadMode};

/// Drives an etcd cluster through one [`Client`] (one balanced gRPC channel over the
/// endpoints, shared by clones).
#[derive(Clone)]
pub struct EtcdDriver {
    kv: KvClient,
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
        Ok(EtcdDriver { kv: client.kv_client() })
    }
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

    async fn put(&self, key: &str, value: &[u8], keyspace: Keyspace) -> Result<(), OpError> {
        if keyspace == Keyspace::Ephemeral {
            return Err(OpError::unsupported("an ephemeral put"));
        }
        // KvClient methods take `&mut self`; a clone shares the channel.
        let mut kv = self.kv.clone();
        kv.put(key, value, None).await.map(|_| ()).map_err(op_error)
    }

    async fn get(&self, key: &str, keyspace: Keyspace, read: ReadMode) -> Result<bool, OpError> {
        if keyspace == Keyspace::Ephemeral {
            return Err(OpError::unsupported("an ephemeral get"));
        }
        let options = match read {
            ReadMode::Linearizable => None,
            ReadMode::Serializable => Some(GetOptions::new().with_serializable()),
        };
        let mut kv = self.kv.clone();
        kv.get(key, options).await.map(|response| !response.kvs().is_empty()).map_err(op_error)
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

    #[tokio::test]
    async fn no_endpoint_is_refused_before_any_network() {
        let error = EtcdDriver::connect(&[" ".to_owned()], Duration::from_secs(1)).await.unwrap_err();
        assert_eq!(error.kind, "InvalidArgument");
    }
}
