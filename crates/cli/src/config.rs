//! `~/.instavm/config.json` and the precedence of settings (spec/cli.md §2): flag, then
//! environment, then the active profile of the config file, then the default.

use anyhow::{anyhow, Context};
use serde_json::{json, Map, Value};
use std::io::Write;
use std::path::{Path, PathBuf};

pub const DEFAULT_BASE_URL: &str = "https://api.instavm.io";
pub const DEFAULT_SSH_HOST: &str = "instavm.dev";
const SCHEMA_VERSION: i64 = 1;

/// `~/.instavm/config.json` (`$HOME` is honoured, which tests rely on).
pub fn config_path() -> anyhow::Result<PathBuf> {
    let home = dirs::home_dir().ok_or_else(|| anyhow!("cannot find the home directory"))?;
    Ok(home.join(".instavm").join("config.json"))
}

fn default_config() -> Value {
    json!({
        "schema_version": SCHEMA_VERSION,
        "active_profile": "default",
        "profiles": {"default": {"auth": {"type": "api_key", "api_key": null}}},
    })
}

/// Blank values dropped, the auth block filled in, unknown profile keys kept.
fn normalize_profile(profile: &Map<String, Value>) -> Value {
    let mut out = profile.clone();
    let mut auth = profile
        .get("auth")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let auth_type = auth
        .get("type")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .unwrap_or("api_key")
        .to_owned();
    let api_key = match auth.get("api_key") {
        Some(Value::Null) | None => Value::Null,
        Some(Value::String(s)) if s.trim().is_empty() => Value::Null,
        Some(Value::String(s)) => Value::String(s.trim().to_owned()),
        Some(other) => Value::String(other.to_string()),
    };
    auth.insert("type".into(), Value::String(auth_type));
    auth.insert("api_key".into(), api_key);
    out.insert("auth".into(), Value::Object(auth));
    for field in ["base_url", "ssh_host"] {
        match out.get(field) {
            None | Some(Value::Null) => {}
            Some(v) => {
                let text = match v {
                    Value::String(s) => s.trim().to_owned(),
                    other => other.to_string(),
                };
                if text.is_empty() {
                    out.remove(field);
                } else {
                    out.insert(field.into(), Value::String(text));
                }
            }
        }
    }
    Value::Object(out)
}

pub fn normalize(raw: &Value) -> Value {
    let mut config = default_config();
    let Some(raw) = raw.as_object() else {
        return config;
    };
    if let Some(v) = raw.get("schema_version").filter(|v| v.is_i64()) {
        config["schema_version"] = v.clone();
    }
    if let Some(profiles) = raw.get("profiles").and_then(Value::as_object) {
        let mut out = Map::new();
        for (name, profile) in profiles {
            if let Some(p) = profile.as_object() {
                out.insert(name.clone(), normalize_profile(p));
            }
        }
        if !out.contains_key("default") {
            out.insert(
                "default".into(),
                default_config()["profiles"]["default"].clone(),
            );
        }
        config["profiles"] = Value::Object(out);
    }
    if let Some(active) = raw.get("active_profile").and_then(Value::as_str) {
        if config["profiles"].get(active).is_some() {
            config["active_profile"] = Value::String(active.to_owned());
        }
    }
    config
}

/// The config file, or the default when there is none.
pub fn load(path: &Path) -> anyhow::Result<Value> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let raw: Value = serde_json::from_str(&text)
                .map_err(|_| anyhow!("Invalid config JSON in {}", path.display()))?;
            Ok(normalize(&raw))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(default_config()),
        Err(e) => Err(anyhow!(
            "Unable to read config from {}: {e}",
            path.display()
        )),
    }
}

/// Write atomically (temporary file in the same directory, then rename): directory 0700,
/// file 0600, sorted keys, 2-space indent.
pub fn save(config: &Value, path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = path
        .parent()
        .ok_or_else(|| anyhow!("invalid config path {}", path.display()))?;
    let fail = || format!("Unable to write config to {}", path.display());
    std::fs::create_dir_all(dir).with_context(fail)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).with_context(fail)?;
    // serde_json keeps object keys sorted, which is what the official CLI writes.
    let mut text = serde_json::to_string_pretty(&normalize(config)).with_context(fail)?;
    text.push('\n');
    let mut tmp = tempfile::Builder::new()
        .prefix(".config.json.")
        .tempfile_in(dir)
        .with_context(fail)?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o600))
        .with_context(fail)?;
    tmp.write_all(text.as_bytes()).with_context(fail)?;
    tmp.as_file().sync_all().with_context(fail)?;
    tmp.persist(path).map_err(|e| e.error).with_context(fail)?;
    Ok(())
}

