//! Workloads of `kahuna check` against three nodes while a partition leader is killed
//! with SIGKILL and restarted, their histories judged by the checkers: sequences (no
//! value handed out twice, every idempotency key answered with one allocation) and
//! locks (grants in real-time order carry increasing tokens, no token to two owners,
//! the fenced resource never accepts a stale token), and registers written and read over
//! the client's pipelines (linearizable).

mod common;

use std::time::Duration;

use common::*;
use kahuna_check::{Tally, WorkloadKind, WorkloadOptions, check_workload, run_workload};

const PARTITIONS: u32 = 4;

/// Runs `kind` for 8 s with 4 clients over `keys` keys against three nodes (clients
/// pipelining single-key calls when `pipeline`), kills the leader of the partition holding
/// `victim_key(prefix)` after 3 s and restarts it 2 s later, then checks the history.
async fn checked_across_a_leader_kill(kind: WorkloadKind, keys: usize, victim_key: fn(&str) -> String, pipeline: bool) {
    let mut cluster = Cluster::start(3, PARTITIONS, &[]).await;
    let mut options = WorkloadOptions::new(cluster.nodes.iter().map(|n| n.address.clone()));
    options.duration = Duration::from_secs(8);
    options.clients = 4;
    options.keys = keys;
    options.timeout = Duration::from_millis(1500);
    options.pipeline = pipeline;
    let victim = cluster.leader_of(partition_of(&victim_key(&options.key_prefix), PARTITIONS)).await;
    assert_ne!(victim, 0);

    let workload = tokio::spawn(async move { run_workload(kind, &options).await });
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster.node(victim).kill();
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.node(victim).start();

    let run = workload.await.expect("workload task").expect("workload runs");
    let tally = Tally::of(&run.history.operations().expect("history pairs"));
    let report = check_workload(kind, &run.history, keys);
    eprintln!("{kind} workload: {tally:?}\n{report}");
    assert!(report.ok(), "{report}");
    assert!(tally.ok > 20, "too few successful operations: {tally:?}");
}

#[tokio::test]
async fn sequence_history_is_clean_across_a_leader_kill() {
    checked_across_a_leader_kill(WorkloadKind::Sequence, 1, |prefix| format!("{prefix}-sequence"), false).await;
}

#[tokio::test]
async fn lock_history_is_clean_across_a_leader_kill() {
    checked_across_a_leader_kill(WorkloadKind::Lock, 2, |prefix| format!("{prefix}-lock-0"), false).await;
}

#[tokio::test]
async fn register_history_is_linearizable_across_a_leader_kill_with_pipelined_calls() {
    checked_across_a_leader_kill(WorkloadKind::Register, 16, |prefix| format!("{prefix}-register-0"), true).await;
}
