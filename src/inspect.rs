//! Reading a data directory's files as they are on disk, for tools (the CLI's `dump-log` and
//! `verify`): the batches of a segment with their positions, CRC validity and producer fields;
//! whether each index agrees with its segment; and a repair that makes the next open verify
//! everything. Nothing here takes the writer lock or writes, except [`repair`].

use std::path::{Path, PathBuf};

use crate::format::batch::BatchView;
use crate::format::{RecordView, index, scan};
use crate::{Error, Log, LogOptions, RecoveryReport, Result};

/// The files of one segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentFiles {
    /// Offset of its first record (the file name).
    pub base_offset: u64,
    /// The `.log` file.
    pub log: PathBuf,
    /// The `.index` file (offset → position).
    pub index: PathBuf,
    /// The `.timeindex` file (timestamp → offset).
    pub time_index: PathBuf,
}

/// The directory of a partition: `<dir>/<topic>-<partition>`.
pub fn partition_dir(dir: &Path, topic: &str, partition: u32) -> PathBuf {
    dir.join(format!("{topic}-{partition}"))
}

/// The segments of a partition, by base offset.
pub fn segment_files(dir: &Path, topic: &str, partition: u32) -> Result<Vec<SegmentFiles>> {
    crate::validate_topic_name(topic).or_else(|e| if topic.starts_with("__") { Ok(()) } else { Err(e) })?;
    let pdir = partition_dir(dir, topic, partition);
    let entries = std::fs::read_dir(&pdir).map_err(|e| Error::io("read directory", &pdir, e))?;
    let mut out = Vec::new();
    for e in entries {
        let e = e.map_err(|e| Error::io("read directory", &pdir, e))?;
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(stem) = name.strip_suffix(".log") else { continue };
        if stem.len() != 20 {
            continue;
        }
        let Ok(base) = stem.parse::<u64>() else { continue };
        out.push(SegmentFiles {
            base_offset: base,
            log: pdir.join(name),
            index: pdir.join(format!("{stem}.index")),
            time_index: pdir.join(format!("{stem}.timeindex")),
        });
    }
    out.sort_by_key(|s| s.base_offset);
    Ok(out)
}

/// One batch of a segment, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchSummary {
    /// Byte position in the `.log` file.
    pub position: u64,
    /// Offset of its first record.
    pub base_offset: u64,
    /// Offset of its last record.
    pub last_offset: u64,
    /// Bytes, framing included.
    pub size: u64,
    /// Number of records.
    pub record_count: u32,
    /// Whether the stored CRC matches the bytes.
    pub crc_valid: bool,
    /// The first record's timestamp.
    pub first_timestamp: i64,
    /// The largest record timestamp.
    pub max_timestamp: i64,
    /// Whether the timestamps were set by the log (LogAppendTime).
    pub log_append_time: bool,
    /// Producer id (-1 for none).
    pub producer_id: i64,
    /// Producer epoch.
    pub producer_epoch: i16,
    /// First sequence number (-1 for none).
    pub base_sequence: i32,
    /// Part of a transaction.
    pub transactional: bool,
    /// A control batch (a transaction marker).
    pub control: bool,
}

/// A segment read whole: its batches, and where and why the walk stopped.
pub struct SegmentDump {
    bytes: Vec<u8>,
    /// The batches, in order.
    pub batches: Vec<BatchSummary>,
    /// End of the last complete batch.
    pub valid_end: u64,
    /// The file's length.
    pub file_len: u64,
    /// Why the walk stopped before the end of the file (`None`: it reached the end, or zeros).
    pub stop: Option<String>,
}

impl SegmentDump {
    /// The records of batch `i` (decoded from the stored bytes).
    pub fn records(&self, i: usize) -> Result<Vec<RecordView<'_>>> {
        let b = self.batches.get(i).ok_or_else(|| Error::InvalidArgument(format!("no batch {i}")))?;
        let start = b.position as usize;
        let view = BatchView::parse(&self.bytes[start..start + b.size as usize])
            .map_err(|e| Error::InvalidArgument(format!("batch at position {start}: {e}")))?;
        view.records().map(|r| r.map_err(|e| Error::InvalidArgument(format!("batch at position {start}: {e}")))).collect()
    }
}

/// Reads a segment file and walks its batches (stopping at the first that does not parse, or at
/// preallocated zeros).
pub fn dump_segment(path: &Path) -> Result<SegmentDump> {
    let bytes = std::fs::read(path).map_err(|e| Error::io("read", path, e))?;
    let mut batches = Vec::new();
    let mut pos = 0usize;
    let mut stop = None;
    while pos < bytes.len() {
        let rest = &bytes[pos..];
        if rest.iter().take(12).all(|&b| b == 0) {
            break;
        }
        let view = match BatchView::parse(rest) {
            Ok(v) => v,
            Err(e) => {
                stop = Some(format!("at position {pos}: {e}"));
                break;
            }
        };
        let h = *view.header();
        let first_timestamp = h.base_timestamp;
        batches.push(BatchSummary {
            position: pos as u64,
            base_offset: h.base_offset,
            last_offset: h.last_offset(),
            size: h.total_len() as u64,
            record_count: h.record_count,
            crc_valid: view.verify_crc(),
            first_timestamp,
            max_timestamp: h.max_timestamp,
            log_append_time: h.is_log_append_time(),
            producer_id: h.producer_id,
            producer_epoch: h.producer_epoch,
            base_sequence: h.base_sequence,
            transactional: h.is_transactional(),
            control: h.is_control(),
        });
        pos += h.total_len();
    }
    let file_len = bytes.len() as u64;
    Ok(SegmentDump { bytes, batches, valid_end: pos as u64, file_len, stop })
}

