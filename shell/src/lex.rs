//! Splits shell input into statements of words.
//!
//! Statements end at a newline or a `;` outside quotes. A `#` that starts a word starts
//! a comment to the end of the line. Words are separated by whitespace; a word may
//! concatenate bare and quoted parts (`a"b c"` is `ab c`).
//!
//! Quoting: `"..."` understands `\n \r \t \0 \\ \" \' \xHH \u{H..}`; `'...'` understands
//! only `\'` and `\\`, every other backslash is literal. Both may span lines. Bare text
//! has no escapes. Words are bytes, since `\xHH` may produce invalid UTF-8.
//!
//! Lua is taken raw, never split into words, since its `;`, `#` and quotes are not the
//! shell's:
//! - `eval CHUNK`: the rest of the line is the chunk, and the lines after it while the
//!   chunk is incomplete (an open `do`, `function`, `(`...).
//! - `lua [ARGS]`: the statement's own words are lexed as usual; the lines after it are a
//!   block that ends with the `end` that closes it (it is the body of a `do ... end`).
//!
//! Either chunk ends at the end of the line where it becomes complete, or where it has a
//! syntax error that more lines cannot fix (which parsing then reports). Only a line
//! holding `end` can complete a `lua` block, so a block is compiled only at such lines:
//! its syntax error is found at the next of them.

use std::fmt;

use crate::lua::{self, Check};

/// One word of a statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Word {
    /// The word's bytes after quote removal and escapes.
    pub bytes: Vec<u8>,
    /// True when any part of the word was quoted: such a word is never a keyword.
    pub quoted: bool,
    /// How many leading bytes came from bare text, before any quote: `n="a b"` has 2, so
    /// its `=` is bare and `n` names an argument.
    pub bare_len: usize,
}

impl Word {
    /// Returns true when the word is the bare keyword `keyword`, ignoring ASCII case.
    pub fn is_keyword(&self, keyword: &str) -> bool {
        !self.quoted && self.bytes.eq_ignore_ascii_case(keyword.as_bytes())
    }

    /// Returns the word as text, lossily (for messages).
    pub fn lossy(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

/// A Lua chunk taken raw by an `eval` or `lua` statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LuaChunk {
    /// The chunk as sent to the server. A `lua` block is wrapped as `do` + the block, so
    /// its line 1 is the `lua` statement's line.
    pub source: String,
    /// Input line (from 1) of the chunk's line 1: an error at chunk line N is on input
    /// line `line + N - 1`.
    pub line: usize,
}

/// One statement: its words and the line it starts on (from 1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statement {
    /// Line of the statement's first word, counting from 1.
    pub line: usize,
    /// Its words; never empty.
    pub words: Vec<Word>,
    /// The Lua chunk of an `eval` or `lua` statement.
    pub lua: Option<LuaChunk>,
}

/// Why input could not be split.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LexError {
    /// A quote opened on `line` is never closed.
    UnterminatedQuote {
        /// Line of the opening quote.
        line: usize,
    },
    /// An escape inside double quotes is malformed.
    BadEscape {
        /// Line of the escape.
        line: usize,
        /// What is wrong with it.
        detail: String,
    },
    /// A Lua chunk begun on `line` is still incomplete at the end of the input.
    IncompleteLua {
        /// Line of the `eval` or `lua` statement.
        line: usize,
        /// Lua's message (`... expected near <eof>`).
        message: String,
    },
    /// A Lua chunk begun on `line` runs past `BLOCK_LINES_MAX` lines.
    LuaTooLong {
        /// Line of the `eval` or `lua` statement.
        line: usize,
    },
}

impl fmt::Display for LexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LexError::UnterminatedQuote { line } => {
                write!(f, "line {line}: quote opened here is never closed")
            }
            LexError::BadEscape { line, detail } => write!(f, "line {line}: {detail}"),
            LexError::IncompleteLua { line, message } => {
                write!(f, "line {line}: the Lua chunk begun here is never completed ({message})")
            }
            LexError::LuaTooLong { line } => {
                write!(f, "line {line}: the Lua chunk begun here is longer than {} lines", lua::BLOCK_LINES_MAX)
            }
        }
    }
}

impl std::error::Error for LexError {}

