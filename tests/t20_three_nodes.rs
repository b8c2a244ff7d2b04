//! Three nodes on loopback: writes through every node, a partition leader killed with
//! SIGKILL, writes continuing through the others, the killed node catching up (through
//! a snapshot, since its log was compacted meanwhile), and a node made anew with another
//! partition count refused.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use kahuna_proto::v1::*;

const PARTITIONS: u32 = 4;

/// A write acknowledged by [`write_acked`]: how long it took and the attempts that failed
/// first (node, status, how long the attempt took), for failure messages.
struct Acked {
    took: Duration,
    failed: Vec<(u64, String, Duration)>,
}

/// Writes `key` through the running nodes in turn, retrying (same operation id) until
/// acknowledged.
async fn write_acked(cluster: &Cluster, key: &str, value: &str, timeout: Duration) -> Acked {
    let request = set_req(key, value);
    let started = Instant::now();
    let deadline = started + timeout;
    let mut failed = Vec::new();
    loop {
        for node in cluster.running() {
            let mut kv = node.kv().await;
            let attempt = Instant::now();
            match kv.set(request.clone()).await {
                Ok(r) => {
                    assert!(r.get_ref().modified);
                    return Acked { took: started.elapsed(), failed };
                }
                Err(status) => {
                    failed.push((node.id, format!("{:?}: {}", status.code(), status.message()), attempt.elapsed()))
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "write of {key} not acknowledged within {timeout:?}: {failed:?}\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The applied index of a node's first partition (the tests using it have one).
fn applied_index(status: &StatusResponse) -> u64 {
    status.partitions.first().map_or(0, |p| p.applied_index)
}

#[tokio::test]
async fn leader_killed_and_restarted() {
    let mut cluster = Cluster::start(3, PARTITIONS, &["--snapshot-logs", "40"]).await;
    let mut acked: BTreeMap<String, String> = BTreeMap::new();

    // Writes through each node, for keys of every partition.
    for node in &cluster.nodes {
        let mut kv = node.kv().await;
        for i in 0..10 {
            let key = format!("n{}/k{i}", node.id);
            let r = kv.set(set_req(&key, "v0")).await.unwrap().into_inner();
            assert!(r.modified);
            acked.insert(key, "v0".into());
        }
    }
    // Every node serves every key, linearizably.
    for node in &cluster.nodes {
        let mut kv = node.kv().await;
        for (key, value) in &acked {
            let got = kv.get(get_req(key)).await.unwrap().into_inner();
            assert_eq!(got.kv.map(|e| e.value), Some(value.as_bytes().to_vec()), "{key} via node {}", node.id);
        }
    }

    // Kill the leader of the partition that holds "n1/...".
    let partition = partition_of("n1/k0", PARTITIONS);
    let victim = cluster.leader_of(partition).await;
    assert_ne!(victim, 0);
    cluster.node(victim).kill();

    // Writes continue through the others within seconds, on every partition.
    let mut slowest: Option<(String, Acked)> = None;
    for round in 1..=60 {
        for bucket in ["n1", "n2", "n3", "x"] {
            let key = format!("{bucket}/after{round}");
            let write = write_acked(&cluster, &key, "v1", Duration::from_secs(15)).await;
            if slowest.as_ref().is_none_or(|(_, s)| write.took > s.took) {
                slowest = Some((key.clone(), write));
            }
            acked.insert(key, "v1".into());
        }
    }
    let (key, slowest) = slowest.expect("writes were made");
    assert!(
        slowest.took < Duration::from_secs(10),
        "the write of {key} after the kill of node {victim} took {:?}; failed attempts {:?}\n{}",
        slowest.took,
        slowest.failed,
        cluster.logs()
    );
    eprintln!("slowest write during failover: {:?} ({key}, {} failed attempts)", slowest.took, slowest.failed.len());

    // The survivors compacted their logs past what the killed node has (snapshots every
    // 40 entries), so it catches up through a snapshot.
    cluster.node(victim).start();
    cluster.wait_ready(Duration::from_secs(30)).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut kv = cluster.node(victim).kv().await;
    loop {
        // A serializable read is served by the restarted node's own replica.
        let mut all = true;
        for (key, value) in &acked {
            let req = GetRequest { consistency: Consistency::Serializable as i32, ..get_req(key) };
            let got = kv.get(req).await.ok().map(|r| r.into_inner());
            if got.and_then(|g| g.kv).map(|e| e.value) != Some(value.as_bytes().to_vec()) {
                all = false;
                break;
            }
        }
        if all {
            break;
        }
        assert!(Instant::now() < deadline, "restarted node {victim} did not catch up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let status = cluster.node(victim).status().await.unwrap();
    let installed: u64 = status.partitions.iter().map(|p| p.snapshots_installed).sum();
    assert!(installed > 0, "node {victim} caught up without a snapshot: {status:?}");

    // Every acknowledged write is readable through every node.
    for node in &cluster.nodes {
        let mut kv = node.kv().await;
        for (key, value) in &acked {
            let got = eventually(Duration::from_secs(10), || {
                let mut kv = kv.clone();
                let key = key.clone();
                async move { kv.get(get_req(&key)).await }
            })
            .await
            .into_inner();
            assert_eq!(got.kv.map(|e| e.value), Some(value.as_bytes().to_vec()), "{key} via node {}", node.id);
        }
        let _ = &mut kv;
    }
}

/// A script run with `ScriptArgs::route_by(key)` goes to the leader of the key's
/// partition (once the client has read the cluster's status), so its reads and commit stay
/// on that node.
#[tokio::test]
async fn scripts_routed_by_a_key_run_on_its_partition_leader() {
    let cluster = Cluster::start(3, PARTITIONS, &[]).await;
    let client = kahuna_client::Client::builder(cluster.endpoints()).build().unwrap();
    let script = "kahuna.set(kahuna.args[1], 'v') return kahuna.args[1]";
    for bucket in ["a", "b", "c", "d", "e", "f"] {
        let key = format!("{bucket}/k");
        let leader = cluster.leader_of(partition_of(&key, PARTITIONS)).await;
        let args = kahuna_client::ScriptArgs::new().arg(key.as_str()).route_by(key.as_str());
        let mut served = Vec::new();
        // The first runs may go to the current endpoint while the route table loads.
        for _ in 0..50 {
            let run = client.eval(script, &args).await.unwrap();
            assert_eq!(run.value, kahuna_client::ScriptValue::from(key.as_str()));
            served.push(run.served_by);
            if run.served_by == leader {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(served.last(), Some(&leader), "{key}: leader {leader}, runs served by {served:?}");
    }
}

/// After the last write, every follower applies it without further writes: a commit
/// index the leader's link did not send at once (`network::COMMIT_ONLY_WINDOW`) still
/// reaches the followers with the next heartbeat, about 0.1 s later; the bound is 2 s.
/// With the link answering every such heartbeat itself (the window's check removed), a
/// follower learned it only after an election (3.6 s on, in one run).
#[tokio::test]
async fn followers_apply_the_last_write_with_no_writes_after_it() {
    let cluster = Cluster::start(3, 1, &[]).await;
    let leader = cluster.leader_of(0).await;
    let mut kv = cluster.node_ref(leader).kv().await;
    for i in 0..20 {
        kv.set(set_req("last/key", &i.to_string())).await.unwrap_or_else(|e| panic!("write {i}: {e}"));
    }
    let target = applied_index(&cluster.node_ref(leader).status().await.expect("leader status"));
    let started = Instant::now();
    for follower in (1..=3).filter(|id| *id != leader) {
        loop {
            let status = cluster.node_ref(follower).status().await.expect("follower status");
            if applied_index(&status) >= target {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "node {follower} stayed at index {} of {target}\n{}",
                applied_index(&status),
                cluster.logs()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut kv = cluster.node_ref(follower).kv().await;
        let request = GetRequest { consistency: Consistency::Serializable as i32, ..get_req("last/key") };
        let got = kv.get(request).await.expect("read on the follower").into_inner();
        assert_eq!(got.kv.map(|e| e.value), Some(b"19".to_vec()), "node {follower}");
    }
    eprintln!("followers applied index {target} {:?} after the last write", started.elapsed());
}

/// Pipelined ephemeral calls on a cluster of three: a linearizable read waits for its
/// leader's round (the pipeline spawns it after its first poll), a serializable read at the
/// leader finishes at once (answered in the stream's task); both see every acknowledged set.
#[tokio::test]
async fn pipelined_ephemeral_calls_on_three_nodes() {
    use kahuna_client::{GetOptions, SetOptions};

    let cluster = Cluster::start(3, PARTITIONS, &[]).await;
    let client = kahuna_client::Client::builder(cluster.endpoints()).pipeline(true).build().unwrap();
    let mut writers = tokio::task::JoinSet::new();
    for i in 0..200 {
        let client = client.clone();
        writers.spawn(async move {
            let key = format!("e{}/k{i}", i % 8);
            let written = client.set(key.as_str(), i.to_string(), SetOptions::new().ephemeral()).await;
            (key, i, written.map(|r| r.modified))
        });
    }
    let mut readers = tokio::task::JoinSet::new();
    while let Some(joined) = writers.join_next().await {
        let (key, i, written) = joined.unwrap();
        assert_eq!(written, Ok(true), "{key}");
        for options in [GetOptions::new().ephemeral(), GetOptions::new().ephemeral().serializable()] {
            let (client, key) = (client.clone(), key.clone());
            readers.spawn(async move { (key.clone(), i, client.get(key, options).await) });
        }
    }
    while let Some(joined) = readers.join_next().await {
        let (key, i, read) = joined.unwrap();
        let kv = read.unwrap_or_else(|e| panic!("{key}: {e:?}")).kv.unwrap_or_else(|| panic!("{key}: not found"));
        assert_eq!(kv.value, i.to_string().into_bytes(), "{key}");
    }
}

/// A follower that missed more than one node message can carry (64 MiB) catches up from
/// the log: replication sends it about 1 MiB of entries at a time. Before the bound, the
/// leader sent all the entries it asked for in one message, the peer refused it, and the
/// follower stayed behind until a snapshot happened to cover the gap (this test failed
/// so). Moving 70 MiB through debug-build nodes takes about a minute, so CI leaves it to
/// the unit test of the bound (`log_store::tests`); run it with `-- --ignored`.
#[tokio::test]
#[ignore = "moves 70 MiB through three debug-build nodes (about a minute)"]
async fn a_follower_behind_by_more_than_one_message_catches_up_from_the_log() {
    const VALUE_BYTES: usize = 1024 * 1024; // the default --value-bytes-max
    const WRITES: usize = 70; // 70 MiB, in 70 entries: one message, were it not bounded
    let mut cluster = Cluster::start(3, 1, &[]).await;
    let leader = cluster.leader_of(0).await;
    let follower = (1..=3).find(|id| *id != leader).expect("a follower");
    cluster.node(follower).kill();

    let mut kv = cluster.node_ref(leader).kv().await.max_encoding_message_size(2 * VALUE_BYTES);
    for i in 0..WRITES {
        let value = vec![b'a' + i as u8; VALUE_BYTES];
        let request = SetRequest { key: format!("big/{i}"), value, ..Default::default() };
        kv.set(request).await.unwrap_or_else(|e| panic!("write {i}: {e}"));
    }
    let target = applied_index(&cluster.node_ref(leader).status().await.expect("leader status"));

    cluster.node(follower).start();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = cluster.node_ref(follower).status().await;
        if let Some(status) = status.filter(|s| applied_index(s) >= target) {
            let installed: u64 = status.partitions.iter().map(|p| p.snapshots_installed).sum();
            assert_eq!(installed, 0, "node {follower} caught up through a snapshot, not the log");
            break;
        }
        assert!(Instant::now() < deadline, "node {follower} did not catch up to index {target}\n{}", cluster.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut kv = cluster.node_ref(follower).kv().await.max_decoding_message_size(2 * VALUE_BYTES);
    let last = format!("big/{}", WRITES - 1);
    let request = GetRequest { consistency: Consistency::Serializable as i32, ..get_req(&last) };
    let got = kv.get(request).await.expect("read on the follower").into_inner();
    assert_eq!(got.kv.map(|e| e.value.len()), Some(VALUE_BYTES));
}

/// A node whose data directory was made anew with another partition count is refused by
/// the others, and refuses them, with a message that names the flag; the two that agree
/// go on serving. Without the check the newcomer would vote and replicate in the
/// partitions both have while routing keys to other partitions than they do.
#[tokio::test]
async fn a_node_with_another_partition_count_is_refused() {
    let mut cluster = Cluster::start(3, 2, &[]).await;
    let node = cluster.node(3);
    node.kill();
    std::fs::remove_dir_all(&node.data_dir).expect("remove node 3's data");
    node.set_arg("--partitions", "5");
    node.start();
    let started = Instant::now();
    let expected = |log: &str, sender: u64, theirs: u32, ours: u32| {
        log.contains(&format!("node {sender} has {theirs} partitions, this node has {ours}: every node of a cluster must be created with the same --partitions"))
    };
    loop {
        let (newcomer, old) = (cluster.node_ref(3).log(), cluster.node_ref(1).log() + &cluster.node_ref(2).log());
        let refused_by_newcomer = (1..=2).any(|sender| expected(&newcomer, sender, 2, 5));
        if refused_by_newcomer && expected(&old, 3, 5, 2) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "no refusal logged on both sides\n{}", cluster.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let acked = write_acked(&cluster, "after/refusal", "v", Duration::from_secs(10)).await;
    eprintln!("both sides refused within {:?}; a write took {:?}", started.elapsed(), acked.took);
}

/// A node whose peer list points at another cluster's node is refused there, and the
/// other cluster goes on serving. (In CI two test clusters once shared a port: a one-node
/// cluster took the other's Raft messages for its own, and a partition panicked.)
#[tokio::test]
async fn messages_from_another_cluster_are_refused() {
    let lone = Cluster::start(1, 2, &[]).await;
    let lone_address = &lone.node_ref(1).address;
    // A two-voter cluster whose "node 2" is the lone cluster's node 1: its node 1
    // campaigns there.
    let dir = tempfile::tempdir().expect("tempdir");
    let address = format!("127.0.0.1:{}", free_port());
    let log = std::fs::File::create(dir.path().join("stranger.log")).expect("log file");
    let mut stranger = std::process::Command::new(env!("CARGO_BIN_EXE_kahuna"))
        .args(["serve", "--node-id", "1", "--listen", &address, "--partitions", "2"])
        .args(["--peers", &format!("1={address},2={lone_address}")])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("KAHUNA_LOG", node_log_filter())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn kahuna");
    let started = Instant::now();
    let refusal = "a message from node 1, which is not a peer of node 1 (its peers: [])";
    while !lone.node_ref(1).log().contains(refusal) {
        assert!(started.elapsed() < Duration::from_secs(15), "no refusal logged\n{}", lone.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let acked = write_acked(&lone, "after/stranger", "v", Duration::from_secs(10)).await;
    let _ = stranger.kill();
    let _ = stranger.wait();
    let status = lone.node_ref(1).status().await.expect("status");
    assert!(status.partitions.iter().all(|p| p.leader == 1), "{status:?}");
    eprintln!("refused within {:?}; a write took {:?}", started.elapsed(), acked.took);
}
