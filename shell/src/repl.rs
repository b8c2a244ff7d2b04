//! The interactive shell: a rustyline REPL with history in `~/.kahuna_history`, tab
//! completion of commands, keys and file names, argument hints from the help table,
//! syntax highlighting on a terminal, and multi-line input while a quote is open.
//!
//! A Lua block (`lua` ... `end`, or an `eval` whose chunk is incomplete) goes on at a
//! `...> ` prompt until its chunk is complete; Ctrl-C or Ctrl-D there abandons it. While
//! a transaction is open the prompt shows it (`kahuna 127.0.0.1:2070 txn 1-…-7> `).
//!
//! It runs on a blocking thread (rustyline blocks) and drives each command on the tokio
//! runtime through a [`Handle`]. Ctrl-C clears the line being edited, or abandons the
//! command being run; Ctrl-D leaves, rolling back an open transaction. When a call of a
//! command fails at its endpoint and is retried, stderr says so as it happens: where,
//! why, after what pause, which attempt, and on which endpoint (an open transaction's
//! calls stay on its node). The prompt then names the endpoint in use.

use std::borrow::Cow;
use std::cell::Cell;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use kahuna_client::{Client, Consistency, Durability, ReadOptions, ScanOptions};
use rustyline::completion::{Completer, FilenameCompleter, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::{CmdKind, Highlighter};
use rustyline::hint::Hinter;
use rustyline::history::FileHistory;
use rustyline::validate::{ValidationContext, ValidationResult, Validator};
use rustyline::{CompletionType, Config, Context, Editor, Helper};
use tokio::runtime::Handle;

use crate::args::Format;
use crate::colour;
use crate::error::ShellError;
use crate::exec::{self, Outcome};
use crate::format::{self, Stream};
use crate::help;
use crate::hints;
use crate::lex::{self, LexError};
use crate::lua;
use crate::parse;
use crate::runner::{emit, emit_latency, execute_telling_retries, note_rollback};

/// File name of the history, in the user's home directory.
const HISTORY_FILE: &str = ".kahuna_history";
/// Most lines the history keeps.
const HISTORY_LINES_MAX: usize = 10_000;
/// Most keys one tab completion asks the server for.
const COMPLETION_KEYS_MAX: u32 = 50;
/// How long a tab completion waits for the server before offering nothing.
const COMPLETION_TIMEOUT_MS: u64 = 300;
/// Timeout of a `begin` without one: people type slower than programs, for whom the
/// node's default (5 s) is meant. The node's default maximum.
const TXN_TIMEOUT_MS_DEFAULT: u64 = 60_000;
/// Prompt of the lines that continue a Lua block.
const CONTINUATION_PROMPT: &str = "...> ";

/// Runs the REPL until Ctrl-D or `exit`.
pub fn run(client: Client, format: Format, handle: Handle) -> anyhow::Result<ExitCode> {
    let config = Config::builder()
        .max_history_size(HISTORY_LINES_MAX)?
        .history_ignore_dups(true)?
        .history_ignore_space(true)
        .auto_add_history(false)
        .completion_type(CompletionType::List)
        .build();
    let mut editor: Editor<ShellHelper, FileHistory> = Editor::with_config(config)?;
    editor.set_helper(Some(ShellHelper {
        client: client.clone(),
        handle: handle.clone(),
        colour: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        in_block: Cell::new(false),
        files: FilenameCompleter::new(),
    }));
    let history = history_path();
    if let Some(path) = &history {
        // A missing file is the normal first run; anything else is worth a word.
        if let Err(e) = editor.load_history(path)
            && path.exists()
        {
            eprintln!("warning: cannot read history {}: {e}", path.display());
        }
    }
    println!(
        "Kahuna shell, endpoints {}. Type help for commands, Ctrl-D to leave.",
        client.endpoints().iter().map(|e| endpoint_text(e)).collect::<Vec<_>>().join(", ")
    );
    let mut session = exec::Session::new().with_txn_timeout(Duration::from_millis(TXN_TIMEOUT_MS_DEFAULT));
    loop {
        let line = match editor.readline(&prompt(&client, &session)) {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e.into()),
        };
        if line.trim().is_empty() {
            continue;
        }
        if session.txn_id().is_some() && matches!(lex::split(&line), Err(LexError::IncompleteLua { .. })) {
            // Refused now rather than after the whole block is typed.
            print_error(&ShellError::invalid(parse::outside_transaction(parse::LUA_SCRIPT)), format);
            continue;
        }
        let Some(input) = read_block(&mut editor, line)? else {
            continue;
        };
        let _ = editor.add_history_entry(input.as_str());
        if let Some(path) = &history
            && let Err(e) = editor.append_history(path)
        {
            eprintln!("warning: cannot write history {}: {e}", path.display());
        }
        if run_line(&client, &mut session, &input, format, &handle) {
            break;
        }
    }
    if let Some((id, rollback)) = handle.block_on(session.abandon_txn()) {
        // Ctrl-D leaves the cursor after the prompt.
        eprintln!();
        note_rollback(&id, &rollback);
    }
    Ok(ExitCode::SUCCESS)
}

