"""Benchmark (not a test): the scripted Agents SDK run of tests/python/test_agents.py, timed by
phase: sandbox start (create + start of an InstaVM sandbox session), the agent's tool calls
through `Runner.run` (a scripted model: shell, a file write and read, a PTY program answered with
write_stdin), persist (native snapshot) and hydrate (a fresh session booted from it).

Starts its own `instavm server` (like the test suite), runs the cycle RUNS times, prints p50/p99
per phase and writes JSON to target/instavm-bench/agents.json (or INSTAVM_BENCH_OUT).

Run: .venv/bin/python tests/python/bench/agents_run.py   (as root, real runtime)
"""

import asyncio
import io
import json
import os
import pathlib
import re
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve()
sys.path.insert(0, str(HERE.parents[1]))

from agents import RunConfig, Runner  # noqa: E402
from agents.run_config import SandboxRunConfig  # noqa: E402
from agents.sandbox.snapshot import LocalSnapshotSpec  # noqa: E402
from instavm.integrations.openai_agents import InstaVMSandboxClient, InstaVMSandboxClientOptions  # noqa: E402

from conftest import Server  # noqa: E402
from test_agents import ScriptedModel, agent, exec_command  # noqa: E402

RUNS = 10


def script():
    return ScriptedModel([
        exec_command("uname -a"),
        exec_command("mkdir -p /workspace/notes && echo milk > /workspace/notes/list.txt && cat /workspace/notes/list.txt"),
        exec_command("read -r -p 'name? ' who; echo \"hello, $who\"", tty=True, yield_time_ms=300),
        lambda outs: ("write_stdin", {"session_id": int(re.search(r"session ID (\d+)", outs[-1]).group(1)),
                                      "chars": "bench\n", "yield_time_ms": 300}),
        "done",
    ])


async def one_cycle(client, snaps):
    t = {}
    t0 = time.perf_counter()
    session = await client.create(options=InstaVMSandboxClientOptions(), manifest=None, snapshot=snaps)
    await session.start()
    t["sandbox_start"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = await Runner.run(agent(), "go", run_config=RunConfig(model=script(), sandbox=SandboxRunConfig(session=session)))
    assert result.final_output == "done"
    t["tool_calls"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    blob = (await session.persist_workspace()).read()
    t["persist"] = time.perf_counter() - t0
    await session.shutdown()
    t0 = time.perf_counter()
    fresh = await client.create(options=InstaVMSandboxClientOptions(), manifest=None, snapshot=snaps)
    await fresh.start()
    await fresh.hydrate_workspace(io.BytesIO(blob))
    t["hydrate"] = time.perf_counter() - t0
    check = await fresh.exec("cat /workspace/notes/list.txt", timeout=30)
    assert check.stdout.strip() == b"milk", check
    await fresh.shutdown()
    t["total"] = sum(t.values())
    return t


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, max(0, int(-(-p * len(values) // 1)) - 1))]


def main():
    srv = Server()
    srv.start()
    try:
        key = srv.create_user()
        client = InstaVMSandboxClient(api_key=key, base_url=srv.base_url)
        snaps = LocalSnapshotSpec(base_path=pathlib.Path(tempfile.mkdtemp(prefix="agents-bench-")))
        asyncio.run(one_cycle(client, snaps))  # warm-up
        cycles = [asyncio.run(one_cycle(client, snaps)) for _ in range(RUNS)]
    finally:
        srv.stop()
    report = {}
    for phase in ("sandbox_start", "tool_calls", "persist", "hydrate", "total"):
        ms = [c[phase] * 1000 for c in cycles]
        report[phase] = {"samples": len(ms), "p50_ms": pct(ms, 0.5), "p99_ms": pct(ms, 0.99), "min_ms": min(ms), "max_ms": max(ms)}
        print(f"{phase:14} p50 {report[phase]['p50_ms']:8.1f} ms  p99 {report[phase]['p99_ms']:8.1f} ms")
    repo = HERE.parents[3]
    out = pathlib.Path(os.environ.get("INSTAVM_BENCH_OUT", repo / "target" / "instavm-bench" / "agents.json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"  written to {out}")


if __name__ == "__main__":
    main()
