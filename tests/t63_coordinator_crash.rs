//! A transaction's coordinator dies between prepare and commit (a test hook aborts the
//! process once every participant prepared): after the transaction's timeout its keys
//! are writable again and its outcome is all-or-nothing (here: nothing, since no
//! decision was written).

mod common;

use std::time::{Duration, Instant};

use common::*;
use kahuna_client::{Client, GetOptions, SetOptions};

const PARTITIONS: u32 = 4;

#[tokio::test]
async fn coordinator_killed_between_prepare_and_commit() {
    let fault = |id: u64| {
        if id == 1 { vec![("KAHUNA_FAULT".to_owned(), "crash-after-prepare".to_owned())] } else { Vec::new() }
    };
    let mut cluster = Cluster::start_with_env(3, PARTITIONS, &[], fault).await;
    // Two keys in different partitions, so the commit is two-phase.
    // (A key's bucket decides its partition: the keys need different buckets.)
    let a = "acct-a/balance".to_owned();
    let b = (0..)
        .map(|n| format!("acct-b{n}/balance"))
        .find(|k| partition_of(k, PARTITIONS) != partition_of(&a, PARTITIONS));
    let b = b.expect("a key in another partition");
    let others =
        Client::connect([cluster.node_ref(2).address.clone(), cluster.node_ref(3).address.clone()]).expect("client");
    others.set(&a, "100", SetOptions::new()).await.expect("seed a");
    others.set(&b, "0", SetOptions::new()).await.expect("seed b");

    let coordinator = Client::connect([cluster.node_ref(1).address.clone()]).expect("client");
    let txn = coordinator.begin(Some(Duration::from_secs(2))).await.expect("begin");
    txn.set(&a, "60", SetOptions::new()).await.expect("buffered");
    txn.set(&b, "40", SetOptions::new()).await.expect("buffered");
    let outcome = txn.commit().await;
    assert!(outcome.is_err(), "the coordinator must die before answering: {outcome:?}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cluster.node(1).has_exited() {
        assert!(Instant::now() < deadline, "node 1 should have aborted itself");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(cluster.node_ref(1).log().contains("crash-after-prepare"), "{}", cluster.node_ref(1).log());

    // Once the timeout passed, a plain write to a held key goes through: it resolves
    // the transaction from its record (or the sweep already did).
    let started = Instant::now();
    let written =
        eventually(Duration::from_secs(30), || async { others.set(&a, "100-after", SetOptions::new()).await }).await;
    assert!(written.modified);
    println!("the held key became writable after {:?}", started.elapsed());
    let value = |key: String| {
        let others = &others;
        async move {
            let got = eventually(Duration::from_secs(30), || others.get(key.clone(), GetOptions::new())).await;
            got.kv.map(|kv| String::from_utf8_lossy(&kv.value).into_owned())
        }
    };
    assert_eq!(value(a.clone()).await.as_deref(), Some("100-after"));
    assert_eq!(value(b.clone()).await.as_deref(), Some("0"), "no half of the transaction is visible");

    // The crashed node comes back without the hook and serves the same state.
    cluster.node(1).env.clear();
    cluster.node(1).start();
    let back = Client::connect([cluster.node_ref(1).address.clone()]).expect("client");
    let got = eventually(Duration::from_secs(30), || back.get(b.clone(), GetOptions::new())).await;
    assert_eq!(got.kv.map(|kv| kv.value), Some(b"0".to_vec()));
}
