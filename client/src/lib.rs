//! Async Rust client for Kahuna, the replicated coordination store.
//!
//! A [`Client`] holds several endpoints, connects to each lazily, sends every call to the
//! current one and fails over to the next when a node is down. It retries only what is
//! safe to repeat: reads always, and writes that carry an operation id, which every write
//! gets by default (see [`OperationId`]) so that the server answers a repeated write from
//! its first outcome. Retries are bounded ([`RETRIES_DEFAULT`], at most [`RETRIES_MAX`]),
//! with a short backoff; each attempt has a timeout ([`TIMEOUT_MS_DEFAULT`]). A hook set
//! with [`ClientBuilder::on_retry`] is told of each retry as it happens ([`RetryEvent`]).
//!
//! With [`ClientBuilder::pipeline`], the single-key KeyValue calls of all the client's
//! clones share one stream per endpoint, as many to a message as are in flight: far less
//! CPU per call when many are concurrent, with the same answers, errors and retries.
//!
//! Every result names the node that served it (`served_by`). Errors are one
//! [`Error`] enum; [`Error::is_retryable`] says which may succeed when repeated.
//!
//! ```no_run
//! use kahuna_client::{Client, GetOptions, SetOptions};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), kahuna_client::Error> {
//!     let client = Client::connect(["127.0.0.1:2070", "127.0.0.1:2071"])?;
//!     let set = client.set("config/color", "blue", SetOptions::new().nx()).await?;
//!     println!("modified: {}, revision {:?}", set.modified, set.revision);
//!     let got = client.get("config/color", GetOptions::new()).await?;
//!     if let Some(kv) = got.kv {
//!         println!("{} = {:?} (served by node {})", kv.key, kv.value, got.served_by);
//!     }
//!     Ok(())
//! }
//! ```
//!
//! Transactions and scripts: a [`Transaction`] stays on the node that began it (no
//! failover inside it) and fails with [`Error::Conflict`] at commit when something it
//! read changed, which only running it again from [`Client::begin`] can fix. A script is
//! one transaction on the node that receives it; [`Client::eval`] never repeats a run
//! that may have committed.
//!
//! ```no_run
//! use kahuna_client::{Client, Error, GetOptions, ScriptArgs, SetOptions};
//!
//! async fn transfer(client: &Client) -> Result<(), Error> {
//!     loop {
//!         let txn = client.begin(None).await?;
//!         let balance = |kv: Option<kahuna_client::KeyValue>| -> i64 {
//!             kv.and_then(|kv| String::from_utf8(kv.value).ok()?.parse().ok()).unwrap_or(0)
//!         };
//!         let a = balance(txn.get("acct/a", GetOptions::new()).await?.kv);
//!         let b = balance(txn.get("acct/b", GetOptions::new()).await?.kv);
//!         txn.set("acct/a", (a - 10).to_string(), SetOptions::new()).await?;
//!         txn.set("acct/b", (b + 10).to_string(), SetOptions::new()).await?;
//!         match txn.commit().await {
//!             Err(Error::Conflict(_)) => continue, // nothing committed: run it all again
//!             other => return other.map(|_| ()),
//!         }
//!     }
//! }
//!
//! async fn count(client: &Client) -> Result<i64, Error> {
//!     let script = "local n = tonumber((kahuna.get(kahuna.args[1]) or {}).value or '0') + 1
//!                   kahuna.set(kahuna.args[1], n)
//!                   return n";
//!     let out = client.eval(script, &ScriptArgs::new().arg("counter")).await?;
//!     Ok(out.value.as_i64().unwrap_or(0))
//! }
//! ```
//!
//! Modules (private; everything public is re-exported below):
//! - `client`: [`Client`], [`ClientBuilder`] and the KeyValue and Cluster calls.
//! - `locks`, `sequences`: the Locks and Sequences calls of [`Client`].
//! - `txn`: [`Client::begin`] and [`Transaction`], pinned to the node that began it.
//! - `scripts`: [`Client::eval`], [`Client::eval_sha`] and [`Client::script_load`].
//! - `script_value`: [`ScriptValue`] and [`ScriptArgs`], Lua values on the client side.
//! - `connection`: endpoint normalisation, lazy channels, failover, the retry loop and
//!   [`RetryEvent`].
//! - `pipeline`: single-key KeyValue calls multiplexed over one stream per endpoint
//!   ([`ClientBuilder::pipeline`]).
//! - `routes`: which endpoint leads each partition, learned from the cluster's status
//!   and from every answer's `served_by`, so calls go straight to the leader.
//! - `error`: [`Error`] and its mapping from gRPC statuses.
//! - `options`: per-call option structs.
//! - `types`: what calls return.
//! - `hlc`: reading HLC timestamps.
#![warn(missing_docs)]

mod client;
mod connection;
mod error;
mod hlc;
mod locks;
mod options;
mod pipeline;
mod routes;
mod script_value;
mod scripts;
mod sequences;
mod txn;
mod types;

pub use client::{Client, ClientBuilder, SCAN_ALL_ITEMS_MAX, SCAN_PAGE_LIMIT_MAX, TIMEOUT_MS_MAX};
pub use connection::{
    BACKOFF_MS_BASE, BACKOFF_MS_MAX, CONNECT_TIMEOUT_MS_DEFAULT, ENDPOINTS_MAX, RETRIES_DEFAULT, RETRIES_MAX,
    RetryEvent, TIMEOUT_MS_DEFAULT, normalize_endpoint,
};
pub use error::{Error, KAHUNA_CODE_METADATA, ScriptErrorKind};
pub use hlc::{HLC_LOGICAL_BITS, hlc_end_of_ms, hlc_logical, hlc_unix_ms};
pub use options::{
    Consistency, DeleteItem, DeleteOptions, Durability, ExtendOptions, GetOptions, LockOptions, OperationId,
    ReadOptions, ScanOptions, SequenceOptions, SetItem, SetOptions, UnlockOptions, new_operation_id,
};
pub use script_value::{ScriptArgs, ScriptValue};
pub use scripts::script_hash;
pub use txn::Transaction;
pub use types::{
    Batch, ClusterStatus, CreateSequenceResult, DeleteResult, DeleteSequenceResult, ExistsResult, ExtendLockResult,
    ExtendResult, GetResult, GetSequenceResult, Items, KeyValue, LockHolder, LockInfo, LockResult, NextResult, NodeId,
    NodeInfo, PartitionStatus, ReserveResult, ScriptResult, SequenceInfo, SetResult, UnlockResult,
};
