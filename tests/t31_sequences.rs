//! Sequences end to end against real processes: many clients calling next and reserve
//! while the partition leader is killed — no value handed out twice — and idempotency
//! keys replayed after dropped replies, after the failover and after a full restart.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use kahuna_client::{Client, Consistency, Error, OperationId, SequenceOptions};
use kahuna_proto::v1::CreateSequenceRequest;
use kahuna_proto::v1::sequences_client::SequencesClient;

const SEQUENCE: &str = "seq/ids";

fn client(cluster: &Cluster) -> Client {
    let endpoints: Vec<String> = cluster.running().map(|n| n.address.clone()).collect();
    Client::builder(endpoints).timeout(Duration::from_secs(5)).retries(8).build().expect("client")
}

/// An allocation as the test records it: first value and count.
type Allocation = (i64, u64);

/// Calls next (count 1) or reserve with `key` until the cluster answers; a retry with
/// the same key after an error is exactly the "dropped reply" case.
async fn allocate(client: &Client, key: &str, count: u64) -> (Allocation, bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let given = OperationId::Given(key.to_owned());
        let outcome = if count == 1 {
            client.next_sequence(SEQUENCE, given).await.map(|r| ((r.value, 1), r.replayed))
        } else {
            client.reserve_sequence(SEQUENCE, count, given).await.map(|r| ((r.first, r.count), r.replayed))
        };
        match outcome {
            Ok(done) => return done,
            Err(e) if e.is_retryable() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("{key}: {e}"),
        }
    }
}

fn expect_error(result: Result<impl std::fmt::Debug, Error>, code: &str, needle: &str) {
    match result {
        Err(e) => assert!(e.code() == code && e.message().contains(needle), "{e:?}: want {code} with {needle:?}"),
        Ok(v) => panic!("expected {code}, got {v:?}"),
    }
}

async fn bad_input(cluster: &Cluster, client: &Client) {
    let mut raw = SequencesClient::connect(format!("http://{}", cluster.nodes[0].address)).await.expect("connect");
    let zero = CreateSequenceRequest { name: "seq/bad".into(), start: 1, increment: 0, max: None };
    let status = raw.create(zero).await.expect_err("increment 0");
    assert!(status.message().contains("increment must be at least 1"), "{status:?}");
    expect_error(client.create_sequence("", SequenceOptions::new()).await, "InvalidInput", "sequence name is empty");
    expect_error(client.create_sequence("seq/b", SequenceOptions::new().max(0)).await, "InvalidInput", "below");
    expect_error(client.next_sequence("seq/none", OperationId::Auto).await, "NotFound", "does not exist");
    let small = client.create_sequence("seq/small", SequenceOptions::new().start(10).max(12)).await.expect("create");
    assert!(small.created);
    let again = client.create_sequence("seq/small", SequenceOptions::new()).await.expect("create again");
    assert!(!again.created && again.sequence.start == 10);
    expect_error(client.reserve_sequence("seq/small", 0, OperationId::Auto).await, "InvalidInput", "at least 1");
    expect_error(client.reserve_sequence("seq/small", 1 << 40, OperationId::Auto).await, "InvalidInput", "limit");
    let key = || OperationId::Given("k".into());
    let first = client.reserve_sequence("seq/small", 2, key()).await.expect("10, 11");
    assert_eq!((first.first, first.last, first.replayed), (10, 11, false));
    expect_error(client.reserve_sequence("seq/small", 3, key()).await, "InvalidInput", "first used for 2");
    expect_error(client.reserve_sequence("seq/small", 2, OperationId::Auto).await, "Exhausted", "1 value(s) left");
    let info = client.get_sequence("seq/small", Consistency::Linearizable).await.expect("get");
    let info = info.sequence.expect("exists");
    assert_eq!((info.allocated, info.last, info.next), (2, Some(11), Some(12)), "nothing allocated by refusals");
    assert!(client.delete_sequence("seq/small").await.expect("delete").deleted);
    assert!(client.get_sequence("seq/small", Consistency::Linearizable).await.expect("get").sequence.is_none());
}

#[tokio::test]
async fn unique_values_across_failover_and_restart() {
    let mut cluster = Cluster::start(3, 4, &[]).await;
    let client = client(&cluster);
    bad_input(&cluster, &client).await;
    client.create_sequence(SEQUENCE, SequenceOptions::new()).await.expect("create");

    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..6)
        .map(|w| {
            let (client, stop) = (client.clone(), stop.clone());
            tokio::spawn(async move {
                let mut made: BTreeMap<String, Allocation> = BTreeMap::new();
                let mut n = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    let key = format!("w{w}-{n}");
                    let count = if n.is_multiple_of(2) { 1 } else { 3 };
                    // `replayed` may be true here: an attempt whose reply was lost applied.
                    let (allocation, _) = allocate(&client, &key, count).await;
                    if n.is_multiple_of(5) {
                        // The reply "got lost": the same key again gets the same values.
                        let (again, replayed) = allocate(&client, &key, count).await;
                        assert_eq!(again, allocation, "{key} replayed differently");
                        assert!(replayed);
                    }
                    made.insert(key, allocation);
                }
                made
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let victim = cluster.leader_of(partition_of(SEQUENCE, cluster.partitions)).await;
    cluster.node(victim).kill();
    tokio::time::sleep(Duration::from_millis(3_000)).await;
    stop.store(true, Ordering::SeqCst);
    let mut made: BTreeMap<String, Allocation> = BTreeMap::new();
    for worker in workers {
        made.extend(worker.await.expect("worker"));
    }

    // No value twice, and every value handed out belongs to some acknowledged call.
    let mut values = BTreeSet::new();
    for (key, (first, count)) in &made {
        for v in *first..*first + *count as i64 {
            assert!(values.insert(v), "{v} handed out twice (again under {key})");
        }
    }
    let info = client.get_sequence(SEQUENCE, Consistency::Linearizable).await.expect("get").sequence.expect("exists");
    assert_eq!(info.allocated, values.len() as u64, "values lost or allocated twice");
    eprintln!("{} calls, {} values around the kill of node {victim}", made.len(), values.len());

    // A full restart: every node stopped and started again.
    cluster.node(victim).start();
    for node in &mut cluster.nodes {
        node.terminate();
    }
    for node in &mut cluster.nodes {
        node.start();
    }
    cluster.wait_ready(Duration::from_secs(30)).await;
    let client = self::client(&cluster);
    for (key, allocation) in made.iter().step_by(7) {
        let (again, replayed) = allocate(&client, key, allocation.1).await;
        assert_eq!((again, replayed), (*allocation, true), "{key} after the restart");
    }
    let (fresh, replayed) = allocate(&client, "after-restart", 1).await;
    assert!(!replayed && !values.contains(&fresh.0) && fresh.0 > *values.last().unwrap_or(&0));
}
