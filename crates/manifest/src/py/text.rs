//! Python `str` behaviour the reference relies on: `isspace`, `strip`, `split`, `splitlines`,
//! `repr`, and reading files like `Path.read_text(encoding="utf-8")`.

use std::io;
use std::path::Path;

use super::PyError;

/// `str.isspace()` for one character. Rust's `char::is_whitespace` misses `\x1c`..`\x1f`.
pub fn is_space(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n'
            | '\x0b'
            | '\x0c'
            | '\r'
            | '\x1c'..='\x1f'
            | ' '
            | '\u{85}'
            | '\u{a0}'
            | '\u{1680}'
            | '\u{2000}'..='\u{200a}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{202f}'
            | '\u{205f}'
            | '\u{3000}'
    )
}

/// `str.strip()`.
pub fn strip(s: &str) -> &str {
    s.trim_matches(is_space)
}

/// `str.split()` without arguments: runs of whitespace separate, empty parts are dropped.
pub fn split_whitespace(s: &str) -> Vec<&str> {
    s.split(is_space).filter(|part| !part.is_empty()).collect()
}

/// `str.splitlines()`: every Unicode line boundary Python knows, `\r\n` counted once.
pub fn splitlines(s: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let boundary = matches!(
            c,
            '\n' | '\r'
                | '\x0b'
                | '\x0c'
                | '\x1c'
                | '\x1d'
                | '\x1e'
                | '\u{85}'
                | '\u{2028}'
                | '\u{2029}'
        );
        if !boundary {
            continue;
        }
        lines.push(&s[start..i]);
        let mut end = i + c.len_utf8();
        if c == '\r' {
            if let Some(&(j, '\n')) = chars.peek() {
                chars.next();
                end = j + 1;
            }
        }
        start = end;
    }
    if start < s.len() {
        lines.push(&s[start..]);
    }
    lines
}

/// Whether Python's `str.isprintable()` holds for `c`, for the characters `repr` escapes.
/// Approximate: control, format, separator and private-use characters that matter in practice.
fn is_printable(c: char) -> bool {
    let cp = c as u32;
    !(cp < 0x20
        || (0x7f..=0xa0).contains(&cp)
        || cp == 0xad
        || (0x2000..=0x200f).contains(&cp)
        || (0x2028..=0x202f).contains(&cp)
        || (0x205f..=0x206f).contains(&cp)
        || cp == 0x1680
        || cp == 0x3000
        || cp == 0xfeff
        || (0xfff9..=0xfffb).contains(&cp)
        || (0xe000..=0xf8ff).contains(&cp)
        || cp >= 0xf0000)
}

/// `repr(str)`: single quotes unless the text holds `'` and no `"`.
pub fn repr_str(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if is_printable(c) => out.push(c),
            c if (c as u32) < 0x100 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push(quote);
    out
}

/// How to treat bytes that are not UTF-8, like the `errors=` argument of `read_text`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Decode {
    /// Fail with Python's `UnicodeDecodeError` message.
    Strict,
    /// Drop the bad bytes.
    Ignore,
}

/// Why reading a text file failed: the OS refused (Python `OSError`), or the bytes are not UTF-8
/// (Python `UnicodeDecodeError`, a `ValueError`).
#[derive(Debug)]
pub enum ReadTextError {
    Io(io::Error),
    Decode(PyError),
}

/// `Path(path).read_text(encoding="utf-8", errors=...)`, including universal newlines
/// (`\r\n` and `\r` become `\n`).
pub fn read_text(path: &Path, mode: Decode) -> Result<String, ReadTextError> {
    let bytes = std::fs::read(path).map_err(ReadTextError::Io)?;
    let text = decode_utf8(&bytes, mode).map_err(ReadTextError::Decode)?;
    Ok(universal_newlines(text))
}

fn universal_newlines(text: String) -> String {
    if !text.contains('\r') {
        return text;
    }
    text.replace("\r\n", "\n").replace('\r', "\n")
}

