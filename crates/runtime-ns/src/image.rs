//! Root filesystem images, shared read-only by every sandbox as the overlayfs lower layer.
//!
//! `<images>/<name>/rootfs` plus `<images>/<name>/image.json`. The `base` image is a Debian
//! rootfs built from Debian's packages with debootstrap on first use; other images are imported
//! from rootfs tarballs. Builds and imports go to a temporary directory that is renamed into
//! place only when complete, under a lock, so concurrent servers sharing an images directory
//! build once and never see half an image.

use crate::sys;
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};

pub const BASE: &str = "base";
const SUITE: &str = "bookworm";
const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";
/// What every sandbox can count on. `python-is-python3` because users (and the SDK's README)
/// type `python`; `sudo` because the Agents integration runs installs through `sudo -u root`.
const BASE_PACKAGES: &[&str] = &[
    "python3",
    "python-is-python3",
    "bash",
    "coreutils",
    "procps",
    "iproute2",
    "curl",
    "ca-certificates",
    "sudo",
];

/// What the base image is built from; an image built from another recipe is reported as
/// outdated.
fn base_recipe() -> String {
    format!("debootstrap {SUITE} ({})", BASE_PACKAGES.join(","))
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ImageMeta {
    pub name: String,
    /// How it was made: the debootstrap recipe, or "tarball".
    pub source: String,
    pub created_at: String,
}

pub struct ImageStore {
    dir: PathBuf,
}

/// Image names become directory names: keep them boring.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && !name.starts_with('.')
}

impl ImageStore {
    pub fn new(dir: impl Into<PathBuf>) -> io::Result<Self> {
        let dir = dir.into();
        fs::create_dir_all(&dir)?;
        Ok(ImageStore { dir })
    }

    /// The rootfs of a complete image.
    pub fn rootfs(&self, name: &str) -> Option<PathBuf> {
        if !valid_name(name) {
            return None;
        }
        let d = self.dir.join(name);
        d.join("image.json").exists().then(|| d.join("rootfs"))
    }

    /// The base image's rootfs, building it first if needed (progress goes to the log).
    pub fn ensure_base(&self) -> io::Result<PathBuf> {
        self.ensure_base_with(&|step| tracing::info!("base image: {step}"))
    }

    /// Like `ensure_base`, reporting each build step (debootstrap's own progress lines).
    pub fn ensure_base_with(&self, progress: &dyn Fn(&str)) -> io::Result<PathBuf> {
        if let Some(p) = self.rootfs(BASE) {
            self.warn_if_outdated();
            return Ok(p);
        }
        let _lock = sys::lock_file(&self.dir.join(".lock"))?;
        // Someone else may have built it while we waited for the lock.
        if let Some(p) = self.rootfs(BASE) {
            return Ok(p);
        }
        let tmp = self.fresh_tmp(BASE)?;
        let result = build_debian(&tmp.join("rootfs"), progress);
        if let Err(e) = result {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
        self.publish(
            &tmp,
            BASE,
            &format!("debootstrap {SUITE} ({})", BASE_PACKAGES.join(",")),
        )?;
        self.rootfs(BASE)
            .ok_or_else(|| io::Error::other("base image missing after build"))
    }

    /// Every complete image.
    pub fn list(&self) -> Vec<ImageMeta> {
        let mut images: Vec<ImageMeta> = fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| fs::read(e.path().join("image.json")).ok())
            .filter_map(|b| serde_json::from_slice(&b).ok())
            .collect();
        images.sort_by(|a, b| a.name.cmp(&b.name));
        images
    }

