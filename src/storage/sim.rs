//! A simulated file system for the reliability harness (feature `fault-injection`): it keeps what
//! was written apart from what was made durable, can "lose power" (keep only durable state plus a
//! random, possibly torn and reordered, subset of what was not), and can fail any operation on
//! demand. Not compiled into ordinary builds.
//!
//! The crash model:
//! - File data: each write since the file's last `sync_data` survives whole, not at all, or torn
//!   (a prefix of it, cut at a 512-byte sector or at any byte), independently of the others, so
//!   unsynced writes can also be reordered. A size change since the last sync survives or not.
//! - Directories: entry changes (create, mkdir, rename, unlink) form one ordered log, as a
//!   journalling file system commits metadata. A crash keeps a random prefix of it that includes at
//!   least every change to a directory that was fsync'd afterwards.
//! - Mappings see the file's live bytes; writes through them count as unsynced writes.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::io;
use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::vfs::{DirEntry, Mapping, OpenMode, VFile, Vfs};

/// Kinds of operation a fault can target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// Opening or creating a file.
    Open,
    /// `write_all_at` or a write through a mapping (a mapping write cannot fail; it is only counted).
    Write,
    /// `sync_data` and `sync_dir`.
    Sync,
    /// `allocate` (fallocate).
    Allocate,
    /// `set_len`.
    SetLen,
    /// `rename`.
    Rename,
    /// `remove_file` and `remove_dir_all`.
    Remove,
    /// `create_dir`.
    Mkdir,
    /// `map`.
    Mmap,
    /// `read_dir`, `read_exact_at`, `len`.
    Read,
}

/// A planned failure: the `nth` (0-based) operation among `ops` fails with `errno`; with
/// `persistent`, every matching operation after it fails too.
#[derive(Clone, Debug)]
pub struct Fault {
    /// Which operations count.
    pub ops: Vec<Op>,
    /// How many matching operations succeed before the failure.
    pub nth: u64,
    /// The error number (`libc::EIO`, `ENOSPC`, `EINTR`, ...).
    pub errno: i32,
    /// Whether the failure repeats for every later matching operation.
    pub persistent: bool,
}

const SECTOR: usize = 512;

struct Buf {
    ptr: *mut u8,
    cap: usize,
}

// SAFETY: `Buf` owns its allocation; access is coordinated by `Inode::meta` for the file API and by
// the storage layer's visible/write-position discipline for mappings, exactly as for a real mmap.
#[expect(unsafe_code, reason = "a heap buffer shared like a file mapping")]
unsafe impl Send for Buf {}
// SAFETY: as above.
#[expect(unsafe_code, reason = "a heap buffer shared like a file mapping")]
unsafe impl Sync for Buf {}

impl Buf {
    fn new(cap: usize) -> Buf {
        let b: Box<[u8]> = vec![0u8; cap].into_boxed_slice();
        Buf { ptr: Box::into_raw(b).cast::<u8>(), cap }
    }

    #[expect(unsafe_code, reason = "copying into a buffer that mappings point into")]
    fn write(&self, pos: usize, data: &[u8]) {
        assert!(pos.checked_add(data.len()).is_some_and(|e| e <= self.cap), "write beyond the buffer");
        // SAFETY: in bounds (checked); the storage layer never writes bytes a reader borrows.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.add(pos), data.len()) }
    }

    #[expect(unsafe_code, reason = "copying out of a buffer that mappings point into")]
    fn read(&self, pos: usize, out: &mut [u8]) {
        assert!(pos.checked_add(out.len()).is_some_and(|e| e <= self.cap), "read beyond the buffer");
        // SAFETY: in bounds (checked); `out` is a distinct allocation.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr.add(pos), out.as_mut_ptr(), out.len()) }
    }

    fn zero(&self, from: usize, to: usize) {
        if to > from {
            self.write(from, &vec![0u8; to - from]);
        }
    }
}

impl Drop for Buf {
    #[expect(unsafe_code, reason = "freeing the buffer made in Buf::new")]
    fn drop(&mut self) {
        // SAFETY: `ptr` came from `Box::into_raw` of a `[u8]` of length `cap`, and every mapping
        // holds an `Arc<Inode>` owning this `Buf`, so no one points into it any more.
        drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(self.ptr, self.cap)) });
    }
}

#[derive(Clone, Debug)]
enum Pending {
    Write(usize, Vec<u8>),
    SetLen(usize),
}

struct Meta {
    len: usize,
    durable: Vec<u8>,
    pending: Vec<Pending>,
    locked: bool,
}

