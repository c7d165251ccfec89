"""The SSH gateway with the real OpenSSH client, keys registered through the official SDK."""

import json
import os
import shutil
import subprocess

import pytest

from conftest import OFFICIAL_CLI


@pytest.fixture
def ssh_key(tmp_path):
    path = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


def vm_id_of(client):
    (vm,) = [v for v in client.vms.list() if v["session_id"] == client.session_id]
    return vm["vm_id"]


def ssh_opts(server, key, tmp_path):
    return [
        "-p", str(server.ssh_port),
        "-i", str(key),
        "-o", "BatchMode=yes",
        "-o", "IdentitiesOnly=yes",
        "-o", "StrictHostKeyChecking=accept-new",
        "-o", f"UserKnownHostsFile={tmp_path / 'known_hosts'}",
        "-o", "ConnectTimeout=15",
        "-o", "LogLevel=ERROR",
    ]


def ssh(server, key, tmp_path, user, *command, stdin=None):
    cmd = ["ssh", *ssh_opts(server, key, tmp_path), f"{user}@127.0.0.1", *command]
    return subprocess.run(cmd, input=stdin, capture_output=True, timeout=120)


def test_exec_scripts_exit_codes_and_home(client, server, ssh_key, tmp_path):
    client.add_ssh_key(open(f"{ssh_key}.pub").read())
    vm = vm_id_of(client)
    r = ssh(server, ssh_key, tmp_path, vm, "echo out; echo err >&2; exit 3")
    assert (r.returncode, r.stdout, r.stderr) == (3, b"out\n", b"err\n"), r
    # Deploy sends multi-line `bash -lc` scripts and reads $HOME this way.
    script = "bash -lc 'set -e\ncd /tmp\nx=$((20 + 22))\necho \"answer $x in $(pwd)\"'"
    r = ssh(server, ssh_key, tmp_path, vm, script)
    assert (r.returncode, r.stdout) == (0, b"answer 42 in /tmp\n"), r
    r = ssh(server, ssh_key, tmp_path, vm, 'printf %s "$HOME"')
    assert r.stdout == b"/root", r
    # The code ran in the VM: a file written over SSH is there for the API.
    ssh(server, ssh_key, tmp_path, vm, "echo from-ssh > /app/ssh.txt")
    assert client.execute("cat /app/ssh.txt", language="bash")["stdout"] == "from-ssh\n"


def test_vm_records_name_the_gateway(client):
    (vm,) = [v for v in client.vms.list() if v["session_id"] == client.session_id]
    assert vm["ssh_host"] == "127.0.0.1"


def test_host_key_is_stable_across_restarts():
    """A server of its own, restarted on the same data directory: the same host key."""
    from conftest import Server

    def scan(srv):
        out = subprocess.run(
            ["ssh-keyscan", "-p", str(srv.ssh_port), "-t", "ed25519", "127.0.0.1"], capture_output=True, timeout=30
        ).stdout
        assert b"ssh-ed25519" in out, out
        return out.split(b" ", 1)[1]

    srv = Server()
    try:
        srv.start()
        first = scan(srv)
        key_file = os.path.join(srv.data_dir, "ssh_host_ed25519_key")
        assert os.stat(key_file).st_mode & 0o777 == 0o600
        srv.kill()
        srv.start()
        assert scan(srv) == first
    finally:
        srv.stop()


def test_refusals(client, server, ssh_key, tmp_path):
    vm = vm_id_of(client)
    # A key that is not registered.
    r = ssh(server, ssh_key, tmp_path, vm, "true")
    assert r.returncode == 255 and b"Permission denied" in r.stderr, r
    client.add_ssh_key(open(f"{ssh_key}.pub").read())
    # An unknown VM, and another user's VM.
    r = ssh(server, ssh_key, tmp_path, "vm_000000000000000000000000", "true")
    assert r.returncode == 255 and b"Permission denied" in r.stderr, r
    from instavm import InstaVM

    other = InstaVM(api_key=server.create_user(), base_url=server.base_url)
    try:
        r = ssh(server, ssh_key, tmp_path, vm_id_of(other), "true")
        assert r.returncode == 255 and b"Permission denied" in r.stderr, r
    finally:
        other.kill()
    # Password logins are never offered.
    cmd = ["ssh", *ssh_opts(server, ssh_key, tmp_path), "-o", "PubkeyAuthentication=no", f"{vm}@127.0.0.1", "true"]
    r = subprocess.run(cmd, capture_output=True, timeout=60)
    assert r.returncode == 255, r
    assert b"refused" in open(server.log_path, "rb").read()


