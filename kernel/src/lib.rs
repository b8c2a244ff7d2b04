//! Kahuna's kernel: the hybrid logical clock, the MVCC keyspace on redb, partitions
//! as openraft groups, and the replicated state machine.
//!
//! openraft and redb types stay inside this crate: the API below speaks only Kahuna's
//! own vocabulary, so an upgrade of either stays local.
//!
//! Locks and sequences: `locks` and `sequences` hold their pure semantics (time passed
//! in), applied from Raft entries in `state_machine` and, for ephemeral locks, in the
//! leader's memory (`partition::coord`); `lock_waits` queues try-locks that wait on the
//! leader. Their tables are listed in `schema`.

mod error;
mod hlc;
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
mod state_machine;
mod storage;
mod types;

pub use error::{KvError, OpenError, StoreError};
pub use hlc::{Clock, Hlc, SystemClock, from_physical_ms, logical, physical_ms};
pub use limits::*;
pub use network::{CallFuture, MessageKind, NodeMessage, Transport, TransportError};
pub use node::{Kernel, KernelConfig, Served};
pub use routing::{
    DEFAULT_PARTITIONS, PARTITIONS_MAX, bucket_of, fnv1a64, jump_consistent_hash, partition_of, partition_of_bucket,
};
pub use types::*;
