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



@pytest.fixture(autouse=True)
def _delete_the_users_vms(server, api_key):
    """Deploys keep their VMs; delete the test user's ones afterwards so the shared server's host
    memory is not used up by the suite (a test that deploys uses this same `api_key`)."""
    yield
    server.delete_vms(api_key)

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
    assert http(p["share_url"], {"Accept": "application/json"})[0] == 401
    status, body = http(p["share_url"])  # a browser lands on the sign-in page, not on the app
    assert b"node hi" not in body and b"This share is private" in body
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
            # The same values with the keys in the same order at every level.
            pairs = lambda text: json.loads(text, object_pairs_hook=lambda kv: kv)  # noqa: E731
            assert pairs(ours.stdout) == pairs(theirs.stdout)
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
    # A job with a secret and an hmac webhook trigger, run by hand.
    job_slug = f"ondemand-{uuid.uuid4().hex[:6]}"
    job = tmp_path / "job"
    write(job, {
        "job.js": "const fs = require('fs'); console.log('job', process.env.JOB_TOKEN, fs.readFileSync('built.txt', 'utf8').trim());\n",
        "instavm.yaml": JOB_MANIFEST.format(slug=job_slug),
    })
    proc = deploy(cli_env, api_key, "deploy", str(job), "-y", "--json", "--env", "JOB_TOKEN=t0k")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    j = payload_of(proc)
    assert j["kind"] == "job" and j["webhook_secret"].startswith("whsec_")
    assert [t["type"] for t in j["triggers"]] == ["manual", "webhook"] and j["triggers"][1]["url"].endswith("/go")
    text = deploy(cli_env, api_key, "run", job_slug, "--wait")
    assert text.returncode == 0, text.stdout + text.stderr
    assert text.stdout == "job t0k job-built\n" and "succeeded" in text.stderr
    assert job_slug in deploy(cli_env, api_key, "job", "ls").stdout
    assert deploy(cli_env, api_key, "job", "rm", job_slug).returncode == 0


