//! The `kahuna` Lua table: the script's view of its transaction.
//!
//! | function | returns |
//! |---|---|
//! | `get(key [, {durability=, at=, as_of=}])` | `{key, value, revision, commit_ts, expires_at_ms}` or nil |
//! | `exists(key [, opts as get])` | boolean |
//! | `set(key, value [, {nx=, xx=, cmp=, cmprev=, ttl=, durability=}])` | whether it was set |
//! | `delete(key [, {cmp=, cmprev=, durability=}])` | whether it was deleted |
//! | `extend(key, ttl_ms [, {durability=}])` | whether the key was live |
//! | `scan(prefix [, limit or {limit=, after=, durability=}])` | array of entries as `get`, and `more` |
//! | `now()` / `now_ms()` | the snapshot's HLC timestamp / its physical ms |
//! | `lock(name, owner, lease_ms [, {durability=}])` | `{acquired, owner, token, expires_at_ms, last_token}` |
//! | `unlock(name, owner [, {durability=}])` | whether it was released |
//! | `extend_lock(name, owner, lease_ms [, {durability=}])` | `{extended, owner, token, expires_at_ms, last_token}` |
//! | `get_lock(name [, {durability=}])` | `{owner, token, expires_at_ms}` or nil |
//! | `create_sequence(name [, {start=1, increment=1, max=}])` | whether it was created |
//! | `next_sequence(name [, idempotency_key])` | the next value |
//! | `reserve_sequence(name, count [, idempotency_key])` | `{first, count, increment, last}` |
//! | `get_sequence(name)` | `{start, increment, max, allocated}` or nil |
//! | `delete_sequence(name)` | whether it was deleted |
//!
//! `kahuna.args` holds the arguments. Values are byte strings (numbers given as values
//! are stored as their text); revisions, timestamps and tokens are integers. Options are
//! checked: an unknown option name is an error, so a typo never passes silently.
//! Functions that reach the transaction are async under the hood; they may be called
//! from the script's main body and the functions it calls, not from inside a coroutine.
//!
//! The functions are created once per Lua state and serve one run after another: they
//! reach the current run's [`RunCtx`] through a cell the engine sets when the run starts
//! and clears when it ends; between runs they fail. Only `kahuna.args` is made per run.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use kahuna_kernel::{
    DeleteArgs, Durability, KeyValue, LOCK_LEASE_MS_MAX_DEFAULT, LockOp, LockReply, SequenceOp, SequenceReply, SetArgs,
    check_count, check_idempotency_key, check_key, check_lease, check_name, check_owner, check_ttl, physical_ms,
    scan_limit,
};
use mlua::{Lua, MultiValue, Table, Value};
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::error::ScriptError;
use crate::limits::Budget;
use crate::sandbox::{RunCell, Sandbox, script_line};
use crate::txn::{ReadOpts, ScanOpts, ScriptTxn};
use crate::value::{ScriptArgs, args_to_lua};

/// What the `kahuna` functions share during one run.
pub(crate) struct RunCtx<T> {
    /// The run's transaction; taken out by the engine when the script has ended.
    pub(crate) txn: Arc<Mutex<Option<T>>>,
    pub(crate) snapshot_ts: u64,
    pub(crate) budget: Arc<Budget>,
    /// Address of the Lua thread running the script's main chunk.
    pub(crate) main_thread: AtomicUsize,
}

impl<T: ScriptTxn> RunCtx<T> {
    async fn txn(&self) -> Result<OwnedMutexGuard<Option<T>>, ScriptError> {
        let guard = self.txn.clone().lock_owned().await;
        if guard.is_none() {
            return Err(ScriptError::Internal("the script's transaction has already ended".into()));
        }
        Ok(guard)
    }
}

/// Runs `$body` with `$txn` bound to `&mut T` of the run.
macro_rules! with_txn {
    ($ctx:expr, |$txn:ident| $body:expr) => {{
        let mut guard = $ctx.txn().await?;
        match guard.as_mut() {
            Some($txn) => $body,
            None => Err(ScriptError::Internal("the script's transaction has already ended".into())),
        }
    }};
}

/// The `kahuna` functions of one Lua state. They are created once, with the state, and
/// reach the run the state serves through `current`.
pub(crate) struct Api<T> {
    current: Arc<RunCell<RunCtx<T>>>,
}

