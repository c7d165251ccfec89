"""Benchmark (not a test): what recording a tape costs and how fast its diffs and branches are.

- the per-step overhead of recording with record_fs: `POST /execute` of a file write with a
  recording tape, against the same execute with none (interleaved pairs, so load noise hits
  both alike);
- `GET /v1/tapes/{id}/diff` between two steps of a VM holding 10,000 files, 3 of them changed;
- `POST /v1/tapes/{id}/branch` (live), until the new VM answers.

Starts its own `instavm server`, drives it with the official SDK, prints p50/p99 and writes JSON
to target/instavm-bench/tapes.json (or INSTAVM_BENCH_OUT).

Run: .venv/bin/python tests/python/bench/tapes.py   (as root, real runtime)
"""

import json
import os
import pathlib
import sys
import time

HERE = pathlib.Path(__file__).resolve()
sys.path.insert(0, str(HERE.parents[1]))

from instavm import InstaVM  # noqa: E402

from conftest import Server  # noqa: E402

STEPS = 200
DIFFS = 50
BRANCHES = 10
WRITE = "open('/tmp/step.txt', 'w').write('x' * 100)"


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, max(0, int(-(-p * len(values) // 1)) - 1))]


def timed(fn):
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000


def summary(ms):
    return {"samples": len(ms), "p50_ms": pct(ms, 0.5), "p99_ms": pct(ms, 0.99), "min_ms": min(ms), "max_ms": max(ms)}


def main():
    srv = Server()
    srv.start()
    report = {}
    try:
        key = srv.create_user()
        plain = InstaVM(api_key=key, base_url=srv.base_url, timeout=3600)
        taped = InstaVM(api_key=key, base_url=srv.base_url, timeout=3600)
        tape = taped.tapes.start(taped.session_id, record_fs=True)
        for c in (plain, taped):
            c.execute(WRITE)  # warm-up
        without, with_tape = [], []
        for _ in range(STEPS):
            without.append(timed(lambda: plain.execute(WRITE)))
            with_tape.append(timed(lambda: taped.execute(WRITE)))
        report["execute_without_tape"] = summary(without)
        report["execute_recorded_with_record_fs"] = summary(with_tape)
        report["per_step_overhead_p50_ms"] = report["execute_recorded_with_record_fs"]["p50_ms"] - report["execute_without_tape"]["p50_ms"]
        taped.tapes.stop(tape["id"])

        vm = InstaVM(api_key=key, base_url=srv.base_url, timeout=3600)
        t = vm.tapes.start(vm.session_id, record_fs=True)
        vm.execute("import os\nos.makedirs('/tmp/many', exist_ok=True)\n"
                   "for i in range(10000): open(f'/tmp/many/f{i}.txt', 'w').write(str(i))")
        vm.execute("for i in (5, 500, 5000): open(f'/tmp/many/f{i}.txt', 'a').write('changed')")
        events = vm.tapes.events(t["id"], kind="execute")
        first, second = events[0]["step_id"], events[1]["step_id"]
        changed = vm.tapes.diff(t["id"], from_step=first, to_step=second)["changed_paths"]
        assert changed == ["/tmp/many/f5.txt", "/tmp/many/f500.txt", "/tmp/many/f5000.txt"], changed
        report["diff_10000_files_3_changed"] = summary(
            [timed(lambda: vm.tapes.diff(t["id"], from_step=first, to_step=second)) for _ in range(DIFFS)])

        branch_ms, first_exec_ms = [], []
        for _ in range(BRANCHES):
            t0 = time.perf_counter()
            b = vm.tapes.branch(t["id"], at_step=first, mode="live")
            branch_ms.append((time.perf_counter() - t0) * 1000)
            child = InstaVM(api_key=key, base_url=srv.base_url, auto_start_session=False)
            child.session_id = b["session_id"]
            child.execute("pass")
            first_exec_ms.append((time.perf_counter() - t0) * 1000)
            vm.tapes.stop(b["tape_id"])
            child.kill()
        report["branch_live_request"] = summary(branch_ms)
        report["branch_live_to_first_execute"] = summary(first_exec_ms)
        vm.tapes.stop(t["id"])
    finally:
        srv.stop()
    for name, r in report.items():
        if isinstance(r, dict):
            print(f"{name:34} p50 {r['p50_ms']:8.2f} ms  p99 {r['p99_ms']:8.2f} ms  (n={r['samples']})")
        else:
            print(f"{name:34} {r:8.2f} ms")
    repo = HERE.parents[3]
    out = pathlib.Path(os.environ.get("INSTAVM_BENCH_OUT", repo / "target" / "instavm-bench" / "tapes.json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"  written to {out}")


if __name__ == "__main__":
    main()
