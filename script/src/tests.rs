//! Scripts against an in-memory transaction: a snapshot copy of a `BTreeMap`, buffered
//! writes, and optimistic validation at commit (every key read, written or scanned must
//! be unchanged since the snapshot), as the transaction engine will do over the kernel.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kahuna_kernel::{
    Allocation, DeleteArgs, Durability, KeyValue, LockHolder, LockOp, LockReply, SequenceOp, SequenceReply, SetArgs,
};

use crate::*;

#[derive(Debug, Clone, PartialEq)]
struct Entry {
    value: Vec<u8>,
    revision: i64,
    commit_ts: u64,
}

#[derive(Default)]
struct State {
    data: BTreeMap<String, Entry>,
    /// The last commit timestamp handed out.
    clock: u64,
    commits: u32,
    rollbacks: u32,
    begins: u32,
}

/// The committed store the transactions read from and commit into.
#[derive(Clone, Default)]
struct MemStore(Arc<Mutex<State>>);

impl MemStore {
    fn begin(&self) -> MemTxn {
        let mut s = self.0.lock().unwrap();
        s.begins += 1;
        MemTxn {
            store: self.clone(),
            snapshot: s.data.clone(),
            snapshot_ts: s.clock,
            writes: BTreeMap::new(),
            read_keys: BTreeSet::new(),
            scanned: Vec::new(),
            poisoned: false,
            slow_get: None,
            coordination: false,
        }
    }

    fn put(&self, key: &str, value: &str) {
        let mut s = self.0.lock().unwrap();
        s.clock += 1;
        let revision = s.data.get(key).map_or(0, |e| e.revision + 1);
        let commit_ts = s.clock;
        s.data.insert(key.into(), Entry { value: value.as_bytes().to_vec(), revision, commit_ts });
    }

    fn value(&self, key: &str) -> Option<String> {
        self.0.lock().unwrap().data.get(key).map(|e| String::from_utf8_lossy(&e.value).into_owned())
    }

    fn counts(&self) -> (u32, u32, u32) {
        let s = self.0.lock().unwrap();
        (s.begins, s.commits, s.rollbacks)
    }
}

struct MemTxn {
    store: MemStore,
    snapshot: BTreeMap<String, Entry>,
    snapshot_ts: u64,
    /// Buffered writes; `None` deletes.
    writes: BTreeMap<String, Option<Vec<u8>>>,
    read_keys: BTreeSet<String>,
    scanned: Vec<String>,
    /// A conflict was reported to the script; commit must fail too.
    poisoned: bool,
    /// Makes every get wait this long first (a remote read).
    slow_get: Option<Duration>,
    /// Offers locks and sequences (fixed answers) when set.
    coordination: bool,
}

impl MemTxn {
    /// The key's value in this transaction's view (snapshot plus own writes).
    fn view(&mut self, key: &str) -> Option<KeyValue> {
        self.read_keys.insert(key.to_string());
        let base = self.snapshot.get(key);
        let (value, revision, commit_ts) = match self.writes.get(key) {
            Some(None) => return None,
            Some(Some(v)) => (v.clone(), base.map_or(0, |e| e.revision + 1), 0),
            None => {
                let e = base?;
                (e.value.clone(), e.revision, e.commit_ts)
            }
        };
        Some(KeyValue { key: key.to_string(), value, revision, commit_ts, expires_at_ms: 0 })
    }

    fn unchanged(&self, now: &BTreeMap<String, Entry>, key: &str) -> bool {
        self.snapshot.get(key) == now.get(key)
    }
}

impl ScriptTxn for MemTxn {
    fn snapshot_ts(&self) -> u64 {
        self.snapshot_ts
    }

    async fn get(&mut self, key: &str, opts: ReadOpts) -> Result<Option<KeyValue>, ScriptError> {
        if let Some(d) = self.slow_get {
            tokio::time::sleep(d).await;
        }
        if opts.at_revision.is_some() || opts.as_of.is_some() {
            return Err(kahuna_kernel::KvError::Compacted("no history in the memory store".into()).into());
        }
        if key == "conflicting" {
            self.poisoned = true;
            return Err(ScriptError::conflict("an intent on key conflicting"));
        }
        Ok(self.view(key))
    }

    async fn scan(&mut self, prefix: &str, opts: ScanOpts) -> Result<ScanPage, ScriptError> {
        self.scanned.push(prefix.to_string());
        let mut keys: BTreeSet<String> = self.snapshot.keys().filter(|k| k.starts_with(prefix)).cloned().collect();
        keys.extend(self.writes.keys().filter(|k| k.starts_with(prefix)).cloned());
        let keys: Vec<String> = keys.into_iter().filter(|k| opts.after.as_ref().is_none_or(|a| k > a)).collect();
        let mut items = Vec::new();
        for k in &keys {
            if items.len() == opts.limit as usize {
                return Ok(ScanPage { items, more: true });
            }
            if let Some(kv) = self.view(k) {
                items.push(kv);
            }
        }
        Ok(ScanPage { items, more: false })
    }

    async fn set(&mut self, a: SetArgs, _: Durability) -> Result<bool, ScriptError> {
        let current = self.view(&a.key);
        let holds = !(a.nx && current.is_some() || a.xx && current.is_none())
            && a.compare_value.as_ref().is_none_or(|v| current.as_ref().map(|c| &c.value) == Some(v))
            && a.compare_revision.is_none_or(|r| current.as_ref().map(|c| c.revision) == Some(r));
        if holds {
            self.writes.insert(a.key, Some(a.value));
        }
        Ok(holds)
    }

    async fn delete(&mut self, a: DeleteArgs, _: Durability) -> Result<bool, ScriptError> {
        let current = self.view(&a.key);
        let holds = current.as_ref().is_some_and(|c| {
            a.compare_value.as_ref().is_none_or(|v| &c.value == v) && a.compare_revision.is_none_or(|r| c.revision == r)
        });
        if holds {
            self.writes.insert(a.key, None);
        }
        Ok(holds)
    }

