"""Sessions, auth, limits and isolation through the official SDK."""

import os

import pytest
from instavm import InstaVM
from instavm.exceptions import (
    AuthenticationError,
    ExecutionError,
    ForbiddenError,
    InstaVMError,
    SessionError,
)


def test_session_status_and_kill(client):
    status = client.get_session_status()
    assert status["vm_status"] == "active"
    assert status["exists"] and status["vm_alive"] and status["vm_assigned"]
    assert status["vm_id"].startswith("vm_")
    assert client.is_session_active()
    sid = client.session_id
    client.kill()
    assert client.session_id is None
    status = client.get_session_status(sid)
    assert (status["vm_status"], status["exists"], status["vm_alive"]) == ("terminated", True, False)
    assert not client.is_session_active()
    client.session_id = sid
    with pytest.raises(ExecutionError):
        client.execute("print(1)")
    with pytest.raises(SessionError):
        client.kill()


def test_bad_keys_are_authentication_errors(base_url):
    with pytest.raises(AuthenticationError):
        InstaVM(api_key="ivm_not-a-real-key-0000000000", base_url=base_url)
    client = InstaVM(api_key="wrong", base_url=base_url, auto_start_session=False)
    with pytest.raises(AuthenticationError):
        client.get_current_user()


def test_lifetime_limit_uses_the_documented_wording(api_key, base_url):
    with pytest.raises(ForbiddenError, match=r"vm lifetime cannot exceed 86400s"):
        InstaVM(api_key=api_key, base_url=base_url, timeout=100_000)


def test_two_users_are_isolated(server, base_url):
    alice = InstaVM(api_key=server.create_user(), base_url=base_url, metadata={"owner": "alice"})
    bob = InstaVM(api_key=server.create_user(), base_url=base_url)
    alice.execute("secret = 'alice only'")
    task = alice.execute_async("print(secret)")

    with pytest.raises(SessionError):
        bob.get_session_status(alice.session_id)
    with pytest.raises(SessionError):
        bob.get_session_info(alice.session_id)
    with pytest.raises(SessionError):
        bob.kill(alice.session_id)
    intruder = InstaVM(api_key=bob.api_key, base_url=base_url, auto_start_session=False)
    intruder.session_id = alice.session_id
    with pytest.raises(ExecutionError):
        intruder.execute("print(secret)")
    with pytest.raises(InstaVMError):
        intruder.download_file("/etc/hostname")
    with pytest.raises(TimeoutError):
        intruder.get_task_result(task["task_id"], poll_interval=1, timeout=2)
    assert bob.list_sandboxes(metadata={"owner": "alice"}) == []
    assert [s["session_id"] for s in bob.list_sandboxes()] == [bob.session_id]
    assert alice.execute("print(secret)")["stdout"] == "alice only\n"
    assert alice.get_task_result(task["task_id"], timeout=30)["stdout"] == "alice only\n"


def test_upload_download_binary_round_trip(client, tmp_path):
    data = bytes(range(256)) * 64 + os.urandom(2_000_000)
    src = tmp_path / "blob.bin"
    src.write_bytes(data)
    up = client.upload_file(str(src), "/data/nested/dir/blob.bin")
    assert up["success"] is True and up["size"] == len(data)
    dst = tmp_path / "back.bin"
    client.download_file("/data/nested/dir/blob.bin", local_path=str(dst))
    assert dst.read_bytes() == data
    in_memory = client.download_file("/data/nested/dir/blob.bin")
    assert in_memory["content"] == data
    check = client.execute(
        "import hashlib; print(hashlib.sha256(open('/data/nested/dir/blob.bin','rb').read()).hexdigest())"
    )
    import hashlib

    assert check["stdout"].strip() == hashlib.sha256(data).hexdigest()


def test_download_errors(client):
    with pytest.raises(InstaVMError):
        client.download_file("/no/such/file")
    with pytest.raises(InstaVMError):
        client.download_file("../../etc/shadow")


def test_list_sandboxes_filters_by_metadata(server, base_url):
    key = server.create_user()
    prod = InstaVM(api_key=key, base_url=base_url, metadata={"env": "prod"})
    InstaVM(api_key=key, base_url=base_url, metadata={"env": "dev"})
    listed = prod.list_sandboxes(metadata={"env": "prod"})
    assert [s["session_id"] for s in listed] == [prod.session_id]
    assert len(prod.list_sandboxes(limit=1)) == 1
    assert len(prod.list_sandboxes()) == 2
