//! The paths btrfs says changed between two read-only snapshots: `btrfs send --no-data -p
//! <from> <to> | btrfs receive --dump`, parsed.
//!
//! The dump is a list of operations that turn `from` into `to`, one a line: `<op> <path>
//! [key=value...]`, paths relative to the receiving side (`./<to>/...`) and escaped (`\ `,
//! `\\`, `\n`, octal `\303`). New inodes are made under temporary names at the snapshot's root
//! (`o<ino>-<gen>-<n>`) and renamed into place, and a path names an inode where it is at that
//! point of the stream, which may be neither its old nor its new name. So what comes out is a
//! superset to check, not the answer: every path named under `upper/`, plus every rename, whose
//! old and new subtrees the caller lists (the first rename of an ancestor carries its old name,
//! the last one its new name).

use std::collections::BTreeSet;
use std::io::{self, Read};
use std::path::Path;
use std::process::{Command, Stdio};

/// What the stream names, relative to the snapshots' upper directories.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changed {
    pub paths: BTreeSet<String>,
    /// (source, destination) of every rename, each when in the upper directory (not a
    /// temporary name).
    pub renames: Vec<(Option<String>, Option<String>)>,
    /// The upper directory itself was replaced (snapshots of unrelated layers): everything
    /// under it is named under a temporary name, so the stream says nothing usable.
    pub replaced: bool,
    /// A name that is not UTF-8: the text form of the paths cannot be looked up again.
    pub lossy: bool,
}

pub fn changes(snapshots: &Path, from: &str, to: &str) -> io::Result<Changed> {
    let mut send = Command::new("btrfs")
        .args(["send", "-q", "--no-data", "-p"])
        .arg(snapshots.join(from))
        .arg(snapshots.join(to))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let stream = send.stdout.take().expect("piped stdout");
    let dump = Command::new("btrfs")
        .args(["receive", "--dump"])
        .stdin(stream)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let dump = match dump {
        Ok(d) => d,
        Err(e) => {
            let _ = send.kill();
            let _ = send.wait();
            return Err(e);
        }
    };
    let out = dump.wait_with_output()?;
    let mut send_err = String::new();
    if let Some(mut e) = send.stderr.take() {
        let _ = e.read_to_string(&mut send_err);
    }
    let sent = send.wait()?;
    if !sent.success() || !out.status.success() {
        return Err(io::Error::other(format!(
            "btrfs send/receive: {} {}",
            send_err.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(parse(&out.stdout, to))
}

fn parse(dump: &[u8], to: &str) -> Changed {
    let upper = format!("./{to}/upper");
    let prefix = format!("{upper}/");
    let in_upper = |p: &str| p.strip_prefix(&prefix).map(str::to_owned);
    let mut changed = Changed::default();
    for line in dump.split(|&b| b == b'\n') {
        let tokens = tokens(line, &mut changed.lossy);
        let (Some(op), Some(path)) = (tokens.first(), tokens.get(1)) else {
            continue;
        };
        if op == "snapshot" || op == "subvol" {
            continue;
        }
        let path = in_upper(path);
        // `dest=` is a path for these two; for a symlink it is the link's target.
        let dest = match op.as_str() {
            "rename" | "link" => tokens
                .iter()
                .skip(2)
                .find_map(|t| t.strip_prefix("dest="))
                .and_then(in_upper),
            _ => None,
        };
        if op == "rename" && tokens[1] == upper {
            changed.replaced = true;
        }
        if op == "rename" && (path.is_some() || dest.is_some()) {
            changed.renames.push((path.clone(), dest.clone()));
        }
        changed.paths.extend(path.into_iter().chain(dest));
    }
    changed.paths.remove("");
    changed
}

/// Split on unescaped spaces and unescape each token (lossy UTF-8, noted in `lossy`: paths are
/// reported as text).
fn tokens(line: &[u8], lossy: &mut bool) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur: Vec<u8> = Vec::new();
    let mut in_token = false;
    let mut i = 0;
    while i < line.len() {
        let b = line[i];
        i += 1;
        match b {
            b' ' | b'\t' => {
                if in_token {
                    out.push(text(&cur, lossy));
                    cur.clear();
                    in_token = false;
                }
                continue;
            }
            b'\\' if i < line.len() => {
                let e = line[i];
                i += 1;
                let byte = match e {
                    b'a' => 7,
                    b'b' => 8,
                    b'e' => 27,
                    b'f' => 12,
                    b'n' => b'\n',
                    b'r' => b'\r',
                    b't' => b'\t',
                    b'v' => 11,
                    b'0'..=b'7' => {
                        let mut v = u32::from(e - b'0');
                        for _ in 0..2 {
                            match line.get(i) {
                                Some(&d @ b'0'..=b'7') => {
                                    v = v * 8 + u32::from(d - b'0');
                                    i += 1;
                                }
                                _ => break,
                            }
                        }
                        v as u8
                    }
                    other => other,
                };
                cur.push(byte);
            }
            other => cur.push(other),
        }
        in_token = true;
    }
    if in_token {
        out.push(text(&cur, lossy));
    }
    out
}

fn text(bytes: &[u8], lossy: &mut bool) -> String {
    let s = String::from_utf8_lossy(bytes);
    *lossy |= matches!(s, std::borrow::Cow::Owned(_));
    s.into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_renames_from_temporary_names_escapes_and_symlink_targets() {
        let dump = br#"snapshot        ./c                             uuid=d transid=9 parent_uuid=c parent_transid=8
rename          ./c/upper/tree/d3               dest=./c/upper/d3moved
mkfile          ./c/o10360-9-0
rename          ./c/o10360-9-0                  dest=./c/upper/a\ b
rename          ./c/o10362-9-0                  dest=./c/upper/\303\251\\x\nz
symlink         ./c/o10365-9-0                  dest=/etc/shadow\ x
rename          ./c/o10365-9-0                  dest=./c/upper/lnk
update_extent   ./c/upper/f                     offset=0 len=4
utimes          ./c/upper                       atime=x mtime=y ctime=z
unlink          ./c/work/work/x
rmdir           ./c/o10370-9-0/gone
"#;
        let c = parse(dump, "c");
        assert!(!c.replaced && !c.lossy);
        let paths: Vec<&str> = c.paths.iter().map(String::as_str).collect();
        assert_eq!(
            paths,
            ["a b", "d3moved", "f", "lnk", "tree/d3", "é\\x\nz"],
            "{c:?}"
        );
        assert_eq!(
            c.renames,
            [
                (Some("tree/d3".to_owned()), Some("d3moved".to_owned())),
                (None, Some("a b".to_owned())),
                (None, Some("é\\x\nz".to_owned())),
                (None, Some("lnk".to_owned())),
            ]
        );
    }

    #[test]
    fn a_replaced_upper_directory_is_reported() {
        let dump = b"snapshot ./o uuid=a transid=1\nrename ./o/upper dest=./o/o257-7-0\n\
                     mkdir ./o/o257-11-0\nrename ./o/o257-11-0 dest=./o/upper\n";
        assert!(parse(dump, "o").replaced);
        assert!(parse(b"mkfile ./o/upper/bad\\377\n", "o").lossy);
    }
}
