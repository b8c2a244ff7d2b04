//! Faults on real processes while the register workload of `kahuna-check` runs, then the
//! history judged by the linearizability checker: no violation, and every key written
//! again within seconds of each heal.
//!
//! - `partitions_isolate_leader_then_split`: three nodes in network namespaces
//!   (`common/netns.rs`); the leader of partition 0 is isolated with iptables, healed, a
//!   majority/minority split, healed, a one-way cut, healed. Needs root, `ip` and
//!   `iptables`; prints `SKIPPED ...` and passes elsewhere (`KAHUNA_FAULTS_REQUIRED=1`
//!   makes that a failure).
//! - `sigstop_leader_and_follower`: three nodes on loopback; the leader of partition 0 is
//!   paused with SIGSTOP and resumed, then a follower. Runs anywhere.
//!
//! Every run prints one `WINDOW` line per fault window (operations invoked in it by
//! outcome, violations, and how long until every key had a successful write after the
//! window began). `KAHUNA_T50_SECONDS` stretches the schedule (for `scripts/torture.sh`);
//! a failing run keeps its history in `KAHUNA_T50_KEEP` (default: the temporary directory).

mod common;
#[path = "common/netns.rs"]
mod netns;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use common::Cluster;
use kahuna_check::{
    History, Outcome, Tally, WorkloadKind, WorkloadOptions, check_workload, history_time, run_workload, violations_in,
};
use netns::NetCluster;

const PARTITIONS: u32 = 3;
const CLIENTS: usize = 6;
const KEYS: usize = 12;
/// Longest a key may wait for a successful write after a heal.
const RECOVERY_MAX: Duration = Duration::from_secs(10);
/// One test at a time: two clusters on two cores would make each other's elections slow.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The schedule's length in seconds when `KAHUNA_T50_SECONDS` is not set.
fn scale(default_secs: f64) -> f64 {
    let asked: Option<f64> = std::env::var("KAHUNA_T50_SECONDS").ok().and_then(|s| s.parse().ok());
    asked.map_or(1.0, |secs| (secs / default_secs).max(1.0))
}

/// Fault windows in wall-clock time, each running until the next begins.
struct Timeline {
    windows: Vec<(String, SystemTime, bool)>,
}

impl Timeline {
    fn new() -> Timeline {
        Timeline { windows: Vec::new() }
    }

    /// Starts a window; `heal` marks one whose start must be followed by writes succeeding.
    fn begin(&mut self, name: impl Into<String>, heal: bool) {
        self.windows.push((name.into(), SystemTime::now(), heal));
    }
}

/// Time from `from` until every key had a write or cas invoked after `from` succeed;
/// `None` when some key never did.
fn recovery(ops: &[kahuna_check::Operation], keys: &BTreeSet<String>, from: u64) -> Option<Duration> {
    let mut first: BTreeMap<&str, u64> = BTreeMap::new();
    for op in ops {
        let written = matches!(op.f.as_str(), "write" | "cas") && op.outcome == Outcome::Ok;
        if written && op.invoke_time >= from {
            let key = op.field("key").and_then(|k| k.as_str()).unwrap_or_default();
            let t = first.entry(key).or_insert(op.complete_time);
            *t = (*t).min(op.complete_time);
        }
    }
    if keys.iter().any(|k| !first.contains_key(k.as_str())) {
        return None;
    }
    first.values().max().map(|t| Duration::from_nanos(t.saturating_sub(from)))
}

