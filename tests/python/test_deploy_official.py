"""The official CLI's `instavm deploy`, unchanged, against our server (spec/manifest.md §7.2).

It runs `ssh` and `scp -O` against our SSH gateway with keys this test makes in its own
`~/.ssh`. OpenSSH reads `~/.ssh/config` from the passwd entry's home, not `$HOME`, so `ssh` and
`scp` on the CLI's PATH are two-line wrappers that pass the test's config with `-F`; the config
holds the `Host` entry for the gateway's port, as a user's would. `pip install` and `npm install`
inside the VMs reach the package registries.
"""

import json
import os
import pathlib
import subprocess
import textwrap
import urllib.request

import pytest
from conftest import OFFICIAL_CLI

FLASK_APP = textwrap.dedent(
    """\
    import os
    from flask import Flask

    app = Flask(__name__)

    @app.get("/")
    def index():
        return "hello from flask " + os.environ.get("GREETING", "nobody")

    @app.get("/health")
    def health():
        return {"ok": True}

    if __name__ == "__main__":
        app.run(host="0.0.0.0", port=8000)
    """
)

EXPRESS_APP = textwrap.dedent(
    """\
    const express = require("express");
    const app = express();
    app.get("/", (req, res) => res.send("hello from express"));
    app.get("/health", (req, res) => res.json({ ok: true }));
    app.listen(3000, "0.0.0.0");
    """
)

EXPRESS_MANIFEST = textwrap.dedent(
    """\
    schema_version: 1
    slug: hello-express
    title: Hello Express
    version: "1.0.0"
    summary: Express on Node.js from Debian's packages.
    category: web
    runtime: node
    deploy:
      kind: upload_and_run
    vm:
      memory_mb: 1024
      vcpu_count: 1
      timeout_seconds: 3600
    app:
      port: 3000
      healthcheck_path: /health
      share_public_default: true
      readiness_timeout_seconds: 90
    run:
      workdir: .
      start_command: node server.js
    source:
      include: ["server.js", "package.json", "instavm.yaml"]
      exclude: []
      setup_command: npm install --no-audit --no-fund
    secrets: []
    post_deploy_notes: []
    """
)

FASTAPI_MANIFEST = pathlib.Path(__file__).resolve().parents[2] / "crates/cli/tests/fixtures/deploy/manifests/hello-fastapi_instavm__1bb7176b.yaml"


@pytest.fixture
def deploy_env(server, api_key, tmp_path):
    """HOME with an ssh key pair and a config entry for the gateway; PATH with ssh wrappers."""
    home = tmp_path / "home"
    ssh_dir = home / ".ssh"
    ssh_dir.mkdir(parents=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(ssh_dir / "id_ed25519")], check=True)
    (ssh_dir / "config").write_text(
        "Host 127.0.0.1\n"
        f"  Port {server.ssh_port}\n"
        f"  UserKnownHostsFile {ssh_dir / 'known_hosts'}\n"
        "  LogLevel ERROR\n"
    )
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("ssh", "scp"):
        wrapper = bin_dir / tool
        wrapper.write_text(f'#!/bin/sh\nexec /usr/bin/{tool} -F "$HOME/.ssh/config" "$@"\n')
        wrapper.chmod(0o755)
    return dict(
        os.environ,
        HOME=str(home),
        PATH=f"{bin_dir}:{os.environ['PATH']}",
        INSTAVM_API_KEY=api_key,
        INSTAVM_BASE_URL=server.base_url,
        INSTAVM_SSH_HOST="127.0.0.1",
        NO_COLOR="1",
    )


def deploy(path, env, *flags):
    r = subprocess.run(
        [OFFICIAL_CLI, "deploy", str(path), "-y", "--json", *flags], env=env, capture_output=True, text=True, timeout=600
    )
    lines = [line for line in r.stdout.splitlines() if line.startswith("{")]
    assert lines, r
    return r.returncode, json.loads(lines[-1]), r


def fetch(url, headers=None):
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=30) as res:
        return res.status, res.read().decode()



@pytest.fixture(autouse=True)
def _delete_the_users_vms(server, api_key):
    """Deploys keep their VMs; delete the test user's ones afterwards so the shared server's host
    memory is not used up by the suite (a test that deploys uses this same `api_key`)."""
    yield
    server.delete_vms(api_key)

