"""Tapes (spec/api.md §17, docs/tapes.md) through the official SDK and both CLIs: a small agent
loop recorded step by step, diffs between steps naming exactly the files that changed, a live
branch at an early step and a replay branch, cassettes the official replay helper reads,
retention expiry, and the errors a user can cause."""

import base64
import glob
import hashlib
import json
import os
import sqlite3
import time

import httpx
import pytest
import requests
from instavm import InstaVM
from instavm.cassette_replay import CassetteReplayClient
from instavm.sandbox_client import ToolCallRecorder

from conftest import BIN, OFFICIAL_CLI, run


def api(server, key, method, path, **kw):
    return requests.request(method, f"{server.base_url}{path}", headers={"X-API-Key": key}, timeout=120, **kw)


def attach(server, key, session_id):
    """An official SDK client on an existing session (a branch's)."""
    c = InstaVM(api_key=key, base_url=server.base_url, auto_start_session=False, timeout=300)
    c.session_id = session_id
    return c


def out(result):
    return str(result.get("stdout", result) if isinstance(result, dict) else result)


@pytest.fixture
def recorded(server, client, api_key, tmp_path):
    """An agent loop recorded on a tape: two tool calls around executes that write files, an
    upload, an edit and a deletion of a file of the base image."""
    local = tmp_path / "data.csv"
    local.write_text("a,b\n1,2\n")
    with client.tape() as tape:
        recorder = ToolCallRecorder(client.tapes, tape.id)
        with recorder.span("write_a", payload={"file": "a"}) as span:
            client.execute("open('/tmp/a.txt', 'w').write('one\\n')")
            span.attach({"wrote": "/tmp/a.txt"})
        with recorder.span("write_b"):
            client.execute("mkdir -p /tmp/d && echo two > /tmp/d/b.txt", language="bash")
        client.upload_file(str(local), "/tmp/data.csv")
        client.execute("open('/tmp/a.txt', 'a').write('more\\n')\n"
                       "import os; os.remove('/etc/debian_version')")
        events = client.tapes.events(tape.id)
    return {"client": client, "tape_id": tape.id, "events": events, "key": api_key}


def steps_of(events, kind):
    return [e["step_id"] for e in events if e["kind"] == kind]


def test_an_agent_loop_is_recorded_step_by_step(server, recorded):
    client, tape_id, events = recorded["client"], recorded["tape_id"], recorded["events"]
    kinds = [e["kind"] for e in events]
    assert kinds == [
        "tool_call_start", "execute", "fs_summary", "tool_call_end",
        "tool_call_start", "execute", "fs_summary", "tool_call_end",
        "upload", "fs_summary",
        "execute", "fs_summary",
    ], kinds
    assert [e["step_id"] for e in events] == list(range(1, len(events) + 1))
    # Each tool call's end names its start; each fs_summary the step it follows.
    starts, ends = steps_of(events, "tool_call_start"), [e for e in events if e["kind"] == "tool_call_end"]
    assert [e["parent_step_id"] for e in ends] == starts
    assert ends[0]["payload"] == {"name": "write_a", "ok": True, "wrote": "/tmp/a.txt"}
    for e in events:
        if e["kind"] == "fs_summary":
            assert e["parent_step_id"] == e["step_id"] - 1 and e["checkpoint_id"]
    bash = events[5]["payload"]
    assert bash["language"] == "bash" and "b.txt" in bash["command"] and bash["status"] == "ok"
    assert events[8]["payload"]["path"] == "/tmp/data.csv"

    tape = client.tapes.get(tape_id)
    assert tape["status"] == "stopped" and tape["total_steps"] == len(events)
    assert tape["session_id"] == client.session_id and tape["vm_id"]
    assert client.tapes.lanes(tape_id)["lanes"] == {
        "execute": 3, "fs_summary": 4, "tool_call_end": 2, "tool_call_start": 2, "upload": 1}
    assert tape_id in [t["id"] for t in client.tapes.list(session_id=client.session_id)]
    assert client.tapes.list(session_id=client.session_id, status="recording") == []
    # Paging and filters of the events.
    assert [e["step_id"] for e in client.tapes.events(tape_id, after_step=10)] == [11, 12]
    assert steps_of(client.tapes.events(tape_id, kind="execute"), "execute") == [2, 6, 11]
    bundle = client.tapes.export(tape_id)
    assert bundle["format"] == "instavm.tape.v1" and len(bundle["events"]) == len(events)
    assert [c["step_id"] for c in bundle["checkpoints"]] == [0, 2, 6, 9, 11]


