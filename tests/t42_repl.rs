//! The interactive shell driven through a pseudo-terminal: a visible error for a bad
//! command, `help COMMAND`, tab completion of a command, an option and a key, Ctrl-C
//! clearing the line, Ctrl-D leaving with exit code 0, history recalled with the Up arrow
//! and with Ctrl-R after a restart (HOME is a temporary directory, so the history goes
//! there), the transaction prompt with commit, rollback, a conflict and
//! Ctrl-D, a multi-line Lua block at the continuation prompt, the notice when the
//! client moves past an endpoint that does not answer, and the retries told one by one
//! when the only endpoint dies, in and out of a transaction. Only output is matched,
//! never timing.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use expectrl::process::unix::WaitStatus;
use expectrl::{ControlCode, Eof, Expect, Session};

/// How long one expected piece of output may take (generous: CI machines are slow).
const EXPECT_TIMEOUT: Duration = Duration::from_secs(20);

/// Up arrow, as a terminal sends it.
const UP: &str = "\x1b[A";

/// Ctrl-R: reverse search of the history.
const CTRL_R: &str = "\x12";

type Shell = expectrl::session::OsSession;

fn start_shell(endpoint: &str, home: &Path) -> (Shell, String) {
    start_shell_with(endpoint, endpoint, home)
}

/// Starts the shell with `endpoints`; the first prompt shows `first`.
fn start_shell_with(endpoints: &str, first: &str, home: &Path) -> (Shell, String) {
    let endpoint = first;
    let mut command = Command::new(env!("CARGO_BIN_EXE_kahuna"));
    command
        .arg("shell")
        .args(["--endpoints", endpoints])
        .env("HOME", home)
        .env("TERM", "xterm")
        .env_remove("KAHUNA_ENDPOINTS")
        .env_remove("KAHUNA_FORMAT")
        .env_remove("KAHUNA_TIMEOUT");
    let mut shell = Session::spawn(command).expect("spawn the shell in a pty");
    shell.set_expect_timeout(Some(EXPECT_TIMEOUT));
    let prompt = format!("kahuna {endpoint}> ");
    shell.expect("Kahuna shell, endpoints").expect("banner");
    shell.expect(prompt.as_str()).expect("first prompt");
    (shell, prompt)
}

/// Sends Ctrl-D on an empty line and checks the shell exits with code 0.
fn leave(mut shell: Shell) {
    shell.send(ControlCode::EndOfTransmission).expect("send Ctrl-D");
    shell.expect(Eof).expect("the shell leaves on Ctrl-D");
    match shell.get_process().wait().expect("wait for the shell") {
        WaitStatus::Exited(_, code) => assert_eq!(code, 0, "exit code after Ctrl-D"),
        other => panic!("the shell did not exit normally: {other:?}"),
    }
}

