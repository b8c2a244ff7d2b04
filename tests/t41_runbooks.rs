//! Every runbook in `scripts/*.kahuna` run with `kahuna shell -f` against a live node:
//! each exits 0, its JSON output shows the pattern it documents, and it runs again
//! cleanly (in table format) on the state the first run left. Also the Lua example
//! `scripts/counter.lua` run with `run` (every other `scripts/*.lua` must be run by a
//! runbook), and what a script does when a transaction in it fails (rolls back, exit 1)
//! or is left open (refused before anything runs, exit 2).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::*;
use serde_json::Value;

/// The runbooks this test knows how to check; any other `*.kahuna` file in `scripts/`
/// is still run and must succeed.
const KNOWN: [&str; 6] = [
    "expire-sessions.kahuna",
    "feature-flag-rollout.kahuna",
    "invoice-numbering.kahuna",
    "leader-election.kahuna",
    "reservation-move.kahuna",
    "singleton-job.kahuna",
];

fn run_file(endpoint: &str, format: &str, file: &Path) -> Output {
    shell(endpoint, &["--format", format, "-f", &file.to_string_lossy()])
}

/// Runs `kahuna shell` from the repository root (so `scripts/...` paths resolve), with
/// `args` after the endpoint.
fn shell(endpoint: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kahuna"))
        .arg("shell")
        .args(["--endpoints", endpoint])
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("run kahuna shell")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The files in `scripts/` ending in `.extension`, sorted.
fn scripts(extension: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("scripts/ exists")
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == extension))
        .collect();
    files.sort();
    files
}

fn runbooks() -> Vec<PathBuf> {
    scripts("kahuna")
}

fn lua_files() -> Vec<PathBuf> {
    scripts("lua")
}

fn name(path: &Path) -> String {
    path.file_name().expect("file name").to_string_lossy().into_owned()
}

/// The documents that have every `(field, value)` pair, in output order.
fn matching<'a>(docs: &'a [Value], fields: &[(&str, Value)]) -> Vec<&'a Value> {
    docs.iter().filter(|d| fields.iter().all(|(k, v)| d.get(*k) == Some(v))).collect()
}

fn int(value: &Value) -> i64 {
    value.as_i64().unwrap_or_else(|| panic!("not an integer: {value}"))
}

fn check_singleton_job(docs: &[Value]) {
    let name = Value::from("jobs/nightly-report");
    let locks = matching(docs, &[("name", name.clone()), ("acquired", true.into())]);
    assert_eq!(locks.len(), 1, "{docs:#?}");
    assert_eq!(locks[0]["holder"]["owner"], "report-runner-1");
    let token = int(&locks[0]["holder"]["token"]);
    assert!(token >= 1);
    let views = matching(docs, &[("name", name.clone()), ("held", true.into())]);
    assert_eq!(views.len(), 1, "get-lock while held: {docs:#?}");
    assert_eq!(int(&views[0]["holder"]["token"]), token);
    let writes = matching(docs, &[("key", "jobs/nightly-report/state".into()), ("modified", true.into())]);
    assert_eq!(writes.len(), 2, "running, then done: {docs:#?}");
    assert_eq!(matching(docs, &[("name", name.clone()), ("released", true.into())]).len(), 1);
    let free = matching(docs, &[("name", name), ("held", false.into())]);
    assert_eq!(free.len(), 1, "get-lock after release: {docs:#?}");
    assert_eq!(int(&free[0]["last_token"]), token);
    let state = matching(docs, &[("key", "jobs/nightly-report/state".into()), ("found", true.into())]);
    assert_eq!(state.len(), 1);
    assert_eq!(state[0]["value"], "done (owner report-runner-1)");
    assert_eq!(state[0]["expires_at_ms"], Value::Null);
}