class WorkloadsStub:
    """A stand-in for the workloads API in front of the real server, until the server has it.

    `/v1/workloads*` and `/v1/runs*` are answered here with the wire types of
    crates/api/src/workloads.rs; a manual run really boots a VM from the workload's snapshot on
    the real server and runs its start command there, so the test sees what the deploy built.
    Everything else is forwarded to the real server unchanged.
    """

    def __init__(self, upstream):
        import http.server
        import threading

        self.upstream = upstream
        self.workloads = {}
        self.requests = []
        self.runs = {}
        # {vault_id: (name, [service, ...])}, answered at /v1/vaults when set.
        self.vaults = None
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _any(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path = self.path.split("?", 1)[0]
                ours = path.startswith("/v1/workloads") or path.startswith("/v1/runs")
                if ours or (path.startswith("/v1/vaults") and stub.vaults is not None):
                    status, payload = stub.handle(self.command, self.path, body, self.headers.get("X-API-Key"))
                    data = json.dumps(payload).encode()
                    ctype = "application/json"
                else:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length", "connection")}
                    req = urllib.request.Request(upstream + self.path, data=body if body or self.command in ("POST", "PUT", "PATCH") else None, headers=headers, method=self.command)
                    try:
                        with urllib.request.urlopen(req, timeout=600) as res:
                            status, data, ctype = res.status, res.read(), res.headers.get("Content-Type", "application/json")
                    except urllib.error.HTTPError as e:
                        status, data, ctype = e.code, e.read(), e.headers.get("Content-Type", "application/json")
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = do_PATCH = do_PUT = _any

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self):
        self.httpd.shutdown()

    @staticmethod
    def now():
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

    def handle(self, method, path, body, key):
        parts = path.split("?", 1)[0].strip("/").split("/")
        if parts[:2] == ["v1", "vaults"]:
            if len(parts) == 2:
                return 200, {"vaults": [{"id": vid, "name": name} for vid, (name, _) in self.vaults.items()]}
            if len(parts) == 4 and parts[3] == "services" and parts[2] in self.vaults:
                return 200, self.vaults[parts[2]][1]
            return 404, {"detail": "Not Found"}
        if parts[:2] == ["v1", "workloads"]:
            if len(parts) == 2 and method == "POST":
                req = json.loads(body)
                self.requests.append(req)
                old = self.workloads.get(req["slug"])
                triggers = [dict(t, url=f"{self.base_url}/v1/hooks/wl_{req['slug']}{t.get('path') or ''}") if t["type"] == "webhook" else dict(t) for t in req.get("triggers") or []]
                rec = {
                    "id": old["id"] if old else f"wl_{uuid.uuid4().hex[:12]}", "slug": req["slug"], "kind": req["kind"],
                    "version": req.get("version") or "", "status": "active", "snapshot_id": req["snapshot_id"],
                    "workdir": req.get("workdir") or "", "start_command": req["start_command"],
                    "env_keys": sorted(req.get("env") or {}), "vm": req.get("vm") or {}, "schedule": req.get("schedule"),
                    "triggers": triggers, "next_run_at": "2030-01-01T03:00:00Z" if req.get("schedule") else None,
                    "created_at": old["created_at"] if old else self.now(), "updated_at": self.now(),
                    "_env": req.get("env") or {},
                }
                self.workloads[req["slug"]] = rec
                out = {k: v for k, v in rec.items() if not k.startswith("_")}
                if any(t.get("auth") == "hmac" for t in triggers):
                    out["webhook_secret"] = "whsec_" + uuid.uuid4().hex
                return (200 if old else 201), out
            if len(parts) == 2 and method == "GET":
                return 200, {"workloads": [{k: v for k, v in w.items() if not k.startswith("_")} for w in self.workloads.values()]}
            w = self.workloads.get(parts[2]) if len(parts) > 2 else None
            if w is None:
                return 404, {"detail": "workload not found"}
            public = {k: v for k, v in w.items() if not k.startswith("_")}
            if len(parts) == 3 and method == "GET":
                return 200, public
            if len(parts) == 3 and method == "DELETE":
                del self.workloads[parts[2]]
                return 200, {"deleted": True, "slug": parts[2]}
            if parts[3] in ("pause", "resume"):
                w["status"] = "paused" if parts[3] == "pause" else "active"
                return 200, {k: v for k, v in w.items() if not k.startswith("_")}
            if parts[3] == "runs" and method == "POST":
                return 202, self.run(w, key)
            if parts[3] == "runs" and method == "GET":
                runs = [r for r, _ in self.runs.values() if r["slug"] == w["slug"]]
                return 200, {"runs": list(reversed(runs))}
        if parts[:2] == ["v1", "runs"] and len(parts) >= 3 and parts[2] in self.runs:
            run, logs = self.runs[parts[2]]
            return 200, (logs if parts[-1] == "logs" else run)
        return 404, {"detail": "Not Found"}

    def run(self, w, key):
        """Boot a VM from the snapshot on the real server and run the start command there."""
        def call(method, path, body=None):
            req = urllib.request.Request(self.upstream + path, data=None if body is None else json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json", "X-API-Key": key}, method=method)
            with urllib.request.urlopen(req, timeout=300) as res:
                return json.loads(res.read())

        started = self.now()
        vm = call("POST", "/v1/vms?wait=true", {"snapshot_id": w["snapshot_id"], "memory_mb": 512})
        exports = "".join(f"export {k}='{v}'; " for k, v in sorted(w["_env"].items()))
        out = call("POST", "/execute", {"command": f"cd {w['workdir']} && {exports}{w['start_command']}",
                                        "session_id": vm["session_id"], "language": "bash", "timeout": 60})
        call("DELETE", f"/v1/vms/{vm['vm_id']}")
        run_id = f"run_{uuid.uuid4().hex[:12]}"
        run = {"id": run_id, "workload_id": w["id"], "slug": w["slug"], "trigger": "manual",
               "status": "succeeded" if out["exit_code"] == 0 else "failed", "exit_code": out["exit_code"], "attempt": 1,
               "scheduled_for": None, "created_at": started, "started_at": started, "finished_at": self.now(),
               "duration_ms": int(out["execution_time"] * 1000), "vm_id": vm["vm_id"], "error": None}
        self.runs[run_id] = (run, {"run_id": run_id, "stdout": out["stdout"], "stderr": out["stderr"]})
        return run


JOB_MANIFEST = """
schema_version: 2
kind: job
slug: {slug}
title: on demand
version: "2.0.0"
summary: a job
category: jobs
runtime: node
deploy:
  kind: upload_and_run
vm:
  memory_mb: 512
  vcpu_count: 1
run:
  workdir: .
  start_command: node job.js
source:
  include: ["*"]
  setup_command: echo job-built > built.txt
triggers:
  - type: manual
  - type: webhook
    path: /go
    auth: hmac
secrets:
  - name: Token
    prompt: Token
    env_name: JOB_TOKEN
post_deploy_notes: []
"""


def test_cron_and_job_deploys_and_commands_against_a_workloads_stub(server, api_key, cli_env, tmp_path):
    stub = WorkloadsStub(server.base_url)
    env = dict(cli_env, INSTAVM_BASE_URL=stub.base_url)
    try:
        # Without a workloads API, `cron ls` says so.
        plain = deploy(cli_env, api_key, "cron", "ls")
        if not workloads_supported(server, api_key):
            assert plain.returncode == 1 and "no workloads API" in plain.stderr
        cron = tmp_path / "cron"
        write(cron, {
            "job.py": "import os; print('ran as', os.environ['WHO'], open('built.txt').read().strip())\n",
            "instavm.yaml": CRON_MANIFEST.format(slug="nightly"),
        })
        proc = deploy(env, api_key, "deploy", str(cron), "-y", "--json")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        w = payload_of(proc)
        assert w["slug"] == "nightly" and w["kind"] == "cron" and w["status"] == "active"
        assert w["snapshot_name"] == "workload/nightly/1.0.0" and w["build_vm_destroyed"] is True
        assert list(w["timings"]) == ["create", "upload", "setup", "snapshot", "register", "cleanup"]
        req = stub.requests[-1]
        assert req["workdir"] == "/root/.instavm-cookbooks/nightly" and req["start_command"] == "python3 job.py"
        assert req["env"] == {"WHO": "cron"} and req["vm"] == {"memory_mb": 512, "vcpu_count": 1}
        assert req["schedule"] == {"cron": "0 3 * * *", "timezone": "UTC", "concurrency": "skip", "catchup": "run-once",
                                   "retries": {"max": 0, "backoff_seconds": 30}}
        status, snap = api(server, api_key, "GET", f"/v1/snapshots/{w['snapshot_id']}")
        assert status == 200 and snap["name"] == "workload/nightly/1.0.0" and snap["status"] == "ready"
        status, vm = api(server, api_key, "GET", f"/v1/vms/{w['build_vm_id']}")
        assert vm["status"] != "active"
        # The commands.
        ls = deploy(env, api_key, "cron", "ls")
        assert ls.returncode == 0 and "nightly" in ls.stdout and "0 3 * * * UTC" in ls.stdout
        assert [x["slug"] for x in payload_of(deploy(env, api_key, "cron", "ls", "--json"))["workloads"]] == ["nightly"]
        run = deploy(env, api_key, "run", "nightly", "--wait", "--json")
        assert run.returncode == 0, run.stdout + run.stderr
        r = payload_of(run)
        assert r["run"]["status"] == "succeeded" and r["logs"]["stdout"] == "ran as cron built\n"
        started = deploy(env, api_key, "cron", "run", "nightly")
        assert started.returncode == 0 and started.stdout.startswith("Started run run_")
        hist = payload_of(deploy(env, api_key, "cron", "history", "nightly", "--json"))
        assert len(hist["runs"]) == 2 and hist["runs"][1]["id"] == r["run"]["id"]
        table = deploy(env, api_key, "cron", "history", "nightly")
        assert table.stdout.splitlines()[0].split() == ["RUN", "TRIGGER", "STATUS", "EXIT", "ATTEMPT", "STARTED", "DURATION"]
        logs = deploy(env, api_key, "cron", "logs", "nightly", "--run", r["run"]["id"])
        assert logs.returncode == 0 and logs.stdout == "ran as cron built\n"
        assert payload_of(deploy(env, api_key, "cron", "pause", "nightly", "--json"))["status"] == "paused"
        assert deploy(env, api_key, "cron", "resume", "nightly").stdout.startswith("Resumed nightly")
        # A job with a secret, a manual and an hmac webhook trigger.
        job = tmp_path / "job"
        write(job, {
            "job.js": "const fs = require('fs'); console.log('job', process.env.JOB_TOKEN, fs.readFileSync('built.txt', 'utf8').trim());\n",
            "instavm.yaml": JOB_MANIFEST.format(slug="ondemand"),
        })
        proc = deploy(env, api_key, "deploy", str(job), "-y", "--json", "--env", "JOB_TOKEN=t0k")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        j = payload_of(proc)
        assert j["kind"] == "job" and j["configured_secrets"] == ["JOB_TOKEN"] and j["webhook_secret"].startswith("whsec_")
        assert stub.requests[-1]["triggers"] == [{"type": "manual", "auth": "none"}, {"type": "webhook", "path": "/go", "auth": "hmac"}]
        assert stub.requests[-1]["env"] == {"JOB_TOKEN": "t0k"}
        assert [x["slug"] for x in payload_of(deploy(env, api_key, "job", "ls", "--json"))["workloads"]] == ["ondemand"]
        text = deploy(env, api_key, "run", "ondemand", "--wait")
        assert text.returncode == 0 and text.stdout == "job t0k job-built\n" and "succeeded" in text.stderr
        assert payload_of(deploy(env, api_key, "job", "logs", "ondemand", "--json"))["stdout"] == "job t0k job-built\n"
        assert deploy(env, api_key, "job", "history", "ondemand").returncode == 0
        assert deploy(env, api_key, "job", "rm", "ondemand").returncode == 0
        assert payload_of(deploy(env, api_key, "job", "ls", "--json"))["workloads"] == []
        # A failing build keeps the build VM and reports it.
        write(cron, {"instavm.yaml": CRON_MANIFEST.format(slug="nightly").replace("echo built > built.txt", "exit 4")})
        failed = deploy(env, api_key, "deploy", str(cron), "-y", "--json")
        assert failed.returncode == 1
        f = payload_of(failed)
        assert f["status"] == "failed" and f["kind"] == "cron" and "exit code 4" in f["error"]
        assert f["destroy_command"] == f"instavm rm {f['vm_id']}"
    finally:
        stub.stop()


VAULT_EXTRA = """secrets: []
vault:
  required: {required}
  hosts: [api.openai.com, api.anthropic.com, api.example.org]
"""


def test_vault_discovery_and_override(server, api_key, cli_env, tmp_path):
    app = tmp_path / "vaulted"
    write(app, dict(FLASK_APP, **{"instavm.yaml": manifest(
        "vaulted", port=5000, start="python3 -m flask run --host 0.0.0.0 --port 5000",
        setup="pip install -r requirements.txt", extra=VAULT_EXTRA.format(required="false"))}))
    # No vaults yet: discovery finds none and the deploy goes on.
    proc = deploy(cli_env, api_key, "deploy", str(app), "-y", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    p = payload_of(proc)
    assert p["vault_ids"] == [] and p["vault_bindings"] == []
    assert "No org vault binding found for: api.openai.com, api.anthropic.com, api.example.org" in proc.stderr

    # Real vaults on the server: the first vault that covers a host wins; disabled services do
    # not count.
    def vault(name, services):
        status, v = api(server, api_key, "POST", "/v1/vaults", {"name": name})
        assert status == 200, v
        status, c = api(server, api_key, "POST", f"/v1/vaults/{v['id']}/credentials",
                        {"name": "KEY", "value": "sk-test-value", "credential_type": "api_key"})
        assert status == 200, c
        for host, enabled in services:
            status, svc = api(server, api_key, "POST", f"/v1/vaults/{v['id']}/services",
                              {"host": host, "auth_config": {"type": "bearer", "token": "KEY"}, "enabled": enabled})
            assert status == 200, svc
        return v["id"]

    a = vault("team-a", [("API.OpenAI.com", True)])
    b = vault("team-b", [("api.openai.com", True), ("api.anthropic.com", True)])
    vault("team-c", [("api.example.org", False)])
    proc = deploy(cli_env, api_key, "deploy", str(app), "-y", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    p = payload_of(proc)
    assert p["vault_ids"] == [a, b]
    assert p["vault_bindings"] == [
        {"host": "api.openai.com", "vault_id": a, "vault_name": "team-a"},
        {"host": "api.anthropic.com", "vault_id": b, "vault_name": "team-b"},
    ]
    assert api(server, api_key, "GET", f"/v1/vms/{p['vm_id']}")[1]["vault_ids"] == [a, b]
    # --vault IDs go to the VM as given, de-duplicated, without discovery.
    proc = deploy(cli_env, api_key, "deploy", str(app), "-y", "--json", "--vault", b, "--vault", b)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert payload_of(proc)["vault_ids"] == [b]
    nov = payload_of(deploy(cli_env, api_key, "deploy", str(app), "-y", "--json", "--no-vault"))
    assert nov["vault_ids"] == []
    # vault.required with a host nobody covers: an error before any VM.
    write(app, {"instavm.yaml": manifest(
        "vaulted", port=5000, start="python3 -m flask run --host 0.0.0.0 --port 5000",
        setup="pip install -r requirements.txt", extra=VAULT_EXTRA.format(required="true"))})
    proc = deploy(cli_env, api_key, "deploy", str(app), "-y", "--json")
    assert proc.returncode == 1
    f = payload_of(proc)
    assert list(f) == ["status", "error"]  # the reference's order
    assert f["error"].startswith("This cookbook requires an org vault for: api.example.org.")


def test_cookbook_info_and_list_match_the_official_cli_on_every_conformance_manifest(cli_env, tmp_path):
    root = tmp_path / "catalogue"
    for i, path in enumerate(sorted(CONFORMANCE.glob("*.yaml"))):
        d = root / f"c{i:02d}"
        d.mkdir(parents=True)
        shutil.copy(path, d / "instavm.yaml")
        for name in ("Dockerfile",):
            (d / name).write_text("FROM scratch\n")
    env = dict(cli_env, INSTAVM_COOKBOOKS_DIR=str(root))
    pairs = lambda text: json.loads(text, object_pairs_hook=lambda kv: kv)  # noqa: E731
    compared = 0
    for d in sorted(root.iterdir()):
        args = ["cookbook", "info", d.name, "--json"]
        ours = subprocess.run([BIN, *args], env=env, capture_output=True, text=True)
        theirs = subprocess.run([OFFICIAL_CLI, *args], env=env, capture_output=True, text=True)
        assert (ours.returncode == 0) == (theirs.returncode == 0), (d, ours.stderr, theirs.stderr)
        if theirs.returncode == 0:
            assert pairs(ours.stdout) == pairs(theirs.stdout), d
            text = [BIN, "cookbook", "info", d.name]
            assert subprocess.run(text, env=env, capture_output=True, text=True).stdout == \
                subprocess.run([OFFICIAL_CLI, *text[1:]], env=env, capture_output=True, text=True).stdout, d
            compared += 1
        else:
            shutil.rmtree(d)  # `list` fails on any bad manifest, in both CLIs
    assert compared > 50
    for args in (["cookbook", "list", "--json"], ["cookbook", "list"]):
        ours = subprocess.run([BIN, *args], env=env, capture_output=True, text=True)
        theirs = subprocess.run([OFFICIAL_CLI, *args], env=env, capture_output=True, text=True)
        assert ours.returncode == theirs.returncode == 0, ours.stderr + theirs.stderr
        if "--json" in args:
            assert pairs(ours.stdout) == pairs(theirs.stdout)
        else:
            assert ours.stdout == theirs.stdout
