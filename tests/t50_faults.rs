//! Faults on real processes while a workload of `kahuna-check` runs, then the history
//! judged by that workload's checker: no violation, and writes succeeding again within
//! [`RECOVERY_MAX`] of each heal. The workload is `register` (linearizability) unless
//! `KAHUNA_T50_WORKLOAD` names another (`lock`, `sequence`, `append`, `bank`), as
//! `scripts/torture.sh` does; each fault aims at the leader of the partition holding the
//! workload's first key.
//!
//! - `partitions_isolate_leader_then_split`: three nodes in network namespaces
//!   (`common/netns.rs`); that leader is killed with SIGKILL and restarted on its data
//!   directory 5 s later, then (iptables) the partition's leader is isolated, healed, a
//!   majority/minority split, healed, a one-way cut, healed. Needs root, `ip` and
//!   `iptables`; prints `SKIPPED ...` and passes elsewhere (`KAHUNA_FAULTS_REQUIRED=1`
//!   makes that a failure).
//! - `sigstop_leader_and_follower`: three nodes on loopback; that leader is paused with
//!   SIGSTOP and resumed, then a follower. Runs anywhere.
//!
//! Every run prints one `WINDOW` line per fault window, as name/value pairs: the
//! operations invoked in it by outcome; `elections` (leaders of new terms, seen by polling
//! every node's status every 250 ms) and `terms` (how far the highest term rose, elections
//! nobody won included); `first-write` (from the window's start until the first write
//! invoked in it or later succeeded) and `all-keys` (until every key had one: register,
//! lock and sequence); then every violation counter of the checker, by the window of the
//! first operation each violation names. A `TOTAL` line sums the run; a `RESTART` line
//! names the partitions the killed node led, how soon the two others elected a new leader
//! of each while it was down (or that they did not), and how soon the restarted node
//! answered with a leader for every partition; a `LEADERS` line lists every partition's
//! leaders as seen, with their terms.
//! A write is what changes state: a write or cas, a lock grant, a sequence allocation, a
//! committed transaction that appends, a committed transfer.
//!
//! `KAHUNA_T50_SECONDS` stretches the schedule (for `scripts/torture.sh`). A failing run
//! keeps its history (JSONL) and node logs in the temporary directory, or in
//! `KAHUNA_T50_KEEP` when set (then every run does); its `SEED` line names the workload's
//! seed and key prefix. `KAHUNA_TEST_NODE_LOG` sets the nodes' `KAHUNA_LOG` (default
//! `info,openraft=warn`), for example `info,openraft=info` to see elections.
//! `KAHUNA_T50_PIPELINE=1` makes the clients pipeline their single-key calls
//! (`ClientBuilder::pipeline`).

mod common;
#[path = "common/netns.rs"]
mod netns;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use clap::ValueEnum;
use common::{Cluster, partition_of};
use kahuna_check::{
    History, Operation, Outcome, Report, TIME_INFINITY, Tally, WorkloadKind, WorkloadOptions, check_workload,
    history_time, run_workload,
};
use netns::{NetCluster, Observations};

const PARTITIONS: u32 = 3;
const CLIENTS: usize = 6;
/// Longest a key may wait for a successful write after a heal (or after a kill, which
/// leaves a majority).
const RECOVERY_MAX: Duration = Duration::from_secs(10);
/// Budget of one attempt of a workload call.
const CALL_TIMEOUT: Duration = Duration::from_millis(1_000);
/// The schedule of `partitions_isolate_leader_then_split` and of
/// `sigstop_leader_and_follower` at scale 1, in seconds.
const PARTITIONS_SECS: f64 = 40.0;
const SIGSTOP_SECS: f64 = 25.0;
/// Names the workload; `register` when unset.
const WORKLOAD_ENV: &str = "KAHUNA_T50_WORKLOAD";
/// One test at a time: two clusters on two cores would make each other's elections slow.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The workload `KAHUNA_T50_WORKLOAD` names, `register` by default.
fn workload() -> WorkloadKind {
    match std::env::var(WORKLOAD_ENV) {
        Ok(name) => WorkloadKind::from_str(&name, true).unwrap_or_else(|e| panic!("{WORKLOAD_ENV}={name}: {e}")),
        Err(_) => WorkloadKind::Register,
    }
}

