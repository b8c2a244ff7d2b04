//! Syntax highlighting for the REPL: command words, quoted strings and numbers in
//! distinct ANSI colours. The REPL uses it only when stdout is a terminal and
//! `NO_COLOR` is not set. The Lua after `eval` is left as it is: its `#`, `;` and quotes
//! are not the shell's.

/// Command words: bold cyan.
pub const COMMAND: &str = "\x1b[1;36m";
/// Quoted strings: green.
pub const STRING: &str = "\x1b[32m";
/// Numbers: yellow.
pub const NUMBER: &str = "\x1b[33m";
/// Comments and hints: dim.
pub const DIM: &str = "\x1b[2m";
/// Back to normal.
pub const RESET: &str = "\x1b[0m";

/// Returns `line` with ANSI colours around its quoted strings, numbers and comments, and
/// around its command words when `commands` is set. The text itself is unchanged; an
/// unclosed quote is coloured to the end.
pub fn highlight(line: &str, commands: bool) -> String {
    let mut out = String::with_capacity(line.len() * 2);
    let mut chars = line.char_indices().peekable();
    let mut statement_start = true;
    while let Some(&(start, c)) = chars.peek() {
        if statement_start && is_eval(&line[start..]) {
            let end = line[start..].find('\n').map_or(line.len(), |i| start + i);
            if commands {
                paint(&mut out, COMMAND, &line[start..start + 4]);
            } else {
                out.push_str(&line[start..start + 4]);
            }
            out.push_str(&line[start + 4..end]);
            while chars.next_if(|&(i, _)| i < end).is_some() {}
            statement_start = false;
            continue;
        }
        match c {
            '\n' | ';' => {
                statement_start = true;
                out.push(c);
                chars.next();
            }
            c if c.is_whitespace() => {
                out.push(c);
                chars.next();
            }
            '#' => {
                let mut end = line.len();
                while let Some(&(i, c)) = chars.peek() {
                    if c == '\n' {
                        end = i;
                        break;
                    }
                    chars.next();
                }
                paint(&mut out, DIM, &line[start..end]);
            }
            _ => {
                // One word: bare runs and quoted runs until whitespace or `;` outside quotes.
                let mut bare = String::new();
                let mut pieces: Vec<(bool, usize, usize)> = Vec::new();
                let mut run_start = start;
                while let Some(&(i, c)) = chars.peek() {
                    if c.is_whitespace() || c == ';' {
                        break;
                    }
                    if c == '"' || c == '\'' {
                        if i > run_start {
                            pieces.push((false, run_start, i));
                        }
                        chars.next();
                        let mut end = line.len();
                        while let Some((j, d)) = chars.next() {
                            if d == '\\' {
                                chars.next();
                            } else if d == c {
                                end = j + d.len_utf8();
                                break;
                            }
                        }
                        pieces.push((true, i, end));
                        run_start = end;
                    } else {
                        bare.push(c);
                        chars.next();
                    }
                }
                let end = chars.peek().map_or(line.len(), |&(i, _)| i);
                if end > run_start {
                    pieces.push((false, run_start, end));
                }
                let whole_bare = pieces.iter().all(|(quoted, _, _)| !quoted);
                if whole_bare && statement_start && commands {
                    paint(&mut out, COMMAND, &line[start..end]);
                } else if whole_bare && is_number(&bare) {
                    paint(&mut out, NUMBER, &line[start..end]);
                } else {
                    for (quoted, from, to) in pieces {
                        if quoted {
                            paint(&mut out, STRING, &line[from..to]);
                        } else {
                            out.push_str(&line[from..to]);
                        }
                    }
                }
                statement_start = false;
            }
        }
    }
    out
}

/// Returns true when `text` starts with the word `eval` (any case), whose chunk is Lua.
fn is_eval(text: &str) -> bool {
    text.get(..4).is_some_and(|w| w.eq_ignore_ascii_case("eval"))
        && text[4..].chars().next().is_none_or(|c| matches!(c, ' ' | '\t' | '\n' | '\r'))
}

/// Appends `text` in `colour`.
fn paint(out: &mut String, colour: &str, text: &str) {
    out.push_str(colour);
    out.push_str(text);
    out.push_str(RESET);
}

/// Returns true for an integer or decimal, optionally negative (`42`, `-1`, `1.5`).
fn is_number(word: &str) -> bool {
    let digits = word.strip_prefix('-').unwrap_or(word);
    let mut parts = digits.splitn(2, '.');
    let whole = parts.next().unwrap_or("");
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    all_digits(whole) && parts.next().is_none_or(all_digits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn highlight_all(line: &str) -> String {
        highlight(line, true)
    }

    fn strip(text: &str) -> String {
        let mut out = String::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            if c == '\x1b' {
                for d in chars.by_ref() {
                    if d == 'm' {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    }

    #[test]
    fn colours_commands_strings_and_numbers() {
        assert_eq!(
            highlight_all("set k \"a b\" ex 500"),
            format!("{COMMAND}set{RESET} k {STRING}\"a b\"{RESET} ex {NUMBER}500{RESET}")
        );
        assert_eq!(
            highlight_all("get a; EDEL 'x\\'y'"),
            format!("{COMMAND}get{RESET} a; {COMMAND}EDEL{RESET} {STRING}'x\\'y'{RESET}")
        );
        assert_eq!(highlight_all("extend k -1.5"), format!("{COMMAND}extend{RESET} k {NUMBER}-1.5{RESET}"));
        assert_eq!(highlight_all("ping # hi"), format!("{COMMAND}ping{RESET} {DIM}# hi{RESET}"));
        assert_eq!(
            highlight_all("set a\"b\"c 1"),
            format!("{COMMAND}set{RESET} a{STRING}\"b\"{RESET}c {NUMBER}1{RESET}")
        );
        // Not numbers: 1.2.3, 12ms, a lone minus.
        assert_eq!(highlight_all("x 1.2.3 12ms -"), format!("{COMMAND}x{RESET} 1.2.3 12ms -"));
    }

    #[test]
    fn command_words_only_on_request() {
        assert_eq!(
            highlight("get k; set k \"v\" ex 5", false),
            format!("get k; set k {STRING}\"v\"{RESET} ex {NUMBER}5{RESET}")
        );
        assert_eq!(highlight("get repl/marker", false), "get repl/marker");
    }

    #[test]
    fn text_is_unchanged_apart_from_colours() {
        for line in ["", "   ", "set \"open", "set k 'unclosed \\", "a;;b\n c 1 # x\nd", "é \"ü\" 3", "'set' k"] {
            assert_eq!(strip(&highlight(line, true)), line, "{line:?}");
            assert_eq!(strip(&highlight(line, false)), line, "{line:?}");
        }
        assert_eq!(highlight_all("'set' k"), format!("{STRING}'set'{RESET} k"));
    }

    #[test]
    fn lua_after_eval_is_left_alone() {
        assert_eq!(highlight_all("eval return #t; -- \"x\""), format!("{COMMAND}eval{RESET} return #t; -- \"x\""));
        assert_eq!(
            highlight_all("get a; EVAL x 1\nget 'b'"),
            format!("{COMMAND}get{RESET} a; {COMMAND}EVAL{RESET} x 1\n{COMMAND}get{RESET} {STRING}'b'{RESET}")
        );
        assert_eq!(highlight("evaluate 1", false), format!("evaluate {NUMBER}1{RESET}"));
    }
}
