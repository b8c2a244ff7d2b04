//! Kahuna's gRPC protocol, generated from `proto/*.proto`.
//!
//! - [`v1`]: the client API (KeyValue, Locks, Sequences, Transactions, Scripts, Cluster
//!   services).
//! - [`node`]: the node-to-node API (Raft transport and request forwarding).
//! - [`routing`]: how a key finds its partition — part of the protocol, because clients
//!   route requests to partition leaders with it.

/// The client API.
pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("kahuna.v1");
}

/// The node-to-node API.
pub mod node {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("kahuna.node.v1");
}

/// Largest gRPC message either side accepts or sends: a 1 MiB value plus room for
/// batches and snapshots chunks.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

pub mod routing;
