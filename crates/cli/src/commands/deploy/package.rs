//! The upload bundle: a `.tar.gz` of the project's regular files, filtered like the reference's
//! `package_source` (built-in excludes first, then the manifest's include list), and the shell
//! helpers the remote scripts need.

use std::io::Write;
use std::path::Path;

use flate2::write::GzEncoder;
use flate2::Compression;

/// The reference's `DEFAULT_SOURCE_EXCLUDES`.
pub const DEFAULT_EXCLUDES: &[&str] = &[
    ".git",
    ".git/*",
    "__pycache__",
    "__pycache__/*",
    ".pytest_cache",
    ".pytest_cache/*",
    ".venv",
    ".venv/*",
    "venv",
    "venv/*",
    "node_modules",
    "node_modules/*",
    ".next",
    ".next/*",
    "dist",
    "dist/*",
    "build",
    "build/*",
    "*.pyc",
    ".DS_Store",
];

/// Python's `fnmatch.fnmatch` on POSIX (case-sensitive): `*` matches across `/`.
pub fn fnmatch(name: &str, pattern: &str) -> bool {
    let name: Vec<char> = name.chars().collect();
    let pat: Vec<char> = pattern.chars().collect();
    matches_from(&name, 0, &pat, 0)
}

fn matches_from(name: &[char], mut n: usize, pat: &[char], mut p: usize) -> bool {
    while p < pat.len() {
        match pat[p] {
            '*' => {
                while p < pat.len() && pat[p] == '*' {
                    p += 1;
                }
                if p == pat.len() {
                    return true;
                }
                return (n..=name.len()).any(|start| matches_from(name, start, pat, p));
            }
            '?' => {
                if n >= name.len() {
                    return false;
                }
                n += 1;
                p += 1;
            }
            '[' => match class_end(pat, p) {
                Some(end) => {
                    if n >= name.len() || !class_matches(&pat[p + 1..end], name[n]) {
                        return false;
                    }
                    n += 1;
                    p = end + 1;
                }
                None => {
                    if n >= name.len() || name[n] != '[' {
                        return false;
                    }
                    n += 1;
                    p += 1;
                }
            },
            c => {
                if n >= name.len() || name[n] != c {
                    return false;
                }
                n += 1;
                p += 1;
            }
        }
    }
    n == name.len()
}

/// The index of the `]` closing the class that opens at `start`, as `fnmatch.translate` reads it.
fn class_end(pat: &[char], start: usize) -> Option<usize> {
    let mut i = start + 1;
    if pat.get(i) == Some(&'!') {
        i += 1;
    }
    if pat.get(i) == Some(&']') {
        i += 1;
    }
    while i < pat.len() && pat[i] != ']' {
        i += 1;
    }
    (i < pat.len()).then_some(i)
}

fn class_matches(class: &[char], c: char) -> bool {
    let (negate, body) = match class.first() {
        Some('!') => (true, &class[1..]),
        _ => (false, class),
    };
    let mut hit = false;
    let mut i = 0;
    while i < body.len() {
        if i + 2 < body.len() && body[i + 1] == '-' {
            if body[i] <= c && c <= body[i + 2] {
                hit = true;
            }
            i += 3;
        } else {
            if body[i] == c {
                hit = true;
            }
            i += 1;
        }
    }
    hit != negate
}

/// The reference's `_should_include`.
pub fn should_include(relative: &str, include: &[String], exclude: &[String]) -> bool {
    if exclude.iter().any(|p| fnmatch(relative, p)) {
        return false;
    }
    if include.is_empty() {
        return true;
    }
    include.iter().any(|p| {
        fnmatch(relative, p)
            || relative == p
            || relative.starts_with(&format!("{}/", p.trim_end_matches('/')))
    })
}

