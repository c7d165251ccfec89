"""The README of the official SDK, section by section, unchanged except for `base_url`."""

import json
import os

from instavm import InstaVM


def test_library_quick_start(api_key, base_url):
    client = InstaVM(api_key=api_key, base_url=base_url, auto_start_session=False)
    me = client.get_current_user()
    vms = client.vms.list()
    assert "@" in me["email"]
    assert me["is_verified"] is True
    assert vms == []
    assert client.session_id is None, "auto_start_session=False starts nothing"


def test_sessions_and_configuration(api_key, base_url):
    client = InstaVM(
        api_key=api_key,
        base_url=base_url,
        cpu_count=2,
        memory_mb=1024,
        env={"APP_ENV": "dev"},
        metadata={"team": "platform"},
    )
    result = client.execute("print('session id:', 'ok')")
    assert result["stdout"] == "session id: ok\n"
    assert result["exit_code"] == 0
    assert client.session_id
    assert client.execute("import os; print(os.environ['APP_ENV'])")["stdout"] == "dev\n"
    info = client.get_session_info()
    assert info["metadata"] == {"team": "platform"}
    assert (info["memory_mb"], info["vcpu_count"]) == (1024, 2)
    # The VM behind the session is listed.
    vms = client.vms.list()
    assert [vm["session_id"] for vm in vms] == [client.session_id]


def test_file_operations(client, tmp_path):
    local = tmp_path / "local_script.py"
    local.write_text(
        "import json\n"
        "with open('output.json', 'w') as f:\n"
        "    json.dump({'answer': 42}, f)\n"
    )
    client.upload_file(str(local), "/app/local_script.py")
    # The README runs `python`; the base image ships `python3` (see the report).
    result = client.execute("cd /app && python3 /app/local_script.py", language="bash")
    assert result["exit_code"] == 0, result
    out = tmp_path / "output.json"
    client.download_file("output.json", local_path=str(out))
    assert json.loads(out.read_text()) == {"answer": 42}


def test_async_execution(client):
    task = client.execute_async("sleep 5 && echo 'done'", language="bash")
    result = client.get_task_result(task["task_id"], poll_interval=2, timeout=60)
    assert result["stdout"] == "done\n"
    assert result["execution_time"] >= 5


def test_sessions_and_sandboxes(client):
    # The README's "publicly-reachable app URL": a public share of the port (docs/shares.md).
    app_url = client.get_session_app_url(port=8080)
    assert app_url["port"] == 8080 and app_url["is_public"] is True
    assert app_url["app_url"].startswith("http://") and app_url["app_url"].endswith("/")
    assert app_url["url"] == app_url["app_url"] == app_url["direct_url"]
    sandboxes = client.list_sandboxes(metadata={"env": "production"}, limit=50)
    assert len(sandboxes) == 0
    assert len(client.list_sandboxes()) == 1


def test_ssh_key_registration(client):
    key = client.add_ssh_key(
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOXVjkXmOASXrQbvyWaF9wtjh+RVyXP7SjOBus2Q2o9H user@host"
    )
    assert key["fingerprint"] == "SHA256:bU05fYdcKvBloGJtHM7i8Ao2bQyKnP7FxU5KXJwFPDU"
    listed = client.list_ssh_keys()
    assert [k["id"] for k in listed] == [key["id"]]
    assert isinstance(listed[0]["id"], int)
    assert client.delete_ssh_key(key["id"])["deleted"] is True
    assert client.list_ssh_keys() == []


def test_api_keys_manager(client, base_url):
    created = client.api_keys.create(description="ci key")
    assert created["api_key"] and created["id"]
    other = InstaVM(api_key=created["api_key"], base_url=base_url, auto_start_session=False)
    assert other.get_current_user()["email"] == client.get_current_user()["email"]
    assert len(client.api_keys.list()) == 2
    assert client.api_keys.get(created["id"])["description"] == "ci key"
    assert client.api_keys.update(created["id"], description="renamed")["description"] == "renamed"
    assert client.api_keys.delete(created["id"])["deleted"] is True
    assert len(client.api_keys.list()) == 1


def test_usage(client):
    client.execute("x = 1")
    usage = client.get_usage()
    assert usage["execution_count"] >= 1
    breakdown = client.get_usage_breakdown(days=7)
    assert breakdown["total_days"] == 7
    assert len(breakdown["daily_breakdown"]) == 7
    assert breakdown["totals"]["ram_gib_hours"] >= 0