def test_legacy_scp_both_ways_and_recursive(client, server, ssh_key, tmp_path):
    client.add_ssh_key(open(f"{ssh_key}.pub").read())
    vm = vm_id_of(client)
    data = os.urandom(3 << 20)
    (tmp_path / "blob.bin").write_bytes(data)
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.txt").write_text("alpha\n")
    (tree / "sub" / "b.txt").write_text("beta\n")
    (tree / "empty").mkdir()
    opts = [o if o != "-p" else "-P" for o in ssh_opts(server, ssh_key, tmp_path)]
    target = f"{vm}@127.0.0.1"

    def scp(*args):
        return subprocess.run(["scp", "-O", *opts, *args], capture_output=True, timeout=120)

    r = scp(str(tmp_path / "blob.bin"), f"{target}:/tmp/blob.bin")
    assert r.returncode == 0, r
    out = client.execute("sha256sum /tmp/blob.bin", language="bash")["stdout"]
    import hashlib

    assert out.split()[0] == hashlib.sha256(data).hexdigest()
    r = scp("-r", str(tree), f"{target}:/tmp/")
    assert r.returncode == 0, r
    out = client.execute("cat /tmp/tree/a.txt /tmp/tree/sub/b.txt; test -d /tmp/tree/empty && echo dir", language="bash")
    assert out["stdout"] == "alpha\nbeta\ndir\n", out
    # Relative paths are relative to the VM user's home.
    r = scp(str(tree / "a.txt"), f"{target}:")
    assert r.returncode == 0, r
    assert client.execute("cat /root/a.txt", language="bash")["stdout"] == "alpha\n"

    back = tmp_path / "back"
    r = scp(f"{target}:/tmp/blob.bin", str(back))
    assert r.returncode == 0 and back.read_bytes() == data, r
    r = scp("-r", f"{target}:/tmp/tree", str(tmp_path / "tree-back"))
    assert r.returncode == 0, r
    assert (tmp_path / "tree-back" / "sub" / "b.txt").read_text() == "beta\n"
    r = scp(f"{target}:/tmp/nope", str(tmp_path / "x"))
    assert r.returncode != 0 and b"No such file" in r.stderr, r


def test_interactive_shell_with_a_terminal(client, server, ssh_key, tmp_path):
    client.add_ssh_key(open(f"{ssh_key}.pub").read())
    vm = vm_id_of(client)
    # `ssh -tt` asks for a terminal even though our stdin is a pipe.
    cmd = ["ssh", "-tt", *ssh_opts(server, ssh_key, tmp_path), f"{vm}@127.0.0.1"]
    r = subprocess.run(cmd, input=b"tty; echo MARK-$((6*7)); exit 5\n", capture_output=True, timeout=60)
    assert r.returncode == 5, r
    assert b"/dev/pts/" in r.stdout and b"MARK-42" in r.stdout, r
    # A command with a terminal.
    cmd = ["ssh", "-tt", *ssh_opts(server, ssh_key, tmp_path), f"{vm}@127.0.0.1", "stty size; exit 4"]
    r = subprocess.run(cmd, capture_output=True, timeout=60)
    assert r.returncode == 4 and b"24 80" in r.stdout, r
    # The terminal goes away with the connection.
    assert client.pty.list_for_vm(vm) == []