struct Inode {
    buf: Buf,
    meta: Mutex<Meta>,
}

impl Inode {
    fn new(cap: usize, content: &[u8]) -> Arc<Inode> {
        let buf = Buf::new(cap);
        buf.write(0, content);
        Arc::new(Inode {
            buf,
            meta: Mutex::new(Meta { len: content.len(), durable: content.to_vec(), pending: Vec::new(), locked: false }),
        })
    }

    fn meta(&self) -> MutexGuard<'_, Meta> {
        self.meta.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn live(&self) -> Vec<u8> {
        let m = self.meta();
        let mut out = vec![0u8; m.len];
        self.buf.read(0, &mut out);
        out
    }
}

#[derive(Clone)]
enum Node {
    Dir,
    File(Arc<Inode>),
}

#[derive(Clone)]
enum DirOp {
    Create(PathBuf, Arc<Inode>),
    Mkdir(PathBuf),
    Remove(PathBuf),
    Rename(PathBuf, PathBuf),
}

impl DirOp {
    fn touches(&self, dir: &Path) -> bool {
        let parent = |p: &Path| p.parent() == Some(dir);
        match self {
            DirOp::Create(p, _) | DirOp::Mkdir(p) | DirOp::Remove(p) => parent(p),
            DirOp::Rename(a, b) => parent(a) || parent(b),
        }
    }
}

type Tree = BTreeMap<PathBuf, Node>;

fn apply(tree: &mut Tree, op: &DirOp) {
    match op {
        DirOp::Create(p, inode) => {
            tree.insert(p.clone(), Node::File(inode.clone()));
        }
        DirOp::Mkdir(p) => {
            tree.insert(p.clone(), Node::Dir);
        }
        DirOp::Remove(p) => {
            let gone: Vec<PathBuf> = tree.keys().filter(|k| k.starts_with(p)).cloned().collect();
            for k in gone {
                tree.remove(&k);
            }
        }
        DirOp::Rename(from, to) => {
            let moved: Vec<(PathBuf, Node)> =
                tree.iter().filter(|(k, _)| k.starts_with(from)).map(|(k, v)| (k.clone(), v.clone())).collect();
            let replaced: Vec<PathBuf> = tree.keys().filter(|k| k.starts_with(to)).cloned().collect();
            for k in replaced {
                tree.remove(&k);
            }
            for (k, v) in moved {
                tree.remove(&k);
                let rest = k.strip_prefix(from).map(Path::to_path_buf).unwrap_or_default();
                tree.insert(if rest.as_os_str().is_empty() { to.clone() } else { to.join(rest) }, v);
            }
        }
    }
}

struct State {
    generation: u64,
    dead: bool,
    live: Tree,
    base: Tree,
    log: Vec<DirOp>,
    durable_upto: usize,
    file_cap: usize,
    rng: u64,
    ops: u64,
    crash_at: Option<u64>,
    fault: Option<(Fault, u64)>,
    faults_injected: u64,
}

impl State {
    fn rand(&mut self, n: u64) -> u64 {
        // xorshift64*: deterministic for a seed, good enough to pick fates.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1)
    }

    /// Counts an operation and decides whether it fails.
    fn check(&mut self, generation: u64, op: Op) -> io::Result<()> {
        if self.dead || generation != self.generation {
            return Err(io::Error::from_raw_os_error(5));
        }
        self.ops += 1;
        if self.crash_at.is_some_and(|n| self.ops >= n) {
            self.dead = true;
            return Err(io::Error::from_raw_os_error(5));
        }
        if let Some((fault, seen)) = &mut self.fault
            && fault.ops.contains(&op)
        {
            let n = *seen;
            *seen += 1;
            if n == fault.nth || (fault.persistent && n > fault.nth) {
                self.faults_injected += 1;
                return Err(io::Error::from_raw_os_error(fault.errno));
            }
        }
        Ok(())
    }

    fn log_op(&mut self, op: DirOp) {
        apply(&mut self.live, &op);
        self.log.push(op);
    }
}

/// The simulated file system. Clones share state.
#[derive(Clone)]
pub struct SimFs {
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for SimFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SimFs")
    }
}

