//! One partition on one node: its openraft group, its ephemeral keyspace, and the
//! read and write paths that keep timestamps ordered.
//!
//! Ordering rule (DESIGN §3): a read at timestamp T must not miss a write that later
//! commits at or below T. Proposals are stamped and registered as in flight under one
//! lock; a read at T first advances the HLC past T under the same lock (so later
//! proposals are stamped above T), then waits for every in-flight proposal stamped at
//! or below T to finish before it takes its read index.

mod coord;
mod proposals;
mod txn;

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, Config, ServerState, SnapshotPolicy};
use rand::Rng;
use tokio::sync::{Notify, mpsc, oneshot};

use crate::error::{KvError, OpenError};
use crate::hlc::{Hlc, from_physical_ms, physical_ms};
use crate::leadership::ReadWaiter;
use crate::limits::BUCKET_KEYS_MAX;
use crate::lock_waits::LockWaits;
use crate::locks::LockRecord;
use crate::log_store::LogStore;
use crate::memspace::MemSpace;
use crate::mvcc::{KeyReader, KeySpace, apply_write, read_point, scan_prefix};
use crate::network::{Network, Refusal, Transport};
use crate::raft_types::{ApplyResult, Command, Proposal, Raft};
use crate::redb_space::RedbSpace;
use crate::routing::bucket_of;
use crate::schema::{INTENTS, VERSIONS};
use crate::state_machine::{LockOperationRecord, OperationRecord, StateMachine, compacted_before};
use crate::storage::Storage;
use crate::txn_state;
use crate::types::{
    Consistency, Durability, NodeId, PartitionId, PartitionRequest, PartitionResponse, PartitionStatus, ScannedRange,
    WriteOp, WriteResult,
};

/// How long a node that is not a partition's preferred leader waits before forming
/// the partition itself.
const INITIALIZE_DELAY: Duration = Duration::from_millis(2000);

/// Longest a node whose candidacy a peer refused for a longer log stays out of the
/// partition's elections, in the partition's longest election timeouts ([`stand_aside`]).
const STAND_ASIDE_TIMEOUTS: u64 = 5;

/// How far ahead of this node's time (its HLC, merged from the whole cluster, or its
/// wall clock, whichever is later) an `as of` timestamp may be.
const AS_OF_FUTURE_MS_MAX: u64 = 60_000;

/// Settings a partition is started with.
#[derive(Debug, Clone)]
pub(crate) struct PartitionSettings {
    pub(crate) node_id: NodeId,
    pub(crate) peers: BTreeMap<NodeId, String>,
    pub(crate) snapshot_logs: u64,
    pub(crate) request_timeout: Duration,
    /// This node should lead the partition when it can (spreads leaders over nodes).
    pub(crate) preferred_leader: bool,
    /// A fixed election timeout instead of a random one (`KernelConfig::election_timeout_ms`).
    pub(crate) election_timeout_ms: Option<u64>,
}

/// The ephemeral keyspace, valid for one leadership term.
#[derive(Default)]
struct Ephemeral {
    term: u64,
    space: MemSpace,
    operations: HashMap<String, OperationRecord>,
    compacted_before: u64,
    /// Ephemeral locks; their tokens carry `term` in the high bits.
    locks: HashMap<String, LockRecord>,
    lock_operations: HashMap<String, LockOperationRecord>,
}

/// Proposal timestamps not yet answered by Raft, with their counts.
#[derive(Default)]
struct InFlight {
    stamps: Mutex<BTreeMap<u64, usize>>,
    settled: Notify,
}

impl InFlight {
    fn settle(&self, ts: u64) {
        let mut stamps = lock(&self.stamps);
        if let Some(count) = stamps.get_mut(&ts) {
            *count -= 1;
            if *count == 0 {
                stamps.remove(&ts);
            }
        }
        drop(stamps);
        self.settled.notify_waiters();
    }
}

