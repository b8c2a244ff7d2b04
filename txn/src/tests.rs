//! The engine against a real one-node kernel with several partitions, so that both the
//! one-partition commit and two-phase commit run.

use std::sync::Arc;
use std::time::Duration;

use kahuna_kernel::{
    CallFuture, Consistency, DeleteArgs, Durability, Kernel, KernelConfig, KvError, NodeMessage, PartitionRequest,
    PartitionResponse, PointRead, SetArgs, Transport, TransportError, TxnDecision, TxnPart, TxnReply, WriteOp,
};

use crate::{Transaction, TxnConfig, TxnEngine};

/// A one-node cluster sends nothing to anyone.
struct Alone;

impl Transport for Alone {
    fn call(&self, target: u64, _: NodeMessage, _: Duration) -> CallFuture {
        Box::pin(async move { Err(TransportError { target, reason: "no peers in this test".into() }) })
    }
}

async fn engine(dir: &tempfile::TempDir) -> TxnEngine {
    let config = KernelConfig {
        data_dir: dir.path().to_owned(),
        partitions: Some(4),
        request_timeout: Duration::from_secs(3),
        ..Default::default()
    };
    let kernel = Kernel::open(config, Arc::new(Alone)).await.expect("kernel opens");
    // Wait for every partition to elect this node.
    for p in 0..kernel.partitions() {
        for _ in 0..200 {
            let probe = PartitionRequest::Read {
                reads: vec![PointRead { key: key_in(&kernel, p, "probe"), at_revision: None, as_of: None }],
                durability: Durability::Persistent,
                consistency: Consistency::Linearizable,
            };
            if kernel.execute(p, probe).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    TxnEngine::new(kernel, TxnConfig::default())
}

/// A key named `base-N` that lives in partition `p`.
fn key_in(kernel: &Kernel, p: u32, base: &str) -> String {
    (0..).map(|n| format!("{base}-{n}")).find(|k| kernel.partition_of(k) == p).unwrap_or_default()
}

fn set(key: &str, value: &str) -> SetArgs {
    SetArgs { key: key.into(), value: value.into(), ..Default::default() }
}

async fn value(txn: &mut Transaction, key: &str) -> Option<String> {
    let read = PointRead { key: key.into(), at_revision: None, as_of: None };
    txn.get(&read).await.expect("read").map(|kv| String::from_utf8_lossy(&kv.value).into_owned())
}

async fn committed(engine: &TxnEngine, key: &str) -> Option<String> {
    let mut txn = engine.begin(None).await.expect("begin");
    value(&mut txn, key).await
}

#[tokio::test]
async fn commit_is_atomic_and_reads_its_own_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = engine(&dir).await;
    let (a, b) = (key_in(engine.kernel(), 0, "a"), key_in(engine.kernel(), 1, "b"));
    let mut txn = engine.begin(None).await.expect("begin");
    assert!(txn.set(set(&a, "1")).await.expect("set"));
    assert!(txn.set(set(&b, "2")).await.expect("set"));
    assert_eq!(value(&mut txn, &a).await.as_deref(), Some("1"));
    assert_eq!(committed(&engine, &a).await, None, "buffered writes are invisible to others");
    let ts = txn.commit().await.expect("commit").expect("a commit timestamp");
    assert!(ts > 0);
    assert_eq!(committed(&engine, &a).await.as_deref(), Some("1"));
    assert_eq!(committed(&engine, &b).await.as_deref(), Some("2"));

    // Conditions are judged in the view; a rolled-back transaction leaves nothing.
    let mut txn = engine.begin(None).await.expect("begin");
    assert!(!txn.set(SetArgs { nx: true, ..set(&a, "x") }).await.expect("set nx"));
    assert!(txn.delete(DeleteArgs { key: b.clone(), ..Default::default() }).await.expect("delete"));
    assert_eq!(value(&mut txn, &b).await, None);
    txn.rollback().await;
    assert_eq!(committed(&engine, &b).await.as_deref(), Some("2"));
}

/// Two transactions each read two keys and write one of them: one must abort, in one
/// partition (one entry) and across two (two-phase commit).
#[tokio::test]
async fn write_skew_aborts_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = engine(&dir).await;
    let k = engine.kernel();
    for (x, y) in [(key_in(k, 2, "x"), key_in(k, 2, "y")), (key_in(k, 0, "x"), key_in(k, 3, "y"))] {
        let mut t1 = engine.begin(None).await.expect("begin");
        let mut t2 = engine.begin(None).await.expect("begin");
        for t in [&mut t1, &mut t2] {
            value(t, &x).await;
            value(t, &y).await;
        }
        t1.set(set(&x, "t1")).await.expect("set");
        t2.set(set(&y, "t2")).await.expect("set");
        let first = t1.commit().await;
        let second = t2.commit().await;
        assert!(first.is_ok(), "{first:?}");
        assert!(matches!(second, Err(KvError::Conflict(_))), "{second:?}");
        assert_eq!(committed(&engine, &y).await, None);
    }
}

