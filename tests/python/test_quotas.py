"""Operator quotas from `instavm server --config FILE` (docs/quotas.md): the file's limits are
the ones the server enforces, the official SDK sees them as 403s with a detail, and a file with
a typo stops the server at start with the key named."""

import json
import os
import subprocess
import tempfile
import uuid

import pytest
import requests
from instavm import InstaVM
from instavm.exceptions import ForbiddenError

from conftest import BIN, IMAGES_DIR, Server, run


@pytest.fixture(scope="module")
def quota_server():
    config = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
    config.write(
        "[limits]\n"
        "max_active_sessions_per_user = 1\n"
        "max_memory_mb = 1024\n"
        "max_lifetime_seconds = 600\n"
        "[admission]\n"
        "user_vcpus = 4\n"
    )
    config.close()
    s = Server(["--config", config.name, "--warm-pool", "0"])
    s.start()
    yield s
    s.stop()
    os.unlink(config.name)


def test_the_config_files_limits_are_enforced(quota_server):
    key = quota_server.create_user()
    # The SDK's `timeout` is also the VM lifetime it asks for: 300 s is within the file's 600.
    first = InstaVM(api_key=key, base_url=quota_server.base_url, timeout=300)
    assert first.session_id
    assert "hello" in str(first.execute("print('hello')"))

    # A second session is over the file's one-per-user limit (the default is 32).
    with pytest.raises(ForbiddenError) as over:
        InstaVM(api_key=key, base_url=quota_server.base_url, timeout=300)
    assert "at most 1 active sessions" in str(over.value)

    # Asking for more memory or a longer life than the file allows is refused the same way.
    other = quota_server.create_user()
    with pytest.raises(ForbiddenError) as memory:
        InstaVM(api_key=other, base_url=quota_server.base_url, memory_mb=2048, timeout=300)
    assert "memory cannot exceed 1024 MB" in str(memory.value)
    with pytest.raises(ForbiddenError) as lifetime:
        InstaVM(api_key=other, base_url=quota_server.base_url, timeout=3600)
    assert "vm lifetime cannot exceed 600s" in str(lifetime.value)
    first.kill()


def test_an_operator_overrides_one_users_limits(quota_server, tmp_path):
    s = quota_server
    email = f"big-{uuid.uuid4().hex[:8]}@example.com"
    big = s.create_user(email)
    small = s.create_user()
    env = dict(os.environ, HOME=str(tmp_path), INSTAVM_BASE_URL=s.base_url,
               INSTAVM_ADMIN_API_KEY=s.admin_key, NO_COLOR="1")

    # Our CLI, naming the user by email: two sessions (the file allows one), 256 MB each.
    done = run([BIN, "admin", "users", "set-limits", email, "--max-active-sessions-per-user", "2",
                "--max-memory-mb", "256", "--json"], env)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["overrides"] == {"max_active_sessions_per_user": 2, "max_memory_mb": 256}
    assert answer["effective"]["max_active_sessions_per_user"] == 2
    assert answer["effective"]["max_lifetime_seconds"] == 600  # still the file's
    user_id = answer["user_id"]

    # The official SDK sees the overrides: no memory asked is the default brought down to 256.
    first = InstaVM(api_key=big, base_url=s.base_url, timeout=300)
    second = InstaVM(api_key=big, base_url=s.base_url, timeout=300)
    h = {"X-API-Key": big}
    info = requests.get(f"{s.base_url}/v1/sessions/session/{second.session_id}", headers=h).json()
    assert info["memory_mb"] == 256, info
    with pytest.raises(ForbiddenError) as over:
        InstaVM(api_key=big, base_url=s.base_url, timeout=300)
    assert "at most 2 active sessions" in str(over.value)
    # The VM route reads the same overrides.
    vm = requests.post(f"{s.base_url}/v1/vms", headers=h, json={"memory_mb": 512})
    assert vm.status_code == 403 and "memory cannot exceed 256 MB" in vm.json()["detail"], vm.text

    # Another user still has the file's limits: 512 MB is fine, a second session is not.
    other = InstaVM(api_key=small, base_url=s.base_url, memory_mb=512, timeout=300)
    with pytest.raises(ForbiddenError):
        InstaVM(api_key=small, base_url=s.base_url, timeout=300)

    # Bad overrides are 422 naming the field; the user's own key cannot set them; the change
    # is an audit event of the user's.
    admin = {"X-API-Key": s.admin_key}
    url = f"{s.base_url}/v1/admin/users/{user_id}/limits"
    typo = requests.put(url, headers=admin, json={"max_memory": 64})
    assert typo.status_code == 422 and "max_memory" in typo.json()["detail"], typo.text
    low = requests.put(url, headers=admin, json={"max_memory_mb": 64})
    assert low.status_code == 422 and "at least 128" in low.json()["detail"], low.text
    assert requests.put(url, headers=h, json={}).status_code == 403
    missing = requests.get(f"{s.base_url}/v1/admin/users/999999/limits", headers=admin)
    assert missing.status_code == 404 and missing.json()["detail"]
    events = requests.get(f"{s.base_url}/v1/audit/events",
                          params={"event_type": "user.limits_updated"}, headers=h).json()["items"]
    assert [e["event_payload"]["overrides"]["max_memory_mb"] for e in events] == [256]

    # --reset gives the user the file's limits again.
    done = run([BIN, "admin", "users", "set-limits", str(user_id), "--reset"], env)
    assert done.returncode == 0, done.stderr
    assert "max_active_sessions_per_user" in done.stdout and "server" in done.stdout
    shown = requests.get(url, headers=admin).json()
    assert shown["overrides"] == {} and shown["effective"]["max_active_sessions_per_user"] == 1
    for sandbox in (first, second, other):
        sandbox.kill()


@pytest.mark.parametrize(
    "text, named",
    [
        ("[limits]\nmax_sesions_per_user = 3\n", "max_sesions_per_user"),
        ("[limits]\nmax_memory_mb = \"lots\"\n", "max_memory_mb"),
        ("[limits]\nmin_memory_mb = 4096\nmax_memory_mb = 1024\n", "inconsistent limits"),
    ],
)
def test_a_bad_config_file_stops_the_server_with_the_key_named(text, named, tmp_path):
    config = tmp_path / "instavm.toml"
    config.write_text(text)
    env = dict(os.environ, INSTAVM_ADMIN_API_KEY="pytest-admin-0123456789abcdef")
    done = subprocess.run(
        [BIN, "server", "--config", str(config), "--listen", "127.0.0.1:0", "--ssh-listen", "off",
         "--data-dir", str(tmp_path / "data"), "--images-dir", IMAGES_DIR],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode != 0
    assert named in done.stderr, done.stderr