impl<T: ScriptTxn> Api<T> {
    /// Creates the `kahuna` functions in the sandbox's `kahuna` table.
    pub(crate) fn install(sb: &Sandbox) -> Result<Self, ScriptError> {
        let (lua, k) = (&sb.lua, &sb.kahuna);
        let current = RunCell::new();
        let cell = current.clone();
        let f = lua.create_function(move |_, ()| Ok(lua_int(run_ctx(&cell)?.snapshot_ts))).map_err(lua_err)?;
        k.raw_set("now", f).map_err(lua_err)?;
        let cell = current.clone();
        let f =
            lua.create_function(move |_, ()| Ok(lua_int(physical_ms(run_ctx(&cell)?.snapshot_ts)))).map_err(lua_err)?;
        k.raw_set("now_ms", f).map_err(lua_err)?;

        register(lua, k, &current, "get", get)?;
        register(lua, k, &current, "exists", exists)?;
        register(lua, k, &current, "set", set)?;
        register(lua, k, &current, "delete", delete)?;
        register(lua, k, &current, "extend", extend)?;
        register(lua, k, &current, "scan", scan)?;
        register(lua, k, &current, "lock", lock)?;
        register(lua, k, &current, "unlock", unlock)?;
        register(lua, k, &current, "extend_lock", extend_lock)?;
        register(lua, k, &current, "get_lock", get_lock)?;
        register(lua, k, &current, "create_sequence", create_sequence)?;
        register(lua, k, &current, "next_sequence", next_sequence)?;
        register(lua, k, &current, "reserve_sequence", reserve_sequence)?;
        register(lua, k, &current, "get_sequence", get_sequence)?;
        register(lua, k, &current, "delete_sequence", delete_sequence)?;
        Ok(Self { current })
    }

    /// Makes `ctx` the run the functions serve and gives it its own `kahuna.args`.
    pub(crate) fn begin(&self, sb: &Sandbox, ctx: Arc<RunCtx<T>>, args: &ScriptArgs) -> Result<(), ScriptError> {
        self.current.set(ctx);
        sb.kahuna.raw_set("args", args_to_lua(&sb.lua, args)?).map_err(lua_err)
    }

    /// Ends the run: the functions fail until the next one begins, and its arguments
    /// become garbage.
    pub(crate) fn end(&self, sb: &Sandbox) -> Result<(), ScriptError> {
        self.current.clear();
        sb.kahuna.raw_set("args", Value::Nil).map_err(lua_err)
    }
}

/// The run a `kahuna` function serves, as a Lua error when none is running.
fn run_ctx<T>(cell: &RunCell<RunCtx<T>>) -> mlua::Result<Arc<RunCtx<T>>> {
    cell.get().map_err(ScriptError::into_lua)
}

/// Registers `kahuna.<name>` as an async function running `f` for the current run.
/// Errors name the script line of the call.
fn register<T, F, Fut>(
    lua: &Lua,
    k: &Table,
    current: &Arc<RunCell<RunCtx<T>>>,
    name: &'static str,
    f: F,
) -> Result<(), ScriptError>
where
    T: ScriptTxn,
    F: Fn(Lua, Call, Arc<RunCtx<T>>, Args) -> Fut + Send + Sync + Copy + 'static,
    Fut: Future<Output = Result<MultiValue, ScriptError>> + Send + 'static,
{
    let current = current.clone();
    let func = lua
        .create_async_function(move |lua: Lua, args: MultiValue| {
            let call = Call { name, line: script_line(&lua) };
            let ctx = run_ctx(&current).and_then(|ctx| check_thread(&lua, &call, &ctx).map(|()| ctx));
            let args = Args(args.into_vec());
            async move { f(lua, call, ctx?, args).await.map_err(|e| e.at_line(call.line).into_lua()) }
        })
        .map_err(lua_err)?;
    k.raw_set(name, func).map_err(lua_err)
}

/// Refuses calls after a limit ended the run, and calls from inside a coroutine: a
/// wait for the transaction suspends the whole script, which a coroutine cannot pass on.
fn check_thread<T>(lua: &Lua, call: &Call, ctx: &RunCtx<T>) -> mlua::Result<()> {
    if let Some(e) = ctx.budget.killed() {
        return Err(e.into_lua());
    }
    if lua.current_thread().to_pointer() as usize != ctx.main_thread.load(Ordering::Relaxed) {
        return Err(call.bad("cannot be called inside a coroutine; call it from the script's main body").into_lua());
    }
    Ok(())
}

