//! btrfs snapshots: a subvolume's copy made by the file system in O(1) (copy on write).

use super::check;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

/// `_IOW(0x94, 23, struct btrfs_ioctl_vol_args_v2)` (4096 bytes).
const BTRFS_IOC_SNAP_CREATE_V2: libc::c_ulong = 0x5000_9417;
const BTRFS_SUBVOL_RDONLY: u64 = 1 << 1;

/// `struct btrfs_ioctl_vol_args_v2`: fd, transid, flags, a 32-byte union, a 4040-byte name.
#[repr(C)]
struct VolArgsV2 {
    fd: i64,
    transid: u64,
    flags: u64,
    unused: [u64; 4],
    name: [u8; 4040],
}

/// Snapshot the subvolume at `source` as `parent/name`, read-only when asked.
pub fn btrfs_snapshot(source: &Path, parent: &Path, name: &str, readonly: bool) -> io::Result<()> {
    if name.is_empty() || name.len() >= 4040 || name.contains('/') || name.contains('\0') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "bad snapshot name",
        ));
    }
    let src = File::open(source)?;
    let dir = File::open(parent)?;
    let mut args = Box::new(VolArgsV2 {
        fd: i64::from(src.as_raw_fd()),
        transid: 0,
        flags: if readonly { BTRFS_SUBVOL_RDONLY } else { 0 },
        unused: [0; 4],
        name: [0; 4040],
    });
    args.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: SNAP_CREATE_V2 reads one VolArgsV2 (and may write `transid`); `src` stays open
    // for the call.
    check(unsafe {
        libc::ioctl(
            dir.as_raw_fd(),
            BTRFS_IOC_SNAP_CREATE_V2,
            &mut *args as *mut VolArgsV2,
        )
    })
    .map(drop)
}

#[cfg(test)]
mod tests {
    #[test]
    fn vol_args_v2_is_4096_bytes() {
        assert_eq!(std::mem::size_of::<super::VolArgsV2>(), 4096);
    }
}
