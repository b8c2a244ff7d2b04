//! The one error type of scripts.
//!
//! Every variant has a stable code ([`ScriptError::code`]) for the server to map to a
//! gRPC status. Only [`ScriptError::Conflict`] makes the engine re-run a script: it
//! promises nothing was committed. A retryable kernel error ([`KvError::is_retryable`])
//! is left to the client, because a commit that timed out may have landed.
//! Errors raised while the script runs name the script line (`script:3: ...`).

use std::fmt;

use kahuna_kernel::KvError;

use crate::cache::ScriptHash;

/// A script could not be loaded, failed, was stopped by a limit, or did not commit.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ScriptError {
    /// The text does not compile; the message names the line (`script:2: ...`).
    #[error("syntax error: {0}")]
    Syntax(String),
    /// The script raised an error (`error(...)`, indexing nil, ...); the message names
    /// the line when Lua knows it.
    #[error("{0}")]
    Runtime(String),
    /// A `kahuna` function was called with a bad argument, or a request broke a limit.
    #[error("{}invalid input: {message}", Line(*line))]
    InvalidInput { line: Option<u32>, message: String },
    /// No script with this hash is cached on this node: load the text, then run again.
    #[error("no script with hash {0} is loaded; load the script and run it again")]
    NotFound(ScriptHash),
    /// The script ran past its time budget (instructions plus waiting for reads).
    #[error("{}script ran past its time budget of {limit_ms} ms", Line(*line))]
    TimeLimit { limit_ms: u64, line: Option<u32> },
    /// The script executed more Lua instructions than its budget.
    #[error("{}script executed more than its budget of {limit} instructions", Line(*line))]
    InstructionLimit { limit: u64, line: Option<u32> },
    /// The script's Lua state needed more memory than its limit.
    #[error("script used more than its memory limit of {limit_bytes} bytes")]
    MemoryLimit { limit_bytes: usize },
    /// The script returned something that has no [`ScriptValue`](crate::ScriptValue)
    /// (a function, a cyclic or too deep table, ...).
    #[error("script return value: {0}")]
    Return(String),
    /// The transaction engine does not offer this function in scripts (yet).
    #[error("{}unsupported: {message}", Line(*line))]
    Unsupported { line: Option<u32>, message: String },
    /// Something the transaction read or wrote changed after its snapshot; nothing was
    /// committed, so running the script again is safe.
    #[error("{}conflict: {message}", Line(*line))]
    Conflict { line: Option<u32>, message: String },
    /// The transaction engine failed with a kernel error (not leader, compacted, ...).
    #[error("{}{error}", Line(*line))]
    Kv { line: Option<u32>, error: KvError },
    /// The script engine itself failed (a Lua state could not be built); not the
    /// script's fault.
    #[error("internal script error: {0}")]
    Internal(String),
}

impl ScriptError {
    /// A function the transaction engine does not implement; `message` says when or why.
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::Unsupported { line: None, message: message.into() }
    }

    /// A failed validation: nothing was committed and the script may run again.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::Conflict { line: None, message: message.into() }
    }

    /// A bad argument or a broken limit.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::InvalidInput { line: None, message: message.into() }
    }

    /// A stable name for the error, sent to clients beside the gRPC status.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Syntax(_) => "ScriptSyntax",
            Self::Runtime(_) => "ScriptRuntime",
            Self::InvalidInput { .. } => "InvalidInput",
            Self::NotFound(_) => "ScriptNotFound",
            Self::TimeLimit { .. } => "ScriptTimeLimit",
            Self::InstructionLimit { .. } => "ScriptInstructionLimit",
            Self::MemoryLimit { .. } => "ScriptMemoryLimit",
            Self::Return(_) => "ScriptReturn",
            Self::Unsupported { .. } => "Unsupported",
            Self::Conflict { .. } => "Conflict",
            Self::Kv { error, .. } => error.code(),
            Self::Internal(_) => "Internal",
        }
    }

    /// Whether the engine re-runs the script on this error: only a conflict, which
    /// guarantees nothing was committed.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Conflict { .. })
    }

    /// Whether a client may send the same request again and hope for success.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Conflict { .. } | Self::NotFound(_) => true,
            Self::Kv { error, .. } => error.is_retryable(),
            _ => false,
        }
    }

    /// The script line the error names, if any.
    pub fn line(&self) -> Option<u32> {
        match self {
            Self::InvalidInput { line, .. }
            | Self::TimeLimit { line, .. }
            | Self::InstructionLimit { line, .. }
            | Self::Unsupported { line, .. }
            | Self::Conflict { line, .. }
            | Self::Kv { line, .. } => *line,
            _ => None,
        }
    }

    /// Names `at` as the script line of the error, unless it already names one.
    pub(crate) fn at_line(mut self, at: Option<u32>) -> Self {
        match &mut self {
            Self::InvalidInput { line, .. }
            | Self::TimeLimit { line, .. }
            | Self::InstructionLimit { line, .. }
            | Self::Unsupported { line, .. }
            | Self::Conflict { line, .. }
            | Self::Kv { line, .. }
                if line.is_none() =>
            {
                *line = at;
            }
            _ => {}
        }
        self
    }

    /// The error a Lua call ended with, unwrapped from mlua's callback layers.
    pub(crate) fn from_lua(error: &mlua::Error) -> Self {
        if let Some(e) = error.downcast_ref::<ScriptError>() {
            return e.clone();
        }
        match error {
            mlua::Error::SyntaxError { message, .. } => Self::Syntax(message.clone()),
            // The message, without the traceback mlua appends (it names sandbox internals).
            mlua::Error::RuntimeError(message) => {
                Self::Runtime(message.split("\nstack traceback:").next().unwrap_or(message).to_string())
            }
            mlua::Error::CallbackError { cause, .. } | mlua::Error::WithContext { cause, .. } => Self::from_lua(cause),
            other => Self::Runtime(other.to_string()),
        }
    }

    /// The error as a Lua error, keeping its type for [`ScriptError::from_lua`].
    pub(crate) fn into_lua(self) -> mlua::Error {
        mlua::Error::external(self)
    }
}

impl From<KvError> for ScriptError {
    /// A failed validation stays a conflict (the engine re-runs the script on it) and bad
    /// input stays bad input; any other kernel error is carried as is.
    fn from(error: KvError) -> Self {
        match error {
            KvError::Conflict(message) => Self::Conflict { line: None, message },
            KvError::InvalidInput(message) => Self::InvalidInput { line: None, message },
            error => Self::Kv { line: None, error },
        }
    }
}

/// Shows `script:N: ` before a message when the line is known.
struct Line(Option<u32>);

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(n) => write!(f, "script:{n}: "),
            None => Ok(()),
        }
    }
}
