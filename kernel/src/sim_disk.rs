//! A simulated disk for deterministic simulation: in-memory files that keep what was
//! synced apart from what was only written, so that a simulated crash loses exactly what
//! a power cut may lose.
//!
//! A [`SimDisk`] outlives the nodes opened on it: the simulator keeps it across a crash
//! and a restart, as a machine keeps its disk. [`SimDisk::crash`] reverts every file to
//! its last `sync_data` (and [`SimDisk::crash_keeping`] lets chosen unsynced pages
//! survive, as an OS may have written some of its dirty pages back before the cut).
//!
//! Invariant: after a crash, the databases opened before it never touch the files again
//! (their backends are fenced by the disk's generation), so whatever the dying node does
//! while it is torn down cannot leak into what the restarted node reads.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

/// The unit in which unsynced writes survive or are lost at a crash.
pub const SIM_PAGE_BYTES: u64 = 4096;

/// A simulated disk, shared by clones. See the module docs.
#[derive(Clone, Default)]
pub struct SimDisk {
    inner: Arc<Mutex<DiskState>>,
}

#[derive(Default)]
struct DiskState {
    /// Bumped at every crash; backends of an older generation are fenced off.
    generation: u64,
    files: BTreeMap<String, SimFile>,
}

#[derive(Default)]
struct SimFile {
    /// What reads see: every write, synced or not.
    current: Vec<u8>,
    /// What survives a crash: the file as of its last sync.
    synced: Vec<u8>,
    /// Pages written, or zeroed by a length change, since the last sync.
    dirty: BTreeSet<u64>,
}

impl std::fmt::Debug for SimDisk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state();
        f.debug_struct("SimDisk").field("generation", &state.generation).field("files", &state.files.len()).finish()
    }
}

impl SimDisk {
    /// An empty disk.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, DiskState> {
        // Every critical section leaves the files consistent before anything can panic.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Loses every write not synced yet and fences off the databases opened so far.
    pub fn crash(&self) {
        self.crash_keeping(|_, _| false);
    }

    /// As [`SimDisk::crash`], except that each unsynced page for which `keep(file, page)`
    /// answers true reached the disk before the cut (pages are [`SIM_PAGE_BYTES`] long;
    /// a kept page past a file's synced length extends it).
    pub fn crash_keeping(&self, mut keep: impl FnMut(&str, u64) -> bool) {
        let mut state = self.state();
        state.generation += 1;
        for (name, file) in &mut state.files {
            let dirty = std::mem::take(&mut file.dirty);
            for page in dirty {
                if keep(name, page) {
                    file.copy_page_to_synced(page);
                }
            }
            file.current.clone_from(&file.synced);
        }
    }

    /// Bytes written to `file` and not synced yet, rounded to pages.
    pub fn unsynced_bytes(&self, file: &str) -> u64 {
        self.state().files.get(file).map_or(0, |f| f.dirty.len() as u64 * SIM_PAGE_BYTES)
    }

    /// The names of the files on the disk.
    pub fn files(&self) -> Vec<String> {
        self.state().files.keys().cloned().collect()
    }

    /// Removes `file`; the removal survives a crash at once (a real directory is fsynced
    /// after a removal).
    pub(crate) fn remove(&self, file: &str) {
        self.state().files.remove(file);
    }

    /// A redb backend for `file`, valid until the next crash.
    pub(crate) fn backend(&self, file: &str) -> SimFileBackend {
        let mut state = self.state();
        state.files.entry(file.to_owned()).or_default();
        SimFileBackend { disk: self.clone(), file: file.to_owned(), generation: state.generation }
    }
}

impl SimFile {
    fn pages(start: u64, end: u64) -> std::ops::Range<u64> {
        start / SIM_PAGE_BYTES..end.div_ceil(SIM_PAGE_BYTES)
    }

    fn copy_page_to_synced(&mut self, page: u64) {
        let start = (page * SIM_PAGE_BYTES) as usize;
        let end = (start + SIM_PAGE_BYTES as usize).min(self.current.len());
        if start >= end {
            return;
        }
        if self.synced.len() < end {
            self.synced.resize(end, 0);
        }
        self.synced[start..end].copy_from_slice(&self.current[start..end]);
    }

    fn sync(&mut self) {
        self.synced.resize(self.current.len(), 0);
        for page in std::mem::take(&mut self.dirty) {
            self.copy_page_to_synced(page);
        }
    }
}

