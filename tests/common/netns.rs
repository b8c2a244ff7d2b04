//! Clusters in network namespaces, for partitions with iptables.
//!
//! Layout, all of it in namespaces this module creates (the host's own network namespace
//! gets no interface, address, route or rule):
//!
//! ```text
//!   <tag>-n1 (10.99.0.1)   <tag>-n2 (10.99.0.2)   <tag>-n3 (10.99.0.3)   <tag>-c (10.99.0.100)
//!        eth0                   eth0                   eth0                   eth0
//!         |  veth                |                      |                      |
//!        v1 ------------------- v2 ---- br0 (<tag>-hub) v3 ------------------- vc
//! ```
//!
//! Each node is `ip netns exec <tag>-nI kahuna serve ...` (ip execs in place, so the child's
//! pid is the node's and SIGSTOP reaches it). The test process cannot enter a namespace
//! itself, so whatever must talk to the nodes (status polls, the workload) runs as a
//! child: this test binary again, inside `<tag>-c`, selected with `--exact netns_child`
//! and told what to do through `KAHUNA_T50_*` variables ([`child_main`]).
//!
//! Partitions are iptables DROP rules inside the node namespaces, matching node
//! addresses only, so clients keep reaching every node (an isolated leader still gets
//! requests, as in production). A node killed with SIGKILL restarts on its data directory
//! with the same flags, its log appended to. [`Namespaces`] deletes every namespace on
//! drop, after the nodes (declared first) are killed, so a failing test leaves nothing
//! behind.
//!
//! While a workload runs, [`watch`] polls every node's status every [`WATCH_INTERVAL`]
//! (in the child beside the workload, or in the test process for a loopback cluster) and
//! keeps what changed: leaders of new terms, rises of the highest term, nodes becoming
//! ready or not ([`Observations`]).
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::ValueEnum;
use kahuna_check::{History, WorkloadKind, WorkloadOptions, run_workload};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinSet;

/// The port every node listens on, inside its own namespace.
pub const PORT: u16 = 2070;
/// Address of the client namespace.
const CLIENT_IP: &str = "10.99.0.100";
/// The exact name of the test function that runs [`child_main`].
pub const CHILD_TEST: &str = "netns_child";
/// Set to `1` to turn a skip (not root, tools missing) into a failure.
pub const REQUIRED_ENV: &str = "KAHUNA_FAULTS_REQUIRED";

/// Why namespace tests cannot run here, or `None` when they can.
pub fn skip_reason() -> Option<String> {
    if !is_root() {
        return Some("not running as root: network namespaces and iptables need root".into());
    }
    for (tool, flag, package) in [("ip", "-V", "iproute2"), ("iptables", "--version", "iptables")] {
        let found = Command::new(tool).arg(flag).output().is_ok_and(|o| o.status.success());
        if !found {
            return Some(format!("`{tool}` is missing (apt-get install -y {package})"));
        }
    }
    remove_stale_namespaces();
    let probe = format!("kh{}probe", std::process::id());
    if let Err(e) = ip(&["netns", "add", &probe]) {
        return Some(format!("cannot create a network namespace: {e}"));
    }
    let iptables = netns_exec(&probe, &["iptables", "-w", "-L", "-n"]);
    let _ = ip(&["netns", "del", &probe]);
    iptables.err().map(|e| format!("iptables does not work inside a network namespace: {e}"))
}

/// Prints why the test is skipped and returns true, or panics when skips are not allowed.
pub fn skip(test: &str) -> bool {
    let Some(reason) = skip_reason() else { return false };
    assert!(std::env::var(REQUIRED_ENV).as_deref() != Ok("1"), "{test}: cannot run ({REQUIRED_ENV}=1): {reason}");
    eprintln!("SKIPPED {test}: {reason}");
    true
}

fn is_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let uid = status.lines().find_map(|l| l.strip_prefix("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0"));
    uid.unwrap_or(false)
}

/// Runs `ip args`, returning stderr on failure.
pub fn ip(args: &[&str]) -> Result<(), String> {
    run(Command::new("ip").args(args))
}

