//! Loading a partition from its directory: trusting a clean shutdown after a cheap check, and
//! otherwise verifying every batch from the recovery point on, cutting the log at the first torn
//! or corrupt batch and moving what was cut to the quarantine directory with a report.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::TopicConfig;
use crate::error::{Error, Result};
use crate::format::index;
use crate::format::scan::{self, Scan};
use crate::log::partition::{Loaded, now_ms};
use crate::log::producer_state;
use crate::storage::segment::{self, ActiveSegment, Segment, index_limit, parse_segment_file_name};
use crate::storage::vfs::{OpenMode, Vfs};

/// Everything needed to load one partition.
pub(crate) struct LoadContext<'a> {
    pub vfs: &'a Arc<dyn Vfs>,
    pub dir: Arc<Path>,
    pub topic: &'a str,
    pub partition: u32,
    pub config: &'a TopicConfig,
    /// Offsets below this were durable and verified at the last checkpoint.
    pub recovery_point: Option<u64>,
    /// The log was closed cleanly.
    pub clean: bool,
    pub quarantine_dir: &'a Path,
}

/// What recovery did to one partition.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Segments whose batches were verified.
    pub segments_verified: usize,
    /// Bytes cut from the end of the log and quarantined (not counting zero preallocation).
    pub bytes_quarantined: u64,
    /// Whole segments moved to quarantine because they followed a cut.
    pub segments_quarantined: usize,
}

struct OnDisk {
    base: u64,
    size: u64,
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |e| Error::io(op, path, e)
}

