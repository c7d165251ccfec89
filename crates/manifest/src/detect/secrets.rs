//! `_collect_secrets`: secrets implied by known SDK dependencies (required), then environment
//! variables the source reads (optional, sorted).

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::LazyLock;

use regex::Regex;

use super::files::{project_files, read_lossy, with_suffix};
use super::pattern;
use crate::schema::SecretSpec;

const NON_SECRET_VARS: [&str; 27] = [
    "PORT",
    "HOST",
    "NODE_ENV",
    "DEBUG",
    "PYTHONPATH",
    "PATH",
    "HOME",
    "HOSTNAME",
    "LANG",
    "TZ",
    "TERM",
    "CI",
    "VIRTUAL_ENV",
    "PWD",
    "SHELL",
    "USER",
    "LOGNAME",
    "TMPDIR",
    "PYTHONDONTWRITEBYTECODE",
    "PYTHONUNBUFFERED",
    "NPM_CONFIG_LOGLEVEL",
    "NEXT_TELEMETRY_DISABLED",
    "OPENAI_MODEL",
    "GOOGLE_MODEL",
    "ANTHROPIC_MODEL",
    "OPENAI_COMPAT_API_BASE",
    "OPENAI_COMPAT_MODEL",
];

/// Dependency name to (env name, prompt).
fn dependency_hint(dep: &str) -> Option<(&'static str, &'static str)> {
    Some(match dep {
        "anthropic"
        | "@anthropic-ai/claude-agent-sdk"
        | "@anthropic-ai/sdk"
        | "@ai-sdk/anthropic" => ("ANTHROPIC_API_KEY", "Anthropic API key"),
        "openai-agents" | "openai" | "@openai/agents" | "@ai-sdk/openai" => {
            ("OPENAI_API_KEY", "OpenAI API key")
        }
        "google-adk" | "google-generativeai" | "@ai-sdk/google" => {
            ("GOOGLE_API_KEY", "Google API key")
        }
        "replicate" => ("REPLICATE_API_TOKEN", "Replicate API token"),
        _ => return None,
    })
}

/// A requirement spec reduced to its lowercased name (`openai>=1[x]` -> `openai`).
pub fn dependency_key(dep: &str) -> String {
    let lower = dep.to_lowercase();
    let name = lower.split("==").next().unwrap_or_default();
    let name = name.split(">=").next().unwrap_or_default();
    let name = name.split('[').next().unwrap_or_default();
    crate::py::text::strip(name).to_string()
}

static PYTHON_ENV: LazyLock<Regex> = LazyLock::new(|| {
    pattern(concat!(
        r#"os\.(?:environ\s*(?:\.get\s*\(|(?:\[)))\s*['"]([\w]+)['"]"#,
        r#"|os\.getenv\s*\(\s*['"]([\w]+)['"]"#
    ))
});
static NODE_ENV: LazyLock<Regex> = LazyLock::new(|| pattern(r"process\.env\.([\w]+)"));
static GO_ENV: LazyLock<Regex> =
    LazyLock::new(|| pattern(r#"os\.(?:Getenv|LookupEnv)\s*\(\s*["'](\w+)["']\)"#));
static DENO_ENV: LazyLock<Regex> =
    LazyLock::new(|| pattern(r#"Deno\.env\.get\s*\(\s*["'](\w+)["']\)"#));

/// `_scan_env_vars`: names read from the environment in the runtime's source files.
fn scan_env_vars(path: &Path, runtime: &str) -> BTreeSet<String> {
    let (extensions, re): (&[&'static str], &Regex) = match runtime {
        "python" => (&[".py"], &PYTHON_ENV),
        "go" => (&[".go"], &GO_ENV),
        "deno" => (&[".ts", ".js", ".mjs", ".mts"], &DENO_ENV),
        _ => (&[".js", ".ts", ".mjs", ".tsx", ".jsx"], &NODE_ENV),
    };
    let mut found = BTreeSet::new();
    for ext in extensions {
        for file in project_files(path, &with_suffix(ext)) {
            let Some(text) = read_lossy(&file) else {
                continue;
            };
            for caps in re.captures_iter(&text) {
                if let Some(m) = caps.get(1).or_else(|| caps.get(2)) {
                    found.insert(m.as_str().to_string());
                }
            }
        }
    }
    found
}

pub fn collect(path: &Path, deps: &[String], runtime: &str) -> Vec<SecretSpec> {
    let mut seen: Vec<String> = Vec::new();
    let mut secrets = Vec::new();
    for dep in deps {
        let Some((env_name, prompt)) = dependency_hint(&dependency_key(dep)) else {
            continue;
        };
        if !seen.iter().any(|s| s == env_name) {
            seen.push(env_name.to_string());
            secrets.push(SecretSpec {
                name: env_name.to_string(),
                prompt: prompt.to_string(),
                env_name: env_name.to_string(),
                required: true,
            });
        }
    }
    // BTreeSet iterates in sorted (code point) order, like Python's `sorted()` on str.
    for var in scan_env_vars(path, runtime) {
        if seen.contains(&var) || NON_SECRET_VARS.contains(&var.as_str()) {
            continue;
        }
        seen.push(var.clone());
        secrets.push(SecretSpec {
            name: var.clone(),
            prompt: var.clone(),
            env_name: var,
            required: false,
        });
    }
    secrets
}
