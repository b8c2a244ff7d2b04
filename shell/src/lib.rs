//! Kahuna's shell: the interactive REPL and the non-interactive runner behind
//! `kahuna shell`.
//!
//! The root binary parses [`ShellArgs`] (a `clap::Args`) and calls [`run`]. With `-c`,
//! `-f`, or when stdin is not a terminal, the commands run as a script: parsed whole
//! first (Lua chunks compiled, `begin` ... `commit` pairs checked), then run in order,
//! stopping at the first failure and rolling back a transaction it was in. Exit codes: 0
//! all succeeded, 1 a command failed, 2 the script does not parse (nothing ran) or the
//! shell cannot start. Otherwise a rustyline REPL starts, with history in
//! `~/.kahuna_history`.
//!
//! Beside the single-key commands: `begin [timeout MS]` ... `commit` / `rollback` for an
//! interactive transaction, and Lua run on the server: `eval CHUNK`, `lua [ARGS]` blocks
//! that end with their `end`, and `run FILE [ARGS]`.
//!
//! Output formats (`--format`): `table` for people (errors on stderr), `json` with exactly
//! one document per command on stdout (errors too, as `{"error":{"code","message"}}`),
//! `raw` with bare values for pipes (errors on stderr). See `help` in the shell for the
//! command vocabulary.
//!
//! Modules (private):
//! - `args`: the command-line flags.
//! - `lex`: statements and words: quotes, escapes, `;`, comments, raw Lua chunks.
//! - `lua`: the local compile check that finds where a Lua chunk ends, script error lines.
//! - `parse`: words to a `Command`, with every check that needs no server.
//! - `exec`: runs a `Command` with the client, giving an `Outcome`; holds the open
//!   transaction.
//! - `format`: table, JSON and raw rendering of outcomes and errors.
//! - `help`: the command reference, shared by `help`, error messages, completion and hints.
//! - `hints`: argument hints in the REPL, from the `help` table.
//! - `colour`: syntax highlighting in the REPL (terminals only).
//! - `runner`: scripts, and the notices on stderr (a retry, a rollback). `repl`: the
//!   interactive loop. `error`: `ShellError`.
#![warn(missing_docs)]

mod args;
mod colour;
mod error;
mod exec;
mod format;
mod help;
mod hints;
mod lex;
mod lua;
mod parse;
mod repl;
mod runner;

use std::io::{IsTerminal, Read};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use kahuna_client::Client;

pub use args::{Format, ShellArgs};

/// Largest script `-f` or stdin may hold.
pub const SCRIPT_BYTES_MAX: u64 = 16 * 1024 * 1024;

/// Runs `kahuna shell`: a script when `-c`/`-f` is given or stdin is not a terminal,
/// otherwise the REPL. Returns the exit code (see the crate docs); problems are printed
/// before returning, so `Err` is only for failures of the terminal itself.
///
/// # Cancel safety
///
/// Dropping the future abandons the script command in flight (a write may or may not
/// have been applied) and runs nothing after it. The interactive REPL runs on a blocking
/// thread, which a dropped future cannot stop: it ends at the next Ctrl-D or `exit`.
pub async fn run(args: ShellArgs) -> anyhow::Result<ExitCode> {
    let endpoints = args.endpoints.iter().map(|e| e.trim()).filter(|e| !e.is_empty());
    let client =
        Client::builder(endpoints).timeout(Duration::from_millis(args.timeout_ms)).on_retry(runner::note_retry).build();
    let client = match client {
        Ok(client) => client,
        Err(e) => {
            eprintln!("kahuna shell: {e}");
            return Ok(ExitCode::from(runner::EXIT_USAGE));
        }
    };
    let source = if let Some(command) = args.command {
        Some(command)
    } else if args.file.is_some() || !std::io::stdin().is_terminal() {
        let file = args.file.clone();
        match tokio::task::spawn_blocking(move || read_script(file.as_deref())).await? {
            Ok(source) => Some(source),
            Err(message) => {
                eprintln!("kahuna shell: {message}");
                return Ok(ExitCode::from(runner::EXIT_USAGE));
            }
        }
    } else {
        None
    };
    match source {
        Some(source) => {
            // `run` in a script file finds relative Lua files beside the script.
            let base_dir = args
                .file
                .as_deref()
                .filter(|path| *path != Path::new("-"))
                .map(|path| path.parent().unwrap_or(Path::new("")).to_owned());
            Ok(runner::run(&client, &source, args.format, base_dir.as_deref()).await)
        }
        None => {
            let handle = tokio::runtime::Handle::current();
            let format = args.format;
            tokio::task::spawn_blocking(move || repl::run(client, format, handle)).await?
        }
    }
}

/// Reads a script from `path` (`-` or none: stdin), at most `SCRIPT_BYTES_MAX` bytes of
/// UTF-8.
fn read_script(path: Option<&Path>) -> Result<String, String> {
    let (name, reader): (String, Box<dyn Read>) = match path {
        Some(path) if path != Path::new("-") => {
            let file = std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            (path.display().to_string(), Box::new(file))
        }
        _ => ("stdin".to_owned(), Box::new(std::io::stdin())),
    };
    let mut bytes = Vec::new();
    reader.take(SCRIPT_BYTES_MAX + 1).read_to_end(&mut bytes).map_err(|e| format!("cannot read {name}: {e}"))?;
    if bytes.len() as u64 > SCRIPT_BYTES_MAX {
        return Err(format!("{name} is larger than {SCRIPT_BYTES_MAX} bytes"));
    }
    String::from_utf8(bytes).map_err(|_| format!("{name} is not UTF-8 (use \\xHH escapes for binary values)"))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn scripts_read_from_files() {
        let dir = std::env::temp_dir().join(format!("kahuna-shell-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let good: PathBuf = dir.join("good.kahuna");
        std::fs::write(&good, "set a 1\n").expect("write");
        assert_eq!(read_script(Some(&good)).as_deref(), Ok("set a 1\n"));
        let binary = dir.join("binary.kahuna");
        std::fs::write(&binary, b"set a \xff\n").expect("write");
        assert!(read_script(Some(&binary)).is_err_and(|e| e.contains("not UTF-8")));
        assert!(read_script(Some(&dir.join("missing"))).is_err_and(|e| e.contains("cannot read")));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
