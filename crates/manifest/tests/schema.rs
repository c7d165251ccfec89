//! Schema rules without Python: messages recorded from the reference CLI (instavm 0.26.1).

use std::path::Path;

use instavm_manifest::schema::{DeployKind, Kind, ManifestError};
use instavm_manifest::{parse_manifest, Manifest};

const BASE: &str = "schema_version: 2
slug: s
title: t
version: \"1\"
summary: x
category: c
runtime: r
deploy: {kind: upload_and_run}
source: {include: [a], setup_command: x}
vm: {memory_mb: 1, vcpu_count: 1}
app: {port: 80, healthcheck_path: /h, readiness_timeout_seconds: 5}
run: {workdir: ., start_command: go}
secrets: []
post_deploy_notes: []
";

fn load(extra: &str) -> Result<Manifest, ManifestError> {
    parse_manifest(
        &format!("{BASE}{extra}\n"),
        Path::new("/project/instavm.yaml"),
    )
}

#[test]
fn refusals_carry_the_reference_messages() {
    let cases = [
        ("schema_version: 3", "Unsupported cookbook schema version. Expected `schema_version: 1` or `schema_version: 2`."),
        ("kind: cron", "Manifest field `app` is not supported for `cron` workloads."),
        ("kind: 5", "Expected an optional string value."),
        ("deploy: {kind: docker}", "Manifest field `deploy.kind` must be `published_snapshot` or `upload_and_run`."),
        ("deploy: {kind: upload_and_run, source: published_snapshot}", "Manifest fields `deploy.kind` and `deploy.source` must match when both are set."),
        ("deploy: {kind: upload_and_run, snapshot_id: a, snapshot_name: b}", "Manifest fields `deploy.snapshot_id` and `deploy.snapshot_name` cannot both be set."),
        ("source: {include: [], setup_command: x}", "Manifest field `source.include` must contain at least one path or glob."),
        ("source: {include: x, setup_command: x}", "Manifest field `source.include` must be an array."),
        ("vm: {memory_mb: 1.5, vcpu_count: 1}", "Manifest field `vm.memory_mb` must be an integer."),
        ("vm: {memory_mb: 1, vcpu_count: 1, profile: big}", "Manifest field `vm.profile` must be `microvm` or `computer_use`."),
        ("app: {port: 0, healthcheck_path: /h, readiness_timeout_seconds: 5}", "Manifest field `app.port` must be between 1 and 65535."),
        ("app: {port: 80, healthcheck_path: h, readiness_timeout_seconds: 5}", "Manifest field `app.healthcheck_path` must start with `/`."),
        ("app: {port: 80, healthcheck_path: /h, readiness_timeout_seconds: 0}", "Manifest field `app.readiness_timeout_seconds` must be positive."),
        ("env: {1X: a}", "Manifest field `env key` must be a valid environment variable name."),
        ("env: {A: [1]}", "Manifest field `env.A` must be a scalar value."),
        ("secrets: [{name: a, env_name: A}]", "Manifest field `secrets[0].prompt` must be a non-empty string."),
        ("secrets: [{name: a, prompt: p, env_name: A-B}]", "Manifest field `secrets[0].env_name` must be a valid environment variable name."),
        ("vault: {hosts: []}", "Manifest field `vault.hosts` must contain at least one host."),
        ("egress: {mode: closed}", "Manifest field `egress.mode` must be `open`, `deny`, or `allowlist`."),
        ("egress: {include_vault_hosts: 1}", "Manifest field `egress.include_vault_hosts` must be a boolean."),
        ("volumes: [{name: v, mount: rel}]", "Manifest field `volumes[0].mount` must be an absolute path other than `/`."),
        ("volumes: [{name: v, mount: /v, checkpoint_id: c}]", "Manifest field `volumes[0].checkpoint_id` is only valid with `mode: ro`."),
        ("share: {port: 80, auth: password}", "Manifest field `share.password_secret` is required when `share.auth: password`."),
        ("share: {port: 80, password_secret: X}", "Manifest field `share.password_secret` must reference a declared `secrets[].env_name`."),
        ("schedule: {cron: x}", "Manifest field `schedule` is only valid for `kind: cron`."),
        ("triggers: [{type: manual}]", "Manifest field `triggers` is only valid for `kind: job`."),
        ("callbacks: {on_success: [{url: ftp://x}]}", "Manifest field `callbacks.on_success[0].url` must start with `http://` or `https://`."),
        ("callbacks: {on_success: [{url: http://x, signing_secret: S}]}", "Manifest field `callbacks.on_success[0].signing_secret` must reference a declared secret env_name."),
        ("desktop: [1]", "Manifest field `desktop` must be an object."),
        ("post_deploy_notes: 5", "Manifest field `post_deploy_notes` must be a string or array of strings."),
        (r#"slug: """#, "Manifest field `slug` must be a non-empty string."),
        ("run: {workdir: ., start_command: go, logs_hint: 5}", "Expected an optional string value."),
        ("x: 2024-02-30", "day is out of range for month"),
        ("version: 1.0", "Manifest field `version` must be a non-empty string."),
    ];
    for (extra, message) in cases {
        let err = load(extra).expect_err(extra);
        assert_eq!(err.to_string(), message, "for {extra:?}");
    }
}

#[test]
fn errors_name_their_field() {
    let err = load("env: {A: [1]}").unwrap_err();
    assert_eq!(err.field(), Some("env.A"));
    let err = load("run: {workdir: ., start_command: go, logs_hint: 5}").unwrap_err();
    assert!(
        matches!(err, ManifestError::NotOptionalString { ref field } if field == "run.logs_hint")
    );
}

#[test]
fn defaults_and_normalisation() {
    let m = load("vault: {hosts: [API.x.com, api.x.com, b.com]}\negress: {mode: allowlist, allowed_domains: [C.com]}").unwrap();
    assert_eq!(m.kind, Kind::Service);
    assert_eq!(m.deploy.kind, DeployKind::UploadAndRun);
    assert_eq!(m.vault.as_ref().unwrap().hosts, vec!["api.x.com", "b.com"]);
    let egress = m.egress.as_ref().unwrap();
    assert!(
        egress.include_vault_hosts,
        "allowlist with vault hosts includes them by default"
    );
    let domains: Vec<_> = m
        .effective_egress()
        .into_iter()
        .map(|e| (e.domain, e.source))
        .collect();
    assert_eq!(
        domains,
        vec![
            ("c.com".to_string(), "egress.allowed_domains"),
            ("api.x.com".to_string(), "vault.hosts"),
            ("b.com".to_string(), "vault.hosts"),
        ]
    );
    assert!(
        !m.app.as_ref().unwrap().share_public_default,
        "v2 shares are private by default"
    );
    assert_eq!(m.name, "t");
    assert_eq!(m.description, "x");
}

#[test]
fn yaml_booleans_count_as_integers() {
    let m = load("vm: {memory_mb: true, vcpu_count: 0x2, timeout_seconds: 1:00}").unwrap();
    assert_eq!(m.vm.memory_mb.to_i64(), Some(1));
    assert_eq!(m.vm.vcpu_count.to_i64(), Some(2));
    assert_eq!(
        m.vm.timeout_seconds.as_ref().and_then(|t| t.to_i64()),
        Some(60)
    );
}

#[test]
fn warnings_follow_the_reference_order() {
    let m = load("run: {workdir: ., start_command: go, shutdown_command: stop, pre_start_command: prep}\nsandbox: {}\negress: {hosts: [a.com]}").unwrap();
    assert_eq!(
        m.warnings,
        vec![
            "`egress.hosts` is legacy; interpreting as `egress.mode: allowlist` with `allowed_domains`.",
            "`sandbox` block parsed but not executed by this CLI version.",
            "`run.pre_start_command` parsed but not executed by this CLI version.",
            "`run.shutdown_command` parsed but not executed by this CLI version.",
        ]
    );
}

#[test]
fn vm_payload_matches_build_vm_payload() {
    let m = load("vm: {memory_mb: 512, vcpu_count: 1, profile: computer_use, metadata: {a: 1}}\nvolumes: [{name: v, mount: /v, size_gb: 2}]\negress: {mode: deny}").unwrap();
    let payload =
        instavm_manifest::py::json::dumps(&m.vm_payload(Some("snap"), &["v1".into(), "v1".into()]))
            .unwrap();
    assert_eq!(
        payload,
        r#"{"memory_mb": 512, "vcpu_count": 1, "image_variant": "computer-use", "metadata": {"a": 1}, "snapshot_id": "snap", "volumes": [{"name": "v", "mount_path": "/v", "mode": "rw", "size_gb": 2}], "egress_policy": {"allow_public_repos": true, "allow_http": false, "allow_https": false, "allowed_domains": [], "allowed_cidrs": []}, "vault_ids": ["v1"]}"#
    );
}
