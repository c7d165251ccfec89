"""VMs and snapshots through the official SDK (`client.vms.*`, `client.snapshots.*`) on the real
server: records, live memory, snapshots and boots from them, clone, suspend/resume, auto_*
flags, stage-env, isolation, bad input, and a `kill -9` of the server during creates."""

import os
import signal
import time

import pytest
import requests
from instavm import InstaVM
from instavm.exceptions import ForbiddenError

from conftest import Server


def sdk(server, api_key):
    return InstaVM(api_key=api_key, base_url=server.base_url, auto_start_session=False)


def on_session(client, session_id):
    """The same user's client pointed at a VM's session (for execute)."""
    c = InstaVM(api_key=client.api_key, base_url=client.base_url, auto_start_session=False)
    c.session_id = session_id
    return c


def sh(client, vm, cmd):
    out = on_session(client, vm["session_id"]).execute(cmd, language="bash")
    return out["stdout"]


@pytest.fixture
def c(server, api_key):
    client = sdk(server, api_key)
    yield client
    for vm in client.vms.list():
        try:
            client.vms.delete(vm["vm_id"])
        except Exception:
            pass


def test_create_with_every_field_list_get_update_delete(c):
    vault_1 = c.create_vault("vault_1")["id"]  # vault_ids must name the caller's vaults
    vm = c.vms.create(
        wait=True, memory_mb=768, vcpu_count=2, vm_lifetime_seconds=600, metadata={"team": "qa"},
        vault_ids=[vault_1], auto_suspend=False, auto_resume=False, snapshot_on_terminate=False,
        snapshot_name="final", env={"GREETING": "hi"},
    )
    assert vm["status"] == "active" and vm["vm_id"].startswith("vm_") and vm["id"] == vm["vm_id"]
    assert (vm["memory_mb"], vm["vcpu_count"], vm["metadata"], vm["vault_ids"]) == (768, 2, {"team": "qa"}, [vault_1])
    assert sh(c, vm, "echo $GREETING") == "hi\n"
    assert [v["vm_id"] for v in c.vms.list()] == [vm["vm_id"]]
    assert c.vms.get(vm["vm_id"])["session_id"] == vm["session_id"]

    updated = c.vms.update(vm["vm_id"], memory_mb=1024, auto_resume=True, vault_ids=[])
    assert (updated["memory_mb"], updated["auto_resume"], updated["vault_ids"]) == (1024, True, [])
    usage = on_session(c, vm["session_id"]).get_usage()
    assert usage["memory_limit_bytes"] == 1024 << 20  # the cgroup limit, changed live

    deleted = c.vms.delete(vm["vm_id"])
    assert deleted["status"] == "terminated"
    assert c.vms.list() == []
    assert [v["status"] for v in c.vms.list_all_records()] == ["terminated"]


def test_session_started_vms_are_listed(client):
    vm_id = client.get_session_status()["vm_id"]
    vm = client.vms.get(vm_id)
    assert (vm["status"], vm["session_id"]) == ("active", client.session_id)


def test_wait_false_answers_creating(c):
    vm = c.vms.create(wait=False)
    assert vm["status"] == "creating"
    deadline = time.monotonic() + 60
    while c.vms.get(vm["vm_id"])["status"] == "creating" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert c.vms.get(vm["vm_id"])["status"] == "active"


