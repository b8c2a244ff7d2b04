//! Kahuna's kernel: the hybrid logical clock, the MVCC keyspace on redb, partitions
//! as openraft groups, and the replicated state machine.
//!
//! openraft and redb types stay inside this crate: the API below speaks only Kahuna's
//! own vocabulary, so an upgrade of either stays local. The server drives a node
//! through [`Kernel`] (`execute` a [`PartitionRequest`], `handle` a [`NodeMessage`]) and
//! supplies the [`Transport`] it sends node-to-node messages with.
//!
//! Where things live (new code goes beside its kind):
//! - `hlc`, `routing`, `limits`, `types`, `error`: vocabulary, pure; `batches`: a queue
//!   read in bounded batches (the proposal queue, the server's peer outboxes).
//! - `mvcc` (key semantics over the `KeyReader`/`KeySpace` traits), `memspace` (the
//!   in-memory keyspace: ephemeral keys, and the model tests compare against),
//!   `redb_space` (the persistent keyspace) with `version_index` (its keys' version
//!   timestamps, in memory): pure or storage-only, time passed in.
//! - `locks`, `sequences`: lock and sequence semantics, pure; `lock_waits`: the FIFO
//!   queue of waiting try-locks on a leader.
//! - `schema`: every redb table of the state file and its key layout; `wal`: the Raft
//!   log of all partitions in append-only segment files; `storage`: the storage thread
//!   (group commit over the log and the state file); `sim_disk`: the simulated disk a
//!   deterministic simulation keeps those files on.
//! - `raft_types`, `log_store`, `state_machine`, `network`: openraft's types, storage
//!   and network traits implemented over the above.
//! - `txn_state`: transactions inside the state machine: validation, intents, records.
//! - `partition` (and `partition::coord` for locks and sequences, `partition::txn` for
//!   transaction steps): one partition's
//!   read and write paths and timestamp ordering; `node`: the node's partitions,
//!   request validation and forwarding.

mod batches;
mod error;
mod hlc;
mod leadership;
mod limits;
mod lock_waits;
mod locks;
mod log_store;
mod memspace;
mod mvcc;
mod network;
mod node;
mod partition;
mod raft_types;
mod redb_space;
mod routing;
mod schema;
mod sequences;
mod sim_disk;
mod state_machine;
mod storage;
mod txn_state;
mod types;
mod version_index;
mod wal;

pub use batches::Batches;
pub use error::{KvError, OpenError, StoreError};
pub use hlc::{Clock, Hlc, SystemClock, from_physical_ms, logical, physical_ms};
pub use limits::*;
pub use locks::{LockRecord, lock_step};
pub use network::{CallFuture, MessageKind, NodeMessage, Transport, TransportError};
pub use node::{ClockSync, Kernel, KernelConfig, Served};
pub use routing::{
    DEFAULT_PARTITIONS, PARTITIONS_MAX, bucket_of, fnv1a64, jump_consistent_hash, partition_of, partition_of_bucket,
};
pub use sequences::sequence_step;
pub use sim_disk::{SIM_PAGE_BYTES, SimDisk};
pub use storage::{DataFiles, StorageMode};
pub use types::*;