#[tokio::test]
async fn repl_history_completion_errors_and_ctrl_d() {
    let cluster = Cluster::start(1, 1, &[]).await;
    let endpoint = cluster.nodes[0].address.clone();
    let home = tempfile::tempdir().expect("temporary HOME");

    // First session.
    let (mut shell, prompt) = start_shell(&endpoint, home.path());

    // A bad command prints a visible error, and the shell carries on.
    shell.send_line("frobnicate now").expect("send bad command");
    shell.expect("unknown command \"frobnicate\"").expect("error for a bad command");
    shell.expect(prompt.as_str()).expect("prompt after the error");

    // help COMMAND shows the syntax and an example, also for a multi-word command
    // asked for by its first word.
    shell.send_line("help scan").expect("send help scan");
    shell.expect("scan by prefix PREFIX [limit N]").expect("the syntax");
    shell.expect("Example:").expect("an example");
    shell.expect(prompt.as_str()).expect("prompt after help");

    // Ctrl-C clears the line being edited: it never runs, and the next line starts empty.
    shell.send("set repl/ctrl-c typed").expect("type a line");
    shell.send(ControlCode::EndOfText).expect("send Ctrl-C");
    // Redrawing the line while typing never starts a new line; Ctrl-C does. Typing on
    // before it was handled would be lost with the interrupted line.
    shell.expect("\r\n").expect("Ctrl-C ends the line");
    shell.expect(prompt.as_str()).expect("a fresh prompt after Ctrl-C");
    shell.send_line("exists repl/ctrl-c").expect("send exists");
    shell.expect("false").expect("the cleared line did not run, nor join the next one");
    shell.expect(prompt.as_str()).expect("prompt after exists");

    // Tab completes an option word of the command being typed.
    complete(&mut shell, "set repl/option v cmpr", "cmprev", " 7", "(not modified", &prompt);
    // Tab completes a unique command prefix; the completed command then runs.
    complete(&mut shell, "get-lo", "get-lock", " repl/no-such-lock", "(free; last token 0", &prompt);

    shell.send_line("set repl/marker history-42").expect("send set");
    shell.expect("OK (revision 0").expect("set ran");
    shell.expect(prompt.as_str()).expect("prompt after set");
    shell.send_line("get repl/marker").expect("send get");
    shell.expect("\"history-42\"").expect("get ran");
    shell.expect(prompt.as_str()).expect("prompt after get");
    leave(shell);

    let history = std::fs::read_to_string(home.path().join(".kahuna_history")).expect("history in $HOME");
    assert!(history.contains("get repl/marker"), "{history}");
    assert!(history.contains("frobnicate now"), "{history}");

    // Second session: Up recalls the last line of the first one, and Enter runs it.
    let (mut shell, prompt) = start_shell(&endpoint, home.path());
    shell.send(UP).expect("press Up");
    // The command word is coloured on a terminal, so match the key the recalled line holds.
    shell.expect("repl/marker").expect("history recalled after restart");
    shell.send_line("").expect("press Enter");
    shell.expect("\"history-42\"").expect("the recalled command ran");
    shell.expect(prompt.as_str()).expect("prompt after the recalled command");
    // Ctrl-R finds an older line by what it contains, and Enter runs it.
    shell.send(CTRL_R).expect("press Ctrl-R");
    shell.send("history-4").expect("type the search");
    shell.expect("reverse-i-search").expect("the search prompt");
    shell.send_line("").expect("press Enter");
    shell.expect("OK (revision 1").expect("the found set ran again");
    shell.expect(prompt.as_str()).expect("prompt after the found command");
    leave(shell);
}

