//! Go projects (`_detect_go`): a Go toolchain download, a static build, `./app`.

use std::path::Path;
use std::sync::LazyLock;

use num_bigint::BigInt;
use regex::Regex;

use super::files::{glob_suffix, is_dir, read_strict, sorted_subdirs};
use super::{
    capture_int, dir_name, pattern, secrets, slugify, DeployPlan, DetectError, PORT_PATTERN,
};

const SOURCE_CANDIDATES: [&str; 5] = [
    "main.go",
    "server.go",
    "app.go",
    "cmd/server/main.go",
    "cmd/main.go",
];

static LISTEN_PORT: LazyLock<Regex> =
    LazyLock::new(|| pattern(r#"ListenAndServe\s*\(\s*["']:([0-9]{2,5})["']"#));
static HEALTH_ROUTE: LazyLock<Regex> = LazyLock::new(|| {
    pattern(r#"(?:HandleFunc|Handle)\s*\(\s*['"](/(?:health|healthz|api/health))['"]"#)
});
static GO_VERSION: LazyLock<Regex> =
    LazyLock::new(|| pattern(r"(?m)^go\s+([0-9]+(?:\.[0-9]+){1,2})\s*$"));

pub fn detect(path: &Path) -> Result<DeployPlan, DetectError> {
    let target = if !glob_suffix(path, ".go").is_empty() {
        ".".to_string()
    } else if is_dir(&path.join("cmd")) {
        match sorted_subdirs(&path.join("cmd")).first() {
            Some(first) => format!("./cmd/{first}"),
            None => ".".to_string(),
        }
    } else {
        ".".to_string()
    };
    let version = go_version(path)?;
    let build_command = format!(
        "export GOROOT=\"$HOME/.local/go\" && export PATH=\"$GOROOT/bin:$PATH\" && CGO_ENABLED=0 go build -ldflags='-w -s' -o app {target}"
    );
    let install_command = format!(
        concat!(
            "GO_VERSION=\"{version}\" && ",
            "case \"$GO_VERSION\" in *.*.*) ;; *) GO_VERSION=\"$GO_VERSION.0\" ;; esac && ",
            "export GOROOT=\"$HOME/.local/go\" && export PATH=\"$GOROOT/bin:$PATH\" && ",
            "if [ ! -x \"$GOROOT/bin/go\" ] || ! \"$GOROOT/bin/go\" version | grep -q \"go$GO_VERSION\"; then ",
            "rm -rf \"$GOROOT\" && mkdir -p \"$HOME/.local\" && ",
            "curl -fsSL \"https://dl.google.com/go/go$GO_VERSION.linux-amd64.tar.gz\" -o /tmp/instavm-go.tgz && ",
            "tar -C \"$HOME/.local\" -xzf /tmp/instavm-go.tgz; ",
            "fi && go mod download"
        ),
        version = version
    );
    let port = port(path)?;
    let health_path = health_path(path)?;
    let secrets = secrets::collect(path, &[], "go");
    Ok(DeployPlan {
        slug: slugify(&dir_name(path)),
        runtime: "go".into(),
        package_manager: "go".into(),
        install_command,
        build_command: Some(build_command),
        start_command: "./app".into(),
        port,
        health_path,
        secrets,
    })
}

/// `_detect_go_port`: `ListenAndServe(":N")` or the PORT pattern in the candidates, then
/// `ListenAndServe` in any root `*.go`; 8080 by default.
fn port(path: &Path) -> Result<BigInt, DetectError> {
    for candidate in SOURCE_CANDIDATES {
        let full = path.join(candidate);
        if !full.exists() {
            continue;
        }
        let Some(text) = read_strict(&full)? else {
            continue;
        };
        if let Some(port) = capture_int(&LISTEN_PORT, &text)? {
            return Ok(port);
        }
        if let Some(port) = capture_int(&PORT_PATTERN, &text)? {
            return Ok(port);
        }
    }
    for file in glob_suffix(path, ".go") {
        let Some(text) = read_strict(&file)? else {
            continue;
        };
        if let Some(port) = capture_int(&LISTEN_PORT, &text)? {
            return Ok(port);
        }
    }
    Ok(BigInt::from(8080))
}

/// `_detect_go_version`: `go X.Y[.Z]` from go.mod, default 1.23.0.
fn go_version(path: &Path) -> Result<String, DetectError> {
    let go_mod = path.join("go.mod");
    if !go_mod.exists() {
        return Ok("1.23.0".into());
    }
    let Some(text) = read_strict(&go_mod)? else {
        return Ok("1.23.0".into());
    };
    Ok(GO_VERSION
        .captures(&text)
        .and_then(|c| c.get(1))
        .map_or_else(|| "1.23.0".to_string(), |m| m.as_str().to_string()))
}

/// `_detect_go_health_path`: a health route in the candidates, then any root `*.go`; `/`.
fn health_path(path: &Path) -> Result<String, DetectError> {
    let candidates = SOURCE_CANDIDATES
        .iter()
        .map(|c| path.join(c))
        .filter(|p| p.exists())
        .chain(glob_suffix(path, ".go"));
    for file in candidates {
        let Some(text) = read_strict(&file)? else {
            continue;
        };
        if let Some(m) = HEALTH_ROUTE.captures(&text).and_then(|c| c.get(1)) {
            return Ok(m.as_str().to_string());
        }
    }
    Ok("/".into())
}