/// Loads (and if needed recovers) the partition in `ctx.dir`, creating its first segment when
/// the directory holds none.
pub(crate) fn load_partition(ctx: &LoadContext<'_>) -> Result<(Loaded, RecoveryReport)> {
    let vfs = ctx.vfs;
    let dir = &ctx.dir;
    let capacity = ctx.config.segment_capacity();
    let interval = ctx.config.index_interval_bytes;
    let mut report = RecoveryReport::default();

    let entries = vfs.read_dir(dir).map_err(io("read directory", dir))?;
    let mut logs = Vec::new();
    let mut index_files = Vec::new();
    for e in &entries {
        let Some(name) = e.name.to_str() else { continue };
        let Some((base, ext)) = parse_segment_file_name(name) else { continue };
        if !e.is_file {
            return Err(Error::corrupt(dir.join(name), 0, "a segment file that is not a regular file (a link or directory)"));
        }
        match ext {
            "log" => logs.push(base),
            "index" | "timeindex" => index_files.push((base, dir.join(name))),
            _ => {}
        }
    }
    logs.sort_unstable();
    // Indexes whose log is gone (retention interrupted between unlinks) are removed.
    for (base, path) in index_files {
        if logs.binary_search(&base).is_err() {
            let _ = vfs.remove_file(&path);
        }
    }
    if logs.is_empty() {
        let active = ActiveSegment::create(vfs.clone(), dir.clone(), 0, capacity, interval)?;
        vfs.sync_dir(dir).map_err(io("fsync", dir))?;
        let (producers, txn) = producer_state::recover(&**vfs, dir, &[], 0, interval)?;
        return Ok((Loaded { segments: vec![active.segment().clone()], active, producers, txn }, report));
    }
    let mut disk = Vec::with_capacity(logs.len());
    for &base in &logs {
        let path = dir.join(segment::log_file_name(base));
        let f = vfs.open(&path, OpenMode::Read).map_err(io("open", &path))?;
        disk.push(OnDisk { base, size: f.len().map_err(io("stat", &path))? });
    }

    let last = disk.len() - 1;
    let mut verify_from = if ctx.clean {
        disk.len()
    } else {
        match ctx.recovery_point {
            Some(rp) => disk.partition_point(|d| d.base <= rp).saturating_sub(1),
            None => 0,
        }
    };
    // A clean shutdown is trusted after a cheap check of the last segment's tail.
    let mut last_scan = None;
    if verify_from > last {
        match quick_tail_check(vfs, dir, &disk[last], interval, capacity) {
            Some(s) => last_scan = Some(s),
            None => {
                log::warn!("{}: the last segment does not end where a clean shutdown left it; verifying it", dir.display());
                verify_from = last;
            }
        }
    }

    // A sealed segment before the verified range is trusted only if its `.index` was written for
    // a log of exactly its size; otherwise (a crash while sealing, a damaged index) verify it too.
    let needs: Vec<bool> = (0..disk.len()).map(|i| i >= verify_from || (i < last && !index_matches(vfs, dir, &disk[i]))).collect();
    let mut cut_at: Option<usize> = None;
    let mut scans: Vec<Option<Scan>> = (0..disk.len()).map(|_| None).collect();
    for i in 0..disk.len() {
        if !needs[i] {
            continue;
        }
        let d = &disk[i];
        let path = dir.join(segment::log_file_name(d.base));
        let mut f = vfs.open(&path, OpenMode::Write).map_err(io("open", &path))?;
        let s = segment::scan_file(&f, d.size, d.base, interval, true).map_err(io("mmap", &path))?;
        report.segments_verified += 1;
        let continues = i == last || (s.stop.is_none() && s.next_offset == disk[i + 1].base);
        if s.valid_end < d.size {
            if !s.zero_tail {
                let reason = s.stop.clone().unwrap_or_else(|| "damaged tail".into());
                report.bytes_quarantined += d.size - s.valid_end;
                if d.size - s.valid_end > COPY_LIMIT {
                    // Too much to copy (perhaps a huge sparse file): move the whole file to
                    // quarantine and write its valid prefix back in its place.
                    f = quarantine_file_keep_prefix(ctx, &path, &f, d.base, s.valid_end, &reason)?;
                } else {
                    quarantine_tail(ctx, &path, d.base, s.valid_end, d.size, &reason)?;
                }
            }
            f.set_len(s.valid_end).map_err(io("truncate", &path))?;
        }
        f.sync_data().map_err(io("fdatasync", &path))?;
        disk[i].size = s.valid_end;
        scans[i] = Some(s);
        if !continues {
            cut_at = Some(i);
            break;
        }
    }
    if let Some(i) = cut_at {
        let reason = format!("follows a damaged segment that ends at offset {}", scans[i].as_ref().map_or(0, |s| s.next_offset));
        for d in disk.drain(i + 1..) {
            quarantine_segment(ctx, d.base, &reason)?;
            report.segments_quarantined += 1;
        }
        vfs.sync_dir(dir).map_err(io("fsync", dir))?;
        scans.truncate(i + 1);
    }
    if report.bytes_quarantined > 0 || report.segments_quarantined > 0 {
        log::warn!(
            "{}: recovery quarantined {} bytes and {} segments",
            dir.display(),
            report.bytes_quarantined,
            report.segments_quarantined
        );
    }

    let last = disk.len() - 1;
    let mut segments = Vec::with_capacity(disk.len());
    for (i, d) in disk.iter().enumerate() {
        let (next, max_ts) = if i < last {
            let next = disk[i + 1].base;
            let max_ts = match &scans[i] {
                Some(s) => s.max_timestamp,
                None => sealed_max_timestamp(vfs, dir, d, interval),
            };
            (next, max_ts)
        } else {
            let s = scans[i].as_ref().or(last_scan.as_ref());
            match s {
                Some(s) => (s.next_offset, s.max_timestamp),
                None => (d.base, i64::MIN),
            }
        };
        segments.push(Segment::loaded(vfs.clone(), dir.clone(), d.base, d.size, next, max_ts, i < last));
    }
    let rebuilt = scans.pop().flatten();
    let last_seg = segments[last].clone();
    let active = ActiveSegment::reopen(last_seg, capacity, interval, rebuilt)?;
    let (producers, txn) = producer_state::recover(&**vfs, dir, &segments, active.segment().next_offset(), interval)?;
    Ok((Loaded { segments, active, producers, txn }, report))
}

