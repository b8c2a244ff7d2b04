//! Routing a key to its partition.
//!
//! The *bucket* of a key is its text before the last `/` (the whole key when it has no
//! `/`). A bucket is hashed with 64-bit FNV-1a over its UTF-8 bytes and the hash is
//! mapped onto the partitions with jump consistent hash (Lamping & Veach, 2014). Both
//! are fixed forever for a cluster: changing either would move keys between partitions.

/// Default number of data partitions in a new cluster. Few, because much of a write's cost
/// is paid per Raft entry and a partition's entry carries every write that queued while
/// its previous one was in flight; three, so that clusters of three or five nodes have no
/// node leading two partitions while another leads one (README design notes).
pub const DEFAULT_PARTITIONS: u32 = 3;
/// Largest number of partitions a cluster may be created with.
pub const PARTITIONS_MAX: u32 = 1024;

/// The bucket of a key: its text before the last `/`, or the whole key.
pub fn bucket_of(key: &str) -> &str {
    match key.rfind('/') {
        Some(at) => &key[..at],
        None => key,
    }
}

/// 64-bit FNV-1a of `bytes`.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET, |hash, byte| (hash ^ u64::from(*byte)).wrapping_mul(PRIME))
}

/// Jump consistent hash: maps `key` to one of `buckets` slots so that growing the
/// slot count moves only `1/n` of the keys.
pub fn jump_consistent_hash(mut key: u64, buckets: u32) -> u32 {
    let mut b: i64 = -1;
    let mut j: i64 = 0;
    while j < i64::from(buckets) {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        j = ((b + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    b.max(0) as u32
}

/// The partition that holds `bucket`.
pub fn partition_of_bucket(bucket: &str, partitions: u32) -> u32 {
    jump_consistent_hash(fnv1a64(bucket.as_bytes()), partitions.max(1))
}

/// The partition that holds `key`.
pub fn partition_of(key: &str, partitions: u32) -> u32 {
    partition_of_bucket(bucket_of(key), partitions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bucket_is_text_before_last_slash() {
        assert_eq!(bucket_of("a/b/c"), "a/b");
        assert_eq!(bucket_of("plain"), "plain");
        assert_eq!(bucket_of("/x"), "");
        assert_eq!(bucket_of("x/"), "x");
    }

    #[test]
    fn fnv_matches_reference_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn routing_is_stable() {
        // Pinned values: a change here moves data between partitions of live clusters.
        assert_eq!(partition_of("config/feature-x", 16), partition_of("config/feature-y", 16));
        let pinned: Vec<u32> =
            ["a", "b", "users/1", "locks", "seq/invoice"].iter().map(|k| partition_of(k, 16)).collect();
        // Also computed by an independent implementation of FNV-1a and jump hash.
        assert_eq!(pinned, [12, 3, 14, 6, 15]);
        assert_eq!(jump_consistent_hash(0, 1), 0);
    }

    proptest! {
        #[test]
        fn jump_hash_is_in_range_and_moves_little(key in any::<u64>(), n in 1u32..500) {
            let a = jump_consistent_hash(key, n);
            prop_assert!(a < n);
            let b = jump_consistent_hash(key, n + 1);
            prop_assert!(b == a || b == n);
        }
    }
}
