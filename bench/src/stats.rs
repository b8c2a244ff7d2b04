//! Per-client recording and the merged [`Summary`].
//!
//! Each client owns a [`Recorder`] (no sharing on the hot path); the runner merges them
//! when the clients are done. Latencies are kept in microseconds in an HDR histogram with
//! 3 significant digits, so every percentile is within 0.1% of the recorded value.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::time::Instant;

use crate::driver::OpError;

/// Longest latency told apart, in microseconds; longer ones count as this.
pub(crate) const LATENCY_US_MAX: u64 = 60_000_000;
/// Significant decimal digits the histogram keeps.
const LATENCY_DIGITS: u8 = 3;
/// Most distinct error kinds counted by name; the rest count under `ERROR_KIND_OTHER`.
const ERROR_KINDS_MAX: usize = 32;
const ERROR_KIND_OTHER: &str = "Other";

/// What one client saw in the measured part of the run.
#[derive(Clone, Debug)]
pub(crate) struct Recorder {
    latency_us: Histogram<u64>,
    errors: u64,
    misses: u64,
    unsent: u64,
    error_kinds: BTreeMap<String, u64>,
    first_error: Option<String>,
    last_done: Option<Instant>,
}

impl Recorder {
    pub(crate) fn new() -> Recorder {
        Recorder {
            latency_us: latency_histogram(),
            errors: 0,
            misses: 0,
            unsent: 0,
            error_kinds: BTreeMap::new(),
            first_error: None,
            last_done: None,
        }
    }

    /// Records a successful operation that took `latency` and ended at `done`.
    pub(crate) fn success(&mut self, latency: Duration, done: Instant) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.latency_us.saturating_record(us.min(LATENCY_US_MAX));
        self.done(done);
    }

    /// Records a read that found no key (also a success).
    pub(crate) fn miss(&mut self) {
        self.misses += 1;
    }

    /// Records a failed operation that ended at `done`.
    pub(crate) fn error(&mut self, error: &OpError, done: Instant) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(error.to_string());
        }
        let kind = if self.error_kinds.len() < ERROR_KINDS_MAX || self.error_kinds.contains_key(&error.kind) {
            error.kind.as_str()
        } else {
            ERROR_KIND_OTHER
        };
        *self.error_kinds.entry(kind.to_owned()).or_default() += 1;
        self.done(done);
    }

    /// Records open-loop operations that were due before the end but never sent because
    /// the client was still behind.
    pub(crate) fn unsent(&mut self, count: u64) {
        self.unsent += count;
    }

    fn done(&mut self, done: Instant) {
        self.last_done = Some(self.last_done.map_or(done, |last| last.max(done)));
    }

    /// Adds `other`'s records to these.
    pub(crate) fn merge(&mut self, other: &Recorder) {
        // Both histograms share the same bounds, so adding cannot fail; saturate instead.
        for value in other.latency_us.iter_recorded() {
            self.latency_us.saturating_record_n(value.value_iterated_to(), value.count_at_value());
        }
        self.errors += other.errors;
        self.misses += other.misses;
        self.unsent += other.unsent;
        for (kind, count) in &other.error_kinds {
            *self.error_kinds.entry(kind.clone()).or_default() += count;
        }
        if self.first_error.is_none() {
            self.first_error.clone_from(&other.first_error);
        }
        if let Some(done) = other.last_done {
            self.done(done);
        }
    }

    /// The summary of a measured part that began at `measure_start` and was meant to last
    /// `duration`. The elapsed time runs to the last completion (operations sent before the
    /// end finish after it), or is `duration` when nothing completed.
    pub(crate) fn summary(&self, measure_start: Instant, duration: Duration) -> Summary {
        let elapsed = self.last_done.map_or(duration, |done| done.saturating_duration_since(measure_start));
        Summary::new(&self.latency_us, self, elapsed)
    }
}

fn latency_histogram() -> Histogram<u64> {
    match Histogram::new_with_max(LATENCY_US_MAX, LATENCY_DIGITS) {
        Ok(histogram) => histogram,
        // The bounds are constants that hdrhistogram accepts.
        Err(e) => unreachable!("histogram bounds rejected: {e}"),
    }
}

/// The figures of one run, as printed and as the `--json` object's fields.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Summary {
    /// Operations that succeeded in the measured time.
    pub ops: u64,
    /// Operations that failed in the measured time.
    pub errors: u64,
    /// Successful reads that found no key (the preload should make this 0).
    pub misses: u64,
    /// Open loop only: operations due in the measured time that were never sent because
    /// every client was behind. Non-zero means the rate was above what the system served.
    pub unsent: u64,
    /// Seconds from the start of the measured time to the last completion.
    pub elapsed_s: f64,
    /// `ops / elapsed_s`.
    pub ops_per_sec: f64,
    /// Latency percentiles of the successful operations, in milliseconds.
    pub p50_ms: f64,
    /// 99th percentile latency, in milliseconds.
    pub p99_ms: f64,
    /// 99.9th percentile latency, in milliseconds.
    pub p999_ms: f64,
    /// Highest latency, in milliseconds.
    pub max_ms: f64,
    /// Mean latency, in milliseconds.
    pub mean_ms: f64,
    /// Errors by kind.
    pub error_kinds: BTreeMap<String, u64>,
    /// The first error seen, for diagnosis.
    pub first_error: Option<String>,
}

