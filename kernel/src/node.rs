//! A node's kernel: every partition's replica, the storage thread, and the routing of
//! requests to partition leaders (forwarded once over the transport).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{KvError, OpenError};
use crate::hlc::Hlc;
use crate::limits::{
    LOCK_LEASE_MS_MAX_DEFAULT, VALUE_BYTES_MAX_DEFAULT, check_batch, check_count, check_idempotency_key, check_key,
    check_lease, check_name, check_operation_id, check_owner, check_txn_keys, check_value, check_wait,
    check_write_bytes, scan_limit,
};
use crate::network::{MessageKind, NodeMessage, Transport, decode_payload, encode_payload};
use crate::partition::{Partition, PartitionSettings, horizon};
use crate::routing::{DEFAULT_PARTITIONS, PARTITIONS_MAX, partition_of, partition_of_bucket};
use crate::storage::{DataFiles, Storage, StorageMode, setting_or_init};
use crate::types::{
    Consistency, Durability, KeyValue, LockOp, NodeId, PartitionId, PartitionRequest, PartitionResponse,
    PartitionStatus, SequenceOp, TxnDecision, TxnPart, TxnReply, WriteOp,
};

/// How often a node looks for prepared transactions past their deadline on the
/// partitions it leads, and resolves them.
const SWEEP_INTERVAL: Duration = Duration::from_millis(1000);
/// How long a request waits on a decided transaction's intent for the coordinator to
/// apply the decision before applying it itself: the coordinator does so right after
/// deciding, so sooner would mostly propose a second resolve of the same transaction.
const RESOLVE_GRACE: Duration = Duration::from_millis(250);
/// How long a node waits for a peer's clock when a transaction begins.
const CLOCK_SYNC_TIMEOUT: Duration = Duration::from_millis(300);
/// How long a peer whose clock could not be read is left out of clock reads.
const CLOCK_SYNC_SKIP: Duration = Duration::from_secs(2);

/// How a node's kernel is set up.
#[derive(Debug, Clone)]
pub struct KernelConfig {
    pub node_id: NodeId,
    /// Every voter of the cluster, this node included: id → `host:port`.
    pub peers: BTreeMap<NodeId, String>,
    pub data_dir: PathBuf,
    /// Data partitions. Fixed when the data directory is first created: `None` takes the
    /// count stored there ([`DEFAULT_PARTITIONS`](crate::DEFAULT_PARTITIONS) for a new one);
    /// `Some` must match it.
    pub partitions: Option<u32>,
    pub value_bytes_max: usize,
    /// How long versions stay readable `as of` / `at` a revision.
    pub retention_ms: u64,
    /// How long an operation id's first outcome is remembered.
    pub operation_retention_ms: u64,
    /// Raft entries between snapshots (then the log before them is purged).
    pub snapshot_logs: u64,
    pub request_timeout: Duration,
    pub compaction_interval: Duration,
    /// Longest lock lease a client may ask for, in ms.
    pub lock_lease_ms_max: u64,
    /// Where the two data files live: `data_dir` (the default), or a simulated disk.
    pub files: DataFiles,
    /// Who commits storage jobs: the storage thread (the default), or the caller.
    pub storage: StorageMode,
    /// `None` (the default): election timeouts are drawn at random, as Raft wants.
    /// `Some(ms)`: every partition this node prefers to lead waits exactly `ms` (the others
    /// 400 ms longer), so that a deterministic simulation draws the same timeouts on every
    /// run; it gives each node a different `ms` so that elections still break ties.
    pub election_timeout_ms: Option<u64>,
}

impl Default for KernelConfig {
    fn default() -> Self {
        Self {
            node_id: 1,
            peers: BTreeMap::from([(1, "127.0.0.1:2070".to_owned())]),
            data_dir: PathBuf::from("kahuna-data"),
            partitions: None,
            value_bytes_max: VALUE_BYTES_MAX_DEFAULT,
            retention_ms: 3_600_000,
            operation_retention_ms: 600_000,
            snapshot_logs: 10_000,
            request_timeout: Duration::from_secs(5),
            compaction_interval: Duration::from_secs(60),
            lock_lease_ms_max: LOCK_LEASE_MS_MAX_DEFAULT,
            files: DataFiles::Directory,
            storage: StorageMode::Thread,
            election_timeout_ms: None,
        }
    }
}

