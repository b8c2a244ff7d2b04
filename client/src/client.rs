//! [`Client`]: the KeyValue and Cluster calls over a [`Pool`] of endpoints.

use std::sync::Arc;
use std::time::Duration;

use kahuna_proto::MAX_MESSAGE_BYTES;
use kahuna_proto::v1;
use kahuna_proto::v1::cluster_client::ClusterClient;
use tonic::transport::Channel;

use crate::connection::{Config, OnRetry, Pool, RETRIES_MAX, RetryEvent, request};
use crate::error::Error;
use crate::options::{
    DeleteItem, DeleteOptions, ExtendOptions, GetOptions, ReadOptions, ScanOptions, SetItem, SetOptions,
};
use crate::pipeline::kv_client;
use crate::routes::Route;
use crate::types::{
    Batch, ClusterStatus, DeleteResult, ExistsResult, ExtendResult, GetResult, Items, NodeInfo, PartitionStatus,
    SetResult, key_value_from_proto, positive, revision,
};

/// Largest page a scan may ask for (the server's maximum).
pub const SCAN_PAGE_LIMIT_MAX: u32 = 10_000;
/// Most items [`Client::scan_all`] collects before giving up; page with [`Client::scan`]
/// beyond that.
pub const SCAN_ALL_ITEMS_MAX: usize = 1_000_000;
/// Longest per-attempt timeout a client may be configured with.
pub const TIMEOUT_MS_MAX: u64 = 600_000;

/// Configures and creates a [`Client`].
#[derive(Clone, Debug)]
pub struct ClientBuilder {
    endpoints: Vec<String>,
    config: Config,
}

impl ClientBuilder {
    /// Starts a client for these endpoints (`host:port` or `http://host:port`), tried in
    /// this order.
    pub fn new(endpoints: impl IntoIterator<Item = impl Into<String>>) -> ClientBuilder {
        ClientBuilder { endpoints: endpoints.into_iter().map(Into::into).collect(), config: Config::default() }
    }

    /// Sets the budget of one attempt of a call, also sent as the gRPC deadline
    /// (default [`TIMEOUT_MS_DEFAULT`](crate::TIMEOUT_MS_DEFAULT) ms).
    pub fn timeout(mut self, timeout: Duration) -> ClientBuilder {
        self.config.timeout = timeout;
        self
    }

    /// Sets the budget for opening a connection to one endpoint
    /// (default [`CONNECT_TIMEOUT_MS_DEFAULT`](crate::CONNECT_TIMEOUT_MS_DEFAULT) ms).
    pub fn connect_timeout(mut self, timeout: Duration) -> ClientBuilder {
        self.config.connect_timeout = timeout;
        self
    }

    /// Sets how many times a safe call is retried after its first attempt
    /// (default [`RETRIES_DEFAULT`](crate::RETRIES_DEFAULT), at most [`RETRIES_MAX`]).
    pub fn retries(mut self, retries: u32) -> ClientBuilder {
        self.config.retries = retries;
        self
    }

    /// Sets a function told of every retry, before its pause: which attempt comes next,
    /// the endpoint that failed and why, the endpoint tried next and the backoff (see
    /// [`RetryEvent`]). For showing a lost connection as it happens, where the error a
    /// call returns comes only after its last attempt.
    ///
    /// It runs inside the call, on the task that made it: it should return quickly and
    /// must not block. It is not told of the client's own background calls (reading the
    /// cluster's status to learn partition leaders). Without it (the default), retrying
    /// costs nothing extra.
    pub fn on_retry(mut self, hook: impl Fn(&RetryEvent<'_>) + Send + Sync + 'static) -> ClientBuilder {
        self.config.on_retry = Some(OnRetry(Arc::new(hook)));
        self
    }

    /// Sends the single-key KeyValue calls (set, get, exists, delete, extend) of all the
    /// client's clones over one stream per endpoint (the KeyValue.Pipeline call), as many
    /// to a message as are in flight, instead of one HTTP/2 stream per call. With many
    /// concurrent calls that costs both sides much less CPU per call; with one call at a
    /// time it adds a hop through the stream's tasks. Answers, errors, timeouts, retries
    /// and failover are the same either way. Default off.
    pub fn pipeline(mut self, on: bool) -> ClientBuilder {
        self.config.pipeline = on;
        self
    }

    /// Creates the client. Nothing is connected yet: each endpoint connects on first use.
    ///
    /// Must be called inside a tokio runtime; fails with `InvalidInput` outside one, for
    /// bad endpoints, and for settings outside their limits.
    pub fn build(self) -> Result<Client, Error> {
        let timeout_ms = self.config.timeout.as_millis();
        if timeout_ms == 0 || timeout_ms > u128::from(TIMEOUT_MS_MAX) {
            return Err(Error::InvalidInput(format!("timeout is {timeout_ms} ms, must be 1 to {TIMEOUT_MS_MAX} ms")));
        }
        if self.config.connect_timeout.is_zero() {
            return Err(Error::InvalidInput("connect timeout must not be zero".into()));
        }
        if self.config.retries > RETRIES_MAX {
            return Err(Error::InvalidInput(format!(
                "{} retries asked, at most {RETRIES_MAX} allowed",
                self.config.retries
            )));
        }
        let pool = Pool::new(self.endpoints, self.config)?;
        Ok(Client { pool: Arc::new(pool) })
    }
}

/// A Kahuna client: the KeyValue calls and the cluster status, over several endpoints
/// with failover and safe retries. Cheap to clone; clones share connections.
#[derive(Clone, Debug)]
pub struct Client {
    pub(crate) pool: Arc<Pool>,
}

impl Client {
    /// Creates a client with default settings; see [`ClientBuilder::build`].
    pub fn connect(endpoints: impl IntoIterator<Item = impl Into<String>>) -> Result<Client, Error> {
        ClientBuilder::new(endpoints).build()
    }

