//! Conformance of `instavm deploy --plan` with the reference CLI (the official `instavm`
//! 0.26.1 Python package): every real cookbook manifest, and the edge cases of
//! `fixtures/deploy/cases/*.cases`, run through both CLIs in the same directory with the same
//! controlled environment. Exit code, stdout and the `Error:` message must be identical.
//!
//! The reference is `$INSTAVM_REFERENCE_CLI`, else `<workspace>/.venv/bin/instavm`, which
//! `scripts/python-venv.sh` installs. Without it these tests fail.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

const OURS: &str = env!("CARGO_BIN_EXE_instavm");

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/deploy")
}

fn reference_cli() -> PathBuf {
    let path = std::env::var_os("INSTAVM_REFERENCE_CLI").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/instavm"),
        PathBuf::from,
    );
    assert!(
        path.is_file(),
        "reference CLI not found at {}: run scripts/python-venv.sh (or set INSTAVM_REFERENCE_CLI)",
        path.display()
    );
    path
}

/// The reference answers with whatever PyYAML its venv holds; our parser models one release.
/// A different one (an unlocked venv, or a lock moved forward without re-checking the merge
/// rules) would make every YAML difference look like our bug, so refuse it up front.
#[test]
fn reference_uses_the_pyyaml_release_we_model() {
    let python = reference_cli().with_file_name("python");
    let out = Command::new(&python)
        .args(["-c", "import yaml; print(yaml.__version__)"])
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", python.display()));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(
        version,
        instavm_manifest::yaml::PYYAML_VERSION,
        "the reference venv has PyYAML {version}; crates/manifest models PyYAML {}. Install the \
         venv from tests/python/requirements.lock (scripts/python-venv.sh), or move both \
         forward together (docs/testing.md)",
        instavm_manifest::yaml::PYYAML_VERSION
    );
}

/// One project to plan, built in a temporary directory.
#[derive(Debug, Default, Clone)]
struct Case {
    name: String,
    origin: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    json: bool,
    text: bool,
    path: Option<String>,
    unordered_secrets: bool,
    files: Vec<(String, FileSpec)>,
}

#[derive(Debug, Clone)]
enum FileSpec {
    Bytes(Vec<u8>),
    Dir,
}

const BASE_V2: &str = "schema_version: 2
kind: service
slug: edge
title: Edge Case
version: \"1.0.0\"
summary: An edge case.
category: test
runtime: python-fastapi
deploy: {kind: upload_and_run}
source: {include: [app.py, requirements.txt], exclude: [], setup_command: pip install -r requirements.txt}
vm: {memory_mb: 1024, vcpu_count: 1}
app: {port: 8000, healthcheck_path: /health, readiness_timeout_seconds: 60}
run: {workdir: ., start_command: python -m uvicorn app:app --host 0.0.0.0 --port 8000}
secrets: []
post_deploy_notes: []
";

/// Splits an `args:` line like a POSIX shell: whitespace separates, quotes group.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => current.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut current));
                    in_word = false;
                }
            }
            (None, c) => {
                current.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(current);
    }
    words
}

