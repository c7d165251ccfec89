"""Secrets vaults (spec §4, issue #13) through the official SDK and CLI: the 16 routes,
`vault_ids` on VM create and update, the CLI's `vault` commands, and the promise that no
value ever comes back (answers, database file, server log).
"""

import json
import os
import pathlib
import sqlite3

import pytest
import requests
from instavm import InstaVM

from conftest import OFFICIAL_CLI, run

SECRET = "sk-test-VALUE-never-visible-0123456789"


def sdk(server, api_key):
    return InstaVM(api_key=api_key, base_url=server.base_url, auto_start_session=False)


def test_the_sixteen_routes_through_the_official_sdk(server, api_key):
    c = sdk(server, api_key)
    assert c.list_vaults() == []
    v = c.create_vault("demo-vault", description="for tests")
    vid = v["id"]
    assert v["name"] == "demo-vault"
    got = c.get_vault(vid)
    assert got["id"] == vid and got["description"] == "for tests" and got["created_at"]
    assert c.update_vault(vid, name="renamed")["id"] == vid
    assert c.update_vault(vid)["name"] == "renamed"  # `{}` is fine
    assert [x["id"] for x in c.list_vaults()] == [vid]

    cred = c.add_vault_credential(vid, name="OPENAI_API_KEY", value=SECRET, description="key")
    assert cred["id"] and "value" not in cred
    creds = c.list_vault_credentials(vid)
    assert [(x["name"], x["credential_type"], x["enabled"]) for x in creds] == [
        ("OPENAI_API_KEY", "api_key", True)
    ]
    # Names are unique per vault.
    with pytest.raises(requests.HTTPError) as e:
        c.add_vault_credential(vid, name="OPENAI_API_KEY", value="other")
    assert e.value.response.status_code == 409
    rotated = c.rotate_vault_credential(vid, cred["id"], value=SECRET + "-2")
    assert rotated["id"] == cred["id"] and rotated["name"] == "OPENAI_API_KEY"

    svc = c.add_vault_service(vid, host="API.Example.com", auth_config={"type": "bearer", "token": "OPENAI_API_KEY"})
    for cfg in (
        {"type": "api-key", "header": "x-api-key", "key": "K", "prefix": "Token "},
        {"type": "header", "header": "X-Key", "key": "K"},
        {"type": "url-path", "token": "TG"},
        {"type": "basic", "username": "U", "password": "P"},
        {"type": "passthrough"},
    ):
        c.add_vault_service(vid, host=f"{cfg['type']}.example.com", auth_config=cfg, enabled=cfg["type"] != "passthrough")
    services = c.list_vault_services(vid)
    assert services[0]["host"] == "api.example.com" and services[0]["enabled"] is True
    assert services[0]["auth_config"] == {"type": "bearer", "token": "OPENAI_API_KEY"}
    assert [s["enabled"] for s in services if s["host"] == "passthrough.example.com"] == [False]
    with pytest.raises(requests.HTTPError) as e:
        c.add_vault_service(vid, host="x.example.com", auth_config={"type": "magic"})
    assert e.value.response.status_code == 422 and "type" in e.value.response.json()["detail"]
    with pytest.raises(requests.HTTPError) as e:
        c.add_vault_service(vid, host="https://x.example.com/", auth_config={"type": "passthrough"})
    assert e.value.response.status_code == 422

    catalog = c.get_vault_catalog()
    ids = {t["id"] for t in catalog}
    assert len(catalog) == 25 and {"openai", "anthropic", "stripe", "github", "telegram"} <= ids
    openai = next(t for t in catalog if t["id"] == "openai")
    assert openai["host"] == "api.openai.com" and openai["credential_key"] == "OPENAI_API_KEY"
    r = c.add_vault_services_from_templates(vid, ["openai", "anthropic"])
    assert r["created"] == 2
    r = c.add_vault_services_from_templates(vid, ["openai"])
    assert r["created"] == 0 and r["skipped"] == ["openai"]
    with pytest.raises(requests.HTTPError) as e:
        c.add_vault_services_from_templates(vid, ["nope"])
    assert e.value.response.status_code == 422
    hosts = {s["host"]: s for s in c.list_vault_services(vid)}
    assert hosts["api.anthropic.com"]["auth_config"] == {"type": "api-key", "header": "x-api-key", "key": "ANTHROPIC_API_KEY"}

    d = c.discover_vault(vid)
    assert d["vault_id"] == vid and "api.openai.com" in d["hosts"]
    assert [x["name"] for x in d["credentials"]] == ["OPENAI_API_KEY"]
    assert SECRET not in json.dumps(d)

    assert c.get_vault_request_logs(vid, limit=5) == []

    assert c.delete_vault_service(vid, services[0]["id"]) is True
    assert c.delete_vault_credential(vid, cred["id"]) is True
    with pytest.raises(requests.HTTPError) as e:
        c.delete_vault_credential(vid, cred["id"])
    assert e.value.response.status_code == 404
    assert c.delete_vault(vid) is True
    with pytest.raises(requests.HTTPError) as e:
        c.get_vault(vid)
    assert e.value.response.status_code == 404


