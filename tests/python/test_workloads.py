"""Workloads: deployed cron and job manifests that run (docs/deploy.md).

A cron workload with an every-minute schedule produces runs in fresh VMs from its snapshot; a job
runs when a correctly signed webhook arrives and refuses bad signatures; history survives a
`kill -9` of the server without double runs.
"""

import json
import shlex
import time
import urllib.error
import urllib.request

import pytest
from conftest import Server
from instavm.webhooks import compute_signature


class Api:
    def __init__(self, base_url, key):
        self.base_url, self.key = base_url, key

    def call(self, method, path, body=None, headers=None, raw=None):
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        h = {"X-API-Key": self.key, "Content-Type": "application/json", **(headers or {})}
        req = urllib.request.Request(self.base_url + path, data=data, headers=h, method=method)
        try:
            with urllib.request.urlopen(req, timeout=120) as res:
                return res.status, json.loads(res.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")


@pytest.fixture(scope="module")
def srv():
    s = Server()
    s.start()
    yield s
    s.stop()


def snapshot_with(api, files):
    """A VM with `files` written under /srv/app, snapshotted; the VM is destroyed."""
    status, vm = api.call("POST", "/v1/vms?wait=true", {})
    assert status == 200, vm
    script = "mkdir -p /srv/app && cd /srv/app && " + " && ".join(
        f"printf %s {shlex.quote(body)} > {name}" for name, body in files.items()
    )
    status, out = api.call("POST", "/execute", {"session_id": vm["session_id"], "command": script, "language": "bash"})
    assert status == 200 and out["exit_code"] == 0, out
    status, snap = api.call("POST", f"/v1/vms/{vm['vm_id']}/snapshot?wait=true", {"name": "workload-test"})
    assert status == 200 and snap["status"] == "ready", snap
    api.call("DELETE", f"/v1/vms/{vm['vm_id']}")
    return snap["id"]


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}")


def test_cron_every_minute_runs_twice_and_history_survives_kill(srv):
    api = Api(srv.base_url, srv.create_user())
    snap = snapshot_with(api, {"tick.sh": 'echo "tick $INSTAVM_RUN_TRIGGER $GREETING from $(pwd)"; echo warn >&2'})
    status, w = api.call(
        "POST",
        "/v1/workloads",
        {
            "slug": "ticker",
            "kind": "cron",
            "version": "1.0.0",
            "snapshot_id": snap,
            "workdir": "/srv/app",
            "start_command": "bash tick.sh",
            "env": {"GREETING": "hello"},
            "schedule": {"cron": "* * * * *", "timezone": "Europe/Paris"},
        },
    )
    assert status == 201, w
    assert w["env_keys"] == ["GREETING"] and "hello" not in json.dumps(w)
    assert w["next_run_at"].endswith(":00Z") or w["next_run_at"].endswith(":00.000Z"), w

    def scheduled_runs():
        _, body = api.call("GET", "/v1/workloads/ticker/runs")
        done = [r for r in body["runs"] if r["trigger"] == "schedule" and r["status"] == "succeeded"]
        return done if len(done) >= 2 else None

    runs = wait_for(scheduled_runs, 200, "two scheduled runs")
    for r in runs:
        assert r["exit_code"] == 0 and r["duration_ms"] is not None and r["vm_id"].startswith("vm_"), r
        assert r["scheduled_for"].endswith(":00Z") or ":00.000" in r["scheduled_for"], r
        status, logs = api.call("GET", f"/v1/runs/{r['id']}/logs")
        assert status == 200 and logs["stdout"] == "tick schedule hello from /srv/app\n" and logs["stderr"] == "warn\n", logs
    # Each run's VM is gone once it finished.
    status, vm = api.call("GET", f"/v1/vms/{runs[0]['vm_id']}")
    assert status == 200 and vm["status"] == "terminated", vm

    status, before = api.call("GET", "/v1/workloads/ticker/runs")
    srv.kill()
    srv.start()
    api.base_url = srv.base_url
    status, after = api.call("GET", "/v1/workloads/ticker/runs")
    assert status == 200
    kept = {r["id"]: r for r in after["runs"]}
    for r in before["runs"]:
        if r["status"] in ("succeeded", "failed", "skipped"):
            assert kept[r["id"]]["status"] == r["status"], (r, kept.get(r["id"]))
    # No schedule time ever gets two runs, before or after the restart.
    times = [r["scheduled_for"] for r in after["runs"] if r["trigger"] == "schedule"]
    assert len(times) == len(set(times)), times

    status, paused = api.call("POST", "/v1/workloads/ticker/pause")
    assert status == 200 and paused["status"] == "paused" and paused["next_run_at"] is None, paused
    status, refused = api.call("POST", "/v1/workloads/ticker/runs")
    assert status == 409 and "paused" in refused["detail"], refused
    status, resumed = api.call("POST", "/v1/workloads/ticker/resume")
    assert status == 200 and resumed["status"] == "active" and resumed["next_run_at"], resumed
    status, _ = api.call("DELETE", "/v1/workloads/ticker")
    assert status == 200
    status, gone = api.call("GET", "/v1/workloads/ticker")
    assert status == 404 and "ticker" in gone["detail"]


