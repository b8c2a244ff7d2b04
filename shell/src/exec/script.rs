//! `eval`, `lua` blocks and `run`: Lua scripts run on the server, each as a transaction.
//!
//! Errors keep the server's message and add the script line it names, as the user typed
//! it: for `run`, `FILE:N:` replaces `script:N:` and the file's line is shown under the
//! error; for a multi-line chunk the input line is shown.

use std::io::Read;
use std::path::Path;

use kahuna_client::{Client, Error, ScriptArgs};

use super::Outcome;
use crate::SCRIPT_BYTES_MAX;
use crate::error::ShellError;
use crate::lex::LuaChunk;
use crate::lua::{self, Check};
use crate::parse::lua_detail;

/// Runs an `eval` chunk or a `lua` block.
///
/// # Cancel safety
///
/// Dropping the future leaves the run to the node: it may commit or not.
pub async fn eval(client: &Client, chunk: LuaChunk, args: ScriptArgs) -> Result<Outcome, ShellError> {
    match client.eval(&chunk.source, &args).await {
        Ok(result) => Ok(Outcome::Script(result)),
        Err(error) => {
            let mut shell_error = script_error(error);
            shell_error.detail = lua_detail(&chunk, &shell_error.message);
            Err(shell_error)
        }
    }
}

/// Runs the Lua file at `path` (`shown` is the path as typed, for messages).
///
/// # Cancel safety
///
/// As for [`eval`].
pub async fn run_file(client: &Client, path: &Path, shown: &Path, args: ScriptArgs) -> Result<Outcome, ShellError> {
    let file = path.to_owned();
    let source = tokio::task::spawn_blocking(move || read_lua(&file))
        .await
        .map_err(|e| ShellError::new("Internal", format!("run: reading the file failed: {e}")))?
        .map_err(|message| ShellError::invalid(format!("run: {message}")))?;
    let name = shown.display().to_string();
    let in_file = |error: ShellError| {
        let detail = lua::error_line(&error.message)
            .and_then(|line| lua::source_line(&source, line).map(|text| format!("{line} | {text}")));
        ShellError { message: lua::rename_chunk(&error.message, &name), detail, ..error }
    };
    // Compiled here first so a syntax error names the file even when the server's
    // message would not.
    if let Check::Incomplete(message) | Check::Invalid(message) = lua::check(&source) {
        return Err(in_file(ShellError::new("ScriptSyntax", format!("syntax error: {message}"))));
    }
    match client.eval(&source, &args).await {
        Ok(result) => Ok(Outcome::Script(result)),
        Err(error) => Err(in_file(script_error(error))),
    }
}

/// Reads a Lua file: UTF-8, at most `SCRIPT_BYTES_MAX` bytes.
fn read_lua(path: &Path) -> Result<String, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(SCRIPT_BYTES_MAX + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if bytes.len() as u64 > SCRIPT_BYTES_MAX {
        return Err(format!("{} is larger than {SCRIPT_BYTES_MAX} bytes", path.display()));
    }
    String::from_utf8(bytes).map_err(|_| format!("{} is not UTF-8", path.display()))
}

/// Converts a failed run, saying what a lost answer means for a script: the client never
/// repeats a run that may have reached a node, so it may have committed. (A connection
/// that was refused outright, tonic's "Service was not ready", surely sent nothing.)
fn script_error(error: Error) -> ShellError {
    let outcome_unknown = match &error {
        Error::Timeout(_) => true,
        Error::Unavailable(message) => !message.starts_with("Service was not ready"),
        _ => false,
    };
    let mut shell_error = ShellError::from(error);
    if outcome_unknown {
        shell_error.message.push_str("; the script may or may not have committed");
    }
    shell_error
}
