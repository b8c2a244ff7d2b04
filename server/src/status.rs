//! The one place where kernel and script errors become gRPC statuses.
//!
//! Each status carries the metadata `kahuna-code` with the error's stable code, so
//! clients can tell a `NotLeader` from an `Unavailable` without parsing messages.
//!
//! | error | gRPC code |
//! |---|---|
//! | InvalidInput, ScriptSyntax, ScriptReturn | INVALID_ARGUMENT |
//! | NotLeader, Unavailable, Locked | UNAVAILABLE |
//! | Conflict | ABORTED |
//! | Compacted | OUT_OF_RANGE |
//! | Timeout | DEADLINE_EXCEEDED |
//! | NotFound, ScriptNotFound | NOT_FOUND |
//! | Exhausted, ScriptRuntime | FAILED_PRECONDITION |
//! | ScriptTimeLimit, ScriptInstructionLimit, ScriptMemoryLimit | RESOURCE_EXHAUSTED |
//! | Unsupported | UNIMPLEMENTED |
//! | Internal | INTERNAL |
//!
//! A script's limits are RESOURCE_EXHAUSTED rather than DEADLINE_EXCEEDED: the script,
//! not the cluster, ran out, and sending it again would end the same way.

use kahuna_kernel::KvError;
use kahuna_script::ScriptError;
use tonic::metadata::MetadataValue;
use tonic::{Code, Status};

/// Metadata key holding the stable error code.
pub const CODE_METADATA: &str = "kahuna-code";
/// Metadata key set (to [`NOT_COMMITTED`]) on a script error that surely committed
/// nothing although its code alone would leave the outcome open (an `Unavailable` or
/// `Timeout` raised by a call inside the script, before its commit), so that a client
/// may run the script again.
pub const OUTCOME_METADATA: &str = "kahuna-outcome";
/// The value of [`OUTCOME_METADATA`]: the request had no effect.
pub const NOT_COMMITTED: &str = "not-committed";

fn kv_code(e: &KvError) -> Code {
    match e {
        KvError::InvalidInput(_) => Code::InvalidArgument,
        KvError::NotLeader { .. } | KvError::Unavailable(_) | KvError::Locked { .. } => Code::Unavailable,
        KvError::Compacted(_) => Code::OutOfRange,
        KvError::Timeout(_) => Code::DeadlineExceeded,
        KvError::NotFound(_) => Code::NotFound,
        KvError::Exhausted(_) => Code::FailedPrecondition,
        KvError::Conflict(_) => Code::Aborted,
        _ => Code::Internal,
    }
}

fn with_code(code: Code, message: String, kahuna_code: &'static str) -> Status {
    let mut status = Status::new(code, message);
    status.metadata_mut().insert(CODE_METADATA, MetadataValue::from_static(kahuna_code));
    status
}

/// Maps a kernel error to its gRPC status.
pub fn to_status(e: KvError) -> Status {
    // The client names the kind from the code; the message says only what happened.
    with_code(kv_code(&e), e.message(), e.code())
}

/// Maps a script error to its gRPC status; the message keeps the script line.
pub fn script_status(e: ScriptError) -> Status {
    let code = match &e {
        ScriptError::Syntax(_) | ScriptError::InvalidInput { .. } | ScriptError::Return(_) => Code::InvalidArgument,
        ScriptError::Runtime(_) => Code::FailedPrecondition,
        ScriptError::NotFound(_) => Code::NotFound,
        ScriptError::TimeLimit { .. } | ScriptError::InstructionLimit { .. } | ScriptError::MemoryLimit { .. } => {
            Code::ResourceExhausted
        }
        ScriptError::Unsupported { .. } => Code::Unimplemented,
        ScriptError::Conflict { .. } => Code::Aborted,
        ScriptError::Kv { error, .. } => kv_code(error),
        _ => Code::Internal,
    };
    // A kernel error that names a script line came from a `kahuna` call in the script's
    // body: the engine rolled the transaction back. Without a line it may come from the
    // commit, whose outcome is then unknown.
    let before_commit = matches!(&e, ScriptError::Kv { line: Some(_), .. });
    let mut status = with_code(code, e.to_string(), e.code());
    if before_commit {
        status.metadata_mut().insert(OUTCOME_METADATA, MetadataValue::from_static(NOT_COMMITTED));
    }
    status
}