def test_job_runs_on_a_signed_webhook_and_refuses_bad_ones(srv):
    api = Api(srv.base_url, srv.create_user())
    snap = snapshot_with(api, {"job.sh": 'echo "payload=$(cat "$INSTAVM_TRIGGER_PAYLOAD_FILE")"; exit 4'})
    status, w = api.call(
        "POST",
        "/v1/workloads",
        {
            "slug": "on-push",
            "kind": "job",
            "snapshot_id": snap,
            "workdir": "/srv/app",
            "start_command": "bash job.sh",
            "triggers": [{"type": "webhook", "path": "/github/push", "auth": "hmac"}, {"type": "manual"}],
        },
    )
    assert status == 201, w
    secret = w["webhook_secret"]
    assert secret.startswith("whsec_")
    url = next(t["url"] for t in w["triggers"] if t["type"] == "webhook")
    assert url == f"{srv.base_url}/v1/hooks/{w['id']}/github/push"
    # The secret is shown once.
    status, again = api.call("GET", "/v1/workloads/on-push")
    assert "webhook_secret" not in again

    hook = Api(srv.base_url, "")
    path = url[len(srv.base_url):]
    body = b'{"ref":"refs/heads/main"}'
    t = int(time.time())
    for headers, why in [
        ({}, "missing"),
        ({"InstaVM-Signature": f"t={t},v1={compute_signature('whsec_wrong', t, body)}"}, "does not match"),
        ({"InstaVM-Signature": f"t={t - 1000},v1={compute_signature(secret, t - 1000, body)}"}, "300 s"),
    ]:
        status, refused = hook.call("POST", path, raw=body, headers=headers)
        assert status == 401 and why in refused["detail"], (why, refused)
    status, refused = hook.call("POST", path.replace("push", "pull"), raw=body, headers={})
    assert status == 404, refused

    good = {"InstaVM-Signature": f"t={t},v1={compute_signature(secret, t, body)}"}
    status, run = hook.call("POST", path, raw=body, headers=good)
    assert status == 202 and run["trigger"] == "webhook", run

    def finished():
        _, r = api.call("GET", f"/v1/runs/{run['id']}")
        return r if r["status"] not in ("queued", "running") else None

    done = wait_for(finished, 120, "the webhook's run")
    assert done["status"] == "failed" and done["exit_code"] == 4, done
    _, logs = api.call("GET", f"/v1/runs/{run['id']}/logs")
    assert logs["stdout"] == 'payload={"ref":"refs/heads/main"}\n', logs

    # Manual runs; another user sees none of it.
    status, manual = api.call("POST", "/v1/workloads/on-push/runs")
    assert status == 202 and manual["trigger"] == "manual"
    other = Api(srv.base_url, srv.create_user())
    assert other.call("GET", "/v1/workloads/on-push")[0] == 404
    assert other.call("GET", f"/v1/runs/{run['id']}")[0] == 404
    status, history = api.call("GET", "/v1/workloads/on-push/runs?limit=1")
    assert status == 200 and len(history["runs"]) == 1 and history["runs"][0]["id"] == manual["id"]


def test_bad_registrations_say_what_is_wrong(srv):
    api = Api(srv.base_url, srv.create_user())
    base = {"slug": "x", "kind": "cron", "snapshot_id": "snap_nope", "start_command": "true"}
    cases = [
        ({**base, "schedule": {"cron": "* * * *"}}, 422, "5"),
        ({**base, "schedule": {"cron": "* * * * *", "timezone": "Mars/Olympus"}}, 422, "time zone"),
        ({**base}, 422, "needs a schedule"),
        ({**base, "kind": "job", "triggers": []}, 422, "at least one trigger"),
        ({**base, "kind": "job", "triggers": [{"type": "webhook", "auth": "hmac"}]}, 422, "path"),
        ({**base, "slug": "Not A Slug", "schedule": {"cron": "* * * * *"}}, 422, "slug"),
        ({**base, "schedule": {"cron": "* * * * *"}}, 404, ""),
    ]
    for body, code, words in cases:
        status, answer = api.call("POST", "/v1/workloads", body)
        assert status == code and words in answer["detail"], (body, answer)
    status, answer = api.call("GET", "/v1/workloads/none/runs?limit=0")
    assert status == 422
