//! Locks end to end against real processes: contention (never two holders, tokens
//! increasing, waits served by the server), a holder paused with SIGSTOP past its lease
//! and fenced off by a resource that checks tokens, and a partition leader killed while
//! locks are held and contended.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use kahuna_client::{Client, Durability, Error, LockOptions, ReadOptions};

/// Longest lease the test clusters accept (`--lock-lease-ms-max`).
const LEASE_MS_MAX: u64 = 60_000;

fn client(cluster: &Cluster) -> Client {
    let endpoints: Vec<String> = cluster.nodes.iter().map(|n| n.address.clone()).collect();
    Client::builder(endpoints).timeout(Duration::from_secs(5)).retries(8).build().expect("client")
}

/// What the contending workers saw.
#[derive(Default)]
struct Grants {
    /// The owner holding the lock, by the workers' own account.
    holder: Mutex<Option<String>>,
    /// The token of the latest grant.
    last_token: AtomicU64,
    count: AtomicU64,
}

/// `workers` clients take `name` in turn with server-side waits until `grants` grants
/// were made; each checks that nobody else holds it and that its token is the largest.
async fn contend(client: &Client, name: &str, durability: Durability, workers: usize, grants: u64) -> Arc<Grants> {
    let seen = Arc::new(Grants::default());
    let tasks = (0..workers).map(|w| {
        let (client, seen, name) = (client.clone(), seen.clone(), name.to_owned());
        tokio::spawn(async move {
            let owner = format!("worker-{w}");
            let options = LockOptions::new().durability(durability).wait_ms(10_000);
            while seen.count.load(Ordering::SeqCst) < grants {
                let r = client.try_lock(&name, &owner, 5_000, options).await.expect("try-lock");
                assert!(r.acquired, "{owner} waited 10 s in vain: {r:?}");
                let token = r.token().expect("token");
                {
                    let mut holder = seen.holder.lock().expect("holder");
                    assert_eq!(*holder, None, "{owner} got {name} while another held it");
                    *holder = Some(owner.clone());
                }
                let last = seen.last_token.swap(token, Ordering::SeqCst);
                assert!(token > last, "{owner}: token {token} after {last}");
                seen.count.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(2)).await;
                *seen.holder.lock().expect("holder") = None;
                let released = client.unlock(&name, &owner, durability).await.expect("unlock");
                assert!(released.released);
            }
        })
    });
    for task in futures_join(tasks).await {
        task.expect("worker panicked");
    }
    seen
}

async fn futures_join<T>(
    tasks: impl Iterator<Item = tokio::task::JoinHandle<T>>,
) -> Vec<Result<T, tokio::task::JoinError>> {
    let mut out = Vec::new();
    for task in tasks.collect::<Vec<_>>() {
        out.push(task.await);
    }
    out
}

fn invalid(result: Result<impl std::fmt::Debug, Error>, needle: &str) {
    match result {
        Err(Error::InvalidInput(message)) => assert!(message.contains(needle), "{message:?} lacks {needle:?}"),
        other => panic!("expected InvalidInput containing {needle:?}, got {other:?}"),
    }
}

