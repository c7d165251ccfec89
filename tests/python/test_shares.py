"""Shares through the official SDK and CLI (and ours) on the real server: apps inside VMs
(`python3 -m http.server` and a WebSocket echo) reached through public and private share URLs at
the root path, access links, revoke, app-url, a VM that is gone, auto_resume, bad input, and a
`kill -9` of the server (the share keeps its URL)."""

import hashlib
import json
import time
import urllib.error
import urllib.request

import pytest
import requests
from instavm import InstaVM

from conftest import BIN, OFFICIAL_CLI, Server, run

# A WebSocket echo server on the standard library only (the VM has no websockets package).
WS_ECHO = r'''
import base64, hashlib, socket, struct, threading
def handle(c):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = c.recv(4096)
        if not chunk:
            return
        data += chunk
    key = [l.split(b":", 1)[1].strip() for l in data.split(b"\r\n") if l.lower().startswith(b"sec-websocket-key")][0]
    accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
    c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
    f = c.makefile("rb")
    while True:
        h = f.read(2)
        if len(h) < 2:
            return
        op, n = h[0] & 15, h[1] & 127
        if n == 126:
            n = struct.unpack(">H", f.read(2))[0]
        elif n == 127:
            n = struct.unpack(">Q", f.read(8))[0]
        mask = f.read(4)
        p = bytearray(f.read(n))
        for i in range(n):
            p[i] ^= mask[i % 4]
        if op == 8:
            c.sendall(b"\x88\x00")
            return
        if op in (1, 2):
            size = bytes([n]) if n < 126 else (bytes([126]) + struct.pack(">H", n) if n < 65536 else bytes([127]) + struct.pack(">Q", n))
            c.sendall(bytes([0x80 | op]) + size + bytes(p))
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 8765))
s.listen()
while True:
    conn, _ = s.accept()
    threading.Thread(target=handle, args=(conn,), daemon=True).start()
'''


def sdk(server, key, session=True):
    return InstaVM(api_key=key, base_url=server.base_url, auto_start_session=session)


def start_in_vm(client, argv, port, cwd="/tmp"):
    """Start a long-running program in the VM (its own session, so it outlives the cell) and
    wait until it listens on `port`."""
    client.execute(
        f"import subprocess; subprocess.Popen({argv!r}, cwd={cwd!r}, start_new_session=True,"
        " stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)",
        language="python",
    )
    probe = (
        "import socket, time\n"
        "for _ in range(200):\n"
        "    try:\n"
        f"        socket.create_connection(('127.0.0.1', {port}), 1).close(); print('up'); break\n"
        "    except OSError:\n"
        "        time.sleep(0.05)\n"
    )
    assert client.execute(probe, language="python")["stdout"].strip() == "up"


def serve_site(client, port=8000):
    client.execute(
        "mkdir -p /tmp/site/sub && echo hello from the vm > /tmp/site/index.html"
        " && echo nested > /tmp/site/sub/page.txt"
        " && head -c 20971520 /dev/urandom > /tmp/site/big.bin && sha256sum /tmp/site/big.bin",
        language="bash",
    )
    start_in_vm(client, ["python3", "-m", "http.server", str(port)], port, cwd="/tmp/site")
    return client.execute("sha256sum /tmp/site/big.bin | cut -d' ' -f1", language="bash")["stdout"].strip()


JSON = {"Accept": "application/json"}


def get(url, headers=None):
    """(status, body) without raising on 4xx/5xx."""
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as res:
            return res.status, res.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@pytest.fixture
def c(server, api_key):
    client = sdk(server, api_key)
    yield client
    try:
        client.kill()
    except Exception:
        pass


