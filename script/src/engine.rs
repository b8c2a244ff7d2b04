//! The script engine: loads scripts into the cache and runs them, one transaction per
//! attempt, committing when the script returns and rolling back when it fails.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use mlua::MultiValue;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::api::RunCtx;
use crate::cache::{ScriptCache, ScriptHash};
use crate::error::ScriptError;
use crate::limits::{
    Budget, CACHE_BYTES_MAX, CACHE_SCRIPTS_MAX, IDLE_STATES_MAX_DEFAULT, Limits, RetryPolicy, SCRIPT_BYTES_MAX,
    splitmix64,
};
use crate::pool::Pool;
use crate::sandbox;
use crate::txn::{ScriptTxn, TxnSource};
use crate::value::{self, ScriptArgs, ScriptValue};

/// Settings of a [`ScriptEngine`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineConfig {
    pub limits: Limits,
    pub retry: RetryPolicy,
    /// Most scripts kept in the cache.
    pub cache_scripts_max: usize,
    /// Most bytes of script text kept in the cache.
    pub cache_bytes_max: usize,
    /// Most idle Lua states kept for later runs; a state given back beyond this is
    /// dropped. States in use are not bounded here: each running script has its own, so
    /// a state is rebuilt (costing more than most runs) whenever more scripts run at once
    /// than this.
    pub idle_states_max: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            retry: RetryPolicy::default(),
            cache_scripts_max: CACHE_SCRIPTS_MAX,
            cache_bytes_max: CACHE_BYTES_MAX,
            idle_states_max: IDLE_STATES_MAX_DEFAULT,
        }
    }
}

/// Which script to run: its text, or the hash of a text loaded before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Script<'a> {
    Text(&'a str),
    Hash(ScriptHash),
}

/// What a script run produced.
#[derive(Debug, Clone, PartialEq)]
pub struct ScriptOutput {
    /// What the script returned.
    pub value: ScriptValue,
    /// The hash of the script that ran.
    pub hash: ScriptHash,
    /// When its writes committed; `None` when it wrote nothing.
    pub commit_ts: Option<u64>,
    /// Runs it took, 1 when the first did not conflict.
    pub attempts: u32,
}

/// Runs Lua scripts as transactions. One engine serves a node: it is `Sync`, and each
/// run has a sandboxed Lua state to itself, taken from a pool of idle ones.
pub struct ScriptEngine {
    config: EngineConfig,
    cache: ScriptCache,
    /// Counts runs with retries, to seed each one's backoff jitter differently.
    runs: AtomicU64,
    /// Held by every re-run after a conflict (tokio's mutex is fair: FIFO). Scripts that
    /// fight over one hot key would otherwise mostly re-run into the same conflict; in
    /// line, each re-run meets at most the first attempts of others.
    rerun_gate: tokio::sync::Mutex<()>,
    /// Idle sandboxed Lua states: building one costs more than most runs.
    pool: Pool,
}

impl Default for ScriptEngine {
    fn default() -> Self {
        Self::new(EngineConfig::default())
    }
}

impl ScriptEngine {
    pub fn new(config: EngineConfig) -> Self {
        let scripts_max = NonZeroUsize::new(config.cache_scripts_max).unwrap_or(NonZeroUsize::MIN);
        Self {
            cache: ScriptCache::new(scripts_max, config.cache_bytes_max),
            config,
            runs: AtomicU64::new(0),
            rerun_gate: tokio::sync::Mutex::new(()),
            pool: Pool::new(config.idle_states_max),
        }
    }

    /// The engine's settings.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Checks that `text` compiles and caches it; returns its SHA-256 for
    /// [`ScriptEngine::run_hash`].
    pub fn load(&self, text: &str) -> Result<ScriptHash, ScriptError> {
        check_size(text)?;
        sandbox::check_syntax(text, self.config.limits.memory_bytes_max)?;
        let hash = ScriptHash::of(text);
        self.cache.insert(hash, text);
        Ok(hash)
    }

    /// Whether a script with `hash` is cached on this node.
    pub fn is_loaded(&self, hash: &ScriptHash) -> bool {
        self.cache.get(hash).is_some()
    }