#[tokio::test]
async fn contention_waits_and_bad_input() {
    let max = LEASE_MS_MAX.to_string();
    let cluster = Cluster::start(1, 4, &["--lock-lease-ms-max", &max]).await;
    let client = client(&cluster);

    let started = Instant::now();
    let (persistent, ephemeral) = tokio::join!(
        contend(&client, "hot/p", Durability::Persistent, 8, 60),
        contend(&client, "hot/e", Durability::Ephemeral, 8, 60),
    );
    assert!(persistent.count.load(Ordering::SeqCst) >= 60);
    assert!(ephemeral.last_token.load(Ordering::SeqCst) > 1 << 32, "ephemeral tokens carry the term");
    eprintln!("120+ contended grants in {:?}", started.elapsed());

    // Re-acquire by the holder: same token, lease restarted; extend keeps the token.
    let a = client.try_lock("r", "a", 1_000, LockOptions::new()).await.expect("lock");
    let again = client.try_lock("r", "a", 5_000, LockOptions::new()).await.expect("re-lock");
    assert_eq!(again.token(), a.token());
    assert!(again.holder.as_ref().map(|h| h.expires_at_ms) > a.holder.as_ref().map(|h| h.expires_at_ms));
    let extended = client.extend_lock("r", "a", 8_000, Durability::Persistent).await.expect("extend");
    assert!(extended.extended && extended.holder.map(|h| h.token) == a.token());
    let refused = client.try_lock("r", "b", 1_000, LockOptions::new().wait_ms(300)).await.expect("try");
    assert!(!refused.acquired && refused.holder.map(|h| h.owner).as_deref() == Some("a"));

    // Bad input changes nothing.
    invalid(client.try_lock("r", "a", 0, LockOptions::new()).await, "at least 1 ms");
    invalid(client.try_lock("r", "a", LEASE_MS_MAX + 1, LockOptions::new()).await, "above the limit of 60000 ms");
    invalid(client.try_lock("", "a", 10, LockOptions::new()).await, "lock name is empty");
    invalid(client.try_lock("x".repeat(2000), "a", 10, LockOptions::new()).await, "the limit is 1024");
    invalid(client.try_lock("r", "", 10, LockOptions::new()).await, "owner is empty");
    invalid(client.unlock("r", "b", Durability::Persistent).await, "held by another owner");
    invalid(client.extend_lock("r", "b", 10, Durability::Persistent).await, "held by another owner");
    let info = client.get_lock("r", ReadOptions::new()).await.expect("get-lock");
    assert_eq!(info.holder.map(|h| (h.owner, h.token)), Some(("a".to_owned(), a.token().unwrap_or(0))));
    assert!(client.unlock("r", "a", Durability::Persistent).await.expect("unlock").released);
    let free = client.get_lock("r", ReadOptions::new()).await.expect("get-lock");
    assert!(free.holder.is_none() && Some(free.last_token) == a.token());

    // The shell remembers the owner of the locks it took.
    let output = Command::new(env!("CARGO_BIN_EXE_kahuna"))
        .args(["shell", "--endpoints", &cluster.nodes[0].address, "--format", "json", "-c"])
        .arg("lock s/1 5000; get-lock s/1; unlock s/1; get-lock s/1; elock s/2 5000 owner me; eunlock s/2")
        .output()
        .expect("run the shell");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "shell failed: {stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let docs: Vec<serde_json::Value> =
        stdout.lines().map(|l| serde_json::from_str(l).expect("one JSON document per line")).collect();
    assert_eq!(docs[0]["acquired"], true, "{stdout}");
    assert_eq!(docs[1]["holder"]["owner"], docs[0]["holder"]["owner"]);
    assert_eq!(docs[2]["released"], true);
    assert_eq!(docs[3]["held"], false);
    assert_eq!((docs[4]["acquired"].clone(), docs[5]["released"].clone()), (true.into(), true.into()));
}

/// A resource that remembers the largest fencing token it accepted and refuses older
/// ones. Protocol: one line `TOKEN` per connection, answered `ok` or `stale`.
fn fenced_resource() -> (String, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address").to_string();
    let highest = Arc::new(AtomicU64::new(0));
    let seen = highest.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut line = String::new();
            if BufReader::new(&stream).read_line(&mut line).is_err() {
                continue;
            }
            let token: u64 = line.trim().parse().unwrap_or(0);
            let accepted = token >= seen.fetch_max(token, Ordering::SeqCst);
            let _ = (&stream).write_all(if accepted { b"ok\n" } else { b"stale\n" });
        }
    });
    (address, highest)
}

fn write_resource(resource: &str, token: u64) -> String {
    let Ok(mut stream) = TcpStream::connect(resource) else { return "unreachable".into() };
    let _ = writeln!(stream, "{token}");
    let mut answer = String::new();
    let _ = BufReader::new(stream).read_line(&mut answer);
    answer.trim().to_owned()
}

