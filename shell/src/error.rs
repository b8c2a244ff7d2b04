//! The shell's error: a stable code and a message, from parsing or from the client.

use std::fmt;

use crate::lex::LexError;
use crate::parse::ParseError;

/// Code of errors the shell finds before contacting a server (syntax, bad arguments).
pub const INVALID_INPUT: &str = "InvalidInput";

/// A failed command: its stable code (as in the client's `Error::code`) and a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShellError {
    /// Stable code name, e.g. `InvalidInput`, `Unavailable`.
    pub code: String,
    /// Human-readable detail.
    pub message: String,
    /// A second line for people, such as the script line an error names.
    pub detail: Option<String>,
}

impl ShellError {
    /// Returns an error with `code`.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> ShellError {
        ShellError { code: code.into(), message: message.into(), detail: None }
    }

    /// Returns an `InvalidInput` error.
    pub fn invalid(message: impl Into<String>) -> ShellError {
        ShellError::new(INVALID_INPUT, message)
    }
}

impl fmt::Display for ShellError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl std::error::Error for ShellError {}

impl From<kahuna_client::Error> for ShellError {
    fn from(error: kahuna_client::Error) -> ShellError {
        ShellError::new(error.code(), error.message())
    }
}

impl From<ParseError> for ShellError {
    fn from(error: ParseError) -> ShellError {
        ShellError { detail: error.detail, ..ShellError::invalid(error.message) }
    }
}

impl From<LexError> for ShellError {
    fn from(error: LexError) -> ShellError {
        ShellError::invalid(error.to_string())
    }
}
