//! The sandboxed Lua state scripts run in, built once and reused by run after run.
//!
//! Libraries: the base functions that cannot reach outside the state, `string` (without
//! `dump`), `table`, `math`, `utf8` and `coroutine`. `math.random` is deterministic:
//! every run starts from the same fixed seed ([`RANDOM_SEED`]) and `math.randomseed` is
//! removed, so a re-run after a conflict draws the same numbers. Not available, each
//! with an error that says so: `io`, `os`, `package`, `debug`, `require`, `load`,
//! `loadstring`, `dofile`, `loadfile`, `string.dump`, `collectgarbage`, `print`,
//! `rawset`, and `__gc` metamethods (`setmetatable` refuses a metatable with a `__gc`
//! field). The global table and the library tables are read-only proxies: setting a
//! global is an error (scripts use locals). `pcall`, `xpcall`, `coroutine.resume` and
//! `coroutine.close` re-raise a limit error, so a script cannot catch its way past a
//! limit. Binary chunks are refused: scripts load as text only.
//!
//! # Why one state may serve many runs
//!
//! Building a state costs more than most scripts take to run, so the engine keeps idle
//! states in a pool (`pool`) and each run takes one for itself alone. No run can see or
//! poison another's, because nothing a script can write outlives its run:
//! - Every table a script can reach from the state is either read-only (the global table,
//!   the library tables, `kahuna`: proxies with protected metatables, iterated without
//!   handing out the table behind; `rawset` is gone) or hidden (the string metatable:
//!   `getmetatable("")` is `false`), or new in this run (`kahuna.args`, tables the
//!   `kahuna` functions return, the script's own values). So whatever a run creates is
//!   unreachable once it ends: garbage, collected, never seen by a later run.
//! - Code from one run cannot run in another: no value of a run is reachable to resume
//!   (a suspended coroutine is garbage), and a finalizer is the only way Lua runs code
//!   on its own. Lua 5.4 marks an object for finalization only when `setmetatable` gives
//!   it a metatable with a `__gc` field, which `setmetatable` refuses (a `__gc` added to
//!   the metatable later is never called). The `kahuna` functions and the hook reach
//!   the current run through cells set when it starts and cleared when it ends; with no
//!   run they fail ("no script is running").
//! - The state's own variable parts are reset at every start: `math.random` is reseeded,
//!   `kahuna.args` replaced, the memory limit set again. A cached compiled script keeps
//!   one upvalue between runs, `_ENV`, which `_ENV = x` in its main chunk rebinds; one
//!   whose `_ENV` is not the sandbox's is compiled afresh.
//! - Garbage a run leaves does not count against the next one: a failed allocation
//!   makes Lua collect everything unreachable and try again before it fails, and a run
//!   that leaves much garbage has it collected before its state goes back to the pool.
//! - A run that did not end normally (a limit, a dropped future, an internal error)
//!   drops its state instead of returning it: its coroutine may be stopped halfway
//!   through anything.
//!
//! What a run can still notice of earlier ones is what it can notice of a fresh state
//! too: addresses in `tostring` of tables and functions, and when the garbage collector
//! runs.

use std::sync::{Arc, Mutex, PoisonError};

use mlua::chunk::ChunkMode;
use mlua::{Function, HookTriggers, Lua, LuaOptions, MultiValue, StdLib, Table, Value, VmState};

use crate::error::ScriptError;
use crate::limits::{Budget, HOOK_INSTRUCTIONS_INTERVAL, Limits};

/// Chunk name of scripts; Lua shows it in errors as `script:LINE:`.
pub(crate) const CHUNK_NAME: &str = "=script";
/// The seed of `math.random` in every run.
pub const RANDOM_SEED: i64 = 0x4b61_6875_6e61;

/// Builds the sandbox from inside Lua, with the full (safe) libraries still at hand.
/// Argument: `check` (re-raises limit errors after a protected call). Returns the
/// read-only global environment, the table behind the read-only `kahuna` (filled by
/// the engine) and the original `math.randomseed` (kept from scripts, for the engine to
/// reseed each run with).
const SETUP: &str = r#"
local check = ...
local error, setmetatable, getmetatable, next, tostring = error, setmetatable, getmetatable, next, tostring
local rawget, type = rawget, type
local pcall, xpcall, co = pcall, xpcall, coroutine

local function deny(name, hint)
  return function() error(name .. " is not available in scripts" .. (hint or ""), 2) end
end
local function denied_table(name, hint)
  local function fail(_, k) error(name .. "." .. tostring(k) .. " is not available in scripts" .. hint, 2) end
  return setmetatable({}, { __index = fail, __newindex = fail, __metatable = false })
end
-- Iterates `t` without handing it out: `pairs` returns its state value to the caller, so
-- `next, t` would give a script the writable table behind a read-only proxy.
local function iterate(t)
  return function() return function(_, k) return next(t, k) end, nil, nil end
