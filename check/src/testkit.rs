//! Test helpers: concise construction of histories with explicit times.

use serde_json::{Map, Value};

use crate::history::{Event, EventKind, History};

/// Builds a history from operations given as intervals; events are sorted by time.
#[derive(Debug, Default)]
pub struct Builder {
    events: Vec<Event>,
}

impl Builder {
    pub fn new() -> Self {
        Self::default()
    }

    /// An operation invoked at `t0` that completes `ok` at `t1` with `results`.
    pub fn ok(self, p: u64, f: &str, t0: u64, t1: u64, args: Value, results: Value) -> Self {
        self.op(EventKind::Ok, p, f, t0, t1, args, results)
    }

    /// An operation invoked at `t0` that definitely fails at `t1`.
    pub fn fail(self, p: u64, f: &str, t0: u64, t1: u64, args: Value) -> Self {
        self.op(EventKind::Fail, p, f, t0, t1, args, Value::Null)
    }

    /// An operation invoked at `t0` whose outcome is reported unknown at `t1`.
    pub fn info(self, p: u64, f: &str, t0: u64, t1: u64, args: Value) -> Self {
        self.op(EventKind::Info, p, f, t0, t1, args, Value::Null)
    }

    #[allow(clippy::too_many_arguments)]
    fn op(mut self, kind: EventKind, p: u64, f: &str, t0: u64, t1: u64, args: Value, results: Value) -> Self {
        let args = object(args);
        self.events.push(event(EventKind::Invoke, p, f, t0, args.clone()));
        let mut fields = args;
        fields.extend(object(results));
        self.events.push(event(kind, p, f, t1, fields));
        self
    }

    /// Events in time order; a stable sort keeps each invoke before its completion.
    pub fn build(mut self) -> History {
        self.events.sort_by_key(|e| e.time);
        History::from_events(self.events)
    }
}

fn event(kind: EventKind, process: u64, f: &str, time: u64, fields: Map<String, Value>) -> Event {
    Event { kind, process, time, f: f.to_string(), fields }
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}
