//! `zoneinfo.ZoneInfo(key)` as the reference uses it for `schedule.timezone`: a malformed key
//! or a file that is not TZif raises `ValueError`; a key missing from the local tz database only
//! produces a Python warning.

use std::io::Read;
use std::path::Path;

use crate::py::path::normpath;
use crate::py::PyError;

/// Python's default `zoneinfo.TZPATH` on Linux.
const TZPATH: [&str; 4] = [
    "/usr/share/zoneinfo",
    "/usr/lib/zoneinfo",
    "/usr/share/lib/zoneinfo",
    "/etc/zoneinfo",
];

/// What looking up a zone key found.
#[derive(Debug, PartialEq, Eq)]
pub enum ZoneLookup {
    Found,
    /// Not in the local database: the reference warns and accepts it.
    NotFound,
}

pub fn check_zone(key: &str) -> Result<ZoneLookup, PyError> {
    validate_key(key)?;
    for dir in TZPATH {
        let path = Path::new(dir).join(key);
        if !path.is_file() {
            continue;
        }
        let mut magic = [0u8; 4];
        let ok = std::fs::File::open(&path)
            .and_then(|mut f| f.read_exact(&mut magic))
            .is_ok();
        if !ok || &magic != b"TZif" {
            return Err(PyError::value("Invalid TZif file: magic not found"));
        }
        return Ok(ZoneLookup::Found);
    }
    Ok(ZoneLookup::NotFound)
}

/// `zoneinfo._tzpath._validate_tzfile_path`.
fn validate_key(key: &str) -> Result<(), PyError> {
    if key.starts_with('/') {
        return Err(PyError::value(format!(
            "ZoneInfo keys may not be absolute paths, got: {key}"
        )));
    }
    let normalized = normpath(key);
    if normalized.chars().count() != key.chars().count() {
        return Err(PyError::value(format!(
            "ZoneInfo keys must be normalized relative paths, got: {key}"
        )));
    }
    let resolved = normpath(&format!("_/{normalized}"));
    if !resolved.starts_with("_/") {
        return Err(PyError::value(format!(
            "ZoneInfo keys must refer to subdirectories of TZPATH, got: {key}"
        )));
    }
    Ok(())
}
