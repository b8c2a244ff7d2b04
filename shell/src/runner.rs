//! The non-interactive runner: `-c`, `-f` and stdin scripts.
//!
//! The whole script is split and parsed before anything runs, so a syntax error on the
//! last line runs nothing (exit 2). Lua chunks are compiled then too, and transactions
//! checked: every `begin` has its `commit` or `rollback`, and only commands that run in a
//! transaction stand between them. Commands then run in order; the first failed command
//! stops the script (exit 1), rolling back a transaction it was in. `exit` stops it
//! successfully.
//!
//! Here too: the client's retry hook, [`note_retry`], which tells on stderr of every
//! retry of a command the user gave (in scripts and in the REPL), as it happens.

use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use kahuna_client::{Client, Error, RetryEvent};

use crate::args::Format;
use crate::error::ShellError;
use crate::exec::{self, Outcome, Rollback};
use crate::format::{self, Stream};
use crate::lex;
use crate::parse::{self, Command};

/// Exit code when every command succeeded.
pub const EXIT_OK: u8 = 0;
/// Exit code when a command failed.
pub const EXIT_FAILED: u8 = 1;
/// Exit code when the script does not parse or the shell cannot start.
pub const EXIT_USAGE: u8 = 2;

/// Parses all of `source`; returns the commands with their lines, or every error found.
pub fn parse_script(source: &str) -> Result<Vec<(usize, Command)>, Vec<ShellError>> {
    let statements = lex::split(source).map_err(|e| vec![ShellError::from(e)])?;
    let multi_line = source.trim_end().contains('\n');
    let mut commands = Vec::with_capacity(statements.len());
    let mut errors = Vec::new();
    for statement in statements {
        match parse::parse_statement(&statement) {
            Ok(command) => commands.push((statement.line, command)),
            Err(e) => {
                errors.push(at_line(ShellError::from(e), statement.line, multi_line));
                // A Lua block with a syntax error ends early, and the rest of its lines
                // would read as a cascade of bogus commands.
                if statement.lua.is_some() {
                    break;
                }
            }
        }
    }
    if errors.is_empty() {
        errors = check_transactions(&commands)
            .into_iter()
            .map(|(line, message)| at_line(ShellError::invalid(message), line, multi_line))
            .collect();
    }
    if errors.is_empty() { Ok(commands) } else { Err(errors) }
}

/// Checks that every `begin` is ended by `commit` or `rollback` before the script ends,
/// with no `begin`, `exit` or command that cannot run in a transaction between them;
/// returns the problems with their lines. A script has no branches, so this is known
/// before anything runs.
fn check_transactions(commands: &[(usize, Command)]) -> Vec<(usize, String)> {
    let mut errors = Vec::new();
    let mut open: Option<usize> = None;
    for (line, command) in commands {
        match (command, open) {
            (Command::Begin { .. }, Some(begun)) => errors
                .push((*line, format!("begin inside the transaction begun on line {begun}; commit or rollback first"))),
            (Command::Begin { .. }, None) => open = Some(*line),
            (Command::Commit | Command::Rollback, None) => {
                errors.push((*line, "commit or rollback without an open transaction; begin one first".to_owned()));
            }
            (Command::Commit | Command::Rollback, Some(_)) => open = None,
            (Command::Exit, Some(begun)) => errors
                .push((*line, format!("exit inside the transaction begun on line {begun}; commit or rollback first"))),
            (command, Some(begun)) => {
                if let Some(reason) = command.refused_in_transaction() {
                    errors.push((*line, format!("{reason} (the transaction was begun on line {begun})")));
                }
            }
            (_, None) => {}
        }
    }
    if let Some(begun) = open {
        errors.push((begun, "this begin has no commit or rollback; end the transaction in the script".to_owned()));
    }
    errors
}