/// Runs one command with `kahuna shell -c` (another client, beside the REPL).
fn other_client(endpoint: &str, command: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_kahuna"))
        .args(["shell", "--endpoints", endpoint, "--format", "raw", "-c", command])
        .output()
        .expect("run kahuna shell -c");
    assert!(out.status.success(), "{command}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim_end().to_owned()
}

/// Sends `line` and waits for `output`, then for `prompt`.
fn step(shell: &mut Shell, line: &str, output: &str, prompt: &str) {
    shell.send_line(line).unwrap_or_else(|e| panic!("send {line:?}: {e}"));
    shell.expect(output).unwrap_or_else(|e| panic!("{line:?} should print {output:?}: {e}"));
    shell.expect(prompt).unwrap_or_else(|e| panic!("prompt {prompt:?} after {line:?}: {e}"));
}

/// Types `typed`, presses Tab and expects `shown`; then types `rest` and Enter, and
/// expects `output` and the prompt.
fn complete(shell: &mut Shell, typed: &str, shown: &str, rest: &str, output: &str, prompt: &str) {
    shell.send(typed).unwrap_or_else(|e| panic!("type {typed:?}: {e}"));
    shell.send("\t").expect("press Tab");
    shell.expect(shown).unwrap_or_else(|e| panic!("Tab after {typed:?} should show {shown:?}: {e}"));
    step(shell, rest, output, prompt);
}

#[tokio::test]
async fn repl_transactions_lua_blocks_key_completion_and_failover() {
    let cluster = Cluster::start(1, 1, &[]).await;
    let endpoint = cluster.nodes[0].address.clone();
    let home = tempfile::tempdir().expect("temporary HOME");
    other_client(&endpoint, "set repl/completion-key-one 17; set repl/txn before; set repl/conflict before");

    let (mut shell, prompt) = start_shell(&endpoint, home.path());
    let txn_prompt = format!("kahuna {endpoint} txn ");

    // Tab completes a key from the server by its prefix.
    complete(&mut shell, "get repl/completion-k", "repl/completion-key-one", "", "\"17\"", &prompt);

    // A transaction shows in the prompt; its write is buffered until commit.
    step(&mut shell, "begin", "begun transaction", &txn_prompt);
    step(&mut shell, "set repl/txn committed", "OK (buffered until commit", &txn_prompt);
    step(&mut shell, "lock repl/lock 1000", "cannot run inside a transaction", &txn_prompt);
    assert_eq!(other_client(&endpoint, "get repl/txn"), "before", "nothing is visible before commit");
    step(&mut shell, "commit", "committed transaction", &prompt);
    assert_eq!(other_client(&endpoint, "get repl/txn"), "committed");

    // Rollback discards the buffered write and leaves transaction mode.
    step(&mut shell, "begin timeout 30000", "within 30000 ms", &txn_prompt);
    step(&mut shell, "set repl/txn discarded", "OK (buffered until commit", &txn_prompt);
    step(&mut shell, "get repl/txn", "(uncommitted)", &txn_prompt);
    step(&mut shell, "rollback", "rolled back transaction", &prompt);
    step(&mut shell, "get repl/txn", "\"committed\"", &prompt);

    // A conflict at commit is reported with what to do, and leaves transaction mode.
    step(&mut shell, "begin", "begun transaction", &txn_prompt);
    step(&mut shell, "get repl/conflict", "\"before\"", &txn_prompt);
    other_client(&endpoint, "set repl/conflict theirs");
    step(&mut shell, "set repl/conflict mine", "OK (buffered until commit", &txn_prompt);
    shell.send_line("commit").expect("send commit");
    shell.expect("run the transaction again from begin").expect("the conflict says what to do");
    shell.expect("(Conflict)").expect("the conflict's code");
    shell.expect(prompt.as_str()).expect("the plain prompt after a conflict");
    assert_eq!(other_client(&endpoint, "get repl/conflict"), "theirs");

    // A Lua block goes on at the continuation prompt until its end.
    shell.send_line("lua n=4").expect("open a block");
    shell.expect("...> ").expect("continuation prompt");
    shell.send_line("  local x = kahuna.args.n * 10").expect("block line");
    shell.expect("...> ").expect("continuation prompt");
    shell.send_line("  return { answer = x + 2 }").expect("block line");
    shell.expect("...> ").expect("continuation prompt");
    shell.send_line("end").expect("close the block");
    shell.expect("answer  42").expect("the block ran and printed a table");
    shell.expect(prompt.as_str()).expect("prompt after the block");
    // So does an eval whose chunk is incomplete.
    shell.send_line("eval for i = 1, 3 do").expect("open an eval");
    shell.expect("...> ").expect("continuation prompt");
    shell.send_line("end return 'looped'").expect("close it");
    shell.expect("\"looped\"").expect("the eval ran");
    shell.expect(prompt.as_str()).expect("prompt after eval");

    // Ctrl-D with an open transaction rolls it back and says so.
    step(&mut shell, "begin", "begun transaction", &txn_prompt);
    step(&mut shell, "set repl/txn abandoned", "OK (buffered until commit", &txn_prompt);
    shell.send(ControlCode::EndOfTransmission).expect("send Ctrl-D");
    shell.expect("rolled back").expect("the open transaction is rolled back");
    leave_after_eof(shell);
    assert_eq!(other_client(&endpoint, "get repl/txn"), "committed");

    // An endpoint that does not answer is reported, and the next one takes the call.
    let dead = format!("127.0.0.1:{}", free_port());
    let (mut shell, _) = start_shell_with(&format!("{dead},{endpoint}"), &dead, home.path());
    shell.send_line("get repl/txn").expect("send get");
    shell.expect(format!("connection to {dead} lost (unavailable: ").as_str()).expect("the failover notice");
    shell.expect(format!("); trying {endpoint} in ").as_str()).expect("the failover notice names the next endpoint");
    shell.expect(" ms (attempt 2 of 5)").expect("the failover notice counts the attempts");
    shell.expect("\"committed\"").expect("the next endpoint answered");
    shell.expect(prompt.as_str()).expect("the prompt names the endpoint in use");
    leave(shell);
}

/// Waits for the shell to end after Ctrl-D was sent, and checks its exit code is 0.
fn leave_after_eof(mut shell: Shell) {
    shell.expect(Eof).expect("the shell leaves on Ctrl-D");
    match shell.get_process().wait().expect("wait for the shell") {
        WaitStatus::Exited(_, code) => assert_eq!(code, 0, "exit code after Ctrl-D"),
        other => panic!("the shell did not exit normally: {other:?}"),
    }
}

#[tokio::test]
async fn repl_retries_are_told_when_the_only_endpoint_dies() {
    let mut cluster = Cluster::start(1, 1, &[]).await;
    let endpoint = cluster.nodes[0].address.clone();
    let home = tempfile::tempdir().expect("temporary HOME");
    let (mut shell, prompt) = start_shell(&endpoint, home.path());
    let txn_prompt = format!("kahuna {endpoint} txn ");
    step(&mut shell, "set repl/retry before", "OK (revision", &prompt);
    step(&mut shell, "begin", "begun transaction", &txn_prompt);

    cluster.node(1).kill();

    // In the transaction: its node is unreachable and the transaction stays on it; each
    // retry is told, then the error, and the transaction is still open.
    shell.send_line("get repl/retry").expect("send get");
    for attempt in 2..=5 {
        shell.expect(format!("the transaction's node {endpoint} is unreachable (").as_str()).expect("pinned notice");
        shell.expect("the transaction stays on it, retrying in ").expect("the notice does not claim another endpoint");
        shell.expect(format!(" ms (attempt {attempt} of 5)").as_str()).expect("the attempt");
    }
    shell.expect(format!("(at http://{endpoint}, after 5 attempts)").as_str()).expect("the final error");
    shell.expect(txn_prompt.as_str()).expect("the transaction prompt after the error");
    // Rollback cannot reach the node either: told, and the transaction is abandoned.
    shell.send_line("rollback").expect("send rollback");
    shell.expect("the transaction stays on it, retrying in ").expect("rollback is retried on the node");
    shell.expect("abandoned").expect("the transaction is abandoned");
    shell.expect(prompt.as_str()).expect("the plain prompt after the rollback");

    // Outside a transaction: the connection is lost, retried on the same endpoint with
    // each retry told, then the error; the shell carries on.
    shell.send_line("get repl/retry").expect("send get");
    for attempt in 2..=5 {
        shell.expect(format!("connection to {endpoint} lost (unavailable: ").as_str()).expect("the retry notice");
        shell.expect("); retrying in ").expect("the pause");
        shell.expect(format!(" ms (attempt {attempt} of 5)").as_str()).expect("the attempt");
    }
    shell.expect(format!("(at http://{endpoint}, after 5 attempts) (Unavailable)").as_str()).expect("the final error");
    shell.expect(prompt.as_str()).expect("the prompt after the error");
    step(&mut shell, "help get", "Example:", &prompt);

    // The node comes back: the same shell reaches it again.
    cluster.node(1).start();
    cluster.wait_ready(Duration::from_secs(30)).await;
    step(&mut shell, "get repl/retry", "\"before\"", &prompt);
    leave(shell);
}