/// The paused holder of `stopped_holder_is_fenced`, run as a child process of it (does
/// nothing when run on its own): takes the lock, prints its token, then writes to the
/// resource with that token until the resource refuses it.
#[tokio::test]
async fn holder_child() {
    let Ok(spec) = std::env::var("KAHUNA_T30_HOLDER") else { return };
    let (endpoint, resource) = spec.split_once(',').expect("ENDPOINT,RESOURCE");
    let client = Client::builder([endpoint]).retries(0).build().expect("client");
    let r = client.try_lock("fence/r", "child", 1_000, LockOptions::new()).await.expect("lock");
    let token = r.token().expect("acquired");
    println!("HOLDER token {token}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = write_resource(resource, token);
        if answer != "ok" || Instant::now() > deadline {
            println!("HOLDER write {answer}");
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let unlock = client.unlock("fence/r", "child", Durability::Persistent).await;
    println!("HOLDER unlock {}", if matches!(unlock, Err(Error::InvalidInput(_))) { "refused" } else { "allowed" });
}

#[tokio::test]
async fn stopped_holder_is_fenced() {
    let cluster = Cluster::start(1, 4, &[]).await;
    let (resource, highest) = fenced_resource();
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args(["holder_child", "--exact", "--nocapture", "--test-threads=1"])
        .env("KAHUNA_T30_HOLDER", format!("{},{resource}", cluster.nodes[0].address))
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(cluster.nodes[0].data_dir.with_extension("holder.log")).expect("log"))
        .spawn()
        .expect("spawn the holder");
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    let stdout = child.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // libtest prints "test holder_child ... " before the first line, unended.
            if let Some(at) = line.find("HOLDER")
                && lines_tx.send(line[at..].to_owned()).is_err()
            {
                return;
            }
        }
    });
    let holder_log = cluster.nodes[0].data_dir.with_extension("holder.log");
    let next_line = || match lines.recv_timeout(Duration::from_secs(20)) {
        Ok(line) => line,
        Err(_) => panic!("no line from the holder: {}", std::fs::read_to_string(&holder_log).unwrap_or_default()),
    };
    let first = next_line();
    let stale: u64 = first.strip_prefix("HOLDER token ").and_then(|t| t.parse().ok()).expect("token line");
    // Let it write once with its token, then pause it past its 1 s lease.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(highest.load(Ordering::SeqCst), stale);
    let stop = Command::new("kill").args(["-STOP", &child.id().to_string()]).status().expect("kill");
    assert!(stop.success());

    let client = client(&cluster);
    let next = client.try_lock("fence/r", "successor", 10_000, LockOptions::new().wait_ms(5_000)).await.expect("lock");
    assert!(next.acquired, "the paused holder's lease should end: {next:?}");
    let token = next.token().expect("token");
    assert!(token > stale);
    assert_eq!(write_resource(&resource, token), "ok");

    let cont = Command::new("kill").args(["-CONT", &child.id().to_string()]).status().expect("kill");
    assert!(cont.success());
    assert_eq!(next_line(), "HOLDER write stale", "the resource must refuse the stale token");
    assert_eq!(next_line(), "HOLDER unlock refused", "the superseded holder may not unlock");
    assert!(child.wait().expect("holder exit").success());
    let info = client.get_lock("fence/r", ReadOptions::new()).await.expect("get-lock");
    assert_eq!(info.holder.map(|h| (h.owner, h.token)), Some(("successor".to_owned(), token)));
}

/// Longest wait for lock grants to resume after their partition's leader is killed.
const GRANTS_RESUME_WITHIN: Duration = Duration::from_secs(15);

