//! Interactive transactions: [`Client::begin`] and the [`Transaction`] handle.
//!
//! A transaction lives on the node that began it, so every call of a [`Transaction`]
//! goes to that node's endpoint: there is no failover inside a transaction. When that
//! node is lost, the transaction is lost with it (nothing was committed unless a commit
//! returned); begin a new one. Calls that are safe to repeat are retried on the same
//! endpoint: reads, rollback, and commit, whose first outcome the node keeps and answers
//! a repeated commit with. Buffered writes are retried only when the request surely
//! never left the client, because a repeated conditional write (`nx`) would see the first.

use std::sync::Arc;
use std::time::Duration;

use kahuna_proto::MAX_MESSAGE_BYTES;
use kahuna_proto::v1;
use kahuna_proto::v1::transactions_client::TransactionsClient;
use tonic::transport::Channel;

use crate::client::{Client, SCAN_PAGE_LIMIT_MAX, check_set_options, ttl_to_proto};
use crate::connection::{Pool, Retry, request};
use crate::error::Error;
use crate::options::{DeleteOptions, ExtendOptions, GetOptions, ReadOptions, ScanOptions, SetOptions};
use crate::types::{ExistsResult, GetResult, Items, NodeId, key_value_from_proto};

fn txn_client(channel: Channel) -> TransactionsClient<Channel> {
    TransactionsClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

impl Client {
    /// Begins an interactive transaction on the current endpoint's node: a snapshot no
    /// earlier than any commit acknowledged before the call. `timeout` (default: the
    /// node's, 5 s; at most the node's maximum, 60 s) bounds its life: after it every call
    /// fails with [`Error::NotFound`] and nothing commits.
    ///
    /// Reads see the snapshot plus the transaction's own writes; writes are buffered
    /// until [`Transaction::commit`], which fails with [`Error::Conflict`] when anything
    /// read, scanned or written changed meanwhile (then run the whole transaction again).
    /// Transactions cover persistent keys only: ephemeral options are
    /// [`Error::InvalidInput`].
    ///
    /// # Cancel safety
    ///
    /// Dropping the future may leave a transaction open on the node, holding nothing
    /// but memory until its timeout rolls it back.
    pub async fn begin(&self, timeout: Option<Duration>) -> Result<Transaction, Error> {
        let timeout_ms = match timeout {
            None => None,
            Some(t) if t.is_zero() => return Err(Error::InvalidInput("transaction timeout must not be zero".into())),
            Some(t) => Some(
                u64::try_from(t.as_millis().max(1))
                    .map_err(|_| Error::InvalidInput(format!("transaction timeout {t:?} is too large")))?,
            ),
        };
        let message = v1::BeginRequest { timeout_ms };
        // A repeated begin at most leaves an unused transaction behind, which its timeout
        // rolls back: safe to retry on any endpoint.
        let (response, endpoint) = self
            .pool
            .call_on(None, "Begin", Retry::Safe, self.timeout(), move |link, timeout| async move {
                txn_client(link.channel).begin(request(message, timeout)).await
            })
            .await?;
        Ok(Transaction {
            pool: self.pool.clone(),
            endpoint,
            id: response.txn_id,
            snapshot_ts: response.snapshot_ts,
            served_by: response.served_by,
            timeout: Duration::from_millis(response.timeout_ms),
            ended: false,
        })
    }
}

/// An open interactive transaction, pinned to the node that began it.
///
/// Made by [`Client::begin`]; ended by [`Transaction::commit`] or
/// [`Transaction::rollback`]. Dropping it without either sends a rollback in the
/// background (when a tokio runtime is at hand); the node also rolls it back once its
/// timeout passes. Calls take `&self`: the node runs one call of a transaction at a time,
/// in arrival order.
#[derive(Debug)]
pub struct Transaction {
    pool: Arc<Pool>,
    /// Index of the endpoint that began the transaction; every call goes there.
    endpoint: usize,
    id: String,
    snapshot_ts: u64,
    served_by: NodeId,
    timeout: Duration,
    /// Set once a commit or rollback was sent: nothing is left for `Drop` to end.
    ended: bool,
}

impl Transaction {
    /// Returns the transaction's id, unique in the cluster.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Returns the HLC timestamp of the snapshot every read comes from.
    pub fn snapshot_ts(&self) -> u64 {
        self.snapshot_ts
    }

    /// Returns the node holding the transaction.
    pub fn served_by(&self) -> NodeId {
        self.served_by
    }

    /// Returns the URI of the endpoint every call of the transaction goes to.
    pub fn endpoint(&self) -> &str {
        self.pool.endpoint(self.endpoint)
    }

    /// Returns the timeout the node gave the transaction, counted from its begin.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Runs one call of the transaction on its endpoint.
    async fn call<M, T, F, Fut>(&self, method: &'static str, retry: Retry, message: M, send: F) -> Result<T, Error>
    where
        M: Clone,
        F: Fn(TransactionsClient<Channel>, tonic::Request<M>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let timeout = self.pool.config().timeout;
        let (response, _) = self
            .pool
            .call_on(Some(self.endpoint), method, retry, timeout, |link, timeout| {
                send(txn_client(link.channel), request(message.clone(), timeout))
            })
            .await?;
        Ok(response)
    }

    /// Reads `key` in the transaction's view: the snapshot with the transaction's own
    /// writes applied, or the version `at_revision` / `as_of` names (`as_of` at most the
    /// snapshot). `options.consistency` is ignored: every read comes from the snapshot.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the key may have joined the transaction's read set, nothing more.
    pub async fn get(&self, key: impl Into<String>, options: GetOptions) -> Result<GetResult, Error> {
        if options.at_revision.is_some() && options.as_of.is_some() {
            return Err(Error::InvalidInput("at revision and as of exclude each other".into()));
        }
        let message = v1::TxnGetRequest {
            txn_id: self.id.clone(),
            key: key.into(),
            durability: options.durability.to_proto(),
            at_revision: options.at_revision,
            as_of: options.as_of,
        };
        let response = self.call("TxnGet", Retry::Safe, message, |mut c, r| async move { c.get(r).await }).await?;
        let kv = if response.found { response.kv.map(|kv| key_value_from_proto!(kv)) } else { None };
        Ok(GetResult { kv, served_by: response.served_by })
    }

    /// Tells whether `key` is live in the transaction's view. `consistency` is ignored.
    ///
    /// # Cancel safety
    ///
    /// As for [`Transaction::get`].
    pub async fn exists(&self, key: impl Into<String>, options: impl Into<ReadOptions>) -> Result<ExistsResult, Error> {
        let message = v1::TxnExistsRequest {
            txn_id: self.id.clone(),
            key: key.into(),
            durability: options.into().durability.to_proto(),
        };
        let response =
            self.call("TxnExists", Retry::Safe, message, |mut c, r| async move { c.exists(r).await }).await?;
        Ok(ExistsResult { exists: response.exists, served_by: response.served_by })
    }

    /// Reads one page of the live keys starting with `prefix` in the transaction's view,
    /// sorted by key; `next_cursor` is `Some` while more remain. The scanned range joins
    /// the read set, so a key inserted into it by another commit is a conflict.
    /// `options.read.consistency` is ignored.
    ///
    /// # Cancel safety
    ///
    /// As for [`Transaction::get`].
    pub async fn scan(&self, prefix: impl Into<String>, options: ScanOptions) -> Result<Items, Error> {
        let limit = options.limit.unwrap_or(0);
        if limit > SCAN_PAGE_LIMIT_MAX {
            return Err(Error::InvalidInput(format!("scan limit {limit} is above the maximum {SCAN_PAGE_LIMIT_MAX}")));
        }
        let message = v1::TxnScanRequest {
            txn_id: self.id.clone(),
            prefix: prefix.into(),
            limit,
            cursor: options.cursor.unwrap_or_default(),
            durability: options.read.durability.to_proto(),
        };
        let response = self.call("TxnScan", Retry::Safe, message, |mut c, r| async move { c.scan(r).await }).await?;
        Ok(Items {
            items: response.items.into_iter().map(|kv| key_value_from_proto!(kv)).collect(),
            next_cursor: Some(response.next_cursor).filter(|cursor| !cursor.is_empty()),
            served_by: response.served_by,
        })
    }

    /// Buffers a write of `value` under `key` when the conditions in `options` hold in
    /// the transaction's view; returns whether they held (false: nothing buffered).
    /// The ttl counts from the commit. `options.operation_id` is ignored: the commit is
    /// what a retry must not repeat, and the node de-duplicates it by transaction id.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future may leave the write buffered or not; roll back when unsure.
    pub async fn set(
        &self,
        key: impl Into<String>,
        value: impl Into<Vec<u8>>,
        options: SetOptions,
    ) -> Result<bool, Error> {
        let ttl_ms = check_set_options(&options)?;
        let message = v1::TxnSetRequest {
            txn_id: self.id.clone(),
            key: key.into(),
            value: value.into(),
            durability: options.durability.to_proto(),
            nx: options.nx,
            xx: options.xx,
            compare_value: options.compare_value,
            compare_revision: options.compare_revision,
            ttl_ms,
        };
        let response = self.call("TxnSet", Retry::NotSent, message, |mut c, r| async move { c.set(r).await }).await?;
        Ok(response.modified)
    }

    /// Buffers a delete of `key` when it is live and the compares in `options` hold;
    /// returns whether they did. `options.operation_id` is ignored.
    ///
    /// # Cancel safety
    ///
    /// As for [`Transaction::set`].
    pub async fn delete(&self, key: impl Into<String>, options: DeleteOptions) -> Result<bool, Error> {
        let message = v1::TxnDeleteRequest {
            txn_id: self.id.clone(),
            key: key.into(),
            durability: options.durability.to_proto(),
            compare_value: options.compare_value,
            compare_revision: options.compare_revision,
        };
        let response =
            self.call("TxnDelete", Retry::NotSent, message, |mut c, r| async move { c.delete(r).await }).await?;
        Ok(response.deleted)
    }

    /// Buffers an expiry change of `key` to `ttl_ms` after the commit (0 removes the
    /// expiry); returns whether the key is live. `options` may be a bare
    /// [`Durability`](crate::Durability); its operation id is ignored.
    ///
    /// # Cancel safety
    ///
    /// As for [`Transaction::set`].
    pub async fn extend(
        &self,
        key: impl Into<String>,
        ttl_ms: u64,
        options: impl Into<ExtendOptions>,
    ) -> Result<bool, Error> {
        let message = v1::TxnExtendRequest {
            txn_id: self.id.clone(),
            key: key.into(),
            ttl_ms: ttl_to_proto(Some(ttl_ms))?,
            durability: options.into().durability.to_proto(),
        };
        let response =
            self.call("TxnExtend", Retry::NotSent, message, |mut c, r| async move { c.extend(r).await }).await?;
        Ok(response.extended)
    }

    /// Validates and commits the buffered writes atomically, ending the transaction.
    /// Returns the commit timestamp, or `None` when nothing was written.
    ///
    /// [`Error::Conflict`]: something read, scanned or written changed after the
    /// snapshot; nothing was committed; run the whole transaction again. An endpoint
    /// failure is retried on the same endpoint: the node answers a repeated commit with
    /// the first one's outcome. A [`Error::Timeout`] or [`Error::Unavailable`] that
    /// remains means the outcome is unknown.
    ///
    /// # Cancel safety
    ///
    /// The node finishes a commit it received even when the caller goes away; the outcome
    /// is then unknown to the caller (nothing else of the transaction remains).
    pub async fn commit(mut self) -> Result<Option<u64>, Error> {
        self.ended = true;
        let message = v1::CommitRequest { txn_id: self.id.clone() };
        let response = self.call("Commit", Retry::Safe, message, |mut c, r| async move { c.commit(r).await }).await?;
        Ok(response.commit_ts)
    }

    /// Discards the buffered writes and ends the transaction. Returns false when it was
    /// no longer open on its node (its timeout had passed).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: an unfinished rollback is finished by the transaction's timeout.
    pub async fn rollback(mut self) -> Result<bool, Error> {
        self.ended = true;
        let message = v1::RollbackRequest { txn_id: self.id.clone() };
        let response =
            self.call("Rollback", Retry::Safe, message, |mut c, r| async move { c.rollback(r).await }).await?;
        Ok(response.rolled_back)
    }
}

impl Drop for Transaction {
    /// Rolls an unfinished transaction back in the background, so that it does not hold
    /// its node's memory until its timeout. Best effort: without a runtime nothing is
    /// sent, and errors are ignored.
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let (pool, endpoint) = (self.pool.clone(), self.endpoint);
        let message = v1::RollbackRequest { txn_id: std::mem::take(&mut self.id) };
        let timeout = pool.config().timeout;
        runtime.spawn(async move {
            let _ = pool
                .call_on(Some(endpoint), "Rollback", Retry::Never, timeout, |link, timeout| {
                    let message = message.clone();
                    async move { txn_client(link.channel).rollback(request(message, timeout)).await }
                })
                .await;
        });
    }
}
