//! The vocabulary every checker reports in: a verdict, violations, and references to
//! operations.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::history::{Operation, Outcome, PairError};

/// How many violations a `Display` summary lists before eliding the rest.
pub const DISPLAY_VIOLATIONS_MAX: usize = 10;

/// A checker's overall judgement.
///
/// The default is `Unknown`: nothing has been shown yet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// No violation exists in the history.
    Valid,
    /// At least one violation was found.
    Invalid,
    /// The checker could not decide (search bound exceeded, malformed input). Not a pass.
    #[default]
    Unknown,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Valid => "VALID",
            Verdict::Invalid => "INVALID",
            Verdict::Unknown => "UNKNOWN",
        })
    }
}

/// What kind of thing went wrong. Shared by all checkers so a runner can count uniformly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ViolationKind {
    /// The history or an operation's fields could not be interpreted.
    Malformed,
    /// Register: no linearization exists for a key.
    NotLinearizable,
    /// Register: the search bound was exceeded before a verdict was reached.
    SearchBoundExceeded,
    /// Lock: a resource accepted a fencing token lower than one it had already accepted.
    StaleTokenAccepted,
    /// Lock: two different owners were granted the same token.
    DuplicateToken,
    /// Lock: a later grant (in real time) carries a token that is not greater.
    TokenNotIncreasing,
    /// Lock: holding intervals overlap and the later grant's token is not greater.
    OverlappingHolders,
    /// Sequence: a value was handed out to two different allocations.
    DuplicateValue,
    /// Sequence: one idempotency key returned two different allocations.
    IdempotencyMismatch,
    /// Append: a write-write cycle.
    G0,
    /// Append: a read observed a value appended by a failed transaction.
    G1a,
    /// Append: a read observed a non-final append of another transaction.
    G1b,
    /// Append: a cycle of write-write and write-read edges.
    G1c,
    /// Append: a cycle with exactly one read-write (anti-dependency) edge.
    GSingle,
    /// Append: a cycle with two or more read-write edges.
    G2,
    /// Append: a cycle that exists only with real-time edges (strict serializability).
    RealTime,
    /// Append: two reads of a key are not prefixes of one another.
    IncompatibleOrder,
    /// Append: a read lists the same element twice.
    DuplicateElements,
    /// Append: an acknowledged append is missing from a read invoked after it completed.
    LostAppend,
    /// Append: a read observed a value that no transaction appended.
    UnknownValue,
    /// Bank: a read's balances do not add up to the configured total.
    WrongTotal,
    /// Bank: a read saw a negative balance.
    NegativeBalance,
}

impl fmt::Display for ViolationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The serde name is the stable, user-facing spelling.
        let name = serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_else(|| format!("{self:?}"));
        f.write_str(&name)
    }
}

/// A reference to one operation of the history, enough to find it in the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpRef {
    /// Index of the invoke event (line `event + 1` of a file without blank lines).
    pub event: usize,
    /// The process that ran it.
    pub process: u64,
    /// The operation name.
    pub f: String,
    /// How it ended.
    pub outcome: Outcome,
    /// Invoke time, ns.
    pub invoke_time: u64,
    /// Completion time, ns; `None` when the outcome is unknown.
    pub complete_time: Option<u64>,
}

impl fmt::Display for OpRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let end = self.complete_time.map_or_else(|| "?".to_string(), |t| t.to_string());
        write!(f, "#{} p{} {} [{}, {}]", self.event, self.process, self.f, self.invoke_time, end)
    }
}

/// One thing the checker found wrong, with the operations involved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// What went wrong.
    pub kind: ViolationKind,
    /// A human explanation naming keys, values and times.
    pub explanation: String,
    /// The operations involved, most relevant first.
    pub ops: Vec<OpRef>,
}

impl Violation {
    /// A violation of `kind` involving `ops`.
    pub fn new(kind: ViolationKind, explanation: impl Into<String>, ops: Vec<OpRef>) -> Self {
        Self { kind, explanation: explanation.into(), ops }
    }