    /// Starts configuring a client.
    pub fn builder(endpoints: impl IntoIterator<Item = impl Into<String>>) -> ClientBuilder {
        ClientBuilder::new(endpoints)
    }

    /// Returns the normalised endpoint URIs in failover order.
    pub fn endpoints(&self) -> Vec<String> {
        self.pool.endpoints()
    }

    /// Returns the URI of the endpoint the next call goes to first.
    pub fn current_endpoint(&self) -> &str {
        self.pool.current_endpoint()
    }

    /// Returns the per-attempt timeout.
    pub fn timeout(&self) -> Duration {
        self.pool.config().timeout
    }

    /// Writes `value` under `key` if the conditions in `options` hold.
    ///
    /// A failed condition is not an error: the result has `modified == false`.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future may leave the write applied or not: the request may already be
    /// at the server. Repeat it with the same [`OperationId::Given`](crate::OperationId)
    /// id to settle the outcome without applying it twice.
    pub async fn set(
        &self,
        key: impl Into<String>,
        value: impl Into<Vec<u8>>,
        options: SetOptions,
    ) -> Result<SetResult, Error> {
        let message = set_request(key.into(), value.into(), &options)?;
        let retry_safe = !message.operation_id.is_empty();
        let routed = message.key.clone();
        let response = self
            .pool
            .call_routed(Route::Key(&routed), "Set", retry_safe, move |link, timeout| {
                let message = message.clone();
                async move { link.key_value(message, timeout).await }
            })
            .await?;
        Ok(set_result(response))
    }

    /// Reads `key`: the latest version, or the one `at_revision` / `as_of` names.
    ///
    /// A compacted history point is [`Error::Compacted`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a dropped read changes nothing.
    pub async fn get(&self, key: impl Into<String>, options: GetOptions) -> Result<GetResult, Error> {
        if options.at_revision.is_some() && options.as_of.is_some() {
            return Err(Error::InvalidInput("at revision and as of exclude each other".into()));
        }
        let message = v1::GetRequest {
            key: key.into(),
            durability: options.durability.to_proto(),
            consistency: options.consistency.to_proto(),
            at_revision: options.at_revision,
            as_of: options.as_of,
        };
        let routed = message.key.clone();
        let response = self
            .pool
            .call_routed(Route::Key(&routed), "Get", true, move |link, timeout| {
                let message = message.clone();
                async move { link.key_value(message, timeout).await }
            })
            .await?;
        Ok(get_result(response))
    }

    /// Tells whether `key` exists.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a dropped read changes nothing.
    pub async fn exists(&self, key: impl Into<String>, options: ReadOptions) -> Result<ExistsResult, Error> {
        let message = v1::ExistsRequest {
            key: key.into(),
            durability: options.durability.to_proto(),
            consistency: options.consistency.to_proto(),
        };
        let routed = message.key.clone();
        let response = self
            .pool
            .call_routed(Route::Key(&routed), "Exists", true, move |link, timeout| {
                let message = message.clone();
                async move { link.key_value(message, timeout).await }
            })
            .await?;
        Ok(ExistsResult { exists: response.exists, served_by: response.served_by })
    }