/// One call of a `kahuna` function: its name and the script line it came from.
#[derive(Debug, Clone, Copy)]
struct Call {
    name: &'static str,
    line: Option<u32>,
}

impl Call {
    fn bad(&self, message: impl std::fmt::Display) -> ScriptError {
        ScriptError::InvalidInput { line: self.line, message: format!("kahuna.{}: {message}", self.name) }
    }

    fn kv(&self, e: kahuna_kernel::KvError) -> ScriptError {
        match e {
            kahuna_kernel::KvError::InvalidInput(m) => self.bad(m),
            other => ScriptError::from(other),
        }
    }
}

/// The arguments of one call.
struct Args(Vec<Value>);

impl Args {
    fn at(&self, i: usize) -> &Value {
        self.0.get(i).unwrap_or(&Value::Nil)
    }

    /// A UTF-8 string (a number is taken as its text).
    fn text(&self, call: &Call, i: usize, what: &str) -> Result<String, ScriptError> {
        match self.at(i) {
            Value::String(s) => {
                s.to_str().map(|s| s.to_string()).map_err(|_| call.bad(format_args!("{what} is not valid UTF-8")))
            }
            Value::Integer(n) => Ok(n.to_string()),
            other => Err(call.bad(format_args!("{what} must be a string, got {}", other.type_name()))),
        }
    }

    fn key(&self, call: &Call, i: usize) -> Result<String, ScriptError> {
        let key = self.text(call, i, "key")?;
        check_key(&key).map_err(|e| call.kv(e))?;
        Ok(key)
    }

    fn int(&self, call: &Call, i: usize, what: &str) -> Result<i64, ScriptError> {
        as_int(self.at(i))
            .ok_or_else(|| call.bad(format_args!("{what} must be an integer, got {}", describe(self.at(i)))))
    }

    fn opt_text(&self, call: &Call, i: usize, what: &str) -> Result<Option<String>, ScriptError> {
        if self.at(i).is_nil() { Ok(None) } else { self.text(call, i, what).map(Some) }
    }

    /// The options table at `i` (nil: none), with only `allowed` names in it.
    fn opts(&self, call: &Call, i: usize, allowed: &[&str]) -> Result<Opts, ScriptError> {
        match self.at(i) {
            Value::Nil => Ok(Opts(None)),
            Value::Table(t) => Opts::checked(call, t.clone(), allowed),
            other => Err(call.bad(format_args!("options must be a table, got {}", other.type_name()))),
        }
    }
}

/// An options table, `{name = value, ...}`.
struct Opts(Option<Table>);

impl Opts {
    fn checked(call: &Call, t: Table, allowed: &[&str]) -> Result<Self, ScriptError> {
        for pair in t.pairs::<Value, Value>() {
            let (k, _) = pair.map_err(|e| ScriptError::from_lua(&e))?;
            let known = match &k {
                Value::String(s) => s.to_str().is_ok_and(|s| allowed.contains(&&*s)),
                _ => false,
            };
            if !known {
                let name = match &k {
                    Value::String(s) => s.to_string_lossy(),
                    other => describe(other),
                };
                return Err(call.bad(format_args!("unknown option {name:?}; options are {}", allowed.join(", "))));
            }
        }
        Ok(Self(Some(t)))
    }

    fn get(&self, name: &str) -> Value {
        self.0.as_ref().and_then(|t| t.raw_get::<Value>(name).ok()).unwrap_or(Value::Nil)
    }

    fn flag(&self, call: &Call, name: &str) -> Result<bool, ScriptError> {
        match self.get(name) {
            Value::Nil => Ok(false),
            Value::Boolean(b) => Ok(b),
            other => Err(call.bad(format_args!("option {name} must be a boolean, got {}", other.type_name()))),
        }
    }

    fn int(&self, call: &Call, name: &str) -> Result<Option<i64>, ScriptError> {
        match self.get(name) {
            Value::Nil => Ok(None),
            v => as_int(&v)
                .map(Some)
                .ok_or_else(|| call.bad(format_args!("option {name} must be an integer, got {}", describe(&v)))),
        }
    }