fn active_profile(config: &Value) -> Map<String, Value> {
    let name = config["active_profile"].as_str().unwrap_or("default");
    config["profiles"][name]
        .as_object()
        .cloned()
        .unwrap_or_default()
}

/// The settings a command runs with, and where each came from.
#[derive(Debug, Clone)]
pub struct Settings {
    pub api_key: Option<String>,
    pub base_url: String,
    pub ssh_host: String,
    pub api_key_source: &'static str,
    pub base_url_source: &'static str,
    pub ssh_host_source: &'static str,
    pub config_path: PathBuf,
    pub config: Value,
}

/// Flags given on the command line (each `None` when absent).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub api_key: Option<String>,
    pub base_url: Option<String>,
    pub ssh_host: Option<String>,
}

fn non_blank(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

pub fn resolve(flags: &Overrides) -> anyhow::Result<Settings> {
    resolve_with(flags, &|name| std::env::var(name).ok(), &config_path()?)
}

pub fn resolve_with(
    flags: &Overrides,
    env: &dyn Fn(&str) -> Option<String>,
    path: &Path,
) -> anyhow::Result<Settings> {
    let config = load(path)?;
    let profile = active_profile(&config);
    let stored_key = profile
        .get("auth")
        .and_then(|a| a.get("api_key"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let stored = |field: &str| {
        profile
            .get(field)
            .and_then(Value::as_str)
            .map(str::to_owned)
    };

    let (api_key, api_key_source) = if let Some(k) = non_blank(flags.api_key.clone()) {
        (Some(k), "flag")
    } else if let Some(k) = non_blank(env("INSTAVM_API_KEY")) {
        (Some(k), "env")
    } else if let Some(k) = non_blank(stored_key) {
        (Some(k), "config")
    } else {
        (None, "missing")
    };
    let (base_url, base_url_source) = if let Some(u) = non_blank(flags.base_url.clone()) {
        (u, "flag")
    } else if let Some(u) = non_blank(env("INSTAVM_BASE_URL")) {
        (u, "env")
    } else if let Some(u) = non_blank(stored("base_url")) {
        (u, "config")
    } else {
        (DEFAULT_BASE_URL.to_owned(), "default")
    };
    let (ssh_host, ssh_host_source) = if let Some(h) = non_blank(flags.ssh_host.clone()) {
        (h, "flag")
    } else if let Some(h) = non_blank(env("INSTAVM_SSH_HOST")) {
        (h, "env")
    } else if let Some(h) = non_blank(stored("ssh_host")) {
        (h, "config")
    } else {
        (derive_ssh_host(&base_url), "derived")
    };
    Ok(Settings {
        api_key,
        base_url,
        ssh_host,
        api_key_source,
        base_url_source,
        ssh_host_source,
        config_path: path.to_owned(),
        config,
    })
}

/// The SSH gateway host for a base URL (spec/cli.md §2.2).
pub fn derive_ssh_host(base_url: &str) -> String {
    let host = host_of(base_url).to_ascii_lowercase();
    if host.is_empty() {
        DEFAULT_SSH_HOST.to_owned()
    } else if host == "localhost" || host == "127.0.0.1" {
        host
    } else if host.contains("staging") && host.contains("instavm") {
        "staging.instavm.dev".to_owned()
    } else if host.contains("instavm") {
        // `api.*`, `staging.api.*` (caught above) and any other instavm host.
        DEFAULT_SSH_HOST.to_owned()
    } else {
        host
    }
}

/// The hostname of a URL, without scheme, credentials, port or path.
fn host_of(url: &str) -> String {
    let rest = url.split_once("://").map_or("", |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if let Some(v6) = host_port.strip_prefix('[') {
        return v6.split(']').next().unwrap_or("").to_owned();
    }
    host_port.split(':').next().unwrap_or("").to_owned()
}

/// Keep the first 8 and last 4 characters.
pub fn redact(secret: Option<&str>) -> Option<String> {
    let value = secret?.trim();
    if value.is_empty() {
        return None;
    }
    let chars: Vec<char> = value.chars().collect();
    if chars.len() <= 8 {
        return Some("*".repeat(chars.len()));
    }
    let head: String = chars[..8].iter().collect();
    let tail: String = chars[chars.len().saturating_sub(4)..].iter().collect();
    Some(format!("{head}...{tail}"))
}

/// What to change in the active profile.
#[derive(Debug, Default)]
pub struct ProfileUpdate {
    pub api_key: Option<String>,
    pub clear_api_key: bool,
    pub base_url: Option<String>,
    pub ssh_host: Option<String>,
}

pub fn update_profile(path: &Path, update: ProfileUpdate) -> anyhow::Result<()> {
    let mut config = load(path)?;
    let name = config["active_profile"]
        .as_str()
        .unwrap_or("default")
        .to_owned();
    let mut profile = active_profile(&config);
    let mut auth = profile
        .get("auth")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    if update.clear_api_key {
        auth.insert("api_key".into(), Value::Null);
    } else if let Some(key) = update.api_key {
        auth.insert(
            "api_key".into(),
            non_blank(Some(key)).map_or(Value::Null, Value::String),
        );
    }
    for (field, value) in [("base_url", update.base_url), ("ssh_host", update.ssh_host)] {
        if let Some(v) = value {
            match non_blank(Some(v)) {
                Some(v) => profile.insert(field.into(), Value::String(v)),
                None => profile.remove(field),
            };
        }
    }
    profile.insert("auth".into(), Value::Object(auth));
    config["profiles"][&name] = Value::Object(profile);
    save(&config, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn precedence_is_flag_env_config_default() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".instavm/config.json");
        update_profile(
            &path,
            ProfileUpdate {
                api_key: Some("config-key-123456".into()),
                base_url: Some("http://config:1".into()),
                ..ProfileUpdate::default()
            },
        )
        .unwrap();
        let s = resolve_with(&Overrides::default(), &env_of(&[]), &path).unwrap();
        assert_eq!(s.api_key.as_deref(), Some("config-key-123456"));
        assert_eq!(
            (s.base_url.as_str(), s.base_url_source),
            ("http://config:1", "config")
        );
        assert_eq!(
            (s.ssh_host.as_str(), s.ssh_host_source),
            ("config", "derived")
        );
        let env = env_of(&[
            ("INSTAVM_API_KEY", "env-key"),
            ("INSTAVM_BASE_URL", "http://env:2"),
        ]);
        let s = resolve_with(&Overrides::default(), &env, &path).unwrap();
        assert_eq!(
            (s.api_key.as_deref(), s.api_key_source),
            (Some("env-key"), "env")
        );
        assert_eq!(s.base_url_source, "env");
        let flags = Overrides {
            api_key: Some("flag-key".into()),
            ..Overrides::default()
        };
        let s = resolve_with(&flags, &env, &path).unwrap();
        assert_eq!(
            (s.api_key.as_deref(), s.api_key_source),
            (Some("flag-key"), "flag")
        );
        let empty = dir.path().join("none.json");
        let s = resolve_with(&Overrides::default(), &env_of(&[]), &empty).unwrap();
        assert_eq!(
            (s.base_url.as_str(), s.base_url_source),
            (DEFAULT_BASE_URL, "default")
        );
        assert_eq!(s.api_key_source, "missing");
        assert_eq!(s.ssh_host, "instavm.dev");
    }

    #[test]
    fn file_is_private_sorted_and_keeps_other_profiles() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".instavm/config.json");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(
            &path,
            r#"{"active_profile":"work","profiles":{"work":{"auth":{"api_key":" k "},"base_url":" ","x":1},"other":{"auth":{}}}}"#,
        )
        .unwrap();
        let s = resolve_with(&Overrides::default(), &env_of(&[]), &path).unwrap();
        assert_eq!(s.api_key.as_deref(), Some("k"));
        assert_eq!(s.base_url_source, "default", "blank values are dropped");
        update_profile(
            &path,
            ProfileUpdate {
                clear_api_key: true,
                ..ProfileUpdate::default()
            },
        )
        .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["profiles"]["work"]["auth"]["api_key"], Value::Null);
        assert_eq!(v["profiles"]["work"]["x"], 1);
        assert!(v["profiles"]["other"].is_object());
        assert!(v["profiles"]["default"].is_object());
        assert!(
            text.starts_with("{\n  \"active_profile\": \"work\""),
            "{text}"
        );
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        std::fs::write(&path, "{nope").unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(err.starts_with("Invalid config JSON in "), "{err}");
    }

    #[test]
    fn ssh_host_derivation_and_redaction() {
        assert_eq!(derive_ssh_host("https://api.instavm.io"), "instavm.dev");
        assert_eq!(
            derive_ssh_host("https://api.staging.instavm.io"),
            "staging.instavm.dev"
        );
        assert_eq!(derive_ssh_host("http://localhost:8080"), "localhost");
        assert_eq!(derive_ssh_host("http://127.0.0.1:8080/x"), "127.0.0.1");
        assert_eq!(
            derive_ssh_host("https://user@Sandbox.Example.com:443"),
            "sandbox.example.com"
        );
        assert_eq!(derive_ssh_host("nonsense"), "instavm.dev");
        assert_eq!(
            redact(Some("ivm_0123456789abcdef")).unwrap(),
            "ivm_0123...cdef"
        );
        assert_eq!(redact(Some("short")).unwrap(), "*****");
        assert_eq!(redact(Some("  ")), None);
    }
}
