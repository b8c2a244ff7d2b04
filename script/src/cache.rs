//! The script cache: script texts by the SHA-256 of their bytes, least recently used
//! evicted first, bounded by count and by bytes.

use std::fmt;
use std::num::NonZeroUsize;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};

use lru::LruCache;
use sha2::{Digest, Sha256};

use crate::error::ScriptError;

/// The SHA-256 of a script's text, computed by the node; shown as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ScriptHash(pub [u8; 32]);

impl ScriptHash {
    /// The hash of `text`.
    pub fn of(text: &str) -> Self {
        Self(Sha256::digest(text.as_bytes()).into())
    }
}

impl fmt::Display for ScriptHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for ScriptHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ScriptHash({self})")
    }
}

impl FromStr for ScriptHash {
    type Err = ScriptError;

    /// Parses 64 hex digits (either case).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ScriptError::invalid(format!("script hash must be 64 hex digits (SHA-256), got {s:?}"));
        if s.len() != 64 || !s.is_ascii() {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(Self(out))
    }
}

/// Script texts by hash. Inserting may evict the least recently used scripts; a
/// client that runs an evicted hash gets [`ScriptError::NotFound`] and loads it again.
pub(crate) struct ScriptCache {
    inner: Mutex<Inner>,
    /// Most bytes of script text kept.
    bytes_max: usize,
}

struct Inner {
    scripts: LruCache<ScriptHash, Arc<str>>,
    /// Sum of the lengths of the texts in `scripts`.
    bytes: usize,
}

impl ScriptCache {
    pub(crate) fn new(scripts_max: NonZeroUsize, bytes_max: usize) -> Self {
        Self { inner: Mutex::new(Inner { scripts: LruCache::new(scripts_max), bytes: 0 }), bytes_max }
    }

    /// Keeps `text` under `hash` (its SHA-256) and returns the shared copy.
    pub(crate) fn insert(&self, hash: ScriptHash, text: &str) -> Arc<str> {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(existing) = inner.scripts.get(&hash) {
            return existing.clone();
        }
        let text: Arc<str> = Arc::from(text);
        inner.bytes += text.len();
        if let Some((_, evicted)) = inner.scripts.push(hash, text.clone()) {
            inner.bytes -= evicted.len();
        }
        // Evict down to the byte budget, never the script just inserted.
        while inner.bytes > self.bytes_max && inner.scripts.len() > 1 {
            match inner.scripts.pop_lru() {
                Some((_, evicted)) => inner.bytes -= evicted.len(),
                None => break,
            }
        }
        debug_assert_eq!(inner.bytes, inner.scripts.iter().map(|(_, t)| t.len()).sum::<usize>());
        text
    }

    /// The text cached under `hash`, marking it recently used.
    pub(crate) fn get(&self, hash: &ScriptHash) -> Option<Arc<str>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner).scripts.get(hash).cloned()
    }

    /// Number of scripts cached.
    pub(crate) fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner).scripts.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_round_trips_through_hex() {
        let h = ScriptHash::of("return 1");
        let hex = h.to_string();
        assert_eq!(hex.len(), 64);
        assert_eq!(hex.parse::<ScriptHash>().unwrap(), h);
        assert_eq!(hex.to_uppercase().parse::<ScriptHash>().unwrap(), h);
        assert!("abc".parse::<ScriptHash>().is_err());
        assert!("zz".repeat(32).parse::<ScriptHash>().is_err());
        // The SHA-256 of the empty string, a published value.
        assert_eq!(ScriptHash::of("").to_string(), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }

    #[test]
    fn evicts_by_count_and_by_bytes() {
        let cache = ScriptCache::new(NonZeroUsize::new(2).unwrap(), 10);
        let (a, b, c) = (ScriptHash::of("aaa"), ScriptHash::of("bbb"), ScriptHash::of("ccc"));
        cache.insert(a, "aaa");
        cache.insert(b, "bbb");
        assert!(cache.get(&a).is_some()); // a is now more recent than b
        cache.insert(c, "ccc");
        assert!(cache.get(&b).is_none(), "count limit evicts the least recently used");
        assert_eq!(cache.len(), 2);
        let big = ScriptHash::of("0123456789");
        cache.insert(big, "0123456789");
        assert_eq!(cache.len(), 1, "byte limit evicts all older scripts");
        assert!(cache.get(&big).is_some());
    }
}