    /// Deletes `key` if the compares in `options` hold, leaving a tombstone revision.
    ///
    /// An absent key or a failed compare is not an error: the result has
    /// `deleted == false`.
    ///
    /// # Cancel safety
    ///
    /// As for [`Client::set`]: a dropped future may leave the delete applied or not.
    pub async fn delete(&self, key: impl Into<String>, options: DeleteOptions) -> Result<DeleteResult, Error> {
        let message = delete_request(key.into(), &options);
        let retry_safe = !message.operation_id.is_empty();
        let routed = message.key.clone();
        let response = self
            .pool
            .call_routed(Route::Key(&routed), "Delete", retry_safe, move |link, timeout| {
                let message = message.clone();
                async move { link.key_value(message, timeout).await }
            })
            .await?;
        Ok(delete_result(response))
    }

    /// Sets the expiry of `key` to `ttl_ms` after the commit; 0 removes the expiry.
    /// Changes no revision. `options` may be a bare [`Durability`](crate::Durability).
    ///
    /// # Cancel safety
    ///
    /// As for [`Client::set`]: a dropped future may leave the extend applied or not.
    pub async fn extend(
        &self,
        key: impl Into<String>,
        ttl_ms: u64,
        options: impl Into<ExtendOptions>,
    ) -> Result<ExtendResult, Error> {
        let options = options.into();
        let message = v1::ExtendRequest {
            key: key.into(),
            ttl_ms: ttl_to_proto(Some(ttl_ms))?,
            durability: options.durability.to_proto(),
            operation_id: options.operation_id.resolve(),
        };
        let retry_safe = !message.operation_id.is_empty();
        let routed = message.key.clone();
        let response = self
            .pool
            .call_routed(Route::Key(&routed), "Extend", retry_safe, move |link, timeout| {
                let message = message.clone();
                async move { link.key_value(message, timeout).await }
            })
            .await?;
        Ok(ExtendResult {
            extended: response.extended,
            expires_at_ms: positive(response.expires_at_ms),
            commit_ts: response.commit_ts,
            served_by: response.served_by,
        })
    }

    /// Reads every key of `bucket` (keys whose text before the last `/` is `bucket`)
    /// consistently from its one partition, sorted by key.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a dropped read changes nothing.
    pub async fn get_by_bucket(&self, bucket: impl Into<String>, options: ReadOptions) -> Result<Items, Error> {
        let message = v1::GetByBucketRequest {
            bucket: bucket.into(),
            durability: options.durability.to_proto(),
            consistency: options.consistency.to_proto(),
        };
        let routed = message.bucket.clone();
        let response = self
            .pool
            .call_routed(Route::Bucket(&routed), "GetByBucket", true, move |link, timeout| {
                let message = message.clone();
                async move { kv_client(link.channel).get_by_bucket(request(message, timeout)).await }
            })
            .await?;
        Ok(Items {
            items: response.items.into_iter().map(|kv| key_value_from_proto!(kv)).collect(),
            next_cursor: None,
            served_by: response.served_by,
        })
    }

    /// Reads one page of the keys starting with `prefix`, sorted by key. A page is never
    /// silently capped: `next_cursor` is `Some` while more keys remain.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a dropped read changes nothing.
    pub async fn scan(&self, prefix: impl Into<String>, options: ScanOptions) -> Result<Items, Error> {
        let limit = options.limit.unwrap_or(0);
        if limit > SCAN_PAGE_LIMIT_MAX {
            return Err(Error::InvalidInput(format!("scan limit {limit} is above the maximum {SCAN_PAGE_LIMIT_MAX}")));
        }
        let message = v1::ScanRequest {
            prefix: prefix.into(),
            limit,
            cursor: options.cursor.unwrap_or_default(),
            durability: options.read.durability.to_proto(),
            consistency: options.read.consistency.to_proto(),
        };
        let response = self
            .pool
            .call("Scan", true, move |link, timeout| {
                let message = message.clone();
                async move { kv_client(link.channel).scan(request(message, timeout)).await }
            })
            .await?;
        Ok(Items {
            items: response.items.into_iter().map(|kv| key_value_from_proto!(kv)).collect(),
            next_cursor: Some(response.next_cursor).filter(|cursor| !cursor.is_empty()),
            served_by: response.served_by,
        })
    }