/// One file of a [`SimDisk`], as redb sees it.
#[derive(Debug)]
pub(crate) struct SimFileBackend {
    disk: SimDisk,
    file: String,
    generation: u64,
}

impl SimFileBackend {
    fn with_file<T>(&self, f: impl FnOnce(&mut SimFile) -> io::Result<T>) -> io::Result<T> {
        let mut state = self.disk.state();
        if state.generation != self.generation {
            return Err(io::Error::other("the simulated disk crashed since this file was opened"));
        }
        let file = state.files.get_mut(&self.file).ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        f(file)
    }
}

fn offset_range(offset: u64, len: usize, file_len: usize) -> io::Result<std::ops::Range<usize>> {
    let start = usize::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let end = start.checked_add(len).ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    if end > file_len {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("{end} is past the end ({file_len})")));
    }
    Ok(start..end)
}

impl redb::StorageBackend for SimFileBackend {
    fn len(&self) -> io::Result<u64> {
        self.with_file(|f| Ok(f.current.len() as u64))
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        self.with_file(|f| {
            let range = offset_range(offset, out.len(), f.current.len())?;
            out.copy_from_slice(&f.current[range]);
            Ok(())
        })
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.with_file(|f| {
            let new = usize::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
            let old = f.current.len();
            f.current.resize(new, 0);
            f.dirty.extend(SimFile::pages(old.min(new) as u64, old.max(new) as u64));
            Ok(())
        })
    }

    fn sync_data(&self) -> io::Result<()> {
        self.with_file(|f| {
            f.sync();
            Ok(())
        })
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.with_file(|f| {
            let start = usize::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
            let end = start + data.len();
            if f.current.len() < end {
                f.current.resize(end, 0);
            }
            f.current[start..end].copy_from_slice(data);
            f.dirty.extend(SimFile::pages(offset, end as u64));
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::{ReadableDatabase, StorageBackend, TableDefinition};

    const TABLE: TableDefinition<u64, u64> = TableDefinition::new("t");

    #[test]
    fn a_crash_loses_what_was_not_synced() -> io::Result<()> {
        let disk = SimDisk::new();
        let file = disk.backend("f");
        file.write(0, b"synced")?;
        file.sync_data()?;
        file.write(0, b"SYNCED and more")?;
        assert_eq!(disk.unsynced_bytes("f"), SIM_PAGE_BYTES);
        disk.crash();
        assert!(file.len().is_err(), "a backend from before the crash is fenced off");
        let file = disk.backend("f");
        let mut out = vec![0; file.len()? as usize];
        file.read(0, &mut out)?;
        assert_eq!(out, b"synced");
        Ok(())
    }

    #[test]
    fn kept_pages_survive_a_crash() -> io::Result<()> {
        let disk = SimDisk::new();
        let file = disk.backend("f");
        file.write(0, &[1; 2 * SIM_PAGE_BYTES as usize])?;
        disk.crash_keeping(|_, page| page == 1);
        let file = disk.backend("f");
        let mut out = vec![0; file.len()? as usize];
        file.read(0, &mut out)?;
        assert_eq!(out.len(), 2 * SIM_PAGE_BYTES as usize);
        assert!(out[..SIM_PAGE_BYTES as usize].iter().all(|b| *b == 0));
        assert!(out[SIM_PAGE_BYTES as usize..].iter().all(|b| *b == 1));
        Ok(())
    }

    #[test]
    fn redb_keeps_durable_commits_and_drops_the_rest() -> Result<(), redb::Error> {
        let disk = SimDisk::new();
        let db = redb::Builder::new().create_with_backend(disk.backend("db"))?;
        let txn = db.begin_write()?;
        txn.open_table(TABLE)?.insert(1, 1)?;
        txn.commit()?;
        let mut txn = db.begin_write()?;
        txn.set_durability(redb::Durability::None).expect("a non-durable commit is allowed");
        txn.open_table(TABLE)?.insert(2, 2)?;
        txn.commit()?;
        disk.crash();
        drop(db);
        let db = redb::Builder::new().create_with_backend(disk.backend("db"))?;
        let txn = db.begin_read()?;
        let table = txn.open_table(TABLE)?;
        assert_eq!(table.get(1)?.map(|v| v.value()), Some(1));
        assert_eq!(table.get(2)?.map(|v| v.value()), None);
        Ok(())
    }
}