/// Checks that the last segment ends where a clean shutdown leaves it: the bytes after the last
/// index entry are complete batches ending exactly at the end of the file.
fn quick_tail_check(vfs: &Arc<dyn Vfs>, dir: &Path, d: &OnDisk, interval: u64, capacity: u64) -> Option<Scan> {
    let path = dir.join(segment::log_file_name(d.base));
    let f = vfs.open(&path, OpenMode::Read).ok()?;
    let read = |p: PathBuf| -> Option<Vec<u8>> {
        let f = vfs.open(&p, OpenMode::Read).ok()?;
        let len = usize::try_from(f.len().ok()?).ok()?;
        if len as u64 > index_limit(d.size) {
            return None;
        }
        let mut b = vec![0u8; len];
        f.read_exact_at(&mut b, 0).ok()?;
        Some(b)
    };
    let offsets = index::decode_offset_index(&read(dir.join(format!("{:020}.index", d.base)))?, d.base, d.size).ok()?;
    let (max_ts, _) = index::decode_time_index(&read(dir.join(format!("{:020}.timeindex", d.base)))?, d.base).ok()?;
    let (start, start_offset) = offsets.last().map_or((0, d.base), |e| (u64::from(e.position), d.base + u64::from(e.relative_offset)));
    // After a clean close the tail past the last index entry is at most an index interval and a
    // batch; anything longer is not what a clean close leaves, and is verified instead of read here.
    if d.size - start > interval.saturating_add(capacity) {
        return None;
    }
    let mut tail = vec![0u8; usize::try_from(d.size - start).ok()?];
    f.read_exact_at(&mut tail, start).ok()?;
    let s = scan::scan(&tail, start_offset, interval, true);
    if s.stop.is_some() || s.valid_end != tail.len() as u64 {
        return None;
    }
    // The tail scan's index entries are relative to the tail; the reopen reads the index files.
    Some(Scan::summary(d.size, s.next_offset, max_ts.max(s.max_timestamp)))
}

/// Whether the segment's `.index` header names this segment and its exact size.
fn index_matches(vfs: &Arc<dyn Vfs>, dir: &Path, d: &OnDisk) -> bool {
    let path = dir.join(format!("{:020}.index", d.base));
    let Ok(f) = vfs.open(&path, OpenMode::Read) else { return false };
    let mut h = [0u8; index::INDEX_HEADER_LEN];
    if f.read_exact_at(&mut h, 0).is_err() {
        return false;
    }
    h[0..4] == index::OFFSET_INDEX_MAGIC && h[8..16] == d.base.to_le_bytes() && h[16..24] == d.size.to_le_bytes()
}

/// The largest timestamp of the sealed segment at `base` of `size` bytes in `dir`.
pub(crate) fn sealed_segment_max_timestamp(vfs: &Arc<dyn Vfs>, dir: &Path, base: u64, size: u64, interval: u64) -> i64 {
    sealed_max_timestamp(vfs, dir, &OnDisk { base, size }, interval)
}

/// The largest timestamp of a sealed segment, from its time index or, failing that, a scan.
fn sealed_max_timestamp(vfs: &Arc<dyn Vfs>, dir: &Path, d: &OnDisk, interval: u64) -> i64 {
    let path = dir.join(format!("{:020}.timeindex", d.base));
    let from_index = vfs.open(&path, OpenMode::Read).ok().and_then(|f| {
        let len = usize::try_from(f.len().ok()?).ok()?;
        if len as u64 > index_limit(d.size) {
            return None;
        }
        let mut b = vec![0u8; len];
        f.read_exact_at(&mut b, 0).ok()?;
        index::decode_time_index(&b, d.base).ok().map(|(max, _)| max)
    });
    if let Some(ts) = from_index {
        return ts;
    }
    let log = dir.join(segment::log_file_name(d.base));
    let scanned = vfs.open(&log, OpenMode::Read).ok().and_then(|f| segment::scan_file(&f, d.size, d.base, interval, false).ok());
    let scanned = scanned.map(|s| s.max_timestamp);
    scanned.unwrap_or(i64::MIN)
}

/// `quarantine/<topic>-<partition>/`: one directory per partition keeps every file name short
/// even for a 249-character topic name.
fn quarantine_dir(ctx: &LoadContext<'_>) -> PathBuf {
    ctx.quarantine_dir.join(format!("{}-{}", ctx.topic, ctx.partition))
}

/// `<base>-<what>`, or `<base>-<what>` with `-<n>` before the extension when the plain name
/// (or, for segments, any of its files) is taken: a later cut never overwrites an earlier one.
fn quarantine_name(ctx: &LoadContext<'_>, base: u64, what: &str, n: u32) -> PathBuf {
    let name = match (n, what.split_once('.')) {
        (0, _) => format!("{base:020}-{what}"),
        (n, Some((stem, ext))) => format!("{base:020}-{stem}-{n}.{ext}"),
        (n, None) => format!("{base:020}-{what}-{n}"),
    };
    quarantine_dir(ctx).join(name)
}

/// The first `n` for which none of `whats` exists in the quarantine directory.
fn free_quarantine_slot(ctx: &LoadContext<'_>, base: u64, whats: &[&str]) -> u32 {
    (0..).find(|&n| whats.iter().all(|w| !ctx.vfs.exists(&quarantine_name(ctx, base, w, n)))).unwrap_or(0)
}