/// A malformed request.
pub fn invalid(message: impl Into<String>) -> Status {
    to_status(KvError::InvalidInput(message.into()))
}

/// A status as node-to-node replies carry it in text ("CODE: message"): a batch message's
/// `error` field, and a failed call's reason.
pub fn status_text(status: &Status) -> String {
    format!("{}: {}", status.code(), status.message())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code_of(s: &Status) -> Option<&str> {
        s.metadata().get(CODE_METADATA).and_then(|v| v.to_str().ok())
    }

    #[test]
    fn codes() {
        let s = to_status(KvError::InvalidInput("key is empty".into()));
        assert_eq!(s.code(), Code::InvalidArgument);
        assert_eq!(code_of(&s), Some("InvalidInput"));
        assert_eq!(to_status(KvError::Compacted("x".into())).code(), Code::OutOfRange);
        assert_eq!(to_status(KvError::NotLeader { partition: 1, leader: None }).code(), Code::Unavailable);
        assert_eq!(to_status(KvError::Timeout("x".into())).code(), Code::DeadlineExceeded);
        assert_eq!(to_status(KvError::NotFound("x".into())).code(), Code::NotFound);
        let exhausted = to_status(KvError::Exhausted("x".into()));
        assert_eq!(exhausted.code(), Code::FailedPrecondition);
        assert_eq!(code_of(&exhausted), Some("Exhausted"));
        let conflict = to_status(KvError::Conflict("k changed".into()));
        assert_eq!((conflict.code(), code_of(&conflict)), (Code::Aborted, Some("Conflict")));
        let locked =
            to_status(KvError::Locked { key: "k".into(), txn_id: "1-2-3".into(), record_partition: 0, deadline_ms: 0 });
        assert_eq!((locked.code(), code_of(&locked)), (Code::Unavailable, Some("Locked")));
    }

    #[test]
    fn script_codes_keep_the_line() {
        let cases = [
            (ScriptError::Syntax("script:2: unexpected symbol".into()), Code::InvalidArgument, "ScriptSyntax"),
            (ScriptError::Runtime("script:3: boom".into()), Code::FailedPrecondition, "ScriptRuntime"),
            (ScriptError::TimeLimit { limit_ms: 10, line: Some(4) }, Code::ResourceExhausted, "ScriptTimeLimit"),
            (ScriptError::MemoryLimit { limit_bytes: 1 }, Code::ResourceExhausted, "ScriptMemoryLimit"),
            (ScriptError::NotFound(kahuna_script::ScriptHash([0; 32])), Code::NotFound, "ScriptNotFound"),
            (ScriptError::conflict("k changed"), Code::Aborted, "Conflict"),
            (ScriptError::unsupported("locks"), Code::Unimplemented, "Unsupported"),
            (
                ScriptError::Kv { line: Some(5), error: KvError::Timeout("no answer".into()) },
                Code::DeadlineExceeded,
                "Timeout",
            ),
        ];
        for (e, code, kahuna_code) in cases {
            let line = e.line();
            let s = script_status(e);
            assert_eq!((s.code(), code_of(&s)), (code, Some(kahuna_code)), "{s:?}");
            if let Some(n) = line {
                assert!(s.message().contains(&format!("script:{n}:")), "{s:?}");
            }
        }
    }

    #[test]
    fn only_errors_before_the_commit_are_marked_not_committed() {
        let outcome = |e: ScriptError| {
            script_status(e).metadata().get(OUTCOME_METADATA).and_then(|v| v.to_str().ok()).map(str::to_owned)
        };
        let read = ScriptError::Kv { line: Some(3), error: KvError::Unavailable("no quorum".into()) };
        assert_eq!(outcome(read).as_deref(), Some(NOT_COMMITTED));
        let commit = ScriptError::Kv { line: None, error: KvError::Timeout("no answer".into()) };
        assert_eq!(outcome(commit), None);
        assert_eq!(outcome(ScriptError::Runtime("script:1: boom".into())), None);
    }
}
