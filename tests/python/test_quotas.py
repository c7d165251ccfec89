"""Operator quotas from `instavm server --config FILE` (docs/quotas.md): the file's limits are
the ones the server enforces, the official SDK sees them as 403s with a detail, and a file with
a typo stops the server at start with the key named."""

import os
import subprocess
import tempfile

import pytest
from instavm import InstaVM
from instavm.exceptions import ForbiddenError

from conftest import BIN, IMAGES_DIR, Server


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
