"""Webhooks on the real server: a receiver run by the test checks every delivery with the official
SDK's verifier, sees the retries after answering 500 twice, gets a delivery queued before a
`kill -9` after the restart, and the official CLI's (and our CLI's) `webhooks ...` commands,
including the offline `verify-signature`, work against the server. The server runs with
`--allow-private-webhooks` (the receiver is on loopback); the default server refuses such URLs."""

import http.server
import json
import threading
import time

import pytest
from instavm import InstaVM, verify_webhook
from instavm.exceptions import ForbiddenError

from conftest import BIN, OFFICIAL_CLI, Server, run


class Receiver:
    """An HTTP receiver on loopback: answers with the codes of `script` in turn (then
    `default`) and keeps every request."""

    def __init__(self):
        self.requests = []
        self.script = []
        self.default = 200
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with outer.lock:
                    outer.requests.append({"headers": dict(self.headers.items()), "body": body, "path": self.path, "at": time.time()})
                    code = outer.script.pop(0) if outer.script else outer.default
                self.send_response(code)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def wait_for(self, pred, timeout=30):
        """The requests `pred` accepts, once there is one (`pred` runs without the lock)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                requests = list(self.requests)
            found = [r for r in requests if pred(r)]
            if found:
                return found
            time.sleep(0.05)
        raise AssertionError(f"no matching delivery within {timeout}s; got {[json.loads(r['body']).get('event_type') for r in self.requests]}")

    def events(self, event_type):
        with self.lock:
            return [r for r in self.requests if json.loads(r["body"]).get("event_type") == event_type]

    def close(self):
        self.httpd.shutdown()


@pytest.fixture(scope="module")
def hook_server():
    srv = Server(extra_args=["--allow-private-webhooks"])
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def sdk(server, key=None):
    return InstaVM(api_key=key or server.create_user(), base_url=server.base_url, auto_start_session=False)


def test_signed_deliveries_retried_after_two_500s(hook_server, receiver):
    client = sdk(hook_server)
    ep = client.webhooks.create_endpoint(receiver.url, description="retries", event_patterns=["api_key.*"], timeout_seconds=5, max_retries=3)
    secret = ep["secret"]
    assert secret.startswith("whsec_") and ep["status"] == "active" and ep["event_patterns"] == ["api_key.*"]
    assert "secret" not in client.webhooks.get_endpoint(ep["id"]) and ep["secret_hint"].endswith(secret[-4:])
    assert [e["id"] for e in client.webhooks.list_endpoints()] == [ep["id"]]

    receiver.script = [500, 500]
    key = client.api_keys.create(description="hooked")
    got = receiver.wait_for(lambda r: len(receiver.events("api_key.created")) >= 3, timeout=30)
    tries = receiver.events("api_key.created")
    assert len(tries) == 3, tries
    # The same event each time, signed each time with the endpoint's secret: the SDK's verifier agrees.
    events = [verify_webhook(r["headers"], r["body"], secret) for r in tries]
    assert len({e["id"] for e in events}) == 1 and events[0]["resource_id"] == str(key["id"])
    assert events[0]["data"]["description"] == "hooked"
    # Backoff: about 1 s, then 2 s.
    gaps = [tries[i + 1]["at"] - tries[i]["at"] for i in range(2)]
    assert 0.8 <= gaps[0] < 3 and 1.8 <= gaps[1] < 5, gaps
    with pytest.raises(Exception) as err:
        verify_webhook(tries[0]["headers"], tries[0]["body"], "whsec_wrong")
    assert err.value.reason == "invalid_signature"

    # The delivery records every attempt.
    deadline = time.monotonic() + 10
    while True:
        items = client.webhooks.list_deliveries(endpoint_id=ep["id"], event_type="api_key.created")["items"]
        if items and items[0]["status"] == "delivered" or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    d = items[0]
    assert d["status"] == "delivered" and d["attempt_count"] == 3, d
    assert [a["status_code"] for a in d["attempts"]] == [500, 500, 200]

    # Patterns filter: a webhook.* event is not sent to an api_key.* endpoint.
    client.webhooks.update_endpoint(ep["id"], description="changed")
    time.sleep(0.5)
    assert receiver.events("webhook.endpoint_updated") == []


def test_test_verify_replay_rotate_disable(hook_server, receiver):
    client = sdk(hook_server)
    ep = client.webhooks.create_endpoint(receiver.url, event_patterns=["nothing.*"])
    r = client.webhooks.send_test_event(ep["id"])
    assert r["event_type"] == "webhook.test"
    got = receiver.wait_for(lambda r: json.loads(r["body"])["event_type"] == "webhook.test")
    assert verify_webhook(got[0]["headers"], got[0]["body"], ep["secret"])["event_type"] == "webhook.test"

    v = client.webhooks.verify_endpoint(ep["id"])
    assert v["status"] == "verified" and v["status_code"] == 200, v
    challenge = receiver.events("webhook.verify")
    assert len(challenge) == 1 and verify_webhook(challenge[0]["headers"], challenge[0]["body"], ep["secret"])["data"]["challenge"]

    page = client.webhooks.list_deliveries(endpoint_id=ep["id"])
    assert [d["event_type"] for d in page["items"]] == ["webhook.test"]
    rotated = client.webhooks.rotate_secret(ep["id"])
    assert rotated["secret"] != ep["secret"] and rotated["secret"].startswith("whsec_")
    rep = client.webhooks.replay_delivery(page["items"][0]["id"])
    assert rep["replayed_from"] == page["items"][0]["id"]
    receiver.wait_for(lambda r: len(receiver.events("webhook.test")) >= 2)
    again = receiver.events("webhook.test")[-1]
    # The replay carries the same event, signed with the new secret.
    assert verify_webhook(again["headers"], again["body"], rotated["secret"])["id"] == json.loads(got[0]["body"])["id"]

    # Paging: newest first, with a cursor.
    first = client.webhooks.list_deliveries(endpoint_id=ep["id"], limit=1)
    assert len(first["items"]) == 1 and first["next_cursor"]
    second = client.webhooks.list_deliveries(endpoint_id=ep["id"], limit=1, cursor=first["next_cursor"])
    assert second["items"][0]["id"] != first["items"][0]["id"] and second["next_cursor"] is None

    gone = client.webhooks.delete_endpoint(ep["id"])
    assert gone["status"] == "disabled"
    assert client.webhooks.get_endpoint(ep["id"])["status"] == "disabled"
    # Endpoint changes are audit events.
    kinds = {e["event_type"] for e in client.audit.events(event_group="webhook")["items"]}
    assert {"webhook.endpoint_created", "webhook.secret_rotated", "webhook.endpoint_disabled"} <= kinds, kinds

    # Someone else sees none of it.
    other = sdk(hook_server)
    assert other.webhooks.list_endpoints() == []
    assert other.webhooks.list_deliveries()["items"] == []


def test_a_queued_delivery_survives_kill_9(hook_server, receiver):
    user_key = hook_server.create_user()
    client = sdk(hook_server, user_key)
    receiver.default = 503
    ep = client.webhooks.create_endpoint(receiver.url, event_patterns=["api_key.created"], max_retries=10)
    key = client.api_keys.create(description="before the crash")
    receiver.wait_for(lambda r: json.loads(r["body"])["event_type"] == "api_key.created")
    deadline = time.monotonic() + 10
    while True:  # the attempt is recorded just after the receiver answered
        pending = client.webhooks.list_deliveries(endpoint_id=ep["id"])["items"]
        if pending[0]["attempt_count"] >= 1 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert pending[0]["status"] == "pending" and pending[0]["attempt_count"] >= 1, pending

    hook_server.kill()
    receiver.default = 200
    n_before = len(receiver.events("api_key.created"))
    hook_server.start()
    client = sdk(hook_server, user_key)  # the restart listens on a new port
    got = receiver.wait_for(lambda r: len(receiver.events("api_key.created")) > n_before, timeout=60)
    last = receiver.events("api_key.created")[-1]
    event = verify_webhook(last["headers"], last["body"], ep["secret"])
    assert event["resource_id"] == str(key["id"])
    deadline = time.monotonic() + 10
    while client.webhooks.list_deliveries(endpoint_id=ep["id"])["items"][0]["status"] != "delivered":
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_private_urls_are_refused_by_default(server):
    client = sdk(server)
    for url in ["http://127.0.0.1:9/hook", "http://localhost:9/hook", "http://169.254.169.254/latest", "http://10.0.0.1/"]:
        with pytest.raises(ForbiddenError):
            client.webhooks.create_endpoint(url)
    assert client.webhooks.list_endpoints() == []


@pytest.mark.parametrize("cli", ["official", "ours"])
def test_cli_webhooks_commands(hook_server, receiver, cli_env, cli):
    exe = OFFICIAL_CLI if cli == "official" else BIN
    env = dict(cli_env, INSTAVM_API_KEY=hook_server.create_user(), INSTAVM_BASE_URL=hook_server.base_url)

    def j(*args):
        r = run([exe, "webhooks", *args, "--json"], env)
        assert r.returncode == 0, (args, r.stdout, r.stderr)
        return json.loads(r.stdout)

    ep = j("create", receiver.url, "--description", "cli", "--event", "webhook.*", "--event", "vm.*", "--timeout", "5", "--max-retries", "2")
    assert ep["event_patterns"] == ["webhook.*", "vm.*"] and ep["secret"].startswith("whsec_")
    assert [e["id"] for e in j("list")["endpoints"]] == [ep["id"]]
    assert j("get", ep["id"])["description"] == "cli"
    upd = j("update", ep["id"], "--description", "cli2", "--timeout", "7")
    assert upd["description"] == "cli2" and upd["timeout_seconds"] == 7
    assert j("test", ep["id"])["event_type"] == "webhook.test"
    got = receiver.wait_for(lambda r: json.loads(r["body"])["event_type"] == "webhook.test")
    assert j("verify", ep["id"])["status"] == "verified"
    deliveries = j("deliveries", "--endpoint", ep["id"], "--event-type", "webhook.test")
    assert deliveries["items"] and deliveries["items"][0]["event_type"] == "webhook.test"
    assert j("replay", deliveries["items"][0]["id"])["replayed_from"] == deliveries["items"][0]["id"]

    # The offline check of a captured delivery.
    # Header names arrive lowercase (HTTP/1 as hyper writes it); receivers match them without case.
    sig = next(v for k, v in got[0]["headers"].items() if k.lower() == "instavm-signature")
    body = got[0]["body"].decode()
    r = run([exe, "webhooks", "verify-signature", "--secret", ep["secret"], "--header", f"InstaVM-Signature: {sig}", "--body", body, "--json"], env)
    assert r.returncode == 0 and json.loads(r.stdout)["ok"] is True, (r.stdout, r.stderr)
    r = run([exe, "webhooks", "verify-signature", "--secret", "whsec_wrong", "--header", f"InstaVM-Signature: {sig}", "--body", body, "--json"], env)
    assert r.returncode == 1 and json.loads(r.stdout)["reason"] == "invalid_signature", (r.stdout, r.stderr)
    r = run([exe, "webhooks", "verify-signature", "--secret", ep["secret"], "--body", body], env)
    assert r.returncode == 2
    # The spec's worked example.
    r = run([exe, "webhooks", "verify-signature", "--secret", "whsec_test", "--header",
             "InstaVM-Signature: t=1700000000,v1=890797583de4452b0b2411b0be0a1dd51250edfed3ad44813c4651a029ba9a76",
             "--body", '{"id":"evt_1","event_type":"webhook.test"}', "--tolerance", "-1"], env)
    assert r.returncode == 0, (r.stdout, r.stderr)

    rot = j("rotate-secret", ep["id"])
    assert rot["secret"] != ep["secret"]
    assert j("update", ep["id"], "--disable")["status"] == "disabled"
    assert j("update", ep["id"], "--enable")["status"] == "active"
    j("delete", ep["id"])
    assert j("get", ep["id"])["status"] == "disabled"