    async fn lock(&mut self, op: LockOp, _: Durability) -> Result<LockReply, ScriptError> {
        if !self.coordination {
            return Err(ScriptError::unsupported("locks in scripts arrive with the engine"));
        }
        let holder = LockHolder { owner: op.owner().to_string(), token: (1 << 62) + 1, expires_at_ms: 5_000 };
        Ok(LockReply { done: true, holder: Some(holder), last_token: (1 << 62) + 1, commit_ts: 0 })
    }

    async fn sequence(&mut self, op: SequenceOp) -> Result<SequenceReply, ScriptError> {
        match op {
            SequenceOp::Reserve { count, .. } if self.coordination => Ok(SequenceReply::Allocated {
                allocation: Allocation { first: i64::MAX - 10, count, increment: 1 },
                replayed: false,
            }),
            _ => Err(ScriptError::unsupported("sequences in scripts arrive with the engine")),
        }
    }

    async fn commit(self) -> Result<Option<u64>, ScriptError> {
        let mut s = self.store.0.lock().unwrap();
        if self.poisoned {
            return Err(ScriptError::conflict("the transaction met a conflict"));
        }
        let touched = self.read_keys.iter().chain(self.writes.keys());
        if let Some(k) = touched.into_iter().find(|k| !self.unchanged(&s.data, k)) {
            return Err(ScriptError::conflict(format!("key {k} changed after the snapshot")));
        }
        for p in &self.scanned {
            let range = |m: &BTreeMap<String, Entry>| {
                m.iter()
                    .filter(|(k, _)| k.starts_with(p.as_str()))
                    .map(|(k, e)| (k.clone(), e.clone()))
                    .collect::<Vec<_>>()
            };
            if range(&self.snapshot) != range(&s.data) {
                return Err(ScriptError::conflict(format!("prefix {p} changed after the snapshot")));
            }
        }
        if self.writes.is_empty() {
            return Ok(None);
        }
        s.clock += 1;
        let ts = s.clock;
        for (k, v) in self.writes {
            match v {
                Some(value) => {
                    let revision = s.data.get(&k).map_or(0, |e| e.revision + 1);
                    s.data.insert(k, Entry { value, revision, commit_ts: ts });
                }
                None => {
                    s.data.remove(&k);
                }
            }
        }
        s.commits += 1;
        Ok(Some(ts))
    }

    async fn rollback(self) {
        self.store.0.lock().unwrap().rollbacks += 1;
    }
}

fn engine() -> ScriptEngine {
    test_engine(Limits { time_ms_max: 300, instructions_max: None, memory_bytes_max: 16 * 1024 * 1024 })
}

fn test_engine(limits: Limits) -> ScriptEngine {
    let retry = RetryPolicy { attempts_max: 3, backoff_ms_base: 1, backoff_ms_max: 4 };
    ScriptEngine::new(EngineConfig { limits, retry, ..EngineConfig::default() })
}

async fn run(store: &MemStore, text: &str) -> Result<ScriptValue, ScriptError> {
    engine().run(text, &ScriptArgs::new(), store.begin()).await.map(|o| o.value)
}

fn s(v: &str) -> ScriptValue {
    ScriptValue::from(v)
}

fn map(entries: &[(&str, ScriptValue)]) -> ScriptValue {
    ScriptValue::Map(entries.iter().map(|(k, v)| (k.to_string(), v.clone())).collect())
}

