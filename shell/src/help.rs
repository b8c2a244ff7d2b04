//! The command reference: syntax, meaning and an example for every command, used by
//! `help`, by parse errors (usage lines) and by tab completion.

/// One command's reference entry.
#[derive(Clone, Copy, Debug)]
pub struct CommandHelp {
    /// Command name as typed, possibly several words (`get by bucket`).
    pub name: &'static str,
    /// A few words for the command list.
    pub brief: &'static str,
    /// Syntax line.
    pub syntax: &'static str,
    /// What it does.
    pub summary: &'static str,
    /// A runnable example.
    pub example: &'static str,
    /// Whether an `e`-prefixed ephemeral form exists.
    pub ephemeral_form: bool,
}

/// Every command, in the order `help` lists them.
pub const COMMANDS: &[CommandHelp] = &[
    CommandHelp {
        name: "set",
        brief: "write a key (conditions, expiry)",
        syntax: "set KEY VALUE [nx|xx] [ex MS] [cmp VALUE] [cmprev N]",
        summary: "Writes VALUE under KEY. nx: only if absent; xx: only if present; ex: expire \
                  after MS milliseconds; cmp/cmprev: only if the current value/revision \
                  equals the given one. A failed condition is reported, not an error.",
        example: "set config/color blue nx ex 60000",
        ephemeral_form: true,
    },
    CommandHelp {
        name: "get",
        brief: "read a key, now or in the past",
        syntax: "get KEY [at REVISION | as of TIME] [serializable]",
        summary: "Reads KEY: the latest version, the version with REVISION, or the version \
                  visible at TIME (an HLC timestamp as shown in commit_ts, or unix \
                  milliseconds followed by ms). Prints (nil) when absent.",
        example: "get config/color at 3",
        ephemeral_form: true,
    },
    CommandHelp {
        name: "del",
        brief: "delete a key, optionally conditional",
        syntax: "del KEY [cmp VALUE] [cmprev N]",
        summary: "Deletes KEY (leaving a tombstone revision), optionally only if the current \
                  value/revision equals the given one.",
        example: "del config/color cmprev 3",
        ephemeral_form: true,
    },
    CommandHelp {
        name: "exists",
        brief: "tell whether a key exists",
        syntax: "exists KEY [serializable]",
        summary: "Tells whether KEY exists.",
        example: "exists config/color",
        ephemeral_form: true,
    },
    CommandHelp {
        name: "extend",
        brief: "change a key's expiry",
        syntax: "extend KEY MS",
        summary: "Sets KEY to expire MS milliseconds from now; 0 removes the expiry. Changes \
                  no revision.",
        example: "extend session/42 30000",
        ephemeral_form: true,
    },
    CommandHelp {
        name: "get by bucket",
        brief: "read every key of a bucket",
        syntax: "get by bucket BUCKET [serializable]",
        summary: "Reads every key of BUCKET (keys whose text before the last / is BUCKET), \
                  consistently, sorted by key.",
        example: "get by bucket config",
        ephemeral_form: true,
    },
    CommandHelp {
        name: "scan by prefix",
        brief: "list keys by prefix",
        syntax: "scan by prefix PREFIX [limit N] [cursor C] [serializable]",
        summary: "Lists keys starting with PREFIX, sorted, following cursors up to N keys \
                  (default 1000). When more remain, prints the cursor to continue with.",
        example: "scan by prefix config/ limit 10",
        ephemeral_form: true,
    },
    CommandHelp {
        name: "mset",
        brief: "write several keys",
        syntax: "mset KEY VALUE [KEY VALUE ...]",
        summary: "Writes several keys, atomically per partition (not across partitions).",
        example: "mset a 1 b 2 c 3",
        ephemeral_form: true,
    },
    CommandHelp {
        name: "mget",
        brief: "read several keys",
        syntax: "mget KEY [KEY ...] [serializable]",
        summary: "Reads several keys; results in the order given.",
        example: "mget a b c",
        ephemeral_form: true,
    },
    CommandHelp {
        name: "mdel",
        brief: "delete several keys",
        syntax: "mdel KEY [KEY ...]",
        summary: "Deletes several keys, atomically per partition (not across partitions).",
        example: "mdel a b c",
        ephemeral_form: true,
    },
    CommandHelp {
        name: "lock",
        brief: "take a lock (fencing token, lease)",
        syntax: "lock NAME MS [wait MS] [owner O]",
        summary: "Takes lock NAME for a lease of MS milliseconds and prints its fencing token, \
                  which grows with every new holder: pass it to what the lock guards. wait: \
                  wait up to MS for the lock (in arrival order). owner: take it for O instead \
                  of this session's own random owner. The shell remembers the owner of the \
                  locks it took, so unlock and extend-lock need no owner. Taking a lock you \
                  hold again keeps its token and restarts the lease.",
        example: "lock jobs/nightly 30000 wait 5000",
        ephemeral_form: true,
    },
    CommandHelp {
        name: "unlock",
        brief: "release a lock this session took",
        syntax: "unlock NAME",
        summary: "Releases lock NAME, as the owner that took it in this session. Releasing a \
                  lock someone else holds is an error.",
        example: "unlock jobs/nightly",
        ephemeral_form: true,
    },
    CommandHelp {
        name: "extend-lock",
        brief: "restart a held lock's lease",
        syntax: "extend-lock NAME MS",
        summary: "Restarts the lease of lock NAME, held by this session, at MS milliseconds \
                  from now; the token stays. Reports when the lease already ended.",
        example: "extend-lock jobs/nightly 30000",
        ephemeral_form: true,
    },
    CommandHelp {
        name: "get-lock",
        brief: "show a lock's holder and token",
        syntax: "get-lock NAME",
        summary: "Shows who holds lock NAME, its fencing token and when the lease ends, and \
                  the largest token ever granted for the name.",
        example: "get-lock jobs/nightly",
        ephemeral_form: true,
    },
    CommandHelp {
        name: "create-sequence",
        brief: "create a sequence of unique numbers",
        syntax: "create-sequence NAME [start N] [increment N] [max N]",
        summary: "Creates sequence NAME handing out start, start+increment, ... up to max \
                  (defaults: start 1, increment 1, no max). An existing sequence is left \
                  as it is.",
        example: "create-sequence invoices start 1000",
        ephemeral_form: false,
    },
    CommandHelp {
        name: "next-sequence",
        brief: "take a sequence's next number",
        syntax: "next-sequence NAME [key K]",
        summary: "Hands out the next number of sequence NAME; no number is ever handed out \
                  twice. key: an idempotency key; repeating it (within 10 minutes) returns \
                  the same number instead of a new one.",
        example: "next-sequence invoices key order-42",
        ephemeral_form: false,
    },
    CommandHelp {
        name: "reserve-sequence",
        brief: "take a range of numbers",
        syntax: "reserve-sequence NAME COUNT [key K]",
        summary: "Hands out COUNT numbers of sequence NAME as one range. key: as for \
                  next-sequence; the same key with another COUNT is an error. Passing the \
                  sequence's max is an error that hands out nothing.",
        example: "reserve-sequence invoices 100 key batch-7",
        ephemeral_form: false,
    },
    CommandHelp {
        name: "get-sequence",
        brief: "show a sequence's settings and progress",
        syntax: "get-sequence NAME",
        summary: "Shows sequence NAME: start, increment, max, the last number handed out \
                  and the next one.",
        example: "get-sequence invoices",
        ephemeral_form: false,
    },
    CommandHelp {
        name: "delete-sequence",
        brief: "delete a sequence",
        syntax: "delete-sequence NAME",
        summary: "Deletes sequence NAME and its idempotency keys.",
        example: "delete-sequence invoices",
        ephemeral_form: false,
    },
    CommandHelp {
        name: "begin",
        brief: "open a transaction",
        syntax: "begin [timeout MS]",
        summary: "Opens an interactive transaction; the prompt shows it until commit or rollback. \
                  Reads see one snapshot plus the transaction's own writes; writes are buffered \
                  and commit applies all of them or none. Inside it get, exists, scan by prefix, \
                  set, del and extend run in the transaction (persistent keys only); locks, \
                  sequences, ephemeral forms, batches, scripts and cluster commands are refused. \
                  The node rolls it back after timeout MS: the REPL asks for 60000, scripts get \
                  the node's default (5000). Leaving the shell rolls an open transaction back.",
        example: "begin timeout 30000",
        ephemeral_form: false,
    },
    CommandHelp {
        name: "commit",
        brief: "commit the open transaction",
        syntax: "commit",
        summary: "Commits the open transaction's writes atomically and prints the commit \
                  timestamp, or that nothing was written. When something it read or wrote \
                  changed since its snapshot, the commit fails with Conflict: nothing was \
                  written, and running the whole transaction again from begin may succeed. \
                  Either way the transaction ends.",
        example: "commit",
        ephemeral_form: false,
    },
    CommandHelp {
        name: "rollback",
        brief: "discard the open transaction",
        syntax: "rollback",
        summary: "Discards the open transaction's buffered writes and ends it.",
        example: "rollback",
        ephemeral_form: false,
    },
    CommandHelp {
        name: "eval",
        brief: "run a Lua chunk on the server",
        syntax: "eval CHUNK",
        summary: "Runs the rest of the line as a Lua 5.4 script on the server, as one \
                  transaction (its reads from one snapshot, its writes committed together). \
                  The chunk goes on over the next lines while it is incomplete (an open do, \
                  function, if or bracket); ; and # belong to Lua here. Scripts use \
                  kahuna.get, kahuna.set, kahuna.delete, kahuna.scan, kahuna.args and more. \
                  The result prints typed: tables as tables (or JSON, or raw lines).",
        example: "eval local kv = kahuna.get(\"config/color\"); return kv and kv.value",
        ephemeral_form: false,
    },
    CommandHelp {
        name: "lua",
        brief: "run a multi-line Lua block",
        syntax: "lua [NAME=VALUE ...] [VALUE ...]",
        summary: "Opens a Lua block: the lines after it, up to the end that closes it, run as \
                  one script, as with eval (the block is the body of a do ... end, so return \
                  works in it). Arguments as for run. The REPL prompts ...> while the block is \
                  open; Ctrl-C abandons it.",
        example: "lua key=hits by=5\n  local kv = kahuna.get(kahuna.args.key)\n  \
                  local n = (kv and tonumber(kv.value) or 0) + kahuna.args.by\n  \
                  kahuna.set(kahuna.args.key, n)\n  return n\nend",
        ephemeral_form: false,
    },
    CommandHelp {
        name: "run",
        brief: "run a Lua file with arguments",
        syntax: "run FILE [NAME=VALUE ...] [VALUE ...]",
        summary: "Runs the Lua file FILE on the server, as eval does. NAME=VALUE arguments are \
                  kahuna.args.NAME, the others kahuna.args[1], kahuna.args[2], ... Bare values \
                  are typed: whole numbers are integers, decimals floats, true and false \
                  booleans; anything else, and any quoted value, is a string. In -f scripts a \
                  relative FILE is found beside the script; elsewhere from the current \
                  directory. Errors name the file's line.",
        example: "run scripts/counter.lua key=hits by=5",
        ephemeral_form: false,
    },
    CommandHelp {
        name: "status",
        brief: "partitions: leaders, terms, logs",
        syntax: "status",
        summary: "Shows the cluster as the serving node sees it: nodes, and every partition's \
                  leader, term, role, last log and applied index.",
        example: "status",
        ephemeral_form: false,
    },
    CommandHelp {
        name: "members",
        brief: "the cluster's nodes and addresses",
        syntax: "members",
        summary: "Lists the cluster's nodes with their client addresses, marking the node \
                  that answered.",
        example: "members",
        ephemeral_form: false,
    },
    CommandHelp {
        name: "ping",
        brief: "check that a node answers",
        syntax: "ping",
        summary: "Checks that a node answers, and how fast.",
        example: "ping",
        ephemeral_form: false,
    },
    CommandHelp {
        name: "timing",
        brief: "show each command's latency",
        syntax: "timing on|off",
        summary: "With timing on, each command's latency is printed after its output, as \
                  (1.23 ms): on stdout for table output, on stderr for json and raw output \
                  so that pipes get only the results. Off by default.",
        example: "timing on",
        ephemeral_form: false,
    },
    CommandHelp {
        name: "help",
        brief: "this list, or one command in detail",
        syntax: "help [COMMAND]",
        summary: "Lists the commands, or explains one. ? is short for help.",
        example: "help set",
        ephemeral_form: false,
    },
    CommandHelp {
        name: "exit",
        brief: "leave the shell",
        syntax: "exit | quit",
        summary: "Leaves the shell (Ctrl-D too). In a script, stops it successfully.",
        example: "exit",
        ephemeral_form: false,
    },
];

