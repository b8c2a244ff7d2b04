//! The history model: events as JSONL and their pairing into operations.
//!
//! A history is what a workload runner saw, in the order it saw it: one event per line,
//! `{"type": "invoke"|"ok"|"fail"|"info", "process": u64, "time": u64, "f": "...", ...}`,
//! with the remaining keys being the operation's fields. `time` is nanoseconds from one
//! monotonic clock shared by every process of the run.
//!
//! Each process is a single logical thread: an `invoke` is followed by at most one
//! completion on the same process. `ok` and `fail` are definite outcomes (happened, did not
//! happen); `info` and an invoke that never completes are unknown outcomes, which checkers
//! treat as "may have taken effect at any time after the invoke, or never".

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read, Write};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::report::OpRef;

/// The completion time of an operation whose outcome is unknown: it may take effect at any
/// point after its invoke, so it overlaps every later operation.
pub const TIME_INFINITY: u64 = u64::MAX;

/// What an event says about its operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// The process is about to send the request.
    Invoke,
    /// The operation definitely took effect; result fields are on this event.
    Ok,
    /// The operation definitely did not take effect.
    Fail,
    /// The outcome is unknown (timeout, lost connection): it may or may not take effect.
    Info,
}

/// One line of a history file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Invoke or one of the three completions.
    #[serde(rename = "type")]
    pub kind: EventKind,
    /// The logical client thread; at most one operation is outstanding per process.
    pub process: u64,
    /// Nanoseconds since the run's clock base (one monotonic clock for all processes).
    pub time: u64,
    /// The operation name (`read`, `cas`, `acquire`, `txn`, ...).
    pub f: String,
    /// Every other key of the line: the operation's arguments or results.
    #[serde(flatten)]
    pub fields: Map<String, Value>,
}

/// Why a JSONL history could not be read. Lines are numbered from 1 as in an editor.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The reader failed.
    #[error("history line {line}: read failed: {source}")]
    Io {
        /// The 1-based line being read.
        line: usize,
        /// The underlying failure.
        source: io::Error,
    },
    /// The line is not a JSON object with `type`, `process`, `time` and `f`.
    #[error("history line {line}: not a history event: {source}")]
    Json {
        /// The 1-based line that failed to parse.
        line: usize,
        /// What serde_json objected to.
        source: serde_json::Error,
    },
}

/// Why a history's events could not be paired into operations. Events are numbered from 0
/// in history order (line `event + 1` of a file without blank lines).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PairError {
    /// A completion arrived on a process with no outstanding invoke.
    #[error("event {event}: `{f}` completion on process {process}, which has no outstanding invoke")]
    UnmatchedCompletion {
        /// Index of the completion event.
        event: usize,
        /// Its process.
        process: u64,
        /// Its operation name.
        f: String,
    },
    /// A completion names a different operation than the invoke it completes.
    #[error("event {event}: process {process} invoked `{invoked}` but completed `{completed}`")]
    MismatchedCompletion {
        /// Index of the completion event.
        event: usize,
        /// Its process.
        process: u64,
        /// The outstanding invoke's operation name.
        invoked: String,
        /// The completion's operation name.
        completed: String,
    },
    /// A completion is stamped before its invoke, so the clock was not monotonic.
    #[error("event {event}: process {process} completed at {complete_time} ns, before its invoke at {invoke_time} ns")]
    CompletionBeforeInvoke {
        /// Index of the completion event.
        event: usize,
        /// Its process.
        process: u64,
        /// Time of the invoke.
        invoke_time: u64,
        /// Time of the completion.
        complete_time: u64,
    },
}

/// How an operation ended, as far as the client knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Took effect.
    Ok,
    /// Did not take effect.
    Fail,
    /// May or may not have taken effect (`info`, or no completion at all).
    Unknown,
}

/// An invoke paired with its completion.
///
/// Invariant: `invoke_time <= complete_time`, and `complete_time == TIME_INFINITY` exactly
/// when `outcome == Outcome::Unknown`.
#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    /// Index of the invoke event in the history.
    pub invoke_event: usize,
    /// Index of the completion event, if any.
    pub complete_event: Option<usize>,
    /// The process that ran it.
    pub process: u64,
    /// The operation name.
    pub f: String,
    /// How it ended.
    pub outcome: Outcome,
    /// When the request was about to be sent.
    pub invoke_time: u64,
    /// When the reply arrived; `TIME_INFINITY` when the outcome is unknown.
    pub complete_time: u64,
    /// Fields of the invoke event (the arguments).
    pub invoke: Map<String, Value>,
    /// Fields of the completion event (the results); empty without a completion.
    pub completion: Map<String, Value>,
}