def test_connect_with_both_clis_through_ssh_config(client, server, ssh_key, tmp_path, cli_env):
    """`instavm connect` runs plain `ssh vm@host`; the port and key come from an ssh config file,
    as docs/pty.md shows for a gateway on a non-standard port (ssh reads ~/.ssh/config from the
    passwd entry's home, not $HOME, so the test passes its file with `-F`)."""
    from conftest import BIN

    client.add_ssh_key(open(f"{ssh_key}.pub").read())
    vm = vm_id_of(client)
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "config").write_text(
        "Host 127.0.0.1\n"
        f"  Port {server.ssh_port}\n"
        f"  IdentityFile {ssh_key}\n"
        f"  UserKnownHostsFile {tmp_path / 'known_hosts'}\n"
        "  IdentitiesOnly yes\n"
        "  BatchMode yes\n"
        "  StrictHostKeyChecking accept-new\n"
        "  LogLevel ERROR\n"
    )
    env = dict(cli_env, HOME=str(home), INSTAVM_API_KEY=client.api_key, INSTAVM_SSH_HOST="127.0.0.1")
    for cli in (OFFICIAL_CLI, BIN):
        # Flags go before the VM id: everything after it belongs to ssh.
        shown = subprocess.run([cli, "connect", "--json", vm], env=env, capture_output=True, timeout=60)
        assert shown.returncode == 0, shown
        assert json.loads(shown.stdout) == {"command": [shutil.which("ssh"), f"{vm}@127.0.0.1"]}, shown
        config = str(home / ".ssh" / "config")
        r = subprocess.run(
            [cli, "connect", vm, "--", "-F", config, "echo connected-$((1+1)); exit 7"], env=env, capture_output=True, timeout=60
        )
        assert r.returncode == 7 and r.stdout == b"connected-2\n", (cli, r)


def test_sftp_and_modern_scp(client, server, ssh_key, tmp_path):
    """Plain `scp` (SFTP underneath since OpenSSH 9) and `sftp` batch mode."""
    import hashlib

    client.add_ssh_key(open(f"{ssh_key}.pub").read())
    vm = vm_id_of(client)
    opts = [o if o != "-p" else "-P" for o in ssh_opts(server, ssh_key, tmp_path)]
    target = f"{vm}@127.0.0.1"
    data = os.urandom((5 << 20) + 123)
    (tmp_path / "up.bin").write_bytes(data)
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "c.txt").write_text("gamma\n")

    r = subprocess.run(["scp", *opts, str(tmp_path / "up.bin"), f"{target}:/tmp/up.bin"], capture_output=True, timeout=120)
    assert r.returncode == 0, r
    out = client.execute("sha256sum /tmp/up.bin; stat -c %a /tmp/up.bin", language="bash")["stdout"].split()
    assert out[0] == hashlib.sha256(data).hexdigest()
    r = subprocess.run(["scp", *opts, "-r", str(tree), f"{target}:/tmp/"], capture_output=True, timeout=120)
    assert r.returncode == 0, r
    assert client.execute("cat /tmp/tree/sub/c.txt", language="bash")["stdout"] == "gamma\n"
    r = subprocess.run(["scp", *opts, f"{target}:/tmp/up.bin", str(tmp_path / "down.bin")], capture_output=True, timeout=120)
    assert r.returncode == 0 and (tmp_path / "down.bin").read_bytes() == data, r

    batch = tmp_path / "batch"
    batch.write_text(
        "cd /tmp\n"
        "mkdir made\n"
        f"put {tmp_path / 'up.bin'} made/again.bin\n"
        "rename made/again.bin made/renamed.bin\n"
        "chmod 600 made/renamed.bin\n"
        "ls -l made\n"
        f"get made/renamed.bin {tmp_path / 'renamed.bin'}\n"
        "rm made/renamed.bin\n"
        "rmdir made\n"
        "pwd\n"
    )
    r = subprocess.run(["sftp", *opts, "-b", str(batch), target], capture_output=True, timeout=120)
    assert r.returncode == 0, r
    assert b"renamed.bin" in r.stdout and b"-rw-------" in r.stdout, r
    assert (tmp_path / "renamed.bin").read_bytes() == data
    assert client.execute("test -e /tmp/made || echo gone", language="bash")["stdout"] == "gone\n"
    # Errors come back as errors.
    r = subprocess.run(["scp", *opts, f"{target}:/tmp/nope", str(tmp_path / "x")], capture_output=True, timeout=120)
    assert r.returncode != 0 and b"No such file" in r.stderr, r
