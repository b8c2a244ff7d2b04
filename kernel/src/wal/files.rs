//! Where the log's segment files live: a real directory, or a simulated disk.
//!
//! The log needs little of a file: positioned reads and writes, a length, `fdatasync`;
//! and of the directory: list, create, remove. A real directory also fsyncs itself
//! after a create or remove, so a segment's existence is as durable as its contents.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

use redb::StorageBackend;

use crate::sim_disk::{SimDisk, SimFileBackend};

/// One segment file.
pub(crate) trait LogFile: Send + Sync {
    fn len(&self) -> io::Result<u64>;
    fn read_at(&self, offset: u64, out: &mut [u8]) -> io::Result<()>;
    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()>;
    fn set_len(&self, len: u64) -> io::Result<()>;
    fn sync(&self) -> io::Result<()>;
}

/// The directory holding the segments.
pub(crate) enum LogDir {
    Directory(PathBuf),
    Simulated(SimDisk),
}

impl LogDir {
    /// The names of the files in the directory.
    pub(crate) fn list(&self) -> io::Result<Vec<String>> {
        match self {
            Self::Directory(dir) => {
                let mut names = Vec::new();
                for entry in std::fs::read_dir(dir)? {
                    if let Some(name) = entry?.file_name().to_str() {
                        names.push(name.to_owned());
                    }
                }
                Ok(names)
            }
            Self::Simulated(disk) => Ok(disk.files()),
        }
    }

    /// Opens `name`, creating it (empty) when `create` is set and it does not exist.
    pub(crate) fn open(&self, name: &str, create: bool) -> io::Result<Arc<dyn LogFile>> {
        match self {
            Self::Directory(dir) => {
                let path = dir.join(name);
                let existed = path.exists();
                let file = OpenOptions::new().read(true).write(true).create(create).truncate(false).open(&path)?;
                if !existed {
                    self.sync_dir()?;
                }
                Ok(Arc::new(RealFile(file)))
            }
            Self::Simulated(disk) => Ok(Arc::new(disk.backend(name))),
        }
    }

    /// Removes `name` durably.
    pub(crate) fn remove(&self, name: &str) -> io::Result<()> {
        match self {
            Self::Directory(dir) => {
                std::fs::remove_file(dir.join(name))?;
                self.sync_dir()
            }
            Self::Simulated(disk) => {
                disk.remove(name);
                Ok(())
            }
        }
    }

    fn sync_dir(&self) -> io::Result<()> {
        match self {
            Self::Directory(dir) => File::open(dir)?.sync_all(),
            Self::Simulated(_) => Ok(()),
        }
    }
}

struct RealFile(File);

impl LogFile for RealFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }

    fn read_at(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        self.0.read_exact_at(out, offset)
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.0.write_all_at(data, offset)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    fn sync(&self) -> io::Result<()> {
        self.0.sync_data()
    }
}

impl LogFile for SimFileBackend {
    fn len(&self) -> io::Result<u64> {
        StorageBackend::len(self)
    }

    fn read_at(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        StorageBackend::read(self, offset, out)
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        StorageBackend::write(self, offset, data)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        StorageBackend::set_len(self, len)
    }

    fn sync(&self) -> io::Result<()> {
        StorageBackend::sync_data(self)
    }
}