    fn bytes(&self, lua: &Lua, call: &Call, name: &str) -> Result<Option<Vec<u8>>, ScriptError> {
        match self.get(name) {
            Value::Nil => Ok(None),
            v => as_bytes(lua, &v)
                .map(Some)
                .ok_or_else(|| call.bad(format_args!("option {name} must be a string, got {}", v.type_name()))),
        }
    }

    fn durability(&self, call: &Call) -> Result<Durability, ScriptError> {
        match self.get("durability") {
            Value::Nil => Ok(Durability::Persistent),
            Value::String(s) if s == "persistent" => Ok(Durability::Persistent),
            Value::String(s) if s == "ephemeral" => Ok(Durability::Ephemeral),
            other => Err(call.bad(format_args!(
                "option durability must be \"persistent\" or \"ephemeral\", got {}",
                describe(&other)
            ))),
        }
    }

    fn read_opts(&self, call: &Call) -> Result<ReadOpts, ScriptError> {
        let at_revision = self.int(call, "at")?;
        let as_of = match self.int(call, "as_of")? {
            None => None,
            Some(t) => Some(u64::try_from(t).map_err(|_| call.bad("option as_of must not be negative"))?),
        };
        if at_revision.is_some() && as_of.is_some() {
            return Err(call.bad("options at and as_of cannot be combined"));
        }
        Ok(ReadOpts { durability: self.durability(call)?, at_revision, as_of })
    }
}

/// An integer, or a float with an integer value (`1e3`).
fn as_int(v: &Value) -> Option<i64> {
    /// 2^63: every whole float in -2^63 .. 2^63 converts to i64 exactly.
    const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;
    match v {
        Value::Integer(n) => Some(*n),
        Value::Number(f) if f.fract() == 0.0 && *f >= -TWO_POW_63 && *f < TWO_POW_63 => Some(*f as i64),
        _ => None,
    }
}

/// A string's bytes, or a number's text as Lua writes it.
fn as_bytes(lua: &Lua, v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::String(s) => Some(s.as_bytes().to_vec()),
        Value::Integer(_) | Value::Number(_) => {
            lua.coerce_string(v.clone()).ok().flatten().map(|s| s.as_bytes().to_vec())
        }
        _ => None,
    }
}

fn describe(v: &Value) -> String {
    match v {
        Value::Number(f) => format!("the number {f}"),
        Value::String(s) => format!("the string {:?}", s.to_string_lossy()),
        other => other.type_name().to_string(),
    }
}

/// A u64 (timestamps, expiries) as a Lua integer; these stay far below 2^63.
fn lua_int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn lua_err(e: mlua::Error) -> ScriptError {
    ScriptError::from_lua(&e)
}

fn one(v: Value) -> Result<MultiValue, ScriptError> {
    Ok(MultiValue::from_iter([v]))
}

fn kv_table(lua: &Lua, kv: &KeyValue) -> Result<Table, ScriptError> {
    let t = lua.create_table_with_capacity(0, 5).map_err(lua_err)?;
    t.raw_set("key", kv.key.as_str()).map_err(lua_err)?;
    t.raw_set("value", lua.create_string(&kv.value).map_err(lua_err)?).map_err(lua_err)?;
    t.raw_set("revision", kv.revision).map_err(lua_err)?;
    t.raw_set("commit_ts", lua_int(kv.commit_ts)).map_err(lua_err)?;
    t.raw_set("expires_at_ms", lua_int(kv.expires_at_ms)).map_err(lua_err)?;
    Ok(t)
}

const READ_OPTS: &[&str] = &["durability", "at", "as_of"];
const DURABILITY_OPT: &[&str] = &["durability"];

async fn get<T: ScriptTxn>(lua: Lua, call: Call, ctx: Arc<RunCtx<T>>, args: Args) -> Result<MultiValue, ScriptError> {
    let key = args.key(&call, 0)?;
    let opts = args.opts(&call, 1, READ_OPTS)?.read_opts(&call)?;
    let found = with_txn!(ctx, |txn| txn.get(&key, opts).await)?;
    match found {
        Some(kv) => one(Value::Table(kv_table(&lua, &kv)?)),
        None => one(Value::Nil),
    }
}

async fn exists<T: ScriptTxn>(_: Lua, call: Call, ctx: Arc<RunCtx<T>>, args: Args) -> Result<MultiValue, ScriptError> {
    let key = args.key(&call, 0)?;
    let opts = args.opts(&call, 1, READ_OPTS)?.read_opts(&call)?;
    let found = with_txn!(ctx, |txn| txn.get(&key, opts).await)?;
    one(Value::Boolean(found.is_some()))
}

