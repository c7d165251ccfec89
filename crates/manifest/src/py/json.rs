//! Python's `json` module: `json.dumps` with default settings (`", "` and `": "` separators,
//! `ensure_ascii`, `NaN`/`Infinity`) and `json.loads` with its exact error messages.

use num_bigint::BigInt;

use super::num::{float_repr, int_to_string, parse_float};
use super::text::repr_str;
use super::{PyError, PyExc};

/// A value on its way into or out of JSON, with Python's key and number rules.
#[derive(Clone, Debug, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Int(BigInt),
    Float(f64),
    Str(String),
    Array(Vec<Json>),
    /// Keys are `Str`, `Int`, `Float`, `Bool`, `Null` or `Fail`, like a Python dict's.
    Object(Vec<(Json, Json)>),
    /// Something `json.dumps` refuses; the error is raised when the encoder reaches it, so that
    /// the first failure in document order wins, as in Python.
    Fail(PyError),
}

impl Json {
    pub fn str(s: impl Into<String>) -> Json {
        Json::Str(s.into())
    }

    pub fn int(v: impl Into<BigInt>) -> Json {
        Json::Int(v.into())
    }

    pub fn opt_str(s: Option<&str>) -> Json {
        s.map_or(Json::Null, Json::str)
    }

    pub fn strings<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> Json {
        Json::Array(items.into_iter().map(|s| Json::str(s.as_ref())).collect())
    }

    /// An object from `(key, value)` pairs with string keys, in order.
    pub fn object<K: Into<String>>(entries: impl IntoIterator<Item = (K, Json)>) -> Json {
        Json::Object(
            entries
                .into_iter()
                .map(|(k, v)| (Json::Str(k.into()), v))
                .collect(),
        )
    }

    /// Looks up a string key (last match, like a dict after duplicate keys collapsed).
    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Object(entries) => entries
                .iter()
                .rev()
                .find(|(k, _)| matches!(k, Json::Str(s) if s == key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Python truthiness.
    pub fn truthy(&self) -> bool {
        match self {
            Json::Null => false,
            Json::Bool(b) => *b,
            Json::Int(i) => i != &BigInt::from(0),
            Json::Float(f) => *f != 0.0,
            Json::Str(s) => !s.is_empty(),
            Json::Array(a) => !a.is_empty(),
            Json::Object(o) => !o.is_empty(),
            Json::Fail(_) => true,
        }
    }

    /// `type(x).__name__` of the Python object this decodes to.
    pub fn type_name(&self) -> &'static str {
        match self {
            Json::Null => "NoneType",
            Json::Bool(_) => "bool",
            Json::Int(_) => "int",
            Json::Float(_) => "float",
            Json::Str(_) => "str",
            Json::Array(_) => "list",
            Json::Object(_) => "dict",
            Json::Fail(_) => "object",
        }
    }

    /// `str(x)` of the decoded Python object (`repr` for everything but strings).
    pub fn py_str(&self) -> Result<String, PyError> {
        match self {
            Json::Str(s) => Ok(s.clone()),
            other => other.py_repr(),
        }
    }

    /// `repr(x)` of the decoded Python object.
    pub fn py_repr(&self) -> Result<String, PyError> {
        Ok(match self {
            Json::Null => "None".to_string(),
            Json::Bool(true) => "True".to_string(),
            Json::Bool(false) => "False".to_string(),
            Json::Int(i) => int_to_string(i)?,
            Json::Float(f) => float_repr(*f),
            Json::Str(s) => repr_str(s),
            Json::Array(items) => {
                let parts: Result<Vec<_>, _> = items.iter().map(Json::py_repr).collect();
                format!("[{}]", parts?.join(", "))
            }
            Json::Object(entries) => {
                let mut parts = Vec::with_capacity(entries.len());
                for (k, v) in entries {
                    parts.push(format!("{}: {}", k.py_repr()?, v.py_repr()?));
                }
                format!("{{{}}}", parts.join(", "))
            }
            Json::Fail(err) => return Err(err.clone()),
        })
    }
}

/// `json.dumps(value)` with default arguments.
pub fn dumps(value: &Json) -> Result<String, PyError> {
    let mut out = String::new();
    encode(value, &mut out)?;
    Ok(out)
}

fn encode(value: &Json, out: &mut String) -> Result<(), PyError> {
    match value {
        Json::Null => out.push_str("null"),
        Json::Bool(true) => out.push_str("true"),
        Json::Bool(false) => out.push_str("false"),
        Json::Int(i) => out.push_str(&int_to_string(i)?),
        Json::Float(f) => out.push_str(&encode_float(*f)),
        Json::Str(s) => encode_str(s, out),
        Json::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                encode(item, out)?;
            }
            out.push(']');
        }
        Json::Object(entries) => {
            out.push('{');
            for (i, (key, item)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                encode_str(&encode_key(key)?, out);
                out.push_str(": ");
                encode(item, out)?;
            }
            out.push('}');
        }
        Json::Fail(err) => return Err(err.clone()),
    }
    Ok(())
}

