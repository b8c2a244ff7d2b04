//! Which endpoint leads each partition, so that a call goes straight to the node that
//! serves it instead of being forwarded by another (one network hop and one gRPC
//! round less, and client load spread over the nodes).
//!
//! The table is learned, never required: the first routed call fetches the cluster's
//! status in the background (node ids, their addresses, the partition count and
//! leaders) and every answer's `served_by` then keeps it current. Until it is known, or
//! when a node's address is not one of the client's endpoints, calls go to the current
//! endpoint as before, and the server forwards them. A routed attempt that fails at the
//! endpoint forgets the partition's leader and falls back to the current endpoint.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kahuna_proto::routing::{partition_of, partition_of_bucket};
use kahuna_proto::v1;

/// How long after a failed or partial status fetch the client tries again.
const REFRESH_BACKOFF: Duration = Duration::from_secs(5);

/// What a call addresses, for routing.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Route<'a> {
    /// A key, or a lock or sequence name (names route like keys).
    Key(&'a str),
    /// Every key of a bucket.
    Bucket(&'a str),
}

#[derive(Debug, Default)]
struct State {
    /// 0 until the cluster's status was read.
    partitions: u32,
    /// Endpoint index of each partition's leader, when known.
    leaders: Vec<Option<usize>>,
    /// Endpoint index of each node id whose address is one of the endpoints.
    endpoint_of: HashMap<u64, usize>,
    /// When the last fetch started; `None` before the first.
    fetched: Option<Instant>,
}

/// The partition → leader endpoint table of one client.
#[derive(Debug, Default)]
pub(crate) struct Routes {
    state: Mutex<State>,
}

impl Routes {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // The state stays consistent at every step; a panic elsewhere cannot break it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The partition `route` addresses, once the partition count is known.
    pub(crate) fn partition(&self, route: Route<'_>) -> Option<u32> {
        let partitions = self.state().partitions;
        (partitions > 0).then(|| match route {
            Route::Key(key) => partition_of(key, partitions),
            Route::Bucket(bucket) => partition_of_bucket(bucket, partitions),
        })
    }

    /// The endpoint leading `partition`, when known.
    pub(crate) fn leader(&self, partition: u32) -> Option<usize> {
        self.state().leaders.get(partition as usize).copied().flatten()
    }

    /// Whether a status fetch is due (never done, or the last one is old and left the
    /// table incomplete); marks it started.
    pub(crate) fn fetch_due(&self) -> bool {
        let mut state = self.state();
        let due = match state.fetched {
            None => true,
            Some(at) => state.partitions == 0 && at.elapsed() >= REFRESH_BACKOFF,
        };
        if due {
            state.fetched = Some(Instant::now());
        }
        due
    }

    /// Fills the table from a status answer; `endpoint_index` maps an address to an
    /// endpoint of the client.
    pub(crate) fn learn_status(&self, status: &v1::StatusResponse, endpoint_index: impl Fn(&str) -> Option<usize>) {
        let mut state = self.state();
        state.endpoint_of =
            status.nodes.iter().filter_map(|n| endpoint_index(&n.address).map(|index| (n.id, index))).collect();
        let partitions = u32::try_from(status.partitions.len()).unwrap_or(0);
        let mut leaders = vec![None; partitions as usize];
        for p in &status.partitions {
            if let Some(slot) = leaders.get_mut(p.partition as usize) {
                *slot = state.endpoint_of.get(&p.leader).copied();
            }
        }
        state.leaders = leaders;
        state.partitions = partitions;
    }

    /// Records that node `served_by` answered for `partition`: it leads it.
    pub(crate) fn learn(&self, partition: u32, served_by: u64) {
        let mut state = self.state();
        let index = state.endpoint_of.get(&served_by).copied();
        if let Some(slot) = state.leaders.get_mut(partition as usize) {
            *slot = index;
        }
    }

    /// Forgets `partition`'s leader after its endpoint failed.
    pub(crate) fn forget(&self, partition: u32) {
        if let Some(slot) = self.state().leaders.get_mut(partition as usize) {
            *slot = None;
        }
    }
}

/// Answers that name the node that served them.
pub(crate) trait ServedBy {
    fn served_by(&self) -> u64;
}

macro_rules! served_by {
    ($($t:ty),* $(,)?) => {
        $(impl ServedBy for $t {
            fn served_by(&self) -> u64 {
                self.served_by
            }
        })*
    };
}

served_by!(
    v1::SetResponse,
    v1::GetResponse,
    v1::ExistsResponse,
    v1::DeleteResponse,
    v1::ExtendResponse,
    v1::GetByBucketResponse,
    v1::TryLockResponse,
    v1::UnlockResponse,
    v1::ExtendLockResponse,
    v1::GetLockResponse,
    v1::CreateSequenceResponse,
    v1::NextResponse,
    v1::ReserveResponse,
    v1::GetSequenceResponse,
    v1::DeleteSequenceResponse,
);

#[cfg(test)]
mod tests {
    use super::*;

    fn status() -> v1::StatusResponse {
        let node = |id: u64, port: u16| v1::NodeInfo { id, address: format!("127.0.0.1:{port}") };
        let partition = |partition: u32, leader: u64| v1::PartitionStatus { partition, leader, ..Default::default() };
        v1::StatusResponse {
            nodes: vec![node(1, 1001), node(2, 1002), node(3, 1003)],
            partitions: vec![partition(0, 2), partition(1, 3), partition(2, 0)],
            ..Default::default()
        }
    }

    #[test]
    fn learns_leaders_from_status_and_answers() {
        let routes = Routes::default();
        assert_eq!(routes.partition(Route::Key("a")), None, "unknown until the status is read");
        assert!(routes.fetch_due());
        assert!(!routes.fetch_due(), "one fetch at a time");
        // Node 3's address is not one of the client's endpoints.
        let endpoints = ["127.0.0.1:1001", "127.0.0.1:1002"];
        routes.learn_status(&status(), |address| endpoints.iter().position(|e| *e == address));
        assert_eq!((routes.leader(0), routes.leader(1), routes.leader(2)), (Some(1), None, None));
        assert_eq!(routes.partition(Route::Key("users/7")), Some(partition_of("users/7", 3)));
        assert_eq!(routes.partition(Route::Bucket("users")), Some(partition_of("users/7", 3)));
        routes.learn(2, 1);
        assert_eq!(routes.leader(2), Some(0));
        routes.forget(2);
        assert_eq!(routes.leader(2), None);
        routes.learn(1, 3);
        assert_eq!(routes.leader(1), None, "a node without an endpoint is not routed to");
    }
}
