//! The Locks calls of [`Client`]: try-lock (optionally waiting on the server), unlock,
//! extend and get-lock.

use std::time::Duration;

use kahuna_proto::MAX_MESSAGE_BYTES;
use kahuna_proto::v1;
use kahuna_proto::v1::locks_client::LocksClient;
use tonic::transport::Channel;

use crate::client::Client;
use crate::connection::request;
use crate::error::Error;
use crate::options::{LockOptions, ReadOptions, UnlockOptions};
use crate::routes::Route;
use crate::types::{ExtendLockResult, LockHolder, LockInfo, LockResult, UnlockResult};

fn locks_client(channel: Channel) -> LocksClient<Channel> {
    LocksClient::new(channel).max_decoding_message_size(MAX_MESSAGE_BYTES).max_encoding_message_size(MAX_MESSAGE_BYTES)
}

fn holder(h: Option<v1::LockHolder>) -> Option<LockHolder> {
    h.map(|h| LockHolder { owner: h.owner, token: h.token, expires_at_ms: u64::try_from(h.expires_at_ms).unwrap_or(0) })
}

fn millis(what: &str, ms: u64) -> Result<i64, Error> {
    i64::try_from(ms).map_err(|_| Error::InvalidInput(format!("{what} {ms} ms is too large")))
}

impl Client {
    /// Takes lock `name` for `owner` with a lease of `lease_ms`, waiting on the server up
    /// to `options.wait_ms` when someone else holds it. The current owner re-acquiring
    /// gets the same token and a restarted lease, so the call is safe to retry.
    ///
    /// Not getting the lock is not an error: the result has `acquired == false`.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future may leave the lock taken: call again with the same owner to
    /// learn the token, or unlock it.
    pub async fn try_lock(
        &self,
        name: impl Into<String>,
        owner: impl Into<String>,
        lease_ms: u64,
        options: impl Into<LockOptions>,
    ) -> Result<LockResult, Error> {
        let options = options.into();
        let message = v1::TryLockRequest {
            name: name.into(),
            owner: owner.into(),
            lease_ms: millis("lease", lease_ms)?,
            durability: options.durability.to_proto(),
            wait_ms: millis("wait", options.wait_ms)?,
        };
        // The server may hold the call for the whole wait before it starts answering.
        let timeout = self.timeout().saturating_add(Duration::from_millis(options.wait_ms));
        let routed = message.name.clone();
        let response = self
            .pool
            .call_routed_within(Route::Key(&routed), "TryLock", true, timeout, move |link, timeout| {
                let message = message.clone();
                async move { locks_client(link.channel).try_lock(request(message, timeout)).await }
            })
            .await?;
        Ok(LockResult {
            acquired: response.acquired,
            holder: holder(response.holder),
            commit_ts: response.commit_ts,
            served_by: response.served_by,
        })
    }

    /// Frees lock `name` held by `owner`. Another owner holding it is
    /// [`Error::InvalidInput`]; a lock no longer held gives `released == false`.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future may leave the lock freed or not; repeat with the same
    /// [`OperationId::Given`](crate::OperationId) id to settle it.
    pub async fn unlock(
        &self,
        name: impl Into<String>,
        owner: impl Into<String>,
        options: impl Into<UnlockOptions>,
    ) -> Result<UnlockResult, Error> {
        let options = options.into();
        let message = v1::UnlockRequest {
            name: name.into(),
            owner: owner.into(),
            durability: options.durability.to_proto(),
            operation_id: options.operation_id.resolve(),
        };
        let retry_safe = !message.operation_id.is_empty();
        let routed = message.name.clone();
        let response = self
            .pool
            .call_routed(Route::Key(&routed), "Unlock", retry_safe, move |link, timeout| {
                let message = message.clone();
                async move { locks_client(link.channel).unlock(request(message, timeout)).await }
            })
            .await?;
        Ok(UnlockResult { released: response.released, commit_ts: response.commit_ts, served_by: response.served_by })
    }

    /// Restarts the lease of lock `name` held by `owner` at `lease_ms` from now, keeping
    /// its token. Another owner holding it is [`Error::InvalidInput`]; a lease that
    /// already ended gives `extended == false`.
    ///
    /// # Cancel safety
    ///
    /// As for [`Client::unlock`].
    pub async fn extend_lock(
        &self,
        name: impl Into<String>,
        owner: impl Into<String>,
        lease_ms: u64,
        options: impl Into<UnlockOptions>,
    ) -> Result<ExtendLockResult, Error> {
        let options = options.into();
        let message = v1::ExtendLockRequest {
            name: name.into(),
            owner: owner.into(),
            lease_ms: millis("lease", lease_ms)?,
            durability: options.durability.to_proto(),
            operation_id: options.operation_id.resolve(),
        };
        let retry_safe = !message.operation_id.is_empty();
        let routed = message.name.clone();
        let response = self
            .pool
            .call_routed(Route::Key(&routed), "ExtendLock", retry_safe, move |link, timeout| {
                let message = message.clone();
                async move { locks_client(link.channel).extend(request(message, timeout)).await }
            })
            .await?;
        Ok(ExtendLockResult {
            extended: response.extended,
            holder: holder(response.holder),
            commit_ts: response.commit_ts,
            served_by: response.served_by,
        })
    }

    /// Reads lock `name`: its live holder and the largest token granted so far.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a dropped read changes nothing.
    pub async fn get_lock(&self, name: impl Into<String>, options: impl Into<ReadOptions>) -> Result<LockInfo, Error> {
        let options = options.into();
        let message = v1::GetLockRequest {
            name: name.into(),
            durability: options.durability.to_proto(),
            consistency: options.consistency.to_proto(),
        };
        let routed = message.name.clone();
        let response = self
            .pool
            .call_routed(Route::Key(&routed), "GetLock", true, move |link, timeout| {
                let message = message.clone();
                async move { locks_client(link.channel).get_lock(request(message, timeout)).await }
            })
            .await?;
        let holder = if response.held { holder(response.holder) } else { None };
        Ok(LockInfo { holder, last_token: response.last_token, served_by: response.served_by })
    }
}
