//! KeyValue.Pipeline: single-key calls multiplexed over one stream.
//!
//! A unary call costs an HTTP/2 stream of its own (headers both ways, a task in hyper,
//! the router); under many concurrent calls that, not the store, is most of a node's
//! CPU. Here each call is a small message inside a batch: the stream's task spawns every
//! call it reads (so calls run concurrently, as unary calls would), except ephemeral
//! calls that finish without waiting, which it answers in place, and sends replies as
//! they finish, as many to a message as are ready. Each call runs through the very
//! handler of its unary call, so answers and errors are the same.

use std::panic::AssertUnwindSafe;
use std::task::{Context, Poll, Waker};

use futures::FutureExt;
use kahuna_proto::v1::key_value_server::KeyValue as KeyValueApi;
use kahuna_proto::v1::pipeline_call::Call;
use kahuna_proto::v1::pipeline_reply::Reply;
use kahuna_proto::v1::{Durability, PipelineCall, PipelineError, PipelineReply, PipelineRequest, PipelineResponse};
use prost::Message;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::KeyAndValueRef;
use tonic::{Request, Status, Streaming};

use crate::kv_service::KvService;

/// Most calls of one stream running at once: the stream is read on only as they finish,
/// so a client sending faster than the node answers is held back by HTTP/2 flow control.
/// Also the most calls one message may carry.
pub const PIPELINE_CALLS_MAX: usize = 1024;
/// Most replies in one message.
const REPLIES_PER_MESSAGE_MAX: usize = 256;
/// A message of replies takes no more once it holds this many bytes (one reply alone may
/// be larger: a value is at most 4 MiB, a message at most `MAX_MESSAGE_BYTES`).
const REPLY_BYTES_MAX: usize = 1024 * 1024;
/// Messages of replies waiting for the client before the stream's task waits too.
const REPLY_MESSAGES_QUEUED: usize = 8;

/// The replies of one pipeline stream, as tonic sends them.
pub type ReplyStream = ReceiverStream<Result<PipelineResponse, Status>>;

/// Starts serving the calls arriving on `inbound`; returns the stream of their replies.
pub fn open(kv: KvService, inbound: Streaming<PipelineRequest>) -> ReplyStream {
    let (replies, stream) = mpsc::channel(REPLY_MESSAGES_QUEUED);
    tokio::spawn(serve(kv, inbound, replies));
    ReceiverStream::new(stream)
}

/// Reads calls and spawns them until the client closes its side, sending replies as the
/// calls finish; ends when every call read has been answered. When the client goes
/// away, dropping the running set cancels its calls, as a unary call is cancelled when
/// its stream is reset.
async fn serve(
    kv: KvService,
    mut inbound: Streaming<PipelineRequest>,
    out: mpsc::Sender<Result<PipelineResponse, Status>>,
) {
    let mut running: JoinSet<PipelineReply> = JoinSet::new();
    let mut reading = true;
    loop {
        tokio::select! {
            message = inbound.message(), if reading && running.len() < PIPELINE_CALLS_MAX => match message {
                Ok(Some(request)) => {
                    if request.calls.len() > PIPELINE_CALLS_MAX {
                        let count = request.calls.len();
                        let status = Status::invalid_argument(format!(
                            "a pipeline message carries {count} calls, at most {PIPELINE_CALLS_MAX} allowed"
                        ));
                        // The stream ends with this status; calls already running are dropped.
                        let _ = out.send(Err(status)).await;
                        return;
                    }
                    let mut replies = Replies::default();
                    for call in request.calls {
                        let kv = kv.clone();
                        let in_place = in_memory(&call);
                        let reply = async move { guarded(call.id, answer(&kv, call)).await };
                        if !in_place {
                            running.spawn(reply);
                            continue;
                        }
                        // An ephemeral call touches only the leader's memory: cheaper than a
                        // task of its own when it can finish without waiting (a node that
                        // leads alone, or a serializable read), so it is answered here. If
                        // it must wait (a leadership round), it is spawned, and its task's
                        // first poll registers the waker that counts (this one is a no-op).
                        let mut reply = Box::pin(reply);
                        let polled = reply.as_mut().poll(&mut Context::from_waker(Waker::noop()));
                        match polled {
                            Poll::Ready(reply) => {
                                if replies.push(reply) && !replies.send(&out).await {
                                    return;
                                }
                            }
                            Poll::Pending => {
                                running.spawn(reply);
                            }
                        }
                    }
                    if !replies.is_empty() && !replies.top_up(&mut running).send(&out).await {
                        return;
                    }
                }
                Ok(None) => reading = false,
                Err(status) => {
                    tracing::debug!("pipeline stream broke: {status}");
                    return;
                }
            },
            Some(first) = running.join_next() => {
                // The call that finished first woke this task next in line on its worker
                // (tokio's LIFO slot): let the others that are ready finish first, so that
                // a message carries many replies rather than one.
                tokio::task::yield_now().await;
                let mut replies = Replies::default();
                // Tasks are never aborted, and a panic is answered inside its task.
                if let Ok(reply) = first {
                    replies.push(reply);
                }
                if !replies.top_up(&mut running).send(&out).await {
                    return;
                }
            }
            else => return,
        }
    }
}

