//! The client's error type and its mapping from gRPC statuses.
//!
//! The server sends a gRPC status code plus the metadata `kahuna-code` with a stable code
//! name. A known `kahuna-code` decides the variant; otherwise the gRPC code does.

use tonic::{Code, Status};

/// Metadata key under which the server puts the stable error code name.
pub const KAHUNA_CODE_METADATA: &str = "kahuna-code";

/// Message prefix tonic uses when a channel failed before the request was sent.
const NOT_READY_PREFIX: &str = "Service was not ready";
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
    /// A concurrent change invalidated the operation (transactions, scripts). Retryable
    /// by the caller after re-reading.
    #[error("conflict: {0}")]
    Conflict(String),
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
            | Error::NotFound(m)
            | Error::Exhausted(m) => m,
            Error::Other { message, .. } => message,
        }
    }

    /// Returns true when making the same call again may succeed: `Unavailable`, `Timeout`
    /// and `Conflict`. A write is only safe to repeat when it carries an operation id.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Unavailable(_) | Error::Timeout(_) | Error::Conflict(_))
    }

    /// Returns true when the endpoint that produced this error should be abandoned for the
    /// next one: the node is down, unreachable or too slow.
    pub(crate) fn is_failover(&self) -> bool {
        matches!(self, Error::Unavailable(_) | Error::Timeout(_))
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
            "NotFound" => Error::NotFound(message),
            "Exhausted" => Error::Exhausted(message),
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