pub(crate) struct Partition {
    id: PartitionId,
    pub(crate) raft: Raft,
    storage: Arc<Storage>,
    hlc: Arc<Hlc>,
    timeout: Duration,
    /// Proposals not yet answered.
    in_flight: Arc<InFlight>,
    /// The queue of proposals to Raft (`proposals::propose_batches`).
    proposals: mpsc::UnboundedSender<proposals::Queued>,
    /// The node's linearizable-read rounds (`leadership::read_rounds`).
    reads: mpsc::UnboundedSender<(PartitionId, ReadWaiter)>,
    ephemeral: Mutex<Ephemeral>,
    /// Try-lock requests waiting for a lock held by someone else.
    waits: Arc<LockWaits>,
    snapshots_installed: Arc<std::sync::atomic::AtomicU64>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves its data consistent before anything can panic.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn write_error(p: PartitionId, e: RaftError<u64, ClientWriteError<u64, BasicNode>>) -> KvError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
            KvError::NotLeader { partition: p, leader: f.leader_id }
        }
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => KvError::Internal(e.to_string()),
        RaftError::Fatal(f) => KvError::Unavailable(format!("partition {p} is stopped: {f}")),
    }
}

impl Partition {
    pub(crate) async fn open(
        id: PartitionId,
        settings: &PartitionSettings,
        storage: Arc<Storage>,
        hlc: Arc<Hlc>,
        transport: Arc<dyn Transport>,
        reads: mpsc::UnboundedSender<(PartitionId, ReadWaiter)>,
    ) -> Result<Arc<Self>, OpenError> {
        let (election_min, election_max) =
            election_timeout_range(settings.election_timeout_ms, settings.preferred_leader);
        // The partition's longest election timeout: that of a node other than its
        // preferred leader (with fixed timeouts, as this node would have it).
        let (_, election_max_any) = election_timeout_range(settings.election_timeout_ms, false);
        let pauses = Pauses {
            longer_log: Duration::from_millis(STAND_ASIDE_TIMEOUTS * election_max_any),
            split_vote_ms: election_max..election_max + election_max_any,
        };
        let config = Config {
            cluster_name: format!("kahuna-partition-{id}"),
            heartbeat_interval: 100,
            election_timeout_min: election_min,
            election_timeout_max: election_max,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(settings.snapshot_logs),
            max_in_snapshot_log_to_keep: settings.snapshot_logs / 2,
            ..Default::default()
        }
        .validate()
        .map_err(|e| OpenError::Config(e.to_string()))?;
        let state_machine = StateMachine::new(id, storage.clone(), hlc.clone());
        let snapshots_installed = state_machine.installed.clone();
        let (refusals, refusals_rx) = mpsc::unbounded_channel();
        let network = Network { node_id: settings.node_id, partition: id, transport, hlc: hlc.clone(), refusals };
        let raft =
            Raft::new(settings.node_id, Arc::new(config), network, LogStore::new(id, storage.clone()), state_machine)
                .await
                .map_err(|e| OpenError::Raft(e.to_string()))?;
        let initialized = raft.is_initialized().await.map_err(|e| OpenError::Raft(e.to_string()))?;
        if !initialized {
            // The preferred leader initializes a fresh partition at once and so wins its
            // first election; the others do the same (openraft allows several nodes to
            // initialize with identical members) only if it has not reached them after
            // a while, so a cluster still forms when the preferred node is down.
            let members: BTreeMap<NodeId, BasicNode> =
                settings.peers.iter().map(|(id, addr)| (*id, BasicNode::new(addr.clone()))).collect();
            let delay = if settings.preferred_leader { Duration::ZERO } else { INITIALIZE_DELAY };
            let raft = raft.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                if raft.is_initialized().await.is_ok_and(|done| !done)
                    && let Err(e) = raft.initialize(members).await
                {
                    tracing::debug!(partition = id, "initialize: {e}");
                }
            });
        }
        let in_flight = Arc::<InFlight>::default();
        let (proposals, queue) = mpsc::unbounded_channel();
        tokio::spawn(proposals::propose_batches(id, raft.clone(), in_flight.clone(), queue, settings.request_timeout));
        let partition = Arc::new(Self {
            id,
            raft,
            storage,
            hlc,
            timeout: settings.request_timeout,
            in_flight,
            proposals,
            reads,
            ephemeral: Mutex::default(),
            waits: Arc::default(),
            snapshots_installed,
        });
        tokio::spawn(stand_aside(Arc::downgrade(&partition), refusals_rx, pauses));
        Ok(partition)
    }

    /// The vote in this node's log for the partition.
    pub(crate) fn stored_vote(&self) -> Option<openraft::Vote<NodeId>> {
        self.storage.log().vote(self.id)
    }

    /// How long a request may wait on this partition.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The leader this node knows of.
    pub(crate) fn leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader
    }

    /// The current term if this node leads the partition.
    fn leader_term(&self) -> Option<u64> {
        let m = self.raft.metrics();
        let m = m.borrow();
        (m.state == ServerState::Leader).then_some(m.current_term)
    }

    /// Waits until some leader is known, up to the request timeout.
    pub(crate) async fn await_leader(&self) -> Result<NodeId, KvError> {
        let wait = self.raft.wait(Some(self.timeout));
        match wait.metrics(|m| m.current_leader.is_some(), "a leader is known").await {
            Ok(m) => m.current_leader.ok_or_else(|| self.no_leader()),
            Err(_) => Err(self.no_leader()),
        }
    }

    fn no_leader(&self) -> KvError {
        KvError::Unavailable(format!("partition {} has no leader (election in progress or no quorum)", self.id))
    }

    /// Confirms with a quorum that this node still leads, sharing one round with
    /// every read that arrived before the round started; at once when this node is the
    /// partition's only voter.
    async fn barrier(&self) -> Result<(), KvError> {
        if crate::leadership::leads_alone(self) {
            return Ok(());
        }
        let (tx, rx) = oneshot::channel();
        self.reads.send((self.id, tx)).map_err(|_| self.no_leader())?;
        rx.await.map_err(|_| self.no_leader())?
    }

    /// Serves a request on this node; `NotLeader` when it must go to the leader.
    pub(crate) async fn execute(&self, request: &PartitionRequest) -> Result<PartitionResponse, KvError> {
        match request {
            PartitionRequest::Write { ops, operation_id, durability: Durability::Persistent } => {
                self.write(ops.clone(), operation_id.clone()).await.map(PartitionResponse::Write)
            }
            PartitionRequest::Write { ops, operation_id, durability: Durability::Ephemeral } => {
                self.ephemeral_write(ops, operation_id.as_deref()).await.map(PartitionResponse::Write)
            }
            PartitionRequest::Lock { op, durability, operation_id, wait_ms } => {
                self.lock_op(op, *durability, operation_id.as_deref(), *wait_ms).await.map(PartitionResponse::Lock)
            }
            PartitionRequest::GetLock { name, durability, consistency } => {
                self.get_lock(name, *durability, *consistency).await.map(PartitionResponse::Lock)
            }
            PartitionRequest::Sequence { op } => self.sequence_op(op.clone()).await.map(PartitionResponse::Sequence),
            PartitionRequest::GetSequence { name, consistency } => {
                self.get_sequence(name, *consistency).await.map(PartitionResponse::Sequence)
            }
            PartitionRequest::TxnCommit { .. }
            | PartitionRequest::TxnPrepare { .. }
            | PartitionRequest::TxnDecide { .. }
            | PartitionRequest::TxnResolve { .. } => self.txn_step(request).await.map(PartitionResponse::Txn),
            read => self.read(read).await,
        }
    }

    async fn write(&self, ops: Vec<WriteOp>, operation_id: Option<String>) -> Result<Vec<WriteResult>, KvError> {
        match self.propose(Command::Write { ops, operation_id }).await? {
            ApplyResult::Write(results) => Ok(results),
            ApplyResult::Blocked(e) => Err(e),
            other => Err(KvError::Internal(format!("unexpected apply result {other:?}"))),
        }
    }

    /// Stamps `command` with the HLC, proposes it and returns what applying it produced.
    ///
    /// The proposal goes through the partition's queue (`proposals`), perhaps in one entry
    /// with others, and leaves the in-flight set only when Raft answers that entry, even if
    /// this future is dropped or times out first (a forwarding node died, the request timed
    /// out): until then it may still commit, at its stamp, so a read at or above the stamp
    /// must keep waiting for it.
    async fn propose(&self, command: Command) -> Result<ApplyResult, KvError> {
        let ts = {
            let mut stamps = lock(&self.in_flight.stamps);
            let ts = self.hlc.now();
            *stamps.entry(ts).or_default() += 1;
            ts
        };
        let started = std::time::Instant::now();
        let (answer, answered) = oneshot::channel();
        let queued = proposals::Queued { proposal: Proposal { ts, command }, answer };
        if self.proposals.send(queued).is_err() {
            self.in_flight.settle(ts);
            return Err(KvError::Unavailable(format!("partition {} is stopped", self.id)));
        }
        let outcome = tokio::time::timeout(self.timeout, answered).await;
        tracing::trace!(partition = self.id, commit_us = started.elapsed().as_micros() as u64, "proposal answered");
        match outcome {
            Err(_) => Err(KvError::Timeout(format!(
                "partition {}: not committed within {} ms; the write may still apply",
                self.id,
                self.timeout.as_millis()
            ))),
            Ok(Err(_)) => Err(KvError::Internal(format!("partition {}: the proposal was dropped unanswered", self.id))),
            Ok(Ok(result)) => result,
        }
    }

    /// Makes a read at `as_of` safe: no proposal at or below it is still in flight,
    /// and every later one is stamped above it.
    async fn fence_time(&self, as_of: u64) -> Result<(), KvError> {
        // Judged against the merged HLC, not only the wall clock: a timestamp another node
        // issued with a clock ahead of ours is still a time the cluster has reached.
        let now_ms = physical_ms(self.hlc.peek()).max(self.hlc.wall_ms());
        if physical_ms(as_of) > now_ms + AS_OF_FUTURE_MS_MAX {
            return Err(KvError::InvalidInput(format!("as-of timestamp {as_of} is in the future")));
        }
        let wait = async {
            loop {
                let settled = self.in_flight.settled.notified();
                {
                    let in_flight = lock(&self.in_flight.stamps);
                    self.hlc.observe(as_of);
                    if in_flight.keys().next().is_none_or(|first| *first > as_of) {
                        return;
                    }
                }
                settled.await;
            }
        };
        tokio::time::timeout(self.timeout, wait)
            .await
            .map_err(|_| KvError::Timeout(format!("partition {}: writes before {as_of} did not settle", self.id)))
    }

    async fn ephemeral_write(&self, ops: &[WriteOp], operation_id: Option<&str>) -> Result<Vec<WriteResult>, KvError> {
        self.with_ephemeral(|eph, ts| {
            if let Some(record) = operation_id.and_then(|id| eph.operations.get(id)) {
                return Ok(record.results.clone());
            }
            let results = ops
                .iter()
                .map(|op| apply_write(&mut eph.space, op, ts))
                .collect::<Result<Vec<_>, _>>()
                .map_err(KvError::from)?;
            if let Some(id) = operation_id {
                eph.operations.insert(id.to_owned(), OperationRecord { ts, results: results.clone() });
            }
            Ok(results)
        })
        .await
    }

    /// Runs `change` on the ephemeral state of the current term at a fresh HLC
    /// timestamp, once a quorum confirmed that this node leads.
    async fn with_ephemeral<T>(
        &self,
        change: impl FnOnce(&mut Ephemeral, u64) -> Result<T, KvError>,
    ) -> Result<T, KvError> {
        // Confirm leadership first, so a deposed leader cannot accept ephemeral writes.
        let term = self.leader_term().ok_or(KvError::NotLeader { partition: self.id, leader: self.leader() })?;
        self.barrier().await?;
        let mut eph = lock(&self.ephemeral);
        if self.leader_term() != Some(term) {
            return Err(KvError::NotLeader { partition: self.id, leader: self.leader() });
        }
        if eph.term != term {
            *eph = Ephemeral { term, ..Default::default() };
        }
        change(&mut eph, self.hlc.now())
    }

    async fn read(&self, request: &PartitionRequest) -> Result<PartitionResponse, KvError> {
        let (durability, consistency) = (request.durability(), read_consistency(request));
        let as_of = match request {
            PartitionRequest::Read { reads, .. } => reads.iter().filter_map(|r| r.as_of).max(),
            PartitionRequest::Scan { as_of, .. } => *as_of,
            _ => None,
        };
        if let Some(as_of) = as_of
            && consistency == Consistency::Linearizable
        {
            self.fence_time(as_of).await?;
        }
        match durability {
            Durability::Persistent => {
                if consistency == Consistency::Linearizable {
                    self.barrier().await?;
                }
                let txn = self.storage.read().await?;
                let table = txn.open_table(VERSIONS).map_err(|e| KvError::Internal(e.to_string()))?;
                let horizon = compacted_before(&txn, self.id)?;
                let intents = txn.open_table(INTENTS).map_err(|e| KvError::Internal(e.to_string()))?;
                check_intents(&intents, self.id, request)?;
                let space = RedbSpace { table: &table, index: self.storage.index(), partition: self.id };
                answer_read(&space, request, self.hlc.now(), horizon)
            }
            Durability::Ephemeral => {
                let eph = self.ephemeral_state(consistency).await?;
                let empty = MemSpace::default();
                let (space, horizon) = match &eph {
                    Some(eph) => (&eph.space, eph.compacted_before),
                    None => (&empty, 0),
                };
                answer_read(space, request, self.hlc.now(), horizon)
            }
        }
    }

    /// Confirms that this node leads (with a quorum when `consistency` asks for it) and
    /// returns the ephemeral state of the current term, `None` when the term has none.
    async fn ephemeral_state(&self, consistency: Consistency) -> Result<Option<MutexGuard<'_, Ephemeral>>, KvError> {
        let term = self.leader_term().ok_or(KvError::NotLeader { partition: self.id, leader: self.leader() })?;
        if consistency == Consistency::Linearizable {
            self.barrier().await?;
        }
        let eph = lock(&self.ephemeral);
        Ok((eph.term == term).then_some(eph))
    }

    /// Drops history older than `before_ts` and operation records older than
    /// `operations_before_ts`, when this node leads (replicas follow the entry).
    pub(crate) async fn compact(&self, before_ts: u64, operations_before_ts: u64) {
        if self.leader_term().is_none() {
            return;
        }
        {
            let mut eph = lock(&self.ephemeral);
            if let Err(e) = eph.space.compact(before_ts) {
                tracing::warn!(partition = self.id, "ephemeral compaction: {e}");
            }
            eph.operations.retain(|_, r| r.ts >= operations_before_ts);
            eph.lock_operations.retain(|_, r| r.ts >= operations_before_ts);
            eph.compacted_before = eph.compacted_before.max(before_ts);
        }
        let proposal = Proposal { ts: self.hlc.now(), command: Command::Compact { before_ts, operations_before_ts } };
        match tokio::time::timeout(self.timeout, self.raft.client_write(proposal)).await {
            Ok(Ok(r)) => tracing::debug!(partition = self.id, "compacted: {:?}", r.data),
            Ok(Err(e)) => tracing::debug!(partition = self.id, "compaction not proposed: {e}"),
            Err(_) => tracing::debug!(partition = self.id, "compaction timed out"),
        }
    }

    /// This replica's view of the partition.
    pub(crate) fn status(&self) -> PartitionStatus {
        let m = self.raft.metrics();
        let m = m.borrow();
        let role = match m.state {
            ServerState::Leader => "leader",
            ServerState::Follower => "follower",
            ServerState::Candidate => "candidate",
            ServerState::Learner => "learner",
            ServerState::Shutdown => "shutdown",
        };
        PartitionStatus {
            partition: self.id,
            leader: m.current_leader,
            term: m.current_term,
            role: role.to_owned(),
            last_log_index: m.last_log_index.unwrap_or(0),
            applied_index: m.last_applied.map_or(0, |l| l.index),
            snapshot_index: m.snapshot.map_or(0, |l| l.index),
            voters: m.membership_config.membership().voter_ids().collect(),
            snapshots_installed: self.snapshots_installed.load(std::sync::atomic::Ordering::Relaxed),
        }
    }
}

