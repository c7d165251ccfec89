"""Benchmark (not a test): our CLI's `instavm deploy` of a small Flask app, N times, timed per
step from the `timings` object of its `--json` payload (create, upload, setup, start, health,
share), plus the wall time of the whole command.

Starts its own `instavm server` (like the test suite) and deploys the app RUNS times after one
warm-up. Every deploy is a fresh VM, so every `pip install flask` goes to the package registry:
`setup` measures that. Each VM is removed after its run. Prints p50/p99 per step and writes
JSON to target/instavm-bench/deploy_flask.json (or INSTAVM_BENCH_OUT).

Run: INSTAVM_BIN=$PWD/target/release/instavm .venv/bin/python tests/python/bench/deploy_flask.py [RUNS]
"""

import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve()
sys.path.insert(0, str(HERE.parents[1]))

from conftest import BIN, Server  # noqa: E402

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 10
STEPS = ["create", "upload", "setup", "start", "health", "share"]
APP = {
    "app.py": (
        "from flask import Flask\n"
        "app = Flask(__name__)\n\n"
        "@app.route('/')\n"
        "def index():\n"
        "    return 'hello from flask\\n'\n\n"
        "@app.route('/health')\n"
        "def health():\n"
        "    return 'ok\\n'\n"
    ),
    "requirements.txt": "flask\n",
}


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, max(0, int(-(-p * len(values) // 1)) - 1))]


def one_deploy(env, app):
    t0 = time.perf_counter()
    proc = subprocess.run([BIN, "deploy", str(app), "-y", "--json"], env=env, capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"deploy failed:\n{proc.stdout}\n{proc.stderr}")
    payload = json.loads(proc.stdout.strip().splitlines()[-1])
    t = {step: payload["timings"][step] for step in STEPS}
    t["total"] = wall
    # Free the VM so every run starts from the same state.
    subprocess.run([BIN, "rm", payload["vm_id"]], env=env, capture_output=True, timeout=60)
    return t


def main():
    srv = Server()
    srv.start()
    home = tempfile.mkdtemp(prefix="deploy-bench-home-")
    app = pathlib.Path(tempfile.mkdtemp(prefix="deploy-bench-")) / "flask-bench"
    app.mkdir()
    for name, text in APP.items():
        (app / name).write_text(text)
    try:
        env = dict(os.environ, HOME=home, INSTAVM_BASE_URL=srv.base_url, INSTAVM_API_KEY=srv.create_user(), NO_COLOR="1")
        one_deploy(env, app)  # warm-up
        runs = [one_deploy(env, app) for _ in range(RUNS)]
    finally:
        srv.stop()
    report = {"runs": RUNS, "steps": {}}
    for step in STEPS + ["total"]:
        ms = [r[step] * 1000 for r in runs]
        report["steps"][step] = {"samples": len(ms), "p50_ms": pct(ms, 0.5), "p99_ms": pct(ms, 0.99), "min_ms": min(ms), "max_ms": max(ms)}
        print(f"{step:8} p50 {report['steps'][step]['p50_ms']:9.1f} ms  p99 {report['steps'][step]['p99_ms']:9.1f} ms")
    repo = HERE.parents[3]
    out = pathlib.Path(os.environ.get("INSTAVM_BENCH_OUT", repo / "target" / "instavm-bench" / "deploy_flask.json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"  written to {out}")


if __name__ == "__main__":
    main()
