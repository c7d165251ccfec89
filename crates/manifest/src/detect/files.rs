//! File-system access with the reference's error handling: Python `OSError`s are skipped where
//! `_detect.py` catches them, while a file that is not UTF-8 raises (a `ValueError`).

use std::path::{Path, PathBuf};

use super::DetectError;
use crate::py::text::{self, Decode, ReadTextError};

/// `Path.read_text(encoding="utf-8")` where the caller catches `OSError`: `Ok(None)` when the
/// OS refuses, an error when the bytes are not UTF-8.
pub fn read_strict(path: &Path) -> Result<Option<String>, DetectError> {
    match text::read_text(path, Decode::Strict) {
        Ok(text) => Ok(Some(text)),
        Err(ReadTextError::Io(_)) => Ok(None),
        Err(ReadTextError::Decode(err)) => Err(DetectError::Python(err)),
    }
}

/// `read_text(encoding="utf-8", errors="ignore")` where `OSError` is caught.
pub fn read_lossy(path: &Path) -> Option<String> {
    text::read_text(path, Decode::Ignore).ok()
}

/// `Path.is_dir()`, following symlinks.
pub fn is_dir(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_dir())
}

/// Entries of a directory in `os.scandir` order (the order `readdir` returns).
fn scandir(dir: &Path) -> Vec<(String, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect()
}

/// `path.glob("*<suffix>")`: every entry (files and directories, hidden ones too) whose name
/// ends with `suffix`, in directory order.
pub fn glob_suffix(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    scandir(dir)
        .into_iter()
        .filter(|(name, _)| name.ends_with(suffix))
        .map(|(_, path)| path)
        .collect()
}

/// The names of the sub-directories of `dir` (following symlinks), sorted.
pub fn sorted_subdirs(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = scandir(dir)
        .into_iter()
        .filter(|(_, path)| is_dir(path))
        .map(|(name, _)| name)
        .collect();
    names.sort();
    names
}

const SKIP_DIRS: [&str; 8] = [
    "node_modules",
    ".venv",
    "venv",
    "__pycache__",
    ".git",
    "dist",
    "build",
    ".next",
];

/// `Path.suffix`: the last dotted part of the name, not counting a leading dot.
fn suffix(name: &str) -> &str {
    match name.rfind('.') {
        Some(i) if i > 0 && i < name.len() - 1 => &name[i..],
        _ => "",
    }
}

/// `_iter_project_files`: `os.walk` top-down without following directory symlinks, skipping
/// dependency and build directories, keeping files with the given suffix or name.
pub fn project_files(root: &Path, filter: &dyn Fn(&str) -> bool) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let mut subdirs = Vec::new();
        for (name, path) in scandir(&dir) {
            if is_dir(&path) {
                let is_link =
                    std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink());
                if !SKIP_DIRS.contains(&name.as_str()) && !is_link {
                    subdirs.push(path);
                }
            } else if filter(&name) {
                found.push(path);
            }
        }
        // Visit sub-directories in listing order: push them reversed onto the stack.
        pending.extend(subdirs.into_iter().rev());
    }
    found
}

pub fn with_suffix(ext: &'static str) -> impl Fn(&str) -> bool {
    move |name: &str| suffix(name) == ext
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffix_follows_pathlib() {
        assert_eq!(suffix("a.py"), ".py");
        assert_eq!(suffix(".py"), "");
        assert_eq!(suffix("..py"), ".py");
        assert_eq!(suffix("foo."), "");
        assert_eq!(suffix("a.b.ts"), ".ts");
    }
}