    /// Reads every key starting with `prefix` by following cursors from
    /// `options.cursor`, `options.limit` keys per page. Each page is its own read, so the
    /// whole is not one snapshot. Fails with `InvalidInput` beyond
    /// [`SCAN_ALL_ITEMS_MAX`] keys.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a dropped read changes nothing; the pages read so far are lost.
    pub async fn scan_all(&self, prefix: impl Into<String>, options: ScanOptions) -> Result<Items, Error> {
        let prefix = prefix.into();
        let mut page_options = options;
        let mut all = Items { items: Vec::new(), next_cursor: None, served_by: 0 };
        loop {
            let page = self.scan(prefix.clone(), page_options.clone()).await?;
            all.items.extend(page.items);
            all.served_by = page.served_by;
            if all.items.len() > SCAN_ALL_ITEMS_MAX {
                return Err(Error::InvalidInput(format!(
                    "more than {SCAN_ALL_ITEMS_MAX} keys start with {prefix:?}; page with scan"
                )));
            }
            match page.next_cursor {
                None => return Ok(all),
                Some(cursor) if page_options.cursor.as_ref() == Some(&cursor) => {
                    return Err(Error::Other {
                        code: "MalformedResponse".into(),
                        message: format!("scan of {prefix:?} returned its own cursor again"),
                    });
                }
                Some(cursor) => page_options.cursor = Some(cursor),
            }
        }
    }

    /// Writes several keys, atomically per partition (not across partitions). Results come
    /// in request order. Retried only when every item carries an operation id.
    ///
    /// # Cancel safety
    ///
    /// As for [`Client::set`]: a dropped future may leave any subset of the partitions'
    /// writes applied.
    pub async fn set_many(&self, items: impl IntoIterator<Item = SetItem>) -> Result<Batch<SetResult>, Error> {
        let items = items
            .into_iter()
            .map(|item| set_request(item.key, item.value, &item.options))
            .collect::<Result<Vec<_>, Error>>()?;
        let retry_safe = items.iter().all(|item| !item.operation_id.is_empty());
        let message = v1::SetManyRequest { items };
        let response = self
            .pool
            .call("SetMany", retry_safe, move |link, timeout| {
                let message = message.clone();
                async move { kv_client(link.channel).set_many(request(message, timeout)).await }
            })
            .await?;
        Ok(Batch { results: response.results.into_iter().map(set_result).collect(), served_by: response.served_by })
    }

    /// Reads several keys; results come in request order.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a dropped read changes nothing.
    pub async fn get_many(
        &self,
        keys: impl IntoIterator<Item = impl Into<String>>,
        options: ReadOptions,
    ) -> Result<Batch<GetResult>, Error> {
        let message = v1::GetManyRequest {
            keys: keys.into_iter().map(Into::into).collect(),
            durability: options.durability.to_proto(),
            consistency: options.consistency.to_proto(),
        };
        let response = self
            .pool
            .call("GetMany", true, move |link, timeout| {
                let message = message.clone();
                async move { kv_client(link.channel).get_many(request(message, timeout)).await }
            })
            .await?;
        Ok(Batch { results: response.results.into_iter().map(get_result).collect(), served_by: response.served_by })
    }

    /// Deletes several keys, atomically per partition (not across partitions). Results
    /// come in request order. Retried only when every item carries an operation id.
    ///
    /// # Cancel safety
    ///
    /// As for [`Client::set_many`].
    pub async fn delete_many(&self, items: impl IntoIterator<Item = DeleteItem>) -> Result<Batch<DeleteResult>, Error> {
        let items: Vec<_> = items.into_iter().map(|item| delete_request(item.key, &item.options)).collect();
        let retry_safe = items.iter().all(|item| !item.operation_id.is_empty());
        let message = v1::DeleteManyRequest { items };
        let response = self
            .pool
            .call("DeleteMany", retry_safe, move |link, timeout| {
                let message = message.clone();
                async move { kv_client(link.channel).delete_many(request(message, timeout)).await }
            })
            .await?;
        Ok(Batch { results: response.results.into_iter().map(delete_result).collect(), served_by: response.served_by })
    }