/// Keys (registers, locks, lists in use, accounts) of each workload: few enough that the
/// clients contend, enough that a fault on one partition leader meets some of them. Also
/// enough registers that no key's history outgrows the checker's search: at 12, once
/// writes got faster (the segment-file log), two keys of 700 operations with a kill's
/// unknown writes in them passed its bound of a million configurations.
fn keys_of(kind: WorkloadKind) -> usize {
    match kind {
        WorkloadKind::Register => 24,
        WorkloadKind::Lock => 3,
        WorkloadKind::Sequence => 1,
        WorkloadKind::Append => 6,
        WorkloadKind::Bank => 8,
    }
}

/// The options of a run of `kind` lasting `duration` (seed and key prefix fresh).
fn options(kind: WorkloadKind, endpoints: Vec<String>, duration: Duration) -> WorkloadOptions {
    let mut options = WorkloadOptions::new(endpoints);
    options.duration = duration;
    options.clients = CLIENTS;
    options.keys = keys_of(kind);
    options.timeout = CALL_TIMEOUT;
    options.pipeline = std::env::var("KAHUNA_T50_PIPELINE").is_ok_and(|v| v == "1");
    options
}

/// The partition holding the workload's first key: its leader is every fault's victim.
fn target_partition(kind: WorkloadKind, options: &WorkloadOptions) -> u32 {
    partition_of(&kind.key(&options.key_prefix, 0), PARTITIONS)
}

/// Whether `kind`'s recovery is judged key by key (every key written again) rather than by
/// its first write (lists retire, transfers pick pairs at random).
fn keyed(kind: WorkloadKind) -> bool {
    !matches!(kind, WorkloadKind::Append | WorkloadKind::Bank)
}

/// The key a successful write of `kind` wrote (`""` for workloads that are not
/// [`keyed`]), `None` for any other operation.
fn written_key(kind: WorkloadKind, op: &Operation) -> Option<String> {
    if op.outcome != Outcome::Ok {
        return None;
    }
    let field = |name: &str| op.field(name).and_then(|v| v.as_str()).map(str::to_owned);
    match kind {
        WorkloadKind::Register if matches!(op.f.as_str(), "write" | "cas") => field("key"),
        WorkloadKind::Lock if op.f == "acquire" => field("lock"),
        WorkloadKind::Sequence if matches!(op.f.as_str(), "next" | "reserve") => field("sequence"),
        WorkloadKind::Append if op.f == "txn" => {
            let mops = op.field("value").and_then(|v| v.as_array());
            mops.is_some_and(|mops| mops.iter().any(|m| m[0] == "append")).then(String::new)
        }
        WorkloadKind::Bank if op.f == "transfer" => Some(String::new()),
        _ => None,
    }
}

/// How much `KAHUNA_T50_SECONDS` stretches a schedule of `default_secs` (never below 1;
/// 1 when unset).
fn scale(default_secs: f64) -> f64 {
    let asked: Option<f64> = std::env::var("KAHUNA_T50_SECONDS").ok().and_then(|s| s.parse().ok());
    asked.map_or(1.0, |secs| (secs / default_secs).max(1.0))
}

/// One fault window, running until the next begins.
struct Window {
    name: String,
    start: SystemTime,
    /// Writes must succeed again within `RECOVERY_MAX` of its start.
    must_recover: bool,
}

/// A node killed with SIGKILL and started again.
struct Restart {
    node: u64,
    endpoint: String,
    killed: SystemTime,
    restarted: SystemTime,
}

/// Fault windows in wall-clock time, and the node killed and restarted, if any.
struct Timeline {
    windows: Vec<Window>,
    restart: Option<Restart>,
}

impl Timeline {
    fn new() -> Timeline {
        Timeline { windows: Vec::new(), restart: None }
    }

    /// Starts a window; `must_recover` marks one after which writes must succeed again.
    fn begin(&mut self, name: impl Into<String>, must_recover: bool) {
        self.windows.push(Window { name: name.into(), start: SystemTime::now(), must_recover });
    }
}