fn create_quarantine_dir(ctx: &LoadContext<'_>) -> Result<PathBuf> {
    let dir = quarantine_dir(ctx);
    ctx.vfs.create_dir(ctx.quarantine_dir).map_err(io("create directory", ctx.quarantine_dir))?;
    ctx.vfs.create_dir(&dir).map_err(io("create directory", &dir))?;
    ctx.vfs.sync_dir(ctx.quarantine_dir).map_err(io("fsync", ctx.quarantine_dir))?;
    Ok(dir)
}

fn write_report(ctx: &LoadContext<'_>, path: &Path, fields: &[(&str, String)]) -> Result<()> {
    let mut text = String::new();
    for (k, v) in fields {
        text.push_str(k);
        text.push('=');
        text.push_str(&v.replace('\n', " "));
        text.push('\n');
    }
    let f = ctx.vfs.open(path, OpenMode::Create).map_err(io("create", path))?;
    f.set_len(0).map_err(io("truncate", path))?;
    f.write_all_at(text.as_bytes(), 0).map_err(io("write", path))?;
    f.sync_data().map_err(io("fdatasync", path))
}

/// Tails longer than this are quarantined by moving the whole file rather than copying the tail.
const COPY_LIMIT: u64 = 64 << 20;

/// Moves a segment file into quarantine whole (a rename: nothing is copied), with a report that
/// says where its valid data ends, and writes the first `keep` bytes back under the segment's
/// name. Returns the new file.
fn quarantine_file_keep_prefix(
    ctx: &LoadContext<'_>,
    log: &Path,
    old: &Arc<dyn crate::storage::vfs::VFile>,
    base: u64,
    keep: u64,
    reason: &str,
) -> Result<Arc<dyn crate::storage::vfs::VFile>> {
    let vfs = ctx.vfs;
    let qdir = create_quarantine_dir(ctx)?;
    let (what, report_what) = (format!("{keep}-whole.log"), format!("{keep}.report"));
    let n = free_quarantine_slot(ctx, base, &[&what, &report_what]);
    let moved = quarantine_name(ctx, base, &what, n);
    let size = old.len().map_err(io("stat", log))?;
    vfs.rename(log, &moved).map_err(io("rename", log))?;
    let new = vfs.open(log, OpenMode::CreateNew).map_err(io("create", log))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = 0;
    while pos < keep {
        let n = (keep - pos).min(buf.len() as u64) as usize;
        old.read_exact_at(&mut buf[..n], pos).map_err(io("read", &moved))?;
        new.write_all_at(&buf[..n], pos).map_err(io("write", log))?;
        pos += n as u64;
    }
    new.sync_data().map_err(io("fdatasync", log))?;
    write_report(
        ctx,
        &quarantine_name(ctx, base, &report_what, n),
        &[
            ("kind", "tail-in-whole-file".into()),
            ("topic", ctx.topic.into()),
            ("partition", ctx.partition.to_string()),
            ("segment", log.display().to_string()),
            ("position", keep.to_string()),
            ("length", (size - keep).to_string()),
            ("reason", reason.into()),
            ("data", moved.display().to_string()),
            ("time_ms", now_ms().to_string()),
        ],
    )?;
    vfs.sync_dir(&qdir).map_err(io("fsync", &qdir))?;
    vfs.sync_dir(&ctx.dir).map_err(io("fsync", &ctx.dir))?;
    Ok(new)
}

/// Copies `[from, to)` of a segment into the quarantine directory, with a report, durably.
fn quarantine_tail(ctx: &LoadContext<'_>, log: &Path, base: u64, from: u64, to: u64, reason: &str) -> Result<()> {
    let vfs = ctx.vfs;
    let qdir = create_quarantine_dir(ctx)?;
    let src = vfs.open(log, OpenMode::Read).map_err(io("open", log))?;
    let (bin_what, report_what) = (format!("{from}.bin"), format!("{from}.report"));
    let n = free_quarantine_slot(ctx, base, &[&bin_what, &report_what]);
    let bin = quarantine_name(ctx, base, &bin_what, n);
    let dst = vfs.open(&bin, OpenMode::CreateNew).map_err(io("create", &bin))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = from;
    while pos < to {
        let n = (to - pos).min(buf.len() as u64) as usize;
        src.read_exact_at(&mut buf[..n], pos).map_err(io("read", log))?;
        dst.write_all_at(&buf[..n], pos - from).map_err(io("write", &bin))?;
        pos += n as u64;
    }
    dst.sync_data().map_err(io("fdatasync", &bin))?;
    let report = quarantine_name(ctx, base, &report_what, n);
    write_report(
        ctx,
        &report,
        &[
            ("kind", "tail".into()),
            ("topic", ctx.topic.into()),
            ("partition", ctx.partition.to_string()),
            ("segment", log.display().to_string()),
            ("position", from.to_string()),
            ("length", (to - from).to_string()),
            ("reason", reason.into()),
            ("data", bin.display().to_string()),
            ("time_ms", now_ms().to_string()),
        ],
    )?;
    vfs.sync_dir(&qdir).map_err(io("fsync", &qdir))
}

