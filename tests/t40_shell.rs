//! The shell run non-interactively against a real node: `-c`, stdin, formats, exit
//! codes, failover past a dead endpoint, the `KAHUNA_*` environment variables, `status`,
//! `members` and `timing on`.

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

    // With one endpoint, and it dead, each retry is told on stderr as it happens, then
    // the error; with JSON, stdout holds the error document and nothing else.
    let out = shell(&dead, &["--format", "json", "-c", "get cfg/b"], None);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let notices = text(&out.stderr);
    let lines: Vec<&str> = notices.lines().collect();
    assert_eq!(lines.len(), 4, "one notice per retry: {notices}");
    for (line, attempt) in lines.iter().zip(2..) {
        assert!(line.starts_with(&format!("connection to {dead} lost (unavailable: ")), "{notices}");
        assert!(
            line.contains("); retrying in ") && line.ends_with(&format!(" ms (attempt {attempt} of 5)")),
            "{notices}"
        );
    }
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("only the error document on stdout");
    assert_eq!(doc["error"]["code"], "Unavailable", "{doc}");
    let message = doc["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(&format!("(at http://{dead}, after 5 attempts)")), "{doc}");
}

/// Runs `kahuna shell ARGS` with the `KAHUNA_*` variables `env` and no others.
fn shell_env(env: &[(&str, &str)], args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kahuna"))
        .arg("shell")
        .args(args)
        .env_remove("KAHUNA_ENDPOINTS")
        .env_remove("KAHUNA_FORMAT")
        .env_remove("KAHUNA_TIMEOUT")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run kahuna shell")
}

#[tokio::test]
async fn environment_admin_views_timing_and_failures() {
    let cluster = Cluster::start(1, 2, &[]).await;
    let endpoint = cluster.nodes[0].address.clone();
    let dead = format!("127.0.0.1:{}", free_port());

    // KAHUNA_ENDPOINTS (a list, failing over past the dead one) and KAHUNA_FORMAT stand
    // in for the flags.
    let endpoints = format!("{dead},{endpoint}");
    let env = [("KAHUNA_ENDPOINTS", endpoints.as_str()), ("KAHUNA_FORMAT", "raw")];
    let out = shell_env(&env, &["-c", "set env/a from-env; get env/a"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "1\nfrom-env\n");
    let notice = text(&out.stderr);
    assert!(notice.contains(&format!("connection to {dead} lost (unavailable: ")), "{notice}");
    assert!(
        notice.contains(&format!("); trying {endpoint} in ")) && notice.contains(" ms (attempt 2 of 5)"),
        "{notice}"
    );
    // A flag wins over its variable; the failover notice stays on stderr.
    let out = shell_env(&env, &["--format", "json", "-c", "get env/a"]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(doc["value"], "from-env");
    assert!(text(&out.stderr).contains(&format!("; trying {endpoint} in ")), "{}", text(&out.stderr));
    // KAHUNA_TIMEOUT is read and checked like --timeout.
    let out = shell_env(&[("KAHUNA_ENDPOINTS", endpoint.as_str()), ("KAHUNA_TIMEOUT", "soon")], &["-c", "ping"]);
    assert_eq!(out.status.code(), Some(2), "a bad KAHUNA_TIMEOUT is a usage error");
    assert!(text(&out.stderr).contains("soon"), "{}", text(&out.stderr));
    let out = shell_env(&[("KAHUNA_ENDPOINTS", endpoint.as_str()), ("KAHUNA_TIMEOUT", "2000")], &["-c", "ping"]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    // status: nodes, and every partition's leader, term and applied index; members: the
    // nodes, marking the one that answered. timing on: each latency on stderr for JSON.
    let out = shell(&endpoint, &["--format", "json", "-c", "timing on; status; members"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let docs: Vec<serde_json::Value> =
        text(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("one JSON document per line")).collect();
    assert_eq!(docs.len(), 3, "{docs:?}");
    let partitions = docs[1]["partitions"].as_array().expect("status lists partitions");
    assert_eq!(partitions.len(), 2, "{docs:?}");
    for p in partitions {
        assert_eq!(p["leader"], 1, "{p}");
        assert!(p["term"].as_u64() >= Some(1) && p["applied_index"].as_u64() >= Some(1), "{p}");
    }
    assert_eq!(docs[1]["nodes"][0]["address"], endpoint.as_str());
    assert_eq!(docs[2]["nodes"][0]["answering"], true);
    let latencies = text(&out.stderr);
    assert_eq!(latencies.lines().filter(|l| l.starts_with('(') && l.ends_with(" ms)")).count(), 2, "{latencies}");
    let out = shell(&endpoint, &["-c", "status; members"], None);
    let table = text(&out.stdout);
    assert!(table.contains("PARTITION  LEADER  TERM") && table.contains("APPLIED"), "{table}");
    assert!(table.contains(&format!("1     {endpoint}  yes")), "{table}");

    // A command that fails on the server stops the script with exit code 1: the
    // commands after it do not run. (eval takes the rest of its line, `;` included.)
    let out = shell(&endpoint, &["-c", "set env/b 1\neval error('stop here')\nset env/c 1"], None);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("stop here"), "{}", text(&out.stderr));
    let out = shell(&endpoint, &["--format", "raw", "-c", "exists env/b; exists env/c"], None);
    assert_eq!(text(&out.stdout), "1\n0\n");
}