async fn set<T: ScriptTxn>(lua: Lua, call: Call, ctx: Arc<RunCtx<T>>, args: Args) -> Result<MultiValue, ScriptError> {
    let key = args.key(&call, 0)?;
    let value = as_bytes(&lua, args.at(1))
        .ok_or_else(|| call.bad(format_args!("value must be a string or a number, got {}", args.at(1).type_name())))?;
    let opts = args.opts(&call, 2, &["nx", "xx", "cmp", "cmprev", "ttl", "durability"])?;
    let (nx, xx) = (opts.flag(&call, "nx")?, opts.flag(&call, "xx")?);
    if nx && xx {
        return Err(call.bad("options nx and xx cannot be combined"));
    }
    let ttl_ms = check_ttl(opts.int(&call, "ttl")?.unwrap_or(0)).map_err(|e| call.kv(e))?;
    let set_args = SetArgs {
        key,
        value,
        nx,
        xx,
        compare_value: opts.bytes(&lua, &call, "cmp")?,
        compare_revision: opts.int(&call, "cmprev")?,
        ttl_ms,
    };
    let durability = opts.durability(&call)?;
    let done = with_txn!(ctx, |txn| txn.set(set_args, durability).await)?;
    one(Value::Boolean(done))
}

async fn delete<T: ScriptTxn>(
    lua: Lua,
    call: Call,
    ctx: Arc<RunCtx<T>>,
    args: Args,
) -> Result<MultiValue, ScriptError> {
    let key = args.key(&call, 0)?;
    let opts = args.opts(&call, 1, &["cmp", "cmprev", "durability"])?;
    let delete_args = DeleteArgs {
        key,
        compare_value: opts.bytes(&lua, &call, "cmp")?,
        compare_revision: opts.int(&call, "cmprev")?,
    };
    let durability = opts.durability(&call)?;
    let done = with_txn!(ctx, |txn| txn.delete(delete_args, durability).await)?;
    one(Value::Boolean(done))
}

async fn extend<T: ScriptTxn>(_: Lua, call: Call, ctx: Arc<RunCtx<T>>, args: Args) -> Result<MultiValue, ScriptError> {
    let key = args.key(&call, 0)?;
    let ttl_ms = check_ttl(args.int(&call, 1, "ttl_ms")?).map_err(|e| call.kv(e))?;
    let durability = args.opts(&call, 2, DURABILITY_OPT)?.durability(&call)?;
    let done = with_txn!(ctx, |txn| txn.extend(&key, ttl_ms, durability).await)?;
    one(Value::Boolean(done))
}

async fn scan<T: ScriptTxn>(lua: Lua, call: Call, ctx: Arc<RunCtx<T>>, args: Args) -> Result<MultiValue, ScriptError> {
    let prefix = args.text(&call, 0, "prefix")?;
    let (limit, after, durability) = match args.at(1) {
        Value::Table(_) => {
            let opts = args.opts(&call, 1, &["limit", "after", "durability"])?;
            let after = match opts.get("after") {
                Value::Nil => None,
                Value::String(s) => {
                    Some(s.to_str().map_err(|_| call.bad("option after is not valid UTF-8"))?.to_string())
                }
                other => return Err(call.bad(format_args!("option after must be a string, got {}", other.type_name()))),
            };
            (opts.int(&call, "limit")?, after, opts.durability(&call)?)
        }
        Value::Nil => (None, None, Durability::Persistent),
        _ => (Some(args.int(&call, 1, "limit")?), None, Durability::Persistent),
    };
    let limit = u32::try_from(limit.unwrap_or(0)).map_err(|_| call.bad("limit must be between 0 and 2^32"))?;
    let limit = scan_limit(limit).map_err(|e| call.kv(e))?;
    let page = with_txn!(ctx, |txn| txn.scan(&prefix, ScanOpts { durability, after, limit }).await)?;
    let items = lua.create_table_with_capacity(page.items.len(), 0).map_err(lua_err)?;
    for (i, kv) in page.items.iter().enumerate() {
        items.raw_set(i + 1, kv_table(&lua, kv)?).map_err(lua_err)?;
    }
    Ok(MultiValue::from_iter([Value::Table(items), Value::Boolean(page.more)]))
}