def test_diff_names_exactly_the_files_each_step_changed(recorded):
    client, tape_id = recorded["client"], recorded["tape_id"]
    d = client.tapes.diff(tape_id, from_step=2, to_step=6)
    assert d["changed_paths"] == ["/tmp/d", "/tmp/d/b.txt"], d
    assert d["added"] == ["/tmp/d", "/tmp/d/b.txt"] and d["mode"] == "metadata"
    d = client.tapes.diff(tape_id, from_step=9, to_step=12)
    assert d["modified"] == ["/tmp/a.txt"] and d["deleted"] == ["/etc/debian_version"], d
    assert client.tapes.diff(tape_id, from_step=3, to_step=5)["changed_paths"] == []
    everything = client.tapes.diff(tape_id, from_step=0, to_step=12)["changed_paths"]
    assert everything == ["/etc/debian_version", "/tmp/a.txt", "/tmp/d", "/tmp/d/b.txt", "/tmp/data.csv"]
    content = api_get(recorded, f"/v1/tapes/{tape_id}/diff", params={"from": 2, "to": 12, "mode": "content"})
    diffs = {f["path"]: f["diff"] for f in content["contents"]}
    assert "+more" in diffs["/tmp/a.txt"] and " one" in diffs["/tmp/a.txt"]


def api_get(recorded, path, **kw):
    res = requests.get(recorded["client"].base_url + path, headers={"X-API-Key": recorded["key"]}, timeout=60, **kw)
    assert res.status_code == 200, res.text
    return res.json()


def test_a_live_branch_has_the_files_of_its_step(server, recorded):
    client, tape_id, key = recorded["client"], recorded["tape_id"], recorded["key"]
    b = client.tapes.branch(tape_id, at_step=3, mode="live")
    assert b["parent_tape_id"] == tape_id and b["parent_step_id"] == 3 and b["vm_id"].startswith("vm_")
    assert b["status"] == "recording"
    branch = attach(server, key, b["session_id"])
    probe = "import os; print(open('/tmp/a.txt').read().strip(), os.path.exists('/tmp/d/b.txt'), os.path.exists('/etc/debian_version'))"
    assert out(branch.execute(probe)).split() == ["one", "False", "True"]
    child = client.tapes.get(b["tape_id"])
    assert child["parent_tape_id"] == tape_id and child["parent_step_id"] == 3
    first = client.tapes.events(b["tape_id"])[0]
    assert first["kind"] == "branch" and first["payload"]["parent_step_id"] == 3
    # The branch records on its own tape from there on.
    assert "execute" in [e["kind"] for e in client.tapes.events(b["tape_id"])]
    client.tapes.stop(b["tape_id"])
    server.delete_vms(key)


def test_a_replay_branch_reaches_the_same_files(server, recorded):
    client, tape_id, key = recorded["client"], recorded["tape_id"], recorded["key"]
    b = client.tapes.branch(tape_id, at_step=9, mode="replay")
    assert b["replayed_steps"] == 3  # two executes and the upload
    branch = attach(server, key, b["session_id"])
    probe = "print(repr(open('/tmp/a.txt').read()), repr(open('/tmp/d/b.txt').read()), repr(open('/tmp/data.csv').read()))"
    assert out(branch.execute(probe)).strip() == "'one\\n' 'two\\n' 'a,b\\n1,2\\n'"
    kinds = [e["kind"] for e in client.tapes.events(b["tape_id"])]
    assert kinds[:7] == ["branch", "execute", "fs_summary", "execute", "fs_summary", "upload", "fs_summary"]
    client.tapes.stop(b["tape_id"])
    server.delete_vms(key)


def test_bad_requests_are_4xx_and_other_users_tapes_404(server, recorded):
    tape_id, key = recorded["tape_id"], recorded["key"]
    other = server.create_user()
    for method, path in [("GET", f"/v1/tapes/{tape_id}"), ("GET", f"/v1/tapes/{tape_id}/events"),
                         ("GET", f"/v1/tapes/{tape_id}/diff?from=0&to=1"), ("POST", f"/v1/tapes/{tape_id}/stop"),
                         ("DELETE", f"/v1/tapes/{tape_id}"), ("GET", f"/v1/tapes/{tape_id}/export")]:
        res = api(server, other, method, path)
        assert res.status_code == 404 and "not found" in res.json()["detail"], (method, path, res.text)
    assert api(server, other, "GET", "/v1/tapes").json() == []
    cases = [
        ("GET", f"/v1/tapes/{tape_id}/diff?from=0&to=99", {}, 422, "past the last step"),
        ("GET", f"/v1/tapes/{tape_id}/diff?from=0", {}, 422, "from"),
        ("GET", f"/v1/tapes/{tape_id}/diff?from=0&to=1&mode=words", {}, 422, "mode"),
        ("POST", f"/v1/tapes/{tape_id}/branch", {"json": {"at_step": 99}}, 422, "past the last step"),
        ("POST", f"/v1/tapes/{tape_id}/branch", {"json": {"at_step": 1, "mode": "rewind"}}, 422, "mode"),
        ("POST", f"/v1/tapes/{tape_id}/events", {"json": {"kind": "agent_log"}}, 409, "stopped"),
        ("GET", "/v1/tapes?status=paused", {}, 422, "status"),
        ("POST", "/v1/sessions/nope/tape/start", {"json": {}}, 404, "not found"),
    ]
    for method, path, kw, status, words in cases:
        res = api(server, key, method, path, **kw)
        assert res.status_code == status and words in res.json()["detail"], (path, res.text)


