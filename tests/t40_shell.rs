//! The shell run non-interactively against a real node: `-c`, stdin, formats, exit
//! codes, and failover past a dead endpoint.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use common::*;

fn shell(endpoints: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kahuna"))
        .arg("shell")
        .arg("--endpoints")
        .arg(endpoints)
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn shell");
    if let Some(input) = stdin {
        child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write stdin");
    }
    child.wait_with_output().expect("shell output")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn runbooks_formats_and_exit_codes() {
    let cluster = Cluster::start(1, 2, &[]).await;
    let endpoint = cluster.nodes[0].address.clone();

    let out =
        shell(&endpoint, &["--format", "json", "-c", "set cfg/a 'hello world' nx; get cfg/a; exists cfg/zz"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let docs: Vec<serde_json::Value> =
        text(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("one JSON document per line")).collect();
    assert_eq!(docs.len(), 3, "{docs:?}");
    assert_eq!(docs[0]["modified"], true);
    assert_eq!(docs[1]["value"], "hello world");
    assert_eq!(docs[1]["revision"], 0);

    let out = shell(&endpoint, &["--format", "raw", "-c", "get cfg/a"], None);
    assert_eq!(text(&out.stdout).trim_end(), "hello world");

    // Commands on stdin, the way a runbook is piped in.
    let out = shell(&endpoint, &[], Some("set cfg/b 1\n# a comment\nset cfg/b 2 xx\nget by bucket cfg\n"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listing = text(&out.stdout);
    assert!(listing.contains("cfg/a") && listing.contains("cfg/b"), "{listing}");

    // A bad command fails with a clear message and a non-zero exit, and writes nothing.
    let out = shell(&endpoint, &["-c", "set cfg/c v nx xx"], None);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("nx"), "{}", text(&out.stderr));
    let out = shell(&endpoint, &["-c", "set '' v"], None);
    assert!(!out.status.success());
    assert!(text(&out.stderr).to_lowercase().contains("empty"), "{}", text(&out.stderr));
    let out = shell(&endpoint, &["--format", "raw", "-c", "exists cfg/c"], None);
    assert_eq!(text(&out.stdout).trim_end(), "0", "raw exists prints 0 or 1");

    // A dead first endpoint is skipped.
    let dead = format!("127.0.0.1:{}", free_port());
    let out = shell(&format!("{dead},{endpoint}"), &["--format", "raw", "-c", "get cfg/b"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim_end(), "2");
}
