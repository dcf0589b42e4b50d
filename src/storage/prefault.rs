//! A background thread that faults in the pages of newly allocated segment space ahead of the
//! writer, so that an append copying into the mapping does not pay for page-cache allocation and
//! zero-filling itself (a third of a small append's cost when done inline).
//!
//! It is only an optimisation: pages it has not reached yet are faulted in by the copy itself, and
//! a request for space that was trimmed meanwhile fails harmlessly (madvise returns an error
//! rather than raising SIGBUS).

use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread::JoinHandle;

use super::segment::SegmentData;

enum Job {
    Range(Arc<SegmentData>, usize, usize),
    Stop,
}

/// A handle on the prefault thread. Cheap to clone.
#[derive(Clone)]
pub struct Prefaulter {
    tx: Sender<Job>,
}

impl Prefaulter {
    /// Starts the thread.
    pub fn start() -> std::io::Result<(Prefaulter, JoinHandle<()>)> {
        let (tx, rx) = channel();
        let handle = std::thread::Builder::new().name("runnel-prefault".into()).spawn(move || run(&rx))?;
        Ok((Prefaulter { tx }, handle))
    }

    /// Asks for `[pos, pos + len)` of `data` to be faulted in. The space must already be allocated.
    pub fn request(&self, data: Arc<SegmentData>, pos: usize, len: usize) {
        // After `stop` the thread is gone; the copy then faults the pages in itself.
        let _ = self.tx.send(Job::Range(data, pos, len));
    }

    /// Stops the thread once it has drained the requests before this one.
    pub fn stop(&self) {
        let _ = self.tx.send(Job::Stop);
    }
}

fn run(rx: &Receiver<Job>) {
    while let Ok(job) = rx.recv() {
        match job {
            Job::Range(data, pos, len) => data.prefault(pos, len),
            Job::Stop => return,
        }
    }
}