def test_public_share_serves_the_app_at_the_root(c):
    digest = serve_site(c)
    share = c.shares.create(port=8000, is_public=True)
    assert share["share_id"] and share["port"] == 8000 and share["is_public"] is True
    url = share["url"]
    assert url.startswith("http://127.0.0.1:") and url.endswith("/")
    # Root path: the app sees `/`, `/sub/page.txt`, not a prefix.
    assert get(url) == (200, b"hello from the vm\n")
    assert get(url + "sub/page.txt") == (200, b"nested\n")
    # Streamed both ways: 20 MiB arrive whole.
    status, body = get(url + "big.bin")
    assert status == 200 and hashlib.sha256(body).hexdigest() == digest
    # The deploy check: urljoin(url, health path), plain GET.
    assert get(urllib.parse.urljoin(url, "index.html"))[0] == 200
    # Idempotent per (VM, port): the agents integration calls it again.
    again = c.shares.create(port=8000, is_public=True)
    assert (again["share_id"], again["url"]) == (share["share_id"], url)
    # The README's app URL is that share.
    app = c.get_session_app_url(port=8000)
    assert app["app_url"] == app["url"] == app["direct_url"] == url
    # A port nothing listens on: the proxy says so.
    other = c.shares.create(port=9999, is_public=True)
    status, body = get(other["url"])
    assert status == 502 and b"Nothing answers on port 9999" in body


def test_websocket_echo_through_a_share(c):
    from websockets.sync.client import connect

    c.execute(f"open('/tmp/ws.py', 'w').write({WS_ECHO!r})", language="python")
    start_in_vm(c, ["python3", "/tmp/ws.py"], 8765)
    share = c.shares.create(port=8765, is_public=True)
    ws_url = "ws://" + share["url"][len("http://"):] + "chat"
    with connect(ws_url) as ws:
        for i in range(5):
            ws.send(f"hello {i}")
            assert ws.recv(timeout=10) == f"hello {i}"
        big = b"x" * 200_000
        ws.send(big)
        assert ws.recv(timeout=10) == big


def test_private_share_needs_the_owner_key_or_the_access_link(server, c, api_key):
    serve_site(c)
    share = c.shares.create(port=8000, is_public=False)
    url, link = share["url"], share["access_url"]
    assert share["is_public"] is False and link.startswith(url + "?instavm_share_token=")
    status, body = get(url, JSON)
    assert status == 401 and b"This share is private" in body
    # A first visit without credentials (a browser, or the official CLI's deploy check) lands on
    # the sign-in page, whose form hands the token to the access link.
    status, body = get(url)
    assert status == 200 and b"This share is private" in body and b'name="instavm_share_token"' in body
    assert get(url, {"X-API-Key": server.create_user()})[0] == 401
    assert get(url, {"X-API-Key": api_key}) == (200, b"hello from the vm\n")
    # The link sets a cookie and redirects to the plain URL; the cookie opens other paths.
    browser = requests.Session()
    r = browser.get(link, timeout=30)
    assert r.status_code == 200 and r.text == "hello from the vm\n"
    assert r.url == url and r.history[0].status_code == 303
    assert browser.get(url + "sub/page.txt", timeout=30).text == "nested\n"
    # A wrong token is refused.
    assert get(url + "?instavm_share_token=nope")[0] == 401

    c.shares.update(share["share_id"], is_public=True)
    assert get(url)[0] == 200
    c.shares.update(share["share_id"], is_public=False)
    assert get(url, JSON)[0] == 401
    c.shares.update(share["share_id"], revoke=True)
    status, body = get(url, {"X-API-Key": api_key})
    assert status == 404 and b"revoked" in body
    # A new share for the port is a new URL.
    fresh = c.shares.create(port=8000, is_public=True)
    assert fresh["share_id"] != share["share_id"] and get(fresh["url"])[0] == 200


def test_a_share_of_a_vm_that_is_gone_answers_502(server, api_key):
    client = sdk(server, api_key, session=False)
    vm = client.vms.create(wait=True)
    share = client.shares.create(port=80, vm_id=vm["vm_id"], is_public=True)
    client.vms.delete(vm["vm_id"])
    status, body = get(share["url"])
    assert status == 502 and b"The VM behind this share is gone" in body


