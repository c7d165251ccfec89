"""Terminals (spec §12) with the official SDK's PTY client and the official `instavm pty` CLI."""

import json
import os
import subprocess
import time

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from conftest import OFFICIAL_CLI


def read_until(ws, needle, timeout=15):
    """Binary frames until `needle` appears; returns (text, exit_code or None)."""
    seen = b""
    deadline = time.time() + timeout
    while needle.encode() not in seen:
        left = deadline - time.time()
        assert left > 0, f"no {needle!r} in {seen!r}"
        msg = ws.recv(timeout=left)
        if isinstance(msg, str):
            return seen.decode(errors="replace"), json.loads(msg)["exit_code"]
        seen += msg
    return seen.decode(errors="replace"), None


def wait_exit(ws, timeout=15):
    deadline = time.time() + timeout
    while True:
        msg = ws.recv(timeout=max(0.1, deadline - time.time()))
        if isinstance(msg, str):
            event = json.loads(msg)
            assert event["type"] == "exit"
            return event["exit_code"]


def vm_id_of(client):
    (vm,) = [v for v in client.vms.list() if v["session_id"] == client.session_id]
    return vm["vm_id"]


def test_session_scope_create_stream_exit_and_kill(client):
    sid = client.session_id
    pty = client.pty.create(sid, cols=100, rows=30)
    pty_id = pty["session_id"]
    assert pty["alive"] is True and pty["exit_code"] is None
    assert [p["session_id"] for p in client.pty.list(sid)] == [pty_id]
    with connect(client.pty.ws_url(sid, pty_id), open_timeout=15) as ws:
        ws.send(b"stty size; echo \"T=$TERM\"; echo MARK-$((6*7))\n")
        text, _ = read_until(ws, "MARK-42")
        assert "30 100" in text and "T=xterm-256color" in text
        ws.send(b"exit 4\n")
        assert wait_exit(ws) == 4
    info = client.pty.get(sid, pty_id)
    assert info["alive"] is False and info["exit_code"] == 4
    client.pty.kill(sid, pty_id)
    with pytest.raises(Exception, match="404|not found|terminal"):
        client.pty.get(sid, pty_id)


def test_vm_scope_client_id_resize_and_reattach(client):
    vm_id = vm_id_of(client)
    pty = client.pty.create_for_vm(vm_id, pty_id="pty-0123456789ab", command="/bin/bash")
    assert pty["session_id"] == "pty-0123456789ab" and pty["argv"] == ["/bin/bash", "-il"]
    url = client.pty.ws_url_for_vm(vm_id, "pty-0123456789ab")
    with connect(url) as ws:
        ws.send(b"V=kept; echo one-$((1))\n")
        read_until(ws, "one-1")
    # The shell outlives the WebSocket; a reconnect gets it back, state intact.
    with connect(url) as ws:
        ws.send(json.dumps({"type": "resize", "cols": 90, "rows": 20}))
        time.sleep(0.2)
        ws.send(b"stty size; echo still-$V\n")
        text, _ = read_until(ws, "still-kept")
        assert "20 90" in text
    client.pty.resize_for_vm(vm_id, "pty-0123456789ab", cols=120, rows=40)
    assert client.pty.get_for_vm(vm_id, "pty-0123456789ab")["cols"] == 120
    client.pty.kill_for_vm(vm_id, "pty-0123456789ab")
    assert client.pty.list_for_vm(vm_id) == []


def test_twenty_terminals_at_once(client):
    vm_id = vm_id_of(client)
    ids = [client.pty.create_for_vm(vm_id, login_command=f"echo hello-{i}; sleep 60")["session_id"] for i in range(20)]
    assert sorted(p["session_id"] for p in client.pty.list_for_vm(vm_id)) == sorted(ids)
    sockets = [connect(client.pty.ws_url_for_vm(vm_id, i)) for i in ids]
    try:
        for n, ws in enumerate(sockets):
            # Output written before the attach is replayed to it.
            read_until(ws, f"hello-{n}")
    finally:
        for ws in sockets:
            ws.close()
    for i in ids:
        client.pty.kill_for_vm(vm_id, i)