/// A lock reply as `{<done_name>, owner, token, expires_at_ms, last_token}`.
fn lock_table(lua: &Lua, reply: &LockReply, done_name: &str) -> Result<MultiValue, ScriptError> {
    let t = lua.create_table_with_capacity(0, 5).map_err(lua_err)?;
    t.raw_set(done_name, reply.done).map_err(lua_err)?;
    if let Some(h) = &reply.holder {
        t.raw_set("owner", h.owner.as_str()).map_err(lua_err)?;
        t.raw_set("token", lua_int(h.token)).map_err(lua_err)?;
        t.raw_set("expires_at_ms", lua_int(h.expires_at_ms)).map_err(lua_err)?;
    }
    t.raw_set("last_token", lua_int(reply.last_token)).map_err(lua_err)?;
    one(Value::Table(t))
}

/// Name, owner and lease of a lock call; `owner`/`lease` say which it takes.
fn lock_args(call: &Call, args: &Args, lease: bool) -> Result<(String, String, u64), ScriptError> {
    let name = args.text(call, 0, "lock name")?;
    check_name("lock", &name).map_err(|e| call.kv(e))?;
    let owner = args.text(call, 1, "owner")?;
    check_owner(&owner).map_err(|e| call.kv(e))?;
    let lease_ms = if lease {
        check_lease(args.int(call, 2, "lease_ms")?, LOCK_LEASE_MS_MAX_DEFAULT).map_err(|e| call.kv(e))?
    } else {
        0
    };
    Ok((name, owner, lease_ms))
}

async fn lock<T: ScriptTxn>(lua: Lua, call: Call, ctx: Arc<RunCtx<T>>, args: Args) -> Result<MultiValue, ScriptError> {
    let (name, owner, lease_ms) = lock_args(&call, &args, true)?;
    let durability = args.opts(&call, 3, DURABILITY_OPT)?.durability(&call)?;
    let reply = with_txn!(ctx, |txn| txn.lock(LockOp::Acquire { name, owner, lease_ms }, durability).await)?;
    lock_table(&lua, &reply, "acquired")
}

async fn unlock<T: ScriptTxn>(_: Lua, call: Call, ctx: Arc<RunCtx<T>>, args: Args) -> Result<MultiValue, ScriptError> {
    let (name, owner, _) = lock_args(&call, &args, false)?;
    let durability = args.opts(&call, 2, DURABILITY_OPT)?.durability(&call)?;
    let reply = with_txn!(ctx, |txn| txn.lock(LockOp::Release { name, owner }, durability).await)?;
    one(Value::Boolean(reply.done))
}

async fn extend_lock<T: ScriptTxn>(
    lua: Lua,
    call: Call,
    ctx: Arc<RunCtx<T>>,
    args: Args,
) -> Result<MultiValue, ScriptError> {
    let (name, owner, lease_ms) = lock_args(&call, &args, true)?;
    let durability = args.opts(&call, 3, DURABILITY_OPT)?.durability(&call)?;
    let reply = with_txn!(ctx, |txn| txn.lock(LockOp::Extend { name, owner, lease_ms }, durability).await)?;
    lock_table(&lua, &reply, "extended")
}

async fn get_lock<T: ScriptTxn>(
    lua: Lua,
    call: Call,
    ctx: Arc<RunCtx<T>>,
    args: Args,
) -> Result<MultiValue, ScriptError> {
    let name = args.text(&call, 0, "lock name")?;
    check_name("lock", &name).map_err(|e| call.kv(e))?;
    let durability = args.opts(&call, 1, DURABILITY_OPT)?.durability(&call)?;
    let reply = with_txn!(ctx, |txn| txn.get_lock(&name, durability).await)?;
    match reply.holder {
        None => one(Value::Nil),
        Some(h) => {
            let t = lua.create_table_with_capacity(0, 3).map_err(lua_err)?;
            t.raw_set("owner", h.owner.as_str()).map_err(lua_err)?;
            t.raw_set("token", lua_int(h.token)).map_err(lua_err)?;
            t.raw_set("expires_at_ms", lua_int(h.expires_at_ms)).map_err(lua_err)?;
            one(Value::Table(t))
        }
    }
}

fn sequence_name(call: &Call, args: &Args) -> Result<String, ScriptError> {
    let name = args.text(call, 0, "sequence name")?;
    check_name("sequence", &name).map_err(|e| call.kv(e))?;
    Ok(name)
}