    /// Import a rootfs tarball (optionally gzip-compressed) as image `name`, replacing nothing:
    /// an existing image of that name is an error.
    pub fn import_tarball(&self, name: &str, reader: impl Read) -> io::Result<PathBuf> {
        if !valid_name(name) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid image name {name:?}"),
            ));
        }
        let _lock = sys::lock_file(&self.dir.join(".lock"))?;
        if self.rootfs(name).is_some() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("image {name} already exists"),
            ));
        }
        let tmp = self.fresh_tmp(name)?;
        if let Err(e) = unpack_rootfs(reader, &tmp.join("rootfs")) {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
        self.publish(&tmp, name, "tarball")?;
        self.rootfs(name)
            .ok_or_else(|| io::Error::other("image missing after import"))
    }

    /// Running sandboxes may use the base image as their lower layer, so it is never replaced
    /// under them: an outdated one is reported, and rebuilt when its directory is removed.
    fn warn_if_outdated(&self) {
        static ONCE: std::sync::Once = std::sync::Once::new();
        let meta: Option<ImageMeta> = fs::read(self.dir.join(BASE).join("image.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        if meta.is_some_and(|m| m.source != base_recipe()) {
            ONCE.call_once(|| {
                tracing::warn!(
                    "the base image in {} was built from another recipe than this version's \
                     ({}); stop the server, remove that directory and run `instavm image build`",
                    self.dir.join(BASE).display(),
                    base_recipe()
                )
            });
        }
    }

    fn fresh_tmp(&self, name: &str) -> io::Result<PathBuf> {
        let tmp = self.dir.join(format!(".tmp-{name}-{}", std::process::id()));
        if tmp.exists() {
            fs::remove_dir_all(&tmp)?;
        }
        fs::create_dir_all(tmp.join("rootfs"))?;
        Ok(tmp)
    }

    fn publish(&self, tmp: &Path, name: &str, source: &str) -> io::Result<()> {
        let meta = ImageMeta {
            name: name.to_owned(),
            source: source.to_owned(),
            created_at: chrono::Utc::now().to_rfc3339(),
        };
        fs::write(tmp.join("image.json"), serde_json::to_vec_pretty(&meta)?)?;
        let dest = self.dir.join(name);
        if dest.exists() {
            // An incomplete leftover (no image.json): replace it.
            fs::remove_dir_all(&dest)?;
        }
        fs::rename(tmp, &dest)
    }
}

fn mirror() -> String {
    std::env::var("INSTAVM_DEBIAN_MIRROR").unwrap_or_else(|_| DEFAULT_MIRROR.to_owned())
}

/// debootstrap a minimal Debian with the base packages, reporting its progress.
fn build_debian(rootfs: &Path, progress: &dyn Fn(&str)) -> io::Result<()> {
    progress(&format!(
        "building Debian {SUITE} from {} (about a minute, once)",
        mirror()
    ));
    let mut child = Command::new("debootstrap")
        .arg("--variant=minbase")
        .arg(format!("--include={}", BASE_PACKAGES.join(",")))
        .arg(SUITE)
        .arg(rootfs)
        .arg(mirror())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot run debootstrap (apt-get install debootstrap): {e}"),
            )
        })?;
    let stderr = child.stderr.take();
    let err_thread = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut e) = stderr {
            let _ = e.read_to_string(&mut s);
        }
        s
    });
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            // debootstrap's own progress lines: "I: Retrieving ...", "I: Configuring ...".
            if let Some(step) = line.strip_prefix("I: ") {
                progress(step);
            }
        }
    }
    let status = child.wait()?;
    let stderr = err_thread.join().unwrap_or_default();
    if !status.success() {
        return Err(io::Error::other(format!(
            "debootstrap failed ({status}): {}",
            stderr.lines().rev().take(5).collect::<Vec<_>>().join(" | ")
        )));
    }
    // Downloaded packages are not needed at run time.
    for dir in ["var/cache/apt/archives", "var/lib/apt/lists"] {
        for e in fs::read_dir(rootfs.join(dir))
            .into_iter()
            .flatten()
            .flatten()
        {
            if e.path().is_file() {
                let _ = fs::remove_file(e.path());
            }
        }
    }
    fs::create_dir_all(rootfs.join("app"))?;
    progress("done");
    Ok(())
}