/// Runs `args` inside namespace `ns`.
pub fn netns_exec(ns: &str, args: &[&str]) -> Result<(), String> {
    run(Command::new("ip").args(["netns", "exec", ns]).args(args))
}

fn run(command: &mut Command) -> Result<(), String> {
    match command.stdin(Stdio::null()).output() {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!("{command:?}: {}", String::from_utf8_lossy(&o.stderr).trim())),
        Err(e) => Err(format!("{command:?}: {e}")),
    }
}

/// Namespaces named `kh<pid>...` whose test process is gone (killed before its guard ran).
fn remove_stale_namespaces() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else { return };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else { continue };
        let pid: String = name.strip_prefix("kh").unwrap_or("").chars().take_while(char::is_ascii_digit).collect();
        if !pid.is_empty() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = ip(&["netns", "del", name]);
        }
    }
}

/// Deletes its namespaces on drop (which also drops their interfaces and rules).
pub struct Namespaces {
    names: Vec<String>,
}

impl Namespaces {
    fn add(&mut self, name: &str) {
        ip(&["netns", "add", name]).expect("create a network namespace");
        self.names.push(name.to_owned());
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for name in self.names.iter().rev() {
            let _ = ip(&["netns", "del", name]);
        }
    }
}

/// A node running in its own namespace.
pub struct NsNode {
    pub id: u64,
    pub ns: String,
    pub ip: String,
    pub address: String,
    pub data_dir: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
}

impl NsNode {
    /// Starts the node; a restart appends to the log of the previous life.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "node {} already running", self.id);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path()).expect("log file");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns, env!("CARGO_BIN_EXE_kahuna"), "serve"])
            .args(&self.args)
            .env("KAHUNA_LOG", crate::common::node_log_filter())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn kahuna in its namespace");
        self.child = Some(child);
    }

    /// Kills the node with SIGKILL (nothing flushed, nothing closed) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends `signal` (`STOP`, `CONT`, ...) to the node's process.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("node running").id();
        let status = Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).status();
        assert!(status.is_ok_and(|s| s.success()), "kill -{signal} {pid} failed");
    }

    pub fn log_path(&self) -> PathBuf {
        self.data_dir.with_extension("log")
    }
}

impl Drop for NsNode {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One node's view of the cluster, from a status poll.
#[derive(Debug, Clone)]
pub struct NodeView {
    pub node: u64,
    /// partition -> (leader as this node sees it, term, this node's role).
    pub partitions: BTreeMap<u32, (Option<u64>, u64, String)>,
}

/// Three (or more) nodes, each in its own namespace, and a client namespace.
pub struct NetCluster {
    // Field order is drop order: nodes die before their namespaces are deleted.
    pub nodes: Vec<NsNode>,
    pub partitions: u32,
    pub client_ns: String,
    namespaces: Namespaces,
    dir: tempfile::TempDir,
}

impl NetCluster {
    /// Creates the namespaces, starts `n` nodes and waits until every partition has a
    /// leader all nodes agree on.
    pub fn start(n: u64, partitions: u32) -> NetCluster {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let tag = format!("kh{}x{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let mut namespaces = Namespaces { names: Vec::new() };
        let hub = format!("{tag}-hub");
        namespaces.add(&hub);
        ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"]).expect("bridge");
        ip(&["-n", &hub, "link", "set", "br0", "up"]).expect("bridge up");
        let client_ns = format!("{tag}-c");
        namespaces.add(&client_ns);
        attach(&hub, &client_ns, "vc", CLIENT_IP);

        let dir = tempfile::tempdir().expect("tempdir");
        let peers: Vec<String> = (1..=n).map(|id| format!("{id}=10.99.0.{id}:{PORT}")).collect();
        let mut nodes = Vec::new();
        for id in 1..=n {
            let ns = format!("{tag}-n{id}");
            namespaces.add(&ns);
            let node_ip = format!("10.99.0.{id}");
            attach(&hub, &ns, &format!("v{id}"), &node_ip);
            let address = format!("{node_ip}:{PORT}");
            let data_dir = dir.path().join(format!("node{id}"));
            let args = vec![
                "--node-id".to_owned(),
                id.to_string(),
                "--listen".to_owned(),
                address.clone(),
                "--data-dir".to_owned(),
                data_dir.display().to_string(),
                "--partitions".to_owned(),
                partitions.to_string(),
                "--peers".to_owned(),
                peers.join(","),
            ];
            nodes.push(NsNode { id, ns, ip: node_ip, address, data_dir, args, child: None });
        }
        let mut cluster = NetCluster { nodes, partitions, client_ns, namespaces, dir };
        for node in &mut cluster.nodes {
            node.start();
        }
        cluster.wait_ready(Duration::from_secs(30));
        cluster
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.address.clone()).collect()
    }