/// Returns the prompt: the endpoint, and the open transaction (whose endpoint every call
/// of it goes to).
fn prompt(client: &Client, session: &exec::Session) -> String {
    match (session.txn_id(), session.txn_endpoint()) {
        (Some(id), Some(endpoint)) => format!("kahuna {} txn {}> ", endpoint_text(endpoint), exec::short_id(id)),
        _ => format!("kahuna {}> ", endpoint_text(client.current_endpoint())),
    }
}

/// Completes `line` when it opens a Lua block: reads lines at the continuation prompt
/// until the chunk is complete. Returns `None` when the user abandons the block.
fn read_block(editor: &mut Editor<ShellHelper, FileHistory>, line: String) -> anyhow::Result<Option<String>> {
    let mut input = line;
    let mut lines = 1;
    while let Err(LexError::IncompleteLua { .. }) = lex::split(&input) {
        if lines >= lua::BLOCK_LINES_MAX {
            eprintln!("error: the Lua block is longer than {} lines; abandoned", lua::BLOCK_LINES_MAX);
            return Ok(None);
        }
        // Lua is not the shell's language: no command completion, hints or colours in it.
        set_in_block(editor, true);
        let next = editor.readline(CONTINUATION_PROMPT);
        set_in_block(editor, false);
        match next {
            Ok(next) => {
                input.push('\n');
                input.push_str(&next);
                lines += 1;
            }
            Err(ReadlineError::Interrupted | ReadlineError::Eof) => {
                eprintln!("(Lua block abandoned)");
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Some(input))
}

fn set_in_block(editor: &mut Editor<ShellHelper, FileHistory>, in_block: bool) {
    if let Some(helper) = editor.helper_mut() {
        helper.in_block.set(in_block);
    }
}

/// Runs every statement of one input line; returns true when the user asked to leave.
/// Errors are printed and do not stop the shell, but stop the rest of the line.
fn run_line(client: &Client, session: &mut exec::Session, line: &str, format: Format, handle: &Handle) -> bool {
    let statements = match lex::split(line) {
        Ok(statements) => statements,
        Err(e) => {
            print_error(&ShellError::from(e), format);
            return false;
        }
    };
    for statement in statements {
        let command = match parse::parse_statement(&statement) {
            Ok(command) => command,
            Err(e) => {
                print_error(&ShellError::from(e), format);
                return false;
            }
        };
        let started = Instant::now();
        let result = handle.block_on(async {
            tokio::select! {
                result = execute_telling_retries(client, session, command) => Some(result),
                () = ctrl_c() => None,
            }
        });
        let elapsed = started.elapsed();
        match result {
            Some(Ok(Outcome::Exit)) => return true,
            Some(Ok(outcome)) => {
                let _ = emit(&format::render(&outcome, format), Stream::Stdout);
                let _ = emit_latency(session, &Ok(outcome), elapsed, format);
            }
            Some(Err(error)) => {
                print_error(&error, format);
                let _ = emit_latency(session, &Err(error), elapsed, format);
                return false;
            }
            None => {
                print_error(
                    &ShellError::new("Interrupted", "interrupted; a write may or may not have been applied"),
                    format,
                );
                return false;
            }
        }
    }
    false
}

/// Completes on Ctrl-C; never, when the signal cannot be watched.
async fn ctrl_c() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

fn print_error(error: &ShellError, format: Format) {
    let (bytes, stream) = format::render_error(error, format);
    let _ = emit(&bytes, stream);
}

/// Returns `~/.kahuna_history`, or `None` without a home directory (no history then).
fn history_path() -> Option<PathBuf> {
    history_in(std::env::home_dir())
}

/// Returns the history file in `home`; `None` without a home. Never a temporary
/// directory: history outlives reboots.
fn history_in(home: Option<PathBuf>) -> Option<PathBuf> {
    home.filter(|home| !home.as_os_str().is_empty()).map(|home| home.join(HISTORY_FILE))
}

fn endpoint_text(endpoint: &str) -> &str {
    endpoint.strip_prefix("http://").unwrap_or(endpoint)
}

/// rustyline helper: completion, argument hints, highlighting and multi-line validation.
struct ShellHelper {
    client: Client,
    handle: Handle,
    /// Whether to colour the line and hints: stdout is a terminal and `NO_COLOR` unset.
    colour: bool,
    /// Whether the line being edited continues a Lua block: no shell help applies.
    in_block: Cell<bool>,
    /// Completes file names for `run`.
    files: FilenameCompleter,
}

impl ShellHelper {
    /// Asks the server for keys starting with `prefix`; empty on any error or delay.
    fn keys(&self, prefix: &str, durability: Durability) -> Vec<String> {
        let read = ReadOptions { durability, consistency: Consistency::Serializable };
        let scan = self.client.scan(prefix, ScanOptions::new().read(read).limit(COMPLETION_KEYS_MAX));
        let result = self
            .handle
            .block_on(async { tokio::time::timeout(Duration::from_millis(COMPLETION_TIMEOUT_MS), scan).await });
        match result {
            Ok(Ok(items)) => items.items.into_iter().map(|kv| kv.key).collect(),
            _ => Vec::new(),
        }
    }
}

/// What the word under the cursor is, from the words before it in its statement.
#[derive(Debug, PartialEq, Eq)]
enum Slot {
    /// A command name.
    Command,
    /// One of these fixed words.
    Words(&'static [&'static str]),
    /// A command's option words.
    Options(Vec<&'static str>),
    /// A key of this keyspace.
    Key(Durability),
    /// A file name.
    File,
    /// Nothing to offer.
    Nothing,
}

/// Decides what to complete after `before` (the statement's earlier words).
fn slot(before: &[&str]) -> Slot {
    let Some(first) = before.first() else {
        return Slot::Command;
    };
    let first = first.to_ascii_lowercase();
    if first == "help" || first == "?" {
        return if before.len() == 1 { Slot::Command } else { Slot::Nothing };
    }
    let Some(entry) = help::find(&first) else {
        return Slot::Nothing;
    };
    // `find` also takes a multi-word command's first word (`scan`) and aliases (`quit`):
    // only an `e` before the entry's own first word means the ephemeral keyspace.
    let entry_first = entry.name.split(' ').next().unwrap_or(entry.name);
    let ephemeral = entry.ephemeral_form && first.strip_prefix('e') == Some(entry_first);
    let durability = if ephemeral { Durability::Ephemeral } else { Durability::Persistent };
    let base = entry.name;
    let position = before.len();
    let by = |word: &str| before.get(1).is_some_and(|w| w.eq_ignore_ascii_case(word));
    match base {
        "get" if position == 2 && by("by") => Slot::Words(&["bucket"]),
        "get" if position == 1 => Slot::Key(durability),
        "scan by prefix" if position == 1 => Slot::Words(&["by"]),
        "scan by prefix" if position == 2 => Slot::Words(&["prefix"]),
        "scan by prefix" if position == 3 => Slot::Key(durability),
        "set" | "del" | "exists" | "extend" if position == 1 => Slot::Key(durability),
        "mget" | "mdel" => Slot::Key(durability),
        "mset" if position % 2 == 1 => Slot::Key(durability),
        "timing" if position == 1 => Slot::Words(&["on", "off"]),
        "begin" if position == 1 => Slot::Words(&["timeout"]),
        "run" if position == 1 => Slot::File,
        _ => match help::find(base).map(help::options) {
            Some((required, words)) if position >= required && !words.is_empty() => Slot::Options(words),
            _ => Slot::Nothing,
        },
    }
}

impl Completer for ShellHelper {
    type Candidate = Pair;

    fn complete(&self, line: &str, pos: usize, ctx: &Context<'_>) -> rustyline::Result<(usize, Vec<Pair>)> {
        if self.in_block.get() {
            return Ok((pos, Vec::new()));
        }
        let before = line.get(..pos).unwrap_or(line);
        let statement_start = before.rfind(';').map_or(0, |i| i + 1);
        let word_start = before
            .char_indices()
            .rev()
            .find(|(_, c)| c.is_whitespace() || *c == ';')
            .map_or(0, |(i, c)| i + c.len_utf8());
        let partial = &before[word_start..];
        let earlier: Vec<&str> = before[statement_start..word_start.max(statement_start)].split_whitespace().collect();
        let pair = |text: String| Pair { display: text.clone(), replacement: format!("{text} ") };
        let candidates: Vec<Pair> = match slot(&earlier) {
            Slot::Command => help::first_words()
                .into_iter()
                .filter(|w| w.starts_with(&partial.to_ascii_lowercase()))
                .map(pair)
                .collect(),
            Slot::Words(words) => words
                .iter()
                .filter(|w| w.starts_with(&partial.to_ascii_lowercase()))
                .map(|w| pair((*w).to_owned()))
                .collect(),
            Slot::Options(words) => words
                .into_iter()
                .filter(|w| w.starts_with(&partial.to_ascii_lowercase()))
                .map(|w| pair(w.to_owned()))
                .collect(),
            Slot::Key(_) if partial.starts_with(['"', '\'']) => Vec::new(),
            Slot::Key(durability) => {
                let mut keys: Vec<Pair> = self
                    .keys(partial, durability)
                    .into_iter()
                    .map(|key| Pair { display: key.clone(), replacement: lex::quote(&key) })
                    .collect();
                let is_get =
                    earlier.first().is_some_and(|w| w.eq_ignore_ascii_case("get") || w.eq_ignore_ascii_case("eget"));
                if is_get && !partial.is_empty() && "by".starts_with(partial) {
                    keys.push(pair("by".to_owned()));
                }
                keys
            }
            Slot::File => return self.files.complete(line, pos, ctx),
            Slot::Nothing => Vec::new(),
        };
        Ok((word_start, candidates))
    }
}

impl Hinter for ShellHelper {
    type Hint = String;

    fn hint(&self, line: &str, pos: usize, _ctx: &Context<'_>) -> Option<String> {
        if pos < line.len() || self.in_block.get() {
            return None;
        }
        hints::hint(line)
    }
}

impl Highlighter for ShellHelper {
    fn highlight<'l>(&self, line: &'l str, _pos: usize) -> Cow<'l, str> {
        if self.colour && !self.in_block.get() {
            Cow::Owned(colour::highlight(line, true))
        } else {
            Cow::Borrowed(line)
        }
    }

    fn highlight_hint<'h>(&self, hint: &'h str) -> Cow<'h, str> {
        if self.colour { Cow::Owned(format!("{}{hint}{}", colour::DIM, colour::RESET)) } else { Cow::Borrowed(hint) }
    }

    fn highlight_char(&self, _line: &str, _pos: usize, _kind: CmdKind) -> bool {
        self.colour && !self.in_block.get()
    }
}

