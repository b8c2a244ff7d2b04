//! Argument hints for the REPL: after a command word and a space, the rest of the
//! command's syntax, taken from the [`help`](crate::help) table (the one source of truth).

use crate::help::{self, CommandHelp};
use crate::lex;

/// Returns the hint to show greyed after `line` (the cursor at its end), or `None`.
///
/// The line must end with a space after a command: `set ` hints `KEY VALUE [nx|xx] ...`;
/// each argument typed takes away one leading required placeholder (`set k ` hints
/// `VALUE [nx|xx] ...`), and once the options begin nothing more is hinted. The start of a
/// multi-word command hints its remaining words (`scan ` hints `by prefix PREFIX ...`).
pub fn hint(line: &str) -> Option<String> {
    if !line.ends_with([' ', '\t']) {
        return None;
    }
    let last = line.rsplit([';', '\n']).next().unwrap_or(line);
    if last.contains('#') {
        return None;
    }
    let statements = lex::split(line).ok()?;
    // A statement ended by `;` or a newline is done: the text after it is empty.
    if last.trim().is_empty() {
        return None;
    }
    let statement = statements.last()?;
    // Once Lua follows `eval`, the words hinted are Lua's, not the shell's.
    if statement.lua.as_ref().is_some_and(|lua| !lua.source.trim().is_empty()) {
        return None;
    }
    let words = &statement.words;
    if words.first()?.quoted {
        return None;
    }
    let typed: Vec<String> = words.iter().map(|w| w.lossy().to_ascii_lowercase()).collect();
    let base = base_words(&typed)?;
    let rest = syntax_after(&base, words)?;
    (!rest.is_empty()).then_some(rest)
}

/// Returns `typed` with an ephemeral `e` prefix taken off the first word, or `None` when
/// the first word starts no command.
fn base_words(typed: &[String]) -> Option<Vec<String>> {
    let first = typed.first()?;
    let starts = |word: &str, ephemeral: bool| {
        help::COMMANDS.iter().any(|c| (!ephemeral || c.ephemeral_form) && c.name.split(' ').next() == Some(word))
    };
    let first = match first.as_str() {
        "quit" => "exit".to_owned(),
        "?" => "help".to_owned(),
        word if starts(word, false) => word.to_owned(),
        word => match word.strip_prefix('e') {
            Some(base) if starts(base, true) => base.to_owned(),
            _ => return None,
        },
    };
    let mut base = vec![first];
    base.extend(typed[1..].iter().cloned());
    Some(base)
}

/// The hint for the (base) words typed so far; `words` are the lexed words, to tell
/// quoted words (never keywords) apart.
fn syntax_after(base: &[String], words: &[lex::Word]) -> Option<String> {
    let name_words = |c: &CommandHelp| c.name.split(' ').count();
    // A multi-word command whose name the typed words begin (`scan`, `get by`), unless a
    // one-word command of that name exists and only its name is typed (`get`).
    let prefix_of = help::COMMANDS.iter().find(|c| {
        let name: Vec<&str> = c.name.split(' ').collect();
        name.len() > base.len()
            && (base.len() > 1 || !help::COMMANDS.iter().any(|o| o.name == base[0]))
            && words.iter().all(|w| !w.quoted)
            && name.iter().zip(base).all(|(n, b)| n == b)
    });
    if let Some(command) = prefix_of {
        let rest: Vec<&str> = command.syntax.split_whitespace().skip(base.len()).collect();
        return Some(rest.join(" "));
    }
    // The longest command whose whole name the typed words start with.
    let command = help::COMMANDS
        .iter()
        .filter(|c| {
            let name: Vec<&str> = c.name.split(' ').collect();
            name.len() <= base.len()
                && name.iter().zip(base).all(|(n, b)| n == b)
                && words[1..name.len()].iter().all(|w| !w.quoted)
        })
        .max_by_key(|c| name_words(c))?;
    let mut syntax = command.syntax.split_whitespace().skip(name_words(command)).peekable();
    if syntax.peek().is_some_and(|token| token.starts_with('|')) {
        return None;
    }
    for _ in name_words(command)..base.len() {
        match syntax.next() {
            Some(token) if is_placeholder(token) => {}
            _ => return None,
        }
    }
    Some(syntax.collect::<Vec<_>>().join(" "))
}

