"""Audit events through the official SDK (`client.audit.*`) and the official CLI (`events tail`,
`events get`, `events catalog`) on the real server: every change is an event, newest first over
the API, oldest first in `events tail`, scoped to its owner."""

import json

from instavm import InstaVM

import pytest

from conftest import BIN, OFFICIAL_CLI, run


@pytest.mark.parametrize("cli", ["official", "ours"])
def test_changes_become_events_the_sdk_and_cli_read(server, api_key, cli_env, cli):
    exe = OFFICIAL_CLI if cli == "official" else BIN
    client = InstaVM(api_key=api_key, base_url=server.base_url, auto_start_session=False)
    vm = client.vms.create(wait=True)
    snap = client.vms.snapshot(vm["vm_id"], name="audit-snap", wait=True)
    client.vms.delete(vm["vm_id"])

    page = client.audit.events(vm_id=vm["vm_id"])
    kinds = [e["event_type"] for e in page["items"]]
    assert kinds[0] == "vm.terminated" and "vm.created" in kinds and "vm.active" in kinds, kinds
    assert all(e["vm_id"] == vm["vm_id"] for e in page["items"])
    snaps = client.audit.events(event_group="snapshot")["items"]
    assert {e["event_type"] for e in snaps} >= {"snapshot.created"} and snaps[0]["resource_id"] == (snap.get("id") or snap["snapshot_id"])
    one = client.audit.get_event(page["items"][0]["id"])
    assert one["id"] == page["items"][0]["id"] and one["actor_type"] == "user"
    assert "vm" in client.audit.catalog()["catalog"]

    env = dict(cli_env, INSTAVM_API_KEY=api_key)
    r = run([exe, "events", "tail", "--once", "--vm", vm["vm_id"], "--json"], env)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
    assert [e["event_type"] for e in lines] == list(reversed(kinds)), lines  # oldest first
    r = run([exe, "events", "get", one["id"], "--json"], env)
    assert r.returncode == 0 and json.loads(r.stdout)["id"] == one["id"], r.stderr
    r = run([exe, "events", "catalog", "--json"], env)
    assert r.returncode == 0 and "session" in json.loads(r.stdout)["catalog"], r.stderr
    r = run([exe, "events", "tail", "--once", "--since", "1h"], env)
    assert r.returncode == 0 and "vm.terminated" in r.stdout, (r.stdout, r.stderr)

    # Someone else sees none of it.
    other = InstaVM(api_key=server.create_user(), base_url=server.base_url, auto_start_session=False)
    assert other.audit.events(vm_id=vm["vm_id"])["items"] == []
