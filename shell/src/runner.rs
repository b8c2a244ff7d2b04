//! The non-interactive runner: `-c`, `-f` and stdin scripts.
//!
//! The whole script is split and parsed before anything runs, so a syntax error on the
//! last line runs nothing (exit 2). Commands then run in order; the first failed command
//! stops the script (exit 1). `exit` stops it successfully.

use std::io::{self, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use kahuna_client::Client;

use crate::args::Format;
use crate::error::ShellError;
use crate::exec::{self, Outcome};
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
        match parse::parse(&statement.words) {
            Ok(command) => commands.push((statement.line, command)),
            Err(e) => errors.push(at_line(ShellError::from(e), statement.line, multi_line)),
        }
    }
    if errors.is_empty() { Ok(commands) } else { Err(errors) }
}

/// Runs `source` as a script and returns the process exit code.
pub async fn run(client: &Client, source: &str, format: Format) -> ExitCode {
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
    for (line, command) in commands {
        let started = Instant::now();
        let result = exec::execute(client, &mut session, command).await;
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
        let written = written.and_then(|()| emit_latency(&session, &result, elapsed, format));
        match (written, result) {
            // A closed pipe (`| head`) means nobody reads on: stop quietly.
            (Err(e), _) if e.kind() == io::ErrorKind::BrokenPipe => return ExitCode::from(EXIT_OK),
            (Err(_), _) | (_, Err(_)) => return ExitCode::from(EXIT_FAILED),
            (Ok(()), Ok(_)) => {}
        }
    }
    ExitCode::from(EXIT_OK)
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
        assert_eq!(run(&client, "set a 1; nx", Format::Json).await, ExitCode::from(EXIT_USAGE));
        assert_eq!(run(&client, "help set; exit; get a", Format::Raw).await, ExitCode::from(EXIT_OK));
        assert_eq!(run(&client, "help nosuch", Format::Raw).await, ExitCode::from(EXIT_FAILED));
    }
}