fn check_invoice_numbering(docs: &[Value]) {
    let created: Vec<&Value> = docs.iter().filter(|d| d.get("created").is_some()).collect();
    assert_eq!(created.len(), 1);
    assert_eq!(created[0]["sequence"]["start"], 1000);
    let name = Value::from("invoices-2026");
    let singles: Vec<&Value> =
        matching(docs, &[("name", name.clone())]).into_iter().filter(|d| d.get("value").is_some()).collect();
    assert_eq!(singles.len(), 3, "{docs:#?}");
    let first = int(&singles[0]["value"]);
    assert_eq!(first, 1000, "a fresh sequence starts at its start");
    assert_eq!(singles[0]["replayed"], false);
    assert_eq!(int(&singles[1]["value"]), first, "the retry with the same key gets the same number");
    assert_eq!(singles[1]["replayed"], true);
    assert_eq!(int(&singles[2]["value"]), first + 1, "another key gets the next number");
    let ranges: Vec<&Value> =
        matching(docs, &[("name", name.clone())]).into_iter().filter(|d| d.get("first").is_some()).collect();
    assert_eq!(ranges.len(), 2, "{docs:#?}");
    assert_eq!(ranges[0]["count"], 50);
    assert_eq!(int(&ranges[0]["first"]), first + 2);
    assert_eq!(int(&ranges[0]["last"]) - int(&ranges[0]["first"]) + 1, 50);
    assert_eq!(
        (ranges[1]["first"].clone(), ranges[1]["last"].clone()),
        (ranges[0]["first"].clone(), ranges[0]["last"].clone())
    );
    assert_eq!(ranges[1]["replayed"], true);
    let seen = matching(docs, &[("name", name), ("found", true.into())]);
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0]["sequence"]["last"], ranges[0]["last"]);
    assert_eq!(int(&seen[0]["sequence"]["next"]), int(&ranges[0]["last"]) + 1);
}

fn scan_keys(doc: &Value) -> Vec<String> {
    doc["items"]
        .as_array()
        .expect("scan items")
        .iter()
        .map(|item| item["key"].as_str().expect("key").to_owned())
        .collect()
}

fn check_expire_sessions(docs: &[Value]) {
    let written = docs.iter().filter(|d| d["modified"] == true).count();
    assert_eq!(written, 3, "three logins: {docs:#?}");
    let all = matching(docs, &[("prefix", "sessions/".into())]);
    assert_eq!(all.len(), 2, "{docs:#?}");
    assert_eq!(scan_keys(all[0]), ["sessions/alice/phone-1", "sessions/alice/web-1", "sessions/bob/web-1"]);
    for item in all[0]["items"].as_array().expect("items") {
        assert!(item["expires_at_ms"].is_u64(), "every session has a TTL: {item}");
    }
    let extended = matching(docs, &[("key", "sessions/bob/web-1".into()), ("extended", true.into())]);
    assert_eq!(extended.len(), 1);
    let alice = matching(docs, &[("prefix", "sessions/alice/".into())]);
    assert_eq!(alice.len(), 2);
    assert_eq!(scan_keys(alice[0]), ["sessions/alice/phone-1", "sessions/alice/web-1"]);
    let deleted: Vec<&Value> = docs.iter().filter_map(|d| d.get("results")).collect();
    assert_eq!(deleted.len(), 1);
    assert!(deleted[0].as_array().expect("results").iter().all(|r| r["deleted"] == true), "{deleted:?}");
    assert!(scan_keys(alice[1]).is_empty(), "no session of alice is left");
    assert_eq!(scan_keys(all[1]), ["sessions/bob/web-1"]);
}

fn check_leader_election(docs: &[Value]) {
    let name = Value::from("election/billing");
    let campaigns: Vec<&Value> =
        matching(docs, &[("name", name.clone())]).into_iter().filter(|d| d.get("acquired").is_some()).collect();
    assert_eq!(campaigns.len(), 3, "{docs:#?}");
    assert_eq!(campaigns[0]["acquired"], true);
    assert_eq!(campaigns[0]["holder"]["owner"], "node-a");
    let first_token = int(&campaigns[0]["holder"]["token"]);
    assert_eq!(campaigns[1]["acquired"], false, "a second candidate fails while the lease runs");
    assert_eq!(campaigns[1]["holder"]["owner"], "node-a");
    assert_eq!(campaigns[2]["acquired"], true);
    assert_eq!(campaigns[2]["holder"]["owner"], "node-b");
    assert!(int(&campaigns[2]["holder"]["token"]) > first_token, "the new leader's token is larger");
    let leaders: Vec<&Value> = matching(docs, &[("name", name.clone()), ("held", true.into())]);
    let owners: Vec<&str> = leaders.iter().map(|d| d["holder"]["owner"].as_str().expect("owner")).collect();
    assert_eq!(owners, ["node-a", "node-a", "node-b"], "get-lock shows the leader");
    let renewed = matching(docs, &[("name", name.clone()), ("extended", true.into())]);
    assert_eq!(renewed.len(), 1);
    assert_eq!(int(&renewed[0]["holder"]["token"]), first_token, "renewing keeps the token");
    assert!(
        renewed[0]["holder"]["expires_at_ms"].as_u64() >= campaigns[0]["holder"]["expires_at_ms"].as_u64(),
        "renewing does not shorten the lease"
    );
    assert_eq!(matching(docs, &[("name", name), ("released", true.into())]).len(), 2);
}