/// A timestamp from [`Kernel::sync_clock`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockSync {
    pub ts: u64,
    /// Every peer's clock went into `ts`: no commit acknowledged before the call is above it.
    pub complete: bool,
}

/// A response and the node that produced it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Served<T> {
    pub value: T,
    pub served_by: NodeId,
}

/// A node's kernel. Cheap to clone.
#[derive(Clone)]
pub struct Kernel {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) config: KernelConfig,
    pub(crate) partitions: Vec<Arc<Partition>>,
    pub(crate) transport: Arc<dyn Transport>,
    pub(crate) hlc: Arc<Hlc>,
    /// Peers whose clock could not be read, and since when (tokio's clock, which a
    /// simulation controls).
    unreachable: std::sync::Mutex<BTreeMap<NodeId, tokio::time::Instant>>,
}

impl Kernel {
    /// Opens the data directory, starts every partition and joins (or forms) the
    /// cluster described by `config.peers`.
    pub async fn open(config: KernelConfig, transport: Arc<dyn Transport>) -> Result<Self, OpenError> {
        Self::open_with_clock(config, transport, Arc::new(Hlc::system())).await
    }

    /// As [`Kernel::open`], with a given clock.
    pub async fn open_with_clock(
        config: KernelConfig,
        transport: Arc<dyn Transport>,
        hlc: Arc<Hlc>,
    ) -> Result<Self, OpenError> {
        if !config.peers.contains_key(&config.node_id) {
            return Err(OpenError::Config(format!("node id {} is not among the peers", config.node_id)));
        }
        let asked = config.partitions;
        if asked.is_some_and(|n| n == 0 || n > PARTITIONS_MAX) {
            return Err(OpenError::Config(format!("partitions must be 1..={PARTITIONS_MAX}")));
        }
        let storage = Storage::open_with(&config.data_dir, &config.files, config.storage)?;
        let stored = setting_or_init(storage.db(), "partitions", u64::from(asked.unwrap_or(DEFAULT_PARTITIONS)))?;
        if let Some(asked) = asked
            && stored != u64::from(asked)
        {
            return Err(OpenError::Config(format!(
                "this data directory was created with {stored} partitions; the count is fixed at creation \
                 (asked for {asked})"
            )));
        }
        let count = u32::try_from(stored).ok().filter(|n| (1..=PARTITIONS_MAX).contains(n)).ok_or_else(|| {
            OpenError::Config(format!("this data directory records {stored} partitions, outside 1..={PARTITIONS_MAX}"))
        })?;
        let ids: Vec<NodeId> = config.peers.keys().copied().collect();
        let mut partitions = Vec::with_capacity(count as usize);
        let (reads, read_waiters) = tokio::sync::mpsc::unbounded_channel();
        for p in 0..count {
            let settings = PartitionSettings {
                node_id: config.node_id,
                peers: config.peers.clone(),
                snapshot_logs: config.snapshot_logs,
                request_timeout: config.request_timeout,
                preferred_leader: ids[p as usize % ids.len()] == config.node_id,
                election_timeout_ms: config.election_timeout_ms,
            };
            partitions.push(
                Partition::open(p, &settings, storage.clone(), hlc.clone(), transport.clone(), reads.clone()).await?,
            );
        }
        let kernel =
            Self { inner: Arc::new(Inner { config, partitions, transport, hlc, unreachable: Default::default() }) };
        tokio::spawn(crate::leadership::read_rounds(Arc::downgrade(&kernel.inner), read_waiters));
        tokio::spawn(compaction_loop(Arc::downgrade(&kernel.inner)));
        tokio::spawn(sweep_loop(Arc::downgrade(&kernel.inner)));
        Ok(kernel)
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.inner.config.node_id
    }

    /// The cluster's voters: id → address.
    pub fn peers(&self) -> &BTreeMap<NodeId, String> {
        &self.inner.config.peers
    }

    /// Number of data partitions (the count the data directory was created with).
    pub fn partitions(&self) -> u32 {
        self.inner.partitions.len() as u32
    }