/// How long after `from` (history time) writes succeeded again: (until the first one
/// invoked at or after `from` completed, until every key written in the run had one).
/// `None` where that never happened; the second is `None` too for workloads without keys.
fn recovery(kind: WorkloadKind, ops: &[Operation], from: u64) -> (Option<Duration>, Option<Duration>) {
    let mut all: BTreeSet<String> = BTreeSet::new();
    let mut first: BTreeMap<String, u64> = BTreeMap::new();
    for op in ops {
        let Some(key) = written_key(kind, op) else { continue };
        all.insert(key.clone());
        if op.invoke_time >= from {
            let t = first.entry(key).or_insert(op.complete_time);
            *t = (*t).min(op.complete_time);
        }
    }
    let since = |t: u64| Duration::from_nanos(t.saturating_sub(from));
    let first_write = first.values().min().map(|t| since(*t));
    let every_key = (keyed(kind) && all.iter().all(|k| first.contains_key(k)))
        .then(|| first.values().max().map(|t| since(*t)))
        .flatten();
    (first_write, every_key)
}

/// `1.23s`, or `never`.
fn seconds(d: Option<Duration>) -> String {
    d.map_or_else(|| "never".to_owned(), |d| format!("{:.2}s", d.as_secs_f64()))
}

/// One line of name/value pairs: operations by outcome, elections, recovery and every
/// violation counter among operations invoked in `[from, to)`.
fn window_line(
    kind: WorkloadKind,
    ops: &[Operation],
    report: &dyn Report,
    watch: &Observations,
    started: SystemTime,
    (from, to): (SystemTime, Option<SystemTime>),
    recovered: (String, String),
) -> String {
    let (from_ns, to_ns) = (history_time(started, from), to.map_or(u64::MAX, |t| history_time(started, t)));
    let tally = Tally::window(ops, from_ns, to_ns);
    // The last window lasts until the last event of the history.
    let end = |op: &Operation| if op.complete_time == TIME_INFINITY { op.invoke_time } else { op.complete_time };
    let last = ops.iter().map(end).max().unwrap_or(0);
    let secs = format!("{:.1}", to_ns.min(last).saturating_sub(from_ns) as f64 / 1e9);
    let mut line = format!(
        "secs {secs:>5}  ok {:>5}  failed {:>4}  unknown {:>4}  elections {:>2}  terms {:>3}  first-write {:>6}  all-keys {:>6}",
        tally.ok,
        tally.failed,
        tally.unknown,
        watch.elections(from, to),
        watch.term_increase(from, to),
        recovered.0,
        recovered.1,
    );
    for violation_kind in kind.violation_kinds() {
        let inside = |t: u64| (from_ns..to_ns).contains(&t);
        let n = report
            .violations()
            .iter()
            .filter(|v| v.kind == *violation_kind && v.ops.first().is_none_or(|op| inside(op.invoke_time)))
            .count();
        line.push_str(&format!("  {violation_kind} {n}"));
    }
    line
}

/// Each partition's leaders as the watch saw them, `p0 t3:n1@0.0s t5:n2@4.1s ...`: term,
/// leader and seconds after `start`.
fn leader_changes(watch: &Observations, start: SystemTime) -> String {
    let mut by_partition: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for (at, partition, term, leader) in &watch.leaders {
        let secs = at.duration_since(start).map_or(0.0, |d| d.as_secs_f64());
        by_partition.entry(*partition).or_default().push(format!("t{term}:n{leader}@{secs:.1}s"));
    }
    let lines: Vec<String> = by_partition.iter().map(|(p, seen)| format!("p{p} {}", seen.join(" "))).collect();
    lines.join("; ")
}

/// How the cluster went through a kill and restart: which partitions the victim led, how
/// soon the two others elected a leader of each while it was down, and how soon the
/// victim answered again with a leader for every partition.
fn restart_line(restart: &Restart, watch: &Observations) -> String {
    let Restart { node, endpoint, killed, restarted } = restart;
    let since = |from: &SystemTime, t: SystemTime| seconds(t.duration_since(*from).ok());
    let led = watch.partitions().into_iter().filter(|p| watch.leader_before(*p, *killed).is_some_and(|l| l.1 == *node));
    let failovers: Vec<String> = led
        .map(|p| match watch.first_leader_in(p, *killed, *restarted) {
            Some((at, term, leader)) => format!("p{p} to n{leader} (t{term}) {} after the kill", since(killed, at)),
            None => format!("p{p} without a new leader until the restart"),
        })
        .collect();
    let failovers = if failovers.is_empty() { "no partition seen led by it".to_owned() } else { failovers.join(", ") };
    let down = restarted.duration_since(*killed).unwrap_or_default().as_secs_f64();
    let back = watch.ready_after(endpoint, *restarted).map_or_else(|| "never seen".to_owned(), |t| since(restarted, t));
    format!(
        "n{node} down {down:.1}s; {failovers}; answering with a leader for every partition {back} after the restart"
    )
}