fn check_feature_flag_rollout(docs: &[Value]) {
    let begun: Vec<&Value> = docs.iter().filter(|d| d.get("snapshot_ts").is_some()).collect();
    assert_eq!(begun.len(), 2, "a dry run and the rollout: {docs:#?}");
    let checkout = Value::from("flags/checkout-v2");
    let dry = matching(docs, &[("key", checkout.clone()), ("found", true.into())]);
    assert_eq!(dry[0]["value"], "on", "the dry run sees its own write");
    assert_eq!(dry[0]["commit_ts"], 0, "an uncommitted write has no commit timestamp");
    assert_eq!(dry[1]["value"], "off", "the rollback discarded it");
    let rolled_back = matching(docs, &[("rolled_back", true.into())]);
    assert_eq!(rolled_back.len(), 1);
    assert_eq!(rolled_back[0]["txn_id"], begun[0]["txn_id"]);
    let buffered = matching(docs, &[("in_transaction", true.into()), ("modified", true.into())]);
    assert_eq!(buffered.len(), 4, "one set in the dry run, three in the rollout: {docs:#?}");
    let commits = matching(docs, &[("committed", true.into())]);
    assert_eq!(commits.len(), 1);
    assert_eq!(commits[0]["txn_id"], begun[1]["txn_id"]);
    let commit_ts = commits[0]["commit_ts"].as_u64().expect("the rollout wrote something");
    let after = docs.iter().rev().find_map(|d| d.get("results")).expect("the final mget");
    let after = after.as_array().expect("results");
    let values: Vec<&str> = after.iter().map(|r| r["value"].as_str().expect("found")).collect();
    assert_eq!(values, ["on", "on", "10"]);
    for result in after {
        assert_eq!(result["commit_ts"].as_u64(), Some(commit_ts), "all three flags commit together: {result}");
    }
}

fn check_reservation_move(docs: &[Value]) {
    let scripts: Vec<&Value> = docs.iter().filter(|d| d.get("hash").is_some()).collect();
    assert_eq!(scripts.len(), 3, "two runs of the file and a lua block: {docs:#?}");
    assert_eq!(scripts[0]["value"]["moved"], true);
    assert_eq!(scripts[0]["value"]["to"], "bob");
    assert!(scripts[0]["commit_ts"].is_u64(), "the move committed: {}", scripts[0]);
    assert_eq!(scripts[1]["value"]["moved"], false);
    assert_eq!(scripts[1]["value"]["reason"], "held by bob");
    assert_eq!(scripts[1]["commit_ts"], Value::Null, "a refused move writes nothing");
    let owner = matching(docs, &[("key", "reservations/12A".into()), ("found", true.into())]);
    assert_eq!(owner.len(), 1);
    assert_eq!(owner[0]["value"], "bob");
    assert_eq!(owner[0]["commit_ts"], scripts[0]["commit_ts"], "the reservation moved in the script's commit");
    let holds = matching(docs, &[("prefix", "holds/".into())]);
    assert_eq!(scan_keys(holds[0]), ["holds/bob/12A"]);
    assert_eq!(
        scripts[2]["value"],
        serde_json::json!([{ "hold": "holds/bob/12A", "reservation": "reservations/12A" }]),
        "the lua block returns the holds as records"
    );
}

