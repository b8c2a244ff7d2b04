//! A Kahuna node: the gRPC services, request forwarding and the Raft transport over
//! gRPC, around the kernel.
//!
//! - `config`: `kahuna serve` flags.
//! - `kv_service`, `locks_service`, `sequences_service`, `cluster_service`: the client API.
//! - `node_service`, `transport`: the node-to-node API, both directions.
//! - `convert`, `status`: protocol ↔ kernel types, errors → gRPC statuses.

mod cluster_service;
mod config;
mod convert;
mod kv_service;
mod locks_service;
mod node_service;
mod sequences_service;
mod status;
mod transport;

pub use config::{ServeArgs, parse_peers};
pub use status::{CODE_METADATA, to_status};
pub use transport::GrpcTransport;

use anyhow::Context;
use kahuna_kernel::Kernel;
use kahuna_proto::MAX_MESSAGE_BYTES;
use kahuna_proto::node::node_server::NodeServer;
use kahuna_proto::v1::cluster_server::ClusterServer;
use kahuna_proto::v1::key_value_server::KeyValueServer;
use kahuna_proto::v1::locks_server::LocksServer;
use kahuna_proto::v1::sequences_server::SequencesServer;
use tonic::transport::server::TcpIncoming;

/// How long in-flight requests may finish after SIGTERM or Ctrl-C.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Runs a node until SIGTERM or Ctrl-C.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = args.kernel_config().map_err(anyhow::Error::msg).context("invalid configuration")?;
    // Bind first: a taken port fails at once, before any data is touched.
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let transport = GrpcTransport::new(config.peers.clone());
    let (node_id, partitions, data_dir) = (config.node_id, config.partitions, config.data_dir.clone());
    let kernel = Kernel::open(config, transport).await.context("cannot start the node")?;
    tracing::info!(
        node_id,
        partitions,
        data_dir = %data_dir.display(),
        "kahuna serving on {}",
        args.listen
    );
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
