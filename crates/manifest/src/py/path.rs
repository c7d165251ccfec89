//! `pathlib` and `os.path` behaviour for the paths the reference prints in messages.

use std::path::{Component, Path, PathBuf};

/// `Path(base) / rel`: an absolute `rel` replaces `base`; empty and `.` parts vanish.
pub fn pathlib_join(base: &Path, rel: &str) -> PathBuf {
    let mut out = if rel.starts_with('/') {
        PathBuf::from("/")
    } else {
        base.to_path_buf()
    };
    for part in rel.split('/') {
        if !part.is_empty() && part != "." {
            out.push(part);
        }
    }
    out
}

/// `os.path.normpath` (POSIX).
pub fn normpath(path: &str) -> String {
    if path.is_empty() {
        return ".".to_string();
    }
    let initial = if path.starts_with("//") && !path.starts_with("///") {
        2
    } else if path.starts_with('/') {
        1
    } else {
        0
    };
    let mut parts: Vec<&str> = Vec::new();
    for comp in path.split('/') {
        if comp.is_empty() || comp == "." {
            continue;
        }
        if comp != ".." || (initial == 0 && parts.is_empty()) || parts.last() == Some(&"..") {
            parts.push(comp);
        } else if !parts.is_empty() {
            parts.pop();
        }
    }
    let joined = format!("{}{}", "/".repeat(initial), parts.join("/"));
    if joined.is_empty() {
        ".".to_string()
    } else {
        joined
    }
}

/// `Path(p).resolve()`: absolute, symlinks of the existing part resolved, the rest normalised.
pub fn resolve(path: &Path) -> PathBuf {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .unwrap_or_else(|_| PathBuf::from("/"))
            .join(path)
    };
    if let Ok(real) = absolute.canonicalize() {
        return real;
    }
    // Resolve the longest existing prefix, then apply the remaining parts lexically.
    let components: Vec<Component<'_>> = absolute.components().collect();
    for split in (0..components.len()).rev() {
        let prefix: PathBuf = components[..split].iter().collect();
        if let Ok(mut real) = prefix.canonicalize() {
            for comp in &components[split..] {
                match comp {
                    Component::ParentDir => {
                        real.pop();
                    }
                    Component::Normal(part) => real.push(part),
                    _ => {}
                }
            }
            return real;
        }
    }
    absolute
}

/// `os.path.expanduser` for `~` and `~/...` (HOME), other paths unchanged.
pub fn expanduser(path: &str) -> PathBuf {
    let home = std::env::var_os("HOME");
    match (path.strip_prefix('~'), home) {
        (Some(rest), Some(home)) if rest.is_empty() || rest.starts_with('/') => {
            let home = PathBuf::from(home);
            let trimmed = rest.trim_start_matches('/');
            if trimmed.is_empty() {
                home
            } else {
                home.join(trimmed)
            }
        }
        _ => PathBuf::from(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_and_normpath_follow_python() {
        assert_eq!(pathlib_join(Path::new("/x"), "."), PathBuf::from("/x"));
        assert_eq!(
            pathlib_join(Path::new("/x"), "./a//b/"),
            PathBuf::from("/x/a/b")
        );
        assert_eq!(pathlib_join(Path::new("/x"), "/etc"), PathBuf::from("/etc"));
        assert_eq!(
            pathlib_join(Path::new("/x"), "../y"),
            PathBuf::from("/x/../y")
        );
        assert_eq!(normpath("a/../b"), "b");
        assert_eq!(normpath(".."), "..");
        assert_eq!(normpath("UTC/"), "UTC");
        assert_eq!(normpath(""), ".");
        assert_eq!(normpath("//a"), "//a");
    }
}
