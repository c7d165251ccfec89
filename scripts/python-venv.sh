#!/usr/bin/env bash
# Creates ./.venv with the official InstaVM Python SDK/CLI (the compatibility oracle) and pytest,
# from tests/python/requirements.lock: exact versions and hashes of every package, so an upstream
# release (PyYAML 6.0.4 changed merge-key order under us once) can never change the oracle.
# Idempotent: does nothing when the venv already holds exactly this lock.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
LOCK=tests/python/requirements.lock
STAMP=.venv/.requirements.lock.sha256
want=$(sha256sum "$LOCK" | cut -d' ' -f1)
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
if [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
  # --no-deps: the lock already lists every dependency; anything missing from it is an error.
  .venv/bin/pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r "$LOCK"
  .venv/bin/pip check
  echo "$want" > "$STAMP"
fi
echo ".venv ready: $(.venv/bin/python -c 'import importlib.metadata as m; print(", ".join(f"{p} {m.version(p)}" for p in ("instavm", "PyYAML", "pytest")))')"
