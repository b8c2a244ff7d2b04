//! Single-key KeyValue calls over one KeyValue.Pipeline stream per endpoint, for a client
//! built with [`ClientBuilder::pipeline`](crate::ClientBuilder::pipeline).
//!
//! Each endpoint's [`Pipeline`] keeps one stream open. A call registers a waiter under a
//! fresh id and queues its message; a writer task sends whatever is queued as one
//! message, and a reader task hands each reply to its waiter. When the stream ends or
//! breaks, every waiter gets the stream's status (so the retry loop sees what a unary
//! call on that connection would have seen) and the next call opens a new stream.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use kahuna_proto::MAX_MESSAGE_BYTES;
use kahuna_proto::v1::key_value_client::KeyValueClient;
use kahuna_proto::v1::pipeline_call::Call;
use kahuna_proto::v1::pipeline_reply::Reply;
use kahuna_proto::v1::{self, PipelineCall, PipelineError, PipelineRequest, PipelineResponse};
use prost::Message;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::connection::{Link, request};
use crate::error::NOT_READY_PREFIX;

/// Most calls in one message (the server accepts up to 1024).
const CALLS_PER_MESSAGE_MAX: usize = 256;
/// A message of calls takes no more once it holds this many bytes (one call alone may be
/// larger, up to the message limit).
const CALL_BYTES_MAX: usize = 1024 * 1024;
/// Messages queued for the connection before the writer waits.
const MESSAGES_QUEUED: usize = 4;

/// The unary KeyValue client of a channel, with Kahuna's message limits.
pub(crate) fn kv_client(channel: Channel) -> KeyValueClient<Channel> {
    KeyValueClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// A single-key KeyValue request, which travels as its own unary call or in a pipeline.
pub(crate) trait KeyValueCall: Sized + Send + 'static {
    type Response: Send + 'static;
    fn into_call(self) -> Call;
    fn from_reply(reply: Reply) -> Option<Self::Response>;
    fn unary(
        client: KeyValueClient<Channel>,
        request: tonic::Request<Self>,
    ) -> impl Future<Output = Result<tonic::Response<Self::Response>, Status>> + Send;
}

macro_rules! key_value_call {
    ($request:ty, $response:ty, $variant:ident, $method:ident) => {
        impl KeyValueCall for $request {
            type Response = $response;

            fn into_call(self) -> Call {
                Call::$variant(self)
            }

            fn from_reply(reply: Reply) -> Option<$response> {
                match reply {
                    Reply::$variant(response) => Some(response),
                    _ => None,
                }
            }

            fn unary(
                mut client: KeyValueClient<Channel>,
                request: tonic::Request<Self>,
            ) -> impl Future<Output = Result<tonic::Response<$response>, Status>> + Send {
                async move { client.$method(request).await }
            }
        }
    };
}

key_value_call!(v1::SetRequest, v1::SetResponse, Set, set);
key_value_call!(v1::GetRequest, v1::GetResponse, Get, get);
key_value_call!(v1::ExistsRequest, v1::ExistsResponse, Exists, exists);
key_value_call!(v1::DeleteRequest, v1::DeleteResponse, Delete, delete);
key_value_call!(v1::ExtendRequest, v1::ExtendResponse, Extend, extend);

impl Link {
    /// Sends one single-key call: in the endpoint's pipeline when the client has one,
    /// else as its own unary call with `timeout` as its gRPC deadline (a pipelined call's
    /// timeout is the caller's alone). Either way the answer or the status is the same.
    pub(crate) async fn key_value<M: KeyValueCall>(
        self,
        message: M,
        timeout: Duration,
    ) -> Result<tonic::Response<M::Response>, Status> {
        match self.pipeline {
            None => M::unary(kv_client(self.channel), request(message, timeout)).await,
            Some(pipeline) => {
                let reply = pipeline.call(message.into_call()).await?;
                M::from_reply(reply)
                    .map(tonic::Response::new)
                    .ok_or_else(|| Status::internal("the node answered a pipelined call with another kind of reply"))
            }
        }
    }
}

/// One endpoint's pipeline: its current stream, opened on first use and again after it
/// ended.
#[derive(Debug)]
pub(crate) struct Pipeline {
    channel: Channel,
    current: Mutex<Option<Arc<Stream>>>,
}

