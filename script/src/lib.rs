//! Kahuna's Lua 5.4 scripts: a sandbox, the `kahuna` Lua API over a transaction, the
//! script cache and the limits that end runaway scripts.
//!
//! A script runs as one transaction: its reads come from one snapshot, its writes are
//! buffered, and they commit atomically when it returns or are discarded when it fails
//! (an error, a limit, a dropped future). The transaction itself is the transaction
//! engine's: it implements [`ScriptTxn`], and this crate never sees storage or Raft.
//! A conflicting commit re-runs the script ([`ScriptEngine::run_with_retries`]).
//!
//! ```
//! # use kahuna_script::*;
//! # use kahuna_kernel::{DeleteArgs, Durability, KeyValue, SetArgs};
//! # struct Empty;
//! # impl ScriptTxn for Empty {
//! #     fn snapshot_ts(&self) -> u64 { 7 << 16 }
//! #     async fn get(&mut self, _: &str, _: ReadOpts) -> Result<Option<KeyValue>, ScriptError> { Ok(None) }
//! #     async fn scan(&mut self, _: &str, _: ScanOpts) -> Result<ScanPage, ScriptError> { Ok(ScanPage::default()) }
//! #     async fn set(&mut self, _: SetArgs, _: Durability) -> Result<bool, ScriptError> { Ok(true) }
//! #     async fn delete(&mut self, _: DeleteArgs, _: Durability) -> Result<bool, ScriptError> { Ok(false) }
//! #     async fn commit(self) -> Result<Option<u64>, ScriptError> { Ok(Some(8 << 16)) }
//! # }
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let engine = ScriptEngine::default();
//! let hash = engine.load(r#"
//!     local n = kahuna.get(kahuna.args.key)
//!     kahuna.set(kahuna.args.key, (n and tonumber(n.value) or 0) + kahuna.args[1])
//!     return kahuna.now()
//! "#)?;
//! let args = ScriptArgs::new().arg(5).named("key", "counter");
//! let out = engine.run_hash(&hash, &args, Empty).await?;
//! assert_eq!(out.value, ScriptValue::Integer(7 << 16));
//! assert_eq!(out.commit_ts, Some(8 << 16));
//! # Ok::<(), ScriptError>(())
//! # }).unwrap();
//! ```
//!
//! Modules (private; everything public is re-exported below):
//! - `engine`: [`ScriptEngine`]: load, run, run by hash, re-run on conflict.
//! - `txn`: [`ScriptTxn`], the seam the transaction engine implements, and [`TxnSource`].
//! - `engine_txn`: [`ScriptTxn`] for `kahuna_txn::Transaction` and [`TxnSource`] for
//!   `kahuna_txn::TxnEngine` (persistent keys only).
//! - `api`: the `kahuna` Lua table (its functions are listed there).
//! - `sandbox`: the sandboxed Lua state: allowed libraries, read-only globals, the hook,
//!   and why one state may serve run after run.
//! - `pool`: idle Lua states, each serving one run at a time, with its compiled scripts.
//! - `limits`: [`Limits`], [`RetryPolicy`] and every named maximum of the crate.
//! - `value`: [`ScriptValue`] and [`ScriptArgs`], and their conversion to and from Lua.
//! - `cache`: [`ScriptHash`] and the LRU cache of script texts.
//! - `error`: [`ScriptError`], with stable codes.

mod api;
mod cache;
mod engine;
mod engine_txn;
mod error;
mod limits;
mod pool;
mod sandbox;
mod txn;
mod value;

#[cfg(test)]
mod tests;

pub use cache::ScriptHash;
pub use engine::{EngineConfig, Script, ScriptEngine, ScriptOutput};
pub use error::ScriptError;
pub use limits::{
    ATTEMPTS_MAX_DEFAULT, BACKOFF_MS_BASE_DEFAULT, BACKOFF_MS_MAX_DEFAULT, CACHE_BYTES_MAX, CACHE_SCRIPTS_MAX,
    HOOK_INSTRUCTIONS_INTERVAL, IDLE_STATES_MAX_DEFAULT, Limits, MEMORY_BYTES_MAX_DEFAULT, RetryPolicy,
    SCRIPT_BYTES_MAX, TIME_MS_MAX_DEFAULT, VALUE_DEPTH_MAX, VALUE_ITEMS_MAX,
};
pub use sandbox::RANDOM_SEED;
pub use txn::{ReadOpts, ScanOpts, ScanPage, ScriptTxn, TxnSource};
pub use value::{ScriptArgs, ScriptValue};
