//! Zero-config detection (`_detect.py`): for a directory without `instavm.yaml`, infer the
//! runtime, package manager, install/build/start commands, port, health path and secrets.

mod files;
mod go;
mod node;
mod other;
mod python;
mod secrets;

use std::path::Path;
use std::sync::LazyLock;

use num_bigint::BigInt;
use regex::Regex;

use crate::py::PyError;
use crate::schema::SecretSpec;

pub use other::plan_to_manifest;

/// What detection found: the reference's `DeployPlan`.
#[derive(Debug, Clone, PartialEq)]
pub struct DeployPlan {
    pub slug: String,
    /// `node`, `python`, `go`, `deno` or `static`.
    pub runtime: String,
    /// npm, yarn, pnpm, bun, pip, poetry, uv, pipenv, pdm, go, deno or none.
    pub package_manager: String,
    pub install_command: String,
    pub build_command: Option<String>,
    pub start_command: String,
    /// A Python int: unbounded, since it may come from a `--port` digit run in a script.
    pub port: BigInt,
    pub health_path: String,
    pub secrets: Vec<SecretSpec>,
}

/// Why detection failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DetectError {
    /// The reference's `ValueError` text (printed as `Error: <text>`).
    #[error("{0}")]
    Refused(String),
    /// Another Python exception on this path, e.g. a `package.json` whose `scripts` is a list.
    #[error("{0}")]
    Python(PyError),
}

impl From<PyError> for DetectError {
    fn from(err: PyError) -> Self {
        DetectError::Python(err)
    }
}

const UNKNOWN_PROJECT: &str = "Could not detect project type. Expected package.json, requirements.txt, pyproject.toml, Pipfile, go.mod, deno.json, or index.html.";

/// `detect_project(path)`.
pub fn detect_project(path: &Path) -> Result<DeployPlan, DetectError> {
    let path = crate::py::path::resolve(path);
    if !files::is_dir(&path) {
        return Err(DetectError::Refused(format!(
            "Not a directory: {}",
            path.display()
        )));
    }
    let has = |name: &str| path.join(name).exists();
    if has("package.json") {
        return node::detect(&path);
    }
    if has("requirements.txt") || has("pyproject.toml") || has("Pipfile") {
        return python::detect(&path);
    }
    if has("go.mod") || has("main.go") {
        return go::detect(&path);
    }
    if has("deno.json") || has("deno.jsonc") {
        return other::detect_deno(&path);
    }
    if other::has_static_signals(&path) {
        return other::detect_static(&path);
    }
    Err(DetectError::Refused(UNKNOWN_PROJECT.to_string()))
}

fn pattern(re: &str) -> Regex {
    Regex::new(re).unwrap_or_else(|e| panic!("bad detection pattern: {e}"))
}

static SLUG_INVALID: LazyLock<Regex> = LazyLock::new(|| pattern(r"[^a-z0-9]+"));

/// `_slugify`: lowercase, runs outside `[a-z0-9]` become `-`, trimmed, `app` when empty.
pub fn slugify(name: &str) -> String {
    let lowered = name.to_lowercase();
    let slug = SLUG_INVALID.replace_all(crate::py::text::strip(&lowered), "-");
    let slug = slug.trim_matches('-');
    if slug.is_empty() {
        "app".to_string()
    } else {
        slug.to_string()
    }
}

/// The project directory's name (`path.name`).
fn dir_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

pub(crate) const PYTHON_APP_CANDIDATES: [&str; 7] = [
    "app.py",
    "main.py",
    "server.py",
    "bot.py",
    "start.py",
    "src/app.py",
    "src/main.py",
];

pub(crate) const NODE_SOURCE_CANDIDATES: [&str; 11] = [
    "server.mjs",
    "server.js",
    "server.ts",
    "index.js",
    "index.ts",
    "src/index.ts",
    "src/index.js",
    "src/server.ts",
    "src/server.js",
    "server/server.ts",
    "server/server.js",
];

static HEALTH_ROUTE: LazyLock<Regex> = LazyLock::new(|| {
    pattern(
        r#"(?:@app\.(?:get|route)|app\.get|router\.get)\s*\(\s*['"](/(?:health|healthz|api/health))['"]\s*"#,
    )
});

/// `PORT || 3000`, `PORT ?? 3000`, `PORT === undefined ? 3000 : ...`.
pub(crate) static PORT_PATTERN: LazyLock<Regex> = LazyLock::new(|| {
    pattern(r#"PORT\s*(?:\|\||===?\s*undefined\s*\?\s*|\?\?)\s*['"]?([0-9]{2,5})['"]?"#)
});

/// The first capture of `re` in `text`, as a Python `int()`.
pub(crate) fn capture_int(re: &Regex, text: &str) -> Result<Option<BigInt>, DetectError> {
    match re.captures(text).and_then(|c| c.get(1)) {
        Some(m) => Ok(Some(crate::py::num::parse_int(m.as_str(), 10)?)),
        None => Ok(None),
    }
}

/// `_detect_port_from_source`: the PORT pattern in the first candidate that has it.
fn port_from_source(path: &Path, candidates: &[&str]) -> Result<Option<BigInt>, DetectError> {
    for candidate in candidates {
        let full = path.join(candidate);
        if !full.exists() {
            continue;
        }
        let Some(text) = files::read_strict(&full)? else {
            continue;
        };
        if let Some(port) = capture_int(&PORT_PATTERN, &text)? {
            return Ok(Some(port));
        }
    }
    Ok(None)
}

/// `_detect_health_path`: a `/health`, `/healthz` or `/api/health` route in the Python, then
/// Node candidates; `/health` by default.
fn health_path(path: &Path) -> Result<String, DetectError> {
    for candidate in PYTHON_APP_CANDIDATES
        .iter()
        .chain(NODE_SOURCE_CANDIDATES.iter())
    {
        let full = path.join(candidate);
        if !full.exists() {
            continue;
        }
        let Some(text) = files::read_strict(&full)? else {
            continue;
        };
        if let Some(m) = HEALTH_ROUTE.captures(&text).and_then(|c| c.get(1)) {
            return Ok(m.as_str().to_string());
        }
    }
    Ok("/health".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugify_matches_reference() {
        assert_eq!(slugify("My App_2"), "my-app-2");
        assert_eq!(slugify("@scope/pkg"), "scope-pkg");
        assert_eq!(slugify("---"), "app");
        assert_eq!(slugify("Café"), "caf");
    }
}
