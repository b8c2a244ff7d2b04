//! The client's error type and its mapping from gRPC statuses.
//!
//! The server sends a gRPC status code plus the metadata `kahuna-code` with a stable code
//! name. A known `kahuna-code` decides the variant; otherwise the gRPC code does.

use tonic::{Code, Status};

/// Metadata key under which the server puts the stable error code name.
pub const KAHUNA_CODE_METADATA: &str = "kahuna-code";
/// Metadata key the server sets to `not-committed` on a script error that surely had no
/// effect although its code alone leaves the outcome open.
pub(crate) const OUTCOME_METADATA: &str = "kahuna-outcome";

/// Message prefix tonic uses when a channel failed before the request was sent.
pub(crate) const NOT_READY_PREFIX: &str = "Service was not ready";
/// Message prefix tonic uses when the connection broke during a call (the node died).
const TRANSPORT_PREFIX: &str = "transport error";

/// An error from a Kahuna call.
///
/// Retryable errors ([`Error::is_retryable`]) may succeed when the same call is made
/// again; the client already retried the safe ones (reads, and writes carrying an operation
/// id) on other endpoints before returning them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The request is malformed or breaks a limit; the message names the problem.
    /// Not retryable.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// No node or no partition leader could be reached. Retryable.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The requested history point (revision or timestamp) has been compacted away.
    /// Not retryable.
    #[error("compacted: {0}")]
    Compacted(String),
    /// The call did not finish in time, either the client's per-request timeout or the
    /// server's deadline. A write may or may not have been applied. Retryable.
    #[error("timed out: {0}")]
    Timeout(String),
    /// A transaction's validation failed: something it read, scanned or wrote changed
    /// after its snapshot (for a script: still so after the server re-ran it a few
    /// times). Nothing was committed. Retryable only by running the *whole* transaction
    /// again from [`Client::begin`](crate::Client::begin), reads included: repeating the
    /// failed call, or committing the same transaction again, cannot succeed.
    #[error("conflict: {0}")]
    Conflict(String),
    /// A key is held by another transaction that prepared its commit and is not resolved
    /// yet. Retryable: the same call may succeed once that transaction ends (the server
    /// resolves an abandoned one after its timeout).
    #[error("locked: {0}")]
    Locked(String),
    /// A script failed to compile, raised an error, returned a value that cannot cross
    /// the wire, hit a limit, or is not loaded on the node (see [`ScriptErrorKind`]). The
    /// message names the script line (`script:3: ...`, see [`Error::script_line`]).
    /// Nothing the script wrote was committed. Not retryable, except
    /// [`ScriptErrorKind::NotLoaded`], which [`Client::eval`](crate::Client::eval)
    /// handles by sending the text.
    #[error("{}: {message}", kind.code())]
    Script {
        /// What went wrong.
        kind: ScriptErrorKind,
        /// Human-readable detail, with the script line when known.
        message: String,
    },
    /// The named object does not exist. Not retryable.
    #[error("not found: {0}")]
    NotFound(String),
    /// A sequence cannot hand out the values asked for without passing its maximum;
    /// nothing was allocated. Not retryable.
    #[error("exhausted: {0}")]
    Exhausted(String),
    /// Any other error, with its stable code name (the server's `kahuna-code`, or the gRPC
    /// code name when the server sent none).
    #[error("{code}: {message}")]
    Other {
        /// Stable code name, e.g. `Internal`.
        code: String,
        /// Human-readable detail.
        message: String,
    },
}

impl Error {
    /// Returns the stable code name of this error, as used in the shell's JSON output
    /// and in the server's `kahuna-code` metadata.
    pub fn code(&self) -> &str {
        match self {
            Error::InvalidInput(_) => "InvalidInput",
            Error::Unavailable(_) => "Unavailable",
            Error::Compacted(_) => "Compacted",
            Error::Timeout(_) => "Timeout",
            Error::Conflict(_) => "Conflict",
            Error::Locked(_) => "Locked",
            Error::Script { kind, .. } => kind.code(),
            Error::NotFound(_) => "NotFound",
            Error::Exhausted(_) => "Exhausted",
            Error::Other { code, .. } => code,
        }
    }