/// The gzipped tarball of `root`'s regular files that pass the filters, and how many there are.
/// Symbolic links are skipped (the reference's `rglob` follows them; we never read outside the
/// project).
pub fn bundle(
    root: &Path,
    include: &[String],
    exclude: &[String],
) -> anyhow::Result<(Vec<u8>, usize)> {
    let mut excludes: Vec<String> = DEFAULT_EXCLUDES.iter().map(|s| s.to_string()).collect();
    excludes.extend(exclude.iter().cloned());
    let mut files = Vec::new();
    collect(root, root, &mut files)?;
    files.sort();
    let gz = GzEncoder::new(Vec::new(), Compression::fast());
    let mut archive = tar::Builder::new(gz);
    archive.follow_symlinks(false);
    let mut count = 0;
    for relative in files {
        if !should_include(&relative, include, &excludes) {
            continue;
        }
        let path = root.join(&relative);
        archive
            .append_path_with_name(&path, &relative)
            .map_err(|e| anyhow::anyhow!("cannot add {} to the bundle: {e}", path.display()))?;
        count += 1;
    }
    let gz = archive.into_inner()?;
    let mut gz_inner = gz;
    gz_inner.flush()?;
    Ok((gz_inner.finish()?, count))
}

/// Every regular file under `dir`, as a `/`-separated path relative to `root`.
fn collect(root: &Path, dir: &Path, out: &mut Vec<String>) -> anyhow::Result<()> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", dir.display()))?;
    for entry in entries {
        let entry = entry?;
        let kind = entry.file_type()?;
        let path = entry.path();
        if kind.is_dir() {
            collect(root, &path, out)?;
        } else if kind.is_file() {
            if let Ok(rel) = path.strip_prefix(root) {
                let parts: Vec<String> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                out.push(parts.join("/"));
            }
        }
    }
    Ok(())
}

/// Python's `shlex.quote`.
pub fn sh_quote(value: &str) -> String {
    if value.is_empty() {
        return "''".into();
    }
    let safe = value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c));
    if safe {
        value.to_owned()
    } else {
        format!("'{}'", value.replace('\'', "'\"'\"'"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnmatch_is_pythons() {
        assert!(fnmatch("a/b/c.pyc", "*.pyc"));
        assert!(fnmatch("node_modules/x/y", "node_modules/*"));
        assert!(!fnmatch("src/node_modules", "node_modules"));
        assert!(fnmatch("file1.txt", "file[0-9].txt"));
        assert!(!fnmatch("filea.txt", "file[!a-z].txt"));
        assert!(fnmatch("a?c", "a[?]c"));
        assert!(fnmatch("anything/at/all", "*"));
    }

    #[test]
    fn include_rules() {
        let inc = vec!["app".to_string(), "main.py".to_string()];
        assert!(should_include("app/x.py", &inc, &[]));
        assert!(should_include("main.py", &inc, &[]));
        assert!(!should_include("other.py", &inc, &[]));
        assert!(!should_include("app/x.pyc", &inc, &["*.pyc".to_string()]));
        assert!(should_include("x", &[], &[]));
    }

    #[test]
    fn quoting() {
        assert_eq!(sh_quote("/root/a-b_c.log"), "/root/a-b_c.log");
        assert_eq!(sh_quote(""), "''");
        assert_eq!(sh_quote("it's"), "'it'\"'\"'s'");
        assert_eq!(sh_quote("a b"), "'a b'");
    }

    #[test]
    fn bundle_filters_and_unpacks() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("node_modules/x")).unwrap();
        std::fs::create_dir_all(dir.path().join("src")).unwrap();
        std::fs::write(dir.path().join("node_modules/x/i.js"), "x").unwrap();
        std::fs::write(dir.path().join("src/app.py"), "print(1)").unwrap();
        std::fs::write(dir.path().join("src/app.pyc"), "x").unwrap();
        let (bytes, count) = bundle(dir.path(), &["*".into()], &[]).unwrap();
        assert_eq!(count, 1);
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]));
        let names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["src/app.py"]);
    }
}