def test_recording_errors_and_a_tape_without_fs(server, client, api_key):
    sid = client.session_id
    bad = api(server, api_key, "POST", f"/v1/sessions/{sid}/tape/start", json={"retention_days": 0})
    assert bad.status_code == 422 and "retention_days" in bad.json()["detail"]
    tape = client.tapes.start(sid, record_fs=False)
    again = api(server, api_key, "POST", f"/v1/sessions/{sid}/tape/start", json={})
    assert again.status_code == 409 and "already recording" in again.json()["detail"]
    for body, words in [({"kind": ""}, "kind"), ({"kind": "x", "payload": [1]}, "object"),
                        ({"kind": "x", "parent_step_id": 5}, "parent_step_id 5")]:
        res = api(server, api_key, "POST", f"/v1/tapes/{tape['id']}/events", json=body)
        assert res.status_code == 422 and words in res.json()["detail"], res.text
    client.execute("print(1)")
    events = client.tapes.events(tape["id"])
    assert [e["kind"] for e in events] == ["execute"] and events[0]["checkpoint_id"] is None
    res = api(server, api_key, "GET", f"/v1/tapes/{tape['id']}/diff", params={"from": 0, "to": 1})
    assert res.status_code == 409 and "record_fs" in res.json()["detail"]
    # Killing the session stops its tape.
    client.kill()
    deadline = time.time() + 30
    while client.tapes.get(tape["id"])["status"] == "recording" and time.time() < deadline:
        time.sleep(0.5)
    assert client.tapes.get(tape["id"])["status"] == "stopped"


def test_llm_calls_become_a_cassette_the_official_replay_client_reads(server, client):
    tape = client.tapes.start(client.session_id, record_fs=False)
    url = "https://api.openai.com/v1/chat/completions"
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode()
    for answer in (b'{"n": 1}', b'{"n": 2}'):
        client.tapes.append_event(tape["id"], "llm_call", payload={
            "request": {"method": "POST", "url": url, "body_sha256": hashlib.sha256(body).hexdigest()},
            "response": {"status": 200, "headers": [["content-type", "application/json"]],
                         "body_b64": base64.b64encode(answer).decode()},
        })
    client.tapes.stop(tape["id"])
    root = os.path.join(server.data_dir, "tapes")
    replay = CassetteReplayClient(tape["id"], cassette_root=root, strict=True)
    assert replay.loaded == 2
    http = httpx.Client(transport=replay.as_httpx_transport())
    got = [http.post(url, content=body).json()["n"] for _ in range(3)]
    assert got == [1, 2, 1]  # file order, then wrapping around
    assert client.tapes.lanes(tape["id"])["lanes"] == {"llm_call": 2}
    client.tapes.delete(tape["id"])
    assert not os.path.exists(os.path.join(root, tape["id"]))


def test_expiry_frees_the_checkpoints(server, client):
    tape = client.tapes.start(client.session_id, retention_days=1)
    client.execute("open('/tmp/x', 'w').write('x')")
    checkpoints = client.tapes.export(tape["id"])["checkpoints"]
    assert len(checkpoints) == 2
    on_disk = lambda: [p for c in checkpoints for p in glob.glob(f"{server.data_dir}/**/snapshots/{c['checkpoint_id']}", recursive=True)]
    assert len(on_disk()) == 2
    db = sqlite3.connect(os.path.join(server.data_dir, "instavm.db"))
    db.execute("UPDATE tapes SET expires_at = 0 WHERE id = ?", (tape["id"],))
    db.commit()
    db.close()
    deadline = time.time() + 30
    while client.tapes.get(tape["id"])["status"] != "expired" and time.time() < deadline:
        time.sleep(0.5)
    assert client.tapes.get(tape["id"])["status"] == "expired"
    assert client.tapes.export(tape["id"])["checkpoints"] == [] and on_disk() == []
    assert [e["kind"] for e in client.tapes.events(tape["id"])] == ["execute", "fs_summary"]
    res = requests.get(f"{server.base_url}/v1/tapes/{tape['id']}/diff", params={"from": 0, "to": 1},
                       headers={"X-API-Key": client.api_key}, timeout=30)
    assert res.status_code == 409 and "expired" in res.json()["detail"]


def test_both_clis_drive_tapes(server, recorded, cli_env):
    tape_id, key = recorded["tape_id"], recorded["key"]
    env = dict(cli_env, INSTAVM_API_KEY=key)
    for cli in (BIN, OFFICIAL_CLI):
        done = run([cli, "tape", "events", tape_id, "--kind", "execute", "--json"], env)
        assert done.returncode == 0, done.stderr
        assert [e["step_id"] for e in json.loads(done.stdout)["events"]] == [2, 6, 11]
        done = run([cli, "tape", "diff", tape_id, "--from", "2", "--to", "6"], env)
        assert done.returncode == 0 and "/tmp/d/b.txt" in done.stdout, done.stdout + done.stderr
        done = run([cli, "tape", "play", tape_id], env)
        assert done.returncode == 0 and "tool_call_start" in done.stdout, done.stdout + done.stderr
        done = run([cli, "tape", "ls", "--json"], env)
        assert tape_id in [t["id"] for t in json.loads(done.stdout)["tapes"]]
