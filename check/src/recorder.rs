//! A thread-safe recorder that workload runners share between their client tasks.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use serde_json::{Map, Value};

use crate::history::{Event, EventKind, History};

/// Records events with times from one monotonic clock. Clones share the same history.
///
/// Invariant: events are appended in non-decreasing `time` order, because each time is
/// read while the lock that orders the appends is held.
#[derive(Debug, Clone)]
pub struct Recorder {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug)]
struct Inner {
    base: Instant,
    events: Vec<Event>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    /// A recorder whose clock starts now.
    pub fn new() -> Self {
        Self::with_base(Instant::now())
    }

    /// A recorder whose times are nanoseconds since `base`.
    pub fn with_base(base: Instant) -> Self {
        let inner = Inner { base, events: Vec::new() };
        Self { inner: Arc::new(Mutex::new(inner)) }
    }

    /// Records an invoke and returns the handle that records its completion.
    ///
    /// `fields` should be a JSON object (`json!({"key": "x", "value": 1})`); any other
    /// value is stored under `"value"`. Dropping the handle without completing leaves the
    /// operation's outcome unknown, which is exactly right for a request whose reply never
    /// came.
    pub fn invoke(&self, process: u64, f: impl Into<String>, fields: Value) -> Pending {
        let f = f.into();
        let fields = into_fields(fields);
        self.record(EventKind::Invoke, process, &f, fields.clone());
        Pending { recorder: self.clone(), process, f, fields }
    }

    /// Records one event of any kind, stamped now. Prefer [`Recorder::invoke`] and the
    /// [`Pending`] it returns, which keep invokes and completions paired.
    pub fn record(&self, kind: EventKind, process: u64, f: &str, fields: Map<String, Value>) {
        let mut inner = self.lock();
        let time = nanos_since(inner.base);
        let event = Event { kind, process, time, f: f.to_string(), fields };
        inner.events.push(event);
    }

    /// A copy of everything recorded so far.
    pub fn history(&self) -> History {
        History::from_events(self.lock().events.clone())
    }

    /// Writes everything recorded so far as JSONL.
    pub fn to_jsonl(&self, writer: impl Write) -> io::Result<()> {
        self.history().to_jsonl(writer)
    }

    /// Writes everything recorded so far to a JSONL file, replacing it.
    pub fn save(&self, path: impl AsRef<Path>) -> io::Result<()> {
        let file = File::create(path)?;
        self.to_jsonl(BufWriter::new(file))
    }

    /// The event list. A panic in another recording thread cannot leave it half-written
    /// (each push is one call), so a poisoned lock is still safe to use.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// An invoked operation awaiting its completion.
#[derive(Debug)]
#[must_use = "complete the operation with ok, fail or info; dropping it leaves it unknown"]
pub struct Pending {
    recorder: Recorder,
    process: u64,
    f: String,
    fields: Map<String, Value>,
}

impl Pending {
    /// The operation took effect; `results` are merged over the invoke's fields.
    pub fn ok(self, results: Value) {
        self.complete(EventKind::Ok, results);
    }

    /// The operation definitely did not take effect.
    pub fn fail(self, results: Value) {
        self.complete(EventKind::Fail, results);
    }

    /// The outcome is unknown (timeout, connection lost).
    pub fn info(self, results: Value) {
        self.complete(EventKind::Info, results);
    }

    /// Completion events repeat the invoke's fields so each line reads on its own.
    fn complete(self, kind: EventKind, results: Value) {
        let mut fields = self.fields;
        fields.extend(into_fields(results));
        self.recorder.record(kind, self.process, &self.f, fields);
    }
}

/// A JSON object's entries; `null` is no fields; anything else becomes `{"value": v}`.
fn into_fields(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        Value::Null => Map::new(),
        other => Map::from_iter([("value".to_string(), other)]),
    }
}

/// Nanoseconds since `base`, saturating after 584 years.
fn nanos_since(base: Instant) -> u64 {
    u64::try_from(base.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Outcome;
    use serde_json::json;

    #[test]
    fn records_pairs_across_threads() {
        let recorder = Recorder::new();
        let threads: Vec<_> = (0..4u64)
            .map(|p| {
                let recorder = recorder.clone();
                std::thread::spawn(move || {
                    for i in 0..25 {
                        let op = recorder.invoke(p, "write", json!({"key": "x", "value": i}));
                        op.ok(Value::Null);
                    }
                    let _lost = recorder.invoke(p, "read", json!({"key": "x"}));
                })
            })
            .collect();
        for t in threads {
            t.join().expect("recording thread finished");
        }
        let history = recorder.history();
        assert_eq!(history.len(), 4 * 51);
        assert!(history.events().windows(2).all(|w| w[0].time <= w[1].time));
        let ops = history.operations().expect("recorder output pairs");
        assert_eq!(ops.iter().filter(|o| o.outcome == Outcome::Ok).count(), 100);
        assert_eq!(ops.iter().filter(|o| o.outcome == Outcome::Unknown).count(), 4);
        assert!(ops.iter().all(|o| o.field("key") == Some(&json!("x"))));
    }

    #[test]
    fn handles_cross_tasks() {
        fn shareable<T: Send + Sync + 'static>() {}
        shareable::<Recorder>();
        shareable::<Pending>();
    }

    #[test]
    fn saves_readable_jsonl() {
        let recorder = Recorder::new();
        recorder.invoke(7, "read", json!({"key": "k"})).ok(json!({"value": 3}));
        recorder.invoke(7, "next", Value::Null).info(json!(5));
        let mut out = Vec::new();
        recorder.to_jsonl(&mut out).expect("writes to memory");
        let history = History::from_jsonl(out.as_slice()).expect("parses");
        let ops = history.operations().expect("pairs");
        assert_eq!(ops[0].field("value"), Some(&json!(3)));
        assert_eq!(ops[1].completion.get("value"), Some(&json!(5)));

        let path = std::env::temp_dir().join(format!("kahuna-check-{}.jsonl", std::process::id()));
        recorder.save(&path).expect("saves");
        let file = File::open(&path).expect("reopens");
        assert_eq!(History::from_jsonl(file).expect("parses file"), history);
        let _ = std::fs::remove_file(&path);
    }
}