impl Operation {
    /// Looks up a field. For `ok` operations the completion's fields (results) win over
    /// the invoke's; for failed or unknown ones the invoke's (arguments) win, because a
    /// completion without a result carries no information about what was attempted.
    pub fn field(&self, name: &str) -> Option<&Value> {
        let (first, second) = match self.outcome {
            Outcome::Ok => (&self.completion, &self.invoke),
            Outcome::Fail | Outcome::Unknown => (&self.invoke, &self.completion),
        };
        first.get(name).or_else(|| second.get(name))
    }

    /// The field as a string, or a message naming what is wrong.
    pub fn str_field(&self, name: &str) -> Result<&str, String> {
        match self.field(name) {
            Some(Value::String(s)) => Ok(s),
            Some(other) => Err(format!("field `{name}` should be a string, found {other}")),
            None => Err(format!("field `{name}` is missing")),
        }
    }

    /// The field as a string, defaulting to `""` when absent (single-key workloads).
    pub fn name_field(&self, name: &str) -> Result<String, String> {
        match self.field(name) {
            None | Some(Value::Null) => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(other) => Err(format!("field `{name}` should be a string, found {other}")),
        }
    }

    /// The field as an unsigned integer, or a message naming what is wrong.
    pub fn u64_field(&self, name: &str) -> Result<u64, String> {
        match self.field(name) {
            Some(v) => v.as_u64().ok_or_else(|| format!("field `{name}` should be an unsigned integer, found {v}")),
            None => Err(format!("field `{name}` is missing")),
        }
    }

    /// True when this operation completed before `other` was invoked, so every execution
    /// must order it first.
    pub fn precedes(&self, other: &Operation) -> bool {
        self.complete_time < other.invoke_time
    }

    /// A compact reference for reports.
    pub fn op_ref(&self) -> OpRef {
        OpRef {
            event: self.invoke_event,
            process: self.process,
            f: self.f.clone(),
            outcome: self.outcome,
            invoke_time: self.invoke_time,
            complete_time: (self.outcome != Outcome::Unknown).then_some(self.complete_time),
        }
    }
}

/// A recorded run: events in the order the runner observed them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    events: Vec<Event>,
}

impl History {
    /// An empty history.
    pub fn new() -> Self {
        Self::default()
    }

    /// A history holding `events` in the given order.
    pub fn from_events(events: Vec<Event>) -> Self {
        Self { events }
    }

    /// Appends one event.
    pub fn push(&mut self, event: Event) {
        self.events.push(event);
    }

    /// The events in history order.
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// The number of events.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// True when there are no events.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Reads JSONL, one event per line; blank lines are skipped.
    pub fn from_jsonl(reader: impl Read) -> Result<Self, ParseError> {
        let mut events = Vec::new();
        for (i, line) in BufReader::new(reader).lines().enumerate() {
            let line_no = i + 1;
            let text = line.map_err(|source| ParseError::Io { line: line_no, source })?;
            if text.trim().is_empty() {
                continue;
            }
            let event = serde_json::from_str(&text).map_err(|source| ParseError::Json { line: line_no, source })?;
            events.push(event);
        }
        Ok(Self { events })
    }

    /// Writes JSONL, one event per line.
    pub fn to_jsonl(&self, mut writer: impl Write) -> io::Result<()> {
        for event in &self.events {
            serde_json::to_writer(&mut writer, event)?;
            writer.write_all(b"\n")?;
        }
        writer.flush()
    }

    /// Pairs each invoke with the next completion on the same process.
    ///
    /// Operations come back in invoke order. An invoke on a process whose previous
    /// operation is still outstanding leaves that one unknown: a runner that gave up
    /// waiting (without recording `info`) may reuse the process.
    pub fn operations(&self) -> Result<Vec<Operation>, PairError> {
        let mut ops: Vec<Operation> = Vec::new();
        // process -> index into `ops` of its outstanding invoke.
        let mut pending: BTreeMap<u64, usize> = BTreeMap::new();
        for (i, event) in self.events.iter().enumerate() {
            if event.kind == EventKind::Invoke {
                pending.insert(event.process, ops.len());
                ops.push(invoked(i, event));
                continue;
            }
            let Some(slot) = pending.remove(&event.process) else {
                return Err(PairError::UnmatchedCompletion { event: i, process: event.process, f: event.f.clone() });
            };
            // `slot` was pushed above, so it indexes `ops`.
            if let Some(op) = ops.get_mut(slot) {
                complete(op, i, event)?;
            }
        }
        Ok(ops)
    }
}

/// An operation as it stands after its invoke: unknown until a completion arrives.
fn invoked(index: usize, event: &Event) -> Operation {
    Operation {
        invoke_event: index,
        complete_event: None,
        process: event.process,
        f: event.f.clone(),
        outcome: Outcome::Unknown,
        invoke_time: event.time,
        complete_time: TIME_INFINITY,
        invoke: event.fields.clone(),
        completion: Map::new(),
    }
}

