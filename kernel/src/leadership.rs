//! Linearizable reads confirmed for all of a node's partitions at once.
//!
//! A linearizable read must not miss a write acknowledged before it began, and only the
//! partition's current leader knows all of those. Raft's ReadIndex confirms that the
//! leader still leads with a round of heartbeats to a quorum; openraft 0.9 does that per
//! partition (`ensure_linearizable`: a heartbeat to every follower, through each
//! partition's core, on both sides). With 16 partitions that was most of a 3-node read's
//! CPU, so a node confirms every partition it leads in one round: one `ConfirmLeader`
//! message per peer, listing each partition and the vote this node leads it under, and
//! each peer answers from the votes in its own log, without openraft.
//!
//! Why that confirms leadership. Votes only grow, and a node grants a candidate its vote
//! (or follows a new leader) only after that vote is in its log's index
//! (`LogStore::save_vote` returns once the storage thread has written it). A leader of
//! `V`'s term and node elected after `V` needs a quorum holding a vote past `V`; if a
//! quorum (this node included, checked the same way) holds exactly `V`'s leader when
//! asked, after the read began, no such leader had been elected when the read began, so
//! every write acknowledged by then was committed under `V` or before it. The leader has
//! all of them applied once it has applied an entry of its own term (Raft's leader
//! completeness; applied entries are in order), and every write it acknowledged itself
//! was applied before its answer: the read then needs no wait for the state machine.
//!
//! Anything short of that — not the leader in the metrics, no entry of its term applied
//! yet, a joint membership, a peer that does not answer in time or answers with another
//! vote — sends the partition's waiters down openraft's own path, which decides (a
//! `NotLeader` error with the leader, a wait, or `Unavailable`). This path only says yes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Weak;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use openraft::error::{CheckIsLeaderError, RaftError};
use openraft::{BasicNode, RaftMetrics, ServerState, Vote};
use tokio::sync::{mpsc, oneshot};

use crate::error::KvError;
use crate::network::{MessageKind, NodeMessage, decode_payload, encode_payload};
use crate::node::Inner;
use crate::partition::Partition;
use crate::raft_types::Raft;
use crate::types::{NodeId, PartitionId};

/// A linearizable read waiting for its partition's leadership to be confirmed.
pub(crate) type ReadWaiter = oneshot::Sender<Result<(), KvError>>;

/// How long a round waits for peers before the partitions it could not confirm go to
/// openraft's path.
const CONFIRM_TIMEOUT: Duration = Duration::from_millis(500);

/// What a `ConfirmLeader` message asks: for each partition, the vote its sender leads it
/// under. The reply holds one `bool` per entry: whether the receiver holds that vote.
pub(crate) type ConfirmRequest = Vec<(PartitionId, Vote<NodeId>)>;

/// This node's claim to lead one partition, read from its metrics and its log.
#[derive(Debug, Clone, PartialEq)]
struct Claim {
    vote: Vote<NodeId>,
    voters: BTreeSet<NodeId>,
}

/// Whether this node leads `partition` as its only voter, so that a read there needs no
/// round at all (one node: a quorum of itself, checked as a round would).
pub(crate) fn leads_alone(partition: &Partition) -> bool {
    let metrics = partition.raft.metrics();
    let m = metrics.borrow();
    // Voters first: on a cluster of several nodes every read passes here, and the claim
    // (the log's vote) is for the round to make.
    let alone = matches!(m.membership_config.membership().get_joint_config().as_slice(),
        [voters] if voters.len() == 1);
    alone && claimable(partition, &m).is_some()
}

/// The claim this node can make for `partition`, or `None` when only openraft can tell.
fn claim(partition: &Partition) -> Option<Claim> {
    let metrics = partition.raft.metrics();
    let m = metrics.borrow();
    let voters = claimable(partition, &m)?.clone();
    Some(Claim { vote: m.vote, voters })
}