impl Summary {
    fn new(latency_us: &Histogram<u64>, counts: &Recorder, elapsed: Duration) -> Summary {
        let ops = latency_us.len();
        let elapsed_s = elapsed.as_secs_f64();
        let ms = |us: u64| us as f64 / 1_000.0;
        let quantile = |q: f64| if ops == 0 { 0.0 } else { ms(latency_us.value_at_quantile(q)) };
        Summary {
            ops,
            errors: counts.errors,
            misses: counts.misses,
            unsent: counts.unsent,
            elapsed_s,
            ops_per_sec: if elapsed_s > 0.0 { ops as f64 / elapsed_s } else { 0.0 },
            p50_ms: quantile(0.5),
            p99_ms: quantile(0.99),
            p999_ms: quantile(0.999),
            max_ms: if ops == 0 { 0.0 } else { ms(latency_us.max()) },
            mean_ms: if ops == 0 { 0.0 } else { latency_us.mean() / 1_000.0 },
            error_kinds: counts.error_kinds.clone(),
            first_error: counts.first_error.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    fn error(kind: &str) -> OpError {
        OpError { kind: kind.into(), message: "boom".into() }
    }

    #[test]
    fn percentiles_of_a_known_distribution() {
        let start = Instant::now();
        let mut recorder = Recorder::new();
        for n in 1..=1_000 {
            recorder.success(us(n), start + Duration::from_millis(n));
        }
        let summary = recorder.summary(start, Duration::from_secs(10));
        assert_eq!(summary.ops, 1_000);
        assert_eq!(summary.errors, 0);
        assert_eq!(summary.elapsed_s, 1.0);
        assert_eq!(summary.ops_per_sec, 1_000.0);
        assert_eq!(summary.p50_ms, 0.5);
        assert_eq!(summary.p99_ms, 0.99);
        assert_eq!(summary.p999_ms, 0.999);
        assert_eq!(summary.max_ms, 1.0);
        assert!((summary.mean_ms - 0.5005).abs() < 1e-9, "{}", summary.mean_ms);
    }

    #[test]
    fn large_latencies_keep_three_digits_and_saturate_at_the_maximum() {
        let start = Instant::now();
        let mut recorder = Recorder::new();
        recorder.success(Duration::from_millis(123), start);
        recorder.success(Duration::from_secs(3_600), start);
        let summary = recorder.summary(start, Duration::from_secs(1));
        assert!((summary.p50_ms - 123.0).abs() / 123.0 < 0.001, "{}", summary.p50_ms);
        let max_ms = LATENCY_US_MAX as f64 / 1_000.0;
        assert!((summary.max_ms - max_ms).abs() / max_ms < 0.001, "{}", summary.max_ms);
    }

    #[test]
    fn merge_adds_counts_and_keeps_the_latest_completion() {
        let start = Instant::now();
        let mut a = Recorder::new();
        let mut b = Recorder::new();
        a.success(us(100), start + Duration::from_millis(500));
        a.miss();
        b.success(us(300), start + Duration::from_secs(2));
        b.error(&error("Timeout"), start + Duration::from_secs(1));
        b.error(&error("Timeout"), start + Duration::from_secs(1));
        b.unsent(5);
        a.merge(&b);
        let summary = a.summary(start, Duration::from_secs(1));
        assert_eq!((summary.ops, summary.errors, summary.misses, summary.unsent), (2, 2, 1, 5));
        assert_eq!(summary.elapsed_s, 2.0);
        assert_eq!(summary.ops_per_sec, 1.0);
        assert_eq!(summary.max_ms, 0.3);
        assert_eq!(summary.error_kinds, BTreeMap::from([("Timeout".to_owned(), 2)]));
        assert_eq!(summary.first_error.as_deref(), Some("Timeout: boom"));
    }

    #[test]
    fn an_empty_run_reports_zeros_over_the_planned_duration() {
        let summary = Recorder::new().summary(Instant::now(), Duration::from_secs(4));
        assert_eq!(summary.ops, 0);
        assert_eq!(summary.elapsed_s, 4.0);
        assert_eq!((summary.ops_per_sec, summary.p50_ms, summary.max_ms, summary.mean_ms), (0.0, 0.0, 0.0, 0.0));
    }

    #[test]
    fn error_kinds_are_bounded() {
        let now = Instant::now();
        let mut recorder = Recorder::new();
        for n in 0..ERROR_KINDS_MAX + 10 {
            recorder.error(&error(&format!("Kind{n}")), now);
        }
        recorder.error(&error("Kind0"), now);
        let summary = recorder.summary(now, Duration::from_secs(1));
        assert_eq!(summary.errors, ERROR_KINDS_MAX as u64 + 11);
        assert_eq!(summary.error_kinds.len(), ERROR_KINDS_MAX + 1);
        assert_eq!(summary.error_kinds["Kind0"], 2);
        assert_eq!(summary.error_kinds[ERROR_KIND_OTHER], 10);
    }
}
