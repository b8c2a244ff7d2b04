//! A fresh, sandboxed Lua state for each run of a script.
//!
//! Libraries: the base functions that cannot reach outside the state, `string` (without
//! `dump`), `table`, `math`, `utf8` and `coroutine`. `math.random` is deterministic:
//! every run starts from the same fixed seed ([`RANDOM_SEED`]) and `math.randomseed` is
//! removed, so a re-run after a conflict draws the same numbers. Not available, each
//! with an error that says so: `io`, `os`, `package`, `debug`, `require`, `load`,
//! `loadstring`, `dofile`, `loadfile`, `string.dump`, `collectgarbage`, `print`,
//! `rawset`. The global table and the library tables are read-only proxies: setting a
//! global is an error (scripts use locals). `pcall`, `xpcall`, `coroutine.resume` and
//! `coroutine.close` re-raise a limit error, so a script cannot catch its way past a
//! limit. Binary chunks are refused: scripts load as text only.
//!
//! A state per run costs a little time but means no run can see or poison another's.

use std::sync::Arc;

use mlua::chunk::ChunkMode;
use mlua::{Function, HookTriggers, Lua, LuaOptions, MultiValue, StdLib, Table, Value, VmState};

use crate::error::ScriptError;
use crate::limits::{Budget, HOOK_INSTRUCTIONS_INTERVAL, Limits};

/// Chunk name of scripts; Lua shows it in errors as `script:LINE:`.
pub(crate) const CHUNK_NAME: &str = "=script";
/// The seed of `math.random` in every run.
pub const RANDOM_SEED: i64 = 0x4b61_6875_6e61;

/// Builds the sandbox from inside Lua, with the full (safe) libraries still at hand.
/// Arguments: `check` (re-raises limit errors after a protected call) and the seed.
/// Returns the read-only global environment, the table behind it and `readonly`.
const SETUP: &str = r#"
local check, seed = ...
local error, setmetatable, getmetatable, next, tostring = error, setmetatable, getmetatable, next, tostring
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

math.randomseed(seed)
string.dump = deny("string.dump")
math.randomseed = deny("math.randomseed", " (math.random is seeded the same in every run)")
getmetatable("").__metatable = false

local sandboxed = " (scripts run in a sandbox without files, processes, modules or loading code)"
local G = {
  assert = assert, error = error, getmetatable = getmetatable, ipairs = ipairs, next = next,
  pairs = pairs, rawequal = rawequal, rawget = rawget, rawlen = rawlen, select = select,
  setmetatable = setmetatable, tonumber = tonumber, tostring = tostring, type = type,
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
return env, G, readonly
"#;

/// One run's Lua state.
pub(crate) struct Sandbox {
    pub(crate) lua: Lua,
    /// The read-only environment scripts see as `_ENV`.
    pub(crate) env: Table,
    /// The table behind `env`; `kahuna` is added to it.
    pub(crate) globals: Table,
    /// Wraps a table in a read-only proxy: `readonly(name, table)`.
    pub(crate) readonly: Function,
}

impl Sandbox {
    /// Builds the state, installs the budget's hook and sets the memory limit.
    pub(crate) fn new(limits: &Limits, budget: Arc<Budget>) -> Result<Self, ScriptError> {
        let internal = |e: mlua::Error| ScriptError::Internal(format!("building the script sandbox: {e}"));
        let libs = StdLib::STRING | StdLib::TABLE | StdLib::MATH | StdLib::UTF8 | StdLib::COROUTINE;
        let lua = Lua::new_with(libs, LuaOptions::new()).map_err(internal)?;

        let check_budget = budget.clone();
        let check = lua
            .create_function(move |_, results: MultiValue| {
                if let Some(e) = check_budget.killed() {
                    return Err(e.into_lua());
                }
                if matches!(results.front(), Some(Value::Boolean(false))) && results.get(1).is_some_and(is_memory_error)
                {
                    return Err(check_budget.kill(check_budget.memory_limit()).into_lua());
                }
                Ok(results)
            })
            .map_err(internal)?;
        let (env, globals, readonly): (Table, Table, Function) = lua
            .load(SETUP)
            .set_name("=sandbox")
            .set_mode(ChunkMode::Text)
            .call((check, RANDOM_SEED))
            .map_err(internal)?;

        let triggers = HookTriggers { every_nth_instruction: Some(HOOK_INSTRUCTIONS_INTERVAL), ..HookTriggers::new() };
        lua.set_global_hook(triggers, move |_, debug| {
            let line = debug.current_line().and_then(|l| u32::try_from(l).ok());
            budget.tick(line).map(|()| VmState::Continue).map_err(ScriptError::into_lua)
        })
        .map_err(internal)?;
        lua.set_memory_limit(limits.memory_bytes_max).map_err(internal)?;
        Ok(Self { lua, env, globals, readonly })
    }

    /// Compiles `text` as the script's main function, in the sandbox's environment.
    pub(crate) fn compile(&self, text: &str) -> Result<Function, ScriptError> {
        compile_in(&self.lua, text, Some(self.env.clone()))
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