#[tokio::test]
async fn set_then_get_reads_own_writes_and_commits() {
    let store = MemStore::default();
    let out = engine()
        .run(
            r#"
            assert(kahuna.set("user/1", "ada"))
            local v = kahuna.get("user/1")
            return {v.value, v.revision, kahuna.exists("user/1"), kahuna.exists("user/2")}
            "#,
            &ScriptArgs::new(),
            store.begin(),
        )
        .await
        .unwrap();
    assert_eq!(out.value, ScriptValue::Array(vec![s("ada"), ScriptValue::Integer(0), true.into(), false.into()]));
    assert_eq!(out.commit_ts, Some(1));
    assert_eq!(out.attempts, 1);
    assert_eq!(store.value("user/1").as_deref(), Some("ada"));

    // A second run sees the committed version; numbers are stored as their text.
    let v = run(
        &store,
        r#"kahuna.set("n", 42); kahuna.set("f", 1.5); local u = kahuna.get("user/1")
        return {u.key, u.value, u.revision, u.commit_ts}"#,
    )
    .await
    .unwrap();
    assert_eq!(v, ScriptValue::Array(vec![s("user/1"), s("ada"), 0.into(), 1.into()]));
    assert_eq!(store.value("n").as_deref(), Some("42"));
    assert_eq!(store.value("f").as_deref(), Some("1.5"));
    assert_eq!(run(&store, r#"return kahuna.get("missing")"#).await.unwrap(), ScriptValue::Nil);
}

#[tokio::test]
async fn conditional_set_and_delete_follow_the_view() {
    let store = MemStore::default();
    store.put("k", "v0");
    let v = run(
        &store,
        r#"
        local r = {}
        r[1] = kahuna.set("k", "x", {nx = true})          -- exists: not set
        r[2] = kahuna.set("k", "x", {cmp = "nope"})       -- compare fails
        r[3] = kahuna.set("k", "v1", {cmp = "v0", cmprev = 0})
        r[4] = kahuna.set("new", "y", {xx = true})        -- absent: not set
        r[5] = kahuna.delete("k", {cmp = "v0"})           -- value is v1 in the view now
        r[6] = kahuna.delete("k")
        r[7] = kahuna.exists("k")
        return r
        "#,
    )
    .await
    .unwrap();
    let b = |x: bool| ScriptValue::Boolean(x);
    assert_eq!(v, ScriptValue::Array(vec![b(false), b(false), b(true), b(false), b(false), b(true), b(false)]));
    assert_eq!(store.value("k"), None);
}

#[tokio::test]
async fn scan_pages_by_prefix_with_limit_and_cursor() {
    let store = MemStore::default();
    for i in 1..=5 {
        store.put(&format!("user/{i}"), &format!("u{i}"));
    }
    store.put("other", "x");
    let v = run(
        &store,
        r#"
        local page, more = kahuna.scan("user/", 2)
        local rest, more2 = kahuna.scan("user/", {limit = 10, after = page[#page].key})
        local keys = {}
        for _, kv in ipairs(page) do keys[#keys + 1] = kv.key end
        for _, kv in ipairs(rest) do keys[#keys + 1] = kv.value end
        return {keys, more, more2}
        "#,
    )
    .await
    .unwrap();
    let keys = ScriptValue::Array(vec![s("user/1"), s("user/2"), s("u3"), s("u4"), s("u5")]);
    assert_eq!(v, ScriptValue::Array(vec![keys, true.into(), false.into()]));
    let e = run(&store, r#"kahuna.scan("user/", 10001)"#).await.unwrap_err();
    assert!(e.to_string().starts_with("script:1: invalid input: kahuna.scan: scan limit 10001"), "{e}");
}

#[tokio::test]
async fn return_values_are_typed_and_integers_exact() {
    let store = MemStore::default();
    let cases: Vec<(&str, ScriptValue)> = vec![
        ("return", ScriptValue::Nil),
        ("return nil", ScriptValue::Nil),
        ("return true", true.into()),
        ("return math.maxinteger", ScriptValue::Integer(i64::MAX)),
        ("return math.mininteger", ScriptValue::Integer(i64::MIN)),
        // 2^53 + 1 has no f64: it must never pass through one.
        ("return 9007199254740993", ScriptValue::Integer(9_007_199_254_740_993)),
        ("return 9007199254740992 + 1", ScriptValue::Integer(9_007_199_254_740_993)),
        ("return 0.5", ScriptValue::Float(0.5)),
        ("return 3 / 2", ScriptValue::Float(1.5)),
        ("return 'hi'", s("hi")),
        ("return '\\xff\\x00'", ScriptValue::String(vec![0xff, 0])),
        ("return {1, 'two', 3.0}", ScriptValue::Array(vec![1.into(), s("two"), 3.0.into()])),
        ("return {}", map(&[])),
        ("return {a = 1, b = {true}}", map(&[("a", 1.into()), ("b", ScriptValue::Array(vec![true.into()]))])),
        ("return {[1] = 'x', [3] = 'y'}", map(&[("1", s("x")), ("3", s("y"))])),
        ("return 1, 'a', nil", ScriptValue::Array(vec![1.into(), s("a"), ScriptValue::Nil])),
    ];
    for (text, want) in cases {
        assert_eq!(run(&store, text).await.unwrap(), want, "{text}");
    }
    for (text, want) in [
        ("return print", "a function cannot be returned"),
        ("local t = {} t.self = t return t", "nest deeper than 32"),
        ("return {[true] = 1}", "keys must be strings or integers"),
    ] {
        let e = run(&store, text).await.unwrap_err();
        assert!(matches!(e, ScriptError::Return(_)) && e.to_string().contains(want), "{text}: {e}");
    }
}

#[tokio::test]
async fn arguments_positional_and_named() {
    let store = MemStore::default();
    let args = ScriptArgs::new()
        .arg(i64::MAX - 1)
        .arg("x")
        .named("key", "counter")
        .named("list", ScriptValue::Array(vec![1.into(), 2.into()]));
    let out = engine()
        .run(
            r#"
            local a = kahuna.args
            kahuna.set(a.key, a[1] + 1)
            return {a[1] + 1, a[2], #a, a.list[2], math.type(a[1])}
            "#,
            &args,
            store.begin(),
        )
        .await
        .unwrap();
    assert_eq!(
        out.value,
        ScriptValue::Array(vec![ScriptValue::Integer(i64::MAX), s("x"), 2.into(), 2.into(), s("integer")])
    );
    assert_eq!(store.value("counter"), Some(i64::MAX.to_string()));
}

#[tokio::test]
async fn infinite_loops_are_stopped_by_the_time_budget() {
    let store = MemStore::default();
    for text in [
        "local i = 0\nwhile true do i = i + 1 end",
        // Catching the limit error does not escape it.
        "while true do pcall(function() while true do end end) end",
        "while true do xpcall(function() while true do end end, function(e) return e end) end",
        "local co = coroutine.create(function() while true do end end)\nwhile true do coroutine.resume(co) end",
    ] {
        let started = std::time::Instant::now();
        let e = run(&store, text).await.unwrap_err();
        assert!(matches!(e, ScriptError::TimeLimit { limit_ms: 300, .. }), "{text}: {e}");
        assert!(e.to_string().contains("time budget of 300 ms"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5), "{text} ran {:?}", started.elapsed());
    }
    let e = run(&store, "local x = 0\nwhile true do\n x = x + 1\nend").await.unwrap_err();
    assert!(matches!(e.line(), Some(2..=4)), "the error names the looping line: {e}");
}

/// A C function cannot be interrupted (here a backtracking pattern match, cubic in the
/// subject's length): a run that returns past its budget ends with the time limit and
/// commits nothing.
#[tokio::test]
async fn a_run_returning_past_its_budget_does_not_commit() {
    let store = MemStore::default();
    let engine = test_engine(Limits { time_ms_max: 20, ..Limits::default() });
    let text = "kahuna.set('late', 'v')\nreturn string.find(string.rep('a', 600), '.-.-b')";
    let started = std::time::Instant::now();
    let e = engine.run(text, &ScriptArgs::new(), store.begin()).await.unwrap_err();
    assert!(started.elapsed() > Duration::from_millis(20), "the match ran within the budget: pick a longer subject");
    assert_eq!(e, ScriptError::TimeLimit { limit_ms: 20, line: None });
    assert_eq!(store.value("late"), None);
    assert_eq!(store.counts(), (1, 0, 1), "rolled back");
}

#[tokio::test]
async fn instruction_budget_when_configured() {
    let store = MemStore::default();
    let engine = test_engine(Limits { instructions_max: Some(100_000), ..Limits::default() });
    let e = engine.run("for i = 1, 1e9 do end", &ScriptArgs::new(), store.begin()).await.unwrap_err();
    assert!(matches!(e, ScriptError::InstructionLimit { limit: 100_000, .. }), "{e}");
    let text = "local s = 0 for i = 1, 1000 do s = s + i end return s";
    let ok = engine.run(text, &ScriptArgs::new(), store.begin()).await.unwrap();
    assert_eq!(ok.value, ScriptValue::Integer(500_500));
}

#[tokio::test]
async fn time_budget_covers_waiting_for_reads() {
    let store = MemStore::default();
    let mut txn = store.begin();
    txn.slow_get = Some(Duration::from_secs(10));
    let engine = test_engine(Limits { time_ms_max: 100, ..Limits::default() });
    let e = engine.run("return kahuna.get('k')", &ScriptArgs::new(), txn).await.unwrap_err();
    assert!(matches!(e, ScriptError::TimeLimit { limit_ms: 100, .. }), "{e}");
    assert_eq!(store.counts(), (1, 0, 1), "rolled back");
}

#[tokio::test]
async fn memory_bombs_are_stopped_by_the_memory_limit() {
    let store = MemStore::default();
    // A generous time budget: only the memory limit may end these, however loaded the machine.
    let engine = test_engine(Limits { time_ms_max: 60_000, instructions_max: None, memory_bytes_max: 16 << 20 });
    for text in [
        "local t = {}\nwhile true do t[#t + 1] = string.rep('x', 10000) .. #t end",
        "return string.rep('x', 1 << 30)",
        "local s = 'x'\nwhile true do s = s .. s end",
        // Catching the allocation failure does not escape the limit.
        "local t = {}\nwhile true do pcall(function() t[#t + 1] = string.rep('y', 1 << 20) .. #t end) end",
    ] {
        let e = engine.run(text, &ScriptArgs::new(), store.begin()).await.unwrap_err();
        assert_eq!(e, ScriptError::MemoryLimit { limit_bytes: 16 * 1024 * 1024 }, "{text}");
        assert!(e.to_string().contains("memory limit of 16777216 bytes"));
    }
}

#[tokio::test]
async fn the_sandbox_has_no_way_out() {
    let store = MemStore::default();
    for (text, want) in [
        ("io.open('/etc/passwd')", "script:1: io.open is not available in scripts"),
        ("os.execute('true')", "script:1: os.execute is not available in scripts"),
        ("return os.time()", "kahuna.now() gives the snapshot time"),
        ("require('os')", "script:1: require is not available in scripts"),
        ("load('return 1')()", "script:1: load is not available in scripts"),
        ("loadstring('return 1')", "script:1: loadstring is not available"),
        ("dofile('/etc/passwd')", "script:1: dofile is not available"),
        ("loadfile('/etc/passwd')", "script:1: loadfile is not available"),
        ("local f = string.dump(function() end)", "script:1: string.dump is not available"),
        ("local f = ('x').dump(function() end)", "script:1: string.dump is not available"),
        // A tail call leaves no caller frame, so Lua cannot name the line.
        ("return string.dump(print)", "string.dump is not available"),
        ("return debug.getinfo(1)", "script:1: debug.getinfo is not available"),
        ("return package.loaded", "script:1: package.loaded is not available"),
        ("collectgarbage()", "collectgarbage is not available"),
        ("print('hi')", "print is not available"),
        ("math.randomseed(os)", "math.randomseed is not available"),
        ("x = 1", "script:1: cannot set global 'x': the global table is read-only"),
        ("\nfunction f() end", "script:2: cannot set global 'f'"),
        ("_G.y = 2", "cannot set global 'y'"),
        ("rawset(_G, 'z', 3)", "rawset is not available"),
        ("setmetatable(_G, nil)", "cannot change a protected metatable"),
        ("string.upper = nil", "cannot set string.upper: string is read-only"),
        ("kahuna.get = nil", "cannot set kahuna.get: kahuna is read-only"),
        ("getmetatable('').__index.upper = 1", "attempt to index a boolean value"),
        // `pairs` over a read-only proxy does not hand out the table behind it.
        ("local _, g = pairs(_G)\ng.x = 1", "script:2: attempt to index a nil value"),
        ("local _, t = pairs(string)\nt.upper = nil", "script:2: attempt to index a nil value"),
        ("local _, t = pairs(kahuna)\nt.get = nil", "script:2: attempt to index a nil value"),
    ] {
        let e = run(&store, text).await.unwrap_err();
        assert!(matches!(e, ScriptError::Runtime(_)), "{text}: {e:?}");
        assert!(e.to_string().contains(want), "{text}: {e}");
    }
    // Locals, library calls, metatables of the script's own tables and pcall all work.
    let v = run(
        &store,
        r#"
        local function sq(x) return x * x end
        local t = setmetatable({}, {__index = function(_, k) return k .. "!" end})
        local ok, err = pcall(error, "caught")
        local n = 0
        for _ in pairs(string) do n = n + 1 end
        local g = 0
        for k, v in pairs(_G) do if _G[k] == v then g = g + 1 end end
        return {sq(7), t.hi, ok, err, string.format("%05d", 42), utf8.char(72, 105), n > 10 and g > 10, type(_G)}
        "#,
    )
    .await
    .unwrap();
    assert_eq!(
        v,
        ScriptValue::Array(vec![
            49.into(),
            s("hi!"),
            false.into(),
            s("caught"),
            s("00042"),
            s("Hi"),
            true.into(),
            s("table")
        ])
    );
}

#[tokio::test]
async fn bytecode_is_refused() {
    let store = MemStore::default();
    let e = run(&store, "\x1bLua\x54\x00 junk").await.unwrap_err();
    assert!(matches!(e, ScriptError::Syntax(_)), "{e:?}");
}

#[tokio::test]
async fn math_random_is_deterministic() {
    let store = MemStore::default();
    let text = "return {math.random(1, 1000000), math.random(1, 1000000)}";
    let a = run(&store, text).await.unwrap();
    assert_eq!(a, run(&store, text).await.unwrap());
}

#[tokio::test]
async fn an_error_after_writing_leaves_nothing_written() {
    let store = MemStore::default();
    store.put("balance", "100");
    let e = run(
        &store,
        r#"kahuna.set("balance", "0")
kahuna.set("audit", "drained")
error("boom")"#,
    )
    .await
    .unwrap_err();
    assert_eq!(e, ScriptError::Runtime("script:3: boom".into()));
    assert_eq!(store.value("balance").as_deref(), Some("100"));
    assert_eq!(store.value("audit"), None);
    assert_eq!(store.counts(), (1, 0, 1), "one begin, no commit, one rollback");

    // A limit after writing, too.
    let e = run(&store, "kahuna.set('balance', '0')\nwhile true do end").await.unwrap_err();
    assert!(matches!(e, ScriptError::TimeLimit { .. }));
    assert_eq!(store.value("balance").as_deref(), Some("100"));
    assert_eq!(store.counts(), (2, 0, 2));
}

#[tokio::test]
async fn errors_name_the_script_line() {
    let store = MemStore::default();
    for (text, want) in [
        ("local t = nil\n\nreturn t.x", "script:3: attempt to index a nil value (local 't')"),
        ("\nerror('custom')", "script:2: custom"),
        ("\n\nkahuna.get(nil)", "script:3: invalid input: kahuna.get: key must be a string, got nil"),
        ("\nkahuna.set('k', 'v', {ex = 5})", "script:2: invalid input: kahuna.set: unknown option \"ex\""),
        ("kahuna.set('k', 'v', {nx = true, xx = true})", "script:1: invalid input: kahuna.set: options nx and xx"),
        ("kahuna.set('k', 'v', {ttl = -1})", "script:1: invalid input: kahuna.set: ttl must not be negative"),
        ("kahuna.set('k', {})", "kahuna.set: value must be a string or a number, got table"),
        ("kahuna.get('__kahuna:x')", "keys beginning \"__kahuna:\" are reserved"),
        ("kahuna.get('k', {durability = 'durable'})", "option durability must be"),
        ("\nkahuna.get('k', {at = 3})", "script:2: compacted: no history"),
        ("\n\nlocal ok, e = pcall(kahuna.get, nil)\nerror(e)", "script:3: invalid input: kahuna.get"),
        ("return 1 +", "syntax error: script:1:"),
    ] {
        let e = run(&store, text).await.unwrap_err();
        assert!(e.to_string().contains(want), "{text}: {e}");
    }
    let e = run(&store, "\nkahuna.get('k', {at = 3})").await.unwrap_err();
    assert_eq!(e.code(), "Compacted");
    assert_eq!(e.line(), Some(2));
}

#[tokio::test]
async fn locks_and_sequences_are_unsupported_until_the_engine_has_them() {
    let store = MemStore::default();
    for (text, want) in [
        ("kahuna.lock('l', 'me', 1000)", "locks in scripts arrive with"),
        ("kahuna.get_lock('l')", "locks in scripts arrive with"),
        ("kahuna.next_sequence('s')", "sequences in scripts arrive with"),
        ("\nkahuna.extend('k', 10)", "script:2: unsupported: kahuna.extend"),
    ] {
        let e = run(&store, text).await.unwrap_err();
        assert!(matches!(e, ScriptError::Unsupported { line: Some(_), .. }), "{text}: {e:?}");
        assert!(e.to_string().contains(want), "{text}: {e}");
    }
    // Arguments are checked before the transaction is asked.
    let e = run(&store, "kahuna.lock('l', 'me', 0)").await.unwrap_err();
    assert!(e.to_string().contains("lock lease must be at least 1 ms"), "{e}");
}

#[tokio::test]
async fn locks_and_sequences_reach_the_txn_with_exact_integers() {
    let store = MemStore::default();
    let mut txn = store.begin();
    txn.coordination = true;
    let text = r#"
        local l = kahuna.lock("jobs/" .. kahuna.args.id, "worker-1", 1e3)
        local r = kahuna.reserve_sequence("ids", 3, "req-7")
        return {l.acquired, l.token, l.owner, kahuna.next_sequence("ids"), r.first, r.last, r.count}
    "#;
    let out = engine().run(text, &ScriptArgs::new().named("id", 7), txn).await.unwrap();
    let want = vec![
        true.into(),
        ScriptValue::Integer((1 << 62) + 1),
        s("worker-1"),
        ScriptValue::Integer(i64::MAX - 10),
        ScriptValue::Integer(i64::MAX - 10),
        ScriptValue::Integer(i64::MAX - 8),
        3.into(),
    ];
    assert_eq!(out.value, ScriptValue::Array(want));
}

#[tokio::test]
async fn scripts_are_cached_by_sha256() {
    let store = MemStore::default();
    let engine = engine();
    let text = "return kahuna.args[1] * 2";
    let hash = engine.load(text).unwrap();
    assert_eq!(hash, ScriptHash::of(text));
    assert!(engine.is_loaded(&hash));
    let out = engine.run_hash(&hash, &ScriptArgs::new().arg(21), store.begin()).await.unwrap();
    assert_eq!((out.value, out.hash), (ScriptValue::Integer(42), hash));

    let unknown = ScriptHash::of("never loaded");
    let e = engine.run_hash(&unknown, &ScriptArgs::new(), store.begin()).await.unwrap_err();
    assert_eq!(e, ScriptError::NotFound(unknown));
    assert_eq!(e.code(), "ScriptNotFound");
    assert!(e.to_string().contains(&unknown.to_string()));

    let e = engine.load("local x = \nreturn").unwrap_err();
    assert!(matches!(e, ScriptError::Syntax(ref m) if m.starts_with("script:2:")), "{e}");
    assert!(engine.load(&"-".repeat(SCRIPT_BYTES_MAX + 1)).is_err());

    // Running a text caches it as well.
    engine.run("return 1", &ScriptArgs::new(), store.begin()).await.unwrap();
    assert!(engine.is_loaded(&ScriptHash::of("return 1")));
}

#[tokio::test]
async fn conflicts_rerun_the_script_a_bounded_number_of_times() {
    let store = MemStore::default();
    store.put("n", "0");
    let engine = engine();
    // Another writer commits between the script's read and its commit, twice.
    let interference = Arc::new(AtomicU32::new(2));
    let source = || {
        let store = store.clone();
        let interference = interference.clone();
        async move {
            let txn = store.begin();
            if interference.load(Ordering::SeqCst) > 0 {
                interference.fetch_sub(1, Ordering::SeqCst);
                store.put("n", "100");
            }
            Ok(txn)
        }
    };
    let text = "local n = tonumber(kahuna.get('n').value) kahuna.set('n', n + 1) return n + 1";
    let out = engine.run_with_retries(Script::Text(text), &ScriptArgs::new(), &source).await.unwrap();
    assert_eq!(out.attempts, 3);
    assert_eq!(out.value, ScriptValue::Integer(101));
    assert_eq!(store.value("n").as_deref(), Some("101"));

    // Always conflicting: gives up after attempts_max (3) runs.
    let always = || {
        let txn = store.begin();
        store.put("n", "0");
        async move { Ok(txn) }
    };
    let before = store.counts().0;
    let e = engine.run_with_retries(Script::Text(text), &ScriptArgs::new(), &always).await.unwrap_err();
    assert!(e.is_conflict() && e.to_string().contains("gave up after 3 attempts"), "{e}");
    assert_eq!(store.counts().0 - before, 3);

    // A conflict the script caught with pcall still fails the commit.
    let e = engine
        .run_with_retries(Script::Text("pcall(kahuna.get, 'conflicting') return 1"), &ScriptArgs::new(), &|| {
            std::future::ready(Ok(store.begin()))
        })
        .await
        .unwrap_err();
    assert!(e.is_conflict(), "{e}");

    // Other errors are not retried.
    let before = store.counts().0;
    let e = engine
        .run_with_retries(Script::Text("error('no')"), &ScriptArgs::new(), &|| std::future::ready(Ok(store.begin())))
        .await
        .unwrap_err();
    assert!(!e.is_conflict());
    assert_eq!(store.counts().0 - before, 1);
    let e = engine
        .run_with_retries(Script::Hash(ScriptHash::of("nope")), &ScriptArgs::new(), &|| {
            std::future::ready(Ok(store.begin()))
        })
        .await
        .unwrap_err();
    assert!(matches!(e, ScriptError::NotFound(_)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_counter_scripts_count_exactly() {
    let store = MemStore::default();
    let retry = RetryPolicy { attempts_max: 1_000, backoff_ms_base: 1, backoff_ms_max: 5 };
    let engine = Arc::new(ScriptEngine::new(EngineConfig { retry, ..EngineConfig::default() }));
    let hash = engine
        .load("local c = kahuna.get('count') local n = c and tonumber(c.value) or 0 kahuna.set('count', n + 1)")
        .unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..40 {
        let (engine, store) = (engine.clone(), store.clone());
        tasks.spawn(async move {
            let source = || {
                let store = store.clone();
                async move {
                    let mut txn = store.begin();
                    txn.slow_get = Some(Duration::from_millis(1));
                    Ok(txn)
                }
            };
            engine.run_with_retries(Script::Hash(hash), &ScriptArgs::new(), &source).await.unwrap()
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    assert_eq!(store.value("count").as_deref(), Some("40"));
    assert_eq!(store.counts().1, 40);
}

#[tokio::test]
async fn kahuna_calls_wait_for_the_txn_but_not_inside_coroutines() {
    let store = MemStore::default();
    store.put("k", "v");
    let mut txn = store.begin();
    txn.slow_get = Some(Duration::from_millis(5));
    let out = engine()
        .run(
            r#"
            local a = kahuna.get("k").value
            local ok, b = pcall(function() return kahuna.get("k").value end)
            local co = coroutine.wrap(function() coroutine.yield(1) coroutine.yield(2) end)
            return {a, b, co() + co()}
            "#,
            &ScriptArgs::new(),
            txn,
        )
        .await
        .unwrap();
    assert_eq!(out.value, ScriptValue::Array(vec![s("v"), s("v"), 3.into()]));

    let e =
        run(&store, "local co = coroutine.wrap(function() return kahuna.get('k') end)\nreturn co()").await.unwrap_err();
    assert!(e.to_string().contains("kahuna.get: cannot be called inside a coroutine"), "{e}");
}

#[tokio::test]
async fn now_is_the_snapshot_time() {
    let store = MemStore::default();
    store.put("a", "1");
    store.put("b", "2");
    let v = run(&store, "return {kahuna.now(), kahuna.now_ms(), math.type(kahuna.now())}").await.unwrap();
    assert_eq!(v, ScriptValue::Array(vec![2.into(), 0.into(), s("integer")]));
}

#[test]
fn run_futures_are_send() {
    fn assert_send<F: Send>(_: F) {}
    let engine = ScriptEngine::default();
    let store = MemStore::default();
    assert_send(engine.run("return 1", &ScriptArgs::new(), store.begin()));
    assert_send(
        engine
            .run_with_retries(Script::Text("return 1"), &ScriptArgs::new(), &|| std::future::ready(Ok(store.begin()))),
    );
}

#[test]
fn error_codes_are_stable() {
    assert_eq!(ScriptError::conflict("x").code(), "Conflict");
    assert!(ScriptError::conflict("x").is_retryable());
    assert!(!ScriptError::Runtime("x".into()).is_retryable());
    assert_eq!(ScriptError::MemoryLimit { limit_bytes: 1 }.code(), "ScriptMemoryLimit");
    let e: ScriptError = kahuna_kernel::KvError::Unavailable("no quorum".into()).into();
    assert!(e.is_retryable() && !e.is_conflict());
    let e: ScriptError = kahuna_kernel::KvError::Conflict("k changed".into()).into();
    assert!(e.is_conflict() && e.to_string() == "conflict: k changed", "{e}");
    let e: ScriptError = kahuna_kernel::KvError::InvalidInput("key is empty".into()).into();
    assert_eq!(e.code(), "InvalidInput");
    let locked =
        kahuna_kernel::KvError::Locked { key: "k".into(), txn_id: "1-2-3".into(), record_partition: 0, deadline_ms: 9 };
    let e: ScriptError = locked.into();
    assert_eq!(e.code(), "Locked");
    assert!(e.is_retryable() && !e.is_conflict());
}

// Reused Lua states: a run takes an idle state from the engine's pool. Nothing one run
// does may be visible to, or affect, a later run on the same state.

/// `engine()` with a generous time budget, so that only what a test means to hit ends a run.
fn pooled_engine() -> ScriptEngine {
    test_engine(Limits { time_ms_max: 60_000, instructions_max: None, memory_bytes_max: 16 << 20 })
}

/// Reads everything a run could have left behind, allocates most of the memory limit
/// and draws from `math.random`; every result as text, so that it compares as a whole.
const PROBE: &str = r#"
local function keys(t)
  local names = {}
  for k in pairs(t) do names[#names + 1] = tostring(k) end
  table.sort(names)
  return table.concat(names, " ")
end
-- 15.5 MiB of a 16 MiB limit: fits only if no earlier run's garbage counts against it.
local big = {}
for i = 1, 248 do big[i] = string.rep("b", 1 << 16) end
local r = {
  keys(_G), keys(kahuna), keys(kahuna.args), keys(string), keys(table), keys(math), keys(coroutine),
  x, y, z, string.extra, math.pi, type(math.random), type(string.upper), type(table.insert),
  kahuna.extra, type(kahuna.get), kahuna.args.leftover, kahuna.args[1], #kahuna.args,
  getmetatable(""), ("abc"):upper(), #big,
  math.random(1, 1 << 40), math.random(1, 1 << 40), math.random(),
}
for i = 1, #r do r[i] = tostring(r[i]) end
return r
"#;

#[tokio::test]
async fn a_later_run_finds_the_state_pristine() {
    let store = MemStore::default();
    let engine = pooled_engine();
    // Run A tries every way it can think of to leave something behind, and ends normally
    // so that its state goes back to the pool.
    let leave = r#"
        local tries = {
          function() x = 1 end,
          function() _G.y = 2 end,
          function() rawset(_G, "z", 3) end,
          function() string.upper = nil end,
          function() string.extra = 1 end,
          function() table.insert = nil end,
          function() math.pi = 3 end,
          function() math.random = function() return 4 end end,
          function() math.randomseed(42) end,
          function() coroutine.extra = 1 end,
          function() kahuna.get = nil end,
          function() kahuna.extra = 1 end,
          function() getmetatable("").__index.upper = nil end,
          function() setmetatable(_G, {}) end,
          function() setmetatable(string, {}) end,
          function() local _, g = pairs(_G) g.x = 1 end,
          function() local _, k = pairs(kahuna) k.extra = 1 end,
        }
        local refused = 0
        for _, try in ipairs(tries) do
          if not pcall(try) then refused = refused + 1 end
        end
        -- The run's own arguments are its to change.
        kahuna.args.leftover = "from A"
        kahuna.args[1] = "from A"
        kahuna.args[2] = "from A"
        -- A coroutine left suspended, that would write if anything resumed it.
        local co = coroutine.create(function() coroutine.yield() kahuna.set("leak", "coroutine") end)
        coroutine.resume(co)
        -- Move the random sequence on.
        for _ = 1, 10 do math.random() end
        -- Garbage: much (collected before the state is pooled) and a little (left in it,
        -- more than run B's 16 MiB limit leaves it to spare).
        local junk = {}
        for i = 1, 60 do junk[i] = string.rep("j", 100000) .. i end
        junk = nil
        local crumbs = {}
        for i = 1, 9 do crumbs[i] = string.rep("c", 100000) .. i end
        return {refused, #tries}
    "#;
    let out = engine.run(leave, &ScriptArgs::new().arg("A"), store.begin()).await.unwrap();
    assert_eq!(out.value, ScriptValue::Array(vec![17.into(), 17.into()]), "every try is refused");

    let args = ScriptArgs::new().arg("B");
    let pooled = engine.run(PROBE, &args, store.begin()).await.unwrap().value;
    assert_eq!(engine.states_built(), 1, "run B reused run A's state");
    let fresh = pooled_engine().run(PROBE, &args, store.begin()).await.unwrap().value;
    assert_eq!(pooled, fresh, "run B sees what it sees in a state of its own");
    let ScriptValue::Array(probe) = &pooled else { panic!("{pooled:?}") };
    let text: Vec<&str> = probe.iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(&text[7..13], ["nil", "nil", "nil", "nil", "3.1415926535898", "function"]);
    assert_eq!(&text[15..23], ["nil", "function", "nil", "B", "1", "false", "ABC", "248"]);
    assert_eq!(store.value("leak"), None);
}

#[tokio::test]
async fn gc_metamethods_are_refused() {
    let store = MemStore::default();
    let engine = pooled_engine();
    // Run A tries two ways to get a finalizer that writes through the global `kahuna`,
    // which would then run in whichever later run the garbage collector happens to be in.
    let a = r#"
        local ok, err = pcall(setmetatable, {}, {__gc = function() kahuna.set("leak", "gc") end})
        local proxy = setmetatable({}, {__index = {__gc = print}})
        -- Lua marks an object for finalization only when it gets its metatable: a __gc
        -- added later never runs.
        local mt = {}
        local late = setmetatable({}, mt)
        mt.__gc = function() kahuna.set("leak", "late gc") end
        return {ok, err}
    "#;
    let out = engine.run(a, &ScriptArgs::new(), store.begin()).await.unwrap();
    let want = "__gc metamethods are not available in scripts";
    let ScriptValue::Array(v) = &out.value else { panic!("{:?}", out.value) };
    assert_eq!(v[0], ScriptValue::Boolean(false));
    assert!(v[1].as_str().is_some_and(|e| e.contains(want)), "{v:?}");
    let e = engine.run("\nsetmetatable({}, {__gc = false})", &ScriptArgs::new(), store.begin()).await.unwrap_err();
    assert!(e.to_string().starts_with(&format!("script:2: {want}")), "{e}");

    // Run B, on the same state, makes garbage for many collections and commits.
    let b = "for i = 1, 300000 do local t = {i} end\nkahuna.set('b', 'done')";
    engine.run(b, &ScriptArgs::new(), store.begin()).await.unwrap();
    assert_eq!(engine.states_built(), 1);
    assert_eq!(store.value("b").as_deref(), Some("done"));
    assert_eq!(store.value("leak"), None, "no finalizer of run A ran in run B");
}

#[tokio::test]
async fn a_script_rebinding_env_does_not_poison_its_next_run() {
    let store = MemStore::default();
    let engine = pooled_engine();
    // The compiled script is kept with the state; `_ENV = ...` rebinds its one upvalue.
    let text = "local k = kahuna\nif k.args[1] then _ENV = {k = k} return 'poisoned' end\nreturn type(string)";
    let poison = engine.run(text, &ScriptArgs::new().arg(true), store.begin()).await.unwrap();
    assert_eq!(poison.value, s("poisoned"));
    let next = engine.run(text, &ScriptArgs::new(), store.begin()).await.unwrap();
    assert_eq!(next.value, s("table"));
    assert_eq!(engine.states_built(), 1);
}

#[tokio::test]
async fn a_state_ended_by_a_limit_or_a_dropped_run_is_not_reused() {
    let store = MemStore::default();
    store.put("k", "v");
    let limits = Limits { time_ms_max: 200, instructions_max: Some(10_000_000), memory_bytes_max: 16 << 20 };
    let engine = test_engine(limits);
    let ok = "return kahuna.get('k').value";
    let run_ok = || async { engine.run(ok, &ScriptArgs::new(), store.begin()).await.unwrap().value };
    assert_eq!(run_ok().await, s("v"));
    assert_eq!(run_ok().await, s("v"));
    assert_eq!(engine.states_built(), 1, "a normal run's state is reused");
    let e = engine.run("error('mine')", &ScriptArgs::new(), store.begin()).await.unwrap_err();
    assert!(matches!(e, ScriptError::Runtime(_)));
    let e = engine.run("kahuna.get(1, 2)", &ScriptArgs::new(), store.begin()).await.unwrap_err();
    assert!(matches!(e, ScriptError::InvalidInput { .. }));
    assert_eq!(run_ok().await, s("v"));
    assert_eq!(engine.states_built(), 1, "so is the state of a run that raised an error of its own");

    let slow = || {
        let mut txn = store.begin();
        txn.slow_get = Some(Duration::from_secs(10));
        txn
    };
    let killers: [(&str, MemTxn); 4] = [
        ("while true do end", store.begin()),
        ("pcall(function() while true do end end) return 1", store.begin()),
        ("local s = 'x'\nwhile true do s = s .. s end", store.begin()),
        ("return kahuna.get('k')", slow()),
    ];
    for (text, txn) in killers {
        let before = engine.states_built();
        let e = engine.run(text, &ScriptArgs::new(), txn).await.unwrap_err();
        assert!(
            matches!(
                e,
                ScriptError::InstructionLimit { .. } | ScriptError::MemoryLimit { .. } | ScriptError::TimeLimit { .. }
            ),
            "{text}: {e}"
        );
        assert_eq!(run_ok().await, s("v"), "after {text}");
        assert_eq!(engine.states_built(), before + 1, "the state {text} was killed in was dropped");
    }

    // A run whose future is dropped while it waits drops its state as well.
    let before = engine.states_built();
    let dropped = tokio::time::timeout(Duration::from_millis(20), engine.run(ok, &ScriptArgs::new(), slow())).await;
    assert!(dropped.is_err());
    assert_eq!(run_ok().await, s("v"));
    assert_eq!(engine.states_built(), before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_runs_never_share_a_state() {
    let store = MemStore::default();
    store.put("k", "v");
    let engine = Arc::new(pooled_engine());
    // Each run names its state (the address of its `kahuna` table, made with the state)
    // before and after it waits for the transaction, while the others run.
    let text = "local before = tostring(kahuna)\nkahuna.get('k')\nreturn before .. '|' .. tostring(kahuna)";
    let round = || async {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..4 {
            let (engine, store) = (engine.clone(), store.clone());
            tasks.spawn(async move {
                let mut txn = store.begin();
                txn.slow_get = Some(Duration::from_millis(50));
                engine.run(text, &ScriptArgs::new(), txn).await.unwrap().value
            });
        }
        let mut states = BTreeSet::new();
        while let Some(v) = tasks.join_next().await {
            let v = v.unwrap();
            let (before, after) = v.as_str().unwrap().split_once('|').unwrap();
            assert_eq!(before, after);
            states.insert(before.to_string());
        }
        states
    };
    let first = round().await;
    assert_eq!(first.len(), 4, "four concurrent runs, four states: {first:?}");
    assert_eq!(engine.states_built(), 4);
    let second = round().await;
    assert_eq!(second, first, "the next four reuse them");
    assert_eq!(engine.states_built(), 4);
}

#[tokio::test]
async fn a_rerun_after_a_conflict_draws_the_same_numbers() {
    let store = MemStore::default();
    store.put("n", "0");
    let engine = pooled_engine();
    let conflicts = Arc::new(AtomicU32::new(2));
    let source = || {
        let (store, conflicts) = (store.clone(), conflicts.clone());
        async move {
            let txn = store.begin();
            if conflicts.load(Ordering::SeqCst) > 0 {
                conflicts.fetch_sub(1, Ordering::SeqCst);
                store.put("n", "100");
            }
            Ok(txn)
        }
    };
    let text =
        "local r = {math.random(1, 1 << 40), math.random()}\nkahuna.set('n', kahuna.get('n').value + 1)\nreturn r";
    let out = engine.run_with_retries(Script::Text(text), &ScriptArgs::new(), &source).await.unwrap();
    assert_eq!(out.attempts, 3);
    assert_eq!(engine.states_built(), 1, "all three attempts ran in one state");
    let fresh = pooled_engine().run(text, &ScriptArgs::new(), store.begin()).await.unwrap();
    assert_eq!(out.value, fresh.value);
}

#[tokio::test]
async fn kahuna_functions_and_the_hook_fail_between_runs() {
    let pool = crate::pool::Pool::new(crate::limits::IDLE_STATES_MAX_DEFAULT);
    let state = pool.take::<MemTxn>(&Limits::default()).unwrap();
    let sb = state.sandbox();
    let get: mlua::Function = sb.kahuna.get("get").unwrap();
    let e = get.call_async::<mlua::Value>("k").await.unwrap_err();
    assert!(e.to_string().contains("no script is running"), "{e}");
    let now: mlua::Function = sb.kahuna.get("now").unwrap();
    let e = now.call::<mlua::Value>(()).unwrap_err();
    assert!(e.to_string().contains("no script is running"), "{e}");
    let e = sb.lua.load("for _ = 1, 1e6 do end").exec().unwrap_err();
    assert!(e.to_string().contains("no script is running"), "{e}");
}