/// Splits `input` into statements, dropping empty ones and comments.
pub fn split(input: &str) -> Result<Vec<Statement>, LexError> {
    let mut lexer = Lexer { input, chars: input.char_indices().peekable(), line: 1 };
    let mut statements = Vec::new();
    let mut words = Vec::new();
    let mut word: Option<Word> = None;
    let mut start_line = 1;
    while let Some(&(at, c)) = lexer.chars.peek() {
        let at_statement_start = words.is_empty() && word.is_none();
        if at_statement_start && let Some(chunk_at) = keyword_at(input, at, "eval") {
            let source = input[chunk_at..].trim_start_matches([' ', '\t']);
            let from = input.len() - source.len();
            let eval = Word { bytes: input.as_bytes()[at..chunk_at].to_vec(), quoted: false, bare_len: chunk_at - at };
            let chunk = lexer.lua_chunk(from, "", lexer.line)?;
            statements.push(Statement { line: chunk.line, words: vec![eval], lua: Some(chunk) });
            continue;
        }
        lexer.chars.next();
        match c {
            '\n' | ';' => {
                finish_word(&mut words, &mut word);
                let opens_lua = words.first().is_some_and(|w| w.is_keyword("lua"));
                finish_statement(&mut statements, &mut words, start_line);
                let line = lexer.line;
                if c == '\n' {
                    lexer.line += 1;
                }
                if opens_lua {
                    // `do` stands on the `lua` line, so the chunk's lines match the input's.
                    let prefix = if c == '\n' { "do\n" } else { "do " };
                    attach_block(&mut lexer, &mut statements, at + 1, prefix, line)?;
                }
            }
            c if c.is_whitespace() => finish_word(&mut words, &mut word),
            '#' if word.is_none() => while lexer.chars.next_if(|&(_, c)| c != '\n').is_some() {},
            '"' | '\'' => {
                if at_statement_start {
                    start_line = lexer.line;
                }
                let target = word.get_or_insert_with(|| Word { bytes: Vec::new(), quoted: true, bare_len: 0 });
                target.quoted = true;
                if c == '"' {
                    lexer.double_quoted(&mut target.bytes)?;
                } else {
                    lexer.single_quoted(&mut target.bytes)?;
                }
            }
            c => {
                if at_statement_start {
                    start_line = lexer.line;
                }
                let target = word.get_or_insert_with(|| Word { bytes: Vec::new(), quoted: false, bare_len: 0 });
                push_char(&mut target.bytes, c);
                if !target.quoted {
                    target.bare_len = target.bytes.len();
                }
            }
        }
    }
    finish_word(&mut words, &mut word);
    if words.first().is_some_and(|w| w.is_keyword("lua")) {
        // A `lua` statement on the last line: its block has not begun.
        let line = lexer.line;
        finish_statement(&mut statements, &mut words, start_line);
        attach_block(&mut lexer, &mut statements, input.len(), "do\n", line)?;
    }
    finish_statement(&mut statements, &mut words, start_line);
    Ok(statements)
}

/// Gives the `lua` statement just finished (the last one) its block, which starts at
/// `from` in the input; `line` is the `lua` statement's line.
fn attach_block(
    lexer: &mut Lexer<'_>,
    statements: &mut [Statement],
    from: usize,
    prefix: &str,
    line: usize,
) -> Result<(), LexError> {
    let chunk = lexer.lua_chunk(from, prefix, line)?;
    if let Some(statement) = statements.last_mut() {
        statement.lua = Some(chunk);
    }
    Ok(())
}

/// Returns the index after `keyword` when `input[at..]` starts with it (ASCII case
/// ignored) followed by horizontal whitespace, a line end or the end of the input.
fn keyword_at(input: &str, at: usize, keyword: &str) -> Option<usize> {
    let end = at + keyword.len();
    let word = input.get(at..end)?;
    let boundary = input[end..].chars().next().is_none_or(|c| matches!(c, ' ' | '\t' | '\n' | '\r'));
    (word.eq_ignore_ascii_case(keyword) && boundary).then_some(end)
}

/// Returns true when `input` ends inside a quote, i.e. more lines would complete it.
pub fn is_incomplete(input: &str) -> bool {
    matches!(split(input), Err(LexError::UnterminatedQuote { .. }))
}

/// Returns `text` as one word the lexer reads back unchanged: bare when it is plain,
/// otherwise double-quoted with escapes.
pub fn quote(text: &str) -> String {
    let plain = !text.is_empty()
        && !text.starts_with('#')
        && text.chars().all(|c| !c.is_whitespace() && !c.is_control() && !matches!(c, '"' | '\'' | ';'));
    if plain {
        return text.to_owned();
    }
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for c in text.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            '\r' => quoted.push_str("\\r"),
            '\t' => quoted.push_str("\\t"),
            c if c.is_control() => quoted.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

struct Lexer<'a> {
    input: &'a str,
    chars: std::iter::Peekable<std::str::CharIndices<'a>>,
    /// Current line, from 1.
    line: usize,
}