/// What a run left to judge.
struct Run<'a> {
    test: &'a str,
    kind: WorkloadKind,
    options: &'a WorkloadOptions,
    history: &'a History,
    started: SystemTime,
    watch: &'a Observations,
}

/// Checks the history, prints the window lines, and panics (keeping the history) on any
/// violation or on a window after which writes did not succeed within `RECOVERY_MAX`.
fn judge(run: &Run, timeline: &Timeline, keep: impl Fn(&PathBuf)) {
    let Run { test, kind, options, history, started, watch } = *run;
    let ops = history.operations().expect("history pairs");
    // libtest may have printed `test ... ` without a newline; start the lines on their own.
    eprintln!();
    eprintln!("SEED {test} {kind} {} keys {}", options.seed, options.key_prefix);
    let report = check_workload(kind, history, options.keys);
    let mut failures = Vec::new();
    for (i, window) in timeline.windows.iter().enumerate() {
        let to = timeline.windows.get(i + 1).map(|w| w.start);
        let (first, every) = recovery(kind, &ops, history_time(started, window.start));
        let keyed = keyed(kind);
        let shown = (seconds(first), if keyed { seconds(every) } else { "-".to_owned() });
        let line = window_line(kind, &ops, report.as_ref(), watch, started, (window.start, to), shown.clone());
        eprintln!("WINDOW {test} {kind} {:<24} {line}", window.name);
        let judged = if keyed { every } else { first };
        if window.must_recover && judged.is_none_or(|d| d > RECOVERY_MAX) {
            let what = if keyed { "every key was" } else { "anything was" };
            failures.push(format!("after `{}` not {what} written within {RECOVERY_MAX:?}", window.name));
        }
    }
    let start = timeline.windows.first().map_or(started, |w| w.start);
    let all = ("-".to_owned(), "-".to_owned());
    eprintln!(
        "TOTAL {test} {kind} {:<24} {}",
        "(run)",
        window_line(kind, &ops, report.as_ref(), watch, started, (start, None), all)
    );
    if let Some(restart) = &timeline.restart {
        eprintln!("RESTART {test} {kind} {}", restart_line(restart, watch));
    }
    eprintln!("LEADERS {test} {kind} {}", leader_changes(watch, start));
    let tally = Tally::of(&ops);
    eprintln!("CHECKER {test} {kind} {tally}; {report}");
    if !report.ok() {
        failures.push(format!("checker: {report}"));
    }
    if tally.ok == 0 {
        failures.push("no operation succeeded".to_owned());
    }
    // A failing run keeps its history and node logs; with KAHUNA_T50_KEEP set, every run.
    let asked = std::env::var_os("KAHUNA_T50_KEEP").map(PathBuf::from);
    if failures.is_empty() && asked.is_none() {
        return;
    }
    let dir = asked.unwrap_or_else(std::env::temp_dir);
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(format!("kahuna-t50-{test}-{kind}-{}.jsonl", std::process::id()));
    let saved = std::fs::File::create(&path).map(|f| history.to_jsonl(std::io::BufWriter::new(f)));
    eprintln!("KEPT {test} {kind} history {} ({saved:?}), seed {}", path.display(), options.seed);
    keep(&dir);
    assert!(failures.is_empty(), "{test} ({kind}): {}", failures.join("; "));
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
    let kind = workload();
    let x = scale(PARTITIONS_SECS);
    let secs = |s: f64| Duration::from_secs_f64(s * x);
    let mut cluster = NetCluster::start(3, PARTITIONS);
    let options = options(kind, cluster.endpoints(), secs(PARTITIONS_SECS));
    let target = target_partition(kind, &options);
    let workload = cluster.spawn_workload(kind, &options);
    let mut timeline = Timeline::new();
    // Faults start at fixed offsets from here; leader look-ups happen shortly before (each
    // look-up runs a child in the client namespace).
    let start = Instant::now();
    let wait_until = |s: f64| std::thread::sleep((start + secs(s)).saturating_duration_since(Instant::now()));

    timeline.begin("calm", false);
    wait_until(1.0);

    // SIGKILL: the two others still make a majority, so writes must come back while the
    // victim is down (followers wait out the leader's lease and an election timeout, about
    // 2 s, before the first candidacy); it restarts on its data directory and catches up.
    let victim = leader_or_any(&cluster, target);
    wait_until(2.0);
    let killed = SystemTime::now();
    timeline.begin(format!("sigkill-leader-n{victim}"), true);
    cluster.node_mut(victim).kill();
    wait_until(7.0);
    cluster.node_mut(victim).start();
    timeline.begin(format!("restarted-n{victim}"), true);
    let endpoint = cluster.node(victim).address.clone();
    timeline.restart = Some(Restart { node: victim, endpoint, killed, restarted: SystemTime::now() });
    wait_until(9.5);

    let isolated = leader_or_any(&cluster, target);
    wait_until(10.0);
    timeline.begin(format!("isolate-leader-n{isolated}"), false);
    cluster.split(&[isolated]);
    wait_until(15.0);
    cluster.heal();
    timeline.begin("healed", true);
    wait_until(17.5);

    // The minority: a node leading some partition, other than the isolated one if possible.
    let leaders: Vec<u64> = (0..PARTITIONS).map(|p| leader_or_any(&cluster, p)).collect();
    let minority = leaders.iter().copied().find(|l| *l != isolated).unwrap_or(isolated % 3 + 1);
    wait_until(18.0);
    timeline.begin(format!("split-n{minority}-vs-rest"), false);
    cluster.split(&[minority]);
    wait_until(23.0);
    cluster.heal();
    timeline.begin("healed", true);
    wait_until(25.5);

    // One way: a follower stops hearing the leader, so it calls elections the leader
    // cannot hear answered.
    let leader = leader_or_any(&cluster, target);
    let follower = leader % 3 + 1;
    wait_until(26.0);
    timeline.begin(format!("one-way-n{leader}-to-n{follower}"), false);
    cluster.cut_one_way(leader, follower);
    wait_until(30.0);
    cluster.heal();
    // The rest of the run (10 s at scale 1) is RECOVERY_MAX, so the last heal is judged
    // like the others.
    timeline.begin("healed", true);

    let run = workload.wait(secs(PARTITIONS_SECS) + options.grace() + Duration::from_secs(30));
    let judged = Run {
        test: TEST,
        kind,
        options: &options,
        history: &run.history,
        started: run.started,
        watch: &run.observations,
    };
    judge(&judged, &timeline, |dir| cluster.keep_logs(dir));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigstop_leader_and_follower() {
    const TEST: &str = "sigstop";
    let _serial = SERIAL.lock().await;
    let kind = workload();
    let x = scale(SIGSTOP_SECS);
    let secs = |s: f64| Duration::from_secs_f64(s * x);
    let mut cluster = Cluster::start(3, PARTITIONS, &[]).await;
    let options = options(kind, cluster.endpoints(), secs(SIGSTOP_SECS));
    let target = target_partition(kind, &options);
    let (stop_watch, stopped) = tokio::sync::oneshot::channel();
    let endpoints = cluster.endpoints();
    let watching = tokio::spawn(async move { netns::watch(&endpoints, stopped).await });
    let workload = {
        let options = options.clone();
        tokio::spawn(async move { run_workload(kind, &options).await })
    };
    let mut timeline = Timeline::new();

    timeline.begin("calm", false);
    tokio::time::sleep(secs(2.0)).await;
    let leader = cluster.leader_of(target).await;
    assert_ne!(leader, 0, "partition {target} has a leader");
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
    let _ = stop_watch.send(());
    let watch = watching.await.expect("watch task");
    let judged =
        Run { test: TEST, kind, options: &options, history: &run.history, started: run.started_at, watch: &watch };
    judge(&judged, &timeline, |keep| {
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
