//! Lua scripts end to end: a counter run concurrently loses no increment (one node and
//! three), limits stop runaway scripts, the sandbox refuses files, processes and loading
//! code, a failing script writes nothing, scripts run by hash, and errors name the line.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::*;
use kahuna_client::{Client, Error, GetOptions, ScriptArgs, ScriptErrorKind, ScriptValue, script_hash};

const PARTITIONS: u32 = 4;

/// Reads the counter, adds one, returns the new value. Values are stored as text.
const COUNTER: &str = r#"
local key = kahuna.args[1]
local n = tonumber((kahuna.get(key) or {}).value or "0") + 1
kahuna.set(key, n)
return n
"#;

fn client(endpoints: Vec<String>) -> Client {
    Client::builder(endpoints).timeout(Duration::from_secs(20)).build().expect("client")
}

/// Runs `COUNTER` on `key` from `tasks` tasks until it succeeded `total` times, running
/// it again after a conflict (which committed nothing). Checks that the values returned
/// are exactly 1..=total and that the key holds `total`.
async fn count(clients: &[Client], key: &str, tasks: usize, total: u64) {
    let done = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..tasks)
        .map(|i| {
            let (c, done, key) = (clients[i % clients.len()].clone(), done.clone(), key.to_owned());
            tokio::spawn(async move {
                let args = ScriptArgs::new().arg(key.as_str());
                let mut seen = Vec::new();
                let mut conflicts = 0u64;
                while done.fetch_add(1, Ordering::SeqCst) < total {
                    loop {
                        match c.eval(COUNTER, &args).await {
                            Ok(r) => {
                                seen.push(r.value.as_i64().expect("an integer"));
                                break;
                            }
                            Err(Error::Conflict(_)) => conflicts += 1,
                            Err(e) => panic!("counter script failed: {e}"),
                        }
                    }
                }
                (seen, conflicts)
            })
        })
        .collect();
    let mut all = BTreeSet::new();
    let mut conflicts = 0;
    for h in handles {
        let (seen, c) = h.await.expect("task");
        conflicts += c;
        for v in seen {
            assert!(all.insert(v), "value {v} returned twice");
        }
    }
    assert_eq!(all, (1..=total as i64).collect::<BTreeSet<_>>(), "({conflicts} conflicts re-run)");
    let kv = clients[0].get(key, GetOptions::new()).await.expect("get").kv.expect("counter");
    assert_eq!(kv.value, total.to_string().as_bytes());
}

/// The counter's nodes give scripts a generous time budget: a script's budget includes
/// its waits for reads, which a loaded test machine can stretch past the default 1 s.
const COUNTER_FLAGS: [&str; 2] = ["--script-time-ms-max", "10000"];

#[tokio::test]
async fn counter_is_exact_under_contention() {
    let cluster = Cluster::start(1, PARTITIONS, &COUNTER_FLAGS).await;
    let c = client(cluster.endpoints());
    count(&[c], "counter/one-node", 16, 1_000).await;
}

#[tokio::test]
async fn counter_is_exact_on_three_nodes() {
    let cluster = Cluster::start(3, PARTITIONS, &COUNTER_FLAGS).await;
    // Each node runs scripts of its own clients, all on the same key.
    let clients: Vec<Client> = cluster.endpoints().into_iter().map(|e| client(vec![e])).collect();
    count(&clients, "counter/three-nodes", 6, 150).await;
}

fn script_error(result: Result<kahuna_client::ScriptResult, Error>, kind: ScriptErrorKind) -> String {
    match result {
        Err(Error::Script { kind: k, message }) if k == kind => message,
        other => panic!("expected a {kind:?} script error, got {other:?}"),
    }
}

