//! Turns a statement's words into a [`Command`], checking everything that can be checked
//! without a server. The grammar is the one in [`help`](crate::help).

use std::fmt;
use std::path::PathBuf;

use kahuna_client::{
    Consistency, DeleteOptions, Durability, GetOptions, ReadOptions, ScriptArgs, ScriptValue, SequenceOptions,
    SetOptions, hlc_end_of_ms,
};

use crate::help;
use crate::lex::{LuaChunk, Statement, Word};
use crate::lua::{self, Check};

/// Keys a scan shows when no limit is given; more are offered through the cursor.
pub const SCAN_ITEMS_DEFAULT: usize = 1_000;
/// Largest `limit` a scan accepts (the client's collection limit).
pub const SCAN_ITEMS_MAX: usize = kahuna_client::SCAN_ALL_ITEMS_MAX;
/// Most keys one `mset`, `mget` or `mdel` takes.
pub const BATCH_ITEMS_MAX: usize = 10_000;

/// One parsed command.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// `set` / `eset`.
    Set {
        /// Key to write.
        key: String,
        /// Value to write.
        value: Vec<u8>,
        /// Keyspace, conditions and expiry.
        options: SetOptions,
    },
    /// `get` / `eget`.
    Get {
        /// Key to read.
        key: String,
        /// Keyspace, freshness and history point.
        options: GetOptions,
    },
    /// `del` / `edel`.
    Delete {
        /// Key to delete.
        key: String,
        /// Keyspace and compares.
        options: DeleteOptions,
    },
    /// `exists` / `eexists`.
    Exists {
        /// Key to test.
        key: String,
        /// Keyspace and freshness.
        options: ReadOptions,
    },
    /// `extend` / `eextend`.
    Extend {
        /// Key to extend.
        key: String,
        /// New time to live; 0 removes the expiry.
        ttl_ms: u64,
        /// Keyspace.
        durability: Durability,
    },
    /// `get by bucket` / `eget by bucket`.
    GetByBucket {
        /// Bucket to read.
        bucket: String,
        /// Keyspace and freshness.
        options: ReadOptions,
    },
    /// `scan by prefix` / `escan by prefix`.
    Scan {
        /// Key prefix.
        prefix: String,
        /// Keyspace and freshness.
        options: ReadOptions,
        /// Most keys to show.
        limit: usize,
        /// Where to continue, from a previous scan.
        cursor: Option<String>,
    },
    /// `mset` / `emset`.
    SetMany {
        /// Keys and values, in order.
        items: Vec<(String, Vec<u8>)>,
        /// Keyspace.
        durability: Durability,
    },
    /// `mget` / `emget`.
    GetMany {
        /// Keys, in order.
        keys: Vec<String>,
        /// Keyspace and freshness.
        options: ReadOptions,
    },
    /// `mdel` / `emdel`.
    DeleteMany {
        /// Keys, in order.
        keys: Vec<String>,
        /// Keyspace.
        durability: Durability,
    },
    /// `lock` / `elock`.
    Lock {
        /// Lock name.
        name: String,
        /// Lease length.
        lease_ms: u64,
        /// How long the server may wait for the lock; 0 = not at all.
        wait_ms: u64,
        /// Owner to take it for; `None` = the session's own.
        owner: Option<String>,
        /// Keyspace.
        durability: Durability,
    },
    /// `unlock` / `eunlock`.
    Unlock {
        /// Lock name.
        name: String,
        /// Keyspace.
        durability: Durability,
    },
    /// `extend-lock` / `eextend-lock`.
    ExtendLock {
        /// Lock name.
        name: String,
        /// New lease, from now.
        lease_ms: u64,
        /// Keyspace.
        durability: Durability,
    },
    /// `get-lock` / `eget-lock`.
    GetLock {
        /// Lock name.
        name: String,
        /// Keyspace.
        durability: Durability,
    },
    /// `create-sequence`.
    CreateSequence {
        /// Sequence name.
        name: String,
        /// Start, increment and maximum.
        options: SequenceOptions,
    },
    /// `next-sequence`.
    NextSequence {
        /// Sequence name.
        name: String,
        /// Idempotency key; `None` = a fresh one.
        key: Option<String>,
    },
    /// `reserve-sequence`.
    ReserveSequence {
        /// Sequence name.
        name: String,
        /// How many values.
        count: u64,
        /// Idempotency key; `None` = a fresh one.
        key: Option<String>,
    },
    /// `get-sequence`.
    GetSequence {
        /// Sequence name.
        name: String,
    },
    /// `delete-sequence`.
    DeleteSequence {
        /// Sequence name.
        name: String,
    },
    /// `status`.
    Status,
    /// `ping`.
    Ping,
    /// `members`.
    Members,
    /// `timing on` / `timing off`.
    Timing {
        /// Whether to print each command's latency from now on.
        on: bool,
    },
    /// `help [TOPIC]`.
    Help {
        /// Command to explain; `None` lists all.
        topic: Option<String>,
    },
    /// `exit` / `quit`.
    Exit,
    /// `begin [timeout MS]`.
    Begin {
        /// How long the transaction may stay open; `None` = the shell's default.
        timeout_ms: Option<u64>,
    },
    /// `commit`.
    Commit,
    /// `rollback`.
    Rollback,
    /// `eval CHUNK` or a `lua [ARGS]` block.
    Eval {
        /// The chunk and where it was typed.
        chunk: LuaChunk,
        /// Arguments (`lua` blocks only).
        args: ScriptArgs,
    },
    /// `run FILE [ARGS]`.
    Run {
        /// The Lua file, as typed (resolved when it runs).
        path: PathBuf,
        /// Arguments.
        args: ScriptArgs,
    },
}

impl Command {
    /// Returns why the command cannot run inside an open transaction, or `None` when it
    /// can. Transactions cover persistent keys: locks, sequences, the ephemeral keyspace,
    /// batches, scripts (each its own transaction) and cluster commands stay outside.
    pub fn refused_in_transaction(&self) -> Option<String> {
        let outside = |what: &str| Some(outside_transaction(what));
        let ephemeral = |name: &str| {
            Some(format!("{name} uses the ephemeral keyspace, which transactions do not cover; use {}", &name[1..]))
        };
        let serializable =
            || Some("serializable has no meaning inside a transaction: every read comes from its snapshot".to_owned());
        let durable = |durability: Durability| durability == Durability::Persistent;
        match self {
            Command::Get { options, .. } if !durable(options.durability) => ephemeral("eget"),
            Command::Get { options, .. } if options.consistency == Consistency::Serializable => serializable(),
            Command::Exists { options, .. } if !durable(options.durability) => ephemeral("eexists"),
            Command::Scan { options, .. } if !durable(options.durability) => ephemeral("escan"),
            Command::Exists { options, .. } | Command::Scan { options, .. }
                if options.consistency == Consistency::Serializable =>
            {
                serializable()
            }
            Command::Set { options, .. } if !durable(options.durability) => ephemeral("eset"),
            Command::Delete { options, .. } if !durable(options.durability) => ephemeral("edel"),
            Command::Extend { durability, .. } if !durable(*durability) => ephemeral("eextend"),
            Command::Get { .. }
            | Command::Exists { .. }
            | Command::Scan { .. }
            | Command::Set { .. }
            | Command::Delete { .. }
            | Command::Extend { .. }
            | Command::Commit
            | Command::Rollback
            | Command::Help { .. }
            | Command::Timing { .. }
            | Command::Exit => None,
            Command::Begin { .. } => Some("a transaction is already open; commit or rollback first".to_owned()),
            Command::GetByBucket { .. } => outside("get by bucket"),
            Command::SetMany { .. } | Command::GetMany { .. } | Command::DeleteMany { .. } => {
                outside("a batch (mset, mget, mdel)")
            }
            Command::Lock { .. } | Command::Unlock { .. } | Command::ExtendLock { .. } | Command::GetLock { .. } => {
                outside("a lock command")
            }
            Command::CreateSequence { .. }
            | Command::NextSequence { .. }
            | Command::ReserveSequence { .. }
            | Command::GetSequence { .. }
            | Command::DeleteSequence { .. } => outside("a sequence command"),
            Command::Eval { .. } | Command::Run { .. } => outside(LUA_SCRIPT),
            Command::Status | Command::Ping | Command::Members => outside("a cluster command"),
        }
    }
}

