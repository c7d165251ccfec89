//! Python projects (`_detect_python`): dependencies from requirements.txt, pyproject.toml or
//! Pipfile (read line by line, like the reference, not with a TOML parser), then the framework.

use std::path::Path;
use std::sync::LazyLock;

use num_bigint::BigInt;
use regex::Regex;

use super::files::{project_files, read_lossy, read_strict};
use super::secrets::{self, dependency_key};
use super::{
    dir_name, health_path, pattern, slugify, DeployPlan, DetectError, PYTHON_APP_CANDIDATES,
};
use crate::py::text::{splitlines, strip};

const PORT: u16 = 8000;

pub fn detect(path: &Path) -> Result<DeployPlan, DetectError> {
    let deps = read_deps(path)?;
    let pm = package_manager(path)?;
    let has = |name: &str| path.join(name).exists();
    let install_command = match pm {
        "poetry" => "poetry install",
        "uv" => "uv sync",
        "pdm" => "pdm install",
        "pipenv" if has("Pipfile.lock") => "pipenv install --deploy",
        "pipenv" => "pipenv install",
        _ if has("requirements.txt") => "pip install -r requirements.txt",
        _ => "pip install .",
    }
    .to_string();

    let module = app_module(path);
    // The reference keeps these in a set; we keep first-appearance order (see docs/manifest.md).
    let mut names: Vec<String> = Vec::new();
    for dep in &deps {
        let key = dependency_key(dep);
        if !names.contains(&key) {
            names.push(key);
        }
    }
    let has_dep = |name: &str| names.iter().any(|n| n == name);
    let start_command = if has_dep("django") && has("manage.py") {
        let wsgi = django_wsgi(path);
        if has_dep("gunicorn") {
            format!("python manage.py migrate && gunicorn {wsgi}:application -b 0.0.0.0:{PORT}")
        } else {
            format!("python manage.py migrate && python manage.py runserver 0.0.0.0:{PORT}")
        }
    } else if has_dep("uvicorn") || has_dep("python-fasthtml") || has_dep("fasthtml") {
        format!("python -m uvicorn {module}:app --host 0.0.0.0 --port {PORT}")
    } else if has_dep("gunicorn") {
        format!("gunicorn {module}:app -b 0.0.0.0:{PORT}")
    } else if has_dep("flask") {
        format!("python -m flask run --host 0.0.0.0 --port {PORT}")
    } else if has_dep("streamlit") {
        let entry = ["app.py", "main.py", "streamlit_app.py"]
            .into_iter()
            .find(|name| has(name))
            .unwrap_or("app.py");
        format!("python -m streamlit run {entry} --server.port {PORT} --server.address 0.0.0.0")
    } else {
        return Err(DetectError::Refused(
            "Could not detect start command. No django, uvicorn, gunicorn, flask, fasthtml, or streamlit found in dependencies. Use --start-command to specify how to start the app."
                .into(),
        ));
    };
    let health_path = health_path(path)?;
    let secrets = secrets::collect(path, &names, "python");
    Ok(DeployPlan {
        slug: slugify(&dir_name(path)),
        runtime: "python".into(),
        package_manager: pm.into(),
        install_command,
        build_command: None,
        start_command,
        port: BigInt::from(PORT),
        health_path,
        secrets,
    })
}

/// `_detect_python_pm`.
fn package_manager(path: &Path) -> Result<&'static str, DetectError> {
    let has = |name: &str| path.join(name).exists();
    if has("uv.lock") {
        return Ok("uv");
    }
    if has("pdm.lock") {
        return Ok("pdm");
    }
    if has("pyproject.toml") {
        let text = read_strict(&path.join("pyproject.toml"))?.unwrap_or_default();
        if text.contains("[tool.uv]") {
            return Ok("uv");
        }
        if text.contains("[tool.poetry]") {
            return Ok("poetry");
        }
    }
    if has("Pipfile") || has("Pipfile.lock") {
        return Ok("pipenv");
    }
    Ok("pip")
}

/// `_read_python_deps`: requirements.txt lines, else pyproject.toml, else the Pipfile.
fn read_deps(path: &Path) -> Result<Vec<String>, DetectError> {
    let requirements = path.join("requirements.txt");
    if requirements.exists() {
        if let Some(text) = read_strict(&requirements)? {
            let deps: Vec<String> = splitlines(&text)
                .into_iter()
                .map(strip)
                .filter(|line| !line.is_empty() && !line.starts_with('#'))
                .map(str::to_string)
                .collect();
            if !deps.is_empty() {
                return Ok(deps);
            }
        }
    }
    let pyproject = path.join("pyproject.toml");
    if pyproject.exists() {
        if let Some(text) = read_strict(&pyproject)? {
            return Ok(pyproject_deps(&text));
        }
    }
    let pipfile = path.join("Pipfile");
    if pipfile.exists() {
        return pipfile_deps(&pipfile);
    }
    Ok(Vec::new())
}