    pub fn node(&self, id: u64) -> &NsNode {
        self.nodes.iter().find(|n| n.id == id).expect("node id")
    }

    /// Node `id`, to kill and restart it.
    pub fn node_mut(&mut self, id: u64) -> &mut NsNode {
        self.nodes.iter_mut().find(|n| n.id == id).expect("node id")
    }

    /// Drops all traffic between node `a` and node `b`, both ways (rules in `a`'s namespace).
    pub fn cut(&self, a: u64, b: u64) {
        let (ns, other) = (&self.node(a).ns, &self.node(b).ip);
        netns_exec(ns, &["iptables", "-w", "-A", "INPUT", "-s", other, "-j", "DROP"]).expect("iptables");
        netns_exec(ns, &["iptables", "-w", "-A", "OUTPUT", "-d", other, "-j", "DROP"]).expect("iptables");
    }

    /// Node `to` stops hearing node `from`; `from` still hears `to`.
    pub fn cut_one_way(&self, from: u64, to: u64) {
        let (ns, source) = (&self.node(to).ns, &self.node(from).ip);
        netns_exec(ns, &["iptables", "-w", "-A", "INPUT", "-s", source, "-j", "DROP"]).expect("iptables");
    }

    /// Cuts `minority` off from every other node; clients still reach everyone.
    pub fn split(&self, minority: &[u64]) {
        for a in minority {
            for b in self.nodes.iter().map(|n| n.id).filter(|b| !minority.contains(b)) {
                self.cut(*a, b);
            }
        }
    }

    /// Removes every rule.
    pub fn heal(&self) {
        for node in &self.nodes {
            netns_exec(&node.ns, &["iptables", "-w", "-F"]).expect("iptables -F");
        }
    }

    /// Every node's view, polled from the client namespace; unreachable nodes are absent.
    pub fn views(&self) -> Vec<NodeView> {
        let out = self.child_output("status", &[("KAHUNA_T50_ENDPOINTS", self.endpoints().join(","))]);
        let mut views = Vec::new();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            // libtest may print `test netns_child ... ` before the first line.
            let Some((_, json)) = line.split_once("STATUS ") else { continue };
            let Ok(status) = serde_json::from_str::<Value>(json) else { continue };
            let mut partitions = BTreeMap::new();
            for p in status["partitions"].as_array().into_iter().flatten() {
                let role = p["role"].as_str().unwrap_or_default().to_owned();
                let entry = (p["leader"].as_u64(), p["term"].as_u64().unwrap_or(0), role);
                partitions.insert(p["partition"].as_u64().unwrap_or(0) as u32, entry);
            }
            views.push(NodeView { node: status["node"].as_u64().unwrap_or(0), partitions });
        }
        views
    }

    /// The node that itself claims leadership of `partition` with the highest term.
    pub fn leader_of(&self, partition: u32) -> Option<u64> {
        self.views()
            .iter()
            .filter_map(|v| {
                let (_, term, role) = v.partitions.get(&partition)?;
                (role == "leader").then_some((*term, v.node))
            })
            .max()
            .map(|(_, node)| node)
    }

