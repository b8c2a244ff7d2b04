//! The interactive shell driven through a pseudo-terminal: a visible error for a bad
//! command, tab completion of a command, Ctrl-D leaving with exit code 0, and history
//! recalled with the Up arrow after a restart (HOME is a temporary directory, so the
//! history goes there). Only output is matched, never timing.

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
    let mut command = Command::new(env!("CARGO_BIN_EXE_kahuna"));
    command
        .arg("shell")
        .args(["--endpoints", endpoint])
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
