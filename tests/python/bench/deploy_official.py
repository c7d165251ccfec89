"""Benchmark (not a test): the official CLI's `instavm deploy` of a small Flask app, split by step.

The `ssh`/`scp` wrappers on the CLI's PATH (as in tests/python/test_deploy_official.py) also log
a timestamp per call, which splits the wall time into the pipeline's steps (spec/manifest.md
§7.2):
- create: start to the first ssh, i.e. the API calls and `POST /v1/vms?wait=true`;
- ssh_ready: the first `ssh true` and the home lookup;
- upload: scp plus unpacking;
- setup: `pip install -r requirements.txt`, from PyPI, in the VM;
- start: the nohup script;
- health: the health loop inside the VM;
- share: `POST /v1/shares` plus the GET of the share URL, i.e. the end.

Starts its own `instavm server`, deploys RUNS times, prints p50/p99 per step and writes JSON to
target/instavm-bench/deploy_official.json (or INSTAVM_BENCH_OUT).

Run: .venv/bin/python tests/python/bench/deploy_official.py   (as root, real runtime)
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

from conftest import OFFICIAL_CLI, Server  # noqa: E402
from test_deploy_official import FLASK_APP  # noqa: E402

RUNS = int(os.environ.get("RUNS", "5"))
STEPS = ["create", "ssh_ready", "upload", "setup", "start", "health", "share", "total"]


def percentile(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def environment(server, key, tmp):
    home = tmp / "home"
    (home / ".ssh").mkdir(parents=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(home / ".ssh/id_ed25519")], check=True)
    (home / ".ssh/config").write_text(
        f"Host 127.0.0.1\n  Port {server.ssh_port}\n  UserKnownHostsFile {home / '.ssh/known_hosts'}\n  LogLevel ERROR\n"
    )
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    for tool in ("ssh", "scp"):
        (bin_dir / tool).write_text(
            "#!/bin/sh\n"
            f'printf "%s {tool} %s\\n" "$(date +%s.%N)" "$(printf %s "$*" | tr "\\n" " ")" >> "$HOME/calls.log"\n'
            f'exec /usr/bin/{tool} -F "$HOME/.ssh/config" "$@"\n'
        )
        (bin_dir / tool).chmod(0o755)
    return home, dict(
        os.environ,
        HOME=str(home),
        PATH=f"{bin_dir}:{os.environ['PATH']}",
        INSTAVM_API_KEY=key,
        INSTAVM_BASE_URL=server.base_url,
        INSTAVM_SSH_HOST="127.0.0.1",
        NO_COLOR="1",
    )


def main():
    server = Server()
    server.start()
    results = {s: [] for s in STEPS}
    try:
        for i in range(RUNS):
            key = server.create_user()
            with tempfile.TemporaryDirectory() as d:
                tmp = pathlib.Path(d)
                home, env = environment(server, key, tmp)
                app = tmp / "flask-bench"
                app.mkdir()
                (app / "app.py").write_text(FLASK_APP)
                (app / "requirements.txt").write_text("flask\n")
                started = time.time()
                r = subprocess.run([OFFICIAL_CLI, "deploy", str(app), "-y", "--json"], env=env, capture_output=True, text=True)
                ended = time.time()
                assert r.returncode == 0, r
                calls = []
                for line in (home / "calls.log").read_text().splitlines():
                    t, tool, args = line.split(" ", 2)
                    calls.append((float(t), tool, args))
                # Each call's start time; a step lasts until the next step's first call.
                t_ssh = calls[0][0]
                t_scp = next(t for t, tool, _ in calls if tool == "scp")
                t_setup = next(t for t, _, a in calls if "pip install" in a)
                t_start = next(t for t, _, a in calls if "nohup" in a)
                t_health = next(t for t, _, a in calls if "healthcheck" in a or "curl -fsS" in a)
                # The last ssh call is the health loop; the share step is what follows it. The
                # loop's end is when the share is created, read from the server's log below.
                t_share = share_created_after(server, t_health) or ended
                steps = {
                    "create": t_ssh - started,
                    "ssh_ready": t_scp - t_ssh,
                    "upload": t_setup - t_scp,
                    "setup": t_start - t_setup,
                    "start": t_health - t_start,
                    "health": t_share - t_health,
                    "share": ended - t_share,
                    "total": ended - started,
                }
                for k, v in steps.items():
                    results[k].append(v)
                print(f"run {i + 1}: " + " ".join(f"{k}={v:.2f}s" for k, v in steps.items()), flush=True)
    finally:
        server.stop()
    summary = {k: {"p50_s": percentile(v, 50), "p99_s": percentile(v, 99), "runs": len(v)} for k, v in results.items()}
    for k in STEPS:
        print(f"{k:10s} p50 {summary[k]['p50_s']:.2f} s  p99 {summary[k]['p99_s']:.2f} s")
    out = pathlib.Path(os.environ.get("INSTAVM_BENCH_OUT", HERE.parents[3] / "target/instavm-bench/deploy_official.json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"bench": "deploy_official_flask", "steps": summary, "raw": results}, indent=2))
    print(f"wrote {out}")


def share_created_after(server, after):
    """The time of the first `POST /v1/shares` the server logged after `after` (epoch s)."""
    import datetime

    for line in server.log().splitlines():
        if 'path="/v1/shares"' in line and "answered" in line:
            stamp = line.split(" ", 1)[0]
            try:
                t = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
            except ValueError:
                continue
            if t > after:
                return t
    return None


if __name__ == "__main__":
    main()