/// The voters to ask when `m` (this node's metrics for `partition`) lets it claim to lead
/// the partition, else `None`.
fn claimable<'m>(partition: &Partition, m: &'m RaftMetrics<NodeId, BasicNode>) -> Option<&'m BTreeSet<NodeId>> {
    // An entry of its own term applied (one leader per term: openraft's `single-term-leader`):
    // everything committed before the term is applied too.
    let applied_in_term = m.last_applied.is_some_and(|applied| applied.leader_id.term == m.vote.leader_id.term);
    if m.state != ServerState::Leader || !m.vote.is_committed() || !applied_in_term {
        return None;
    }
    let [voters] = m.membership_config.membership().get_joint_config().as_slice() else { return None };
    (voters.contains(&m.id) && holds(partition, &m.vote)).then_some(voters)
}

/// Whether this node's log holds `vote`'s leader (term and node) for the partition.
fn holds(partition: &Partition, vote: &Vote<NodeId>) -> bool {
    partition.stored_vote().is_some_and(|stored| stored.leader_id == vote.leader_id)
}

/// A peer's answer to `ConfirmLeader`: for each entry, whether this node holds that vote.
pub(crate) fn answer(partitions: &[std::sync::Arc<Partition>], request: &ConfirmRequest) -> Vec<bool> {
    request
        .iter()
        .map(|(p, vote)| partitions.get(*p as usize).is_some_and(|partition| holds(partition, vote)))
        .collect()
}

/// Serves the node's linearizable-read rounds: every waiter queued before a round starts
/// shares it, whatever its partition. Ends with the node.
pub(crate) async fn read_rounds(inner: Weak<Inner>, mut waiters: mpsc::UnboundedReceiver<(PartitionId, ReadWaiter)>) {
    while let Some(first) = waiters.recv().await {
        let mut by_partition: BTreeMap<PartitionId, Vec<ReadWaiter>> = BTreeMap::new();
        let mut add = |(p, waiter): (PartitionId, ReadWaiter)| by_partition.entry(p).or_default().push(waiter);
        add(first);
        while let Ok(next) = waiters.try_recv() {
            add(next);
        }
        let Some(inner) = inner.upgrade() else { return };
        let me = inner.config.node_id;
        let claims: BTreeMap<PartitionId, Claim> = by_partition
            .keys()
            .filter_map(|&p| inner.partitions.get(p as usize).and_then(|partition| claim(partition)).map(|c| (p, c)))
            .collect();
        let confirmed = confirm(&inner, me, &claims).await;
        for (p, waiters) in by_partition {
            if confirmed.contains(&p) {
                for waiter in waiters {
                    let _ = waiter.send(Ok(()));
                }
            } else if let Some(partition) = inner.partitions.get(p as usize) {
                tokio::spawn(confirm_with_openraft(partition.raft.clone(), p, partition.timeout(), waiters));
            }
        }
    }
}

/// Asks every peer named in `claims` whether it holds the claimed votes, and returns the
/// partitions a quorum confirmed (as soon as all are, or when the answers are in or late).
async fn confirm(inner: &Inner, me: NodeId, claims: &BTreeMap<PartitionId, Claim>) -> BTreeSet<PartitionId> {
    let mut granted: BTreeMap<PartitionId, usize> = claims.keys().map(|&p| (p, 1)).collect();
    let mut confirmed: BTreeSet<PartitionId> =
        claims.iter().filter(|(_, c)| quorum(&c.voters, 1)).map(|(&p, _)| p).collect();
    let peers: BTreeSet<NodeId> = claims.values().flat_map(|c| c.voters.iter().copied()).filter(|&n| n != me).collect();
    let mut calls: FuturesUnordered<_> = peers
        .into_iter()
        .map(|peer| {
            let asked: ConfirmRequest =
                claims.iter().filter(|(_, c)| c.voters.contains(&peer)).map(|(&p, c)| (p, c.vote)).collect();
            let message = NodeMessage {
                partition: 0,
                hlc: inner.hlc.now(),
                kind: MessageKind::ConfirmLeader,
                from: me,
                payload: encode_payload(&asked),
            };
            let call = inner.transport.call(peer, message, CONFIRM_TIMEOUT);
            async move { (asked, call.await) }
        })
        .collect();
    while confirmed.len() < claims.len()
        && let Some((asked, reply)) = calls.next().await
    {
        let held: Vec<bool> = match reply {
            Ok(reply) => {
                inner.hlc.observe(reply.hlc);
                decode_payload(&reply.payload).unwrap_or_default()
            }
            Err(e) => {
                tracing::debug!("leadership not confirmed by node {}: {}", e.target, e.reason);
                continue;
            }
        };
        for ((p, _), _) in asked.iter().zip(held).filter(|(_, held)| *held) {
            let count = granted.entry(*p).or_default();
            *count += 1;
            if claims.get(p).is_some_and(|c| quorum(&c.voters, *count)) {
                confirmed.insert(*p);
            }
        }
    }
    confirmed
}

