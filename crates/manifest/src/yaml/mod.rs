//! `yaml.safe_load` as PyYAML 6 does it, on top of the `saphyr-parser` event stream.
//!
//! saphyr parses YAML 1.2 syntax; everything PyYAML decides after parsing is ours: the YAML 1.1
//! implicit types (`resolve`), composing a single document with shared anchors (`compose`), and
//! building Python-like objects with merge keys and duplicate-key rules (`construct`).

mod compose;
mod construct;
mod json;
mod resolve;
pub mod timestamp;
mod value;

pub use json::to_json;
pub use value::{Doc, Obj, ObjId, PyInt, Value};

use crate::py::{PyError, PyExc};

/// The PyYAML release whose `safe_load` this module reproduces: the one `pip install
/// instavm==0.26.1` resolves to (pinned in `tests/python/requirements.lock`). The conformance
/// suite refuses a reference venv with another version, so a PyYAML change is a deliberate step.
pub const PYYAML_VERSION: &str = "6.0.4";

/// Why `safe_load` failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LoadError {
    /// A `yaml.YAMLError`: bad syntax, more than one document, an unknown tag, an unhashable key.
    #[error("{0}")]
    Syntax(String),
    /// Another Python exception raised while building values, e.g. `ValueError` for the date
    /// `2024-02-30`; the reference does not catch these as YAML errors.
    #[error("{0}")]
    Py(PyError),
}

impl LoadError {
    pub(crate) fn recursion() -> Self {
        LoadError::Py(PyError::new(
            PyExc::RecursionError,
            "maximum recursion depth exceeded",
        ))
    }
}

/// PyYAML's `Reader` refuses these characters anywhere in the stream.
fn is_printable(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | ' '..='~' | '\u{85}' | '\u{a0}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}' | '\u{10000}'..)
}

/// Parses one YAML document like `yaml.safe_load(text)`.
pub fn safe_load(text: &str) -> Result<Doc, LoadError> {
    if let Some((i, c)) = text.char_indices().find(|&(_, c)| !is_printable(c)) {
        return Err(LoadError::Syntax(format!(
            "unacceptable character #x{:04x}: special characters are not allowed (position {i})",
            c as u32
        )));
    }
    // PyYAML treats NEL exactly like a line feed; YAML 1.2 parsers treat it as content.
    let text = text
        .strip_prefix('\u{feff}')
        .unwrap_or(text)
        .replace('\u{85}', "\n");
    let composed = compose::compose(&text)?;
    construct::construct(composed)
}

#[cfg(test)]
mod tests;