#[tokio::test]
async fn every_runbook_runs_and_shows_its_pattern() {
    let cluster = Cluster::start(1, 2, &[]).await;
    let endpoint = cluster.nodes[0].address.clone();
    let files = runbooks();
    let names: Vec<String> = files.iter().map(|f| name(f)).collect();
    for known in KNOWN {
        assert!(names.iter().any(|n| n == known), "scripts/{known} is missing; found {names:?}");
    }
    // Every Lua example in scripts/ runs here too: from a runbook, or below.
    let runbook_text: String = files.iter().map(|f| std::fs::read_to_string(f).expect("read runbook")).collect();
    for lua in lua_files() {
        let lua = name(&lua);
        assert!(
            lua == "counter.lua" || runbook_text.contains(&format!("run {lua}")),
            "scripts/{lua} is run by no runbook and no test"
        );
    }

    for file in &files {
        let out = run_file(&endpoint, "json", file);
        let stdout = text(&out.stdout);
        assert!(out.status.success(), "{} failed: {:?}\n{stdout}\n{}", name(file), out.status, text(&out.stderr));
        let docs: Vec<Value> = stdout
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{}: not JSON ({e}): {line}", name(file))))
            .collect();
        assert!(!docs.is_empty(), "{} printed nothing", name(file));
        assert!(docs.iter().all(|d| d.get("error").is_none()), "{}: {docs:#?}", name(file));
        match name(file).as_str() {
            "singleton-job.kahuna" => check_singleton_job(&docs),
            "invoice-numbering.kahuna" => check_invoice_numbering(&docs),
            "expire-sessions.kahuna" => check_expire_sessions(&docs),
            "leader-election.kahuna" => check_leader_election(&docs),
            "feature-flag-rollout.kahuna" => check_feature_flag_rollout(&docs),
            "reservation-move.kahuna" => check_reservation_move(&docs),
            _ => {}
        }
    }

    // Users run runbooks again: each succeeds on the state the first run left, and the
    // table output shows the key lines.
    for file in &files {
        let out = run_file(&endpoint, "table", file);
        let stdout = text(&out.stdout);
        assert!(out.status.success(), "{} (again) failed: {stdout}\n{}", name(file), text(&out.stderr));
        let expected: &[&str] = match name(file).as_str() {
            "singleton-job.kahuna" => &["acquired: owner report-runner-1, token 2", "released", "(free; last token 2"],
            "invoice-numbering.kahuna" => &["(exists, unchanged)", "1000 (replayed", "1002..1051 (50 values, replayed"],
            "expire-sessions.kahuna" => &["(3 keys", "(0 keys", "sessions/bob/web-1"],
            "leader-election.kahuna" => {
                &["acquired: owner node-a", "(not acquired: held by owner node-a", "acquired: owner node-b"]
            }
            "feature-flag-rollout.kahuna" => {
                &["begun transaction", "(uncommitted)", "rolled back transaction", "committed transaction", "\"10\""]
            }
            "reservation-move.kahuna" => &["\"held by bob\"", "(committed at", "(nothing written", "holds/bob/12A"],
            _ => &[],
        };
        for line in expected {
            assert!(stdout.contains(line), "{}: no {line:?} in\n{stdout}", name(file));
        }
    }
}

fn raw(endpoint: &str, command: &str) -> String {
    let out = shell(endpoint, &["--format", "raw", "-c", command]);
    assert!(out.status.success(), "{command}: {}", text(&out.stderr));
    text(&out.stdout).trim_end().to_owned()
}

#[tokio::test]
async fn lua_files_and_transactions_that_fail() {
    let cluster = Cluster::start(1, 2, &[]).await;
    let endpoint = cluster.nodes[0].address.clone();

    // The Lua example: typed arguments, and a value that survives between runs.
    assert_eq!(raw(&endpoint, "run scripts/counter.lua key=t41/hits"), "1");
    assert_eq!(raw(&endpoint, "run scripts/counter.lua key=t41/hits by=5"), "6");
    assert_eq!(raw(&endpoint, "get t41/hits"), "6");
    let out = shell(&endpoint, &["--format", "json", "-c", "run scripts/counter.lua key=t41/hits by=-6"]);
    let doc: Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(doc["value"], 0);
    assert!(doc["commit_ts"].is_u64(), "{doc}");

    // A script error names the file and line, and shows the line.
    let out = shell(&endpoint, &["-c", "run scripts/counter.lua key=t41/hits by='5'"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("scripts/counter.lua:") && stderr.contains("by must be a whole number"), "{stderr}");
    assert!(stderr.contains(" | ") && stderr.contains("error(\"by must be"), "the script line is shown: {stderr}");

    // A command that fails inside a transaction rolls it back: nothing it wrote stays.
    let dir = tempfile::tempdir().expect("temp dir");
    let script = dir.path().join("partial.kahuna");
    let big = "x".repeat(2 * 1024 * 1024);
    std::fs::write(&script, format!("begin\nset t41/partial 1\nset t41/big {big}\nset t41/after 1\ncommit\n"))
        .expect("write script");
    let out = run_file(&endpoint, "table", &script);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("line 3:") && stderr.contains("rolled back"), "{stderr}");
    assert_eq!(raw(&endpoint, "exists t41/partial; exists t41/after"), "0\n0");

    // A transaction a script would leave open is refused before anything runs.
    let out = shell(&endpoint, &["-c", "set t41/open 1; begin; set t41/open 2"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("no commit or rollback"), "{}", text(&out.stderr));
    assert_eq!(raw(&endpoint, "exists t41/open"), "0", "nothing ran");
}
