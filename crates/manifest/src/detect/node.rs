//! Node.js projects (`_detect_node`): `package.json` scripts, package manager and framework
//! hints. `package.json` is whatever JSON the user wrote, so every Python operation on it is
//! checked the way Python would fail (`AttributeError`, `TypeError`).

use std::path::Path;
use std::sync::LazyLock;

use num_bigint::BigInt;
use regex::Regex;

use super::{
    capture_int, dir_name, health_path, pattern, port_from_source, secrets, slugify, DeployPlan,
    DetectError, NODE_SOURCE_CANDIDATES,
};
use crate::py::json::{loads, Json, LoadsError};
use crate::py::text::{os_error_text, read_text, shlex_quote, strip, Decode, ReadTextError};
use crate::py::{PyError, PyExc};

const COREPACK_PREFIX: &str = "corepack enable >/dev/null 2>&1 && ";

/// `obj.<attr>` on a value that is not a dict.
fn no_attribute(value: &Json, attr: &str) -> DetectError {
    DetectError::Python(PyError::new(
        PyExc::AttributeError,
        format!("'{}' object has no attribute '{attr}'", value.type_name()),
    ))
}

/// `value.get(key)` with Python's failure for non-dicts.
fn dict_get<'a>(value: &'a Json, key: &str) -> Result<Option<&'a Json>, DetectError> {
    match value {
        Json::Object(_) => Ok(value.get(key)),
        other => Err(no_attribute(other, "get")),
    }
}

/// `value or default`: the value when truthy.
fn truthy(value: Option<&Json>) -> Option<&Json> {
    value.filter(|v| v.truthy())
}

/// `needle in scripts` for whatever `scripts` is.
fn contains(scripts: &Json, needle: &str) -> Result<bool, DetectError> {
    match scripts {
        Json::Object(_) => Ok(scripts.get(needle).is_some()),
        Json::Array(items) => Ok(items.iter().any(|i| i.as_str() == Some(needle))),
        Json::Str(s) => Ok(s.contains(needle)),
        other => Err(DetectError::Python(PyError::type_error(format!(
            "argument of type '{}' is not iterable",
            other.type_name()
        )))),
    }
}

fn read_package_json(path: &Path) -> Result<Json, DetectError> {
    let pkg_path = path.join("package.json");
    let text = read_text(&pkg_path, Decode::Strict).map_err(|e| match e {
        ReadTextError::Io(err) => DetectError::Refused(format!(
            "Cannot read package.json: {}",
            os_error_text(&err, &pkg_path)
        )),
        ReadTextError::Decode(err) => DetectError::Python(err),
    })?;
    loads(&text).map_err(|e| match e {
        LoadsError::Decode(msg) => DetectError::Refused(format!("Cannot read package.json: {msg}")),
        LoadsError::Py(err) => DetectError::Python(err),
    })
}

/// `str(pkg.get("packageManager") or "").strip()`.
fn package_manager_field(pkg: &Json) -> Result<String, DetectError> {
    match truthy(dict_get(pkg, "packageManager")?) {
        Some(value) => Ok(strip(&value.py_str()?).to_string()),
        None => Ok(String::new()),
    }
}

/// `_detect_node_pm`: the `packageManager` field, then lockfiles, then npm.
fn package_manager(path: &Path, pkg: &Json) -> Result<String, DetectError> {
    let field = package_manager_field(pkg)?;
    if !field.is_empty() {
        let name = strip(field.split('@').next().unwrap_or_default()).to_lowercase();
        if ["pnpm", "yarn", "bun", "npm"].contains(&name.as_str()) {
            return Ok(name);
        }
    }
    let has = |name: &str| path.join(name).exists();
    Ok(if has("pnpm-lock.yaml") {
        "pnpm"
    } else if has("yarn.lock") {
        "yarn"
    } else if has("bun.lockb") || has("bun.lock") {
        "bun"
    } else {
        "npm"
    }
    .to_string())
}

/// `_is_yarn_berry`: `packageManager: yarn@2+`, or a `.yarnrc.yml`.
fn is_yarn_berry(path: &Path, pkg: &Json) -> Result<bool, DetectError> {
    let field = package_manager_field(pkg)?;
    if field.to_lowercase().starts_with("yarn@") {
        let version = field.split('@').nth(1).unwrap_or_default();
        let version = version.split('+').next().unwrap_or_default();
        let major = version.split('.').next().unwrap_or_default();
        if !major.is_empty()
            && major.chars().all(|c| c.is_ascii_digit())
            && crate::py::num::parse_int(major, 10)? >= BigInt::from(2)
        {
            return Ok(true);
        }
    }
    Ok(path.join(".yarnrc.yml").exists() || path.join(".yarnrc.yaml").exists())
}

fn wrap(pm: &str, command: String) -> String {
    if pm == "yarn" || pm == "pnpm" {
        format!("{COREPACK_PREFIX}{command}")
    } else {
        command
    }
}