/// Runs `source` as a script and returns the process exit code. Relative `run` paths
/// start from `base_dir` (a `-f` script's directory), else the current directory.
pub async fn run(client: &Client, source: &str, format: Format, base_dir: Option<&Path>) -> ExitCode {
    let commands = match parse_script(source) {
        Ok(commands) => commands,
        Err(errors) => {
            for error in &errors {
                let (bytes, stream) = format::render_error(error, format);
                if emit(&bytes, stream).is_err() {
                    break;
                }
            }
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let multi_line = source.trim_end().contains('\n');
    let mut session = exec::Session::new();
    if let Some(dir) = base_dir {
        session = session.with_base_dir(dir.to_owned());
    }
    let code = run_commands(client, &mut session, commands, format, multi_line).await;
    if let Some((id, rollback)) = session.abandon_txn().await {
        note_rollback(&id, &rollback);
        return ExitCode::from(EXIT_FAILED);
    }
    code
}

/// Runs parsed commands in order until one fails.
async fn run_commands(
    client: &Client,
    session: &mut exec::Session,
    commands: Vec<(usize, Command)>,
    format: Format,
    multi_line: bool,
) -> ExitCode {
    for (line, command) in commands {
        let started = Instant::now();
        let result = execute_telling_retries(client, session, command).await;
        let elapsed = started.elapsed();
        let written = match &result {
            Ok(Outcome::Exit) => return ExitCode::from(EXIT_OK),
            Ok(outcome) => emit(&format::render(outcome, format), Stream::Stdout),
            Err(error) => {
                let error = at_line(error.clone(), line, multi_line);
                let (bytes, stream) = format::render_error(&error, format);
                emit(&bytes, stream)
            }
        };
        let written = written.and_then(|()| emit_latency(session, &result, elapsed, format));
        match (written, result) {
            // A closed pipe (`| head`) means nobody reads on: stop quietly.
            (Err(e), _) if e.kind() == io::ErrorKind::BrokenPipe => return ExitCode::from(EXIT_OK),
            (Err(_), _) | (_, Err(_)) => return ExitCode::from(EXIT_FAILED),
            (Ok(()), Ok(_)) => {}
        }
    }
    ExitCode::from(EXIT_OK)
}

tokio::task_local! {
    /// Set while a command the user gave runs: [`note_retry`] tells only of its retries,
    /// not of those of tab completion, which would land in the line being edited.
    static TELLING_RETRIES: ();
}

/// Runs `command` as [`exec::execute`] does, telling on stderr of each retry of its calls
/// (see [`note_retry`]).
///
/// # Cancel safety
///
/// As for [`exec::execute`].
pub async fn execute_telling_retries(
    client: &Client,
    session: &mut exec::Session,
    command: Command,
) -> Result<Outcome, ShellError> {
    TELLING_RETRIES.scope((), exec::execute(client, session, command)).await
}

/// The client's retry hook (see `ClientBuilder::on_retry`): tells on stderr, as it
/// happens, that a call of a running command failed and is tried again, where and when.
/// Calls made outside [`execute_telling_retries`] are not told.
pub fn note_retry(event: &RetryEvent<'_>) {
    if TELLING_RETRIES.try_with(|()| ()).is_ok() {
        let text = retry_notice(
            event.failed_endpoint,
            event.error,
            event.next_endpoint,
            event.pinned,
            event.backoff,
            (event.attempt, event.attempts_max),
        );
        let _ = emit(text.as_bytes(), Stream::Stderr);
    }
}

/// The line [`note_retry`] prints: the call to `failed` ended with `error`; attempt
/// `attempts.0` of at most `attempts.1` goes to `next` after `backoff`. A `pinned` call
/// (an open transaction's) stays on its node, whose endpoint `failed` is.
fn retry_notice(
    failed: &str,
    error: &Error,
    next: &str,
    pinned: bool,
    backoff: Duration,
    (attempt, attempts_max): (u32, u32),
) -> String {
    let strip = |e: &'static str, endpoint: &str| endpoint.strip_prefix(e).unwrap_or(endpoint).to_owned();
    let (failed, next) = (strip("http://", failed), strip("http://", next));
    let then = format!("in {} ms (attempt {attempt} of {attempts_max})", backoff.as_millis());
    let lost = matches!(error, Error::Unavailable(_) | Error::Timeout(_));
    if !lost {
        format!("{failed} answered ({error}); retrying {then}\n")
    } else if pinned {
        format!(
            "the transaction's node {failed} is unreachable ({error}); the transaction stays on it, retrying {then}\n"
        )
    } else if failed == next {
        format!("connection to {failed} lost ({error}); retrying {then}\n")
    } else {
        format!("connection to {failed} lost ({error}); trying {next} {then}\n")
    }
}

/// Tells on stderr what became of a transaction the shell had to abandon.
pub fn note_rollback(id: &str, rollback: &Rollback) {
    let text = match rollback {
        Rollback::Done => format!("transaction {id} rolled back; nothing it wrote was committed\n"),
        Rollback::AlreadyEnded => format!("transaction {id} had already ended; nothing it wrote was committed\n"),
        Rollback::Unreachable(error) => format!(
            "transaction {id} abandoned ({error}); its node rolls it back when its timeout passes; nothing it \
             wrote was committed\n"
        ),
    };
    let _ = emit(text.as_bytes(), Stream::Stderr);
}

/// Prints the command's latency when `timing on` is in effect (not for `timing` itself).
pub fn emit_latency(
    session: &exec::Session,
    result: &Result<Outcome, ShellError>,
    elapsed: Duration,
    format: Format,
) -> io::Result<()> {
    if !session.timing() || matches!(result, Ok(Outcome::Timing(_) | Outcome::Exit)) {
        return Ok(());
    }
    let (bytes, stream) = format::render_latency(elapsed, format);
    emit(&bytes, stream)
}

/// Prefixes the message with its line when the script has several lines.
fn at_line(mut error: ShellError, line: usize, multi_line: bool) -> ShellError {
    if multi_line {
        error.message = format!("line {line}: {}", error.message);
    }
    error
}

/// Writes `bytes` to `stream` and flushes, so output appears command by command.
pub fn emit(bytes: &[u8], stream: Stream) -> io::Result<()> {
    if bytes.is_empty() {
        return Ok(());
    }
    match stream {
        Stream::Stdout => {
            let mut out = io::stdout().lock();
            out.write_all(bytes)?;
            out.flush()
        }
        Stream::Stderr => {
            let mut out = io::stderr().lock();
            out.write_all(bytes)?;
            out.flush()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_notices_say_where_the_next_attempt_goes() {
        let down = Error::Unavailable("tcp connect error".to_owned());
        let a = "http://127.0.0.1:2070";
        let pause = Duration::from_millis(40);
        assert_eq!(
            retry_notice(a, &down, a, false, pause, (2, 5)),
            "connection to 127.0.0.1:2070 lost (unavailable: tcp connect error); retrying in 40 ms (attempt 2 of 5)\n"
        );
        assert_eq!(
            retry_notice(a, &down, "http://127.0.0.1:2071", false, pause, (3, 5)),
            "connection to 127.0.0.1:2070 lost (unavailable: tcp connect error); trying 127.0.0.1:2071 in 40 ms \
             (attempt 3 of 5)\n"
        );
        // An open transaction's calls never move: the notice does not claim they do.
        let notice = retry_notice(a, &down, a, true, pause, (2, 5));
        assert_eq!(
            notice,
            "the transaction's node 127.0.0.1:2070 is unreachable (unavailable: tcp connect error); the \
             transaction stays on it, retrying in 40 ms (attempt 2 of 5)\n"
        );
        let locked = Error::Locked("key k is held".to_owned());
        assert_eq!(
            retry_notice(a, &locked, a, true, pause, (2, 3)),
            "127.0.0.1:2070 answered (locked: key k is held); retrying in 40 ms (attempt 2 of 3)\n"
        );
    }

    #[tokio::test]
    async fn retries_are_told_only_inside_a_command() {
        // The hook is called either way; it prints only inside `execute_telling_retries`,
        // which this checks by the scope it sees.
        assert!(TELLING_RETRIES.try_with(|()| ()).is_err());
        let inside = TELLING_RETRIES.scope((), async { TELLING_RETRIES.try_with(|()| ()).is_ok() }).await;
        assert!(inside);
        let spawned = TELLING_RETRIES
            .scope((), async { tokio::spawn(async { TELLING_RETRIES.try_with(|()| ()).is_ok() }).await })
            .await
            .expect("the task ran");
        assert!(!spawned, "the client's background tasks are not the command's");
    }

    #[test]
    fn scripts_parse_whole_before_running() {
        let commands = parse_script("# setup\nset a 1; set b 2\n\nget a # check\n").expect("valid script");
        assert_eq!(commands.iter().map(|(line, _)| *line).collect::<Vec<_>>(), [2, 2, 4]);
        let errors = parse_script("set a 1\nbogus\nset b\n").expect_err("two bad lines");
        assert_eq!(errors.len(), 2);
        assert!(errors[0].message.starts_with("line 2: unknown command"), "{}", errors[0].message);
        assert!(errors[1].message.starts_with("line 3: set: missing VALUE"), "{}", errors[1].message);
        assert!(errors.iter().all(|e| e.code == "InvalidInput"));
    }

    #[test]
    fn one_line_scripts_have_no_line_prefix() {
        let errors = parse_script("get").expect_err("missing key");
        assert!(errors[0].message.starts_with("get: missing KEY"), "{}", errors[0].message);
        let errors = parse_script("set k \"open").expect_err("unterminated");
        assert!(errors[0].message.contains("never closed"));
    }

    #[test]
    fn empty_scripts_do_nothing() {
        assert_eq!(parse_script("").map(|c| c.len()), Ok(0));
        assert_eq!(parse_script("  # only a comment\n;;\n").map(|c| c.len()), Ok(0));
    }

    #[tokio::test]
    async fn bad_scripts_exit_2_without_a_server_and_exit_stops() {
        let client = Client::builder(["127.0.0.1:9"]).retries(0).build().expect("valid endpoint");
        assert_eq!(run(&client, "set a 1; nx", Format::Json, None).await, ExitCode::from(EXIT_USAGE));
        assert_eq!(run(&client, "help set; exit; get a", Format::Raw, None).await, ExitCode::from(EXIT_OK));
        assert_eq!(run(&client, "help nosuch", Format::Raw, None).await, ExitCode::from(EXIT_FAILED));
        assert_eq!(run(&client, "eval return (", Format::Raw, None).await, ExitCode::from(EXIT_USAGE));
        assert_eq!(run(&client, "begin; lock x 5; commit", Format::Raw, None).await, ExitCode::from(EXIT_USAGE));
    }

    fn errors(source: &str) -> Vec<String> {
        parse_script(source).expect_err("the script is refused").into_iter().map(|e| e.message).collect()
    }

    #[test]
    fn transactions_are_checked_before_anything_runs() {
        assert!(parse_script("begin\nset a 1\nget a\nscan by prefix a\ncommit\nbegin timeout 5\nrollback").is_ok());
        assert_eq!(
            errors("begin\nset a 1"),
            ["line 1: this begin has no commit or rollback; end the transaction in the script"]
        );
        assert_eq!(errors("commit"), ["commit or rollback without an open transaction; begin one first"]);
        let nested = errors("begin\nbegin\ncommit\ncommit");
        assert!(nested[0].starts_with("line 2: begin inside the transaction begun on line 1"), "{nested:?}");
        assert!(nested[1].starts_with("line 4: commit or rollback without"), "{nested:?}");
        let refused = errors("begin\neset a 1\nlock r 5\nmget a b\nstatus\neval return 1\nexit\ncommit");
        assert_eq!(refused.len(), 6, "{refused:?}");
        assert!(refused[0].starts_with("line 2: eset uses the ephemeral keyspace"), "{refused:?}");
        assert!(refused[1].starts_with("line 3: a lock command cannot run inside a transaction"), "{refused:?}");
        assert!(refused[1].ends_with("(the transaction was begun on line 1)"), "{refused:?}");
        assert!(refused[5].starts_with("line 7: exit inside the transaction"), "{refused:?}");
    }

    #[test]
    fn lua_chunks_are_compiled_before_anything_runs() {
        let commands =
            parse_script("lua n=5 'x'\n  local n = kahuna.args.n\n  return n\nend\neval return 1").expect("valid");
        assert_eq!(commands.iter().map(|(line, _)| *line).collect::<Vec<_>>(), [1, 5]);
        let Command::Eval { chunk, args } = &commands[0].1 else { panic!("not a lua block") };
        assert_eq!(chunk.source, "do\n  local n = kahuna.args.n\n  return n\nend");
        assert_eq!(args.named.get("n"), Some(&kahuna_client::ScriptValue::Integer(5)));
        assert_eq!(args.positional, [kahuna_client::ScriptValue::from("x")]);
        let errors =
            parse_script("get a\nlua\n  local x = 1\n  local = 2\n  return x\nend\nget b").expect_err("bad Lua");
        assert_eq!(errors.len(), 1, "no cascade after a bad block: {errors:?}");
        assert!(errors[0].message.starts_with("line 2: lua: Lua syntax error: script:3:"), "{}", errors[0].message);
        assert_eq!(errors[0].detail.as_deref(), Some("4 | local = 2"));
        let errors = parse_script("eval for i = 1, 2 do").expect_err("incomplete");
        assert!(errors[0].message.contains("never completed"), "{}", errors[0].message);
    }
}