fn unexpected(call: &Call, reply: &SequenceReply) -> ScriptError {
    ScriptError::Internal(format!("kahuna.{}: the transaction engine answered {reply:?}", call.name))
}

async fn create_sequence<T: ScriptTxn>(
    _: Lua,
    call: Call,
    ctx: Arc<RunCtx<T>>,
    args: Args,
) -> Result<MultiValue, ScriptError> {
    let name = sequence_name(&call, &args)?;
    let opts = args.opts(&call, 1, &["start", "increment", "max"])?;
    let op = SequenceOp::Create {
        name,
        start: opts.int(&call, "start")?.unwrap_or(1),
        increment: opts.int(&call, "increment")?.unwrap_or(1),
        max: opts.int(&call, "max")?,
    };
    match with_txn!(ctx, |txn| txn.sequence(op).await)? {
        SequenceReply::Created { created, .. } => one(Value::Boolean(created)),
        other => Err(unexpected(&call, &other)),
    }
}

/// Reserves `count` values, with an optional idempotency key at argument `key_at`.
async fn reserve<T: ScriptTxn>(
    call: &Call,
    ctx: &RunCtx<T>,
    args: &Args,
    count: u64,
    key_at: usize,
) -> Result<kahuna_kernel::Allocation, ScriptError> {
    let name = sequence_name(call, args)?;
    check_count(count).map_err(|e| call.kv(e))?;
    let idempotency_key = args.opt_text(call, key_at, "idempotency key")?;
    if let Some(k) = &idempotency_key {
        check_idempotency_key(k).map_err(|e| call.kv(e))?;
    }
    let op = SequenceOp::Reserve { name, count, idempotency_key };
    match with_txn!(ctx, |txn| txn.sequence(op).await)? {
        SequenceReply::Allocated { allocation, .. } => Ok(allocation),
        other => Err(unexpected(call, &other)),
    }
}

async fn next_sequence<T: ScriptTxn>(
    _: Lua,
    call: Call,
    ctx: Arc<RunCtx<T>>,
    args: Args,
) -> Result<MultiValue, ScriptError> {
    one(Value::Integer(reserve(&call, &ctx, &args, 1, 1).await?.first))
}

async fn reserve_sequence<T: ScriptTxn>(
    lua: Lua,
    call: Call,
    ctx: Arc<RunCtx<T>>,
    args: Args,
) -> Result<MultiValue, ScriptError> {
    let count = args.int(&call, 1, "count")?;
    let count = u64::try_from(count).map_err(|_| call.bad("count must be at least 1"))?;
    let a = reserve(&call, &ctx, &args, count, 2).await?;
    let t = lua.create_table_with_capacity(0, 4).map_err(lua_err)?;
    t.raw_set("first", a.first).map_err(lua_err)?;
    t.raw_set("count", lua_int(a.count)).map_err(lua_err)?;
    t.raw_set("increment", a.increment).map_err(lua_err)?;
    t.raw_set("last", a.last()).map_err(lua_err)?;
    one(Value::Table(t))
}

async fn get_sequence<T: ScriptTxn>(
    lua: Lua,
    call: Call,
    ctx: Arc<RunCtx<T>>,
    args: Args,
) -> Result<MultiValue, ScriptError> {
    let name = sequence_name(&call, &args)?;
    match with_txn!(ctx, |txn| txn.get_sequence(&name).await)? {
        None => one(Value::Nil),
        Some(info) => {
            let t = lua.create_table_with_capacity(0, 4).map_err(lua_err)?;
            t.raw_set("start", info.start).map_err(lua_err)?;
            t.raw_set("increment", info.increment).map_err(lua_err)?;
            t.raw_set("max", info.max).map_err(lua_err)?;
            t.raw_set("allocated", lua_int(info.allocated)).map_err(lua_err)?;
            one(Value::Table(t))
        }
    }
}

async fn delete_sequence<T: ScriptTxn>(
    _: Lua,
    call: Call,
    ctx: Arc<RunCtx<T>>,
    args: Args,
) -> Result<MultiValue, ScriptError> {
    let name = sequence_name(&call, &args)?;
    match with_txn!(ctx, |txn| txn.sequence(SequenceOp::Delete { name }).await)? {
        SequenceReply::Deleted { deleted } => one(Value::Boolean(deleted)),
        other => Err(unexpected(&call, &other)),
    }
}