/// General notes printed under the command list.
const NOTES: &str = "\
Ephemeral forms: prefix a key or lock command with e (eset, eget, edel, eexists, eextend,
emset, emget, emdel, eget by bucket, escan by prefix, elock, eunlock, eextend-lock,
eget-lock) to use the ephemeral keyspace: held in memory by the partition leader only, lost
on leader change or restart. Sequences are always persistent.

Reads are linearizable; add the word serializable to read any replica (possibly stale).

Quoting: \"...\" understands \\n \\r \\t \\0 \\\\ \\\" \\' \\xHH \\u{H..}; '...' understands only \\'
and \\\\. Separate commands with ; or newlines; # starts a comment. Keywords are
case-insensitive; a quoted word is never a keyword.

Values are bytes. Table output shows UTF-8 values in double quotes with escapes, and other
values as 0x followed by hex; raw output writes the bytes as they are; JSON output has
\"value\" for UTF-8 values and \"value_hex\" otherwise.

Transactions: begin ... commit (or rollback). Only get, exists, scan by prefix, set, del and
extend run inside one. A Conflict at commit means nothing was written: run it all again.

Lua: eval CHUNK, lua ... end blocks and run FILE run scripts on the server, each as one
transaction; arguments NAME=VALUE and VALUE are typed (integers, floats, true, false).

