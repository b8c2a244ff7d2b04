//! Interactive transactions end to end on one node: commit and read back, read-your-
//! writes, rollback, write skew refused (in one partition and across two), the timeout,
//! a repeated commit answered from the first outcome, and ephemeral keys refused.

mod common;

use std::time::Duration;

use common::*;
use kahuna_client::{Client, DeleteOptions, Error, GetOptions, ReadOptions, ScanOptions, SetOptions};
use kahuna_proto::v1::transactions_client::TransactionsClient;
use kahuna_proto::v1::{BeginRequest, CommitRequest, TxnGetRequest, TxnSetRequest};
use tonic::Code;
use tonic::transport::Channel;

const PARTITIONS: u32 = 4;

fn client(cluster: &Cluster) -> Client {
    Client::builder(cluster.endpoints()).timeout(Duration::from_secs(10)).build().expect("client")
}

/// A raw gRPC client of the Transactions service, for what the Rust client does not
/// let a caller do (commit twice, name an unknown transaction).
fn raw(node: &Node) -> TransactionsClient<Channel> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", node.address))
        .expect("endpoint")
        .timeout(Duration::from_secs(10))
        .connect_lazy();
    TransactionsClient::new(channel)
}

async fn value(client: &Client, key: &str) -> Option<Vec<u8>> {
    client.get(key, GetOptions::new()).await.expect("get").kv.map(|kv| kv.value)
}

/// Two buckets in different partitions, so a transaction over both commits in two phases.
fn buckets_in_two_partitions() -> (String, String) {
    let first = "skew-a";
    let p = partition_of(&format!("{first}/k"), PARTITIONS);
    let other = (0..100)
        .map(|i| format!("skew-b{i}"))
        .find(|b| partition_of(&format!("{b}/k"), PARTITIONS) != p)
        .expect("a bucket in another partition");
    (first.to_owned(), other)
}

#[tokio::test]
async fn commit_read_your_writes_and_rollback() {
    let cluster = Cluster::start(1, PARTITIONS, &[]).await;
    let c = client(&cluster);
    c.set("acct/a", "100", SetOptions::new()).await.expect("set");

    let t = c.begin(None).await.expect("begin");
    assert_eq!(t.served_by(), 1);
    assert!(t.snapshot_ts() > 0 && !t.id().is_empty());
    assert_eq!(t.timeout(), Duration::from_secs(5), "the node's default");
    let a = t.get("acct/a", GetOptions::new()).await.expect("get").kv.expect("acct/a exists");
    assert_eq!(a.value, b"100");
    assert!(t.set("acct/a", "70", SetOptions::new()).await.expect("set"));
    assert!(t.set("acct/b", "30", SetOptions::new().nx()).await.expect("set nx"));
    assert!(!t.set("acct/b", "31", SetOptions::new().nx()).await.expect("set nx"), "own write is visible to nx");

    // Read-your-writes: gets, exists and scans see the buffered writes...
    let a = t.get("acct/a", GetOptions::new()).await.expect("get").kv.expect("own write");
    assert_eq!(a.value, b"70");
    assert!(t.exists("acct/b", ReadOptions::new()).await.expect("exists").exists);
    let page = t.scan("acct/", ScanOptions::new()).await.expect("scan");
    let seen: Vec<(&str, &[u8])> = page.items.iter().map(|kv| (kv.key.as_str(), kv.value.as_slice())).collect();
    assert_eq!(seen, [("acct/a", &b"70"[..]), ("acct/b", &b"30"[..])]);
    assert_eq!(page.next_cursor, None);
    // ...and nobody else does before the commit.
    assert_eq!(value(&c, "acct/a").await.as_deref(), Some(&b"100"[..]));
    assert_eq!(value(&c, "acct/b").await, None);

    let commit_ts = t.commit().await.expect("commit").expect("it wrote");
    let a = c.get("acct/a", GetOptions::new()).await.expect("get").kv.expect("committed");
    assert_eq!((a.value.as_slice(), a.commit_ts), (&b"70"[..], commit_ts));
    assert_eq!(value(&c, "acct/b").await.as_deref(), Some(&b"30"[..]));

    // A transaction that only reads commits nothing.
    let t = c.begin(None).await.expect("begin");
    assert!(t.get("acct/a", GetOptions::new()).await.expect("get").kv.is_some());
    assert_eq!(t.commit().await.expect("read-only commit"), None);

    // Rollback leaves nothing behind.
    let t = c.begin(Some(Duration::from_secs(10))).await.expect("begin");
    assert_eq!(t.timeout(), Duration::from_secs(10));
    assert!(t.set("rb/x", "1", SetOptions::new()).await.expect("set"));
    assert!(t.delete("acct/a", DeleteOptions::new()).await.expect("delete"));
    assert!(t.extend("acct/b", 60_000, kahuna_client::Durability::Persistent).await.expect("extend"));
    assert!(t.get("acct/a", GetOptions::new()).await.expect("get").kv.is_none(), "own delete is visible");
    assert!(t.rollback().await.expect("rollback"));
    assert_eq!(value(&c, "rb/x").await, None);
    assert_eq!(value(&c, "acct/a").await.as_deref(), Some(&b"70"[..]));
    let b = c.get("acct/b", GetOptions::new()).await.expect("get").kv.expect("acct/b");
    assert_eq!(b.expires_at_ms, None, "the rolled back extend did not land");
}