impl Lexer<'_> {
    fn next(&mut self) -> Option<char> {
        self.chars.next().map(|(_, c)| c)
    }

    fn next_if(&mut self, accept: impl FnOnce(&char) -> bool) -> Option<char> {
        self.chars.next_if(|(_, c)| accept(c)).map(|(_, c)| c)
    }

    /// Takes a Lua chunk raw: `prefix` plus the input from `from` to the end of the first
    /// line where the chunk is no longer incomplete. `line` is the input line of the
    /// chunk's line 1. Leaves the line end after the chunk to end its statement.
    fn lua_chunk(&mut self, from: usize, prefix: &str, line: usize) -> Result<LuaChunk, LexError> {
        let input = self.input;
        let line_end = |at: usize| input[at..].find('\n').map_or(input.len(), |i| at + i);
        let mut end = line_end(from);
        let mut lines = 1;
        let source = loop {
            // A `lua` block (`do` ...) can only become complete on a line holding the `end`
            // that closes it, and a syntax error stays one as lines are added, so the other
            // lines need no compile: it keeps long blocks from costing a compile per line.
            let line_start = input[..end].rfind('\n').map_or(0, |i| i + 1).max(from);
            if !prefix.is_empty() && end < input.len() && !input[line_start..end].contains("end") {
                if lines >= lua::BLOCK_LINES_MAX {
                    return Err(LexError::LuaTooLong { line });
                }
                end = line_end(end + 1);
                lines += 1;
                continue;
            }
            let source = format!("{prefix}{}", &input[from..end]);
            match lua::check(&source) {
                Check::Incomplete(message) if end >= input.len() => {
                    let message = lua::without_location(&message).to_owned();
                    return Err(LexError::IncompleteLua { line, message });
                }
                Check::Incomplete(_) if lines >= lua::BLOCK_LINES_MAX => return Err(LexError::LuaTooLong { line }),
                Check::Incomplete(_) => {
                    end = line_end(end + 1);
                    lines += 1;
                }
                Check::Complete | Check::Invalid(_) => break source,
            }
        };
        self.line += input[from..end].matches('\n').count();
        while self.chars.next_if(|&(at, _)| at < end).is_some() {}
        Ok(LuaChunk { source, line })
    }

    /// Reads a double-quoted part after its opening quote.
    fn double_quoted(&mut self, out: &mut Vec<u8>) -> Result<(), LexError> {
        let open_line = self.line;
        loop {
            let Some(c) = self.next() else {
                return Err(LexError::UnterminatedQuote { line: open_line });
            };
            match c {
                '"' => return Ok(()),
                '\\' => self.escape(out, open_line)?,
                c => {
                    if c == '\n' {
                        self.line += 1;
                    }
                    push_char(out, c);
                }
            }
        }
    }

    /// Reads one escape after its backslash, inside double quotes.
    fn escape(&mut self, out: &mut Vec<u8>, open_line: usize) -> Result<(), LexError> {
        let Some(c) = self.next() else {
            return Err(LexError::UnterminatedQuote { line: open_line });
        };
        match c {
            'n' => out.push(b'\n'),
            'r' => out.push(b'\r'),
            't' => out.push(b'\t'),
            '0' => out.push(0),
            '\\' | '"' | '\'' => push_char(out, c),
            'x' => {
                let digits: String = (0..2).filter_map(|_| self.next_if(char::is_ascii_hexdigit)).collect();
                let byte = u8::from_str_radix(&digits, 16)
                    .ok()
                    .filter(|_| digits.len() == 2)
                    .ok_or_else(|| self.bad_escape("\\x needs two hex digits, e.g. \\x0a".into()))?;
                out.push(byte);
            }
            'u' => {
                if self.next_if(|&c| c == '{').is_none() {
                    return Err(self.bad_escape("\\u needs braces, e.g. \\u{e9}".into()));
                }
                let mut digits = String::new();
                while let Some(d) = self.next_if(char::is_ascii_hexdigit) {
                    digits.push(d);
                }
                let c = (self.next_if(|&c| c == '}').is_some() && (1..=6).contains(&digits.len()))
                    .then(|| u32::from_str_radix(&digits, 16).ok())
                    .flatten()
                    .and_then(char::from_u32)
                    .ok_or_else(|| self.bad_escape(format!("\\u{{{digits}}} is not a character")))?;
                push_char(out, c);
            }
            other => {
                return Err(self.bad_escape(format!("unknown escape \\{other}; use \\\\ for a backslash")));
            }
        }
        Ok(())
    }

    /// Reads a single-quoted part after its opening quote.
    fn single_quoted(&mut self, out: &mut Vec<u8>) -> Result<(), LexError> {
        let open_line = self.line;
        loop {
            let Some(c) = self.next() else {
                return Err(LexError::UnterminatedQuote { line: open_line });
            };
            match c {
                '\'' => return Ok(()),
                '\\' => match self.next_if(|&c| c == '\'' || c == '\\') {
                    Some(escaped) => push_char(out, escaped),
                    None => out.push(b'\\'),
                },
                c => {
                    if c == '\n' {
                        self.line += 1;
                    }
                    push_char(out, c);
                }
            }
        }
    }

    fn bad_escape(&self, detail: String) -> LexError {
        LexError::BadEscape { line: self.line, detail }
    }
}