    /// Polls [`NetCluster::leader_of`] until it finds a leader or `timeout` passes.
    pub fn wait_leader(&self, partition: u32, timeout: Duration) -> Option<u64> {
        let deadline = Instant::now() + timeout;
        loop {
            let leader = self.leader_of(partition);
            if leader.is_some() || Instant::now() > deadline {
                return leader;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits until every node answers and all agree on a leader for every partition.
    pub fn wait_ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let views = self.views();
            let agreed = views.len() == self.nodes.len()
                && (0..self.partitions).all(|p| {
                    let leaders: Vec<Option<u64>> =
                        views.iter().map(|v| v.partitions.get(&p).and_then(|e| e.0)).collect();
                    leaders[0].is_some() && leaders.iter().all(|l| *l == leaders[0])
                });
            if agreed {
                return;
            }
            if Instant::now() > deadline {
                panic!("cluster not ready within {timeout:?}; views {views:?}\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Starts workload `kind` with `options` (their endpoints replaced by the cluster's) in
    /// the client namespace, with a [`watch`] beside it; see [`ChildWorkload::wait`].
    pub fn spawn_workload(&self, kind: WorkloadKind, options: &WorkloadOptions) -> ChildWorkload {
        let history = self.dir.path().join("history.jsonl");
        let summary = self.dir.path().join("summary.json");
        let envs = [
            ("KAHUNA_T50_ENDPOINTS", self.endpoints().join(",")),
            ("KAHUNA_T50_WORKLOAD", kind.name().to_owned()),
            ("KAHUNA_T50_DURATION_MS", options.duration.as_millis().to_string()),
            ("KAHUNA_T50_CLIENTS", options.clients.to_string()),
            ("KAHUNA_T50_KEYS", options.keys.to_string()),
            ("KAHUNA_T50_TIMEOUT_MS", options.timeout.as_millis().to_string()),
            ("KAHUNA_T50_SEED", options.seed.to_string()),
            ("KAHUNA_T50_KEY_PREFIX", options.key_prefix.clone()),
            ("KAHUNA_T50_HISTORY", history.display().to_string()),
            ("KAHUNA_T50_SUMMARY", summary.display().to_string()),
        ];
        let child = self
            .child_command("workload", &envs)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the workload in the client namespace");
        ChildWorkload { child: Some(child), history, summary }
    }

    fn child_command(&self, mode: &str, envs: &[(&str, String)]) -> Command {
        let exe = std::env::current_exe().expect("test binary path");
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.client_ns])
            .arg(exe)
            .args(["--exact", CHILD_TEST, "--nocapture", "--test-threads", "1"])
            .env("KAHUNA_T50_CHILD", mode)
            .stdin(Stdio::null());
        for (name, value) in envs {
            command.env(name, value);
        }
        command
    }

    fn child_output(&self, mode: &str, envs: &[(&str, String)]) -> Output {
        self.child_command(mode, envs).output().expect("run the child in the client namespace")
    }

    /// Every node's log, for failure messages.
    pub fn logs(&self) -> String {
        let tail = |n: &NsNode| {
            let log = std::fs::read_to_string(n.log_path()).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            lines[lines.len().saturating_sub(40)..].join("\n")
        };
        self.nodes
            .iter()
            .map(|n| format!("--- node {} (last lines) ---\n{}", n.id, tail(n)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Copies node logs into `dir` (kept after the cluster's directory is deleted).
    pub fn keep_logs(&self, dir: &Path) {
        for node in &self.nodes {
            let _ = std::fs::copy(node.log_path(), dir.join(format!("node{}.log", node.id)));
        }
    }
}

/// Creates a veth pair `eth0` (in `ns`, with `address`) / `peer` (in `hub`, on br0).
fn attach(hub: &str, ns: &str, peer: &str, address: &str) {
    ip(&["link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", peer, "netns", hub]).expect("veth");
    ip(&["-n", hub, "link", "set", peer, "master", "br0"]).expect("veth on the bridge");
    ip(&["-n", hub, "link", "set", peer, "up"]).expect("veth up");
    ip(&["-n", ns, "addr", "add", &format!("{address}/24"), "dev", "eth0"]).expect("address");
    ip(&["-n", ns, "link", "set", "eth0", "up"]).expect("eth0 up");
    ip(&["-n", ns, "link", "set", "lo", "up"]).expect("lo up");
}

/// A workload running as a child process in the client namespace.
pub struct ChildWorkload {
    child: Option<Child>,
    history: PathBuf,
    summary: PathBuf,
}

/// What a workload child recorded.
pub struct ChildRun {
    pub history: History,
    /// Wall-clock time of the history's time 0.
    pub started: SystemTime,
    /// What the watch beside the workload saw.
    pub observations: Observations,
}

impl ChildWorkload {
    /// Waits for the child to finish and loads its history, its time 0 and its watch.
    pub fn wait(mut self, timeout: Duration) -> ChildRun {
        let mut child = self.child.take().expect("child");
        let deadline = Instant::now() + timeout;
        while child.try_wait().expect("wait for the workload").is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("workload child still running after {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let out = child.wait_with_output().expect("workload output");
        let summary = std::fs::read_to_string(&self.summary).unwrap_or_default();
        let summary: Value = serde_json::from_str(&summary).unwrap_or_else(|_| {
            panic!(
                "workload child wrote no summary ({}):\n{}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        let file = std::fs::File::open(&self.history).expect("history file");
        let history = History::from_jsonl(file).expect("history parses");
        let started = UNIX_EPOCH + Duration::from_nanos(summary["started_unix_ns"].as_u64().expect("started_unix_ns"));
        let observations = Observations::from_json(&summary["observations"]);
        ChildRun { history, started, observations }
    }
}

impl Drop for ChildWorkload {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The child's side: does what `KAHUNA_T50_CHILD` says, inside the client namespace.
/// Without it (an ordinary test run) it returns at once.
pub async fn child_main() {
    let Ok(mode) = std::env::var("KAHUNA_T50_CHILD") else { return };
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"));
    let endpoints: Vec<String> = var("KAHUNA_T50_ENDPOINTS").split(',').map(str::to_owned).collect();
    match mode.as_str() {
        "status" => print_status(&endpoints).await,
        "workload" => {
            let kind = WorkloadKind::from_str(&var("KAHUNA_T50_WORKLOAD"), true).expect("a workload name");
            let mut options = WorkloadOptions::new(endpoints.clone());
            options.duration = Duration::from_millis(var("KAHUNA_T50_DURATION_MS").parse().expect("ms"));
            options.clients = var("KAHUNA_T50_CLIENTS").parse().expect("clients");
            options.keys = var("KAHUNA_T50_KEYS").parse().expect("keys");
            options.timeout = Duration::from_millis(var("KAHUNA_T50_TIMEOUT_MS").parse().expect("ms"));
            options.seed = var("KAHUNA_T50_SEED").parse().expect("seed");
            options.key_prefix = var("KAHUNA_T50_KEY_PREFIX");
            let (stop, stopped) = oneshot::channel();
            let watching = tokio::spawn(async move { watch(&endpoints, stopped).await });
            let run = run_workload(kind, &options).await.expect("workload runs");
            let _ = stop.send(());
            let observations = watching.await.expect("the watch task");
            run.history.to_jsonl(std::fs::File::create(var("KAHUNA_T50_HISTORY")).expect("history")).expect("saved");
            let summary = json!({
                "started_unix_ns": unix_ns(run.started_at),
                "seed": options.seed,
                "tally": run.tally,
                "observations": observations.to_json(),
            });
            std::fs::write(var("KAHUNA_T50_SUMMARY"), summary.to_string()).expect("summary");
        }
        other => panic!("unknown KAHUNA_T50_CHILD mode {other:?}"),
    }
}

/// Prints `STATUS {json}` for every endpoint that answers within half a second.
async fn print_status(endpoints: &[String]) {
    let polls = endpoints.iter().cloned().map(|endpoint| async move {
        let client = kahuna_client::Client::builder([endpoint])
            .timeout(Duration::from_millis(500))
            .connect_timeout(Duration::from_millis(300))
            .retries(0)
            .build()
            .ok()?;
        client.status().await.ok()
    });
    for status in futures_join_all(polls).await.into_iter().flatten() {
        let partitions: Vec<Value> = status
            .partitions
            .iter()
            .map(|p| json!({"partition": p.partition, "leader": p.leader, "term": p.term, "role": p.role}))
            .collect();
        println!("STATUS {}", json!({"node": status.node_id, "partitions": partitions}));
    }
}

/// Awaits every future concurrently (a tiny `join_all`, to need no extra crate).
async fn futures_join_all<F: std::future::Future + Send + 'static>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut outputs = Vec::new();
    for handle in handles {
        outputs.push(handle.await.expect("status poll"));
    }
    outputs
}

/// How often [`watch`] polls every node's status.
pub const WATCH_INTERVAL: Duration = Duration::from_millis(250);
/// Budget of one node's answer to one poll.
const WATCH_POLL_TIMEOUT: Duration = Duration::from_millis(400);

/// What polling every node's status during a run showed, as changes with the wall-clock
/// time of the poll round that saw them.
///
/// A leader is counted once per (partition, term): terms have one leader at most
/// (`single-term-leader`), and any node naming a leader for its current term, the leader
/// itself or a follower, shows that the election happened. A leader that rose and fell
/// between two polls, or that only paused nodes knew of, is missed. The highest term also
/// rises with elections nobody won (a node cut off from the others keeps calling them).
#[derive(Debug, Clone, Default)]
pub struct Observations {
    /// The first poll round: what it saw was there before the run, not an event of it.
    pub first_poll: Option<SystemTime>,
    /// (when, partition, term, leader), the first time some node named a leader for that
    /// term.
    pub leaders: Vec<(SystemTime, u32, u64, u64)>,
    /// (when, partition, term), each time the highest term any node reported rose.
    pub terms: Vec<(SystemTime, u32, u64)>,
    /// (when, endpoint, ready), each time an endpoint became ready (it answered and named
    /// a leader for every partition) or stopped being so.
    pub ready: Vec<(SystemTime, String, bool)>,
}

impl Observations {
    /// Leaders of new terms first seen in `[from, to)` (`to` `None`: until the end).
    pub fn elections(&self, from: SystemTime, to: Option<SystemTime>) -> usize {
        let inside = |t: &SystemTime| *t >= from && to.is_none_or(|to| *t < to);
        self.leaders.iter().filter(|(t, ..)| Some(*t) != self.first_poll && inside(t)).count()
    }

    /// How much the highest term rose in `[from, to)`, summed over partitions.
    pub fn term_increase(&self, from: SystemTime, to: Option<SystemTime>) -> u64 {
        let partitions: BTreeSet<u32> = self.terms.iter().map(|e| e.1).collect();
        let at = |p: u32, t: Option<SystemTime>| {
            let mut seen = self.terms.iter().filter(|e| e.1 == p).peekable();
            // Before the first poll the partition was at the term that poll saw.
            let first = seen.peek().map_or(0, |e| e.2);
            seen.filter(|e| t.is_none_or(|t| e.0 < t)).map(|e| e.2).max().unwrap_or(first)
        };
        partitions.iter().map(|p| at(*p, to).saturating_sub(at(*p, Some(from)))).sum()
    }

    /// Every partition some node named a leader for.
    pub fn partitions(&self) -> BTreeSet<u32> {
        self.leaders.iter().map(|e| e.1).collect()
    }

    /// The leader of `partition` at the highest term seen before `at`: (term, node).
    pub fn leader_before(&self, partition: u32, at: SystemTime) -> Option<(u64, u64)> {
        let seen = self.leaders.iter().filter(|e| e.1 == partition && e.0 < at);
        seen.max_by_key(|e| e.2).map(|e| (e.2, e.3))
    }

    /// The first leader of a new term of `partition` seen in `[from, to)`: (when, term,
    /// node).
    pub fn first_leader_in(&self, partition: u32, from: SystemTime, to: SystemTime) -> Option<(SystemTime, u64, u64)> {
        let seen = self.leaders.iter().filter(|e| e.1 == partition && e.0 >= from && e.0 < to);
        seen.min_by_key(|e| e.0).map(|e| (e.0, e.2, e.3))
    }

    /// When `endpoint` was first seen ready at or after `at`, after a poll that found it
    /// not ready (so a node that came back between two polls is not reported).
    pub fn ready_after(&self, endpoint: &str, at: SystemTime) -> Option<SystemTime> {
        self.ready.iter().find(|(t, e, ready)| e == endpoint && *ready && *t >= at).map(|e| e.0)
    }

    pub fn to_json(&self) -> Value {
        json!({
            "first_poll_unix_ns": self.first_poll.map(unix_ns),
            "leaders": self.leaders.iter().map(|(t, p, term, l)| json!([unix_ns(*t), p, term, l])).collect::<Vec<_>>(),
            "terms": self.terms.iter().map(|(t, p, term)| json!([unix_ns(*t), p, term])).collect::<Vec<_>>(),
            "ready": self.ready.iter().map(|(t, e, r)| json!([unix_ns(*t), e, r])).collect::<Vec<_>>(),
        })
    }

    /// The inverse of [`Observations::to_json`]; whatever does not parse is left out.
    pub fn from_json(value: &Value) -> Observations {
        let time = |v: &Value| v.as_u64().map(|ns| UNIX_EPOCH + Duration::from_nanos(ns));
        let rows = |name: &str| value[name].as_array().cloned().unwrap_or_default();
        let number = |v: &Value| v.as_u64().unwrap_or(0);
        Observations {
            first_poll: time(&value["first_poll_unix_ns"]),
            leaders: rows("leaders")
                .iter()
                .filter_map(|r| Some((time(&r[0])?, number(&r[1]) as u32, number(&r[2]), number(&r[3]))))
                .collect(),
            terms: rows("terms")
                .iter()
                .filter_map(|r| Some((time(&r[0])?, number(&r[1]) as u32, number(&r[2]))))
                .collect(),
            ready: rows("ready")
                .iter()
                .filter_map(|r| Some((time(&r[0])?, r[1].as_str()?.to_owned(), r[2].as_bool()?)))
                .collect(),
        }
    }
}

/// Polls every endpoint's status every [`WATCH_INTERVAL`] until `stop` fires (or its
/// sender is dropped), all endpoints at once, and returns what changed.
///
/// # Cancel safety
///
/// Dropping the future loses what it saw; it changes nothing on the nodes.
pub async fn watch(endpoints: &[String], mut stop: oneshot::Receiver<()>) -> Observations {
    let clients: Vec<(String, Option<kahuna_client::Client>)> = endpoints
        .iter()
        .map(|endpoint| {
            let client = kahuna_client::Client::builder([endpoint.clone()])
                .timeout(WATCH_POLL_TIMEOUT)
                .connect_timeout(WATCH_POLL_TIMEOUT)
                .retries(0)
                .build()
                .ok();
            (endpoint.clone(), client)
        })
        .collect();
    let mut seen = Observations::default();
    let mut leaders: BTreeSet<(u32, u64)> = BTreeSet::new();
    let mut highest: BTreeMap<u32, u64> = BTreeMap::new();
    let mut ready: BTreeMap<String, bool> = BTreeMap::new();
    let mut ticks = tokio::time::interval(WATCH_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = ticks.tick() => {}
        }
        let now = SystemTime::now();
        seen.first_poll.get_or_insert(now);
        let mut polls = JoinSet::new();
        for (endpoint, client) in clients.iter().cloned() {
            polls.spawn(async move {
                let status = match client {
                    Some(c) => tokio::time::timeout(WATCH_POLL_TIMEOUT, c.status()).await.ok().and_then(Result::ok),
                    None => None,
                };
                (endpoint, status)
            });
        }
        while let Some(joined) = polls.join_next().await {
            let Ok((endpoint, status)) = joined else { continue };
            let is_ready = status
                .as_ref()
                .is_some_and(|s| !s.partitions.is_empty() && s.partitions.iter().all(|p| p.leader.is_some()));
            if ready.insert(endpoint.clone(), is_ready) != Some(is_ready) {
                seen.ready.push((now, endpoint, is_ready));
            }
            for p in status.iter().flat_map(|s| &s.partitions) {
                if let Some(leader) = p.leader
                    && leaders.insert((p.partition, p.term))
                {
                    seen.leaders.push((now, p.partition, p.term, leader));
                }
                let term = highest.entry(p.partition).or_default();
                if p.term > *term {
                    *term = p.term;
                    seen.terms.push((now, p.partition, p.term));
                }
            }
        }
    }
    seen
}

/// Nanoseconds since the Unix epoch.
pub fn unix_ns(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}