def test_vaults_are_private_to_their_owner(server, api_key):
    a = sdk(server, api_key)
    b = sdk(server, server.create_user())
    vid = a.create_vault("mine")["id"]
    assert b.list_vaults() == []
    for call in (lambda: b.get_vault(vid), lambda: b.list_vault_credentials(vid), lambda: b.delete_vault(vid)):
        with pytest.raises(requests.HTTPError) as e:
            call()
        assert e.value.response.status_code == 404
    # Another user's vault cannot be attached to a VM.
    r = requests.post(f"{server.base_url}/v1/vms?wait=false", json={"vault_ids": [vid]}, headers={"X-API-Key": b.api_key})
    assert r.status_code == 404 and "vault" in r.json()["detail"]


def test_bad_input_is_4xx_with_detail(server, api_key):
    h = {"X-API-Key": api_key}
    u = server.base_url
    assert requests.post(f"{u}/v1/vaults", json={}, headers=h).status_code == 422
    vid = requests.post(f"{u}/v1/vaults", json={"name": "x"}, headers=h).json()["id"]
    for body in ({"name": "A"}, {"name": "A", "value": ""}, {"value": "v"}, {"name": "A", "value": "x" * 20000}):
        r = requests.post(f"{u}/v1/vaults/{vid}/credentials", json=body, headers=h)
        assert r.status_code == 422 and r.json()["detail"], body
    r = requests.post(f"{u}/v1/vaults/{vid}/credentials/nope/rotate", json={"value": "v"}, headers=h)
    assert r.status_code == 404
    r = requests.get(f"{u}/v1/vaults/{vid}/request-logs?limit=0", headers=h)
    assert r.status_code == 422
    r = requests.post(f"{u}/v1/vaults/{vid}/services", json={"host": "a.b.c"}, headers=h)
    assert r.status_code == 422
    assert requests.get(f"{u}/v1/vaults", headers={"X-API-Key": "wrong"}).status_code == 401


def test_values_are_nowhere_the_owner_can_look(server, api_key):
    c = sdk(server, api_key)
    vid = c.create_vault("leak-check")["id"]
    cid = c.add_vault_credential(vid, name="STRIPE_SECRET_KEY", value=SECRET)["id"]
    c.rotate_vault_credential(vid, cid, value=SECRET + "-rotated")
    c.add_vault_services_from_templates(vid, ["stripe"])
    h = {"X-API-Key": api_key}
    bodies = [
        requests.get(f"{server.base_url}{p}", headers=h).text
        for p in (f"/v1/vaults/{vid}", f"/v1/vaults/{vid}/credentials", f"/v1/vaults/{vid}/services",
                  f"/v1/vaults/{vid}/discover", "/v1/vaults", "/v1/audit/events?limit=200")
    ]
    assert all(SECRET not in b for b in bodies)
    events = requests.get(f"{server.base_url}/v1/audit/events?limit=200", headers=h).json()["items"]
    types = {e["event_type"] for e in events}
    assert {"vault.created", "vault.credential_created", "vault.credential_rotated", "vault.service_added"} <= types
    # Not in the database file (WAL included), not in the server log, and the key file is 0600.
    # (`layers.img` is the sparse btrfs image of sandbox layers, far larger than memory; VM disks
    # and snapshots are checked in test_vault_egress.py.)
    for name in os.listdir(server.data_dir):
        path = os.path.join(server.data_dir, name)
        if os.path.isfile(path) and name != "layers.img":
            with open(path, "rb") as f:
                assert SECRET.encode() not in f.read(), name
    assert SECRET not in server.log()
    assert oct(os.stat(os.path.join(server.data_dir, "vault.key")).st_mode & 0o777) == "0o600"
    assert oct(os.stat(os.path.join(server.data_dir, "vault-ca", "ca.key")).st_mode & 0o777) == "0o600"
    db = sqlite3.connect(os.path.join(server.data_dir, "instavm.db"))
    sealed = db.execute("SELECT sealed FROM vault_credentials WHERE id = ?", (cid,)).fetchone()[0]
    assert SECRET.encode() not in sealed and len(sealed) > len(SECRET)


