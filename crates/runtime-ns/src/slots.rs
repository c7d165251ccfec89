//! Host-wide pools of numbered slots (network /30s, uid/gid ranges), shared by every server
//! instance on the host: one file per claimed slot under a directory in `/run`, created with
//! `O_EXCL`. A claim names its owner (`<boot id> <instance> <sandbox id> <sandboxes dir>`), so
//! claims of a previous boot or of a sandbox whose directory is gone can be taken back.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub struct SlotPool {
    dir: PathBuf,
    size: u32,
    instance: String,
    boot_id: String,
    sandboxes_dir: PathBuf,
}

impl SlotPool {
    pub fn open(dir: &str, size: u32, instance: &str, sandboxes_dir: &Path) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        Ok(SlotPool {
            dir: PathBuf::from(dir),
            size,
            instance: instance.to_owned(),
            boot_id: fs::read_to_string("/proc/sys/kernel/random/boot_id")
                .unwrap_or_default()
                .trim()
                .to_owned(),
            sandboxes_dir: sandboxes_dir.to_path_buf(),
        })
    }

    fn path(&self, slot: u32) -> PathBuf {
        self.dir.join(slot.to_string())
    }

    /// Claim a free slot for sandbox `id`.
    pub fn allocate(&self, id: &str) -> io::Result<u32> {
        let start = rand::random::<u32>() % self.size;
        for i in 0..self.size {
            let slot = (start + i) % self.size;
            let path = self.path(slot);
            match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut f) => {
                    writeln!(
                        f,
                        "{} {} {} {}",
                        self.boot_id,
                        self.instance,
                        id,
                        self.sandboxes_dir.display()
                    )?;
                    return Ok(slot);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    if self.is_stale(&fs::read_to_string(&path).unwrap_or_default()) {
                        let _ = fs::remove_file(&path);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::other(format!(
            "the pool {} is exhausted",
            self.dir.display()
        )))
    }

    /// A claim left by a previous boot, or by a sandbox whose directory no longer exists.
    fn is_stale(&self, owner: &str) -> bool {
        if owner.trim().is_empty() {
            // Claimed a moment ago and not written yet.
            return false;
        }
        let mut parts = owner.trim_end().splitn(4, ' ');
        let (boot, _instance, id, dir) = (parts.next(), parts.next(), parts.next(), parts.next());
        match (boot, id, dir) {
            (Some(b), _, _) if b != self.boot_id => true,
            (_, Some(id), Some(dir)) => !Path::new(dir).join(id).exists(),
            // Being written right now, or an older format: leave it.
            _ => false,
        }
    }

    pub fn release(&self, slot: u32) {
        let _ = fs::remove_file(self.path(slot));
    }

    /// Slots this instance holds: (slot, sandbox id).
    pub fn owned(&self) -> Vec<(u32, String)> {
        let mut out = Vec::new();
        for e in fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let Some(slot) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let owner = fs::read_to_string(e.path()).unwrap_or_default();
            let mut parts = owner.trim_end().splitn(4, ' ');
            if let (Some(_boot), Some(inst), Some(id)) = (parts.next(), parts.next(), parts.next())
            {
                if inst == self.instance {
                    out.push((slot, id.to_owned()));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_claims_are_recognised() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("aaaaaaaaaaaa")).unwrap();
        let pool = SlotPool {
            dir: dir.path().join("pool"),
            size: 4,
            instance: "i".into(),
            boot_id: "boot".into(),
            sandboxes_dir: dir.path().to_path_buf(),
        };
        let d = dir.path().display();
        assert!(!pool.is_stale(""), "a claim being written");
        assert!(pool.is_stale("oldboot i aaaaaaaaaaaa /x\n"), "another boot");
        assert!(
            !pool.is_stale(&format!("boot i aaaaaaaaaaaa {d}\n")),
            "live sandbox"
        );
        assert!(
            pool.is_stale(&format!("boot i bbbbbbbbbbbb {d}\n")),
            "sandbox gone"
        );
        assert!(!pool.is_stale("boot i aaaaaaaaaaaa"), "older format, kept");
    }
}
