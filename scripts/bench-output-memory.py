#!/usr/bin/env python3
"""Server memory while sandboxes print a lot (issue 8, finding 3).

Starts `instavm server` (INSTAVM_BIN, default target/release/instavm) on a temporary data
directory, opens N sessions, has each print SIZE bytes of BYTE to stdout at the same time, and
samples the server's resident memory (VmRSS) every 10 ms. Prints one JSON line: RSS before,
peak while printing, VmHWM, and the seconds it took. The server is stopped and its sandboxes
purged at the end, whatever happens. Needs root (the namespace runtime).

    scripts/bench-output-memory.py [--sessions 3] [--size 20000000] [--byte 1]
"""

import argparse
import json
import os
import re
import signal
import subprocess
import tempfile
import threading
import time

import requests


def rss_kib(pid, field="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        m = re.search(rf"^{field}:\s+(\d+) kB", f.read(), re.M)
    return int(m.group(1)) if m else 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=3)
    ap.add_argument("--size", type=int, default=20_000_000)
    ap.add_argument("--byte", type=int, default=1)
    args = ap.parse_args()
    binary = os.environ.get("INSTAVM_BIN", "target/release/instavm")
    images = os.environ.get("INSTAVM_IMAGES_DIR", "target/instavm-images")
    admin = "bench-admin-key-0123456789abcdef"
    data = tempfile.mkdtemp(prefix="instavm-bench-mem-")
    log = open(data + ".log", "w")
    env = dict(os.environ, INSTAVM_ADMIN_API_KEY=admin, INSTAVM_LOG="warn")
    server = subprocess.Popen(
        [binary, "server", "--listen", "127.0.0.1:0", "--data-dir", data,
         "--images-dir", images, "--warm-pool", str(args.sessions)],
        stderr=subprocess.PIPE, stdout=log, env=env, text=True, start_new_session=True)
    try:
        url = None
        for line in server.stderr:
            if line.startswith("instavm server listening on "):
                url = line.split()[-1]
                break
        threading.Thread(target=lambda: [log.write(l) for l in server.stderr], daemon=True).start()
        deadline = time.time() + 600
        while requests.get(url + "/health").status_code != 200:
            assert time.time() < deadline, "server not ready"
            time.sleep(0.1)
        user = requests.post(url + "/v1/admin/users", headers={"X-API-Key": admin},
                             json={"email": "bench@example.com"}).json()
        key = user["api_key"]
        sids = [requests.post(url + "/v1/sessions/session", json={"api_key": key}).json()["session_id"]
                for _ in range(args.sessions)]
        code = f"import sys; sys.stdout.write(chr({args.byte}) * {args.size})"
        # Warm each interpreter so the measurement is the output alone.
        for sid in sids:
            requests.post(url + "/execute", headers={"X-API-Key": key},
                          json={"command": "pass", "session_id": sid})
        before = rss_kib(server.pid)
        peak = [before]
        done = threading.Event()

        def sample():
            while not done.is_set():
                peak[0] = max(peak[0], rss_kib(server.pid))
                time.sleep(0.01)

        def run(sid, out):
            r = requests.post(url + "/execute", headers={"X-API-Key": key},
                              json={"command": code, "session_id": sid}, stream=True)
            out.append((r.status_code, sum(len(c) for c in r.iter_content(1 << 20))))

        sampler = threading.Thread(target=sample)
        sampler.start()
        outs = [[] for _ in sids]
        threads = [threading.Thread(target=run, args=(sid, out)) for sid, out in zip(sids, outs)]
        started = time.time()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seconds = time.time() - started
        done.set()
        sampler.join()
        results = [o[0] for o in outs]
        print(json.dumps({
            "binary": binary, "sessions": args.sessions, "bytes_each": args.size,
            "byte": args.byte, "statuses": [r[0] for r in results],
            "body_bytes": [r[1] for r in results],
            "rss_before_mib": round(before / 1024, 1), "rss_peak_mib": round(peak[0] / 1024, 1),
            "vm_hwm_mib": round(rss_kib(server.pid, "VmHWM") / 1024, 1),
            "seconds": round(seconds, 2),
        }))
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
        subprocess.run([binary, "server", "purge", "--data-dir", data, "--images-dir", images],
                       stdout=subprocess.DEVNULL)
        subprocess.run(["rm", "-rf", data, data + ".log"])


if __name__ == "__main__":
    main()
