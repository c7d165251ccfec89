//! Lexical checks on paths that users send for a sandbox. Containment itself is enforced inside
//! the sandbox (the agent resolves paths under the sandbox root, which is all it can see); this
//! only refuses input that is malformed, so users get a clear error early.

/// Why a path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("path is empty")]
    Empty,
    #[error("path contains a NUL byte")]
    Nul,
    #[error("path is longer than 4096 bytes")]
    TooLong,
}

/// Turn a user path into an absolute, lexically normalised path inside the sandbox. Relative
/// paths are taken relative to `cwd`. `..` never climbs above `/`: `/../../etc` is `/etc` of the
/// sandbox, exactly like the kernel treats `..` at a process's root.
pub fn normalize_sandbox_path(path: &str, cwd: &str) -> Result<String, PathError> {
    if path.is_empty() {
        return Err(PathError::Empty);
    }
    if path.contains('\0') {
        return Err(PathError::Nul);
    }
    if path.len() > 4096 {
        return Err(PathError::TooLong);
    }
    let joined = if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("{cwd}/{path}")
    };
    let mut parts: Vec<&str> = Vec::new();
    for part in joined.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    Ok(format!("/{}", parts.join("/")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_and_never_climbs_above_root() {
        assert_eq!(normalize_sandbox_path("a/b", "/app").unwrap(), "/app/a/b");
        assert_eq!(
            normalize_sandbox_path("/x/../../etc/passwd", "/").unwrap(),
            "/etc/passwd"
        );
        assert_eq!(normalize_sandbox_path("../../..", "/app").unwrap(), "/");
        assert_eq!(normalize_sandbox_path("./a//b/.", "/").unwrap(), "/a/b");
        assert_eq!(normalize_sandbox_path("", "/"), Err(PathError::Empty));
        assert_eq!(normalize_sandbox_path("a\0b", "/"), Err(PathError::Nul));
    }
}
