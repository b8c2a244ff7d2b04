//! The one place where kernel errors become gRPC statuses.
//!
//! Each status carries the metadata `kahuna-code` with the error's stable code, so
//! clients can tell a `NotLeader` from an `Unavailable` without parsing messages.

use kahuna_kernel::KvError;
use tonic::metadata::MetadataValue;
use tonic::{Code, Status};

/// Metadata key holding the stable error code.
pub const CODE_METADATA: &str = "kahuna-code";

/// Maps a kernel error to its gRPC status.
pub fn to_status(e: KvError) -> Status {
    let code = match &e {
        KvError::InvalidInput(_) => Code::InvalidArgument,
        KvError::NotLeader { .. } | KvError::Unavailable(_) => Code::Unavailable,
        KvError::Compacted(_) => Code::OutOfRange,
        KvError::Timeout(_) => Code::DeadlineExceeded,
        KvError::NotFound(_) => Code::NotFound,
        KvError::Exhausted(_) => Code::FailedPrecondition,
        _ => Code::Internal,
    };
    let mut status = Status::new(code, e.to_string());
    status.metadata_mut().insert(CODE_METADATA, MetadataValue::from_static(e.code()));
    status
}

/// A malformed request.
pub fn invalid(message: impl Into<String>) -> Status {
    to_status(KvError::InvalidInput(message.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        let s = to_status(KvError::InvalidInput("key is empty".into()));
        assert_eq!(s.code(), Code::InvalidArgument);
        assert_eq!(s.metadata().get(CODE_METADATA).and_then(|v| v.to_str().ok()), Some("InvalidInput"));
        assert_eq!(to_status(KvError::Compacted("x".into())).code(), Code::OutOfRange);
        assert_eq!(to_status(KvError::NotLeader { partition: 1, leader: None }).code(), Code::Unavailable);
        assert_eq!(to_status(KvError::Timeout("x".into())).code(), Code::DeadlineExceeded);
        assert_eq!(to_status(KvError::NotFound("x".into())).code(), Code::NotFound);
        let exhausted = to_status(KvError::Exhausted("x".into()));
        assert_eq!(exhausted.code(), Code::FailedPrecondition);
        assert_eq!(exhausted.metadata().get(CODE_METADATA).and_then(|v| v.to_str().ok()), Some("Exhausted"));
    }
}
