//! Why a manifest was refused. Every message is the reference's text (`_cookbook.py`), so the
//! CLI prints exactly what `instavm` 0.26.1 prints; the variants keep the field for callers.

use std::path::PathBuf;

use crate::py::PyError;

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("Unable to read manifest: {}", path.display())]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("Invalid YAML in manifest: {}", path.display())]
    InvalidYaml { path: PathBuf, detail: String },
    /// A Python exception the reference does not turn into a `CookbookError`, e.g. the
    /// `UnicodeDecodeError` of a file that is not UTF-8 or the `ValueError` of `2024-02-30`.
    #[error("{0}")]
    Python(PyError),
    #[error("Manifest field `{field}` must be an object.")]
    NotObject { field: String },
    #[error("Manifest field `{field}` must be a non-empty string.")]
    NotString { field: String },
    #[error("Manifest field `{field}` must be a valid environment variable name.")]
    NotEnvName { field: String },
    #[error("Manifest field `{field}` must be an integer.")]
    NotInteger { field: String },
    #[error("Manifest field `{field}` must be a boolean.")]
    NotBoolean { field: String },
    /// The reference does not name the field in this message; we keep it for callers.
    #[error("Expected an optional string value.")]
    NotOptionalString { field: String },
    #[error("Manifest field `{field}` must be an array.")]
    NotArray { field: String },
    #[error("Manifest field `{field}` must be a scalar value.")]
    NotScalar { field: String },
    #[error("Manifest field `{field}` must be positive.")]
    NotPositive { field: String },
    #[error("Manifest field `{field}` must be non-negative.")]
    Negative { field: String },
    #[error("Manifest field `{field}` must be between 1 and 65535.")]
    PortRange { field: String },
    /// `allowed` is the reference's list, e.g. "`open`, `deny`, or `allowlist`".
    #[error("Manifest field `{field}` must be {allowed}.")]
    NotOneOf { field: String, allowed: String },
    #[error(
        "Unsupported cookbook schema version. Expected `schema_version: 1` or `schema_version: 2`."
    )]
    UnsupportedSchemaVersion,
    #[error("Manifest is missing required fields: {}", fields.join(", "))]
    MissingFields { fields: Vec<String> },
    #[error("Build context does not exist: {}", path.display())]
    MissingBuildContext { path: PathBuf },
    #[error("Dockerfile does not exist: {}", path.display())]
    MissingDockerfile { path: PathBuf },
    /// A cross-field or value rule with its own sentence (the reference's text).
    #[error("{message}")]
    Rule { field: String, message: String },
}

impl ManifestError {
    pub(crate) fn rule(field: &str, message: impl Into<String>) -> Self {
        ManifestError::Rule {
            field: field.to_string(),
            message: message.into(),
        }
    }

    pub(crate) fn one_of(field: &str, allowed: &str) -> Self {
        ManifestError::NotOneOf {
            field: field.to_string(),
            allowed: allowed.to_string(),
        }
    }

    /// The field the error is about, when there is one.
    pub fn field(&self) -> Option<&str> {
        use ManifestError::*;
        match self {
            NotObject { field }
            | NotString { field }
            | NotEnvName { field }
            | NotInteger { field }
            | NotBoolean { field }
            | NotOptionalString { field }
            | NotArray { field }
            | NotScalar { field }
            | NotPositive { field }
            | Negative { field }
            | PortRange { field }
            | NotOneOf { field, .. }
            | Rule { field, .. } => Some(field),
            UnsupportedSchemaVersion => Some("schema_version"),
            MissingBuildContext { .. } => Some("build.context"),
            MissingDockerfile { .. } => Some("build.dockerfile"),
            Unreadable { .. } | InvalidYaml { .. } | Python(_) | MissingFields { .. } => None,
        }
    }
}