def test_vault_ids_on_vm_create_and_update(server, api_key):
    c = sdk(server, api_key)
    vid = c.create_vault("vm-vault")["id"]
    c.add_vault_credential(vid, name="OPENAI_API_KEY", value=SECRET)
    c.add_vault_services_from_templates(vid, ["openai"])
    vm = c.vms.create(wait=True, vault_ids=[vid, vid])
    try:
        rec = c.vms.get(vm["vm_id"])
        assert rec["vault_ids"] == [vid]
        # Inside: a placeholder, not the value, and the CA is trusted.
        out = c_exec(c, server, api_key, vm["session_id"], "echo $OPENAI_API_KEY; echo $SSL_CERT_FILE; grep -c 'instavm vault CA' /etc/ssl/certs/ca-certificates.crt; env; cat /proc/1/environ 2>/dev/null | tr '\\0' '\\n'")
        first = out.splitlines()[0]
        assert first.startswith("ivp_") and SECRET not in out
        assert "/etc/ssl/certs/ca-certificates.crt" in out
        vid2 = c.create_vault("second")["id"]
        c.add_vault_credential(vid2, name="GITHUB_TOKEN", value=SECRET + "gh")
        r = requests.patch(f"{server.base_url}/v1/vms/{vm['vm_id']}", json={"vault_ids": [vid, vid2]}, headers={"X-API-Key": api_key})
        assert r.status_code == 200, r.text
        assert r.json()["vault_ids"] == [vid, vid2]
        r = requests.patch(f"{server.base_url}/v1/vms/{vm['vm_id']}", json={"vault_ids": ["vlt_nope"]}, headers={"X-API-Key": api_key})
        assert r.status_code == 404
    finally:
        c.vms.delete(vm["vm_id"])