/// Moves a whole segment (log and indexes) into the quarantine directory, with a report.
fn quarantine_segment(ctx: &LoadContext<'_>, base: u64, reason: &str) -> Result<()> {
    let vfs = ctx.vfs;
    let qdir = create_quarantine_dir(ctx)?;
    let n = free_quarantine_slot(ctx, base, &["log", "index", "timeindex", "segment.report"]);
    for ext in ["log", "index", "timeindex"] {
        let from = ctx.dir.join(format!("{base:020}.{ext}"));
        if vfs.exists(&from) {
            let to = quarantine_name(ctx, base, ext, n);
            vfs.rename(&from, &to).map_err(io("rename", &from))?;
        }
    }
    let report = quarantine_name(ctx, base, "segment.report", n);
    write_report(
        ctx,
        &report,
        &[
            ("kind", "segment".into()),
            ("topic", ctx.topic.into()),
            ("partition", ctx.partition.to_string()),
            ("segment", format!("{base:020}.log")),
            ("reason", reason.into()),
            ("data", quarantine_name(ctx, base, "log", n).display().to_string()),
            ("time_ms", now_ms().to_string()),
        ],
    )?;
    vfs.sync_dir(&qdir).map_err(io("fsync", &qdir))
}

/// Shared mode: cuts what an appender that died holding a partition's append lock left past the
/// committed state (the active segment at `active_base` holding `size` bytes of complete
/// batches). Non-zero bytes after `size` (a half-copied batch) are copied to quarantine with a
/// report, then zeroed in place: the file keeps its length, since other processes map it, and the
/// next append overwrites the zeros. Segment files after the active one (a roll it did not commit)
/// are moved to quarantine. Idempotent: a repairer that dies is followed by another.
pub(crate) fn cut_after_dead_appender(ctx: &LoadContext<'_>, active_base: u64, size: u64) -> Result<()> {
    let vfs = ctx.vfs;
    let log = ctx.dir.join(segment::log_file_name(active_base));
    let f = vfs.open(&log, OpenMode::Write).map_err(io("open", &log))?;
    let len = f.len().map_err(io("stat", &log))?;
    // The last non-zero byte after `size`: a batch is copied in front to back, so everything the
    // dead appender wrote lies in [size, end).
    let mut end = size;
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = size;
    while pos < len {
        let n = (len - pos).min(buf.len() as u64) as usize;
        f.read_exact_at(&mut buf[..n], pos).map_err(io("read", &log))?;
        if let Some(i) = buf[..n].iter().rposition(|&b| b != 0) {
            end = pos + i as u64 + 1;
        }
        pos += n as u64;
    }
    if end > size {
        quarantine_tail(ctx, &log, active_base, size, end, "left half-written by an appender that died holding the append lock")?;
        let zeros = vec![0u8; (end - size).min(1 << 20) as usize];
        let mut at = size;
        while at < end {
            let n = (end - at).min(zeros.len() as u64) as usize;
            f.write_all_at(&zeros[..n], at).map_err(io("write", &log))?;
            at += n as u64;
        }
    }
    let entries = vfs.read_dir(&ctx.dir).map_err(io("read directory", &ctx.dir))?;
    let mut later: Vec<u64> = entries
        .iter()
        .filter_map(|e| e.name.to_str().and_then(parse_segment_file_name))
        .filter(|&(b, ext)| ext == "log" && b > active_base)
        .map(|(b, _)| b)
        .collect();
    later.sort_unstable();
    later.dedup();
    for base in later {
        quarantine_segment(ctx, base, "created by an appender that died before committing its roll")?;
    }
    vfs.sync_dir(&ctx.dir).map_err(io("fsync", &ctx.dir))
}