fn read_consistency(request: &PartitionRequest) -> Consistency {
    match request {
        PartitionRequest::Read { consistency, .. }
        | PartitionRequest::Bucket { consistency, .. }
        | PartitionRequest::Scan { consistency, .. }
        | PartitionRequest::GetLock { consistency, .. }
        | PartitionRequest::GetSequence { consistency, .. } => *consistency,
        PartitionRequest::Write { .. }
        | PartitionRequest::Lock { .. }
        | PartitionRequest::Sequence { .. }
        | PartitionRequest::TxnCommit { .. }
        | PartitionRequest::TxnPrepare { .. }
        | PartitionRequest::TxnDecide { .. }
        | PartitionRequest::TxnResolve { .. } => Consistency::Linearizable,
    }
}

/// Refuses (with `Locked`) a snapshot read that a prepared transaction may still change.
fn check_intents<T>(intents: &T, p: PartitionId, request: &PartitionRequest) -> Result<(), KvError>
where
    T: redb::ReadableTable<(u32, &'static str, &'static str), &'static [u8]>,
{
    match request {
        PartitionRequest::Read { reads, .. } => {
            for read in reads {
                if let Some(as_of) = read.as_of {
                    txn_state::check_read(intents, p, &read.key, as_of)??;
                }
            }
            Ok(())
        }
        PartitionRequest::Scan { prefix, after, as_of: Some(as_of), .. } => {
            let range = ScannedRange { prefix: prefix.clone(), after: after.clone(), through: None };
            txn_state::check_scan(intents, p, &range, *as_of)?
        }
        _ => Ok(()),
    }
}

