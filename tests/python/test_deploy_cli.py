"""Our CLI's `instavm deploy` and `instavm cookbook` against the real server (no SSH on the client).

Each test writes a small app, deploys it with our binary (BIN) and checks the share URL, the
`--json` payload (the official CLI's keys plus our `timings`), the failure payload, snapshot
resolution by name, the zero-config snapshot record, and the cookbook catalogue. `pip install`
and `npm install` reach the registries from inside the VMs.

Run: INSTAVM_BIN=$PWD/target/release/instavm .venv/bin/pytest -q tests/python/test_deploy_cli.py
"""

import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import textwrap
import time
import urllib.error
import urllib.request
import uuid

import pytest

from conftest import BIN, OFFICIAL_CLI

CONFORMANCE = pathlib.Path("/work/shared/conformance/manifests")

# The keys of the official CLI's deploy payload (_cookbook._run_deploy, instavm 0.26.1), in order.
OFFICIAL_KEYS = [
    "slug", "version", "deploy_kind", "vm_id", "session_id", "service_name", "service_mode", "port",
    "share_url", "healthcheck_url", "connect_command", "logs_command", "destroy_command",
    "configured_secrets", "env", "vault_ids", "vault_bindings", "notes",
]
# Its failure payload: the same keys minus share_url, healthcheck_url, env, vault_* and notes.
OFFICIAL_PARTIAL_KEYS = [
    k for k in OFFICIAL_KEYS
    if k not in ("share_url", "healthcheck_url", "env", "vault_ids", "vault_bindings", "notes")
]
STEPS = ["create", "upload", "setup", "start", "health", "share"]


def official_keys_from_source():
    """The payload keys as the installed official CLI writes them (a guard on OFFICIAL_KEYS)."""
    import instavm._cookbook as cb

    src = pathlib.Path(cb.__file__).read_text()
    body = src[src.index("    payload = {\n        \"slug\": manifest.slug,"):]
    body = body[: body.index("    return payload")]
    return [line.split('"')[1] for line in body.splitlines() if line.startswith('        "')]