/// Checks the history, prints the window table, and panics (keeping the history) on any
/// violation or on a heal after which some key was not written within `RECOVERY_MAX`.
fn judge(test: &str, history: &History, started: SystemTime, timeline: &Timeline, keep: impl Fn(&PathBuf)) {
    let ops = history.operations().expect("history pairs");
    // libtest may have printed `test ... ` without a newline; start the table on its own line.
    eprintln!();
    let report = check_workload(WorkloadKind::Register, history, KEYS);
    let keys: BTreeSet<String> =
        ops.iter().filter_map(|op| op.field("key").and_then(|k| k.as_str()).map(str::to_owned)).collect();
    let mut failures = Vec::new();
    for (i, (name, start, heal)) in timeline.windows.iter().enumerate() {
        let from = history_time(started, *start);
        let to = timeline.windows.get(i + 1).map_or(u64::MAX, |w| history_time(started, w.1));
        let tally = Tally::window(&ops, from, to);
        let secs = if to == u64::MAX { "rest".to_owned() } else { format!("{:.1}s", (to - from) as f64 / 1e9) };
        let recovered = recovery(&ops, &keys, from);
        let shown = recovered.map_or_else(|| "never".to_owned(), |d| format!("{:.2}s", d.as_secs_f64()));
        eprintln!(
            "WINDOW {test} {name:<24} {secs:>6}  ok {:>5}  failed {:>4}  unknown {:>4}  violations {}  all-keys-written {shown}",
            tally.ok,
            tally.failed,
            tally.unknown,
            violations_in(report.as_ref(), from, to),
        );
        if *heal && recovered.is_none_or(|d| d > RECOVERY_MAX) {
            failures.push(format!("after `{name}` not every key was written within {RECOVERY_MAX:?} ({shown})"));
        }
    }
    let tally = Tally::of(&ops);
    eprintln!("TOTAL {test} {tally}; {report}");
    if !report.ok() {
        failures.push(format!("checker: {report}"));
    }
    if tally.ok == 0 {
        failures.push("no operation succeeded".to_owned());
    }
    if failures.is_empty() {
        return;
    }
    let dir = std::env::var_os("KAHUNA_T50_KEEP").map_or_else(std::env::temp_dir, PathBuf::from);
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(format!("kahuna-t50-{test}-{}.jsonl", std::process::id()));
    let saved = std::fs::File::create(&path).map(|f| history.to_jsonl(f));
    eprintln!("KEPT {test} history {} ({saved:?})", path.display());
    keep(&dir);
    panic!("{test}: {}", failures.join("; "));
}

/// The child side of `common/netns.rs`: status polls and the workload, run inside the
/// client namespace. Does nothing in an ordinary test run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netns_child() {
    netns::child_main().await;
}

/// The leader of `partition`, or node 1 when none is found within a few seconds: the
/// schedule goes on, and the judge reports the unavailability through its recovery times.
fn leader_or_any(cluster: &NetCluster, partition: u32) -> u64 {
    cluster.wait_leader(partition, Duration::from_secs(5)).unwrap_or_else(|| {
        eprintln!("NOTE no node claims leadership of partition {partition}; picking node 1");
        1
    })
}

