#!/usr/bin/env bash
# The whole test suite, on a fresh Debian machine, as root:
#   format and lint, unit and integration tests (namespace isolation and lifecycle included),
#   end-to-end tests against the real server binary, the manifest conformance suite against the
#   reference CLI, and the compatibility suite with the official InstaVM Python SDK.
# Everything runs in the release profile so the binaries under test are the ones we ship.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

step() { printf '\n==> %s\n' "$*"; }

step "host dependencies"
scripts/install-deps.sh
step "python virtualenv with the official SDK (instavm==0.26.1, from tests/python/requirements.lock)"
scripts/python-venv.sh

step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy -D warnings"
cargo clippy --locked --release --workspace --all-targets -- -D warnings

step "build"
cargo build --locked --release --workspace
step "base image (built once, shared by every test)"
export INSTAVM_IMAGES_DIR=${INSTAVM_IMAGES_DIR:-$PWD/target/instavm-images}
target/release/instavm image build --images-dir "$INSTAVM_IMAGES_DIR"

step "cargo test"
cargo test --locked --release --workspace -- --test-threads="${TEST_THREADS:-2}"

step "python compatibility suite (official SDK)"
INSTAVM_BIN="$PWD/target/release/instavm" .venv/bin/pytest -q tests/python

step "all tests passed"
