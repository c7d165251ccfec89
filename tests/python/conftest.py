"""Compatibility suite: the official InstaVM Python SDK and CLI (instavm==0.26.1) against our server.

Builds nothing. It runs the binary at $INSTAVM_BIN (default <repo>/target/release/instavm, with
instavm-agent next to it) as `instavm server` on 127.0.0.1:0, with a temporary data directory and
the shared images directory ($INSTAVM_IMAGES_DIR, default <repo>/target/instavm-images), creates
users through the admin API, and tears down with `instavm server purge`.

Run: .venv/bin/pytest tests/python   (as root: the server uses the namespace runtime)
"""

import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
BIN = os.environ.get("INSTAVM_BIN", str(REPO / "target" / "release" / "instavm"))
IMAGES_DIR = os.environ.get("INSTAVM_IMAGES_DIR", str(REPO / "target" / "instavm-images"))
# The official CLI installed next to this interpreter (scripts/python-venv.sh).
OFFICIAL_CLI = str(pathlib.Path(sys.executable).with_name("instavm"))
# The first start of a server may build the base image.
READY_TIMEOUT = 900
LISTEN_RE = re.compile(r"^instavm server listening on (http://\S+)$", re.M)
SSH_LISTEN_RE = re.compile(r"^instavm SSH gateway listening on \S+:(\d+)$", re.M)


class Server:
    """One `instavm server` process in its own process group."""

    def __init__(self, extra_args=()):
        self.extra_args = list(extra_args)
        self.tmp = tempfile.mkdtemp(prefix="instavm-pytest-")
        self.data_dir = os.path.join(self.tmp, "data")
        self.log_path = os.path.join(self.tmp, "server.log")
        self.admin_key = "pytest-admin-" + uuid.uuid4().hex
        self.proc = None
        self.base_url = None

    def start(self):
        if not os.access(BIN, os.X_OK):
            raise RuntimeError(f"{BIN} is missing: build it first (cargo build --release) or set INSTAVM_BIN")
        env = dict(os.environ, INSTAVM_ADMIN_API_KEY=self.admin_key, INSTAVM_LOG="info")
        for name in ("INSTAVM_LISTEN", "INSTAVM_SSH_LISTEN", "INSTAVM_DATA_DIR", "INSTAVM_RUNTIME"):
            env.pop(name, None)
        offset = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [BIN, "server", "--listen", "127.0.0.1:0", "--ssh-listen", "127.0.0.1:0", "--data-dir", self.data_dir, "--images-dir", IMAGES_DIR, *self.extra_args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=env,
                start_new_session=True,  # its own process group, killed as a whole at the end
            )
        self.base_url = self._wait_for_address(offset)
        self.ssh_port = self._wait_for_ssh_port(offset)
        self._wait_until_healthy()

    def _check_alive(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"the server exited with {self.proc.returncode}:\n{self.log()}")

    def _wait_for_address(self, offset):
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                match = LISTEN_RE.search(f.read().decode("utf-8", "replace"))
            if match:
                return match.group(1)
            self._check_alive()
            time.sleep(0.02)
        raise RuntimeError(f"the server did not report its address:\n{self.log()}")

    def _wait_for_ssh_port(self, offset):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                match = SSH_LISTEN_RE.search(f.read().decode("utf-8", "replace"))
            if match:
                return int(match.group(1))
            self._check_alive()
            time.sleep(0.02)
        raise RuntimeError(f"the server did not report its SSH gateway:\n{self.log()}")

    def _wait_until_healthy(self):
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.base_url + "/health", timeout=5) as res:
                    if res.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            self._check_alive()
            time.sleep(0.1)
        raise RuntimeError(f"/health did not answer 200 in time:\n{self.log()}")

    def log(self):
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def create_user(self, email=None):
        """A new user through the admin API; returns its API key."""
        email = email or f"user-{uuid.uuid4().hex[:12]}@example.com"
        req = urllib.request.Request(
            self.base_url + "/v1/admin/users",
            data=json.dumps({"email": email}).encode(),
            headers={"Content-Type": "application/json", "X-API-Key": self.admin_key},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=30) as res:
            return json.load(res)["api_key"]

    def delete_vms(self, api_key):
        """Delete every VM of the user with this key (deploys keep their VMs on purpose; the
        suite's shared server must not fill the host with them)."""
        headers = {"X-API-Key": api_key}
        req = urllib.request.Request(self.base_url + "/v1/vms", headers=headers)
        with urllib.request.urlopen(req, timeout=30) as res:
            vms = json.load(res)
        for vm in vms:
            req = urllib.request.Request(self.base_url + f"/v1/vms/{vm['vm_id']}", headers=headers, method="DELETE")
            try:
                urllib.request.urlopen(req, timeout=60).close()
            except urllib.error.HTTPError:
                pass

    def kill(self):
        """SIGKILL the server, keeping its data directory (a restart follows)."""
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
            self.proc = None

    def stop(self):
        self.kill()
        # Release the sandboxes and mounts of the data directory before deleting it.
        subprocess.run(
            [BIN, "server", "purge", "--data-dir", self.data_dir, "--images-dir", IMAGES_DIR],
            check=False,
            capture_output=True,
        )
        shutil.rmtree(self.tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def server():
    srv = Server()
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def api_key(server):
    return server.create_user()


@pytest.fixture
def base_url(server):
    return server.base_url


@pytest.fixture
def client(server, api_key):
    """An official SDK client with a fresh user and a started session (the SDK's default)."""
    from instavm import InstaVM

    c = InstaVM(api_key=api_key, base_url=server.base_url)
    yield c
    if c.session_id:
        try:
            c.kill()
        except Exception:
            pass


@pytest.fixture
def cli_env(server, tmp_path):
    """Environment for running a CLI (ours or the official one) with a private HOME."""
    env = dict(os.environ, HOME=str(tmp_path), INSTAVM_BASE_URL=server.base_url, NO_COLOR="1")
    env.pop("INSTAVM_API_KEY", None)
    return env


def run(cmd, env, stdin=None):
    return subprocess.run(cmd, env=env, input=stdin, capture_output=True, text=True, timeout=300)
