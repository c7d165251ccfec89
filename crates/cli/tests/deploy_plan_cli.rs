//! `instavm deploy` behaviour that needs no reference CLI.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_instavm");

fn static_site() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.html"), "hi").unwrap();
    dir
}

#[test]
fn deploy_without_an_api_key_says_how_to_set_one() {
    let dir = static_site();
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .arg("deploy")
        .arg(dir.path())
        .arg("-y")
        .env("HOME", home.path())
        .env_remove("INSTAVM_API_KEY")
        .env("INSTAVM_BASE_URL", "http://127.0.0.1:9")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.starts_with("Error: No InstaVM API key configured."),
        "{stderr}"
    );
}

#[test]
fn plan_json_is_one_line() {
    let dir = static_site();
    let out = Command::new(BIN)
        .args(["deploy", "--plan", "--json"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1);
    assert!(stdout.contains(r#""runtime": "static""#), "{stdout}");
}

#[test]
fn errors_go_to_stderr_with_exit_code_1() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("instavm.yaml"), "schema_version: 9\n").unwrap();
    let out = Command::new(BIN)
        .args(["deploy", "--plan"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "Error: Unsupported cookbook schema version. Expected `schema_version: 1` or `schema_version: 2`.\n"
    );
}