Scripts (-c, -f, or stdin not a terminal) stop at the first failed command; a failure inside
a transaction rolls it back. Exit codes: 0 all commands succeeded, 1 a command failed, 2 the
script does not parse (nothing ran; this includes Lua syntax errors and begin without
commit or rollback) or the shell could not start.";

/// Returns the entry named `name`, ignoring ASCII case and repeated spaces. An
/// `e`-prefixed form finds its base command; `quit` finds `exit` and `?` finds `help`; the
/// first word of a multi-word command finds it when no command has that word as its whole
/// name (`scan` finds `scan by prefix`, but `get` finds `get`).
pub fn find(name: &str) -> Option<&'static CommandHelp> {
    let name = name.split_whitespace().collect::<Vec<_>>().join(" ").to_ascii_lowercase();
    let name = match name.as_str() {
        "quit" => "exit".to_owned(),
        "?" => "help".to_owned(),
        _ => name,
    };
    let named = |name: &str, ephemeral: bool| {
        let candidates = || COMMANDS.iter().filter(move |c| !ephemeral || c.ephemeral_form);
        candidates().find(|c| c.name == name).or_else(|| {
            let mut longer = candidates().filter(|c| c.name.strip_prefix(name).is_some_and(|r| r.starts_with(' ')));
            match (longer.next(), longer.next()) {
                (Some(only), None) => Some(only),
                _ => None,
            }
        })
    };
    named(&name, false).or_else(|| named(name.strip_prefix('e')?, true))
}

