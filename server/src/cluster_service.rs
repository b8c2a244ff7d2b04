//! The Cluster service: this node's view of the nodes and partitions.

use kahuna_kernel::Kernel;
use kahuna_proto::v1::cluster_server::Cluster;
use kahuna_proto::v1::{NodeInfo, PartitionStatus, StatusRequest, StatusResponse};
use tonic::{Request, Response, Status};

pub struct ClusterService {
    kernel: Kernel,
}

impl ClusterService {
    pub fn new(kernel: Kernel) -> Self {
        Self { kernel }
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn status(&self, _request: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        let nodes =
            self.kernel.peers().iter().map(|(id, address)| NodeInfo { id: *id, address: address.clone() }).collect();
        let partitions = self
            .kernel
            .status()
            .into_iter()
            .map(|p| PartitionStatus {
                partition: p.partition,
                leader: p.leader.unwrap_or(0),
                term: p.term,
                role: p.role,
                last_log_index: p.last_log_index,
                applied_index: p.applied_index,
                snapshot_index: p.snapshot_index,
                voters: p.voters,
                snapshots_installed: p.snapshots_installed,
            })
            .collect();
        Ok(Response::new(StatusResponse {
            node_id: self.kernel.node_id(),
            nodes,
            partitions,
            hlc: self.kernel.hlc().now(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        }))
    }
}
