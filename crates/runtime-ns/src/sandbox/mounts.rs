//! Volume mounts into a running sandbox (see `volumes.rs` for the design).

use super::{lock, Inner, Sandbox};
use crate::ids::IdRange;
use crate::sys::mounts::{
    attach_tree, idmapped_tree, in_mount_ns_of, make_dirs, set_thread_fs_ids, unmount_at,
};
use instavm_runtime::*;
use std::fs::File;
use std::io;

impl Inner {
    /// The sandbox's init pid and the host id of its root.
    fn mount_target(&self, sb: &Sandbox) -> Result<(i32, u32)> {
        let rec = lock(&sb.record);
        match (rec.pid, rec.ids) {
            (Some(pid), Some(range)) => Ok((pid, IdRange(range).first())),
            _ => Err(RuntimeError::NotRunning(sb.id.to_string())),
        }
    }

    pub fn mount_volume(&self, sb: &Sandbox, m: &VolumeMount) -> Result<()> {
        let (pid, host_root) = self.mount_target(sb)?;
        let source = match &m.checkpoint {
            Some(c) => self.volumes.checkpoint_path(&m.volume, c)?,
            None => self.volumes.live(&m.volume)?,
        };
        let fail = |what: &str| {
            let context = format!("{what} volume {} at {}", m.volume, m.mount_path);
            move |e: io::Error| RuntimeError::io(context, e)
        };
        let userns = File::open(format!("/proc/{pid}/ns/user"))
            .map_err(fail("opening the user namespace for"))?;
        let tree = idmapped_tree(&source, &userns, m.checkpoint.is_some())
            .map_err(fail("an idmapped copy of"))?;
        let path = m.mount_path.clone();
        let attached = in_mount_ns_of(pid, move || {
            // The mount point is made as the sandbox's root would make it.
            set_thread_fs_ids(host_root);
            let target = make_dirs(&path);
            set_thread_fs_ids(0);
            attach_tree(&tree, &target?)
        });
        attached.map_err(|e| match e.raw_os_error() {
            Some(libc::ENOTDIR) | Some(libc::EEXIST) => {
                RuntimeError::WrongFileType(m.mount_path.clone())
            }
            Some(libc::ELOOP) => RuntimeError::InvalidPath(format!(
                "{} goes through a symlink inside the VM",
                m.mount_path
            )),
            _ => fail("mounting")(e),
        })
    }

    pub fn unmount_volume(&self, sb: &Sandbox, mount_path: &str) -> Result<()> {
        let (pid, _) = self.mount_target(sb)?;
        let path = mount_path.to_owned();
        in_mount_ns_of(pid, move || unmount_at(&path)).map_err(|e| match e.raw_os_error() {
            Some(libc::EINVAL) | Some(libc::ENOENT) | Some(libc::ENOTDIR) | Some(libc::ELOOP) => {
                RuntimeError::FileNotFound(mount_path.to_owned())
            }
            _ => RuntimeError::io(format!("unmounting {mount_path}"), e),
        })
    }
}
