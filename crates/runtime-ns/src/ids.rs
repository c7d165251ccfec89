//! Private host uid/gid ranges, one per sandbox. Root in a sandbox is uid 0 of its own user
//! namespace, mapped to the first id of its range, so per-user kernel accounting (inotify
//! instances, pipe buffers, RLIMIT_NPROC) is never shared with another sandbox or the host.
//! Ranges come from a host-wide pool like the address slots: `/run/instavm/ids`.

use crate::slots::SlotPool;
use std::io;
use std::path::Path;

/// Ids per sandbox: a whole 16-bit id space, what a Debian userland expects (nobody = 65534).
pub const RANGE_SIZE: u32 = 1 << 16;
/// The pool starts at 2^30, far above any id a host hands out to its own users.
const FIRST_ID: u32 = 1 << 30;
/// 16384 ranges: 2^30 ids, up to 2^31 - 1.
const RANGES: u32 = 1 << 14;
const POOL_DIR: &str = "/run/instavm/ids";

/// A claimed range, by its number in the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange(pub u32);

impl IdRange {
    /// The host uid (and gid) that is root inside the sandbox.
    pub fn first(self) -> u32 {
        FIRST_ID + self.0 * RANGE_SIZE
    }
}

pub struct IdRanges {
    pool: SlotPool,
}

impl IdRanges {
    pub fn open(instance: &str, sandboxes_dir: &Path) -> io::Result<Self> {
        Ok(IdRanges {
            pool: SlotPool::open(POOL_DIR, RANGES, instance, sandboxes_dir)?,
        })
    }

    pub fn allocate(&self, id: &str) -> io::Result<IdRange> {
        self.pool.allocate(id).map(IdRange)
    }

    pub fn release(&self, range: IdRange) {
        self.pool.release(range.0)
    }

    /// Ranges this instance holds: (range, sandbox id).
    pub fn owned(&self) -> Vec<(IdRange, String)> {
        self.pool
            .owned()
            .into_iter()
            .map(|(n, id)| (IdRange(n), id))
            .collect()
    }
}