impl Validator for ShellHelper {
    fn validate(&self, ctx: &mut ValidationContext<'_>) -> rustyline::Result<ValidationResult> {
        // Lua blocks go on at the continuation prompt instead (see `read_block`).
        if !self.in_block.get() && lex::is_incomplete(ctx.input()) {
            Ok(ValidationResult::Incomplete)
        } else {
            Ok(ValidationResult::Valid(None))
        }
    }
}

impl Helper for ShellHelper {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completion_slots() {
        assert_eq!(slot(&[]), Slot::Command);
        assert_eq!(slot(&["help"]), Slot::Command);
        assert_eq!(slot(&["get"]), Slot::Key(Durability::Persistent));
        assert_eq!(slot(&["EGET"]), Slot::Key(Durability::Ephemeral));
        assert_eq!(slot(&["get", "by"]), Slot::Words(&["bucket"]));
        assert_eq!(slot(&["scan"]), Slot::Words(&["by"]));
        assert_eq!(slot(&["scan", "by", "prefix"]), Slot::Key(Durability::Persistent));
        assert_eq!(slot(&["quit"]), Slot::Nothing);
        assert_eq!(slot(&["?"]), Slot::Command);
        assert_eq!(slot(&["escan", "by"]), Slot::Words(&["prefix"]));
        assert_eq!(slot(&["escan", "by", "prefix"]), Slot::Key(Durability::Ephemeral));
        assert_eq!(slot(&["exists"]), Slot::Key(Durability::Persistent));
        assert_eq!(slot(&["eexists"]), Slot::Key(Durability::Ephemeral));
        assert_eq!(slot(&["extend"]), Slot::Key(Durability::Persistent));
        assert_eq!(slot(&["eextend"]), Slot::Key(Durability::Ephemeral));
        assert_eq!(slot(&["set", "k"]), Slot::Nothing);
        assert_eq!(slot(&["set", "k", "v"]), Slot::Options(vec!["nx", "xx", "ex", "cmp", "cmprev"]));
        assert_eq!(slot(&["lock", "jobs", "100"]), Slot::Options(vec!["wait", "owner"]));
        assert_eq!(slot(&["scan", "by", "prefix", "p/"]), Slot::Options(vec!["limit", "cursor", "serializable"]));
        assert_eq!(slot(&["mset", "a", "1"]), Slot::Key(Durability::Persistent));
        assert_eq!(slot(&["mset", "a"]), Slot::Nothing);
        assert_eq!(slot(&["mget", "a", "b"]), Slot::Key(Durability::Persistent));
        assert_eq!(slot(&["status"]), Slot::Nothing);
        assert_eq!(slot(&["timing"]), Slot::Words(&["on", "off"]));
        assert_eq!(slot(&["timing", "on"]), Slot::Nothing);
        assert_eq!(slot(&["members"]), Slot::Nothing);
        assert_eq!(slot(&["bogus"]), Slot::Nothing);
        assert_eq!(slot(&["begin"]), Slot::Words(&["timeout"]));
        assert_eq!(slot(&["run"]), Slot::File);
        assert_eq!(slot(&["run", "f.lua"]), Slot::Nothing);
        assert_eq!(slot(&["eval"]), Slot::Nothing);
    }

    #[test]
    fn history_lives_in_home() {
        assert_eq!(history_in(Some(PathBuf::from("/home/ada"))), Some(PathBuf::from("/home/ada/.kahuna_history")));
        assert_eq!(history_in(Some(PathBuf::new())), None, "an empty HOME keeps no history");
        assert_eq!(history_in(None), None);
        // Whatever HOME is, the file is directly in it (t42 checks this with a real HOME).
        if let (Some(path), Some(home)) = (history_path(), std::env::home_dir()) {
            assert_eq!(path.parent(), Some(home.as_path()));
        }
    }
}