fn encode_float(f: f64) -> String {
    if f.is_nan() {
        "NaN".to_string()
    } else if f.is_infinite() {
        if f > 0.0 { "Infinity" } else { "-Infinity" }.to_string()
    } else {
        float_repr(f)
    }
}

/// Dict keys: strings as they are, floats/bools/None/ints converted, anything else refused.
fn encode_key(key: &Json) -> Result<String, PyError> {
    match key {
        Json::Str(s) => Ok(s.clone()),
        Json::Float(f) => Ok(encode_float(*f)),
        Json::Bool(true) => Ok("true".to_string()),
        Json::Bool(false) => Ok("false".to_string()),
        Json::Null => Ok("null".to_string()),
        Json::Int(i) => int_to_string(i),
        Json::Fail(err) => Err(err.clone()),
        other => Err(PyError::type_error(format!(
            "keys must be str, int, float, bool or None, not {}",
            other.type_name()
        ))),
    }
}

/// A JSON string with `ensure_ascii`: printable ASCII as is, everything else escaped.
fn encode_str(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            c => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out.push('"');
}

/// Why `json.loads` failed: a `JSONDecodeError` (a `ValueError`, message with position) or
/// another Python exception (the int digit limit, recursion depth).
#[derive(Debug, Clone, PartialEq)]
pub enum LoadsError {
    Decode(String),
    Py(PyError),
}

impl std::fmt::Display for LoadsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadsError::Decode(msg) => f.write_str(msg),
            LoadsError::Py(err) => err.fmt(f),
        }
    }
}

/// Nesting beyond this raises `RecursionError` in CPython's C scanner (approximately).
const MAX_DEPTH: usize = 990;

/// `json.loads(text)`.
pub fn loads(text: &str) -> Result<Json, LoadsError> {
    let chars: Vec<char> = text.chars().collect();
    let decoder = Decoder { s: &chars };
    if chars.first() == Some(&'\u{feff}') {
        return Err(decoder.error("Unexpected UTF-8 BOM (decode using utf-8-sig)", 0));
    }
    let start = decoder.skip_ws(0);
    let (value, end) = decoder.value(start, 0)?;
    let end = decoder.skip_ws(end);
    if end != chars.len() {
        return Err(decoder.error("Extra data", end));
    }
    Ok(value)
}

struct Decoder<'a> {
    s: &'a [char],
}

