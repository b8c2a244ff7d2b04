//! The keys of the transaction workloads: two per bucket, paired within one partition
//! (txn) or across two (txn-2p), as the system's own routing places them.
//!
//! Key `2i + s` is `{b}/{s}` for slot `s` of 0 or 1, where `{b}` is key `i` of a keyspace
//! of half the size (zero-padded decimal, no `/`), so the transaction keyspace has as many
//! keys as `--keys` says and each key is two bytes longer than `--key-size`. A key's
//! bucket is its text before the last `/`, and Kahuna routes a key by its bucket
//! ([`kahuna_proto::routing::partition_of`], the routing the servers and the client
//! use), so `{b}/0` and `{b}/1` always share a partition. A two-partition pair takes
//! slot 0 of one bucket and slot 1 of another that routes elsewhere.

use kahuna_proto::routing;
use rand::Rng;

use crate::keys::KeySpace;

/// The transaction keys of a keyspace, routed over `partitions` partitions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TxnPairs {
    buckets: KeySpace,
    partitions: u32,
}

impl TxnPairs {
    /// Pairs over `keys.count()` keys (rounded down to even, at least two), for a system
    /// of `partitions` partitions (at least 1).
    pub(crate) fn new(keys: KeySpace, partitions: u32) -> TxnPairs {
        let half = (keys.count() / 2).max(1);
        // Fewer key numbers than `keys` holds fit in the same width, and `half` is not 0.
        let buckets = KeySpace::new(half, keys.size()).unwrap_or(keys);
        TxnPairs { buckets, partitions: partitions.max(1) }
    }

    /// Number of transaction keys: two per bucket.
    pub(crate) fn count(&self) -> u64 {
        self.buckets.count() * 2
    }

    /// Transaction key number `index`, below [`TxnPairs::count`].
    pub(crate) fn key(&self, index: u64) -> String {
        self.slot(index / 2, index % 2)
    }

    fn slot(&self, bucket: u64, slot: u64) -> String {
        format!("{}/{slot}", self.buckets.key(bucket))
    }

    /// The partition that holds the keys of `bucket`, as the servers route them.
    fn partition(&self, bucket: u64) -> u32 {
        routing::partition_of(&self.slot(bucket, 0), self.partitions)
    }

    /// Fails when every bucket routes to one partition (one partition in all, or too few
    /// keys), so that no two-partition pair exists.
    pub(crate) fn check_two_partitions(&self) -> Result<(), String> {
        let first = self.partition(0);
        if (1..self.buckets.count()).any(|bucket| self.partition(bucket) != first) {
            return Ok(());
        }
        Err(format!(
            "txn-2p needs keys in two partitions, but all {} keys route to partition {first} of {}; \
             raise --keys or use a cluster with more partitions",
            self.count(),
            self.partitions
        ))
    }

    /// Two keys of one random bucket: one partition.
    pub(crate) fn one_partition(&self, rng: &mut impl Rng) -> (String, String) {
        let bucket = self.buckets.random_index(rng);
        (self.slot(bucket, 0), self.slot(bucket, 1))
    }

    /// Slot 0 of a random bucket and slot 1 of another bucket in another partition: the
    /// first such bucket from a random start, in key order, wrapping around. `None` only
    /// when [`TxnPairs::check_two_partitions`] fails.
    pub(crate) fn two_partitions(&self, rng: &mut impl Rng) -> Option<(String, String)> {
        let buckets = self.buckets.count();
        let first = self.buckets.random_index(rng);
        let home = self.partition(first);
        let start = self.buckets.random_index(rng);
        let other = (0..buckets).map(|step| (start + step) % buckets).find(|&b| self.partition(b) != home)?;
        Some((self.slot(first, 0), self.slot(other, 1)))
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    use super::*;

    fn pairs(keys: u64, partitions: u32) -> TxnPairs {
        TxnPairs::new(KeySpace::new(keys, 8).unwrap(), partitions)
    }

    #[test]
    fn keys_come_two_per_bucket() {
        let pairs = pairs(10_000, 16);
        assert_eq!(pairs.count(), 10_000);
        assert_eq!(pairs.key(0), "00000000/0");
        assert_eq!(pairs.key(1), "00000000/1");
        assert_eq!(pairs.key(9_999), "00004999/1");
        assert_eq!(TxnPairs::new(KeySpace::new(1, 1).unwrap(), 16).count(), 2);
        assert_eq!(TxnPairs::new(KeySpace::new(7, 1).unwrap(), 16).count(), 6);
    }

    #[test]
    fn one_partition_pairs_share_a_bucket_and_a_partition() {
        let pairs = pairs(10_000, 16);
        let mut rng = SmallRng::seed_from_u64(1);
        for _ in 0..1_000 {
            let (a, b) = pairs.one_partition(&mut rng);
            assert_ne!(a, b);
            assert_eq!(routing::bucket_of(&a), routing::bucket_of(&b));
            assert_eq!(routing::partition_of(&a, 16), routing::partition_of(&b, 16));
        }
    }

    #[test]
    fn two_partition_pairs_route_apart_and_stay_in_the_keyspace() {
        for partitions in [2, 3, 16, 1_024] {
            let pairs = pairs(1_000, partitions);
            assert!(pairs.check_two_partitions().is_ok());
            let keys: std::collections::HashSet<String> = (0..pairs.count()).map(|i| pairs.key(i)).collect();
            let mut rng = SmallRng::seed_from_u64(u64::from(partitions));
            let mut partners = std::collections::HashSet::new();
            for _ in 0..1_000 {
                let (a, b) = pairs.two_partitions(&mut rng).unwrap();
                assert!(keys.contains(&a) && keys.contains(&b), "{a} {b}");
                assert_ne!(routing::partition_of(&a, partitions), routing::partition_of(&b, partitions));
                partners.insert(b);
            }
            // The partner is spread over the keyspace, not always the same bucket.
            assert!(partners.len() > 100, "{} distinct partners", partners.len());
        }
    }

    #[test]
    fn one_partition_in_all_has_no_two_partition_pair() {
        let pairs = pairs(1_000, 1);
        assert!(pairs.check_two_partitions().unwrap_err().contains("partition 0 of 1"));
        assert_eq!(pairs.two_partitions(&mut SmallRng::seed_from_u64(0)), None);
        // Two keys are one bucket: one partition, whatever the cluster's size.
        let tiny = TxnPairs::new(KeySpace::new(2, 1).unwrap(), 16);
        assert!(tiny.check_two_partitions().is_err());
    }

    #[test]
    fn routing_follows_the_servers_pinned_values() {
        // kernel/src/routing.rs pins "a" to 12 and "b" to 3 of 16: a key's bucket decides.
        assert_eq!(routing::partition_of("a/0", 16), 12);
        assert_eq!(routing::partition_of("b/1", 16), 3);
    }
}
