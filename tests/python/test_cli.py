"""Our CLI and the official CLI, sharing ~/.instavm/config.json and one server."""

import json

from conftest import BIN, OFFICIAL_CLI, run


def one_json_line(proc):
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, proc.stdout
    return json.loads(lines[0])


def test_config_is_shared_with_the_official_cli(api_key, cli_env):
    stored = one_json_line(run([BIN, "auth", "set-key", "--json"], cli_env, stdin=api_key))
    assert stored["status"] == "stored"
    ours = one_json_line(run([BIN, "auth", "status", "--json"], cli_env))
    theirs = one_json_line(run([OFFICIAL_CLI, "auth", "status", "--json"], cli_env))
    assert ours == theirs


def test_official_cli_whoami_and_exec_against_our_server(api_key, cli_env):
    env = dict(cli_env, INSTAVM_API_KEY=api_key)
    me = one_json_line(run([OFFICIAL_CLI, "whoami", "--json"], env))
    assert me["email"].endswith("@example.com") and me["ssh_keys"] == []
    out = one_json_line(run([OFFICIAL_CLI, "exec", "--cmd", "print(6 * 7)", "--json"], env))
    assert out["stdout"] == "42\n"
    task = one_json_line(run([OFFICIAL_CLI, "exec", "--cmd", "echo bg", "--language", "bash", "--async", "--json"], env))
    result = one_json_line(run([OFFICIAL_CLI, "exec", "result", task["task_id"], "--json"], env))
    assert result["stdout"] == "bg\n"


def test_our_cli_exec_and_errors(api_key, cli_env):
    env = dict(cli_env, INSTAVM_API_KEY=api_key)
    out = one_json_line(run([BIN, "exec", "--cmd", "print(6 * 7)", "--json"], env))
    assert out["stdout"] == "42\n" and out["exit_code"] == 0
    bad = run([BIN, "whoami", "--api-key", "ivm_wrong-key-00000000000"], env)
    assert bad.returncode == 1
    assert bad.stderr.startswith("Error: Invalid API key or session expired")
    missing = run([BIN, "exec", "--cmd", "1", "--session", "00000000-0000-4000-8000-000000000000"], env)
    assert missing.returncode == 1
    assert missing.stderr.strip() == "Error: HTTP 404: session not found"