impl Decoder<'_> {
    fn error(&self, msg: &str, pos: usize) -> LoadsError {
        let before = &self.s[..pos];
        let line = before.iter().filter(|&&c| c == '\n').count() + 1;
        let col = match before.iter().rposition(|&c| c == '\n') {
            Some(nl) => pos - nl,
            None => pos + 1,
        };
        LoadsError::Decode(format!("{msg}: line {line} column {col} (char {pos})"))
    }

    fn at(&self, i: usize) -> Option<char> {
        self.s.get(i).copied()
    }

    fn skip_ws(&self, mut i: usize) -> usize {
        while matches!(self.at(i), Some(' ' | '\t' | '\n' | '\r')) {
            i += 1;
        }
        i
    }

    fn starts_with(&self, i: usize, word: &str) -> bool {
        (i..).zip(word.chars()).all(|(j, c)| self.at(j) == Some(c))
    }

    /// `scan_once`: a value at `i`, or "Expecting value" there.
    fn value(&self, i: usize, depth: usize) -> Result<(Json, usize), LoadsError> {
        let expecting = || self.error("Expecting value", i);
        let Some(c) = self.at(i) else {
            return Err(expecting());
        };
        let keyword = |word: &str, value: Json| {
            if self.starts_with(i, word) {
                Ok((value, i + word.chars().count()))
            } else {
                Err(expecting())
            }
        };
        match c {
            '"' => self.string(i + 1).map(|(s, end)| (Json::Str(s), end)),
            '{' => self.object(i + 1, depth + 1),
            '[' => self.array(i + 1, depth + 1),
            'n' => keyword("null", Json::Null),
            't' => keyword("true", Json::Bool(true)),
            'f' => keyword("false", Json::Bool(false)),
            'N' => keyword("NaN", Json::Float(f64::NAN)),
            'I' => keyword("Infinity", Json::Float(f64::INFINITY)),
            '-' if self.starts_with(i, "-Infinity") => Ok((Json::Float(f64::NEG_INFINITY), i + 9)),
            _ => self.number(i).ok_or_else(expecting)?,
        }
    }

    fn number(&self, start: usize) -> Option<Result<(Json, usize), LoadsError>> {
        let digit = |i: usize| self.at(i).is_some_and(|c| c.is_ascii_digit());
        let mut i = start;
        if self.at(i) == Some('-') {
            i += 1;
        }
        match self.at(i) {
            Some('1'..='9') => {
                while digit(i) {
                    i += 1;
                }
            }
            Some('0') => i += 1,
            _ => return None,
        }
        let mut is_float = false;
        if self.at(i) == Some('.') && digit(i + 1) {
            i += 1;
            while digit(i) {
                i += 1;
            }
            is_float = true;
        }
        if matches!(self.at(i), Some('e' | 'E')) {
            let mut j = i + 1;
            if matches!(self.at(j), Some('+' | '-')) {
                j += 1;
            }
            if digit(j) {
                while digit(j) {
                    j += 1;
                }
                i = j;
                is_float = true;
            }
        }
        let text: String = self.s[start..i].iter().collect();
        let value = if is_float {
            parse_float(&text).map(Json::Float)
        } else {
            super::num::parse_int(&text, 10).map(Json::Int)
        };
        Some(value.map(|v| (v, i)).map_err(LoadsError::Py))
    }

    /// `scanstring`: `i` is just past the opening quote.
    fn string(&self, i: usize) -> Result<(String, usize), LoadsError> {
        let begin = i - 1;
        let unterminated = || self.error("Unterminated string starting at", begin);
        let mut out = String::new();
        let mut next = i;
        loop {
            let c = self.at(next).ok_or_else(unterminated)?;
            match c {
                '"' => return Ok((out, next + 1)),
                '\\' => {
                    next += 1;
                    let esc = self.at(next).ok_or_else(unterminated)?;
                    if esc == 'u' {
                        let (unit, after) = self.unicode_escape(next + 1)?;
                        let mut code = unit;
                        let mut end = after;
                        if (0xd800..0xdc00).contains(&unit)
                            && self.at(after) == Some('\\')
                            && self.at(after + 1) == Some('u')
                        {
                            if let Ok((low, after_low)) = self.unicode_escape(after + 2) {
                                if (0xdc00..0xe000).contains(&low) {
                                    code = 0x10000 + ((unit - 0xd800) << 10) + (low - 0xdc00);
                                    end = after_low;
                                }
                            }
                        }
                        // Lone surrogates cannot live in a Rust string.
                        out.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                        next = end;
                        continue;
                    }
                    let replacement = match esc {
                        '"' => '"',
                        '\\' => '\\',
                        '/' => '/',
                        'b' => '\u{8}',
                        'f' => '\u{c}',
                        'n' => '\n',
                        'r' => '\r',
                        't' => '\t',
                        _ => return Err(self.error("Invalid \\escape", next - 1)),
                    };
                    out.push(replacement);
                    next += 1;
                }
                c if (c as u32) <= 0x1f => {
                    return Err(self.error("Invalid control character at", next));
                }
                c => {
                    out.push(c);
                    next += 1;
                }
            }
        }
    }

    /// Four hex digits at `i` (just past `\u`).
    fn unicode_escape(&self, i: usize) -> Result<(u32, usize), LoadsError> {
        if i + 4 >= self.s.len() {
            return Err(self.error("Invalid \\uXXXX escape", i - 1));
        }
        let mut value = 0u32;
        for k in 0..4 {
            let digit = self.s[i + k]
                .to_digit(16)
                .ok_or_else(|| self.error("Invalid \\uXXXX escape", i - 1))?;
            value = value * 16 + digit;
        }
        Ok((value, i + 4))
    }

    fn too_deep(&self, what: &str) -> LoadsError {
        LoadsError::Py(PyError::new(
            PyExc::RecursionError,
            format!("maximum recursion depth exceeded while decoding a JSON {what} from a unicode string"),
        ))
    }

    fn array(&self, i: usize, depth: usize) -> Result<(Json, usize), LoadsError> {
        if depth > MAX_DEPTH {
            return Err(self.too_deep("array"));
        }
        let mut items = Vec::new();
        let mut i = self.skip_ws(i);
        if self.at(i) == Some(']') {
            return Ok((Json::Array(items), i + 1));
        }
        loop {
            let (value, end) = self.value(i, depth)?;
            items.push(value);
            i = self.skip_ws(end);
            match self.at(i) {
                Some(']') => return Ok((Json::Array(items), i + 1)),
                Some(',') => i = self.skip_ws(i + 1),
                _ => return Err(self.error("Expecting ',' delimiter", i)),
            }
        }
    }

    fn object(&self, i: usize, depth: usize) -> Result<(Json, usize), LoadsError> {
        if depth > MAX_DEPTH {
            return Err(self.too_deep("object"));
        }
        let mut entries: Vec<(Json, Json)> = Vec::new();
        let mut i = self.skip_ws(i);
        if self.at(i) == Some('}') {
            return Ok((Json::Object(entries), i + 1));
        }
        loop {
            if self.at(i) != Some('"') {
                return Err(self.error("Expecting property name enclosed in double quotes", i));
            }
            let (key, end) = self.string(i + 1)?;
            i = self.skip_ws(end);
            if self.at(i) != Some(':') {
                return Err(self.error("Expecting ':' delimiter", i));
            }
            i = self.skip_ws(i + 1);
            let (value, end) = self.value(i, depth)?;
            // A repeated key keeps its first position and takes the last value, as `dict` does.
            match entries.iter_mut().find(|(k, _)| k.as_str() == Some(&key)) {
                Some(slot) => slot.1 = value,
                None => entries.push((Json::Str(key), value)),
            }
            i = self.skip_ws(end);
            match self.at(i) {
                Some('}') => return Ok((Json::Object(entries), i + 1)),
                Some(',') => i = self.skip_ws(i + 1),
                _ => return Err(self.error("Expecting ',' delimiter", i)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        loads(text).unwrap_err().to_string()
    }

    #[test]
    fn dumps_matches_python_defaults() {
        let value = Json::object([
            ("a", Json::int(1)),
            (
                "b",
                Json::Array(vec![Json::Null, Json::Bool(true), Json::Float(1.0)]),
            ),
            ("é", Json::str("x\"\u{1F600}\u{7f}")),
            ("n", Json::Float(f64::NAN)),
        ]);
        assert_eq!(
            dumps(&value).unwrap(),
            r#"{"a": 1, "b": [null, true, 1.0], "\u00e9": "x\"\ud83d\ude00\u007f", "n": NaN}"#
        );
    }

    #[test]
    fn dumps_refuses_odd_keys() {
        let value = Json::Object(vec![(Json::Array(vec![]), Json::Null)]);
        assert_eq!(
            dumps(&value).unwrap_err().message,
            "keys must be str, int, float, bool or None, not list"
        );
    }

    #[test]
    fn loads_reports_python_errors() {
        assert_eq!(err(""), "Expecting value: line 1 column 1 (char 0)");
        assert_eq!(
            err("{\"a\" 1}"),
            "Expecting ':' delimiter: line 1 column 6 (char 5)"
        );
        assert_eq!(err("[1,]"), "Expecting value: line 1 column 4 (char 3)");
        assert_eq!(
            err("{\"a\":1,}"),
            "Expecting property name enclosed in double quotes: line 1 column 8 (char 7)"
        );
        assert_eq!(err("{}\n x"), "Extra data: line 2 column 2 (char 4)");
        assert_eq!(
            err("\"abc"),
            "Unterminated string starting at: line 1 column 1 (char 0)"
        );
        assert_eq!(err("\"\\q\""), "Invalid \\escape: line 1 column 2 (char 1)");
    }

    #[test]
    fn loads_errors_recorded_from_cpython() {
        let cases = [
            (
                "\"\\u0041",
                "Invalid \\uXXXX escape: line 1 column 3 (char 2)",
            ),
            (
                "\"\\u00zz\"",
                "Invalid \\uXXXX escape: line 1 column 3 (char 2)",
            ),
            ("[1 2]", "Expecting ',' delimiter: line 1 column 4 (char 3)"),
            (
                "{",
                "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
            ),
            ("[", "Expecting value: line 1 column 2 (char 1)"),
            ("-x", "Expecting value: line 1 column 1 (char 0)"),
            ("01", "Extra data: line 1 column 2 (char 1)"),
            ("1.", "Extra data: line 1 column 2 (char 1)"),
            ("1e", "Extra data: line 1 column 2 (char 1)"),
            (
                "\u{feff}{}",
                "Unexpected UTF-8 BOM (decode using utf-8-sig): line 1 column 1 (char 0)",
            ),
            (
                "\"a\u{1}\"",
                "Invalid control character at: line 1 column 3 (char 2)",
            ),
            ("{\"a\":}", "Expecting value: line 1 column 6 (char 5)"),
            ("tru", "Expecting value: line 1 column 1 (char 0)"),
            (
                "{1:2}",
                "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
            ),
            (" \n ", "Expecting value: line 2 column 2 (char 3)"),
        ];
        for (text, message) in cases {
            assert_eq!(err(text), message, "{text:?}");
        }
        let value = loads(r#"["\ud83d\ude00", 1E+2, -0, 2.5e-3]"#).unwrap();
        assert_eq!(value.py_repr().unwrap(), "['\u{1F600}', 100.0, 0, 0.0025]");
    }

    #[test]
    fn loads_keeps_python_dict_semantics() {
        let value = loads(r#"{"a": 1, "b": 2, "a": 3, "c": 1e2, "d": NaN}"#).unwrap();
        let Json::Object(entries) = &value else {
            panic!("object")
        };
        assert_eq!(entries.len(), 4);
        assert_eq!(value.get("a"), Some(&Json::int(3)));
        assert_eq!(value.get("c"), Some(&Json::Float(100.0)));
        assert_eq!(value.get("c").unwrap().py_str().unwrap(), "100.0");
    }
}