/// What the refusal of `eval`, `lua` and `run` inside a transaction calls them.
pub const LUA_SCRIPT: &str = "a Lua script (it runs as a transaction of its own)";

/// Returns the refusal of `what` inside an open transaction.
pub fn outside_transaction(what: &str) -> String {
    format!("{what} cannot run inside a transaction; commit or rollback first")
}

/// Why a statement is not a valid command. The message names the problem and, where
/// useful, the command's usage line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// Human-readable reason.
    pub message: String,
    /// A second line for people: the Lua line a syntax error is on.
    pub detail: Option<String>,
}

impl ParseError {
    /// Returns an error with `message` and no detail.
    pub fn new(message: impl Into<String>) -> ParseError {
        ParseError { message: message.into(), detail: None }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ParseError {}

/// Parses one statement: its words, and the Lua chunk of an `eval` or `lua` statement.
pub fn parse_statement(statement: &Statement) -> Result<Command, ParseError> {
    let Some(chunk) = &statement.lua else {
        return parse(&statement.words);
    };
    let Some((head, rest)) = statement.words.split_first() else {
        return Err(ParseError::new("empty command"));
    };
    let name = head.lossy().to_ascii_lowercase();
    let args = if name == "lua" {
        typed_args(rest, "lua")?
    } else {
        if chunk.source.trim().is_empty() {
            return Err(ParseError::new(format!("eval: missing CHUNK ({})", help::usage("eval"))));
        }
        ScriptArgs::new()
    };
    check_chunk(chunk, &name)?;
    Ok(Command::Eval { chunk: chunk.clone(), args })
}

/// Reports a Lua syntax error in `chunk` with the line it is on.
fn check_chunk(chunk: &LuaChunk, command: &str) -> Result<(), ParseError> {
    match lua::check(&chunk.source) {
        Check::Complete => Ok(()),
        Check::Incomplete(message) | Check::Invalid(message) => {
            // `eval a; get k` is a common slip: the shell's `;` is Lua's here.
            let hint = if command == "eval" && chunk.source.contains(';') {
                " (eval takes the rest of the line as Lua, ; included; put the next command on a line of its own)"
            } else {
                ""
            };
            Err(ParseError {
                message: format!("{command}: Lua syntax error: {message}{hint}"),
                detail: lua_detail(chunk, &message),
            })
        }
    }
}

/// Returns `N | text` for the line of a multi-line chunk that `message` names, N counted
/// as the input counts (the `-f` file's lines); `None` for one-line chunks.
pub fn lua_detail(chunk: &LuaChunk, message: &str) -> Option<String> {
    if !chunk.source.contains('\n') {
        return None;
    }
    let line = lua::error_line(message)?;
    let text = lua::source_line(&chunk.source, line)?;
    Some(format!("{} | {text}", chunk.line + line - 1))
}

/// Turns script argument words into [`ScriptArgs`]: `name=value` is named (the `=` bare,
/// the name a Lua identifier), any other word positional. Bare values are typed
/// (integers, floats, `true`, `false`); quoted values and everything else are strings.
pub fn typed_args(words: &[Word], command: &str) -> Result<ScriptArgs, ParseError> {
    let mut args = ScriptArgs::new();
    for word in words {
        let equals = word.bytes[..word.bare_len].iter().position(|&b| b == b'=');
        let Some(equals) = equals else {
            args.positional.push(typed_value(&word.bytes, word.quoted));
            continue;
        };
        let name = String::from_utf8_lossy(&word.bytes[..equals]).into_owned();
        if !is_lua_name(&name) {
            return Err(ParseError::new(format!(
                "{command}: {name:?} in {:?} is not an argument name (a Lua identifier); \
                 quote the word to pass it as text",
                word.lossy()
            )));
        }
        if args.named.contains_key(&name) {
            return Err(ParseError::new(format!("{command}: argument {name} given twice")));
        }
        let value = typed_value(&word.bytes[equals + 1..], word.quoted);
        args.named.insert(name, value);
    }
    Ok(args)
}

/// Returns true for a Lua identifier that is not a keyword.
fn is_lua_name(name: &str) -> bool {
    const KEYWORDS: &[&str] = &[
        "and", "break", "do", "else", "elseif", "end", "false", "for", "function", "goto", "if", "in", "local", "nil",
        "not", "or", "repeat", "return", "then", "true", "until", "while",
    ];
    name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !KEYWORDS.contains(&name)
}

/// Types one argument value: quoted text stays a string; bare text becomes an integer,
/// a float, or a boolean when it reads as one, else a string.
fn typed_value(bytes: &[u8], quoted: bool) -> ScriptValue {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return ScriptValue::String(bytes.to_vec());
    };
    if quoted {
        return ScriptValue::from(text);
    }
    match text {
        "true" => return ScriptValue::Boolean(true),
        "false" => return ScriptValue::Boolean(false),
        _ => {}
    }
    if let Ok(n) = text.parse::<i64>() {
        return ScriptValue::Integer(n);
    }
    // Rust also reads `inf`, `NaN` and `1.`; only plain decimal notation counts here.
    let digits = text.strip_prefix('-').unwrap_or(text);
    let decimal = digits.starts_with(|c: char| c.is_ascii_digit())
        && digits.chars().all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'))
        && !digits.ends_with('.');
    match text.parse::<f64>() {
        Ok(f) if decimal && f.is_finite() => ScriptValue::Float(f),
        _ => ScriptValue::from(text),
    }
}

/// Parses one statement's words. `words` is never empty when it comes from the lexer; an
/// empty slice is an error, not a panic.
pub fn parse(words: &[Word]) -> Result<Command, ParseError> {
    let Some((head, rest)) = words.split_first() else {
        return Err(ParseError::new("empty command"));
    };
    let name = String::from_utf8_lossy(&head.bytes).to_ascii_lowercase();
    if head.quoted {
        return Err(ParseError::new(format!("unknown command {:?}: command names are never quoted", head.lossy())));
    }
    if !is_command_word(&name) {
        return Err(ParseError::new(format!("unknown command {:?}; try help", head.lossy())));
    }
    match name.as_str() {
        "help" | "?" => {
            let topic = rest.iter().map(Word::lossy).collect::<Vec<_>>().join(" ");
            return Ok(Command::Help { topic: Some(topic).filter(|t| !t.is_empty()) });
        }
        "exit" | "quit" => return no_arguments(Command::Exit, "exit", rest),
        "status" => return no_arguments(Command::Status, "status", rest),
        "ping" => return no_arguments(Command::Ping, "ping", rest),
        "members" => return no_arguments(Command::Members, "members", rest),
        "timing" => return parse_timing(rest),
        "commit" => return no_arguments(Command::Commit, "commit", rest),
        "rollback" => return no_arguments(Command::Rollback, "rollback", rest),
        "begin" => return parse_begin(rest),
        "run" => return parse_run(rest),
        "eval" | "lua" => {
            // The lexer gives these their chunk; without one the words were mangled
            // (`eval` quoted or glued to `;`).
            return Err(ParseError::new(format!("{name}: missing CHUNK ({})", help::usage(&name))));
        }
        "create-sequence" | "next-sequence" | "reserve-sequence" | "get-sequence" | "delete-sequence" => {
            let mut args = Args { words: rest, position: 0, command: name.clone() };
            return parse_sequence(&mut args, &name);
        }
        _ => {}
    }
    let (base, durability) = match name.as_str() {
        base if WITH_EPHEMERAL_FORM.contains(&base) => (base, Durability::Persistent),
        ephemeral => match ephemeral.strip_prefix('e') {
            Some(base) if WITH_EPHEMERAL_FORM.contains(&base) => (base, Durability::Ephemeral),
            _ => {
                return Err(ParseError::new(format!("unknown command {:?}; try help", head.lossy())));
            }
        },
    };
    let mut args = Args { words: rest, position: 0, command: String::from(&name[..]) };
    match base {
        "set" => parse_set(&mut args, durability),
        "get" if is_by(rest, "bucket") => {
            args.command = format!("{name} by bucket");
            args.position = 2;
            parse_get_by_bucket(&mut args, durability)
        }
        "get" => parse_get(&mut args, durability),
        "del" => parse_delete(&mut args, durability),
        "exists" => parse_exists(&mut args, durability),
        "extend" => parse_extend(&mut args, durability),
        "scan" => {
            args.command = format!("{name} by prefix");
            if !is_by(rest, "prefix") {
                return Err(args.error("expected scan by prefix PREFIX"));
            }
            args.position = 2;
            parse_scan(&mut args, durability)
        }
        "mset" => parse_set_many(&mut args, durability),
        "mget" => parse_get_many(&mut args, durability),
        "mdel" => parse_delete_many(&mut args, durability),
        lock => parse_lock(&mut args, lock, durability),
    }
}

/// First words of the commands without an ephemeral form. With [`WITH_EPHEMERAL_FORM`]
/// and its `e` forms, these are all the words a command may start with: `parse` refuses
/// any other first word, so a new command must be listed here, where a test checks that
/// `help` explains it and completion offers it.
const COMMAND_WORDS: &[&str] = &[
    "help",
    "?",
    "exit",
    "quit",
    "status",
    "ping",
    "members",
    "timing",
    "begin",
    "commit",
    "rollback",
    "eval",
    "lua",
    "run",
    "create-sequence",
    "next-sequence",
    "reserve-sequence",
    "get-sequence",
    "delete-sequence",
];

/// Returns true when `word` (lower case) is a first word `parse` accepts.
fn is_command_word(word: &str) -> bool {
    COMMAND_WORDS.contains(&word)
        || WITH_EPHEMERAL_FORM.contains(&word)
        || word.strip_prefix('e').is_some_and(|base| WITH_EPHEMERAL_FORM.contains(&base))
}

/// Commands that have an `e`-prefixed ephemeral form.
const WITH_EPHEMERAL_FORM: &[&str] = &[
    "set",
    "get",
    "del",
    "exists",
    "extend",
    "scan",
    "mset",
    "mget",
    "mdel",
    "lock",
    "unlock",
    "extend-lock",
    "get-lock",
];

/// Parses `lock`, `unlock`, `extend-lock` and `get-lock` (`base`) after their name.
fn parse_lock(args: &mut Args<'_>, base: &str, durability: Durability) -> Result<Command, ParseError> {
    let name = args.text("NAME", false)?;
    let command = match base {
        "lock" => {
            let lease_ms = lease(args)?;
            let (mut wait_ms, mut owner) = (None, None);
            while let Some(word) = args.next().cloned() {
                if word.is_keyword("wait") {
                    once(&wait_ms, args, "wait")?;
                    wait_ms = Some(args.number("wait MS (milliseconds)", i64::MAX as u64)?);
                } else if word.is_keyword("owner") {
                    once(&owner, args, "owner")?;
                    owner = Some(args.text("owner O", false)?);
                } else {
                    return Err(args.unexpected(&word));
                }
            }
            Command::Lock { name, lease_ms, wait_ms: wait_ms.unwrap_or(0), owner, durability }
        }
        "extend-lock" => Command::ExtendLock { name, lease_ms: lease(args)?, durability },
        "unlock" => Command::Unlock { name, durability },
        _ => Command::GetLock { name, durability },
    };
    match args.next().cloned() {
        Some(word) => Err(args.unexpected(&word)),
        None => Ok(command),
    }
}

/// Takes a lease in ms: at least 1.
fn lease(args: &mut Args<'_>) -> Result<u64, ParseError> {
    let lease_ms = args.number("MS (milliseconds)", i64::MAX as u64)?;
    if lease_ms == 0 {
        return Err(args.error("the lease must be at least 1 ms"));
    }
    Ok(lease_ms)
}

/// Parses the sequence commands (`command`) after their name.
fn parse_sequence(args: &mut Args<'_>, command: &str) -> Result<Command, ParseError> {
    let name = args.text("NAME", false)?;
    let parsed = match command {
        "create-sequence" => {
            let mut options = SequenceOptions::new();
            let (mut start, mut increment, mut max) = (None, None, None);
            while let Some(word) = args.next().cloned() {
                if word.is_keyword("start") {
                    once(&start, args, "start")?;
                    start = Some(args.signed("start N")?);
                } else if word.is_keyword("increment") {
                    once(&increment, args, "increment")?;
                    let n = args.signed("increment N")?;
                    if n < 1 {
                        return Err(args.error(&format!("increment must be at least 1, got {n}")));
                    }
                    increment = Some(n);
                } else if word.is_keyword("max") {
                    once(&max, args, "max")?;
                    max = Some(args.signed("max N")?);
                } else {
                    return Err(args.unexpected(&word));
                }
            }
            options.start = start.unwrap_or(options.start);
            options.increment = increment.unwrap_or(options.increment);
            options.max = max;
            if let Some(max) = max
                && max < options.start
            {
                return Err(args.error(&format!("max {max} is below start {}", options.start)));
            }
            return Ok(Command::CreateSequence { name, options });
        }
        "next-sequence" => Command::NextSequence { name, key: idempotency_key(args)? },
        "reserve-sequence" => {
            let count = args.number("COUNT", u64::MAX)?;
            if count == 0 {
                return Err(args.error("COUNT must be at least 1"));
            }
            Command::ReserveSequence { name, count, key: idempotency_key(args)? }
        }
        "get-sequence" => Command::GetSequence { name },
        _ => Command::DeleteSequence { name },
    };
    match args.next().cloned() {
        Some(word) => Err(args.unexpected(&word)),
        None => Ok(parsed),
    }
}

/// Takes an optional `key K`.
fn idempotency_key(args: &mut Args<'_>) -> Result<Option<String>, ParseError> {
    match args.words.get(args.position) {
        Some(word) if word.is_keyword("key") => {
            args.position += 1;
            Ok(Some(args.text("key K", false)?))
        }
        _ => Ok(None),
    }
}

/// Parses `timing on|off` after its name.
fn parse_timing(rest: &[Word]) -> Result<Command, ParseError> {
    let error = |problem: String| ParseError::new(format!("timing: {problem} ({})", help::usage("timing")));
    let Some((word, extra)) = rest.split_first() else {
        return Err(error("expected on or off".into()));
    };
    let on = if word.is_keyword("on") {
        true
    } else if word.is_keyword("off") {
        false
    } else {
        return Err(error(format!("expected on or off, got {:?}", word.lossy())));
    };
    match extra.first() {
        None => Ok(Command::Timing { on }),
        Some(word) => Err(error(format!("unexpected {:?}", word.lossy()))),
    }
}

/// Parses `begin [timeout MS]` after its name.
fn parse_begin(rest: &[Word]) -> Result<Command, ParseError> {
    let mut args = Args { words: rest, position: 0, command: "begin".into() };
    let mut timeout_ms = None;
    while let Some(word) = args.next().cloned() {
        if word.is_keyword("timeout") {
            once(&timeout_ms, &args, "timeout")?;
            let ms = args.number("timeout MS (milliseconds)", i64::MAX as u64)?;
            if ms == 0 {
                return Err(args.error("timeout must be at least 1 ms"));
            }
            timeout_ms = Some(ms);
        } else {
            return Err(args.unexpected(&word));
        }
    }
    Ok(Command::Begin { timeout_ms })
}

/// Parses `run FILE [ARGS]` after its name.
fn parse_run(rest: &[Word]) -> Result<Command, ParseError> {
    let mut args = Args { words: rest, position: 0, command: "run".into() };
    let path = args.text("FILE", false)?;
    let args = typed_args(&rest[1..], "run")?;
    Ok(Command::Run { path: PathBuf::from(path), args })
}

/// Returns true when `words` start with the bare keywords `by` and `what`.
fn is_by(words: &[Word], what: &str) -> bool {
    words.len() >= 2 && words[0].is_keyword("by") && words[1].is_keyword(what)
}

fn no_arguments(command: Command, name: &str, rest: &[Word]) -> Result<Command, ParseError> {
    match rest.first() {
        None => Ok(command),
        Some(word) => Err(ParseError::new(format!("{name} takes no arguments, got {:?}", word.lossy()))),
    }
}

/// A cursor over a command's argument words.
struct Args<'a> {
    words: &'a [Word],
    position: usize,
    /// The command as typed, for messages (`eget by bucket`).
    command: String,
}

