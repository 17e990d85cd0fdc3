#!/usr/bin/env bash
# Run all the workspace's tests: unit and integration tests under cargo-nextest, then the
# doctests, which nextest does not run. Extra arguments go to `cargo nextest run`
# (e.g. scripts/test.sh --no-fail-fast, or a test name filter).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "scripts/test.sh: cargo-nextest is not installed (cargo install --locked cargo-nextest)" >&2
  exit 2
fi
cargo nextest run --workspace "$@"
cargo test --workspace --doc
