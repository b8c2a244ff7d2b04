//! Group commit within a partition: proposals that queue while the partition's previous
//! entry is in flight go to Raft together, as one entry.
//!
//! openraft 0.9's core waits for each entry's `LogFlushed` before it takes the next client
//! write, so one entry per proposal meant one fsync per proposal per partition (one
//! partition on one node topped out near 2,500 puts/s, every storage batch holding one
//! append). Here a partition's proposals go through a queue; its task sends whatever has
//! queued (bounded by [`BATCH_PROPOSALS_MAX`] and [`BATCH_BYTES_MAX`]) as one
//! [`Command::Batch`] entry, at most [`ENTRIES_IN_FLIGHT`] at once, and answers each
//! proposal with its own outcome. A proposal that finds the queue empty and a slot free
//! goes at once, alone and unwrapped, so one client's latency does not change.
//!
//! An entry that openraft never answers must not hold the partition's slot for good
//! ([`raft_answer`]): openraft 0.9 answers a proposal when its entry is applied or
//! truncated away, but a snapshot installed over an uncommitted entry of a deposed leader,
//! when the leader's log ends before the snapshot does, purges the entry and answers
//! nothing. Found by the simulation (`sim/tests/t92_write_swallowed_by_snapshot.rs`): the
//! deposed leader, leading again, timed out every write of the partition.

use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use openraft::raft::ClientWriteResponse;
use openraft::{BasicNode, RaftMetrics};
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::{InFlight, write_error};
use crate::batches::Batches;
use crate::error::KvError;
use crate::raft_types::{ApplyResult, Command, Proposal, Raft, TypeConfig};
use crate::schema::encoded_len;
use crate::types::PartitionId;

/// Most proposals in one entry.
const BATCH_PROPOSALS_MAX: usize = 256;
/// Most encoded bytes of proposals in one entry (a larger proposal still goes, alone):
/// small writes stay small entries, so replication (which sends at most
/// `log_store::APPEND_BYTES_MAX` of entries per message) can split a backlog finely.
const BATCH_BYTES_MAX: usize = 128 * 1024;
/// A partition's entries proposed and not answered yet. One: openraft 0.9 takes a
/// partition's next entry only after the previous one's fsync anyway, and with one in
/// flight more proposals queue behind it, so each entry carries more of them (1 node, 64
/// clients: 7,411 / 8,066 → 9,129 / 9,548 puts/s with two → one; bench/PERF-LOG.md).
const ENTRIES_IN_FLIGHT: usize = 1;

/// A proposal waiting in a partition's queue, and where its outcome goes.
pub(super) struct Queued {
    pub(super) proposal: Proposal,
    pub(super) answer: oneshot::Sender<Result<ApplyResult, KvError>>,
}

/// Sends a partition's queued proposals to Raft in batches until the queue's senders are
/// gone. Every stamp leaves `in_flight` once Raft answered its entry, whether or not its
/// proposer still waits.
pub(super) async fn propose_batches(
    p: PartitionId,
    raft: Raft,
    in_flight: Arc<InFlight>,
    queue: mpsc::UnboundedReceiver<Queued>,
    timeout: Duration,
) {
    let slots = Arc::new(Semaphore::new(ENTRIES_IN_FLIGHT));
    let mut batches = Batches::new(queue);
    while let Some(first) = batches.first().await {
        // Proposals queued while waiting for a slot join this entry.
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let batch = batches.fill(first, BATCH_PROPOSALS_MAX, BATCH_BYTES_MAX, |q| encoded_len(&q.proposal));
        let (raft, in_flight) = (raft.clone(), in_flight.clone());
        tokio::spawn(async move {
            write_batch(p, &raft, &in_flight, batch, timeout).await;
            drop(slot);
        });
    }
}