/// A scan sees a phantom inserted after its snapshot at commit.
#[tokio::test]
async fn scanned_range_is_validated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = engine(&dir).await;
    let mut t1 = engine.begin(None).await.expect("begin");
    let (items, more) = t1.scan("jobs/", None, 10).await.expect("scan");
    assert!(items.is_empty() && !more);
    let mut t2 = engine.begin(None).await.expect("begin");
    t2.set(set("jobs/1", "new")).await.expect("set");
    t2.commit().await.expect("commit");
    t1.set(set("count", "0")).await.expect("set");
    assert!(matches!(t1.commit().await, Err(KvError::Conflict(_))));

    let mut t3 = engine.begin(None).await.expect("begin");
    t3.set(set("jobs/2", "mine")).await.expect("set");
    let (items, _) = t3.scan("jobs/", None, 10).await.expect("scan");
    let keys: Vec<&str> = items.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["jobs/1", "jobs/2"], "the scan shows the transaction's own write");
}

/// Prepares transaction `txn_id` (its record on partition 0) writing `value` to each of
/// `keys`, without deciding it; returns the latest prepare timestamp.
async fn prepare(kernel: &Kernel, txn_id: &str, keys: &[&str], value: &str, timeout_ms: u64) -> u64 {
    let snapshot_ts = kernel.sync_clock().await.ts;
    let mut latest = 0;
    for key in keys {
        let part = TxnPart { writes: vec![WriteOp::Set(set(key, value))], ..Default::default() };
        let request =
            PartitionRequest::TxnPrepare { txn_id: txn_id.into(), snapshot_ts, part, record_partition: 0, timeout_ms };
        match kernel.execute(kernel.partition_of(key), request).await.expect("prepare").value {
            PartitionResponse::Txn(TxnReply::Prepared { prepare_ts }) => latest = latest.max(prepare_ts),
            other => panic!("prepare answered {other:?}"),
        }
    }
    latest
}

/// A prepared transaction whose coordinator vanished holds its keys until its deadline,
/// then whoever meets it aborts it from the record: all or nothing.
#[tokio::test]
async fn abandoned_prepare_is_resolved_after_its_deadline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = engine(&dir).await;
    let kernel = engine.kernel().clone();
    let (a, b) = (key_in(&kernel, 0, "a"), key_in(&kernel, 1, "b"));
    prepare(&kernel, "1-dead-1", &[&a, &b], "half", 300).await;
    // A plain write waits for the intent and resolves it once the deadline passed.
    let write = PartitionRequest::Write {
        ops: vec![WriteOp::Set(set(&a, "after"))],
        operation_id: None,
        durability: Durability::Persistent,
    };
    kernel.execute(kernel.partition_of(&a), write).await.expect("write after the deadline");
    assert_eq!(committed(&engine, &a).await.as_deref(), Some("after"));
    // The other participant is resolved too (by a reader, or by the sweep) and shows nothing.
    assert_eq!(committed(&engine, &b).await, None);
}

/// A decided transaction whose coordinator never resolved it (it died, or could not reach
/// the participants) is resolved by the next request that meets its intents, well before
/// its deadline: the record already holds the decision.
#[tokio::test]
async fn decided_but_unresolved_prepare_is_resolved_from_its_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = engine(&dir).await;
    let kernel = engine.kernel().clone();
    let (a, b) = (key_in(&kernel, 0, "a"), key_in(&kernel, 1, "b"));
    // A deadline far beyond the request timeout (3 s): waiting for it would fail.
    let commit_ts = prepare(&kernel, "1-left-1", &[&a, &b], "decided", 60_000).await;
    let decide = PartitionRequest::TxnDecide { txn_id: "1-left-1".into(), decision: TxnDecision::Commit { commit_ts } };
    kernel.execute(0, decide).await.expect("decide");
    // Readers of both participants see the committed writes, not a timeout.
    assert_eq!(committed(&engine, &a).await.as_deref(), Some("decided"));
    assert_eq!(committed(&engine, &b).await.as_deref(), Some("decided"));
}