fn push_char(out: &mut Vec<u8>, c: char) {
    let mut buffer = [0; 4];
    out.extend_from_slice(c.encode_utf8(&mut buffer).as_bytes());
}

fn finish_word(words: &mut Vec<Word>, word: &mut Option<Word>) {
    if let Some(word) = word.take() {
        words.push(word);
    }
}

fn finish_statement(statements: &mut Vec<Statement>, words: &mut Vec<Word>, line: usize) {
    if !words.is_empty() {
        statements.push(Statement { line, words: std::mem::take(words), lua: None });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(input: &str) -> Vec<Vec<String>> {
        split(input).expect("valid input").into_iter().map(|s| s.words.iter().map(Word::lossy).collect()).collect()
    }

    #[test]
    fn splits_on_semicolons_and_newlines() {
        assert_eq!(texts("set a 1; get a\n\n  del a ;;"), [vec!["set", "a", "1"], vec!["get", "a"], vec!["del", "a"]]);
    }

    #[test]
    fn comments_start_only_at_word_starts() {
        assert_eq!(texts("# a comment\nset k#1 v # trailing"), [vec!["set", "k#1", "v"]]);
        assert_eq!(texts("set k \"#not a comment\""), [vec!["set", "k", "#not a comment"]]);
    }

    #[test]
    fn quotes_protect_separators_and_mark_words() {
        let statements = split("set 'a b' \"x;y\" nx").expect("valid input");
        assert_eq!(statements.len(), 1);
        let words = &statements[0].words;
        assert_eq!(words[1], Word { bytes: b"a b".to_vec(), quoted: true, bare_len: 0 });
        assert_eq!(words[2], Word { bytes: b"x;y".to_vec(), quoted: true, bare_len: 0 });
        assert!(words[3].is_keyword("NX"));
        assert!(!Word { bytes: b"nx".to_vec(), quoted: true, bare_len: 0 }.is_keyword("nx"));
    }

    #[test]
    fn empty_quotes_are_a_word() {
        assert_eq!(texts("set k \"\""), [vec!["set", "k", ""]]);
        assert_eq!(texts("set k ''"), [vec!["set", "k", ""]]);
    }

    #[test]
    fn double_quote_escapes() {
        let statements = split(r#"set k "a\n\t\"\\\x00\xff\u{e9}\0""#).expect("valid input");
        assert_eq!(statements[0].words[2].bytes, b"a\n\t\"\\\x00\xff\xc3\xa9\x00".to_vec());
    }

    #[test]
    fn single_quote_escapes_only_quote_and_backslash() {
        let statements = split(r"set k 'it\'s \\ \n'").expect("valid input");
        assert_eq!(statements[0].words[2].bytes, b"it's \\ \\n".to_vec());
    }

    #[test]
    fn bad_escapes_are_errors() {
        for bad in [r#""\q""#, r#""\x4""#, r#""\xzz""#, r#""\u00e9""#, r#""\u{110000}""#, r#""\u{}""#] {
            assert!(matches!(split(bad), Err(LexError::BadEscape { .. })), "{bad}");
        }
    }

    #[test]
    fn unterminated_quotes_name_their_line() {
        assert_eq!(split("get a\nset k \"v"), Err(LexError::UnterminatedQuote { line: 2 }));
        assert_eq!(split("set k 'v"), Err(LexError::UnterminatedQuote { line: 1 }));
        assert_eq!(split("set k \"v\\"), Err(LexError::UnterminatedQuote { line: 1 }));
        assert!(is_incomplete("set k \"multi"));
        assert!(!is_incomplete("set k \"done\""));
    }

    #[test]
    fn quoted_values_span_lines_and_statements_keep_their_line() {
        let statements = split("get a\nset k \"x\ny\"\nget b").expect("valid input");
        assert_eq!(statements.iter().map(|s| s.line).collect::<Vec<_>>(), [1, 2, 4]);
        assert_eq!(statements[1].words[2].bytes, b"x\ny".to_vec());
    }

    #[test]
    fn words_concatenate_parts() {
        assert_eq!(texts("set a\"b c\"'d' v"), [vec!["set", "ab cd", "v"]]);
        let statements = split("run f.lua msg=\"a b\" x\"y\"z plain").expect("valid input");
        let bare: Vec<usize> = statements[0].words.iter().map(|w| w.bare_len).collect();
        assert_eq!(bare, [3, 5, 4, 1, 5]);
    }

    fn chunk(input: &str) -> (usize, String) {
        let statements = split(input).expect("valid input");
        let lua = statements.iter().find_map(|s| s.lua.clone()).expect("a Lua chunk");
        (lua.line, lua.source)
    }

    #[test]
    fn eval_takes_the_rest_of_the_line_raw() {
        let statements = split("get a; EVAL return #'x;y' -- \"odd\nget b").expect("valid input");
        assert_eq!(statements.len(), 3);
        assert_eq!(statements[1].words.iter().map(Word::lossy).collect::<Vec<_>>(), ["EVAL"]);
        assert_eq!(statements[1].lua.as_ref().map(|l| l.source.as_str()), Some("return #'x;y' -- \"odd"));
        assert_eq!(statements[2].line, 2);
        assert_eq!(chunk("eval"), (1, String::new()));
        // A word that only starts with eval is not eval.
        assert!(split("evaluate x").expect("valid input")[0].lua.is_none());
    }

    #[test]
    fn eval_continues_while_the_chunk_is_incomplete() {
        let input = "get a\neval for i = 1, 2 do\n  x = i\nend\nget b";
        assert_eq!(chunk(input), (2, "for i = 1, 2 do\n  x = i\nend".to_owned()));
        let statements = split(input).expect("valid input");
        assert_eq!(statements.iter().map(|s| s.line).collect::<Vec<_>>(), [1, 2, 5]);
        assert!(matches!(split("eval f(\n1,"), Err(LexError::IncompleteLua { line: 1, .. })));
    }

    #[test]
    fn lua_blocks_end_with_their_end() {
        let input = "# setup\nlua key=k 5\n  local n = 1\n  if n then return n end\nend\nget k";
        let statements = split(input).expect("valid input");
        assert_eq!(statements.len(), 2);
        let words: Vec<String> = statements[0].words.iter().map(Word::lossy).collect();
        assert_eq!(words, ["lua", "key=k", "5"]);
        let lua = statements[0].lua.clone().expect("a block");
        assert_eq!(lua.line, 2);
        assert_eq!(lua.source, "do\n  local n = 1\n  if n then return n end\nend");
        assert_eq!(statements[1].line, 6);
        assert_eq!(chunk("lua; return 1 end"), (1, "do  return 1 end".to_owned()));
        assert!(matches!(split("lua\nlocal x = 1"), Err(LexError::IncompleteLua { line: 1, .. })));
        assert!(matches!(split("get a\nlua"), Err(LexError::IncompleteLua { line: 2, .. })));
        // A syntax error ends the block at the first line after it that holds an `end`.
        assert_eq!(chunk("lua\nlocal = 1\nx()\nend\nget a").1, "do\nlocal = 1\nx()\nend");
        assert_eq!(chunk("eval local = 1\nget a").1, "local = 1");
    }

    #[test]
    fn quote_round_trips() {
        for text in ["plain", "", "a b", "x;y", "#hash", "say \"hi\"", "tab\there", "nl\n", "é", "back\\slash", "it's"]
        {
            let statements = split(&format!("get {}", quote(text))).expect("quoted text lexes");
            assert_eq!(statements[0].words[1].bytes, text.as_bytes(), "{text:?}");
        }
    }
}
