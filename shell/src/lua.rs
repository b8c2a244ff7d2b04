//! Lua as the shell sees it: the compile check that tells a complete chunk from one that
//! needs more lines, and the mapping of a script error's line back to the text it names.
//!
//! The shell never runs Lua; the server does. It compiles chunks locally only to find
//! where a block ends (Lua reports an incomplete chunk as an error `near <eof>`) and to
//! report syntax errors before anything runs, with the same chunk name as the server
//! (`script`), so messages read alike (`script:3: ...`).

use std::cell::RefCell;

/// Most lines one Lua block (an `eval` continued over lines, or a `lua` block) may span;
/// bounds the repeated compile checks while a block is read.
pub const BLOCK_LINES_MAX: usize = 10_000;

/// Chunk name the server gives scripts; error messages start with `script:LINE:`.
const CHUNK_NAME: &str = "=script";
/// What precedes a line number in a script error.
const LINE_MARKER: &str = "script:";

/// What compiling a chunk says about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    /// The chunk compiles.
    Complete,
    /// The chunk ends early (an open `do`, `function`, string, ...): more lines may
    /// complete it. Holds Lua's message.
    Incomplete(String),
    /// The chunk has a syntax error that more lines cannot fix. Holds Lua's message.
    Invalid(String),
}

thread_local! {
    // One bare state per thread: compiling runs no code, so no library is needed, and
    // the REPL checks every line typed.
    static LUA: RefCell<Option<mlua::Lua>> = const { RefCell::new(None) };
}

/// Compiles `source` (without running it) and says whether it is complete.
pub fn check(source: &str) -> Check {
    LUA.with(|cell| {
        let mut slot = cell.borrow_mut();
        let lua = slot.get_or_insert_with(|| {
            mlua::Lua::new_with(mlua::StdLib::NONE, mlua::LuaOptions::default()).unwrap_or_else(|_| mlua::Lua::new())
        });
        // The line end a chunk always has in a file: without it, Lua reports a short
        // string left open at the end of the line as `near <eof>`, i.e. incomplete, but
        // such a string cannot continue on the next line.
        match lua.load(format!("{source}\n")).set_name(CHUNK_NAME).into_function() {
            Ok(_) => Check::Complete,
            Err(mlua::Error::SyntaxError { message, incomplete_input: true }) => Check::Incomplete(message),
            Err(mlua::Error::SyntaxError { message, .. }) => Check::Invalid(message),
            Err(other) => Check::Invalid(other.to_string()),
        }
    })
}

/// Returns `message` without its leading `script:N: ` (for a chunk that ends early, the
/// line is just the end of the input).
pub fn without_location(message: &str) -> &str {
    match marker(message) {
        Some((at, 0)) => {
            let rest = message[at..].trim_start_matches(|c: char| c.is_ascii_digit());
            rest.strip_prefix(':').map_or(message, str::trim_start)
        }
        _ => message,
    }
}

/// Returns the chunk line a script error names (`script:3: ...` gives 3), if any.
pub fn error_line(message: &str) -> Option<usize> {
    let (at, _) = marker(message)?;
    let digits: String = message[at..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok().filter(|&line| line >= 1)
}

/// Replaces the first `script:` that precedes a line number with `name:` (a file name).
pub fn rename_chunk(message: &str, name: &str) -> String {
    match marker(message) {
        Some((at, start)) => format!("{}{name}:{}", &message[..start], &message[at..]),
        None => message.to_owned(),
    }
}

/// Finds the first `script:` followed by a digit: (index of the digit, index of `script:`).
fn marker(message: &str) -> Option<(usize, usize)> {
    message
        .match_indices(LINE_MARKER)
        .map(|(start, m)| (start + m.len(), start))
        .find(|&(at, _)| message[at..].starts_with(|c: char| c.is_ascii_digit()))
}

/// Returns line `line` (from 1) of `source`, trimmed, for showing under an error.
pub fn source_line(source: &str, line: usize) -> Option<&str> {
    source.lines().nth(line.checked_sub(1)?).map(str::trim).filter(|text| !text.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complete_incomplete_and_invalid_chunks() {
        assert_eq!(check("return 1"), Check::Complete);
        assert_eq!(check(""), Check::Complete);
        assert_eq!(check("local t = {}; return #t -- a comment"), Check::Complete);
        for open in ["for i = 1, 3 do", "do\n local x = 1", "return 1 +", "local s = [[long", "f(", "x = {"] {
            assert!(matches!(check(open), Check::Incomplete(ref m) if m.contains("<eof>")), "{open}");
        }
        for bad in ["return = 1", "local 1x", "end", "return \"unfinished"] {
            assert!(matches!(check(bad), Check::Invalid(_)), "{bad}");
        }
        let Check::Invalid(message) = check("local a = 1\nlocal = 2") else { panic!("invalid") };
        assert!(message.starts_with("script:2:"), "{message}");
    }

    #[test]
    fn error_lines_and_chunk_names() {
        assert_eq!(error_line("script:3: attempt to index a nil value"), Some(3));
        assert_eq!(error_line("syntax error: script:12: unexpected symbol"), Some(12));
        assert_eq!(error_line("the script: it failed"), None);
        assert_eq!(error_line("no line here"), None);
        assert_eq!(rename_chunk("script:3: boom", "counter.lua"), "counter.lua:3: boom");
        assert_eq!(rename_chunk("a script: x; script:2: y", "f.lua"), "a script: x; f.lua:2: y");
        assert_eq!(rename_chunk("boom", "f.lua"), "boom");
        assert_eq!(without_location("script:2: 'end' expected near <eof>"), "'end' expected near <eof>");
        assert_eq!(without_location("x script:2: y"), "x script:2: y");
        assert_eq!(source_line("a\n  b  \nc", 2), Some("b"));
        assert_eq!(source_line("a", 0), None);
        assert_eq!(source_line("a", 5), None);
    }
}