def test_snapshot_boot_and_clone(c):
    vm = c.vms.create(wait=True, env={"FROM_CREATE": "yes"})
    sh(c, vm, "echo before > /app/before.txt; pip --version >/dev/null 2>&1; true")
    snap = c.vms.snapshot(vm["vm_id"], wait=True, name="my-snap")
    assert snap["status"] == "ready" and snap["name"] == "my-snap" and snap["type"] == "user"
    sh(c, vm, "echo after > /app/after.txt")
    assert c.snapshots.get(snap["id"])["status"] == "ready"
    assert snap["id"] in [s["id"] for s in c.snapshots.list()]
    assert c.snapshots.list(snapshot_type="system") == []

    booted = c.vms.create(wait=True, snapshot_id=snap["id"])
    assert booted["snapshot_id"] == snap["id"]
    assert sh(c, booted, "cat /app/before.txt; ls /app/after.txt 2>/dev/null || echo none") == "before\nnone\n"

    clone = c.vms.clone(vm["vm_id"], wait=True, snapshot_name="clone-snap")
    assert clone["vm_id"] != vm["vm_id"] and clone["session_id"] != vm["session_id"]
    assert sh(c, clone, "cat /app/after.txt; echo $FROM_CREATE") == "after\nyes\n"

    # Snapshots outlive their VM; deleting one never breaks a VM booted from it.
    c.vms.delete(vm["vm_id"])
    assert c.snapshots.get(snap["id"])["status"] == "ready"
    assert c.snapshots.delete(snap["id"])
    assert sh(c, booted, "cat /app/before.txt") == "before\n"
    with pytest.raises(requests.HTTPError) as e:
        c.snapshots.get(snap["id"])
    assert e.value.response.status_code == 404


def test_twenty_suspend_resume_cycles_lose_nothing(c):
    vm = c.vms.create(wait=True)
    session_id = vm["session_id"]
    for i in range(20):
        sh(c, vm, f"echo {i} > /app/cycle-{i}.txt; echo {i} > /app/latest.txt")
        assert c.vms.suspend(vm["vm_id"])["status"] == "suspended"
        assert c.vms.get(vm["vm_id"])["status"] == "suspended"
        assert c.vms.list() == []
        resumed = c.vms.resume(vm["vm_id"], wait=True)
        assert resumed["vm_id"] != vm["vm_id"] and resumed["session_id"] == session_id
        assert resumed["status"] == "active"
        vm = resumed
    assert sh(c, vm, "cat /app/latest.txt; ls /app | grep -c cycle-") == "19\n20\n"


def test_auto_suspend_at_expiry_then_auto_resume(c):
    vm = c.vms.create(wait=True, vm_lifetime_seconds=20, auto_suspend=True, auto_resume=True)
    sh(c, vm, "echo kept > /app/kept.txt")
    deadline = time.monotonic() + 60
    while c.vms.get(vm["vm_id"])["status"] != "suspended":
        assert time.monotonic() < deadline, c.vms.get(vm["vm_id"])
        time.sleep(1)
    # An execute on its session resumes it, with its files.
    assert sh(c, vm, "cat /app/kept.txt") == "kept\n"
    assert c.vms.get(vm["vm_id"])["resumed_vm_id"]


def test_stage_env_reaches_python_and_bash(c):
    vm = c.vms.create(wait=True)
    s = on_session(c, vm["session_id"])
    s.execute("x = 41")
    c.vms.stage_env(vm["vm_id"], {"STAGED_TOKEN": "t0ken"})
    assert s.execute("import os; print(os.environ['STAGED_TOKEN'], x + 1)")["stdout"] == "t0ken 42\n"
    assert s.execute("echo $STAGED_TOKEN", language="bash")["stdout"] == "t0ken\n"
    # A snapshot does not carry staged variables.
    snap = c.vms.snapshot(vm["vm_id"], wait=True)
    booted = c.vms.create(wait=True, snapshot_id=snap["id"])
    assert sh(c, booted, "echo ${STAGED_TOKEN:-unset}") == "unset\n"