/// Decodes UTF-8 the way CPython does, with its error message on failure in strict mode.
pub fn decode_utf8(bytes: &[u8], mode: Decode) -> Result<String, PyError> {
    let mut out = String::with_capacity(bytes.len());
    let mut rest = bytes;
    let mut offset = 0;
    loop {
        match std::str::from_utf8(rest) {
            Ok(valid) => {
                out.push_str(valid);
                return Ok(out);
            }
            Err(err) => {
                let good = err.valid_up_to();
                // `good` bytes were just checked, so this slice is valid UTF-8.
                out.push_str(std::str::from_utf8(&rest[..good]).unwrap_or_default());
                let start = offset + good;
                let bad_len = err.error_len().unwrap_or(rest.len() - good);
                if mode == Decode::Strict {
                    return Err(utf8_error(bytes, start, bad_len, err.error_len().is_none()));
                }
                offset = start + bad_len;
                rest = &rest[good + bad_len..];
            }
        }
    }
}

/// CPython's `UnicodeDecodeError` text for a bad sequence of `len` bytes at `start`.
fn utf8_error(bytes: &[u8], start: usize, len: usize, truncated: bool) -> PyError {
    let first = bytes[start];
    let reason = if truncated {
        "unexpected end of data"
    } else if len == 1 && !(0xc2..=0xf4).contains(&first) {
        "invalid start byte"
    } else {
        "invalid continuation byte"
    };
    let message = if len == 1 {
        format!("'utf-8' codec can't decode byte 0x{first:02x} in position {start}: {reason}")
    } else {
        format!(
            "'utf-8' codec can't decode bytes in position {start}-{}: {reason}",
            start + len - 1
        )
    };
    PyError::value(message)
}

/// Python's `str(OSError)`: `[Errno 21] Is a directory: '/x'`.
pub fn os_error_text(err: &io::Error, path: &Path) -> String {
    let display = err.to_string();
    let description = display
        .rsplit_once(" (os error ")
        .map_or(display.as_str(), |(text, _)| text);
    match err.raw_os_error() {
        Some(code) => format!(
            "[Errno {code}] {description}: {}",
            repr_str(&path.to_string_lossy())
        ),
        None => description.to_string(),
    }
}

/// `shlex.quote`.
pub fn shlex_quote(s: &str) -> String {
    if s.is_empty() {
        return "''".to_string();
    }
    let safe = s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c));
    if safe {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', "'\"'\"'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strip_and_split_follow_python() {
        assert_eq!(strip("\x1c a b\u{3000}"), "a b");
        assert_eq!(
            split_whitespace(" 0  2 * * *\t"),
            vec!["0", "2", "*", "*", "*"]
        );
    }

    #[test]
    fn splitlines_knows_every_boundary() {
        assert_eq!(
            splitlines("a\r\nb\rc\x0bd\u{2028}e\n"),
            vec!["a", "b", "c", "d", "e"]
        );
        assert_eq!(splitlines(""), Vec::<&str>::new());
        assert_eq!(splitlines("a\n\nb"), vec!["a", "", "b"]);
    }

    #[test]
    fn repr_picks_quotes_like_python() {
        assert_eq!(repr_str("abc"), "'abc'");
        assert_eq!(repr_str("it's"), "\"it's\"");
        assert_eq!(repr_str("a'\"b"), "'a\\'\"b'");
        assert_eq!(repr_str("\u{7f}é\n"), "'\\x7fé\\n'");
    }

    #[test]
    fn utf8_errors_match_cpython() {
        let msg = |b: &[u8]| decode_utf8(b, Decode::Strict).unwrap_err().message;
        assert_eq!(
            msg(b"ab\xff"),
            "'utf-8' codec can't decode byte 0xff in position 2: invalid start byte"
        );
        assert_eq!(
            msg(b"\xe2\x82\x41"),
            "'utf-8' codec can't decode bytes in position 0-1: invalid continuation byte"
        );
        assert_eq!(
            msg(b"x\xe2\x82"),
            "'utf-8' codec can't decode bytes in position 1-2: unexpected end of data"
        );
        assert_eq!(decode_utf8(b"a\xffb", Decode::Ignore).unwrap(), "ab");
    }

    #[test]
    fn shlex_quote_matches_python() {
        assert_eq!(shlex_quote("server.js"), "server.js");
        assert_eq!(shlex_quote("a b"), "'a b'");
        assert_eq!(shlex_quote("it's"), "'it'\"'\"'s'");
        assert_eq!(shlex_quote(""), "''");
    }
}