/// Answers a read request from a keyspace.
fn answer_read(
    space: &impl KeyReader,
    request: &PartitionRequest,
    now: u64,
    horizon: u64,
) -> Result<PartitionResponse, KvError> {
    match request {
        PartitionRequest::Read { reads, .. } => {
            let values = reads.iter().map(|r| read_point(space, r, now, horizon)).collect::<Result<Vec<_>, _>>()?;
            Ok(PartitionResponse::Read(values))
        }
        PartitionRequest::Bucket { bucket, .. } => {
            // A bucket's keys share the prefix "bucket/" (or are the bucket itself).
            let prefix = format!("{bucket}/");
            let (mut items, more) = scan_prefix(space, &prefix, None, BUCKET_KEYS_MAX, None, now)?;
            if more {
                return Err(KvError::InvalidInput(format!(
                    "bucket {bucket:?} has more than {BUCKET_KEYS_MAX} keys; read it with a prefix scan"
                )));
            }
            items.retain(|kv| bucket_of(&kv.key) == bucket);
            let own = crate::types::PointRead { key: bucket.clone(), at_revision: None, as_of: None };
            if let Some(kv) = read_point(space, &own, now, horizon)?
                && bucket_of(&kv.key) == bucket
            {
                items.insert(0, kv);
            }
            Ok(PartitionResponse::Items { items, more: false })
        }
        PartitionRequest::Scan { prefix, after, limit, as_of, .. } => {
            if let Some(as_of) = as_of
                && *as_of < horizon
            {
                return Err(KvError::Compacted(format!(
                    "timestamp {as_of} is older than the retained history (from {horizon})"
                )));
            }
            let (items, more) = scan_prefix(space, prefix, after.as_deref(), *limit as usize, *as_of, now)?;
            Ok(PartitionResponse::Items { items, more })
        }
        other => Err(KvError::Internal(format!("{other:?} reached the key read path"))),
    }
}