    /// Returns the detail message without the code.
    pub fn message(&self) -> &str {
        match self {
            Error::InvalidInput(m)
            | Error::Unavailable(m)
            | Error::Compacted(m)
            | Error::Timeout(m)
            | Error::Conflict(m)
            | Error::Locked(m)
            | Error::NotFound(m)
            | Error::Exhausted(m) => m,
            Error::Script { message, .. } | Error::Other { message, .. } => message,
        }
    }

    /// Returns the script line the error names (`script:N:` in the message), for errors
    /// from scripts.
    pub fn script_line(&self) -> Option<u32> {
        let message = self.message();
        message.match_indices("script:").find_map(|(at, prefix)| {
            let rest = &message[at + prefix.len()..];
            let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            rest[digits..].starts_with(':').then(|| rest[..digits].parse().ok()).flatten()
        })
    }

    /// Returns true when making the same call again may succeed: `Unavailable`, `Timeout`,
    /// `Locked` and `Conflict`. A write is only safe to repeat when it carries an operation
    /// id; a script only when its effects are idempotent (a `Timeout` may hide a commit);
    /// and a `Conflict` only by running the whole transaction again from its begin.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Unavailable(_) | Error::Timeout(_) | Error::Conflict(_) | Error::Locked(_))
    }

    /// Returns true when the endpoint that produced this error should be abandoned for the
    /// next one: the node is down, unreachable or too slow.
    pub(crate) fn is_failover(&self) -> bool {
        matches!(self, Error::Unavailable(_) | Error::Timeout(_))
    }

    /// Returns true when the request surely never reached a server: the channel could not
    /// connect, so even a call that is not idempotent (a script) may be sent again.
    pub(crate) fn is_not_sent(&self) -> bool {
        matches!(self, Error::Unavailable(message) if message.starts_with(NOT_READY_PREFIX))
    }

    /// Maps a gRPC status to an error: a known `kahuna-code` first, then the gRPC code.
    pub fn from_status(status: &Status) -> Error {
        let message = if status.message().is_empty() {
            status.code().description().to_owned()
        } else {
            status.message().to_owned()
        };
        let kahuna_code = status
            .metadata()
            .get(KAHUNA_CODE_METADATA)
            .and_then(|value| value.to_str().ok())
            .map(str::trim)
            .filter(|code| !code.is_empty());
        if let Some(error) = kahuna_code.and_then(|code| Self::from_kahuna_code(code, &message)) {
            return error;
        }
        match status.code() {
            Code::InvalidArgument => Error::InvalidInput(message),
            Code::Unavailable => Error::Unavailable(message),
            Code::OutOfRange => Error::Compacted(message),
            Code::DeadlineExceeded => Error::Timeout(message),
            Code::Aborted => Error::Conflict(message),
            Code::NotFound => Error::NotFound(message),
            // tonic reports its own client-side `Endpoint::timeout` as CANCELLED.
            Code::Cancelled if message.contains("Timeout expired") => Error::Timeout(message),
            // tonic reports a channel that failed before sending, or a connection that
            // broke mid-call, as UNKNOWN: either way the node is gone.
            Code::Unknown if message.starts_with(NOT_READY_PREFIX) || message.starts_with(TRANSPORT_PREFIX) => {
                Error::Unavailable(message)
            }
            code => Error::Other { code: kahuna_code.map_or_else(|| format!("{code:?}"), str::to_owned), message },
        }
    }

    /// Maps the server's stable code names that have a variant of their own.
    fn from_kahuna_code(code: &str, message: &str) -> Option<Error> {
        let message = message.to_owned();
        Some(match code {
            "InvalidInput" => Error::InvalidInput(message),
            "Unavailable" | "NotLeader" | "NoLeader" => Error::Unavailable(message),
            "Compacted" => Error::Compacted(message),
            "Timeout" => Error::Timeout(message),
            "Conflict" => Error::Conflict(message),
            "Locked" => Error::Locked(message),
            "NotFound" => Error::NotFound(message),
            "Exhausted" => Error::Exhausted(message),
            code => Error::Script { kind: ScriptErrorKind::from_code(code)?, message },
        })
    }
}

