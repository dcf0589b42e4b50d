//! The I/O seam: every file-system call runnel makes goes through these traits, so the reliability
//! harness can substitute a file system that loses unsynced writes or fails on demand.
//!
//! [`OsFs`] is the real implementation and the only one compiled into ordinary builds.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use memmap2::{Advice, MmapOptions, MmapRaw};

/// One entry of a directory listing.
#[derive(Clone, Debug)]
pub struct DirEntry {
    /// The entry's name.
    pub name: OsString,
    /// A directory (and not a symbolic link to one).
    pub is_dir: bool,
    /// A regular file (and not a symbolic link to one).
    pub is_file: bool,
}

/// How to open a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    /// Read only; the file must exist.
    Read,
    /// Read and write; the file must exist.
    Write,
    /// Read and write; created when missing.
    Create,
    /// Read and write; must not exist yet.
    CreateNew,
}

/// A file system: the directory operations runnel needs.
pub trait Vfs: Send + Sync + 'static {
    /// Opens a file. Symbolic links are not followed.
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn VFile>>;
    /// Creates a directory; succeeds when it already exists as a directory.
    fn create_dir(&self, path: &Path) -> io::Result<()>;
    /// Lists a directory (without "." and "..").
    fn read_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>>;
    /// Renames a file or directory atomically, replacing the target.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Removes a directory and everything in it.
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Makes a directory's entries durable (fsync on the directory).
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// Whether a path exists (without following a final symbolic link).
    fn exists(&self, path: &Path) -> bool;
    /// Whether a path is a directory itself (a symbolic link to one is not).
    fn is_dir(&self, path: &Path) -> bool;
}

/// An open file.
#[allow(clippy::len_without_is_empty, reason = "a file's emptiness is not a question runnel asks")]
pub trait VFile: Send + Sync {
    /// Current size in bytes.
    fn len(&self) -> io::Result<u64>;
    /// Reads exactly `buf.len()` bytes at `pos`.
    fn read_exact_at(&self, buf: &mut [u8], pos: u64) -> io::Result<()>;
    /// Writes all of `buf` at `pos`.
    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()>;
    /// Truncates or extends (with zeros, sparsely) to `len`.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Reserves disk blocks for `[0, len)`, extending the size to at least `len`, so that later
    /// writes through a mapping cannot fail for lack of space.
    fn allocate(&self, len: u64) -> io::Result<()>;
    /// Makes written data durable (fdatasync).
    fn sync_data(&self) -> io::Result<()>;
    /// Maps `len` bytes from the start of the file (shared, so writes reach the page cache).
    /// `len` may exceed the file's size; only bytes below the size may be touched.
    fn map(&self, len: usize, writable: bool) -> io::Result<Box<dyn Mapping>>;
    /// Takes the exclusive advisory lock on this file, without waiting. `Ok(false)` when held elsewhere.
    fn try_lock(&self) -> io::Result<bool>;
    /// The descriptor, for sendfile(2); `None` for files that are not backed by the OS.
    fn fd(&self) -> Option<BorrowedFd<'_>>;
}

/// A memory mapping of a file. The storage layer reads committed ranges through `as_ptr` and the
/// writer copies new bytes in with `write`.
#[allow(clippy::len_without_is_empty, reason = "a mapping is never empty")]
pub trait Mapping: Send + Sync {
    /// Start of the mapping. Valid for `len()` bytes for as long as the mapping lives.
    fn as_ptr(&self) -> *const u8;
    /// Length of the mapping.
    fn len(&self) -> usize;
    /// Copies `data` to `[pos, pos + data.len())`. Panics if out of bounds or read-only: the caller
    /// (the segment) checks both, so this is a bug, never input.
    fn write(&self, pos: usize, data: &[u8]);
    /// Pre-faults `[pos, pos + len)` for writing, so that appends do not take a page fault each.
    /// Advisory: failure is ignored.
    fn prefault(&self, pos: usize, len: usize);
}

/// The operating system's file system.
#[derive(Clone, Copy, Debug, Default)]
pub struct OsFs;

struct OsFile {
    file: File,
}

struct OsMapping {
    map: MmapRaw,
    writable: bool,
}

