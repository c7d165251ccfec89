"""Metering and credits on the real server: a VM that burns 2 CPU-seconds shows up in
`usage-breakdown` and the credits routes within 10 %, priced at the operator's rates; the official
CLI's `billing ...` commands work; with `--enforce-credits` a user over their allocation gets a 403
for new VMs. The server samples every second (`--metering-interval 1`)."""

import json
import time
import urllib.request

import pytest
from instavm import InstaVM
from instavm.exceptions import ForbiddenError

from conftest import BIN, OFFICIAL_CLI, Server, run

CPU_RATE = 0.001
RAM_RATE = 0.0001
BURN = "import time\nt = time.process_time()\nwhile time.process_time() - t < 2.0:\n    pass\nprint('burned')"


@pytest.fixture(scope="module")
def billing_server():
    srv = Server(extra_args=["--metering-interval", "1", "--enforce-credits", "--cpu-rate", str(CPU_RATE), "--ram-rate", str(RAM_RATE)])
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()


def metered_cpu_seconds(client):
    return client.get_usage_breakdown(days=2)["totals"]["cpu_hours"] * 3600


def settle(client, seconds=3.5):
    """Wait for samples to cover what ran (one a second), then read the total."""
    time.sleep(seconds)
    return metered_cpu_seconds(client)


def test_two_cpu_seconds_are_metered_and_priced(billing_server):
    client = InstaVM(api_key=billing_server.create_user(), base_url=billing_server.base_url)
    try:
        client.execute("print(1)")
        before = settle(client)
        out = client.execute(BURN)
        assert "burned" in out["stdout"], out
        after = settle(client)
        burned = after - before
        assert 1.8 <= burned <= 2.2, (before, after)

        summary = client.credits.summary(period="current_month")
        vm = summary["vm_execution"]
        assert abs(vm["cpu_seconds"] - after) < 0.5, (vm, after)
        expected = vm["cpu_seconds"] * CPU_RATE + vm["ram_gib_seconds"] * RAM_RATE
        assert summary["dollars"]["used"] == pytest.approx(expected, rel=0.01, abs=1e-5)
        assert vm["ram_gib_seconds"] > 0

        alloc = client.credits.allocation()
        assert alloc["dollars"]["allocated"] == 100 and alloc["dollars"]["used"] == pytest.approx(summary["dollars"]["used"], rel=0.05, abs=1e-4)
        rows = client.credits.usage(period="current_month", limit=1000)
        assert rows and {r["usage_type"] for r in rows} == {"vm_execution"}
        assert sum(r["cpu_seconds"] for r in rows) == pytest.approx(vm["cpu_seconds"], rel=0.05, abs=0.1)
        assert client.credits.usage(usage_type="browser_automation") == []
        rates = client.credits.rates()
        assert rates["vm_execution"]["cpu_rate_per_second_per_core"] == CPU_RATE
        trends = client.credits.usage_trends(period="7d", granularity="hourly")
        assert len(trends["series"]) == 168 and trends["series"][-1]["cpu_seconds"] > 1.8
        assert len(client.credits.usage_trends(period="30d", granularity="daily")["series"]) == 30
        assert client.credits.usage_forecast()["daily_average_dollars"] > 0
        check = client.credits.check(usage_type="browser_automation", required_credits=5)
        assert check["available"] is True and check["shortage"] == 0
    finally:
        client.kill()


@pytest.mark.parametrize("cli", ["official", "ours"])
def test_cli_billing_commands(billing_server, cli_env, cli):
    exe = OFFICIAL_CLI if cli == "official" else BIN
    env = dict(cli_env, INSTAVM_API_KEY=billing_server.create_user(), INSTAVM_BASE_URL=billing_server.base_url)
    for args in (["status"], ["status", "--period", "all"], ["allocation"], ["usage", "--days", "7"], ["usage-history", "--period", "last_30_days"],
                 ["check", "--usage-type", "browser_automation", "--required-credits", "3"], ["rates"], ["trends", "--period", "7d", "--granularity", "daily"], ["forecast"]):
        r = run([exe, "billing", *args, "--json"], env)
        assert r.returncode == 0, (args, r.stdout, r.stderr)
        out = json.loads(r.stdout)
        if args[0] == "usage-history":
            assert set(out) == {"period", "rows"}, out
        r = run([exe, "billing", *args], env)
        assert r.returncode == 0, (args, r.stdout, r.stderr)


def test_over_allocation_blocks_new_vms(billing_server):
    key = billing_server.create_user()
    client = InstaVM(api_key=key, base_url=billing_server.base_url, auto_start_session=False)
    me = client.get_current_user()
    req = urllib.request.Request(
        f"{billing_server.base_url}/v1/admin/users/{me['id']}/credits",
        data=json.dumps({"dollars": 0}).encode(),
        headers={"Content-Type": "application/json", "X-API-Key": billing_server.admin_key},
        method="PUT",
    )
    with urllib.request.urlopen(req, timeout=30) as res:
        assert json.load(res)["dollars"] == 0
    with pytest.raises(ForbiddenError) as err:
        client.vms.create(wait=True)
    assert "allocation" in str(err.value)
    assert client.credits.check(usage_type="vm_execution", required_credits=1)["available"] is False
