//! The parts of Python semantics the reference parser depends on, reimplemented so that our
//! results match byte for byte: string helpers, number parsing and printing, and `json`.

pub mod json;
pub mod num;
pub mod path;
pub mod text;

use std::fmt;

/// The Python exception class a reference code path would raise outside its own
/// `CookbookError`, for example `ValueError` from `int()` while YAML is being constructed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PyExc {
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    RecursionError,
}

impl PyExc {
    fn name(self) -> &'static str {
        match self {
            PyExc::ValueError => "ValueError",
            PyExc::TypeError => "TypeError",
            PyExc::KeyError => "KeyError",
            PyExc::IndexError => "IndexError",
            PyExc::AttributeError => "AttributeError",
            PyExc::RecursionError => "RecursionError",
        }
    }
}

/// A Python exception with its message, as `str(exc)` would print it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PyError {
    pub kind: PyExc,
    pub message: String,
}

impl PyError {
    pub fn new(kind: PyExc, message: impl Into<String>) -> Self {
        PyError {
            kind,
            message: message.into(),
        }
    }

    pub fn value(message: impl Into<String>) -> Self {
        Self::new(PyExc::ValueError, message)
    }

    pub fn type_error(message: impl Into<String>) -> Self {
        Self::new(PyExc::TypeError, message)
    }

    /// The reference CLI prints `ValueError`s as `Error: <msg>`; every other class escapes as a
    /// traceback (still exit code 1).
    pub fn reference_prints_message(&self) -> bool {
        self.kind == PyExc::ValueError
    }
}

impl fmt::Display for PyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.reference_prints_message() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.kind.name(), self.message)
        }
    }
}

impl std::error::Error for PyError {}
