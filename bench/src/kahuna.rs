//! [`KahunaDriver`]: the benchmark operations over `kahuna-client`.

use std::time::Duration;

use kahuna_client::{Client, GetOptions, SetOptions};

use crate::driver::{Driver, Keyspace, OpError, ReadMode};

/// Drives a Kahuna cluster through one [`Client`] (one connection per endpoint, shared
/// by clones).
///
/// Writes carry the client's default operation id, a fresh one per call, so the client
/// retries them safely and the server applies each at most once.
#[derive(Clone, Debug)]
pub struct KahunaDriver {
    client: Client,
}

impl KahunaDriver {
    /// Wraps an existing client.
    pub fn new(client: Client) -> KahunaDriver {
        KahunaDriver { client }
    }

    /// Creates a client for `endpoints` with `timeout` per attempt and default retries.
    /// Connects lazily: nothing touches the network until the first operation.
    pub fn connect(endpoints: &[String], timeout: Duration) -> Result<KahunaDriver, kahuna_client::Error> {
        let endpoints = endpoints.iter().map(|e| e.trim()).filter(|e| !e.is_empty());
        Client::builder(endpoints).timeout(timeout).build().map(KahunaDriver::new)
    }
}

fn op_error(error: kahuna_client::Error) -> OpError {
    OpError { kind: error.code().to_owned(), message: error.message().to_owned() }
}

impl Driver for KahunaDriver {
    fn name(&self) -> &'static str {
        "kahuna"
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
}
