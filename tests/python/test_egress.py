"""Egress policy (spec §2) through the official SDK and CLI, against "the internet" built out of a
network namespace: an upstream DNS server and HTTP/HTTPS sites on 198.19.N.x (RFC 2544, routed
through the host's NAT like the real internet), a private address 10.99.N.1 routed the same way,
and the server started with --dns-upstream pointing at the test DNS server.

Needs root (network namespaces) and openssl on the host (scripts/install-deps.sh).
"""

import http.server
import json
import os
import random
import shutil
import subprocess
import tempfile
import threading
import time

import pytest
from instavm import InstaVM

from conftest import OFFICIAL_CLI, Server, run

N = random.randint(20, 230)
NET = f"198.19.{N}"
NS = f"ivmeg{N}"
HOST_IF, PEER_IF = f"ive{N}h", f"ive{N}p"
DNS_IP = f"{NET}.1"
HOST_SIDE = f"{NET}.2"  # the host's own address on the "internet" link
SITE_A, SITE_B, SITE_C = f"{NET}.10", f"{NET}.11", f"{NET}.12"
PRIV = f"10.99.{N}.1"

RECORDS = {
    "allowed.test": {"a": SITE_A},
    "blocked.test": {"a": SITE_B},
    "cidr.test": {"a": SITE_C},
    "wild.test": {"a": SITE_A},
    "sub.wild.test": {"a": SITE_A},
    "pypi.org": {"a": SITE_A},
    "files.pythonhosted.org": {"a": SITE_A},
    "registry.npmjs.org": {"a": SITE_A},
    "private.test": {"a": PRIV},
    "host.test": {"a": HOST_SIDE},
    "ttl0.test": {"a": SITE_A, "ttl": 0},
    "cname.test": {"cname": "target.elsewhere", "a": SITE_A},
}

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
        rec = REC.get(name)
        answers = []
        if rec and qtype == 1:
            ttl = rec.get("ttl", 60)
            a = struct.pack(">HHIH", 1, 1, ttl, 4) + socket.inet_aton(rec["a"])
            if "cname" in rec:
                target = b"".join(bytes([len(l)]) + l.encode() for l in rec["cname"].split(".")) + b"\0"
                answers.append(b"\xc0\x0c" + struct.pack(">HHIH", 5, 1, ttl, len(target)) + target)
                answers.append(target + a)
            else:
                answers.append(b"\xc0\x0c" + a)
        flags = 0x8180 if rec else 0x8183
        s.sendto(q[:2] + struct.pack(">HHHHH", flags, 1, len(answers), 0, 0) + q[12:qend] + b"".join(answers), peer)
    except Exception as e:
        print("dns error", e, file=sys.stderr)
"""

SITES = r"""
import http.server, ssl, sys, threading, time
cert, key = sys.argv[1], sys.argv[2]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(s):
        ip, port = s.server.server_address[:2]
        body = f"site {ip}:{port} host={s.headers.get('Host')}\n".encode()
        s.send_response(200); s.send_header("Content-Length", str(len(body))); s.end_headers(); s.wfile.write(body)
    def log_message(s, *a): pass
for spec in sys.argv[3:]:
    ip, port, tls = spec.split(":")
    srv = http.server.ThreadingHTTPServer((ip, int(port)), H)
    if tls == "tls":
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain(cert, key)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
print("ready", flush=True)
while True:
    time.sleep(3600)
