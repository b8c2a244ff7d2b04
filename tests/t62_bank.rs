//! Transactions checked end to end on three nodes: the bank workload (transfers between
//! accounts spread over the partitions, reads of every account in one transaction) runs
//! while the leader of a partition holding accounts is killed with SIGKILL and restarted;
//! every read must add up to the initial total with no negative balance, and transfers
//! must commit before the kill and after it. Then the list-append workload runs on the
//! same cluster and must show no G0, G1, G2 or real-time anomaly.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use common::*;
use kahuna_check::{Tally, WorkloadKind, WorkloadOptions, WorkloadRun, check_workload, run_workload};
use kahuna_client::{Client, GetOptions};

const PARTITIONS: u32 = 4;
/// Accounts of the bank, each a bucket of its own (see the workload's key names).
const ACCOUNTS: usize = 12;
const BANK_CLIENTS: usize = 8;
const BANK_SECS: u64 = 18;
/// When the victim is killed, and how long it stays down.
const KILL_AFTER_SECS: u64 = 6;
const DOWN_SECS: u64 = 3;
/// Transfers that must commit before the kill, and again after it. Debug builds on a
/// loaded two-core machine commit a few transfers a second (each a two-phase commit
/// across partitions); typical runs see 15 to 50 in each window.
const TRANSFERS_OK_MIN: usize = 5;
const APPEND_CLIENTS: usize = 6;
const APPEND_LISTS: usize = 6;
const APPEND_SECS: u64 = 10;
/// Budget of a diagnostic read: above the server's request timeout (5 s by default).
const PROBE_TIMEOUT: Duration = Duration::from_secs(7);
/// Transactions of the append run that must commit for its verdict to mean anything
/// (typically 25 to 50).
const APPEND_TXNS_OK_MIN: usize = 10;

fn options(cluster: &Cluster, secs: u64, clients: usize, keys: usize) -> WorkloadOptions {
    let mut options = WorkloadOptions::new(cluster.endpoints());
    options.duration = Duration::from_secs(secs);
    options.clients = clients;
    options.keys = keys;
    options.timeout = Duration::from_millis(1_500);
    options
}

/// Judges a run with its checker; on failure keeps the history in the temporary
/// directory and names it.
fn judge(kind: WorkloadKind, run: &WorkloadRun, keys: usize) {
    let report = check_workload(kind, &run.history, keys);
    eprintln!("{kind} workload (keys {}*): {}\n{report}", run.key_prefix, run.tally);
    if !report.ok() {
        let path = std::env::temp_dir().join(format!("{}-{kind}.jsonl", run.key_prefix));
        let saved = std::fs::File::create(&path).map(|f| run.history.to_jsonl(std::io::BufWriter::new(f)));
        panic!("{kind} history has violations (history in {} {saved:?}):\n{report}", path.display());
    }
}

/// Operations `f` by outcome among those invoked in `[from_ns, to_ns)` of the history.
fn tally(run: &WorkloadRun, f: &str, from_ns: u64, to_ns: u64) -> Tally {
    let ops = run.history.operations().expect("history pairs");
    let ops: Vec<_> = ops.into_iter().filter(|op| op.f == f).collect();
    Tally::window(&ops, from_ns, to_ns)
}

/// The most frequent errors of operations invoked from `from_ns` on, for failure messages.
fn errors_after(run: &WorkloadRun, from_ns: u64) -> String {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for op in run.history.operations().expect("history pairs").iter().filter(|op| op.invoke_time >= from_ns) {
        if let Some(error) = op.completion.get("error").and_then(|e| e.as_str()) {
            *counts.entry(error.chars().take(160).collect()).or_default() += 1;
        }
    }
    let mut counts: Vec<(String, usize)> = counts.into_iter().collect();
    counts.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    counts.iter().take(5).map(|(e, n)| format!("\n  {n} x {e}")).collect()
}