/// A partition's election timeouts on a node, (min, max) in ms: shorter on its preferred
/// leader. `fixed_ms` is `KernelConfig::election_timeout_ms`.
fn election_timeout_range(fixed_ms: Option<u64>, preferred_leader: bool) -> (u64, u64) {
    // openraft draws from min..max: a range of one millisecond fixes the draw.
    match (fixed_ms, preferred_leader) {
        (None, true) => (300, 500),
        (None, false) => (700, 1200),
        (Some(ms), true) => (ms, ms + 1),
        (Some(ms), false) => (ms + 400, ms + 401),
    }
}

/// How long [`stand_aside`] keeps this node out of a partition's elections.
#[derive(Debug, Clone)]
struct Pauses {
    /// After a refusal for a shorter log: until some node leads, at most this long.
    longer_log: Duration,
    /// After a split vote: a time drawn from this range (ms), or until some node leads.
    split_vote_ms: Range<u64>,
}

/// Keeps this node out of the partition's elections after a peer refused its candidacy
/// (`Network::refusals`) until some node leads or the pause for the refusal has passed;
/// ends with the partition. Only this node's own candidacies wait: it votes, follows and
/// leads as before, so Raft's safety does not depend on this.
///
/// A longer log: openraft 0.9 refuses such a candidate without taking its term, and delays
/// the refused candidate's next try only by twice *its own* longest election timeout, as
/// if every node had its timeouts. A preferred leader's are shorter (300-500 ms against
/// 700-1200 ms): a stale preferred leader stood again every 1.35-1.5 s (150 ms ticks),
/// each time in a new term, while the peer with the longer log stood every 0.75-1.2 s in a
/// term the stale node already held, and was refused in turn (t50_faults saw two connected
/// nodes go 5 s and 9 terms without a leader). Standing aside, the stale node keeps its
/// term while that peer's lease lapses and it stands twice: the first refusal gives it the
/// stale node's term, the next candidacy is above it and wins. The pause's bound is reached
/// only when no leader comes (the refusing peer failed too, say).
///
/// A split vote: openraft 0.9 draws a node's election timeout once, at start, and checks it
/// on each 150 ms tick, so two nodes whose timeouts round to the same number of ticks and
/// whose ticks fall within a round trip of each other (nodes started together) stand at
/// the same moments for as long as they run, each voting for itself (t20_three_nodes saw
/// no leader for 14.9 s). The pause is drawn past this node's longest timeout, over the
/// partition's longest one, so the next tries of the two fall on different ticks: Raft's
/// randomized timeout, drawn again for each election.
async fn stand_aside(partition: Weak<Partition>, mut refusals: mpsc::UnboundedReceiver<Refusal>, pauses: Pauses) {
    while let Some(first) = refusals.recv().await {
        let Some((p, raft)) = partition.upgrade().map(|p| (p.id, p.raft.clone())) else { return };
        raft.runtime_config().elect(false);
        let mut refusal = first;
        loop {
            let pause = match refusal {
                Refusal::LongerLog => pauses.longer_log,
                Refusal::SplitVote => Duration::from_millis(rand::rng().random_range(pauses.split_vote_ms.clone())),
            };
            tracing::debug!(partition = p, ?refusal, ?pause, "standing aside until a leader is known");
            let wait = raft.wait(Some(pause));
            let leader_known = wait.metrics(|m| m.current_leader.is_some(), "a leader is known");
            tokio::select! {
                // An error is the bound passing or the partition closing: standing again is right.
                _ = leader_known => break,
                // Another peer refusing the same candidacy for a longer log outweighs a split.
                Some(Refusal::LongerLog) = refusals.recv(), if refusal == Refusal::SplitVote => {
                    refusal = Refusal::LongerLog;
                }
            }
        }
        // Refusals that came meanwhile answered candidacies from before the pause.
        while refusals.try_recv().is_ok() {}
        raft.runtime_config().elect(true);
    }
}

/// The physical-time horizon for compaction `retention_ms` ago.
pub(crate) fn horizon(hlc: &Hlc, retention_ms: u64) -> u64 {
    from_physical_ms(hlc.wall_ms().saturating_sub(retention_ms))
}
