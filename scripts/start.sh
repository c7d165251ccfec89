#!/usr/bin/env bash
# Start the platform on this machine, as root: installs what it needs (Debian packages), builds
# the release binaries, and runs `instavm server` with its embedded defaults (127.0.0.1:8080,
# data in ~/.local/share/instavm). The Debian base image is built on the first start (about a
# minute). Extra arguments go to `instavm server`, e.g. `scripts/start.sh --listen 0.0.0.0:8080`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --locked --release -p instavm-cli -p instavm-agent
exec target/release/instavm server "$@"
