//! One node: the key/value API end to end, bad input, and a restart keeps data.

mod common;

use std::time::Duration;

use common::*;
use kahuna_proto::v1::*;
use tonic::Code;

#[tokio::test]
async fn set_get_restart() {
    let mut cluster = Cluster::start(1, 4, &[]).await;
    let mut kv = cluster.nodes[0].kv().await;

    let r = kv.set(set_req("config/a", "1")).await.unwrap().into_inner();
    assert!(r.modified);
    assert_eq!(r.revision, 0);
    assert_eq!(r.served_by, 1);
    let r = kv.set(set_req("config/a", "2")).await.unwrap().into_inner();
    assert_eq!(r.revision, 1);
    let first_ts = r.commit_ts;
    kv.set(set_req("config/b", "x")).await.unwrap();
    kv.set(set_req("other", "y")).await.unwrap();

    let got = kv.get(get_req("config/a")).await.unwrap().into_inner();
    assert!(got.found);
    assert_eq!(got.kv.as_ref().unwrap().value, b"2");

    // History: at a revision and as of a time.
    let at0 = kv
        .get(GetRequest { key: "config/a".into(), at_revision: Some(0), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(at0.kv.unwrap().value, b"1");
    let before = kv
        .get(GetRequest { key: "config/a".into(), as_of: Some(first_ts - 1), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(before.kv.unwrap().value, b"1");

    // Conditions.
    let nx = kv.set(SetRequest { nx: true, ..set_req("config/a", "3") }).await.unwrap().into_inner();
    assert!(!nx.modified);
    let cas = kv.set(SetRequest { compare_revision: Some(1), ..set_req("config/a", "3") }).await.unwrap().into_inner();
    assert!(cas.modified);
    let stale = kv
        .set(SetRequest { compare_value: Some(b"2".to_vec()), ..set_req("config/a", "4") })
        .await
        .unwrap()
        .into_inner();
    assert!(!stale.modified);

    // Bucket and scan.
    let bucket = kv
        .get_by_bucket(GetByBucketRequest { bucket: "config".into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(bucket.items.iter().map(|i| i.key.as_str()).collect::<Vec<_>>(), ["config/a", "config/b"]);
    let page = kv.scan(ScanRequest { prefix: "".into(), limit: 2, ..Default::default() }).await.unwrap().into_inner();
    assert_eq!(page.items.len(), 2);
    assert_eq!(page.next_cursor, "config/b");
    let rest = kv
        .scan(ScanRequest { prefix: "".into(), limit: 2, cursor: page.next_cursor, ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.items.iter().map(|i| i.key.as_str()).collect::<Vec<_>>(), ["other"]);
    assert_eq!(rest.next_cursor, "");

    // Delete, exists, ttl and extend.
    let del = kv.delete(DeleteRequest { key: "other".into(), ..Default::default() }).await.unwrap().into_inner();
    assert!(del.deleted);
    let ex = kv.exists(ExistsRequest { key: "other".into(), ..Default::default() }).await.unwrap().into_inner();
    assert!(!ex.exists);
    kv.set(SetRequest { ttl_ms: 300, ..set_req("session/1", "s") }).await.unwrap();
    let ext = kv
        .extend(ExtendRequest { key: "session/1".into(), ttl_ms: 60_000, ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert!(ext.extended);
    kv.set(SetRequest { ttl_ms: 200, ..set_req("session/2", "s") }).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(kv.get(get_req("session/1")).await.unwrap().into_inner().found);
    assert!(!kv.get(get_req("session/2")).await.unwrap().into_inner().found);

    // Ephemeral keys are a separate keyspace.
    kv.set(SetRequest { durability: Durability::Ephemeral as i32, ..set_req("config/a", "eph") }).await.unwrap();
    let e = kv
        .get(GetRequest { durability: Durability::Ephemeral as i32, ..get_req("config/a") })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(e.kv.unwrap().value, b"eph");
    assert_eq!(kv.get(get_req("config/a")).await.unwrap().into_inner().kv.unwrap().value, b"3");

    // Batches.
    let many = kv
        .set_many(SetManyRequest { items: (0..20).map(|i| set_req(&format!("batch/{i}"), "v")).collect() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(many.results.len(), 20);
    let got = kv
        .get_many(GetManyRequest { keys: vec!["batch/3".into(), "nope".into()], ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert!(got.results[0].found && !got.results[1].found);

    // A restart keeps persistent data and drops ephemeral data.
    let status = cluster.nodes[0].terminate().expect("exit status");
    assert!(status.success(), "clean shutdown on SIGTERM");
    cluster.nodes[0].start();
    cluster.wait_ready(Duration::from_secs(20)).await;
    let mut kv = cluster.nodes[0].kv().await;
    let got = eventually(Duration::from_secs(10), || {
        let mut kv = kv.clone();
        async move { kv.get(get_req("config/a")).await }
    })
    .await
    .into_inner();
    assert_eq!(got.kv.unwrap().value, b"3");
    assert!(kv.get(get_req("batch/19")).await.unwrap().into_inner().found);
    let e = kv
        .get(GetRequest { durability: Durability::Ephemeral as i32, ..get_req("config/a") })
        .await
        .unwrap()
        .into_inner();
    assert!(!e.found);
}

#[tokio::test]
async fn bad_input_is_rejected_and_changes_nothing() {
    let cluster = Cluster::start(1, 2, &["--value-bytes-max", "1000"]).await;
    let mut kv = cluster.nodes[0].kv().await;
    let code = |r: Result<tonic::Response<SetResponse>, tonic::Status>| {
        let s = r.unwrap_err();
        assert_eq!(s.metadata().get("kahuna-code").and_then(|v| v.to_str().ok()), Some("InvalidInput"), "{s:?}");
        (s.code(), s.message().to_owned())
    };
    let (c, m) = code(kv.set(set_req("", "v")).await);
    assert_eq!(c, Code::InvalidArgument);
    assert!(m.contains("empty"), "{m}");
    let (_, m) = code(kv.set(set_req(&"k".repeat(1025), "v")).await);
    assert!(m.contains("1024"), "{m}");
    let (_, m) = code(kv.set(set_req("big", &"v".repeat(1001))).await);
    assert!(m.contains("1000"), "{m}");
    let (_, m) = code(kv.set(set_req("__kahuna:x", "v")).await);
    assert!(m.contains("reserved"), "{m}");
    let (_, m) = code(kv.set(SetRequest { nx: true, xx: true, ..set_req("k", "v") }).await);
    assert!(m.contains("nx"), "{m}");
    let (_, m) = code(kv.set(SetRequest { ttl_ms: -5, ..set_req("k", "v") }).await);
    assert!(m.contains("negative"), "{m}");
    let (_, m) = code(kv.set(SetRequest { durability: 7, ..set_req("k", "v") }).await);
    assert!(m.contains("durability"), "{m}");
    let scan = kv.scan(ScanRequest { limit: 1_000_000, ..Default::default() }).await.unwrap_err();
    assert!(scan.message().contains("10000"), "{scan:?}");
    // Nothing was written.
    assert!(!kv.exists(ExistsRequest { key: "k".into(), ..Default::default() }).await.unwrap().into_inner().exists);
    // Nodes refuse a changed partition count.
}

/// Sends `calls` as one message on a pipeline stream and collects one reply per call,
/// by id; no message of replies carries more than 256.
async fn pipeline_round(
    outbound: &tokio::sync::mpsc::Sender<PipelineRequest>,
    replies: &mut tonic::Streaming<PipelineResponse>,
    calls: Vec<PipelineCall>,
) -> std::collections::BTreeMap<u64, pipeline_reply::Reply> {
    let want = calls.len();
    outbound.send(PipelineRequest { calls }).await.expect("stream open");
    let mut got = std::collections::BTreeMap::new();
    while got.len() < want {
        let message = replies.message().await.expect("stream healthy").expect("stream open");
        assert!(message.replies.len() <= 256, "{} replies in one message", message.replies.len());
        for reply in message.replies {
            assert!(got.insert(reply.id, reply.reply.expect("an answer")).is_none(), "one reply per call");
        }
    }
    got
}

/// Established TCP connections (in this network namespace) whose remote port is `port`:
/// the clients' side of the connections to a node listening there.
fn connections_to(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let remote_port =
                fields.get(2).and_then(|a| a.rsplit(':').next()).and_then(|p| u16::from_str_radix(p, 16).ok());
            remote_port == Some(port) && fields.get(3) == Some(&"01")
        })
        .count()
}

fn call(id: u64, call: pipeline_call::Call) -> PipelineCall {
    PipelineCall { id, call: Some(call) }
}

#[tokio::test]
async fn pipelined_calls_answer_as_unary_calls_do() {
    use pipeline_call::Call;
    use pipeline_reply::Reply;

    let mut cluster = Cluster::start(1, 4, &["--value-bytes-max", "1000"]).await;
    let mut kv = cluster.nodes[0].kv().await;

    // The raw stream: answers and errors by id, several calls to a message.
    let (outbound, requests) = tokio::sync::mpsc::channel(4);
    let mut replies =
        kv.pipeline(tokio_stream::wrappers::ReceiverStream::new(requests)).await.expect("stream opens").into_inner();
    let got = pipeline_round(
        &outbound,
        &mut replies,
        vec![
            call(1, Call::Set(set_req("p/a", "1"))),
            call(2, Call::Set(set_req("p/b", &"v".repeat(1001)))),
            call(3, Call::Set(set_req("", "v"))),
            PipelineCall { id: 4, call: None },
        ],
    )
    .await;
    assert!(matches!(&got[&1], Reply::Set(r) if r.modified && r.served_by == 1), "{:?}", got[&1]);
    for (id, words) in [(2, "1000"), (3, "empty"), (4, "names no operation")] {
        let Reply::Error(e) = &got[&id] else { panic!("call {id}: {:?}", got[&id]) };
        assert_eq!(e.code, Code::InvalidArgument as i32, "{e:?}");
        assert!(e.message.contains(words), "{e:?}");
    }
    let Reply::Error(e) = &got[&2] else { unreachable!() };
    assert_eq!(e.metadata.get("kahuna-code").map(String::as_str), Some("InvalidInput"));
    let got = pipeline_round(
        &outbound,
        &mut replies,
        vec![
            call(5, Call::Get(get_req("p/a"))),
            call(6, Call::Exists(ExistsRequest { key: "p/b".into(), ..Default::default() })),
            call(7, Call::Extend(ExtendRequest { key: "p/a".into(), ttl_ms: 60_000, ..Default::default() })),
        ],
    )
    .await;
    assert!(matches!(&got[&5], Reply::Get(r) if r.kv.as_ref().is_some_and(|kv| kv.value == b"1")), "{:?}", got[&5]);
    assert!(matches!(&got[&6], Reply::Exists(r) if !r.exists), "nothing written by a refused call: {:?}", got[&6]);
    assert!(matches!(&got[&7], Reply::Extend(r) if r.extended), "{:?}", got[&7]);
    let got = pipeline_round(
        &outbound,
        &mut replies,
        vec![call(8, Call::Delete(DeleteRequest { key: "p/a".into(), ..Default::default() }))],
    )
    .await;
    assert!(matches!(&got[&8], Reply::Delete(r) if r.deleted), "{:?}", got[&8]);
    // Calls answered in place (ephemeral gets on a node that leads alone) still come back
    // in messages of at most 256 replies.
    let eget = GetRequest { durability: Durability::Ephemeral as i32, ..get_req("p/b") };
    let calls = (100..1124).map(|id| call(id, Call::Get(eget.clone()))).collect();
    let got = pipeline_round(&outbound, &mut replies, calls).await;
    assert_eq!(got.len(), 1024);
    assert!(got.values().all(|r| matches!(r, Reply::Get(r) if r.kv.is_none())), "{:?}", got.first_key_value());

    // A message with more calls than a node runs at once ends the stream, naming the limit.
    let calls = (0..1025).map(|id| call(id, Call::Get(get_req("p/a")))).collect();
    outbound.send(PipelineRequest { calls }).await.expect("stream open");
    let status = loop {
        match replies.message().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the stream ended without a status"),
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("1024"), "{status:?}");

    // Through the client: many callers share the stream; errors map as for unary calls.
    let client = kahuna_client::Client::builder(cluster.endpoints()).pipeline(true).build().expect("client");
    let mut writers = tokio::task::JoinSet::new();
    for i in 0..300 {
        let client = client.clone();
        writers.spawn(async move {
            client.set(format!("q/{i}"), i.to_string(), kahuna_client::SetOptions::new()).await.map(|r| r.modified)
        });
    }
    while let Some(written) = writers.join_next().await {
        assert_eq!(written.expect("task"), Ok(true));
    }
    for i in [0, 150, 299] {
        let got = client.get(format!("q/{i}"), kahuna_client::GetOptions::new()).await.expect("get");
        assert_eq!(got.kv.expect("written").value, i.to_string().into_bytes());
    }
    let refused = client.set("q/big", "v".repeat(1001), kahuna_client::SetOptions::new()).await.unwrap_err();
    assert!(matches!(&refused, kahuna_client::Error::InvalidInput(m) if m.contains("1000")), "{refused:?}");

    // Dropping a pipelined client ends its streams and closes its connection (the reader
    // task must not keep its own stream open).
    let port: u16 = cluster.nodes[0].address.rsplit(':').next().and_then(|p| p.parse().ok()).expect("port");
    let before = connections_to(port);
    let short = kahuna_client::Client::builder(cluster.endpoints()).pipeline(true).build().expect("client");
    short.get("q/0", kahuna_client::GetOptions::new()).await.expect("get");
    assert_eq!(connections_to(port), before + 1, "the pipelined client's connection");
    drop(short);
    eventually(Duration::from_secs(10), || async {
        match connections_to(port) {
            n if n == before => Ok(()),
            n => Err(format!("{n} connections, {before} before the client")),
        }
    })
    .await;

    // A node that went away fails the stream's calls as retryable; after its restart the
    // client opens a new stream.
    cluster.node(1).kill();
    let down = client.get("q/0", kahuna_client::GetOptions::new()).await.unwrap_err();
    assert!(down.is_retryable(), "{down:?}");
    cluster.node(1).start();
    cluster.wait_ready(Duration::from_secs(30)).await;
    let got = eventually(Duration::from_secs(10), || client.get("q/0", kahuna_client::GetOptions::new())).await;
    assert_eq!(got.kv.expect("written before the restart").value, b"0");
}
