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
    check_lease, check_name, check_operation_id, check_owner, check_value, check_wait, scan_limit,
};
use crate::network::{MessageKind, NodeMessage, Transport, decode_payload, encode_payload};
use crate::partition::{Partition, PartitionSettings, horizon};
use crate::routing::{PARTITIONS_MAX, partition_of, partition_of_bucket};
use crate::storage::{Storage, setting_or_init};
use crate::types::{
    LockOp, NodeId, PartitionId, PartitionRequest, PartitionResponse, PartitionStatus, SequenceOp, WriteOp,
};

/// How a node's kernel is set up.
#[derive(Debug, Clone)]
pub struct KernelConfig {
    pub node_id: NodeId,
    /// Every voter of the cluster, this node included: id → `host:port`.
    pub peers: BTreeMap<NodeId, String>,
    pub data_dir: PathBuf,
    /// Data partitions; fixed when the data directory is first created.
    pub partitions: u32,
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
}

impl Default for KernelConfig {
    fn default() -> Self {
        Self {
            node_id: 1,
            peers: BTreeMap::from([(1, "127.0.0.1:2070".to_owned())]),
            data_dir: PathBuf::from("kahuna-data"),
            partitions: crate::routing::DEFAULT_PARTITIONS,
            value_bytes_max: VALUE_BYTES_MAX_DEFAULT,
            retention_ms: 3_600_000,
            operation_retention_ms: 600_000,
            snapshot_logs: 10_000,
            request_timeout: Duration::from_secs(5),
            compaction_interval: Duration::from_secs(60),
            lock_lease_ms_max: LOCK_LEASE_MS_MAX_DEFAULT,
        }
    }
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

struct Inner {
    config: KernelConfig,
    partitions: Vec<Arc<Partition>>,
    transport: Arc<dyn Transport>,
    hlc: Arc<Hlc>,
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
        if config.partitions == 0 || config.partitions > PARTITIONS_MAX {
            return Err(OpenError::Config(format!("partitions must be 1..={PARTITIONS_MAX}")));
        }
        std::fs::create_dir_all(&config.data_dir).map_err(crate::error::StoreError::from)?;
        let storage = Storage::open(&config.data_dir)?;
        let stored = setting_or_init(storage.db(), "partitions", u64::from(config.partitions))?;
        if stored != u64::from(config.partitions) {
            return Err(OpenError::Config(format!(
                "this data directory was created with {stored} partitions; the count is fixed at creation \
                 (asked for {})",
                config.partitions
            )));
        }
        let ids: Vec<NodeId> = config.peers.keys().copied().collect();
        let mut partitions = Vec::with_capacity(config.partitions as usize);
        for p in 0..config.partitions {
            let settings = PartitionSettings {
                node_id: config.node_id,
                peers: config.peers.clone(),
                snapshot_logs: config.snapshot_logs,
                request_timeout: config.request_timeout,
                preferred_leader: ids[p as usize % ids.len()] == config.node_id,
            };
            partitions.push(Partition::open(p, &settings, storage.clone(), hlc.clone(), transport.clone()).await?);
        }
        let kernel = Self { inner: Arc::new(Inner { config, partitions, transport, hlc }) };
        tokio::spawn(compaction_loop(Arc::downgrade(&kernel.inner)));
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

    /// Number of data partitions.
    pub fn partitions(&self) -> u32 {
        self.inner.config.partitions
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

    fn partition(&self, p: PartitionId) -> Result<&Arc<Partition>, KvError> {
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
            let leader = match partition.execute(&request).await {
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

    /// Handles a message from another node (a Raft RPC or a forwarded request) and
    /// returns the reply. Errors are malformed messages.
    pub async fn handle(&self, message: NodeMessage) -> Result<NodeMessage, KvError> {
        self.inner.hlc.observe(message.hlc);
        let partition = self.partition(message.partition)?;
        let bad = |e: postcard::Error| KvError::InvalidInput(format!("undecodable {:?} message: {e}", message.kind));
        let raft = &partition.raft;
        let payload = match message.kind {
            MessageKind::AppendEntries => {
                encode_payload(&raft.append_entries(decode_payload(&message.payload).map_err(bad)?).await)
            }
            MessageKind::Vote => encode_payload(&raft.vote(decode_payload(&message.payload).map_err(bad)?).await),
            MessageKind::InstallSnapshot => {
                encode_payload(&raft.install_snapshot(decode_payload(&message.payload).map_err(bad)?).await)
            }
            MessageKind::Forward => {
                let request: PartitionRequest = decode_payload(&message.payload).map_err(bad)?;
                let outcome = match self.validate(message.partition, &request) {
                    Ok(()) => {
                        partition.execute(&request).await.map(|value| Served { value, served_by: self.node_id() })
                    }
                    Err(e) => Err(e),
                };
                encode_payload(&outcome)
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