/// Concurrent read-modify-write transactions on one counter: every increment that
/// reports a commit is counted exactly once.
#[tokio::test]
async fn concurrent_increments_are_serializable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = engine(&dir).await;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let engine = engine.clone();
        tasks.push(tokio::spawn(async move {
            let mut done = 0;
            while done < 10 {
                let mut txn = engine.begin(None).await.expect("begin");
                let n: i64 = value(&mut txn, "counter").await.map_or(0, |v| v.parse().unwrap_or(0));
                txn.set(set("counter", &(n + 1).to_string())).await.expect("set");
                match txn.commit().await {
                    Ok(_) => done += 1,
                    Err(KvError::Conflict(_)) => {}
                    Err(e) => panic!("{e}"),
                }
            }
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    assert_eq!(committed(&engine, "counter").await.as_deref(), Some("80"));
}

#[tokio::test]
async fn limits_and_timeouts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = engine(&dir).await;
    assert!(matches!(engine.begin(Some(Duration::ZERO)).await, Err(KvError::InvalidInput(_))));
    assert!(matches!(engine.begin(Some(Duration::from_secs(3600))).await, Err(KvError::InvalidInput(_))));
    let mut txn = engine.begin(Some(Duration::from_millis(50))).await.expect("begin");
    txn.set(set("late", "1")).await.expect("set");
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert!(matches!(txn.commit().await, Err(KvError::Timeout(_))));
    assert_eq!(committed(&engine, "late").await, None);

    // One partition's writes must fit in one Raft entry: more is refused, nothing written.
    let mut txn = engine.begin(None).await.expect("begin");
    let value = vec![b'v'; kahuna_kernel::VALUE_BYTES_MAX_DEFAULT];
    let count = kahuna_kernel::WRITE_BYTES_MAX / value.len() + 1;
    for i in 0..count {
        let key = key_in(engine.kernel(), 2, &format!("big{i}"));
        txn.set(SetArgs { key, value: value.clone(), ..Default::default() }).await.expect("buffered");
    }
    let refused = txn.commit().await.expect_err("too many bytes for one entry");
    assert!(matches!(&refused, KvError::InvalidInput(m) if m.contains("the limit is")), "{refused}");
    assert_eq!(committed(&engine, &key_in(engine.kernel(), 2, "big0")).await, None);
}

/// Locks and sequences inside a transaction take effect with its commit, atomically
/// with its writes, and conflict with changes made after the transaction read them.
#[tokio::test]
async fn locks_and_sequences_commit_with_the_writes() {
    use kahuna_kernel::{LockOp, SequenceOp, SequenceReply};
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = engine(&dir).await;
    let kernel = engine.kernel().clone();
    let create = SequenceOp::Create { name: "invoices".into(), start: 100, increment: 1, max: None };
    kernel
        .execute(kernel.partition_of_name("invoices"), PartitionRequest::Sequence { op: create })
        .await
        .expect("create");

    let mut txn = engine.begin(None).await.expect("begin");
    let acquire = LockOp::Acquire { name: "job".into(), owner: "w1".into(), lease_ms: 10_000 };
    let reply = txn.lock(acquire.clone()).await.expect("lock");
    assert!(reply.done);
    assert_eq!(reply.holder.as_ref().map(|h| h.token), Some(1));
    let reserve = SequenceOp::Reserve { name: "invoices".into(), count: 1, idempotency_key: None };
    let SequenceReply::Allocated { allocation, .. } = txn.sequence(reserve.clone()).await.expect("next") else {
        panic!("not an allocation");
    };
    assert_eq!(allocation.first, 100);
    txn.set(set("invoice/100", "paid")).await.expect("set");
    // Nothing is visible before the commit.
    let get_lock = PartitionRequest::GetLock {
        name: "job".into(),
        durability: Durability::Persistent,
        consistency: Consistency::Linearizable,
    };
    let p = kernel.partition_of_name("job");
    let before = kernel.execute(p, get_lock.clone()).await.expect("get lock");
    assert!(matches!(before.value, PartitionResponse::Lock(r) if r.holder.is_none()));
    txn.commit().await.expect("commit");
    let after = kernel.execute(p, get_lock.clone()).await.expect("get lock");
    assert!(matches!(after.value, PartitionResponse::Lock(r) if r.holder.as_ref().map(|h| h.token) == Some(1)));
    assert_eq!(committed(&engine, "invoice/100").await.as_deref(), Some("paid"));

    // A transaction that read the sequence conflicts with a reserve made meanwhile.
    let mut txn = engine.begin(None).await.expect("begin");
    txn.sequence(reserve.clone()).await.expect("next");
    txn.set(set("invoice/101", "draft")).await.expect("set");
    let plain = SequenceOp::Reserve { name: "invoices".into(), count: 1, idempotency_key: None };
    kernel.execute(kernel.partition_of_name("invoices"), PartitionRequest::Sequence { op: plain }).await.expect("next");
    assert!(matches!(txn.commit().await, Err(KvError::Conflict(_))));
    assert_eq!(committed(&engine, "invoice/101").await, None);

    // Idempotency keys belong to single calls.
    let mut txn = engine.begin(None).await.expect("begin");
    let keyed = SequenceOp::Reserve { name: "invoices".into(), count: 1, idempotency_key: Some("k".into()) };
    assert!(matches!(txn.sequence(keyed).await, Err(KvError::InvalidInput(_))));
}