/// Whether `granted` of `voters` are a majority.
fn quorum(voters: &BTreeSet<NodeId>, granted: usize) -> bool {
    granted * 2 > voters.len()
}

/// openraft's own ReadIndex round for one partition's waiters: heartbeats to its
/// followers, then a wait until the state machine reaches the read index.
async fn confirm_with_openraft(raft: Raft, p: PartitionId, timeout: Duration, waiters: Vec<ReadWaiter>) {
    let outcome = match tokio::time::timeout(timeout, raft.ensure_linearizable()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(read_error(p, e)),
        Err(_) => Err(KvError::Unavailable(format!(
            "partition {p}: leadership not confirmed within {} ms",
            timeout.as_millis()
        ))),
    };
    for waiter in waiters {
        let _ = waiter.send(outcome.clone());
    }
}

fn read_error(p: PartitionId, e: RaftError<u64, CheckIsLeaderError<u64, BasicNode>>) -> KvError {
    match e {
        RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)) => {
            KvError::NotLeader { partition: p, leader: f.leader_id }
        }
        RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(q)) => {
            KvError::Unavailable(format!("partition {p}: no quorum confirmed the leader ({q})"))
        }
        RaftError::Fatal(f) => KvError::Unavailable(format!("partition {p} is stopped: {f}")),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::network::NoPeers;
    use crate::node::{Kernel, KernelConfig};

    /// A node of three whose peers never answer stands for election in its first term and
    /// stays a candidate: its log holds its vote for itself. As a peer asked to confirm, it
    /// says yes to that vote's leader only.
    #[tokio::test]
    async fn a_peer_confirms_only_the_leader_its_log_holds() {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = KernelConfig {
            node_id: 1,
            peers: (1..=3).map(|n| (n, format!("127.0.0.1:{}", 2069 + n))).collect(),
            data_dir: dir.path().to_owned(),
            partitions: Some(1),
            // Partition 0 prefers node 1, which stands at once; the next try is a minute on.
            election_timeout_ms: Some(60_000),
            ..Default::default()
        };
        let kernel = Kernel::open(config, Arc::new(NoPeers)).await.expect("kernel opens");
        let mut held = None;
        for _ in 0..250 {
            held = kernel.partition(0).expect("partition 0").stored_vote();
            if held.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let held = held.expect("node 1 voted for itself");
        let term = held.leader_id.term;
        assert_eq!(held.leader_id.voted_for, Some(1));
        let asked: ConfirmRequest = vec![
            (0, Vote::new_committed(term, 1)),
            (0, Vote::new(term, 1)),
            (0, Vote::new_committed(term, 2)),
            (0, Vote::new_committed(term + 1, 1)),
            (0, Vote::new_committed(term - 1, 1)),
            (7, Vote::new_committed(term, 1)),
        ];
        let message = NodeMessage {
            partition: 0,
            hlc: 0,
            kind: MessageKind::ConfirmLeader,
            from: 2,
            payload: encode_payload(&asked),
        };
        let reply = kernel.handle(message).await.expect("answered");
        let held: Vec<bool> = decode_payload(&reply.payload).expect("a list of answers");
        assert_eq!(held, [true, true, false, false, false, false]);
        kernel.shutdown().await;
    }

    #[test]
    fn a_majority_of_the_voters_is_a_quorum() {
        let three: BTreeSet<NodeId> = [1, 2, 3].into();
        assert!(!quorum(&three, 1));
        assert!(quorum(&three, 2));
        let one: BTreeSet<NodeId> = [1].into();
        assert!(quorum(&one, 1));
        let four: BTreeSet<NodeId> = [1, 2, 3, 4].into();
        assert!(!quorum(&four, 2));
        assert!(quorum(&four, 3));
    }
}