def http(url, headers=None, timeout=30):
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as res:
            return res.status, res.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def api(server, key, method, path, body=None, timeout=300):
    req = urllib.request.Request(
        server.base_url + path,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "X-API-Key": key},
        method=method,
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as res:
            return res.status, json.loads(res.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def deploy(cli_env, api_key, *args, cwd=None, extra_env=None, timeout=600):
    env = dict(cli_env, INSTAVM_API_KEY=api_key, **(extra_env or {}))
    return subprocess.run(
        [BIN, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def payload_of(proc):
    lines = [l for l in proc.stdout.splitlines() if l.strip()]
    assert lines, f"no stdout; stderr:\n{proc.stderr}"
    return json.loads(lines[-1])


def write(dir_, files):
    for name, text in files.items():
        path = dir_ / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())


def manifest(slug, *, port, start, setup, health="/health", readiness=90, extra=""):
    """A v1 service manifest (no indentation: written as is, `write` dedents nothing here)."""
    return f"""schema_version: 1
slug: {slug}
title: {slug}
version: "0.1.0"
summary: test app
category: web
runtime: test
deploy:
  kind: upload_and_run
vm:
  memory_mb: 1024
  vcpu_count: 1
  timeout_seconds: 1800
app:
  port: {port}
  healthcheck_path: {health}
  share_public_default: true
  readiness_timeout_seconds: {readiness}
run:
  workdir: .
  start_command: {start}
source:
  include: ["*"]
  exclude: []
  setup_command: {setup}
post_deploy_notes: []
{extra or "secrets: []"}
"""


FLASK_APP = {
    "app.py": """
        from flask import Flask
        app = Flask(__name__)

        @app.route("/")
        def index():
            return "hello from flask\\n"

        @app.route("/health")
        def health():
            return "ok\\n"
    """,
    "requirements.txt": "flask\n",
}


def check_success_payload(p):
    keys = [k for k in p if k not in ("timings", "reused_snapshot_id", "saved_snapshot_id")]
    assert keys == OFFICIAL_KEYS
    assert list(p["timings"])[:6] == STEPS
    assert all(isinstance(v, (int, float)) and v >= 0 for v in p["timings"].values())
    assert p["service_mode"] == "nohup"
    assert p["connect_command"] == f"instavm connect {p['vm_id']}"
    assert p["destroy_command"] == f"instavm rm {p['vm_id']}"
    assert p["service_name"] == f"instavm-cookbook-{p['slug']}"
    assert p["logs_command"].endswith(f"tail -n 200 /root/.instavm-cookbooks/logs/{p['slug']}.log")


def test_official_payload_keys_are_the_ones_we_check():
    assert official_keys_from_source() == OFFICIAL_KEYS


def test_flask_zero_config_deploy_and_snapshot_reuse(server, api_key, cli_env, tmp_path):
    app = tmp_path / "flask-app"
    write(app, FLASK_APP)
    proc = deploy(cli_env, api_key, "deploy", str(app), "-y", "--json", "--save-snapshot")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    p = payload_of(proc)
    check_success_payload(p)
    assert p["slug"] == "flask-app" and p["version"] == "0.0.0" and p["port"] == 8000
    assert http(p["share_url"]) == (200, b"hello from flask\n")
    assert p["healthcheck_url"] == p["share_url"] + "health"
    # The progress rail on stderr names every step with its time.
    for step in STEPS + ["snapshot"]:
        assert f"✓ {step}" in proc.stderr
    # The zero-config record, where the official CLI keeps it.
    snap = p["saved_snapshot_id"]
    digest = hashlib.sha256(str(app.resolve()).encode()).hexdigest()
    record = json.loads((tmp_path / ".instavm" / "deploys" / f"{digest}.json").read_text())
    assert record["snapshot_id"] == snap and record["vm_id"] == p["vm_id"]
    assert record["slug"] == "flask-app" and len(record["fingerprint"]) == 64
    # The next deploy of the same project boots from it (upload and setup still run).
    again = deploy(cli_env, api_key, "deploy", str(app), "-y", "--json")
    assert again.returncode == 0, again.stdout + again.stderr
    q = payload_of(again)
    assert q["reused_snapshot_id"] == snap
    assert "Reusing saved snapshot" in again.stderr
    status, vm = api(server, api_key, "GET", f"/v1/vms/{q['vm_id']}")
    assert status == 200 and vm["snapshot_id"] == snap
    assert http(q["share_url"]) == (200, b"hello from flask\n")
    # Text mode prints the official success block.
    text = deploy(cli_env, api_key, "deploy", str(app), "-y")
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith("Deployed\n") and "  URL       http://" in text.stdout


NODE_EXTRA = """env:
  GREETING: hi
secrets:
  - name: Node secret
    prompt: Node secret
    env_name: NODE_SECRET
"""


def test_node_express_manifest_private_share_env_and_secrets(server, api_key, cli_env, tmp_path):
    app = tmp_path / "node"
    write(app, {
        "package.json": json.dumps({"name": "hello-node", "version": "1.0.0", "dependencies": {"express": "^4"}}),
        "server.js": """
            const express = require("express");
            const app = express();
            app.get("/health", (req, res) => res.send("ok"));
            app.get("/", (req, res) => res.send(`node ${process.env.GREETING} ${process.env.NODE_SECRET}`));
            app.listen(3000, "0.0.0.0");
        """,
        "instavm.yaml": manifest(
            "hello-node", port=3000, start="node server.js", setup="npm install --no-audit --no-fund",
            extra=NODE_EXTRA,
        ),
    })
    plan = deploy(cli_env, api_key, "deploy", str(app), "--plan", "--json")
    assert plan.returncode == 0, plan.stderr
    proc = deploy(cli_env, api_key, "deploy", str(app), "-y", "--json", "--private", "--env", "NODE_SECRET=s3cr3t")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    p = payload_of(proc)
    check_success_payload(p)
    assert p["configured_secrets"] == ["NODE_SECRET"] and p["env"] == ["GREETING"]
    # A private share: the owner's key passes, nobody else does.
    assert http(p["share_url"])[0] == 401
    assert http(p["share_url"], {"X-API-Key": api_key}) == (200, b"node hi s3cr3t")
    # Without the required secret and without a terminal: a clear error before any VM.
    missing = deploy(cli_env, api_key, "deploy", str(app), "-y", "--json")
    assert missing.returncode == 1
    assert payload_of(missing) == {
        "status": "failed",
        "error": "Secret `NODE_SECRET` is required for `hello-node`. Set it in the environment or rerun interactively.",
    }


def test_static_site_zero_config(server, api_key, cli_env, tmp_path):
    app = tmp_path / "site"
    write(app, {"index.html": "<h1>static</h1>\n", "about/index.html": "about\n"})
    proc = deploy(cli_env, api_key, "deploy", str(app), "-y", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    p = payload_of(proc)
    check_success_payload(p)
    assert p["port"] == 3000
    assert http(p["share_url"]) == (200, b"<h1>static</h1>\n")
    assert http(p["share_url"] + "about/") == (200, b"about\n")


def test_failing_setup_keeps_the_vm_and_shows_the_last_lines(server, api_key, cli_env, tmp_path):
    app = tmp_path / "broken"
    write(app, {
        "main.py": "print('never')\n",
        "instavm.yaml": manifest(
            "broken", port=8000, start="python3 main.py",
            setup="\"for i in $(seq 1 30); do echo line-$i; done; echo boom >&2; exit 3\"",
        ),
    })
    proc = deploy(cli_env, api_key, "deploy", str(app), "-y", "--json")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    p = payload_of(proc)
    assert p["status"] == "failed"
    assert [k for k in p if k not in ("status", "error", "timings")] == OFFICIAL_PARTIAL_KEYS
    err = p["error"]
    assert err.startswith("Cookbook setup command failed (exit code 3).")
    assert "line-30" in err and "boom" in err and "\nline-12\n" in err and "line-11\n" not in err
    assert p["destroy_command"] == f"instavm rm {p['vm_id']}"
    assert list(p["timings"]) == ["create", "upload", "setup"]
    # The VM is kept for inspection.
    status, vm = api(server, api_key, "GET", f"/v1/vms/{p['vm_id']}")
    assert status == 200 and vm["status"] == "active"
    assert "✗ setup" in proc.stderr
    # Text mode: the official failure block on stderr.
    text = deploy(cli_env, api_key, "deploy", str(app), "-y")
    assert text.returncode == 1
    assert text.stderr.count("Deploy failed") == 1 and "  Destroy   instavm rm vm_" in text.stderr


def test_health_check_that_never_passes_says_url_and_answer(server, api_key, cli_env, tmp_path):
    app = tmp_path / "sick"
    write(app, {
        "server.py": """
            import http.server
            class H(http.server.BaseHTTPRequestHandler):
                def do_GET(self):
                    self.send_response(500)
                    self.end_headers()
                    self.wfile.write(b"sick")
            http.server.HTTPServer(("0.0.0.0", 8000), H).serve_forever()
        """,
        "instavm.yaml": manifest("sick", port=8000, start="python3 server.py", setup="echo ok", readiness=6),
    })
    proc = deploy(cli_env, api_key, "deploy", str(app), "-y", "--json")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    p = payload_of(proc)
    assert p["status"] == "failed" and p["service_mode"] == "nohup"
    assert "http://127.0.0.1:8000/health" in p["error"] and "HTTP 500" in p["error"]


def test_bad_manifest_gets_the_plan_errors(server, api_key, cli_env, tmp_path):
    app = tmp_path / "bad"
    write(app, {"instavm.yaml": "schema_version: 1\nslug: bad\n"})
    ours = deploy(cli_env, api_key, "deploy", str(app), "-y", "--json")
    theirs = subprocess.run(
        [OFFICIAL_CLI, "deploy", str(app), "--plan"], env=cli_env, capture_output=True, text=True
    )
    assert ours.returncode == 1 and theirs.returncode == 1
    assert ours.stderr.strip() == theirs.stderr.strip() and ours.stderr.startswith("Error: ")


def snapshot_of_app(server, api_key, name):
    """A VM with a tiny app in /srv/snapapp, snapshotted as `name`; returns the snapshot ID."""
    status, vm = api(server, api_key, "POST", "/v1/vms?wait=true", {"memory_mb": 512})
    assert status == 200, vm
    script = "mkdir -p /srv/snapapp && echo from-snapshot > /srv/snapapp/index.html"
    status, out = api(server, api_key, "POST", "/execute",
                      {"command": script, "session_id": vm["session_id"], "language": "bash", "timeout": 30})
    assert status == 200 and out["exit_code"] == 0, out
    status, snap = api(server, api_key, "POST", f"/v1/vms/{vm['vm_id']}/snapshot?wait=true", {"name": name})
    assert status == 200 and snap["status"] == "ready", snap
    api(server, api_key, "DELETE", f"/v1/vms/{vm['vm_id']}")
    return snap["id"]


def published_manifest(slug, snapshot_name):
    return f"""
    schema_version: 2
    kind: service
    slug: {slug}
    title: {slug}
    version: "1.0.0"
    summary: from a snapshot
    category: web
    runtime: static
    deploy:
      kind: published_snapshot
    artifact:
      oci_image: example.invalid/unused:1
      snapshot_name: {snapshot_name}
      snapshot_visibility: private
    vm:
      memory_mb: 512
      vcpu_count: 1
    app:
      port: 8080
      healthcheck_path: /
      share_public_default: true
      readiness_timeout_seconds: 30
    run:
      workdir: /srv/snapapp
      start_command: python3 -m http.server 8080 --bind 0.0.0.0
    secrets: []
    post_deploy_notes: [served from a snapshot]
    """


def test_published_snapshot_resolves_by_name(server, api_key, cli_env, tmp_path):
    name = f"pub-{uuid.uuid4().hex[:8]}"
    snap_id = snapshot_of_app(server, api_key, name)
    app = tmp_path / "pub"
    write(app, {"instavm.yaml": published_manifest("pub-app", name)})
    proc = deploy(cli_env, api_key, "deploy", str(app), "-y", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    p = payload_of(proc)
    check_success_payload(p)
    assert p["deploy_kind"] == "published_snapshot" and p["notes"] == ["served from a snapshot"]
    status, vm = api(server, api_key, "GET", f"/v1/vms/{p['vm_id']}")
    assert vm["snapshot_id"] == snap_id
    assert http(p["share_url"]) == (200, b"from-snapshot\n")
    # A name nobody has is a clear error before any VM exists.
    write(app, {"instavm.yaml": published_manifest("pub-app", "no-such-snapshot")})
    missing = deploy(cli_env, api_key, "deploy", str(app), "-y", "--json")
    assert missing.returncode == 1
    assert payload_of(missing) == {
        "status": "failed",
        "error": "Snapshot `no-such-snapshot` was not found. Run `instavm snapshot ls` to see available snapshots.",
    }
    # --snapshot with an unknown ID fails the same way (pre-flight GET /v1/snapshots/{id}).
    bad = deploy(cli_env, api_key, "deploy", str(app), "-y", "--json", "--snapshot", "snap_nope")
    assert bad.returncode == 1 and "`snap_nope` not found" in payload_of(bad)["error"]


@pytest.fixture
def cookbooks(tmp_path):
    root = tmp_path / "cookbooks"
    app = root / "hello-fastapi"
    app.mkdir(parents=True)
    shutil.copy(CONFORMANCE / "hello-fastapi_instavm__1bb7176b.yaml", app / "instavm.yaml")
    write(app, {
        "app.py": """
            from fastapi import FastAPI
            app = FastAPI()

            @app.get("/")
            def index():
                return {"hello": "fastapi"}

            @app.get("/health")
            def health():
                return {"ok": True}
        """,
        "requirements.txt": "fastapi\nuvicorn\n",
        "Dockerfile": "FROM python:3.11-slim\n",
    })
    return root


def test_cookbook_list_info_deploy(server, api_key, cli_env, cookbooks):
    env = {"INSTAVM_COOKBOOKS_DIR": str(cookbooks)}
    for args in (["cookbook", "list", "--json"], ["cookbook", "info", "hello-fastapi", "--json"],
                 ["cookbook", "list"], ["cookbook", "info", "hello-fastapi"]):
        ours = deploy(cli_env, api_key, *args, extra_env=env)
        theirs = subprocess.run([OFFICIAL_CLI, *args], env=dict(cli_env, **env), capture_output=True, text=True)
        assert ours.returncode == theirs.returncode == 0, ours.stderr + theirs.stderr
        if "--json" in args:
            assert json.loads(ours.stdout) == json.loads(theirs.stdout)
        else:
            assert ours.stdout == theirs.stdout
    proc = deploy(cli_env, api_key, "cookbook", "deploy", "hello-fastapi", "--json", extra_env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    p = payload_of(proc)
    check_success_payload(p)
    assert p["slug"] == "hello-fastapi" and p["notes"] == ["Open the share URL to verify the app is reachable."]
    status, body = http(p["share_url"])
    assert status == 200 and json.loads(body) == {"hello": "fastapi"}
    # Unknown slug, and no catalogue at all.
    unknown = deploy(cli_env, api_key, "cookbook", "deploy", "nope", "--json", extra_env=env)
    assert unknown.returncode == 1 and payload_of(unknown)["slug"] == "nope"
    none = deploy(cli_env, api_key, "cookbook", "list")
    assert none.returncode == 1 and "INSTAVM_COOKBOOKS_DIR" in none.stderr


def workloads_supported(server, api_key):
    status, _ = api(server, api_key, "GET", "/v1/workloads")
    return status == 200


CRON_MANIFEST = """
schema_version: 2
kind: cron
slug: {slug}
title: nightly
version: "1.0.0"
summary: a cron job
category: jobs
runtime: python
deploy:
  kind: upload_and_run
vm:
  memory_mb: 512
  vcpu_count: 1
run:
  workdir: .
  start_command: python3 job.py
source:
  include: ["*"]
  setup_command: echo built > built.txt
schedule:
  cron: "0 3 * * *"
  timezone: UTC
secrets: []
post_deploy_notes: []
env:
  WHO: cron
"""


def test_cron_deploy_and_commands(server, api_key, cli_env, tmp_path):
    if not workloads_supported(server, api_key):
        pytest.skip("the server has no workloads API (/v1/workloads answers 404)")
    slug = f"nightly-{uuid.uuid4().hex[:6]}"
    app = tmp_path / "cron"
    write(app, {
        "job.py": "import os; print('ran as', os.environ['WHO'], open('built.txt').read().strip())\n",
        "instavm.yaml": CRON_MANIFEST.format(slug=slug),
    })
    proc = deploy(cli_env, api_key, "deploy", str(app), "-y", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    w = payload_of(proc)
    assert w["slug"] == slug and w["kind"] == "cron" and w["status"] == "active"
    assert w["snapshot_name"] == f"workload/{slug}/1.0.0" and w["build_vm_destroyed"] is True
    assert w["env_keys"] == ["WHO"] and w["schedule"]["cron"] == "0 3 * * *"
    ls = payload_of(deploy(cli_env, api_key, "cron", "ls", "--json"))
    assert slug in [x["slug"] for x in ls["workloads"]]
    run = deploy(cli_env, api_key, "run", slug, "--wait", "--json")
    assert run.returncode == 0, run.stdout + run.stderr
    r = payload_of(run)
    assert r["run"]["status"] == "succeeded" and "ran as cron built" in r["logs"]["stdout"]
    hist = payload_of(deploy(cli_env, api_key, "cron", "history", slug, "--json"))
    assert hist["runs"][0]["id"] == r["run"]["id"] and hist["runs"][0]["trigger"] == "manual"
    logs = deploy(cli_env, api_key, "cron", "logs", slug)
    assert "ran as cron built" in logs.stdout
    paused = payload_of(deploy(cli_env, api_key, "cron", "pause", slug, "--json"))
    assert paused["status"] == "paused"
    resumed = payload_of(deploy(cli_env, api_key, "cron", "resume", slug, "--json"))
    assert resumed["status"] == "active"
    table = deploy(cli_env, api_key, "cron", "history", slug)
    assert "succeeded" in table.stdout and "RUN" in table.stdout
