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
                    let owner = fs::read_to_string(&path).unwrap_or_default();
                    if self.is_stale(&owner) || abandoned_while_written(&path, &owner) {
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

/// A claim is written within microseconds of its creation: one still empty after a minute
/// belongs to a process killed in between (a `kill -9` of the server), and would otherwise
/// hold its slot forever.
fn abandoned_while_written(path: &Path, owner: &str) -> bool {
    const WRITE_GRACE: std::time::Duration = std::time::Duration::from_secs(60);
    owner.trim().is_empty()
        && fs::metadata(path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > WRITE_GRACE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_claim_is_abandoned_only_when_old() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("7");
        std::fs::write(&path, "").unwrap();
        assert!(!abandoned_while_written(&path, ""), "just created");
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(120);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(old)
            .unwrap();
        assert!(abandoned_while_written(&path, ""));
        assert!(
            !abandoned_while_written(&path, "boot i id /x"),
            "written claims are judged by owner"
        );
    }

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