/// Proposes `batch` as one entry (a lone proposal as itself) and answers each proposal.
async fn write_batch(p: PartitionId, raft: &Raft, in_flight: &InFlight, batch: Vec<Queued>, timeout: Duration) {
    let stamps: Vec<u64> = batch.iter().map(|q| q.proposal.ts).collect();
    let (mut proposals, answers): (Vec<Proposal>, Vec<_>) = batch.into_iter().map(|q| (q.proposal, q.answer)).unzip();
    let entry = match proposals.len() {
        1 => proposals.pop(),
        _ => {
            let ts = stamps.iter().copied().max().unwrap_or_default();
            Some(Proposal { ts, command: Command::Batch(proposals.into()) })
        }
    };
    let Some(entry) = entry else { return };
    let outcome = raft_answer(raft, entry, timeout).await;
    for ts in stamps {
        in_flight.settle(ts);
    }
    let results: Vec<Result<ApplyResult, KvError>> = match outcome {
        None => {
            tracing::warn!(partition = p, "a log entry was settled without Raft's answer (a snapshot covered it)");
            let error = KvError::Timeout(format!(
                "partition {p}: Raft did not answer the write before this node applied past its log entry; \
                 the write may have applied"
            ));
            answers.iter().map(|_| Err(error.clone())).collect()
        }
        Some(Err(e)) => {
            let error = write_error(p, e);
            answers.iter().map(|_| Err(error.clone())).collect()
        }
        Some(Ok(response)) => match response.data {
            ApplyResult::Batch(results) if results.len() == answers.len() && answers.len() > 1 => {
                results.into_iter().map(Ok).collect()
            }
            data if answers.len() == 1 => vec![Ok(data)],
            other => {
                let error = KvError::Internal(format!(
                    "partition {p}: a batch of {} proposals was answered with {other:?}",
                    answers.len()
                ));
                answers.iter().map(|_| Err(error.clone())).collect()
            }
        },
    };
    for (answer, result) in answers.into_iter().zip(results) {
        // A proposer that gave up (timed out, dropped) needs no answer.
        let _ = answer.send(result);
    }
}

/// What `Raft::client_write` returns.
type ClientWriteOutcome = Result<ClientWriteResponse<TypeConfig>, RaftError<u64, ClientWriteError<u64, BasicNode>>>;

/// Raft's answer to `entry`, or `None` once the entry's fate is settled on this node
/// without one (committed or not, this node has applied past its index): nothing can
/// commit it later, so its stamps may leave the in-flight set and the next entry may go.
///
/// Past `timeout` without an answer, this finds a bound on the entry's index: a request
/// to the core queues behind the write, and the metrics the core publishes after that
/// request ran (it publishes at the top of every loop, changed or not) have a last log
/// index at or above the entry's, if the entry is still in the log. Then it waits until
/// this node has applied that far. openraft sends the answer of an entry it applies
/// before it publishes the applied index, and the answer is polled first, so an entry
/// applied the normal way is never taken for a swallowed one.
async fn raft_answer(raft: &Raft, entry: Proposal, timeout: Duration) -> Option<ClientWriteOutcome> {
    let write = raft.client_write(entry);
    tokio::pin!(write);
    if let Ok(outcome) = tokio::time::timeout(timeout, &mut write).await {
        return Some(outcome);
    }
    tokio::select! {
        biased;
        outcome = &mut write => Some(outcome),
        // `None` (the core stopped) disables this branch; the write then ends with the error.
        Some(()) = applied_past_last_entry(raft) => None,
    }
}

/// Waits until this node has applied past the last log index the core reports after the
/// requests already queued to it; `None` if the core stopped.
async fn applied_past_last_entry(raft: &Raft) -> Option<()> {
    let mut metrics = raft.metrics();
    raft.with_raft_state(|_| ()).await.ok()?;
    metrics.borrow_and_update();
    metrics.changed().await.ok()?;
    let bound = metrics.borrow_and_update().last_log_index.unwrap_or(0);
    let applied_past = |m: &RaftMetrics<u64, BasicNode>| m.last_applied.as_ref().map_or(0, |a| a.index) >= bound;
    metrics.wait_for(applied_past).await.ok().map(drop)
}