"""


def sh(cmd):
    subprocess.run(cmd, shell=True, check=True)


class HostSide(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"the host itself\n")

    def log_message(self, *a):
        pass


@pytest.fixture(scope="module")
def internet():
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")
    tmp = tempfile.mkdtemp(prefix="instavm-egress-")
    procs = []
    host_srv = None
    try:
        sh(f"ip netns add {NS}")
        sh(f"ip link add {HOST_IF} type veth peer name {PEER_IF} netns {NS}")
        sh(f"ip addr add {HOST_SIDE}/24 dev {HOST_IF} && ip link set {HOST_IF} up")
        for ip in (DNS_IP, SITE_A, SITE_B, SITE_C):
            sh(f"ip -n {NS} addr add {ip}/24 dev {PEER_IF}")
        sh(f"ip -n {NS} addr add {PRIV}/32 dev {PEER_IF}")
        sh(f"ip -n {NS} link set {PEER_IF} up && ip -n {NS} link set lo up")
        sh(f"ip -n {NS} route add default via {HOST_SIDE}")
        sh(f"ip route add {PRIV}/32 via {DNS_IP} dev {HOST_IF}")
        cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
        sh(f"openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=test -keyout {key} -out {cert} -days 2 2>/dev/null")
        procs.append(subprocess.Popen(["ip", "netns", "exec", NS, "python3", "-c", DNS_SERVER, json.dumps(RECORDS), DNS_IP]))
        sites = [f"{SITE_A}:80:plain", f"{SITE_A}:443:tls", f"{SITE_B}:80:plain", f"{SITE_B}:443:tls",
                 f"{SITE_B}:8080:plain", f"{SITE_C}:8080:plain", f"{PRIV}:80:plain"]
        p = subprocess.Popen(["ip", "netns", "exec", NS, "python3", "-c", SITES, cert, key, *sites], stdout=subprocess.PIPE, text=True)
        procs.append(p)
        assert p.stdout.readline().strip() == "ready"
        host_srv = http.server.ThreadingHTTPServer((HOST_SIDE, 80), HostSide)
        threading.Thread(target=host_srv.serve_forever, daemon=True).start()
        # The host reaches the sites (so a failure inside a VM is the policy's doing).
        out = subprocess.run(["curl", "-sk", "--max-time", "5", f"https://{SITE_A}/"], capture_output=True, text=True)
        assert f"site {SITE_A}:443" in out.stdout, out
        yield
    finally:
        if host_srv:
            host_srv.shutdown()
            host_srv.server_close()
        for p in procs:
            p.kill()
            p.wait()
        subprocess.run(f"ip route del {PRIV}/32", shell=True, capture_output=True)
        subprocess.run(["ip", "netns", "del", NS], capture_output=True)
        subprocess.run(["ip", "link", "del", HOST_IF], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def eserver(internet):
    srv = Server(extra_args=["--dns-upstream", f"{DNS_IP}:53"])
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def ekey(eserver):
    return eserver.create_user()


@pytest.fixture
def eclient(eserver, ekey):
    c = InstaVM(api_key=ekey, base_url=eserver.base_url)
    yield c
    try:
        c.kill()
    except Exception:
        pass


def on_session(client, session_id):
    c = InstaVM(api_key=client.api_key, base_url=client.base_url, auto_start_session=False)
    c.session_id = session_id
    return c


def bash(c, cmd):
    return c.execute(cmd, language="bash")["stdout"]


def fetch(c, url, *extra):
    """The page, or FAILED:<curl exit code>."""
    args = " ".join(extra)
    return bash(c, f"curl -sk --max-time 4 {args} {url} || echo FAILED:$?")


def resolves(c, name):
    return bash(c, f"getent ahostsv4 {name} | head -1 | cut -d' ' -f1 || true").strip()


# A raw DNS client inside the VM: rcode and answer count, or "timeout".
DNS_CLIENT = r"""
import socket, struct, sys
server, name, proto = sys.argv[1], sys.argv[2], sys.argv[3]
q = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\x00\x00\x01\x00\x01"
try:
    if proto == "udp":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3)
        s.sendto(q, (server, 53)); a = s.recv(4096)
    else:
        s = socket.create_connection((server, 53), 3); s.settimeout(3)
        s.sendall(struct.pack(">H", len(q)) + q); n = struct.unpack(">H", s.recv(2))[0]; a = s.recv(n)
    print("rcode", a[3] & 15, "answers", struct.unpack(">H", a[6:8])[0])
except OSError as e:
    print("timeout", type(e).__name__)
"""


FLOOD = r"""
import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(5000):
    name = b"\x07flood%02d\x04test\x00" % (i % 100)
    s.sendto(struct.pack(">HHHHHH", i & 0xffff, 0x0100, 1, 0, 0, 0) + name + b"\x00\x01\x00\x01", (sys.argv[1], 53))