impl SimFs {
    /// An empty file system whose random choices follow `seed`. Files hold at most `file_cap`
    /// bytes (configure topics so that a segment fits).
    pub fn new(seed: u64, file_cap: usize) -> SimFs {
        let mut live = Tree::new();
        live.insert(PathBuf::from("/"), Node::Dir);
        SimFs {
            state: Arc::new(Mutex::new(State {
                generation: 1,
                dead: false,
                base: live.clone(),
                live,
                log: Vec::new(),
                durable_upto: 0,
                file_cap,
                rng: seed | 1,
                ops: 0,
                crash_at: None,
                fault: None,
                faults_injected: 0,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A `Vfs` bound to the current generation: after a crash its operations fail with EIO.
    pub fn vfs(&self) -> Arc<dyn Vfs> {
        let generation = self.lock().generation;
        Arc::new(SimVfs { fs: self.clone(), generation })
    }

    /// Operations performed so far (across generations).
    pub fn ops(&self) -> u64 {
        self.lock().ops
    }

    /// Faults injected so far.
    pub fn faults_injected(&self) -> u64 {
        self.lock().faults_injected
    }

    /// The machine dies when the operation count reaches `n`: that operation and every later one
    /// fail with EIO and take no effect, until [`SimFs::power_loss`].
    pub fn crash_at(&self, n: u64) {
        self.lock().crash_at = Some(n);
    }

    /// Whether the machine has died (see [`SimFs::crash_at`]).
    pub fn is_dead(&self) -> bool {
        self.lock().dead
    }

    /// Plans a failure (replacing any earlier plan).
    pub fn inject(&self, fault: Fault) {
        self.lock().fault = Some((fault, 0));
    }

    /// How many operations the planned failure's kinds have matched so far (plan a failure with
    /// `nth: u64::MAX` to count them).
    pub fn matched(&self) -> u64 {
        self.lock().fault.as_ref().map_or(0, |(_, seen)| *seen)
    }

    /// Removes the planned failure.
    pub fn clear_faults(&self) {
        self.lock().fault = None;
    }

    /// Loses power: what was made durable survives; of the rest, a random subset (torn, reordered)
    /// does. Starts a new generation: handles from before fail with EIO.
    pub fn power_loss(&self) {
        let mut st = self.lock();
        let undecided = (st.log.len() - st.durable_upto + 1) as u64;
        let k = st.durable_upto + st.rand(undecided) as usize;
        let mut tree = st.base.clone();
        let log = std::mem::take(&mut st.log);
        for op in &log[..k] {
            apply(&mut tree, op);
        }
        let mut images: HashMap<*const Inode, Arc<Inode>> = HashMap::new();
        let cap = st.file_cap;
        let mut out = Tree::new();
        for (path, node) in tree {
            let node = match node {
                Node::Dir => Node::Dir,
                Node::File(inode) => {
                    let key = Arc::as_ptr(&inode);
                    if let Some(i) = images.get(&key) {
                        Node::File(i.clone())
                    } else {
                        let content = crash_image(&inode, &mut st);
                        let image = Inode::new(cap, &content);
                        images.insert(key, image.clone());
                        Node::File(image)
                    }
                }
            };
            out.insert(path, node);
        }
        st.base = out.clone();
        st.live = out;
        st.durable_upto = 0;
        st.generation += 1;
        st.dead = false;
        st.crash_at = None;
        st.fault = None;
    }

    /// Bytes a file holds now, if it exists (for tests that look inside).
    pub fn read(&self, path: &Path) -> Option<Vec<u8>> {
        match self.lock().live.get(path) {
            Some(Node::File(i)) => Some(i.live()),
            _ => None,
        }
    }

    /// Overwrites a file's bytes (live and durable), e.g. to damage it.
    pub fn write(&self, path: &Path, content: &[u8]) -> bool {
        let st = self.lock();
        let Some(Node::File(i)) = st.live.get(path) else { return false };
        let mut m = i.meta();
        i.buf.zero(0, m.len.max(content.len()));
        i.buf.write(0, content);
        m.len = content.len();
        m.durable = content.to_vec();
        m.pending.clear();
        true
    }

    /// Every path, for tests that look around.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.lock().live.keys().cloned().collect()
    }
}

fn crash_image(inode: &Inode, st: &mut State) -> Vec<u8> {
    let m = inode.meta();
    let mut image = m.durable.clone();
    for p in &m.pending {
        match p {
            Pending::SetLen(len) => {
                if st.rand(2) == 0 {
                    image.resize(*len, 0);
                }
            }
            Pending::Write(pos, data) => {
                let keep = match st.rand(10) {
                    0..=4 => data.len(),
                    5..=7 => 0,
                    8 => (st.rand(data.len() as u64 / SECTOR as u64 + 1) as usize * SECTOR).min(data.len()),
                    _ => st.rand(data.len() as u64 + 1) as usize,
                };
                if keep > 0 {
                    let end = pos + keep;
                    if image.len() < end {
                        image.resize(end, 0);
                    }
                    image[*pos..end].copy_from_slice(&data[..keep]);
                }
            }
        }
    }
    image
}

struct SimVfs {
    fs: SimFs,
    generation: u64,
}

struct SimFile {
    fs: SimFs,
    generation: u64,
    inode: Arc<Inode>,
    holds_lock: Mutex<bool>,
}

struct SimMapping {
    fs: SimFs,
    generation: u64,
    inode: Arc<Inode>,
    len: usize,
    writable: bool,
}

fn not_found() -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, "no such file or directory")
}

impl SimVfs {
    fn parent_is_dir(st: &State, path: &Path) -> bool {
        path.parent().is_some_and(|p| matches!(st.live.get(p), Some(Node::Dir)))
    }
}

impl Vfs for SimVfs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn VFile>> {
        let mut st = self.fs.lock();
        st.check(self.generation, Op::Open)?;
        let inode = match (st.live.get(path).cloned(), mode) {
            (Some(Node::Dir), _) => return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file")),
            (Some(Node::File(_)), OpenMode::CreateNew) => return Err(io::Error::from(io::ErrorKind::AlreadyExists)),
            (Some(Node::File(i)), _) => i,
            (None, OpenMode::Read | OpenMode::Write) => return Err(not_found()),
            (None, OpenMode::Create | OpenMode::CreateNew) => {
                if !Self::parent_is_dir(&st, path) {
                    return Err(not_found());
                }
                let i = Inode::new(st.file_cap, &[]);
                // A new file's (empty) content is durable: only its directory entry is not.
                st.log_op(DirOp::Create(path.to_path_buf(), i.clone()));
                i
            }
        };
        Ok(Arc::new(SimFile { fs: self.fs.clone(), generation: self.generation, inode, holds_lock: Mutex::new(false) }))
    }

    fn create_dir(&self, path: &Path) -> io::Result<()> {
        let mut st = self.fs.lock();
        st.check(self.generation, Op::Mkdir)?;
        match st.live.get(path) {
            Some(Node::Dir) => Ok(()),
            Some(Node::File(_)) => Err(io::Error::new(io::ErrorKind::AlreadyExists, "exists and is not a directory")),
            None if !Self::parent_is_dir(&st, path) => Err(not_found()),
            None => {
                st.log_op(DirOp::Mkdir(path.to_path_buf()));
                Ok(())
            }
        }
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        let mut st = self.fs.lock();
        st.check(self.generation, Op::Read)?;
        if !matches!(st.live.get(path), Some(Node::Dir)) {
            return Err(not_found());
        }
        Ok(st
            .live
            .iter()
            .filter(|(k, _)| k.parent() == Some(path))
            .filter_map(|(k, v)| {
                let name: OsString = k.file_name()?.to_os_string();
                Some(DirEntry { name, is_dir: matches!(v, Node::Dir), is_file: matches!(v, Node::File(_)) })
            })
            .collect())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.fs.lock();
        st.check(self.generation, Op::Rename)?;
        if !st.live.contains_key(from) {
            return Err(not_found());
        }
        if !Self::parent_is_dir(&st, to) {
            return Err(not_found());
        }
        st.log_op(DirOp::Rename(from.to_path_buf(), to.to_path_buf()));
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut st = self.fs.lock();
        st.check(self.generation, Op::Remove)?;
        match st.live.get(path) {
            Some(Node::File(_)) => {
                st.log_op(DirOp::Remove(path.to_path_buf()));
                Ok(())
            }
            Some(Node::Dir) => Err(io::Error::new(io::ErrorKind::InvalidInput, "is a directory")),
            None => Err(not_found()),
        }
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut st = self.fs.lock();
        st.check(self.generation, Op::Remove)?;
        if !st.live.contains_key(path) {
            return Err(not_found());
        }
        st.log_op(DirOp::Remove(path.to_path_buf()));
        Ok(())
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut st = self.fs.lock();
        st.check(self.generation, Op::Sync)?;
        if !matches!(st.live.get(path), Some(Node::Dir)) {
            return Err(not_found());
        }
        if let Some(i) = st.log.iter().rposition(|op| op.touches(path)) {
            st.durable_upto = st.durable_upto.max(i + 1);
        }
        Ok(())
    }

    fn exists(&self, path: &Path) -> bool {
        self.fs.lock().live.contains_key(path)
    }

    fn is_dir(&self, path: &Path) -> bool {
        matches!(self.fs.lock().live.get(path), Some(Node::Dir))
    }
}

impl SimFile {
    fn check(&self, op: Op) -> io::Result<()> {
        self.fs.lock().check(self.generation, op)
    }
}

impl VFile for SimFile {
    fn len(&self) -> io::Result<u64> {
        self.check(Op::Read)?;
        Ok(self.inode.meta().len as u64)
    }