impl Args<'_> {
    fn error(&self, problem: &str) -> ParseError {
        let usage = help::usage(&self.command);
        let message = if usage.is_empty() {
            format!("{}: {problem}", self.command)
        } else {
            format!("{}: {problem} ({usage})", self.command)
        };
        ParseError::new(message)
    }

    fn next(&mut self) -> Option<&Word> {
        let word = self.words.get(self.position)?;
        self.position += 1;
        Some(word)
    }

    fn is_done(&self) -> bool {
        self.position >= self.words.len()
    }

    fn remaining(&self) -> usize {
        self.words.len().saturating_sub(self.position)
    }

    /// Takes the next word as a key (or bucket, prefix): UTF-8, and non-empty unless
    /// `may_be_empty`.
    fn text(&mut self, what: &str, may_be_empty: bool) -> Result<String, ParseError> {
        let Some(word) = self.next() else {
            return Err(self.error(&format!("missing {what}")));
        };
        let text = String::from_utf8(word.bytes.clone()).map_err(|_| self.error(&format!("{what} must be UTF-8")))?;
        if text.is_empty() && !may_be_empty {
            return Err(self.error(&format!("{what} must not be empty")));
        }
        Ok(text)
    }

    fn key(&mut self) -> Result<String, ParseError> {
        self.text("KEY", false)
    }

    fn bytes(&mut self, what: &str) -> Result<Vec<u8>, ParseError> {
        match self.next() {
            Some(word) => Ok(word.bytes.clone()),
            None => Err(self.error(&format!("missing {what}"))),
        }
    }

    /// Takes the next word as a non-negative integer no larger than `max`.
    fn number(&mut self, what: &str, max: u64) -> Result<u64, ParseError> {
        let Some(word) = self.next() else {
            return Err(self.error(&format!("missing {what}")));
        };
        let text = word.lossy();
        match text.parse::<u64>() {
            Ok(n) if n <= max => Ok(n),
            Ok(_) => Err(self.error(&format!("{what} {text} is above the maximum {max}"))),
            Err(_) if text.starts_with('-') => Err(self.error(&format!("{what} must not be negative, got {text}"))),
            Err(_) => Err(self.error(&format!("{what} must be a whole number, got {text:?}"))),
        }
    }

    /// Takes the next word as a whole number, possibly negative.
    fn signed(&mut self, what: &str) -> Result<i64, ParseError> {
        let Some(word) = self.next() else {
            return Err(self.error(&format!("missing {what}")));
        };
        let text = word.lossy();
        text.parse::<i64>().map_err(|_| self.error(&format!("{what} must be a whole number, got {text:?}")))
    }

    fn revision(&mut self, what: &str) -> Result<i64, ParseError> {
        let n = self.number(what, i64::MAX as u64)?;
        i64::try_from(n).map_err(|_| self.error(&format!("{what} is too large")))
    }

    /// Takes the next word, which must be the keyword `keyword`.
    fn keyword(&mut self, keyword: &str, problem: &str) -> Result<(), ParseError> {
        match self.next() {
            Some(word) if word.is_keyword(keyword) => Ok(()),
            _ => Err(self.error(problem)),
        }
    }

    fn unexpected(&self, word: &Word) -> ParseError {
        self.error(&format!("unexpected {:?}", word.lossy()))
    }
}