/// Replies gathered for one message.
#[derive(Default)]
struct Replies {
    message: PipelineResponse,
    bytes: usize,
}

impl Replies {
    /// Adds `reply`; true when the message is full.
    fn push(&mut self, reply: PipelineReply) -> bool {
        self.bytes += reply.encoded_len();
        self.message.replies.push(reply);
        self.message.replies.len() >= REPLIES_PER_MESSAGE_MAX || self.bytes >= REPLY_BYTES_MAX
    }

    fn is_empty(&self) -> bool {
        self.message.replies.is_empty()
    }

    /// Adds the replies of calls in `running` that have finished, while there is room.
    fn top_up(&mut self, running: &mut JoinSet<PipelineReply>) -> &mut Self {
        while let Some(joined) = running.try_join_next() {
            // Tasks are never aborted, and a panic is answered inside its task.
            if let Ok(reply) = joined
                && self.push(reply)
            {
                break;
            }
        }
        self
    }

    /// Sends what was gathered and starts again empty; false when the client is gone.
    async fn send(&mut self, out: &mpsc::Sender<Result<PipelineResponse, Status>>) -> bool {
        self.bytes = 0;
        out.send(Ok(std::mem::take(&mut self.message))).await.is_ok()
    }
}

/// `answer`'s reply to call `id`, or INTERNAL if it panicked: a bug in one handler costs
/// its caller an error rather than a call never answered.
async fn guarded(id: u64, answer: impl Future<Output = PipelineReply>) -> PipelineReply {
    AssertUnwindSafe(answer).catch_unwind().await.unwrap_or_else(|_| {
        let status = Status::internal("the call failed on the node: its handler panicked");
        PipelineReply { id, reply: Some(Reply::Error(pipeline_error(&status))) }
    })
}

/// Whether `call` is on the ephemeral keyspace. Persistent calls always get a task: their
/// storage reads and proposals then run on every worker at once, which measured faster
/// than answering the ready ones in place (1 node, 64 clients: linearizable gets 88k /
/// 108k a second in tasks, 78k / 89k in place), while ephemeral gets went from about
/// 100k to 135k a second in place.
fn in_memory(call: &PipelineCall) -> bool {
    let durability = match &call.call {
        Some(Call::Set(r)) => r.durability,
        Some(Call::Get(r)) => r.durability,
        Some(Call::Exists(r)) => r.durability,
        Some(Call::Delete(r)) => r.durability,
        Some(Call::Extend(r)) => r.durability,
        None => return false,
    };
    durability == Durability::Ephemeral as i32
}

/// Runs one call through its unary handler.
async fn answer(kv: &KvService, call: PipelineCall) -> PipelineReply {
    let reply = match call.call {
        Some(Call::Set(r)) => kv.set(Request::new(r)).await.map(|r| Reply::Set(r.into_inner())),
        Some(Call::Get(r)) => kv.get(Request::new(r)).await.map(|r| Reply::Get(r.into_inner())),
        Some(Call::Exists(r)) => kv.exists(Request::new(r)).await.map(|r| Reply::Exists(r.into_inner())),
        Some(Call::Delete(r)) => kv.delete(Request::new(r)).await.map(|r| Reply::Delete(r.into_inner())),
        Some(Call::Extend(r)) => kv.extend(Request::new(r)).await.map(|r| Reply::Extend(r.into_inner())),
        None => Err(Status::invalid_argument("a pipeline call names no operation")),
    };
    PipelineReply { id: call.id, reply: Some(reply.unwrap_or_else(|status| Reply::Error(pipeline_error(&status)))) }
}

/// A status as a reply carries it: code, message and text metadata.
fn pipeline_error(status: &Status) -> PipelineError {
    let metadata = status
        .metadata()
        .iter()
        .filter_map(|entry| match entry {
            KeyAndValueRef::Ascii(key, value) => Some((key.as_str().to_owned(), value.to_str().ok()?.to_owned())),
            KeyAndValueRef::Binary(..) => None,
        })
        .collect();
    PipelineError { code: status.code() as i32, message: status.message().to_owned(), metadata }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{CODE_METADATA, to_status};

    #[tokio::test]
    async fn a_call_whose_handler_panicked_is_answered_with_an_internal_error() {
        let reply = guarded(42, async { panic!("boom") }).await;
        assert_eq!(reply.id, 42);
        assert!(matches!(&reply.reply, Some(Reply::Error(e)) if e.code == tonic::Code::Internal as i32), "{reply:?}");
    }

    #[test]
    fn an_error_keeps_its_code_message_and_metadata() {
        let status = to_status(kahuna_kernel::KvError::InvalidInput("key too long".into()));
        let error = pipeline_error(&status);
        assert_eq!(error.code, tonic::Code::InvalidArgument as i32);
        assert_eq!(error.message, status.message());
        assert_eq!(error.metadata.get(CODE_METADATA).map(String::as_str), Some("InvalidInput"));
    }
}