/// One open KeyValue.Pipeline stream. Dropping the last handle (the pipeline moved on,
/// or the client was dropped) ends the writer task, which ends the request stream; the
/// node then finishes and ends its replies, which ends the reader task. The reader holds
/// only [`Shared`], never this sender, or the stream would keep itself open forever.
#[derive(Debug)]
struct Stream {
    /// To the writer task; closed when it ends.
    calls: mpsc::UnboundedSender<PipelineCall>,
    shared: Arc<Shared>,
}

/// What a stream's callers and its reader task share.
#[derive(Debug, Default)]
struct Shared {
    next_id: AtomicU64,
    state: Mutex<State>,
}

type Answer = oneshot::Sender<Result<Reply, Status>>;

#[derive(Debug, Default)]
struct State {
    /// Calls sent or queued and not yet answered, by id.
    waiting: HashMap<u64, Answer>,
    /// Set once the stream ended: the status every later call gets.
    closed: Option<Status>,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Pipeline {
    pub(crate) fn new(channel: Channel) -> Pipeline {
        Pipeline { channel, current: Mutex::new(None) }
    }

    /// Sends `call` and waits for its reply. Dropping the future forgets the call (a
    /// reply that comes later is dropped), but does not recall it from the node.
    pub(crate) async fn call(&self, call: Call) -> Result<Reply, Status> {
        let stream = self.stream();
        let shared = &stream.shared;
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let (answer, answered) = oneshot::channel();
        {
            let mut state = lock(&shared.state);
            if let Some(status) = &state.closed {
                return Err(status.clone());
            }
            state.waiting.insert(id, answer);
        }
        let _forget = Forget { shared, id };
        if stream.calls.send(PipelineCall { id, call: Some(call) }).is_err() {
            // The writer ended with the stream, which answers every waiter with its status.
            return Err(lock(&shared.state).closed.clone().unwrap_or_else(ended));
        }
        answered.await.unwrap_or_else(|_| Err(ended()))
    }

    /// The open stream, or a new one when there is none or it ended.
    fn stream(&self) -> Arc<Stream> {
        let mut current = self.current.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(stream) = current.as_ref()
            && lock(&stream.shared.state).closed.is_none()
        {
            return stream.clone();
        }
        let stream = Stream::open(self.channel.clone());
        *current = Some(stream.clone());
        stream
    }
}

/// Removes a call's waiter when its caller stops waiting, so that an unanswered call does
/// not stay registered for the life of the stream.
struct Forget<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        lock(&self.shared.state).waiting.remove(&self.id);
    }
}

fn ended() -> Status {
    Status::unavailable("the pipeline stream ended before the call was answered; its outcome is unknown")
}

impl Stream {
    /// Starts the writer and reader tasks of a new stream on `channel`.
    fn open(channel: Channel) -> Arc<Stream> {
        let (calls, queued) = mpsc::unbounded_channel();
        let (requests, outbound) = mpsc::channel(MESSAGES_QUEUED);
        let shared = Arc::new(Shared::default());
        tokio::spawn(write(queued, requests));
        tokio::spawn(read(channel, outbound, shared.clone()));
        Arc::new(Stream { calls, shared })
    }
}

impl Shared {
    /// Ends the stream with `status`, answering every waiting call with it.
    fn close(&self, status: Status) {
        let waiting = {
            let mut state = lock(&self.state);
            state.closed = Some(status.clone());
            std::mem::take(&mut state.waiting)
        };
        for answer in waiting.into_values() {
            let _ = answer.send(Err(status.clone()));
        }
    }

    /// Hands each reply of `message` to its waiter.
    fn dispatch(&self, message: PipelineResponse) {
        let mut state = lock(&self.state);
        for reply in message.replies {
            // No waiter: the caller stopped waiting (its timeout passed).
            if let Some(answer) = state.waiting.remove(&reply.id) {
                let _ = answer.send(match reply.reply {
                    Some(Reply::Error(error)) => Err(status_of(error)),
                    Some(reply) => Ok(reply),
                    None => Err(Status::internal("the node sent a pipeline reply without an answer")),
                });
            }
        }
    }
}

