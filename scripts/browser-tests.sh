#!/usr/bin/env bash
# The console and the setup page in a real browser: tests/browser (Node's test runner driving
# Debian's Chromium through playwright-core) against a real `rollcall serve` it starts itself.
#
#   ROLLCALL_BIN   the binary to test (default: the debug build in the target directory)
#   CHROMIUM       the browser (default: `chromium` on PATH; Debian's package; on CI machines this
#                  script installs it with apt-get when it is missing)
#
# Screenshots of the main screens land in tests/browser/screenshots/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v node > /dev/null; then
  echo "scripts/browser-tests.sh: Node.js 20 or later is needed" >&2
  exit 2
fi
if [ -z "${CHROMIUM:-}" ] && ! command -v chromium > /dev/null; then
  if [ "${CI:-}" = "true" ] && command -v apt-get > /dev/null; then
    echo "installing Debian's chromium"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium > /dev/null
  else
    echo "scripts/browser-tests.sh: Chromium is needed (apt-get install chromium, or set CHROMIUM)" >&2
    exit 2
  fi
fi
if [ -z "${ROLLCALL_BIN:-}" ]; then
  cargo build -p rollcall
  export ROLLCALL_BIN="${CARGO_TARGET_DIR:-target}/debug/rollcall"
fi
cd tests/browser
# The lock file pins playwright-core; it brings no browser of its own (none can be downloaded).
npm ci --no-audit --no-fund --silent
node --test --test-concurrency=1 --test-reporter=spec