    fn read_exact_at(&self, buf: &mut [u8], pos: u64) -> io::Result<()> {
        self.check(Op::Read)?;
        let m = self.inode.meta();
        let pos = usize::try_from(pos).map_err(|_| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        if pos.checked_add(buf.len()).is_none_or(|e| e > m.len) {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
        }
        self.inode.buf.read(pos, buf);
        Ok(())
    }

    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        self.check(Op::Write)?;
        let mut m = self.inode.meta();
        let pos = usize::try_from(pos).map_err(|_| io::Error::from_raw_os_error(27))?;
        let end = pos.checked_add(buf.len()).filter(|&e| e <= self.inode.buf.cap).ok_or_else(|| io::Error::from_raw_os_error(28))?;
        if pos > m.len {
            self.inode.buf.zero(m.len, pos);
        }
        self.inode.buf.write(pos, buf);
        m.len = m.len.max(end);
        m.pending.push(Pending::Write(pos, buf.to_vec()));
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.check(Op::SetLen)?;
        let mut m = self.inode.meta();
        let len = usize::try_from(len).ok().filter(|&l| l <= self.inode.buf.cap).ok_or_else(|| io::Error::from_raw_os_error(27))?;
        if len > m.len {
            self.inode.buf.zero(m.len, len);
        } else {
            self.inode.buf.zero(len, m.len);
        }
        m.len = len;
        m.pending.push(Pending::SetLen(len));
        Ok(())
    }