/// The option words of a command (the lower-case words in its syntax's `[...]` parts,
/// such as `nx`, `ex`, `cmprev` of `set`) and how many words come before them (its
/// name's words plus its required arguments): what completion offers after those.
pub fn options(entry: &CommandHelp) -> (usize, Vec<&'static str>) {
    let syntax = entry.syntax;
    let required = syntax.split('[').next().unwrap_or(syntax).split_whitespace().count();
    let mut words: Vec<&'static str> = Vec::new();
    for part in syntax.split('[').skip(1) {
        let inside = part.split(']').next().unwrap_or("");
        for word in inside.split(|c: char| c.is_whitespace() || c == '|') {
            if !word.is_empty() && word.chars().all(|c| c.is_ascii_lowercase() || c == '-') && !words.contains(&word) {
                words.push(word);
            }
        }
    }
    (required, words)
}

/// Returns the usage line of `name` for error messages.
pub fn usage(name: &str) -> String {
    find(name).map_or_else(String::new, |c| format!("usage: {}", c.syntax))
}

/// Returns the text of `help` (no topic) or `help TOPIC`.
pub fn text(topic: Option<&str>) -> Result<String, String> {
    let Some(topic) = topic else {
        let width = COMMANDS.iter().map(|c| c.syntax.len()).max().unwrap_or(0);
        let mut out = String::from("Commands (help COMMAND for details and an example):\n");
        for command in COMMANDS {
            out.push_str(&format!("  {:width$}  {}\n", command.syntax, command.brief));
        }
        out.push('\n');
        out.push_str(NOTES);
        return Ok(out);
    };
    let command = find(topic).ok_or_else(|| format!("no command {topic:?}; try help"))?;
    let example = command.example.replace('\n', "\n  ");
    let mut out = format!("{}\n\n{}\n\nExample:\n  {example}\n", command.syntax, wrap(command.summary, 88));
    if command.ephemeral_form {
        out.push_str(&format!("\nEphemeral form: e{} (same syntax, the ephemeral keyspace).\n", command.name));
    }
    Ok(out)
}

