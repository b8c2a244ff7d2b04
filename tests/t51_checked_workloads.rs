//! Workloads of `kahuna check` against three nodes while a partition leader is killed
//! with SIGKILL and restarted, their histories judged by the checkers: sequences (no
//! value handed out twice, every idempotency key answered with one allocation) and
//! locks (grants in real-time order carry increasing tokens, no token to two owners,
//! the fenced resource never accepts a stale token).

mod common;

use std::time::Duration;

use common::*;
use kahuna_check::{Tally, WorkloadKind, WorkloadOptions, check_workload, run_workload};

const PARTITIONS: u32 = 4;

#[tokio::test]
async fn sequence_history_is_clean_across_a_leader_kill() {
    let mut cluster = Cluster::start(3, PARTITIONS, &[]).await;
    let mut options = WorkloadOptions::new(cluster.nodes.iter().map(|n| n.address.clone()));
    options.duration = Duration::from_secs(8);
    options.clients = 4;
    options.timeout = Duration::from_millis(1500);
    let sequence = format!("{}-sequence", options.key_prefix);
    let victim = cluster.leader_of(partition_of(&sequence, PARTITIONS)).await;
    assert_ne!(victim, 0);

    let workload = tokio::spawn(async move { run_workload(WorkloadKind::Sequence, &options).await });
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster.node(victim).kill();
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.node(victim).start();

    let run = workload.await.expect("workload task").expect("workload runs");
    let tally = Tally::of(&run.history.operations().expect("history pairs"));
    let report = check_workload(WorkloadKind::Sequence, &run.history, 1);
    eprintln!("sequence workload: {tally:?}\n{report}");
    assert!(report.ok(), "{report}");
    assert!(tally.ok > 20, "too few successful allocations: {tally:?}");
}

#[tokio::test]
async fn lock_history_is_clean_across_a_leader_kill() {
    let mut cluster = Cluster::start(3, PARTITIONS, &[]).await;
    let mut options = WorkloadOptions::new(cluster.nodes.iter().map(|n| n.address.clone()));
    options.duration = Duration::from_secs(8);
    options.clients = 4;
    options.keys = 2;
    options.timeout = Duration::from_millis(1500);
    let first_lock = format!("{}-lock-0", options.key_prefix);
    let victim = cluster.leader_of(partition_of(&first_lock, PARTITIONS)).await;
    assert_ne!(victim, 0);

    let workload = tokio::spawn(async move { run_workload(WorkloadKind::Lock, &options).await });
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster.node(victim).kill();
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.node(victim).start();

    let run = workload.await.expect("workload task").expect("workload runs");
    let tally = Tally::of(&run.history.operations().expect("history pairs"));
    let report = check_workload(WorkloadKind::Lock, &run.history, 2);
    eprintln!("lock workload: {tally:?}\n{report}");
    assert!(report.ok(), "{report}");
    assert!(tally.ok > 20, "too few successful operations: {tally:?}");
}