    /// Runs `text` once in `txn`, and caches it. On success the transaction is committed
    /// and the output carries the commit timestamp; on any error it is rolled back, so
    /// nothing the script wrote is kept. A [`ScriptError::Conflict`] from the commit is
    /// returned as is: [`ScriptEngine::run_with_retries`] runs again instead.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future drops the transaction without committing it (and without
    /// awaiting [`ScriptTxn::rollback`]); once the commit has started, whether it
    /// completed is the transaction engine's to say.
    pub async fn run<T: ScriptTxn>(&self, text: &str, args: &ScriptArgs, txn: T) -> Result<ScriptOutput, ScriptError> {
        check_size(text)?;
        let hash = ScriptHash::of(text);
        let text = self.cache.insert(hash, text);
        self.attempt(&text, hash, args, txn, 1).await
    }

    /// Runs the cached script with `hash` once, as [`ScriptEngine::run`] does; a hash not
    /// in the cache is [`ScriptError::NotFound`] (the client loads the text and retries).
    ///
    /// # Cancel safety
    ///
    /// As [`ScriptEngine::run`].
    pub async fn run_hash<T: ScriptTxn>(
        &self,
        hash: &ScriptHash,
        args: &ScriptArgs,
        txn: T,
    ) -> Result<ScriptOutput, ScriptError> {
        let text = self.cache.get(hash).ok_or(ScriptError::NotFound(*hash))?;
        self.attempt(&text, *hash, args, txn, 1).await
    }

    /// Runs `script` in a fresh transaction from `source` until it commits, re-running
    /// it after a [`ScriptError::Conflict`] with exponential backoff, at most
    /// [`RetryPolicy::attempts_max`] times in all, re-runs one at a time on this node.
    /// Any other error ends it at once.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future drops the current attempt's transaction uncommitted; earlier
    /// attempts committed nothing. If the commit of the current attempt had started, the
    /// transaction engine decides whether it landed.
    pub async fn run_with_retries<S: TxnSource>(
        &self,
        script: Script<'_>,
        args: &ScriptArgs,
        source: &S,
    ) -> Result<ScriptOutput, ScriptError> {
        let (hash, text) = match script {
            Script::Text(text) => {
                check_size(text)?;
                let hash = ScriptHash::of(text);
                (hash, self.cache.insert(hash, text))
            }
            Script::Hash(hash) => (hash, self.cache.get(&hash).ok_or(ScriptError::NotFound(hash))?),
        };
        let retry = self.config.retry;
        let seed = splitmix64(self.runs.fetch_add(1, Ordering::Relaxed));
        let mut attempt = 1;
        loop {
            let _in_line = if attempt > 1 { Some(self.rerun_gate.lock().await) } else { None };
            let txn = source.begin().await?;
            match self.attempt(&text, hash, args, txn, attempt).await {
                Err(e) if e.is_conflict() && attempt < retry.attempts_max => {
                    tokio::time::sleep(retry.backoff(attempt, seed)).await;
                    attempt += 1;
                }
                Err(ScriptError::Conflict { line, message }) => {
                    let message = format!("{message} (gave up after {attempt} attempts)");
                    return Err(ScriptError::Conflict { line, message });
                }
                other => return other,
            }
        }
    }

    /// One attempt: runs the script, then commits or rolls back `txn`.
    async fn attempt<T: ScriptTxn>(
        &self,
        text: &str,
        hash: ScriptHash,
        args: &ScriptArgs,
        txn: T,
        attempts: u32,
    ) -> Result<ScriptOutput, ScriptError> {
        let snapshot_ts = txn.snapshot_ts();
        let slot = Arc::new(Mutex::new(Some(txn)));
        let result = self.execute(text, hash, args, slot.clone(), snapshot_ts).await;
        // The run is over and no call holds the slot: a run that ended normally has no call
        // pending, and any other dropped its state with the calls pending in it. A state
        // reused with a call pending would hold the slot forever: fail rather than wait.
        let Some(txn) = slot.try_lock().ok().and_then(|mut slot| slot.take()) else {
            return Err(ScriptError::Internal("the script's transaction is still in use or went missing".into()));
        };
        match result {
            Ok(value) => {
                let commit_ts = txn.commit().await?;
                Ok(ScriptOutput { value, hash, commit_ts, attempts })
            }
            Err(e) => {
                txn.rollback().await;
                Err(e)
            }
        }
    }