    fn allocate(&self, len: u64) -> io::Result<()> {
        self.check(Op::Allocate)?;
        let mut m = self.inode.meta();
        let len = usize::try_from(len).ok().filter(|&l| l <= self.inode.buf.cap).ok_or_else(|| io::Error::from_raw_os_error(28))?;
        if len > m.len {
            self.inode.buf.zero(m.len, len);
            m.len = len;
            m.pending.push(Pending::SetLen(len));
        }
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        self.check(Op::Sync)?;
        let mut m = self.inode.meta();
        let mut durable = vec![0u8; m.len];
        self.inode.buf.read(0, &mut durable);
        m.durable = durable;
        m.pending.clear();
        Ok(())
    }

    fn map(&self, len: usize, writable: bool) -> io::Result<Box<dyn Mapping>> {
        self.check(Op::Mmap)?;
        if len > self.inode.buf.cap {
            return Err(io::Error::from_raw_os_error(12));
        }
        Ok(Box::new(SimMapping { fs: self.fs.clone(), generation: self.generation, inode: self.inode.clone(), len, writable }))
    }

    fn try_lock(&self) -> io::Result<bool> {
        let mut m = self.inode.meta();
        if m.locked {
            return Ok(false);
        }
        m.locked = true;
        *self.holds_lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
        Ok(true)
    }

    fn fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }
}

impl Drop for SimFile {
    fn drop(&mut self) {
        if *self.holds_lock.lock().unwrap_or_else(|e| e.into_inner()) {
            self.inode.meta().locked = false;
        }
    }
}

impl Mapping for SimMapping {
    fn as_ptr(&self) -> *const u8 {
        self.inode.buf.ptr
    }

    fn len(&self) -> usize {
        self.len
    }

    fn write(&self, pos: usize, data: &[u8]) {
        assert!(self.writable, "write to a read-only mapping");
        assert!(pos + data.len() <= self.len, "write past the end of the mapping");
        let mut st = self.fs.lock();
        // A dead machine's stores go nowhere; they cannot fail, so they are only dropped.
        if st.check(self.generation, Op::Write).is_err() && (st.dead || st.generation != self.generation) {
            return;
        }
        drop(st);
        let mut m = self.inode.meta();
        self.inode.buf.write(pos, data);
        m.len = m.len.max(pos + data.len());
        m.pending.push(Pending::Write(pos, data.to_vec()));
    }

    fn prefault(&self, _pos: usize, _len: usize) {}
}
