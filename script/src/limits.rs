//! Limits on scripts and the budget that enforces them while a script runs.
//!
//! The time and instruction budget is checked by a Lua hook every
//! [`HOOK_INSTRUCTIONS_INTERVAL`] instructions and, while the script waits for the
//! transaction, by a timer. Memory is limited by mlua's allocator. Once a limit is hit
//! the run is *killed*: every later hook call and every `pcall`/`xpcall`/
//! `coroutine.resume` that caught the error raises it again, and the run ends with it
//! whatever the script does.
//!
//! Neither check can stop a C function: one call (a backtracking pattern match such as
//! `string.find(s, ".-.-x")`) runs to its end, however far past the budget. A run that
//! returns past its budget still ends with the time limit, so it never commits.

use std::sync::Mutex;
use std::sync::PoisonError;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::error::ScriptError;

/// Default time budget of one run (one attempt), in ms.
pub const TIME_MS_MAX_DEFAULT: u64 = 1_000;
/// Default memory limit of one run's Lua state, in bytes.
pub const MEMORY_BYTES_MAX_DEFAULT: usize = 64 * 1024 * 1024;
/// Lua instructions between two checks of the budget; a C function (string.rep,
/// table.concat, pattern matching) runs to its end between checks.
pub const HOOK_INSTRUCTIONS_INTERVAL: u32 = 1_000;
/// Longest script text, in bytes.
pub const SCRIPT_BYTES_MAX: usize = 1024 * 1024;
/// Most scripts kept in the cache.
pub const CACHE_SCRIPTS_MAX: usize = 4_096;
/// Most bytes of script text kept in the cache.
pub const CACHE_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Deepest nesting of tables in arguments and return values.
pub const VALUE_DEPTH_MAX: usize = 32;
/// Most values (counting nested ones) in the arguments or in a return value.
pub const VALUE_ITEMS_MAX: usize = 100_000;
/// Default of [`crate::EngineConfig::idle_states_max`]: as many as the server runs at once
/// (its `SCRIPT_RUNS_MAX`), so that a node busy at that limit rebuilds no state.
pub const IDLE_STATES_MAX_DEFAULT: usize = 64;
/// Most compiled scripts a Lua state keeps between runs; the cache is emptied when full.
pub(crate) const STATE_SCRIPTS_MAX: usize = 32;
/// Most Lua memory the compiled scripts of one state may hold, in bytes; a larger script
/// is compiled for each run. Bounds the memory of idle states.
pub(crate) const STATE_SCRIPTS_BYTES_MAX: usize = 2 * 1024 * 1024;
/// Memory above a state's own (its libraries and compiled scripts) a run may leave in
/// it, in bytes; more is collected before the state goes back to the pool, so idle
/// states stay small and no run spends its time collecting another's garbage.
pub(crate) const STATE_GARBAGE_BYTES_MAX: usize = 1024 * 1024;
/// Default attempts of a script that keeps conflicting (the first run included).
pub const ATTEMPTS_MAX_DEFAULT: u32 = 8;
/// Default wait before the second attempt, in ms; it doubles per attempt.
pub const BACKOFF_MS_BASE_DEFAULT: u64 = 2;
/// Default longest wait between two attempts, in ms.
pub const BACKOFF_MS_MAX_DEFAULT: u64 = 100;

/// What one run of a script may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Wall time of one run, from its start to its return, waits for reads included.
    pub time_ms_max: u64,
    /// Lua instructions of one run (counted in steps of [`HOOK_INSTRUCTIONS_INTERVAL`]);
    /// `None`: only the time budget applies.
    pub instructions_max: Option<u64>,
    /// Memory of the run's Lua state (libraries, the script, its data), in bytes; other
    /// scripts a reused state keeps compiled are not counted.
    pub memory_bytes_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { time_ms_max: TIME_MS_MAX_DEFAULT, instructions_max: None, memory_bytes_max: MEMORY_BYTES_MAX_DEFAULT }
    }
}

/// How a script that conflicts is run again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; at least 1.
    pub attempts_max: u32,
    /// Wait before the second attempt, in ms; doubled for each later one.
    pub backoff_ms_base: u64,
    /// Longest wait between attempts, in ms.
    pub backoff_ms_max: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts_max: ATTEMPTS_MAX_DEFAULT,
            backoff_ms_base: BACKOFF_MS_BASE_DEFAULT,
            backoff_ms_max: BACKOFF_MS_MAX_DEFAULT,
        }
    }
}

