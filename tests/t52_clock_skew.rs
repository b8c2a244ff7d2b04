//! Clock skew: three nodes on loopback, node 1 (the preferred leader of partition 0)
//! running under libfaketime with its wall clock 120 s ahead in one test and 120 s
//! behind in the other (`DONT_FAKE_MONOTONIC=1`, so timers are unaffected).
//!
//! Each test checks that
//! - the skewed node leads at least one partition, and stamps commits there;
//! - HLC merging keeps commit timestamps in causal order across nodes: a write led by
//!   the skewed node, then one led by another node, then the skewed node again, get
//!   increasing timestamps, and each is visible through a node other than the one
//!   that stamped it;
//! - the `register` and `lock` workloads, 6 s each over all three nodes, produce
//!   histories with no violations and some successful operations.
//!
//! Needs libfaketime (`apt-get install faketime`); prints `SKIPPED: ...` and passes
//! without it unless `KAHUNA_FAULTS_REQUIRED=1`.

mod common;
#[path = "common/skew.rs"]
mod skew;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{Cluster, get_req, partition_of, set_req};
use kahuna_check::{Tally, WorkloadKind, WorkloadOptions, check_workload, run_workload};
use kahuna_proto::v1::GetRequest;
use skew::libfaketime_or_skip;

const PARTITIONS: u32 = 4;
/// Node 1 is `peers[0 % 3]`, the preferred leader of partitions 0 and 3.
const SKEWED: u64 = 1;

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_millis() as u64
}

fn physical_ms(ts: u64) -> u64 {
    ts >> 16
}

/// A key (bucket `skew-<tag>-<i>`) routed to a partition `wanted` accepts.
fn key_in(tag: &str, wanted: impl Fn(u32) -> bool) -> String {
    (0..10_000)
        .map(|i| format!("skew-{tag}-{}-{i}/k", std::process::id()))
        .find(|k| wanted(partition_of(k, PARTITIONS)))
        .expect("a key in a wanted partition")
}