/// Unpack an untrusted rootfs tarball into the empty directory `dest`, entry by entry: absolute
/// paths are made relative, `..` entries are refused, links and parents may never lead outside
/// `dest` (tar's `unpack_in` checks that), and device nodes are skipped (sandboxes get their own
/// /dev).
pub fn unpack_rootfs(reader: impl Read, dest: &Path) -> io::Result<()> {
    let mut reader = BufReader::new(reader);
    let gz = reader.fill_buf()?.starts_with(&[0x1f, 0x8b]);
    let source: Box<dyn Read> = if gz {
        Box::new(flate2::read::GzDecoder::new(reader))
    } else {
        Box::new(reader)
    };
    let mut archive = tar::Archive::new(source);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_unpack_xattrs(false);
    archive.set_overwrite(true);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let kind = entry.header().entry_type();
        if kind.is_block_special() || kind.is_character_special() || kind.is_fifo() {
            continue;
        }
        let path = entry.path()?.into_owned();
        if path.components().any(|c| matches!(c, Component::ParentDir)) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("tarball entry {} climbs out with ..", path.display()),
            ));
        }
        if kind.is_hard_link() {
            let target = entry.link_name()?.unwrap_or_default().into_owned();
            if target
                .components()
                .any(|c| matches!(c, Component::ParentDir))
            {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("hard link {} points out with ..", path.display()),
                ));
            }
        }
        if !entry.unpack_in(dest)? {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "tarball entry {} would land outside the image",
                    path.display()
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tarball(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        build(&mut b);
        b.into_inner().unwrap()
    }

    fn header(kind: tar::EntryType, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_mode(0o644);
        h
    }

    fn file(b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) {
        let mut h = header(tar::EntryType::Regular, data.len() as u64);
        // set_path refuses `..`; write the raw name like a hostile archive would.
        let name = &mut h.as_old_mut().name;
        name[..path.len()].copy_from_slice(path.as_bytes());
        h.set_cksum();
        b.append(&h, data).unwrap();
    }

    fn link(b: &mut tar::Builder<Vec<u8>>, kind: tar::EntryType, path: &str, target: &str) {
        let mut h = header(kind, 0);
        b.append_link(&mut h, path, target).unwrap();
    }

    #[test]
    fn unpacks_a_plain_rootfs_and_skips_devices() {
        let dir = tempfile::tempdir().unwrap();
        let tar = tarball(|b| {
            file(b, "etc/os-release", b"ID=test\n");
            file(b, "./usr/bin/tool", b"#!/bin/sh\n");
            let mut h = header(tar::EntryType::Char, 0);
            h.set_device_major(1).unwrap();
            h.set_device_minor(3).unwrap();
            b.append_data(&mut h, "dev/null", std::io::empty()).unwrap();
        });
        unpack_rootfs(&tar[..], dir.path()).unwrap();
        assert_eq!(
            fs::read(dir.path().join("etc/os-release")).unwrap(),
            b"ID=test\n"
        );
        assert!(dir.path().join("usr/bin/tool").exists());
        assert!(!dir.path().join("dev/null").exists());
    }

    #[test]
    fn refuses_entries_that_climb_out() {
        let outer = tempfile::tempdir().unwrap();
        let dest = outer.path().join("rootfs");
        fs::create_dir(&dest).unwrap();
        let tar = tarball(|b| file(b, "../escaped", b"x"));
        assert!(unpack_rootfs(&tar[..], &dest).is_err());
        assert!(!outer.path().join("escaped").exists());
    }

    #[test]
    fn never_writes_through_a_symlink_to_outside() {
        let outer = tempfile::tempdir().unwrap();
        let dest = outer.path().join("rootfs");
        fs::create_dir(&dest).unwrap();
        let outside = outer.path().join("outside");
        fs::create_dir(&outside).unwrap();
        let tar = tarball(|b| {
            link(
                b,
                tar::EntryType::Symlink,
                "evil",
                outside.to_str().unwrap(),
            );
            file(b, "evil/planted", b"x");
        });
        let err = unpack_rootfs(&tar[..], &dest).unwrap_err();
        assert!(err.to_string().contains("outside"), "{err}");
        assert!(fs::symlink_metadata(dest.join("evil"))
            .unwrap()
            .is_symlink());
        assert!(!outside.join("planted").exists(), "wrote through a symlink");
        let tar = tarball(|b| link(b, tar::EntryType::Link, "hard", "../../etc/passwd"));
        assert!(unpack_rootfs(&tar[..], &dest).is_err());
    }

    #[test]
    fn gzip_is_detected_and_names_are_checked() {
        use std::io::Write;
        let tar = tarball(|b| file(b, "hello", b"hi"));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        let gz = gz.finish().unwrap();
        let images = tempfile::tempdir().unwrap();
        let store = ImageStore::new(images.path()).unwrap();
        let rootfs = store.import_tarball("tiny", &gz[..]).unwrap();
        assert_eq!(fs::read(rootfs.join("hello")).unwrap(), b"hi");
        assert!(
            store.import_tarball("tiny", &gz[..]).is_err(),
            "no silent replacement"
        );
        for bad in ["", "../x", ".hidden", "a/b", "x y"] {
            assert!(store.import_tarball(bad, &gz[..]).is_err(), "{bad:?}");
        }
    }
}