/// Diagnoses a stall: a transactional read of an unwritten key in every partition at
/// once, each on the partition's leader and with a budget above the server's request
/// timeout, so that the leader's own error (such as a snapshot that never settles) comes
/// back.
async fn snapshot_reads_by_partition(cluster: &Cluster) -> String {
    let mut probes = Vec::new();
    for p in 0..PARTITIONS {
        let leader = cluster.leader_of(p).await;
        let address = cluster.running().find(|n| n.id == leader).map_or_else(String::new, |n| n.address.clone());
        let key = (0..).map(|i| format!("t62-probe-{i}")).find(|k| partition_of(k, PARTITIONS) == p);
        let probe = tokio::spawn(async move {
            let client = Client::builder([address]).timeout(PROBE_TIMEOUT).retries(0).build()?;
            let txn = client.begin(None).await?;
            txn.get(key.expect("some key lands in every partition"), GetOptions::new()).await.map(|_| ())
        });
        probes.push((p, leader, probe));
    }
    let mut out = String::new();
    for (p, leader, probe) in probes {
        let outcome = match probe.await.expect("probe task") {
            Ok(()) => "ok".to_string(),
            Err(e) => e.to_string(),
        };
        out.push_str(&format!("\n  partition {p} (leader node {leader}): {outcome}"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bank_and_append_are_serializable_across_a_leader_kill() {
    let mut cluster = Cluster::start(3, PARTITIONS, &[]).await;

    // The bank, with the leader of the first account's partition killed partway.
    let bank = options(&cluster, BANK_SECS, BANK_CLIENTS, ACCOUNTS);
    let first_account = format!("{}-bank-0", bank.key_prefix);
    let partition = partition_of(&first_account, PARTITIONS);
    let victim = cluster.leader_of(partition).await;
    assert_ne!(victim, 0, "partition {partition} has a leader");
    let started = SystemTime::now();
    let workload = tokio::spawn(async move { run_workload(WorkloadKind::Bank, &bank).await });
    tokio::time::sleep(Duration::from_secs(KILL_AFTER_SECS)).await;
    let killed_at = SystemTime::now();
    cluster.node(victim).kill();
    tokio::time::sleep(Duration::from_secs(DOWN_SECS)).await;
    cluster.node(victim).start();
    let restarted_at = SystemTime::now();
    let run = workload.await.expect("bank task").expect("bank workload runs");
    eprintln!(
        "killed node {victim} (leader of partition {partition}, holding {first_account}) {:?} after the start",
        killed_at.duration_since(started).unwrap_or_default()
    );
    judge(WorkloadKind::Bank, &run, ACCOUNTS);
    let (killed, restarted) = (run.time_of(killed_at), run.time_of(restarted_at));
    let before = tally(&run, "transfer", 0, killed);
    let down = tally(&run, "transfer", killed, restarted);
    let after = tally(&run, "transfer", restarted, u64::MAX);
    let reads = tally(&run, "read", 0, u64::MAX);
    eprintln!("transfers before the kill: {before}; while down: {down}; after the restart: {after}; reads: {reads}");
    assert!(reads.ok > 0, "no read of the accounts succeeded: {reads}");
    assert!(before.ok >= TRANSFERS_OK_MIN, "too few transfers committed before the kill: {before}");
    if down.ok + after.ok < TRANSFERS_OK_MIN {
        panic!(
            "too few transfers committed after the kill: {down} / {after}; errors after the restart:{}\n\
             a snapshot read in each partition now:{}",
            errors_after(&run, restarted),
            snapshot_reads_by_partition(&cluster).await
        );
    }

    // List-append on the same cluster, every node back.
    cluster.wait_ready(Duration::from_secs(30)).await;
    let append = options(&cluster, APPEND_SECS, APPEND_CLIENTS, APPEND_LISTS);
    let run = run_workload(WorkloadKind::Append, &append).await.expect("append workload runs");
    judge(WorkloadKind::Append, &run, APPEND_LISTS);
    if run.tally.ok < APPEND_TXNS_OK_MIN {
        panic!(
            "too few append transactions committed: {}; errors:{}\na snapshot read in each partition now:{}",
            run.tally,
            errors_after(&run, 0),
            snapshot_reads_by_partition(&cluster).await
        );
    }
}