/// Waits until the skewed node leads some partition; returns the leader map.
async fn skewed_node_leads(cluster: &Cluster) -> std::collections::BTreeMap<u32, u64> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let leaders = cluster.leaders().await;
        if leaders.values().any(|&l| l == SKEWED) {
            return leaders;
        }
        assert!(Instant::now() < deadline, "node {SKEWED} leads nothing: {leaders:?}\n{}", cluster.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Writes through `via`, returns the commit timestamp.
async fn write(cluster: &Cluster, via: u64, key: &str, value: &str) -> u64 {
    let response = cluster.node_ref(via).kv().await.set(set_req(key, value)).await.expect("set").into_inner();
    assert!(response.modified, "set {key} not applied: {response:?}");
    response.commit_ts
}

/// Reads `key` through `via` and expects `value` at `commit_ts`, both as the latest
/// version and `as of` its own commit timestamp (a time the cluster reached, even when
/// `via`'s wall clock is far behind the node that stamped it).
async fn expect_visible(cluster: &Cluster, via: u64, key: &str, value: &str, commit_ts: u64) {
    let got = cluster.node_ref(via).kv().await.get(get_req(key)).await.expect("get").into_inner();
    assert!(got.found, "{key} not found through node {via}");
    let entry = got.kv.expect("entry");
    assert_eq!(entry.value, value.as_bytes(), "{key} through node {via}");
    assert_eq!(entry.commit_ts, commit_ts, "{key} through node {via}");
    let as_of = GetRequest { as_of: Some(commit_ts), ..get_req(key) };
    let got = cluster.node_ref(via).kv().await.get(as_of).await.expect("get as of its commit ts").into_inner();
    assert_eq!(got.kv.map(|e| e.value), Some(value.as_bytes().to_vec()), "{key} as of {commit_ts} via {via}");
}

/// Causal order of commit timestamps across the skewed leader and a normal one.
async fn hlc_orders_writes_across_nodes(cluster: &Cluster, skew_ms: i64) {
    let leaders = skewed_node_leads(cluster).await;
    eprintln!("leaders with node {SKEWED} skewed by {skew_ms} ms: {leaders:?}");
    let skewed_key = key_in("skewed", |p| leaders.get(&p) == Some(&SKEWED));
    let normal_key = key_in("normal", |p| leaders.get(&p).is_some_and(|&l| l != SKEWED && l != 0));
    let other = leaders[&partition_of(&normal_key, PARTITIONS)];

    let before = now_ms();
    let t1 = write(cluster, SKEWED, &skewed_key, "one").await;
    // Heartbeats and replication carry node 1's HLC to the others.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t2 = write(cluster, other, &normal_key, "two").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t3 = write(cluster, SKEWED, &skewed_key, "three").await;
    eprintln!(
        "commit ts physical ms relative to the test's clock: skewed {} / normal {} / skewed {}",
        physical_ms(t1) as i64 - before as i64,
        physical_ms(t2) as i64 - before as i64,
        physical_ms(t3) as i64 - before as i64,
    );
    assert!(t1 < t2 && t2 < t3, "commit timestamps out of causal order: {t1} {t2} {t3}");
    // The HLC never runs behind the fastest clock it has seen: with node 1 ahead every
    // timestamp is about skew_ms ahead; with node 1 behind none is behind real time.
    let floor = before.saturating_add_signed(skew_ms.max(0)).saturating_sub(1_000);
    for ts in [t1, t2, t3] {
        assert!(physical_ms(ts) >= floor, "timestamp {ts} ({} ms) below {floor} ms", physical_ms(ts));
    }
    if skew_ms > 0 {
        // The skewed leader stamps with its own (faked) clock: libfaketime is in effect.
        assert!(physical_ms(t1) >= before + skew_ms as u64 / 2, "node {SKEWED} does not look skewed: {t1}");
    }

    let reader = cluster.nodes.iter().map(|n| n.id).find(|&id| id != SKEWED && id != other).expect("third node");
    expect_visible(cluster, other, &skewed_key, "three", t3).await;
    expect_visible(cluster, reader, &skewed_key, "three", t3).await;
    expect_visible(cluster, SKEWED, &normal_key, "two", t2).await;
    expect_visible(cluster, reader, &normal_key, "two", t2).await;
}

/// Runs `kind` for 6 s with 4 clients over all nodes and checks the history.
async fn workload_is_clean(cluster: &Cluster, kind: WorkloadKind, keys: usize) {
    let mut options = WorkloadOptions::new(cluster.endpoints());
    options.duration = Duration::from_secs(6);
    options.clients = 4;
    options.keys = keys;
    options.timeout = Duration::from_millis(1500);
    let started = Instant::now();
    let run = run_workload(kind, &options).await.expect("workload runs");
    let tally = Tally::of(&run.history.operations().expect("history pairs"));
    let report = check_workload(kind, &run.history, keys);
    eprintln!("{kind} workload in {:?}: {tally:?}\n{report}", started.elapsed());
    assert!(report.ok(), "{kind}: {report}\n{}", cluster.logs());
    assert!(tally.ok > 20, "{kind}: too few successful operations: {tally:?}");
}

async fn clean_with_skew(test: &str, faketime: &str, skew_ms: i64) {
    let Some(lib) = libfaketime_or_skip(test) else { return };
    let started = Instant::now();
    let cluster = skew::start(3, PARTITIONS, SKEWED, faketime, &lib).await;
    eprintln!("{test}: cluster ready in {:?} (node {SKEWED}: FAKETIME={faketime})", started.elapsed());
    hlc_orders_writes_across_nodes(&cluster, skew_ms).await;
    // Node 1 must still lead a partition when the workloads start.
    skewed_node_leads(&cluster).await;
    workload_is_clean(&cluster, WorkloadKind::Register, 4).await;
    workload_is_clean(&cluster, WorkloadKind::Lock, 2).await;
    eprintln!("{test}: leaders at the end {:?}, total {:?}", cluster.leaders().await, started.elapsed());
}

#[tokio::test]
async fn workloads_are_clean_with_a_node_120s_ahead() {
    clean_with_skew("workloads_are_clean_with_a_node_120s_ahead", "+120s", 120_000).await;
}

#[tokio::test]
async fn workloads_are_clean_with_a_node_120s_behind() {
    clean_with_skew("workloads_are_clean_with_a_node_120s_behind", "-120s", -120_000).await;
}