"""


def dns(c, server, name, proto="udp"):
    bash(c, f"cat > /tmp/dnsq.py <<'PY'\n{DNS_CLIENT}\nPY")
    return bash(c, f"python3 /tmp/dnsq.py {server} {name} {proto}").strip()


def resolver_of(c):
    return bash(c, "awk '/^nameserver/{print $2; exit}' /etc/resolv.conf").strip()


CLOSED = dict(allow_package_managers=False, allow_http=False, allow_https=False)


def test_default_policy_is_the_internet_but_never_private_ranges_or_the_host(eclient):
    c = eclient
    assert resolves(c, "allowed.test") == SITE_A
    assert resolves(c, "blocked.test") == SITE_B
    assert f"site {SITE_B}:443" in fetch(c, "https://blocked.test/")
    assert f"site {SITE_B}:8080" in fetch(c, f"http://{SITE_B}:8080/")
    # DNS straight to an outside server works on the open internet.
    assert dns(c, DNS_IP, "blocked.test").startswith("rcode 0 answers 1")
    # Private ranges and the host stay out of reach, by address and by name.
    assert "FAILED" in fetch(c, f"http://{PRIV}/")
    assert "FAILED" in fetch(c, f"http://{HOST_SIDE}/")
    assert "FAILED" in fetch(c, "http://host.test/")
    assert "FAILED" in fetch(c, "http://private.test/")
    policy = c.get_session_egress()
    assert policy["allow_http"] and policy["allow_https"] and policy["allow_public_repos"]
    assert policy["allow_package_managers"] and policy["mode"] == "open"


def test_allowlist_through_the_sdk_cannot_be_fooled(eclient):
    c = eclient
    c.set_session_egress(**CLOSED, allowed_domains=["allowed.test", "*.wild.test", "cname.test", "ttl0.test", "host.test", "private.test"])
    resolver = resolver_of(c)
    # Allowed names load, over HTTP and HTTPS (SNI checked), wildcards and CNAME chains included.
    assert f"site {SITE_A}:80 host=allowed.test" in fetch(c, "http://allowed.test/")
    assert f"site {SITE_A}:443" in fetch(c, "https://allowed.test/")
    assert f"site {SITE_A}:443" in fetch(c, "https://sub.wild.test/")
    assert f"site {SITE_A}:80" in fetch(c, "http://cname.test/")
    assert f"site {SITE_A}:80" in fetch(c, "http://ttl0.test/")
    # Others do not resolve: NXDOMAIN from the VM's resolver, over UDP and TCP.
    assert resolves(c, "blocked.test") == ""
    assert resolves(c, "wild.test") == ""
    assert dns(c, resolver, "blocked.test").startswith("rcode 3")
    assert dns(c, resolver, "blocked.test", "tcp").startswith("rcode 3")
    assert dns(c, resolver, "allowed.test", "tcp").startswith("rcode 0 answers 1")
    # DNS to any other server is blocked (UDP and TCP).
    assert dns(c, DNS_IP, "blocked.test").startswith("timeout")
    assert dns(c, DNS_IP, "blocked.test", "tcp").startswith("timeout")
    # Direct connections to an address nobody resolved: refused on 80/443 and other ports.
    assert "FAILED" in fetch(c, f"https://{SITE_B}/")  # no SNI at all (DoH to a bare IP)
    assert "site" not in fetch(c, f"http://{SITE_B}/")
    assert "FAILED" in fetch(c, f"http://{SITE_B}:8080/")
    # A pinned address with another name in SNI or Host is refused...
    assert "FAILED" in fetch(c, "https://blocked.test/", f"--resolve blocked.test:443:{SITE_A}")
    out = fetch(c, f"http://{SITE_A}/", "-H 'Host: blocked.test'")
    assert "site" not in out and "blocked by the VM's egress policy" in out
    # ...and so is an allowed name sent to an address not resolved for it.
    assert "site" not in fetch(c, f"http://{SITE_B}/", "-H 'Host: allowed.test'")
    assert "FAILED" in fetch(c, "https://allowed.test/", f"--resolve allowed.test:443:{SITE_B}")
    # Allowed names whose answers point at private ranges or the host stay blocked.
    assert "site" not in fetch(c, "http://private.test/")
    assert "site" not in fetch(c, f"http://{PRIV}/")
    assert "site" not in fetch(c, "http://host.test/") and "the host itself" not in fetch(c, "http://host.test/")
    # A flood of questions does not take the resolver down.
    bash(c, "cat > /tmp/flood.py <<'PY'\n" + FLOOD + "\nPY")
    bash(c, f"python3 /tmp/flood.py {resolver}")
    time.sleep(2.5)
    assert resolves(c, "allowed.test") == SITE_A
    policy = c.get_session_egress()
    assert policy["mode"] == "allowlist" and policy["allowed_domains"][0] == "allowed.test"
    assert policy["denied_attempts"] > 5, policy


def test_cidr_rules_on_a_vm(eclient, eserver, ekey):
    sdk = InstaVM(api_key=ekey, base_url=eserver.base_url, auto_start_session=False)
    vm = sdk.vms.create(wait=True)
    c = on_session(sdk, vm["session_id"])
    try:
        sdk.set_vm_egress(vm["vm_id"], **CLOSED, allowed_cidrs=[f"{SITE_C}/32"])
        assert f"site {SITE_C}:8080" in fetch(c, f"http://{SITE_C}:8080/")
        assert "FAILED" in fetch(c, f"http://{SITE_B}:8080/")
        assert resolves(c, "cidr.test") == ""
        got = sdk.get_vm_egress(vm["vm_id"])
        assert got["allowed_cidrs"] == [f"{SITE_C}/32"] and got["source"] == "vm"
    finally:
        sdk.vms.delete(vm["vm_id"])


def test_package_manager_preset_on_create(eserver, ekey):
    sdk = InstaVM(api_key=ekey, base_url=eserver.base_url, auto_start_session=False)
    policy = {"allow_public_repos": True, "allow_http": False, "allow_https": False, "allowed_domains": [], "allowed_cidrs": []}
    vm = sdk.vms.create(wait=True, egress_policy=policy)
    c = on_session(sdk, vm["session_id"])
    try:
        for name in ("pypi.org", "files.pythonhosted.org", "registry.npmjs.org"):
            assert resolves(c, name) == SITE_A, name
            assert f"site {SITE_A}:443" in fetch(c, f"https://{name}/"), name
        assert resolves(c, "allowed.test") == ""
        got = sdk.get_vm_egress(vm["vm_id"])
        assert got["allow_package_managers"] is True and got["allow_http"] is False
    finally:
        sdk.vms.delete(vm["vm_id"])


def test_official_cli_and_a_live_change(eclient, eserver, ekey, tmp_path):
    c = eclient
    env = dict(os.environ, HOME=str(tmp_path), INSTAVM_BASE_URL=eserver.base_url, INSTAVM_API_KEY=ekey, NO_COLOR="1")
    res = run([OFFICIAL_CLI, "egress", "set", "--session", c.session_id, "--no-allow-package-managers", "--deny-http", "--deny-https", "--domain", "allowed.test", "--json"], env)
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout)
    assert got["target_type"] == "session" and got["target_id"] == c.session_id
    assert got["allow_package_managers"] is False and got["allowed_domains"] == ["allowed.test"]
    assert resolves(c, "blocked.test") == ""
    assert "FAILED" in fetch(c, "https://blocked.test/", f"--resolve blocked.test:443:{SITE_B}")
    # Allow it: the very next connection follows.
    res = run([OFFICIAL_CLI, "egress", "set", "--session", c.session_id, "--no-allow-package-managers", "--deny-http", "--deny-https", "--domain", "allowed.test", "--domain", "blocked.test", "--json"], env)
    assert res.returncode == 0, res.stderr
    assert f"site {SITE_B}:443" in fetch(c, "https://blocked.test/")
    # And back: closed again at once (the pins of the wider policy are forgotten).
    res = run([OFFICIAL_CLI, "egress", "set", "--session", c.session_id, "--deny-http", "--deny-https", "--no-allow-package-managers", "--domain", "allowed.test"], env)
    assert res.returncode == 0, res.stderr
    assert "Domains: allowed.test" in res.stdout
    assert "FAILED" in fetch(c, f"http://{SITE_B}:8080/")
    assert "site" not in fetch(c, "https://blocked.test/", f"--resolve blocked.test:443:{SITE_B}")
    # `egress get --vm` shows the VM's policy in force: its session's.
    vm_id = c.get_session_egress()["vm_id"]
    res = run([OFFICIAL_CLI, "egress", "get", "--vm", vm_id, "--json"], env)
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout)
    assert got["target_type"] == "vm" and got["allowed_domains"] == ["allowed.test"] and got["allow_https"] is False