#[tokio::test]
async fn limits_sandbox_atomicity_hashes_and_lines() {
    let flags = ["--script-time-ms-max", "300", "--script-memory-bytes-max", "8388608"];
    let cluster = Cluster::start(1, PARTITIONS, &flags).await;
    let c = client(cluster.endpoints());
    let none = ScriptArgs::new();

    // Limits end runaway scripts with an error naming the limit.
    let m = script_error(c.eval("local n = 0\nwhile true do n = n + 1 end", &none).await, ScriptErrorKind::TimeLimit);
    assert!(m.contains("time budget of 300 ms"), "{m}");
    let bomb = "local s = 'x'\nwhile true do s = s .. s end";
    let m = script_error(c.eval(bomb, &none).await, ScriptErrorKind::MemoryLimit);
    assert!(m.contains("memory limit of 8388608 bytes"), "{m}");

    // The sandbox: no files, processes, modules or loading code.
    for (source, name) in [
        ("return io.open('/etc/passwd')", "io.open"),
        ("return os.execute('true')", "os.execute"),
        ("return require('os')", "require"),
        ("return load('return 1')()", "load"),
    ] {
        let m = script_error(c.eval(source, &none).await, ScriptErrorKind::Runtime);
        assert!(m.contains(&format!("{name} is not available in scripts")), "{source}: {m}");
    }

    // A script that fails after a write leaves nothing written.
    let m = script_error(c.eval("kahuna.set('partial/x', 'v')\nerror('boom')", &none).await, ScriptErrorKind::Runtime);
    assert!(m.contains("boom"), "{m}");
    assert!(c.get("partial/x", GetOptions::new()).await.expect("get").kv.is_none());

    // By hash: unknown hashes are "not loaded"; loaded ones run; eval loads as needed.
    let missing = "0".repeat(64);
    script_error(c.eval_sha(&missing, &none).await, ScriptErrorKind::NotLoaded);
    let source = "return {kahuna.args[1], kahuna.args.who, #kahuna.args}";
    let hash = c.script_load(source).await.expect("load");
    assert_eq!(hash, script_hash(source));
    let args = ScriptArgs::new().arg(7).named("who", "ada");
    let r = c.eval_sha(&hash, &args).await.expect("run by hash");
    let expected = ScriptValue::Array(vec![ScriptValue::Integer(7), "ada".into(), ScriptValue::Integer(1)]);
    assert_eq!((r.value, r.hash.as_str(), r.commit_ts, r.attempts), (expected, hash.as_str(), None, 1));
    let fresh = "return kahuna.now() > 0";
    let r = c.eval(fresh, &none).await.expect("eval of a script never loaded");
    assert_eq!((r.value, r.hash), (ScriptValue::Boolean(true), script_hash(fresh)));
    let r = c.eval("kahuna.set('written/x', 'v')\nreturn 'ok'", &none).await.expect("eval");
    assert!(r.commit_ts.is_some());
    assert_eq!(r.served_by, 1);

    // Errors carry the script line.
    let m = script_error(c.eval("local a = 1\n\nerror('third line')", &none).await, ScriptErrorKind::Runtime);
    assert!(m.contains("script:3:"), "{m}");
    let e = c.eval("local x = 1\nkahuna.set('', 'v')", &none).await.expect_err("empty key");
    assert!(matches!(e, Error::InvalidInput(_)) && e.script_line() == Some(2), "{e:?}");
    let e = c.eval("return 1 +", &none).await.expect_err("syntax");
    assert!(matches!(&e, Error::Script { kind: ScriptErrorKind::Syntax, .. }) && e.script_line() == Some(1), "{e:?}");
    let e = c.script_load("local x = \n\n)").await.expect_err("syntax");
    assert_eq!(e.script_line(), Some(3), "{e:?}");

    // Scripts cover persistent keys only.
    let e = c.eval("kahuna.set('e/x', 'v', {durability = 'ephemeral'})", &none).await.expect_err("ephemeral");
    assert!(matches!(&e, Error::InvalidInput(m) if m.contains("persistent keys only")), "{e:?}");
}
