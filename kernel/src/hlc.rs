//! Hybrid logical clock: 48-bit physical milliseconds and a 16-bit logical counter in
//! one `u64`, so timestamps compare as plain integers.
//!
//! Invariants: `now()` is strictly increasing across calls on one `Hlc`, and after
//! `observe(t)` every later `now()` is greater than `t`. The physical clock is passed
//! in ([`Clock`]) so tests drive time by hand.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Bits of a timestamp that hold the logical counter.
pub const LOGICAL_BITS: u32 = 16;

/// The physical milliseconds of an HLC timestamp.
pub fn physical_ms(ts: u64) -> u64 {
    ts >> LOGICAL_BITS
}

/// The logical counter of an HLC timestamp.
pub fn logical(ts: u64) -> u64 {
    ts & ((1 << LOGICAL_BITS) - 1)
}

/// The smallest timestamp with the given physical milliseconds.
pub fn from_physical_ms(ms: u64) -> u64 {
    ms << LOGICAL_BITS
}

/// A source of physical time in unix milliseconds.
pub trait Clock: Send + Sync + 'static {
    /// Returns the current unix time in milliseconds.
    fn now_ms(&self) -> u64;
}

/// The system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
    }
}

/// A hybrid logical clock shared by everything on one node.
pub struct Hlc {
    last: AtomicU64,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Hlc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hlc").field("last", &self.peek()).finish()
    }
}

impl Hlc {
    /// Creates a clock reading physical time from `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self { last: AtomicU64::new(0), clock }
    }

    /// Creates a clock on the system's wall clock.
    pub fn system() -> Self {
        Self::new(Arc::new(SystemClock))
    }

    /// Returns a new timestamp, greater than every timestamp this clock returned or
    /// observed before.
    pub fn now(&self) -> u64 {
        let physical = from_physical_ms(self.clock.now_ms());
        let mut last = self.last.load(Ordering::Acquire);
        loop {
            // A logical overflow carries into the physical part: the clock then runs
            // at most one millisecond ahead, which keeps it monotonic.
            let next = physical.max(last.saturating_add(1));
            match self.last.compare_exchange_weak(last, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return next,
                Err(seen) => last = seen,
            }
        }
    }

    /// Merges a timestamp seen from another node (or a read at that time): every later
    /// `now()` is greater than `ts`.
    pub fn observe(&self, ts: u64) {
        self.last.fetch_max(ts, Ordering::AcqRel);
    }

    /// The last timestamp handed out or observed, without advancing the clock.
    pub fn peek(&self) -> u64 {
        self.last.load(Ordering::Acquire)
    }

    /// The physical clock's current unix milliseconds.
    pub fn wall_ms(&self) -> u64 {
        self.clock.now_ms()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::sync::atomic::AtomicU64 as Cell;

    struct ManualClock(Cell);
    impl Clock for ManualClock {
        fn now_ms(&self) -> u64 {
            self.0.load(Ordering::SeqCst)
        }
    }

    fn manual(ms: u64) -> (Arc<ManualClock>, Hlc) {
        let clock = Arc::new(ManualClock(Cell::new(ms)));
        (clock.clone(), Hlc::new(clock))
    }

    #[test]
    fn follows_physical_time() {
        let (clock, hlc) = manual(1000);
        assert_eq!(hlc.now(), from_physical_ms(1000));
        assert_eq!(hlc.now(), from_physical_ms(1000) + 1);
        clock.0.store(2000, Ordering::SeqCst);
        assert_eq!(hlc.now(), from_physical_ms(2000));
    }

    #[test]
    fn never_goes_back_when_the_wall_clock_does() {
        let (clock, hlc) = manual(5000);
        let a = hlc.now();
        clock.0.store(10, Ordering::SeqCst);
        let b = hlc.now();
        assert!(b > a);
        assert_eq!(physical_ms(b), 5000);
    }

    #[test]
    fn logical_overflow_carries_into_physical() {
        let (_clock, hlc) = manual(7);
        hlc.observe(from_physical_ms(7) + (1 << LOGICAL_BITS) - 1);
        let ts = hlc.now();
        assert_eq!(physical_ms(ts), 8);
        assert_eq!(logical(ts), 0);
    }

    proptest! {
        #[test]
        fn monotonic_under_any_mix_of_ticks_and_merges(
            steps in prop::collection::vec((0u64..3, 0u64..1_000_000, any::<bool>()), 1..200)
        ) {
            let (clock, hlc) = manual(1);
            let mut prev = 0u64;
            for (advance, remote_ms, merge) in steps {
                clock.0.fetch_add(advance, Ordering::SeqCst);
                if merge {
                    let remote = from_physical_ms(remote_ms);
                    hlc.observe(remote);
                    let ts = hlc.now();
                    prop_assert!(ts > remote);
                    prop_assert!(ts > prev);
                    prev = ts;
                } else {
                    let ts = hlc.now();
                    prop_assert!(ts > prev);
                    prop_assert!(physical_ms(ts) >= clock.now_ms());
                    prev = ts;
                }
            }
        }
    }
}
