//! Files: the I/O seam, segments with their mappings and indexes, and the cache that bounds how
//! many sealed segments are mapped at once. The only home of `unsafe` in the library.

pub mod prefault;
pub mod segment;
pub mod shared_state;
#[cfg(feature = "fault-injection")]
pub mod sim;
pub mod vfs;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use segment::Segment;

/// Keeps at most `capacity` sealed segments mapped, evicting the least recently used. Readers
/// holding a mapping keep it alive past eviction; eviction only stops the cache from holding it.
pub struct OpenSegments {
    capacity: usize,
    clock: AtomicU64,
    open: Mutex<Vec<Weak<Segment>>>,
}

impl OpenSegments {
    /// A cache for `capacity` mappings.
    pub fn new(capacity: usize) -> OpenSegments {
        OpenSegments { capacity: capacity.max(1), clock: AtomicU64::new(1), open: Mutex::new(Vec::new()) }
    }

    /// Marks a segment as just used.
    pub fn touch(&self, seg: &Segment) {
        seg.last_used.store(self.clock.fetch_add(1, Ordering::Relaxed), Ordering::Relaxed);
    }

    /// Records that `seg` was mapped, evicting others if the cache is over capacity.
    pub fn opened(&self, seg: &Arc<Segment>) {
        self.touch(seg);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.retain(|w| w.upgrade().is_some_and(|s| s.is_sealed() && s.is_open()));
        open.push(Arc::downgrade(seg));
        while open.len() > self.capacity {
            let victim = open
                .iter()
                .enumerate()
                .filter_map(|(i, w)| w.upgrade().map(|s| (i, s)))
                .filter(|(_, s)| !Arc::ptr_eq(s, seg))
                .min_by_key(|(_, s)| s.last_used.load(Ordering::Relaxed));
            match victim {
                Some((i, s)) => {
                    s.evict();
                    open.swap_remove(i);
                }
                None => break,
            }
        }
    }

    /// Number of sealed segments currently mapped through the cache.
    pub fn len(&self) -> usize {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.iter().filter(|w| w.upgrade().is_some_and(|s| s.is_open())).count()
    }
}
