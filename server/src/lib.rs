//! A Kahuna node: the gRPC services, request forwarding and the Raft transport over
//! gRPC, around the kernel.
//!
//! - `config`: `kahuna serve` flags.
//! - `kv_service`, `locks_service`, `sequences_service`, `cluster_service`: the client API.
//! - `pipeline`: KeyValue.Pipeline, single-key calls multiplexed over one stream.
//! - `txn_service`: interactive transactions, held on the node that began them.
//! - `scripts_service`: Lua scripts, each run a transaction on this node.
//! - `node_service`, `transport`: the node-to-node API, both directions.
//! - `convert`, `status`: protocol ↔ kernel and script types, errors → gRPC statuses.

mod cluster_service;
mod config;
mod convert;
mod kv_service;
mod locks_service;
mod node_service;
mod pipeline;
mod scripts_service;
mod sequences_service;
mod status;
mod transport;
mod txn_service;

pub use config::{Fault, SCRIPT_COMMIT_MS_MARGIN, SCRIPT_MEMORY_BYTES_MIN, ServeArgs, parse_peers};
pub use node_service::NodeService;
pub use pipeline::PIPELINE_CALLS_MAX;
pub use scripts_service::SCRIPT_RUNS_MAX;
pub use status::{CODE_METADATA, NOT_COMMITTED, OUTCOME_METADATA, script_status, to_status};
pub use transport::GrpcTransport;
pub use txn_service::{OUTCOME_RETENTION, OUTCOMES_MAX, SESSIONS_MAX};

use anyhow::Context;
use kahuna_kernel::Kernel;
use kahuna_proto::MAX_MESSAGE_BYTES;
use kahuna_proto::node::node_server::NodeServer;
use kahuna_proto::v1::cluster_server::ClusterServer;
use kahuna_proto::v1::key_value_server::KeyValueServer;
use kahuna_proto::v1::locks_server::LocksServer;
use kahuna_proto::v1::scripts_server::ScriptsServer;
use kahuna_proto::v1::sequences_server::SequencesServer;
use kahuna_proto::v1::transactions_server::TransactionsServer;
use kahuna_script::ScriptEngine;
use kahuna_txn::TxnEngine;
use tonic::transport::server::TcpIncoming;

/// How long in-flight requests may finish after SIGTERM or Ctrl-C.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Runs a node until SIGTERM or Ctrl-C.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = args.kernel_config().map_err(anyhow::Error::msg).context("invalid configuration")?;
    let txn_config = args.txn_config().map_err(anyhow::Error::msg).context("invalid configuration")?;
    let script_config = args.script_config().map_err(anyhow::Error::msg).context("invalid configuration")?;
    if txn_config.crash_after_prepare {
        tracing::warn!("fault injection on: the process aborts after preparing a multi-partition commit");
    }
    // Bind first: a taken port fails at once, before any data is touched.
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let transport = GrpcTransport::new(config.peers.clone());
    let (node_id, data_dir) = (config.node_id, config.data_dir.clone());
    let kernel = Kernel::open(config, transport.clone()).await.context("cannot start the node")?;
    transport.set_partitions(kernel.partitions());
    tracing::info!(
        node_id,
        partitions = kernel.partitions(),
        data_dir = %data_dir.display(),
        "kahuna serving on {}",
        args.listen
    );
    let txns = TxnEngine::new(kernel.clone(), txn_config);
    let scripts = ScriptEngine::new(script_config);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(
            KeyValueServer::new(kv_service::KvService::new(kernel.clone()))
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(LocksServer::new(locks_service::LocksService::new(kernel.clone())))
        .add_service(SequencesServer::new(sequences_service::SequencesService::new(kernel.clone())))
        .add_service(
            TransactionsServer::new(txn_service::TxnService::new(txns.clone()))
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            ScriptsServer::new(
                scripts_service::ScriptsService::new(scripts, txns, args.script_txn_timeout())
                    .context("cannot start the scripts' runtime")?,
            )
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(ClusterServer::new(cluster_service::ClusterService::new(kernel.clone())))
        .add_service(
            NodeServer::new(node_service::NodeService::new(kernel.clone()))
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        // `Server::tcp_nodelay` does not reach connections accepted from our own
        // listener: without this, Nagle and delayed ACKs add ~40 ms to small replies.
        .serve_with_incoming_shutdown(TcpIncoming::from(listener).with_nodelay(Some(true)), async {
            let _ = stopped.await;
        });
    tokio::pin!(server);
    let result = tokio::select! {
        result = &mut server => result,
        () = shutdown_signal() => {
            let _ = stop.send(());
            // Idle client connections would hold a graceful shutdown open forever.
            match tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await {
                Ok(result) => result,
                Err(_) => {
                    tracing::info!("closing connections still open after {SHUTDOWN_GRACE:?}");
                    Ok(())
                }
            }
        }
    };
    kernel.shutdown().await;
    tracing::info!("kahuna stopped");
    result.context("gRPC server failed")
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("cannot watch SIGTERM: {e}");
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down");
}