/// An index entry and whether it points at the start of the batch it names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexEntryCheck {
    /// The offset the entry names.
    pub offset: u64,
    /// The byte position it gives.
    pub position: u64,
    /// Whether a batch with that base offset starts at that position.
    pub valid: bool,
}

/// Checks a segment's offset index against its batches: every entry must point at the start of
/// the batch it names. A missing or undecodable index is reported as such (recovery rebuilds it).
pub fn check_index(files: &SegmentFiles, dump: &SegmentDump) -> std::result::Result<Vec<IndexEntryCheck>, String> {
    let bytes = std::fs::read(&files.index).map_err(|e| format!("{}: {e}", files.index.display()))?;
    let entries =
        index::decode_offset_index(&bytes, files.base_offset, dump.valid_end).map_err(|e| format!("{}: {e}", files.index.display()))?;
    Ok(entries
        .iter()
        .map(|e| {
            let offset = files.base_offset + u64::from(e.relative_offset);
            let position = u64::from(e.position);
            let valid = dump.batches.iter().any(|b| b.position == position && b.base_offset == offset);
            IndexEntryCheck { offset, position, valid }
        })
        .collect())
}

/// What [`verify`] found in one partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionCheck {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
    /// Segments checked.
    pub segments: usize,
    /// Batches whose CRC and records were verified.
    pub batches: u64,
    /// Bytes of verified batches.
    pub bytes: u64,
    /// Everything wrong, each naming the file and position.
    pub problems: Vec<String>,
}

/// Checks every segment and index of every partition of `dir`, read-only: each batch's CRC and
/// records, that segments follow on from each other, that nothing but preallocated zeros follows
/// the last batch, and that every index entry points at its batch. Run it on a log no writer is
/// appending to, or the active segment's unfinished tail is reported too.
pub fn verify(dir: &Path) -> Result<Vec<PartitionCheck>> {
    let log = Log::open_read_only(dir, LogOptions::default())?;
    let mut out = Vec::new();
    for topic in log.list_topics() {
        let interval = log.describe_topic(&topic).map(|d| d.config.index_interval_bytes).unwrap_or(4096);
        for partition in 0..log.partition_count(&topic)? {
            out.push(verify_partition(dir, &topic, partition, interval)?);
        }
    }
    Ok(out)
}

fn verify_partition(dir: &Path, topic: &str, partition: u32, interval: u64) -> Result<PartitionCheck> {
    let mut check = PartitionCheck { topic: topic.to_string(), partition, segments: 0, batches: 0, bytes: 0, problems: Vec::new() };
    let segments = segment_files(dir, topic, partition)?;
    let mut expected_next: Option<u64> = None;
    for (i, s) in segments.iter().enumerate() {
        check.segments += 1;
        let bytes = std::fs::read(&s.log).map_err(|e| Error::io("read", &s.log, e))?;
        let found = scan::scan(&bytes, s.base_offset, interval, true);
        let dump = dump_segment(&s.log)?;
        check.batches += dump.batches.len() as u64;
        check.bytes += found.valid_end;
        if let Some(why) = &found.stop {
            check.problems.push(format!("{}: stops at byte {}: {why}", s.log.display(), found.valid_end));
        } else if !found.zero_tail {
            check.problems.push(format!("{}: bytes after the last batch (at {}) are not zeros", s.log.display(), found.valid_end));
        }
        if let Some(bad) = dump.batches.iter().find(|b| !b.crc_valid) {
            check.problems.push(format!("{}: batch at byte {} (offset {}) fails its CRC", s.log.display(), bad.position, bad.base_offset));
        }
        if let Some(want) = expected_next
            && want != s.base_offset
        {
            check.problems.push(format!("{}: starts at offset {} but the segment before ends at {want}", s.log.display(), s.base_offset));
        }
        expected_next = Some(found.next_offset);
        let last = i + 1 == segments.len();
        match check_index(s, &dump) {
            Ok(entries) => {
                if let Some(e) = entries.iter().find(|e| !e.valid) {
                    check.problems.push(format!(
                        "{}: entry for offset {} points at byte {}, where no batch of that offset starts",
                        s.index.display(),
                        e.offset,
                        e.position
                    ));
                }
            }
            // The active segment's index lives in memory while the log is open and is written at
            // close; a sealed segment must have one.
            Err(e) if !last => check.problems.push(format!("index: {e}")),
            Err(_) => {}
        }
    }
    Ok(check)
}

/// Makes `dir` whole: the next open verifies every segment (the clean-shutdown marker and the
/// recovery checkpoint are removed first), truncates a torn tail into `quarantine/`, and rebuilds
/// damaged indexes; then the log is closed cleanly. Returns what recovery did per partition.
/// Fails with [`Error::Locked`] while a writer has the directory open.
pub fn repair(dir: &Path) -> Result<Vec<(String, u32, RecoveryReport)>> {
    // An open and a clean close first: this fails while a writer holds the directory (and may
    // already recover something, which is reported too).
    let first = Log::open(dir, LogOptions::default().background_maintenance(false))?;
    let mut reports = first.recovery_report();
    first.close()?;
    for name in [crate::CLEAN_SHUTDOWN_FILE, crate::CHECKPOINT_FILE] {
        let path = dir.join(name);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove", &path, e)),
        }
    }
    let log = Log::open(dir, LogOptions::default().background_maintenance(false))?;
    for (topic, partition, r) in log.recovery_report() {
        match reports.iter_mut().find(|(t, p, _)| *t == topic && *p == partition) {
            Some((_, _, acc)) => {
                acc.segments_verified += r.segments_verified;
                acc.bytes_quarantined += r.bytes_quarantined;
                acc.segments_quarantined += r.segments_quarantined;
            }
            None => reports.push((topic, partition, r)),
        }
    }
    log.close()?;
    Ok(reports)
}
