#!/usr/bin/env bash
# Creates ./.venv with the official InstaVM Python SDK/CLI (the compatibility oracle) and pytest.
# Idempotent: does nothing when the pinned versions are already there.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
if ! .venv/bin/python -c 'import importlib.metadata as m, sys; sys.exit(m.version("instavm") != "0.26.1")' 2>/dev/null \
   || ! .venv/bin/python -c 'import pytest' 2>/dev/null; then
  .venv/bin/pip install --quiet --disable-pip-version-check "instavm==0.26.1" "pytest>=8,<9"
fi
echo ".venv ready: $(.venv/bin/python -c 'import importlib.metadata as m; print("instavm", m.version("instavm"))')"
