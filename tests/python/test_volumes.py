"""Volumes through the official SDK (`client.volumes.*`, `client.vms.mount_volume`) and CLI on the
real server: the README's volume examples, data moving between VMs, checkpoints mounted
read-only, quotas inside a VM and through uploads, files-API escapes, isolation between users,
live mounts into a VM running code, and a `kill -9` of the server."""

import json
import os
import signal
import time

import pytest
import requests
from instavm import InstaVM
from instavm.exceptions import InstaVMError

from conftest import BIN, OFFICIAL_CLI, Server, run

MIB = 1024 * 1024


def sdk(server, api_key):
    return InstaVM(api_key=api_key, base_url=server.base_url, auto_start_session=False)


def sh(client, vm, cmd):
    c = InstaVM(api_key=client.api_key, base_url=client.base_url, auto_start_session=False)
    c.session_id = vm["session_id"]
    return c.execute(cmd, language="bash")["stdout"]


def status_of(exc_info):
    return exc_info.value.response.status_code


@pytest.fixture
def c(server, api_key):
    client = sdk(server, api_key)
    yield client
    for vm in client.vms.list():
        try:
            client.vms.delete(vm["vm_id"])
        except Exception:
            pass


def test_readme_volume_examples(server, api_key, tmp_path, monkeypatch):
    """The README's "Volumes" section, unchanged except for `base_url` (and a README.md to upload)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "README.md").write_text("# hello volumes\n")
    client = InstaVM(api_key=api_key, base_url=server.base_url)
    # Create
    volume = client.volumes.create(name="project-data", quota_bytes=10 * 1024 * 1024 * 1024)
    volume_id = volume["id"]
    assert volume["name"] == "project-data" and volume["quota_bytes"] == 10 << 30
    # Read / Update
    assert [v["id"] for v in client.volumes.list(refresh_usage=True)] == [volume_id]
    assert client.volumes.get(volume_id, refresh_usage=True)["used_bytes"] >= 0
    updated = client.volumes.update(volume_id, name="project-data-v2", quota_bytes=20 * 1024 * 1024 * 1024)
    assert updated["id"] == volume_id and updated["name"] == "project-data-v2"
    # File operations
    client.volumes.upload_file(volume_id, file_path="./README.md", path="docs/README.md", overwrite=True)
    files = client.volumes.list_files(volume_id, prefix="docs/", recursive=True, limit=1000)
    assert [(f["path"], f["size"]) for f in files] == [("docs/README.md", 16)]
    download = client.volumes.download_file(volume_id, path="docs/README.md")
    assert download["path"] == "docs/README.md" and download["size"] == 16
    saved = client.volumes.download_file(volume_id, path="docs/README.md", local_path=str(tmp_path / "back.md"))
    assert (tmp_path / "back.md").read_text() == "# hello volumes\n" and saved["saved_bytes"] == 16
    client.volumes.delete_file(volume_id, path="docs/README.md")
    assert client.volumes.list_files(volume_id) == []
    # Checkpoints
    checkpoint = client.volumes.create_checkpoint(volume_id, name="pre-release")
    assert [c["id"] for c in client.volumes.list_checkpoints(volume_id)] == [checkpoint["id"]]
    client.volumes.delete_checkpoint(volume_id, checkpoint["id"])
    assert client.volumes.list_checkpoints(volume_id) == []
    # VM Volume Attachments
    vm = client.vms.create(wait=True)
    vm_id = vm["vm_id"]
    client.vms.mount_volume(vm_id, volume_id, mount_path="/data", mode="rw", wait=True)
    mounts = client.vms.list_volumes(vm_id)
    assert [(m["volume_id"], m["mount_path"], m["mode"]) for m in mounts] == [(volume_id, "/data", "rw")]
    client.vms.unmount_volume(vm_id, volume_id, mount_path="/data", wait=True)
    assert client.vms.list_volumes(vm_id) == []
    # Cleanup
    client.volumes.delete(volume_id)
    assert client.volumes.list() == []
    # The README's "VM with pre-attached volumes" names a volume this user does not have.
    with pytest.raises(requests.HTTPError) as e:
        client.vms.create(wait=True, volumes=[{"volume_id": "vol_abc", "mount_path": "/data", "mode": "rw"}])
    assert status_of(e) == 404
    client.vms.delete(vm_id)
    client.kill()


def test_data_moves_between_vms_and_checkpoints_are_frozen(c):
    vol = c.volumes.create(name="shared", quota_bytes=64 * MIB)["id"]
    a = c.vms.create(wait=True, volumes=[{"volume_id": vol, "mount_path": "/data", "mode": "rw", "checkpoint_id": None}])
    assert sh(c, a, "echo from-a > /data/f && cat /data/f && stat -c %u /data/f") == "from-a\n0\n"
    ckpt = c.volumes.create_checkpoint(vol, name="v1")
    sh(c, a, "echo changed > /data/f; sync")
    # Only one VM may hold the volume rw; the answer names it.
    b = c.vms.create(wait=True)
    with pytest.raises(requests.HTTPError) as e:
        c.vms.mount_volume(b["vm_id"], vol, mount_path="/data", mode="rw")
    assert status_of(e) == 409 and a["vm_id"] in e.value.response.json()["detail"]
    with pytest.raises(requests.HTTPError) as e:
        c.volumes.delete(vol)
    assert status_of(e) == 409
    # After A lets go, B reads what A wrote.
    c.vms.unmount_volume(a["vm_id"], vol, mount_path="/data")
    assert sh(c, a, "ls /data | wc -l").strip() == "0"
    c.vms.mount_volume(b["vm_id"], vol, mount_path="/data", mode="rw")
    assert sh(c, b, "cat /data/f") == "changed\n"
    # A ro mount of the checkpoint (manifest form at create, `latest` live) shows the old content.
    ro = c.vms.create(wait=True, volumes=[{"name": "shared", "mount_path": "/old", "mode": "ro", "checkpoint_id": ckpt["id"]}])
    out = sh(c, ro, "cat /old/f; (echo x > /old/g) 2>&1; (echo y > /old/f) 2>&1; cat /old/f")
    assert out.startswith("from-a\n") and "Read-only file system" in out and out.endswith("from-a\n"), out
    c.vms.mount_volume(b["vm_id"], vol, mount_path="/latest", mode="ro", checkpoint_id="latest")
    assert sh(c, b, "cat /latest/f") == "from-a\n"
    # Manifest form with create_if_missing makes the volume by name.
    made = c.vms.create(wait=True, volumes=[{"name": "scratch", "mount_path": "/scratch", "mode": "rw", "size_gb": 1, "create_if_missing": True}])
    assert sh(c, made, "df -B1 --output=size /scratch | tail -1").strip() != ""
    scratch = [v for v in c.volumes.list() if v["name"] == "scratch"][0]
    assert scratch["quota_bytes"] == 1 << 30
    # Bad mount paths are refused.
    for path in ["/", "relative", "/proc/x", "/sys/y", "/dev/z"]:
        with pytest.raises(requests.HTTPError) as e:
            c.vms.mount_volume(b["vm_id"], vol, mount_path=path, mode="ro", checkpoint_id="latest")
        assert status_of(e) == 422, path


def test_quota_inside_the_vm_and_through_upload(c, tmp_path):
    vol = c.volumes.create(name="small", quota_bytes=4 * MIB)["id"]
    vm = c.vms.create(wait=True, volumes=[{"volume_id": vol, "mount_path": "/q"}])
    out = sh(c, vm, "dd if=/dev/zero of=/q/big bs=1M count=16 2>&1; echo rc=$?; rm -f /q/big; sync")
    assert ("quota exceeded" in out or "No space left" in out) and "rc=0" not in out, out
    big = tmp_path / "big.bin"
    big.write_bytes(b"z" * (6 * MIB))
    with pytest.raises(InstaVMError) as e:
        c.volumes.upload_file(vol, file_path=str(big), path="big.bin")
    assert "413" in str(e.value), e.value
    assert c.volumes.list_files(vol) == []
    # Shrinking below what is used is refused; a write that fits works.
    small = tmp_path / "small.bin"
    small.write_bytes(b"s" * (2 * MIB))
    c.volumes.upload_file(vol, file_path=str(small), path="small.bin")
    with pytest.raises(requests.HTTPError) as e:
        c.volumes.update(vol, quota_bytes=1 * MIB)
    assert status_of(e) == 409
    assert c.volumes.get(vol, refresh_usage=True)["used_bytes"] >= 2 * MIB
    assert sh(c, vm, "wc -c < /q/small.bin") == f"{2 * MIB}\n"


def test_files_api_refuses_escapes(c, tmp_path):
    vol = c.volumes.create(name="esc", quota_bytes=16 * MIB)["id"]
    vm = c.vms.create(wait=True, volumes=[{"volume_id": vol, "mount_path": "/v"}])
    sh(c, vm, "ln -s /etc/passwd /v/abs; ln -s ../../../etc/passwd /v/rel; ln -s /etc /v/etc; mkdir -p /v/d; echo in > /v/d/f; ln -s d /v/ok")
    for path in ["abs", "rel", "etc/passwd", "../etc/passwd", "/etc/passwd", "d/../../x"]:
        with pytest.raises(requests.HTTPError) as e:
            c.volumes.download_file(vol, path=path)
        assert status_of(e) == 400, path
    for path in ["etc/passwd", "../etc/passwd", "/etc/passwd", "d/../../x"]:
        with pytest.raises(requests.HTTPError) as e:
            c.volumes.delete_file(vol, path=path)
        assert status_of(e) == 400, path
    # Deleting a planted link removes the link, never what it points at.
    c.volumes.delete_file(vol, path="abs")
    assert os.path.exists("/etc/passwd") and sh(c, vm, "test -e /v/abs || echo gone") == "gone\n"
    local = tmp_path / "x.txt"
    local.write_text("x")
    for path in ["etc/instavm-escape", "../x", "/tmp/x"]:
        with pytest.raises(InstaVMError) as e:
            c.volumes.upload_file(vol, file_path=str(local), path=path)
        assert "400" in str(e.value), (path, e.value)
    assert not os.path.exists("/etc/instavm-escape")
    # A symlink that stays inside is fine.
    assert c.volumes.download_file(vol, path="ok/f", local_path=str(tmp_path / "f"))["saved_bytes"] == 3
    # Existing file without overwrite: 409.
    c.volumes.upload_file(vol, file_path=str(local), path="d/f2")
    with pytest.raises(InstaVMError) as e:
        c.volumes.upload_file(vol, file_path=str(local), path="d/f2")
    assert "409" in str(e.value)


def test_two_users_volumes_are_isolated(server, c):
    vol = c.volumes.create(name="mine", quota_bytes=8 * MIB)["id"]
    other = sdk(server, server.create_user())
    for call in [
        lambda: other.volumes.get(vol),
        lambda: other.volumes.update(vol, name="x"),
        lambda: other.volumes.delete(vol),
        lambda: other.volumes.list_files(vol),
        lambda: other.volumes.download_file(vol, path="a"),
        lambda: other.volumes.create_checkpoint(vol),
        lambda: other.volumes.delete_file(vol, path="a"),
    ]:
        try:
            call()
        except requests.HTTPError as e:
            assert e.response.status_code == 404
        else:
            raise AssertionError("expected a 404")
    vm = other.vms.create(wait=True)
    with pytest.raises(requests.HTTPError) as e:
        other.vms.mount_volume(vm["vm_id"], vol, mount_path="/data")
    assert status_of(e) == 404
    assert other.volumes.list() == []
    other.vms.delete(vm["vm_id"])


def test_live_mount_and_unmount_in_a_vm_running_code(c):
    vol = c.volumes.create(name="live", quota_bytes=16 * MIB)["id"]
    vm = c.vms.create(wait=True)
    # Code that runs before, during and after the mount, appending while the volume is there.
    sh(c, vm, "nohup sh -c 'while :; do [ -d /data/logs ] && date +%s%N >> /data/logs/tick; sleep 0.05; done' >/dev/null 2>&1 &")
    started = time.monotonic()
    c.vms.mount_volume(vm["vm_id"], vol, mount_path="/data", mode="rw", wait=True)
    mount_ms = (time.monotonic() - started) * 1000
    sh(c, vm, "mkdir -p /data/logs")
    time.sleep(0.5)
    files = c.volumes.list_files(vol, prefix="logs/")
    assert files and files[0]["path"] == "logs/tick" and files[0]["size"] > 0
    c.vms.unmount_volume(vm["vm_id"], vol, mount_path="/data")
    size = c.volumes.list_files(vol, prefix="logs/")[0]["size"]
    time.sleep(0.3)
    assert c.volumes.list_files(vol, prefix="logs/")[0]["size"] == size
    # The code is still running after the unmount.
    running = sh(c, vm, "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; echo; done | grep -c 'while :'")
    assert int(running) >= 1, running
    print(f"live mount over HTTP: {mount_ms:.1f} ms")


@pytest.mark.parametrize("cli", [BIN, OFFICIAL_CLI], ids=["ours", "official"])
def test_volume_commands(cli, api_key, cli_env, tmp_path):
    env = dict(cli_env, INSTAVM_API_KEY=api_key)

    def j(*args):
        proc = run([cli, *args, "--json"], env)
        assert proc.returncode == 0, proc.stderr + proc.stdout
        return json.loads(proc.stdout.strip().splitlines()[-1])

    name = f"cli-{os.getpid()}-{cli == BIN}"
    vol = j("volume", "create", name, "--quota", "1.5mb")
    assert vol["quota_bytes"] == int(1.5 * MIB)
    vid = vol["id"]
    assert vid in [v["id"] for v in j("volume", "ls", "--refresh")["volumes"]]
    assert j("volume", "get", vid)["name"] == name
    assert j("volume", "update", vid, "--quota", "2mb")["quota_bytes"] == 2 * MIB
    local = tmp_path / "hello.txt"
    local.write_text("hi there")
    j("volume", "files", "upload", vid, str(local), "--path", "d/hello.txt")
    assert [f["path"] for f in j("volume", "files", "ls", vid)["files"]] == ["d/hello.txt"]
    out = tmp_path / "out.txt"
    got = j("volume", "files", "download", vid, "d/hello.txt", "--out", str(out))
    assert out.read_text() == "hi there" and got["size"] == 8
    ck = j("volume", "checkpoint", "create", vid, "--name", "c1")
    assert [x["id"] for x in j("volume", "checkpoint", "ls", vid)["checkpoints"]] == [ck["id"]]
    vm = j("create", "--volume", f"{vid}:/data", "--volume", f"{vid}:/old:ro", "--timeout", "600")
    assert sorted(m["mount_path"] for m in requests.get(
        f"{env['INSTAVM_BASE_URL']}/v1/vms/{vm['vm_id']}/volumes", headers={"X-API-Key": api_key}).json()) == ["/data", "/old"]
    j("rm", vm["vm_id"])
    assert j("volume", "checkpoint", "rm", vid, ck["id"])["checkpoint_id"] == ck["id"]
    assert j("volume", "files", "rm", vid, "d/hello.txt")["path"] == "d/hello.txt"
    assert j("volume", "rm", vid)["volume_id"] == vid


def test_volumes_survive_kill_9_and_restart():
    srv = Server()
    try:
        srv.start()
        key = srv.create_user()
        client = sdk(srv, key)
        vol = client.volumes.create(name="durable", quota_bytes=16 * MIB)["id"]
        ckpt = client.volumes.create_checkpoint(vol)["id"]
        vm = client.vms.create(wait=True, volumes=[{"volume_id": vol, "mount_path": "/data"}])
        sh(client, vm, "echo kept > /data/k; sync")
        os.killpg(srv.proc.pid, signal.SIGKILL)
        srv.proc.wait()
        srv.start()
        client = sdk(srv, key)
        assert [v["id"] for v in client.volumes.list(refresh_usage=True)] == [vol]
        assert [c["id"] for c in client.volumes.list_checkpoints(vol)] == [ckpt]
        assert [m["mount_path"] for m in client.vms.list_volumes(vm["vm_id"])] == ["/data"]
        assert sh(client, vm, "cat /data/k") == "kept\n"
        assert client.volumes.download_file(vol, path="k")["size"] == 5
        other = client.vms.create(wait=True)
        with pytest.raises(requests.HTTPError) as e:
            client.vms.mount_volume(other["vm_id"], vol, mount_path="/data")
        assert status_of(e) == 409
    finally:
        srv.stop()
