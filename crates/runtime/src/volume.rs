//! Types of the volume capability: persistent, quota-limited file trees with read-only
//! checkpoints, mounted into running sandboxes.

use serde::{Deserialize, Serialize};

/// 1 to 64 of `[a-z0-9_]`: the server's record ids (`vol_...`, `ckpt_...`), so they can name
/// subvolumes and directories with no mapping table.
fn valid(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_'))
}

macro_rules! store_name {
    ($name:ident, $what:literal) => {
        #[doc = concat!("Names a ", $what, " held by the runtime (see `valid`).")]
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn parse(s: &str) -> Option<Self> {
                valid(s).then(|| $name(s.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(s: String) -> Result<Self, String> {
                $name::parse(&s).ok_or_else(|| format!(concat!("invalid ", $what, " id {:?}"), s))
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

store_name!(VolumeId, "volume");
store_name!(CheckpointId, "checkpoint");

/// A volume to mount into a sandbox: the live volume read-write, or one of its checkpoints
/// read-only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeMount {
    pub volume: VolumeId,
    /// `Some` for a read-only mount of that checkpoint; `None` mounts the live volume `rw`.
    pub checkpoint: Option<CheckpointId>,
    /// Absolute path inside the sandbox (checked by [`check_mount_path`]).
    pub mount_path: String,
}

/// A file of a volume as the files API lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeFileInfo {
    /// Relative to the volume root, `/`-separated.
    pub path: String,
    pub size: u64,
    /// Seconds since the epoch.
    pub modified: i64,
}

/// Why a path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VolumePathError {
    #[error("path is empty")]
    Empty,
    #[error("path must be relative to the volume root, not absolute")]
    Absolute,
    #[error("path must not contain '..'")]
    DotDot,
    #[error("path contains a NUL byte")]
    Nul,
    #[error("path is longer than 4096 bytes")]
    TooLong,
}

/// The lexical form of a path inside a volume: relative, no `..`, `.` and empty segments
/// dropped. Containment on disk is enforced again when the path is opened (no symlinks).
pub fn volume_path(raw: &str) -> Result<String, VolumePathError> {
    if raw.contains('\0') {
        return Err(VolumePathError::Nul);
    }
    if raw.len() > 4096 {
        return Err(VolumePathError::TooLong);
    }
    if raw.starts_with('/') {
        return Err(VolumePathError::Absolute);
    }
    let mut parts = Vec::new();
    for seg in raw.split('/') {
        match seg {
            "" | "." => {}
            ".." => return Err(VolumePathError::DotDot),
            s => parts.push(s),
        }
    }
    if parts.is_empty() {
        return Err(VolumePathError::Empty);
    }
    Ok(parts.join("/"))
}

/// Where a volume may be mounted: absolute, normalised, not `/`, and not inside the kernel's
/// file systems (`/proc`, `/sys`, `/dev`), whose masks keep host information out of reach.
pub fn check_mount_path(raw: &str) -> Result<String, String> {
    if !raw.starts_with('/') {
        return Err(format!("mount_path {raw:?} must be absolute"));
    }
    if raw.contains('\0') || raw.len() > 1024 {
        return Err("mount_path must be at most 1024 bytes, without NUL".into());
    }
    let mut parts = Vec::new();
    for seg in raw.split('/') {
        match seg {
            "" | "." => {}
            ".." => return Err(format!("mount_path {raw:?} must not contain '..'")),
            s => parts.push(s),
        }
    }
    let Some(first) = parts.first() else {
        return Err("mount_path must not be /".into());
    };
    if matches!(*first, "proc" | "sys" | "dev") {
        return Err(format!(
            "mount_path {raw:?} is inside /{first}; volumes cannot be mounted in /proc, /sys or /dev"
        ));
    }
    Ok(format!("/{}", parts.join("/")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_paths_stay_relative_and_never_climb() {
        assert_eq!(volume_path("docs//./README.md").unwrap(), "docs/README.md");
        assert_eq!(volume_path("/etc/passwd"), Err(VolumePathError::Absolute));
        assert_eq!(volume_path("a/../../b"), Err(VolumePathError::DotDot));
        assert_eq!(volume_path("./"), Err(VolumePathError::Empty));
        assert_eq!(volume_path("a\0"), Err(VolumePathError::Nul));
    }

    #[test]
    fn mount_paths_are_checked() {
        assert_eq!(check_mount_path("/data/").unwrap(), "/data");
        assert!(check_mount_path("/").is_err());
        assert!(check_mount_path("//.").is_err());
        assert!(check_mount_path("data").is_err());
        assert!(check_mount_path("/proc/x").is_err());
        assert!(check_mount_path("/sys").is_err());
        assert!(check_mount_path("/dev/shm/v").is_err());
        assert!(check_mount_path("/a/../proc").is_err());
        assert_eq!(check_mount_path("/devices").unwrap(), "/devices");
    }
}