impl RetryPolicy {
    /// The wait after failed attempt `attempt` (1-based): exponential, capped, with
    /// jitter in its upper half drawn from `seed` so that scripts that conflicted with
    /// each other do not retry in lockstep. No OS randomness: the same seed waits the same.
    pub fn backoff(&self, attempt: u32, seed: u64) -> Duration {
        let exp = self.backoff_ms_base.saturating_mul(1u64 << attempt.saturating_sub(1).min(20));
        let full = exp.min(self.backoff_ms_max);
        let half = full / 2;
        let jitter = if full > half { splitmix64(seed ^ u64::from(attempt)) % (full - half + 1) } else { 0 };
        Duration::from_millis(half + jitter)
    }
}

/// A well-mixed 64-bit function of `x` (SplitMix64's finalizer).
pub(crate) fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The budget of one run, shared by the hook, the sandbox's `pcall` wrappers and the
/// engine.
pub(crate) struct Budget {
    limits: Limits,
    pub(crate) deadline: Instant,
    /// Instructions executed so far, in steps of [`HOOK_INSTRUCTIONS_INTERVAL`].
    instructions: AtomicU64,
    /// The limit that ended the run; once set it never changes.
    killed: Mutex<Option<ScriptError>>,
}

impl Budget {
    pub(crate) fn start(limits: Limits) -> Self {
        Self {
            limits,
            deadline: Instant::now() + Duration::from_millis(limits.time_ms_max),
            instructions: AtomicU64::new(0),
            killed: Mutex::new(None),
        }
    }

    /// Called by the hook every [`HOOK_INSTRUCTIONS_INTERVAL`] instructions; errors
    /// when a limit is (or was) passed.
    pub(crate) fn tick(&self, line: Option<u32>) -> Result<(), ScriptError> {
        if let Some(e) = self.killed() {
            return Err(e);
        }
        let done = self.instructions.fetch_add(u64::from(HOOK_INSTRUCTIONS_INTERVAL), Ordering::Relaxed)
            + u64::from(HOOK_INSTRUCTIONS_INTERVAL);
        if let Some(limit) = self.limits.instructions_max
            && done > limit
        {
            return Err(self.kill(ScriptError::InstructionLimit { limit, line }));
        }
        if Instant::now() >= self.deadline {
            return Err(self.kill(self.time_limit(line)));
        }
        Ok(())
    }

    /// The error for a run past its time budget.
    pub(crate) fn time_limit(&self, line: Option<u32>) -> ScriptError {
        ScriptError::TimeLimit { limit_ms: self.limits.time_ms_max, line }
    }

    /// The error for a run past its memory limit.
    pub(crate) fn memory_limit(&self) -> ScriptError {
        ScriptError::MemoryLimit { limit_bytes: self.limits.memory_bytes_max }
    }

    /// Ends the run with `error` (unless it already ended) and returns the error it ends with.
    pub(crate) fn kill(&self, error: ScriptError) -> ScriptError {
        self.killed.lock().unwrap_or_else(PoisonError::into_inner).get_or_insert(error).clone()
    }

    /// The limit that ended the run, if one did.
    pub(crate) fn killed(&self) -> Option<ScriptError> {
        self.killed.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let p = RetryPolicy { attempts_max: 10, backoff_ms_base: 4, backoff_ms_max: 50 };
        for seed in 0..50 {
            let first = p.backoff(1, seed).as_millis();
            assert!((2..=4).contains(&first), "{first}");
            let late = p.backoff(9, seed).as_millis();
            assert!((25..=50).contains(&late), "{late}");
        }
        assert_eq!(p.backoff(3, 7), p.backoff(3, 7), "deterministic for one seed");
        assert!((0..20).map(|s| p.backoff(5, s)).collect::<std::collections::HashSet<_>>().len() > 1);
    }

    #[test]
    fn instruction_budget_kills_and_stays_killed() {
        let b = Budget::start(Limits { instructions_max: Some(2_500), ..Limits::default() });
        assert!(b.tick(None).is_ok());
        assert!(b.tick(None).is_ok());
        let e = b.tick(Some(4)).unwrap_err();
        assert_eq!(e, ScriptError::InstructionLimit { limit: 2_500, line: Some(4) });
        assert_eq!(b.tick(Some(9)).unwrap_err(), e, "the first limit sticks");
        assert_eq!(b.kill(b.memory_limit()), e);
    }
}