/// Rejects an option given twice.
fn once<T>(slot: &Option<T>, args: &Args<'_>, option: &str) -> Result<(), ParseError> {
    match slot {
        Some(_) => Err(args.error(&format!("{option} given twice"))),
        None => Ok(()),
    }
}

fn flag_once(flag: &mut bool, args: &Args<'_>, option: &str) -> Result<(), ParseError> {
    if *flag {
        return Err(args.error(&format!("{option} given twice")));
    }
    *flag = true;
    Ok(())
}

fn parse_set(args: &mut Args<'_>, durability: Durability) -> Result<Command, ParseError> {
    let key = args.key()?;
    let value = args.bytes("VALUE")?;
    let mut options = SetOptions::new().durability(durability);
    while let Some(word) = args.next().cloned() {
        if word.is_keyword("nx") {
            flag_once(&mut options.nx, args, "nx")?;
        } else if word.is_keyword("xx") {
            flag_once(&mut options.xx, args, "xx")?;
        } else if word.is_keyword("ex") {
            once(&options.ttl_ms, args, "ex")?;
            let ttl_ms = args.number("ex MS (milliseconds)", i64::MAX as u64)?;
            if ttl_ms == 0 {
                return Err(args.error("ex must be at least 1 ms; omit it for no expiry"));
            }
            options.ttl_ms = Some(ttl_ms);
        } else if word.is_keyword("cmp") {
            once(&options.compare_value, args, "cmp")?;
            options.compare_value = Some(args.bytes("cmp VALUE")?);
        } else if word.is_keyword("cmprev") {
            once(&options.compare_revision, args, "cmprev")?;
            options.compare_revision = Some(args.revision("cmprev N")?);
        } else {
            return Err(args.unexpected(&word));
        }
    }
    if options.nx && options.xx {
        return Err(args.error("nx and xx exclude each other"));
    }
    if options.nx && (options.compare_value.is_some() || options.compare_revision.is_some()) {
        return Err(args.error("nx excludes cmp and cmprev (the key must be absent)"));
    }
    Ok(Command::Set { key, value, options })
}