def test_other_users_vms_and_snapshots_are_404(server, c):
    vm = c.vms.create(wait=True)
    snap = c.vms.snapshot(vm["vm_id"], wait=True)
    other = sdk(server, server.create_user())
    for call in (
        lambda: other.vms.get(vm["vm_id"]),
        lambda: other.vms.update(vm["vm_id"], memory_mb=256),
        lambda: other.vms.delete(vm["vm_id"]),
        lambda: other.vms.suspend(vm["vm_id"]),
        lambda: other.vms.clone(vm["vm_id"]),
        lambda: other.snapshots.get(snap["id"]),
        lambda: other.snapshots.delete(snap["id"]),
        lambda: other.vms.create(wait=True, snapshot_id=snap["id"]),
    ):
        with pytest.raises(requests.HTTPError) as e:
            call()
        assert e.value.response.status_code == 404
    assert other.vms.list_all_records() == [] and other.snapshots.list() == []


def test_bad_input_is_a_clear_4xx(c):
    for body, status in (
        ({"snapshot_id": "snap_unknown"}, 404),
        ({"memory_mb": -1}, 422),
        ({"memory_mb": "big"}, 422),
        ({"vcpu_count": 1.5}, 422),
        ({"metadata": {"k": "v" * 20000}}, 422),
        ({"image_variant": "computer-use"}, 422),
    ):
        with pytest.raises(requests.HTTPError) as e:
            c.vms.create(wait=True, **body)
        assert e.value.response.status_code == status, body
        assert e.value.response.json()["detail"]
    with pytest.raises(ForbiddenError, match="vm lifetime cannot exceed 86400s"):
        c.vms.create(wait=True, vm_lifetime_seconds=10**6)


def test_kill_9_during_creates_leaves_final_states(api_key):
    srv = Server()
    try:
        srv.start()
        key = srv.create_user()
        client = sdk(srv, key)
        kept = client.vms.create(wait=True)
        on_session(client, kept["session_id"]).execute("echo survived > /app/s.txt", language="bash")
        snap = client.vms.snapshot(kept["vm_id"], wait=True)
        started = [client.vms.create(wait=False)["vm_id"] for _ in range(4)]
        os.killpg(srv.proc.pid, signal.SIGKILL)
        srv.proc.wait()
        srv.start()
        client = sdk(srv, key)
        states = {v["vm_id"]: v["status"] for v in client.vms.list_all_records()}
        assert all(states[v] in ("active", "failed") for v in started), states
        assert states[kept["vm_id"]] == "active"
        assert client.snapshots.get(snap["id"])["status"] == "ready"
        assert sh(client, kept, "cat /app/s.txt") == "survived\n"
        booted = client.vms.create(wait=True, snapshot_id=snap["id"])
        assert sh(client, booted, "cat /app/s.txt") == "survived\n"
    finally:
        srv.stop()


def test_readme_vms_and_snapshots_section(server, api_key):
    """The official README's "VMs & Snapshots" section, unchanged except for `base_url`; its
    volume `vol_abc` does not exist (404; volumes have their own tests), and the OCI build
    comes with its own issue and is refused with a 422."""
    client = InstaVM(api_key=api_key, base_url=server.base_url)
    vm = client.vms.create(wait=True, metadata={"purpose": "dev"})
    with pytest.raises(requests.HTTPError) as e:
        client.vms.create(
            wait=True,
            volumes=[{"volume_id": "vol_abc", "mount_path": "/data", "mode": "rw"}],
        )
    assert e.value.response.status_code == 404
    vms = client.vms.list()
    all_records = client.vms.list_all_records()
    assert vm["vm_id"] in [v["vm_id"] for v in vms] and len(all_records) >= len(vms)
    snap_from_vm = client.vms.snapshot(vm_id=vm["vm_id"], wait=True, name="dev-base")
    assert snap_from_vm["status"] == "ready"
    with pytest.raises(requests.HTTPError) as e:
        client.snapshots.create(oci_image="docker.io/library/python:3.11-slim", name="python-3-11-dev")
    assert e.value.response.status_code == 422
    user_snaps = client.snapshots.list(snapshot_type="user")
    assert [s["name"] for s in user_snaps] == ["dev-base"]
    client.vms.delete(vm["vm_id"])
    client.kill()
