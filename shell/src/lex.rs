//! Splits shell input into statements of words.
//!
//! Statements end at a newline or a `;` outside quotes. A `#` that starts a word starts
//! a comment to the end of the line. Words are separated by whitespace; a word may
//! concatenate bare and quoted parts (`a"b c"` is `ab c`).
//!
//! Quoting: `"..."` understands `\n \r \t \0 \\ \" \' \xHH \u{H..}`; `'...'` understands
//! only `\'` and `\\`, every other backslash is literal. Both may span lines. Bare text
//! has no escapes. Words are bytes, since `\xHH` may produce invalid UTF-8.

use std::fmt;

/// One word of a statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Word {
    /// The word's bytes after quote removal and escapes.
    pub bytes: Vec<u8>,
    /// True when any part of the word was quoted: such a word is never a keyword.
    pub quoted: bool,
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

/// One statement: its words and the line it starts on (from 1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statement {
    /// Line of the statement's first word, counting from 1.
    pub line: usize,
    /// Its words; never empty.
    pub words: Vec<Word>,
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
}

impl fmt::Display for LexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LexError::UnterminatedQuote { line } => {
                write!(f, "line {line}: quote opened here is never closed")
            }
            LexError::BadEscape { line, detail } => write!(f, "line {line}: {detail}"),
        }
    }
}

impl std::error::Error for LexError {}

/// Splits `input` into statements, dropping empty ones and comments.
pub fn split(input: &str) -> Result<Vec<Statement>, LexError> {
    let mut lexer = Lexer { chars: input.chars().peekable(), line: 1 };
    let mut statements = Vec::new();
    let mut words = Vec::new();
    let mut word: Option<Word> = None;
    let mut start_line = 1;
    while let Some(c) = lexer.chars.next() {
        match c {
            '\n' | ';' => {
                finish_word(&mut words, &mut word);
                finish_statement(&mut statements, &mut words, start_line);
                if c == '\n' {
                    lexer.line += 1;
                }
            }
            c if c.is_whitespace() => finish_word(&mut words, &mut word),
            '#' if word.is_none() => while lexer.chars.next_if(|&c| c != '\n').is_some() {},
            '"' | '\'' => {
                if words.is_empty() && word.is_none() {
                    start_line = lexer.line;
                }
                let target = word.get_or_insert_with(|| Word { bytes: Vec::new(), quoted: true });
                target.quoted = true;
                if c == '"' {
                    lexer.double_quoted(&mut target.bytes)?;
                } else {
                    lexer.single_quoted(&mut target.bytes)?;
                }
            }
            c => {
                if words.is_empty() && word.is_none() {
                    start_line = lexer.line;
                }
                let target = word.get_or_insert_with(|| Word { bytes: Vec::new(), quoted: false });
                push_char(&mut target.bytes, c);
            }
        }
    }
    finish_word(&mut words, &mut word);
    finish_statement(&mut statements, &mut words, start_line);
    Ok(statements)
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
    chars: std::iter::Peekable<std::str::Chars<'a>>,
    /// Current line, from 1.
    line: usize,
}

impl Lexer<'_> {
    /// Reads a double-quoted part after its opening quote.
    fn double_quoted(&mut self, out: &mut Vec<u8>) -> Result<(), LexError> {
        let open_line = self.line;
        loop {
            let Some(c) = self.chars.next() else {
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
        let Some(c) = self.chars.next() else {
            return Err(LexError::UnterminatedQuote { line: open_line });
        };
        match c {
            'n' => out.push(b'\n'),
            'r' => out.push(b'\r'),
            't' => out.push(b'\t'),
            '0' => out.push(0),
            '\\' | '"' | '\'' => push_char(out, c),
            'x' => {
                let digits: String = (0..2).filter_map(|_| self.chars.next_if(char::is_ascii_hexdigit)).collect();
                let byte = u8::from_str_radix(&digits, 16)
                    .ok()
                    .filter(|_| digits.len() == 2)
                    .ok_or_else(|| self.bad_escape("\\x needs two hex digits, e.g. \\x0a".into()))?;
                out.push(byte);
            }
            'u' => {
                if self.chars.next_if_eq(&'{').is_none() {
                    return Err(self.bad_escape("\\u needs braces, e.g. \\u{e9}".into()));
                }
                let mut digits = String::new();
                while let Some(d) = self.chars.next_if(char::is_ascii_hexdigit) {
                    digits.push(d);
                }
                let c = (self.chars.next_if_eq(&'}').is_some() && (1..=6).contains(&digits.len()))
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
            let Some(c) = self.chars.next() else {
                return Err(LexError::UnterminatedQuote { line: open_line });
            };
            match c {
                '\'' => return Ok(()),
                '\\' => match self.chars.next_if(|&c| c == '\'' || c == '\\') {
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
        statements.push(Statement { line, words: std::mem::take(words) });
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
        assert_eq!(words[1], Word { bytes: b"a b".to_vec(), quoted: true });
        assert_eq!(words[2], Word { bytes: b"x;y".to_vec(), quoted: true });
        assert!(words[3].is_keyword("NX"));
        assert!(!Word { bytes: b"nx".to_vec(), quoted: true }.is_keyword("nx"));
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