/// The ways a script fails, beside the key/value errors of the calls it makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ScriptErrorKind {
    /// The text does not compile (code `ScriptSyntax`).
    Syntax,
    /// The script raised an error: `error(...)`, indexing nil, a sandboxed function such
    /// as `io.open` or `require` (code `ScriptRuntime`).
    Runtime,
    /// The script returned something that has no [`ScriptValue`](crate::ScriptValue), such
    /// as a function or a cyclic table (code `ScriptReturn`).
    Return,
    /// No script with the hash is cached on the node: send the text (code
    /// `ScriptNotFound`).
    NotLoaded,
    /// The script ran past the node's time budget (code `ScriptTimeLimit`).
    TimeLimit,
    /// The script ran more Lua instructions than its budget (code
    /// `ScriptInstructionLimit`).
    InstructionLimit,
    /// The script's Lua state needed more memory than its limit (code
    /// `ScriptMemoryLimit`).
    MemoryLimit,
    /// The script called a function the node does not offer in scripts yet (code
    /// `Unsupported`).
    Unsupported,
}

impl ScriptErrorKind {
    /// Returns the stable code name the server sends for this kind.
    pub fn code(self) -> &'static str {
        match self {
            ScriptErrorKind::Syntax => "ScriptSyntax",
            ScriptErrorKind::Runtime => "ScriptRuntime",
            ScriptErrorKind::Return => "ScriptReturn",
            ScriptErrorKind::NotLoaded => "ScriptNotFound",
            ScriptErrorKind::TimeLimit => "ScriptTimeLimit",
            ScriptErrorKind::InstructionLimit => "ScriptInstructionLimit",
            ScriptErrorKind::MemoryLimit => "ScriptMemoryLimit",
            ScriptErrorKind::Unsupported => "Unsupported",
        }
    }

    fn from_code(code: &str) -> Option<ScriptErrorKind> {
        Some(match code {
            "ScriptSyntax" => ScriptErrorKind::Syntax,
            "ScriptRuntime" => ScriptErrorKind::Runtime,
            "ScriptReturn" => ScriptErrorKind::Return,
            "ScriptNotFound" => ScriptErrorKind::NotLoaded,
            "ScriptTimeLimit" => ScriptErrorKind::TimeLimit,
            "ScriptInstructionLimit" => ScriptErrorKind::InstructionLimit,
            "ScriptMemoryLimit" => ScriptErrorKind::MemoryLimit,
            "Unsupported" => ScriptErrorKind::Unsupported,
            _ => return None,
        })
    }
}