/// Each transaction reads both keys and writes one: serializable isolation lets only one
/// of them commit.
async fn write_skew(c: &Client, k1: &str, k2: &str) {
    c.set(k1, "0", SetOptions::new()).await.expect("set");
    c.set(k2, "0", SetOptions::new()).await.expect("set");
    let t1 = c.begin(None).await.expect("begin");
    let t2 = c.begin(None).await.expect("begin");
    for t in [&t1, &t2] {
        for k in [k1, k2] {
            assert_eq!(t.get(k, GetOptions::new()).await.expect("get").kv.expect("exists").value, b"0");
        }
    }
    assert!(t1.set(k1, "1", SetOptions::new()).await.expect("set"));
    assert!(t2.set(k2, "1", SetOptions::new()).await.expect("set"));
    let r1 = t1.commit().await;
    let r2 = t2.commit().await;
    match (&r1, &r2) {
        (Ok(Some(_)), Err(Error::Conflict(_))) | (Err(Error::Conflict(_)), Ok(Some(_))) => {}
        _ => panic!("write skew over {k1}, {k2}: expected one commit and one conflict, got {r1:?} and {r2:?}"),
    }
    let ones = [k1, k2];
    let mut written = 0;
    for k in ones {
        if value(c, k).await.as_deref() == Some(&b"1"[..]) {
            written += 1;
        }
    }
    assert_eq!(written, 1, "exactly the committed transaction's write is visible");
}

#[tokio::test]
async fn write_skew_is_refused() {
    let cluster = Cluster::start(1, PARTITIONS, &[]).await;
    let c = client(&cluster);
    // One partition: one commit entry each.
    write_skew(&c, "skew/k1", "skew/k2").await;
    // Two partitions: two-phase commits.
    let (a, b) = buckets_in_two_partitions();
    write_skew(&c, &format!("{a}/k"), &format!("{b}/k")).await;
}

#[tokio::test]
async fn timeout_retried_commit_ephemeral_and_unknown_ids() {
    let cluster = Cluster::start(1, PARTITIONS, &[]).await;
    let c = client(&cluster);

    // Past its timeout a transaction cannot commit, and its writes never land.
    let t = c.begin(Some(Duration::from_millis(300))).await.expect("begin");
    assert!(t.set("late/x", "1", SetOptions::new()).await.expect("set"));
    tokio::time::sleep(Duration::from_millis(700)).await;
    match t.commit().await {
        Err(Error::NotFound(m)) => assert!(m.contains("expired") || m.contains("not open"), "{m}"),
        other => panic!("commit past the timeout: {other:?}"),
    }
    assert_eq!(value(&c, "late/x").await, None);
    let too_long = c.begin(Some(Duration::from_secs(3600))).await;
    assert!(matches!(too_long, Err(Error::InvalidInput(_))), "{too_long:?}");

    // A repeated commit is answered from the first outcome: the same timestamp...
    let mut raw = raw(&cluster.nodes[0]);
    let id = raw.begin(BeginRequest { timeout_ms: None }).await.expect("begin").into_inner().txn_id;
    let set = TxnSetRequest { txn_id: id.clone(), key: "retry/x".into(), value: b"1".to_vec(), ..Default::default() };
    assert!(raw.set(set).await.expect("set").into_inner().modified);
    let first = raw.commit(CommitRequest { txn_id: id.clone() }).await.expect("commit").into_inner();
    let again = raw.commit(CommitRequest { txn_id: id.clone() }).await.expect("commit again").into_inner();
    assert!(first.commit_ts.is_some());
    assert_eq!(first.commit_ts, again.commit_ts);
    // ...and the same conflict.
    c.set("retry/y", "0", SetOptions::new()).await.expect("set");
    let id = raw.begin(BeginRequest { timeout_ms: None }).await.expect("begin").into_inner().txn_id;
    let read = TxnGetRequest { txn_id: id.clone(), key: "retry/y".into(), ..Default::default() };
    assert!(raw.get(read).await.expect("get").into_inner().found);
    let set = TxnSetRequest { txn_id: id.clone(), key: "retry/y".into(), value: b"1".to_vec(), ..Default::default() };
    assert!(raw.set(set).await.expect("set").into_inner().modified);
    c.set("retry/y", "changed", SetOptions::new()).await.expect("concurrent set");
    for _ in 0..2 {
        let status = raw.commit(CommitRequest { txn_id: id.clone() }).await.expect_err("conflict");
        assert_eq!(status.code(), Code::Aborted, "{status:?}");
    }
    assert_eq!(value(&c, "retry/y").await.as_deref(), Some(&b"changed"[..]));

    // Unknown transactions are named in a clear NOT_FOUND.
    let status = raw.commit(CommitRequest { txn_id: "1-00-999".into() }).await.expect_err("unknown id");
    assert_eq!(status.code(), Code::NotFound);
    assert!(status.message().contains("transaction 1-00-999 is not open on this node"), "{status:?}");
    let read = TxnGetRequest { txn_id: "nope".into(), key: "k".into(), ..Default::default() };
    assert_eq!(raw.get(read).await.expect_err("unknown id").code(), Code::NotFound);

    // Ephemeral keys are outside transactions, with an error that says so.
    let t = c.begin(None).await.expect("begin");
    for result in [
        t.set("e/x", "v", SetOptions::new().ephemeral()).await.map(|_| ()),
        t.get("e/x", GetOptions::new().ephemeral()).await.map(|_| ()),
        t.delete("e/x", DeleteOptions::new().ephemeral()).await.map(|_| ()),
    ] {
        match result {
            Err(Error::InvalidInput(m)) => assert!(m.contains("persistent keys only"), "{m}"),
            other => panic!("ephemeral in a transaction: {other:?}"),
        }
    }
    // The transaction is still usable after refused calls.
    assert!(t.set("e/persistent", "v", SetOptions::new()).await.expect("set"));
    assert!(t.commit().await.expect("commit").is_some());
    assert_eq!(value(&c, "e/persistent").await.as_deref(), Some(&b"v"[..]));
}