    /// Returns the cluster as the serving node sees it: nodes, and every partition's
    /// leader, term, role and log positions.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a dropped read changes nothing.
    pub async fn status(&self) -> Result<ClusterStatus, Error> {
        let response = self
            .pool
            .call("Status", true, move |link, timeout| async move {
                cluster_client(link.channel).status(request(v1::StatusRequest {}, timeout)).await
            })
            .await?;
        Ok(ClusterStatus {
            node_id: response.node_id,
            nodes: response.nodes.into_iter().map(|node| NodeInfo { id: node.id, address: node.address }).collect(),
            partitions: response
                .partitions
                .into_iter()
                .map(|p| PartitionStatus {
                    partition: p.partition,
                    leader: (p.leader != 0).then_some(p.leader),
                    term: p.term,
                    role: p.role,
                    last_log_index: p.last_log_index,
                    applied_index: p.applied_index,
                    snapshot_index: p.snapshot_index,
                    voters: p.voters,
                })
                .collect(),
            hlc: response.hlc,
            version: response.version,
        })
    }
}

fn cluster_client(channel: Channel) -> ClusterClient<Channel> {
    ClusterClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// Converts a ttl to the protocol's signed milliseconds (0 = none).
pub(crate) fn ttl_to_proto(ttl_ms: Option<u64>) -> Result<i64, Error> {
    let ttl_ms = ttl_ms.unwrap_or(0);
    i64::try_from(ttl_ms).map_err(|_| Error::InvalidInput(format!("ttl {ttl_ms} ms is too large")))
}

/// Builds a set request, checking the combinations the server would refuse anyway.
/// Resolves the operation id once, so retries of this request share it.
fn set_request(key: String, value: Vec<u8>, options: &SetOptions) -> Result<v1::SetRequest, Error> {
    let ttl_ms = check_set_options(options)?;
    Ok(v1::SetRequest {
        key,
        value,
        durability: options.durability.to_proto(),
        nx: options.nx,
        xx: options.xx,
        compare_value: options.compare_value.clone(),
        compare_revision: options.compare_revision,
        ttl_ms,
        operation_id: options.operation_id.resolve(),
    })
}

/// Checks the combinations of set options the server would refuse anyway; returns the
/// ttl in the protocol's form.
pub(crate) fn check_set_options(options: &SetOptions) -> Result<i64, Error> {
    if options.nx && options.xx {
        return Err(Error::InvalidInput("nx and xx exclude each other".into()));
    }
    if options.nx && (options.compare_value.is_some() || options.compare_revision.is_some()) {
        return Err(Error::InvalidInput(
            "nx excludes compare value and compare revision (the key must be absent)".into(),
        ));
    }
    if options.ttl_ms == Some(0) {
        return Err(Error::InvalidInput("ttl must be at least 1 ms; omit it for no expiry".into()));
    }
    ttl_to_proto(options.ttl_ms)
}

fn delete_request(key: String, options: &DeleteOptions) -> v1::DeleteRequest {
    v1::DeleteRequest {
        key,
        durability: options.durability.to_proto(),
        compare_value: options.compare_value.clone(),
        compare_revision: options.compare_revision,
        operation_id: options.operation_id.resolve(),
    }
}

fn set_result(response: v1::SetResponse) -> SetResult {
    SetResult {
        modified: response.modified,
        revision: revision(response.revision),
        commit_ts: response.commit_ts,
        served_by: response.served_by,
    }
}

fn get_result(response: v1::GetResponse) -> GetResult {
    let kv = if response.found { response.kv.map(|kv| key_value_from_proto!(kv)) } else { None };
    GetResult { kv, served_by: response.served_by }
}

fn delete_result(response: v1::DeleteResponse) -> DeleteResult {
    DeleteResult {
        deleted: response.deleted,
        revision: revision(response.revision),
        commit_ts: response.commit_ts,
        served_by: response.served_by,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::OperationId;

    #[test]
    fn set_request_checks_conditions() {
        let bad = [
            SetOptions::new().nx().xx(),
            SetOptions::new().nx().compare_value("v"),
            SetOptions::new().nx().compare_revision(2),
            SetOptions::new().ttl_ms(0),
            SetOptions::new().ttl_ms(u64::MAX),
        ];
        for options in bad {
            let result = set_request("k".into(), b"v".to_vec(), &options);
            assert!(matches!(result, Err(Error::InvalidInput(_))), "{options:?}");
        }
        let good = set_request("k".into(), b"v".to_vec(), &SetOptions::new().xx().ttl_ms(5));
        let good = good.expect("valid options");
        assert_eq!(good.ttl_ms, 5);
        assert_eq!(good.operation_id.len(), 32);
        let off = SetOptions::new().operation_id(OperationId::Off);
        let off = set_request("k".into(), vec![], &off).expect("valid options");
        assert!(off.operation_id.is_empty());
    }

    #[test]
    fn builder_checks_limits() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let _guard = runtime.enter();
        assert!(Client::builder(["a:1"]).timeout(Duration::ZERO).build().is_err());
        assert!(Client::builder(["a:1"]).retries(RETRIES_MAX + 1).build().is_err());
        let client = Client::builder(["a:1", "b:2"]).retries(0).build().expect("valid settings");
        assert_eq!(client.current_endpoint(), "http://a:1");
        assert_eq!(client.endpoints(), ["http://a:1", "http://b:2"]);
    }

    #[test]
    fn get_result_ignores_kv_when_not_found() {
        let response = v1::GetResponse { found: false, kv: Some(Default::default()), served_by: 3 };
        assert_eq!(get_result(response), GetResult { kv: None, served_by: 3 });
    }
}