/// Returns true for a required argument in a syntax line (`KEY`, `MS`), not an option.
fn is_placeholder(token: &str) -> bool {
    !token.is_empty() && token.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_come_from_the_help_table() {
        assert_eq!(hint("set ").as_deref(), Some("KEY VALUE [nx|xx] [ex MS] [cmp VALUE] [cmprev N]"));
        let set = help::find("set").map(|c| c.syntax.strip_prefix("set ").unwrap_or(""));
        assert_eq!(hint("set ").as_deref(), set);
        assert_eq!(hint("SET ").as_deref(), set);
        assert_eq!(hint("eset ").as_deref(), set);
        assert_eq!(hint("set k ").as_deref(), Some("VALUE [nx|xx] [ex MS] [cmp VALUE] [cmprev N]"));
        assert_eq!(hint("set \"a key\" ").as_deref(), Some("VALUE [nx|xx] [ex MS] [cmp VALUE] [cmprev N]"));
        assert_eq!(hint("set k v ").as_deref(), Some("[nx|xx] [ex MS] [cmp VALUE] [cmprev N]"));
        assert_eq!(hint("set k v nx "), None);
        assert_eq!(hint("lock jobs/x ").as_deref(), Some("MS [wait MS] [owner O]"));
        assert_eq!(hint("timing ").as_deref(), Some("on|off"));
        assert_eq!(hint("help ").as_deref(), Some("[COMMAND]"));
        assert_eq!(hint("begin ").as_deref(), Some("[timeout MS]"));
        assert_eq!(hint("run ").as_deref(), Some("FILE [NAME=VALUE ...] [VALUE ...]"));
        assert_eq!(hint("run f.lua ").as_deref(), Some("[NAME=VALUE ...] [VALUE ...]"));
        assert_eq!(hint("eval ").as_deref(), Some("CHUNK"));
        assert_eq!(hint("eval return 1 "), None);
        assert_eq!(hint("commit "), None);
    }

    #[test]
    fn multi_word_commands() {
        assert_eq!(hint("get ").as_deref(), Some("KEY [at REVISION | as of TIME] [serializable]"));
        assert_eq!(hint("get by ").as_deref(), Some("bucket BUCKET [serializable]"));
        assert_eq!(hint("eget by bucket ").as_deref(), Some("BUCKET [serializable]"));
        assert_eq!(hint("scan ").as_deref(), Some("by prefix PREFIX [limit N] [cursor C] [serializable]"));
        assert_eq!(hint("escan by ").as_deref(), Some("prefix PREFIX [limit N] [cursor C] [serializable]"));
        assert_eq!(hint("scan by prefix a/ ").as_deref(), Some("[limit N] [cursor C] [serializable]"));
        // A quoted "by" is a key, not a keyword.
        assert_eq!(hint("get 'by' ").as_deref(), Some("[at REVISION | as of TIME] [serializable]"));
    }

    #[test]
    fn no_hint_where_nothing_is_left_or_known() {
        for line in [
            "",
            "set",
            "set k",
            "status ",
            "members ",
            "ping ",
            "exit ",
            "quit ",
            "bogus ",
            "estatus ",
            "'set' ",
            "set k v; ",
            "set k v\n",
            "set # comment ",
            "set \"open ",
            "set k v ex ",
        ] {
            assert_eq!(hint(line), None, "{line:?}");
        }
        assert_eq!(hint("get a; del ").as_deref(), Some("KEY [cmp VALUE] [cmprev N]"));
    }
}
