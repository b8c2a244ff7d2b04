//! Clusters where one node's wall clock is skewed with libfaketime (`LD_PRELOAD`).
//!
//! The skewed node runs `kahuna serve` with `FAKETIME=<offset>` (for example `+120s`)
//! and `DONT_FAKE_MONOTONIC=1`, so only `CLOCK_REALTIME` (what the HLC reads) moves;
//! tokio's timers keep the real monotonic clock. The other nodes run unchanged, all
//! through the shared harness ([`Cluster::start_with_env`]).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use crate::common::Cluster;

/// Set to `1` to turn a skip (libfaketime missing) into a failure.
pub const REQUIRED_ENV: &str = "KAHUNA_FAULTS_REQUIRED";
/// Overrides where libfaketime is looked for.
pub const LIBFAKETIME_ENV: &str = "KAHUNA_LIBFAKETIME";

/// The libfaketime shared object, or `None` when it is not installed.
///
/// Looks at `$KAHUNA_LIBFAKETIME`, then `faketime/libfaketime.so.1` under the usual
/// library directories (any multiarch triplet), then the multithreaded variant.
pub fn libfaketime() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(LIBFAKETIME_ENV) {
        let path = PathBuf::from(path);
        return path.is_file().then_some(path);
    }
    let mut dirs: Vec<PathBuf> = Vec::new();
    for root in ["/usr/lib", "/usr/local/lib", "/lib", "/usr/lib64", "/lib64"] {
        dirs.push(Path::new(root).join("faketime"));
        // Multiarch: /usr/lib/x86_64-linux-gnu/faketime, /usr/lib/aarch64-linux-gnu/faketime, ...
        if let Ok(entries) = std::fs::read_dir(root) {
            let mut triplets: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.ends_with("-linux-gnu")))
                .collect();
            triplets.sort();
            dirs.extend(triplets.into_iter().map(|t| t.join("faketime")));
        }
    }
    for name in ["libfaketime.so.1", "libfaketimeMT.so.1"] {
        if let Some(found) = dirs.iter().map(|d| d.join(name)).find(|p| p.is_file()) {
            return Some(found);
        }
    }
    None
}

/// libfaketime's path, or `None` after printing `SKIPPED ...` when it is missing. Panics
/// instead when `KAHUNA_FAULTS_REQUIRED=1`. Never installs anything.
pub fn libfaketime_or_skip(test: &str) -> Option<PathBuf> {
    if let Some(path) = libfaketime() {
        return Some(path);
    }
    let reason = "libfaketime not installed (apt-get install faketime)";
    assert!(std::env::var(REQUIRED_ENV).as_deref() != Ok("1"), "{test}: cannot run ({REQUIRED_ENV}=1): {reason}");
    eprintln!("SKIPPED: {reason}");
    None
}

/// Starts `n` nodes on loopback with node `skewed` under libfaketime at `faketime`
/// (for example `+120s`).
pub async fn start(n: usize, partitions: u32, skewed: u64, faketime: &str, libfaketime: &Path) -> Cluster {
    Cluster::start_with_env(n, partitions, &[], |id| {
        if id != skewed {
            return Vec::new();
        }
        vec![
            ("LD_PRELOAD".to_owned(), libfaketime.display().to_string()),
            ("FAKETIME".to_owned(), faketime.to_owned()),
            ("DONT_FAKE_MONOTONIC".to_owned(), "1".to_owned()),
        ]
    })
    .await
}