fn parse_get(args: &mut Args<'_>, durability: Durability) -> Result<Command, ParseError> {
    let key = args.key()?;
    let mut options = GetOptions::new().durability(durability);
    let mut serializable = false;
    while let Some(word) = args.next().cloned() {
        if word.is_keyword("at") {
            once(&options.at_revision, args, "at")?;
            options.at_revision = Some(args.revision("at REVISION")?);
        } else if word.is_keyword("as") {
            once(&options.as_of, args, "as of")?;
            args.keyword("of", "expected as of TIME")?;
            options.as_of = Some(parse_time(args)?);
        } else if word.is_keyword("serializable") {
            flag_once(&mut serializable, args, "serializable")?;
        } else {
            return Err(args.unexpected(&word));
        }
    }
    if options.at_revision.is_some() && options.as_of.is_some() {
        return Err(args.error("at and as of exclude each other"));
    }
    if serializable {
        options.consistency = Consistency::Serializable;
    }
    Ok(Command::Get { key, options })
}

/// Parses `as of` TIME: an HLC timestamp, or unix milliseconds with an `ms` suffix (read
/// as the end of that millisecond).
fn parse_time(args: &mut Args<'_>) -> Result<u64, ParseError> {
    let Some(word) = args.next() else {
        return Err(args.error("missing TIME after as of"));
    };
    let text = word.lossy();
    let (digits, unix_ms) = match text.strip_suffix("ms") {
        Some(digits) => (digits, true),
        None => (text.as_str(), false),
    };
    let value: u64 = digits.parse().map_err(|_| {
        args.error(&format!("TIME must be an HLC timestamp or unix milliseconds like 1732580000000ms, got {text:?}"))
    })?;
    Ok(if unix_ms { hlc_end_of_ms(value) } else { value })
}

fn parse_delete(args: &mut Args<'_>, durability: Durability) -> Result<Command, ParseError> {
    let key = args.key()?;
    let mut options = DeleteOptions::new().durability(durability);
    while let Some(word) = args.next().cloned() {
        if word.is_keyword("cmp") {
            once(&options.compare_value, args, "cmp")?;
            options.compare_value = Some(args.bytes("cmp VALUE")?);
        } else if word.is_keyword("cmprev") {
            once(&options.compare_revision, args, "cmprev")?;
            options.compare_revision = Some(args.revision("cmprev N")?);
        } else if !word.quoted && args.position == 2 {
            return Err(args.error(&format!("unexpected {:?}; del takes one key, use mdel for several", word.lossy())));
        } else {
            return Err(args.unexpected(&word));
        }
    }
    Ok(Command::Delete { key, options })
}

/// Parses the trailing options of a plain read: only `serializable`.
fn read_options(args: &mut Args<'_>, durability: Durability) -> Result<ReadOptions, ParseError> {
    let mut options = ReadOptions::new().durability(durability);
    let mut serializable = false;
    while let Some(word) = args.next().cloned() {
        if word.is_keyword("serializable") {
            flag_once(&mut serializable, args, "serializable")?;
            options.consistency = Consistency::Serializable;
        } else {
            return Err(args.unexpected(&word));
        }
    }
    Ok(options)
}

fn parse_exists(args: &mut Args<'_>, durability: Durability) -> Result<Command, ParseError> {
    let key = args.key()?;
    let options = read_options(args, durability)?;
    Ok(Command::Exists { key, options })
}

fn parse_extend(args: &mut Args<'_>, durability: Durability) -> Result<Command, ParseError> {
    let key = args.key()?;
    let ttl_ms = args.number("MS (milliseconds)", i64::MAX as u64)?;
    if let Some(word) = args.next().cloned() {
        return Err(args.unexpected(&word));
    }
    Ok(Command::Extend { key, ttl_ms, durability })
}

fn parse_get_by_bucket(args: &mut Args<'_>, durability: Durability) -> Result<Command, ParseError> {
    let bucket = args.text("BUCKET", true)?;
    let options = read_options(args, durability)?;
    Ok(Command::GetByBucket { bucket, options })
}

fn parse_scan(args: &mut Args<'_>, durability: Durability) -> Result<Command, ParseError> {
    let prefix = args.text("PREFIX", true)?;
    let mut options = ReadOptions::new().durability(durability);
    let mut limit = None;
    let mut cursor = None;
    let mut serializable = false;
    while let Some(word) = args.next().cloned() {
        if word.is_keyword("limit") {
            once(&limit, args, "limit")?;
            let n = args.number("limit N", SCAN_ITEMS_MAX as u64)?;
            if n == 0 {
                return Err(args.error("limit must be at least 1"));
            }
            limit = Some(n as usize);
        } else if word.is_keyword("cursor") {
            once(&cursor, args, "cursor")?;
            cursor = Some(args.text("cursor C", false)?);
        } else if word.is_keyword("serializable") {
            flag_once(&mut serializable, args, "serializable")?;
            options.consistency = Consistency::Serializable;
        } else {
            return Err(args.unexpected(&word));
        }
    }
    Ok(Command::Scan { prefix, options, limit: limit.unwrap_or(SCAN_ITEMS_DEFAULT), cursor })
}

/// Checks a batch's size: at least one item, at most `BATCH_ITEMS_MAX`.
fn batch_size(args: &Args<'_>, items: usize) -> Result<(), ParseError> {
    if items == 0 {
        return Err(args.error("missing KEY"));
    }
    if items > BATCH_ITEMS_MAX {
        return Err(args.error(&format!("{items} keys given, at most {BATCH_ITEMS_MAX} allowed")));
    }
    Ok(())
}

fn parse_set_many(args: &mut Args<'_>, durability: Durability) -> Result<Command, ParseError> {
    if args.remaining() % 2 == 1 {
        return Err(args.error("keys and values must come in pairs"));
    }
    batch_size(args, args.remaining() / 2)?;
    let mut items = Vec::with_capacity(args.remaining() / 2);
    while !args.is_done() {
        let key = args.key()?;
        let value = args.bytes("VALUE")?;
        items.push((key, value));
    }
    Ok(Command::SetMany { items, durability })
}

/// Takes the remaining words as keys. For reads, a bare final `serializable` is the
/// option (quote it to name a key).
fn keys(args: &mut Args<'_>, allow_serializable: bool) -> Result<(Vec<String>, bool), ParseError> {
    let serializable = allow_serializable && args.words.last().is_some_and(|w| w.is_keyword("serializable"));
    let count = args.remaining() - usize::from(serializable);
    batch_size(args, count)?;
    let mut keys = Vec::with_capacity(count);
    for _ in 0..count {
        keys.push(args.key()?);
    }
    Ok((keys, serializable))
}