def test_flask_zero_config_with_env_and_saved_snapshot(tmp_path, deploy_env):
    app = tmp_path / "flask-demo"
    app.mkdir()
    (app / "app.py").write_text(FLASK_APP)
    (app / "requirements.txt").write_text("flask\n")
    code, payload, r = deploy(app, deploy_env, "--env", "GREETING=world", "--save-snapshot")
    assert code == 0, r
    assert payload["service_mode"] == "nohup" and payload["vm_id"].startswith("vm_"), payload
    # Zero-config finds `os.environ.get("GREETING")` and takes it from --env as a secret.
    assert payload["configured_secrets"] == ["GREETING"] and payload["destroy_command"] == f"instavm rm {payload['vm_id']}"
    assert fetch(payload["share_url"]) == (200, "hello from flask world")
    assert fetch(payload["healthcheck_url"])[0] == 200
    snapshot = payload["saved_snapshot_id"]
    assert snapshot.startswith("snap_"), payload

    # The next deploy of the same plan boots from the saved snapshot (upload and setup still run).
    code, again, r = deploy(app, deploy_env)
    assert code == 0, r
    assert again["reused_snapshot_id"] == snapshot and again["vm_id"] != payload["vm_id"], again
    assert fetch(again["share_url"]) == (200, "hello from flask nobody")

    # `--snapshot` boots from a named one explicitly.
    code, third, r = deploy(app, deploy_env, "--snapshot", snapshot, "--private")
    assert code == 0, r
    # A private share: the owner's key opens it, nothing else does.
    assert fetch(third["share_url"], {"X-API-Key": deploy_env["INSTAVM_API_KEY"]}) == (200, "hello from flask nobody")
    with pytest.raises(urllib.error.HTTPError) as refused:
        fetch(third["share_url"], {"Accept": "application/json"})
    assert refused.value.code == 401


def test_fastapi_and_express_from_manifests_and_a_static_site(tmp_path, deploy_env):
    fastapi = tmp_path / "hello-fastapi"
    fastapi.mkdir()
    (fastapi / "instavm.yaml").write_text(FASTAPI_MANIFEST.read_text())
    (fastapi / "app.py").write_text(
        "from fastapi import FastAPI\napp = FastAPI()\n"
        "@app.get('/')\ndef index():\n    return {'hello': 'fastapi'}\n"
        "@app.get('/health')\ndef health():\n    return {'ok': True}\n"
    )
    (fastapi / "requirements.txt").write_text("fastapi\nuvicorn\n")
    (fastapi / "Dockerfile").write_text("FROM python:3.11-slim\n")
    code, payload, r = deploy(fastapi, deploy_env)
    assert code == 0, r
    assert payload["slug"] == "hello-fastapi" and payload["version"] == "0.1.0" and payload["port"] == 8000
    assert fetch(payload["share_url"]) == (200, '{"hello":"fastapi"}')

    express = tmp_path / "express"
    express.mkdir()
    (express / "instavm.yaml").write_text(EXPRESS_MANIFEST)
    (express / "server.js").write_text(EXPRESS_APP)
    (express / "package.json").write_text(json.dumps({"name": "hello-express", "version": "1.0.0", "dependencies": {"express": "^4.19.2"}}))
    code, payload, r = deploy(express, deploy_env)
    assert code == 0, r
    assert fetch(payload["share_url"]) == (200, "hello from express")

    site = tmp_path / "site"
    (site / "public").mkdir(parents=True)
    (site / "public" / "index.html").write_text("<h1>static</h1>\n")
    code, payload, r = deploy(site, deploy_env)
    assert code == 0, r
    assert fetch(payload["share_url"]) == (200, "<h1>static</h1>\n")


def test_a_failing_setup_keeps_the_vm_and_says_why(tmp_path, deploy_env):
    app = tmp_path / "broken"
    app.mkdir()
    (app / "app.py").write_text(FLASK_APP)
    (app / "requirements.txt").write_text("flask\nthis-package-does-not-exist-instavm-test==0.0.1\n")
    code, payload, r = deploy(app, deploy_env)
    assert code == 1 and payload["status"] == "failed", r
    assert "setup" in payload["error"].lower() and payload["vm_id"].startswith("vm_"), payload
    assert "this-package-does-not-exist-instavm-test" in r.stdout + r.stderr
