//! A real full disk: appends fail with a clear error, nothing acknowledged is lost, and appends
//! work again once space is freed, without reopening the log.
//!
//! The test makes a 32 MiB ext4 image and mounts it with `mount -o loop`. That needs root and loop
//! devices; where either is missing the test says why it skips and passes (CI runs as root).

use std::path::{Path, PathBuf};
use std::process::Command;

use runnel::{Acks, Error, Log, LogOptions, Record, TopicConfig};

struct Mounted {
    dir: tempfile::TempDir,
    mnt: PathBuf,
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        let _ = &self.dir;
    }
}

fn mount_small_ext4() -> Result<Mounted, String> {
    // `id -u` rather than an unsafe libc call.
    let uid = Command::new("id").arg("-u").output().map_err(|e| format!("cannot run id: {e}"))?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Err("not running as root".into());
    }
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let img = dir.path().join("img");
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).map_err(|e| e.to_string())?;
    std::fs::File::create(&img).and_then(|f| f.set_len(32 << 20)).map_err(|e| e.to_string())?;
    let run = |cmd: &mut Command| -> Result<(), String> {
        let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
        if out.status.success() { Ok(()) } else { Err(format!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr).trim())) }
    };
    run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&img))?;
    run(Command::new("mount").args(["-o", "loop"]).arg(&img).arg(&mnt))?;
    Ok(Mounted { dir, mnt })
}

/// The small disk with 4 MiB of ballast on it (to free once it is full), or `None` after saying
/// why `test` skips where it cannot be mounted.
fn small_disk_with_ballast(test: &str) -> std::io::Result<Option<(Mounted, PathBuf)>> {
    let m = match mount_small_ext4() {
        Ok(m) => m,
        Err(why) => {
            eprintln!("skipping {test}: cannot mount a small ext4 image ({why})");
            return Ok(None);
        }
    };
    let ballast = m.mnt.join("ballast");
    std::fs::write(&ballast, vec![1u8; 4 << 20])?;
    Ok(Some((m, ballast)))
}

fn value(i: u64) -> Vec<u8> {
    let mut v = format!("record-{i}-").into_bytes();
    v.resize(16 << 10, (i % 251) as u8);
    v
}

fn read_all(log: &Log) -> runnel::Result<Vec<(u64, Vec<u8>)>> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset("t", 0)?;
    while offset < log.high_watermark("t", 0)? {
        let f = log.fetch("t", 0, offset, 1 << 20)?;
        for r in f.records() {
            let r = r?;
            out.push((r.offset, r.value.map(<[u8]>::to_vec).unwrap_or_default()));
        }
        offset = f.next_offset();
    }
    Ok(out)
}

fn check(log: &Log, acked: u64, when: &str) -> runnel::Result<()> {
    let all = read_all(log)?;
    assert_eq!(all.len() as u64, acked, "{when}: every acknowledged record is there");
    for (i, (offset, v)) in all.iter().enumerate() {
        assert_eq!(*offset, i as u64, "{when}: contiguous offsets");
        assert!(*v == value(*offset), "{when}: record {offset} intact");
    }
    Ok(())
}

#[test]
fn appends_fail_cleanly_on_a_full_disk_and_resume_once_space_is_freed() -> Result<(), Box<dyn std::error::Error>> {
    let Some((m, ballast)) = small_disk_with_ballast("the disk-full test")? else { return Ok(()) };
    let data: &Path = &m.mnt.join("data");
    let mut cfg = TopicConfig::default();
    cfg.set("segment.bytes", "268435456")?; // larger than the disk: no roll, one growing segment
    let log = Log::open(data, LogOptions::default())?;
    log.create_topic("t", 1, cfg)?;

    let mut acked = 0u64;
    let err = loop {
        let v = value(acked);
        match log.append("t", Some(0), &[Record::new(&v)], Acks::All) {
            Ok(at) => {
                assert_eq!(at.base_offset, acked);
                acked += 1;
            }
            Err(e) => break e,
        }
        assert!(acked < 100_000, "a 32 MiB disk never filled");
    };
    match &err {
        Error::Io { source, .. } => assert_eq!(source.raw_os_error(), Some(28), "ENOSPC, got {err}"),
        other => panic!("expected an Io error for the full disk, got {other}"),
    }
    assert!(acked > 100, "the disk held {acked} records before filling");
    assert_eq!(log.log_end_offset("t", 0)?, acked, "the failed append added nothing");
    check(&log, acked, "on the full disk")?;

    std::fs::remove_file(&ballast)?;
    let v = value(acked);
    log.append("t", Some(0), &[Record::new(&v)], Acks::All)?;
    acked += 1;
    check(&log, acked, "after freeing space")?;
    log.close()?;

    let log = Log::open(data, LogOptions::default())?;
    check(&log, acked, "after reopening")?;
    Ok(())
}

/// Shared mode on a full disk: two handles (standing for two processes) append in turn with small
/// segments, so the disk fills in every step of an append and of a roll (reserving space, sealing,
/// writing indexes and producer snapshots, creating the next segment). Whatever fails, and
/// whichever handle it poisons, nothing panics, nothing acknowledged is lost, no torn batch is
/// visible, and once space is freed a process appends again, repairing what a failed roll left.
#[test]
fn shared_appenders_on_a_full_disk_lose_nothing_and_recover() -> Result<(), Box<dyn std::error::Error>> {
    let Some((m, ballast)) = small_disk_with_ballast("the shared disk-full test")? else { return Ok(()) };
    let data: &Path = &m.mnt.join("data");
    let opts = || LogOptions::default().background_maintenance(false);
    let a = Log::open_shared(data, opts())?;
    let b = Log::open_shared(data, opts())?;
    let mut cfg = TopicConfig::default();
    cfg.set("segment.bytes", "65536")?; // a roll every four records
    a.create_topic("t", 1, cfg)?;

    let mut acked = 0u64;
    let mut failures = 0;
    let mut turn = 0usize;
    while failures < 6 {
        let log = if turn.is_multiple_of(2) { &a } else { &b };
        turn += 1;
        let v = value(acked);
        match log.append("t", Some(0), &[Record::new(&v)], Acks::All) {
            Ok(at) => {
                assert_eq!(at.base_offset, acked, "one order across the handles");
                acked += 1;
                failures = 0;
            }
            Err(Error::Io { .. } | Error::Poisoned { .. }) => failures += 1,
            Err(e) => panic!("expected an Io or Poisoned error on the full disk, got {e}"),
        }
        assert!(acked < 100_000, "a 32 MiB disk never filled");
    }
    assert!(acked > 100, "the disk held {acked} records before filling");
    std::fs::remove_file(&ballast)?;
    // A process arriving now (the others may be poisoned) appends, repairing what a failed roll
    // left behind if it must.
    let c = Log::open_shared(data, opts())?;
    for _ in 0..8 {
        let v = value(acked);
        let at = c.append("t", Some(0), &[Record::new(&v)], Acks::All)?;
        assert_eq!(at.base_offset, acked);
        acked += 1;
    }
    check(&c, acked, "after freeing space")?;
    drop(a);
    drop(b);
    c.close()?;
    let log = Log::open(data, LogOptions::default())?;
    check(&log, acked, "after reopening")?;
    Ok(())
}