/// `_read_node_deps`: the keys of dependencies, devDependencies and peerDependencies.
fn dependencies(pkg: &Json) -> Result<Vec<String>, DetectError> {
    let mut deps = Vec::new();
    for section in ["dependencies", "devDependencies", "peerDependencies"] {
        match truthy(dict_get(pkg, section)?) {
            None => {}
            Some(Json::Object(entries)) => {
                deps.extend(
                    entries
                        .iter()
                        .filter_map(|(k, _)| k.as_str().map(str::to_string)),
                );
            }
            Some(other) => return Err(no_attribute(other, "keys")),
        }
    }
    Ok(deps)
}

static START_PORT_LONG: LazyLock<Regex> = LazyLock::new(|| pattern(r"--port\s+([0-9]+)"));
static START_PORT_SHORT: LazyLock<Regex> = LazyLock::new(|| pattern(r"-p\s+([0-9]+)"));

/// `_detect_port_from_start_script`.
fn port_from_start_script(script: &Json) -> Result<Option<BigInt>, DetectError> {
    let Some(text) = script.as_str() else {
        return Err(DetectError::Python(PyError::type_error(format!(
            "expected string or bytes-like object, got '{}'",
            script.type_name()
        ))));
    };
    if let Some(port) = capture_int(&START_PORT_LONG, text)? {
        return Ok(Some(port));
    }
    capture_int(&START_PORT_SHORT, text)
}

pub fn detect(path: &Path) -> Result<DeployPlan, DetectError> {
    let pkg = read_package_json(path)?;
    let pm = package_manager(path, &pkg)?;
    let empty = Json::Object(Vec::new());
    let scripts = truthy(dict_get(&pkg, "scripts")?).unwrap_or(&empty);
    let deps = dependencies(&pkg)?;

    let install_command = if pm == "npm" && path.join("package-lock.json").exists() {
        "npm ci".to_string()
    } else if pm == "yarn" {
        if is_yarn_berry(path, &pkg)? {
            wrap(&pm, "yarn install --check-cache".into())
        } else {
            wrap(&pm, "yarn install --frozen-lockfile".into())
        }
    } else if pm == "pnpm" {
        wrap(&pm, "pnpm install".into())
    } else {
        format!("{pm} install")
    };

    let build_command = contains(scripts, "build")?.then(|| wrap(&pm, format!("{pm} run build")));

    let start_command = if contains(scripts, "start")? {
        wrap(&pm, format!("{pm} start"))
    } else if contains(scripts, "serve")? {
        wrap(&pm, format!("{pm} run serve"))
    } else if let Some(main) = truthy(pkg.get("main")) {
        format!("node {}", shlex_quote(&main.py_str()?))
    } else {
        return Err(DetectError::Refused(
            "Could not detect start command. Add a 'start' script to package.json or use --start-command."
                .into(),
        ));
    };

    let start_script = match scripts {
        Json::Object(_) => scripts.get("start").cloned().unwrap_or(Json::str("")),
        other => return Err(no_attribute(other, "get")),
    };
    let port = match port_from_start_script(&start_script)? {
        Some(port) => port,
        None => {
            port_from_source(path, &NODE_SOURCE_CANDIDATES)?.unwrap_or_else(|| BigInt::from(3000))
        }
    };
    let health_path = health_path(path)?;
    let secrets = secrets::collect(path, &deps, "node");
    let slug = match truthy(pkg.get("name")) {
        None => slugify(&dir_name(path)),
        Some(Json::Str(name)) => slugify(name),
        Some(other) => return Err(no_attribute(other, "lower")),
    };
    Ok(DeployPlan {
        slug,
        runtime: "node".into(),
        package_manager: pm,
        install_command,
        build_command,
        start_command,
        port,
        health_path,
        secrets,
    })
}

/// `_detect_node_version`: the first number of `engines.node`, default 22.
pub fn node_version(path: &Path) -> Result<String, DetectError> {
    // OSError and JSONDecodeError mean the default; other errors escape, as in Python.
    let text = match read_text(&path.join("package.json"), Decode::Strict) {
        Ok(text) => text,
        Err(ReadTextError::Io(_)) => return Ok("22".into()),
        Err(ReadTextError::Decode(err)) => return Err(DetectError::Python(err)),
    };
    let pkg = match loads(&text) {
        Ok(pkg) => pkg,
        Err(LoadsError::Decode(_)) => return Ok("22".into()),
        Err(LoadsError::Py(err)) => return Err(DetectError::Python(err)),
    };
    let empty = Json::Object(Vec::new());
    let engines = dict_get(&pkg, "engines")?.unwrap_or(&empty);
    let constraint = dict_get(engines, "node")?.cloned().unwrap_or(Json::str(""));
    let Some(text) = constraint.as_str() else {
        return Err(DetectError::Python(PyError::type_error(format!(
            "expected string or bytes-like object, got '{}'",
            constraint.type_name()
        ))));
    };
    static NUMBER: LazyLock<Regex> = LazyLock::new(|| pattern(r"([0-9]+)"));
    Ok(NUMBER
        .captures(text)
        .and_then(|c| c.get(1))
        .map_or_else(|| "22".to_string(), |m| m.as_str().to_string()))
}
