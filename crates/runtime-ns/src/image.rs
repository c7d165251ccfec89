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
/// What every sandbox can count on, installed by debootstrap. `python-is-python3` because users
/// (and the SDK's README) type `python`; `sudo` because the Agents integration runs installs
/// through `sudo -u root`.
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
/// What deploys need (`pip install`, `npm install`, wheels with C extensions, git sources,
/// tarballs and health probes), installed with apt in a second step so that a change here
/// upgrades an existing image instead of rebuilding it.
const TOOLCHAIN_PACKAGES: &[&str] = &[
    "python3-pip",
    "python3-venv",
    "python3-dev",
    "nodejs",
    "npm",
    "git",
    "build-essential",
    "wget",
    "tar",
    "gzip",
    "unzip",
    "xz-utils",
];

fn core_recipe() -> String {
    format!("debootstrap {SUITE} ({})", BASE_PACKAGES.join(","))
}

/// What the base image is built from; an image built from another recipe is outdated, and
/// `instavm image build` upgrades it.
fn base_recipe() -> String {
    format!(
        "{} + apt ({}) + host CAs",
        core_recipe(),
        TOOLCHAIN_PACKAGES.join(",")
    )
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

    /// Like `ensure_base`, reporting each build step (debootstrap's and apt's progress lines).
    /// A server uses an outdated image as it is (and says so); use `upgrade_base` to bring it
    /// up to date.
    pub fn ensure_base_with(&self, progress: &dyn Fn(&str)) -> io::Result<PathBuf> {
        if let Some(p) = self.rootfs(BASE) {
            self.warn_if_outdated();
            return Ok(p);
        }
        self.build_base(progress)
    }

    /// Build the base image if it is missing, or bring an outdated one up to the current
    /// recipe: when only the apt step changed, a copy of it gets the missing packages (seconds
    /// instead of a new debootstrap), else it is built again. The new tree replaces the old one
    /// by rename; the old one is retired, not deleted, because sandboxes started from it may
    /// still use it as their lower layer. Returns the rootfs and whether anything was built.
    pub fn upgrade_base(&self, progress: &dyn Fn(&str)) -> io::Result<(PathBuf, bool)> {
        let _lock = sys::lock_file(&self.dir.join(".lock"))?;
        self.prune_retired(progress);
        let current = self.meta(BASE);
        match current {
            None => {
                drop(_lock);
                return self.build_base(progress).map(|p| (p, true));
            }
            Some(m) if m.source == base_recipe() => {
                return Ok((self.dir.join(BASE).join("rootfs"), false));
            }
            Some(m) => {
                let tmp = self.fresh_tmp(BASE)?;
                let rootfs = tmp.join("rootfs");
                let result = if m.source.starts_with(&core_recipe()) {
                    progress("copying the current image to add packages");
                    copy_tree(&self.dir.join(BASE).join("rootfs"), &rootfs)
                        .and_then(|()| install_toolchain(&rootfs, progress))
                } else {
                    build_debian(&rootfs, progress)
                        .and_then(|()| install_toolchain(&rootfs, progress))
                };
                if let Err(e) = result {
                    let _ = fs::remove_dir_all(&tmp);
                    return Err(e);
                }
                self.retire(BASE)?;
                self.publish(&tmp, BASE, &base_recipe())?;
            }
        }
        Ok((self.dir.join(BASE).join("rootfs"), true))
    }

    fn build_base(&self, progress: &dyn Fn(&str)) -> io::Result<PathBuf> {
        let _lock = sys::lock_file(&self.dir.join(".lock"))?;
        // Someone else may have built it while we waited for the lock.
        if let Some(p) = self.rootfs(BASE) {
            return Ok(p);
        }
        let tmp = self.fresh_tmp(BASE)?;
        let rootfs = tmp.join("rootfs");
        let result =
            build_debian(&rootfs, progress).and_then(|()| install_toolchain(&rootfs, progress));
        if let Err(e) = result {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
        self.publish(&tmp, BASE, &base_recipe())?;
        self.rootfs(BASE)
            .ok_or_else(|| io::Error::other("base image missing after build"))
    }

    fn meta(&self, name: &str) -> Option<ImageMeta> {
        fs::read(self.dir.join(name).join("image.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
    }

    /// Move an image out of the way into `.retired/`.
    fn retire(&self, name: &str) -> io::Result<()> {
        let retired = self.dir.join(".retired");
        fs::create_dir_all(&retired)?;
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S");
        fs::rename(
            self.dir.join(name),
            retired.join(format!("{name}-{stamp}-{}", std::process::id())),
        )
    }

    /// Retired trees are deleted once no sandbox runs on this host: every sandbox holds an
    /// address slot in the host-wide pool, so an empty pool means nobody can be using them.
    fn prune_retired(&self, progress: &dyn Fn(&str)) {
        let retired = self.dir.join(".retired");
        let Ok(entries) = fs::read_dir(&retired) else {
            return;
        };
        if crate::slots::claimed_this_boot(crate::network::IPAM_DIR) {
            progress("keeping retired images: sandboxes are running on this host");
            return;
        }
        for e in entries.flatten() {
            progress(&format!(
                "removing retired image {}",
                e.file_name().to_string_lossy()
            ));
            let _ = fs::remove_dir_all(e.path());
        }
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
        if self.meta(BASE).is_some_and(|m| m.source != base_recipe()) {
            ONCE.call_once(|| {
                tracing::warn!(
                    "the base image in {} was built from another recipe than this version's \
                     ({}); run `instavm image build` to upgrade it",
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
    // debootstrap's own progress lines: "I: Retrieving ...", "I: Configuring ...".
    let status = follow(&mut child, progress, |line| line.strip_prefix("I: "))?;
    if let Err(tail) = status {
        return Err(io::Error::other(format!("debootstrap failed ({tail})")));
    }
    fs::create_dir_all(rootfs.join("app"))?;
    Ok(())
}

/// apt-get the toolchain into `rootfs` (in a private mount and pid namespace, with its own
/// /proc), trust the certificate authorities the host trusts beyond Debian's, let pip install
/// into the system Python (Debian marks it externally managed; a sandbox is the user's own
/// machine), and drop the package caches.
fn install_toolchain(rootfs: &Path, progress: &dyn Fn(&str)) -> io::Result<()> {
    progress(&format!("installing {}", TOOLCHAIN_PACKAGES.join(" ")));
    let added = copy_host_cas(rootfs)?;
    if added > 0 {
        progress(&format!(
            "trusting {added} extra certificate authorities of this host"
        ));
    }
    let resolv = rootfs.join("etc/resolv.conf");
    let saved_resolv = fs::read(&resolv).ok();
    // A dangling symlink here would send apt's lookups nowhere.
    let _ = fs::remove_file(&resolv);
    fs::copy("/etc/resolv.conf", &resolv)?;
    let script = format!(
        "set -e; apt-get update -q; DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
         --no-install-recommends {}; apt-get clean; update-ca-certificates >/dev/null",
        TOOLCHAIN_PACKAGES.join(" ")
    );
    let proc_dir = rootfs.join("proc");
    let mut child = Command::new("unshare")
        .arg("--mount")
        .arg("--fork")
        .arg("--pid")
        .arg(format!("--mount-proc={}", proc_dir.display()))
        .arg("chroot")
        .arg(rootfs)
        .args(["/bin/sh", "-c", &script])
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot run unshare/chroot: {e}")))?;
    // apt's summary lines ("Need to get 150 MB of archives.", "Fetched ..."), not one per package.
    let status = follow(&mut child, progress, |line| {
        ["Need to get ", "After this operation", "Fetched "]
            .iter()
            .any(|p| line.starts_with(p))
            .then_some(line)
    })?;
    match saved_resolv {
        Some(bytes) => fs::write(&resolv, bytes)?,
        None => fs::remove_file(&resolv)?,
    }
    if let Err(tail) = status {
        return Err(io::Error::other(format!("apt-get failed: {tail}")));
    }
    fs::write(
        rootfs.join("etc/pip.conf"),
        "[global]\nbreak-system-packages = true\nroot-user-action = ignore\n",
    )?;
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
    progress("done");
    Ok(())
}

/// The host's trust store may hold authorities Debian's does not (an operator's private CA, a
/// TLS-inspecting proxy in front of the package registries); without them `pip install` in a
/// sandbox fails where it works on the host. Each becomes a file update-ca-certificates reads.
fn copy_host_cas(rootfs: &Path) -> io::Result<usize> {
    const BUNDLE: &str = "etc/ssl/certs/ca-certificates.crt";
    let pem_blocks = |text: &str| -> Vec<String> {
        text.split_inclusive("-----END CERTIFICATE-----")
            .filter_map(|b| {
                b.find("-----BEGIN CERTIFICATE-----")
                    .map(|i| b[i..].to_owned())
            })
            .collect()
    };
    let host = fs::read_to_string(Path::new("/").join(BUNDLE)).unwrap_or_default();
    let image = fs::read_to_string(rootfs.join(BUNDLE)).unwrap_or_default();
    let known: std::collections::HashSet<String> = pem_blocks(&image).into_iter().collect();
    let dir = rootfs.join("usr/local/share/ca-certificates");
    fs::create_dir_all(&dir)?;
    let mut added = 0;
    for block in pem_blocks(&host).into_iter().filter(|b| !known.contains(b)) {
        added += 1;
        fs::write(
            dir.join(format!("instavm-host-{added}.crt")),
            format!("{block}\n"),
        )?;
    }
    Ok(added)
}

/// Wait for a build step, passing the stdout lines `pick` selects to `progress`; `Err` holds
/// the last lines of stderr when the step failed.
fn follow(
    child: &mut std::process::Child,
    progress: &dyn Fn(&str),
    pick: impl Fn(&str) -> Option<&str>,
) -> io::Result<Result<(), String>> {
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
            if let Some(step) = pick(&line) {
                progress(step);
            }
        }
    }
    let status = child.wait()?;
    let stderr = err_thread.join().unwrap_or_default();
    if status.success() {
        return Ok(Ok(()));
    }
    let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
    Ok(Err(format!(
        "{status}: {}",
        tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
    )))
}

/// `cp -a` (reflinks where the filesystem has them): faithful to owners, modes, links and
/// special files, which a copy of a root filesystem needs.
fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    let _ = fs::remove_dir(to);
    let status = Command::new("cp")
        .args(["-a", "--reflink=auto"])
        .arg(from)
        .arg(to)
        .status()?;
    if !status.success() {
        return Err(io::Error::other(format!("cp -a failed ({status})")));
    }
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
