//! The interactive shell driven through a pseudo-terminal: a visible error for a bad
//! command, tab completion of a command and of a key, Ctrl-D leaving with exit code 0,
//! history recalled with the Up arrow after a restart (HOME is a temporary directory, so
//! the history goes there), the transaction prompt with commit, rollback, a conflict and
//! Ctrl-D, a multi-line Lua block at the continuation prompt, and the notice when the
//! client moves past an endpoint that does not answer. Only output is matched, never
//! timing.

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

    // Tab completes a unique command prefix; the completed command then runs.
    shell.send("get-lo").expect("type prefix");
    shell.send("\t").expect("press Tab");
    shell.expect("get-lock").expect("the completed command is shown");
    shell.send_line(" repl/no-such-lock").expect("finish the line");
    shell.expect("(free; last token 0").expect("the completed command ran");
    shell.expect(prompt.as_str()).expect("prompt after get-lock");

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

#[tokio::test]
async fn repl_transactions_lua_blocks_key_completion_and_failover() {
    let cluster = Cluster::start(1, 1, &[]).await;
    let endpoint = cluster.nodes[0].address.clone();
    let home = tempfile::tempdir().expect("temporary HOME");
    other_client(&endpoint, "set repl/completion-key-one 17; set repl/txn before; set repl/conflict before");

    let (mut shell, prompt) = start_shell(&endpoint, home.path());
    let txn_prompt = format!("kahuna {endpoint} txn ");

    // Tab completes a key from the server by its prefix.
    shell.send("get repl/completion-k").expect("type a key prefix");
    shell.send("\t").expect("press Tab");
    shell.expect("repl/completion-key-one").expect("the key is completed");
    shell.send_line("").expect("press Enter");
    shell.expect("\"17\"").expect("the completed key was read");
    shell.expect(prompt.as_str()).expect("prompt after get");

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
    shell.expect(format!("connection to {dead} lost; trying {endpoint}").as_str()).expect("the failover notice");
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