    /// Runs the script to its end in a pooled sandbox and converts what it returned.
    /// The sandbox goes back to the pool only when the run ended normally; on any other
    /// path (a limit, an internal error, the future dropped) it is dropped with `state`.
    async fn execute<T: ScriptTxn>(
        &self,
        text: &str,
        hash: ScriptHash,
        args: &ScriptArgs,
        txn: Arc<Mutex<Option<T>>>,
        snapshot_ts: u64,
    ) -> Result<ScriptValue, ScriptError> {
        let limits = self.config.limits;
        let budget = Arc::new(Budget::start(limits));
        let ctx = Arc::new(RunCtx { txn, snapshot_ts, budget: budget.clone(), main_thread: AtomicUsize::new(0) });
        let mut state = self.pool.take::<T>(&limits)?;
        let main = state.start(&ctx, args, hash, text)?;
        let thread = state.lua().create_thread(main).map_err(|e| ScriptError::from_lua(&e))?;
        ctx.main_thread.store(thread.to_pointer() as usize, Ordering::Relaxed);
        let run = thread.into_async::<MultiValue>(()).map_err(|e| ScriptError::from_lua(&e))?;
        let outcome = tokio::time::timeout_at(budget.deadline, run).await;
        let result = judge(outcome, &budget);
        if ended_normally(&result, &budget) && state.finish().is_ok() {
            self.pool.put(state);
        }
        result
    }

    /// Lua states built so far; a reused state is not counted again.
    #[cfg(test)]
    pub(crate) fn states_built(&self) -> u64 {
        self.pool.built()
    }

    /// Number of scripts in the cache.
    pub fn cached_scripts(&self) -> usize {
        self.cache.len()
    }
}

/// What a run that ended with `outcome` produced: a limit the script caught is still the
/// limit that ended it.
fn judge(
    outcome: Result<mlua::Result<MultiValue>, tokio::time::error::Elapsed>,
    budget: &Budget,
) -> Result<ScriptValue, ScriptError> {
    if let Some(e) = budget.killed() {
        return Err(e);
    }
    match outcome {
        Err(_elapsed) => Err(budget.kill(budget.time_limit(None))),
        Ok(Err(e)) if sandbox::is_memory_lua_error(&e) => Err(budget.kill(budget.memory_limit())),
        Ok(Err(e)) => Err(ScriptError::from_lua(&e)),
        // Neither the hook nor the timer can stop a C function (a backtracking
        // pattern match): a run that returned past its budget still does not commit.
        Ok(Ok(_)) if Instant::now() >= budget.deadline => Err(budget.kill(budget.time_limit(None))),
        Ok(Ok(values)) => value::from_lua_multi(values),
    }
}

/// Whether a run ended normally, so that its state may serve another: it returned, or
/// raised an error of its own, and no limit ended it. Every limit kills the budget; an
/// internal error may have left the state anywhere.
fn ended_normally(result: &Result<ScriptValue, ScriptError>, budget: &Budget) -> bool {
    if budget.killed().is_some() {
        return false;
    }
    match result {
        Ok(_) => true,
        Err(e) => match e {
            ScriptError::Syntax(_)
            | ScriptError::Runtime(_)
            | ScriptError::InvalidInput { .. }
            | ScriptError::NotFound(_)
            | ScriptError::Return(_)
            | ScriptError::Unsupported { .. }
            | ScriptError::Conflict { .. }
            | ScriptError::Kv { .. } => true,
            ScriptError::TimeLimit { .. }
            | ScriptError::InstructionLimit { .. }
            | ScriptError::MemoryLimit { .. }
            | ScriptError::Internal(_) => false,
        },
    }
}

fn check_size(text: &str) -> Result<(), ScriptError> {
    if text.len() > SCRIPT_BYTES_MAX {
        return Err(ScriptError::invalid(format!("script is {} bytes, the limit is {SCRIPT_BYTES_MAX}", text.len())));
    }
    Ok(())
}
