//! What changed between two snapshots of a writable layer, as the sandbox sees it: both upper
//! trees are walked (metadata only, never contents, the two walks in parallel) and every entry
//! that differs is resolved through overlayfs's rules (whiteouts, opaque directories, the image
//! below).
//!
//! Why a walk and not `btrfs send --no-data -p`: it works the same on the tmpfs fallback
//! (whose snapshots are copies), needs no child processes, and walking 10,000 entries twice
//! takes a few milliseconds, inside the 50 ms budget (benches/snapshot_diff.rs).

use super::overlay::{self, Entry, Kind};
use instavm_runtime::{ChangeKind, PathChange};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// One snapshot as the diff sees it: its upper directory over its image's rootfs.
pub struct Side {
    pub upper: PathBuf,
    pub lower: PathBuf,
}

/// Entries of an upper tree by path relative to it ("a/b"), the root excluded.
type Tree = BTreeMap<String, Entry>;

/// `strict`: the snapshots share inodes (btrfs), so inode numbers and ctimes count too; copies
/// (tmpfs) keep only sizes, mtimes, modes and owners.
pub fn diff(from: &Side, to: &Side, strict: bool) -> io::Result<Vec<PathChange>> {
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| walk(&from.upper));
        let b = walk(&to.upper);
        (a.join().expect("walk thread"), b)
    });
    let (a, b) = (a?, b?);
    let mut candidates: BTreeSet<String> = BTreeSet::new();
    for path in a.keys().chain(b.keys()) {
        let (x, y) = (a.get(path), b.get(path));
        if let (Some(x), Some(y)) = (x, y) {
            if overlay::same(x, y, strict) {
                continue;
            }
        }
        candidates.insert(path.clone());
        // Something that starts (or stops) hiding a directory of the image changes everything
        // under it.
        let hides = |e: Option<&Entry>| e.is_some_and(Entry::hides_lower);
        if hides(x) != hides(y) {
            lower_descendants(&from.lower, path, &mut candidates)?;
            lower_descendants(&to.lower, path, &mut candidates)?;
        }
    }
    let mut changes = Vec::new();
    for path in candidates {
        let before = view(&a, &from.lower, &path)?;
        let after = view(&b, &to.lower, &path)?;
        let kind = match (before, after) {
            (None, None) => continue,
            (None, Some(_)) => ChangeKind::Added,
            (Some(_), None) => ChangeKind::Deleted,
            (Some(x), Some(y)) if overlay::same_view(&x, &y, strict) => continue,
            (Some(_), Some(_)) => ChangeKind::Modified,
        };
        changes.push(PathChange {
            path: format!("/{path}"),
            kind,
        });
    }
    Ok(changes)
}

/// What the sandbox sees at `path`: the upper entry, or the image's, or nothing.
fn view(upper: &Tree, lower: &Path, path: &str) -> io::Result<Option<overlay::Seen>> {
    let mut lower_visible = true;
    let mut prefix_end = 0;
    loop {
        let end = path[prefix_end..]
            .find('/')
            .map_or(path.len(), |i| prefix_end + i);
        let prefix = &path[..end];
        let last = end == path.len();
        match upper.get(prefix) {
            // Not in the upper tree: nothing deeper is either.
            None => break,
            Some(e) if e.kind == Kind::Whiteout => return Ok(None),
            Some(e) if last => return Ok(Some(overlay::Seen::Upper(e.clone()))),
            Some(e) if e.kind != Kind::Dir => return Ok(None),
            Some(e) => lower_visible &= !e.opaque,
        }
        prefix_end = end + 1;
    }
    if !lower_visible {
        return Ok(None);
    }
    Ok(overlay::lower_entry(lower, path)?.map(overlay::Seen::Lower))
}

/// Every path under `path` in the image (for a directory deleted or made opaque).
fn lower_descendants(lower: &Path, path: &str, out: &mut BTreeSet<String>) -> io::Result<()> {
    let Some(dir) = overlay::lower_entry(lower, path)? else {
        return Ok(());
    };
    if dir.kind != Kind::Dir {
        return Ok(());
    }
    let mut stack = vec![path.to_owned()];
    while let Some(rel) = stack.pop() {
        for e in read_dir(&lower.join(&rel))? {
            let (name, is_dir) = e?;
            let child = format!("{rel}/{name}");
            if is_dir {
                stack.push(child.clone());
            }
            out.insert(child);
        }
    }
    Ok(())
}

fn walk(upper: &Path) -> io::Result<Tree> {
    let mut tree = Tree::new();
    let mut stack = vec![String::new()];
    while let Some(rel) = stack.pop() {
        let dir = if rel.is_empty() {
            upper.to_path_buf()
        } else {
            upper.join(&rel)
        };
        for e in read_dir(&dir)? {
            let (name, _) = e?;
            let child = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let entry = overlay::entry(&upper.join(&child))?;
            if entry.kind == Kind::Dir {
                stack.push(child.clone());
            }
            tree.insert(child, entry);
        }
    }
    Ok(tree)
}

/// Names (lossy UTF-8: paths are reported as text) and whether each is a directory, never
/// following symlinks.
fn read_dir(dir: &Path) -> io::Result<impl Iterator<Item = io::Result<(String, bool)>>> {
    Ok(fs::read_dir(dir)?.map(|e| {
        let e = e?;
        let is_dir = e.file_type()?.is_dir();
        Ok((e.file_name().to_string_lossy().into_owned(), is_dir))
    }))
}