/// `\xNN`, `\n`, `\r`, `\t` and `\\` escapes to bytes.
fn unescape(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 1 < bytes.len() {
            match bytes[i + 1] {
                b'x' if i + 3 < bytes.len() => {
                    let hex = std::str::from_utf8(&bytes[i + 2..i + 4]).unwrap();
                    out.push(u8::from_str_radix(hex, 16).unwrap());
                    i += 4;
                    continue;
                }
                b'n' => out.push(b'\n'),
                b'r' => out.push(b'\r'),
                b't' => out.push(b'\t'),
                b'\\' => out.push(b'\\'),
                other => out.extend([b'\\', other]),
            }
            i += 2;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// Builds a file from its `@@@ path [modifiers]` header and content lines.
fn build_file(modifiers: &[&str], lines: &[&str]) -> FileSpec {
    if modifiers.contains(&"dir") {
        return FileSpec::Dir;
    }
    let mut text = String::new();
    let base = if modifiers.contains(&"base") {
        Some(BASE_V2.to_string())
    } else if modifiers.contains(&"base-v1") {
        Some(BASE_V2.replacen(
            "schema_version: 2\nkind: service\n",
            "schema_version: 1\n",
            1,
        ))
    } else {
        None
    };
    if let Some(base) = base {
        let dropped: Vec<&str> = modifiers
            .iter()
            .filter_map(|m| m.strip_prefix("drop="))
            .flat_map(|list| list.split(','))
            .collect();
        for line in base.lines() {
            let key = line.split(':').next().unwrap_or_default();
            if !dropped.contains(&key) {
                text.push_str(line);
                text.push('\n');
            }
        }
    }
    let mut content = lines.join("\n");
    // Blank lines that only separate cases are not content.
    while content.ends_with('\n') {
        content.pop();
    }
    if !content.is_empty() {
        text.push_str(&content);
        if !modifiers.contains(&"noeol") {
            text.push('\n');
        }
    }
    if modifiers.contains(&"escaped") {
        FileSpec::Bytes(unescape(&text))
    } else {
        FileSpec::Bytes(text.into_bytes())
    }
}

fn parse_cases(file: &Path) -> Vec<Case> {
    let source = std::fs::read_to_string(file).unwrap();
    let file_name = file.file_name().unwrap().to_string_lossy().into_owned();
    let mut cases: Vec<Case> = Vec::new();
    // The file being collected: (path, modifiers, content lines).
    let mut open: Option<(String, Vec<String>, Vec<String>)> = None;
    let finish = |open: &mut Option<(String, Vec<String>, Vec<String>)>, cases: &mut Vec<Case>| {
        if let (Some((path, modifiers, lines)), Some(case)) = (open.take(), cases.last_mut()) {
            let modifiers: Vec<&str> = modifiers.iter().map(String::as_str).collect();
            let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
            case.files.push((path, build_file(&modifiers, &lines)));
        }
    };
    for (number, line) in source.lines().enumerate() {
        if let Some(name) = line.strip_prefix("=== ") {
            finish(&mut open, &mut cases);
            cases.push(Case {
                name: name.trim().to_string(),
                origin: format!("{file_name}:{}", number + 1),
                json: true,
                ..Case::default()
            });
            continue;
        }
        if let Some(header) = line.strip_prefix("@@@ ") {
            finish(&mut open, &mut cases);
            let (path, modifiers) = match header.split_once(" [") {
                Some((path, rest)) => (
                    path.trim().to_string(),
                    rest.trim_end_matches(']')
                        .split_whitespace()
                        .map(str::to_string)
                        .collect(),
                ),
                None => (header.trim().to_string(), Vec::new()),
            };
            open = Some((path, modifiers, Vec::new()));
            continue;
        }
        if let Some((_, _, lines)) = open.as_mut() {
            lines.push(line.to_string());
            continue;
        }
        let Some(case) = cases.last_mut() else {
            continue;
        };
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (key, value) = line.split_once(": ").unwrap_or((line, ""));
        match key {
            "args" => case.args = shell_words(value),
            "env" => {
                let (k, v) = value.split_once('=').unwrap_or((value, ""));
                case.env.push((k.to_string(), v.to_string()));
            }
            "mode" => {
                case.json = value != "text";
                case.text = value != "json";
            }
            "path" => case.path = Some(value.to_string()),
            "compare" => case.unordered_secrets = value == "unordered-secrets",
            other => panic!("{}: unknown case directive {other:?}", case.origin),
        }
    }
    finish(&mut open, &mut cases);
    cases
}

#[derive(Debug, PartialEq)]
struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn run(cli: &Path, dir: &Path, home: &Path, case: &Case, json: bool) -> Outcome {
    let target = match &case.path {
        Some(p) => dir.join(p),
        None => dir.to_path_buf(),
    };
    let mut cmd = Command::new(cli);
    cmd.arg("deploy").arg(&target).arg("--plan");
    if json {
        cmd.arg("--json");
    }
    let output = cmd
        .args(&case.args)
        .env_clear()
        .env("HOME", home)
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("LC_ALL", "C.UTF-8")
        .env("PYTHONHASHSEED", "0")
        .envs(case.env.iter().map(|(k, v)| (k, v)))
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", cli.display()));
    Outcome {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The error the reference reported: its `Error: ` line, or the last line of a traceback
/// (`TypeError: ...`), which our CLI prints as `Error: TypeError: ...`.
fn reference_error(stderr: &str) -> Option<String> {
    if stderr.contains("Traceback (most recent call last)") {
        return stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .map(str::to_string);
    }
    stderr
        .lines()
        .find_map(|l| l.strip_prefix("Error: "))
        .map(str::to_string)
}

fn our_error(stderr: &str) -> Option<String> {
    stderr
        .lines()
        .find_map(|l| l.strip_prefix("Error: "))
        .map(str::to_string)
}

/// Sorts the `secrets` array of a JSON plan (for cases where Python iterates a set).
fn sort_secrets(stdout: &str) -> String {
    let Ok(mut value) = serde_json::from_str::<serde_json::Value>(stdout) else {
        return stdout.to_string();
    };
    if let Some(serde_json::Value::Array(items)) = value.get_mut("secrets") {
        items.sort_by_key(|v| v.to_string());
    }
    value.to_string()
}

/// Compares both CLIs on one case; returns the differences.
fn compare(reference: &Path, case: &Case) -> Vec<String> {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("project");
    let home = root.path().join("home");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::create_dir_all(&home).unwrap();
    for (path, spec) in &case.files {
        let full = dir.join(path);
        match spec {
            FileSpec::Dir => std::fs::create_dir_all(&full).unwrap(),
            FileSpec::Bytes(bytes) => {
                std::fs::create_dir_all(full.parent().unwrap()).unwrap();
                std::fs::write(&full, bytes).unwrap();
            }
        }
    }
    let mut problems = Vec::new();
    let modes = [(true, case.json), (false, case.text)];
    for (json, _) in modes.iter().filter(|(_, enabled)| *enabled) {
        let expected = run(reference, &dir, &home, case, *json);
        let actual = run(Path::new(OURS), &dir, &home, case, *json);
        let mode = if *json { "--json" } else { "text" };
        let mut report = |what: &str, want: &dyn std::fmt::Debug, got: &dyn std::fmt::Debug| {
            problems.push(format!(
                "[{}] {} ({mode}): {what} differs\n    reference: {want:?}\n    ours:      {got:?}",
                case.origin, case.name
            ));
        };
        if expected.code != actual.code {
            report("exit code", &expected.code, &actual.code);
        }
        let (want_out, got_out) = if case.unordered_secrets {
            (sort_secrets(&expected.stdout), sort_secrets(&actual.stdout))
        } else {
            (expected.stdout.clone(), actual.stdout.clone())
        };
        if want_out != got_out {
            report("stdout", &want_out, &got_out);
        }
        if let Some(want_err) = reference_error(&expected.stderr) {
            let got_err = our_error(&actual.stderr);
            if got_err.as_deref() != Some(want_err.as_str()) {
                report("error", &want_err, &got_err);
            }
        }
    }
    problems
}

/// Runs all cases on a few threads (each reference run costs a Python start, about half a
/// second). `DEPLOY_PLAN_CASES=<text>` keeps only the cases whose name or origin contains it.
fn check_all(mut cases: Vec<Case>) {
    let reference = reference_cli();
    if let Ok(filter) = std::env::var("DEPLOY_PLAN_CASES") {
        cases.retain(|c| c.name.contains(&filter) || c.origin.contains(&filter));
    }
    let next = AtomicUsize::new(0);
    let problems = Mutex::new(Vec::new());
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 4));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(case) = cases.get(i) else { break };
                let found = compare(&reference, case);
                problems.lock().unwrap().extend(found);
            });
        }
    });
    let problems = problems.into_inner().unwrap();
    let failing: std::collections::BTreeSet<&str> = problems
        .iter()
        .filter_map(|p| {
            p.split("] ")
                .nth(1)
                .and_then(|rest| rest.split(" (").next())
        })
        .collect();
    eprintln!(
        "deploy plan conformance: {} of {} cases match the reference",
        cases.len() - failing.len(),
        cases.len()
    );
    assert!(
        problems.is_empty(),
        "{} mismatches:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn real_cookbook_manifests_match_the_reference() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixtures().join("manifests"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert_eq!(
        files.len(),
        73,
        "the 73 cookbook manifests of shared/conformance"
    );
    let cases = files
        .iter()
        .enumerate()
        .map(|(i, file)| Case {
            name: file.file_stem().unwrap().to_string_lossy().into_owned(),
            origin: format!("manifests/{}", file.file_name().unwrap().to_string_lossy()),
            json: true,
            // The text summary on every fourth manifest: each reference run costs a Python start.
            text: i % 4 == 0,
            // One secret set, to exercise both secret lines of the text plan.
            env: vec![("OPENAI_API_KEY".into(), "set".into())],
            files: vec![(
                "instavm.yaml".into(),
                FileSpec::Bytes(std::fs::read(file).unwrap()),
            )],
            ..Case::default()
        })
        .collect();
    check_all(cases);
}

#[test]
fn edge_cases_match_the_reference() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixtures().join("cases"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cases"))
        .collect();
    files.sort();
    let cases: Vec<Case> = files.iter().flat_map(|f| parse_cases(f)).collect();
    assert!(
        cases.len() > 200,
        "edge cases went missing: {}",
        cases.len()
    );
    check_all(cases);
}

#[test]
fn case_files_parse() {
    let words = shell_words(r#"--port=" 8_080 " --start-command "node x" -f 'a b'"#);
    assert_eq!(
        words,
        vec!["--port= 8_080 ", "--start-command", "node x", "-f", "a b"]
    );
    assert_eq!(unescape(r"a\xe9\n"), vec![b'a', 0xe9, b'\n']);
    let FileSpec::Bytes(bytes) = build_file(&["base", "drop=app,kind"], &["kind: cron"]) else {
        panic!("a file");
    };
    let text = String::from_utf8(bytes).unwrap();
    assert!(
        !text.contains("\napp:")
            && !text.contains("\nkind: service")
            && text.ends_with("kind: cron\n")
    );
}