#[tokio::test]
async fn leader_killed_while_locks_are_held() {
    let mut cluster = Cluster::start(3, 4, &[]).await;
    let client = client(&cluster);
    // One bucket, so one partition: its leader holds the ephemeral lock.
    let partition = partition_of("k/held", cluster.partitions);
    let held = client.try_lock("k/held", "a", 60_000, LockOptions::new()).await.expect("lock");
    let ephemeral = client.try_lock("k/eph", "a", 60_000, LockOptions::new().ephemeral()).await.expect("elock");
    assert!(held.acquired && ephemeral.acquired);

    // Workers keep taking k/busy, waiting on the server; a waiter queues on k/held.
    let stop = Arc::new(AtomicBool::new(false));
    let last_token = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..3)
        .map(|w| {
            let (client, stop, last_token) = (client.clone(), stop.clone(), last_token.clone());
            tokio::spawn(async move {
                let owner = format!("w{w}");
                let mut grants = 0;
                while !stop.load(Ordering::SeqCst) {
                    let options = LockOptions::new().wait_ms(2_000);
                    match client.try_lock("k/busy", &owner, 500, options).await {
                        Ok(r) if r.acquired => {
                            let token = r.token().unwrap_or(0);
                            let last = last_token.fetch_max(token, Ordering::SeqCst);
                            assert!(token > last, "{owner}: token {token} after {last}");
                            grants += 1;
                            tokio::time::sleep(Duration::from_millis(5)).await;
                            let _ = client.unlock("k/busy", &owner, Durability::Persistent).await;
                        }
                        _ => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                }
                grants
            })
        })
        .collect();
    let waiter = {
        let client = client.clone();
        tokio::spawn(async move { client.try_lock("k/held", "b", 1_000, LockOptions::new().wait_ms(1_500)).await })
    };
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let before_kill = last_token.load(Ordering::SeqCst);
    assert!(before_kill > 0, "no grants before the kill");

    let victim = cluster.leader_of(partition).await;
    cluster.node(victim).kill();
    // Grants must resume: a failover (an election, the busy lock's lease of 500 ms, a
    // worker's retry) takes about 2 s; the bound is for loaded CI machines, not a goal.
    let killed = std::time::Instant::now();
    let resumed = loop {
        if last_token.load(Ordering::SeqCst) > before_kill {
            break Some(killed.elapsed());
        }
        if killed.elapsed() > GRANTS_RESUME_WITHIN {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    eprintln!("grants resumed {resumed:?} after the kill of node {victim}");
    assert!(resumed.is_some(), "no grants within {GRANTS_RESUME_WITHIN:?} of the leader's kill\n{}", cluster.logs());
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    let mut grants = 0;
    for worker in workers {
        grants += worker.await.expect("worker");
    }
    eprintln!("{grants} grants of k/busy around the kill of node {victim}");
    if let Ok(Ok(r)) = waiter.await {
        assert!(!r.acquired, "b got k/held from a live holder: {r:?}");
    }

    // The persistent lock survived with its token; the ephemeral one is gone, and its
    // next token is larger anyway (the new leader's term is in its high bits).
    let info = client.get_lock("k/held", ReadOptions::new()).await.expect("get-lock");
    assert_eq!(info.holder.map(|h| (h.owner, h.token)), Some(("a".to_owned(), held.token().unwrap_or(0))));
    let gone = client.get_lock("k/eph", ReadOptions::new().ephemeral()).await.expect("eget-lock");
    assert!(gone.holder.is_none(), "{gone:?}");
    let retaken = client.try_lock("k/eph", "b", 10_000, LockOptions::new().ephemeral()).await.expect("elock");
    assert!(retaken.token() > ephemeral.token(), "{retaken:?} after {ephemeral:?}");

    // The killed node comes back (and may lead again): tokens keep increasing.
    cluster.node(victim).start();
    cluster.wait_ready(Duration::from_secs(30)).await;
    let r = eventually(Duration::from_secs(15), || client.try_lock("k/busy", "late", 500, LockOptions::new())).await;
    assert!(r.acquired && r.token().unwrap_or(0) > last_token.load(Ordering::SeqCst), "{r:?}");
    let info = client.get_lock("k/held", ReadOptions::new()).await.expect("get-lock");
    assert_eq!(info.holder.map(|h| h.token), held.token());
}
