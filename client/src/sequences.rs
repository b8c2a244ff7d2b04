//! The Sequences calls of [`Client`]: create, next, reserve, get and delete.

use kahuna_proto::MAX_MESSAGE_BYTES;
use kahuna_proto::v1;
use kahuna_proto::v1::sequences_client::SequencesClient;
use tonic::transport::Channel;

use crate::client::Client;
use crate::connection::request;
use crate::error::Error;
use crate::options::{Consistency, OperationId, SequenceOptions};
use crate::routes::Route;
use crate::types::{
    CreateSequenceResult, DeleteSequenceResult, GetSequenceResult, NextResult, ReserveResult, SequenceInfo,
};

fn sequences_client(channel: Channel) -> SequencesClient<Channel> {
    SequencesClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

fn info(s: Option<v1::SequenceInfo>) -> Option<SequenceInfo> {
    s.map(|s| SequenceInfo {
        name: s.name,
        start: s.start,
        increment: s.increment,
        max: s.max,
        allocated: s.allocated,
        last: s.last,
        next: s.next,
    })
}

fn missing_sequence() -> Error {
    Error::Other { code: "MalformedResponse".into(), message: "the server sent no sequence".into() }
}

impl Client {
    /// Creates sequence `name`. An existing sequence is left as it is and reported with
    /// `created == false`, so the call is safe to retry.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future may leave the sequence created or not; calling again settles it.
    pub async fn create_sequence(
        &self,
        name: impl Into<String>,
        options: SequenceOptions,
    ) -> Result<CreateSequenceResult, Error> {
        if options.increment < 1 {
            return Err(Error::InvalidInput(format!("increment must be at least 1, got {}", options.increment)));
        }
        let message = v1::CreateSequenceRequest {
            name: name.into(),
            start: options.start,
            increment: options.increment,
            max: options.max,
        };
        let routed = message.name.clone();
        let response = self
            .pool
            .call_routed(Route::Key(&routed), "CreateSequence", true, move |link, timeout| {
                let message = message.clone();
                async move { sequences_client(link.channel).create(request(message, timeout)).await }
            })
            .await?;
        let sequence = info(response.sequence).ok_or_else(missing_sequence)?;
        Ok(CreateSequenceResult { created: response.created, sequence, served_by: response.served_by })
    }

    /// Hands out the next value of sequence `name`.
    ///
    /// `key` is the idempotency key: a call repeating an earlier call's key (within the
    /// server's retention window, 10 minutes by default) gets that call's value again.
    /// [`OperationId::Auto`] makes a fresh key so the client's own retries are safe; pass
    /// [`OperationId::Given`] to retry across calls or processes.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future may use up a value; repeat with the same given key to get it.
    pub async fn next_sequence(&self, name: impl Into<String>, key: OperationId) -> Result<NextResult, Error> {
        let message = v1::NextRequest { name: name.into(), idempotency_key: key.resolve() };
        let retry_safe = !message.idempotency_key.is_empty();
        let routed = message.name.clone();
        let response = self
            .pool
            .call_routed(Route::Key(&routed), "NextSequence", retry_safe, move |link, timeout| {
                let message = message.clone();
                async move { sequences_client(link.channel).next(request(message, timeout)).await }
            })
            .await?;
        Ok(NextResult { value: response.value, replayed: response.replayed, served_by: response.served_by })
    }

    /// Hands out `count` values of sequence `name` as one range. The idempotency `key`
    /// works as for [`Client::next_sequence`]; the same key with another count is
    /// [`Error::InvalidInput`]. Passing the maximum is [`Error::Exhausted`] and
    /// allocates nothing.
    ///
    /// # Cancel safety
    ///
    /// As for [`Client::next_sequence`].
    pub async fn reserve_sequence(
        &self,
        name: impl Into<String>,
        count: u64,
        key: OperationId,
    ) -> Result<ReserveResult, Error> {
        let message = v1::ReserveRequest { name: name.into(), count, idempotency_key: key.resolve() };
        let retry_safe = !message.idempotency_key.is_empty();
        let routed = message.name.clone();
        let response = self
            .pool
            .call_routed(Route::Key(&routed), "ReserveSequence", retry_safe, move |link, timeout| {
                let message = message.clone();
                async move { sequences_client(link.channel).reserve(request(message, timeout)).await }
            })
            .await?;
        Ok(ReserveResult {
            first: response.first,
            last: response.last,
            count: response.count,
            increment: response.increment,
            replayed: response.replayed,
            served_by: response.served_by,
        })
    }

    /// Reads sequence `name`; `sequence` is `None` when it does not exist.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a dropped read changes nothing.
    pub async fn get_sequence(
        &self,
        name: impl Into<String>,
        consistency: Consistency,
    ) -> Result<GetSequenceResult, Error> {
        let message = v1::GetSequenceRequest { name: name.into(), consistency: consistency.to_proto() };
        let routed = message.name.clone();
        let response = self
            .pool
            .call_routed(Route::Key(&routed), "GetSequence", true, move |link, timeout| {
                let message = message.clone();
                async move { sequences_client(link.channel).get(request(message, timeout)).await }
            })
            .await?;
        let sequence = if response.found { info(response.sequence) } else { None };
        Ok(GetSequenceResult { sequence, served_by: response.served_by })
    }

    /// Deletes sequence `name` and its idempotency records; `deleted == false` when it
    /// did not exist, so the call is safe to retry.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future may leave the sequence deleted or not; calling again settles it.
    pub async fn delete_sequence(&self, name: impl Into<String>) -> Result<DeleteSequenceResult, Error> {
        let message = v1::DeleteSequenceRequest { name: name.into() };
        let routed = message.name.clone();
        let response = self
            .pool
            .call_routed(Route::Key(&routed), "DeleteSequence", true, move |link, timeout| {
                let message = message.clone();
                async move { sequences_client(link.channel).delete(request(message, timeout)).await }
            })
            .await?;
        Ok(DeleteSequenceResult { deleted: response.deleted, served_by: response.served_by })
    }
}
