#!/usr/bin/env bash
# Runs docs/walkthrough.md: every ```sh block, in order, in one bash shell (set -euo pipefail), in an
# empty directory, with `rollcall` on the PATH and a Python venv for the receiver. The only change to
# the page's commands: its ports (8080, 9000) become free ones. Fails when any command fails (the page
# checks its own results with jq -e and grep).
#
# Usage: scripts/walkthrough.sh
# Env:
#   ROLLCALL_BIN   the binary (default: build and use the debug one in CARGO_TARGET_DIR or target/)
#   PYTHON         interpreter for the venv (default python3)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DOC="$ROOT/docs/walkthrough.md"
PYTHON="${PYTHON:-python3}"
say() { printf 'walkthrough: %s\n' "$*"; }
die() { printf 'walkthrough: error: %s\n' "$*" >&2; exit 2; }

for tool in curl jq "$PYTHON"; do
  command -v "$tool" > /dev/null || die "$tool is needed (the page uses it)"
done
if [ -n "${ROLLCALL_BIN:-}" ]; then
  BIN="$ROLLCALL_BIN"
else
  (cd "$ROOT" && cargo build -p rollcall --quiet) || die "cargo build failed"
  BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/rollcall"
fi
[ -x "$BIN" ] || die "no executable at $BIN"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/rollcall-walkthrough.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/bin" "$WORK/run"
ln -s "$BIN" "$WORK/bin/rollcall"
"$PYTHON" -m venv "$WORK/venv" || die "cannot create a venv"

free_port() { "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
API_PORT="$(free_port)"
HOOK_PORT="$(free_port)"

# The page's sh blocks, ports replaced, after a trap that stops what the page started in the background.
{
  echo 'trap '\''kill $(jobs -p) 2>/dev/null || true'\'' EXIT'
  awk '/^```sh$/ { inside = 1; next } /^```$/ { inside = 0; next } inside { print }' "$DOC" \
    | sed -e "s/127\.0\.0\.1:8080/127.0.0.1:$API_PORT/g" \
          -e "s/127\.0\.0\.1:9000/127.0.0.1:$HOOK_PORT/g" \
          -e "s/(\"127\.0\.0\.1\", 9000)/(\"127.0.0.1\", $HOOK_PORT)/g"
} > "$WORK/walkthrough.sh"
[ "$(grep -c . "$WORK/walkthrough.sh")" -gt 10 ] || die "no sh blocks found in $DOC"

say "running the sh blocks of docs/walkthrough.md (ports $API_PORT, $HOOK_PORT)"
rc=0
(
  cd "$WORK/run"
  while read -r var; do unset "$var"; done < <(compgen -e | grep '^ROLLCALL_' || true)
  export PATH="$WORK/bin:$WORK/venv/bin:$PATH"
  timeout 300 bash -euo pipefail -x "$WORK/walkthrough.sh"
) > "$WORK/out.log" 2>&1 || rc=$?
if [ "$rc" -ne 0 ]; then
  tail -n 60 "$WORK/out.log"
  echo "--- rollcall.log"
  tail -n 30 "$WORK/run/rollcall.log" 2>/dev/null || true
  die "the walkthrough failed (exit $rc)"
fi
grep -E '^(user\.|\{|  )' "$WORK/out.log" | head -n 20 || true
say "ok: every command of docs/walkthrough.md ran and its checks passed"