def c_exec(c, server, api_key, session_id, cmd):
    r = requests.post(
        f"{server.base_url}/execute",
        json={"command": cmd, "language": "bash", "session_id": session_id},
        headers={"X-API-Key": api_key},
        timeout=120,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    return (body.get("stdout") or "") + (body.get("stderr") or "")


def test_official_cli_vault_commands(server, api_key, cli_env):
    env = dict(cli_env, INSTAVM_API_KEY=api_key)
    cli = [OFFICIAL_CLI]

    def j(*args, stdin=None):
        p = run(cli + list(args) + ["--json"], env, stdin=stdin)
        assert p.returncode == 0, (args, p.stdout, p.stderr)
        return json.loads(p.stdout)

    vid = j("vault", "create", "cli-vault", "--description", "d")["id"]
    assert [v["id"] for v in j("vault", "list")["vaults"]] == [vid]
    assert j("vault", "get", vid)["name"] == "cli-vault"
    assert j("vault", "update", vid, "--name", "cli2")["id"] == vid
    cred = j("vault", "secret", "set", vid, "OPENAI_API_KEY", "--value", SECRET)
    j("vault", "secret", "set", vid, "FROM_STDIN", stdin=SECRET + "\n")
    names = [c["name"] for c in j("vault", "secret", "list", vid)["credentials"]]
    assert names == ["OPENAI_API_KEY", "FROM_STDIN"]
    j("vault", "secret", "rotate", vid, cred["id"], "--value", SECRET + "x")
    j("vault", "service", "add", vid, "--template", "openai")
    svc = j("vault", "service", "add", vid, "--host", "api.acme.io", "--auth-type", "api-key", "--header", "X-Acme", "--credential", "FROM_STDIN")
    j("vault", "service", "add", vid, "--host", "api.telegram.org", "--auth-type", "url-path", "--credential", "TG", "--placeholder", "TG")
    hosts = sorted(s["host"] for s in j("vault", "service", "list", vid)["services"])
    assert hosts == ["api.acme.io", "api.openai.com", "api.telegram.org"]
    assert len(j("vault", "catalog")["templates"]) == 25
    d = j("vault", "discover", vid)
    assert "api.acme.io" in d["hosts"]
    assert j("vault", "logs", vid, "--limit", "10")["logs"] == []
    assert j("vault", "service", "remove", vid, svc["id"])["deleted"] is True
    assert j("vault", "secret", "delete", vid, cred["id"], "--yes")["deleted"] is True
    assert j("vault", "delete", vid, "--yes")["deleted"] is True
    p = run(cli + ["vault", "get", vid], env)
    assert p.returncode == 1 and "HTTP 404" in (p.stdout + p.stderr)
    assert SECRET not in server.log()


MANIFEST = (pathlib.Path(__file__).parent / "data" / "vault-demo.instavm.yaml").read_text()


def write_manifest(tmp_path):
    d = tmp_path / "proj"
    d.mkdir()
    (d / "instavm.yaml").write_text(MANIFEST)
    return d


def test_official_deploy_bootstrap_creates_a_vault_from_the_manifest(server, api_key, tmp_path):
    from instavm import _cookbook

    c = sdk(server, api_key)
    d = write_manifest(tmp_path)
    manifest = _cookbook.load_manifest(d / "instavm.yaml")
    plan = _cookbook.discover_matching_vaults(c, manifest)
    assert list(plan.vault_ids) == [] and sorted(plan.unmatched_hosts) == ["api.acme-internal.io", "api.openai.com"]
    asked = []
    ids = _cookbook.bootstrap_vault_for_manifest(
        c, manifest, missing_hosts=list(plan.unmatched_hosts),
        prompt_secret=lambda prompt: asked.append(prompt) or SECRET,
        prompt_confirm=lambda text, default: True,
    )
    assert len(ids) == 1 and len(asked) == 2
    vault = c.get_vault(ids[0])
    assert vault["name"] == "vault-demo-vault"
    creds = sorted(x["name"] for x in c.list_vault_credentials(ids[0]))
    assert creds == ["ACME_INTERNAL_API_KEY", "OPENAI_API_KEY"]
    hosts = {s["host"]: s["auth_config"] for s in c.list_vault_services(ids[0])}
    assert hosts["api.openai.com"] == {"type": "bearer", "token": "OPENAI_API_KEY"}
    assert hosts["api.acme-internal.io"] == {"type": "bearer", "token": "ACME_INTERNAL_API_KEY"}
    # Discovery now covers every host; `vault setup` (official and ours) says so.
    plan = _cookbook.discover_matching_vaults(c, manifest)
    assert list(plan.vault_ids) == list(ids) and not plan.unmatched_hosts
    env = {**os.environ, "INSTAVM_API_KEY": api_key, "INSTAVM_BASE_URL": server.base_url, "HOME": str(tmp_path)}
    for cli in ([OFFICIAL_CLI], [os.environ.get("INSTAVM_BIN", "target/release/instavm")]):
        p = run(cli + ["vault", "setup", str(d), "--json"], env)
        assert p.returncode == 0, p.stderr
        out = json.loads(p.stdout.strip().splitlines()[-1])
        assert out["status"] == "already_covered" and out["vault_ids"] == list(ids), out


def test_our_cli_vault_commands_and_setup(server, api_key, tmp_path):
    binary = os.environ.get("INSTAVM_BIN", "target/release/instavm")
    env = {**os.environ, "INSTAVM_API_KEY": api_key, "INSTAVM_BASE_URL": server.base_url, "HOME": str(tmp_path)}

    def j(*args, stdin=None, extra_env=None):
        p = run([binary, *args, "--json"], {**env, **(extra_env or {})}, stdin=stdin)
        assert p.returncode == 0, (args, p.stdout, p.stderr)
        return json.loads(p.stdout)

    vid = j("vault", "create", "ours", "--description", "d")["id"]
    assert [v["id"] for v in j("vault", "list")["vaults"]] == [vid]
    assert j("vault", "update", vid, "--name", "ours2")["name"] == "ours2"
    cred = j("vault", "secret", "set", vid, "GITHUB_TOKEN", stdin=SECRET + "\n")
    assert "value" not in cred
    j("vault", "secret", "rotate", vid, cred["id"], "--value", SECRET + "r")
    assert [c["name"] for c in j("secrets", "secret", "ls", vid)["credentials"]] == ["GITHUB_TOKEN"]
    j("vault", "service", "add", vid, "--template", "github")
    svc = j("vault", "service", "add", vid, "--host", "api.telegram.org", "--auth-type", "url-path", "--credential", "TG")
    assert svc["auth_config"] == {"type": "url-path", "token": "TG", "placeholder": "TG"}
    assert len(j("vault", "catalog")["templates"]) == 25
    assert "api.github.com" in j("vault", "discover", vid)["hosts"]
    assert j("vault", "logs", vid)["logs"] == []
    assert j("vault", "service", "rm", vid, svc["id"])["deleted"] is True
    p = run([binary, "vault", "delete", vid], env)  # no --yes and no terminal: refused
    assert p.returncode != 0
    assert j("vault", "secret", "rm", vid, cred["id"], "--yes")["deleted"] is True
    assert j("vault", "rm", vid, "--yes") == {"deleted": True, "vault_id": vid}
    # `vault setup`: values from the environment when there is no terminal.
    d = write_manifest(tmp_path)
    p = run([binary, "vault", "setup", str(d), "--json"], env)
    assert p.returncode != 0 and "OPENAI_API_KEY" in p.stderr
    out = j("vault", "setup", str(d), extra_env={"OPENAI_API_KEY": SECRET, "ACME_INTERNAL_API_KEY": SECRET + "a"})
    assert out["status"] == "ok" and len(out["vault_ids"]) == 1
    assert j("vault", "setup", str(d))["status"] == "already_covered"
    assert SECRET not in server.log()
