//! The keyspace: key `i` is `i` in decimal, zero-padded to the key size, so every key has
//! the same length and no `/`, which makes each key its own bucket and spreads the keys
//! over all partitions. Lock and sequence names are the keys behind a prefix without `/`
//! (`lock-00000042`, `seq-00000042`), so they spread the same way and never collide with
//! the keys in systems where they share one keyspace (etcd, Redis).

use rand::{Rng, RngCore};

/// `count` keys of `size` bytes each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct KeySpace {
    count: u64,
    size: usize,
}

impl KeySpace {
    /// Checks that `count` key numbers fit in `size` decimal digits.
    pub(crate) fn new(count: u64, size: usize) -> Result<KeySpace, String> {
        if count == 0 {
            return Err("the keyspace needs at least one key".into());
        }
        let digits = decimal_digits(count - 1);
        if size < digits {
            return Err(format!(
                "{count} keys need a key size of at least {digits} bytes (zero-padded decimal); --key-size is {size}"
            ));
        }
        Ok(KeySpace { count, size })
    }

    /// Number of keys.
    pub(crate) fn count(self) -> u64 {
        self.count
    }

    /// Length of every key, in bytes.
    pub(crate) fn size(self) -> usize {
        self.size
    }

    /// Key number `index`; `index` is below `count`.
    pub(crate) fn key(self, index: u64) -> String {
        debug_assert!(index < self.count, "key {index} outside a keyspace of {}", self.count);
        format!("{index:0width$}", width = self.size)
    }

    /// A key chosen uniformly at random.
    pub(crate) fn random_key(self, rng: &mut impl Rng) -> String {
        self.key(self.random_index(rng))
    }
}

/// Prefix of the lock names.
const LOCK_PREFIX: &str = "lock-";
/// Prefix of the sequence names.
const SEQUENCE_PREFIX: &str = "seq-";

impl KeySpace {
    /// Lock name number `index`.
    pub(crate) fn lock_name(self, index: u64) -> String {
        format!("{LOCK_PREFIX}{}", self.key(index))
    }

    /// Sequence name number `index`.
    pub(crate) fn sequence_name(self, index: u64) -> String {
        format!("{SEQUENCE_PREFIX}{}", self.key(index))
    }

    /// An index chosen uniformly at random.
    pub(crate) fn random_index(self, rng: &mut impl Rng) -> u64 {
        rng.random_range(0..self.count)
    }
}

/// Digits of `n` in decimal (1 for 0).
fn decimal_digits(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |log| log as usize + 1)
}

/// `size` random bytes, the value every write sends (as etcd's benchmark does).
pub(crate) fn value(size: usize, rng: &mut impl RngCore) -> Vec<u8> {
    let mut value = vec![0; size];
    rng.fill_bytes(&mut value);
    value
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    use super::*;

    #[test]
    fn keys_are_fixed_width_and_distinct() {
        let space = KeySpace::new(10_000, 8).unwrap();
        assert_eq!(space.key(0), "00000000");
        assert_eq!(space.key(7), "00000007");
        assert_eq!(space.key(9_999), "00009999");
        let keys: HashSet<String> = (0..space.count()).map(|i| space.key(i)).collect();
        assert_eq!(keys.len(), 10_000);
        assert!(keys.iter().all(|k| k.len() == 8 && !k.contains('/')));
    }

    #[test]
    fn key_size_must_hold_the_largest_key_number() {
        assert!(KeySpace::new(10, 1).is_ok());
        let err = KeySpace::new(11, 1).unwrap_err();
        assert!(err.contains("at least 2 bytes"), "{err}");
        assert!(KeySpace::new(100_000_000, 8).is_ok());
        assert!(KeySpace::new(100_000_001, 8).is_err());
        assert!(KeySpace::new(0, 8).is_err());
        assert_eq!(KeySpace::new(1, 1).unwrap().key(0), "0");
    }

    #[test]
    fn decimal_digits_counts() {
        assert_eq!(decimal_digits(0), 1);
        assert_eq!(decimal_digits(9), 1);
        assert_eq!(decimal_digits(10), 2);
        assert_eq!(decimal_digits(u64::MAX), 20);
    }

    #[test]
    fn random_keys_stay_inside_and_follow_the_seed() {
        let space = KeySpace::new(50, 4).unwrap();
        let mut a = SmallRng::seed_from_u64(3);
        let mut b = SmallRng::seed_from_u64(3);
        for _ in 0..1_000 {
            let key = space.random_key(&mut a);
            assert_eq!(key, space.random_key(&mut b));
            assert!(key.parse::<u64>().unwrap() < 50);
        }
    }

    #[test]
    fn names_are_keys_behind_a_prefix_without_a_slash() {
        let space = KeySpace::new(100, 4).unwrap();
        assert_eq!(space.lock_name(7), "lock-0007");
        assert_eq!(space.sequence_name(99), "seq-0099");
        assert!(!space.lock_name(0).contains('/') && !space.sequence_name(0).contains('/'));
    }

    #[test]
    fn values_have_the_asked_size() {
        let mut rng = SmallRng::seed_from_u64(1);
        assert_eq!(value(256, &mut rng).len(), 256);
        assert!(value(0, &mut rng).is_empty());
    }
}
