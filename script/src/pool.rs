//! Lua states kept between runs: a run takes an idle state (or builds one), installs
//! what is its own (its context, `kahuna.args`, its budget) and gives the state back
//! only when it ended normally. Why this keeps runs apart is argued in `sandbox`.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use mlua::{Function, Lua};

use crate::api::{Api, RunCtx};
use crate::cache::ScriptHash;
use crate::error::ScriptError;
use crate::limits::{Limits, STATE_GARBAGE_BYTES_MAX, STATE_SCRIPTS_BYTES_MAX, STATE_SCRIPTS_MAX};
use crate::sandbox::Sandbox;
use crate::txn::ScriptTxn;
use crate::value::ScriptArgs;

/// Idle states, by the transaction type their `kahuna` functions serve (each entry is a
/// `Vec<State<T>>` for the `T` of its key). Each state is either here or owned by the
/// one run using it, never both and never shared.
pub(crate) struct Pool {
    idle: Mutex<HashMap<TypeId, Box<dyn Any + Send>>>,
    /// Most idle states kept for each transaction type.
    idle_max: usize,
    /// States built so far (for tests: a state dropped after a limit is not reused).
    built: AtomicU64,
}

impl Pool {
    pub(crate) fn new(idle_max: usize) -> Self {
        Self { idle: Mutex::new(HashMap::new()), idle_max, built: AtomicU64::new(0) }
    }

    /// An idle state for runs over `T`, or a new one.
    pub(crate) fn take<T: ScriptTxn>(&self, limits: &Limits) -> Result<State<T>, ScriptError> {
        let idle = {
            let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
            idle.get_mut(&TypeId::of::<T>()).and_then(|e| e.downcast_mut::<Vec<State<T>>>()).and_then(Vec::pop)
        };
        match idle {
            Some(state) => Ok(state),
            None => {
                self.built.fetch_add(1, Ordering::Relaxed);
                State::new(limits)
            }
        }
    }

    /// Keeps `state`, whose run ended normally and was finished, for a later run.
    pub(crate) fn put<T: ScriptTxn>(&self, state: State<T>) {
        debug_assert!(!state.running, "a state goes back to the pool only when its run has finished");
        let excess = {
            let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
            let entry = idle.entry(TypeId::of::<T>()).or_insert_with(|| Box::new(Vec::<State<T>>::new()));
            match entry.downcast_mut::<Vec<State<T>>>() {
                Some(states) if states.len() < self.idle_max => {
                    states.push(state);
                    None
                }
                _ => Some(state),
            }
        };
        // Closing a Lua state frees all of it: done outside the lock.
        drop(excess);
    }

    /// States built so far.
    #[cfg(test)]
    pub(crate) fn built(&self) -> u64 {
        self.built.load(Ordering::Relaxed)
    }
}

/// A sandboxed Lua state with the `kahuna` functions for transactions of type `T` and
/// the scripts it compiled.
pub(crate) struct State<T> {
    sandbox: Sandbox,
    api: Api<T>,
    /// Compiled main functions, in the sandbox's environment.
    scripts: HashMap<ScriptHash, Compiled>,
    /// Sum of `bytes` over `scripts`.
    scripts_bytes: usize,
    /// Lua memory of the state right after it was built, with nothing cached.
    base_bytes: usize,
    limits: Limits,
    /// Between [`State::start`] and a successful [`State::finish`].
    running: bool,
}

struct Compiled {
    main: Function,
    /// Lua memory compiling it took.
    bytes: usize,
}

impl<T: ScriptTxn> State<T> {
    fn new(limits: &Limits) -> Result<Self, ScriptError> {
        let sandbox = Sandbox::new(limits)?;
        let api = Api::install(&sandbox)?;
        // Building leaves garbage (SETUP's chunk); the base is what stays.
        sandbox.lua.gc_collect().map_err(|e| ScriptError::Internal(format!("building the script sandbox: {e}")))?;
        let base_bytes = sandbox.lua.used_memory();
        Ok(Self {
            sandbox,
            api,
            scripts: HashMap::new(),
            scripts_bytes: 0,
            base_bytes,
            limits: *limits,
            running: false,
        })
    }