    /// An operation whose fields the checker cannot interpret.
    pub fn malformed(op: &Operation, reason: impl fmt::Display) -> Self {
        Self::new(
            ViolationKind::Malformed,
            format!("{} at event {}: {reason}", op.f, op.invoke_event),
            vec![op.op_ref()],
        )
    }

    /// A history whose events cannot be paired into operations.
    pub fn unpaired(error: &PairError) -> Self {
        Self::new(ViolationKind::Malformed, error.to_string(), Vec::new())
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.explanation)?;
        for op in &self.ops {
            write!(f, "\n      {op}")?;
        }
        Ok(())
    }
}

/// What every checker's report offers a workload runner.
pub trait Report: fmt::Display {
    /// The overall judgement.
    fn verdict(&self) -> Verdict;

    /// Everything found wrong, in the order found.
    fn violations(&self) -> &[Violation];

    /// The report as JSON, for `--format json` and for saving beside the history.
    fn to_json(&self) -> serde_json::Value;

    /// True only for a definite pass: `Unknown` is not ok.
    fn ok(&self) -> bool {
        self.verdict() == Verdict::Valid
    }
}

/// The verdict implied by violations: any violation other than an inconclusive one is
/// `Invalid`; only inconclusive ones give `Unknown`.
pub(crate) fn verdict_of(violations: &[Violation]) -> Verdict {
    let inconclusive = |v: &Violation| matches!(v.kind, ViolationKind::Malformed | ViolationKind::SearchBoundExceeded);
    if violations.is_empty() {
        Verdict::Valid
    } else if violations.iter().all(inconclusive) {
        Verdict::Unknown
    } else {
        Verdict::Invalid
    }
}

/// Writes the common summary: a headline with counts, then the first violations.
pub(crate) fn write_summary(
    f: &mut fmt::Formatter<'_>,
    checker: &str,
    verdict: Verdict,
    counts: &[(&str, usize)],
    violations: &[Violation],
) -> fmt::Result {
    write!(f, "{checker}: {verdict}")?;
    let counts: Vec<String> = counts.iter().map(|(name, n)| format!("{name} {n}")).collect();
    write!(f, " ({}; {} violation(s))", counts.join(", "), violations.len())?;
    for violation in violations.iter().take(DISPLAY_VIOLATIONS_MAX) {
        write!(f, "\n  - {violation}")?;
    }
    if violations.len() > DISPLAY_VIOLATIONS_MAX {
        write!(f, "\n  ... and {} more", violations.len() - DISPLAY_VIOLATIONS_MAX)?;
    }
    Ok(())
}

/// Implements `Display` and `Report` for a report struct with `verdict` and `violations`
/// fields and a `counts()` method.
macro_rules! impl_report {
    ($ty:ty, $name:literal) => {
        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                $crate::report::write_summary(f, $name, self.verdict, &self.counts(), &self.violations)
            }
        }

        impl $ty {
            /// True only for a definite pass (same as [`Report::ok`](crate::Report::ok)).
            pub fn ok(&self) -> bool {
                self.verdict == $crate::report::Verdict::Valid
            }
        }

        impl $crate::report::Report for $ty {
            fn verdict(&self) -> $crate::report::Verdict {
                self.verdict
            }

            fn violations(&self) -> &[$crate::report::Violation] {
                &self.violations
            }

            fn to_json(&self) -> serde_json::Value {
                serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
            }
        }
    };
}
pub(crate) use impl_report;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_follow_violations() {
        assert_eq!(verdict_of(&[]), Verdict::Valid);
        let bound = Violation::new(ViolationKind::SearchBoundExceeded, "x", vec![]);
        let bad = Violation::new(ViolationKind::G2, "y", vec![]);
        assert_eq!(verdict_of(std::slice::from_ref(&bound)), Verdict::Unknown);
        assert_eq!(verdict_of(&[bound, bad]), Verdict::Invalid);
        assert_eq!(ViolationKind::GSingle.to_string(), "g-single");
        assert_eq!(ViolationKind::G1a.to_string(), "g1a");
    }
}