/// Sends the queued calls, as many to a message as are waiting, until the client drops
/// the stream or the stream ends.
async fn write(mut queued: mpsc::UnboundedReceiver<PipelineCall>, requests: mpsc::Sender<PipelineRequest>) {
    while let Some(first) = queued.recv().await {
        // The first call's waker put this task next in line on its worker (tokio's LIFO
        // slot), ahead of the callers that the same reply woke: let them queue theirs
        // first, so that a message carries many calls rather than one.
        tokio::task::yield_now().await;
        let mut bytes = first.encoded_len();
        let mut request = PipelineRequest { calls: vec![first] };
        while request.calls.len() < CALLS_PER_MESSAGE_MAX && bytes < CALL_BYTES_MAX {
            let Ok(call) = queued.try_recv() else { break };
            bytes += call.encoded_len();
            request.calls.push(call);
        }
        if requests.send(request).await.is_err() {
            return;
        }
    }
}

/// Opens the stream and reads replies until it ends, then closes it with the status it
/// ended with: the channel's own when it could not connect (nothing was sent), the
/// transport's when it broke.
async fn read(channel: Channel, outbound: mpsc::Receiver<PipelineRequest>, shared: Arc<Shared>) {
    let end = match kv_client(channel).pipeline(ReceiverStream::new(outbound)).await {
        Err(status) => status,
        Ok(response) => {
            let mut replies = response.into_inner();
            loop {
                match replies.message().await {
                    Ok(Some(message)) => shared.dispatch(message),
                    Ok(None) => break Status::unavailable("the node ended the pipeline stream"),
                    Err(status) => break status,
                }
            }
        }
    };
    tracing::debug!("pipeline stream ended: {end}");
    shared.close(broken(end));
}

/// The status the calls of an ended stream get. A status the node sent stays as it is
/// (UNIMPLEMENTED from a node without pipelines, say), and so does a channel that never
/// connected (nothing was sent, which the client's error mapping recognises). A broken
/// connection, which tonic reports as UNKNOWN in h2's words, becomes UNAVAILABLE: as
/// after a unary call's connection broke, the calls' outcomes are unknown and another
/// node may answer them.
fn broken(status: Status) -> Status {
    if status.code() == Code::Unknown && !status.message().starts_with(NOT_READY_PREFIX) {
        Status::unavailable(format!("the pipeline stream to the node broke: {}", status.message()))
    } else {
        status
    }
}

/// The status a reply's error stands for, with its text metadata.
fn status_of(error: PipelineError) -> Status {
    let mut metadata = MetadataMap::new();
    for (key, value) in error.metadata {
        if let (Ok(key), Ok(value)) = (MetadataKey::from_bytes(key.as_bytes()), MetadataValue::try_from(value.as_str()))
        {
            metadata.insert(key, value);
        }
    }
    Status::with_metadata(Code::from_i32(error.code), error.message, metadata)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_error_becomes_the_status_with_its_metadata() {
        let error = PipelineError {
            code: Code::Unavailable as i32,
            message: "partition 3 has no leader".into(),
            metadata: [("kahuna-code".to_owned(), "NotLeader".to_owned())].into(),
        };
        let status = status_of(error);
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(status.message(), "partition 3 has no leader");
        assert_eq!(status.metadata().get("kahuna-code").and_then(|v| v.to_str().ok()), Some("NotLeader"));
        let error = crate::Error::from_status(&status);
        assert!(error.is_failover(), "{error:?}");
    }

    #[test]
    fn a_broken_connection_is_unavailable_and_other_statuses_stay() {
        let broke = broken(Status::unknown("h2 protocol error: error reading a body from connection"));
        assert!(crate::Error::from_status(&broke).is_failover(), "{broke:?}");
        let unsent = broken(Status::unknown(format!("{NOT_READY_PREFIX}: transport error")));
        assert!(crate::Error::from_status(&unsent).is_not_sent(), "{unsent:?}");
        let old_node = broken(Status::unimplemented("no such method"));
        assert_eq!(old_node.code(), Code::Unimplemented);
    }

    #[test]
    fn malformed_metadata_is_skipped_not_fatal() {
        let error = PipelineError {
            code: Code::InvalidArgument as i32,
            message: "bad".into(),
            metadata: [("bad key!".to_owned(), "x".to_owned()), ("ok".to_owned(), "line\nbreak".to_owned())].into(),
        };
        let status = status_of(error);
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.metadata().is_empty());
    }
}