    #[cfg(test)]
    pub(crate) fn sandbox(&self) -> &Sandbox {
        &self.sandbox
    }

    pub(crate) fn lua(&self) -> &Lua {
        &self.sandbox.lua
    }

    /// Starts `ctx`'s run of the script `text` (with hash `hash`): installs the run's
    /// budget, context and arguments, reseeds `math.random`, and returns the script's
    /// main function, compiled now or earlier in this state. Until [`State::finish`],
    /// the state serves this run only.
    pub(crate) fn start(
        &mut self,
        ctx: &Arc<RunCtx<T>>,
        args: &ScriptArgs,
        hash: ScriptHash,
        text: &str,
    ) -> Result<Function, ScriptError> {
        self.running = true;
        self.sandbox.begin(ctx.budget.clone())?;
        let main = self.main_function(hash, text)?;
        // The run may use its limit besides the other scripts this state keeps compiled, as
        // it could in a state of its own. Garbage left from earlier runs needs no room: a
        // failed allocation collects it and tries again.
        let own_bytes = self.scripts.get(&hash).map_or(0, |c| c.bytes);
        let limit = self.limits.memory_bytes_max.saturating_add(self.scripts_bytes - own_bytes);
        self.sandbox.lua.set_memory_limit(limit).map_err(|e| ScriptError::Internal(format!("memory limit: {e}")))?;
        self.api.begin(&self.sandbox, ctx.clone(), args)?;
        Ok(main)
    }

    /// The main function of the script with `hash`: the cached one when its `_ENV` is
    /// still the sandbox's, else compiled from `text` (and cached when there is room).
    fn main_function(&mut self, hash: ScriptHash, text: &str) -> Result<Function, ScriptError> {
        if let Some(c) = self.scripts.get(&hash) {
            if self.sandbox.has_sandbox_env(&c.main) {
                return Ok(c.main.clone());
            }
            self.scripts_bytes -= c.bytes;
            self.scripts.remove(&hash);
        }
        if self.scripts.len() >= STATE_SCRIPTS_MAX {
            self.clear_scripts();
        }
        let lua = &self.sandbox.lua;
        let limit = self.limits.memory_bytes_max.saturating_add(self.scripts_bytes);
        lua.set_memory_limit(limit).map_err(|e| ScriptError::Internal(format!("memory limit: {e}")))?;
        // With the collector stopped, so that freeing older garbage cannot hide what the
        // compile allocated: `bytes` counts the parser's garbage too, an over-estimate.
        lua.gc_stop();
        let before = lua.used_memory();
        let compiled = self.sandbox.compile(text);
        let bytes = lua.used_memory().saturating_sub(before);
        lua.gc_restart();
        let main = compiled?;
        if self.scripts_bytes + bytes > STATE_SCRIPTS_BYTES_MAX {
            self.clear_scripts();
        }
        if bytes <= STATE_SCRIPTS_BYTES_MAX {
            self.scripts.insert(hash, Compiled { main: main.clone(), bytes });
            self.scripts_bytes += bytes;
        }
        debug_assert_eq!(self.scripts_bytes, self.scripts.values().map(|c| c.bytes).sum::<usize>());
        Ok(main)
    }

    fn clear_scripts(&mut self) {
        self.scripts.clear();
        self.scripts_bytes = 0;
    }

    /// Ends the run after it ended normally: the `kahuna` functions and the hook fail
    /// until the next run starts, its arguments become garbage, and when the run left
    /// more than [`STATE_GARBAGE_BYTES_MAX`] it is collected now, on this run's time.
    /// An error means the state must be dropped.
    pub(crate) fn finish(&mut self) -> Result<(), ScriptError> {
        self.api.end(&self.sandbox)?;
        self.sandbox.end();
        let lua = &self.sandbox.lua;
        if lua.used_memory() > self.base_bytes + self.scripts_bytes + STATE_GARBAGE_BYTES_MAX {
            lua.gc_collect().map_err(|e| ScriptError::Internal(format!("collecting a script's garbage: {e}")))?;
        }
        self.running = false;
        Ok(())
    }
}