end
local function readonly(name, t)
  return setmetatable({}, {
    __index = t,
    __newindex = function(_, k)
      error("cannot set " .. name .. "." .. tostring(k) .. ": " .. name .. " is read-only", 2)
    end,
    __pairs = iterate(t),
    __len = function() return #t end,
    __metatable = false,
  })
end

local randomseed = math.randomseed
string.dump = deny("string.dump")
math.randomseed = deny("math.randomseed", " (math.random is seeded the same in every run)")
getmetatable("").__metatable = false

-- Lua marks a table for finalization only here, when its new metatable has a __gc
-- field: refusing that means no script code ever runs as a finalizer, which could
-- happen during a later run on the same state, or between runs.
local function setmetatable_no_gc(t, mt)
  if type(mt) == "table" and rawget(mt, "__gc") ~= nil then
    error("__gc metamethods are not available in scripts (a finalizer runs at no time the script controls)", 2)
  end
  return setmetatable(t, mt)
end

local sandboxed = " (scripts run in a sandbox without files, processes, modules or loading code)"
local G = {
  assert = assert, error = error, getmetatable = getmetatable, ipairs = ipairs, next = next,
  pairs = pairs, rawequal = rawequal, rawget = rawget, rawlen = rawlen, select = select,
  setmetatable = setmetatable_no_gc, tonumber = tonumber, tostring = tostring, type = type,
  _VERSION = _VERSION,
  pcall = function(...) return check(pcall(...)) end,
  xpcall = function(...) return check(xpcall(...)) end,
  string = readonly("string", string),
  table = readonly("table", table),
  math = readonly("math", math),
  utf8 = readonly("utf8", utf8),
  coroutine = readonly("coroutine", {
    create = co.create, isyieldable = co.isyieldable, running = co.running,
    status = co.status, wrap = co.wrap, yield = co.yield,
    resume = function(...) return check(co.resume(...)) end,
    close = function(...) return check(co.close(...)) end,
  }),
  io = denied_table("io", sandboxed),
  os = denied_table("os", sandboxed .. "; kahuna.now() gives the snapshot time"),
  package = denied_table("package", sandboxed),
  debug = denied_table("debug", sandboxed),
  require = deny("require", sandboxed),
  load = deny("load", sandboxed),
  loadstring = deny("loadstring", sandboxed),
  dofile = deny("dofile", sandboxed),
  loadfile = deny("loadfile", sandboxed),
  collectgarbage = deny("collectgarbage"),
  print = deny("print", "; return values instead"),
  rawset = deny("rawset", " (the global table is read-only)"),
}
local env = setmetatable({}, {
  __index = G,
  __newindex = function(_, k)
    k = tostring(k)
    error("cannot set global '" .. k .. "': the global table is read-only; use a local (local " .. k .. " = ...)", 2)
  end,
  __pairs = iterate(G),
  __metatable = false,
})
G._G = env
local kahuna = {}
G.kahuna = readonly("kahuna", kahuna)
return env, kahuna, randomseed
"#;

/// A sandboxed Lua state, serving one run at a time.
pub(crate) struct Sandbox {
    pub(crate) lua: Lua,
    /// The read-only environment scripts see as `_ENV`.
    pub(crate) env: Table,
    /// The table behind the read-only global `kahuna`: the engine fills it with the
    /// `kahuna` functions once, and sets `args` in it for each run.
    pub(crate) kahuna: Table,
    /// Lua's own `math.randomseed`, out of the scripts' reach.
    randomseed: Function,
    /// The current run's budget, read by the hook and by the `pcall` wrappers.
    budget: Arc<RunCell<Budget>>,
}

impl Sandbox {
    /// Builds the state: runs SETUP, installs the hook (which reads the budget of the
    /// current run) and sets the memory limit.
    pub(crate) fn new(limits: &Limits) -> Result<Self, ScriptError> {
        let internal = |e: mlua::Error| ScriptError::Internal(format!("building the script sandbox: {e}"));
        let libs = StdLib::STRING | StdLib::TABLE | StdLib::MATH | StdLib::UTF8 | StdLib::COROUTINE;
        let lua = Lua::new_with(libs, LuaOptions::new()).map_err(internal)?;
        let budget: Arc<RunCell<Budget>> = RunCell::new();

        let cell = budget.clone();
        let check = lua
            .create_function(move |_, results: MultiValue| {
                let budget = cell.get().map_err(ScriptError::into_lua)?;
                if let Some(e) = budget.killed() {
                    return Err(e.into_lua());
                }
                if matches!(results.front(), Some(Value::Boolean(false))) && results.get(1).is_some_and(is_memory_error)
                {
                    return Err(budget.kill(budget.memory_limit()).into_lua());
                }
                Ok(results)
            })
            .map_err(internal)?;
        let (env, kahuna, randomseed): (Table, Table, Function) =
            lua.load(SETUP).set_name("=sandbox").set_mode(ChunkMode::Text).call(check).map_err(internal)?;

        // Installed last: from here on no Lua code runs but a run's.
        let cell = budget.clone();
        let triggers = HookTriggers { every_nth_instruction: Some(HOOK_INSTRUCTIONS_INTERVAL), ..HookTriggers::new() };
        lua.set_global_hook(triggers, move |_, debug| {
            let budget = cell.get().map_err(ScriptError::into_lua)?;
            let line = debug.current_line().and_then(|l| u32::try_from(l).ok());
            budget.tick(line).map(|()| VmState::Continue).map_err(ScriptError::into_lua)
        })
        .map_err(internal)?;
        lua.set_memory_limit(limits.memory_bytes_max).map_err(internal)?;
        Ok(Self { lua, env, kahuna, randomseed, budget })
    }