    /// The partition holding `key`.
    pub fn partition_of(&self, key: &str) -> PartitionId {
        partition_of(key, self.partitions())
    }

    /// The partition holding `bucket`.
    pub fn partition_of_bucket(&self, bucket: &str) -> PartitionId {
        partition_of_bucket(bucket, self.partitions())
    }

    /// The node's clock.
    pub fn hlc(&self) -> &Hlc {
        &self.inner.hlc
    }

    /// The largest value this node accepts.
    pub fn value_bytes_max(&self) -> usize {
        self.inner.config.value_bytes_max
    }

    pub(crate) fn partition(&self, p: PartitionId) -> Result<&Arc<Partition>, KvError> {
        self.inner
            .partitions
            .get(p as usize)
            .ok_or_else(|| KvError::InvalidInput(format!("partition {p} does not exist")))
    }

    /// Serves a request for partition `p`: here when this node leads it (or the read
    /// may be served by any replica), else forwarded once to the leader.
    ///
    /// # Cancel safety
    /// Dropping the future abandons the wait, not the request: a write already
    /// proposed still commits. Retry it with the same operation id.
    pub async fn execute(
        &self,
        p: PartitionId,
        request: PartitionRequest,
    ) -> Result<Served<PartitionResponse>, KvError> {
        self.validate(p, &request)?;
        let partition = self.partition(p)?;
        let mut attempt = 0;
        loop {
            let leader = match self.serve_here(p, partition, &request).await {
                Ok(value) => return Ok(Served { value, served_by: self.node_id() }),
                Err(KvError::NotLeader { leader: Some(leader), .. }) => leader,
                Err(KvError::NotLeader { leader: None, .. }) => partition.await_leader().await?,
                Err(e) => return Err(e),
            };
            if leader != self.node_id() {
                return self.forward(leader, p, &request).await;
            }
            // Leadership is changing under us: look again once.
            attempt += 1;
            if attempt > 1 {
                return Err(KvError::Unavailable(format!("partition {p}: leadership is changing")));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The partition holding lock or sequence `name` (names route like keys).
    pub fn partition_of_name(&self, name: &str) -> PartitionId {
        partition_of(name, self.partitions())
    }

    /// The longest lock lease this node accepts, in ms.
    pub fn lock_lease_ms_max(&self) -> u64 {
        self.inner.config.lock_lease_ms_max
    }

    async fn forward(
        &self,
        leader: NodeId,
        p: PartitionId,
        request: &PartitionRequest,
    ) -> Result<Served<PartitionResponse>, KvError> {
        let message = NodeMessage {
            partition: p,
            hlc: self.inner.hlc.now(),
            kind: MessageKind::Forward,
            from: self.node_id(),
            payload: encode_payload(request),
        };
        // A try-lock may wait on the leader before its request timeout even starts.
        let timeout = self.inner.config.request_timeout + Duration::from_millis(request.wait_ms());
        let reply = self
            .inner
            .transport
            .call(leader, message, timeout)
            .await
            .map_err(|e| KvError::Unavailable(format!("partition {p}: leader unreachable: {e}")))?;
        self.inner.hlc.observe(reply.hlc);
        decode_payload::<Result<Served<PartitionResponse>, KvError>>(&reply.payload)
            .map_err(|e| KvError::Internal(format!("undecodable reply from node {leader}: {e}")))?
    }

    /// Live keys starting with `prefix` in every partition, merged in key order: at most
    /// `limit` (checked against the scan limits) greater than `after`, as they were at
    /// `as_of` when given. The flag says whether more may follow (scan again after the
    /// last key).
    pub async fn scan(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: u32,
        as_of: Option<u64>,
        durability: Durability,
        consistency: Consistency,
    ) -> Result<(Vec<KeyValue>, bool), KvError> {
        let limit = scan_limit(limit)?;
        let calls = (0..self.partitions()).map(|p| {
            let request = PartitionRequest::Scan {
                prefix: prefix.to_owned(),
                after: after.map(str::to_owned),
                limit,
                as_of,
                durability,
                consistency,
            };
            self.execute(p, request)
        });
        let mut merged = Vec::new();
        let mut more = false;
        for served in futures::future::try_join_all(calls).await? {
            match served.value {
                PartitionResponse::Items { items, more: m } => {
                    merged.extend(items);
                    more |= m;
                }
                other => return Err(KvError::Internal(format!("unexpected answer to a scan: {other:?}"))),
            }
        }
        merged.sort_by(|a, b| a.key.cmp(&b.key));
        if merged.len() > limit as usize {
            merged.truncate(limit as usize);
            more = true;
        }
        Ok((merged, more))
    }

    /// Serves a request on this node's replica of partition `p`. A request that meets a
    /// prepared transaction's intent waits for the transaction to resolve, up to the
    /// request timeout. It resolves the transaction itself once the record holds a
    /// decision and the coordinator has had [`RESOLVE_GRACE`] to apply it (the
    /// coordinator died, or could not reach this partition), or from the record once the
    /// deadline passed (aborting it there unless decided).
    async fn serve_here(
        &self,
        p: PartitionId,
        partition: &Partition,
        request: &PartitionRequest,
    ) -> Result<PartitionResponse, KvError> {
        let started = tokio::time::Instant::now();
        let give_up = started + self.inner.config.request_timeout;
        let mut pause = Duration::from_millis(2);
        loop {
            let (txn_id, record_partition, deadline_ms) = match partition.execute(request).await {
                Err(KvError::Locked { txn_id, record_partition, deadline_ms, key }) => {
                    if tokio::time::Instant::now() >= give_up {
                        return Err(KvError::Locked { txn_id, record_partition, deadline_ms, key });
                    }
                    (txn_id, record_partition, deadline_ms)
                }
                other => return other,
            };
            let decided = match started.elapsed() >= RESOLVE_GRACE {
                true => self.recorded_decision(record_partition, &txn_id).await,
                false => None,
            };
            // Boxed: resolving executes requests, which may meet intents in turn.
            let resolved = match decided {
                Some(decision) => Some(Box::pin(self.apply_decision(p, &txn_id, decision)).await),
                None if self.inner.hlc.wall_ms() >= deadline_ms => {
                    Some(Box::pin(self.resolve(p, &txn_id, record_partition)).await)
                }
                None => None,
            };
            match resolved {
                Some(Ok(())) => {}
                Some(Err(e)) => {
                    tracing::debug!(partition = p, txn = %txn_id, "resolving a blocking transaction: {e}");
                    tokio::time::sleep(pause).await;
                }
                None => tokio::time::sleep(pause).await,
            }
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    /// Resolves transaction `txn_id` on partition `p` from its record: aborts it there
    /// unless a decision was written first, then applies the decision on `p`.
    pub async fn resolve(&self, p: PartitionId, txn_id: &str, record_partition: PartitionId) -> Result<(), KvError> {
        let decide = PartitionRequest::TxnDecide { txn_id: txn_id.to_owned(), decision: TxnDecision::Abort };
        let decision = match self.execute(record_partition, decide).await?.value {
            PartitionResponse::Txn(TxnReply::Decided(decision)) => decision,
            other => return Err(KvError::Internal(format!("unexpected answer to a decision: {other:?}"))),
        };
        tracing::info!(partition = p, txn = %txn_id, ?decision, "resolved a transaction past its deadline");
        self.apply_decision(p, txn_id, decision).await
    }

    /// The decision transaction `txn_id`'s record on this node's replica of
    /// `record_partition` holds, if it holds one yet.
    async fn recorded_decision(&self, record_partition: PartitionId, txn_id: &str) -> Option<TxnDecision> {
        let partition = self.partition(record_partition).ok()?;
        partition.recorded_decision(txn_id).await.unwrap_or_else(|e| {
            tracing::warn!(partition = record_partition, txn = %txn_id, "reading a transaction record: {e}");
            None
        })
    }

    /// Applies transaction `txn_id`'s recorded `decision` on partition `p`.
    async fn apply_decision(&self, p: PartitionId, txn_id: &str, decision: TxnDecision) -> Result<(), KvError> {
        tracing::debug!(partition = p, txn = %txn_id, ?decision, "applying a recorded decision");
        self.execute(p, PartitionRequest::TxnResolve { txn_id: txn_id.to_owned(), decision }).await?;
        Ok(())
    }

    /// Advances this node's clock past every other reachable node's, and returns a fresh
    /// timestamp: when every peer answered (`complete`), a transaction's snapshot taken
    /// with it is no earlier than any commit a partition leader acknowledged before the
    /// call (leaders observe what they apply).
    ///
    /// A peer that did not answer is skipped for 2 s (`CLOCK_SYNC_SKIP`), so that a dead or
    /// cut-off node does not slow every transaction down. The timestamp is then not
    /// `complete`: a leader among the skipped peers may have acknowledged commits above
    /// it (its clock ahead of this node's, say, while this node was cut off), so a
    /// snapshot there may miss them.
    pub async fn sync_clock(&self) -> ClockSync {
        let me = self.node_id();
        let now = tokio::time::Instant::now();
        let skipped: Vec<NodeId> = {
            let unreachable = self.inner.unreachable.lock().unwrap_or_else(|p| p.into_inner());
            unreachable
                .iter()
                .filter(|(_, since)| now.duration_since(**since) < CLOCK_SYNC_SKIP)
                .map(|(id, _)| *id)
                .collect()
        };
        let calls = self.peers().keys().filter(|id| **id != me && !skipped.contains(id)).map(|&id| {
            let message = NodeMessage {
                partition: 0,
                hlc: self.inner.hlc.now(),
                kind: MessageKind::Clock,
                from: me,
                payload: vec![],
            };
            let call = self.inner.transport.call(id, message, CLOCK_SYNC_TIMEOUT);
            async move {
                let answered = match call.await {
                    Ok(reply) => {
                        self.inner.hlc.observe(reply.hlc);
                        true
                    }
                    Err(e) => {
                        tracing::debug!("clock of node {id} not read: {e}");
                        false
                    }
                };
                let mut unreachable = self.inner.unreachable.lock().unwrap_or_else(|p| p.into_inner());
                if answered {
                    unreachable.remove(&id);
                } else {
                    unreachable.insert(id, tokio::time::Instant::now());
                }
                answered
            }
        });
        let answered = futures::future::join_all(calls).await;
        let complete = skipped.is_empty() && answered.iter().all(|a| *a);
        ClockSync { ts: self.inner.hlc.now(), complete }
    }

    /// Handles a message from another node (a Raft RPC or a forwarded request) and
    /// returns the reply. Errors are malformed messages.
    pub async fn handle(&self, message: NodeMessage) -> Result<NodeMessage, KvError> {
        self.inner.hlc.observe(message.hlc);
        let bad = |e: postcard::Error| KvError::InvalidInput(format!("undecodable {:?} message: {e}", message.kind));
        let partition = || self.partition(message.partition);
        let payload = match message.kind {
            MessageKind::AppendEntries => {
                encode_payload(&partition()?.raft.append_entries(decode_payload(&message.payload).map_err(bad)?).await)
            }
            MessageKind::Vote => {
                encode_payload(&partition()?.raft.vote(decode_payload(&message.payload).map_err(bad)?).await)
            }
            MessageKind::InstallSnapshot => encode_payload(
                &partition()?.raft.install_snapshot(decode_payload(&message.payload).map_err(bad)?).await,
            ),
            // The reply carries this node's clock; that is all the sender wants.
            MessageKind::Clock => Vec::new(),
            MessageKind::Forward => {
                let request: PartitionRequest = decode_payload(&message.payload).map_err(bad)?;
                let outcome = match self.validate(message.partition, &request) {
                    Ok(()) => self
                        .serve_here(message.partition, partition()?, &request)
                        .await
                        .map(|value| Served { value, served_by: self.node_id() }),
                    Err(e) => Err(e),
                };
                encode_payload(&outcome)
            }
            // About many partitions at once: `message.partition` is unused.
            MessageKind::ConfirmLeader => {
                let request = decode_payload(&message.payload).map_err(bad)?;
                encode_payload(&crate::leadership::answer(&self.inner.partitions, &request))
            }
        };
        Ok(NodeMessage {
            partition: message.partition,
            hlc: self.inner.hlc.now(),
            kind: message.kind,
            from: self.node_id(),
            payload,
        })
    }

    /// This node's view of every partition.
    pub fn status(&self) -> Vec<PartitionStatus> {
        self.inner.partitions.iter().map(|p| p.status()).collect()
    }

    /// Stops every partition's Raft group.
    pub async fn shutdown(&self) {
        for p in &self.inner.partitions {
            if let Err(e) = p.raft.shutdown().await {
                tracing::warn!("partition shutdown: {e}");
            }
        }
    }

    fn validate(&self, p: PartitionId, request: &PartitionRequest) -> Result<(), KvError> {
        let partitions = self.partitions();
        let named = |what: &str, name: &str| -> Result<(), KvError> {
            check_name(what, name)?;
            let home = partition_of(name, partitions);
            if home != p {
                return Err(KvError::InvalidInput(format!("{what} {name:?} belongs to partition {home}, not {p}")));
            }
            Ok(())
        };
        let routed = |key: &str| -> Result<(), KvError> {
            check_key(key)?;
            let home = partition_of(key, partitions);
            if home != p {
                return Err(KvError::InvalidInput(format!("key {key:?} belongs to partition {home}, not {p}")));
            }
            Ok(())
        };
        match request {
            PartitionRequest::Write { ops, operation_id, .. } => {
                check_batch(ops.len())?;
                check_write_bytes(ops)?;
                if let Some(id) = operation_id {
                    check_operation_id(id)?;
                }
                for op in ops {
                    routed(op.key())?;
                    if let WriteOp::Set(set) = op {
                        check_value(&set.value, self.value_bytes_max())?;
                        if set.nx && set.xx {
                            return Err(KvError::InvalidInput("nx and xx cannot be combined".into()));
                        }
                    }
                }
                Ok(())
            }
            PartitionRequest::Read { reads, .. } => {
                check_batch(reads.len())?;
                for r in reads {
                    routed(&r.key)?;
                    if r.at_revision.is_some() && r.as_of.is_some() {
                        return Err(KvError::InvalidInput(
                            "`at` a revision and `as of` a time cannot be combined".into(),
                        ));
                    }
                }
                Ok(())
            }
            PartitionRequest::Bucket { bucket, .. } => {
                let home = partition_of_bucket(bucket, partitions);
                if home != p {
                    return Err(KvError::InvalidInput(format!("bucket {bucket:?} belongs to partition {home}")));
                }
                Ok(())
            }
            PartitionRequest::Scan { limit, .. } => scan_limit(*limit).map(|_| ()),
            PartitionRequest::Lock { op, operation_id, wait_ms, .. } => {
                named("lock", op.name())?;
                check_owner(op.owner())?;
                if let Some(id) = operation_id {
                    check_operation_id(id)?;
                }
                check_wait(i64::try_from(*wait_ms).unwrap_or(i64::MAX))?;
                match op {
                    LockOp::Acquire { lease_ms, .. } | LockOp::Extend { lease_ms, .. } => {
                        let lease_ms = i64::try_from(*lease_ms).unwrap_or(i64::MAX);
                        check_lease(lease_ms, self.lock_lease_ms_max()).map(|_| ())
                    }
                    LockOp::Release { .. } => Ok(()),
                }
            }
            PartitionRequest::GetLock { name, .. } => named("lock", name),
            PartitionRequest::TxnCommit { txn_id, part, .. } | PartitionRequest::TxnPrepare { txn_id, part, .. } => {
                check_operation_id(txn_id)?;
                self.validate_txn_part(part, &routed)
            }
            PartitionRequest::TxnDecide { txn_id, .. } | PartitionRequest::TxnResolve { txn_id, .. } => {
                check_operation_id(txn_id)
            }
            PartitionRequest::GetSequence { name, .. } => named("sequence", name),
            PartitionRequest::Sequence { op } => {
                named("sequence", op.name())?;
                match op {
                    SequenceOp::Reserve { count, idempotency_key, .. } => {
                        check_count(*count)?;
                        idempotency_key.as_deref().map_or(Ok(()), check_idempotency_key)
                    }
                    // Checked again where applied; checking here proposes nothing doomed.
                    SequenceOp::Create { start, increment, max, .. } => {
                        crate::sequences::create(None, *start, *increment, *max).map(|_| ())
                    }
                    SequenceOp::Delete { .. } => Ok(()),
                }
            }
        }
    }
}

impl Kernel {
    fn validate_txn_part(&self, part: &TxnPart, routed: &dyn Fn(&str) -> Result<(), KvError>) -> Result<(), KvError> {
        check_txn_keys(part.reads.len() + part.writes.len())?;
        check_write_bytes(&part.writes)?;
        for key in &part.reads {
            routed(key)?;
        }
        for op in &part.writes {
            routed(op.key())?;
            if let WriteOp::Set(set) = op {
                check_value(&set.value, self.value_bytes_max())?;
            }
        }
        Ok(())
    }
}

/// Resolves, every [`SWEEP_INTERVAL`], the prepared transactions past their deadline on
/// the partitions this node leads, so no key stays held when nobody touches it.
async fn sweep_loop(kernel: std::sync::Weak<Inner>) {
    let mut ticks = tokio::time::interval(SWEEP_INTERVAL);
    loop {
        ticks.tick().await;
        let Some(inner) = kernel.upgrade() else { return };
        let kernel = Kernel { inner };
        let now_ms = kernel.inner.hlc.wall_ms();
        for (p, partition) in kernel.inner.partitions.iter().enumerate() {
            let overdue = match partition.overdue_transactions(now_ms).await {
                Ok(found) => found,
                Err(e) => {
                    tracing::warn!(partition = p, "listing prepared transactions: {e}");
                    continue;
                }
            };
            for (txn_id, record_partition) in overdue {
                if let Err(e) = kernel.resolve(p as PartitionId, &txn_id, record_partition).await {
                    tracing::debug!(partition = p, txn = %txn_id, "resolving an overdue transaction: {e}");
                }
            }
        }
    }
}

async fn compaction_loop(inner: std::sync::Weak<Inner>) {
    let Some(interval) = inner.upgrade().map(|i| i.config.compaction_interval) else { return };
    let mut ticks = tokio::time::interval(interval);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        let before = horizon(&inner.hlc, inner.config.retention_ms);
        let operations_before = horizon(&inner.hlc, inner.config.operation_retention_ms);
        for p in &inner.partitions {
            p.compact(before, operations_before).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::NoPeers;

    /// Opens a kernel on `dir` in a runtime of its own and returns its partition count.
    /// Dropping the runtime drops every task holding the storage, so its thread ends and
    /// lets go of the state file; the next open waits for that.
    fn open(dir: &std::path::Path, partitions: Option<u32>) -> Result<u32, OpenError> {
        let config = KernelConfig { data_dir: dir.to_owned(), partitions, ..Default::default() };
        for _ in 0..100 {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            match runtime.block_on(Kernel::open(config.clone(), Arc::new(NoPeers))) {
                Err(OpenError::Store(crate::error::StoreError::Redb(redb::Error::DatabaseAlreadyOpen))) => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                opened => return opened.map(|kernel| kernel.partitions()),
            }
        }
        panic!("the state file stayed open after its kernel's runtime was dropped");
    }

    /// The count is the data directory's: a node started without one keeps it (a directory
    /// made with an earlier default keeps that default), and a different one is refused.
    #[test]
    fn a_data_directory_keeps_its_partition_count() {
        let fresh = tempfile::tempdir().expect("temp dir");
        assert_eq!(open(fresh.path(), None).expect("opens"), DEFAULT_PARTITIONS);

        let dir = tempfile::tempdir().expect("temp dir");
        assert_eq!(open(dir.path(), Some(16)).expect("opens"), 16);
        assert_eq!(open(dir.path(), None).expect("reopens"), 16);
        let refused = open(dir.path(), Some(3)).expect_err("another count is refused");
        assert!(refused.to_string().contains("created with 16 partitions"), "{refused}");
        let out_of_range = open(dir.path(), Some(0)).expect_err("0 is refused");
        assert!(out_of_range.to_string().contains("1..="), "{out_of_range}");
    }
}