/// Every command word a line may start with, for completion.
pub fn first_words() -> Vec<String> {
    let mut words: Vec<String> = Vec::new();
    for command in COMMANDS {
        let first = command.name.split(' ').next().unwrap_or(command.name);
        words.push(first.to_owned());
        if command.ephemeral_form {
            words.push(format!("e{first}"));
        }
    }
    words.push("quit".to_owned());
    words.sort();
    words.dedup();
    words
}

/// Wraps `text` at spaces to lines of at most `width` characters.
fn wrap(text: &str, width: usize) -> String {
    let mut out = String::new();
    let mut line_len = 0;
    for word in text.split_whitespace() {
        if line_len > 0 && line_len + 1 + word.len() > width {
            out.push('\n');
            line_len = 0;
        } else if line_len > 0 {
            out.push(' ');
            line_len += 1;
        }
        out.push_str(word);
        line_len += word.len();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_has_syntax_summary_and_example() {
        for command in COMMANDS {
            assert!(command.syntax.starts_with(command.name.split(' ').next().unwrap_or("")));
            assert!(!command.summary.is_empty() && !command.example.is_empty(), "{}", command.name);
            let width = COMMANDS.iter().map(|c| c.syntax.len()).max().unwrap_or(0);
            assert!(width + command.brief.len() + 4 <= 100, "{}: list line over 100 columns", command.name);
        }
    }

    #[test]
    fn finds_ephemeral_and_multiword_forms() {
        assert_eq!(find("eset").map(|c| c.name), Some("set"));
        assert_eq!(find("EGET  by   BUCKET").map(|c| c.name), Some("get by bucket"));
        assert_eq!(find("quit").map(|c| c.name), Some("exit"));
        assert_eq!(find("?").map(|c| c.name), Some("help"));
        // A multi-word command's first word alone finds it, unless a command has that name.
        assert_eq!(find("scan").map(|c| c.name), Some("scan by prefix"));
        assert_eq!(find("ESCAN").map(|c| c.name), Some("scan by prefix"));
        assert_eq!(find("get").map(|c| c.name), Some("get"));
        assert!(find("estatus").is_none());
        assert!(find("nope").is_none());
        assert!(find("sca").is_none(), "a prefix of a word finds nothing");
        assert!(find("").is_none());
    }

    #[test]
    fn help_texts() {
        let all = text(None).expect("general help");
        for command in COMMANDS {
            assert!(all.contains(command.syntax), "{}", command.name);
        }
        let set = text(Some("eset")).expect("help eset");
        assert!(set.contains("Example:") && set.contains("eset"));
        assert!(text(Some("bogus")).is_err());
    }

    #[test]
    fn options_come_from_the_syntax() {
        let set = find("set").expect("set");
        assert_eq!(options(set), (3, vec!["nx", "xx", "ex", "cmp", "cmprev"]));
        let get = find("get").expect("get");
        assert_eq!(options(get), (2, vec!["at", "as", "of", "serializable"]));
        let lock = find("lock").expect("lock");
        assert_eq!(options(lock), (3, vec!["wait", "owner"]));
    }

    #[test]
    fn first_words_include_ephemeral_forms() {
        let words = first_words();
        for word in ["set", "eset", "get", "eget", "scan", "escan", "status", "quit"] {
            assert!(words.iter().any(|w| w == word), "{word}");
        }
        assert!(!words.iter().any(|w| w == "estatus"));
    }

    #[test]
    fn wrap_keeps_lines_short() {
        let wrapped = wrap(COMMANDS[0].summary, 40);
        assert!(wrapped.lines().all(|line| line.len() <= 40), "{wrapped}");
    }
}