/// Applies a completion event to its operation.
fn complete(op: &mut Operation, index: usize, event: &Event) -> Result<(), PairError> {
    if op.f != event.f {
        return Err(PairError::MismatchedCompletion {
            event: index,
            process: event.process,
            invoked: op.f.clone(),
            completed: event.f.clone(),
        });
    }
    if event.time < op.invoke_time {
        return Err(PairError::CompletionBeforeInvoke {
            event: index,
            process: event.process,
            invoke_time: op.invoke_time,
            complete_time: event.time,
        });
    }
    op.complete_event = Some(index);
    op.completion = event.fields.clone();
    op.outcome = match event.kind {
        EventKind::Ok => Outcome::Ok,
        EventKind::Fail => Outcome::Fail,
        EventKind::Info | EventKind::Invoke => Outcome::Unknown,
    };
    // Unknown outcomes keep an infinite completion time: the effect may land any time.
    if op.outcome != Outcome::Unknown {
        op.complete_time = event.time;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"{"type":"invoke","process":0,"time":1,"f":"write","key":"x","value":1}
{"type":"invoke","process":1,"time":2,"f":"read","key":"x","value":null}

{"type":"ok","process":0,"time":3,"f":"write","key":"x","value":1}
{"type":"info","process":1,"time":4,"f":"read","key":"x"}
{"type":"invoke","process":2,"time":5,"f":"cas","key":"x","expected":1,"new":2}
"#;

    #[test]
    fn parses_round_trips_and_pairs() {
        let history = History::from_jsonl(SAMPLE.as_bytes()).expect("sample parses");
        assert_eq!(history.len(), 5);
        let mut out = Vec::new();
        history.to_jsonl(&mut out).expect("writes to memory");
        let again = History::from_jsonl(out.as_slice()).expect("own output parses");
        assert_eq!(history, again);

        let ops = history.operations().expect("sample pairs");
        assert_eq!(ops.len(), 3);
        assert_eq!(ops[0].outcome, Outcome::Ok);
        assert_eq!((ops[0].invoke_time, ops[0].complete_time), (1, 3));
        assert_eq!(ops[1].outcome, Outcome::Unknown);
        assert_eq!(ops[1].complete_time, TIME_INFINITY);
        assert_eq!(ops[2].outcome, Outcome::Unknown);
        assert_eq!(ops[2].complete_event, None);
        assert!(ops[0].precedes(&ops[2]));
        assert!(!ops[1].precedes(&ops[2]));
    }

    #[test]
    fn parse_errors_name_the_line() {
        let text = "{\"type\":\"invoke\",\"process\":0,\"time\":1,\"f\":\"read\"}\n\nnot json\n";
        match History::from_jsonl(text.as_bytes()) {
            Err(ParseError::Json { line, .. }) => assert_eq!(line, 3),
            other => panic!("expected a JSON error on line 3, got {other:?}"),
        }
        let missing_time = r#"{"type":"ok","process":0,"f":"read"}"#;
        let err = History::from_jsonl(missing_time.as_bytes()).expect_err("no time field");
        assert!(err.to_string().contains("line 1"), "{err}");
        let bad_type = r#"{"type":"maybe","process":0,"time":1,"f":"read"}"#;
        assert!(History::from_jsonl(bad_type.as_bytes()).is_err());
    }

    #[test]
    fn pairing_errors_are_typed() {
        let ev = |kind, process, time, f: &str| Event { kind, process, time, f: f.to_string(), fields: Map::new() };
        let unmatched = History::from_events(vec![ev(EventKind::Ok, 0, 1, "read")]);
        assert!(matches!(unmatched.operations(), Err(PairError::UnmatchedCompletion { event: 0, .. })));
        let mismatched =
            History::from_events(vec![ev(EventKind::Invoke, 0, 1, "read"), ev(EventKind::Ok, 0, 2, "write")]);
        assert!(matches!(mismatched.operations(), Err(PairError::MismatchedCompletion { event: 1, .. })));
        let backwards =
            History::from_events(vec![ev(EventKind::Invoke, 0, 5, "read"), ev(EventKind::Ok, 0, 2, "read")]);
        assert!(matches!(backwards.operations(), Err(PairError::CompletionBeforeInvoke { event: 1, .. })));
    }

    #[test]
    fn field_lookup_prefers_results_only_for_ok() {
        let text = r#"{"type":"invoke","process":0,"time":1,"f":"write","value":7}
{"type":"info","process":0,"time":2,"f":"write","value":null}
{"type":"invoke","process":1,"time":3,"f":"read","value":null}
{"type":"ok","process":1,"time":4,"f":"read","value":7}
"#;
        let ops = History::from_jsonl(text.as_bytes()).expect("parses").operations().expect("pairs");
        assert_eq!(ops[0].field("value"), Some(&Value::from(7)));
        assert_eq!(ops[1].field("value"), Some(&Value::from(7)));
        assert_eq!(ops[1].name_field("key"), Ok(String::new()));
        assert!(ops[1].u64_field("value").is_ok());
        assert!(ops[1].str_field("value").is_err());
    }
}