def test_auto_resume_on_a_share_request(server, api_key):
    client = sdk(server, api_key, session=False)
    vm = client.vms.create(wait=True, auto_resume=True)
    share = client.shares.create(port=8000, vm_id=vm["vm_id"], is_public=True)
    client.vms.suspend(vm["vm_id"])
    assert client.vms.get(vm["vm_id"])["status"] == "suspended"
    # The request resumes the VM; its processes are not kept on this runtime, so nothing
    # listens yet: the proxy answers that, from the new VM.
    status, body = get(share["url"])
    assert status == 502 and b"Nothing answers on port 8000" in body, body
    running = client.vms.list()
    assert len(running) == 1 and running[0]["session_id"] == vm["session_id"]
    new_vm = running[0]["vm_id"]
    assert new_vm != vm["vm_id"]
    # The share follows the session's VM.
    r = requests.get(f"{server.base_url}/v1/shares/{share['share_id']}", headers={"X-API-Key": api_key}, timeout=30)
    assert r.json()["vm_id"] == new_vm
    again = client.shares.create(port=8000, vm_id=new_vm, is_public=True)
    assert again["share_id"] == share["share_id"]
    client.vms.delete(new_vm)


def test_bad_input_gets_clear_errors(server, c, api_key):
    other = sdk(server, server.create_user(), session=False)
    for port in (0, 70000, -5):
        r = requests.post(f"{server.base_url}/v1/shares", json={"port": port, "session_id": c.session_id}, headers={"X-API-Key": api_key}, timeout=30)
        assert r.status_code == 422 and "between 1 and 65535" in r.json()["detail"]
    vm_id = c.get_session_status()["vm_id"]
    r = requests.post(f"{server.base_url}/v1/shares", json={"port": 80, "vm_id": vm_id, "is_public": True}, headers={"X-API-Key": other.api_key}, timeout=30)
    assert r.status_code == 404
    r = requests.patch(f"{server.base_url}/v1/shares/shr-0123456789abcdef0123", json={"revoke": True}, headers={"X-API-Key": api_key}, timeout=30)
    assert r.status_code == 404 and r.json()["detail"] == "share not found"
    with pytest.raises(ValueError):
        c.shares.update("shr-x")  # the SDK refuses an empty update itself


@pytest.mark.parametrize("cli", ["official", "ours"])
def test_share_commands_of_both_clis(server, api_key, cli_env, cli):
    exe = [OFFICIAL_CLI] if cli == "official" else [BIN]
    client = sdk(server, api_key)
    serve_site(client)
    vm_id = client.get_session_status()["vm_id"]
    env = dict(cli_env, INSTAVM_API_KEY=api_key)

    r = run(exe + ["share", "create", vm_id, "8000", "--public", "--json"], env)
    assert r.returncode == 0, r.stderr
    share = json.loads(r.stdout)
    assert share["is_public"] is True and get(share["url"])[0] == 200
    r = run(exe + ["share", "create", vm_id, "8000", "--public"], env)
    assert f"Share: {share['share_id']}" in r.stdout and f"URL: {share['url']}" in r.stdout
    assert "Visibility: public" in r.stdout

    r = run(exe + ["share", "set-private", share["share_id"], "--json"], env)
    assert r.returncode == 0, r.stderr
    payload = json.loads(r.stdout)
    assert payload["share_id"] == share["share_id"] and payload["is_public"] is False
    assert get(share["url"], JSON)[0] == 401
    r = run(exe + ["share", "set-public", share["share_id"]], env)
    assert f"Updated share {share['share_id']} to public" in r.stdout
    assert get(share["url"])[0] == 200
    r = run(exe + ["share", "revoke", share["share_id"]], env)
    assert r.returncode == 0 and f"Revoked share {share['share_id']}" in r.stdout
    assert get(share["url"])[0] == 404
    r = run(exe + ["share", "create", vm_id, "70000"], env)
    assert r.returncode != 0 and "between 1 and 65535" in (r.stdout + r.stderr)
    client.kill()


def test_a_share_keeps_its_url_across_a_server_kill_9():
    srv = Server()
    try:
        srv.start()
        key = srv.create_user()
        client = sdk(srv, key)
        serve_site(client)
        share = client.shares.create(port=8000, is_public=False)
        srv.kill()
        srv.start()
        # The sandbox (and the app in it) survived; the proxy serves the same port again.
        assert get(share["url"], {"X-API-Key": key}) == (200, b"hello from the vm\n")
        assert get(share["url"], JSON)[0] == 401
        client = sdk(srv, key, session=False)
        client.session_id = share["session_id"]
        assert client.shares.create(port=8000, is_public=True)["url"] == share["url"]
    finally:
        srv.stop()