impl From<Status> for Error {
    fn from(status: Status) -> Error {
        Error::from_status(&status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::metadata::MetadataMap;

    fn with_code(code: Code, message: &str, kahuna_code: &str) -> Status {
        let mut metadata = MetadataMap::new();
        metadata.insert(KAHUNA_CODE_METADATA, kahuna_code.parse().expect("valid metadata value"));
        Status::with_metadata(code, message, metadata)
    }

    #[test]
    fn grpc_codes_map_to_variants() {
        let cases = [
            (Code::InvalidArgument, "InvalidInput"),
            (Code::Unavailable, "Unavailable"),
            (Code::OutOfRange, "Compacted"),
            (Code::DeadlineExceeded, "Timeout"),
            (Code::Aborted, "Conflict"),
            (Code::NotFound, "NotFound"),
            (Code::Internal, "Internal"),
            (Code::PermissionDenied, "PermissionDenied"),
        ];
        for (code, expected) in cases {
            let error = Error::from_status(&Status::new(code, "detail"));
            assert_eq!(error.code(), expected, "{code:?}");
            assert_eq!(error.message(), "detail");
        }
    }

    #[test]
    fn kahuna_code_wins_over_grpc_code() {
        let status = with_code(Code::FailedPrecondition, "no leader for partition 3", "NotLeader");
        assert_eq!(Error::from_status(&status), Error::Unavailable("no leader for partition 3".into()));
        let status = with_code(Code::Unknown, "txn aborted", "Conflict");
        assert_eq!(Error::from_status(&status), Error::Conflict("txn aborted".into()));
    }

    #[test]
    fn unknown_kahuna_code_keeps_grpc_mapping_or_names_itself() {
        let status = with_code(Code::InvalidArgument, "value is 2 MiB, limit 1 MiB", "ValueTooLarge");
        assert_eq!(Error::from_status(&status), Error::InvalidInput("value is 2 MiB, limit 1 MiB".into()));
        let status = with_code(Code::FailedPrecondition, "lock held", "LockHeld");
        assert_eq!(Error::from_status(&status), Error::Other { code: "LockHeld".into(), message: "lock held".into() });
    }

    #[test]
    fn tonic_transport_messages_map_to_failover_errors() {
        let not_ready = Status::unknown("Service was not ready: transport error");
        assert!(Error::from_status(&not_ready).is_failover());
        let broken = Status::unknown("transport error");
        assert!(Error::from_status(&broken).is_failover());
        let expired = Status::cancelled("Timeout expired");
        assert!(matches!(Error::from_status(&expired), Error::Timeout(_)));
        let cancelled = Status::cancelled("client went away");
        assert_eq!(Error::from_status(&cancelled).code(), "Cancelled");
    }

    #[test]
    fn transaction_and_script_codes() {
        let locked = Error::from_status(&with_code(Code::Unavailable, "key k is held", "Locked"));
        assert_eq!(locked, Error::Locked("key k is held".into()));
        assert!(locked.is_retryable() && !locked.is_failover());
        let conflict = Error::from_status(&with_code(Code::Aborted, "conflict: k changed", "Conflict"));
        assert!(matches!(conflict, Error::Conflict(_)) && !conflict.is_failover());
        let boom = Error::from_status(&with_code(Code::FailedPrecondition, "script:3: boom", "ScriptRuntime"));
        assert_eq!(boom, Error::Script { kind: ScriptErrorKind::Runtime, message: "script:3: boom".into() });
        assert_eq!(boom.code(), "ScriptRuntime");
        assert_eq!(boom.script_line(), Some(3));
        assert!(!boom.is_retryable());
        for kind in [
            ScriptErrorKind::Syntax,
            ScriptErrorKind::Runtime,
            ScriptErrorKind::Return,
            ScriptErrorKind::NotLoaded,
            ScriptErrorKind::TimeLimit,
            ScriptErrorKind::InstructionLimit,
            ScriptErrorKind::MemoryLimit,
            ScriptErrorKind::Unsupported,
        ] {
            assert_eq!(ScriptErrorKind::from_code(kind.code()), Some(kind));
        }
        let invalid = Error::InvalidInput("script:12: invalid input: kahuna.set: key is empty".into());
        assert_eq!(invalid.script_line(), Some(12));
        assert_eq!(Error::InvalidInput("script: none".into()).script_line(), None);
        assert_eq!(Error::InvalidInput("syntax error: script:2: x".into()).script_line(), Some(2));
    }

    #[test]
    fn only_connection_failures_count_as_not_sent() {
        assert!(Error::from_status(&Status::unknown("Service was not ready: transport error")).is_not_sent());
        assert!(!Error::from_status(&Status::unknown("transport error")).is_not_sent());
        assert!(!Error::from_status(&Status::unavailable("no leader")).is_not_sent());
        assert!(!Error::Timeout("x".into()).is_not_sent());
    }

    #[test]
    fn empty_message_gets_the_code_description() {
        let error = Error::from_status(&Status::new(Code::Unavailable, ""));
        assert!(!error.message().is_empty());
    }

    #[test]
    fn retryable_and_failover_classes() {
        assert!(Error::Unavailable(String::new()).is_retryable());
        assert!(Error::Timeout(String::new()).is_retryable());
        assert!(Error::Conflict(String::new()).is_retryable());
        assert!(!Error::Conflict(String::new()).is_failover());
        assert!(!Error::InvalidInput(String::new()).is_retryable());
        assert!(!Error::Compacted(String::new()).is_retryable());
        assert!(!Error::NotFound(String::new()).is_retryable());
        assert!(!Error::Exhausted(String::new()).is_retryable());
    }
}