def test_bad_input_and_other_users(client, server):
    sid = client.session_id
    base = f"{server.base_url}/v1/sessions/{sid}/pty/sessions"
    import requests

    headers = {"X-API-Key": client.api_key}
    for body, status in [
        ({"cols": 0, "rows": 24}, 400),
        ({"cols": 80, "rows": 24, "shell": "/bin/sh", "command": "ls"}, 400),
        ({"id": "../etc"}, 400),
        ({"cols": "wide"}, 422),
        ({"shell": "/no/such/shell"}, 400),
    ]:
        r = requests.post(base, json=body, headers=headers, timeout=30)
        assert r.status_code == status, (body, r.status_code, r.text)
        assert r.json()["detail"]
    created = requests.post(base, json={"id": "dup"}, headers=headers, timeout=30)
    assert created.status_code == 200
    dup = requests.post(base, json={"id": "dup"}, headers=headers, timeout=30)
    assert dup.status_code == 409 and "dup" in dup.json()["detail"]

    other = {"X-API-Key": server.create_user()}
    assert requests.get(base, headers=other, timeout=30).status_code == 404
    assert requests.get(f"{base}/dup", headers=other, timeout=30).status_code == 404
    assert requests.get(f"{base}/nope", headers=headers, timeout=30).status_code == 404

    # WebSocket: a wrong key closes with 4401, an unknown terminal with 4404.
    ws_base = server.base_url.replace("http://", "ws://")
    for key, code in [("ivm_wrong", 4401), (client.api_key, 4404), (other["X-API-Key"], 4404)]:
        pty = "dup" if code != 4404 or key != client.api_key else "nope"
        with connect(f"{ws_base}/v1/sessions/{sid}/pty/{pty}/connect?api_key={key}") as ws:
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=10)
            assert closed.value.rcvd.code == code, (key, closed.value.rcvd)


def test_official_cli_pty_pipes_a_shell(client, cli_env):
    vm_id = vm_id_of(client)
    env = dict(cli_env, INSTAVM_API_KEY=client.api_key)
    # The CLI's pipe relay reads stdin in blocks of 4096 bytes (`sys.stdin.buffer.read(4096)`)
    # and stops at the end of stdin, so the input is one full block (a comment pads it) and
    # stdin stays open until the shell has exited; after the exit frame the CLI still waits
    # for its stdin thread, so stdin is closed then.
    proc = subprocess.Popen(
        [OFFICIAL_CLI, "pty", vm_id], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    typed = b"echo via-cli-$((2+3))\nexit 6 #"
    proc.stdin.write(typed + b"x" * (4095 - len(typed)) + b"\n")
    proc.stdin.flush()
    os.set_blocking(proc.stdout.fileno(), False)
    out, deadline = b"", time.time() + 30
    while b"logout" not in out and time.time() < deadline and proc.poll() is None:
        out += proc.stdout.read() or b""
        time.sleep(0.05)
    proc.stdin.close()
    code = proc.wait(timeout=30)
    out += proc.stdout.read() or b""
    assert code == 6, (out, proc.stderr.read())
    assert b"via-cli-5" in out
    # The CLI deletes its terminal at the end.
    assert client.pty.list_for_vm(vm_id) == []


def test_official_cli_pty_on_a_real_terminal(client, cli_env):
    """Under `script`, the CLI is on a TTY: raw mode and the interactive relay."""
    vm_id = vm_id_of(client)
    env = dict(cli_env, INSTAVM_API_KEY=client.api_key)
    cmd = f"{OFFICIAL_CLI} pty {vm_id}"
    proc = subprocess.Popen(
        ["script", "-qec", cmd, "/dev/null"],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    time.sleep(3)
    proc.stdin.write(b"stty size; echo tty-$((3*3))\n")
    proc.stdin.flush()
    time.sleep(2)
    proc.stdin.write(b"exit 9\n")
    proc.stdin.flush()
    out, err = proc.communicate(timeout=60)
    assert b"tty-9" in out, (out, err)
    assert proc.returncode == 9, (proc.returncode, out, err)


def test_our_cli_pty_pipes_until_the_program_exits(client, cli_env):
    from conftest import BIN

    vm_id = vm_id_of(client)
    env = dict(cli_env, INSTAVM_API_KEY=client.api_key)
    # The end of stdin sends ^D: the shell ends and its status is ours.
    proc = subprocess.run([BIN, "pty", vm_id], env=env, input=b"echo ours-$((1+1))\nfalse\n", capture_output=True, timeout=60)
    assert proc.returncode == 1, proc
    assert b"ours-2" in proc.stdout
    proc = subprocess.run([BIN, "pty", vm_id, "/bin/sh"], env=env, input=b"exit 5\n", capture_output=True, timeout=60)
    assert proc.returncode == 5, proc
    assert client.pty.list_for_vm(vm_id) == []
    bad = subprocess.run([BIN, "pty", "vm_nope"], env=env, capture_output=True, timeout=60)
    assert bad.returncode == 1 and b"VM not found" in bad.stderr, bad