static INLINE_DEPS: LazyLock<Regex> = LazyLock::new(|| pattern(r"dependencies\s*=\s*\[([^\]]*)\]"));

/// `_parse_pyproject_deps`: a PEP 621 `dependencies = [...]` (not `dev-dependencies`), plus
/// the keys of `[tool.poetry.dependencies]` except `python`.
fn pyproject_deps(text: &str) -> Vec<String> {
    let mut deps = Vec::new();
    // The reference's `(?<![a-z-])` look-behind: try each match start in turn.
    let mut start = 0;
    while let Some(caps) = INLINE_DEPS.captures_at(text, start) {
        let whole = caps.get(0).map_or(0..0, |m| m.range());
        let preceded = text[..whole.start]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '-');
        if !preceded {
            let items = caps.get(1).map_or("", |m| m.as_str());
            for item in items.split(',') {
                let cleaned = strip(strip(item).trim_matches('"').trim_matches('\''));
                if !cleaned.is_empty() {
                    deps.push(cleaned.to_string());
                }
            }
            break;
        }
        start = whole.start + 1;
    }
    deps.extend(section_keys(
        text,
        "[tool.poetry.dependencies]",
        &["python"],
    ));
    deps
}

/// Keys (`key = ...` lines) of one TOML-like section, read line by line.
fn section_keys(text: &str, header: &str, skip: &[&str]) -> Vec<String> {
    let mut keys = Vec::new();
    let mut inside = false;
    for line in splitlines(text) {
        let stripped = strip(line);
        if stripped == header {
            inside = true;
            continue;
        }
        if !inside {
            continue;
        }
        if stripped.starts_with('[') {
            break;
        }
        if stripped.contains('=') && !stripped.starts_with('#') {
            let key = strip(stripped.split('=').next().unwrap_or_default());
            if !key.is_empty() && !skip.contains(&key) {
                keys.push(key.to_string());
            }
        }
    }
    keys
}

/// `_parse_pipfile_deps`: the keys of `[packages]`.
fn pipfile_deps(pipfile: &Path) -> Result<Vec<String>, DetectError> {
    Ok(match read_strict(pipfile)? {
        Some(text) => section_keys(&text, "[packages]", &[]),
        None => Vec::new(),
    })
}

/// `_find_python_app_module`: the first candidate file as a dotted module, default `app`.
fn app_module(path: &Path) -> String {
    PYTHON_APP_CANDIDATES
        .iter()
        .find(|candidate| path.join(candidate).exists())
        .map_or_else(
            || "app".to_string(),
            |candidate| {
                let dotted = candidate.replace('/', ".");
                dotted.strip_suffix(".py").unwrap_or(&dotted).to_string()
            },
        )
}

static DJANGO_WSGI: LazyLock<Regex> =
    LazyLock::new(|| pattern(r#"WSGI_APPLICATION\s*=\s*["']([A-Za-z_][\w.]*)\.application["']"#));

/// `_find_django_wsgi`: `WSGI_APPLICATION` from the first `settings.py` that sets it.
fn django_wsgi(path: &Path) -> String {
    for settings in project_files(path, &|name: &str| name == "settings.py") {
        let Some(text) = read_lossy(&settings) else {
            continue;
        };
        if let Some(m) = DJANGO_WSGI.captures(&text).and_then(|c| c.get(1)) {
            return m.as_str().to_string();
        }
    }
    format!("{}.wsgi", dir_name(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pyproject_dependencies_skip_dev_lists() {
        let text = "[tool.x]\ndev-dependencies = [\"pytest\"]\n[project]\ndependencies = [\n  \"fastapi>=0.1\",\n  'uvicorn',\n]\n";
        assert_eq!(pyproject_deps(text), vec!["fastapi>=0.1", "uvicorn"]);
    }

    #[test]
    fn poetry_section_keys() {
        let text =
            "[tool.poetry.dependencies]\npython = \"^3.11\"\nflask = \"*\"\n[tool.other]\nx = 1\n";
        assert_eq!(pyproject_deps(text), vec!["flask"]);
    }
}
