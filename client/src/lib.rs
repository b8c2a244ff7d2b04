//! Async Rust client for Kahuna, the replicated coordination store.
//!
//! A [`Client`] holds several endpoints, connects to each lazily, sends every call to the
//! current one and fails over to the next when a node is down. It retries only what is
//! safe to repeat: reads always, and writes that carry an operation id, which every write
//! gets by default (see [`OperationId`]) so that the server answers a repeated write from
//! its first outcome. Retries are bounded ([`RETRIES_DEFAULT`], at most [`RETRIES_MAX`]),
//! with a short backoff; each attempt has a timeout ([`TIMEOUT_MS_DEFAULT`]).
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
//! Modules (private; everything public is re-exported below):
//! - `client`: [`Client`], [`ClientBuilder`] and the KeyValue and Cluster calls.
//! - `locks`, `sequences`: the Locks and Sequences calls of [`Client`].
//! - `connection`: endpoint normalisation, lazy channels, failover and the retry loop.
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
mod sequences;
mod types;

pub use client::{Client, ClientBuilder, SCAN_ALL_ITEMS_MAX, SCAN_PAGE_LIMIT_MAX, TIMEOUT_MS_MAX};
pub use connection::{
    BACKOFF_MS_BASE, BACKOFF_MS_MAX, CONNECT_TIMEOUT_MS_DEFAULT, ENDPOINTS_MAX, RETRIES_DEFAULT, RETRIES_MAX,
    TIMEOUT_MS_DEFAULT, normalize_endpoint,
};
pub use error::{Error, KAHUNA_CODE_METADATA};
pub use hlc::{HLC_LOGICAL_BITS, hlc_end_of_ms, hlc_logical, hlc_unix_ms};
pub use options::{
    Consistency, DeleteItem, DeleteOptions, Durability, ExtendOptions, GetOptions, LockOptions, OperationId,
    ReadOptions, ScanOptions, SequenceOptions, SetItem, SetOptions, UnlockOptions, new_operation_id,
};
pub use types::{
    Batch, ClusterStatus, CreateSequenceResult, DeleteResult, DeleteSequenceResult, ExistsResult, ExtendLockResult,
    ExtendResult, GetResult, GetSequenceResult, Items, KeyValue, LockHolder, LockInfo, LockResult, NextResult, NodeId,
    NodeInfo, PartitionStatus, ReserveResult, SequenceInfo, SetResult, UnlockResult,
};