impl Vfs for OsFs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn VFile>> {
        use std::os::unix::fs::OpenOptionsExt;
        let mut o = OpenOptions::new();
        o.read(true).custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32);
        match mode {
            OpenMode::Read => {}
            OpenMode::Write => {
                o.write(true);
            }
            OpenMode::Create => {
                o.write(true).create(true);
            }
            OpenMode::CreateNew => {
                o.write(true).create_new(true);
            }
        }
        let file = o.open(path)?;
        if !file.metadata()?.is_file() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"));
        }
        Ok(Arc::new(OsFile { file }))
    }

    fn create_dir(&self, path: &Path) -> io::Result<()> {
        match std::fs::create_dir(path) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                if std::fs::symlink_metadata(path)?.is_dir() {
                    Ok(())
                } else {
                    Err(io::Error::new(io::ErrorKind::AlreadyExists, "exists and is not a directory"))
                }
            }
            other => other,
        }
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(path)? {
            let e = e?;
            let t = e.file_type()?;
            out.push(DirEntry { name: e.file_name(), is_dir: t.is_dir(), is_file: t.is_file() });
        }
        Ok(out)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir_all(path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }

    fn exists(&self, path: &Path) -> bool {
        std::fs::symlink_metadata(path).is_ok()
    }

    fn is_dir(&self, path: &Path) -> bool {
        std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir())
    }
}

impl VFile for OsFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn read_exact_at(&self, buf: &mut [u8], pos: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, pos)
    }

    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        self.file.write_all_at(buf, pos)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    fn allocate(&self, len: u64) -> io::Result<()> {
        let cur = self.len()?;
        if len <= cur {
            return Ok(());
        }
        match rustix::fs::fallocate(&self.file, rustix::fs::FallocateFlags::empty(), cur, len - cur) {
            Ok(()) => Ok(()),
            Err(e) if e == rustix::io::Errno::OPNOTSUPP || e == rustix::io::Errno::NOSYS => {
                // No fallocate here: write real zeros so that the blocks exist.
                let zeros = vec![0u8; 1 << 16];
                let mut pos = cur;
                while pos < len {
                    let n = (len - pos).min(zeros.len() as u64) as usize;
                    self.file.write_all_at(&zeros[..n], pos)?;
                    pos += n as u64;
                }
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    fn sync_data(&self) -> io::Result<()> {
        rustix::fs::fdatasync(&self.file).map_err(io::Error::from)
    }

    fn map(&self, len: usize, writable: bool) -> io::Result<Box<dyn Mapping>> {
        let mut o = MmapOptions::new();
        o.len(len);
        let map = if writable { o.map_raw(&self.file)? } else { o.map_raw_read_only(&self.file)? };
        Ok(Box::new(OsMapping { map, writable }))
    }

    fn try_lock(&self) -> io::Result<bool> {
        match self.file.try_lock() {
            Ok(()) => Ok(true),
            Err(std::fs::TryLockError::WouldBlock) => Ok(false),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }

    fn fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.file.as_fd())
    }
}

impl Mapping for OsMapping {
    fn as_ptr(&self) -> *const u8 {
        self.map.as_ptr()
    }

    fn len(&self) -> usize {
        self.map.len()
    }

    #[expect(unsafe_code, reason = "copying into a shared file mapping")]
    fn write(&self, pos: usize, data: &[u8]) {
        assert!(self.writable, "write to a read-only mapping");
        let end = pos.checked_add(data.len()).expect("write range overflows");
        assert!(end <= self.map.len(), "write past the end of the mapping");
        // SAFETY: the range is inside the mapping (checked above), which lives as long as `self`.
        // The segment writes only at or beyond its write position, while readers borrow only bytes
        // below the published visible size, which never exceeds the write position, so no `&[u8]`
        // overlaps these bytes. The file was allocated up to at least `end` before this call
        // (Segment::reserve), so the pages exist and the copy cannot raise SIGBUS for lack of space.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.map.as_mut_ptr().add(pos), data.len()) }
    }

    fn prefault(&self, pos: usize, len: usize) {
        if self.writable {
            let _ = self.map.advise_range(Advice::PopulateWrite, pos, len);
        }
    }
}
