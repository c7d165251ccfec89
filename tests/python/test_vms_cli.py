"""The VM and snapshot commands (spec/cli.md §6.2, §6.3) of our CLI and of the official CLI,
with --json, against our server."""

import json

import pytest

from conftest import BIN, OFFICIAL_CLI, run


def one_json_line(proc):
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, proc.stdout
    return json.loads(lines[0])


@pytest.mark.parametrize("cli", [BIN, OFFICIAL_CLI], ids=["ours", "official"])
def test_vm_and_snapshot_commands(cli, api_key, cli_env):
    env = dict(cli_env, INSTAVM_API_KEY=api_key)
    vm = one_json_line(run([cli, "create", "--memory", "256", "--timeout", "600", "--json"], env))
    assert vm["status"] == "active" and vm["memory_mb"] == 256
    vm_id = vm["vm_id"]
    listed = one_json_line(run([cli, "ls", "--json"], env))
    assert [v["vm_id"] for v in listed["vms"]] == [vm_id]

    updated = one_json_line(run([cli, "vm", "update", vm_id, "--memory-mb", "512", "--auto-resume", "--json"], env))
    assert (updated["memory_mb"], updated["auto_resume"]) == (512, True)

    snap = one_json_line(run([cli, "snapshot", "create", vm_id, "--name", "cli-snap", "--json"], env))
    assert snap["status"] == "ready"
    snap_id = snap.get("id") or snap["snapshot_id"]
    got = one_json_line(run([cli, "snapshot", "get", snap_id, "--json"], env))
    assert got["name"] == "cli-snap"
    snaps = one_json_line(run([cli, "snapshot", "ls", "--json"], env))
    assert snap_id in [s["id"] for s in snaps["snapshots"]]

    clone = one_json_line(run([cli, "clone", vm_id, "--name", "c", "--json"], env))
    assert clone["status"] == "active" and clone["vm_id"] != vm_id

    suspended = one_json_line(run([cli, "vm", "suspend", vm_id, "--json"], env))
    assert suspended["status"] == "suspended"
    resumed = one_json_line(run([cli, "vm", "resume", vm_id, "--json"], env))
    assert resumed["status"] == "active" and resumed["vm_id"] != vm_id

    removed = one_json_line(run([cli, "rm", resumed["vm_id"], clone["vm_id"], "--json"], env))
    assert [r["vm_id"] for r in removed["results"]] == [resumed["vm_id"], clone["vm_id"]]
    assert one_json_line(run([cli, "ls", "--json"], env))["vms"] == []
    every = one_json_line(run([cli, "ls", "-a", "--json"], env))
    assert {v["status"] for v in every["vms"]} == {"terminated"}
    deleted = one_json_line(run([cli, "snapshot", "rm", snap_id, "--json"], env))
    assert deleted["snapshot_id"] == snap_id