#[test]
fn partitions_isolate_leader_then_split() {
    const TEST: &str = "partitions";
    if netns::skip("t50_faults::partitions_isolate_leader_then_split") {
        return;
    }
    let _serial = SERIAL.blocking_lock();
    let x = scale(38.0);
    let secs = |s: f64| Duration::from_secs_f64(s * x);
    let cluster = NetCluster::start(3, PARTITIONS);
    let terms_before = cluster.terms();
    let workload = cluster.spawn_workload(secs(38.0), CLIENTS, KEYS);
    let mut timeline = Timeline::new();
    // Faults start at fixed offsets from here; leader look-ups happen in the second before.
    let start = Instant::now();
    let wait_until = |s: f64| std::thread::sleep((start + secs(s)).saturating_duration_since(Instant::now()));

    timeline.begin("calm", false);
    wait_until(1.0);
    let victim = leader_or_any(&cluster, 0);
    wait_until(2.0);
    timeline.begin(format!("isolate-leader-n{victim}"), false);
    cluster.split(&[victim]);
    wait_until(8.0);
    cluster.heal();
    timeline.begin("healed", true);
    wait_until(12.0);

    // The minority: a node leading some partition, other than the first victim if possible.
    let leaders: Vec<u64> = (0..PARTITIONS).map(|p| leader_or_any(&cluster, p)).collect();
    let minority = leaders.iter().copied().find(|l| *l != victim).unwrap_or(victim % 3 + 1);
    wait_until(13.0);
    timeline.begin(format!("split-n{minority}-vs-rest"), false);
    cluster.split(&[minority]);
    wait_until(19.0);
    cluster.heal();
    timeline.begin("healed", true);
    wait_until(23.0);

    // One way: a follower stops hearing the leader, so it calls elections the leader
    // cannot hear answered.
    let leader = leader_or_any(&cluster, 0);
    let follower = leader % 3 + 1;
    wait_until(24.0);
    timeline.begin(format!("one-way-n{leader}-to-n{follower}"), false);
    cluster.cut_one_way(leader, follower);
    wait_until(28.0);
    cluster.heal();
    // The rest of the run (10 s at scale 1) is at least RECOVERY_MAX, so the last heal is
    // judged like the others.
    timeline.begin("healed", true);

    let (history, started) = workload.wait(secs(38.0) + Duration::from_secs(30));
    let elections = cluster.terms().saturating_sub(terms_before);
    eprintln!("ELECTIONS {TEST} {elections} (sum of term increases over {PARTITIONS} partitions)");
    judge(TEST, &history, started, &timeline, |dir| cluster.keep_logs(dir));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigstop_leader_and_follower() {
    const TEST: &str = "sigstop";
    let _serial = SERIAL.lock().await;
    let x = scale(25.0);
    let secs = |s: f64| Duration::from_secs_f64(s * x);
    let mut cluster = Cluster::start(3, PARTITIONS, &[]).await;
    let mut options = WorkloadOptions::new(cluster.nodes.iter().map(|n| n.address.clone()));
    options.duration = secs(25.0);
    options.clients = CLIENTS;
    options.keys = KEYS;
    options.timeout = Duration::from_millis(1_000);
    let workload = tokio::spawn(async move { run_workload(WorkloadKind::Register, &options).await });
    let mut timeline = Timeline::new();

    timeline.begin("calm", false);
    tokio::time::sleep(secs(2.0)).await;
    let leader = cluster.leader_of(0).await;
    assert_ne!(leader, 0, "partition 0 has a leader");
    timeline.begin(format!("sigstop-leader-n{leader}"), false);
    cluster.node(leader).signal("STOP");
    tokio::time::sleep(secs(5.0)).await;
    cluster.node(leader).signal("CONT");
    timeline.begin("sigcont", true);
    tokio::time::sleep(secs(5.0)).await;

    let follower = leader % 3 + 1;
    timeline.begin(format!("sigstop-n{follower}"), false);
    cluster.node(follower).signal("STOP");
    tokio::time::sleep(secs(3.0)).await;
    cluster.node(follower).signal("CONT");
    // The rest of the run (10 s at scale 1) is at least RECOVERY_MAX.
    timeline.begin("sigcont", true);

    let run = workload.await.expect("workload task").expect("workload runs");
    judge(TEST, &run.history, run.started_at, &timeline, |keep| {
        for node in &cluster.nodes {
            let _ = std::fs::write(keep.join(format!("node{}.log", node.id)), node.log());
        }
    });
}

/// `kahuna check` as a library call against one node: a short register run passes,
/// keeps its history where asked, and the bank workload (transactions) passes too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_command_against_one_node() {
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        check: kahuna_check::CheckArgs,
    }

    let _serial = SERIAL.lock().await;
    let cluster = Cluster::start(1, 2, &[]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let history = dir.path().join("register.jsonl");
    let endpoint = cluster.nodes[0].address.clone();
    let args = ["check", "--endpoints", &endpoint, "--duration", "2", "--clients", "3", "--keys", "3"];
    let mut cli = Cli::try_parse_from(args.iter().copied().chain(["--history", history.to_str().expect("utf-8")]))
        .expect("arguments parse");
    cli.check.seed = Some(7);
    let code = kahuna_check::run(cli.check).await.expect("the run starts");
    assert_eq!(code, std::process::ExitCode::SUCCESS);
    let saved = History::from_jsonl(std::fs::File::open(&history).expect("history kept")).expect("parses");
    assert!(Tally::of(&saved.operations().expect("pairs")).ok > 0);

    // The transactional workloads run through the same command.
    let cli = Cli::try_parse_from(args.iter().copied().chain(["--workload", "bank"])).expect("arguments parse");
    let code = kahuna_check::run(cli.check).await.expect("the bank run starts");
    assert_eq!(code, std::process::ExitCode::SUCCESS);
}