fn parse_get_many(args: &mut Args<'_>, durability: Durability) -> Result<Command, ParseError> {
    let (keys, serializable) = keys(args, true)?;
    let mut options = ReadOptions::new().durability(durability);
    if serializable {
        options.consistency = Consistency::Serializable;
    }
    Ok(Command::GetMany { keys, options })
}

fn parse_delete_many(args: &mut Args<'_>, durability: Durability) -> Result<Command, ParseError> {
    let (keys, _) = keys(args, false)?;
    Ok(Command::DeleteMany { keys, durability })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lex::split;

    fn parse_line(line: &str) -> Result<Command, ParseError> {
        let statements = split(line).map_err(|e| ParseError::new(e.to_string()))?;
        assert_eq!(statements.len(), 1, "{line}");
        parse_statement(&statements[0])
    }

    fn ok(line: &str) -> Command {
        match parse_line(line) {
            Ok(command) => command,
            Err(e) => panic!("{line:?} failed: {e}"),
        }
    }

    fn err(line: &str) -> String {
        match parse_line(line) {
            Ok(command) => panic!("{line:?} parsed as {command:?}"),
            Err(e) => e.message,
        }
    }

    #[test]
    fn set_plain_and_with_every_option() {
        assert_eq!(ok("set k v"), Command::Set { key: "k".into(), value: b"v".to_vec(), options: SetOptions::new() });
        let Command::Set { key, value, options } = ok("SET 'a key' \"x\\x00\" XX ex 1500 cmp old cmprev 7") else {
            panic!("not a set");
        };
        assert_eq!(key, "a key");
        assert_eq!(value, b"x\x00".to_vec());
        assert!(options.xx && !options.nx);
        assert_eq!(options.ttl_ms, Some(1500));
        assert_eq!(options.compare_value, Some(b"old".to_vec()));
        assert_eq!(options.compare_revision, Some(7));
        assert_eq!(options.durability, Durability::Persistent);
    }

    #[test]
    fn ephemeral_forms_set_durability() {
        let Command::Set { options, .. } = ok("eset k v nx") else { panic!("not a set") };
        assert_eq!(options.durability, Durability::Ephemeral);
        assert!(options.nx);
        let Command::Get { options, .. } = ok("eget k") else { panic!("not a get") };
        assert_eq!(options.durability, Durability::Ephemeral);
        assert!(matches!(ok("edel k"), Command::Delete { options, .. } if options.durability == Durability::Ephemeral));
        assert!(
            matches!(ok("eexists k"), Command::Exists { options, .. } if options.durability == Durability::Ephemeral)
        );
        assert!(matches!(ok("eextend k 5"), Command::Extend { durability: Durability::Ephemeral, ttl_ms: 5, .. }));
        assert!(
            matches!(ok("eget by bucket b"), Command::GetByBucket { options, .. } if options.durability == Durability::Ephemeral)
        );
        assert!(
            matches!(ok("escan by prefix p"), Command::Scan { options, .. } if options.durability == Durability::Ephemeral)
        );
        assert!(matches!(ok("emset a 1"), Command::SetMany { durability: Durability::Ephemeral, .. }));
        assert!(
            matches!(ok("emget a"), Command::GetMany { options, .. } if options.durability == Durability::Ephemeral)
        );
        assert!(matches!(ok("emdel a"), Command::DeleteMany { durability: Durability::Ephemeral, .. }));
    }

    #[test]
    fn value_may_look_like_a_keyword() {
        let Command::Set { value, options, .. } = ok("set k nx") else { panic!("not a set") };
        assert_eq!(value, b"nx".to_vec());
        assert!(!options.nx);
        assert_eq!(
            err("set k v 'nx'"),
            "set: unexpected \"nx\" (usage: set KEY VALUE [nx|xx] [ex MS] [cmp VALUE] [cmprev N])"
        );
    }

    #[test]
    fn set_rejects_bad_combinations_and_numbers() {
        assert!(err("set k v nx xx").contains("nx and xx exclude each other"));
        assert!(err("set k v xx nx").contains("exclude"));
        assert!(err("set k v nx cmp a").contains("nx excludes cmp"));
        assert!(err("set k v nx cmprev 1").contains("nx excludes cmp"));
        assert!(err("set k v ex -5").contains("must not be negative, got -5"));
        assert!(err("set k v ex 0").contains("at least 1 ms"));
        assert!(err("set k v ex 1.5").contains("whole number"));
        assert!(err("set k v ex").contains("missing ex MS"));
        assert!(err("set k v ex 99999999999999999999").contains("whole number"));
        assert!(err("set k v ex 9223372036854775808").contains("above the maximum"));
        assert!(err("set k v cmprev -1").contains("must not be negative"));
        assert!(err("set k v nx nx").contains("nx given twice"));
        assert!(err("set k v ex 1 ex 2").contains("ex given twice"));
        assert!(err("set k").contains("missing VALUE"));
        assert!(err("set").contains("missing KEY"));
        assert!(err("set '' v").contains("KEY must not be empty"));
        assert!(err("set \"\\xff\" v").contains("KEY must be UTF-8"));
        assert!(err("set k v bogus").contains("unexpected \"bogus\""));
    }

    #[test]
    fn get_history_points_and_consistency() {
        let Command::Get { key, options } = ok("get k at 3 serializable") else { panic!("not a get") };
        assert_eq!(key, "k");
        assert_eq!(options.at_revision, Some(3));
        assert_eq!(options.consistency, Consistency::Serializable);
        let Command::Get { options, .. } = ok("get k as of 123456") else { panic!("not a get") };
        assert_eq!(options.as_of, Some(123_456));
        let Command::Get { options, .. } = ok("get k AS OF 1732580000000ms") else { panic!("not a get") };
        assert_eq!(options.as_of, Some(hlc_end_of_ms(1_732_580_000_000)));
        assert!(err("get k at 1 as of 2").contains("exclude"));
        assert!(err("get k as 5").contains("expected as of TIME"));
        assert!(err("get k as of").contains("missing TIME"));
        assert!(err("get k as of yesterday").contains("TIME must be"));
        assert!(err("get k at").contains("missing at REVISION"));
        assert!(err("get k at -1").contains("must not be negative"));
        assert!(err("get k serializable serializable").contains("twice"));
        assert!(err("get").contains("missing KEY"));
    }

    #[test]
    fn get_by_bucket_versus_a_key_named_by() {
        assert_eq!(
            ok("get by bucket config serializable"),
            Command::GetByBucket { bucket: "config".into(), options: ReadOptions::new().serializable() }
        );
        assert_eq!(ok("get by bucket ''"), Command::GetByBucket { bucket: String::new(), options: ReadOptions::new() });
        assert!(matches!(ok("get by"), Command::Get { key, .. } if key == "by"));
        assert!(err("get 'by' bucket").contains("unexpected \"bucket\""));
        assert!(err("get by bucket").contains("missing BUCKET"));
        assert!(err("get by bucket a b").contains("unexpected \"b\""));
    }

    #[test]
    fn scan_options() {
        assert_eq!(
            ok("scan by prefix p"),
            Command::Scan { prefix: "p".into(), options: ReadOptions::new(), limit: SCAN_ITEMS_DEFAULT, cursor: None }
        );
        assert_eq!(
            ok("scan by prefix '' limit 10 cursor abc serializable"),
            Command::Scan {
                prefix: String::new(),
                options: ReadOptions::new().serializable(),
                limit: 10,
                cursor: Some("abc".into())
            }
        );
        assert!(err("scan p").contains("expected scan by prefix"));
        assert!(err("scan by bucket p").contains("expected scan by prefix"));
        assert!(err("scan by prefix").contains("missing PREFIX"));
        assert!(err("scan by prefix p limit 0").contains("at least 1"));
        assert!(err("scan by prefix p limit 99999999999").contains("above the maximum"));
        assert!(err("escan by prefix p limit").contains("escan by prefix: missing limit N"));
    }

    #[test]
    fn delete_exists_extend() {
        let Command::Delete { key, options } = ok("del k cmp v cmprev 2") else { panic!("not a del") };
        assert_eq!(key, "k");
        assert_eq!(options.compare_value, Some(b"v".to_vec()));
        assert_eq!(options.compare_revision, Some(2));
        assert!(err("del a b").contains("use mdel"));
        assert!(err("del").contains("missing KEY"));
        assert_eq!(ok("exists k"), Command::Exists { key: "k".into(), options: ReadOptions::new() });
        assert!(err("exists k v").contains("unexpected"));
        assert_eq!(
            ok("extend k 0"),
            Command::Extend { key: "k".into(), ttl_ms: 0, durability: Durability::Persistent }
        );
        assert!(err("extend k").contains("missing MS"));
        assert!(err("extend k -3").contains("must not be negative"));
        assert!(err("extend k 5 6").contains("unexpected"));
    }

    #[test]
    fn batches() {
        assert_eq!(
            ok("mset a 1 b 2"),
            Command::SetMany {
                items: vec![("a".into(), b"1".to_vec()), ("b".into(), b"2".to_vec())],
                durability: Durability::Persistent
            }
        );
        assert!(err("mset a 1 b").contains("pairs"));
        assert!(err("mset").contains("missing KEY"));
        assert_eq!(
            ok("mget a b serializable"),
            Command::GetMany { keys: vec!["a".into(), "b".into()], options: ReadOptions::new().serializable() }
        );
        assert_eq!(
            ok("mget a 'serializable'"),
            Command::GetMany { keys: vec!["a".into(), "serializable".into()], options: ReadOptions::new() }
        );
        assert!(err("mget serializable").contains("missing KEY"));
        assert!(err("mget").contains("missing KEY"));
        assert_eq!(
            ok("mdel a serializable"),
            Command::DeleteMany { keys: vec!["a".into(), "serializable".into()], durability: Durability::Persistent }
        );
        let many = format!("mget {}", "k ".repeat(BATCH_ITEMS_MAX + 1));
        assert!(err(&many).contains("at most"));
    }

    #[test]
    fn lock_commands() {
        assert_eq!(
            ok("lock jobs/nightly 30000 wait 5000 owner worker-1"),
            Command::Lock {
                name: "jobs/nightly".into(),
                lease_ms: 30_000,
                wait_ms: 5_000,
                owner: Some("worker-1".into()),
                durability: Durability::Persistent
            }
        );
        assert!(matches!(
            ok("elock r 10"),
            Command::Lock { wait_ms: 0, owner: None, durability: Durability::Ephemeral, .. }
        ));
        assert_eq!(ok("unlock r"), Command::Unlock { name: "r".into(), durability: Durability::Persistent });
        assert_eq!(ok("eunlock r"), Command::Unlock { name: "r".into(), durability: Durability::Ephemeral });
        assert_eq!(
            ok("eextend-lock r 50"),
            Command::ExtendLock { name: "r".into(), lease_ms: 50, durability: Durability::Ephemeral }
        );
        assert_eq!(ok("get-lock r"), Command::GetLock { name: "r".into(), durability: Durability::Persistent });
        assert!(matches!(ok("eget-lock r"), Command::GetLock { durability: Durability::Ephemeral, .. }));
        assert!(err("lock r 0").contains("at least 1 ms"));
        assert!(err("lock r -5").contains("must not be negative"));
        assert!(err("lock r").contains("missing MS"));
        assert!(err("lock").contains("missing NAME"));
        assert!(err("lock r 5 wait 1 wait 2").contains("wait given twice"));
        assert!(err("lock r 5 owner").contains("missing owner O"));
        assert!(err("unlock r now").contains("unexpected \"now\""));
        assert!(err("extend-lock r 0").contains("at least 1 ms"));
    }

    #[test]
    fn sequence_commands() {
        assert_eq!(
            ok("create-sequence invoices start -10 increment 5 max 1000"),
            Command::CreateSequence {
                name: "invoices".into(),
                options: SequenceOptions::new().start(-10).increment(5).max(1000)
            }
        );
        assert_eq!(
            ok("create-sequence s"),
            Command::CreateSequence { name: "s".into(), options: SequenceOptions::new() }
        );
        assert_eq!(ok("next-sequence s key k1"), Command::NextSequence { name: "s".into(), key: Some("k1".into()) });
        assert_eq!(ok("next-sequence s"), Command::NextSequence { name: "s".into(), key: None });
        assert_eq!(
            ok("reserve-sequence s 10 key k"),
            Command::ReserveSequence { name: "s".into(), count: 10, key: Some("k".into()) }
        );
        assert_eq!(ok("get-sequence s"), Command::GetSequence { name: "s".into() });
        assert_eq!(ok("delete-sequence s"), Command::DeleteSequence { name: "s".into() });
        assert!(err("create-sequence s increment 0").contains("increment must be at least 1"));
        assert!(err("create-sequence s start 5 max 4").contains("below start"));
        assert!(err("create-sequence s start x").contains("whole number"));
        assert!(err("reserve-sequence s 0").contains("at least 1"));
        assert!(err("reserve-sequence s").contains("missing COUNT"));
        assert!(err("next-sequence s key").contains("missing key K"));
        assert!(err("get-sequence s extra").contains("unexpected"));
        assert!(err("enext-sequence s").contains("unknown command"));
    }

    #[test]
    fn simple_commands() {
        assert_eq!(ok("status"), Command::Status);
        assert_eq!(ok("PING"), Command::Ping);
        assert_eq!(ok("quit"), Command::Exit);
        assert_eq!(ok("exit"), Command::Exit);
        assert_eq!(ok("help"), Command::Help { topic: None });
        assert_eq!(ok("help get by bucket"), Command::Help { topic: Some("get by bucket".into()) });
        assert!(err("status now").contains("takes no arguments"));
        assert!(err("ping x").contains("takes no arguments"));
    }

    #[test]
    fn members_and_timing() {
        assert_eq!(ok("members"), Command::Members);
        assert_eq!(ok("MEMBERS"), Command::Members);
        assert!(err("members all").contains("takes no arguments"));
        assert_eq!(ok("timing on"), Command::Timing { on: true });
        assert_eq!(ok("Timing OFF"), Command::Timing { on: false });
        assert!(err("timing").contains("expected on or off"));
        assert!(err("timing maybe").contains("expected on or off, got \"maybe\""));
        assert!(err("timing 'on'").contains("expected on or off"));
        assert!(err("timing on now").contains("unexpected \"now\""));
        assert!(err("timing").contains("usage: timing on|off"));
        assert!(err("etiming on").contains("unknown command"));
    }

    #[test]
    fn transaction_commands() {
        assert_eq!(ok("begin"), Command::Begin { timeout_ms: None });
        assert_eq!(ok("BEGIN timeout 2500"), Command::Begin { timeout_ms: Some(2500) });
        assert_eq!(ok("commit"), Command::Commit);
        assert_eq!(ok("rollback"), Command::Rollback);
        assert!(err("begin timeout 0").contains("at least 1 ms"));
        assert!(err("begin timeout").contains("missing timeout MS"));
        assert!(err("begin now").contains("unexpected \"now\" (usage: begin [timeout MS])"));
        assert!(err("commit now").contains("takes no arguments"));
        assert!(err("begin timeout 1 timeout 2").contains("twice"));
    }

    #[test]
    fn what_runs_inside_a_transaction() {
        for inside in ["get k", "get k at 3", "exists k", "scan by prefix p", "set k v nx", "del k", "extend k 5"] {
            assert_eq!(ok(inside).refused_in_transaction(), None, "{inside}");
        }
        for (outside, why) in [
            ("eget k", "ephemeral keyspace"),
            ("eset k v", "use set"),
            ("get k serializable", "snapshot"),
            ("scan by prefix p serializable", "snapshot"),
            ("mget a b", "batch"),
            ("get by bucket b", "get by bucket"),
            ("lock r 5", "lock"),
            ("next-sequence s", "sequence"),
            ("status", "cluster"),
            ("run f.lua", "Lua"),
            ("eval return 1", "Lua"),
            ("begin", "already open"),
        ] {
            let reason = ok(outside).refused_in_transaction().unwrap_or_default();
            assert!(reason.contains(why), "{outside}: {reason}");
        }
    }

    #[test]
    fn eval_and_lua_blocks() {
        let Command::Eval { chunk, args } = ok("eval return #kahuna.args; -- 'a'") else { panic!("not eval") };
        assert_eq!(chunk.source, "return #kahuna.args; -- 'a'");
        assert_eq!(args, ScriptArgs::new());
        assert!(err("eval").contains("eval: missing CHUNK (usage: eval CHUNK)"));
        assert!(err("eval   ").contains("missing CHUNK"));
        assert!(err("eval return = 1").contains("eval: Lua syntax error: script:1:"));
        assert!(err("eval return 1; get k").contains("put the next command on a line of its own"));
        assert!(err("'eval' return 1").contains("never quoted"));
        let statements = split("lua n=2\nreturn kahuna.args.n\nend").expect("lexes");
        let Ok(Command::Eval { chunk, args }) = parse_statement(&statements[0]) else { panic!("not a block") };
        assert_eq!(chunk.source, "do\nreturn kahuna.args.n\nend");
        assert_eq!(args.named.get("n"), Some(&ScriptValue::Integer(2)));
        let statements = split("lua\nlocal x = 1\nlocal = 2").expect("lexes");
        let error = parse_statement(&statements[0]).expect_err("bad Lua");
        assert_eq!(error.detail.as_deref(), Some("3 | local = 2"));
    }

    #[test]
    fn run_and_typed_arguments() {
        let Command::Run { path, args } = ok(
            "run scripts/move.lua seat=12A from=alice n=3 f=1.5 e=2e3 on=true off=false q=\"7\" s='a b' 42 x -0.5 nan",
        ) else {
            panic!("not run");
        };
        assert_eq!(path, PathBuf::from("scripts/move.lua"));
        let named = |name: &str| args.named.get(name).cloned();
        assert_eq!(named("seat"), Some(ScriptValue::from("12A")));
        assert_eq!(named("from"), Some(ScriptValue::from("alice")));
        assert_eq!(named("n"), Some(ScriptValue::Integer(3)));
        assert_eq!(named("f"), Some(ScriptValue::Float(1.5)));
        assert_eq!(named("e"), Some(ScriptValue::Float(2000.0)));
        assert_eq!(named("on"), Some(ScriptValue::Boolean(true)));
        assert_eq!(named("off"), Some(ScriptValue::Boolean(false)));
        assert_eq!(named("q"), Some(ScriptValue::from("7")), "a quoted value stays a string");
        assert_eq!(named("s"), Some(ScriptValue::from("a b")));
        assert_eq!(
            args.positional,
            [ScriptValue::Integer(42), ScriptValue::from("x"), ScriptValue::Float(-0.5), ScriptValue::from("nan")]
        );
        let Command::Run { args, .. } = ok("run f.lua \"a=b\" url=http://x?y=z") else { panic!("not run") };
        assert_eq!(args.positional, [ScriptValue::from("a=b")]);
        assert_eq!(args.named.get("url"), Some(&ScriptValue::from("http://x?y=z")));
        assert!(err("run").contains("missing FILE"));
        assert!(err("run f.lua a-b=1").contains("not an argument name"));
        assert!(err("run f.lua end=1").contains("not an argument name"));
        assert!(err("run f.lua a=1 a=2").contains("argument a given twice"));
    }

    #[test]
    fn every_help_example_parses() {
        for command in help::COMMANDS {
            let statements = split(command.example).unwrap_or_else(|e| panic!("{}: {e}", command.name));
            for statement in &statements {
                if let Err(e) = parse_statement(statement) {
                    panic!("{}: example {:?}: {e}", command.name, command.example);
                }
            }
        }
    }

    /// Every first word the parser accepts, each ephemeral form included.
    fn accepted_words() -> Vec<String> {
        let mut words: Vec<String> = COMMAND_WORDS.iter().map(|w| (*w).to_owned()).collect();
        for base in WITH_EPHEMERAL_FORM {
            words.push((*base).to_owned());
            words.push(format!("e{base}"));
        }
        words
    }

    #[test]
    fn every_accepted_command_has_help_and_is_completed() {
        let completed = help::first_words();
        for word in accepted_words() {
            let text = help::text(Some(&word)).unwrap_or_else(|e| panic!("help {word}: {e}"));
            assert!(text.contains("Example:"), "help {word}: {text}");
            // `?` is an alias typed in full; every other word is offered by Tab.
            assert!(word == "?" || completed.contains(&word), "Tab does not offer {word}");
        }
        for word in completed {
            let message = parse_line(&word).err().map(|e| e.message).unwrap_or_default();
            assert!(!message.contains("unknown command"), "Tab offers {word}, which the parser refuses");
        }
    }

    #[test]
    fn unknown_commands() {
        assert!(err("frobnicate k").contains("unknown command \"frobnicate\""));
        assert!(err("estatus").contains("unknown command"));
        assert!(err("e").contains("unknown command"));
        assert!(err("'set' k v").contains("never quoted"));
        assert!(parse(&[]).is_err());
    }

    #[test]
    fn never_panics_on_odd_input() {
        for line in [
            "set \u{0}",
            "get \"\\u{1F600}\" at 1",
            "scan by",
            "get by bucket",
            "mset ''",
            "del k cmp",
            "set k v cmprev",
            "eget",
            "ee",
            "escan",
            "eval",
            "run",
            "run ''",
            "begin timeout",
            "lua x=",
        ] {
            let _ = parse_line(line);
        }
    }
}