    /// Starts a run: its budget becomes the one the hook checks, and `math.random`
    /// starts again from [`RANDOM_SEED`].
    pub(crate) fn begin(&self, budget: Arc<Budget>) -> Result<(), ScriptError> {
        self.budget.set(budget);
        self.randomseed.call::<()>(RANDOM_SEED).map_err(|e| ScriptError::Internal(format!("seeding math.random: {e}")))
    }

    /// Ends the run: the hook has no budget until the next begins.
    pub(crate) fn end(&self) {
        self.budget.clear();
    }

    /// Compiles `text` as the script's main function, in the sandbox's environment.
    pub(crate) fn compile(&self, text: &str) -> Result<Function, ScriptError> {
        compile_in(&self.lua, text, Some(self.env.clone()))
    }

    /// Whether `main`, a script compiled by [`Sandbox::compile`], still has the
    /// sandbox's environment as its `_ENV` (an assignment `_ENV = x` in its main chunk
    /// rebinds it for every later call).
    pub(crate) fn has_sandbox_env(&self, main: &Function) -> bool {
        main.environment().is_some_and(|env| env.to_pointer() == self.env.to_pointer())
    }
}

/// What belongs to the run a state serves, shared with the Rust functions the state
/// holds: set when a run starts, cleared when it ends.
pub(crate) struct RunCell<V>(Mutex<Option<Arc<V>>>);

impl<V> RunCell<V> {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self(Mutex::new(None)))
    }

    pub(crate) fn set(&self, value: Arc<V>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(value);
    }

    pub(crate) fn clear(&self) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take();
    }

    /// The current run's value; an error between runs, when no Lua code should run.
    pub(crate) fn get(&self) -> Result<Arc<V>, ScriptError> {
        let current = self.0.lock().unwrap_or_else(PoisonError::into_inner).clone();
        current.ok_or_else(|| ScriptError::Internal("no script is running on this Lua state".into()))
    }
}

/// Compiles `text` (as text, never bytecode) in `lua`.
pub(crate) fn compile_in(lua: &Lua, text: &str, env: Option<Table>) -> Result<Function, ScriptError> {
    let mut chunk = lua.load(text).set_name(CHUNK_NAME).set_mode(ChunkMode::Text);
    if let Some(env) = env {
        chunk = chunk.set_environment(env);
    }
    chunk.into_function().map_err(|e| ScriptError::from_lua(&e))
}

/// Checks that `text` compiles, in a bare state limited to `memory_bytes_max`.
pub(crate) fn check_syntax(text: &str, memory_bytes_max: usize) -> Result<(), ScriptError> {
    let internal = |e: mlua::Error| ScriptError::Internal(format!("building a Lua state: {e}"));
    let lua = Lua::new_with(StdLib::NONE, LuaOptions::new()).map_err(internal)?;
    lua.set_memory_limit(memory_bytes_max).map_err(internal)?;
    compile_in(&lua, text, None).map(drop)
}

/// Whether `error`, as caught by `pcall` or left by a run, is Lua running out of memory.
pub(crate) fn is_memory_error(value: &Value) -> bool {
    match value {
        // Lua's own message for an allocation failure, preallocated so raising it never allocates.
        Value::String(s) => s == "not enough memory",
        Value::Error(e) => is_memory_lua_error(e),
        _ => false,
    }
}

/// Whether an mlua error is (or wraps) an allocation failure.
pub(crate) fn is_memory_lua_error(error: &mlua::Error) -> bool {
    match error {
        mlua::Error::MemoryError(_) => true,
        mlua::Error::CallbackError { cause, .. } | mlua::Error::WithContext { cause, .. } => is_memory_lua_error(cause),
        _ => matches!(error.downcast_ref::<ScriptError>(), Some(ScriptError::MemoryLimit { .. })),
    }
}

/// The script line that called the running Rust function: the innermost frame of the
/// script's own chunk (skipping `pcall` and the sandbox's wrappers).
pub(crate) fn script_line(lua: &Lua) -> Option<u32> {
    (1..=8).find_map(|level| {
        lua.inspect_stack(level, |d| {
            let in_script = d.source().source.as_deref() == Some(CHUNK_NAME);
            if in_script { d.current_line().and_then(|l| u32::try_from(l).ok()) } else { None }
        })
        .flatten()
    })
}
